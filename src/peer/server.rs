//! The serving side's tokio shell (TCP 42029): connections accepted through `net::listen`
//! (connection and handshake caps, mutual TLS 1.3 within a timeout, TOS), the peer identified
//! by its certificate, and per link one task that feeds the sans-IO [`Serving`] core frames,
//! views and time, and carries out what it returns: frames into the link's fanout
//! [`Subscriber`] (drained by a writer task), subscriptions as relay monitors of the router
//! (engine commands) routed to that subscriber (fanout commands), audit entries.
//!
//! Rules: a connection whose certificate is not an appliance's (server usage) or names no
//! listed peer is refused and audited (`peer_refused`), before any frame is read; on a
//! plaintext (`--insecure`) link the peer is who its `Hello` says, if listed. The engine and
//! fanout queues are written with `try_send`: a full one refuses the subscription (the asking
//! side hears `Refused` and asks again later), never waits. The link's subscriber drops its
//! oldest media frame when the peer is slow (counted), so a slow peer never stalls capture.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::serving::{Serving, ServingAction};
use super::wire::{decode, PeerFrame, PeerMsg};
use super::{Cluster, PeerCounters};
use crate::appliance::engine_loop::Command;
use crate::clock::wall_now;
use crate::monitor::fanout::{FanoutCommand, Subscriber};
use crate::monitor::service::write_loop;
use crate::monitor::stats::MonitorStats;
use crate::monitor::wire::{self, Error as WireError};
use crate::net::listen::{Accepted, Limits, ListenStats, Listener};
use crate::router::{MonitorId, View};
use crate::security::audit::{AuditEvent, AuditSink};
use crate::time::Span;

/// Media frames queued towards one peer before the oldest is dropped, with up to 256
/// monitors on the link.
pub const PEER_QUEUE_FRAMES: usize = 4096;
/// What a peer link's queue grows to with more monitors on it (see
/// [`crate::monitor::fanout::FRAMES_PER_MONITOR`]); its rings cost 1 MiB.
pub const PEER_MAX_QUEUE_FRAMES: usize = 16384;
/// The first id of the router monitors that serve peers (the control plane's are small).
pub const RELAY_MONITOR_BASE: MonitorId = 1 << 40;
/// What the serving shell needs.
pub struct PeerServer {
    /// Mutual TLS (None: plaintext, `--insecure`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What the links know of the cluster (the peers' names and counters).
    pub cluster: Arc<Cluster>,
    /// Configured agents' ids -> indexes.
    pub agents: Arc<HashMap<String, usize>>,
    /// The engine thread's commands.
    pub engine: crossbeam_channel::Sender<Command>,
    /// The fanout's commands.
    pub fanout: crossbeam_channel::Sender<FanoutCommand>,
    /// This appliance's view (what its SPAN sees).
    pub view: watch::Receiver<Arc<View>>,
    /// The audit trail.
    pub audit: AuditSink,
    /// Silence after which a link is closed.
    pub timeout: Duration,
    /// TOS byte for the link's packets (0xB8 = EF, as the monitor service's media).
    pub tos: u8,
    /// Counters of the links' subscribers.
    pub stats: Arc<MonitorStats>,
    /// The listener's counters.
    pub listen: Arc<ListenStats>,
}

/// What every link task shares.
struct Shared {
    server: PeerServer,
    names: HashSet<String>,
    next_monitor: AtomicU64,
}

/// Serves peers on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    server: PeerServer,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let names: HashSet<String> = server
        .cluster
        .view_now()
        .peers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let l = Listener::new(
        listener,
        server.tls.clone(),
        server.tos,
        Limits::default(),
        "peer link",
        server.listen.clone(),
    );
    let shared = Arc::new(Shared {
        server,
        names,
        next_monitor: AtomicU64::new(RELAY_MONITOR_BASE),
    });
    l.run(shutdown, move |a: Accepted| link(a, shared.clone()))
        .await;
}

