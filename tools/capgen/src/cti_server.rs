//! `capgen cti-server`: silentmon's mock CTI Server (`silentmon::cti::mock`) as a process, for
//! tests that kill it, and the scenario `capgen calls --cti-scenario` writes for a capture.
//!
//! A scenario's times count from the session's OPEN_CONF; the capture's from its first packet.
//! A test opens the session, then replays: the events then lead the packets by the gap, so
//! RTP_STARTED comes before the first packet and RTP_STOPPED a little before the last.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use silentmon::cti::mock::{self, Faults, Garbage, RtpFields, Scenario, ScenarioEvent, What};

use crate::calls::Call;

/// Arguments of `capgen cti-server`.
#[derive(clap::Args)]
pub struct CtiServerArgs {
    /// The scenario (JSON; `capgen calls --cti-scenario` writes one).
    #[arg(long)]
    scenario: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:42027")]
    listen: String,
    /// Refuse the first N OPEN_REQs with FAILURE_CONF (E_CTI_INVALID_PASSWORD).
    #[arg(long, default_value_t = 0)]
    fail_open: u32,
    /// Stop answering heartbeats this many ms after each open.
    #[arg(long)]
    deaf_after_ms: Option<u64>,
    /// Drop each connection this many ms after its open.
    #[arg(long)]
    drop_after_ms: Option<u64>,
    /// Send garbage this many ms after each open (the kind from --garbage).
    #[arg(long)]
    garbage_after_ms: Option<u64>,
    /// random | huge (a length of 2^32-1) | zero (an empty body with a fixed part due) |
    /// truncated (a floating field running past its message).
    #[arg(long, default_value = "random")]
    garbage: String,
    /// Print a line (`sent vVERSION EVENT`) as each scenario event is sent.
    #[arg(long)]
    print_sent: bool,
}

/// Serves the scenario until Ctrl-C or SIGTERM.
pub fn run(a: CtiServerArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.scenario)
        .with_context(|| format!("reading {}", a.scenario.display()))?;
    let scenario: Scenario = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a CTI scenario", a.scenario.display()))?;
    let faults = faults(&a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        println!(
            "mock CTI Server listening on {} ({} events)",
            listener.local_addr()?,
            scenario.events.len()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        mock::serve(listener, Arc::new(scenario), Arc::new(faults), stop).await;
        Ok(())
    })
}

fn faults(a: &CtiServerArgs) -> Result<Faults> {
    let kind = match a.garbage.as_str() {
        "random" => Garbage::Random,
        "huge" => Garbage::Huge,
        "zero" => Garbage::Zero,
        "truncated" => Garbage::Truncated,
        other => bail!("--garbage {other}: expected random, huge, zero or truncated"),
    };
    let ms = Duration::from_millis;
    Ok(Faults {
        print_sent: a.print_sent,
        fail_open: a.fail_open,
        deaf_after: a.deaf_after_ms.map(ms),
        drop_after: a.drop_after_ms.map(ms),
        garbage_after: a.garbage_after_ms.map(|t| (ms(t), kind)),
    })
}

/// The CTI Server's view of `calls`: each agent available, then per call BEGIN_CALL at the
/// call's setup, RTP_STARTED for both directions of the agent's phone and the agent talking
/// when its audio starts, RTP_STOPPED, END_CALL and available again when it ends. Call `i` is
/// ConnectionCallID 1000 + i on the agent's extension.
pub fn scenario(calls: &[Call], base_us: i64, ptime_us: i64, packets_per_call: u64) -> Scenario {
    let mut events = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let call = 1000 + i as u32;
        let ms = |us: i64| ((us - base_us).max(0) / 1000) as u64;
        let rtp_start = base_us + c.rtp_first_tick as i64 * ptime_us + c.rtp_phase_us;
        let rtp_end = rtp_start + packets_per_call as i64 * ptime_us;
        let (phone, caller) = (c.dirs[0].dst, c.dirs[0].src);
        let state = |at_ms, state| ScenarioEvent {
            at_ms,
            what: What::AgentState {
                agent: c.agent.clone(),
                extension: c.agent.clone(),
                state,
            },
        };
        let rtp = |direction| rtp_fields(call, &c.agent, direction, phone, caller);
        let at = |at_ms, what| ScenarioEvent { at_ms, what };
        events.push(state(0, 3));
        events.push(at(
            ms(c.sip_start_us),
            What::BeginCall {
                call,
                device: c.agent.clone(),
                call_type: 1,
                ani: c.caller.clone(),
                dnis: c.called_uri_user.clone(),
            },
        ));
        let started = ms(rtp_start).saturating_sub(40);
        events.push(at(started, What::RtpStarted(rtp(0))));
        events.push(at(started, What::RtpStarted(rtp(1))));
        events.push(state(started, 4));
        events.push(at(ms(rtp_end), What::RtpStopped(rtp(0))));
        events.push(at(ms(rtp_end), What::RtpStopped(rtp(1))));
        events.push(at(
            ms(rtp_end),
            What::EndCall {
                call,
                device: c.agent.clone(),
            },
        ));
        events.push(state(ms(rtp_end) + 1, 3));
    }
    events.sort_by_key(|e| e.at_ms);
    Scenario {
        peripheral: 5000,
        events,
    }
}

fn rtp_fields(
    call: u32,
    agent: &str,
    direction: u16,
    phone: (Ipv4Addr, u16),
    other: (Ipv4Addr, u16),
) -> RtpFields {
    RtpFields {
        call,
        device: agent.to_owned(),
        agent: agent.to_owned(),
        direction,
        address: phone.0.to_string(),
        port: u32::from(phone.1),
        sending_address: other.0.to_string(),
        sending_port: u32::from(other.1),
    }
}
