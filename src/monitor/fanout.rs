//! The engine-thread side of the monitor service: the [`Publisher`] turns each [`Forward`] of a
//! monitored agent into a media frame in the queue of the endpoint connection attached to that
//! monitor ([`Subscriber`]), and each [`Notice`] into a control frame.
//!
//! Rules:
//! - [`Publisher::publish`] takes no lock and does not allocate: each subscriber owns a fixed set
//!   of preallocated slots ([`SLOT_PREALLOC`] bytes each) cycling between two lock-free
//!   `ArrayQueue`s, `free` and `full`. A packet is encoded into a free slot; when none is free,
//!   the oldest queued frame is taken back and counted as dropped. A packet whose RTP is longer
//!   than a slot grows that slot once (the slot keeps its capacity when recycled).
//! - A subscriber's queue holds its base number of frames, or [`FRAMES_PER_MONITOR`] per
//!   monitor routed to it when that is more, up to its most (fixed when it is made): one
//!   connection may carry 1000 monitors, and a queue sized for one would hold a few ms of them.
//!   The publisher adds the slots when it applies an attach (it allocates then, never per
//!   packet); they stay until the subscriber goes. The bound counts monitors, not calls: a
//!   connection of many idle monitors and one live call may hold that call's frames longer.
//! - A route to a closed subscriber (its connection ended; a Detach lost to a full command
//!   queue) is removed when its next packet comes and at every attach.
//! - A slow endpoint loses its oldest frames, counted per subscriber and in [`MonitorStats`];
//!   the publisher and the other subscribers never wait for it.
//! - Control frames (notices, replies, heartbeats) have their own bounded queue per subscriber,
//!   drained before media; they are rare and may allocate.
//! - Subscribers are added and removed through [`FanoutCommand`]s that [`Publisher::flush`]
//!   drains. Call `flush` once per captured batch: it first wakes, at most once each, the
//!   connections that got frames since the last flush, then applies the commands.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::stats::MonitorStats;
use super::wire::{Control, Media};
use crate::router::{Forward, MonitorId, Notice};
use crate::time::Timestamp;

/// Bytes preallocated per media slot: an 18-byte header, its prefix and an RTP packet of up to
/// 40 ms of G.711 (or a typical Opus packet). A longer packet grows its slot once; 1024 slots
/// make 512 KiB per endpoint connection (and its rings 64 bytes per frame of its most).
pub const SLOT_PREALLOC: usize = 512;
/// The largest media frame a writer gathers in one piece (a large RTP packet and its header).
pub const SLOT_CAPACITY: usize = 2048;
/// Media frames a subscriber's queue holds per monitor routed to it (beyond its base): 160 ms
/// of both directions of a call sending every 20 ms.
pub const FRAMES_PER_MONITOR: usize = 16;
/// Control frames queued towards one endpoint before the oldest is dropped.
pub const CONTROL_FRAMES: usize = 256;
/// Commands queued towards the publisher.
pub const COMMAND_CAPACITY: usize = 4096;

/// What one [`Subscriber::drain_into`] took.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Frames appended (control and media).
    pub frames: usize,
    /// Media frames among them.
    pub media: usize,
    /// Capture timestamp of the first (oldest) media frame.
    pub oldest_capture: Option<Timestamp>,
}

/// What the service tells the publisher.
pub enum FanoutCommand {
    /// Route `monitor`'s packets and notices to `subscriber` (replaces an earlier route),
    /// their frames tagged `wire` (the monitor id for an endpoint, the subscription id for a
    /// peer link).
    Attach {
        /// The monitor.
        monitor: MonitorId,
        /// The id its frames carry.
        wire: u32,
        /// The connection's queue.
        subscriber: Arc<Subscriber>,
    },
    /// Stop routing `monitor`.
    Detach {
        /// The monitor.
        monitor: MonitorId,
    },
}

/// The bounded command channel between the service and the publisher.
pub fn commands() -> (
    crossbeam_channel::Sender<FanoutCommand>,
    crossbeam_channel::Receiver<FanoutCommand>,
) {
    crossbeam_channel::bounded(COMMAND_CAPACITY)
}

