//! Logins, sans-IO (part of [`ControlPlane`]): a `Login` is checked against the throttle,
//! resolved to an account, and its password handed to the shell as a [`Verification`] (an
//! unknown id, or an account without a password, is verified against a dummy hash: the same
//! cost, so timing tells nothing); the answer ([`ControlPlane::handle_verified`]) completes or
//! refuses the login.
//!
//! Rules: one login in flight per connection (a pipelined second one is refused); at most
//! `max_verifying` in flight in all (a login past it is refused: try again). The client is
//! told `unknown agent or wrong password` / `unknown supervisor or wrong password` whatever
//! the real reason; the audit trail gets the real one. Every failed login counts for the
//! throttle (per account from the address, and per address); a success forgets that account's
//! failures from that address. The monitor-mode lockout (3 wrong passwords -> 15 minutes, 7
//! sessions) applies as the CTI OS guide describes it, and its start and end are audited.

use std::net::SocketAddr;
use std::sync::Arc;

use super::plane::{ControlPlane, Mode, SessionId, Verification};
use super::reply::Reply;
use super::request::Login;
use crate::security::audit::AuditEvent;
use crate::security::lockout::Admission;
use crate::security::password;
use crate::time::Timestamp;

/// Who a login names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Account {
    /// Agent by index.
    Agent(usize),
    /// Supervisor by index.
    Supervisor(usize),
    /// Monitor mode.
    Monitor,
    /// Nobody who may log in: why (for the audit trail).
    Refused(&'static str),
}

/// A login whose password is being verified.
#[derive(Clone, Debug)]
pub(super) struct PendingLogin {
    session: SessionId,
    peer: SocketAddr,
    mode: Mode,
    id: String,
    instrument: Option<String>,
    account: Account,
}

impl PendingLogin {
    /// The throttle's name for the account: `supervisor s1`.
    fn throttle_key(&self) -> String {
        format!("{} {}", self.mode.name(), self.id)
    }
}

/// Why a login is refused: the real reason (audit trail), what the client is told, and
/// whether it counts as a wrong credential for the throttle.
#[derive(Copy, Clone, Debug)]
struct Refusal {
    why: &'static str,
    told: &'static str,
    credentials: bool,
}

impl Refusal {
    /// A wrong or unusable credential (counts for the throttle).
    fn credentials(why: &'static str, told: &'static str) -> Refusal {
        Refusal {
            why,
            told,
            credentials: true,
        }
    }

    /// Anything else (a full gate, an agent logged in already): said as it is.
    fn other(why: &'static str) -> Refusal {
        Refusal {
            why,
            told: why,
            credentials: false,
        }
    }
}

/// What the client is told when a login fails for a password-related reason.
fn public_reason(mode: Mode) -> &'static str {
    match mode {
        Mode::Agent => "unknown agent or wrong password",
        Mode::Supervisor => "unknown supervisor or wrong password",
        Mode::Monitor => "wrong password",
    }
}

