use super::*;
use crate::binding::Direction;
use crate::router::tests::{a, ms, udp, Lab};

fn call(id: u32) -> CallRef {
    CallRef {
        id,
        device: "5001".into(),
    }
}

fn begin(id: u32, call_type: u16, agent: Option<usize>) -> CtiBegin {
    CtiBegin {
        call: call(id),
        call_type,
        ani: "+4930111".into(),
        dnis: "5001".into(),
        agent,
    }
}

const PHONE: &str = "10.0.0.2:30000";

#[test]
fn without_sip_only_the_cti_binds_the_phone_and_its_call_is_announced_once() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.media(0, 30000, 1, 10);
    assert!(lab.got.is_empty(), "no SIP, no CTI: nobody's audio");
    lab.r.cti_call_began(ms(10), begin(1000, 1, Some(0)));
    lab.r.cti_rtp_started(ms(20), 0, &call(1000), a(PHONE));
    lab.media(40, 30000, 2, 20);
    lab.media(60, 30000, 3, 30);
    // Without SDP the flow table recognises RTP by its third packet (`flow`).
    assert_eq!(
        lab.got,
        [(1, Direction::FromAgent, 30), (1, Direction::ToAgent, 31)]
    );
    assert_eq!(lab.kinds(), ["call cti-1000@5001"]);
    let v = lab.r.view();
    let c = v
        .calls
        .iter()
        .find(|c| c.call_id == "cti-1000@5001")
        .unwrap();
    assert_eq!(
        (c.agent_id.as_deref(), c.from.as_str(), c.state.as_str()),
        (Some("5001"), "+4930111", "Answered")
    );
    assert_eq!(c.media, [PHONE]);
    assert!(v
        .bindings
        .iter()
        .any(|b| b.agent_id == "5001" && b.source == "cti"));
    // The end: told at once; a late packet (the binding lingers 2 s) is heard, not announced.
    lab.r.cti_rtp_stopped(ms(100), &call(1000), a(PHONE));
    lab.r.cti_call_ended(ms(100), &call(1000));
    lab.media(120, 30000, 4, 40);
    assert_eq!(lab.got.len(), 4);
    assert_eq!(lab.kinds(), ["ended cti-1000@5001"]);
    lab.r.handle_timeout(ms(2200));
    lab.media(2300, 30000, 5, 50);
    assert_eq!(lab.got.len(), 4, "the linger is over");
    assert!(lab.r.view().calls.is_empty());
}

#[test]
fn the_cti_wins_over_sip_and_the_disagreement_is_counted() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.add_monitor(2, 1);
    // SIP says 10.0.0.2:30000 is 5001's; the CTI Server says 5002 (a shared phone, a
    // mis-provisioned line): 5002's supervisor hears it, 5001's does not.
    lab.call(0, "c1", 30000);
    lab.r.cti_rtp_started(ms(10), 1, &call(7), a(PHONE));
    lab.media(20, 30000, 1, 10);
    assert_eq!(
        lab.got,
        [(2, Direction::FromAgent, 10), (2, Direction::ToAgent, 11)]
    );
    assert_eq!(lab.r.cti_disagreements(), 1);
    // Said again (the other direction's RTP_STARTED): one binding, one disagreement.
    lab.r.cti_rtp_started(ms(11), 1, &call(7), a(PHONE));
    assert_eq!(lab.r.cti_disagreements(), 1);
}

#[test]
fn address_mode_binds_every_port_of_the_phone_and_beats_sip() {
    let mut lab = Lab::new();
    lab.r.set_cti_endpoint(CtiEndpoint::Address);
    lab.r.add_monitor(2, 1);
    lab.call(0, "c1", 30000);
    lab.r.cti_rtp_started(ms(10), 1, &call(7), a("10.0.0.2:1"));
    lab.media(20, 30000, 1, 10);
    lab.media(40, 30010, 2, 20);
    assert_eq!(lab.got.len(), 4, "{:?}", lab.got);
    assert!(lab.got.iter().all(|g| g.0 == 2));
    lab.r.cti_rtp_stopped(ms(50), &call(7), a("10.0.0.2:1"));
    lab.r.handle_timeout(ms(2100));
    lab.got.clear();
    lab.media(2200, 30010, 3, 30);
    assert!(lab.got.is_empty(), "unbound after the linger");
}

#[test]
fn a_nailed_connection_gives_one_conversation_per_customer_call() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    // One SIP dialog for the shift (a mobile agent's nailed connection).
    lab.call(0, "nail", 30000);
    lab.media(10, 30000, 1, 1);
    for (n, id) in [1u32, 2].into_iter().enumerate() {
        let t = 100 + 1000 * n as i64;
        lab.r.cti_call_began(ms(t), begin(id, 1, Some(0)));
        lab.media(t + 20, 30000, 2 + 4 * n as u16, 2);
        lab.media(t + 40, 30000, 3 + 4 * n as u16, 2);
        lab.r.cti_call_ended(ms(t + 500), &call(id));
        // Between customers the line stays up: heard, not a call of its own.
        lab.media(t + 520, 30000, 4 + 4 * n as u16, 2);
    }
    assert_eq!(
        lab.kinds(),
        [
            "call nail",
            "call cti-1@5001",
            "ended cti-1@5001",
            "call cti-2@5001",
            "ended cti-2@5001"
        ]
    );
    assert_eq!(lab.got.len(), 14, "every packet of the line heard");
}

