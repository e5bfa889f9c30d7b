//! `silentmon extract`: a stream, a SIP call or all calls of a number decoded to WAV. The first
//! pass (the engine) finds streams and calls; the second reads the file again and hands the
//! chosen streams' packets to the media timeline; WAV writing is the only I/O here.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::offline::{analyse, Analysis, Input};
use crate::capture::PacketSource;
use crate::codec::{static_payload_format, PayloadMap};
use crate::engine::EngineConfig;
use crate::flow::Stream;
use crate::media::mix::{interleave_stereo, mix_mono};
use crate::media::timeline::{MediaPacket, Rendered, Timeline};
use crate::packet::rtp::RtpPacket;
use crate::packet::{DecapConfig, Decapsulator, Transport};
use crate::sip::Call;

/// Arguments of `extract`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["stream", "call", "number"])))]
pub(crate) struct ExtractArgs {
    /// Capture file to read.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: PathBuf,
    /// One direction: SRC-DST with optional /SSRC, e.g. 10.0.0.1:4000-10.0.0.2:5000/0x1234ABCD
    /// (without /SSRC every SSRC of that flow, in time order).
    #[arg(long, value_name = "SRC-DST[/SSRC]")]
    stream: Option<String>,
    /// Both directions of the SIP call with this Call-ID.
    #[arg(long, value_name = "CALL-ID")]
    call: Option<String>,
    /// Both directions of every call whose Request-URI, To, From or P-Asserted-Identity carries
    /// this number.
    #[arg(long, value_name = "DIGITS")]
    number: Option<String>,
    /// Output WAV file (16-bit PCM; 8 kHz for G.711, 48 kHz when Opus is involved).
    #[arg(short = 'o', long = "output", value_name = "OUT.wav")]
    output: PathBuf,
    /// Two channels: the agent (called party) left, the other side right. Default: mixed mono.
    #[arg(long)]
    stereo: bool,
    /// BPF filter applied while reading (say `vlan` for tagged frames).
    #[arg(short = 'f', long, value_name = "BPF")]
    filter: Option<String>,
}

/// What to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// One direction of a flow, optionally one SSRC.
    Stream {
        src: SocketAddr,
        dst: SocketAddr,
        ssrc: Option<u32>,
    },
    /// A SIP call by Call-ID.
    Call(String),
    /// Every call of a number.
    Number(String),
}

/// Mono mix or stereo.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum WavLayout {
    Mono,
    Stereo,
}

impl Selection {
    /// Parses `SRC-DST[/SSRC]`.
    pub(crate) fn parse_stream(text: &str) -> Result<Selection> {
        let (flow, ssrc) = match text.split_once('/') {
            Some((f, s)) => {
                let s = s.trim();
                let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => s.parse(),
                }
                .map_err(|_| {
                    anyhow!("--stream {text:?}: SSRC {s:?} is not a number (decimal or 0x hex)")
                })?;
                (f, Some(v))
            }
            None => (text, None),
        };
        // Split at the '-' that ends the source socket address (IPv6 addresses are bracketed).
        let cut = flow
            .char_indices()
            .find(|&(i, c)| c == '-' && flow[..i].parse::<SocketAddr>().is_ok())
            .map(|(i, _)| i)
            .ok_or_else(|| {
                anyhow!("--stream {text:?}: expected SRC-DST such as 10.0.0.1:4000-10.0.0.2:5000")
            })?;
        let src: SocketAddr = flow[..cut].parse()?;
        let dst: SocketAddr = flow[cut + 1..]
            .parse()
            .map_err(|_| anyhow!("--stream {text:?}: bad destination {:?}", &flow[cut + 1..]))?;
        Ok(Selection::Stream { src, dst, ssrc })
    }
}

/// What an extraction produced.
pub(crate) struct Summary {
    streams: usize,
    calls: usize,
    seconds: f64,
    rate: u32,
    channels: u16,
    decoded: u64,
    gap_ms: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stream(s) of {} call(s), {:.1} s at {} Hz, {} channel(s), {} packets decoded, {:.0} ms of gaps filled with silence",
            self.streams, self.calls, self.seconds, self.rate, self.channels, self.decoded, self.gap_ms
        )
    }
}

