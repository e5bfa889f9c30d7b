//! RTP header view (RFC 3550), built on `rtp-rs`'s reader, which checks the CSRC list, the
//! header extension and the padding length up front; after `new_checked` no accessor panics.

use rtp_rs::RtpReader;

use super::Error;

/// Fixed RTP header length.
pub const HEADER_LEN: usize = 12;

/// A checked view of an RTP packet.
pub struct RtpPacket<'a> {
    reader: RtpReader<'a>,
}

impl std::fmt::Debug for RtpPacket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpPacket")
            .field("pt", &self.payload_type())
            .field("seq", &self.sequence_number())
            .field("ts", &self.timestamp())
            .field("ssrc", &self.ssrc())
            .finish()
    }
}

impl<'a> RtpPacket<'a> {
    /// Checks version 2 and every length the header announces.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Error> {
        match RtpReader::new(buffer) {
            Ok(reader) => Ok(RtpPacket { reader }),
            Err(rtp_rs::RtpReaderError::BufferTooShort(_))
            | Err(rtp_rs::RtpReaderError::HeadersTruncated { .. }) => Err(Error::Truncated),
            Err(_) => Err(Error::Malformed),
        }
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.reader.mark()
    }

    /// Payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.reader.payload_type()
    }

    /// Sequence number.
    pub fn sequence_number(&self) -> u16 {
        self.reader.sequence_number().into()
    }

    /// RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        self.reader.timestamp()
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.reader.ssrc()
    }

    /// Number of CSRCs.
    pub fn csrc_count(&self) -> u8 {
        self.reader.csrc_count()
    }

    /// True when a header extension is present.
    pub fn has_extension(&self) -> bool {
        self.reader.extension().is_some()
    }

    /// Padding bytes at the end (0 when the P bit is clear).
    pub fn padding(&self) -> u8 {
        self.reader.padding().unwrap_or(0)
    }

    /// The payload, without header, extension and padding.
    pub fn payload(&self) -> &'a [u8] {
        self.reader.payload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_bad_lengths() {
        // v2, marker, PT 8, seq 0x1234, ts 160, ssrc 0xdeadbeef, 3 payload bytes.
        let p = [
            0x80, 0x88, 0x12, 0x34, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
        ];
        let r = RtpPacket::new_checked(&p[..]).unwrap();
        assert!(r.marker());
        assert_eq!(r.payload_type(), 8);
        assert_eq!(r.sequence_number(), 0x1234);
        assert_eq!(r.timestamp(), 160);
        assert_eq!(r.ssrc(), 0xdeadbeef);
        assert_eq!(r.payload(), &[1, 2, 3]);
        assert_eq!(
            RtpPacket::new_checked(&p[..11]).err(),
            Some(Error::Truncated)
        );
        let mut v1 = p;
        v1[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&v1[..]).err(),
            Some(Error::Malformed)
        );
        // CSRC count 2 but no room for them.
        let mut cc = p;
        cc[0] = 0x82;
        assert_eq!(
            RtpPacket::new_checked(&cc[..]).err(),
            Some(Error::Truncated)
        );
        // Padding: last byte says 2 bytes of padding.
        let mut pad = p;
        pad[0] = 0xA0;
        pad[14] = 2;
        let r = RtpPacket::new_checked(&pad[..]).unwrap();
        assert_eq!(r.payload(), &[1]);
    }
}
