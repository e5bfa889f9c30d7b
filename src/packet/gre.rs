//! GRE header view (RFC 2784 with the RFC 2890 key and sequence extensions). Version 0 only;
//! version 1 (PPTP's enhanced GRE) is reported, not decoded.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: Range<usize> = 0..2;
    pub(super) const PROTOCOL: Range<usize> = 2..4;
    pub(super) const BASE_LEN: usize = PROTOCOL.end;
    pub(super) const OPTION_LEN: usize = 4;
}

const FLAG_CHECKSUM: u16 = 0x8000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQUENCE: u16 = 0x1000;
const VERSION_MASK: u16 = 0x0007;

/// A view of a GRE header.
#[derive(Copy, Clone, Debug)]
pub struct GreHeader<'a> {
    buffer: &'a [u8],
    header_len: usize,
}

impl<'a> GreHeader<'a> {
    /// Checks the fixed part and every optional field the flags announce.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < field::BASE_LEN {
            return Err(Error::Truncated);
        }
        let flags = u16::from_be_bytes([buffer[0], buffer[1]]);
        let options = [FLAG_CHECKSUM, FLAG_KEY, FLAG_SEQUENCE]
            .iter()
            .filter(|f| flags & **f != 0)
            .count();
        let header_len = field::BASE_LEN + options * field::OPTION_LEN;
        if buffer.len() < header_len {
            return Err(Error::Truncated);
        }
        Ok(GreHeader { buffer, header_len })
    }

    fn flags(&self) -> u16 {
        let b = &self.buffer[field::FLAGS];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// GRE version (0 = RFC 2784).
    pub fn version(&self) -> u16 {
        self.flags() & VERSION_MASK
    }

    /// True when a sequence number is present (tells ERSPAN type II from type I).
    pub fn has_sequence(&self) -> bool {
        self.flags() & FLAG_SEQUENCE != 0
    }

    /// The protocol (an ethertype) of the payload.
    pub fn protocol(&self) -> u16 {
        let b = &self.buffer[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Header length including optional fields.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Everything after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[self.header_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_with_options() {
        let plain = [0x00, 0x00, 0x65, 0x58, 0xAA];
        let g = GreHeader::new_checked(&plain[..]).unwrap();
        assert_eq!((g.protocol(), g.header_len(), g.version()), (0x6558, 4, 0));
        assert_eq!(g.payload(), &[0xAA]);
        // Sequence bit set: 4 more bytes (ERSPAN II style).
        let seq = [0x10, 0x00, 0x88, 0xBE, 0, 0, 0, 1, 0xBB];
        let g = GreHeader::new_checked(&seq[..]).unwrap();
        assert!(g.has_sequence());
        assert_eq!(g.payload(), &[0xBB]);
        // Checksum + key + sequence announced but missing.
        let short = [0xB0, 0x00, 0x08, 0x00, 0, 0, 0, 0];
        assert_eq!(
            GreHeader::new_checked(&short[..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            GreHeader::new_checked(&plain[..3]).err(),
            Some(Error::Truncated)
        );
    }
}
