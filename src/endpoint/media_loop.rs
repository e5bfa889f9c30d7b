//! The supervisor endpoint's media loop: a thin shell that runs a [`MediaSession`] against a
//! real [`Playout`] on its own thread.
//!
//! Inputs are [`EndpointEvent`]s on a bounded crossbeam channel: the network task only sends
//! (it stamps each packet's arrival with the shared [`MediaClock`]), with `try_send`, counting
//! what a full channel refuses, so it never waits for the media thread ([`EventSender`]: control
//! events a full channel refuses are held in order, not lost). [`run_media`] handles
//! events as they come and ticks the session every [`MediaLoopConfig::tick`] (2 ms) with the
//! clock's `now`; it returns after [`EndpointEvent::Stopped`] or when every sender is gone.
//!
//! Per packet nothing is allocated: the channel is array-backed and preallocated, and a
//! [`EndpointEvent::Media`]'s RTP buffer, once [`MediaSession::on_media`] has read it, goes
//! back to the network task over a second bounded channel (`spent`, with `try_send`; a buffer
//! that does not fit is freed), which refills the monitor client's spare buffers
//! ([`MonitorClient::recycle`](crate::monitor::service_client::MonitorClient::recycle)).
//!
//! Rules of the shell (no media decisions here, those live in the session):
//! - Never blocks on the device and never crashes on it: frames go to the playout ring with a
//!   non-blocking write, capped at [`MediaLoopConfig::max_queue`] queued so latency stays
//!   bounded (what does not fit is counted as dropped by the session).
//! - Device loss (or no device at start): logged once, then a reopen is tried every
//!   [`MediaLoopConfig::reopen_every`] (1 s); meanwhile the session keeps ticking (recording
//!   and timeline continue; device frames count as dropped). A reopened device gets a fresh
//!   cushion. Failed reopens are logged at warn the first time and every 30 s after.
//! - Underruns are logged by [`Playout::write`], at most once every 5 s.
//! - The wall clock is read here only, through [`MediaClock`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::media::{MediaSession, SessionConfig, SessionStats};
use super::playout::{Playout, PlayoutStats};
use crate::binding::Direction;
use crate::codec::PayloadMap;
use crate::media::listen::Layout;
use crate::time::{Span, Timestamp};

/// Control events held while the media channel is full, before the network task gives up on
/// the media loop (it is then stuck, not just behind).
pub const CONTROL_BACKLOG: usize = 64;

/// The network task's side of the media channel. It never waits: media that a full channel
/// refuses is handed back to be counted and recycled; control events (`Call`, `CallEnded`)
/// that do not fit are held in order and sent before anything else, and media that arrives
/// while some are held is refused too, so the media loop sees every event in the order sent.
pub struct EventSender {
    tx: Sender<EndpointEvent>,
    backlog: std::collections::VecDeque<EndpointEvent>,
    /// Control events lost because the backlog was full.
    lost_control: u64,
}

impl EventSender {
    /// Wraps the sending end of the media channel.
    pub fn new(tx: Sender<EndpointEvent>) -> EventSender {
        EventSender {
            tx,
            backlog: std::collections::VecDeque::with_capacity(CONTROL_BACKLOG),
            lost_control: 0,
        }
    }

    /// Sends held control events; true when none is left.
    pub fn flush(&mut self) -> bool {
        while let Some(ev) = self.backlog.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return false;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => self.backlog.clear(),
            }
        }
        true
    }

    /// Queues a media event; hands it back (refused) when the channel is full or control
    /// events are still held.
    pub fn media(&mut self, ev: EndpointEvent) -> Option<EndpointEvent> {
        if !self.flush() {
            return Some(ev);
        }
        self.tx.try_send(ev).err().map(|e| e.into_inner())
    }

    /// Queues a control event; held in order when the channel is full (lost, counted and
    /// logged only when [`CONTROL_BACKLOG`] events are already held).
    pub fn control(&mut self, ev: EndpointEvent) {
        if self.flush() {
            if let Err(crossbeam_channel::TrySendError::Full(ev)) = self.tx.try_send(ev) {
                self.backlog.push_back(ev);
            }
        } else if self.backlog.len() < CONTROL_BACKLOG {
            self.backlog.push_back(ev);
        } else {
            self.lost_control += 1;
            tracing::error!(
                lost = self.lost_control,
                "the media loop takes no events: a control event is lost"
            );
        }
    }

    /// Control events lost so far.
    pub fn lost_control(&self) -> u64 {
        self.lost_control
    }

    /// Shutdown: sends what is held and then `last`, waiting for room (the media loop drains
    /// its channel every tick; the network task has nothing else left to do).
    pub fn finish(&mut self, last: EndpointEvent) {
        for ev in self.backlog.drain(..) {
            if self.tx.send(ev).is_err() {
                return;
            }
        }
        let _ = self.tx.send(last);
    }
}

