//! The supervisor endpoint's media session: the core of its media loop, everything between
//! "an RTP packet of a monitored agent arrived" and "these device frames go to the sound card".
//!
//! Holds one [`MonitorAudio`] per monitored agent (usually one), each with its own
//! [`OutputStage`] and, when recording is on, its own [`Recorder`] fed by a second
//! `MonitorAudio` of the same packets (the *archive* pipeline) that never drops a silent
//! frame to shorten its delay: the live pipeline trades silence for latency, the recording
//! keeps every frame. The agents' device frames are summed (clamped to [-1, 1]) into one
//! output.
//!
//! Contracts:
//! - No clock reads, no sound card, never blocks: every input carries its time, and
//!   [`MediaSession::tick`] hands device frames to a sink closure that takes what it can and
//!   says how much (what it did not take is counted in [`SessionStats::device_dropped`]). The
//!   only I/O is the recorder's WAV files (when a recording directory is given).
//! - Real time: `tick(now)` renders every sample due up to `now`, whether packets came or not;
//!   while an agent is on hold (no packets) its pipeline keeps producing concealment fading to
//!   silence, so the device and the recording stay on the wall clock. Nothing is produced for
//!   an agent before its first packet.
//! - Cushion: before the first device frames (and after [`MediaSession::set_device`], and
//!   after the playout reported new underruns through [`MediaSession::record_playout`]) the
//!   sink gets [`MediaSession::cushion_frames`] of silence first: one device callback plus
//!   [`SessionConfig::lead`], so the device queue holds a whole callback and the jitter of
//!   the media loop's tick never starves it.
//! - Queue level: the shell reports the device queue before each tick
//!   ([`MediaSession::record_playout`]); over each second of steady playout the session keeps
//!   its lowest level ([`SessionStats::queue_low_frames`]: the queue's part of the listen
//!   latency) and holds it at the lead. Two seconds in a row more than a device callback plus
//!   5 ms above (a cushion that landed when the device had just been fed, a device clock
//!   slower than the system's) are trimmed to a callback above the lead: the smaller surplus
//!   is left out of the next silent tick (-50 dBFS); two more than 5 ms below (a faster device clock, a queue sinking towards
//!   an underrun) are padded with silence the same way (one second
//!   with a stall pads nothing, so the next cannot trim it back). A correction waits at most
//!   5 s for silence, then is made on sound. Without it the queue kept whatever surplus the
//!   start left (15 to 25 ms at its lowest on one machine, run to run, for a 20 ms lead) and
//!   a drifting sound card's queue would grow to the cap or underrun again and again.
//! - Calls: [`MediaSession::on_call`] sets the call's payload map and starts a new WAV named
//!   by agent, call id and start time (finishing the agent's previous one);
//!   [`MediaSession::on_call_ended`] lets the recording run on for [`SessionConfig::drain`]
//!   (the jitter-buffered tail of the call) and then finalises it; [`MediaSession::on_stopped`]
//!   finalises everything at once and ends the session.
//! - Never panics on input: what cannot be played is counted by `media::listen`.

use std::path::PathBuf;

use crate::binding::Direction;
use crate::codec::{Codec, PayloadMap};
use crate::media::listen::{LegStats, ListenConfig, ListenStats, MonitorAudio, RenderedPcm};
use crate::media::opus::OPUS_RATE;
use crate::media::output::{self, OutputStage};
use crate::time::{Span, Timestamp};

use super::playout::PlayoutStats;
use super::recorder::Recorder;

/// Settings of a media session.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// The listening pipeline (jitter buffer, layout, volume) of every monitored agent.
    pub listen: ListenConfig,
    /// The device queue's margin for the media loop's own delays: the least the queue holds,
    /// just before a tick refills it (see the module doc; docs/PERFORMANCE.md has the
    /// underruns and latency of several leads on a loaded machine). The silence queued ahead
    /// of the first device frames is this plus one device callback
    /// ([`MediaSession::cushion_frames`]).
    pub lead: Span,
    /// How long a recording runs on after its call ended, for the buffered tail (the jitter
    /// buffer's largest delay plus 60 ms, so 260 ms by default).
    pub drain: Span,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let listen = ListenConfig::default();
        SessionConfig {
            listen,
            lead: Span::from_millis(10),
            drain: Span::from_nanos(listen.jitter.max.as_nanos() + 60_000_000),
        }
    }
}

