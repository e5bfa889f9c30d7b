//! Whole-program benchmark of monitor forwarding and listen latency (issue: monitoring, item 9).
//! Not a test: it does nothing unless cargo runs it as a benchmark (`--bench` on the command
//! line), so `cargo test --all-targets` only builds it.
//!
//! `cargo bench --bench monitor_latency` (or `tools/bench-monitor.sh`, which builds the release
//! binaries first):
//! 1. generates a capture of CALLS concurrent G.711 calls with capgen (call i reaches agent
//!    5001+i; RTP_PHASE=random gives each call its own packet phase as independent phones
//!    have, RTP_PHASE=aligned sends every call's packets at the same instant, so each 20 ms
//!    one burst of CALLS x 2 packets fans out to every monitor at once: the worst case),
//!    makes a private CA with the server's and an endpoint's certificate, and starts
//!    `silentmon server --replay CAPTURE --loop` on loopback (TLS 1.3 on the control plane and
//!    on the monitor service, which wants the client certificate; TLS=0: `--insecure`), with
//!    one `[[agent]]` per call and SUPERVISORS supervisors of the one team;
//! 2. for each monitor count in COUNTS: logs the supervisors in on the control plane (one
//!    session each), starts that many monitors (monitor m: supervisor s(m / CALLS + 1), agent
//!    5001 + m % CALLS), attaches one `MonitorClient` per monitor, and for SECONDS (after
//!    WARMUP) records, per media frame, the forwarding delay = wall-clock receive time minus the
//!    frame's `capture_ts` (the replay stamps each frame with its scheduled wall-clock time, so a
//!    late replay thread counts as delay, as a late engine would); prints p50/p99/p99.9/max,
//!    the server's forwarded/dropped counters, and the server's own share: the bucket of
//!    `silentmon_monitor_write_delay_seconds` (capture_ts -> end of the socket write) that
//!    holds its p50 and p99 over the window;
//! 3. listen latency: LISTEN monitors each feed a real `MediaSession` (default config: jitter
//!    target 40 ms, 60 ms cushion; device format LISTEN_RATE x LISTEN_CHANNELS) ticked every
//!    `MediaLoopConfig::default().tick` (5 ms) on a `MediaClock`, like `endpoint::media_loop`.
//!    The payload of one packet per second of the agent's direction is replaced by a full-scale marker (every other packet's payload
//!    by silence, or by a 1 kHz background at LISTEN_BACKGROUND dBFS), so the marker's onset
//!    in the device frames handed to the sink can be found; listen latency = wall-clock time
//!    of the sink call carrying the onset minus the marker packet's `capture_ts`. Timing in
//!    the pipeline depends on RTP timestamps and arrivals, and on the payload only in one way:
//!    the jitter buffer shortens its delay within a talkspurt by dropping a silent frame, or,
//!    after a second of sound without one, a sound frame crossfaded into the next; with
//!    silence between the markers it drops a silent frame, with a background (say
//!    LISTEN_BACKGROUND=-30) it splices a sound frame, and either way settles at 20 ms.
//!
//! With HOP=1 the capture is replayed by a second appliance ("serving", the one whose SPAN
//! would see the calls) and the endpoints attach to the first ("asking"), which gets the audio
//! over the cluster's peer link (TCP 42029, mutual TLS): the delay then includes one peer
//! hop, and the table adds the link's bytes per second per monitored agent (the asking side's
//! `silentmon_peer_received_bytes_total`) beside the calls' RTP bitrate.
//!
//! Environment: SILENTMON, CAPGEN (binaries; default target/release/...), BENCH_DIR (default
//! /tmp/silentmon-bench-monitor), CALLS (100), RTP_PHASE (random), CALL_SECS (120: longer than a
//! whole run, so the loop restart never falls into a window), SUPERVISORS (5), COUNTS
//! ("1 50 500"), SECONDS (10), WARMUP (3), LISTEN (10), LISTEN_SECONDS (30), LISTEN_RATE
//! (48000), LISTEN_CHANNELS (2), LISTEN_BACKGROUND (unset: silence), TLS (1; 0: plaintext),
//! CONNECTIONS (monitor: one monitor service connection per monitor; supervisor: one per
//! supervisor carrying all its monitors, as a supervisor's endpoint does; the service accepts
//! at most 512 connections, so 1000 monitors need `supervisor`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use silentmon::binding::Direction;
use silentmon::control::client::Client;
use silentmon::control::frame::Frame;
use silentmon::endpoint::media::{MediaSession, SessionConfig};
use silentmon::endpoint::media_loop::MediaClock;
use silentmon::monitor::service_client::{Event, MonitorClient};
use silentmon::time::Timestamp;

