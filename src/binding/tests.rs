use super::*;
use crate::sip::CallConfig;

fn sdp(ip: &str, port: u16, dir: &str) -> String {
    format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio {port} RTP/AVP 0\r\na={dir}\r\n")
}

/// One SIP message: start line, Call-ID, From user/tag, To user/tag, CSeq, extra header lines
/// (each ending in CRLF), SDP body.
struct Msg<'a> {
    start: &'a str,
    cid: &'a str,
    from: (&'a str, &'a str),
    to: (&'a str, &'a str),
    cseq: &'a str,
    extra: &'a str,
    body: &'a str,
}

impl Msg<'_> {
    fn bytes(&self) -> Vec<u8> {
        let tag = |t: &str| {
            if t.is_empty() {
                String::new()
            } else {
                format!(";tag={t}")
            }
        };
        let ct = if self.body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{}\r\nFrom: <sip:{}@pbx>{}\r\nTo: <sip:{}@pbx>{}\r\nCall-ID: {}\r\nCSeq: {}\r\n{}{ct}Content-Length: {}\r\n\r\n{}",
            self.start,
            self.from.0,
            tag(self.from.1),
            self.to.0,
            tag(self.to.1),
            self.cid,
            self.cseq,
            self.extra,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn agent(id: &str, ext: &str, mobile: Option<&str>, ips: &[&str]) -> Agent {
    Agent {
        id: id.into(),
        extension: ext.into(),
        mobile_number: mobile.map(Into::into),
        phone_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
    }
}

struct Lab {
    calls: CallTable,
    bindings: Bindings,
}

const GW: &str = "10.0.0.1";
const PBX: &str = "10.0.0.9";
const PHONE_A: &str = "10.0.1.1";
const PHONE_B: &str = "10.0.1.2";

impl Lab {
    /// Agents a1 (5001), a2 (5002, mobile +4915112345678), a3 (5003, phone 10.9.9.9).
    fn new() -> Lab {
        Lab::with(vec![
            agent("a1", "5001", None, &[]),
            agent("a2", "5002", Some("+4915112345678"), &[]),
            agent("a3", "5003", None, &["10.9.9.9"]),
        ])
    }

    fn with(agents: Vec<Agent>) -> Lab {
        Lab {
            calls: CallTable::new(CallConfig::default()),
            bindings: Bindings::new(agents, Span::from_secs(2)),
        }
    }

    /// `m` from host `src` to host `dst` (signalling on port 5060) at `t` s.
    fn feed(&mut self, t: f64, src: &str, dst: &str, m: Msg<'_>) {
        let now = Timestamp::from_nanos((t * 1e9) as i64);
        let (s, d) = (a(&format!("{src}:5060")), a(&format!("{dst}:5060")));
        self.calls.handle_message(now, s, d, &m.bytes()).unwrap();
        while let Some(e) = self.calls.poll_event() {
            self.bindings.handle_call_event(now, e, &self.calls);
        }
    }

    /// The agents `src` -> `dst` belongs to, with directions.
    fn hits(&self, src: &str, dst: &str) -> Vec<(usize, Direction)> {
        self.bindings
            .lookup(a(src), a(dst))
            .into_iter()
            .flatten()
            .map(|h| (h.agent, h.direction))
            .collect()
    }

    fn ended(&mut self) -> Vec<(usize, u32)> {
        std::iter::from_fn(|| self.bindings.poll_ended()).collect()
    }

    /// A whole call: `caller` (user, signalling host, media `ip:port`) INVITEs `ruri` at the
    /// callee's signalling host, `to` in the To header, `extra` headers on the INVITE; the
    /// callee answers from its signalling host with `answer_extra` headers.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        t: f64,
        cid: &str,
        caller: (&str, &str, &str),
        callee: (&str, &str, &str),
        ruri: &str,
        to: &str,
        extra: &str,
        answer_extra: &str,
    ) {
        let media = |m: &str| {
            let ep = a(m);
            sdp(&ep.ip().to_string(), ep.port(), "sendrecv")
        };
        let (offer, answer) = (media(caller.2), media(callee.2));
        let invite = format!("INVITE sip:{ruri}@{} SIP/2.0", callee.1);
        self.feed(
            t,
            caller.1,
            callee.1,
            Msg {
                start: &invite,
                cid,
                from: (caller.0, "f"),
                to: (to, ""),
                cseq: "1 INVITE",
                extra,
                body: &offer,
            },
        );
        self.feed(
            t + 0.1,
            callee.1,
            caller.1,
            Msg {
                start: "SIP/2.0 200 OK",
                cid,
                from: (caller.0, "f"),
                to: (to, "t"),
                cseq: "1 INVITE",
                extra: answer_extra,
                body: &answer,
            },
        );
    }

    /// A customer from the gateway (media `gw`) calls 5001, who answers at PHONE_A (media
    /// `phone`).
    fn inbound(&mut self, t: f64, cid: &str, gw: &str, phone: &str) {
        self.call(
            t,
            cid,
            ("+4930111", GW, gw),
            ("5001", PHONE_A, phone),
            "5001",
            "5001",
            "",
            "",
        )
    }

    fn bye(&mut self, t: f64, cid: &str, from_host: &str, to_host: &str) {
        self.feed(
            t,
            from_host,
            to_host,
            Msg {
                start: "BYE sip:x@pbx SIP/2.0",
                cid,
                from: ("x", "f"),
                to: ("y", "t"),
                cseq: "9 BYE",
                extra: "",
                body: "",
            },
        );
    }
}

