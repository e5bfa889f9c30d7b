//! `silentmon vlantest` on real interfaces: veth pairs between network namespaces, libpcap on
//! both ends, tcpreplay/tcprewrite for the tag-stripping driver this kernel cannot emulate (no
//! 8021q module, no tc vlan action). Needs root; CI runs it as root.

mod common;

use std::process::{Output, Stdio};

use common::netns::*;
use common::*;
use serde_json::Value;

struct Lab {
    tx: Netns,
    rx: Netns,
    tx_if: String,
    rx_if: String,
}

impl Lab {
    fn new() -> Lab {
        let tx = Netns::new("smtx");
        let rx = Netns::new("smrx");
        let tx_if = unique("vtx");
        let rx_if = unique("vrx");
        veth(&tx, &tx_if, &rx, &rx_if);
        Lab {
            tx,
            rx,
            tx_if,
            rx_if,
        }
    }

    /// Starts the listener in the rx namespace and waits until its capture is open.
    fn listen(&self, extra: &[&str]) -> std::process::Child {
        let child = self
            .rx
            .cmd(env!("CARGO_BIN_EXE_silentmon"))
            .args(["vlantest", "listen", "-i", &self.rx_if, "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.rx.wait_for_packet_socket();
        child
    }

    fn send(&self, extra: &[&str]) {
        let mac = self.rx.mac(&self.rx_if);
        let out = self
            .tx
            .cmd(env!("CARGO_BIN_EXE_silentmon"))
            .args(["vlantest", "send", "-i", &self.tx_if, "--dst-mac", &mac])
            .args(["--interval", "20ms"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn verdict(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "listener output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn pass_when_tagged_end_to_end() {
    if !require_root("pass_when_tagged_end_to_end") {
        return;
    }
    let lab = Lab::new();
    let listener = lab.listen(&["--vlan", "85", "--count", "5", "--timeout", "20s"]);
    lab.send(&["--vlan", "85", "--count", "5"]);
    let out = listener.wait_with_output().unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["verdict"], "PASS");
    assert_eq!(v["tally"]["tagged"], 5);
    let f = &v["frames"][0];
    assert_eq!(f["vlans"][0]["id"], 85);
    assert_eq!(f["class"], "tagged");
    assert_eq!(f["sample"]["sent_vlan"], 85);
}

#[test]
fn fail_tags_stripped_when_signed_frames_arrive_untagged() {
    if !require_root("fail_tags_stripped") {
        return;
    }
    let lab = Lab::new();
    // The driver that strips tags, emulated: the signed sample frames with their tag removed.
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("stripped.pcap");
    strip_tags_with_tcprewrite(&testdata("VLANSamplePackets.pcap"), &stripped);
    let listener = lab.listen(&["--vlan", "85", "--timeout", "5s"]);
    lab.tx.sh(&[
        "tcpreplay",
        "-q",
        "-i",
        &lab.tx_if,
        stripped.to_str().unwrap(),
    ]);
    let out = listener.wait_with_output().unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["verdict"], "FAIL");
    assert_eq!(v["cause"], "tags_stripped");
    assert_eq!(v["tally"]["stripped"], 5);
    assert!(v["diagnosis"].as_str().unwrap().contains("ethtool -k"));
}

#[test]
fn fail_other_vlan_when_sending_86() {
    if !require_root("fail_other_vlan") {
        return;
    }
    let lab = Lab::new();
    let listener = lab.listen(&["--vlan", "85", "--timeout", "3s"]);
    lab.send(&["--vlan", "86"]);
    let out = listener.wait_with_output().unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["cause"], "other_vlan");
    assert_eq!(v["tally"]["other_vlan_ids"][0], 86);
}

#[test]
fn fail_nothing_arrived_with_peer_down() {
    if !require_root("fail_nothing_arrived") {
        return;
    }
    let lab = Lab::new();
    lab.tx.sh(&["ip", "link", "set", &lab.tx_if, "down"]);
    let listener = lab.listen(&["--timeout", "2s"]);
    let out = listener.wait_with_output().unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["cause"], "nothing_arrived");
    assert_eq!(v["tally"]["tagged"], 0);
}

#[test]
fn pass_amid_background_traffic() {
    if !require_root("pass_amid_background") {
        return;
    }
    let lab = Lab::new();
    let listener = lab.listen(&["--vlan", "85", "--timeout", "20s"]);
    // Unrelated untagged RTP replayed in a loop while the sample frames go out.
    let _noise = Background(
        lab.tx
            .cmd("tcpreplay")
            .args(["-q", "--loop=0", "--pps=500", "-i", &lab.tx_if])
            .arg(public("sipp-g711a.pcap"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    lab.send(&["--vlan", "85"]);
    let out = listener.wait_with_output().unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["verdict"], "PASS");
    assert!(v["tally"]["background"].as_u64().unwrap() > 0, "{v:#}");
}

#[test]
fn self_test_on_a_veth_pair_in_one_namespace() {
    if !require_root("self_test") {
        return;
    }
    let ns = Netns::new("smself");
    let a = unique("vsa");
    let b = unique("vsb");
    veth(&ns, &a, &ns, &b);
    let out = ns
        .cmd(env!("CARGO_BIN_EXE_silentmon"))
        .args([
            "vlantest",
            "self",
            "-i",
            &a,
            "-I",
            &b,
            "--interval",
            "20ms",
            "--json",
        ])
        .output()
        .unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["verdict"], "PASS");
}

#[test]
fn system_errors_exit_2() {
    if !require_root("system_errors_exit_2") {
        return;
    }
    let out = silentmon()
        .args(["vlantest", "listen", "-i", "smnosuch0", "--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smnosuch0"));
}
