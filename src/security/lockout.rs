//! Monitor-mode admission (CTI OS's MonitorModeDisableThreshold / MonitorModeDisableDuration /
//! MaxMonitorModeConnections): after `threshold` consecutive bad passwords monitor mode is
//! refused for `duration`; at most `max_connections` monitor-mode sessions at once. A state
//! machine fed `now`: no clock reads, so the 15 minutes are tested without waiting.

use crate::time::{Span, Timestamp};

/// Settings, with CTI OS's defaults.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Consecutive failures that disable monitor mode (MonitorModeDisableThreshold, 3).
    pub threshold: u32,
    /// How long it stays disabled (MonitorModeDisableDuration, 15 minutes).
    pub duration: Span,
    /// Most monitor-mode sessions at once (MaxMonitorModeConnections, 7).
    pub max_connections: u32,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            threshold: 3,
            duration: Span::from_secs(15 * 60),
            max_connections: 7,
        }
    }
}

/// The answer to a monitor-mode login.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Password right, a slot free: admitted (call [`MonitorModeGate::release`] when it ends).
    Admitted,
    /// Wrong password (`remaining` more before the lockout).
    BadPassword {
        /// Failures left before monitor mode is disabled.
        remaining: u32,
    },
    /// Monitor mode is disabled until `until` (after too many failures).
    Disabled {
        /// When it is enabled again.
        until: Timestamp,
    },
    /// All monitor-mode slots are taken.
    Full,
}

/// Monitor-mode admission state.
#[derive(Clone, Debug)]
pub struct MonitorModeGate {
    config: LockoutConfig,
    failures: u32,
    disabled_until: Option<Timestamp>,
    active: u32,
}

impl MonitorModeGate {
    /// A gate with no failures and no sessions.
    pub fn new(config: LockoutConfig) -> Self {
        MonitorModeGate {
            config,
            failures: 0,
            disabled_until: None,
            active: 0,
        }
    }

    /// A monitor-mode login at `now` whose password check gave `password_ok`.
    pub fn login(&mut self, now: Timestamp, password_ok: bool) -> Admission {
        if let Some(until) = self.disabled_until {
            if now < until {
                return Admission::Disabled { until };
            }
            self.disabled_until = None;
            self.failures = 0;
        }
        if !password_ok {
            self.failures += 1;
            if self.failures >= self.config.threshold {
                let until = now + self.config.duration;
                self.disabled_until = Some(until);
                return Admission::Disabled { until };
            }
            return Admission::BadPassword {
                remaining: self.config.threshold - self.failures,
            };
        }
        self.failures = 0;
        if self.active >= self.config.max_connections {
            return Admission::Full;
        }
        self.active += 1;
        Admission::Admitted
    }

    /// Whether a login at `now` would be refused whatever its password: `Disabled` during a
    /// lockout, `Full` with every slot taken; None otherwise. Changes nothing.
    pub fn peek(&self, now: Timestamp) -> Option<Admission> {
        match self.disabled_until {
            Some(until) if now < until => Some(Admission::Disabled { until }),
            _ if self.active >= self.config.max_connections => Some(Admission::Full),
            _ => None,
        }
    }

    /// An admitted monitor-mode session ended.
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Monitor-mode sessions now.
    pub fn active(&self) -> u32 {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn three_bad_passwords_disable_for_fifteen_minutes() {
        let mut g = MonitorModeGate::new(LockoutConfig::default());
        assert_eq!(
            g.login(at(0), false),
            Admission::BadPassword { remaining: 2 }
        );
        assert_eq!(
            g.login(at(1), false),
            Admission::BadPassword { remaining: 1 }
        );
        let until = at(2 + 900);
        assert_eq!(g.login(at(2), false), Admission::Disabled { until });
        // Even the right password is refused while disabled.
        assert_eq!(g.login(at(600), true), Admission::Disabled { until });
        assert_eq!(g.login(at(901), true), Admission::Disabled { until });
        assert_eq!(g.login(at(902), true), Admission::Admitted);
        // A success resets the count of consecutive failures.
        assert_eq!(
            g.login(at(903), false),
            Admission::BadPassword { remaining: 2 }
        );
        assert_eq!(g.login(at(904), true), Admission::Admitted);
        assert_eq!(
            g.login(at(905), false),
            Admission::BadPassword { remaining: 2 }
        );
    }

    #[test]
    fn at_most_seven_sessions() {
        let mut g = MonitorModeGate::new(LockoutConfig::default());
        for _ in 0..7 {
            assert_eq!(g.login(at(0), true), Admission::Admitted);
        }
        assert_eq!(g.login(at(0), true), Admission::Full);
        g.release();
        assert_eq!(g.active(), 6);
        assert_eq!(g.login(at(0), true), Admission::Admitted);
    }
}
