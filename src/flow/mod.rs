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
//! a packet costs one hash lookup and a few arithmetic updates, with no allocation. A live
//! capture runs for months: [`FlowTable::prune`] forgets the streams and candidates idle for
//! long, idle counted in capture time against the newest packet the table holds (a replay
//! that stamps every frame alike never ages; a quiet night ages nothing until packets come
//! again); it is never called on a file, so a capture's report keeps every stream. A
//! forgotten stream's slot is reused, the longest free first, under a new [`StreamId`] (the
//! slot's generation goes up, modulo 2048), so an id someone still holds names no other
//! stream for 2048 reuses of its slot.

use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::codec::PayloadMap;
use crate::packet::rtcp::{self, RtcpType};
use crate::packet::rtp::RtpPacket;
use crate::packet::VlanStack;
use crate::time::{Span, Timestamp};

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

/// A stream's name in its table: its slot in the low [`SLOT_BITS`] bits, the slot's
/// generation (counted modulo 2048) in the 11 above; the top bit is clear (peers' streams
/// set it, `router::remote`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

/// Bits of a [`StreamId`] that name its slot: the most streams a table holds.
pub const SLOT_BITS: u32 = 20;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
const GENERATION_MASK: u32 = (1 << 11) - 1;
/// Set in the id a free slot holds (no live stream's id has it: the top bit is for peers).
const FREE: u32 = 1 << 31;

impl StreamId {
    fn new(slot: usize, generation: u32) -> StreamId {
        StreamId((generation & GENERATION_MASK) << SLOT_BITS | slot as u32 & SLOT_MASK)
    }

    fn slot(self) -> usize {
        (self.0 & SLOT_MASK) as usize
    }

    fn generation(self) -> u32 {
        self.0 >> SLOT_BITS & GENERATION_MASK
    }

    /// False for the id a free slot keeps for its next stream.
    fn is_live(self) -> bool {
        self.0 & FREE == 0
    }
}

/// How long a live capture keeps a stream that sends nothing (a long hold, a call long over):
/// a stream coming back after it is a new stream (its call found again from the SDP, a
/// heuristic one confirmed again in [`CONFIRM_PACKETS`] packets).
pub const LIVE_STREAM_IDLE: Span = Span::from_secs(600);
/// How long a candidate waits for the packets that would confirm it.
pub const CANDIDATE_IDLE: Span = Span::from_secs(30);

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
    /// Most streams kept (at most 2^[`SLOT_BITS`]).
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
    /// Streams forgotten after [`LIVE_STREAM_IDLE`] without a packet.
    pub streams_pruned: u64,
    /// Candidates forgotten after [`CANDIDATE_IDLE`] without a packet.
    pub candidates_pruned: u64,
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
    /// Its name in the table (slot and generation).
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

impl Candidate {
    /// Its newest packet's capture time.
    fn last_ts(&self) -> Option<Timestamp> {
        self.pending[..self.len].iter().map(|p| p.ts).max()
    }
}

/// Most packets a candidate holds (the oldest is dropped, counted, to make room).
const MAX_PENDING: usize = 8;

