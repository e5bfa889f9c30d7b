//! The supervisor endpoint's I/O shell: connects to the control plane (logging in) and to the
//! monitor service (attaching with a monitor's session key), runs the media loop on its own
//! thread, serves the local control port, and carries out what the [`Controller`] decides. It
//! decides nothing itself: which appliance, whether to restart, what an event means are the
//! controller's.
//!
//! Rules: the network task never waits on the media loop: events go over a bounded channel
//! with `try_send` (media dropped and counted when full; call notices held in order until
//! there is room, see `EventSender`). Per packet nothing is allocated: the media loop sends
//! each packet's buffer back on a second bounded channel ([`MEDIA_QUEUE`]) and the monitor
//! client reuses it. One request at a time is in flight to the control plane.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::controller::{Controller, EndpointError, MediaNotice, Route, StartPlan};
use super::desk::Desk;
use super::local::{self, Asked, Link, LinkState, LocalReply, LocalRequest, Monitoring, Status};
use super::media_loop::{
    run_media, EndpointEvent, EventSender, MediaClock, MediaLoopConfig, MediaReport,
};
use super::page::Page;
use crate::config::supervisor::SupervisorSettings;
use crate::control::client::{Client, Error as ClientError};
use crate::control::frame::Frame;
use crate::control::reply::{Event, Grant, Reply};
use crate::control::request::{Login, Mode, Request, StopTarget};
use crate::media::listen::Layout;
use crate::monitor::service_client::{Event as ServiceEvent, MonitorClient};
use crate::time::Span;

/// Events queued towards the media loop (about 10 s of a two-way G.711 call).
pub const MEDIA_QUEUE: usize = 1024;
/// How often the shell retries what failed and flushes held notices (and refreshes the
/// page's lists while a page is open).
const TICK: Duration = Duration::from_secs(1);
/// How often an open page gets the meters and counters.
const PAGE_TICK: Duration = Duration::from_millis(200);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS files did not make a configuration.
    #[error("{what}: {source}")]
    Tls {
        /// Which files.
        what: String,
        /// Cause.
        source: crate::security::tls::Error,
    },
    /// A monitor-service client certificate is needed.
    #[error("a client certificate and key are needed for the monitor service")]
    NoClientCertificate,
    /// The recording directory could not be made.
    #[error("cannot create the recording directory {path}: {source}")]
    RecordDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The local control port could not be bound.
    #[error("cannot listen on {addr} (local control): {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The media thread could not be started or panicked.
    #[error("the media thread: {0}")]
    MediaThread(String),
}

/// TLS client configurations: control plane (server authentication) and monitor service
/// (mutual).
pub struct EndpointTls {
    control: Arc<rustls::ClientConfig>,
    monitor: Arc<rustls::ClientConfig>,
}

impl EndpointTls {
    /// From the settings' CA, certificate and key files (None: plaintext, `insecure`).
    pub fn load(s: &SupervisorSettings) -> Result<Option<EndpointTls>, StartError> {
        if s.insecure {
            return Ok(None);
        }
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| StartError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let ca = read(&s.ca)?;
        let (cert, key) = match (&s.cert, &s.key) {
            (Some(c), Some(k)) => (read(c)?, read(k)?),
            _ => return Err(StartError::NoClientCertificate),
        };
        let tls = |what: String, r: Result<_, crate::security::tls::Error>| {
            r.map_err(|source| StartError::Tls { what, source })
        };
        Ok(Some(EndpointTls {
            control: tls(
                format!("CA certificate {}", s.ca.display()),
                crate::security::tls::client_config(&ca, None),
            )?,
            monitor: tls(
                "client certificate and key".into(),
                crate::security::tls::client_config(&ca, Some((&cert, &key))),
            )?,
        }))
    }
}

