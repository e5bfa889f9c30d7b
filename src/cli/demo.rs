//! `silentmon demo`: the whole product on its embedded default, on one machine and without a
//! SPAN. The appliance (`server`) replays the bundled demo capture (a mobile agent's call on
//! VLAN 85) as live traffic, with its control plane and monitor service on loopback over TLS
//! 1.3 from a private CA made for the run; an embedded supervisor endpoint (`supervisor`)
//! monitors the demo agent from before the call starts, plays both sides on the sound card
//! (agent left, caller right) and records the call as a WAV file. Without a sound device it
//! says so and records only. A mock CTI Server (`cti::mock`, on loopback) plays the PG's view
//! of the call from the moment it starts: the agent's states and RTP_STARTED with its media
//! endpoint, so the binding comes from the CTI feed (`--no-cti`: from the SIP alone).
//! `--offline` runs the offline analysis instead (`flows` and `extract` on the same capture).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::appliance::assembly::{Appliance, Tls};
use crate::capture::replay::ReplayOptions;
use crate::capture::{PacketSource, PcapFile};
use crate::config::supervisor::SupervisorSettings;
use crate::config::Settings;
use crate::endpoint::local::{ask, LocalReply, LocalRequest, Status};
use crate::engine::EngineConfig;
use crate::offline::extract::{extract, Selection, WavLayout};
use crate::offline::{analyse, Input};
use crate::report::Report;
use crate::security::pki::{create_ca, create_request, sign_request, Role};

/// The demo capture, made by tools/capgen (see testdata/README.md), embedded in the binary.
const DEMO_CAPTURE: &[u8] = include_bytes!("../../testdata/demo-vlan85-mobile-agent.pcap");
/// The CTI Server's view of the demo call (`capgen calls --cti-scenario`).
const DEMO_CTI_SCENARIO: &str = include_str!("../../testdata/demo-vlan85-mobile-agent.cti.json");
/// The demo agent.
const DEMO_AGENT: &str = "5001";
/// The demo agent's mobile number (the SIP carries it).
const DEMO_MOBILE: &str = "+4915112345678";

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the capture copy, the demo's certificates, audit trail and the WAV.
    #[arg(long, value_name = "DIR", default_value = "silentmon-demo")]
    out: PathBuf,
    /// Replay speed of the call (1 = as it happened). Above 1 the call arrives faster than a
    /// supervisor can hear it: the endpoint plays and records the part that fits in the
    /// shorter replay (a quick check, not a listen).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Output device, a name from `silentmon supervisor --list-devices` (default: the
    /// system's default output).
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Mix both sides to mono instead of agent left, caller right.
    #[arg(long)]
    mono: bool,
    /// Offline analysis instead: the stream table and the agent's call decoded to a WAV.
    #[arg(long)]
    offline: bool,
    /// Without the mock CTI Server: the agent's binding comes from the capture's SIP alone
    /// and its state stays Logout.
    #[arg(long)]
    no_cti: bool,
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let capture = args.out.join("demo-vlan85-mobile-agent.pcap");
    std::fs::write(&capture, DEMO_CAPTURE)
        .with_context(|| format!("cannot write {}", capture.display()))?;
    if args.offline {
        return offline(&args, &capture);
    }
    if !(args.speed > 0.0 && args.speed <= 100.0) {
        bail!("--speed {} is not within (0, 100]", args.speed);
    }
    live(&args, &capture)
}

fn offline(args: &DemoArgs, capture: &Path) -> Result<ExitCode> {
    let input = Input::new(capture, None, None)?;
    let analysis = analyse(&input, EngineConfig::default())?.complete()?;
    let report = Report::new(&analysis.engine, analysis.first_ts.unwrap_or_default());
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "silentmon demo: analysing {} (a call to mobile agent {DEMO_AGENT} on VLAN 85)\n",
        capture.display()
    )?;
    report.write_text(&mut out)?;
    let wav = args.out.join(format!("demo-agent-{DEMO_AGENT}.wav"));
    let summary = extract(
        &input,
        &analysis,
        &Selection::Number(DEMO_AGENT.to_owned()),
        WavLayout::Stereo,
        &wav,
    )?;
    writeln!(
        out,
        "\nagent {DEMO_AGENT}'s call: {summary}\nwritten to {} (agent left, caller right).",
        wav.display()
    )?;
    Ok(ExitCode::SUCCESS)
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

