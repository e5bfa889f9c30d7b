//! Encrypted media (SRTP) is never decoded or played: `flows` names it, `extract` refuses it
//! with a clear error, and a supervisor monitoring the agent hears nothing and is told why.
//! Generated calls with `RTP/SAVP` + `a=crypto` SDP and random payload (`capgen calls
//! --srtp`), with and without the SIP in the capture.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::appliance::{eventually, start_replaying, Pki, Roster};
use common::audio::capgen;
use common::endpoint::{recordings, Endpoint};
use common::{run_ok, silentmon};

fn generate(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let pcap = dir.join(format!("{name}.pcap"));
    run_ok(
        capgen()
            .args(["calls", "--calls", "1", "--duration", "6", "--srtp", "-o"])
            .arg(&pcap)
            .arg("--truth")
            .arg(dir.join(format!("{name}.json")))
            .args(extra),
    );
    pcap
}

#[test]
fn flows_names_srtp_and_extract_refuses_it_with_and_without_signalling() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [("signalled", &[][..]), ("bare", &["--no-sip"][..])] {
        let pcap = generate(dir.path(), name, extra);
        let out = run_ok(silentmon().args(["flows", "--json", "-r"]).arg(&pcap));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let streams = v["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2, "{name}");
        for s in streams {
            assert_eq!(s["payload"], serde_json::json!(["SRTP"]), "{name}: {s}");
            assert_eq!(s["packets"], 300);
        }
        let wav = dir.path().join(format!("{name}.wav"));
        let out = silentmon()
            .args(["extract", "-r"])
            .arg(&pcap)
            .args(["--stream", "10.1.0.1:20000-10.2.0.1:30000", "-o"])
            .arg(&wav)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is encrypted (SRTP") && err.contains("cannot be decoded"),
            "{err}"
        );
        assert!(!wav.exists(), "no noise written");
    }
}

#[test]
fn a_supervisor_hears_nothing_of_an_srtp_call_and_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = generate(d, "call", &[]);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let roster = Roster {
        agents: &[("5001", "blue")],
        supervisors: &[("s1", &["blue"])],
    };
    let r = start_replaying(d, &pki, "a", &roster, &pcap, ("1", true));
    let e = Endpoint::start(&pki, d, &[&r.control], "s1", &["--monitor", "5001"]);
    let st = eventually(
        Duration::from_secs(20),
        "told the media is encrypted",
        || {
            let st = e.status().ok()?;
            st["interrupted"]
                .as_str()
                .is_some_and(|r| r.contains("encrypted media (SRTP): cannot be monitored"))
                .then_some(st)
        },
    );
    assert_eq!(st["monitoring"], true, "{st:#}");
    // The call goes on: still nothing forwarded.
    std::thread::sleep(Duration::from_secs(2));
    let st = e.status().unwrap();
    assert_eq!(st["packets"], 0, "{st:#}");
    assert!(r.app.metric("silentmon_engine_rtp_packets_total") > 100.0);
    assert_eq!(r.app.metric("silentmon_forwarded_packets_total"), 0.0);
    let log = e.stop();
    // Any recording holds silence, never noise.
    for w in recordings(&d.join("rec-s1"), "5001") {
        let (_, samples) = common::audio::read_wav(&w);
        assert!(
            samples.iter().all(|&x| x == 0),
            "{w:?} is not silent\n{log}"
        );
    }
}
