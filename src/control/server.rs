//! The control plane's I/O shell (TCP 42028): a tokio accept loop, TLS 1.3 through
//! tokio-rustls (plaintext only when the operator said `--insecure`), one task per connection
//! that only moves frames, and one actor task that owns the sans-IO [`ControlPlane`], feeds it
//! frames, connections and `now`, and carries out what it returns (frames to send, sessions to
//! close, [`Action`]s for the engine and the audit log). No protocol decision is made here.
//!
//! Limits are values: a semaphore caps connections, frames are capped by the codec, a bad
//! frame ends its connection (with a `ProtocolError` frame saying why), never the server. `run`
//! ends when its shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::frame::{self, Frame, DEFAULT_MAX_BODY};
use super::session::{Action, ControlPlane, SessionId};
use crate::router::View;
use crate::time::Timestamp;

/// Most simultaneous control-plane connections.
pub const MAX_CONNECTIONS: usize = 1024;
/// Frames queued towards one slow client before it is dropped.
const OUTBOX_FRAMES: usize = 1024;

/// The wall clock as a [`Timestamp`] (the shell reads the clock; the core never does).
pub fn wall_now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(d.as_nanos() as i64)
}

/// What connection tasks tell the actor.
enum Input {
    Connected {
        peer: SocketAddr,
        outbox: mpsc::Sender<Frame>,
        reply: tokio::sync::oneshot::Sender<SessionId>,
    },
    Frame(SessionId, Frame),
    Closed(SessionId),
}

/// Handle for other shells (the monitor service) to reach the control plane.
#[derive(Clone)]
pub struct ControlHandle {
    ended: mpsc::UnboundedSender<(u64, String)>,
}

impl ControlHandle {
    /// Tells the control plane that monitor `id` ended outside it (its endpoint went away).
    pub fn end_monitor(&self, id: u64, reason: &str) {
        let _ = self.ended.send((id, reason.to_owned()));
    }
}

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Sessions now, by mode: none, agent, supervisor, monitor.
    pub sessions: [std::sync::atomic::AtomicU64; 4],
    /// Connections accepted.
    pub accepted: std::sync::atomic::AtomicU64,
    /// TLS handshakes that failed.
    pub tls_failures: std::sync::atomic::AtomicU64,
    /// Connections closed for protocol errors.
    pub protocol_errors: std::sync::atomic::AtomicU64,
}

/// Carries out a control-plane action; gets the asking session's peer address when known.
pub type ActionSink = Box<dyn FnMut(&Action, Option<SocketAddr>) + Send>;

/// The pieces `run` needs.
pub struct ControlServer {
    /// The session logic.
    pub plane: ControlPlane,
    /// TLS (None: plaintext, `--insecure`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Snapshots from the engine thread.
    pub view: watch::Receiver<Arc<View>>,
    /// Where actions go (the engine thread and the audit log).
    pub actions: ActionSink,
    /// Counters.
    pub stats: Arc<ControlStats>,
    /// TOS byte for signalling sockets (0x68 = AF31).
    pub tos: u8,
}

/// Creates the handle other shells use and the receiver `run` consumes.
pub fn handle() -> (ControlHandle, mpsc::UnboundedReceiver<(u64, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ControlHandle { ended: tx }, rx)
}

/// Serves the control plane on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    server: ControlServer,
    ended: mpsc::UnboundedReceiver<(u64, String)>,
    shutdown: impl Future<Output = ()>,
) {
    let ControlServer {
        plane,
        tls,
        view,
        actions,
        stats,
        tos,
    } = server;
    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    let actor = tokio::spawn(actor(plane, input_rx, view, ended, actions, stats.clone()));
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // The listener's mark goes on the SYN-ACK.
    if let Err(e) = mark_tos(&listener, tos) {
        tracing::debug!(error = %e, "control plane: cannot set the listener's TOS");
    }
    tokio::pin!(shutdown);
    while let Some((permit, sock, peer)) =
        accept_capped(&listener, &limit, &mut shutdown, "control plane").await
    {
        stats
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        set_tos(&sock, tos);
        let input = input_tx.clone();
        let acceptor = acceptor.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => {
                    match tokio::time::timeout(Duration::from_secs(10), a.accept(sock)).await {
                        Ok(Ok(tls)) => connection(tls, peer, input, stats).await,
                        Ok(Err(e)) => {
                            stats
                                .tls_failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(%peer, error = %e, "control plane: TLS handshake refused");
                        }
                        Err(_) => {
                            stats
                                .tls_failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(%peer, "control plane: TLS handshake timed out");
                        }
                    }
                }
                None => connection(sock, peer, input, stats).await,
            }
        });
    }
    drop(input_tx);
    actor.abort();
}

