//! The control plane's I/O shell (TCP 42028): connections accepted through [`net::listen`]
//! (connection and handshake caps, TLS 1.3 within a timeout, AF31 marking; plaintext only with
//! `--insecure`), one task per connection that only moves frames, one actor task that owns the
//! sans-IO [`ControlPlane`], feeds it connections, frames, verification results and `now`, and
//! carries out what it returns (frames to send, sessions to close, [`Action`]s for the engine
//! and the audit trail), and a small pool that verifies passwords off the actor (argon2 is
//! slow on purpose). No protocol decision is made here.
//!
//! Queues and their full case: the connections' input to the actor is bounded (4096; a
//! connection task waits, which slows only that client); each session's outbox is bounded
//! ([`OUTBOX_FRAMES`]; a client that does not read its replies is dropped, never waited for);
//! the ended-monitor channel from other shells is bounded ([`ENDED_QUEUE`]; full: the ending
//! is counted as lost and logged, the sender never blocks); password checks run on
//! [`PasswordPool`]'s fixed threads (one argon2 block each) and at most `max_verifying` are in
//! flight (the core refuses more). A bad frame ends its connection (with a `ProtocolError` frame saying why), never
//! the server. `run` ends when its shutdown future resolves.
//!
//! [`net::listen`]: crate::net::listen

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::frame::{self, Frame, DEFAULT_MAX_BODY};
pub use super::monitoring::HeardCall;
use super::password_pool::{self, PasswordPool};
use super::plane::{Action, ControlPlane, PlaneCounters, SessionId, Verification};
use super::reply::StopReason;
use crate::clock::wall_now;
use crate::net::listen::{Accepted, Limits, ListenStats, Listener};
use crate::peer::ClusterView;
use crate::router::View;

/// Frames queued towards one slow client before it is dropped.
pub const OUTBOX_FRAMES: usize = 1024;
/// Monitor endings other shells may queue for the actor.
pub const ENDED_QUEUE: usize = 4096;
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

/// Handle for other shells (the monitor service, the engine thread) to reach the control plane.
#[derive(Clone)]
pub struct ControlHandle {
    ended: mpsc::Sender<(u64, StopReason)>,
    states: mpsc::Sender<(usize, &'static str)>,
    heard: mpsc::Sender<HeardCall>,
    lost: Arc<AtomicU64>,
}

impl ControlHandle {
    /// The CTI Server says agent `agent` is in `state`. Never blocks: with the queue full the
    /// state is counted as lost and logged (the next state change corrects it).
    pub fn agent_state(&self, agent: usize, state: &'static str) {
        if self.states.try_send((agent, state)).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(agent, state, "control plane not taking agent states");
        }
    }

    /// Tells the control plane that a monitor hears another call. Never blocks: with the
    /// queue full the warning is counted as lost and logged (the monitor goes on).
    pub fn heard_call(&self, heard: HeardCall) {
        if let Err(e) = self.heard.try_send(heard) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            let h = e.into_inner();
            tracing::warn!(
                monitor = h.monitor,
                call_id = h.call_id,
                "control plane not taking heard calls"
            );
        }
    }

    /// Tells the control plane that monitor `id` ended outside it (its endpoint went away, a
    /// non-ACD call). Never blocks: with the queue full the ending is counted and logged.
    pub fn end_monitor(&self, id: u64, reason: StopReason) {
        if let Err(e) = self.ended.try_send((id, reason)) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            let (_, reason) = e.into_inner();
            tracing::error!(
                monitor = id,
                %reason,
                "control plane not taking monitor endings"
            );
        }
    }
}

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Sessions now, by mode: none, agent, supervisor, monitor.
    pub sessions: [AtomicU64; 4],
    /// The listener's counters (accepted, TLS failures, handshakes refused).
    pub listen: Arc<ListenStats>,
    /// Connections closed for protocol errors.
    pub protocol_errors: AtomicU64,
    /// Logins refused.
    pub logins_failed: AtomicU64,
    /// Logins refused by the throttle.
    pub logins_throttled: AtomicU64,
    /// Connections closed for not logging in in time.
    pub login_timeouts: AtomicU64,
    /// Connections closed by the caps on connections without a login.
    pub unauthenticated_closed: AtomicU64,
    /// Requests refused.
    pub requests_refused: AtomicU64,
    /// Monitor endings, agent states and heard calls lost to a full queue.
    pub inbox_lost: Arc<AtomicU64>,
}

