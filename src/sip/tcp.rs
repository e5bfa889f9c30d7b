//! SIP over TCP, reassembled per direction of each connection (sans-IO): segments are put in
//! sequence order (retransmitted and overlapping bytes taken once, segments that arrive ahead
//! of a gap held), and the byte stream is cut into messages by their Content-Length (a segment
//! may carry several messages, a message may span several segments). Each whole message is
//! handed on once.
//!
//! Rules: a direction is followed from its first segment that starts with a SIP start line;
//! bytes before that are not SIP to this reader. A gap that is not filled within [`GAP_WAIT`]
//! or [`MAX_AHEAD`] later segments, or at FIN, loses the message it cuts (counted) and reading
//! goes on from the segment after it when that starts a message (else from the next segment
//! that does). A direction never holds more than [`MAX_BUFFER`] bytes. At most
//! [`MAX_DIRECTIONS`] directions are followed (the one idle longest makes room, counted); FIN or
//! RST and [`IDLE`] without a segment end one. Never panics on input.

use std::net::SocketAddr;

use rustc_hash::FxHashMap;

use super::message::may_start_sip;
use crate::time::{Span, Timestamp};

/// Most connection directions followed at once.
pub const MAX_DIRECTIONS: usize = 4096;
/// Most bytes held for one direction (a message being assembled and segments ahead of a gap).
pub const MAX_BUFFER: usize = 64 * 1024;
/// Most segments held ahead of a gap.
pub const MAX_AHEAD: usize = 16;
/// A gap not filled this long after a segment behind it arrived is given up (a retransmission
/// comes within one retransmission timeout, 200 ms at least; a capture that lost the segment
/// never sees it, and the messages behind the gap are late by this much).
pub const GAP_WAIT: Span = Span::from_secs(1);
/// A direction without a segment for this long is forgotten.
pub const IDLE: Span = Span::from_secs(300);

/// What the reassembly saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpSipStats {
    /// Segments of followed directions.
    pub segments: u64,
    /// Whole messages handed on.
    pub messages: u64,
    /// Segments whose bytes had all been seen (retransmissions), or partly (overlaps).
    pub retransmitted: u64,
    /// Segments that arrived ahead of a gap and were held.
    pub out_of_order: u64,
    /// Gaps never filled, or directions over the byte limit: what was held is lost.
    pub lost: u64,
    /// Bytes that did not start a SIP message where one had to start.
    pub garbage: u64,
    /// Directions forgotten to make room for new ones.
    pub evicted: u64,
}

impl TcpSipStats {
    /// Each counter with its name, for reports and metrics.
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("segments", self.segments),
            ("messages", self.messages),
            ("retransmitted", self.retransmitted),
            ("out_of_order", self.out_of_order),
            ("lost", self.lost),
            ("garbage_bytes", self.garbage),
            ("evicted", self.evicted),
        ]
    }
}

/// One direction of a connection.
#[derive(Debug)]
struct Direction {
    /// Sequence number of the next byte expected; None while waiting for a message start.
    next: Option<u32>,
    /// In-order bytes not yet handed on.
    buf: Vec<u8>,
    /// Segments ahead of a gap: (sequence number, bytes, when it arrived).
    ahead: Vec<(u32, Vec<u8>, Timestamp)>,
    last: Timestamp,
}

/// The reassembly of every followed direction.
#[derive(Debug, Default)]
pub struct TcpSip {
    dirs: FxHashMap<(SocketAddr, SocketAddr), Direction>,
    stats: TcpSipStats,
    /// When the oldest gap is given up, if any direction holds segments behind one.
    due: Option<Timestamp>,
}

/// Where a buffer's first message ends.
enum Framed {
    /// A whole message of this many bytes.
    Message(usize),
    /// Not all of it yet.
    Incomplete,
    /// The bytes do not start a SIP message.
    Garbage,
}

impl TcpSip {
    /// The counters.
    pub fn stats(&self) -> &TcpSipStats {
        &self.stats
    }

