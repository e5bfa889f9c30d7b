use super::*;
use crate::peer::wire::decode;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

#[derive(Debug, PartialEq)]
enum Did {
    Peer(PeerMsg),
    Control(Control),
    Route(u32, usize),
    Unroute(u32),
    Audit(AuditEvent),
    Close,
}

fn drain(s: &mut Serving) -> Vec<Did> {
    std::iter::from_fn(|| s.poll())
        .map(|a| match a {
            ServingAction::Send(b) => match decode(&b).unwrap().0 {
                PeerFrame::Peer(m) => Did::Peer(m),
                PeerFrame::Control(c) => Did::Control(c),
                PeerFrame::Media(_) => panic!("no media from the core"),
            },
            ServingAction::Route { sub, agent } => Did::Route(sub, agent),
            ServingAction::Unroute { sub } => Did::Unroute(sub),
            ServingAction::Audit(e) => Did::Audit(e),
            ServingAction::Close(_) => Did::Close,
        })
        .collect()
}

fn call(agent: &str, id: &str, state: &str) -> CallView {
    CallView {
        // Not on the wire: what the asking side decodes has none.
        agent: None,
        agent_id: Some(agent.into()),
        uid: format!("call.{id}"),
        call_id: id.into(),
        from: "4930".into(),
        to: agent.into(),
        state: state.into(),
        hold: false,
        started: 1.0,
        media: vec![],
        appliance: None,
    }
}

fn view(calls: Vec<CallView>) -> View {
    View {
        calls,
        ..View::default()
    }
}

fn serving() -> Serving {
    let agents: HashMap<String, usize> = [("6001".to_owned(), 0), ("6002".to_owned(), 1)].into();
    Serving::new("c", "a", Arc::new(agents), Span::from_secs(3), at(0))
}

fn hello(name: &str) -> PeerFrame<'static> {
    PeerFrame::Peer(PeerMsg::Hello {
        name: name.into(),
        version: VERSION,
    })
}

fn subscribe(sub: u32, agent: &str, sups: &[&str]) -> PeerFrame<'static> {
    PeerFrame::Peer(PeerMsg::Subscribe {
        sub,
        agent: agent.into(),
        supervisors: sups.iter().map(|s| s.to_string()).collect(),
    })
}

#[test]
fn a_hello_gets_the_whole_picture_then_only_changes() {
    let mut s = serving();
    let v1 = view(vec![call("6001", "x1", "Answered"), {
        let mut c = call("6001", "x0", "Ended");
        c.agent_id = None; // a call of nobody is not announced
        c
    }]);
    s.set_view(&v1);
    assert!(drain(&mut s).is_empty(), "nothing before Hello");
    s.handle_frame(at(1), &hello("a"), &v1);
    assert_eq!(
        drain(&mut s),
        [
            Did::Peer(PeerMsg::Welcome { name: "c".into() }),
            Did::Peer(PeerMsg::Seen {
                full: true,
                more: false,
                agents: vec![AgentCalls {
                    agent: "6001".into(),
                    calls: vec![call("6001", "x1", "Answered")]
                }]
            })
        ]
    );
    s.set_view(&v1);
    assert!(drain(&mut s).is_empty(), "no change, nothing sent");
    // 6001's call ends and 6002 gets one: both agents, 6001 with no calls.
    let v2 = view(vec![call("6002", "y1", "Answered")]);
    s.set_view(&v2);
    assert_eq!(
        drain(&mut s),
        [Did::Peer(PeerMsg::Seen {
            full: false,
            more: false,
            agents: vec![
                AgentCalls {
                    agent: "6002".into(),
                    calls: vec![call("6002", "y1", "Answered")]
                },
                AgentCalls {
                    agent: "6001".into(),
                    calls: vec![]
                },
            ]
        })]
    );
    // A lost control frame: the next picture is whole again, even unchanged.
    s.lost_control();
    s.set_view(&v2);
    assert!(matches!(
        &drain(&mut s)[..],
        [Did::Peer(PeerMsg::Seen { full: true, .. })]
    ));
}

