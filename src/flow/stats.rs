//! Per-stream RTP statistics, computed the way Wireshark's RTP analysis does (so `flows` agrees
//! with `tshark -z rtp,streams`): RFC 3550 A.8 interarrival jitter in ms, deltas between
//! arrivals, sequence cycles and errors, with the same rules for which packets count ("regular"
//! packets: not the first, no marker, not comfort noise, timestamp not going backwards). We add
//! RFC 3550 duplicate and out-of-order counts. Pure arithmetic; no allocation.

use crate::codec::{Codec, PayloadMap};
use crate::time::Timestamp;

/// RTP clock rate of a static payload type (RFC 3551), 0 when unknown.
pub fn static_clock_rate(pt: u8) -> u32 {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 | 19 => 8000,
        6 => 16000,
        10 | 11 => 44100,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90000,
        16 => 11025,
        17 => 22050,
        _ => 0,
    }
}

/// Short names of static payload types, as Wireshark prints them.
fn static_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "g711U",
        3 => "GSM",
        4 => "g723",
        5 | 6 | 16 | 17 => "DVI4",
        7 => "LPC",
        8 => "g711A",
        9 => "g722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "g728",
        18 => "g729",
        19 => "CN_OLD",
        25 => "CelB",
        26 => "JPEG",
        28 => "NV",
        31 => "h261",
        32 => "MPV",
        33 => "MP2T",
        34 => "h263",
        _ => return None,
    })
}

const PT_CN: u8 = 13;
const PT_CN_OLD: u8 = 19;
/// Size of the duplicate-detection window (sequence numbers).
const WINDOW: u16 = 128;

/// Statistics of one RTP stream.
#[derive(Clone, Debug)]
pub struct StreamStats {
    /// Capture time of the first packet.
    pub first_ts: Timestamp,
    /// Capture time of the last packet.
    pub last_ts: Timestamp,
    /// Packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub payload_bytes: u64,
    /// First sequence number.
    pub start_seq: u16,
    /// Sequence number of the last packet received (Wireshark's `stop_seq_nr`).
    pub last_seq: u16,
    /// Sequence number cycles counted (Wireshark's rule).
    pub cycles: u32,
    /// Packets whose sequence number was not the expected one.
    pub sequence_errors: u64,
    /// Packets whose timestamp went backwards.
    pub wrong_timestamps: u64,
    /// Duplicate packets (same sequence number within the recent window).
    pub duplicates: u64,
    /// Packets older than the highest sequence number seen (late, not duplicate).
    pub out_of_order: u64,
    /// Sequence number wraps of the highest sequence number.
    pub seq_wraps: u64,
    /// Minimum delta between regular packets, ms (-1 when none).
    pub min_delta_ms: f64,
    /// Mean delta, ms.
    pub mean_delta_ms: f64,
    /// Maximum delta, ms.
    pub max_delta_ms: f64,
    /// Minimum jitter, ms (-1 when the clock rate is unknown).
    pub min_jitter_ms: f64,
    /// Mean jitter, ms.
    pub mean_jitter_ms: f64,
    /// Maximum jitter, ms.
    pub max_jitter_ms: f64,
    /// Current jitter estimate, ms.
    pub jitter_ms: f64,
    /// Clock rate last used (0 when unknown).
    pub clock_rate: u32,
    /// Payload types seen (bit per type).
    payload_types: u128,
    /// Formats from SDP, to name dynamic payload types.
    payloads: PayloadMap,
    // Wireshark's running state.
    time_ms: f64,
    seq_num: u16,
    under: bool,
    first_rtp_ts: u32,
    last_nominal_ms: f64,
    pt: u8,
    delta_ms: f64,
    // RFC 3550 state for duplicates and order.
    highest_seq: u16,
    window: u128,
}

/// One packet's header fields, as the statistics need them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RtpSample {
    /// Capture time.
    pub ts: Timestamp,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub rtp_ts: u32,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Payload length.
    pub payload_len: u16,
}

impl StreamStats {
    /// Statistics starting with `first`; `payloads` names and clocks dynamic payload types.
    pub fn new(first: &RtpSample, payloads: PayloadMap) -> Self {
        StreamStats {
            first_ts: first.ts,
            last_ts: first.ts,
            packets: 1,
            payload_bytes: first.payload_len as u64,
            start_seq: first.seq,
            last_seq: first.seq,
            cycles: 0,
            sequence_errors: 0,
            wrong_timestamps: 0,
            duplicates: 0,
            out_of_order: 0,
            seq_wraps: 0,
            min_delta_ms: -1.0,
            mean_delta_ms: 0.0,
            max_delta_ms: 0.0,
            min_jitter_ms: -1.0,
            mean_jitter_ms: 0.0,
            max_jitter_ms: 0.0,
            jitter_ms: 0.0,
            clock_rate: 0,
            payload_types: 1u128 << (first.pt & 0x7F),
            payloads,
            time_ms: 0.0,
            seq_num: first.seq,
            under: false,
            first_rtp_ts: first.rtp_ts,
            last_nominal_ms: 0.0,
            pt: first.pt,
            delta_ms: 0.0,
            highest_seq: first.seq,
            window: 1,
        }
    }