impl ControlStats {
    fn copy(&self, c: &PlaneCounters) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.logins_failed, c.logins_failed);
        set(&self.logins_throttled, c.logins_throttled);
        set(&self.login_timeouts, c.login_timeouts);
        set(&self.unauthenticated_closed, c.unauthenticated_closed);
        set(&self.requests_refused, c.requests_refused);
    }
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
    /// What the cluster's peers see (None: no cluster).
    pub cluster: Option<watch::Receiver<Arc<ClusterView>>>,
    /// Where actions go (the engine thread and the audit log).
    pub actions: ActionSink,
    /// Counters.
    pub stats: Arc<ControlStats>,
    /// TOS byte for signalling sockets (0x68 = AF31).
    pub tos: u8,
    /// Connection and handshake caps.
    pub limits: Limits,
}

/// Creates the handle other shells use and the receiver `run` consumes; endings lost to a
/// full queue are counted in `stats`.
pub fn handle(stats: &ControlStats) -> (ControlHandle, Inbox) {
    let (tx, rx) = mpsc::channel(ENDED_QUEUE);
    let (states_tx, states) = mpsc::channel(ENDED_QUEUE);
    let (heard_tx, heard) = mpsc::channel(ENDED_QUEUE);
    (
        ControlHandle {
            ended: tx,
            states: states_tx,
            heard: heard_tx,
            lost: stats.inbox_lost.clone(),
        },
        Inbox {
            ended: rx,
            states,
            heard,
        },
    )
}

/// What other shells tell the control plane, for `run`: monitor endings (the monitor service,
/// the engine thread), agent states (the CTI client) and the calls monitors hear (the engine
/// thread). All bounded ([`ENDED_QUEUE`]).
pub struct Inbox {
    /// Monitors that ended outside the control plane.
    pub ended: mpsc::Receiver<(u64, StopReason)>,
    /// Agent states from the CTI Server.
    pub states: mpsc::Receiver<(usize, &'static str)>,
    /// Calls monitors now hear.
    pub heard: mpsc::Receiver<HeardCall>,
}

/// Serves the control plane on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    server: ControlServer,
    inbox: Inbox,
    shutdown: impl Future<Output = ()>,
) {
    let ControlServer {
        plane,
        tls,
        view,
        cluster,
        actions,
        stats,
        tos,
        limits,
    } = server;
    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let links = Links {
        cluster,
        states: inbox.states,
        heard: inbox.heard,
        ended: inbox.ended,
        input: input_rx,
        view,
        stop: stop_rx,
    };
    let mut actor = tokio::spawn(actor(plane, links, actions, stats.clone()));
    let listener = Listener::new(
        listener,
        tls,
        tos,
        limits,
        "control plane",
        stats.listen.clone(),
    );
    listener
        .run(shutdown, move |a: Accepted| {
            connection(a, input_tx.clone(), stats.clone())
        })
        .await;
    // The actor ends every monitor (audited, revoked, unrouted), then returns.
    let _ = stop_tx.send(());
    if tokio::time::timeout(SHUTDOWN_WAIT, &mut actor)
        .await
        .is_err()
    {
        tracing::warn!("control plane: the actor did not finish in time");
        actor.abort();
    }
}

/// Longest the shutdown waits for the actor to end the monitors.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// What the actor listens to besides the password pool.
struct Links {
    input: mpsc::Receiver<Input>,
    view: watch::Receiver<Arc<View>>,
    ended: mpsc::Receiver<(u64, StopReason)>,
    stop: tokio::sync::oneshot::Receiver<()>,
    cluster: Option<watch::Receiver<Arc<ClusterView>>>,
    states: mpsc::Receiver<(usize, &'static str)>,
    heard: mpsc::Receiver<HeardCall>,
}

/// The next cluster view, or never (no cluster, or its sender is gone).
async fn cluster_changed(
    rx: &mut Option<watch::Receiver<Arc<ClusterView>>>,
) -> Option<Arc<ClusterView>> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    if r.changed().await.is_err() {
        *rx = None;
        return None;
    }
    Some(r.borrow_and_update().clone())
}

