//! What plays when there is no audio to decode: packet-loss concealment for G.711 (pitch-period
//! repetition with fade-out) and RFC 3389 comfort noise, at any sample rate.
//!
//! Contracts: pure arithmetic over slices, no I/O, no clock; the buffers are sized at
//! construction, so concealing and generating noise never allocate beyond the caller's `Vec`
//! growth. Never panics on any input.
//!
//! Concealment ([`Concealer`]): the concealer keeps the last 50 ms of played audio. When a loss
//! starts it estimates the pitch period by normalised autocorrelation of the last 20 ms against
//! lags of 2.5-15 ms (400-67 Hz) and repeats the last period cyclically; repeating exactly one
//! period continues a voiced sound without a click at the loss start. The first 10 ms play at
//! full level, then the level falls linearly to zero at 60 ms; longer losses are silent. Real
//! audio ends the loss (the next loss estimates afresh).
//!
//! Comfort noise ([`ComfortNoise`]): white noise at the RFC 3389 level (dBov, 0..=127, 0 is a
//! full-scale square wave's power). The spectral-shape coefficients that may follow the level
//! byte are not applied: the noise is white at the right power.

/// Full-level part of a concealed loss, in ms.
pub const FADE_START_MS: u32 = 10;
/// Concealed losses longer than this are silence, in ms.
pub const CONCEAL_MAX_MS: u32 = 60;
/// History kept for the pitch estimate, in ms.
const HISTORY_MS: u32 = 50;
/// Window correlated for the pitch estimate, in ms.
const WINDOW_MS: u32 = 20;

/// G.711 packet-loss concealment by pitch-period repetition with fade-out.
#[derive(Clone, Debug)]
pub struct Concealer {
    /// Last `hist.len()` samples played, oldest first (zeros before any audio).
    hist: Vec<i16>,
    /// Samples of real audio seen, capped at `hist.len()`.
    filled: usize,
    min_lag: usize,
    max_lag: usize,
    window: usize,
    fade_start: usize,
    max_len: usize,
    /// Pitch period of the current loss (0: no loss in progress).
    period: usize,
    /// Samples concealed in the current loss.
    lost: usize,
}

impl Concealer {
    /// A concealer for audio at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        let ms = |v: u32| (rate as usize * v as usize / 1000).max(1);
        Concealer {
            hist: vec![0; ms(HISTORY_MS)],
            filled: 0,
            min_lag: (rate as usize / 400).max(1),
            max_lag: (rate as usize * 15 / 1000).max(2),
            window: ms(WINDOW_MS),
            fade_start: ms(FADE_START_MS),
            max_len: ms(CONCEAL_MAX_MS),
            period: 0,
            lost: 0,
        }
    }

    /// Real audio was played: remember it and end any loss in progress.
    pub fn observe(&mut self, pcm: &[i16]) {
        let h = self.hist.len();
        if pcm.len() >= h {
            self.hist.copy_from_slice(&pcm[pcm.len() - h..]);
        } else {
            self.hist.copy_within(pcm.len().., 0);
            self.hist[h - pcm.len()..].copy_from_slice(pcm);
        }
        self.filled = (self.filled + pcm.len()).min(h);
        self.period = 0;
        self.lost = 0;
    }

    /// True while a loss is being concealed (since the last [`Concealer::observe`]).
    pub fn in_loss(&self) -> bool {
        self.lost > 0
    }

    /// Appends `n` concealment samples to `out`; returns how many of them are not silence
    /// (that is, fall within the first [`CONCEAL_MAX_MS`] of the loss).
    pub fn conceal(&mut self, n: usize, out: &mut Vec<i16>) -> usize {
        if self.lost == 0 {
            self.period = self.estimate_period();
        }
        let h = self.hist.len();
        let mut audible = 0;
        for _ in 0..n {
            let sample = if self.period == 0 || self.lost >= self.max_len {
                0
            } else {
                audible += 1;
                let base = self.hist[h - self.period + self.lost % self.period] as i32;
                if self.lost < self.fade_start {
                    base as i16
                } else {
                    let left = (self.max_len - self.lost) as i32;
                    let span = (self.max_len - self.fade_start) as i32;
                    (base * left / span) as i16
                }
            };
            out.push(sample);
            self.lost = self.lost.saturating_add(1);
        }
        audible
    }

    /// The lag in `min_lag..=max_lag` that best predicts the last window; 0 without history.
    fn estimate_period(&self) -> usize {
        let h = self.hist.len();
        if self.filled < self.window + self.min_lag || h < self.window + self.max_lag {
            // Too little audio to find a pitch: repeat what there is as one period.
            return self.filled.min(self.max_lag);
        }
        let max_lag = self.max_lag.min(self.filled - self.window);
        let win = &self.hist[h - self.window..];
        let mut best = (f64::MIN, self.max_lag.min(max_lag));
        for lag in self.min_lag..=max_lag {
            let past = &self.hist[h - self.window - lag..h - lag];
            let (mut dot, mut energy) = (0f64, 0f64);
            for (a, b) in win.iter().zip(past) {
                dot += *a as f64 * *b as f64;
                energy += *b as f64 * *b as f64;
            }
            let score = if energy > 0.0 {
                dot / energy.sqrt()
            } else {
                0.0
            };
            if score > best.0 {
                best = (score, lag);
            }
        }
        best.1
    }
}

