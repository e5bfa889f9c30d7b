//! Real audio, end to end, without a sound card: the endpoint's media loop
//! (`endpoint::run_media`: session -> output stage -> cpal playout) plays generated G.711 calls
//! in real time into a private PulseAudio null sink (tests/common/pulse.rs), `parec` records
//! the sink's monitor, and the same run records the call to WAV.
//!
//! The calls come from `capgen calls` (tools/capgen): its RTP packets are sent to the media
//! loop as `EndpointEvent`s at their capture pace, stamped with their capture offsets on the
//! loop's clock; its reference PCM (the decode of what was sent) is the truth. Checks:
//! - tone call, stereo: the agent's tone on the left, the caller's on the right, no leakage;
//! - speech call (espeak-ng), stereo: each side correlates >= 0.9 with its reference decode
//!   at 48 kHz;
//! - in-band DTMF, muted: 16 digits typed in the middle of the caller's speech are silence in
//!   the WAV and carry under 1 % of their energy in the sink; the speech before and after
//!   correlates >= 0.9, and the WAV's frames away from the digits equal the reference;
//! - both calls: the WAV recording equals the reference decode sample for sample, except for
//!   frames the jitter buffer reported lost or late (none are expected);
//! - every packet decoded, no device frame dropped;
//! - device loss: PulseAudio killed 1.5 s into an 8 s call and restarted 1.5 s later: the
//!   loop notices the loss, keeps decoding and recording (the WAV is still exact), reopens the
//!   device and plays again.
//!
//! The device is opened, and the test waits until it really plays, before the call starts:
//! the endpoint opens its device at start-up, long before a call, and this is that state. (A
//! null sink that no client asked for low latency renders in 2 s blocks, so a new stream's
//! first request can come 2 s late; parec's 50 ms latency avoids that, the wait covers the
//! rest.)
//!
//! With `CI` set, missing tools or a failing PulseAudio fail the test; locally without them it
//! says so and returns. Everything runs in one #[test]: audio tests must not overlap.

mod common;
#[path = "common/pulse.rs"]
mod pulse;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rubato::{FftFixedInOut, Resampler};
use serde_json::Value;
use silentmon::binding::Direction;
use silentmon::capture::{PacketSource, PcapFile};
use silentmon::codec::PayloadMap;
use silentmon::endpoint::playout::{has_device, Error as PlayoutError};
use silentmon::endpoint::{
    run_media, EndpointEvent, MediaClock, MediaLoopConfig, MediaReport, Playout,
};
use silentmon::media::jitter_buffer::JitterConfig;
use silentmon::media::listen::{Layout, ListenConfig};
use silentmon::packet::{DecapConfig, Decapsulator, Transport};
use silentmon::time::{Span, Timestamp};

use common::audio::{capgen, read_wav};
use common::run_ok;
use pulse::{Pulse, RATE};

const REC: usize = RATE as usize;
/// The device period the test asks for (ms).
const DEVICE_PERIOD_MS: u64 = 50;

/// A generated call: its events (offsets from the first RTP packet) and per-side truth.
struct Call {
    agent: String,
    call_id: String,
    packets: Vec<(Span, Direction, Vec<u8>)>,
    /// Reference decode (8 kHz) of the agent's and the caller's side.
    ref_agent: Vec<i16>,
    ref_caller: Vec<i16>,
    tone_agent: Option<f64>,
    tone_caller: Option<f64>,
    /// Digits the caller typed in band: [start, end) ms from the caller's first packet.
    dtmf: Vec<(usize, usize)>,
}

