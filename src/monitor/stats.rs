//! The monitor service's counters: plain atomics that the engine thread (forwarding) and the
//! tokio side (connections, attaches) bump and the metrics endpoint reads from any thread.
//! Counters end in `_total`; the two gauges say what is open now. No labels per monitor or
//! address: per-endpoint numbers are in [`SubscriberStats`](super::fanout::SubscriberStats).

use std::sync::atomic::{AtomicU64, Ordering};

/// Service-wide counters (all `Relaxed`: they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct MonitorStats {
    /// Media frames queued towards an endpoint.
    pub forwarded_total: AtomicU64,
    /// Media frames a slow endpoint lost (its oldest, or the new one when no slot was free).
    pub dropped_total: AtomicU64,
    /// Control frames a slow endpoint lost.
    pub control_dropped_total: AtomicU64,
    /// Packets and notices for a monitor no endpoint is attached to.
    pub unrouted_total: AtomicU64,
    /// Connections accepted.
    pub accepted_total: AtomicU64,
    /// TLS handshakes that failed or timed out (a client without a certificate, a wrong CA).
    pub tls_failures_total: AtomicU64,
    /// Attach requests refused (unknown or used key, service busy).
    pub attach_refused_total: AtomicU64,
    /// Frames from endpoints that did not decode or were not expected.
    pub protocol_errors_total: AtomicU64,
    /// Endpoint connections open now.
    pub endpoints: AtomicU64,
    /// Monitors attached to an endpoint now.
    pub attached: AtomicU64,
}

impl MonitorStats {
    pub(crate) fn add_one(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub_one(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
