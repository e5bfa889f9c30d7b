//! The asking side's tokio shell: one task per listed peer running its sans-IO [`Link`]:
//! dials when the link says (mutual TLS, the peer verified under its listed name), writes what
//! it says to send, feeds it the peer's control frames, the demand and time, and hands the
//! peer's media straight to the engine thread ([`FromPeer::Media`], pooled buffers) without
//! going through the core.
//!
//! Rules: the reader never waits on the engine: a full queue drops the media frame (counted)
//! and keeps a notice (`Call`, `CallEnded`, `Down`) for the next turn; a write that does not
//! finish within one heartbeat interval is a dead link; what the peer sees and the link's
//! health go to the [`Cluster`] (lists, `ctl cluster`, metrics).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::link::{Demand, Link, LinkAction, LinkEvent};
use super::wire::{decode, AgentCalls, PeerFrame};
use super::{Cluster, FromPeer, PeerChannels, PeerCounters};
use crate::clock::wall_now;
use crate::monitor::wire::{self, Error as WireError, Media};
use crate::net::{dial, Stream, CONNECT_TIMEOUT};
use crate::time::Span;

/// Bytes a pooled RTP buffer starts with.
const RTP_BUFFER: usize = 256;

/// What one asking link needs.
pub struct PeerClient {
    /// The peer's index (its place in the configuration).
    pub index: u16,
    /// Its name (its certificate's).
    pub name: String,
    /// Where to dial it.
    pub address: String,
    /// This appliance's name.
    pub me: String,
    /// Mutual TLS with this appliance's certificate (None: plaintext, `--insecure`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What the links know of the cluster.
    pub cluster: Arc<Cluster>,
    /// Configured agents' ids -> indexes.
    pub agents: Arc<HashMap<String, usize>>,
    /// The way to the engine thread.
    pub channels: PeerChannels,
    /// What local supervisors monitor.
    pub demand: watch::Receiver<Arc<Demand>>,
    /// Heartbeat interval.
    pub interval: Duration,
    /// Heartbeats missed before the link is down.
    pub misses: u32,
}

/// The task's state besides the core.
struct Shell {
    c: PeerClient,
    counters: Arc<PeerCounters>,
    stream: Option<Box<dyn Stream>>,
    /// Notices the engine's full queue did not take yet.
    pending: VecDeque<FromPeer>,
    /// The round trip last shown in the cluster's view.
    shown_rtt: Option<Span>,
}

/// Runs the link to one peer until `shutdown` resolves.
pub async fn run(c: PeerClient, shutdown: impl std::future::Future<Output = ()>) {
    let span = Span::from_nanos(c.interval.as_nanos() as i64);
    let mut link = Link::new(&c.me, &c.name, span, c.misses, wall_now());
    link.set_demand(&c.demand.borrow());
    let counters = c.cluster.counters[usize::from(c.index)].clone();
    let mut sh = Shell {
        c,
        counters,
        stream: None,
        pending: VecDeque::new(),
        shown_rtt: None,
    };
    tokio::pin!(shutdown);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        sh.carry_out(&mut link, &mut buf).await;
        let wake = link.poll_timeout().map_or(Duration::from_secs(1), |t| {
            Duration::from_nanos((t - wall_now()).as_nanos().max(0) as u64)
        });
        // Notices waiting for the engine are retried at least every 10 ms.
        let wake = if sh.pending.is_empty() {
            wake
        } else {
            wake.min(Duration::from_millis(10))
        };
        tokio::select! {
            _ = &mut shutdown => break,
            n = read(&mut sh.stream, &mut chunk) => match n {
                Some(n) => {
                    sh.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    buf.extend_from_slice(&chunk[..n]);
                    if let Err(e) = sh.frames(&mut link, &mut buf) {
                        sh.stream = None;
                        link.disconnected(wall_now(), &e);
                    }
                }
                None => {
                    sh.stream = None;
                    buf.clear();
                    link.disconnected(wall_now(), "the connection closed");
                }
            },
            changed = sh.c.demand.changed() => {
                if changed.is_ok() {
                    let d = sh.c.demand.borrow_and_update().clone();
                    link.set_demand(&d);
                }
            }
            _ = tokio::time::sleep(wake) => link.handle_timeout(wall_now()),
        }
        sh.flush_pending();
        sh.show_rtt(&link);
    }
}

