//! The peer link's frames (TCP 42029), sans-IO. The framing is the monitor service's
//! (`monitor::wire`: 4-byte length, then a media frame or a JSON control object): media frames
//! are the monitor service's unchanged (their `monitor` field is the asking side's
//! subscription id), and so are `Call`, `CallEnded`, `Heartbeat` and `HeartbeatReply`. The
//! link adds its own control objects ([`PeerMsg`]): the handshake, what the serving side sees,
//! and subscriptions.
//!
//! Rules: decoding never panics; an unknown or malformed control object is an error for that
//! one frame (the stream stays in sync), an oversized length ends the link; every list a peer
//! sends is capped ([`MAX_AGENTS`], [`MAX_CALLS_PER_AGENT`], [`MAX_SUPERVISORS`]) so a peer
//! cannot make us hold more than a site's worth.

use serde::{Deserialize, Serialize};

use crate::monitor::wire::{self, Control, Error, Media, HEADER_LEN, MAX_BODY};
use crate::router::CallView;

/// The link's protocol version (sent in `Hello`).
pub const VERSION: u32 = 1;
/// Most agents one `Seen` may carry.
pub const MAX_AGENTS: usize = 20_000;
/// Most calls one agent may be listed with.
pub const MAX_CALLS_PER_AGENT: usize = 16;
/// Most supervisors a subscription may name.
pub const MAX_SUPERVISORS: usize = 256;
/// Agents per `Seen` frame when a full picture is split (a frame is at most 64 KiB).
pub const AGENTS_PER_FRAME: usize = 64;

/// What one agent is on, as the serving appliance sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentCalls {
    /// The agent's id.
    pub agent: String,
    /// Its calls on this appliance's SPAN (empty: no longer on one).
    pub calls: Vec<CallView>,
}

/// The peer link's own control objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PeerMsg {
    /// Asking -> serving, first: who I am.
    Hello {
        /// The asking appliance's name.
        name: String,
        /// [`VERSION`].
        version: u32,
    },
    /// Serving -> asking, the answer to `Hello`.
    Welcome {
        /// The serving appliance's name.
        name: String,
    },
    /// Serving -> asking: what changed on the serving side's SPAN. With `full`, the picture
    /// starts afresh (the first after `Welcome`, and after any loss); `more` says a further
    /// frame completes it.
    Seen {
        /// Replaces everything known of this peer (the first frame of a full picture).
        full: bool,
        /// A further `Seen` frame belongs to the same picture.
        more: bool,
        /// Agents whose calls changed (an empty list: no longer on a call here).
        agents: Vec<AgentCalls>,
    },
    /// Asking -> serving: send this agent's audio, tagged `sub`; re-sent when the supervisors
    /// listening change.
    Subscribe {
        /// The asking side's subscription id (the media frames' `monitor` field).
        sub: u32,
        /// The agent's id.
        agent: String,
        /// The supervisors on whose behalf (for the serving side's audit trail).
        supervisors: Vec<String>,
    },
    /// Asking -> serving: stop sending `sub`.
    Unsubscribe {
        /// The subscription.
        sub: u32,
    },
    /// Either way: a request was refused; the link stays.
    Refused {
        /// What was refused (the subscription, when it was one).
        sub: Option<u32>,
        /// Why.
        reason: String,
    },
}

impl PeerMsg {
    /// The object's `"type"`.
    pub fn name(&self) -> &'static str {
        match self {
            PeerMsg::Hello { .. } => "Hello",
            PeerMsg::Welcome { .. } => "Welcome",
            PeerMsg::Seen { .. } => "Seen",
            PeerMsg::Subscribe { .. } => "Subscribe",
            PeerMsg::Unsubscribe { .. } => "Unsubscribe",
            PeerMsg::Refused { .. } => "Refused",
        }
    }

    /// Appends the whole frame (prefix included) to `out`; a body over the frame limit is
    /// refused and `out` left as it was.
    pub fn append(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        // Strings, numbers and lists of them always serialise.
        serde_json::to_writer(&mut *out, self).expect("peer message serialises");
        let len = out.len() - start - HEADER_LEN;
        if len > MAX_BODY {
            out.truncate(start);
            return Err(Error::TooLarge { len, max: MAX_BODY });
        }
        out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut v = Vec::new();
        self.append(&mut v)?;
        Ok(v)
    }

    /// Refuses lists longer than a site holds.
    fn check_limits(&self) -> Result<(), Error> {
        let too_many = |what: &str, n: usize, max: usize| {
            Err(Error::Control(format!(
                "{what}: {n} entries, at most {max}"
            )))
        };
        match self {
            PeerMsg::Seen { agents, .. } if agents.len() > MAX_AGENTS => {
                too_many("Seen.agents", agents.len(), MAX_AGENTS)
            }
            PeerMsg::Seen { agents, .. } => {
                match agents.iter().find(|a| a.calls.len() > MAX_CALLS_PER_AGENT) {
                    Some(a) => too_many("Seen.calls", a.calls.len(), MAX_CALLS_PER_AGENT),
                    None => Ok(()),
                }
            }
            PeerMsg::Subscribe { supervisors, .. } if supervisors.len() > MAX_SUPERVISORS => {
                too_many("Subscribe.supervisors", supervisors.len(), MAX_SUPERVISORS)
            }
            _ => Ok(()),
        }
    }
}

