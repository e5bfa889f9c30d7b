//! Media: decoders (G.711 tables, Opus), the RTP-timestamp timeline that turns one direction of
//! a call into PCM (`extract`), the two-direction mix, and the live adaptive jitter buffer. Pure: no I/O, no clock, no device.

pub mod g711;
pub mod jitter_buffer;
pub mod mix;
pub mod opus;
pub mod timeline;
