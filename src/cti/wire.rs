//! The CTI Server protocol's framing and the messages an ALL_EVENTS client needs, sans-IO
//! (docs/CTI.md; layouts from the CTI Server Message Reference Guide as collected in
//! ../shared/CTI-SERVER.md).
//!
//! A message is an 8-byte header (`MessageLength` u32 of the body, `MessageType` u32, both
//! big-endian), a fixed part whose layout the type and the negotiated protocol version select,
//! then floating fields: tag and length of 1 byte each up to protocol version 19, 2 bytes each
//! from version 20 ([`Floating`]).
//!
//! Rules: decoding never panics and never trusts a length: a body over [`MAX_BODY`] is
//! [`Error::TooLarge`] (the stream cannot be resynchronised: reset the connection), a body
//! shorter than its fixed part or a floating field running past the body is
//! [`Error::Malformed`] for that message (its length is known, the next one is read);
//! unknown message types are [`Message::Other`] and unknown tags are skipped, both counted by
//! the caller, never fatal. Where Cisco documents two tags for one field (AgentID 5 and 194,
//! the client signature 3 and 23) both are accepted.

use std::fmt;

/// Header bytes.
pub const HEADER_LEN: usize = 8;
/// Largest body accepted (the v24 guide: 12,500 bytes with the header).
pub const MAX_BODY: usize = 12_500 - HEADER_LEN;
/// The first protocol version with 2-byte floating tags and lengths.
pub const WIDE_FIELDS_SINCE: u32 = 20;

/// Message types (the ones this client sends, answers or reads).
pub mod msg {
    /// Negative confirmation of any request.
    pub const FAILURE_CONF: u32 = 1;
    /// Unsolicited failure.
    pub const FAILURE_EVENT: u32 = 2;
    /// Client: open a session.
    pub const OPEN_REQ: u32 = 3;
    /// Server: session open.
    pub const OPEN_CONF: u32 = 4;
    /// Client: are you there?
    pub const HEARTBEAT_REQ: u32 = 5;
    /// Server: the answer.
    pub const HEARTBEAT_CONF: u32 = 6;
    /// Client: close the session.
    pub const CLOSE_REQ: u32 = 7;
    /// Server: closed.
    pub const CLOSE_CONF: u32 = 8;
    /// A call arrives at a device.
    pub const CALL_DELIVERED: u32 = 9;
    /// A call is answered.
    pub const CALL_ESTABLISHED: u32 = 10;
    /// A call is put on hold.
    pub const CALL_HELD: u32 = 11;
    /// A held call is retrieved.
    pub const CALL_RETRIEVED: u32 = 12;
    /// A call is cleared.
    pub const CALL_CLEARED: u32 = 13;
    /// A party left a call.
    pub const CALL_CONNECTION_CLEARED: u32 = 14;
    /// A call was conferenced.
    pub const CALL_CONFERENCED: u32 = 17;
    /// A call was transferred.
    pub const CALL_TRANSFERRED: u32 = 18;
    /// The client is associated with a call.
    pub const BEGIN_CALL: u32 = 23;
    /// The client is no longer associated with a call.
    pub const END_CALL: u32 = 24;
    /// An agent's state changed.
    pub const AGENT_STATE: u32 = 30;
    /// A system event (peripheral online/offline, CTI Server online/offline).
    pub const SYSTEM_EVENT: u32 = 31;
    /// An RTP stream of a phone started.
    pub const RTP_STARTED: u32 = 116;
    /// An RTP stream of a phone stopped.
    pub const RTP_STOPPED: u32 = 117;
}

/// Floating field tags.
pub mod tag {
    /// OPEN_REQ: the client's id.
    pub const CLIENT_ID: u16 = 1;
    /// OPEN_REQ: its password.
    pub const CLIENT_PASSWORD: u16 = 2;
    /// The agent's extension.
    pub const AGENT_EXTENSION: u16 = 4;
    /// The agent's id.
    pub const AGENT_ID: u16 = 5;
    /// The agent's instrument.
    pub const AGENT_INSTRUMENT: u16 = 6;
    /// Text (SYSTEM_EVENT, FAILURE_CONF).
    pub const TEXT: u16 = 7;
    /// Calling number.
    pub const ANI: u16 = 8;
    /// Called number.
    pub const DNIS: u16 = 10;
    /// The call's device id.
    pub const CONNECTION_DEVID: u16 = 25;
    /// The phone's address (RTP events).
    pub const CLIENT_ADDRESS: u16 = 81;
    /// Where the phone sends its RTP.
    pub const SENDING_ADDRESS: u16 = 125;
    /// The port it sends it to (UINT).
    pub const SENDING_PORT: u16 = 126;
    /// The agent's id, long form.
    pub const AGENT_ID_LONG: u16 = 194;
}

