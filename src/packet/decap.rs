//! Lax decapsulation: from the link layer to UDP/TCP through VLAN tags and tunnels, keeping every
//! layer that parsed and a [`Stop`] saying where and why it could not go further. Counts every
//! outcome in [`DecapStats`]. Never panics; allocates only to store IPv4 fragments.
//!
//! Shape: one frame is a walk (`Walk`) of steps, one per layer (link, Ethernet, tag,
//! ethertype, IPv4/IPv6 and fragments, UDP with its VXLAN/GTP-U tunnels, TCP, GRE with ERSPAN),
//! each recording what it parsed and returning the next layer or the end; offsets and magic
//! numbers are named constants here or in the header views of `packet/`.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{Ipv4Slice, Ipv6Slice, TcpSlice, UdpSlice};

use super::erspan::ErspanHeader;
use super::ethernet::{
    ethertype, EthernetFrame, VlanHeader, HEADER_LEN as ETHERNET_HEADER_LEN, VLAN_TAG_LEN,
};
use super::fragment::{FragmentKey, FragmentStats, Offer, Reassembler};
use super::gre::GreHeader;
use super::gtp::{GtpuHeader, GTPU_PORT, G_PDU};
use super::sll::CookedHeader;
use super::vxlan::{VxlanHeader, VXLAN_PORT};
use super::{
    Decapsulated, IpEndpoints, Layer, LinkType, Stop, StopReason, Transport, Tunnels, VlanStack,
};
use crate::time::{Span, Timestamp};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_GRE: u8 = 47;

/// Decapsulator limits.
#[derive(Clone, Debug)]
pub struct DecapConfig {
    /// Most bytes held for IPv4 reassembly at once.
    pub max_fragment_bytes: usize,
    /// A fragment set older than this is dropped.
    pub fragment_timeout: Span,
    /// Most tunnel levels decoded.
    pub max_tunnel_depth: u8,
}

impl Default for DecapConfig {
    fn default() -> Self {
        DecapConfig {
            max_fragment_bytes: 4 << 20,
            fragment_timeout: Span::from_secs(30),
            max_tunnel_depth: 3,
        }
    }
}

/// Counters: frames by link type and encapsulation, stops by layer and reason.
#[derive(Clone, Debug, Default)]
pub struct DecapStats {
    /// Frames offered.
    pub frames: u64,
    /// Frames by link type: Ethernet, SLL, SLL2, raw IP, NULL/LOOP, other.
    pub link: [u64; 6],
    /// Frames with exactly one VLAN tag (innermost Ethernet).
    pub tagged: u64,
    /// Frames with two or more tags.
    pub qinq: u64,
    /// Frames through GRE (transparent Ethernet bridging).
    pub gre_teb: u64,
    /// Frames through GRE carrying IP.
    pub gre_ip: u64,
    /// Frames through ERSPAN type I/II.
    pub erspan2: u64,
    /// Frames through ERSPAN type III.
    pub erspan3: u64,
    /// Frames through VXLAN.
    pub vxlan: u64,
    /// Frames through GTP-U.
    pub gtp: u64,
    /// Innermost IPv4 packets.
    pub ipv4: u64,
    /// Innermost IPv6 packets.
    pub ipv6: u64,
    /// UDP datagrams.
    pub udp: u64,
    /// TCP segments.
    pub tcp: u64,
    /// Other IP protocols.
    pub other_ip: u64,
    /// Stops, by layer then reason kind.
    pub stops: [[u64; StopReason::KINDS]; Layer::ALL.len()],
    /// IPv4 reassembly counters.
    pub fragments: FragmentStats,
}

const LINK_NAMES: [&str; 6] = [
    "ethernet",
    "linux_sll",
    "linux_sll2",
    "raw_ip",
    "null_loop",
    "other_link",
];

impl DecapStats {
    /// (name, count) of frames by link type and encapsulation (for reports; not a hot path).
    pub fn encapsulations(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = LINK_NAMES
            .iter()
            .zip(self.link)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (*name, n))
            .collect();
        v.extend([
            ("vlan_tagged", self.tagged),
            ("qinq", self.qinq),
            ("gre", self.gre_teb),
            ("gre_ip", self.gre_ip),
            ("erspan2", self.erspan2),
            ("erspan3", self.erspan3),
            ("vxlan", self.vxlan),
            ("gtp_u", self.gtp),
            ("ipv4", self.ipv4),
            ("ipv6", self.ipv6),
            ("ipv4_fragments", self.fragments.fragments),
            ("ipv4_reassembled", self.fragments.reassembled),
            ("udp", self.udp),
            ("tcp", self.tcp),
            ("other_ip", self.other_ip),
        ]);
        v
    }

    /// ("layer/reason", count) of frames that stopped early, non-zero only.
    pub fn stops(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for layer in Layer::ALL {
            for (kind, &n) in self.stops[layer.index()].iter().enumerate() {
                if n > 0 {
                    v.push((
                        format!("{}/{}", layer.name(), StopReason::kind_name(kind)),
                        n,
                    ));
                }
            }
        }
        v
    }

    /// Frames that stopped for `reason` at `layer`.
    pub fn stop_count(&self, layer: Layer, reason: StopReason) -> u64 {
        self.stops[layer.index()][reason.index()]
    }
}

