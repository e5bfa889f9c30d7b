//! The monitor service's framing (TCP 42228), sans-IO: byte slices in, byte slices out, no
//! sockets, no clock.
//!
//! Every frame is a 4-byte big-endian body length, then the body. A body whose first byte is
//! [`MEDIA_TAG`] (0x01) is a media frame, a fixed 18-byte header and the RTP packet:
//!
//! ```text
//! 0x01 | monitor u32 BE | stream u32 BE | direction u8 (0 from agent, 1 to agent) | capture_ts i64 BE ns | rtp
//! ```
//!
//! A body whose first byte is `{` is a JSON control object named by its `"type"` ([`Control`]).
//!
//! Rules:
//! - [`check`] says whether a whole frame is buffered without looking into the body; "incomplete"
//!   means read more, not a fault. [`decode`] then returns a borrowed view ([`Frame`]): a media
//!   frame's RTP bytes borrow the caller's buffer.
//! - Bodies are capped at [`MAX_BODY`]; an announced length above it is [`Error::TooLarge`], the
//!   only error after which the stream cannot be resynchronised. Every other malformed body is a
//!   clear error for that one frame (its length is known, the next frame starts after it).
//! - Decoding never panics on any input. The direction byte is a two-valued field, not an
//!   extensible code point, so a value other than 0 or 1 is an error.
//! - Encoders never allocate: [`Media::emit`] writes into a caller's slice, [`Media::append`] and
//!   [`Control::append`] extend a caller's `Vec` (which grows only if its capacity is short).
//! - A call's payload map travels as `{"<pt>": "<encoding>/<clock rate>/<channels>"}` with the SDP
//!   encoding names (`PCMU`, `opus`, `telephone-event`...), canonical decimal payload types and at
//!   most [`MAX_MAPPED_PAYLOADS`] entries, so decode -> encode -> decode is the identity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::binding::Direction;
use crate::codec::{Codec, PayloadFormat, PayloadMap, MAX_MAPPED_PAYLOADS};
use crate::time::Timestamp;

/// Length prefix size.
pub const HEADER_LEN: usize = 4;
/// Largest body accepted or produced.
pub const MAX_BODY: usize = 64 * 1024;
/// First body byte of a media frame.
pub const MEDIA_TAG: u8 = 0x01;
/// First body byte of a control frame (a JSON object).
pub const CONTROL_TAG: u8 = b'{';

/// Byte ranges of the media frame body.
mod field {
    use std::ops::Range;
    pub(super) const TAG: usize = 0;
    pub(super) const MONITOR: Range<usize> = 1..5;
    pub(super) const STREAM: Range<usize> = 5..9;
    pub(super) const DIRECTION: usize = 9;
    pub(super) const CAPTURE_TS: Range<usize> = 10..18;
    pub(super) const RTP: usize = CAPTURE_TS.end;
}

/// The capture timestamp of an encoded media frame (length prefix included), without decoding
/// the rest; `None` for a control frame or a frame too short to hold one.
pub fn media_capture_ts(frame: &[u8]) -> Option<Timestamp> {
    let body = frame.get(HEADER_LEN..)?;
    if body.first() != Some(&MEDIA_TAG) {
        return None;
    }
    let ts: [u8; 8] = body.get(field::CAPTURE_TS)?.try_into().ok()?;
    Some(Timestamp::from_nanos(i64::from_be_bytes(ts)))
}

/// Media frame body header length (tag to capture timestamp).
pub const MEDIA_HEADER_LEN: usize = field::RTP;
/// Largest RTP packet a media frame carries.
pub const MAX_RTP: usize = MAX_BODY - MEDIA_HEADER_LEN;

