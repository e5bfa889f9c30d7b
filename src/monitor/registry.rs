//! The monitors the control plane has authorised on this appliance and who holds each: a
//! grant (monitor id, single-use session key, agent, supervisor) waits for an endpoint to
//! attach with its key; an attached grant remembers the connection and its queue.
//!
//! Rules: a key attaches once (a second try is refused as used, an unknown key as unknown),
//! and only from a connection whose client certificate carries the name of the supervisor it
//! was granted to (another supervisor's certificate with the key is refused, and the grant
//! stays for its owner; on a plaintext `--insecure` link there is no certificate to check);
//! monitor ids must fit the wire's u32; a grant not attached within the heartbeat timeout
//! expires (`Registry::expire_unattached`, driven by the service with the clock it reads):
//! it is reported once and takes no attach from then on. The registry follows the control
//! plane: a grant goes only when the control plane revokes it ([`Registry::revoke`]), whoever
//! reported the ending (its connection, the expiry, a supervisor). Revoking an attached
//! monitor tells its connection, which sends `Stopped` and keeps serving its other monitors.
//! A short `std::sync::Mutex` guards the table: attaches and revokes are rare and never on
//! the packet path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::fanout::{Subscriber, SubscriberStats};
use crate::router::MonitorId;

/// Why a grant was refused (the appliance's fault, not an endpoint's).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The id does not fit the wire's 32-bit monitor field.
    #[error("monitor {0} does not fit the monitor service's 32-bit monitor id")]
    MonitorIdRange(MonitorId),
    /// The monitor is already granted.
    #[error("monitor {0} is already granted")]
    AlreadyGranted(MonitorId),
    /// Another monitor holds the same key.
    #[error("the session key of monitor {0} is already granted to monitor {1}")]
    KeyInUse(MonitorId, MonitorId),
    /// An empty key.
    #[error("monitor {0}: empty session key")]
    EmptyKey(MonitorId),
}

/// Why an attach was refused (told to the endpoint in an `Error` frame).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// No grant has this key (wrong, expired or ended).
    #[error("unknown session key")]
    UnknownKey,
    /// The key was used by an earlier attach.
    #[error("session key already used")]
    KeyUsed,
    /// The connection's certificate is not the supervisor's the monitor was granted to.
    #[error("this session key was granted to another supervisor")]
    WrongCertificate {
        /// The monitor the key belongs to.
        monitor: MonitorId,
    },
}

/// A connection's id, unique for the registry's life.
pub(crate) type ConnId = u64;
/// Where a connection hears that one of its monitors was revoked: (monitor, reason). Bounded
/// ([`REVOCATIONS_QUEUE`]); the appliance never waits on it: when it is full the connection is
/// closed instead (its endpoint reconnects and starts again).
pub(crate) type Revocations = mpsc::Sender<(u32, String)>;

/// Revocations queued towards one connection.
pub(crate) const REVOCATIONS_QUEUE: usize = 64;

struct Attachment {
    subscriber: Arc<Subscriber>,
    revoked: Revocations,
}

struct Grant {
    key: String,
    agent_id: String,
    supervisor_id: String,
    /// The name the supervisor's client certificate must carry.
    certificate: String,
    granted: Instant,
    attached: Option<Attachment>,
    /// Reported as never attached: no attach is taken any more.
    expired: bool,
}

#[derive(Default)]
struct Inner {
    grants: HashMap<MonitorId, Grant>,
    keys: HashMap<String, MonitorId>,
    next_conn: ConnId,
}