/// Counters of a session, summed over its agents (and over the pipelines of finished calls).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// RTP packets handed to [`MediaSession::on_media`].
    pub packets: u64,
    /// Audio packets decoded.
    pub decoded: u64,
    /// Packets that came after their playout time (dropped by the jitter buffer).
    pub late: u64,
    /// Duplicate packets (dropped).
    pub duplicates: u64,
    /// Gaps the jitter buffer reported missing (lost or too late), one per frame.
    pub lost: u64,
    /// Samples of audible concealment.
    pub concealed: u64,
    /// Packets that did not parse, or with a payload type that cannot be played.
    pub rejected: u64,
    /// Times a jitter buffer ran dry (end of a talkspurt, hold).
    pub jitter_underruns: u64,
    /// Frames a jitter buffer dropped to shorten its delay within a talkspurt (silent ones,
    /// and the sound frames of `jitter_spliced`).
    pub jitter_shortened: u64,
    /// Sound frames dropped to shorten the delay after a second without a silent one, each
    /// merged into the next with a crossfade.
    pub jitter_spliced: u64,
    /// Times a jitter buffer lengthened its delay within a talkspurt.
    pub jitter_lengthened: u64,
    /// Samples rendered per direction, at the decode rate, over all agents.
    pub rendered: u64,
    /// Device frames handed to the sink (cushion silence included).
    pub device_frames: u64,
    /// Device frames the sink did not take.
    pub device_dropped: u64,
    /// Times a silence cushion was queued (start, device change, after playout underruns).
    pub cushions: u64,
    /// Calls started.
    pub calls: u64,
    /// Recordings finalised (a call's file counts once, even when a consult interrupted it).
    pub recordings: u64,
    /// Recording failures (create, write, finalise); the call keeps playing.
    pub recording_errors: u64,
    /// `on_call_ended` for a call id no agent is on.
    pub unknown_call_ends: u64,
    /// The playout's counters as last reported by the shell (underruns live here).
    pub playout: PlayoutStats,
    /// What is heard now per direction (agent, caller): RMS of the last rendered audio on the
    /// i16 scale, held and falling by [`LEVEL_FALL`] per tick (a meter's ballistics).
    pub levels: [u16; 2],
    /// The jitter buffers' delay now per direction (agent, caller), ms.
    pub delay_ms: [u32; 2],
    /// In-band DTMF digits muted in what was played (never which).
    pub dtmf_muted: u64,
    /// The least the device queue held over the last whole second of steady playout, in
    /// device frames (0 until then): measured before each tick's frames, so at its lowest.
    pub queue_low_frames: u64,
    /// Device frames left out to bring the queue back down to its target (see the module
    /// doc: a device slower than the system clock, or a queue that started too full).
    pub queue_trimmed_frames: u64,
    /// Frames of silence added to bring the queue back up to its target (a faster device).
    pub queue_padded_frames: u64,
}

/// How long the device queue is watched for its lowest level.
const QUEUE_WINDOW: Span = Span::from_millis(1000);
/// How far the queue's lowest level may fall below [`SessionConfig::lead`] uncorrected (and
/// rise above it beyond one device callback).
const QUEUE_SLACK: Span = Span::from_millis(5);
/// How long a queue correction waits for a silent tick before it is made on sound.
const QUEUE_FIX_PATIENCE: Span = Span::from_millis(5000);
/// The loudest mix (RMS, full scale 1.0) a queue correction counts as silence: -50 dBFS.
const QUEUE_FIX_QUIET: f32 = 0.00316;

/// A correction of the device queue's level, in device frames.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum QueueFix {
    /// Leave this many frames out.
    Trim(usize),
    /// Add this many frames of silence.
    Pad(usize),
}

