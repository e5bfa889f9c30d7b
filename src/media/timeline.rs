//! The offline timeline behind `extract`: one direction of a call (one or more RTP streams, i.e.
//! SSRCs) rendered to PCM honouring RTP timestamps.
//!
//! Rules: packets are ordered by extended sequence number per SSRC (reordering fixed,
//! duplicates dropped); each packet lands at its RTP timestamp, so loss and silence suppression
//! become silence of exactly the missing length (Opus gaps get libopus concealment); G.711
//! and G.729 are rendered at 8 kHz, G.722 at 16 kHz, Opus at 48 kHz, and the output at the
//! highest of them (lower ones upsampled); a G.729 SID frame decodes to comfort noise;
//! telephone-event and comfort-noise packets are not decoded (their span stays silent); a new
//! SSRC is placed by its capture time, butted against the previous stream when it continues it
//! (within 60 ms); a single jump is capped at [`MAX_GAP_SECS`] and counted. Sans-IO.

use super::g711;
use super::g722::{G722Decoder, G722_RATE};
use super::g729::{G729Decoder, G729_RATE};
use super::opus::{OpusDecoder, OPUS_RATE};
use crate::codec::{Codec, PayloadFormat};
use crate::time::Timestamp;

/// Longest silence one jump may insert.
pub const MAX_GAP_SECS: u32 = 5;
/// A new SSRC starting this close to the previous one's end continues it seamlessly.
const CONTINUE_WITHIN_MS: i64 = 60;

/// Timeline errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A codec we do not decode.
    #[error(
        "cannot decode {0} audio (silentmon decodes G.711 mu-law/A-law, G.722, G.729 and Opus)"
    )]
    UnsupportedCodec(&'static str),
    /// A G.722 or G.729 decoder could not be made, or a G.729 payload is malformed.
    #[error("{0}")]
    Codec(String),
    /// No audio packet at all.
    #[error("no audio packets to decode")]
    Empty,
    /// Opus failed.
    #[error(transparent)]
    Opus(#[from] super::opus::Error),
}

/// One RTP packet of the direction being rendered.
#[derive(Copy, Clone, Debug)]
pub struct MediaPacket<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub rtp_ts: u32,
    /// Payload format (None when unknown).
    pub format: Option<PayloadFormat>,
    /// Payload bytes.
    pub payload: &'a [u8],
}

#[derive(Clone, Debug)]
struct Stored {
    ts: Timestamp,
    ext_seq: i64,
    rtp_ts: u32,
    format: Option<PayloadFormat>,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Stream {
    ssrc: u32,
    packets: Vec<Stored>,
    last_seq: Option<(u16, i64)>,
}

/// Counters of a rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Audio packets decoded.
    pub decoded: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Event (RFC 4733) and comfort-noise packets skipped.
    pub skipped_events: u64,
    /// Samples of silence (or concealment) inserted for gaps.
    pub gap_samples: u64,
    /// Gaps capped at the maximum.
    pub capped_gaps: u64,
    /// SSRCs rendered.
    pub streams: u64,
}

/// The result: PCM at `rate`, whose first sample was captured at `start`.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Samples.
    pub pcm: Vec<i16>,
    /// Sample rate.
    pub rate: u32,
    /// Capture time of the first sample.
    pub start: Timestamp,
    /// Counters.
    pub stats: TimelineStats,
}

