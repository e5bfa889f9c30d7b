//! SIP over TCP whose messages span segments (issue 18, item 0): generated captures (`capgen
//! calls --sip-tcp`) with an INVITE split inside its SDP and a 200 OK split, 100 Trying and
//! 180 Ringing in one segment, a retransmitted segment, an out-of-order segment and a missing
//! one, read by `flows` (the SIP messages tshark reassembles from the same file, every stream
//! bound to its call), `extract --number`, and a live appliance whose supervisor hears the call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::appliance::{start_replaying, wait_replay_end, Pki, Roster};
use common::audio::{capgen, frequency, read_wav, seconds_of};
use common::endpoint::{stereo_recordings, Endpoint};
use common::{flows_counter as counter, flows_json as flows, run_ok, silentmon};

/// Two calls (5001: caller 400 Hz, agent 1000 Hz; 5002: 410 / 1010 Hz) signalled over TCP.
fn generate(dir: &Path, name: &str, secs: &str, extra: &[&str]) -> PathBuf {
    let pcap = dir.join(format!("{name}.pcap"));
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--duration",
                secs,
                "--sip-tcp",
                "-o",
            ])
            .arg(&pcap)
            .arg("--truth")
            .arg(dir.join(format!("{name}.json")))
            .args(extra),
    );
    pcap
}

/// SIP messages tshark dissects in the file, one per CSeq field, the more of its two TCP
/// reassembly modes: out-of-order reassembly off (its default: a missing segment costs only its
/// message) and on (a reordered segment is put back in place, but a missing one holds every
/// message behind it). The reassembly here does both.
fn tshark_sip_messages(pcap: &Path) -> usize {
    let count = |ooo: &str| -> usize {
        let out = run_ok(
            Command::new("tshark")
                .args([
                    "-n",
                    "-o",
                    &format!("tcp.reassemble_out_of_order:{ooo}"),
                    "-r",
                ])
                .arg(pcap)
                .args(["-Y", "sip", "-T", "fields", "-e", "sip.CSeq"]),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').filter(|f| !f.is_empty()).count())
            .sum()
    };
    count("FALSE").max(count("TRUE"))
}

/// A capture's name, its capgen options, the SIP messages read, and the counter that must
/// show the case with its value.
type Case = (
    &'static str,
    &'static [&'static str],
    u64,
    (&'static str, u64),
);

#[test]
fn flows_reassembles_sip_over_tcp_as_tshark_does() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [Case; 5] = [
        ("split", &["--tcp-mss", "100"], 14, ("sip_tcp_lost", 0)),
        (
            "provisionals-in-one-segment",
            &["--tcp-coalesce"],
            14,
            ("sip_tcp_lost", 0),
        ),
        (
            "retransmitted",
            &["--tcp-mss", "100", "--tcp-retransmit", "2"],
            14,
            ("sip_tcp_retransmitted", 2),
        ),
        (
            "out-of-order",
            &["--tcp-mss", "100", "--tcp-reorder", "2"],
            14,
            ("sip_tcp_out_of_order", 2),
        ),
        // Segment 3 is the 180 Ringing: lost, and the 200 OK behind it read anyway.
        ("missing", &["--tcp-drop", "3"], 12, ("sip_tcp_lost", 2)),
    ];
    for (name, extra, messages, (what, n)) in cases {
        let pcap = generate(dir.path(), name, "3", extra);
        let v = flows(&pcap);
        assert_eq!(counter(&v, "sip_messages"), messages, "{name}");
        assert_eq!(
            counter(&v, "sip_messages") as usize,
            tshark_sip_messages(&pcap),
            "{name}: tshark reads as many"
        );
        assert_eq!(counter(&v, "sip_malformed"), 0, "{name}");
        assert_eq!(counter(&v, what), n, "{name}: {what}");
        let calls = v["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2, "{name}: {calls:?}");
        for c in calls {
            assert_eq!(c["state"], "Ended", "{name}: {c}");
            assert_eq!(c["streams"], 2, "{name}: {c}");
        }
        let streams = v["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 4, "{name}");
        for s in streams {
            assert!(s["call_id"].is_string(), "{name}: unbound stream {s}");
            assert_eq!(s["packets"], 150, "{name}: {s}");
        }
    }
    // The INVITE and the 200 OK really were split (100-byte segments), and the
    // provisionals really shared one: count segments per message.
    let split = flows(&dir.path().join("split.pcap"));
    assert!(counter(&split, "sip_tcp_segments") > 2 * 14, "{split:#}");
    let joined = flows(&dir.path().join("provisionals-in-one-segment.pcap"));
    // Per call: INVITE, 100+180, 200, ACK, BYE, 200, and one FIN each way.
    assert_eq!(counter(&joined, "sip_tcp_segments"), 2 * 8);
}

#[test]
fn extract_finds_the_agent_of_a_tcp_signalled_call_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = generate(
        dir.path(),
        "calls",
        "3",
        &["--tcp-mss", "120", "--tcp-retransmit", "3"],
    );
    let out = dir.path().join("5002.wav");
    run_ok(
        silentmon()
            .args(["extract", "--stereo", "-r"])
            .arg(&pcap)
            .args(["--number", "5002", "-o"])
            .arg(&out),
    );
    let (spec, pcm) = read_wav(&out);
    assert_eq!(spec.channels, 2);
    let left: Vec<i16> = pcm.iter().step_by(2).copied().collect();
    let right: Vec<i16> = pcm.iter().skip(1).step_by(2).copied().collect();
    let (fl, fr) = (frequency(&left[800..]), frequency(&right[800..]));
    assert!((fl - 1010.0).abs() < 15.0, "left {fl} Hz, not the agent's");
    assert!((fr - 410.0).abs() < 15.0, "right {fr} Hz, not the caller's");
}

#[test]
fn a_supervisor_hears_the_agent_of_a_tcp_signalled_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = generate(
        d,
        "calls",
        "8",
        &[
            "--tcp-mss",
            "100",
            "--tcp-retransmit",
            "2",
            "--tcp-reorder",
            "5",
        ],
    );
    let pki = Pki::new(&d.join("certs"), "localhost");
    let roster = Roster {
        agents: &[("5001", "blue"), ("5002", "blue")],
        supervisors: &[("s1", &["blue"])],
    };
    let r = start_replaying(d, &pki, "a", &roster, &pcap, ("1", false));
    let e = Endpoint::start(&pki, d, &[&r.control], "s1", &["--monitor", "5001"]);
    wait_replay_end(&r);
    let bound = r.app.metric("silentmon_sip_tcp_total{what=\"messages\"}");
    assert_eq!(bound, 14.0, "every message reassembled");
    let log = e.stop();
    let wavs = stereo_recordings(&d.join("rec-s1"), "5001");
    assert_eq!(wavs.len(), 1, "one call, one recording\n{log}");
    let secs = wavs[0].secs();
    assert!(secs > 5.0, "{secs:.1} s recorded\n{log}");
    let all = [400.0, 410.0, 1000.0, 1010.0];
    let agent = seconds_of(&wavs, 0, 1000.0, &all);
    let caller = seconds_of(&wavs, 1, 400.0, &all);
    assert!(
        agent > secs - 1.0 && caller > secs - 1.0,
        "agent {agent:.1} s, caller {caller:.1} s of {secs:.1} s\n{log}"
    );
    for (ch, hz) in [(0, 1010.0), (1, 410.0)] {
        assert_eq!(seconds_of(&wavs, ch, hz, &all), 0.0, "5002's {hz} Hz heard");
    }
}
