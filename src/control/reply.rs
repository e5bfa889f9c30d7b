//! The control plane's answers as types: a [`Reply`] per request family and the [`Event`]s the
//! server sends unasked. The server builds them ([`Reply::to_frame`], [`Event::to_frame`]) and
//! the clients (`ctl`, the supervisor endpoint) read them ([`Reply::parse`], [`Event::parse`]),
//! so both ends share one definition; docs/protocol.md's examples are parsed by these types in
//! a test, so the document cannot drift.
//!
//! Rules: a refusal is `<request>Reply {result: "refused", reason}` whatever the request; a
//! monitor's end carries a typed [`StopReason`] (its wire text unchanged), which is what an
//! endpoint decides on (an agent that logged out is not chased; a lost endpoint link is).
//! Sans-IO.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::frame::Frame;
use super::request::ParseError;
use crate::peer::PeerStatus;
use crate::router::{BindingView, CallView, FlowView};

/// An agent as `ListAgents` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentItem {
    /// UniqueObjectID (`agent.<id>`).
    pub uid: String,
    /// Agent id.
    pub agent: String,
    /// Extension.
    pub extension: String,
    /// Team.
    pub team: Option<String>,
    /// CTI state.
    pub state: String,
    /// The appliance whose SPAN shows the agent on a call now, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
}

/// A monitor as `ListMonitors` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorItem {
    /// UniqueObjectID (`monitor.<id>`).
    pub uid: String,
    /// Monitor id.
    pub monitor: u64,
    /// The supervisor's id.
    pub supervisor: String,
    /// The agent's id.
    pub agent: String,
    /// Seconds since the epoch.
    pub started: f64,
    /// The appliance whose SPAN shows the agent on a call now, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
}

/// A granted monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Monitor id.
    pub monitor: u64,
    /// The agent's id.
    pub agent: String,
    /// The session key for the monitor service.
    pub key: String,
    /// Where to attach, when the appliance listens on a specific address.
    pub monitor_service: Option<String>,
}

/// A reply to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The request (named) was refused.
    Refused {
        /// The request's message name.
        request: String,
        /// Why.
        reason: String,
    },
    /// Logged in.
    Login {
        /// The session id.
        session: u64,
        /// UniqueObjectID of who logged in.
        uid: String,
        /// The server's heartbeat interval.
        heartbeat_ms: u64,
    },
    /// The agent's state was set.
    SetAgentState,
    /// Agents.
    AgentList(Vec<AgentItem>),
    /// Calls.
    CallList(Vec<CallView>),
    /// RTP streams.
    FlowList(Vec<FlowView>),
    /// Bindings.
    BindingList(Vec<BindingView>),
    /// Monitors.
    MonitorList(Vec<MonitorItem>),
    /// The cluster's peers.
    PeerList(Vec<PeerStatus>),
    /// Bound.
    Bind {
        /// The agent's id.
        agent: String,
        /// The endpoint.
        endpoint: SocketAddr,
    },
    /// A monitor was granted.
    StartSilentMonitor(Grant),
    /// Monitors were stopped.
    StopSilentMonitor {
        /// How many.
        stopped: u64,
    },
    /// The answer to a client's heartbeat.
    HeartbeatReply {
        /// The client's sequence number.
        seq: u64,
    },
}

/// Why a monitor ended, as the server says it (`SilentMonitorStopped.reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The supervisor stopped it.
    StoppedBySupervisor,
    /// The agent logged out or its session went away.
    AgentLoggedOut,
    /// The supervisor's session ended.
    SupervisorDisconnected,
    /// The endpoint's monitor-service connection closed.
    EndpointDisconnected,
    /// The endpoint fell silent on the monitor service.
    EndpointHeartbeatLost,
    /// No endpoint attached in time.
    EndpointNeverAttached,
    /// The endpoint detached.
    EndpointDetached,
    /// The endpoint sent what cannot be read.
    EndpointProtocolError,
    /// The endpoint tried keys that are not its own.
    EndpointRefusedAttaches,
    /// StopSMNonACDCall: the agent placed a call itself.
    NonAcdCall,
    /// The appliance could not route the monitor (its engine was stalled).
    ApplianceBusy,
    /// The monitor service could not route the monitor to its endpoint (its publisher was
    /// stalled).
    ServiceBusy,
    /// The monitor service stopped.
    ServiceStopped,
    /// Anything else (a newer server's reason).
    Other(String),
}

