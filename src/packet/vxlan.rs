//! VXLAN header view (RFC 7348): 8 bytes over UDP port 4789, then an Ethernet frame.

use super::Error;

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const LEN: usize = 8;
}

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// Header length.
pub const HEADER_LEN: usize = field::LEN;

/// A view of a VXLAN header.
#[derive(Copy, Clone, Debug)]
pub struct VxlanHeader<'a> {
    buffer: &'a [u8],
}

impl<'a> VxlanHeader<'a> {
    /// Checks the length and that the I flag (valid VNI) is set.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Error> {
        if buffer.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if buffer[field::FLAGS] & 0x08 == 0 {
            return Err(Error::Malformed);
        }
        Ok(VxlanHeader { buffer })
    }

    /// The VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_and_flags() {
        let b = [0x08, 0, 0, 0, 0x00, 0x12, 0x34, 0, 0xAB];
        let v = VxlanHeader::new_checked(&b[..]).unwrap();
        assert_eq!(v.vni(), 0x1234);
        assert_eq!(v.payload(), &[0xAB]);
        let mut bad = b;
        bad[0] = 0;
        assert_eq!(
            VxlanHeader::new_checked(&bad[..]).err(),
            Some(Error::Malformed)
        );
        assert_eq!(
            VxlanHeader::new_checked(&b[..7]).err(),
            Some(Error::Truncated)
        );
    }
}
