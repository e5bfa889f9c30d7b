//! The CTI object server's session logic, sans-IO: logins in agent, supervisor and monitor mode,
//! agent states, team rights, silent-monitor start/stop with "you are being monitored" events,
//! heartbeats and the monitor-mode lockout. Fed frames, connections and `now`; answers by queuing
//! frames per session ([`ControlPlane::poll_transmit`]) and sessions to close
//! ([`ControlPlane::poll_close`]). The TLS/TCP shell only moves bytes.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::frame::Frame;
use crate::config::{AgentSettings, Supervisor};
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
}

#[derive(Debug)]
struct Session {
    mode: Option<(Mode, usize)>,
    last_heard: Timestamp,
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
        }
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
            .map(|s| s.last_heard + self.dir.client_timeout)
            .min()
    }

    /// Drops sessions silent for longer than the client timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
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
                }
                for id in ids {
                    self.stop_monitor(now, id, "stopped by supervisor");
                }
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

    fn login(&mut self, now: Timestamp, sid: SessionId, f: &Frame) {
        let id = f.str("id").unwrap_or("");
        let pw = f.str("password").unwrap_or("");
        let check = |hash: &Option<String>| hash.as_deref().is_none_or(|h| password::verify(pw, h));
        let result = match f.str("mode") {
            Some("agent") => match self.agent_index(id) {
                Some(a) if self.agent_session[a].is_some() => Err("agent already logged in"),
                Some(a) if check(&self.dir.agents[a].password_hash) => Ok((Mode::Agent, a)),
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
                self.send(
                    sid,
                    Frame::new("LoginReply")
                        .with("result", "ok")
                        .with("session", sid),
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
        if self.agent_session[agent].is_none() {
            return self.send(
                sid,
                refused("StartSilentMonitorReply", "agent is not logged in"),
            );
        }
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
        self.send(
            sid,
            Frame::new("StartSilentMonitorReply")
                .with("result", "ok")
                .with("monitor", id),
        );
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
mod tests {
    use super::*;
    use crate::binding::Agent;

    fn agent(id: &str, team: &str, warn: bool) -> AgentSettings {
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

    fn plane() -> ControlPlane {
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
        })
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_nanos(s * 1_000_000_000)
    }

    fn drain(p: &mut ControlPlane) -> Vec<(SessionId, String, Option<String>)> {
        std::iter::from_fn(|| p.poll_transmit())
            .map(|(s, f)| (s, f.msg.clone(), f.str("reason").map(str::to_owned)))
            .collect()
    }

    fn login(p: &mut ControlPlane, now: Timestamp, mode: &str, id: &str, pw: &str) -> SessionId {
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
