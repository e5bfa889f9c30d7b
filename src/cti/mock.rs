//! A mock CTI Server for tests and the demo (`capgen cti-server`, `silentmon demo --cti`): the
//! server side of the protocol playing a scenario (agents' states, calls, RTP events with the
//! media endpoints of a generated capture), with failures on demand.
//!
//! Per connection: it reads OPEN_REQ, answers OPEN_CONF in the version the client asked for
//! (or FAILURE_CONF while `fail_open` lasts), sends a SYSTEM_EVENT (peripheral online), then
//! the scenario's events at their times from the open; it answers HEARTBEAT_REQ (until `deaf`
//! says stop) and CLOSE_REQ. Faults: drop the connection after a time, stop answering
//! heartbeats, send garbage (random bytes, a length of 0 or 2^32-1, a cut floating field).
//! Not a simulator of a PG: a script player, byte-exact to the layouts of docs/CTI.md.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::wire::{self, msg, nul, tag, Encoder};

/// One event of a scenario, at `at_ms` after the session opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioEvent {
    /// Milliseconds after OPEN_CONF.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub what: What,
}

/// What a scenario event sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum What {
    /// AGENT_STATE_EVENT.
    AgentState {
        /// AgentID.
        agent: String,
        /// AgentExtension and AgentInstrument.
        extension: String,
        /// AgentState (3 available, 4 talking, ...).
        state: u16,
    },
    /// BEGIN_CALL_EVENT.
    BeginCall {
        /// ConnectionCallID.
        call: u32,
        /// ConnectionDeviceID (the agent's extension).
        device: String,
        /// CallType.
        call_type: u16,
        /// ANI.
        ani: String,
        /// DNIS.
        dnis: String,
    },
    /// RTP_STARTED_EVENT.
    RtpStarted(RtpFields),
    /// RTP_STOPPED_EVENT.
    RtpStopped(RtpFields),
    /// END_CALL_EVENT.
    EndCall {
        /// ConnectionCallID.
        call: u32,
        /// ConnectionDeviceID.
        device: String,
    },
}

/// The fields of an RTP event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RtpFields {
    /// ConnectionCallID.
    pub call: u32,
    /// ConnectionDeviceID.
    pub device: String,
    /// AgentID.
    pub agent: String,
    /// 0 input, 1 output.
    pub direction: u16,
    /// ClientAddress.
    pub address: String,
    /// ClientPort.
    pub port: u32,
    /// SendingAddress.
    pub sending_address: String,
    /// SendingPort.
    pub sending_port: u32,
}

/// A scenario: events in time order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The PeripheralID the events carry.
    pub peripheral: u32,
    /// The events.
    pub events: Vec<ScenarioEvent>,
}

impl Scenario {
    /// The same scenario played `speed` times faster (a replay sped up alike).
    pub fn sped_up(mut self, speed: f64) -> Scenario {
        for e in &mut self.events {
            e.at_ms = (e.at_ms as f64 / speed) as u64;
        }
        self
    }
}

/// Garbage the mock can send.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// Random bytes.
    Random,
    /// A message length of 2^32-1.
    Huge,
    /// A zero-length body of a type with a fixed part.
    Zero,
    /// A floating field whose length runs past its message.
    Truncated,
}

/// Failures on demand (and what the mock tells its operator).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Print a line on stdout as each scenario event is sent (`sent vVERSION EVENT`), just
    /// before its bytes are written: tests time the feed from it.
    pub print_sent: bool,
    /// Answer the first N OPEN_REQs with FAILURE_CONF (E_CTI_INVALID_PASSWORD).
    pub fail_open: u32,
    /// Stop answering heartbeats this long after the open.
    pub deaf_after: Option<Duration>,
    /// Drop the connection this long after the open.
    pub drop_after: Option<Duration>,
    /// Send garbage this long after the open.
    pub garbage_after: Option<(Duration, Garbage)>,
}