/// RFC 3389 comfort noise: white noise at a level in -dBov.
#[derive(Clone, Debug)]
pub struct ComfortNoise {
    state: u64,
    /// Peak of the uniform distribution whose RMS is the level.
    peak: f32,
}

impl Default for ComfortNoise {
    fn default() -> Self {
        ComfortNoise {
            state: 0x9E37_79B9_7F4A_7C15,
            peak: 0.0,
        }
    }
}

impl ComfortNoise {
    /// Sets the level from an RFC 3389 level byte (the top bit is reserved and ignored).
    pub fn set_level(&mut self, dbov: u8) {
        let dbov = (dbov & 0x7F) as f32;
        let rms = 32767.0 * 10f32.powf(-dbov / 20.0);
        // A uniform distribution on [-p, p] has an RMS of p / sqrt(3).
        self.peak = (rms * 3f32.sqrt()).min(32767.0);
    }

    /// The RMS the noise is generated at.
    pub fn rms(&self) -> f32 {
        self.peak / 3f32.sqrt()
    }

    /// Appends `n` noise samples to `out`.
    pub fn fill(&mut self, n: usize, out: &mut Vec<i16>) {
        for _ in 0..n {
            // xorshift64*: cheap and plenty for noise.
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let unit = (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0; // [-1, 1)
            out.push((unit * self.peak) as i16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn repeats_the_pitch_period_then_fades_to_silence() {
        // 200 Hz at 8 kHz: a 40-sample period.
        let pcm = tone(200.0, 8000, 800);
        let mut c = Concealer::new(8000);
        c.observe(&pcm);
        let mut out = Vec::new();
        let audible = c.conceal(800, &mut out);
        assert_eq!(audible, 480, "60 ms at 8 kHz");
        // The first 10 ms continue the tone: compare with the true continuation.
        let truth = tone(200.0, 8000, 880);
        for (i, s) in out[..80].iter().enumerate() {
            assert!(
                (*s as i32 - truth[800 + i] as i32).abs() <= 2,
                "sample {i}: {s}"
            );
        }
        // Fading: the peak of the 5th 10 ms is lower than the 2nd's, and the tail is silent.
        let peak = |r: &[i16]| r.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak(&out[320..400]) < peak(&out[80..160]) / 2);
        assert!(out[480..].iter().all(|&s| s == 0));
        // Real audio ends the loss; a new loss conceals again.
        c.observe(&pcm[..160]);
        assert!(!c.in_loss());
        out.clear();
        assert_eq!(c.conceal(160, &mut out), 160);
        assert!(out.iter().any(|&s| s != 0));
    }

    #[test]
    fn no_history_conceals_with_silence() {
        let mut c = Concealer::new(48_000);
        let mut out = Vec::new();
        assert_eq!(c.conceal(100, &mut out), 0);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn comfort_noise_has_the_level_it_was_given() {
        let mut cn = ComfortNoise::default();
        for dbov in [30u8, 40, 60] {
            cn.set_level(dbov);
            let mut out = Vec::new();
            cn.fill(16_000, &mut out);
            let rms =
                (out.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
            let want = 32767.0 * 10f64.powf(-(dbov as f64) / 20.0);
            let db = 20.0 * (rms / want).log10();
            assert!(db.abs() < 0.5, "level {dbov}: rms {rms} want {want}");
            // Not a constant: noise.
            assert!(out.windows(2).filter(|w| w[0] != w[1]).count() > 8000 || dbov >= 60);
        }
        cn.set_level(127);
        let mut out = Vec::new();
        cn.fill(100, &mut out);
        assert!(out.iter().all(|&s| s.abs() <= 1));
    }
}
