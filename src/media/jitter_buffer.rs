//! An adaptive RTP jitter buffer for one direction of a monitored call, sans-IO: packets are
//! pushed with their arrival time, playout is pulled with `now`. No clock reads.
//!
//! Playout time of RTP timestamp `ts` is `base_arrival + (ts - base_ts) / clock + delay`: the
//! first packet fixes the base, `delay` is the buffering. The delay starts at the target (40 ms)
//! and adapts between `min` and `max` to what the jitter asks for: three times the RFC 3550
//! interarrival jitter. It moves
//! - at once, at the start of a talkspurt (marker bit, nothing queued) and when a stream resumes
//!   after the buffer ran dry (hold, loss), where no sound is cut;
//! - within a talkspurt (a G.711 call without silence suppression is one talkspurt from answer to
//!   BYE), once there is a second of jitter measurement and at most once a second
//!   ([`ADAPT_INTERVAL`]): it grows on arrival, the next packet then plays later and the gap is
//!   concealed downstream; it shrinks only by one whole frame at a time, when the caller drops
//!   the frame just popped through [`JitterBuffer::shorten_by_popped`], which the listening
//!   pipeline does for a silent frame, or after a second of sound without one for a sound frame
//!   it merges into the next with a crossfade (progressive discard, as in PJSIP's jitter buffer,
//!   with the splice of NetEq's "accelerate").
//! - An anchor that came late (the first packet after a stall, its followers then coming in a
//!   burst; a slow first packet) leaves every later packet early against its schedule: real
//!   buffering beyond `delay` that `delay` does not show. The least earliness of each second's
//!   packets is watched, and when a whole second's packets (and the current one's so far) all
//!   came at least a frame early, shortening moves the anchor earlier by that frame the same
//!   way (one frame a second), but only [`EARLY_HOLD`] (30 s) after the buffer last ran dry,
//!   got a packet too late, or one a frame later than the last second's latest: stalls that
//!   recur are absorbed by what the last one left.
//!
//! Reordering is fixed by timestamp; duplicates and packets arriving after their playout time
//! are dropped and counted; a gap is reported as `Missing` so the decoder conceals it.

use std::collections::BTreeMap;

use crate::time::{Span, Timestamp};

/// Least time between two delay changes within a talkspurt, and the jitter measurement a stream
/// needs before the first.
pub const ADAPT_INTERVAL: Span = Span::from_millis(1000);
/// How long after the buffer last ran dry and re-anchored, got a packet too late to play, or
/// one a frame later than the last second's latest, a late anchor is kept: stalls that come
/// back would otherwise find the buffer short again each time, and the buffering they left
/// is what absorbs the next one.
pub const EARLY_HOLD: Span = Span::from_millis(30_000);
/// Least growth within a talkspurt: smaller wants wait, so the delay does not creep up by
/// concealed slivers.
const GROW_STEP: Span = Span::from_millis(5);

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
    /// Silent frames dropped to shorten the delay within a talkspurt.
    pub shortened: u64,
    /// Times the delay grew within a talkspurt.
    pub lengthened: u64,
}

impl std::ops::AddAssign<&JitterStats> for JitterStats {
    fn add_assign(&mut self, s: &JitterStats) {
        self.pushed += s.pushed;
        self.late += s.late;
        self.duplicates += s.duplicates;
        self.overflow += s.overflow;
        self.missing += s.missing;
        self.underruns += s.underruns;
        self.shortened += s.shortened;
        self.lengthened += s.lengthened;
    }
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
    /// When the first jitter measurement came, and when the delay last moved within a talkspurt.
    measured_since: Option<Timestamp>,
    last_change: Option<Timestamp>,
    /// The packet the last `pop` returned: (timestamp, samples, playout time).
    popped: Option<(i64, u32, Timestamp)>,
    /// How much earlier than the anchor's schedule every packet of the last whole second came
    /// (zero or more): buffering beyond `delay`, which shortening may take back.
    early: Span,
    /// The second being watched for it: its start and the least earliness so far.
    early_window: Option<(Timestamp, Span)>,
    /// When the buffer last re-anchored after running dry, got a packet too late to play, or
    /// one a frame later than the last second's latest (a stall the late anchor absorbed).
    disturbed: Option<Timestamp>,
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
            measured_since: None,
            last_change: None,
            popped: None,
            early: Span::from_nanos(0),
            early_window: None,
            disturbed: None,
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