/// Who a connection is: the listed peer its certificate names, or why it is refused.
fn identify(a: &Accepted, shared: &Shared, tls: bool) -> Result<Option<String>, String> {
    if !tls {
        return Ok(None); // plaintext: its Hello says
    }
    if !a.appliance {
        return Err("not an appliance's certificate (no TLS server usage)".into());
    }
    a.certificate
        .iter()
        .find(|n| shared.names.contains(*n))
        .cloned()
        .map(Some)
        .ok_or_else(|| format!("{:?} is not a listed peer", a.certificate))
}

async fn link(a: Accepted, shared: Arc<Shared>) {
    let tls = shared.server.tls.is_some();
    let name = match identify(&a, &shared, tls) {
        Ok(n) => n,
        Err(reason) => {
            let certificate = a.certificate.first().cloned();
            tracing::warn!(peer = %a.peer, ?certificate, %reason, "peer link refused");
            (shared.server.audit)(
                &AuditEvent::PeerRefused {
                    certificate,
                    reason,
                },
                Some(a.peer),
            );
            return;
        }
    };
    serve(a.stream, a.peer, name, shared).await;
}

/// One link's state besides its core.
struct LinkShell {
    shared: Arc<Shared>,
    peer_addr: SocketAddr,
    index: Option<u16>,
    counters: Option<Arc<PeerCounters>>,
    sub: Arc<Subscriber>,
    routes: HashMap<u32, MonitorId>,
    closing: Option<String>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer_addr: SocketAddr,
    name: Option<String>,
    shared: Arc<Shared>,
) {
    let s = &shared.server;
    let sub = Arc::new(Subscriber::growing(
        PEER_QUEUE_FRAMES,
        PEER_MAX_QUEUE_FRAMES,
        s.stats.clone(),
    ));
    let timeout = Span::from_nanos(s.timeout.as_nanos() as i64);
    // On plaintext the name is taken from the Hello (checked against the list there).
    let claimed = name.clone().unwrap_or_default();
    let mut core = Serving::new(
        s.cluster.me(),
        &claimed,
        s.agents.clone(),
        timeout,
        wall_now(),
    );
    let mut view = s.view.clone();
    let mut sh = LinkShell {
        index: name.as_deref().and_then(|n| s.cluster.index_of(n)),
        counters: None,
        shared: shared.clone(),
        peer_addr,
        sub: sub.clone(),
        routes: HashMap::new(),
        closing: None,
    };
    sh.counters = sh.index.map(|i| s.cluster.counters[usize::from(i)].clone());
    let (mut rd, wr) = tokio::io::split(stream);
    let counters = sh.counters.clone();
    let mut writer = tokio::spawn(write_loop(wr, sub.clone(), move |drained, bytes| {
        // Bytes and media frames for the peer's counters.
        if let Some(c) = &counters {
            c.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
            c.media_out
                .fetch_add(drained.media as u64, Ordering::Relaxed);
        }
    }));
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    tracing::info!(peer = %peer_addr, name = ?name, "peer link accepted");
    while sh.closing.is_none() {
        let wake = tokio::time::Instant::now()
            + Duration::from_nanos((core.poll_timeout() - wall_now()).as_nanos().max(0) as u64);
        tokio::select! {
            n = rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                let v = view.borrow().clone();
                if let Err(e) = frames(&mut buf, &mut core, &v, name.is_none(), &mut sh) {
                    sh.closing = Some(e);
                }
            }
            changed = view.changed() => {
                if changed.is_err() { break }
                let v = view.borrow_and_update().clone();
                core.set_view(&v);
            }
            _ = tokio::time::sleep_until(wake) => core.handle_timeout(wall_now()),
            _ = &mut writer => break,
        }
        sh.carry_out(&mut core);
    }
    core.closed();
    sh.carry_out(&mut core);
    tracing::info!(peer = %peer_addr, reason = ?sh.closing, "peer link closed");
    sub.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// Feeds every whole frame in `buf` to the core; an error that ends the link is returned.
