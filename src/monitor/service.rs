//! The monitor service's I/O shell (TCP 42228): a tokio accept loop, TLS 1.3 through
//! tokio-rustls with client certificates required (plaintext only when the operator said
//! `--insecure`, i.e. `tls` is `None`), and per endpoint connection one reader task (frames
//! in, attach/detach/heartbeats) and one writer task (the connection's [`Subscriber`] queue
//! drained into one buffer per write).
//!
//! Rules:
//! - The writer is the only task that writes to the socket and the publisher never waits for
//!   it: a stalled endpoint only loses its oldest frames (counted in the fanout).
//! - One connection may hold several monitors. A monitor ends when its endpoint detaches, the
//!   connection is lost, or nothing was heard from the endpoint for `heartbeat_timeout`; each
//!   is reported with [`ControlHandle::end_monitor`]. A monitor revoked by the appliance gets
//!   `Stopped` and the connection stays. A grant never attached within `heartbeat_timeout`
//!   ends as "endpoint never attached".
//! - A malformed frame gets an `Error` frame and the connection goes on; an oversized length
//!   (the stream cannot be resynchronised) ends that connection, never the server. A semaphore
//!   caps connections; `run` ends when its shutdown future resolves.
//! - Accepted sockets get TCP_NODELAY and the media TOS byte.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use super::fanout::{FanoutCommand, Subscriber, SLOT_CAPACITY};
use super::registry::{ConnId, Registry};
use super::stats::MonitorStats;
use super::wire::{self, Control, Frame};
use crate::control::server::{set_tos, ControlHandle};
use crate::router::MonitorId;

/// Most simultaneous endpoint connections.
pub const MAX_CONNECTIONS: usize = 512;
/// Default interval of the service's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default silence after which an endpoint is given up.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default media frames queued per endpoint connection (about 10 s of a two-way G.711 call).
pub const DEFAULT_QUEUE_FRAMES: usize = 1024;
/// Default TOS byte of media sockets (DSCP EF).
pub const DEFAULT_TOS: u8 = 0xB8;
/// Bytes the writer gathers before one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection's writer may take to send its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The pieces `run` needs.
pub struct MonitorServer {
    /// TLS (client certificates required); None: plaintext, `--insecure`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Granted monitors.
    pub registry: Arc<Registry>,
    /// Where monitors that end here are reported.
    pub control: ControlHandle,
    /// The engine thread's [`Publisher`](super::fanout::Publisher) commands.
    pub fanout: crossbeam_channel::Sender<FanoutCommand>,
    /// Interval of the service's heartbeats (and of the liveness check).
    pub heartbeat_interval: Duration,
    /// Silence after which an endpoint is given up; also the attach deadline of a grant.
    pub heartbeat_timeout: Duration,
    /// Media frames queued per endpoint connection.
    pub queue_frames: usize,
    /// TOS byte of accepted sockets.
    pub tos: u8,
    /// Counters.
    pub stats: Arc<MonitorStats>,
}

/// What every connection shares.
struct Shared {
    registry: Arc<Registry>,
    control: ControlHandle,
    fanout: crossbeam_channel::Sender<FanoutCommand>,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    queue_frames: usize,
    stats: Arc<MonitorStats>,
}

/// Serves the monitor service on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, server: MonitorServer, shutdown: impl Future<Output = ()>) {
    let MonitorServer {
        tls,
        registry,
        control,
        fanout,
        heartbeat_interval,
        heartbeat_timeout,
        queue_frames,
        tos,
        stats,
    } = server;
    let shared = Arc::new(Shared {
        registry,
        control,
        fanout,
        heartbeat_interval,
        heartbeat_timeout,
        queue_frames,
        stats,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let expiry = tokio::spawn(expire_grants(shared.clone()));
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "monitor service: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        MonitorStats::bump(&shared.stats.accepted_total);
        set_tos(&sock, tos);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(sock)).await {
                    Ok(Ok(tls)) => connection(tls, peer, shared, stop).await,
                    Ok(Err(e)) => {
                        MonitorStats::bump(&shared.stats.tls_failures_total);
                        tracing::info!(%peer, error = %e, "monitor service: TLS handshake refused");
                    }
                    Err(_) => {
                        MonitorStats::bump(&shared.stats.tls_failures_total);
                        tracing::info!(%peer, "monitor service: TLS handshake timed out");
                    }
                },
                None => connection(sock, peer, shared, stop).await,
            }
        });
    }
    let _ = stop_tx.send(true);
    expiry.abort();
}

