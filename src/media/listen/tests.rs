//! The listening pipeline on a simulated clock: clean streams render as their plain decode,
//! loss conceals, CN plays noise, DTMF is silence, bad packets are counted.

use super::*;
use crate::codec::PayloadFormat;

const MS: i64 = 1_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(ms * MS)
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16)
        .collect()
}

/// G.711 codes of a tone, one 160-byte frame per packet.
fn g711_frames(freq: f64, packets: usize, alaw: bool) -> Vec<Vec<u8>> {
    tone(freq, 8000, packets * 160, 8000.0)
        .chunks(160)
        .map(|c| {
            c.iter()
                .map(|&s| {
                    if alaw {
                        g711::encode_alaw(s)
                    } else {
                        g711::encode_ulaw(s)
                    }
                })
                .collect()
        })
        .collect()
}

fn decode(frames: &[Vec<u8>], alaw: bool) -> Vec<i16> {
    let mut out = Vec::new();
    for f in frames {
        if alaw {
            g711::decode_alaw(f, &mut out);
        } else {
            g711::decode_ulaw(f, &mut out);
        }
    }
    out
}

/// A tiny deterministic generator for jitter and render steps.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Pushes `packets` (sorted here by arrival) while rendering from `from` to `to` ms in
/// pseudo-random steps of 1..=37 ms; every packet is pushed before the render at or after it.
fn run(
    ma: &mut MonitorAudio,
    mut packets: Vec<(i64, Direction, Vec<u8>)>,
    from: i64,
    to: i64,
    seed: u64,
) -> RenderedPcm {
    packets.sort_by_key(|p| p.0);
    let mut rng = Lcg(seed);
    let mut out = RenderedPcm::new();
    let mut next = packets.into_iter().peekable();
    let mut t = from * MS;
    while t <= to * MS {
        while let Some(p) = next.next_if(|p| p.0 <= t) {
            ma.push_rtp(Timestamp::from_nanos(p.0), p.1, &p.2);
        }
        ma.render(Timestamp::from_nanos(t), &mut out);
        t += (1 + rng.next(37) as i64) * MS + rng.next(MS as u64) as i64;
    }
    out
}

/// Asserts equality, naming the first differing sample instead of printing both slices.
#[track_caller]
fn same(got: &[i16], want: &[i16]) {
    assert_eq!(got.len(), want.len(), "lengths");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let to = (i + 6).min(got.len());
        panic!(
            "first difference at sample {i}: got {:?}, want {:?}",
            &got[i..to],
            &want[i..to]
        );
    }
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

#[test]
fn clean_streams_render_as_their_plain_decode_time_aligned() {
    let agent = g711_frames(440.0, 100, false);
    let caller = g711_frames(1000.0, 100, true);
    let mut rng = Lcg(7);
    let mut packets = Vec::new();
    for (i, f) in agent.iter().enumerate() {
        let p = rtp(0, 100 + i as u16, 5000 + 160 * i as u32, 0xA, i == 0, f);
        packets.push((1000 * MS + 20 * MS * i as i64, Direction::FromAgent, p));
    }
    let mut caller_first = 0;
    for (i, f) in caller.iter().enumerate() {
        // Up to 15 ms of jitter reorders some packets; it stays inside the 40 ms delay.
        let arrival = 1007 * MS + 20 * MS * i as i64 + rng.next(15 * MS as u64) as i64;
        if i == 0 {
            caller_first = arrival;
        }
        let p = rtp(
            8,
            65530u16.wrapping_add(i as u16),
            (u32::MAX - 800).wrapping_add(160 * i as u32),
            0xB,
            i == 0,
            f,
        );
        packets.push((arrival, Direction::ToAgent, p));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 990, 3500, 1);
    assert_eq!(out.rate, 8000);
    assert_eq!(out.agent.len(), out.caller.len());
    assert!(out.agent.len() >= 2400 * 8);
    // The agent starts 40 ms (the target delay) after the first packet.
    let a = 320;
    assert!(out.agent[..a].iter().all(|&s| s == 0));
    same(&out.agent[a..a + 16_000], &decode(&agent, false)[..]);
    // The caller starts 40 ms after its own first arrival, on the same timeline.
    let c = ((caller_first - 1000 * MS + 40 * MS) as i128 * 8000).div_euclid(1_000_000_000)
        as usize
        + usize::from((caller_first - 1000 * MS) * 8000 % 1_000_000_000 != 0);
    assert!(out.caller[..c].iter().all(|&s| s == 0));
    same(&out.caller[c..c + 16_000], &decode(&caller, true)[..]);
    let st = ma.stats();
    for leg in [&st.agent, &st.caller] {
        assert_eq!(leg.decoded, 100);
        assert_eq!(
            leg.jitter.late + leg.jitter.missing + leg.jitter.duplicates,
            0
        );
        assert_eq!(leg.malformed + leg.unsupported + leg.realigned, 0);
    }
}

