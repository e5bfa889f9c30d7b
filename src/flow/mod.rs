//! RTP and RTCP streams, sans-IO: fed UDP datagrams with their capture time, returns what each
//! one is. Streams are keyed by (source, destination, SSRC); an SSRC change on a 5-tuple starts a
//! new stream. RTP is recognised from SDP (the engine passes a [`MediaHint`]) or heuristically:
//! version 2, a plausible payload type, not RTCP, and [`CONFIRM_PACKETS`] packets of the same
//! 5-tuple and SSRC with different sequence numbers that belong together (gaps up to
//! RFC 3550's 3000 for heavy loss, in any order, duplicates included); the packets that were
//! pending while a candidate was confirmed are replayed into its statistics in arrival order,
//! so counts equal tshark's (which takes every packet as RTP from the first).
//!
//! Memory is bounded (caps on streams and candidates, counted when hit); after a stream exists
//! a packet costs one hash lookup and a few arithmetic updates, with no allocation.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;

use crate::codec::PayloadMap;
use crate::packet::rtcp::{self, RtcpType};
use crate::packet::rtp::RtpPacket;
use crate::packet::VlanStack;
use crate::time::Timestamp;

pub mod cipher;
mod stats;

pub use stats::{static_clock_rate, RtpSample, StreamStats};

/// Packets of progression needed to accept a heuristic RTP stream.
pub const CONFIRM_PACKETS: usize = 3;

/// Identity of a stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Index of a stream in its table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

/// What SDP said about a media endpoint, supplied by the engine.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MediaHint {
    /// Index of the SIP call that negotiated it.
    pub call: u32,
    /// Payload formats from the SDP.
    pub payloads: PayloadMap,
}

/// What a UDP datagram turned out to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// RTP of this stream.
    Rtp(StreamId),
    /// RTCP.
    Rtcp,
    /// Looks like RTP; needs more packets to be sure.
    Candidate,
    /// T.38 fax (UDPTL) on an address the SDP switched to fax.
    Fax,
    /// Neither.
    NotMedia,
}

/// Flow table settings.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Recognise RTP without SDP.
    pub heuristic: bool,
    /// Most streams kept.
    pub max_streams: usize,
    /// Most heuristic candidates pending at once.
    pub max_candidates: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            heuristic: true,
            max_streams: 1 << 20,
            max_candidates: 1 << 16,
        }
    }
}

/// Flow table counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// RTP packets counted in streams.
    pub rtp_packets: u64,
    /// RTCP packets (compound datagrams count once).
    pub rtcp_packets: u64,
    /// RTCP datagrams that did not parse.
    pub rtcp_malformed: u64,
    /// Datagrams that claimed to be RTP (SDP port) but did not parse.
    pub rtp_malformed: u64,
    /// Candidates confirmed as streams.
    pub candidates_confirmed: u64,
    /// Candidate packets that broke the progression.
    pub candidates_rejected: u64,
    /// Packets not tracked because a cap was hit.
    pub capacity_drops: u64,
    /// UDPTL (T.38 fax) datagrams on addresses the SDP switched to fax.
    pub fax_packets: u64,
}

/// RTCP seen about a stream (from report blocks naming its SSRC, and its own SRs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// Sender reports sent by this stream's source.
    pub sender_reports: u64,
    /// Report blocks about this stream received from its peer.
    pub report_blocks: u64,
    /// Last cumulative lost the peer reported.
    pub last_cumulative_lost: Option<i32>,
    /// Last interarrival jitter the peer reported (timestamp units).
    pub last_jitter: Option<u32>,
}

/// One RTP stream.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Its index.
    pub id: StreamId,
    /// Its identity.
    pub key: StreamKey,
    /// VLAN tags of its first packet.
    pub vlans: VlanStack,
    /// SIP call that negotiated it, if any.
    pub call: Option<u32>,
    /// RFC 3550 / Wireshark statistics.
    pub stats: StreamStats,
    /// RTCP about it.
    pub rtcp: RtcpSummary,
    /// Whether its payload looks encrypted (`flow::cipher`).
    pub cipher: cipher::CipherTest,
    /// Its address was switched to fax: what comes next on its key is fax unless the SDP
    /// says audio again.
    closed: bool,
}

impl Stream {
    /// Encrypted media (SRTP): its SDP said so, or its G.711 payload is uniform.
    pub fn encrypted(&self) -> bool {
        self.stats.payload_map().is_encrypted() || self.cipher.encrypted()
    }

