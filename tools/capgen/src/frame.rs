//! Ethernet (untagged, 802.1Q or QinQ) / IPv4 / UDP or TCP frame building.

use std::net::Ipv4Addr;

use silentmon::packet::checksum::internet_checksum;

/// How frames are tagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// No tag.
    Untagged,
    /// One 802.1Q tag.
    Vlan(u16),
    /// 802.1ad S-tag then 802.1Q C-tag.
    QinQ(u16, u16),
}

impl Encap {
    /// VLAN ids, outermost first.
    pub fn vlans(&self) -> Vec<u16> {
        match *self {
            Encap::Untagged => vec![],
            Encap::Vlan(v) => vec![v],
            Encap::QinQ(o, i) => vec![o, i],
        }
    }
}

fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Ethernet header, tags and IPv4 header for `l4_len` bytes of protocol `proto`, into `out`
/// (cleared first).
fn ip_header(
    out: &mut Vec<u8>,
    encap: Encap,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    ip_id: u16,
    proto: u8,
    l4_len: usize,
) {
    out.clear();
    out.extend_from_slice(&mac_for(dst));
    out.extend_from_slice(&mac_for(src));
    match encap {
        Encap::Untagged => {}
        Encap::Vlan(v) => {
            out.extend_from_slice(&[0x81, 0x00]);
            out.extend_from_slice(&((5u16 << 13) | v).to_be_bytes());
        }
        Encap::QinQ(o, i) => {
            out.extend_from_slice(&[0x88, 0xA8]);
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&[0x81, 0x00]);
            out.extend_from_slice(&((5u16 << 13) | i).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0x08, 0x00]);
    let ip_start = out.len();
    let total = 20 + l4_len;
    out.extend_from_slice(&[0x45, 0xB8]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&ip_id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0x00, 64, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = internet_checksum(&out[ip_start..ip_start + 20]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
}

/// Builds a whole UDP frame into `out` (cleared first).
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    out: &mut Vec<u8>,
    encap: Encap,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    ip_id: u16,
    payload: &[u8],
) {
    ip_header(out, encap, (src, dst), ip_id, 17, 8 + payload.len());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// One TCP segment's header fields.
#[derive(Clone, Copy, Debug)]
pub struct TcpHeader {
    /// Source and destination ports.
    pub ports: (u16, u16),
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (0x18 PSH+ACK, 0x11 FIN+ACK).
    pub flags: u8,
}

/// Builds a whole TCP frame into `out` (cleared first); the TCP checksum is computed.
pub fn tcp_frame(
    out: &mut Vec<u8>,
    encap: Encap,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    ip_id: u16,
    h: TcpHeader,
    payload: &[u8],
) {
    let len = 20 + payload.len();
    ip_header(out, encap, (src, dst), ip_id, 6, len);
    let start = out.len();
    out.extend_from_slice(&h.ports.0.to_be_bytes());
    out.extend_from_slice(&h.ports.1.to_be_bytes());
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.ack.to_be_bytes());
    out.extend_from_slice(&[0x50, h.flags, 0xFA, 0xF0, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + len);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    pseudo.extend_from_slice(&out[start..]);
    let c = internet_checksum(&pseudo);
    out[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_frame_and_ip_checksum() {
        let mut f = Vec::new();
        udp_frame(
            &mut f,
            Encap::QinQ(300, 85),
            Ipv4Addr::new(10, 0, 0, 1),
            1000,
            Ipv4Addr::new(10, 0, 0, 2),
            2000,
            7,
            b"abc",
        );
        assert_eq!(&f[12..14], &[0x88, 0xA8]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]) & 0x0FFF, 85);
        assert_eq!(internet_checksum(&f[22..42]), 0);
        assert_eq!(&f[f.len() - 3..], b"abc");
    }

    #[test]
    fn tcp_checksum_verifies() {
        let mut f = Vec::new();
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let h = TcpHeader {
            ports: (40000, 5060),
            seq: 7,
            ack: 9,
            flags: 0x18,
        };
        tcp_frame(&mut f, Encap::Untagged, (src, dst), 1, h, b"abcd");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6, 0, 24]);
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(internet_checksum(&pseudo), 0);
        assert_eq!(f[23], 6);
    }
}