/// CTI service masks.
pub mod service {
    /// Every event of the peripheral.
    pub const ALL_EVENTS: u32 = 0x10;
}

/// The call events an appliance asks for: delivered, established, held, retrieved, cleared,
/// connection cleared, conferenced, transferred, begin call, end call, call data update, RTP
/// started and stopped (`0x0060E37D`).
pub const CALL_MSG_MASK: u32 = 0x0060_E37D;
/// Every agent state (`0x3FFF`).
pub const AGENT_STATE_MASK: u32 = 0x3FFF;

/// Decoding errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a whole message yet.
    #[error("incomplete message")]
    Incomplete,
    /// A body length over the limit: the stream cannot be resynchronised.
    #[error("message body of {0} bytes exceeds the limit of {MAX_BODY}")]
    TooLarge(usize),
    /// A message whose body does not hold what its type says.
    #[error("message type {message}: {problem}")]
    Malformed {
        /// Its type.
        message: u32,
        /// What is wrong.
        problem: &'static str,
    },
}

/// If `buf` starts with a whole message, its length with the header.
pub fn check(buf: &[u8]) -> Result<usize, Error> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(Error::Incomplete);
    };
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len > MAX_BODY {
        return Err(Error::TooLarge(len));
    }
    if buf.len() < HEADER_LEN + len {
        return Err(Error::Incomplete);
    }
    Ok(HEADER_LEN + len)
}

/// Reads big-endian fields of a fixed part by offset.
struct Fixed<'a> {
    body: &'a [u8],
}

impl Fixed<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.body[at], self.body[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.body[at],
            self.body[at + 1],
            self.body[at + 2],
            self.body[at + 3],
        ])
    }
}

/// The floating fields of a message: (tag, data) pairs.
#[derive(Clone, Copy, Debug)]
pub struct Floating<'a> {
    rest: &'a [u8],
    wide: bool,
}

impl<'a> Floating<'a> {
    /// The fields in `data`, with 2-byte tags and lengths when `wide`.
    pub fn new(data: &'a [u8], wide: bool) -> Floating<'a> {
        Floating { rest: data, wide }
    }

    /// Every field, or an error when one runs past the body.
    pub fn fields(self) -> Result<Vec<(u16, &'a [u8])>, &'static str> {
        let mut out = Vec::new();
        let mut rest = self.rest;
        let head = if self.wide { 4 } else { 2 };
        while !rest.is_empty() {
            let Some(h) = rest.get(..head) else {
                return Err("a floating field header is cut off");
            };
            let (tag, len) = if self.wide {
                (
                    u16::from_be_bytes([h[0], h[1]]),
                    u16::from_be_bytes([h[2], h[3]]) as usize,
                )
            } else {
                (u16::from(h[0]), usize::from(h[1]))
            };
            let Some(data) = rest.get(head..head + len) else {
                return Err("a floating field runs past the message");
            };
            out.push((tag, data));
            rest = &rest[head + len..];
        }
        Ok(out)
    }
}

/// A floating string: up to its NUL, lossy UTF-8.
fn text(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A floating UINT.
fn uint(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?))
}

/// Who an event names: any of the agent's id, extension and instrument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentRef {
    /// AgentID (tag 5 or 194).
    pub id: Option<String>,
    /// AgentExtension (tag 4).
    pub extension: Option<String>,
    /// AgentInstrument (tag 6).
    pub instrument: Option<String>,
}

impl AgentRef {
    /// True when nothing names the agent.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.extension.is_none() && self.instrument.is_none()
    }
}

/// A call, as the CTI Server names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef {
    /// ConnectionCallID.
    pub id: u32,
    /// ConnectionDeviceID (tag 25), when sent.
    pub device: String,
}

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.device.is_empty() {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{}@{}", self.id, self.device)
        }
    }
}

/// An RTP_STARTED or RTP_STOPPED event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rtp {
    /// The call.
    pub call: CallRef,
    /// 0 input (the phone receives), 1 output (it sends), 2 both.
    pub direction: u16,
    /// ClientPort (fixed part): the phone's media port, by the likelier reading (docs/CTI.md).
    pub client_port: u32,
    /// ClientAddress (tag 81): the phone's IP address.
    pub client_address: String,
    /// SendingAddress (tag 125).
    pub sending_address: String,
    /// SendingPort (tag 126).
    pub sending_port: Option<u32>,
    /// Who.
    pub agent: AgentRef,
}

