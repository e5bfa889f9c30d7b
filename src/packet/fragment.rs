//! IPv4 fragment reassembly in bounded memory, judged by the capture time passed in (no clock).
//!
//! Fragment sets are keyed by (source, destination, protocol, identification). Each set keeps
//! its bytes in one buffer and the covered ranges; a set completes when the last fragment (MF=0)
//! is known and the ranges cover 0..end without a hole. Overlapping data keeps the first copy.
//! Limits: total buffered bytes, number of sets, datagram size (65535), and a timeout after the
//! first fragment; whatever a limit throws away is counted.

use std::net::Ipv4Addr;

use crate::time::{Span, Timestamp};

/// Most fragment sets in progress at once.
const MAX_SETS: usize = 256;
/// Most covered ranges per set (more means a fragment storm).
const MAX_RANGES: usize = 64;
/// Largest IPv4 datagram payload.
const MAX_DATAGRAM: usize = 65535;

/// Key of one fragmented datagram.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub protocol: u8,
    /// Identification field.
    pub id: u16,
}

/// Reassembly counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Fragments accepted.
    pub fragments: u64,
    /// Datagrams completed.
    pub reassembled: u64,
    /// Fragments dropped: memory or set limit, bad offset, too large, too many pieces.
    pub dropped: u64,
    /// Incomplete sets that timed out.
    pub timed_out: u64,
}

/// The result of offering one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<'a> {
    /// Stored; the datagram is not complete yet.
    Pending,
    /// The fragment was dropped (a limit was hit or it was inconsistent).
    Dropped,
    /// The datagram is complete: its whole IP payload.
    Complete(&'a [u8]),
}

struct FragmentSet {
    key: FragmentKey,
    first_seen: Timestamp,
    data: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    total_len: Option<usize>,
}

impl FragmentSet {
    fn covered(&self) -> bool {
        let Some(total) = self.total_len else {
            return false;
        };
        let mut end = 0;
        for &(s, e) in &self.ranges {
            if s > end {
                return false;
            }
            end = end.max(e);
        }
        end >= total
    }

    fn insert_range(&mut self, start: usize, end: usize) {
        self.ranges.push((start, end));
        self.ranges.sort_unstable();
    }
}

/// The reassembler.
pub struct Reassembler {
    sets: Vec<FragmentSet>,
    /// Buffers of finished sets, reused by new ones.
    spare: Vec<Vec<u8>>,
    /// The last completed datagram (borrowed by the caller until the next call).
    out: Vec<u8>,
    bytes: usize,
    max_bytes: usize,
    timeout: Span,
    stats: FragmentStats,
}

