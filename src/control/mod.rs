//! The control plane (CTI object server, TCP 42028). Sans-IO: the frame codec ([`frame`]), the
//! typed requests ([`request`]), the typed replies and events ([`reply`]), the session logic
//! ([`plane`], with [`login`], [`monitoring`] and `lists`), which decides every monitor's life.
//! Shells: [`server`] (tokio/TLS, 42028) and [`client`].

pub mod client;
pub mod frame;
mod lists;
pub mod login;
pub mod monitoring;
pub mod password_pool;
pub mod plane;
pub mod reply;
pub mod request;
pub mod server;