#[test]
fn follows_the_agent_through_hold_consult_and_next_call() {
    let mut lab = Lab::new();
    lab.call(
        0.0,
        "c1",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("5001", PHONE_A, "10.0.1.1:30000"),
        "5001",
        "5001",
        "",
        "",
    );
    assert_eq!(
        lab.hits("10.0.1.1:30000", "10.0.0.1:20000"),
        vec![(0, Direction::FromAgent)]
    );
    assert_eq!(
        lab.hits("10.0.0.1:20000", "10.0.1.1:30000"),
        vec![(0, Direction::ToAgent)]
    );
    // Hold (the agent re-INVITEs sendonly on the same endpoint): still bound.
    let hold = sdp(PHONE_A, 30000, "sendonly");
    lab.feed(
        5.0,
        PHONE_A,
        GW,
        Msg {
            start: "INVITE sip:+4930111@gw SIP/2.0",
            cid: "c1",
            from: ("5001", "t"),
            to: ("+4930111", "f"),
            cseq: "2 INVITE",
            extra: "",
            body: &hold,
        },
    );
    assert_eq!(lab.bindings.of_agent(0).count(), 1);
    // Consult: the agent calls 5101; a second conversation, the agent on the caller side.
    lab.call(
        6.0,
        "c2",
        ("5001", PHONE_A, "10.0.1.1:30002"),
        ("5101", "10.0.2.1", "10.0.2.1:40000"),
        "5101",
        "5101",
        "",
        "",
    );
    assert_eq!(lab.bindings.of_agent(0).count(), 2);
    assert!(lab.bindings.placed_by_agent(0, 1) && !lab.bindings.placed_by_agent(0, 0));
    // The first call ends: its binding lingers 2 s, then goes; the consult stays.
    lab.bye(10.0, "c1", GW, PHONE_A);
    assert_eq!(lab.ended(), vec![(0, 0)]);
    lab.bindings
        .handle_timeout(Timestamp::from_nanos(11_000_000_000));
    assert_eq!(lab.bindings.of_agent(0).count(), 2);
    lab.bindings
        .handle_timeout(Timestamp::from_nanos(12_500_000_000));
    assert_eq!(lab.bindings.of_agent(0).count(), 1);
    assert!(lab.hits("10.0.1.1:30000", "10.0.0.1:20000").is_empty());
    // Next call: bound automatically, a new conversation.
    lab.call(
        20.0,
        "c3",
        ("+4930112", GW, "10.0.0.1:20002"),
        ("5001", PHONE_A, "10.0.1.1:30004"),
        "5001",
        "5001",
        "",
        "",
    );
    assert!(lab.bindings.sources(0).contains(&Source::Sip(2)));
}

