//! The per-monitor listening pipeline of the supervisor endpoint: RTP packets of both
//! directions of a monitored call in, time-aligned PCM of both directions out.
//!
//! Contracts: sans-IO, no clock reads, no device: every input carries its time (`arrival`,
//! `now`) and the caller lends the output buffers. Never panics on input: a packet that does
//! not parse as RTP, or whose payload is malformed, is counted in [`LegStats::malformed`]; a
//! payload type that is unknown or not decodable is counted in [`LegStats::unsupported`].
//!
//! Per direction (a *leg*: [`Direction::FromAgent`] is the agent, [`Direction::ToAgent`] the
//! caller): the adaptive [`JitterBuffer`] (a new SSRC restarts it), then by payload type
//! - G.711 mu-law/A-law: the bit-exact tables of [`super::g711`];
//! - G.722 ([`super::g722`], 16 kHz) and G.729 ([`super::g729`], Annex B SID frames giving
//!   comfort noise at their level until the next packet);
//! - Opus: [`super::opus`] at the decode rate, libopus's concealment for gaps;
//! - lost G.711, G.722 and G.729 frames: [`super::conceal::Concealer`], pitch-period repetition at full level
//!   for 10 ms, fading linearly to silence at 60 ms;
//! - RFC 3389 comfort noise: white noise at the packet's level until the next packet;
//! - RFC 4733 telephone events: never decoded; the event's span (from its RTP timestamp and
//!   duration) is silence, including audio packets that overlap it (DTMF masking).
//!
//! The decode rate is fixed by the first packet: 48 kHz when it is Opus or the payload map
//! names Opus, 16 kHz for G.722, 8 kHz otherwise. A narrower leg is upsampled by linear
//! interpolation (G.711 x6 in a 48 kHz session); an Opus leg in an 8 kHz session is decoded
//! by libopus at 8 kHz; G.722 in an 8 kHz session is halved.
//!
//! Timeline: sample `k` of the output plays at `origin + k / rate`, where `origin` is the
//! arrival of the first packet. [`MonitorAudio::render`] appends every sample `k` with
//! `origin + k / rate <= now` to both directions, so the two stay aligned sample for sample.
//! A jitter-buffer item whose playout time is `t` lands at the first sample at or after `t`;
//! an item within 2 ms of where the previous one ended is butted against it (so a clean
//! stream is rendered gap-free and equals the plain decode of its payloads), a later one
//! leaves a gap that is concealed, an earlier one (the buffer shortened its delay) cuts the
//! queued tail. Within a talkspurt the jitter buffer shortens its delay only by a frame the
//! pipeline drops for it ([`JitterBuffer::shorten_by_popped`]). The pipeline prefers silence
//! (RMS <= -50 dBFS): such a frame is simply left out. When the delay could shrink but a
//! second of sound ([`SPLICE_PATIENCE_MS`]) brought no silent frame (a call with a steady
//! background), it drops a sound frame and merges it into the next one: the two are aligned
//! within 2 ms where they are most alike (for a voiced or tonal signal, a pitch period) and
//! crossfaded over half a frame, so nothing jumps; the few samples of alignment stay within
//! the butting tolerance. [`LegStats::spliced`] counts those. The jitter buffer is
//! polled 2 ms ahead of `now` so rounding never starves a clean stream. When a leg has nothing to play it conceals (after audio), continues comfort
//! noise (after CN) or plays silence.

use std::collections::VecDeque;

use super::conceal::{ComfortNoise, Concealer, CONCEAL_MAX_MS};
use super::dtmf::DtmfMuter;
use super::g711;
use super::g722::{G722Decoder, G722_RATE};
use super::g729::{G729Decoder, G729_RATE};
use super::jitter_buffer::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::opus::{OpusDecoder, OPUS_RATE};
use crate::binding::Direction;
use crate::codec::{Codec, PayloadMap};
use crate::packet::rtp::RtpPacket;
use crate::time::{Span, Timestamp};

/// The decode rate of G.711 sessions.
pub const G711_RATE: u32 = 8000;
/// How far ahead of `now` the jitter buffers are polled.
const LOOKAHEAD: Span = Span::from_millis(2);
/// An item this close to the end of the previous one continues it without a gap.
const ALIGN_TOLERANCE_MS: i64 = 2;
/// The loudest RMS of a frame the jitter buffer may drop to shorten its delay (-50 dBFS).
const SILENT_RMS: i64 = 104;
/// How long the delay may wait for a silent frame to drop before it drops a sound frame with
/// a crossfade instead (ms of sound offered while a shrink was possible).
pub const SPLICE_PATIENCE_MS: usize = 1000;
/// Frame length assumed before the first packet says otherwise.
const DEFAULT_FRAME_MS: usize = 20;

