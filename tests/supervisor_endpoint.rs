//! The whole product on loopback, every link over TLS 1.3 with the private CA (the monitor
//! service with client certificates): `silentmon server` replays a generated many-agent tone
//! capture as live traffic, `silentmon supervisor` endpoints monitor agents (at start and
//! through `ctl --endpoint`), record them, and are checked by the tones they hear (agent left,
//! caller right). A supervisor of another team is refused, an endpoint killed mid-stream frees
//! its monitor, and a deliberately slow endpoint loses frames while another endpoint loses
//! none. On testdata's agent day (`capgen agent-day`), one monitor follows its agent through
//! a hold, the consult call the agent places during it, the resume and the next call.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::appliance::*;
use common::audio::{capgen, dominant, hear, longest_quiet, Stereo};
use common::endpoint::{recordings, Endpoint};
use common::*;
use serde_json::Value;

struct Product {
    dir: tempfile::TempDir,
    pki: Pki,
    control: String,
    monitor: String,
    app: Appliance,
}

impl Product {
    /// `silentmon ctl` against the appliance as supervisor `user`, `--json`, parsed.
    fn ctl_json(&self, user: &str, args: &[&str]) -> Value {
        let ca = self.pki.ca();
        let base = [
            "--server",
            &self.control,
            "--ca",
            ca.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--user",
            user,
        ];
        ctl_json(&base, args)
    }
}

/// Agents 5001..5004 (capgen: call i reaches 5001+i with caller tone 400+10i Hz and agent tone
/// 1000+10i Hz); 5001..5003 in team blue, 5004 in green; s1 (blue), s2 (green), s3 (blue).
fn start_product(speed: &str, calls: u32, secs: u32) -> Product {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("calls.pcap");
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                &calls.to_string(),
                "--duration",
                &secs.to_string(),
                "--encap",
                "vlan:100",
                "-o",
            ])
            .arg(&capture),
    );
    product_on(dir, calls, speed, true)
}

/// The appliance "a" replaying `dir`/calls.pcap at `speed` (again and again when `looped`),
/// with the agents and supervisors [`start_product`] describes.
fn product_on(dir: tempfile::TempDir, agents: u32, speed: &str, looped: bool) -> Product {
    let pki = Pki::new(&dir.path().join("certs"), "localhost");
    let (control, monitor, app) = start_appliance(dir.path(), &pki, "a", agents, speed, looped);
    Product {
        dir,
        pki,
        control,
        monitor,
        app,
    }
}

/// One appliance (configuration `tag`) replaying `dir`/calls.pcap (in a loop when `looped`);
/// its control and monitor addresses. Agents 5001.. (at least four; 5004 in team green, the
/// others blue), supervisors s1 and s3 (blue) and s2 (green).
fn start_appliance(
    dir: &Path,
    pki: &Pki,
    tag: &str,
    calls: u32,
    speed: &str,
    looped: bool,
) -> (String, String, Appliance) {
    let ids: Vec<String> = (0..calls.max(4)).map(|i| (5001 + i).to_string()).collect();
    let agents: Vec<(&str, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), if i == 3 { "green" } else { "blue" }))
        .collect();
    let roster = Roster {
        agents: &agents,
        supervisors: &[("s1", &["blue"]), ("s2", &["green"]), ("s3", &["blue"])],
    };
    let r = start_replaying(
        dir,
        pki,
        tag,
        &roster,
        &dir.join("calls.pcap"),
        (speed, looped),
    );
    (r.control, r.monitor, r.app)
}

impl Product {
    fn endpoint(&self, user: &str, extra: &[&str]) -> Endpoint {
        self.endpoint_with(&[self.control.as_str()], user, extra)
    }

    fn endpoint_with(&self, servers: &[&str], user: &str, extra: &[&str]) -> Endpoint {
        Endpoint::start(&self.pki, self.dir.path(), servers, user, extra)
    }
}

/// Dominant frequency of each channel of a stereo WAV over 2 s after its first 200 ms, and
/// its length in frames.
fn tones(wav: &Path) -> (f64, f64, usize) {
    let a = Stereo::from_wav(wav);
    let (l, r) = a.window(0.2, 2.2);
    (
        dominant(l, a.rate, 5.0),
        dominant(r, a.rate, 5.0),
        a.left.len(),
    )
}

