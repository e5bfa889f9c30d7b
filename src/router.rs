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
use crate::sip::{CallEvent, CallState};
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

fn state_name(s: CallState) -> String {
    match s {
        CallState::Calling => "Calling".into(),
        CallState::Ringing => "Ringing".into(),
        CallState::Answered => "Answered".into(),
        CallState::Ended => "Ended".into(),
        CallState::Cancelled => "Cancelled".into(),
        CallState::Failed(code) => format!("Failed {code}"),
    }
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

    /// A snapshot for the control plane (taken every few hundred ms, not per packet). A call
    /// is listed once per agent in it (an agent-to-agent call twice, so each supervisor sees
    /// their own agent's row), and stays its agents' after their bindings lingered out, as
    /// long as the call table keeps the call. A flow is listed once per agent it belongs to.
    pub fn view(&mut self) -> View {
        self.remember_call_agents();
        let agents = self.bindings.agents();
        let mut calls = Vec::new();
        for c in self.engine.calls().calls() {
            let bound = self.call_agents.get(&c.index).map(|x| &x.1[..]);
            let rows: &[usize] = bound.unwrap_or(&[]);
            let mut row = |agent: Option<usize>| {
                calls.push(CallView {
                    agent,
                    agent_id: agent.map(|i| agents[i].id.clone()),
                    uid: format!("call.{}", c.index),
                    call_id: c.call_id.clone(),
                    from: c.from.user().to_owned(),
                    to: crate::sip::message::uri_user(&c.request_uri).to_owned(),
                    state: state_name(c.state),
                    hold: c.on_hold(),
                    started: c.started.as_secs_f64(),
                    media: [c.caller_media, c.callee_media]
                        .into_iter()
                        .flatten()
                        .map(|m| m.addr.to_string())
                        .collect(),
                    appliance: None,
                })
            };
            if rows.is_empty() {
                row(None);
            }
            for &a in rows {
                row(Some(a));
            }
        }
        calls.extend(self.cti_views());
        let flows = self.flow_views();
        let bindings = self.binding_views();
        View {
            calls,
            flows,
            bindings,
        }
    }

    /// Notes which agents each call's effective bindings name, so a call stays listed as its
    /// agents' after the bindings linger out; forgets calls the call table dropped.
    fn remember_call_agents(&mut self) {
        let calls = self.engine.calls();
        for c in calls.calls() {
            let now: Vec<usize> = self.bindings.agents_of_call(c.index).collect();
            if now.is_empty() {
                continue;
            }
            let entry = self
                .call_agents
                .entry(c.index)
                .or_insert_with(|| (c.call_id.clone(), Vec::new()));
            for a in now {
                if !entry.1.contains(&a) {
                    entry.1.push(a);
                }
            }
            entry.1.sort_unstable();
        }
        self.call_agents
            .retain(|i, (id, _)| calls.call(*i).is_some_and(|c| c.call_id == *id));
    }

    /// The flow table as the control plane lists it: a row per agent a stream belongs to
    /// (none: one row without an agent).
    fn flow_views(&self) -> Vec<FlowView> {
        let agents = self.bindings.agents();
        let mut flows = Vec::new();
        for s in self.engine.flows().streams() {
            let hits = self.bindings.lookup(s.key.src, s.key.dst);
            let mut row = |hit: Option<crate::binding::Hit>| {
                flows.push(FlowView {
                    agent: hit.map(|h| h.agent),
                    agent_id: hit.map(|h| agents[h.agent].id.clone()),
                    direction: hit.map(|h| {
                        match h.direction {
                            Direction::FromAgent => "from_agent",
                            Direction::ToAgent => "to_agent",
                        }
                        .to_owned()
                    }),
                    src: s.key.src.to_string(),
                    dst: s.key.dst.to_string(),
                    ssrc: format!("0x{:08X}", s.key.ssrc),
                    payloads: s.payload_names(),
                    packets: s.stats.packets,
                    lost: s.stats.lost(),
                    jitter_ms: s.stats.jitter_ms,
                    vlans: s.vlans.ids().collect(),
                    last_seen: s.stats.last_ts.as_secs_f64(),
                })
            };
            if hits.iter().all(Option::is_none) {
                row(None);
            }
            for h in hits.into_iter().flatten() {
                row(Some(h));
            }
        }
        flows
    }

    /// The effective bindings (another agent's stronger claim hides a binding) and the static
    /// phone IPs, as the control plane lists them.
    fn binding_views(&self) -> Vec<BindingView> {
        let agents = self.bindings.agents();
        let mut bindings: Vec<BindingView> = self
            .bindings
            .all()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.bindings.is_effective(*i))
            .map(|(_, b)| BindingView {
                agent: b.agent,
                agent_id: agents[b.agent].id.clone(),
                endpoint: b.endpoint.to_string(),
                source: match b.source {
                    Source::Static => "static",
                    Source::Sip(_) => "sip",
                    Source::Explicit => "explicit",
                    Source::Cti(_) => "cti",
                }
                .to_owned(),
                call_id: match b.source {
                    Source::Sip(i) => self.engine.calls().call(i).map(|c| c.call_id.clone()),
                    _ => None,
                },
                since: Some(b.since.as_secs_f64()),
                expires: b.expires.map(|t| t.as_secs_f64()),
            })
            .collect();
        for (i, a) in agents.iter().enumerate() {
            for ip in &a.phone_ips {
                bindings.push(BindingView {
                    agent: i,
                    agent_id: a.id.clone(),
                    endpoint: ip.to_string(),
                    source: "static".to_owned(),
                    call_id: None,
                    since: None,
                    expires: None,
                });
            }
        }
        bindings
    }
}

pub mod cti;
pub mod remote;

#[cfg(test)]
pub(crate) mod tests;
