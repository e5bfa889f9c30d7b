//! The engine thread: receives captured batches from every interface's [`Pipeline`], runs the
//! [`Router`] over each frame with the frame's capture time, hands monitored packets to a
//! [`MonitorOutput`] (the monitor service's fan-out), applies [`Command`]s from the control
//! plane between batches, runs the router's timers on the wall clock, and publishes a
//! [`View`] snapshot and the counters every [`PUBLISH_EVERY`].
//!
//! Rules: per packet nothing but the router and the output's `forward` (no lock, no
//! allocation, no channel operation); one channel operation per batch; the thread never waits
//! for a network task: the view goes out through a `watch` channel that keeps only the latest.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};
use tokio::sync::watch;

use crate::capture::pipeline::{Pipeline, PipelineStats};
use crate::control::reply::StopReason;
use crate::control::server::{ControlHandle, HeardCall};
use crate::cti::wire::CallRef;
use crate::peer::{EnginePeers, FromPeer};
use crate::router::cti::CtiBegin;
use crate::router::remote::{RemoteCall, RemotePacket};
use crate::router::{Forward, MonitorId, Notice, Router, View, ViewBuild};
use crate::time::{Span, Timestamp};

/// How long after a view (and the counters) was published the next one is begun.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Rows of the view built between two looks at the capture channels (tens of microseconds:
/// a whole view of 1000 calls is about 5 ms of work, which packets must not wait behind).
pub const VIEW_SLICE_ROWS: usize = 32;
/// Longest wait for input between two slices of a view: the thread blocks, so the writers
/// sharing its core run (without the wait, 5 ms of slices ran back to back and a writer woken
/// on that core waited for all of them). A view of 1000 calls then takes 20-30 ms to build.
pub const VIEW_SLICE_GAP: Duration = Duration::from_micros(100);

/// What the control plane asks of the engine thread.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Forward agent `agent`'s packets to monitor `monitor`.
    AddMonitor {
        /// Monitor id.
        monitor: MonitorId,
        /// Agent index.
        agent: usize,
    },
    /// Forward agent `agent`'s packets to `monitor`, which serves a cluster peer's
    /// subscription.
    AddRelay {
        /// Monitor id (from the peer server's range).
        monitor: MonitorId,
        /// Agent index.
        agent: usize,
    },
    /// Stop forwarding to `monitor`.
    RemoveMonitor {
        /// Monitor id.
        monitor: MonitorId,
    },
    /// What the CTI Server said of a call (see `router::cti`).
    Cti(CtiCommand),
    /// Bind `endpoint` to agent `agent` for `seconds` (None: until the appliance restarts).
    Bind {
        /// Agent index.
        agent: usize,
        /// Media endpoint.
        endpoint: SocketAddr,
        /// Lifetime.
        seconds: Option<u64>,
    },
}

impl Command {
    /// Carries the command out on `router` at `now` (the engine thread does this for each
    /// command it takes; the lifecycle tests do it without a thread).
    pub fn apply(self, router: &mut Router, now: Timestamp) {
        match self {
            Command::AddMonitor { monitor, agent } => router.add_monitor(monitor, agent),
            Command::AddRelay { monitor, agent } => router.add_relay(monitor, agent),
            Command::Cti(c) => c.apply(router, now),
            Command::RemoveMonitor { monitor } => router.remove_monitor(monitor),
            Command::Bind {
                agent,
                endpoint,
                seconds,
            } => {
                let expires = seconds.map(|s| now + Span::from_secs(s as i64));
                router.bind(now, agent, endpoint, expires);
            }
        }
    }
}

/// What the CTI client tells the engine thread.
#[derive(Clone, Debug, PartialEq)]
pub enum CtiCommand {
    /// RTP_STARTED: the agent's phone carries the call.
    RtpStarted {
        /// Agent index.
        agent: usize,
        /// The call.
        call: CallRef,
        /// The phone's media endpoint.
        phone: SocketAddr,
    },
    /// RTP_STOPPED.
    RtpStopped {
        /// The call.
        call: CallRef,
        /// The phone's media endpoint.
        phone: SocketAddr,
    },
    /// BEGIN_CALL.
    CallBegan(CtiBegin),
    /// END_CALL or CALL_CLEARED.
    CallEnded(CallRef),
    /// AGENT_STATE_EVENT with the agent logged out.
    LoggedOut {
        /// Agent index.
        agent: usize,
    },
}

