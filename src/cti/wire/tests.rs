//! Byte-level vectors written from the layouts in ../shared/CTI-SERVER.md (sections 4-5 and
//! appendix A), not from this module's encoder.

use super::*;

/// Hex digits, ignoring spaces and `|`.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A message: header (length, type), then `body` hex.
fn framed(message: u32, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&message.to_be_bytes());
    v.extend_from_slice(&body);
    v
}

#[test]
fn open_req_is_the_documented_example() {
    // Appendix A: v24 OPEN_REQ, ALL_EVENTS, IdleTimeout 120, PeripheralID 0xFFFFFFFF,
    // CallMsgMask 0x0060E37D, AgentStateMask 0x3FFF, ClientID "spanmon", empty password.
    let want = hex(
        "0000003c 00000003 | 00000001 00000018 00000078 ffffffff 00000010 0060e37d 00003fff \
         00000000 00000000 00000000 00000000 | 0001 0008 7370616e6d6f6e00 | 0002 0000",
    );
    let got = Encoder::new(24).open_req(1, 120, 0xFFFF_FFFF, "spanmon", "");
    assert_eq!(got, want);
    // v19: the same with 1-byte tags and lengths.
    let v19 = Encoder::new(19).open_req(1, 120, 0xFFFF_FFFF, "spanmon", "");
    assert_eq!(
        &v19[v19.len() - 12..],
        &hex("01 08 7370616e6d6f6e00 02 00")[..]
    );
    assert_eq!(
        Encoder::new(24).heartbeat_req(7),
        hex("00000004 00000005 00000007")
    );
    assert_eq!(
        Encoder::new(24).close_req(8, 0),
        hex("00000008 00000007 00000008 00000000")
    );
}

