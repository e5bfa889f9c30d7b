//! The audio of chosen RTP streams, a SIP call or every call of a number, decoded to one WAV:
//! the analysis (first pass) says which streams and which side of the call each is on
//! ([`choose`]); a second pass over the file hands their packets to one media timeline per side
//! (`collect`); the sides are mixed to mono or put left (agent) and right (other side)
//! (`assemble`). Writing the WAV is the only I/O besides reading the file.
//!
//! Rules: the agent's side is the called party of a call chosen by Call-ID, and the side that
//! carries the number of a call chosen by number; a stream chosen alone has no other side, so
//! it cannot be stereo; a selection that matches nothing names what was looked for and where.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{Analysis, Input};
use crate::capture::PacketSource;
use crate::codec::{static_payload_format, PayloadMap};
use crate::flow::Stream;
use crate::media::mix::{interleave_stereo, mix_mono};
use crate::media::timeline::{self, MediaPacket, Rendered, Timeline};
use crate::packet::rtp::RtpPacket;
use crate::packet::{DecapConfig, Decapsulator, Transport};
use crate::sip::Call;

/// Why an extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--stream` text that is not `SRC-DST[/SSRC]`.
    #[error("--stream {text:?}: {problem}")]
    BadStream {
        /// The text given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Stereo asked for one stream.
    #[error("--stereo needs both directions of a call: use --call or --number")]
    StereoNeedsCall,
    /// No stream matches.
    #[error("no RTP stream {flow} in {file} (see `silentmon flows -r`)")]
    NoStream {
        /// The stream looked for.
        flow: String,
        /// The capture.
        file: PathBuf,
    },
    /// No call matches.
    #[error("no SIP call {what} in {file} ({seen} calls seen; see `silentmon flows -r`)")]
    NoCall {
        /// The call looked for.
        what: String,
        /// The capture.
        file: PathBuf,
        /// Calls the capture holds.
        seen: usize,
    },
    /// The calls found carry no RTP.
    #[error("the call(s) carry no RTP in {0}")]
    NoRtp(PathBuf),
    /// Nothing in the chosen streams decodes.
    #[error("no decodable audio in the selected streams")]
    NoAudio,
    /// A chosen stream is encrypted.
    #[error(
        "stream {flow} is encrypted (SRTP: RTP/SAVP or a=crypto in its SDP, or a payload with no \
         G.711 structure): it cannot be decoded"
    )]
    Encrypted {
        /// The stream.
        flow: String,
    },
    /// The media timeline failed.
    #[error(transparent)]
    Timeline(timeline::Error),
    /// The WAV could not be written.
    #[error("cannot write {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: hound::Error,
    },
}

/// What to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One direction of a flow, optionally one SSRC.
    Stream {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Only this SSRC (else every SSRC of the flow, in time order).
        ssrc: Option<u32>,
    },
    /// A SIP call by Call-ID.
    Call(String),
    /// Every call of a number.
    Number(String),
}

/// Mono mix or stereo.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WavLayout {
    /// Both sides mixed.
    Mono,
    /// The agent left, the other side right.
    Stereo,
}

impl WavLayout {
    fn channels(self) -> u16 {
        match self {
            WavLayout::Mono => 1,
            WavLayout::Stereo => 2,
        }
    }
}

impl Selection {
    /// Parses `SRC-DST[/SSRC]` (SSRC decimal or 0x hex; IPv6 addresses bracketed).
    pub fn parse_stream(text: &str) -> Result<Selection, Error> {
        let bad = |problem: String| Error::BadStream {
            text: text.to_owned(),
            problem,
        };
        let (flow, ssrc) = match text.split_once('/') {
            Some((f, s)) => {
                let s = s.trim();
                let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => s.parse(),
                }
                .map_err(|_| bad(format!("SSRC {s:?} is not a number (decimal or 0x hex)")))?;
                (f, Some(v))
            }
            None => (text, None),
        };
        // Split at the '-' that ends the source socket address.
        let cut = flow
            .char_indices()
            .find(|&(i, c)| c == '-' && flow[..i].parse::<SocketAddr>().is_ok())
            .map(|(i, _)| i)
            .ok_or_else(|| bad("expected SRC-DST such as 10.0.0.1:4000-10.0.0.2:5000".into()))?;
        let src = flow[..cut].parse().map_err(|_| bad("bad source".into()))?;
        let dst = flow[cut + 1..]
            .parse()
            .map_err(|_| bad(format!("bad destination {:?}", &flow[cut + 1..])))?;
        Ok(Selection::Stream { src, dst, ssrc })
    }

    /// What is looked for, for messages.
    fn describe(&self) -> String {
        match self {
            Selection::Stream { src, dst, ssrc } => format!(
                "{src} -> {dst}{}",
                ssrc.map(|x| format!(" with SSRC 0x{x:08X}"))
                    .unwrap_or_default()
            ),
            Selection::Call(id) => format!("with Call-ID {id:?}"),
            Selection::Number(n) => format!("for number {n:?}"),
        }
    }
}