    /// The payload names `flows` and the lists show: `SRTP` for an encrypted stream (its
    /// payload type says nothing of what can be heard).
    pub fn payload_names(&self) -> Vec<String> {
        if self.encrypted() {
            return vec!["SRTP".to_owned()];
        }
        self.stats.payload_names()
    }
}

/// A 5-tuple + SSRC that looks like RTP but is not confirmed yet.
#[derive(Clone, Debug)]
struct Candidate {
    /// Packets seen so far (duplicates included, so they count once confirmed).
    pending: [RtpSample; MAX_PENDING],
    len: usize,
    vlans: VlanStack,
}

/// Most packets a candidate holds (the oldest is dropped, counted, to make room).
const MAX_PENDING: usize = 8;

/// The stream table.
pub struct FlowTable {
    config: FlowConfig,
    streams: Vec<Stream>,
    /// Streams of IPv4 addresses by their packed key (16 bytes: more of the table stays in
    /// cache than with whole `StreamKey`s, which the others use).
    index4: HashMap<u128, StreamId>,
    index: HashMap<StreamKey, StreamId>,
    candidates: HashMap<StreamKey, Candidate>,
    stats: FlowStats,
}

impl FlowTable {
    /// An empty table.
    pub fn new(config: FlowConfig) -> Self {
        FlowTable {
            config,
            streams: Vec::new(),
            index4: HashMap::default(),
            index: HashMap::default(),
            candidates: HashMap::default(),
            stats: FlowStats::default(),
        }
    }

