//! The asking side of one peer link, sans-IO: this appliance dials a listed peer, says `Hello`,
//! and once `Welcome`d subscribes to every agent some local supervisor monitors (the demand).
//! Fed `now`, the connection's outcome and the peer's frames; returns what to send, when to
//! (re)connect or close, and events for the appliance ([`LinkEvent`]). Tested on a simulated
//! clock without sockets.
//!
//! Rules:
//! - The demand goes to every connected peer (no appliance knows which SPAN carries an
//!   agent's next call); each peer sends only what its SPAN sees, and one copy per agent
//!   however many supervisors listen here (one subscription per agent and link; its
//!   supervisors are re-sent when they change, for the serving side's audit trail).
//! - A heartbeat every `interval`; a link that heard nothing for `interval x misses` is
//!   closed and reported down. A refused or failed connection is tried again after a backoff
//!   ([`FIRST_RETRY`] doubling to [`LAST_RETRY`]); a link that comes back says `Hello` again,
//!   gets the full picture and re-subscribes.
//! - Subscription ids are fresh per connection; media frames of an id this side did not give
//!   (or gave on an earlier connection) map to no agent and are dropped by the shell.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::wire::{AgentCalls, PeerFrame, PeerMsg, VERSION};
use crate::codec::PayloadMap;
use crate::monitor::wire::Control;
use crate::time::{Span, Timestamp};

/// First wait before reconnecting.
pub const FIRST_RETRY: Span = Span::from_secs(1);
/// Longest wait between tries (a peer that comes back is reached within this).
pub const LAST_RETRY: Span = Span::from_secs(5);

/// Agent id -> the supervisors monitoring it here.
pub type Demand = BTreeMap<String, BTreeSet<String>>;

/// What the link tells the appliance.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkEvent {
    /// `Welcome`d: the link is up.
    Up,
    /// The link went down (it was up).
    Down {
        /// Why.
        reason: String,
    },
    /// The peer's picture changed: with `full`, it replaces what was known.
    Seen {
        /// Starts the picture afresh.
        full: bool,
        /// Agents whose calls changed.
        agents: Vec<AgentCalls>,
    },
    /// A subscribed agent's audio now comes from this call on the peer.
    Call {
        /// The agent's id.
        agent: String,
        /// SIP Call-ID.
        call_id: String,
        /// Its payload formats.
        payloads: PayloadMap,
        /// When it started.
        started: Timestamp,
    },
    /// A call a subscribed agent was on ended.
    CallEnded {
        /// The agent's id.
        agent: String,
        /// SIP Call-ID.
        call_id: String,
    },
    /// The peer refused a subscription or a request.
    Refused {
        /// The agent, when it was a subscription.
        agent: Option<String>,
        /// Why.
        reason: String,
    },
}

/// What the shell does next.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkAction {
    /// Dial the peer.
    Connect,
    /// Send these bytes (one frame).
    Send(Vec<u8>),
    /// Close the connection.
    Close(String),
    /// Tell the appliance.
    Event(LinkEvent),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Not connected; dial at this time.
    Down { retry_at: Timestamp },
    /// Dialing.
    Connecting,
    /// Connected, `Hello` sent, no `Welcome` yet.
    Greeting,
    /// `Welcome`d at this time.
    Up { since: Timestamp },
}

/// One subscription on the current connection.
#[derive(Clone, Debug)]
struct Sub {
    id: u32,
    supervisors: BTreeSet<String>,
}

/// The asking side of the link to one peer.
pub struct Link {
    me: String,
    peer: String,
    interval: Span,
    misses: u32,
    state: State,
    retry: Span,
    demand: Demand,
    subs: BTreeMap<String, Sub>,
    by_id: HashMap<u32, String>,
    next_id: u32,
    last_heard: Timestamp,
    next_beat: Timestamp,
    seq: u64,
    beat_sent: Option<(u64, Timestamp)>,
    rtt: Option<Span>,
    out: VecDeque<LinkAction>,
}

