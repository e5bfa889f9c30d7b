use super::*;
use crate::cti::wire::{msg, nul, tag, CallRef};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn config(version: u32) -> SessionConfig {
    SessionConfig {
        version,
        peripheral: 5000,
        client_id: "silentmon".into(),
        password: String::new(),
        heartbeat: Span::from_secs(5),
        sides: 2,
    }
}

#[derive(Debug, PartialEq)]
enum Did {
    Connect(usize),
    Sent(u32),
    Close(String),
    Event(CtiEvent),
}

fn drain(s: &mut Session) -> Vec<Did> {
    std::iter::from_fn(|| s.poll())
        .map(|a| match a {
            CtiAction::Connect { side } => Did::Connect(side),
            CtiAction::Send(b) => Did::Sent(u32::from_be_bytes([b[4], b[5], b[6], b[7]])),
            CtiAction::Close(r) => Did::Close(r),
            CtiAction::Event(e) => Did::Event(e),
        })
        .collect()
}

fn open_conf(e: &Encoder) -> Vec<u8> {
    let mut fixed = vec![0u8; 32];
    fixed[3] = 1; // InvokeID 1
    fixed[7] = 0x10; // ALL_EVENTS granted
    fixed[21] = 1; // peripheral online
    e.message(msg::OPEN_CONF, &fixed, &[])
}

fn opened(version: u32) -> Session {
    let mut s = Session::new(config(version), at(0));
    s.handle_timeout(at(0));
    s.connected(at(10));
    s.handle_bytes(at(20), &open_conf(&Encoder::new(version)));
    drain(&mut s);
    s
}

#[test]
fn it_opens_as_an_all_events_client_and_reads_events() {
    let mut s = Session::new(config(24), at(0));
    s.handle_timeout(at(0));
    assert_eq!(drain(&mut s), [Did::Connect(0)]);
    s.connected(at(10));
    let sent: Vec<CtiAction> = std::iter::from_fn(|| s.poll()).collect();
    let CtiAction::Send(open) = &sent[0] else {
        panic!("{sent:?}")
    };
    // OPEN_REQ: type 3, version 24, IdleTimeout 20 s (4 x 5 s), peripheral 5000, ALL_EVENTS.
    assert_eq!(&open[4..8], &3u32.to_be_bytes());
    assert_eq!(&open[12..16], &24u32.to_be_bytes());
    assert_eq!(&open[16..20], &20u32.to_be_bytes());
    assert_eq!(&open[20..24], &5000u32.to_be_bytes());
    assert_eq!(&open[24..28], &0x10u32.to_be_bytes());
    let e = Encoder::new(24);
    // OPEN_CONF and an RTP_STARTED in one read, split across two reads for good measure.
    let mut bytes = open_conf(&e);
    let mut rtp_fixed = vec![0u8; 34];
    rtp_fixed[8..12].copy_from_slice(&30000u32.to_be_bytes());
    rtp_fixed[30..34].copy_from_slice(&77u32.to_be_bytes());
    let addr = nul("10.2.0.1");
    let id = nul("6001");
    bytes.extend(e.message(
        msg::RTP_STARTED,
        &rtp_fixed,
        &[(tag::CLIENT_ADDRESS, &addr), (tag::AGENT_ID, &id)],
    ));
    s.handle_bytes(at(20), &bytes[..13]);
    s.handle_bytes(at(21), &bytes[13..]);
    let did = drain(&mut s);
    assert_eq!(did[0], Did::Event(CtiEvent::Open { side: 0 }));
    let Did::Event(CtiEvent::RtpStarted(r)) = &did[1] else {
        panic!("{did:?}")
    };
    assert_eq!(
        (r.call.clone(), r.client_port, r.client_address.as_str()),
        (
            CallRef {
                id: 77,
                device: String::new()
            },
            30000,
            "10.2.0.1"
        )
    );
    assert_eq!(s.open_side(), Some(0));
    assert_eq!(s.counters().messages["rtp_started_event"], 1);
}

#[test]
fn three_unanswered_heartbeats_reset_and_the_other_side_is_tried() {
    let mut s = opened(24);
    for t in [5_020, 10_020, 15_020] {
        s.handle_timeout(at(t));
        assert_eq!(drain(&mut s), [Did::Sent(msg::HEARTBEAT_REQ)]);
    }
    // An answer resets the count; then three more go unanswered.
    let conf = Encoder::new(24).message(msg::HEARTBEAT_CONF, &3u32.to_be_bytes(), &[]);
    s.handle_bytes(at(15_030), &conf);
    for t in [20_020, 25_020, 30_020] {
        s.handle_timeout(at(t));
        assert_eq!(drain(&mut s), [Did::Sent(msg::HEARTBEAT_REQ)]);
    }
    s.handle_timeout(at(35_020));
    let did = drain(&mut s);
    assert!(
        matches!(&did[..], [Did::Close(r), Did::Event(CtiEvent::Down { .. })] if r.contains("3 heartbeats")),
        "{did:?}"
    );
    assert_eq!(s.poll_timeout(), Some(at(36_020)));
    s.handle_timeout(at(36_020));
    assert_eq!(drain(&mut s), [Did::Connect(1)], "side B now");
    assert_eq!(s.counters().resets, 1);
}

