//! Silent monitors and explicit binds, sans-IO (part of [`ControlPlane`]): a supervisor starts
//! and stops monitors of its teams' agents; supervisors and monitor mode bind media endpoints.
//!
//! Rules: only agents of the supervisor's teams may be monitored or bound; one monitor per
//! supervisor and agent. A supervisor's bind may not take an endpoint that belongs, as the
//! engine's latest view shows, to an agent outside its teams (a binding, a call's media, a
//! flow, a static phone IP) — the engine also never lets an explicit bind take another agent's
//! media (see `binding`). Every refusal is audited; so are starts, stops and binds (through
//! their actions). With WarnIfSilentMonitored the agent is warned when a monitor of it starts,
//! of each call of its that the monitor then hears (with the CTI's CallType where known), and
//! when the monitor ends.

use std::net::SocketAddr;

use super::plane::{Action, ControlPlane, Mode, MonitorRec, SessionId};
use super::reply::{Event, Grant, Reply, StopReason};
use super::request::{Bind, StopTarget};
use crate::security::audit::AuditEvent;
use crate::time::Timestamp;

/// A monitor now hears another call of its agent (the router's `Notice::Call`), for the
/// agent's WarnIfSilentMonitored warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeardCall {
    /// The monitor.
    pub monitor: u64,
    /// The call's id as endpoints and lists name it.
    pub call_id: String,
    /// The CTI Server's CallType, when it named the call.
    pub call_type: Option<u16>,
}

impl ControlPlane {
    /// Active monitors as (monitor id, supervisor id, agent id).
    pub fn monitors(&self) -> Vec<(u64, &str, &str)> {
        self.monitors
            .iter()
            .map(|(id, m)| {
                (
                    *id,
                    self.dir.supervisors[m.supervisor].id.as_str(),
                    self.dir.agents[m.agent].agent.id.as_str(),
                )
            })
            .collect()
    }

    /// Refuses a monitor start of supervisor `sup` (audited).
    fn refuse_monitor(&mut self, sid: SessionId, sup: usize, agent: &str, reason: &str) {
        let supervisor = self.dir.supervisors[sup].id.clone();
        tracing::info!(supervisor, agent, reason, "monitor refused");
        self.audit(
            self.peer_of(sid),
            AuditEvent::MonitorRefused {
                supervisor,
                agent: agent.to_owned(),
                reason: reason.to_owned(),
            },
        );
        self.refuse(sid, "StartSilentMonitor", reason);
    }

    pub(super) fn start_monitor(&mut self, now: Timestamp, sid: SessionId, sup: usize, name: &str) {
        let Some(agent) = self.agent_index(name) else {
            return self.refuse_monitor(sid, sup, name, "unknown agent");
        };
        if !self.may_see(sup, agent) {
            return self.refuse_monitor(sid, sup, name, "agent is not in your teams");
        }
        // Monitoring starts whatever the agent's state, logged in to the CTI or not: its phone
        // may carry calls all the same (audio comes when there is a call).
        if self
            .monitors
            .values()
            .any(|m| m.supervisor == sup && m.agent == agent)
        {
            return self.refuse_monitor(sid, sup, name, "already monitoring this agent");
        }
        let id = self.next_monitor;
        self.next_monitor += 1;
        self.monitors.insert(
            id,
            MonitorRec {
                supervisor: sup,
                agent,
                session: sid,
                started: now,
                warned_call: None,
            },
        );
        let key = (self.keys)();
        let agent_id = self.dir.agents[agent].agent.id.clone();
        let grant = Grant {
            monitor: id,
            agent: agent_id.clone(),
            key: key.clone(),
            monitor_service: self.dir.monitor_service.clone(),
        };
        self.reply(sid, &Reply::StartSilentMonitor(grant));
        self.actions.push_back(Action::MonitorStarted {
            monitor: id,
            agent,
            agent_id,
            supervisor_id: self.dir.supervisors[sup].id.clone(),
            session: sid,
            key,
        });
        self.warn_agent(agent, Event::MonitoredStarted { monitor: id });
    }

    /// A monitor now hears another call of its agent: the agent is warned of that call, with
    /// the CTI Server's CallType where it named one (WarnIfSilentMonitored), once while the
    /// monitor stays on it. Unknown monitors (ended meanwhile) are ignored.
    pub fn monitor_heard_call(&mut self, heard: &HeardCall) {
        let Some(m) = self.monitors.get_mut(&heard.monitor) else {
            return;
        };
        if m.warned_call.as_deref() == Some(heard.call_id.as_str()) {
            return;
        }
        m.warned_call = Some(heard.call_id.clone());
        let agent = m.agent;
        let event = Event::MonitoredCall {
            monitor: heard.monitor,
            call: heard.call_id.clone(),
            call_type: heard.call_type,
        };
        self.warn_agent(agent, event);
    }

