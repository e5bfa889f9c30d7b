//! Real audio, end to end, without a sound card: a private PulseAudio daemon with a null sink,
//! cpal's ALSA host playing into it through ALSA's pulse plugin, `parec` recording the sink's
//! monitor. A generated G.711 call (RTP packets built here, pushed with simulated arrival
//! times) goes through `MonitorAudio` -> `OutputStage` -> `Playout` in real time; the
//! recording must carry the agent at 440 Hz on the left and the caller at 1000 Hz on the
//! right, and a mono run must correlate >= 0.9 with the reference decode at 48 kHz.
//!
//! With `CI` set, a missing or failing PulseAudio fails the test; locally without pulseaudio
//! installed it says so and returns. Everything runs in one #[test]: audio tests must not
//! overlap.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rubato::{FftFixedInOut, Resampler};
use silentmon::binding::Direction;
use silentmon::endpoint::Playout;
use silentmon::media::g711;
use silentmon::media::listen::{Layout, ListenConfig, MonitorAudio, RenderedPcm};
use silentmon::media::output::OutputStage;
use silentmon::time::{Span, Timestamp};

const REC_RATE: usize = 48_000;

/// The private daemon and the recorder; both are killed on drop, also when an assert fails.
struct Pulse {
    runtime: PathBuf,
    parec: Option<Child>,
}

