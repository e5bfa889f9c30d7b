//! capgen: synthetic captures with a JSON truth file computed from what was actually written.
//! `calls` (N concurrent SIP + RTP calls with impairments, DTMF, fax, SRTP's look, SIP over TCP;
//! `calls`), one agent's day (hold, consult, resume, next call; `agent_day`), calls changing
//! hands (`handoff`), a mobile agent's nailed connection (`nailed`), vlantest's sample frames,
//! and the mock CTI Server (`cti_server`). Deterministic for a given `--seed`. This file holds
//! the subcommands and what they share (the output files, the PRNG, the codecs' sample coding).

mod agent_day;
mod calls;
mod cti_server;
mod dtmf;
mod fax;
mod frame;
mod handoff;
mod nailed;
mod pcap_writer;
mod sip_tcp;
mod sip_text;
mod wideband;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;
use silentmon::media::g711;
use silentmon::vlantest::sample::{build_frame, SAMPLE_SRC_MAC};
use silentmon::vlantest::Signature;

use frame::Encap;
use pcap_writer::PcapWriter;

#[derive(Parser)]
#[command(
    name = "capgen",
    about = "Synthetic SIP+RTP captures with a JSON truth file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N concurrent SIP+RTP calls.
    Calls(Box<calls::CallsArgs>),
    /// One agent's calls in sequence: a call with a hold, a consult during the hold, the
    /// resume, and the agent's next call.
    AgentDay(agent_day::AgentDayArgs),
    /// Calls that change hands between two agents through a B2BUA or a proxy: forwarded,
    /// picked up, hunted, and a consult transfer, each stream with its own tone.
    Handoff(handoff::HandoffArgs),
    /// A mobile agent's nailed connection: one SIP dialog for the shift, a re-INVITE per
    /// customer call, and (with --cti-scenario) the CTI Server's call events delimiting them.
    Nailed(nailed::NailedArgs),
    /// vlantest's signed sample frames (IPv4/UDP, one 802.1Q tag).
    VlanSample(VlanSampleArgs),
    /// A mock CTI Server playing a scenario (`calls --cti-scenario` writes one), with
    /// failures on demand.
    CtiServer(cti_server::CtiServerArgs),
}

#[derive(clap::Args)]
struct VlanSampleArgs {
    /// Output pcap.
    #[arg(short = 'o', long)]
    out: PathBuf,
    /// VLAN id of the frames.
    #[arg(long, default_value_t = 85)]
    vlan: u16,
    /// Frames.
    #[arg(long, default_value_t = 5)]
    count: u16,
    /// Capture time of the first frame, seconds since the epoch.
    #[arg(long, default_value_t = 1_700_000_000)]
    start_epoch: i64,
}

/// Where a generated capture starts, its seed, and the files it is written to.
#[derive(clap::Args, Clone)]
struct Output {
    /// Capture time of the first packet, seconds since the epoch.
    #[arg(long, default_value_t = 1_700_000_000)]
    start_epoch: i64,
    /// PRNG seed (SSRCs, sequence and timestamp bases, impairments).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output pcap.
    #[arg(short = 'o', long)]
    out: PathBuf,
    /// Truth JSON output.
    #[arg(long)]
    truth: Option<PathBuf>,
}

impl Output {
    /// Creates the pcap file.
    fn create_pcap(&self) -> Result<PcapWriter<BufWriter<File>>> {
        let file = File::create(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        Ok(PcapWriter::new(BufWriter::with_capacity(1 << 20, file))?)
    }

    /// Writes the truth file, if one was asked for.
    fn write_truth(&self, truth: &impl Serialize) -> Result<()> {
        if let Some(path) = &self.truth {
            let f =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            serde_json::to_writer_pretty(BufWriter::new(f), truth)?;
        }
        Ok(())
    }
}

/// splitmix64: small, deterministic, good enough for impairments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.unit() * 100.0 < percent
    }
}

/// The audio codec of generated calls: G.711 (encoded per sample here) or G.722 / G.729
/// (encoded a packet at a time by `wideband`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Law {
    Mu,
    A,
    G722,
    G729,
}

