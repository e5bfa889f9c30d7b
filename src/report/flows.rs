//! The `flows` report: rows built from the engine's tables, printed as a tshark-like text table
//! or serialised to JSON. Holds no protocol logic: every number comes from `flow`, `sip`,
//! `packet` and `engine` counters.

use std::io::{self, Write};

use serde::Serialize;

use crate::engine::Engine;
use crate::flow::Stream;
use crate::time::Timestamp;

/// One RTP stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamRow {
    /// Seconds from the first frame of the capture to the stream's first packet.
    pub start: f64,
    /// Seconds from the first frame of the capture to the stream's last packet.
    pub end: f64,
    /// Source "ip:port".
    pub src: String,
    /// Destination "ip:port".
    pub dst: String,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload names seen, in order of first appearance.
    pub payload: Vec<String>,
    /// Packets received.
    pub packets: u64,
    /// Packets expected from the sequence numbers (RFC 3550 A.3).
    pub expected: u64,
    /// Expected minus received (negative with duplicates), as tshark reports it.
    pub lost: i64,
    /// `lost` as a percentage of `expected`.
    pub lost_pct: f64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets that arrived out of order.
    pub out_of_order: u64,
    /// Sequence number wraps.
    pub seq_wraps: u64,
    /// Minimum inter-arrival delta, ms.
    pub min_delta_ms: f64,
    /// Mean inter-arrival delta, ms.
    pub mean_delta_ms: f64,
    /// Maximum inter-arrival delta, ms.
    pub max_delta_ms: f64,
    /// Minimum RFC 3550 jitter, ms.
    pub min_jitter_ms: f64,
    /// Mean RFC 3550 jitter, ms.
    pub mean_jitter_ms: f64,
    /// Maximum RFC 3550 jitter, ms.
    pub max_jitter_ms: f64,
    /// tshark's "Problem?" flag: sequence or timestamp errors.
    pub problem: bool,
    /// VLAN ids of the stream's frames, outermost first.
    pub vlans: Vec<u16>,
    /// Call-ID of the SIP call whose SDP negotiated this stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// RTCP seen about the stream.
    pub rtcp: RtcpRow,
}

/// RTCP about one stream: its sender's reports and what its receiver reported.
#[derive(Clone, Debug, Serialize)]
pub struct RtcpRow {
    /// Sender reports from the stream's source.
    pub sender_reports: u64,
    /// Report blocks about the stream from its receiver.
    pub receiver_reports: u64,
    /// Cumulative lost in the last report block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_lost: Option<i32>,
    /// Interarrival jitter in the last report block, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_jitter_ms: Option<f64>,
}

/// One SIP call.
#[derive(Clone, Debug, Serialize)]
pub struct CallRow {
    /// Call-ID.
    pub call_id: String,
    /// From user part.
    pub from: String,
    /// To user part.
    pub to: String,
    /// State name.
    pub state: String,
    /// Seconds from the capture's first frame to the INVITE.
    pub start: f64,
    /// Seconds to the end (BYE/CANCEL/final failure), if seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
    /// RTP streams bound to the call.
    pub streams: usize,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// RTP streams in order of first packet.
    pub streams: Vec<StreamRow>,
    /// SIP calls in order of first message.
    pub calls: Vec<CallRow>,
    /// Counters: frames, encapsulations, malformed by reason, SIP, RTP.
    pub counters: Vec<(String, u64)>,
}

fn secs_since(first: Timestamp, t: Timestamp) -> f64 {
    (t - first).as_secs_f64()
}

impl Report {
    /// Builds the report from a finished engine. `first` is the capture's first frame time.
    pub fn new(engine: &Engine, first: Timestamp) -> Report {
        let calls_tbl = engine.calls();
        let streams: Vec<StreamRow> = engine
            .flows()
            .streams()
            .map(|s| stream_row(s, first, engine))
            .collect();
        let calls = calls_tbl
            .calls()
            .map(|c| CallRow {
                call_id: c.call_id.clone(),
                from: c.from.user().to_owned(),
                to: c.to.user().to_owned(),
                state: format!("{:?}", c.state),
                start: secs_since(first, c.started),
                end: c.ended.map(|t| secs_since(first, t)),
                streams: engine
                    .flows()
                    .streams()
                    .filter(|s| s.call == Some(c.index))
                    .count(),
            })
            .collect();
        Report {
            streams,
            calls,
            counters: counters(engine),
        }
    }

