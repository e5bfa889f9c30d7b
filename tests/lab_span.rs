//! The SPAN lab (tests/common/lab.rs) proven end to end: a real SIP call between two baresip
//! user agents across the lab's bridge, and a VLAN-tagged capture replayed into the same
//! bridge, both captured by tcpdump on the appliance's SPAN NIC and read back with
//! `silentmon flows` (and tshark). Needs root; CI runs it as root.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::lab::*;
use common::netns::require_root;
use common::*;
use serde_json::Value;

fn flows(file: &Path) -> Value {
    let out = run_ok(silentmon().args(["flows", "-r"]).arg(file).arg("--json"));
    serde_json::from_slice(&out.stdout).expect("flows --json is JSON")
}

fn key(s: &Value) -> (String, String, u64) {
    (
        s["src"].as_str().unwrap().to_owned(),
        s["dst"].as_str().unwrap().to_owned(),
        s["ssrc"].as_u64().unwrap(),
    )
}

/// The streams between the lab's gateway and phone.
fn lab_streams<'a>(v: &'a Value, lab: &Lab) -> Vec<&'a Value> {
    let net = format!("10.77.{}.", lab.n);
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["src"].as_str().unwrap().starts_with(&net))
        .collect()
}

/// Both directions of a call with `call_id`: one stream gw -> phone, one phone -> gw, `payload`,
/// untagged, packet counts 50/s over `secs` (within 4 % + 3 packets).
fn assert_call_streams(v: &Value, lab: &Lab, call_id: &str, payload: &str, secs: f64) {
    let streams: Vec<&Value> = lab_streams(v, lab)
        .into_iter()
        .filter(|s| s["call_id"] == call_id)
        .collect();
    assert_eq!(streams.len(), 2, "call {call_id}: {streams:#?}");
    let gw = format!("{}:", lab.gw_ip());
    let ph = format!("{}:", lab.phone_ip());
    let up = streams
        .iter()
        .find(|s| s["src"].as_str().unwrap().starts_with(&gw))
        .expect("gw -> phone stream");
    let down = streams
        .iter()
        .find(|s| s["src"].as_str().unwrap().starts_with(&ph))
        .expect("phone -> gw stream");
    assert!(up["dst"].as_str().unwrap().starts_with(&ph), "{up:#}");
    assert!(down["dst"].as_str().unwrap().starts_with(&gw), "{down:#}");
    let expected = 50.0 * secs;
    for s in [up, down] {
        assert_eq!(s["payload"], serde_json::json!([payload]), "{s:#}");
        assert_eq!(s["vlans"], serde_json::json!([]), "{s:#}");
        assert_eq!(s["lost"], 0, "{s:#}");
        let p = s["packets"].as_f64().unwrap();
        assert!(
            (p - expected).abs() <= 0.04 * expected + 3.0,
            "{p} packets, expected about {expected}: {s:#}"
        );
    }
}

