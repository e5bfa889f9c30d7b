//! Ethernet II header view and 802.1Q / 802.1ad tag view.

use super::{Error, VlanTag};

mod field {
    use std::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const PAYLOAD: usize = ETHERTYPE.end;
    // Tag (after the TPID that announced it): TCI then the next ethertype.
    pub(super) const TCI: Range<usize> = 0..2;
    pub(super) const INNER_ETHERTYPE: Range<usize> = 2..4;
}

/// Ethernet II header length.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// One VLAN tag's length after its TPID.
pub const VLAN_TAG_LEN: usize = field::INNER_ETHERTYPE.end;

/// Ethertypes we decode.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// 802.1Q C-tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad S-tag.
    pub const QINQ: u16 = 0x88A8;
    /// Pre-standard QinQ.
    pub const QINQ_OLD: u16 = 0x9100;
    /// Transparent Ethernet bridging (GRE payload).
    pub const TEB: u16 = 0x6558;
    /// ERSPAN type II (and type I) as a GRE protocol.
    pub const ERSPAN2: u16 = 0x88BE;
    /// ERSPAN type III as a GRE protocol.
    pub const ERSPAN3: u16 = 0x22EB;

    /// True for tag protocol identifiers.
    pub fn is_vlan(t: u16) -> bool {
        matches!(t, VLAN | QINQ | QINQ_OLD)
    }
}

/// A view of an Ethernet II frame.
#[derive(Copy, Clone, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Destination MAC.
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        m
    }

    /// Source MAC.
    pub fn src_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        m
    }

    /// Ethertype (or TPID of the first tag).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

/// A view of one VLAN tag (TCI + next ethertype), found after a TPID.
#[derive(Copy, Clone, Debug)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps `buffer` after checking it holds a whole tag.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(VlanHeader { buffer })
    }

    fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The tag, given the TPID it was announced by.
    pub fn tag(&self, tpid: u16) -> VlanTag {
        let tci = self.tci();
        VlanTag {
            tpid,
            vid: tci & 0x0FFF,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
        }
    }

    /// The ethertype after this tag.
    pub fn inner_ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::INNER_ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VLAN_TAG_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00, // header
        0xA0, 0x55, 0x08, 0x00, // pcp 5, dei 0, vid 85, IPv4
        0x45, 0x00,
    ];

    #[test]
    fn ethernet_and_tag() {
        let e = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(e.dst_addr(), [0xff; 6]);
        assert_eq!(e.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(e.ethertype(), ethertype::VLAN);
        let v = VlanHeader::new_checked(e.payload()).unwrap();
        let t = v.tag(e.ethertype());
        assert_eq!((t.vid, t.pcp, t.dei), (85, 5, false));
        assert_eq!(v.inner_ethertype(), ethertype::IPV4);
        assert_eq!(v.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn impossible_lengths() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            VlanHeader::new_checked(&FRAME[14..17]).err(),
            Some(Error::Truncated)
        );
        assert!(EthernetFrame::new_checked(&FRAME[..14])
            .unwrap()
            .payload()
            .is_empty());
    }
}
