//! Every way a monitor ends, walked through the real pieces without sockets or threads: the
//! control plane (which decides), the [`ActionHandler`] (audit, registry, engine command), the
//! monitor service's registry and endpoint session, the router and the fanout publisher. The
//! shells' loops are replaced by [`Site::settle`], which moves what each piece hands out to the
//! next until nothing moves, in the order the shells do.
//!
//! For each ending the table says what ends it and why; afterwards the four places agree (the
//! monitor is in none of them), the trail holds exactly one `monitor_stopped` with the reason,
//! the supervisor and the warned agent heard it if still connected, and the endpoint, if still
//! connected, got `Stopped` once.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tokio::sync::mpsc;

use super::actions::ActionHandler;
use super::audit::{AuditLog, Auditor};
use super::engine_loop::Command;
use crate::control::frame::Frame;
use crate::control::plane::tests::{at, drain, login, plane};
use crate::control::plane::{ControlPlane, SessionId};
use crate::control::reply::StopReason;
use crate::control::server::{self, ControlStats};
use crate::monitor::endpoint_conn::{Context, Ending, EndpointConn};
use crate::monitor::fanout::{self, Publisher};
use crate::monitor::registry::Registry;
use crate::monitor::stats::MonitorStats;
use crate::monitor::wire::{self, Control};
use crate::packet::LinkType;
use crate::router::tests::{outbound, Lab};
use crate::router::MonitorId;
use crate::time::Timestamp;

/// The agent monitored: 5001, team blue, warned when monitored; its media at this port.
const AGENT_PORT: u16 = 30000;

/// One appliance's pieces, wired by hand.
struct Site {
    plane: ControlPlane,
    handler: ActionHandler,
    commands: Receiver<Command>,
    ended: mpsc::Receiver<(u64, StopReason)>,
    lab: Lab,
    publisher: Publisher,
    endpoint: Option<(EndpointConn, mpsc::Receiver<(u32, String)>)>,
    /// Everything the endpoint was sent.
    heard: Vec<Control>,
    supervisor: SessionId,
    agent: SessionId,
    dir: tempfile::TempDir,
}