/// Serves `scenario` on `listener` to every client, until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    scenario: Arc<Scenario>,
    faults: Arc<Faults>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let refused = Arc::new(AtomicU32::new(0));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => {
                let Ok((s, _)) = r else { continue };
                let (scenario, faults, refused) = (scenario.clone(), faults.clone(), refused.clone());
                tokio::spawn(async move {
                    if let Err(e) = session(s, &scenario, &faults, &refused).await {
                        tracing::debug!(error = %e, "mock CTI session ended");
                    }
                });
            }
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Reads one whole message: (type, body).
async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<(u32, Vec<u8>)>> {
    loop {
        match wire::check(buf) {
            Ok(n) => {
                let t = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let body = buf[wire::HEADER_LEN..n].to_vec();
                buf.drain(..n);
                return Ok(Some((t, body)));
            }
            Err(wire::Error::Incomplete) => {}
            Err(e) => return Err(e.to_string().into()),
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn u32_at(body: &[u8], at: usize) -> u32 {
    body.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

async fn session(
    mut s: TcpStream,
    scenario: &Scenario,
    faults: &Faults,
    refused: &AtomicU32,
) -> Result<()> {
    let mut buf = Vec::new();
    let Some((t, open)) = read_message(&mut s, &mut buf).await? else {
        return Ok(());
    };
    if t != msg::OPEN_REQ {
        return Err("the first message was not OPEN_REQ".into());
    }
    let (invoke, version) = (u32_at(&open, 0), u32_at(&open, 4));
    let e = Encoder::new(version);
    if refused.load(Ordering::Relaxed) < faults.fail_open {
        refused.fetch_add(1, Ordering::Relaxed);
        let mut fixed = invoke.to_be_bytes().to_vec();
        fixed.extend_from_slice(&36u32.to_be_bytes());
        s.write_all(&e.message(msg::FAILURE_CONF, &fixed, &[]))
            .await?;
        return Ok(());
    }
    s.write_all(&open_conf(&e, version, invoke)).await?;
    s.write_all(&system_event(&e, scenario.peripheral)).await?;
    play(&mut s, &mut buf, &e, version, scenario, faults).await
}

/// Plays the scenario and answers the client until it closes or a fault ends it.
async fn play(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    e: &Encoder,
    version: u32,
    scenario: &Scenario,
    faults: &Faults,
) -> Result<()> {
    let opened = Instant::now();
    let mut next = 0;
    let far = Duration::from_secs(86_400);
    let mut garbage = faults.garbage_after;
    loop {
        let due = scenario
            .events
            .get(next)
            .map_or(far, |ev| Duration::from_millis(ev.at_ms));
        let drop_at = faults.drop_after.unwrap_or(far);
        let garbage_at = garbage.map_or(far, |g| g.0);
        let wake = opened + due.min(drop_at).min(garbage_at);
        let mut chunk = [0u8; 4096];
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                let elapsed = opened.elapsed();
                if elapsed >= drop_at {
                    return Ok(());
                }
                if let Some((at, kind)) = garbage.filter(|g| elapsed >= g.0) {
                    let _ = at;
                    s.write_all(&garbage_bytes(e, kind)).await?;
                    garbage = None;
                    continue;
                }
                while let Some(ev) = scenario.events.get(next).filter(|ev| Duration::from_millis(ev.at_ms) <= elapsed) {
                    if faults.print_sent {
                        println!("sent v{version} {:?}", ev.what);
                    }
                    s.write_all(&event(e, version, scenario.peripheral, &ev.what)).await?;
                    next += 1;
                }
            }
            n = s.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(len) = wire::check(buf) {
                    let t = u32_at(buf, 4);
                    let invoke = u32_at(buf, wire::HEADER_LEN);
                    buf.drain(..len);
                    let deaf = faults.deaf_after.is_some_and(|d| opened.elapsed() >= d);
                    match t {
                        msg::HEARTBEAT_REQ if !deaf => {
                            s.write_all(&e.message(msg::HEARTBEAT_CONF, &invoke.to_be_bytes(), &[])).await?;
                        }
                        msg::CLOSE_REQ => {
                            s.write_all(&e.message(msg::CLOSE_CONF, &invoke.to_be_bytes(), &[])).await?;
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// OPEN_CONF with the fixed part of `version` (26, 30 or 32 bytes).
pub fn open_conf(e: &Encoder, version: u32, invoke: u32) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [invoke, wire::service::ALL_EVENTS, 1, 0, 0] {
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&1u16.to_be_bytes()); // PeripheralOnline
    f.extend_from_slice(&17u16.to_be_bytes()); // PT_ENTERPRISE_AGENT
    f.extend_from_slice(&0u16.to_be_bytes()); // AgentState
    if version >= 19 {
        f.extend_from_slice(&0i32.to_be_bytes()); // DepartmentID
    }
    if version >= 24 {
        f.extend_from_slice(&1u16.to_be_bytes()); // SessionType: active
    }
    e.message(msg::OPEN_CONF, &f, &[])
}

/// SYSTEM_EVENT: peripheral `peripheral` online.
pub fn system_event(e: &Encoder, peripheral: u32) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [0u32, 0, 3, peripheral, 0, 0] {
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&0u16.to_be_bytes());
    e.message(msg::SYSTEM_EVENT, &f, &[])
}

/// One scenario event as its message.
pub fn event(e: &Encoder, version: u32, peripheral: u32, what: &What) -> Vec<u8> {
    let mut f = Vec::new();
    let put32 = |f: &mut Vec<u8>, v: u32| f.extend_from_slice(&v.to_be_bytes());
    let put16 = |f: &mut Vec<u8>, v: u16| f.extend_from_slice(&v.to_be_bytes());
    match what {
        What::AgentState {
            agent,
            extension,
            state,
        } => {
            put32(&mut f, 0);
            put32(&mut f, peripheral);
            put32(&mut f, 0); // SessionID
            put16(&mut f, 17);
            put16(&mut f, *state); // SkillGroupState
            put32(&mut f, 0); // StateDuration
            put32(&mut f, 1);
            put32(&mut f, 1);
            put16(&mut f, 0);
            put16(&mut f, *state); // AgentState, at 30
            put16(&mut f, 0); // EventReasonCode
            put32(&mut f, 1); // MRDID
            put32(&mut f, 0);
            put16(&mut f, 1);
            put32(&mut f, 1);
            put32(&mut f, 0);
            put32(&mut f, 1);
            put16(&mut f, 0); // NumFltSkillGroups
            if version >= 19 {
                put32(&mut f, 0); // DepartmentID
            }
            let (id, ext) = (nul(agent), nul(extension));
            e.message(
                msg::AGENT_STATE,
                &f,
                &[
                    (tag::AGENT_ID, &id),
                    (tag::AGENT_EXTENSION, &ext),
                    (tag::AGENT_INSTRUMENT, &ext),
                ],
            )
        }
        What::BeginCall {
            call,
            device,
            call_type,
            ani,
            dnis,
        } => {
            put32(&mut f, 0);
            put32(&mut f, peripheral);
            put16(&mut f, 17);
            put16(&mut f, 0);
            put16(&mut f, 0);
            put16(&mut f, 0);
            put16(&mut f, *call_type); // at 16
            put16(&mut f, 0);
            put32(&mut f, *call); // at 20
            put16(&mut f, 0);
            let (d, a, n) = (nul(device), nul(ani), nul(dnis));
            e.message(
                msg::BEGIN_CALL,
                &f,
                &[(tag::CONNECTION_DEVID, &d), (tag::ANI, &a), (tag::DNIS, &n)],
            )
        }
        What::EndCall { call, device } => {
            put32(&mut f, 0);
            put32(&mut f, peripheral);
            put16(&mut f, 17);
            put16(&mut f, 0);
            put32(&mut f, *call); // at 12
            let d = nul(device);
            e.message(msg::END_CALL, &f, &[(tag::CONNECTION_DEVID, &d)])
        }
        What::RtpStarted(r) | What::RtpStopped(r) => {
            rtp(e, peripheral, matches!(what, What::RtpStarted(_)), r)
        }
    }
}

fn rtp(e: &Encoder, peripheral: u32, started: bool, r: &RtpFields) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&peripheral.to_be_bytes());
    f.extend_from_slice(&r.port.to_be_bytes()); // ClientPort, at 8
    f.extend_from_slice(&r.direction.to_be_bytes()); // at 12
    if started {
        f.extend_from_slice(&0u16.to_be_bytes()); // RTPType audio
        f.extend_from_slice(&0u32.to_be_bytes()); // BitRate
        f.extend_from_slice(&0u16.to_be_bytes()); // EchoCancellation
        f.extend_from_slice(&20u32.to_be_bytes()); // PacketSize
        f.extend_from_slice(&3u16.to_be_bytes()); // PayloadType: G.711 u-law 64k
    }
    f.extend_from_slice(&0u16.to_be_bytes()); // ConnectionDeviceIDType
    f.extend_from_slice(&r.call.to_be_bytes());
    let (d, addr, agent, send) = (
        nul(&r.device),
        nul(&r.address),
        nul(&r.agent),
        nul(&r.sending_address),
    );
    let port = r.sending_port.to_be_bytes();
    let kind = if started {
        msg::RTP_STARTED
    } else {
        msg::RTP_STOPPED
    };
    e.message(
        kind,
        &f,
        &[
            (tag::CONNECTION_DEVID, &d),
            (tag::CLIENT_ADDRESS, &addr),
            (tag::AGENT_ID, &agent),
            (tag::SENDING_ADDRESS, &send),
            (tag::SENDING_PORT, &port),
        ],
    )
}

fn garbage_bytes(e: &Encoder, kind: Garbage) -> Vec<u8> {
    match kind {
        Garbage::Random => {
            // A fixed pseudo-random run (deterministic: a test can be repeated).
            let mut x: u32 = 0x9E37_79B9;
            (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect()
        }
        Garbage::Huge => {
            let mut v = u32::MAX.to_be_bytes().to_vec();
            v.extend_from_slice(&msg::AGENT_STATE.to_be_bytes());
            v
        }
        Garbage::Zero => e.message(msg::AGENT_STATE, &[], &[]),
        Garbage::Truncated => {
            let mut m = e.message(
                msg::END_CALL,
                &[0u8; 16],
                &[(tag::CONNECTION_DEVID, b"6001\0")],
            );
            let n = m.len();
            // The field's length byte(s) now say more than the message holds.
            m[n - 6] = 0x7F;
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cti::wire::{decode, Error, Message};

    fn decoded(version: u32, what: &What) -> Message {
        let bytes = event(&Encoder::new(version), version, 5000, what);
        let (m, n, skipped) = decode(&bytes, version).unwrap();
        assert_eq!((n, skipped.fields), (bytes.len(), 0), "{what:?}");
        m
    }

    #[test]
    fn what_the_mock_sends_decodes_to_what_the_scenario_says_in_both_field_widths() {
        let r = RtpFields {
            call: 1000,
            device: "5001".into(),
            agent: "5001".into(),
            direction: 1,
            address: "10.2.0.1".into(),
            port: 30000,
            sending_address: "10.1.0.1".into(),
            sending_port: 20000,
        };
        for v in [19, 24] {
            let state = What::AgentState {
                agent: "a1".into(),
                extension: "5001".into(),
                state: 4,
            };
            match decoded(v, &state) {
                Message::AgentState {
                    peripheral: 5000,
                    state: 4,
                    agent,
                    ..
                } => assert_eq!(
                    (agent.id.as_deref(), agent.extension.as_deref()),
                    (Some("a1"), Some("5001"))
                ),
                other => panic!("{other:?}"),
            }
            let begin = What::BeginCall {
                call: 7,
                device: "5001".into(),
                call_type: 9,
                ani: "+4930".into(),
                dnis: "555".into(),
            };
            match decoded(v, &begin) {
                Message::BeginCall {
                    call,
                    call_type: 9,
                    ani,
                    dnis,
                } => assert_eq!(
                    (call.id, call.device.as_str(), ani.as_str(), dnis.as_str()),
                    (7, "5001", "+4930", "555")
                ),
                other => panic!("{other:?}"),
            }
            match decoded(v, &What::RtpStarted(r.clone())) {
                Message::RtpStarted(rtp) => {
                    assert_eq!(
                        (rtp.call.id, rtp.direction, rtp.client_port),
                        (1000, 1, 30000)
                    );
                    assert_eq!(rtp.client_address, "10.2.0.1");
                    assert_eq!(rtp.sending_port, Some(20000));
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                decoded(v, &What::RtpStopped(r.clone())),
                Message::RtpStopped(_)
            ));
            let end = What::EndCall {
                call: 7,
                device: "5001".into(),
            };
            assert!(matches!(decoded(v, &end), Message::EndCall { call } if call.id == 7));
        }
    }

    #[test]
    fn each_kind_of_garbage_is_an_error_the_client_can_name() {
        let e = Encoder::new(24);
        assert!(matches!(
            decode(&garbage_bytes(&e, Garbage::Huge), 24),
            Err(Error::TooLarge(_))
        ));
        for kind in [Garbage::Zero, Garbage::Truncated] {
            assert!(
                matches!(
                    decode(&garbage_bytes(&e, kind), 24),
                    Err(Error::Malformed { .. })
                ),
                "{kind:?}"
            );
        }
        assert!(decode(&garbage_bytes(&e, Garbage::Random), 24).is_err());
    }

    #[test]
    fn scenarios_read_from_json() {
        let s: Scenario = serde_json::from_str(
            r#"{"peripheral": 5000, "events": [
                {"at_ms": 0, "type": "agent_state", "agent": "5001", "extension": "5001", "state": 3},
                {"at_ms": 40, "type": "end_call", "call": 1, "device": "5001"}]}"#,
        )
        .unwrap();
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[1].at_ms, 40);
    }
}