#[test]
fn a_non_acd_cti_call_ends_the_monitor_and_a_supervisor_leg_is_never_bound() {
    let mut lab = Lab::new();
    lab.r.set_stop_on_non_acd_calls(true);
    lab.r.add_monitor(1, 0);
    lab.r.cti_call_began(ms(0), begin(1, 1, Some(0)));
    lab.r.cti_call_ended(ms(10), &call(1));
    // The agent dials out (CallType 9).
    lab.r.cti_call_began(ms(20), begin(2, 9, Some(0)));
    lab.r.cti_rtp_started(ms(30), 0, &call(2), a(PHONE));
    lab.media(40, 30000, 1, 10);
    assert!(lab.got.is_empty(), "not one packet of the agent's own call");
    assert_eq!(
        lab.kinds(),
        ["call cti-1@5001", "ended cti-1@5001", "non-acd cti-2@5001"]
    );
    assert!(lab.r.has_monitor(1));
    assert_eq!(lab.r.monitor_count(), 0);

    // A supervisor's silent-monitor leg (CallType 22) on the same phone binds nothing.
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.cti_call_began(ms(0), begin(3, 22, Some(0)));
    lab.r.cti_rtp_started(ms(10), 0, &call(3), a(PHONE));
    lab.media(20, 30000, 1, 10);
    assert!(lab.got.is_empty());
    assert!(lab.kinds().is_empty());
}

#[test]
fn an_rtp_event_for_an_unknown_agent_index_binds_nothing() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.cti_rtp_started(ms(0), 99, &call(1), a(PHONE));
    lab.frame(
        10,
        udp(
            a(PHONE),
            a("10.0.0.1:20000"),
            &crate::router::tests::rtp(1, 7, 1),
        ),
    );
    assert!(lab.got.is_empty());
}

#[test]
fn an_endpoint_that_attaches_late_hears_the_current_cti_call_at_once() {
    let mut lab = Lab::new();
    lab.r.cti_call_began(ms(0), begin(5, 1, Some(0)));
    lab.r.cti_rtp_started(ms(0), 0, &call(5), a(PHONE));
    lab.r.add_monitor(1, 0);
    for seq in 1..4 {
        lab.media(20 * i64::from(seq), 30000, seq, 2);
    }
    assert_eq!(lab.kinds(), ["call cti-5@5001"]);
    lab.r.reannounce(1);
    assert_eq!(lab.kinds(), ["call cti-5@5001"], "told without a packet");
    lab.media(100, 30000, 4, 2);
    assert!(lab.kinds().is_empty());
}

#[test]
fn a_logout_ends_what_the_cti_bound_for_the_agent_even_after_a_lost_end_call() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.cti_call_began(ms(0), begin(5, 1, Some(0)));
    lab.r.cti_rtp_started(ms(0), 0, &call(5), a(PHONE));
    for seq in 1..4 {
        lab.media(20 * i64::from(seq), 30000, seq, 2);
    }
    assert_eq!(lab.got.len(), 2);
    // END_CALL and RTP_STOPPED were lost in an outage; the agent logs out.
    lab.r.cti_logged_out(ms(100), 0);
    assert_eq!(lab.kinds(), ["call cti-5@5001", "ended cti-5@5001"]);
    lab.r.handle_timeout(ms(2200));
    lab.got.clear();
    lab.media(2300, 30000, 4, 2);
    assert!(lab.got.is_empty(), "the phone is nobody's now");
    assert!(lab.r.view().calls.is_empty());
}

#[test]
fn a_cti_call_is_announced_with_its_call_type_when_the_cti_named_one() {
    let call_types = |lab: &mut Lab| -> Vec<Option<u16>> {
        lab.notices()
            .iter()
            .filter_map(|n| match n {
                Notice::Call { call_type, .. } => Some(*call_type),
                _ => None,
            })
            .collect()
    };
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.cti_call_began(ms(0), begin(1, 4, Some(0)));
    assert_eq!(call_types(&mut lab), [Some(4)]);
    // RTP_STARTED before BEGIN_CALL: the call's type is not known yet.
    lab.r.cti_call_ended(ms(10), &call(1));
    lab.r.cti_rtp_started(ms(20), 0, &call(2), a(PHONE));
    lab.media(40, 30000, 1, 10);
    lab.media(60, 30000, 2, 20);
    lab.media(80, 30000, 3, 30);
    let types = call_types(&mut lab);
    assert_eq!(types, [None]);
    // A SIP dialog is announced without one.
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.call(0, "sip1", 30000);
    lab.media(10, 30000, 1, 1);
    assert_eq!(call_types(&mut lab), [None]);
}

#[test]
fn a_monitor_started_during_a_cti_call_hears_it_as_such_and_never_a_non_acd_one() {
    // On a nailed line during customer call 1: the monitor hears "cti-1", not the dialog.
    let mut lab = Lab::new();
    lab.call(0, "nail", 30000);
    lab.r.cti_call_began(ms(100), begin(1, 1, Some(0)));
    lab.r.add_monitor(1, 0);
    lab.media(120, 30000, 1, 1);
    assert_eq!(lab.kinds(), ["call cti-1@5001"]);
    assert_eq!(lab.got.len(), 2);

    // During the agent's own call (CallType 9) under StopSMNonACDCall: ended at once.
    let mut lab = Lab::new();
    lab.r.set_stop_on_non_acd_calls(true);
    lab.call(0, "nail", 30000);
    lab.r.cti_call_began(ms(100), begin(2, 9, Some(0)));
    lab.r.add_monitor(1, 0);
    lab.media(120, 30000, 1, 1);
    assert!(lab.got.is_empty(), "not one packet of the agent's own call");
    assert_eq!(lab.kinds(), ["non-acd cti-2@5001"]);
    // Without the policy it is heard.
    let mut lab = Lab::new();
    lab.call(0, "nail", 30000);
    lab.r.cti_call_began(ms(100), begin(2, 9, Some(0)));
    lab.r.add_monitor(1, 0);
    lab.media(120, 30000, 1, 1);
    assert_eq!(lab.kinds(), ["call cti-2@5001"]);
}
