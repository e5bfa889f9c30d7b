//! In-band DTMF kept from supervisors (PCI: card numbers typed on a keypad must not be heard
//! or recorded): a detector on the decoded audio, and a fixed delay line in which a detected
//! digit, with a guard before and after it, is replaced by silence. Sans-IO, no allocation
//! once built; the output has exactly as many samples as the input, [`DELAY_MS`] later.
//!
//! Detection (after ITU-T Q.23/Q.24): Goertzel power at the 8 DTMF frequencies over 20 ms
//! windows every 5 ms, at the session's rate. A window holds digit (row, column) when the
//! strongest row and column tones are each above about -30 dBm0, their twist is within
//! 8 dB (row louder) to 4 dB (column louder), every other row and column tone is at least
//! 6 dB below them, and the two tones carry at least 75 % of the window's power (speech and
//! music spread theirs over harmonics and formants). Two consecutive windows of one digit
//! (at least 25 ms of tone; 30 ms always suffice, whatever the phase) make a detection; it is
//! muted from 5 ms before its first window (a window starts at most one hop after the tone)
//! to 20 ms after its last, so the line is 30 ms. The 20 ms window resolves the 73 Hz between
//! rows 697 and 770 Hz, but does not reject tones 1.5-3.5 % off as strictly as Q.24 asks:
//! here a doubtful tone is muted.

use std::collections::VecDeque;

/// How much later the output is than the input: a detection needs the guard, the first
/// window and the hops to the confirming one before its first muted sample leaves the line.
pub const DELAY_MS: u32 = GUARD_BEFORE_MS + WINDOW_MS + (CONFIRM_WINDOWS - 1) * HOP_MS;
/// Analysis window.
const WINDOW_MS: u32 = 20;
/// Step between windows.
const HOP_MS: u32 = 5;
/// Silence before a digit's first window: a window starts at most one hop after a tone does.
const GUARD_BEFORE_MS: u32 = HOP_MS;
/// Silence after a digit's last window.
const GUARD_AFTER_MS: u32 = 20;
/// Consecutive windows of one digit that make a detection.
const CONFIRM_WINDOWS: u32 = 2;
/// Least mean power of each tone (a sine of amplitude 500: about -30 dBm0 in 16-bit PCM).
const MIN_TONE_POWER: f64 = 500.0 * 500.0 / 2.0;
/// Share of the window's power the two tones must carry.
const MIN_DOMINANCE: f64 = 0.75;

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The detector and the delay line of one direction.
pub struct DtmfMuter {
    window: usize,
    hop: usize,
    guard_before: u64,
    guard_after: u64,
    /// Goertzel coefficients of the rows then the columns.
    coeffs: [f64; 8],
    /// The last `window` input samples.
    history: VecDeque<i16>,
    /// Samples on their way out: the oldest is output next.
    line: VecDeque<i16>,
    /// Input samples taken so far (the next one's index).
    pos: u64,
    /// The digit of the last windows, the first one's start index, and how many.
    run: Option<(char, u64, u32)>,
    /// Input samples with an index below this are muted.
    mute_until: u64,
    digits: u64,
}

impl DtmfMuter {
    /// A muter for audio at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        let per_ms = |ms: u32| (u64::from(rate) * u64::from(ms) / 1000) as usize;
        let delay = per_ms(DELAY_MS);
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / f64::from(rate)).cos();
        }
        DtmfMuter {
            window: per_ms(WINDOW_MS).max(1),
            hop: per_ms(HOP_MS).max(1),
            guard_before: per_ms(GUARD_BEFORE_MS) as u64,
            guard_after: per_ms(GUARD_AFTER_MS) as u64,
            coeffs,
            history: VecDeque::with_capacity(per_ms(WINDOW_MS) + 1),
            line: std::iter::repeat_n(0, delay).collect(),
            pos: 0,
            run: None,
            mute_until: 0,
            digits: 0,
        }
    }

    /// Digits muted so far (never which).
    pub fn digits_muted(&self) -> u64 {
        self.digits
    }

    /// Replaces `samples` by the delayed, muted stream (same count).
    pub fn process(&mut self, samples: &mut [i16]) {
        for s in samples.iter_mut() {
            let x = *s;
            if self.history.len() == self.window {
                self.history.pop_front();
            }
            self.history.push_back(x);
            let idx = self.pos;
            self.pos += 1;
            self.line
                .push_back(if idx < self.mute_until { 0 } else { x });
            if self.pos >= self.window as u64
                && (self.pos - self.window as u64) % self.hop as u64 == 0
            {
                self.analyse();
            }
            *s = self.line.pop_front().unwrap_or(0);
        }
    }

    /// One window ending at `pos`.
    fn analyse(&mut self) {
        let start = self.pos - self.window as u64;
        let Some(digit) = self.digit() else {
            self.run = None;
            return;
        };
        let (first, count) = match self.run {
            Some((d, first, n)) if d == digit => (first, n + 1),
            _ => (start, 1),
        };
        self.run = Some((digit, first, count));
        if count < CONFIRM_WINDOWS {
            return;
        }
        if count == CONFIRM_WINDOWS {
            self.digits += 1;
        }
        // Mute what is still in the line from the guard before the first window on.
        let from = first.saturating_sub(self.guard_before) as i64;
        // The line's first sample's index (negative: the zeros it started with).
        let oldest = self.pos as i64 - self.line.len() as i64;
        let skip = (from - oldest).max(0) as usize;
        for x in self.line.iter_mut().skip(skip) {
            *x = 0;
        }
        self.mute_until = self.mute_until.max(self.pos + self.guard_after);
    }

    /// The digit the current window holds, if any.
    fn digit(&self) -> Option<char> {
        let (a, b) = self.history.as_slices();
        let n = self.window as f64;
        let mut power = [0.0f64; 8];
        for (p, &c) in power.iter_mut().zip(&self.coeffs) {
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &x in a.iter().chain(b) {
                let s0 = f64::from(x) + c * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            // Mean power of a sine at this frequency.
            *p = 2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * n);
        }
        let total = a
            .iter()
            .chain(b)
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>()
            / n;
        let (r, pr) = strongest(&power[..4]);
        let (c, pc) = strongest(&power[4..]);
        let twist_db = 10.0 * (pc / pr.max(1e-9)).log10();
        let clear = |group: &[f64], best: usize, p: f64| {
            (group.iter().enumerate()).all(|(i, q)| i == best || *q * 4.0 <= p)
        };
        let found = pr >= MIN_TONE_POWER
            && pc >= MIN_TONE_POWER
            && (-8.0..=4.0).contains(&twist_db)
            && clear(&power[..4], r, pr)
            && clear(&power[4..], c, pc)
            && pr + pc >= MIN_DOMINANCE * total;
        found.then(|| KEYS[r][c])
    }
}

/// Index and value of the largest.
fn strongest(p: &[f64]) -> (usize, f64) {
    p.iter().copied().enumerate().fold(
        (0, f64::MIN),
        |best, (i, v)| if v > best.1 { (i, v) } else { best },
    )
}

#[cfg(test)]
mod tests;
