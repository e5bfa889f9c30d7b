use super::*;
use crate::control::request::Request;

fn round_trip(f: &Frame) -> Frame {
    let mut buf = Vec::new();
    f.encode(&mut buf);
    crate::control::frame::parse(&buf, 1 << 20).unwrap().0
}

#[test]
fn every_reply_and_event_round_trips_through_its_frame() {
    let replies = [
        Reply::Refused {
            request: "Bind".into(),
            reason: "agent is not in your teams".into(),
        },
        Reply::Login {
            session: 3,
            uid: "supervisor.s1".into(),
            heartbeat_ms: 60_000,
        },
        Reply::SetAgentState,
        Reply::AgentList(vec![AgentItem {
            uid: "agent.5001".into(),
            agent: "5001".into(),
            extension: "5001".into(),
            team: Some("blue".into()),
            state: "Login".into(),
            appliance: None,
        }]),
        Reply::CallList(vec![]),
        Reply::FlowList(vec![]),
        Reply::BindingList(vec![]),
        Reply::MonitorList(vec![MonitorItem {
            uid: "monitor.1".into(),
            monitor: 1,
            supervisor: "s1".into(),
            agent: "5001".into(),
            started: 1.5,
            appliance: Some("b".into()),
        }]),
        Reply::Bind {
            agent: "5001".into(),
            endpoint: "10.0.0.1:4000".parse().unwrap(),
        },
        Reply::StartSilentMonitor(Grant {
            monitor: 1,
            agent: "5001".into(),
            key: "00ff".into(),
            monitor_service: Some("10.0.0.9:42228".into()),
        }),
        Reply::StopSilentMonitor { stopped: 1 },
        Reply::HeartbeatReply { seq: 7 },
    ];
    for r in replies {
        assert_eq!(Reply::parse(&round_trip(&r.to_frame())).unwrap(), r);
    }
    let events = [
        Event::AgentState {
            agent: "5001".into(),
            state: "Talking".into(),
        },
        Event::MonitoredStarted { monitor: 2 },
        Event::MonitoredStopped { monitor: 2 },
        Event::MonitoredCall {
            monitor: 2,
            call: "cti-7@5001".into(),
            call_type: Some(1),
        },
        Event::MonitoredCall {
            monitor: 2,
            call: "abc@pbx".into(),
            call_type: None,
        },
        Event::SilentMonitorStopped {
            monitor: 2,
            agent: "5001".into(),
            reason: StopReason::AgentLoggedOut,
        },
        Event::SilentMonitorStopped {
            monitor: 2,
            agent: "5001".into(),
            reason: StopReason::Other("a newer reason".into()),
        },
        Event::Heartbeat { seq: 4 },
        Event::ProtocolError {
            reason: "frame too large".into(),
        },
    ];
    for e in events {
        assert_eq!(Event::parse(&round_trip(&e.to_frame())).unwrap(), e);
    }
}

#[test]
fn stop_reasons_keep_their_wire_text_and_say_which_end_a_monitor_for_good() {
    for (r, text) in STOP_REASONS.iter() {
        assert_eq!(r.as_str(), *text);
        assert_eq!(StopReason::from_wire(text), *r);
    }
    assert!(StopReason::AgentLoggedOut.is_final() && StopReason::StoppedBySupervisor.is_final());
    assert!(StopReason::NonAcdCall.is_final());
    assert!(!StopReason::EndpointDisconnected.is_final());
    assert!(!StopReason::Other("x".into()).is_final());
}

/// The JSON lines of docs/protocol.md's ```json blocks.
fn documented_examples() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
        .expect("docs/protocol.md");
    let mut out = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        match line.trim() {
            "```json" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => out.push(l.to_owned()),
            _ => {}
        }
    }
    out
}

#[test]
fn every_example_in_the_protocol_document_is_parsed_by_the_types() {
    let examples = documented_examples();
    assert!(examples.len() >= 30, "{} examples", examples.len());
    let mut seen = std::collections::BTreeSet::new();
    for ex in &examples {
        let value: Value = serde_json::from_str(ex).unwrap_or_else(|e| panic!("{ex}: {e}"));
        let Value::Object(fields) = value else {
            panic!("{ex}: not an object")
        };
        let msg = fields["msg"].as_str().unwrap().to_owned();
        let frame = Frame {
            msg: msg.clone(),
            fields,
        };
        // A request, a reply or an event; what the types make of it is the same frame again.
        let again = if let Ok(r) = Request::parse(&frame) {
            seen.insert(format!("request {}", r.name()));
            r.to_frame()
        } else if let Ok(r) = Reply::parse(&frame) {
            let refused = matches!(r, Reply::Refused { .. }).then_some(" refused");
            seen.insert(format!("reply {msg}{}", refused.unwrap_or("")));
            r.to_frame()
        } else {
            let e = Event::parse(&frame).unwrap_or_else(|e| panic!("{ex}: {e}"));
            seen.insert(format!("event {msg}"));
            e.to_frame()
        };
        let mut want = frame.fields.clone();
        want.entry("v").or_insert(Value::from(1));
        assert_eq!(again.fields, want, "{ex}");
    }
    for name in [
        "request Login",
        "request Heartbeat",
        "request HeartbeatReply",
        "request SetAgentState",
        "request ListAgents",
        "request ListCalls",
        "request ListFlows",
        "request ListBindings",
        "request ListMonitors",
        "request Bind",
        "request StartSilentMonitor",
        "request StopSilentMonitor",
        "reply LoginReply",
        "reply SetAgentStateReply",
        "reply AgentList",
        "reply CallList",
        "reply FlowList",
        "reply BindingList",
        "reply MonitorList",
        "reply BindReply",
        "reply StartSilentMonitorReply",
        "reply StopSilentMonitorReply",
        "reply BindReply refused",
        "event AgentStateEvent",
        "event SilentMonitorStartedEvent",
        "event SilentMonitorStoppedEvent",
        "event SilentMonitorStopped",
        "event ProtocolError",
    ] {
        assert!(
            seen.contains(name),
            "docs/protocol.md has no example of {name}"
        );
    }
}