/// A call event the client follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallEventKind {
    /// CALL_DELIVERED_EVENT.
    Delivered,
    /// CALL_ESTABLISHED_EVENT.
    Established,
    /// CALL_HELD_EVENT.
    Held,
    /// CALL_RETRIEVED_EVENT.
    Retrieved,
    /// CALL_CLEARED_EVENT.
    Cleared,
    /// CALL_CONNECTION_CLEARED_EVENT.
    ConnectionCleared,
    /// CALL_CONFERENCED_EVENT.
    Conferenced,
    /// CALL_TRANSFERRED_EVENT.
    Transferred,
}

/// A message from the CTI Server, decoded as far as the client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The session is open.
    OpenConf {
        /// The request's invoke id.
        invoke_id: u32,
        /// Services granted.
        services: u32,
        /// PG status (0: all up).
        pg_status: u32,
        /// The peripheral is online.
        peripheral_online: bool,
    },
    /// A request failed.
    FailureConf {
        /// The request's invoke id.
        invoke_id: u32,
        /// Why (E_CTI_*).
        status: u32,
    },
    /// An unsolicited failure (E_CTI_CTI_SERVER_OFFLINE: close).
    FailureEvent {
        /// Why.
        status: u32,
    },
    /// The answer to a heartbeat.
    HeartbeatConf {
        /// The heartbeat's invoke id.
        invoke_id: u32,
    },
    /// The session is closed.
    CloseConf {
        /// The request's invoke id.
        invoke_id: u32,
    },
    /// A system event.
    SystemEvent {
        /// PG status.
        pg_status: u32,
        /// SystemEventID.
        event: u32,
        /// Its first argument (the peripheral for 3/4).
        arg1: u32,
    },
    /// An agent's state.
    AgentState {
        /// The peripheral.
        peripheral: u32,
        /// AgentState (0 login, 1 logout, 2 not ready, 3 available, 4 talking, ...).
        state: u16,
        /// EventReasonCode.
        reason: u16,
        /// Who.
        agent: AgentRef,
    },
    /// The client is associated with a call.
    BeginCall {
        /// The call.
        call: CallRef,
        /// CallType (1 ACD in, 8 agent out, 9 out, 10 agent inside, 12 consult, ...).
        call_type: u16,
        /// Calling number.
        ani: String,
        /// Called number.
        dnis: String,
    },
    /// The client is no longer associated with a call.
    EndCall {
        /// The call.
        call: CallRef,
    },
    /// A call event (only the call is read: see docs/CTI.md).
    Call {
        /// Which.
        kind: CallEventKind,
        /// The call.
        call: CallRef,
    },
    /// A phone's RTP stream started.
    RtpStarted(Rtp),
    /// A phone's RTP stream stopped.
    RtpStopped(Rtp),
    /// A message of a type this client does not read (skipped, counted).
    Other {
        /// Its type.
        message_type: u32,
    },
}

impl Message {
    /// A short name for counters and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::OpenConf { .. } => "open_conf",
            Message::FailureConf { .. } => "failure_conf",
            Message::FailureEvent { .. } => "failure_event",
            Message::HeartbeatConf { .. } => "heartbeat_conf",
            Message::CloseConf { .. } => "close_conf",
            Message::SystemEvent { .. } => "system_event",
            Message::AgentState { .. } => "agent_state_event",
            Message::BeginCall { .. } => "begin_call_event",
            Message::EndCall { .. } => "end_call_event",
            Message::Call { .. } => "call_event",
            Message::RtpStarted(_) => "rtp_started_event",
            Message::RtpStopped(_) => "rtp_stopped_event",
            Message::Other { .. } => "other",
        }
    }
}

/// What one decode saw besides the message: unknown floating tags skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Floating fields of tags this client does not read.
    pub fields: u32,
}

/// If `buf` starts with a whole message of protocol `version`, the message, its length and
/// what was skipped in it.
pub fn decode(buf: &[u8], version: u32) -> Result<(Message, usize, Skipped), Error> {
    let total = check(buf)?;
    let message = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[HEADER_LEN..total];
    let wide = version >= WIDE_FIELDS_SINCE;
    let (m, skipped) = decode_body(message, body, version, wide)?;
    Ok((m, total, skipped))
}

