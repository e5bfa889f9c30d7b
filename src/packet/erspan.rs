//! ERSPAN headers: type II (8 bytes, GRE protocol 0x88BE with a GRE sequence number) and type
//! III (12 bytes, GRE protocol 0x22EB, plus an 8-byte platform-specific subheader when the O bit
//! is set). Type I (0x88BE without a GRE sequence number) has no ERSPAN header at all.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const VER_VLAN: Range<usize> = 0..2;
    pub(super) const COS_SESSION: Range<usize> = 2..4;
    pub(super) const TYPE2_LEN: usize = 8;
    pub(super) const TYPE3_FLAGS: usize = 11;
    pub(super) const TYPE3_LEN: usize = 12;
    pub(super) const PLATFORM_LEN: usize = 8;
}

/// A view of an ERSPAN type II or III header.
#[derive(Copy, Clone, Debug)]
pub struct ErspanHeader<'a> {
    buffer: &'a [u8],
    header_len: usize,
}

impl<'a> ErspanHeader<'a> {
    /// Type II header.
    pub fn new_checked_type2(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < field::TYPE2_LEN {
            return Err(Error::Truncated);
        }
        Ok(ErspanHeader {
            buffer,
            header_len: field::TYPE2_LEN,
        })
    }

    /// Type III header (with the optional platform subheader).
    pub fn new_checked_type3(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < field::TYPE3_LEN {
            return Err(Error::Truncated);
        }
        let header_len = if buffer[field::TYPE3_FLAGS] & 0x01 != 0 {
            field::TYPE3_LEN + field::PLATFORM_LEN
        } else {
            field::TYPE3_LEN
        };
        if buffer.len() < header_len {
            return Err(Error::Truncated);
        }
        Ok(ErspanHeader { buffer, header_len })
    }

    fn word(&self, r: std::ops::Range<usize>) -> u16 {
        u16::from_be_bytes([self.buffer[r.start], self.buffer[r.start + 1]])
    }

    /// ERSPAN version field (1 for type II, 2 for type III).
    pub fn version(&self) -> u8 {
        (self.word(field::VER_VLAN) >> 12) as u8
    }

    /// VLAN of the mirrored frame as the source switch recorded it.
    pub fn vlan(&self) -> u16 {
        self.word(field::VER_VLAN) & 0x0FFF
    }

    /// Mirror session id.
    pub fn session_id(&self) -> u16 {
        self.word(field::COS_SESSION) & 0x03FF
    }

    /// Header length.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The mirrored Ethernet frame.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[self.header_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type2_and_type3() {
        // ver 1, vlan 865; cos 0, session 5.
        let t2 = [0x13, 0x61, 0x00, 0x05, 0, 0, 0, 0, 0xEE];
        let h = ErspanHeader::new_checked_type2(&t2[..]).unwrap();
        assert_eq!((h.version(), h.vlan(), h.session_id()), (1, 865, 5));
        assert_eq!(h.payload(), &[0xEE]);
        let mut t3 = [0u8; 21];
        t3[0] = 0x20;
        t3[1] = 10;
        t3[11] = 0x01; // O bit: platform subheader follows
        let h = ErspanHeader::new_checked_type3(&t3[..]).unwrap();
        assert_eq!((h.version(), h.vlan(), h.header_len()), (2, 10, 20));
        assert_eq!(h.payload().len(), 1);
        assert_eq!(
            ErspanHeader::new_checked_type3(&t3[..19]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            ErspanHeader::new_checked_type2(&t2[..7]).err(),
            Some(Error::Truncated)
        );
    }
}
