//! The control plane's requests as types (in the shape of mini-redis's commands): each message
//! a client sends is parsed once from its [`Frame`] into a [`Request`], with every field checked
//! for type and range, and built back into a frame by the clients ([`Request::to_frame`]), so
//! the server and both clients (`ctl`, the supervisor endpoint) share one definition.
//!
//! Rules: a field of the wrong type or out of range is a [`ParseError::Field`] naming the
//! message, the field and what it must be; an unknown message is [`ParseError::Unknown`] with
//! its name cut to [`MAX_ECHOED_NAME`] characters (a client's junk is never echoed whole).
//! Unknown extra fields are ignored (forward compatibility). Sans-IO.

use std::net::SocketAddr;

use serde_json::Value;

use super::frame::Frame;

/// Longest message name echoed back in a refusal.
pub const MAX_ECHOED_NAME: usize = 64;
/// Longest explicit binding: one year, in seconds.
pub const MAX_BIND_SECONDS: u64 = 365 * 24 * 3600;
/// Longest identifier (agent, supervisor, state name) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest password accepted.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Session modes a login asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An agent's desktop.
    Agent,
    /// A supervisor's desktop.
    Supervisor,
    /// All agents and calls (password protected).
    Monitor,
}

impl Mode {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Agent => "agent",
            Mode::Supervisor => "supervisor",
            Mode::Monitor => "monitor",
        }
    }
}

/// `Login`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The mode asked for.
    pub mode: Mode,
    /// Agent or supervisor id (empty for monitor mode).
    pub id: String,
    /// The password (empty when none was given).
    pub password: String,
    /// The phone an agent logs in on (agent mode).
    pub instrument: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Login")
            .field("mode", &self.mode)
            .field("id", &self.id)
            .field("instrument", &self.instrument)
            .finish_non_exhaustive()
    }
}

/// `Bind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The agent's id.
    pub agent: String,
    /// The media endpoint.
    pub endpoint: SocketAddr,
    /// For how long (1 ..= [`MAX_BIND_SECONDS`]); None: until the appliance restarts.
    pub seconds: Option<u64>,
}

/// Which monitors a `StopSilentMonitor` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopTarget {
    /// Every monitor of this agent's.
    Agent(String),
    /// This monitor.
    Monitor(u64),
}

/// A request from a control-plane client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Log in.
    Login(Login),
    /// A sign of life (answered with `HeartbeatReply`).
    Heartbeat {
        /// Echoed.
        seq: u64,
    },
    /// The answer to the server's heartbeat.
    HeartbeatReply {
        /// The server's sequence number.
        seq: u64,
    },
    /// An agent sets its state.
    SetAgentState {
        /// One of [`AGENT_STATES`].
        state: &'static str,
    },
    /// The agents a session may see.
    ListAgents,
    /// The calls.
    ListCalls,
    /// The RTP streams.
    ListFlows,
    /// The agent bindings.
    ListBindings,
    /// The monitors.
    ListMonitors,
    /// The cluster's peers.
    ListPeers,
    /// An explicit binding.
    Bind(Bind),
    /// Start monitoring an agent.
    StartSilentMonitor {
        /// The agent's id.
        agent: String,
    },
    /// Stop monitoring.
    StopSilentMonitor(StopTarget),
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

/// Why a frame is not a request this server takes (the client's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No such message.
    #[error("unknown message")]
    Unknown {
        /// The name, cut to [`MAX_ECHOED_NAME`] characters.
        name: String,
    },
    /// A field is missing, of the wrong type or out of range.
    #[error("{field} {problem}")]
    Field {
        /// The message.
        msg: &'static str,
        /// The field.
        field: &'static str,
        /// What it must be.
        problem: &'static str,
    },
}

impl ParseError {
    /// The name of the reply that refuses the request (`<name>Reply`).
    pub fn reply_name(&self) -> String {
        format!("{}Reply", self.request())
    }

    /// The refused message's name (cut, for an unknown one).
    pub fn request(&self) -> String {
        match self {
            ParseError::Unknown { name } => name.clone(),
            ParseError::Field { msg, .. } => (*msg).to_owned(),
        }
    }
}

