//! The running appliance, assembled from its settings: the ports bound first (a taken port is
//! reported before any capture starts), the audit trail opened, the capture inputs, the engine
//! thread, the control plane (42028), the monitor service (42228) and the metrics endpoint,
//! all started; [`Appliance::shutdown`] stops them in order. `silentmon server` and the demo
//! run exactly this.
//!
//! Rules: wiring only (every decision lives in the modules wired); every queue between the
//! pieces is bounded (see each module's full case): the engine's commands ([`COMMAND_QUEUE`]),
//! monitor endings (`control::server::ENDED_QUEUE`), fanout commands, per-endpoint queues.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::actions::ActionHandler;
use super::audit::{AuditLog, Auditor};
use super::engine_loop::{Command, ControlLink, EngineMetrics, EngineThread, Input};
use super::metrics;
use crate::capture::live::LiveOptions;
use crate::capture::pipeline::Pipeline;
use crate::capture::reopen::ReopeningCapture;
use crate::capture::replay::{Replay, ReplayOptions};
use crate::clock::wall_now;
use crate::config::Settings;
use crate::control::plane::{ControlPlane, Directory, SessionLimits};
use crate::control::server::{self as control_server, ControlHandle, ControlServer, ControlStats};
use crate::cti::client::{self as cti_client, AgentMatcher, CtiClient, CtiStats};
use crate::engine::EngineConfig;
use crate::flow::LIVE_STREAM_IDLE;
use crate::monitor::fanout::{self, Publisher};
use crate::monitor::registry::Registry;
use crate::monitor::service::{self as monitor_service, MonitorServer, DEFAULT_QUEUE_FRAMES};
use crate::monitor::stats::MonitorStats;
use crate::net::listen::Limits;
use crate::peer::client::{self as peer_client, PeerClient};
use crate::peer::link::Demand;
use crate::peer::server::{self as peer_server, PeerServer};
use crate::peer::{self, Cluster, ClusterView, DemandBoard, EnginePeers, PeerChannels};
use crate::router::{Router, View};
use crate::time::Span;

/// Commands queued towards the engine thread (monitor starts and stops, binds).
pub const COMMAND_QUEUE: usize = 4096;

/// Why the appliance could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which service and key.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error(
        "TLS: cannot read {path} (make the PKI with `silentmon certs ca`, `certs request --server \
         --name HOST`, `certs sign`, see certs/README.md; or run with --insecure in a lab): {source}"
    )]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS files did not make a configuration.
    #[error("TLS files in {dir}: {source}")]
    Tls {
        /// Their directory.
        dir: PathBuf,
        /// Cause.
        source: crate::security::tls::Error,
    },
    /// The certificate cannot serve a cluster.
    #[error(
        "cluster: {0} (sign the appliance's certificate with `silentmon certs sign --peer`, \
         see docs/DEPLOY.md)"
    )]
    Cluster(String),
    /// The audit trail cannot be written.
    #[error("security.audit_log (the audit trail must be writable): {0}")]
    Audit(#[from] super::audit::Error),
    /// A capture file did not open.
    #[error(transparent)]
    Capture(#[from] crate::capture::Error),
    /// A capture interface did not open.
    #[error(transparent)]
    Live(#[from] crate::capture::live::LiveError),
}

/// The appliance's TLS material: `ca.pem`, `server.pem`, `server.key` in the certs directory.
pub struct Tls {
    control: Arc<rustls::ServerConfig>,
    monitor: Arc<rustls::ServerConfig>,
    /// The peer link's server (client certificates required) and client (this appliance's
    /// certificate as its identity).
    peer: (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>),
    /// `server.pem` carries the TLS client usage (a cluster needs it) and these names.
    cert: (bool, Vec<String>),
}

impl Tls {
    /// Reads the TLS files in `dir`.
    pub fn load(dir: &Path) -> Result<Tls, Error> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| Error::TlsFile { path, source })
        };
        let (ca, cert, key) = (read("ca.pem")?, read("server.pem")?, read("server.key")?);
        let config = |clients| {
            crate::security::tls::server_config(&ca, &cert, &key, clients).map_err(|source| {
                Error::Tls {
                    dir: dir.to_owned(),
                    source,
                }
            })
        };
        let tls_error = |source| Error::Tls {
            dir: dir.to_owned(),
            source,
        };
        let der = crate::security::tls::first_certificate_der(&cert).map_err(tls_error)?;
        let peer_client =
            crate::security::tls::client_config(&ca, Some((&cert, &key))).map_err(tls_error)?;
        Ok(Tls {
            control: config(false)?,
            // Supervisor endpoints must present a certificate of the same CA.
            monitor: config(true)?,
            peer: (config(true)?, peer_client),
            cert: (
                crate::security::tls::is_client_certificate(&der),
                crate::security::tls::certificate_names(&der),
            ),
        })
    }
}