/// The monitors granted on this appliance, shared by the appliance (grant, revoke) and the
/// monitor service (attach, release, expiry).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent through a panic elsewhere: every update is one statement.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Authorises `monitor`: an endpoint presenting `key` from a connection whose client
    /// certificate carries `certificate` may attach to it (once). Call when the control plane
    /// started the monitor; the clock for the attach deadline starts now.
    pub fn grant(
        &self,
        monitor: MonitorId,
        key: &str,
        agent_id: &str,
        (supervisor_id, certificate): (&str, &str),
    ) -> Result<(), Error> {
        if u32::try_from(monitor).is_err() {
            return Err(Error::MonitorIdRange(monitor));
        }
        if key.is_empty() {
            return Err(Error::EmptyKey(monitor));
        }
        let mut inner = self.lock();
        if inner.grants.contains_key(&monitor) {
            return Err(Error::AlreadyGranted(monitor));
        }
        if let Some(other) = inner.keys.get(key) {
            return Err(Error::KeyInUse(monitor, *other));
        }
        inner.keys.insert(key.to_owned(), monitor);
        inner.grants.insert(
            monitor,
            Grant {
                key: key.to_owned(),
                agent_id: agent_id.to_owned(),
                supervisor_id: supervisor_id.to_owned(),
                certificate: certificate.to_owned(),
                granted: Instant::now(),
                attached: None,
                expired: false,
            },
        );
        Ok(())
    }

    /// Ends `monitor` (the control plane stopped it): its endpoint, if attached, gets `Stopped`
    /// with `reason` and is detached from it; the connection stays open. False when the
    /// monitor was not granted.
    pub fn revoke(&self, monitor: MonitorId, reason: &str) -> bool {
        let mut inner = self.lock();
        let Some(g) = inner.grants.remove(&monitor) else {
            return false;
        };
        inner.keys.remove(&g.key);
        if let Some(a) = g.attached {
            // A connection that is going away has dropped its receiver; nothing to tell then.
            // One too far behind to take it is closed: it must not keep hearing the monitor.
            if let Err(mpsc::error::TrySendError::Full(_)) =
                a.revoked.try_send((monitor as u32, reason.to_owned()))
            {
                tracing::warn!(
                    monitor,
                    "monitor service: revocation queue full; closing the connection"
                );
                a.subscriber.close();
            }
        }
        true
    }

    /// True while `monitor` is granted (attached or waiting for its endpoint).
    pub fn is_granted(&self, monitor: MonitorId) -> bool {
        self.lock().grants.contains_key(&monitor)
    }

    /// The counters of the endpoint queue `monitor` is attached to.
    pub fn subscriber_stats(&self, monitor: MonitorId) -> Option<SubscriberStats> {
        let inner = self.lock();
        let a = inner.grants.get(&monitor)?.attached.as_ref()?;
        Some(a.subscriber.stats())
    }

    /// A fresh connection id.
    pub(crate) fn connection_id(&self) -> ConnId {
        let mut inner = self.lock();
        inner.next_conn += 1;
        inner.next_conn
    }

    /// Attaches connection `conn`, whose client certificate carries `certificate` (None: a
    /// plaintext link), to the monitor granted for `key`; returns the monitor and the agent's
    /// id.
    pub(crate) fn attach(
        &self,
        key: &str,
        (conn, certificate): (ConnId, Option<&[String]>),
        subscriber: &Arc<Subscriber>,
        revoked: &Revocations,
    ) -> Result<(u32, String), AttachError> {
        let mut inner = self.lock();
        let monitor = *inner.keys.get(key).ok_or(AttachError::UnknownKey)?;
        let g = inner
            .grants
            .get_mut(&monitor)
            .filter(|g| !g.expired)
            .ok_or(AttachError::UnknownKey)?;
        if certificate.is_some_and(|names| !names.contains(&g.certificate)) {
            return Err(AttachError::WrongCertificate { monitor });
        }
        if g.attached.is_some() {
            return Err(AttachError::KeyUsed);
        }
        g.attached = Some(Attachment {
            subscriber: subscriber.clone(),
            revoked: revoked.clone(),
        });
        tracing::info!(
            monitor,
            agent = %g.agent_id,
            supervisor = %g.supervisor_id,
            connection = conn,
            "monitor service: endpoint attached"
        );
        Ok((monitor as u32, g.agent_id.clone()))
    }

    /// Marks the grants nobody attached to within `timeout` of being granted, as of `now`,
    /// as expired and returns them (each once), for the control plane to end; they take no
    /// attach from now on and go when it revokes them.
    pub(crate) fn expire_unattached(&self, now: Instant, timeout: Duration) -> Vec<MonitorId> {
        let mut inner = self.lock();
        let mut expired = Vec::new();
        for (m, g) in inner.grants.iter_mut() {
            if g.attached.is_none() && !g.expired && now.duration_since(g.granted) > timeout {
                g.expired = true;
                expired.push(*m);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::stats::MonitorStats;

    #[test]
    fn grant_attach_once_revoke_and_expire() {
        let r = Registry::new();
        let sub = Arc::new(Subscriber::new(4, Arc::new(MonitorStats::default())));
        let (tx, mut rx) = mpsc::channel(REVOCATIONS_QUEUE);
        assert_eq!(
            r.grant(1 << 32, "k", "a", ("s", "s")),
            Err(Error::MonitorIdRange(1 << 32))
        );
        assert_eq!(r.grant(1, "", "a", ("s", "s")), Err(Error::EmptyKey(1)));
        r.grant(1, "k1", "5001", ("s1", "s1")).unwrap();
        assert_eq!(
            r.grant(1, "k9", "a", ("s", "s")),
            Err(Error::AlreadyGranted(1))
        );
        assert_eq!(
            r.grant(2, "k1", "a", ("s", "s")),
            Err(Error::KeyInUse(2, 1))
        );
        r.grant(2, "k2", "5002", ("s1", "s1")).unwrap();

        let c = r.connection_id();
        assert_eq!(
            r.attach("nope", (c, None), &sub, &tx),
            Err(AttachError::UnknownKey)
        );
        assert_eq!(r.attach("k1", (c, None), &sub, &tx), Ok((1, "5001".into())));
        assert_eq!(
            r.attach("k1", (c, None), &sub, &tx),
            Err(AttachError::KeyUsed)
        );
        assert!(r.subscriber_stats(1).is_some());
        assert!(r.subscriber_stats(2).is_none());

        // An attached grant never expires; an expired one is reported once, takes no attach,
        // and stays until the control plane revokes it.
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(r.expire_unattached(later, Duration::from_secs(15)), vec![2]);
        assert!(r
            .expire_unattached(later, Duration::from_secs(15))
            .is_empty());
        assert!(r.is_granted(1) && r.is_granted(2));
        assert_eq!(
            r.attach("k2", (c, None), &sub, &tx),
            Err(AttachError::UnknownKey)
        );
        assert!(r.revoke(2, "endpoint never attached") && !r.is_granted(2));
        assert!(r.revoke(1, "stopped by supervisor"));
        assert_eq!(rx.try_recv().unwrap(), (1, "stopped by supervisor".into()));
        assert!(!r.is_granted(1));
        assert_eq!(
            r.attach("k1", (c, None), &sub, &tx),
            Err(AttachError::UnknownKey)
        );

        // A key attaches only from its supervisor's certificate; a refusal leaves the grant.
        r.grant(4, "k4", "5004", ("s1", "s1")).unwrap();
        let s2 = ["s2".to_owned()];
        assert_eq!(
            r.attach("k4", (c, Some(&s2[..])), &sub, &tx),
            Err(AttachError::WrongCertificate { monitor: 4 })
        );
        let s1 = ["s1".to_owned()];
        assert_eq!(
            r.attach("k4", (c, Some(&s1[..])), &sub, &tx),
            Ok((4, "5004".into()))
        );

        // A connection whose revocations queue is full is closed rather than waited for.
        let (tx1, _rx1) = mpsc::channel(1);
        let sub1 = Arc::new(Subscriber::new(4, Arc::new(MonitorStats::default())));
        r.grant(5, "k5", "5005", ("s1", "s1")).unwrap();
        r.grant(6, "k6", "5006", ("s1", "s1")).unwrap();
        r.attach("k5", (c, None), &sub1, &tx1).unwrap();
        r.attach("k6", (c, None), &sub1, &tx1).unwrap();
        assert!(r.revoke(5, "stopped by supervisor") && !sub1.is_closed());
        assert!(r.revoke(6, "stopped by supervisor") && sub1.is_closed());

        // Revoking an attached monitor tells its connection.
        r.grant(3, "k3", "5003", ("s1", "s1")).unwrap();
        r.attach("k3", (c, None), &sub, &tx).unwrap();
        assert!(r.revoke(3, "stopped by supervisor"));
        assert_eq!(rx.try_recv().unwrap(), (3, "stopped by supervisor".into()));
        assert!(!r.revoke(3, "again"));
    }
}
