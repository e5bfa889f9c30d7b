//! The CTI Server feed with real processes: `capgen calls --no-sip --cti-scenario` writes a
//! capture whose calls carry no SIP (as with SIP over TLS) and the CTI Server's view of them;
//! `capgen cti-server` plays that view as a mock CTI Server (with failures on demand);
//! `silentmon server --replay` takes the feed; `silentmon supervisor` records what it hears.
//!
//! No root: the capture is replayed from the file (libpcap offline), the feed is TCP on
//! loopback. No test asserts a wall-clock duration; waits are bounded so a failure cannot hang.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::appliance::{
    ctl_json, eventually, free_port, start_replaying_with, Pki, Replaying, Roster,
};
use common::audio::{capgen, seconds_of, Stereo};
use common::endpoint::{recordings, Endpoint};
use common::{run_ok, silentmon};

/// `capgen cti-server` on a free loopback port; killed on drop.
struct Mock {
    child: Child,
    addr: String,
}

impl Mock {
    fn start(scenario: &Path, faults: &[&str]) -> Mock {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = capgen()
            .arg("cti-server")
            .arg("--scenario")
            .arg(scenario)
            .args(["--listen", &addr])
            .args(faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "mock CTI Server: {line}");
        Mock { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.kill();
    }
}

const ROSTER: Roster<'static> = Roster {
    agents: &[("5001", "blue"), ("5002", "blue")],
    supervisors: &[("s1", &["blue"])],
};

/// Two SIP-less calls (5001: caller 400 Hz, agent 1000 Hz; 5002: 410 / 1010 Hz) of `secs`
/// seconds, and the CTI Server's scenario for them.
fn generate(dir: &Path, secs: &str) -> (PathBuf, PathBuf) {
    let (pcap, scenario) = (dir.join("calls.pcap"), dir.join("cti.json"));
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--duration",
                secs,
                "--no-sip",
                "-o",
            ])
            .arg(&pcap)
            .arg("--truth")
            .arg(dir.join("truth.json"))
            .arg("--cti-scenario")
            .arg(&scenario),
    );
    (pcap, scenario)
}

/// A `[cti]` table for `sides` at protocol `version`, heartbeats every 5 s (the least).
fn cti_table(sides: &[&str], version: u32) -> String {
    let mut t = format!("[cti]\nside_a = \"{}\"\nversion = {version}\n", sides[0]);
    if let Some(b) = sides.get(1) {
        t += &format!("side_b = \"{b}\"\n");
    }
    t
}

/// An appliance replaying `pcap` at speed 1 in its own directory `dir`/`tag`.
fn appliance(dir: &Path, pki: &Pki, tag: &str, pcap: &Path, extra: &str) -> Replaying {
    let own = dir.join(tag);
    std::fs::create_dir_all(&own).unwrap();
    start_replaying_with(&own, pki, "a", &ROSTER, pcap, ("1", false), extra)
}

fn ctl_base<'a>(r: &'a Replaying, ca: &'a str) -> [&'a str; 8] {
    [
        "--server",
        &r.control,
        "--ca",
        ca,
        "--server-name",
        "localhost",
        "--user",
        "s1",
    ]
}

