//! The media session on a simulated clock, without a device: the sink is a `Vec`.

use super::*;
use crate::media::g711;
use crate::media::listen::Layout;

const MS: i64 = 1_000_000;
/// An arbitrary epoch time (2023-11-14T22:13:20Z) so the recording names are realistic.
const T0: i64 = 1_700_000_000_000 * MS;
const AGENT: &str = "5001";

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(T0 + ms * MS)
}

fn rtp(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// mu-law frames (160 codes each) of a tone.
fn frames(freq: f64, packets: usize) -> Vec<Vec<u8>> {
    (0..packets * 160)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect::<Vec<_>>()
        .chunks(160)
        .map(|c| c.iter().map(|&s| g711::encode_ulaw(s)).collect())
        .collect()
}

fn decode(f: &[Vec<u8>]) -> Vec<i16> {
    let mut out = Vec::new();
    for x in f {
        g711::decode_ulaw(x, &mut out);
    }
    out
}

/// One packet to deliver: arrival (ms from T0), direction, bytes.
type Pkt = (i64, Direction, Vec<u8>);

/// A call: agent frames from `start` ms every 20 ms, caller frames 5 ms later.
fn call(start: i64, agent: &[Vec<u8>], caller: &[Vec<u8>], ssrc: u32) -> Vec<Pkt> {
    let mut v = Vec::new();
    for (i, f) in agent.iter().enumerate() {
        let ts = 160 * i as u32;
        v.push((
            start + 20 * i as i64,
            Direction::FromAgent,
            rtp(i as u16, ts, ssrc, i == 0, f),
        ));
    }
    for (i, f) in caller.iter().enumerate() {
        let ts = 8000 + 160 * i as u32;
        v.push((
            start + 5 + 20 * i as i64,
            Direction::ToAgent,
            rtp(i as u16, ts, ssrc + 1, i == 0, f),
        ));
    }
    v.sort_by_key(|p| p.0);
    v
}

/// Delivers `pkts` at their arrival times and ticks every 10 ms over `[from, to]` ms;
/// returns the samples the sink received at each tick.
fn run(s: &mut MediaSession, pkts: &[Pkt], from: i64, to: i64, out: &mut Vec<f32>) -> Vec<usize> {
    run_every(s, pkts, (from, to), 10, out)
}

/// [`run`] ticking every `every` ms.
fn run_every(
    s: &mut MediaSession,
    pkts: &[Pkt],
    (from, to): (i64, i64),
    every: i64,
    out: &mut Vec<f32>,
) -> Vec<usize> {
    let mut per_tick = Vec::new();
    let mut next = pkts.iter().position(|p| p.0 >= from).unwrap_or(pkts.len());
    for t in from..=to {
        while next < pkts.len() && pkts[next].0 <= t {
            s.on_media(at(pkts[next].0), AGENT, pkts[next].1, &pkts[next].2);
            next += 1;
        }
        if t % every == 0 {
            let before = out.len();
            s.tick(at(t), &mut |f: &[f32]| {
                out.extend_from_slice(f);
                f.len()
            });
            per_tick.push(out.len() - before);
        }
    }
    per_tick
}

/// A 48 kHz stereo session with a 50 ms lead (the figures below count with it, whatever the
/// default).
fn stereo_session(dir: Option<PathBuf>) -> MediaSession {
    let cfg = SessionConfig {
        listen: ListenConfig {
            layout: Layout::Stereo,
            ..ListenConfig::default()
        },
        lead: Span::from_millis(50),
        ..SessionConfig::default()
    };
    MediaSession::new(cfg, 48_000, 2, dir).unwrap()
}

fn read_wav(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<i16>().map(Result::unwrap).collect())
}

