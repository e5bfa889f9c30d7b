//! SDP (RFC 4566) as SIP carries it: connection addresses (session or media level), media lines
//! (audio, and T.38 fax as `m=image ... udptl t38`), `a=rtpmap` payload formats, `a=ptime`,
//! direction attributes and `a=rtcp`. Only what media
//! endpoints need; unknown lines are skipped.

use std::net::IpAddr;

use super::Error;
use crate::codec::{static_payload_format, Codec, PayloadFormat, PayloadMap};

/// Media direction (RFC 3264 hold semantics).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    #[default]
    SendRecv,
    /// Only from the SDP's author (the other party is on hold).
    SendOnly,
    /// Only to the SDP's author.
    RecvOnly,
    /// Neither (held).
    Inactive,
}

impl Direction {
    fn parse(attr: &str) -> Option<Direction> {
        Some(match attr {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Port (0 = rejected stream).
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// Payload types offered, in preference order.
    pub formats: Vec<u8>,
    /// Connection address in effect (media level, else session level).
    pub connection: Option<IpAddr>,
    /// Payload formats (rtpmap + static table).
    pub payloads: PayloadMap,
    /// Direction in effect (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// Packetisation time, ms.
    pub ptime: Option<u32>,
    /// RTCP port from `a=rtcp` (else port + 1).
    pub rtcp_port: Option<u16>,
}

impl Media {
    /// True for old-style hold (`c=IN IP4 0.0.0.0`) or a hold direction.
    pub fn is_hold(&self) -> bool {
        self.connection.is_some_and(|a| a.is_unspecified())
            || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
}

/// A parsed session description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// Media sections.
    pub media: Vec<Media>,
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    // c=IN IP4 10.0.0.1[/ttl]
    let mut parts = value.split_whitespace();
    let _net = parts.next()?;
    let _family = parts.next()?;
    let addr = parts.next()?.split('/').next()?;
    addr.parse().ok()
}

impl SessionDescription {
    /// Parses an SDP body.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, Error> {
        let text = std::str::from_utf8(body).map_err(|_| Error::NotUtf8)?;
        let mut session_conn = None;
        let mut session_dir = None;
        let mut media: Vec<Media> = Vec::new();
        let mut media_conn: Vec<Option<IpAddr>> = Vec::new();
        let mut media_dir: Vec<Option<Direction>> = Vec::new();
        let mut saw_version = false;
        let mut session_secure = false;
        for line in text.lines() {
            let line = line.trim_end();
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "v" => saw_version = true,
                "c" => {
                    let c = parse_connection(value);
                    if let Some(slot) = media_conn.last_mut() {
                        *slot = c;
                    } else {
                        session_conn = c;
                    }
                }
                "m" => {
                    let mut p = value.split_whitespace();
                    let kind = p.next().ok_or(Error::Sdp)?.to_owned();
                    let port = p
                        .next()
                        .and_then(|x| x.split('/').next())
                        .and_then(|x| x.parse().ok())
                        .ok_or(Error::Sdp)?;
                    let proto = p.next().ok_or(Error::Sdp)?.to_owned();
                    let formats: Vec<u8> = p.filter_map(|f| f.parse().ok()).take(32).collect();
                    let mut payloads = PayloadMap::new();
                    for &pt in &formats {
                        if let Some(f) = static_payload_format(pt) {
                            payloads.insert(pt, f);
                        }
                    }
                    // RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP(F): secure RTP.
                    if proto.to_ascii_uppercase().contains("SAVP") {
                        payloads.set_encrypted();
                    }
                    // T.38 fax over UDPTL (RFC 3362): `m=image PORT udptl t38`.
                    if kind == "image" && proto.eq_ignore_ascii_case("udptl") {
                        payloads.set_fax();
                    }
                    media.push(Media {
                        kind,
                        port,
                        proto,
                        formats,
                        connection: None,
                        payloads,
                        direction: Direction::SendRecv,
                        ptime: None,
                        rtcp_port: None,
                    });
                    media_conn.push(None);
                    media_dir.push(None);
                }
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    if let Some(d) = Direction::parse(name) {
                        match media_dir.last_mut() {
                            Some(slot) => *slot = Some(d),
                            None => session_dir = Some(d),
                        }
                        continue;
                    }
                    let Some(m) = media.last_mut() else {
                        // A session-level DTLS-SRTP fingerprint covers every media section.
                        session_secure |= matches!(name, "crypto" | "fingerprint");
                        continue;
                    };
                    match name {
                        "rtpmap" => {
                            // a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
                            let Some((pt, enc)) = arg.split_once(' ') else {
                                continue;
                            };
                            let Ok(pt) = pt.trim().parse::<u8>() else {
                                continue;
                            };
                            let mut e = enc.trim().split('/');
                            let name = e.next().unwrap_or("");
                            let clock_rate = e.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                            let channels = e.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                            m.payloads.insert(
                                pt,
                                PayloadFormat {
                                    codec: Codec::from_encoding_name(name),
                                    clock_rate,
                                    channels,
                                },
                            );
                        }
                        "ptime" => m.ptime = arg.trim().parse().ok(),
                        // SDES keys or a DTLS-SRTP fingerprint: the media is SRTP.
                        "crypto" | "fingerprint" => m.payloads.set_encrypted(),
                        "rtcp" => {
                            m.rtcp_port = arg.split_whitespace().next().and_then(|p| p.parse().ok())
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(Error::Sdp);
        }
        for (i, m) in media.iter_mut().enumerate() {
            m.connection = media_conn[i].or(session_conn);
            m.direction = media_dir[i].or(session_dir).unwrap_or_default();
            if session_secure {
                m.payloads.set_encrypted();
            }
        }
        Ok(SessionDescription { media })
    }

    /// The first T.38 section (`m=image PORT udptl t38`) with a non-zero port.
    pub fn fax(&self) -> Option<&Media> {
        self.media
            .iter()
            .find(|m| m.payloads.is_fax() && m.port != 0)
    }

    /// The section the call's media uses now: a T.38 section when one is open and the audio
    /// is not (absent, rejected with port 0, or inactive beside it), else the audio (held
    /// audio included).
    pub fn active(&self) -> Option<&Media> {
        let audio = self.audio();
        match self.fax() {
            Some(fax) if audio.is_none_or(|a| a.direction == Direction::Inactive) => Some(fax),
            _ => audio,
        }
    }

    /// The first audio section with a non-zero port.
    pub fn audio(&self) -> Option<&Media> {
        self.media.iter().find(|m| m.kind == "audio" && m.port != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t38_is_the_active_media_when_audio_is_gone_rejected_or_inactive() {
        let parse = |body: &str| SessionDescription::parse(body.as_bytes()).unwrap();
        let head = "v=0\r\nc=IN IP4 10.0.0.1\r\n";
        let image = "m=image 4000 udptl t38\r\na=T38FaxVersion:0\r\n";
        for audio in [
            "",
            "m=audio 0 RTP/AVP 0\r\n",
            "m=audio 5000 RTP/AVP 0\r\na=inactive\r\n",
        ] {
            let s = parse(&format!("{head}{audio}{image}"));
            let m = s.active().unwrap();
            assert!(m.payloads.is_fax(), "{audio:?}");
            assert_eq!(m.port, 4000);
        }
        // Audio that flows wins; held audio without fax stays audio (hold, not fax).
        let s = parse(&format!("{head}m=audio 5000 RTP/AVP 0\r\n{image}"));
        assert!(!s.active().unwrap().payloads.is_fax());
        let s = parse(&format!("{head}m=audio 5000 RTP/AVP 0\r\na=inactive\r\n"));
        assert!(s.active().unwrap().is_hold());
        // A rejected T.38 offer (port 0) is no fax.
        let s = parse(&format!("{head}m=image 0 udptl t38\r\n"));
        assert!(s.active().is_none() && s.fax().is_none());
    }

    #[test]
    fn secure_rtp_is_recognised_by_profile_keys_or_fingerprint() {
        let sdp = |m: &str, extra: &str| {
            let body = format!("v=0\r\nc=IN IP4 10.0.0.1\r\n{extra}m=audio 4000 {m} 0\r\n");
            SessionDescription::parse(body.as_bytes()).unwrap().media[0]
                .payloads
                .is_encrypted()
        };
        assert!(!sdp("RTP/AVP", ""));
        assert!(sdp("RTP/SAVP", ""));
        assert!(sdp("RTP/SAVPF", ""));
        assert!(sdp("UDP/TLS/RTP/SAVPF", ""));
        let crypto = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n\
                      a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        let d = SessionDescription::parse(crypto.as_bytes()).unwrap();
        assert!(d.media[0].payloads.is_encrypted());
        assert!(
            sdp("RTP/AVP", "a=fingerprint:sha-256 AB:CD\r\n"),
            "session level"
        );
    }

    const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\nm=video 0 RTP/AVP 34\r\n";

    #[test]
    fn offer() {
        let s = SessionDescription::parse(OFFER).unwrap();
        assert_eq!(s.media.len(), 2);
        let a = s.audio().unwrap();
        assert_eq!(a.port, 16384);
        assert_eq!(a.connection, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.formats, vec![0, 8, 101]);
        assert_eq!(a.payloads.get(101).unwrap().codec, Codec::TelephoneEvent);
        assert_eq!(a.payloads.get(8).unwrap().codec, Codec::Pcma);
        assert_eq!(a.ptime, Some(20));
        assert!(!a.is_hold());
    }

    #[test]
    fn hold_forms_and_media_level_connection() {
        let s = SessionDescription::parse(
            b"v=0\r\nc=IN IP4 10.0.0.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 8\r\nc=IN IP6 ::1\r\n",
        )
        .unwrap();
        let a = s.audio().unwrap();
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.connection, Some("::1".parse().unwrap()));
        assert!(a.is_hold());
        let old =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n")
                .unwrap();
        assert!(old.audio().unwrap().is_hold());
        let opus = SessionDescription::parse(
            b"v=0\r\nm=audio 5000 RTP/AVP 99\r\na=rtpmap:99 opus/48000/2\r\n",
        )
        .unwrap();
        let f = opus.audio().unwrap().payloads.get(99).unwrap();
        assert_eq!((f.codec, f.clock_rate, f.channels), (Codec::Opus, 48000, 2));
    }

    #[test]
    fn errors() {
        assert_eq!(
            SessionDescription::parse(b"m=audio x RTP/AVP 0\r\n").err(),
            Some(Error::Sdp)
        );
        assert_eq!(SessionDescription::parse(b"hello").err(), Some(Error::Sdp));
        assert_eq!(
            SessionDescription::parse(b"\xff\xfe").err(),
            Some(Error::NotUtf8)
        );
    }
}