#[test]
fn the_next_call_on_the_same_phone_port_within_the_linger_is_a_new_conversation() {
    let mut lab = Lab::new();
    let call =
        |lab: &mut Lab, t: f64, cid: &str, gw: &str| lab.inbound(t, cid, gw, "10.0.1.1:30000");
    call(&mut lab, 0.0, "c1", "10.0.0.1:20000");
    lab.bye(5.0, "c1", GW, PHONE_A);
    assert_eq!(lab.ended(), vec![(0, 0)]);
    // Half a second later (call 1's binding still lingers) the phone takes call 2 on the
    // same port: a conversation of its own, not call 1 taken up again.
    call(&mut lab, 5.5, "c2", "10.0.0.1:20002");
    let hit = |lab: &Lab, src: &str, dst: &str| {
        let h = lab.bindings.lookup(a(src), a(dst));
        h.into_iter()
            .flatten()
            .map(|h| h.source)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hit(&lab, "10.0.1.1:30000", "10.0.0.1:20002"),
        vec![Source::Sip(1)]
    );
    assert_eq!(
        hit(&lab, "10.0.0.1:20002", "10.0.1.1:30000"),
        vec![Source::Sip(1)]
    );
    assert!(lab.ended().is_empty());
    // Call 1's binding lingers out; call 2's stays until its own BYE.
    lab.bindings
        .handle_timeout(Timestamp::from_nanos(7_500_000_000));
    assert_eq!(lab.bindings.sources(0), vec![Source::Sip(1)]);
    lab.bye(9.0, "c2", GW, PHONE_A);
    assert_eq!(lab.ended(), vec![(0, 1)]);
}

#[test]
fn an_ended_conversation_yields_its_port_whatever_claimed_it() {
    let src = |lab: &Lab, from: &str, to: &str| {
        let h = lab.bindings.lookup(a(from), a(to));
        h.into_iter()
            .flatten()
            .map(|h| h.source)
            .collect::<Vec<_>>()
    };
    // The CTI Server bound the phone's port (rank above SIP) for CTI call 77, then said its
    // RTP stopped: the next call's SIP on the same port owns it during the linger.
    for mode in [CtiEndpoint::AddressAndPort, CtiEndpoint::Address] {
        let mut lab = Lab::new();
        let phone = a("10.0.1.1:30000");
        lab.bindings
            .cti_bind(Timestamp::from_nanos(0), 0, 77, phone, mode);
        assert_eq!(
            src(&lab, "10.0.1.1:30000", "10.0.0.1:20000"),
            [Source::Cti(77)]
        );
        lab.bindings
            .cti_unbind(Timestamp::from_nanos(1_000_000_000), 77, phone, mode);
        lab.inbound(1.5, "c2", "10.0.0.1:20002", "10.0.1.1:30000");
        assert_eq!(
            src(&lab, "10.0.1.1:30000", "10.0.0.1:20002"),
            [Source::Sip(0)],
            "{mode:?}"
        );
    }
    // An explicit bind still never takes the port of an ended SIP conversation.
    let mut lab = Lab::new();
    lab.inbound(0.0, "c1", "10.0.0.1:20000", "10.0.1.1:30000");
    lab.bye(1.0, "c1", GW, PHONE_A);
    let t = Timestamp::from_nanos(1_100_000_000);
    lab.bindings.bind(t, 1, a("10.0.1.1:30000"), None);
    assert_eq!(
        src(&lab, "10.0.1.1:30000", "10.0.0.1:20000"),
        [Source::Sip(0)]
    );
}