const STOP_REASONS: [(StopReason, &str); 13] = [
    (StopReason::StoppedBySupervisor, "stopped by supervisor"),
    (StopReason::AgentLoggedOut, "agent logged out"),
    (
        StopReason::SupervisorDisconnected,
        "supervisor disconnected",
    ),
    (StopReason::EndpointDisconnected, "endpoint disconnected"),
    (StopReason::EndpointHeartbeatLost, "endpoint heartbeat lost"),
    (StopReason::EndpointNeverAttached, "endpoint never attached"),
    (StopReason::EndpointDetached, "endpoint detached"),
    (StopReason::EndpointProtocolError, "endpoint protocol error"),
    (
        StopReason::EndpointRefusedAttaches,
        "endpoint closed after repeated refused attaches",
    ),
    (StopReason::NonAcdCall, "non-ACD call (StopSMNonACDCall)"),
    (StopReason::ApplianceBusy, "appliance busy"),
    (StopReason::ServiceBusy, "monitor service busy"),
    (StopReason::ServiceStopped, "monitor service stopped"),
];

impl StopReason {
    /// The reason's text on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::Other(s) => s,
            known => STOP_REASONS
                .iter()
                .find(|(r, _)| r == known)
                .map_or("", |(_, t)| t),
        }
    }

    /// The reason a server said.
    pub fn from_wire(text: &str) -> StopReason {
        STOP_REASONS
            .iter()
            .find(|(_, t)| *t == text)
            .map_or_else(|| StopReason::Other(text.to_owned()), |(r, _)| r.clone())
    }

    /// True when the monitor ended because of the agent, the supervisor's own wish or a policy
    /// (StopSMNonACDCall: the agent's own call is not to be heard, and a monitor started again
    /// at once would end again): an endpoint does not start it again on its own. Any other end
    /// (the endpoint's links, the appliance) is worth starting again.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            StopReason::StoppedBySupervisor | StopReason::AgentLoggedOut | StopReason::NonAcdCall
        )
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server sends unasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An agent's state changed (to its team's supervisors and monitor mode).
    AgentState {
        /// The agent's id.
        agent: String,
        /// The new state.
        state: String,
    },
    /// To the agent (WarnIfSilentMonitored): a monitor of it started.
    MonitoredStarted {
        /// Monitor id.
        monitor: u64,
    },
    /// To the agent (WarnIfSilentMonitored): a monitor of it now hears this call of the
    /// agent's (each call, so a mobile agent is warned per customer call).
    MonitoredCall {
        /// Monitor id.
        monitor: u64,
        /// The call, as lists name it.
        call: String,
        /// The CTI Server's CallType, when it named the call; the frame also says whether that
        /// is a call the ACD delivered (`acd`).
        call_type: Option<u16>,
    },
    /// To the agent (WarnIfSilentMonitored): a monitor of it ended.
    MonitoredStopped {
        /// Monitor id.
        monitor: u64,
    },
    /// To the supervisor: its monitor ended.
    SilentMonitorStopped {
        /// Monitor id.
        monitor: u64,
        /// The agent's id.
        agent: String,
        /// Why.
        reason: StopReason,
    },
    /// The server's heartbeat (answer with `HeartbeatReply`).
    Heartbeat {
        /// Sequence number.
        seq: u64,
    },
    /// The connection ends: why.
    ProtocolError {
        /// Why.
        reason: String,
    },
}

/// Reads the fields of one reply or event (each error names the message and the field).
struct Read<'a> {
    msg: &'static str,
    f: &'a Frame,
}

impl Read<'_> {
    fn err(&self, field: &'static str, problem: &'static str) -> ParseError {
        ParseError::Field {
            msg: self.msg,
            field,
            problem,
        }
    }

    fn str(&self, field: &'static str) -> Result<String, ParseError> {
        self.f
            .str(field)
            .map(str::to_owned)
            .ok_or_else(|| self.err(field, "must be a string"))
    }

    fn u64(&self, field: &'static str) -> Result<u64, ParseError> {
        self.f
            .u64(field)
            .ok_or_else(|| self.err(field, "must be a whole number"))
    }

    fn list<T: serde::de::DeserializeOwned>(
        &self,
        field: &'static str,
    ) -> Result<Vec<T>, ParseError> {
        let v = self.f.fields.get(field).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|_| self.err(field, "must be a list of items"))
    }
}

