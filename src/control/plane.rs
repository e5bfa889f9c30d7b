//! The CTI object server's session logic, sans-IO: connections and their admission, logins in
//! agent, supervisor and monitor mode (passwords verified off the caller's task, throttled),
//! agent states, team rights, silent-monitor start/stop with "you are being monitored" events,
//! explicit binds, lists, heartbeats and the monitor-mode lockout. Fed connections, frames,
//! verification results and `now`; answers through queues the shell drains after every input:
//! frames per session ([`ControlPlane::poll_transmit`]), sessions to close
//! ([`ControlPlane::poll_close`]), passwords to verify ([`ControlPlane::poll_verification`]),
//! and [`Action`]s for the engine and the audit trail ([`ControlPlane::poll_action`]).
//!
//! Admission rules: a connection must log in within [`SessionLimits::login_timeout`]; at most
//! [`SessionLimits::max_unauthenticated_per_source`] connections from one address may be
//! without a login (a further one is closed at once), and at most
//! [`SessionLimits::max_unauthenticated`] in all (the oldest idle one is closed to make room),
//! so a flood of connections that never log in cannot keep others out. One login at a time
//! per connection; at most [`SessionLimits::max_verifying`] password checks in flight.
//! Every refusal that matters for security is an audit action. The TLS/TCP shell only moves
//! bytes and runs the password checks it is handed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use super::frame::Frame;
use super::reply::StopReason;
use super::reply::{Event, Reply};
pub use super::request::Mode;
use super::request::Request;
use crate::config::{AgentSettings, Supervisor};
use crate::peer::ClusterView;
use crate::router::View;
use crate::security::audit::AuditEvent;
use crate::security::lockout::{LockoutConfig, MonitorModeGate};
use crate::security::throttle::{LoginThrottle, ThrottleConfig};
use crate::time::{Span, Timestamp};

/// A connection's id.
pub type SessionId = u64;

/// Admission limits of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// A connection not logged in this long after it was accepted is closed.
    pub login_timeout: Span,
    /// Most connections without a login from one address.
    pub max_unauthenticated_per_source: usize,
    /// Most connections without a login in all (the oldest idle one makes room).
    pub max_unauthenticated: usize,
    /// Most password checks in flight (a login past it is refused: try again).
    pub max_verifying: usize,
    /// Login throttling.
    pub throttle: ThrottleConfig,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            login_timeout: Span::from_secs(5),
            max_unauthenticated_per_source: 8,
            max_unauthenticated: 256,
            max_verifying: 16,
            throttle: ThrottleConfig::default(),
        }
    }
}

/// Who may log in, and the rules.
#[derive(Clone, Debug)]
pub struct Directory {
    /// Agents.
    pub agents: Vec<AgentSettings>,
    /// Supervisors.
    pub supervisors: Vec<Supervisor>,
    /// Monitor-mode password hash (None: monitor mode off).
    pub monitor_password_hash: Option<String>,
    /// Accounts without a `password_hash` log in with any password (labs only); otherwise such
    /// an account cannot log in.
    pub passwordless: bool,
    /// Monitor-mode lockout.
    pub lockout: LockoutConfig,
    /// A client silent this long is dropped (heartbeat interval x retries).
    pub client_timeout: Span,
    /// The server sends every session a `Heartbeat` this often.
    pub server_heartbeat: Span,
    /// Where supervisor endpoints attach for a monitor's audio (the monitor service, 42228),
    /// as told in `StartSilentMonitorReply`.
    pub monitor_service: Option<String>,
    /// Admission limits.
    pub limits: SessionLimits,
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
        reason: StopReason,
    },
    /// An explicit binding of a media endpoint to an agent.
    Bind {
        /// Index of the agent.
        agent: usize,
        /// The agent's id.
        agent_id: String,
        /// The endpoint.
        endpoint: SocketAddr,
        /// For how long (None: until the appliance restarts).
        seconds: Option<u64>,
        /// Who asked: a supervisor's id, or `monitor mode`.
        by: String,
        /// The session that asked.
        session: SessionId,
    },
    /// An entry for the audit trail only: a refusal, a lockout.
    Audit {
        /// The address of the connection it concerns, if any.
        peer: Option<SocketAddr>,
        /// What happened.
        event: AuditEvent,
    },
}