/// Framing errors. All but [`Error::Incomplete`] and [`Error::BufferTooSmall`] are the peer's
/// fault; all but [`Error::TooLarge`] leave the stream in sync.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a whole frame yet: read more bytes (not a protocol error).
    #[error("incomplete frame")]
    Incomplete,
    /// The length prefix (or what an encoder was given) exceeds [`MAX_BODY`].
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced (or needed) body length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A zero-length body.
    #[error("empty frame body")]
    Empty,
    /// The body starts with neither 0x01 (media) nor `{` (control).
    #[error("unknown frame kind 0x{0:02x} (0x01 is media, '{{' is control)")]
    UnknownKind(u8),
    /// A media body shorter than its header.
    #[error("media frame of {len} bytes is shorter than its {MEDIA_HEADER_LEN}-byte header")]
    MediaTooShort {
        /// Body length.
        len: usize,
    },
    /// A direction byte other than 0 or 1 (at body offset 9).
    #[error(
        "media frame direction byte {0} at offset 9 is neither 0 (from agent) nor 1 (to agent)"
    )]
    BadDirection(u8),
    /// A control body that is not a known control object.
    #[error("bad control frame: {0}")]
    Control(String),
    /// A payload-type key that is not a canonical decimal 0-127.
    #[error("call payload type {0:?} is not a decimal RTP payload type 0-127")]
    BadPayloadType(String),
    /// A payload format that is not `name/rate[/channels]`.
    #[error("call payload format {0:?} is not \"<encoding>/<clock rate>/<channels>\"")]
    BadPayloadFormat(String),
    /// More payload types than a [`PayloadMap`] holds.
    #[error("call maps {0} payload types, at most {MAX_MAPPED_PAYLOADS} are allowed")]
    TooManyPayloads(usize),
    /// The caller's output slice is too short for the frame.
    #[error("output buffer of {have} bytes is short of the {need} the frame needs")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
}

/// A media frame: one RTP packet of one monitor, borrowed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Media<'a> {
    /// The monitor.
    pub monitor: u32,
    /// The RTP stream (the appliance's flow table id).
    pub stream: u32,
    /// Relative to the monitored agent.
    pub direction: Direction,
    /// When the appliance captured the packet.
    pub capture_ts: Timestamp,
    /// The RTP packet.
    pub rtp: &'a [u8],
}

impl Media<'_> {
    /// Encoded length, prefix included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + MEDIA_HEADER_LEN + self.rtp.len()
    }

    /// The body length, refused when over [`MAX_BODY`] (the RTP is longer than [`MAX_RTP`]).
    pub fn body_len(&self) -> Result<usize, Error> {
        let body = MEDIA_HEADER_LEN + self.rtp.len();
        if body > MAX_BODY {
            return Err(Error::TooLarge {
                len: body,
                max: MAX_BODY,
            });
        }
        Ok(body)
    }

    /// Writes the whole frame (prefix included) at the start of `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        let body = self.body_len()?;
        let need = HEADER_LEN + body;
        let Some(out) = out.get_mut(..need) else {
            return Err(Error::BufferTooSmall {
                need,
                have: out.len(),
            });
        };
        let (prefix, b) = out.split_at_mut(HEADER_LEN);
        prefix.copy_from_slice(&(body as u32).to_be_bytes());
        b[field::TAG] = MEDIA_TAG;
        b[field::MONITOR].copy_from_slice(&self.monitor.to_be_bytes());
        b[field::STREAM].copy_from_slice(&self.stream.to_be_bytes());
        b[field::DIRECTION] = match self.direction {
            Direction::FromAgent => 0,
            Direction::ToAgent => 1,
        };
        b[field::CAPTURE_TS].copy_from_slice(&self.capture_ts.as_nanos().to_be_bytes());
        b[field::RTP..].copy_from_slice(self.rtp);
        Ok(need)
    }

    /// Appends the whole frame to `out` (allocates only if `out` lacks the capacity).
    pub fn append(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let need = HEADER_LEN + self.body_len()?;
        let start = out.len();
        out.resize(start + need, 0);
        self.emit(&mut out[start..]).map(|_| ())
    }

    /// Parses a media body (tag included).
    fn parse(body: &[u8]) -> Result<Media<'_>, Error> {
        if body.len() < MEDIA_HEADER_LEN {
            return Err(Error::MediaTooShort { len: body.len() });
        }
        let be4 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&body[r]);
            u32::from_be_bytes(a)
        };
        let direction = match body[field::DIRECTION] {
            0 => Direction::FromAgent,
            1 => Direction::ToAgent,
            d => return Err(Error::BadDirection(d)),
        };
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&body[field::CAPTURE_TS]);
        Ok(Media {
            monitor: be4(field::MONITOR),
            stream: be4(field::STREAM),
            direction,
            capture_ts: Timestamp::from_nanos(i64::from_be_bytes(ts)),
            rtp: &body[field::RTP..],
        })
    }
}