async fn connection(a: Accepted, input: mpsc::Sender<Input>, stats: Arc<ControlStats>) {
    let Accepted { stream, peer, .. } = a;
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let connected = Input::Connected {
        peer,
        outbox: out_tx,
        reply: reply_tx,
    };
    if input.send(connected).await.is_err() {
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
                match frames(&mut buf, sid, &input).await {
                    Ok(()) => {}
                    Err(None) => return,
                    Err(Some(e)) => {
                        stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
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
    }
    let _ = wr.shutdown().await;
    let _ = input.send(Input::Closed(sid)).await;
}

/// Passes every whole frame at the start of `buf` to the actor and drops it from `buf`.
/// `Err(Some(e))`: a framing error ends the connection; `Err(None)`: the actor is gone.
async fn frames(
    buf: &mut Vec<u8>,
    sid: SessionId,
    input: &mpsc::Sender<Input>,
) -> Result<(), Option<frame::Error>> {
    loop {
        match frame::parse(buf, DEFAULT_MAX_BODY) {
            Ok((f, len)) => {
                buf.drain(..len);
                input.send(Input::Frame(sid, f)).await.map_err(|_| None)?;
            }
            Err(frame::Error::Incomplete) => return Ok(()),
            Err(e) => return Err(Some(e)),
        }
    }
}

/// The actor's state besides the plane: where each session's frames go, and the password
/// pool.
struct Shell {
    outboxes: HashMap<SessionId, (mpsc::Sender<Frame>, SocketAddr)>,
    passwords: PasswordPool,
    on_action: ActionSink,
    stats: Arc<ControlStats>,
}

async fn actor(
    mut plane: ControlPlane,
    links: Links,
    on_action: ActionSink,
    stats: Arc<ControlStats>,
) {
    let Links {
        mut input,
        mut view,
        mut ended,
        mut stop,
        mut cluster,
        mut states,
        mut heard,
    } = links;
    if let Some(c) = cluster.as_mut() {
        plane.set_cluster(c.borrow_and_update().clone());
    }
    // As many answers fit as checks may be in flight; the pool's senders never wait long.
    let (verified_tx, mut verified_rx) = mpsc::channel(password_pool::JOBS);
    let mut shell = Shell {
        outboxes: HashMap::new(),
        passwords: PasswordPool::start(verified_tx),
        on_action,
        stats,
    };
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
                shell.input(&mut plane, i);
            }
            changed = view.changed() => {
                if changed.is_ok() {
                    let v = view.borrow_and_update().clone();
                    plane.set_view(v);
                }
            }
            c = cluster_changed(&mut cluster) => {
                if let Some(c) = c {
                    plane.set_cluster(c);
                }
            }
            Some((id, reason)) = ended.recv() => plane.end_monitor(wall_now(), id, reason),
            Some((agent, state)) = states.recv() => plane.cti_agent_state(agent, state),
            Some(h) = heard.recv() => plane.monitor_heard_call(&h),
            _ = &mut stop => {
                plane.shutdown(wall_now());
                shell.carry_out(&mut plane);
                return;
            }
            Some((ticket, ok)) = verified_rx.recv() => plane.handle_verified(wall_now(), ticket, ok),
            _ = tokio::time::sleep(sleep) => plane.handle_timeout(wall_now()),
        }
        shell.carry_out(&mut plane);
    }
}

impl Shell {
    fn input(&mut self, plane: &mut ControlPlane, i: Input) {
        let now = wall_now();
        match i {
            Input::Connected {
                peer,
                outbox,
                reply,
            } => {
                let sid = plane.connect(now, peer);
                self.outboxes.insert(sid, (outbox, peer));
                let _ = reply.send(sid);
            }
            Input::Frame(sid, f) => plane.handle_frame(now, sid, &f),
            Input::Closed(sid) => {
                plane.disconnect(now, sid);
                self.outboxes.remove(&sid);
            }
        }
    }

