//! Calls that change hands between agents of two teams (`capgen handoff`: a forwarded call, a
//! pickup, a hunt-group call through a proxy, and CUCM's consult transfer) reach exactly the
//! supervisors of the agents who talk in them:
//! - through the router, packet by packet: every stream the truth file gives an agent reaches
//!   that agent's monitor in the right direction, nothing else does, and each agent's
//!   conversations are announced once each (a B2BUA's two legs are one call);
//! - through the real product over TLS: 5001's supervisor (team blue) and 5002's (team green)
//!   record only the tones of the conversations their agent was in, one WAV per conversation;
//!   5001's recording of the transferred call ends when 5001 leaves it.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::appliance::*;
use common::audio::{capgen, goertzel, Stereo};
use common::endpoint::{recordings, Endpoint};
use common::*;
use serde_json::Value;
use silentmon::binding::{Agent, Direction};
use silentmon::capture::file::PcapFile;
use silentmon::capture::PacketSource;
use silentmon::engine::EngineConfig;
use silentmon::router::{Forward, Notice, Router};
use silentmon::time::Span;

/// Generates the hand-off capture (5001 and 5002; the first call after `lead` s) and its truth.
fn generate(dir: &Path, lead: &str) -> Value {
    let pcap = dir.join("calls.pcap");
    let truth = dir.join("calls.json");
    run_ok(
        capgen()
            .args(["handoff", "--lead", lead, "-o"])
            .arg(&pcap)
            .arg("--truth")
            .arg(&truth),
    );
    serde_json::from_slice(&std::fs::read(truth).unwrap()).unwrap()
}

fn streams(truth: &Value) -> &Vec<Value> {
    truth["streams"].as_array().unwrap()
}