#[test]
fn span_carries_a_sip_call_and_a_tagged_replay() {
    if !require_root("span_carries_a_sip_call_and_a_tagged_replay") {
        return;
    }
    let lab = Lab::new("ls");
    let file = lab.dir().join("span.pcap");
    let original = testdata("calls-4-vlan100-loss.pcap");
    let capture = lab.capture_span(&file);
    let (call, replay) = std::thread::scope(|s| {
        let replay = s
            .spawn(|| lab.replay_into_bridge(&original, Speed::Pps(1000), Duration::from_secs(60)));
        let call = lab.sip_call(&CallSpec::new(Duration::from_secs(4)));
        (call, replay.join().unwrap())
    });
    std::thread::sleep(Duration::from_millis(200));
    let cap = capture.stop();
    assert_eq!(replay.sent, 3993, "{replay:?}");
    assert_eq!(replay.failed, 0, "{replay:?}");
    assert_eq!(cap.dropped_by_kernel, 0, "{cap:?}");

    let v = flows(&file);
    let reference = flows(&original);

    // The SIP call: one dialog to 5001, both PCMU directions bound to it.
    let calls: Vec<&Value> = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["to"] == "5001" && c["from"] == "4930555000")
        .collect();
    assert_eq!(calls.len(), 1, "{:#}", v["calls"]);
    assert_eq!(calls[0]["state"], "Ended", "{:#}", calls[0]);
    let call_id = calls[0]["call_id"].as_str().unwrap();
    assert_eq!(lab_streams(&v, &lab).len(), 2, "{:#}", v["streams"]);
    assert_call_streams(&v, &lab, call_id, "g711U", call.talk.as_secs_f64());

    // The replay: every stream of the file, with its VLAN and exactly its packets, loss and
    // duplicates (the SPAN copied every frame, tags included).
    let ours: BTreeMap<_, _> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (key(s), s))
        .collect();
    let refs = reference["streams"].as_array().unwrap();
    assert_eq!(refs.len(), 16);
    for r in refs {
        let s = ours
            .get(&key(r))
            .unwrap_or_else(|| panic!("replayed stream {:?} not on the SPAN", key(r)));
        for f in [
            "packets",
            "lost",
            "duplicates",
            "vlans",
            "payload",
            "call_id",
        ] {
            assert_eq!(s[f], r[f], "{f} of {:?}", key(r));
        }
    }
    let vlans: std::collections::BTreeSet<u64> = refs
        .iter()
        .map(|r| r["vlans"][0].as_u64().unwrap())
        .collect();
    assert_eq!(vlans, [100, 101, 102, 103].into_iter().collect());
    // Tagged frames on the SPAN: exactly the replayed ones (the lab's own are untagged).
    assert_eq!(flows_counter(&v, "encap_vlan_tagged"), 3993);
    assert_eq!(flows_counter(&v, "encap_qinq"), 0);
    assert_eq!(flows_counter(&v, "sip_calls"), 5);
    assert_eq!(flows_counter(&v, "frames"), cap.captured);

    // tshark, independently: 3993 frames with an 802.1Q tag, and the same stream table.
    let out = run_ok(
        Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args(["-Y", "vlan", "-T", "fields", "-e", "vlan.id"]),
    );
    let ids = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ids.lines().count(), 3993);
    assert!(ids
        .lines()
        .all(|l| ["100", "101", "102", "103"].contains(&l)));
    let t = tshark_rtp_streams(&file, false);
    assert_eq!(t.len(), 18, "{t:#?}");
    for ts in &t {
        let k = (ts.src.clone(), ts.dst.clone(), u64::from(ts.ssrc));
        let s = ours
            .get(&k)
            .unwrap_or_else(|| panic!("tshark stream {k:?} not in flows"));
        assert_eq!(s["packets"].as_u64().unwrap(), ts.packets, "{k:?}");
        assert_eq!(s["lost"].as_i64().unwrap(), ts.lost, "{k:?}");
    }
}

