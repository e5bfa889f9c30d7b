//! The signature vlantest's sample frames carry in their UDP payload, so a listener can tell its
//! own frames from other traffic and say what happened to each one's tag.
//!
//! Layout (network byte order), at the start of the UDP payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SMVT` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | flags (bit 0: sent untagged) |
//! | 6 | 4 | test id (random per `send` run) |
//! | 10 | 2 | sequence number (0-based) |
//! | 12 | 2 | frames in the test |
//! | 14 | 2 | VLAN id the frame was sent with (0 when untagged) |
//!
//! followed by a human-readable note. No I/O.

/// Field offsets.
mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const VERSION: usize = 4;
    pub(super) const FLAGS: usize = 5;
    pub(super) const TEST_ID: Range<usize> = 6..10;
    pub(super) const SEQ: Range<usize> = 10..12;
    pub(super) const COUNT: Range<usize> = 12..14;
    pub(super) const VLAN: Range<usize> = 14..16;
}

/// Signature length in bytes.
pub const SIGNATURE_LEN: usize = field::VLAN.end;
/// The magic bytes.
pub const MAGIC: &[u8; 4] = b"SMVT";
const VERSION: u8 = 1;
const FLAG_UNTAGGED: u8 = 1;

/// A decoded signature.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Random id of the `send` run.
    pub test_id: u32,
    /// Sequence number of the frame in the run.
    pub seq: u16,
    /// Frames in the run.
    pub count: u16,
    /// VLAN the sender tagged the frame with; `None` when sent untagged.
    pub sent_vlan: Option<u16>,
}

impl Signature {
    /// Reads a signature from the start of a UDP payload; `None` if it is not one of ours.
    pub fn parse(payload: &[u8]) -> Option<Signature> {
        let b = payload.get(..SIGNATURE_LEN)?;
        if &b[field::MAGIC] != MAGIC || b[field::VERSION] != VERSION {
            return None;
        }
        let u16_at = |r: std::ops::Range<usize>| u16::from_be_bytes([b[r.start], b[r.start + 1]]);
        let untagged = b[field::FLAGS] & FLAG_UNTAGGED != 0;
        let vlan = u16_at(field::VLAN);
        Some(Signature {
            test_id: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
            seq: u16_at(field::SEQ),
            count: u16_at(field::COUNT),
            sent_vlan: if untagged { None } else { Some(vlan & 0x0FFF) },
        })
    }

    /// Writes the signature into the first [`SIGNATURE_LEN`] bytes of `out`; returns false if
    /// `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> bool {
        let Some(b) = out.get_mut(..SIGNATURE_LEN) else {
            return false;
        };
        b[field::MAGIC].copy_from_slice(MAGIC);
        b[field::VERSION] = VERSION;
        b[field::FLAGS] = if self.sent_vlan.is_none() {
            FLAG_UNTAGGED
        } else {
            0
        };
        b[field::TEST_ID].copy_from_slice(&self.test_id.to_be_bytes());
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        b[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        b[field::VLAN].copy_from_slice(&self.sent_vlan.unwrap_or(0).to_be_bytes());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = Signature {
            test_id: 0xDEADBEEF,
            seq: 3,
            count: 5,
            sent_vlan: Some(85),
        };
        let mut buf = [0u8; 32];
        assert!(s.emit(&mut buf));
        assert_eq!(&buf[..4], b"SMVT");
        assert_eq!(Signature::parse(&buf), Some(s));
        let u = Signature {
            sent_vlan: None,
            ..s
        };
        assert!(u.emit(&mut buf));
        assert_eq!(Signature::parse(&buf), Some(u));
        assert_eq!(Signature::parse(&buf[..SIGNATURE_LEN - 1]), None);
        buf[0] = b'X';
        assert_eq!(Signature::parse(&buf), None);
        assert!(!s.emit(&mut [0u8; 4]));
    }
}