impl Tls {
    /// Can this certificate serve a cluster in which this appliance is named `name`: it must
    /// carry the client usage (the peer link it dials) and that name.
    pub fn check_cluster(&self, name: &str) -> Result<(), Error> {
        let (client_usage, names) = &self.cert;
        if !client_usage {
            return Err(Error::Cluster(
                "server.pem lacks the TLS client usage the peer link needs".into(),
            ));
        }
        if !names.iter().any(|n| n == name) {
            return Err(Error::Cluster(format!(
                "cluster.name {name:?} is not a name in server.pem ({names:?})"
            )));
        }
        Ok(())
    }
}

/// The bound listeners, in the order their errors are reported.
struct Ports {
    control: tokio::net::TcpListener,
    monitor: tokio::net::TcpListener,
    metrics: tokio::net::TcpListener,
    /// The peer link's, when peers are listed.
    peer: Option<tokio::net::TcpListener>,
}

impl Ports {
    async fn bind(s: &Settings) -> Result<Ports, Error> {
        async fn one(
            addr: SocketAddr,
            what: &'static str,
        ) -> Result<tokio::net::TcpListener, Error> {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, what, source })
        }
        Ok(Ports {
            control: one(s.control.listen, "control plane, control.listen").await?,
            monitor: one(s.monitor.listen, "monitor service, monitor.listen").await?,
            metrics: one(s.control.metrics_listen, "metrics, control.metrics_listen").await?,
            peer: match s.cluster.peers.is_empty() {
                true => None,
                false => Some(one(s.cluster.listen, "peer link, cluster.listen").await?),
            },
        })
    }
}

