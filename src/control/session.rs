//! The CTI object server's session logic, sans-IO: logins in agent, supervisor and monitor mode,
//! agent states, team rights, silent-monitor start/stop with "you are being monitored" events,
//! heartbeats and the monitor-mode lockout. Fed frames, connections and `now`; answers by queuing
//! frames per session ([`ControlPlane::poll_transmit`]) and sessions to close
//! ([`ControlPlane::poll_close`]). The TLS/TCP shell only moves bytes.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use super::frame::Frame;
use crate::config::{AgentSettings, Supervisor};
use crate::router::View;
use crate::security::lockout::{Admission, LockoutConfig, MonitorModeGate};
use crate::security::password;
use crate::time::{Span, Timestamp};

/// A connection's id.
pub type SessionId = u64;

/// Session modes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An agent's desktop.
    Agent,
    /// A supervisor's desktop.
    Supervisor,
    /// All agents and calls (password protected).
    Monitor,
}

/// Agent states of the CTI OS table.
pub const AGENT_STATES: [&str; 11] = [
    "Login",
    "Logout",
    "NotReady",
    "Available",
    "Talking",
    "WorkReady",
    "WorkNotReady",
    "Hold",
    "Reserved",
    "BusyOther",
    "Unknown",
];

/// Who may log in, and the rules.
#[derive(Clone, Debug)]
pub struct Directory {
    /// Agents.
    pub agents: Vec<AgentSettings>,
    /// Supervisors.
    pub supervisors: Vec<Supervisor>,
    /// Monitor-mode password hash (None: monitor mode off).
    pub monitor_password_hash: Option<String>,
    /// Monitor-mode lockout.
    pub lockout: LockoutConfig,
    /// A client silent this long is dropped (heartbeat interval x retries).
    pub client_timeout: Span,
    /// The server sends every session a `Heartbeat` this often.
    pub server_heartbeat: Span,
    /// Where supervisor endpoints attach for a monitor's audio (the monitor service, 42228),
    /// as told in `StartSilentMonitorReply`.
    pub monitor_service: Option<String>,
}

/// What the shell must carry out besides sending frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A monitor was authorised: route agent `agent`'s packets to it and let the endpoint
    /// holding `key` attach to the monitor service.
    MonitorStarted {
        /// Monitor id (its UniqueObjectID is `monitor.<id>`).
        monitor: u64,
        /// Index of the agent.
        agent: usize,
        /// The agent's id.
        agent_id: String,
        /// The supervisor's id.
        supervisor_id: String,
        /// The session that asked.
        session: SessionId,
        /// The session key the endpoint presents to the monitor service.
        key: String,
    },
    /// A monitor ended.
    MonitorStopped {
        /// Monitor id.
        monitor: u64,
        /// The agent's id.
        agent_id: String,
        /// The supervisor's id.
        supervisor_id: String,
        /// Why.
        reason: String,
    },
    /// An explicit binding of a media endpoint to an agent.
    Bind {
        /// Index of the agent.
        agent: usize,
        /// The endpoint.
        endpoint: SocketAddr,
        /// For how long (None: until the appliance restarts).
        seconds: Option<u64>,
        /// Who asked: a supervisor's id, or `monitor mode`.
        by: String,
        /// The session that asked.
        session: SessionId,
    },
}

/// Makes the session keys of monitors (unguessable in production, fixed in tests).
pub type KeySource = Box<dyn FnMut() -> String + Send>;