impl Link {
    /// The link from `me` to the peer named `peer` (its certificate's name), heartbeats every
    /// `interval`, down after `misses` of them unheard; it dials at once.
    pub fn new(me: &str, peer: &str, interval: Span, misses: u32, now: Timestamp) -> Link {
        Link {
            me: me.to_owned(),
            peer: peer.to_owned(),
            interval,
            misses: misses.max(1),
            state: State::Down { retry_at: now },
            retry: FIRST_RETRY,
            demand: Demand::new(),
            subs: BTreeMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            last_heard: now,
            next_beat: now,
            seq: 0,
            beat_sent: None,
            rtt: None,
            out: VecDeque::new(),
        }
    }

    /// The peer's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Since when the link is up.
    pub fn up_since(&self) -> Option<Timestamp> {
        match self.state {
            State::Up { since } => Some(since),
            _ => None,
        }
    }

    /// The last heartbeat's round trip.
    pub fn rtt(&self) -> Option<Span> {
        self.rtt
    }

    /// Subscriptions on the current connection.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// The agent a media frame's subscription id stands for.
    pub fn agent_of(&self, sub: u32) -> Option<&str> {
        self.by_id.get(&sub).map(String::as_str)
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<LinkAction> {
        self.out.pop_front()
    }

    /// When [`Link::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            State::Connecting => None,
            State::Greeting | State::Up { .. } => Some(self.next_beat.min(self.deadline())),
        }
    }

    fn deadline(&self) -> Timestamp {
        self.last_heard + Span::from_nanos(self.interval.as_nanos() * i64::from(self.misses))
    }

    /// Time passed: dial when due, send a heartbeat when due, close a silent link.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self.state {
            State::Down { retry_at } if now >= retry_at => {
                self.state = State::Connecting;
                self.out.push_back(LinkAction::Connect);
            }
            State::Greeting | State::Up { .. } if now >= self.deadline() => {
                let reason = format!(
                    "nothing heard from {} for {} heartbeats",
                    self.peer, self.misses
                );
                self.out.push_back(LinkAction::Close(reason.clone()));
                self.went_down(now, reason);
            }
            State::Greeting | State::Up { .. } if now >= self.next_beat => {
                self.seq += 1;
                self.beat_sent = Some((self.seq, now));
                self.send_control(&Control::Heartbeat { seq: self.seq });
                self.next_beat = now + self.interval;
            }
            _ => {}
        }
    }

    /// The connection is open (TLS done, the peer's name checked): greet.
    pub fn connected(&mut self, now: Timestamp) {
        self.state = State::Greeting;
        self.last_heard = now;
        self.next_beat = now + self.interval;
        self.send_peer(&PeerMsg::Hello {
            name: self.me.clone(),
            version: VERSION,
        });
    }

    /// Dialing failed, or the connection closed or failed.
    pub fn disconnected(&mut self, now: Timestamp, reason: &str) {
        if !matches!(self.state, State::Down { .. }) {
            self.went_down(now, reason.to_owned());
        }
    }

    fn went_down(&mut self, now: Timestamp, reason: String) {
        if matches!(self.state, State::Up { .. }) {
            self.out
                .push_back(LinkAction::Event(LinkEvent::Down { reason }));
            self.retry = FIRST_RETRY;
        }
        self.state = State::Down {
            retry_at: now + self.retry,
        };
        self.retry = Span::from_nanos((self.retry.as_nanos() * 2).min(LAST_RETRY.as_nanos()));
        self.subs.clear();
        self.by_id.clear();
        self.beat_sent = None;
    }

    /// What local supervisors monitor now: subscriptions follow on a link that is up.
    pub fn set_demand(&mut self, demand: &Demand) {
        self.demand = demand.clone();
        if matches!(self.state, State::Up { .. }) {
            self.resubscribe();
        }
    }

    /// Brings the subscriptions in line with the demand.
    fn resubscribe(&mut self) {
        let gone: Vec<String> = self
            .subs
            .keys()
            .filter(|a| !self.demand.contains_key(*a))
            .cloned()
            .collect();
        for agent in gone {
            if let Some(s) = self.subs.remove(&agent) {
                self.by_id.remove(&s.id);
                self.send_peer(&PeerMsg::Unsubscribe { sub: s.id });
            }
        }
        let wanted: Vec<(String, BTreeSet<String>)> = self
            .demand
            .iter()
            .filter(|(a, sups)| self.subs.get(*a).is_none_or(|s| s.supervisors != **sups))
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect();
        for (agent, supervisors) in wanted {
            let id = match self.subs.get(&agent) {
                Some(s) => s.id,
                None => {
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                    self.by_id.insert(id, agent.clone());
                    id
                }
            };
            self.send_peer(&PeerMsg::Subscribe {
                sub: id,
                agent: agent.clone(),
                supervisors: supervisors.iter().cloned().collect(),
            });
            self.subs.insert(agent, Sub { id, supervisors });
        }
    }

    /// A control frame from the peer (media frames go straight to the shell's forwarding).
    pub fn handle_frame(&mut self, now: Timestamp, frame: &PeerFrame<'_>) {
        self.last_heard = now;
        match frame {
            PeerFrame::Media(_) => {}
            PeerFrame::Peer(m) => self.handle_peer(now, m),
            PeerFrame::Control(c) => self.handle_control(now, c),
        }
    }

    fn handle_peer(&mut self, now: Timestamp, m: &PeerMsg) {
        match m {
            PeerMsg::Welcome { name } if *name == self.peer && self.state == State::Greeting => {
                self.state = State::Up { since: now };
                self.retry = FIRST_RETRY;
                self.event(LinkEvent::Up);
                self.resubscribe();
            }
            PeerMsg::Welcome { name } => {
                let reason = format!("{} answered as {name:?}", self.peer);
                self.out.push_back(LinkAction::Close(reason.clone()));
                self.went_down(now, reason);
            }
            PeerMsg::Seen { full, agents, .. } => self.event(LinkEvent::Seen {
                full: *full,
                agents: agents.clone(),
            }),
            PeerMsg::Refused { sub, reason } => {
                let agent = sub.and_then(|s| self.by_id.get(&s).cloned());
                self.event(LinkEvent::Refused {
                    agent,
                    reason: reason.clone(),
                });
            }
            // Requests only the asking side sends: a confused peer; ignored.
            PeerMsg::Hello { .. } | PeerMsg::Subscribe { .. } | PeerMsg::Unsubscribe { .. } => {}
        }
    }

    fn handle_control(&mut self, now: Timestamp, c: &Control) {
        match c {
            Control::Heartbeat { seq } => self.send_control(&Control::HeartbeatReply { seq: *seq }),
            Control::HeartbeatReply { seq } => {
                if let Some((sent_seq, at)) = self.beat_sent {
                    if *seq == sent_seq {
                        self.rtt = Some(now - at);
                        self.beat_sent = None;
                    }
                }
            }
            Control::Call {
                monitor,
                call_id,
                payloads,
                started,
                ..
            } => {
                if let Some(agent) = self.by_id.get(monitor).cloned() {
                    self.event(LinkEvent::Call {
                        agent,
                        call_id: call_id.clone(),
                        payloads: *payloads,
                        started: *started,
                    });
                }
            }
            Control::CallEnded { monitor, call_id } => {
                if let Some(agent) = self.by_id.get(monitor).cloned() {
                    self.event(LinkEvent::CallEnded {
                        agent,
                        call_id: call_id.clone(),
                    });
                }
            }
            Control::Error { reason } => self.event(LinkEvent::Refused {
                agent: None,
                reason: reason.clone(),
            }),
            _ => {}
        }
    }

    fn event(&mut self, e: LinkEvent) {
        self.out.push_back(LinkAction::Event(e));
    }

    fn send_peer(&mut self, m: &PeerMsg) {
        match m.to_bytes() {
            Ok(b) => self.out.push_back(LinkAction::Send(b)),
            Err(e) => tracing::warn!(peer = %self.peer, error = %e, "peer message not sent"),
        }
    }

    fn send_control(&mut self, c: &Control) {
        let mut b = Vec::new();
        if c.append(&mut b).is_ok() {
            self.out.push_back(LinkAction::Send(b));
        }
    }
}

#[cfg(test)]
mod tests;