#[test]
fn mobile_number_static_phone_ip_and_explicit() {
    let mut lab = Lab::new();
    lab.call(
        0.0,
        "m1",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("x", "10.0.3.3", "10.0.3.3:31000"),
        "+4915112345678",
        "5002",
        "",
        "",
    );
    assert_eq!(
        lab.bindings
            .classify(a("10.0.3.3:31000"), a("10.0.0.1:20000"))
            .map(|x| x.0),
        Some(1)
    );
    // Static: anything to or from agent 3's phone.
    assert_eq!(
        lab.bindings.classify(a("10.9.9.9:4000"), a("10.0.0.1:1")),
        Some((2, Direction::FromAgent))
    );
    assert_eq!(lab.bindings.sources(2), vec![Source::Static]);
    // Explicit with expiry.
    let t0 = Timestamp::from_nanos(0);
    lab.bindings.bind(
        t0,
        0,
        a("10.5.5.5:7000"),
        Some(Timestamp::from_nanos(5_000_000_000)),
    );
    assert_eq!(
        lab.bindings.classify(a("10.1.1.1:1"), a("10.5.5.5:7000")),
        Some((0, Direction::ToAgent))
    );
    assert_eq!(
        lab.bindings.poll_timeout(),
        Some(Timestamp::from_nanos(5_000_000_000))
    );
    lab.bindings
        .handle_timeout(Timestamp::from_nanos(6_000_000_000));
    assert_eq!(
        lab.bindings.classify(a("10.1.1.1:1"), a("10.5.5.5:7000")),
        None
    );
    // A call to nobody we know binds nothing.
    lab.call(
        30.0,
        "x1",
        ("+4930111", GW, "10.0.0.1:20004"),
        ("7777", "10.0.3.4", "10.0.3.4:32000"),
        "7777",
        "7777",
        "",
        "",
    );
    assert!(lab.hits("10.0.3.4:32000", "10.0.0.1:20004").is_empty());
}

#[test]
fn a_forwarded_call_belongs_to_the_agent_who_answers_not_the_one_in_to_or_diversion() {
    let mut lab = Lab::new();
    // A call for 5001 forwarded (all calls, busy, no answer: the same shape) to 5002's phone:
    // the Request-URI names 5002, To and Diversion still name 5001.
    lab.call(
        0.0,
        "fwd",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("5002", PHONE_B, "10.0.1.2:30000"),
        "5002",
        "5001",
        "Diversion: <sip:5001@pbx>;reason=no-answer\r\nHistory-Info: <sip:5001@pbx>;index=1\r\n",
        "",
    );
    assert_eq!(
        lab.hits("10.0.1.2:30000", "10.0.0.1:20000"),
        vec![(1, Direction::FromAgent)]
    );
    assert_eq!(lab.bindings.of_agent(0).count(), 0, "5001 never talked");
}

#[test]
fn a_hunted_call_through_a_proxy_belongs_to_the_answering_hop() {
    let mut lab = Lab::new();
    let offer = sdp(GW, 20000, "sendrecv");
    // The gateway sends the INVITE to the hunt pilot 6000 at the proxy; the proxy forwards it
    // (same Call-ID) to 5002's phone; 5002 answers.
    for (src, dst, ruri) in [
        (GW, PBX, "INVITE sip:6000@pbx SIP/2.0"),
        (PBX, PHONE_B, "INVITE sip:5002@10.0.1.2 SIP/2.0"),
    ] {
        lab.feed(
            0.0,
            src,
            dst,
            Msg {
                start: ruri,
                cid: "hunt",
                from: ("+4930111", "f"),
                to: ("6000", ""),
                cseq: "1 INVITE",
                extra: "",
                body: &offer,
            },
        );
    }
    let answer = sdp(PHONE_B, 30000, "sendrecv");
    for (src, dst) in [(PHONE_B, PBX), (PBX, GW)] {
        lab.feed(
            0.2,
            src,
            dst,
            Msg {
                start: "SIP/2.0 200 OK",
                cid: "hunt",
                from: ("+4930111", "f"),
                to: ("6000", "t"),
                cseq: "1 INVITE",
                extra: "Contact: <sip:phoneb@10.0.1.2>\r\n",
                body: &answer,
            },
        );
    }
    assert_eq!(
        lab.calls.call(0).unwrap().request_uri,
        "sip:5002@10.0.1.2",
        "the Request-URI that reached the answering phone"
    );
    assert_eq!(
        lab.hits("10.0.0.1:20000", "10.0.1.2:30000"),
        vec![(1, Direction::ToAgent)]
    );
}

