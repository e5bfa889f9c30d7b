//! The call table, sans-IO: SIP dialogs by Call-ID, their parties, state and the media endpoints
//! their SDP offer/answer negotiated (the caller's and the callee's), hold via re-INVITE, and
//! events for whoever follows calls (bindings, monitors). Fed messages with their capture time.
//! Memory is bounded: past `max_calls` the oldest *idle* call (the longest without a message,
//! ended or not) is evicted (counted; a live one is reported ended), ended calls leave after
//! `linger`, and each call keeps a bounded number of hops and media addresses.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::net::SocketAddr;

use super::message::{Method, NameAddr, SipMessage, StartLine};
use super::sdp::{Direction, SessionDescription};
use super::Error;
use crate::codec::PayloadMap;
use crate::time::{Span, Timestamp};

/// Most events queued before the oldest is dropped.
const MAX_EVENTS: usize = 4096;
/// Most media addresses one call maps (re-INVITEs moving the media add more).
const MAX_MEDIA_ADDRS: usize = 16;
/// Most hops of one initial INVITE remembered (a proxy chain forwarding it with the same
/// Call-ID).
const MAX_HOPS: usize = 8;

/// Default most calls kept: far above a gateway's concurrent calls (a few thousand), low
/// enough that a crafted capture cannot grow the table past some tens of MB.
pub const DEFAULT_MAX_CALLS: usize = 16_384;

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
            max_calls: DEFAULT_MAX_CALLS,
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
    /// The media addresses the table maps to this call.
    media_addrs: Vec<SocketAddr>,
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

    /// True while the call is fax (T.38): the answer (or, before it, the offer) switched the
    /// media from audio.
    pub fn is_fax(&self) -> bool {
        let fax = |m: Option<MediaEndpoint>| m.is_some_and(|m| m.payloads.is_fax());
        fax(self.callee_media) || (self.callee_media.is_none() && fax(self.caller_media))
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
    /// Calls by index (indices grow; iteration is in order of first INVITE).
    calls: BTreeMap<u32, Call>,
    next_index: u32,
    /// (last activity, index): the oldest idle call first, for eviction.
    idle: BTreeSet<(Timestamp, u32)>,
    /// (end, index): ended calls by when they ended, for the linger expiry.
    ended: BTreeSet<(Timestamp, u32)>,
    by_call_id: HashMap<String, u32>,
    media: FxHashMap<SocketAddr, (u32, PayloadMap)>,
    /// Media addresses whose kind (audio or fax) the last messages changed, for the flow
    /// table (at most [`MAX_SWITCHES`], the oldest dropped: drained after each message).
    switches: Vec<(SocketAddr, bool)>,
    events: VecDeque<CallEvent>,
    stats: SipStats,
}

/// Most media switches kept undrained.
const MAX_SWITCHES: usize = 16;

/// What one message did to its call, for the table's bookkeeping.
struct Applied {
    events: Vec<CallEvent>,
    /// A media endpoint the message negotiated (not 0.0.0.0).
    endpoint: Option<MediaEndpoint>,
}