/// How a level meter falls per 10 ms (about 9 dB per 100 ms), whatever the tick.
pub const LEVEL_FALL: f32 = 0.9;

/// The RMS of device frames (full scale 1.0).
fn rms_f32(frames: &[f32]) -> f32 {
    if frames.is_empty() {
        return 0.0;
    }
    (frames.iter().map(|&x| x * x).sum::<f32>() / frames.len() as f32).sqrt()
}

/// The RMS of `pcm` on the i16 scale.
fn rms(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (sum / pcm.len() as f64).sqrt() as f32
}

/// A meter's next reading: the new level, or the old one fallen by `fall`.
fn meter(old: u16, fall: f32, rendered: &[i16], rendered_any: bool) -> u16 {
    let fallen = f32::from(old) * fall;
    if !rendered_any {
        return fallen as u16;
    }
    rms(rendered).max(fallen).min(32767.0) as u16
}

/// Why the session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device format is unusable (rate or channels of zero).
    #[error("media session: {0}")]
    Output(#[from] output::Error),
}

/// Where a call's recording stands after `on_call_ended`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ending {
    /// Ended; the next tick fixes the deadline.
    Requested,
    /// Finalise at the first tick at or after this time.
    At(Timestamp),
}

/// One monitored agent.
struct Monitor {
    agent: String,
    audio: MonitorAudio,
    stage: OutputStage,
    recorder: Option<Recorder>,
    /// The recording's pipeline (with `recorder`).
    archive: Option<MonitorAudio>,
    call: Option<String>,
    /// The current call's payload types (a recording started mid-call needs them).
    payloads: PayloadMap,
    ending: Option<Ending>,
    /// Device frames made but not yet mixed (interleaved).
    frames: Vec<f32>,
    /// True once this agent produced device frames (it then takes part in the mix).
    producing: bool,
    /// Counters of pipelines replaced at a decode-rate change.
    prior: ListenStats,
}

/// The media session of one supervisor endpoint. See the module doc for the contract.
pub struct MediaSession {
    cfg: SessionConfig,
    device_rate: u32,
    device_channels: u16,
    record_dir: Option<PathBuf>,
    monitors: Vec<Monitor>,
    pcm: RenderedPcm,
    archive_pcm: RenderedPcm,
    mix: Vec<f32>,
    silence: Vec<f32>,
    cushion_due: bool,
    last_cushion: Option<Timestamp>,
    /// The last tick's time (the meters fall by the time since).
    last_tick: Option<Timestamp>,
    /// The current second of device-queue watching: its start and lowest level so far.
    queue_window: Option<(Timestamp, u64)>,
    /// What the last second of watching wanted corrected (a correction needs two seconds in
    /// a row that want it, so one stall does not pad and the next second trim).
    queue_verdict: Option<QueueFix>,
    /// A correction of the device queue waiting for a silent tick, and since when.
    queue_fix: Option<(QueueFix, Timestamp)>,
    stats: SessionStats,
    stopped: bool,
}

