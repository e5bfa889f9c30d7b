//! Audio helpers of the black-box tests: the capgen generator binary, WAV reading, and tone
//! detection (Goertzel).

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
