use super::*;
use crate::peer::wire::decode;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

/// Everything the link wants done, sent frames decoded to owned peer messages or controls.
#[derive(Debug, PartialEq)]
enum Did {
    Connect,
    Peer(PeerMsg),
    Control(Control),
    Close,
    Event(LinkEvent),
}

fn drain(l: &mut Link) -> Vec<Did> {
    std::iter::from_fn(|| l.poll())
        .map(|a| match a {
            LinkAction::Connect => Did::Connect,
            LinkAction::Send(b) => match decode(&b).unwrap().0 {
                PeerFrame::Peer(m) => Did::Peer(m),
                PeerFrame::Control(c) => Did::Control(c),
                PeerFrame::Media(_) => panic!("the asking side sends no media"),
            },
            LinkAction::Close(_) => Did::Close,
            LinkAction::Event(e) => Did::Event(e),
        })
        .collect()
}

fn demand(pairs: &[(&str, &[&str])]) -> Demand {
    pairs
        .iter()
        .map(|(a, s)| (a.to_string(), s.iter().map(|x| x.to_string()).collect()))
        .collect()
}

fn welcome(l: &mut Link, now: Timestamp) {
    l.handle_frame(now, &PeerFrame::Peer(PeerMsg::Welcome { name: "c".into() }));
}

/// A link from a to c, 1 s heartbeats, 3 misses, up at 0 with `d` demanded.
fn up(d: &Demand) -> Link {
    let mut l = Link::new("a", "c", Span::from_secs(1), 3, at(0));
    l.set_demand(d);
    l.handle_timeout(at(0));
    l.connected(at(0));
    welcome(&mut l, at(0));
    l
}

#[test]
fn it_greets_then_subscribes_once_per_agent_and_follows_the_demand() {
    let mut l = Link::new("a", "c", Span::from_secs(1), 3, at(0));
    l.set_demand(&demand(&[("6001", &["s1", "s2"])]));
    l.handle_timeout(at(0));
    assert_eq!(drain(&mut l), [Did::Connect]);
    l.connected(at(10));
    assert_eq!(
        drain(&mut l),
        [Did::Peer(PeerMsg::Hello {
            name: "a".into(),
            version: VERSION
        })]
    );
    assert_eq!(l.up_since(), None);
    welcome(&mut l, at(20));
    assert_eq!(
        drain(&mut l),
        [
            Did::Event(LinkEvent::Up),
            Did::Peer(PeerMsg::Subscribe {
                sub: 1,
                agent: "6001".into(),
                supervisors: vec!["s1".into(), "s2".into()]
            })
        ]
    );
    assert_eq!((l.up_since(), l.agent_of(1)), (Some(at(20)), Some("6001")));
    // A third supervisor: the same subscription, its supervisors re-sent; a second agent; the
    // first agent no longer wanted.
    l.set_demand(&demand(&[("6001", &["s1", "s2", "s3"]), ("6002", &["s1"])]));
    let did = drain(&mut l);
    assert_eq!(
        did,
        [
            Did::Peer(PeerMsg::Subscribe {
                sub: 1,
                agent: "6001".into(),
                supervisors: vec!["s1".into(), "s2".into(), "s3".into()]
            }),
            Did::Peer(PeerMsg::Subscribe {
                sub: 2,
                agent: "6002".into(),
                supervisors: vec!["s1".into()]
            }),
        ]
    );
    l.set_demand(&demand(&[("6002", &["s1"])]));
    assert_eq!(drain(&mut l), [Did::Peer(PeerMsg::Unsubscribe { sub: 1 })]);
    assert_eq!((l.agent_of(1), l.subscriptions()), (None, 1));
    l.set_demand(&demand(&[("6002", &["s1"])]));
    assert!(drain(&mut l).is_empty(), "nothing changed, nothing sent");
}