/// A control object (JSON body named by `"type"`).
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Endpoint -> service: attach to the monitor the session key was issued for.
    Attach {
        /// The session key from StartSilentMonitor.
        key: String,
    },
    /// Service -> endpoint: the attach succeeded.
    Attached {
        /// The monitor.
        monitor: u32,
        /// The monitored agent's id.
        agent: String,
    },
    /// Endpoint -> service: stop one monitor this connection holds.
    Detach {
        /// The monitor.
        monitor: u32,
    },
    /// Service -> endpoint: a monitor ended; no more frames of it follow.
    Stopped {
        /// The monitor.
        monitor: u32,
        /// Why.
        reason: String,
    },
    /// Service -> endpoint: the agent's packets now come from this call.
    Call {
        /// The monitor.
        monitor: u32,
        /// SIP Call-ID.
        call_id: String,
        /// The call's negotiated payload formats.
        payloads: PayloadMap,
        /// When the call started.
        started: Timestamp,
        /// The appliance whose SPAN carries the call, in a cluster (None: the one the endpoint
        /// is attached to).
        appliance: Option<String>,
    },
    /// Service -> endpoint: a call the monitor was hearing ended.
    CallEnded {
        /// The monitor.
        monitor: u32,
        /// SIP Call-ID.
        call_id: String,
    },
    /// Service -> endpoint: the monitor's audio stopped coming because the appliance that
    /// carried it is unreachable; it comes back by itself (a later `Call`).
    Interrupted {
        /// The monitor.
        monitor: u32,
        /// Why.
        reason: String,
    },
    /// Either way: are you there? Answered by [`Control::HeartbeatReply`] with the same `seq`.
    Heartbeat {
        /// Sequence number.
        seq: u64,
    },
    /// Either way: the answer to a [`Control::Heartbeat`].
    HeartbeatReply {
        /// The heartbeat's sequence number.
        seq: u64,
    },
    /// Service -> endpoint: a request was refused or a frame was bad; the connection stays.
    Error {
        /// What was wrong.
        reason: String,
    },
}

/// The JSON shape of [`Control`] (payload maps and timestamps as plain JSON values).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum Raw {
    Attach {
        key: String,
    },
    Attached {
        monitor: u32,
        agent: String,
    },
    Detach {
        monitor: u32,
    },
    Stopped {
        monitor: u32,
        reason: String,
    },
    Call {
        monitor: u32,
        call_id: String,
        payloads: BTreeMap<String, String>,
        started: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        appliance: Option<String>,
    },
    Interrupted {
        monitor: u32,
        reason: String,
    },
    CallEnded {
        monitor: u32,
        call_id: String,
    },
    Heartbeat {
        seq: u64,
    },
    HeartbeatReply {
        seq: u64,
    },
    Error {
        reason: String,
    },
}

/// The SDP encoding name of a codec (what [`Codec::from_encoding_name`] reads back).
fn encoding_name(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
        Codec::G722 => "G722",
        Codec::G729 => "G729",
        Codec::Gsm => "GSM",
        Codec::G723 => "G723",
        Codec::Cn => "CN",
        Codec::Opus => "opus",
        Codec::TelephoneEvent => "telephone-event",
        Codec::H263 => "H263",
        Codec::Other => "unknown",
    }
}

fn payloads_to_json(map: &PayloadMap) -> BTreeMap<String, String> {
    map.mapped()
        .map(|(pt, f)| {
            (
                pt.to_string(),
                format!("{}/{}/{}", encoding_name(f.codec), f.clock_rate, f.channels),
            )
        })
        .collect()
}

