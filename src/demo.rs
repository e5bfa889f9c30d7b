//! The embedded demo (`silentmon demo`): the whole product on one machine, without a SPAN.
//!
//! [`Demo::prepare`] writes the run directory: the bundled capture (a mobile agent's call on
//! VLAN 85), a private PKI for `localhost` and the supervisor, the supervisor's password (0600)
//! and hash; it builds the appliance's settings (loopback ports, the audit trail beside them,
//! the demo agent and supervisor, the mock CTI Server's address) and the supervisor
//! endpoint's. [`Demo::run`] starts the appliance replaying the capture as live traffic, held
//! behind a gate, and the endpoint monitoring the demo agent; once the endpoint monitors, it
//! opens the gate and starts the mock CTI Server (so the scenario's times match the replay's),
//! waits the call's length (or Ctrl-C), stops the endpoint, then the appliance. It tells the
//! caller what happens through [`Step`]s; the caller (the CLI) words them.
//!
//! Rules: every port is loopback and picked free; the CA key lives only in the run directory;
//! nothing here reads a terminal.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::appliance::assembly::{Appliance, Tls};
use crate::capture::replay::ReplayOptions;
use crate::capture::{PacketSource, PcapFile};
use crate::config::supervisor::SupervisorSettings;
use crate::config::Settings;
use crate::endpoint::local::{ask, LocalReply, LocalRequest};
use crate::endpoint::media_loop::MediaReport;
use crate::security::pki::{create_ca, create_request, sign_request, Role};

/// The demo capture, made by tools/capgen (see testdata/README.md), embedded in the binary.
const DEMO_CAPTURE: &[u8] = include_bytes!("../testdata/demo-vlan85-mobile-agent.pcap");
/// The CTI Server's view of the demo call (`capgen calls --cti-scenario`).
const DEMO_CTI_SCENARIO: &str = include_str!("../testdata/demo-vlan85-mobile-agent.cti.json");
/// The demo agent.
pub const DEMO_AGENT: &str = "5001";
/// The demo agent's mobile number (the SIP carries it).
const DEMO_MOBILE: &str = "+4915112345678";
/// The capture's file name in the run directory.
const CAPTURE_NAME: &str = "demo-vlan85-mobile-agent.pcap";

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Replay speed (1 = as it happened), within (0, 100].
    pub speed: f64,
    /// Output device (None: the system's default).
    pub device: Option<String>,
    /// Agent left, caller right (else a mono mix).
    pub stereo: bool,
    /// With the mock CTI Server (else the binding comes from the SIP alone).
    pub cti: bool,
}

/// What the demo tells its caller as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The endpoint monitors the agent and the call starts: played on `device` (None: no
    /// device could be opened, recorded only), lasting `length`.
    CallStarts {
        /// The capture replayed.
        capture: PathBuf,
        /// The device playing the call.
        device: Option<String>,
        /// How long the call lasts at the demo's speed.
        length: Duration,
    },
    /// Ctrl-C ended the call early.
    Interrupted,
}

/// What a finished demo leaves.
#[derive(Debug)]
pub struct Outcome {
    /// The endpoint's report.
    pub endpoint: MediaReport,
    /// The CTI feed's one-line summary (with the mock CTI Server).
    pub cti: Option<String>,
    /// The WAV recordings, oldest first.
    pub recordings: Vec<PathBuf>,
    /// The audit trail.
    pub audit: PathBuf,
}

/// A prepared demo run (see the module doc).
pub struct Demo {
    out: PathBuf,
    capture: PathBuf,
    length: Duration,
    speed: f64,
    settings: Settings,
    tls: Tls,
    supervisor: SupervisorSettings,
    password: String,
    local: SocketAddr,
    cti: Option<TcpListener>,
}

