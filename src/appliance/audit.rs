//! The audit trail: one JSON object per line for every monitor started or stopped, every
//! explicit bind and every refusal (failed or throttled logins, lockouts and their end, refused
//! monitor starts, binds, attaches and peers), with who, whom, from where, when (UTC) and why.
//! Appended, never rewritten; the file is created owner-only (0600). Written before the
//! action it records takes effect (an entry exists before the first forwarded packet).
//! Passwords and session keys are never written: no event carries one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::security::audit::{AuditEvent, AuditSink};
use crate::time::Timestamp;

/// An open audit log.
pub struct AuditLog {
    file: File,
    path: PathBuf,
}

/// Audit-log errors name the file.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// Cause.
    pub source: std::io::Error,
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) `path` for appending.
    pub fn open(path: &Path) -> Result<AuditLog, Error> {
        let err = |source| Error {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(err)?;
        Ok(AuditLog {
            file,
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entry for `event` (about the connection from `peer`, at `now`).
    pub fn record(
        &mut self,
        now: Timestamp,
        event: &AuditEvent,
        peer: Option<SocketAddr>,
    ) -> Result<(), Error> {
        let line = entry(now, event, peer);
        let mut text = line.to_string();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| Error {
                path: self.path.clone(),
                source,
            })
    }
}

/// The audit log shared by every shell that records (the control plane's actions, the monitor
/// service's refused attaches): a short lock per entry, never on the packet path. Each entry is
/// also logged, refusals at info level.
#[derive(Clone)]
pub struct Auditor {
    log: Arc<Mutex<AuditLog>>,
    clock: fn() -> Timestamp,
    /// Entries that could not be written.
    pub failures: Arc<AtomicU64>,
}

impl Auditor {
    /// Records into `log`, stamping entries with `clock`.
    pub fn new(log: AuditLog, clock: fn() -> Timestamp) -> Auditor {
        Auditor {
            log: Arc::new(Mutex::new(log)),
            clock,
            failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Appends `event` about the connection from `peer`; a failed write is logged and counted.
    pub fn record(&self, event: &AuditEvent, peer: Option<SocketAddr>) {
        if event.is_refusal() {
            tracing::info!(event = event.name(), ?peer, "audit: {event:?}");
        }
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.record((self.clock)(), event, peer) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit entry not written");
        }
    }

    /// The recorder the monitor service is given.
    pub fn sink(&self) -> AuditSink {
        let me = self.clone();
        Arc::new(move |event: &AuditEvent, peer| me.record(event, peer))
    }
}

/// The JSON object of one entry: `time`, `event`, `peer`, and the event's fields.
pub fn entry(now: Timestamp, event: &AuditEvent, peer: Option<SocketAddr>) -> serde_json::Value {
    let mut v = fields(event);
    let obj = v.as_object_mut().expect("fields are an object");
    obj.insert("time".into(), json!(now.to_rfc3339()));
    obj.insert("event".into(), json!(event.name()));
    obj.insert("peer".into(), json!(peer.map(|p| p.to_string())));
    v
}

/// The fields of an event (without time, name and peer).
fn fields(event: &AuditEvent) -> serde_json::Value {
    match event {
        AuditEvent::MonitorStarted {
            monitor,
            supervisor,
            agent,
        } => json!({"monitor": monitor, "supervisor": supervisor, "agent": agent}),
        AuditEvent::MonitorStopped {
            monitor,
            supervisor,
            agent,
            reason,
        } => {
            json!({"monitor": monitor, "supervisor": supervisor, "agent": agent, "reason": reason})
        }
        AuditEvent::Bind {
            by,
            agent,
            endpoint,
            seconds,
        } => {
            json!({"by": by, "agent": agent, "endpoint": endpoint.to_string(), "seconds": seconds})
        }
        AuditEvent::LoginFailed { mode, id, reason } => {
            json!({"mode": mode, "id": id, "reason": reason})
        }
        AuditEvent::LockoutStarted { scope, until } => {
            json!({"scope": scope, "until": until.to_rfc3339()})
        }
        AuditEvent::LockoutEnded { scope } => json!({"scope": scope}),
        AuditEvent::MonitorRefused {
            supervisor,
            agent,
            reason,
        } => json!({"supervisor": supervisor, "agent": agent, "reason": reason}),
        AuditEvent::BindRefused {
            by,
            agent,
            endpoint,
            reason,
        } => json!({"by": by, "agent": agent, "endpoint": endpoint, "reason": reason}),
        AuditEvent::AttachRefused {
            certificate,
            monitor,
            reason,
        } => json!({"certificate": certificate, "monitor": monitor, "reason": reason}),
        AuditEvent::PeerSubscribed {
            peer,
            agent,
            supervisors,
        } => json!({"appliance": peer, "agent": agent, "supervisors": supervisors}),
        AuditEvent::PeerRefused {
            certificate,
            reason,
        } => json!({"certificate": certificate, "reason": reason}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let now = Timestamp::from_nanos(1_764_000_000_000_000_000);
        let peer: SocketAddr = "10.0.0.9:50000".parse().unwrap();
        {
            let mut log = AuditLog::open(&path).unwrap();
            log.record(
                now,
                &AuditEvent::MonitorStarted {
                    monitor: 3,
                    supervisor: "s1".into(),
                    agent: "5001".into(),
                },
                Some(peer),
            )
            .unwrap();
        }
        let mut log = AuditLog::open(&path).unwrap();
        log.record(
            now,
            &AuditEvent::Bind {
                agent: "5001".into(),
                endpoint: "10.2.0.1:30000".parse().unwrap(),
                seconds: Some(60),
                by: "s1".into(),
            },
            None,
        )
        .unwrap();
        log.record(
            now,
            &AuditEvent::MonitorStopped {
                monitor: 3,
                agent: "5001".into(),
                supervisor: "s1".into(),
                reason: "stopped by the supervisor".into(),
            },
            None,
        )
        .unwrap();
        log.record(
            now,
            &AuditEvent::LoginFailed {
                mode: "supervisor",
                id: "s9".into(),
                reason: "unknown supervisor".into(),
            },
            Some(peer),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["event"], "login_failed");
        assert_eq!(lines[3]["id"], "s9");
        assert_eq!(lines[3]["reason"], "unknown supervisor");
        assert_eq!(lines[3]["peer"], "10.0.0.9:50000");
        assert_eq!(lines[1]["event"], "bind");
        assert_eq!(lines[1]["agent"], "5001");
        assert_eq!(lines[1]["by"], "s1");
        assert_eq!(lines[1]["endpoint"], "10.2.0.1:30000");
        assert_eq!(lines[0]["event"], "monitor_started");
        assert_eq!(lines[0]["supervisor"], "s1");
        assert_eq!(lines[0]["agent"], "5001");
        assert_eq!(lines[0]["peer"], "10.0.0.9:50000");
        assert_eq!(lines[0]["time"], "2025-11-24T16:00:00Z");
        assert_eq!(lines[2]["reason"], "stopped by the supervisor");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
