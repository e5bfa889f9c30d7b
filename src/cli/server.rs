//! `silentmon server`: the appliance. Loads the configuration, opens the capture inputs (SPAN
//! interfaces and/or a replayed file), starts the engine thread, the control plane (42028), the
//! monitor service (42228) and the metrics endpoint, writes the audit trail, and runs until
//! SIGINT/SIGTERM (or `--run-for`). Wiring only: every decision lives in the modules it wires.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::duration::parse_duration;
use crate::appliance::audit::AuditLog;
use crate::appliance::engine_loop::{Command, ControlLink, EngineMetrics, EngineThread, Input};
use crate::appliance::metrics;
use crate::capture::live::{LiveCapture, LiveOptions};
use crate::capture::pipeline::Pipeline;
use crate::capture::replay::{Replay, ReplayOptions};
use crate::config::{self, Settings};
use crate::control::server::{self as control_server, wall_now, ControlServer, ControlStats};
use crate::control::session::{Action, ControlPlane, Directory};
use crate::engine::EngineConfig;
use crate::monitor::fanout::{self, Publisher};
use crate::monitor::registry::Registry;
use crate::monitor::service::{self as monitor_service, MonitorServer, DEFAULT_QUEUE_FRAMES};
use crate::monitor::stats::MonitorStats;
use crate::router::{Router, View};
use crate::time::Span;

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
    if !settings.cluster.peers.is_empty() {
        // Said on every start and by --check-config, so an admin who lists peers learns it.
        tracing::warn!(
            peers = settings.cluster.peers.len(),
            "cluster.peers is set, but this version has no peer link (42029): the peers are not \
             contacted, and each appliance forwards only the agents it sees on its own SPAN \
             (supervisor endpoints still fail over between the appliances of their list)"
        );
    }
    if args.check_config {
        println!(
            "{}: OK: {} agents, {} supervisors, control plane {} ({}), monitor service {}, \
             metrics http://{}/metrics, capture on {}, TLS files in {}, audit trail {}",
            args.config.display(),
            settings.agents.len(),
            settings.supervisors.len(),
            settings.control.listen,
            if tls.is_some() {
                "TLS 1.3"
            } else {
                "plaintext"
            },
            settings.monitor.listen,
            settings.control.metrics_listen,
            if settings.capture.interfaces.is_empty() {
                "no interface".to_owned()
            } else {
                settings.capture.interfaces.join(", ")
            },
            if tls.is_some() {
                settings.certs_dir.display().to_string()
            } else {
                "(not used: plaintext)".to_owned()
            },
            settings.audit_log.display(),
        );
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
    let limit = args.run_for;
    rt.block_on(serve(
        settings,
        tls,
        replay,
        None,
        super::wait_for_stop(limit),
    ))?;
    Ok(ExitCode::SUCCESS)
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

/// The appliance's TLS material: `ca.pem`, `server.pem`, `server.key` in the certs directory.
pub(crate) struct Tls {
    control: Arc<rustls::ServerConfig>,
    monitor: Arc<rustls::ServerConfig>,
}

impl Tls {
    pub(crate) fn load(dir: &Path) -> Result<Tls> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "TLS: cannot read {} (make the PKI with `silentmon certs ca`, `certs request \
                     --server --name HOST`, `certs sign`, see certs/README.md; or run with \
                     --insecure in a lab)",
                    p.display()
                )
            })
        };
        let (ca, cert, key) = (read("ca.pem")?, read("server.pem")?, read("server.key")?);
        let tls_err = || format!("TLS files in {}", dir.display());
        Ok(Tls {
            control: crate::security::tls::server_config(&ca, &cert, &key, false)
                .with_context(tls_err)?,
            // Supervisor endpoints must present a certificate of the same CA.
            monitor: crate::security::tls::server_config(&ca, &cert, &key, true)
                .with_context(tls_err)?,
        })
    }
}

/// Opens the capture inputs: each interface live (dropping, never blocking the kernel ring),
/// and the replay (waiting for the engine: nothing of a file is lost).
fn open_inputs(
    settings: &Settings,
    replay: Option<&(PathBuf, ReplayOptions)>,
) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let filter = settings.capture.filter.as_deref();
    if let Some((path, options)) = replay {
        let replay = Replay::open(path, filter, options.clone())?;
        inputs.push(Input {
            name: "replay".into(),
            pipeline: Pipeline::spawn(replay, false),
        });
    }
    for iface in &settings.capture.interfaces {
        let live = LiveCapture::open(
            iface,
            &LiveOptions {
                promiscuous: true,
                snaplen: settings.capture.snaplen.min(i32::MAX as u32) as i32,
                buffer_bytes: settings.capture.buffer_bytes.min(i32::MAX as u64) as i32,
                timeout: settings.capture.timeout,
                filter: settings.capture.filter.clone(),
                nonblocking: true,
            },
        )?;
        inputs.push(Input {
            name: iface.clone(),
            pipeline: Pipeline::spawn(live, true),
        });
    }
    if inputs.is_empty() {
        tracing::warn!(
            "no capture input: set capture.interfaces (or --interface), or --replay FILE"
        );
    }
    Ok(inputs)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