/// Session keys from the operating system's random source.
pub fn random_key() -> String {
    let mut b = [0u8; 16];
    // getrandom only fails on platforms without a random source; a key must never be weak.
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug)]
struct Session {
    mode: Option<(Mode, usize)>,
    last_heard: Timestamp,
    last_heartbeat_sent: Timestamp,
    heartbeat_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MonitorRec {
    supervisor: usize,
    agent: usize,
    session: SessionId,
    started: Timestamp,
}

/// The control plane's state.
pub struct ControlPlane {
    dir: Directory,
    gate: MonitorModeGate,
    sessions: BTreeMap<SessionId, Session>,
    next_session: SessionId,
    agent_state: Vec<&'static str>,
    agent_session: Vec<Option<SessionId>>,
    monitors: BTreeMap<u64, MonitorRec>,
    next_monitor: u64,
    outbox: VecDeque<(SessionId, Frame)>,
    closing: VecDeque<SessionId>,
    actions: VecDeque<Action>,
    view: Arc<View>,
    keys: KeySource,
}

fn refused(msg: &str, reason: &str) -> Frame {
    Frame::new(msg)
        .with("result", "refused")
        .with("reason", reason)
}

impl ControlPlane {
    /// A control plane for `dir`.
    pub fn new(dir: Directory) -> Self {
        let n = dir.agents.len();
        ControlPlane {
            gate: MonitorModeGate::new(dir.lockout),
            dir,
            sessions: BTreeMap::new(),
            next_session: 1,
            agent_state: vec!["Logout"; n],
            agent_session: vec![None; n],
            monitors: BTreeMap::new(),
            next_monitor: 1,
            outbox: VecDeque::new(),
            closing: VecDeque::new(),
            actions: VecDeque::new(),
            view: Arc::new(View::default()),
            keys: Box::new(random_key),
        }
    }

    /// Replaces the source of monitor session keys (tests use a counter).
    pub fn with_key_source(mut self, keys: KeySource) -> Self {
        self.keys = keys;
        self
    }

    /// The latest snapshot of calls, flows and bindings from the engine thread; `ListCalls`,
    /// `ListFlows` and `ListBindings` answer from it.
    pub fn set_view(&mut self, view: Arc<View>) {
        self.view = view;
    }

    /// The next action for the shell. Call after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The monitor's endpoint went away or the monitor service ended it.
    pub fn end_monitor(&mut self, now: Timestamp, monitor: u64, reason: &str) {
        self.stop_monitor(now, monitor, reason);
    }

    /// Number of sessions, by mode (None = not logged in).
    pub fn session_counts(&self) -> [(Option<Mode>, usize); 4] {
        let mut counts = [
            (None, 0),
            (Some(Mode::Agent), 0),
            (Some(Mode::Supervisor), 0),
            (Some(Mode::Monitor), 0),
        ];
        for s in self.sessions.values() {
            let i = match s.mode {
                None => 0,
                Some((Mode::Agent, _)) => 1,
                Some((Mode::Supervisor, _)) => 2,
                Some((Mode::Monitor, _)) => 3,
            };
            counts[i].1 += 1;
        }
        counts
    }

