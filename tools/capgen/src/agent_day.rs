//! `capgen agent-day`: one agent's calls in sequence on one capture, as a monitor has to follow
//! them. The agent's phone registers; a caller reaches the agent (both talk); the agent puts
//! the caller on hold (re-INVITE sendonly; the call's RTP pauses both ways); during the hold
//! the agent places a consult call to another extension (a new dialog, its own tones) and
//! hangs it up; the agent resumes the first call (re-INVITE sendrecv), both talk again, the
//! caller hangs up; after a short gap another caller reaches the agent. Each stream carries
//! its own tone. The truth file lists every stream (with its tone and its direction relative
//! to the agent) and every call (with its holds).

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::calls::{rtp_header, CallTruth, StreamTruth, Truth};
use crate::frame::{udp_frame, Encap};
use crate::sip_text::{sdp, Dialog, SipParty, Timed};
use crate::{parse_encap, parse_law, Audio, Law, Output, Rng};

/// Arguments of `capgen agent-day`.
#[derive(clap::Args)]
pub struct AgentDayArgs {
    /// The agent's extension (called by both callers, calling the consult).
    #[arg(long, default_value = "5001")]
    agent: String,
    /// The extension the agent consults during the hold.
    #[arg(long, default_value = "5101")]
    consult: String,
    /// untagged | vlan:ID | qinq:OUTER:INNER
    #[arg(long, default_value = "untagged")]
    encap: String,
    /// pcmu | pcma
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Seconds between the phone's registration (the first frame) and the first call.
    #[arg(long, default_value_t = 3.0)]
    lead: f64,
    /// No consult during the hold: call 1's hold is six seconds of silence both ways.
    #[arg(long)]
    no_consult: bool,
    #[command(flatten)]
    output: Output,
}

/// 20 ms packets.
const PTIME_US: i64 = 20_000;
const SAMPLES_PER_PACKET: u64 = 160;
/// After the INVITE: the ACK is sent at 110 ms, media flows from 120 ms.
const MEDIA_AFTER_INVITE_US: i64 = 120_000;
/// The script, in seconds after the lead: call 1 talks until the hold, the consult runs
/// inside the hold, call 1 resumes and ends, call 2 follows after a gap.
const CALL1_AT: f64 = 0.0;
const HOLD_AT: f64 = 4.0;
const CONSULT_AT: f64 = 5.0;
const CONSULT_BYE_AT: f64 = 9.0;
const RESUME_AT: f64 = 10.0;
const CALL1_BYE_AT: f64 = 13.0;
const CALL2_AT: f64 = 14.5;
const CALL2_BYE_AT: f64 = 18.0;
/// Media resumes this long after the resuming re-INVITE (its ACK is at 10 ms).
const MEDIA_AFTER_REINVITE_US: i64 = 20_000;

/// One RTP direction of a call.
pub(crate) struct Stream {
    pub(crate) src: (Ipv4Addr, u16),
    pub(crate) dst: (Ipv4Addr, u16),
    pub(crate) tone_hz: f64,
    pub(crate) ssrc: u32,
    pub(crate) seq0: u16,
    pub(crate) ts0: u32,
    pub(crate) to_agent: bool,
    pub(crate) first_tick: Option<u64>,
    pub(crate) sent: u64,
}

impl Stream {
    /// A stream of `tone_hz` from `src` to `dst` with random SSRC and bases.
    pub(crate) fn new(
        rng: &mut Rng,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        tone_hz: f64,
        to_agent: bool,
    ) -> Stream {
        Stream {
            src,
            dst,
            tone_hz,
            ssrc: rng.next() as u32,
            seq0: rng.next() as u16,
            ts0: rng.next() as u32,
            to_agent,
            first_tick: None,
            sent: 0,
        }
    }
}

/// One call of the day: its dialog, the Request-URI's user, both directions' streams (caller
/// to callee first) and what the truth file says of it.
struct Leg {
    dialog: Dialog,
    ruri_user: String,
    streams: [Stream; 2],
    start_us: i64,
    end_us: i64,
    holds: Vec<[f64; 2]>,
}

