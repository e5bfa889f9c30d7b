//! An adaptive RTP jitter buffer for one direction of a monitored call, sans-IO: packets are
//! pushed with their arrival time, playout is pulled with `now`. No clock reads.
//!
//! Playout time of RTP timestamp `ts` is `base_arrival + (ts - base_ts) / clock + delay`: the
//! first packet fixes the base, `delay` is the buffering. The delay starts at the target (40 ms)
//! and adapts between `min` and `max` to three times the RFC 3550 interarrival jitter; it only
//! changes at the start of a talkspurt (marker bit) or after an underrun, so a change never cuts a
//! sentence. Reordering is fixed by timestamp; duplicates and packets arriving after their
//! playout time are dropped and counted; a gap is reported as `Missing` so the decoder conceals
//! it.

use std::collections::BTreeMap;

use crate::time::{Span, Timestamp};

/// Settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// Starting delay (40 ms).
    pub target: Span,
    /// Lowest delay (20 ms).
    pub min: Span,
    /// Highest delay (200 ms).
    pub max: Span,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Most packets held.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            target: Span::from_millis(40),
            min: Span::from_millis(20),
            max: Span::from_millis(200),
            clock_rate: 8000,
            capacity: 512,
        }
    }
}

/// What to play next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// A packet's payload for RTP timestamp `ts`.
    Packet {
        /// RTP timestamp (extended).
        ts: i64,
        /// Payload type.
        pt: u8,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Nothing arrived for `samples` samples from `ts`: conceal.
    Missing {
        /// RTP timestamp (extended) where the gap starts.
        ts: i64,
        /// Gap length in samples.
        samples: u32,
    },
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted.
    pub pushed: u64,
    /// Packets that came after their playout time.
    pub late: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Packets dropped because the buffer was full.
    pub overflow: u64,
    /// Gaps reported as missing.
    pub missing: u64,
    /// Times the buffer ran dry.
    pub underruns: u64,
}

#[derive(Clone, Debug)]
struct Held {
    pt: u8,
    payload: Vec<u8>,
}

/// The jitter buffer.
pub struct JitterBuffer {
    cfg: JitterConfig,
    held: BTreeMap<i64, Held>,
    base: Option<(Timestamp, i64)>,
    delay: Span,
    next_ts: Option<i64>,
    /// Smallest timestamp step seen between packets (the packet duration), if any.
    frame_samples: Option<u32>,
    last_ts: Option<(u32, i64)>,
    // RFC 3550 jitter, in RTP units * 16 (fixed point).
    jitter16: i64,
    last_transit: Option<i64>,
    stats: JitterStats,
    pool: Vec<Vec<u8>>,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        JitterBuffer {
            delay: cfg.target,
            cfg,
            held: BTreeMap::new(),
            base: None,
            next_ts: None,
            frame_samples: None,
            last_ts: None,
            jitter16: 0,
            last_transit: None,
            stats: JitterStats::default(),
            pool: Vec::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// Current buffering delay.
    pub fn delay(&self) -> Span {
        self.delay
    }

    /// Interarrival jitter estimate.
    pub fn jitter(&self) -> Span {
        self.rtp_to_span(self.jitter16 / 16)
    }

    fn rtp_to_span(&self, units: i64) -> Span {
        Span::from_nanos(units * 1_000_000_000 / self.cfg.clock_rate.max(1) as i64)
    }

    fn extend_ts(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ts {
            None => ts as i64,
            Some((last, ext)) => ext + ts.wrapping_sub(last) as i32 as i64,
        };
        if self.last_ts.is_none_or(|(_, e)| ext > e) {
            self.last_ts = Some((ts, ext));
        }
        ext
    }

    /// The playout time of extended timestamp `ts`.
    fn playout_time(&self, ts: i64) -> Option<Timestamp> {
        let (arrival, base_ts) = self.base?;
        Some(arrival + self.rtp_to_span(ts - base_ts) + self.delay)
    }

    /// A packet arrived at `arrival`.
    pub fn push(&mut self, arrival: Timestamp, ts: u32, pt: u8, marker: bool, payload: &[u8]) {
        let ext = self.extend_ts(ts);
        // RFC 3550 A.8 on transit times (arrival in RTP units minus timestamp).
        let arrival_units =
            arrival.as_nanos() as i128 * self.cfg.clock_rate as i128 / 1_000_000_000;
        let transit = arrival_units as i64 - ext;
        let measured = self.last_transit.is_some();
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.jitter16 += d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);

        if self.base.is_none() {
            self.base = Some((arrival, ext));
            self.next_ts = Some(ext);
        }
        // A talkspurt starts with nothing queued: the moment to adapt the delay (once there is
        // a jitter measurement; the first talkspurt plays at the target).
        if marker && measured && self.held.is_empty() {
            self.adapt(arrival, ext);
        }
        if self.next_ts.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            return;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.held.len() >= self.cfg.capacity {
            self.stats.overflow += 1;
            return;
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        self.held.insert(ext, Held { pt, payload: buf });
        self.stats.pushed += 1;
    }

    /// New delay from the jitter estimate; re-anchors so `ts` plays `delay` after `arrival`.
    fn adapt(&mut self, arrival: Timestamp, ts: i64) {
        let want = Span::from_nanos(self.jitter().as_nanos() * 3);
        let d = want.max(self.cfg.target.min(want.max(self.cfg.min)));
        self.delay = d.max(self.cfg.min).min(self.cfg.max);
        self.base = Some((arrival, ts));
        self.next_ts = Some(ts);
    }

    /// When the next `pop` can return something.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.playout_time(self.next_ts?)
    }

