//! `silentmon vlantest` without root: usage errors, help, and the verdict on capture files.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn help_explains_the_procedure() {
    let out = run_ok(silentmon().args(["vlantest", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vlantest listen -i"), "{text}");
    assert!(text.contains("PASS"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    let out = silentmon()
        .args(["vlantest", "send", "-i", "lo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "missing --dst-mac");
    let out = silentmon()
        .args(["vlantest", "send", "-i", "lo", "--dst-mac", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"));
    let out = silentmon().args(["vlantest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn file_with_the_sample_frames_passes() {
    let out = run_ok(
        silentmon()
            .args(["vlantest", "--json", "-r"])
            .arg(testdata("VLANSamplePackets.pcap")),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "PASS");
    assert_eq!(v["tally"]["tagged"], 5);
    assert_eq!(v["frames"].as_array().unwrap().len(), 5);
}

#[test]
fn file_with_stripped_frames_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("stripped.pcap");
    strip_tags_with_tcprewrite(&testdata("VLANSamplePackets.pcap"), &stripped);
    let out = silentmon()
        .args(["vlantest", "--json", "-r"])
        .arg(&stripped)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cause"], "tags_stripped");
}

#[test]
fn qinq_file_judged_by_inner_and_outer_tags() {
    // tcpdump's 802.1ad capture: S-tag (0x88a8) then C-tag 2001, ARP.
    let out = silentmon()
        .args(["vlantest", "--json", "--vlan", "2001", "--count", "2", "-r"])
        .arg(public("tcpdump-802.1ad_QinQ.pcap"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "PASS", "{v:#}");
    assert_eq!(v["frames"][0]["vlans"][0]["tpid"], "0x88a8");
}