fn payloads_from_json(json: &BTreeMap<String, String>) -> Result<PayloadMap, Error> {
    if json.len() > MAX_MAPPED_PAYLOADS {
        return Err(Error::TooManyPayloads(json.len()));
    }
    let mut map = PayloadMap::new();
    for (key, value) in json {
        let pt = key
            .parse::<u8>()
            .ok()
            .filter(|pt| *pt < 128 && pt.to_string() == *key)
            .ok_or_else(|| Error::BadPayloadType(key.clone()))?;
        let bad = || Error::BadPayloadFormat(value.clone());
        let mut parts = value.split('/');
        let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
        let clock_rate = parts
            .next()
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let channels = match parts.next() {
            None => 1,
            Some(c) => c.parse::<u8>().map_err(|_| bad())?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        map.insert(
            pt,
            PayloadFormat {
                codec: Codec::from_encoding_name(name),
                clock_rate,
                channels,
            },
        );
    }
    Ok(map)
}

impl Control {
    /// The object's `"type"`.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Attach { .. } => "Attach",
            Control::Attached { .. } => "Attached",
            Control::Detach { .. } => "Detach",
            Control::Stopped { .. } => "Stopped",
            Control::Call { .. } => "Call",
            Control::CallEnded { .. } => "CallEnded",
            Control::Interrupted { .. } => "Interrupted",
            Control::Heartbeat { .. } => "Heartbeat",
            Control::HeartbeatReply { .. } => "HeartbeatReply",
            Control::Error { .. } => "Error",
        }
    }

    fn to_raw(&self) -> Raw {
        match self.clone() {
            Control::Attach { key } => Raw::Attach { key },
            Control::Attached { monitor, agent } => Raw::Attached { monitor, agent },
            Control::Detach { monitor } => Raw::Detach { monitor },
            Control::Stopped { monitor, reason } => Raw::Stopped { monitor, reason },
            Control::Call {
                monitor,
                call_id,
                payloads,
                started,
                appliance,
            } => Raw::Call {
                monitor,
                call_id,
                payloads: payloads_to_json(&payloads),
                started: started.as_nanos(),
                appliance,
            },
            Control::CallEnded { monitor, call_id } => Raw::CallEnded { monitor, call_id },
            Control::Interrupted { monitor, reason } => Raw::Interrupted { monitor, reason },
            Control::Heartbeat { seq } => Raw::Heartbeat { seq },
            Control::HeartbeatReply { seq } => Raw::HeartbeatReply { seq },
            Control::Error { reason } => Raw::Error { reason },
        }
    }

    fn from_raw(raw: Raw) -> Result<Control, Error> {
        Ok(match raw {
            Raw::Attach { key } => Control::Attach { key },
            Raw::Attached { monitor, agent } => Control::Attached { monitor, agent },
            Raw::Detach { monitor } => Control::Detach { monitor },
            Raw::Stopped { monitor, reason } => Control::Stopped { monitor, reason },
            Raw::Call {
                monitor,
                call_id,
                payloads,
                started,
                appliance,
            } => Control::Call {
                monitor,
                call_id,
                payloads: payloads_from_json(&payloads)?,
                started: Timestamp::from_nanos(started),
                appliance,
            },
            Raw::Interrupted { monitor, reason } => Control::Interrupted { monitor, reason },
            Raw::CallEnded { monitor, call_id } => Control::CallEnded { monitor, call_id },
            Raw::Heartbeat { seq } => Control::Heartbeat { seq },
            Raw::HeartbeatReply { seq } => Control::HeartbeatReply { seq },
            Raw::Error { reason } => Control::Error { reason },
        })
    }

    /// Appends the whole frame (prefix included) to `out`. A body over [`MAX_BODY`] (a huge
    /// reason or key) is refused and `out` is left as it was.
    pub fn append(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        // Serialising strings, integers and string maps into a Vec cannot fail.
        serde_json::to_writer(&mut *out, &self.to_raw()).expect("control object serialises");
        let len = out.len() - start - HEADER_LEN;
        if len > MAX_BODY {
            out.truncate(start);
            return Err(Error::TooLarge { len, max: MAX_BODY });
        }
        out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame<'a> {
    /// An RTP packet of a monitor (borrows the decoded buffer).
    Media(Media<'a>),
    /// A control object.
    Control(Control),
}

/// If `buf` starts with a whole frame, its total length (prefix included).
pub fn check(buf: &[u8]) -> Result<usize, Error> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Err(Error::Incomplete);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_BODY {
        return Err(Error::TooLarge { len, max: MAX_BODY });
    }
    if buf.len() < HEADER_LEN + len {
        return Err(Error::Incomplete);
    }
    Ok(HEADER_LEN + len)
}

