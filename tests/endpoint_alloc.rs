//! The supervisor endpoint's per-packet path allocates nothing in steady state: monitor-service
//! bytes -> the monitor client's [`Decoder`] -> [`EndpointEvent::Media`] over the bounded
//! channel -> [`handle_event`] -> [`MediaSession::on_media`], the buffer back on the `spent`
//! channel and into the decoder's spare buffers, as `silentmon supervisor` wires them; the
//! session's `tick` (jitter buffer, decode, resampling to the device rate) runs in between.
//!
//! A counting global allocator (per thread) counts every allocation made after a warm-up. The
//! test has its own binary because a process has one global allocator.

use std::sync::Arc;

use crossbeam_channel::bounded;
use silentmon::binding::Direction;
use silentmon::codec::PayloadMap;
use silentmon::endpoint::{handle_event, EndpointEvent, MediaSession, SessionConfig};
use silentmon::media::g711::encode_ulaw;
use silentmon::monitor::service_client::{Decoder, Event, Received};
use silentmon::monitor::wire::Media;
use silentmon::time::{Span, Timestamp};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MONITOR: u32 = 3;
/// 20 ms of G.711 per packet, one packet per direction per step.
const STEPS: u32 = 3000;
const WARM_UP: u32 = 500;
const PTIME: Span = Span::from_nanos(20_000_000);
/// Bytes per simulated socket read (frames straddle reads).
const READ: usize = 700;
/// The supervisor's media queue.
const QUEUE: usize = 1024;

/// A PCMU packet of a 440 Hz (from agent) or 660 Hz (to agent) tone.
fn rtp(direction: Direction, step: u32) -> Vec<u8> {
    let (ssrc, hz) = match direction {
        Direction::FromAgent => (0x1111_1111u32, 440.0),
        Direction::ToAgent => (0x2222_2222u32, 660.0),
    };
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&(step as u16).to_be_bytes());
    p.extend_from_slice(&(step * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for n in 0..160u32 {
        let t = f64::from(step * 160 + n) / 8000.0;
        let s = (t * hz * std::f64::consts::TAU).sin() * 8000.0;
        p.push(encode_ulaw(s as i16));
    }
    p
}

/// The monitor service's byte stream: both directions' frames, step by step.
fn wire_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    for step in 0..STEPS {
        for direction in [Direction::FromAgent, Direction::ToAgent] {
            let rtp = rtp(direction, step);
            Media {
                monitor: MONITOR,
                stream: direction as u32,
                direction,
                capture_ts: Timestamp::from_nanos(i64::from(step) * PTIME.as_nanos()),
                rtp: &rtp,
            }
            .append(&mut out)
            .unwrap();
        }
    }
    out
}

#[test]
fn decode_channel_and_on_media_allocate_nothing_per_packet_once_warm() {
    let bytes = wire_bytes();
    let mut read_at = 0;
    let mut decoder = Decoder::new();
    decoder.hold(MONITOR.into());
    let (media_tx, media_rx) = bounded::<EndpointEvent>(QUEUE);
    let (spent_tx, spent_rx) = bounded::<Vec<u8>>(QUEUE);
    // As the endpoint runs by default: in-band DTMF muting on.
    let mut cfg = SessionConfig::default();
    cfg.listen.mute_dtmf = true;
    let mut session = MediaSession::new(cfg, 48_000, 2, None).unwrap();
    let agent: Arc<str> = Arc::from("5001");
    let start = Timestamp::from_nanos(1_700_000_000_000_000_000);
    session.on_call("call-1", PayloadMap::new(), start, &agent);

    let counted = allocations();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(allocations() > counted, "the allocation counter counts");

    let mut steady = 0;
    let mut played = 0;
    let mut packets = 0;
    for step in 0..STEPS {
        let before = allocations();
        let now = start + Span::from_nanos(i64::from(step) * PTIME.as_nanos());
        let mut got = 0;
        while got < 2 {
            // The network task: read, decode, forward with try_send, take back spent buffers.
            match decoder.next_frame().unwrap() {
                Some(Received::Media(Event::Media { direction, rtp, .. })) => {
                    let ev = EndpointEvent::Media {
                        arrival: now,
                        agent: agent.clone(),
                        direction,
                        rtp,
                    };
                    media_tx.try_send(ev).expect("the media loop keeps up");
                    got += 1;
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    let room = decoder.space();
                    let n = READ.min(room.len()).min(bytes.len() - read_at);
                    assert!(n > 0, "ran out of wire bytes");
                    room[..n].copy_from_slice(&bytes[read_at..read_at + n]);
                    decoder.filled(n);
                    read_at += n;
                }
            }
            while let Ok(rtp) = spent_rx.try_recv() {
                decoder.recycle(rtp);
            }
        }
        // The media thread: each event into the session, then a tick to the device.
        while let Ok(ev) = media_rx.try_recv() {
            assert!(!handle_event(&mut session, ev, Some(&spent_tx)));
            packets += 1;
        }
        played += session.tick(now, &mut |frames: &[f32]| frames.len());
        if step >= WARM_UP {
            steady += allocations() - before;
        }
    }
    assert_eq!(packets, 2 * STEPS as usize);
    assert_eq!(session.stats().packets, u64::from(2 * STEPS));
    assert!(played > 0, "the session rendered audio");
    assert_eq!(
        steady,
        0,
        "allocations in {} steady-state steps",
        STEPS - WARM_UP
    );
}

/// The counter sees the per-packet copy when buffers are not given back (so the test above
/// can fail).
#[test]
fn a_decoder_whose_buffers_never_come_back_allocates_per_packet() {
    let bytes = wire_bytes();
    let mut decoder = Decoder::new();
    decoder.hold(MONITOR.into());
    decoder.feed(&bytes[..bytes.len() / 10]);
    let mut kept = Vec::new();
    let before = allocations();
    let mut media = 0;
    while let Some(Received::Media(Event::Media { rtp, .. })) = decoder.next_frame().unwrap() {
        kept.push(rtp);
        media += 1;
    }
    assert!(media > 100);
    assert!(allocations() - before >= media);
}