/// The agent's side of one PCMU stream (SSRC 1), a packet every 20 ms from 0, marker first.
fn agent_stream(frames: &[Vec<u8>]) -> Vec<(i64, Direction, Vec<u8>)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = rtp(0, i as u16, 160 * i as u32, 1, i == 0, f);
            (20 * MS * i as i64, Direction::FromAgent, p)
        })
        .collect()
}

/// The largest step between neighbouring samples.
fn steepest(pcm: &[i16]) -> i32 {
    pcm.windows(2)
        .map(|w| (w[1] as i32 - w[0] as i32).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn within_a_talkspurt_the_delay_shrinks_by_a_silent_frame_when_one_comes() {
    // 3 s without a marker after the first packet: one second of tone, then tone and silence
    // alternating every 100 ms (five frames each).
    let tone_frames = g711_frames(440.0, 150, false);
    let silent = vec![0xffu8; 160];
    let frames: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            if i >= 50 && (i / 5) % 2 == 1 {
                silent.clone()
            } else {
                tone_frames[i].clone()
            }
        })
        .collect();
    let packets = agent_stream(&frames);
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 0, 3400, 5);
    let st = ma.stats().agent;
    // 40 ms target down to the 20 ms minimum: exactly one silent frame dropped, no sound
    // frame spliced (silence came within the patience).
    assert_eq!((st.jitter.shortened, st.spliced), (1, 0));
    assert_eq!(st.decoded, 150);
    // Every tone frame plays in full and in order: the rendered audio is the decode of all
    // frames less one silent frame, after the first 40 ms of silence.
    let pcm = &out.agent[320..];
    let truth = decode(&frames, false);
    let dropped = (0..150)
        .map(|i| i * 160)
        .find(|&k| pcm[k..k + 160] != truth[k..k + 160])
        .expect("a frame was dropped");
    assert!(
        truth[dropped..dropped + 160].iter().all(|&s| s == 0),
        "a silent one"
    );
    assert!(dropped >= 50 * 160, "not before a second of measurement");
    same(&pcm[..dropped], &truth[..dropped]);
    same(&pcm[dropped..149 * 160], &truth[dropped + 160..150 * 160]);
}

#[test]
fn without_silence_the_delay_shrinks_by_a_sound_frame_merged_with_a_crossfade() {
    // 3 s of continuous tone: no frame is silent, so after the second of measurement and a
    // second of patience one tone frame is dropped and merged into the next.
    let tone_frames = g711_frames(440.0, 150, false);
    let truth = decode(&tone_frames, false);
    let packets = agent_stream(&tone_frames);
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 0, 3400, 5);
    let st = ma.stats().agent;
    assert_eq!((st.jitter.shortened, st.spliced), (1, 1));
    assert_eq!(st.decoded, 150);
    let pcm = &out.agent[320..];
    // Unchanged up to the splice, which waited for the patience.
    let splice = (0..truth.len())
        .find(|&k| pcm[k] != truth[k])
        .expect("nothing was dropped");
    assert!(
        splice >= 90 * 160,
        "spliced at sample {splice}, before two seconds"
    );
    same(&pcm[..splice], &truth[..splice]);
    // After the crossfade (half a frame) the tone continues one frame (within the 2 ms
    // alignment) earlier.
    let after = splice + 80 + 16;
    let shift = (160 - 16..=160 + 16)
        .find(|&d| pcm[after..after + 800] == truth[after + d..after + d + 800])
        .expect("the tone does not continue after the splice");
    let end = truth.len() - shift;
    same(&pcm[after..end], &truth[after + shift..]);
    // No click: nothing steeper than the tone itself (and its mu-law steps) anywhere.
    let (got, want) = (steepest(&pcm[..end]), steepest(&truth));
    assert!(
        got <= want + want / 10,
        "steepest step {got} at the splice, the tone's is {want}"
    );
    // A recording's pipeline never drops sound.
    let mut archive = MonitorAudio::new(ListenConfig {
        shorten_on_silence: false,
        ..ListenConfig::default()
    });
    let out = run(&mut archive, agent_stream(&tone_frames), 0, 3400, 5);
    assert_eq!(archive.stats().agent.spliced, 0);
    same(&out.agent[320..320 + 150 * 160], &truth);
}