#[test]
fn the_answers_asserted_identity_and_contact_name_who_answered() {
    let mut lab = Lab::new();
    // Sent to a pilot the proxy owns; 5002 answers, its 200 OK asserts it.
    lab.call(
        0.0,
        "pai",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("6000", PBX, "10.0.0.9:30000"),
        "6000",
        "6000",
        "",
        "P-Asserted-Identity: <sip:5002@pbx>\r\n",
    );
    assert_eq!(lab.hits("10.0.0.9:30000", "10.0.0.1:20000")[0].0, 1);
    // The Contact names the answering UA when nothing is asserted.
    lab.call(
        1.0,
        "contact",
        ("+4930111", GW, "10.0.0.1:20002"),
        ("6000", PBX, "10.0.0.9:30002"),
        "6000",
        "6000",
        "",
        "Contact: <sip:5001@10.0.1.1:5060>\r\n",
    );
    assert_eq!(lab.hits("10.0.0.9:30002", "10.0.0.1:20002")[0].0, 0);
}

#[test]
fn the_phone_that_answered_beats_a_b2bua_leg_that_names_the_first_target() {
    let mut lab = Lab::new();
    // A B2BUA forwards 5001's call to 5002: its leg to the gateway (Request-URI 5001, no
    // asserted identity) carries 5002's media; its leg to 5002's phone is answered by the
    // phone itself. The phone's claim on its endpoint wins.
    lab.call(
        0.0,
        "leg-b",
        ("+4930111", PBX, "10.0.0.1:20000"),
        ("5002", PHONE_B, "10.0.1.2:30000"),
        "5002",
        "5001",
        "Diversion: <sip:5001@pbx>\r\n",
        "",
    );
    let offer = sdp(GW, 20000, "sendrecv");
    let answer = sdp(PHONE_B, 30000, "sendrecv");
    lab.feed(
        0.0,
        GW,
        PBX,
        Msg {
            start: "INVITE sip:5001@pbx SIP/2.0",
            cid: "leg-gw",
            from: ("+4930111", "g"),
            to: ("5001", ""),
            cseq: "1 INVITE",
            extra: "",
            body: &offer,
        },
    );
    lab.feed(
        0.2,
        PBX,
        GW,
        Msg {
            start: "SIP/2.0 200 OK",
            cid: "leg-gw",
            from: ("+4930111", "g"),
            to: ("5001", "h"),
            cseq: "1 INVITE",
            extra: "",
            body: &answer,
        },
    );
    assert_eq!(
        lab.hits("10.0.0.1:20000", "10.0.1.2:30000"),
        vec![(1, Direction::ToAgent)]
    );
    let agents: Vec<usize> = lab.bindings.agents_of_call(1).collect();
    assert!(agents.is_empty(), "the shadowed claim lists nobody");
}