/// The endpoint's links and the controller.
struct Shell {
    settings: SupervisorSettings,
    tls: Option<EndpointTls>,
    password: Option<String>,
    controller: Controller,
    control: Option<Client>,
    monitor: Option<MonitorClient>,
    media: EventSender,
    spent: crossbeam_channel::Receiver<Vec<u8>>,
    clock: MediaClock,
    dropped: Arc<AtomicU64>,
    report: Arc<Mutex<MediaReport>>,
    /// What the page shows, and where its snapshots go.
    desk: Desk,
    page: tokio::sync::watch::Sender<Arc<str>>,
    /// The link to the appliances and the last refusal, for the page and `status`.
    link: Link,
    error: Option<String>,
    page_url: String,
}

/// Runs the endpoint with `settings` (logging in with `password`) until `shutdown`; the
/// cluster list is tried in a random order, as the seed's connection profiles do. Returns the
/// media loop's final report.
pub async fn run(
    settings: SupervisorSettings,
    password: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<MediaReport, StartError> {
    run_with_page(settings, password, false, shutdown).await
}

/// [`run`], opening the supervisor's page in the desktop's browser when `open_page`.
pub async fn run_with_page(
    settings: SupervisorSettings,
    password: Option<String>,
    open_page: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<MediaReport, StartError> {
    let mut servers = settings.servers.clone();
    shuffle(&mut servers);
    let tls = EndpointTls::load(&settings)?;
    if let Some(dir) = &settings.record {
        std::fs::create_dir_all(dir).map_err(|source| StartError::RecordDir {
            path: dir.clone(),
            source,
        })?;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: settings.listen,
            source,
        })?;
    let (media_tx, media_rx) = crossbeam_channel::bounded(MEDIA_QUEUE);
    let (spent_tx, spent_rx) = crossbeam_channel::bounded(MEDIA_QUEUE);
    let clock = MediaClock::new();
    let report = Arc::new(Mutex::new(MediaReport::default()));
    let cfg = media_config(&settings);
    let media_thread = {
        let report = report.clone();
        std::thread::Builder::new()
            .name("media".into())
            .spawn(move || run_media(&cfg, clock, &media_rx, Some(&spent_tx), Some(&report)))
            .map_err(|e| StartError::MediaThread(e.to_string()))?
    };
    let (local_tx, mut local_rx) = mpsc::channel::<Asked>(local::LOCAL_QUEUE);
    let (page_tx, page_rx) = tokio::sync::watch::channel(Arc::<str>::from("{}"));
    let page = Arc::new(Page {
        token: super::page::new_token(),
        port: settings.listen.port(),
        state: page_rx,
        asked: local_tx.clone(),
        record_dir: settings.record.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(super::page::MAX_CONNECTIONS)),
    });
    let url = page.url();
    let accept = tokio::spawn(local::serve(listener, local_tx, Some(page)));
    let devices = tokio::task::spawn_blocking(|| {
        super::playout::list_devices()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<String>>()
    });
    let mut controller = Controller::new(
        servers,
        settings.servers.clone(),
        settings.monitor_services.clone(),
    );
    controller.want(settings.monitor.clone());
    let mut sh = Shell {
        settings,
        tls,
        password,
        controller,
        control: None,
        monitor: None,
        media: EventSender::new(media_tx),
        spent: spent_rx,
        clock,
        dropped: Arc::new(AtomicU64::new(0)),
        report,
        desk: Desk::default(),
        page: page_tx,
        link: Link::default(),
        error: None,
        page_url: url.clone(),
    };
    sh.desk.can_record = sh.settings.record.is_some();
    sh.desk.devices = devices.await.unwrap_or_default();
    sh.announce(&url);
    if open_page {
        open_in_browser(&url);
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut page_tick = tokio::time::interval(PAGE_TICK);
    page_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(asked) = local_rx.recv() => {
                let answer = sh.local(asked.request).await;
                let _ = asked.answer.send(answer);
                sh.publish();
            }
            ev = next_control(&mut sh.control) => sh.on_control(ev),
            ev = next_service(&mut sh.monitor) => sh.on_service(ev),
            _ = tick.tick() => sh.upkeep().await,
            _ = page_tick.tick() => sh.publish(),
        }
    }
    // Stop cleanly: the appliance ends the monitor when the session closes; the media loop
    // finalises the recording.
    let (_, notices) = sh.controller.stop();
    sh.notify(notices);
    sh.media.finish(EndpointEvent::Stopped);
    accept.abort();
    drop(sh);
    tokio::task::spawn_blocking(move || media_thread.join())
        .await
        .map_err(|e| StartError::MediaThread(e.to_string()))?
        .map_err(|_| StartError::MediaThread("it panicked".into()))
}

