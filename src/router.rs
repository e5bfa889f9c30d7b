//! The live path's core, sans-IO: the packet [`Engine`] plus the agent [`Bindings`] plus the
//! active monitors. Fed frames with their capture time; hands every RTP packet of a monitored
//! agent to a caller-supplied sink as a borrowed [`Forward`] (no copy, no allocation, no lock
//! per packet), and queues rare [`Notice`]s (the monitored agent's call changed or ended) for the
//! shell to pull with [`Router::poll_notice`]. Timers: [`Router::poll_timeout`] /
//! [`Router::handle_timeout`]. Never reads a clock, a socket or a file.
//!
//! Monitoring follows the agent, because bindings do: hold keeps the call's binding, a consult
//! call adds one, the next call binds anew; a monitor is keyed by agent, so every packet that
//! classifies to the agent reaches it, whatever the call.
//!
//! The monitors here are derived from the control plane's: added and removed only by its
//! commands. A monitor the router finds must end (StopSMNonACDCall) stops forwarding at once
//! and is reported ([`Notice::NonAcdCall`]); it goes when the control plane removes it.

use std::collections::VecDeque;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::binding::{Agent, Bindings, Direction, Source};
use crate::codec::PayloadMap;
use crate::engine::{Engine, EngineConfig, FrameVerdict};
use crate::flow::StreamId;
use crate::packet::LinkType;
use crate::sip::CallEvent;
use crate::time::{Span, Timestamp};

/// A monitor's id (the control plane's UniqueObjectID of the monitor).
pub type MonitorId = u64;

/// One RTP packet for one monitor, borrowed from the captured frame.
#[derive(Copy, Clone, Debug)]
pub struct Forward<'a> {
    /// The monitor.
    pub monitor: MonitorId,
    /// Relative to the monitored agent.
    pub direction: Direction,
    /// The RTP stream (flow table id).
    pub stream: StreamId,
    /// Capture time.
    pub capture_ts: Timestamp,
    /// The RTP packet.
    pub rtp: &'a [u8],
}

/// Something a monitor's endpoint should know besides the packets.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// The monitored agent's packets now come from this SIP call (a new call, a consult, or
    /// back to the held call). `payloads` are the call's negotiated dynamic payload types.
    Call {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
        /// Payload formats from the call's SDP.
        payloads: PayloadMap,
        /// When the call started (first INVITE seen).
        started: Timestamp,
        /// The appliance whose SPAN carries the call (in a cluster; None on a lone appliance).
        appliance: Option<String>,
        /// The CTI Server's CallType of the call, when it named one (the agent is warned of
        /// it under WarnIfSilentMonitored); None for a SIP dialog or a peer's call.
        call_type: Option<u16>,
    },
    /// A call the monitor was hearing ended.
    CallEnded {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
    },
    /// With StopSMNonACDCall set: the monitored agent is on a call it placed itself (not one
    /// the ACD delivered), so the monitor is to end. Its packets are not forwarded.
    NonAcdCall {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
    },
    /// The appliance that carried the monitor's audio became unreachable; the monitor goes on
    /// and its audio comes back with the agent's next call seen anywhere.
    Interrupted {
        /// The monitor.
        monitor: MonitorId,
        /// Why.
        reason: String,
    },
}

/// Router counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouterStats {
    /// RTP packets that belonged to a bound agent.
    pub agent_packets: u64,
    /// Packets handed to monitors (one per monitor).
    pub forwarded: u64,
}

