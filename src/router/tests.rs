use super::*;

/// Ethernet / IPv4 / UDP frame from `src` to `dst` carrying `payload`.
pub(crate) fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = 28 + payload.len();
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0]);
    f.extend_from_slice(&[64, 17, 0, 0]);
    f.extend_from_slice(&s.ip().octets());
    f.extend_from_slice(&d.ip().octets());
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

pub(crate) fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut v = vec![0x80, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(160 * seq as u32).to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[fill; 160]);
    v
}

fn sip(start: &str, cid: &str, cseq: &str, to_tag: &str, sdp: Option<(&str, u16)>) -> Vec<u8> {
    let body = sdp
        .map(|(ip, port)| format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio {port} RTP/AVP 0\r\n"))
        .unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nFrom: <sip:+4930111@gw>;tag=f\r\nTo: <sip:5001@pbx>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(crate) fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn ms(v: i64) -> Timestamp {
    Timestamp::from_nanos(v * 1_000_000)
}

/// A router fed hand-made frames, recording what it forwards (also used by
/// `appliance::endings`).
pub(crate) struct Lab {
    pub(crate) r: Router,
    pub(crate) got: Vec<(MonitorId, Direction, u8)>,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let agents = vec![
            Agent {
                id: "5001".into(),
                extension: "5001".into(),
                mobile_number: None,
                phone_ips: vec![],
            },
            Agent {
                id: "5002".into(),
                extension: "5002".into(),
                mobile_number: None,
                phone_ips: vec!["10.0.9.9".parse().unwrap()],
            },
        ];
        Lab {
            r: Router::new(EngineConfig::default(), agents, Span::from_secs(2)),
            got: Vec::new(),
        }
    }

    pub(crate) fn frame(&mut self, t: i64, f: Vec<u8>) {
        let got = &mut self.got;
        self.r
            .handle_frame(ms(t), LinkType::Ethernet, &f, &mut |fw: Forward<'_>| {
                got.push((fw.monitor, fw.direction, fw.rtp[12]))
            });
    }

    /// A call from the gateway to 5001 with the agent's media at `agent_port`.
    pub(crate) fn call(&mut self, t: i64, cid: &str, agent_port: u16) {
        let (gw, ph) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
        self.frame(
            t,
            udp(
                gw,
                ph,
                &sip(
                    "INVITE sip:5001@pbx SIP/2.0",
                    cid,
                    "1 INVITE",
                    "",
                    Some(("10.0.0.1", 20000)),
                ),
            ),
        );
        self.frame(
            t,
            udp(
                ph,
                gw,
                &sip(
                    "SIP/2.0 200 OK",
                    cid,
                    "1 INVITE",
                    ";tag=t",
                    Some(("10.0.0.2", agent_port)),
                ),
            ),
        );
    }

    pub(crate) fn bye(&mut self, t: i64, cid: &str) {
        self.frame(
            t,
            udp(
                a("10.0.0.1:5060"),
                a("10.0.0.2:5060"),
                &sip("BYE sip:5001@pbx SIP/2.0", cid, "2 BYE", ";tag=t", None),
            ),
        );
    }

    pub(crate) fn media(&mut self, t: i64, agent_port: u16, seq: u16, fill: u8) {
        let agent = SocketAddr::new("10.0.0.2".parse().unwrap(), agent_port);
        self.frame(t, udp(agent, a("10.0.0.1:20000"), &rtp(seq, 7, fill)));
        self.frame(t, udp(a("10.0.0.1:20000"), agent, &rtp(seq, 8, fill + 1)));
    }

    pub(crate) fn notices(&mut self) -> Vec<Notice> {
        std::iter::from_fn(|| self.r.poll_notice()).collect()
    }

    /// The pending notices as `call X` / `ended X` / `non-acd X`.
    pub(crate) fn kinds(&mut self) -> Vec<String> {
        self.notices()
            .iter()
            .map(|n| match n {
                Notice::Call { call_id, .. } => format!("call {call_id}"),
                Notice::CallEnded { call_id, .. } => format!("ended {call_id}"),
                Notice::NonAcdCall { call_id, .. } => format!("non-acd {call_id}"),
                Notice::Interrupted { reason, .. } => format!("interrupted {reason}"),
            })
            .collect()
    }
}

