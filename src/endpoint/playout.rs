//! Sound output on cpal's default host (ALSA on Linux; PulseAudio through ALSA's pulse plugin).
//!
//! The producer (the decode task) calls [`Playout::write`] with interleaved `f32` frames in the
//! device's format ([`Playout::rate`], [`Playout::channels`]); a lock-free `rtrb` ring carries
//! them to the audio callback. The callback never blocks, allocates or logs: it copies what is
//! there, fills the rest with silence and counts the short callback as an underrun in an
//! atomic. The error callback records device loss ([`Playout::is_lost`]): a vanished device,
//! an invalidated stream, or a storm of errors without a data callback in between (what a
//! dead PulseAudio server looks like through ALSA's pulse plugin); the caller then drops the
//! stream or calls [`Playout::reopen`] when it wants to retry. A device may take a second or
//! two after `open` before it asks for frames ([`PlayoutStats::frames_requested`] tells).
//! Underruns are logged from the producer side, at most once every 5 seconds.
//!
//! alsa-lib prints its own errors to stderr (a dozen lines per failed open on a machine
//! without a sound card, so once a second while the endpoint retries); before the first
//! device call they are routed into the log at debug level instead
//! (`alsa_log`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

/// Seconds of audio the ring holds.
const RING_SECS: f32 = 0.5;
/// Stream errors in a row, without the device asking for a single frame in between, that
/// mean the device is gone: a dead PulseAudio server makes ALSA's pulse plugin fail every
/// call at once (hundreds of thousands per second), while a healthy stream's rare errors
/// (an xrun, the I/O errors of a late start) stay far below this.
const ERROR_STORM: u64 = 10_000;
/// Least time between two underrun log lines.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Playout errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No output device (of that name).
    #[error("no output device{}", .0.as_ref().map(|n| format!(" named {n:?}")).unwrap_or_default())]
    NoDevice(Option<String>),
    /// The device's default format uses a sample type we do not convert to.
    #[error("unsupported sample format {0}")]
    UnsupportedFormat(SampleFormat),
    /// cpal failed (querying, building or starting the stream).
    #[error("audio device: {0}")]
    Cpal(#[from] cpal::Error),
}

/// Counters shared with the audio callback.
#[derive(Debug, Default)]
struct Shared {
    underruns: AtomicU64,
    frames_played: AtomicU64,
    frames_requested: AtomicU64,
    callback_frames: AtomicU64,
    stream_errors: AtomicU64,
    errors_since_data: AtomicU64,
    /// The device's own delay at the last callback, µs (what it reports: its buffer and,
    /// through PulseAudio, the server's).
    device_delay_us: AtomicU64,
    started: AtomicBool,
    lost: AtomicBool,
}

/// Playout counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Callbacks that found too little in the ring (after the first write).
    pub underruns: u64,
    /// Frames the callback took from the ring.
    pub frames_played: u64,
    /// Frames the device asked the callback for (silence included): grows at the device
    /// rate once the device really plays, which can be a second or two after `open`.
    pub frames_requested: u64,
    /// The largest callback so far, in frames (about the device's period): the device takes
    /// audio in pieces this large, so less than that queued means an underrun.
    pub callback_frames: u64,
    /// Frames `write` could not place because the ring was full.
    pub frames_dropped: u64,
    /// Errors the stream reported that did not end it.
    pub stream_errors: u64,
    /// Frames queued for the callback now (a gauge: what the device plays before anything
    /// written next).
    pub queued_frames: u64,
    /// The device's own delay as it reported it at the last callback, µs: from the callback
    /// to the sound leaving the device (through PulseAudio, the server's latency too).
    pub device_delay_us: u64,
}

/// An output device of cpal's default host, as `--list-devices` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The host's name for it (ALSA: the PCM name, `pulse`, `default`, `hw:CARD=...`), what
    /// `--device` takes.
    pub id: String,
    /// Its description (`--device` takes this too).
    pub description: String,
    /// Whether it is the default output device.
    pub default: bool,
}

/// The host's name of `d` (without cpal's `host:` prefix); None when it is gone.
fn device_id(d: &cpal::Device) -> Option<String> {
    d.id().ok().map(|id| id.id().to_string())
}

/// Whether `d` is the device `name` means: its host name (`pulse`), cpal's full id
/// (`alsa:pulse`) or its description.
fn device_is(d: &cpal::Device, name: &str) -> bool {
    d.id()
        .map(|id| id.id() == name || id.to_string() == name)
        .unwrap_or(false)
        || d.description()
            .map(|desc| desc.name() == name)
            .unwrap_or(false)
}