impl Action {
    /// The audit trail's entry for this action.
    pub fn audit_event(&self) -> AuditEvent {
        match self {
            Action::MonitorStarted {
                monitor,
                agent_id,
                supervisor_id,
                ..
            } => AuditEvent::MonitorStarted {
                monitor: *monitor,
                supervisor: supervisor_id.clone(),
                agent: agent_id.clone(),
            },
            Action::MonitorStopped {
                monitor,
                agent_id,
                supervisor_id,
                reason,
            } => AuditEvent::MonitorStopped {
                monitor: *monitor,
                supervisor: supervisor_id.clone(),
                agent: agent_id.clone(),
                reason: reason.to_string(),
            },
            Action::Bind {
                agent_id,
                endpoint,
                seconds,
                by,
                ..
            } => AuditEvent::Bind {
                by: by.clone(),
                agent: agent_id.clone(),
                endpoint: *endpoint,
                seconds: *seconds,
            },
            Action::Audit { event, .. } => event.clone(),
        }
    }
}

/// A password the shell must verify off the control plane's task (argon2 is slow on purpose);
/// the answer goes back through [`ControlPlane::handle_verified`].
#[derive(Clone)]
pub struct Verification {
    /// Identifies the login.
    pub ticket: u64,
    /// The password given.
    pub password: String,
    /// The hash to check it against (a dummy one for an unknown account: same cost).
    pub hash: Arc<str>,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
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

/// Counters of what the control plane refused or closed (metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaneCounters {
    /// Logins refused (any reason).
    pub logins_failed: u64,
    /// Logins refused by the throttle without a password check.
    pub logins_throttled: u64,
    /// Connections closed for not logging in in time.
    pub login_timeouts: u64,
    /// Connections closed by the caps on connections without a login.
    pub unauthenticated_closed: u64,
    /// Requests refused (bad fields, unknown messages, rights, wrong mode).
    pub requests_refused: u64,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) peer: SocketAddr,
    pub(super) mode: Option<(Mode, usize)>,
    pub(super) connected: Timestamp,
    pub(super) last_heard: Timestamp,
    last_heartbeat_sent: Timestamp,
    heartbeat_seq: u64,
    /// The ticket of the login being verified.
    pub(super) login: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MonitorRec {
    pub(super) supervisor: usize,
    pub(super) agent: usize,
    pub(super) session: SessionId,
    pub(super) started: Timestamp,
    /// The call the agent was last warned this monitor hears (an endpoint that attaches late
    /// makes the router announce the same call again: the agent is not told twice).
    pub(super) warned_call: Option<String>,
}

/// The control plane's state.
pub struct ControlPlane {
    pub(super) dir: Directory,
    pub(super) gate: MonitorModeGate,
    pub(super) throttle: LoginThrottle,
    pub(super) sessions: BTreeMap<SessionId, Session>,
    next_session: SessionId,
    pub(super) agent_state: Vec<&'static str>,
    pub(super) agent_session: Vec<Option<SessionId>>,
    pub(super) monitors: BTreeMap<u64, MonitorRec>,
    pub(super) next_monitor: u64,
    pub(super) logins: BTreeMap<u64, super::login::PendingLogin>,
    pub(super) next_ticket: u64,
    pub(super) verifications: VecDeque<Verification>,
    /// The monitor-mode lockout's end, once reported as started.
    pub(super) monitor_locked_until: Option<Timestamp>,
    outbox: VecDeque<(SessionId, Frame)>,
    closing: VecDeque<SessionId>,
    pub(super) actions: VecDeque<Action>,
    pub(super) view: Arc<View>,
    pub(super) cluster: Arc<ClusterView>,
    pub(super) keys: KeySource,
    pub(super) counters: PlaneCounters,
}

