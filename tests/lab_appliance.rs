//! The appliance itself on the lab's SPAN (tests/common/lab.rs): `silentmon server` captures on
//! span0 in the appliance's namespace, real baresip calls cross the mirrored bridge, and a
//! supervisor's `silentmon ctl` reaches the control plane over TLS on the management link. The
//! agent is bound by its number in the SIP (through hold and on to the next call) and, in a
//! second configuration, by its phone's IP; another team's supervisor is refused; monitored
//! packets are forwarded; the capture counters show no drops. Needs root; CI runs it as root.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::appliance::*;
use common::lab::*;
use common::netns::require_root;
use serde_json::Value;

struct Running {
    app: Appliance,
    base: Vec<String>,
    red: Vec<String>,
}

/// Writes a configuration with `agents` and starts the appliance on span0.
fn start(lab: &Lab, pki: &Pki, tag: &str, agents: &str) -> Running {
    let ip = lab.mgmt_appl_ip();
    let metrics: SocketAddr = format!("{ip}:9542").parse().unwrap();
    let config = lab.dir().join(format!("{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[capture]
interfaces = ["{span}"]
[control]
listen = "{ip}:42028"
metrics_listen = "{metrics}"
[monitor]
listen = "{ip}:42228"
[security]
certs_dir = "{certs}"
audit_log = "{audit}"
passwordless_logins = true
{agents}
[[supervisor]]
id = "s1"
teams = ["blue"]
[[supervisor]]
id = "r1"
teams = ["red"]
"#,
            span = lab.span_iface(),
            certs = pki.dir.display(),
            audit = lab.dir().join(format!("{tag}-audit.jsonl")).display(),
        ),
    )
    .unwrap();
    let mut cmd = lab.cmd_in(Ns::Appl, env!("CARGO_BIN_EXE_silentmon"));
    cmd.arg("server").arg("--config").arg(&config);
    let app = Appliance::start(cmd, metrics, &lab.dir().join(format!("{tag}.log")));
    let ca = pki.ca().display().to_string();
    let base = |user: &str| -> Vec<String> {
        [
            "--server",
            &format!("{ip}:42028"),
            "--ca",
            &ca,
            "--server-name",
            &ip,
            "--user",
            user,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    Running {
        app,
        base: base("s1"),
        red: base("r1"),
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn json(r: &Running, what: &[&str]) -> Value {
    ctl_json(&args(&r.base), what)
}

/// Logs the agent in for `secs` (monitoring needs a logged-in agent).
fn agent_session(r: &Running, agent: &str, secs: u32) -> std::process::Child {
    let mut a = r.base.clone();
    let user = a.iter().position(|x| x == "--user").unwrap();
    a[user + 1] = agent.into();
    std::process::Command::new(env!("CARGO_BIN_EXE_silentmon"))
        .arg("ctl")
        .args(&a)
        .args(["--mode", "agent", "events", "--for", &format!("{secs}s")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_appliance_on_the_span_follows_a_real_agent() {
    if !require_root("the_appliance_on_the_span_follows_a_real_agent") {
        return;
    }
    let lab = Lab::new("la");
    let pki = Pki::new(&lab.dir().join("certs"), &lab.mgmt_appl_ip());
    let phone = lab.phone_ip();

    // 1. Agent 5001 bound by its number: the call to 5001, its hold, and the next call.
    let r = start(
        &lab,
        &pki,
        "by-number",
        "[[agent]]\nid = \"5001\"\nextension = \"5001\"\nteam = \"blue\"\n",
    );
    let mut agent = agent_session(&r, "5001", 60);
    eventually(Duration::from_secs(10), "agent 5001 logged in", || {
        (json(&r, &["agents"])[0]["state"] == "Login").then_some(())
    });
    let mut held_seen = false;
    let mut first_call = String::new();
    let mut forwarded_during_call = 0.0;
    std::thread::scope(|s| {
        let call = s.spawn(|| {
            lab.sip_call(
                &CallSpec::new(Duration::from_secs(6))
                    .hold(Duration::from_secs(2), Duration::from_millis(1500)),
            )
        });
        let calls = eventually(Duration::from_secs(20), "the call in the appliance", || {
            let v = json(&r, &["calls"]);
            v.as_array()
                .unwrap()
                .iter()
                .any(|c| c["agent_id"] == "5001" && c["state"] == "Answered")
                .then_some(v)
        });
        first_call = calls[0]["call_id"].as_str().unwrap().to_owned();
        let b = json(&r, &["bindings"]);
        let sip = b
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["agent_id"] == "5001" && b["source"] == "sip")
            .unwrap_or_else(|| panic!("5001 not bound by SIP: {b:#}"));
        assert!(
            sip["endpoint"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{phone}:")),
            "the agent's side is the phone: {sip:#}"
        );
        // Another team's supervisor is refused.
        let refused = ctl(&args(&r.red), &["monitor", "5001"]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("agent is not in your teams"));
        // Our supervisor monitors for 3 s: the agent's packets are forwarded.
        let before = r.app.metric("silentmon_forwarded_packets_total");
        let grant = ctl_json(&args(&r.base), &["monitor", "5001", "--for", "3s"]);
        assert_eq!(grant["result"], "ok");
        forwarded_during_call = r.app.metric("silentmon_forwarded_packets_total") - before;
        // The hold is seen (re-INVITE sendonly), the binding stays.
        while !call.is_finished() {
            let v = json(&r, &["calls"]);
            if v.as_array()
                .unwrap()
                .iter()
                .any(|c| c["call_id"] == first_call.as_str() && c["hold"] == true)
            {
                held_seen = true;
                let b = json(&r, &["bindings"]);
                assert!(b
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["agent_id"] == "5001"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        call.join().unwrap();
    });
    // 3 s of a G.711 call both ways at 50 packets/s: well over 100 forwarded.
    assert!(forwarded_during_call > 100.0, "{forwarded_during_call}");
    assert!(held_seen, "the hold was never listed");
    // The next call binds the agent again, automatically.
    lab.sip_call(&CallSpec::new(Duration::from_secs(2)).codec(Codec::Pcma));
    // Ended calls stay listed as the agent's while the call table keeps them (60 s).
    let calls = eventually(Duration::from_secs(10), "the second call", || {
        let v = json(&r, &["calls"]);
        (v.as_array().unwrap().len() == 2).then_some(v)
    });
    let second = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] != first_call.as_str())
        .unwrap();
    assert_eq!(second["agent_id"], "5001");
    let flows = json(&r, &["flows"]);
    let pcma: Vec<&Value> = flows
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["payloads"][0] == "g711A")
        .collect();
    assert_eq!(pcma.len(), 2, "{flows:#}");
    assert!(pcma.iter().all(|f| f["agent_id"] == "5001"));
    let m = r.app.metrics_text();
    let span = |name: &str| metric(&m, &format!("{name}{{interface=\"span0\"}}")).unwrap();
    assert!(span("silentmon_capture_received_total") > 500.0, "{m}");
    assert_eq!(span("silentmon_capture_kernel_dropped_total"), 0.0);
    assert_eq!(span("silentmon_pipeline_dropped_total"), 0.0);
    let _ = agent.kill();
    let _ = agent.wait();
    let (status, log) = r.app.stop();
    assert!(status.success(), "{log}");

    // 2. Agent 6001 bound by its phone's IP alone (its number is never dialled).
    let r = start(
        &lab,
        &pki,
        "by-ip",
        &format!(
            "[[agent]]\nid = \"6001\"\nextension = \"6001\"\nphone_ips = [\"{phone}\"]\nteam = \"blue\"\n"
        ),
    );
    let b = json(&r, &["bindings"]);
    assert!(
        b.as_array()
            .unwrap()
            .iter()
            .any(|b| b["agent_id"] == "6001" && b["source"] == "static"),
        "{b:#}"
    );
    lab.sip_call(&CallSpec::new(Duration::from_secs(2)));
    let flows = eventually(Duration::from_secs(10), "the call's flows", || {
        let v = json(&r, &["flows"]);
        (v.as_array().unwrap().len() >= 2).then_some(v)
    });
    for f in flows.as_array().unwrap() {
        assert_eq!(f["agent_id"], "6001", "{flows:#}");
        let from_phone = f["src"].as_str().unwrap().starts_with(&format!("{phone}:"));
        let want = if from_phone { "from_agent" } else { "to_agent" };
        assert_eq!(f["direction"], want, "{f:#}");
    }
    drop(r);
}