impl Site {
    /// Agent 5001 and supervisor s1 logged in; agent 5001 in a call; StopSMNonACDCall on.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let stats = ControlStats::default();
        let (control, inbox) = server::handle(&stats);
        let ended = inbox.ended;
        let (engine, commands) = crossbeam_channel::bounded(64);
        let handler = ActionHandler {
            audit: Auditor::new(log, || Timestamp::from_nanos(0)),
            registry: Arc::new(Registry::new()),
            engine,
            control,
            certificates: [("s1".to_owned(), "s1".to_owned())].into(),
            commands_lost: Arc::new(AtomicU64::new(0)),
            demand: None,
        };
        let (fanout_tx, fanout_rx) = fanout::commands();
        let mstats = Arc::new(MonitorStats::default());
        let mut plane = plane();
        let agent = login(&mut plane, at(0), "agent", "5001", "");
        let supervisor = login(&mut plane, at(0), "supervisor", "s1", "");
        let mut lab = Lab::new();
        lab.r.set_stop_on_non_acd_calls(true);
        lab.call(0, "acd1", AGENT_PORT);
        let ctx = Arc::new(Context {
            registry: handler.registry.clone(),
            control: handler.control.clone(),
            fanout: fanout_tx,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            queue_frames: 64,
            queue_most: 64,
            stats: mstats.clone(),
            audit: Arc::new(|_, _| {}),
        });
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let endpoint = EndpointConn::new(ctx, peer, Some(vec!["s1".into()]), Instant::now());
        let mut site = Site {
            plane,
            handler,
            commands,
            ended,
            lab,
            publisher: Publisher::new(fanout_rx, mstats),
            endpoint: Some(endpoint),
            heard: Vec::new(),
            supervisor,
            agent,
            dir,
        };
        site.settle(at(0));
        drain(&mut site.plane);
        site
    }

    /// s1 starts monitoring 5001; the endpoint attaches with the key unless `attach` is false.
    fn start(&mut self, attach: bool) -> MonitorId {
        let ask = Frame::new("StartSilentMonitor").with("agent", "5001");
        self.plane.handle_frame(at(1), self.supervisor, &ask);
        let grant = std::iter::from_fn(|| self.plane.poll_transmit())
            .find(|(_, f)| f.msg == "StartSilentMonitorReply")
            .map(|(_, f)| f)
            .expect("a grant");
        let id = grant.u64("monitor").unwrap();
        self.settle(at(1));
        if attach {
            let key = grant.str("key").unwrap().to_owned();
            self.endpoint_says(&[Control::Attach { key }]);
        }
        self.settle(at(1));
        drain(&mut self.plane);
        self.heard.clear();
        id
    }

    /// Bytes from the endpoint to its session; the session ends if they say so.
    fn endpoint_says(&mut self, frames: &[Control]) {
        let mut bytes = Vec::new();
        for f in frames {
            f.append(&mut bytes).unwrap();
        }
        let (s, _) = self.endpoint.as_mut().unwrap();
        if let Err(ending) = s.handle_input(Instant::now(), &bytes) {
            self.endpoint_gone(ending);
        }
    }

    /// The endpoint's connection ends.
    fn endpoint_gone(&mut self, ending: Ending) {
        let (mut s, _) = self.endpoint.take().unwrap();
        s.end(ending);
        self.heard.extend(queued(&s));
    }

    /// One round of every shell's loop, repeated until nothing moves.
    fn settle(&mut self, now: Timestamp) {
        for _ in 0..16 {
            let mut moved = false;
            while let Some(a) = self.plane.poll_action() {
                self.handler.handle(&a, None);
                moved = true;
            }
            while let Ok((id, reason)) = self.ended.try_recv() {
                self.plane.end_monitor(now, id, reason);
                moved = true;
            }
            while let Ok(c) = self.commands.try_recv() {
                c.apply(&mut self.lab.r, now);
                moved = true;
            }
            while let Some(n) = self.lab.r.poll_notice() {
                // What the engine thread does with a notice (see `engine_loop`).
                if let crate::router::Notice::NonAcdCall { monitor, .. } = &n {
                    self.handler
                        .control
                        .end_monitor(*monitor, StopReason::NonAcdCall);
                }
                self.publisher.notice(&n);
                moved = true;
            }
            if let Some((s, revoked)) = self.endpoint.as_mut() {
                while let Ok((m, reason)) = revoked.try_recv() {
                    s.handle_revoked(m, reason);
                    moved = true;
                }
            }
            self.publisher.flush();
            if let Some((s, _)) = self.endpoint.as_ref() {
                self.heard.extend(queued(s));
            }
            if !moved {
                return;
            }
        }
        panic!("the pieces never settled");
    }

    /// Where monitor `id` still lives: control plane, registry, router, fanout.
    fn places(&self, id: MonitorId) -> [bool; 4] {
        [
            self.plane.monitors().iter().any(|m| m.0 == id),
            self.handler.registry.is_granted(id),
            self.lab.r.has_monitor(id),
            self.publisher.is_routed(id),
        ]
    }

    /// The trail's `monitor_stopped` reasons.
    fn stopped_in_trail(&self) -> Vec<String> {
        let trail = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap();
        trail
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "monitor_stopped")
            .map(|v| v["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The control frames an endpoint session queued for its endpoint (media skipped).
fn queued(s: &EndpointConn) -> Vec<Control> {
    let mut out = Vec::new();
    s.subscriber().drain_into(&mut out, usize::MAX);
    let mut rest = &out[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let (f, n) = wire::decode(rest).unwrap();
        if let wire::Frame::Control(c) = f {
            got.push(c);
        }
        rest = &rest[n..];
    }
    got
}

/// What ends the monitor in one row of the table.
#[derive(Clone, Copy, Debug)]
enum Cause {
    SupervisorStops,
    AgentLogsOut,
    SupervisorHeartbeatLost,
    NonAcdCall,
    EndpointDisconnects,
    EndpointHeartbeatLost,
    EndpointDetaches,
    EndpointNeverAttaches,
    ApplianceStops,
}

/// One row: the cause, the reason every place must give, whether the supervisor's session and
/// the endpoint's connection are still there to hear it.
struct Row {
    cause: Cause,
    reason: StopReason,
    supervisor_hears: bool,
    endpoint_hears: bool,
}

const fn row(cause: Cause, reason: StopReason, supervisor: bool, endpoint: bool) -> Row {
    Row {
        cause,
        reason,
        supervisor_hears: supervisor,
        endpoint_hears: endpoint,
    }
}

/// Makes `cause` happen to monitor `id` on `site` at `now`.
fn cause(site: &mut Site, id: MonitorId, cause: Cause, now: Timestamp) {
    match cause {
        Cause::SupervisorStops => {
            let stop = Frame::new("StopSilentMonitor").with("monitor", id);
            site.plane.handle_frame(now, site.supervisor, &stop);
        }
        Cause::AgentLogsOut => site.plane.disconnect(now, site.agent),
        Cause::SupervisorHeartbeatLost => {
            // The agent keeps its session alive; the supervisor says nothing for 15 s+.
            for t in [10, 20] {
                let beat = Frame::new("Heartbeat").with("seq", t);
                site.plane.handle_frame(at(t), site.agent, &beat);
            }
            site.plane.handle_timeout(at(25));
        }
        Cause::NonAcdCall => {
            outbound(&mut site.lab, 100, "out1", AGENT_PORT + 10);
            site.lab.media(120, AGENT_PORT + 10, 1, 20);
        }
        Cause::EndpointDisconnects => site.endpoint_gone(Ending::Disconnected),
        Cause::EndpointHeartbeatLost => {
            let (s, _) = site.endpoint.as_mut().unwrap();
            let later = Instant::now() + Duration::from_secs(60);
            let ending = s.handle_timeout(later).unwrap_err();
            site.endpoint_gone(ending);
        }
        Cause::EndpointDetaches => site.endpoint_says(&[Control::Detach {
            monitor: u32::try_from(id).unwrap(),
        }]),
        Cause::EndpointNeverAttaches => {
            let later = Instant::now() + Duration::from_secs(60);
            let expired = site
                .handler
                .registry
                .expire_unattached(later, Duration::from_secs(15));
            // What the service's expiry task does.
            for m in expired {
                site.handler
                    .control
                    .end_monitor(m, StopReason::EndpointNeverAttached);
            }
        }
        Cause::ApplianceStops => {
            site.plane.shutdown(now);
            site.settle(now);
            site.endpoint_gone(Ending::Shutdown);
        }
    }
}

#[test]
fn every_ending_goes_one_way_and_leaves_the_four_places_agreeing() {
    use Cause::*;
    use StopReason as R;
    // (cause, reason, the supervisor hears it, the endpoint hears it). A supervisor whose
    // heartbeats stopped is told before its session closes (its socket may still be there).
    #[rustfmt::skip]
    let table = [
        row(SupervisorStops,         R::StoppedBySupervisor,    true, true),
        row(AgentLogsOut,            R::AgentLoggedOut,         true, true),
        row(SupervisorHeartbeatLost, R::SupervisorDisconnected, true, true),
        row(NonAcdCall,              R::NonAcdCall,             true, true),
        row(EndpointDisconnects,     R::EndpointDisconnected,   true, false),
        row(EndpointHeartbeatLost,   R::EndpointHeartbeatLost,  true, false),
        row(EndpointDetaches,        R::EndpointDetached,       true, true),
        row(EndpointNeverAttaches,   R::EndpointNeverAttached,  true, false),
        row(ApplianceStops,          R::ServiceStopped,         true, true),
    ];
    for r in table {
        let mut site = Site::new();
        let attach = !matches!(r.cause, EndpointNeverAttaches);
        let id = site.start(attach);
        assert_eq!(
            site.places(id),
            [true, true, true, attach],
            "{:?}: the monitor before its end",
            r.cause
        );
        // Its agent's packets reach it.
        if attach {
            let mut got = 0;
            let frame = crate::router::tests::udp(
                SocketAddr::new("10.0.0.2".parse().unwrap(), AGENT_PORT),
                "10.0.0.1:20000".parse().unwrap(),
                &crate::router::tests::rtp(1, 7, 1),
            );
            let publisher = &mut site.publisher;
            site.lab
                .r
                .handle_frame(at(1), LinkType::Ethernet, &frame, &mut |f| {
                    got += 1;
                    publisher.publish(&f);
                });
            assert_eq!(got, 1, "{:?}", r.cause);
        }

        cause(&mut site, id, r.cause, at(30));
        site.settle(at(30));

        let c = r.cause;
        assert_eq!(site.places(id), [false; 4], "{c:?}: every place let it go");
        assert_eq!(
            site.stopped_in_trail(),
            [r.reason.as_str()],
            "{c:?}: one entry in the trail"
        );
        let out = drain(&mut site.plane);
        let told =
            |sid: SessionId, msg: &str| out.iter().filter(|o| o.0 == sid && o.1 == msg).count();
        assert_eq!(
            told(site.supervisor, "SilentMonitorStopped"),
            usize::from(r.supervisor_hears),
            "{c:?}: the supervisor {out:?}"
        );
        let agent_there = !matches!(c, AgentLogsOut);
        assert_eq!(
            told(site.agent, "SilentMonitorStoppedEvent"),
            usize::from(agent_there),
            "{c:?}: the warned agent {out:?}"
        );
        let stopped = site
            .heard
            .iter()
            .filter(|h| matches!(h, Control::Stopped { .. }))
            .count();
        let expected = usize::from(r.endpoint_hears);
        assert_eq!(
            stopped, expected,
            "{c:?}: the endpoint heard {:?}",
            site.heard
        );
    }
}