    /// Streams in order of first packet.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.iter()
    }

    /// One stream.
    pub fn stream(&self, id: StreamId) -> &Stream {
        &self.streams[id.0 as usize]
    }

    /// The stream with this key, if known.
    pub fn find(&self, key: &StreamKey) -> Option<&Stream> {
        self.lookup(key).map(|id| self.stream(id))
    }

    /// Counters.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Classifies one UDP datagram seen at `now` and updates the stream it belongs to.
    pub fn handle_udp(
        &mut self,
        now: Timestamp,
        vlans: &VlanStack,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        hint: Option<&MediaHint>,
    ) -> UdpVerdict {
        self.handle_udp_with(now, vlans, src, dst, payload, || hint.copied())
    }

    /// Like [`FlowTable::handle_udp`], but asks for the SDP hint only when it matters (RTCP, or
    /// the first packet of a stream): known streams cost no endpoint lookup.
    pub fn handle_udp_with(
        &mut self,
        now: Timestamp,
        vlans: &VlanStack,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        hint: impl FnOnce() -> Option<MediaHint>,
    ) -> UdpVerdict {
        if rtcp::looks_like_rtcp(payload) {
            let hint = hint();
            if hint.is_some_and(|h| h.payloads.is_fax()) {
                return self.fax();
            }
            if hint.is_some() || self.config.heuristic {
                self.handle_rtcp(payload);
                return UdpVerdict::Rtcp;
            }
            return UdpVerdict::NotMedia;
        }
        let Ok(rtp) = RtpPacket::new_checked(payload) else {
            return match hint() {
                Some(h) if h.payloads.is_fax() => self.fax(),
                Some(_) if payload.first().is_some_and(|b| b >> 6 == 2) => {
                    self.stats.rtp_malformed += 1;
                    UdpVerdict::NotMedia
                }
                _ => UdpVerdict::NotMedia,
            };
        };
        let sample = RtpSample {
            ts: now,
            seq: rtp.sequence_number(),
            rtp_ts: rtp.timestamp(),
            pt: rtp.payload_type(),
            marker: rtp.marker(),
            payload_len: rtp.payload().len().min(u16::MAX as usize) as u16,
        };
        let key = StreamKey {
            src,
            dst,
            ssrc: rtp.ssrc(),
        };
        let mut hint = Some(hint);
        if let Some(id) = self.lookup(&key) {
            let stream = &mut self.streams[id.0 as usize];
            if stream.closed {
                // Switched to fax: fax, unless the SDP says audio again (the stream goes on).
                if hint
                    .take()
                    .and_then(|h| h())
                    .is_some_and(|h| h.payloads.is_fax())
                {
                    return self.fax();
                }
                stream.closed = false;
            }
            stream.stats.update(&sample);
            stream.cipher.observe(sample.pt, rtp.payload());
            self.stats.rtp_packets += 1;
            return UdpVerdict::Rtp(id);
        }
        let verdict = match hint.and_then(|h| h()) {
            Some(h) if h.payloads.is_fax() => return self.fax(),
            h => h,
        };
        let verdict = if let Some(h) = verdict {
            match self.new_stream(key, *vlans, Some(h.call), h.payloads, &[sample]) {
                Some(id) => UdpVerdict::Rtp(id),
                None => UdpVerdict::NotMedia,
            }
        } else if !self.config.heuristic || !plausible_payload_type(sample.pt) {
            UdpVerdict::NotMedia
        } else {
            self.handle_candidate(key, *vlans, sample)
        };
        if let UdpVerdict::Rtp(id) = verdict {
            // A new stream's first packet: tested before anything of it is forwarded.
            self.streams[id.0 as usize]
                .cipher
                .observe(sample.pt, rtp.payload());
        }
        verdict
    }

    fn lookup(&self, key: &StreamKey) -> Option<StreamId> {
        match packed(key) {
            Some(k) => self.index4.get(&k).copied(),
            None => self.index.get(key).copied(),
        }
    }

    fn fax(&mut self) -> UdpVerdict {
        self.stats.fax_packets += 1;
        UdpVerdict::Fax
    }

    /// The SDP switched `addr` to fax: its RTP streams (from or to it) end here; a packet on
    /// their keys is fax from now on, unless the SDP switches the address back to audio.
    pub fn end_streams_at(&mut self, addr: SocketAddr) {
        for s in &mut self.streams {
            if s.key.src == addr || s.key.dst == addr {
                s.closed = true;
            }
        }
    }

    fn handle_candidate(&mut self, key: StreamKey, vlans: VlanStack, s: RtpSample) -> UdpVerdict {
        if !self.candidates.contains_key(&key) {
            if self.candidates.len() >= self.config.max_candidates {
                self.stats.capacity_drops += 1;
                return UdpVerdict::NotMedia;
            }
            self.candidates.insert(
                key,
                Candidate {
                    pending: [s; MAX_PENDING],
                    len: 1,
                    vlans,
                },
            );
            return UdpVerdict::Candidate;
        }
        let Some(c) = self.candidates.get_mut(&key) else {
            return UdpVerdict::NotMedia;
        };
        if c.len == MAX_PENDING {
            // The oldest makes room: it found nothing to belong with in MAX_PENDING packets.
            c.pending.copy_within(1.., 0);
            c.len -= 1;
            self.stats.candidates_rejected += 1;
        }
        c.pending[c.len] = s;
        c.len += 1;
        // The packets of one stream: the new one and those it relates to, in arrival order.
        let mut members = [s; MAX_PENDING];
        let mut n = 0;
        for p in c.pending[..c.len]
            .iter()
            .filter(|p| related(p, &s) || same(p, &s))
        {
            members[n] = *p;
            n += 1;
        }
        if distinct_seqs(&members[..n]) < CONFIRM_PACKETS {
            return UdpVerdict::Candidate;
        }
        self.stats.candidates_rejected += (c.len - n) as u64;
        let vlans = c.vlans;
        self.stats.candidates_confirmed += 1;
        match self.new_stream(key, vlans, None, PayloadMap::new(), &members[..n]) {
            Some(id) => UdpVerdict::Rtp(id),
            None => UdpVerdict::NotMedia,
        }
    }

    fn new_stream(
        &mut self,
        key: StreamKey,
        vlans: VlanStack,
        call: Option<u32>,
        payloads: PayloadMap,
        samples: &[RtpSample],
    ) -> Option<StreamId> {
        if self.streams.len() >= self.config.max_streams {
            self.stats.capacity_drops += 1;
            return None;
        }
        let id = StreamId(self.streams.len() as u32);
        let mut stats = StreamStats::new(&samples[0], payloads);
        for s in &samples[1..] {
            stats.update(s);
        }
        self.stats.rtp_packets += samples.len() as u64;
        self.streams.push(Stream {
            id,
            key,
            vlans,
            call,
            stats,
            rtcp: RtcpSummary::default(),
            cipher: cipher::CipherTest::default(),
            closed: false,
        });
        match packed(&key) {
            Some(k) => self.index4.insert(k, id),
            None => self.index.insert(key, id),
        };
        self.candidates.remove(&key);
        Some(id)
    }

    fn handle_rtcp(&mut self, payload: &[u8]) {
        self.stats.rtcp_packets += 1;
        for p in rtcp::compound(payload) {
            let Ok(p) = p else {
                self.stats.rtcp_malformed += 1;
                return;
            };
            if p.packet_type() == RtcpType::SenderReport {
                if let Some(ssrc) = p.ssrc() {
                    for s in self.streams.iter_mut().filter(|s| s.key.ssrc == ssrc) {
                        s.rtcp.sender_reports += 1;
                    }
                }
            }
            for block in p.report_blocks() {
                for s in self.streams.iter_mut().filter(|s| s.key.ssrc == block.ssrc) {
                    s.rtcp.report_blocks += 1;
                    s.rtcp.last_cumulative_lost = Some(block.cumulative_lost);
                    s.rtcp.last_jitter = Some(block.jitter);
                }
            }
        }
    }
}