/// If `buf` starts with a whole frame, the frame and its total length. On any error but
/// [`Error::Incomplete`] and [`Error::TooLarge`], the bad frame's length is still [`check`]'s
/// answer, so the caller can skip it and go on.
pub fn decode(buf: &[u8]) -> Result<(Frame<'_>, usize), Error> {
    let total = check(buf)?;
    let body = &buf[HEADER_LEN..total];
    let frame = match body.first() {
        None => return Err(Error::Empty),
        Some(&MEDIA_TAG) => Frame::Media(Media::parse(body)?),
        Some(&CONTROL_TAG) => {
            let raw: Raw =
                serde_json::from_slice(body).map_err(|e| Error::Control(e.to_string()))?;
            Frame::Control(Control::from_raw(raw)?)
        }
        Some(&other) => return Err(Error::UnknownKind(other)),
    };
    Ok((frame, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A media frame as it travels: monitor 7, stream 3, to agent, ts 1 s + 5 ns, 3 RTP bytes.
    const MEDIA: [u8; 25] = [
        0, 0, 0, 21,   // body length
        0x01, // media
        0, 0, 0, 7, // monitor
        0, 0, 0, 3, // stream
        1, // to agent
        0, 0, 0, 0, 0x3B, 0x9A, 0xCA, 0x05, // capture_ts
        0x80, 0x00, 0x2A, // rtp
    ];

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn media_vector_decodes_and_encodes() {
        let (f, n) = decode(&MEDIA).unwrap();
        assert_eq!(n, MEDIA.len());
        let want = Media {
            monitor: 7,
            stream: 3,
            direction: Direction::ToAgent,
            capture_ts: Timestamp::from_nanos(1_000_000_005),
            rtp: &[0x80, 0x00, 0x2A],
        };
        assert_eq!(f, Frame::Media(want));
        let mut out = [0u8; 25];
        assert_eq!(want.emit(&mut out), Ok(25));
        assert_eq!(out, MEDIA);
        let mut v = Vec::new();
        want.append(&mut v).unwrap();
        assert_eq!(v, MEDIA);
        assert_eq!(
            want.emit(&mut [0u8; 24]),
            Err(Error::BufferTooSmall { need: 25, have: 24 })
        );
    }

    #[test]
    fn incomplete_is_not_a_fault() {
        for cut in 0..MEDIA.len() {
            assert_eq!(check(&MEDIA[..cut]), Err(Error::Incomplete));
            assert_eq!(decode(&MEDIA[..cut]).err(), Some(Error::Incomplete));
        }
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(
            check(&[0, 1, 0, 1]),
            Err(Error::TooLarge {
                len: MAX_BODY + 1,
                max: MAX_BODY
            })
        );
        assert_eq!(decode(&framed(b"")).err(), Some(Error::Empty));
        assert_eq!(
            decode(&framed(b"\x02abc")).err(),
            Some(Error::UnknownKind(2))
        );
        assert_eq!(
            decode(&framed(&MEDIA[4..21])).err(),
            Some(Error::MediaTooShort { len: 17 })
        );
        let mut bad_dir = MEDIA;
        bad_dir[13] = 2;
        assert_eq!(decode(&bad_dir).err(), Some(Error::BadDirection(2)));
        for body in [
            &b"{not json"[..],
            b"{\"key\":\"k\"}",
            b"{\"type\":\"Launch\"}",
            b"{\"type\":\"Attach\"}",
            b"{\"type\":\"Detach\",\"monitor\":4294967296}",
        ] {
            assert!(
                matches!(decode(&framed(body)), Err(Error::Control(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let call = |payloads: &str| {
            framed(
                format!(
                    r#"{{"type":"Call","monitor":1,"call_id":"c","payloads":{payloads},"started":0}}"#
                )
                .as_bytes(),
            )
        };
        assert_eq!(
            decode(&call(r#"{"096":"opus/48000/2"}"#)).err(),
            Some(Error::BadPayloadType("096".into()))
        );
        assert_eq!(
            decode(&call(r#"{"200":"opus/48000/2"}"#)).err(),
            Some(Error::BadPayloadType("200".into()))
        );
        assert_eq!(
            decode(&call(r#"{"96":"opus"}"#)).err(),
            Some(Error::BadPayloadFormat("opus".into()))
        );
        assert_eq!(
            decode(&call(r#"{"96":"opus/48000/2/1"}"#)).err(),
            Some(Error::BadPayloadFormat("opus/48000/2/1".into()))
        );
        let nine: Vec<String> = (96..105)
            .map(|pt| format!("\"{pt}\":\"PCMU/8000\""))
            .collect();
        assert_eq!(
            decode(&call(&format!("{{{}}}", nine.join(",")))).err(),
            Some(Error::TooManyPayloads(9))
        );
    }

    #[test]
    fn a_bad_frame_can_be_skipped() {
        let mut buf = framed(b"\x07");
        buf.extend_from_slice(&MEDIA);
        assert_eq!(decode(&buf).err(), Some(Error::UnknownKind(7)));
        let skip = check(&buf).unwrap();
        assert!(matches!(decode(&buf[skip..]), Ok((Frame::Media(_), 25))));
    }

    #[test]
    fn control_objects_round_trip() {
        let mut payloads = PayloadMap::new();
        payloads.insert(
            111,
            PayloadFormat {
                codec: Codec::Opus,
                clock_rate: 48_000,
                channels: 2,
            },
        );
        payloads.insert(
            101,
            PayloadFormat {
                codec: Codec::TelephoneEvent,
                clock_rate: 8_000,
                channels: 1,
            },
        );
        let all = [
            Control::Attach { key: "k1".into() },
            Control::Attached {
                monitor: 9,
                agent: "5001".into(),
            },
            Control::Detach { monitor: 9 },
            Control::Stopped {
                monitor: 9,
                reason: "stopped by supervisor".into(),
            },
            Control::Call {
                monitor: 9,
                call_id: "a84b4c76e66710@pc33".into(),
                payloads,
                started: Timestamp::from_nanos(-5),
                appliance: Some("c".into()),
            },
            Control::Interrupted {
                monitor: 9,
                reason: "appliance c is unreachable".into(),
            },
            Control::CallEnded {
                monitor: 9,
                call_id: "x".into(),
            },
            Control::Heartbeat { seq: u64::MAX },
            Control::HeartbeatReply { seq: 0 },
            Control::Error {
                reason: "unknown session key".into(),
            },
        ];
        let mut buf = Vec::new();
        for c in &all {
            c.append(&mut buf).unwrap();
        }
        let mut rest = &buf[..];
        for c in &all {
            let (f, n) = decode(rest).unwrap();
            // Only the payload map's order may differ; the sorted JSON keys fix it.
            match (f, c) {
                (
                    Frame::Control(Control::Call { payloads: got, .. }),
                    Control::Call { payloads, .. },
                ) => {
                    let mut g: Vec<_> = got.mapped().collect();
                    let mut w: Vec<_> = payloads.mapped().collect();
                    g.sort_by_key(|e| e.0);
                    w.sort_by_key(|e| e.0);
                    assert_eq!(g, w);
                }
                (f, c) => assert_eq!(f, Frame::Control(c.clone())),
            }
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        let wire = {
            let mut v = Vec::new();
            Control::Attach { key: "k".into() }.append(&mut v).unwrap();
            v
        };
        assert_eq!(&wire[4..], br#"{"type":"Attach","key":"k"}"#);
        for c in &all {
            let mut v = Vec::new();
            c.append(&mut v).unwrap();
            let head = format!("{{\"type\":\"{}\"", c.name());
            assert!(v[4..].starts_with(head.as_bytes()));
        }
    }

    #[test]
    fn encoders_refuse_oversized_frames() {
        let rtp = vec![0u8; MAX_RTP + 1];
        let m = Media {
            monitor: 1,
            stream: 1,
            direction: Direction::FromAgent,
            capture_ts: Timestamp::ZERO,
            rtp: &rtp,
        };
        let mut v = vec![1, 2];
        assert!(matches!(m.append(&mut v), Err(Error::TooLarge { .. })));
        assert_eq!(v, [1, 2]);
        let c = Control::Error {
            reason: "x".repeat(MAX_BODY),
        };
        assert!(matches!(c.append(&mut v), Err(Error::TooLarge { .. })));
        assert_eq!(v, [1, 2]);
        let max = Media {
            rtp: &rtp[..MAX_RTP],
            ..m
        };
        max.append(&mut v).unwrap();
        assert_eq!(decode(&v[2..]).unwrap().1, HEADER_LEN + MAX_BODY);
    }
}