/// Runs the appliance until `shutdown`; `ready` fires once every port listens.
pub(crate) async fn serve(
    settings: Settings,
    tls: Option<Tls>,
    replay: Option<(PathBuf, ReplayOptions)>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    // Ports first: a taken port is reported before any capture starts.
    let control_listener = bind(settings.control.listen, "control plane, control.listen").await?;
    let monitor_listener = bind(settings.monitor.listen, "monitor service, monitor.listen").await?;
    let metrics_listener = bind(
        settings.control.metrics_listen,
        "metrics, control.metrics_listen",
    )
    .await?;
    let agent_ids = settings.agents.iter().map(|a| a.agent.id.clone()).collect();
    let mut audit = AuditLog::open(&settings.audit_log, agent_ids)
        .context("security.audit_log (the audit trail must be writable)")?;

    let agents = settings.agents.iter().map(|a| a.agent.clone()).collect();
    let mut router = Router::new(EngineConfig::default(), agents, Span::from_secs(2));
    router.set_stop_on_non_acd_calls(settings.monitor.stop_sm_non_acd_call);
    let (control_handle, ended_rx) = control_server::handle();
    let inputs = open_inputs(&settings, replay.as_ref())?;
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<Command>();
    let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(View::default()));
    let engine_metrics = Arc::new(EngineMetrics::default());
    let monitor_stats = Arc::new(MonitorStats::default());
    let (fanout_tx, fanout_rx) = fanout::commands();
    let engine = EngineThread::spawn(
        router,
        inputs,
        ControlLink {
            commands: cmd_rx,
            view: view_tx,
            end_monitor: {
                let control = control_handle.clone();
                Box::new(move |monitor, reason: &str| control.end_monitor(monitor, reason))
            },
        },
        Publisher::new(fanout_rx, monitor_stats.clone()),
        engine_metrics.clone(),
        wall_now,
    );
    let registry = Arc::new(Registry::new());

    let heartbeat = settings.control.heartbeat_interval;
    let monitor_service = (!settings.monitor.listen.ip().is_unspecified())
        .then(|| settings.monitor.listen.to_string());
    let plane = ControlPlane::new(Directory {
        agents: settings.agents.clone(),
        supervisors: settings.supervisors.clone(),
        monitor_password_hash: settings.control.monitor_mode_password_hash.clone(),
        lockout: settings.control.lockout,
        client_timeout: span(heartbeat * settings.control.heartbeat_retries.max(1)),
        server_heartbeat: span(heartbeat),
        monitor_service,
    });
    let control_stats = Arc::new(ControlStats::default());
    let actions = {
        let cmd_tx = cmd_tx.clone();
        let registry = registry.clone();
        move |a: &Action, peer: Option<SocketAddr>| {
            if let Err(e) = audit.record(wall_now(), a, peer) {
                tracing::error!(error = %e, "audit entry not written");
            }
            let cmd = match a {
                Action::MonitorStarted {
                    monitor,
                    agent,
                    agent_id,
                    supervisor_id,
                    key,
                    ..
                } => {
                    tracing::info!(monitor, agent = %agent_id, supervisor = %supervisor_id, "monitor started");
                    if let Err(e) = registry.grant(*monitor, key, agent_id, supervisor_id) {
                        tracing::error!(monitor, error = %e, "monitor not granted to the monitor service");
                    }
                    Command::AddMonitor {
                        monitor: *monitor,
                        agent: *agent,
                    }
                }
                Action::MonitorStopped {
                    monitor,
                    agent_id,
                    supervisor_id,
                    reason,
                } => {
                    tracing::info!(monitor, agent = %agent_id, supervisor = %supervisor_id, reason, "monitor stopped");
                    registry.revoke(*monitor, reason);
                    Command::RemoveMonitor { monitor: *monitor }
                }
                Action::Bind {
                    agent,
                    endpoint,
                    seconds,
                    ..
                } => Command::Bind {
                    agent: *agent,
                    endpoint: *endpoint,
                    seconds: *seconds,
                },
            };
            let _ = cmd_tx.send(cmd);
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let control = tokio::spawn(control_server::run(
        control_listener,
        ControlServer {
            plane,
            tls: tls.as_ref().map(|t| t.control.clone()),
            view: view_rx,
            actions: Box::new(actions),
            stats: control_stats.clone(),
            tos: 0x68,
        },
        ended_rx,
        stopped(stop_rx.clone()),
    ));
    let media_task = tokio::spawn(monitor_service::run(
        monitor_listener,
        MonitorServer {
            tls: tls.as_ref().map(|t| t.monitor.clone()),
            registry,
            control: control_handle,
            fanout: fanout_tx,
            heartbeat_interval: settings.monitor.heartbeat_interval,
            heartbeat_timeout: settings.monitor.heartbeat_timeout,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            tos: settings.monitor.tos,
            stats: monitor_stats.clone(),
        },
        stopped(stop_rx.clone()),
    ));
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        metrics::Sources {
            inputs: engine.inputs.clone(),
            engine: engine_metrics.clone(),
            control: control_stats,
            extra: vec![monitor_metrics(monitor_stats)],
        },
        stopped(stop_rx.clone()),
    ));
    eprintln!(
        "silentmon server: control plane on {} ({}), monitor service on {}, metrics on \
         http://{}/metrics, capturing: {}",
        settings.control.listen,
        if tls.is_some() {
            "TLS 1.3"
        } else {
            "plaintext, --insecure"
        },
        settings.monitor.listen,
        settings.control.metrics_listen,
        engine
            .inputs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    if let Some(r) = ready {
        let _ = r.send(());
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = control.await;
    let _ = media_task.await;
    let _ = metrics_task.await;
    engine.stop();
    use std::sync::atomic::Ordering::Relaxed;
    eprintln!(
        "silentmon server: stopped after {} frames, {} RTP packets, {} forwarded to monitors",
        engine_metrics.frames.load(Relaxed),
        engine_metrics.rtp_packets.load(Relaxed),
        engine_metrics.forwarded.load(Relaxed),
    );
    Ok(())
}

fn span(d: Duration) -> Span {
    Span::from_nanos(d.as_nanos().min(i64::MAX as u128) as i64)
}

/// The monitor service's counters as exposition lines.
fn monitor_metrics(stats: Arc<MonitorStats>) -> metrics::ExtraLines {
    Arc::new(move |out: &mut String| {
        let get = MonitorStats::get;
        for (name, kind, help, v) in [
            (
                "silentmon_monitor_frames_forwarded_total",
                "counter",
                "Media frames queued towards supervisor endpoints.",
                get(&stats.forwarded_total),
            ),
            (
                "silentmon_monitor_frames_dropped_total",
                "counter",
                "Media frames slow endpoints lost (oldest first).",
                get(&stats.dropped_total),
            ),
            (
                "silentmon_monitor_control_dropped_total",
                "counter",
                "Control frames slow endpoints lost.",
                get(&stats.control_dropped_total),
            ),
            (
                "silentmon_monitor_unrouted_total",
                "counter",
                "Packets for monitors no endpoint is attached to.",
                get(&stats.unrouted_total),
            ),
            (
                "silentmon_monitor_connections_total",
                "counter",
                "Endpoint connections accepted.",
                get(&stats.accepted_total),
            ),
            (
                "silentmon_monitor_tls_failures_total",
                "counter",
                "Endpoint TLS handshakes that failed.",
                get(&stats.tls_failures_total),
            ),
            (
                "silentmon_monitor_attach_refused_total",
                "counter",
                "Attach requests refused.",
                get(&stats.attach_refused_total),
            ),
            (
                "silentmon_monitor_protocol_errors_total",
                "counter",
                "Bad frames from endpoints.",
                get(&stats.protocol_errors_total),
            ),
            (
                "silentmon_monitor_endpoints",
                "gauge",
                "Endpoint connections open.",
                get(&stats.endpoints),
            ),
            (
                "silentmon_monitor_attached",
                "gauge",
                "Monitors attached to an endpoint.",
                get(&stats.attached),
            ),
        ] {
            metrics::sample(out, name, kind, help, v);
        }
        stats.write_delay.write_exposition(
            out,
            "silentmon_monitor_write_delay_seconds",
            "Media frames by the time from capture to the end of the socket write that sent \
             them to the endpoint (each frame counted at its write's oldest frame).",
        );
    })
}