/// Stateful decapsulator (the state is the IPv4 reassembler).
pub struct Decapsulator {
    config: DecapConfig,
    fragments: Reassembler,
    stats: DecapStats,
}

/// What to decode next.
enum Next<'a> {
    /// An Ethernet header.
    Ethernet(&'a [u8]),
    /// A payload announced by an ethertype (after a link header or a tag).
    EtherType(u16, &'a [u8]),
    /// An IP packet whose version is in its first nibble.
    Ip(&'a [u8]),
    /// An IP payload of protocol `proto`.
    Transport(u8, &'a [u8]),
}

impl Decapsulator {
    /// New decapsulator.
    pub fn new(config: DecapConfig) -> Self {
        let fragments = Reassembler::new(config.max_fragment_bytes, config.fragment_timeout);
        Decapsulator {
            config,
            fragments,
            stats: DecapStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecapStats {
        &self.stats
    }

    /// Decodes one frame captured at `now` on a link of type `link`.
    pub fn decapsulate<'a>(
        &'a mut self,
        now: Timestamp,
        link: LinkType,
        frame: &'a [u8],
    ) -> Decapsulated<'a> {
        let mut d = Decapsulated::empty();
        self.decapsulate_into(now, link, frame, &mut d);
        d
    }

    /// [`Decapsulator::decapsulate`] into the caller's `d` (the hot path: a returned result
    /// is copied whole, and reading its addresses right after the copy stalled on every
    /// packet). `d` is overwritten.
    pub fn decapsulate_into<'a>(
        &'a mut self,
        now: Timestamp,
        link: LinkType,
        frame: &'a [u8],
        d: &mut Decapsulated<'a>,
    ) {
        let Decapsulator {
            config,
            fragments,
            stats,
        } = self;
        stats.frames += 1;
        stats.link[link_index(link)] += 1;
        *d = Decapsulated::empty();
        let mut walk = Walk {
            frame,
            now,
            max_depth: config.max_tunnel_depth,
            depth: 0,
            fragments: Some(fragments),
            stats,
            d,
        };
        let mut next = walk.link(link);
        while let Ok(n) = next {
            next = walk.step(n);
        }
        count(walk.d, walk.stats);
    }
}

/// Index of a link type in [`DecapStats::link`] (and [`LINK_NAMES`]).
fn link_index(link: LinkType) -> usize {
    match link {
        LinkType::Ethernet => 0,
        LinkType::LinuxSll => 1,
        LinkType::LinuxSll2 => 2,
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => 3,
        LinkType::Null | LinkType::Loop => 4,
        LinkType::Unknown(_) => 5,
    }
}

/// Bytes of the address-family word that starts a BSD loopback (NULL / LOOP) frame.
const LOOPBACK_HEADER_LEN: usize = 4;
/// `AF_INET` in a loopback header (the same on every system).
const AF_INET: u32 = 2;
/// `AF_INET6` in a loopback header: Linux, OpenBSD and NetBSD, FreeBSD and DragonFly, Darwin.
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// The walk ended: the transport was reached, or a layer stopped it (recorded in `d.stop`).
struct Done;

/// One step's outcome: the next layer to decode, or the end.
type Step<'a> = Result<Next<'a>, Done>;

/// One frame's decapsulation in progress: each layer is a step that records what it parsed
/// in `d` and says what comes next.
struct Walk<'a, 'w> {
    frame: &'a [u8],
    now: Timestamp,
    max_depth: u8,
    /// Tunnel levels entered.
    depth: u8,
    /// The reassembler, until a fragment used it (once per frame).
    fragments: Option<&'a mut Reassembler>,
    stats: &'w mut DecapStats,
    d: &'w mut Decapsulated<'a>,
}

impl<'a> Walk<'a, '_> {
    /// Records that `layer` stopped at `at` for `reason`.
    fn stop(&mut self, layer: Layer, at: &[u8], reason: StopReason) -> Done {
        self.stats.stops[layer.index()][reason.index()] += 1;
        let off = (at.as_ptr() as usize).wrapping_sub(self.frame.as_ptr() as usize);
        let offset = if off <= self.frame.len() { off } else { 0 };
        self.d.stop = Some(Stop {
            layer,
            offset,
            reason,
        });
        Done
    }

    /// The next layer's step.
    fn step(&mut self, next: Next<'a>) -> Step<'a> {
        match next {
            Next::Ethernet(buf) => self.ethernet(buf),
            Next::EtherType(t, buf) if ethertype::is_vlan(t) => self.vlan(t, buf),
            Next::EtherType(t, buf) => self.ethertype(t, buf),
            Next::Ip(buf) => self.ip(buf),
            Next::Transport(IPPROTO_UDP, buf) => self.udp(buf),
            Next::Transport(IPPROTO_TCP, buf) => self.tcp(buf),
            Next::Transport(IPPROTO_GRE, buf) => self.gre(buf),
            Next::Transport(_, _) => {
                self.d.transport = Transport::Other;
                Err(Done)
            }
        }
    }

    /// The link header.
    fn link(&mut self, link: LinkType) -> Step<'a> {
        let frame = self.frame;
        match link {
            LinkType::Ethernet => Ok(Next::Ethernet(frame)),
            LinkType::LinuxSll | LinkType::LinuxSll2 => {
                let h = if link == LinkType::LinuxSll {
                    CookedHeader::new_checked_v1(frame)
                } else {
                    CookedHeader::new_checked_v2(frame)
                };
                match h {
                    Ok(h) => Ok(Next::EtherType(h.protocol(), h.payload())),
                    Err(_) => Err(self.stop(Layer::Link, frame, StopReason::Truncated)),
                }
            }
            LinkType::RawIp => Ok(Next::Ip(frame)),
            LinkType::Ipv4 => Ok(Next::EtherType(ethertype::IPV4, frame)),
            LinkType::Ipv6 => Ok(Next::EtherType(ethertype::IPV6, frame)),
            LinkType::Null | LinkType::Loop => self.loopback(link == LinkType::Null),
            LinkType::Unknown(_) => {
                Err(self.stop(Layer::Link, frame, StopReason::UnsupportedLinkType))
            }
        }
    }

    /// A BSD loopback header: the address family in host order (NULL, little-endian here) or
    /// network order (LOOP).
    fn loopback(&mut self, host_order: bool) -> Step<'a> {
        let frame = self.frame;
        let Some(af) = frame.get(..LOOPBACK_HEADER_LEN) else {
            return Err(self.stop(Layer::Link, frame, StopReason::Truncated));
        };
        let af = [af[0], af[1], af[2], af[3]];
        let af = if host_order {
            u32::from_le_bytes(af)
        } else {
            u32::from_be_bytes(af)
        };
        let payload = &frame[LOOPBACK_HEADER_LEN..];
        match af {
            AF_INET => Ok(Next::EtherType(ethertype::IPV4, payload)),
            af if AF_INET6.contains(&af) => Ok(Next::EtherType(ethertype::IPV6, payload)),
            _ => Err(self.stop(Layer::Link, frame, StopReason::Malformed)),
        }
    }

    fn ethernet(&mut self, buf: &'a [u8]) -> Step<'a> {
        match EthernetFrame::new_checked(buf) {
            // Ethernet's payload borrows `buf`, so re-slice from it.
            Ok(eth) => Ok(Next::EtherType(
                eth.ethertype(),
                &buf[ETHERNET_HEADER_LEN..],
            )),
            Err(_) => Err(self.stop(Layer::Link, buf, StopReason::Truncated)),
        }
    }

    /// An 802.1Q / 802.1ad tag (with TPID `tpid`).
    fn vlan(&mut self, tpid: u16, buf: &'a [u8]) -> Step<'a> {
        let Ok(tag) = VlanHeader::new_checked(buf) else {
            return Err(self.stop(Layer::Vlan, buf, StopReason::Truncated));
        };
        if !self.d.vlans.push(tag.tag(tpid)) {
            return Err(self.stop(Layer::Vlan, buf, StopReason::TooManyVlans));
        }
        Ok(Next::EtherType(tag.inner_ethertype(), &buf[VLAN_TAG_LEN..]))
    }

    /// The payload an ethertype announces: IP, or the end.
    fn ethertype(&mut self, t: u16, buf: &'a [u8]) -> Step<'a> {
        self.d.ethertype = t;
        match t {
            ethertype::IPV4 | ethertype::IPV6 => Ok(Next::Ip(buf)),
            other => Err(self.stop(Layer::Link, buf, StopReason::UnsupportedEtherType(other))),
        }
    }

    /// An IP packet, by the version in its first nibble.
    fn ip(&mut self, buf: &'a [u8]) -> Step<'a> {
        match buf.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(buf),
            Some(6) => self.ipv6(buf),
            Some(_) => Err(self.stop(Layer::Ipv4, buf, StopReason::Malformed)),
            None => Err(self.stop(Layer::Ipv4, buf, StopReason::Truncated)),
        }
    }

    fn ipv4(&mut self, buf: &'a [u8]) -> Step<'a> {
        if let Some((ip, payload)) = plain_ipv4(buf) {
            self.d.ip = Some(ip);
            return Ok(Next::Transport(ip.protocol, payload));
        }
        let ip = match Ipv4Slice::from_slice(buf) {
            Ok(ip) => ip,
            Err(e) => {
                let truncated = matches!(e, etherparse::err::ipv4::SliceError::Len(_));
                return Err(self.stop(Layer::Ipv4, buf, truncated_or_malformed(truncated)));
            }
        };
        let h = ip.header();
        let proto = h.protocol().0;
        self.d.ip = Some(IpEndpoints {
            src: IpAddr::V4(h.source_addr()),
            dst: IpAddr::V4(h.destination_addr()),
            protocol: proto,
        });
        let p = ip.payload();
        if !p.fragmented {
            return Ok(Next::Transport(proto, p.payload));
        }
        let key = FragmentKey {
            src: h.source_addr(),
            dst: h.destination_addr(),
            protocol: proto,
            id: h.identification(),
        };
        let offset = h.fragments_offset().byte_offset() as usize;
        self.fragment(buf, key, (offset, h.more_fragments()), p.payload)
    }

    /// An IPv4 fragment, offered to the reassembler; the whole datagram when complete.
    fn fragment(
        &mut self,
        buf: &'a [u8],
        key: FragmentKey,
        (offset, more): (usize, bool),
        payload: &'a [u8],
    ) -> Step<'a> {
        let Some(r) = self.fragments.take() else {
            // Already reassembled once in this frame (a fragmented tunnel inside a fragmented
            // tunnel): not supported.
            return Err(self.stop(Layer::Ipv4, buf, StopReason::FragmentDropped));
        };
        self.stats.fragments.timed_out = r.stats().timed_out;
        let protocol = key.protocol;
        match r.offer(self.now, key, offset, more, payload) {
            Offer::Complete(whole) => {
                self.stats.fragments.fragments += 1;
                self.stats.fragments.reassembled += 1;
                Ok(Next::Transport(protocol, whole))
            }
            Offer::Pending => {
                self.stats.fragments.fragments += 1;
                Err(self.stop(Layer::Ipv4, buf, StopReason::FragmentPending))
            }
            Offer::Dropped => {
                self.stats.fragments.dropped += 1;
                Err(self.stop(Layer::Ipv4, buf, StopReason::FragmentDropped))
            }
        }
    }

    fn ipv6(&mut self, buf: &'a [u8]) -> Step<'a> {
        let ip = match Ipv6Slice::from_slice(buf) {
            Ok(ip) => ip,
            Err(e) => {
                let truncated = matches!(e, etherparse::err::ipv6::SliceError::Len(_));
                return Err(self.stop(Layer::Ipv6, buf, truncated_or_malformed(truncated)));
            }
        };
        let h = ip.header();
        let p = ip.payload();
        let proto = p.ip_number.0;
        self.d.ip = Some(IpEndpoints {
            src: IpAddr::V6(h.source_addr()),
            dst: IpAddr::V6(h.destination_addr()),
            protocol: proto,
        });
        if p.fragmented {
            return Err(self.stop(Layer::Ipv6, buf, StopReason::Ipv6Fragment));
        }
        Ok(Next::Transport(proto, p.payload))
    }

    /// UDP: the transport, unless it carries a tunnel (VXLAN, GTP-U) we may still enter.
    fn udp(&mut self, buf: &'a [u8]) -> Step<'a> {
        let (sp, dp, payload) = match plain_udp(buf) {
            Some(plain) => plain,
            None => {
                let Ok(udp) = UdpSlice::from_slice(buf) else {
                    return Err(self.stop(Layer::Udp, buf, StopReason::Truncated));
                };
                (udp.source_port(), udp.destination_port(), udp.payload())
            }
        };
        if self.depth < self.max_depth {
            if let Some(inner) = self.udp_tunnel(sp, dp, payload) {
                self.depth += 1;
                return Ok(inner);
            }
        }
        self.d.transport = Transport::Udp {
            src_port: sp,
            dst_port: dp,
            payload,
        };
        Err(Done)
    }

    /// The inner packet of a VXLAN or GTP-U (G-PDU carrying IP) datagram, if this is one.
    fn udp_tunnel(&mut self, sp: u16, dp: u16, payload: &'a [u8]) -> Option<Next<'a>> {
        if dp == VXLAN_PORT {
            if let Ok(vx) = VxlanHeader::new_checked(payload) {
                enter_tunnel(self.d, Tunnels::VXLAN);
                self.stats.vxlan += 1;
                return Some(Next::Ethernet(vx.payload()));
            }
        }
        if dp == GTPU_PORT || sp == GTPU_PORT {
            let g = GtpuHeader::new_checked(payload).ok()?;
            let carries_ip = matches!(g.payload().first().map(|b| b >> 4), Some(4 | 6));
            if g.message_type() == G_PDU && carries_ip {
                self.d.tunnels.insert(Tunnels::GTP);
                self.stats.gtp += 1;
                return Some(Next::Ip(g.payload()));
            }
        }
        None
    }

    fn tcp(&mut self, buf: &'a [u8]) -> Step<'a> {
        match TcpSlice::from_slice(buf) {
            Ok(tcp) => {
                self.d.transport = Transport::Tcp {
                    src_port: tcp.source_port(),
                    dst_port: tcp.destination_port(),
                    seq: tcp.sequence_number(),
                    closing: tcp.fin() || tcp.rst(),
                    payload: tcp.payload(),
                };
                Err(Done)
            }
            Err(e) => {
                let truncated = matches!(e, etherparse::err::tcp::HeaderSliceError::Len(_));
                Err(self.stop(Layer::Tcp, buf, truncated_or_malformed(truncated)))
            }
        }
    }

    /// GRE version 0: transparent Ethernet bridging, ERSPAN I/II/III, or IP.
    fn gre(&mut self, buf: &'a [u8]) -> Step<'a> {
        if self.depth >= self.max_depth {
            return Err(self.stop(Layer::Gre, buf, StopReason::TooDeep));
        }
        let gre = match GreHeader::new_checked(buf) {
            Ok(g) => g,
            Err(e) => {
                let reason = match e {
                    super::Error::Truncated => StopReason::Truncated,
                    super::Error::Malformed => StopReason::Malformed,
                };
                return Err(self.stop(Layer::Gre, buf, reason));
            }
        };
        if gre.version() != 0 {
            return Err(self.stop(Layer::Gre, buf, StopReason::UnsupportedGre(gre.protocol())));
        }
        self.depth += 1;
        let payload = gre.payload();
        match gre.protocol() {
            ethertype::TEB => {
                enter_tunnel(self.d, Tunnels::GRE_TEB);
                self.stats.gre_teb += 1;
                Ok(Next::Ethernet(payload))
            }
            ethertype::ERSPAN2 => {
                enter_tunnel(self.d, Tunnels::ERSPAN2);
                self.stats.erspan2 += 1;
                if !gre.has_sequence() {
                    // ERSPAN type I: no ERSPAN header.
                    return Ok(Next::Ethernet(payload));
                }
                self.erspan(ErspanHeader::new_checked_type2(payload), payload)
            }
            ethertype::ERSPAN3 => {
                enter_tunnel(self.d, Tunnels::ERSPAN3);
                self.stats.erspan3 += 1;
                self.erspan(ErspanHeader::new_checked_type3(payload), payload)
            }
            ethertype::IPV4 | ethertype::IPV6 => {
                self.d.tunnels.insert(Tunnels::GRE_IP);
                self.stats.gre_ip += 1;
                Ok(Next::Ip(payload))
            }
            other => Err(self.stop(Layer::Gre, buf, StopReason::UnsupportedGre(other))),
        }
    }

    /// An ERSPAN II/III header, parsed from `buf`: its mirrored Ethernet frame.
    fn erspan(
        &mut self,
        header: Result<ErspanHeader<'a>, super::Error>,
        buf: &'a [u8],
    ) -> Step<'a> {
        match header {
            Ok(h) => Ok(Next::Ethernet(h.payload())),
            Err(_) => Err(self.stop(Layer::Erspan, buf, StopReason::Truncated)),
        }
    }
}

fn truncated_or_malformed(truncated: bool) -> StopReason {
    if truncated {
        StopReason::Truncated
    } else {
        StopReason::Malformed
    }
}

/// Entering a tunnel's inner Ethernet frame: the outermost tags are kept as `outer_vlans`, the
/// inner frame's tags start afresh; the outer IP header is no longer the innermost.
fn enter_tunnel(d: &mut Decapsulated<'_>, t: Tunnels) {
    if d.tunnels.is_empty() {
        d.outer_vlans = d.vlans;
    }
    d.vlans = VlanStack::new();
    d.ip = None;
    d.tunnels.insert(t);
}

/// The common IPv4 header, read by hand (the hot path): version 4, no options, not a fragment,
/// a total length within the buffer. Anything else goes through etherparse's full checks,
/// which these match for what they accept (the payload ends at the total length: Ethernet
/// padding is not payload).
fn plain_ipv4(buf: &[u8]) -> Option<(IpEndpoints, &[u8])> {
    let h = buf.get(..20)?;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let flags_offset = u16::from_be_bytes([h[6], h[7]]);
    // Version 4 with a 20-byte header; MF clear and offset 0 (DF may be set).
    if h[0] != 0x45 || flags_offset & 0x3FFF != 0 || total < 20 || total > buf.len() {
        return None;
    }
    let ip = IpEndpoints {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        protocol: h[9],
    };
    Some((ip, &buf[20..total]))
}

/// A UDP header read by hand: ports and the payload its length field covers, when that length
/// is within the buffer (else etherparse decides).
fn plain_udp(buf: &[u8]) -> Option<(u16, u16, &[u8])> {
    let h = buf.get(..8)?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if len < 8 || len > buf.len() {
        return None;
    }
    let port = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    Some((port(0), port(2), &buf[8..len]))
}

/// Counts the layers of a finished result.
fn count(d: &Decapsulated<'_>, stats: &mut DecapStats) {
    match d.vlans.len() {
        0 => {}
        1 => stats.tagged += 1,
        _ => stats.qinq += 1,
    }
    match d.ip.map(|ip| ip.src) {
        Some(IpAddr::V4(_)) => stats.ipv4 += 1,
        Some(IpAddr::V6(_)) => stats.ipv6 += 1,
        None => {}
    }
    match d.transport {
        Transport::Udp { .. } => stats.udp += 1,
        Transport::Tcp { .. } => stats.tcp += 1,
        Transport::Other => stats.other_ip += 1,
        Transport::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    /// Ethernet + tags + IPv4 + UDP with `payload`.
    fn udp_frame(tags: &[(u16, u16)], payload: &[u8], frag: Option<(u16, bool)>) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for &(tpid, vid) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let udp_len = 8 + payload.len();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1]);
        let (off, mf) = frag.unwrap_or((0, false));
        ip.extend_from_slice(&((off / 8) | if mf { 0x2000 } else { 0 }).to_be_bytes());
        ip.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&5000u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tags_up_to_four_then_stop() {
        let mut d = Decapsulator::new(DecapConfig::default());
        for n in 0..=5u16 {
            let tags: Vec<(u16, u16)> = (0..n)
                .map(|i| (if i == 0 { 0x88A8 } else { 0x8100 }, 100 + i))
                .collect();
            let f = udp_frame(&tags, b"hello", None);
            let r = d.decapsulate(ts(0), LinkType::Ethernet, &f);
            if n <= 4 {
                assert_eq!(
                    r.vlans.ids().collect::<Vec<_>>(),
                    (0..n).map(|i| 100 + i).collect::<Vec<_>>()
                );
                assert_eq!(
                    r.transport,
                    Transport::Udp {
                        src_port: 4000,
                        dst_port: 5000,
                        payload: b"hello"
                    }
                );
                assert_eq!(r.stop, None);
            } else {
                assert_eq!(r.stop.unwrap().reason, StopReason::TooManyVlans);
                // The fifth tag's TCI, after its TPID.
                assert_eq!(r.stop.unwrap().offset, 12 + 4 * 4 + 2);
            }
        }
        // Two, three and four tags, and the five-tag frame that kept four.
        assert_eq!(d.stats().qinq, 4);
        assert_eq!(d.stats().tagged, 1);
        assert_eq!(
            d.stats().stop_count(Layer::Vlan, StopReason::TooManyVlans),
            1
        );
    }

    #[test]
    fn truncation_at_every_length_never_panics_and_is_counted() {
        let f = udp_frame(&[(0x8100, 85)], b"0123456789", None);
        let mut d = Decapsulator::new(DecapConfig::default());
        for len in 0..f.len() {
            let r = d.decapsulate(ts(0), LinkType::Ethernet, &f[..len]);
            assert!(r.stop.is_some(), "length {len}");
        }
        let total: u64 = d.stats().stops().iter().map(|(_, n)| n).sum();
        assert_eq!(total, f.len() as u64);
    }

    #[test]
    fn sll_raw_and_null_links() {
        let eth = udp_frame(&[], b"x", None);
        let ip = &eth[14..];
        let mut sll = vec![0u8; 16];
        sll[14..16].copy_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut d = Decapsulator::new(DecapConfig::default());
        for (link, buf) in [
            (LinkType::LinuxSll, &sll[..]),
            (LinkType::LinuxSll2, &sll2[..]),
            (LinkType::RawIp, ip),
            (LinkType::Ipv4, ip),
            (LinkType::Null, &null[..]),
        ] {
            let r = d.decapsulate(ts(0), link, buf);
            assert!(
                matches!(r.transport, Transport::Udp { dst_port: 5000, .. }),
                "{link:?}"
            );
        }
        let r = d.decapsulate(ts(0), LinkType::Unknown(147), ip);
        assert_eq!(r.stop.unwrap().reason, StopReason::UnsupportedLinkType);
    }

    #[test]
    fn ipv4_fragments_reassembled_out_of_order() {
        let payload: Vec<u8> = (0..64u8).collect();
        // The whole UDP datagram, then cut into IP fragments of 40 and 32 bytes.
        let whole = udp_frame(&[(0x8100, 85)], &payload, None);
        let udp = &whole[18 + 20..];
        let mk = |off: usize, data: &[u8], mf: bool| {
            let mut f = whole[..18 + 20].to_vec();
            f[18 + 2..18 + 4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
            f[18 + 6..18 + 8]
                .copy_from_slice(&(((off / 8) as u16) | if mf { 0x2000 } else { 0 }).to_be_bytes());
            f.extend_from_slice(data);
            f
        };
        let first = mk(0, &udp[..40], true);
        let second = mk(40, &udp[40..], false);
        let mut d = Decapsulator::new(DecapConfig::default());
        let r = d.decapsulate(ts(0), LinkType::Ethernet, &second);
        assert_eq!(r.stop.unwrap().reason, StopReason::FragmentPending);
        let r = d.decapsulate(ts(1), LinkType::Ethernet, &first);
        assert_eq!(
            r.transport,
            Transport::Udp {
                src_port: 4000,
                dst_port: 5000,
                payload: &payload[..]
            }
        );
        assert_eq!(r.vlans.ids().collect::<Vec<_>>(), vec![85]);
        assert_eq!(d.stats().fragments.reassembled, 1);
    }

    #[test]
    fn vxlan_and_gre_tunnels() {
        let inner = udp_frame(&[(0x8100, 20)], b"rtp", None);
        // VXLAN: outer Ethernet/VLAN 5/IPv4/UDP 4789.
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 0x2A, 0];
        vx.extend_from_slice(&inner);
        let mut outer = udp_frame(&[(0x8100, 5)], &vx, None);
        outer[18 + 20 + 2..18 + 20 + 4].copy_from_slice(&4789u16.to_be_bytes());
        let mut d = Decapsulator::new(DecapConfig::default());
        let r = d.decapsulate(ts(0), LinkType::Ethernet, &outer);
        assert!(r.tunnels.contains(Tunnels::VXLAN));
        assert_eq!(r.vlans.ids().collect::<Vec<_>>(), vec![20]);
        assert_eq!(r.outer_vlans.ids().collect::<Vec<_>>(), vec![5]);
        assert!(matches!(
            r.transport,
            Transport::Udp {
                payload: b"rtp",
                ..
            }
        ));
    }

    fn public(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/public")
            .join(name)
    }

    /// (inner VLAN ids, innermost IP protocol or ethertype) -> frames, for a whole capture.
    fn census(name: &str) -> (BTreeMap<(Vec<u16>, String), u64>, DecapStats) {
        let mut cap = pcap::Capture::from_file(public(name)).unwrap();
        let link = LinkType::from_dlt(cap.get_datalink().0);
        let mut d = Decapsulator::new(DecapConfig::default());
        let mut out = BTreeMap::new();
        let mut n = 0;
        while let Ok(p) = cap.next_packet() {
            n += 1;
            let r = d.decapsulate(ts(n), link, p.data);
            let what = match (r.ip, r.stop) {
                (Some(ip), _) => format!("ip{}", ip.protocol),
                (
                    None,
                    Some(Stop {
                        reason: StopReason::UnsupportedEtherType(t),
                        ..
                    }),
                ) => {
                    format!("0x{t:04x}")
                }
                (None, s) => format!("{s:?}"),
            };
            *out.entry((r.vlans.ids().collect(), what)).or_insert(0) += 1;
        }
        (out, d.stats().clone())
    }

    fn key(vlans: &[u16], what: &str) -> (Vec<u16>, String) {
        (vlans.to_vec(), what.to_owned())
    }

    #[test]
    fn erspan_type2_capture() {
        // tcpdump's erspan-type-ii-3.pcap: 108 frames in GRE/ERSPAN II; inner VLAN 1 (28 frames)
        // and VLAN 865 (10 frames, ARP), the rest untagged STP (LLC, no ethertype).
        let (c, s) = census("tcpdump-erspan-type-ii-3.pcap");
        assert_eq!(s.erspan2, 108);
        assert_eq!(
            c.iter()
                .filter(|(k, _)| k.0 == [1])
                .map(|(_, n)| n)
                .sum::<u64>(),
            28
        );
        assert_eq!(c[&key(&[865], "0x0806")], 10);
        assert_eq!(
            c.iter()
                .filter(|(k, _)| k.0.is_empty())
                .map(|(_, n)| n)
                .sum::<u64>(),
            70
        );
    }

    #[test]
    fn erspan_type3_capture() {
        // zeek's gre-erspan3-dot1q.pcap: 2 frames, ERSPAN III, inner VLAN 10, ICMP.
        let (c, s) = census("zeek-gre-erspan3-dot1q.pcap");
        assert_eq!(s.erspan3, 2);
        assert_eq!(c[&key(&[10], "ip1")], 2);
    }

    #[test]
    fn qinq_captures() {
        // tcpdump's 802.1ad_QinQ.pcap: S-tag 0x88a8 then C-tag 2001, ARP.
        let (c, s) = census("tcpdump-802.1ad_QinQ.pcap");
        assert_eq!(s.qinq, 2);
        let (k, n) = c.iter().next().unwrap();
        assert_eq!((k.0.last(), k.1.as_str(), *n), (Some(&2001), "0x0806", 2));
        // zeek's q-in-q.pcap: double 0x8100 tags 13/10, 4 UDP frames and one other.
        let (c, _) = census("zeek-q-in-q.pcap");
        assert_eq!(c[&key(&[13, 10], "ip17")], 4);
        // nDPI's regression file: VLAN 107 and QinQ 4006/20 RTP, GTP-U in 3243/10.
        let (c, s) = census("ndpi-false_positives-vlan-qinq-rtp.pcapng");
        assert_eq!(c[&key(&[107], "ip17")], 30);
        assert_eq!(c[&key(&[4006, 20], "ip17")], 30);
        assert_eq!(c[&key(&[3243, 10], "ip17")], 50);
        // GTP-U also carries TCP in QinQ 3394/113.
        assert_eq!(c[&key(&[3394, 113], "ip6")], 4);
        assert_eq!(s.gtp, 54);
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// An IPv4 header (+ `rest`) with the given first byte, flags/offset and total length.
    fn ipv4(first: u8, flags_offset: u16, total: u16, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![first, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1]);
        h.extend_from_slice(&flags_offset.to_be_bytes());
        h.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend_from_slice(rest);
        h
    }

    #[test]
    fn the_hand_read_ipv4_and_udp_headers_agree_with_etherparse() {
        let udp = [0x13, 0xC4, 0x13, 0xC5, 0, 12, 0, 0, 1, 2, 3, 4, 0xEE, 0xEE];
        let cases = [
            ipv4(0x45, 0, 34, &udp),      // plain, 2 bytes of padding after
            ipv4(0x45, 0x4000, 32, &udp), // DF set
            ipv4(0x45, 0x2000, 34, &udp), // MF: a fragment
            ipv4(0x45, 0x0010, 34, &udp), // an offset
            ipv4(0x46, 0, 38, &udp),      // options
            ipv4(0x45, 0, 99, &udp),      // total beyond the buffer
            ipv4(0x45, 0, 12, &udp),      // total below the header
            ipv4(0x65, 0, 34, &udp),      // version 6 nibble
        ];
        for (i, buf) in cases.iter().enumerate() {
            let reference = Ipv4Slice::from_slice(buf).ok();
            match plain_ipv4(buf) {
                Some((ip, payload)) => {
                    let r = reference.expect("etherparse accepts what the fast path accepts");
                    assert!(!r.payload().fragmented, "case {i}");
                    assert_eq!(payload, r.payload().payload, "case {i}");
                    assert_eq!(ip.src, IpAddr::V4(r.header().source_addr()));
                    assert_eq!(ip.dst, IpAddr::V4(r.header().destination_addr()));
                    assert_eq!(ip.protocol, r.header().protocol().0);
                    let (sp, dp, p) = plain_udp(payload).expect("plain UDP");
                    let u = UdpSlice::from_slice(payload).unwrap();
                    assert_eq!(
                        (sp, dp, p),
                        (u.source_port(), u.destination_port(), u.payload())
                    );
                }
                None => assert!(i >= 2, "case {i} should take the fast path"),
            }
        }
        // UDP lengths the fast path leaves to etherparse.
        assert!(plain_udp(&[0, 1, 0, 2, 0, 4, 0, 0]).is_none());
        assert!(plain_udp(&[0, 1, 0, 2, 0, 40, 0, 0]).is_none());
        assert!(plain_udp(&[0, 1, 0, 2]).is_none());
    }
}