/// Interleaved stereo -> (left, right).
fn split_stereo(pcm: &[i16]) -> (Vec<i16>, Vec<i16>) {
    (
        pcm.iter().step_by(2).copied().collect(),
        pcm.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn clean_stream_reaches_the_sink_as_the_output_stage_of_the_plain_decode() {
    let (agent, caller) = (frames(440.0, 50), frames(1000.0, 50));
    let pkts = call(0, &agent, &caller, 0x1000);
    let mut s = stereo_session(None);
    let mut got = Vec::new();
    run(&mut s, &pkts, 0, 1500, &mut got);

    // The plain decode on the session timeline: origin is the first (agent) arrival, each
    // direction plays 40 ms (the jitter target) after its first arrival.
    let rendered = s.stats().rendered as usize; // one agent: samples per direction
    let mut want_pcm = RenderedPcm {
        rate: 8000,
        agent: vec![0; 320],
        caller: vec![0; 360],
    };
    want_pcm.agent.extend(decode(&agent));
    want_pcm.caller.extend(decode(&caller));
    want_pcm.agent.resize(rendered, 0);
    want_pcm.caller.resize(rendered, 0);
    let mut stage = OutputStage::new(Layout::Stereo, 1.0, 48_000, 2).unwrap();
    let mut want = vec![0.0f32; 2 * 2400]; // the 50 ms cushion (no device callback seen yet)
    stage.process(&want_pcm, &mut want).unwrap();

    assert_eq!(got.len(), want.len(), "device samples");
    // After the last packet each side conceals (fading to silence), which the plain decode
    // does not have: compare everything the resampler made before that (8000 input samples).
    let n = 2 * (2400 + 6 * 8000);
    assert!(
        got[..n] == want[..n],
        "device frames differ from the plain decode"
    );
    assert!(got[2 * 2400 + 2 * 6 * 400..n].iter().any(|v| v.abs() > 0.1));
    let st = s.stats();
    assert_eq!(st.packets, 100);
    assert_eq!(st.decoded, 100);
    assert_eq!(
        (st.late, st.lost, st.device_dropped, st.cushions),
        (0, 0, 0, 1)
    );
}

#[test]
fn hold_keeps_producing_silence_at_the_real_rate() {
    let (agent, caller) = (frames(440.0, 50), frames(1000.0, 50));
    let pkts = call(0, &agent, &caller, 0x2000);
    let mut s = stereo_session(None);
    let mut out = Vec::new();
    run(&mut s, &pkts, 0, 1000, &mut out);
    // On hold: no packets for 2 s.
    let before = out.len();
    let rendered_before = s.stats().rendered;
    let per_tick = run(&mut s, &[], 1010, 3000, &mut out);
    let held = out.len() - before;
    // 200 ticks of 10 ms: 2 s at 48 kHz stereo, give or take one resampler chunk (20 ms).
    let want = 2 * 96_000;
    assert!(
        (held as i64 - want as i64).abs() <= 2 * 960,
        "{held} samples in 2 s of hold, want about {want}"
    );
    // Ticks are 10 ms, resampler chunks 20 ms: at least every other tick hands frames.
    assert!(per_tick.iter().filter(|&&n| n > 0).count() >= 99);
    assert_eq!(s.stats().rendered - rendered_before, 16_000);
    // Concealment fades to silence within 60 ms of the last packet (which plays at ~1.04 s):
    // 300 ms later (cushion and resampler delay included) the device gets silence.
    let quiet = &out[before + 2 * 48 * 300..];
    assert!(quiet.len() > 2 * 48_000);
    let peak = quiet.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(peak < 1e-4, "hold is not silent: peak {peak}");
    let st = s.stats();
    assert!(
        st.concealed > 0 && st.concealed <= 2 * 480,
        "concealed {}",
        st.concealed
    );
    assert!(st.jitter_underruns >= 2);
    assert_eq!(st.device_dropped, 0);
}

#[test]
fn a_new_call_starts_a_new_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stereo_session(Some(dir.path().to_path_buf()));
    let (a1, c1) = (frames(440.0, 25), frames(1000.0, 25));
    let (a2, c2) = (frames(600.0, 25), frames(800.0, 25));
    s.on_call("call-1@x", PayloadMap::new(), at(0), AGENT);
    let mut out = Vec::new();
    run(&mut s, &call(0, &a1, &c1, 0x3000), 0, 1000, &mut out);
    let first = s.recording_of(AGENT).unwrap().to_path_buf();
    s.on_call("call-2", PayloadMap::new(), at(1000), AGENT);
    run(&mut s, &call(1010, &a2, &c2, 0x4000), 1010, 2000, &mut out);
    let second = s.recording_of(AGENT).unwrap().to_path_buf();
    assert_ne!(first, second);
    let name = |p: &std::path::Path| p.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(name(&first), "5001_call-1_x_20231114T221320Z.wav");
    assert_eq!(name(&second), "5001_call-2_20231114T221321Z.wav");
    // The first was finalised by the new call: readable, and it holds call 1 exactly.
    let (spec, pcm) = read_wav(&first);
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
    let (left, right) = split_stereo(&pcm);
    assert_eq!(left.len(), 8001, "0..=1000 ms at 8 kHz");
    assert!(
        left[320..320 + 4000] == decode(&a1)[..],
        "agent side of call 1"
    );
    assert!(
        right[360..360 + 4000] == decode(&c1)[..],
        "caller side of call 1"
    );
    s.on_stopped();
    let (_, pcm2) = read_wav(&second);
    assert_eq!(pcm2.len(), 2 * 8000, "1010..=2000 ms");
    assert_eq!(s.stats().recordings, 2);
    assert_eq!(s.stats().calls, 2);
}

#[test]
fn call_end_finalises_the_recording_after_the_buffered_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stereo_session(Some(dir.path().to_path_buf()));
    let (agent, caller) = (frames(440.0, 25), frames(1000.0, 25));
    let pkts = call(0, &agent, &caller, 0x5000);
    s.on_call("c1", PayloadMap::new(), at(0), AGENT);
    let mut out = Vec::new();
    // The last packet arrives at 485 ms and plays from 525 to 545 ms; the end comes before.
    run(&mut s, &pkts, 0, 500, &mut out);
    s.on_call_ended("c1");
    s.on_call_ended("no-such-call");
    let path = s.recording_of(AGENT).unwrap().to_path_buf();
    run(&mut s, &pkts, 510, 750, &mut out);
    assert!(
        s.recording_of(AGENT).is_some(),
        "finalised before the drain"
    );
    run(&mut s, &pkts, 760, 800, &mut out);
    assert!(
        s.recording_of(AGENT).is_none(),
        "not finalised after the drain"
    );
    assert_eq!(s.call_of(AGENT), None);
    let (_, pcm) = read_wav(&path);
    let (left, right) = split_stereo(&pcm);
    assert!(
        left[320..320 + 4000] == decode(&agent)[..],
        "agent tail missing"
    );
    assert!(
        right[360..360 + 4000] == decode(&caller)[..],
        "caller tail missing"
    );
    // Finalised means closed: the file no longer grows, the device still gets audio.
    let len = std::fs::metadata(&path).unwrap().len();
    let before = out.len();
    run(&mut s, &[], 810, 1000, &mut out);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert!(out.len() > before);
    let st = s.stats();
    assert_eq!((st.recordings, st.unknown_call_ends), (1, 1));
}

