use super::*;
use crate::binding::Direction;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn two_appliances() -> Controller {
    let list = vec!["a:42028".to_owned(), "b:42028".to_owned()];
    Controller::new(list.clone(), list, Vec::new())
}

fn media(monitor: u64) -> ServiceEvent {
    ServiceEvent::Media {
        monitor,
        stream: 1,
        direction: Direction::ToAgent,
        capture_ts: at(0),
        rtp: vec![0x80; 12],
    }
}

fn call(monitor: u64, id: &str) -> ServiceEvent {
    ServiceEvent::Call {
        monitor,
        call_id: id.into(),
        payloads: PayloadMap::default(),
        started: at(0),
        appliance: None,
    }
}

#[test]
fn a_lost_appliance_fails_over_to_the_next_and_the_monitor_starts_again_there() {
    let mut c = two_appliances();
    c.want(Some("5001".into()));
    assert_eq!(c.due(at(0)).as_deref(), Some("5001"));
    assert_eq!(c.servers_to_try(), ["a:42028", "b:42028"]);
    c.control_up("a:42028");
    c.granted("5001");
    c.attached(7, "5001");
    assert_eq!(c.due(at(10)), None, "it runs");
    assert!(
        matches!(c.on_service_event(at(20), &call(7, "c1")), Route::Notices(n) if n.len() == 1)
    );
    // The appliance dies: the call ends for the media loop, the next appliance comes first,
    // and the monitor is due again at once.
    let notices = c.control_lost(at(1000));
    assert_eq!(
        notices,
        vec![MediaNotice::CallEnded {
            call_id: "c1".into()
        }]
    );
    assert_eq!(c.servers_to_try(), ["b:42028", "a:42028"]);
    assert_eq!(c.due(at(1000)).as_deref(), Some("5001"));
    // b is unreachable too: round the list; the failed start waits a retry.
    c.control_unreachable("b:42028");
    assert_eq!(c.servers_to_try(), ["a:42028", "b:42028"]);
    c.start_failed(
        at(1000),
        &EndpointError::ControlUnreachable {
            server: "a:42028".into(),
            cause: "connection refused".into(),
        },
    );
    assert_eq!(c.due(at(1500)), None);
    assert_eq!(c.due(at(2000)).as_deref(), Some("5001"));
    // b answers on the second round: the monitor runs there.
    c.control_up("b:42028");
    c.granted("5001");
    c.attached(9, "5001");
    assert_eq!(c.control(), Some("b:42028"));
    assert_eq!(c.running().map(|r| r.monitor), Some(9));
}

#[test]
fn a_logout_ends_the_monitor_for_good_a_lost_endpoint_link_does_not() {
    let mut c = two_appliances();
    c.want(Some("5001".into()));
    c.control_up("a:42028");
    c.attached(1, "5001");
    // The endpoint's link was lost (the appliance's reason): started again.
    let n = c.monitor_stopped(at(0), 1, &StopReason::EndpointHeartbeatLost);
    assert!(n.is_empty());
    assert_eq!(c.due(at(0)).as_deref(), Some("5001"));
    c.attached(2, "5001");
    // Another monitor's end is not this one's.
    c.monitor_stopped(at(1), 99, &StopReason::AgentLoggedOut);
    assert_eq!(c.running().map(|r| r.monitor), Some(2));
    // The agent logged out: not chased.
    c.monitor_stopped(at(2), 2, &StopReason::AgentLoggedOut);
    assert_eq!((c.wanted(), c.due(at(5000))), (None, None));
    // Nor after the supervisor stopped it.
    c.want(Some("5002".into()));
    c.attached(3, "5002");
    c.monitor_stopped(at(3), 3, &StopReason::StoppedBySupervisor);
    assert_eq!(c.due(at(9000)), None);
    // A reason this build does not know is not final.
    c.want(Some("5002".into()));
    c.attached(4, "5002");
    c.monitor_stopped(at(4), 4, &StopReason::Other("appliance restarting".into()));
    assert_eq!(c.due(at(4)).as_deref(), Some("5002"));
}

