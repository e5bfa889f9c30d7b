//! Linux cooked capture headers: SLL (16 bytes, LINKTYPE_LINUX_SLL) and SLL2 (20 bytes,
//! LINKTYPE_LINUX_SLL2). Both carry the protocol (an ethertype) of what follows.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const SLL_PROTOCOL: Range<usize> = 14..16;
    pub(super) const SLL_LEN: usize = SLL_PROTOCOL.end;
    pub(super) const SLL2_PROTOCOL: Range<usize> = 0..2;
    pub(super) const SLL2_IFINDEX: Range<usize> = 4..8;
    pub(super) const SLL2_LEN: usize = 20;
}

/// SLL header length.
pub const SLL_HEADER_LEN: usize = field::SLL_LEN;
/// SLL2 header length.
pub const SLL2_HEADER_LEN: usize = field::SLL2_LEN;

/// A view of a cooked capture header of either version.
#[derive(Copy, Clone, Debug)]
pub struct CookedHeader<'a> {
    buffer: &'a [u8],
    v2: bool,
}

impl<'a> CookedHeader<'a> {
    /// SLL (version 1).
    pub fn new_checked_v1(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < SLL_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(CookedHeader { buffer, v2: false })
    }

    /// SLL2.
    pub fn new_checked_v2(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < SLL2_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(CookedHeader { buffer, v2: true })
    }

    /// The protocol (ethertype) of the payload.
    pub fn protocol(&self) -> u16 {
        let r = if self.v2 {
            field::SLL2_PROTOCOL
        } else {
            field::SLL_PROTOCOL
        };
        u16::from_be_bytes([self.buffer[r.start], self.buffer[r.start + 1]])
    }

    /// Interface index (SLL2 only).
    pub fn interface_index(&self) -> Option<u32> {
        self.v2.then(|| {
            let b = &self.buffer[field::SLL2_IFINDEX];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        })
    }

    /// Everything after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[if self.v2 {
            SLL2_HEADER_LEN
        } else {
            SLL_HEADER_LEN
        }..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sll_and_sll2() {
        let mut v1 = [0u8; 18];
        v1[14..16].copy_from_slice(&[0x08, 0x00]);
        v1[16] = 0x45;
        let h = CookedHeader::new_checked_v1(&v1).unwrap();
        assert_eq!(h.protocol(), 0x0800);
        assert_eq!(h.payload(), &[0x45, 0]);
        assert_eq!(h.interface_index(), None);

        let mut v2 = [0u8; 21];
        v2[0..2].copy_from_slice(&[0x86, 0xDD]);
        v2[4..8].copy_from_slice(&3u32.to_be_bytes());
        let h = CookedHeader::new_checked_v2(&v2).unwrap();
        assert_eq!(h.protocol(), 0x86DD);
        assert_eq!(h.interface_index(), Some(3));
        assert_eq!(h.payload().len(), 1);

        assert_eq!(
            CookedHeader::new_checked_v1(&v1[..15]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            CookedHeader::new_checked_v2(&v2[..19]).err(),
            Some(Error::Truncated)
        );
    }
}