impl CtiCommand {
    fn apply(self, router: &mut Router, now: Timestamp) {
        match self {
            CtiCommand::RtpStarted { agent, call, phone } => {
                router.cti_rtp_started(now, agent, &call, phone)
            }
            CtiCommand::RtpStopped { call, phone } => router.cti_rtp_stopped(now, &call, phone),
            CtiCommand::CallBegan(b) => router.cti_call_began(now, b),
            CtiCommand::CallEnded(call) => router.cti_call_ended(now, &call),
            CtiCommand::LoggedOut { agent } => router.cti_logged_out(now, agent),
        }
    }
}

/// Where monitored packets go (the monitor service's publisher; a recorder in tests).
pub trait MonitorOutput: Send {
    /// One packet for one monitor (per packet: no lock, no allocation).
    fn forward(&mut self, f: &Forward<'_>);
    /// A monitor's call changed or ended.
    fn notice(&mut self, n: &Notice);
    /// End of a batch: wake whoever waits for what was forwarded.
    fn flush(&mut self);
    /// Monitors whose endpoint attached since the last call (appended to `out`).
    fn take_attached(&mut self, _out: &mut Vec<MonitorId>) {}
}

impl MonitorOutput for crate::monitor::fanout::Publisher {
    fn forward(&mut self, f: &Forward<'_>) {
        self.publish(f);
    }
    fn notice(&mut self, n: &Notice) {
        crate::monitor::fanout::Publisher::notice(self, n);
    }
    fn flush(&mut self) {
        crate::monitor::fanout::Publisher::flush(self);
    }
    fn take_attached(&mut self, out: &mut Vec<MonitorId>) {
        crate::monitor::fanout::Publisher::take_attached(self, out);
    }
}

/// The engine thread's links to the control plane and the cluster's peer links.
pub struct ControlLink {
    /// Commands in.
    pub commands: Receiver<Command>,
    /// Snapshots out.
    pub view: watch::Sender<Arc<View>>,
    /// Monitors to end out (StopSMNonACDCall): the control plane decides, the router waits
    /// for its `RemoveMonitor`.
    pub control: ControlHandle,
    /// Peers' media and notices in, their buffers back (None: no cluster).
    pub peers: Option<EnginePeers>,
}

/// One capture input.
pub struct Input {
    /// Interface name (or `replay`), the metrics label.
    pub name: String,
    /// The capture thread's end.
    pub pipeline: Pipeline,
}

/// Counters the engine thread copies out every [`PUBLISH_EVERY`].
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Frames handled.
    pub frames: AtomicU64,
    /// Bytes handled.
    pub bytes: AtomicU64,
    /// SIP messages parsed.
    pub sip_messages: AtomicU64,
    /// SIP messages that did not parse.
    pub sip_malformed: AtomicU64,
    /// RTP packets.
    pub rtp_packets: AtomicU64,
    /// RTCP packets.
    pub rtcp_packets: AtomicU64,
    /// Frames that did not decapsulate to a transport header.
    pub undecoded: AtomicU64,
    /// RTP packets of bound agents.
    pub agent_packets: AtomicU64,
    /// Packets handed to monitors.
    pub forwarded: AtomicU64,
    /// RTP streams in the flow table now.
    pub streams: AtomicU64,
    /// RTP streams forgotten after [`crate::flow::LIVE_STREAM_IDLE`] without a packet.
    pub streams_pruned: AtomicU64,
    /// SIP calls in the call table now.
    pub calls: AtomicU64,
    /// SIP calls evicted by the call table's cap (the oldest idle first).
    pub calls_evicted: AtomicU64,
    /// Agent bindings now.
    pub bindings: AtomicU64,
    /// Active monitors now.
    pub monitors: AtomicU64,
    /// Capture inputs still running.
    pub inputs: AtomicU64,
    /// Times SIP and the CTI Server named different agents for one media endpoint.
    pub cti_disagreements: AtomicU64,
    /// SIP over TCP reassembly counters, in the order of [`crate::sip::tcp::TcpSipStats::named`].
    pub sip_tcp: [AtomicU64; 7],
}

/// The engine thread's handle.
pub struct EngineThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Each input's name and capture counters (for the metrics endpoint).
    pub inputs: Vec<(String, Arc<PipelineStats>)>,
}