/// Why a packet was not played (the last one is kept in [`LegStats::last_rejected`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The RTP header did not parse.
    #[error("malformed RTP packet: {0}")]
    Rtp(crate::packet::Error),
    /// A comfort-noise payload without its level byte.
    #[error("comfort-noise payload is empty")]
    EmptyComfortNoise,
    /// A telephone-event payload shorter than its 4 bytes.
    #[error("telephone-event payload has {0} bytes, needs 4")]
    ShortTelephoneEvent(usize),
    /// A payload type neither static nor in the payload map.
    #[error("unknown payload type {0}")]
    UnknownPayloadType(u8),
    /// A codec this pipeline does not decode.
    #[error("cannot play {0} (G.711, G.722, G.729, Opus, CN and telephone-event only)")]
    Unsupported(Codec),
    /// libopus refused a packet or could not start.
    #[error("opus decoding failed")]
    Opus,
    /// spandsp or libbcg729 could not start, or a G.729 payload has a wrong length.
    #[error("G.722/G.729 decoding failed")]
    Narrowband,
}

/// Channel layout of what the supervisor hears.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Both directions mixed into one channel.
    #[default]
    Mono,
    /// Agent left, caller right.
    Stereo,
}

impl Layout {
    /// Channels of this layout.
    pub fn channels(self) -> u16 {
        match self {
            Layout::Mono => 1,
            Layout::Stereo => 2,
        }
    }
}

/// Settings of one monitor's listening pipeline.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ListenConfig {
    /// Jitter buffer (its `clock_rate` is replaced by each stream's RTP clock).
    pub jitter: JitterConfig,
    /// Mono mix or stereo (used by the output stage and the recorder).
    pub layout: Layout,
    /// Linear gain applied by the output stage (1.0: unchanged).
    pub volume: f32,
    /// Let the jitter buffers shorten their delay within a talkspurt by dropping a silent
    /// frame, or after [`SPLICE_PATIENCE_MS`] of sound without one, a sound frame merged into
    /// the next (true: live playout). A recording turns it off so it holds every frame.
    pub shorten_on_silence: bool,
    /// Replace in-band DTMF digits (and a guard around them) by silence ([`super::dtmf`]),
    /// delaying both directions by [`super::dtmf::DELAY_MS`]. Off here; the endpoint turns it
    /// on from its configuration (`[privacy] mute_dtmf`, on by default).
    pub mute_dtmf: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            jitter: JitterConfig::default(),
            layout: Layout::Mono,
            volume: 1.0,
            shorten_on_silence: true,
            mute_dtmf: false,
        }
    }
}

/// PCM of both directions at one rate; `agent[i]` and `caller[i]` play at the same instant.
/// The caller owns and reuses it: [`MonitorAudio::render`] appends, the consumer clears.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderedPcm {
    /// Sample rate (0 until the first render after the first packet).
    pub rate: u32,
    /// What the agent says.
    pub agent: Vec<i16>,
    /// What the caller says (what the agent hears).
    pub caller: Vec<i16>,
}