    /// Writes the report as one JSON document.
    pub fn write_json(&self, mut w: impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self)?;
        writeln!(w)
    }

    /// Writes the stream table, the calls and the counters as text.
    pub fn write_text(&self, mut w: impl Write) -> io::Result<()> {
        writeln!(w, "{:=^160}", " RTP Streams ")?;
        writeln!(
            w,
            "{:>9} {:>9} {:>21} {:>21} {:>10} {:<16} {:>6} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>4} {:<10} Call-ID",
            "Start", "End", "Src", "Dst", "SSRC", "Payload", "Pkts", "Lost", "MinDelta", "MeanDelt", "MaxDelta",
            "MinJitt", "MeanJitt", "MaxJitt", "Prob", "VLANs"
        )?;
        for s in &self.streams {
            let vlans = if s.vlans.is_empty() {
                "-".to_owned()
            } else {
                s.vlans
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            writeln!(
                w,
                "{:>9.3} {:>9.3} {:>21} {:>21} 0x{:08X} {:<16} {:>6} {:>5} ({:>4.1}%) {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>4} {:<10} {}",
                s.start,
                s.end,
                s.src,
                s.dst,
                s.ssrc,
                s.payload.join(","),
                s.packets,
                s.lost,
                s.lost_pct,
                s.min_delta_ms,
                s.mean_delta_ms,
                s.max_delta_ms,
                s.min_jitter_ms,
                s.mean_jitter_ms,
                s.max_jitter_ms,
                if s.problem { "X" } else { "" },
                vlans,
                s.call_id.as_deref().unwrap_or("-"),
            )?;
        }
        writeln!(w, "{:=^160}", "")?;
        let with_rtcp: Vec<&StreamRow> = self
            .streams
            .iter()
            .filter(|s| s.rtcp.sender_reports + s.rtcp.receiver_reports > 0)
            .collect();
        if !with_rtcp.is_empty() {
            writeln!(w, "RTCP:")?;
            for s in with_rtcp {
                writeln!(
                    w,
                    "  {} -> {} 0x{:08X}: {} sender reports, {} receiver report blocks{}{}",
                    s.src,
                    s.dst,
                    s.ssrc,
                    s.rtcp.sender_reports,
                    s.rtcp.receiver_reports,
                    s.rtcp
                        .reported_lost
                        .map(|l| format!(", reported lost {l}"))
                        .unwrap_or_default(),
                    s.rtcp
                        .reported_jitter_ms
                        .map(|j| format!(", reported jitter {j:.3} ms"))
                        .unwrap_or_default(),
                )?;
            }
        }
        if !self.calls.is_empty() {
            writeln!(w, "SIP calls:")?;
            for c in &self.calls {
                writeln!(
                    w,
                    "  {:<40} {:>16} -> {:<16} {:<12} start {:>9.3} end {:>9} streams {}",
                    c.call_id,
                    c.from,
                    c.to,
                    c.state,
                    c.start,
                    c.end
                        .map(|e| format!("{e:.3}"))
                        .unwrap_or_else(|| "-".into()),
                    c.streams
                )?;
            }
        }
        writeln!(w, "Counters:")?;
        for (name, n) in &self.counters {
            writeln!(w, "  {name:<36} {n}")?;
        }
        Ok(())
    }
}

fn stream_row(s: &Stream, first: Timestamp, engine: &Engine) -> StreamRow {
    let st = &s.stats;
    StreamRow {
        start: secs_since(first, st.first_ts),
        end: secs_since(first, st.last_ts),
        src: s.key.src.to_string(),
        dst: s.key.dst.to_string(),
        ssrc: s.key.ssrc,
        payload: s.payload_names(),
        packets: st.packets,
        expected: st.expected(),
        lost: st.lost(),
        lost_pct: st.lost_percent(),
        duplicates: st.duplicates,
        out_of_order: st.out_of_order,
        seq_wraps: st.seq_wraps,
        min_delta_ms: st.min_delta_ms,
        mean_delta_ms: st.mean_delta_ms,
        max_delta_ms: st.max_delta_ms,
        min_jitter_ms: st.min_jitter_ms,
        mean_jitter_ms: st.mean_jitter_ms,
        max_jitter_ms: st.max_jitter_ms,
        problem: st.problem(),
        vlans: s.vlans.ids().collect(),
        call_id: s
            .call
            .and_then(|i| engine.calls().call(i))
            .map(|c| c.call_id.clone()),
        rtcp: RtcpRow {
            sender_reports: s.rtcp.sender_reports,
            receiver_reports: s.rtcp.report_blocks,
            reported_lost: s.rtcp.last_cumulative_lost,
            reported_jitter_ms: s.rtcp.last_jitter.and_then(|j| {
                (st.clock_rate > 0).then(|| j as f64 * 1000.0 / st.clock_rate as f64)
            }),
        },
    }
}

fn counters(engine: &Engine) -> Vec<(String, u64)> {
    let e = engine.stats();
    let mut out: Vec<(String, u64)> = vec![
        ("frames".into(), e.frames),
        ("bytes".into(), e.bytes),
        ("rtp_packets".into(), e.rtp_packets),
        ("rtcp_packets".into(), e.rtcp_packets),
        ("sip_messages".into(), e.sip_messages),
        ("sip_malformed".into(), e.sip_malformed),
        ("sip_calls".into(), engine.calls().calls().count() as u64),
        ("fax_packets".into(), e.fax_packets),
        ("other_udp".into(), e.other_udp),
        ("tcp_segments".into(), e.tcp_segments),
        ("other_ip".into(), e.other_ip),
        ("undecoded".into(), e.undecoded),
        (
            "rtp_streams".into(),
            engine.flows().streams().count() as u64,
        ),
    ];
    out.extend(
        engine
            .tcp_sip()
            .named()
            .into_iter()
            .map(|(n, c)| (format!("sip_tcp_{n}"), c)),
    );
    let d = engine.decapsulator().stats();
    out.extend(
        d.encapsulations()
            .into_iter()
            .map(|(n, c)| (format!("encap_{n}"), c)),
    );
    out.extend(d.stops().into_iter().map(|(n, c)| (format!("stop_{n}"), c)));
    out
}