impl EngineThread {
    /// Starts the engine thread.
    pub fn spawn<O: MonitorOutput + 'static>(
        router: Router,
        inputs: Vec<Input>,
        control: ControlLink,
        output: O,
        metrics: Arc<EngineMetrics>,
        clock: fn() -> Timestamp,
    ) -> EngineThread {
        let ControlLink {
            commands,
            view,
            control,
            peers,
        } = control;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = inputs
            .iter()
            .map(|i| (i.name.clone(), i.pipeline.stats.clone()))
            .collect();
        let state = Loop {
            router,
            inputs,
            commands,
            view,
            output,
            metrics,
            clock,
            stop: stop.clone(),
            attached: Vec::new(),
            control,
            peers,
            view_build: None,
        };
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || state.run())
            .expect("spawning the engine thread");
        EngineThread {
            stop,
            thread: Some(thread),
            inputs: stats,
        }
    }

    /// Stops the engine thread (and its capture threads) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Loop<O> {
    router: Router,
    inputs: Vec<Input>,
    commands: Receiver<Command>,
    view: watch::Sender<Arc<View>>,
    output: O,
    metrics: Arc<EngineMetrics>,
    clock: fn() -> Timestamp,
    stop: Arc<AtomicBool>,
    attached: Vec<MonitorId>,
    control: ControlHandle,
    peers: Option<EnginePeers>,
    /// The view being built, a slice per turn of the loop (None: none due).
    view_build: Option<ViewBuild>,
}

