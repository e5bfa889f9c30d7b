//! The threads that check passwords for the control plane's actor: [`VERIFY_THREADS`] plain
//! threads, each with its own [`Verifier`] (one argon2 memory block, reused: the appliance's
//! memory for password checks is fixed at start, whatever the login rate). Jobs come over a
//! bounded channel ([`JOBS`]); answers go back to the actor over its bounded channel.
//!
//! Full case: the core caps the checks in flight (`SessionLimits::max_verifying`, far below
//! [`JOBS`]), so the job channel does not fill; if it ever did, the login is answered as a
//! failed check at once (the client sees a refusal, the actor never waits). The threads end
//! when the pool is dropped.

use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::mpsc;

use super::plane::Verification;
use crate::security::password::Verifier;

/// Password checks run at once.
pub const VERIFY_THREADS: usize = 2;
/// Checks queued towards the threads.
pub const JOBS: usize = 1024;

/// The checking threads.
pub struct PasswordPool {
    jobs: Option<Sender<Verification>>,
    answers: mpsc::Sender<(u64, bool)>,
    threads: Vec<JoinHandle<()>>,
}

impl PasswordPool {
    /// Starts the threads; each answer `(ticket, matched)` goes to `answers`.
    pub fn start(answers: mpsc::Sender<(u64, bool)>) -> PasswordPool {
        let (tx, rx) = crossbeam_channel::bounded::<Verification>(JOBS);
        let threads = (0..VERIFY_THREADS)
            .map(|i| {
                let (rx, answers) = (rx.clone(), answers.clone());
                std::thread::Builder::new()
                    .name(format!("passwords-{i}"))
                    .spawn(move || {
                        let mut verifier = Verifier::default();
                        for v in rx {
                            let ok = verifier.verify(&v.password, &v.hash);
                            if answers.blocking_send((v.ticket, ok)).is_err() {
                                return; // the actor is gone
                            }
                        }
                    })
                    .expect("spawning a password thread")
            })
            .collect();
        PasswordPool {
            jobs: Some(tx),
            answers,
            threads,
        }
    }

    /// Queues one check without waiting.
    pub fn check(&self, v: Verification) {
        let Some(jobs) = &self.jobs else { return };
        if let Err(TrySendError::Full(v) | TrySendError::Disconnected(v)) = jobs.try_send(v) {
            tracing::error!(
                ticket = v.ticket,
                "password checks queue full; login refused"
            );
            let _ = self.answers.try_send((v.ticket, false));
        }
    }
}

impl Drop for PasswordPool {
    fn drop(&mut self) {
        self.jobs = None; // the threads end when the queue is empty and closed
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn checks_are_answered_with_their_tickets() {
        let (tx, mut rx) = mpsc::channel(8);
        let pool = PasswordPool::start(tx);
        let hash: Arc<str> = crate::security::password::hash("pw").unwrap().into();
        for (ticket, password) in [(1, "pw"), (2, "nope")] {
            pool.check(Verification {
                ticket,
                password: password.into(),
                hash: hash.clone(),
            });
        }
        drop(pool);
        let mut got: Vec<(u64, bool)> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        got.sort();
        assert_eq!(got, [(1, true), (2, false)]);
    }
}