#[test]
fn lost_frames_are_concealed_then_silent_and_audio_resumes_exactly() {
    let frames = g711_frames(200.0, 120, false);
    let lost = |i: usize| i == 30 || (50..60).contains(&i);
    let packets = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost(*i))
        .map(|(i, f)| {
            (
                20 * MS * i as i64,
                Direction::FromAgent,
                rtp(0, i as u16, 160 * i as u32, 1, i == 0, f),
            )
        })
        .collect();
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 0, 2600, 3);
    let pcm = &out.agent[320..];
    let truth = decode(&frames, false);
    // Frame 30 (20 ms) is concealed by pitch repetition: its first 10 ms track the tone.
    let f30 = &pcm[30 * 160..31 * 160];
    let err: f64 = f30[..80]
        .iter()
        .zip(&truth[30 * 160..])
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / 80.0;
    assert!(err < 400.0, "mean error {err}");
    assert!(rms(&f30[80..]) > 1000.0, "still audible while fading");
    // Around it the decode is exact.
    same(&pcm[..30 * 160], &truth[..30 * 160]);
    same(&pcm[31 * 160..50 * 160], &truth[31 * 160..50 * 160]);
    // 200 ms lost: 60 ms of fading concealment, then silence, then exact audio again. The
    // buffer ran dry, so the stream resumes at the delay the (zero) jitter wants, 20 ms
    // instead of the 40 ms target: one frame earlier.
    let gap = &pcm[50 * 160..59 * 160];
    assert!(rms(&gap[..160]) > 2000.0);
    assert!(rms(&gap[320..480]) < rms(&gap[..160]) / 2.0);
    assert!(gap[480..].iter().all(|&s| s == 0));
    same(&pcm[59 * 160..119 * 160], &truth[60 * 160..]);
    let st = ma.stats().agent;
    assert_eq!(st.decoded, 109);
    // Frame 30 is a hole the jitter buffer reports; the 200 ms gap empties it (an underrun).
    assert_eq!(st.jitter.missing, 1);
    assert_eq!(st.jitter.underruns, 2);
    // 160 + 480 samples of loss, plus the fade after the stream ends.
    assert_eq!(st.concealed, 160 + 480 + 480);
}

#[test]
fn comfort_noise_plays_at_its_level_until_speech_returns() {
    let frames = g711_frames(300.0, 20, true);
    let mut packets: Vec<_> = frames[..10]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                20 * MS * i as i64,
                Direction::ToAgent,
                rtp(8, i as u16, 160 * i as u32, 9, i == 0, f),
            )
        })
        .collect();
    // Silence suppression: one CN packet at -50 dBov, then 600 ms without packets.
    packets.push((
        200 * MS,
        Direction::ToAgent,
        rtp(13, 10, 1600, 9, false, &[50]),
    ));
    for (k, f) in frames[10..].iter().enumerate() {
        let i = 11 + k;
        let ts = 1600 + 4800 + 160 * k as u32;
        packets.push((
            800 * MS + 20 * MS * k as i64,
            Direction::ToAgent,
            rtp(8, i as u16, ts, 9, k == 0, f),
        ));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 0, 1400, 5);
    let pcm = &out.caller;
    // Speech, then noise from 240 ms (after 10 frames + 40 ms) until speech resumes. The
    // marker of the new talkspurt lets the jitter buffer adapt: no jitter, so the minimum
    // delay of 20 ms, and speech resumes at 820 ms.
    same(&pcm[320..320 + 1600], &decode(&frames[..10], true)[..]);
    let resume = 820 * 8;
    let noise = &pcm[1920 + 160..resume];
    let want = 32767.0 * 10f64.powf(-50.0 / 20.0);
    let got = rms(noise);
    assert!(
        (got / want - 1.0).abs() < 0.2,
        "noise rms {got}, want {want}"
    );
    assert!(noise.iter().filter(|&&s| s != 0).count() > noise.len() / 2);
    same(
        &pcm[resume..resume + 1600],
        &decode(&frames[10..], true)[..],
    );
    assert_eq!(ma.stats().caller.cn, 1);
}

