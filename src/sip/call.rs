//! The call table, sans-IO: SIP dialogs by Call-ID, their parties, state and the media endpoints
//! their SDP offer/answer negotiated (the caller's and the callee's), hold via re-INVITE, and
//! events for whoever follows calls (bindings, monitors). Fed messages with their capture time.
//! Memory is bounded: the oldest calls are evicted past `max_calls` (counted), and ended calls
//! leave after `linger`.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::net::SocketAddr;

use super::message::{Method, NameAddr, SipMessage, StartLine};
use super::sdp::{Direction, SessionDescription};
use super::Error;
use crate::codec::PayloadMap;
use crate::time::{Span, Timestamp};

/// Most events queued before the oldest is dropped.
const MAX_EVENTS: usize = 4096;
/// Most hops of one initial INVITE remembered (a proxy chain forwarding it with the same
/// Call-ID).
const MAX_HOPS: usize = 8;

/// Call table settings.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Most calls kept.
    pub max_calls: usize,
    /// How long an ended call stays (so late RTP still maps to it).
    pub linger: Span,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            max_calls: 1 << 20,
            linger: Span::from_secs(60),
        }
    }
}

/// A party of a call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Party {
    /// Display name.
    pub display: String,
    /// URI.
    pub uri: String,
    /// Dialog tag.
    pub tag: String,
}

impl Party {
    fn from_name_addr(n: &NameAddr<'_>) -> Party {
        Party {
            display: n.display.to_owned(),
            uri: n.uri.to_owned(),
            tag: n.tag.unwrap_or("").to_owned(),
        }
    }

    /// The URI's user part (the number, usually).
    pub fn user(&self) -> &str {
        super::message::uri_user(&self.uri)
    }
}

/// Where a call stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, no answer yet.
    Calling,
    /// 1xx received.
    Ringing,
    /// 2xx to the INVITE.
    Answered,
    /// Ended by BYE.
    Ended,
    /// CANCELled before an answer.
    Cancelled,
    /// A final failure (3xx-6xx) to the initial INVITE.
    Failed(u16),
}

/// A negotiated media endpoint: where one party receives RTP.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MediaEndpoint {
    /// Address and port from c= and m=.
    pub addr: SocketAddr,
    /// Payload formats.
    pub payloads: PayloadMap,
    /// Direction the party declared.
    pub direction: Direction,
    /// True when the party put the call on hold (sendonly, inactive, 0.0.0.0).
    pub hold: bool,
}

/// Who one side of a call is, as the signalling names it. The callee side is who *answered*,
/// not whom the caller wanted: `To`, `Diversion`, `History-Info` and `Referred-By` are never
/// read here (a forwarded, hunted or picked-up call keeps naming the first target in them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideIdentity {
    /// The number the side was reached at or calls from: the caller's `From` user; the
    /// callee's Request-URI user as the INVITE reached the answering side.
    pub named: String,
    /// The user of the answer's `Contact` (callee side only): the answering UA.
    pub contact: Option<String>,
    /// The identity the side's network asserted when it joined (P-Asserted-Identity, else
    /// Remote-Party-ID): in the initial INVITE for the caller, in the 2xx for the callee.
    pub asserted: Option<String>,
    /// A different identity the same side asserted later in the dialog (the latest): after a
    /// transfer, a B2BUA such as CUCM keeps the dialog and re-INVITEs naming the new party.
    pub reasserted: Option<String>,
    /// The signalling address the side spoke from when it joined (the INVITE's source for the
    /// caller, the 2xx's for the callee): equal to the media IP when the UA is the phone itself.
    pub signalling: Option<SocketAddr>,
}

impl SideIdentity {
    /// The identity asserted last (a re-assertion, else the one at joining).
    pub fn last_asserted(&self) -> Option<&str> {
        self.reasserted.as_deref().or(self.asserted.as_deref())
    }