#[test]
fn device_frames_the_sink_refuses_are_counted_and_a_new_device_gets_a_cushion() {
    let (agent, caller) = (frames(440.0, 25), frames(1000.0, 25));
    let pkts = call(0, &agent, &caller, 0x6000);
    let mut s = stereo_session(None);
    let mut taken = 0usize;
    let mut offered = 0usize;
    for t in (0..=300).step_by(10) {
        for p in pkts.iter().filter(|p| p.0 > t - 10 && p.0 <= t) {
            s.on_media(at(p.0), AGENT, p.1, &p.2);
        }
        s.tick(at(t), &mut |f: &[f32]| {
            offered += f.len();
            let n = f.len() / 2;
            taken += n;
            n
        });
    }
    let st = s.stats();
    assert_eq!(st.device_frames as usize, offered / 2);
    assert_eq!(st.device_dropped as usize, (offered - taken) / 2);
    s.set_device(44_100, 1).unwrap();
    assert_eq!(s.device(), (44_100, 1));
    let mut mono = Vec::new();
    s.tick(at(400), &mut |f: &[f32]| {
        mono.extend_from_slice(f);
        f.len()
    });
    assert_eq!(s.stats().cushions, 2);
    // 50 ms of cushion at 44.1 kHz mono, then the audio made since.
    assert!(mono.len() >= 2205 && mono[..2205].iter().all(|v| *v == 0.0));
    assert!(
        mono[2205..].iter().any(|v| v.abs() > 0.1),
        "audio after the cushion"
    );
    // The device takes 6000-frame pieces and ran dry: the next cushion is one of them and
    // the 50 ms lead.
    let big = PlayoutStats {
        underruns: 1,
        callback_frames: 6000,
        ..PlayoutStats::default()
    };
    s.record_playout(big, at(400));
    assert_eq!(s.cushion_frames(), 6000 + 2205);
    s.tick(at(400), &mut |f: &[f32]| f.len());
    assert_eq!(
        s.stats().cushions,
        2,
        "within 100 ms (two leads) of the last cushion: none"
    );
    s.record_playout(
        PlayoutStats {
            underruns: 2,
            ..big
        },
        at(530),
    );
    mono.clear();
    s.tick(at(530), &mut |f: &[f32]| {
        mono.extend_from_slice(f);
        f.len()
    });
    assert_eq!(s.stats().cushions, 3);
    assert!(mono.len() >= 8205 && mono[..8205].iter().all(|v| *v == 0.0));
    // Underruns reported again right away do not stack cushions.
    s.record_playout(
        PlayoutStats {
            underruns: 3,
            ..big
        },
        at(540),
    );
    s.tick(at(540), &mut |f: &[f32]| f.len());
    assert_eq!(s.stats().cushions, 3);
    assert!(MediaSession::new(SessionConfig::default(), 0, 2, None).is_err());
}

