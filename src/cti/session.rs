//! The CTI Server client's session, sans-IO: one connection at a time to side A or side B,
//! fed `now`, the connection's outcome and its bytes; returns what to send, when to connect
//! or close, and the events it decoded ([`CtiEvent`]). Tested on a simulated clock.
//!
//! Rules (the CTI Server Message Reference Guide's session rules, docs/CTI.md):
//! - Sides are tried alternately: a failed connection, a refused or unanswered OPEN_REQ, or a
//!   dropped session moves to the other side, after a wait that starts at [`FIRST_RETRY`] and
//!   doubles to [`LAST_RETRY`] while nothing opens (an open session resets it).
//! - OPEN_REQ asks for ALL_EVENTS with the configured version and peripheral; IdleTimeout is
//!   four heartbeat intervals, at least 20 s. An OPEN_CONF must come within [`OPEN_TIMEOUT`].
//! - A HEARTBEAT_REQ every interval; the third one unanswered, or a FAILURE_CONF to one, or a
//!   FAILURE_EVENT saying the CTI Server is offline, resets the connection.
//! - Unknown message types and floating fields are skipped and counted; a body that does not
//!   fit its type, or a length over the limit, is counted and resets the connection (the
//!   stream cannot be trusted after it).
//! - Closing (shutdown) sends CLOSE_REQ and waits up to [`CLOSE_WAIT`] for CLOSE_CONF.

use std::collections::VecDeque;

use super::wire::{self, decode, AgentRef, CallRef, Encoder, Error, Message, Rtp};
use crate::time::{Span, Timestamp};

/// First wait before the next try.
pub const FIRST_RETRY: Span = Span::from_secs(1);
/// Longest wait between tries.
pub const LAST_RETRY: Span = Span::from_secs(30);
/// Longest wait for OPEN_CONF (the guide: at least 30 s).
pub const OPEN_TIMEOUT: Span = Span::from_secs(30);
/// Longest wait for CLOSE_CONF.
pub const CLOSE_WAIT: Span = Span::from_secs(5);
/// Heartbeats unanswered before the connection is reset.
pub const MAX_UNANSWERED: u32 = 3;
/// E_CTI_CTI_SERVER_OFFLINE.
const CTI_SERVER_OFFLINE: u32 = 15;

/// How the session is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Protocol version asked for in OPEN_REQ (19: 1-byte floating fields; 20+: 2-byte).
    pub version: u32,
    /// PeripheralID (0xFFFFFFFF: all).
    pub peripheral: u32,
    /// ClientID.
    pub client_id: String,
    /// ClientPassword (may be empty).
    pub password: String,
    /// Heartbeat interval (at least 5 s by the guide).
    pub heartbeat: Span,
    /// How many sides are configured (1 or 2).
    pub sides: usize,
}

impl SessionConfig {
    /// IdleTimeout for OPEN_REQ, in seconds: four heartbeat intervals, at least 20.
    pub fn idle_timeout(&self) -> u32 {
        let secs = self.heartbeat.as_nanos() * 4 / 1_000_000_000;
        secs.clamp(20, i64::from(u32::MAX - 1)) as u32
    }
}

/// What the session decoded, for the appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtiEvent {
    /// A session is open on this side (0 = A, 1 = B).
    Open {
        /// The side.
        side: usize,
    },
    /// The session went down (it was open).
    Down {
        /// Why.
        reason: String,
    },
    /// An agent's state, by name (docs/CTI.md maps the numbers).
    AgentState {
        /// Who.
        agent: AgentRef,
        /// The state's name in the control plane's set.
        state: &'static str,
    },
    /// The client is associated with a call.
    CallBegan {
        /// The call.
        call: CallRef,
        /// CallType.
        call_type: u16,
        /// Calling number.
        ani: String,
        /// Called number.
        dnis: String,
    },
    /// The client is no longer associated with a call, or it was cleared.
    CallEnded {
        /// The call.
        call: CallRef,
    },
    /// A phone's RTP stream started.
    RtpStarted(Rtp),
    /// A phone's RTP stream stopped.
    RtpStopped(Rtp),
}

/// What the shell does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtiAction {
    /// Connect to side `side` (0 = A, 1 = B).
    Connect {
        /// The side.
        side: usize,
    },
    /// Send these bytes.
    Send(Vec<u8>),
    /// Close the connection.
    Close(String),
    /// Tell the appliance.
    Event(CtiEvent),
}

/// Counters of what came in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtiCounters {
    /// Messages decoded, by name.
    pub messages: std::collections::BTreeMap<&'static str, u64>,
    /// Floating fields skipped (tags this client does not read).
    pub skipped_fields: u64,
    /// Messages that did not fit their type or length (each reset the connection).
    pub malformed: u64,
    /// Connections made (the first included).
    pub connects: u64,
    /// Sessions that went down.
    pub resets: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Down { retry_at: Timestamp },
    Connecting,
    Opening { since: Timestamp },
    Open { next_beat: Timestamp },
    Closing { until: Timestamp },
    Closed,
}