    /// True when the side's answer or INVITE came from its media address's host: the UA is the
    /// phone itself, not a B2BUA in front of it.
    pub fn is_direct(&self, media: Option<MediaEndpoint>) -> bool {
        matches!((self.signalling, media), (Some(s), Some(m)) if s.ip() == m.addr.ip())
    }
}

/// A call (one dialog, by Call-ID).
#[derive(Clone, Debug)]
pub struct Call {
    /// Index (stable for the call's life).
    pub index: u32,
    /// Call-ID.
    pub call_id: String,
    /// From of the initial INVITE (the caller).
    pub from: Party,
    /// To of the initial INVITE (the callee).
    pub to: Party,
    /// Request-URI of the initial INVITE as it reached the answering side: the hop the first
    /// 2xx came back from when a proxy forwarded the INVITE under the same Call-ID, else the
    /// latest hop seen.
    pub request_uri: String,
    /// P-Asserted-Identity of the initial INVITE.
    pub asserted_identity: Option<Party>,
    /// Who the caller side is.
    pub caller_id: SideIdentity,
    /// Who the callee side is: who answered.
    pub callee_id: SideIdentity,
    /// Each hop of the initial INVITE: where it went and its Request-URI.
    hops: Vec<(SocketAddr, String)>,
    /// State.
    pub state: CallState,
    /// Time of the first INVITE.
    pub started: Timestamp,
    /// Time of the 2xx.
    pub answered: Option<Timestamp>,
    /// Time of BYE/CANCEL/failure.
    pub ended: Option<Timestamp>,
    /// Where the caller receives media.
    pub caller_media: Option<MediaEndpoint>,
    /// Where the callee receives media.
    pub callee_media: Option<MediaEndpoint>,
    /// Signalling address the INVITE came from.
    pub caller_signalling: SocketAddr,
    /// Last message time.
    pub last_activity: Timestamp,
}

impl Call {
    /// True when `digits` is the user part of the Request-URI, To, From or P-Asserted-Identity
    /// (a leading `+` and URI schemes ignored on both sides).
    pub fn matches_number(&self, digits: &str) -> bool {
        let want = digits.trim().trim_start_matches('+');
        if want.is_empty() {
            return false;
        }
        let candidates = [
            super::message::uri_user(&self.request_uri),
            self.to.user(),
            self.from.user(),
            self.asserted_identity
                .as_ref()
                .map(|p| p.user())
                .unwrap_or(""),
        ];
        candidates.iter().any(|u| u.trim_start_matches('+') == want)
    }

    /// True when the called party's number is `digits` (Request-URI or To).
    pub fn called_is(&self, digits: &str) -> bool {
        let want = digits.trim().trim_start_matches('+');
        [super::message::uri_user(&self.request_uri), self.to.user()]
            .iter()
            .any(|u| !want.is_empty() && u.trim_start_matches('+') == want)
    }

    /// One more hop of the initial INVITE (a proxy forwarded it under the same Call-ID).
    fn add_hop(&mut self, dst: SocketAddr, uri: &str) {
        if self.hops.len() < MAX_HOPS && !self.hops.iter().any(|(d, _)| *d == dst) {
            self.hops.push((dst, uri.to_owned()));
        }
    }

    /// The first 2xx to the initial INVITE came from `src`: the callee side is who answered.
    /// The Request-URI is the one of the hop that reached `src` (the answering UA, or the
    /// proxy nearest it), else the last hop's.
    fn answered_by(&mut self, src: SocketAddr, answer: &SipMessage<'_>) {
        let hop = self
            .hops
            .iter()
            .find(|(d, _)| *d == src)
            .or_else(|| self.hops.iter().find(|(d, _)| d.ip() == src.ip()))
            .or(self.hops.last());
        if let Some((_, uri)) = hop {
            self.request_uri.clone_from(uri);
        }
        self.callee_id = SideIdentity {
            named: super::message::uri_user(&self.request_uri).to_owned(),
            contact: answer
                .contact()
                .map(|c| c.user().to_owned())
                .filter(|u| !u.is_empty()),
            asserted: answer.asserted_party().map(|p| p.user().to_owned()),
            reasserted: None,
            signalling: Some(src),
        };
    }

