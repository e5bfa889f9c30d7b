//! SIP over TCP as a SPAN shows it: one connection per call (the caller's ephemeral port to
//! the agent's 5060), each side's writes cut into segments of at most `mss` bytes, and on
//! demand a segment retransmitted, missing from the capture, or captured after its successor.
//! Segments are numbered from 1 per connection, both directions together, in sending order.

use std::net::Ipv4Addr;

use crate::frame::{tcp_frame, Encap, TcpHeader};
use crate::sip_text::Timed;

/// How SIP over TCP is segmented and impaired.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TcpOptions {
    /// SIP over TCP instead of UDP (one connection per call).
    #[arg(long)]
    pub sip_tcp: bool,
    /// Largest TCP segment payload, bytes (a small value splits INVITEs and 200 OKs).
    #[arg(long, default_value_t = 1460, value_parser = clap::value_parser!(u32).range(1..=65000))]
    pub tcp_mss: u32,
    /// Messages one side sends within 50 ms of each other (100 Trying and 180 Ringing) go in
    /// one write.
    #[arg(long)]
    pub tcp_coalesce: bool,
    /// Segment K of every connection is captured twice, the copy 200 ms later.
    #[arg(long, value_name = "K")]
    pub tcp_retransmit: Option<u32>,
    /// Segment K of every connection is missing from the capture.
    #[arg(long, value_name = "K")]
    pub tcp_drop: Option<u32>,
    /// Segment K of every connection is captured just after segment K+1.
    #[arg(long, value_name = "K")]
    pub tcp_reorder: Option<u32>,
}

/// One call's connection.
pub struct Connection {
    caller: (Ipv4Addr, u16),
    agent: (Ipv4Addr, u16),
    /// Next sequence number: caller -> agent, agent -> caller.
    seq: [u32; 2],
    /// Segments sent so far.
    sent: u32,
}

/// A frame and its capture time (microseconds).
pub type TimedFrame = (i64, Vec<u8>);

impl Connection {
    /// A connection from `caller` to `agent`, with initial sequence numbers `isn`.
    pub fn new(caller: (Ipv4Addr, u16), agent: (Ipv4Addr, u16), isn: [u32; 2]) -> Self {
        Connection {
            caller,
            agent,
            seq: isn,
            sent: 0,
        }
    }

    /// The frames of one write of `bytes` at time `t` by the caller or the agent.
    pub fn write(
        &mut self,
        o: &TcpOptions,
        encap: Encap,
        ip_id: &mut u16,
        (t, by_caller, bytes): Timed,
    ) -> Vec<TimedFrame> {
        let mut out = Vec::new();
        for (i, chunk) in bytes.chunks(o.tcp_mss as usize).enumerate() {
            self.sent += 1;
            let k = self.sent;
            let mut at = t + i as i64 * 100;
            if o.tcp_reorder == Some(k) {
                at += 150;
            }
            let frame = self.segment(encap, ip_id, by_caller, chunk, 0x18);
            if o.tcp_retransmit == Some(k) {
                out.push((at + 200_000, frame.clone()));
            }
            if o.tcp_drop != Some(k) {
                out.push((at, frame));
            }
        }
        out
    }

    /// FIN from each side at `t`.
    pub fn close(&mut self, encap: Encap, ip_id: &mut u16, t: i64) -> Vec<TimedFrame> {
        vec![
            (t, self.segment(encap, ip_id, true, &[], 0x11)),
            (t + 100, self.segment(encap, ip_id, false, &[], 0x11)),
        ]
    }

    fn segment(
        &mut self,
        encap: Encap,
        ip_id: &mut u16,
        by_caller: bool,
        payload: &[u8],
        flags: u8,
    ) -> Vec<u8> {
        let (me, peer, d) = if by_caller {
            (self.caller, self.agent, 0)
        } else {
            (self.agent, self.caller, 1)
        };
        let h = TcpHeader {
            ports: (me.1, peer.1),
            seq: self.seq[d],
            ack: self.seq[1 - d],
            flags,
        };
        self.seq[d] = self.seq[d].wrapping_add(payload.len() as u32);
        *ip_id = ip_id.wrapping_add(1);
        let mut f = Vec::with_capacity(80 + payload.len());
        tcp_frame(&mut f, encap, (me.0, peer.0), *ip_id, h, payload);
        f
    }
}