/// Reads from the connection, or waits forever when there is none.
async fn read(stream: &mut Option<Box<dyn Stream>>, chunk: &mut [u8]) -> Option<usize> {
    match stream {
        Some(s) => match s.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

impl Shell {
    /// Does what the link asks until it asks nothing.
    async fn carry_out(&mut self, link: &mut Link, buf: &mut Vec<u8>) {
        while let Some(a) = link.poll() {
            match a {
                LinkAction::Connect => self.connect(link, buf).await,
                LinkAction::Send(bytes) => self.send(link, &bytes).await,
                LinkAction::Close(reason) => {
                    tracing::warn!(peer = %self.c.name, %reason, "peer link closed");
                    self.stream = None;
                    buf.clear();
                }
                LinkAction::Event(e) => self.event(link, e),
            }
        }
    }

    async fn connect(&mut self, link: &mut Link, buf: &mut Vec<u8>) {
        let tls = self.c.tls.clone().map(|t| (t, self.c.name.as_str()));
        buf.clear();
        match dial(&self.c.address, tls, CONNECT_TIMEOUT).await {
            Ok(s) => {
                self.stream = Some(s);
                link.connected(wall_now());
            }
            Err(e) => {
                tracing::debug!(peer = %self.c.name, error = %e, "peer not reached");
                link.disconnected(wall_now(), &e.to_string());
            }
        }
    }

    async fn send(&mut self, link: &mut Link, bytes: &[u8]) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let write = async {
            s.write_all(bytes).await?;
            s.flush().await
        };
        let failed = match tokio::time::timeout(self.c.interval, write).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("a write did not finish within a heartbeat interval".into()),
        };
        if let Some(reason) = failed {
            self.stream = None;
            link.disconnected(wall_now(), &reason);
        }
    }

    /// Every whole frame in `buf`: media to the engine, the rest to the core.
    fn frames(&mut self, link: &mut Link, buf: &mut Vec<u8>) -> Result<(), String> {
        let mut used = 0;
        let now = wall_now();
        loop {
            match decode(&buf[used..]) {
                Ok((PeerFrame::Media(m), n)) => {
                    used += n;
                    self.media(link, &m);
                }
                Ok((f, n)) => {
                    used += n;
                    link.handle_frame(now, &f);
                }
                Err(WireError::Incomplete) => break,
                Err(e @ WireError::TooLarge { .. }) => return Err(e.to_string()),
                Err(e) => {
                    tracing::warn!(peer = %self.c.name, error = %e, "bad frame from peer");
                    used += wire::check(&buf[used..]).unwrap_or(buf.len() - used);
                }
            }
        }
        buf.drain(..used);
        Ok(())
    }

    /// A media frame: to the engine thread in a pooled buffer, or dropped (counted).
    fn media(&mut self, link: &Link, m: &Media<'_>) {
        self.counters.media_in.fetch_add(1, Ordering::Relaxed);
        let Some(agent) = link.agent_of(m.monitor).and_then(|a| self.c.agents.get(a)) else {
            return; // an id of an earlier connection, or none we gave
        };
        let mut rtp = self
            .c
            .channels
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(RTP_BUFFER));
        rtp.clear();
        rtp.extend_from_slice(m.rtp);
        let f = FromPeer::Media {
            peer: self.c.index,
            agent: *agent,
            direction: m.direction,
            stream: m.stream,
            capture_ts: m.capture_ts,
            rtp,
        };
        if self.c.channels.to_engine.try_send(f).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An event of the link: to the cluster's picture and the engine thread.
    fn event(&mut self, link: &Link, e: LinkEvent) {
        let (i, now) = (self.c.index, wall_now());
        let agent_index = |a: &str| self.c.agents.get(a).copied();
        match e {
            LinkEvent::Up => {
                tracing::info!(peer = %self.c.name, "peer link up");
                self.c.cluster.update(i, |s, _| {
                    s.up = true;
                    s.since = now.as_secs_f64();
                });
            }
            LinkEvent::Down { reason } => {
                tracing::warn!(peer = %self.c.name, %reason, "peer link down");
                self.c.cluster.update(i, |s, seen| {
                    s.up = false;
                    s.since = now.as_secs_f64();
                    s.asked = 0;
                    s.rtt_ms = None;
                    seen.clear();
                });
                self.pending.push_back(FromPeer::Down { peer: i });
            }
            LinkEvent::Seen { full, agents } => self
                .c
                .cluster
                .update(i, |_, seen| merge_seen(seen, full, agents)),
            LinkEvent::Call {
                agent,
                call_id,
                payloads,
                started,
            } => {
                if let Some(agent) = agent_index(&agent) {
                    self.pending.push_back(FromPeer::Call {
                        peer: i,
                        agent,
                        call_id,
                        payloads,
                        started,
                    });
                }
            }
            LinkEvent::CallEnded { agent, call_id } => {
                if let Some(agent) = agent_index(&agent) {
                    self.pending.push_back(FromPeer::CallEnded {
                        peer: i,
                        agent,
                        call_id,
                    });
                }
            }
            LinkEvent::Refused { agent, reason } => {
                tracing::warn!(peer = %self.c.name, ?agent, %reason, "peer refused");
            }
        }
        let (asked, rtt) = (link.subscriptions(), link.rtt());
        self.c.cluster.update(i, |s, _| {
            s.asked = asked;
            s.rtt_ms = rtt.map(|r| r.as_secs_f64() * 1e3);
        });
    }

    /// A new heartbeat round trip goes to the cluster's view.
    fn show_rtt(&mut self, link: &Link) {
        let rtt = link.rtt();
        if rtt != self.shown_rtt && link.up_since().is_some() {
            self.shown_rtt = rtt;
            self.c.cluster.update(self.c.index, |s, _| {
                s.rtt_ms = rtt.map(|r| r.as_secs_f64() * 1e3);
            });
        }
    }

    /// Hands the engine the notices it can take now, in order.
    fn flush_pending(&mut self) {
        while let Some(n) = self.pending.pop_front() {
            if let Err(e) = self.c.channels.to_engine.try_send(n) {
                self.pending.push_front(e.into_inner());
                return;
            }
        }
    }
}

/// Applies a peer's `Seen` to what is known of it.
fn merge_seen(
    seen: &mut std::collections::BTreeMap<String, Vec<crate::router::CallView>>,
    full: bool,
    agents: Vec<AgentCalls>,
) {
    if full {
        seen.clear();
    }
    for a in agents {
        if a.calls.is_empty() {
            seen.remove(&a.agent);
        } else {
            seen.insert(a.agent, a.calls);
        }
    }
}
