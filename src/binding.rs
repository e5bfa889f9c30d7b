//! Agent -> media bindings, sans-IO: which RTP flows belong to which agent, each binding with its
//! source and expiry. Sources: static configuration (the agent's phone IPs), SIP sniffed on the
//! SPAN, the CTI Server's RTP events ([`Source::Cti`], in `binding::cti`), and explicit binds.
//!
//! Who a SIP dialog belongs to is decided per side ([`crate::sip::SideIdentity`]):
//! - the **callee side is who answered**: the answering phone's IP where configured, else the
//!   identity the answer asserted (P-Asserted-Identity / Remote-Party-ID), else the answer's
//!   Contact, else the Request-URI as the INVITE reached the answering side. `To`,
//!   `Diversion`, `History-Info` and `Referred-By` name whom the caller wanted and are never
//!   used: a forwarded, hunted or picked-up call belongs to the agent who took it;
//! - the **caller side** is the calling phone's IP where configured, else the INVITE's asserted
//!   identity, else its `From`;
//! - a side that **re-asserts** another identity later in the dialog (a B2BUA keeping the
//!   caller's dialog through a transfer) now belongs to that identity's agent, or to nobody:
//!   the agent who transferred the call stops being bound by it.
//!
//! A binding is one agent on one media endpoint; the dialogs that put the agent there share it,
//! so a conversation seen as several dialogs (a B2BUA's two legs) is one conversation, keyed by
//! its first dialog ([`Source::Sip`]). It ends when its last dialog leaves (ends, moves its
//! media elsewhere, or names another party) and lingers briefly for late packets;
//! [`Bindings::poll_ended`] reports it. Hold keeps a binding; a consult adds one; the next call
//! binds anew, also on the port of a conversation that still lingers (phones reuse their RTP
//! port): it never joins an ended conversation, and owns the endpoint over it, whatever
//! claimed the ended one (the phone's own SIP, a B2BUA, the CTI Server's RTP events or its
//! address).
//!
//! When two agents claim one endpoint in live conversations, a claim whose SIP came from the
//! media host itself (the phone answered, not a B2BUA for it) beats one that did not, then the
//! newest wins. An
//! explicit bind never takes an endpoint from a SIP or static binding, and is ignored for a
//! packet whose other end belongs to another agent (it cannot pull another agent's call to
//! the binder's monitors). Fed call-table events and `now`; the per-packet question
//! ([`Bindings::lookup`]) is a few hash lookups.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::sip::{Call, CallEvent, CallTable, MediaEndpoint, SideIdentity};
use crate::time::{Span, Timestamp};

/// An agent as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Agent id.
    pub id: String,
    /// Extension / instrument (the number calls to the agent carry).
    pub extension: String,
    /// Remote number of a mobile agent.
    pub mobile_number: Option<String>,
    /// IP addresses of the agent's phone(s): every flow to or from them is the agent's.
    pub phone_ips: Vec<IpAddr>,
}

impl Agent {
    /// The agent's numbers (extension, mobile number), non-empty, without a leading `+`.
    fn numbers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.extension.as_str())
            .chain(self.mobile_number.as_deref())
            .map(digits)
            .filter(|n| !n.is_empty())
    }
}

/// Where a binding came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The agent's phone IPs in the configuration.
    Static,
    /// SIP dialogs; the conversation's key is the call-table index of its first dialog.
    Sip(u32),
    /// An explicit bind request.
    Explicit,
    /// The CTI Server's RTP_STARTED for this call (its ConnectionCallID).
    Cti(u32),
}

/// A side of a SIP dialog.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The party that sent the initial INVITE.
    Caller,
    /// The party that answered it.
    Callee,
}

/// One binding: an agent on a media endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Index of the agent.
    pub agent: usize,
    /// The agent's media endpoint (where the agent receives RTP and sends from, symmetric RTP).
    pub endpoint: SocketAddr,
    /// Source.
    pub source: Source,
    /// The SIP dialog sides that put the agent on this endpoint (empty once they all left:
    /// the binding lingers, then goes).
    pub dialogs: Vec<(u32, Side)>,
    /// Since when.
    pub since: Timestamp,
    /// Until when (None = until unbound).
    pub expires: Option<Timestamp>,
    /// The conversation began with a call the agent placed itself (the caller side), not one
    /// delivered to it.
    pub placed_by_agent: bool,
    /// The phone itself signalled a dialog of this binding (its SIP came from the media host).
    pub direct: bool,
}

