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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::appliance::{
    ctl_json, eventually, free_port, start_replaying_people, start_replaying_with, Pki, Replaying,
    Roster,
};
use common::audio::{capgen, seconds_of, Stereo};
use common::endpoint::{recordings, Endpoint};
use common::{run_ok, silentmon};

/// A child's stdout lines, each with the instant it was read.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl Lines {
    /// Reads `out` on a thread of its own until it closes.
    fn read(out: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                keep.0.lock().unwrap().push((Instant::now(), line));
            }
        });
        lines
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// `capgen cti-server` on a free loopback port, printing each event it sends; killed on drop.
struct Mock {
    child: Child,
    addr: String,
    sent: Lines,
}

impl Mock {
    fn start(scenario: &Path, faults: &[&str]) -> Mock {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = capgen()
            .arg("cti-server")
            .arg("--scenario")
            .arg(scenario)
            .args(["--listen", &addr, "--print-sent"])
            .args(faults)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "mock CTI Server: {line}");
        let sent = Lines::read(out);
        Mock { child, addr, sent }
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

/// Supervisor s1's endpoint in `dir`, monitoring 5001 on `r`.
fn monitor_5001(pki: &Pki, dir: &Path, r: &Replaying) -> Endpoint {
    Endpoint::start(pki, dir, &[&r.control], "s1", &["--monitor", "5001"])
}

fn wait_replayed(r: &Replaying, secs: f64) {
    eventually(
        Duration::from_secs_f64(secs + 30.0),
        "the replay's end",
        || (r.app.metric("silentmon_capture_inputs") == 0.0).then_some(()),
    );
}

/// For each agent state of 5001 the mock sent at protocol version `v` after `from`: the
/// line, and how long after it the `ctl events` watcher printed that state (None: never).
fn state_delays(
    sent: &[(Instant, String)],
    seen: &[(Instant, String)],
    v: u32,
    from: Instant,
) -> Vec<(String, Option<Duration>)> {
    let prefix = format!("sent v{v} AgentState {{ agent: \"5001\"");
    let names = [(3, "Available"), (4, "Talking")];
    sent.iter()
        .filter(|(t, l)| *t >= from && l.starts_with(&prefix))
        .map(|(t, l)| {
            let state = names
                .iter()
                .find(|(n, _)| l.contains(&format!("state: {n} ")))
                .map_or_else(|| panic!("a state the test does not name: {l}"), |n| n.1);
            let printed = seen.iter().find(|(u, e)| {
                u >= t
                    && e.contains("\"AgentStateEvent\"")
                    && e.contains("\"5001\"")
                    && e.contains(&format!("\"{state}\""))
            });
            (l.clone(), printed.map(|(u, _)| *u - *t))
        })
        .collect()
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
    let ends = [
        monitor_5001(&pki, &d.join("v24"), &v24),
        monitor_5001(&pki, &d.join("v19"), &v19),
        monitor_5001(&pki, &d.join("none"), &none),
    ];
    // Agent states come as events too, each within a second of the mock's sending it.
    let mut watcher = silentmon()
        .arg("ctl")
        .args(ctl_base(&v24, &ca))
        .args(["events", "--for", "30s", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let watching = Instant::now() + Duration::from_secs(1);
    let events = Lines::read(watcher.stdout.take().unwrap());

    // While the calls last: the CTI's states, calls and bindings in the control plane.
    for r in [&v24, &v19] {
        let base = ctl_base(r, &ca);
        eventually(Duration::from_secs(10), "5001 talking", || {
            let agents = ctl_json(&base, &["agents"]);
            let a = agents.as_array()?.iter().find(|a| a["agent"] == "5001")?;
            (a["state"] == "Talking").then_some(())
        });
        // The lists come from the engine's view, published every 250 ms and built between
        // batches: the call may reach it a little after the state reached the control plane.
        let call = eventually(
            Duration::from_secs(3),
            "the CTI's call in the lists",
            || {
                let calls = ctl_json(&base, &["calls"]);
                let found = calls
                    .as_array()?
                    .iter()
                    .find(|c| c["call_id"] == "cti-1000@5001");
                found.cloned()
            },
        );
        assert_eq!(call["from"], "+49305550000");
        let bindings = eventually(Duration::from_secs(3), "the CTI's binding", || {
            let bindings = ctl_json(&base, &["bindings"]);
            let bound = bindings.as_array()?.iter().any(|b| b["agent_id"] == "5001");
            bound.then_some(bindings)
        });
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
    let _ = Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status();
    watcher.wait().unwrap();
    let delays = state_delays(&mock.sent.all(), &events.all(), 24, watching);
    eprintln!("mock -> ctl events: {delays:?}");
    assert!(
        delays.iter().any(|(l, _)| l.contains("state: 3 ")),
        "5001 available again when its call ends: {delays:?}"
    );
    for (sent, delay) in &delays {
        assert!(
            delay.is_some_and(|d| d < Duration::from_secs(1)),
            "{sent}: seen after {delay:?}"
        );
    }
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

/// Agent 5001, a mobile agent (remote number +4915112345678, warned when monitored), and
/// supervisor s1.
const MOBILE_PEOPLE: &str = "[[agent]]\nid = \"5001\"\nextension = \"5001\"\n\
    mobile_number = \"+4915112345678\"\nteam = \"blue\"\nwarn_if_silent_monitored = true\n\
    [[supervisor]]\nid = \"s1\"\nteams = [\"blue\"]\n";

#[test]
fn a_nailed_connection_is_split_per_customer_call_by_the_cti_feed() {
    // A mobile agent's nailed connection as the SPAN shows it: one SIP dialog for the shift,
    // a re-INVITE per customer call; the CTI Server's call events delimit the customer calls.
    // The third call is the agent's own (CallType 9).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pcap, scenario, truth) = (d.join("nailed.pcap"), d.join("cti.json"), d.join("t.json"));
    run_ok(
        capgen()
            .args(["nailed", "--calls", "3", "--non-acd", "3", "-o"])
            .arg(&pcap)
            .arg("--truth")
            .arg(&truth)
            .arg("--cti-scenario")
            .arg(&scenario),
    );
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let calls = truth["calls"].as_array().unwrap().clone();
    let tones = |c: &serde_json::Value| {
        (
            c["agent_hz"].as_f64().unwrap(),
            c["caller_hz"].as_f64().unwrap(),
        )
    };
    let all: Vec<f64> = calls
        .iter()
        .flat_map(|c| [tones(c).0, tones(c).1])
        .collect();
    let end = calls[2]["end"].as_f64().unwrap();
    let mock = Mock::start(&scenario, &[]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let ca = pki.ca().to_str().unwrap().to_owned();
    // "hear": every call is heard; "stop": StopSMNonACDCall ends the monitor at the third.
    let start = |tag: &str, monitor_keys: &str| {
        let own = d.join(tag);
        std::fs::create_dir_all(&own).unwrap();
        let cti = cti_table(&[&mock.addr], 24);
        let people = (MOBILE_PEOPLE, monitor_keys);
        start_replaying_people(&own, &pki, "a", people, &pcap, ("1", false), &cti)
    };
    let apps = [
        start("hear", ""),
        start("stop", "stop_sm_non_acd_call = true\n"),
    ];
    // The agent logs in (its warnings) before the supervisor starts monitoring it.
    let mut agents: Vec<(Child, Lines)> = apps
        .iter()
        .map(|r| {
            let mut c = silentmon()
                .arg("ctl")
                .args(&ctl_base(r, &ca)[..6])
                .args(["--mode", "agent", "--user", "5001", "events", "--json"])
                .args(["--for", "60s"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let lines = Lines::read(c.stdout.take().unwrap());
            (c, lines)
        })
        .collect();
    for r in &apps {
        eventually(Duration::from_secs(10), "5001 logged in", || {
            let agents = r.app.metric("silentmon_control_sessions{mode=\"agent\"}");
            (agents == 1.0).then_some(())
        });
    }
    let ends: Vec<Endpoint> = ["hear", "stop"]
        .iter()
        .zip(&apps)
        .map(|(tag, r)| monitor_5001(&pki, &d.join(tag), r))
        .collect();
    // While the replay runs, the control plane lists each customer call in turn.
    let mut listed = std::collections::BTreeMap::new();
    while apps[0].app.metric("silentmon_capture_inputs") != 0.0 {
        for c in ctl_json(&ctl_base(&apps[0], &ca), &["calls"])
            .as_array()
            .unwrap()
        {
            if c["call_id"].as_str().unwrap().starts_with("cti-") {
                listed.insert(c["call_id"].to_string(), c["from"].to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_replayed(&apps[1], end);
    std::thread::sleep(Duration::from_secs(1));
    let expected: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                format!("\"cti-{}@5001\"", c["cti_call"]),
                c["ani"].to_string(),
            )
        })
        .collect();
    assert_eq!(listed.into_iter().collect::<Vec<_>>(), expected);
    let monitors = |r| {
        ctl_json(&ctl_base(r, &ca), &["monitors"])
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        (monitors(&apps[0]), monitors(&apps[1])),
        (1, 0),
        "StopSMNonACDCall"
    );

    // One WAV per customer call heard, each with its own call's tones only.
    let logs: Vec<String> = ends.into_iter().map(Endpoint::stop).collect();
    for ((tag, heard), log) in [("hear", 3), ("stop", 2)].into_iter().zip(&logs) {
        let wavs = recordings(&d.join(tag).join("rec-s1"), "5001");
        let names: Vec<String> = wavs
            .iter()
            .map(|w| w.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), heard, "{tag}: {names:?}\n{log}");
        for (k, (w, name)) in wavs.iter().zip(&names).enumerate() {
            assert!(
                name.starts_with(&format!("5001_cti-{}_5001_", k + 1)),
                "{name}"
            );
            let wav = [Stereo::from_wav(w)];
            let secs = wav[0].secs();
            let (agent_hz, caller_hz) = tones(&calls[k]);
            let talk = calls[k]["end"].as_f64().unwrap() - calls[k]["start"].as_f64().unwrap();
            let agent = seconds_of(&wav, 0, agent_hz, &all);
            let caller = seconds_of(&wav, 1, caller_hz, &all);
            // The WAV runs from BEGIN_CALL (a second before the answer) to the drained end.
            assert!(
                (talk..talk + 3.0).contains(&secs)
                    && agent > talk - 1.0
                    && caller > talk - 1.0,
                "{name}: {secs:.1} s, agent {agent:.1} s, caller {caller:.1} s of {talk:.1} s\n{log}"
            );
            for other in calls.iter().filter(|c| *c != &calls[k]) {
                let (a, c) = tones(other);
                assert_eq!(
                    seconds_of(&wav, 0, a, &all) + seconds_of(&wav, 1, c, &all),
                    0.0,
                    "{name}"
                );
            }
        }
    }

    // The agent was warned of each call the monitor heard, with its CallType.
    let warned = |(mut child, lines): (Child, Lines)| -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        child.wait().unwrap();
        lines
            .all()
            .into_iter()
            .filter_map(|(_, l)| {
                let v: serde_json::Value = serde_json::from_str(&l).ok()?;
                let msg = v["msg"].as_str()?.trim_end_matches("Event").to_owned();
                if !msg.starts_with("SilentMonitor") {
                    return None;
                }
                Some(match v.get("call") {
                    Some(c) => format!("{msg} {c} {} {}", v["call_type"], v["acd"]),
                    None => msg,
                })
            })
            .collect()
    };
    let stop = warned(agents.pop().unwrap());
    let hear = warned(agents.pop().unwrap());
    let call = |n: u32, t: u16, acd: bool| format!("SilentMonitorCall \"cti-{n}@5001\" {t} {acd}");
    // (Both end with the monitor's end: "stop" at the third call, "hear" when s1 left.)
    assert_eq!(
        hear,
        [
            "SilentMonitorStarted".to_owned(),
            call(1, 1, true),
            call(2, 1, true),
            call(3, 9, false),
            "SilentMonitorStopped".to_owned()
        ]
    );
    assert_eq!(
        stop,
        [
            "SilentMonitorStarted".to_owned(),
            call(1, 1, true),
            call(2, 1, true),
            "SilentMonitorStopped".to_owned()
        ]
    );
}
