//! The CTI client's tokio shell: one TCP connection at a time to side A or B as the sans-IO
//! [`Session`] says (TCP_NODELAY, SO_LINGER 0, as the guide asks; the CTI Server protocol has
//! no TLS: keep the link on the PG's network), its bytes fed to the session, its events handed
//! on: agent states to the control plane, RTP events and calls to the engine thread, each
//! agent matched to a configured one by the configured field.
//!
//! Rules: never waits on the engine or the control plane (both bounded queues, written with
//! `try_send`; full: counted in [`CtiStats`] and logged); a write that does not finish within
//! [`WRITE_TIMEOUT`] is a dead connection; on shutdown the session is closed with CLOSE_REQ.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::{CtiAction, CtiCounters, CtiEvent, Session, SessionConfig};
use super::wire::{AgentRef, Rtp};
use crate::appliance::engine_loop::{Command, CtiCommand};
use crate::clock::wall_now;
use crate::config::{AgentField, CtiSettings};
use crate::control::server::ControlHandle;
use crate::router::cti::CtiBegin;
use crate::time::Span;

/// Longest a connect or a write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

impl CtiStats {
    /// What the feed brought for `agent`, in one line (the demo prints it).
    pub fn summary(&self, agent: &str) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let count = |name: &str| counters.messages.get(name).copied().unwrap_or(0);
        format!(
            "CTI feed (mock CTI Server): agent state events {}, RTP started/stopped events on \
             agent {agent}'s media endpoint {}, calls begun and ended {}, malformed messages {}",
            count("agent_state_event"),
            self.rtp_events.load(Ordering::Relaxed),
            count("begin_call_event").min(count("end_call_event")),
            counters.malformed
        )
    }
}

/// What the metrics show of the feed.
#[derive(Debug, Default)]
pub struct CtiStats {
    /// 0: no session; 1: open on side A; 2: on side B.
    pub side: AtomicU64,
    /// The session's counters (messages by type, skipped, malformed, connects, resets).
    pub counters: Mutex<CtiCounters>,
    /// RTP_STARTED / RTP_STOPPED events applied to bindings.
    pub rtp_events: AtomicU64,
    /// Events that named no configured agent.
    pub unknown_agents: AtomicU64,
    /// Events the engine or the control plane could not take (full queue).
    pub lost: AtomicU64,
}

/// Finds configured agents by what CTI events carry.
#[derive(Clone, Debug, Default)]
pub struct AgentMatcher {
    field: AgentField,
    by_id: HashMap<String, usize>,
    by_extension: HashMap<String, usize>,
}

impl AgentMatcher {
    /// Agents `(id, extension)` in configuration order, matched by `field`.
    pub fn new(field: AgentField, agents: &[(String, String)]) -> AgentMatcher {
        let mut m = AgentMatcher {
            field,
            ..AgentMatcher::default()
        };
        for (i, (id, ext)) in agents.iter().enumerate() {
            m.by_id.insert(id.clone(), i);
            m.by_extension.entry(ext.clone()).or_insert(i);
        }
        m
    }

    /// The agent an event's agent fields name, by the configured field.
    pub fn agent(&self, a: &AgentRef) -> Option<usize> {
        let ext = |v: &Option<String>| v.as_deref().and_then(|x| self.by_extension.get(x).copied());
        match self.field {
            AgentField::Id => a.id.as_deref().and_then(|x| self.by_id.get(x).copied()),
            AgentField::Extension => ext(&a.extension),
            AgentField::Instrument => ext(&a.instrument),
        }
    }

    /// The agent whose extension is a call's device.
    pub fn device(&self, device: &str) -> Option<usize> {
        self.by_extension.get(device).copied()
    }
}

/// What the client needs.
pub struct CtiClient {
    /// The feed's settings.
    pub settings: CtiSettings,
    /// Matches events to agents.
    pub agents: AgentMatcher,
    /// The engine thread's commands.
    pub engine: crossbeam_channel::Sender<Command>,
    /// The control plane (agent states).
    pub control: ControlHandle,
    /// Counters.
    pub stats: Arc<CtiStats>,
}

/// Runs the feed until `shutdown` resolves.
pub async fn run(c: CtiClient, shutdown: impl std::future::Future<Output = ()>) {
    let config = SessionConfig {
        version: c.settings.version,
        peripheral: c.settings.peripheral_id,
        client_id: c.settings.client_id.clone(),
        password: c.settings.client_password.clone(),
        heartbeat: Span::from_nanos(c.settings.heartbeat.as_nanos() as i64),
        sides: c.settings.sides.len(),
    };
    let mut session = Session::new(config, wall_now());
    let mut stream: Option<TcpStream> = None;
    let mut chunk = vec![0u8; 16 * 1024];
    tokio::pin!(shutdown);
    let mut closing = false;
    loop {
        if carry_out(&c, &mut session, &mut stream).await {
            return;
        }
        let wake = session.poll_timeout().map_or(Duration::from_secs(1), |t| {
            Duration::from_nanos((t - wall_now()).as_nanos().max(0) as u64)
        });
        tokio::select! {
            _ = &mut shutdown, if !closing => {
                closing = true;
                session.close(wall_now());
            }
            n = read(&mut stream, &mut chunk) => match n {
                Some(n) => session.handle_bytes(wall_now(), &chunk[..n]),
                None => {
                    stream = None;
                    session.disconnected(wall_now(), "the CTI Server closed the connection");
                }
            },
            _ = tokio::time::sleep(wake) => session.handle_timeout(wall_now()),
        }
    }
}

