//! The BPF files in capture-filters/ compile in libpcap and select what their comments promise
//! on capture files, where a bare `udp` would miss tagged frames.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn filter(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("capture-filters")
        .join(name)
}

fn streams(file: &Path, extra: &[&str]) -> usize {
    let out = run_ok(
        silentmon()
            .args(["flows", "--json", "-r"])
            .arg(file)
            .args(extra),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"].as_array().unwrap().len()
}

#[test]
fn rtp_sip_filter_keeps_untagged_tagged_and_qinq() {
    for file in [
        public("ndpi-false_positives-vlan-qinq-rtp.pcapng"),
        testdata("calls-2-qinq.pcap"),
        testdata("demo-vlan85-mobile-agent.pcap"),
        public("sipp-g711a.pcap"),
    ] {
        let all = streams(&file, &[]);
        let f = filter("rtp-sip.bpf");
        let filtered = streams(&file, &["--filter-file", f.to_str().unwrap()]);
        assert_eq!(filtered, all, "{}", file.display());
        assert!(all > 0);
    }
    // The pitfall the file avoids: a bare `udp` loses the tagged streams of a capture file.
    let tagged = testdata("calls-2-qinq.pcap");
    assert_eq!(streams(&tagged, &["-f", "udp"]), 0);
}

#[test]
fn vlan_85_filter_selects_only_vlan_85() {
    let f = filter("vlan-85.bpf");
    let f = f.to_str().unwrap();
    assert_eq!(
        streams(
            &testdata("demo-vlan85-mobile-agent.pcap"),
            &["--filter-file", f]
        ),
        2
    );
    assert_eq!(
        streams(
            &testdata("calls-4-vlan100-loss.pcap"),
            &["--filter-file", f]
        ),
        0
    );
    assert_eq!(
        streams(
            &testdata("calls-3-untagged-jitter.pcap"),
            &["--filter-file", f]
        ),
        0
    );
}

#[test]
fn cisco_range_filter_keeps_rtp_in_16384_to_32767() {
    let f = filter("cisco-rtp-range.bpf");
    let f = f.to_str().unwrap();
    // capgen's media ports (20000+, 30000+) are inside the range, tagged or not.
    for name in [
        "calls-4-vlan100-loss.pcap",
        "calls-2-qinq.pcap",
        "calls-3-untagged-jitter.pcap",
    ] {
        let file = testdata(name);
        assert_eq!(
            streams(&file, &["--filter-file", f]),
            streams(&file, &[]),
            "{name}"
        );
    }
    // SIP_DTMF2's media uses ports 4374/4376 on both ends: outside the range.
    assert_eq!(
        streams(&public("wireshark-SIP_DTMF2.pcap"), &["--filter-file", f]),
        0
    );
    // wireshark's g711 sample sends from 27942/28102 (inside) to 6000: kept.
    assert_eq!(
        streams(
            &public("wireshark-sip-rtp-g711.pcap"),
            &["--filter-file", f]
        ),
        2
    );
}

#[test]
fn a_bad_filter_names_itself() {
    let out = silentmon()
        .args(["flows", "-r"])
        .arg(public("sipp-g711a.pcap"))
        .args(["-f", "udp and and"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("udp and and"));
}