/// Format assumed while no device is open.
const FALLBACK_FORMAT: (u32, u16) = (48_000, 2);
/// Least time between two warnings about a device that does not come back.
const REOPEN_LOG_EVERY: Duration = Duration::from_secs(30);

/// What the network side tells the media loop.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointEvent {
    /// An RTP packet of a monitored agent's call.
    Media {
        /// When it arrived, on the loop's [`MediaClock`].
        arrival: Timestamp,
        /// The monitored agent.
        agent: Arc<str>,
        /// Agent -> caller or caller -> agent.
        direction: Direction,
        /// The RTP packet (header and payload); returned on the `spent` channel after use.
        rtp: Vec<u8>,
    },
    /// The agent is on a (new) call.
    Call {
        /// The monitored agent.
        agent: Arc<str>,
        /// The call's id (SIP Call-ID or the CTI's id).
        call_id: String,
        /// Payload types of the call's SDP.
        payloads: PayloadMap,
        /// When the call started (names the recording).
        started: Timestamp,
    },
    /// A call ended.
    CallEnded {
        /// The call's id.
        call_id: String,
    },
    /// The playback settings changed (the page's controls): the output device (None: the
    /// system's default), mono mix or stereo, volume.
    Output {
        /// The device's name.
        device: Option<String>,
        /// Mono mix or stereo.
        layout: Layout,
        /// Volume (1.0 as decoded).
        volume: f32,
    },
    /// Recording on (into this directory) or off, from `at` on.
    Recording {
        /// The directory (which exists), or None: off.
        dir: Option<std::path::PathBuf>,
        /// When, on the loop's clock.
        at: Timestamp,
    },
    /// Monitoring stopped: finalise recordings and return.
    Stopped,
}

/// The media clock: wall-clock time (nanoseconds since the epoch, read once) advanced by the
/// monotonic clock, so it never jumps. Arrival stamps and ticks must come from one clock.
#[derive(Copy, Clone, Debug)]
pub struct MediaClock {
    base: Instant,
    base_ts: Timestamp,
}

impl MediaClock {
    /// A clock starting at the current wall-clock time.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        MediaClock {
            base: Instant::now(),
            base_ts: Timestamp::from_nanos(wall),
        }
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The timestamp of instant `t`.
    pub fn at(&self, t: Instant) -> Timestamp {
        let d = if t >= self.base {
            Span::from_nanos(t.duration_since(self.base).as_nanos() as i64)
        } else {
            Span::from_nanos(-(self.base.duration_since(t).as_nanos() as i64))
        };
        self.base_ts + d
    }
}

impl Default for MediaClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of the media loop.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaLoopConfig {
    /// Output device by name (`None`: the default device).
    pub device: Option<String>,
    /// The device period to ask for (`None`: the device's default; see [`Playout::open`]; the
    /// endpoint asks for `device_period_ms`, 8 ms by default).
    pub device_period: Option<Duration>,
    /// The session (listening pipeline, cushion, drain).
    pub session: SessionConfig,
    /// Record every call into this directory (which must exist).
    pub record_dir: Option<PathBuf>,
    /// Tick period (2 ms: the tick adds up to one period to the listen latency; 5 ms gave
    /// the ear 2 to 3 ms more at p50, and a sparser top-up of the device queue).
    pub tick: Duration,
    /// Time between reopen attempts of a lost device (1 s).
    pub reopen_every: Duration,
    /// Most audio queued in the playout ring (the cushion plus 100 ms by default; never less
    /// than the session's cushion plus 100 ms).
    pub max_queue: Duration,
}

impl Default for MediaLoopConfig {
    fn default() -> Self {
        let session = SessionConfig::default();
        MediaLoopConfig {
            device: None,
            device_period: None,
            session,
            record_dir: None,
            tick: Duration::from_millis(2),
            reopen_every: Duration::from_secs(1),
            max_queue: Duration::from_nanos(session.lead.as_nanos().max(0) as u64)
                + Duration::from_millis(100),
        }
    }
}