/// What an extraction produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Streams decoded.
    pub streams: usize,
    /// Calls they belong to.
    pub calls: usize,
    /// Length of the WAV.
    pub seconds: f64,
    /// Its sample rate.
    pub rate: u32,
    /// Its channels.
    pub channels: u16,
    /// Packets decoded.
    pub decoded: u64,
    /// Gaps filled with silence.
    pub gap_ms: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stream(s) of {} call(s), {:.1} s at {} Hz, {} channel(s), {} packets decoded, \
             {:.0} ms of gaps filled with silence",
            self.streams,
            self.calls,
            self.seconds,
            self.rate,
            self.channels,
            self.decoded,
            self.gap_ms
        )
    }
}

/// Side of the WAV: the agent (left in stereo).
const AGENT: usize = 0;
/// Side of the WAV: the other party (right in stereo).
const OTHER: usize = 1;

/// A chosen stream: its side, its SSRC filter, its payload types.
#[derive(Clone, Copy, Debug)]
struct Chosen {
    side: usize,
    ssrc: Option<u32>,
    map: PayloadMap,
}

/// The streams a selection chose, by (source, destination).
#[derive(Debug, Default)]
pub struct Choice {
    streams: HashMap<(SocketAddr, SocketAddr), Chosen>,
    n_streams: usize,
    n_calls: usize,
    /// The first encrypted stream chosen.
    encrypted: Option<String>,
}

/// Extracts `selection` from the analysed file into a WAV at `out`.
pub fn extract(
    input: &Input,
    analysis: &Analysis,
    selection: &Selection,
    layout: WavLayout,
    out: &Path,
) -> Result<Summary, super::Error> {
    let choice = choose(input, analysis, selection, layout)?;
    let [agent, other] = collect(input, &choice)?;
    let audio = assemble(agent, other, layout)?;
    write_wav(out, &audio.pcm, audio.rate, layout.channels())?;
    Ok(Summary {
        streams: choice.n_streams,
        calls: choice.n_calls,
        seconds: audio.pcm.len() as f64 / f64::from(layout.channels()) / f64::from(audio.rate),
        rate: audio.rate,
        channels: layout.channels(),
        decoded: audio.decoded,
        gap_ms: audio.gap_seconds * 1000.0,
    })
}

/// First pass's verdict: which streams, on which side.
pub fn choose(
    input: &Input,
    analysis: &Analysis,
    selection: &Selection,
    layout: WavLayout,
) -> Result<Choice, Error> {
    let file = || input.path.clone();
    let mut choice = Choice::default();
    let flows = analysis.engine.flows();
    if let Selection::Stream { src, dst, ssrc } = selection {
        if layout == WavLayout::Stereo {
            return Err(Error::StereoNeedsCall);
        }
        for s in flows.streams() {
            if s.key.src == *src && s.key.dst == *dst && ssrc.is_none_or(|x| x == s.key.ssrc) {
                choice.add(s, AGENT, *ssrc);
            }
        }
        if choice.n_streams == 0 {
            let flow = selection.describe();
            return Err(Error::NoStream { flow, file: file() });
        }
        return choice.decodable();
    }
    let calls = analysis.engine.calls();
    let matching: Vec<&Call> = calls.calls().filter(|c| selection.matches(c)).collect();
    if matching.is_empty() {
        let what = selection.describe();
        let seen = calls.calls().count();
        return Err(Error::NoCall {
            what,
            file: file(),
            seen,
        });
    }
    choice.n_calls = matching.len();
    for call in matching {
        let agent_is_callee = selection.agent_is_callee(call);
        for s in flows.streams().filter(|s| s.call == Some(call.index)) {
            choice.add(s, side_of(s, call, agent_is_callee), None);
        }
    }
    if choice.n_streams == 0 {
        return Err(Error::NoRtp(file()));
    }
    choice.decodable()
}

impl Selection {
    fn matches(&self, c: &Call) -> bool {
        match self {
            Selection::Call(id) => c.call_id == *id,
            Selection::Number(n) => c.matches_number(n),
            Selection::Stream { .. } => false,
        }
    }

    /// Whether the agent of `call` is its called party: by Call-ID always; by number, when
    /// the number was called (or the caller is not the number).
    fn agent_is_callee(&self, call: &Call) -> bool {
        match self {
            Selection::Number(n) => {
                call.called_is(n) || !call.from.user().ends_with(n.trim_start_matches('+'))
            }
            _ => true,
        }
    }
}

impl Choice {
    fn add(&mut self, s: &Stream, side: usize, ssrc: Option<u32>) {
        if s.encrypted() && self.encrypted.is_none() {
            self.encrypted = Some(format!("{}-{}/0x{:08X}", s.key.src, s.key.dst, s.key.ssrc));
        }
        self.n_streams += 1;
        let map = *s.stats.payload_map();
        self.streams
            .insert((s.key.src, s.key.dst), Chosen { side, ssrc, map });
    }
}

impl Choice {
    /// The choice, unless a stream of it is encrypted.
    fn decodable(self) -> Result<Choice, Error> {
        match self.encrypted {
            Some(flow) => Err(Error::Encrypted { flow }),
            None => Ok(self),
        }
    }
}