impl ControlPlane {
    /// A control plane for `dir`.
    pub fn new(dir: Directory) -> Self {
        let n = dir.agents.len();
        ControlPlane {
            gate: MonitorModeGate::new(dir.lockout),
            throttle: LoginThrottle::new(dir.limits.throttle),
            dir,
            sessions: BTreeMap::new(),
            next_session: 1,
            agent_state: vec!["Logout"; n],
            agent_session: vec![None; n],
            monitors: BTreeMap::new(),
            next_monitor: 1,
            logins: BTreeMap::new(),
            next_ticket: 1,
            verifications: VecDeque::new(),
            monitor_locked_until: None,
            outbox: VecDeque::new(),
            closing: VecDeque::new(),
            actions: VecDeque::new(),
            view: Arc::new(View::default()),
            cluster: Arc::new(ClusterView::default()),
            keys: Box::new(random_key),
            counters: PlaneCounters::default(),
        }
    }

    /// Replaces the source of monitor session keys (tests use a counter).
    pub fn with_key_source(mut self, keys: KeySource) -> Self {
        self.keys = keys;
        self
    }

    /// The latest snapshot of calls, flows and bindings from the engine thread; `ListCalls`,
    /// `ListFlows` and `ListBindings` answer from it, and binds are checked against it.
    pub fn set_view(&mut self, view: Arc<View>) {
        self.view = view;
    }

    /// What the cluster's peers see (the lists show their calls beside this appliance's).
    pub fn set_cluster(&mut self, cluster: Arc<ClusterView>) {
        self.cluster = cluster;
    }

    /// The next action for the shell. Call after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next password to verify. Call after every input; answer with
    /// [`ControlPlane::handle_verified`].
    pub fn poll_verification(&mut self) -> Option<Verification> {
        self.verifications.pop_front()
    }

    /// The next frame to send, and to which session.
    pub fn poll_transmit(&mut self) -> Option<(SessionId, Frame)> {
        self.outbox.pop_front()
    }

    /// The next session the shell must close (after sending what was queued for it).
    pub fn poll_close(&mut self) -> Option<SessionId> {
        self.closing.pop_front()
    }

    /// Counters of refusals and closed connections.
    pub fn counters(&self) -> &PlaneCounters {
        &self.counters
    }

    /// Ends `monitor` for a reason found outside the control plane (its endpoint went away,
    /// the monitor service or the engine could not route it, a non-ACD call): the same one
    /// way as every other ending (`stop_monitor`). Unknown ids are ignored.
    pub fn end_monitor(&mut self, now: Timestamp, monitor: u64, reason: StopReason) {
        self.stop_monitor(now, monitor, reason);
    }

