//! The generator's truth against tshark: a capture with loss, reordering, duplicates, jitter and
//! an SSRC change; tshark's packets and lost per stream equal the truth file, and tshark sees
//! every SIP call. The same for an agent's day of calls (hold, consult, resume, next call),
//! whose signalling and pauses tshark reads as the truth says. Fails (does not skip) without
//! tshark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs capgen with `args` into a fresh directory named by `tag`: (the directory, the pcap,
/// the truth).
fn generate(tag: &str, args: &[&str]) -> (PathBuf, PathBuf, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("capgen-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pcap, truth) = (dir.join("t.pcap"), dir.join("t.json"));
    let st = Command::new(env!("CARGO_BIN_EXE_capgen"))
        .args(args)
        .arg("-o")
        .arg(&pcap)
        .arg("--truth")
        .arg(&truth)
        .status()
        .unwrap();
    assert!(st.success());
    let t = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    (dir, pcap, t)
}

/// tshark's RTP streams: SSRC -> (packets, lost).
fn tshark_streams(pcap: &Path) -> BTreeMap<u32, (u64, i64)> {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-q", "-z", "rtp,streams"])
        .output()
        .expect("tshark is required (tools/install-deps.sh --test)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut theirs = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains(" 0x")) {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let ssrc = u32::from_str_radix(tok[6].trim_start_matches("0x"), 16).unwrap();
        let n = tok.len() - if tok.last() == Some(&"X") { 1 } else { 0 };
        theirs.insert(
            ssrc,
            (
                tok[n - 9].parse::<u64>().unwrap(),
                tok[n - 8].parse::<i64>().unwrap(),
            ),
        );
    }
    theirs
}

/// (relative time, `field`) of every frame matching `filter`.
fn tshark_fields(pcap: &Path, filter: &str, field: &str) -> Vec<(f64, String)> {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.time_relative",
            "-e",
        ])
        .arg(field)
        .output()
        .expect("tshark is required (tools/install-deps.sh --test)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (t, v) = l.split_once('\t').unwrap_or((l, ""));
            (t.parse().unwrap(), v.to_owned())
        })
        .collect()
}