#[test]
fn heartbeats_measure_the_round_trip_and_silence_takes_the_link_down() {
    let mut l = up(&Demand::new());
    drain(&mut l);
    assert_eq!(l.poll_timeout(), Some(at(1000)));
    l.handle_timeout(at(1000));
    assert_eq!(drain(&mut l), [Did::Control(Control::Heartbeat { seq: 1 })]);
    l.handle_frame(
        at(1004),
        &PeerFrame::Control(Control::HeartbeatReply { seq: 1 }),
    );
    assert_eq!(l.rtt(), Some(Span::from_millis(4)));
    // The peer's own heartbeats are answered.
    l.handle_frame(at(1500), &PeerFrame::Control(Control::Heartbeat { seq: 9 }));
    assert_eq!(
        drain(&mut l),
        [Did::Control(Control::HeartbeatReply { seq: 9 })]
    );
    // Then nothing is heard: beats at 2 s, 3 s, 4 s; down at 4.5 s (3 x 1 s after 1.5 s).
    for t in [2000, 3000, 4000] {
        l.handle_timeout(at(t));
    }
    assert_eq!(drain(&mut l).len(), 3);
    assert_eq!(l.poll_timeout(), Some(at(4500)));
    l.handle_timeout(at(4500));
    let did = drain(&mut l);
    assert!(
        matches!(&did[..], [Did::Close, Did::Event(LinkEvent::Down { reason })] if reason.contains("3 heartbeats")),
        "{did:?}"
    );
    assert_eq!(l.up_since(), None);
}

#[test]
fn it_redials_with_backoff_and_resubscribes_with_fresh_ids() {
    let mut l = up(&demand(&[("6001", &["s1"])]));
    drain(&mut l);
    l.disconnected(at(100), "reset by peer");
    assert_eq!(
        drain(&mut l),
        [Did::Event(LinkEvent::Down {
            reason: "reset by peer".into()
        })]
    );
    assert_eq!(l.agent_of(1), None, "old ids mean nothing");
    // Dial at 1.1 s; refused; 2 s later; refused; 4 s; then capped at 5 s.
    let mut t = 100;
    for wait in [1000, 2000, 4000, 5000, 5000] {
        t += wait;
        assert_eq!(l.poll_timeout(), Some(at(t)));
        l.handle_timeout(at(t));
        assert_eq!(drain(&mut l), [Did::Connect]);
        l.disconnected(at(t), "connection refused");
        assert!(drain(&mut l).is_empty(), "a failed dial is not news");
    }
    l.handle_timeout(at(t + 5000));
    l.connected(at(t + 5000));
    welcome(&mut l, at(t + 5001));
    let did = drain(&mut l);
    assert!(
        did.contains(&Did::Peer(PeerMsg::Subscribe {
            sub: 2,
            agent: "6001".into(),
            supervisors: vec!["s1".into()]
        })),
        "{did:?}"
    );
    // Up again: the next failure waits the first retry again.
    l.disconnected(at(t + 6000), "reset");
    drain(&mut l);
    assert_eq!(l.poll_timeout(), Some(at(t + 7000)));
}

#[test]
fn calls_map_to_agents_and_an_impostor_is_dropped() {
    let mut l = up(&demand(&[("6001", &["s1"])]));
    drain(&mut l);
    let call = |monitor| Control::Call {
        monitor,
        call_id: "x1".into(),
        payloads: PayloadMap::default(),
        started: at(5),
        appliance: None,
    };
    l.handle_frame(at(10), &PeerFrame::Control(call(1)));
    l.handle_frame(at(10), &PeerFrame::Control(call(77)));
    l.handle_frame(
        at(11),
        &PeerFrame::Control(Control::CallEnded {
            monitor: 1,
            call_id: "x1".into(),
        }),
    );
    assert_eq!(
        drain(&mut l),
        [
            Did::Event(LinkEvent::Call {
                agent: "6001".into(),
                call_id: "x1".into(),
                payloads: PayloadMap::default(),
                started: at(5)
            }),
            Did::Event(LinkEvent::CallEnded {
                agent: "6001".into(),
                call_id: "x1".into()
            }),
        ]
    );
    // A peer answering under another name is not the one we dialed.
    let mut l = Link::new("a", "c", Span::from_secs(1), 3, at(0));
    l.handle_timeout(at(0));
    l.connected(at(0));
    drain(&mut l);
    l.handle_frame(
        at(1),
        &PeerFrame::Peer(PeerMsg::Welcome { name: "b".into() }),
    );
    assert_eq!(drain(&mut l), [Did::Close]);
    assert_eq!(l.up_since(), None);
}