/// Reads the fields of one message, each error naming the message and the field.
struct Fields<'a> {
    msg: &'static str,
    frame: &'a Frame,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &'static str, problem: &'static str) -> ParseError {
        ParseError::Field {
            msg: self.msg,
            field,
            problem,
        }
    }

    /// An optional string of at most `max` bytes.
    fn opt_str(&self, field: &'static str, max: usize) -> Result<Option<&'a str>, ParseError> {
        match self.frame.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
            Some(Value::String(_)) => Err(self.err(field, "is too long")),
            Some(_) => Err(self.err(field, "must be a string")),
        }
    }

    fn str(&self, field: &'static str, max: usize) -> Result<&'a str, ParseError> {
        self.opt_str(field, max)?
            .ok_or_else(|| self.err(field, "is missing"))
    }

    /// An optional whole number in `range`; `problem` says so in words.
    fn opt_u64(
        &self,
        field: &'static str,
        range: std::ops::RangeInclusive<u64>,
        problem: &'static str,
    ) -> Result<Option<u64>, ParseError> {
        match self.frame.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            // as_u64 is None for negatives, fractions and floats such as 1e300.
            Some(v) => match v.as_u64().filter(|n| range.contains(n)) {
                Some(n) if v.is_u64() => Ok(Some(n)),
                _ => Err(self.err(field, problem)),
            },
        }
    }
}