    /// The appliance is stopping: every monitor ends ([`StopReason::ServiceStopped`]), so
    /// the audit trail, the monitor service and the router hear it like any other ending.
    pub fn shutdown(&mut self, now: Timestamp) {
        let ids: Vec<u64> = self.monitors.keys().copied().collect();
        for id in ids {
            self.stop_monitor(now, id, StopReason::ServiceStopped);
        }
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

    /// A new connection from `peer` at `now` (after its TLS handshake). It may be closed at
    /// once (see [`ControlPlane::poll_close`]) when its address has too many connections
    /// without a login; when all such slots are taken, the oldest idle one is closed instead.
    pub fn connect(&mut self, now: Timestamp, peer: SocketAddr) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                peer,
                mode: None,
                connected: now,
                last_heard: now,
                last_heartbeat_sent: now,
                heartbeat_seq: 0,
                login: None,
            },
        );
        let limits = self.dir.limits;
        let unauthenticated = || self.sessions.values().filter(|s| s.mode.is_none());
        let from_source = unauthenticated()
            .filter(|s| s.peer.ip() == peer.ip())
            .count();
        if from_source > limits.max_unauthenticated_per_source {
            self.counters.unauthenticated_closed += 1;
            self.close(
                now,
                id,
                "too many connections from your address that have not logged in",
            );
        } else if unauthenticated().count() > limits.max_unauthenticated {
            let oldest = self
                .sessions
                .iter()
                .filter(|(sid, s)| s.mode.is_none() && s.login.is_none() && **sid != id)
                .min_by_key(|(_, s)| s.connected)
                .map(|(sid, _)| *sid);
            self.counters.unauthenticated_closed += 1;
            let victim = oldest.unwrap_or(id);
            self.close(now, victim, "too many connections that have not logged in");
        }
        id
    }

    /// Tells the client why, forgets the session and asks the shell to close it.
    pub(super) fn close(&mut self, now: Timestamp, sid: SessionId, reason: &str) {
        let event = Event::ProtocolError {
            reason: reason.to_owned(),
        };
        self.event(sid, &event);
        self.disconnect(now, sid);
        self.closing.push_back(sid);
    }

    /// When [`ControlPlane::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let login = self.dir.limits.login_timeout;
        let sessions = self.sessions.values().flat_map(|s| {
            let deadline = (s.mode.is_none() && s.login.is_none()).then(|| s.connected + login);
            [
                Some(s.last_heard + self.dir.client_timeout + Span::from_nanos(1)),
                Some(s.last_heartbeat_sent + self.dir.server_heartbeat),
                deadline,
            ]
        });
        sessions
            .flatten()
            .chain(self.throttle.poll_timeout())
            .chain(self.monitor_locked_until)
            .min()
    }

    /// Sends the server's heartbeats that are due, closes sessions silent for longer than the
    /// client timeout and connections that did not log in in time, and reports lockouts that
    /// ended.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.send_heartbeats(now);
        let login = self.dir.limits.login_timeout;
        let mut late = Vec::new();
        let mut dead = Vec::new();
        for (id, s) in &self.sessions {
            if now - s.last_heard > self.dir.client_timeout {
                dead.push(*id);
            } else if s.mode.is_none() && s.login.is_none() && now - s.connected >= login {
                late.push(*id);
            }
        }
        for id in dead {
            self.disconnect(now, id);
            self.closing.push_back(id);
        }
        for id in late {
            self.counters.login_timeouts += 1;
            self.close(now, id, "no login within the login timeout");
        }
        self.lockouts_ended(now);
    }

    fn send_heartbeats(&mut self, now: Timestamp) {
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
            self.event(id, &Event::Heartbeat { seq });
        }
    }

    /// The connection went away: its login, monitors and agent state are cleaned up. A login
    /// being verified still counts for the throttle when its answer comes.
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
                    self.stop_monitor(now, id, StopReason::AgentLoggedOut);
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
            self.stop_monitor(now, id, StopReason::SupervisorDisconnected);
        }
    }

    fn send(&mut self, sid: SessionId, f: Frame) {
        self.outbox.push_back((sid, f));
    }

    /// Answers session `sid`.
    pub(super) fn reply(&mut self, sid: SessionId, r: &Reply) {
        self.send(sid, r.to_frame());
    }

    /// Tells session `sid`.
    pub(super) fn event(&mut self, sid: SessionId, e: &Event) {
        self.send(sid, e.to_frame());
    }

    /// Refuses session `sid`'s `request` (its message name) with `reason`.
    pub(super) fn refuse(&mut self, sid: SessionId, request: &str, reason: &str) {
        self.counters.requests_refused += 1;
        let r = Reply::Refused {
            request: request.to_owned(),
            reason: reason.to_owned(),
        };
        self.reply(sid, &r);
    }

    /// An audit-only action about session `sid` (its address, if it is still known).
    pub(super) fn audit(&mut self, peer: Option<SocketAddr>, event: AuditEvent) {
        self.actions.push_back(Action::Audit { peer, event });
    }

    pub(super) fn peer_of(&self, sid: SessionId) -> Option<SocketAddr> {
        self.sessions.get(&sid).map(|s| s.peer)
    }

    pub(super) fn agent_index(&self, id: &str) -> Option<usize> {
        self.dir.agents.iter().position(|a| a.agent.id == id)
    }

    pub(super) fn may_see(&self, supervisor: usize, agent: usize) -> bool {
        let team = self.dir.agents[agent].team.as_deref();
        team.is_some_and(|t| {
            self.dir.supervisors[supervisor]
                .teams
                .iter()
                .any(|x| x == t)
        })
    }

    /// The CTI Server says agent `agent` is in `state` (one of [`crate::control::request::AGENT_STATES`]):
    /// the same as an agent session setting it (events to its team's supervisors and to
    /// monitor mode). Unknown agents and states are ignored.
    pub fn cti_agent_state(&mut self, agent: usize, state: &str) {
        let known = crate::control::request::AGENT_STATES
            .into_iter()
            .find(|s| *s == state);
        if let (true, Some(state)) = (agent < self.dir.agents.len(), known) {
            if self.agent_state[agent] != state {
                self.set_agent_state(agent, state);
            }
        }
    }

    pub(super) fn set_agent_state(&mut self, agent: usize, state: &'static str) {
        self.agent_state[agent] = state;
        let ev = Event::AgentState {
            agent: self.dir.agents[agent].agent.id.clone(),
            state: state.to_owned(),
        };
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
            self.event(w, &ev);
        }
    }

    /// One frame from session `sid` at `now`.
    pub fn handle_frame(&mut self, now: Timestamp, sid: SessionId, f: &Frame) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_heard = now;
        let mode = session.mode;
        let request = match Request::parse(f) {
            Ok(r) => r,
            Err(e) => return self.refuse(sid, &e.request(), &e.to_string()),
        };
        let name = request.name();
        match (request, mode) {
            (Request::Heartbeat { seq }, _) => self.reply(sid, &Reply::HeartbeatReply { seq }),
            (Request::HeartbeatReply { .. }, _) => {}
            (Request::Login(l), None) => self.login(now, sid, l),
            (Request::Login(_), Some(_)) => self.refuse(sid, name, "already logged in"),
            (_, None) => self.refuse(sid, name, "log in first"),
            (Request::SetAgentState { state }, Some((Mode::Agent, a))) => {
                self.set_agent_state(a, state);
                self.reply(sid, &Reply::SetAgentState);
            }
            (Request::ListAgents, Some((m, who))) if m != Mode::Agent => {
                self.list_agents(sid, m, who)
            }
            (Request::ListCalls, Some((m, who))) if m != Mode::Agent => {
                self.list_calls(sid, m, who)
            }
            (Request::ListFlows, Some((m, who))) if m != Mode::Agent => {
                self.list_flows(sid, m, who)
            }
            (Request::ListBindings, Some((m, who))) if m != Mode::Agent => {
                self.list_bindings(sid, m, who)
            }
            (Request::ListPeers, Some((m, _))) if m != Mode::Agent => self.list_peers(sid),
            (Request::ListMonitors, Some((m, who))) if m != Mode::Agent => {
                self.list_monitors(sid, m, who)
            }
            (Request::Bind(b), Some((m, who))) if m != Mode::Agent => self.bind(sid, m, who, b),
            (Request::StartSilentMonitor { agent }, Some((Mode::Supervisor, sup))) => {
                self.start_monitor(now, sid, sup, &agent)
            }
            (Request::StopSilentMonitor(target), Some((Mode::Supervisor, sup))) => {
                self.stop_request(now, sid, sup, &target)
            }
            (_, Some(_)) => self.refuse(sid, name, "not allowed in this mode"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