/// One subscriber's counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Media frames queued.
    pub forwarded: u64,
    /// Media frames lost because the endpoint was behind.
    pub dropped: u64,
    /// Control frames lost because the endpoint was behind.
    pub control_dropped: u64,
    /// Media frames waiting now.
    pub queued: u64,
    /// Media frames the queue holds now (see the module rules).
    pub room: u64,
}

/// One endpoint connection's queues: filled by the publisher (and the service, for control
/// frames), drained by the connection's writer.
pub struct Subscriber {
    free: ArrayQueue<Vec<u8>>,
    full: ArrayQueue<Vec<u8>>,
    control: ArrayQueue<Vec<u8>>,
    /// Media slots made (in `free`, in `full` or in the writer's hands): the queue's bound.
    /// Only the publisher changes it (and `routes`), so relaxed loads suffice.
    slots: AtomicUsize,
    /// The bound with no monitor routed.
    base: usize,
    /// Monitors routed here.
    routes: AtomicUsize,
    pending: AtomicBool,
    closed: AtomicBool,
    notify: Notify,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    control_dropped: AtomicU64,
    stats: Arc<MonitorStats>,
}

impl Subscriber {
    /// A subscriber holding up to `frames` media frames (at least 1), all slots preallocated;
    /// it does not grow.
    pub fn new(frames: usize, stats: Arc<MonitorStats>) -> Subscriber {
        Subscriber::growing(frames, frames, stats)
    }

    /// A subscriber holding `base` media frames (at least 1, preallocated), growing by
    /// [`FRAMES_PER_MONITOR`] per routed monitor up to `most` frames. Its rings take 64 bytes
    /// per frame of `most` at once; the slots, [`SLOT_PREALLOC`] bytes each, come as it grows.
    pub fn growing(base: usize, most: usize, stats: Arc<MonitorStats>) -> Subscriber {
        let base = base.max(1);
        let most = most.max(base);
        let free = ArrayQueue::new(most);
        for _ in 0..base {
            let _ = free.push(Vec::with_capacity(SLOT_PREALLOC));
        }
        Subscriber {
            free,
            full: ArrayQueue::new(most),
            control: ArrayQueue::new(CONTROL_FRAMES),
            slots: AtomicUsize::new(base),
            base,
            routes: AtomicUsize::new(0),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            control_dropped: AtomicU64::new(0),
            stats,
        }
    }