impl Leg {
    /// A call from `caller` (user, IP, RTP port, tone) to `callee` (same), the agent on the
    /// side `agent_is_caller` says.
    fn new(
        rng: &mut Rng,
        call_id: String,
        caller: (&str, Ipv4Addr, u16, f64),
        callee: (&str, Ipv4Addr, u16, f64),
        agent_is_caller: bool,
        tags: (String, String),
    ) -> Leg {
        let party = |user: &str, ip, tag, agent: bool| SipParty {
            display: if agent {
                format!("Agent {user}")
            } else {
                "Caller".to_owned()
            },
            user: user.to_owned(),
            host: ip,
            tag,
        };
        let mut stream =
            |from: (&str, Ipv4Addr, u16, f64), to: (&str, Ipv4Addr, u16, f64), to_agent| {
                Stream::new(rng, (from.1, from.2), (to.1, to.2), from.3, to_agent)
            };
        let streams = [
            stream(caller, callee, !agent_is_caller),
            stream(callee, caller, agent_is_caller),
        ];
        Leg {
            dialog: Dialog {
                call_id,
                caller: party(caller.0, caller.1, tags.0, agent_is_caller),
                callee: party(callee.0, callee.1, tags.1, !agent_is_caller),
            },
            ruri_user: callee.0.to_owned(),
            streams,
            start_us: 0,
            end_us: 0,
            holds: Vec::new(),
        }
    }

    fn sdp(&self, caller_side: bool, law: Law, direction: &str) -> String {
        let (ip, port) = self.streams[if caller_side { 0 } else { 1 }].src;
        sdp(ip, port, law, 20, direction)
    }
}

/// Frames of the capture in the making (sorted by time when written).
pub(crate) struct Capture {
    /// Time of the first frame, µs since the epoch.
    pub(crate) base: i64,
    pub(crate) encap: Encap,
    pub(crate) law: Law,
    pub(crate) frames: Vec<(i64, Vec<u8>)>,
    pub(crate) ip_id: u16,
    pub(crate) buf: Vec<u8>,
    pub(crate) rtp: Vec<u8>,
}

impl Capture {
    /// An empty capture starting at `base` µs.
    pub(crate) fn new(base: i64, encap: Encap, law: Law) -> Capture {
        Capture {
            base,
            encap,
            law,
            frames: Vec::new(),
            ip_id: 0,
            buf: Vec::with_capacity(2048),
            rtp: Vec::with_capacity(256),
        }
    }

    pub(crate) fn frame(
        &mut self,
        t: i64,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        payload: &[u8],
    ) {
        self.ip_id = self.ip_id.wrapping_add(1);
        udp_frame(
            &mut self.buf,
            self.encap,
            src.0,
            src.1,
            dst.0,
            dst.1,
            self.ip_id,
            payload,
        );
        self.frames.push((t, self.buf.clone()));
    }

    /// SIP messages of `leg` from `t` on, each from the party its flag names.
    fn sip(&mut self, t: i64, leg: &Leg, msgs: impl IntoIterator<Item = Timed>) {
        let (caller, callee) = (leg.dialog.caller.host, leg.dialog.callee.host);
        for (dt, by_caller, m) in msgs {
            let (s, d) = if by_caller {
                (caller, callee)
            } else {
                (callee, caller)
            };
            self.frame(t + dt, (s, 5060), (d, 5060), &m);
        }
    }

    /// `leg`'s caller calls (INVITE at `t`, answered, both sides sendrecv); both talk until
    /// `until`.
    fn call(&mut self, leg: &mut Leg, t: i64, until: i64) {
        let offer = leg.sdp(true, self.law, "sendrecv");
        let answer = leg.sdp(false, self.law, "sendrecv");
        let setup = leg.dialog.setup(&leg.ruri_user, &offer, &answer);
        self.sip(t, leg, setup);
        leg.start_us = t;
        self.talk(leg, t + MEDIA_AFTER_INVITE_US, until);
    }

    /// The callee re-INVITEs at `t` declaring `direction` (sendonly: hold), the caller
    /// answers `answer` (recvonly, or sendrecv to resume); `cseq` in the callee's sequence.
    fn reinvite(&mut self, leg: &Leg, t: i64, cseq: u32, direction: &str, answer: &str) {
        let offer = leg.sdp(false, self.law, direction);
        let answer = leg.sdp(true, self.law, answer);
        let msgs = leg.dialog.in_dialog("INVITE", false, cseq, &offer, &answer);
        self.sip(t, leg, msgs);
    }