#[derive(Clone, Debug)]
struct ActiveMonitor {
    id: MonitorId,
    agent: usize,
    /// The SIP call whose packets the monitor last heard.
    call: Option<u32>,
    /// Ending (StopSMNonACDCall): forwards and announces nothing more while the control
    /// plane, which decides every ending, removes it ([`Router::remove_monitor`]).
    ending: bool,
    /// The call that last ended: late packets of it (its binding lingers) are forwarded but do
    /// not announce it again.
    ended: Option<u32>,
    /// Conversations announced to the monitor and not ended yet (the current one and those
    /// set aside, e.g. held for a consult), newest last; at most [`OPEN_PER_MONITOR`].
    open: Vec<u32>,
    /// The call on a cluster peer whose audio the monitor hears (peer index, Call-ID).
    remote: Option<(u16, String)>,
    /// Serves a cluster peer's subscription: the asking appliance applies its own policies
    /// (StopSMNonACDCall), not this one.
    relay: bool,
    /// The CTI Server's call the monitor hears (its ConnectionCallID): while set, the CTI's
    /// call events, not SIP dialogs, say where one call ends and the next begins.
    cti: Option<u32>,
    /// The encrypted stream the monitor was last told of (told once per stream).
    encrypted: Option<StreamId>,
    /// Told that its call switched to fax (and not yet that it came back to voice).
    fax: bool,
}

/// The monitors of `agent` in `monitors` (kept in agent order): a binary search, not a scan
/// of every monitor, per packet.
fn of_agent(monitors: &mut [ActiveMonitor], agent: usize) -> &mut [ActiveMonitor] {
    let start = monitors.partition_point(|m| m.agent < agent);
    let len = monitors[start..].partition_point(|m| m.agent == agent);
    &mut monitors[start..start + len]
}

/// What a monitor's endpoint is told when the agent's media is encrypted.
pub const ENCRYPTED: &str = "encrypted media (SRTP): cannot be monitored";

/// What a monitor's endpoint is told when the call it hears switches to fax.
pub const FAX: &str = "fax (T.38): no audio until the call returns to voice";

/// Most conversations a monitor remembers as announced and not ended (the oldest is forgotten,
/// and its end never told, past this).
const OPEN_PER_MONITOR: usize = 8;

/// The live path.
pub struct Router {
    engine: Engine,
    bindings: Bindings,
    /// In agent order ([`of_agent`]).
    monitors: Vec<ActiveMonitor>,
    /// Per agent: does any monitor listen (the per-packet test is one index).
    monitored: Vec<u16>,
    notices: VecDeque<Notice>,
    /// (monitor, call-table index) pairs whose `Notice::Call` is built after the frame.
    call_changes: Vec<(MonitorId, u32)>,
    /// The agent of each call that had a SIP binding (call index -> Call-ID, agent), for the
    /// view once the binding is gone.
    call_agents: rustc_hash::FxHashMap<u32, (String, Vec<usize>)>,
    /// StopSMNonACDCall: end monitors whose agent places a call itself.
    stop_on_non_acd: bool,
    /// This appliance's name in a cluster (named in call notices).
    name: Option<String>,
    /// What the CTI Server said of calls (see `router::cti`).
    cti: cti::CtiCalls,
    /// (monitor, CTI call) pairs whose `Notice::Call` is built after the frame.
    cti_changes: Vec<(MonitorId, u32)>,
    /// Monitors that met an encrypted stream during the last frame.
    encrypted_changes: Vec<MonitorId>,
    stats: RouterStats,
}

/// A call as the control plane lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallView {
    /// Index of the bound agent (not serialised; for rights checks).
    #[serde(skip)]
    pub agent: Option<usize>,
    /// The agent's id.
    pub agent_id: Option<String>,
    /// UniqueObjectID.
    pub uid: String,
    /// SIP Call-ID.
    pub call_id: String,
    /// Caller (From user).
    pub from: String,
    /// Called (Request-URI / To user).
    pub to: String,
    /// Calling, Ringing, Answered, Ended, Cancelled, Failed.
    pub state: String,
    /// On hold.
    pub hold: bool,
    /// Seconds since the epoch.
    pub started: f64,
    /// Media endpoints (caller, callee).
    pub media: Vec<String>,
    /// The appliance whose SPAN carries the call, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
}