#[test]
fn telephone_events_are_silence_even_over_in_band_audio() {
    let frames = g711_frames(700.0, 40, false);
    let mut map = PayloadMap::new();
    map.insert(
        101,
        PayloadFormat {
            codec: Codec::TelephoneEvent,
            clock_rate: 8000,
            channels: 1,
        },
    );
    let mut packets: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                20 * MS * i as i64,
                Direction::FromAgent,
                rtp(0, i as u16, 160 * i as u32, 3, i == 0, f),
            )
        })
        .collect();
    // Digit 5 from frame 15 for 100 ms: updates every 20 ms, the end packet sent three times.
    for k in 0..8u16 {
        let duration = (160 * (k + 1)).min(800);
        let end = if k >= 4 { 0x80 } else { 0 };
        let mut ev = vec![5, end | 10];
        ev.extend_from_slice(&duration.to_be_bytes());
        let arrival = 300 * MS + 20 * MS * k.min(4) as i64 + k as i64 * MS;
        packets.push((
            arrival,
            Direction::FromAgent,
            rtp(101, 1000 + k, 15 * 160, 3, k == 0, &ev),
        ));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    ma.set_payloads(map);
    let out = run(&mut ma, packets, 0, 1000, 11);
    let pcm = &out.agent[320..];
    let truth = decode(&frames, false);
    same(&pcm[..15 * 160], &truth[..15 * 160]);
    assert!(
        pcm[15 * 160..20 * 160].iter().all(|&s| s == 0),
        "event span not silent"
    );
    same(&pcm[20 * 160..40 * 160], &truth[20 * 160..]);
    let st = ma.stats().agent;
    assert_eq!(st.dtmf, 8);
    assert_eq!(st.decoded, 40);
}

#[test]
fn malformed_and_unsupported_packets_are_counted_never_played() {
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let good = rtp(0, 1, 0, 1, true, &[0xFF; 160]);
    ma.push_rtp(at(0), Direction::FromAgent, &good);
    for bad in [&[][..], &[0x80, 0][..], &good[..11], &[0x40; 40][..]] {
        ma.push_rtp(at(1), Direction::FromAgent, bad);
    }
    ma.push_rtp(
        at(2),
        Direction::FromAgent,
        &rtp(3, 2, 160, 1, false, &[1; 33]),
    ); // GSM
    ma.push_rtp(
        at(2),
        Direction::FromAgent,
        &rtp(96, 2, 160, 1, false, &[1; 20]),
    ); // unmapped
    ma.push_rtp(at(2), Direction::ToAgent, &rtp(13, 2, 160, 1, false, &[])); // CN without level
    let mut out = RenderedPcm::new();
    ma.render(at(200), &mut out);
    let st = ma.stats();
    assert_eq!(st.agent.malformed, 4);
    assert_eq!(st.agent.unsupported, 2);
    assert_eq!(st.agent.last_rejected, Some(Error::UnknownPayloadType(96)));
    assert_eq!(st.agent.decoded, 1);
    assert_eq!(st.caller.malformed, 1);
    assert_eq!(st.caller.last_rejected, Some(Error::EmptyComfortNoise));
    // 0xFF is mu-law zero: silence everywhere, but 200 ms of it, aligned.
    assert_eq!(out.agent.len(), 1601);
    assert_eq!(out.caller.len(), 1601);
}

#[test]
fn a_new_ssrc_starts_the_direction_anew() {
    let a = g711_frames(440.0, 50, false);
    let b = g711_frames(880.0, 50, false);
    let mut packets = Vec::new();
    for (i, f) in a.iter().enumerate() {
        packets.push((
            20 * MS * i as i64,
            Direction::FromAgent,
            rtp(0, i as u16, 160 * i as u32, 1, i == 0, f),
        ));
    }
    for (i, f) in b.iter().enumerate() {
        let ts = 0x7000_0000u32.wrapping_add(160 * i as u32);
        packets.push((
            1000 * MS + 20 * MS * i as i64,
            Direction::FromAgent,
            rtp(0, 9000 + i as u16, ts, 2, i == 0, f),
        ));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 0, 2200, 13);
    let mut both = a.clone();
    both.extend(b.iter().cloned());
    same(&out.agent[320..320 + 16_000], &decode(&both, false)[..]);
    let st = ma.stats().agent;
    assert_eq!(st.ssrc_changes, 1);
    assert_eq!(st.decoded, 100);
    assert_eq!(st.jitter.pushed, 100);
}

