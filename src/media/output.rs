//! The device-format stage: [`RenderedPcm`] (both directions at the decode rate) in,
//! interleaved `f32` frames at the device's rate and channel count out.
//!
//! Order of work: layout (mono: agent + caller summed; stereo: agent left, caller right),
//! volume, resampling from the decode rate to the device rate with rubato's band-limited sinc
//! resampler (`SincFixedIn`: 64-tap Hann-windowed sinc, cubic interpolation between 256
//! sub-phases), then the channel adapter (mono
//! content is copied to every device channel; stereo content on a mono device is averaged; on
//! a device with more than two channels the extra ones are silent). Every sample is clamped
//! to [-1, 1] after the sum and again after resampling (whose ripple can overshoot), so loud
//! speech on both sides never wraps around.
//!
//! Chunking: rubato takes fixed input chunks (5 ms); input that does not fill a chunk is kept
//! for the next call, so any split of the input gives the same output. Latency: the filter
//! delays by [`OutputStage::delay_frames`] (half the sinc, 4 ms of 8 kHz input), plus up to a
//! chunk of input waiting to fill. The FFT resampler used before needed 20 ms chunks for the
//! same flat telephone band (at 10 ms it lost 10 dB at 3400 Hz) and added about 20 ms; a
//! 128-tap Blackman-Harris sinc held the band with 8 ms, and at 64 taps lost 2 dB at 3 kHz
//! (5.7 dB at 3400 Hz with a Blackman window), where the Hann window's narrower main lobe
//! keeps it within 1 dB. The unit tests hold the band (300-3400 Hz within 1 dB, images 40 dB down) and
//! docs/PERFORMANCE.md the measured listen latency.
//!
//! Contracts: sans-IO, no clock, no device. Buffers are sized when the decode rate is first
//! seen (or changes); after that, processing does not allocate beyond the caller's `Vec`.

