//! The appliance's shells around the sans-IO cores: the engine thread that runs the
//! [`Router`](crate::router::Router) over the capture pipelines, the Prometheus metrics
//! endpoint, and the audit trail of who listened to whom. `silentmon server` (in `cli`) wires
//! them to the control plane and the monitor service.
//!
//! Rules: no protocol or media decision is made here; the engine thread never waits on a
//! network task (commands come over a channel it polls between batches, snapshots go out over a
//! `watch` it overwrites); counters are atomics readers copy, never locks on the packet path.

pub mod actions;
pub mod assembly;
pub mod audit;
#[cfg(test)]
mod endings;
pub mod engine_loop;
pub mod metrics;