/// CUCM's consult transfer, as the SPAN sees it: the caller's dialog with CUCM (`d1`, To and
/// Request-URI name 5001), CUCM's leg to 5001's phone (`d2`), 5001's consult call to 5002
/// (`d3` phone -> CUCM, `d4` CUCM -> 5002's phone); on transfer CUCM re-INVITEs `d1` with
/// 5002's media and Remote-Party-ID, re-INVITEs `d4` with the gateway's media and the
/// caller's identity, and BYEs `d2` and `d3`.
#[test]
fn after_a_cucm_transfer_the_agent_who_left_hears_nothing_and_the_expert_one_conversation() {
    let mut lab = Lab::new();
    let (caller_ep, a_ep, a_consult_ep, b_ep) = (
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "10.0.1.1:30002",
        "10.0.1.2:30100",
    );
    // d1 and d2: the caller reaches 5001 through CUCM; media flows gateway <-> 5001's phone.
    // d1's answer carries 5001's media (CUCM passes it through).
    let gw_offer = sdp(GW, 20000, "sendrecv");
    let a_answer = sdp(PHONE_A, 30000, "sendrecv");
    lab.feed(
        0.0,
        GW,
        PBX,
        Msg {
            start: "INVITE sip:5001@pbx SIP/2.0",
            cid: "d1",
            from: ("+4930111", "f"),
            to: ("5001", ""),
            cseq: "1 INVITE",
            extra: "",
            body: &gw_offer,
        },
    );
    lab.call(
        0.1,
        "d2",
        ("+4930111", PBX, caller_ep),
        ("5001", PHONE_A, a_ep),
        "5001",
        "5001",
        "",
        "",
    );
    lab.feed(
        0.3,
        PBX,
        GW,
        Msg {
            start: "SIP/2.0 200 OK",
            cid: "d1",
            from: ("+4930111", "f"),
            to: ("5001", "t"),
            cseq: "1 INVITE",
            extra: "",
            body: &a_answer,
        },
    );
    assert_eq!(lab.hits(caller_ep, a_ep), vec![(0, Direction::ToAgent)]);
    assert_eq!(
        lab.bindings.of_agent(0).count(),
        1,
        "d1 and d2 are one conversation of 5001's"
    );
    let key = match lab.bindings.of_agent(0).next().unwrap().source {
        Source::Sip(k) => k,
        other => panic!("{other:?}"),
    };
    // The consult: 5001's phone calls 5002 through CUCM (d3), CUCM calls 5002's phone (d4,
    // From 5001, 5001's consult media).
    lab.call(
        5.0,
        "d3",
        ("5001", PHONE_A, a_consult_ep),
        ("5002", PBX, b_ep),
        "5002",
        "5002",
        "",
        "",
    );
    lab.call(
        5.0,
        "d4",
        ("5001", PBX, a_consult_ep),
        ("5002", PHONE_B, b_ep),
        "5002",
        "5002",
        "",
        "",
    );
    let mut consult = lab.hits(a_consult_ep, b_ep);
    consult.sort_by_key(|h| h.0);
    assert_eq!(
        consult,
        vec![(0, Direction::FromAgent), (1, Direction::ToAgent)],
        "an agent-to-agent consult is both agents' conversation"
    );
    // Transfer: d1 re-INVITEd to 5002's media with 5002's identity; d4 re-INVITEd to the
    // gateway's media with the caller's identity; d2 and d3 end.
    let b_media = sdp(PHONE_B, 30100, "sendrecv");
    lab.feed(
        10.0,
        PBX,
        GW,
        Msg {
            start: "INVITE sip:+4930111@gw SIP/2.0",
            cid: "d1",
            from: ("5001", "t"),
            to: ("+4930111", "f"),
            cseq: "101 INVITE",
            extra: "Remote-Party-ID: \"Expert\" <sip:5002@pbx>;party=called;screen=yes\r\n",
            body: &b_media,
        },
    );
    let gw_media = sdp(GW, 20000, "sendrecv");
    lab.feed(
        10.0,
        PBX,
        PHONE_B,
        Msg {
            start: "INVITE sip:5002@10.0.1.2 SIP/2.0",
            cid: "d4",
            from: ("5001", "f"),
            to: ("5002", "t"),
            cseq: "2 INVITE",
            extra: "P-Asserted-Identity: <sip:+4930111@gw>\r\n",
            body: &gw_media,
        },
    );
    lab.bye(10.1, "d2", PBX, PHONE_A);
    lab.bye(10.1, "d3", PBX, PHONE_A);
    // 5001's conversations ended; the caller and the expert are 5002's, as one conversation
    // (the consult's), which 5001's endpoints no longer reach.
    let ended = lab.ended();
    assert!(ended.contains(&(0, key)), "{ended:?}");
    assert!(ended.iter().all(|e| e.0 == 0), "{ended:?}");
    assert_eq!(lab.hits(caller_ep, b_ep), vec![(1, Direction::ToAgent)]);
    assert_eq!(lab.hits(b_ep, caller_ep), vec![(1, Direction::FromAgent)]);
    let b: Vec<&Binding> = lab.bindings.of_agent(1).collect();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        b[0].source,
        Source::Sip(2),
        "the consult's conversation goes on"
    );
    assert!(lab
        .bindings
        .of_agent(0)
        .all(|b| b.dialogs.is_empty() && b.expires.is_some()));
    lab.bindings
        .handle_timeout(Timestamp::from_nanos(13_000_000_000));
    assert_eq!(lab.bindings.of_agent(0).count(), 0);
}