impl Pulse {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PULSE_SERVER", server(&self.runtime))
            .env("HOME", self.runtime.parent().unwrap_or(&self.runtime));
        c
    }

    fn stop_recording(&mut self) {
        if let Some(mut p) = self.parec.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.stop_recording();
        let _ = self.cmd("pulseaudio").arg("--kill").status();
        // If --kill could not reach it, end the daemon by its own pid.
        if let Ok(pid) = std::fs::read_to_string(self.runtime.join("pulse/pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn server(runtime: &Path) -> String {
    format!("unix:{}", runtime.join("pulse/native").display())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_pulse(tmp: &Path) -> Result<Pulse, String> {
    let runtime = tmp.join("run");
    std::fs::create_dir_all(&runtime).map_err(|e| e.to_string())?;
    Command::new("chmod")
        .arg("700")
        .arg(&runtime)
        .status()
        .map_err(|e| e.to_string())?;
    // cpal/ALSA's pulse plugin read these when the device opens: set them in this process.
    std::env::set_var("XDG_RUNTIME_DIR", &runtime);
    std::env::set_var("PULSE_SERVER", server(&runtime));
    let pulse = Pulse {
        runtime,
        parec: None,
    };
    let status = pulse
        .cmd("pulseaudio")
        .args([
            "-D",
            "-n",
            "--exit-idle-time=-1",
            "-L",
            "module-native-protocol-unix",
            "-L",
            "module-null-sink sink_name=ci_sink rate=48000 channels=2",
        ])
        .status()
        .map_err(|e| format!("pulseaudio: {e}"))?;
    if !status.success() {
        return Err(format!("pulseaudio -D exited with {status}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = pulse
            .cmd("pactl")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if ok.is_ok_and(|s| s.success()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("pulseaudio did not answer pactl info within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = pulse
        .cmd("pactl")
        .args(["set-default-sink", "ci_sink"])
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        return Err("pactl set-default-sink ci_sink failed".into());
    }
    Ok(pulse)
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, if seq == 0 { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// mu-law frames of `pcm`, 160 samples each.
fn encode(pcm: &[i16]) -> Vec<Vec<u8>> {
    pcm.chunks(160)
        .map(|c| c.iter().map(|&s| g711::encode_ulaw(s)).collect())
        .collect()
}

fn decode(frames: &[Vec<u8>]) -> Vec<i16> {
    let mut out = Vec::new();
    for f in frames {
        g711::decode_ulaw(f, &mut out);
    }
    out
}

/// Plays a two-direction call in real time and returns the recorded (left, right) at 48 kHz.
fn play_and_record(
    pulse: &mut Pulse,
    layout: Layout,
    agent: &[Vec<u8>],
    caller: &[Vec<u8>],
    tmp: &Path,
) -> (Vec<f32>, Vec<f32>) {
    let raw = tmp.join(format!("rec-{layout:?}.raw"));
    let file = std::fs::File::create(&raw).unwrap();
    pulse.parec = Some(
        pulse
            .cmd("parec")
            .args([
                "-d",
                "ci_sink.monitor",
                "--rate=48000",
                "--channels=2",
                "--format=s16le",
                "--raw",
            ])
            .stdout(file)
            .spawn()
            .expect("parec"),
    );
    // parec needs 1.3-1.6 s before its first data.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&raw).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "parec wrote nothing in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut playout = Playout::open(None).expect("open the default output device");
    let cfg = ListenConfig {
        layout,
        ..ListenConfig::default()
    };
    let mut audio = MonitorAudio::new(cfg);
    let mut stage = OutputStage::new(layout, 1.0, playout.rate(), playout.channels()).unwrap();
    let mut packets: Vec<(Span, Direction, Vec<u8>)> = Vec::new();
    for (i, f) in agent.iter().enumerate() {
        packets.push((
            Span::from_millis(20 * i as i64),
            Direction::FromAgent,
            rtp(i as u16, 160 * i as u32, 0x1111, f),
        ));
    }
    for (i, f) in caller.iter().enumerate() {
        packets.push((
            Span::from_millis(20 * i as i64 + 5),
            Direction::ToAgent,
            rtp(i as u16, 8000 + 160 * i as u32, 0x2222, f),
        ));
    }
    packets.sort_by_key(|p| p.0);
    // Simulated time runs 100 ms ahead of the wall clock, so the ring always holds ~100 ms.
    let base = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let lead = Duration::from_millis(100);
    let call = Duration::from_millis(20 * agent.len().max(caller.len()) as u64 + 300);
    let start = Instant::now();
    let mut next = 0;
    let mut pcm = RenderedPcm::new();
    let mut frames = Vec::new();
    while start.elapsed() < call {
        let now = base + Span::from_nanos((start.elapsed() + lead).as_nanos() as i64);
        while next < packets.len() && base + packets[next].0 <= now {
            audio.push_rtp(base + packets[next].0, packets[next].1, &packets[next].2);
            next += 1;
        }
        pcm.clear();
        audio.render(now, &mut pcm);
        frames.clear();
        stage.process(&pcm, &mut frames).unwrap();
        let mut off = 0;
        while off < frames.len() {
            off += playout.write(&frames[off..]);
            if off < frames.len() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(!playout.is_lost(), "device lost while playing");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(600));
    let stats = audio.stats();
    assert_eq!(stats.agent.decoded as usize, agent.len());
    assert_eq!(stats.caller.decoded as usize, caller.len());
    eprintln!(
        "playout {layout:?}: {} Hz x{}, {:?}",
        playout.rate(),
        playout.channels(),
        playout.stats()
    );
    drop(playout);
    pulse.stop_recording();
    let bytes = std::fs::read(&raw).unwrap();
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in bytes.chunks_exact(4) {
        l.push(i16::from_le_bytes([f[0], f[1]]) as f32 / 32768.0);
        r.push(i16::from_le_bytes([f[2], f[3]]) as f32 / 32768.0);
    }
    (l, r)
}

fn goertzel(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / REC_RATE as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The strongest frequency between 200 and 2000 Hz, in 5 Hz steps.
fn dominant(x: &[f32]) -> f64 {
    (40..=400)
        .map(|k| k as f64 * 5.0)
        .max_by(|a, b| goertzel(x, *a).total_cmp(&goertzel(x, *b)))
        .unwrap()
}

/// First index where the signal rises clearly above the noise floor.
fn onset(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| v.abs() > 0.02)
}

fn upsample_reference(pcm8k: &[i16]) -> Vec<f32> {
    let mut rs = FftFixedInOut::<f32>::new(8000, REC_RATE, 160, 1).unwrap();
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

fn normalised_correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

#[test]
fn a_g711_call_plays_through_cpal_into_pulseaudio() {
    let in_ci = std::env::var_os("CI").is_some();
    if !have("pulseaudio") || !have("parec") {
        assert!(
            !in_ci,
            "CI is set but pulseaudio/parec are not installed (tools/install-deps.sh --test)"
        );
        eprintln!(
            "playout_pulse: pulseaudio or parec not installed; the real-audio test did not run"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut pulse = match start_pulse(tmp.path()) {
        Ok(p) => p,
        Err(e) if !in_ci => {
            eprintln!("playout_pulse: {e}; the real-audio test did not run");
            return;
        }
        Err(e) => panic!("CI is set and PulseAudio could not start: {e}"),
    };

    // Stereo: agent 440 Hz left, caller 1000 Hz right, 3 s each.
    let tone = |f: f64, n: usize| -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16)
            .collect()
    };
    let agent = encode(&tone(440.0, 24_000));
    let caller = encode(&tone(1000.0, 24_000));
    let (l, r) = play_and_record(&mut pulse, Layout::Stereo, &agent, &caller, tmp.path());
    let start = onset(&l).expect("nothing audible on the left channel");
    assert!(
        l.len() > start + 2 * REC_RATE,
        "recording too short: {} frames after onset",
        l.len() - start
    );
    let (lw, rw) = (
        &l[start + 12_000..start + 84_000],
        &r[start + 12_000..start + 84_000],
    );
    let (fl, fr) = (dominant(lw), dominant(rw));
    assert!((fl - 440.0).abs() <= 10.0, "left dominant {fl} Hz");
    assert!((fr - 1000.0).abs() <= 10.0, "right dominant {fr} Hz");
    assert!(
        goertzel(lw, 440.0) > 100.0 * goertzel(lw, 1000.0),
        "caller leaks into the left channel"
    );
    assert!(
        goertzel(rw, 1000.0) > 100.0 * goertzel(rw, 440.0),
        "agent leaks into the right channel"
    );

    // Mono: a gated 440 Hz agent and a 300-3000 Hz chirp caller, so timing errors show.
    let n = 24_000;
    let gated: Vec<i16> = tone(440.0, n)
        .iter()
        .enumerate()
        .map(|(i, &s)| if (i / 1600) % 2 == 0 { s / 2 } else { 0 })
        .collect();
    let chirp: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let phase = 2.0 * std::f64::consts::PI * (300.0 * t + 450.0 * t * t);
            (5000.0 * phase.sin()) as i16
        })
        .collect();
    let (agent, caller) = (encode(&gated), encode(&chirp));
    let reference: Vec<i16> = decode(&agent)
        .iter()
        .zip(decode(&caller))
        .map(|(a, c)| a.saturating_add(c))
        .collect();
    let reference = upsample_reference(&reference);
    let (l, _) = play_and_record(&mut pulse, Layout::Mono, &agent, &caller, tmp.path());
    let rec_on = onset(&l).expect("nothing audible in the mono run");
    let ref_on = onset(&reference).unwrap();
    let window = 2 * REC_RATE;
    let mut best = (f64::MIN, 0i64);
    for d in -480i64..=480 {
        let s = rec_on as i64 - ref_on as i64 + d;
        if s < 0 || s as usize + window > l.len() {
            continue;
        }
        let c = normalised_correlation(&l[s as usize..s as usize + window], &reference[..window]);
        if c > best.0 {
            best = (c, d);
        }
    }
    eprintln!(
        "mono correlation {:.4} at lag {} around onset {rec_on}",
        best.0, best.1
    );
    assert!(
        best.0 >= 0.9,
        "mono run correlates {:.4} with the reference",
        best.0
    );
}
