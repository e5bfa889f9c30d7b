//! The serving side of one peer link, sans-IO: a listed peer (its certificate checked by the
//! shell) connected to this appliance. Fed `now`, its frames and this appliance's view; returns
//! what to send, which subscriptions to route or unroute, audit entries and when to close.
//!
//! Rules:
//! - The first frame must be `Hello` with the name the certificate carries and our
//!   [`VERSION`]; anything else closes the link. The answer is `Welcome` and the full picture
//!   of what this SPAN sees (agents on calls, with their calls), then only changes, as the
//!   view changes. When a control frame to the peer was lost (its queue full), the next
//!   picture is full again.
//! - A subscription names a configured agent (else `Refused`); one per agent and link (a second
//!   id for the same agent is refused); at most [`MAX_SUBSCRIPTIONS`]. Each is audited with the
//!   supervisors it is for ("peer X asked for agent N on behalf of S"), again when they change.
//! - Only this SPAN's calls are announced (the view holds local calls only): no appliance
//!   relays another's.
//! - Silence longer than `timeout` closes the link; every subscription is unrouted when it
//!   closes, whatever closed it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::wire::{AgentCalls, PeerFrame, PeerMsg, AGENTS_PER_FRAME, VERSION};
use crate::monitor::wire::Control;
use crate::router::{CallView, View};
use crate::security::audit::AuditEvent;
use crate::time::{Span, Timestamp};

/// Most subscriptions one peer may hold.
pub const MAX_SUBSCRIPTIONS: usize = 4096;

/// What the shell does next.
#[derive(Clone, Debug, PartialEq)]
pub enum ServingAction {
    /// Send these bytes (one frame).
    Send(Vec<u8>),
    /// Forward agent `agent`'s audio to the link, tagged `sub`.
    Route {
        /// The peer's subscription id.
        sub: u32,
        /// The agent's index.
        agent: usize,
    },
    /// Stop forwarding `sub`.
    Unroute {
        /// The subscription.
        sub: u32,
    },
    /// Record this.
    Audit(AuditEvent),
    /// Close the link.
    Close(String),
}

struct Sub {
    agent: String,
    supervisors: BTreeSet<String>,
}

/// The serving side of the link from the peer named `peer`.
pub struct Serving {
    me: String,
    peer: String,
    agents: Arc<HashMap<String, usize>>,
    timeout: Span,
    greeted: bool,
    subs: BTreeMap<u32, Sub>,
    /// What the peer was told, by agent.
    told: BTreeMap<String, Vec<CallView>>,
    full_due: bool,
    last_heard: Timestamp,
    out: VecDeque<ServingAction>,
}