    /// Hands a popped packet's payload buffer back for reuse, so a steady stream stops
    /// allocating once the pool is warm. Optional: a buffer not returned is simply freed.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        if self.pool.len() < self.cfg.capacity {
            self.pool.push(payload);
        }
    }

    /// What to play at `now`, if anything is due. Call until it returns `None`. The payload of
    /// a [`Playout::Packet`] is moved out; give it back with [`JitterBuffer::recycle`].
    pub fn pop(&mut self, now: Timestamp) -> Option<Playout> {
        let next = self.next_ts?;
        if now < self.playout_time(next)? {
            return None;
        }
        match self.held.first_key_value().map(|(k, _)| *k) {
            Some(ts) if ts == next => {
                let held = self.held.remove(&ts)?;
                // The packet duration: the smallest step seen to the next queued packet
                // (a larger step is a gap, reported as missing when its time comes).
                if let Some((n, _)) = self.held.first_key_value() {
                    let step = (*n - ts) as u32;
                    if step > 0 && step <= self.cfg.clock_rate / 10 {
                        self.frame_samples = Some(self.frame_samples.map_or(step, |f| f.min(step)));
                    }
                }
                let len = self.frame_samples.unwrap_or(self.cfg.clock_rate / 50);
                self.next_ts = Some(ts + len as i64);
                Some(Playout::Packet {
                    ts,
                    pt: held.pt,
                    payload: held.payload,
                })
            }
            Some(ts) => {
                // A hole before the next held packet: at most one frame of concealment at a time.
                let frame = self.frame_samples.unwrap_or(self.cfg.clock_rate / 50);
                let samples = ((ts - next) as u32).min(frame);
                self.next_ts = Some(next + samples as i64);
                self.stats.missing += 1;
                Some(Playout::Missing { ts: next, samples })
            }
            None => {
                // Dry: wait for the next packet, which re-anchors playout.
                self.stats.underruns += 1;
                self.base = None;
                self.next_ts = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: i64) -> Timestamp {
        Timestamp::from_nanos(v * 1_000_000)
    }

    fn frame(i: u8) -> Vec<u8> {
        vec![i; 160]
    }

    /// Pops everything due up to `until`, stepping the clock by 1 ms.
    fn run(jb: &mut JitterBuffer, from: i64, until: i64) -> Vec<(i64, Playout)> {
        let mut out = Vec::new();
        for t in from..=until {
            while let Some(p) = jb.pop(ms(t)) {
                out.push((t, p));
            }
        }
        out
    }

    #[test]
    fn steady_stream_plays_after_the_target_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for i in 0..5u8 {
            jb.push(ms(20 * i as i64), 160 * i as u32, 0, i == 0, &frame(i));
        }
        let out = run(&mut jb, 0, 200);
        let times: Vec<i64> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![40, 60, 80, 100, 120]);
        assert!(matches!(&out[2].1, Playout::Packet { ts: 320, payload, .. } if payload[0] == 2));
        assert_eq!(jb.stats().underruns, 1);
    }

    #[test]
    fn reordering_fixed_duplicates_and_late_packets_counted_gaps_missing() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(ms(0), 0, 0, true, &frame(0));
        jb.push(ms(21), 320, 0, false, &frame(2)); // 1 overtaken by 2
        jb.push(ms(22), 160, 0, false, &frame(1));
        jb.push(ms(23), 160, 0, false, &frame(1)); // duplicate
        jb.push(ms(60), 640, 0, false, &frame(4)); // 3 lost
        let out = run(&mut jb, 0, 130);
        let kinds: Vec<String> = out
            .iter()
            .map(|(_, p)| match p {
                Playout::Packet { ts, .. } => format!("P{ts}"),
                Playout::Missing { ts, samples } => format!("M{ts}+{samples}"),
            })
            .collect();
        assert_eq!(kinds, vec!["P0", "P160", "P320", "M480+160", "P640"]);
        assert_eq!(jb.stats().duplicates, 1);
        // Packet 3 finally arrives after its playout time: late.
        jb.push(ms(131), 480, 0, false, &frame(3));
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn delay_grows_with_jitter_at_a_talkspurt_and_stays_bounded() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Arrivals alternate 0 and 30 ms late: about 15 ms of jitter.
        for i in 0..100i64 {
            let late = if i % 2 == 1 { 30 } else { 0 };
            jb.push(ms(20 * i + late), 160 * i as u32, 0, i == 0, &frame(0));
            run(&mut jb, 20 * i, 20 * i + 19);
        }
        let j = jb.jitter().as_millis_f64();
        assert!((10.0..30.0).contains(&j), "jitter {j} ms");
        // A new talkspurt after silence adapts the delay to about 3 x jitter, within bounds.
        run(&mut jb, 2000, 2300);
        jb.push(ms(5000), 160 * 300, 0, true, &frame(0));
        let d = jb.delay().as_millis_f64();
        assert!(d > 40.0 && d <= 200.0, "delay {d} ms");
    }
}
