//! SIP message view (RFC 3261) over `&[u8]`: start line, headers (compact forms, any case,
//! folded lines), name-addr parsing and the body bounded by Content-Length. Zero-copy: every
//! accessor borrows from the datagram.

use super::Error;

/// SIP request methods.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// UPDATE.
    Update,
    /// PRACK.
    Prack,
    /// INFO.
    Info,
    /// REFER.
    Refer,
    /// NOTIFY.
    Notify,
    /// SUBSCRIBE.
    Subscribe,
    /// MESSAGE.
    Message,
    /// PUBLISH.
    Publish,
    /// Another token.
    Unknown,
}

impl Method {
    fn parse(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Unknown,
        }
    }
}

const KNOWN_METHODS: [&[u8]; 14] = [
    b"INVITE ",
    b"ACK ",
    b"BYE ",
    b"CANCEL ",
    b"REGISTER ",
    b"OPTIONS ",
    b"UPDATE ",
    b"PRACK ",
    b"INFO ",
    b"REFER ",
    b"NOTIFY ",
    b"SUBSCRIBE ",
    b"MESSAGE ",
    b"PUBLISH ",
];

/// Cheap check: does `payload` start like a SIP request or response?
pub fn looks_like_sip(payload: &[u8]) -> bool {
    // Every SIP start line begins with an upper-case letter; RTP (0x80..) fails at once.
    if !payload.first().is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    payload.starts_with(b"SIP/2.0 ") || KNOWN_METHODS.iter().any(|m| payload.starts_with(m))
}

/// Whether `bytes` may be the first bytes of a SIP message: it starts like one, or is a
/// shorter prefix of a start line's first token (a TCP segment may end anywhere).
pub fn may_start_sip(bytes: &[u8]) -> bool {
    looks_like_sip(bytes)
        || (!bytes.is_empty()
            && (b"SIP/2.0 ".starts_with(bytes)
                || KNOWN_METHODS.iter().any(|m| m.starts_with(bytes))))
}

/// The start line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request.
    Request {
        /// Method.
        method: Method,
        /// The method token as sent.
        method_token: &'a str,
        /// Request-URI.
        uri: &'a str,
    },
    /// A response.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: &'a str,
    },
}

/// A parsed SIP message.
#[derive(Clone, Debug)]
pub struct SipMessage<'a> {
    /// Start line.
    pub start: StartLine<'a>,
    head: &'a str,
    /// Body (bounded by Content-Length when present).
    pub body: &'a [u8],
}

/// A name-addr or addr-spec: `"Alice" <sip:5001@host>;tag=x`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name, unquoted (may be empty).
    pub display: &'a str,
    /// The URI.
    pub uri: &'a str,
    /// The `tag` parameter, if any.
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses a From/To/Contact/P-Asserted-Identity value.
    pub fn parse(value: &'a str) -> NameAddr<'a> {
        let value = value.trim();
        let (display, uri, params) = if let Some(lt) = value.find('<') {
            let gt = value[lt..].find('>').map(|i| lt + i).unwrap_or(value.len());
            let display = value[..lt].trim().trim_matches('"');
            let uri = &value[lt + 1..gt];
            let params = value.get(gt + 1..).unwrap_or("");
            (display, uri, params)
        } else {
            // addr-spec: header parameters follow the first ';'.
            let end = value.find(';').unwrap_or(value.len());
            ("", &value[..end], &value[end..])
        };
        let tag = params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("tag="))
            .next();
        NameAddr { display, uri, tag }
    }

    /// The user part of the URI (`5001` in `sip:5001@host`, `+4930123` in `tel:+4930123`).
    pub fn user(&self) -> &'a str {
        uri_user(self.uri)
    }
}

