//! A live capture that survives its interface going away: when a read fails (libpcap's "The
//! interface disappeared" after a NIC reset, a hot-unplugged vNIC, a driver reload) the capture
//! is closed and opened again, first after [`FIRST_RETRY`], then doubling to [`LAST_RETRY`],
//! until it works; meanwhile the capture thread idles. Each successful reopen is counted and
//! logged; the kernel's counters carry on across reopens (the closed capture's last counts are
//! kept as a base), so the metrics never go backwards.
//!
//! Rules: the first open happens at start and must succeed (a typo in `capture.interfaces` is
//! an error at once); a reopened interface must have the same link type as the first open (a
//! different one is an error logged and retried: the engine decodes by the first one).

use std::time::{Duration, Instant};

use super::live::{LiveCapture, LiveError, LiveOptions, LiveStats};
use super::pipeline::{CaptureSource, Poll};
use super::Error;
use crate::packet::LinkType;

/// First wait before reopening a failed capture.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between reopen attempts.
pub const LAST_RETRY: Duration = Duration::from_secs(30);
/// Longest nap of a capture thread that found nothing buffered.
const LIVE_IDLE: Duration = Duration::from_millis(1);

/// When to try again after failures: `FIRST_RETRY`, doubling to `LAST_RETRY` (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_RETRY }
    }
}

impl Backoff {
    /// The wait before the next try; the one after it is longer.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(LAST_RETRY);
        wait
    }

    /// A try worked: the next failure waits [`FIRST_RETRY`] again.
    pub fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// A live capture on one interface that reopens itself.
pub struct ReopeningCapture {
    iface: String,
    options: LiveOptions,
    link: LinkType,
    live: Option<LiveCapture>,
    /// A read error seen by the last poll: the capture is closed at the next one.
    failed: Option<String>,
    retry_at: Instant,
    backoff: Backoff,
    /// Counters of captures closed so far, plus the open one's last reading.
    base: LiveStats,
    last: LiveStats,
    reopened: u64,
}

impl ReopeningCapture {
    /// Opens `iface` (this first open must work).
    pub fn open(iface: &str, options: LiveOptions) -> Result<Self, LiveError> {
        let live = LiveCapture::open(iface, &options)?;
        Ok(ReopeningCapture {
            iface: iface.to_owned(),
            link: live.link_type(),
            live: Some(live),
            options,
            failed: None,
            retry_at: Instant::now(),
            backoff: Backoff::default(),
            base: LiveStats::default(),
            last: LiveStats::default(),
            reopened: 0,
        })
    }

    /// Closes the failed capture, keeping its counts, and schedules the first reopen.
    fn close(&mut self, why: &str) {
        tracing::warn!(interface = %self.iface, error = why, "capture failed; reopening it");
        if let Some(mut c) = self.live.take() {
            if let Ok(s) = c.stats() {
                self.last = s;
            }
        }
        self.base = add(self.base, self.last);
        self.last = LiveStats::default();
        self.retry_at = Instant::now() + self.backoff.next_wait();
    }

    /// Tries to open the interface again if it is time; how long to idle otherwise.
    fn reopen(&mut self) -> Duration {
        let now = Instant::now();
        if now < self.retry_at {
            return (self.retry_at - now).min(Duration::from_millis(250));
        }
        match LiveCapture::open(&self.iface, &self.options) {
            Ok(c) if c.link_type() == self.link => {
                // Said at the level of the failure, so the default log shows both.
                tracing::warn!(interface = %self.iface, "capture reopened");
                self.live = Some(c);
                self.reopened += 1;
                self.backoff.reset();
                Duration::ZERO
            }
            Ok(c) => {
                tracing::error!(interface = %self.iface, link = ?c.link_type(), first = ?self.link,
                    "capture reopened with another link type; retrying");
                self.retry_at = now + self.backoff.next_wait();
                LIVE_IDLE
            }
            Err(e) => {
                tracing::debug!(interface = %self.iface, error = %e, "capture not reopened yet");
                self.retry_at = now + self.backoff.next_wait();
                LIVE_IDLE
            }
        }
    }
}

fn add(a: LiveStats, b: LiveStats) -> LiveStats {
    LiveStats {
        received: a.received + b.received,
        dropped: a.dropped + b.dropped,
        if_dropped: a.if_dropped + b.if_dropped,
        reopened: 0,
    }
}

impl CaptureSource for ReopeningCapture {
    fn link(&self) -> LinkType {
        self.link
    }

    fn poll(&mut self) -> Result<Poll<'_>, Error> {
        if let Some(why) = self.failed.take() {
            self.close(&why);
        }
        if self.live.is_none() {
            return Ok(Poll::Idle(self.reopen()));
        }
        let Some(c) = self.live.as_mut() else {
            return Ok(Poll::Idle(LIVE_IDLE));
        };
        match c.poll_frame() {
            Ok(Some(f)) => Ok(Poll::Frame(f)),
            Ok(None) => Ok(Poll::Idle(LIVE_IDLE)),
            Err(e) => {
                // Closed at the next poll (the frame borrow forbids it here).
                self.failed = Some(e.to_string());
                Ok(Poll::Idle(Duration::ZERO))
            }
        }
    }

    fn kernel_stats(&mut self) -> Option<LiveStats> {
        if let Some(s) = self.live.as_mut().and_then(|c| c.stats().ok()) {
            self.last = s;
        }
        Some(LiveStats {
            reopened: self.reopened,
            ..add(self.base, self.last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_wait(), FIRST_RETRY);
    }

    #[test]
    fn a_missing_interface_is_an_error_at_the_first_open() {
        let e = ReopeningCapture::open("silentmon-no-such1", LiveOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("silentmon-no-such1"), "{e}");
    }
}
