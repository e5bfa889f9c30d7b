//! The CTI Server feed (the PG's CTI interface, "GED-188"): agents' states, calls, and each
//! call's RTP_STARTED / RTP_STOPPED with the phone's media address, as a binding source beside
//! SIP, static phone IPs and explicit binds (docs/CTI.md).
//!
//! - [`wire`]: framing and the messages an ALL_EVENTS client reads (protocol versions up to 19
//!   with 1-byte floating fields, 20 and later with 2-byte ones), sans-IO;
//! - [`session`]: the client session (side A/B, OPEN, heartbeats, IdleTimeout, CLOSE), sans-IO
//!   on a simulated clock;
//! - [`client`]: its tokio shell, which hands agent states to the control plane and media
//!   bindings and calls to the engine thread;
//! - [`mock`]: a mock CTI Server playing a scenario, with failures on demand (tests, the demo,
//!   `capgen cti-server`).

pub mod client;
pub mod mock;
pub mod session;
pub mod wire;