/// What the media loop reports (published after every tick, returned at the end).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaReport {
    /// The session's counters (with the playout's underruns).
    pub session: SessionStats,
    /// The open device's format, if one is open.
    pub device: Option<(u32, u16)>,
    /// The open device's counters (frames played, underruns).
    pub playout: Option<PlayoutStats>,
    /// Times the device was lost.
    pub device_losses: u64,
    /// Open or reopen attempts that failed.
    pub open_failures: u64,
    /// Ticks run.
    pub ticks: u64,
    /// The output device asked for (None: the system's default).
    pub device_name: Option<String>,
    /// Playback mixed to mono or in stereo.
    pub layout: Layout,
    /// Playback volume.
    pub volume: f32,
    /// Whether calls are recorded.
    pub recording: bool,
}

/// Runs the media loop until [`EndpointEvent::Stopped`] or until every sender is dropped;
/// media buffers go back on `spent`, if given; `status`, if given, gets the report after
/// every tick. Returns the final report.
pub fn run_media(
    cfg: &MediaLoopConfig,
    clock: MediaClock,
    events: &Receiver<EndpointEvent>,
    spent: Option<&Sender<Vec<u8>>>,
    status: Option<&Mutex<MediaReport>>,
) -> MediaReport {
    let mut report = MediaReport::default();
    let mut last_try = Instant::now();
    let mut last_warn: Option<Instant> = None;
    let mut device = cfg.device.clone();
    let mut playout = open(cfg, device.as_deref(), &mut report, &mut last_warn);
    let format = playout
        .as_ref()
        .map_or(FALLBACK_FORMAT, |p| (p.rate(), p.channels()));
    let mut session =
        match MediaSession::new(cfg.session, format.0, format.1, cfg.record_dir.clone()) {
            Ok(s) => s,
            Err(e) => {
                // cpal never reports a zero rate or channel count; keep going on the fallback.
                tracing::error!(error = %e, "device format unusable; using the fallback format");
                playout = None;
                MediaSession::new(
                    cfg.session,
                    FALLBACK_FORMAT.0,
                    FALLBACK_FORMAT.1,
                    cfg.record_dir.clone(),
                )
                .expect("the fallback format is valid")
            }
        };
    let mut next_tick = Instant::now() + cfg.tick;
    let mut stop = false;
    while !stop {
        match events.recv_deadline(next_tick) {
            Ok(EndpointEvent::Output {
                device: wanted,
                layout,
                volume,
            }) => {
                if let Err(e) = session.set_output(layout, volume) {
                    tracing::error!(error = %e, "playback settings refused");
                }
                if wanted != device {
                    // Reopened on the next pass through the device upkeep below.
                    device = wanted;
                    playout = None;
                    last_try = Instant::now() - cfg.reopen_every;
                }
            }
            Ok(ev) => {
                stop = handle_event(&mut session, ev, spent);
                // A busy channel must not starve the ticks.
                if !stop && Instant::now() < next_tick {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stop = true,
        }

        // Device upkeep.
        if playout.as_ref().is_some_and(Playout::is_lost) {
            tracing::warn!("playout device lost; retrying every {:?}", cfg.reopen_every);
            report.device_losses += 1;
            playout = None;
            last_try = Instant::now();
        }
        if playout.is_none() && last_try.elapsed() >= cfg.reopen_every {
            last_try = Instant::now();
            playout = open(cfg, device.as_deref(), &mut report, &mut last_warn);
            if let Some(p) = &playout {
                if let Err(e) = session.set_device(p.rate(), p.channels()) {
                    tracing::error!(error = %e, "reopened device format unusable");
                    playout = None;
                }
            }
        }

        let now = clock.now();
        match playout.as_mut() {
            Some(p) => {
                // The cap never cuts into the cushion (which grows for large device periods).
                let frames = ((cfg.max_queue.as_secs_f64() * p.rate() as f64) as usize)
                    .max(session.cushion_frames() + p.rate() as usize / 10);
                let cap = frames * p.channels() as usize;
                // Before the tick: the queue at its lowest, before this tick's frames.
                session.record_playout(p.stats(), now);
                session.tick(now, &mut |frames: &[f32]| {
                    let room = cap.saturating_sub(p.queued());
                    p.write(&frames[..frames.len().min(room)])
                });
            }
            None => {
                session.tick(now, &mut |_: &[f32]| 0);
            }
        }
        report.ticks += 1;
        fill_report(&mut report, &session, playout.as_ref());
        if let Some(status) = status {
            if let Ok(mut s) = status.lock() {
                s.clone_from(&report);
            }
        }
        next_tick += cfg.tick;
        let late = Instant::now();
        if next_tick < late {
            // Behind (a stalled machine): skip the missed ticks, render catches up by time.
            next_tick = late + cfg.tick;
        }
    }
    session.on_stopped();
    fill_report(&mut report, &session, playout.as_ref());
    if let Some(status) = status {
        if let Ok(mut s) = status.lock() {
            s.clone_from(&report);
        }
    }
    report
}

/// Applies one event to the session (the loop's step for each event it receives) and gives a
/// media event's buffer back on `spent` (never waiting: when `spent` is full or closed the
/// buffer is freed). True when the event ends the loop.
pub fn handle_event(
    session: &mut MediaSession,
    ev: EndpointEvent,
    spent: Option<&Sender<Vec<u8>>>,
) -> bool {
    match ev {
        EndpointEvent::Media {
            arrival,
            agent,
            direction,
            rtp,
        } => {
            session.on_media(arrival, &agent, direction, &rtp);
            if let Some(spent) = spent {
                let _ = spent.try_send(rtp);
            }
        }
        EndpointEvent::Call {
            agent,
            call_id,
            payloads,
            started,
        } => session.on_call(&call_id, payloads, started, &agent),
        EndpointEvent::CallEnded { call_id } => session.on_call_ended(&call_id),
        EndpointEvent::Recording { dir, at } => session.set_recording(dir, at),
        EndpointEvent::Output { layout, volume, .. } => {
            if let Err(e) = session.set_output(layout, volume) {
                tracing::error!(error = %e, "playback settings refused");
            }
        }
        EndpointEvent::Stopped => return true,
    }
    false
}

fn fill_report(report: &mut MediaReport, session: &MediaSession, playout: Option<&Playout>) {
    report.session = session.stats();
    report.layout = session.config().listen.layout;
    report.volume = session.config().listen.volume;
    report.recording = session.recording();
    report.device = playout.map(|p| (p.rate(), p.channels()));
    report.playout = playout.map(Playout::stats);
}

fn open(
    cfg: &MediaLoopConfig,
    device: Option<&str>,
    report: &mut MediaReport,
    last_warn: &mut Option<Instant>,
) -> Option<Playout> {
    report.device_name = device.map(str::to_owned);
    match Playout::open(device, cfg.device_period) {
        Ok(p) => {
            *last_warn = None;
            Some(p)
        }
        Err(e) => {
            report.open_failures += 1;
            if last_warn.is_none_or(|t| t.elapsed() >= REOPEN_LOG_EVERY) {
                tracing::warn!(error = %e, "cannot open the playout device; retrying");
                *last_warn = Some(Instant::now());
            } else {
                tracing::debug!(error = %e, "playout device still unavailable");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(seq: u8) -> EndpointEvent {
        EndpointEvent::Media {
            arrival: Timestamp::from_nanos(0),
            agent: Arc::from("5001"),
            direction: Direction::FromAgent,
            rtp: vec![seq],
        }
    }

    fn ended(call: &str) -> EndpointEvent {
        EndpointEvent::CallEnded {
            call_id: call.into(),
        }
    }

    #[test]
    fn a_full_channel_holds_control_events_in_order_and_refuses_media_meanwhile() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut events = EventSender::new(tx);
        assert_eq!(events.media(media(1)), None);
        // Full: media comes back, a control event is held without waiting.
        assert_eq!(events.media(media(2)), Some(media(2)));
        events.control(ended("a"));
        events.control(ended("b"));
        // Room for one, but "a" and "b" are held: media must not overtake them.
        assert_eq!(rx.try_recv().unwrap(), media(1));
        assert_eq!(events.media(media(3)), Some(media(3)));
        // That call sent "a" (the one free place); "b" is still held.
        assert_eq!(rx.try_recv().unwrap(), ended("a"));
        assert!(rx.try_recv().is_err());
        assert!(events.flush());
        assert_eq!(rx.try_recv().unwrap(), ended("b"));
        assert_eq!(events.media(media(4)), None);
        assert_eq!(rx.try_recv().unwrap(), media(4));
        assert_eq!(events.lost_control(), 0);
    }

    #[test]
    fn a_stuck_media_loop_loses_control_events_beyond_the_backlog_counted() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut events = EventSender::new(tx);
        for i in 0..CONTROL_BACKLOG + 3 {
            events.control(ended(&i.to_string()));
        }
        // One in the channel, CONTROL_BACKLOG held, two lost.
        assert_eq!(events.lost_control(), 2);
        let drain = std::thread::spawn(move || rx.iter().collect::<Vec<_>>());
        events.finish(EndpointEvent::Stopped);
        drop(events);
        let got = drain.join().unwrap();
        assert_eq!(got.len(), CONTROL_BACKLOG + 2);
        assert_eq!(got[0], ended("0"));
        assert_eq!(got[CONTROL_BACKLOG], ended(&CONTROL_BACKLOG.to_string()));
        assert_eq!(got.last(), Some(&EndpointEvent::Stopped));
    }
}