impl Law {
    fn pt(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
            Law::G722 => 9,
            Law::G729 => 18,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Law::Mu => "g711U",
            Law::A => "g711A",
            Law::G722 => "g722",
            Law::G729 => "g729",
        }
    }
    fn sdp(self) -> &'static str {
        match self {
            Law::Mu => "PCMU",
            Law::A => "PCMA",
            Law::G722 => "G722",
            Law::G729 => "G729",
        }
    }
    fn is_g711(self) -> bool {
        matches!(self, Law::Mu | Law::A)
    }
    fn encode(self, s: i16) -> u8 {
        match self {
            Law::A => g711::encode_alaw(s),
            _ => g711::encode_ulaw(s),
        }
    }
    fn decode(self, c: u8) -> i16 {
        match self {
            Law::A => g711::ALAW_TO_LINEAR[c as usize],
            _ => g711::ULAW_TO_LINEAR[c as usize],
        }
    }
    /// A frame encoder for one direction (None for G.711).
    fn frame_encoder(self, annex_b: bool) -> Result<Option<wideband::FrameEncoder>> {
        Ok(match self {
            Law::G722 => Some(wideband::FrameEncoder::g722()?),
            Law::G729 => Some(wideband::FrameEncoder::g729(annex_b)?),
            _ => None,
        })
    }
}

enum Audio {
    Tone(f64),
    Pcm(std::rc::Rc<Vec<i16>>),
}

impl Audio {
    fn sample(&self, n: u64) -> i16 {
        match self {
            Audio::Tone(f) => {
                (8000.0 * (2.0 * std::f64::consts::PI * f * n as f64 / 8000.0).sin()) as i16
            }
            Audio::Pcm(v) => v.get(n as usize).copied().unwrap_or(0),
        }
    }
}

/// Reads a mono (or first-channel) 16-bit WAV and resamples it to 8 kHz (linear interpolation).
fn read_wav_8k(path: &Path) -> Result<Vec<i16>> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec = r.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        bail!("{}: need 16-bit integer PCM", path.display());
    }
    let ch = spec.channels as usize;
    let raw: Vec<i16> = r.samples::<i16>().step_by(ch).collect::<Result<_, _>>()?;
    let ratio = spec.sample_rate as f64 / 8000.0;
    let n = (raw.len() as f64 / ratio) as usize;
    Ok((0..n)
        .map(|i| {
            let x = i as f64 * ratio;
            let j = x as usize;
            let f = x - j as f64;
            let a = raw[j] as f64;
            let b = *raw.get(j + 1).unwrap_or(&raw[j]) as f64;
            (a + (b - a) * f) as i16
        })
        .collect())
}

fn parse_law(s: &str) -> Result<Law> {
    match s {
        "pcmu" => Ok(Law::Mu),
        "pcma" => Ok(Law::A),
        "g722" => Ok(Law::G722),
        "g729" => Ok(Law::G729),
        other => bail!("--codec {other:?}: use pcmu, pcma, g722 or g729"),
    }
}

fn parse_encap(s: &str, i: u32) -> Result<Encap> {
    if s == "untagged" {
        return Ok(Encap::Untagged);
    }
    if let Some(v) = s.strip_prefix("vlan:") {
        let (v, step) = match v.strip_suffix('+') {
            Some(v) => (v, true),
            None => (v, false),
        };
        let id: u16 = v.parse().context("vlan id")?;
        let id = if step { id + (i % 4000) as u16 } else { id };
        if !(1..4095).contains(&id) {
            bail!("VLAN id {id} out of range");
        }
        return Ok(Encap::Vlan(id));
    }
    if let Some(v) = s.strip_prefix("qinq:") {
        let (o, inner) = v.split_once(':').context("qinq:OUTER:INNER")?;
        return Ok(Encap::QinQ(o.parse()?, inner.parse()?));
    }
    bail!("--encap {s:?}: use untagged, vlan:ID, vlan:ID+ or qinq:OUTER:INNER")
}

fn run_vlan_sample(a: VlanSampleArgs) -> Result<()> {
    let file =
        File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut pcap = PcapWriter::new(BufWriter::new(file))?;
    let mut f = Vec::new();
    for seq in 0..a.count {
        let sig = Signature {
            test_id: 0x5A4D_0085,
            seq,
            count: a.count,
            sent_vlan: Some(a.vlan),
        };
        build_frame(&mut f, [0xff; 6], SAMPLE_SRC_MAC, &sig);
        pcap.write(a.start_epoch * 1_000_000 + seq as i64 * 200_000, &f)?;
    }
    pcap.finish()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Calls(a) => calls::run(*a),
        Command::AgentDay(a) => agent_day::run(a),
        Command::Handoff(a) => handoff::run(a),
        Command::Nailed(a) => nailed::run(a),
        Command::VlanSample(a) => run_vlan_sample(a),
        Command::CtiServer(a) => cti_server::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capgen: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
