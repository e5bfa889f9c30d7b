//! Arbitrary TCP segments (direction, FIN, sequence offset, time step, bytes) through the SIP
//! over TCP reassembly and the call table. Must never panic, and never hold more than its
//! limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::sip::tcp::{TcpSip, MAX_DIRECTIONS};
use silentmon::sip::{CallConfig, CallTable};
use silentmon::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let mut r = TcpSip::default();
    let mut calls = CallTable::new(CallConfig::default());
    let a = "10.0.0.1:40000".parse().unwrap();
    let b = "10.0.0.2:5060".parse().unwrap();
    let base: u32 = 0xFFFF_F000;
    let mut now = 0i64;
    let mut rest = data;
    // Each segment: [flags, offset hi, offset lo, length] then `length` bytes.
    while rest.len() >= 4 {
        let (h, tail) = rest.split_at(4);
        let len = usize::from(h[3]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let (src, dst) = if h[0] & 1 == 0 { (a, b) } else { (b, a) };
        let closing = h[0] & 2 != 0;
        now += i64::from(h[0] >> 2) * 50_000_000;
        let t = Timestamp::from_nanos(now);
        let seq = base.wrapping_add(u32::from(u16::from_be_bytes([h[1], h[2]])));
        r.segment(t, src, dst, seq, closing, payload, &mut |m| {
            assert!(!m.is_empty());
            let _ = calls.handle_message(t, src, dst, m);
        });
        r.handle_timeout(t, &mut |s, d, m| {
            let _ = calls.handle_message(t, s, d, m);
        });
        assert!(r.directions() <= MAX_DIRECTIONS);
    }
    while calls.poll_event().is_some() {}
});
