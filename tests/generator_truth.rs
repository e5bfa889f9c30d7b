//! The generator's truth files (written from what capgen actually put in each capture) against
//! what `silentmon flows` finds: every stream, its packets, lost (loss, duplicates), VLANs, SIP
//! Call-ID, and every call.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

fn check(name: &str) {
    let truth: Value =
        serde_json::from_slice(&std::fs::read(testdata(&format!("{name}.json"))).unwrap()).unwrap();
    let out = run_ok(
        silentmon()
            .args(["flows", "--json", "-r"])
            .arg(testdata(&format!("{name}.pcap"))),
    );
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = |s: &Value| {
        (
            s["src"].as_str().unwrap().to_owned(),
            s["dst"].as_str().unwrap().to_owned(),
            s["ssrc"].as_u64().unwrap(),
        )
    };
    let ours_by_key: BTreeMap<_, _> = ours["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (key(s), s))
        .collect();
    let truth_streams = truth["streams"].as_array().unwrap();
    assert_eq!(
        ours_by_key.len(),
        truth_streams.len(),
        "{name}: stream count"
    );
    for t in truth_streams {
        let s = ours_by_key
            .get(&key(t))
            .unwrap_or_else(|| panic!("{name}: stream {:?} not found", key(t)));
        let ctx = format!("{name} {:?}", key(t));
        assert_eq!(s["packets"], t["packets"], "{ctx}: packets");
        assert_eq!(s["lost"], t["lost"], "{ctx}: lost");
        assert_eq!(s["expected"], t["expected"], "{ctx}: expected");
        assert_eq!(s["vlans"], t["vlans"], "{ctx}: vlans");
        assert_eq!(s["call_id"], t["call_id"], "{ctx}: call id");
        assert_eq!(s["payload"][0], t["payload"], "{ctx}: payload");
        if t["duplicates"].as_u64().unwrap() > 0 {
            assert_eq!(s["duplicates"], t["duplicates"], "{ctx}: duplicates");
        }
    }
    let calls: Vec<&str> = ours["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let truth_calls: Vec<&str> = truth["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(calls, truth_calls, "{name}: calls");
}

#[test]
fn demo_capture() {
    check("demo-vlan85-mobile-agent");
}

#[test]
fn loss_reorder_duplicates_ssrc_change() {
    check("calls-4-vlan100-loss");
}

#[test]
fn qinq() {
    check("calls-2-qinq");
}

#[test]
fn untagged_jitter() {
    check("calls-3-untagged-jitter");
}

#[test]
fn agent_day_with_hold_consult_and_next_call() {
    check("agent-5001-hold-consult-next");
}