    /// The caller hangs up at `t`.
    fn bye(&mut self, leg: &mut Leg, t: i64) {
        let msgs = leg.dialog.in_dialog("BYE", true, 2, "", "");
        self.sip(t, leg, msgs);
        leg.end_us = t;
    }

    /// Both directions of `leg` talk on the 20 ms grid in `[from, to)` (µs since the epoch);
    /// sequence numbers continue across pauses, timestamps follow the clock, the first packet
    /// after a pause is marked.
    fn talk(&mut self, leg: &mut Leg, from: i64, to: i64) {
        self.talk_streams(&mut leg.streams, from, to);
    }

    /// `streams` talk on the 20 ms grid in `[from, to)` (µs since the epoch), as
    /// [`Capture::talk`] says.
    pub(crate) fn talk_streams(&mut self, streams: &mut [Stream], from: i64, to: i64) {
        let base = self.base;
        let first = ((from - base) + PTIME_US - 1) / PTIME_US;
        let last = (to - base) / PTIME_US;
        for tick in first as u64..last as u64 {
            for s in streams.iter_mut() {
                let first_tick = *s.first_tick.get_or_insert(tick);
                let marker = tick == first as u64;
                rtp_header(
                    &mut self.rtp,
                    self.law,
                    marker,
                    s.seq0.wrapping_add(s.sent as u16),
                    s.ts0
                        .wrapping_add(((tick - first_tick) * SAMPLES_PER_PACKET) as u32),
                    s.ssrc,
                );
                let tone = Audio::Tone(s.tone_hz);
                for n in 0..SAMPLES_PER_PACKET {
                    let code = self.law.encode(tone.sample(tick * SAMPLES_PER_PACKET + n));
                    self.rtp.push(code);
                }
                s.sent += 1;
                let (src, dst) = (s.src, s.dst);
                let rtp = std::mem::take(&mut self.rtp);
                self.frame(base + tick as i64 * PTIME_US, src, dst, &rtp);
                self.rtp = rtp;
            }
        }
    }
}

