//! Arbitrary bytes as a captured frame: the first byte picks the link type; decapsulation runs
//! twice with advancing time (fragment state) and every result field is read. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::packet::{DecapConfig, Decapsulator, LinkType, Transport};
use silentmon::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    let link = match which % 8 {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::LinuxSll2,
        3 => LinkType::RawIp,
        4 => LinkType::Ipv4,
        5 => LinkType::Ipv6,
        6 => LinkType::Null,
        _ => LinkType::Loop,
    };
    let mut d = Decapsulator::new(DecapConfig::default());
    for t in [0i64, 40_000_000_000] {
        let r = d.decapsulate(Timestamp::from_nanos(t), link, frame);
        let _ = r.vlans.ids().count() + r.outer_vlans.len();
        if let Transport::Udp { payload, .. } | Transport::Tcp { payload, .. } = r.transport {
            let _ = payload.len();
        }
        if let Some(stop) = r.stop {
            assert!(stop.offset <= frame.len());
        }
    }
    let _ = d.stats().stops();
});