#[test]
fn media_calls_and_the_services_own_end_reach_the_media_loop_as_notices() {
    let mut c = two_appliances();
    assert_eq!(
        c.on_service_event(at(0), &media(1)),
        Route::Discard,
        "nothing runs"
    );
    c.want(Some("5001".into()));
    c.attached(1, "5001");
    assert_eq!(
        c.on_service_event(at(0), &media(1)),
        Route::Media(Arc::from("5001"))
    );
    assert_eq!(c.on_service_event(at(0), &media(2)), Route::Discard);
    // A call once; again only when it changes.
    assert!(matches!(c.on_service_event(at(0), &call(1, "c1")), Route::Notices(n) if n.len() == 1));
    assert_eq!(
        c.on_service_event(at(0), &call(1, "c1")),
        Route::Notices(vec![])
    );
    // A consult, then the held call ends while set aside: both ends reach the media loop.
    c.on_service_event(at(0), &call(1, "consult"));
    let ended = |id: &str| ServiceEvent::CallEnded {
        monitor: 1,
        call_id: id.into(),
    };
    assert_eq!(
        c.on_service_event(at(0), &ended("c1")),
        Route::Notices(vec![MediaNotice::CallEnded {
            call_id: "c1".into()
        }])
    );
    assert_eq!(c.call(), Some("consult"));
    // The service revokes the monitor: the call ends, the monitor is due again.
    let stopped = ServiceEvent::Stopped {
        monitor: 1,
        reason: "appliance busy".into(),
    };
    assert_eq!(
        c.on_service_event(at(5), &stopped),
        Route::Notices(vec![MediaNotice::CallEnded {
            call_id: "consult".into()
        }])
    );
    assert_eq!(c.due(at(5)).as_deref(), Some("5001"));
    // Revoked by StopSMNonACDCall (said by the service before the control plane): not chased.
    c.attached(2, "5001");
    let policy = ServiceEvent::Stopped {
        monitor: 2,
        reason: StopReason::NonAcdCall.to_string(),
    };
    c.on_service_event(at(6), &policy);
    assert_eq!((c.wanted(), c.due(at(9000))), (None, None));
}

#[test]
fn a_new_agent_replaces_the_running_one_only_once_granted_and_stop_forgets_it() {
    let mut c = two_appliances();
    c.want(Some("5001".into()));
    c.attached(1, "5001");
    assert_eq!(c.plan_start("5001"), StartPlan::AlreadyRunning);
    assert_eq!(
        c.plan_start("5002"),
        StartPlan::Ask {
            replaces: Some(Arc::from("5001"))
        }
    );
    // Refused: 5001 keeps running and stays wanted.
    c.start_failed(
        at(0),
        &EndpointError::StartRefused {
            agent: "5002".into(),
            reason: "agent is not in your teams".into(),
        },
    );
    assert_eq!(
        (c.wanted(), c.running().map(|r| r.monitor)),
        (Some("5001"), Some(1))
    );
    // The supervisor stops: the agent to stop at the control plane, nothing wanted after.
    let (agent, _) = c.stop();
    assert_eq!(agent.as_deref(), Some("5001"));
    assert_eq!((c.wanted(), c.due(at(10_000))), (None, None));
}

#[test]
fn the_monitor_service_follows_the_configured_list_else_what_the_appliance_said() {
    let list = vec!["a:42028".to_owned(), "b:42028".to_owned()];
    let mut shuffled = list.clone();
    shuffled.reverse();
    let c = Controller::new(
        shuffled,
        list.clone(),
        vec!["a:9000".into(), "b:9000".into()],
    );
    assert_eq!(c.service_for("b:42028", Some("x:1")), "b:9000");
    let c = Controller::new(list.clone(), list, Vec::new());
    assert_eq!(
        c.service_for("a:42028", Some("10.0.0.9:42228")),
        "10.0.0.9:42228"
    );
    assert_eq!(c.service_for("a:42028", None), "a:42228");
}