/// Opens the capture inputs: each interface live (dropping, never blocking the kernel ring),
/// and the replay (waiting for the engine: nothing of a file is lost).
fn open_inputs(
    settings: &Settings,
    replay: Option<&(PathBuf, ReplayOptions)>,
) -> Result<Vec<Input>, Error> {
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
        let live = ReopeningCapture::open(
            iface,
            LiveOptions {
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

fn span(d: std::time::Duration) -> Span {
    Span::from_nanos(d.as_nanos().min(i64::MAX as u128) as i64)
}

/// The router: the configured agents, StopSMNonACDCall, the cluster name.
fn router(settings: &Settings) -> Router {
    let engine = EngineConfig {
        stream_idle: Some(LIVE_STREAM_IDLE),
        ..EngineConfig::default()
    };
    let mut router = Router::new(
        engine,
        settings.agents.iter().map(|a| a.agent.clone()).collect(),
        Span::from_secs(2),
    );
    router.set_stop_on_non_acd_calls(settings.monitor.stop_sm_non_acd_call);
    if let Some(c) = &settings.cti {
        router.set_cti_endpoint(c.endpoint);
    }
    let name = &settings.cluster.name;
    router.set_name((!name.is_empty()).then(|| name.clone()));
    router
}

/// The control plane's rules from the settings.
fn control_plane(settings: &Settings) -> ControlPlane {
    let heartbeat = settings.control.heartbeat_interval;
    let monitor_service = (!settings.monitor.listen.ip().is_unspecified())
        .then(|| settings.monitor.listen.to_string());
    ControlPlane::new(Directory {
        agents: settings.agents.clone(),
        supervisors: settings.supervisors.clone(),
        monitor_password_hash: settings.control.monitor_mode_password_hash.clone(),
        passwordless: settings.passwordless_logins,
        lockout: settings.control.lockout,
        client_timeout: span(heartbeat * settings.control.heartbeat_retries.max(1)),
        server_heartbeat: span(heartbeat),
        monitor_service,
        limits: SessionLimits {
            login_timeout: span(settings.control.login_timeout),
            max_unauthenticated_per_source: settings.control.max_unauthenticated_per_address,
            max_unauthenticated: settings.control.max_unauthenticated,
            ..SessionLimits::default()
        },
    })
}

/// What the engine thread reported when it stopped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Frames handled.
    pub frames: u64,
    /// RTP packets.
    pub rtp_packets: u64,
    /// Packets handed to monitors.
    pub forwarded: u64,
}

/// A running appliance.
pub struct Appliance {
    /// The control plane's address.
    pub control: SocketAddr,
    /// The monitor service's address.
    pub monitor: SocketAddr,
    /// The metrics endpoint's address.
    pub metrics: SocketAddr,
    /// The capture inputs' names.
    pub inputs: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    engine: EngineThread,
    counters: Arc<EngineMetrics>,
    cti: Option<Arc<CtiStats>>,
}

/// The pieces the servers share.
struct Shared {
    registry: Arc<Registry>,
    control_handle: ControlHandle,
    control_stats: Arc<ControlStats>,
    monitor_stats: Arc<MonitorStats>,
    auditor: Auditor,
}

/// A cluster's pieces the peer tasks and the control plane share, when peers are listed.
struct ClusterParts {
    cluster: Arc<Cluster>,
    view: watch::Receiver<Arc<ClusterView>>,
    demand: watch::Receiver<Arc<Demand>>,
    channels: PeerChannels,
}

/// The cluster's shared pieces, the engine thread's ends and the action handler's demand.
type ClusterStart = (ClusterParts, EnginePeers, DemandBoard);

impl ClusterParts {
    /// The cluster of `settings`, checking that the certificate can serve it.
    fn new(settings: &Settings, tls: Option<&Tls>) -> Result<Option<ClusterStart>, Error> {
        let c = &settings.cluster;
        if c.peers.is_empty() {
            return Ok(None);
        }
        if let Some(t) = tls {
            t.check_cluster(&c.name)?;
        }
        let peers: Vec<(String, String)> = c
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.address.clone()))
            .collect();
        let (cluster, view) = Cluster::new(&c.name, &peers, wall_now());
        let (channels, engine) = peer::channels(peers.iter().map(|p| p.0.clone()).collect());
        let (board, demand) = DemandBoard::new();
        let parts = ClusterParts {
            cluster,
            view,
            demand,
            channels,
        };
        Ok(Some((parts, engine, board)))
    }
}

/// What the peer tasks need from the rest of the appliance.
struct PeerWiring<'a> {
    settings: &'a Settings,
    tls: Option<&'a Tls>,
    listener: tokio::net::TcpListener,
    engine: crossbeam_channel::Sender<Command>,
    fanout: crossbeam_channel::Sender<fanout::FanoutCommand>,
    view: watch::Receiver<Arc<View>>,
    shared: &'a Shared,
}

