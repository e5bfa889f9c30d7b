//! `silentmon server` and `silentmon ctl` as a user runs them, on loopback, with the PKI made by
//! `silentmon certs`: the demo capture replayed as live traffic, the control plane over TLS 1.3
//! (agents, calls, flows, bindings by SIP number, by phone IP and by explicit bind; team
//! rights; a monitor with its audit entries; heartbeat loss; the monitor-mode lockout), TLS
//! refusals, the metrics endpoint, configuration errors, SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::appliance::*;
use common::*;
use serde_json::Value;

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    config: std::path::PathBuf,
    control: String,
    metrics: SocketAddr,
    audit: std::path::PathBuf,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("certs"), "localhost");
    let control = format!("127.0.0.1:{}", free_port());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let monitor = format!("127.0.0.1:{}", free_port());
    let audit = dir.path().join("state/audit.jsonl");
    let hash = |pw: &str| {
        let mut child = silentmon()
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let config = dir.path().join("silentmon.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[control]
listen = "{control}"
metrics_listen = "{metrics}"
monitor_mode_password_hash = "{monitor_hash}"
{extra}
[monitor]
listen = "{monitor}"
[security]
certs_dir = "{certs}"
audit_log = "{audit}"

[[agent]]
id = "5001"
extension = "5001"
mobile_number = "+4915112345678"
team = "blue"
warn_if_silent_monitored = true
password_hash = "{a5001_hash}"

[[agent]]
id = "5003"
extension = "5003"
phone_ips = ["10.1.0.1"]
team = "blue"

[[agent]]
id = "7001"
extension = "7001"
team = "red"

[[supervisor]]
id = "s1"
teams = ["blue"]
password_hash = "{s1_hash}"
"#,
            monitor_hash = hash("monitor-secret"),
            s1_hash = hash("s1-secret"),
            a5001_hash = hash("5001-secret"),
            certs = pki.dir.display(),
            audit = audit.display(),
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        pki,
        config,
        control,
        metrics,
        audit,
    }
}

fn start(s: &Setup, log: &Path) -> Appliance {
    let mut cmd = silentmon();
    cmd.arg("server")
        .arg("--config")
        .arg(&s.config)
        .arg("--replay")
        .arg(testdata("demo-vlan85-mobile-agent.pcap"))
        .args(["--loop", "--speed", "2"]);
    Appliance::start(cmd, s.metrics, log)
}

