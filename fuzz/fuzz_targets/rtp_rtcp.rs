//! Arbitrary bytes as RTP and RTCP, and through the flow table (with and without an SDP hint)
//! as a sequence of datagrams, on a few 5-tuples, with the table pruned now and then (slots
//! freed and reused). Must never panic; every stream an id names is found by its key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::codec::PayloadMap;
use silentmon::flow::{FlowConfig, FlowTable, MediaHint};
use silentmon::packet::rtcp;
use silentmon::packet::rtp::RtpPacket;
use silentmon::packet::VlanStack;
use silentmon::time::{Span, Timestamp};

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
    let dst = "10.0.0.2:5000".parse().unwrap();
    let vlans = VlanStack::new();
    let mut rest = data;
    let mut t = 0i64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (dgram, after) = tail.split_at(n);
        // Bits 5-6 of the length byte pick the source; bit 7 skips a minute, bit 1 prunes.
        t += if len & 0x80 != 0 { 60_000_000_000 } else { 20_000_000 };
        let now = Timestamp::from_nanos(t);
        let src = std::net::SocketAddr::from(([10, 0, 0, 1], 4000 + u16::from(len >> 5 & 3)));
        if len & 2 != 0 {
            table.prune(Span::from_secs(90), Span::from_secs(30));
        }
        let h = (len & 1 == 1).then_some(&hint);
        if let silentmon::flow::UdpVerdict::Rtp(id) =
            table.handle_udp(now, &vlans, src, dst, dgram, h)
        {
            let s = table.stream(id).expect("a verdict's stream exists");
            assert!(table.find(&s.key).is_some_and(|f| f.id == id));
        }
        rest = after;
    }
    for s in table.streams() {
        let _ = (s.stats.lost(), s.stats.lost_percent(), s.stats.payload_names());
    }
});