impl<O: MonitorOutput> Loop<O> {
    fn run(mut self) {
        let mut next_publish = Instant::now();
        let mut commands_open = true;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_publish && self.view_build.is_none() {
                // Attaches are applied here too when no traffic flows.
                self.flush_output();
                self.view_build = Some(ViewBuild::default());
            }
            if self.view_slice() {
                // Counted from the publish, so a build that takes longer than the period
                // never runs into the next one.
                next_publish = Instant::now() + PUBLISH_EVERY;
            }
            let wall = (self.clock)();
            // One look at the timers per turn (the bindings' is a walk over them).
            let mut due = self.router.poll_timeout();
            if due.is_some_and(|d| d <= wall) {
                self.router.handle_timeout(wall);
                due = self.router.poll_timeout();
            }
            // Wait for a batch or a command, at most until the next publish or timer (or the
            // next slice of the view being built).
            let mut wait = if self.view_build.is_some() {
                VIEW_SLICE_GAP
            } else {
                next_publish.saturating_duration_since(Instant::now())
            };
            if let Some(due) = due {
                let until = (due - wall).as_nanos().max(0) as u64;
                wait = wait.min(Duration::from_nanos(until));
            }
            let mut sel = Select::new();
            for input in &self.inputs {
                sel.recv(&input.pipeline.batches);
            }
            let command_index = commands_open.then(|| sel.recv(&self.commands));
            let peers_index = self.peers.as_ref().map(|p| sel.recv(&p.from_peers));
            let Ok(op) = sel.select_timeout(wait) else {
                continue;
            };
            let index = op.index();
            if Some(index) == peers_index {
                let first = self.peers.as_ref().map(|p| op.recv(&p.from_peers));
                if let Some(Ok(f)) = first {
                    self.handle_peers(f);
                }
                continue;
            }
            if Some(index) == command_index {
                match op.recv(&self.commands) {
                    Ok(c) => self.apply(c),
                    Err(_) => commands_open = false,
                }
                while let Ok(c) = self.commands.try_recv() {
                    self.apply(c);
                }
                continue;
            }
            match op.recv(&self.inputs[index].pipeline.batches) {
                Ok(batch) => {
                    let link = self.inputs[index].pipeline.link;
                    let output = &mut self.output;
                    let mut sink = |f: Forward<'_>| output.forward(&f);
                    for (ts, frame) in batch.frames() {
                        self.router.handle_frame(ts, link, frame, &mut sink);
                    }
                    self.notices();
                    self.flush_output();
                    self.inputs[index].pipeline.recycle(batch);
                }
                Err(_) => {
                    // The source ended (a replay without --loop) or its thread failed.
                    let input = self.inputs.swap_remove(index);
                    let name = input.name.clone();
                    match input.pipeline.join() {
                        Ok(()) => tracing::info!(input = %name, "capture input ended"),
                        Err(e) => {
                            tracing::error!(input = %name, error = %e, "capture input failed")
                        }
                    }
                }
            }
        }
        for input in self.inputs.drain(..) {
            let _ = input.pipeline.join();
        }
    }

    /// Flushes the output and tells the router which monitors' endpoints just attached.
    fn flush_output(&mut self) {
        self.output.flush();
        self.output.take_attached(&mut self.attached);
        for id in self.attached.drain(..) {
            self.router.reannounce(id);
        }
    }

    /// Frames from peers: `first` and whatever else is queued (up to a batch), forwarded to
    /// the local monitors; buffers go back to the links.
    fn handle_peers(&mut self, first: FromPeer) {
        let Some(peers) = self.peers.take() else {
            return;
        };
        let mut next = Some(first);
        let mut n = 0;
        while let Some(f) = next.take() {
            self.handle_peer(&peers, f);
            n += 1;
            if n < crate::capture::pipeline::BATCH_FRAMES {
                next = peers.from_peers.try_recv().ok();
            }
        }
        self.peers = Some(peers);
        self.notices();
        self.flush_output();
    }

    fn handle_peer(&mut self, peers: &EnginePeers, f: FromPeer) {
        let name = |p: u16| peers.names.get(usize::from(p)).map_or("", String::as_str);
        match f {
            FromPeer::Media {
                peer,
                agent,
                direction,
                stream,
                capture_ts,
                rtp,
            } => {
                let packet = RemotePacket {
                    peer,
                    agent,
                    direction,
                    stream,
                    capture_ts,
                    rtp: &rtp,
                };
                let output = &mut self.output;
                self.router
                    .remote_media(&packet, &mut |fw: Forward<'_>| output.forward(&fw));
                // Full: the buffer is freed instead of reused.
                let _ = peers.spent.try_send(rtp);
            }
            FromPeer::Call {
                peer,
                agent,
                call_id,
                payloads,
                started,
            } => self.router.remote_call(&RemoteCall {
                peer,
                appliance: name(peer),
                agent,
                call_id: &call_id,
                payloads,
                started,
            }),
            FromPeer::CallEnded {
                peer,
                agent,
                call_id,
            } => self.router.remote_call_ended(peer, agent, &call_id),
            FromPeer::Down { peer } => self.router.peer_down(peer, name(peer)),
        }
    }

    fn apply(&mut self, c: Command) {
        c.apply(&mut self.router, (self.clock)());
        self.notices();
    }

    /// Hands the router's notices on: call changes to the endpoints and (for the agent's
    /// WarnIfSilentMonitored warning) to the control plane, non-ACD calls to the control plane.
    fn notices(&mut self) {
        while let Some(n) = self.router.poll_notice() {
            match &n {
                Notice::NonAcdCall { monitor, call_id } => {
                    tracing::info!(
                        monitor,
                        call_id,
                        "non-ACD call: the monitor ends (StopSMNonACDCall)"
                    );
                    self.control.end_monitor(*monitor, StopReason::NonAcdCall);
                }
                Notice::Call {
                    monitor,
                    call_id,
                    call_type,
                    ..
                } => self.control.heard_call(HeardCall {
                    monitor: *monitor,
                    call_id: call_id.clone(),
                    call_type: *call_type,
                }),
                Notice::CallEnded { .. } | Notice::Interrupted { .. } => {}
            }
            self.output.notice(&n);
        }
    }

    /// Builds a slice of the view being built; publishes it when complete (true).
    fn view_slice(&mut self) -> bool {
        let Some(b) = self.view_build.as_mut() else {
            return false;
        };
        if !self.router.build_view(b, VIEW_SLICE_ROWS) {
            return false;
        }
        let view = b.take();
        self.view_build = None;
        self.publish(view);
        true
    }

    /// Publishes a complete view and the counters.
    fn publish(&mut self, view: View) {
        let m = &self.metrics;
        let e = self.router.engine().stats();
        let r = self.router.stats();
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&m.frames, e.frames);
        set(&m.bytes, e.bytes);
        set(&m.sip_messages, e.sip_messages);
        set(&m.sip_malformed, e.sip_malformed);
        set(&m.rtp_packets, e.rtp_packets);
        set(&m.rtcp_packets, e.rtcp_packets);
        set(&m.undecoded, e.undecoded);
        set(&m.agent_packets, r.agent_packets);
        set(&m.forwarded, r.forwarded);
        // The tables' sizes (the view lists a call or flow once per agent in it).
        let flows = self.router.engine().flows();
        set(&m.streams, flows.live() as u64);
        set(&m.streams_pruned, flows.stats().streams_pruned);
        set(
            &m.calls,
            self.router.engine().calls().calls().count() as u64,
        );
        set(&m.bindings, view.bindings.len() as u64);
        set(&m.monitors, self.router.monitor_count() as u64);
        set(&m.inputs, self.inputs.len() as u64);
        set(&m.cti_disagreements, self.router.cti_disagreements());
        for (a, (_, v)) in m.sip_tcp.iter().zip(self.router.engine().tcp_sip().named()) {
            set(a, v);
        }
        // Only the latest snapshot matters; nobody listening is fine.
        self.view.send_replace(Arc::new(view));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{Agent, Direction};
    use crate::capture::replay::{Replay, ReplayOptions};
    use crate::engine::EngineConfig;
    use std::path::Path;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen {
        packets: Vec<(MonitorId, usize, Direction)>,
        notices: Vec<Notice>,
        flushes: usize,
    }

    struct Recording(Arc<Mutex<Seen>>);

    impl MonitorOutput for Recording {
        fn forward(&mut self, f: &Forward<'_>) {
            self.0
                .lock()
                .unwrap()
                .packets
                .push((f.monitor, f.rtp.len(), f.direction));
        }
        fn notice(&mut self, n: &Notice) {
            self.0.lock().unwrap().notices.push(n.clone());
        }
        fn flush(&mut self) {
            self.0.lock().unwrap().flushes += 1;
        }
    }

    fn wall() -> Timestamp {
        crate::clock::wall_now()
    }

    #[test]
    fn a_replayed_capture_reaches_the_monitor_of_its_agent_and_the_view() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/demo-vlan85-mobile-agent.pcap");
        let source = Replay::open(
            &path,
            None,
            ReplayOptions {
                speed: 0.0,
                looped: false,
                ..ReplayOptions::default()
            },
        )
        .unwrap();
        let pipeline = Pipeline::spawn(source, false);
        let agent = Agent {
            id: "5001".into(),
            extension: "5001".into(),
            mobile_number: Some("+4915112345678".into()),
            phone_ips: vec![],
        };
        let router = Router::new(EngineConfig::default(), vec![agent], Span::from_secs(2));
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(8);
        // The monitor exists before the first packet.
        cmd_tx
            .send(Command::AddMonitor {
                monitor: 7,
                agent: 0,
            })
            .unwrap();
        let (view_tx, mut view_rx) = watch::channel(Arc::new(View::default()));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let metrics = Arc::new(EngineMetrics::default());
        let t = EngineThread::spawn(
            router,
            vec![Input {
                name: "replay".into(),
                pipeline,
            }],
            ControlLink {
                commands: cmd_rx,
                view: view_tx,
                control: crate::control::server::handle(&Default::default()).0,
                peers: None,
            },
            Recording(seen.clone()),
            metrics.clone(),
            wall,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.inputs.load(Ordering::Relaxed) != 0
            || metrics.frames.load(Ordering::Relaxed) == 0
        {
            assert!(Instant::now() < deadline, "the replay never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(view_rx.has_changed().unwrap());
        let view = view_rx.borrow_and_update().clone();
        t.stop();
        let seen = seen.lock().unwrap();
        assert!(!view.calls.is_empty(), "{view:?}");
        assert!(
            view.bindings.iter().any(|b| b.agent_id == "5001"),
            "{view:?}"
        );
        // The truth file: 1200 RTP packets each way, all bound by the SIP from the first.
        let each_way = |d: Direction| seen.packets.iter().filter(|p| p.2 == d).count();
        assert_eq!(each_way(Direction::FromAgent), 1200);
        assert_eq!(each_way(Direction::ToAgent), 1200);
        assert!(seen.packets.iter().all(|&(m, len, _)| m == 7 && len >= 12));
        assert_eq!(
            seen.packets.len() as u64,
            metrics.forwarded.load(Ordering::Relaxed)
        );
        assert!(seen
            .notices
            .iter()
            .any(|n| matches!(n, Notice::Call { monitor: 7, .. })));
        assert!(seen.flushes > 0);
    }
}