/// The client session.
pub struct Session {
    config: SessionConfig,
    encoder: Encoder,
    state: State,
    side: usize,
    retry: Span,
    invoke: u32,
    unanswered: u32,
    buf: Vec<u8>,
    counters: CtiCounters,
    out: VecDeque<CtiAction>,
}

impl Session {
    /// A session that connects to side A at once.
    pub fn new(config: SessionConfig, now: Timestamp) -> Session {
        Session {
            encoder: Encoder::new(config.version),
            config,
            state: State::Down { retry_at: now },
            side: 0,
            retry: FIRST_RETRY,
            invoke: 0,
            unanswered: 0,
            buf: Vec::new(),
            counters: CtiCounters::default(),
            out: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<CtiAction> {
        self.out.pop_front()
    }

    /// The counters so far.
    pub fn counters(&self) -> &CtiCounters {
        &self.counters
    }

    /// The side of the open session, if one is open.
    pub fn open_side(&self) -> Option<usize> {
        matches!(self.state, State::Open { .. }).then_some(self.side)
    }

    /// When [`Session::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            State::Opening { since } => Some(since + OPEN_TIMEOUT),
            State::Open { next_beat } => Some(next_beat),
            State::Closing { until } => Some(until),
            State::Connecting | State::Closed => None,
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.state {
            State::Down { retry_at } if now >= retry_at => {
                self.state = State::Connecting;
                self.counters.connects += 1;
                self.out.push_back(CtiAction::Connect { side: self.side });
            }
            State::Opening { since } if now >= since + OPEN_TIMEOUT => {
                self.reset(now, "no OPEN_CONF within 30 s".into());
            }
            State::Open { next_beat } if now >= next_beat => {
                if self.unanswered >= MAX_UNANSWERED {
                    return self.reset(now, format!("{MAX_UNANSWERED} heartbeats unanswered"));
                }
                self.unanswered += 1;
                let id = self.next_invoke();
                self.send(self.encoder.heartbeat_req(id));
                self.state = State::Open {
                    next_beat: now + self.config.heartbeat,
                };
            }
            State::Closing { until } if now >= until => self.closed(),
            _ => {}
        }
    }

    /// The connection to the current side is open: OPEN_REQ.
    pub fn connected(&mut self, now: Timestamp) {
        self.buf.clear();
        self.state = State::Opening { since: now };
        let id = self.next_invoke();
        let req = self.encoder.open_req(
            id,
            self.config.idle_timeout(),
            self.config.peripheral,
            &self.config.client_id,
            &self.config.password,
        );
        self.send(req);
    }

    /// The connection failed or closed.
    pub fn disconnected(&mut self, now: Timestamp, reason: &str) {
        match self.state {
            State::Closing { .. } | State::Closed => self.closed(),
            State::Down { .. } => {}
            _ => self.went_down(now, reason.to_owned()),
        }
    }

    /// Shutting down: CLOSE_REQ if a session is open, then close.
    pub fn close(&mut self, now: Timestamp) {
        if matches!(self.state, State::Open { .. }) {
            let id = self.next_invoke();
            self.send(self.encoder.close_req(id, 0));
            self.state = State::Closing {
                until: now + CLOSE_WAIT,
            };
        } else {
            self.closed();
        }
    }

    fn closed(&mut self) {
        if !matches!(self.state, State::Closed) {
            self.out.push_back(CtiAction::Close("closed".into()));
        }
        self.state = State::Closed;
    }

    /// Bytes from the CTI Server.
    pub fn handle_bytes(&mut self, now: Timestamp, bytes: &[u8]) {
        if !self.reading() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut used = 0;
        while self.reading() {
            match decode(&self.buf[used..], self.config.version) {
                Ok((m, n, skipped)) => {
                    used += n;
                    self.counters.skipped_fields += u64::from(skipped.fields);
                    *self.counters.messages.entry(m.name()).or_default() += 1;
                    self.handle_message(now, m);
                }
                Err(Error::Incomplete) => break,
                Err(e) => {
                    self.counters.malformed += 1;
                    self.buf.clear();
                    return self.reset(now, format!("bad message from the CTI Server: {e}"));
                }
            }
        }
        self.buf.drain(..used.min(self.buf.len()));
    }

    /// Whether the connection's bytes are read (not before it is up, not after a reset).
    fn reading(&self) -> bool {
        matches!(
            self.state,
            State::Opening { .. } | State::Open { .. } | State::Closing { .. }
        )
    }

    fn handle_message(&mut self, now: Timestamp, m: Message) {
        match (self.state, m) {
            (State::Opening { .. }, Message::OpenConf { .. }) => {
                self.state = State::Open {
                    next_beat: now + self.config.heartbeat,
                };
                self.retry = FIRST_RETRY;
                self.unanswered = 0;
                self.event(CtiEvent::Open { side: self.side });
            }
            (State::Opening { .. }, Message::FailureConf { status, .. }) => {
                self.reset(now, format!("OPEN_REQ refused: {}", status_text(status)));
            }
            (State::Open { .. }, Message::FailureConf { status, .. }) => {
                self.reset(
                    now,
                    format!(
                        "request refused, the server may be offline: {}",
                        status_text(status)
                    ),
                );
            }
            (_, Message::FailureEvent { status }) if status == CTI_SERVER_OFFLINE => {
                self.reset(now, "the CTI Server is offline (FAILURE_EVENT)".into());
            }
            (_, Message::HeartbeatConf { .. }) => self.unanswered = 0,
            (State::Closing { .. }, Message::CloseConf { .. }) => self.closed(),
            (State::Open { .. }, m) => self.open_message(m),
            _ => {}
        }
    }

    /// A message of an open session, as an event for the appliance.
    fn open_message(&mut self, m: Message) {
        let e = match m {
            Message::AgentState { state, agent, .. } => CtiEvent::AgentState {
                agent,
                state: state_name(state),
            },
            Message::BeginCall {
                call,
                call_type,
                ani,
                dnis,
            } => CtiEvent::CallBegan {
                call,
                call_type,
                ani,
                dnis,
            },
            Message::EndCall { call } => CtiEvent::CallEnded { call },
            Message::Call {
                kind: wire::CallEventKind::Cleared,
                call,
            } => CtiEvent::CallEnded { call },
            Message::RtpStarted(r) => CtiEvent::RtpStarted(r),
            Message::RtpStopped(r) => CtiEvent::RtpStopped(r),
            _ => return,
        };
        self.event(e);
    }

    /// Drops the connection and tries the other side after the backoff.
    fn reset(&mut self, now: Timestamp, reason: String) {
        self.out.push_back(CtiAction::Close(reason.clone()));
        self.went_down(now, reason);
    }

    fn went_down(&mut self, now: Timestamp, reason: String) {
        if matches!(self.state, State::Open { .. }) {
            self.counters.resets += 1;
            self.event(CtiEvent::Down { reason });
        }
        self.side = (self.side + 1) % self.config.sides.max(1);
        self.state = State::Down {
            retry_at: now + self.retry,
        };
        self.retry = Span::from_nanos((self.retry.as_nanos() * 2).min(LAST_RETRY.as_nanos()));
        self.unanswered = 0;
        self.buf.clear();
    }

    fn next_invoke(&mut self) -> u32 {
        self.invoke = self.invoke.wrapping_add(1);
        self.invoke
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.out.push_back(CtiAction::Send(bytes));
    }

    fn event(&mut self, e: CtiEvent) {
        self.out.push_back(CtiAction::Event(e));
    }
}

/// The control plane's name of a CTI AgentState (docs/CTI.md): 0 login, 1 logout, 2 not
/// ready, 3 available, 4 talking, 5 work not ready, 6 work ready, 7 busy other, 8 reserved,
/// 9 unknown, 10 hold; 11 active as talking, 12 paused and 14 not active as not ready,
/// 13 interrupted as busy other; anything else unknown.
pub fn state_name(state: u16) -> &'static str {
    match state {
        0 => "Login",
        1 => "Logout",
        2 | 12 | 14 => "NotReady",
        3 => "Available",
        4 | 11 => "Talking",
        5 => "WorkNotReady",
        6 => "WorkReady",
        7 | 13 => "BusyOther",
        8 => "Reserved",
        10 => "Hold",
        _ => "Unknown",
    }
}