#[test]
fn forwards_both_directions_of_the_monitored_agent_only() {
    let mut lab = Lab::new();
    lab.call(0, "c1", 30000);
    lab.media(10, 30000, 1, 10);
    assert!(lab.got.is_empty(), "nobody monitors yet");
    lab.r.add_monitor(1, 0);
    lab.media(30, 30000, 2, 20);
    assert_eq!(
        lab.got,
        vec![(1, Direction::FromAgent, 20), (1, Direction::ToAgent, 21)]
    );
    match &lab.notices()[..] {
        [Notice::Call {
            monitor: 1,
            call_id,
            started,
            ..
        }] => {
            assert_eq!(call_id, "c1");
            assert_eq!(*started, ms(0));
        }
        other => panic!("{other:?}"),
    }
    // Another agent's static phone traffic is not forwarded to monitor 1.
    lab.got.clear();
    lab.frame(
        40,
        udp(a("10.0.9.9:4000"), a("10.0.0.1:4002"), &rtp(1, 9, 0)),
    );
    lab.frame(
        60,
        udp(a("10.0.9.9:4000"), a("10.0.0.1:4002"), &rtp(2, 9, 0)),
    );
    assert!(lab.got.is_empty());
    lab.r.remove_monitor(1);
    lab.media(80, 30000, 3, 30);
    assert!(lab.got.is_empty());
    assert_eq!(lab.r.monitor_count(), 0);
}

#[test]
fn follows_the_agent_to_the_next_call_and_reports_call_changes() {
    let mut lab = Lab::new();
    lab.r.add_monitor(7, 0);
    lab.call(0, "c1", 30000);
    lab.media(20, 30000, 1, 10);
    lab.bye(100, "c1");
    lab.r.handle_timeout(ms(3000));
    lab.call(4000, "c2", 30010);
    lab.media(4020, 30010, 1, 40);
    let kinds = lab.kinds();
    assert_eq!(kinds, vec!["call c1", "ended c1", "call c2"]);
    assert_eq!(lab.got.len(), 4);
    assert_eq!(lab.got[2], (7, Direction::FromAgent, 40));
    // The view shows the agent's binding and both streams of the new call.
    let v = lab.r.view();
    assert!(v
        .bindings
        .iter()
        .any(|b| b.agent_id == "5001" && b.call_id.as_deref() == Some("c2")));
    assert!(v.flows.iter().any(
        |f| f.agent_id.as_deref() == Some("5001") && f.direction.as_deref() == Some("to_agent")
    ));
    assert!(v.calls.iter().any(|c| c.call_id == "c2" && c.to == "5001"));
    // After the call ended and its binding lingered out, the call is still the agent's
    // in the view (a supervisor still sees it) while the call table keeps it.
    lab.bye(5000, "c2");
    lab.r.handle_timeout(ms(9000));
    let v = lab.r.view();
    assert!(!v
        .bindings
        .iter()
        .any(|b| b.call_id.as_deref() == Some("c2")));
    let c2 = v.calls.iter().find(|c| c.call_id == "c2").unwrap();
    assert_eq!((c2.agent, c2.agent_id.as_deref()), (Some(0), Some("5001")));
}

#[test]
fn the_next_call_on_the_same_phone_port_within_the_linger_is_announced() {
    // What baresip does: the next call half a second after the BYE, on the same RTP port,
    // while the first call's binding still lingers.
    let mut lab = Lab::new();
    lab.r.add_monitor(7, 0);
    lab.call(0, "c1", 30000);
    lab.media(20, 30000, 1, 10);
    lab.bye(100, "c1");
    lab.call(600, "c2", 30000);
    lab.media(620, 30000, 2, 40);
    assert_eq!(lab.kinds(), ["call c1", "ended c1", "call c2"]);
    assert_eq!(lab.got.len(), 4);
}

#[test]
fn a_late_packet_after_the_bye_does_not_announce_the_ended_call_again() {
    let mut lab = Lab::new();
    lab.r.add_monitor(7, 0);
    lab.call(0, "c1", 30000);
    lab.media(20, 30000, 1, 2);
    lab.bye(100, "c1");
    // The gateway's last packet after the BYE (the binding lingers): forwarded, no notice.
    lab.media(101, 30000, 2, 2);
    let kinds = lab.kinds();
    assert_eq!(kinds, ["call c1", "ended c1"]);
    assert_eq!(lab.got.len(), 4);
}

