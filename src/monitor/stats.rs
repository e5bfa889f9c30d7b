//! The monitor service's counters: plain atomics that the engine thread (forwarding) and the
//! tokio side (connections, attaches) bump and the metrics endpoint reads from any thread.
//! Counters end in `_total`; the two gauges say what is open now. No labels per monitor or
//! address: per-endpoint numbers are in [`SubscriberStats`](super::fanout::SubscriberStats).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::Span;

/// Upper bounds, in seconds, of the [`DelayHistogram`] buckets (then +Inf).
pub const DELAY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

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
    /// The listener's counters: connections accepted, TLS handshakes that failed or timed out
    /// (a client without a certificate, a wrong CA), handshakes refused by the caps.
    pub listen: std::sync::Arc<crate::net::listen::ListenStats>,
    /// Attach requests refused (unknown or used key, service busy).
    pub attach_refused_total: AtomicU64,
    /// Frames from endpoints that did not decode or were not expected.
    pub protocol_errors_total: AtomicU64,
    /// Endpoint connections open now.
    pub endpoints: AtomicU64,
    /// Monitors attached to an endpoint now.
    pub attached: AtomicU64,
    /// Capture timestamp -> end of the socket write that carried the frame.
    pub write_delay: DelayHistogram,
}

/// A Prometheus histogram of delays: fixed buckets of atomics, so observing takes no lock and
/// does not allocate. Each observation may count several frames (a write carries many).
#[derive(Debug, Default)]
pub struct DelayHistogram {
    /// Frames per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; DELAY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl DelayHistogram {
    /// Counts `frames` frames that each took at most `delay` (a negative delay, from a clock
    /// step, counts as zero).
    pub fn observe(&self, delay: Span, frames: u64) {
        let ns = delay.as_nanos().max(0);
        let secs = ns as f64 / 1e9;
        let i = DELAY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DELAY_BUCKETS.len());
        self.buckets[i].fetch_add(frames, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((ns as u64).saturating_mul(frames), Ordering::Relaxed);
        self.count.fetch_add(frames, Ordering::Relaxed);
    }

    /// Frames observed.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram in Prometheus text format (cumulative `_bucket{le}`, `_sum` in
    /// seconds, `_count`).
    pub fn write_exposition(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            match DELAY_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_weighted_by_frames() {
        let h = DelayHistogram::default();
        h.observe(Span::from_nanos(100_000), 3); // 0.1 ms
        h.observe(Span::from_millis(2), 1); // exactly on a bound
        h.observe(Span::from_millis(7), 2);
        h.observe(Span::from_secs(3), 1);
        h.observe(Span::from_nanos(-5), 1); // a clock step: zero
        let mut out = String::new();
        h.write_exposition(&mut out, "d", "Delay.");
        let line = |le: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("d_bucket{{le=\"{le}\"}} ")))
                .unwrap_or_else(|| panic!("no bucket {le} in {out}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(line("0.00025"), 4);
        assert_eq!(line("0.001"), 4);
        assert_eq!(line("0.002"), 5);
        assert_eq!(line("0.005"), 5);
        assert_eq!(line("0.01"), 7);
        assert_eq!(line("1"), 7);
        assert_eq!(line("+Inf"), 8);
        assert!(out.contains("d_count 8"));
        assert!(out.starts_with("# HELP d Delay.\n# TYPE d histogram\n"));
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("d_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - (0.0003 + 0.002 + 0.014 + 3.0)).abs() < 1e-9, "{sum}");
    }
}
