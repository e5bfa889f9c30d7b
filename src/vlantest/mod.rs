//! NIC qualification for 802.1Q-tagged SPAN traffic (the CTI OS guide's appendix A, in one
//! command). The pure part lives here: the signature sample frames carry ([`signature`]), the
//! sample frames themselves ([`sample`]) and the verdict over observed frames ([`verdict`]).
//! Sending and listening are thin shells in `cli::vlantest` over `capture`.

pub mod sample;
pub mod signature;
pub mod verdict;

pub use signature::Signature;
pub use verdict::{Cause, Expectation, FrameClass, Observation, Tally, Verdict};
