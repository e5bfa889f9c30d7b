//! Arbitrary bytes as a stream of control-plane frames: check/parse never panic, a parsed frame
//! re-encodes to something that parses to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::control::frame::{check, parse};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match parse(rest, 4096) {
            Ok((frame, used)) => {
                assert_eq!(check(rest, 4096), Ok(used));
                let mut again = Vec::new();
                frame.encode(&mut again);
                let (back, n) = parse(&again, usize::MAX).expect("re-encoded frame parses");
                assert_eq!(n, again.len());
                assert_eq!(back, frame);
                rest = &rest[used..];
            }
            Err(_) => break,
        }
    }
});
