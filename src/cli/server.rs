//! `silentmon server`: the appliance. Arguments -> settings (the configuration file, the flags
//! on top) -> `appliance::Appliance` (which assembles and runs everything) until SIGINT/SIGTERM
//! (or `--run-for`) -> exit code. `--check-config` prints a summary and the warnings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::duration::parse_duration;
use crate::appliance::assembly::{Appliance, Tls};
use crate::capture::replay::ReplayOptions;
use crate::config::{self, Settings};

/// Arguments of `silentmon server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Configuration file. When the default file does not exist the built-in defaults are used.
    #[arg(long, short, default_value = config::DEFAULT_PATH, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and the TLS files it names, print a summary, exit.
    #[arg(long)]
    check_config: bool,
    /// Replay a capture file as live traffic (at its original pace) besides any interfaces.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Replay speed (2 = twice as fast; 0 = as fast as possible).
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    speed: f64,
    /// Replay the file again and again.
    #[arg(long = "loop", requires = "replay")]
    looped: bool,
    /// Capture on these interfaces instead of `capture.interfaces`.
    #[arg(long = "interface", short = 'i', value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Plaintext control plane and monitor service (labs only; overrides security.insecure).
    #[arg(long)]
    insecure: bool,
    /// Stop after this long (tests and benchmarks; default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    run_for: Option<Duration>,
}

pub(crate) fn run(args: ServerArgs) -> Result<ExitCode> {
    let mut settings = load_settings(&args.config)?;
    if args.insecure {
        settings.insecure = true;
    }
    if !args.interfaces.is_empty() {
        settings.capture.interfaces = args.interfaces.clone();
    }
    let tls = if settings.insecure {
        None
    } else {
        Some(Tls::load(&settings.certs_dir)?)
    };
    if let (Some(t), false) = (&tls, settings.cluster.peers.is_empty()) {
        t.check_cluster(&settings.cluster.name)?;
    }
    for w in settings.warnings() {
        // Said on every start and by --check-config, so an admin learns it.
        tracing::warn!("{w}");
        if args.check_config {
            eprintln!("warning: {w}");
        }
    }
    if args.check_config {
        println!("{}", summary(&args.config, &settings, tls.is_some()));
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("silentmon-net")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let replay = args.replay.clone().map(|p| {
        (
            p,
            ReplayOptions {
                speed: args.speed,
                looped: args.looped,
                ..ReplayOptions::default()
            },
        )
    });
    let stop = super::wait_for_stop(args.run_for);
    let is_tls = tls.is_some();
    rt.block_on(async {
        let app = Appliance::start(settings, tls, replay).await?;
        eprintln!("{}", started(&app, is_tls));
        stop.await;
        let s = app.shutdown().await;
        eprintln!(
            "silentmon server: stopped after {} frames, {} RTP packets, {} forwarded to monitors",
            s.frames, s.rtp_packets, s.forwarded
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The line printed once every port listens.
fn started(app: &Appliance, tls: bool) -> String {
    format!(
        "silentmon server: control plane on {} ({}), monitor service on {}, metrics on \
         http://{}/metrics, capturing: {}",
        app.control,
        if tls {
            "TLS 1.3"
        } else {
            "plaintext, --insecure"
        },
        app.monitor,
        app.metrics,
        app.inputs.join(", "),
    )
}

/// `--check-config`'s summary line.
fn summary(path: &Path, s: &Settings, tls: bool) -> String {
    format!(
        "{}: OK: {} agents, {} supervisors, control plane {} ({}), monitor service {}, \
         metrics http://{}/metrics, capture on {}, TLS files in {}, audit trail {}{}{}",
        path.display(),
        s.agents.len(),
        s.supervisors.len(),
        s.control.listen,
        if tls { "TLS 1.3" } else { "plaintext" },
        s.monitor.listen,
        s.control.metrics_listen,
        if s.capture.interfaces.is_empty() {
            "no interface".to_owned()
        } else {
            s.capture.interfaces.join(", ")
        },
        if tls {
            s.certs_dir.display().to_string()
        } else {
            "(not used: plaintext)".to_owned()
        },
        s.audit_log.display(),
        cluster_summary(s),
        s.cti
            .as_ref()
            .map(|c| format!(", {}", c.summary()))
            .unwrap_or_default(),
    )
}

/// `, cluster NAME on ADDR with peers N1 (ADDR1), ...` when peers are listed.
fn cluster_summary(s: &Settings) -> String {
    let c = &s.cluster;
    if c.peers.is_empty() {
        return String::new();
    }
    let peers: Vec<String> = c
        .peers
        .iter()
        .map(|p| format!("{} ({})", p.name, p.address))
        .collect();
    format!(
        ", cluster {} on {} with peers {}",
        c.name,
        c.listen,
        peers.join(", ")
    )
}

/// The configuration: the named file, or the defaults when the default file is absent.
fn load_settings(path: &Path) -> Result<Settings> {
    if path == Path::new(config::DEFAULT_PATH) && !path.exists() {
        tracing::warn!(
            "{} does not exist: using the built-in defaults",
            path.display()
        );
        return Ok(Settings::parse("", path)?);
    }
    Ok(Settings::load(path)?)
}