    /// One more monitor routed here: grows the queue to its bound for that many (allocates).
    fn route_added(&self) {
        let routes = self.routes.fetch_add(1, Ordering::Relaxed) + 1;
        let want = routes
            .saturating_mul(FRAMES_PER_MONITOR)
            .clamp(self.base, self.full.capacity());
        while self.slots.load(Ordering::Relaxed) < want {
            // Fewer slots than the ring holds exist, so `free` has room for one more.
            if self.free.push(Vec::with_capacity(SLOT_PREALLOC)).is_err() {
                break;
            }
            self.slots.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One monitor fewer routed here (the slots stay: see the module rules).
    fn route_removed(&self) {
        self.routes.fetch_sub(1, Ordering::Relaxed);
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        MonitorStats::add_one(&self.stats.dropped_total);
    }

    /// Queues one media frame without waiting, dropping the oldest when full. No lock; no
    /// allocation unless the RTP packet is longer than the slot.
    fn push_media(&self, media: &Media<'_>) {
        if media.body_len().is_err() {
            // An RTP packet over MAX_RTP cannot be framed: this one frame is lost, counted.
            self.count_drop();
            return;
        }
        let mut slot = match self.free.pop() {
            Some(s) => s,
            None => match self.full.pop() {
                Some(oldest) => {
                    self.count_drop();
                    oldest
                }
                None => {
                    // Every slot is in the writer's hands this instant: the new frame is lost.
                    self.count_drop();
                    return;
                }
            },
        };
        slot.clear();
        let encoded = media.append(&mut slot);
        debug_assert!(encoded.is_ok(), "the length was checked above");
        if let Some(displaced) = self.full.force_push(slot) {
            self.count_drop();
            let _ = self.free.push(displaced);
        }
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        MonitorStats::add_one(&self.stats.forwarded_total);
    }

    fn queue_control(&self, c: &Control) {
        let mut v = Vec::new();
        if let Err(e) = c.append(&mut v) {
            tracing::warn!(error = %e, "monitor service: control frame not sent");
            return;
        }
        if self.control.force_push(v).is_some() {
            self.control_dropped.fetch_add(1, Ordering::Relaxed);
            MonitorStats::add_one(&self.stats.control_dropped_total);
        }
    }

    /// Queues a control frame and wakes the writer now (for the service's replies).
    pub fn send_control(&self, c: &Control) {
        self.queue_control(c);
        self.notify.notify_one();
    }

    /// Queues an encoded control frame (a peer link's own) and wakes the writer; false when
    /// the queue was full and its oldest frame was dropped for it.
    pub fn send_encoded(&self, frame: Vec<u8>) -> bool {
        let kept = self.control.force_push(frame).is_none();
        if !kept {
            self.control_dropped.fetch_add(1, Ordering::Relaxed);
            MonitorStats::add_one(&self.stats.control_dropped_total);
        }
        self.notify.notify_one();
        kept
    }

    /// Moves queued frames into `out`: all control frames first, then media frames until `out`
    /// holds at least `max_bytes` or the queue is empty. Says what it moved.
    pub fn drain_into(&self, out: &mut Vec<u8>, max_bytes: usize) -> Drained {
        let mut d = Drained::default();
        while let Some(c) = self.control.pop() {
            out.extend_from_slice(&c);
            d.frames += 1;
        }
        while out.len() < max_bytes {
            let Some(slot) = self.full.pop() else { break };
            if d.media == 0 {
                d.oldest_capture = super::wire::media_capture_ts(&slot);
            }
            out.extend_from_slice(&slot);
            let _ = self.free.push(slot);
            d.frames += 1;
            d.media += 1;
        }
        d
    }

    /// Counts a write of `d`'s media frames that ended at wall time `written`: each frame
    /// waited at most as long as the oldest.
    pub fn observe_write(&self, d: &Drained, written: Timestamp) {
        if let Some(oldest) = d.oldest_capture {
            self.stats
                .write_delay
                .observe(written - oldest, d.media as u64);
        }
    }

    /// True when frames are waiting.
    pub fn has_frames(&self) -> bool {
        !self.control.is_empty() || !self.full.is_empty()
    }

    /// Waits until frames were queued (or [`Subscriber::close`] was called) since the last
    /// wake-up. A wake-up given while nobody waits is kept for the next call.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Tells the writer to finish: it writes what is queued and stops.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// True after [`Subscriber::close`].
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// This subscriber's counters.
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            control_dropped: self.control_dropped.load(Ordering::Relaxed),
            queued: self.full.len() as u64,
            room: self.slots.load(Ordering::Relaxed) as u64,
        }
    }
}

/// The engine thread's end of the fanout.
pub struct Publisher {
    commands: crossbeam_channel::Receiver<FanoutCommand>,
    /// Monitor -> its connection's queue and the id its frames carry.
    routes: FxHashMap<MonitorId, (Arc<Subscriber>, u32)>,
    attached: Vec<MonitorId>,
    /// The subscribers that got frames since the last flush, each once (its `pending` flag
    /// set): the flush wakes these, not every route (one connection may carry 1000 monitors).
    woken: Vec<Arc<Subscriber>>,
    stats: Arc<MonitorStats>,
}

impl Publisher {
    /// A publisher taking commands from `commands` (see [`commands`]).
    pub fn new(
        commands: crossbeam_channel::Receiver<FanoutCommand>,
        stats: Arc<MonitorStats>,
    ) -> Publisher {
        Publisher {
            commands,
            routes: FxHashMap::default(),
            attached: Vec::new(),
            woken: Vec::new(),
            stats,
        }
    }

    /// Queues one packet for the monitor's endpoint. Never waits, never locks, never allocates
    /// (see the module rules); the endpoint is woken by the next [`Publisher::flush`].
    pub fn publish(&mut self, f: &Forward<'_>) {
        let Some(&(ref sub, wire)) = self.routes.get(&f.monitor) else {
            MonitorStats::add_one(&self.stats.unrouted_total);
            return;
        };
        if sub.is_closed() {
            self.unroute(f.monitor);
            MonitorStats::add_one(&self.stats.unrouted_total);
            return;
        }
        sub.push_media(&Media {
            monitor: wire,
            stream: f.stream.0,
            direction: f.direction,
            capture_ts: f.capture_ts,
            rtp: f.rtp,
        });
        if !sub.pending.swap(true, Ordering::AcqRel) {
            // Once per subscriber and flush; the list keeps its capacity.
            self.woken.push(sub.clone());
        }
    }