pub fn run(a: AgentDayArgs) -> Result<()> {
    let law = parse_law(&a.codec)?;
    if !law.is_g711() {
        anyhow::bail!("--codec: this scenario writes G.711 (pcmu or pcma)");
    }
    let encap = parse_encap(&a.encap, 0)?;
    let mut rng = Rng(a.output.seed);
    let base = a.output.start_epoch * 1_000_000;
    let at = |s: f64| base + ((a.lead + s) * 1e6).round() as i64;
    let agent_ip = Ipv4Addr::new(10, 2, 0, 1);
    let agent = a.agent.as_str();
    let cid = |n: &str| format!("{:08x}-{n}@capgen", a.output.seed as u32);
    let tags = |n: u32| (format!("f{n}"), format!("t{n}"));
    // Tones: call 1 caller 400 / agent 1000, consult 600 / 1200, call 2 800 / 1400 Hz.
    let mut call1 = Leg::new(
        &mut rng,
        cid("call1"),
        ("+49305550001", Ipv4Addr::new(10, 1, 0, 1), 20000, 400.0),
        (agent, agent_ip, 30000, 1000.0),
        false,
        tags(1),
    );
    let mut consult = Leg::new(
        &mut rng,
        cid("consult"),
        (agent, agent_ip, 30002, 1200.0),
        (&a.consult, Ipv4Addr::new(10, 2, 0, 101), 30100, 600.0),
        true,
        tags(2),
    );
    let mut call2 = Leg::new(
        &mut rng,
        cid("call2"),
        ("+49305550002", Ipv4Addr::new(10, 1, 0, 2), 20002, 800.0),
        (agent, agent_ip, 30004, 1400.0),
        false,
        tags(3),
    );

    let mut cap = Capture::new(base, encap, law);
    // The phone registers: the capture's first frame, the lead before the first call.
    let registrar = Ipv4Addr::new(10, 2, 0, 250);
    let register = |start: &str, len_note: &str| {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP {agent_ip}:5060;branch=z9hG4bKreg\r\n\
             From: <sip:{agent}@{registrar}>;tag=reg\r\nTo: <sip:{agent}@{registrar}>{len_note}\r\n\
             Call-ID: {}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{agent}@{agent_ip}:5060>\r\n\
             Expires: 3600\r\nContent-Length: 0\r\n\r\n",
            cid("register")
        )
        .into_bytes()
    };
    let reg = register(&format!("REGISTER sip:{registrar} SIP/2.0"), "");
    cap.frame(base, (agent_ip, 5060), (registrar, 5060), &reg);
    let ok = register("SIP/2.0 200 OK", ";tag=registrar");
    cap.frame(base + 10_000, (registrar, 5060), (agent_ip, 5060), &ok);

    // Call 1 to the agent, on hold from HOLD_AT to RESUME_AT, the caller hangs up.
    cap.call(&mut call1, at(CALL1_AT), at(HOLD_AT));
    cap.reinvite(&call1, at(HOLD_AT), 101, "sendonly", "recvonly");
    // The consult, placed by the agent during the hold, hung up by the agent.
    if !a.no_consult {
        cap.call(&mut consult, at(CONSULT_AT), at(CONSULT_BYE_AT));
        cap.bye(&mut consult, at(CONSULT_BYE_AT));
    }
    // Back to call 1.
    cap.reinvite(&call1, at(RESUME_AT), 102, "sendrecv", "sendrecv");
    call1.holds.push([a.lead + HOLD_AT, a.lead + RESUME_AT]);
    cap.talk(
        &mut call1,
        at(RESUME_AT) + MEDIA_AFTER_REINVITE_US,
        at(CALL1_BYE_AT),
    );
    cap.bye(&mut call1, at(CALL1_BYE_AT));
    // The agent's next call.
    cap.call(&mut call2, at(CALL2_AT), at(CALL2_BYE_AT));
    cap.bye(&mut call2, at(CALL2_BYE_AT));

    cap.frames.sort_by_key(|(t, _)| *t);
    let mut pcap = a.output.create_pcap()?;
    for (t, f) in &cap.frames {
        pcap.write(*t, f)?;
    }
    pcap.finish()?;

    let legs: Vec<&Leg> = if a.no_consult {
        vec![&call1, &call2]
    } else {
        vec![&call1, &consult, &call2]
    };
    let secs = |t: i64| (t - base) as f64 / 1e6;
    let truth = Truth {
        packets: cap.frames.len() as u64,
        streams: legs
            .iter()
            .flat_map(|l| {
                l.streams.iter().map(|s| StreamTruth {
                    src: format!("{}:{}", s.src.0, s.src.1),
                    dst: format!("{}:{}", s.dst.0, s.dst.1),
                    ssrc: s.ssrc,
                    payload: law.name().to_owned(),
                    packets: s.sent,
                    expected: s.sent,
                    lost: 0,
                    missing: 0,
                    duplicates: 0,
                    call_id: l.dialog.call_id.clone(),
                    direction: if s.to_agent { "to_agent" } else { "from_agent" },
                    vlans: encap.vlans(),
                    tone_hz: Some(s.tone_hz),
                    ref_wav: None,
                })
            })
            .collect(),
        calls: legs
            .iter()
            .map(|l| {
                let agent_side = if l.streams[0].to_agent { 0 } else { 1 };
                CallTruth {
                    call_id: l.dialog.call_id.clone(),
                    caller: l.dialog.caller.user.clone(),
                    called: l.ruri_user.clone(),
                    agent: agent.to_owned(),
                    caller_media: format!("{}:{}", l.streams[0].src.0, l.streams[0].src.1),
                    agent_media: format!(
                        "{}:{}",
                        l.streams[agent_side].dst.0, l.streams[agent_side].dst.1
                    ),
                    vlans: encap.vlans(),
                    start: secs(l.start_us),
                    end: secs(l.end_us),
                    holds: l.holds.clone(),
                    dtmf: Vec::new(),
                }
            })
            .collect(),
    };
    a.output.write_truth(&truth)?;
    Ok(())
}