/// (agent, direction) pairs the truth says hear `stream`.
fn hearers(stream: &Value) -> Vec<(String, String)> {
    stream["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_handed_off_stream_reaches_exactly_the_agents_in_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let truth = generate(dir.path(), "1");
    let agent = |id: &str| Agent {
        id: id.into(),
        extension: id.into(),
        mobile_number: None,
        phone_ips: vec![],
    };
    let mut router = Router::new(
        EngineConfig::default(),
        vec![agent("5001"), agent("5002")],
        Span::from_secs(2),
    );
    router.add_monitor(1, 0);
    router.add_monitor(2, 1);
    let mut file = PcapFile::open(&dir.path().join("calls.pcap"), None).unwrap();
    let link = file.link_type();
    // (monitor, direction, SSRC) -> packets; the conversations each monitor was told of.
    let mut got: HashMap<(u64, &'static str, u32), u64> = HashMap::new();
    let mut calls: HashMap<u64, Vec<String>> = HashMap::new();
    let mut ended: HashMap<u64, Vec<String>> = HashMap::new();
    while let Some(f) = file.next_frame().unwrap() {
        router.handle_frame(f.ts, link, f.data, &mut |fw: Forward<'_>| {
            let ssrc = u32::from_be_bytes(fw.rtp[8..12].try_into().unwrap());
            let dir = match fw.direction {
                Direction::FromAgent => "from_agent",
                Direction::ToAgent => "to_agent",
            };
            *got.entry((fw.monitor, dir, ssrc)).or_default() += 1;
        });
        while let Some(n) = router.poll_notice() {
            if std::env::var_os("TRACE").is_some() {
                eprintln!("{n:?}");
            }
            match n {
                Notice::Call {
                    monitor, call_id, ..
                } => calls.entry(monitor).or_default().push(call_id),
                Notice::CallEnded { monitor, call_id } => {
                    ended.entry(monitor).or_default().push(call_id)
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let monitor_of = |a: &str| if a == "5001" { 1 } else { 2 };
    let mut want: HashMap<(u64, &'static str, u32), u64> = HashMap::new();
    for s in streams(&truth) {
        let ssrc = s["ssrc"].as_u64().unwrap() as u32;
        for (a, d) in hearers(s) {
            let d = if d == "from_agent" {
                "from_agent"
            } else {
                "to_agent"
            };
            want.insert((monitor_of(&a), d, ssrc), s["packets"].as_u64().unwrap());
        }
    }
    let mut extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(k)).collect();
    extra.sort();
    assert!(
        extra.is_empty(),
        "packets a monitor must not get: {extra:?}"
    );
    for (k, n) in &want {
        assert_eq!(got.get(k), Some(n), "{k:?}");
    }
    // One conversation per call the agent was in: 5001 the hunt, the call it transferred (its
    // two dialogs with the PBX are one) and its consult; 5002 the forwarded call, the pickup and
    // the consult that became the transferred call. Each announced once and ended once.
    let id = |n: &str| format!("00000001-{n}@capgen");
    let c1 = &calls[&1];
    assert_eq!(c1.len(), 3, "{c1:?}");
    assert_eq!(c1[0], id("hunt"));
    assert!(c1[1].starts_with("00000001-xfer-"), "{c1:?}");
    assert_eq!(c1[2], id("xfer-consult-a"));
    assert_eq!(ended[&1].len(), 3, "{:?}", ended[&1]);
    let c2 = &calls[&2];
    assert_eq!(c2.len(), 3, "{c2:?}");
    assert!(c2[0].starts_with("00000001-fwd-"), "{c2:?}");
    assert!(c2[1].starts_with("00000001-pick-"), "{c2:?}");
    assert!(
        c2[2].starts_with("00000001-xfer-consult-"),
        "the consult's conversation goes on as the transferred call: {c2:?}"
    );
    assert_eq!(ended[&2].len(), 3, "{:?}", ended[&2]);
}

/// Seconds of `wav` in which `hz` dominates `channel` (0 left, 1 right), in 100 ms windows.
fn seconds_of(w: &Stereo, channel: usize, hz: f64, all: &[f64]) -> f64 {
    let x = if channel == 0 { &w.left } else { &w.right };
    let n = (w.rate / 10) as usize;
    let windows = x.chunks(n).filter(|c| {
        let loud = common::audio::rms(c) > 0.02;
        let mine = goertzel(c, hz, w.rate);
        loud && all
            .iter()
            .filter(|f| **f != hz)
            .all(|f| goertzel(c, *f, w.rate) * 10.0 < mine)
    });
    windows.count() as f64 / 10.0
}

#[test]
fn supervisors_of_two_teams_each_record_only_their_agents_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let truth = generate(dir.path(), "4");
    let pki = Pki::new(&dir.path().join("certs"), "localhost");
    let roster = Roster {
        agents: &[("5001", "blue"), ("5002", "green")],
        supervisors: &[("s1", &["blue"]), ("s2", &["green"])],
    };
    let r = start_replaying(
        dir.path(),
        &pki,
        "a",
        &roster,
        &dir.path().join("calls.pcap"),
        ("1", false),
    );
    let servers = [r.control.as_str()];
    let s1 = Endpoint::start(&pki, dir.path(), &servers, "s1", &["--monitor", "5001"]);
    let s2 = Endpoint::start(&pki, dir.path(), &servers, "s2", &["--monitor", "5002"]);
    for e in [&s1, &s2] {
        let st = eventually(Duration::from_secs(20), "the monitor", || {
            let st = e.status().ok()?;
            (st["monitoring"] == true).then_some(st)
        });
        assert_eq!(
            st["packets"], 0,
            "monitoring began after the first call: {st:#}"
        );
    }
    // Until the replay is over (the last scenario's end, plus the endpoints' buffers).
    let end = truth["scenarios"].as_array().unwrap().last().unwrap()["end"]
        .as_f64()
        .unwrap();
    eventually(
        Duration::from_secs_f64(end + 30.0),
        "the replay's end",
        || {
            let done = r.app.metric("silentmon_capture_inputs") == 0.0;
            done.then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let expected: u64 = streams(&truth)
        .iter()
        .filter(|s| hearers(s).iter().any(|(a, _)| a == "5001"))
        .map(|s| s["packets"].as_u64().unwrap())
        .sum();
    let st1 = s1.status().unwrap();
    assert_eq!(st1["packets"], expected, "5001's packets: {st1:#}");
    let logs = [s1.stop(), s2.stop()];
    // Tones (capgen handoff): callers 400 (forward), 500 (pickup), 600 (hunt), 700
    // (transfer); 5001 1000 (hunt), 1100 (transferred call), 1200 (its consult); 5002 1500
    // (forward), 1600 (pickup), 1700 (consult and transferred call).
    let all = [
        400.0, 500.0, 600.0, 700.0, 1000.0, 1100.0, 1200.0, 1500.0, 1600.0, 1700.0,
    ];
    let talk = 2.0;
    let check = |user: &str, agent: &str, log: &str, want: &[(f64, f64, f64)]| {
        let wavs = recordings(&dir.path().join(format!("rec-{user}")), agent);
        assert_eq!(wavs.len(), 3, "{user}: {wavs:?}\n{log}");
        let heard: Vec<Stereo> = wavs.iter().map(|w| Stereo::from_wav(w)).collect();
        for &hz in &all {
            for ch in 0..2 {
                let secs: f64 = heard.iter().map(|w| seconds_of(w, ch, hz, &all)).sum();
                let want = want
                    .iter()
                    .filter(|(l, r, _)| if ch == 0 { *l == hz } else { *r == hz })
                    .map(|w| w.2)
                    .sum::<f64>();
                assert!(
                    (secs - want).abs() <= 0.5,
                    "{user}: {hz} Hz on the {} channel for {secs:.1} s, want {want:.1} s",
                    ["left", "right"][ch]
                );
            }
        }
    };
    // 5001: the hunt (1000 / 600), the call it transferred until it held (1100 / 700), its
    // consult with 5002 (1200 / 1700). Never the forward or the pickup, never the caller
    // after the transfer.
    check(
        "s1",
        "5001",
        &logs[0],
        &[
            (1000.0, 600.0, talk),
            (1100.0, 700.0, talk),
            (1200.0, 1700.0, talk),
        ],
    );
    // 5002: the forwarded call (1500 / 400), the pickup (1600 / 500), the consult (1700 /
    // 1200) and the transferred caller after it (1700 / 700), in one recording.
    check(
        "s2",
        "5002",
        &logs[1],
        &[
            (1500.0, 400.0, talk),
            (1600.0, 500.0, talk),
            (1700.0, 1200.0, talk),
            (1700.0, 700.0, talk),
        ],
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"monitor_started\"").count(), 2, "{audit}");
}
