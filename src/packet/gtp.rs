//! GTP-U (GTPv1 user plane, UDP port 2152) header view: mobile-network tunnels whose G-PDUs
//! carry IP packets (VoLTE RTP among them). Extension headers are walked and skipped.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const MSG_TYPE: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const TEID: Range<usize> = 4..8;
    pub(super) const BASE_LEN: usize = TEID.end;
    pub(super) const OPTIONAL_LEN: usize = 4;
    pub(super) const NEXT_EXT: usize = 11;
}

/// The GTP-U port.
pub const GTPU_PORT: u16 = 2152;
/// Message type of a G-PDU (user data).
pub const G_PDU: u8 = 0xFF;

/// A view of a GTPv1-U header.
#[derive(Copy, Clone, Debug)]
pub struct GtpuHeader<'a> {
    buffer: &'a [u8],
    header_len: usize,
    end: usize,
}

impl<'a> GtpuHeader<'a> {
    /// Checks version 1, protocol type GTP, the length field and every extension header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < field::BASE_LEN {
            return Err(Error::Truncated);
        }
        let flags = buffer[field::FLAGS];
        if flags >> 5 != 1 || flags & 0x10 == 0 {
            return Err(Error::Malformed);
        }
        let length = u16::from_be_bytes([buffer[2], buffer[3]]) as usize;
        let end = field::BASE_LEN + length;
        if buffer.len() < end {
            return Err(Error::Truncated);
        }
        let mut header_len = field::BASE_LEN;
        if flags & 0x07 != 0 {
            header_len += field::OPTIONAL_LEN;
            if end < header_len {
                return Err(Error::Malformed);
            }
            let mut next = buffer[field::NEXT_EXT];
            while next != 0 {
                let units = *buffer.get(header_len).ok_or(Error::Truncated)? as usize;
                if units == 0 {
                    return Err(Error::Malformed);
                }
                header_len += units * 4;
                if header_len > end {
                    return Err(Error::Truncated);
                }
                next = buffer[header_len - 1];
            }
        }
        Ok(GtpuHeader {
            buffer,
            header_len,
            end,
        })
    }

    /// Message type (0xFF = G-PDU).
    pub fn message_type(&self) -> u8 {
        self.buffer[field::MSG_TYPE]
    }

    /// Tunnel endpoint identifier.
    pub fn teid(&self) -> u32 {
        let b = &self.buffer[field::TEID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Length field (bytes after the first 8).
    pub fn length(&self) -> u16 {
        let b = &self.buffer[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The T-PDU (an IP packet for G-PDUs).
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[self.header_len..self.end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_extension_headers() {
        let plain = [0x30, 0xFF, 0x00, 0x02, 0, 0, 0, 7, 0x45, 0x00];
        let g = GtpuHeader::new_checked(&plain[..]).unwrap();
        assert_eq!((g.message_type(), g.teid(), g.length()), (G_PDU, 7, 2));
        assert_eq!(g.payload(), &[0x45, 0x00]);
        // E flag, one 4-byte extension header (PDU session container), then IP.
        let ext = [
            0x34, 0xFF, 0x00, 0x0A, 0, 0, 0, 1, 0, 0, 0, 0x85, 0x01, 0x10, 0x05, 0x00, 0x45, 0x00,
        ];
        let g = GtpuHeader::new_checked(&ext[..]).unwrap();
        assert_eq!(g.payload(), &[0x45, 0x00]);
        let mut bad = ext;
        bad[12] = 0; // extension length 0
        assert_eq!(
            GtpuHeader::new_checked(&bad[..]).err(),
            Some(Error::Malformed)
        );
        assert_eq!(
            GtpuHeader::new_checked(&plain[..9]).err(),
            Some(Error::Truncated)
        );
        let v2 = [0x48, 0xFF, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            GtpuHeader::new_checked(&v2[..]).err(),
            Some(Error::Malformed)
        );
    }
}