impl MediaSession {
    /// A session for a device playing `device_channels` at `device_rate` Hz; with
    /// `record_dir` (which must exist) every call is recorded there.
    pub fn new(
        cfg: SessionConfig,
        device_rate: u32,
        device_channels: u16,
        record_dir: Option<PathBuf>,
    ) -> Result<Self, Error> {
        // Validate the format once here, so creating a monitor later cannot fail.
        OutputStage::new(
            cfg.listen.layout,
            cfg.listen.volume,
            device_rate,
            device_channels,
        )?;
        Ok(MediaSession {
            cfg,
            device_rate,
            device_channels,
            record_dir,
            monitors: Vec::new(),
            pcm: RenderedPcm::new(),
            archive_pcm: RenderedPcm::new(),
            mix: Vec::new(),
            silence: Vec::new(),
            cushion_due: true,
            last_cushion: None,
            last_tick: None,
            queue_window: None,
            queue_verdict: None,
            queue_fix: None,
            stats: SessionStats::default(),
            stopped: false,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The device format frames are made for: (rate, channels).
    pub fn device(&self) -> (u32, u16) {
        (self.device_rate, self.device_channels)
    }

    /// The device changed (reopened, maybe with another format): output stages are rebuilt,
    /// frames made for the old device are dropped and a new cushion is queued.
    pub fn set_device(&mut self, rate: u32, channels: u16) -> Result<(), Error> {
        let (layout, volume) = (self.cfg.listen.layout, self.cfg.listen.volume);
        OutputStage::new(layout, volume, rate, channels)?;
        self.device_rate = rate;
        self.device_channels = channels;
        // A new device: its callback size is not known yet.
        self.stats.playout = PlayoutStats::default();
        for m in &mut self.monitors {
            m.stage = OutputStage::new(layout, volume, rate, channels)?;
            m.frames.clear();
            m.producing = false;
        }
        self.cushion_due = true;
        Ok(())
    }

    /// Playback's layout (mono mix or stereo) and volume changed: the output stages are
    /// rebuilt for the same device (a new cushion is queued); recordings keep the layout they
    /// started with.
    pub fn set_output(
        &mut self,
        layout: crate::media::listen::Layout,
        volume: f32,
    ) -> Result<(), Error> {
        let (old_layout, old_volume) = (self.cfg.listen.layout, self.cfg.listen.volume);
        self.cfg.listen.layout = layout;
        self.cfg.listen.volume = volume;
        let r = self.set_device(self.device_rate, self.device_channels);
        if r.is_err() {
            self.cfg.listen.layout = old_layout;
            self.cfg.listen.volume = old_volume;
        }
        r
    }

    /// Recording into `dir` (which must exist), or not (None). Off finalises every recording
    /// now; on records each agent's current call from `now` (a file named with that time) and
    /// every later call.
    pub fn set_recording(&mut self, dir: Option<PathBuf>, now: Timestamp) {
        if dir == self.record_dir {
            return;
        }
        let (layout, listen) = (self.cfg.listen.layout, self.cfg.listen);
        for m in &mut self.monitors {
            if let Some(rec) = m.recorder.as_mut() {
                finish(rec, &mut self.stats);
            }
            m.recorder = dir.clone().map(|d| Recorder::new(d, layout));
            m.archive = dir.as_ref().map(|_| {
                let mut a = MonitorAudio::new(archive_config(listen));
                a.set_payloads(m.payloads);
                a
            });
            if let (Some(rec), Some(call)) = (m.recorder.as_mut(), m.call.as_deref()) {
                if let Err(e) = rec.start_call(&m.agent, call, now) {
                    self.stats.recording_errors += 1;
                    tracing::warn!(error = %e, agent = %m.agent, "recording not started");
                }
            }
        }
        self.record_dir = dir;
    }

    /// Whether calls are recorded.
    pub fn recording(&self) -> bool {
        self.record_dir.is_some()
    }

    /// Device frames of silence queued ahead of audio: the largest device callback the
    /// playout reported plus [`SessionConfig::lead`] at the device rate. The device takes a
    /// whole callback at once, so the queue must hold one and still have the lead's margin
    /// for the loop's delays (with 10.7 ms callbacks that is 60.7 ms; with 33 ms ones, 83 ms:
    /// two callbacks, the old rule, left a 50 ms period's device only 33 ms of margin, and
    /// it underran on a loaded machine).
    pub fn cushion_frames(&self) -> usize {
        self.frames(self.cfg.lead) + self.stats.playout.callback_frames as usize
    }

    /// True after [`MediaSession::on_stopped`].
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Agents with a pipeline, in the order they appeared.
    pub fn agents(&self) -> impl Iterator<Item = &str> {
        self.monitors.iter().map(|m| m.agent.as_str())
    }

    /// The call an agent is on (until its ending drained).
    pub fn call_of(&self, agent: &str) -> Option<&str> {
        self.monitor(agent).and_then(|m| m.call.as_deref())
    }

    /// The WAV file being written for an agent, once it exists.
    pub fn recording_of(&self, agent: &str) -> Option<&std::path::Path> {
        self.monitor(agent)
            .and_then(|m| m.recorder.as_ref())
            .and_then(|r| r.path())
    }

    /// The listening counters of one agent (current pipeline plus replaced ones).
    pub fn agent_stats(&self, agent: &str) -> Option<ListenStats> {
        self.monitor(agent).map(monitor_stats)
    }

    fn monitor(&self, agent: &str) -> Option<&Monitor> {
        self.monitors.iter().find(|m| m.agent == agent)
    }

    fn monitor_index(&mut self, agent: &str) -> usize {
        if let Some(i) = self.monitors.iter().position(|m| m.agent == agent) {
            return i;
        }
        let (layout, volume) = (self.cfg.listen.layout, self.cfg.listen.volume);
        let stage = OutputStage::new(layout, volume, self.device_rate, self.device_channels)
            .expect("device format validated by new/set_device");
        self.monitors.push(Monitor {
            agent: agent.to_string(),
            audio: MonitorAudio::new(self.cfg.listen),
            stage,
            recorder: self
                .record_dir
                .clone()
                .map(|dir| Recorder::new(dir, layout)),
            archive: self
                .record_dir
                .as_ref()
                .map(|_| MonitorAudio::new(archive_config(self.cfg.listen))),
            call: None,
            payloads: PayloadMap::default(),
            ending: None,
            frames: Vec::new(),
            producing: false,
            prior: ListenStats::default(),
        });
        self.monitors.len() - 1
    }

    /// An RTP packet of `agent`'s call, direction `direction`, arrived at `arrival` (on the
    /// same clock as the `now` of [`MediaSession::tick`]). Media of an agent without a call
    /// plays with the static payload types. Ignored after [`MediaSession::on_stopped`].
    pub fn on_media(&mut self, arrival: Timestamp, agent: &str, direction: Direction, rtp: &[u8]) {
        if self.stopped {
            return;
        }
        self.stats.packets += 1;
        let i = self.monitor_index(agent);
        let m = &mut self.monitors[i];
        m.audio.push_rtp(arrival, direction, rtp);
        if let Some(archive) = m.archive.as_mut() {
            archive.push_rtp(arrival, direction, rtp);
        }
    }

    /// `agent` is on a new call `call_id` (started at `started`) whose media uses `payloads`.
    /// When recording, the agent's previous WAV is finalised and a new one named by agent,
    /// call id and start time begins with the next rendered audio; a previous call that had
    /// not ended (the agent went to a consult) is set aside, and coming back to it continues
    /// its WAV. A call whose codecs need another decode rate (Opus vs G.711) gets a fresh
    /// pipeline.
    pub fn on_call(
        &mut self,
        call_id: &str,
        payloads: PayloadMap,
        started: Timestamp,
        agent: &str,
    ) {
        if self.stopped {
            return;
        }
        self.stats.calls += 1;
        let i = self.monitor_index(agent);
        let cfg = self.cfg.listen;
        let m = &mut self.monitors[i];
        let wanted = if payloads.mapped().any(|(_, f)| f.codec == Codec::Opus) {
            OPUS_RATE
        } else {
            crate::media::listen::G711_RATE
        };
        if m.audio.rate().is_some_and(|r| r != wanted) {
            let old = std::mem::replace(&mut m.audio, MonitorAudio::new(cfg));
            add_listen_stats(&mut m.prior, &old.stats());
        }
        if let Some(archive) = m.archive.as_mut() {
            if archive.rate().is_some_and(|r| r != wanted) {
                *archive = MonitorAudio::new(archive_config(cfg));
            }
            archive.set_payloads(payloads);
        }
        m.audio.set_payloads(payloads);
        m.payloads = payloads;
        let unfinished = m.call.is_some() && m.ending.is_none();
        m.call = Some(call_id.to_string());
        m.ending = None;
        if let Some(rec) = m.recorder.as_mut() {
            if unfinished {
                suspend(rec, &mut self.stats);
            } else {
                finish(rec, &mut self.stats);
            }
            if let Err(e) = rec.start_call(agent, call_id, started) {
                self.stats.recording_errors += 1;
                tracing::warn!(error = %e, agent, "recording not started");
            }
        }
    }

    /// Call `call_id` ended: its recording is finalised once [`SessionConfig::drain`] has
    /// been rendered after the next tick (its buffered tail). The agent's pipeline stays, so
    /// the device keeps its timeline.
    pub fn on_call_ended(&mut self, call_id: &str) {
        match self
            .monitors
            .iter_mut()
            .find(|m| m.call.as_deref() == Some(call_id))
        {
            Some(m) => m.ending = m.ending.or(Some(Ending::Requested)),
            None => {
                // A call set aside (held for a consult) that ended without coming back.
                let forgotten = self
                    .monitors
                    .iter_mut()
                    .filter_map(|m| m.recorder.as_mut())
                    .any(|r| r.forget(call_id));
                if !forgotten {
                    self.stats.unknown_call_ends += 1;
                }
            }
        }
    }

    /// Monitoring stopped: every recording is finalised now; later inputs are ignored and
    /// ticks produce nothing.
    pub fn on_stopped(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for m in &mut self.monitors {
            m.call = None;
            m.ending = None;
            if let Some(rec) = m.recorder.as_mut() {
                finish(rec, &mut self.stats);
            }
        }
    }

    /// The playout's counters (call before each tick: the queue is then at its lowest). New
    /// underruns mean the device queue ran dry: a new cushion is queued, at most once per two
    /// leads.
    pub fn record_playout(&mut self, playout: PlayoutStats, now: Timestamp) {
        let more = playout.underruns > self.stats.playout.underruns;
        self.stats.playout = playout;
        let recent = self
            .last_cushion
            .is_some_and(|t| now - t < Span::from_nanos(2 * self.cfg.lead.as_nanos()));
        let producing = self.monitors.iter().any(|m| m.producing);
        if more && !recent && producing {
            self.cushion_due = true;
        }
        let steady = producing && !more && !self.cushion_due && self.queue_fix.is_none();
        self.watch_queue(playout.queued_frames, now, steady);
    }

    /// Tracks the device queue's lowest level per second of steady playout (a second with an
    /// underrun, a cushion or a correction starts over) and, when two seconds in a row stray
    /// from the lead the same way by more than [`QUEUE_SLACK`], plans the correction.
    fn watch_queue(&mut self, queued: u64, now: Timestamp, steady: bool) {
        if !steady {
            self.queue_window = None;
            self.queue_verdict = None;
            return;
        }
        let (start, low) = self.queue_window.get_or_insert((now, queued));
        *low = (*low).min(queued);
        if now - *start < QUEUE_WINDOW {
            return;
        }
        let low = *low as usize;
        self.queue_window = None;
        self.stats.queue_low_frames = low as u64;
        // The cushion is a callback plus the lead, so where it landed against the device's
        // callbacks leaves the queue anywhere up to a callback above the lead: not worth a
        // jump in the timeline. Drift grows past that. Below the lead there is no such phase:
        // a shortfall beyond the slack is the next underrun coming, and is padded.
        let callback = self.stats.playout.callback_frames as usize;
        let (target, slack) = (self.frames(self.cfg.lead), self.frames(QUEUE_SLACK));
        let wanted = if low > target + slack + callback {
            // Down to the top of the allowance, not the lead: after a pad for a stall the
            // queue would otherwise end below where the start left it.
            Some(QueueFix::Trim(low - target - callback))
        } else if low + slack < target {
            Some(QueueFix::Pad(target - low))
        } else {
            None
        };
        // Two seconds in a row must want the same direction; the smaller amount is made.
        let agreed = match (self.queue_verdict, wanted) {
            (Some(QueueFix::Trim(a)), Some(QueueFix::Trim(b))) => Some(QueueFix::Trim(a.min(b))),
            (Some(QueueFix::Pad(a)), Some(QueueFix::Pad(b))) => Some(QueueFix::Pad(a.min(b))),
            _ => None,
        };
        self.queue_verdict = if agreed.is_some() { None } else { wanted };
        if let Some(fix) = agreed {
            self.queue_fix = Some((fix, now));
        }
    }

    /// Applies a planned queue correction to this tick's mix (`n` interleaved samples), on a
    /// silent tick or once [`QUEUE_FIX_PATIENCE`] has passed. Returns the samples of the mix
    /// to hand, and the samples of silence it handed `sink` first.
    fn fix_queue(
        &mut self,
        now: Timestamp,
        n: usize,
        sink: &mut impl FnMut(&[f32]) -> usize,
    ) -> (usize, usize) {
        let Some((fix, since)) = self.queue_fix else {
            return (n, 0);
        };
        let quiet = rms_f32(&self.mix) <= QUEUE_FIX_QUIET;
        if !quiet && now - since < QUEUE_FIX_PATIENCE {
            return (n, 0);
        }
        self.queue_fix = None;
        let channels = self.device_channels.max(1) as usize;
        match fix {
            QueueFix::Trim(frames) => {
                let k = frames.min(n / channels);
                self.stats.queue_trimmed_frames += k as u64;
                if k < frames {
                    self.queue_fix = Some((QueueFix::Trim(frames - k), since));
                }
                (n - k * channels, 0)
            }
            QueueFix::Pad(frames) => {
                self.silence.clear();
                self.silence.resize(frames * channels, 0.0);
                self.stats.queue_padded_frames += frames as u64;
                (n, self.hand(sink, true))
            }
        }
    }

    /// `span` in device frames.
    fn frames(&self, span: Span) -> usize {
        (span.as_nanos() as i128 * self.device_rate as i128 / 1_000_000_000) as usize
    }

    /// Renders everything due up to `now` for every agent, writes the recordings, and hands
    /// the mixed device frames (interleaved, [`MediaSession::device`] format) to `sink`, which
    /// returns how many samples it took. Returns the samples handed to `sink`. Call
    /// periodically (the media loop: every 2 ms); never blocks.
    pub fn tick(&mut self, now: Timestamp, sink: &mut impl FnMut(&[f32]) -> usize) -> usize {
        if self.stopped {
            return 0;
        }
        let mut levels = [0u16; 2];
        let since = self.last_tick.map_or(Span::from_nanos(0), |t| now - t);
        self.last_tick = Some(now);
        let fall = LEVEL_FALL.powf(since.as_nanos().max(0) as f32 / 10_000_000.0);
        for m in &mut self.monitors {
            self.pcm.clear();
            m.audio.render(now, &mut self.pcm);
            self.stats.rendered += self.pcm.len() as u64;
            let any = !self.pcm.is_empty();
            for (i, side) in [&self.pcm.agent, &self.pcm.caller].into_iter().enumerate() {
                levels[i] = levels[i].max(meter(self.stats.levels[i], fall, side, any));
            }
            if let (Some(rec), Some(archive)) = (m.recorder.as_mut(), m.archive.as_mut()) {
                self.archive_pcm.clear();
                archive.render(now, &mut self.archive_pcm);
                if let Err(e) = rec.write(&self.archive_pcm) {
                    self.stats.recording_errors += 1;
                    tracing::warn!(error = %e, agent = %m.agent, "recording stopped");
                    finish(rec, &mut self.stats);
                }
            }
            match m.ending {
                Some(Ending::Requested) => m.ending = Some(Ending::At(now + self.cfg.drain)),
                Some(Ending::At(t)) if now >= t => {
                    m.ending = None;
                    m.call = None;
                    if let Some(rec) = m.recorder.as_mut() {
                        finish(rec, &mut self.stats);
                    }
                }
                _ => {}
            }
            // A stage error is a resampler bug; the agent then stays silent instead of
            // taking the session down.
            if m.stage.process(&self.pcm, &mut m.frames).is_err() {
                m.frames.clear();
            }
            m.producing |= !m.frames.is_empty();
        }
        self.stats.levels = levels;
        let Some(n) = self
            .monitors
            .iter()
            .filter(|m| m.producing)
            .map(|m| m.frames.len())
            .min()
        else {
            return 0;
        };
        let channels = self.device_channels.max(1) as usize;
        let mut handed = 0;
        if self.cushion_due && n > 0 {
            self.cushion_due = false;
            self.queue_fix = None;
            self.queue_window = None;
            self.last_cushion = Some(now);
            self.stats.cushions += 1;
            let frames = self.cushion_frames();
            self.silence.clear();
            self.silence.resize(frames * channels, 0.0);
            handed += self.hand(&mut *sink, true);
        }
        self.mix.clear();
        self.mix.resize(n, 0.0);
        for m in self.monitors.iter_mut().filter(|m| m.producing) {
            for (o, s) in self.mix.iter_mut().zip(m.frames.drain(..n)) {
                *o += s;
            }
        }
        for s in &mut self.mix {
            *s = s.clamp(-1.0, 1.0);
        }
        let (keep, padded) = self.fix_queue(now, n, &mut *sink);
        self.mix.truncate(keep);
        handed += padded;
        handed += self.hand(sink, false);
        handed
    }

    fn hand(&mut self, sink: &mut impl FnMut(&[f32]) -> usize, silence: bool) -> usize {
        let buf = if silence { &self.silence } else { &self.mix };
        if buf.is_empty() {
            return 0;
        }
        let channels = self.device_channels.max(1) as usize;
        let took = sink(buf).min(buf.len());
        self.stats.device_frames += (buf.len() / channels) as u64;
        self.stats.device_dropped += ((buf.len() - took) / channels) as u64;
        buf.len()
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        let mut s = self.stats.clone();
        for m in &self.monitors {
            let l = monitor_stats(m);
            for leg in [&l.agent, &l.caller] {
                add_leg(&mut s, leg);
            }
            let now = m.audio.stats();
            s.delay_ms[0] = s.delay_ms[0].max(now.agent.delay_ms);
            s.delay_ms[1] = s.delay_ms[1].max(now.caller.delay_ms);
        }
        s
    }
}

/// Finalises the agent's recording: the call is over.
fn finish(rec: &mut Recorder, stats: &mut SessionStats) {
    close(rec, stats, Recorder::finish);
}

/// Finalises the agent's recording but keeps it to continue: the call goes on unheard.
fn suspend(rec: &mut Recorder, stats: &mut SessionStats) {
    close(rec, stats, Recorder::suspend);
}

/// Counts a recording once, when its file is first closed (not again after a resume).
fn close(
    rec: &mut Recorder,
    stats: &mut SessionStats,
    how: fn(&mut Recorder) -> Result<(), super::recorder::Error>,
) {
    let new_file = rec.path().is_some() && !rec.resumed();
    match how(rec) {
        Ok(()) if new_file => stats.recordings += 1,
        Ok(()) => {}
        Err(e) => {
            stats.recording_errors += 1;
            tracing::warn!(error = %e, "recording not finalised");
        }
    }
}

fn add_leg(s: &mut SessionStats, l: &LegStats) {
    s.decoded += l.decoded;
    s.late += l.jitter.late;
    s.duplicates += l.jitter.duplicates;
    s.lost += l.jitter.missing;
    s.concealed += l.concealed;
    s.rejected += l.malformed + l.unsupported;
    s.jitter_underruns += l.jitter.underruns;
    s.jitter_shortened += l.jitter.shortened;
    s.jitter_spliced += l.spliced;
    s.jitter_lengthened += l.jitter.lengthened;
    s.dtmf_muted += l.dtmf_muted;
}

fn monitor_stats(m: &Monitor) -> ListenStats {
    let mut s = m.prior.clone();
    add_listen_stats(&mut s, &m.audio.stats());
    s
}

/// The recording pipeline's settings: the live ones without dropping silence.
fn archive_config(live: ListenConfig) -> ListenConfig {
    ListenConfig {
        shorten_on_silence: false,
        ..live
    }
}

fn add_listen_stats(acc: &mut ListenStats, s: &ListenStats) {
    acc.agent += &s.agent;
    acc.caller += &s.caller;
}

#[cfg(test)]
mod tests;