fn live(args: &DemoArgs, capture: &Path) -> Result<ExitCode> {
    let certs = args.out.join("certs");
    demo_pki(&certs)?;
    let length = capture_length(capture)?;
    let (control, monitor, metrics, local) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    // The demo supervisor logs in with a password made for this run, as in production.
    let password = crate::control::plane::random_key();
    let password_file = args.out.join("supervisor.password");
    write_private(&password_file, &format!("{password}\n"))?;
    let password_hash = crate::security::password::hash(&password)?;
    // The mock CTI Server's port, bound now and served once the call starts: the appliance's
    // OPEN_REQ waits in the backlog until then, so the scenario's times match the replay's.
    let cti = (!args.no_cti)
        .then(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .transpose()
        .context("binding the mock CTI Server's port")?;
    let cti_addr = cti.as_ref().map(|l| l.local_addr()).transpose()?;
    let ports = (control, monitor, metrics);
    let config = appliance_config(ports, &certs, &args.out, &password_hash, cti_addr);
    let settings = Settings::parse(&config, Path::new("(demo configuration)"))?;
    let tls = Tls::load(&certs)?;
    let supervisor = SupervisorSettings {
        user: "demo".into(),
        password_file: Some(password_file),
        servers: vec![format!("127.0.0.1:{control}")],
        ca: certs.join("ca.pem"),
        cert: Some(certs.join("supervisor.pem")),
        key: Some(certs.join("supervisor.key")),
        server_name: Some("localhost".into()),
        listen: SocketAddr::from(([127, 0, 0, 1], local)),
        record: Some(args.out.clone()),
        stereo: !args.mono,
        device: args.device.clone(),
        monitor: Some(DEMO_AGENT.into()),
        ..SupervisorSettings::default()
    };
    let gate = Arc::new(AtomicBool::new(false));
    let replay = (
        capture.to_owned(),
        ReplayOptions {
            speed: args.speed,
            looped: false,
            gate: Some(gate.clone()),
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let appliance = Appliance::start(settings, Some(tls), Some(replay)).await?;
        let (stop_endpoint, endpoint_stopped) = tokio::sync::oneshot::channel::<()>();
        // The endpoint runs in this task, beside the demo's own steps.
        let password = Some(password);
        let endpoint = crate::endpoint::shell::run(supervisor, password, async {
            let _ = endpoint_stopped.await;
        });
        let steps = async {
            // The call starts once the supervisor listens (monitoring begins before the call,
            // whatever the agent's state, as in production).
            let local = format!("127.0.0.1:{local}");
            let status = wait_monitoring(&local).await;
            let result = status.map(|status| {
                let playing = status.device;
                println!(
                    "silentmon demo: the appliance replays {} as live SPAN traffic (TLS 1.3 \
                     control plane and monitor service on loopback); supervisor `demo` is \
                     monitoring agent {DEMO_AGENT}.",
                    capture.display()
                );
                match &playing {
                    Some(d) => println!(
                        "playing the call on the sound card ({d}), agent left, caller right; \
                         recording too."
                    ),
                    None => println!(
                        "no sound device could be opened here: the call is recorded to a WAV \
                         file only."
                    ),
                }
                println!(
                    "the call lasts {:.0} s; Ctrl-C ends the demo early.",
                    length.as_secs_f64() / args.speed
                );
                gate.store(true, Ordering::Release);
            });
            let mock = result
                .is_ok()
                .then(|| cti.map(|l| serve_mock_cti(l, args.speed)))
                .flatten();
            if result.is_ok() {
                let wait = length.div_f64(args.speed) + Duration::from_millis(1500);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tokio::signal::ctrl_c() => println!("interrupted"),
                }
            }
            let _ = stop_endpoint.send(());
            if let Some(m) = mock {
                m.abort();
            }
            result
        };
        let (report, steps) = tokio::join!(endpoint, steps);
        let report = report?;
        steps?;
        let cti = appliance.cti_stats().map(|s| s.summary(DEMO_AGENT));
        appliance.shutdown().await;
        println!("supervisor: {}", crate::endpoint::shell::summary(&report));
        if let Some(line) = cti {
            println!("{line}");
        }
        let wavs = recordings(&args.out);
        if wavs.is_empty() {
            bail!("nothing was recorded (see the messages above)");
        }
        for w in wavs {
            println!("recorded: {}", w.display());
        }
        println!("audit trail: {}", args.out.join("audit.jsonl").display());
        Ok(ExitCode::SUCCESS)
    })
}

/// Serves the demo's CTI scenario on `listener` (a task, aborted when the demo ends).
/// Its times are the capture's, sped up as the replay is.
fn serve_mock_cti(listener: std::net::TcpListener, speed: f64) -> tokio::task::JoinHandle<()> {
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

/// Polls the endpoint's local control until it monitors; returns its status.
async fn wait_monitoring(addr: &str) -> Result<Status> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(LocalReply::Status(s)) = ask(addr, &LocalRequest::Status).await {
            let device_known = s.device.is_some()
                || tokio::time::Instant::now() + Duration::from_secs(17) > deadline;
            if s.monitoring && device_known {
                return Ok(*s);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the supervisor endpoint did not start monitoring within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The WAV recordings in `dir`, newest last.
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
