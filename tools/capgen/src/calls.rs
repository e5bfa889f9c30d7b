//! `capgen calls`: N concurrent SIP + RTP calls (untagged, 802.1Q or QinQ; G.711, G.722 or
//! G.729; tones or speech from WAV files; loss, reordering, jitter, duplicates, SSRC changes,
//! DTMF, T.38 fax, SRTP's look, SIP over UDP or TCP) and a JSON truth file computed from what
//! was actually written, plus per-direction reference PCM.
//!
//! How a run goes: a [`Plan`] from the arguments, the calls (addresses, tones, SSRC segments
//! from the seeded PRNG), then packet time by packet time ([`Gen::tick`]) each direction's
//! packet, the re-INVITEs and BYEs due, all through a time-ordered [`Queue`] that jitter and
//! reordering reach into, written out once nothing can overtake it. The PRNG is drawn in one
//! fixed order, so a seed gives the same bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::frame::{udp_frame, Encap};
use crate::pcap_writer::PcapWriter;
use crate::sip_text::{self, sdp, Dialog, SipParty};
use crate::{
    cti_server, dtmf, fax, parse_encap, parse_law, read_wav_8k, sip_tcp, wideband, Audio, Law,
    Output, Rng,
};

#[derive(clap::Args, Clone)]
pub(crate) struct CallsArgs {
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

pub(crate) struct Dir {
    pub(crate) src: (Ipv4Addr, u16),
    pub(crate) dst: (Ipv4Addr, u16),
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
    pub(crate) call_id: String,
    pub(crate) caller: String,
    pub(crate) called_uri_user: String,
    pub(crate) agent: String,
    pub(crate) caller_ip: Ipv4Addr,
    pub(crate) agent_ip: Ipv4Addr,
    pub(crate) encap: Encap,
    pub(crate) sip_start_us: i64,
    pub(crate) rtp_first_tick: u64,
    /// Offset of every RTP packet of the call within its packet time (`--rtp-phase`).
    pub(crate) rtp_phase_us: i64,
    pub(crate) dirs: Vec<Dir>,
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
pub(crate) fn rtp_header(out: &mut Vec<u8>, law: Law, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    out.clear();
    out.push(0x80);
    out.push(law.pt() | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[derive(Serialize)]
pub(crate) struct StreamTruth {
    pub(crate) src: String,
    pub(crate) dst: String,
    pub(crate) ssrc: u32,
    pub(crate) payload: String,
    pub(crate) packets: u64,
    pub(crate) expected: u64,
    pub(crate) lost: i64,
    pub(crate) missing: u64,
    pub(crate) duplicates: u64,
    pub(crate) call_id: String,
    pub(crate) direction: &'static str,
    pub(crate) vlans: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tone_hz: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ref_wav: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct CallTruth {
    pub(crate) call_id: String,
    pub(crate) caller: String,
    pub(crate) called: String,
    pub(crate) agent: String,
    pub(crate) caller_media: String,
    pub(crate) agent_media: String,
    pub(crate) vlans: Vec<u16>,
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// Holds: [re-INVITE to hold, re-INVITE to resume], seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) holds: Vec<[f64; 2]>,
    /// Digits the caller typed (`--dtmf`, `--dtmf-inband`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dtmf: Vec<DigitTruth>,
}

/// One typed digit: capture seconds, and milliseconds from the caller's first RTP packet.
#[derive(Serialize)]
pub(crate) struct DigitTruth {
    pub(crate) digit: char,
    pub(crate) inband: bool,
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) stream_ms: [u64; 2],
}

#[derive(Serialize)]
pub(crate) struct Truth {
    pub(crate) packets: u64,
    pub(crate) streams: Vec<StreamTruth>,
    pub(crate) calls: Vec<CallTruth>,
}

/// A frame waiting in the reorder/jitter queue: (time µs, order, bytes, truth update).
type Queued = (
    Reverse<(i64, u64)>,
    Vec<u8>,
    Option<(usize, usize, usize, u64)>,
);

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

/// What follows from the arguments, fixed for the run.
struct Plan<'a> {
    a: &'a CallsArgs,
    law: Law,
    base_us: i64,
    ptime_us: i64,
    samples_per_packet: u64,
    packets_per_call: u64,
    dtmf: Option<dtmf::DtmfPlan>,
    fax: Option<fax::FaxPlan>,
    /// The packet (of each call) at which both directions change SSRC.
    ssrc_change_k: Option<u64>,
}

impl<'a> Plan<'a> {
    fn new(a: &'a CallsArgs) -> Result<Plan<'a>> {
        let law = parse_law(&a.codec)?;
        if a.ref_dir.is_some() && !law.is_g711() {
            bail!("--ref-dir writes reference PCM for G.711 calls only");
        }
        if ![10, 20, 30, 40].contains(&a.ptime) {
            bail!("--ptime must be 10, 20, 30 or 40");
        }
        let packets_per_call = (a.duration * 1000.0 / a.ptime as f64).round().max(1.0) as u64;
        Ok(Plan {
            a,
            law,
            base_us: a.output.start_epoch * 1_000_000,
            ptime_us: a.ptime as i64 * 1000,
            samples_per_packet: 8 * a.ptime as u64,
            packets_per_call,
            dtmf: dtmf::DtmfPlan::new(&a.dtmf, a.ptime)?,
            fax: fax::FaxPlan::new(&a.fax, a.ptime, packets_per_call)?,
            ssrc_change_k: a
                .ssrc_change_at
                .map(|s| (s * 1000.0 / a.ptime as f64).round() as u64)
                .filter(|&k| k > 2 && k + 2 < packets_per_call),
        })
    }

    /// Call `i` (agent BASE+i): its addresses, ports, tones, phase and directions.
    fn call(
        &self,
        i: u32,
        rng: &mut Rng,
        pcm: &[Option<std::rc::Rc<Vec<i16>>>; 2],
    ) -> Result<Call> {
        let a = self.a;
        let (callers, agents) = (2 * a.subnet + 1, 2 * a.subnet + 2);
        let caller_ip = Ipv4Addr::new(10, callers, (i / 250) as u8, (i % 250 + 1) as u8);
        let agent_ip = Ipv4Addr::new(10, agents, (i / 250) as u8, (i % 250 + 1) as u8);
        let sip_start_us = self.base_us + (i as i64 % 500) * 7_000;
        let ptime_us = self.ptime_us;
        let rtp_first_tick =
            ((sip_start_us + 120_000 - self.base_us) + ptime_us - 1) as u64 / ptime_us as u64;
        let agent = (a.agent_base + i).to_string();
        let caller = (caller_ip, 20000 + 2 * (i % 5000) as u16);
        let phone = (agent_ip, 30000 + 2 * (i % 5000) as u16);
        let mut dirs = vec![self.dir((caller, phone), 400.0 + 10.0 * i as f64, &pcm[0], rng)?];
        if !a.one_way {
            let mut back = self.dir((phone, caller), 1000.0 + 10.0 * i as f64, &pcm[1], rng)?;
            back.to_agent = false;
            dirs.push(back);
        }
        Ok(Call {
            call_id: format!("{:08x}-{i}@capgen", a.output.seed as u32),
            caller: format!("+4930555{:04}", i % 10000),
            called_uri_user: a.mobile_agent.clone().unwrap_or_else(|| agent.clone()),
            agent,
            caller_ip,
            agent_ip,
            encap: parse_encap(&a.encap, i)?,
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
        })
    }

    /// One direction from `src` to `dst` (the caller's, to the agent, until told otherwise):
    /// `pcm` when given, else a tone of `tone` Hz.
    fn dir(
        &self,
        (src, dst): ((Ipv4Addr, u16), (Ipv4Addr, u16)),
        tone: f64,
        pcm: &Option<std::rc::Rc<Vec<i16>>>,
        rng: &mut Rng,
    ) -> Result<Dir> {
        Ok(Dir {
            src,
            dst,
            audio: match pcm {
                Some(p) => Audio::Pcm(p.clone()),
                None => Audio::Tone(tone),
            },
            tone_hz: pcm.is_none().then_some(tone),
            segments: vec![Segment::new(rng, 0)],
            reference: Vec::new(),
            to_agent: true,
            sr_sent: 0,
            octets: 0,
            in_burst: false,
            encoder: self.law.frame_encoder(self.a.g729_annex_b)?,
        })
    }
}

impl Segment {
    /// A segment starting at packet `start_k`, its SSRC and bases from `rng`.
    fn new(rng: &mut Rng, start_k: u64) -> Segment {
        Segment {
            ssrc: rng.next() as u32,
            seq0: rng.next() as u16,
            ts0: rng.next() as u32,
            start_k,
            written: 0,
            duplicates: 0,
            missing: 0,
            first_k: None,
            last_k: None,
        }
    }
}

/// The frames in the making, in time order (jitter and reordering move them), written out once
/// no later frame can overtake them.
struct Queue {
    heap: BinaryHeap<Queued>,
    /// Ties keep the order frames were made in.
    order: u64,
    pcap: PcapWriter<BufWriter<File>>,
    written: u64,
}

impl Queue {
    fn push(&mut self, t: i64, bytes: Vec<u8>, truth: Option<(usize, usize, usize, u64)>) {
        self.order += 1;
        self.heap.push((Reverse((t, self.order)), bytes, truth));
    }

    fn push_all(&mut self, frames: Vec<sip_tcp::TimedFrame>) {
        for (t, frame) in frames {
            self.push(t, frame, None);
        }
    }

    /// Writes the frames due at or before `until` (all with None), counting each in `calls`.
    fn write(&mut self, calls: &mut [Call], until: Option<i64>) -> Result<()> {
        while let Some((Reverse((t, _)), _, _)) = self.heap.peek() {
            if until.is_some_and(|u| *t > u) {
                break;
            }
            let entry = self.heap.pop().expect("peeked");
            write_entry(&mut self.pcap, calls, entry)?;
            self.written += 1;
        }
        Ok(())
    }
}

/// One RTP packet made for a direction, before it is sent (or lost).
struct Packet {
    /// Index in the segment.
    kk: u64,
    /// Not among a segment's first or last two packets (where loss, reordering and
    /// duplicates may fall).
    interior: bool,
    lost: bool,
    slot: dtmf::Slot,
}

/// The `calls` run: the plan, the calls, the SIP connections and the queue.
struct Gen<'a> {
    p: Plan<'a>,
    rng: Rng,
    calls: Vec<Call>,
    tcp: Vec<sip_tcp::Connection>,
    ip_id: u16,
    frame_buf: Vec<u8>,
    payload: Vec<u8>,
    q: Queue,
}

pub(crate) fn run(a: CallsArgs) -> Result<()> {
    let p = Plan::new(&a)?;
    let mut rng = Rng(a.output.seed);
    let read = |w: &Option<PathBuf>| {
        w.as_deref()
            .map(read_wav_8k)
            .transpose()
            .map(|p| p.map(std::rc::Rc::new))
    };
    let pcm = [read(&a.wav)?, read(&a.agent_wav)?];
    let calls = (0..a.calls)
        .map(|i| p.call(i, &mut rng, &pcm))
        .collect::<Result<Vec<Call>>>()?;
    if let Some(path) = &a.cti_scenario {
        let s = cti_server::scenario(&calls, p.base_us, p.ptime_us, p.packets_per_call);
        std::fs::write(path, serde_json::to_string_pretty(&s)?)?;
    }
    let mut g = Gen::new(p, rng, calls)?;
    g.sip_setup();
    let last_tick =
        g.calls.iter().map(|c| c.rtp_first_tick).max().unwrap_or(0) + g.p.packets_per_call;
    for tick in 0..=last_tick + 1 {
        g.tick(tick)?;
    }
    g.q.write(&mut g.calls, None)?;
    let Gen { p, calls, q, .. } = g;
    q.pcap.finish()?;
    a.output.write_truth(&truth(&p, &calls, q.written)?)?;
    Ok(())
}

impl<'a> Gen<'a> {
    fn new(p: Plan<'a>, rng: Rng, calls: Vec<Call>) -> Result<Gen<'a>> {
        let tcp = calls
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
        let q = Queue {
            heap: BinaryHeap::new(),
            order: 0,
            pcap: p.a.output.create_pcap()?,
            written: 0,
        };
        Ok(Gen {
            p,
            rng,
            calls,
            tcp,
            ip_id: 0,
            frame_buf: Vec::with_capacity(2048),
            payload: Vec::with_capacity(512),
            q,
        })
    }

    /// Sends call `ci`'s SIP messages `msgs`.
    fn sip(&mut self, ci: usize, msgs: impl IntoIterator<Item = sip_text::Timed>) {
        let c = &self.calls[ci];
        let frames = sip_frames(c, &mut self.tcp[ci], &self.p.a.tcp, &mut self.ip_id, msgs);
        self.q.push_all(frames);
    }

    /// Every call's INVITE, answer and ACK (not with --no-sip).
    fn sip_setup(&mut self) {
        let (a, law) = (self.p.a, self.p.law);
        for ci in (0..self.calls.len()).filter(|_| !a.no_sip) {
            let c = &self.calls[ci];
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
            let start = c.sip_start_us;
            let msgs: Vec<sip_text::Timed> = msgs
                .map(|(dt, by_caller, m)| (start + dt, by_caller, m))
                .into_iter()
                .collect();
            self.sip(ci, msgs);
        }
    }

    /// One packet time: every call's packets, re-INVITEs and BYEs due, then what can no
    /// longer be overtaken written out.
    fn tick(&mut self, tick: u64) -> Result<()> {
        let now = self.p.base_us + tick as i64 * self.p.ptime_us;
        for ci in 0..self.calls.len() {
            let first = self.calls[ci].rtp_first_tick;
            if tick < first || tick >= first + self.p.packets_per_call {
                continue;
            }
            for di in 0..self.calls[ci].dirs.len() {
                self.direction(ci, di, tick - first, now);
            }
        }
        self.fax_reinvites(tick, now);
        self.byes(tick, now);
        let max_delay_us = (self.p.a.jitter_ms * 1000.0) as i64 + self.p.ptime_us + 2000;
        self.q.write(&mut self.calls, Some(now - max_delay_us))
    }

    /// Packet `k` of call `ci`'s direction `di`: T.38 during a fax, else RTP (and RTCP).
    fn direction(&mut self, ci: usize, di: usize, k: u64, now: i64) {
        if self.p.fax.is_some_and(|p| p.is_fax(k)) {
            return self.fax_packet(ci, di, k, now);
        }
        let back_to_audio = self.p.fax.is_some_and(|p| p.back_k == Some(k));
        if Some(k) == self.p.ssrc_change_k || back_to_audio {
            let seg = Segment::new(&mut self.rng, k);
            self.calls[ci].dirs[di].segments.push(seg);
        }
        let si = self.calls[ci].dirs[di].segments.len() - 1;
        let Some(pkt) = self.rtp_payload(ci, di, si, k) else {
            return;
        };
        if pkt.lost {
            self.calls[ci].dirs[di].segments[si].missing += 1;
            return;
        }
        self.send_rtp(ci, di, si, k, now, &pkt);
        if self.p.a.rtcp && k > 0 && k.is_multiple_of(5000 / self.p.a.ptime as u64) {
            self.sender_report(ci, di, si, (k, pkt.kk), now);
        }
    }

    /// A UDPTL packet of random data (the fax's T.38).
    fn fax_packet(&mut self, ci: usize, di: usize, k: u64, now: i64) {
        let seq = 0x7FC0u16.wrapping_add(k as u16);
        let data: [u8; 16] = std::array::from_fn(|_| self.rng.next() as u8);
        self.ip_id = self.ip_id.wrapping_add(1);
        let udptl = fax::udptl(seq, &data);
        let (c, d) = (&self.calls[ci], &self.calls[ci].dirs[di]);
        udp_frame(
            &mut self.frame_buf,
            c.encap,
            d.src.0,
            d.src.1,
            d.dst.0,
            d.dst.1,
            self.ip_id,
            &udptl,
        );
        let t = now + c.rtp_phase_us;
        self.q.push(t, self.frame_buf.clone(), None);
    }

    /// Packet `k` of segment `si` in `self.payload`: header, whether it is lost, the audio
    /// (or DTMF) encoded, the reference PCM, SRTP's look. None: G.729 DTX sends nothing.
    fn rtp_payload(&mut self, ci: usize, di: usize, si: usize, k: u64) -> Option<Packet> {
        let Gen {
            p,
            rng,
            calls,
            payload,
            ..
        } = self;
        let (a, law, spp) = (p.a, p.law, p.samples_per_packet);
        let d = &mut calls[ci].dirs[di];
        let seg = &d.segments[si];
        let kk = k - seg.start_k;
        let seg_len = p
            .ssrc_change_k
            .filter(|_| si == 0)
            .unwrap_or(p.packets_per_call)
            - seg.start_k;
        let interior = kk >= 2 && kk + 2 < seg_len;
        let (seq, ts) = (
            seg.seq0.wrapping_add(kk as u16),
            seg.ts0.wrapping_add((kk * spp) as u32),
        );
        rtp_header(payload, law, kk == 0, seq, ts, seg.ssrc);
        let lost = (interior || a.loss_anywhere) && d.loses(rng, a.loss, a.loss_burst);
        let slot = (p.dtmf.as_ref())
            .filter(|_| d.to_agent)
            .map_or(dtmf::Slot::Audio, |p| p.slot(k));
        let event = matches!(slot, dtmf::Slot::Event { .. });
        d.encode(p, payload, (k, slot), lost || event);
        if payload.len() == 12 && !event {
            // G.729 Annex B sends nothing in silence (DTX).
            return None;
        }
        if let dtmf::Slot::Event { .. } = slot {
            event_packet(payload, &d.segments[si], (k, slot), spp);
        }
        if a.srtp {
            // The cipher's output and its tag: uniform bytes.
            let start = payload.len() - spp as usize;
            for b in &mut payload[start..] {
                *b = rng.next() as u8;
            }
            payload.extend((0..10).map(|_| rng.next() as u8));
        }
        d.octets += spp;
        Some(Packet {
            kk,
            interior,
            lost,
            slot,
        })
    }

    /// Sends `self.payload` (packet `k`) at its time, jittered, maybe reordered; an RFC 4733
    /// end packet twice more; maybe a duplicate.
    fn send_rtp(&mut self, ci: usize, di: usize, si: usize, k: u64, now: i64, pkt: &Packet) {
        let a = self.p.a;
        let c = &self.calls[ci];
        let d = &c.dirs[di];
        let mut t = now + c.rtp_phase_us + (self.rng.unit() * a.jitter_ms * 1000.0) as i64;
        if pkt.interior && self.rng.chance(a.reorder) {
            t += self.p.ptime_us + 1000;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        udp_frame(
            &mut self.frame_buf,
            c.encap,
            d.src.0,
            d.src.1,
            d.dst.0,
            d.dst.1,
            self.ip_id,
            &self.payload,
        );
        let truth = Some((ci, di, si, k));
        self.q.push(t, self.frame_buf.clone(), truth);
        let seg = &mut self.calls[ci].dirs[di].segments[si];
        if matches!(pkt.slot, dtmf::Slot::Event { end: true, .. }) {
            // The end packet twice more, same sequence number (RFC 4733 2.5.1.4).
            for copy in 1..=dtmf::END_COPIES {
                seg.duplicates += 1;
                let at = t + copy as i64 * 3000;
                self.q.push(at, self.frame_buf.clone(), truth);
            }
        }
        if pkt.interior && self.rng.chance(a.duplicate) {
            seg.duplicates += 1;
            self.q.push(t + 50, self.frame_buf.clone(), truth);
        }
    }

    /// An RTCP sender report of the direction (every 5 s), at packet `k` (`kk` in segment
    /// `si`).
    fn sender_report(&mut self, ci: usize, di: usize, si: usize, (k, kk): (u64, u64), now: i64) {
        let c = &mut self.calls[ci];
        let d = &mut c.dirs[di];
        d.sr_sent += 1;
        let seg = &d.segments[si];
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&seg.ssrc.to_be_bytes());
        let secs = (now / 1_000_000) as u64 + 2_208_988_800;
        sr.extend_from_slice(&(secs as u32).to_be_bytes());
        sr.extend_from_slice(&0u32.to_be_bytes());
        let rtp_ts = seg
            .ts0
            .wrapping_add((kk * self.p.samples_per_packet) as u32);
        sr.extend_from_slice(&rtp_ts.to_be_bytes());
        sr.extend_from_slice(&(k as u32).to_be_bytes());
        sr.extend_from_slice(&(d.octets as u32).to_be_bytes());
        udp_frame(
            &mut self.frame_buf,
            c.encap,
            d.src.0,
            d.src.1 + 1,
            d.dst.0,
            d.dst.1 + 1,
            self.ip_id,
            &sr,
        );
        self.q.push(now + 1000, self.frame_buf.clone(), None);
    }

    /// The re-INVITEs to fax (T.38) and back to audio that are due at `tick`.
    fn fax_reinvites(&mut self, tick: u64, now: i64) {
        let Some(plan) = self.p.fax else { return };
        let (a, law) = (self.p.a, self.p.law);
        for ci in (0..self.calls.len()).filter(|_| !a.no_sip) {
            let c = &self.calls[ci];
            let port = (c.dirs[0].src.1, c.dirs[0].dst.1);
            let due = |k: u64| tick + fax::REINVITE_LEAD == c.rtp_first_tick + k;
            let (offer, answer, cseq) = if due(plan.start_k) {
                let style = a.fax.t38_sdp.as_str();
                let offer = fax::t38_sdp(c.caller_ip, port.0, law, a.ptime, style);
                let answer = fax::t38_sdp(c.agent_ip, port.1, law, a.ptime, style);
                (offer, answer, 2)
            } else if plan.back_k.is_some_and(due) {
                let offer = sdp(c.caller_ip, port.0, law, a.ptime, "sendrecv");
                (offer, sdp(c.agent_ip, port.1, law, a.ptime, "sendrecv"), 3)
            } else {
                continue;
            };
            let msgs = c
                .dialog(ci)
                .in_dialog("INVITE", true, cseq, &offer, &answer);
            let msgs: Vec<sip_text::Timed> = msgs
                .into_iter()
                .map(|(dt, by, m)| (now + dt, by, m))
                .collect();
            self.sip(ci, msgs);
        }
    }

    /// The BYEs of the calls whose audio is over at `tick` (and their TCP connections' close).
    fn byes(&mut self, tick: u64, now: i64) {
        let a = self.p.a;
        let bye_cseq = if self.p.fax.is_some() {
            "4 BYE"
        } else {
            "2 BYE"
        };
        for ci in (0..self.calls.len()).filter(|_| !a.no_sip) {
            let c = &self.calls[ci];
            if tick != c.rtp_first_tick + self.p.packets_per_call {
                continue;
            }
            let dialog = c.dialog(ci);
            let start = format!("BYE sip:{}@{} SIP/2.0", c.called_uri_user, c.agent_ip);
            let bye = dialog.message(&start, true, true, bye_cseq, "");
            let ok = dialog.message("SIP/2.0 200 OK", true, true, bye_cseq, "");
            self.sip(ci, [(now + 20_000, true, bye), (now + 25_000, false, ok)]);
            if a.tcp.sip_tcp {
                let encap = self.calls[ci].encap;
                let frames = self.tcp[ci].close(encap, &mut self.ip_id, now + 30_000);
                self.q.push_all(frames);
            }
        }
    }
}

impl Dir {
    /// Packet `k`'s audio (or the DTMF tone of `slot`) encoded after the header in `payload`;
    /// with --ref-dir, G.711's reference PCM kept (silence for a `blank` packet: lost, or an
    /// RFC 4733 event).
    fn encode(
        &mut self,
        p: &Plan<'_>,
        payload: &mut Vec<u8>,
        (k, slot): (u64, dtmf::Slot),
        blank: bool,
    ) {
        let (law, spp) = (p.law, p.samples_per_packet);
        let audio = &self.audio;
        let pcm8 = (0..spp).map(|n| {
            let at = k * spp + n;
            match slot {
                dtmf::Slot::Tone(digit) => dtmf::tone_sample(digit, at),
                _ => audio.sample(at),
            }
        });
        match &mut self.encoder {
            Some(enc) => enc.encode(&pcm8.collect::<Vec<_>>(), payload),
            None => {
                for x in pcm8 {
                    let code = law.encode(x);
                    payload.push(code);
                    if p.a.ref_dir.is_some() {
                        self.reference
                            .push(if blank { 0 } else { law.decode(code) });
                    }
                }
            }
        }
    }
}

/// Turns packet `k` in `payload` (of segment `seg`) into the RFC 4733 event packet of `slot`:
/// the digit's first packet's timestamp, marker on its first packet, the duration so far.
fn event_packet(payload: &mut Vec<u8>, seg: &Segment, (k, slot): (u64, dtmf::Slot), spp: u64) {
    let dtmf::Slot::Event {
        digit,
        start_k,
        end,
    } = slot
    else {
        return;
    };
    let ts = seg.ts0.wrapping_add(((start_k - seg.start_k) * spp) as u32);
    let length = if end {
        dtmf::DIGIT_PACKETS
    } else {
        k - start_k + 1
    };
    payload.truncate(12);
    payload[1] = 101 | if k == start_k { 0x80 } else { 0 };
    payload[4..8].copy_from_slice(&ts.to_be_bytes());
    payload.extend_from_slice(&dtmf::event_payload(digit, end, (length * spp) as u16));
}

/// The truth file, from what was written (and the reference WAVs, with --ref-dir).
fn truth(p: &Plan<'_>, calls: &[Call], packets: u64) -> Result<Truth> {
    if let Some(dir) = &p.a.ref_dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut streams = Vec::new();
    for c in calls {
        for d in &c.dirs {
            stream_truths(p, c, d, &mut streams)?;
        }
    }
    Ok(Truth {
        packets,
        streams,
        calls: calls.iter().map(|c| call_truth(p, c)).collect(),
    })
}

/// The streams of direction `d` of call `c` (one per SSRC segment written), its reference
/// WAV written first.
fn stream_truths(p: &Plan<'_>, c: &Call, d: &Dir, out: &mut Vec<StreamTruth>) -> Result<()> {
    let direction = if d.to_agent { "to_agent" } else { "from_agent" };
    let ref_wav = match &p.a.ref_dir {
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
        out.push(StreamTruth {
            src: format!("{}:{}", d.src.0, d.src.1),
            dst: format!("{}:{}", d.dst.0, d.dst.1),
            ssrc: s.ssrc,
            payload: p.law.name().to_owned(),
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
    Ok(())
}

/// Call `c` in the truth file: parties, media, times and the digits typed.
fn call_truth(p: &Plan<'_>, c: &Call) -> CallTruth {
    let ptime_us = p.ptime_us;
    CallTruth {
        call_id: c.call_id.clone(),
        caller: c.caller.clone(),
        called: c.called_uri_user.clone(),
        agent: c.agent.clone(),
        caller_media: format!("{}:{}", c.dirs[0].src.0, c.dirs[0].src.1),
        agent_media: format!("{}:{}", c.dirs[0].dst.0, c.dirs[0].dst.1),
        vlans: c.encap.vlans(),
        start: (c.sip_start_us - p.base_us) as f64 / 1e6,
        end: ((c.rtp_first_tick + p.packets_per_call) as i64 * ptime_us + 20_000) as f64 / 1e6,
        holds: Vec::new(),
        dtmf: p.dtmf.as_ref().map_or_else(Vec::new, |plan| {
            let at =
                |k: u64| ((c.rtp_first_tick + k) as i64 * ptime_us + c.rtp_phase_us) as f64 / 1e6;
            let ms = |k: u64| k * u64::from(p.a.ptime);
            (plan.windows().into_iter())
                .map(|(digit, from, to)| DigitTruth {
                    digit,
                    inband: p.a.dtmf.dtmf_inband.is_some(),
                    start: at(from),
                    end: at(to),
                    stream_ms: [ms(from), ms(to)],
                })
                .collect()
        }),
    }
}
