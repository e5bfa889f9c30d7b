//! The monitor service's I/O shell (TCP 42228): connections accepted through `net::listen`
//! (connection and handshake caps, TLS 1.3 with client certificates required within a
//! timeout, EF marking; plaintext only when the operator said `--insecure`, i.e. `tls` is
//! `None`), and per endpoint connection one reader task (a thin loop around the sans-IO
//! `EndpointConn`: bytes, revocations and time in) and one writer task (the connection's
//! [`Subscriber`] queue drained into one buffer per write). The grant expiry task ends grants
//! nobody attached to. No protocol decision is made here.
//!
//! Rules:
//! - The writer is the only task that writes to the socket and the publisher never waits for
//!   it: a stalled endpoint only loses its oldest frames (counted in the fanout).
//! - One connection may hold several monitors. A monitor ends when its endpoint detaches, the
//!   connection is lost, or nothing was heard from the endpoint for `heartbeat_timeout`; each
//!   is reported with [`ControlHandle::end_monitor`]. A monitor revoked by the appliance gets
//!   `Stopped` and the connection stays. A grant never attached within `heartbeat_timeout`
//!   ends as "endpoint never attached". A session key attaches only from a connection whose
//!   certificate names the supervisor it was granted to; refused attaches are audited, and a
//!   connection with three is closed.
//! - A malformed frame gets an `Error` frame and the connection goes on; an oversized length
//!   (the stream cannot be resynchronised) ends that connection, never the server. `run` ends
//!   when its shutdown future resolves.
//! - Accepted sockets get a fixed kernel send buffer ([`SEND_BUFFER`]): the kernel's
//!   autotuning would let a slow endpoint's socket hold megabytes, i.e. ever older audio;
//!   capped, a slow endpoint loses its oldest frames in its queue instead and stays near live.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::endpoint_conn::{Context, Ending, EndpointConn};
use super::fanout::{Drained, FanoutCommand, Subscriber, SLOT_CAPACITY};
use super::registry::Registry;
use super::stats::MonitorStats;
use crate::control::reply::StopReason;
use crate::control::server::ControlHandle;
use crate::net::listen::{Accepted, Limits, Listener};
use crate::security::audit::AuditSink;

/// Most simultaneous endpoint connections.
pub const MAX_CONNECTIONS: usize = 512;
/// Default interval of the service's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default silence after which an endpoint is given up.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default media frames queued per endpoint connection (about 10 s of a two-way G.711 call).
pub const DEFAULT_QUEUE_FRAMES: usize = 1024;
/// The most media frames one endpoint connection's queue grows to with many monitors on it
/// ([`crate::monitor::fanout::FRAMES_PER_MONITOR`] each: 256 monitors or more get 41 ms of
/// 1000 two-way calls). Its rings cost 64 bytes a frame, 256 KiB per connection at once; the
/// slots, 512 bytes each, only as it grows.
pub const MAX_QUEUE_FRAMES: usize = 4096;
/// Default TOS byte of media sockets (DSCP EF).
pub const DEFAULT_TOS: u8 = 0xB8;
/// Kernel send buffer of an endpoint connection (about 3 s of one two-way G.711 call; Linux
/// doubles it for its bookkeeping).
pub const SEND_BUFFER: usize = 64 * 1024;
/// Bytes the writer gathers before one write.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection's writer may take to send its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The pieces `run` needs.
pub struct MonitorServer {
    /// TLS; build it with `security::tls::server_config(.., true)` so that endpoints must
    /// present a certificate of the CA. None: plaintext, `--insecure`.
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
    /// Media frames queued per endpoint connection (more with many monitors on it, up to
    /// [`MAX_QUEUE_FRAMES`]).
    pub queue_frames: usize,
    /// TOS byte of accepted sockets.
    pub tos: u8,
    /// Counters.
    pub stats: Arc<MonitorStats>,
    /// Where refused attaches are recorded.
    pub audit: AuditSink,
}

/// The listener caps of the monitor service: [`MAX_CONNECTIONS`], handshakes as by default.
pub fn limits() -> Limits {
    Limits {
        max_connections: MAX_CONNECTIONS,
        ..Limits::default()
    }
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
        audit,
    } = server;
    let plaintext = tls.is_none();
    let listener = Listener::new(
        listener,
        tls,
        tos,
        limits(),
        "monitor service",
        stats.listen.clone(),
    )
    .with_send_buffer(SEND_BUFFER);
    let shared = Arc::new(Context {
        registry,
        control,
        fanout,
        heartbeat_interval,
        heartbeat_timeout,
        queue_frames,
        queue_most: MAX_QUEUE_FRAMES,
        stats,
        audit,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let expiry = tokio::spawn(expire_grants(shared.clone()));
    listener
        .run(shutdown, move |a: Accepted| {
            let (shared, stop) = (shared.clone(), stop_rx.clone());
            async move {
                let certificate = (!plaintext).then_some(a.certificate);
                connection(a.stream, a.peer, certificate, shared, stop).await
            }
        })
        .await;
    let _ = stop_tx.send(true);
    expiry.abort();
}

/// Ends the grants nobody attached to in time.
async fn expire_grants(shared: Arc<Context>) {
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
            shared
                .control
                .end_monitor(m, StopReason::EndpointNeverAttached);
        }
    }
}

/// Writes what `sub` holds, up to [`WRITE_BATCH`] bytes per write, until it is closed or the
/// socket fails; `wrote` hears of each write (what was drained, its bytes). The one writer of
/// a subscriber's queue: endpoint connections here, peer links (`peer::server`).
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    sub: Arc<Subscriber>,
    mut wrote: impl FnMut(&Drained, usize),
) {
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
        let drained = sub.drain_into(&mut buf, WRITE_BATCH);
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        wrote(&drained, buf.len());
    }
    let _ = wr.shutdown().await;
}

/// The connection task: a thin loop feeding the `EndpointConn` bytes, revocations and time.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    certificate: Option<Vec<String>>,
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut session, mut revoked) = EndpointConn::new(ctx, peer, certificate, Instant::now());
    let (mut rd, wr) = tokio::io::split(stream);
    let sub = session.subscriber().clone();
    let observed = sub.clone();
    let mut writer = tokio::spawn(write_loop(wr, sub, move |drained, _| {
        observed.observe_write(drained, crate::clock::wall_now())
    }));
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let ending = loop {
        let wake = tokio::time::Instant::from_std(session.poll_timeout());
        tokio::select! {
            _ = stop.changed() => break Ending::Shutdown,
            n = rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break Ending::Disconnected, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                match session.handle_input(Instant::now(), &buf) {
                    Ok(used) => { buf.drain(..used); }
                    Err(ending) => break ending,
                }
            }
            r = revoked.recv() => {
                // The sender lives in the session, so the channel never closes here.
                if let Some((monitor, reason)) = r {
                    session.handle_revoked(monitor, reason);
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if let Err(ending) = session.handle_timeout(Instant::now()) {
                    break ending;
                }
            }
            _ = &mut writer => break Ending::Disconnected,
        }
    };
    session.end(ending);
    if ending == Ending::ProtocolError {
        // Let the writer send the Error frame that says why.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    } else {
        writer.abort();
    }
}