/// User part of a SIP/SIPS/TEL URI (without parameters).
pub fn uri_user(uri: &str) -> &str {
    let rest = uri
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:");
    let end = rest.find(['@', ';', '?', '>']).unwrap_or(rest.len());
    // `sip:host` without a user part: no user.
    if !rest[end..].starts_with('@') && uri.trim().starts_with("sip") {
        return "";
    }
    &rest[..end]
}

/// True when header `name` as sent (any case, or its compact form) is `wanted` (lower case).
fn header_is(name: &str, wanted: &str) -> bool {
    if name.eq_ignore_ascii_case(wanted) {
        return true;
    }
    let compact = match wanted {
        "call-id" => "i",
        "from" => "f",
        "to" => "t",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        "via" => "v",
        _ => return false,
    };
    name.eq_ignore_ascii_case(compact)
}

impl<'a> SipMessage<'a> {
    /// Parses one message from the start of `buf`; returns it and the bytes it used (several
    /// messages can share a TCP segment). Over UDP a missing Content-Length means "the rest".
    pub fn parse(buf: &'a [u8]) -> Result<(SipMessage<'a>, usize), Error> {
        let head_end = find(buf, b"\r\n\r\n")
            .map(|i| (i, i + 4))
            .or_else(|| find(buf, b"\n\n").map(|i| (i, i + 2)))
            .ok_or(Error::Incomplete)?;
        let head = std::str::from_utf8(&buf[..head_end.0]).map_err(|_| Error::NotUtf8)?;
        let first = head.lines().next().ok_or(Error::StartLine)?.trim_end();
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code: u16 = code.parse().map_err(|_| Error::StartLine)?;
            if !(100..700).contains(&code) {
                return Err(Error::StartLine);
            }
            StartLine::Response { code, reason }
        } else {
            let mut parts = first.split(' ');
            let method_token = parts.next().ok_or(Error::StartLine)?;
            let uri = parts.next().ok_or(Error::StartLine)?;
            if parts.next() != Some("SIP/2.0") || method_token.is_empty() {
                return Err(Error::StartLine);
            }
            StartLine::Request {
                method: Method::parse(method_token.as_bytes()),
                method_token,
                uri,
            }
        };
        let msg = SipMessage {
            start,
            head,
            body: &[],
        };
        let rest = &buf[head_end.1..];
        let (body, used) = match msg.header("content-length") {
            Some(v) => {
                let n: usize = v.trim().parse().map_err(|_| Error::ContentLength)?;
                if n > rest.len() {
                    return Err(Error::ContentLength);
                }
                (&rest[..n], head_end.1 + n)
            }
            None => (rest, buf.len()),
        };
        Ok((SipMessage { body, ..msg }, used))
    }

    /// Headers as (lower-case-able name, value), folded lines joined by the caller's view:
    /// continuation lines are returned as part of the value span.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let head = self.head;
        let mut lines = head.split('\n').skip(1).peekable();
        std::iter::from_fn(move || loop {
            let line = lines.next()?.trim_end_matches('\r');
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            // Folded continuation lines (leading whitespace) belong to this header; we keep
            // the first line's value, which carries what we use (URIs, tags, numbers).
            while lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
                lines.next();
            }
            return Some((name.trim(), value.trim()));
        })
    }

    /// The first header called `name` (case-insensitive; compact forms understood).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|(n, _)| header_is(n, name))
            .map(|(_, v)| v)
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&'a str> {
        self.header("call-id")
    }

    /// From.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.header("from").map(NameAddr::parse)
    }

    /// To.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.header("to").map(NameAddr::parse)
    }

    /// P-Asserted-Identity.
    pub fn asserted_identity(&self) -> Option<NameAddr<'a>> {
        self.header("p-asserted-identity").map(NameAddr::parse)
    }

    /// Remote-Party-ID (the pre-standard asserted identity CUCM and many gateways send).
    pub fn remote_party_id(&self) -> Option<NameAddr<'a>> {
        self.header("remote-party-id").map(NameAddr::parse)
    }

    /// The identity the sender's network asserts: P-Asserted-Identity, else Remote-Party-ID.
    pub fn asserted_party(&self) -> Option<NameAddr<'a>> {
        self.asserted_identity().or_else(|| self.remote_party_id())
    }

    /// Contact (the first one).
    pub fn contact(&self) -> Option<NameAddr<'a>> {
        self.header("contact").map(NameAddr::parse)
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, Method)> {
        let v = self.header("cseq")?;
        let (n, m) = v.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, Method::parse(m.trim().as_bytes())))
    }

    /// True when the body is SDP.
    pub fn has_sdp(&self) -> bool {
        !self.body.is_empty()
            && self
                .header("content-type")
                .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:5001@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
f: \"Caller\" <sip:+4930123@10.0.0.1>;tag=abc\r\n\
To: <sip:5001@10.0.0.2>\r\n\
i: call-1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
P-Asserted-Identity: <tel:+4930123>\r\n\
Subject: a folded\r\n  header line\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r";

    #[test]
    fn invite_with_compact_and_folded_headers() {
        let (m, used) = SipMessage::parse(INVITE).unwrap();
        assert_eq!(used, INVITE.len());
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Invite,
                uri: "sip:5001@10.0.0.2",
                ..
            }
        ));
        assert_eq!(m.call_id(), Some("call-1@10.0.0.1"));
        let from = m.from().unwrap();
        assert_eq!(
            (from.display, from.user(), from.tag),
            ("Caller", "+4930123", Some("abc"))
        );
        assert_eq!(m.to().unwrap().user(), "5001");
        assert_eq!(m.asserted_identity().unwrap().user(), "+4930123");
        assert_eq!(m.cseq(), Some((1, Method::Invite)));
        assert_eq!(m.header("subject"), Some("a folded"));
        assert!(m.has_sdp());
        assert_eq!(m.body, b"v=0\r");
        assert!(looks_like_sip(INVITE));
        assert!(!looks_like_sip(b"\x80\x00rtp"));
    }

    #[test]
    fn response_and_two_messages_in_one_segment() {
        let two = b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n";
        let (m, used) = SipMessage::parse(two).unwrap();
        assert!(matches!(
            m.start,
            StartLine::Response {
                code: 180,
                reason: "Ringing"
            }
        ));
        let (m2, used2) = SipMessage::parse(&two[used..]).unwrap();
        assert!(matches!(m2.start, StartLine::Response { code: 200, .. }));
        assert_eq!(used + used2, two.len());
    }

    #[test]
    fn errors() {
        assert_eq!(
            SipMessage::parse(b"INVITE sip:x SIP/2.0\r\nCall-ID: x\r\n").err(),
            Some(Error::Incomplete)
        );
        assert_eq!(
            SipMessage::parse(b"INVITE sip:x SIP/2.0\r\nContent-Length: 99\r\n\r\nabc").err(),
            Some(Error::ContentLength)
        );
        assert_eq!(
            SipMessage::parse(b"INVITE sip:x SIP/2.0\r\nContent-Length: x\r\n\r\n").err(),
            Some(Error::ContentLength)
        );
        assert_eq!(
            SipMessage::parse(b"SIP/2.0 99 Odd\r\n\r\n").err(),
            Some(Error::StartLine)
        );
        assert_eq!(
            SipMessage::parse(b"INVITE sip:x HTTP/1.1\r\n\r\n").err(),
            Some(Error::StartLine)
        );
        assert_eq!(
            SipMessage::parse(b"SIP/2.0 200 \xff\r\n\r\n").err(),
            Some(Error::NotUtf8)
        );
    }

    #[test]
    fn uri_users() {
        assert_eq!(uri_user("sip:5001@host;user=phone"), "5001");
        assert_eq!(uri_user("tel:+4930123;phone-context=x"), "+4930123");
        assert_eq!(uri_user("sips:alice@example.com"), "alice");
        assert_eq!(uri_user("sip:example.com"), "");
    }
}