    /// Queues a call notice for the monitor's endpoint (rare; allocates).
    pub fn notice(&mut self, n: &Notice) {
        let monitor = match n {
            Notice::Call { monitor, .. }
            | Notice::CallEnded { monitor, .. }
            | Notice::Interrupted { monitor, .. } => *monitor,
            // The control plane ends that monitor; its endpoint then gets `Stopped`.
            Notice::NonAcdCall { .. } => return,
        };
        let Some(&(ref sub, id)) = self.routes.get(&monitor) else {
            MonitorStats::add_one(&self.stats.unrouted_total);
            return;
        };
        let control = match n {
            Notice::Call {
                call_id,
                payloads,
                started,
                appliance,
                ..
            } => Control::Call {
                monitor: id,
                call_id: call_id.clone(),
                payloads: *payloads,
                started: *started,
                appliance: appliance.clone(),
            },
            Notice::CallEnded { call_id, .. } => Control::CallEnded {
                monitor: id,
                call_id: call_id.clone(),
            },
            Notice::Interrupted { reason, .. } => Control::Interrupted {
                monitor: id,
                reason: reason.clone(),
            },
            Notice::NonAcdCall { .. } => return,
        };
        sub.queue_control(&control);
        if !sub.pending.swap(true, Ordering::AcqRel) {
            self.woken.push(sub.clone());
        }
    }