/// Frames captured on every input.
fn frames(r: &Replaying) -> f64 {
    r.app
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("silentmon_capture_frames_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_replayed(r: &Replaying, secs: f64) {
    eventually(
        Duration::from_secs_f64(secs + 30.0),
        "the replay's end",
        || (r.app.metric("silentmon_capture_inputs") == 0.0).then_some(()),
    );
}

#[test]
fn a_sip_less_capture_is_heard_through_the_feed_in_versions_19_and_24_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, scenario) = generate(d, "8");
    let mock = Mock::start(&scenario, &[]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let ca = pki.ca().to_str().unwrap().to_owned();
    let v24 = appliance(d, &pki, "v24", &pcap, &cti_table(&[&mock.addr], 24));
    let v19 = appliance(d, &pki, "v19", &pcap, &cti_table(&[&mock.addr], 19));
    let none = appliance(d, &pki, "none", &pcap, "");
    let listen = |r: &Replaying, tag: &str| {
        Endpoint::start(
            &pki,
            &d.join(tag),
            &[&r.control],
            "s1",
            &["--monitor", "5001"],
        )
    };
    let ends = [
        listen(&v24, "v24"),
        listen(&v19, "v19"),
        listen(&none, "none"),
    ];

    // While the calls last: the CTI's states, calls and bindings in the control plane.
    for r in [&v24, &v19] {
        let base = ctl_base(r, &ca);
        eventually(Duration::from_secs(10), "5001 talking", || {
            let agents = ctl_json(&base, &["agents"]);
            let a = agents.as_array()?.iter().find(|a| a["agent"] == "5001")?;
            (a["state"] == "Talking").then_some(())
        });
        let calls = ctl_json(&base, &["calls"]);
        let call = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"] == "cti-1000@5001")
            .unwrap_or_else(|| panic!("the CTI's call: {calls:#}"));
        assert_eq!(call["from"], "+49305550000");
        let bindings = ctl_json(&base, &["bindings"]);
        assert!(
            bindings
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["agent_id"] == "5001"
                    && b["source"] == "cti"
                    && b["endpoint"] == "10.2.0.1:30000"),
            "{bindings:#}"
        );
        assert_eq!(r.app.metric("silentmon_cti_side"), 1.0);
    }
    // Agent states come as events too: 5001 available again when its call ends.
    let events = silentmon()
        .arg("ctl")
        .args(ctl_base(&v24, &ca))
        .args(["events", "--for", "20s", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for r in [&v24, &v19, &none] {
        wait_replayed(r, 8.0);
    }
    std::thread::sleep(Duration::from_secs(1));
    let base = ctl_base(&v24, &ca);
    let agents = ctl_json(&base, &["agents"]);
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "Available"),
        "{agents:#}"
    );
    let watcher = events;
    let _ = Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("\"5001\"") && l.contains("\"Available\"")),
        "no state event: {text}"
    );
    for r in [&v24, &v19] {
        let rtp = r
            .app
            .metric("silentmon_cti_messages_total{type=\"rtp_started_event\"}");
        assert_eq!(rtp, 4.0, "two calls, two directions each");
        assert_eq!(r.app.metric("silentmon_cti_malformed_total"), 0.0);
    }
    let status = ends[2].status().unwrap();
    assert_eq!(status["packets"], 0, "no feed, no binding: {status:#}");

    // What the supervisor heard: 5001's call, its agent (1000 Hz) left, its caller (400 Hz)
    // right; never 5002's (1010 / 410 Hz).
    let all = [400.0, 410.0, 1000.0, 1010.0];
    let logs: Vec<String> = ends.into_iter().map(Endpoint::stop).collect();
    for (tag, log) in ["v24", "v19"].iter().zip(&logs) {
        let wavs: Vec<Stereo> = recordings(&d.join(tag).join("rec-s1"), "5001")
            .iter()
            .map(|w| Stereo::from_wav(w))
            .collect();
        assert_eq!(wavs.len(), 1, "{tag}: one call, one recording\n{log}");
        let secs = wavs[0].secs();
        assert!(secs > 3.0, "{tag}: {secs:.1} s recorded\n{log}");
        let agent = seconds_of(&wavs, 0, 1000.0, &all);
        let caller = seconds_of(&wavs, 1, 400.0, &all);
        assert!(
            agent > secs - 1.0 && caller > secs - 1.0,
            "{tag}: agent {agent:.1} s, caller {caller:.1} s of {secs:.1} s"
        );
        for (ch, hz) in [(0, 1010.0), (1, 410.0), (0, 400.0), (1, 1000.0)] {
            assert_eq!(
                seconds_of(&wavs, ch, hz, &all),
                0.0,
                "{tag}: {hz} Hz on {ch}"
            );
        }
    }
    assert!(recordings(&d.join("none").join("rec-s1"), "5001").is_empty());
}

#[test]
fn side_a_lost_moves_to_side_b_keeping_the_bindings_and_deaf_heartbeats_reset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, scenario) = generate(d, "40");
    // Side B knows the agents but says nothing of calls: what 5001 is bound to after the
    // move is what side A said. It stops answering heartbeats at once.
    let quiet = d.join("quiet.json");
    std::fs::write(&quiet, r#"{"peripheral": 5000, "events": []}"#).unwrap();
    let mut a = Mock::start(&scenario, &[]);
    let b = Mock::start(&quiet, &["--deaf-after-ms", "0"]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let r = appliance(d, &pki, "ab", &pcap, &cti_table(&[&a.addr, &b.addr], 24));
    let s1 = Endpoint::start(&pki, d, &[&r.control], "s1", &["--monitor", "5001"]);
    let packets = || s1.status().ok()?["packets"].as_u64();
    eventually(Duration::from_secs(20), "5001's audio", || {
        (packets()? > 50).then_some(())
    });
    assert_eq!(r.app.metric("silentmon_cti_side"), 1.0);
    a.kill();
    eventually(Duration::from_secs(20), "side B", || {
        (r.app.metric("silentmon_cti_side") == 2.0).then_some(())
    });
    let before = packets().unwrap();
    eventually(Duration::from_secs(10), "audio after the move", || {
        (packets()? > before + 50).then_some(())
    });
    // Side B never answers a heartbeat: three unanswered (5 s apart), then a reset.
    eventually(Duration::from_secs(40), "the reset", || {
        r.app
            .log_text()
            .contains("3 heartbeats unanswered")
            .then_some(())
    });
    assert!(r.app.metric("silentmon_cti_resets_total") >= 2.0);
    // And it tries again (side A, gone: refused; then B).
    eventually(Duration::from_secs(20), "the next try", || {
        (r.app.metric("silentmon_cti_connects_total") >= 4.0).then_some(())
    });
    drop(s1);
}

#[test]
fn a_refused_open_is_logged_clearly_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, scenario) = generate(d, "2");
    let mock = Mock::start(&scenario, &["--fail-open", "2"]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let r = appliance(d, &pki, "refused", &pcap, &cti_table(&[&mock.addr], 24));
    eventually(Duration::from_secs(30), "the third try's session", || {
        (r.app.metric("silentmon_cti_side") == 1.0).then_some(())
    });
    let log = r.app.log_text();
    assert_eq!(
        log.matches("OPEN_REQ refused: E_CTI_INVALID_PASSWORD (36)")
            .count(),
        2,
        "{log}"
    );
    assert_eq!(r.app.metric("silentmon_cti_connects_total"), 3.0);
}