impl RenderedPcm {
    /// Empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples per direction.
    pub fn len(&self) -> usize {
        self.agent.len().min(self.caller.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties both directions, keeping capacity and rate.
    pub fn clear(&mut self) {
        self.agent.clear();
        self.caller.clear();
    }
}

/// Counters of one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Jitter-buffer counters, summed over the direction's streams (SSRCs).
    pub jitter: JitterStats,
    /// Audio packets decoded.
    pub decoded: u64,
    /// Samples of audible concealment (loss and underruns; silence after the fade not counted).
    pub concealed: u64,
    /// Comfort-noise packets played.
    pub cn: u64,
    /// Telephone-event packets (never decoded; their span is silence).
    pub dtmf: u64,
    /// Packets or payloads that did not parse.
    pub malformed: u64,
    /// Packets with an unknown or undecodable payload type.
    pub unsupported: u64,
    /// Packets libopus refused (concealed instead).
    pub decode_errors: u64,
    /// Times the SSRC changed (a new stream).
    pub ssrc_changes: u64,
    /// Times an item started before the end of queued audio (the delay shrank) and cut it.
    pub realigned: u64,
    /// Sound frames dropped to shorten the delay, merged into the next with a crossfade.
    pub spliced: u64,
    /// Why the last rejected packet was rejected.
    pub last_rejected: Option<Error>,
    /// The jitter buffer's delay now, ms (a gauge: the latest, not a sum).
    pub delay_ms: u32,
    /// In-band DTMF digits muted (never which).
    pub dtmf_muted: u64,
}

impl std::ops::AddAssign<&LegStats> for LegStats {
    /// Sums the counters; the last rejection is `b`'s when it has one.
    fn add_assign(&mut self, b: &LegStats) {
        self.jitter += &b.jitter;
        self.decoded += b.decoded;
        self.concealed += b.concealed;
        self.cn += b.cn;
        self.dtmf += b.dtmf;
        self.malformed += b.malformed;
        self.unsupported += b.unsupported;
        self.decode_errors += b.decode_errors;
        self.ssrc_changes += b.ssrc_changes;
        self.realigned += b.realigned;
        self.spliced += b.spliced;
        self.dtmf_muted += b.dtmf_muted;
        if b.last_rejected.is_some() {
            self.last_rejected = b.last_rejected;
        }
        self.delay_ms = b.delay_ms;
    }
}

/// Counters of both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenStats {
    /// The agent's direction.
    pub agent: LegStats,
    /// The caller's direction.
    pub caller: LegStats,
}

/// An RFC 3389 comfort-noise payload: a level byte, then optional spectral coefficients.
struct CnPayload<'a> {
    buf: &'a [u8],
}

impl<'a> CnPayload<'a> {
    fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        if buf.is_empty() {
            return Err(Error::EmptyComfortNoise);
        }
        Ok(CnPayload { buf })
    }

    /// Noise level in -dBov (0..=127).
    fn level(&self) -> u8 {
        self.buf[0] & 0x7F
    }
}

/// An RFC 4733 telephone-event payload: event, E|R|volume, duration (16 bits).
struct EventPayload<'a> {
    buf: &'a [u8],
}

mod event_field {
    pub(super) const DURATION: std::ops::Range<usize> = 2..4;
    pub(super) const LEN: usize = DURATION.end;
}

impl<'a> EventPayload<'a> {
    fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        if buf.len() < event_field::LEN {
            return Err(Error::ShortTelephoneEvent(buf.len()));
        }
        Ok(EventPayload { buf })
    }

    /// Duration so far, in RTP clock units.
    fn duration(&self) -> u16 {
        let d = &self.buf[event_field::DURATION];
        u16::from_be_bytes([d[0], d[1]])
    }
}

/// What a leg plays when it has nothing decoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Fill {
    Silence,
    /// Pitch-period repetition of the last decoded G.711, G.722 or G.729 audio.
    ConcealPcm,
    ConcealOpus,
    Noise,
}

/// A telephone event's span on the output timeline.
#[derive(Copy, Clone, Debug)]
struct EventSpan {
    ts: u32,
    start: i64,
    end: i64,
}

/// One direction.
struct Leg {
    jitter_cfg: JitterConfig,
    shorten_on_silence: bool,
    jb: JitterBuffer,
    prior: JitterStats,
    ssrc: Option<u32>,
    /// RTP clock of the current stream.
    clock: u32,
    /// Decoded samples not yet rendered; `pending[0]` is output sample `emitted`.
    pending: VecDeque<i16>,
    fill: Fill,
    plc: Option<Concealer>,
    cn: ComfortNoise,
    opus: Option<OpusDecoder>,
    g722: Option<G722Decoder>,
    g729: Option<G729Decoder>,
    opus_run: usize,
    /// Samples of Opus concealment before silence ([`CONCEAL_MAX_MS`] at the decode rate).
    opus_max: usize,
    scratch: Vec<i16>,
    narrow: Vec<i16>,
    up_prev: i16,
    frame_len: usize,
    /// RTP timestamp and output index of the last placed item.
    anchor: Option<(u32, i64)>,
    event: Option<EventSpan>,
    /// A sound frame dropped to shorten the delay, to be crossfaded into the next packet.
    spliced: Vec<i16>,
    /// Samples of sound offered since a shrink became possible without a silent frame.
    sound_waited: usize,
    /// In-band DTMF muting of what this direction renders (with `mute_dtmf`).
    muter: Option<DtmfMuter>,
    stats: LegStats,
}

