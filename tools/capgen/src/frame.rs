//! Ethernet (untagged, 802.1Q or QinQ) / IPv4 / UDP frame building.

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

/// Builds a whole frame into `out` (cleared first).
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
    let total = 20 + 8 + payload.len();
    out.extend_from_slice(&[0x45, 0xB8]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&ip_id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0x00, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = internet_checksum(&out[ip_start..ip_start + 20]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
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
}