#[test]
fn the_appliance_serves_the_replayed_demo_over_tls() {
    let s = setup("");
    let log = s._dir.path().join("server.log");
    let app = start(&s, &log);
    let pw = s._dir.path().join("s1.pw");
    std::fs::write(&pw, "s1-secret\n").unwrap();
    let ca = s.pki.ca();
    let base = [
        "--server",
        &s.control,
        "--ca",
        ca.to_str().unwrap(),
        "--server-name",
        "localhost",
        "--user",
        "s1",
        "--password-file",
        pw.to_str().unwrap(),
    ];

    // The demo call is seen and bound to agent 5001 through its mobile number in the SIP (the
    // Request-URI that reached the answering side). The gateway's address is agent 5003's
    // static phone IP here, so the call is 5003's conversation too: one row per agent.
    let calls = eventually(Duration::from_secs(20), "the demo call", || {
        let v = ctl_json(&base, &["calls"]);
        (v.as_array().unwrap().len() == 2).then_some(v)
    });
    let agents: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["5001", "5003"], "{calls:#}");
    for c in calls.as_array().unwrap() {
        assert_eq!(c["call_id"], "00000055-0@capgen");
        assert_eq!(c["to"], "+4915112345678");
    }
    let flows = eventually(Duration::from_secs(10), "both directions", || {
        let v = ctl_json(&base, &["flows"]);
        let dirs: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["agent_id"] == "5001")
            .filter_map(|f| f["direction"].as_str())
            .collect();
        (dirs.contains(&"from_agent") && dirs.contains(&"to_agent")).then_some(v)
    });
    assert!(flows
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["payloads"][0] == "g711U"));
    let bindings = ctl_json(&base, &["bindings"]);
    let find = |agent: &str, source: &str| {
        bindings
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["agent_id"] == agent && b["source"] == source)
            .cloned()
    };
    let sip = find("5001", "sip").expect("5001 bound by SIP");
    assert_eq!(sip["endpoint"], "10.2.0.1:30000");
    assert!(find("5003", "static").is_some(), "{bindings:#}");
    // A supervisor sees only the teams' agents.
    let agents = ctl_json(&base, &["agents"]);
    let ids: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["5001", "5003"]);
    // Human tables too.
    let table = ctl(&base, &["flows"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("AGENT_ID") && text.contains("10.2.0.1:30000"),
        "{text}"
    );

    // Explicit bind, then it is listed.
    let r = ctl_json(&base, &["bind", "5003", "10.9.9.9:4000", "--for", "60s"]);
    assert_eq!(r["result"], "ok");
    eventually(Duration::from_secs(5), "the explicit binding", || {
        let v = ctl_json(&base, &["bindings"]);
        v.as_array()
            .unwrap()
            .iter()
            .any(|b| {
                b["agent_id"] == "5003"
                    && b["source"] == "explicit"
                    && b["endpoint"] == "10.9.9.9:4000"
            })
            .then_some(())
    });

    // Another team's agent is refused with the reason.
    let other = ctl(&base, &["monitor", "7001"]);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("agent is not in your teams"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // Agent 7001 has no password_hash: it cannot log in (whatever password), and the audit
    // trail says why while the client is told what any wrong password gets.
    let nopw = s._dir.path().join("7001.pw");
    std::fs::write(&nopw, "anything\n").unwrap();
    let refused = ctl(
        &[
            "--server",
            &s.control,
            "--ca",
            ca.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--mode",
            "agent",
            "--user",
            "7001",
            "--password-file",
            nopw.to_str().unwrap(),
        ],
        &["state", "Available"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown agent or wrong password"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Watch 5001's events (it logs in with its password); the supervisor's monitor warns it.
    let a5001_pw = s._dir.path().join("5001.pw");
    std::fs::write(&a5001_pw, "5001-secret\n").unwrap();
    let agent_base = [
        "--server",
        &s.control,
        "--ca",
        ca.to_str().unwrap(),
        "--server-name",
        "localhost",
        "--mode",
        "agent",
        "--user",
        "5001",
        "--password-file",
        a5001_pw.to_str().unwrap(),
    ];
    let agent_events = std::process::Command::new(env!("CARGO_BIN_EXE_silentmon"))
        .arg("ctl")
        .args(agent_base)
        .args(["events", "--for", "6s", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "agent 5001 logged in", || {
        let v = ctl_json(&base, &["agents"]);
        (v[0]["state"] == "Login").then_some(())
    });
    let forwarded_before = app.metric("silentmon_forwarded_packets_total");
    let grant = ctl_json(&base, &["monitor", "5001", "--for", "2s"]);
    assert_eq!(grant["result"], "ok");
    assert_eq!(grant["key"].as_str().unwrap().len(), 32);
    // Packets of 5001 were forwarded while the monitor ran (the replay keeps looping).
    let forwarded = app.metric("silentmon_forwarded_packets_total");
    assert!(
        forwarded > forwarded_before,
        "{forwarded} > {forwarded_before}"
    );
    let events = agent_events.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("SilentMonitorStartedEvent"), "{events}");
    assert!(events.contains("SilentMonitorStoppedEvent"), "{events}");
    // Who listened to whom, from where.
    let audit = std::fs::read_to_string(&s.audit).unwrap();
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "bind",
            "monitor_refused",
            "login_failed",
            "monitor_started",
            "monitor_stopped"
        ],
        "{audit}"
    );
    assert_eq!(entries[1]["agent"], "7001");
    assert_eq!(entries[1]["reason"], "agent is not in your teams");
    assert_eq!(
        (&entries[2]["id"], &entries[2]["reason"]),
        (
            &Value::from("7001"),
            &Value::from("no password_hash configured")
        )
    );
    assert_eq!(entries[3]["supervisor"], "s1");
    assert_eq!(entries[3]["agent"], "5001");
    assert!(entries[3]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(entries[4]["reason"], "supervisor disconnected");
    assert!(!audit.contains(grant["key"].as_str().unwrap()));

    // Metrics: the replay input and the engine's counters.
    let m = app.metrics_text();
    assert!(metric(&m, "silentmon_capture_frames_total{interface=\"replay\"}").unwrap() > 0.0);
    assert_eq!(
        metric(&m, "silentmon_pipeline_dropped_total{interface=\"replay\"}"),
        Some(0.0)
    );
    assert!(metric(&m, "silentmon_engine_rtp_packets_total").unwrap() > 0.0);
    assert_eq!(metric(&m, "silentmon_calls"), Some(1.0));

    // TLS refusals: a client trusting another CA, and a plaintext client.
    let other_ca = Pki::new(&s._dir.path().join("other"), "localhost");
    let wrong = ctl(
        &[
            "--server",
            &s.control,
            "--ca",
            other_ca.ca().to_str().unwrap(),
            "--server-name",
            "localhost",
            "--user",
            "s1",
        ],
        &["agents"],
    );
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("certificate"), "{err}");
    let plain = ctl(
        &["--server", &s.control, "--insecure", "--user", "s1"],
        &["agents"],
    );
    assert!(!plain.status.success());
    // The server took all that and still answers.
    assert_eq!(ctl_json(&base, &["agents"]).as_array().unwrap().len(), 2);
    assert!(app.metric("silentmon_control_tls_failures_total") >= 2.0);

    let (status, log) = app.stop();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("stopped after"), "{log}");
}