use rubato::{
    calculate_cutoff, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Resampler input chunks per second (5 ms chunks).
const CHUNKS_PER_SECOND: usize = 200;
/// Length of the resampler's sinc filter, in input samples (its delay is half of it).
const SINC_LEN: usize = 64;

use super::listen::{Layout, RenderedPcm};

/// Output-stage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device rate or channel count of zero.
    #[error("invalid device format: {rate} Hz, {channels} channels")]
    InvalidDevice {
        /// Device rate.
        rate: u32,
        /// Device channels.
        channels: u16,
    },
    /// rubato refused the ratio.
    #[error("cannot resample {from} Hz to {to} Hz: {source}")]
    Resampler {
        /// Decode rate.
        from: u32,
        /// Device rate.
        to: u32,
        /// rubato's reason.
        source: rubato::ResamplerConstructionError,
    },
    /// rubato failed while processing (buffer sizes; a bug if it happens).
    #[error("resampling failed: {0}")]
    Resample(#[from] rubato::ResampleError),
}

struct Converter {
    from: u32,
    resampler: Option<SincFixedIn<f32>>,
    /// Per content channel: input not yet resampled.
    pending: Vec<Vec<f32>>,
    /// Per content channel: resampler output.
    out: Vec<Vec<f32>>,
}

/// Turns rendered PCM into interleaved device frames.
pub struct OutputStage {
    layout: Layout,
    volume: f32,
    device_rate: u32,
    device_channels: u16,
    conv: Option<Converter>,
}

impl OutputStage {
    /// A stage for a device playing `device_channels` channels at `device_rate` Hz.
    pub fn new(
        layout: Layout,
        volume: f32,
        device_rate: u32,
        device_channels: u16,
    ) -> Result<Self, Error> {
        if device_rate == 0 || device_channels == 0 {
            return Err(Error::InvalidDevice {
                rate: device_rate,
                channels: device_channels,
            });
        }
        Ok(OutputStage {
            layout,
            volume,
            device_rate,
            device_channels,
            conv: None,
        })
    }

    /// Changes the gain from the next sample on.
    pub fn set_volume(&mut self, volume: f32) {
        self.volume = volume;
    }

    /// Device channels per frame.
    pub fn channels(&self) -> u16 {
        self.device_channels
    }

    /// Device frames the resampler holds back (0 when the rates are equal or before input).
    pub fn delay_frames(&self) -> usize {
        self.conv
            .as_ref()
            .and_then(|c| c.resampler.as_ref())
            .map_or(0, |r| r.output_delay())
    }

    fn converter(&mut self, from: u32) -> Result<&mut Converter, Error> {
        let content = self.layout.channels() as usize;
        if self.conv.as_ref().is_none_or(|c| c.from != from) {
            let resampler = if from == self.device_rate {
                None
            } else {
                let chunk = (from as usize / CHUNKS_PER_SECOND).max(1);
                let window = WindowFunction::Hann2;
                let params = SincInterpolationParameters {
                    sinc_len: SINC_LEN,
                    f_cutoff: calculate_cutoff(SINC_LEN, window),
                    interpolation: SincInterpolationType::Cubic,
                    oversampling_factor: 256,
                    window,
                };
                Some(
                    SincFixedIn::<f32>::new(
                        self.device_rate as f64 / from as f64,
                        1.0,
                        params,
                        chunk,
                        content,
                    )
                    .map_err(|source| Error::Resampler {
                        from,
                        to: self.device_rate,
                        source,
                    })?,
                )
            };
            let (cap_in, out) = match &resampler {
                Some(r) => (r.input_frames_max() * 2, r.output_buffer_allocate(true)),
                None => (0, Vec::new()),
            };
            self.conv = Some(Converter {
                from,
                resampler,
                pending: vec![Vec::with_capacity(cap_in); content],
                out,
            });
        }
        Ok(self.conv.as_mut().expect("converter set above"))
    }

    /// Appends the frames made from `pcm` to `out` (interleaved, `channels()` per frame);
    /// returns how many frames it appended. Input short of a resampler chunk is kept for the
    /// next call. A change of `pcm.rate` restarts the resampler (dropping what it held).
    pub fn process(&mut self, pcm: &RenderedPcm, out: &mut Vec<f32>) -> Result<usize, Error> {
        let n = pcm.len();
        if n == 0 || pcm.rate == 0 {
            return Ok(0);
        }
        let (layout, gain, channels) = (self.layout, self.volume / 32768.0, self.device_channels);
        let conv = self.converter(pcm.rate)?;
        let agent = &pcm.agent[..n];
        let caller = &pcm.caller[..n];
        let Some(resampler) = conv.resampler.as_mut() else {
            // Equal rates: straight to frames.
            let frames_before = out.len() / channels as usize;
            match layout {
                Layout::Mono => {
                    for (a, c) in agent.iter().zip(caller) {
                        let s = clamp((*a as f32 + *c as f32) * gain);
                        push_frame(out, channels, true, s, s);
                    }
                }
                Layout::Stereo => {
                    for (a, c) in agent.iter().zip(caller) {
                        push_frame(
                            out,
                            channels,
                            false,
                            clamp(*a as f32 * gain),
                            clamp(*c as f32 * gain),
                        );
                    }
                }
            }
            return Ok(out.len() / channels as usize - frames_before);
        };
        match layout {
            Layout::Mono => conv.pending[0].extend(
                agent
                    .iter()
                    .zip(caller)
                    .map(|(a, c)| clamp((*a as f32 + *c as f32) * gain)),
            ),
            Layout::Stereo => {
                conv.pending[0].extend(agent.iter().map(|a| clamp(*a as f32 * gain)));
                conv.pending[1].extend(caller.iter().map(|c| clamp(*c as f32 * gain)));
            }
        }
        let mut frames = 0;
        loop {
            let need = resampler.input_frames_next();
            if conv.pending[0].len() < need {
                break;
            }
            let (used, made) = resampler.process_into_buffer(&conv.pending, &mut conv.out, None)?;
            for ch in conv.pending.iter_mut() {
                ch.drain(..used);
            }
            for i in 0..made {
                let l = clamp(conv.out[0][i]);
                let r = match layout {
                    Layout::Mono => l,
                    Layout::Stereo => clamp(conv.out[1][i]),
                };
                push_frame(out, channels, layout == Layout::Mono, l, r);
            }
            frames += made;
        }
        Ok(frames)
    }
}

fn clamp(x: f32) -> f32 {
    x.clamp(-1.0, 1.0)
}

/// One device frame from a (left, right) pair (equal for mono content).
fn push_frame(out: &mut Vec<f32>, channels: u16, mono: bool, l: f32, r: f32) {
    match channels {
        1 => out.push(if mono { l } else { (l + r) * 0.5 }),
        _ => {
            out.push(l);
            out.push(r);
            // Mono content is on every channel; stereo content leaves the extra ones silent.
            let extra = if mono { l } else { 0.0 };
            for _ in 2..channels {
                out.push(extra);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    /// Goertzel power of `x` at `freq`.
    fn goertzel(x: &[f32], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0f64, 0f64);
        for &v in x {
            let s = v as f64 + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    }

    fn rms(x: impl Iterator<Item = f64>) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for v in x {
            sum += v * v;
            n += 1;
        }
        (sum / n.max(1) as f64).sqrt()
    }

    /// Feeds `pcm` in irregular pieces.
    fn feed(stage: &mut OutputStage, agent: &[i16], caller: &[i16], rate: u32) -> Vec<f32> {
        let mut out = Vec::new();
        let mut i = 0;
        let sizes = [37usize, 101, 3, 160, 1, 499];
        let mut k = 0;
        while i < agent.len() {
            let n = sizes[k % sizes.len()].min(agent.len() - i);
            let pcm = RenderedPcm {
                rate,
                agent: agent[i..i + n].to_vec(),
                caller: caller[i..i + n].to_vec(),
            };
            stage.process(&pcm, &mut out).unwrap();
            i += n;
            k += 1;
        }
        out
    }

    #[test]
    fn a_1khz_tone_keeps_frequency_and_level_at_48k_and_44k1() {
        let input = tone(1000.0, 8000, 16_000, 10_000.0);
        let silence = vec![0i16; input.len()];
        let in_rms = rms(input.iter().map(|&s| s as f64 / 32768.0));
        for device_rate in [48_000u32, 44_100] {
            let mut stage = OutputStage::new(Layout::Mono, 1.0, device_rate, 1).unwrap();
            let out = feed(&mut stage, &input, &silence, 8000);
            // 2 s in; all but the last partial chunk comes out.
            let expect = 2 * device_rate as usize;
            assert!(
                out.len() <= expect && out.len() + device_rate as usize / 25 >= expect,
                "{} frames",
                out.len()
            );
            // Skip the resampler's start-up and compare the steady part.
            let body = &out[stage.delay_frames() + 2000..out.len() - 2000];
            let at = |f| goertzel(body, device_rate, f);
            let p = at(1000.0);
            for other in [900.0, 950.0, 1050.0, 1100.0, 2000.0, 7000.0] {
                assert!(
                    p > 1000.0 * at(other),
                    "{device_rate}: 1 kHz not dominant vs {other}"
                );
            }
            let crossings = body
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count();
            let f = crossings as f64 / 2.0 / (body.len() as f64 / device_rate as f64);
            assert!((f - 1000.0).abs() < 2.0, "{device_rate}: {f} Hz");
            let db = 20.0 * (rms(body.iter().map(|&v| v as f64)) / in_rms).log10();
            assert!(db.abs() < 1.0, "{device_rate}: level changed by {db} dB");
        }
    }

    #[test]
    fn the_telephone_band_stays_flat_and_images_are_suppressed() {
        for device_rate in [48_000u32, 44_100] {
            for freq in [300.0, 1000.0, 3000.0, 3400.0] {
                let input = tone(freq, 8000, 16_000, 10_000.0);
                let silence = vec![0i16; input.len()];
                let in_rms = rms(input.iter().map(|&s| s as f64 / 32768.0));
                let mut stage = OutputStage::new(Layout::Mono, 1.0, device_rate, 1).unwrap();
                let out = feed(&mut stage, &input, &silence, 8000);
                let body = &out[stage.delay_frames() + 2000..out.len() - 2000];
                let db = 20.0 * (rms(body.iter().map(|&v| v as f64)) / in_rms).log10();
                assert!(
                    db.abs() < 1.0,
                    "{device_rate}: {freq} Hz changed by {db} dB"
                );
                // The image of the tone mirrored at 4 kHz is at least 40 dB down.
                let image = goertzel(body, device_rate, 8000.0 - freq);
                let tone_power = goertzel(body, device_rate, freq);
                assert!(
                    tone_power > 10_000.0 * image,
                    "{device_rate}: image of {freq} Hz only {:.1} dB down",
                    10.0 * (tone_power / image).log10()
                );
            }
        }
    }

    #[test]
    fn stereo_layout_volume_and_channel_adapter() {
        let a = tone(440.0, 48_000, 4800, 16_000.0);
        let c = tone(1000.0, 48_000, 4800, 16_000.0);
        // Equal rates: exact arithmetic, agent left, caller right, half volume.
        let mut stage = OutputStage::new(Layout::Stereo, 0.5, 48_000, 2).unwrap();
        let out = feed(&mut stage, &a, &c, 48_000);
        assert_eq!(out.len(), 2 * 4800);
        for i in [1usize, 100, 4799] {
            assert_eq!(out[2 * i], a[i] as f32 * 0.5 / 32768.0);
            assert_eq!(out[2 * i + 1], c[i] as f32 * 0.5 / 32768.0);
        }
        // Mono content on a 2-channel device: the sum on both channels, clamped when loud.
        let loud = vec![30_000i16; 480];
        let mut stage = OutputStage::new(Layout::Mono, 1.0, 48_000, 2).unwrap();
        let out = feed(&mut stage, &loud, &loud, 48_000);
        assert!(out.iter().all(|&v| v == 1.0));
        let mut out = Vec::new();
        let pcm = RenderedPcm {
            rate: 48_000,
            agent: vec![1000, -2000],
            caller: vec![500, 0],
        };
        assert_eq!(stage.process(&pcm, &mut out).unwrap(), 2);
        assert_eq!(
            out,
            vec![
                1500.0 / 32768.0,
                1500.0 / 32768.0,
                -2000.0 / 32768.0,
                -2000.0 / 32768.0
            ]
        );
        // Stereo content resampled to a 1-channel device keeps both sides, within [-1, 1].
        let mut stage = OutputStage::new(Layout::Stereo, 4.0, 44_100, 1).unwrap();
        let a8 = tone(440.0, 8000, 8000, 20_000.0);
        let c8 = tone(1000.0, 8000, 8000, 20_000.0);
        let out = feed(&mut stage, &a8, &c8, 8000);
        assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
        let body = &out[4000..out.len() - 4000];
        assert!(goertzel(body, 44_100, 440.0) > 100.0 * goertzel(body, 44_100, 700.0));
        assert!(goertzel(body, 44_100, 1000.0) > 100.0 * goertzel(body, 44_100, 700.0));
        assert!(OutputStage::new(Layout::Mono, 1.0, 0, 2).is_err());
    }
}