/// A decoded peer frame.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerFrame<'a> {
    /// A subscription's RTP packet (`monitor` is the subscription id).
    Media(Media<'a>),
    /// One of the monitor service's control objects (`Call`, `CallEnded`, heartbeats).
    Control(Control),
    /// One of the link's own.
    Peer(PeerMsg),
}

/// If `buf` starts with a whole frame, the frame and its total length. Errors as
/// `monitor::wire::decode`: all but `Incomplete` and `TooLarge` leave the stream in sync, the
/// bad frame's length being `monitor::wire::check`'s answer.
pub fn decode(buf: &[u8]) -> Result<(PeerFrame<'_>, usize), Error> {
    match wire::decode(buf) {
        Ok((wire::Frame::Media(m), n)) => Ok((PeerFrame::Media(m), n)),
        Ok((wire::Frame::Control(c), n)) => Ok((PeerFrame::Control(c), n)),
        Err(Error::Control(monitor_err)) => {
            let total = wire::check(buf)?;
            let body = &buf[HEADER_LEN..total];
            match serde_json::from_slice::<PeerMsg>(body) {
                Ok(m) => {
                    m.check_limits()?;
                    Ok((PeerFrame::Peer(m), total))
                }
                // Neither the monitor service's object nor ours: say what ours said unless
                // the type is one of the monitor service's.
                Err(e) if is_peer_type(body) => Err(Error::Control(e.to_string())),
                Err(_) => Err(Error::Control(monitor_err)),
            }
        }
        Err(e) => Err(e),
    }
}

/// True when a control body's `"type"` names one of [`PeerMsg`]'s.
fn is_peer_type(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Tagged<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    let Ok(t) = serde_json::from_slice::<Tagged<'_>>(body) else {
        return false;
    };
    matches!(
        t.kind,
        Some("Hello" | "Welcome" | "Seen" | "Subscribe" | "Unsubscribe" | "Refused")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Direction;
    use crate::codec::PayloadMap;
    use crate::time::Timestamp;

    fn call(id: &str) -> CallView {
        CallView {
            agent: None,
            agent_id: Some("6001".into()),
            uid: format!("call.{id}"),
            call_id: id.into(),
            from: "4930".into(),
            to: "6001".into(),
            state: "Answered".into(),
            hold: false,
            started: 1.5,
            media: vec!["10.0.0.1:4000".into()],
            appliance: Some("c".into()),
        }
    }

    #[test]
    fn every_message_round_trips_and_the_monitor_objects_pass_through() {
        let msgs = [
            PeerMsg::Hello {
                name: "a".into(),
                version: VERSION,
            },
            PeerMsg::Welcome { name: "c".into() },
            PeerMsg::Seen {
                full: true,
                more: false,
                agents: vec![AgentCalls {
                    agent: "6001".into(),
                    calls: vec![call("x1")],
                }],
            },
            PeerMsg::Subscribe {
                sub: 3,
                agent: "6001".into(),
                supervisors: vec!["s1".into(), "s2".into()],
            },
            PeerMsg::Unsubscribe { sub: 3 },
            PeerMsg::Refused {
                sub: Some(3),
                reason: "unknown agent".into(),
            },
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            m.append(&mut bytes).unwrap();
        }
        let media = Media {
            monitor: 3,
            stream: 9,
            direction: Direction::FromAgent,
            capture_ts: Timestamp::from_nanos(5),
            rtp: &[0x80, 0, 1],
        };
        media.append(&mut bytes).unwrap();
        let call_notice = Control::Call {
            monitor: 3,
            call_id: "x1".into(),
            payloads: PayloadMap::default(),
            started: Timestamp::from_nanos(7),
            appliance: None,
        };
        call_notice.append(&mut bytes).unwrap();
        let mut rest = &bytes[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let (f, n) = decode(rest).unwrap();
            got.push(f);
            rest = &rest[n..];
        }
        let mut want: Vec<PeerFrame<'_>> = msgs.iter().cloned().map(PeerFrame::Peer).collect();
        want.push(PeerFrame::Media(media));
        want.push(PeerFrame::Control(call_notice));
        assert_eq!(got, want);
    }

    #[test]
    fn bad_objects_are_errors_for_one_frame_and_lists_are_capped() {
        let framed = |body: &str| {
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(body.as_bytes());
            v
        };
        let bad_sub = framed(r#"{"type":"Subscribe","sub":"x","agent":"1","supervisors":[]}"#);
        assert!(
            matches!(decode(&bad_sub), Err(Error::Control(e)) if e.contains("invalid type")),
            "{:?}",
            decode(&bad_sub)
        );
        let unknown = framed(r#"{"type":"Frobnicate"}"#);
        assert!(matches!(decode(&unknown), Err(Error::Control(_))));
        let many: Vec<String> = (0..=MAX_SUPERVISORS).map(|i| format!("s{i}")).collect();
        let sub = PeerMsg::Subscribe {
            sub: 1,
            agent: "1".into(),
            supervisors: many,
        };
        let bytes = sub.to_bytes().unwrap();
        assert!(
            matches!(decode(&bytes), Err(Error::Control(e)) if e.contains("at most")),
            "a peer cannot make us hold more than a site"
        );
        assert_eq!(
            wire::check(&bytes),
            Ok(bytes.len()),
            "the stream stays in sync"
        );
    }
}
