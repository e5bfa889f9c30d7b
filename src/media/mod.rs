//! Media: decoders (G.711 tables, Opus) and the timeline that turns an RTP stream into PCM
//! honouring timestamps. Pure: no I/O, no clock.

pub mod g711;