/// The next connection under the cap, for the TLS servers' accept loops: waits for a free slot
/// of `limit`, then accepts (an accept error is logged and retried after 50 ms); None once
/// `shutdown` resolves. The permit is held for the connection's lifetime.
pub async fn accept_capped<F: Future<Output = ()>>(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    shutdown: &mut std::pin::Pin<&mut F>,
    what: &str,
) -> Option<(tokio::sync::OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        _ = shutdown.as_mut() => return None,
        p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
    };
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            r = listener.accept() => match r {
                Ok((sock, peer)) => return Some((permit, sock, peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Sets TCP_NODELAY and marks a connection's TOS byte (best effort: a failure is logged, the
/// connection goes on).
pub fn set_tos(sock: &TcpStream, tos: u8) {
    let _ = socket2::SockRef::from(sock).set_tcp_nodelay(true);
    if let Err(e) = mark_tos(sock, tos) {
        tracing::debug!(error = %e, "cannot set TOS");
    }
}

/// Marks a socket's packets with `tos`: the IPv4 TOS byte, or on an IPv6 socket the traffic
/// class (and the TOS byte for IPv4-mapped peers). On a listener, Linux sends the SYN-ACK with it
/// and accepted sockets inherit it.
pub fn mark_tos(sock: &impl std::os::fd::AsFd, tos: u8) -> std::io::Result<()> {
    let s = socket2::SockRef::from(sock);
    match s.local_addr()?.as_socket() {
        Some(SocketAddr::V6(_)) => {
            let _ = s.set_tos_v4(tos as u32);
            s.set_tclass_v6(tos as u32)
        }
        _ => s.set_tos_v4(tos as u32),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    input: mpsc::Sender<Input>,
    stats: Arc<ControlStats>,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    if input
        .send(Input::Connected {
            peer,
            outbox: out_tx,
            reply: reply_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let Ok(sid) = reply_rx.await else { return };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut wbuf = Vec::with_capacity(4096);
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                let Some(f) = out else { break }; // the actor closed the session
                wbuf.clear();
                f.encode(&mut wbuf);
                while let Ok(more) = out_rx.try_recv() {
                    more.encode(&mut wbuf);
                }
                if wr.write_all(&wbuf).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            n = rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                let mut bad = None;
                loop {
                    match frame::parse(&buf, DEFAULT_MAX_BODY) {
                        Ok((f, len)) => {
                            buf.drain(..len);
                            if input.send(Input::Frame(sid, f)).await.is_err() {
                                return;
                            }
                        }
                        Err(frame::Error::Incomplete) => break,
                        Err(e) => { bad = Some(e); break; }
                    }
                }
                if let Some(e) = bad {
                    stats.protocol_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(%peer, error = %e, "control plane: closing connection");
                    wbuf.clear();
                    Frame::new("ProtocolError").with("reason", e.to_string()).encode(&mut wbuf);
                    let _ = wr.write_all(&wbuf).await;
                    let _ = wr.flush().await;
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    let _ = input.send(Input::Closed(sid)).await;
}

async fn actor(
    mut plane: ControlPlane,
    mut input: mpsc::Receiver<Input>,
    mut view: watch::Receiver<Arc<View>>,
    mut ended: mpsc::UnboundedReceiver<(u64, String)>,
    mut on_action: ActionSink,
    stats: Arc<ControlStats>,
) {
    let mut outboxes: HashMap<SessionId, (mpsc::Sender<Frame>, SocketAddr)> = HashMap::new();
    loop {
        let now = wall_now();
        let sleep = plane
            .poll_timeout()
            .map(|t| Duration::from_nanos((t - now).as_nanos().max(0) as u64))
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600));
        tokio::select! {
            i = input.recv() => {
                let Some(i) = i else { return };
                let now = wall_now();
                match i {
                    Input::Connected { peer, outbox, reply } => {
                        let sid = plane.connect(now);
                        outboxes.insert(sid, (outbox, peer));
                        let _ = reply.send(sid);
                    }
                    Input::Frame(sid, f) => plane.handle_frame(now, sid, &f),
                    Input::Closed(sid) => {
                        plane.disconnect(now, sid);
                        outboxes.remove(&sid);
                    }
                }
            }
            changed = view.changed() => {
                if changed.is_ok() {
                    let v = view.borrow_and_update().clone();
                    plane.set_view(v);
                }
            }
            e = ended.recv() => {
                if let Some((id, reason)) = e {
                    plane.end_monitor(wall_now(), id, &reason);
                }
            }
            _ = tokio::time::sleep(sleep) => plane.handle_timeout(wall_now()),
        }
        while let Some((sid, f)) = plane.poll_transmit() {
            if let Some((tx, _)) = outboxes.get(&sid) {
                if tx.try_send(f).is_err() {
                    // A client that does not read its replies is dropped, never waited for.
                    outboxes.remove(&sid);
                    plane.disconnect(wall_now(), sid);
                }
            }
        }
        while let Some(sid) = plane.poll_close() {
            outboxes.remove(&sid); // dropping the sender closes the connection
        }
        while let Some(a) = plane.poll_action() {
            let peer = match &a {
                Action::MonitorStarted { session, .. } | Action::Bind { session, .. } => {
                    outboxes.get(session).map(|o| o.1)
                }
                Action::MonitorStopped { .. } => None,
            };
            on_action(&a, peer);
        }
        for (i, (_, n)) in plane.session_counts().into_iter().enumerate() {
            stats.sessions[i].store(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The mode names used in metrics labels, in [`ControlStats::sessions`] order.
pub const MODE_LABELS: [&str; 4] = ["none", "agent", "supervisor", "monitor"];

#[cfg(test)]
mod tests {
    use super::mark_tos;

    #[test]
    fn mark_tos_sets_the_tos_byte_on_ipv4_and_the_traffic_class_on_ipv6() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        mark_tos(&v4, 0xB8).unwrap();
        assert_eq!(socket2::SockRef::from(&v4).tos_v4().unwrap(), 0xB8);
        // The build and CI machines have ::1 on lo.
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        mark_tos(&v6, 0xB8).unwrap();
        assert_eq!(socket2::SockRef::from(&v6).tclass_v6().unwrap(), 0xB8);
    }
}
