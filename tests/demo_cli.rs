//! README's first command ends in `silentmon demo`: the appliance replays the embedded capture
//! as live traffic and an embedded supervisor endpoint monitors the demo agent over TLS, plays
//! (or, without a sound device, only records) the call. Checked: the run succeeds, the call is
//! recorded in stereo with both sides audible, the audit trail names the monitor; and the
//! offline variant still writes its WAV.

mod common;

use common::audio::read_wav;
use common::*;

fn rms(x: impl Iterator<Item = i16>) -> f64 {
    let (mut sum, mut n) = (0f64, 0usize);
    for v in x {
        sum += (v as f64).powi(2);
        n += 1;
    }
    (sum / n.max(1) as f64).sqrt()
}

#[test]
fn the_demo_monitors_and_records_the_demo_agent() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        silentmon()
            .args(["demo", "--speed", "2", "--out"])
            .arg(dir.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("monitoring agent 5001"), "{text}");
    // The agent's states and binding came from the mock CTI Server: its three states
    // (available, talking, available), both directions started and stopped, its one call.
    assert!(
        text.contains(
            "CTI feed (mock CTI Server): agent state events 3, RTP started/stopped events on \
             agent 5001's media endpoint 4, calls begun and ended 1, malformed messages 0"
        ),
        "{text}"
    );
    assert!(
        text.contains("5001_cti-1000_5001_"),
        "the CTI's call: {text}"
    );
    // alsa-lib's own messages (a dozen lines a second where there is no sound card) go to the
    // log at debug level, not to the user's terminal.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("ALSA lib"),
        "alsa-lib printed to stderr:\n{err}"
    );
    let wav = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("5001_") && n.ends_with(".wav")
        })
        .unwrap_or_else(|| panic!("no recording: {text}"));
    assert!(text.contains(&wav.display().to_string()), "{text}");
    let (spec, s) = read_wav(&wav);
    assert_eq!(spec.channels, 2);
    // The 24 s call at twice its pace is played (and recorded) in real time: about 12 s.
    let secs = s.len() as f64 / 2.0 / spec.sample_rate as f64;
    assert!((9.0..15.0).contains(&secs), "{secs} s");
    let left = rms(s.iter().step_by(2).copied());
    let right = rms(s.iter().skip(1).step_by(2).copied());
    assert!(
        left > 300.0 && right > 300.0,
        "agent {left}, caller {right}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"monitor_started\"") && audit.contains("\"demo\""),
        "{audit}"
    );
}

#[test]
fn the_offline_demo_writes_the_agents_call() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        silentmon()
            .args(["demo", "--offline", "--out"])
            .arg(dir.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("g711U"), "{text}");
    let (spec, s) = read_wav(&dir.path().join("demo-agent-5001.wav"));
    assert_eq!(spec.channels, 2);
    assert!(s.len() as f64 / 2.0 / spec.sample_rate as f64 > 23.0);
}