impl Request {
    /// The request in `frame`, every field checked.
    pub fn parse(frame: &Frame) -> Result<Request, ParseError> {
        let name = frame.msg.as_str();
        let msg = Self::known_name(name).ok_or_else(|| ParseError::Unknown {
            name: echoable(name),
        })?;
        let f = Fields { msg, frame };
        let seq = |f: &Fields<'_>| {
            Ok::<u64, ParseError>(
                f.opt_u64("seq", 0..=u64::MAX, "must be a whole number >= 0")?
                    .unwrap_or(0),
            )
        };
        Ok(match msg {
            "Login" => Request::Login(Self::login(&f)?),
            "Heartbeat" => Request::Heartbeat { seq: seq(&f)? },
            "HeartbeatReply" => Request::HeartbeatReply { seq: seq(&f)? },
            "SetAgentState" => {
                let s = f.str("state", MAX_ID_LEN)?;
                let state = AGENT_STATES
                    .iter()
                    .find(|x| **x == s)
                    .ok_or_else(|| f.err("state", "is not an agent state"))?;
                Request::SetAgentState { state }
            }
            "ListAgents" => Request::ListAgents,
            "ListCalls" => Request::ListCalls,
            "ListFlows" => Request::ListFlows,
            "ListBindings" => Request::ListBindings,
            "ListMonitors" => Request::ListMonitors,
            "ListPeers" => Request::ListPeers,
            "Bind" => Request::Bind(Bind {
                agent: f.str("agent", MAX_ID_LEN)?.to_owned(),
                endpoint: f
                    .str("endpoint", 64)?
                    .parse()
                    .map_err(|_| f.err("endpoint", "must be an IP address and port"))?,
                seconds: f.opt_u64(
                    "seconds",
                    1..=MAX_BIND_SECONDS,
                    "must be a whole number of seconds from 1 to 31536000",
                )?,
            }),
            "StartSilentMonitor" => Request::StartSilentMonitor {
                agent: f.str("agent", MAX_ID_LEN)?.to_owned(),
            },
            "StopSilentMonitor" => {
                let monitor = f.opt_u64("monitor", 1..=u64::MAX, "must be a monitor id")?;
                match (f.opt_str("agent", MAX_ID_LEN)?, monitor) {
                    (_, Some(m)) => Request::StopSilentMonitor(StopTarget::Monitor(m)),
                    (Some(a), None) => Request::StopSilentMonitor(StopTarget::Agent(a.to_owned())),
                    (None, None) => return Err(f.err("agent", "or monitor must be given")),
                }
            }
            _ => unreachable!("known_name lists every message parsed here"),
        })
    }

    /// The static name of a message this server takes.
    fn known_name(name: &str) -> Option<&'static str> {
        [
            "Login",
            "Heartbeat",
            "HeartbeatReply",
            "SetAgentState",
            "ListAgents",
            "ListCalls",
            "ListFlows",
            "ListBindings",
            "ListMonitors",
            "ListPeers",
            "Bind",
            "StartSilentMonitor",
            "StopSilentMonitor",
        ]
        .into_iter()
        .find(|n| *n == name)
    }

    fn login(f: &Fields<'_>) -> Result<Login, ParseError> {
        let mode = match f.str("mode", MAX_ID_LEN)? {
            "agent" => Mode::Agent,
            "supervisor" => Mode::Supervisor,
            "monitor" => Mode::Monitor,
            _ => return Err(f.err("mode", "must be agent, supervisor or monitor")),
        };
        Ok(Login {
            mode,
            id: f.opt_str("id", MAX_ID_LEN)?.unwrap_or("").to_owned(),
            password: f
                .opt_str("password", MAX_PASSWORD_LEN)?
                .unwrap_or("")
                .to_owned(),
            instrument: f.opt_str("instrument", MAX_ID_LEN)?.map(str::to_owned),
        })
    }

    /// The message's name.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Login(_) => "Login",
            Request::Heartbeat { .. } => "Heartbeat",
            Request::HeartbeatReply { .. } => "HeartbeatReply",
            Request::SetAgentState { .. } => "SetAgentState",
            Request::ListAgents => "ListAgents",
            Request::ListCalls => "ListCalls",
            Request::ListFlows => "ListFlows",
            Request::ListBindings => "ListBindings",
            Request::ListMonitors => "ListMonitors",
            Request::ListPeers => "ListPeers",
            Request::Bind(_) => "Bind",
            Request::StartSilentMonitor { .. } => "StartSilentMonitor",
            Request::StopSilentMonitor(_) => "StopSilentMonitor",
        }
    }

    /// The name of the answer when the request is granted: the list a `List…` request returns
    /// (`ListAgents` → `AgentList`), `<name>Reply` for the others.
    pub fn reply_name(&self) -> String {
        match self {
            Request::ListAgents => "AgentList".into(),
            Request::ListCalls => "CallList".into(),
            Request::ListFlows => "FlowList".into(),
            Request::ListBindings => "BindingList".into(),
            Request::ListMonitors => "MonitorList".into(),
            Request::ListPeers => "PeerList".into(),
            _ => self.refusal_name(),
        }
    }

    /// The name of the answer when the request is refused: `<name>Reply`, for every request.
    pub fn refusal_name(&self) -> String {
        format!("{}Reply", self.name())
    }

    /// True when a frame named `msg` answers this request (granted or refused).
    pub fn is_answered_by(&self, msg: &str) -> bool {
        msg == self.reply_name() || msg == self.refusal_name()
    }

    /// The frame a client sends.
    pub fn to_frame(&self) -> Frame {
        let f = Frame::new(self.name());
        match self {
            Request::Login(l) => {
                let mut f = f.with("mode", l.mode.name()).with("id", l.id.clone());
                if !l.password.is_empty() {
                    f = f.with("password", l.password.clone());
                }
                match &l.instrument {
                    Some(i) => f.with("instrument", i.clone()),
                    None => f,
                }
            }
            Request::Heartbeat { seq } | Request::HeartbeatReply { seq } => f.with("seq", *seq),
            Request::SetAgentState { state } => f.with("state", *state),
            Request::Bind(b) => {
                let f = f
                    .with("agent", b.agent.clone())
                    .with("endpoint", b.endpoint.to_string());
                match b.seconds {
                    Some(s) => f.with("seconds", s),
                    None => f,
                }
            }
            Request::StartSilentMonitor { agent } => f.with("agent", agent.clone()),
            Request::StopSilentMonitor(StopTarget::Agent(a)) => f.with("agent", a.clone()),
            Request::StopSilentMonitor(StopTarget::Monitor(m)) => f.with("monitor", *m),
            Request::ListAgents
            | Request::ListCalls
            | Request::ListFlows
            | Request::ListBindings
            | Request::ListMonitors
            | Request::ListPeers => f,
        }
    }
}

/// `name` as it may be echoed: at most [`MAX_ECHOED_NAME`] ASCII letters, digits and `_`;
/// anything else is `Unknown`.
pub fn echoable(name: &str) -> String {
    let ok = !name.is_empty()
        && name.len() <= MAX_ECHOED_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        name.to_owned()
    } else {
        "Unknown".to_owned()
    }
}

#[cfg(test)]
mod tests;
