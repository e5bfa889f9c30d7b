//! The packet path, sans-IO: decapsulate -> classify (SIP / RTP / RTCP / other) -> SIP call table
//! and RTP flow table. Fed frames and their capture time; never reads a clock, a socket or a file,
//! so `flows`, `extract` and the live appliance run exactly this code.
//!
//! Per frame the work is one decapsulation, at most one SIP parse (only for datagrams that look
//! like SIP), one media-endpoint lookup and one flow-table update; nothing is allocated for RTP.

use std::net::SocketAddr;

use crate::flow::{FlowConfig, FlowTable, MediaHint, StreamId, UdpVerdict, CANDIDATE_IDLE};
use crate::packet::{DecapConfig, Decapsulated, Decapsulator, LinkType, Transport};
use crate::sip::tcp::{TcpSip, TcpSipStats};
use crate::sip::{self, CallConfig, CallTable};
use crate::time::{Span, Timestamp};

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
    /// T.38 fax (UDPTL) where the SDP switched the media to fax.
    Fax,
    /// Anything else that decoded (other UDP, TCP, ICMP...).
    Other,
    /// Decapsulation stopped before a transport payload (counted by reason in the decap stats).
    Undecoded,
}

/// An RTP packet the engine just accounted, for the live path's forwarding.
#[derive(Copy, Clone, Debug)]
pub struct RtpSeen<'a> {
    /// Its stream.
    pub stream: StreamId,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The whole RTP packet (header and payload).
    pub rtp: &'a [u8],
    /// Its stream is encrypted (SRTP): nothing of it can be played.
    pub encrypted: bool,
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
    /// Streams without a packet this long are forgotten ([`FlowTable::prune`], every
    /// [`PRUNE_EVERY`] from [`Engine::handle_timeout`]); `None` (files): kept to the end.
    pub stream_idle: Option<Span>,
}

/// How often a live engine forgets idle streams.
pub const PRUNE_EVERY: Span = Span::from_secs(10);

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
    /// UDPTL (T.38 fax) datagrams on addresses the SDP switched to fax.
    pub fax_packets: u64,
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
    tcp_sip: TcpSip,
    stats: EngineStats,
    stream_idle: Option<Span>,
    /// When the flow table is next pruned (with `stream_idle`).
    next_prune: Timestamp,
}

