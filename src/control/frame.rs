//! Control-plane framing (TCP 42028 and the peer link): a 4-byte big-endian body length, then a
//! JSON object body whose keys are the message's named values (as in CTI OS, every parameter is
//! a named value). `msg` names the message; `v` is the protocol version (1 when absent).
//!
//! Framing in two steps, as mini-redis does: [`check`] says whether a whole frame is buffered
//! ("incomplete" means read more, not an error) without allocating, then [`parse`] decodes it.
//! A frame over the size limit, a body that is not a JSON object, or one without `msg` is an
//! error that ends the connection, never the server. Sans-IO: works on byte slices.

use serde_json::{Map, Value};

/// Length prefix size.
pub const HEADER_LEN: usize = 4;
/// Default largest body accepted.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// Framing errors (whose fault: the peer's).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a whole frame yet: read more bytes (not a protocol error).
    #[error("incomplete frame")]
    Incomplete,
    /// The length prefix exceeds the limit.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The body is not JSON.
    #[error("frame body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("frame body is not a JSON object")]
    NotObject,
    /// No `msg` string.
    #[error("frame has no \"msg\" name")]
    NoMessageName,
    /// A version this build does not speak.
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    Version(u64),
}

/// A decoded frame: the message name and all its named values.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Message name (`msg`).
    pub msg: String,
    /// Every named value, `msg` and `v` included.
    pub fields: Map<String, Value>,
}

impl Frame {
    /// A frame named `msg` with no other values.
    pub fn new(msg: &str) -> Frame {
        let mut fields = Map::new();
        fields.insert("msg".into(), Value::String(msg.into()));
        fields.insert("v".into(), Value::from(PROTOCOL_VERSION));
        Frame {
            msg: msg.into(),
            fields,
        }
    }

    /// Adds a named value.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Frame {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// An unsigned integer value.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(Value::as_u64)
    }

    /// Appends the encoded frame to `out` (the caller lends the buffer).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        // Serialising a Map of JSON values cannot fail.
        serde_json::to_writer(&mut *out, &self.fields).expect("JSON map serialises");
        let len = (out.len() - start - HEADER_LEN) as u32;
        out[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// If `buf` starts with a whole frame, its total length (prefix included).
pub fn check(buf: &[u8], max_body: usize) -> Result<usize, Error> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Err(Error::Incomplete);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max_body {
        return Err(Error::TooLarge { len, max: max_body });
    }
    if buf.len() < HEADER_LEN + len {
        return Err(Error::Incomplete);
    }
    Ok(HEADER_LEN + len)
}

/// Decodes the whole frame at the start of `buf` (call after [`check`] said it is there);
/// returns it and its length.
pub fn parse(buf: &[u8], max_body: usize) -> Result<(Frame, usize), Error> {
    let total = check(buf, max_body)?;
    let body = &buf[HEADER_LEN..total];
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(Error::NotObject);
    };
    let msg = fields
        .get("msg")
        .and_then(Value::as_str)
        .ok_or(Error::NoMessageName)?
        .to_owned();
    let version = fields
        .get("v")
        .and_then(Value::as_u64)
        .unwrap_or(PROTOCOL_VERSION);
    if version != PROTOCOL_VERSION {
        return Err(Error::Version(version));
    }
    Ok((Frame { msg, fields }, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_two_frames_in_one_buffer() {
        let a = Frame::new("Login")
            .with("user", "sup1")
            .with("mode", "supervisor");
        let b = Frame::new("Heartbeat").with("seq", 7u64);
        let mut buf = Vec::new();
        a.encode(&mut buf);
        b.encode(&mut buf);
        let (fa, n) = parse(&buf, DEFAULT_MAX_BODY).unwrap();
        assert_eq!(fa, a);
        assert_eq!(fa.str("user"), Some("sup1"));
        let (fb, m) = parse(&buf[n..], DEFAULT_MAX_BODY).unwrap();
        assert_eq!((fb.msg.as_str(), fb.u64("seq")), ("Heartbeat", Some(7)));
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn incomplete_is_not_an_error_of_the_peer() {
        let mut buf = Vec::new();
        Frame::new("X").encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(check(&buf[..cut], DEFAULT_MAX_BODY), Err(Error::Incomplete));
        }
        assert_eq!(check(&buf, DEFAULT_MAX_BODY), Ok(buf.len()));
    }

    #[test]
    fn malformed_and_oversized_frames() {
        let frame = |body: &[u8]| {
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(body);
            v
        };
        assert_eq!(
            check(&[0xFF, 0xFF, 0xFF, 0xFF], DEFAULT_MAX_BODY),
            Err(Error::TooLarge {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_BODY
            })
        );
        assert!(matches!(
            parse(&frame(b"{not json"), 100),
            Err(Error::NotJson(_))
        ));
        assert_eq!(parse(&frame(b"[1,2]"), 100).err(), Some(Error::NotObject));
        assert_eq!(
            parse(&frame(b"{\"a\":1}"), 100).err(),
            Some(Error::NoMessageName)
        );
        assert_eq!(
            parse(&frame(b"{\"msg\":\"X\",\"v\":9}"), 100).err(),
            Some(Error::Version(9))
        );
        assert_eq!(parse(&frame(b"{\"msg\":\"X\"}"), 100).unwrap().0.msg, "X");
    }
}
#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Found by the control_frame fuzz target: an integer beyond u64 is a float whose value
    /// must survive decode -> encode -> decode exactly.
    #[test]
    fn huge_integer_round_trips() {
        let body = br#"{"msg": "LoTTTTTTTTTTgigin", "":555555555555550421074911}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        let (f, _) = parse(&buf, 4096).unwrap();
        let mut again = Vec::new();
        f.encode(&mut again);
        let (back, _) = parse(&again, usize::MAX).unwrap();
        assert_eq!(back, f);
    }
}
