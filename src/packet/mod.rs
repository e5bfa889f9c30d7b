//! Packet views and lax decapsulation (no I/O, never panics on input).
//!
//! Layout follows smoltcp's `wire`: one file per header. Each view is a zero-copy struct over
//! `&[u8]` with a checked constructor (`new_checked`) that verifies every length its accessors
//! use; once it succeeds no accessor panics. Offsets are named constants in a private `field`
//! module. Code points we do not know are `Unknown(raw)` values, never errors.
//!
//! [`Decapsulator::decapsulate`] walks a captured frame from the link layer to UDP/TCP through
//! any stack of 802.1Q/802.1ad tags, GRE (transparent Ethernet bridging), ERSPAN II/III and
//! VXLAN, reassembling IPv4 fragments in bounded memory. It is *lax*: it returns whatever layers
//! parsed plus a [`Stop`] (layer, byte offset, reason) when it could not go further, and counts
//! every outcome in [`DecapStats`], so malformed input is counted, never lost silently.
//!
//! The types in this file are the contract the engine and vlantest rely on.

use std::net::IpAddr;

pub mod checksum;
pub mod decap;
pub mod erspan;
pub mod ethernet;
pub mod fragment;
pub mod gre;
pub mod gtp;
pub mod rtcp;
pub mod rtp;
pub mod sll;
pub mod vxlan;

pub use decap::{DecapConfig, DecapStats, Decapsulator};

/// Most VLAN tags kept per Ethernet header (802.1Q, 802.1ad and stacked tags).
pub const MAX_VLANS: usize = 4;

/// Link-layer type of a capture (libpcap DLT / LINKTYPE numbers).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// LINKTYPE_RAW (101; DLT_RAW is 12 or 14 on some platforms).
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_NULL (0): 4-byte host-order address family.
    Null,
    /// LINKTYPE_LOOP (108): 4-byte network-order address family.
    Loop,
    /// Anything else.
    Unknown(i32),
}

impl LinkType {
    /// From a libpcap link-type number (DLT_ or LINKTYPE_ value).
    pub fn from_dlt(dlt: i32) -> Self {
        match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            other => LinkType::Unknown(other),
        }
    }
}

/// One 802.1Q / 802.1ad tag.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag protocol identifier it was found under (0x8100, 0x88A8, 0x9100).
    pub tpid: u16,
    /// VLAN id (12 bits).
    pub vid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
}

/// The VLAN tags of one Ethernet header, outermost first. Fixed size: no allocation.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanStack {
    tags: [VlanTag; MAX_VLANS],
    len: u8,
}

impl VlanStack {
    /// An empty stack (untagged frame).
    pub const fn new() -> Self {
        VlanStack {
            tags: [VlanTag {
                tpid: 0,
                vid: 0,
                pcp: 0,
                dei: false,
            }; MAX_VLANS],
            len: 0,
        }
    }

    /// Appends an inner tag; returns false (and keeps the stack) when it is full.
    pub fn push(&mut self, tag: VlanTag) -> bool {
        if (self.len as usize) < MAX_VLANS {
            self.tags[self.len as usize] = tag;
            self.len += 1;
            true
        } else {
            false
        }
    }

    /// The tags, outermost first.
    pub fn tags(&self) -> &[VlanTag] {
        &self.tags[..self.len as usize]
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for an untagged frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// VLAN ids, outermost first.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.tags().iter().map(|t| t.vid)
    }
}

/// Tunnels crossed on the way to the innermost frame (a bit set; no allocation).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tunnels(u8);

impl Tunnels {
    /// GRE carrying Transparent Ethernet Bridging (0x6558).
    pub const GRE_TEB: Tunnels = Tunnels(1);
    /// ERSPAN type II (GRE 0x88BE).
    pub const ERSPAN2: Tunnels = Tunnels(2);
    /// ERSPAN type III (GRE 0x22EB).
    pub const ERSPAN3: Tunnels = Tunnels(4);
    /// VXLAN (UDP 4789).
    pub const VXLAN: Tunnels = Tunnels(8);
    /// GRE carrying IP directly.
    pub const GRE_IP: Tunnels = Tunnels(16);
    /// GTP-U (UDP 2152) carrying IP.
    pub const GTP: Tunnels = Tunnels(32);

    /// No tunnel.
    pub const fn none() -> Self {
        Tunnels(0)
    }
    /// Adds `t`.
    pub fn insert(&mut self, t: Tunnels) {
        self.0 |= t.0;
    }
    /// True when all bits of `t` are set.
    pub fn contains(self, t: Tunnels) -> bool {
        self.0 & t.0 == t.0 && t.0 != 0
    }
    /// True when no tunnel was crossed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Names of the tunnels crossed, for reports.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (Tunnels::GRE_TEB, "gre"),
            (Tunnels::ERSPAN2, "erspan2"),
            (Tunnels::ERSPAN3, "erspan3"),
            (Tunnels::VXLAN, "vxlan"),
            (Tunnels::GRE_IP, "gre-ip"),
            (Tunnels::GTP, "gtp-u"),
        ]
        .into_iter()
        .filter(move |(t, _)| self.contains(*t))
        .map(|(_, n)| n)
    }
}

/// Innermost IP header's addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpEndpoints {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number of the payload (after IPv6 extension headers).
    pub protocol: u8,
}