/// Ends the grants nobody attached to in time.
async fn expire_grants(shared: Arc<Shared>) {
    let period =
        (shared.heartbeat_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for m in shared
            .registry
            .expire_unattached(Instant::now(), shared.heartbeat_timeout)
        {
            tracing::info!(monitor = m, "monitor service: endpoint never attached");
            shared.control.end_monitor(m, "endpoint never attached");
        }
    }
}

/// Writes what the subscriber queue holds, one buffer per write, until closed or the socket
/// fails.
async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, sub: Arc<Subscriber>) {
    let mut buf = Vec::with_capacity(WRITE_BATCH + SLOT_CAPACITY);
    loop {
        if !sub.has_frames() {
            if sub.is_closed() {
                break;
            }
            sub.ready().await;
            continue;
        }
        buf.clear();
        sub.drain_into(&mut buf, WRITE_BATCH);
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Why a connection ended (the reason given to the control plane for its monitors).
#[derive(Copy, Clone)]
enum Ending {
    Disconnected,
    HeartbeatLost,
    ProtocolError,
    Shutdown,
}

impl Ending {
    fn reason(self) -> &'static str {
        match self {
            Ending::Disconnected => "endpoint disconnected",
            Ending::HeartbeatLost => "endpoint heartbeat lost",
            Ending::ProtocolError => "endpoint protocol error",
            Ending::Shutdown => "monitor service stopped",
        }
    }
}

/// One endpoint connection's state on the reader side.
struct Conn {
    id: ConnId,
    peer: SocketAddr,
    shared: Arc<Shared>,
    sub: Arc<Subscriber>,
    revoked: mpsc::UnboundedSender<(u32, String)>,
    held: Vec<u32>,
}

impl Conn {
    fn refuse(&self, reason: String) {
        self.sub.send_control(&Control::Error { reason });
    }

    fn forget(&mut self, monitor: u32) -> bool {
        let Some(i) = self.held.iter().position(|m| *m == monitor) else {
            return false;
        };
        self.held.swap_remove(i);
        MonitorStats::drop_one(&self.shared.stats.attached);
        let detach = FanoutCommand::Detach {
            monitor: MonitorId::from(monitor),
        };
        if self.shared.fanout.try_send(detach).is_err() {
            tracing::warn!(monitor, "monitor service: publisher not taking commands");
        }
        true
    }

    fn attach(&mut self, key: &str) {
        let r = self
            .shared
            .registry
            .attach(key, self.id, &self.sub, &self.revoked);
        let (monitor, agent) = match r {
            Ok(x) => x,
            Err(e) => {
                MonitorStats::bump(&self.shared.stats.attach_refused_total);
                tracing::info!(peer = %self.peer, error = %e, "monitor service: attach refused");
                return self.refuse(e.to_string());
            }
        };
        // The reply is queued before the route exists, so it precedes the monitor's media.
        self.sub.send_control(&Control::Attached { monitor, agent });
        let attach = FanoutCommand::Attach {
            monitor: MonitorId::from(monitor),
            subscriber: self.sub.clone(),
        };
        if self.shared.fanout.try_send(attach).is_err() {
            MonitorStats::bump(&self.shared.stats.attach_refused_total);
            self.shared
                .registry
                .release(MonitorId::from(monitor), self.id);
            self.shared
                .control
                .end_monitor(MonitorId::from(monitor), "monitor service busy");
            self.sub.send_control(&Control::Stopped {
                monitor,
                reason: "monitor service busy".into(),
            });
            return;
        }
        self.held.push(monitor);
        MonitorStats::bump(&self.shared.stats.attached);
    }

    fn detach(&mut self, monitor: u32) {
        if !self.held.contains(&monitor) {
            return self.refuse(format!("not attached to monitor {monitor}"));
        }
        self.forget(monitor);
        if self
            .shared
            .registry
            .release(MonitorId::from(monitor), self.id)
        {
            self.shared
                .control
                .end_monitor(MonitorId::from(monitor), "endpoint detached");
        }
        self.sub.send_control(&Control::Stopped {
            monitor,
            reason: "detached by the endpoint".into(),
        });
    }

    fn revoked(&mut self, monitor: u32, reason: String) {
        if self.forget(monitor) {
            self.sub.send_control(&Control::Stopped { monitor, reason });
        }
    }

    fn handle(&mut self, frame: Frame<'_>) {
        let unexpected = |what: &str| format!("{what} is not a request an endpoint sends");
        match frame {
            Frame::Control(Control::Attach { key }) => self.attach(&key),
            Frame::Control(Control::Detach { monitor }) => self.detach(monitor),
            Frame::Control(Control::Heartbeat { seq }) => {
                self.sub.send_control(&Control::HeartbeatReply { seq })
            }
            Frame::Control(Control::HeartbeatReply { .. }) => {}
            Frame::Media(_) => {
                MonitorStats::bump(&self.shared.stats.protocol_errors_total);
                self.refuse(unexpected("a media frame"))
            }
            Frame::Control(other) => {
                MonitorStats::bump(&self.shared.stats.protocol_errors_total);
                self.refuse(unexpected(other.name()))
            }
        }
    }

    /// Ends every monitor still held, reporting `ending` to the control plane.
    fn end_all(&mut self, ending: Ending) {
        for monitor in self.held.clone() {
            self.forget(monitor);
            if self
                .shared
                .registry
                .release(MonitorId::from(monitor), self.id)
            {
                tracing::info!(monitor, peer = %self.peer, reason = ending.reason(), "monitor service: monitor ended");
                self.shared
                    .control
                    .end_monitor(MonitorId::from(monitor), ending.reason());
            }
        }
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    MonitorStats::bump(&shared.stats.endpoints);
    let sub = Arc::new(Subscriber::new(shared.queue_frames, shared.stats.clone()));
    let (mut rd, wr) = tokio::io::split(stream);
    let mut writer = tokio::spawn(write_loop(wr, sub.clone()));
    let (revoked_tx, mut revoked_rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        id: shared.registry.connection_id(),
        peer,
        shared: shared.clone(),
        sub: sub.clone(),
        revoked: revoked_tx,
        held: Vec::new(),
    };
    let interval = shared.heartbeat_interval;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut last_heard = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let ending = 'conn: loop {
        tokio::select! {
            _ = stop.changed() => break Ending::Shutdown,
            n = rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break Ending::Disconnected, Ok(n) => n };
                last_heard = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                let mut used = 0;
                loop {
                    match wire::decode(&buf[used..]) {
                        Ok((frame, len)) => {
                            used += len;
                            conn.handle(frame);
                        }
                        Err(wire::Error::Incomplete) => break,
                        Err(e @ wire::Error::TooLarge { .. }) => {
                            MonitorStats::bump(&shared.stats.protocol_errors_total);
                            tracing::info!(%peer, error = %e, "monitor service: closing connection");
                            conn.refuse(e.to_string());
                            break 'conn Ending::ProtocolError;
                        }
                        Err(e) => {
                            MonitorStats::bump(&shared.stats.protocol_errors_total);
                            // Not Incomplete or TooLarge: check() knows the bad frame's length.
                            used += wire::check(&buf[used..]).unwrap_or(buf.len() - used);
                            conn.refuse(e.to_string());
                        }
                    }
                }
                buf.drain(..used);
            }
            r = revoked_rx.recv() => {
                // The sender lives in `conn`, so the channel never closes here.
                if let Some((monitor, reason)) = r {
                    conn.revoked(monitor, reason);
                }
            }
            _ = beat.tick() => {
                if last_heard.elapsed() > shared.heartbeat_timeout {
                    break Ending::HeartbeatLost;
                }
                seq += 1;
                sub.send_control(&Control::Heartbeat { seq });
            }
            _ = &mut writer => break Ending::Disconnected,
        }
    };
    conn.end_all(ending);
    sub.close();
    if matches!(ending, Ending::ProtocolError) {
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    } else {
        writer.abort();
    }
    MonitorStats::drop_one(&shared.stats.endpoints);
}