impl Leg {
    fn new(jitter_cfg: JitterConfig, shorten_on_silence: bool) -> Self {
        Leg {
            jitter_cfg,
            shorten_on_silence,
            jb: JitterBuffer::new(jitter_cfg),
            prior: JitterStats::default(),
            ssrc: None,
            clock: jitter_cfg.clock_rate,
            pending: VecDeque::new(),
            fill: Fill::Silence,
            plc: None,
            cn: ComfortNoise::default(),
            opus: None,
            g722: None,
            g729: None,
            opus_run: 0,
            opus_max: 0,
            scratch: Vec::new(),
            narrow: Vec::new(),
            up_prev: 0,
            frame_len: 0,
            anchor: None,
            event: None,
            spliced: Vec::new(),
            sound_waited: 0,
            muter: None,
            stats: LegStats::default(),
        }
    }

    fn reject(&mut self, e: Error) {
        match e {
            Error::Rtp(_) | Error::EmptyComfortNoise | Error::ShortTelephoneEvent(_) => {
                self.stats.malformed += 1
            }
            Error::UnknownPayloadType(_) | Error::Unsupported(_) => self.stats.unsupported += 1,
            Error::Opus | Error::Narrowband => self.stats.decode_errors += 1,
        }
        self.stats.last_rejected = Some(e);
    }

    /// A new stream (SSRC) with RTP clock `clock`.
    fn restart(&mut self, ssrc: u32, clock: u32) {
        if self.ssrc.is_some() {
            self.stats.ssrc_changes += 1;
        }
        self.prior += self.jb.stats();
        self.jb = JitterBuffer::new(JitterConfig {
            clock_rate: clock,
            ..self.jitter_cfg
        });
        self.ssrc = Some(ssrc);
        self.clock = clock;
        self.opus = None;
        self.g722 = None;
        self.g729 = None;
        self.anchor = None;
        self.event = None;
        self.spliced.clear();
        self.sound_waited = 0;
    }

    fn jitter_stats(&self) -> JitterStats {
        let mut s = self.prior.clone();
        s += self.jb.stats();
        s
    }

    /// RTP units of this stream -> output samples.
    fn to_samples(&self, units: i64, rate: u32) -> i64 {
        units * rate as i64 / self.clock.max(1) as i64
    }

    /// A telephone-event packet: its span becomes silence.
    fn note_event(&mut self, ts: u32, payload: &[u8], rate: u32, emitted: i64) {
        let ev = match EventPayload::new_checked(payload) {
            Ok(ev) => ev,
            Err(e) => return self.reject(e),
        };
        self.stats.dtmf += 1;
        let Some((anchor_ts, anchor_idx)) = self.anchor else {
            // No audio placed yet in this stream: there is nothing to silence.
            return;
        };
        let start = anchor_idx + self.to_samples(ts.wrapping_sub(anchor_ts) as i32 as i64, rate);
        let len = self
            .to_samples(ev.duration() as i64, rate)
            .max(self.frame_len(rate) as i64);
        let end = match self.event {
            Some(e) if e.ts == ts => e.end.max(start + len),
            _ => start + len,
        };
        self.event = Some(EventSpan { ts, start, end });
        // Mask audio already queued inside the span.
        let from = (start - emitted).max(0) as usize;
        let to = ((end - emitted).max(0) as usize).min(self.pending.len());
        for s in self.pending.range_mut(from.min(to)..to) {
            *s = 0;
        }
    }

    fn frame_len(&self, rate: u32) -> usize {
        if self.frame_len > 0 {
            self.frame_len
        } else {
            rate as usize * DEFAULT_FRAME_MS / 1000
        }
    }

    /// Pops every item due by `horizon` and queues its samples.
    fn pull(
        &mut self,
        horizon: Timestamp,
        origin: Timestamp,
        rate: u32,
        emitted: i64,
        map: &PayloadMap,
    ) {
        while let Some(due) = self.jb.poll_timeout() {
            if due > horizon {
                break;
            }
            let Some(item) = self.jb.pop(horizon) else {
                // Ran dry: the jitter buffer re-anchors on the next packet.
                continue;
            };
            let at = ceil_index(due - origin, rate);
            self.place(item, at, rate, emitted, map);
        }
    }

