//! capgen: writes pcap files of N concurrent SIP + RTP calls (untagged, 802.1Q or QinQ; PCMU or
//! PCMA; tones or speech from WAV files; loss, reordering, jitter, duplicates, SSRC changes) and a
//! JSON truth file computed from what was actually written, plus per-direction reference PCM.
//! Also writes one agent's day of calls (hold, consult, resume, next call; `agent_day`) and
//! vlantest's sample frames. Deterministic for a given `--seed`.

mod agent_day;
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;
use silentmon::media::g711;
use silentmon::vlantest::sample::{build_frame, SAMPLE_SRC_MAC};
use silentmon::vlantest::Signature;

use frame::{udp_frame, Encap};
use pcap_writer::PcapWriter;
use sip_text::{sdp, Dialog, SipParty};

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
    Calls(Box<CallsArgs>),
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

#[derive(clap::Args, Clone)]
struct CallsArgs {
    /// Concurrent calls.
    #[arg(long, default_value_t = 1)]
    calls: u32,
    /// Seconds of audio per call.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[command(flatten)]
    output: Output,
    /// untagged | vlan:ID | vlan:ID+ (ID, ID+1, ... per call) | qinq:OUTER:INNER
    #[arg(long, default_value = "untagged")]
    encap: String,
    /// pcmu | pcma | g722 | g729
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// G.729 with Annex B: silence goes as SID frames, or no packet at all (DTX).
    #[arg(long)]
    g729_annex_b: bool,
    /// Packetisation time in ms (10, 20, 30, 40).
    #[arg(long, default_value_t = 20)]
    ptime: u32,
    /// Caller audio from a WAV file (mono 16-bit, any rate) instead of tones.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Agent audio from a WAV file instead of tones.
    #[arg(long)]
    agent_wav: Option<PathBuf>,
    /// Packet loss, percent (interior packets only).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Loss may hit any packet, the first ones too (as a capture that starts in a bad
    /// stretch shows), not only interior ones.
    #[arg(long)]
    loss_anywhere: bool,
    /// Mean length of a loss burst, packets (Gilbert model; 1: independent losses).
    #[arg(long, default_value_t = 1.0)]
    loss_burst: f64,
    /// Packets delivered after their successor, percent.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Random capture-time jitter, ms (uniform 0..J).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Packet phase of each call: `aligned` (every call's packets on one 20 ms grid, so all
    /// calls send at the same instant: the worst case for a forwarder) or `random` (each call
    /// its own phase within a packet time, from the seed, as independent phones have).
    #[arg(long, default_value = "aligned", value_parser = ["aligned", "random"])]
    rtp_phase: String,
    /// Duplicated packets, percent.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Seconds into each call at which both directions change SSRC (and sequence/timestamp base).
    #[arg(long)]
    ssrc_change_at: Option<f64>,
    /// Number of the first agent (called party); call i reaches agent BASE+i.
    #[arg(long, default_value_t = 5001)]
    agent_base: u32,
    /// Address plan K: callers in 10.(2K+1).0.0/16, agents' phones in 10.(2K+2).0.0/16 (0:
    /// 10.1/10.2), so captures of other plans can be merged without clashing.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    subnet: u8,
    /// The agent is a mobile agent reached at this remote number (Request-URI carries it).
    #[arg(long)]
    mobile_agent: Option<String>,
    /// Only caller -> agent audio.
    #[arg(long)]
    one_way: bool,
    /// RTCP sender reports every 5 s per direction.
    #[arg(long)]
    rtcp: bool,
    /// No SIP at all: only RTP (as a SPAN sees calls signalled over TLS or SCCP).
    #[arg(long)]
    no_sip: bool,
    /// Encrypted media: the SDP offers and answers RTP/SAVP with an a=crypto key, and every
    /// payload is random bytes with a 10-byte authentication tag, as SRTP looks on the wire.
    #[arg(long)]
    srtp: bool,
    #[command(flatten)]
    tcp: sip_tcp::TcpOptions,
    #[command(flatten)]
    dtmf: dtmf::DtmfOptions,
    #[command(flatten)]
    fax: fax::FaxOptions,
    /// Write a CTI Server scenario for the calls (agents' states, BEGIN_CALL, RTP_STARTED /
    /// RTP_STOPPED with each agent's media endpoint, END_CALL), times from the capture's
    /// start, for `capgen cti-server`.
    #[arg(long, value_name = "FILE")]
    cti_scenario: Option<PathBuf>,
    /// Directory for per-direction reference PCM WAVs (8 kHz, what a receiver should decode).
    #[arg(long)]
    ref_dir: Option<PathBuf>,
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

/// One SSRC segment of a direction: what the truth file reports as a stream.
#[derive(Clone)]
struct Segment {
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    start_k: u64,
    written: u64,
    duplicates: u64,
    missing: u64,
    first_k: Option<u64>,
    last_k: Option<u64>,
}

struct Dir {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    audio: Audio,
    tone_hz: Option<f64>,
    segments: Vec<Segment>,
    reference: Vec<i16>,
    to_agent: bool,
    sr_sent: u64,
    octets: u64,
    /// Inside a loss burst.
    in_burst: bool,
    /// G.722 / G.729 state (None: G.711).
    encoder: Option<wideband::FrameEncoder>,
}

impl Dir {
    /// Whether the next packet is lost: `percent` of packets in all, in bursts of `burst`
    /// packets on average (Gilbert model: leave a burst with probability 1/burst, enter one
    /// with the probability that keeps the lost fraction at `percent`).
    fn loses(&mut self, rng: &mut Rng, percent: f64, burst: f64) -> bool {
        if burst <= 1.0 || percent >= 100.0 {
            return rng.chance(percent);
        }
        let leave = 100.0 / burst;
        self.in_burst = if self.in_burst {
            !rng.chance(leave)
        } else {
            rng.chance(leave * percent / (100.0 - percent))
        };
        self.in_burst
    }
}

pub(crate) struct Call {
    call_id: String,
    caller: String,
    called_uri_user: String,
    agent: String,
    caller_ip: Ipv4Addr,
    agent_ip: Ipv4Addr,
    encap: Encap,
    sip_start_us: i64,
    rtp_first_tick: u64,
    /// Offset of every RTP packet of the call within its packet time (`--rtp-phase`).
    rtp_phase_us: i64,
    dirs: Vec<Dir>,
}

impl Call {
    /// The call's SIP dialog (call `ci` of the capture): the caller reaches the agent.
    fn dialog(&self, ci: usize) -> Dialog {
        Dialog {
            call_id: self.call_id.clone(),
            caller: SipParty {
                display: "Caller".to_owned(),
                user: self.caller.clone(),
                host: self.caller_ip,
                tag: format!("f{ci}"),
            },
            callee: SipParty {
                display: format!("Agent {}", self.agent),
                user: self.agent.clone(),
                host: self.agent_ip,
                tag: format!("t{ci}"),
            },
        }
    }
}

/// Starts an RTP packet in `out` (cleared first): version 2, no CSRC, the 12-byte header.
fn rtp_header(out: &mut Vec<u8>, law: Law, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    out.clear();
    out.push(0x80);
    out.push(law.pt() | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[derive(Serialize)]
struct StreamTruth {
    src: String,
    dst: String,
    ssrc: u32,
    payload: String,
    packets: u64,
    expected: u64,
    lost: i64,
    missing: u64,
    duplicates: u64,
    call_id: String,
    direction: &'static str,
    vlans: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tone_hz: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_wav: Option<String>,
}

#[derive(Serialize)]
struct CallTruth {
    call_id: String,
    caller: String,
    called: String,
    agent: String,
    caller_media: String,
    agent_media: String,
    vlans: Vec<u16>,
    start: f64,
    end: f64,
    /// Holds: [re-INVITE to hold, re-INVITE to resume], seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    holds: Vec<[f64; 2]>,
    /// Digits the caller typed (`--dtmf`, `--dtmf-inband`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dtmf: Vec<DigitTruth>,
}

/// One typed digit: capture seconds, and milliseconds from the caller's first RTP packet.
#[derive(Serialize)]
struct DigitTruth {
    digit: char,
    inband: bool,
    start: f64,
    end: f64,
    stream_ms: [u64; 2],
}

#[derive(Serialize)]
struct Truth {
    packets: u64,
    streams: Vec<StreamTruth>,
    calls: Vec<CallTruth>,
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

/// A frame waiting in the reorder/jitter queue: (time µs, order, bytes, truth update).
type Queued = (
    Reverse<(i64, u64)>,
    Vec<u8>,
    Option<(usize, usize, usize, u64)>,
);

fn run_calls(a: CallsArgs) -> Result<()> {
    let law = parse_law(&a.codec)?;
    if a.ref_dir.is_some() && !law.is_g711() {
        bail!("--ref-dir writes reference PCM for G.711 calls only");
    }
    if ![10, 20, 30, 40].contains(&a.ptime) {
        bail!("--ptime must be 10, 20, 30 or 40");
    }
    let mut rng = Rng(a.output.seed);
    let caller_pcm = a
        .wav
        .as_deref()
        .map(read_wav_8k)
        .transpose()?
        .map(std::rc::Rc::new);
    let agent_pcm = a
        .agent_wav
        .as_deref()
        .map(read_wav_8k)
        .transpose()?
        .map(std::rc::Rc::new);
    let samples_per_packet = 8 * a.ptime as u64;
    let ptime_us = a.ptime as i64 * 1000;
    let base_us = a.output.start_epoch * 1_000_000;
    let packets_per_call = (a.duration * 1000.0 / a.ptime as f64).round().max(1.0) as u64;
    let dtmf_plan = dtmf::DtmfPlan::new(&a.dtmf, a.ptime)?;
    let fax_plan = fax::FaxPlan::new(&a.fax, a.ptime, packets_per_call)?;

    let mut calls: Vec<Call> = Vec::new();
    for i in 0..a.calls {
        let encap = parse_encap(&a.encap, i)?;
        let (callers, agents) = (2 * a.subnet + 1, 2 * a.subnet + 2);
        let caller_ip = Ipv4Addr::new(10, callers, (i / 250) as u8, (i % 250 + 1) as u8);
        let agent_ip = Ipv4Addr::new(10, agents, (i / 250) as u8, (i % 250 + 1) as u8);
        let sip_start_us = base_us + (i as i64 % 500) * 7_000;
        let rtp_first_tick =
            ((sip_start_us + 120_000 - base_us) + ptime_us - 1) as u64 / ptime_us as u64;
        let agent = (a.agent_base + i).to_string();
        let called_uri_user = a.mobile_agent.clone().unwrap_or_else(|| agent.clone());
        let seg = |rng: &mut Rng| Segment {
            ssrc: rng.next() as u32,
            seq0: rng.next() as u16,
            ts0: rng.next() as u32,
            start_k: 0,
            written: 0,
            duplicates: 0,
            missing: 0,
            first_k: None,
            last_k: None,
        };
        let caller_port = 20000 + 2 * (i % 5000) as u16;
        let agent_port = 30000 + 2 * (i % 5000) as u16;
        let caller_tone = 400.0 + 10.0 * i as f64;
        let agent_tone = 1000.0 + 10.0 * i as f64;
        let mut dirs = vec![Dir {
            src: (caller_ip, caller_port),
            dst: (agent_ip, agent_port),
            audio: match &caller_pcm {
                Some(p) => Audio::Pcm(p.clone()),
                None => Audio::Tone(caller_tone),
            },
            tone_hz: caller_pcm.is_none().then_some(caller_tone),
            segments: vec![seg(&mut rng)],
            reference: Vec::new(),
            to_agent: true,
            sr_sent: 0,
            octets: 0,
            in_burst: false,
            encoder: law.frame_encoder(a.g729_annex_b)?,
        }];
        if !a.one_way {
            dirs.push(Dir {
                src: (agent_ip, agent_port),
                dst: (caller_ip, caller_port),
                audio: match &agent_pcm {
                    Some(p) => Audio::Pcm(p.clone()),
                    None => Audio::Tone(agent_tone),
                },
                tone_hz: agent_pcm.is_none().then_some(agent_tone),
                segments: vec![seg(&mut rng)],
                reference: Vec::new(),
                to_agent: false,
                sr_sent: 0,
                octets: 0,
                in_burst: false,
                encoder: law.frame_encoder(a.g729_annex_b)?,
            });
        }
        calls.push(Call {
            call_id: format!("{:08x}-{i}@capgen", a.output.seed as u32),
            caller: format!("+4930555{:04}", i % 10000),
            called_uri_user,
            agent,
            caller_ip,
            agent_ip,
            encap,
            sip_start_us,
            rtp_first_tick,
            rtp_phase_us: if a.rtp_phase == "random" {
                // Its own generator, so `aligned` output stays what it was.
                (Rng(a.output.seed ^ (i as u64).wrapping_mul(0x9E37_79B9)).next() % ptime_us as u64)
                    as i64
            } else {
                0
            },
            dirs,
        });
    }

    if let Some(path) = &a.cti_scenario {
        let s = cti_server::scenario(&calls, base_us, ptime_us, packets_per_call);
        std::fs::write(path, serde_json::to_string_pretty(&s)?)?;
    }
    let mut pcap = a.output.create_pcap()?;
    let mut heap: BinaryHeap<Queued> = BinaryHeap::new();
    let mut order: u64 = 0;
    let mut frame_buf = Vec::with_capacity(2048);
    let mut payload = Vec::with_capacity(512);
    let mut ip_id: u16 = 0;
    let mut written_total: u64 = 0;
    let max_delay_us = (a.jitter_ms * 1000.0) as i64 + ptime_us + 2000;

    let mut push = |heap: &mut BinaryHeap<Queued>,
                    t: i64,
                    bytes: Vec<u8>,
                    truth: Option<(usize, usize, usize, u64)>| {
        order += 1;
        heap.push((Reverse((t, order)), bytes, truth));
    };

    // SIP setup for every call.
    let mut tcp_conns: Vec<sip_tcp::Connection> = calls
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let caller = (c.caller_ip, 40_000 + (ci % 20_000) as u16);
            // Not from the PRNG (UDP captures stay as they were); the agent's side wraps
            // within its first messages.
            let isn = [
                (ci as u32).wrapping_mul(0x9E37_79B9),
                u32::MAX - 300 + ci as u32,
            ];
            sip_tcp::Connection::new(caller, (c.agent_ip, 5060), isn)
        })
        .collect();
    for (ci, c) in calls.iter().enumerate().filter(|_| !a.no_sip) {
        let mut offer = sdp(c.caller_ip, c.dirs[0].src.1, law, a.ptime, "sendrecv");
        let mut answer = sdp(c.agent_ip, c.dirs[0].dst.1, law, a.ptime, "sendrecv");
        if a.srtp {
            for (body, key) in [
                (&mut offer, "c2VjcmV0IG9mZmVyIGtleSBvZiAzMCBieXRlcw"),
                (&mut answer, "c2VjcmV0IGFuc3dlciBrZXkgb2YgMzAgYnl0ZXM"),
            ] {
                *body = body.replace("RTP/AVP", "RTP/SAVP")
                    + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n");
            }
        }
        let msgs = c.dialog(ci).setup(&c.called_uri_user, &offer, &answer);
        let msgs = msgs.map(|(dt, by_caller, m)| (c.sip_start_us + dt, by_caller, m));
        for (t, frame) in sip_frames(c, &mut tcp_conns[ci], &a.tcp, &mut ip_id, msgs) {
            push(&mut heap, t, frame, None);
        }
    }

    let last_tick = calls.iter().map(|c| c.rtp_first_tick).max().unwrap_or(0) + packets_per_call;
    let ssrc_change_k = a
        .ssrc_change_at
        .map(|s| (s * 1000.0 / a.ptime as f64).round() as u64)
        .filter(|&k| k > 2 && k + 2 < packets_per_call);
    for tick in 0..=last_tick + 1 {
        let now = base_us + tick as i64 * ptime_us;
        for (ci, c) in calls.iter_mut().enumerate() {
            if tick < c.rtp_first_tick || tick >= c.rtp_first_tick + packets_per_call {
                continue;
            }
            let k = tick - c.rtp_first_tick;
            for (di, d) in c.dirs.iter_mut().enumerate() {
                if fax_plan.is_some_and(|p| p.is_fax(k)) {
                    let seq = 0x7FC0u16.wrapping_add(k as u16);
                    let data: [u8; 16] = std::array::from_fn(|_| rng.next() as u8);
                    ip_id = ip_id.wrapping_add(1);
                    let udptl = fax::udptl(seq, &data);
                    udp_frame(
                        &mut frame_buf,
                        c.encap,
                        d.src.0,
                        d.src.1,
                        d.dst.0,
                        d.dst.1,
                        ip_id,
                        &udptl,
                    );
                    push(&mut heap, now + c.rtp_phase_us, frame_buf.clone(), None);
                    continue;
                }
                let back_to_audio = fax_plan.is_some_and(|p| p.back_k == Some(k));
                if Some(k) == ssrc_change_k || back_to_audio {
                    d.segments.push(Segment {
                        ssrc: rng.next() as u32,
                        seq0: rng.next() as u16,
                        ts0: rng.next() as u32,
                        start_k: k,
                        written: 0,
                        duplicates: 0,
                        missing: 0,
                        first_k: None,
                        last_k: None,
                    });
                }
                let si = d.segments.len() - 1;
                let seg = &d.segments[si];
                let kk = k - seg.start_k;
                let seg_len = ssrc_change_k
                    .filter(|_| si == 0)
                    .unwrap_or(packets_per_call)
                    - seg.start_k;
                let interior = kk >= 2 && kk + 2 < seg_len;
                rtp_header(
                    &mut payload,
                    law,
                    kk == 0,
                    seg.seq0.wrapping_add(kk as u16),
                    seg.ts0.wrapping_add((kk * samples_per_packet) as u32),
                    seg.ssrc,
                );
                let lost = (interior || a.loss_anywhere) && d.loses(&mut rng, a.loss, a.loss_burst);
                let slot = (dtmf_plan.as_ref())
                    .filter(|_| d.to_agent)
                    .map_or(dtmf::Slot::Audio, |p| p.slot(k));
                let event = matches!(slot, dtmf::Slot::Event { .. });
                let pcm8 = (0..samples_per_packet).map(|n| {
                    let at = k * samples_per_packet + n;
                    match slot {
                        dtmf::Slot::Tone(digit) => dtmf::tone_sample(digit, at),
                        _ => d.audio.sample(at),
                    }
                });
                match &mut d.encoder {
                    Some(enc) => enc.encode(&pcm8.collect::<Vec<_>>(), &mut payload),
                    None => {
                        for x in pcm8 {
                            let code = law.encode(x);
                            payload.push(code);
                            if a.ref_dir.is_some() {
                                d.reference
                                    .push(if lost || event { 0 } else { law.decode(code) });
                            }
                        }
                    }
                }
                if payload.len() == 12 && !event {
                    // G.729 Annex B sends nothing in silence (DTX).
                    continue;
                }
                if let dtmf::Slot::Event {
                    digit,
                    start_k,
                    end,
                } = slot
                {
                    let seg = &d.segments[si];
                    let ts = seg
                        .ts0
                        .wrapping_add(((start_k - seg.start_k) * samples_per_packet) as u32);
                    let length = if end {
                        dtmf::DIGIT_PACKETS
                    } else {
                        k - start_k + 1
                    };
                    let duration = (length * samples_per_packet) as u16;
                    payload.truncate(12);
                    payload[1] = 101 | if k == start_k { 0x80 } else { 0 };
                    payload[4..8].copy_from_slice(&ts.to_be_bytes());
                    payload.extend_from_slice(&dtmf::event_payload(digit, end, duration));
                }
                if a.srtp {
                    // The cipher's output and its tag: uniform bytes.
                    let start = payload.len() - samples_per_packet as usize;
                    for b in &mut payload[start..] {
                        *b = rng.next() as u8;
                    }
                    payload.extend((0..10).map(|_| rng.next() as u8));
                }
                d.octets += samples_per_packet;
                if lost {
                    d.segments[si].missing += 1;
                    continue;
                }
                let mut t = now + c.rtp_phase_us + (rng.unit() * a.jitter_ms * 1000.0) as i64;
                if interior && rng.chance(a.reorder) {
                    t += ptime_us + 1000;
                }
                ip_id = ip_id.wrapping_add(1);
                udp_frame(
                    &mut frame_buf,
                    c.encap,
                    d.src.0,
                    d.src.1,
                    d.dst.0,
                    d.dst.1,
                    ip_id,
                    &payload,
                );
                push(&mut heap, t, frame_buf.clone(), Some((ci, di, si, k)));
                if matches!(slot, dtmf::Slot::Event { end: true, .. }) {
                    // The end packet twice more, same sequence number (RFC 4733 2.5.1.4).
                    for copy in 1..=dtmf::END_COPIES {
                        d.segments[si].duplicates += 1;
                        let at = t + copy as i64 * 3000;
                        push(&mut heap, at, frame_buf.clone(), Some((ci, di, si, k)));
                    }
                }
                if interior && rng.chance(a.duplicate) {
                    d.segments[si].duplicates += 1;
                    push(&mut heap, t + 50, frame_buf.clone(), Some((ci, di, si, k)));
                }
                // RTCP sender report every 5 s.
                if a.rtcp && k > 0 && k % (5000 / a.ptime as u64) == 0 {
                    d.sr_sent += 1;
                    let mut sr = vec![0x80, 200, 0, 6];
                    sr.extend_from_slice(&d.segments[si].ssrc.to_be_bytes());
                    let secs = (now / 1_000_000) as u64 + 2_208_988_800;
                    sr.extend_from_slice(&(secs as u32).to_be_bytes());
                    sr.extend_from_slice(&0u32.to_be_bytes());
                    sr.extend_from_slice(
                        &d.segments[si]
                            .ts0
                            .wrapping_add((kk * samples_per_packet) as u32)
                            .to_be_bytes(),
                    );
                    sr.extend_from_slice(&(k as u32).to_be_bytes());
                    sr.extend_from_slice(&(d.octets as u32).to_be_bytes());
                    udp_frame(
                        &mut frame_buf,
                        c.encap,
                        d.src.0,
                        d.src.1 + 1,
                        d.dst.0,
                        d.dst.1 + 1,
                        ip_id,
                        &sr,
                    );
                    push(&mut heap, now + 1000, frame_buf.clone(), None);
                }
            }
        }
        // Re-INVITEs to fax and back.
        for (ci, c) in calls.iter().enumerate().filter(|_| !a.no_sip) {
            let Some(plan) = fax_plan else { break };
            let port = (c.dirs[0].src.1, c.dirs[0].dst.1);
            let (offer, answer, cseq) =
                if tick + fax::REINVITE_LEAD == c.rtp_first_tick + plan.start_k {
                    let style = a.fax.t38_sdp.as_str();
                    let offer = fax::t38_sdp(c.caller_ip, port.0, law, a.ptime, style);
                    (
                        offer,
                        fax::t38_sdp(c.agent_ip, port.1, law, a.ptime, style),
                        2,
                    )
                } else if plan
                    .back_k
                    .is_some_and(|b| tick + fax::REINVITE_LEAD == c.rtp_first_tick + b)
                {
                    let offer = sdp(c.caller_ip, port.0, law, a.ptime, "sendrecv");
                    (offer, sdp(c.agent_ip, port.1, law, a.ptime, "sendrecv"), 3)
                } else {
                    continue;
                };
            let msgs = c
                .dialog(ci)
                .in_dialog("INVITE", true, cseq, &offer, &answer);
            let msgs = msgs.into_iter().map(|(dt, by, m)| (now + dt, by, m));
            for (t, frame) in sip_frames(c, &mut tcp_conns[ci], &a.tcp, &mut ip_id, msgs) {
                push(&mut heap, t, frame, None);
            }
        }
        // BYE when a call's audio is over.
        let bye_cseq = if fax_plan.is_some() { "4 BYE" } else { "2 BYE" };
        for (ci, c) in calls.iter().enumerate().filter(|_| !a.no_sip) {
            if tick == c.rtp_first_tick + packets_per_call {
                let dialog = c.dialog(ci);
                let bye = dialog.message(
                    &format!("BYE sip:{}@{} SIP/2.0", c.called_uri_user, c.agent_ip),
                    true,
                    true,
                    bye_cseq,
                    "",
                );
                let ok = dialog.message("SIP/2.0 200 OK", true, true, bye_cseq, "");
                let msgs = [(now + 20_000, true, bye), (now + 25_000, false, ok)];
                let conn = &mut tcp_conns[ci];
                for (t, frame) in sip_frames(c, conn, &a.tcp, &mut ip_id, msgs) {
                    push(&mut heap, t, frame, None);
                }
                if a.tcp.sip_tcp {
                    for (t, frame) in conn.close(c.encap, &mut ip_id, now + 30_000) {
                        push(&mut heap, t, frame, None);
                    }
                }
            }
        }
        // Write everything that can no longer be overtaken.
        while heap
            .peek()
            .is_some_and(|(Reverse((t, _)), _, _)| *t <= now - max_delay_us)
        {
            let entry = heap.pop().expect("peeked");
            write_entry(&mut pcap, &mut calls, entry)?;
            written_total += 1;
        }
    }
    while let Some(entry) = heap.pop() {
        write_entry(&mut pcap, &mut calls, entry)?;
        written_total += 1;
    }
    pcap.finish()?;

    // Truth, from what was written.
    let mut streams = Vec::new();
    let mut call_truths = Vec::new();
    if let Some(dir) = &a.ref_dir {
        std::fs::create_dir_all(dir)?;
    }
    for c in &calls {
        for d in &c.dirs {
            let direction = if d.to_agent { "to_agent" } else { "from_agent" };
            let ref_wav = match &a.ref_dir {
                Some(dir) => {
                    let path = dir.join(format!("{}-{direction}.wav", c.call_id.replace('@', "_")));
                    let spec = hound::WavSpec {
                        channels: 1,
                        sample_rate: 8000,
                        bits_per_sample: 16,
                        sample_format: hound::SampleFormat::Int,
                    };
                    let mut w = hound::WavWriter::create(&path, spec)?;
                    for s in &d.reference {
                        w.write_sample(*s)?;
                    }
                    w.finalize()?;
                    Some(path.display().to_string())
                }
                None => None,
            };
            for s in &d.segments {
                let (Some(first), Some(last)) = (s.first_k, s.last_k) else {
                    continue;
                };
                let expected = last + 1 - first;
                streams.push(StreamTruth {
                    src: format!("{}:{}", d.src.0, d.src.1),
                    dst: format!("{}:{}", d.dst.0, d.dst.1),
                    ssrc: s.ssrc,
                    payload: law.name().to_owned(),
                    packets: s.written,
                    expected,
                    lost: expected as i64 - s.written as i64,
                    missing: s.missing,
                    duplicates: s.duplicates,
                    call_id: c.call_id.clone(),
                    direction,
                    vlans: c.encap.vlans(),
                    tone_hz: d.tone_hz,
                    ref_wav: ref_wav.clone(),
                });
            }
        }
        let start = (c.sip_start_us - base_us) as f64 / 1e6;
        call_truths.push(CallTruth {
            call_id: c.call_id.clone(),
            caller: c.caller.clone(),
            called: c.called_uri_user.clone(),
            agent: c.agent.clone(),
            caller_media: format!("{}:{}", c.dirs[0].src.0, c.dirs[0].src.1),
            agent_media: format!("{}:{}", c.dirs[0].dst.0, c.dirs[0].dst.1),
            vlans: c.encap.vlans(),
            start,
            end: ((c.rtp_first_tick + packets_per_call) as i64 * ptime_us + 20_000) as f64 / 1e6,
            holds: Vec::new(),
            dtmf: dtmf_plan.as_ref().map_or_else(Vec::new, |p| {
                let at = |k: u64| {
                    ((c.rtp_first_tick + k) as i64 * ptime_us + c.rtp_phase_us) as f64 / 1e6
                };
                let ms = |k: u64| k * u64::from(a.ptime);
                (p.windows().into_iter())
                    .map(|(digit, from, to)| DigitTruth {
                        digit,
                        inband: a.dtmf.dtmf_inband.is_some(),
                        start: at(from),
                        end: at(to),
                        stream_ms: [ms(from), ms(to)],
                    })
                    .collect()
            }),
        });
    }
    a.output.write_truth(&Truth {
        packets: written_total,
        streams,
        calls: call_truths,
    })?;
    Ok(())
}

/// The frames of a call's SIP messages: one UDP datagram each (port 5060 both ends), or with
/// `--sip-tcp` segments of the call's connection.
fn sip_frames(
    c: &Call,
    conn: &mut sip_tcp::Connection,
    tcp: &sip_tcp::TcpOptions,
    ip_id: &mut u16,
    msgs: impl IntoIterator<Item = sip_text::Timed>,
) -> Vec<sip_tcp::TimedFrame> {
    if tcp.sip_tcp {
        let writes = sip_tcp::writes(msgs, tcp.tcp_coalesce);
        return writes
            .into_iter()
            .flat_map(|w| conn.write(tcp, c.encap, ip_id, w))
            .collect();
    }
    msgs.into_iter()
        .map(|(t, by_caller, m)| {
            let (s, d) = if by_caller {
                (c.caller_ip, c.agent_ip)
            } else {
                (c.agent_ip, c.caller_ip)
            };
            *ip_id = ip_id.wrapping_add(1);
            let mut frame = Vec::with_capacity(64 + m.len());
            udp_frame(&mut frame, c.encap, s, 5060, d, 5060, *ip_id, &m);
            (t, frame)
        })
        .collect()
}

/// Writes one queued frame and counts it in the truth of its stream (in write order).
fn write_entry<W: std::io::Write>(
    pcap: &mut PcapWriter<W>,
    calls: &mut [Call],
    (Reverse((t, _)), bytes, truth): Queued,
) -> Result<()> {
    pcap.write(t, &bytes)?;
    if let Some((ci, di, si, k)) = truth {
        let s = &mut calls[ci].dirs[di].segments[si];
        s.written += 1;
        s.first_k.get_or_insert(k);
        s.last_k = Some(k);
    }
    Ok(())
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
        Command::Calls(a) => run_calls(*a),
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
