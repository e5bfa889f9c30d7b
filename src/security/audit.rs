//! What the audit trail records, as types: every monitor start and stop, every explicit bind,
//! and every refusal (failed and throttled logins, lockouts and their end, refused monitor
//! starts, binds and attaches, refused peers). Cores emit these; the appliance's writer
//! (`appliance::audit`) appends each as one JSON line with the time and the peer's address.
//! Never a password or a session key: no variant has a field for one.

use std::net::SocketAddr;

use crate::time::Timestamp;

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    /// A supervisor was granted a monitor of an agent.
    MonitorStarted {
        /// Monitor id.
        monitor: u64,
        /// The supervisor's id.
        supervisor: String,
        /// The agent's id.
        agent: String,
    },
    /// A monitor ended.
    MonitorStopped {
        /// Monitor id.
        monitor: u64,
        /// The supervisor's id.
        supervisor: String,
        /// The agent's id.
        agent: String,
        /// Why.
        reason: String,
    },
    /// An explicit bind.
    Bind {
        /// A supervisor's id, or `monitor mode`.
        by: String,
        /// The agent's id.
        agent: String,
        /// The endpoint.
        endpoint: SocketAddr,
        /// For how long (None: until the appliance restarts).
        seconds: Option<u64>,
    },
    /// A login was refused: wrong password, unknown account, account without a password,
    /// throttled, monitor mode locked or full...
    LoginFailed {
        /// `agent`, `supervisor` or `monitor`.
        mode: &'static str,
        /// The id given (empty for monitor mode).
        id: String,
        /// Why (the real reason; the client is told less).
        reason: String,
    },
    /// Logins of a scope are delayed or disabled from now on.
    LockoutStarted {
        /// What: `supervisor s1 from 10.0.0.5`, `logins from 10.0.0.5`, `monitor mode`.
        scope: String,
        /// Until when the first delay lasts.
        until: Timestamp,
    },
    /// A lockout ended (success, or quiet time).
    LockoutEnded {
        /// What was locked.
        scope: String,
    },
    /// A monitor start was refused.
    MonitorRefused {
        /// The supervisor's id.
        supervisor: String,
        /// The agent asked for.
        agent: String,
        /// Why.
        reason: String,
    },
    /// A bind was refused.
    BindRefused {
        /// Who asked.
        by: String,
        /// The agent named.
        agent: String,
        /// The endpoint named.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// An endpoint's attach to the monitor service was refused.
    AttachRefused {
        /// The name in the connection's client certificate (None: plaintext lab link).
        certificate: Option<String>,
        /// The monitor the key belongs to, when it is a key of one.
        monitor: Option<u64>,
        /// Why: unknown or used key, another supervisor's key, too many failures.
        reason: String,
    },
    /// A cluster peer asked for an agent's audio on behalf of these supervisors (recorded by
    /// the serving appliance; the asking one recorded the monitors).
    PeerSubscribed {
        /// The peer's name.
        peer: String,
        /// The agent's id.
        agent: String,
        /// The supervisors it asked for.
        supervisors: Vec<String>,
    },
    /// A connection claiming to be a cluster peer was refused.
    PeerRefused {
        /// The name in its certificate, if any.
        certificate: Option<String>,
        /// Why.
        reason: String,
    },
}

impl AuditEvent {
    /// The event's name in the trail.
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::MonitorStarted { .. } => "monitor_started",
            AuditEvent::MonitorStopped { .. } => "monitor_stopped",
            AuditEvent::Bind { .. } => "bind",
            AuditEvent::LoginFailed { .. } => "login_failed",
            AuditEvent::LockoutStarted { .. } => "lockout_started",
            AuditEvent::LockoutEnded { .. } => "lockout_ended",
            AuditEvent::MonitorRefused { .. } => "monitor_refused",
            AuditEvent::BindRefused { .. } => "bind_refused",
            AuditEvent::AttachRefused { .. } => "attach_refused",
            AuditEvent::PeerSubscribed { .. } => "peer_subscribed",
            AuditEvent::PeerRefused { .. } => "peer_refused",
        }
    }

    /// True for refusals and lockouts (logged at info level besides the trail).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            AuditEvent::MonitorStarted { .. }
                | AuditEvent::MonitorStopped { .. }
                | AuditEvent::Bind { .. }
                | AuditEvent::PeerSubscribed { .. }
        )
    }
}

/// Where a shell records audit events (the appliance's audit trail; a recorder in tests), with
/// the address of the connection concerned. Called rarely (never per packet); must not block
/// for long.
pub type AuditSink = std::sync::Arc<dyn Fn(&AuditEvent, Option<SocketAddr>) + Send + Sync>;