    /// Queues one jitter-buffer item scheduled at output sample `at`.
    fn place(&mut self, item: Playout, at: i64, rate: u32, emitted: i64, map: &PayloadMap) {
        let tol = rate as i64 * ALIGN_TOLERANCE_MS / 1000;
        let write = emitted + self.pending.len() as i64;
        let mut skip = 0usize;
        if at > write + tol {
            self.scratch.clear();
            self.synth(write, (at - write) as usize);
            self.pending.extend(self.scratch.iter().copied());
        } else if at < write - tol {
            self.stats.realigned += 1;
            self.pending.truncate((at - emitted).max(0) as usize);
            skip = (emitted - at).max(0) as usize;
        }
        let start = emitted + self.pending.len() as i64 - skip as i64;
        self.scratch.clear();
        match item {
            Playout::Packet { ts, pt, payload } => {
                self.anchor = Some((ts as u32, start));
                self.decode(pt, &payload, start, rate, map);
                self.jb.recycle(payload);
                if !self.spliced.is_empty() {
                    self.merge_spliced(rate);
                }
                if self.shorten_on_silence && self.jb.can_shorten_by_popped() {
                    let silent = is_silent(&self.scratch);
                    if silent || self.sound_waited >= rate as usize * SPLICE_PATIENCE_MS / 1000 {
                        // Dropped to shorten the delay: the next packet is due now and goes
                        // here (a sound frame is merged into it).
                        self.jb.shorten_by_popped();
                        self.sound_waited = 0;
                        if !silent {
                            std::mem::swap(&mut self.spliced, &mut self.scratch);
                            self.stats.spliced += 1;
                        }
                        self.scratch.clear();
                        return;
                    }
                    self.sound_waited += self.scratch.len();
                }
            }
            Playout::Missing { ts, samples } => {
                // A spliced frame has nothing to merge into: concealment continues from it.
                self.spliced.clear();
                self.anchor = Some((ts as u32, start));
                let n = self.to_samples(samples as i64, rate).max(0) as usize;
                self.synth(start, n);
            }
        }
        self.mask_event(start);
        let skip = skip.min(self.scratch.len());
        self.pending.extend(self.scratch[skip..].iter().copied());
    }