impl ControlPlane {
    /// A `Login` from session `sid`.
    pub(super) fn login(&mut self, now: Timestamp, sid: SessionId, l: Login) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let peer = s.peer;
        if s.login.is_some() {
            return self.refuse(sid, "Login", "a login is already in progress");
        }
        let mut pending = PendingLogin {
            session: sid,
            peer,
            mode: l.mode,
            id: l.id,
            instrument: l.instrument,
            account: Account::Refused("unknown"),
        };
        if let Err(t) = self.throttle.check(now, &pending.throttle_key(), peer.ip()) {
            self.counters.logins_failed += 1;
            self.counters.logins_throttled += 1;
            let reason = format!("too many failed logins: try again in {} s", t.retry_after_s);
            if t.first {
                self.audit_login(&pending, &format!("throttled ({reason})"));
            }
            return self.refuse(sid, "Login", &reason);
        }
        if l.mode == Mode::Monitor {
            if let Some(r) = self.monitor_mode_closed(now) {
                return self.fail(now, pending, r);
            }
        }
        let (account, hash) = self.account(l.mode, &pending.id);
        pending.account = account;
        match hash {
            // A passwordless account in a lab configuration: nothing to verify.
            None if !matches!(account, Account::Refused(_)) => self.complete(now, pending, true),
            _ if self.logins.len() >= self.dir.limits.max_verifying => {
                let reason = "too many logins in progress: try again";
                self.counters.logins_failed += 1;
                self.audit_login(&pending, reason);
                self.refuse(sid, "Login", reason);
            }
            _ => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let hash = hash.unwrap_or_else(|| Arc::from(password::dummy_hash()));
                self.verifications.push_back(Verification {
                    ticket,
                    password: l.password,
                    hash,
                });
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.login = Some(ticket);
                }
                self.logins.insert(ticket, pending);
            }
        }
    }

    /// Why monitor mode refuses every login now (not configured, locked out, full), if it
    /// does: no password is checked then. A try while locked out counts for the throttle.
    fn monitor_mode_closed(&self, now: Timestamp) -> Option<Refusal> {
        if self.dir.monitor_password_hash.is_none() {
            return Some(Refusal::credentials(
                "monitor mode is not configured",
                "monitor mode is not configured",
            ));
        }
        match self.gate.peek(now) {
            Some(Admission::Disabled { .. }) => {
                let r = "monitor mode disabled after repeated wrong passwords";
                Some(Refusal::credentials(r, r))
            }
            Some(Admission::Full) => Some(Refusal::other("too many monitor-mode connections")),
            _ => None,
        }
    }

    /// The account a login names and the hash its password is checked against (None: no
    /// password is checked, or there is none to check).
    fn account(&self, mode: Mode, id: &str) -> (Account, Option<Arc<str>>) {
        let hash = |h: &Option<String>| h.as_deref().map(Arc::from);
        match mode {
            Mode::Agent => match self.agent_index(id) {
                None => (Account::Refused("unknown agent"), None),
                Some(a) => {
                    self.with_password(Account::Agent(a), hash(&self.dir.agents[a].password_hash))
                }
            },
            Mode::Supervisor => match self.dir.supervisors.iter().position(|s| s.id == id) {
                None => (Account::Refused("unknown supervisor"), None),
                Some(s) => self.with_password(
                    Account::Supervisor(s),
                    hash(&self.dir.supervisors[s].password_hash),
                ),
            },
            Mode::Monitor => (Account::Monitor, hash(&self.dir.monitor_password_hash)),
        }
    }

    /// An account without a password logs in only when passwordless logins are on.
    fn with_password(
        &self,
        account: Account,
        hash: Option<Arc<str>>,
    ) -> (Account, Option<Arc<str>>) {
        match hash {
            None if !self.dir.passwordless => {
                (Account::Refused("no password_hash configured"), None)
            }
            h => (account, h),
        }
    }

    /// The answer to [`Verification`] `ticket`: whether the password matched its hash.
    pub fn handle_verified(&mut self, now: Timestamp, ticket: u64, matches: bool) {
        let Some(pending) = self.logins.remove(&ticket) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&pending.session) {
            if s.login == Some(ticket) {
                s.login = None;
            }
        }
        self.complete(now, pending, matches);
    }

    /// Completes a login whose password check gave `matches`.
    fn complete(&mut self, now: Timestamp, p: PendingLogin, matches: bool) {
        let wrong = Refusal::credentials("wrong password", public_reason(p.mode));
        let admitted = match p.account {
            Account::Refused(why) => Err(Refusal::credentials(why, public_reason(p.mode))),
            Account::Monitor => self.monitor_admission(now, matches),
            _ if !matches => Err(wrong),
            Account::Agent(a) if self.agent_session[a].is_some() => {
                Err(Refusal::other("agent already logged in"))
            }
            Account::Agent(a) => match &p.instrument {
                Some(i) if *i != self.dir.agents[a].agent.extension => {
                    Err(Refusal::other("instrument is not the agent's extension"))
                }
                _ => Ok(()),
            },
            Account::Supervisor(_) => Ok(()),
        };
        match admitted {
            Ok(()) => self.logged_in(now, p),
            Err(r) => self.fail(now, p, r),
        }
    }

    /// The monitor-mode gate's verdict on a checked password (a lockout that starts here is
    /// audited).
    fn monitor_admission(&mut self, now: Timestamp, matches: bool) -> Result<(), Refusal> {
        let disabled = "monitor mode disabled after repeated wrong passwords";
        match self.gate.login(now, matches) {
            Admission::Admitted => Ok(()),
            Admission::BadPassword { .. } => {
                Err(Refusal::credentials("wrong password", "wrong password"))
            }
            Admission::Disabled { until } => {
                if self.monitor_locked_until.is_none() {
                    self.monitor_locked_until = Some(until);
                    self.audit(
                        None,
                        AuditEvent::LockoutStarted {
                            scope: "monitor mode".into(),
                            until,
                        },
                    );
                }
                let why = if matches { disabled } else { "wrong password" };
                Err(Refusal::credentials(why, disabled))
            }
            Admission::Full => Err(Refusal::other("too many monitor-mode connections")),
        }
    }

    /// A refused login: counted, audited with the real reason, the client told the public
    /// one; a credentials failure counts for the throttle.
    fn fail(&mut self, now: Timestamp, p: PendingLogin, r: Refusal) {
        self.counters.logins_failed += 1;
        if r.credentials {
            for lockout in self.throttle.failed(now, &p.throttle_key(), p.peer.ip()) {
                self.audit(
                    Some(p.peer),
                    AuditEvent::LockoutStarted {
                        scope: lockout.scope,
                        until: lockout.until,
                    },
                );
            }
        }
        self.audit_login(&p, r.why);
        if self.sessions.contains_key(&p.session) {
            let reply = Reply::Refused {
                request: "Login".into(),
                reason: r.told.into(),
            };
            self.reply(p.session, &reply);
        }
    }

    fn audit_login(&mut self, p: &PendingLogin, reason: &str) {
        tracing::info!(peer = %p.peer, mode = p.mode.name(), id = %p.id, reason, "login refused");
        self.audit(
            Some(p.peer),
            AuditEvent::LoginFailed {
                mode: p.mode.name(),
                id: p.id.clone(),
                reason: reason.to_owned(),
            },
        );
    }

    /// The session `p` names is logged in (if it is still there).
    fn logged_in(&mut self, now: Timestamp, p: PendingLogin) {
        for lockout in self.throttle.succeeded(now, &p.throttle_key(), p.peer.ip()) {
            self.audit(
                Some(p.peer),
                AuditEvent::LockoutEnded {
                    scope: lockout.scope,
                },
            );
        }
        let who = match p.account {
            Account::Agent(a) => a,
            Account::Supervisor(s) => s,
            _ => 0,
        };
        let Some(s) = self.sessions.get_mut(&p.session) else {
            if p.mode == Mode::Monitor {
                self.gate.release();
            }
            return;
        };
        s.mode = Some((p.mode, who));
        let sid = p.session;
        let uid = match p.mode {
            Mode::Agent => format!("agent.{}", self.dir.agents[who].agent.id),
            Mode::Supervisor => format!("supervisor.{}", self.dir.supervisors[who].id),
            Mode::Monitor => format!("session.{sid}"),
        };
        let heartbeat_ms = (self.dir.server_heartbeat.as_nanos() / 1_000_000) as u64;
        let reply = Reply::Login {
            session: sid,
            uid,
            heartbeat_ms,
        };
        self.reply(sid, &reply);
        if p.mode == Mode::Agent {
            self.agent_session[who] = Some(sid);
            self.set_agent_state(who, "Login");
        }
    }

    /// Reports lockouts that ended by `now` (the throttle's, and monitor mode's).
    pub(super) fn lockouts_ended(&mut self, now: Timestamp) {
        if self.throttle.poll_timeout().is_some_and(|t| t <= now) {
            for lockout in self.throttle.handle_timeout(now) {
                self.audit(
                    None,
                    AuditEvent::LockoutEnded {
                        scope: lockout.scope,
                    },
                );
            }
        }
        if self.monitor_locked_until.is_some_and(|t| t <= now) {
            self.monitor_locked_until = None;
            self.audit(
                None,
                AuditEvent::LockoutEnded {
                    scope: "monitor mode".into(),
                },
            );
        }
    }
}
