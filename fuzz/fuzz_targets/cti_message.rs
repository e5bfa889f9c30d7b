//! Arbitrary bytes as the CTI Server's side of a session (the first byte picks protocol 19 or
//! 24): decode never panics and a decoded message used exactly the length `check` gave; the
//! same bytes, cut in pieces the next bytes choose, are fed to an open client session whose
//! actions are drained with time moving: a reset is fine, a panic or a stuck session is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::cti::mock::open_conf;
use silentmon::cti::session::{CtiAction, Session, SessionConfig};
use silentmon::cti::wire::{check, decode, Encoder, Error};
use silentmon::time::{Span, Timestamp};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let version = if first & 1 == 0 { 19 } else { 24 };
    decode_all(data, version);
    feed_session(data, version);
});

fn decode_all(mut rest: &[u8], version: u32) {
    loop {
        match decode(rest, version) {
            Ok((_, used, _)) => {
                assert_eq!(check(rest), Ok(used));
                rest = &rest[used..];
            }
            Err(Error::Incomplete | Error::TooLarge(_)) => return,
            Err(Error::Malformed { .. }) => {
                let used = check(rest).expect("a malformed message of known length");
                rest = &rest[used..];
            }
        }
    }
}

fn feed_session(data: &[u8], version: u32) {
    let config = SessionConfig {
        version,
        peripheral: 5000,
        client_id: "silentmon".into(),
        password: String::new(),
        heartbeat: Span::from_secs(5),
        sides: 2,
    };
    let mut now = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let mut s = Session::new(config, now);
    reopen(&mut s, &mut now, version);
    let mut rest = data;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) % 64 + 1).min(rest.len());
        now = now + Span::from_millis(700);
        s.handle_bytes(now, &rest[..n]);
        rest = &rest[n..];
        drain(&mut s);
        reopen(&mut s, &mut now, version);
        s.handle_timeout(now);
        drain(&mut s);
        reopen(&mut s, &mut now, version);
    }
}

/// After a reset (or at the start) does what the shell does: waits for the retry, connects,
/// and opens with the server's OPEN_CONF. Every reset must come back this way.
fn reopen(s: &mut Session, now: &mut Timestamp, version: u32) {
    if s.open_side().is_some() {
        return;
    }
    let t = s.poll_timeout().expect("a session that is down has a retry time");
    *now = (*now).max(t);
    s.handle_timeout(*now);
    assert!(
        matches!(s.poll(), Some(CtiAction::Connect { .. })),
        "a retry connects"
    );
    drain(s);
    s.connected(*now);
    drain(s);
    s.handle_bytes(*now, &open_conf(&Encoder::new(version), version, 1));
    drain(s);
    assert!(s.open_side().is_some(), "the session opened");
}

fn drain(s: &mut Session) {
    while s.poll().is_some() {}
}