/// An RTP stream as the control plane lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowView {
    /// Index of the agent it belongs to.
    #[serde(skip)]
    pub agent: Option<usize>,
    /// The agent's id.
    pub agent_id: Option<String>,
    /// From agent / to agent.
    pub direction: Option<String>,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// SSRC.
    pub ssrc: String,
    /// Payload names.
    pub payloads: Vec<String>,
    /// Packets.
    pub packets: u64,
    /// Lost packets.
    pub lost: i64,
    /// RFC 3550 jitter, ms.
    pub jitter_ms: f64,
    /// VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    /// Last packet, seconds since the epoch.
    pub last_seen: f64,
}

/// A binding as the control plane lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BindingView {
    /// Index of the agent.
    #[serde(skip)]
    pub agent: usize,
    /// The agent's id.
    pub agent_id: String,
    /// Media endpoint, or the phone IP for static bindings.
    pub endpoint: String,
    /// static, sip, explicit.
    pub source: String,
    /// The SIP call of a sip binding.
    pub call_id: Option<String>,
    /// Seconds since the epoch (None for static bindings).
    pub since: Option<f64>,
    /// Seconds since the epoch, None = until unbound.
    pub expires: Option<f64>,
}

/// What the control plane shows: a snapshot taken on the engine thread.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct View {
    /// SIP calls the call table holds.
    pub calls: Vec<CallView>,
    /// RTP streams.
    pub flows: Vec<FlowView>,
    /// Agent bindings.
    pub bindings: Vec<BindingView>,
}

impl Router {
    /// A router for `agents` (indices are the configuration's order, as in the control plane);
    /// a SIP binding outlives its call by `linger`.
    pub fn new(config: EngineConfig, agents: Vec<Agent>, linger: Span) -> Self {
        let n = agents.len();
        Router {
            engine: Engine::new(config),
            bindings: Bindings::new(agents, linger),
            monitors: Vec::new(),
            monitored: vec![0; n],
            notices: VecDeque::new(),
            call_changes: Vec::new(),
            call_agents: Default::default(),
            stop_on_non_acd: false,
            name: None,
            cti: cti::CtiCalls::default(),
            cti_changes: Vec::new(),
            encrypted_changes: Vec::new(),
            stats: RouterStats::default(),
        }
    }

    /// This appliance's name in a cluster: call notices name it.
    pub fn set_name(&mut self, name: Option<String>) {
        self.name = name;
    }

