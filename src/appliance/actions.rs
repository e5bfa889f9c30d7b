//! What a control-plane [`Action`] does on the appliance, in one named place: the audit entry
//! first (so it exists before the first forwarded packet), then the monitor service's grant or
//! revocation, then the engine thread's command.
//!
//! Rules: never blocks (the engine's command queue is bounded and written with `try_send`).
//! When that queue is full the engine thread is stalled: a started monitor is ended at the
//! control plane ("appliance busy", which the supervisor sees; its ending comes back here as
//! a `MonitorStopped` like any other), a lost removal or bind is counted and logged. The
//! registry and the router only follow the control plane's actions: neither ends a monitor on
//! its own. Session keys are never logged or audited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::audit::Auditor;
use super::engine_loop::Command;
use crate::control::plane::Action;
use crate::control::reply::StopReason;
use crate::control::server::ControlHandle;
use crate::monitor::registry::Registry;
use crate::peer::DemandBoard;

/// Carries out control-plane actions.
pub struct ActionHandler {
    /// The audit trail.
    pub audit: Auditor,
    /// The monitor service's grants.
    pub registry: Arc<Registry>,
    /// The engine thread's commands.
    pub engine: Sender<Command>,
    /// Where a monitor that cannot be routed is ended.
    pub control: ControlHandle,
    /// Supervisor id -> the name its client certificate carries.
    pub certificates: HashMap<String, String>,
    /// Engine commands lost to a full queue.
    pub commands_lost: Arc<AtomicU64>,
    /// In a cluster: the agents local supervisors monitor, which the peer links ask for.
    pub demand: Option<DemandBoard>,
}

impl ActionHandler {
    /// Carries out `action`, asked from `peer`.
    pub fn handle(&mut self, action: &Action, peer: Option<SocketAddr>) {
        self.audit.record(&action.audit_event(), peer);
        let command = match action {
            Action::MonitorStarted {
                monitor,
                agent,
                agent_id,
                supervisor_id,
                key,
                ..
            } => {
                tracing::info!(monitor, agent = %agent_id, supervisor = %supervisor_id, "monitor started");
                let certificate = self
                    .certificates
                    .get(supervisor_id)
                    .map_or(supervisor_id.as_str(), String::as_str);
                let who = (supervisor_id.as_str(), certificate);
                if let Err(e) = self.registry.grant(*monitor, key, agent_id, who) {
                    tracing::error!(monitor, error = %e, "monitor not granted to the monitor service");
                }
                if let Some(d) = self.demand.as_mut() {
                    d.add(agent_id, supervisor_id);
                }
                Command::AddMonitor {
                    monitor: *monitor,
                    agent: *agent,
                }
            }
            Action::MonitorStopped {
                monitor,
                agent_id,
                supervisor_id,
                reason,
            } => {
                tracing::info!(monitor, agent = %agent_id, supervisor = %supervisor_id, %reason, "monitor stopped");
                self.registry.revoke(*monitor, reason.as_str());
                if let Some(d) = self.demand.as_mut() {
                    d.remove(agent_id, supervisor_id);
                }
                Command::RemoveMonitor { monitor: *monitor }
            }
            Action::Bind {
                agent,
                endpoint,
                seconds,
                ..
            } => Command::Bind {
                agent: *agent,
                endpoint: *endpoint,
                seconds: *seconds,
            },
            Action::Audit { .. } => return,
        };
        self.command(command);
    }

    /// Hands `command` to the engine thread without waiting.
    fn command(&mut self, command: Command) {
        let Err(TrySendError::Full(c)) = self.engine.try_send(command) else {
            return; // sent, or the engine thread is gone (shutting down)
        };
        self.commands_lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(?c, "engine thread not taking commands");
        if let Command::AddMonitor { monitor, .. } = c {
            self.control.end_monitor(monitor, StopReason::ApplianceBusy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::audit::AuditLog;
    use crate::control::server::{handle, ControlStats};
    use crate::time::Timestamp;

    struct Rig {
        h: ActionHandler,
        commands: crossbeam_channel::Receiver<Command>,
        ended: tokio::sync::mpsc::Receiver<(u64, StopReason)>,
        dir: tempfile::TempDir,
    }

    fn rig(queue: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let (tx, commands) = crossbeam_channel::bounded(queue);
        let (control, inbox) = handle(&ControlStats::default());
        let ended = inbox.ended;
        let h = ActionHandler {
            audit: Auditor::new(log, || Timestamp::from_nanos(0)),
            registry: Arc::new(Registry::new()),
            engine: tx,
            control,
            certificates: [("s1".to_owned(), "s1.example".to_owned())].into(),
            commands_lost: Arc::new(AtomicU64::new(0)),
            demand: None,
        };
        Rig {
            h,
            commands,
            ended,
            dir,
        }
    }

    fn started(monitor: u64) -> Action {
        Action::MonitorStarted {
            monitor,
            agent: 0,
            agent_id: "5001".into(),
            supervisor_id: "s1".into(),
            session: 1,
            key: format!("key-{monitor}"),
        }
    }

    #[test]
    fn a_monitor_is_audited_granted_to_the_certificate_and_routed_then_stopped() {
        let Rig {
            mut h,
            commands: rx,
            dir,
            ..
        } = rig(8);
        let peer: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        h.handle(&started(7), Some(peer));
        assert_eq!(
            rx.try_recv().unwrap(),
            Command::AddMonitor {
                monitor: 7,
                agent: 0
            }
        );
        assert!(h.registry.is_granted(7));
        h.handle(
            &Action::MonitorStopped {
                monitor: 7,
                agent_id: "5001".into(),
                supervisor_id: "s1".into(),
                reason: StopReason::StoppedBySupervisor,
            },
            None,
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Command::RemoveMonitor { monitor: 7 }
        );
        assert!(!h.registry.is_granted(7));
        let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        let events: Vec<&str> = trail.lines().collect();
        assert_eq!(events.len(), 2);
        assert!(events[0].contains("\"monitor_started\"") && events[0].contains("10.0.0.5:40000"));
        assert!(!trail.contains("key-7"), "the session key is never written");
    }

    #[test]
    fn a_full_engine_queue_ends_the_new_monitor_at_the_control_plane_which_revokes_it() {
        let mut r = rig(1);
        r.h.handle(&started(1), None);
        r.h.handle(&started(2), None);
        assert_eq!(r.h.commands_lost.load(Ordering::Relaxed), 1);
        assert_eq!(r.commands.len(), 1);
        assert_eq!(r.ended.try_recv().unwrap(), (2, StopReason::ApplianceBusy));
        // The control plane's ending comes back as the action every ending is.
        r.h.handle(
            &Action::MonitorStopped {
                monitor: 2,
                agent_id: "5001".into(),
                supervisor_id: "s1".into(),
                reason: StopReason::ApplianceBusy,
            },
            None,
        );
        assert!(r.h.registry.is_granted(1) && !r.h.registry.is_granted(2));
    }
}
