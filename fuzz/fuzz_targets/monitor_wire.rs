//! Arbitrary bytes as a stream of monitor-service frames: check/decode never panic; a decoded
//! media frame re-encodes to the very same bytes; a decoded control object re-encodes to
//! something that decodes to the same object; a bad frame of known length is skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::monitor::wire::{check, decode, Error, Frame, HEADER_LEN, MAX_BODY};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match decode(rest) {
            Ok((frame, used)) => {
                assert_eq!(check(rest), Ok(used));
                let mut again = Vec::new();
                match &frame {
                    Frame::Media(m) => {
                        m.append(&mut again).expect("a decoded media frame re-encodes");
                        assert_eq!(again, &rest[..used]);
                        let mut exact = vec![0u8; m.buffer_len()];
                        assert_eq!(m.emit(&mut exact), Ok(used));
                        assert_eq!(exact, again);
                    }
                    Frame::Control(c) => match c.append(&mut again) {
                        Ok(()) => {
                            let (back, n) = decode(&again).expect("re-encoded control decodes");
                            assert_eq!(n, again.len());
                            assert_eq!(back, frame);
                        }
                        // Canonical payload formats ("name/rate/channels") may be a few
                        // bytes longer than what was sent: only a frame at the limit may
                        // not fit again.
                        Err(Error::TooLarge { .. }) => assert!(used - HEADER_LEN > MAX_BODY - 256),
                        Err(e) => panic!("re-encoding failed: {e}"),
                    },
                }
                rest = &rest[used..];
            }
            Err(Error::Incomplete | Error::TooLarge { .. }) => break,
            Err(_) => {
                let skip = check(rest).expect("a malformed frame has a known length");
                rest = &rest[skip..];
            }
        }
    }
});