#[test]
fn two_agents_are_summed_frame_by_frame() {
    let (a1, c1) = (frames(440.0, 25), frames(1000.0, 25));
    let (a2, c2) = (frames(600.0, 25), frames(800.0, 25));
    let p1 = call(0, &a1, &c1, 0x7000);
    let p2: Vec<Pkt> = call(12, &a2, &c2, 0x8000);
    // Each agent alone, then both in one session.
    let alone = |pkts: &[Pkt], agent: &str| {
        let mut s = stereo_session(None);
        let mut out = Vec::new();
        for t in 0..=700 {
            for p in pkts.iter().filter(|p| p.0 == t) {
                s.on_media(at(p.0), agent, p.1, &p.2);
            }
            if t % 10 == 0 {
                s.tick(at(t), &mut |f: &[f32]| {
                    out.extend_from_slice(f);
                    f.len()
                });
            }
        }
        out.split_off(2 * 2400) // without the cushion
    };
    let (x, y) = (alone(&p1, "a"), alone(&p2, "b"));
    let mut s = stereo_session(None);
    let mut mixed = Vec::new();
    for t in 0..=700 {
        for (agent, pkts) in [("a", &p1), ("b", &p2)] {
            for p in pkts.iter().filter(|p| p.0 == t) {
                s.on_media(at(p.0), agent, p.1, &p.2);
            }
        }
        if t % 10 == 0 {
            s.tick(at(t), &mut |f: &[f32]| {
                mixed.extend_from_slice(f);
                f.len()
            });
        }
    }
    assert_eq!(s.agents().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(s.stats().cushions, 1, "one cushion for the mix");
    let mixed = &mixed[2 * 2400..];
    // Agent b joins the mix with its first frames, `d` frames after agent a's first ones.
    let n = mixed.len().min(x.len()) - 2 * 2000;
    let d = (0..2000usize)
        .find(|&d| {
            (0..n).all(|i| {
                let b = if i >= 2 * d { y[i - 2 * d] } else { 0.0 };
                mixed[i] == (x[i] + b).clamp(-1.0, 1.0)
            })
        })
        .expect("the mix is not the frame-by-frame sum of the two agents");
    assert!(d > 0, "b started 12 ms (a tick and more) after a");
    assert!(mixed.iter().any(|v| v.abs() > 0.3));
}

#[test]
fn a_call_held_for_a_consult_is_one_recording_that_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stereo_session(Some(dir.path().to_path_buf()));
    let (a1, c1) = (frames(440.0, 25), frames(1000.0, 25));
    let (a2, c2) = (frames(600.0, 25), frames(800.0, 25));
    let mut out = Vec::new();
    // Call 1 talks, then is held (silence until 1000 ms).
    s.on_call("call-1", PayloadMap::new(), at(0), AGENT);
    run(&mut s, &call(0, &a1, &c1, 0x3000), 0, 1000, &mut out);
    let first = s.recording_of(AGENT).unwrap().to_path_buf();
    // The consult during the hold, then its end and drain.
    s.on_call("consult", PayloadMap::new(), at(1000), AGENT);
    run(&mut s, &call(1010, &a2, &c2, 0x4000), 1010, 1600, &mut out);
    let consult = s.recording_of(AGENT).unwrap().to_path_buf();
    assert_ne!(consult, first);
    s.on_call_ended("consult");
    run(&mut s, &[], 1610, 1900, &mut out);
    assert!(
        s.recording_of(AGENT).is_none(),
        "the consult's WAV is final"
    );
    // Back to call 1: its WAV goes on, no third file.
    s.on_call("call-1", PayloadMap::new(), at(0), AGENT);
    run(&mut s, &call(2000, &a1, &c1, 0x5000), 2000, 3000, &mut out);
    assert_eq!(s.recording_of(AGENT), Some(first.as_path()));
    s.on_call_ended("call-1");
    run(&mut s, &[], 3010, 3300, &mut out);
    assert!(s.recording_of(AGENT).is_none());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let (_, pcm) = read_wav(&first);
    let (left, right) = split_stereo(&pcm);
    assert!(
        left[320..320 + 4000] == decode(&a1)[..],
        "call 1 before the hold"
    );
    assert!(right[360..360 + 4000] == decode(&c1)[..]);
    // The hold's silence, then call 1 again after the consult.
    // (After the 60 ms concealment fade.)
    assert!(
        left[4900..8001].iter().all(|&v| v.abs() < 64),
        "the hold is quiet"
    );
    let after = &left[8001..];
    assert!(
        after.windows(4000).any(|w| w == &decode(&a1)[..]),
        "call 1 after the consult is in its WAV"
    );
    let (_, consult_pcm) = read_wav(&consult);
    let (consult_left, _) = split_stereo(&consult_pcm);
    assert!(consult_left.windows(4000).any(|w| w == &decode(&a2)[..]));
    assert_eq!(s.stats().recordings, 2);
    assert_eq!(s.stats().calls, 3);
}