    /// Carries out everything the plane queued: frames, closes, password checks, actions.
    fn carry_out(&mut self, plane: &mut ControlPlane) {
        while let Some((sid, f)) = plane.poll_transmit() {
            if let Some((tx, _)) = self.outboxes.get(&sid) {
                if tx.try_send(f).is_err() {
                    // A client that does not read its replies is dropped, never waited for.
                    self.outboxes.remove(&sid);
                    plane.disconnect(wall_now(), sid);
                }
            }
        }
        while let Some(sid) = plane.poll_close() {
            self.outboxes.remove(&sid); // dropping the sender closes the connection
        }
        while let Some(v) = plane.poll_verification() {
            self.verify(v);
        }
        while let Some(a) = plane.poll_action() {
            let peer = match &a {
                Action::MonitorStarted { session, .. } | Action::Bind { session, .. } => {
                    self.outboxes.get(session).map(|o| o.1)
                }
                Action::Audit { peer, .. } => *peer,
                Action::MonitorStopped { .. } => None,
            };
            (self.on_action)(&a, peer);
        }
        for (i, (_, n)) in plane.session_counts().into_iter().enumerate() {
            self.stats.sessions[i].store(n as u64, Ordering::Relaxed);
        }
        self.stats.copy(plane.counters());
    }

    /// Checks one password on the pool's threads; the answer comes back to the actor.
    fn verify(&self, v: Verification) {
        self.passwords.check(v);
    }
}

/// The mode names used in metrics labels, in [`ControlStats::sessions`] order.
pub const MODE_LABELS: [&str; 4] = ["none", "agent", "supervisor", "monitor"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::plane::tests::{at, plane};

    #[test]
    fn a_full_endings_queue_counts_the_ending_as_lost_and_never_waits() {
        let stats = ControlStats::default();
        let (handle, inbox) = handle(&stats);
        let mut rx = inbox.ended;
        for id in 0..ENDED_QUEUE as u64 {
            handle.end_monitor(id, StopReason::EndpointDisconnected);
        }
        assert_eq!(stats.inbox_lost.load(Ordering::Relaxed), 0);
        handle.end_monitor(99_999, StopReason::EndpointDisconnected);
        assert_eq!(stats.inbox_lost.load(Ordering::Relaxed), 1);
        assert_eq!(
            rx.try_recv().unwrap(),
            (0, StopReason::EndpointDisconnected)
        );
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_its_replies_is_dropped_not_waited_for() {
        let (verified_tx, _verified_rx) = mpsc::channel(1);
        let mut shell = Shell {
            outboxes: HashMap::new(),
            passwords: PasswordPool::start(verified_tx),
            on_action: Box::new(|_, _| {}),
            stats: Arc::new(ControlStats::default()),
        };
        let mut plane = plane();
        let connect = |shell: &mut Shell, plane: &mut ControlPlane, outbox| {
            let (reply, mut sid) = tokio::sync::oneshot::channel();
            let peer = "10.0.0.5:40000".parse().unwrap();
            shell.input(
                plane,
                Input::Connected {
                    peer,
                    outbox,
                    reply,
                },
            );
            sid.try_recv().unwrap()
        };
        // A reader with room for two frames that never reads, and one that reads.
        let (stuck_tx, _stuck_rx) = mpsc::channel(2);
        let (ok_tx, mut ok_rx) = mpsc::channel(OUTBOX_FRAMES);
        let stuck = connect(&mut shell, &mut plane, stuck_tx);
        let fine = connect(&mut shell, &mut plane, ok_tx);
        for seq in 0..3u64 {
            for sid in [stuck, fine] {
                let beat = Frame::new("Heartbeat").with("seq", seq);
                plane.handle_frame(at(0), sid, &beat);
            }
            shell.carry_out(&mut plane);
        }
        assert!(
            !shell.outboxes.contains_key(&stuck),
            "dropped at its third reply"
        );
        assert!(shell.outboxes.contains_key(&fine));
        assert_eq!(plane.session_counts()[0].1, 1, "its session is gone too");
        let answered = std::iter::from_fn(|| ok_rx.try_recv().ok()).count();
        assert_eq!(answered, 3, "the other client got every reply");
    }
}