    /// A message by the caller (`by_caller`) or the callee side after that side joined: an
    /// asserted identity other than the last one is a re-assertion (a transfer keeps the
    /// dialog and names the new party). True when the side's identity changed.
    fn reassert(&mut self, by_caller: bool, msg: &SipMessage<'_>) -> bool {
        let joined = by_caller || self.answered.is_some();
        let Some(party) = msg.asserted_party().filter(|_| joined) else {
            return false;
        };
        let user = party.user();
        let side = if by_caller {
            &mut self.caller_id
        } else {
            &mut self.callee_id
        };
        if user.is_empty() || side.last_asserted() == Some(user) {
            return false;
        }
        side.reasserted = Some(user.to_owned());
        true
    }

    /// True while the call is on hold by either party.
    pub fn on_hold(&self) -> bool {
        self.caller_media.is_some_and(|m| m.hold) || self.callee_media.is_some_and(|m| m.hold)
    }
}

/// Something that happened to a call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// A new INVITE.
    Started(u32),
    /// 1xx.
    Ringing(u32),
    /// 2xx to the INVITE.
    Answered(u32),
    /// A media endpoint was (re)negotiated, hold and resume included.
    MediaChanged(u32),
    /// A side of the call asserted another identity after it joined (a transfer), or the
    /// answer named who answered.
    PartyChanged(u32),
    /// BYE, CANCEL or a final failure.
    Ended(u32),
}

/// Call table counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipStats {
    /// Messages parsed.
    pub messages: u64,
    /// Requests.
    pub requests: u64,
    /// Responses.
    pub responses: u64,
    /// Messages that did not parse.
    pub malformed: u64,
    /// SDP bodies that did not parse.
    pub bad_sdp: u64,
    /// Messages without a Call-ID, or for unknown calls that do not start one.
    pub unmatched: u64,
    /// Calls evicted by the cap.
    pub evicted: u64,
    /// Events dropped because nobody polled.
    pub events_dropped: u64,
}

/// The call table.
pub struct CallTable {
    config: CallConfig,
    calls: VecDeque<Call>,
    first_index: u32,
    by_call_id: HashMap<String, u32>,
    media: FxHashMap<SocketAddr, (u32, PayloadMap)>,
    events: VecDeque<CallEvent>,
    stats: SipStats,
}

impl CallTable {
    /// An empty table.
    pub fn new(config: CallConfig) -> Self {
        CallTable {
            config,
            calls: VecDeque::new(),
            first_index: 0,
            by_call_id: HashMap::new(),
            media: FxHashMap::default(),
            events: VecDeque::new(),
            stats: SipStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &SipStats {
        &self.stats
    }

    /// Calls in order of first INVITE.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter()
    }

    /// One call by index.
    pub fn call(&self, index: u32) -> Option<&Call> {
        self.calls
            .get(index.checked_sub(self.first_index)? as usize)
    }

    fn call_mut(&mut self, index: u32) -> Option<&mut Call> {
        self.calls
            .get_mut(index.checked_sub(self.first_index)? as usize)
    }

    /// A call by Call-ID.
    pub fn by_call_id(&self, call_id: &str) -> Option<&Call> {
        self.call(*self.by_call_id.get(call_id)?)
    }

    /// If `addr` is a media endpoint negotiated by SDP, the call and its payload formats.
    pub fn media_hint(&self, addr: SocketAddr) -> Option<(u32, &PayloadMap)> {
        self.media.get(&addr).map(|(i, p)| (*i, p))
    }

    /// The next event, if any. Call after each `handle_message`.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, e: CallEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.calls
            .iter()
            .filter_map(|c| c.ended)
            .min()
            .map(|t| t + self.config.linger)
    }