    /// Merges the spliced frame into the packet just decoded into `scratch`: the two are
    /// aligned where they are most alike (the spliced frame's start, or the packet's, moved by
    /// up to the butting tolerance) and crossfaded linearly over half a frame. `scratch`
    /// becomes the spliced frame's lead-in, the crossfade, then the rest of the packet.
    fn merge_spliced(&mut self, rate: u32) {
        let (old, new) = (&self.spliced, &self.scratch);
        let shift = (rate as usize * ALIGN_TOLERANCE_MS as usize / 1000)
            .min(old.len() / 4)
            .min(new.len() / 4);
        let len = (old.len().min(new.len()) / 2)
            .min(old.len() - shift)
            .min(new.len() - shift);
        if len == 0 {
            self.spliced.clear();
            return;
        }
        // The relative shift with the highest normalised correlation over the crossfade.
        let (mut best, mut best_score) = ((0usize, 0usize), f64::MIN);
        for k in -(shift as i64)..=shift as i64 {
            let (a, b) = (k.max(0) as usize, (-k).max(0) as usize);
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for (x, y) in old[a..a + len].iter().zip(&new[b..b + len]) {
                let (x, y) = (*x as f64, *y as f64);
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            let score = ab / (aa * bb).sqrt().max(1.0);
            if score > best_score {
                (best, best_score) = ((a, b), score);
            }
        }
        let (a, b) = best;
        // Build the merged frame in `spliced` (reused), then swap it into `scratch`.
        let merged_len = a + new.len() - b;
        let mut merged = std::mem::take(&mut self.spliced);
        merged.resize(merged_len.max(merged.len()), 0);
        for n in 0..len {
            let w = (n as f64 + 0.5) / len as f64;
            let x = merged[a + n] as f64 * (1.0 - w) + self.scratch[b + n] as f64 * w;
            merged[a + n] = x.round() as i16;
        }
        merged[a + len..merged_len].copy_from_slice(&self.scratch[b + len..]);
        merged.truncate(merged_len);
        std::mem::swap(&mut self.scratch, &mut merged);
        merged.clear();
        self.spliced = merged;
    }

    /// Zeroes what `scratch` (starting at output sample `start`) holds inside the event span.
    fn mask_event(&mut self, start: i64) {
        if let Some(ev) = self.event {
            let end = start + self.scratch.len() as i64;
            let from = (ev.start.max(start) - start) as usize;
            let to = (ev.end.min(end) - start).max(0) as usize;
            if from < to {
                self.scratch[from..to].fill(0);
            }
        }
    }

    /// Decodes one packet into `scratch` at the session rate.
    fn decode(&mut self, pt: u8, payload: &[u8], start: i64, rate: u32, map: &PayloadMap) {
        let codec = map.get(pt).map(|f| f.codec);
        match codec {
            Some(c @ (Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::G729)) => {
                let Some(native) = self.decode_narrow(c, payload) else {
                    self.reject(Error::Narrowband);
                    return self.synth(start, self.frame_len(rate));
                };
                resample(
                    &self.narrow,
                    native,
                    rate,
                    &mut self.up_prev,
                    &mut self.scratch,
                );
                self.plc
                    .get_or_insert_with(|| Concealer::new(rate))
                    .observe(&self.scratch);
                self.audio_decoded(Fill::ConcealPcm);
                if c == Codec::G729 && payload.len() % 10 == 2 {
                    // An Annex B SID frame: comfort noise at its level until the next packet.
                    self.stats.cn += 1;
                    self.cn
                        .set_level(dbov(&self.narrow[self.narrow.len().saturating_sub(80)..]));
                    self.fill = Fill::Noise;
                }
            }
            Some(Codec::Opus) => {
                if self.opus.is_none() {
                    self.opus = OpusDecoder::with_rate(rate).ok();
                    self.opus_max = rate as usize * CONCEAL_MAX_MS as usize / 1000;
                }
                let Some(dec) = self.opus.as_mut() else {
                    self.reject(Error::Opus);
                    return self.synth(start, self.frame_len(rate));
                };
                match dec.decode(payload, &mut self.scratch) {
                    Ok(_) => self.audio_decoded(Fill::ConcealOpus),
                    Err(_) => {
                        self.reject(Error::Opus);
                        self.scratch.clear();
                        self.synth(start, self.frame_len(rate));
                    }
                }
            }
            Some(Codec::Cn) => match CnPayload::new_checked(payload) {
                Ok(cn) => {
                    self.stats.cn += 1;
                    self.cn.set_level(cn.level());
                    self.fill = Fill::Noise;
                    let n = self.frame_len(rate);
                    self.cn.fill(n, &mut self.scratch);
                }
                Err(e) => {
                    self.reject(e);
                    self.synth(start, self.frame_len(rate));
                }
            },
            // Only decodable payload types are pushed; a payload map changed since is silence.
            _ => {
                self.reject(Error::UnknownPayloadType(pt));
                self.synth(start, self.frame_len(rate));
            }
        }
    }

    /// Decodes a G.711, G.722 or G.729 payload into `narrow`; returns its rate (None: the
    /// decoder could not start or the payload is malformed).
    fn decode_narrow(&mut self, codec: Codec, payload: &[u8]) -> Option<u32> {
        self.narrow.clear();
        Some(match codec {
            Codec::Pcmu => {
                g711::decode_ulaw(payload, &mut self.narrow);
                G711_RATE
            }
            Codec::Pcma => {
                g711::decode_alaw(payload, &mut self.narrow);
                G711_RATE
            }
            Codec::G722 => {
                if self.g722.is_none() {
                    self.g722 = G722Decoder::new().ok();
                }
                self.g722.as_mut()?.decode(payload, &mut self.narrow);
                G722_RATE
            }
            _ => {
                if self.g729.is_none() {
                    self.g729 = G729Decoder::new().ok();
                }
                self.g729.as_mut()?.decode(payload, &mut self.narrow).ok()?;
                G729_RATE
            }
        })
    }

    fn audio_decoded(&mut self, fill: Fill) {
        self.stats.decoded += 1;
        self.fill = fill;
        self.opus_run = 0;
        if !self.scratch.is_empty() {
            self.frame_len = self.scratch.len();
        }
    }

    /// Appends `n` samples of whatever plays without audio, starting at output sample `at`.
    fn synth(&mut self, at: i64, n: usize) {
        let mut i = 0usize;
        while i < n {
            let here = at + i as i64;
            let mut k = n - i;
            if let Some(ev) = self.event {
                if here >= ev.start && here < ev.end {
                    let k = k.min((ev.end - here) as usize);
                    self.scratch.resize(self.scratch.len() + k, 0);
                    self.fill = Fill::Silence;
                    i += k;
                    continue;
                }
                if here < ev.start {
                    k = k.min((ev.start - here) as usize);
                }
            }
            match self.fill {
                Fill::Silence => self.scratch.resize(self.scratch.len() + k, 0),
                Fill::Noise => self.cn.fill(k, &mut self.scratch),
                Fill::ConcealPcm => {
                    let audible = match self.plc.as_mut() {
                        Some(plc) => plc.conceal(k, &mut self.scratch),
                        None => {
                            self.scratch.resize(self.scratch.len() + k, 0);
                            0
                        }
                    };
                    self.stats.concealed += audible as u64;
                }
                Fill::ConcealOpus => {
                    let m = k.min(self.opus_max.saturating_sub(self.opus_run));
                    let before = self.scratch.len();
                    let ok = match self.opus.as_mut() {
                        Some(dec) => dec.conceal(m, &mut self.scratch).is_ok(),
                        None => false,
                    };
                    if !ok {
                        self.scratch.truncate(before);
                        self.scratch.resize(before + m, 0);
                    }
                    self.scratch.resize(before + k, 0);
                    self.opus_run += m;
                    self.stats.concealed += m as u64;
                }
            }
            i += k;
        }
    }

    /// Appends output samples `emitted..end` to `out`.
    fn emit(&mut self, emitted: i64, end: i64, out: &mut Vec<i16>) {
        let n = (end - emitted).max(0) as usize;
        let take = n.min(self.pending.len());
        out.extend(self.pending.drain(..take));
        if take < n {
            self.scratch.clear();
            self.synth(emitted + take as i64, n - take);
            out.extend_from_slice(&self.scratch);
        }
    }
}

/// Whether a decoded frame is silence the jitter buffer may drop to shorten its delay: RMS at
/// or below [`SILENT_RMS`] (about -50 dBFS, under a quiet room's background).
fn is_silent(frame: &[i16]) -> bool {
    if frame.is_empty() {
        return false;
    }
    let energy: i64 = frame.iter().map(|&s| s as i64 * s as i64).sum();
    energy <= SILENT_RMS * SILENT_RMS * frame.len() as i64
}

/// The first output sample at or after `span` past the origin.
fn ceil_index(span: Span, rate: u32) -> i64 {
    let x = span.as_nanos() as i128 * rate as i128;
    (x + 999_999_999).div_euclid(1_000_000_000) as i64
}

/// The last output sample at or before `span` past the origin.
fn floor_index(span: Span, rate: u32) -> i64 {
    (span.as_nanos() as i128 * rate as i128).div_euclid(1_000_000_000) as i64
}

/// `input` at `from` Hz to `to` Hz into `out`: copied, upsampled by the integer factor, or
/// (G.722 in an 8 kHz session) halved by averaging pairs.
fn resample(input: &[i16], from: u32, to: u32, prev: &mut i16, out: &mut Vec<i16>) {
    if from == to {
        out.extend_from_slice(input);
    } else if to > from {
        upsample_linear(input, (to / from).max(1) as usize, prev, out);
    } else {
        let f = (from / to).max(1) as usize;
        out.extend(
            input
                .chunks(f)
                .map(|c| (c.iter().map(|&x| i32::from(x)).sum::<i32>() / c.len() as i32) as i16),
        );
    }
}

/// The level of `frame` as RFC 3389 -dBov.
fn dbov(frame: &[i16]) -> u8 {
    if frame.is_empty() {
        return 127;
    }
    let power = frame.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / frame.len() as f64;
    let rms = power.sqrt().max(1.0);
    (-20.0 * (rms / 32767.0).log10()).clamp(0.0, 127.0) as u8
}

/// Upsamples by the integer `factor`, interpolating linearly from the previous sample.
fn upsample_linear(input: &[i16], factor: usize, prev: &mut i16, out: &mut Vec<i16>) {
    for &x in input {
        let (a, b) = (*prev as i32, x as i32);
        for k in 1..=factor {
            out.push((a + (b - a) * k as i32 / factor as i32) as i16);
        }
        *prev = x;
    }
}

/// One monitor's listening pipeline: both directions of a call, jitter-buffered, decoded,
/// concealed and rendered on one timeline.
pub struct MonitorAudio {
    cfg: ListenConfig,
    map: PayloadMap,
    rate: Option<u32>,
    origin: Option<Timestamp>,
    /// Output samples rendered so far (per direction).
    emitted: i64,
    legs: [Leg; 2],
}

impl MonitorAudio {
    /// A pipeline with nothing received yet.
    pub fn new(cfg: ListenConfig) -> Self {
        MonitorAudio {
            cfg,
            map: PayloadMap::new(),
            rate: None,
            origin: None,
            emitted: 0,
            legs: [
                Leg::new(cfg.jitter, cfg.shorten_on_silence),
                Leg::new(cfg.jitter, cfg.shorten_on_silence),
            ],
        }
    }