/// Starts the peer server, one link per peer and the cluster view's ticker.
fn start_peers<F>(
    parts: &ClusterParts,
    w: PeerWiring<'_>,
    stopped: impl Fn() -> F,
) -> Vec<JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let s = w.settings;
    let agents: Arc<HashMap<String, usize>> = Arc::new(
        s.agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.agent.id.clone(), i))
            .collect(),
    );
    let mut tasks = vec![tokio::spawn(peer_server::run(
        w.listener,
        PeerServer {
            tls: w.tls.map(|t| t.peer.0.clone()),
            cluster: parts.cluster.clone(),
            agents: agents.clone(),
            engine: w.engine,
            fanout: w.fanout,
            view: w.view,
            audit: w.shared.auditor.sink(),
            timeout: s.cluster.heartbeat_interval * s.cluster.heartbeat_misses.max(1) + SLACK,
            tos: s.monitor.tos,
            stats: w.shared.monitor_stats.clone(),
            listen: Arc::default(),
        },
        stopped(),
    ))];
    for (i, p) in s.cluster.peers.iter().enumerate() {
        let client = PeerClient {
            index: i as u16,
            name: p.name.clone(),
            address: p.address.clone(),
            me: s.cluster.name.clone(),
            tls: w.tls.map(|t| t.peer.1.clone()),
            cluster: parts.cluster.clone(),
            agents: agents.clone(),
            channels: parts.channels.clone(),
            demand: parts.demand.clone(),
            interval: s.cluster.heartbeat_interval,
            misses: s.cluster.heartbeat_misses,
        };
        tasks.push(tokio::spawn(peer_client::run(client, stopped())));
    }
    let cluster = parts.cluster.clone();
    let stop = stopped();
    tasks.push(tokio::spawn(async move {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => cluster.publish(),
            }
        }
    }));
    tasks
}

/// A serving link is closed after its asking side's heartbeats stop for this long beyond
/// `interval x misses` (its own heartbeats may be in flight).
const SLACK: std::time::Duration = std::time::Duration::from_millis(500);

impl Appliance {
    /// Binds the ports, opens the audit trail and the inputs, and starts everything.
    pub async fn start(
        settings: Settings,
        tls: Option<Tls>,
        replay: Option<(PathBuf, ReplayOptions)>,
    ) -> Result<Appliance, Error> {
        let mut ports = Ports::bind(&settings).await?;
        let addrs = (
            local(&ports.control),
            local(&ports.monitor),
            local(&ports.metrics),
        );
        let (cluster, engine_peers, demand) = match ClusterParts::new(&settings, tls.as_ref())? {
            Some((c, e, d)) => (Some(c), Some(e), Some(d)),
            None => (None, None, None),
        };
        let auditor = Auditor::new(AuditLog::open(&settings.audit_log)?, wall_now);
        let control_stats = Arc::new(ControlStats::default());
        let (control_handle, ended_rx) = control_server::handle(&control_stats);
        let shared = Shared {
            registry: Arc::new(Registry::new()),
            control_handle,
            control_stats,
            monitor_stats: Arc::new(MonitorStats::default()),
            auditor,
        };
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<Command>(COMMAND_QUEUE);
        let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
        let (fanout_tx, fanout_rx) = fanout::commands();
        let counters = Arc::new(EngineMetrics::default());
        let engine = EngineThread::spawn(
            router(&settings),
            open_inputs(&settings, replay.as_ref())?,
            ControlLink {
                commands: cmd_rx,
                view: view_tx,
                control: shared.control_handle.clone(),
                peers: engine_peers,
            },
            Publisher::new(fanout_rx, shared.monitor_stats.clone()),
            counters.clone(),
            wall_now,
        );
        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();
        if let (Some(parts), Some(listener)) = (cluster.as_ref(), ports.peer.take()) {
            let wiring = PeerWiring {
                settings: &settings,
                tls: tls.as_ref(),
                listener,
                engine: cmd_tx.clone(),
                fanout: fanout_tx.clone(),
                view: view_rx.clone(),
                shared: &shared,
            };
            tasks.extend(start_peers(parts, wiring, &stopped));
        }
        let cti_commands = cmd_tx.clone();
        let mut handler = ActionHandler {
            audit: shared.auditor.clone(),
            registry: shared.registry.clone(),
            engine: cmd_tx,
            control: shared.control_handle.clone(),
            certificates: certificates(&settings),
            commands_lost: Arc::new(AtomicU64::new(0)),
            demand,
        };
        tasks.push(tokio::spawn(control_server::run(
            ports.control,
            ControlServer {
                plane: control_plane(&settings),
                tls: tls.as_ref().map(|t| t.control.clone()),
                view: view_rx,
                cluster: cluster.as_ref().map(|c| c.view.clone()),
                actions: Box::new(move |a, peer| handler.handle(a, peer)),
                stats: shared.control_stats.clone(),
                tos: 0x68,
                limits: Limits::default(),
            },
            ended_rx,
            stopped(),
        )));
        tasks.push(tokio::spawn(monitor_service::run(
            ports.monitor,
            MonitorServer {
                tls: tls.as_ref().map(|t| t.monitor.clone()),
                registry: shared.registry.clone(),
                control: shared.control_handle.clone(),
                fanout: fanout_tx,
                heartbeat_interval: settings.monitor.heartbeat_interval,
                heartbeat_timeout: settings.monitor.heartbeat_timeout,
                queue_frames: DEFAULT_QUEUE_FRAMES,
                tos: settings.monitor.tos,
                stats: shared.monitor_stats.clone(),
                audit: shared.auditor.sink(),
            },
            stopped(),
        )));
        let mut extra = vec![metrics::monitor_lines(shared.monitor_stats.clone())];
        let cti = settings.cti.clone().map(|c| {
            let (task, stats) = spawn_cti(c, &settings, &shared, cti_commands, stopped());
            tasks.push(task);
            extra.push(metrics::cti_lines(stats.clone()));
            stats
        });
        if let Some(c) = cluster.as_ref() {
            extra.push(metrics::peer_lines(c.view.clone()));
        }
        tasks.push(tokio::spawn(metrics::serve(
            ports.metrics,
            metrics::Sources {
                inputs: engine.inputs.clone(),
                engine: counters.clone(),
                control: shared.control_stats.clone(),
                extra,
            },
            stopped(),
        )));
        Ok(Appliance {
            control: addrs.0,
            monitor: addrs.1,
            metrics: addrs.2,
            inputs: engine.inputs.iter().map(|(n, _)| n.clone()).collect(),
            stop,
            tasks,
            engine,
            counters,
            cti,
        })
    }

