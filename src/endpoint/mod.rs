//! The supervisor endpoint: its decisions (`controller`: the cluster list's failover order,
//! which monitor to (re)start and when, control-plane and monitor-service events as media
//! notices, typed errors; sans-IO), the shell that carries them out (`shell`: the control-plane
//! and monitor-service links, the local control port `local`, the media thread), its media
//! core (`media`: `MediaSession`, the core of the media loop: one
//! listening pipeline per monitored agent, output stage, recording, cushion and counters;
//! no clock, no device), the media loop shell around it (`media_loop`: the event channel and
//! the channel that returns spent RTP buffers (nothing allocated per packet), the clock, the
//! 2 ms tick against a real device, device-loss recovery), sound output through cpal
//! (`playout`; alsa-lib's own messages go to the log, `alsa_log`) and call recording to WAV
//! files (`recorder`). Every decision about what to play lives in `media::listen`,
//! `media::output` and `endpoint::media`; the shells only move samples to a device or a file.

mod alsa_log;
pub mod controller;
pub mod desk;
pub mod local;
pub mod media;
pub mod media_loop;
pub mod page;
pub mod playout;
pub mod recorder;
pub mod shell;

pub use media::{MediaSession, SessionConfig, SessionStats};
pub use media_loop::{
    handle_event, run_media, EndpointEvent, MediaClock, MediaLoopConfig, MediaReport,
};
pub use playout::{list_devices, DeviceInfo, Playout, PlayoutStats};
pub use recorder::Recorder;