    /// Wakes each subscriber that got frames since the last call (once each), then applies
    /// the pending attach/detach commands. Call once per captured batch.
    pub fn flush(&mut self) {
        for sub in self.woken.drain(..) {
            sub.pending.store(false, Ordering::Release);
            sub.notify.notify_one();
        }
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                FanoutCommand::Attach {
                    monitor,
                    wire,
                    subscriber,
                } => {
                    self.unroute(monitor);
                    self.unroute_closed();
                    subscriber.route_added();
                    self.routes.insert(monitor, (subscriber, wire));
                    self.attached.push(monitor);
                    // Room for every route's subscriber: `publish` never grows the list.
                    let room = self.routes.len().saturating_sub(self.woken.len());
                    self.woken.reserve(room);
                }
                FanoutCommand::Detach { monitor } => self.unroute(monitor),
            }
        }
    }

    fn unroute(&mut self, monitor: MonitorId) {
        if let Some((old, _)) = self.routes.remove(&monitor) {
            old.route_removed();
        }
    }

    /// Removes the routes to closed subscribers (a walk over every route: attaches only).
    fn unroute_closed(&mut self) {
        self.routes.retain(|_, (sub, _)| {
            let open = !sub.is_closed();
            if !open {
                sub.route_removed();
            }
            open
        });
    }

    /// Monitors attached by the flushes since the last call (their endpoint needs to hear the
    /// current call again: notices sent before the attach went nowhere).
    pub fn take_attached(&mut self, out: &mut Vec<MonitorId>) {
        out.append(&mut self.attached);
    }

    /// Monitors routed now.
    pub fn routed(&self) -> usize {
        self.routes.len()
    }

    /// True while monitor `id` is routed to an endpoint.
    pub fn is_routed(&self, id: MonitorId) -> bool {
        self.routes.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Direction;
    use crate::flow::StreamId;
    use crate::monitor::wire::{decode, Frame, MAX_RTP};
    use crate::time::Timestamp;

    fn forward(monitor: MonitorId, rtp: &[u8]) -> Forward<'_> {
        Forward {
            monitor,
            direction: Direction::FromAgent,
            stream: StreamId(4),
            capture_ts: Timestamp::from_nanos(77),
            rtp,
        }
    }

    fn frames(buf: &[u8]) -> Vec<Frame<'_>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let (f, n) = decode(rest).unwrap();
            out.push(f);
            rest = &rest[n..];
        }
        out
    }

    /// Routes `monitor` (its frames tagged with the same number) to `sub`.
    fn attach(
        tx: &crossbeam_channel::Sender<FanoutCommand>,
        monitor: MonitorId,
        sub: &Arc<Subscriber>,
    ) {
        tx.send(FanoutCommand::Attach {
            monitor,
            wire: monitor as u32,
            subscriber: sub.clone(),
        })
        .unwrap();
    }

    #[test]
    fn routes_frames_and_drops_the_oldest_when_full() {
        let stats = Arc::new(MonitorStats::default());
        let (tx, rx) = commands();
        let mut p = Publisher::new(rx, stats.clone());
        let sub = Arc::new(Subscriber::new(4, stats.clone()));
        p.publish(&forward(1, &[9])); // not routed yet
        attach(&tx, 1, &sub);
        p.flush();
        for i in 0..10u8 {
            p.publish(&forward(1, &[i; 3]));
        }
        p.publish(&forward(2, &[0]));
        assert_eq!(
            sub.stats(),
            SubscriberStats {
                forwarded: 10,
                dropped: 6,
                control_dropped: 0,
                queued: 4,
                room: 4,
            }
        );
        assert_eq!(MonitorStats::get(&stats.unrouted_total), 2);
        assert_eq!(MonitorStats::get(&stats.dropped_total), 6);
        let mut out = Vec::new();
        assert_eq!(sub.drain_into(&mut out, usize::MAX).frames, 4);
        let rtps: Vec<u8> = frames(&out)
            .iter()
            .map(|f| match f {
                Frame::Media(m) => {
                    assert_eq!((m.monitor, m.stream, m.capture_ts.as_nanos()), (1, 4, 77));
                    m.rtp[0]
                }
                Frame::Control(c) => panic!("unexpected {c:?}"),
            })
            .collect();
        assert_eq!(rtps, [6, 7, 8, 9]);
        // The slots came back: four more frames fit without a drop.
        for i in 0..4u8 {
            p.publish(&forward(1, &[i]));
        }
        assert_eq!(sub.stats().dropped, 6);
        tx.send(FanoutCommand::Detach { monitor: 1 }).unwrap();
        p.flush();
        assert_eq!(p.routed(), 0);
    }

    #[test]
    fn the_queue_grows_with_the_monitors_routed_to_it() {
        const PER: usize = FRAMES_PER_MONITOR;
        let stats = Arc::new(MonitorStats::default());
        let (tx, rx) = commands();
        let mut p = Publisher::new(rx, stats.clone());
        let sub = Arc::new(Subscriber::growing(4, 3 * PER, stats.clone()));
        let other = Arc::new(Subscriber::growing(4, 64, stats));
        let attach = |monitor: MonitorId, to: &Arc<Subscriber>| attach(&tx, monitor, to);
        assert_eq!(sub.stats().room, 4);
        attach(1, &sub);
        attach(1, &sub); // the same monitor again: still one route
        p.flush();
        assert_eq!(sub.stats().room, PER as u64);
        attach(2, &sub);
        p.flush();
        assert_eq!(sub.stats().room, 2 * PER as u64);
        for i in 0..2 * PER + 5 {
            p.publish(&forward(1, &[i as u8]));
        }
        let s = sub.stats();
        assert_eq!((s.queued, s.dropped), (2 * PER as u64, 5));
        // More monitors than its most holds: it stops there.
        for monitor in 3..=10 {
            attach(monitor, &sub);
        }
        p.flush();
        assert_eq!(sub.stats().room, 3 * PER as u64);
        // A route moved elsewhere and a detach: the counts follow, the slots stay.
        attach(3, &other);
        tx.send(FanoutCommand::Detach { monitor: 4 }).unwrap();
        p.flush();
        assert_eq!(sub.routes.load(Ordering::Relaxed), 8);
        assert_eq!(other.routes.load(Ordering::Relaxed), 1);
        assert_eq!(
            (sub.stats().room, other.stats().room),
            (3 * PER as u64, PER as u64)
        );
        // Every slot still cycles: a drained queue takes its whole room again without a drop.
        let mut out = Vec::new();
        sub.drain_into(&mut out, usize::MAX);
        for i in 0..3 * PER {
            p.publish(&forward(1, &[i as u8]));
        }
        assert_eq!(sub.stats().dropped, 5);
        // A base above what its monitors ask for is not grown.
        let big = Arc::new(Subscriber::growing(4 * PER, 8 * PER, Default::default()));
        attach(20, &big);
        p.flush();
        assert_eq!(big.stats().room, 4 * PER as u64);
    }

    #[test]
    fn routes_to_a_closed_subscriber_go_without_a_detach() {
        let stats = Arc::new(MonitorStats::default());
        let (tx, rx) = commands();
        let mut p = Publisher::new(rx, stats.clone());
        let gone = Arc::new(Subscriber::new(4, stats.clone()));
        let live = Arc::new(Subscriber::new(4, stats.clone()));
        for (monitor, sub) in [(1, &gone), (2, &gone), (3, &live)] {
            attach(&tx, monitor, sub);
        }
        p.flush();
        gone.close();
        // Its next packet unroutes monitor 1 (counted as unrouted, not queued).
        p.publish(&forward(1, &[1]));
        assert!(!p.is_routed(1) && p.is_routed(2));
        assert_eq!(gone.stats().forwarded, 0);
        assert_eq!(MonitorStats::get(&stats.unrouted_total), 1);
        // The next attach anywhere sweeps monitor 2.
        attach(&tx, 4, &live);
        p.flush();
        assert!(!p.is_routed(2) && p.is_routed(3) && p.is_routed(4));
        assert_eq!(gone.routes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_control_queue_drops_its_oldest_frame_and_counts_it() {
        let stats = Arc::new(MonitorStats::default());
        let sub = Subscriber::new(4, stats.clone());
        for seq in 0..=CONTROL_FRAMES as u64 {
            sub.send_control(&Control::Heartbeat { seq });
        }
        assert_eq!(sub.stats().control_dropped, 1);
        assert_eq!(MonitorStats::get(&stats.control_dropped_total), 1);
        let mut out = Vec::new();
        sub.drain_into(&mut out, usize::MAX);
        let seqs: Vec<u64> = frames(&out)
            .iter()
            .map(|f| match f {
                Frame::Control(Control::Heartbeat { seq }) => *seq,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(seqs.len(), CONTROL_FRAMES);
        assert_eq!(seqs[0], 1, "the oldest went");
    }

    #[test]
    fn notices_go_first_and_flush_wakes_once() {
        let stats = Arc::new(MonitorStats::default());
        let (tx, rx) = commands();
        let mut p = Publisher::new(rx, stats.clone());
        let sub = Arc::new(Subscriber::new(8, stats));
        for monitor in [5, 6] {
            attach(&tx, monitor, &sub);
        }
        p.flush();
        p.publish(&forward(5, &[1]));
        p.notice(&Notice::CallEnded {
            monitor: 6,
            call_id: "c1".into(),
        });
        assert!(sub.pending.load(Ordering::Acquire));
        p.flush();
        assert!(!sub.pending.load(Ordering::Acquire));
        let mut out = Vec::new();
        sub.drain_into(&mut out, 0);
        let got = frames(&out);
        assert_eq!(
            got[0],
            Frame::Control(Control::CallEnded {
                monitor: 6,
                call_id: "c1".into()
            })
        );
        // max_bytes 0: control frames only.
        assert_eq!(got.len(), 1);
        assert!(sub.has_frames());
    }

    #[test]
    fn a_long_packet_grows_its_slot() {
        let stats = Arc::new(MonitorStats::default());
        let (tx, rx) = commands();
        let mut p = Publisher::new(rx, stats.clone());
        let sub = Arc::new(Subscriber::new(1, stats.clone()));
        attach(&tx, 1, &sub);
        p.flush();
        let big = vec![3u8; SLOT_CAPACITY * 2];
        p.publish(&forward(1, &big));
        p.publish(&forward(1, &vec![0u8; MAX_RTP + 1]));
        let mut out = Vec::new();
        sub.drain_into(&mut out, usize::MAX);
        match &frames(&out)[..] {
            [Frame::Media(m)] => assert_eq!(m.rtp, &big[..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(sub.stats().dropped, 1);
    }
}