/// Opens `url` with the desktop's opener (xdg-open); a failure is logged, not fatal.
pub fn open_in_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => tracing::info!("opening the page in the browser"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a browser (xdg-open); open the URL by hand")
        }
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

/// The media loop's configuration from the settings.
fn media_config(s: &SupervisorSettings) -> MediaLoopConfig {
    let mut cfg = MediaLoopConfig {
        device: s.device.clone(),
        device_period: (s.device_period_ms > 0)
            .then(|| Duration::from_millis(s.device_period_ms.into())),
        record_dir: s.record.clone(),
        ..MediaLoopConfig::default()
    };
    cfg.session.listen.layout = if s.stereo {
        Layout::Stereo
    } else {
        Layout::Mono
    };
    cfg.session.listen.volume = s.volume;
    cfg.session.listen.mute_dtmf = s.mute_dtmf;
    if let Some(ms) = s.cushion_ms {
        cfg.session.lead = Span::from_millis(i64::from(ms));
        cfg.max_queue = Duration::from_millis(u64::from(ms) + 100);
    }
    cfg
}

async fn next_control(c: &mut Option<Client>) -> Result<Frame, String> {
    match c {
        Some(client) => client.next_event().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

async fn next_service(m: &mut Option<MonitorClient>) -> Result<ServiceEvent, String> {
    match m {
        Some(client) => client.next_event().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

/// Device frames at `rate` in ms.
fn frames_to_ms(frames: u64, rate: u32) -> u32 {
    (frames * 1000 / u64::from(rate.max(1))).min(u64::from(u32::MAX)) as u32
}

/// One line about what was heard.
pub fn summary(r: &MediaReport) -> String {
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

impl Shell {
    fn announce(&self, url: &str) {
        let s = &self.settings;
        eprintln!(
            "silentmon supervisor {}: appliances {}, local control on {}{}\nthe supervisor's page: {url}",
            s.user,
            self.controller.servers_to_try().join(", "),
            s.listen,
            s.record
                .as_ref()
                .map(|d| format!(", recording to {}", d.display()))
                .unwrap_or_default()
        );
    }

    /// Publishes the page's snapshot when a page is open (an event stream: `/api/state`
    /// alone gets the one [`Shell::upkeep`] publishes every second).
    fn publish(&mut self) {
        if self.page.receiver_count() <= 1 {
            return;
        }
        self.publish_now();
    }

    fn publish_now(&mut self) {
        let status = self.status();
        self.desk
            .set_monitored(status.agent.as_deref().filter(|_| status.monitoring));
        let Ok(json) = serde_json::to_string(&self.desk.view(&status)) else {
            return;
        };
        if *self.page.borrow().as_ref() != *json {
            self.page.send_replace(Arc::from(json));
        }
    }

    /// The control plane's lists for the page (while one is open).
    async fn refresh_desk(&mut self) {
        if self.page.receiver_count() <= 1 || self.control.is_none() {
            return;
        }
        let now = crate::clock::wall_now().as_secs_f64();
        if let Ok(Reply::AgentList(list)) = self.ask(Request::ListAgents).await {
            self.desk.set_agents(now, list);
        }
        if let Ok(Reply::CallList(calls)) = self.ask(Request::ListCalls).await {
            self.desk.set_calls(&calls);
        }
        let monitored = self.controller.running().map(|r| r.agent.to_string());
        match monitored {
            Some(agent) => {
                if let Ok(Reply::FlowList(flows)) = self.ask(Request::ListFlows).await {
                    self.desk.set_flows(now, Some(&agent), &flows);
                }
            }
            None => self.desk.set_flows(now, None, &[]),
        }
        self.publish();
    }

    /// The link's state changed: recorded for the page and published at once.
    fn set_link(&mut self, state: LinkState, trying: Option<&str>, error: Option<String>) {
        self.link.state = state;
        self.link.server = (state == LinkState::Connected)
            .then(|| self.controller.control().map(str::to_owned))
            .flatten();
        self.link.trying = trying.map(str::to_owned);
        if error.is_some() || state == LinkState::Connected {
            self.link.error = error;
        }
        self.publish();
    }

    fn now(&self) -> crate::time::Timestamp {
        self.clock.now()
    }

    /// Hands the controller's notices to the media loop.
    fn notify(&mut self, notices: Vec<MediaNotice>) {
        for n in notices {
            self.media.control(match n {
                MediaNotice::Call {
                    agent,
                    call_id,
                    payloads,
                    started,
                } => EndpointEvent::Call {
                    agent,
                    call_id,
                    payloads,
                    started,
                },
                MediaNotice::CallEnded { call_id } => EndpointEvent::CallEnded { call_id },
            });
        }
    }

    /// The name the appliance at `addr` must have in its certificate.
    fn server_name(&self, addr: &str) -> String {
        self.settings
            .server_name
            .clone()
            .unwrap_or_else(|| crate::config::host_of(addr))
    }

    /// Connects (to the appliances in the controller's order) and logs in, if not connected.
    async fn ensure_control(&mut self) -> Result<(), EndpointError> {
        if self.control.is_some() {
            return Ok(());
        }
        let mut last = EndpointError::ControlUnreachable {
            server: String::new(),
            cause: "no appliance configured".into(),
        };
        for server in self.controller.servers_to_try() {
            self.set_link(LinkState::Connecting, Some(&server), None);
            match self.login(&server).await {
                Ok(c) => {
                    tracing::info!(server = %server, "control plane connected");
                    self.control = Some(c);
                    self.controller.control_up(&server);
                    self.set_link(LinkState::Connected, None, None);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(server = %server, error = %e, "control plane unreachable");
                    self.controller.control_unreachable(&server);
                    self.link.error = Some(e.to_string());
                    last = e;
                }
            }
        }
        let state = match last {
            EndpointError::LoginRefused { .. } => LinkState::LoginRefused,
            _ => LinkState::Unreachable,
        };
        let trying = self.link.trying.clone();
        self.set_link(state, trying.as_deref(), Some(last.to_string()));
        Err(last)
    }

    async fn login(&self, server: &str) -> Result<Client, EndpointError> {
        let name = self.server_name(server);
        let tls = self
            .tls
            .as_ref()
            .map(|t| (t.control.clone(), name.as_str()));
        let unreachable = |cause: String| EndpointError::ControlUnreachable {
            server: server.to_owned(),
            cause,
        };
        let mut c = Client::connect(server, tls)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let login = Request::Login(Login {
            mode: Mode::Supervisor,
            id: self.settings.user.clone(),
            password: self.password.clone().unwrap_or_default(),
            instrument: None,
        });
        let r = c
            .call(&login, |_| {})
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        match r {
            Reply::Login { .. } => Ok(c),
            Reply::Refused { reason, .. } => Err(EndpointError::LoginRefused {
                server: server.to_owned(),
                reason,
            }),
            other => Err(unreachable(format!("unexpected answer {other:?}"))),
        }
    }

    /// One request to the control plane and its parsed reply; a broken link is dropped.
    async fn ask(&mut self, request: Request) -> Result<Reply, EndpointError> {
        let server = self.controller.control().unwrap_or_default().to_owned();
        let Some(c) = self.control.as_mut() else {
            return Err(EndpointError::ControlLost {
                server,
                cause: "not connected".into(),
            });
        };
        match c.call(&request, |_| {}).await {
            Ok(reply) => Ok(reply),
            Err(e @ ClientError::Reply { .. }) => Err(EndpointError::ControlLost {
                server,
                cause: e.to_string(),
            }),
            Err(e) => {
                // The appliance ends the monitor with the session: it starts again elsewhere.
                self.control = None;
                let n = self.controller.control_lost(self.now());
                self.notify(n);
                Err(EndpointError::ControlLost {
                    server,
                    cause: e.to_string(),
                })
            }
        }
    }

    /// Connected to the monitor service at `addr` (reusing the connection to it).
    async fn ensure_service(&mut self, addr: &str) -> Result<(), EndpointError> {
        if self.monitor.is_some() && self.controller.service() == Some(addr) {
            return Ok(());
        }
        let name = self.server_name(addr);
        let tls = self
            .tls
            .as_ref()
            .map(|t| (t.monitor.clone(), name.as_str()));
        let c = MonitorClient::connect(addr, tls).await.map_err(|e| {
            EndpointError::ServiceUnreachable {
                addr: addr.to_owned(),
                cause: e.to_string(),
            }
        })?;
        tracing::info!(monitor_service = %addr, "monitor service connected");
        self.monitor = Some(c);
        self.controller.service_up(addr);
        Ok(())
    }

    /// Starts monitoring `agent`: asks for it, stops the monitor it replaces once granted,
    /// attaches. The answer to a local `Monitor`.
    async fn start(&mut self, agent: &str) -> Result<Monitoring, EndpointError> {
        let replaces = match self.controller.plan_start(agent) {
            StartPlan::AlreadyRunning => {
                return Ok(Monitoring {
                    agent: agent.to_owned(),
                    already: true,
                    ..Monitoring::default()
                })
            }
            StartPlan::Ask { replaces } => replaces,
        };
        self.ensure_control().await?;
        let server = self.controller.control().unwrap_or_default().to_owned();
        let ask = Request::StartSilentMonitor {
            agent: agent.to_owned(),
        };
        let grant = match self.ask(ask).await? {
            Reply::StartSilentMonitor(g) => g,
            Reply::Refused { reason, .. } => {
                return Err(EndpointError::StartRefused {
                    agent: agent.to_owned(),
                    reason,
                })
            }
            other => {
                return Err(EndpointError::ControlLost {
                    server,
                    cause: format!("unexpected answer {other:?}"),
                })
            }
        };
        if replaces.is_some() {
            self.stop().await;
        }
        self.controller.granted(agent);
        self.attach(agent, &server, grant).await
    }

    /// Attaches to a granted monitor; a failure abandons the grant at the control plane.
    async fn attach(
        &mut self,
        agent: &str,
        server: &str,
        grant: Grant,
    ) -> Result<Monitoring, EndpointError> {
        let service = self
            .controller
            .service_for(server, grant.monitor_service.as_deref());
        let attached = match self.ensure_service(&service).await {
            Ok(()) => match self.monitor.as_mut() {
                Some(m) => m.attach(&grant.key).await.map_err(|e| e.to_string()),
                None => Err("not connected".into()),
            },
            Err(e) => {
                self.abandon(agent).await;
                return Err(e);
            }
        };
        match attached {
            Ok(a) => {
                tracing::info!(agent, monitor = a.monitor, "monitoring");
                self.controller.attached(a.monitor, agent);
                Ok(Monitoring {
                    agent: agent.to_owned(),
                    monitor: Some(a.monitor),
                    server: Some(server.to_owned()),
                    monitor_service: Some(service),
                    already: false,
                })
            }
            Err(reason) => {
                self.monitor = None;
                let n = self.controller.service_lost(self.now());
                self.notify(n);
                self.abandon(agent).await;
                Err(EndpointError::AttachRefused {
                    addr: service,
                    reason,
                })
            }
        }
    }

    /// A monitor was granted but could not be attached: stop it at the control plane, so the
    /// retry is not refused as "already monitoring".
    async fn abandon(&mut self, agent: &str) {
        let stop = Request::StopSilentMonitor(StopTarget::Agent(agent.to_owned()));
        let _ = self.ask(stop).await;
    }

    /// Stops the running monitor (nothing is wanted afterwards).
    async fn stop(&mut self) {
        let (agent, notices) = self.controller.stop();
        self.notify(notices);
        if let Some(agent) = agent {
            if self.control.is_some() {
                let stop = Request::StopSilentMonitor(StopTarget::Agent(agent.to_string()));
                let _ = self.ask(stop).await;
            }
        }
    }

    /// Retries what failed: the control plane, then the wanted monitor.
    async fn upkeep(&mut self) {
        self.media.flush();
        let now = self.now();
        if let Some(agent) = self.controller.due(now) {
            if let Err(e) = self.start(&agent).await {
                tracing::warn!(agent, error = %e, "monitor not running; retrying");
                let now = self.now();
                self.controller.start_failed(now, &e);
            }
        }
        if self.control.is_none() && self.page.receiver_count() > 1 {
            // A page is open: it shows the team, so log in even with nothing to monitor.
            let _ = self.ensure_control().await;
        }
        self.refresh_desk().await;
        self.publish_now();
    }

    fn on_control(&mut self, ev: Result<Frame, String>) {
        let now = self.now();
        let f = match ev {
            Ok(f) => f,
            Err(e) => {
                let server = self.controller.control().unwrap_or_default().to_owned();
                tracing::warn!(server, error = %e, "control plane lost; trying the next");
                self.control = None;
                let n = self.controller.control_lost(now);
                self.notify(n);
                let cause = format!("lost the appliance {server}");
                return self.set_link(LinkState::Connecting, None, Some(cause));
            }
        };
        match Event::parse(&f) {
            Ok(Event::SilentMonitorStopped {
                monitor, reason, ..
            }) => {
                tracing::info!(monitor, %reason, "monitor stopped by the appliance");
                let n = self.controller.monitor_stopped(now, monitor, &reason);
                self.notify(n);
            }
            Ok(Event::AgentState { agent, state }) => {
                let at = crate::clock::wall_now().as_secs_f64();
                self.desk.agent_state(at, &agent, &state);
                self.publish();
            }
            _ => {}
        }
    }

    fn on_service(&mut self, ev: Result<ServiceEvent, String>) {
        let now = self.now();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let service = self.controller.service().unwrap_or_default().to_owned();
                tracing::warn!(service, error = %e, "monitor service lost");
                self.monitor = None;
                let n = self.controller.service_lost(now);
                return self.notify(n);
            }
        };
        match self.controller.on_service_event(now, &ev) {
            Route::Media(agent) => self.media_packet(agent, ev),
            Route::Discard => {
                if let ServiceEvent::Media { rtp, .. } = ev {
                    self.recycle(rtp);
                }
            }
            Route::Notices(n) => {
                if let ServiceEvent::Error { reason } = &ev {
                    tracing::warn!(reason, "monitor service refused a request");
                }
                if let ServiceEvent::Stopped { reason, .. } = &ev {
                    tracing::info!(reason, "monitor service stopped the monitor");
                }
                if let ServiceEvent::Interrupted { reason, .. } = &ev {
                    tracing::warn!(reason, "the monitor's audio is interrupted");
                }
                if let ServiceEvent::Call {
                    call_id,
                    appliance: Some(a),
                    ..
                } = &ev
                {
                    tracing::info!(call_id, appliance = a, "call");
                }
                self.notify(n);
            }
        }
    }

    /// One packet of the running monitor to the media loop (its buffer comes back spent).
    fn media_packet(&mut self, agent: Arc<str>, ev: ServiceEvent) {
        let ServiceEvent::Media { direction, rtp, .. } = ev else {
            return;
        };
        let ev = EndpointEvent::Media {
            arrival: self.clock.now(),
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

    /// Gives a media buffer back to the monitor client (freed when there is none).
    fn recycle(&mut self, rtp: Vec<u8>) {
        if let Some(client) = self.monitor.as_mut() {
            client.recycle(rtp);
        }
    }

    /// Answers a local control request.
    async fn local(&mut self, r: LocalRequest) -> LocalReply {
        match r {
            LocalRequest::Monitor { agent } => match self.start(&agent).await {
                Ok(m) => {
                    self.error = None;
                    LocalReply::Monitoring(m)
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    LocalReply::Refused {
                        msg: "MonitorReply".into(),
                        reason: e.to_string(),
                    }
                }
            },
            LocalRequest::Stop => {
                self.stop().await;
                LocalReply::Stopped
            }
            LocalRequest::Status => LocalReply::Status(Box::new(self.status())),
            LocalRequest::Page => LocalReply::Page(self.page_url.clone()),
            LocalRequest::Output {
                device,
                stereo,
                volume_pct,
            } => {
                self.media.control(EndpointEvent::Output {
                    device,
                    layout: if stereo { Layout::Stereo } else { Layout::Mono },
                    volume: f32::from(volume_pct) / 100.0,
                });
                LocalReply::Done("OutputReply".into())
            }
            LocalRequest::Record { on } => match (&self.settings.record, on) {
                (None, true) => LocalReply::Refused {
                    msg: "RecordReply".into(),
                    reason: "no record directory: start the endpoint with --record DIR".into(),
                },
                (dir, _) => {
                    let dir = dir.clone().filter(|_| on);
                    let at = self.now();
                    self.media.control(EndpointEvent::Recording { dir, at });
                    LocalReply::Done("RecordReply".into())
                }
            },
        }
    }

    fn status(&self) -> Status {
        let media = self.report.lock().map(|r| r.clone()).unwrap_or_default();
        let s = &media.session;
        let c = &self.controller;
        let running = c.running();
        Status {
            user: self.settings.user.clone(),
            server: c.control().map(str::to_owned),
            monitor_service: c.service().map(str::to_owned),
            agent: running
                .map(|r| r.agent.to_string())
                .or_else(|| c.wanted().map(str::to_owned)),
            monitor: running.map(|r| r.monitor),
            monitoring: running.is_some(),
            call_id: c.call().map(str::to_owned),
            appliance: c.appliance().map(str::to_owned),
            interrupted: c.interrupted().map(str::to_owned),
            packets: s.packets,
            decoded: s.decoded,
            late: s.late,
            lost: s.lost,
            dropped_before_media: self.dropped.load(Ordering::Relaxed),
            device: media.device.map(|(r, c)| format!("{r} Hz x {c}")),
            frames_played: media.playout.map(|p| p.frames_played),
            underruns: media.playout.map(|p| p.underruns),
            queued_ms: media
                .playout
                .zip(media.device)
                .map(|(p, (rate, _))| frames_to_ms(p.queued_frames, rate)),
            queue_low_ms: media
                .device
                .map(|(rate, _)| frames_to_ms(media.session.queue_low_frames, rate)),
            device_delay_ms: media
                .playout
                .map(|p| (p.device_delay_us / 1000).min(u64::from(u32::MAX)) as u32),
            queue_fixed_ms: media.device.map_or([0; 2], |(rate, _)| {
                let s = &media.session;
                [s.queue_trimmed_frames, s.queue_padded_frames]
                    .map(|f| u64::from(frames_to_ms(f, rate)))
            }),
            levels: s.levels,
            delay_ms: s.delay_ms,
            concealed_ms: s.concealed / 8,
            dtmf_muted: s.dtmf_muted,
            device_name: media.device_name.clone(),
            stereo: media.layout == Layout::Stereo,
            volume_pct: (media.volume * 100.0).round().clamp(0.0, 200.0) as u16,
            recording: media.recording,
            link: self.link.clone(),
            error: self.error.clone(),
            summary: summary(&media),
        }
    }
}
