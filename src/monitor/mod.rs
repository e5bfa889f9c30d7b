//! The monitor service (TCP 42228): monitored agents' RTP from the engine thread to supervisor
//! endpoints over TLS.
//!
//! Words: the *monitor service* is this module and its port; a *monitor* is one grant (a
//! `MonitorId`: supervisor S hears agent A) that the control plane decides; *monitor mode* is
//! a control-plane session mode (every agent, password protected) and has nothing to do with
//! either.
//!
//! - [`wire`]: the frame codec (length-prefixed media frames and JSON control objects), sans-IO.
//! - [`fanout`]: the engine thread's [`Publisher`](fanout::Publisher) and the per-endpoint
//!   [`Subscriber`](fanout::Subscriber) queues: no lock, no allocation and no wait per packet;
//!   a slow endpoint loses its oldest frames, counted.
//! - [`registry`]: monitors the control plane granted, their single-use session keys, who
//!   holds each.
//! - `endpoint_conn` (crate-private): one endpoint connection's logic, sans-IO (attach, detach,
//!   revocation, heartbeats, refusals), tested in memory on a simulated clock.
//! - [`service`]: the tokio + tokio-rustls shell: accept loop, attach, heartbeats, batched
//!   writes, ended monitors reported to the control plane.
//! - [`service_client`]: the endpoint side (a sans-IO frame `Decoder` under a tokio shell; media
//!   events carry recycled buffers, so the steady state allocates nothing per frame).
//! - [`stats`]: counters for the metrics endpoint.
//!
//! Dependency direction: `service`/`service_client` -> `fanout`/`registry` -> `wire` -> `codec`,
//! `binding`, `time`; `fanout` reads `router`'s `Forward` and `Notice`.

pub(crate) mod endpoint_conn;
pub mod fanout;
pub mod registry;
pub mod service;
pub mod service_client;
pub mod stats;
pub mod wire;