impl Demo {
    /// Writes the run directory `out` and builds every setting (see the module doc).
    pub fn prepare(out: &Path, o: &DemoOptions) -> Result<Demo> {
        if !(o.speed > 0.0 && o.speed <= 100.0) {
            bail!("--speed {} is not within (0, 100]", o.speed);
        }
        let capture = write_capture(out)?;
        let certs = out.join("certs");
        demo_pki(&certs)?;
        let length = capture_length(&capture)?;
        let (control, monitor, metrics, local) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        // The demo supervisor logs in with a password made for this run, as in production.
        let password = crate::control::plane::random_key();
        let password_file = out.join("supervisor.password");
        write_private(&password_file, &format!("{password}\n"))?;
        let password_hash = crate::security::password::hash(&password)?;
        // The mock CTI Server's port, bound now and served once the call starts: the
        // appliance's OPEN_REQ waits in the backlog until then.
        let cti = o
            .cti
            .then(|| TcpListener::bind("127.0.0.1:0"))
            .transpose()
            .context("binding the mock CTI Server's port")?;
        let cti_addr = cti.as_ref().map(|l| l.local_addr()).transpose()?;
        let config = appliance_config(
            (control, monitor, metrics),
            &certs,
            out,
            &password_hash,
            cti_addr,
        );
        let local = SocketAddr::from(([127, 0, 0, 1], local));
        Ok(Demo {
            out: out.to_owned(),
            length,
            speed: o.speed,
            settings: Settings::parse(&config, Path::new("(demo configuration)"))?,
            tls: Tls::load(&certs)?,
            supervisor: SupervisorSettings {
                user: "demo".into(),
                password_file: Some(password_file),
                servers: vec![format!("127.0.0.1:{control}")],
                ca: certs.join("ca.pem"),
                cert: Some(certs.join("supervisor.pem")),
                key: Some(certs.join("supervisor.key")),
                server_name: Some("localhost".into()),
                listen: local,
                record: Some(out.to_owned()),
                stereo: o.stereo,
                device: o.device.clone(),
                monitor: Some(DEMO_AGENT.into()),
                ..SupervisorSettings::default()
            },
            password,
            local,
            cti,
            capture,
        })
    }

    /// Runs the demo (see the module doc), telling `step` what happens.
    pub async fn run(self, mut step: impl FnMut(Step)) -> Result<Outcome> {
        let gate = Arc::new(AtomicBool::new(false));
        let replay = ReplayOptions {
            speed: self.speed,
            looped: false,
            gate: Some(gate.clone()),
        };
        let replay = Some((self.capture.clone(), replay));
        let appliance = Appliance::start(self.settings, Some(self.tls), replay).await?;
        let (stop_endpoint, endpoint_stopped) = tokio::sync::oneshot::channel::<()>();
        let endpoint = crate::endpoint::shell::run(self.supervisor, Some(self.password), async {
            let _ = endpoint_stopped.await;
        });
        let (length, speed, capture) = (self.length, self.speed, self.capture);
        let (local, cti) = (self.local.to_string(), self.cti);
        let steps = async {
            // The call starts once the supervisor listens (monitoring begins before the call,
            // whatever the agent's state, as in production).
            let device = wait_monitoring(&local).await;
            let mut mock = None;
            if let Ok(device) = &device {
                step(Step::CallStarts {
                    capture,
                    device: device.clone(),
                    length: length.div_f64(speed),
                });
                gate.store(true, Ordering::Release);
                mock = cti.map(|l| serve_mock_cti(l, speed));
                let wait = length.div_f64(speed) + Duration::from_millis(1500);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tokio::signal::ctrl_c() => step(Step::Interrupted),
                }
            }
            let _ = stop_endpoint.send(());
            if let Some(m) = mock {
                m.abort();
            }
            device.map(drop)
        };
        let (report, steps) = tokio::join!(endpoint, steps);
        let report = report?;
        steps?;
        let cti = appliance.cti_stats().map(|s| s.summary(DEMO_AGENT));
        appliance.shutdown().await;
        Ok(Outcome {
            endpoint: report,
            cti,
            recordings: recordings(&self.out),
            audit: self.out.join("audit.jsonl"),
        })
    }
}

/// Writes the bundled capture into `out` (created if need be); returns its path.
pub fn write_capture(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let capture = out.join(CAPTURE_NAME);
    std::fs::write(&capture, DEMO_CAPTURE)
        .with_context(|| format!("cannot write {}", capture.display()))?;
    Ok(capture)
}

/// A loopback port free right now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The capture's length (first to last frame).
fn capture_length(path: &Path) -> Result<Duration> {
    let mut f = PcapFile::open(path, None)?;
    let (mut first, mut last) = (None, None);
    while let Some(fr) = f.next_frame()? {
        first.get_or_insert(fr.ts);
        last = Some(fr.ts);
    }
    match (first, last) {
        (Some(a), Some(b)) => Ok(Duration::from_nanos((b - a).as_nanos().max(0) as u64)),
        _ => bail!("{} holds no frames", path.display()),
    }
}

