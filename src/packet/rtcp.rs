//! RTCP views (RFC 3550 section 6): a compound packet is walked packet by packet; sender reports
//! and receiver reports expose their report blocks. Other types (SDES, BYE, APP, XR) are
//! recognised by type and skipped. Every length is checked before use.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const FIRST: usize = 0;
    pub(super) const PT: usize = 1;
    pub(super) const SSRC: Range<usize> = 4..8;
    pub(super) const HEADER_LEN: usize = SSRC.end;
    pub(super) const SENDER_INFO_LEN: usize = 20;
    pub(super) const REPORT_BLOCK_LEN: usize = 24;
}

/// RTCP packet types.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RtcpType {
    /// Sender report (200).
    SenderReport,
    /// Receiver report (201).
    ReceiverReport,
    /// Source description (202).
    SourceDescription,
    /// Goodbye (203).
    Bye,
    /// Application-defined (204).
    App,
    /// Extended report (207).
    ExtendedReport,
    /// Another value.
    Unknown(u8),
}

impl From<u8> for RtcpType {
    fn from(v: u8) -> Self {
        match v {
            200 => RtcpType::SenderReport,
            201 => RtcpType::ReceiverReport,
            202 => RtcpType::SourceDescription,
            203 => RtcpType::Bye,
            204 => RtcpType::App,
            207 => RtcpType::ExtendedReport,
            other => RtcpType::Unknown(other),
        }
    }
}

/// True when `buf` starts like an RTCP packet (version 2, packet type 200-207).
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    buf.len() >= field::HEADER_LEN && buf[0] >> 6 == 2 && (200..=207).contains(&buf[1])
}

/// One packet of a compound RTCP datagram.
#[derive(Copy, Clone, Debug)]
pub struct RtcpPacket<'a> {
    buffer: &'a [u8],
}

/// A report block (in an SR or RR).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Last SR timestamp.
    pub lsr: u32,
    /// Delay since last SR, 1/65536 s.
    pub dlsr: u32,
}

/// Sender info of an SR.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (64-bit fixed point).
    pub ntp: u64,
    /// RTP timestamp matching `ntp`.
    pub rtp_ts: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> RtcpPacket<'a> {
    /// The first packet of `buffer`: checks version, and that the length field and (for SR/RR)
    /// the announced report blocks fit.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < 4 {
            return Err(Error::Truncated);
        }
        if buffer[field::FIRST] >> 6 != 2 {
            return Err(Error::Malformed);
        }
        let words = u16::from_be_bytes([buffer[2], buffer[3]]) as usize; // length field
        let len = (words + 1) * 4;
        if buffer.len() < len {
            return Err(Error::Truncated);
        }
        let p = RtcpPacket {
            buffer: &buffer[..len],
        };
        let fixed = match p.packet_type() {
            RtcpType::SenderReport => field::HEADER_LEN + field::SENDER_INFO_LEN,
            RtcpType::ReceiverReport => field::HEADER_LEN,
            _ => 4,
        };
        if matches!(
            p.packet_type(),
            RtcpType::SenderReport | RtcpType::ReceiverReport
        ) && len < fixed + p.count() as usize * field::REPORT_BLOCK_LEN
        {
            return Err(Error::Malformed);
        }
        Ok(p)
    }

    /// Packet type.
    pub fn packet_type(&self) -> RtcpType {
        self.buffer[field::PT].into()
    }

    /// Report count / source count / subtype (5 bits).
    pub fn count(&self) -> u8 {
        self.buffer[field::FIRST] & 0x1F
    }

    /// Length in bytes of this packet.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Always false: a checked packet has its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// SSRC of the sender (SR, RR, APP, and the first chunk of SDES/BYE), if the packet has one.
    pub fn ssrc(&self) -> Option<u32> {
        (self.buffer.len() >= field::HEADER_LEN).then(|| be32(self.buffer, field::SSRC.start))
    }

    /// Sender info, for an SR.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type() != RtcpType::SenderReport {
            return None;
        }
        let b = self.buffer;
        let h = field::HEADER_LEN;
        Some(SenderInfo {
            ntp: (be32(b, h) as u64) << 32 | be32(b, h + 4) as u64,
            rtp_ts: be32(b, h + 8),
            packets: be32(b, h + 12),
            octets: be32(b, h + 16),
        })
    }

    /// Report blocks of an SR or RR (none for other types).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        let b = self.buffer;
        let (start, n) = match self.packet_type() {
            RtcpType::SenderReport => (field::HEADER_LEN + field::SENDER_INFO_LEN, self.count()),
            RtcpType::ReceiverReport => (field::HEADER_LEN, self.count()),
            _ => (0, 0),
        };
        (0..n as usize).map(move |i| {
            let o = start + i * field::REPORT_BLOCK_LEN;
            let lost = be32(b, o + 4) & 0x00FF_FFFF;
            ReportBlock {
                ssrc: be32(b, o),
                fraction_lost: b[o + 4],
                cumulative_lost: ((lost << 8) as i32) >> 8,
                highest_seq: be32(b, o + 8),
                jitter: be32(b, o + 12),
                lsr: be32(b, o + 16),
                dlsr: be32(b, o + 20),
            }
        })
    }
}

