//! The capture side of the live path: a capture thread fills batches of frames from a
//! [`PacketSource`] and hands them over a bounded crossbeam channel to whoever runs the engine;
//! emptied batches come back on a second channel, so the steady state allocates nothing per
//! packet and takes no lock per packet (one channel operation per batch).
//!
//! Backpressure is a choice of the source: a replay waits for the consumer (nothing is lost). A
//! live NIC waits too, but only up to [`LIVE_SEND_WAIT`]: while it waits it does not read, so its
//! kernel ring (`capture.buffer_mib`, 64 MiB) absorbs an engine stall, and a frame is lost only
//! when that ring overflows (counted by the kernel, pcap_stats). A consumer stalled for longer
//! than that makes the thread drop the batch, counted in [`PipelineStats`], and read on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender};

use super::live::{LiveCapture, LiveError, LiveStats};
use super::replay::Replay;
use super::{Error, Frame, PacketSource, PcapFile};
use crate::packet::LinkType;
use crate::time::Timestamp;

/// Frames per batch at most.
pub const BATCH_FRAMES: usize = 256;
/// A batch is handed over after this long even if not full (audio must not wait).
pub const BATCH_LINGER: Duration = Duration::from_millis(2);
/// Batches in flight.
const CHANNEL_BATCHES: usize = 64;
/// Longest a live source waits for a full channel before it drops the batch.
pub const LIVE_SEND_WAIT: Duration = Duration::from_millis(500);

/// Frames captured together: one shared byte buffer and each frame's range in it.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    frames: Vec<(Timestamp, usize, usize)>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }

    fn push(&mut self, ts: Timestamp, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.frames.push((ts, start, self.bytes.len()));
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames, in capture order.
    pub fn frames(&self) -> impl Iterator<Item = (Timestamp, &[u8])> {
        self.frames
            .iter()
            .map(|&(ts, a, b)| (ts, &self.bytes[a..b]))
    }
}

/// What a source has for the capture thread.
pub enum Poll<'a> {
    /// A frame.
    Frame(Frame<'a>),
    /// Nothing yet: the thread hands over what it holds and waits up to this long.
    Idle(Duration),
    /// The source is finished.
    End,
}

/// A source the capture thread can drive: a file (never idle), a paced replay, a live NIC
/// (polled without blocking, so a quiet link neither holds frames back nor blocks `stop`).
pub trait CaptureSource: Send {
    /// Link type of every frame.
    fn link(&self) -> LinkType;
    /// The next frame, or why there is none.
    fn poll(&mut self) -> Result<Poll<'_>, Error>;
    /// The kernel's counters, for sources that have them (read twice a second).
    fn kernel_stats(&mut self) -> Option<LiveStats> {
        None
    }
}

impl CaptureSource for PcapFile {
    fn link(&self) -> LinkType {
        PacketSource::link_type(self)
    }
    fn poll(&mut self) -> Result<Poll<'_>, Error> {
        Ok(self.next_frame()?.map_or(Poll::End, Poll::Frame))
    }
}

impl CaptureSource for Replay {
    fn link(&self) -> LinkType {
        PacketSource::link_type(self)
    }
    fn poll(&mut self) -> Result<Poll<'_>, Error> {
        Replay::poll(self)
    }
}

/// Longest nap of a live capture thread that found nothing buffered.
const LIVE_IDLE: Duration = Duration::from_millis(1);

impl CaptureSource for LiveCapture {
    fn link(&self) -> LinkType {
        LiveCapture::link_type(self)
    }
    fn poll(&mut self) -> Result<Poll<'_>, Error> {
        match self.poll_frame() {
            Ok(Some(f)) => Ok(Poll::Frame(f)),
            Ok(None) => Ok(Poll::Idle(LIVE_IDLE)),
            // poll_frame only fails with a read error, which names the interface.
            Err(LiveError::Capture(e)) => Err(e),
            Err(e) => Err(Error::Read {
                source_name: "live capture".into(),
                packets: 0,
                message: e.to_string(),
            }),
        }
    }
    fn kernel_stats(&mut self) -> Option<LiveStats> {
        self.stats().ok()
    }
}

