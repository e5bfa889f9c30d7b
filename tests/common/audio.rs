//! Audio helpers of the black-box tests: the capgen generator binary, WAV reading, tone
//! detection (Goertzel), and what a stereo recording holds where (tones, quiet stretches).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;

/// The capgen binary built beside silentmon (built on demand when a test runs alone).
pub fn capgen() -> Command {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_silentmon"));
    let sibling = exe.with_file_name("capgen");
    if !sibling.exists() {
        let profile = if exe.parent().unwrap().ends_with("release") {
            "--release"
        } else {
            "--quiet"
        };
        run_ok(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-p", "silentmon-capgen", profile])
                .current_dir(env!("CARGO_MANIFEST_DIR")),
        );
    }
    Command::new(sibling)
}

/// A 16-bit WAV file's format and samples (interleaved).
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<i16>().map(Result::unwrap).collect())
}

/// Power of `freq` in `x` sampled at `rate`.
pub fn goertzel(x: &[f32], freq: f64, rate: u32) -> f64 {
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

/// The strongest frequency between 200 and 2000 Hz, in `step` Hz steps.
pub fn dominant(x: &[f32], rate: u32, step: f64) -> f64 {
    let n = (1800.0 / step) as usize;
    (0..=n)
        .map(|k| 200.0 + k as f64 * step)
        .max_by(|a, b| goertzel(x, *a, rate).total_cmp(&goertzel(x, *b, rate)))
        .unwrap()
}

/// Stereo audio (agent left, caller right) with its rate.
pub struct Stereo {
    pub rate: u32,
    pub left: Vec<f32>,
    pub right: Vec<f32>,
}

impl Stereo {
    pub fn from_wav(path: &Path) -> Stereo {
        let (spec, s) = read_wav(path);
        assert_eq!(spec.channels, 2, "{}: not stereo", path.display());
        let f = |v: &i16| *v as f32 / 32768.0;
        Stereo {
            rate: spec.sample_rate,
            left: s.iter().step_by(2).map(f).collect(),
            right: s.iter().skip(1).step_by(2).map(f).collect(),
        }
    }

    pub fn secs(&self) -> f64 {
        self.left.len() as f64 / self.rate as f64
    }

    pub fn index(&self, t: f64) -> usize {
        ((t.max(0.0) * self.rate as f64) as usize).min(self.left.len())
    }

    /// Samples `[from, to)` seconds of both channels.
    pub fn window(&self, from: f64, to: f64) -> (&[f32], &[f32]) {
        let (a, b) = (self.index(from), self.index(to));
        (&self.left[a..b.max(a)], &self.right[a..b.max(a)])
    }

    /// RMS of each 20 ms frame, the louder channel.
    pub fn frame_rms(&self) -> Vec<f32> {
        let n = (self.rate / 50) as usize;
        self.left
            .chunks(n)
            .zip(self.right.chunks(n))
            .map(|(l, r)| rms(l).max(rms(r)))
            .collect()
    }
}

pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// What a stretch of both channels holds: dominant tones and leakage ratios.
#[derive(Debug)]
pub struct Heard {
    pub left_hz: f64,
    pub right_hz: f64,
    pub left_rms: f32,
    pub right_rms: f32,
}

pub fn hear(rate: u32, (l, r): (&[f32], &[f32])) -> Heard {
    Heard {
        left_hz: dominant(l, rate, 5.0),
        right_hz: dominant(r, rate, 5.0),
        left_rms: rms(l),
        right_rms: rms(r),
    }
}

/// Longest run of 20 ms frames quieter than `quiet` (both channels), inside `[from, to)` s:
/// (start s, length s).
pub fn longest_quiet(a: &Stereo, from: f64, to: f64, quiet: f32) -> (f64, f64) {
    let rms = a.frame_rms();
    let f0 = ((from.max(0.0) * 50.0) as usize).min(rms.len());
    let f1 = ((to.max(0.0) * 50.0) as usize).clamp(f0, rms.len());
    let mut best = (f0, 0usize);
    let mut run = (f0, 0usize);
    for (i, &r) in rms[f0..f1].iter().enumerate() {
        if r < quiet {
            if run.1 == 0 {
                run.0 = f0 + i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run.1 = 0;
        }
    }
    (best.0 as f64 / 50.0, best.1 as f64 / 50.0)
}

/// Seconds of `wavs` in which the tone `hz` dominates `channel` (0 left: the agent; 1 right:
/// the other party) over every other tone of `all`, in 100 ms windows above -34 dBFS.
pub fn seconds_of(wavs: &[Stereo], channel: usize, hz: f64, all: &[f64]) -> f64 {
    let windows: usize = wavs
        .iter()
        .map(|w| {
            let x = if channel == 0 { &w.left } else { &w.right };
            x.chunks((w.rate / 10) as usize)
                .filter(|c| {
                    let mine = goertzel(c, hz, w.rate);
                    rms(c) > 0.02
                        && all
                            .iter()
                            .filter(|f| **f != hz)
                            .all(|f| goertzel(c, *f, w.rate) * 10.0 < mine)
                })
                .count()
        })
        .sum();
    windows as f64 / 10.0
}

/// Dominant frequency of 8 kHz PCM by zero crossings.
pub fn frequency(pcm: &[i16]) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (pcm.len() as f64 / 8000.0)
}
