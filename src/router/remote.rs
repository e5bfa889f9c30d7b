//! Audio of monitored agents seen by a cluster peer's SPAN: the peer link hands the router
//! each RTP packet of a subscribed agent with the peer's index, and the router forwards it to
//! every local monitor of that agent exactly as it forwards what its own SPAN sees (same
//! `Forward`, same sink, no copy or allocation per packet); call notices name the peer.
//!
//! Rules: a peer's stream ids are remapped into a range of their own ([`remote_stream`]) so
//! two appliances' streams never collide at an endpoint; a monitor hears one call at a time,
//! local or remote, and a change is announced once; when a peer becomes unreachable, the
//! monitors that were hearing it are told ([`Notice::Interrupted`]) and stay, to hear the
//! agent's next call wherever it is seen.

use super::{Forward, MonitorId, Notice, Router};
use crate::binding::Direction;
use crate::codec::PayloadMap;
use crate::flow::StreamId;
use crate::time::Timestamp;

/// Highest peer index whose streams can be remapped (127 peers).
pub const MAX_PEERS: u16 = 127;

/// The stream id a peer's stream gets here: bit 31 set, the peer in bits 24-30, the low 24
/// bits of the peer's own id (its slot and the low 4 bits of the slot's generation: ids of
/// one slot 16 reuses apart meet here, which nothing downstream tells apart; local flow-table
/// ids stay below 2^31).
pub fn remote_stream(peer: u16, stream: u32) -> StreamId {
    StreamId(0x8000_0000 | (u32::from(peer.min(MAX_PEERS)) << 24) | (stream & 0x00FF_FFFF))
}

/// One RTP packet a peer sent for an agent.
#[derive(Clone, Copy, Debug)]
pub struct RemotePacket<'a> {
    /// The peer's index.
    pub peer: u16,
    /// The agent's index.
    pub agent: usize,
    /// Relative to the agent.
    pub direction: Direction,
    /// The peer's stream id.
    pub stream: u32,
    /// Capture time on the peer.
    pub capture_ts: Timestamp,
    /// The RTP packet.
    pub rtp: &'a [u8],
}

/// A call a peer announced for an agent.
#[derive(Clone, Debug)]
pub struct RemoteCall<'a> {
    /// The peer's index.
    pub peer: u16,
    /// The peer's name.
    pub appliance: &'a str,
    /// The agent's index.
    pub agent: usize,
    /// SIP Call-ID.
    pub call_id: &'a str,
    /// Its payload formats.
    pub payloads: PayloadMap,
    /// When it started.
    pub started: Timestamp,
}

impl Router {
    /// A packet a peer sent for `p.agent`: to every local monitor of the agent.
    pub fn remote_media(&mut self, p: &RemotePacket<'_>, sink: &mut impl FnMut(Forward<'_>)) {
        if self.monitored.get(p.agent).is_none_or(|n| *n == 0) {
            return;
        }
        let stream = remote_stream(p.peer, p.stream);
        for m in self
            .monitors
            .iter()
            .filter(|m| m.agent == p.agent && !m.ending && !m.relay)
        {
            self.stats.forwarded += 1;
            sink(Forward {
                monitor: m.id,
                direction: p.direction,
                stream,
                capture_ts: p.capture_ts,
                rtp: p.rtp,
            });
        }
    }

    /// A peer says `c.agent`'s audio now comes from this call: each local monitor of the agent
    /// that was not hearing it is told (once).
    pub fn remote_call(&mut self, c: &RemoteCall<'_>) {
        for m in self
            .monitors
            .iter_mut()
            .filter(|m| m.agent == c.agent && !m.ending && !m.relay)
        {
            let key = (c.peer, c.call_id.to_owned());
            if m.remote.as_ref() == Some(&key) {
                continue;
            }
            m.remote = Some(key);
            // Hearing a peer's call: a local call that comes back is announced again.
            m.call = None;
            self.notices.push_back(Notice::Call {
                monitor: m.id,
                call_id: c.call_id.to_owned(),
                payloads: c.payloads,
                started: c.started,
                appliance: Some(c.appliance.to_owned()),
                call_type: None,
            });
        }
    }

    /// A peer says a call of `agent` ended.
    pub fn remote_call_ended(&mut self, peer: u16, agent: usize, call_id: &str) {
        for m in self.monitors.iter_mut().filter(|m| m.agent == agent) {
            if m.remote
                .as_ref()
                .is_some_and(|(p, c)| *p == peer && c == call_id)
            {
                m.remote = None;
                self.notices.push_back(Notice::CallEnded {
                    monitor: m.id,
                    call_id: call_id.to_owned(),
                });
            }
        }
    }

    /// Peer `peer` (named `appliance`) became unreachable: the monitors hearing it are told.
    pub fn peer_down(&mut self, peer: u16, appliance: &str) {
        for m in self.monitors.iter_mut() {
            if m.remote.as_ref().is_some_and(|(p, _)| *p == peer) {
                m.remote = None;
                self.notices.push_back(Notice::Interrupted {
                    monitor: m.id,
                    reason: format!("appliance {appliance} is unreachable"),
                });
            }
        }
    }

    /// The monitors forwarding agent `agent`'s audio now (for tests and the lists).
    pub fn monitors_of(&self, agent: usize) -> Vec<MonitorId> {
        self.monitors
            .iter()
            .filter(|m| m.agent == agent && !m.ending)
            .map(|m| m.id)
            .collect()
    }
}