/// Zero crossings per second, halved: a tone's frequency.
fn frequency(pcm: &[i16], rate: u32) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (pcm.len() as f64 / rate as f64)
}

#[test]
fn opus_session_decodes_at_48k_conceals_and_upsamples_a_g711_leg() {
    use audiopus::coder::Encoder;
    use audiopus::{Application, Channels, SampleRate};
    let enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
    let pcm = tone(440.0, 48_000, 48_000, 8000.0);
    let mut map = PayloadMap::new();
    map.insert(
        111,
        PayloadFormat {
            codec: Codec::Opus,
            clock_rate: 48_000,
            channels: 2,
        },
    );
    let mut packets = Vec::new();
    let mut buf = [0u8; 1500];
    for (i, frame) in pcm.chunks(960).enumerate() {
        let n = enc.encode(frame, &mut buf).unwrap();
        if i == 25 {
            continue; // lost: libopus conceals
        }
        packets.push((
            20 * MS * i as i64,
            Direction::FromAgent,
            rtp(111, i as u16, 960 * i as u32, 5, i == 0, &buf[..n]),
        ));
    }
    for (i, f) in g711_frames(1000.0, 50, false).iter().enumerate() {
        packets.push((
            20 * MS * i as i64 + 3 * MS,
            Direction::ToAgent,
            rtp(0, i as u16, 160 * i as u32, 6, i == 0, f),
        ));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    ma.set_payloads(map);
    let out = run(&mut ma, packets, 0, 1200, 17);
    assert_eq!(out.rate, 48_000);
    let agent = &out.agent[40 * 48..];
    let f = frequency(&agent[4800..48_000], 48_000);
    assert!((f - 440.0).abs() < 5.0, "agent {f} Hz");
    // The lost frame is concealed, not silent.
    assert!(rms(&agent[25 * 960..26 * 960]) > 1000.0);
    let caller = &out.caller[43 * 48..];
    let f = frequency(&caller[960..48_000], 48_000);
    assert!((f - 1000.0).abs() < 5.0, "caller {f} Hz");
    let st = ma.stats();
    assert_eq!(st.agent.decoded, 49);
    assert!(st.agent.concealed >= 960);
    assert_eq!(st.caller.decoded, 50);
}

/// Zero crossings per second of `pcm` at `rate`, halved.
fn hz(pcm: &[i16], rate: u32) -> f64 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (pcm.len() as f64 / rate as f64)
}

#[test]
fn g722_plays_at_16_khz_equal_to_its_plain_decode() {
    use crate::media::g722::{G722Decoder, G722Encoder};
    let pcm = tone(5000.0, 16_000, 16_000, 8000.0);
    let mut bytes = Vec::new();
    G722Encoder::new().unwrap().encode(&pcm, &mut bytes);
    let mut plain = Vec::new();
    let mut dec = G722Decoder::new().unwrap();
    let mut packets = Vec::new();
    for (i, f) in bytes.chunks(160).enumerate() {
        dec.decode(f, &mut plain);
        let p = rtp(9, i as u16, 160 * i as u32, 0xC, i == 0, f);
        packets.push((1000 * MS + 20 * MS * i as i64, Direction::FromAgent, p));
    }
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 1000, 2200, 3);
    assert_eq!(out.rate, 16_000);
    let start = (out.agent.windows(200))
        .position(|w| w == &plain[..200])
        .expect("the decode is in the output");
    same(&out.agent[start..start + 15_000], &plain[..15_000]);
    assert!((hz(&out.agent[start..start + 15_000], 16_000) - 5000.0).abs() < 20.0);
    assert_eq!(ma.stats().agent.decoded, 50);
}