/// Payload types a heuristic accepts: audio/video static types and the dynamic range; not the
/// reserved/unassigned ranges where RTCP packet types land (72-76) or which nothing uses.
fn plausible_payload_type(pt: u8) -> bool {
    matches!(pt, 0..=34 | 96..=127) && !matches!(pt, 1 | 2 | 19 | 20..=24 | 27 | 29 | 30)
}

/// An IPv4 stream key in 128 bits: addresses, ports, SSRC.
fn packed(key: &StreamKey) -> Option<u128> {
    match (key.src, key.dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Some(
            u128::from(s.ip().to_bits()) << 96
                | u128::from(d.ip().to_bits()) << 64
                | u128::from(s.port()) << 48
                | u128::from(d.port()) << 32
                | u128::from(key.ssrc),
        ),
        _ => None,
    }
}

/// Largest sequence gap between two packets of one heuristic stream (RFC 3550's MAX_DROPOUT):
/// heavy loss leaves gaps of hundreds.
const MAX_SEQ_GAP: i32 = 3000;

/// True when `a` and `b` plausibly belong to one RTP stream, in either order: the sequence
/// numbers differ by at most [`MAX_SEQ_GAP`] and the timestamps move the same way by less than
/// 10 s at 90 kHz; or the timestamp stays (an event, a video frame) over at most 10 sequence
/// numbers; or `b` repeats `a`.
fn related(a: &RtpSample, b: &RtpSample) -> bool {
    let dseq = i32::from(b.seq.wrapping_sub(a.seq) as i16);
    let dts = i64::from(b.rtp_ts.wrapping_sub(a.rtp_ts) as i32);
    if dseq == 0 {
        return dts == 0;
    }
    if dts == 0 {
        // One event or video frame over a few packets, not a long silence of the clock.
        return dseq.abs() <= 10;
    }
    dseq.abs() <= MAX_SEQ_GAP && (dts > 0) == (dseq > 0) && dts.abs() < 90_000 * 10
}

/// The very same packet (a duplicate).
fn same(a: &RtpSample, b: &RtpSample) -> bool {
    a.seq == b.seq && a.rtp_ts == b.rtp_ts
}