#[test]
fn monitor_mode_locks_out_after_three_wrong_passwords() {
    let s = setup("");
    let app = start(&s, &s._dir.path().join("server.log"));
    let ca = s.pki.ca();
    let login = |pw: &str| {
        let file = s._dir.path().join("mm.pw");
        std::fs::write(&file, pw).unwrap();
        ctl(
            &[
                "--server",
                &s.control,
                "--ca",
                ca.to_str().unwrap(),
                "--server-name",
                "localhost",
                "--mode",
                "monitor",
                "--password-file",
                file.to_str().unwrap(),
            ],
            &["agents", "--json"],
        )
    };
    let ok = login("monitor-secret");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Monitor mode sees every team.
    let all: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    for _ in 0..3 {
        let bad = login("guess");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("wrong password"));
    }
    // Now even the right password is refused (for 15 minutes; the unit tests of
    // security::lockout run the clock past them).
    let locked = login("monitor-secret");
    assert!(!locked.status.success());
    let err = String::from_utf8_lossy(&locked.stderr);
    assert!(err.contains("monitor mode disabled"), "{err}");
    drop(app);
}

#[test]
fn a_silent_client_is_dropped_after_the_heartbeat_retries() {
    // Server heartbeats every 300 ms, a client silent for 2 x 300 ms is dropped.
    let s = setup("heartbeat_interval_ms = 300\nheartbeat_retries = 2\n");
    let app = start(&s, &s._dir.path().join("server.log"));
    // A plaintext TCP client would fail TLS; use a TLS client through ctl's library instead:
    // `ctl events` answers heartbeats and so stays, while a raw TLS connection that never
    // answers is closed. The raw side uses openssl s_client (a real TLS 1.3 client).
    let ca = s.pki.ca();
    // `timeout`: if the server never closed the connection, the test fails instead of hanging.
    let mut raw = std::process::Command::new("timeout")
        .args([
            "20", "openssl", "s_client", "-quiet", "-tls1_3", "-connect", &s.control, "-CAfile",
        ])
        .arg(&ca)
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Log in as agent 5001 with one raw frame, then say nothing more.
    let body = br#"{"msg":"Login","mode":"agent","id":"5001","password":"5001-secret"}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let mut stdin = raw.stdin.take().unwrap();
    stdin.write_all(&frame).unwrap();
    stdin.flush().unwrap();
    let staying = std::process::Command::new(env!("CARGO_BIN_EXE_silentmon"))
        .arg("ctl")
        .args([
            "--server",
            &s.control,
            "--ca",
            ca.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--user",
            "s1",
            "--password-file",
        ])
        .arg({
            let f = s._dir.path().join("s1.pw");
            std::fs::write(&f, "s1-secret").unwrap();
            f
        })
        .args(["events", "--for", "3s", "--json"])
        .output()
        .unwrap();
    // The raw client's connection was closed by the server: s_client sees EOF and exits.
    let mut out = Vec::new();
    raw.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let status = raw.wait().unwrap();
    assert_ne!(
        status.code(),
        Some(124),
        "the server never closed the silent client"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("LoginReply"), "{text}");
    // The answering client stayed for its 3 s and saw the agent's logout (its state event).
    assert!(
        staying.status.success(),
        "{}",
        String::from_utf8_lossy(&staying.stderr)
    );
    let events = String::from_utf8_lossy(&staying.stdout);
    assert!(
        events.contains("\"Heartbeat\"") || events.contains("AgentStateEvent"),
        "{events}"
    );
    assert!(events.contains("Logout"), "{events}");
    drop(stdin);
    drop(app);
}