    /// A TCP segment from `src` to `dst` whose first byte has sequence number `seq`
    /// (`closing`: FIN or RST); every message it completes goes to `on_message`.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        closing: bool,
        payload: &[u8],
        on_message: &mut impl FnMut(&[u8]),
    ) {
        let key = (src, dst);
        if !self.dirs.contains_key(&key) {
            if !may_start_sip(payload) {
                return;
            }
            self.make_room(now);
            let d = Direction {
                next: Some(seq),
                buf: Vec::new(),
                ahead: Vec::new(),
                last: now,
            };
            self.dirs.insert(key, d);
        }
        let Some(d) = self.dirs.get_mut(&key) else {
            return;
        };
        d.last = now;
        self.stats.segments += 1;
        accept(d, now, seq, payload, &mut self.stats);
        drain(d, &mut self.stats, on_message);
        if closing {
            // What waits behind a gap is read now: no retransmission will come.
            while !d.ahead.is_empty() {
                skip_gap(d, &mut self.stats);
                drain(d, &mut self.stats, on_message);
            }
            self.dirs.remove(&key);
        }
        if self.due.is_some() || self.dirs.get(&key).is_some_and(|d| !d.ahead.is_empty()) {
            self.update_due();
        }
    }

    /// When [`TcpSip::handle_timeout`] has a gap to give up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.due
    }

    /// Gives up on every gap that waited [`GAP_WAIT`] and hands on the messages behind it.
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
        on_message: &mut impl FnMut(SocketAddr, SocketAddr, &[u8]),
    ) {
        if self.due.is_none_or(|due| now < due) {
            return;
        }
        for (&(src, dst), d) in self.dirs.iter_mut() {
            while oldest_held(d).is_some_and(|t| now - t >= GAP_WAIT) {
                skip_gap(d, &mut self.stats);
                drain(d, &mut self.stats, &mut |m| on_message(src, dst, m));
            }
        }
        self.update_due();
    }

    fn update_due(&mut self) {
        self.due = self
            .dirs
            .values()
            .filter_map(oldest_held)
            .min()
            .map(|t| t + GAP_WAIT);
    }

    /// Forgets idle directions, then the one idle longest while the table is full.
    fn make_room(&mut self, now: Timestamp) {
        if self.dirs.len() < MAX_DIRECTIONS {
            return;
        }
        self.dirs.retain(|_, d| now - d.last < IDLE);
        if self.dirs.len() >= MAX_DIRECTIONS {
            if let Some(oldest) = self
                .dirs
                .iter()
                .min_by_key(|(_, d)| d.last)
                .map(|(k, _)| *k)
            {
                self.dirs.remove(&oldest);
                self.stats.evicted += 1;
            }
        }
    }

    /// Directions followed now.
    pub fn directions(&self) -> usize {
        self.dirs.len()
    }
}

