use super::*;
use crate::binding::Agent;
use crate::control::monitoring::HeardCall;
use crate::router::{BindingView, CallView};
use crate::security::password;

pub(crate) fn agent(id: &str, team: &str, warn: bool) -> AgentSettings {
    AgentSettings {
        agent: Agent {
            id: id.into(),
            extension: id.into(),
            mobile_number: None,
            phone_ips: vec![],
        },
        team: Some(team.into()),
        password_hash: None,
        warn_if_silent_monitored: warn,
    }
}

fn directory() -> Directory {
    Directory {
        agents: vec![agent("5001", "blue", true), agent("5002", "red", false)],
        supervisors: vec![
            Supervisor {
                id: "s1".into(),
                teams: vec!["blue".into()],
                password_hash: None,
                certificate: "s1".into(),
            },
            Supervisor {
                id: "s2".into(),
                teams: vec!["red".into()],
                password_hash: Some(password::hash("s2-pw").unwrap()),
                certificate: "s2".into(),
            },
        ],
        monitor_password_hash: Some(password::hash("mon").unwrap()),
        passwordless: true,
        lockout: LockoutConfig::default(),
        client_timeout: Span::from_secs(15),
        server_heartbeat: Span::from_secs(60),
        monitor_service: Some("appliance:42228".into()),
        limits: SessionLimits {
            login_timeout: Span::from_secs(300),
            ..SessionLimits::default()
        },
    }
}

pub(crate) fn plane() -> ControlPlane {
    ControlPlane::new(directory()).with_key_source(Box::new(|| "k".into()))
}