fn frames(
    buf: &mut Vec<u8>,
    core: &mut Serving,
    view: &View,
    plaintext: bool,
    sh: &mut LinkShell,
) -> Result<(), String> {
    let mut used = 0;
    loop {
        match decode(&buf[used..]) {
            Ok((f, n)) => {
                used += n;
                if plaintext {
                    sh.adopt_plaintext_name(&f, core)?;
                }
                core.handle_frame(wall_now(), &f, view);
            }
            Err(WireError::Incomplete) => break,
            Err(e @ WireError::TooLarge { .. }) => return Err(e.to_string()),
            Err(e) => {
                // One bad frame: skipped, said, counted; the stream stays in sync.
                used += wire::check(&buf[used..]).unwrap_or(buf.len() - used);
                MonitorStats::add_one(&sh.shared.server.stats.protocol_errors_total);
                let refused = PeerMsg::Refused {
                    sub: None,
                    reason: e.to_string(),
                };
                if let Ok(b) = refused.to_bytes() {
                    sh.sub.send_encoded(b);
                }
            }
        }
    }
    buf.drain(..used);
    Ok(())
}

impl LinkShell {
    /// On a plaintext link, the first `Hello` names the peer: it must be a listed one.
    fn adopt_plaintext_name(
        &mut self,
        f: &PeerFrame<'_>,
        core: &mut Serving,
    ) -> Result<(), String> {
        if self.index.is_some() {
            return Ok(());
        }
        let PeerFrame::Peer(PeerMsg::Hello { name, .. }) = f else {
            return Err("the first frame must be Hello".into());
        };
        let cluster = &self.shared.server.cluster;
        let Some(i) = cluster.index_of(name) else {
            return Err(format!("{name:?} is not a listed peer"));
        };
        self.index = Some(i);
        self.counters = Some(cluster.counters[usize::from(i)].clone());
        *core = Serving::new(
            cluster.me(),
            name,
            self.shared.server.agents.clone(),
            Span::from_nanos(self.shared.server.timeout.as_nanos() as i64),
            wall_now(),
        );
        Ok(())
    }

    /// Does what the core asked.
    fn carry_out(&mut self, core: &mut Serving) {
        let mut routes_changed = false;
        while let Some(a) = core.poll() {
            match a {
                ServingAction::Send(b) => {
                    if !self.sub.send_encoded(b) {
                        core.lost_control();
                    }
                }
                ServingAction::Route { sub, agent } => {
                    routes_changed = true;
                    if let Err(reason) = self.route(sub, agent) {
                        core.route_failed(sub, reason);
                    }
                }
                ServingAction::Unroute { sub } => {
                    routes_changed = true;
                    self.unroute(sub);
                }
                ServingAction::Audit(e) => (self.shared.server.audit)(&e, Some(self.peer_addr)),
                ServingAction::Close(reason) => self.closing = Some(reason),
            }
        }
        if routes_changed {
            if let Some(i) = self.index {
                let served = self.routes.len();
                self.shared
                    .server
                    .cluster
                    .update(i, |s, _| s.served = served);
            }
        }
    }

    /// A relay monitor for `sub`: the router forwards `agent`'s audio to it, the fanout to
    /// this link, tagged `sub`.
    fn route(&mut self, sub: u32, agent: usize) -> Result<(), String> {
        let s = &self.shared.server;
        let monitor = self.shared.next_monitor.fetch_add(1, Ordering::Relaxed);
        let attach = FanoutCommand::Attach {
            monitor,
            wire: sub,
            subscriber: self.sub.clone(),
        };
        if s.fanout.try_send(attach).is_err() {
            return Err("appliance busy (monitor service)".into());
        }
        if s.engine
            .try_send(Command::AddRelay { monitor, agent })
            .is_err()
        {
            let _ = s.fanout.try_send(FanoutCommand::Detach { monitor });
            return Err("appliance busy (engine)".into());
        }
        self.routes.insert(sub, monitor);
        Ok(())
    }

    fn unroute(&mut self, sub: u32) {
        let Some(monitor) = self.routes.remove(&sub) else {
            return;
        };
        let s = &self.shared.server;
        if s.engine
            .try_send(Command::RemoveMonitor { monitor })
            .is_err()
        {
            tracing::error!(
                monitor,
                "engine thread not taking commands: relay monitor kept"
            );
        }
        let _ = s.fanout.try_send(FanoutCommand::Detach { monitor });
    }
}
