//! The appliance's and the endpoint's TCP links, both halves: [`dial`](mod@dial) (the control-plane and
//! monitor clients connect through it: TCP, then TLS 1.3, each within a timeout) and
//! [`listen`] (the servers accept through it: connection and handshake caps, TLS within a
//! timeout, TOS marking, the client certificate's names). Thin shells: no protocol here.

pub mod dial;
pub mod listen;

pub use dial::{dial, DialError, Stream, CONNECT_TIMEOUT};