#[test]
fn garbage_from_the_cti_side_is_counted_and_resets_while_the_appliance_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, scenario) = generate(d, "20");
    let pki = Pki::new(&d.join("certs"), "localhost");
    let ca = pki.ca().to_str().unwrap().to_owned();
    let garbage =
        |kind: &str| Mock::start(&scenario, &["--garbage-after-ms", "300", "--garbage", kind]);
    let (huge, zero) = (garbage("huge"), garbage("zero"));
    let (cut, random) = (garbage("truncated"), garbage("random"));
    let one = appliance(
        d,
        &pki,
        "one",
        &pcap,
        &cti_table(&[&huge.addr, &zero.addr], 24),
    );
    let two = appliance(
        d,
        &pki,
        "two",
        &pcap,
        &cti_table(&[&cut.addr, &random.addr], 19),
    );
    for (r, said) in [
        (&one, ["exceeds the limit", "message type 30"]),
        (&two, ["message type 24", "exceeds the limit"]),
    ] {
        eventually(Duration::from_secs(30), "both sides' garbage", || {
            (r.app.metric("silentmon_cti_malformed_total") >= 2.0).then_some(())
        });
        assert!(r.app.metric("silentmon_cti_resets_total") >= 2.0);
        let log = r.app.log_text();
        for s in said {
            assert!(log.contains(s), "{s}: {log}");
        }
        // The appliance serves: its control plane answers, the capture goes on.
        let agents = ctl_json(&ctl_base(r, &ca), &["agents"]);
        assert_eq!(agents.as_array().unwrap().len(), 2);
        let seen = frames(r);
        eventually(Duration::from_secs(10), "the capture going on", || {
            (frames(r) > seen).then_some(())
        });
    }
}

#[test]
fn one_media_line_with_two_customer_calls_gives_two_recordings() {
    // A mobile agent's nailed line as the CTI Server describes it: one media endpoint up for
    // the whole capture, two customer calls delimited only by the CTI's call events.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = d.join("line.pcap");
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "1",
                "--duration",
                "20",
                "--no-sip",
                "-o",
            ])
            .arg(&pcap)
            .arg("--truth")
            .arg(d.join("truth.json")),
    );
    let rtp = |t: &str, at: u64, call: u32, dir: u16| {
        format!(
            r#"{{"at_ms": {at}, "type": "{t}", "call": {call}, "device": "5001", "agent": "5001",
                "direction": {dir}, "address": "10.2.0.1", "port": 30000,
                "sending_address": "10.1.0.1", "sending_port": 20000}}"#
        )
    };
    let call = |begin: u64, end: u64, id: u32| {
        [
            format!(
                r#"{{"at_ms": {begin}, "type": "begin_call", "call": {id}, "device": "5001",
                    "call_type": 1, "ani": "+4930{id}", "dnis": "5001"}}"#
            ),
            rtp("rtp_started", begin, id, 0),
            rtp("rtp_started", begin, id, 1),
            rtp("rtp_stopped", end, id, 0),
            rtp("rtp_stopped", end, id, 1),
            format!(r#"{{"at_ms": {end}, "type": "end_call", "call": {id}, "device": "5001"}}"#),
        ]
        .join(",")
    };
    let scenario = d.join("cti.json");
    std::fs::write(
        &scenario,
        format!(
            r#"{{"peripheral": 5000, "events": [{}, {}]}}"#,
            call(2000, 8000, 1),
            call(11000, 17000, 2)
        ),
    )
    .unwrap();
    let mock = Mock::start(&scenario, &[]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let r = appliance(d, &pki, "line", &pcap, &cti_table(&[&mock.addr], 24));
    let e = Endpoint::start(&pki, d, &[&r.control], "s1", &["--monitor", "5001"]);
    wait_replayed(&r, 20.0);
    std::thread::sleep(Duration::from_secs(1));
    let log = e.stop();
    let wavs = recordings(&d.join("rec-s1"), "5001");
    let names: Vec<String> = wavs
        .iter()
        .map(|w| w.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}\n{log}");
    assert!(names[0].starts_with("5001_cti-1_5001_"), "{names:?}");
    assert!(names[1].starts_with("5001_cti-2_5001_"), "{names:?}");
    let all = [400.0, 1000.0];
    for w in &wavs {
        let heard = [Stereo::from_wav(w)];
        let secs = heard[0].secs();
        assert!((4.0..8.0).contains(&secs), "{w:?}: {secs:.1} s");
        assert!(seconds_of(&heard, 0, 1000.0, &all) > secs - 1.5, "{w:?}");
        assert!(seconds_of(&heard, 1, 400.0, &all) > secs - 1.5, "{w:?}");
    }
}
