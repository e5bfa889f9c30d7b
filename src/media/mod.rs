//! Media: decoders (G.711 tables, G.722 through spandsp, G.729 through libbcg729, Opus), the RTP-timestamp timeline that turns one direction of
//! a call into PCM (`extract`), the two-direction mix, the live adaptive jitter buffer, loss
//! concealment and comfort noise (`conceal`), the supervisor's listening pipeline (`listen`)
//! and the device-format stage (`output`). Pure: no I/O, no clock, no device.

pub mod conceal;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod g729;
pub mod jitter_buffer;
pub mod listen;
pub mod mix;
pub mod opus;
pub mod output;
pub mod quality;
pub mod timeline;
