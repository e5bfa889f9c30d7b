//! The control plane (CTI object server, TCP 42028): the frame codec ([`frame`]) and the session
//! logic ([`session`]), both sans-IO; the tokio/TLS shells: [`server`] (42028) and [`client`].

pub mod client;
pub mod request;
pub mod frame;
pub mod server;
pub mod session;
