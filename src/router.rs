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

use std::collections::VecDeque;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::binding::{Agent, Bindings, Direction, Source};
use crate::codec::PayloadMap;
use crate::engine::{Engine, EngineConfig, FrameVerdict};
use crate::flow::StreamId;
use crate::packet::LinkType;
use crate::sip::CallState;
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
    /// Ends after this frame (StopSMNonACDCall): forwards nothing more.
    ending: bool,
    /// The call that last ended: late packets of it (its binding lingers) are forwarded but do
    /// not announce it again.
    ended: Option<u32>,
    /// Conversations announced to the monitor and not ended yet (the current one and those
    /// set aside, e.g. held for a consult), newest last; at most [`OPEN_PER_MONITOR`].
    open: Vec<u32>,
}

/// Most conversations a monitor remembers as announced and not ended (the oldest is forgotten,
/// and its end never told, past this).
const OPEN_PER_MONITOR: usize = 8;

/// The live path.
pub struct Router {
    engine: Engine,
    bindings: Bindings,
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
            stats: RouterStats::default(),
        }
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
            monitors,
            monitored,
            call_changes,
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
                for m in monitors.iter_mut().filter(|m| m.agent == hit.agent) {
                    if m.ending {
                        continue;
                    }
                    if let Source::Sip(call) = hit.source {
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
                            if *stop_on_non_acd && bindings.placed_by_agent(hit.agent, call) {
                                // StopSMNonACDCall: not one packet of the agent's own call.
                                m.ending = true;
                                continue;
                            }
                        }
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
        if matches!(verdict, FrameVerdict::Sip) {
            while let Some(ev) = self.engine.poll_call_event() {
                self.bindings
                    .handle_call_event(now, ev, self.engine.calls());
            }
            self.conversations_ended();
        }
        verdict
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
                let agent = self
                    .monitors
                    .iter()
                    .find(|m| m.id == monitor)
                    .map(|m| m.agent);
                if self.stop_on_non_acd
                    && agent.is_some_and(|a| self.bindings.placed_by_agent(a, idx))
                {
                    // Nothing of it was forwarded; the control plane ends the monitor.
                    if let Some(i) = self.monitors.iter().position(|m| m.id == monitor) {
                        let m = self.monitors.swap_remove(i);
                        self.monitored[m.agent] -= 1;
                    }
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
            for m in self.monitors.iter_mut().filter(|m| m.agent == agent) {
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
        if agent >= self.monitored.len() || self.monitors.iter().any(|m| m.id == id) {
            return;
        }
        self.monitored[agent] += 1;
        self.monitors.push(ActiveMonitor {
            id,
            agent,
            call: None,
            ending: false,
            ended: None,
            open: Vec::new(),
        });
    }

    /// Monitor `id`'s endpoint just attached: its next packet announces the agent's current
    /// call again (`Notice::Call`), since earlier notices reached no endpoint.
    pub fn reannounce(&mut self, id: MonitorId) {
        if let Some(m) = self.monitors.iter_mut().find(|m| m.id == id) {
            m.call = None;
        }
    }

    /// Stops monitor `id`.
    pub fn remove_monitor(&mut self, id: MonitorId) {
        if let Some(i) = self.monitors.iter().position(|m| m.id == id) {
            let m = self.monitors.swap_remove(i);
            self.monitored[m.agent] -= 1;
        }
    }

    /// Active monitors.
    pub fn monitor_count(&self) -> usize {
        self.monitors.len()
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
                })
            };
            if rows.is_empty() {
                row(None);
            }
            for &a in rows {
                row(Some(a));
            }
        }
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
                    payloads: s.stats.payload_names(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet / IPv4 / UDP frame from `src` to `dst` carrying `payload`.
    pub(crate) fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
            panic!("v4 only")
        };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 28 + payload.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0]);
        f.extend_from_slice(&[64, 17, 0, 0]);
        f.extend_from_slice(&s.ip().octets());
        f.extend_from_slice(&d.ip().octets());
        f.extend_from_slice(&s.port().to_be_bytes());
        f.extend_from_slice(&d.port().to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    pub(crate) fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
        let mut v = vec![0x80, 0];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(160 * seq as u32).to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[fill; 160]);
        v
    }

    fn sip(start: &str, cid: &str, cseq: &str, to_tag: &str, sdp: Option<(&str, u16)>) -> Vec<u8> {
        let body = sdp
            .map(|(ip, port)| format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio {port} RTP/AVP 0\r\n"))
            .unwrap_or_default();
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nFrom: <sip:+4930111@gw>;tag=f\r\nTo: <sip:5001@pbx>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(v: i64) -> Timestamp {
        Timestamp::from_nanos(v * 1_000_000)
    }

    struct Lab {
        r: Router,
        got: Vec<(MonitorId, Direction, u8)>,
    }

    impl Lab {
        fn new() -> Lab {
            let agents = vec![
                Agent {
                    id: "5001".into(),
                    extension: "5001".into(),
                    mobile_number: None,
                    phone_ips: vec![],
                },
                Agent {
                    id: "5002".into(),
                    extension: "5002".into(),
                    mobile_number: None,
                    phone_ips: vec!["10.0.9.9".parse().unwrap()],
                },
            ];
            Lab {
                r: Router::new(EngineConfig::default(), agents, Span::from_secs(2)),
                got: Vec::new(),
            }
        }

        fn frame(&mut self, t: i64, f: Vec<u8>) {
            let got = &mut self.got;
            self.r
                .handle_frame(ms(t), LinkType::Ethernet, &f, &mut |fw: Forward<'_>| {
                    got.push((fw.monitor, fw.direction, fw.rtp[12]))
                });
        }

        /// A call from the gateway to 5001 with the agent's media at `agent_port`.
        fn call(&mut self, t: i64, cid: &str, agent_port: u16) {
            let (gw, ph) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
            self.frame(
                t,
                udp(
                    gw,
                    ph,
                    &sip(
                        "INVITE sip:5001@pbx SIP/2.0",
                        cid,
                        "1 INVITE",
                        "",
                        Some(("10.0.0.1", 20000)),
                    ),
                ),
            );
            self.frame(
                t,
                udp(
                    ph,
                    gw,
                    &sip(
                        "SIP/2.0 200 OK",
                        cid,
                        "1 INVITE",
                        ";tag=t",
                        Some(("10.0.0.2", agent_port)),
                    ),
                ),
            );
        }

        fn bye(&mut self, t: i64, cid: &str) {
            self.frame(
                t,
                udp(
                    a("10.0.0.1:5060"),
                    a("10.0.0.2:5060"),
                    &sip("BYE sip:5001@pbx SIP/2.0", cid, "2 BYE", ";tag=t", None),
                ),
            );
        }

        fn media(&mut self, t: i64, agent_port: u16, seq: u16, fill: u8) {
            let agent = SocketAddr::new("10.0.0.2".parse().unwrap(), agent_port);
            self.frame(t, udp(agent, a("10.0.0.1:20000"), &rtp(seq, 7, fill)));
            self.frame(t, udp(a("10.0.0.1:20000"), agent, &rtp(seq, 8, fill + 1)));
        }

        fn notices(&mut self) -> Vec<Notice> {
            std::iter::from_fn(|| self.r.poll_notice()).collect()
        }

        /// The pending notices as `call X` / `ended X` / `non-acd X`.
        fn kinds(&mut self) -> Vec<String> {
            self.notices()
                .iter()
                .map(|n| match n {
                    Notice::Call { call_id, .. } => format!("call {call_id}"),
                    Notice::CallEnded { call_id, .. } => format!("ended {call_id}"),
                    Notice::NonAcdCall { call_id, .. } => format!("non-acd {call_id}"),
                })
                .collect()
        }
    }

    #[test]
    fn forwards_both_directions_of_the_monitored_agent_only() {
        let mut lab = Lab::new();
        lab.call(0, "c1", 30000);
        lab.media(10, 30000, 1, 10);
        assert!(lab.got.is_empty(), "nobody monitors yet");
        lab.r.add_monitor(1, 0);
        lab.media(30, 30000, 2, 20);
        assert_eq!(
            lab.got,
            vec![(1, Direction::FromAgent, 20), (1, Direction::ToAgent, 21)]
        );
        match &lab.notices()[..] {
            [Notice::Call {
                monitor: 1,
                call_id,
                started,
                ..
            }] => {
                assert_eq!(call_id, "c1");
                assert_eq!(*started, ms(0));
            }
            other => panic!("{other:?}"),
        }
        // Another agent's static phone traffic is not forwarded to monitor 1.
        lab.got.clear();
        lab.frame(
            40,
            udp(a("10.0.9.9:4000"), a("10.0.0.1:4002"), &rtp(1, 9, 0)),
        );
        lab.frame(
            60,
            udp(a("10.0.9.9:4000"), a("10.0.0.1:4002"), &rtp(2, 9, 0)),
        );
        assert!(lab.got.is_empty());
        lab.r.remove_monitor(1);
        lab.media(80, 30000, 3, 30);
        assert!(lab.got.is_empty());
        assert_eq!(lab.r.monitor_count(), 0);
    }

    #[test]
    fn follows_the_agent_to_the_next_call_and_reports_call_changes() {
        let mut lab = Lab::new();
        lab.r.add_monitor(7, 0);
        lab.call(0, "c1", 30000);
        lab.media(20, 30000, 1, 10);
        lab.bye(100, "c1");
        lab.r.handle_timeout(ms(3000));
        lab.call(4000, "c2", 30010);
        lab.media(4020, 30010, 1, 40);
        let kinds = lab.kinds();
        assert_eq!(kinds, vec!["call c1", "ended c1", "call c2"]);
        assert_eq!(lab.got.len(), 4);
        assert_eq!(lab.got[2], (7, Direction::FromAgent, 40));
        // The view shows the agent's binding and both streams of the new call.
        let v = lab.r.view();
        assert!(v
            .bindings
            .iter()
            .any(|b| b.agent_id == "5001" && b.call_id.as_deref() == Some("c2")));
        assert!(v
            .flows
            .iter()
            .any(|f| f.agent_id.as_deref() == Some("5001")
                && f.direction.as_deref() == Some("to_agent")));
        assert!(v.calls.iter().any(|c| c.call_id == "c2" && c.to == "5001"));
        // After the call ended and its binding lingered out, the call is still the agent's
        // in the view (a supervisor still sees it) while the call table keeps it.
        lab.bye(5000, "c2");
        lab.r.handle_timeout(ms(9000));
        let v = lab.r.view();
        assert!(!v
            .bindings
            .iter()
            .any(|b| b.call_id.as_deref() == Some("c2")));
        let c2 = v.calls.iter().find(|c| c.call_id == "c2").unwrap();
        assert_eq!((c2.agent, c2.agent_id.as_deref()), (Some(0), Some("5001")));
    }

    #[test]
    fn a_late_packet_after_the_bye_does_not_announce_the_ended_call_again() {
        let mut lab = Lab::new();
        lab.r.add_monitor(7, 0);
        lab.call(0, "c1", 30000);
        lab.media(20, 30000, 1, 2);
        lab.bye(100, "c1");
        // The gateway's last packet after the BYE (the binding lingers): forwarded, no notice.
        lab.media(101, 30000, 2, 2);
        let kinds = lab.kinds();
        assert_eq!(kinds, ["call c1", "ended c1"]);
        assert_eq!(lab.got.len(), 4);
    }

    #[test]
    fn an_endpoint_that_attaches_late_hears_the_current_call_again() {
        let mut lab = Lab::new();
        lab.r.add_monitor(7, 0);
        lab.call(0, "c1", 30000);
        lab.media(20, 30000, 1, 2);
        lab.media(40, 30000, 2, 2);
        lab.r.reannounce(7);
        lab.media(60, 30000, 3, 2);
        let calls: Vec<String> = lab
            .notices()
            .iter()
            .filter_map(|n| match n {
                Notice::Call { call_id, .. } => Some(call_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(calls, ["c1", "c1"]);
    }

    /// An INVITE 5001 places itself (From the agent), answered by the gateway.
    fn outbound(lab: &mut Lab, t: i64, cid: &str, agent_port: u16) {
        let (gw, ph) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        let swap = |m: Vec<u8>| {
            String::from_utf8(m)
                .unwrap()
                .replace(
                    "From: <sip:+4930111@gw>;tag=f",
                    "From: <sip:5001@pbx>;tag=f",
                )
                .replace("To: <sip:5001@pbx>", "To: <sip:+4930111@gw>")
                .replace("INVITE sip:5001@pbx", "INVITE sip:+4930111@gw")
                .into_bytes()
        };
        let invite = swap(sip(
            "INVITE sip:5001@pbx SIP/2.0",
            cid,
            "1 INVITE",
            "",
            Some(("10.0.0.2", agent_port)),
        ));
        let ok = swap(sip(
            "SIP/2.0 200 OK",
            cid,
            "1 INVITE",
            ";tag=t",
            Some(("10.0.0.1", 20000)),
        ));
        lab.frame(t, udp(ph, gw, &invite));
        lab.frame(t, udp(gw, ph, &ok));
    }

    #[test]
    fn stop_sm_non_acd_call_ends_the_monitor_on_a_call_the_agent_places() {
        // Off (the default): the agent's own call is monitored like any other.
        let mut lab = Lab::new();
        lab.r.add_monitor(1, 0);
        outbound(&mut lab, 0, "out1", 30000);
        lab.media(20, 30000, 1, 10);
        assert_eq!(lab.got.len(), 2);
        assert!(matches!(&lab.notices()[..], [Notice::Call { .. }]));
        // On: the first packet of such a call ends the monitor instead; nothing is forwarded.
        let mut lab = Lab::new();
        lab.r.set_stop_on_non_acd_calls(true);
        lab.r.add_monitor(1, 0);
        lab.call(0, "acd1", 30000);
        lab.media(20, 30000, 1, 10);
        assert_eq!(lab.got.len(), 2, "a delivered call is heard");
        outbound(&mut lab, 100, "out1", 30010);
        lab.media(120, 30010, 1, 20);
        assert_eq!(lab.got.len(), 2, "the agent's own call is not");
        let n = lab.notices();
        assert!(
            matches!(&n[..], [Notice::Call { .. }, Notice::NonAcdCall { monitor: 1, call_id }] if call_id == "out1"),
            "{n:?}"
        );
        assert_eq!(lab.r.monitor_count(), 0);
    }

    #[test]
    fn an_agent_to_agent_call_reaches_both_agents_monitors_and_an_explicit_bind_nothing() {
        let mut lab = Lab::new();
        // 5001 (10.0.0.2:30000) calls 5002 (static phone 10.0.9.9): each monitor hears its own
        // agent as `FromAgent`.
        lab.r.add_monitor(1, 0);
        lab.r.add_monitor(2, 1);
        lab.call(0, "c1", 30000);
        let (a1, a2) = (a("10.0.0.2:30000"), a("10.0.9.9:4000"));
        lab.frame(20, udp(a1, a2, &rtp(1, 7, 3)));
        lab.frame(20, udp(a2, a1, &rtp(1, 8, 4)));
        lab.got.sort_by_key(|g| (g.0, g.2));
        assert_eq!(
            lab.got,
            vec![
                (1, Direction::FromAgent, 3),
                (1, Direction::ToAgent, 4),
                (2, Direction::ToAgent, 3),
                (2, Direction::FromAgent, 4),
            ]
        );
        // Agent 5002 explicitly bound to the far end of 5001's call from the gateway: 5002's
        // monitor gets nothing of it, 5001's everything.
        lab.got.clear();
        lab.r.bind(ms(30), 1, a("10.0.0.1:20000"), None);
        lab.media(40, 30000, 2, 10);
        assert_eq!(
            lab.got,
            vec![(1, Direction::FromAgent, 10), (1, Direction::ToAgent, 11)]
        );
    }

    #[test]
    fn explicit_bind_and_two_monitors_of_one_agent() {
        let mut lab = Lab::new();
        lab.r.add_monitor(1, 0);
        lab.r.add_monitor(2, 0);
        lab.r.bind(ms(0), 0, a("10.5.5.5:7000"), Some(ms(10_000)));
        for seq in 1..4 {
            lab.frame(
                seq as i64 * 20,
                udp(a("10.5.5.5:7000"), a("10.6.6.6:8000"), &rtp(seq, 3, 5)),
            );
        }
        // Heuristic RTP: the stream is confirmed after a few packets; then each monitor gets it.
        assert!(lab.got.iter().any(|g| g.0 == 1) && lab.got.iter().any(|g| g.0 == 2));
        assert_eq!(lab.r.poll_timeout(), Some(ms(10_000)));
    }
}