/// The fixed part's size of `message` at `version` (None: a type this client does not read).
fn fixed_size(message: u32, version: u32) -> Option<usize> {
    Some(match message {
        msg::FAILURE_CONF => 8,
        msg::FAILURE_EVENT => 4,
        msg::OPEN_CONF => match version {
            ..=18 => 26,
            19..=23 => 30,
            _ => 32,
        },
        msg::HEARTBEAT_CONF | msg::CLOSE_CONF => 4,
        msg::SYSTEM_EVENT => 26,
        msg::AGENT_STATE => {
            if version >= 19 {
                62
            } else {
                58
            }
        }
        msg::BEGIN_CALL => 26,
        msg::END_CALL => 16,
        msg::CALL_ESTABLISHED => 50,
        msg::CALL_DELIVERED
        | msg::CALL_HELD
        | msg::CALL_RETRIEVED
        | msg::CALL_CLEARED
        | msg::CALL_CONNECTION_CLEARED
        | msg::CALL_CONFERENCED
        | msg::CALL_TRANSFERRED => 16,
        msg::RTP_STARTED => 34,
        msg::RTP_STOPPED => 20,
        _ => return None,
    })
}

fn decode_body(
    message: u32,
    body: &[u8],
    version: u32,
    wide: bool,
) -> Result<(Message, Skipped), Error> {
    let Some(size) = fixed_size(message, version) else {
        return Ok((
            Message::Other {
                message_type: message,
            },
            Skipped::default(),
        ));
    };
    let bad = |problem| Error::Malformed { message, problem };
    if body.len() < size {
        return Err(bad("shorter than its fixed part"));
    }
    let f = Fixed { body };
    // Call events other than ESTABLISHED and the ones with a documented fixed part: only the
    // common prefix (the call id at 12) is read; their floating fields are not.
    let floating_from = match message {
        msg::CALL_DELIVERED
        | msg::CALL_HELD
        | msg::CALL_RETRIEVED
        | msg::CALL_CLEARED
        | msg::CALL_CONNECTION_CLEARED
        | msg::CALL_CONFERENCED
        | msg::CALL_TRANSFERRED => body.len(),
        // FAILURE_CONF of v24+ may be InvokeID, USHORT, UINT (10 bytes): no floating part then.
        msg::FAILURE_CONF if body.len() == 10 => body.len(),
        _ => size,
    };
    let fields = Floating::new(&body[floating_from..], wide)
        .fields()
        .map_err(bad)?;
    let mut fl = Fields {
        fields,
        skipped: Skipped::default(),
    };
    let m = match message {
        msg::FAILURE_CONF => Message::FailureConf {
            invoke_id: f.u32(0),
            status: if body.len() == 10 { f.u32(6) } else { f.u32(4) },
        },
        msg::FAILURE_EVENT => Message::FailureEvent { status: f.u32(0) },
        msg::OPEN_CONF => Message::OpenConf {
            invoke_id: f.u32(0),
            services: f.u32(4),
            pg_status: f.u32(12),
            peripheral_online: f.u16(20) != 0,
        },
        msg::HEARTBEAT_CONF => Message::HeartbeatConf {
            invoke_id: f.u32(0),
        },
        msg::CLOSE_CONF => Message::CloseConf {
            invoke_id: f.u32(0),
        },
        msg::SYSTEM_EVENT => Message::SystemEvent {
            pg_status: f.u32(0),
            event: f.u32(8),
            arg1: f.u32(12),
        },
        msg::AGENT_STATE => Message::AgentState {
            peripheral: f.u32(4),
            state: f.u16(30),
            reason: f.u16(32),
            agent: fl.agent(),
        },
        msg::BEGIN_CALL => Message::BeginCall {
            call: fl.call(f.u32(20)),
            call_type: f.u16(16),
            ani: fl.text(tag::ANI),
            dnis: fl.text(tag::DNIS),
        },
        msg::END_CALL => Message::EndCall {
            call: fl.call(f.u32(12)),
        },
        msg::RTP_STARTED => Message::RtpStarted(fl.rtp(f.u32(30), f.u16(12), f.u32(8))),
        msg::RTP_STOPPED => Message::RtpStopped(fl.rtp(f.u32(16), f.u16(12), f.u32(8))),
        other => Message::Call {
            kind: call_kind(other),
            call: fl.call(f.u32(12)),
        },
    };
    fl.skip_rest();
    Ok((m, fl.skipped))
}