    /// The settings.
    pub fn config(&self) -> &ListenConfig {
        &self.cfg
    }

    /// Dynamic payload types from SDP (static ones work without). Call before the packets
    /// that use them; a later call applies to packets pushed after it.
    pub fn set_payloads(&mut self, map: PayloadMap) {
        self.map = map;
    }

    /// The decode rate, once the first packet fixed it.
    pub fn rate(&self) -> Option<u32> {
        self.rate
    }

    /// When the next jitter-buffered item is due (render then at the latest, to keep latency
    /// low); `None` when nothing is queued.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.legs.iter().filter_map(|l| l.jb.poll_timeout()).min()
    }

    /// An RTP packet of direction `dir` arrived at `arrival`. Never fails: what cannot be
    /// played is counted in [`MonitorAudio::stats`].
    pub fn push_rtp(&mut self, arrival: Timestamp, dir: Direction, rtp: &[u8]) {
        let emitted = self.emitted;
        let leg = &mut self.legs[leg_index(dir)];
        let pkt = match RtpPacket::new_checked(rtp) {
            Ok(p) => p,
            Err(e) => return leg.reject(Error::Rtp(e)),
        };
        let pt = pkt.payload_type();
        let Some(format) = self.map.get(pt) else {
            return leg.reject(Error::UnknownPayloadType(pt));
        };
        match format.codec {
            Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::G729 | Codec::Opus => {}
            Codec::Cn | Codec::TelephoneEvent => {}
            other => return leg.reject(Error::Unsupported(other)),
        }
        let map = &self.map;
        let rate = *self.rate.get_or_insert_with(|| {
            let named = |c: Codec| format.codec == c || map.mapped().any(|(_, f)| f.codec == c);
            if named(Codec::Opus) {
                OPUS_RATE
            } else if named(Codec::G722) {
                G722_RATE
            } else {
                G711_RATE
            }
        });
        let origin = *self.origin.get_or_insert(arrival);
        if leg.ssrc != Some(pkt.ssrc()) {
            // The old stream's buffered packets still play, ahead of the new stream.
            let end_of_time = Timestamp::from_nanos(i64::MAX - LOOKAHEAD.as_nanos());
            leg.pull(end_of_time, origin, rate, emitted, &self.map);
            let clock = match format.clock_rate {
                0 => G711_RATE,
                c => c,
            };
            leg.restart(pkt.ssrc(), clock);
        }
        if format.codec == Codec::TelephoneEvent {
            leg.note_event(pkt.timestamp(), pkt.payload(), rate, emitted);
            return;
        }
        leg.jb
            .push(arrival, pkt.timestamp(), pt, pkt.marker(), pkt.payload());
    }