#[test]
fn two_calls_in_sequence_second_pcma_with_hold() {
    if !require_root("two_calls_in_sequence_second_pcma_with_hold") {
        return;
    }
    let lab = Lab::new("lh");
    let file = lab.dir().join("span.pcap");
    let capture = lab.capture_span(&file);
    let first = lab.sip_call(&CallSpec::new(Duration::from_secs(3)));
    let second = lab.sip_call(
        &CallSpec::new(Duration::from_secs(5))
            .codec(Codec::Pcma)
            .hold(Duration::from_millis(1500), Duration::from_millis(1500))
            .audio(
                Audio::Speech("Thank you for calling, how can I help?".into()),
                Audio::Tone(1000.0),
            ),
    );
    std::thread::sleep(Duration::from_millis(200));
    let cap = capture.stop();
    assert_eq!(cap.dropped_by_kernel, 0);

    let v = flows(&file);
    let calls: Vec<&Value> = v["calls"].as_array().unwrap().iter().collect();
    assert_eq!(calls.len(), 2, "{:#}", v["calls"]);
    assert!(calls
        .iter()
        .all(|c| c["to"] == "5001" && c["state"] == "Ended"));
    let (id1, id2) = (
        calls[0]["call_id"].as_str().unwrap(),
        calls[1]["call_id"].as_str().unwrap(),
    );
    assert_ne!(id1, id2);
    assert_eq!(lab_streams(&v, &lab).len(), 4, "{:#}", v["streams"]);
    assert_call_streams(&v, &lab, id1, "g711U", first.talk.as_secs_f64());
    // On hold (sendonly / recvonly) baresip sends nothing in either direction: 1.5 s less audio
    // and one gap of about 1.5 s in each stream.
    assert_call_streams(&v, &lab, id2, "g711A", second.talk.as_secs_f64() - 1.5);
    for s in lab_streams(&v, &lab) {
        let max = s["max_delta_ms"].as_f64().unwrap();
        if s["call_id"] == id2 {
            assert!((1400.0..1700.0).contains(&max), "hold gap: {s:#}");
        } else {
            // A user agent on a loaded 2-core machine stalls up to ~200 ms now and then; a
            // hold is 1.5 s.
            assert!(max < 400.0, "no gap in the first call: {s:#}");
        }
    }
    // INVITE 180 200 ACK BYE 200 per call, and the hold and resume re-INVITEs (INVITE 200 ACK
    // each) in the second.
    assert_eq!(
        flows_counter(&v, "sip_messages"),
        6 + 6 + 6,
        "{:#}",
        v["counters"]
    );
}

#[test]
fn lab_is_gone_after_a_panicking_test() {
    if !require_root("lab_is_gone_after_a_panicking_test") {
        return;
    }
    let names = std::sync::Mutex::new(Vec::new());
    let pid = std::sync::Mutex::new(0u32);
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new("lp");
        for ns in [Ns::Switch, Ns::Gw, Ns::Phone, Ns::Appl] {
            names.lock().unwrap().push(lab.netns(ns).name.clone());
        }
        // A process the test leaves behind: the lab must kill it.
        let bg = lab.spawn_in(Ns::Phone, &["sleep", "300"]);
        *pid.lock().unwrap() = bg.0.id();
        std::mem::forget(bg);
        // The management link works from the root namespace (a TCP listener in appl).
        let listener = lab
            .cmd_in(Ns::Appl, "python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(); s.bind((sys.argv[1],4242)); s.listen(); \
                 c,_=s.accept(); c.sendall(b'appl')",
                &lab.mgmt_appl_ip(),
            ])
            .spawn()
            .unwrap();
        let _listener = common::netns::Background(listener);
        let addr: std::net::SocketAddr = format!("{}:4242", lab.mgmt_appl_ip()).parse().unwrap();
        let mut got = String::new();
        wait_until(Duration::from_secs(10), "the appl listener", || {
            use std::io::Read;
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(mut c) => {
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let _ = c.read_to_string(&mut got);
                    true
                }
                Err(_) => false,
            }
        });
        assert_eq!(got, "appl");
        panic!("deliberate");
    });
    // The deliberate panic, not another one (a failing management-link check panics too).
    let payload = result.expect_err("the closure panics");
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert_eq!(
        message, "deliberate",
        "another panic than the deliberate one"
    );
    let list =
        String::from_utf8(run_ok(Command::new("ip").args(["netns", "list"])).stdout).unwrap();
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 4);
    for n in &names {
        assert!(!list.split_whitespace().any(|w| w == n), "{n} still exists");
    }
    let pid = pid.into_inner().unwrap();
    assert!(pid > 0);
    // Killed: gone, or a zombie (the forgotten Child was never waited for).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        stat.is_empty() || state == Some("Z"),
        "pid {pid} survived: {stat}"
    );
}