pub(crate) fn run(args: ExtractArgs) -> Result<ExitCode> {
    let selection = match (&args.stream, &args.call, &args.number) {
        (Some(s), _, _) => Selection::parse_stream(s)?,
        (_, Some(c), _) => Selection::Call(c.clone()),
        (_, _, Some(n)) => Selection::Number(n.clone()),
        _ => bail!("say --stream, --call or --number"),
    };
    let layout = if args.stereo {
        WavLayout::Stereo
    } else {
        WavLayout::Mono
    };
    let input = Input::new(&args.read, args.filter.as_deref(), None)?;
    let analysis = analyse(&input, EngineConfig::default())?.complete()?;
    let summary = extract(&input, &analysis, &selection, layout, &args.output)?;
    eprintln!("{}: {summary}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Which side of the WAV a stream goes to: 0 = agent (left), 1 = other side (right).
fn side_of(stream: &Stream, call: &Call, agent_is_callee: bool) -> usize {
    let from_callee = call.callee_media.is_some_and(|m| m.addr == stream.key.src)
        || call.caller_media.is_some_and(|m| m.addr == stream.key.dst);
    let from_agent = from_callee == agent_is_callee;
    if from_agent {
        0
    } else {
        1
    }
}

/// Extracts `selection` from the analysed file into a WAV at `out`.
pub(crate) fn extract(
    input: &Input,
    analysis: &Analysis,
    selection: &Selection,
    layout: WavLayout,
    out: &Path,
) -> Result<Summary> {
    let flows = analysis.engine.flows();
    let calls = analysis.engine.calls();
    // (src, dst) -> (side, ssrc filter, payload map)
    let mut chosen: HashMap<(SocketAddr, SocketAddr), (usize, Option<u32>, PayloadMap)> =
        HashMap::new();
    let mut n_streams = 0;
    let mut n_calls = 0;
    match selection {
        Selection::Stream { src, dst, ssrc } => {
            if layout == WavLayout::Stereo {
                bail!("--stereo needs both directions of a call: use --call or --number");
            }
            for s in flows.streams() {
                if s.key.src == *src && s.key.dst == *dst && ssrc.is_none_or(|x| x == s.key.ssrc) {
                    n_streams += 1;
                    chosen.insert((*src, *dst), (0, *ssrc, *s.stats.payload_map()));
                }
            }
            if n_streams == 0 {
                bail!(
                    "no RTP stream {src} -> {dst}{} in {} (see `silentmon flows -r`)",
                    ssrc.map(|x| format!(" with SSRC 0x{x:08X}"))
                        .unwrap_or_default(),
                    input.path.display()
                );
            }
        }
        Selection::Call(_) | Selection::Number(_) => {
            let matching: Vec<&Call> = calls
                .calls()
                .filter(|c| match selection {
                    Selection::Call(id) => c.call_id == *id,
                    Selection::Number(n) => c.matches_number(n),
                    Selection::Stream { .. } => false,
                })
                .collect();
            if matching.is_empty() {
                bail!(
                    "no SIP call {} in {} ({} calls seen; see `silentmon flows -r`)",
                    match selection {
                        Selection::Call(id) => format!("with Call-ID {id:?}"),
                        Selection::Number(n) => format!("for number {n:?}"),
                        Selection::Stream { .. } => String::new(),
                    },
                    input.path.display(),
                    calls.calls().count()
                );
            }
            n_calls = matching.len();
            for call in matching {
                let agent_is_callee = match selection {
                    Selection::Number(n) => {
                        call.called_is(n) || !call.from.user().ends_with(n.trim_start_matches('+'))
                    }
                    _ => true,
                };
                for s in flows.streams().filter(|s| s.call == Some(call.index)) {
                    n_streams += 1;
                    chosen.insert(
                        (s.key.src, s.key.dst),
                        (
                            side_of(s, call, agent_is_callee),
                            None,
                            *s.stats.payload_map(),
                        ),
                    );
                }
            }
            if n_streams == 0 {
                bail!("the call(s) carry no RTP in {}", input.path.display());
            }
        }
    }

    // Second pass: the chosen streams' packets into one timeline per side.
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
        let Some(&(side, ssrc, map)) = chosen.get(&key) else {
            continue;
        };
        let Ok(rtp) = RtpPacket::new_checked(payload) else {
            continue;
        };
        if ssrc.is_some_and(|x| x != rtp.ssrc()) {
            continue;
        }
        let pt = rtp.payload_type();
        timelines[side].push(MediaPacket {
            ts: frame.ts,
            ssrc: rtp.ssrc(),
            seq: rtp.sequence_number(),
            rtp_ts: rtp.timestamp(),
            format: map.get(pt).or_else(|| static_payload_format(pt)),
            payload: rtp.payload(),
        });
    }
    let [agent, other] = timelines;
    let agent = render_or_empty(agent)?;
    let other = render_or_empty(other)?;
    let (samples, rate, channels, decoded, gaps) = match (agent, other) {
        (Some(a), Some(b)) => {
            let (pcm, rate) = match layout {
                WavLayout::Mono => mix_mono(&a, &b),
                WavLayout::Stereo => interleave_stereo(&a, &b),
            };
            let ch = if layout == WavLayout::Stereo { 2 } else { 1 };
            let gaps = (a.stats.gap_samples + b.stats.gap_samples) as f64 / rate as f64;
            (pcm, rate, ch, a.stats.decoded + b.stats.decoded, gaps)
        }
        (Some(r), None) | (None, Some(r)) => {
            let gaps = r.stats.gap_samples as f64 / r.rate as f64;
            let decoded = r.stats.decoded;
            if layout == WavLayout::Stereo {
                let silent = Rendered {
                    pcm: Vec::new(),
                    ..r.clone()
                };
                let (pcm, rate) = interleave_stereo(&r, &silent);
                (pcm, rate, 2, decoded, gaps)
            } else {
                (r.pcm, r.rate, 1, decoded, gaps)
            }
        }
        (None, None) => bail!("no decodable audio in the selected streams"),
    };
    write_wav(out, &samples, rate, channels)?;
    Ok(Summary {
        streams: n_streams,
        calls: n_calls,
        seconds: samples.len() as f64 / channels as f64 / rate as f64,
        rate,
        channels,
        decoded,
        gap_ms: gaps * 1000.0,
    })
}

fn render_or_empty(t: Timeline) -> Result<Option<Rendered>> {
    match t.render() {
        Ok(r) => Ok(Some(r)),
        Err(crate::media::timeline::Error::Empty) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_wav(path: &Path, samples: &[i16], rate: u32, channels: u16) -> Result<()> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut i16w = w.get_i16_writer(samples.len() as u32);
    for &s in samples {
        i16w.write_sample(s);
    }
    i16w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    w.finalize()
        .with_context(|| format!("cannot finish {}", path.display()))?;
    Ok(())
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
        assert!(Selection::parse_stream("10.0.0.1-10.0.0.2").is_err());
        assert!(Selection::parse_stream("10.0.0.1:1-10.0.0.2:2/zz").is_err());
    }
}