    /// The CTI feed's counters, when `[cti]` is configured.
    pub fn cti_stats(&self) -> Option<&CtiStats> {
        self.cti.as_deref()
    }

    /// Stops the servers, then the engine thread and its captures; returns its counters.
    pub async fn shutdown(self) -> Summary {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.engine.stop();
        let c = &self.counters;
        Summary {
            frames: c.frames.load(Ordering::Relaxed),
            rtp_packets: c.rtp_packets.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
        }
    }
}

/// The CTI client's task, feeding the engine thread (`engine`) and the control plane.
fn spawn_cti(
    cti: crate::config::CtiSettings,
    settings: &Settings,
    shared: &Shared,
    engine: crossbeam_channel::Sender<Command>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> (JoinHandle<()>, Arc<CtiStats>) {
    let stats = Arc::new(CtiStats::default());
    let agents: Vec<(String, String)> = settings
        .agents
        .iter()
        .map(|a| (a.agent.id.clone(), a.agent.extension.clone()))
        .collect();
    let client = CtiClient {
        agents: AgentMatcher::new(cti.agent_field, &agents),
        settings: cti,
        engine,
        control: shared.control_handle.clone(),
        stats: stats.clone(),
    };
    (tokio::spawn(cti_client::run(client, stopped)), stats)
}

fn local(l: &tokio::net::TcpListener) -> SocketAddr {
    l.local_addr().expect("a bound listener has an address")
}

/// Supervisor id -> the name its client certificate carries.
fn certificates(settings: &Settings) -> HashMap<String, String> {
    settings
        .supervisors
        .iter()
        .map(|s| (s.id.clone(), s.certificate.clone()))
        .collect()
}
