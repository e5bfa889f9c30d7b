//! The status endpoint: Prometheus text exposition (version 0.0.4) over plain HTTP/1.1 on a
//! localhost port by default (`control.metrics_listen`). `render` turns counter snapshots into
//! text (pure, tested on values); `serve` is the thin tokio shell answering `GET /metrics`.
//!
//! Rules: readers copy atomics, nothing here can slow the engine thread; a request that is not
//! a small GET gets a 4xx and the connection is closed; every metric name starts `silentmon_`.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::engine_loop::EngineMetrics;
use crate::capture::pipeline::PipelineStats;
use crate::control::server::ControlStats;
use crate::cti::client::CtiStats;
use crate::monitor::stats::MonitorStats;
use crate::peer::{ClusterView, PeerStatus};
use crate::sip::tcp::TcpSipStats;

/// Writes further exposition lines (another service's counters).
pub type ExtraLines = Arc<dyn Fn(&mut String) + Send + Sync>;

/// A per-input metric: name, help, and how to read it.
type InputMetric = (&'static str, &'static str, fn(&PipelineStats) -> u64);

/// Everything the endpoint reports.
#[derive(Clone)]
pub struct Sources {
    /// Capture inputs: name and counters.
    pub inputs: Vec<(String, Arc<PipelineStats>)>,
    /// The engine thread's counters.
    pub engine: Arc<EngineMetrics>,
    /// The control plane's counters.
    pub control: Arc<ControlStats>,
    /// Further lines from other services (the monitor service), already in exposition format.
    pub extra: Vec<ExtraLines>,
}

