//! Capture time. The cores never read a clock: every input carries a [`Timestamp`] (the packet's
//! capture time, or the shell's "now"), so offline and live runs take the same path and tests
//! control time completely.

use std::fmt;
use std::ops::{Add, Sub};

/// A point in time: nanoseconds since the Unix epoch (capture timestamps from pcap/pcapng).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A signed span between two [`Timestamp`]s, in nanoseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(i64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    /// From nanoseconds since the epoch.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// From a pcap `timeval`-style pair (seconds, microseconds).
    pub const fn from_secs_micros(secs: i64, micros: i64) -> Self {
        Timestamp(secs * 1_000_000_000 + micros * 1_000)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// UTC as RFC 3339 with whole seconds, `2026-12-02T13:33:19Z` (logs, audit entries).
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }
}

/// Civil date (year, month, day; proleptic Gregorian) of a day count since 1970-01-01
/// (H. Hinnant's days-from-civil algorithm, inverted). Pure arithmetic.
pub fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Span {
    /// From nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Span(nanos)
    }
    /// From milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Span(ms * 1_000_000)
    }
    /// From whole seconds.
    pub const fn from_secs(s: i64) -> Self {
        Span(s * 1_000_000_000)
    }
    /// Nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }
    /// Seconds, as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Milliseconds, as a float.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl Sub for Timestamp {
    type Output = Span;
    fn sub(self, rhs: Timestamp) -> Span {
        Span(self.0.wrapping_sub(rhs.0))
    }
}

impl Add<Span> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Span) -> Timestamp {
        Timestamp(self.0.wrapping_add(rhs.0))
    }
}

impl Sub<Span> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Span) -> Timestamp {
        Timestamp(self.0.wrapping_sub(rhs.0))
    }
}

impl Add for Span {
    type Output = Span;
    fn add(self, rhs: Span) -> Span {
        Span(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Span {
    type Output = Span;
    fn sub(self, rhs: Span) -> Span {
        Span(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Timestamp {
    /// Seconds since the epoch with microseconds, like tshark's `-t e`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        write!(f, "{secs}.{:06}", nanos / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_display() {
        let a = Timestamp::from_secs_micros(10, 500);
        let b = a + Span::from_millis(20);
        assert_eq!((b - a).as_millis_f64(), 20.0);
        assert_eq!(b - Span::from_millis(20), a);
        assert_eq!(a.to_string(), "10.000500");
        assert_eq!(Timestamp::from_nanos(-1).to_string(), "-1.999999");
    }
}
