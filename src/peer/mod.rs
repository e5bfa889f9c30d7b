//! The cluster's peer link (TCP 42029): appliances forward a monitored agent's audio to each
//! other, so a supervisor hears any agent from any appliance of the cluster.
//!
//! Every appliance runs both halves towards each listed peer:
//! - the **asking side** ([`link`], sans-IO; [`client`], its tokio shell): dials the peer,
//!   learns what the peer's SPAN sees (agents on calls, their calls), and subscribes to every
//!   agent a local supervisor monitors; the peer's media frames go to the engine thread
//!   ([`FromPeer`]), which forwards them to the local monitors like its own SPAN's packets;
//! - the **serving side** ([`serving`], sans-IO; [`server`], its tokio shell): accepts listed
//!   peers (mutual TLS; the certificate must name a listed peer and be an appliance's), tells
//!   them what this SPAN sees as it changes, and serves each subscription as a router monitor
//!   whose fanout subscriber is the link (bounded, drop-oldest, counted: a slow peer never
//!   stalls capture).
//!
//! Rules: each appliance is authoritative for its own SPAN (no consensus, no central store);
//! team rights and the monitor's audit entries stay on the asking side, the serving side
//! audits each subscription with the supervisors it is for; one copy of an agent's audio per
//! link however many supervisors listen; the frames are `monitor::wire`'s ([`wire`]).
//! [`Cluster`] holds what the lists, `ctl cluster` and the metrics show.

pub mod client;
pub mod link;
pub mod server;
pub mod serving;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::binding::Direction;
use crate::codec::PayloadMap;
use crate::router::CallView;
use crate::time::Timestamp;

/// What a peer link hands the engine thread. Media carries a pooled buffer the engine gives
/// back ([`PeerChannels::spent`]), so nothing is allocated per packet once warm.
#[derive(Debug)]
pub enum FromPeer {
    /// One RTP packet of a subscribed agent.
    Media {
        /// The peer's index.
        peer: u16,
        /// The agent's index.
        agent: usize,
        /// Relative to the agent.
        direction: Direction,
        /// The peer's stream id.
        stream: u32,
        /// Capture time on the peer.
        capture_ts: Timestamp,
        /// The RTP packet (a pooled buffer).
        rtp: Vec<u8>,
    },
    /// A subscribed agent's audio now comes from this call on the peer.
    Call {
        /// The peer's index.
        peer: u16,
        /// The agent's index.
        agent: usize,
        /// SIP Call-ID.
        call_id: String,
        /// Its payload formats.
        payloads: PayloadMap,
        /// When it started.
        started: Timestamp,
    },
    /// A call of a subscribed agent ended on the peer.
    CallEnded {
        /// The peer's index.
        peer: u16,
        /// The agent's index.
        agent: usize,
        /// SIP Call-ID.
        call_id: String,
    },
    /// The link to the peer went down.
    Down {
        /// The peer's index.
        peer: u16,
    },
}

/// Frames from peers queued towards the engine thread. Full: a media frame is dropped and
/// counted ([`PeerCounters::dropped`]); the reader never waits, so a stalled engine never
/// backs up into the link (its TCP window does).
pub const TO_ENGINE: usize = 4096;

/// The channels between the peer links and the engine thread.
#[derive(Clone)]
pub struct PeerChannels {
    /// Frames to the engine thread.
    pub to_engine: crossbeam_channel::Sender<FromPeer>,
    /// Buffers the engine gives back.
    pub spent: crossbeam_channel::Receiver<Vec<u8>>,
}

/// The engine thread's ends of [`PeerChannels`], and the peers' names by index.
pub struct EnginePeers {
    /// Frames from the links.
    pub from_peers: crossbeam_channel::Receiver<FromPeer>,
    /// Where spent buffers go back.
    pub spent: crossbeam_channel::Sender<Vec<u8>>,
    /// The peers' names, by index.
    pub names: Vec<String>,
}

/// The bounded channels both ways.
pub fn channels(names: Vec<String>) -> (PeerChannels, EnginePeers) {
    let (to_engine, from_peers) = crossbeam_channel::bounded(TO_ENGINE);
    let (spent_tx, spent) = crossbeam_channel::bounded(TO_ENGINE);
    (
        PeerChannels { to_engine, spent },
        EnginePeers {
            from_peers,
            spent: spent_tx,
            names,
        },
    )
}

/// A peer as `ctl cluster`, the lists and the metrics show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name (its certificate's).
    pub name: String,
    /// Where it is dialed.
    pub address: String,
    /// The asking link is up.
    pub up: bool,
    /// Since when it is up or down (seconds since the epoch).
    pub since: f64,
    /// The last heartbeat's round trip.
    pub rtt_ms: Option<f64>,
    /// Agents it sees on calls.
    pub agents: usize,
    /// Subscriptions this appliance holds there.
    pub asked: usize,
    /// Subscriptions it holds here.
    pub served: usize,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Media frames received from it.
    pub media_in: u64,
    /// Media frames sent to it.
    pub media_out: u64,
    /// Media frames from it dropped because the engine thread was behind.
    pub dropped: u64,
}

/// The cluster as this appliance knows it: its peers, and what each one's SPAN sees.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// This appliance's name.
    pub me: String,
    /// The peers, in configuration order.
    pub peers: Vec<PeerStatus>,
    /// By peer (same order): agent id -> its calls there.
    pub seen: Vec<BTreeMap<String, Vec<CallView>>>,
}