impl Serving {
    /// The serving side for the peer whose certificate names it `peer`; `agents` maps the
    /// configured agents' ids to their indexes; silence over `timeout` closes.
    pub fn new(
        me: &str,
        peer: &str,
        agents: Arc<HashMap<String, usize>>,
        timeout: Span,
        now: Timestamp,
    ) -> Serving {
        Serving {
            me: me.to_owned(),
            peer: peer.to_owned(),
            agents,
            timeout,
            greeted: false,
            subs: BTreeMap::new(),
            told: BTreeMap::new(),
            full_due: true,
            last_heard: now,
            out: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<ServingAction> {
        self.out.pop_front()
    }

    /// When [`Serving::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Timestamp {
        self.last_heard + self.timeout
    }

    /// Subscriptions held.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Closes a link that fell silent.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now >= self.poll_timeout() {
            self.close(format!("nothing heard from {} in time", self.peer));
        }
    }

    /// The link closed (for any reason): every subscription is unrouted.
    pub fn closed(&mut self) {
        for sub in std::mem::take(&mut self.subs).into_keys() {
            self.out.push_back(ServingAction::Unroute { sub });
        }
    }

    fn close(&mut self, reason: String) {
        self.out.push_back(ServingAction::Close(reason));
        self.closed();
    }

    /// A frame from the peer (media from an asking side is refused as a protocol error).
    pub fn handle_frame(&mut self, now: Timestamp, frame: &PeerFrame<'_>, view: &View) {
        self.last_heard = now;
        match frame {
            PeerFrame::Peer(PeerMsg::Hello { name, version }) if !self.greeted => {
                if *name != self.peer || *version != VERSION {
                    return self.close(format!(
                        "Hello from {name:?} version {version} on a link whose certificate \
                         names {:?} (version {VERSION} expected)",
                        self.peer
                    ));
                }
                self.greeted = true;
                self.send_peer(&PeerMsg::Welcome {
                    name: self.me.clone(),
                });
                self.set_view(view);
            }
            _ if !self.greeted => self.close("the first frame must be Hello".into()),
            PeerFrame::Peer(m) => self.handle_peer(m),
            PeerFrame::Control(Control::Heartbeat { seq }) => {
                self.send_control(&Control::HeartbeatReply { seq: *seq })
            }
            PeerFrame::Control(Control::HeartbeatReply { .. }) => {}
            PeerFrame::Control(c) => self.refuse(None, format!("{} is not a request", c.name())),
            PeerFrame::Media(_) => self.refuse(None, "media from the asking side".into()),
        }
    }

    fn handle_peer(&mut self, m: &PeerMsg) {
        match m {
            PeerMsg::Subscribe {
                sub,
                agent,
                supervisors,
            } => self.subscribe(*sub, agent, supervisors),
            PeerMsg::Unsubscribe { sub } => {
                if self.subs.remove(sub).is_some() {
                    self.out.push_back(ServingAction::Unroute { sub: *sub });
                }
            }
            other => self.refuse(None, format!("{} is not a request", other.name())),
        }
    }

    fn subscribe(&mut self, sub: u32, agent: &str, supervisors: &[String]) {
        let Some(&index) = self.agents.get(agent) else {
            return self.refuse(Some(sub), format!("unknown agent {agent:?}"));
        };
        let named: BTreeSet<String> = supervisors.iter().cloned().collect();
        let new_names: Vec<String> = match self.subs.get(&sub) {
            Some(s) if s.agent != agent => {
                return self.refuse(
                    Some(sub),
                    format!("subscription {sub} is for another agent"),
                )
            }
            Some(s) => named.difference(&s.supervisors).cloned().collect(),
            None if self.subs.values().any(|s| s.agent == agent) => {
                return self.refuse(Some(sub), format!("agent {agent} is subscribed already"))
            }
            None if self.subs.len() >= MAX_SUBSCRIPTIONS => {
                return self.refuse(Some(sub), "too many subscriptions".into())
            }
            None => {
                self.out
                    .push_back(ServingAction::Route { sub, agent: index });
                named.iter().cloned().collect()
            }
        };
        if !new_names.is_empty() {
            self.out
                .push_back(ServingAction::Audit(AuditEvent::PeerSubscribed {
                    peer: self.peer.clone(),
                    agent: agent.to_owned(),
                    supervisors: new_names,
                }));
        }
        self.subs.insert(
            sub,
            Sub {
                agent: agent.to_owned(),
                supervisors: named,
            },
        );
    }

    /// The shell could not route `sub` (the appliance is busy): it is dropped and refused, and
    /// the asking side asks again when its demand changes or the link comes back.
    pub fn route_failed(&mut self, sub: u32, reason: String) {
        self.subs.remove(&sub);
        self.refuse(Some(sub), reason);
    }

    /// A control frame to the peer was lost: the next picture is sent whole.
    pub fn lost_control(&mut self) {
        self.full_due = true;
    }

    /// This appliance's view changed: what the peer must hear of it.
    pub fn set_view(&mut self, view: &View) {
        if !self.greeted {
            return;
        }
        let now = by_agent(view);
        let full = std::mem::take(&mut self.full_due);
        let changed: Vec<AgentCalls> = if full {
            now.iter()
                .map(|(agent, calls)| AgentCalls {
                    agent: agent.clone(),
                    calls: calls.clone(),
                })
                .collect()
        } else {
            diff(&self.told, &now)
        };
        self.told = now;
        if !full && changed.is_empty() {
            return;
        }
        self.send_seen(full, changed);
    }

    /// Sends a picture in frames of at most [`AGENTS_PER_FRAME`] agents.
    fn send_seen(&mut self, full: bool, agents: Vec<AgentCalls>) {
        let mut chunks: Vec<Vec<AgentCalls>> = agents
            .chunks(AGENTS_PER_FRAME)
            .map(<[AgentCalls]>::to_vec)
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let last = chunks.len() - 1;
        for (i, agents) in chunks.into_iter().enumerate() {
            self.send_peer(&PeerMsg::Seen {
                full: full && i == 0,
                more: i < last,
                agents,
            });
        }
    }

    fn refuse(&mut self, sub: Option<u32>, reason: String) {
        tracing::info!(peer = %self.peer, ?sub, %reason, "peer request refused");
        self.send_peer(&PeerMsg::Refused { sub, reason });
    }

    fn send_peer(&mut self, m: &PeerMsg) {
        match m.to_bytes() {
            Ok(b) => self.out.push_back(ServingAction::Send(b)),
            Err(e) => {
                // Only a Seen with huge call lists can exceed a frame: send it whole next time.
                tracing::warn!(peer = %self.peer, error = %e, "peer message not sent");
                self.full_due = true;
            }
        }
    }

    fn send_control(&mut self, c: &Control) {
        let mut b = Vec::new();
        if c.append(&mut b).is_ok() {
            self.out.push_back(ServingAction::Send(b));
        }
    }
}

/// The view's calls by the agent each is bound to (calls of no agent are not announced).
fn by_agent(view: &View) -> BTreeMap<String, Vec<CallView>> {
    let mut m: BTreeMap<String, Vec<CallView>> = BTreeMap::new();
    for c in &view.calls {
        if let Some(agent) = &c.agent_id {
            let calls = m.entry(agent.clone()).or_default();
            if calls.len() < super::wire::MAX_CALLS_PER_AGENT {
                calls.push(c.clone());
            }
        }
    }
    m
}

/// Agents whose calls differ between `before` and `now` (an agent gone has no calls).
fn diff(
    before: &BTreeMap<String, Vec<CallView>>,
    now: &BTreeMap<String, Vec<CallView>>,
) -> Vec<AgentCalls> {
    let mut out: Vec<AgentCalls> = now
        .iter()
        .filter(|(a, calls)| before.get(*a) != Some(*calls))
        .map(|(a, calls)| AgentCalls {
            agent: a.clone(),
            calls: calls.clone(),
        })
        .collect();
    out.extend(
        before
            .keys()
            .filter(|a| !now.contains_key(*a))
            .map(|a| AgentCalls {
                agent: a.clone(),
                calls: Vec::new(),
            }),
    );
    out
}

#[cfg(test)]
mod tests;