/// Collects packets, then renders them.
#[derive(Debug, Default)]
pub struct Timeline {
    streams: Vec<Stream>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Timeline::default()
    }

    /// Adds a packet (in capture order).
    pub fn push(&mut self, p: MediaPacket<'_>) {
        let idx = match self.streams.iter().position(|s| s.ssrc == p.ssrc) {
            Some(i) => i,
            None => {
                self.streams.push(Stream {
                    ssrc: p.ssrc,
                    ..Stream::default()
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[idx];
        let ext_seq = match s.last_seq {
            None => p.seq as i64,
            Some((last, ext)) => ext + p.seq.wrapping_sub(last) as i16 as i64,
        };
        // Track the highest extended sequence number as the reference for the next one.
        if s.last_seq.is_none_or(|(_, e)| ext_seq > e) {
            s.last_seq = Some((p.seq, ext_seq));
        }
        s.packets.push(Stored {
            ts: p.ts,
            ext_seq,
            rtp_ts: p.rtp_ts,
            format: p.format,
            payload: p.payload.to_vec(),
        });
    }

    /// The output rate: 48 kHz when any packet is Opus, else 16 kHz when any is G.722, else
    /// 8 kHz.
    fn rate(&self) -> u32 {
        let any = |c: Codec| {
            (self.streams.iter().flat_map(|s| &s.packets))
                .any(|p| p.format.is_some_and(|f| f.codec == c))
        };
        if any(Codec::Opus) {
            OPUS_RATE
        } else if any(Codec::G722) {
            G722_RATE
        } else {
            8000
        }
    }

    /// Renders everything pushed.
    pub fn render(mut self) -> Result<Rendered, Error> {
        let rate = self.rate();
        let mut stats = TimelineStats::default();
        for s in &mut self.streams {
            s.packets.sort_by_key(|p| p.ext_seq);
            let before = s.packets.len();
            s.packets.dedup_by_key(|p| p.ext_seq);
            stats.duplicates += (before - s.packets.len()) as u64;
        }
        // Streams in order of their first capture time.
        self.streams
            .sort_by_key(|s| s.packets.iter().map(|p| p.ts).min());
        let start = self
            .streams
            .iter()
            .flat_map(|s| &s.packets)
            .map(|p| p.ts)
            .min()
            .ok_or(Error::Empty)?;
        let max_gap = (MAX_GAP_SECS * rate) as usize;
        let mut pcm: Vec<i16> = Vec::new();
        let mut scratch: Vec<i16> = Vec::with_capacity(4096);
        for s in &self.streams {
            let Some(first) = s.packets.first() else {
                continue;
            };
            stats.streams += 1;
            // Where this stream starts: by capture time, or right after the previous stream.
            let by_time =
                ((first.ts - start).as_nanos() as i128 * rate as i128 / 1_000_000_000) as i64;
            let mut origin = by_time.max(0) as usize;
            let end = pcm.len();
            if end > 0
                && (origin as i64 - end as i64).abs() < CONTINUE_WITHIN_MS * rate as i64 / 1000
            {
                origin = end;
            }
            let base_ts = first.rtp_ts;
            let mut decoders = Decoders::default();
            let mut cursor = origin; // end of what this stream has written
            for p in &s.packets {
                let Some(fmt) = p.format else {
                    stats.skipped_events += 1;
                    continue;
                };
                match fmt.codec {
                    Codec::TelephoneEvent | Codec::Cn => {
                        stats.skipped_events += 1;
                        continue;
                    }
                    Codec::Pcmu | Codec::Pcma | Codec::Opus | Codec::G722 | Codec::G729 => {}
                    other => return Err(Error::UnsupportedCodec(other.name())),
                }
                let clock = fmt.clock_rate.max(1) as i64;
                let offset = p.rtp_ts.wrapping_sub(base_ts) as i32 as i64;
                let mut pos = origin as i64 + offset * rate as i64 / clock;
                if pos < 0 {
                    continue;
                }
                if pos as usize > cursor + max_gap {
                    stats.capped_gaps += 1;
                    pos = (cursor + max_gap) as i64;
                }
                let pos = pos as usize;
                scratch.clear();
                let native = match fmt.codec {
                    Codec::Pcmu => {
                        g711::decode_ulaw(p.payload.as_slice(), &mut scratch);
                        8000
                    }
                    Codec::Pcma => {
                        g711::decode_alaw(p.payload.as_slice(), &mut scratch);
                        8000
                    }
                    Codec::G722 => {
                        decoders.g722()?.decode(&p.payload, &mut scratch);
                        G722_RATE
                    }
                    Codec::G729 => {
                        (decoders.g729()?.decode(&p.payload, &mut scratch))
                            .map_err(|e| Error::Codec(e.to_string()))?;
                        G729_RATE
                    }
                    _ => {
                        let dec = decoders.opus()?;
                        if pos > cursor && cursor > origin {
                            // Lost Opus packets: libopus conceals the gap.
                            let mut plc = Vec::new();
                            dec.conceal(pos - cursor, &mut plc)?;
                            write_at(&mut pcm, cursor, &plc);
                        }
                        dec.decode(&p.payload, &mut scratch)?;
                        rate
                    }
                };
                if native != rate {
                    scratch = upsample(&scratch, rate / native);
                }
                if pos > cursor {
                    stats.gap_samples += (pos - cursor) as u64;
                }
                write_at(&mut pcm, pos, &scratch);
                cursor = cursor.max(pos + scratch.len());
                stats.decoded += 1;
            }
        }
        if stats.decoded == 0 {
            return Err(Error::Empty);
        }
        Ok(Rendered {
            pcm,
            rate,
            start,
            stats,
        })
    }
}

/// One stream's decoders, made when its first packet of that codec comes.
#[derive(Default)]
struct Decoders {
    opus: Option<OpusDecoder>,
    g722: Option<G722Decoder>,
    g729: Option<G729Decoder>,
}

impl Decoders {
    fn opus(&mut self) -> Result<&mut OpusDecoder, Error> {
        made(&mut self.opus, || Ok(OpusDecoder::new()?))
    }

    fn g722(&mut self) -> Result<&mut G722Decoder, Error> {
        made(&mut self.g722, || {
            G722Decoder::new().map_err(|e| Error::Codec(e.to_string()))
        })
    }

    fn g729(&mut self) -> Result<&mut G729Decoder, Error> {
        made(&mut self.g729, || {
            G729Decoder::new().map_err(|e| Error::Codec(e.to_string()))
        })
    }
}

/// The decoder in `slot`, made first if there is none.
fn made<T>(slot: &mut Option<T>, make: impl FnOnce() -> Result<T, Error>) -> Result<&mut T, Error> {
    let d = match slot.take() {
        Some(d) => d,
        None => make()?,
    };
    Ok(slot.insert(d))
}

/// Writes `samples` at `pos`, growing `pcm` with silence as needed.
fn write_at(pcm: &mut Vec<i16>, pos: usize, samples: &[i16]) {
    if pcm.len() < pos + samples.len() {
        pcm.resize(pos + samples.len(), 0);
    }
    pcm[pos..pos + samples.len()].copy_from_slice(samples);
}

/// Integer-factor upsampling by linear interpolation.
fn upsample(x: &[i16], factor: u32) -> Vec<i16> {
    let f = factor as usize;
    let mut out = Vec::with_capacity(x.len() * f);
    for (i, &a) in x.iter().enumerate() {
        let b = *x.get(i + 1).unwrap_or(&a);
        for j in 0..f {
            out.push((a as i32 + (b as i32 - a as i32) * j as i32 / f as i32) as i16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::static_payload_format;

    fn tone_codes(k: u64) -> Vec<u8> {
        (0..160)
            .map(|n| {
                let t = (k * 160 + n) as f64 / 8000.0;
                g711::encode_ulaw((8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16)
            })
            .collect()
    }

    fn pkt<'a>(
        k: u64,
        ssrc: u32,
        seq0: u16,
        ts0: u32,
        payload: &'a [u8],
        at_ms: i64,
    ) -> MediaPacket<'a> {
        MediaPacket {
            ts: Timestamp::from_nanos(at_ms * 1_000_000),
            ssrc,
            seq: seq0.wrapping_add(k as u16),
            rtp_ts: ts0.wrapping_add(160 * k as u32),
            format: static_payload_format(0),
            payload,
        }
    }

    fn reference(ks: impl Iterator<Item = u64>, lost: &[u64]) -> Vec<i16> {
        let mut out = Vec::new();
        for k in ks {
            if lost.contains(&k) {
                out.extend(std::iter::repeat_n(0, 160));
            } else {
                g711::decode_ulaw(&tone_codes(k), &mut out);
            }
        }
        out
    }

    #[test]
    fn loss_reorder_duplicates_and_seq_wrap_render_exactly() {
        let payloads: Vec<Vec<u8>> = (0..10).map(tone_codes).collect();
        let mut t = Timeline::new();
        // seq starts at 65532 so it wraps; packet 4 lost; 6 and 7 swapped; 2 duplicated.
        for &k in &[0u64, 1, 2, 2, 3, 5, 7, 6, 8, 9] {
            t.push(pkt(
                k,
                1,
                65532,
                4_000_000_000,
                &payloads[k as usize],
                20 * k as i64,
            ));
        }
        let r = t.render().unwrap();
        assert_eq!(r.rate, 8000);
        assert_eq!(r.pcm, reference(0..10, &[4]));
        assert_eq!(r.stats.duplicates, 1);
        assert_eq!(r.stats.gap_samples, 160);
    }

    #[test]
    fn events_are_silent_and_ssrc_change_continues() {
        let payloads: Vec<Vec<u8>> = (0..8).map(tone_codes).collect();
        let mut t = Timeline::new();
        for k in 0..4u64 {
            let mut p = pkt(k, 1, 100, 0, &payloads[k as usize], 20 * k as i64);
            if k == 2 {
                p.format = Some(PayloadFormat {
                    codec: Codec::TelephoneEvent,
                    clock_rate: 8000,
                    channels: 1,
                });
            }
            t.push(p);
        }
        // A new SSRC with unrelated sequence and timestamp bases, 2 ms "late".
        for k in 4..8u64 {
            t.push(pkt(
                k - 4,
                2,
                9000,
                123_456,
                &payloads[k as usize],
                20 * k as i64 + 2,
            ));
        }
        let r = t.render().unwrap();
        assert_eq!(r.pcm, reference(0..8, &[2]));
        assert_eq!((r.stats.streams, r.stats.skipped_events), (2, 1));
    }

    #[test]
    fn timestamp_jump_is_silence_and_capped() {
        let a = tone_codes(0);
        let mut t = Timeline::new();
        t.push(pkt(0, 1, 0, 0, &a, 0));
        let mut far = pkt(1, 1, 0, 0, &a, 20);
        far.rtp_ts = 8000 * 60; // a minute later
        t.push(far);
        let r = t.render().unwrap();
        assert_eq!(r.stats.capped_gaps, 1);
        assert_eq!(r.pcm.len(), 160 + 5 * 8000 + 160);
        let mut g = Timeline::new();
        let mut p = pkt(0, 1, 0, 0, &a, 0);
        p.format = static_payload_format(3);
        g.push(p);
        assert!(matches!(g.render(), Err(Error::UnsupportedCodec("GSM"))));
        assert!(matches!(Timeline::new().render(), Err(Error::Empty)));
    }
}