/// A CA, the appliance's certificate for `localhost` and the supervisor's client certificate,
/// written to `dir` (the CA key unencrypted: it exists for this run only).
fn demo_pki(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca = create_ca("silentmon demo CA", 2)?;
    let server = create_request("localhost")?;
    let client = create_request("demo-supervisor")?;
    let files = [
        ("ca.pem", ca.cert.clone()),
        (
            "server.pem",
            sign_request(&server.cert, &ca, Role::Server, 2)?,
        ),
        ("server.key", server.key),
        (
            "supervisor.pem",
            sign_request(&client.cert, &ca, Role::Client, 2)?,
        ),
        ("supervisor.key", client.key),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Serves the demo's CTI scenario on `listener` (a task, aborted when the demo ends).
/// Its times are the capture's, sped up as the replay is.
fn serve_mock_cti(listener: TcpListener, speed: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let scenario: crate::cti::mock::Scenario = match serde_json::from_str(DEMO_CTI_SCENARIO) {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "the demo's CTI scenario"),
        };
        let scenario = scenario.sped_up(speed);
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener));
        match listener {
            Ok(l) => {
                let (scenario, faults) = (Arc::new(scenario), Arc::default());
                crate::cti::mock::serve(l, scenario, faults, std::future::pending()).await;
            }
            Err(e) => tracing::error!(error = %e, "the mock CTI Server's port"),
        }
    })
}

/// The demo appliance's configuration: loopback ports, the run's PKI in `certs`, the audit
/// trail in `out`, the demo agent and supervisor, the mock CTI Server at `cti`.
fn appliance_config(
    (control, monitor, metrics): (u16, u16, u16),
    certs: &Path,
    out: &Path,
    password_hash: &str,
    cti: Option<SocketAddr>,
) -> String {
    format!(
        r#"
[control]
listen = "127.0.0.1:{control}"
metrics_listen = "127.0.0.1:{metrics}"
[monitor]
listen = "127.0.0.1:{monitor}"
[security]
certs_dir = "{certs}"
audit_log = "{audit}"
[[agent]]
id = "{DEMO_AGENT}"
extension = "{DEMO_AGENT}"
mobile_number = "{DEMO_MOBILE}"
team = "demo"
warn_if_silent_monitored = true
[[supervisor]]
id = "demo"
teams = ["demo"]
password_hash = "{password_hash}"
certificate = "demo-supervisor"
{cti_table}"#,
        certs = certs.display(),
        audit = out.join("audit.jsonl").display(),
        cti_table = cti
            .map(|a| format!("[cti]\nside_a = \"{a}\"\n"))
            .unwrap_or_default(),
    )
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Polls the endpoint's local control until it monitors; returns the device it plays on
/// (None: none could be opened; after 3 s of monitoring without one, the endpoint records only).
async fn wait_monitoring(addr: &str) -> Result<Option<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(LocalReply::Status(s)) = ask(addr, &LocalRequest::Status).await {
            let device_known = s.device.is_some()
                || tokio::time::Instant::now() + Duration::from_secs(17) > deadline;
            if s.monitoring && device_known {
                return Ok(s.device);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the supervisor endpoint did not start monitoring within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo agent's WAV recordings in `dir`, oldest first.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{DEMO_AGENT}_")) && n.ends_with(".wav"))
    });
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_demo_has_its_files_and_loopback_settings() {
        let dir = tempfile::tempdir().unwrap();
        let o = DemoOptions {
            speed: 1.0,
            device: None,
            stereo: true,
            cti: true,
        };
        let demo = Demo::prepare(dir.path(), &o).unwrap();
        for f in [
            "certs/ca.pem",
            "certs/server.key",
            "supervisor.password",
            CAPTURE_NAME,
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("supervisor.password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(demo.local.ip().is_loopback());
        assert!(demo.cti.is_some() && demo.length > Duration::from_secs(1));
        assert_eq!(demo.supervisor.monitor.as_deref(), Some(DEMO_AGENT));
        let bad = DemoOptions { speed: 0.0, ..o };
        assert!(Demo::prepare(dir.path(), &bad).is_err());
    }
}