impl CallTable {
    /// An empty table.
    pub fn new(config: CallConfig) -> Self {
        CallTable {
            config,
            calls: BTreeMap::new(),
            next_index: 0,
            idle: BTreeSet::new(),
            ended: BTreeSet::new(),
            by_call_id: HashMap::new(),
            media: FxHashMap::default(),
            switches: Vec::new(),
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
        self.calls.values()
    }

    /// Calls held now.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is held.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// One call by index.
    pub fn call(&self, index: u32) -> Option<&Call> {
        self.calls.get(&index)
    }

    /// A call by Call-ID.
    pub fn by_call_id(&self, call_id: &str) -> Option<&Call> {
        self.call(*self.by_call_id.get(call_id)?)
    }

    /// If `addr` is a media endpoint negotiated by SDP, the call and its payload formats.
    pub fn media_hint(&self, addr: SocketAddr) -> Option<(u32, &PayloadMap)> {
        self.media.get(&addr).map(|(i, p)| (*i, p))
    }

    /// Media addresses the last messages switched between audio and fax (true: now fax), and
    /// forgets them. The engine ends the RTP streams of an address switched to fax.
    pub fn take_media_switches(&mut self) -> Vec<(SocketAddr, bool)> {
        std::mem::take(&mut self.switches)
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
        self.ended.first().map(|(t, _)| *t + self.config.linger)
    }

    /// Forgets calls that ended more than `linger` before `now` (oldest first).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(t, index)) = self.ended.first() {
            if now - t <= self.config.linger {
                break;
            }
            self.remove(index);
        }
    }

    /// Forgets call `index` and everything that points at it.
    fn remove(&mut self, index: u32) {
        let Some(c) = self.calls.remove(&index) else {
            return;
        };
        self.idle.remove(&(c.last_activity, index));
        if let Some(t) = c.ended {
            self.ended.remove(&(t, index));
        }
        // The Call-ID may belong to a newer call by now, a media address to a newer one.
        if self.by_call_id.get(&c.call_id) == Some(&index) {
            self.by_call_id.remove(&c.call_id);
        }
        for addr in &c.media_addrs {
            if self.media.get(addr).is_some_and(|(i, _)| *i == index) {
                self.media.remove(addr);
            }
        }
    }

    /// Makes room for one more call: the oldest idle one goes (counted); a call that had not
    /// ended is reported ended, so whoever follows it lets go.
    fn evict_oldest_idle(&mut self) {
        let Some(&(_, index)) = self.idle.first() else {
            return;
        };
        let live = self.calls.get(&index).is_some_and(|c| c.ended.is_none());
        self.remove(index);
        self.stats.evicted += 1;
        if live {
            self.emit(CallEvent::Ended(index));
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

    /// The call a message belongs to: an existing dialog, or a new call for an initial INVITE
    /// (also one reusing the Call-ID of a call that is over: a looped replay, a UA reusing
    /// Call-IDs). None (counted) for anything else.
    fn dialog_of(
        &mut self,
        now: Timestamp,
        (src, dst): (SocketAddr, SocketAddr),
        msg: &SipMessage<'_>,
    ) -> Option<u32> {
        let Some(call_id) = msg.call_id() else {
            self.stats.unmatched += 1;
            return None;
        };
        let initial = match msg.start {
            StartLine::Request {
                method: Method::Invite,
                uri,
                ..
            } if msg.to().is_some_and(|t| t.tag.is_none()) => Some(uri),
            _ => None,
        };
        match (self.by_call_id.get(call_id).copied(), initial) {
            (Some(i), Some(uri)) if self.call(i).is_some_and(|c| c.ended.is_some()) => {
                Some(self.new_call(now, (src, dst), call_id, uri, msg))
            }
            (Some(i), _) => Some(i),
            (None, Some(uri)) => Some(self.new_call(now, (src, dst), call_id, uri, msg)),
            (None, None) => {
                self.stats.unmatched += 1;
                None
            }
        }
    }

    fn apply(&mut self, now: Timestamp, src: SocketAddr, dst: SocketAddr, msg: &SipMessage<'_>) {
        let Some(index) = self.dialog_of(now, (src, dst), msg) else {
            return;
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
        let Some(call) = self.calls.get_mut(&index) else {
            return;
        };
        let (last, was_ended) = (call.last_activity, call.ended);
        let applied = call.apply(now, (src, dst), msg, sdp.as_ref());
        let ended = call.ended;
        self.idle.remove(&(last, index));
        self.idle.insert((now, index));
        if let (None, Some(t)) = (was_ended, ended) {
            self.ended.insert((t, index));
        }
        if let Some(ep) = applied.endpoint {
            // RTCP conventionally on the next port.
            let rtcp = SocketAddr::new(ep.addr.ip(), ep.addr.port().wrapping_add(1));
            let was_fax = self.media.get(&ep.addr).map(|(_, p)| p.is_fax());
            if was_fax.is_some_and(|f| f != ep.payloads.is_fax()) {
                if self.switches.len() == MAX_SWITCHES {
                    self.switches.remove(0);
                }
                self.switches.push((ep.addr, ep.payloads.is_fax()));
            }
            self.media.insert(ep.addr, (index, ep.payloads));
            self.media.entry(rtcp).or_insert((index, ep.payloads));
            if let Some(call) = self.calls.get_mut(&index) {
                call.remember_media(ep.addr, rtcp);
            }
        }
        for e in applied.events {
            self.emit(e);
        }
    }

    fn new_call(
        &mut self,
        now: Timestamp,
        (src, dst): (SocketAddr, SocketAddr),
        call_id: &str,
        uri: &str,
        msg: &SipMessage<'_>,
    ) -> u32 {
        if self.calls.len() >= self.config.max_calls {
            self.evict_oldest_idle();
        }
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1);
        let call = Call::new(index, now, (src, dst), call_id, uri, msg);
        self.calls.insert(index, call);
        self.idle.insert((now, index));
        self.by_call_id.insert(call_id.to_owned(), index);
        self.emit(CallEvent::Started(index));
        index
    }
}

impl Call {
    /// A call for the initial INVITE `msg` from `src` to `dst`.
    fn new(
        index: u32,
        now: Timestamp,
        (src, dst): (SocketAddr, SocketAddr),
        call_id: &str,
        uri: &str,
        msg: &SipMessage<'_>,
    ) -> Call {
        Call {
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
            media_addrs: Vec::new(),
            state: CallState::Calling,
            started: now,
            answered: None,
            ended: None,
            caller_media: None,
            callee_media: None,
            caller_signalling: src,
            last_activity: now,
        }
    }

    /// Remembers the media addresses the table maps to this call (so they are forgotten
    /// with it); at most [`MAX_MEDIA_ADDRS`].
    fn remember_media(&mut self, rtp: SocketAddr, rtcp: SocketAddr) {
        for a in [rtp, rtcp] {
            if !self.media_addrs.contains(&a) && self.media_addrs.len() < MAX_MEDIA_ADDRS {
                self.media_addrs.push(a);
            }
        }
    }

    /// Whether `msg` was written by the caller: requests by their From tag, responses by their
    /// To tag (a response without one, like 100 Trying, comes from the callee side).
    fn by_caller(&self, msg: &SipMessage<'_>) -> bool {
        match msg.start {
            StartLine::Request { .. } => {
                msg.from().and_then(|f| f.tag).unwrap_or("") == self.from.tag
            }
            StartLine::Response { .. } => {
                let tag = msg.to().and_then(|t| t.tag).unwrap_or("");
                !tag.is_empty() && tag == self.from.tag
            }
        }
    }

    /// One message of this call at `now`: state, parties, media.
    fn apply(
        &mut self,
        now: Timestamp,
        (src, dst): (SocketAddr, SocketAddr),
        msg: &SipMessage<'_>,
        sdp: Option<&SessionDescription>,
    ) -> Applied {
        self.last_activity = now;
        let by_caller = self.by_caller(msg);
        let mut events = Vec::new();
        match msg.start {
            StartLine::Request { method, uri, .. } => {
                if method == Method::Invite
                    && self.answered.is_none()
                    && msg.to().is_some_and(|t| t.tag.is_none())
                {
                    self.add_hop(dst, uri);
                }
                events.extend(self.on_request(now, method));
            }
            StartLine::Response { code, .. } => {
                events.extend(self.on_response(now, code, src, msg))
            }
        }
        if self.reassert(by_caller, msg) {
            events.push(CallEvent::PartyChanged(self.index));
        }
        let endpoint = self.on_sdp(by_caller, sdp, &mut events);
        Applied { events, endpoint }
    }

    fn end(&mut self, now: Timestamp, state: CallState) -> CallEvent {
        self.state = state;
        self.ended = Some(now);
        CallEvent::Ended(self.index)
    }

    fn on_request(&mut self, now: Timestamp, method: Method) -> Option<CallEvent> {
        match method {
            Method::Bye => Some(self.end(now, CallState::Ended)),
            Method::Cancel if self.answered.is_none() => Some(self.end(now, CallState::Cancelled)),
            _ => None,
        }
    }

    fn on_response(
        &mut self,
        now: Timestamp,
        code: u16,
        src: SocketAddr,
        msg: &SipMessage<'_>,
    ) -> Option<CallEvent> {
        let for_invite = matches!(msg.cseq(), Some((_, Method::Invite)));
        if !for_invite || self.answered.is_some() || self.ended.is_some() {
            return None;
        }
        match code {
            180..=199 if self.state == CallState::Calling => {
                self.state = CallState::Ringing;
                Some(CallEvent::Ringing(self.index))
            }
            200..=299 => {
                self.state = CallState::Answered;
                self.answered = Some(now);
                // The callee's tag completes the dialog.
                if let Some(t) = msg.to().and_then(|t| t.tag) {
                    self.to.tag = t.to_owned();
                }
                self.answered_by(src, msg);
                Some(CallEvent::Answered(self.index))
            }
            300..=699 => {
                let state = if code == 487 {
                    CallState::Cancelled
                } else {
                    CallState::Failed(code)
                };
                Some(self.end(now, state))
            }
            _ => None,
        }
    }

    /// The audio (or T.38 fax) endpoint an SDP body declares for its writer's side; returns it when it is
    /// a real address (not 0.0.0.0), to be mapped to this call.
    fn on_sdp(
        &mut self,
        by_caller: bool,
        sdp: Option<&SessionDescription>,
        events: &mut Vec<CallEvent>,
    ) -> Option<MediaEndpoint> {
        let audio = sdp?.active()?;
        let ip = audio.connection?;
        let endpoint = MediaEndpoint {
            addr: SocketAddr::new(ip, audio.port),
            payloads: audio.payloads,
            direction: audio.direction,
            hold: audio.is_hold(),
        };
        let slot = if by_caller {
            &mut self.caller_media
        } else {
            &mut self.callee_media
        };
        if *slot != Some(endpoint) {
            *slot = Some(endpoint);
            events.push(CallEvent::MediaChanged(self.index));
        }
        (!ip.is_unspecified()).then_some(endpoint)
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
    fn past_the_cap_the_oldest_idle_call_goes_and_a_flood_stays_bounded() {
        let mut t = CallTable::new(CallConfig {
            max_calls: 3,
            ..CallConfig::default()
        });
        assert_eq!(CallConfig::default().max_calls, DEFAULT_MAX_CALLS);
        let (gw, phone) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        let invite = |cid: &str, port: u16| {
            let offer = sdp("10.0.0.1", port, "sendrecv");
            msg(
                "INVITE sip:5001@pbx SIP/2.0",
                cid,
                "a",
                "",
                "1 INVITE",
                &offer,
            )
        };
        for (i, cid) in ["c0", "c1", "c2"].iter().enumerate() {
            t.handle_message(at(i as i64), gw, phone, &invite(cid, 20000 + i as u16))
                .unwrap();
        }
        // c0 is the oldest but talks again; c1 is the oldest idle one.
        let ok = msg("SIP/2.0 200 OK", "c0", "a", "b", "1 INVITE", "");
        t.handle_message(at(10), phone, gw, &ok).unwrap();
        events(&mut t);
        t.handle_message(at(11), gw, phone, &invite("c3", 20003))
            .unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.by_call_id("c1").is_none());
        assert!(t.by_call_id("c0").is_some() && t.by_call_id("c2").is_some());
        assert_eq!(
            t.media_hint(a("10.0.0.1:20001")),
            None,
            "its media forgotten"
        );
        assert_eq!(t.stats().evicted, 1);
        // A live call evicted is reported ended, so bindings let go.
        assert_eq!(
            events(&mut t),
            vec![
                CallEvent::Ended(1),
                CallEvent::Started(3),
                CallEvent::MediaChanged(3)
            ]
        );
        // A flood of INVITEs never grows the table past the cap.
        let mut t = CallTable::new(CallConfig {
            max_calls: 100,
            ..CallConfig::default()
        });
        for i in 0..1_000u32 {
            let cid = format!("flood-{i}");
            t.handle_message(at(i as i64), gw, phone, &invite(&cid, (i % 60_000) as u16))
                .unwrap();
            while t.poll_event().is_some() {}
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.stats().evicted, 900);
        assert!(t.media.len() <= 200, "{}", t.media.len());
        assert_eq!(t.idle.len(), 100);
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