#[test]
fn a_large_picture_is_split_into_frames() {
    let agents: HashMap<String, usize> = (0..200).map(|i| (format!("{}", 7000 + i), i)).collect();
    let mut s = Serving::new("c", "a", Arc::new(agents), Span::from_secs(3), at(0));
    let v = view(
        (0..200)
            .map(|i| call(&format!("{}", 7000 + i), "z", "Answered"))
            .collect(),
    );
    s.handle_frame(at(0), &hello("a"), &v);
    let seen: Vec<(bool, bool, usize)> = drain(&mut s)
        .into_iter()
        .filter_map(|d| match d {
            Did::Peer(PeerMsg::Seen { full, more, agents }) => Some((full, more, agents.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        [
            (true, true, 64),
            (false, true, 64),
            (false, true, 64),
            (false, false, 8)
        ]
    );
}

#[test]
fn subscriptions_are_routed_once_per_agent_and_audited_with_their_supervisors() {
    let mut s = serving();
    let v = View::default();
    s.handle_frame(at(0), &hello("a"), &v);
    drain(&mut s);
    s.handle_frame(at(1), &subscribe(5, "6001", &["s1"]), &v);
    assert_eq!(
        drain(&mut s),
        [
            Did::Route(5, 0),
            Did::Audit(AuditEvent::PeerSubscribed {
                peer: "a".into(),
                agent: "6001".into(),
                supervisors: vec!["s1".into()]
            })
        ]
    );
    // A second supervisor: audited, not routed again.
    s.handle_frame(at(2), &subscribe(5, "6001", &["s1", "s2"]), &v);
    assert_eq!(
        drain(&mut s),
        [Did::Audit(AuditEvent::PeerSubscribed {
            peer: "a".into(),
            agent: "6001".into(),
            supervisors: vec!["s2".into()]
        })]
    );
    // Refused: the same agent under another id, an unknown agent, an id reused for another.
    for (sub, agent) in [(6, "6001"), (7, "9999"), (5, "6002")] {
        s.handle_frame(at(3), &subscribe(sub, agent, &["s1"]), &v);
        assert!(
            matches!(&drain(&mut s)[..], [Did::Peer(PeerMsg::Refused { sub: Some(x), .. })] if *x == sub),
            "{sub} {agent}"
        );
    }
    assert_eq!(s.subscriptions(), 1);
    s.handle_frame(at(4), &PeerFrame::Peer(PeerMsg::Unsubscribe { sub: 5 }), &v);
    assert_eq!(drain(&mut s), [Did::Unroute(5)]);
    s.handle_frame(at(5), &subscribe(8, "6002", &["s3"]), &v);
    drain(&mut s);
    // The link closes: everything is unrouted.
    s.closed();
    assert_eq!(drain(&mut s), [Did::Unroute(8)]);
}

#[test]
fn a_wrong_hello_a_request_before_hello_and_silence_close_the_link() {
    let v = View::default();
    let mut s = serving();
    s.handle_frame(at(0), &hello("b"), &v);
    assert_eq!(drain(&mut s), [Did::Close], "the certificate says a");
    let mut s = serving();
    s.handle_frame(at(0), &subscribe(1, "6001", &["s1"]), &v);
    assert_eq!(drain(&mut s), [Did::Close]);
    let mut s = serving();
    s.handle_frame(at(0), &hello("a"), &v);
    s.handle_frame(at(100), &subscribe(1, "6001", &["s1"]), &v);
    s.handle_frame(
        at(200),
        &PeerFrame::Control(Control::Heartbeat { seq: 4 }),
        &v,
    );
    let did = drain(&mut s);
    assert_eq!(
        did.last(),
        Some(&Did::Control(Control::HeartbeatReply { seq: 4 }))
    );
    assert_eq!(s.poll_timeout(), at(3200));
    s.handle_timeout(at(3199));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(at(3200));
    assert_eq!(drain(&mut s), [Did::Close, Did::Unroute(1)]);
}