/// Iterates the packets of a compound RTCP datagram; stops at the first malformed one and
/// reports it as the last item.
pub fn compound(buffer: &[u8]) -> impl Iterator<Item = Result<RtcpPacket<'_>, Error>> {
    let mut rest = buffer;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match RtcpPacket::new_checked(rest) {
            Ok(p) => {
                rest = &rest[p.len()..];
                Some(Ok(p))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SR with one report block, then an SDES with one empty chunk.
    fn sample() -> Vec<u8> {
        let mut v = vec![0x81, 200, 0, 12];
        v.extend_from_slice(&0x1111_1111u32.to_be_bytes()); // sender ssrc
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // ntp
        v.extend_from_slice(&160u32.to_be_bytes());
        v.extend_from_slice(&50u32.to_be_bytes());
        v.extend_from_slice(&8000u32.to_be_bytes());
        v.extend_from_slice(&0x2222_2222u32.to_be_bytes()); // block ssrc
        v.extend_from_slice(&[0x40, 0xFF, 0xFF, 0xFE]); // fraction 64, cumulative -2
        v.extend_from_slice(&70000u32.to_be_bytes());
        v.extend_from_slice(&12u32.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[0x81, 202, 0, 1]);
        v.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        v
    }

    #[test]
    fn compound_sr_and_sdes() {
        let v = sample();
        assert!(looks_like_rtcp(&v));
        let packets: Vec<_> = compound(&v).collect::<Result<_, _>>().unwrap();
        assert_eq!(packets.len(), 2);
        let sr = packets[0];
        assert_eq!(sr.packet_type(), RtcpType::SenderReport);
        assert_eq!(sr.sender_info().unwrap().packets, 50);
        let b: Vec<_> = sr.report_blocks().collect();
        assert_eq!(b[0].ssrc, 0x2222_2222);
        assert_eq!(b[0].fraction_lost, 64);
        assert_eq!(b[0].cumulative_lost, -2);
        assert_eq!(b[0].highest_seq, 70000);
        assert_eq!(b[0].jitter, 12);
        assert_eq!(packets[1].packet_type(), RtcpType::SourceDescription);
    }

    #[test]
    fn bad_lengths() {
        let v = sample();
        assert_eq!(
            RtcpPacket::new_checked(&v[..40]).err(),
            Some(Error::Truncated)
        );
        let mut wrong_count = v.clone();
        wrong_count[0] = 0x83; // claims 3 report blocks
        assert_eq!(
            RtcpPacket::new_checked(&wrong_count).err(),
            Some(Error::Malformed)
        );
        let results: Vec<_> = compound(&v[..v.len() - 2]).collect();
        assert!(results.last().unwrap().is_err());
        assert!(!looks_like_rtcp(&[0x80, 8, 0, 0, 0, 0, 0, 0]));
    }
}
