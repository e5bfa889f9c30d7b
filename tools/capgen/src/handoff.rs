//! `capgen handoff`: calls that change hands between two agents, as a contact center's SPAN
//! sees them through a B2BUA (CUCM-like PBX) or a proxy, one after another on one capture:
//!
//! 1. **forward**: a call for agent A forwarded (all calls) to agent B: the PBX's leg to B's
//!    phone has the Request-URI of B, `To` and `Diversion` of A; its answer to the gateway
//!    carries B's media and no asserted identity.
//! 2. **pickup**: a call for A rings A's phone, B picks it up: the PBX cancels A's leg and
//!    calls B's phone (Request-URI B, `To` A); its answer to the gateway asserts B
//!    (P-Asserted-Identity).
//! 3. **hunt**: a call to a hunt pilot, forwarded by a proxy under the same Call-ID to A's
//!    phone (Request-URI A at that hop only), answered by A.
//! 4. **transfer**: CUCM's consult transfer from A to B: the caller's dialog with the PBX
//!    (`To` A) and the PBX's leg to A; A holds (the PBX re-INVITEs the gateway with A's
//!    Remote-Party-ID), consults B (A's phone -> PBX, PBX -> B's phone, `From` A), transfers:
//!    the PBX re-INVITEs the caller's dialog to B's media with B's Remote-Party-ID, the
//!    consult leg to the gateway's media with the caller's identity, and BYEs A's legs.
//!
//! Every stream carries its own tone, so a recording tells whose audio reached whom. The truth
//! file lists the streams (tone, owner agent, the other party's tone) and the scenarios' times.

use std::net::Ipv4Addr;

use anyhow::Result;
use serde::Serialize;

use crate::agent_day::{Capture, Stream};
use crate::frame::Encap;
use crate::sip_text::sdp;
use crate::{parse_encap, parse_law, Law, Output, Rng};

/// Arguments of `capgen handoff`.
#[derive(clap::Args)]
pub struct HandoffArgs {
    /// Agent A's extension.
    #[arg(long, default_value = "5001")]
    agent_a: String,
    /// Agent B's extension.
    #[arg(long, default_value = "5002")]
    agent_b: String,
    /// untagged | vlan:ID | qinq:OUTER:INNER
    #[arg(long, default_value = "untagged")]
    encap: String,
    /// pcmu | pcma
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Seconds before the first call (the first frame is an OPTIONS ping).
    #[arg(long, default_value_t = 5.0)]
    lead: f64,
    /// Seconds each party talks in each phase.
    #[arg(long, default_value_t = 2.0)]
    talk: f64,
    #[command(flatten)]
    output: Output,
}

pub(crate) const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub(crate) const PBX: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);
const PROXY: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 2);
const PHONE_A: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const PHONE_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
/// Media starts this long after a dialog's answer.
pub(crate) const MEDIA_AFTER_US: i64 = 50_000;

/// One party of a dialog: the URI user and host of its From/To, its tag.
#[derive(Clone)]
struct Party {
    user: String,
    host: Ipv4Addr,
    tag: String,
}

/// One dialog: its Call-ID and the parties of its initial INVITE.
pub(crate) struct Dialog {
    call_id: String,
    caller: Party,
    callee: Party,
    /// Extra headers of the initial INVITE (Diversion, History-Info...).
    invite_extra: String,
}

impl Dialog {
    /// A message of this dialog. `by_caller`: the caller sent the request the message belongs
    /// to; `to_tag`: the dialog is formed. Headers in `extra` end with CRLF.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &self,
        start: &str,
        via: Ipv4Addr,
        by_caller: bool,
        to_tag: bool,
        cseq: &str,
        extra: &str,
        body: &str,
    ) -> Vec<u8> {
        let (from, to) = if by_caller {
            (&self.caller, &self.callee)
        } else {
            (&self.callee, &self.caller)
        };
        let tt = if to_tag {
            format!(";tag={}", to.tag)
        } else {
            String::new()
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP {via}:5060;branch=z9hG4bK{}{}\r\n\
             From: <sip:{}@{}>;tag={}\r\nTo: <sip:{}@{}>{tt}\r\nCall-ID: {}\r\nCSeq: {cseq}\r\n\
             Max-Forwards: 70\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
            cseq.split(' ').next().unwrap_or("1"),
            from.tag,
            from.user,
            from.host,
            from.tag,
            to.user,
            to.host,
            self.call_id,
            body.len()
        )
        .into_bytes()
    }
}

