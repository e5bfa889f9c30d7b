//! `capgen nailed`: a mobile agent in nailed-connection mode, as the SPAN and the CTI Server
//! see it.
//!
//! At login the PBX calls the agent's remote phone once (its mobile number, through the mobile
//! gateway) and the dialog stays up for the whole capture. Each customer call is a call from the
//! caller gateway to the DNIS at the PBX plus a re-INVITE of the nailed dialog that points the
//! remote phone's media at the caller gateway; at its end the PBX re-INVITEs the nailed dialog
//! back to its own media, which stays silent until the next customer. The SIP of the customer's
//! own dialog never names the agent: only the nailed dialog (its mobile number) does.
//!
//! `--cti-scenario` writes the CTI Server's view: the agent available, and per customer call
//! BEGIN_CALL a second before it is answered (CallType 1, ACD_IN, or 9, OUT, for the calls
//! `--non-acd` names), the agent talking, END_CALL 300 ms after the customer's BYE, the agent
//! available again. No RTP events: the nailed dialog's SIP binds the agent, the CTI's call
//! events say where one customer call ends and the next begins. Every call has its own pair of
//! tones; the truth file lists them.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use silentmon::cti::mock::{Scenario, ScenarioEvent, What};

use crate::handoff::{heard, Script, StreamTruth, GW, MEDIA_AFTER_US, PBX};
use crate::{parse_encap, parse_law, Output};