    /// One captured frame. Every RTP packet of a monitored agent goes to `sink`, once per
    /// monitor of that agent. Pull [`Router::poll_notice`] afterwards.
    pub fn handle_frame(
        &mut self,
        now: Timestamp,
        link: LinkType,
        frame: &[u8],
        sink: &mut impl FnMut(Forward<'_>),
    ) -> FrameVerdict {
        let Router {
            engine,
            bindings,
            cti,
            monitors,
            monitored,
            call_changes,
            cti_changes,
            encrypted_changes,
            stats,
            stop_on_non_acd,
            ..
        } = self;
        let verdict = engine.handle_frame_with(now, link, frame, |seen| {
            for hit in bindings.lookup(seen.src, seen.dst).into_iter().flatten() {
                stats.agent_packets += 1;
                if monitored[hit.agent] == 0 {
                    continue;
                }
                for m in of_agent(monitors, hit.agent) {
                    if m.ending {
                        continue;
                    }
                    if let Source::Cti(call) = hit.source {
                        // A late packet of an ended call (its binding lingers) is forwarded,
                        // not announced again.
                        if m.cti != Some(call) && cti.is_open(call) {
                            m.cti = Some(call);
                            cti_changes.push((m.id, call));
                        }
                    }
                    if let (Source::Sip(call), None) = (hit.source, m.cti) {
                        if m.call != Some(call) && m.ended != Some(call) {
                            m.call = Some(call);
                            if !m.open.contains(&call) {
                                if m.open.len() == OPEN_PER_MONITOR {
                                    m.open.remove(0);
                                }
                                m.open.push(call);
                            }
                            // Built below, where the call table can be read.
                            call_changes.push((m.id, call));
                            if *stop_on_non_acd
                                && !m.relay
                                && bindings.placed_by_agent(hit.agent, call)
                            {
                                // StopSMNonACDCall: not one packet of the agent's own call.
                                m.ending = true;
                                continue;
                            }
                        }
                    }
                    if seen.encrypted {
                        // Never played: noise to the supervisor. Told once per stream.
                        if m.encrypted != Some(seen.stream) {
                            m.encrypted = Some(seen.stream);
                            encrypted_changes.push(m.id);
                        }
                        continue;
                    }
                    stats.forwarded += 1;
                    sink(Forward {
                        monitor: m.id,
                        direction: hit.direction,
                        stream: seen.stream,
                        capture_ts: now,
                        rtp: seen.rtp,
                    });
                }
            }
        });
        self.resolve_notices();
        self.resolve_cti_notices();
        for monitor in std::mem::take(&mut self.encrypted_changes) {
            self.notices.push_back(Notice::Interrupted {
                monitor,
                reason: ENCRYPTED.into(),
            });
        }
        if matches!(verdict, FrameVerdict::Sip) {
            while let Some(ev) = self.engine.poll_call_event() {
                self.bindings
                    .handle_call_event(now, ev, self.engine.calls());
                if let CallEvent::MediaChanged(call) = ev {
                    self.media_changed(call);
                }
            }
            self.resolve_notices();
            self.conversations_ended();
        }
        verdict
    }

    /// A call's media was renegotiated: the monitors hearing it are told when it became fax
    /// (T.38: nothing of it is audio, nothing is forwarded) and told the call again when it
    /// came back to voice.
    fn media_changed(&mut self, call: u32) {
        let Some(fax) = self.engine.calls().call(call).map(|c| c.is_fax()) else {
            return;
        };
        for m in self.monitors.iter_mut() {
            if m.call != Some(call) || m.ending || m.fax == fax {
                continue;
            }
            m.fax = fax;
            if fax {
                self.notices.push_back(Notice::Interrupted {
                    monitor: m.id,
                    reason: FAX.into(),
                });
            } else {
                self.call_changes.push((m.id, call));
            }
        }
    }

    /// StopSMNonACDCall: a monitored agent placing a call itself ends the monitor (the call is
    /// not one the ACD delivered; without CTI data, an agent-originated call is the non-ACD
    /// call the appliance can recognise).
    pub fn set_stop_on_non_acd_calls(&mut self, on: bool) {
        self.stop_on_non_acd = on;
    }

    /// Turns the call changes seen during the last frame into `Notice::Call`s.
    fn resolve_notices(&mut self) {
        for (monitor, idx) in self.call_changes.drain(..) {
            if let Some(c) = self.engine.calls().call(idx) {
                let Some(m) = self.monitors.iter_mut().find(|m| m.id == monitor) else {
                    continue;
                };
                // A local call now: no longer hearing a peer's.
                m.remote = None;
                if m.ending {
                    // Nothing of it was forwarded (the monitor is `ending`); the control plane
                    // ends the monitor and removes it from here.
                    self.notices.push_back(Notice::NonAcdCall {
                        monitor,
                        call_id: c.call_id.clone(),
                    });
                    continue;
                }
                let mut payloads = PayloadMap::default();
                for ep in [c.caller_media, c.callee_media].into_iter().flatten() {
                    payloads.merge(&ep.payloads);
                }
                self.notices.push_back(Notice::Call {
                    monitor,
                    call_id: c.call_id.clone(),
                    payloads,
                    started: c.started,
                    appliance: self.name.clone(),
                    call_type: None,
                });
            }
        }
    }

    /// Conversations whose last dialog left (ended, or named another party after a transfer):
    /// the monitors that were told of them (hearing them now or having set them aside) are
    /// told they ended.
    fn conversations_ended(&mut self) {
        while let Some((agent, key)) = self.bindings.poll_ended() {
            let Some(call) = self.engine.calls().call(key) else {
                continue;
            };
            for m in self
                .monitors
                .iter_mut()
                .filter(|m| m.agent == agent && !m.ending)
            {
                let Some(i) = m.open.iter().position(|c| *c == key) else {
                    continue;
                };
                m.open.remove(i);
                if m.call == Some(key) {
                    m.call = None;
                    m.ended = Some(key);
                }
                self.notices.push_back(Notice::CallEnded {
                    monitor: m.id,
                    call_id: call.call_id.clone(),
                });
            }
        }
    }

    /// The next notice, if any. Call after [`Router::handle_frame`] and the monitor calls.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Starts forwarding agent `agent`'s packets to monitor `id`.
    pub fn add_monitor(&mut self, id: MonitorId, agent: usize) {
        self.add(id, agent, false);
    }

    /// Starts forwarding agent `agent`'s packets to monitor `id`, which serves a cluster
    /// peer's subscription (the asking appliance applies its own policies).
    pub fn add_relay(&mut self, id: MonitorId, agent: usize) {
        self.add(id, agent, true);
    }

    fn add(&mut self, id: MonitorId, agent: usize, relay: bool) {
        if agent >= self.monitored.len() || self.monitors.iter().any(|m| m.id == id) {
            return;
        }
        self.monitored[agent] += 1;
        // Kept in agent order (a new one after the agent's others): a packet finds its
        // agent's monitors by binary search, however many monitors there are.
        let at = self.monitors.partition_point(|m| m.agent <= agent);
        self.monitors.insert(
            at,
            ActiveMonitor {
                id,
                agent,
                call: None,
                ending: false,
                ended: None,
                open: Vec::new(),
                remote: None,
                relay,
                cti: None,
                encrypted: None,
                fax: false,
            },
        );
        if !relay {
            self.join_cti_call(id, agent);
        }
    }

    /// Monitor `id`'s endpoint just attached: its next packet announces the agent's current
    /// call again (`Notice::Call`), since earlier notices reached no endpoint.
    pub fn reannounce(&mut self, id: MonitorId) {
        let Some(m) = self.monitors.iter_mut().find(|m| m.id == id) else {
            return;
        };
        m.call = None;
        // A CTI call is told at once: its packets would not announce it again.
        if let Some(call) = m.cti {
            self.announce_cti(id, call);
        }
    }

    /// Stops monitor `id`.
    pub fn remove_monitor(&mut self, id: MonitorId) {
        if let Some(i) = self.monitors.iter().position(|m| m.id == id) {
            let m = self.monitors.remove(i);
            self.monitored[m.agent] -= 1;
        }
    }

    /// Monitors forwarding (an ending one, waiting for its removal, does not count).
    pub fn monitor_count(&self) -> usize {
        self.monitors.iter().filter(|m| !m.ending).count()
    }

    /// True while monitor `id` is held here, forwarding or ending.
    pub fn has_monitor(&self, id: MonitorId) -> bool {
        self.monitors.iter().any(|m| m.id == id)
    }

    /// An explicit bind of `endpoint` to agent `agent` until `expires`.
    pub fn bind(
        &mut self,
        now: Timestamp,
        agent: usize,
        endpoint: SocketAddr,
        expires: Option<Timestamp>,
    ) {
        if agent < self.monitored.len() {
            self.bindings.bind(now, agent, endpoint, expires);
        }
    }

    /// When [`Router::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [self.engine.poll_timeout(), self.bindings.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Expires bindings and forgets ended calls.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.bindings.handle_timeout(now);
        self.engine.handle_timeout(now);
    }

    /// The engine (for its counters and tables).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The bindings.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// Router counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }
}

pub mod cti;
pub mod remote;
pub mod view;
pub use view::ViewBuild;

#[cfg(test)]
pub(crate) mod tests;
