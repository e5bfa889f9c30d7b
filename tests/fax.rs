//! A call switched to fax (issue 18, item 1): a re-INVITE moves it from G.711 to T.38 over
//! UDPTL on the same addresses and ports (`capgen calls --t38-at`), and sometimes back to audio
//! (`--t38-back-at`), with the T.38 SDP replacing the audio line, rejecting it with port 0, or
//! keeping it inactive. `flows` ends the RTP streams where tshark does (compared stream by stream
//! in tests/flows_vs_tshark.rs) and counts the UDPTL as fax as tshark dissects it; without
//! signalling UDPTL is never RTP; a supervisor is told "fax (T.38)" and hears no noise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::appliance::{eventually, start_replaying, wait_replay_end, Pki, Roster};
use common::audio::{capgen, dominant, rms, seconds_of};
use common::endpoint::{stereo_recordings, Endpoint};
use common::{flows_counter, flows_json as flows, run_ok};

fn generate(dir: &Path, name: &str, secs: &str, extra: &[&str]) -> PathBuf {
    let pcap = dir.join(format!("{name}.pcap"));
    run_ok(
        capgen()
            .args(["calls", "--calls", "2", "--duration", secs, "-o"])
            .arg(&pcap)
            .arg("--truth")
            .arg(dir.join(format!("{name}.json")))
            .args(extra),
    );
    pcap
}

/// Frames tshark dissects as T.38.
fn tshark_t38_packets(pcap: &Path) -> u64 {
    let out = run_ok(Command::new("tshark").args(["-n", "-r"]).arg(pcap).args([
        "-Y",
        "t38",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]));
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

#[test]
fn flows_counts_udptl_as_fax_where_tshark_does() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], u64); 4] = [
        ("replace", &["--t38-at", "3"], 2 * 2 * 250),
        (
            "port0",
            &["--t38-at", "3", "--t38-sdp", "port0"],
            2 * 2 * 250,
        ),
        (
            "back",
            &["--t38-at", "3", "--t38-back-at", "6"],
            2 * 2 * 150,
        ),
        (
            "inactive-back",
            &[
                "--t38-at",
                "2",
                "--t38-sdp",
                "inactive",
                "--t38-back-at",
                "4",
            ],
            2 * 2 * 100,
        ),
    ];
    for (name, extra, fax) in cases {
        let pcap = generate(dir.path(), name, "8", extra);
        let v = flows(&pcap);
        assert_eq!(flows_counter(&v, "fax_packets"), fax, "{name}");
        assert_eq!(tshark_t38_packets(&pcap), fax, "{name}: tshark's T.38");
        assert_eq!(flows_counter(&v, "other_udp"), 0, "{name}");
        for s in v["streams"].as_array().unwrap() {
            assert_eq!(s["payload"], serde_json::json!(["g711U"]), "{name}: {s}");
            assert_eq!(s["lost"], 0, "{name}: {s}");
        }
    }
}

#[test]
fn without_signalling_udptl_is_never_taken_for_rtp() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = generate(dir.path(), "bare", "8", &["--t38-at", "3", "--no-sip"]);
    let v = flows(&pcap);
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 4, "the audio streams only: {streams:#?}");
    for s in streams {
        assert_eq!(s["packets"], 150, "{s}");
    }
    assert_eq!(
        flows_counter(&v, "fax_packets"),
        0,
        "nothing says it is fax"
    );
}

#[test]
fn a_supervisor_is_told_of_the_fax_and_hears_no_noise() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = generate(d, "fax", "8", &["--t38-at", "3", "--t38-back-at", "6"]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let roster = Roster {
        agents: &[("5001", "blue"), ("5002", "blue")],
        supervisors: &[("s1", &["blue"])],
    };
    let r = start_replaying(d, &pki, "a", &roster, &pcap, ("1", false));
    let e = Endpoint::start(&pki, d, &[&r.control], "s1", &["--monitor", "5001"]);
    eventually(Duration::from_secs(10), "told of the fax", || {
        let st = e.status().ok()?;
        st["interrupted"]
            .as_str()
            .is_some_and(|r| r.contains("fax (T.38)"))
            .then_some(())
    });
    wait_replay_end(&r);
    let log = e.stop();
    let wavs = stereo_recordings(&d.join("rec-s1"), "5001");
    assert_eq!(wavs.len(), 2, "before the fax and after it\n{log}");
    let all = [400.0, 410.0, 1000.0, 1010.0];
    let agent = seconds_of(&wavs, 0, 1000.0, &all);
    let caller = seconds_of(&wavs, 1, 400.0, &all);
    assert!(
        agent > 4.0 && caller > 4.0,
        "3 s before the fax and 2 s after: agent {agent:.1} s, caller {caller:.1} s\n{log}"
    );
    // Every loud 100 ms of the recordings is the call's tone: no fax played as noise (decoded
    // UDPTL would be broadband, its strongest frequency anywhere in 0-4 kHz, window after
    // window). A window with a splice, the end of a talkspurt or the concealment that follows
    // the last packet before the fax is still the tone, its peak within 100 Hz (CI saw one
    // such window peak at 945 Hz).
    for (ch, hz) in [(0, 1000.0), (1, 400.0)] {
        let noisy: Vec<f64> = wavs
            .iter()
            .flat_map(|w| {
                let x = if ch == 0 { &w.left } else { &w.right };
                x.chunks((w.rate / 10) as usize)
                    .filter(|c| rms(c) > 0.02)
                    .map(|c| dominant(c, w.rate, 5.0))
                    .filter(|f| (f - hz).abs() > 100.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            noisy.is_empty(),
            "channel {ch}: loud windows whose strongest frequency is not {hz} Hz: {noisy:?}\n{log}"
        );
    }
}
