//! The control plane (CTI object server, TCP 42028). Today: the frame codec ([`frame`]); the
//! session state machine, commands and the server shell join with the appliance.

pub mod frame;
