//! Arbitrary bytes as SIP (one or several messages), as SDP, and through the call table.
//! Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::sip::{CallConfig, CallTable, SessionDescription, SipMessage};
use silentmon::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    if let Ok((m, used)) = SipMessage::parse(data) {
        assert!(used <= data.len());
        let _ = (m.call_id(), m.from(), m.to(), m.cseq(), m.asserted_identity(), m.has_sdp());
        let _ = m.headers().count();
    }
    if let Ok(s) = SessionDescription::parse(data) {
        let _ = s.audio().map(|a| a.is_hold());
    }
    let mut calls = CallTable::new(CallConfig::default());
    let src = "10.0.0.1:5060".parse().unwrap();
    let dst = "10.0.0.2:5060".parse().unwrap();
    let _ = calls.handle_message(Timestamp::from_nanos(0), src, dst, data);
    let _ = calls.handle_message(Timestamp::from_nanos(1), dst, src, data);
    while calls.poll_event().is_some() {}
    for c in calls.calls() {
        let _ = (c.matches_number("5001"), c.on_hold());
    }
    calls.handle_timeout(Timestamp::from_nanos(i64::MAX / 2));
});
