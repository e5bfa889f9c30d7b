//! The SPAN interface disappearing under a running appliance (a vNIC reset, a hot-unplug): the
//! capture is reopened when the interface is back, counted in
//! `silentmon_capture_reopens_total`, and frames are captured again; the input never ends.
//! Real libpcap on a veth pair between two network namespaces; root (CI runs it as root).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::appliance::{eventually, metric};
use common::netns::*;
use common::*;

#[test]
fn a_span_interface_that_disappears_and_comes_back_is_captured_again() {
    if !require_root("a_span_interface_that_disappears_and_comes_back_is_captured_again") {
        return;
    }
    let (appl, feed) = (Netns::new("smap"), Netns::new("smfd"));
    let (span, peer) = (unique("span"), unique("feed"));
    veth(&appl, &span, &feed, &peer);
    appl.sh(&["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("silentmon.toml");
    std::fs::write(
        &config,
        "[control]\nlisten = \"127.0.0.1:42028\"\nmetrics_listen = \"127.0.0.1:9542\"\n\
         [monitor]\nlisten = \"127.0.0.1:42228\"\n[security]\ninsecure = true\n\
         audit_log = \"audit.jsonl\"\n",
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let _server = Background(
        appl.cmd(env!("CARGO_BIN_EXE_silentmon"))
            .args(["server", "-i", &span, "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    appl.wait_for_packet_socket();
    let metrics_addr: SocketAddr = "127.0.0.1:9542".parse().unwrap();
    // The metrics endpoint lives in the appliance's namespace: read it with curl there.
    let read = |name: &str| -> Option<f64> {
        let out = appl
            .cmd("curl")
            .args(["-s", &format!("http://{metrics_addr}/metrics")])
            .output()
            .ok()?;
        metric(&String::from_utf8_lossy(&out.stdout), name)
    };
    let frames = format!("silentmon_capture_frames_total{{interface=\"{span}\"}}");
    let reopens = format!("silentmon_capture_reopens_total{{interface=\"{span}\"}}");
    let replay = |ns: &Netns, iface: &str| {
        let out = ns
            .cmd("tcpreplay")
            .args(["-q", "--topspeed", "-i", iface])
            .arg(testdata("demo-vlan85-mobile-agent.pcap"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The metrics answer once the appliance started (its capture ring is ready by then).
    eventually(Duration::from_secs(20), "the appliance", || read(&frames));
    replay(&feed, &peer);
    // Replayed at top speed, a few frames may miss the ring: most of the 2415 arrive.
    let before = eventually(Duration::from_secs(10), "frames on the SPAN", || {
        read(&frames).filter(|n| *n >= 2000.0)
    });
    // The interface goes away (its peer with it) and comes back under the same name.
    appl.sh(&["ip", "link", "del", &span]);
    std::thread::sleep(Duration::from_millis(500));
    veth(&appl, &span, &feed, &peer);
    eventually(Duration::from_secs(20), "the capture reopened", || {
        read(&reopens).filter(|n| *n >= 1.0)
    });
    std::thread::sleep(Duration::from_millis(300));
    replay(&feed, &peer);
    eventually(Duration::from_secs(10), "frames after the reopen", || {
        read(&frames).filter(|n| *n >= before + 2000.0)
    });
    assert_eq!(
        read("silentmon_capture_inputs"),
        Some(1.0),
        "the input never ended"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("capture failed; reopening it"), "{text}");
    assert!(text.contains("capture reopened"), "{text}");
}