    /// The clock rate Wireshark would use for `pt` (0 for events and unknown types).
    fn clock_for(&self, pt: u8) -> u32 {
        if pt < 96 {
            return static_clock_rate(pt);
        }
        match self.payloads.get(pt) {
            Some(f) if f.codec == Codec::TelephoneEvent => 0,
            Some(f) => f.clock_rate,
            None => 0,
        }
    }

    /// Adds one packet (not the first).
    pub fn update(&mut self, p: &RtpSample) {
        let now_ms = (p.ts - self.first_ts).as_nanos() as f64 / 1e6;
        self.last_ts = self.last_ts.max(p.ts);
        self.payload_bytes += p.payload_len as u64;
        self.payload_types |= 1u128 << (p.pt & 0x7F);
        self.update_order(p.seq);

        // In time sequence: the timestamp is within half the range after the first one.
        let since_first = p.rtp_ts.wrapping_sub(self.first_rtp_ts);
        let in_time_sequence = since_first < 0x8000_0000;
        if !in_time_sequence {
            self.wrong_timestamps += 1;
        }
        let seq = p.seq;
        if in_time_sequence
            && !self.under
            && (seq < self.start_seq || (seq == 0 && self.last_seq == 65535))
        {
            self.cycles += 1;
            self.under = true;
        } else if seq > self.start_seq && in_time_sequence && self.under {
            self.under = false;
        }
        if in_time_sequence
            && (self.seq_num as u32 + 1 == seq as u32 || (self.seq_num == 65535 && seq == 0))
        {
            self.seq_num = seq;
        } else if in_time_sequence
            && ((self.seq_num as u32 + 1) < seq as u32
                || (self.seq_num as i32 - seq as i32) > 0xFF00)
        {
            self.seq_num = seq;
            self.sequence_errors += 1;
        } else if (self.seq_num as u32 + 1) > seq as u32 {
            self.sequence_errors += 1;
        }

        let is_cn = p.pt == PT_CN || p.pt == PT_CN_OLD;
        let follows_cn = self.pt == PT_CN || self.pt == PT_CN_OLD;
        self.pt = p.pt;
        let clock_rate = self.clock_for(p.pt);

        let mut current_jitter = 0.0;
        if in_time_sequence {
            if clock_rate != 0 {
                self.clock_rate = clock_rate;
                // Wireshark divides by the clock in kHz as an integer.
                let nominal_ms = since_first as f64 / (clock_rate / 1000) as f64;
                let expected_time = self.time_ms + (nominal_ms - self.last_nominal_ms);
                let current_diff = (now_ms - expected_time).abs();
                current_jitter = (15.0 * self.jitter_ms + current_diff) / 16.0;
                self.delta_ms = now_ms - self.time_ms;
                self.jitter_ms = current_jitter;
                self.last_nominal_ms = nominal_ms;
            } else {
                self.delta_ms = now_ms - self.time_ms;
            }
        }
        let regular = !p.marker && !is_cn && in_time_sequence && !follows_cn;
        if regular {
            let deltas = self.packets as f64; // packets so far = deltas including this one
            if self.delta_ms > self.max_delta_ms {
                self.max_delta_ms = self.delta_ms;
            }
            if self.min_delta_ms == -1.0 || self.delta_ms < self.min_delta_ms {
                self.min_delta_ms = self.delta_ms;
            }
            self.mean_delta_ms = (self.mean_delta_ms * (deltas - 1.0) + self.delta_ms) / deltas;
            if clock_rate != 0 {
                if self.jitter_ms > self.max_jitter_ms {
                    self.max_jitter_ms = self.jitter_ms;
                }
                self.mean_jitter_ms =
                    (self.mean_jitter_ms * (deltas - 1.0) + current_jitter) / deltas;
                if self.min_jitter_ms == -1.0 || self.jitter_ms < self.min_jitter_ms {
                    self.min_jitter_ms = self.jitter_ms;
                }
            }
        }
        if in_time_sequence {
            self.time_ms = now_ms;
        }
        self.last_seq = seq;
        self.packets += 1;
    }

    /// RFC 3550 duplicate / out-of-order accounting over a window of recent sequence numbers.
    fn update_order(&mut self, seq: u16) {
        let ahead = seq.wrapping_sub(self.highest_seq);
        if ahead != 0 && ahead < 0x8000 {
            if seq < self.highest_seq {
                self.seq_wraps += 1;
            }
            self.window = if ahead >= WINDOW {
                1
            } else {
                (self.window << ahead) | 1
            };
            self.highest_seq = seq;
        } else {
            let behind = self.highest_seq.wrapping_sub(seq);
            if behind < WINDOW && self.window & (1u128 << behind) != 0 {
                self.duplicates += 1;
            } else {
                self.out_of_order += 1;
                if behind < WINDOW {
                    self.window |= 1u128 << behind;
                }
            }
        }
    }

    /// Packets expected, as Wireshark counts them: from the first to the last sequence number
    /// received, with counted cycles.
    pub fn expected(&self) -> u64 {
        (self.last_seq as i64 + self.cycles as i64 * 65536 - self.start_seq as i64 + 1).max(0)
            as u64
    }