impl Binding {
    /// The rank of this binding's claim on its endpoint against another agent's.
    fn rank(&self) -> u8 {
        match (self.source, self.direct) {
            // The ACD's own word on who is on the phone (docs/CTI.md: CTI wins over SIP).
            (Source::Cti(_), _) => 4,
            (Source::Sip(_), true) => 3,
            (Source::Sip(_), false) | (Source::Static, _) => 2,
            (Source::Explicit, _) => 1,
        }
    }

    /// Its conversation ended (a SIP binding all of whose dialogs left, a CTI binding past
    /// RTP_STOPPED or the call's end): it only waits out the linger for late packets.
    fn lingering(&self) -> bool {
        self.expires.is_some() && matches!(self.source, Source::Sip(_) | Source::Cti(_))
    }

    /// What decides between two claims on one endpoint: an explicit bind never wins against
    /// SIP or the CTI; then a live conversation over one that lingers, whatever their ranks
    /// (the next call on a reused port is not the last one's, whoever claimed that one);
    /// then the rank.
    fn precedence(&self) -> (bool, bool, u8) {
        (
            self.source != Source::Explicit,
            !self.lingering(),
            self.rank(),
        )
    }
}

/// Direction of a packet relative to the agent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the agent.
    FromAgent,
    /// Sent to the agent.
    ToAgent,
}

/// One agent a packet belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index of the agent.
    pub agent: usize,
    /// Relative to that agent.
    pub direction: Direction,
    /// The binding that matched.
    pub source: Source,
}

/// What a dialog side should bind: agent, media endpoint, and whether the phone signalled.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Claim {
    agent: usize,
    endpoint: SocketAddr,
    direct: bool,
}

/// The binding table.
pub struct Bindings {
    agents: Vec<Agent>,
    by_phone_ip: FxHashMap<IpAddr, usize>,
    by_number: FxHashMap<String, usize>,
    bindings: Vec<Binding>,
    by_endpoint: FxHashMap<SocketAddr, usize>,
    linger: Span,
    /// Conversations whose last dialog left: (agent, key), for [`Bindings::poll_ended`].
    ended: VecDeque<(usize, u32)>,
    /// Phone addresses the CTI Server named, bound on every port (`CtiEndpoint::Address`):
    /// agent, call, expiry.
    cti_ips: FxHashMap<IpAddr, (usize, u32, Option<Timestamp>)>,
    /// Times a SIP claim and a CTI binding named different agents for one endpoint.
    disagreements: u64,
    /// Bumped at every reindex: bindings added, removed, moved or re-owned (a walk over
    /// `bindings` spread over time begins again when it changed).
    generation: u64,
}

fn digits(s: &str) -> &str {
    s.trim().trim_start_matches('+')
}

/// True when `a` and `b` name the same number: equal digits, or one ends with the other of at
/// least four digits (an extension and its E.164 form).
fn same_number(a: &str, b: &str) -> bool {
    let (a, b) = (digits(a), digits(b));
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    !short.is_empty() && (short == long || (short.len() >= 4 && long.ends_with(short)))
}

impl Bindings {
    /// A table for `agents`; a SIP binding outlives its conversation by `linger`.
    pub fn new(agents: Vec<Agent>, linger: Span) -> Self {
        let mut by_phone_ip = FxHashMap::default();
        let mut by_number = FxHashMap::default();
        for (i, a) in agents.iter().enumerate() {
            for ip in &a.phone_ips {
                by_phone_ip.insert(*ip, i);
            }
            for n in a.numbers() {
                by_number.entry(n.to_owned()).or_insert(i);
            }
        }
        Bindings {
            agents,
            by_phone_ip,
            by_number,
            bindings: Vec::new(),
            by_endpoint: FxHashMap::default(),
            generation: 0,
            linger,
            ended: VecDeque::new(),
            cti_ips: FxHashMap::default(),
            disagreements: 0,
        }
    }