#[test]
fn the_live_pipeline_drops_frames_to_shorten_its_delay_the_recording_keeps_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stereo_session(Some(dir.path().to_path_buf()));
    // 3 s: a second of tone, then tone and silence alternating every 100 ms, no marker.
    let tone = frames(440.0, 150);
    let agent: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            if i >= 50 && (i / 5) % 2 == 1 {
                vec![0xff; 160]
            } else {
                tone[i].clone()
            }
        })
        .collect();
    let caller = frames(1000.0, 150);
    s.on_call("call-1", PayloadMap::new(), at(0), AGENT);
    let mut out = Vec::new();
    run(&mut s, &call(0, &agent, &caller, 0x5000), 0, 3300, &mut out);
    let wav = s.recording_of(AGENT).unwrap().to_path_buf();
    // Live: 40 ms target down to the 20 ms minimum on both sides: a silent frame dropped on
    // the agent's, and on the caller's continuous tone, which has none, a tone frame merged
    // into the next after the second of patience.
    let st = s.stats();
    assert_eq!((st.jitter_shortened, st.jitter_spliced), (2, 1));
    s.on_stopped();
    // The recording holds both sides whole, at the target delay.
    let (_, pcm) = read_wav(&wav);
    let (left, right) = split_stereo(&pcm);
    assert!(
        left[320..320 + 150 * 160] == decode(&agent)[..],
        "agent side"
    );
    assert!(
        right[360..360 + 150 * 160] == decode(&caller)[..],
        "caller side"
    );
}

