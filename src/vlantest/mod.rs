//! NIC qualification for 802.1Q-tagged SPAN traffic (the CTI OS guide's appendix A, in one
//! command). The pure part lives here: the signature sample frames carry ([`signature`]), the
//! sample frames themselves ([`sample`]) and the verdict over observed frames ([`verdict`]).
//! The report a run prints ([`report`]) is built from frames by a pure judge; sending and
//! listening are thin shells over `capture` ([`shell`]); `cli::vlantest` only parses arguments.

pub mod report;
pub mod sample;
pub mod shell;
pub mod signature;
pub mod verdict;

pub use signature::Signature;
pub use verdict::{Cause, Expectation, FrameClass, Observation, Tally, Verdict};

use crate::packet::{Decapsulator, LinkType, Transport};
use crate::time::Timestamp;

/// Builds the [`Observation`] of one captured frame: the tags as delivered (of the innermost
/// Ethernet header when a tunnel was crossed), what they carry, and our signature if present.
pub fn observe(
    decap: &mut Decapsulator,
    now: Timestamp,
    link: LinkType,
    frame: &[u8],
) -> Observation {
    let (dst_mac, src_mac) = match crate::packet::ethernet::EthernetFrame::new_checked(frame) {
        Ok(eth) if link == LinkType::Ethernet => (eth.dst_addr(), eth.src_addr()),
        _ => ([0; 6], [0; 6]),
    };
    let d = decap.decapsulate(now, link, frame);
    let signature = match d.transport {
        Transport::Udp { payload, .. } => Signature::parse(payload),
        _ => None,
    };
    Observation {
        ts: now,
        src_mac,
        dst_mac,
        vlans: d.vlans,
        ethertype: d.ethertype,
        ip_protocol: d.ip.map(|ip| ip.protocol),
        signature,
    }
}