#[test]
fn a_hold_re_invite_naming_the_same_agent_in_e164_keeps_the_binding() {
    let mut lab = Lab::new();
    lab.call(
        0.0,
        "h",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("5001", PHONE_A, "10.0.1.1:30000"),
        "5001",
        "5001",
        "",
        "",
    );
    let hold = sdp(PHONE_A, 30000, "sendonly");
    lab.feed(
        3.0,
        PHONE_A,
        GW,
        Msg {
            start: "INVITE sip:+4930111@gw SIP/2.0",
            cid: "h",
            from: ("5001", "t"),
            to: ("+4930111", "f"),
            cseq: "2 INVITE",
            extra: "Remote-Party-ID: <sip:+49301235001@pbx>;party=called\r\n",
            body: &hold,
        },
    );
    assert_eq!(lab.hits("10.0.0.1:20000", "10.0.1.1:30000")[0].0, 0);
    assert!(lab.ended().is_empty());
}

#[test]
fn an_explicit_bind_never_takes_another_agents_call() {
    let mut lab = Lab::new();
    lab.call(
        0.0,
        "c1",
        ("+4930111", GW, "10.0.0.1:20000"),
        ("5001", PHONE_A, "10.0.1.1:30000"),
        "5001",
        "5001",
        "",
        "",
    );
    let t = Timestamp::from_nanos(1_000_000_000);
    // Agent 2 explicitly bound to both ends of agent 1's call (the far end, and the agent's
    // own endpoint): agent 1 keeps both directions, agent 2 gets nothing of it.
    lab.bindings.bind(t, 1, a("10.0.0.1:20000"), None);
    lab.bindings.bind(t, 1, a("10.0.1.1:30000"), None);
    assert_eq!(
        lab.hits("10.0.0.1:20000", "10.0.1.1:30000"),
        vec![(0, Direction::ToAgent)]
    );
    assert_eq!(
        lab.hits("10.0.1.1:30000", "10.0.0.1:20000"),
        vec![(0, Direction::FromAgent)]
    );
    // Nor a static phone's traffic.
    lab.bindings.bind(t, 1, a("10.9.9.9:4000"), None);
    lab.bindings.bind(t, 1, a("10.0.0.5:4000"), None);
    assert_eq!(
        lab.hits("10.0.0.5:4000", "10.9.9.9:4000"),
        vec![(2, Direction::ToAgent)]
    );
    // Where no other agent is involved, the explicit bind works.
    assert_eq!(
        lab.hits("10.0.0.5:4000", "10.0.7.7:9"),
        vec![(1, Direction::FromAgent)]
    );
}

#[test]
fn an_agent_placing_a_call_is_bound_on_the_caller_side_and_placed_the_call() {
    let mut lab = Lab::new();
    lab.call(
        0.0,
        "out",
        ("5001", PHONE_A, "10.0.1.1:30000"),
        ("+4930111", GW, "10.0.0.1:20000"),
        "+4930111",
        "+4930111",
        "",
        "",
    );
    assert_eq!(
        lab.hits("10.0.1.1:30000", "10.0.0.1:20000"),
        vec![(0, Direction::FromAgent)]
    );
    assert!(lab.bindings.placed_by_agent(0, 0));
}

#[test]
fn same_number_accepts_an_extension_inside_its_e164_form_only() {
    assert!(same_number("5001", "+49301235001"));
    assert!(same_number("+4930111", "4930111"));
    assert!(!same_number("5001", "5002"));
    assert!(!same_number("01", "+4930101"), "too short to tell");
    assert!(!same_number("", ""));
}
