//! Login throttling, sans-IO on an injected clock: failed logins are counted per account *from
//! one address* and per address (any accounts). Past a few free failures, every further
//! failure blocks that key for a delay that doubles (1 s, 2 s, 4 s ... up to 5 minutes); a
//! blocked login is refused at once, without running the password hash.
//!
//! Rules: an attacker guessing one supervisor's password from one address is slowed to about
//! one guess per 5 minutes, and one address guessing many accounts likewise; the real
//! supervisor logging in from another address is never delayed (no per-account lock across
//! addresses, so nobody can lock a supervisor out). A success forgets that account's failures
//! from that address. A key in the throttled state is a *lockout* for the audit trail: it
//! starts at the first delay and ends when the key's failures are forgotten (a success, or
//! [`ThrottleConfig::forget_after`] without failures). Memory is bounded: at most
//! [`ThrottleConfig::max_entries`] keys, the stalest forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::time::{Span, Timestamp};

/// Throttle settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures of one account from one address before the delays begin.
    pub account_free: u32,
    /// Failures from one address (any accounts) before the delays begin.
    pub source_free: u32,
    /// The first delay, doubled per further failure.
    pub base_delay: Span,
    /// The longest delay.
    pub max_delay: Span,
    /// A key without failures for this long is forgotten (its lockout ends).
    pub forget_after: Span,
    /// Most keys remembered.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            account_free: 3,
            source_free: 10,
            base_delay: Span::from_secs(1),
            max_delay: Span::from_secs(300),
            forget_after: Span::from_secs(15 * 60),
            max_entries: 10_000,
        }
    }
}

/// What a throttle key counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// One account (`mode id`) from one address.
    Account(String, IpAddr),
    /// One address, any accounts.
    Source(IpAddr),
}

impl Key {
    fn scope(&self) -> String {
        match self {
            Key::Account(account, ip) => format!("{account} from {ip}"),
            Key::Source(ip) => format!("logins from {ip}"),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    blocked_until: Timestamp,
    last_failure: Timestamp,
    /// A refused attempt inside the current block was reported already.
    refusal_reported: bool,
}

/// A lockout that started or ended, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// What is locked: `supervisor s1 from 10.0.0.5`, `logins from 10.0.0.5`.
    pub scope: String,
    /// When the current delay ends (a start), or when it ended.
    pub until: Timestamp,
}

/// Why a login is refused before its password is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// Seconds until a try is allowed again (at least 1).
    pub retry_after_s: u64,
    /// The first refusal within this delay (the audit trail records only that one).
    pub first: bool,
}

/// The throttle's state.
#[derive(Clone, Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    entries: HashMap<Key, Entry>,
    /// When the forgotten keys were last swept.
    last_sweep: Option<Timestamp>,
}

/// How often stale keys are swept (their lockouts end).
const SWEEP_EVERY: Span = Span::from_secs(10);

