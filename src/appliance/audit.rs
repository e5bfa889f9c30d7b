//! The audit trail: one JSON object per line for every monitor started or stopped and every
//! explicit bind, with who asked, from where, and when (UTC). Appended, never rewritten; the
//! file is created owner-only (0600). Written by the control plane's action sink, so an entry
//! exists before the first forwarded packet.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::control::session::Action;
use crate::time::Timestamp;

/// An open audit log.
pub struct AuditLog {
    file: File,
    path: PathBuf,
    /// Agent ids by index (actions name agents by index).
    agents: Vec<String>,
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
    /// Opens (creating it and its directory if needed) `path` for appending; `agents` are the
    /// configured agent ids in order.
    pub fn open(path: &Path, agents: Vec<String>) -> Result<AuditLog, Error> {
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
            agents,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entry for `action` (asked by `peer`, at `now`).
    pub fn record(
        &mut self,
        now: Timestamp,
        action: &Action,
        peer: Option<SocketAddr>,
    ) -> Result<(), Error> {
        let line = entry(now, action, peer, &self.agents);
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

/// The JSON object of one entry.
pub fn entry(
    now: Timestamp,
    action: &Action,
    peer: Option<SocketAddr>,
    agents: &[String],
) -> serde_json::Value {
    let time = now.to_rfc3339();
    let peer = peer.map(|p| p.to_string());
    match action {
        Action::MonitorStarted {
            monitor,
            agent_id,
            supervisor_id,
            ..
        } => json!({
            "time": time, "event": "monitor_started", "monitor": monitor,
            "supervisor": supervisor_id, "agent": agent_id, "peer": peer,
        }),
        Action::MonitorStopped {
            monitor,
            agent_id,
            supervisor_id,
            reason,
        } => json!({
            "time": time, "event": "monitor_stopped", "monitor": monitor,
            "supervisor": supervisor_id, "agent": agent_id, "reason": reason, "peer": peer,
        }),
        Action::Bind {
            agent,
            endpoint,
            seconds,
            by,
            ..
        } => json!({
            "time": time, "event": "bind", "agent": agents.get(*agent), "by": by,
            "endpoint": endpoint.to_string(), "seconds": seconds, "peer": peer,
        }),
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
            let mut log = AuditLog::open(&path, vec!["5001".into()]).unwrap();
            log.record(
                now,
                &Action::MonitorStarted {
                    monitor: 3,
                    agent: 0,
                    agent_id: "5001".into(),
                    supervisor_id: "s1".into(),
                    session: 1,
                    key: "secret-key".into(),
                },
                Some(peer),
            )
            .unwrap();
        }
        let mut log = AuditLog::open(&path, vec!["5001".into()]).unwrap();
        log.record(
            now,
            &Action::Bind {
                agent: 0,
                endpoint: "10.2.0.1:30000".parse().unwrap(),
                seconds: Some(60),
                by: "s1".into(),
                session: 2,
            },
            None,
        )
        .unwrap();
        log.record(
            now,
            &Action::MonitorStopped {
                monitor: 3,
                agent_id: "5001".into(),
                supervisor_id: "s1".into(),
                reason: "stopped by the supervisor".into(),
            },
            None,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["event"], "bind");
        assert_eq!(lines[1]["agent"], "5001");
        assert_eq!(lines[1]["by"], "s1");
        assert_eq!(lines[1]["endpoint"], "10.2.0.1:30000");
        assert_eq!(lines[0]["event"], "monitor_started");
        assert_eq!(lines[0]["supervisor"], "s1");
        assert_eq!(lines[0]["agent"], "5001");
        assert_eq!(lines[0]["peer"], "10.0.0.9:50000");
        assert_eq!(lines[0]["time"], "2025-11-24T16:00:00Z");
        // The session key is a secret: never in the log.
        assert!(!text.contains("secret-key"));
        assert_eq!(lines[2]["reason"], "stopped by the supervisor");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