#[test]
fn truth_matches_tshark() {
    let (dir, pcap, t) = generate(
        "test",
        &[
            "calls",
            "--calls",
            "3",
            "--duration",
            "8",
            "--encap",
            "qinq:200:30",
            "--codec",
            "pcma",
            "--loss",
            "3",
            "--reorder",
            "2",
            "--duplicate",
            "2",
            "--jitter-ms",
            "2",
            "--ssrc-change-at",
            "4",
            "--rtcp",
            "--seed",
            "11",
        ],
    );

    let theirs = tshark_streams(&pcap);
    let streams = t["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 12, "3 calls x 2 directions x 2 SSRCs");
    assert_eq!(theirs.len(), streams.len());
    let mut impaired = 0;
    for s in streams {
        let ssrc = s["ssrc"].as_u64().unwrap() as u32;
        let (p, l) = theirs[&ssrc];
        assert_eq!(p, s["packets"].as_u64().unwrap(), "packets of 0x{ssrc:08x}");
        assert_eq!(l, s["lost"].as_i64().unwrap(), "lost of 0x{ssrc:08x}");
        if s["missing"].as_u64().unwrap() > 0 || s["duplicates"].as_u64().unwrap() > 0 {
            impaired += 1;
        }
    }
    assert!(impaired > 0, "the impairments must show in the truth");

    let ids: Vec<String> = tshark_fields(&pcap, "sip.Method == \"INVITE\"", "sip.Call-ID")
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let truth_ids: Vec<String> = t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, truth_ids);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agent_day_matches_tshark() {
    let (dir, pcap, t) = generate("day", &["agent-day", "--encap", "vlan:100", "--seed", "7"]);
    let theirs = tshark_streams(&pcap);
    let streams = t["streams"].as_array().unwrap();
    assert_eq!(
        streams.len(),
        6,
        "call 1, the consult, call 2: two directions each"
    );
    assert_eq!(theirs.len(), streams.len());
    for s in streams {
        let ssrc = s["ssrc"].as_u64().unwrap() as u32;
        assert_eq!(
            theirs[&ssrc],
            (s["packets"].as_u64().unwrap(), 0),
            "0x{ssrc:08x}"
        );
    }
    // The INVITEs: call 1, its hold, the consult, call 1's resume, call 2; the re-INVITEs
    // from the agent put the caller on hold and take it off.
    let calls: Vec<&str> = t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let invites = tshark_fields(&pcap, "sip.Method == \"INVITE\"", "sip.Call-ID");
    let ids: Vec<&str> = invites.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, [calls[0], calls[0], calls[1], calls[0], calls[2]]);
    let from = tshark_fields(&pcap, "sip.Method == \"INVITE\"", "sip.from.user");
    let from: Vec<&str> = from.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(
        from[1..4],
        ["5001", "5001", "5001"],
        "the agent holds, consults, resumes"
    );
    let attrs = tshark_fields(&pcap, "sip.Method == \"INVITE\"", "sdp.media_attr");
    assert!(attrs[1].1.contains("sendonly"), "{attrs:?}");
    assert!(attrs[3].1.contains("sendrecv"), "{attrs:?}");
    // Call 1's media pauses both ways for the whole hold, and only then.
    let hold = &t["calls"][0]["holds"][0];
    let (on, off) = (hold[0].as_f64().unwrap(), hold[1].as_f64().unwrap());
    assert_eq!((on, off), (invites[1].0, invites[3].0));
    for (src, dst) in [("10.1.0.1", "10.2.0.1"), ("10.2.0.1", "10.1.0.1")] {
        let f = format!("rtp && ip.src == {src} && ip.dst == {dst} && udp.port == 30000");
        let times: Vec<f64> = tshark_fields(&pcap, &f, "rtp.seq")
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        let longest = times
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))
            .unwrap();
        assert!(
            longest.0 < on && longest.1 > off && (longest.1 - off) < 0.05,
            "{src} -> {dst}: longest pause {longest:?}, hold {on}..{off}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Phases (µs within the 20 ms packet time) of every RTP stream's packets, as tshark reads
/// them: SSRC -> the set of phases its packets have.
fn phases(pcap: &Path) -> BTreeMap<String, std::collections::BTreeSet<i64>> {
    let mut m: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for (t, ssrc) in tshark_fields(pcap, "rtp", "rtp.ssrc") {
        let us = (t * 1e6).round() as i64;
        m.entry(ssrc).or_default().insert(us.rem_euclid(20_000));
    }
    m
}

#[test]
fn random_rtp_phase_spreads_the_calls_and_keeps_each_stream_on_its_grid() {
    let args = ["calls", "--calls", "8", "--duration", "2", "--seed", "9"];
    let (dir, aligned, _) = generate("aligned", &args);
    let a = phases(&aligned);
    assert_eq!(a.len(), 16, "8 calls x 2 directions");
    // Aligned: one phase for every packet of every stream.
    let all: std::collections::BTreeSet<i64> = a.values().flatten().copied().collect();
    assert_eq!(all.len(), 1, "aligned phases {all:?}");

    let (dir2, random, truth) =
        generate("random", &[&args[..], &["--rtp-phase", "random"]].concat());
    let r = phases(&random);
    assert_eq!(r.len(), 16);
    // Each stream keeps one phase (a steady 20 ms grid) ...
    assert!(r.values().all(|p| p.len() == 1), "{r:?}");
    // ... and the calls have their own: at least 6 distinct phases among 8 calls.
    let distinct: std::collections::BTreeSet<i64> = r.values().flatten().copied().collect();
    assert!(distinct.len() >= 6, "random phases {distinct:?}");
    // The streams are whole, as the truth says.
    let streams = tshark_streams(&random);
    let want: u64 = truth["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(streams.values().map(|s| s.0).sum::<u64>(), want);
    assert!(streams.values().all(|s| s.1 == 0), "{streams:?}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}