#[test]
fn g729_plays_conceals_a_loss_and_its_sid_frames_give_comfort_noise() {
    use crate::media::g729::{G729Encoder, FRAME_SAMPLES};
    let mut enc = G729Encoder::new(true).unwrap();
    let speech = tone(440.0, 8000, 8000, 8000.0);
    let quiet = tone(440.0, 8000, 8000, 3.0);
    let mut packets = Vec::new();
    let (mut sent, mut sid) = (0, 0);
    for (i, pkt) in speech
        .iter()
        .chain(&quiet)
        .copied()
        .collect::<Vec<_>>()
        .chunks(160)
        .enumerate()
    {
        let mut payload = Vec::new();
        for f in pkt.chunks(FRAME_SAMPLES) {
            enc.encode(f.try_into().unwrap(), &mut payload);
        }
        // Packet 20 is lost; DTX sends nothing.
        if i == 20 || payload.is_empty() {
            continue;
        }
        sid += usize::from(payload.len() % 10 == 2);
        sent += 1;
        let p = rtp(18, i as u16, 160 * i as u32, 0xD, i == 0, &payload);
        packets.push((1000 * MS + 20 * MS * i as i64, Direction::FromAgent, p));
    }
    assert!(sid > 0, "the encoder sent SID frames");
    let mut ma = MonitorAudio::new(ListenConfig::default());
    let out = run(&mut ma, packets, 1000, 3200, 5);
    assert_eq!(out.rate, 8000);
    let st = ma.stats().agent;
    assert_eq!(st.decoded, sent);
    assert!(st.concealed > 0, "the lost packet was concealed");
    assert!(st.cn > 0);
    let start = out.agent.iter().position(|&s| s != 0).unwrap();
    let first = &out.agent[start..start + 8000];
    assert!((hz(&first[800..], 8000) - 440.0).abs() < 10.0);
    // The lost packet's 20 ms is not silence, and the silent second is quiet noise.
    let lost = &out.agent[start + 20 * 160..start + 21 * 160];
    assert!(rms(lost) > 1000.0, "{}", rms(lost));
    let tail = &out.agent[start + 12_000..start + 15_000];
    assert!(rms(tail) > 0.0 && rms(tail) < 300.0, "{}", rms(tail));
}

#[test]
fn in_band_digits_are_muted_when_asked_and_everything_comes_40_ms_later() {
    // A 440 Hz caller with the digit 5 (770 + 1336 Hz) from 400 to 500 ms.
    let mut pcm = tone(440.0, 8000, 8000, 4000.0);
    for (i, x) in pcm[3200..4000].iter_mut().enumerate() {
        let t = i as f64 / 8000.0;
        *x = (6000.0
            * ((2.0 * std::f64::consts::PI * 770.0 * t).sin()
                + (2.0 * std::f64::consts::PI * 1336.0 * t).sin())) as i16;
    }
    let frames: Vec<Vec<u8>> = pcm
        .chunks(160)
        .map(|c| c.iter().map(|&s| g711::encode_ulaw(s)).collect())
        .collect();
    let packets = |frames: &[Vec<u8>]| -> Vec<(i64, Direction, Vec<u8>)> {
        (frames.iter().enumerate())
            .map(|(i, f)| {
                let p = rtp(0, i as u16, 160 * i as u32, 0xE, i == 0, f);
                (1000 * MS + 20 * MS * i as i64, Direction::ToAgent, p)
            })
            .collect()
    };
    let mut plain = MonitorAudio::new(ListenConfig::default());
    let a = run(&mut plain, packets(&frames), 1000, 2500, 9);
    let mut muted = MonitorAudio::new(ListenConfig {
        mute_dtmf: true,
        ..ListenConfig::default()
    });
    let b = run(&mut muted, packets(&frames), 1000, 2500, 9);
    assert_eq!(muted.stats().caller.dtmf_muted, 1);
    assert_eq!(plain.stats().caller.dtmf_muted, 0);
    let start = a.caller.iter().position(|&s| s != 0).unwrap();
    let delay = 8 * crate::media::dtmf::DELAY_MS as usize;
    // The digit (and its guards) is silence; the rest is the plain output, DELAY_MS later.
    assert!(b.caller[start + delay + 3200..start + delay + 4000]
        .iter()
        .all(|&s| s == 0));
    same(
        &b.caller[start + delay..start + delay + 3100],
        &a.caller[start..start + 3100],
    );
    same(
        &b.caller[start + delay + 4200..start + delay + 7000],
        &a.caller[start + 4200..start + 7000],
    );
}