/// A frame named `msg` with `result: ok` and `fields`.
fn ok(msg: &str, fields: impl IntoIterator<Item = (&'static str, Value)>) -> Frame {
    let mut f = Frame::new(msg).with("result", "ok");
    for (k, v) in fields {
        f = f.with(k, v);
    }
    f
}

fn json<T: Serialize>(v: &T) -> Value {
    // Our own list items always serialise.
    serde_json::to_value(v).expect("list items serialise")
}

impl Reply {
    /// The frame the server sends.
    pub fn to_frame(&self) -> Frame {
        match self {
            Reply::Refused { request, reason } => Frame::new(&format!("{request}Reply"))
                .with("result", "refused")
                .with("reason", reason.clone()),
            Reply::Login {
                session,
                uid,
                heartbeat_ms,
            } => ok(
                "LoginReply",
                [
                    ("session", Value::from(*session)),
                    ("uid", Value::from(uid.clone())),
                    ("heartbeat_ms", Value::from(*heartbeat_ms)),
                ],
            ),
            Reply::SetAgentState => ok("SetAgentStateReply", []),
            Reply::AgentList(v) => Frame::new("AgentList").with("agents", json(v)),
            Reply::CallList(v) => Frame::new("CallList").with("calls", json(v)),
            Reply::FlowList(v) => Frame::new("FlowList").with("flows", json(v)),
            Reply::BindingList(v) => Frame::new("BindingList").with("bindings", json(v)),
            Reply::MonitorList(v) => Frame::new("MonitorList").with("monitors", json(v)),
            Reply::PeerList(v) => Frame::new("PeerList").with("peers", json(v)),
            Reply::Bind { agent, endpoint } => ok(
                "BindReply",
                [
                    ("agent", Value::from(agent.clone())),
                    ("endpoint", Value::from(endpoint.to_string())),
                ],
            ),
            Reply::StartSilentMonitor(g) => {
                let mut f = ok(
                    "StartSilentMonitorReply",
                    [
                        ("monitor", Value::from(g.monitor)),
                        ("uid", Value::from(format!("monitor.{}", g.monitor))),
                        ("agent", Value::from(g.agent.clone())),
                        ("key", Value::from(g.key.clone())),
                    ],
                );
                if let Some(ms) = &g.monitor_service {
                    f = f.with("monitor_service", ms.clone());
                }
                f
            }
            Reply::StopSilentMonitor { stopped } => ok(
                "StopSilentMonitorReply",
                [("stopped", Value::from(*stopped))],
            ),
            Reply::HeartbeatReply { seq } => Frame::new("HeartbeatReply").with("seq", *seq),
        }
    }

    /// The reply in `f` (a client reads the answer to its request).
    pub fn parse(f: &Frame) -> Result<Reply, ParseError> {
        if f.str("result") == Some("refused") {
            let request = f.msg.strip_suffix("Reply").unwrap_or(&f.msg).to_owned();
            let reason = f
                .str("reason")
                .unwrap_or("refused without a reason")
                .to_owned();
            return Ok(Reply::Refused { request, reason });
        }
        let name = Self::known(&f.msg).ok_or_else(|| ParseError::Unknown {
            name: f
                .msg
                .chars()
                .take(super::request::MAX_ECHOED_NAME)
                .collect(),
        })?;
        let r = Read { msg: name, f };
        Ok(match name {
            "LoginReply" => Reply::Login {
                session: r.u64("session")?,
                uid: r.str("uid")?,
                heartbeat_ms: r.u64("heartbeat_ms")?,
            },
            "SetAgentStateReply" => Reply::SetAgentState,
            "AgentList" => Reply::AgentList(r.list("agents")?),
            "CallList" => Reply::CallList(r.list("calls")?),
            "FlowList" => Reply::FlowList(r.list("flows")?),
            "BindingList" => Reply::BindingList(r.list("bindings")?),
            "MonitorList" => Reply::MonitorList(r.list("monitors")?),
            "PeerList" => Reply::PeerList(r.list("peers")?),
            "BindReply" => Reply::Bind {
                agent: r.str("agent")?,
                endpoint: r
                    .str("endpoint")?
                    .parse()
                    .map_err(|_| r.err("endpoint", "must be an IP address and port"))?,
            },
            "StartSilentMonitorReply" => Reply::StartSilentMonitor(Grant {
                monitor: r.u64("monitor")?,
                agent: r.str("agent")?,
                key: r.str("key")?,
                monitor_service: f.str("monitor_service").map(str::to_owned),
            }),
            "StopSilentMonitorReply" => Reply::StopSilentMonitor {
                stopped: r.u64("stopped")?,
            },
            _ => Reply::HeartbeatReply { seq: r.u64("seq")? },
        })
    }

    fn known(name: &str) -> Option<&'static str> {
        [
            "LoginReply",
            "SetAgentStateReply",
            "AgentList",
            "CallList",
            "FlowList",
            "BindingList",
            "MonitorList",
            "PeerList",
            "BindReply",
            "StartSilentMonitorReply",
            "StopSilentMonitorReply",
            "HeartbeatReply",
        ]
        .into_iter()
        .find(|n| *n == name)
    }
}