/// The capture in the making plus the truth.
pub(crate) struct Script {
    pub(crate) cap: Capture,
    pub(crate) law: Law,
    pub(crate) rng: Rng,
    pub(crate) seed: u32,
    pub(crate) truth: Vec<StreamTruth>,
    pub(crate) scenarios: Vec<ScenarioTruth>,
}

#[derive(Serialize)]
pub(crate) struct StreamTruth {
    scenario: &'static str,
    src: String,
    dst: String,
    ssrc: u32,
    packets: u64,
    tone_hz: f64,
    /// The agent whose monitor must hear this stream, and as which direction.
    agents: Vec<(String, &'static str)>,
}

#[derive(Serialize)]
pub(crate) struct ScenarioTruth {
    name: &'static str,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct Truth {
    packets: u64,
    agent_a: String,
    agent_b: String,
    streams: Vec<StreamTruth>,
    scenarios: Vec<ScenarioTruth>,
}

impl Script {
    /// An empty capture starting at `output`'s epoch, seeded by its seed.
    pub(crate) fn new(output: &Output, encap: Encap, law: Law) -> Script {
        Script {
            cap: Capture::new(output.start_epoch * 1_000_000, encap, law),
            law,
            rng: Rng(output.seed),
            seed: output.seed as u32,
            truth: Vec::new(),
            scenarios: Vec::new(),
        }
    }

    /// The PBX pings the gateway (a capture's first frame, before its lead).
    pub(crate) fn ping(&mut self, t: i64) {
        let ping =
            b"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.3.0.1:5060;branch=z9hG4bKping\r\n\
From: <sip:pbx@10.3.0.1>;tag=p\r\nTo: <sip:gw@10.1.0.1>\r\nCall-ID: ping@capgen\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                .to_vec();
        self.sip(t, PBX, GW, ping);
    }

    /// Writes the frames in time order to `output`'s pcap; returns the frame count and the
    /// truth gathered.
    pub(crate) fn write(
        self,
        output: &Output,
    ) -> Result<(u64, Vec<StreamTruth>, Vec<ScenarioTruth>)> {
        let Script {
            mut cap,
            truth,
            scenarios,
            ..
        } = self;
        cap.frames.sort_by_key(|(t, _)| *t);
        let mut pcap = output.create_pcap()?;
        for (t, f) in &cap.frames {
            pcap.write(*t, f)?;
        }
        pcap.finish()?;
        Ok((cap.frames.len() as u64, truth, scenarios))
    }

    pub(crate) fn dialog(
        &self,
        n: &str,
        caller: (&str, Ipv4Addr),
        callee: (&str, Ipv4Addr),
    ) -> Dialog {
        Dialog {
            call_id: format!("{:08x}-{n}@capgen", self.seed),
            caller: Party {
                user: caller.0.to_owned(),
                host: caller.1,
                tag: format!("{n}-f"),
            },
            callee: Party {
                user: callee.0.to_owned(),
                host: callee.1,
                tag: format!("{n}-t"),
            },
            invite_extra: String::new(),
        }
    }

    pub(crate) fn sip(&mut self, t: i64, src: Ipv4Addr, dst: Ipv4Addr, text: Vec<u8>) {
        self.cap.frame(t, (src, 5060), (dst, 5060), &text);
    }

    pub(crate) fn sdp(&self, media: (Ipv4Addr, u16), direction: &str) -> String {
        sdp(media.0, media.1, self.law, 20, direction)
    }

    /// `d`'s INVITE from `src` to `dst` with Request-URI `ruri` offering `offer`.
    pub(crate) fn invite(
        &mut self,
        t: i64,
        d: &Dialog,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ruri: &str,
        offer: &str,
    ) {
        let text = d.text(
            &format!("INVITE sip:{ruri}@{dst} SIP/2.0"),
            src,
            true,
            false,
            "1 INVITE",
            &d.invite_extra,
            offer,
        );
        self.sip(t, src, dst, text);
    }