/// Which side of the WAV a stream goes to.
fn side_of(stream: &Stream, call: &Call, agent_is_callee: bool) -> usize {
    let from_callee = call.callee_media.is_some_and(|m| m.addr == stream.key.src)
        || call.caller_media.is_some_and(|m| m.addr == stream.key.dst);
    if from_callee == agent_is_callee {
        AGENT
    } else {
        OTHER
    }
}

/// Second pass: the chosen streams' packets into one timeline per side.
fn collect(input: &Input, choice: &Choice) -> Result<[Timeline; 2], super::Error> {
    let mut timelines = [Timeline::new(), Timeline::new()];
    let mut source = input.open()?;
    let link = source.link_type();
    let mut decap = Decapsulator::new(DecapConfig::default());
    while let Some(frame) = source.next_frame()? {
        let d = decap.decapsulate(frame.ts, link, frame.data);
        let (
            Some(ip),
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            },
        ) = (d.ip, d.transport)
        else {
            continue;
        };
        let key = (
            SocketAddr::new(ip.src, src_port),
            SocketAddr::new(ip.dst, dst_port),
        );
        let Some(chosen) = choice.streams.get(&key) else {
            continue;
        };
        let Ok(rtp) = RtpPacket::new_checked(payload) else {
            continue;
        };
        if chosen.ssrc.is_some_and(|x| x != rtp.ssrc()) {
            continue;
        }
        let pt = rtp.payload_type();
        timelines[chosen.side].push(MediaPacket {
            ts: frame.ts,
            ssrc: rtp.ssrc(),
            seq: rtp.sequence_number(),
            rtp_ts: rtp.timestamp(),
            format: chosen.map.get(pt).or_else(|| static_payload_format(pt)),
            payload: rtp.payload(),
        });
    }
    Ok(timelines)
}

/// The WAV's samples.
struct Audio {
    pcm: Vec<i16>,
    rate: u32,
    decoded: u64,
    gap_seconds: f64,
}

/// Renders both sides and lays them out: mixed, or agent left and other side right (a missing
/// side is silence).
fn assemble(agent: Timeline, other: Timeline, layout: WavLayout) -> Result<Audio, Error> {
    let (a, b) = match (render_or_empty(agent)?, render_or_empty(other)?) {
        (None, None) => return Err(Error::NoAudio),
        (Some(r), None) | (None, Some(r)) if layout == WavLayout::Mono => {
            let gap_seconds = r.stats.gap_samples as f64 / f64::from(r.rate);
            let decoded = r.stats.decoded;
            return Ok(Audio {
                pcm: r.pcm,
                rate: r.rate,
                decoded,
                gap_seconds,
            });
        }
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => {
            let silent = silence_like(&a);
            (a, silent)
        }
        (None, Some(b)) => (silence_like(&b), b),
    };
    let (pcm, rate) = match layout {
        WavLayout::Mono => mix_mono(&a, &b),
        WavLayout::Stereo => interleave_stereo(&a, &b),
    };
    let gaps = a.stats.gap_samples + b.stats.gap_samples;
    Ok(Audio {
        pcm,
        rate,
        decoded: a.stats.decoded + b.stats.decoded,
        gap_seconds: gaps as f64 / f64::from(rate),
    })
}

/// A side with no samples at `r`'s rate (and no counts).
fn silence_like(r: &Rendered) -> Rendered {
    let mut silent = r.clone();
    silent.pcm.clear();
    silent.stats = Default::default();
    silent
}

fn render_or_empty(t: Timeline) -> Result<Option<Rendered>, Error> {
    match t.render() {
        Ok(r) => Ok(Some(r)),
        Err(timeline::Error::Empty) => Ok(None),
        Err(e) => Err(Error::Timeline(e)),
    }
}

fn write_wav(path: &Path, samples: &[i16], rate: u32, channels: u16) -> Result<(), Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav = |source| Error::Wav {
        path: path.to_owned(),
        source,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(wav)?;
    let mut i16w = w.get_i16_writer(samples.len() as u32);
    for &s in samples {
        i16w.write_sample(s);
    }
    i16w.flush().map_err(wav)?;
    w.finalize().map_err(wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_selection_syntax() {
        assert_eq!(
            Selection::parse_stream("10.0.0.1:4000-10.0.0.2:5000/0x1234ABCD").unwrap(),
            Selection::Stream {
                src: "10.0.0.1:4000".parse().unwrap(),
                dst: "10.0.0.2:5000".parse().unwrap(),
                ssrc: Some(0x1234ABCD)
            }
        );
        assert!(matches!(
            Selection::parse_stream("[::1]:4000-[::2]:5000").unwrap(),
            Selection::Stream { ssrc: None, .. }
        ));
        let no_dst = Selection::parse_stream("10.0.0.1-10.0.0.2").unwrap_err();
        assert!(no_dst.to_string().contains("expected SRC-DST"), "{no_dst}");
        let bad_ssrc = Selection::parse_stream("10.0.0.1:1-10.0.0.2:2/zz").unwrap_err();
        assert!(bad_ssrc.to_string().contains("SSRC \"zz\""), "{bad_ssrc}");
    }
}
