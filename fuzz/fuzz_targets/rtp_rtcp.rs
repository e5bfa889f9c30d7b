//! Arbitrary bytes as RTP and RTCP, and through the flow table (with and without an SDP hint)
//! as a sequence of datagrams. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::codec::PayloadMap;
use silentmon::flow::{FlowConfig, FlowTable, MediaHint};
use silentmon::packet::rtcp;
use silentmon::packet::rtp::RtpPacket;
use silentmon::packet::VlanStack;
use silentmon::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::new_checked(data) {
        let _ = (p.payload().len(), p.sequence_number(), p.padding(), p.has_extension());
    }
    for p in rtcp::compound(data).flatten() {
        let _ = (p.packet_type(), p.ssrc(), p.sender_info());
        let _ = p.report_blocks().count();
    }
    // The input as datagrams of varying length on one 5-tuple.
    let mut table = FlowTable::new(FlowConfig::default());
    let hint = MediaHint { call: 0, payloads: PayloadMap::new() };
    let src = "10.0.0.1:4000".parse().unwrap();
    let dst = "10.0.0.2:5000".parse().unwrap();
    let vlans = VlanStack::new();
    let mut rest = data;
    let mut t = 0i64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (dgram, after) = tail.split_at(n);
        t += 20_000_000;
        let h = (len & 1 == 1).then_some(&hint);
        let _ = table.handle_udp(Timestamp::from_nanos(t), &vlans, src, dst, dgram, h);
        rest = after;
    }
    for s in table.streams() {
        let _ = (s.stats.lost(), s.stats.lost_percent(), s.stats.payload_names());
    }
});