pub(crate) fn at(s: i64) -> Timestamp {
    Timestamp::from_nanos(s * 1_000_000_000)
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

const HERE: &str = "10.0.0.5";

pub(crate) fn drain(p: &mut ControlPlane) -> Vec<(SessionId, String, Option<String>)> {
    std::iter::from_fn(|| p.poll_transmit())
        .map(|(s, f)| (s, f.msg.clone(), f.str("reason").map(str::to_owned)))
        .collect()
}

/// Runs every pending password check as the shell's pool would.
fn verify_all(p: &mut ControlPlane, now: Timestamp) -> usize {
    let jobs: Vec<Verification> = std::iter::from_fn(|| p.poll_verification()).collect();
    for v in &jobs {
        p.handle_verified(now, v.ticket, password::verify(&v.password, &v.hash));
    }
    jobs.len()
}

fn login_frame(mode: &str, id: &str, pw: &str) -> Frame {
    Frame::new("Login")
        .with("mode", mode)
        .with("id", id)
        .with("password", pw)
}

/// A connection from `ip` that logs in (its password checked as the shell would).
fn login_from(
    p: &mut ControlPlane,
    now: Timestamp,
    ip: &str,
    mode: &str,
    id: &str,
    pw: &str,
) -> SessionId {
    let s = p.connect(now, peer(ip));
    p.handle_frame(now, s, &login_frame(mode, id, pw));
    verify_all(p, now);
    s
}

pub(crate) fn login(
    p: &mut ControlPlane,
    now: Timestamp,
    mode: &str,
    id: &str,
    pw: &str,
) -> SessionId {
    login_from(p, now, HERE, mode, id, pw)
}

fn audits(p: &mut ControlPlane) -> Vec<AuditEvent> {
    std::iter::from_fn(|| p.poll_action())
        .filter_map(|a| match a {
            Action::Audit { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn supervisor_monitors_own_team_only_and_agent_is_warned() {
    let mut p = plane();
    let a1 = login(&mut p, at(0), "agent", "5001", "");
    let a2 = login(&mut p, at(0), "agent", "5002", "");
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    drain(&mut p);
    p.handle_frame(
        at(1),
        s,
        &Frame::new("StartSilentMonitor").with("agent", "5001"),
    );
    let out = drain(&mut p);
    assert!(
        out.contains(&(s, "StartSilentMonitorReply".into(), None)),
        "{out:?}"
    );
    assert!(
        out.contains(&(a1, "SilentMonitorStartedEvent".into(), None)),
        "{out:?}"
    );
    p.handle_frame(
        at(2),
        s,
        &Frame::new("StartSilentMonitor").with("agent", "5002"),
    );
    assert_eq!(
        drain(&mut p),
        vec![(
            s,
            "StartSilentMonitorReply".into(),
            Some("agent is not in your teams".into())
        )]
    );
    // The refusal is in the audit trail.
    let refused = audits(&mut p);
    assert!(
        refused.contains(&AuditEvent::MonitorRefused {
            supervisor: "s1".into(),
            agent: "5002".into(),
            reason: "agent is not in your teams".into()
        }),
        "{refused:?}"
    );
    let _ = a2;
    // The supervisor sees its team's state changes only.
    p.handle_frame(
        at(3),
        a1,
        &Frame::new("SetAgentState").with("state", "Talking"),
    );
    p.handle_frame(
        at(3),
        a2,
        &Frame::new("SetAgentState").with("state", "Talking"),
    );
    let out = drain(&mut p);
    assert_eq!(
        out.iter()
            .filter(|(sid, m, _)| *sid == s && m == "AgentStateEvent")
            .count(),
        1
    );
    // Stop: the agent hears it too.
    p.handle_frame(
        at(4),
        s,
        &Frame::new("StopSilentMonitor").with("agent", "5001"),
    );
    let out = drain(&mut p);
    assert!(
        out.contains(&(a1, "SilentMonitorStoppedEvent".into(), None)),
        "{out:?}"
    );
    assert!(
        out.contains(&(s, "StopSilentMonitorReply".into(), None)),
        "{out:?}"
    );
    assert!(p.monitors().is_empty());
}

#[test]
fn logout_and_disconnect_end_monitors() {
    let mut p = plane();
    let a1 = login(&mut p, at(0), "agent", "5001", "");
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    p.handle_frame(
        at(1),
        s,
        &Frame::new("StartSilentMonitor").with("agent", "5001"),
    );
    assert_eq!(p.monitors().len(), 1);
    p.disconnect(at(2), a1);
    assert!(p.monitors().is_empty());
    let out = drain(&mut p);
    assert!(out.iter().any(|(sid, m, r)| *sid == s
        && m == "SilentMonitorStopped"
        && r.as_deref() == Some("agent logged out")));
}

#[test]
fn monitor_mode_lockout_its_audit_and_heartbeat_loss() {
    let mut p = plane();
    for _ in 0..3 {
        login(&mut p, at(0), "monitor", "", "wrong");
    }
    let s = login(&mut p, at(60), "monitor", "", "mon");
    let out = drain(&mut p);
    assert_eq!(
        out.last().unwrap().2.as_deref(),
        Some("monitor mode disabled after repeated wrong passwords")
    );
    let events = audits(&mut p);
    assert!(events.contains(&AuditEvent::LockoutStarted {
        scope: "monitor mode".into(),
        until: at(15 * 60)
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                e,
                AuditEvent::LoginFailed {
                    mode: "monitor",
                    ..
                }
            ))
            .count(),
        4
    );
    // The lockout's end is audited when it comes.
    assert!(p.poll_timeout().unwrap() <= at(15 * 60));
    p.handle_timeout(at(15 * 60));
    assert!(audits(&mut p).contains(&AuditEvent::LockoutEnded {
        scope: "monitor mode".into()
    }));
    drain(&mut p);
    let s2 = login(&mut p, at(16 * 60), "monitor", "", "mon");
    assert_eq!(drain(&mut p), vec![(s2, "LoginReply".into(), None)]);
    // s never logged in and went silent: closed at the timeout; s2 keeps heartbeating.
    let closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
    assert!(closed.contains(&s), "{closed:?}");
    p.handle_frame(
        at(16 * 60 + 10),
        s2,
        &Frame::new("Heartbeat").with("seq", 1u64),
    );
    p.handle_timeout(at(16 * 60 + 20));
    let closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
    assert!(!closed.contains(&s2), "{closed:?}");
    // Requests before login are refused, not fatal.
    let x = p.connect(at(0), peer(HERE));
    p.handle_frame(at(0), x, &Frame::new("ListAgents"));
    assert!(drain(&mut p)
        .iter()
        .any(|(sid, _, r)| *sid == x && r.as_deref() == Some("log in first")));
}

#[test]
fn an_agent_logs_in_on_its_own_instrument_only() {
    let mut p = plane();
    let s = p.connect(at(0), peer(HERE));
    let f = |i: &str| login_frame("agent", "5001", "").with("instrument", i);
    p.handle_frame(at(0), s, &f("5999"));
    assert_eq!(
        drain(&mut p),
        vec![(
            s,
            "LoginReply".into(),
            Some("instrument is not the agent's extension".into())
        )]
    );
    p.handle_frame(at(1), s, &f("5001"));
    let out = drain(&mut p);
    assert_eq!(out[0], (s, "LoginReply".into(), None), "{out:?}");
}

#[test]
fn an_agent_that_is_not_logged_in_can_be_monitored() {
    let mut p = plane();
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    drain(&mut p);
    p.handle_frame(
        at(1),
        s,
        &Frame::new("StartSilentMonitor").with("agent", "5001"),
    );
    let reply = std::iter::from_fn(|| p.poll_transmit())
        .find(|(_, f)| f.msg == "StartSilentMonitorReply")
        .unwrap()
        .1;
    assert_eq!(reply.str("result"), Some("ok"));
    assert!(matches!(
        p.poll_action(),
        Some(Action::MonitorStarted { agent: 0, .. })
    ));
}

fn call(agent: Option<usize>, cid: &str, media: &[&str]) -> CallView {
    CallView {
        agent,
        agent_id: None,
        uid: String::new(),
        call_id: cid.into(),
        from: String::new(),
        to: String::new(),
        state: "Answered".into(),
        hold: false,
        started: 0.0,
        media: media.iter().map(|m| m.to_string()).collect(),
        appliance: None,
    }
}

#[test]
fn monitor_actions_bindings_lists_by_team_and_server_heartbeats() {
    let mut p = plane();
    let _a1 = login(&mut p, at(0), "agent", "5001", "");
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    drain(&mut p);
    p.handle_frame(
        at(1),
        s,
        &Frame::new("StartSilentMonitor").with("agent", "5001"),
    );
    let reply = std::iter::from_fn(|| p.poll_transmit())
        .find(|(_, f)| f.msg == "StartSilentMonitorReply")
        .unwrap()
        .1;
    assert_eq!(reply.str("key"), Some("k"));
    assert_eq!(reply.str("monitor_service"), Some("appliance:42228"));
    assert_eq!(
        p.poll_action(),
        Some(Action::MonitorStarted {
            monitor: 1,
            agent: 0,
            agent_id: "5001".into(),
            supervisor_id: "s1".into(),
            session: s,
            key: "k".into(),
        })
    );
    // The endpoint vanished: the monitor ends, the supervisor is told.
    p.end_monitor(at(2), 1, StopReason::EndpointDisconnected);
    assert!(matches!(
        p.poll_action(),
        Some(Action::MonitorStopped { monitor: 1, ref reason, .. }) if reason.as_str() == "endpoint disconnected"
    ));
    // Lists answer from the engine's view, filtered by team.
    p.set_view(Arc::new(View {
        calls: vec![
            call(Some(0), "mine", &[]),
            call(Some(1), "red", &[]),
            call(None, "x", &[]),
        ],
        ..View::default()
    }));
    drain(&mut p);
    p.handle_frame(at(3), s, &Frame::new("ListCalls"));
    let (_, list) = p.poll_transmit().unwrap();
    let calls = list.fields["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call_id"], "mine");
    // Bind: own team only, endpoint checked.
    p.handle_frame(
        at(4),
        s,
        &Frame::new("Bind")
            .with("agent", "5002")
            .with("endpoint", "10.0.0.1:4000"),
    );
    assert_eq!(
        drain(&mut p)[0].2.as_deref(),
        Some("agent is not in your teams")
    );
    p.handle_frame(
        at(4),
        s,
        &Frame::new("Bind")
            .with("agent", "5001")
            .with("endpoint", "10.0.0.1:4000")
            .with("seconds", 60u64),
    );
    let bind = std::iter::from_fn(|| p.poll_action()).find(|a| matches!(a, Action::Bind { .. }));
    assert_eq!(
        bind,
        Some(Action::Bind {
            agent: 0,
            agent_id: "5001".into(),
            endpoint: "10.0.0.1:4000".parse().unwrap(),
            seconds: Some(60),
            by: "s1".into(),
            session: s,
        })
    );
    drain(&mut p);
    // Server heartbeats every 60 s to every session.
    p.handle_frame(at(50), s, &Frame::new("Heartbeat"));
    p.handle_timeout(at(61));
    let beats = drain(&mut p)
        .into_iter()
        .filter(|(_, m, _)| m == "Heartbeat")
        .count();
    assert!(beats >= 1, "{beats}");
}

#[test]
fn a_bind_of_another_teams_endpoint_is_refused_and_audited() {
    let mut p = plane();
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    let red_call = call(Some(1), "red-call", &["10.0.0.1:4000", "10.0.3.3:30000"]);
    let mut red_static = BindingView {
        agent: 1,
        agent_id: "5002".into(),
        endpoint: "10.0.9.9".into(),
        source: "static".into(),
        call_id: None,
        since: None,
        expires: None,
    };
    let red_sip = BindingView {
        endpoint: "10.0.3.3:30002".into(),
        source: "sip".into(),
        ..red_static.clone()
    };
    red_static.source = "static".into();
    p.set_view(Arc::new(View {
        calls: vec![red_call],
        bindings: vec![red_static, red_sip],
        ..View::default()
    }));
    drain(&mut p);
    audits(&mut p);
    let bind = |ep: &str| {
        Frame::new("Bind")
            .with("agent", "5001")
            .with("endpoint", ep)
    };
    for ep in [
        "10.0.0.1:4000",
        "10.0.3.3:30000",
        "10.0.9.9:7000",
        "10.0.3.3:30002",
    ] {
        p.handle_frame(at(1), s, &bind(ep));
        assert_eq!(
            drain(&mut p),
            vec![(
                s,
                "BindReply".into(),
                Some("the endpoint belongs to an agent outside your teams".into())
            )],
            "{ep}"
        );
        let a = audits(&mut p);
        assert_eq!(
            a,
            vec![AuditEvent::BindRefused {
                by: "s1".into(),
                agent: "5001".into(),
                endpoint: ep.into(),
                reason: "the endpoint belongs to an agent outside your teams".into()
            }]
        );
    }
    // A free endpoint binds; monitor mode (every agent's) may bind anything.
    p.handle_frame(at(2), s, &bind("10.0.7.7:9000"));
    assert_eq!(drain(&mut p), vec![(s, "BindReply".into(), None)]);
    let m = login(&mut p, at(2), "monitor", "", "mon");
    drain(&mut p);
    p.handle_frame(at(3), m, &bind("10.0.0.1:4000"));
    assert_eq!(drain(&mut p), vec![(m, "BindReply".into(), None)]);
}

#[test]
fn badly_typed_fields_are_refused_by_name_and_junk_is_not_echoed() {
    let mut p = plane();
    let s = login(&mut p, at(0), "supervisor", "s1", "");
    drain(&mut p);
    for seconds in [
        serde_json::json!(-1),
        serde_json::json!("60"),
        serde_json::json!(0.5),
        serde_json::json!(1e300),
    ] {
        p.handle_frame(
            at(1),
            s,
            &Frame::new("Bind")
                .with("agent", "5001")
                .with("endpoint", "10.0.0.1:4000")
                .with("seconds", seconds.clone()),
        );
        assert_eq!(
            drain(&mut p),
            vec![(
                s,
                "BindReply".into(),
                Some("seconds must be a whole number of seconds from 1 to 31536000".into())
            )],
            "{seconds}"
        );
    }
    assert!(!std::iter::from_fn(|| p.poll_action()).any(|a| matches!(a, Action::Bind { .. })));
    let x = p.connect(at(0), peer(HERE));
    p.handle_frame(at(0), x, &Frame::new(&"A".repeat(900_000)));
    let out = drain(&mut p);
    assert_eq!(
        out,
        vec![(x, "UnknownReply".into(), Some("unknown message".into()))]
    );
}

#[test]
fn passwords_are_verified_off_the_plane_one_login_at_a_time() {
    let mut p = plane();
    let s = p.connect(at(0), peer(HERE));
    p.handle_frame(at(0), s, &login_frame("supervisor", "s2", "s2-pw"));
    // Nothing answered yet: the check is the shell's to run.
    assert!(drain(&mut p).is_empty());
    let job = p.poll_verification().expect("a password to verify");
    // A pipelined second login is refused while the first is checked.
    p.handle_frame(at(0), s, &login_frame("supervisor", "s2", "guess"));
    assert_eq!(
        drain(&mut p),
        vec![(
            s,
            "LoginReply".into(),
            Some("a login is already in progress".into())
        )]
    );
    assert!(p.poll_verification().is_none());
    // Other sessions are served meanwhile.
    let other = login(&mut p, at(0), "supervisor", "s1", "");
    p.handle_frame(at(0), other, &Frame::new("ListAgents"));
    assert!(drain(&mut p)
        .iter()
        .any(|(sid, m, _)| *sid == other && m == "AgentList"));
    p.handle_verified(
        at(0),
        job.ticket,
        password::verify(&job.password, &job.hash),
    );
    assert_eq!(drain(&mut p), vec![(s, "LoginReply".into(), None)]);
    // At most max_verifying checks in flight.
    let mut p = ControlPlane::new(Directory {
        limits: SessionLimits {
            max_verifying: 2,
            ..SessionLimits::default()
        },
        ..directory()
    });
    for i in 0..3 {
        let c = p.connect(at(0), peer(&format!("10.0.1.{i}")));
        p.handle_frame(at(0), c, &login_frame("supervisor", "s2", "x"));
    }
    assert_eq!(std::iter::from_fn(|| p.poll_verification()).count(), 2);
    assert_eq!(
        drain(&mut p).last().unwrap().2.as_deref(),
        Some("too many logins in progress: try again")
    );
}

#[test]
fn unknown_ids_and_accounts_without_a_password_cost_a_check_and_are_refused_alike() {
    let mut p = ControlPlane::new(Directory {
        passwordless: false,
        ..directory()
    });
    let s = p.connect(at(0), peer(HERE));
    let mut told = Vec::new();
    for (mode, id) in [
        ("supervisor", "nobody"),
        ("supervisor", "s1"),
        ("agent", "5001"),
        ("agent", "9999"),
    ] {
        p.handle_frame(at(0), s, &login_frame(mode, id, "whatever"));
        let job = p.poll_verification().expect("a dummy check, same cost");
        assert_eq!(&*job.hash, password::dummy_hash());
        p.handle_verified(
            at(0),
            job.ticket,
            password::verify(&job.password, &job.hash),
        );
        told.extend(drain(&mut p).into_iter().map(|x| x.2.unwrap()));
    }
    assert_eq!(
        told,
        [
            "unknown supervisor or wrong password",
            "unknown supervisor or wrong password",
            "unknown agent or wrong password",
            "unknown agent or wrong password"
        ]
    );
    let why: Vec<String> = audits(&mut p)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::LoginFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        why,
        [
            "unknown supervisor",
            "no password_hash configured",
            "no password_hash configured",
            "unknown agent"
        ]
    );
}

#[test]
fn failed_logins_are_throttled_per_account_and_address_never_for_other_addresses() {
    let mut p = plane();
    let attacker = "192.0.2.66";
    for _ in 0..4 {
        login_from(&mut p, at(0), attacker, "supervisor", "s2", "guess");
    }
    let events = audits(&mut p);
    assert!(
        events.contains(&AuditEvent::LockoutStarted {
            scope: "supervisor s2 from 192.0.2.66".into(),
            until: at(1)
        }),
        "{events:?}"
    );
    drain(&mut p);
    // Refused at once, no password check.
    let s = p.connect(at(0), peer(attacker));
    p.handle_frame(at(0), s, &login_frame("supervisor", "s2", "guess"));
    assert!(p.poll_verification().is_none());
    assert_eq!(
        drain(&mut p),
        vec![(
            s,
            "LoginReply".into(),
            Some("too many failed logins: try again in 1 s".into())
        )]
    );
    assert_eq!(p.counters().logins_throttled, 1);
    // The real supervisor from its own address logs in at once.
    let real = login_from(&mut p, at(0), HERE, "supervisor", "s2", "s2-pw");
    assert_eq!(drain(&mut p), vec![(real, "LoginReply".into(), None)]);
    // After the delay, the attacker may try again (and the right password ends the lockout).
    let later = login_from(&mut p, at(2), attacker, "supervisor", "s2", "s2-pw");
    assert_eq!(drain(&mut p), vec![(later, "LoginReply".into(), None)]);
    assert!(audits(&mut p).contains(&AuditEvent::LockoutEnded {
        scope: "supervisor s2 from 192.0.2.66".into()
    }));
}

#[test]
fn connections_must_log_in_in_time_and_one_address_cannot_take_every_slot() {
    let mut p = ControlPlane::new(Directory {
        limits: SessionLimits {
            login_timeout: Span::from_secs(5),
            max_unauthenticated_per_source: 3,
            max_unauthenticated: 5,
            ..SessionLimits::default()
        },
        ..directory()
    });
    let flood: Vec<SessionId> = (0..4)
        .map(|_| p.connect(at(0), peer("192.0.2.1")))
        .collect();
    let closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
    assert_eq!(closed, vec![flood[3]], "the fourth from one address");
    assert_eq!(
        drain(&mut p),
        vec![(
            flood[3],
            "ProtocolError".into(),
            Some("too many connections from your address that have not logged in".into())
        )]
    );
    // Others still get in; past the global cap the oldest idle connection makes room.
    let b = p.connect(at(1), peer("192.0.2.2"));
    let c = p.connect(at(1), peer("192.0.2.3"));
    let d = p.connect(at(2), peer("192.0.2.4"));
    let closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
    assert_eq!(closed, vec![flood[0]]);
    drain(&mut p);
    // A connection that logs in stays; the rest are closed at the login deadline.
    p.handle_frame(at(3), d, &login_frame("supervisor", "s1", ""));
    assert_eq!(drain(&mut p), vec![(d, "LoginReply".into(), None)]);
    assert_eq!(p.poll_timeout(), Some(at(5)));
    p.handle_timeout(at(6));
    let mut closed: Vec<SessionId> = std::iter::from_fn(|| p.poll_close()).collect();
    closed.sort();
    assert_eq!(closed, vec![flood[1], flood[2], b, c]);
    assert_eq!(p.counters().login_timeouts, 4);
    assert_eq!(p.session_counts()[2], (Some(Mode::Supervisor), 1));
}

#[test]
fn a_warned_agent_is_told_each_call_a_monitor_hears_with_its_cti_call_type() {
    let mut p = plane();
    let a1 = login(&mut p, at(0), "agent", "5001", "");
    let a2 = login(&mut p, at(0), "agent", "5002", "");
    let s1 = login(&mut p, at(0), "supervisor", "s1", "");
    let s2 = login(&mut p, at(0), "supervisor", "s2", "s2-pw");
    let start = Frame::new("StartSilentMonitor");
    p.handle_frame(at(1), s1, &start.clone().with("agent", "5001"));
    p.handle_frame(at(1), s2, &start.with("agent", "5002"));
    let ids: Vec<(u64, String)> = p
        .monitors()
        .iter()
        .map(|(id, _, agent)| (*id, agent.to_string()))
        .collect();
    let of = |agent: &str| ids.iter().find(|(_, a)| a == agent).unwrap().0;
    std::iter::from_fn(|| p.poll_transmit()).for_each(drop);
    let heard = |monitor, call: &str, call_type| HeardCall {
        monitor,
        call_id: call.into(),
        call_type,
    };
    p.monitor_heard_call(&heard(of("5001"), "cti-1@5001", Some(1)));
    // The same call again (an endpoint attaching late re-hears it): no second warning.
    p.monitor_heard_call(&heard(of("5001"), "cti-1@5001", Some(1)));
    p.monitor_heard_call(&heard(of("5001"), "cti-2@5001", Some(9)));
    p.monitor_heard_call(&heard(of("5001"), "abc@pbx", None));
    // 5002 is not warned (WarnIfSilentMonitored off); an ended monitor is ignored.
    p.monitor_heard_call(&heard(of("5002"), "cti-3@5002", Some(1)));
    p.monitor_heard_call(&heard(999, "cti-4@5001", Some(1)));
    let sent: Vec<(SessionId, Frame)> = std::iter::from_fn(|| p.poll_transmit()).collect();
    assert!(sent.iter().all(|(sid, _)| *sid == a1), "{sent:?}");
    let got: Vec<Event> = sent.iter().map(|(_, f)| Event::parse(f).unwrap()).collect();
    assert_eq!(
        got,
        [
            Event::MonitoredCall {
                monitor: of("5001"),
                call: "cti-1@5001".into(),
                call_type: Some(1),
            },
            Event::MonitoredCall {
                monitor: of("5001"),
                call: "cti-2@5001".into(),
                call_type: Some(9),
            },
            Event::MonitoredCall {
                monitor: of("5001"),
                call: "abc@pbx".into(),
                call_type: None,
            },
        ]
    );
    // The frame says whether the CTI's call type is one the ACD delivered.
    let acd: Vec<Option<bool>> = sent
        .iter()
        .map(|(_, f)| f.fields.get("acd").and_then(|v| v.as_bool()))
        .collect();
    assert_eq!(acd, [Some(true), Some(false), None]);
    let _ = (a2, s2);
}