    /// Appends to `out` every sample of both directions due up to `now` (at the decode rate,
    /// which it sets in `out.rate`). Nothing is appended before the first packet. Call
    /// whenever the output needs audio; the time between calls is free.
    pub fn render(&mut self, now: Timestamp, out: &mut RenderedPcm) {
        let (Some(origin), Some(rate)) = (self.origin, self.rate) else {
            return;
        };
        out.rate = rate;
        let end = floor_index(now - origin, rate) + 1;
        if end <= self.emitted {
            return;
        }
        let horizon = now + LOOKAHEAD;
        let emitted = self.emitted;
        let map = self.map;
        let mute = self.cfg.mute_dtmf;
        let [agent, caller] = &mut self.legs;
        for (leg, buf) in [(agent, &mut out.agent), (caller, &mut out.caller)] {
            leg.pull(horizon, origin, rate, emitted, &map);
            let from = buf.len();
            leg.emit(emitted, end, buf);
            if mute {
                let muter = leg.muter.get_or_insert_with(|| DtmfMuter::new(rate));
                muter.process(&mut buf[from..]);
            }
        }
        self.emitted = end;
    }

    /// Counters of both directions.
    pub fn stats(&self) -> ListenStats {
        let leg = |l: &Leg| LegStats {
            jitter: l.jitter_stats(),
            delay_ms: (l.jb.delay().as_nanos() / 1_000_000).clamp(0, i64::from(u32::MAX)) as u32,
            dtmf_muted: l.muter.as_ref().map_or(0, DtmfMuter::digits_muted),
            ..l.stats.clone()
        };
        ListenStats {
            agent: leg(&self.legs[0]),
            caller: leg(&self.legs[1]),
        }
    }
}

fn leg_index(dir: Direction) -> usize {
    match dir {
        Direction::FromAgent => 0,
        Direction::ToAgent => 1,
    }
}

#[cfg(test)]
mod tests;