/// A CTI status code with its name where known.
pub fn status_text(status: u32) -> String {
    let name = match status {
        0 => "E_CTI_NO_ERROR",
        1 => "E_CTI_INVALID_VERSION",
        2 => "E_CTI_INVALID_MESSAGE_LENGTH",
        4 => "E_CTI_SESSION_NOT_OPEN",
        6 => "E_CTI_REQUIRED_DATA_MISSING",
        7 => "E_CTI_INVALID_PERIPHERAL_ID",
        12 => "E_CTI_FUNCTION_NOT_AVAILABLE",
        15 => "E_CTI_CTI_SERVER_OFFLINE",
        16 => "E_CTI_TIMEOUT",
        17 => "E_CTI_UNSPECIFIED_FAILURE",
        18 => "E_CTI_INVALID_TIMEOUT",
        19 => "E_CTI_INVALID_SERVICE_MASK",
        20 => "E_CTI_INVALID_CALL_MSG_MASK",
        21 => "E_CTI_INVALID_AGENT_STATE_MASK",
        36 => "E_CTI_INVALID_PASSWORD",
        92 => "E_CTI_SERVER_NOT_MASTER",
        107 => "E_CTI_INVALID_CLIENT_FOR_STANDBY",
        _ => return format!("status {status}"),
    };
    format!("{name} ({status})")
}

#[cfg(test)]
mod tests;