    /// Expected minus received (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.packets as i64
    }

    /// `lost` as a percentage of `expected` (0 when nothing was expected).
    pub fn lost_percent(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            e => self.lost() as f64 * 100.0 / e as f64,
        }
    }

    /// Wireshark's "Problem?" mark: sequence or timestamp errors.
    pub fn problem(&self) -> bool {
        self.sequence_errors > 0 || self.wrong_timestamps > 0
    }

    /// Payload type numbers seen, ascending.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        (0..128u8).filter(move |pt| self.payload_types & (1u128 << pt) != 0)
    }

    /// Name of one payload type as Wireshark prints it.
    pub fn payload_name(&self, pt: u8) -> String {
        if let Some(f) = self.payloads.get(pt) {
            if pt >= 96 || static_name(pt).is_none() {
                return f.codec.name().to_owned();
            }
        }
        match static_name(pt) {
            Some(n) => n.to_owned(),
            // Wireshark's RFC 4733 dissector claims dynamic type 101 by default.
            None if pt == 101 => "rtpevent".to_owned(),
            None => format!("RTPType-{pt}"),
        }
    }

    /// Names of the payload types seen, in payload type order (as tshark lists them).
    pub fn payload_names(&self) -> Vec<String> {
        self.payload_types()
            .map(|pt| self.payload_name(pt))
            .collect()
    }

    /// The SDP payload map this stream was negotiated with (empty if found heuristically).
    pub fn payload_map(&self) -> &PayloadMap {
        &self.payloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u16, rtp_ts: u32, arrival_ms: f64) -> RtpSample {
        RtpSample {
            ts: Timestamp::from_nanos((arrival_ms * 1e6) as i64),
            seq,
            rtp_ts,
            pt: 0,
            marker: false,
            payload_len: 160,
        }
    }

    fn run(samples: &[RtpSample]) -> StreamStats {
        let mut s = StreamStats::new(&samples[0], PayloadMap::new());
        for p in &samples[1..] {
            s.update(p);
        }
        s
    }

    #[test]
    fn constant_delay_has_zero_jitter() {
        let v: Vec<_> = (0..50)
            .map(|i| sample(1000 + i as u16, 160 * i as u32, 20.0 * i as f64))
            .collect();
        let s = run(&v);
        assert_eq!((s.packets, s.expected(), s.lost()), (50, 50, 0));
        assert!(s.max_jitter_ms.abs() < 1e-9);
        assert!((s.max_delta_ms - 20.0).abs() < 1e-9);
        assert!((s.mean_delta_ms - 20.0).abs() < 1e-9);
        assert!(!s.problem());
    }

    #[test]
    fn known_jitter() {
        // Every second packet arrives 4 ms late: |D| alternates 4, 4 (late then back on time).
        let v: Vec<_> = (0..3)
            .map(|i| {
                sample(
                    i as u16,
                    160 * i as u32,
                    20.0 * i as f64 + if i == 1 { 4.0 } else { 0.0 },
                )
            })
            .collect();
        let s = run(&v);
        // J1 = 4/16 = 0.25; J2 = (15*0.25 + 4)/16 = 0.484375
        assert!((s.jitter_ms - 0.484375).abs() < 1e-9, "{}", s.jitter_ms);
        assert!((s.max_jitter_ms - 0.484375).abs() < 1e-9);
        assert!((s.min_jitter_ms - 0.25).abs() < 1e-9);
        assert!((s.mean_jitter_ms - (0.25 + 0.484375) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn loss_duplicates_reordering_and_wrap() {
        // 65533, 65534, (65535 lost), 0, 0 (dup), 2, 1 (late), 3
        let seqs = [65533u16, 65534, 0, 0, 2, 1, 3];
        let v: Vec<_> = seqs
            .iter()
            .enumerate()
            .map(|(i, &s)| sample(s, 160 * i as u32, 20.0 * i as f64))
            .collect();
        let s = run(&v);
        assert_eq!(s.packets, 7);
        assert_eq!(s.cycles, 1);
        assert_eq!(s.seq_wraps, 1);
        // Expected from 65533 to the last received (3) across one cycle: 7; received 7.
        assert_eq!(s.expected(), 7);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.out_of_order, 1);
        assert!(s.problem());
    }

    #[test]
    fn marker_and_cn_are_not_regular() {
        let mut v: Vec<_> = (0..4)
            .map(|i| sample(i as u16, 160 * i as u32, 20.0 * i as f64))
            .collect();
        // A 500 ms silence gap ending with a marker packet: not counted in max delta.
        v.push(RtpSample {
            marker: true,
            ..sample(4, 160 * 29, 580.0)
        });
        let s = run(&v);
        assert!((s.max_delta_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn names() {
        let s = run(&[sample(0, 0, 0.0)]);
        assert_eq!(s.payload_name(0), "g711U");
        assert_eq!(s.payload_name(118), "RTPType-118");
        assert_eq!(s.payload_names(), vec!["g711U".to_owned()]);
    }
}