#[test]
fn an_endpoint_that_attaches_late_hears_the_current_call_again() {
    let mut lab = Lab::new();
    lab.r.add_monitor(7, 0);
    lab.call(0, "c1", 30000);
    lab.media(20, 30000, 1, 2);
    lab.media(40, 30000, 2, 2);
    lab.r.reannounce(7);
    lab.media(60, 30000, 3, 2);
    let calls: Vec<String> = lab
        .notices()
        .iter()
        .filter_map(|n| match n {
            Notice::Call { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["c1", "c1"]);
}

/// An INVITE 5001 places itself (From the agent), answered by the gateway.
pub(crate) fn outbound(lab: &mut Lab, t: i64, cid: &str, agent_port: u16) {
    let (gw, ph) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
    let swap = |m: Vec<u8>| {
        String::from_utf8(m)
            .unwrap()
            .replace(
                "From: <sip:+4930111@gw>;tag=f",
                "From: <sip:5001@pbx>;tag=f",
            )
            .replace("To: <sip:5001@pbx>", "To: <sip:+4930111@gw>")
            .replace("INVITE sip:5001@pbx", "INVITE sip:+4930111@gw")
            .into_bytes()
    };
    let invite = swap(sip(
        "INVITE sip:5001@pbx SIP/2.0",
        cid,
        "1 INVITE",
        "",
        Some(("10.0.0.2", agent_port)),
    ));
    let ok = swap(sip(
        "SIP/2.0 200 OK",
        cid,
        "1 INVITE",
        ";tag=t",
        Some(("10.0.0.1", 20000)),
    ));
    lab.frame(t, udp(ph, gw, &invite));
    lab.frame(t, udp(gw, ph, &ok));
}

#[test]
fn stop_sm_non_acd_call_ends_the_monitor_on_a_call_the_agent_places() {
    // Off (the default): the agent's own call is monitored like any other.
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    outbound(&mut lab, 0, "out1", 30000);
    lab.media(20, 30000, 1, 10);
    assert_eq!(lab.got.len(), 2);
    assert!(matches!(&lab.notices()[..], [Notice::Call { .. }]));
    // On: the first packet of such a call ends the monitor instead; nothing is forwarded.
    let mut lab = Lab::new();
    lab.r.set_stop_on_non_acd_calls(true);
    lab.r.add_monitor(1, 0);
    lab.call(0, "acd1", 30000);
    lab.media(20, 30000, 1, 10);
    assert_eq!(lab.got.len(), 2, "a delivered call is heard");
    outbound(&mut lab, 100, "out1", 30010);
    lab.media(120, 30010, 1, 20);
    assert_eq!(lab.got.len(), 2, "the agent's own call is not");
    let n = lab.notices();
    assert!(
        matches!(&n[..], [Notice::Call { .. }, Notice::NonAcdCall { monitor: 1, call_id }] if call_id == "out1"),
        "{n:?}"
    );
    assert_eq!(lab.r.monitor_count(), 0);
    // The router does not end it: it waits, silent, for the control plane's removal.
    assert!(lab.r.has_monitor(1));
    lab.media(140, 30010, 2, 30);
    lab.bye(160, "out1");
    assert_eq!(lab.got.len(), 2);
    assert!(lab.notices().is_empty(), "nothing more is announced");
    lab.r.remove_monitor(1);
    assert!(!lab.r.has_monitor(1));
}

#[test]
fn an_agent_to_agent_call_reaches_both_agents_monitors_and_an_explicit_bind_nothing() {
    let mut lab = Lab::new();
    // 5001 (10.0.0.2:30000) calls 5002 (static phone 10.0.9.9): each monitor hears its own
    // agent as `FromAgent`.
    lab.r.add_monitor(1, 0);
    lab.r.add_monitor(2, 1);
    lab.call(0, "c1", 30000);
    let (a1, a2) = (a("10.0.0.2:30000"), a("10.0.9.9:4000"));
    lab.frame(20, udp(a1, a2, &rtp(1, 7, 3)));
    lab.frame(20, udp(a2, a1, &rtp(1, 8, 4)));
    lab.got.sort_by_key(|g| (g.0, g.2));
    assert_eq!(
        lab.got,
        vec![
            (1, Direction::FromAgent, 3),
            (1, Direction::ToAgent, 4),
            (2, Direction::ToAgent, 3),
            (2, Direction::FromAgent, 4),
        ]
    );
    // Agent 5002 explicitly bound to the far end of 5001's call from the gateway: 5002's
    // monitor gets nothing of it, 5001's everything.
    lab.got.clear();
    lab.r.bind(ms(30), 1, a("10.0.0.1:20000"), None);
    lab.media(40, 30000, 2, 10);
    assert_eq!(
        lab.got,
        vec![(1, Direction::FromAgent, 10), (1, Direction::ToAgent, 11)]
    );
}

#[test]
fn explicit_bind_and_two_monitors_of_one_agent() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.add_monitor(2, 0);
    lab.r.bind(ms(0), 0, a("10.5.5.5:7000"), Some(ms(10_000)));
    for seq in 1..4 {
        lab.frame(
            seq as i64 * 20,
            udp(a("10.5.5.5:7000"), a("10.6.6.6:8000"), &rtp(seq, 3, 5)),
        );
    }
    // Heuristic RTP: the stream is confirmed after a few packets; then each monitor gets it.
    assert!(lab.got.iter().any(|g| g.0 == 1) && lab.got.iter().any(|g| g.0 == 2));
    assert_eq!(lab.r.poll_timeout(), Some(ms(10_000)));
}

#[test]
fn a_peers_audio_reaches_the_agents_monitors_and_a_lost_peer_interrupts_them() {
    use crate::router::remote::{remote_stream, RemoteCall, RemotePacket};
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    lab.r.add_monitor(2, 0);
    lab.r.add_relay(9, 0); // serves another peer: not fed by peers
    lab.r.add_monitor(3, 1);
    let call = RemoteCall {
        peer: 2,
        appliance: "c",
        agent: 0,
        call_id: "rc1",
        payloads: PayloadMap::default(),
        started: ms(5),
    };
    lab.r.remote_call(&call);
    lab.r.remote_call(&call); // the same call again: announced once
    let n = lab.notices();
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(n.iter().all(|n| matches!(n,
        Notice::Call { monitor: 1 | 2, call_id, appliance: Some(a), .. } if call_id == "rc1" && a == "c")));
    let rtp = rtp(1, 7, 5);
    let packet = RemotePacket {
        peer: 2,
        agent: 0,
        direction: Direction::ToAgent,
        stream: 12,
        capture_ts: ms(6),
        rtp: &rtp,
    };
    let mut got = Vec::new();
    lab.r.remote_media(&packet, &mut |f: Forward<'_>| {
        got.push((f.monitor, f.stream, f.direction, f.rtp[12]))
    });
    let s = remote_stream(2, 12);
    assert_eq!(
        got,
        [(1, s, Direction::ToAgent, 5), (2, s, Direction::ToAgent, 5)]
    );
    assert!(s.0 >= 0x8000_0000, "never a local flow-table id");
    assert_ne!(remote_stream(2, 12), remote_stream(3, 12));
    // The peer goes: its listeners are told, the monitors stay.
    lab.r.peer_down(2, "c");
    let n = lab.notices();
    assert!(n.iter().all(|n| matches!(n,
        Notice::Interrupted { monitor: 1 | 2, reason } if reason.contains("appliance c"))));
    assert_eq!(n.len(), 2);
    assert_eq!(lab.r.monitors_of(0), [1, 2, 9]);
    // The agent's next call is local: announced to both, named with this appliance.
    lab.r.set_name(Some("a".into()));
    lab.call(100, "local1", 30000);
    lab.media(110, 30000, 1, 10);
    let n = lab.notices();
    assert!(
        n.iter()
            .filter(|n| matches!(n,
            Notice::Call { monitor: 1 | 2, appliance: Some(a), .. } if a == "a"))
            .count()
            == 2,
        "{n:?}"
    );
    lab.r.remote_call_ended(2, 0, "rc1");
    assert!(
        lab.notices().is_empty(),
        "that call is not the one heard any more"
    );
}