/// Signed distance from `b` to `a` in sequence space.
fn distance(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Puts one segment in order, then whatever held segments it lets follow; gives up on a gap
/// that waited too long.
fn accept(d: &mut Direction, now: Timestamp, seq: u32, payload: &[u8], stats: &mut TcpSipStats) {
    let Some(next) = d.next else {
        // Waiting for a message start after a loss.
        if may_start_sip(payload) {
            d.next = Some(seq);
            append(d, seq, payload, stats);
        }
        return;
    };
    if distance(seq, next) <= 0 {
        append(d, seq, payload, stats);
        pull_held(d, stats);
        return;
    }
    if payload.is_empty() {
        return;
    }
    if d.ahead.len() >= MAX_AHEAD || held(d) + payload.len() > MAX_BUFFER {
        skip_gap(d, stats);
        return accept(d, now, seq, payload, stats);
    }
    d.ahead.push((seq, payload.to_vec(), now));
    stats.out_of_order += 1;
    while oldest_held(d).is_some_and(|t| now - t >= GAP_WAIT) {
        skip_gap(d, stats);
    }
}

/// Appends the held segments the stream now reaches.
fn pull_held(d: &mut Direction, stats: &mut TcpSipStats) {
    while let Some(next) = d.next {
        let Some(i) = d.ahead.iter().position(|(s, _, _)| distance(*s, next) <= 0) else {
            break;
        };
        let (s, bytes, _) = d.ahead.swap_remove(i);
        append(d, s, &bytes, stats);
    }
}

/// Gives up on the bytes missing before the first held segment: the message they were part of
/// is lost (counted), and reading goes on from the first held segment that starts a message.
fn skip_gap(d: &mut Direction, stats: &mut TcpSipStats) {
    stats.lost += 1;
    d.buf.clear();
    let from = d.next.unwrap_or(0);
    d.ahead.sort_by_key(|(s, _, _)| distance(*s, from));
    let start = d.ahead.iter().position(|(_, b, _)| may_start_sip(b));
    let skipped = start.unwrap_or(d.ahead.len());
    stats.garbage += d
        .ahead
        .drain(..skipped)
        .map(|(_, b, _)| b.len() as u64)
        .sum::<u64>();
    d.next = d.ahead.first().map(|(s, _, _)| *s);
    pull_held(d, stats);
}

/// Appends the part of a segment at or before `next` that is new.
fn append(d: &mut Direction, seq: u32, payload: &[u8], stats: &mut TcpSipStats) {
    let Some(next) = d.next else { return };
    let skip = (-distance(seq, next)).max(0) as usize;
    if skip > 0 {
        stats.retransmitted += 1;
    }
    if skip >= payload.len() {
        return;
    }
    let new = &payload[skip..];
    if held(d) + new.len() > MAX_BUFFER {
        stats.lost += 1;
        d.buf.clear();
        d.ahead.clear();
        d.next = None;
        return;
    }
    d.buf.extend_from_slice(new);
    d.next = Some(next.wrapping_add(new.len() as u32));
}

/// When the earliest segment held behind a gap arrived.
fn oldest_held(d: &Direction) -> Option<Timestamp> {
    d.ahead.iter().map(|(_, _, since)| *since).min()
}

fn held(d: &Direction) -> usize {
    d.buf.len() + d.ahead.iter().map(|(_, b, _)| b.len()).sum::<usize>()
}

/// Hands on every whole message at the front of the buffer.
fn drain(d: &mut Direction, stats: &mut TcpSipStats, on_message: &mut impl FnMut(&[u8])) {
    let mut used = 0;
    loop {
        // Keep-alive CRLFs between messages (RFC 5626).
        while d.buf.get(used).is_some_and(|b| *b == b'\r' || *b == b'\n') {
            used += 1;
        }
        match frame(&d.buf[used..]) {
            Framed::Message(n) => {
                stats.messages += 1;
                on_message(&d.buf[used..used + n]);
                used += n;
            }
            Framed::Incomplete => break,
            Framed::Garbage => {
                stats.garbage += (d.buf.len() - used) as u64;
                used = d.buf.len();
                d.next = None;
                d.ahead.clear();
                break;
            }
        }
    }
    d.buf.drain(..used);
}

/// Where the first message of `buf` ends.
fn frame(buf: &[u8]) -> Framed {
    if buf.is_empty() {
        return Framed::Incomplete;
    }
    if !may_start_sip(buf) {
        return Framed::Garbage;
    }
    let Some(head) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Framed::Incomplete;
    };
    let body = content_length(&buf[..head]);
    let Some(body) = body else {
        return Framed::Garbage;
    };
    let total = head + 4 + body;
    if total > MAX_BUFFER {
        return Framed::Garbage;
    }
    if buf.len() >= total {
        Framed::Message(total)
    } else {
        Framed::Incomplete
    }
}

/// The Content-Length of a header block (compact `l` too); absent: 0, as on TCP it must be
/// there for a body. None when it is not a number.
fn content_length(head: &[u8]) -> Option<usize> {
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = std::str::from_utf8(&line[..colon]).ok()?.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let value = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
            return value.parse().ok();
        }
    }
    Some(0)
}

#[cfg(test)]
mod tests;
