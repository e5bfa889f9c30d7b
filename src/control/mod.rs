//! The control plane (CTI object server, TCP 42028): the frame codec ([`frame`]) and the session
//! logic ([`session`]), both sans-IO. The TLS/TCP server shell joins with the appliance.

pub mod frame;
pub mod session;