#[test]
fn the_meters_follow_what_is_heard_and_fall_to_still_in_silence() {
    let mut s = stereo_session(None);
    s.on_call("c1", PayloadMap::default(), at(0), AGENT);
    let pkts = call(0, &frames(1000.0, 50), &frames(400.0, 50), 10);
    let mut out = Vec::new();
    run(&mut s, &pkts, 0, 900, &mut out);
    let [agent, caller] = s.stats().levels;
    // A tone of amplitude 8000 has an RMS of about 5657.
    assert!((4500..7000).contains(&agent), "{agent}");
    assert!((4500..7000).contains(&caller), "{caller}");
    assert!(s.stats().delay_ms[0] > 0);
    // The call's audio ends at 1 s; a second of silence later the needles rest.
    run(&mut s, &pkts, 901, 2200, &mut out);
    assert_eq!(s.stats().levels, [0, 0]);
}

#[test]
fn the_meters_fall_by_the_time_that_passed_whatever_the_tick() {
    let pkts = call(0, &frames(1000.0, 50), &frames(400.0, 50), 10);
    let mut levels = Vec::new();
    for every in [2, 10] {
        let mut s = stereo_session(None);
        s.on_call("c1", PayloadMap::default(), at(0), AGENT);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        // The audio ends about 1.05 s in; the needles then fall for 100 ms and 150 ms.
        for (from, to) in [(0, 1150), (1151, 1200)] {
            run_every(&mut s, &pkts, (from, to), every, &mut out);
            seen.push(s.stats().levels[0]);
        }
        levels.push(seen);
    }
    let (fast, slow) = (&levels[0], &levels[1]);
    for (f, s) in fast.iter().zip(slow) {
        // Within a 10 ms step of each other (a fall of 0.9 per tick would leave the 2 ms
        // ticks' needle at a few percent of the other's).
        assert!(*s > 500 && *f > 500, "{levels:?}");
        let ratio = f64::from(*f) / f64::from(*s);
        assert!((0.8..1.25).contains(&ratio), "{levels:?}");
    }
    assert!(fast[1] < fast[0] && slow[1] < slow[0], "{levels:?}");
}

#[test]
fn recording_switched_off_and_on_mid_call_and_the_output_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stereo_session(Some(dir.path().to_owned()));
    assert!(s.recording());
    s.on_call("c1", PayloadMap::default(), at(0), AGENT);
    let pkts = call(0, &frames(1000.0, 150), &frames(400.0, 150), 10);
    let mut out = Vec::new();
    run(&mut s, &pkts, 0, 1000, &mut out);
    // Off: the call's file is finalised now.
    s.set_recording(None, at(1000));
    assert!(!s.recording());
    assert_eq!(s.stats().recordings, 1);
    run(&mut s, &pkts, 1001, 1500, &mut out);
    // On again: the rest of the call goes to a new file named with the time it started.
    s.set_recording(Some(dir.path().to_owned()), at(1500));
    run(&mut s, &pkts, 1501, 2600, &mut out);
    s.on_call_ended("c1");
    run(&mut s, &pkts, 2601, 3500, &mut out);
    assert_eq!(s.stats().recordings, 2);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("5001_c1_20231114T221320Z"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("5001_c1_20231114T221321Z"),
        "{names:?}"
    );
    // The output: mono at half volume, the device kept.
    s.set_output(Layout::Mono, 0.5).unwrap();
    assert_eq!(s.config().listen.layout, Layout::Mono);
    assert_eq!(s.config().listen.volume, 0.5);
    assert_eq!(s.device(), (48_000, 2));
}