impl LoginThrottle {
    /// An empty throttle.
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            entries: HashMap::new(),
            last_sweep: None,
        }
    }

    fn keys(account: &str, source: IpAddr) -> [Key; 2] {
        [
            Key::Account(account.to_owned(), source),
            Key::Source(source),
        ]
    }

    /// Whether a login of `account` (`mode id`) from `source` may be checked at `now`:
    /// `Err` says for how long it may not.
    pub fn check(
        &mut self,
        now: Timestamp,
        account: &str,
        source: IpAddr,
    ) -> Result<(), Throttled> {
        let mut worst: Option<(Timestamp, bool)> = None;
        for key in Self::keys(account, source) {
            if let Some(e) = self.entries.get_mut(&key) {
                if now < e.blocked_until {
                    let first = !std::mem::replace(&mut e.refusal_reported, true);
                    if worst.is_none_or(|(t, _)| e.blocked_until > t) {
                        worst = Some((e.blocked_until, first));
                    }
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((until, first)) => Err(Throttled {
                retry_after_s: ((until - now).as_nanos().max(0) as u64)
                    .div_ceil(1_000_000_000)
                    .max(1),
                first,
            }),
        }
    }

    /// A failed login of `account` from `source` at `now`; returns the lockouts it starts.
    pub fn failed(&mut self, now: Timestamp, account: &str, source: IpAddr) -> Vec<Lockout> {
        let mut started = Vec::new();
        for key in Self::keys(account, source) {
            let free = match key {
                Key::Account(..) => self.config.account_free,
                Key::Source(_) => self.config.source_free,
            };
            if !self.entries.contains_key(&key) {
                self.make_room();
            }
            let e = self.entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                blocked_until: now,
                last_failure: now,
                refusal_reported: false,
            });
            e.failures = e.failures.saturating_add(1);
            e.last_failure = now;
            if e.failures > free {
                let doublings = (e.failures - free - 1).min(30);
                let delay = Span::from_nanos(
                    self.config
                        .base_delay
                        .as_nanos()
                        .saturating_mul(1 << doublings)
                        .min(self.config.max_delay.as_nanos()),
                );
                e.blocked_until = now + delay;
                e.refusal_reported = false;
                if e.failures == free + 1 {
                    started.push(Lockout {
                        scope: key.scope(),
                        until: e.blocked_until,
                    });
                }
            }
        }
        started
    }

    /// A successful login of `account` from `source`: that account's failures from that
    /// address are forgotten (a lockout of it ends). The address's count stays.
    pub fn succeeded(&mut self, now: Timestamp, account: &str, source: IpAddr) -> Vec<Lockout> {
        let key = Key::Account(account.to_owned(), source);
        let free = self.config.account_free;
        match self.entries.remove(&key) {
            Some(e) if e.failures > free => vec![Lockout {
                scope: key.scope(),
                until: now,
            }],
            _ => Vec::new(),
        }
    }

    /// When [`LoginThrottle::handle_timeout`] should next run (None: nothing remembered).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.entries.is_empty() {
            return None;
        }
        Some(
            self.last_sweep
                .map_or(Timestamp::from_nanos(0), |t| t + SWEEP_EVERY),
        )
    }

    /// Forgets keys without failures for `forget_after`; returns the lockouts that ended.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<Lockout> {
        self.last_sweep = Some(now);
        let (cfg, mut ended) = (self.config, Vec::new());
        self.entries.retain(|key, e| {
            let keep = now - e.last_failure < cfg.forget_after;
            let free = match key {
                Key::Account(..) => cfg.account_free,
                Key::Source(_) => cfg.source_free,
            };
            if !keep && e.failures > free {
                ended.push(Lockout {
                    scope: key.scope(),
                    until: now,
                });
            }
            keep
        });
        ended
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the stalest key when the table is full.
    fn make_room(&mut self) {
        if self.entries.len() < self.config.max_entries {
            return;
        }
        if let Some(stalest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| k.clone())
        {
            self.entries.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_nanos(s * 1_000_000_000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_account_from_one_address_is_slowed_exponentially_and_others_are_not() {
        let mut t = LoginThrottle::new(ThrottleConfig::default());
        let (attacker, real) = (ip("10.0.0.66"), ip("10.0.0.5"));
        for _ in 0..3 {
            assert_eq!(t.check(at(0), "supervisor s1", attacker), Ok(()));
            assert!(t.failed(at(0), "supervisor s1", attacker).is_empty());
        }
        // The fourth failure starts the lockout: 1 s, then 2 s, 4 s...
        assert_eq!(t.check(at(0), "supervisor s1", attacker), Ok(()));
        let started = t.failed(at(0), "supervisor s1", attacker);
        assert_eq!(
            started,
            vec![Lockout {
                scope: "supervisor s1 from 10.0.0.66".into(),
                until: at(1)
            }]
        );
        let refused = t.check(at(0), "supervisor s1", attacker).unwrap_err();
        assert_eq!(
            refused,
            Throttled {
                retry_after_s: 1,
                first: true
            }
        );
        assert!(!t.check(at(0), "supervisor s1", attacker).unwrap_err().first);
        assert_eq!(t.check(at(1), "supervisor s1", attacker), Ok(()));
        t.failed(at(1), "supervisor s1", attacker);
        assert_eq!(
            t.check(at(2), "supervisor s1", attacker)
                .unwrap_err()
                .retry_after_s,
            1
        );
        assert_eq!(t.check(at(3), "supervisor s1", attacker), Ok(()));
        t.failed(at(3), "supervisor s1", attacker);
        assert_eq!(
            t.check(at(3), "supervisor s1", attacker)
                .unwrap_err()
                .retry_after_s,
            4
        );
        // The real supervisor, from its own address, is never delayed.
        assert_eq!(t.check(at(3), "supervisor s1", real), Ok(()));
        // Many failures: capped at 5 minutes.
        for i in 0..20 {
            t.failed(at(1000 + i), "supervisor s1", attacker);
        }
        assert_eq!(
            t.check(at(1019), "supervisor s1", attacker)
                .unwrap_err()
                .retry_after_s,
            300
        );
    }

    #[test]
    fn one_address_guessing_many_accounts_is_slowed_too() {
        let mut t = LoginThrottle::new(ThrottleConfig::default());
        let a = ip("192.0.2.1");
        for i in 0..10 {
            t.failed(at(0), &format!("supervisor s{i}"), a);
        }
        assert_eq!(t.check(at(0), "supervisor s99", a), Ok(()));
        let started = t.failed(at(0), "supervisor s99", a);
        assert!(
            started.iter().any(|l| l.scope == "logins from 192.0.2.1"),
            "{started:?}"
        );
        assert!(t.check(at(0), "supervisor s100", a).is_err());
        assert_eq!(t.check(at(0), "supervisor s100", ip("192.0.2.2")), Ok(()));
    }

    #[test]
    fn success_and_quiet_time_end_lockouts() {
        let mut t = LoginThrottle::new(ThrottleConfig::default());
        let a = ip("10.0.0.66");
        for _ in 0..4 {
            t.failed(at(0), "agent 5001", a);
        }
        let ended = t.succeeded(at(5), "agent 5001", a);
        assert_eq!(ended.len(), 1);
        assert_eq!(t.check(at(5), "agent 5001", a), Ok(()));
        for _ in 0..4 {
            t.failed(at(10), "agent 5002", a);
        }
        assert_eq!(t.poll_timeout(), Some(at(0)));
        assert!(t.handle_timeout(at(100)).is_empty());
        assert_eq!(t.poll_timeout(), Some(at(110)));
        let ended = t.handle_timeout(at(10 + 15 * 60));
        assert_eq!(
            ended,
            vec![Lockout {
                scope: "agent 5002 from 10.0.0.66".into(),
                until: at(910)
            }]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_stalest() {
        let mut t = LoginThrottle::new(ThrottleConfig {
            max_entries: 10,
            ..ThrottleConfig::default()
        });
        for i in 0..100u8 {
            t.failed(at(i as i64), "x", IpAddr::from([10, 0, 0, i]));
        }
        assert!(t.len() <= 10, "{}", t.len());
    }
}
