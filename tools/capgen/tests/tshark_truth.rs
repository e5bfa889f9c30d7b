//! The generator's truth against tshark: a capture with loss, reordering, duplicates, jitter and
//! an SSRC change; tshark's packets and lost per stream equal the truth file, and tshark sees
//! every SIP call. Fails (does not skip) without tshark.

use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn truth_matches_tshark() {
    let dir = std::env::temp_dir().join(format!("capgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("t.pcap");
    let truth = dir.join("t.json");
    let st = Command::new(env!("CARGO_BIN_EXE_capgen"))
        .args([
            "calls",
            "--calls",
            "3",
            "--duration",
            "8",
            "--encap",
            "qinq:200:30",
            "--codec",
            "pcma",
        ])
        .args([
            "--loss",
            "3",
            "--reorder",
            "2",
            "--duplicate",
            "2",
            "--jitter-ms",
            "2",
        ])
        .args(["--ssrc-change-at", "4", "--rtcp", "--seed", "11", "-o"])
        .arg(&pcap)
        .arg("--truth")
        .arg(&truth)
        .status()
        .unwrap();
    assert!(st.success());
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();

    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&pcap)
        .args(["-q", "-z", "rtp,streams"])
        .output()
        .expect("tshark is required (tools/install-deps.sh --test)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // ssrc -> (packets, lost)
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

    let sip = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "sip.Method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&sip.stdout)
        .lines()
        .map(str::to_owned)
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
