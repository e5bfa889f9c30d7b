use super::*;

fn frame(json: &str) -> Frame {
    let body = json.as_bytes();
    let mut buf = (body.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(body);
    super::super::frame::parse(&buf, 1 << 20).unwrap().0
}

#[test]
fn bind_seconds_must_be_a_whole_number_in_range() {
    for bad in [
        "-1",
        "\"60\"",
        "0.5",
        "1e300",
        "0",
        "9223372036854775808",
        "true",
        "60.0",
    ] {
        let f = frame(&format!(
            r#"{{"msg":"Bind","agent":"5001","endpoint":"10.0.0.1:4000","seconds":{bad}}}"#
        ));
        let e = Request::parse(&f).unwrap_err();
        assert_eq!(
            e,
            ParseError::Field {
                msg: "Bind",
                field: "seconds",
                problem: "must be a whole number of seconds from 1 to 31536000"
            },
            "{bad}"
        );
        assert_eq!(e.reply_name(), "BindReply");
        assert!(e.to_string().starts_with("seconds "), "{e}");
    }
    let ok = frame(r#"{"msg":"Bind","agent":"5001","endpoint":"10.0.0.1:4000","seconds":60}"#);
    assert_eq!(
        Request::parse(&ok).unwrap(),
        Request::Bind(Bind {
            agent: "5001".into(),
            endpoint: "10.0.0.1:4000".parse().unwrap(),
            seconds: Some(60),
        })
    );
    let forever = frame(r#"{"msg":"Bind","agent":"5001","endpoint":"[::1]:4000"}"#);
    assert!(matches!(
        Request::parse(&forever),
        Ok(Request::Bind(Bind { seconds: None, .. }))
    ));
}

#[test]
fn every_field_of_the_wrong_type_is_refused_by_name() {
    let cases = [
        (
            r#"{"msg":"Bind","agent":5001,"endpoint":"10.0.0.1:1"}"#,
            "agent must be a string",
        ),
        (
            r#"{"msg":"Bind","agent":"5001","endpoint":"here"}"#,
            "endpoint must be an IP address and port",
        ),
        (r#"{"msg":"Bind","agent":"5001"}"#, "endpoint is missing"),
        (
            r#"{"msg":"Login","mode":"root"}"#,
            "mode must be agent, supervisor or monitor",
        ),
        (
            r#"{"msg":"Login","mode":"supervisor","id":["s1"]}"#,
            "id must be a string",
        ),
        (
            r#"{"msg":"Heartbeat","seq":-4}"#,
            "seq must be a whole number >= 0",
        ),
        (
            r#"{"msg":"SetAgentState","state":"Asleep"}"#,
            "state is not an agent state",
        ),
        (
            r#"{"msg":"StopSilentMonitor","monitor":"7"}"#,
            "monitor must be a monitor id",
        ),
        (
            r#"{"msg":"StopSilentMonitor"}"#,
            "agent or monitor must be given",
        ),
        (r#"{"msg":"StartSilentMonitor"}"#, "agent is missing"),
    ];
    for (json, want) in cases {
        let e = Request::parse(&frame(json)).unwrap_err();
        assert_eq!(e.to_string(), want, "{json}");
    }
    let long = "x".repeat(MAX_ID_LEN + 1);
    let e = Request::parse(&frame(&format!(
        r#"{{"msg":"StartSilentMonitor","agent":"{long}"}}"#
    )))
    .unwrap_err();
    assert_eq!(e.to_string(), "agent is too long");
}

#[test]
fn an_unknown_message_is_echoed_short_or_not_at_all() {
    let e = Request::parse(&frame(r#"{"msg":"Frobnicate"}"#)).unwrap_err();
    assert_eq!(e.reply_name(), "FrobnicateReply");
    let huge = "A".repeat(900_000);
    let e = Request::parse(&frame(&format!(r#"{{"msg":"{huge}"}}"#))).unwrap_err();
    assert_eq!(e.reply_name(), "UnknownReply");
    let odd = Request::parse(&frame(r#"{"msg":"<script>"}"#)).unwrap_err();
    assert_eq!(odd.reply_name(), "UnknownReply");
}

#[test]
fn every_request_round_trips_through_its_frame() {
    let all = [
        Request::Login(Login {
            mode: Mode::Supervisor,
            id: "s1".into(),
            password: "pw".into(),
            instrument: None,
        }),
        Request::Login(Login {
            mode: Mode::Agent,
            id: "5001".into(),
            password: String::new(),
            instrument: Some("5001".into()),
        }),
        Request::Heartbeat { seq: 7 },
        Request::HeartbeatReply { seq: 8 },
        Request::SetAgentState { state: "Available" },
        Request::ListAgents,
        Request::ListCalls,
        Request::ListFlows,
        Request::ListBindings,
        Request::ListMonitors,
        Request::Bind(Bind {
            agent: "5001".into(),
            endpoint: "10.0.0.1:4000".parse().unwrap(),
            seconds: Some(3600),
        }),
        Request::StartSilentMonitor {
            agent: "5001".into(),
        },
        Request::StopSilentMonitor(StopTarget::Agent("5001".into())),
        Request::StopSilentMonitor(StopTarget::Monitor(9)),
    ];
    for r in all {
        let mut buf = Vec::new();
        r.to_frame().encode(&mut buf);
        let (f, _) = super::super::frame::parse(&buf, 1 << 20).unwrap();
        assert_eq!(Request::parse(&f).unwrap(), r);
    }
}

#[test]
fn a_login_never_shows_its_password() {
    let l = Login {
        mode: Mode::Supervisor,
        id: "s1".into(),
        password: "hunter2".into(),
        instrument: None,
    };
    assert!(!format!("{l:?}").contains("hunter2"));
}

#[test]
fn a_list_is_answered_by_its_list_or_by_its_refusal() {
    let list = Request::ListAgents;
    assert_eq!(list.reply_name(), "AgentList");
    assert_eq!(list.refusal_name(), "ListAgentsReply");
    assert!(list.is_answered_by("AgentList") && list.is_answered_by("ListAgentsReply"));
    assert!(!list.is_answered_by("CallList"));
    let bind = Request::StartSilentMonitor { agent: "1".into() };
    assert_eq!(bind.reply_name(), "StartSilentMonitorReply");
    assert_eq!(bind.refusal_name(), bind.reply_name());
    // What the server sends for each is what the client waits for.
    let refused = crate::control::reply::Reply::Refused {
        request: list.name().into(),
        reason: "not logged in".into(),
    };
    assert!(list.is_answered_by(&refused.to_frame().msg));
    let granted = crate::control::reply::Reply::AgentList(vec![]);
    assert!(list.is_answered_by(&granted.to_frame().msg));
}