    /// The delay the measured jitter asks for: three times the interarrival jitter, within
    /// `min..=max`.
    pub fn wanted_delay(&self) -> Span {
        Span::from_nanos(self.jitter().as_nanos() * 3)
            .max(self.cfg.min)
            .min(self.cfg.max)
    }

    /// Whether the delay may move within a talkspurt at `now`: a second of measurement, and a
    /// second since the last move.
    fn may_adapt(&self, now: Timestamp) -> bool {
        let measured = self
            .measured_since
            .is_some_and(|t| now >= t + ADAPT_INTERVAL);
        let settled = self.last_change.is_none_or(|t| now >= t + ADAPT_INTERVAL);
        measured && settled
    }

    /// Interarrival jitter estimate.
    pub fn jitter(&self) -> Span {
        self.rtp_to_span(self.jitter16 / 16)
    }

    fn rtp_to_span(&self, units: i64) -> Span {
        let nanos = units as i128 * 1_000_000_000 / self.cfg.clock_rate.max(1) as i128;
        Span::from_nanos(nanos.clamp(i64::MIN as i128 / 2, i64::MAX as i128 / 2) as i64)
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
            self.measured_since.get_or_insert(arrival);
        }
        self.last_transit = Some(transit);

        // A talkspurt starts, or the stream resumes after the buffer ran dry, with nothing
        // queued: the moment to move the delay at once (once there is a jitter measurement;
        // the first talkspurt starts at the target).
        let resumed = self.base.is_none() && self.next_ts.is_none() && self.stats.underruns > 0;
        if resumed {
            self.disturbed = Some(arrival);
        }
        if (marker || resumed) && measured && self.held.is_empty() {
            self.adapt(arrival, ext);
        } else if self.base.is_none() {
            self.anchor(arrival, ext);
        } else if self.may_adapt(arrival) && self.wanted_delay() >= self.delay + GROW_STEP {
            // Within a talkspurt the jitter outgrew the delay: grow now (what is queued plays
            // later, the gap is concealed downstream).
            self.delay = self.wanted_delay();
            self.last_change = Some(arrival);
            self.stats.lengthened += 1;
        }
        self.watch_earliness(arrival, ext);
        if self.next_ts.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            self.disturbed = Some(arrival);
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
        self.delay = self.wanted_delay();
        self.anchor(arrival, ts);
    }

    /// Plays `ts` next, `delay` after `arrival`; earliness is watched against this anchor anew.
    fn anchor(&mut self, arrival: Timestamp, ts: i64) {
        self.base = Some((arrival, ts));
        self.next_ts = Some(ts);
        self.early = Span::from_nanos(0);
        self.early_window = None;
    }

    /// The packet duration in samples: the smallest step seen, else 20 ms.
    fn frame_len(&self) -> u32 {
        self.frame_samples.unwrap_or(self.cfg.clock_rate / 50)
    }

    /// Tracks how much earlier than the anchor's schedule packets come, per second: an anchor
    /// that came late (the first packet after a stall, whose followers then come in a burst,
    /// or a slow first packet) would otherwise keep that lateness as extra delay for the
    /// rest of the stream, unseen by `delay`.
    fn watch_earliness(&mut self, arrival: Timestamp, ts: i64) {
        let Some((base_arrival, base_ts)) = self.base else {
            return;
        };
        if (ts - base_ts).unsigned_abs() > u64::from(self.cfg.clock_rate) * 3600 {
            // A timestamp an hour away from the anchor's: no schedule to measure against.
            return;
        }
        let earliness = base_arrival + self.rtp_to_span(ts - base_ts) - arrival;
        if earliness + self.rtp_to_span(self.frame_len() as i64) < self.early {
            // A frame later than the last second's latest: a stall the late anchor absorbed.
            self.disturbed = Some(arrival);
        }
        let (start, least) = self.early_window.get_or_insert((arrival, earliness));
        if earliness < *least {
            *least = earliness;
        }
        if arrival - *start >= ADAPT_INTERVAL {
            self.early = (*least).max(Span::from_nanos(0));
            self.early_window = None;
        }
    }

    /// Drops the packet the last [`JitterBuffer::pop`] returned, to shorten the delay by its
    /// length, if the measured jitter leaves that much to spare (or the last second's packets
    /// all came that much earlier than the anchor's schedule), adaptation is due (see the
    /// module doc) and the next packet is already here (so the drop cannot starve the stream).
    /// Returns whether it did: then the caller must not play the packet, and the next one is
    /// due at once. The listening pipeline calls this for silent frames only.
    pub fn shorten_by_popped(&mut self) -> bool {
        if !self.can_shorten_by_popped() {
            return false;
        }
        let Some((_, samples, due)) = self.popped else {
            return false;
        };
        let by = self.rtp_to_span(samples as i64);
        self.popped = None;
        if self.delay >= self.wanted_delay() + by {
            self.delay = self.delay - by;
        } else if let Some((arrival, ts)) = self.base {
            // The anchor came late: move it earlier instead (every packet then came that
            // much less early).
            self.base = Some((arrival - by, ts));
            self.early = self.early - by;
            if let Some((_, least)) = self.early_window.as_mut() {
                *least = *least - by;
            }
        }
        self.last_change = Some(due);
        self.stats.shortened += 1;
        true
    }

    /// Whether [`JitterBuffer::shorten_by_popped`] would drop the packet just popped now
    /// (without doing it): the caller may first judge whether the packet is one to drop.
    pub fn can_shorten_by_popped(&self) -> bool {
        let Some((ts, samples, due)) = self.popped else {
            return false;
        };
        let by = self.rtp_to_span(samples as i64);
        let next = ts + samples as i64;
        self.next_ts == Some(next)
            && self.held.contains_key(&next)
            && self.may_adapt(due)
            && (self.delay >= self.wanted_delay() + by || self.anchor_is_late(due, by))
    }

    /// Whether the anchor may move `by` earlier at `now`: the last whole second's packets and
    /// the current second's so far all came that much early, and nothing disturbed the
    /// buffer for [`EARLY_HOLD`].
    fn anchor_is_late(&self, now: Timestamp, by: Span) -> bool {
        self.early >= by
            && self.early_window.is_none_or(|(_, least)| least >= by)
            && self.disturbed.is_none_or(|t| now >= t + EARLY_HOLD)
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
                let len = self.frame_len();
                self.next_ts = Some(ts + len as i64);
                self.popped = self.playout_time(ts).map(|due| (ts, len, due));
                Some(Playout::Packet {
                    ts,
                    pt: held.pt,
                    payload: held.payload,
                })
            }
            Some(ts) => {
                // A hole before the next held packet: at most one frame of concealment at a time.
                let frame = self.frame_len();
                let samples = ((ts - next) as u32).min(frame);
                self.next_ts = Some(next + samples as i64);
                self.stats.missing += 1;
                self.popped = None;
                Some(Playout::Missing { ts: next, samples })
            }
            None => {
                // Dry: wait for the next packet, which re-anchors playout.
                self.stats.underruns += 1;
                self.popped = None;
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

    /// A clean 20 ms stream for `secs`, popping every 1 ms; `drop_silent` says for each popped
    /// packet (its index) whether the caller offers it for shortening.
    fn clean_stream(jb: &mut JitterBuffer, packets: i64, drop: impl Fn(i64) -> bool) -> Vec<i64> {
        let mut played = Vec::new();
        for t in 0..packets * 20 + 300 {
            if t % 20 == 0 && t / 20 < packets {
                let i = t / 20;
                jb.push(ms(t), 160 * i as u32, 0, i == 0, &frame(i as u8));
            }
            while let Some(p) = jb.pop(ms(t)) {
                if let Playout::Packet { ts, .. } = p {
                    if drop(ts / 160) && jb.shorten_by_popped() {
                        continue;
                    }
                    played.push(t - ts / 8);
                }
            }
        }
        played
    }

    #[test]
    fn within_a_talkspurt_the_delay_shrinks_by_dropped_frames_after_a_second() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Every packet offered: nothing happens before a second of measurement, then one
        // frame goes (40 -> 20 ms, the minimum), and no more.
        let lag = clean_stream(&mut jb, 150, |_| true);
        assert_eq!(lag.len(), 149, "one packet dropped");
        assert!(lag[..49].iter().all(|&l| l == 40), "{lag:?}");
        assert!(lag[60..].iter().all(|&l| l == 20), "{lag:?}");
        assert_eq!(jb.stats().shortened, 1);
        assert_eq!(jb.delay(), Span::from_millis(20));
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn the_delay_stays_when_no_frame_is_offered() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let lag = clean_stream(&mut jb, 150, |_| false);
        assert_eq!(lag.len(), 150);
        assert!(lag.iter().all(|&l| l == 40));
        assert_eq!(jb.stats().shortened, 0);
        // A pop that returned no packet offers nothing either.
        assert!(!jb.shorten_by_popped());
    }

    #[test]
    fn within_a_talkspurt_the_delay_grows_with_jitter_at_most_once_a_second() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut late = Vec::new();
        // Clean for 2 s, then every other packet 30 ms late: no marker, no underrun.
        for i in 0..250i64 {
            let extra = if i >= 100 && i % 2 == 1 { 30 } else { 0 };
            jb.push(ms(20 * i + extra), 160 * i as u32, 0, i == 0, &frame(0));
            run(&mut jb, 20 * i + extra, 20 * i + extra + 19);
            late.push(jb.stats().late);
        }
        let d = jb.delay().as_millis_f64();
        assert!(d > 40.0 && d <= 200.0, "delay {d} ms");
        let grown = jb.stats().lengthened;
        assert!((1..=3).contains(&grown), "grew {grown} times in 3 s");
        // Once grown, late packets stop.
        assert_eq!(late[249], late[200], "late packets after growing: {late:?}");
    }

    /// Plays `packets` 20 ms packets arriving at `arrival(i)` ms (in order of arrival),
    /// offering every packet for shortening; returns (packet, ms from its send to its
    /// playout) of those played.
    fn play_arrivals(
        jb: &mut JitterBuffer,
        packets: i64,
        arrival: impl Fn(i64) -> i64,
    ) -> Vec<(i64, i64)> {
        let mut order: Vec<(i64, i64)> = (0..packets).map(|i| (arrival(i), i)).collect();
        order.sort();
        let (mut next, mut lag) = (0, Vec::new());
        for t in 0..=order.last().map_or(0, |o| o.0) + 300 {
            while next < order.len() && order[next].0 == t {
                let i = order[next].1;
                jb.push(ms(t), 160 * i as u32, 0, i == 0, &frame(0));
                next += 1;
            }
            while let Some(p) = jb.pop(ms(t)) {
                if let Playout::Packet { ts, .. } = p {
                    if !jb.shorten_by_popped() {
                        lag.push((ts / 160, t - ts / 8));
                    }
                }
            }
        }
        lag
    }

    /// Runs of equal values: (value, how many in a row).
    fn runs(values: impl Iterator<Item = i64>) -> Vec<(i64, usize)> {
        let mut steps: Vec<(i64, usize)> = Vec::new();
        for v in values {
            match steps.last_mut() {
                Some((w, n)) if *w == v => *n += 1,
                _ => steps.push((v, 1)),
            }
        }
        steps
    }

    #[test]
    fn a_late_anchor_after_a_stall_is_taken_back_a_frame_a_second() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Packets 100 to 104 are held up until 2085 ms (85 ms after 100 was sent), then come in
        // a burst; the buffer runs dry and re-anchors on 100, so its followers, on time again,
        // all come 85 ms early against that anchor.
        let arrival = |i: i64| {
            if (100..=104).contains(&i) {
                2085
            } else {
                20 * i
            }
        };
        let lag = play_arrivals(&mut jb, 2000, arrival);
        assert_eq!(lag.iter().find(|l| l.0 == 90).map(|l| l.1), Some(20));
        // Re-anchored 85 ms late at the wanted delay (the burst raised the jitter: 25.x ms).
        let delay = (jb.delay().as_nanos() + 999_999) / 1_000_000;
        assert_eq!(delay, 26);
        // Kept for 30 s (a stall may come back), then taken back one frame at a time, at most
        // one a second: 85 -> 5 ms early after four (less than a frame is left).
        let steps = runs(lag.iter().filter(|l| l.0 >= 100).map(|l| l.1));
        let values: Vec<i64> = steps.iter().map(|s| s.0).collect();
        assert_eq!(values, [85, 65, 45, 25, 5].map(|e| e + delay), "{steps:?}");
        assert!(steps[0].1 >= 29 * 50, "{steps:?}");
        assert!(steps[1..4].iter().all(|s| s.1 >= 49), "{steps:?}");
        assert_eq!(jb.stats().late, 0);
        assert_eq!(jb.stats().shortened, 1 + 4);
    }

    #[test]
    fn stalls_that_come_back_keep_the_buffering_the_first_left() {
        // A 60 ms stall every 7 s: what the first one left absorbs the others; taking it
        // back would run the buffer dry (a gap) at each one.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let stalled = |i: i64| i >= 100 && (i - 100) % 350 < 3;
        let arrival = |i: i64| {
            let first = i - (i - 100).rem_euclid(350);
            if stalled(i) {
                20 * first + 60
            } else {
                20 * i
            }
        };
        let lag = play_arrivals(&mut jb, 3000, arrival);
        assert_eq!(
            jb.stats().underruns,
            1 + 1,
            "{:?}",
            runs(lag.iter().map(|l| l.1))
        );
        assert_eq!(jb.stats().late, 0);
        assert_eq!(jb.stats().shortened, 1);
        let after: Vec<i64> = lag.iter().filter(|l| l.0 >= 100).map(|l| l.1).collect();
        assert!(
            after.iter().all(|&l| l == after[0]),
            "{:?}",
            runs(after.into_iter())
        );
    }

    #[test]
    fn earliness_ignores_timestamps_an_hour_away_and_never_overflows() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for k in 0..40i64 {
            let ts = (k * 0x7FFF_FFFF) as u32;
            jb.push(ms(20 * k), ts, 0, false, &frame(0));
            run(&mut jb, 20 * k, 20 * k + 19);
        }
    }

    #[test]
    fn a_stream_that_resumes_after_running_dry_starts_at_the_wanted_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for i in 0..100i64 {
            jb.push(ms(20 * i), 160 * i as u32, 0, i == 0, &frame(0));
            run(&mut jb, 20 * i, 20 * i + 19);
        }
        assert_eq!(jb.delay(), Span::from_millis(40));
        // Hold: nothing for 3 s, the buffer runs dry; the stream resumes without a marker.
        run(&mut jb, 2000, 5000);
        jb.push(ms(5000), 160 * 250, 0, false, &frame(0));
        assert_eq!(jb.delay(), Span::from_millis(20));
        assert_eq!(jb.poll_timeout(), Some(ms(5020)));
    }
}
