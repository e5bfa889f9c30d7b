//! Arbitrary bytes as a stream of control-plane frames: check/parse never panic, a parsed frame
//! re-encodes to something that parses to the same frame, a frame that is a request survives
//! `Request::to_frame` and back, and a control plane fed the frames from three sessions (two
//! addresses), with every password check answered, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silentmon::binding::Agent;
use silentmon::config::{AgentSettings, Supervisor};
use silentmon::control::frame::{check, parse};
use silentmon::control::plane::{ControlPlane, Directory, SessionLimits};
use silentmon::control::request::Request;
use silentmon::security::lockout::LockoutConfig;
use silentmon::time::{Span, Timestamp};

fn plane() -> ControlPlane {
    let agent = AgentSettings {
        agent: Agent {
            id: "5001".into(),
            extension: "5001".into(),
            mobile_number: None,
            phone_ips: vec![],
        },
        team: Some("blue".into()),
        password_hash: None,
        warn_if_silent_monitored: true,
    };
    ControlPlane::new(Directory {
        agents: vec![agent],
        supervisors: vec![Supervisor {
            id: "s1".into(),
            teams: vec!["blue".into()],
            password_hash: None,
            certificate: "s1".into(),
        }],
        monitor_password_hash: None,
        passwordless: true,
        lockout: LockoutConfig::default(),
        client_timeout: Span::from_secs(15),
        server_heartbeat: Span::from_secs(60),
        monitor_service: None,
        limits: SessionLimits::default(),
    })
    .with_key_source(Box::new(|| "k".into()))
}

fuzz_target!(|data: &[u8]| {
    let mut p = plane();
    let t0 = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let sessions = [
        p.connect(t0, "10.0.0.1:1".parse().unwrap()),
        p.connect(t0, "10.0.0.1:2".parse().unwrap()),
        p.connect(t0, "10.0.0.2:1".parse().unwrap()),
    ];
    let mut rest = data;
    let mut n = 0usize;
    loop {
        match parse(rest, 4096) {
            Ok((frame, used)) => {
                assert_eq!(check(rest, 4096), Ok(used));
                let mut again = Vec::new();
                frame.encode(&mut again);
                let (back, len) = parse(&again, usize::MAX).expect("re-encoded frame parses");
                assert_eq!(len, again.len());
                assert_eq!(back, frame);
                if let Ok(request) = Request::parse(&frame) {
                    assert_eq!(Request::parse(&request.to_frame()), Ok(request));
                }
                let now = t0 + Span::from_millis(n as i64 * 100);
                p.handle_frame(now, sessions[n % 3], &frame);
                while let Some(v) = p.poll_verification() {
                    p.handle_verified(now, v.ticket, n % 2 == 0);
                }
                p.handle_timeout(now);
                while p.poll_transmit().is_some() || p.poll_action().is_some() {}
                while p.poll_close().is_some() {}
                n += 1;
                rest = &rest[used..];
            }
            Err(_) => break,
        }
    }
});