/// Ticks every 10 ms over `[from, to]` with the device queue reported at `queued` frames
/// before each tick (what the shell does); returns the samples handed per tick.
fn run_with_queue(
    s: &mut MediaSession,
    pkts: &[Pkt],
    (from, to): (i64, i64),
    queued: u64,
) -> Vec<usize> {
    let mut handed = Vec::new();
    for t in (from..=to).step_by(10) {
        for p in pkts.iter().filter(|p| p.0 > t - 10 && p.0 <= t) {
            s.on_media(at(p.0), AGENT, p.1, &p.2);
        }
        let playout = PlayoutStats {
            queued_frames: queued,
            callback_frames: 480,
            ..PlayoutStats::default()
        };
        s.record_playout(playout, at(t));
        handed.push(s.tick(at(t), &mut |f: &[f32]| f.len()));
    }
    handed
}

#[test]
fn a_device_queue_that_strays_from_the_lead_is_trimmed_or_padded_in_silence() {
    let silence = vec![vec![0xFFu8; 160]; 400];
    let pkts = call(0, &silence, &silence, 0x7000);
    // Lead 50 ms (2400 frames at 48 kHz); the queue stays at 100 ms: 1920 frames more than
    // the lead and a 10 ms callback, left out of the first ticks after two whole seconds of
    // watching (a 10 ms tick has 480).
    let mut s = stereo_session(None);
    let handed = run_with_queue(&mut s, &pkts, (0, 3000), 4800);
    assert_eq!(s.stats().queue_low_frames, 4800);
    assert_eq!(s.stats().queue_trimmed_frames, 1920);
    assert!(
        handed.iter().filter(|&&n| n == 0).count() >= 4,
        "{handed:?}"
    );
    // Within the slack (above: 5 ms plus a 10 ms callback; below: 5 ms): left alone.
    for queued in [2400 + 230 + 480, 2400 - 230] {
        let mut s = stereo_session(None);
        run_with_queue(&mut s, &pkts, (0, 3000), queued);
        let st = s.stats();
        assert_eq!(
            (st.queue_trimmed_frames, st.queue_padded_frames),
            (0, 0),
            "{queued}"
        );
    }
    // 6.25 ms below: padded, although that is within a callback (no start phase leaves the
    // queue below the lead; this one is sinking towards an underrun).
    let mut s = stereo_session(None);
    run_with_queue(&mut s, &pkts, (0, 2600), 2400 - 300);
    assert_eq!(s.stats().queue_padded_frames, 300);
    // At 20 ms (a device faster than the clock): 1440 frames of silence added, once per
    // correction (then the queue is watched anew).
    let mut s = stereo_session(None);
    let handed = run_with_queue(&mut s, &pkts, (0, 2600), 960);
    assert_eq!(s.stats().queue_padded_frames, 1440);
    assert!(handed.contains(&(2 * (1440 + 480))), "{handed:?}");
    // One second with a stall (the queue low once) pads nothing: the next would trim it back.
    let mut s = stereo_session(None);
    run_with_queue(&mut s, &pkts, (0, 1050), 2400);
    run_with_queue(&mut s, &pkts, (1060, 1500), 960);
    run_with_queue(&mut s, &pkts, (1510, 4500), 2400);
    let st = s.stats();
    assert_eq!((st.queue_trimmed_frames, st.queue_padded_frames), (0, 0));
    assert_eq!(st.queue_low_frames, 2400);
}

#[test]
fn a_queue_correction_waits_for_silence_then_at_most_five_seconds() {
    let tone = frames(1000.0, 600);
    let pkts = call(0, &tone, &tone, 0x7100);
    let mut s = stereo_session(None);
    // Planned after two whole seconds of watching; the call is never silent.
    run_with_queue(&mut s, &pkts, (0, 6500), 4800);
    assert_eq!(s.stats().queue_trimmed_frames, 0, "not on sound before 5 s");
    run_with_queue(&mut s, &pkts, (6510, 8000), 4800);
    assert!(s.stats().queue_trimmed_frames >= 1920);
}