/// Messages of one side this close to the write before them join it (with coalescing).
const COALESCE_US: i64 = 50_000;

/// The writes of a message sequence: with `coalesce`, consecutive messages of one side within
/// [`COALESCE_US`] of the write's start are one write at the first one's time.
pub fn writes(msgs: impl IntoIterator<Item = Timed>, coalesce: bool) -> Vec<Timed> {
    let mut out: Vec<Timed> = Vec::new();
    for (t, by_caller, bytes) in msgs {
        match out.last_mut() {
            Some(last) if coalesce && last.1 == by_caller && t - last.0 <= COALESCE_US => {
                last.2.extend_from_slice(&bytes)
            }
            _ => out.push((t, by_caller, bytes)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = (Ipv4Addr::new(10, 1, 0, 1), 40000);
        let a = (Ipv4Addr::new(10, 2, 0, 1), 5060);
        Connection::new(c, a, [1000, u32::MAX - 10])
    }

    fn seq_of(f: &[u8]) -> u32 {
        u32::from_be_bytes([f[38], f[39], f[40], f[41]])
    }

    #[test]
    fn writes_are_cut_at_the_mss_with_running_sequence_numbers() {
        let o = TcpOptions {
            tcp_mss: 100,
            ..Default::default()
        };
        let mut id = 0;
        let mut c = conn();
        let f = c.write(&o, Encap::Untagged, &mut id, (0, true, vec![b'a'; 250]));
        assert_eq!(f.len(), 3);
        let seqs: Vec<u32> = f.iter().map(|(_, f)| seq_of(f)).collect();
        assert_eq!(seqs, vec![1000, 1100, 1200]);
        let f = c.write(&o, Encap::Untagged, &mut id, (5, false, vec![b'b'; 20]));
        assert_eq!(seq_of(&f[0].1), u32::MAX - 10);
        let f = c.write(&o, Encap::Untagged, &mut id, (9, false, vec![b'b'; 20]));
        assert_eq!(seq_of(&f[0].1), 9, "wraps");
    }

    #[test]
    fn impairments_hit_the_numbered_segment() {
        let o = TcpOptions {
            tcp_mss: 10,
            tcp_retransmit: Some(2),
            tcp_drop: Some(3),
            tcp_reorder: Some(4),
            ..Default::default()
        };
        let mut id = 0;
        let f = conn().write(&o, Encap::Untagged, &mut id, (0, true, vec![b'a'; 50]));
        let mut got: Vec<(i64, u32)> = f.iter().map(|(t, f)| (*t, seq_of(f))).collect();
        got.sort();
        // 1..5 at 0, 100, 200, 300, 400 us; 2 again 200 ms later; 3 missing; 4 after 5.
        assert_eq!(
            got,
            vec![
                (0, 1000),
                (100, 1010),
                (400, 1040),
                (450, 1030),
                (200_100, 1010)
            ]
        );
    }

    #[test]
    fn coalescing_joins_one_sides_consecutive_messages() {
        let msgs = vec![
            (0, true, b"A".to_vec()),
            (5, false, b"B".to_vec()),
            (9, false, b"C".to_vec()),
            (60_000, false, b"E".to_vec()),
            (70_000, true, b"D".to_vec()),
        ];
        let w = writes(msgs.clone(), true);
        assert_eq!(
            w,
            vec![
                (0, true, b"A".to_vec()),
                (5, false, b"BC".to_vec()),
                (60_000, false, b"E".to_vec()),
                (70_000, true, b"D".to_vec())
            ]
        );
        assert_eq!(writes(msgs.clone(), false), msgs);
    }
}
