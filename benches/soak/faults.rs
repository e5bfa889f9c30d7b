//! The soak's fault cases (see the bench's doc): a real `silentmon supervisor` against two
//! appliances replaying the same small capture; kill -9 of the endpoint, kill -9 of an
//! appliance, SIGSTOP of an appliance, and the SPAN interface deleted and re-created.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silentmon::control::client::Client;
use silentmon::control::frame::Frame;

use super::support::{free_port, BoxError};
use super::{App, Options, Site};

/// Runs the fault cases; returns the report (markdown).
pub async fn run(o: &Options) -> Result<String, BoxError> {
    let site = Site::prepare(o, "faults", 20)?;
    let capture = site.capture(o, 20, 120, 0)?;
    let mut a = site.start(o, "a", &capture)?;
    let mut b = site.start(o, "b", &capture)?;
    let mut report = String::from("# Faults\n\n| case | what happened | time |\n|---|---|---:|\n");
    let mut row = |case: &str, what: String, secs: f64| {
        let line = format!("| {case} | {what} | {secs:.2} s |\n");
        eprint!("{line}");
        report += &line;
    };

    // 1. kill -9 of an endpoint: its monitor ends at the appliance.
    let mut e1 = Endpoint::start(o, &site, &[&a], "5001")?;
    e1.wait_packets(Duration::from_secs(20)).await?;
    let t0 = Instant::now();
    e1.kill();
    let freed = until(Duration::from_secs(30), || {
        a.metric("silentmon_monitors") == 0.0
    })
    .await;
    row(
        "kill -9 of the endpoint",
        format!("the appliance ended its monitor: {freed}"),
        t0.elapsed().as_secs_f64(),
    );

    // 2. kill -9 of the appliance the endpoint is on: it moves to the other and monitors again.
    let e2 = Endpoint::start(o, &site, &[&a, &b], "5002")?;
    let before = e2.wait_packets(Duration::from_secs(20)).await?;
    let on = before.server.clone();
    let (victim, other) = if on == a.control.to_string() {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let t0 = Instant::now();
    let _ = victim.child.kill();
    let moved = e2
        .wait_for(Duration::from_secs(60), |s| {
            s.server == other.control.to_string() && s.packets > 0 && s.monitoring
        })
        .await;
    let p0 = moved.as_ref().map_or(0, |s| s.packets);
    let flowing = e2
        .wait_for(Duration::from_secs(20), |s| s.packets > p0 + 50)
        .await
        .is_some();
    row(
        "kill -9 of the endpoint's appliance",
        format!(
            "failed over from {on} to {}: {}; packets flowing again: {flowing}",
            other.control,
            moved.is_some()
        ),
        t0.elapsed().as_secs_f64(),
    );
    // Bring the killed one back for the next case.
    let restarted = site.start(o, "a2", &capture)?;
    let (stopped, standby) = if on == a.control.to_string() {
        (b, restarted)
    } else {
        (a, restarted)
    };

    // 3. SIGSTOP of the appliance the endpoint is on, 10 s, then SIGCONT.
    let s0 = e2.status().await?;
    signal(&stopped.child, "STOP");
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = e2.status().await.ok();
    signal(&stopped.child, "CONT");
    let t_cont = Instant::now();
    let floor = during.as_ref().map_or(s0.packets, |d| d.packets);
    let after = e2
        .wait_for(Duration::from_secs(60), |s| {
            s.monitoring && s.packets > floor + 50
        })
        .await;
    row(
        "SIGSTOP of the endpoint's appliance for 10 s (time: SIGCONT to packets flowing)",
        format!(
            "before: {}; during: {}; after: {}",
            s0.describe(),
            during.map_or("no status".into(), |s| s.describe()),
            after.map_or("no packets again within 60 s".into(), |s| s.describe())
        ),
        t_cont.elapsed().as_secs_f64(),
    );
    let _ = t0;
    drop(e2);
    drop(standby);
    drop(stopped);

    // 4. The SPAN interface deleted and re-created under a running appliance (root only).
    if is_root() {
        let (what, secs) = span_flap(o, &site).await?;
        row("the SPAN interface deleted and re-created", what, secs);
    } else {
        report += "| the SPAN interface deleted and re-created | not run: needs root | - |\n";
    }
    Ok(report)
}

/// Polls `f` every 50 ms for up to `limit`; whether it held.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// What an endpoint's `Status` says.
#[derive(Clone, Debug, Default)]
struct Status {
    server: String,
    monitoring: bool,
    packets: u64,
}

impl Status {
    fn describe(&self) -> String {
        format!(
            "on {}, {}, {} packets",
            if self.server.is_empty() {
                "no appliance"
            } else {
                &self.server
            },
            if self.monitoring {
                "monitoring"
            } else {
                "not monitoring"
            },
            self.packets
        )
    }
}

/// A running `silentmon supervisor` (s1) monitoring one agent; killed when dropped.
struct Endpoint {
    child: Child,
    local: String,
}

impl Endpoint {
    fn start(o: &Options, site: &Site, apps: &[&App], agent: &str) -> Result<Endpoint, BoxError> {
        let local = format!("127.0.0.1:{}", free_port()?);
        let certs = site.dir.join("certs");
        let log: PathBuf = site.dir.join(format!("endpoint-{agent}.log"));
        let child = Command::new(&o.silentmon)
            .arg("supervisor")
            .args(
                apps.iter()
                    .flat_map(|a| ["--server".to_owned(), a.control.to_string()]),
            )
            .args([
                "--server-name",
                "localhost",
                "--user",
                "s1",
                "--password-file",
            ])
            .arg(site.dir.join("s1.password"))
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join("s1.pem"))
            .arg("--key")
            .arg(certs.join("s1.key"))
            .args(["--listen", &local, "--monitor", agent])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Endpoint { child, local })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn status(&self) -> Result<Status, BoxError> {
        let mut c = Client::connect(&self.local, None).await?;
        let r = c
            .request(&Frame::new("Status"), "StatusReply", |_| {})
            .await?;
        Ok(Status {
            server: r.str("server").unwrap_or("").to_owned(),
            monitoring: r.fields.get("monitoring") == Some(&serde_json::Value::Bool(true)),
            packets: r.u64("packets").unwrap_or(0),
        })
    }

    /// The first status within `limit` that `f` accepts.
    async fn wait_for(&self, limit: Duration, f: impl Fn(&Status) -> bool) -> Option<Status> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(s) = self.status().await {
                if f(&s) {
                    return Some(s);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Waits until packets flow; the status then.
    async fn wait_packets(&self, limit: Duration) -> Result<Status, BoxError> {
        self.wait_for(limit, |s| s.monitoring && s.packets > 50)
            .await
            .ok_or_else(|| "the endpoint never received packets".into())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The SPAN veth deleted and re-created under an appliance fed by tcpreplay: how long until
/// the capture reopened.
async fn span_flap(o: &Options, site: &Site) -> Result<(String, f64), BoxError> {
    let sh = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .stderr(Stdio::null())
            .status()
    };
    let (ns_a, ns_f) = ("smsoaka", "smsoakf");
    let _ = sh(&["ip", "netns", "del", ns_a]);
    let _ = sh(&["ip", "netns", "del", ns_f]);
    sh(&["ip", "netns", "add", ns_a])?;
    sh(&["ip", "netns", "add", ns_f])?;
    let veth = || -> Result<(), BoxError> {
        sh(&[
            "ip", "link", "add", "soakspan", "type", "veth", "peer", "name", "soakfeed",
        ])?;
        sh(&["ip", "link", "set", "soakspan", "netns", ns_a])?;
        sh(&["ip", "link", "set", "soakfeed", "netns", ns_f])?;
        sh(&["ip", "-n", ns_a, "link", "set", "soakspan", "up"])?;
        sh(&["ip", "-n", ns_f, "link", "set", "soakfeed", "up"])?;
        Ok(())
    };
    veth()?;
    sh(&["ip", "-n", ns_a, "link", "set", "lo", "up"])?;
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let config = site.dir.join("span.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"127.0.0.1:{}\"\nmetrics_listen = \"{metrics}\"\n\
             [monitor]\nlisten = \"127.0.0.1:{}\"\n[security]\ninsecure = true\n\
             audit_log = \"span-audit.jsonl\"\n",
            free_port()?,
            free_port()?
        ),
    )?;
    let mut server = Command::new("ip")
        .args(["netns", "exec", ns_a])
        .arg(&o.silentmon)
        .args(["server", "-i", "soakspan", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(site.dir.join("span.log"))?)
        .spawn()?;
    let reopens = || -> f64 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns_a, "curl", "-s"])
            .arg(format!("http://{metrics}/metrics"))
            .output();
        out.map_or(0.0, |o| {
            super::metric(
                &String::from_utf8_lossy(&o.stdout),
                "silentmon_capture_reopens_total{interface=\"soakspan\"}",
            )
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    sh(&["ip", "-n", ns_a, "link", "del", "soakspan"])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    veth()?;
    let reopened = until(Duration::from_secs(60), || reopens() >= 1.0).await;
    let secs = t0.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    let _ = sh(&["ip", "netns", "del", ns_a]);
    let _ = sh(&["ip", "netns", "del", ns_f]);
    Ok((
        format!("capture reopened (counted): {reopened}; time from the interface's return"),
        secs,
    ))
}