impl Engine {
    /// A new engine.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            decap: Decapsulator::new(config.decap),
            calls: CallTable::new(config.calls),
            flows: FlowTable::new(config.flows),
            tcp_sip: TcpSip::default(),
            stats: EngineStats::default(),
            stream_idle: config.stream_idle,
            next_prune: Timestamp::ZERO,
        }
    }

    /// Handles one frame captured at `now` on a link of type `link`.
    pub fn handle_frame(&mut self, now: Timestamp, link: LinkType, frame: &[u8]) -> FrameVerdict {
        self.handle_frame_with(now, link, frame, |_| {})
    }

    /// Like [`Engine::handle_frame`], and hands every RTP packet to `on_rtp` (borrowed from
    /// `frame`: the live path forwards it without copying it first).
    pub fn handle_frame_with(
        &mut self,
        now: Timestamp,
        link: LinkType,
        frame: &[u8],
        mut on_rtp: impl FnMut(RtpSeen<'_>),
    ) -> FrameVerdict {
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        if self.tcp_sip.poll_timeout().is_some_and(|due| now >= due) {
            // Offline reading never calls handle_timeout: gaps expire on capture time here.
            self.expire_tcp_gaps(now);
        }
        let mut d = Decapsulated::empty();
        self.decap.decapsulate_into(now, link, frame, &mut d);
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
                    let mut sink = SipSink {
                        calls: &mut self.calls,
                        flows: &mut self.flows,
                        stats: &mut self.stats,
                    };
                    sink.parse(now, (src, dst), payload);
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
                        on_rtp(RtpSeen {
                            stream: id,
                            src,
                            dst,
                            rtp: payload,
                            encrypted: self.flows.stream(id).is_some_and(|s| s.encrypted()),
                        });
                        FrameVerdict::Rtp(id)
                    }
                    UdpVerdict::Rtcp => {
                        self.stats.rtcp_packets += 1;
                        FrameVerdict::Rtcp
                    }
                    UdpVerdict::Candidate => FrameVerdict::Candidate,
                    UdpVerdict::Fax => {
                        self.stats.fax_packets += 1;
                        FrameVerdict::Fax
                    }
                    UdpVerdict::NotMedia => {
                        self.stats.other_udp += 1;
                        FrameVerdict::Other
                    }
                }
            }
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                closing,
                payload,
            } => {
                self.stats.tcp_segments += 1;
                let src = SocketAddr::new(ip.src, src_port);
                let dst = SocketAddr::new(ip.dst, dst_port);
                let seg = Segment {
                    src,
                    dst,
                    seq,
                    closing,
                    payload,
                };
                let sink = SipSink {
                    calls: &mut self.calls,
                    flows: &mut self.flows,
                    stats: &mut self.stats,
                };
                sip_over_tcp(now, seg, &mut self.tcp_sip, sink)
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

    /// The next SIP call event (new call, answer, media change, end), for the agent bindings.
    /// Call after each frame; unpolled events are bounded and counted by the call table.
    pub fn poll_call_event(&mut self) -> Option<crate::sip::CallEvent> {
        self.calls.poll_event()
    }

    /// When [`Engine::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let prune = self.stream_idle.map(|_| self.next_prune);
        [
            self.calls.poll_timeout(),
            self.tcp_sip.poll_timeout(),
            prune,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Forgets calls that ended long enough before `now`, and idle streams when it is time;
    /// gives up on SIP-over-TCP gaps that waited long enough and parses the messages behind
    /// them.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.expire_tcp_gaps(now);
        self.calls.handle_timeout(now);
        if let Some(idle) = self.stream_idle {
            if now >= self.next_prune {
                self.flows.prune(idle, CANDIDATE_IDLE);
                self.next_prune = now + PRUNE_EVERY;
            }
        }
    }

    fn expire_tcp_gaps(&mut self, now: Timestamp) {
        let mut sink = SipSink {
            calls: &mut self.calls,
            flows: &mut self.flows,
            stats: &mut self.stats,
        };
        self.tcp_sip
            .handle_timeout(now, &mut |src, dst, m| sink.parse(now, (src, dst), m));
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

    /// The SIP-over-TCP reassembly (for its counters).
    pub fn tcp_sip(&self) -> &TcpSipStats {
        self.tcp_sip.stats()
    }

    /// The RTP flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }
}

/// Where a whole SIP message goes: the call table, the counters, and the flow table when the
/// message switched a media address to fax.
struct SipSink<'a> {
    calls: &'a mut CallTable,
    flows: &'a mut FlowTable,
    stats: &'a mut EngineStats,
}

impl SipSink<'_> {
    /// One whole SIP message into the call table, counted; RTP streams of addresses it
    /// switched to fax end.
    fn parse(&mut self, now: Timestamp, (src, dst): (SocketAddr, SocketAddr), message: &[u8]) {
        self.stats.sip_messages += 1;
        if self.calls.handle_message(now, src, dst, message).is_err() {
            self.stats.sip_malformed += 1;
        }
        for (addr, fax) in self.calls.take_media_switches() {
            if fax {
                self.flows.end_streams_at(addr);
            }
        }
    }
}

/// One TCP segment as the reassembly needs it.
struct Segment<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    closing: bool,
    payload: &'a [u8],
}

