//! The supervisor endpoint's shells around the media core: sound output through cpal
//! (`playout`) and call recording to WAV files (`recorder`). Thin: every decision about what
//! to play lives in `media::listen` and `media::output`; these files only move samples to a
//! device or a file.

pub mod playout;
pub mod recorder;

pub use playout::{list_devices, Playout, PlayoutStats};
pub use recorder::Recorder;