    /// The agents.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Index of the agent with this id.
    pub fn agent_index(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.id == id)
    }

    /// The agent a number (extension or mobile number) belongs to.
    fn agent_by_number(&self, n: &str) -> Option<usize> {
        self.by_number.get(digits(n)).copied()
    }

    /// Live bindings of agent `agent`.
    pub fn of_agent(&self, agent: usize) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(move |b| b.agent == agent)
    }

    /// Whether agent `agent`'s conversation `key` began with a call the agent placed itself
    /// (rare: asked when a monitored agent's packets move to another conversation).
    pub fn placed_by_agent(&self, agent: usize, key: u32) -> bool {
        self.bindings
            .iter()
            .any(|b| b.agent == agent && b.source == Source::Sip(key) && b.placed_by_agent)
    }

    /// The next conversation that ended (its last dialog left): (agent, key).
    pub fn poll_ended(&mut self) -> Option<(usize, u32)> {
        self.ended.pop_front()
    }

    /// The agent a dialog side belongs to (see the module doc for the order of evidence).
    fn side_agent(&self, id: &SideIdentity, media: Option<MediaEndpoint>) -> Option<usize> {
        if let Some(&a) = media.and_then(|m| self.by_phone_ip.get(&m.addr.ip())) {
            return Some(a);
        }
        let joined = [
            id.asserted.as_deref(),
            id.contact.as_deref(),
            Some(&id.named),
        ]
        .into_iter()
        .flatten()
        .find_map(|n| self.agent_by_number(n));
        match id.reasserted.as_deref() {
            None => joined,
            // The same party again (CUCM's Remote-Party-ID on a hold re-INVITE, maybe in
            // E.164): no change. Anyone else: a transfer, that party's agent or nobody.
            Some(x) => match joined {
                Some(a) if self.agents[a].numbers().any(|n| same_number(n, x)) => Some(a),
                _ => self.agent_by_number(x),
            },
        }
    }

    /// What each side of `call` should bind now.
    fn claims(&self, call: &Call) -> [(Side, Option<Claim>, Option<MediaEndpoint>); 2] {
        let claim = |id: &SideIdentity, media: Option<MediaEndpoint>| {
            let agent = self.side_agent(id, media)?;
            let m = media?;
            Some(Claim {
                agent,
                endpoint: m.addr,
                direct: id.is_direct(media),
            })
        };
        [
            (
                Side::Caller,
                claim(&call.caller_id, call.caller_media),
                call.caller_media,
            ),
            (
                Side::Callee,
                claim(&call.callee_id, call.callee_media),
                call.callee_media,
            ),
        ]
    }

    /// Applies one call-table event (call after each `CallTable::poll_event`).
    pub fn handle_call_event(&mut self, now: Timestamp, event: CallEvent, calls: &CallTable) {
        let idx = match event {
            CallEvent::Ended(idx) => {
                for side in [Side::Caller, Side::Callee] {
                    self.leave(now, (idx, side));
                }
                self.reindex();
                return;
            }
            CallEvent::Started(idx)
            | CallEvent::Ringing(idx)
            | CallEvent::Answered(idx)
            | CallEvent::MediaChanged(idx)
            | CallEvent::PartyChanged(idx) => idx,
        };
        let Some(call) = calls.call(idx) else {
            return;
        };
        for (side, claim, media) in self.claims(call) {
            self.apply_claim(now, (idx, side), claim, media);
        }
        self.reindex();
    }

    /// Puts dialog side `ds` where `claim` says (or nowhere).
    fn apply_claim(
        &mut self,
        now: Timestamp,
        ds: (u32, Side),
        claim: Option<Claim>,
        media: Option<MediaEndpoint>,
    ) {
        let current = self.bindings.iter().position(|b| b.dialogs.contains(&ds));
        let Some(mut claim) = claim else {
            if current.is_some() {
                self.leave(now, ds);
            }
            return;
        };
        if media.is_some_and(|m| m.addr.ip().is_unspecified()) {
            // Hold with 0.0.0.0: the side keeps its endpoint.
            match current {
                Some(i) if self.bindings[i].agent == claim.agent => {
                    claim.endpoint = self.bindings[i].endpoint
                }
                _ => return,
            }
        }
        if let Some(i) = current {
            let taken = self.is_taken(claim, i);
            let b = &mut self.bindings[i];
            if b.agent == claim.agent && b.endpoint == claim.endpoint {
                b.direct |= claim.direct;
                return;
            }
            if b.agent == claim.agent && b.dialogs.len() == 1 && !taken {
                // The conversation moved its media (a re-INVITE): the binding moves with it.
                b.endpoint = claim.endpoint;
                b.direct = claim.direct;
                b.expires = None;
                return;
            }
            self.leave(now, ds);
        }
        self.join(now, ds, claim);
    }

    /// True when agent `claim.agent` already has another binding on `claim.endpoint`.
    fn is_taken(&self, claim: Claim, except: usize) -> bool {
        self.bindings.iter().enumerate().any(|(i, b)| {
            i != except
                && b.agent == claim.agent
                && b.endpoint == claim.endpoint
                && matches!(b.source, Source::Sip(_))
                && !b.lingering()
        })
    }

    /// Adds dialog side `ds` to the agent's conversation on the endpoint, or starts one.
    fn join(&mut self, now: Timestamp, ds: (u32, Side), claim: Claim) {
        if self.bindings.iter().any(|b| {
            b.endpoint == claim.endpoint
                && matches!(b.source, Source::Cti(_))
                && b.agent != claim.agent
        }) {
            self.disagreements += 1;
        }
        if let Some(b) = self.bindings.iter_mut().find(|b| {
            b.agent == claim.agent
                && b.endpoint == claim.endpoint
                && matches!(b.source, Source::Sip(_))
                && !b.lingering()
        }) {
            b.dialogs.push(ds);
            b.direct |= claim.direct;
            b.expires = None;
            return;
        }
        self.bindings.push(Binding {
            agent: claim.agent,
            endpoint: claim.endpoint,
            source: Source::Sip(ds.0),
            dialogs: vec![ds],
            since: now,
            expires: None,
            placed_by_agent: ds.1 == Side::Caller,
            direct: claim.direct,
        });
    }

    /// Dialog side `ds` leaves its binding; a binding left without dialogs lingers and its
    /// conversation is reported ended.
    fn leave(&mut self, now: Timestamp, ds: (u32, Side)) {
        let until = now + self.linger;
        for b in self.bindings.iter_mut() {
            let before = b.dialogs.len();
            b.dialogs.retain(|d| *d != ds);
            if before != 0 && b.dialogs.is_empty() {
                b.expires = Some(until);
                if let Source::Sip(key) = b.source {
                    self.ended.push_back((b.agent, key));
                }
            }
        }
    }

    /// Binds `endpoint` to agent `agent` explicitly until `expires`.
    pub fn bind(
        &mut self,
        now: Timestamp,
        agent: usize,
        endpoint: SocketAddr,
        expires: Option<Timestamp>,
    ) {
        self.bindings
            .retain(|b| !(b.endpoint == endpoint && b.source == Source::Explicit));
        self.bindings.push(Binding {
            agent,
            endpoint,
            source: Source::Explicit,
            dialogs: Vec::new(),
            since: now,
            expires,
            placed_by_agent: false,
            direct: false,
        });
        self.reindex();
    }

    /// Drops expired bindings.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let before = self.bindings.len();
        self.bindings.retain(|b| b.expires.is_none_or(|t| now < t));
        self.cti_ips
            .retain(|_, (_, _, e)| e.is_none_or(|t| now < t));
        if self.bindings.len() != before {
            self.reindex();
        }
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let ips = self.cti_ips.values().filter_map(|v| v.2);
        self.bindings
            .iter()
            .filter_map(|b| b.expires)
            .chain(ips)
            .min()
    }

    /// Each endpoint's owner: the strongest claim ([`Binding::precedence`]), the newest among
    /// equals.
    fn reindex(&mut self) {
        self.generation += 1;
        self.by_endpoint.clear();
        for (i, b) in self.bindings.iter().enumerate() {
            match self.by_endpoint.get(&b.endpoint) {
                Some(&j) if self.bindings[j].precedence() > b.precedence() => {}
                _ => {
                    self.by_endpoint.insert(b.endpoint, i);
                }
            }
        }
    }

    /// True when binding `i` owns its endpoint (another agent's stronger claim shadows it).
    pub fn is_effective(&self, i: usize) -> bool {
        self.bindings
            .get(i)
            .is_some_and(|b| self.by_endpoint.get(&b.endpoint) == Some(&i))
    }

    /// Who owns endpoint `p`: its binding, or the static phone IP (which an explicit bind to
    /// another agent never overrides).
    fn owner(&self, p: SocketAddr) -> Option<(usize, Source)> {
        let bound = self.by_endpoint.get(&p).map(|&i| &self.bindings[i]);
        // The CTI Server's word on an address beats every claim but its own on the port; once
        // its call ended (it lingers) it yields to a live conversation there.
        if !self.cti_ips.is_empty() && !bound.is_some_and(|b| matches!(b.source, Source::Cti(_))) {
            if let Some(&(agent, call, expires)) = self.cti_ips.get(&p.ip()) {
                let live_here =
                    bound.is_some_and(|b| b.source != Source::Explicit && !b.lingering());
                if expires.is_none() || !live_here {
                    return Some((agent, Source::Cti(call)));
                }
            }
        }
        let phone = self.by_phone_ip.get(&p.ip()).copied();
        match (bound, phone) {
            (Some(b), Some(a)) if b.source == Source::Explicit && b.agent != a => {
                Some((a, Source::Static))
            }
            (Some(b), _) => Some((b.agent, b.source)),
            (None, Some(a)) => Some((a, Source::Static)),
            (None, None) => None,
        }
    }

    /// The agents a packet from `src` to `dst` belongs to: the sender's (as `FromAgent`) and
    /// the receiver's (as `ToAgent`), each at most once; an agent talking to another agent is
    /// both agents' conversation. An explicit binding on one end yields when the other end
    /// belongs to another agent by SIP or configuration. Per packet.
    pub fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> [Option<Hit>; 2] {
        let mut from = self.owner(src);
        let mut to = self.owner(dst);
        let yields = |mine: Option<(usize, Source)>, other: Option<(usize, Source)>| {
            matches!((mine, other), (Some((a, Source::Explicit)), Some((b, s)))
                if s != Source::Explicit && a != b)
        };
        let (from_yields, to_yields) = (yields(from, to), yields(to, from));
        if from_yields {
            from = None;
        }
        if to_yields {
            to = None;
        }
        if from.is_some() && from.map(|f| f.0) == to.map(|t| t.0) {
            to = None;
        }
        let hit = |o: Option<(usize, Source)>, direction| {
            o.map(|(agent, source)| Hit {
                agent,
                direction,
                source,
            })
        };
        [hit(from, Direction::FromAgent), hit(to, Direction::ToAgent)]
    }

    /// Changes whenever bindings are reindexed: one added, removed or moved, or an endpoint's
    /// owner changed (on every call event). A walk over [`Bindings::all`] spread over time
    /// checks it: positions and owners may differ once it changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every live binding (shadowed ones included; see [`Bindings::is_effective`]).
    pub fn all(&self) -> &[Binding] {
        &self.bindings
    }

    /// The agents a call (by call-table index) is effectively bound to.
    pub fn agents_of_call(&self, call: u32) -> impl Iterator<Item = usize> + '_ {
        self.bindings
            .iter()
            .enumerate()
            .filter(move |(i, b)| b.dialogs.iter().any(|d| d.0 == call) && self.is_effective(*i))
            .map(|(_, b)| b.agent)
    }

    /// The first agent a packet from `src` to `dst` belongs to, and its direction. Per packet.
    pub fn classify(&self, src: SocketAddr, dst: SocketAddr) -> Option<(usize, Direction)> {
        self.lookup(src, dst)
            .into_iter()
            .flatten()
            .next()
            .map(|h| (h.agent, h.direction))
    }

    /// Where agent `agent` is bound (static phone IPs count as bindings).
    pub fn sources(&self, agent: usize) -> Vec<Source> {
        let mut v: Vec<Source> = self.of_agent(agent).map(|b| b.source).collect();
        if !self.agents[agent].phone_ips.is_empty() {
            v.push(Source::Static);
        }
        v
    }
}

mod cti;
pub use cti::CtiEndpoint;

#[cfg(test)]
mod tests;