/// The innermost transport layer found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// Decoding stopped before a transport header (see [`Decapsulated::stop`]).
    None,
    /// UDP datagram (after reassembly when the IP packet was fragmented).
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// UDP payload, bounded by the UDP length field.
        payload: &'a [u8],
    },
    /// TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number of the payload's first byte.
        seq: u32,
        /// FIN or RST: the sender's side of the connection ends.
        closing: bool,
        /// Segment payload.
        payload: &'a [u8],
    },
    /// Another IP protocol (ICMP, ESP, ...), not decoded further.
    Other,
}

/// The protocol layer decoding was at when it stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Link layer header (Ethernet, SLL, SLL2, NULL).
    Link,
    /// An 802.1Q/802.1ad tag.
    Vlan,
    /// IPv4 header.
    Ipv4,
    /// IPv6 header or extension headers.
    Ipv6,
    /// UDP header.
    Udp,
    /// TCP header.
    Tcp,
    /// GRE header.
    Gre,
    /// ERSPAN header.
    Erspan,
    /// VXLAN header.
    Vxlan,
    /// GTP-U header.
    Gtp,
}

impl Layer {
    /// Every layer, in index order.
    pub const ALL: [Layer; 10] = [
        Layer::Link,
        Layer::Vlan,
        Layer::Ipv4,
        Layer::Ipv6,
        Layer::Udp,
        Layer::Tcp,
        Layer::Gre,
        Layer::Erspan,
        Layer::Vxlan,
        Layer::Gtp,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Udp => "udp",
            Layer::Tcp => "tcp",
            Layer::Gre => "gre",
            Layer::Erspan => "erspan",
            Layer::Vxlan => "vxlan",
            Layer::Gtp => "gtp",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why decoding stopped before reaching a transport payload. Small and `Copy`: the hot path
/// counts these, it does not allocate for them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The buffer ended inside a header or before a length field's end.
    Truncated,
    /// A header field has an impossible value (version, header length, total length...).
    Malformed,
    /// An ethertype we do not decode (ARP, LLDP, STP, ...). Not an error: counted as "other".
    UnsupportedEtherType(u16),
    /// A link type we do not decode.
    UnsupportedLinkType,
    /// More VLAN tags than [`MAX_VLANS`].
    TooManyVlans,
    /// More tunnel levels than the decapsulator allows.
    TooDeep,
    /// An IPv4 fragment was stored; the datagram is not complete yet.
    FragmentPending,
    /// An IPv4 fragment was dropped (reassembly memory full, overlap or bad offset).
    FragmentDropped,
    /// A GRE protocol or version we do not decode.
    UnsupportedGre(u16),
    /// A later IPv6/IPv4 fragment we cannot use (IPv6 fragments are not reassembled).
    Ipv6Fragment,
}

impl StopReason {
    /// Number of reason kinds (for counter arrays).
    pub const KINDS: usize = 10;

    /// Index of the reason kind (code points are folded).
    pub(crate) fn index(self) -> usize {
        match self {
            StopReason::Truncated => 0,
            StopReason::Malformed => 1,
            StopReason::UnsupportedEtherType(_) => 2,
            StopReason::UnsupportedLinkType => 3,
            StopReason::TooManyVlans => 4,
            StopReason::TooDeep => 5,
            StopReason::FragmentPending => 6,
            StopReason::FragmentDropped => 7,
            StopReason::UnsupportedGre(_) => 8,
            StopReason::Ipv6Fragment => 9,
        }
    }

    /// Name of the reason kind at `index`.
    pub(crate) fn kind_name(index: usize) -> &'static str {
        [
            "truncated",
            "malformed",
            "other_ethertype",
            "unsupported_link_type",
            "too_many_vlans",
            "too_deep",
            "fragment_pending",
            "fragment_dropped",
            "unsupported_gre",
            "ipv6_fragment",
        ]
        .get(index)
        .copied()
        .unwrap_or("unknown")
    }
}

/// Why a view could not be built over a buffer. Small and `Copy` (hot path).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or a length field) says.
    #[error("truncated")]
    Truncated,
    /// A field has an impossible value.
    #[error("malformed")]
    Malformed,
}

/// Where and why decoding stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stop {
    /// Layer being decoded.
    pub layer: Layer,
    /// Byte offset of that layer in the innermost buffer being decoded.
    pub offset: usize,
    /// Reason.
    pub reason: StopReason,
}

/// Result of decapsulating one frame: every layer that parsed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// VLAN tags of the innermost Ethernet header (the monitored traffic's VLANs).
    pub vlans: VlanStack,
    /// VLAN tags of the outermost Ethernet header when a tunnel was crossed (the mirror transport's
    /// VLANs); empty otherwise.
    pub outer_vlans: VlanStack,
    /// Tunnels crossed.
    pub tunnels: Tunnels,
    /// Innermost ethertype seen (0 when the link type has none).
    pub ethertype: u16,
    /// Innermost IP addresses, when an IP header parsed.
    pub ip: Option<IpEndpoints>,
    /// Transport header and payload.
    pub transport: Transport<'a>,
    /// Set when decoding stopped early.
    pub stop: Option<Stop>,
}

impl Decapsulated<'_> {
    /// Nothing decoded yet: no tags, no tunnel, no IP, no transport, no stop.
    pub const fn empty() -> Self {
        Decapsulated {
            vlans: VlanStack::new(),
            outer_vlans: VlanStack::new(),
            tunnels: Tunnels::none(),
            ethertype: 0,
            ip: None,
            transport: Transport::None,
            stop: None,
        }
    }
}
