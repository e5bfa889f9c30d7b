//! `silentmon supervisor`: the supervisor's desktop endpoint. Logs in to a control plane of the
//! cluster as the supervisor, attaches to the monitor service with the session key of each
//! monitor, and hands the agent's packets to the media loop (jitter buffer, decode, mix, sound
//! card, recording) on its own thread. Desktop tools drive it through the local control port
//! (127.0.0.1:42228, loopback only, no credentials needed): `silentmon ctl --endpoint ...
//! monitor AGENT | stop | status`.
//!
//! Failover as the seed's connection profiles: the control planes are tried in a random order;
//! when the one in use fails, the next is tried (every second, round the list), and the
//! monitor the supervisor wanted is started again there. The network task never waits on the
//! media loop: events go over a bounded channel with `try_send` (media dropped and counted when
//! full; call events held in order until there is room, see `EventSender`).
//! Per packet it allocates nothing: the media loop sends each packet's buffer back on a second
//! bounded channel and the network task hands it to the monitor client for the next packet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::duration::parse_duration;
use crate::config::supervisor::SupervisorSettings;
use crate::control::client::Client;
use crate::control::frame::{self, Frame, DEFAULT_MAX_BODY};
use crate::endpoint::media_loop::{
    run_media, EndpointEvent, EventSender, MediaClock, MediaLoopConfig, MediaReport,
};
use crate::media::listen::Layout;
use crate::monitor::client::{Event as MonitorEvent, MonitorClient};

/// Events queued towards the media loop (about 10 s of a two-way G.711 call).
const MEDIA_QUEUE: usize = 1024;
/// Pause between reconnect attempts.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Arguments of `silentmon supervisor`.
#[derive(Debug, Args)]
pub(crate) struct SupervisorArgs {
    /// Configuration file (default ~/.config/silentmon/supervisor.toml when it exists); the
    /// flags below override its keys.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A control plane of the cluster, HOST:PORT (repeat for each appliance).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// A monitor service, HOST:PORT (repeat; default: the control plane's host, port 42228).
    #[arg(long = "monitor-service", value_name = "HOST:PORT")]
    monitor_services: Vec<String>,
    /// Supervisor id.
    #[arg(long, short)]
    user: Option<String>,
    /// File whose first line is the password (else $SILENTMON_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// CA certificate of the appliances.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate for the monitor service (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Name in the appliances' certificates (default: each address's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Plaintext links (only against appliances running with --insecure).
    #[arg(long)]
    insecure: bool,
    /// Local control address (loopback only).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Record every monitored call as a WAV file in DIR.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Agent on the left channel, caller on the right (default: mono mix).
    #[arg(long)]
    stereo: bool,
    /// Output device: a name from --list-devices (the first column, or the description;
    /// default: the system's default output).
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// The output device's period in ms (default: the device's, about 10 ms through
    /// PulseAudio); two periods are queued in the device, so a longer one absorbs stalls of a
    /// loaded desktop or VM (gaps in the sound) at that much latency.
    #[arg(long, value_name = "MS")]
    device_period_ms: Option<u32>,
    /// List the output devices and exit.
    #[arg(long)]
    list_devices: bool,
    /// Volume, 1.0 = as captured.
    #[arg(long)]
    volume: Option<f32>,
    /// Start monitoring this agent right away.
    #[arg(long, value_name = "AGENT")]
    monitor: Option<String>,
    /// Stop after this long (tests; default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    run_for: Option<Duration>,
}