/// A TCP segment: SIP reassembled per connection direction, each whole message parsed.
fn sip_over_tcp(
    now: Timestamp,
    s: Segment<'_>,
    tcp_sip: &mut TcpSip,
    mut sink: SipSink<'_>,
) -> FrameVerdict {
    let before = tcp_sip.stats().segments;
    tcp_sip.segment(
        now,
        s.src,
        s.dst,
        s.seq,
        s.closing,
        s.payload,
        &mut |message| sink.parse(now, (s.src, s.dst), message),
    );
    if tcp_sip.stats().segments > before {
        FrameVerdict::Sip
    } else {
        FrameVerdict::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet / IPv4 / UDP with `payload`.
    fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 28 + payload.len();
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&dst_port.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut v = vec![0x80, 0];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(160 * seq as u32).to_be_bytes());
        v.extend_from_slice(&7u32.to_be_bytes());
        v.extend_from_slice(&[0xFF; 160]);
        v
    }

    #[test]
    fn a_live_engine_forgets_idle_streams_every_prune_period_and_a_file_never() {
        let at = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
        let stream = |e: &mut Engine, port: u16, s: i64| {
            for seq in 1..=3 {
                e.handle_frame(at(s), LinkType::Ethernet, &udp(port, 5000, &rtp(seq)));
            }
        };
        for idle in [Some(Span::from_secs(60)), None] {
            let mut e = Engine::new(EngineConfig {
                stream_idle: idle,
                ..EngineConfig::default()
            });
            stream(&mut e, 4000, 0);
            assert_eq!(e.poll_timeout().is_some(), idle.is_some());
            e.handle_timeout(at(30)); // the first prune: nothing idle yet
            stream(&mut e, 4002, 65); // capture time moves on
            e.handle_timeout(at(65)); // the first stream is idle, and a prune is due
            assert_eq!(e.flows().live(), if idle.is_some() { 1 } else { 2 });
            let pruned = e.flows().stats().streams_pruned;
            assert_eq!(pruned, u64::from(idle.is_some()), "{idle:?}");
            if idle.is_some() {
                assert_eq!(e.poll_timeout(), Some(at(65) + PRUNE_EVERY));
            }
        }
        // Between prunes, nothing is walked even when a stream went idle.
        let mut e = Engine::new(EngineConfig {
            stream_idle: Some(Span::from_secs(60)),
            ..EngineConfig::default()
        });
        e.handle_timeout(at(0));
        stream(&mut e, 4000, 0);
        stream(&mut e, 4002, 52);
        e.handle_timeout(at(52)); // a prune: idle 52 s, kept; the next at 62 s
        stream(&mut e, 4002, 61);
        e.handle_timeout(at(61)); // idle 61 s, but no prune is due
        assert_eq!(e.flows().live(), 2);
        e.handle_timeout(at(62));
        assert_eq!(e.flows().live(), 1);
    }

    #[test]
    fn classifies_sip_rtp_and_counts_garbage() {
        let mut e = Engine::new(EngineConfig::default());
        let at = |ms: i64| Timestamp::from_nanos(ms * 1_000_000);
        let sdp = "v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n";
        let invite = format!(
            "INVITE sip:5001@10.0.0.2 SIP/2.0\r\nFrom: <sip:1@a>;tag=x\r\nTo: <sip:5001@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        assert_eq!(
            e.handle_frame(
                at(0),
                LinkType::Ethernet,
                &udp(5060, 5060, invite.as_bytes())
            ),
            FrameVerdict::Sip
        );
        // The SDP endpoint makes the first packet RTP at once, bound to the call.
        assert_eq!(
            e.handle_frame(at(10), LinkType::Ethernet, &udp(4000, 5000, &rtp(1))),
            FrameVerdict::Rtp(StreamId(0))
        );
        assert_eq!(e.flows().stream(StreamId(0)).unwrap().call, Some(0));
        // Garbage: truncated, non-IP, a SIP-looking datagram that is not SIP.
        assert_eq!(
            e.handle_frame(at(20), LinkType::Ethernet, &[1, 2, 3]),
            FrameVerdict::Undecoded
        );
        let mut arp = udp(1, 2, b"");
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            e.handle_frame(at(30), LinkType::Ethernet, &arp),
            FrameVerdict::Undecoded
        );
        assert_eq!(
            e.handle_frame(
                at(40),
                LinkType::Ethernet,
                &udp(5060, 5060, b"INVITE garbage")
            ),
            FrameVerdict::Sip
        );
        let s = e.stats();
        assert_eq!(
            (
                s.frames,
                s.sip_messages,
                s.sip_malformed,
                s.rtp_packets,
                s.undecoded
            ),
            (5, 2, 1, 1, 2)
        );
        let stops = e.decapsulator().stats().stops();
        assert!(
            stops.iter().any(|(n, c)| n == "link/truncated" && *c == 1),
            "{stops:?}"
        );
        assert!(
            stops
                .iter()
                .any(|(n, c)| n == "link/other_ethertype" && *c == 1),
            "{stops:?}"
        );
    }
}