async fn read(stream: &mut Option<TcpStream>, chunk: &mut [u8]) -> Option<usize> {
    match stream {
        Some(s) => match s.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Does what the session asks; true once it closed for good (shutdown).
async fn carry_out(c: &CtiClient, session: &mut Session, stream: &mut Option<TcpStream>) -> bool {
    while let Some(a) = session.poll() {
        match a {
            CtiAction::Connect { side } => {
                let addr = &c.settings.sides[side];
                match connect(addr).await {
                    Ok(s) => {
                        *stream = Some(s);
                        session.connected(wall_now());
                    }
                    Err(e) => {
                        tracing::warn!(side = side_name(side), addr, error = %e, "CTI Server not reached");
                        session.disconnected(wall_now(), &e.to_string());
                    }
                }
            }
            CtiAction::Send(bytes) => {
                let Some(s) = stream.as_mut() else { continue };
                let sent = tokio::time::timeout(WRITE_TIMEOUT, s.write_all(&bytes)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    *stream = None;
                    session.disconnected(wall_now(), "a write to the CTI Server failed");
                }
            }
            CtiAction::Close(reason) => {
                *stream = None;
                if reason == "closed" {
                    return true;
                }
                tracing::warn!(%reason, "CTI connection reset");
            }
            CtiAction::Event(e) => event(c, e),
        }
    }
    *c.stats.counters.lock().unwrap_or_else(|p| p.into_inner()) = session.counters().clone();
    false
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(WRITE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    s.set_nodelay(true)?;
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    Ok(s)
}

fn side_name(side: usize) -> &'static str {
    if side == 0 {
        "A"
    } else {
        "B"
    }
}

/// An event of the session, handed on.
fn event(c: &CtiClient, e: CtiEvent) {
    match e {
        CtiEvent::Open { side } => {
            tracing::info!(side = side_name(side), addr = %c.settings.sides[side], "CTI session open");
            c.stats.side.store(side as u64 + 1, Ordering::Relaxed);
        }
        CtiEvent::Down { reason } => {
            tracing::warn!(%reason, "CTI session down");
            c.stats.side.store(0, Ordering::Relaxed);
        }
        CtiEvent::AgentState { agent, state } => match c.agents.agent(&agent) {
            Some(a) => {
                c.control.agent_state(a, state);
                if state == "Logout" {
                    command(c, CtiCommand::LoggedOut { agent: a });
                }
            }
            None => unknown(c, &agent),
        },
        CtiEvent::RtpStarted(r) => {
            let Some((agent, phone)) = rtp_target(c, &r) else {
                return;
            };
            c.stats.rtp_events.fetch_add(1, Ordering::Relaxed);
            command(
                c,
                CtiCommand::RtpStarted {
                    agent,
                    call: r.call,
                    phone,
                },
            );
        }
        CtiEvent::RtpStopped(r) => {
            let Some(phone) = phone(&r) else { return };
            c.stats.rtp_events.fetch_add(1, Ordering::Relaxed);
            command(
                c,
                CtiCommand::RtpStopped {
                    call: r.call,
                    phone,
                },
            );
        }
        CtiEvent::CallBegan {
            call,
            call_type,
            ani,
            dnis,
        } => {
            let agent = c.agents.device(&call.device);
            command(
                c,
                CtiCommand::CallBegan(CtiBegin {
                    call,
                    call_type,
                    ani,
                    dnis,
                    agent,
                }),
            );
        }
        CtiEvent::CallEnded { call } => command(c, CtiCommand::CallEnded(call)),
    }
}

/// The agent and phone endpoint of an RTP_STARTED (the agent by its fields, else by the
/// call's device).
fn rtp_target(c: &CtiClient, r: &Rtp) -> Option<(usize, SocketAddr)> {
    let agent = c
        .agents
        .agent(&r.agent)
        .or_else(|| c.agents.device(&r.call.device));
    let Some(agent) = agent else {
        unknown(c, &r.agent);
        return None;
    };
    Some((agent, phone(r)?))
}

/// ClientAddress:ClientPort (a port over 65535 is read as none: port 0).
fn phone(r: &Rtp) -> Option<SocketAddr> {
    let ip: IpAddr = r.client_address.trim().parse().ok()?;
    Some(SocketAddr::new(
        ip,
        u16::try_from(r.client_port).unwrap_or(0),
    ))
}

fn unknown(c: &CtiClient, a: &AgentRef) {
    c.stats.unknown_agents.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(?a, "CTI event for no configured agent");
}

fn command(c: &CtiClient, cmd: CtiCommand) {
    if c.engine.try_send(Command::Cti(cmd)).is_err() {
        c.stats.lost.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("engine thread not taking CTI events");
    }
}