impl Reassembler {
    /// A reassembler holding at most `max_bytes` and giving up on a set after `timeout`.
    pub fn new(max_bytes: usize, timeout: Span) -> Self {
        Reassembler {
            sets: Vec::new(),
            spare: Vec::new(),
            out: Vec::new(),
            bytes: 0,
            max_bytes,
            timeout,
            stats: FragmentStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &FragmentStats {
        &self.stats
    }

    /// Sets in progress.
    pub fn pending(&self) -> usize {
        self.sets.len()
    }

    /// Drops sets whose first fragment is older than the timeout.
    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.timeout;
        let mut i = 0;
        while i < self.sets.len() {
            if now - self.sets[i].first_seen > timeout {
                self.stats.timed_out += 1;
                self.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn remove(&mut self, i: usize) -> FragmentSet {
        let mut set = self.sets.swap_remove(i);
        self.bytes -= set.data.len();
        let mut buf = std::mem::take(&mut set.data);
        buf.clear();
        if self.spare.len() < 8 {
            self.spare.push(buf);
        }
        set
    }

    /// Offers one fragment: `offset` in bytes, `more` the MF flag, `payload` its data.
    pub fn offer(
        &mut self,
        now: Timestamp,
        key: FragmentKey,
        offset: usize,
        more: bool,
        payload: &[u8],
    ) -> Offer<'_> {
        self.expire(now);
        let end = offset + payload.len();
        if end > MAX_DATAGRAM || (more && payload.len() % 8 != 0) || payload.is_empty() {
            self.stats.dropped += 1;
            return Offer::Dropped;
        }
        let idx = match self.sets.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                if self.sets.len() >= MAX_SETS {
                    // Make room: the oldest set goes.
                    let oldest = (0..self.sets.len())
                        .min_by_key(|&i| self.sets[i].first_seen)
                        .unwrap_or(0);
                    self.remove(oldest);
                    self.stats.dropped += 1;
                }
                let data = self.spare.pop().unwrap_or_default();
                self.sets.push(FragmentSet {
                    key,
                    first_seen: now,
                    data,
                    ranges: Vec::new(),
                    total_len: None,
                });
                self.sets.len() - 1
            }
        };
        let grow = end.saturating_sub(self.sets[idx].data.len());
        let inconsistent = {
            let s = &self.sets[idx];
            s.ranges.len() >= MAX_RANGES
                || s.total_len.is_some_and(|t| end > t)
                || (!more && s.total_len.is_some_and(|t| t != end))
                || (!more && s.ranges.iter().any(|&(_, e)| e > end))
        };
        if inconsistent || self.bytes + grow > self.max_bytes {
            self.stats.dropped += 1;
            self.remove(idx);
            return Offer::Dropped;
        }
        self.stats.fragments += 1;
        self.bytes += grow;
        let set = &mut self.sets[idx];
        if grow > 0 {
            set.data.resize(end, 0);
        }
        // Copy only the bytes no earlier fragment covered (first copy wins).
        let mut pos = offset;
        while pos < end {
            let covered_until = set
                .ranges
                .iter()
                .filter(|&&(s, e)| s <= pos && pos < e)
                .map(|&(_, e)| e)
                .max();
            match covered_until {
                Some(e) => pos = e.min(end),
                None => {
                    let next_start = set
                        .ranges
                        .iter()
                        .map(|&(s, _)| s)
                        .filter(|&s| s > pos)
                        .min()
                        .unwrap_or(end)
                        .min(end);
                    set.data[pos..next_start]
                        .copy_from_slice(&payload[pos - offset..next_start - offset]);
                    pos = next_start;
                }
            }
        }
        set.insert_range(offset, end);
        if !more {
            set.total_len = Some(end);
        }
        if set.covered() {
            let total = set.total_len.unwrap_or(end);
            self.out.clear();
            self.out.extend_from_slice(&self.sets[idx].data[..total]);
            self.remove(idx);
            self.stats.reassembled += 1;
            return Offer::Complete(&self.out);
        }
        Offer::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: FragmentKey = FragmentKey {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
        protocol: 17,
        id: 7,
    };

    fn data() -> Vec<u8> {
        (0..40u8).collect()
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn r() -> Reassembler {
        Reassembler::new(1 << 20, Span::from_secs(30))
    }

    #[test]
    fn in_order_and_out_of_order() {
        let d = data();
        let mut a = r();
        assert_eq!(a.offer(t(0), KEY, 0, true, &d[..16]), Offer::Pending);
        assert_eq!(a.offer(t(1), KEY, 16, true, &d[16..32]), Offer::Pending);
        assert_eq!(
            a.offer(t(2), KEY, 32, false, &d[32..]),
            Offer::Complete(&d[..])
        );
        assert_eq!(a.pending(), 0);
        let mut b = r();
        assert_eq!(b.offer(t(0), KEY, 32, false, &d[32..]), Offer::Pending);
        assert_eq!(b.offer(t(0), KEY, 0, true, &d[..16]), Offer::Pending);
        assert_eq!(
            b.offer(t(0), KEY, 16, true, &d[16..32]),
            Offer::Complete(&d[..])
        );
        assert_eq!(b.stats().reassembled, 1);
    }

    #[test]
    fn overlap_keeps_first_copy() {
        let d = data();
        let mut a = r();
        assert_eq!(a.offer(t(0), KEY, 0, true, &d[..24]), Offer::Pending);
        let other: Vec<u8> = vec![0xEE; 24];
        // Overlapping 16..40 with different bytes: first copy (16..24) wins.
        match a.offer(t(0), KEY, 16, false, &other) {
            Offer::Complete(p) => {
                assert_eq!(&p[..24], &d[..24]);
                assert_eq!(&p[24..], &other[8..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_memory_cap_and_bad_fragments() {
        let d = data();
        let mut a = r();
        assert_eq!(a.offer(t(0), KEY, 0, true, &d[..16]), Offer::Pending);
        // 31 s later the set has expired: the tail alone cannot complete it.
        assert_eq!(a.offer(t(31_000), KEY, 16, false, &d[16..]), Offer::Pending);
        assert_eq!(a.stats().timed_out, 1);

        let mut small = Reassembler::new(20, Span::from_secs(30));
        assert_eq!(small.offer(t(0), KEY, 0, true, &d[..16]), Offer::Pending);
        assert_eq!(small.offer(t(0), KEY, 16, false, &d[16..]), Offer::Dropped);
        assert_eq!(small.stats().dropped, 1);
        assert_eq!(small.pending(), 0);

        let mut c = r();
        // A middle fragment whose length is not a multiple of 8.
        assert_eq!(c.offer(t(0), KEY, 0, true, &d[..10]), Offer::Dropped);
        // Beyond 65535.
        assert_eq!(c.offer(t(0), KEY, 65_530, false, &d[..10]), Offer::Dropped);
        // Two different "last" fragments.
        assert_eq!(c.offer(t(0), KEY, 8, false, &d[..8]), Offer::Pending);
        assert_eq!(c.offer(t(0), KEY, 24, false, &d[..8]), Offer::Dropped);
    }
}