#[path = "support/mod.rs"]
mod support;
use support::{env_or, free_port, metric, scrape, wall_ns, BoxError};

/// One marker packet per this many 20 ms packets (one per second).
const MARKER_EVERY: u32 = 50;
/// Samples per 20 ms G.711 packet (RTP timestamp units).
const PACKET_SAMPLES: u32 = 160;

struct Options {
    silentmon: PathBuf,
    capgen: PathBuf,
    dir: PathBuf,
    calls: u32,
    call_secs: u32,
    /// capgen's `--rtp-phase`: `random` (independent phones) or `aligned` (every call sends
    /// at the same instant: the worst case).
    rtp_phase: String,
    supervisors: u32,
    counts: Vec<u32>,
    seconds: u64,
    warmup: u64,
    listen: u32,
    listen_seconds: u64,
    /// Device format the listen sessions render for (48 kHz stereo: a usual PulseAudio
    /// default; 8000 Hz takes the resampler out of the path).
    listen_rate: u32,
    listen_channels: u16,
    /// Level (dBFS) of the background the non-marker packets carry; None: digital silence.
    listen_background: Option<f64>,
    /// TLS 1.3 on both links, with a client certificate on the monitor service, as deployed
    /// (TLS=1, the default); TLS=0 runs the server `--insecure`.
    tls: bool,
    /// HOP=1: the endpoints' appliance gets the audio from a second one over the peer link.
    hop: bool,
    /// SERVER_CPUS=LIST: the servers run on these CPUs only (`taskset -c LIST`), so that with
    /// the bench itself pinned elsewhere (`CLIENT_CPUS` in tools/bench-monitor.sh) the
    /// receiving clients' share of the delay is apart from the server's.
    server_cpus: Option<String>,
}