#[test]
fn encrypted_media_is_never_forwarded_and_the_monitor_is_told_once() {
    let mut lab = Lab::new();
    lab.r.add_monitor(1, 0);
    // No signalling: an explicit bind, and a payload that is uniform (SRTP).
    lab.r.bind(ms(0), 0, a("10.5.5.5:7000"), None);
    let mut x: u32 = 0x1234_5678;
    for seq in 1..10u16 {
        let mut p = rtp(seq, 3, 0);
        for b in &mut p[12..] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x >> 24) as u8;
        }
        lab.frame(
            i64::from(seq) * 20,
            udp(a("10.5.5.5:7000"), a("10.6.6.6:8000"), &p),
        );
    }
    assert!(lab.got.is_empty(), "not one packet: {:?}", lab.got);
    let told: Vec<String> = lab.kinds();
    assert_eq!(told, [format!("interrupted {ENCRYPTED}")]);
    // G.711 on the same bind is heard.
    for seq in 1..6u16 {
        lab.frame(
            400 + i64::from(seq) * 20,
            udp(a("10.5.5.5:7002"), a("10.6.6.6:8000"), &rtp(seq, 4, 0xFF)),
        );
    }
    lab.r.bind(ms(390), 0, a("10.5.5.5:7002"), None);
    for seq in 6..9u16 {
        lab.frame(
            400 + i64::from(seq) * 20,
            udp(a("10.5.5.5:7002"), a("10.6.6.6:8000"), &rtp(seq, 4, 0xFF)),
        );
    }
    assert!(!lab.got.is_empty());
}