/// How often the capture thread copies the kernel's counters.
const KERNEL_STATS_EVERY: Duration = Duration::from_millis(500);

/// Counters shared between the capture thread and its owner.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Frames read from the source.
    pub frames: AtomicU64,
    /// Batches handed over.
    pub batches: AtomicU64,
    /// Frames dropped because the consumer was behind (live sources only).
    pub dropped_frames: AtomicU64,
    /// Frames the kernel saw (pcap_stats ps_recv; live sources only).
    pub kernel_received: AtomicU64,
    /// Frames the kernel dropped because its ring was full (ps_drop).
    pub kernel_dropped: AtomicU64,
    /// Frames the interface dropped (ps_ifdrop).
    pub if_dropped: AtomicU64,
    /// Times a live capture was reopened after its interface failed.
    pub reopens: AtomicU64,
}

/// The consumer's end.
pub struct Pipeline {
    /// Full batches.
    pub batches: Receiver<Batch>,
    recycle: Sender<Batch>,
    /// Link type of every frame.
    pub link: LinkType,
    /// Counters.
    pub stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Pipeline {
    /// Starts a capture thread reading `source` until it ends or [`Pipeline::stop`].
    pub fn spawn<S>(mut source: S, drop_when_full: bool) -> Pipeline
    where
        S: CaptureSource + 'static,
    {
        let (full_tx, full_rx) = bounded::<Batch>(CHANNEL_BATCHES);
        let (free_tx, free_rx) = bounded::<Batch>(CHANNEL_BATCHES + 2);
        let stats = Arc::new(PipelineStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let link = source.link();
        let thread = {
            let stats = stats.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let mut batch = Batch::default();
                    let mut opened = Instant::now();
                    let mut next_kernel_stats = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        match source.poll()? {
                            Poll::Frame(frame) => {
                                if batch.is_empty() {
                                    opened = Instant::now();
                                }
                                batch.push(frame.ts, frame.data);
                                stats.frames.fetch_add(1, Ordering::Relaxed);
                                if batch.len() >= BATCH_FRAMES || opened.elapsed() >= BATCH_LINGER {
                                    batch = hand_over(
                                        batch,
                                        &full_tx,
                                        &free_rx,
                                        &stats,
                                        drop_when_full,
                                    );
                                }
                            }
                            Poll::Idle(wait) => {
                                if !batch.is_empty() {
                                    batch = hand_over(
                                        batch,
                                        &full_tx,
                                        &free_rx,
                                        &stats,
                                        drop_when_full,
                                    );
                                }
                                std::thread::sleep(wait);
                            }
                            Poll::End => break,
                        }
                        if next_kernel_stats.elapsed() >= KERNEL_STATS_EVERY {
                            next_kernel_stats = Instant::now();
                            copy_kernel_stats(&mut source, &stats);
                        }
                    }
                    copy_kernel_stats(&mut source, &stats);
                    if !batch.is_empty() {
                        let _ = full_tx.send(batch);
                        stats.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
                .expect("spawning the capture thread")
        };
        Pipeline {
            batches: full_rx,
            recycle: free_tx,
            link,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// Gives a processed batch back for reuse.
    pub fn recycle(&self, mut batch: Batch) {
        batch.clear();
        let _ = self.recycle.try_send(batch);
    }

    /// Asks the capture thread to stop after its current frame.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the capture thread; returns its error, if it ended with one.
    pub fn join(mut self) -> Result<(), Error> {
        self.stop();
        // Unblock a sender waiting on a full channel.
        while self.batches.try_recv().is_ok() {}
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Read {
                source_name: "capture thread".into(),
                packets: self.stats.frames.load(Ordering::Relaxed),
                message: "panicked".into(),
            }),
            None => Ok(()),
        }
    }
}

fn copy_kernel_stats(source: &mut impl CaptureSource, stats: &PipelineStats) {
    if let Some(k) = source.kernel_stats() {
        stats.kernel_received.store(k.received, Ordering::Relaxed);
        stats.kernel_dropped.store(k.dropped, Ordering::Relaxed);
        stats.if_dropped.store(k.if_dropped, Ordering::Relaxed);
        stats.reopens.store(k.reopened, Ordering::Relaxed);
    }
}

/// Sends a full batch (waiting, or dropping it when the consumer is behind) and returns an
/// empty one, recycled when possible.
fn hand_over(
    batch: Batch,
    full: &Sender<Batch>,
    free: &Receiver<Batch>,
    stats: &PipelineStats,
    drop_when_full: bool,
) -> Batch {
    let n = batch.len() as u64;
    if drop_when_full {
        // Not reading while the channel is full leaves the frames in the kernel ring.
        match full.send_timeout(batch, LIVE_SEND_WAIT) {
            Ok(()) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(SendTimeoutError::Timeout(mut b)) | Err(SendTimeoutError::Disconnected(mut b)) => {
                stats.dropped_frames.fetch_add(n, Ordering::Relaxed);
                b.clear();
                return b;
            }
        }
    } else if full.send(batch).is_ok() {
        stats.batches.fetch_add(1, Ordering::Relaxed);
    }
    free.try_recv().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::PcapFile;
    use crate::engine::{Engine, EngineConfig};
    use std::path::Path;

    #[test]
    fn pipeline_feeds_the_engine_exactly_like_a_direct_read() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/calls-4-vlan100-loss.pcap");
        // Direct.
        let mut direct = Engine::new(EngineConfig::default());
        let mut f = PcapFile::open(&path, None).unwrap();
        let link = f.link_type();
        while let Some(fr) = f.next_frame().unwrap() {
            direct.handle_frame(fr.ts, link, fr.data);
        }
        // Through the capture thread and the channel.
        let p = Pipeline::spawn(PcapFile::open(&path, None).unwrap(), false);
        let mut piped = Engine::new(EngineConfig::default());
        let mut batches = 0;
        while let Ok(b) = p.batches.recv() {
            for (ts, data) in b.frames() {
                piped.handle_frame(ts, p.link, data);
            }
            batches += 1;
            p.recycle(b);
        }
        let stats = p.stats.clone();
        p.join().unwrap();
        assert_eq!(stats.frames.load(Ordering::Relaxed), 3993);
        assert_eq!(stats.dropped_frames.load(Ordering::Relaxed), 0);
        assert!(batches >= 3993 / BATCH_FRAMES);
        assert_eq!(piped.stats().frames, direct.stats().frames);
        assert_eq!(piped.stats().rtp_packets, direct.stats().rtp_packets);
        let a: Vec<_> = direct
            .flows()
            .streams()
            .map(|s| (s.key, s.stats.packets, s.stats.lost()))
            .collect();
        let b: Vec<_> = piped
            .flows()
            .streams()
            .map(|s| (s.key, s.stats.packets, s.stats.lost()))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn a_live_pipeline_whose_consumer_is_behind_drops_and_counts() {
        use crate::capture::replay::{Replay, ReplayOptions};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/calls-4-vlan100-loss.pcap");
        // An endless, unpaced source: far more batches than the channel holds.
        let source = Replay::open(
            &path,
            None,
            ReplayOptions {
                speed: 0.0,
                looped: true,
                ..ReplayOptions::default()
            },
        )
        .unwrap();
        let p = Pipeline::spawn(source, true);
        while p.stats.dropped_frames.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        p.stop();
        // Drain until the capture thread hangs up.
        let received: u64 = p.batches.iter().map(|b| b.len() as u64).sum();
        let s = p.stats.clone();
        p.join().unwrap();
        let dropped = s.dropped_frames.load(Ordering::Relaxed);
        assert!(dropped > 0);
        // Every frame read is either delivered or counted as dropped: nothing vanishes.
        assert_eq!(received + dropped, s.frames.load(Ordering::Relaxed));
    }
}