#[test]
fn a_refused_open_is_said_clearly_and_retried_with_backoff_on_alternate_sides() {
    let mut s = Session::new(config(19), at(0));
    let e = Encoder::new(19);
    let refused = e.message(msg::FAILURE_CONF, &[0, 0, 0, 1, 0, 0, 0, 36], &[]);
    let mut t = 0;
    let mut sides = Vec::new();
    for wait in [1000, 2000, 4000, 8000] {
        s.handle_timeout(at(t));
        match drain(&mut s)[..] {
            [Did::Connect(side)] => sides.push(side),
            ref other => panic!("{other:?}"),
        }
        s.connected(at(t));
        drain(&mut s);
        s.handle_bytes(at(t + 5), &refused);
        let did = drain(&mut s);
        assert!(
            matches!(&did[..], [Did::Close(r)] if r.contains("E_CTI_INVALID_PASSWORD (36)")),
            "{did:?}: not open, so no Down event"
        );
        t += 5 + wait;
        assert_eq!(s.poll_timeout(), Some(at(t)));
    }
    assert_eq!(sides, [0, 1, 0, 1]);
    // Side A refuses the connection outright; an OPEN_CONF that never comes times out.
    s.handle_timeout(at(t));
    drain(&mut s);
    s.disconnected(at(t), "connection refused");
    let next = s.poll_timeout().unwrap();
    s.handle_timeout(next);
    drain(&mut s);
    s.connected(next);
    drain(&mut s);
    s.handle_timeout(next + OPEN_TIMEOUT);
    assert!(matches!(&drain(&mut s)[..], [Did::Close(r)] if r.contains("OPEN_CONF")));
}

#[test]
fn garbage_is_counted_and_resets_unknown_messages_are_skipped() {
    let mut s = opened(24);
    let e = Encoder::new(24);
    // An unknown type and an unknown tag: skipped, counted, the session goes on.
    s.handle_bytes(at(100), &e.message(282, &[1, 2, 3], &[]));
    let mut fixed = vec![0u8; 16];
    fixed[15] = 9;
    s.handle_bytes(at(100), &e.message(msg::END_CALL, &fixed, &[(999, b"x")]));
    assert!(
        matches!(&drain(&mut s)[..], [Did::Event(CtiEvent::CallEnded { call })] if call.id == 9)
    );
    assert_eq!(
        (
            s.counters().messages["other"],
            s.counters().skipped_fields,
            s.counters().malformed
        ),
        (1, 1, 0)
    );
    // A length of 2^32-1: counted, reset.
    s.handle_bytes(at(200), &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 30]);
    let did = drain(&mut s);
    assert!(
        matches!(&did[..], [Did::Close(_), Did::Event(CtiEvent::Down { .. })]),
        "{did:?}"
    );
    // A zero-length AGENT_STATE_EVENT and a floating field cut short: each counted, each resets.
    for bad in [e.message(msg::AGENT_STATE, &[], &[]), {
        let mut m = e.message(msg::END_CALL, &fixed, &[(tag::CONNECTION_DEVID, b"6001\0")]);
        let n = m.len();
        m[n - 6] = 0x40; // the field's length now runs past the message
        m
    }] {
        let mut s = opened(24);
        s.handle_bytes(at(300), &bad);
        assert!(matches!(&drain(&mut s)[0], Did::Close(r) if r.contains("bad message")));
        assert_eq!(s.counters().malformed, 1);
    }
}

#[test]
fn states_are_named_and_a_close_waits_for_its_confirmation() {
    let mut s = opened(19);
    let e = Encoder::new(19);
    let mut fixed = vec![0u8; 62];
    fixed[31] = 3; // available
    let id = nul("6001");
    s.handle_bytes(
        at(10),
        &e.message(msg::AGENT_STATE, &fixed, &[(tag::AGENT_ID, &id)]),
    );
    assert_eq!(
        drain(&mut s),
        [Did::Event(CtiEvent::AgentState {
            agent: AgentRef {
                id: Some("6001".into()),
                ..AgentRef::default()
            },
            state: "Available"
        })]
    );
    assert_eq!(
        [0, 1, 2, 4, 10, 11, 99].map(state_name),
        ["Login", "Logout", "NotReady", "Talking", "Hold", "Talking", "Unknown"]
    );
    s.close(at(20));
    assert_eq!(drain(&mut s), [Did::Sent(msg::CLOSE_REQ)]);
    s.handle_bytes(
        at(30),
        &e.message(msg::CLOSE_CONF, &2u32.to_be_bytes(), &[]),
    );
    assert_eq!(drain(&mut s), [Did::Close("closed".into())]);
    assert_eq!(s.poll_timeout(), None);
}