    /// Forgets calls that ended more than `linger` before `now` (oldest first).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(front) = self.calls.front() {
            match front.ended {
                Some(t) if now - t > self.config.linger => self.pop_front(),
                _ => break,
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.calls.pop_front() {
            self.first_index += 1;
            // The Call-ID may belong to a newer call by now.
            if self.by_call_id.get(&c.call_id) == Some(&c.index) {
                self.by_call_id.remove(&c.call_id);
            }
            self.media.retain(|_, (i, _)| *i != c.index);
        }
    }

    /// One SIP datagram or TCP segment (possibly several messages) seen at `now`.
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), Error> {
        let mut rest = payload;
        while !rest.is_empty() {
            let (msg, used) = match SipMessage::parse(rest) {
                Ok(x) => x,
                Err(e) => {
                    self.stats.malformed += 1;
                    return Err(e);
                }
            };
            self.stats.messages += 1;
            self.apply(now, src, dst, &msg);
            rest = &rest[used..];
            // Skip keep-alive CRLFs between messages on TCP.
            while rest.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
                rest = &rest[1..];
            }
        }
        Ok(())
    }

    fn apply(&mut self, now: Timestamp, src: SocketAddr, dst: SocketAddr, msg: &SipMessage<'_>) {
        let Some(call_id) = msg.call_id() else {
            self.stats.unmatched += 1;
            return;
        };
        let index = match (self.by_call_id.get(call_id), &msg.start) {
            // An initial INVITE (no To tag) reusing the Call-ID of a call that is over starts a
            // new call (a looped replay, or a UA that reuses Call-IDs).
            (
                Some(&i),
                StartLine::Request {
                    method: Method::Invite,
                    uri,
                    ..
                },
            ) if msg.to().is_some_and(|t| t.tag.is_none())
                && self.call(i).is_some_and(|c| c.ended.is_some()) =>
            {
                self.new_call(now, src, dst, call_id, uri, msg)
            }
            (Some(&i), _) => i,
            (
                None,
                StartLine::Request {
                    method: Method::Invite,
                    uri,
                    ..
                },
            ) => self.new_call(now, src, dst, call_id, uri, msg),
            _ => {
                self.stats.unmatched += 1;
                return;
            }
        };
        let sdp = if msg.has_sdp() {
            match SessionDescription::parse(msg.body) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.stats.bad_sdp += 1;
                    None
                }
            }
        } else {
            None
        };
        match msg.start {
            StartLine::Request { .. } => self.stats.requests += 1,
            StartLine::Response { .. } => self.stats.responses += 1,
        }
        let Some(call) = self.call_mut(index) else {
            return;
        };
        call.last_activity = now;
        let caller_tag = call.from.tag.clone();
        // Who wrote this message: requests by their From, responses by their To.
        let author_tag = match msg.start {
            StartLine::Request { .. } => msg.from().and_then(|f| f.tag).unwrap_or(""),
            StartLine::Response { .. } => msg.to().and_then(|t| t.tag).unwrap_or(""),
        };
        let by_caller = match msg.start {
            StartLine::Request { .. } => author_tag == caller_tag,
            // A response without a To tag (100 Trying) comes from the callee side.
            StartLine::Response { .. } => !author_tag.is_empty() && author_tag == caller_tag,
        };
        let mut events: Vec<CallEvent> = Vec::new();
        if let StartLine::Request {
            method: Method::Invite,
            uri,
            ..
        } = msg.start
        {
            if call.answered.is_none() && msg.to().is_some_and(|t| t.tag.is_none()) {
                call.add_hop(dst, uri);
            }
        }
        match msg.start {
            StartLine::Request { method, .. } => match method {
                Method::Bye => {
                    call.state = CallState::Ended;
                    call.ended = Some(now);
                    events.push(CallEvent::Ended(index));
                }
                Method::Cancel if call.answered.is_none() => {
                    call.state = CallState::Cancelled;
                    call.ended = Some(now);
                    events.push(CallEvent::Ended(index));
                }
                _ => {}
            },
            StartLine::Response { code, .. } => {
                let for_invite = matches!(msg.cseq(), Some((_, Method::Invite)));
                if for_invite && call.answered.is_none() && call.ended.is_none() {
                    match code {
                        180..=199 if call.state == CallState::Calling => {
                            call.state = CallState::Ringing;
                            events.push(CallEvent::Ringing(index));
                        }
                        200..=299 => {
                            call.state = CallState::Answered;
                            call.answered = Some(now);
                            // The callee's tag completes the dialog.
                            if let Some(t) = msg.to().and_then(|t| t.tag) {
                                call.to.tag = t.to_owned();
                            }
                            call.answered_by(src, msg);
                            events.push(CallEvent::Answered(index));
                        }
                        300..=699 => {
                            call.state = if code == 487 {
                                CallState::Cancelled
                            } else {
                                CallState::Failed(code)
                            };
                            call.ended = Some(now);
                            events.push(CallEvent::Ended(index));
                        }
                        _ => {}
                    }
                }
            }
        }
        if call.reassert(by_caller, msg) {
            events.push(CallEvent::PartyChanged(index));
        }
        let mut new_endpoint = None;
        if let Some(audio) = sdp.as_ref().and_then(|s| s.audio()) {
            if let Some(ip) = audio.connection {
                let endpoint = MediaEndpoint {
                    addr: SocketAddr::new(ip, audio.port),
                    payloads: audio.payloads,
                    direction: audio.direction,
                    hold: audio.is_hold(),
                };
                let slot = if by_caller {
                    &mut call.caller_media
                } else {
                    &mut call.callee_media
                };
                if *slot != Some(endpoint) {
                    *slot = Some(endpoint);
                    events.push(CallEvent::MediaChanged(index));
                }
                if !ip.is_unspecified() {
                    new_endpoint = Some(endpoint);
                }
            }
        }
        if let Some(ep) = new_endpoint {
            // RTCP conventionally on the next port.
            self.media.insert(ep.addr, (index, ep.payloads));
            let rtcp = SocketAddr::new(ep.addr.ip(), ep.addr.port().wrapping_add(1));
            self.media.entry(rtcp).or_insert((index, ep.payloads));
        }
        for e in events {
            self.emit(e);
        }
    }

    fn new_call(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        call_id: &str,
        uri: &str,
        msg: &SipMessage<'_>,
    ) -> u32 {
        if self.calls.len() >= self.config.max_calls {
            self.pop_front();
            self.stats.evicted += 1;
        }
        let index = self.first_index + self.calls.len() as u32;
        let call = Call {
            index,
            call_id: call_id.to_owned(),
            from: msg
                .from()
                .map(|n| Party::from_name_addr(&n))
                .unwrap_or_default(),
            to: msg
                .to()
                .map(|n| Party::from_name_addr(&n))
                .unwrap_or_default(),
            request_uri: uri.to_owned(),
            asserted_identity: msg.asserted_identity().map(|n| Party::from_name_addr(&n)),
            caller_id: SideIdentity {
                named: msg.from().map(|f| f.user().to_owned()).unwrap_or_default(),
                contact: None,
                asserted: msg.asserted_party().map(|p| p.user().to_owned()),
                reasserted: None,
                signalling: Some(src),
            },
            callee_id: SideIdentity {
                named: super::message::uri_user(uri).to_owned(),
                ..SideIdentity::default()
            },
            hops: vec![(dst, uri.to_owned())],
            state: CallState::Calling,
            started: now,
            answered: None,
            ended: None,
            caller_media: None,
            callee_media: None,
            caller_signalling: src,
            last_activity: now,
        };
        self.calls.push_back(call);
        self.by_call_id.insert(call_id.to_owned(), index);
        self.emit(CallEvent::Started(index));
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(ip: &str, port: u16, dir: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na={dir}\r\n")
    }

    fn msg(
        start: &str,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        cseq: &str,
        body: &str,
    ) -> Vec<u8> {
        let to = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nFrom: <sip:+4930123@gw>;tag={from_tag}\r\nTo: <sip:5001@pbx>{to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn events(t: &mut CallTable) -> Vec<CallEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn whole_dialog_with_hold() {
        let mut t = CallTable::new(CallConfig::default());
        let (gw, phone) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        let offer = sdp("10.0.0.1", 20000, "sendrecv");
        let answer = sdp("10.0.0.2", 30000, "sendrecv");
        let steps: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = vec![
            (
                gw,
                phone,
                msg(
                    "INVITE sip:5001@pbx SIP/2.0",
                    "c1",
                    "a",
                    "",
                    "1 INVITE",
                    &offer,
                ),
            ),
            (
                phone,
                gw,
                msg("SIP/2.0 100 Trying", "c1", "a", "", "1 INVITE", ""),
            ),
            (
                phone,
                gw,
                msg("SIP/2.0 180 Ringing", "c1", "a", "b", "1 INVITE", ""),
            ),
            (
                phone,
                gw,
                msg("SIP/2.0 200 OK", "c1", "a", "b", "1 INVITE", &answer),
            ),
            (
                gw,
                phone,
                msg("ACK sip:5001@pbx SIP/2.0", "c1", "a", "b", "1 ACK", ""),
            ),
        ];
        for (i, (s, d, m)) in steps.iter().enumerate() {
            t.handle_message(at(i as i64), *s, *d, m).unwrap();
        }
        assert_eq!(
            events(&mut t),
            vec![
                CallEvent::Started(0),
                CallEvent::MediaChanged(0),
                CallEvent::Ringing(0),
                CallEvent::Answered(0),
                CallEvent::MediaChanged(0)
            ]
        );
        let c = t.call(0).unwrap();
        assert_eq!(c.state, CallState::Answered);
        assert_eq!(c.caller_media.unwrap().addr, a("10.0.0.1:20000"));
        assert_eq!(c.callee_media.unwrap().addr, a("10.0.0.2:30000"));
        assert!(c.matches_number("5001") && c.matches_number("+4930123") && c.called_is("5001"));
        assert!(!c.matches_number("5002"));
        assert_eq!(t.media_hint(a("10.0.0.2:30000")).map(|x| x.0), Some(0));
        assert_eq!(t.media_hint(a("10.0.0.2:30001")).map(|x| x.0), Some(0));

        // The agent (callee) puts the caller on hold with a re-INVITE, then hangs up.
        let hold = sdp("10.0.0.2", 30000, "sendonly");
        t.handle_message(
            at(10),
            phone,
            gw,
            &msg(
                "INVITE sip:+4930123@gw SIP/2.0",
                "c1",
                "b",
                "a",
                "2 INVITE",
                &hold,
            ),
        )
        .unwrap();
        assert!(t.call(0).unwrap().on_hold());
        assert_eq!(events(&mut t), vec![CallEvent::MediaChanged(0)]);
        t.handle_message(
            at(20),
            phone,
            gw,
            &msg("BYE sip:+4930123@gw SIP/2.0", "c1", "b", "a", "3 BYE", ""),
        )
        .unwrap();
        assert_eq!(events(&mut t), vec![CallEvent::Ended(0)]);
        assert_eq!(t.call(0).unwrap().state, CallState::Ended);
        // Lingers, then leaves.
        t.handle_timeout(at(30));
        assert!(t.call(0).is_some());
        t.handle_timeout(at(20 + 61_000));
        assert!(t.call(0).is_none());
        assert_eq!(t.media_hint(a("10.0.0.2:30000")), None);
    }

    #[test]
    fn a_call_id_reused_after_the_call_ended_is_a_new_call() {
        let mut t = CallTable::new(CallConfig {
            linger: Span::from_secs(1),
            ..CallConfig::default()
        });
        let (gw, phone) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        let offer = sdp("10.0.0.1", 20000, "sendrecv");
        let invite = |tag: &str| {
            msg(
                "INVITE sip:5001@pbx SIP/2.0",
                "c1",
                tag,
                "",
                "1 INVITE",
                &offer,
            )
        };
        t.handle_message(at(0), gw, phone, &invite("a")).unwrap();
        t.handle_message(
            at(10),
            phone,
            gw,
            &msg("SIP/2.0 200 OK", "c1", "a", "b", "1 INVITE", ""),
        )
        .unwrap();
        // A re-INVITE inside the live dialog (To tag) stays the same call.
        t.handle_message(
            at(20),
            gw,
            phone,
            &msg(
                "INVITE sip:5001@pbx SIP/2.0",
                "c1",
                "a",
                "b",
                "2 INVITE",
                &offer,
            ),
        )
        .unwrap();
        assert_eq!(t.calls().count(), 1);
        t.handle_message(
            at(30),
            gw,
            phone,
            &msg("BYE sip:5001@pbx SIP/2.0", "c1", "a", "b", "3 BYE", ""),
        )
        .unwrap();
        assert!(t.call(0).unwrap().ended.is_some());
        // The same Call-ID again, from scratch: a second call, which the Call-ID now names.
        t.handle_message(at(500), gw, phone, &invite("z")).unwrap();
        assert_eq!(t.calls().count(), 2);
        assert_eq!(t.by_call_id("c1").unwrap().index, 1);
        assert!(t.by_call_id("c1").unwrap().ended.is_none());
        // The old one lingers out without taking the Call-ID along.
        t.handle_timeout(at(2000));
        assert!(t.call(0).is_none());
        assert_eq!(t.by_call_id("c1").unwrap().index, 1);
    }

    #[test]
    fn cancel_failure_and_port_reuse() {
        let mut t = CallTable::new(CallConfig::default());
        let (gw, phone) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        let offer = sdp("10.0.0.1", 20000, "sendrecv");
        t.handle_message(
            at(0),
            gw,
            phone,
            &msg(
                "INVITE sip:5001@pbx SIP/2.0",
                "c1",
                "a",
                "",
                "1 INVITE",
                &offer,
            ),
        )
        .unwrap();
        t.handle_message(
            at(1),
            gw,
            phone,
            &msg("CANCEL sip:5001@pbx SIP/2.0", "c1", "a", "", "1 CANCEL", ""),
        )
        .unwrap();
        t.handle_message(
            at(2),
            phone,
            gw,
            &msg(
                "SIP/2.0 487 Request Terminated",
                "c1",
                "a",
                "b",
                "1 INVITE",
                "",
            ),
        )
        .unwrap();
        assert_eq!(t.call(0).unwrap().state, CallState::Cancelled);
        // A second call reuses the media port: the latest negotiation wins.
        t.handle_message(
            at(3),
            gw,
            phone,
            &msg(
                "INVITE sip:5001@pbx SIP/2.0",
                "c2",
                "x",
                "",
                "1 INVITE",
                &offer,
            ),
        )
        .unwrap();
        assert_eq!(t.media_hint(a("10.0.0.1:20000")).map(|x| x.0), Some(1));
        // Garbage is an error and counted; unknown dialogs are counted.
        assert!(t
            .handle_message(at(4), gw, phone, b"INVITE nonsense")
            .is_err());
        t.handle_message(
            at(5),
            gw,
            phone,
            &msg("BYE sip:x SIP/2.0", "nope", "a", "b", "1 BYE", ""),
        )
        .unwrap();
        assert_eq!((t.stats().malformed, t.stats().unmatched), (1, 1));
    }
}