/// Writes a `# HELP` / `# TYPE` header.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample without labels.
pub fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition text.
pub fn render(s: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    capture_lines(&mut out, &s.inputs);
    engine_lines(&mut out, &s.engine);
    control_lines(&mut out, &s.control);
    for f in &s.extra {
        f(&mut out);
    }
    out
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Per capture input: the kernel's, the capture thread's and the pipeline's counters.
fn capture_lines(out: &mut String, inputs: &[(String, Arc<PipelineStats>)]) {
    let per_input: [InputMetric; 7] = [
        (
            "silentmon_capture_received_total",
            "Frames the kernel saw on the interface (pcap_stats ps_recv; frames read for a replay).",
            |p| {
                p.kernel_received
                    .load(Ordering::Relaxed)
                    .max(p.frames.load(Ordering::Relaxed))
            },
        ),
        (
            "silentmon_capture_kernel_dropped_total",
            "Frames the kernel dropped because the capture ring was full (ps_drop).",
            |p| p.kernel_dropped.load(Ordering::Relaxed),
        ),
        (
            "silentmon_capture_if_dropped_total",
            "Frames the interface or driver dropped (ps_ifdrop).",
            |p| p.if_dropped.load(Ordering::Relaxed),
        ),
        (
            "silentmon_capture_frames_total",
            "Frames the capture thread read.",
            |p| p.frames.load(Ordering::Relaxed),
        ),
        (
            "silentmon_capture_batches_total",
            "Batches the capture thread handed to the engine (frames_total / batches_total is the mean batch).",
            |p| p.batches.load(Ordering::Relaxed),
        ),
        (
            "silentmon_pipeline_dropped_total",
            "Frames dropped between the capture thread and the engine (engine behind).",
            |p| p.dropped_frames.load(Ordering::Relaxed),
        ),
        (
            "silentmon_capture_reopens_total",
            "Times the capture was reopened after its interface failed (gone, reset).",
            |p| p.reopens.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in per_input {
        header(out, name, "counter", help);
        for (iface, p) in inputs {
            let _ = writeln!(out, "{name}{{interface=\"{}\"}} {}", escape(iface), get(p));
        }
    }
}

/// The engine thread's counters and table sizes.
fn engine_lines(out: &mut String, e: &EngineMetrics) {
    for (name, kind, help, v) in [
        (
            "silentmon_engine_frames_total",
            "counter",
            "Frames the engine handled.",
            load(&e.frames),
        ),
        (
            "silentmon_engine_bytes_total",
            "counter",
            "Bytes the engine handled.",
            load(&e.bytes),
        ),
        (
            "silentmon_engine_sip_messages_total",
            "counter",
            "SIP messages parsed.",
            load(&e.sip_messages),
        ),
        (
            "silentmon_engine_sip_malformed_total",
            "counter",
            "SIP messages that did not parse.",
            load(&e.sip_malformed),
        ),
        (
            "silentmon_engine_rtp_packets_total",
            "counter",
            "RTP packets.",
            load(&e.rtp_packets),
        ),
        (
            "silentmon_engine_rtcp_packets_total",
            "counter",
            "RTCP packets.",
            load(&e.rtcp_packets),
        ),
        (
            "silentmon_engine_undecoded_total",
            "counter",
            "Frames that did not decapsulate to UDP/TCP.",
            load(&e.undecoded),
        ),
        (
            "silentmon_agent_packets_total",
            "counter",
            "RTP packets of bound agents.",
            load(&e.agent_packets),
        ),
        (
            "silentmon_forwarded_packets_total",
            "counter",
            "Packets handed to monitors.",
            load(&e.forwarded),
        ),
        (
            "silentmon_streams",
            "gauge",
            "RTP streams in the flow table.",
            load(&e.streams),
        ),
        (
            "silentmon_streams_pruned_total",
            "counter",
            "RTP streams forgotten after 10 minutes without a packet.",
            load(&e.streams_pruned),
        ),
        (
            "silentmon_calls",
            "gauge",
            "SIP calls in the call table.",
            load(&e.calls),
        ),
        (
            "silentmon_sip_calls_evicted_total",
            "counter",
            "SIP calls evicted by the call table's cap (the oldest idle first).",
            load(&e.calls_evicted),
        ),
        (
            "silentmon_bindings",
            "gauge",
            "Agent media bindings.",
            load(&e.bindings),
        ),
        (
            "silentmon_monitors",
            "gauge",
            "Active silent monitors.",
            load(&e.monitors),
        ),
        (
            "silentmon_cti_sip_disagreements_total",
            "counter",
            "Times SIP and the CTI Server named different agents for one media endpoint (CTI wins).",
            load(&e.cti_disagreements),
        ),
        (
            "silentmon_capture_inputs",
            "gauge",
            "Capture inputs running.",
            load(&e.inputs),
        ),
    ] {
        sample(out, name, kind, help, v);
    }
    let name = "silentmon_sip_tcp_total";
    header(
        out,
        name,
        "counter",
        "SIP over TCP reassembly: segments followed, messages reassembled, retransmitted, out_of_order, lost (gaps never filled), garbage_bytes, evicted connections.",
    );
    for (a, (what, _)) in e.sip_tcp.iter().zip(TcpSipStats::default().named()) {
        let _ = writeln!(out, "{name}{{what=\"{what}\"}} {}", load(a));
    }
}

/// The control plane's sessions, connections, refusals.
fn control_lines(out: &mut String, c: &ControlStats) {
    header(
        out,
        "silentmon_control_sessions",
        "gauge",
        "Control-plane sessions by mode.",
    );
    for (i, mode) in ["none", "agent", "supervisor", "monitor"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "silentmon_control_sessions{{mode=\"{mode}\"}} {}",
            load(&c.sessions[i])
        );
    }
    let l = &c.listen;
    for (name, help, v) in [
        (
            "silentmon_control_connections_total",
            "Control-plane connections accepted.",
            load(&l.accepted),
        ),
        (
            "silentmon_control_tls_failures_total",
            "Control-plane TLS handshakes that failed or timed out.",
            load(&l.tls_failures),
        ),
        (
            "silentmon_control_handshakes_refused_total",
            "Control-plane connections closed at once: too many TLS handshakes in progress \
             (from their address, or in all).",
            load(&l.handshakes_refused),
        ),
        (
            "silentmon_control_protocol_errors_total",
            "Control-plane connections closed for protocol errors.",
            load(&c.protocol_errors),
        ),
        (
            "silentmon_control_logins_failed_total",
            "Logins refused (wrong password, unknown account, throttled, locked out...).",
            load(&c.logins_failed),
        ),
        (
            "silentmon_control_logins_throttled_total",
            "Logins refused by the throttle without a password check.",
            load(&c.logins_throttled),
        ),
        (
            "silentmon_control_login_timeouts_total",
            "Connections closed for not logging in within control.login_timeout_ms.",
            load(&c.login_timeouts),
        ),
        (
            "silentmon_control_unauthenticated_closed_total",
            "Connections closed by the caps on connections without a login.",
            load(&c.unauthenticated_closed),
        ),
        (
            "silentmon_control_requests_refused_total",
            "Control-plane requests refused (bad fields, rights, mode).",
            load(&c.requests_refused),
        ),
        (
            "silentmon_control_inbox_lost_total",
            "Monitor endings, CTI agent states and heard-call warnings lost to a full queue towards the control plane.",
            load(&c.inbox_lost),
        ),
    ] {
        sample(out, name, "counter", help, v);
    }
}

/// The cluster's peers as exposition lines, one sample per peer and metric.
pub fn peer_lines(view: tokio::sync::watch::Receiver<Arc<ClusterView>>) -> ExtraLines {
    type Get = fn(&PeerStatus) -> f64;
    const METRICS: [(&str, &str, &str, Get); 9] = [
        (
            "silentmon_peer_up",
            "gauge",
            "1 while the link to the peer is up.",
            |p| f64::from(u8::from(p.up)),
        ),
        (
            "silentmon_peer_since_seconds",
            "gauge",
            "When the link to the peer last went up or down (seconds since the epoch).",
            |p| p.since,
        ),
        (
            "silentmon_peer_rtt_seconds",
            "gauge",
            "Round trip of the last heartbeat to the peer.",
            |p| p.rtt_ms.unwrap_or(0.0) / 1e3,
        ),
        (
            "silentmon_peer_agents",
            "gauge",
            "Agents the peer's SPAN shows on calls.",
            |p| p.agents as f64,
        ),
        (
            "silentmon_peer_subscriptions_asked",
            "gauge",
            "Agents this appliance asks the peer for.",
            |p| p.asked as f64,
        ),
        (
            "silentmon_peer_subscriptions_served",
            "gauge",
            "Agents the peer asks this appliance for.",
            |p| p.served as f64,
        ),
        (
            "silentmon_peer_received_bytes_total",
            "counter",
            "Bytes received from the peer.",
            |p| p.bytes_in as f64,
        ),
        (
            "silentmon_peer_sent_bytes_total",
            "counter",
            "Bytes sent to the peer.",
            |p| p.bytes_out as f64,
        ),
        (
            "silentmon_peer_media_dropped_total",
            "counter",
            "Media frames from the peer dropped because the engine thread was behind.",
            |p| p.dropped as f64,
        ),
    ];
    Arc::new(move |out: &mut String| {
        let v = view.borrow().clone();
        for (name, kind, help, get) in METRICS {
            header(out, name, kind, help);
            for p in &v.peers {
                let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", escape(&p.name), get(p));
            }
        }
    })
}

/// The CTI Server feed's counters as exposition lines.
pub fn cti_lines(stats: Arc<CtiStats>) -> ExtraLines {
    Arc::new(move |out: &mut String| {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        sample(
            out,
            "silentmon_cti_side",
            "gauge",
            "CTI session open on side 1 (A) or 2 (B); 0: none.",
            get(&stats.side),
        );
        let c = stats
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        header(
            out,
            "silentmon_cti_messages_total",
            "counter",
            "Messages from the CTI Server, by type (other: types not read).",
        );
        for (name, n) in &c.messages {
            let _ = writeln!(out, "silentmon_cti_messages_total{{type=\"{name}\"}} {n}");
        }
        for (name, help, v) in [
            (
                "silentmon_cti_skipped_fields_total",
                "Floating fields of tags not read.",
                c.skipped_fields,
            ),
            (
                "silentmon_cti_malformed_total",
                "Messages that did not fit their type or length (each reset the connection).",
                c.malformed,
            ),
            (
                "silentmon_cti_connects_total",
                "Connections to the CTI Server tried.",
                c.connects,
            ),
            (
                "silentmon_cti_resets_total",
                "Open sessions that went down.",
                c.resets,
            ),
            (
                "silentmon_cti_rtp_events_total",
                "RTP_STARTED and RTP_STOPPED events applied to bindings.",
                get(&stats.rtp_events),
            ),
            (
                "silentmon_cti_unknown_agents_total",
                "Events naming no configured agent.",
                get(&stats.unknown_agents),
            ),
            (
                "silentmon_cti_lost_total",
                "Events the engine or the control plane could not take.",
                get(&stats.lost),
            ),
        ] {
            sample(out, name, "counter", help, v);
        }
    })
}

/// The monitor service's counters as exposition lines.
pub fn monitor_lines(stats: Arc<MonitorStats>) -> ExtraLines {
    Arc::new(move |out: &mut String| {
        let get = MonitorStats::get;
        let l = &stats.listen;
        for (name, kind, help, v) in [
            (
                "silentmon_monitor_frames_forwarded_total",
                "counter",
                "Media frames queued towards supervisor endpoints.",
                get(&stats.forwarded_total),
            ),
            (
                "silentmon_monitor_frames_dropped_total",
                "counter",
                "Media frames slow endpoints lost (oldest first).",
                get(&stats.dropped_total),
            ),
            (
                "silentmon_monitor_control_dropped_total",
                "counter",
                "Control frames slow endpoints lost.",
                get(&stats.control_dropped_total),
            ),
            (
                "silentmon_monitor_unrouted_total",
                "counter",
                "Packets for monitors no endpoint is attached to.",
                get(&stats.unrouted_total),
            ),
            (
                "silentmon_monitor_connections_total",
                "counter",
                "Endpoint connections accepted.",
                get(&l.accepted),
            ),
            (
                "silentmon_monitor_tls_failures_total",
                "counter",
                "Endpoint TLS handshakes that failed or timed out.",
                get(&l.tls_failures),
            ),
            (
                "silentmon_monitor_handshakes_refused_total",
                "counter",
                "Endpoint connections closed at once: too many TLS handshakes in progress.",
                get(&l.handshakes_refused),
            ),
            (
                "silentmon_monitor_attach_refused_total",
                "counter",
                "Attach requests refused (unknown or used key, another supervisor's key).",
                get(&stats.attach_refused_total),
            ),
            (
                "silentmon_monitor_protocol_errors_total",
                "counter",
                "Bad frames from endpoints.",
                get(&stats.protocol_errors_total),
            ),
            (
                "silentmon_monitor_endpoints",
                "gauge",
                "Endpoint connections open.",
                get(&stats.endpoints),
            ),
            (
                "silentmon_monitor_attached",
                "gauge",
                "Monitors attached to an endpoint.",
                get(&stats.attached),
            ),
        ] {
            sample(out, name, kind, help, v);
        }
        stats.write_delay.write_exposition(
            out,
            "silentmon_monitor_write_delay_seconds",
            "Media frames by the time from capture to the end of the socket write that sent \
             them to the endpoint (each frame counted at its write's oldest frame).",
        );
    })
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Answers `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, sources: Sources, shutdown: impl Future<Output = ()>) {
    let sources = Arc::new(sources);
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = sock.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(head, Ok(Ok(()))) {
                return;
            }
            let (status, body) = respond(&buf, &sources);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Status line and body for a request head.
fn respond(head: &[u8], sources: &Sources) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics" | "/")) => ("200 OK", render(sources)),
        (Some("GET"), Some(_)) => ("404 Not Found", "not found: try /metrics\n".into()),
        _ => ("400 Bad Request", "only GET /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let p = Arc::new(PipelineStats::default());
        p.frames.store(10, Ordering::Relaxed);
        p.kernel_received.store(12, Ordering::Relaxed);
        p.kernel_dropped.store(2, Ordering::Relaxed);
        let e = Arc::new(EngineMetrics::default());
        e.rtp_packets.store(8, Ordering::Relaxed);
        e.monitors.store(1, Ordering::Relaxed);
        let c = Arc::new(ControlStats::default());
        c.sessions[2].store(3, Ordering::Relaxed);
        let s = Sources {
            inputs: vec![("span0".into(), p)],
            engine: e,
            control: c,
            extra: vec![Arc::new(|o: &mut String| {
                sample(o, "silentmon_test_extra", "gauge", "An extra line.", 5)
            })],
        };
        let text = render(&s);
        for line in [
            "silentmon_capture_received_total{interface=\"span0\"} 12",
            "silentmon_capture_kernel_dropped_total{interface=\"span0\"} 2",
            "silentmon_capture_frames_total{interface=\"span0\"} 10",
            "silentmon_pipeline_dropped_total{interface=\"span0\"} 0",
            "silentmon_engine_rtp_packets_total 8",
            "silentmon_monitors 1",
            "silentmon_control_sessions{mode=\"supervisor\"} 3",
            "silentmon_test_extra 5",
            "# TYPE silentmon_streams gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
        assert_eq!(respond(b"GET /metrics HTTP/1.1\r\n\r\n", &s).0, "200 OK");
        assert_eq!(respond(b"GET /x HTTP/1.1\r\n\r\n", &s).0, "404 Not Found");
        assert_eq!(respond(b"POST / HTTP/1.1\r\n\r\n", &s).0, "400 Bad Request");
    }
}