/// Arguments of `capgen nailed`.
#[derive(clap::Args)]
pub struct NailedArgs {
    /// The agent's extension (the CTI's device of its calls).
    #[arg(long, default_value = "5001")]
    agent: String,
    /// The agent's remote number (the nailed dialog's To).
    #[arg(long, default_value = "+4915112345678")]
    mobile: String,
    /// Customer calls on the nailed connection.
    #[arg(long, default_value_t = 3)]
    calls: u32,
    /// Seconds each customer call talks.
    #[arg(long, default_value_t = 5.0)]
    talk: f64,
    /// Seconds between customer calls.
    #[arg(long, default_value_t = 3.0)]
    gap: f64,
    /// Seconds from the first frame to the first customer call (the nailed dialog comes up
    /// after one second).
    #[arg(long, default_value_t = 4.0)]
    lead: f64,
    /// Customer calls (1-based) that are the agent's own (CallType 9, OUT), comma-separated.
    #[arg(long, value_delimiter = ',')]
    non_acd: Vec<u32>,
    /// untagged | vlan:ID | qinq:OUTER:INNER
    #[arg(long, default_value = "untagged")]
    encap: String,
    /// pcmu | pcma
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Write the CTI Server's view of the calls as a `capgen cti-server` scenario here.
    #[arg(long)]
    cti_scenario: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// The mobile gateway (the remote phone's side of the nailed dialog).
const MOBILE_GW: Ipv4Addr = Ipv4Addr::new(10, 4, 0, 1);
/// The remote phone's media at the mobile gateway, for the whole shift.
const MOBILE_MEDIA: (Ipv4Addr, u16) = (MOBILE_GW, 40000);
/// The PBX's own media on the nailed dialog between customers (silent).
const PBX_MEDIA: (Ipv4Addr, u16) = (PBX, 24000);
/// The local CTI port that calls the remote phone at login.
const CTI_PORT: &str = "7001";
/// The number customers call.
const DNIS: &str = "8000";

/// One customer call in the truth file.
#[derive(Serialize)]
struct CallTruth {
    /// The CTI Server's ConnectionCallID (the endpoint names the call `cti-ID@AGENT`).
    cti_call: u32,
    call_type: u16,
    ani: String,
    /// Seconds from the first frame: first and last packet.
    start: f64,
    end: f64,
    caller_hz: f64,
    agent_hz: f64,
}

#[derive(Serialize)]
struct Truth {
    packets: u64,
    agent: String,
    mobile: String,
    calls: Vec<CallTruth>,
    streams: Vec<StreamTruth>,
}

pub fn run(a: NailedArgs) -> Result<()> {
    let law = parse_law(&a.codec)?;
    if !law.is_g711() {
        bail!("--codec: this scenario writes G.711 (pcmu or pcma)");
    }
    if a.calls == 0 || a.talk <= 0.0 || a.gap < 1.5 || a.lead < 2.0 {
        bail!("need --calls >= 1, --talk > 0, --gap >= 1.5 and --lead >= 2 seconds");
    }
    if let Some(n) = a.non_acd.iter().find(|n| **n == 0 || **n > a.calls) {
        bail!("--non-acd {n}: calls are numbered 1 to {}", a.calls);
    }
    let mut s = Script::new(&a.output, parse_encap(&a.encap, 0)?, law);
    let base = s.cap.base;
    let us = |secs: f64| (secs * 1e6).round() as i64;
    s.ping(base);
    let nail = s.dialog("nail", (CTI_PORT, PBX), (&a.mobile, MOBILE_GW));
    let idle = s.sdp(PBX_MEDIA, "sendrecv");
    let remote = s.sdp(MOBILE_MEDIA, "sendrecv");
    s.invite(base + us(1.0), &nail, PBX, MOBILE_GW, &a.mobile, &idle);
    s.respond(
        base + us(1.0) + 200_000,
        &nail,
        MOBILE_GW,
        PBX,
        "200 OK",
        "",
        &remote,
    );
    let mut calls = Vec::new();
    let mut cseq = 2;
    for k in 0..a.calls {
        let t = base + us(a.lead) + i64::from(k) * us(a.talk + a.gap);
        calls.push(customer(&mut s, &a, k, t, us(a.talk), &nail, &mut cseq));
    }
    let last = calls.last().map_or(base, |c| base + us(c.end));
    s.in_dialog(
        last + us(1.0),
        &nail,
        (PBX, MOBILE_GW),
        true,
        ("BYE", cseq),
        "",
        ("", ""),
    );
    if let Some(path) = &a.cti_scenario {
        let scenario = cti_scenario(&a.agent, &calls);
        std::fs::write(path, serde_json::to_string_pretty(&scenario)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let (packets, streams, _) = s.write(&a.output)?;
    a.output.write_truth(&Truth {
        packets,
        agent: a.agent.clone(),
        mobile: a.mobile.clone(),
        calls,
        streams,
    })
}

/// Customer call `k` (0-based) at `t`: the caller's INVITE to the DNIS, the nailed dialog
/// re-INVITEd to the caller's media, the answer, `talk` of audio, the caller's BYE and the
/// nailed dialog back to the PBX's media.
fn customer(
    s: &mut Script,
    a: &NailedArgs,
    k: u32,
    t: i64,
    talk: i64,
    nail: &crate::handoff::Dialog,
    cseq: &mut u32,
) -> CallTruth {
    let ani = format!("+4930555{:04}", 1000 + k);
    let gw_media = (GW, 20000 + 2 * k as u16);
    let d = s.dialog(&format!("cust{k}"), (&ani, GW), (DNIS, PBX));
    let offer = s.sdp(gw_media, "sendrecv");
    let remote = s.sdp(MOBILE_MEDIA, "sendrecv");
    let idle = s.sdp(PBX_MEDIA, "sendrecv");
    s.invite(t, &d, GW, PBX, DNIS, &offer);
    s.respond(t + 5_000, &d, PBX, GW, "100 Trying", "", "");
    let nailed = (PBX, MOBILE_GW);
    s.in_dialog(
        t + 20_000,
        nail,
        nailed,
        true,
        ("INVITE", *cseq),
        "",
        (&offer, &remote),
    );
    s.respond(t + 60_000, &d, PBX, GW, "200 OK", "", &remote);
    let (caller_hz, agent_hz) = (400.0 + 200.0 * f64::from(k), 1000.0 + 200.0 * f64::from(k));
    let from = t + 60_000 + MEDIA_AFTER_US;
    let mut pair = s.pair(
        (gw_media.0, gw_media.1, caller_hz),
        (MOBILE_MEDIA.0, MOBILE_MEDIA.1, agent_hz),
    );
    s.talk(
        "customer",
        &mut pair,
        (from, from + talk),
        [heard(&a.agent, "to_agent"), heard(&a.agent, "from_agent")],
    );
    let end = from + talk;
    s.in_dialog(end, &d, (GW, PBX), true, ("BYE", 2), "", ("", ""));
    s.in_dialog(
        end + 20_000,
        nail,
        nailed,
        true,
        ("INVITE", *cseq + 1),
        "",
        (&idle, &remote),
    );
    *cseq += 2;
    let secs = |x: i64| (x - s.cap.base) as f64 / 1e6;
    CallTruth {
        cti_call: k + 1,
        call_type: if a.non_acd.contains(&(k + 1)) { 9 } else { 1 },
        ani,
        start: secs(from),
        end: secs(end),
        caller_hz,
        agent_hz,
    }
}

/// The CTI Server's view of the customer calls (see the module doc).
fn cti_scenario(agent: &str, calls: &[CallTruth]) -> Scenario {
    let ms = |secs: f64| (secs * 1000.0).round().max(0.0) as u64;
    let state = |at_ms, state| ScenarioEvent {
        at_ms,
        what: What::AgentState {
            agent: agent.to_owned(),
            extension: agent.to_owned(),
            state,
        },
    };
    let mut events = vec![state(0, 3)];
    for c in calls {
        let answered = ms(c.start) - MEDIA_AFTER_US as u64 / 1000;
        events.push(ScenarioEvent {
            at_ms: answered.saturating_sub(1000),
            what: What::BeginCall {
                call: c.cti_call,
                device: agent.to_owned(),
                call_type: c.call_type,
                ani: c.ani.clone(),
                dnis: DNIS.to_owned(),
            },
        });
        events.push(state(ms(c.start), 4));
        events.push(ScenarioEvent {
            at_ms: ms(c.end) + 300,
            what: What::EndCall {
                call: c.cti_call,
                device: agent.to_owned(),
            },
        });
        events.push(state(ms(c.end) + 301, 3));
    }
    events.sort_by_key(|e| e.at_ms);
    Scenario {
        peripheral: 5000,
        events,
    }
}
