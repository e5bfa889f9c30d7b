//! The monitor service (TCP 42228) over real TCP and TLS 1.3 on loopback, client certificates
//! required, certificates made on the fly: attach and receive published frames intact and in
//! order, refused keys, a client without a certificate refused, a slow endpoint losing frames
//! while another gets all of them, monitors ended when an endpoint goes away, is revoked,
//! detaches, falls silent or never attaches; the service's segments marked DSCP EF (TOS 0xB8)
//! as libpcap sees them on `lo` (root: CI runs it as root and fails it otherwise).
//!
//! No test asserts a wall-clock duration; waits are bounded only so a failure cannot hang. A
//! counting global allocator shows that the publisher's per-packet path never allocates.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use silentmon::binding::Direction;
use silentmon::codec::{Codec, PayloadFormat, PayloadMap};
use silentmon::control::server;
use silentmon::flow::StreamId;
use silentmon::monitor::fanout::{self, Publisher};
use silentmon::monitor::registry::Registry;
use silentmon::monitor::service::{self, MonitorServer};
use silentmon::monitor::service_client::{self as client, Event, MonitorClient};
use silentmon::monitor::stats::MonitorStats;
use silentmon::monitor::wire::Control;
use silentmon::router::{Forward, Notice};
use silentmon::security::audit::AuditEvent;
use silentmon::security::pki::{create_ca, create_request, sign_request, Role};
use silentmon::security::tls::{client_config, server_config};
use silentmon::time::Timestamp;
use tokio::io::AsyncWriteExt;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
#[path = "common/netns.rs"]
mod netns;
use counting_alloc::{allocations, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Upper bound on any wait, so that a broken service fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

struct Certs {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    /// Another supervisor's desk.
    other: Arc<rustls::ClientConfig>,
    no_cert: Arc<rustls::ClientConfig>,
}

fn certs() -> Certs {
    let ca = create_ca("monitor test CA", 30).unwrap();
    let req = create_request("localhost").unwrap();
    let cert = sign_request(&req.cert, &ca, Role::Server, 30).unwrap();
    let endpoint = create_request("supervisor-desk").unwrap();
    let endpoint_cert = sign_request(&endpoint.cert, &ca, Role::Client, 30).unwrap();
    let other = create_request("other-desk").unwrap();
    let other_cert = sign_request(&other.cert, &ca, Role::Client, 30).unwrap();
    Certs {
        server: server_config(&ca.cert, &cert, &req.key, true).unwrap(),
        client: client_config(&ca.cert, Some((&endpoint_cert, &endpoint.key))).unwrap(),
        other: client_config(&ca.cert, Some((&other_cert, &other.key))).unwrap(),
        no_cert: client_config(&ca.cert, None).unwrap(),
    }
}

struct Harness {
    addr: String,
    certs: Certs,
    registry: Arc<Registry>,
    stats: Arc<MonitorStats>,
    ended: tokio::sync::mpsc::Receiver<(u64, silentmon::control::reply::StopReason)>,
    audited: Arc<std::sync::Mutex<Vec<AuditEvent>>>,
    publisher: Publisher,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    queue_frames: usize,
) -> Harness {
    let certs = certs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (control, inbox) = server::handle(&server::ControlStats::default());
    let ended = inbox.ended;
    let (fanout_tx, fanout_rx) = fanout::commands();
    let registry = Arc::new(Registry::new());
    let stats = Arc::new(MonitorStats::default());
    let audited = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service::run(
        listener,
        MonitorServer {
            tls: Some(certs.server.clone()),
            registry: registry.clone(),
            control,
            fanout: fanout_tx,
            heartbeat_interval,
            heartbeat_timeout,
            queue_frames,
            tos: service::DEFAULT_TOS,
            stats: stats.clone(),
            audit: {
                let audited = audited.clone();
                Arc::new(move |e: &AuditEvent, _| audited.lock().unwrap().push(e.clone()))
            },
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    Harness {
        addr,
        certs,
        registry,
        publisher: Publisher::new(fanout_rx, stats.clone()),
        stats,
        ended,
        audited,
        stop: Some(stop_tx),
        server,
    }
}

impl Harness {
    async fn client(&self) -> MonitorClient {
        MonitorClient::connect(&self.addr, Some((self.certs.client.clone(), "localhost")))
            .await
            .unwrap()
    }

    /// An endpoint that attaches by hand and then never reads nor writes again.
    async fn mute_endpoint(
        &self,
        key: &str,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        // A small receive window, so the service's socket backs up soon.
        sock.set_recv_buffer_size(4096).unwrap();
        let tcp = sock.connect(self.addr.parse().unwrap()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(self.certs.client.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let mut out = Vec::new();
        Control::Attach { key: key.into() }
            .append(&mut out)
            .unwrap();
        tls.write_all(&out).await.unwrap();
        tls.flush().await.unwrap();
        tls
    }

    /// Flushes the publisher until `n` monitors are routed.
    async fn routed(&mut self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.publisher.flush();
            if self.publisher.routed() == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "monitors never routed"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The next monitor ending reported to the control plane, which the harness then carries
    /// out as the appliance does (the control plane's action revokes the grant).
    async fn next_ended(&mut self) -> (u64, String) {
        let (id, reason) = tokio::time::timeout(PATIENCE, self.ended.recv())
            .await
            .expect("a monitor ended")
            .expect("the control handle lives");
        self.registry.revoke(id, reason.as_str());
        (id, reason.to_string())
    }
}

/// An RTP-like packet carrying its sequence number in its first four bytes.
fn packet(seq: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..166u32).map(|i| (i as u8).wrapping_add(seq as u8)));
    p
}

fn forward(monitor: u64, seq: u32, rtp: &[u8]) -> Forward<'_> {
    Forward {
        monitor,
        direction: if seq % 2 == 0 {
            Direction::FromAgent
        } else {
            Direction::ToAgent
        },
        stream: StreamId(seq % 3),
        capture_ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + i64::from(seq)),
        rtp,
    }
}

async fn event(c: &mut MonitorClient) -> Event {
    tokio::time::timeout(PATIENCE, c.next_event())
        .await
        .expect("an event")
        .expect("the connection lives")
}

fn expect_media(e: Event, monitor: u64, seq: u32) {
    let want = packet(seq);
    let f = forward(monitor, seq, &want);
    assert_eq!(
        e,
        Event::Media {
            monitor,
            stream: f.stream.0,
            direction: f.direction,
            capture_ts: f.capture_ts,
            rtp: want.clone(),
        },
        "frame {seq}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_endpoint_gets_frames_intact_and_in_order() {
    let mut h = start(Duration::from_secs(5), Duration::from_secs(15), 1024).await;
    h.registry
        .grant(1, "key-1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    let a = c.attach("key-1").await.unwrap();
    assert_eq!((a.monitor, a.agent.as_str()), (1, "5001"));
    h.routed(1).await;

    let mut payloads = PayloadMap::new();
    payloads.insert(
        111,
        PayloadFormat {
            codec: Codec::Opus,
            clock_rate: 48_000,
            channels: 2,
        },
    );
    let started = Timestamp::from_nanos(1_700_000_000_000_000_000);
    h.publisher.notice(&Notice::Call {
        monitor: 1,
        call_id: "call-a@pbx".into(),
        payloads,
        started,
        appliance: None,
        call_type: None,
    });
    h.publisher.flush();
    assert_eq!(
        event(&mut c).await,
        Event::Call {
            monitor: 1,
            call_id: "call-a@pbx".into(),
            payloads,
            started,
            appliance: None
        }
    );
    for seq in 0..500 {
        h.publisher.publish(&forward(1, seq, &packet(seq)));
        if seq % 50 == 49 {
            h.publisher.flush();
        }
    }
    for seq in 0..500 {
        expect_media(event(&mut c).await, 1, seq);
    }
    h.publisher.notice(&Notice::CallEnded {
        monitor: 1,
        call_id: "call-a@pbx".into(),
    });
    h.publisher.flush();
    assert_eq!(
        event(&mut c).await,
        Event::CallEnded {
            monitor: 1,
            call_id: "call-a@pbx".into()
        }
    );
    let s = h.registry.subscriber_stats(1).unwrap();
    assert_eq!((s.forwarded, s.dropped), (500, 0));
    assert_eq!(h.stats.forwarded_total.load(Ordering::Relaxed), 500);
    assert_eq!(h.stats.attached.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_unknown_and_used_keys_are_refused() {
    let h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(7, "right-key", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    match c.attach("wrong-key").await {
        Err(client::Error::Refused { reason, .. }) => assert_eq!(reason, "unknown session key"),
        other => panic!("{other:?}"),
    }
    // The connection stays usable after a refusal.
    assert_eq!(c.attach("right-key").await.unwrap().monitor, 7);
    let mut other = h.client().await;
    match other.attach("right-key").await {
        Err(client::Error::Refused { reason, .. }) => {
            assert_eq!(reason, "session key already used")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.stats.attach_refused_total.load(Ordering::Relaxed), 2);
    assert_eq!(h.stats.attached.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_only_with_the_certificate_of_the_supervisor_it_was_granted_to() {
    let h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(7, "desk-key", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    // Another supervisor's certificate with this key: refused, audited, the grant kept.
    let mut thief = MonitorClient::connect(&h.addr, Some((h.certs.other.clone(), "localhost")))
        .await
        .unwrap();
    match thief.attach("desk-key").await {
        Err(client::Error::Refused { reason, .. }) => {
            assert_eq!(reason, "this session key was granted to another supervisor")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.audited.lock().unwrap()[..],
        [AuditEvent::AttachRefused {
            certificate: Some("other-desk".into()),
            monitor: Some(7),
            reason: "this session key was granted to another supervisor".into()
        }]
    );
    // Guessing further keys on that connection ends it at the third refusal.
    for key in ["guess-1", "guess-2"] {
        let _ = thief.attach(key).await;
    }
    let closed = thief.attach("guess-3").await.expect_err("closed");
    assert!(
        matches!(closed, client::Error::Io { .. } | client::Error::Closed(_)),
        "{closed:?}"
    );
    // The supervisor's own desk attaches with it.
    let mut c = h.client().await;
    assert_eq!(c.attach("desk-key").await.unwrap().monitor, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(1, "key-1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    // TLS 1.3: the client finishes its side of the handshake before the server checks the
    // (missing) certificate, so the refusal shows on the first exchange at the latest.
    let refused =
        match MonitorClient::connect(&h.addr, Some((h.certs.no_cert.clone(), "localhost"))).await {
            Err(e) => e,
            Ok(mut c) => c
                .attach("key-1")
                .await
                .expect_err("no certificate, no attach"),
        };
    assert!(
        matches!(refused, client::Error::Io { .. } | client::Error::Closed(_)),
        "{refused:?}"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.stats.listen.tls_failures.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(h.registry.is_granted(1));
    assert!(h.registry.subscriber_stats(1).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_loses_frames_and_never_stalls_the_publisher_or_others() {
    const BATCH: u32 = 200;
    const BATCHES: u32 = 400;
    let mut h = start(Duration::from_secs(5), Duration::from_secs(600), 256).await;
    h.registry
        .grant(1, "slow", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    h.registry
        .grant(2, "fast", "5001", ("s2", "supervisor-desk"))
        .unwrap();
    let _slow = h.mute_endpoint("slow").await;
    let mut fast = h.client().await;
    fast.attach("fast").await.unwrap();
    h.routed(2).await;

    // The engine thread: publish both monitors' frames, a batch at a time; pace on the fast
    // endpoint's queue only (it must never lose a frame), never on the slow one's.
    let Harness {
        mut publisher,
        registry,
        ..
    } = h;
    let reg = registry.clone();
    let engine = std::thread::spawn(move || {
        let counted = allocations();
        drop(std::hint::black_box(packet(0)));
        assert!(allocations() > counted, "the allocation counter counts");
        let mut publish_allocations = 0;
        for b in 0..BATCHES {
            for seq in b * BATCH..(b + 1) * BATCH {
                let p = packet(seq);
                let before = allocations();
                publisher.publish(&forward(1, seq, &p));
                publisher.publish(&forward(2, seq, &p));
                publish_allocations += allocations() - before;
            }
            publisher.flush();
            let deadline = std::time::Instant::now() + PATIENCE;
            while reg.subscriber_stats(2).expect("fast attached").queued > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "fast endpoint stalled"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(publish_allocations, 0, "publish allocated");
        (
            reg.subscriber_stats(1).expect("slow still attached"),
            publisher,
        )
    });
    for seq in 0..BATCH * BATCHES {
        expect_media(event(&mut fast).await, 2, seq);
    }
    let (slow, _publisher) = engine.join().unwrap();
    assert_eq!(slow.forwarded, u64::from(BATCH * BATCHES));
    assert!(slow.dropped > 0, "the slow endpoint lost nothing: {slow:?}");
    let f = registry.subscriber_stats(2).unwrap();
    assert_eq!((f.forwarded, f.dropped), (u64::from(BATCH * BATCHES), 0));
    assert_eq!(h.stats.dropped_total.load(Ordering::Relaxed), slow.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_endpoint_connection_ends_its_monitors() {
    let mut h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(1, "k1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    h.registry
        .grant(2, "k2", "5002", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    c.attach("k1").await.unwrap();
    c.attach("k2").await.unwrap();
    drop(c);
    let mut ended = vec![h.next_ended().await, h.next_ended().await];
    ended.sort();
    assert_eq!(
        ended,
        [
            (1, "endpoint disconnected".to_string()),
            (2, "endpoint disconnected".to_string())
        ]
    );
    assert!(!h.registry.is_granted(1) && !h.registry.is_granted(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_sends_stopped_and_the_connection_stays() {
    let mut h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(1, "k1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    h.registry
        .grant(2, "k2", "5002", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    c.attach("k1").await.unwrap();
    c.attach("k2").await.unwrap();
    h.routed(2).await;
    assert!(h.registry.revoke(1, "stopped by supervisor"));
    assert_eq!(
        event(&mut c).await,
        Event::Stopped {
            monitor: 1,
            reason: "stopped by supervisor".into()
        }
    );
    h.routed(1).await;
    // Monitor 2 still flows, and the connection takes a new attach.
    h.publisher.publish(&forward(2, 0, &packet(0)));
    h.publisher.flush();
    expect_media(event(&mut c).await, 2, 0);
    h.registry
        .grant(3, "k3", "5003", ("s1", "supervisor-desk"))
        .unwrap();
    assert_eq!(c.attach("k3").await.unwrap().monitor, 3);

    // The endpoint detaches monitor 2 itself: Stopped, and the control plane is told.
    c.detach(2).await.unwrap();
    assert_eq!(
        event(&mut c).await,
        Event::Stopped {
            monitor: 2,
            reason: "detached by the endpoint".into()
        }
    );
    // The revoked monitor was not reported back: the control plane ended it itself.
    assert_eq!(h.next_ended().await, (2, "endpoint detached".into()));
    assert!(h.ended.try_recv().is_err());
    assert!(h.registry.is_granted(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_silence_and_never_attached_end_monitors() {
    let mut h = start(Duration::from_millis(50), Duration::from_millis(500), 64).await;
    h.registry
        .grant(1, "silent", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    let _silent = h.mute_endpoint("silent").await;
    // An endpoint that heartbeats stays attached throughout.
    h.registry
        .grant(3, "alive", "5003", ("s1", "supervisor-desk"))
        .unwrap();
    let mut alive = MonitorClient::connect_with_heartbeat(
        &h.addr,
        Some((h.certs.client.clone(), "localhost")),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    alive.attach("alive").await.unwrap();
    h.registry
        .grant(2, "never", "5002", ("s1", "supervisor-desk"))
        .unwrap();

    let mut ended = vec![h.next_ended().await, h.next_ended().await];
    ended.sort();
    assert_eq!(
        ended,
        [
            (1, "endpoint heartbeat lost".to_string()),
            (2, "endpoint never attached".to_string())
        ]
    );
    assert!(h.registry.is_granted(3));
    assert!(h.registry.subscriber_stats(3).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_service_and_its_monitors() {
    let mut h = start(Duration::from_secs(5), Duration::from_secs(15), 64).await;
    h.registry
        .grant(1, "k1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    c.attach("k1").await.unwrap();
    drop(h.stop.take());
    assert_eq!(h.next_ended().await, (1, "monitor service stopped".into()));
    tokio::time::timeout(PATIENCE, &mut h.server)
        .await
        .expect("run returned")
        .unwrap();
    let closed = tokio::time::timeout(PATIENCE, c.next_event())
        .await
        .unwrap();
    assert!(closed.is_err(), "{closed:?}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.stats.endpoints.load(Ordering::Relaxed) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "endpoint gauge stuck"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the DSCP test reads of one captured Ethernet/IPv4/TCP frame on `lo`.
#[derive(Debug)]
struct Segment {
    tos: u8,
    syn: bool,
    payload: usize,
}

impl Segment {
    /// None for anything but Ethernet/IPv4/TCP.
    fn parse(frame: &[u8]) -> Option<Segment> {
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
            return None;
        }
        let ip = &frame[14..];
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        if ip[9] != 6 || ip.len() < ihl + 20 {
            return None;
        }
        let tcp = &ip[ihl..];
        Some(Segment {
            tos: ip[1],
            syn: tcp[13] & 0x02 != 0,
            payload: total.checked_sub(ihl + (tcp[12] >> 4) as usize * 4)?,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sends_its_segments_marked_dscp_ef() {
    if !netns::require_root("the_service_sends_its_segments_marked_dscp_ef") {
        return;
    }
    let mut h = start(Duration::from_secs(5), Duration::from_secs(15), 1024).await;
    let port = h.addr.rsplit(':').next().unwrap().to_owned();
    // Opened before the endpoint connects, so it sees the whole connection.
    let mut cap = pcap::Capture::from_device("lo")
        .unwrap()
        .immediate_mode(true)
        .snaplen(128)
        .open()
        .unwrap()
        .setnonblock()
        .unwrap();
    assert_eq!(cap.get_datalink(), pcap::Linktype::ETHERNET);
    cap.filter(&format!("tcp src port {port}"), true).unwrap();

    h.registry
        .grant(1, "key-1", "5001", ("s1", "supervisor-desk"))
        .unwrap();
    let mut c = h.client().await;
    c.attach("key-1").await.unwrap();
    h.routed(1).await;
    for seq in 0..50 {
        h.publisher.publish(&forward(1, seq, &packet(seq)));
        h.publisher.flush();
    }
    for seq in 0..50 {
        expect_media(event(&mut c).await, 1, seq);
    }
    // Every segment from the service is marked: the SYN-ACK (the listener is), pure ACKs, the
    // TLS handshake, the attach reply and the media.
    // Non-blocking reads until the capture has been quiet for a while (the media were all
    // received above, so their segments are in the capture buffer already).
    let mut segments = Vec::new();
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        match cap.next_packet() {
            Ok(p) => {
                segments.extend(Segment::parse(p.data));
                quiet_since = std::time::Instant::now();
            }
            Err(pcap::Error::TimeoutExpired) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("capture on lo: {e}"),
        }
    }
    assert!(
        segments.iter().any(|s| s.syn) && segments.iter().filter(|s| s.payload > 0).count() >= 3,
        "the SYN-ACK and data segments from the service not all seen: {segments:?}"
    );
    assert!(
        segments.iter().all(|s| s.tos == service::DEFAULT_TOS),
        "segments from the service with another TOS than 0xB8: {segments:?}"
    );
}