#[test]
fn two_supervisors_each_hear_only_their_agent() {
    let p = start_product("1", 4, 30);
    // s1 monitors 5001 from the start; s2 is told to monitor 5004 through local control.
    let s1 = p.endpoint("s1", &["--monitor", "5001"]);
    let s2 = p.endpoint("s2", &[]);
    let refused = s2.ctl(&["monitor", "5001"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("agent is not in your teams"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ok = s2.ctl(&["monitor", "5004"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Both hear audio; nothing lost on loopback.
    for (e, agent) in [(&s1, "5001"), (&s2, "5004")] {
        let st = eventually(Duration::from_secs(20), "audio at the endpoint", || {
            let st = e.status().ok()?;
            (st["decoded"].as_u64()? > 150 && st["call_id"].is_string()).then_some(st)
        });
        assert_eq!(st["agent"], agent, "{st:#}");
        assert_eq!(st["monitoring"], true);
        assert_eq!(st["lost"], 0, "{st:#}");
    }
    std::thread::sleep(Duration::from_secs(2));
    // The appliance lists s1's monitor to s1.
    let mons = p.ctl_json("s1", &["monitors"]);
    assert_eq!(mons.as_array().unwrap().len(), 1, "{mons:#}");
    assert!(p.app.metric("silentmon_monitor_attached") >= 2.0);
    let log1 = s1.stop();
    let log2 = s2.stop();
    // Each recording holds its agent's tones only: agent left, caller right.
    let r1 = recordings(&p.dir.path().join("rec-s1"), "5001");
    assert!(!r1.is_empty(), "s1 recorded nothing: {log1}");
    let (l, r, n) = tones(&r1[0]);
    assert!(n > 8000 * 3, "{} frames", n);
    assert_eq!((l, r), (1000.0, 400.0), "5001: {}", r1[0].display());
    let r2 = recordings(&p.dir.path().join("rec-s2"), "5004");
    assert!(!r2.is_empty(), "s2 recorded nothing: {log2}");
    let (l, r, _) = tones(&r2[0]);
    assert_eq!((l, r), (1030.0, 430.0), "5004: {}", r2[0].display());
    assert!(recordings(&p.dir.path().join("rec-s2"), "5001").is_empty());
    // The monitors ended with the endpoints.
    eventually(Duration::from_secs(10), "no monitors left", || {
        (p.app.metric("silentmon_monitors") == 0.0).then_some(())
    });
}

#[test]
fn an_endpoint_killed_mid_stream_frees_its_monitor() {
    let p = start_product("1", 2, 30);
    let mut s1 = p.endpoint("s1", &["--monitor", "5002"]);
    eventually(Duration::from_secs(20), "audio at the endpoint", || {
        (s1.status().ok()?["decoded"].as_u64()? > 50).then_some(())
    });
    assert_eq!(p.app.metric("silentmon_monitors"), 1.0);
    let mut child = s1.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The control plane sees the supervisor's session go, the monitor service its endpoint.
    eventually(Duration::from_secs(20), "the monitor freed", || {
        (p.app.metric("silentmon_monitors") == 0.0
            && p.app.metric("silentmon_monitor_attached") == 0.0)
            .then_some(())
    });
    let audit = std::fs::read_to_string(p.dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"monitor_stopped\""), "{audit}");
    // Another endpoint can monitor the same agent at once.
    let s3 = p.endpoint("s3", &["--monitor", "5002"]);
    eventually(Duration::from_secs(20), "audio at the new endpoint", || {
        (s3.status().ok()?["decoded"].as_u64()? > 50).then_some(())
    });
    s3.stop();
}

/// Logs in as `user` and starts a monitor of `agent`; returns the session (keep it) and key.
async fn grant(
    p: &Product,
    user: &str,
    agent: &str,
) -> (silentmon::control::client::Client, String) {
    use silentmon::control::frame::Frame;
    let ca = std::fs::read_to_string(p.pki.ca()).unwrap();
    let tls = silentmon::security::tls::client_config(&ca, None).unwrap();
    let mut c = silentmon::control::client::Client::connect(&p.control, Some((tls, "localhost")))
        .await
        .unwrap();
    let r = c
        .request(
            &Frame::new("Login")
                .with("mode", "supervisor")
                .with("id", user),
            "LoginReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r.str("result"), Some("ok"));
    let r = c
        .request(
            &Frame::new("StartSilentMonitor").with("agent", agent),
            "StartSilentMonitorReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r.str("result"), Some("ok"), "{r:?}");
    let key = r.str("key").unwrap().to_owned();
    (c, key)
}

fn client_tls(p: &Product, user: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let (cert, key) = p.pki.client(user);
    let read = |f: &Path| std::fs::read_to_string(f).unwrap();
    silentmon::security::tls::client_config(&read(&p.pki.ca()), Some((&read(&cert), &read(&key))))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_loses_frames_while_another_loses_none() {
    // Four calls at ten times their pace: 4000 packets/s, for 5001 200/s... to both monitors.
    let p = tokio::task::spawn_blocking(|| start_product("10", 4, 60))
        .await
        .unwrap();
    let (_s1, key_fast) = grant(&p, "s1", "5001").await;
    let (_s3, key_slow) = grant(&p, "s3", "5001").await;

    // The slow endpoint: attaches over mutual TLS with a tiny receive buffer, then never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(p.monitor.parse().unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut slow = tokio_rustls::TlsConnector::from(client_tls(&p, "s3"))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut attach = Vec::new();
    silentmon::monitor::wire::Control::Attach { key: key_slow }
        .append(&mut attach)
        .unwrap();
    use tokio::io::AsyncWriteExt;
    slow.write_all(&attach).await.unwrap();
    slow.flush().await.unwrap();

    // The fast endpoint reads everything and checks every stream's sequence numbers.
    let mut fast = silentmon::monitor::service_client::MonitorClient::connect(
        &p.monitor,
        Some((client_tls(&p, "s1"), "localhost")),
    )
    .await
    .unwrap();
    fast.attach(&key_fast).await.unwrap();
    let mut last_seq = std::collections::HashMap::<u32, u16>::new();
    let mut received = 0u64;
    let mut gaps = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let dropped = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), fast.next_event())
            .await
            .expect("the fast endpoint keeps receiving")
            .unwrap();
        if let silentmon::monitor::service_client::Event::Media { stream, rtp, .. } = ev {
            received += 1;
            let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
            if let Some(prev) = last_seq.insert(stream, seq) {
                // The looped replay restarts each stream's sequence (a step back, also when
                // the pass wrapped past 65535); a step forward by more than one is a gap.
                let step = seq.wrapping_sub(prev);
                if step != 1 && step < 0x8000 {
                    gaps += 1;
                }
            }
        }
        if received % 500 == 0 {
            let metrics = p.app.metrics_text();
            let d = metric(&metrics, "silentmon_monitor_frames_dropped_total").unwrap();
            if d > 100.0 && received > 4000 {
                break d;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow endpoint never lost a frame ({received} received by the fast one)"
        );
    };
    assert_eq!(
        gaps, 0,
        "the fast endpoint lost frames ({received} received)"
    );
    let m = p.app.metrics_text();
    assert_eq!(
        metric(&m, "silentmon_pipeline_dropped_total{interface=\"replay\"}"),
        Some(0.0)
    );
    // Every frame forwarded is either queued for an endpoint or counted as dropped.
    assert!(metric(&m, "silentmon_monitor_frames_forwarded_total").unwrap() > received as f64);
    assert!(dropped > 100.0);
    drop(slow);
}

#[test]
fn the_endpoint_moves_to_the_next_appliance_when_its_appliance_fails() {
    let mut p = start_product("1", 2, 60);
    let (control_b, _monitor_b, app_b) = start_appliance(p.dir.path(), &p.pki, "b", 2, "1", true);
    let s1 = p.endpoint_with(
        &[p.control.as_str(), control_b.as_str()],
        "s1",
        &["--monitor", "5001"],
    );
    let first = eventually(
        Duration::from_secs(20),
        "audio from the first appliance",
        || {
            let st = s1.status().ok()?;
            (st["decoded"].as_u64()? > 50).then_some(st)
        },
    );
    let server = first["server"].as_str().unwrap().to_owned();
    // Kill the appliance the endpoint uses (the cluster list was tried in random order).
    let (other, victim) = if server == p.control {
        (control_b.clone(), None)
    } else {
        (p.control.clone(), Some(app_b))
    };
    match victim {
        None => {
            let child = p.app.child.as_mut().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
        }
        Some(mut b) => {
            let child = b.child.as_mut().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    let decoded = first["decoded"].as_u64().unwrap();
    let after = eventually(
        Duration::from_secs(30),
        "audio from the other appliance",
        || {
            let st = s1.status().ok()?;
            (st["server"] == other.as_str()
                && st["monitoring"] == true
                && st["decoded"].as_u64()? > decoded + 100)
                .then_some(st)
        },
    );
    assert_eq!(after["agent"], "5001", "{after:#}");
    s1.stop();
}

/// A 20 ms frame quieter than this on both channels is silence (the tones' RMS is about 0.17).
const QUIET: f32 = 0.01;
/// A pause on the wire is quiet in a recording for about the pause less 80 ms (the last
/// packet's 20 ms and a 60 ms concealment fade); the quiet stretch may be off by this much in
/// length and start on a loaded machine (s).
const FADE: f64 = 0.08;
const SLACK: f64 = 0.3;

/// The agent's and the other party's tone of a call in a truth file.
fn call_tones(truth: &Value, call_id: &str) -> (f64, f64) {
    let tone = |dir: &str| {
        truth["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["call_id"] == call_id && s["direction"] == dir)
            .and_then(|s| s["tone_hz"].as_f64())
            .unwrap_or_else(|| panic!("no {dir} tone for {call_id}"))
    };
    (tone("from_agent"), tone("to_agent"))
}

/// Asserts each channel of `[from, to)` s holds its side's tone: agent left, other party right.
fn assert_sides(what: &str, a: &Stereo, (from, to): (f64, f64), (agent, other): (f64, f64)) {
    assert!(
        to - from >= 1.0,
        "{what}: {from:.2}..{to:.2} s is too short"
    );
    let h = hear(a.rate, a.window(from, to));
    eprintln!("{what} [{from:.2}..{to:.2} s]: {h:?}");
    assert!(
        (h.left_hz, h.right_hz) == (agent, other) && h.left_rms > 0.05 && h.right_rms > 0.05,
        "{what} [{from:.2}..{to:.2} s]: heard {h:?}, want the agent's {agent} Hz left and \
         {other} Hz right"
    );
}

#[test]
fn monitoring_follows_the_agent_through_hold_consult_and_next_call() {
    // testdata's agent day: 5001 registers at 0 s; call 1 from 3 s, held at 7 s; the agent's
    // consult to 5101 at 8-12 s; call 1 resumed at 13 s, ended at 16 s; call 2 at 17.5-21 s.
    let name = "agent-5001-hold-consult-next";
    let truth: Value =
        serde_json::from_slice(&std::fs::read(testdata(&format!("{name}.json"))).unwrap()).unwrap();
    let calls: Vec<&Value> = truth["calls"].as_array().unwrap().iter().collect();
    let id = |i: usize| calls[i]["call_id"].as_str().unwrap();
    let at = |i: usize, k: &str| calls[i][k].as_f64().unwrap();
    let (call1, consult, call2) = (id(0), id(1), id(2));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        testdata(&format!("{name}.pcap")),
        dir.path().join("calls.pcap"),
    )
    .unwrap();
    let replay_start = std::time::Instant::now();
    let p = product_on(dir, 4, "1", false);
    let s1 = p.endpoint("s1", &["--monitor", "5001"]);
    let first = eventually(Duration::from_secs(20), "the monitor", || {
        let st = s1.status().ok()?;
        (st["monitoring"] == true).then_some(st)
    });
    eprintln!(
        "monitoring {:.2} s after the appliance started",
        replay_start.elapsed().as_secs_f64()
    );
    assert!(
        first["call_id"].is_null() && first["packets"] == 0,
        "the monitor began after call 1 did (the capture leads by {} s): {first:#}",
        at(0, "start")
    );
    // The calls the endpoint is on, in order, until call 2 is over.
    let mut heard: Vec<String> = Vec::new();
    let last = eventually(
        Duration::from_secs(40),
        "call 2 and its end at the endpoint",
        || {
            let st = s1.status().ok()?;
            if let Some(c) = st["call_id"].as_str() {
                if heard.last().map(String::as_str) != Some(c) {
                    heard.push(c.to_owned());
                }
            }
            (heard.last().map(String::as_str) == Some(call2) && st["call_id"].is_null())
                .then_some(st)
        },
    );
    assert_eq!(heard, [call1, consult, call1, call2], "calls followed");
    // Still monitoring after call 2, every packet of the agent's six streams received.
    std::thread::sleep(Duration::from_millis(500));
    let st = s1.status().unwrap();
    let sent: u64 = truth["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(st["monitoring"], true, "{st:#}");
    assert_eq!(st["agent"], "5001");
    assert_eq!(
        (&st["packets"], &st["lost"], &st["dropped_before_media"]),
        (&Value::from(sent), &Value::from(0), &Value::from(0)),
        "{st:#} (after call 2: {last:#})"
    );
    let mons = p.ctl_json("s1", &["monitors"]);
    assert_eq!(mons.as_array().unwrap().len(), 1, "{mons:#}");
    let m = p.app.metrics_text();
    for name in [
        "silentmon_pipeline_dropped_total{interface=\"replay\"}",
        "silentmon_monitor_frames_dropped_total",
    ] {
        assert_eq!(metric(&m, name), Some(0.0), "{name}");
    }
    assert_eq!(metric(&m, "silentmon_monitors"), Some(1.0));
    // Every forwarded frame was written to the endpoint and timed, from capture to write.
    let forwarded = metric(&m, "silentmon_monitor_frames_forwarded_total").unwrap();
    assert!(
        forwarded >= sent as f64,
        "{forwarded} forwarded, {sent} received"
    );
    assert_eq!(
        metric(&m, "silentmon_monitor_write_delay_seconds_count"),
        Some(forwarded),
        "write delay histogram"
    );
    assert_eq!(
        metric(
            &m,
            "silentmon_monitor_write_delay_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(forwarded)
    );
    let log = s1.stop();

    // One WAV per call, agent left: call 1 (with the hold and the resume), the consult, call 2.
    let wavs = recordings(&p.dir.path().join("rec-s1"), "5001");
    let wav_of = |call_id: &str| -> Stereo {
        let tag = format!("_{}_", call_id.replace('@', "_"));
        let mine: Vec<&PathBuf> = wavs
            .iter()
            .filter(|w| w.to_string_lossy().contains(&tag))
            .collect();
        assert_eq!(mine.len(), 1, "{call_id}: {wavs:?}\n{log}");
        Stereo::from_wav(mine[0])
    };
    assert_eq!(wavs.len(), 3, "{wavs:?}");
    for (i, call_id) in [(1, consult), (2, call2)] {
        let w = wav_of(call_id);
        let talk = at(i, "end") - at(i, "start") - 0.12;
        assert!(
            (w.secs() - talk).abs() < 0.5,
            "{call_id}: {:.2} s of audio, talked {talk:.2} s",
            w.secs()
        );
        assert_sides(
            call_id,
            &w,
            (0.2, w.secs() - 0.2),
            call_tones(&truth, call_id),
        );
        assert!(
            longest_quiet(&w, 0.2, w.secs() - 0.2, QUIET).1 < 0.1,
            "{call_id}: a gap"
        );
    }
    // Call 1: talk until the hold, the hold's silence until the agent went to the consult
    // (its first packet), then after the resume call 1's tones again to its end.
    let w = wav_of(call1);
    let tones1 = call_tones(&truth, call1);
    let hold = &calls[0]["holds"][0];
    let (hold_on, hold_off) = (hold[0].as_f64().unwrap(), hold[1].as_f64().unwrap());
    let talk_before = hold_on - at(0, "start") - 0.12;
    let quiet = at(1, "start") + 0.12 - hold_on - FADE;
    let talk_after = at(0, "end") - hold_off - 0.02;
    let (q_at, q_len) = longest_quiet(&w, 0.0, w.secs(), QUIET);
    eprintln!(
        "call 1: {:.2} s of audio, quiet {q_at:.2} s + {q_len:.2} s; wire: talk {talk_before:.2} s, \
         hold quiet {quiet:.2} s until the consult, talk {talk_after:.2} s",
        w.secs()
    );
    assert!(
        (q_at - talk_before - FADE).abs() < SLACK && (q_len - quiet).abs() < SLACK,
        "call 1's hold: quiet {q_len:.2} s at {q_at:.2} s, want {quiet:.2} s at {:.2} s",
        talk_before + FADE
    );
    assert_sides("call 1 before the hold", &w, (0.2, q_at - 0.1), tones1);
    let resumed = q_at + q_len;
    assert!(
        (w.secs() - resumed - talk_after).abs() < SLACK,
        "call 1 after the resume: {:.2} s, talked {talk_after:.2} s",
        w.secs() - resumed
    );
    assert_sides(
        "call 1 after the resume",
        &w,
        (resumed + 0.1, w.secs() - 0.2),
        tones1,
    );
    assert!(longest_quiet(&w, resumed + 0.1, w.secs() - 0.2, QUIET).1 < 0.1);
}