/// The stream table.
pub struct FlowTable {
    config: FlowConfig,
    /// Live streams and, in free slots, forgotten ones (their id the slot's next with
    /// [`FREE`] set): inline, so a packet's stream costs no pointer chase and no check.
    streams: Vec<Stream>,
    /// Free slots, the longest free first (so generations advance evenly over the slots).
    free: VecDeque<u32>,
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
            free: VecDeque::new(),
            index4: HashMap::default(),
            index: HashMap::default(),
            candidates: HashMap::default(),
            stats: FlowStats::default(),
        }
    }

    /// Streams in slot order: the order of their first packets until one was forgotten.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams_in(0..self.streams.len())
    }

    /// The streams in `slots` (a range of [`FlowTable::slots`]), in slot order.
    pub fn streams_in(&self, slots: std::ops::Range<usize>) -> impl Iterator<Item = &Stream> {
        let end = slots.end.min(self.streams.len());
        let start = slots.start.min(end);
        self.streams[start..end].iter().filter(|s| s.id.is_live())
    }

    /// Slots in the table (live streams and free slots).
    pub fn slots(&self) -> usize {
        self.streams.len()
    }

    /// Streams in the table now.
    pub fn live(&self) -> usize {
        self.streams.len() - self.free.len()
    }

    /// The stream `id` names, unless it was forgotten.
    pub fn stream(&self, id: StreamId) -> Option<&Stream> {
        self.streams
            .get(id.slot())
            .filter(|s| s.id == id && id.is_live())
    }

    /// The stream of an id from the index (which names live streams only).
    fn indexed_mut(&mut self, id: StreamId) -> &mut Stream {
        &mut self.streams[id.slot()]
    }

    fn live_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.streams.iter_mut().filter(|s| s.id.is_live())
    }

    /// The stream with this key, if known.
    pub fn find(&self, key: &StreamKey) -> Option<&Stream> {
        self.lookup(key).and_then(|id| self.stream(id))
    }

    /// Forgets the streams without a packet for `idle` and the candidates without one for
    /// `candidate_idle`, both before the newest packet the table holds (capture time, see the
    /// module rules); their slots are reused. Two walks over the table: call it every few
    /// seconds, not per packet.
    pub fn prune(&mut self, idle: Span, candidate_idle: Span) {
        let newest = self.live_stream_times().chain(self.candidate_times()).max();
        let Some(now) = newest else {
            return;
        };
        for slot in 0..self.streams.len() {
            let s = &mut self.streams[slot];
            if !s.id.is_live() || now - s.stats.last_ts < idle {
                continue;
            }
            s.id = StreamId(StreamId::new(slot, s.id.generation() + 1).0 | FREE);
            let key = s.key;
            match packed(&key) {
                Some(k) => self.index4.remove(&k),
                None => self.index.remove(&key),
            };
            self.free.push_back(slot as u32);
            self.stats.streams_pruned += 1;
        }
        let before = self.candidates.len();
        self.candidates
            .retain(|_, c| c.last_ts().is_some_and(|t| now - t < candidate_idle));
        self.stats.candidates_pruned += (before - self.candidates.len()) as u64;
    }

    fn live_stream_times(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.streams().map(|s| s.stats.last_ts)
    }

    fn candidate_times(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.candidates.values().filter_map(Candidate::last_ts)
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
            let stream = self.indexed_mut(id);
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
            self.indexed_mut(id)
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
        for s in self.live_mut() {
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
        if self.live() >= self.config.max_streams.min(1 << SLOT_BITS) {
            self.stats.capacity_drops += 1;
            return None;
        }
        // Slots = live + free, so without a free one the table is below 2^SLOT_BITS slots.
        let id = match self.free.pop_front() {
            Some(slot) => StreamId(self.streams[slot as usize].id.0 & !FREE),
            None => StreamId::new(self.streams.len(), 0),
        };
        let mut stats = StreamStats::new(&samples[0], payloads);
        for s in &samples[1..] {
            stats.update(s);
        }
        self.stats.rtp_packets += samples.len() as u64;
        let stream = Stream {
            id,
            key,
            vlans,
            call,
            stats,
            rtcp: RtcpSummary::default(),
            cipher: cipher::CipherTest::default(),
            closed: false,
        };
        match self.streams.get_mut(id.slot()) {
            Some(slot) => *slot = stream,
            None => self.streams.push(stream),
        }
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
                    for s in self.live_mut().filter(|s| s.key.ssrc == ssrc) {
                        s.rtcp.sender_reports += 1;
                    }
                }
            }
            for block in p.report_blocks() {
                for s in self.live_mut().filter(|s| s.key.ssrc == block.ssrc) {
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
        let s = t.stream(StreamId(0)).unwrap();
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
        let s = t.stream(StreamId(0)).unwrap();
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
        let s = t.stream(StreamId(0)).unwrap();
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
            t.stream(StreamId(0)).unwrap().stats.packets,
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
        assert_eq!(t.stream(StreamId(1)).unwrap().call, Some(3));
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
        let s = t.stream(StreamId(0)).unwrap();
        assert_eq!(s.rtcp.report_blocks, 1);
        assert_eq!(s.rtcp.last_cumulative_lost, Some(3));
    }

    #[test]
    fn idle_streams_are_forgotten_and_their_slots_reused_under_new_ids() {
        let config = FlowConfig {
            max_streams: 2,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(config);
        let v = VlanStack::new();
        let hint = MediaHint {
            call: 1,
            payloads: PayloadMap::new(),
        };
        let send = |t: &mut FlowTable, ms: i64, from: u8, ssrc: u32| {
            t.handle_udp(
                at(ms),
                &v,
                addr(from, 4000),
                addr(9, 5000),
                &rtp(1, 0, ssrc, 0),
                Some(&hint),
            )
        };
        let old = send(&mut t, 0, 1, 11);
        let kept = send(&mut t, 0, 2, 22);
        assert_eq!(
            (old, kept),
            (UdpVerdict::Rtp(StreamId(0)), UdpVerdict::Rtp(StreamId(1)))
        );
        // The table is full: a third stream is not tracked.
        assert_eq!(send(&mut t, 1000, 3, 33), UdpVerdict::NotMedia);
        assert_eq!(t.stats().capacity_drops, 1);
        // Stream 1 goes on; stream 0 falls silent for longer than the idle time.
        send(&mut t, 5000, 2, 22);
        t.prune(Span::from_secs(4), CANDIDATE_IDLE);
        assert_eq!((t.live(), t.slots(), t.stats().streams_pruned), (1, 2, 1));
        assert!(t.stream(StreamId(0)).is_none());
        assert!(t
            .find(&StreamKey {
                src: addr(1, 4000),
                dst: addr(9, 5000),
                ssrc: 11
            })
            .is_none());
        // The third stream now fits, in the freed slot under its next generation.
        let UdpVerdict::Rtp(new) = send(&mut t, 5001, 3, 33) else {
            panic!("the third stream was not tracked");
        };
        assert_eq!((new.slot(), new.generation()), (0, 1));
        assert_ne!(new, StreamId(0));
        assert!(t.stream(StreamId(0)).is_none(), "the old id names nothing");
        assert_eq!(t.stream(new).unwrap().key.ssrc, 33);
        // The forgotten stream coming back is a new stream; the table is full again.
        assert_eq!(send(&mut t, 5002, 1, 11), UdpVerdict::NotMedia);
        let ssrcs: Vec<u32> = t.streams().map(|s| s.key.ssrc).collect();
        assert_eq!(ssrcs, [33, 22], "slot order");
        assert_eq!(t.streams_in(1..2).count(), 1);
        assert_eq!(t.streams_in(2..9).count(), 0);
    }

    #[test]
    fn candidates_that_never_confirm_are_forgotten() {
        let mut t = FlowTable::new(FlowConfig::default());
        let v = VlanStack::new();
        let (a, b) = (addr(1, 4000), addr(2, 5000));
        let first = t.handle_udp(at(0), &v, a, b, &rtp(1, 0, 5, 0), None);
        assert_eq!(first, UdpVerdict::Candidate);
        // Alone, it is the newest packet: it never ages (a replay stamping frames alike).
        t.prune(CANDIDATE_IDLE, CANDIDATE_IDLE);
        assert_eq!(t.stats().candidates_pruned, 0);
        // Another candidate's packets move capture time on: 29 s, then 31 s later.
        let other = addr(3, 4002);
        t.handle_udp(at(29_000), &v, other, b, &rtp(1, 0, 6, 0), None);
        t.prune(LIVE_STREAM_IDLE, CANDIDATE_IDLE);
        assert_eq!(t.stats().candidates_pruned, 0);
        t.handle_udp(at(31_000), &v, other, b, &rtp(900, 0, 6, 0), None);
        t.prune(LIVE_STREAM_IDLE, CANDIDATE_IDLE);
        assert_eq!(t.stats().candidates_pruned, 1, "the first, not the other");
        // Its old packet no longer counts towards a confirmation: two more are candidates.
        for seq in 2..4 {
            let v2 = t.handle_udp(at(31_000), &v, a, b, &rtp(seq, 160, 5, 0), None);
            assert_eq!(v2, UdpVerdict::Candidate);
        }
    }
}