impl Options {
    fn from_env() -> Result<Options, BoxError> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let counts = std::env::var("COUNTS").unwrap_or_else(|_| "1 50 500".into());
        let counts = counts
            .split_whitespace()
            .map(|c| {
                c.parse()
                    .map_err(|_| format!("COUNTS: {c:?} is not a count"))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let o = Options {
            silentmon: env_or("SILENTMON", root.join("target/release/silentmon"))?,
            capgen: env_or("CAPGEN", root.join("target/release/capgen"))?,
            dir: env_or("BENCH_DIR", PathBuf::from("/tmp/silentmon-bench-monitor"))?,
            calls: env_or("CALLS", 100)?,
            call_secs: env_or("CALL_SECS", 120)?,
            rtp_phase: env_or("RTP_PHASE", "random".to_string())?,
            supervisors: env_or("SUPERVISORS", 5)?,
            counts,
            seconds: env_or("SECONDS", 10)?,
            warmup: env_or("WARMUP", 3)?,
            listen: env_or("LISTEN", 10)?,
            listen_seconds: env_or("LISTEN_SECONDS", 30)?,
            listen_rate: env_or("LISTEN_RATE", 48_000)?,
            listen_channels: env_or("LISTEN_CHANNELS", 2)?,
            listen_background: match std::env::var("LISTEN_BACKGROUND") {
                Ok(v) => Some(
                    v.parse()
                        .map_err(|e| format!("LISTEN_BACKGROUND={v}: {e}"))?,
                ),
                Err(_) => None,
            },
            tls: env_or::<u8>("TLS", 1)? != 0,
            hop: env_or::<u8>("HOP", 0)? != 0,
            server_cpus: std::env::var("SERVER_CPUS").ok().filter(|c| !c.is_empty()),
        };
        let most = o.calls * o.supervisors;
        if let Some(c) = o.counts.iter().find(|&&c| c > most) {
            return Err(format!(
                "COUNTS: {c} monitors need more than CALLS x SUPERVISORS = {most} (a supervisor \
                 monitors each agent once)"
            )
            .into());
        }
        if o.listen > o.calls {
            return Err(format!("LISTEN={} is more than CALLS={}", o.listen, o.calls).into());
        }
        Ok(o)
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without --bench: a benchmark is no test.
        println!("monitor_latency: a benchmark; run it with `cargo bench --bench monitor_latency`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("monitor_latency: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BoxError> {
    let o = Options::from_env()?;
    std::fs::create_dir_all(&o.dir)?;
    let capture = o.dir.join(format!(
        "calls-{}-{}-{}.pcap",
        o.calls, o.call_secs, o.rtp_phase
    ));
    if !capture.exists() {
        eprintln!("generating {} ...", capture.display());
        let st = Command::new(&o.capgen)
            .args(["calls", "--calls", &o.calls.to_string()])
            .args(["--duration", &o.call_secs.to_string()])
            .args(["--rtp-phase", &o.rtp_phase])
            .args([
                "--encap", "vlan:100", "--codec", "pcmu", "--seed", "7", "-o",
            ])
            .arg(&capture)
            .status()
            .map_err(|e| format!("{}: {e}", o.capgen.display()))?;
        if !st.success() {
            return Err(format!("capgen failed: {st}").into());
        }
    }
    let server = Server::start(&o, &capture)?;
    // One thread for every client: the clients' futures are not Send, and the receive side
    // should not take more of the two cores than it must.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = tokio::task::LocalSet::new().block_on(&rt, bench(&o, &server));
    drop(server);
    result
}

/// The server under test (and, with HOP=1, the one serving it the audio); killed when
/// dropped.
struct Server {
    child: Child,
    control: String,
    monitor: String,
    metrics: SocketAddr,
    /// The endpoints' TLS configuration (CA and client certificate); None: plaintext.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The appliance that replays the capture, with HOP=1, and its metrics.
    serving: Option<(Child, SocketAddr)>,
}

/// The name in the endpoints' appliance's certificate (its cluster name with HOP=1).
const ASKING: &str = "localhost";
/// The replaying appliance's name with HOP=1.
const SERVING: &str = "appliance-s";

impl Server {
    /// What `Client::connect` and `MonitorClient::connect` take to reach this server.
    fn tls(&self) -> Option<(Arc<rustls::ClientConfig>, &'static str)> {
        self.tls.clone().map(|c| (c, ASKING))
    }

    /// The metrics of the appliance that replays the capture.
    fn replaying_metrics(&self) -> SocketAddr {
        self.serving.as_ref().map_or(self.metrics, |s| s.1)
    }
}

/// A private CA, the server's certificate for `localhost` in `certs_dir` (as the server loads
/// them) and the endpoints' configuration with a client certificate of the same CA. With
/// HOP=1 the serving appliance gets its own certificate in `certs_dir`/serving, and both carry
/// the peer link's client usage.
fn make_pki(certs_dir: &Path, hop: bool) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    use silentmon::security::pki::{create_ca, create_request, sign_request, Role};
    let ca = create_ca("silentmon bench CA", 2)?;
    let role = if hop { Role::Peer } else { Role::Server };
    let mut names = vec![(ASKING, certs_dir.to_owned())];
    if hop {
        names.push((SERVING, certs_dir.join("serving")));
    }
    for (name, dir) in names {
        let server = create_request(name)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.pem"), &ca.cert)?;
        std::fs::write(
            dir.join("server.pem"),
            sign_request(&server.cert, &ca, role, 2)?,
        )?;
        std::fs::write(dir.join("server.key"), &server.key)?;
    }
    let endpoint = create_request("bench-supervisor-desk")?;
    let endpoint_cert = sign_request(&endpoint.cert, &ca, Role::Client, 2)?;
    Ok(silentmon::security::tls::client_config(
        &ca.cert,
        Some((&endpoint_cert, &endpoint.key)),
    )?)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((c, _)) = self.serving.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An appliance's addresses.
struct Ports {
    control: String,
    monitor: String,
    metrics: SocketAddr,
    cluster: String,
}

impl Ports {
    fn free() -> Result<Ports, BoxError> {
        Ok(Ports {
            control: format!("127.0.0.1:{}", free_port()?),
            monitor: format!("127.0.0.1:{}", free_port()?),
            metrics: format!("127.0.0.1:{}", free_port()?).parse()?,
            cluster: format!("127.0.0.1:{}", free_port()?),
        })
    }
}

/// One appliance's configuration (`tag`): its ports, its `[cluster]` section, the bench's
/// agents and supervisors; written to BENCH_DIR/silentmon-TAG.toml.
fn config(
    o: &Options,
    tag: &str,
    ports: &Ports,
    cluster: &str,
    certs: &Path,
) -> Result<PathBuf, BoxError> {
    let mut cfg = format!(
        "[control]\nlisten = \"{}\"\nmetrics_listen = \"{}\"\n\
         [monitor]\nlisten = \"{}\"\n{cluster}\n\
         [security]\ninsecure = {insecure}\ncerts_dir = \"{certs}\"\naudit_log = \"{audit}\"\n\
         passwordless_logins = true\n",
        ports.control,
        ports.metrics,
        ports.monitor,
        insecure = !o.tls,
        certs = certs.display(),
        audit = o.dir.join(format!("audit-{tag}.jsonl")).display(),
    );
    for i in 0..o.calls {
        cfg += &format!(
            "[[agent]]\nid = \"{id}\"\nextension = \"{id}\"\nteam = \"bench\"\n",
            id = 5001 + i
        );
    }
    for s in 1..=o.supervisors {
        // Every supervisor presents the one bench certificate.
        cfg += &format!(
            "[[supervisor]]\nid = \"s{s}\"\nteams = [\"bench\"]\n\
             certificate = \"bench-supervisor-desk\"\n"
        );
    }
    let path = o.dir.join(format!("silentmon-{tag}.toml"));
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// `silentmon server --config CONFIG [--insecure] [--replay CAPTURE --loop]`, logging to
/// BENCH_DIR/server-TAG.log, once its metrics answer.
fn spawn(
    o: &Options,
    tag: &str,
    config: &Path,
    replay: Option<&Path>,
    metrics: SocketAddr,
) -> Result<Child, BoxError> {
    let log_path = o.dir.join(format!("server-{tag}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = match &o.server_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(&o.silentmon);
            c
        }
        None => Command::new(&o.silentmon),
    };
    cmd.arg("server").arg("--config").arg(config);
    if !o.tls {
        cmd.arg("--insecure");
    }
    if let Some(capture) = replay {
        cmd.arg("--replay").arg(capture).arg("--loop");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", o.silentmon.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape(metrics).is_err() {
        if let Some(st) = child.try_wait()? {
            let log = log_path.display();
            return Err(format!("silentmon server exited ({st}); see {log}").into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("silentmon server serves no metrics after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

impl Server {
    fn start(o: &Options, capture: &Path) -> Result<Server, BoxError> {
        let certs = o.dir.join("certs");
        let tls = if o.tls {
            Some(make_pki(&certs, o.hop)?)
        } else {
            None
        };
        let asking = Ports::free()?;
        if !o.hop {
            let cluster = format!("[cluster]\nlisten = \"{}\"", asking.cluster);
            let cfg = config(o, "a", &asking, &cluster, &certs)?;
            let child = spawn(o, "a", &cfg, Some(capture), asking.metrics)?;
            return Ok(Server {
                child,
                control: asking.control,
                monitor: asking.monitor,
                metrics: asking.metrics,
                tls,
                serving: None,
            });
        }
        let serving = Ports::free()?;
        let link = |me: &str, ports: &Ports, peer: &str, theirs: &Ports| {
            format!(
                "[cluster]\nname = \"{me}\"\nlisten = \"{}\"\n[[cluster.peer]]\nname = \"{peer}\"\n\
                 address = \"{}\"",
                ports.cluster, theirs.cluster
            )
        };
        let s_link = link(SERVING, &serving, ASKING, &asking);
        let a_link = link(ASKING, &asking, SERVING, &serving);
        let s_cfg = config(o, "s", &serving, &s_link, &certs.join("serving"))?;
        let a_cfg = config(o, "a", &asking, &a_link, &certs)?;
        let s_child = spawn(o, "s", &s_cfg, Some(capture), serving.metrics)?;
        let child = spawn(o, "a", &a_cfg, None, asking.metrics)?;
        Ok(Server {
            child,
            control: asking.control,
            monitor: asking.monitor,
            metrics: asking.metrics,
            tls,
            serving: Some((s_child, serving.metrics)),
        })
    }
}

async fn bench(o: &Options, server: &Server) -> Result<(), BoxError> {
    // The replay's calls must be up and bound before monitors start.
    wait_for_bindings(server, o.calls).await?;
    println!(
        "capture: {} G.711 calls x {} s, RTP phase {}, looped; {} agents, {} supervisors; {}; server pid {}",
        o.calls,
        o.call_secs,
        o.rtp_phase,
        o.calls,
        o.supervisors,
        if o.tls { "TLS 1.3" } else { "plaintext (--insecure)" },
        server.child.id()
    );
    if o.hop {
        println!(
            "one peer hop: the capture is replayed by {SERVING}, the endpoints attach to {ASKING}; \
             RTP of one call: {} B/s (both directions)",
            2 * 50 * (12 + 160)
        );
    }
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>14} {:>14} {:>7}",
        "monitors",
        "frames",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "srv fwd",
        "srv dropped",
        "srv write p50",
        "srv write p99",
        "batch",
    );
    if o.hop {
        println!("(link: bytes per second and monitored agent over the peer link)");
    }
    for &count in &o.counts {
        let r = forwarding(o, server, count).await?;
        println!(
            "{:>8} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>12.0} {:>12.0} {:>14} {:>14} {:>7.1}",
            count,
            r.delays.len(),
            pct(&r.delays, 0.50),
            pct(&r.delays, 0.99),
            pct(&r.delays, 0.999),
            pct(&r.delays, 1.0),
            r.forwarded,
            r.dropped,
            r.write_p50,
            r.write_p99,
            r.batch_frames
        );
        if let Some(b) = r.link_per_agent {
            println!("{:>8} link {b:.0} B/s per monitored agent", "");
        }
    }
    if o.listen > 0 {
        let l = listen(o, server).await?;
        println!(
            "listen latency (capture_ts -> device frames handed to the sink), device {} Hz x {}, \
             {} monitors, {} markers: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms; markers not found: \
             {}; session: {} packets, {} late, {} lost, {} jitter underruns, {} frames dropped to \
             shorten the delay ({} of them sound, spliced)",
            o.listen_rate,
            o.listen_channels,
            o.listen,
            l.delays.len(),
            pct(&l.delays, 0.50),
            pct(&l.delays, 0.99),
            pct(&l.delays, 0.0),
            pct(&l.delays, 1.0),
            l.missed,
            l.packets,
            l.late,
            l.lost,
            l.underruns,
            l.shortened,
            l.spliced,
        );
    }
    Ok(())
}

async fn wait_for_bindings(server: &Server, calls: u32) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = scrape(server.replaying_metrics())?;
        let linked = server.serving.is_none() || {
            let asking = scrape(server.metrics)?;
            metric(
                &asking,
                &format!("silentmon_peer_agents{{peer=\"{SERVING}\"}}"),
            ) >= calls as f64
        };
        if metric(&page, "silentmon_bindings") >= calls as f64 && linked {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {calls} agents bound after 30 s",
                metric(&page, "silentmon_bindings")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sorted delays in milliseconds; the q-quantile (nearest rank), NaN when there are none.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    support::pct(sorted, q)
}

/// Control sessions holding `count` monitors, and their session keys (monitor m: supervisor
/// `m / calls`, agent `5001 + m % calls`). The monitors end when the sessions are dropped.
async fn start_monitors(
    o: &Options,
    server: &Server,
    count: u32,
) -> Result<(Vec<tokio::task::JoinHandle<()>>, Vec<(String, String)>), BoxError> {
    let mut sessions = Vec::new();
    let mut keys = Vec::new();
    let mut m = 0;
    for s in 1..=o.supervisors {
        if m >= count {
            break;
        }
        let mut c = Client::connect(&server.control, server.tls()).await?;
        let r = c
            .request(
                &Frame::new("Login")
                    .with("mode", "supervisor")
                    .with("id", format!("s{s}")),
                "LoginReply",
                |_| {},
            )
            .await?;
        if r.str("result") != Some("ok") {
            return Err(format!("login of s{s} refused: {r:?}").into());
        }
        for a in 0..o.calls {
            if m >= count {
                break;
            }
            let agent = (5001 + a).to_string();
            let r = c
                .request(
                    &Frame::new("StartSilentMonitor").with("agent", agent.as_str()),
                    "StartSilentMonitorReply",
                    |_| {},
                )
                .await?;
            if r.str("result") != Some("ok") {
                return Err(format!("s{s} monitoring {agent} refused: {r:?}").into());
            }
            let key = r.str("key").ok_or("StartSilentMonitorReply without key")?;
            keys.push((agent, key.to_owned()));
            m += 1;
        }
        // Keep the session: answer heartbeats until the task is aborted.
        sessions.push(tokio::spawn(async move {
            while c.next_event().await.is_ok() {}
        }));
    }
    Ok((sessions, keys))
}

/// STALLS=1: the 10 ms windows (by receive time) whose worst delay exceeded 5 ms, with the
/// window's start relative to the first frame, its frames and worst delay: tells a periodic
/// stall (a timer, a heartbeat round) from load.
fn print_stalls(timed: &mut [(i64, f64)]) {
    timed.sort_by_key(|t| t.0);
    let Some(&(t0, _)) = timed.first() else {
        return;
    };
    let mut windows: std::collections::BTreeMap<i64, (u64, f64)> = Default::default();
    for &(t, d) in timed.iter() {
        let w = windows.entry((t - t0) / 10_000_000).or_default();
        w.0 += 1;
        w.1 = w.1.max(d);
    }
    for (w, (n, worst)) in windows.iter().filter(|(_, (_, worst))| *worst > 5.0) {
        println!(
            "  stall window at {:>6} ms: {n:>5} frames, worst {worst:.1} ms",
            w * 10
        );
    }
}

struct Forwarding {
    delays: Vec<f64>,
    forwarded: f64,
    dropped: f64,
    write_p50: String,
    write_p99: String,
    /// With HOP=1: bytes the asking side received over the peer link per second and per
    /// monitored agent, over the measuring window.
    link_per_agent: Option<f64>,
    /// Frames per batch the replaying capture thread handed its engine (each hand-over wakes
    /// the engine and, through it, the writers).
    batch_frames: f64,
}

/// The asking side's bytes received from the serving appliance.
const LINK_BYTES: &str = "silentmon_peer_received_bytes_total{peer=\"appliance-s\"}";

async fn forwarding(o: &Options, server: &Server, count: u32) -> Result<Forwarding, BoxError> {
    let (sessions, keys) = start_monitors(o, server, count).await?;
    let mut clients = Vec::new();
    // CONNECTIONS=supervisor: one connection per supervisor carries all its monitors, as
    // one endpoint per supervisor desktop does; default: one connection per monitor.
    let per_connection = match std::env::var("CONNECTIONS").as_deref() {
        Ok("supervisor") => o.calls as usize,
        _ => 1,
    };
    for group in keys.chunks(per_connection) {
        let mut c = MonitorClient::connect(&server.monitor, server.tls()).await?;
        for (_, key) in group {
            c.attach(key).await?;
        }
        clients.push(c);
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(o.warmup);
    let end = measure_from + Duration::from_secs(o.seconds);
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for mut c in clients {
        let measuring = measuring.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut delays = Vec::with_capacity(1 << 12);
            let mut error = None;
            loop {
                match tokio::time::timeout_at(end.into(), c.next_event()).await {
                    Err(_) => break,
                    Ok(Ok(Event::Media { capture_ts, .. })) => {
                        let now = wall_ns();
                        if measuring.load(Ordering::Relaxed) {
                            delays.push((now, (now - capture_ts.as_nanos()) as f64 / 1e6));
                        }
                    }
                    Ok(Ok(Event::Stopped { reason, .. })) => {
                        error = Some(format!("monitor stopped: {reason}"));
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            (delays, error)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = scrape(server.metrics)?;
    let replay_before = scrape(server.replaying_metrics())?;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep_until(end.into()).await;
    measuring.store(false, Ordering::Relaxed);
    let after = scrape(server.metrics)?;
    let replay_after = scrape(server.replaying_metrics())?;
    let mut timed = Vec::new();
    for t in tasks {
        let (d, error) = t.await?;
        if let Some(e) = error {
            return Err(format!("{count} monitors: {e}").into());
        }
        timed.extend(d);
    }
    if std::env::var_os("STALLS").is_some() {
        print_stalls(&mut timed);
    }
    let mut delays: Vec<f64> = timed.into_iter().map(|(_, d)| d).collect();
    for s in sessions {
        s.abort();
    }
    // Let the server end these monitors before the next count starts its own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    delays.sort_by(f64::total_cmp);
    let d = |name| metric(&after, name) - metric(&before, name);
    // A supervisor monitors each agent once; monitor m hears agent m % CALLS.
    let agents = f64::from(count.min(o.calls));
    Ok(Forwarding {
        delays,
        forwarded: d("silentmon_monitor_frames_forwarded_total"),
        dropped: d("silentmon_monitor_frames_dropped_total"),
        write_p50: histogram_quantile(&before, &after, WRITE_DELAY, 0.50),
        write_p99: histogram_quantile(&before, &after, WRITE_DELAY, 0.99),
        link_per_agent: o.hop.then(|| d(LINK_BYTES) / o.seconds as f64 / agents),
        batch_frames: {
            let r = |name| metric(&replay_after, name) - metric(&replay_before, name);
            r(REPLAY_FRAMES) / r(REPLAY_BATCHES).max(1.0)
        },
    })
}

/// The replaying appliance's capture counters (the mean batch it hands its engine).
const REPLAY_FRAMES: &str = "silentmon_capture_frames_total{interface=\"replay\"}";
const REPLAY_BATCHES: &str = "silentmon_capture_batches_total{interface=\"replay\"}";

/// The server's own share: capture_ts -> end of the socket write (a histogram).
const WRITE_DELAY: &str = "silentmon_monitor_write_delay_seconds";

/// "<= bound ms" of the bucket holding quantile `q` of what histogram `name` counted between
/// two scrapes (bucket resolution: the server keeps no raw samples).
fn histogram_quantile(before: &str, after: &str, name: &str, q: f64) -> String {
    let buckets = |page: &str| -> Vec<(String, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        page.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, v) = rest.split_once("\"} ")?;
                Some((le.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let total = a.last().map_or(0.0, |x| x.1) - b.last().map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return "-".into();
    }
    for ((le, va), (_, vb)) in a
        .iter()
        .zip(b.iter().chain(std::iter::repeat(&(String::new(), 0.0))))
    {
        if va - vb >= q * total {
            return match le.parse::<f64>() {
                Ok(s) => format!("<= {} ms", s * 1e3),
                Err(_) => "> 1000 ms".into(),
            };
        }
    }
    "-".into()
}

struct Listen {
    delays: Vec<f64>,
    missed: u64,
    packets: u64,
    late: u64,
    lost: u64,
    underruns: u64,
    shortened: u64,
    spliced: u64,
}

/// What the network side hands the listen thread.
enum Input {
    Media {
        monitor: usize,
        arrival: Timestamp,
        capture_ts: Timestamp,
        direction: Direction,
        rtp: Vec<u8>,
    },
    Call {
        monitor: usize,
        call_id: String,
        payloads: silentmon::codec::PayloadMap,
        started: Timestamp,
    },
    CallEnded {
        monitor: usize,
        call_id: String,
    },
}

/// The RTP payload range of a packet, None when it is not a plain PCMU packet.
fn pcmu_payload(rtp: &[u8]) -> Option<(u32, std::ops::Range<usize>)> {
    if rtp.len() < 12 || rtp[0] >> 6 != 2 || rtp[1] & 0x7f != 0 {
        return None;
    }
    let mut start = 12 + 4 * (rtp[0] & 0x0f) as usize;
    if rtp[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*rtp.get(start + 2)?, *rtp.get(start + 3)?]) as usize;
        start += 4 + 4 * words;
    }
    let mut end = rtp.len();
    if rtp[0] & 0x20 != 0 {
        end = end.checked_sub(*rtp.last()? as usize)?;
    }
    let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
    (start <= end).then_some((ts, start..end))
}

async fn listen(o: &Options, server: &Server) -> Result<Listen, BoxError> {
    let (sessions, keys) = start_monitors(o, server, o.listen).await?;
    let (tx, rx) = crossbeam_channel::bounded::<Input>(1 << 16);
    let clock = MediaClock::new();
    let end = Instant::now() + Duration::from_secs(o.warmup + o.listen_seconds);
    let n = keys.len();
    let listener = std::thread::spawn({
        let warmup = Instant::now() + Duration::from_secs(o.warmup);
        let device = (o.listen_rate, o.listen_channels);
        move || listen_thread(rx, clock, n, device, warmup, end)
    });
    // What the non-marker packets carry: digital silence, or a 1 kHz background at
    // LISTEN_BACKGROUND dBFS (RMS), which the jitter buffer never drops.
    let filler: Arc<Vec<u8>> = Arc::new(match o.listen_background {
        None => vec![0xff; 1500],
        Some(db) => {
            let amp = 32768.0 * 10f64.powf(db / 20.0) * std::f64::consts::SQRT_2;
            (0..1500)
                .map(|k| {
                    let x = amp * (2.0 * std::f64::consts::PI * k as f64 / 8.0).sin();
                    silentmon::media::g711::encode_ulaw(x as i16)
                })
                .collect()
        }
    });
    let mut tasks = Vec::new();
    for (i, (_, key)) in keys.iter().enumerate() {
        let mut c = MonitorClient::connect(&server.monitor, server.tls()).await?;
        c.attach(key).await?;
        let tx = tx.clone();
        let filler = filler.clone();
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let ev = match tokio::time::timeout_at(end.into(), c.next_event()).await {
                    Err(_) => return Ok(()),
                    Ok(r) => r.map_err(|e| e.to_string())?,
                };
                let input = match ev {
                    Event::Media {
                        direction,
                        capture_ts,
                        mut rtp,
                        ..
                    } => {
                        let arrival = clock.now();
                        // Marker: one full-scale packet per second of the agent's side,
                        // everything else silence (or the background).
                        if let Some((ts, payload)) = pcmu_payload(&rtp) {
                            let marker = direction == Direction::FromAgent
                                && (ts / PACKET_SAMPLES) % MARKER_EVERY == 0;
                            let len = payload.len();
                            if marker {
                                rtp[payload].fill(0x80);
                            } else if len <= filler.len() {
                                rtp[payload].copy_from_slice(&filler[..len]);
                            }
                        }
                        Input::Media {
                            monitor: i,
                            arrival,
                            capture_ts,
                            direction,
                            rtp,
                        }
                    }
                    Event::Call {
                        call_id,
                        payloads,
                        started,
                        ..
                    } => Input::Call {
                        monitor: i,
                        call_id,
                        payloads,
                        started,
                    },
                    Event::CallEnded { call_id, .. } => Input::CallEnded {
                        monitor: i,
                        call_id,
                    },
                    Event::Stopped { reason, .. } => {
                        return Err(format!("monitor stopped: {reason}"))
                    }
                    Event::Error { .. } | Event::Interrupted { .. } => continue,
                };
                if tx.try_send(input).is_err() {
                    return Err("listen thread fell behind (channel full)".to_string());
                }
            }
        }));
    }
    drop(tx);
    for t in tasks {
        t.await?.map_err(|e| format!("listen: {e}"))?;
    }
    let r = listener.join().map_err(|_| "listen thread panicked")?;
    for s in sessions {
        s.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(r)
}

/// One monitored agent's listening side.
struct Listener {
    session: MediaSession,
    agent: String,
    /// capture_ts of marker packets not yet heard (oldest first).
    markers: std::collections::VecDeque<i64>,
    /// Device samples of silence seen since the last loud one.
    quiet: usize,
}

fn listen_thread(
    rx: crossbeam_channel::Receiver<Input>,
    clock: MediaClock,
    n: usize,
    (rate, channels): (u32, u16),
    warmup: Instant,
    end: Instant,
) -> Listen {
    let cfg = SessionConfig::default();
    let mut listeners: Vec<Listener> = (0..n)
        .map(|i| Listener {
            session: MediaSession::new(cfg, rate, channels, None).expect("device format"),
            agent: format!("agent{i}"),
            markers: Default::default(),
            quiet: 0,
        })
        .collect();
    // 200 ms of silence before an onset counts (markers are 1 s apart, 20 ms long).
    let quiet_needed = (rate as usize / 5) * channels as usize;
    let mut delays = Vec::new();
    let mut missed = 0u64;
    let tick = silentmon::endpoint::media_loop::MediaLoopConfig::default().tick;
    let mut next_tick = Instant::now() + tick;
    let mut open = true;
    while open || Instant::now() < end {
        match rx.recv_deadline(next_tick) {
            Ok(Input::Media {
                monitor,
                arrival,
                capture_ts,
                direction,
                rtp,
            }) => {
                let l = &mut listeners[monitor];
                if direction == Direction::FromAgent {
                    if let Some((ts, payload)) = pcmu_payload(&rtp) {
                        if (ts / PACKET_SAMPLES) % MARKER_EVERY == 0 && !payload.is_empty() {
                            l.markers.push_back(capture_ts.as_nanos());
                        }
                    }
                }
                l.session.on_media(arrival, &l.agent, direction, &rtp);
                continue;
            }
            Ok(Input::Call {
                monitor,
                call_id,
                payloads,
                started,
            }) => {
                let l = &mut listeners[monitor];
                l.session.on_call(&call_id, payloads, started, &l.agent);
                continue;
            }
            Ok(Input::CallEnded { monitor, call_id }) => {
                listeners[monitor].session.on_call_ended(&call_id);
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                open = false;
                std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() < next_tick {
            continue;
        }
        let counting = Instant::now() >= warmup;
        for l in &mut listeners {
            let now = clock.now();
            let handed_at = wall_ns();
            let (quiet, markers) = (&mut l.quiet, &mut l.markers);
            l.session.tick(now, &mut |frames: &[f32]| {
                for s in frames {
                    if s.abs() > 0.3 {
                        if *quiet >= quiet_needed {
                            // Onset: the newest marker sent before now is the one heard.
                            let mut heard = None;
                            while markers.front().is_some_and(|&t| t <= handed_at) {
                                heard = markers.pop_front();
                            }
                            match heard {
                                Some(t) if counting => delays.push((handed_at - t) as f64 / 1e6),
                                Some(_) => {}
                                None if counting => missed += 1,
                                None => {}
                            }
                        }
                        *quiet = 0;
                    } else {
                        *quiet += 1;
                    }
                }
                frames.len()
            });
        }
        next_tick += tick;
        let late = Instant::now();
        if next_tick < late {
            next_tick = late + tick;
        }
    }
    let mut r = Listen {
        delays,
        missed,
        packets: 0,
        late: 0,
        lost: 0,
        underruns: 0,
        shortened: 0,
        spliced: 0,
    };
    for l in &listeners {
        let s = l.session.stats();
        r.packets += s.packets;
        r.late += s.late;
        r.lost += s.lost;
        r.underruns += s.jitter_underruns;
        r.shortened += s.jitter_shortened;
        r.spliced += s.jitter_spliced;
    }
    r.delays.sort_by(f64::total_cmp);
    r
}