/// Whether cpal's default host has an output device `name` means (see [`Playout::open`]).
pub fn has_device(name: &str) -> bool {
    super::alsa_log::route_alsa_errors();
    cpal::default_host()
        .output_devices()
        .map(|mut devices| devices.any(|d| device_is(&d, name)))
        .unwrap_or(false)
}

/// The output devices of cpal's default host.
pub fn list_devices() -> Vec<DeviceInfo> {
    super::alsa_log::route_alsa_errors();
    let host = cpal::default_host();
    let default = host.default_output_device().as_ref().and_then(device_id);
    match host.output_devices() {
        Ok(devices) => devices
            .filter_map(|d| {
                let id = device_id(&d)?;
                Some(DeviceInfo {
                    default: default.as_deref() == Some(id.as_str()),
                    description: d
                        .description()
                        .map(|desc| desc.name().to_string())
                        .unwrap_or_default(),
                    id,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// An open output stream and the producer end of its ring.
pub struct Playout {
    device: Option<String>,
    period: Option<Duration>,
    _stream: cpal::Stream,
    producer: rtrb::Producer<f32>,
    capacity: usize,
    shared: Arc<Shared>,
    rate: u32,
    channels: u16,
    dropped: u64,
    logged_underruns: u64,
    last_log: Option<Instant>,
}

impl Playout {
    /// Opens `device` (by name; the default output device when `None`) at its default output
    /// format, and starts the stream (silent until the first write).
    ///
    /// `period` asks for the device's period (the callback size; cpal keeps two periods
    /// queued in the device): `None` takes the device's default (through PulseAudio 10.7 ms
    /// callbacks, but 21 to 31 ms of delay reported), `Some` that period: a short one is less
    /// delay, but any longer stall of this process empties the device, which PulseAudio fills
    /// with silence; a longer one absorbs stalls at the cost of that much latency. It is
    /// clamped to the range the device reports.
    pub fn open(device: Option<&str>, period: Option<Duration>) -> Result<Playout, Error> {
        super::alsa_log::route_alsa_errors();
        let host = cpal::default_host();
        let dev = match device {
            None => host.default_output_device(),
            Some(name) => host.output_devices()?.find(|d| device_is(d, name)),
        }
        .ok_or_else(|| Error::NoDevice(device.map(str::to_string)))?;
        let supported = dev.default_output_config()?;
        let format = supported.sample_format();
        let mut config = supported.config();
        let rate = config.sample_rate;
        if let Some(period) = period {
            config.buffer_size =
                cpal::BufferSize::Fixed(period_frames(period, rate, supported.buffer_size()));
        }
        let channels = config.channels;
        let capacity = ((rate as f32 * RING_SECS) as usize).max(1024) * channels as usize;
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared::default());
        let stream = match format {
            SampleFormat::F32 => build::<f32>(&dev, config, consumer, shared.clone())?,
            SampleFormat::I16 => build::<i16>(&dev, config, consumer, shared.clone())?,
            SampleFormat::U16 => build::<u16>(&dev, config, consumer, shared.clone())?,
            SampleFormat::I32 => build::<i32>(&dev, config, consumer, shared.clone())?,
            other => return Err(Error::UnsupportedFormat(other)),
        };
        stream.play()?;
        tracing::info!(device = device.unwrap_or("default"), rate, channels, %format, buffer = ?config.buffer_size, "playout opened");
        Ok(Playout {
            device: device.map(str::to_string),
            period,
            _stream: stream,
            producer,
            capacity,
            shared,
            rate,
            channels,
            dropped: 0,
            logged_underruns: 0,
            last_log: None,
        })
    }

    /// Closes the stream and opens the same device again (after [`Playout::is_lost`]).
    pub fn reopen(&mut self) -> Result<(), Error> {
        let fresh = Playout::open(self.device.as_deref(), self.period)?;
        *self = fresh;
        Ok(())
    }

    /// Device rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Device channels (frames passed to `write` are interleaved with this many).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Samples the ring can take now.
    pub fn free(&self) -> usize {
        self.producer.slots()
    }

    /// Samples queued in the ring, not yet taken by the callback (the output latency this
    /// side of the device's own buffer).
    pub fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.producer.slots())
    }

    /// Queues interleaved samples; returns how many were written (the rest did not fit and
    /// are counted as dropped). Never blocks.
    pub fn write(&mut self, samples: &[f32]) -> usize {
        let (written, rest) = self.producer.push_partial_slice(samples);
        let n = written.len();
        self.dropped += (rest.len() / self.channels.max(1) as usize) as u64;
        if n > 0 {
            self.shared.started.store(true, Ordering::Relaxed);
        }
        self.log_underruns();
        n
    }

    fn log_underruns(&mut self) {
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            return;
        }
        let total = self.shared.underruns.load(Ordering::Relaxed);
        if total > self.logged_underruns {
            tracing::warn!(
                underruns_total = total,
                new = total - self.logged_underruns,
                "playout underruns"
            );
            self.logged_underruns = total;
            self.last_log = Some(now);
        }
    }

    /// True once the error callback reported a stream error (device lost).
    pub fn is_lost(&self) -> bool {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// Counters.
    pub fn stats(&self) -> PlayoutStats {
        PlayoutStats {
            underruns: self.shared.underruns.load(Ordering::Relaxed),
            frames_played: self.shared.frames_played.load(Ordering::Relaxed),
            frames_requested: self.shared.frames_requested.load(Ordering::Relaxed),
            callback_frames: self.shared.callback_frames.load(Ordering::Relaxed),
            frames_dropped: self.dropped,
            stream_errors: self.shared.stream_errors.load(Ordering::Relaxed),
            queued_frames: (self.queued() / usize::from(self.channels.max(1))) as u64,
            device_delay_us: self.shared.device_delay_us.load(Ordering::Relaxed),
        }
    }
}

/// `period` in frames at `rate`, within what the device supports.
fn period_frames(period: Duration, rate: u32, supported: &cpal::SupportedBufferSize) -> u32 {
    let frames = (period.as_secs_f64() * rate as f64).round().max(1.0) as u32;
    match *supported {
        cpal::SupportedBufferSize::Range { min, max } if min <= max => frames.clamp(min, max),
        _ => frames,
    }
}

fn build<T>(
    dev: &cpal::Device,
    config: cpal::StreamConfig,
    mut consumer: rtrb::Consumer<f32>,
    shared: Arc<Shared>,
) -> Result<cpal::Stream, Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = config.channels.max(1) as usize;
    let cb_shared = shared.clone();
    let data = move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
        let at = info.timestamp();
        let delay = at.playback.duration_since(at.callback).as_micros();
        cb_shared
            .device_delay_us
            .store(delay.min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        let n = consumer.slots().min(out.len());
        let mut filled = 0;
        if let Ok(chunk) = consumer.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            for (o, s) in out.iter_mut().zip(a.iter().chain(b)) {
                *o = T::from_sample(*s);
            }
            filled = a.len() + b.len();
            chunk.commit_all();
        }
        for o in &mut out[filled..] {
            *o = T::EQUILIBRIUM;
        }
        cb_shared
            .frames_played
            .fetch_add((filled / channels) as u64, Ordering::Relaxed);
        cb_shared
            .frames_requested
            .fetch_add((out.len() / channels) as u64, Ordering::Relaxed);
        cb_shared
            .callback_frames
            .fetch_max((out.len() / channels) as u64, Ordering::Relaxed);
        cb_shared.errors_since_data.store(0, Ordering::Relaxed);
        if filled < out.len() && cb_shared.started.load(Ordering::Relaxed) {
            cb_shared.underruns.fetch_add(1, Ordering::Relaxed);
        }
    };
    let err_shared = shared;
    let error = move |e: cpal::Error| {
        // A vanished device or an invalidated stream is loss; the rest (a reroute of the
        // default device, refused real-time scheduling, an xrun) leaves the stream playing,
        // unless it comes as a storm with no data callback in between (see ERROR_STORM).
        use cpal::ErrorKind as K;
        match e.kind() {
            K::DeviceNotAvailable | K::StreamInvalidated | K::HostUnavailable => {
                err_shared.lost.store(true, Ordering::Relaxed)
            }
            _ => {
                err_shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                let run = err_shared.errors_since_data.fetch_add(1, Ordering::Relaxed) + 1;
                if run >= ERROR_STORM {
                    err_shared.lost.store(true, Ordering::Relaxed);
                }
            }
        }
    };
    Ok(dev.build_output_stream::<T, _, _>(config, data, error, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::SupportedBufferSize;

    #[test]
    fn a_period_is_converted_at_the_device_rate_and_clamped_to_its_range() {
        let any = SupportedBufferSize::Unknown;
        assert_eq!(period_frames(Duration::from_millis(50), 48_000, &any), 2400);
        assert_eq!(period_frames(Duration::from_millis(50), 44_100, &any), 2205);
        assert_eq!(period_frames(Duration::ZERO, 48_000, &any), 1);
        let range = SupportedBufferSize::Range { min: 64, max: 2048 };
        assert_eq!(
            period_frames(Duration::from_millis(50), 48_000, &range),
            2048
        );
        assert_eq!(
            period_frames(Duration::from_micros(500), 48_000, &range),
            64
        );
        assert_eq!(
            period_frames(Duration::from_millis(20), 48_000, &range),
            960
        );
    }
}
