//! vlantest's sample frames: Ethernet (optionally one 802.1Q tag) / IPv4 / UDP carrying a
//! [`Signature`] and a note, like the guide's VLANSamplePackets.cap but self-describing. Also the
//! rewrites `send` applies to frames from a file (destination MAC, removing tags). Pure byte work.

use super::signature::{Signature, SIGNATURE_LEN};
use crate::packet::checksum::internet_checksum;

/// Source IPv4 address of sample frames (TEST-NET-1, never routed).
pub const SAMPLE_SRC_IP: [u8; 4] = [192, 0, 2, 85];
/// Destination IPv4 address of sample frames.
pub const SAMPLE_DST_IP: [u8; 4] = [192, 0, 2, 86];
/// UDP port of sample frames (both ends).
pub const SAMPLE_PORT: u16 = 42085;
/// Source MAC of generated sample frames (locally administered).
pub const SAMPLE_SRC_MAC: [u8; 6] = [0x02, 0x53, 0x4d, 0x56, 0x54, 0x01];

const NOTE: &[u8] =
    b" silentmon vlantest sample frame: if you can read this on the SPAN NIC, the frame arrived";
const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// Writes one sample frame into `out` (cleared first).
pub fn build_frame(out: &mut Vec<u8>, dst_mac: [u8; 6], src_mac: [u8; 6], signature: &Signature) {
    out.clear();
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    if let Some(vid) = signature.sent_vlan {
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
    }
    out.extend_from_slice(&0x0800u16.to_be_bytes());

    let udp_len = UDP_HEADER_LEN + SIGNATURE_LEN + NOTE.len();
    let total_len = IPV4_HEADER_LEN + udp_len;
    let ip_start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total_len as u16).to_be_bytes());
    out.extend_from_slice(&signature.seq.to_be_bytes()); // identification
    out.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]); // DF, TTL 64, UDP, checksum later
    out.extend_from_slice(&SAMPLE_SRC_IP);
    out.extend_from_slice(&SAMPLE_DST_IP);
    let csum = internet_checksum(&out[ip_start..ip_start + IPV4_HEADER_LEN]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());

    out.extend_from_slice(&SAMPLE_PORT.to_be_bytes());
    out.extend_from_slice(&SAMPLE_PORT.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    let sig_start = out.len();
    out.resize(sig_start + SIGNATURE_LEN, 0);
    signature.emit(&mut out[sig_start..]);
    out.extend_from_slice(NOTE);
}

/// Sets the destination MAC of an Ethernet frame in place; false if the frame is too short.
pub fn set_dst_mac(frame: &mut [u8], mac: [u8; 6]) -> bool {
    match frame.get_mut(..6) {
        Some(d) => {
            d.copy_from_slice(&mac);
            true
        }
        None => false,
    }
}

/// Removes every 802.1Q/802.1ad tag after the MAC addresses, in place.
pub fn strip_tags(frame: &mut Vec<u8>) {
    while frame.len() >= ETH_HEADER_LEN + VLAN_TAG_LEN {
        let tpid = u16::from_be_bytes([frame[12], frame[13]]);
        if !matches!(tpid, 0x8100 | 0x88A8 | 0x9100) {
            break;
        }
        frame.drain(12..12 + VLAN_TAG_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(vlan: Option<u16>) -> Signature {
        Signature {
            test_id: 1,
            seq: 2,
            count: 5,
            sent_vlan: vlan,
        }
    }

    #[test]
    fn tagged_frame_layout() {
        let mut f = Vec::new();
        build_frame(&mut f, [0xff; 6], SAMPLE_SRC_MAC, &sig(Some(85)));
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([f[14], f[15]]), 85);
        assert_eq!(&f[16..18], &[0x08, 0x00]);
        // IPv4 header checksum verifies to zero.
        assert_eq!(internet_checksum(&f[18..38]), 0);
        let udp_payload = &f[18 + 20 + 8..];
        assert_eq!(Signature::parse(udp_payload), Some(sig(Some(85))));
        assert_eq!(
            u16::from_be_bytes([f[18 + 24], f[18 + 25]]) as usize,
            8 + udp_payload.len()
        );
    }

    #[test]
    fn strip_and_rewrite() {
        let mut f = Vec::new();
        build_frame(&mut f, [0xff; 6], SAMPLE_SRC_MAC, &sig(Some(85)));
        let mut tagged = Vec::new();
        build_frame(&mut tagged, [0xff; 6], SAMPLE_SRC_MAC, &sig(Some(85)));
        strip_tags(&mut f);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f.len(), tagged.len() - 4);
        assert!(set_dst_mac(&mut f, [2, 0, 0, 0, 0, 9]));
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 9]);
        assert!(!set_dst_mac(&mut [0u8; 3], [0; 6]));
    }
}