/// A re-INVITE of call `cid` (CSeq `n`) whose offer and answer carry `sdp_gw` / `sdp_ph`.
fn reinvite(lab: &mut Lab, t: i64, cid: &str, n: u32, sdp_gw: &str, sdp_ph: &str) {
    let (gw, ph) = (a("10.0.0.1:5060"), a("10.0.0.2:5060"));
    for (src, dst, start, body) in [
        (gw, ph, "INVITE sip:5001@pbx SIP/2.0", sdp_gw),
        (ph, gw, "SIP/2.0 200 OK", sdp_ph),
    ] {
        let msg = format!(
            "{start}\r\nFrom: <sip:+4930111@gw>;tag=f\r\nTo: <sip:5001@pbx>;tag=t\r\nCall-ID: {cid}\r\nCSeq: {n} INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        lab.frame(t, udp(src, dst, msg.as_bytes()));
    }
}

fn t38(ip: &str, port: u16) -> String {
    format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio 0 RTP/AVP 0\r\nm=image {port} udptl t38\r\n")
}

fn audio(ip: &str, port: u16) -> String {
    format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio {port} RTP/AVP 0\r\n")
}

#[test]
fn a_call_switched_to_fax_forwards_nothing_tells_the_monitor_and_comes_back() {
    let mut lab = Lab::new();
    lab.call(0, "c1", 30000);
    lab.r.add_monitor(1, 0);
    lab.media(20, 30000, 1, 10);
    assert_eq!(lab.kinds(), ["call c1"]);
    reinvite(
        &mut lab,
        40,
        "c1",
        2,
        &t38("10.0.0.1", 20000),
        &t38("10.0.0.2", 30000),
    );
    assert_eq!(lab.kinds(), [format!("interrupted {FAX}")]);
    lab.got.clear();
    // UDPTL on the same ports, some of it looking like RTP (first byte 0x80), and a late RTP
    // packet of the old stream: nothing is forwarded.
    let agent = a("10.0.0.2:30000");
    for seq in 0..6u16 {
        let mut udptl = (0x7FFE + seq).to_be_bytes().to_vec();
        udptl.extend_from_slice(&[18, 0xC0, 0x01, seq as u8, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
        lab.frame(
            60 + i64::from(seq) * 20,
            udp(agent, a("10.0.0.1:20000"), &udptl),
        );
    }
    lab.media(200, 30000, 2, 30);
    assert!(lab.got.is_empty(), "{:?}", lab.got);
    assert_eq!(lab.r.engine().stats().fax_packets, 8);
    assert!(lab.kinds().is_empty(), "told once");
    // Back to voice: the call is announced again and heard.
    reinvite(
        &mut lab,
        300,
        "c1",
        3,
        &audio("10.0.0.1", 20000),
        &audio("10.0.0.2", 30000),
    );
    assert_eq!(lab.kinds(), ["call c1"]);
    lab.media(320, 30000, 3, 40);
    assert_eq!(
        lab.got,
        vec![(1, Direction::FromAgent, 40), (1, Direction::ToAgent, 41)]
    );
}

#[test]
fn a_packet_finds_its_agents_monitors_whatever_order_they_came_in() {
    let mut lab = Lab::new();
    for (id, agent) in [(1, 1), (2, 0), (3, 1), (4, 0), (5, 0)] {
        lab.r.add_monitor(id, agent);
    }
    lab.r.remove_monitor(4);
    let ids = |lab: &mut Lab, agent| -> Vec<MonitorId> {
        of_agent(&mut lab.r.monitors, agent)
            .iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(ids(&mut lab, 0), [2, 5]);
    assert_eq!(ids(&mut lab, 1), [1, 3]);
    assert!(ids(&mut lab, 7).is_empty());
    // 5002's static phone: every packet reaches 5002's two monitors, none of 5001's.
    // (Without SDP, RTP is recognised by its third packet.)
    for seq in 1..=3 {
        let t = 20 * i64::from(seq);
        lab.frame(
            t,
            udp(a("10.0.9.9:4000"), a("10.1.0.1:20000"), &rtp(seq, 1, 1)),
        );
    }
    let got: Vec<MonitorId> = lab.got.iter().map(|g| g.0).collect();
    assert_eq!(got, [1, 3]);
}
