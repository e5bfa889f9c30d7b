//! The Internet checksum (RFC 1071), for building IPv4 headers (sample frames, generators).

/// One's-complement sum of 16-bit words (odd tail padded with zero), complemented. Over a header
/// that carries its own correct checksum the result is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]) as u32)
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_verification() {
        // The RFC 1071 example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2 (checksum 0x220d).
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        let mut h = [
            0x45, 0, 0, 20, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = internet_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&h), 0);
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
    }
}