pub(crate) fn run(args: SupervisorArgs) -> Result<ExitCode> {
    if args.list_devices {
        let devices = crate::endpoint::playout::list_devices();
        if devices.is_empty() {
            println!("no output device found");
        }
        // The name `--device` takes, then what it is; the default output is starred.
        let width = devices.iter().map(|d| d.id.len()).max().unwrap_or(0);
        for d in devices {
            let mark = if d.default { '*' } else { ' ' };
            println!("{mark} {:width$}  {}", d.id, d.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let settings = settings(&args)?;
    if let Some(name) = &settings.device {
        if !crate::endpoint::playout::has_device(name) {
            // Not fatal: a headset plugged in later is picked up by the reopen every second.
            let devices = crate::endpoint::playout::list_devices();
            let names: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
            tracing::warn!(
                device = %name,
                available = %names.join(", "),
                "no output device by this name now (see --list-devices); trying every second"
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("silentmon-endpoint")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let limit = args.run_for;
    let report = rt.block_on(run_endpoint(settings, super::wait_for_stop(limit)))?;
    eprintln!("silentmon supervisor: {}", summary(&report));
    Ok(ExitCode::SUCCESS)
}

/// One line about what was heard.
pub(crate) fn summary(r: &MediaReport) -> String {
    let s = &r.session;
    format!(
        "{} packets received, {} decoded, {} late, {} lost; device: {}",
        s.packets,
        s.decoded,
        s.late,
        s.lost,
        match (&r.device, &r.playout) {
            (Some((rate, ch)), Some(p)) => format!(
                "{rate} Hz x {ch}, {} frames played, {} underruns",
                p.frames_played, p.underruns
            ),
            _ => "none open".into(),
        }
    )
}

/// The configuration file (if any) with the flags on top.
fn settings(a: &SupervisorArgs) -> Result<SupervisorSettings> {
    let mut s = match &a.config {
        Some(p) => SupervisorSettings::load(p)?,
        None => {
            let default = std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".config/silentmon/supervisor.toml"));
            match default.filter(|p| p.exists()) {
                Some(p) => SupervisorSettings::load(&p)?,
                None => SupervisorSettings::default(),
            }
        }
    };
    if !a.servers.is_empty() {
        s.servers = a.servers.clone();
    }
    if !a.monitor_services.is_empty() {
        s.monitor_services = a.monitor_services.clone();
    }
    macro_rules! take {
        ($field:ident) => {
            if let Some(v) = &a.$field {
                s.$field = v.clone().into();
            }
        };
    }
    take!(password_file);
    take!(cert);
    take!(key);
    take!(server_name);
    take!(record);
    take!(device);
    take!(monitor);
    if let Some(u) = &a.user {
        s.user = u.clone();
    }
    if let Some(c) = &a.ca {
        s.ca = c.clone();
    }
    if let Some(l) = a.listen {
        if !l.ip().is_loopback() {
            bail!("--listen {l}: local control must be on a loopback address");
        }
        s.listen = l;
    }
    if let Some(ms) = a.device_period_ms {
        crate::config::supervisor::check_device_period(ms)
            .map_err(|problem| anyhow::anyhow!("--device-period-ms: {problem}"))?;
        s.device_period_ms = Some(ms);
    }
    if let Some(v) = a.volume {
        if !(0.0..=4.0).contains(&v) {
            bail!("--volume {v} is not within 0..=4");
        }
        s.volume = v;
    }
    s.stereo |= a.stereo;
    s.insecure |= a.insecure;
    if s.servers.is_empty() {
        bail!("no appliance: give --server HOST:42028 (or `servers` in the configuration)");
    }
    if s.user.is_empty() {
        bail!("no supervisor: give --user ID (or `user` in the configuration)");
    }
    if !s.insecure && s.cert.is_none() {
        bail!(
            "the monitor service requires a client certificate: give --cert FILE --key FILE \
             (made with `silentmon certs request` and `certs sign --client`)"
        );
    }
    Ok(s)
}

/// TLS client configurations: control plane (server authentication) and monitor service
/// (mutual).
struct Tls {
    control: Arc<rustls::ClientConfig>,
    monitor: Arc<rustls::ClientConfig>,
}

fn tls(s: &SupervisorSettings) -> Result<Option<Tls>> {
    if s.insecure {
        return Ok(None);
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca = read(&s.ca)?;
    let (cert, key) = match (&s.cert, &s.key) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        _ => bail!("a client certificate and key are needed for the monitor service"),
    };
    Ok(Some(Tls {
        control: crate::security::tls::client_config(&ca, None)
            .with_context(|| format!("CA certificate {}", s.ca.display()))?,
        monitor: crate::security::tls::client_config(&ca, Some((&cert, &key)))
            .context("client certificate and key")?,
    }))
}

/// A request from the local control port, with where to send the answer.
struct LocalRequest {
    frame: Frame,
    reply: oneshot::Sender<Frame>,
}

/// What the endpoint is doing.
#[derive(Default)]
struct Current {
    /// The agent the supervisor asked for (kept through failovers).
    wanted: Option<String>,
    /// The running monitor: id, agent.
    monitor: Option<(u64, Arc<str>)>,
    /// The call the agent is on.
    call: Option<String>,
}

struct Endpoint {
    settings: SupervisorSettings,
    tls: Option<Tls>,
    password: Option<String>,
    /// Control planes in the order they are tried.
    servers: Vec<String>,
    next_server: usize,
    control: Option<(Client, String)>,
    monitor: Option<(MonitorClient, String)>,
    current: Current,
    media: EventSender,
    /// Media buffers the media loop is done with, for the monitor client to reuse.
    spent: crossbeam_channel::Receiver<Vec<u8>>,
    clock: MediaClock,
    dropped: Arc<AtomicU64>,
    report: Arc<Mutex<MediaReport>>,
}

/// Runs the endpoint until `shutdown`; returns the media loop's final report.
pub(crate) async fn run_endpoint(
    settings: SupervisorSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<MediaReport> {
    let tls = tls(&settings)?;
    let password = super::read_password(settings.password_file.as_deref())?;
    if let Some(dir) = &settings.record {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the recording directory {}", dir.display()))?;
    }
    let local = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (local control)", settings.listen))?;
    let mut servers = settings.servers.clone();
    shuffle(&mut servers);

    // The media loop on its own thread.
    let (media_tx, media_rx) = crossbeam_channel::bounded(MEDIA_QUEUE);
    let (spent_tx, spent_rx) = crossbeam_channel::bounded(MEDIA_QUEUE);
    let clock = MediaClock::new();
    let report = Arc::new(Mutex::new(MediaReport::default()));
    let mut cfg = MediaLoopConfig {
        device: settings.device.clone(),
        device_period: settings
            .device_period_ms
            .map(|ms| Duration::from_millis(ms.into())),
        record_dir: settings.record.clone(),
        ..MediaLoopConfig::default()
    };
    cfg.session.listen.layout = if settings.stereo {
        Layout::Stereo
    } else {
        Layout::Mono
    };
    cfg.session.listen.volume = settings.volume;
    let media_thread = {
        let report = report.clone();
        std::thread::Builder::new()
            .name("media".into())
            .spawn(move || run_media(&cfg, clock, &media_rx, Some(&spent_tx), Some(&report)))
            .context("starting the media thread")?
    };

    let (local_tx, mut local_rx) = mpsc::channel::<LocalRequest>(64);
    let accept = tokio::spawn(serve_local(local, local_tx));
    let mut ep = Endpoint {
        settings,
        tls,
        password,
        servers,
        next_server: 0,
        control: None,
        monitor: None,
        current: Current::default(),
        media: EventSender::new(media_tx),
        spent: spent_rx,
        clock,
        dropped: Arc::new(AtomicU64::new(0)),
        report,
    };
    ep.current.wanted = ep.settings.monitor.clone();
    eprintln!(
        "silentmon supervisor {}: appliances {}, local control on {}{}",
        ep.settings.user,
        ep.servers.join(", "),
        ep.settings.listen,
        ep.settings
            .record
            .as_ref()
            .map(|d| format!(", recording to {}", d.display()))
            .unwrap_or_default()
    );
    tokio::pin!(shutdown);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(req) = local_rx.recv() => {
                let answer = ep.local(&req.frame).await;
                let _ = req.reply.send(answer);
            }
            ev = next_control(&mut ep.control) => ep.on_control(ev).await,
            ev = next_monitor(&mut ep.monitor) => ep.on_monitor(ev).await,
            _ = retry.tick() => ep.upkeep().await,
        }
    }
    // Stop cleanly: the appliance ends the monitor when the session closes; the media loop
    // finalises the recording.
    ep.end_call();
    ep.media.finish(EndpointEvent::Stopped);
    accept.abort();
    drop(ep);
    let report = tokio::task::spawn_blocking(move || media_thread.join())
        .await
        .context("joining the media thread")?
        .map_err(|_| anyhow::anyhow!("the media thread panicked"))?;
    Ok(report)
}

async fn next_control(c: &mut Option<(Client, String)>) -> Result<Frame, String> {
    match c {
        Some((client, _)) => client.next_event().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

async fn next_monitor(m: &mut Option<(MonitorClient, String)>) -> Result<MonitorEvent, String> {
    match m {
        Some((client, _)) => client.next_event().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

/// A random order (the seed picks a random appliance of the profile first).
fn shuffle(v: &mut [String]) {
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        let j = u32::from_le_bytes(b) as usize % (i + 1);
        v.swap(i, j);
    }
}

impl Endpoint {
    /// Connects (to the next control plane of the list) and logs in, if not connected.
    async fn ensure_control(&mut self) -> Result<(), String> {
        if self.control.is_some() {
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..self.servers.len() {
            let addr = self.servers[self.next_server % self.servers.len()].clone();
            match self.login(&addr).await {
                Ok(c) => {
                    tracing::info!(server = %addr, "control plane connected");
                    self.control = Some((c, addr));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(server = %addr, error = %e, "control plane unreachable");
                    last = e;
                    self.next_server += 1;
                }
            }
        }
        Err(last)
    }

    /// The name the appliance at `addr` must have in its certificate.
    fn server_name(&self, addr: &str) -> String {
        self.settings
            .server_name
            .clone()
            .unwrap_or_else(|| super::host_of(addr))
    }

    async fn login(&self, addr: &str) -> Result<Client, String> {
        let name = self.server_name(addr);
        let tls = self
            .tls
            .as_ref()
            .map(|t| (t.control.clone(), name.as_str()));
        let mut c = Client::connect(addr, tls)
            .await
            .map_err(|e| e.to_string())?;
        let mut f = Frame::new("Login")
            .with("mode", "supervisor")
            .with("id", self.settings.user.clone());
        if let Some(p) = &self.password {
            f = f.with("password", p.clone());
        }
        let r = c
            .request(&f, "LoginReply", |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if r.str("result") != Some("ok") {
            return Err(format!(
                "login refused: {}",
                r.str("reason").unwrap_or("no reason")
            ));
        }
        Ok(c)
    }

    /// The monitor service to use with the control plane at `server`.
    fn monitor_service(&self, server: &str, told: Option<&str>) -> String {
        if !self.settings.monitor_services.is_empty() {
            let i = self
                .settings
                .servers
                .iter()
                .position(|s| s == server)
                .unwrap_or(0);
            return self.settings.monitor_services[i % self.settings.monitor_services.len()]
                .clone();
        }
        match told {
            Some(t) => t.to_owned(),
            None => format!("{}:42228", super::host_of(server)),
        }
    }

    async fn ensure_monitor(&mut self, addr: &str) -> Result<(), String> {
        if self.monitor.as_ref().is_some_and(|(_, a)| a == addr) {
            return Ok(());
        }
        let name = self.server_name(addr);
        let tls = self
            .tls
            .as_ref()
            .map(|t| (t.monitor.clone(), name.as_str()));
        let c = MonitorClient::connect(addr, tls)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(monitor_service = %addr, "monitor service connected");
        self.monitor = Some((c, addr.to_owned()));
        Ok(())
    }

    /// Starts monitoring `agent`; a monitor of another agent stops once the new one is
    /// granted (a refusal leaves it running).
    async fn start(&mut self, agent: &str) -> Result<Value, String> {
        if let Some((_, a)) = &self.current.monitor {
            if &**a == agent {
                return Ok(json!({"result": "ok", "agent": agent, "already": true}));
            }
        }
        self.ensure_control().await?;
        let (client, server) = self.control.as_mut().expect("connected above");
        let server = server.clone();
        let r = client
            .request(
                &Frame::new("StartSilentMonitor").with("agent", agent),
                "StartSilentMonitorReply",
                |_| {},
            )
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.control = None;
                return Err(e.to_string());
            }
        };
        if r.str("result") != Some("ok") {
            return Err(r.str("reason").unwrap_or("refused").to_owned());
        }
        if self.current.monitor.is_some() {
            self.stop().await?;
        }
        self.current.wanted = Some(agent.to_owned());
        let key = r.str("key").unwrap_or_default().to_owned();
        let service = self.monitor_service(&server, r.str("monitor_service"));
        if let Err(e) = self.ensure_monitor(&service).await {
            self.abandon(agent).await;
            return Err(format!("monitor service {service}: {e}"));
        }
        let (mc, _) = self.monitor.as_mut().expect("connected above");
        match mc.attach(&key).await {
            Ok(a) => {
                tracing::info!(agent, monitor = a.monitor, "monitoring");
                self.current.monitor = Some((a.monitor, Arc::from(agent)));
                Ok(json!({"result": "ok", "agent": agent, "monitor": a.monitor,
                          "server": server, "monitor_service": service}))
            }
            Err(e) => {
                self.monitor = None;
                self.abandon(agent).await;
                Err(format!("monitor service {service}: {e}"))
            }
        }
    }

    /// A monitor was granted but could not be attached: stop it at the control plane, so the
    /// retry is not refused as "already monitoring".
    async fn abandon(&mut self, agent: &str) {
        if let Some((c, _)) = self.control.as_mut() {
            let f = Frame::new("StopSilentMonitor").with("agent", agent);
            if c.request(&f, "StopSilentMonitorReply", |_| {})
                .await
                .is_err()
            {
                self.control = None;
            }
        }
    }

    /// Stops the running monitor.
    async fn stop(&mut self) -> Result<(), String> {
        self.current.wanted = None;
        let Some((_, agent)) = self.current.monitor.take() else {
            return Ok(());
        };
        self.end_call();
        if let Some((c, _)) = self.control.as_mut() {
            let r = c
                .request(
                    &Frame::new("StopSilentMonitor").with("agent", &*agent),
                    "StopSilentMonitorReply",
                    |_| {},
                )
                .await;
            if r.is_err() {
                self.control = None;
            }
        }
        Ok(())
    }

    /// Gives a media buffer back to the monitor client (freed when there is none).
    fn recycle(&mut self, rtp: Vec<u8>) {
        if let Some((client, _)) = self.monitor.as_mut() {
            client.recycle(rtp);
        }
    }

    /// The current call is over for the media loop (finalises its recording).
    fn end_call(&mut self) {
        if let Some(call_id) = self.current.call.take() {
            self.media.control(EndpointEvent::CallEnded { call_id });
        }
    }

    /// Retries what failed: the control plane, then the wanted monitor.
    async fn upkeep(&mut self) {
        self.media.flush();
        if self.current.monitor.is_some() {
            return;
        }
        let Some(agent) = self.current.wanted.clone() else {
            return;
        };
        if let Err(e) = self.start(&agent).await {
            tracing::warn!(agent, error = %e, "monitor not running; retrying");
            self.current.wanted = Some(agent);
        }
    }

    async fn on_control(&mut self, ev: Result<Frame, String>) {
        let f = match ev {
            Ok(f) => f,
            Err(e) => {
                let server = self.control.take().map(|c| c.1).unwrap_or_default();
                tracing::warn!(server, error = %e, "control plane lost; trying the next");
                self.next_server += 1;
                // The appliance ends the monitor with the session; start it again elsewhere.
                if self.current.monitor.take().is_some() {
                    self.end_call();
                }
                return;
            }
        };
        if f.msg == "SilentMonitorStopped" {
            let id = f.u64("monitor");
            if self.current.monitor.as_ref().map(|m| m.0) == id {
                let reason = f.str("reason").unwrap_or("").to_owned();
                tracing::info!(reason, "monitor stopped by the appliance");
                self.current.monitor = None;
                self.end_call();
                // The agent left: do not chase it. Anything else (endpoint trouble) restarts.
                if reason.contains("logged out") || reason.contains("stopped by") {
                    self.current.wanted = None;
                }
            }
        }
    }

    async fn on_monitor(&mut self, ev: Result<MonitorEvent, String>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let service = self.monitor.take().map(|m| m.1).unwrap_or_default();
                tracing::warn!(service, error = %e, "monitor service lost");
                if self.current.monitor.take().is_some() {
                    self.end_call();
                }
                return;
            }
        };
        let Some((id, agent)) = self.current.monitor.clone() else {
            if let MonitorEvent::Media { rtp, .. } = ev {
                self.recycle(rtp);
            }
            return;
        };
        match ev {
            MonitorEvent::Media {
                monitor,
                direction,
                rtp,
                ..
            } if monitor == id => {
                let arrival = self.clock.now();
                let ev = EndpointEvent::Media {
                    arrival,
                    agent,
                    direction,
                    rtp,
                };
                if let Some(refused) = self.media.media(ev) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    if let EndpointEvent::Media { rtp, .. } = refused {
                        self.recycle(rtp);
                    }
                }
                while let Ok(rtp) = self.spent.try_recv() {
                    self.recycle(rtp);
                }
            }
            MonitorEvent::Call {
                monitor,
                call_id,
                payloads,
                started,
            } if monitor == id && self.current.call.as_deref() != Some(call_id.as_str()) => {
                self.current.call = Some(call_id.clone());
                self.media.control(EndpointEvent::Call {
                    agent,
                    call_id,
                    payloads,
                    started,
                });
            }
            MonitorEvent::CallEnded { monitor, call_id }
                if monitor == id && self.current.call.as_deref() == Some(call_id.as_str()) =>
            {
                self.end_call();
            }
            // A call set aside (held for a consult) ended: the media loop forgets it.
            MonitorEvent::CallEnded { monitor, call_id } if monitor == id => {
                self.media.control(EndpointEvent::CallEnded { call_id });
            }
            MonitorEvent::Stopped { monitor, reason } if monitor == id => {
                tracing::info!(reason, "monitor service stopped the monitor");
                self.current.monitor = None;
                self.end_call();
            }
            MonitorEvent::Error { reason } => {
                tracing::warn!(reason, "monitor service refused a request");
            }
            MonitorEvent::Media { rtp, .. } => self.recycle(rtp),
            _ => {}
        }
    }

    /// Answers a local control request.
    async fn local(&mut self, f: &Frame) -> Frame {
        match f.msg.as_str() {
            "Monitor" => {
                let Some(agent) = f.str("agent") else {
                    return refused("MonitorReply", "give an agent");
                };
                match self.start(agent).await {
                    Ok(v) => reply("MonitorReply", v),
                    Err(e) => refused("MonitorReply", &e),
                }
            }
            "Stop" => match self.stop().await {
                Ok(()) => Frame::new("StopReply").with("result", "ok"),
                Err(e) => refused("StopReply", &e),
            },
            "Status" => {
                let media = self.report.lock().map(|r| r.clone()).unwrap_or_default();
                let s = &media.session;
                reply(
                    "StatusReply",
                    json!({
                        "result": "ok",
                        "user": self.settings.user,
                        "server": self.control.as_ref().map(|c| c.1.clone()),
                        "monitor_service": self.monitor.as_ref().map(|m| m.1.clone()),
                        "agent": self.current.monitor.as_ref().map(|m| m.1.to_string())
                            .or_else(|| self.current.wanted.clone()),
                        "monitor": self.current.monitor.as_ref().map(|m| m.0),
                        "monitoring": self.current.monitor.is_some(),
                        "call_id": self.current.call,
                        "packets": s.packets,
                        "decoded": s.decoded,
                        "late": s.late,
                        "lost": s.lost,
                        "dropped_before_media": self.dropped.load(Ordering::Relaxed),
                        "device": media.device.map(|(r, c)| format!("{r} Hz x {c}")),
                        "frames_played": media.playout.map(|p| p.frames_played),
                        "underruns": media.playout.map(|p| p.underruns),
                        "summary": summary(&media),
                    }),
                )
            }
            other => refused(
                &format!("{other}Reply"),
                "unknown request (Monitor, Stop, Status)",
            ),
        }
    }
}

fn refused(msg: &str, reason: &str) -> Frame {
    Frame::new(msg)
        .with("result", "refused")
        .with("reason", reason)
}

fn reply(msg: &str, v: Value) -> Frame {
    let mut f = Frame::new(msg);
    if let Value::Object(m) = v {
        for (k, v) in m {
            f.fields.insert(k, v);
        }
    }
    f
}

/// Accepts local control connections (loopback) and passes their requests on.
async fn serve_local(listener: tokio::net::TcpListener, to: mpsc::Sender<LocalRequest>) {
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let to = to.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                let f = loop {
                    match frame::parse(&buf, DEFAULT_MAX_BODY) {
                        Ok((f, len)) => {
                            buf.drain(..len);
                            break Some(f);
                        }
                        Err(frame::Error::Incomplete) => {}
                        Err(e) => {
                            let mut out = Vec::new();
                            refused("ProtocolError", &e.to_string()).encode(&mut out);
                            let _ = sock.write_all(&out).await;
                            break None;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let Some(f) = f else { return };
                let (tx, rx) = oneshot::channel();
                if to
                    .send(LocalRequest {
                        frame: f,
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(answer) = rx.await else { return };
                let mut out = Vec::new();
                answer.encode(&mut out);
                if sock.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}