impl ClusterView {
    /// The peer whose SPAN shows `agent` on a call, if any.
    pub fn where_is(&self, agent: &str) -> Option<&str> {
        self.seen
            .iter()
            .zip(&self.peers)
            .find(|(seen, p)| p.up && seen.get(agent).is_some_and(|c| !c.is_empty()))
            .map(|(_, p)| p.name.as_str())
    }
}

/// One peer's traffic counters (atomics: the links count, snapshots read).
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Bytes received on the asking link.
    pub bytes_in: AtomicU64,
    /// Bytes written on the serving link.
    pub bytes_out: AtomicU64,
    /// Media frames received.
    pub media_in: AtomicU64,
    /// Media frames queued towards it (the serving link's subscriber counts them too).
    pub media_out: AtomicU64,
    /// Media frames dropped towards the engine thread.
    pub dropped: AtomicU64,
}

struct PeerState {
    status: PeerStatus,
    seen: BTreeMap<String, Vec<CallView>>,
}

/// What the links know of the cluster, shared by the asking and serving shells; changes are
/// rare (link up/down, a peer's picture, a subscription), never per packet.
pub struct Cluster {
    me: String,
    peers: Mutex<Vec<PeerState>>,
    /// Counters, by peer index.
    pub counters: Vec<Arc<PeerCounters>>,
    view: watch::Sender<Arc<ClusterView>>,
}

impl Cluster {
    /// The cluster of `me` and the peers `(name, address)`, with the receiver of its views.
    pub fn new(
        me: &str,
        peers: &[(String, String)],
        now: Timestamp,
    ) -> (Arc<Cluster>, watch::Receiver<Arc<ClusterView>>) {
        let states = peers
            .iter()
            .map(|(name, address)| PeerState {
                status: PeerStatus {
                    name: name.clone(),
                    address: address.clone(),
                    since: now.as_secs_f64(),
                    ..PeerStatus::default()
                },
                seen: BTreeMap::new(),
            })
            .collect();
        let (tx, rx) = watch::channel(Arc::new(ClusterView {
            me: me.to_owned(),
            ..ClusterView::default()
        }));
        let c = Arc::new(Cluster {
            me: me.to_owned(),
            peers: Mutex::new(states),
            counters: peers.iter().map(|_| Arc::default()).collect(),
            view: tx,
        });
        c.publish();
        (c, rx)
    }

    /// This appliance's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The index of the peer named `name`.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        let peers = self.lock();
        peers
            .iter()
            .position(|p| p.status.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PeerState>> {
        // Every update is a few plain assignments: a panic elsewhere leaves it consistent.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates peer `i` with `f`, then publishes a new view.
    pub fn update(
        &self,
        i: u16,
        f: impl FnOnce(&mut PeerStatus, &mut BTreeMap<String, Vec<CallView>>),
    ) {
        {
            let mut peers = self.lock();
            if let Some(p) = peers.get_mut(usize::from(i)) {
                f(&mut p.status, &mut p.seen);
                p.status.agents = p.seen.values().filter(|c| !c.is_empty()).count();
            }
        }
        self.publish();
    }

    /// The latest view.
    pub fn view_now(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// Publishes a view with the counters as they are now (also called once a second).
    pub fn publish(&self) {
        let view = {
            let peers = self.lock();
            ClusterView {
                me: self.me.clone(),
                peers: peers
                    .iter()
                    .zip(&self.counters)
                    .map(|(p, c)| {
                        let mut s = p.status.clone();
                        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                        s.bytes_in = get(&c.bytes_in);
                        s.bytes_out = get(&c.bytes_out);
                        s.media_in = get(&c.media_in);
                        s.media_out = get(&c.media_out);
                        s.dropped = get(&c.dropped);
                        s
                    })
                    .collect(),
                seen: peers.iter().map(|p| p.seen.clone()).collect(),
            }
        };
        self.view.send_replace(Arc::new(view));
    }
}

/// The agents local supervisors monitor: the peer links' demand, kept by the action handler
/// as monitors start and stop (a count per agent and supervisor).
pub struct DemandBoard {
    counts: BTreeMap<String, BTreeMap<String, u32>>,
    tx: watch::Sender<Arc<link::Demand>>,
}

impl DemandBoard {
    /// An empty board and the receiver the links watch.
    pub fn new() -> (DemandBoard, watch::Receiver<Arc<link::Demand>>) {
        let (tx, rx) = watch::channel(Arc::new(link::Demand::new()));
        (
            DemandBoard {
                counts: BTreeMap::new(),
                tx,
            },
            rx,
        )
    }

    /// A monitor of `agent` for `supervisor` started.
    pub fn add(&mut self, agent: &str, supervisor: &str) {
        *self
            .counts
            .entry(agent.to_owned())
            .or_default()
            .entry(supervisor.to_owned())
            .or_default() += 1;
        self.publish();
    }

    /// A monitor of `agent` for `supervisor` ended.
    pub fn remove(&mut self, agent: &str, supervisor: &str) {
        if let Some(sups) = self.counts.get_mut(agent) {
            if let Some(n) = sups.get_mut(supervisor) {
                *n -= 1;
                if *n == 0 {
                    sups.remove(supervisor);
                }
            }
            if sups.is_empty() {
                self.counts.remove(agent);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let demand: link::Demand = self
            .counts
            .iter()
            .map(|(a, s)| (a.clone(), s.keys().cloned().collect()))
            .collect();
        self.tx.send_replace(Arc::new(demand));
    }
}