/// Runs capgen with `extra` arguments and reads the capture back.
fn generate(dir: &Path, name: &str, extra: &[&str]) -> Call {
    let cap = dir.join(format!("{name}.pcap"));
    let truth = dir.join(format!("{name}.json"));
    let refs = dir.join(format!("{name}-ref"));
    run_ok(
        capgen()
            .args(["calls", "--calls", "1", "--codec", "pcmu", "--seed", "3"])
            .args(extra)
            .arg("-o")
            .arg(&cap)
            .arg("--truth")
            .arg(&truth)
            .arg("--ref-dir")
            .arg(&refs),
    );
    let t: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let c = &t["calls"][0];
    let agent_media: std::net::SocketAddr = c["agent_media"].as_str().unwrap().parse().unwrap();
    let (mut ref_agent, mut ref_caller, mut tone_agent, mut tone_caller) =
        (Vec::new(), Vec::new(), None, None);
    for s in t["streams"].as_array().unwrap() {
        assert_eq!(
            s["lost"].as_i64(),
            Some(0),
            "the generated call must be clean"
        );
        let pcm = read_wav(Path::new(s["ref_wav"].as_str().unwrap())).1;
        match s["direction"].as_str().unwrap() {
            "from_agent" => (ref_agent, tone_agent) = (pcm, s["tone_hz"].as_f64()),
            _ => (ref_caller, tone_caller) = (pcm, s["tone_hz"].as_f64()),
        }
    }
    let mut src = PcapFile::open(&cap, None).unwrap();
    let link = src.link_type();
    let mut decap = Decapsulator::new(DecapConfig::default());
    let mut packets = Vec::new();
    let mut first: Option<Timestamp> = None;
    while let Some(f) = src.next_frame().unwrap() {
        let d = decap.decapsulate(f.ts, link, f.data);
        let (
            Some(ip),
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            },
        ) = (d.ip, d.transport)
        else {
            continue;
        };
        let (from, to) = (
            std::net::SocketAddr::new(ip.src, src_port),
            std::net::SocketAddr::new(ip.dst, dst_port),
        );
        let direction = if to == agent_media {
            Direction::ToAgent
        } else if from == agent_media {
            Direction::FromAgent
        } else {
            continue; // SIP
        };
        let t0 = *first.get_or_insert(f.ts);
        packets.push((f.ts - t0, direction, payload.to_vec()));
    }
    assert!(
        packets.len() > 100,
        "{name}: only {} RTP packets",
        packets.len()
    );
    Call {
        agent: c["agent"].as_str().unwrap().to_string(),
        call_id: c["call_id"].as_str().unwrap().to_string(),
        packets,
        ref_agent,
        ref_caller,
        tone_agent,
        tone_caller,
        dtmf: c["dtmf"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|d| {
                        let ms = |i: usize| d["stream_ms"][i].as_u64().unwrap() as usize;
                        (ms(0), ms(1))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What one real-time run produced.
struct Played {
    left: Vec<f32>,
    right: Vec<f32>,
    wav: PathBuf,
    report: MediaReport,
}

/// Something to do to the daemon before sending packet `i` of a call.
type Hook<'a> = &'a mut dyn FnMut(&mut Pulse, usize);

/// Plays `call` through the media loop into the null sink in real time, recording the sink
/// with parec when `record` (the hook may kill the daemon: then do not record).
fn play(
    pulse: &mut Pulse,
    dir: &Path,
    name: &str,
    call: &Call,
    (record, mute_dtmf): (bool, bool),
    hook: Hook<'_>,
) -> Played {
    let rec_dir = dir.join(format!("{name}-rec"));
    std::fs::create_dir_all(&rec_dir).unwrap();
    if record {
        pulse.record(&dir.join(format!("{name}.raw"))).unwrap();
    }

    let mut cfg = MediaLoopConfig {
        record_dir: Some(rec_dir.clone()),
        ..MediaLoopConfig::default()
    };
    // Margins for a shared 2-core machine where compiles run next to the test: the sender
    // thread may wake late (a 120 ms jitter buffer absorbs it, pinned there so it does not
    // shorten itself on a quiet stretch) and so may the loop (a 150 ms device cushion absorbs
    // it). The checks stay exact.
    cfg.session.listen = ListenConfig {
        layout: Layout::Stereo,
        jitter: JitterConfig {
            target: Span::from_millis(120),
            min: Span::from_millis(120),
            ..JitterConfig::default()
        },
        mute_dtmf,
        ..ListenConfig::default()
    };
    // The device's own buffer too: at its default (a 10.7 ms period, two queued) a stall of
    // this process longer than ~20 ms empties it, PulseAudio plays silence and the rest of
    // the call comes that much later (CI saw a speech side correlate at 0.56 so, with no
    // underrun on our side). 50 ms periods make that 100 ms.
    cfg.device_period = Some(Duration::from_millis(DEVICE_PERIOD_MS));
    cfg.session.lead = Span::from_millis(150);
    cfg.max_queue = Duration::from_millis(300);
    let clock = MediaClock::new();
    let status = Arc::new(Mutex::new(MediaReport::default()));
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let worker = {
        let status = status.clone();
        std::thread::spawn(move || run_media(&cfg, clock, &rx, None, Some(&status)))
    };
    let snapshot = || status.lock().unwrap().clone();

    // Wait until the device consumes at its rate: 250 ms of frames requested in 300 ms.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = snapshot().playout.map_or(0, |p| p.frames_requested);
        std::thread::sleep(Duration::from_millis(300));
        let b = snapshot().playout.map_or(0, |p| p.frames_requested);
        if a > 0 && b - a >= (RATE / 4) as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the device never started playing"
        );
    }

    let agent: Arc<str> = Arc::from(call.agent.as_str());
    let start = Instant::now() + Duration::from_millis(100);
    let start_ts = clock.at(start);
    tx.send(EndpointEvent::Call {
        agent: agent.clone(),
        call_id: call.call_id.clone(),
        payloads: PayloadMap::new(),
        started: start_ts,
    })
    .unwrap();
    for (i, (offset, direction, rtp)) in call.packets.iter().enumerate() {
        hook(pulse, i);
        let due = start + Duration::from_nanos(offset.as_nanos() as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tx.send(EndpointEvent::Media {
            arrival: start_ts + *offset,
            agent: agent.clone(),
            direction: *direction,
            rtp: rtp.clone(),
        })
        .unwrap();
    }
    tx.send(EndpointEvent::CallEnded {
        call_id: call.call_id.clone(),
    })
    .unwrap();
    // Let the drain finalise the WAV and the device play the tail (cushion, ring, sink).
    let deadline = Instant::now() + Duration::from_secs(5);
    while snapshot().session.recordings < 1 {
        assert!(
            Instant::now() < deadline,
            "{name}: recording never finalised"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(800));
    tx.send(EndpointEvent::Stopped).unwrap();
    let report = worker.join().expect("media loop panicked");
    std::thread::sleep(Duration::from_millis(300));
    let (left, right) = pulse.stop_recording();
    eprintln!("{name}: {report:?}");

    let wavs: Vec<PathBuf> = std::fs::read_dir(&rec_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(wavs.len(), 1, "{name}: one recording per call: {wavs:?}");
    Played {
        left,
        right,
        wav: wavs[0].clone(),
        report,
    }
}

/// Every packet decoded, none late or lost, no device frame dropped.
fn check_counters(name: &str, call: &Call, r: &MediaReport) {
    let s = &r.session;
    assert_eq!(s.packets as usize, call.packets.len(), "{name}: packets");
    assert_eq!(s.decoded as usize, call.packets.len(), "{name}: decoded");
    assert_eq!(
        (s.late, s.lost, s.rejected),
        (0, 0, 0),
        "{name}: late/lost/rejected"
    );
    assert_eq!(s.device_dropped, 0, "{name}: device frames dropped");
    assert_eq!(r.device_losses, 0, "{name}: device lost");
    // The device took the longer period: cpal asks for a buffer of two periods, and ALSA's
    // pulse plugin splits that buffer into three (here: 1600-frame callbacks for 2400 asked,
    // a 4800-frame buffer), where its default is 512 of 1024.
    let period = r.playout.map_or(0, |p| p.callback_frames);
    let asked = DEVICE_PERIOD_MS * RATE as u64 / 1000;
    assert!(
        (asked / 2..=asked).contains(&period),
        "{name}: device callbacks of {period} frames, asked for {asked}"
    );
}

/// The WAV (stereo, 8 kHz: agent left, caller right) holds each reference decode exactly,
/// 160-sample frame by frame, except at most `allowed` frames (lost or late ones).
fn check_recording(name: &str, call: &Call, wav: &Path, allowed: u64) {
    let (spec, pcm) = read_wav(wav);
    assert_eq!(
        (spec.channels, spec.sample_rate),
        (2, 8000),
        "{name}: WAV format"
    );
    let file = wav.file_name().unwrap().to_str().unwrap();
    assert!(
        file.starts_with(&format!("{}_", call.agent)),
        "{name}: WAV named {file}"
    );
    let left: Vec<i16> = pcm.iter().step_by(2).copied().collect();
    let right: Vec<i16> = pcm.iter().skip(1).step_by(2).copied().collect();
    for (side, got, want) in [
        ("agent", &left, &call.ref_agent),
        ("caller", &right, &call.ref_caller),
    ] {
        // Align on the first frame with sound, then compare every frame.
        let f0 = want
            .chunks(160)
            .position(|f| f.iter().any(|s| s.unsigned_abs() > 300))
            .unwrap();
        let key = &want[f0 * 160..f0 * 160 + 160];
        let pos = got
            .windows(160)
            .position(|w| w == key)
            .unwrap_or_else(|| panic!("{name}: {side} side: reference frame {f0} not in WAV"));
        let lag = pos - f0 * 160;
        assert!(
            got.len() >= lag + want.len(),
            "{name}: {side} side: WAV ends early"
        );
        let differing = want
            .chunks(160)
            .zip(got[lag..].chunks(160))
            .filter(|(w, g)| w != g)
            .count() as u64;
        assert!(
            differing <= allowed,
            "{name}: {side} side: {differing} frames differ from the reference decode"
        );
    }
}

/// The caller side (right) of the WAV: every digit (with its guard) exactly silent, and every
/// 20 ms frame clear of the digits equal to the reference decode, 30 ms (the muting delay)
/// later than without muting.
fn check_dtmf_recording(call: &Call, wav: &Path) {
    let (_, pcm) = read_wav(wav);
    let got: Vec<i16> = pcm.iter().skip(1).step_by(2).copied().collect();
    let want = &call.ref_caller;
    // Align on the first frame with sound (speech before the digits).
    let f0 = want
        .chunks(160)
        .position(|f| f.iter().any(|s| s.unsigned_abs() > 300))
        .unwrap();
    let key = &want[f0 * 160..f0 * 160 + 160];
    let lag = got
        .windows(160)
        .position(|w| w == key)
        .expect("dtmf: the caller's first speech frame is not in the WAV")
        - f0 * 160;
    let near_digit = |frame: usize| {
        let (a, b) = (frame * 20, frame * 20 + 20);
        call.dtmf.iter().any(|&(s, e)| a < e + 40 && b + 20 > s)
    };
    for &(s, e) in &call.dtmf {
        let span = &got[lag + s * 8..lag + e * 8];
        assert!(
            span.iter().all(|&x| x == 0),
            "dtmf: the digit at {s} ms is audible in the WAV"
        );
    }
    let differing = (want.chunks(160).zip(got[lag..].chunks(160)).enumerate())
        .filter(|(i, (w, g))| !near_digit(*i) && w != g)
        .count();
    assert_eq!(
        differing, 0,
        "dtmf: speech frames away from the digits differ"
    );
}

/// The sink's right channel: the speech before and after the digits correlates >= 0.9 with
/// the reference, and at each digit its two frequencies carry under 1 % of the reference's.
fn check_dtmf_sink(call: &Call, rec: &[f32]) {
    let reference = upsample(&call.ref_caller);
    let first = call.dtmf.first().unwrap().0 * REC / 1000;
    let last = call.dtmf.last().unwrap().1 * REC / 1000;
    let before = &reference[..first - REC / 10];
    let (c, lag) = best_correlation(rec, before);
    eprintln!("dtmf: speech before the digits {c:.4} at {lag}");
    assert!(c >= 0.9, "dtmf: speech before the digits correlates {c:.4}");
    let after = &reference[last + REC / 10..];
    let at = lag + last + REC / 10;
    let (c2, _) = best_lag(rec, after, at.saturating_sub(REC / 50)..=at + REC / 50);
    assert!(
        c2 >= 0.9,
        "dtmf: speech after the digits correlates {c2:.4}"
    );
    let digits = "4929123456781234";
    for (&(s, e), digit) in call.dtmf.iter().zip(digits.chars()) {
        let (a, b) = (s * REC / 1000, e * REC / 1000);
        let heard = &rec[(lag + a).min(rec.len())..(lag + b).min(rec.len())];
        let sent = &reference[a..b];
        for f in digit_pair(digit) {
            let (h, w) = (goertzel(heard, f), goertzel(sent, f));
            assert!(
                h < 0.01 * w,
                "dtmf: digit {digit} at {s} ms: {f} Hz heard at {h:.3e} (sent {w:.3e})"
            );
        }
    }
}

/// The Q.23 row and column frequencies of `digit`.
fn digit_pair(digit: char) -> [f64; 2] {
    let keys = ["123A", "456B", "789C", "*0#D"];
    let (r, row) = keys
        .iter()
        .enumerate()
        .find(|(_, k)| k.contains(digit))
        .unwrap();
    let c = row.find(digit).unwrap();
    [
        [697.0, 770.0, 852.0, 941.0][r],
        [1209.0, 1336.0, 1477.0, 1633.0][c],
    ]
}

fn goertzel(x: &[f32], freq: f64) -> f64 {
    common::audio::goertzel(x, freq, RATE)
}

/// The strongest frequency between 200 and 2000 Hz, in 5 Hz steps.
fn dominant(x: &[f32]) -> f64 {
    common::audio::dominant(x, RATE, 5.0)
}

fn upsample(pcm8k: &[i16]) -> Vec<f32> {
    let mut rs = FftFixedInOut::<f32>::new(8000, REC, 160, 1).unwrap();
    let input: Vec<f32> = pcm8k.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut out = Vec::new();
    let mut buf = rs.output_buffer_allocate(true);
    for chunk in input.chunks(rs.input_frames_next()) {
        let mut block = chunk.to_vec();
        block.resize(rs.input_frames_next(), 0.0);
        let (_, n) = rs
            .process_into_buffer(&[&block[..]], &mut buf, None)
            .unwrap();
        out.extend_from_slice(&buf[0][..n]);
    }
    out.drain(..rs.output_delay());
    out
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// The best normalised correlation of `reference` (48 kHz) with `rec`: lags within 250 ms of
/// where the onsets line up, searched at 8 kHz, refined at 48 kHz.
fn best_correlation(rec: &[f32], reference: &[f32]) -> (f64, usize) {
    let onset = |x: &[f32]| x.iter().position(|v| v.abs() > 0.02);
    let rec_on = onset(rec).expect("nothing audible in the recording") as i64;
    let ref_on = onset(reference).unwrap() as i64;
    let dec =
        |x: &[f32]| -> Vec<f32> { x.chunks(6).map(|c| c.iter().sum::<f32>() / 6.0).collect() };
    let (r8, f8) = (dec(rec), dec(reference));
    let guess = (rec_on - ref_on) / 6;
    let mut coarse = (f64::MIN, 0i64);
    for lag in (guess - 2000).max(0)..=guess + 2000 {
        let lag_u = lag as usize;
        if lag_u + f8.len() > r8.len() {
            break;
        }
        let c = correlation(&r8[lag_u..lag_u + f8.len()], &f8);
        if c > coarse.0 {
            coarse = (c, lag);
        }
    }
    let centre = coarse.1 as usize * 6;
    best_lag(rec, reference, centre.saturating_sub(12)..=centre + 12)
}

/// The lag in `lags` where `reference` correlates best with `rec`, and that correlation
/// (lags that would run past the end of `rec` are not tried).
fn best_lag(rec: &[f32], reference: &[f32], lags: RangeInclusive<usize>) -> (f64, usize) {
    let mut best = (f64::MIN, 0usize);
    for lag in lags {
        if lag + reference.len() > rec.len() {
            break;
        }
        let c = correlation(&rec[lag..lag + reference.len()], reference);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Where `reference` (48 kHz) sits in `rec` around `lag`, 250 ms window by window: for each
/// window with sound, its own best lag (within 50 ms of `lag`) and correlation there. Printed
/// when a correlation check fails, to tell a shifted stretch (a dropout or an inserted gap
/// in the audio path) from a distorted one.
fn windows(rec: &[f32], reference: &[f32], lag: usize) -> String {
    const W: usize = REC / 4;
    const SEARCH: usize = REC / 20;
    let mut out = format!(
        "recording {} samples, reference {} at lag {lag}:",
        rec.len(),
        reference.len()
    );
    for (i, w) in reference.chunks(W).enumerate() {
        if w.iter().all(|v| v.abs() < 0.02) {
            continue;
        }
        let at = lag + i * W;
        let (c, l) = best_lag(rec, w, at.saturating_sub(SEARCH)..=at + SEARCH);
        out += &format!(" [{} ms: {c:.3} at {:+}]", i * 250, l as i64 - at as i64);
    }
    out
}

fn espeak(text: &str, out: &Path) {
    run_ok(
        Command::new("espeak-ng")
            .args(["-s", "150", "-w"])
            .arg(out)
            .arg(text),
    );
}

#[test]
fn calls_play_through_the_media_loop_into_pulseaudio_and_are_recorded() {
    let in_ci = std::env::var_os("CI").is_some();
    let missing: Vec<&str> = ["pulseaudio", "pactl", "parec", "espeak-ng"]
        .into_iter()
        .filter(|p| !pulse::have(p))
        .chain((!pulse::have_alsa_pulse_plugin()).then_some("libasound2-plugins"))
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci,
            "CI is set but {missing:?} are not installed (tools/install-deps.sh --test)"
        );
        eprintln!("playout_pulse: {missing:?} not installed; the real-audio test did not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Generate first: capgen may need cargo, which must not see the audio environment.
    let tone = generate(dir, "tone", &["--duration", "3"]);
    let long = generate(dir, "long", &["--duration", "8"]);
    espeak(
        "The supervisor hears the agent on the left and the caller on the right.",
        &dir.join("agent.wav"),
    );
    espeak(
        "Hello, I am calling about my order, it has not arrived yet.",
        &dir.join("caller.wav"),
    );
    let agent_wav = dir.join("agent.wav");
    let caller_wav = dir.join("caller.wav");
    espeak(
        "I would like to pay the invoice by card now. I will type the number on the keypad, \
         it is on the back of the card. Thank you very much for your help today.",
        &dir.join("payer.wav"),
    );
    let payer_wav = dir.join("payer.wav");
    let card = generate(
        dir,
        "dtmf",
        &[
            "--duration",
            "8",
            "--agent-wav",
            agent_wav.to_str().unwrap(),
            "--wav",
            payer_wav.to_str().unwrap(),
            "--dtmf-inband",
            "4929123456781234",
            "--dtmf-at",
            "2",
        ],
    );
    let speech = generate(
        dir,
        "speech",
        &[
            "--duration",
            "4.5",
            "--agent-wav",
            agent_wav.to_str().unwrap(),
            "--wav",
            caller_wav.to_str().unwrap(),
        ],
    );

    let mut pulse = match Pulse::start(dir) {
        Ok(p) => p,
        Err(e) if !in_ci => {
            eprintln!("playout_pulse: {e}; the real-audio test did not run");
            return;
        }
        Err(e) => panic!("CI is set and PulseAudio could not start: {e}"),
    };

    // `silentmon supervisor --list-devices` lists the outputs cpal reaches by the name
    // `--device` takes (first column), PulseAudio's too, and the device opens by that name.
    let out = pulse
        .cmd(env!("CARGO_BIN_EXE_silentmon"))
        .args(["supervisor", "--list-devices"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    eprintln!("--list-devices:\n{listed}");
    assert!(out.status.success(), "--list-devices failed: {out:?}");
    assert!(
        listed
            .lines()
            .any(|l| l.trim_start_matches(['*', ' ']).split_whitespace().next() == Some("pulse")),
        "--list-devices does not list PulseAudio's `pulse`: {listed}"
    );
    assert!(has_device("pulse") && has_device("alsa:pulse") && !has_device("no-such-device"));
    drop(Playout::open(Some("pulse"), None).expect("the `pulse` device opens by its name"));
    assert!(
        matches!(
            Playout::open(Some("no-such-device"), None),
            Err(PlayoutError::NoDevice(Some(_)))
        ),
        "an unknown device name must be refused"
    );

    // Tone call: the agent's tone left, the caller's right.
    let played = play(
        &mut pulse,
        dir,
        "tone",
        &tone,
        (true, false),
        &mut |_, _| {},
    );
    check_counters("tone", &tone, &played.report);
    check_recording("tone", &tone, &played.wav, 0);
    let (fa, fc) = (tone.tone_agent.unwrap(), tone.tone_caller.unwrap());
    let start = played
        .left
        .iter()
        .position(|v| v.abs() > 0.02)
        .expect("nothing audible on the left");
    assert!(
        played.left.len() > start + 2 * REC,
        "tone recording too short"
    );
    let (lw, rw) = (
        &played.left[start + REC / 4..start + 7 * REC / 4],
        &played.right[start + REC / 4..start + 7 * REC / 4],
    );
    let (fl, fr) = (dominant(lw), dominant(rw));
    eprintln!("tone: left {fl} Hz (agent {fa}), right {fr} Hz (caller {fc})");
    assert!(
        (fl - fa).abs() <= 10.0,
        "left dominant {fl} Hz, agent sends {fa} Hz"
    );
    assert!(
        (fr - fc).abs() <= 10.0,
        "right dominant {fr} Hz, caller sends {fc} Hz"
    );
    assert!(
        goertzel(lw, fa) > 100.0 * goertzel(lw, fc),
        "caller leaks into the left channel"
    );
    assert!(
        goertzel(rw, fc) > 100.0 * goertzel(rw, fa),
        "agent leaks into the right channel"
    );

    // Speech call: each side correlates with its reference decode.
    let played = play(
        &mut pulse,
        dir,
        "speech",
        &speech,
        (true, false),
        &mut |_, _| {},
    );
    check_counters("speech", &speech, &played.report);
    check_recording("speech", &speech, &played.wav, 0);
    for (side, rec, reference) in [
        ("agent (left)", &played.left, &speech.ref_agent),
        ("caller (right)", &played.right, &speech.ref_caller),
    ] {
        let upsampled = upsample(reference);
        let (c, lag) = best_correlation(rec, &upsampled);
        let detail = windows(rec, &upsampled, lag);
        eprintln!("speech {side}: correlation {c:.4} at {lag}; {detail}");
        assert!(
            c >= 0.9,
            "speech {side}: correlation {c:.4} with the reference decode ({:?}); {detail}",
            played.report.playout
        );
    }

    // In-band DTMF: 16 digits typed in the middle of the caller's speech are silence in the
    // recording and in the sink; the speech around them is intact.
    let played = play(&mut pulse, dir, "dtmf", &card, (true, true), &mut |_, _| {});
    check_counters("dtmf", &card, &played.report);
    assert_eq!(played.report.session.dtmf_muted, 16, "dtmf: digits muted");
    check_dtmf_recording(&card, &played.wav);
    check_dtmf_sink(&card, &played.right);

    // Device loss: the daemon dies 1.5 s into a call and comes back 1.5 s later. The loop
    // must not stop: it keeps decoding and recording, reopens the device, and plays again.
    let n = long.packets.len();
    let mut hook = |p: &mut Pulse, i: usize| {
        if i == 3 * n / 16 {
            p.kill_daemon();
        } else if i == 6 * n / 16 {
            // Without waiting: the sender must keep its pace.
            p.spawn_daemon().expect("PulseAudio did not come back");
        }
    };
    let played = play(&mut pulse, dir, "loss", &long, (false, false), &mut hook);
    let r = &played.report;
    let s = &r.session;
    assert_eq!(s.decoded as usize, n, "loss: decoded");
    assert_eq!((s.late, s.lost), (0, 0), "loss: late/lost");
    assert!(
        r.device_losses >= 1,
        "loss: the dead daemon was not noticed"
    );
    assert!(
        s.device_dropped > 0,
        "loss: nothing dropped while there was no device"
    );
    let again = r.playout.map_or(0, |p| p.frames_played);
    assert!(
        again >= RATE as u64,
        "loss: only {again} frames played after the device came back"
    );
    check_recording("loss", &long, &played.wav, 0);
}