    /// A new connection at `now`.
    pub fn connect(&mut self, now: Timestamp) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                mode: None,
                last_heard: now,
                last_heartbeat_sent: now,
                heartbeat_seq: 0,
            },
        );
        id
    }

    /// The next frame to send, and to which session.
    pub fn poll_transmit(&mut self) -> Option<(SessionId, Frame)> {
        self.outbox.pop_front()
    }

    /// The next session the shell must close.
    pub fn poll_close(&mut self) -> Option<SessionId> {
        self.closing.pop_front()
    }

    /// When [`ControlPlane::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.sessions
            .values()
            .flat_map(|s| {
                [
                    s.last_heard + self.dir.client_timeout + Span::from_nanos(1),
                    s.last_heartbeat_sent + self.dir.server_heartbeat,
                ]
            })
            .min()
    }

    /// Drops sessions silent for longer than the client timeout and sends the server's
    /// heartbeats that are due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let beat = self.dir.server_heartbeat;
        let mut due = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if now - s.last_heartbeat_sent >= beat {
                s.last_heartbeat_sent = now;
                s.heartbeat_seq += 1;
                due.push((*id, s.heartbeat_seq));
            }
        }
        for (id, seq) in due {
            self.send(id, Frame::new("Heartbeat").with("seq", seq));
        }
        let dead: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now - s.last_heard > self.dir.client_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.disconnect(now, id);
            self.closing.push_back(id);
        }
    }

    /// The connection went away: its login, monitors and agent state are cleaned up.
    pub fn disconnect(&mut self, now: Timestamp, sid: SessionId) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        match s.mode {
            Some((Mode::Monitor, _)) => self.gate.release(),
            Some((Mode::Agent, a)) => {
                self.agent_session[a] = None;
                self.set_agent_state(a, "Logout");
                // Monitors of a logged-out agent end.
                let ids: Vec<u64> = self
                    .monitors
                    .iter()
                    .filter(|(_, m)| m.agent == a)
                    .map(|(k, _)| *k)
                    .collect();
                for id in ids {
                    self.stop_monitor(now, id, "agent logged out");
                }
            }
            _ => {}
        }
        let ids: Vec<u64> = self
            .monitors
            .iter()
            .filter(|(_, m)| m.session == sid)
            .map(|(k, _)| *k)
            .collect();
        for id in ids {
            self.stop_monitor(now, id, "supervisor disconnected");
        }
    }

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

    fn send(&mut self, sid: SessionId, f: Frame) {
        self.outbox.push_back((sid, f));
    }

    fn agent_index(&self, id: &str) -> Option<usize> {
        self.dir.agents.iter().position(|a| a.agent.id == id)
    }

    fn may_see(&self, supervisor: usize, agent: usize) -> bool {
        let team = self.dir.agents[agent].team.as_deref();
        team.is_some_and(|t| {
            self.dir.supervisors[supervisor]
                .teams
                .iter()
                .any(|x| x == t)
        })
    }

    fn set_agent_state(&mut self, agent: usize, state: &'static str) {
        self.agent_state[agent] = state;
        let ev = Frame::new("AgentStateEvent")
            .with("agent", self.dir.agents[agent].agent.id.clone())
            .with("state", state);
        let watchers: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| match s.mode {
                Some((Mode::Monitor, _)) => true,
                Some((Mode::Supervisor, sup)) => self.may_see(sup, agent),
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for w in watchers {
            self.send(w, ev.clone());
        }
    }

    fn stop_monitor(&mut self, _now: Timestamp, id: u64, reason: &str) {
        let Some(m) = self.monitors.remove(&id) else {
            return;
        };
        let agent_id = self.dir.agents[m.agent].agent.id.clone();
        self.actions.push_back(Action::MonitorStopped {
            monitor: id,
            agent_id: agent_id.clone(),
            supervisor_id: self.dir.supervisors[m.supervisor].id.clone(),
            reason: reason.to_owned(),
        });
        self.send(
            m.session,
            Frame::new("SilentMonitorStopped")
                .with("monitor", id)
                .with("agent", agent_id)
                .with("reason", reason),
        );
        if self.dir.agents[m.agent].warn_if_silent_monitored {
            if let Some(asid) = self.agent_session[m.agent] {
                self.send(
                    asid,
                    Frame::new("SilentMonitorStoppedEvent").with("monitor", id),
                );
            }
        }
    }

    /// One frame from session `sid` at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, sid: SessionId, f: &Frame) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_heard = now;
        let mode = session.mode;
        match (f.msg.as_str(), mode) {
            ("Heartbeat", _) => self.send(
                sid,
                Frame::new("HeartbeatReply").with("seq", f.u64("seq").unwrap_or(0)),
            ),
            ("HeartbeatReply", _) => {}
            ("Login", None) => self.login(now, sid, f),
            ("Login", Some(_)) => self.send(sid, refused("LoginReply", "already logged in")),
            (_, None) => {
                self.send(sid, refused(&format!("{}Reply", f.msg), "log in first"));
            }
            ("SetAgentState", Some((Mode::Agent, a))) => {
                match f
                    .str("state")
                    .and_then(|s| AGENT_STATES.iter().find(|x| **x == s))
                {
                    Some(state) => {
                        self.set_agent_state(a, state);
                        self.send(sid, Frame::new("SetAgentStateReply").with("result", "ok"));
                    }
                    None => self.send(sid, refused("SetAgentStateReply", "unknown agent state")),
                }
            }
            ("ListAgents", Some((m, who))) if m != Mode::Agent => {
                let agents: Vec<Value> = (0..self.dir.agents.len())
                    .filter(|&a| m == Mode::Monitor || self.may_see(who, a))
                    .map(|a| {
                        serde_json::json!({
                            "uid": format!("agent.{}", self.dir.agents[a].agent.id),
                            "agent": self.dir.agents[a].agent.id,
                            "extension": self.dir.agents[a].agent.extension,
                            "team": self.dir.agents[a].team,
                            "state": self.agent_state[a],
                        })
                    })
                    .collect();
                self.send(
                    sid,
                    Frame::new("AgentList").with("agents", Value::Array(agents)),
                );
            }
            ("ListCalls", Some((m, who))) if m != Mode::Agent => {
                let items = self.visible(m, who, self.view.calls.iter().map(|c| (c.agent, c)));
                self.send(sid, Frame::new("CallList").with("calls", items));
            }
            ("ListFlows", Some((m, who))) if m != Mode::Agent => {
                let items = self.visible(m, who, self.view.flows.iter().map(|c| (c.agent, c)));
                self.send(sid, Frame::new("FlowList").with("flows", items));
            }
            ("ListBindings", Some((m, who))) if m != Mode::Agent => {
                let items = self.visible(
                    m,
                    who,
                    self.view.bindings.iter().map(|b| (Some(b.agent), b)),
                );
                self.send(sid, Frame::new("BindingList").with("bindings", items));
            }
            ("ListMonitors", Some((m, who))) if m != Mode::Agent => {
                let items: Vec<Value> = self
                    .monitors
                    .iter()
                    .filter(|(_, r)| m == Mode::Monitor || r.supervisor == who)
                    .map(|(id, r)| {
                        serde_json::json!({
                            "uid": format!("monitor.{id}"),
                            "monitor": id,
                            "supervisor": self.dir.supervisors[r.supervisor].id,
                            "agent": self.dir.agents[r.agent].agent.id,
                            "started": r.started.as_secs_f64(),
                        })
                    })
                    .collect();
                self.send(sid, Frame::new("MonitorList").with("monitors", items));
            }
            ("Bind", Some((m, who))) if m != Mode::Agent => self.bind(sid, m, who, f),
            ("StartSilentMonitor", Some((Mode::Supervisor, sup))) => {
                self.start_monitor(now, sid, sup, f)
            }
            ("StopSilentMonitor", Some((Mode::Supervisor, sup))) => {
                let target = f.str("agent").and_then(|a| self.agent_index(a));
                let ids: Vec<u64> = self
                    .monitors
                    .iter()
                    .filter(|(id, m)| {
                        m.supervisor == sup
                            && (Some(**id) == f.u64("monitor") || Some(m.agent) == target)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                if ids.is_empty() {
                    self.send(sid, refused("StopSilentMonitorReply", "no such monitor"));
                    return;
                }
                let stopped = ids.len() as u64;
                for id in ids {
                    self.stop_monitor(now, id, "stopped by supervisor");
                }
                self.send(
                    sid,
                    Frame::new("StopSilentMonitorReply")
                        .with("result", "ok")
                        .with("stopped", stopped),
                );
            }
            (other, Some(_)) => {
                self.send(
                    sid,
                    refused(
                        &format!("{other}Reply"),
                        "not allowed in this mode or unknown message",
                    ),
                );
            }
        }
    }

    /// The items of a list a session may see: monitor mode all, a supervisor its teams' agents'.
    fn visible<'a, T: serde::Serialize + 'a>(
        &self,
        mode: Mode,
        who: usize,
        items: impl Iterator<Item = (Option<usize>, &'a T)>,
    ) -> Value {
        Value::Array(
            items
                .filter(|(agent, _)| {
                    mode == Mode::Monitor || agent.is_some_and(|a| self.may_see(who, a))
                })
                .filter_map(|(_, item)| serde_json::to_value(item).ok())
                .collect(),
        )
    }

    fn bind(&mut self, sid: SessionId, mode: Mode, who: usize, f: &Frame) {
        let Some(agent) = f.str("agent").and_then(|a| self.agent_index(a)) else {
            return self.send(sid, refused("BindReply", "unknown agent"));
        };
        if mode != Mode::Monitor && !self.may_see(who, agent) {
            return self.send(sid, refused("BindReply", "agent is not in your teams"));
        }
        let Some(endpoint) = f.str("endpoint").and_then(|e| e.parse::<SocketAddr>().ok()) else {
            return self.send(
                sid,
                refused("BindReply", "endpoint must be an IP address and port"),
            );
        };
        let seconds = f.u64("seconds");
        let by = match mode {
            Mode::Monitor => "monitor mode".to_owned(),
            _ => self.dir.supervisors[who].id.clone(),
        };
        self.actions.push_back(Action::Bind {
            agent,
            endpoint,
            seconds,
            by,
            session: sid,
        });
        self.send(
            sid,
            Frame::new("BindReply")
                .with("result", "ok")
                .with("agent", self.dir.agents[agent].agent.id.clone())
                .with("endpoint", endpoint.to_string()),
        );
    }

    fn login(&mut self, now: Timestamp, sid: SessionId, f: &Frame) {
        let id = f.str("id").unwrap_or("");
        let pw = f.str("password").unwrap_or("");
        let check = |hash: &Option<String>| hash.as_deref().is_none_or(|h| password::verify(pw, h));
        let result = match f.str("mode") {
            Some("agent") => match self.agent_index(id) {
                Some(a) if self.agent_session[a].is_some() => Err("agent already logged in"),
                Some(a) if check(&self.dir.agents[a].password_hash) => {
                    // The instrument (the phone the agent logs in on) must be the agent's
                    // configured extension; absent means that one.
                    match f.str("instrument") {
                        Some(i) if i != self.dir.agents[a].agent.extension => {
                            Err("instrument is not the agent's extension")
                        }
                        _ => Ok((Mode::Agent, a)),
                    }
                }
                _ => Err("unknown agent or wrong password"),
            },
            Some("supervisor") => match self.dir.supervisors.iter().position(|s| s.id == id) {
                Some(s) if check(&self.dir.supervisors[s].password_hash) => {
                    Ok((Mode::Supervisor, s))
                }
                _ => Err("unknown supervisor or wrong password"),
            },
            Some("monitor") => match &self.dir.monitor_password_hash {
                None => Err("monitor mode is not configured"),
                Some(h) => {
                    let ok = password::verify(pw, h);
                    match self.gate.login(now, ok) {
                        Admission::Admitted => Ok((Mode::Monitor, 0)),
                        Admission::BadPassword { .. } => Err("wrong password"),
                        Admission::Disabled { .. } => {
                            Err("monitor mode disabled after repeated wrong passwords")
                        }
                        Admission::Full => Err("too many monitor-mode connections"),
                    }
                }
            },
            _ => Err("mode must be agent, supervisor or monitor"),
        };
        match result {
            Ok((mode, who)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.mode = Some((mode, who));
                }
                let uid = match mode {
                    Mode::Agent => format!("agent.{}", self.dir.agents[who].agent.id),
                    Mode::Supervisor => format!("supervisor.{}", self.dir.supervisors[who].id),
                    Mode::Monitor => format!("session.{sid}"),
                };
                self.send(
                    sid,
                    Frame::new("LoginReply")
                        .with("result", "ok")
                        .with("session", sid)
                        .with("uid", uid)
                        .with(
                            "heartbeat_ms",
                            (self.dir.server_heartbeat.as_nanos() / 1_000_000) as u64,
                        ),
                );
                if mode == Mode::Agent {
                    self.agent_session[who] = Some(sid);
                    self.set_agent_state(who, "Login");
                }
            }
            Err(reason) => self.send(sid, refused("LoginReply", reason)),
        }
    }

    fn start_monitor(&mut self, now: Timestamp, sid: SessionId, sup: usize, f: &Frame) {
        let Some(agent) = f.str("agent").and_then(|a| self.agent_index(a)) else {
            return self.send(sid, refused("StartSilentMonitorReply", "unknown agent"));
        };
        if !self.may_see(sup, agent) {
            return self.send(
                sid,
                refused("StartSilentMonitorReply", "agent is not in your teams"),
            );
        }
        // Monitoring starts whatever the agent's state, logged in to the CTI or not: its phone
        // may carry calls all the same (audio comes when there is a call).
        if self
            .monitors
            .values()
            .any(|m| m.supervisor == sup && m.agent == agent)
        {
            return self.send(
                sid,
                refused("StartSilentMonitorReply", "already monitoring this agent"),
            );
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
            },
        );
        let key = (self.keys)();
        let mut reply = Frame::new("StartSilentMonitorReply")
            .with("result", "ok")
            .with("monitor", id)
            .with("uid", format!("monitor.{id}"))
            .with("agent", self.dir.agents[agent].agent.id.clone())
            .with("key", key.clone());
        if let Some(ms) = &self.dir.monitor_service {
            reply = reply.with("monitor_service", ms.clone());
        }
        self.send(sid, reply);
        self.actions.push_back(Action::MonitorStarted {
            monitor: id,
            agent,
            agent_id: self.dir.agents[agent].agent.id.clone(),
            supervisor_id: self.dir.supervisors[sup].id.clone(),
            session: sid,
            key,
        });
        if self.dir.agents[agent].warn_if_silent_monitored {
            if let Some(asid) = self.agent_session[agent] {
                self.send(
                    asid,
                    Frame::new("SilentMonitorStartedEvent").with("monitor", id),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::binding::Agent;

    pub(super) fn agent(id: &str, team: &str, warn: bool) -> AgentSettings {
        AgentSettings {
            agent: Agent {
                id: id.into(),
                extension: id.into(),
                mobile_number: None,
                phone_ips: vec![],
            },
            team: Some(team.into()),
            password_hash: None,
            warn_if_silent_monitored: warn,
        }
    }

    pub(super) fn plane() -> ControlPlane {
        ControlPlane::new(Directory {
            agents: vec![agent("5001", "blue", true), agent("5002", "red", false)],
            supervisors: vec![Supervisor {
                id: "s1".into(),
                teams: vec!["blue".into()],
                password_hash: None,
            }],
            monitor_password_hash: Some(password::hash("mon").unwrap()),
            lockout: LockoutConfig::default(),
            client_timeout: Span::from_secs(15),
            server_heartbeat: Span::from_secs(60),
            monitor_service: Some("appliance:42228".into()),
        })
        .with_key_source(Box::new(|| "k".into()))
    }

    pub(super) fn at(s: i64) -> Timestamp {
        Timestamp::from_nanos(s * 1_000_000_000)
    }

    pub(super) fn drain(p: &mut ControlPlane) -> Vec<(SessionId, String, Option<String>)> {
        std::iter::from_fn(|| p.poll_transmit())
            .map(|(s, f)| (s, f.msg.clone(), f.str("reason").map(str::to_owned)))
            .collect()
    }

    pub(super) fn login(
        p: &mut ControlPlane,
        now: Timestamp,
        mode: &str,
        id: &str,
        pw: &str,
    ) -> SessionId {
        let s = p.connect(now);
        p.handle_frame(
            now,
            s,
            &Frame::new("Login")
                .with("mode", mode)
                .with("id", id)
                .with("password", pw),
        );
        s
    }

    #[test]
    fn supervisor_monitors_own_team_only_and_agent_is_warned() {
        let mut p = plane();
        let a1 = login(&mut p, at(0), "agent", "5001", "");
        let a2 = login(&mut p, at(0), "agent", "5002", "");
        let s = login(&mut p, at(0), "supervisor", "s1", "");
        drain(&mut p);
        p.handle_frame(
            at(1),
            s,
            &Frame::new("StartSilentMonitor").with("agent", "5001"),
        );
        let out = drain(&mut p);
        assert!(
            out.contains(&(s, "StartSilentMonitorReply".into(), None)),
            "{out:?}"
        );
        assert!(
            out.contains(&(a1, "SilentMonitorStartedEvent".into(), None)),
            "{out:?}"
        );
        p.handle_frame(
            at(2),
            s,
            &Frame::new("StartSilentMonitor").with("agent", "5002"),
        );
        assert_eq!(
            drain(&mut p),
            vec![(
                s,
                "StartSilentMonitorReply".into(),
                Some("agent is not in your teams".into())
            )]
        );
        let _ = a2;
        // The supervisor sees its team's state changes only.
        p.handle_frame(
            at(3),
            a1,
            &Frame::new("SetAgentState").with("state", "Talking"),
        );
        p.handle_frame(
            at(3),
            a2,
            &Frame::new("SetAgentState").with("state", "Talking"),
        );
        let out = drain(&mut p);
        assert_eq!(
            out.iter()
                .filter(|(sid, m, _)| *sid == s && m == "AgentStateEvent")
                .count(),
            1
        );
        // Stop: the agent hears it too.
        p.handle_frame(
            at(4),
            s,
            &Frame::new("StopSilentMonitor").with("agent", "5001"),
        );
        let out = drain(&mut p);
        assert!(
            out.contains(&(a1, "SilentMonitorStoppedEvent".into(), None)),
            "{out:?}"
        );
        assert!(
            out.contains(&(s, "StopSilentMonitorReply".into(), None)),
            "{out:?}"
        );
        assert!(p.monitors().is_empty());
    }

    #[test]
    fn logout_and_disconnect_end_monitors() {
        let mut p = plane();
        let a1 = login(&mut p, at(0), "agent", "5001", "");
        let s = login(&mut p, at(0), "supervisor", "s1", "");
        p.handle_frame(
            at(1),
            s,
            &Frame::new("StartSilentMonitor").with("agent", "5001"),
        );
        assert_eq!(p.monitors().len(), 1);
        p.disconnect(at(2), a1);
        assert!(p.monitors().is_empty());
        let out = drain(&mut p);
        assert!(out.iter().any(|(sid, m, r)| *sid == s
            && m == "SilentMonitorStopped"
            && r.as_deref() == Some("agent logged out")));
    }

    #[test]
    fn monitor_mode_lockout_and_heartbeat_loss() {
        let mut p = plane();
        for _ in 0..3 {
            login(&mut p, at(0), "monitor", "", "wrong");
        }
        let s = login(&mut p, at(60), "monitor", "", "mon");
        let out = drain(&mut p);
        assert_eq!(
            out.last().unwrap().2.as_deref(),
            Some("monitor mode disabled after repeated wrong passwords")
        );
        let s2 = login(&mut p, at(16 * 60), "monitor", "", "mon");
        assert_eq!(drain(&mut p), vec![(s2, "LoginReply".into(), None)]);
        // s never logged in and goes silent; s2 keeps heartbeating.
        p.handle_frame(
            at(16 * 60 + 10),
            s2,
            &Frame::new("Heartbeat").with("seq", 1u64),
        );
        p.handle_timeout(at(16 * 60 + 20));
        let closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
        assert!(closed.contains(&s) && !closed.contains(&s2), "{closed:?}");
        // Unknown modes and messages before login are refused, not fatal.
        let x = p.connect(at(0));
        p.handle_frame(at(0), x, &Frame::new("ListAgents"));
        assert!(drain(&mut p)
            .iter()
            .any(|(sid, _, r)| *sid == x && r.as_deref() == Some("log in first")));
    }
}

#[cfg(test)]
mod action_tests {
    use super::tests_support::*;
    use super::*;
    use crate::router::{CallView, View};

    #[test]
    fn an_agent_logs_in_on_its_own_instrument_only() {
        let mut p = plane();
        let s = p.connect(at(0));
        p.handle_frame(
            at(0),
            s,
            &Frame::new("Login")
                .with("mode", "agent")
                .with("id", "5001")
                .with("instrument", "5999"),
        );
        assert_eq!(
            drain(&mut p),
            vec![(
                s,
                "LoginReply".into(),
                Some("instrument is not the agent's extension".into())
            )]
        );
        p.handle_frame(
            at(1),
            s,
            &Frame::new("Login")
                .with("mode", "agent")
                .with("id", "5001")
                .with("instrument", "5001"),
        );
        let out = drain(&mut p);
        assert_eq!(out[0], (s, "LoginReply".into(), None), "{out:?}");
    }

    #[test]
    fn an_agent_that_is_not_logged_in_can_be_monitored() {
        let mut p = plane();
        let s = login(&mut p, at(0), "supervisor", "s1", "");
        drain(&mut p);
        p.handle_frame(
            at(1),
            s,
            &Frame::new("StartSilentMonitor").with("agent", "5001"),
        );
        let reply = std::iter::from_fn(|| p.poll_transmit())
            .find(|(_, f)| f.msg == "StartSilentMonitorReply")
            .unwrap()
            .1;
        assert_eq!(reply.str("result"), Some("ok"));
        assert!(matches!(
            p.poll_action(),
            Some(Action::MonitorStarted { agent: 0, .. })
        ));
    }

    #[test]
    fn monitor_actions_bindings_lists_by_team_and_server_heartbeats() {
        let mut p = plane();
        let _a1 = login(&mut p, at(0), "agent", "5001", "");
        let s = login(&mut p, at(0), "supervisor", "s1", "");
        drain(&mut p);
        p.handle_frame(
            at(1),
            s,
            &Frame::new("StartSilentMonitor").with("agent", "5001"),
        );
        let reply = std::iter::from_fn(|| p.poll_transmit())
            .find(|(_, f)| f.msg == "StartSilentMonitorReply")
            .unwrap()
            .1;
        assert_eq!(reply.str("key"), Some("k"));
        assert_eq!(reply.str("monitor_service"), Some("appliance:42228"));
        assert_eq!(
            p.poll_action(),
            Some(Action::MonitorStarted {
                monitor: 1,
                agent: 0,
                agent_id: "5001".into(),
                supervisor_id: "s1".into(),
                session: s,
                key: "k".into(),
            })
        );
        // The endpoint vanished: the monitor ends, the supervisor is told.
        p.end_monitor(at(2), 1, "endpoint disconnected");
        assert!(matches!(
            p.poll_action(),
            Some(Action::MonitorStopped { monitor: 1, ref reason, .. }) if reason == "endpoint disconnected"
        ));
        // Lists answer from the engine's view, filtered by team.
        let call = |agent: Option<usize>, cid: &str| CallView {
            agent,
            agent_id: None,
            uid: String::new(),
            call_id: cid.into(),
            from: String::new(),
            to: String::new(),
            state: "Answered".into(),
            hold: false,
            started: 0.0,
            media: vec![],
        };
        p.set_view(Arc::new(View {
            calls: vec![call(Some(0), "mine"), call(Some(1), "red"), call(None, "x")],
            ..View::default()
        }));
        drain(&mut p);
        p.handle_frame(at(3), s, &Frame::new("ListCalls"));
        let (_, list) = p.poll_transmit().unwrap();
        let calls = list.fields["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["call_id"], "mine");
        // Bind: own team only, endpoint checked.
        p.handle_frame(
            at(4),
            s,
            &Frame::new("Bind")
                .with("agent", "5002")
                .with("endpoint", "10.0.0.1:4000"),
        );
        assert_eq!(
            drain(&mut p)[0].2.as_deref(),
            Some("agent is not in your teams")
        );
        p.handle_frame(
            at(4),
            s,
            &Frame::new("Bind")
                .with("agent", "5001")
                .with("endpoint", "10.0.0.1:4000")
                .with("seconds", 60u64),
        );
        assert_eq!(
            p.poll_action(),
            Some(Action::Bind {
                agent: 0,
                endpoint: "10.0.0.1:4000".parse().unwrap(),
                seconds: Some(60),
                by: "s1".into(),
                session: s,
            })
        );
        drain(&mut p);
        // Server heartbeats every 60 s to every session.
        p.handle_frame(at(50), s, &Frame::new("Heartbeat"));
        p.handle_timeout(at(61));
        let beats = drain(&mut p)
            .into_iter()
            .filter(|(_, m, _)| m == "Heartbeat")
            .count();
        assert!(beats >= 1, "{beats}");
    }
}