/// How many different sequence numbers `samples` hold.
fn distinct_seqs(samples: &[RtpSample]) -> usize {
    (0..samples.len())
        .filter(|&i| !samples[..i].iter().any(|p| p.seq == samples[i].seq))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port)
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8) -> Vec<u8> {
        let mut v = vec![0x80, pt];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[0xFF; 160]);
        v
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn heuristic_confirms_after_three_and_counts_them_all() {
        let mut t = FlowTable::new(FlowConfig::default());
        let v = VlanStack::new();
        let (a, b) = (addr(1, 4000), addr(2, 5000));
        let mut verdicts = Vec::new();
        for i in 0..5u16 {
            verdicts.push(t.handle_udp(
                at(20 * i as i64),
                &v,
                a,
                b,
                &rtp(100 + i, 160 * i as u32, 7, 0),
                None,
            ));
        }
        assert_eq!(verdicts[0], UdpVerdict::Candidate);
        assert_eq!(verdicts[1], UdpVerdict::Candidate);
        assert_eq!(verdicts[2], UdpVerdict::Rtp(StreamId(0)));
        let s = t.stream(StreamId(0));
        assert_eq!(s.stats.packets, 5);
        assert_eq!(s.stats.lost(), 0);
        assert!((s.stats.max_delta_ms - 20.0).abs() < 1e-9);
    }

    /// Feeds (seq, ts) packets 20 ms apart; returns the table.
    fn feed(packets: &[(u16, u32)]) -> FlowTable {
        let mut t = FlowTable::new(FlowConfig::default());
        let v = VlanStack::new();
        let (a, b) = (addr(1, 4000), addr(2, 5000));
        for (i, (seq, ts)) in packets.iter().enumerate() {
            t.handle_udp(at(20 * i as i64), &v, a, b, &rtp(*seq, *ts, 7, 0), None);
        }
        t
    }

    #[test]
    fn reordered_and_duplicated_first_packets_all_count() {
        // 2 before 1, 2 twice, then in order.
        let t = feed(&[(2, 320), (1, 160), (2, 320), (3, 480), (4, 640)]);
        let s = t.stream(StreamId(0));
        assert_eq!(s.stats.packets, 5);
        assert_eq!(s.stats.duplicates, 1);
        assert_eq!(t.stats().candidates_rejected, 0);
    }

    #[test]
    fn heavy_loss_keeps_the_packets_that_confirmed_the_stream() {
        // Gaps of 40 and 300 sequence numbers between the first packets (bursty loss).
        let t = feed(&[
            (10, 1600),
            (50, 8000),
            (350, 56000),
            (351, 56160),
            (900, 144000),
        ]);
        assert_eq!(t.streams().count(), 1);
        let s = t.stream(StreamId(0));
        assert_eq!(s.stats.packets, 5);
        assert_eq!(s.stats.lost(), 891 - 5);
        assert_eq!(t.stats().candidates_rejected, 0);
    }

    #[test]
    fn packets_that_belong_to_nothing_are_dropped_oldest_first() {
        // Unrelated junk first (sequence far away), then a stream.
        let mut packets = vec![(40000, 5), (9000, 77)];
        packets.extend((0..4).map(|i| (100 + i, 160 * u32::from(i))));
        let t = feed(&packets);
        assert_eq!(
            t.stream(StreamId(0)).stats.packets,
            4,
            "every packet of the stream"
        );
        assert_eq!(t.stats().candidates_rejected, 2);
    }

    #[test]
    fn random_udp_is_not_rtp_and_ssrc_change_is_a_new_stream() {
        let mut t = FlowTable::new(FlowConfig::default());
        let v = VlanStack::new();
        let (a, b) = (addr(1, 4000), addr(2, 5000));
        // Version-2-looking datagrams whose sequence numbers jump around.
        for (i, seq) in [5u16, 9000, 17, 40000, 3].iter().enumerate() {
            let r = t.handle_udp(at(i as i64), &v, a, b, &rtp(*seq, 0, 1, 0), None);
            assert_ne!(r, UdpVerdict::Rtp(StreamId(0)));
        }
        assert_eq!(t.streams().count(), 0);
        assert_eq!(
            t.handle_udp(at(0), &v, a, b, b"not rtp at all", None),
            UdpVerdict::NotMedia
        );
        // With a hint, RTP at once; an SSRC change starts another stream.
        let hint = MediaHint {
            call: 3,
            payloads: PayloadMap::new(),
        };
        assert_eq!(
            t.handle_udp(at(0), &v, a, b, &rtp(1, 0, 11, 8), Some(&hint)),
            UdpVerdict::Rtp(StreamId(0))
        );
        assert_eq!(
            t.handle_udp(at(20), &v, a, b, &rtp(1, 0, 12, 8), Some(&hint)),
            UdpVerdict::Rtp(StreamId(1))
        );
        assert_eq!(t.stream(StreamId(1)).call, Some(3));
    }

    #[test]
    fn rtcp_is_recognised_and_summarised() {
        let mut t = FlowTable::new(FlowConfig::default());
        let v = VlanStack::new();
        let hint = MediaHint {
            call: 0,
            payloads: PayloadMap::new(),
        };
        t.handle_udp(
            at(0),
            &v,
            addr(1, 4000),
            addr(2, 5000),
            &rtp(1, 0, 0x2222_2222, 0),
            Some(&hint),
        );
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&9u32.to_be_bytes());
        rr.extend_from_slice(&0x2222_2222u32.to_be_bytes());
        rr.extend_from_slice(&[0, 0, 0, 3]);
        rr.extend_from_slice(&[0; 16]);
        assert_eq!(
            t.handle_udp(at(5), &v, addr(2, 5001), addr(1, 4001), &rr, None),
            UdpVerdict::Rtcp
        );
        let s = t.stream(StreamId(0));
        assert_eq!(s.rtcp.report_blocks, 1);
        assert_eq!(s.rtcp.last_cumulative_lost, Some(3));
    }
}