fn call_kind(message: u32) -> CallEventKind {
    match message {
        msg::CALL_DELIVERED => CallEventKind::Delivered,
        msg::CALL_ESTABLISHED => CallEventKind::Established,
        msg::CALL_HELD => CallEventKind::Held,
        msg::CALL_RETRIEVED => CallEventKind::Retrieved,
        msg::CALL_CLEARED => CallEventKind::Cleared,
        msg::CALL_CONNECTION_CLEARED => CallEventKind::ConnectionCleared,
        msg::CALL_CONFERENCED => CallEventKind::Conferenced,
        _ => CallEventKind::Transferred,
    }
}

/// A message's floating fields, taken as they are read; the rest count as skipped.
struct Fields<'a> {
    fields: Vec<(u16, &'a [u8])>,
    skipped: Skipped,
}

impl<'a> Fields<'a> {
    fn take(&mut self, tags: &[u16]) -> Option<&'a [u8]> {
        let i = self.fields.iter().position(|(t, _)| tags.contains(t))?;
        Some(self.fields.remove(i).1)
    }

    fn text(&mut self, t: u16) -> String {
        self.take(&[t]).map(text).unwrap_or_default()
    }

    fn opt_text(&mut self, tags: &[u16]) -> Option<String> {
        self.take(tags).map(text).filter(|s| !s.is_empty())
    }

    fn agent(&mut self) -> AgentRef {
        AgentRef {
            id: self.opt_text(&[tag::AGENT_ID, tag::AGENT_ID_LONG]),
            extension: self.opt_text(&[tag::AGENT_EXTENSION]),
            instrument: self.opt_text(&[tag::AGENT_INSTRUMENT]),
        }
    }

    fn call(&mut self, id: u32) -> CallRef {
        CallRef {
            id,
            device: self.text(tag::CONNECTION_DEVID),
        }
    }

    fn rtp(&mut self, call_id: u32, direction: u16, client_port: u32) -> Rtp {
        Rtp {
            call: self.call(call_id),
            direction,
            client_port,
            client_address: self.text(tag::CLIENT_ADDRESS),
            sending_address: self.text(tag::SENDING_ADDRESS),
            sending_port: self.take(&[tag::SENDING_PORT]).and_then(uint),
            agent: self.agent(),
        }
    }

    fn skip_rest(&mut self) {
        self.skipped.fields += self.fields.len() as u32;
        self.fields.clear();
    }
}

/// Builds messages: the client's requests, and (for the mock CTI Server and tests) the
/// server's messages.
pub struct Encoder {
    version: u32,
}

impl Encoder {
    /// An encoder for protocol `version` (the floating field width follows it).
    pub fn new(version: u32) -> Encoder {
        Encoder { version }
    }

    /// A message of `message_type` with `fixed` then the floating `fields`.
    pub fn message(&self, message_type: u32, fixed: &[u8], fields: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = fixed.to_vec();
        let wide = self.version >= WIDE_FIELDS_SINCE;
        for (t, data) in fields {
            if wide {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&(data.len().min(0xFFFF) as u16).to_be_bytes());
            } else {
                body.push(*t as u8);
                body.push(data.len().min(0xFF) as u8);
            }
            body.extend_from_slice(data);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&message_type.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// OPEN_REQ as an ALL_EVENTS client.
    pub fn open_req(
        &self,
        invoke_id: u32,
        idle_timeout: u32,
        peripheral: u32,
        client_id: &str,
        password: &str,
    ) -> Vec<u8> {
        let mut fixed = Vec::with_capacity(44);
        for v in [
            invoke_id,
            self.version,
            idle_timeout,
            peripheral,
            service::ALL_EVENTS,
            CALL_MSG_MASK,
            AGENT_STATE_MASK,
            0,
            0,
            0,
            0,
        ] {
            fixed.extend_from_slice(&v.to_be_bytes());
        }
        let id = nul(client_id);
        self.message(
            msg::OPEN_REQ,
            &fixed,
            &[
                (tag::CLIENT_ID, &id),
                (tag::CLIENT_PASSWORD, password.as_bytes()),
            ],
        )
    }

    /// HEARTBEAT_REQ.
    pub fn heartbeat_req(&self, invoke_id: u32) -> Vec<u8> {
        self.message(msg::HEARTBEAT_REQ, &invoke_id.to_be_bytes(), &[])
    }

    /// CLOSE_REQ.
    pub fn close_req(&self, invoke_id: u32, status: u32) -> Vec<u8> {
        let mut fixed = invoke_id.to_be_bytes().to_vec();
        fixed.extend_from_slice(&status.to_be_bytes());
        self.message(msg::CLOSE_REQ, &fixed, &[])
    }
}

/// A NUL-terminated string, as floating STRING fields carry them.
pub fn nul(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[cfg(test)]
mod tests;