    /// Tells agent `agent` (when WarnIfSilentMonitored is set and it is logged in).
    fn warn_agent(&mut self, agent: usize, event: Event) {
        if self.dir.agents[agent].warn_if_silent_monitored {
            if let Some(asid) = self.agent_session[agent] {
                self.event(asid, &event);
            }
        }
    }

    pub(super) fn stop_request(
        &mut self,
        now: Timestamp,
        sid: SessionId,
        sup: usize,
        target: &StopTarget,
    ) {
        let agent = match target {
            StopTarget::Agent(a) => self.agent_index(a),
            StopTarget::Monitor(_) => None,
        };
        let ids: Vec<u64> = self
            .monitors
            .iter()
            .filter(|(id, m)| {
                m.supervisor == sup
                    && (*target == StopTarget::Monitor(**id) || Some(m.agent) == agent)
            })
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return self.refuse(sid, "StopSilentMonitor", "no such monitor");
        }
        let stopped = ids.len() as u64;
        for id in ids {
            self.stop_monitor(now, id, StopReason::StoppedBySupervisor);
        }
        self.reply(sid, &Reply::StopSilentMonitor { stopped });
    }

    /// The one way a monitor ends, whatever ended it: removed here, then an
    /// [`Action::MonitorStopped`] for the audit trail, the monitor service's registry and the
    /// router (which hold state derived from this table), `SilentMonitorStopped` to the
    /// supervisor and `MonitoredStopped` to a warned agent. Unknown ids are ignored (an ending
    /// can be reported twice: by the endpoint's link and by the supervisor's stop).
    pub(super) fn stop_monitor(&mut self, _now: Timestamp, id: u64, reason: StopReason) {
        let Some(m) = self.monitors.remove(&id) else {
            return;
        };
        let agent_id = self.dir.agents[m.agent].agent.id.clone();
        self.actions.push_back(Action::MonitorStopped {
            monitor: id,
            agent_id: agent_id.clone(),
            supervisor_id: self.dir.supervisors[m.supervisor].id.clone(),
            reason: reason.clone(),
        });
        let event = Event::SilentMonitorStopped {
            monitor: id,
            agent: agent_id,
            reason,
        };
        self.event(m.session, &event);
        self.warn_agent(m.agent, Event::MonitoredStopped { monitor: id });
    }

    /// Refuses a bind (audited).
    fn refuse_bind(&mut self, sid: SessionId, by: String, b: &Bind, reason: &str) {
        tracing::info!(by, agent = %b.agent, endpoint = %b.endpoint, reason, "bind refused");
        self.audit(
            self.peer_of(sid),
            AuditEvent::BindRefused {
                by,
                agent: b.agent.clone(),
                endpoint: b.endpoint.to_string(),
                reason: reason.to_owned(),
            },
        );
        self.refuse(sid, "Bind", reason);
    }

    pub(super) fn bind(&mut self, sid: SessionId, mode: Mode, who: usize, b: Bind) {
        let by = match mode {
            Mode::Monitor => "monitor mode".to_owned(),
            _ => self.dir.supervisors[who].id.clone(),
        };
        let Some(agent) = self.agent_index(&b.agent) else {
            return self.refuse_bind(sid, by, &b, "unknown agent");
        };
        if mode != Mode::Monitor {
            if !self.may_see(who, agent) {
                return self.refuse_bind(sid, by, &b, "agent is not in your teams");
            }
            if self.owners(b.endpoint).any(|o| !self.may_see(who, o)) {
                let reason = "the endpoint belongs to an agent outside your teams";
                return self.refuse_bind(sid, by, &b, reason);
            }
        }
        let agent_id = self.dir.agents[agent].agent.id.clone();
        self.actions.push_back(Action::Bind {
            agent,
            agent_id: agent_id.clone(),
            endpoint: b.endpoint,
            seconds: b.seconds,
            by,
            session: sid,
        });
        let reply = Reply::Bind {
            agent: agent_id,
            endpoint: b.endpoint,
        };
        self.reply(sid, &reply);
    }

    /// The agents `endpoint` belongs to in the latest view: bound to it, in a call whose media
    /// it is, in a flow from or to it, or whose static phone IP it has.
    fn owners(&self, endpoint: SocketAddr) -> impl Iterator<Item = usize> + '_ {
        let (ep, ip) = (endpoint.to_string(), endpoint.ip().to_string());
        let v = &self.view;
        let bound = v
            .bindings
            .iter()
            .filter(move |b| b.endpoint == ep || (b.source == "static" && b.endpoint == ip))
            .map(|b| Some(b.agent));
        let ep = endpoint.to_string();
        let calls = v
            .calls
            .iter()
            .filter(move |c| c.media.contains(&ep))
            .map(|c| c.agent);
        let ep = endpoint.to_string();
        let flows = v
            .flows
            .iter()
            .filter(move |f| f.src == ep || f.dst == ep)
            .map(|f| f.agent);
        bound.chain(calls).chain(flows).flatten()
    }
}
