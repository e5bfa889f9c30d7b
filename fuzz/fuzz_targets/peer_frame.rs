//! Arbitrary bytes as a stream of peer-link frames (TCP 42029): decode never panics; a decoded
//! peer object re-encodes to something that decodes to the same object; every decoded frame is
//! fed to both ends' sans-IO cores (a serving side greeted by the peer its certificate names,
//! an asking side after the peer's Welcome), whose actions are drained, with time moving.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use silentmon::monitor::wire::{check, Error};
use silentmon::peer::link::{Demand, Link};
use silentmon::peer::serving::{Serving, MAX_SUBSCRIPTIONS};
use silentmon::peer::wire::{decode, PeerFrame, PeerMsg, VERSION};
use silentmon::router::View;
use silentmon::time::{Span, Timestamp};

fuzz_target!(|data: &[u8]| {
    let agents: HashMap<String, usize> = [("6001".to_owned(), 0), ("6002".to_owned(), 1)].into();
    let t0 = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let view = View::default();
    let mut serving = Serving::new("c", "a", Arc::new(agents), Span::from_secs(3), t0);
    let hello = PeerFrame::Peer(PeerMsg::Hello {
        name: "a".into(),
        version: VERSION,
    });
    serving.handle_frame(t0, &hello, &view);
    let mut link = Link::new("a", "c", Span::from_secs(1), 3, t0);
    let demand: Demand = [("6001".to_owned(), ["s1".to_owned()].into())].into();
    link.set_demand(&demand);
    link.handle_timeout(t0);
    link.connected(t0);
    link.handle_frame(t0, &PeerFrame::Peer(PeerMsg::Welcome { name: "c".into() }));
    let mut rest = data;
    let mut now = t0;
    loop {
        now = now + Span::from_millis(1);
        match decode(rest) {
            Ok((frame, used)) => {
                assert_eq!(check(rest), Ok(used));
                if let PeerFrame::Peer(m) = &frame {
                    if let Ok(again) = m.to_bytes() {
                        let (back, n) = decode(&again).expect("a re-encoded peer object decodes");
                        assert_eq!(n, again.len());
                        assert_eq!(back, frame);
                    }
                }
                serving.handle_frame(now, &frame, &view);
                link.handle_frame(now, &frame);
                rest = &rest[used..];
            }
            Err(Error::Incomplete | Error::TooLarge { .. }) => break,
            Err(_) => {
                let used = check(rest).expect("a bad frame of known length");
                rest = &rest[used..];
            }
        }
        while serving.poll().is_some() {}
        while link.poll().is_some() {}
        assert!(serving.subscriptions() <= MAX_SUBSCRIPTIONS);
    }
    serving.handle_timeout(now + Span::from_secs(10));
    link.handle_timeout(now + Span::from_secs(10));
    while serving.poll().is_some() {}
    while link.poll().is_some() {}
});