#[test]
fn bad_configuration_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[control]\nlisten = \"not-an-address\"\n").unwrap();
    let out = silentmon()
        .args(["server", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("control.listen"),
        "{err}"
    );
    // Missing TLS files are named with the way to make them.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("[security]\ncerts_dir = \"{}\"\n", dir.path().display()),
    )
    .unwrap();
    let out = silentmon()
        .args(["server", "--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ca.pem") && err.contains("silentmon certs"),
        "{err}"
    );
    // With --insecure the same file checks out.
    let out = run_ok(
        silentmon()
            .args(["server", "--check-config", "--insecure", "--config"])
            .arg(&good),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    // Peers need this appliance's name (the key is named); the summary shows the cluster and
    // the audit trail's relative path resolved beside the file.
    let peers = dir.path().join("peers.toml");
    std::fs::write(
        &peers,
        "[cluster]\npeers = [\"192.0.2.12:42029\"]\n[security]\naudit_log = \"audit.jsonl\"\n",
    )
    .unwrap();
    let out = silentmon()
        .args(["server", "--check-config", "--insecure", "--config"])
        .arg(&peers)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.name"));
    std::fs::write(
        &peers,
        "[cluster]\nname = \"192.0.2.11\"\npeers = [\"192.0.2.12:42029\"]\n\
         [security]\naudit_log = \"audit.jsonl\"\n",
    )
    .unwrap();
    let out = run_ok(
        silentmon()
            .args(["server", "--check-config", "--insecure", "--config"])
            .arg(&peers),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OK")
            && text.contains(&format!(
                "audit trail {}",
                dir.path().join("audit.jsonl").display()
            )),
        "{text}"
    );
    assert!(
        text.contains(
            "cluster 192.0.2.11 on 0.0.0.0:42029 with peers 192.0.2.12 (192.0.2.12:42029)"
        ),
        "{text}"
    );
    // The CTI feed: its sides in the summary; a bad value named with its key.
    let cti = dir.path().join("cti.toml");
    std::fs::write(&cti, "[cti]\nside_a = \"pg1a:42027\"\nversion = 19\n").unwrap();
    let out = run_ok(
        silentmon()
            .args(["server", "--check-config", "--insecure", "--config"])
            .arg(&cti),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CTI Server feed from side A pg1a:42027 (protocol 19"),
        "{text}"
    );
    std::fs::write(&cti, "[cti]\nside_a = \"pg1a:42027\"\nheartbeat_s = 1\n").unwrap();
    let out = silentmon()
        .args(["server", "--check-config", "--insecure", "--config"])
        .arg(&cti)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cti.heartbeat_s"));
    // Accounts without a password cannot log in, and --check-config says which; metrics on a
    // non-loopback address are warned about.
    let check = |text: &str| {
        let file = dir.path().join("accounts.toml");
        std::fs::write(&file, text).unwrap();
        let out = run_ok(
            silentmon()
                .args(["server", "--check-config", "--insecure", "--config"])
                .arg(&file),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(
        "[control]\nmetrics_listen = \"0.0.0.0:9542\"\n\
         [[agent]]\nid = \"5001\"\nextension = \"5001\"\n\
         [[supervisor]]\nid = \"s9\"\nteams = [\"t\"]\n",
    );
    for said in [
        "cannot log in: agent 5001, supervisor s9",
        "control.metrics_listen = 0.0.0.0:9542 exposes the metrics",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    let err = check(
        "[security]\npasswordless_logins = true\n\
         [[agent]]\nid = \"5001\"\nextension = \"5001\"\n",
    );
    assert!(
        err.contains("passwordless_logins = true: agent 5001 log in with any password"),
        "{err}"
    );
    // A port that is taken is reported with its key.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("busy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\nlisten = \"{}\"\n[security]\ninsecure = true\naudit_log = \"{}\"\n",
            busy.local_addr().unwrap(),
            dir.path().join("a.jsonl").display()
        ),
    )
    .unwrap();
    let out = silentmon()
        .args(["server", "--run-for", "1s", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control.listen"), "{err}");
    let _ = TcpStream::connect(busy.local_addr().unwrap());
}
