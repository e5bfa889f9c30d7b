//! The packet path, sans-IO: decapsulate -> classify (SIP / RTP / RTCP / other) -> SIP call table
//! and RTP flow table. Fed frames and their capture time; never reads a clock, a socket or a file,
//! so `flows`, `extract` and the live appliance run exactly this code.
//!
//! Per frame the work is one decapsulation, at most one SIP parse (only for datagrams that look
//! like SIP), one media-endpoint lookup and one flow-table update; nothing is allocated for RTP.

use std::net::SocketAddr;

use crate::flow::{FlowConfig, FlowTable, MediaHint, StreamId, UdpVerdict};
use crate::packet::{DecapConfig, Decapsulator, LinkType, Transport};
use crate::sip::{self, CallConfig, CallTable};
use crate::time::Timestamp;

/// What the engine made of one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    /// A SIP message (parsed into the call table, or counted as malformed).
    Sip,
    /// An RTP packet of the given stream.
    Rtp(StreamId),
    /// An RTCP packet.
    Rtcp,
    /// UDP that may become RTP once more packets confirm it.
    Candidate,
    /// Anything else that decoded (other UDP, TCP, ICMP...).
    Other,
    /// Decapsulation stopped before a transport payload (counted by reason in the decap stats).
    Undecoded,
}

/// Engine settings.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Decapsulation limits.
    pub decap: DecapConfig,
    /// Flow table settings (heuristic RTP detection, caps).
    pub flows: FlowConfig,
    /// Call table settings.
    pub calls: CallConfig,
}

/// Engine counters (the decap, flow and call tables keep their own).
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// Frames handled.
    pub frames: u64,
    /// Bytes captured.
    pub bytes: u64,
    /// SIP messages handed to the call table.
    pub sip_messages: u64,
    /// SIP messages the call table rejected as malformed.
    pub sip_malformed: u64,
    /// RTP packets.
    pub rtp_packets: u64,
    /// RTCP packets.
    pub rtcp_packets: u64,
    /// UDP datagrams that were neither SIP nor media.
    pub other_udp: u64,
    /// TCP segments (SIP over TCP included in `sip_messages`).
    pub tcp_segments: u64,
    /// IP packets that were neither UDP nor TCP.
    pub other_ip: u64,
    /// Frames with no transport payload (see decap stops).
    pub undecoded: u64,
}

/// The packet path.
pub struct Engine {
    decap: Decapsulator,
    calls: CallTable,
    flows: FlowTable,
    stats: EngineStats,
}

impl Engine {
    /// A new engine.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            decap: Decapsulator::new(config.decap),
            calls: CallTable::new(config.calls),
            flows: FlowTable::new(config.flows),
            stats: EngineStats::default(),
        }
    }

    /// Handles one frame captured at `now` on a link of type `link`.
    pub fn handle_frame(&mut self, now: Timestamp, link: LinkType, frame: &[u8]) -> FrameVerdict {
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        let d = self.decap.decapsulate(now, link, frame);
        let Some(ip) = d.ip else {
            self.stats.undecoded += 1;
            return FrameVerdict::Undecoded;
        };
        match d.transport {
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let src = SocketAddr::new(ip.src, src_port);
                let dst = SocketAddr::new(ip.dst, dst_port);
                if sip::looks_like_sip(payload) {
                    self.stats.sip_messages += 1;
                    if self.calls.handle_message(now, src, dst, payload).is_err() {
                        self.stats.sip_malformed += 1;
                    }
                    return FrameVerdict::Sip;
                }
                let calls = &self.calls;
                let hint = || {
                    calls.media_hint(dst).or_else(|| calls.media_hint(src)).map(
                        |(call, payloads)| MediaHint {
                            call,
                            payloads: *payloads,
                        },
                    )
                };
                match self
                    .flows
                    .handle_udp_with(now, &d.vlans, src, dst, payload, hint)
                {
                    UdpVerdict::Rtp(id) => {
                        self.stats.rtp_packets += 1;
                        FrameVerdict::Rtp(id)
                    }
                    UdpVerdict::Rtcp => {
                        self.stats.rtcp_packets += 1;
                        FrameVerdict::Rtcp
                    }
                    UdpVerdict::Candidate => FrameVerdict::Candidate,
                    UdpVerdict::NotMedia => {
                        self.stats.other_udp += 1;
                        FrameVerdict::Other
                    }
                }
            }
            Transport::Tcp {
                src_port,
                dst_port,
                payload,
            } => {
                self.stats.tcp_segments += 1;
                if sip::looks_like_sip(payload) {
                    let src = SocketAddr::new(ip.src, src_port);
                    let dst = SocketAddr::new(ip.dst, dst_port);
                    self.stats.sip_messages += 1;
                    if self.calls.handle_message(now, src, dst, payload).is_err() {
                        self.stats.sip_malformed += 1;
                    }
                    return FrameVerdict::Sip;
                }
                FrameVerdict::Other
            }
            Transport::Other => {
                self.stats.other_ip += 1;
                FrameVerdict::Other
            }
            Transport::None => {
                self.stats.undecoded += 1;
                FrameVerdict::Undecoded
            }
        }
    }

    /// Engine counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The decapsulator (for its counters).
    pub fn decapsulator(&self) -> &Decapsulator {
        &self.decap
    }

    /// The SIP call table.
    pub fn calls(&self) -> &CallTable {
        &self.calls
    }

    /// The RTP flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }
}
