use super::*;

use std::f64::consts::PI;

fn pair(digit: char) -> (f64, f64) {
    for (r, row) in KEYS.iter().enumerate() {
        if let Some(c) = row.iter().position(|k| *k == digit) {
            return (ROWS[r], COLUMNS[c]);
        }
    }
    panic!("{digit}")
}

/// `ms` of `digit` at `rate`: row tone amplitude `row`, column tone `col`.
fn tone(digit: char, rate: u32, ms: u32, row: f64, col: f64) -> Vec<i16> {
    let (lo, hi) = pair(digit);
    (0..rate * ms / 1000)
        .map(|n| {
            let t = f64::from(n) / f64::from(rate);
            (row * (2.0 * PI * lo * t).sin() + col * (2.0 * PI * hi * t).sin()) as i16
        })
        .collect()
}

/// A voiced, speech-like signal: harmonics of a gliding pitch shaped by moving formants.
fn speech(rate: u32, secs: u32) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..rate * secs)
        .map(|n| {
            let t = f64::from(n) / f64::from(rate);
            let pitch = 110.0 + 40.0 * (2.0 * PI * 0.7 * t).sin();
            phase += 2.0 * PI * pitch / f64::from(rate);
            let f1 = 500.0 + 300.0 * (2.0 * PI * 1.3 * t).sin();
            let f2 = 1500.0 + 600.0 * (2.0 * PI * 0.9 * t).cos();
            let mut x = 0.0;
            for h in 1..30 {
                let f = pitch * f64::from(h);
                let gain =
                    (-((f - f1) / 150.0).powi(2)).exp() + 0.6 * (-((f - f2) / 200.0).powi(2)).exp();
                x += gain * (f64::from(h) * phase).sin();
            }
            (4000.0 * x) as i16
        })
        .collect()
}

/// Music-like: chords of three notes with harmonics, a new chord every 250 ms.
fn music(rate: u32, secs: u32) -> Vec<i16> {
    let chords: [[f64; 3]; 6] = [
        [261.6, 329.6, 392.0],
        [293.7, 370.0, 440.0],
        [349.2, 440.0, 523.3],
        [392.0, 493.9, 587.3],
        [220.0, 277.2, 329.6],
        [329.6, 415.3, 493.9],
    ];
    (0..rate * secs)
        .map(|n| {
            let t = f64::from(n) / f64::from(rate);
            let chord = chords[(t * 4.0) as usize % chords.len()];
            let x: f64 = chord
                .iter()
                .flat_map(|f| {
                    (1..6).map(move |h| (2.0 * PI * f * f64::from(h) * t).sin() / f64::from(h))
                })
                .sum();
            (3000.0 * x) as i16
        })
        .collect()
}

fn run(rate: u32, input: &[i16]) -> (Vec<i16>, u64) {
    let mut m = DtmfMuter::new(rate);
    let mut out = input.to_vec();
    // In uneven pieces, as the pipeline renders.
    let mut at = 0;
    for (i, len) in [7usize, 160, 33, 480, 1].iter().cycle().enumerate() {
        if at >= out.len() || i > 1_000_000 {
            break;
        }
        let end = (at + len).min(out.len());
        m.process(&mut out[at..end]);
        at = end;
    }
    (out, m.digits_muted())
}

#[test]
fn sixteen_digits_are_muted_with_their_guards_and_the_rest_passes_delayed() {
    let rate = 8000;
    let per_ms = |ms: usize| ms * rate as usize / 1000;
    let background = speech(rate, 6);
    let mut input = background.clone();
    let digits: Vec<char> = "4929123456781234".chars().collect();
    let mut spans = Vec::new();
    for (i, d) in digits.iter().enumerate() {
        let start = per_ms(1000 + 250 * i);
        let t = tone(*d, rate, 90, 6000.0, 5000.0);
        // The digit replaces the speech while it sounds (a keypad press).
        input[start..start + t.len()].copy_from_slice(&t);
        spans.push((start, start + t.len()));
    }
    let (out, muted) = run(rate, &input);
    assert_eq!(muted, 16);
    let delay = per_ms(DELAY_MS as usize);
    for (s, e) in &spans {
        assert!(
            out[s + delay..e + delay].iter().all(|&x| x == 0),
            "digit at {s} heard"
        );
    }
    // Speech away from the digits comes out unchanged, DELAY_MS later.
    let (s0, _) = spans[0];
    assert_eq!(
        &out[delay..s0 - per_ms(20) + delay],
        &input[..s0 - per_ms(20)]
    );
    let (_, last) = spans[15];
    let after = last + per_ms(40);
    assert_eq!(&out[after + delay..], &input[after..input.len() - delay]);
}

#[test]
fn a_digit_is_muted_from_its_first_sample_whatever_its_phase_to_the_windows() {
    for rate in [8000u32, 16_000, 48_000] {
        let hop = (rate * HOP_MS / 1000) as usize;
        let delay = (rate * DELAY_MS / 1000) as usize;
        // Starts across a whole hop on the 8 kHz grid (every sample at 8 kHz, every 2nd at
        // 16 kHz, every 6th at 48 kHz), after speech.
        for offset in (0..hop).step_by((rate / 8000) as usize) {
            let start = (rate / 2) as usize + offset;
            let mut input = speech(rate, 1);
            let t = tone('8', rate, 45, 5000.0, 5000.0);
            input[start..start + t.len()].copy_from_slice(&t);
            let (out, muted) = run(rate, &input);
            assert_eq!(muted, 1, "{rate} Hz, offset {offset}");
            let heard = out[start + delay..start + t.len() + delay]
                .iter()
                .filter(|&&x| x != 0)
                .count();
            assert_eq!(
                heard, 0,
                "{rate} Hz, offset {offset}: {heard} samples heard"
            );
        }
    }
}

#[test]
fn twist_level_and_length_limits() {
    for rate in [8000, 16_000, 48_000] {
        // Row 7 dB louder than the column: detected; column 6 dB louder: not.
        assert_eq!(
            run(rate, &tone('5', rate, 100, 6000.0, 2700.0)).1,
            1,
            "{rate}"
        );
        assert_eq!(
            run(rate, &tone('5', rate, 100, 3000.0, 6000.0)).1,
            0,
            "{rate}"
        );
        // Too quiet (about -40 dBm0 each).
        assert_eq!(
            run(rate, &tone('9', rate, 100, 150.0, 150.0)).1,
            0,
            "{rate}"
        );
        // 20 ms is not a digit; 40 ms is.
        assert_eq!(
            run(rate, &tone('#', rate, 20, 5000.0, 5000.0)).1,
            0,
            "{rate}"
        );
        assert_eq!(
            run(rate, &tone('#', rate, 40, 5000.0, 5000.0)).1,
            1,
            "{rate}"
        );
    }
}

#[test]
fn speech_music_and_single_tones_are_never_digits() {
    for rate in [8000, 16_000] {
        assert_eq!(run(rate, &speech(rate, 30)).1, 0, "speech at {rate}");
        assert_eq!(run(rate, &music(rate, 30)).1, 0, "music at {rate}");
        // One tone of a pair (a dial tone's 697 Hz alone) is no digit.
        let single: Vec<i16> = (0..rate)
            .map(|n| (8000.0 * (2.0 * PI * 697.0 * f64::from(n) / f64::from(rate)).sin()) as i16)
            .collect();
        assert_eq!(run(rate, &single).1, 0);
    }
}