impl Event {
    /// The frame the server sends.
    pub fn to_frame(&self) -> Frame {
        match self {
            Event::AgentState { agent, state } => Frame::new("AgentStateEvent")
                .with("agent", agent.clone())
                .with("state", state.clone()),
            Event::MonitoredStarted { monitor } => {
                Frame::new("SilentMonitorStartedEvent").with("monitor", *monitor)
            }
            Event::MonitoredStopped { monitor } => {
                Frame::new("SilentMonitorStoppedEvent").with("monitor", *monitor)
            }
            Event::MonitoredCall {
                monitor,
                call,
                call_type,
            } => {
                let f = Frame::new("SilentMonitorCallEvent")
                    .with("monitor", *monitor)
                    .with("call", call.clone());
                match call_type {
                    Some(t) => f
                        .with("call_type", u64::from(*t))
                        .with("acd", crate::router::cti::is_acd_call_type(*t)),
                    None => f,
                }
            }
            Event::SilentMonitorStopped {
                monitor,
                agent,
                reason,
            } => Frame::new("SilentMonitorStopped")
                .with("monitor", *monitor)
                .with("agent", agent.clone())
                .with("reason", reason.as_str()),
            Event::Heartbeat { seq } => Frame::new("Heartbeat").with("seq", *seq),
            Event::ProtocolError { reason } => {
                Frame::new("ProtocolError").with("reason", reason.clone())
            }
        }
    }

    /// The event in `f`, if `f` is one.
    pub fn parse(f: &Frame) -> Result<Event, ParseError> {
        let name = [
            "AgentStateEvent",
            "SilentMonitorStartedEvent",
            "SilentMonitorStoppedEvent",
            "SilentMonitorCallEvent",
            "SilentMonitorStopped",
            "Heartbeat",
            "ProtocolError",
        ]
        .into_iter()
        .find(|n| *n == f.msg)
        .ok_or_else(|| ParseError::Unknown {
            name: f
                .msg
                .chars()
                .take(super::request::MAX_ECHOED_NAME)
                .collect(),
        })?;
        let r = Read { msg: name, f };
        Ok(match name {
            "AgentStateEvent" => Event::AgentState {
                agent: r.str("agent")?,
                state: r.str("state")?,
            },
            "SilentMonitorStartedEvent" => Event::MonitoredStarted {
                monitor: r.u64("monitor")?,
            },
            "SilentMonitorStoppedEvent" => Event::MonitoredStopped {
                monitor: r.u64("monitor")?,
            },
            "SilentMonitorCallEvent" => Event::MonitoredCall {
                monitor: r.u64("monitor")?,
                call: r.str("call")?,
                call_type: f
                    .u64("call_type")
                    .map(|t| u16::try_from(t).map_err(|_| r.err("call_type", "must fit 16 bits")))
                    .transpose()?,
            },
            "SilentMonitorStopped" => Event::SilentMonitorStopped {
                monitor: r.u64("monitor")?,
                agent: r.str("agent")?,
                reason: StopReason::from_wire(&r.str("reason")?),
            },
            "Heartbeat" => Event::Heartbeat {
                seq: f.u64("seq").unwrap_or(0),
            },
            _ => Event::ProtocolError {
                reason: r.str("reason")?,
            },
        })
    }
}

#[cfg(test)]
mod tests;