#[test]
fn open_conf_fixed_part_grows_with_the_version() {
    // InvokeID 1, ServicesGranted 0x10, MonitorID 9, PGStatus 0, time, online, type 17,
    // AgentState 0 (26 bytes); + DepartmentID (v19: 30); + SessionType (v24: 32).
    let v18 = "00000001 00000010 00000009 00000000 5f5e1000 0001 0011 0000";
    let v19 = format!("{v18} 00000000");
    let v24 = format!("{v19} 0001");
    for (version, body) in [(18, v18.to_owned()), (19, v19), (24, v24.clone())] {
        let (m, n, _) = decode(&framed(msg::OPEN_CONF, &body), version).unwrap();
        assert_eq!(n, 8 + hex(&body).len());
        assert_eq!(
            m,
            Message::OpenConf {
                invoke_id: 1,
                services: 0x10,
                pg_status: 0,
                peripheral_online: true
            },
            "v{version}"
        );
    }
    // A v24 OPEN_CONF read as v18 leaves 6 bytes that are no floating field.
    assert!(matches!(
        decode(&framed(msg::OPEN_CONF, &v24), 18),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn agent_state_event_with_narrow_and_wide_fields() {
    // MonitorID 0, PeripheralID 5000, SessionID 0, PeripheralType 17, SkillGroupState 4,
    // StateDuration 12, SkillGroupNumber 1, SkillGroupID 2, SkillGroupPriority 0, AgentState 3
    // (available) at 30, EventReasonCode 0, MRDID 1, NumTasks 0, AgentMode 1, MaxTaskLimit 1,
    // ICMAgentID 5001, AgentAvailabilityStatus 1, NumFltSkillGroups 0, DepartmentID 0 (v19+).
    let fixed = "00000000 00001388 00000000 0011 0004 0000000c 00000001 00000002 0000 0003 0000 \
                 00000001 00000000 0001 00000001 00001389 00000001 0000 00000000";
    assert_eq!(hex(fixed).len(), 62);
    // AgentID "6001", AgentExtension "6001", AgentInstrument "6001", and tag 150 (duration).
    let narrow =
        format!("{fixed} 05 05 3630303100 04 05 3630303100 06 05 3630303100 96 04 0000000c");
    let wide = format!(
        "{fixed} 0005 0005 3630303100 0004 0005 3630303100 0006 0005 3630303100 0096 0004 0000000c"
    );
    let want = Message::AgentState {
        peripheral: 5000,
        state: 3,
        reason: 0,
        agent: AgentRef {
            id: Some("6001".into()),
            extension: Some("6001".into()),
            instrument: Some("6001".into()),
        },
    };
    for (version, body) in [(19, narrow), (24, wide)] {
        let (m, _, skipped) = decode(&framed(msg::AGENT_STATE, &body), version).unwrap();
        assert_eq!(m, want, "v{version}");
        assert_eq!(skipped.fields, 1, "the duration is skipped");
    }
    // AgentID long (194) needs the wide form.
    let long = format!("{fixed} 00c2 0005 3630303100");
    let (m, _, _) = decode(&framed(msg::AGENT_STATE, &long), 24).unwrap();
    assert!(matches!(m, Message::AgentState { agent, .. } if agent.id.as_deref() == Some("6001")));
}

#[test]
fn rtp_started_and_stopped() {
    // RTP_STARTED: MonitorID 0, PeripheralID 5000, ClientPort 30000, Direction 0 (input),
    // RTPType 0, BitRate 0, EchoCancellation 0, PacketSize 20, PayloadType 3 (G.711 u-law),
    // ConnectionDeviceIDType 0, ConnectionCallID 77 (34 bytes); ConnectionDeviceID "6001",
    // ClientAddress "10.2.0.1", AgentID "6001", SendingAddress "10.1.0.1", SendingPort 20000.
    let fixed = "00000000 00001388 00007530 0000 0000 00000000 0000 00000014 0003 0000 0000004d";
    assert_eq!(hex(fixed).len(), 34);
    let body = format!(
        "{fixed} 19 05 3630303100 51 09 31302e322e302e3100 05 05 3630303100 \
         7d 09 31302e312e302e3100 7e 04 00004e20"
    );
    let (m, _, skipped) = decode(&framed(msg::RTP_STARTED, &body), 19).unwrap();
    assert_eq!(skipped.fields, 0);
    assert_eq!(
        m,
        Message::RtpStarted(Rtp {
            call: CallRef {
                id: 77,
                device: "6001".into()
            },
            direction: 0,
            client_port: 30000,
            client_address: "10.2.0.1".into(),
            sending_address: "10.1.0.1".into(),
            sending_port: Some(20000),
            agent: AgentRef {
                id: Some("6001".into()),
                ..AgentRef::default()
            },
        })
    );
    // RTP_STOPPED: MonitorID, PeripheralID, ClientPort, Direction 1, ConnectionDeviceIDType,
    // ConnectionCallID 77 (20 bytes); v24 fields.
    let body = "00000000 00001388 00007530 0001 0000 0000004d 0051 0009 31302e322e302e3100";
    let (m, _, _) = decode(&framed(msg::RTP_STOPPED, body), 24).unwrap();
    let Message::RtpStopped(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (
            r.call.id,
            r.direction,
            r.client_port,
            r.client_address.as_str()
        ),
        (77, 1, 30000, "10.2.0.1")
    );
}

#[test]
fn calls_begin_establish_and_end() {
    // BEGIN_CALL: MonitorID, PeripheralID, PeripheralType 17, NumCTIClients 0, NumNamedVariables
    // 0, NumNamedArrays 0, CallType 1 (ACD in) at 16, ConnectionDeviceIDType 0,
    // ConnectionCallID 77 at 20, CalledPartyDisposition 0 (26); ANI "4930", DNIS "800".
    let body = "00000000 00001388 0011 0000 0000 0000 0001 0000 0000004d 0000 \
                0008 0005 3439333000 000a 0004 38303000 0019 0005 3630303100";
    let (m, _, _) = decode(&framed(msg::BEGIN_CALL, body), 24).unwrap();
    assert_eq!(
        m,
        Message::BeginCall {
            call: CallRef {
                id: 77,
                device: "6001".into()
            },
            call_type: 1,
            ani: "4930".into(),
            dnis: "800".into()
        }
    );
    // END_CALL: MonitorID, PeripheralID, PeripheralType, ConnectionDeviceIDType,
    // ConnectionCallID 77 (16).
    let (m, _, _) = decode(
        &framed(msg::END_CALL, "00000000 00001388 0011 0000 0000004d"),
        24,
    )
    .unwrap();
    assert_eq!(
        m,
        Message::EndCall {
            call: CallRef {
                id: 77,
                device: String::new()
            }
        }
    );
    // CALL_ESTABLISHED: 50 fixed bytes, ConnectionCallID at 12; AnsweringDeviceID (30).
    let fixed = format!("00000000 00001388 0011 0000 0000004d {}", "00".repeat(34));
    assert_eq!(hex(&fixed).len(), 50);
    let body = format!("{fixed} 1e 05 3630303100");
    let (m, _, skipped) = decode(&framed(msg::CALL_ESTABLISHED, &body), 19).unwrap();
    assert_eq!(
        m,
        Message::Call {
            kind: CallEventKind::Established,
            call: CallRef {
                id: 77,
                device: String::new()
            }
        }
    );
    assert_eq!(skipped.fields, 1, "the answering device is not read");
    // CALL_HELD: the call id at 12 is all that is read.
    let (m, _, _) = decode(
        &framed(
            msg::CALL_HELD,
            "00000000 00001388 0011 0000 0000004d 0003 0000 0000",
        ),
        24,
    )
    .unwrap();
    assert!(matches!(m, Message::Call { kind: CallEventKind::Held, call } if call.id == 77));
}

#[test]
fn failures_system_events_and_unknown_types() {
    // FAILURE_CONF: InvokeID 1, Status 36 (invalid password); the v24 table's variant
    // (InvokeID, USHORT, UINT) reads the UINT as the status.
    let (m, _, _) = decode(&framed(msg::FAILURE_CONF, "00000001 00000024"), 24).unwrap();
    assert_eq!(
        m,
        Message::FailureConf {
            invoke_id: 1,
            status: 36
        }
    );
    let (m, _, _) = decode(&framed(msg::FAILURE_CONF, "00000001 0011 00000024"), 24).unwrap();
    assert_eq!(
        m,
        Message::FailureConf {
            invoke_id: 1,
            status: 36
        }
    );
    // With the CCX Text field.
    let (m, _, _) = decode(
        &framed(msg::FAILURE_CONF, "00000001 00000001 07 03 786100"),
        19,
    )
    .unwrap();
    assert_eq!(
        m,
        Message::FailureConf {
            invoke_id: 1,
            status: 1
        }
    );
    let (m, _, _) = decode(&framed(msg::FAILURE_EVENT, "0000000f"), 24).unwrap();
    assert_eq!(m, Message::FailureEvent { status: 15 });
    // SYSTEM_EVENT: PGStatus 0, time, SystemEventID 3 (peripheral online), Arg1 5000.
    let body = "00000000 5f5e1000 00000003 00001388 00000000 00000000 0000";
    let (m, _, _) = decode(&framed(msg::SYSTEM_EVENT, body), 24).unwrap();
    assert_eq!(
        m,
        Message::SystemEvent {
            pg_status: 0,
            event: 3,
            arg1: 5000
        }
    );
    let (m, n, _) = decode(&framed(282, "0102"), 24).unwrap();
    assert_eq!((m, n), (Message::Other { message_type: 282 }, 10));
}

#[test]
fn bad_lengths_are_errors_and_nothing_panics() {
    assert_eq!(check(&hex("0000")), Err(Error::Incomplete));
    assert_eq!(
        check(&hex("00000004 00000006 0000")),
        Err(Error::Incomplete)
    );
    assert_eq!(
        check(&hex("ffffffff 00000006")),
        Err(Error::TooLarge(0xFFFF_FFFF))
    );
    // A zero-length body of a type that has a fixed part.
    assert!(matches!(
        decode(&hex("00000000 00000074"), 24),
        Err(Error::Malformed { message: 116, .. })
    ));
    // A floating field running past the body (declared 9 bytes, 3 there).
    let fixed = "00000000 00001388 00007530 0001 0000 0000004d";
    assert!(matches!(
        decode(
            &framed(msg::RTP_STOPPED, &format!("{fixed} 0051 0009 313030")),
            24
        ),
        Err(Error::Malformed { .. })
    ));
    // Every prefix and every byte flipped in a few messages: never a panic.
    let m = Encoder::new(24).open_req(1, 120, 5000, "spanmon", "pw");
    for cut in 0..m.len() {
        let _ = decode(&m[..cut], 24);
        let mut flipped = m.clone();
        flipped[cut] ^= 0xFF;
        let _ = decode(&flipped, 19);
        let _ = decode(&flipped, 24);
    }
}