    /// `d`'s response `status` to its INVITE from `src` to `dst`, with `extra` headers and
    /// `answer` (an ACK follows a 2xx).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn respond(
        &mut self,
        t: i64,
        d: &Dialog,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        status: &str,
        extra: &str,
        answer: &str,
    ) {
        let to_tag = !status.starts_with("100");
        let text = d.text(
            &format!("SIP/2.0 {status}"),
            dst,
            true,
            to_tag,
            "1 INVITE",
            extra,
            answer,
        );
        self.sip(t, src, dst, text);
        if status.starts_with('2') {
            let ack = d.text(
                &format!("ACK sip:{}@{src} SIP/2.0", d.callee.user),
                dst,
                true,
                true,
                "1 ACK",
                "",
                "",
            );
            self.sip(t + 5_000, dst, src, ack);
        }
    }

    /// A request within `d` from `src` to `dst` (`by_caller` says which party sends it) and
    /// its 200 OK (with `answer`), an ACK after an INVITE.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn in_dialog(
        &mut self,
        t: i64,
        d: &Dialog,
        (src, dst): (Ipv4Addr, Ipv4Addr),
        by_caller: bool,
        (method, cseq): (&str, u32),
        extra: &str,
        (body, answer): (&str, &str),
    ) {
        let target = if by_caller { &d.callee } else { &d.caller };
        let start = format!("{method} sip:{}@{dst} SIP/2.0", target.user);
        let cs = format!("{cseq} {method}");
        let req = d.text(&start, src, by_caller, true, &cs, extra, body);
        self.sip(t, src, dst, req);
        let ok = d.text("SIP/2.0 200 OK", src, by_caller, true, &cs, "", answer);
        self.sip(t + 5_000, dst, src, ok);
        if method == "INVITE" {
            let ack_start = format!("ACK sip:{}@{dst} SIP/2.0", target.user);
            let ack = d.text(
                &ack_start,
                src,
                by_caller,
                true,
                &format!("{cseq} ACK"),
                "",
                "",
            );
            self.sip(t + 10_000, src, dst, ack);
        }
    }

    /// Two streams between `a` and `b` (tones `a_hz`, `b_hz`), for the truth file's scenario.
    pub(crate) fn pair(&mut self, a: (Ipv4Addr, u16, f64), b: (Ipv4Addr, u16, f64)) -> [Stream; 2] {
        [
            Stream::new(&mut self.rng, (a.0, a.1), (b.0, b.1), a.2, false),
            Stream::new(&mut self.rng, (b.0, b.1), (a.0, a.1), b.2, false),
        ]
    }

    /// `streams` talk in `[from, to)` and are recorded in the truth as heard by `agents`
    /// (per stream: agent and direction).
    pub(crate) fn talk(
        &mut self,
        scenario: &'static str,
        streams: &mut [Stream; 2],
        (from, to): (i64, i64),
        agents: [Vec<(String, &'static str)>; 2],
    ) {
        self.cap.talk_streams(streams, from, to);
        for (s, who) in streams.iter().zip(agents) {
            self.truth.push(StreamTruth {
                scenario,
                src: format!("{}:{}", s.src.0, s.src.1),
                dst: format!("{}:{}", s.dst.0, s.dst.1),
                ssrc: s.ssrc,
                packets: s.sent,
                tone_hz: s.tone_hz,
                agents: who,
            });
        }
    }

    pub(crate) fn scenario(&mut self, name: &'static str, from: i64, to: i64) {
        let secs = |t: i64| (t - self.cap.base) as f64 / 1e6;
        self.scenarios.push(ScenarioTruth {
            name,
            start: secs(from),
            end: secs(to),
        });
    }
}

/// Who hears a stream: (agent, direction).
pub(crate) fn heard(agent: &str, direction: &'static str) -> Vec<(String, &'static str)> {
    vec![(agent.to_owned(), direction)]
}

pub fn run(a: HandoffArgs) -> Result<()> {
    let law = parse_law(&a.codec)?;
    if !law.is_g711() {
        anyhow::bail!("--codec: this scenario writes G.711 (pcmu or pcma)");
    }
    let encap: Encap = parse_encap(&a.encap, 0)?;
    let mut s = Script::new(&a.output, encap, law);
    let base = s.cap.base;
    let us = |secs: f64| (secs * 1e6).round() as i64;
    let talk = us(a.talk);
    // The first frame: the PBX pings the gateway (the capture's lead before the first call).
    s.ping(base);
    let mut t = base + us(a.lead);
    t = forward(&mut s, &a, t, talk) + us(1.0);
    t = pickup(&mut s, &a, t, talk) + us(1.0);
    t = hunt(&mut s, &a, t, talk) + us(1.0);
    transfer(&mut s, &a, t, talk);

    let (packets, truth, scenarios) = s.write(&a.output)?;
    a.output.write_truth(&Truth {
        packets,
        agent_a: a.agent_a.clone(),
        agent_b: a.agent_b.clone(),
        streams: truth,
        scenarios,
    })?;
    Ok(())
}

/// Forward: the PBX forwards A's call to B; the gateway's leg names A and gets B's media.
fn forward(s: &mut Script, a: &HandoffArgs, t: i64, talk: i64) -> i64 {
    let (ua, ub) = (a.agent_a.as_str(), a.agent_b.as_str());
    let (gw_m, b_m) = ((GW, 20000), (PHONE_B, 30000));
    let d1 = s.dialog("fwd-gw", ("+49305550001", GW), (ua, PBX));
    let mut d2 = s.dialog("fwd-b", ("+49305550001", PBX), (ua, PHONE_B));
    d2.invite_extra =
        format!("Diversion: <sip:{ua}@{PBX}>;reason=unconditional\r\nHistory-Info: <sip:{ua}@{PBX}>;index=1\r\n");
    let offer = s.sdp(gw_m, "sendrecv");
    let answer = s.sdp(b_m, "sendrecv");
    s.invite(t, &d1, GW, PBX, ua, &offer);
    s.respond(t + 5_000, &d1, PBX, GW, "100 Trying", "", "");
    s.invite(t + 10_000, &d2, PBX, PHONE_B, ub, &offer);
    let contact = format!("Contact: <sip:{ub}@{PHONE_B}:5060>\r\n");
    s.respond(t + 100_000, &d2, PHONE_B, PBX, "200 OK", &contact, &answer);
    s.respond(t + 120_000, &d1, PBX, GW, "200 OK", "", &answer);
    let from = t + 120_000 + MEDIA_AFTER_US;
    let mut st = s.pair((GW, 20000, 400.0), (PHONE_B, 30000, 1500.0));
    s.talk(
        "forward",
        &mut st,
        (from, from + talk),
        [heard(ub, "to_agent"), heard(ub, "from_agent")],
    );
    let end = from + talk;
    s.in_dialog(end, &d1, (GW, PBX), true, ("BYE", 2), "", ("", ""));
    s.in_dialog(
        end + 10_000,
        &d2,
        (PBX, PHONE_B),
        true,
        ("BYE", 2),
        "",
        ("", ""),
    );
    s.scenario("forward", t, end);
    end
}

/// Pickup: A's phone rings, the PBX cancels it and connects B, asserting B to the gateway.
fn pickup(s: &mut Script, a: &HandoffArgs, t: i64, talk: i64) -> i64 {
    let (ua, ub) = (a.agent_a.as_str(), a.agent_b.as_str());
    let (gw_m, a_m, b_m) = ((GW, 20002), (PHONE_A, 30002), (PHONE_B, 30002));
    let d1 = s.dialog("pick-gw", ("+49305550002", GW), (ua, PBX));
    let d2 = s.dialog("pick-a", ("+49305550002", PBX), (ua, PHONE_A));
    let mut d3 = s.dialog("pick-b", ("+49305550002", PBX), (ua, PHONE_B));
    d3.invite_extra = format!("Diversion: <sip:{ua}@{PBX}>;reason=deflection\r\n");
    let offer = s.sdp(gw_m, "sendrecv");
    let _ = a_m;
    s.invite(t, &d1, GW, PBX, ua, &offer);
    s.invite(t + 10_000, &d2, PBX, PHONE_A, ua, &offer);
    s.respond(t + 30_000, &d2, PHONE_A, PBX, "180 Ringing", "", "");
    s.respond(t + 40_000, &d1, PBX, GW, "180 Ringing", "", "");
    // B picks up: A's phone stops ringing.
    let c = t + 500_000;
    let cancel = d2.text(
        &format!("CANCEL sip:{ua}@{PHONE_A} SIP/2.0"),
        PBX,
        true,
        false,
        "1 CANCEL",
        "",
        "",
    );
    s.sip(c, PBX, PHONE_A, cancel);
    s.respond(
        c + 10_000,
        &d2,
        PHONE_A,
        PBX,
        "487 Request Terminated",
        "",
        "",
    );
    s.invite(c + 20_000, &d3, PBX, PHONE_B, ub, &offer);
    let answer = s.sdp(b_m, "sendrecv");
    s.respond(c + 100_000, &d3, PHONE_B, PBX, "200 OK", "", &answer);
    let pai = format!("P-Asserted-Identity: <sip:{ub}@{PBX}>\r\n");
    s.respond(c + 120_000, &d1, PBX, GW, "200 OK", &pai, &answer);
    let from = c + 120_000 + MEDIA_AFTER_US;
    let mut st = s.pair((GW, 20002, 500.0), (PHONE_B, 30002, 1600.0));
    s.talk(
        "pickup",
        &mut st,
        (from, from + talk),
        [heard(ub, "to_agent"), heard(ub, "from_agent")],
    );
    let end = from + talk;
    s.in_dialog(end, &d1, (GW, PBX), true, ("BYE", 2), "", ("", ""));
    s.in_dialog(
        end + 10_000,
        &d3,
        (PBX, PHONE_B),
        true,
        ("BYE", 2),
        "",
        ("", ""),
    );
    s.scenario("pickup", t, end);
    end
}

/// Hunt: a proxy forwards the pilot's INVITE under the same Call-ID to A's phone.
fn hunt(s: &mut Script, a: &HandoffArgs, t: i64, talk: i64) -> i64 {
    let ua = a.agent_a.as_str();
    let (gw_m, a_m) = ((GW, 20004), (PHONE_A, 30004));
    let d = s.dialog("hunt", ("+49305550003", GW), ("6000", PROXY));
    let offer = s.sdp(gw_m, "sendrecv");
    let answer = s.sdp(a_m, "sendrecv");
    s.invite(t, &d, GW, PROXY, "6000", &offer);
    // The proxy's hop: same dialog, the Request-URI now A's registered contact.
    let hop = d.text(
        &format!("INVITE sip:{ua}@{PHONE_A}:5060 SIP/2.0"),
        PROXY,
        true,
        false,
        "1 INVITE",
        "",
        &offer,
    );
    s.sip(t + 10_000, PROXY, PHONE_A, hop);
    let contact = format!("Contact: <sip:{ua}@{PHONE_A}:5060>\r\n");
    let ok = d.text(
        "SIP/2.0 200 OK",
        PROXY,
        true,
        true,
        "1 INVITE",
        &contact,
        &answer,
    );
    s.sip(t + 100_000, PHONE_A, PROXY, ok.clone());
    s.sip(t + 105_000, PROXY, GW, ok);
    let ack = d.text(
        &format!("ACK sip:{ua}@{PHONE_A} SIP/2.0"),
        GW,
        true,
        true,
        "1 ACK",
        "",
        "",
    );
    s.sip(t + 110_000, GW, PHONE_A, ack);
    let from = t + 110_000 + MEDIA_AFTER_US;
    let mut st = s.pair((GW, 20004, 600.0), (PHONE_A, 30004, 1000.0));
    s.talk(
        "hunt",
        &mut st,
        (from, from + talk),
        [heard(ua, "to_agent"), heard(ua, "from_agent")],
    );
    let end = from + talk;
    s.in_dialog(end, &d, (GW, PHONE_A), true, ("BYE", 2), "", ("", ""));
    s.scenario("hunt", t, end);
    end
}

/// CUCM's consult transfer from A to B (see the module doc).
fn transfer(s: &mut Script, a: &HandoffArgs, t: i64, talk: i64) -> i64 {
    let (ua, ub) = (a.agent_a.as_str(), a.agent_b.as_str());
    let (gw_m, a_m, a_consult, b_m) = (
        (GW, 20006),
        (PHONE_A, 30006),
        (PHONE_A, 30008),
        (PHONE_B, 30010),
    );
    let d1 = s.dialog("xfer-gw", ("+49305550004", GW), (ua, PBX));
    let d2 = s.dialog("xfer-a", ("+49305550004", PBX), (ua, PHONE_A));
    let offer = s.sdp(gw_m, "sendrecv");
    let a_answer = s.sdp(a_m, "sendrecv");
    s.invite(t, &d1, GW, PBX, ua, &offer);
    s.invite(t + 10_000, &d2, PBX, PHONE_A, ua, &offer);
    let contact = format!("Contact: <sip:{ua}@{PHONE_A}:5060>\r\n");
    s.respond(
        t + 100_000,
        &d2,
        PHONE_A,
        PBX,
        "200 OK",
        &contact,
        &a_answer,
    );
    s.respond(t + 120_000, &d1, PBX, GW, "200 OK", "", &a_answer);
    let from = t + 120_000 + MEDIA_AFTER_US;
    let mut call = s.pair((GW, 20006, 700.0), (PHONE_A, 30006, 1100.0));
    s.talk(
        "transfer",
        &mut call,
        (from, from + talk),
        [heard(ua, "to_agent"), heard(ua, "from_agent")],
    );
    // A holds: A's phone re-INVITEs its leg, the PBX the gateway's (naming A again).
    let hold = from + talk;
    let a_hold = s.sdp(a_m, "sendonly");
    let gw_hold = s.sdp(gw_m, "recvonly");
    s.in_dialog(
        hold,
        &d2,
        (PHONE_A, PBX),
        false,
        ("INVITE", 101),
        "",
        (&a_hold, &offer),
    );
    let rpid_a = format!("Remote-Party-ID: <sip:{ua}@{PBX}>;party=called;screen=yes\r\n");
    s.in_dialog(
        hold + 20_000,
        &d1,
        (PBX, GW),
        false,
        ("INVITE", 101),
        &rpid_a,
        (&a_hold, &gw_hold),
    );
    // The consult: A's phone calls B through the PBX.
    let c = hold + 300_000;
    let d3 = s.dialog("xfer-consult-a", (ua, PHONE_A), (ub, PBX));
    let d4 = s.dialog("xfer-consult-b", (ua, PBX), (ub, PHONE_B));
    let c_offer = s.sdp(a_consult, "sendrecv");
    let b_answer = s.sdp(b_m, "sendrecv");
    s.invite(c, &d3, PHONE_A, PBX, ub, &c_offer);
    s.invite(c + 10_000, &d4, PBX, PHONE_B, ub, &c_offer);
    let b_contact = format!("Contact: <sip:{ub}@{PHONE_B}:5060>\r\n");
    s.respond(
        c + 100_000,
        &d4,
        PHONE_B,
        PBX,
        "200 OK",
        &b_contact,
        &b_answer,
    );
    s.respond(c + 110_000, &d3, PBX, PHONE_A, "200 OK", "", &b_answer);
    let cf = c + 110_000 + MEDIA_AFTER_US;
    let mut consult = s.pair((PHONE_A, 30008, 1200.0), (PHONE_B, 30010, 1700.0));
    s.talk(
        "transfer",
        &mut consult,
        (cf, cf + talk),
        [
            vec![(ua.to_owned(), "from_agent"), (ub.to_owned(), "to_agent")],
            vec![(ua.to_owned(), "to_agent"), (ub.to_owned(), "from_agent")],
        ],
    );
    // Transfer: the caller's dialog moves to B (B's identity), the consult leg to the
    // gateway (the caller's identity), A's legs end.
    let x = cf + talk;
    let b_media = s.sdp(b_m, "sendrecv");
    let rpid_b = format!("Remote-Party-ID: <sip:{ub}@{PBX}>;party=called;screen=yes\r\n");
    s.in_dialog(
        x,
        &d1,
        (PBX, GW),
        false,
        ("INVITE", 102),
        &rpid_b,
        (&b_media, &offer),
    );
    let pai_caller = "P-Asserted-Identity: <sip:+49305550004@10.1.0.1>\r\n";
    s.in_dialog(
        x + 20_000,
        &d4,
        (PBX, PHONE_B),
        true,
        ("INVITE", 2),
        pai_caller,
        (&offer, &b_media),
    );
    s.in_dialog(
        x + 30_000,
        &d2,
        (PBX, PHONE_A),
        true,
        ("BYE", 2),
        "",
        ("", ""),
    );
    s.in_dialog(
        x + 40_000,
        &d3,
        (PBX, PHONE_A),
        false,
        ("BYE", 2),
        "",
        ("", ""),
    );
    let after = x + 60_000 + MEDIA_AFTER_US;
    let mut joined = s.pair((GW, 20006, 700.0), (PHONE_B, 30010, 1700.0));
    s.talk(
        "transfer",
        &mut joined,
        (after, after + talk),
        [heard(ub, "to_agent"), heard(ub, "from_agent")],
    );
    let end = after + talk;
    s.in_dialog(end, &d1, (GW, PBX), true, ("BYE", 2), "", ("", ""));
    s.in_dialog(
        end + 10_000,
        &d4,
        (PBX, PHONE_B),
        true,
        ("BYE", 3),
        "",
        ("", ""),
    );
    s.scenario("transfer", t, end);
    end
}
