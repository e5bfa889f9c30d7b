//! In-band DTMF detection never fires on what calls carry besides digits (issue 18, item 5):
//! espeak-ng speech (the voice the playout tests use, several speakers and rates) and music
//! synthesised by sox (plucked chords, a melody over a bass, a sweep), at 8 and 16 kHz; and
//! it does fire on every digit sox generates as its own tone pairs. The muting itself is
//! tested on a real call through PulseAudio in tests/playout_pulse.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::audio::read_wav;
use common::run_ok;
use silentmon::media::dtmf::DtmfMuter;

fn digits_in(wav: &Path) -> u64 {
    let (spec, pcm) = read_wav(wav);
    assert_eq!(spec.channels, 1);
    let rms = (pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
    assert!(rms > 300.0, "{}: nearly silent ({rms:.0})", wav.display());
    let mut m = DtmfMuter::new(spec.sample_rate);
    let mut buf = pcm.clone();
    for chunk in buf.chunks_mut(160) {
        m.process(chunk);
    }
    m.digits_muted()
}

fn sox(args: &[&str]) {
    run_ok(Command::new("sox").args(args));
}

#[test]
fn speech_and_music_are_never_taken_for_digits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let texts = [
        "The supervisor hears the agent on the left and the caller on the right.",
        "Hello, I am calling about my order, it has not arrived yet.",
        "One two three four five six seven eight nine zero, star, hash.",
        "Please hold the line while I transfer you to the billing department.",
    ];
    let mut checked = 0;
    for (i, text) in texts.iter().enumerate() {
        for (voice, speed) in [("en", "150"), ("en+f3", "175"), ("en-us+m7", "130")] {
            let raw = d.join(format!("s{i}-{voice}.wav"));
            run_ok(
                Command::new("espeak-ng")
                    .args(["-v", voice, "-s", speed, "-w"])
                    .arg(&raw)
                    .arg(text),
            );
            for rate in ["8000", "16000"] {
                let wav = d.join(format!("s{i}-{voice}-{rate}.wav"));
                sox(&[
                    raw.to_str().unwrap(),
                    "-r",
                    rate,
                    "-b",
                    "16",
                    wav.to_str().unwrap(),
                ]);
                assert_eq!(digits_in(&wav), 0, "{text:?} by {voice} at {rate} Hz");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);
    let music = d.join("music.wav");
    for (name, effects) in [
        (
            "chords",
            "synth 10 pluck C4 pluck mix E4 pluck mix G4 pluck mix C5",
        ),
        (
            "organ",
            "synth 10 sine 262 sine mix 330 sine mix 392 sine mix 523 tremolo 5 40",
        ),
        ("sweep", "synth 10 sine 300-3400"),
        ("square", "synth 6 square 440 square mix 554 square mix 659"),
    ] {
        let mut args = vec![
            "-n",
            "-r",
            "8000",
            "-b",
            "16",
            "-c",
            "1",
            music.to_str().unwrap(),
        ];
        args.extend(effects.split(' '));
        args.extend(["gain", "-n", "-3"]);
        sox(&args);
        assert_eq!(digits_in(&music), 0, "{name}");
    }
}

#[test]
fn every_digit_sox_dials_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // sox's own tone pairs (its synth, not ours), 60 ms each with 60 ms gaps, about -10 dBFS.
    let gap = d.join("gap.wav");
    sox(&[
        "-n",
        "-r",
        "8000",
        "-b",
        "16",
        "-c",
        "1",
        gap.to_str().unwrap(),
        "trim",
        "0",
        "0.06",
    ]);
    let mut parts = Vec::new();
    for lo in [697, 770, 852, 941] {
        for hi in [1209, 1336, 1477, 1633] {
            let f = d.join(format!("{lo}-{hi}.wav"));
            let (lo, hi) = (lo.to_string(), hi.to_string());
            sox(&[
                "-n",
                "-r",
                "8000",
                "-b",
                "16",
                "-c",
                "1",
                f.to_str().unwrap(),
                "synth",
                "0.06",
                "sine",
                &lo,
                "sine",
                "mix",
                &hi,
                "gain",
                "-n",
                "-4",
            ]);
            parts.push(f.to_str().unwrap().to_owned());
            parts.push(gap.to_str().unwrap().to_owned());
        }
    }
    let all = d.join("digits.wav");
    let mut args: Vec<&str> = parts.iter().map(String::as_str).collect();
    args.push(all.to_str().unwrap());
    sox(&args);
    assert_eq!(digits_in(&all), 16);
}
