//! Soak, load and faults of the appliance (docs/RELIABILITY.md). Not a test: it does nothing
//! unless cargo runs it as a benchmark (`--bench`); `tools/soak.sh` builds the release
//! binaries and runs it.
//!
//! Soak (MINUTES, default 30): `silentmon server` (TLS 1.3, private CA, real passwords)
//! replays in a loop a capture of CALLS (1000) concurrent generated calls with malformed
//! frames mixed in (JUNK per second of capture: truncated headers, bad IP/UDP lengths, broken
//! SIP, non-RTP UDP). Meanwhile:
//! - MONITORS (200) workers each log in as a supervisor, start a monitor of one of its team's
//!   agents, attach with the supervisor's own client certificate, listen 5-30 s, stop it, and
//!   every few monitors log out and in again (monitors attached and detached continuously);
//! - one slow endpoint reads its monitor at a trickle (its oldest frames are dropped);
//! - a prober times `ListAgents` once a second (login kept);
//! - an attacker every ATTACK_SECS (10) s repeats the attacks at a low rate: wrong
//!   passwords and unknown ids, connections that never log in, a pipelined burst of logins,
//!   malformed and oversized frames, a Bind with bad `seconds` and of another team's endpoint,
//!   another supervisor's session key on the monitor service, a handshake that never ends;
//! - every REPORT_SECS (60) s a row: the appliance's RSS and open descriptors, monitors
//!   attached, frames forwarded and dropped, capture drops (kernel and pipeline), the
//!   ListAgents p50/p99 of the interval, refused logins, worker errors.
//!
//! Faults (FAULTS=1, default; root for the SPAN case): on a small capture, with a real
//! `silentmon supervisor` (servers A and B):
//! 1. `kill -9` of the endpoint: the appliance's monitor ends (how long);
//! 2. `kill -9` of appliance A: the endpoint fails over to B and its monitor runs again (how
//!    long until packets flow);
//! 3. SIGSTOP of appliance B for 10 s, SIGCONT: what the endpoint saw, how long until packets
//!    flow again;
//! 4. the SPAN interface deleted and re-created (a veth in a namespace): the capture reopens
//!    (how long), counted.
//!
//! Environment: SILENTMON, CAPGEN (default target/release/...), SOAK_DIR
//! (/tmp/silentmon-soak), MINUTES, CALLS, MONITORS, SUPERVISORS (20), JUNK (20), ATTACK_SECS,
//! REPORT_SECS, FAULTS (1; 0: none), SOAK (1; 0: faults only).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silentmon::control::client::Client;
use silentmon::control::frame::Frame;
use silentmon::monitor::service_client::{Event, MonitorClient};
use support::{env_or, free_port, metric, pct, scrape, BoxError};
use tokio::io::AsyncWriteExt;

#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/load.rs"]
mod load;

/// What the run uses.
pub struct Options {
    pub silentmon: PathBuf,
    pub capgen: PathBuf,
    pub dir: PathBuf,
    pub minutes: u64,
    pub calls: u32,
    pub monitors: u32,
    pub supervisors: u32,
    pub junk: u32,
    pub attack_secs: u64,
    pub report_secs: u64,
    pub faults: bool,
    pub soak: bool,
}

impl Options {
    fn from_env() -> Result<Options, BoxError> {
        let release = |name: &str| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/release")
                .join(name)
        };
        Ok(Options {
            silentmon: std::env::var_os("SILENTMON").map_or(release("silentmon"), PathBuf::from),
            capgen: std::env::var_os("CAPGEN").map_or(release("capgen"), PathBuf::from),
            dir: std::env::var_os("SOAK_DIR").map_or("/tmp/silentmon-soak".into(), PathBuf::from),
            minutes: env_or("MINUTES", 30)?,
            calls: env_or("CALLS", 1000)?,
            monitors: env_or("MONITORS", 200)?,
            supervisors: env_or("SUPERVISORS", 20)?,
            junk: env_or("JUNK", 20)?,
            attack_secs: env_or("ATTACK_SECS", 10)?,
            report_secs: env_or("REPORT_SECS", 60)?,
            faults: env_or::<u8>("FAULTS", 1)? == 1,
            soak: env_or::<u8>("SOAK", 1)? == 1,
        })
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: a benchmark; run it with tools/soak.sh");
        return;
    }
    if let Err(e) = run() {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BoxError> {
    let o = Options::from_env()?;
    std::fs::create_dir_all(&o.dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if o.soak {
        let site = Site::prepare(&o, "soak", o.calls)?;
        let capture = site.capture(&o, o.calls, 60, o.junk)?;
        let app = site.start(&o, "a", &capture)?;
        let set = tokio::task::LocalSet::new();
        let report = set.block_on(&rt, load::soak(&o, Rc::new(site), app))?;
        std::fs::write(o.dir.join("soak.md"), &report)?;
        println!("{report}");
    }
    if o.faults {
        let set = tokio::task::LocalSet::new();
        let report = set.block_on(&rt, faults::run(&o))?;
        std::fs::write(o.dir.join("faults.md"), &report)?;
        println!("{report}");
    }
    Ok(())
}

/// A test site: its directory, PKI, agents, supervisors and their passwords and certificates.
pub struct Site {
    pub dir: PathBuf,
    pub agents: u32,
    pub supervisors: u32,
    /// The endpoints' TLS configurations, per supervisor (index 0 is s1), and a stranger's
    /// (a certificate of the CA no supervisor is configured with).
    pub client_tls: Vec<Arc<rustls::ClientConfig>>,
    pub stranger_tls: Arc<rustls::ClientConfig>,
    pub plain_tls: Arc<rustls::ClientConfig>,
}

/// Agents per team; supervisor s(i) has team t((i-1) % teams + 1).
pub const TEAM_SIZE: u32 = 100;

impl Site {
    /// A site in `o.dir/name` with `agents` agents and `o.supervisors` supervisors.
    pub fn prepare(o: &Options, name: &str, agents: u32) -> Result<Site, BoxError> {
        use silentmon::security::pki::{create_ca, create_request, sign_request, Role};
        use silentmon::security::tls::client_config;
        let dir = o.dir.join(name);
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs)?;
        let ca = create_ca("silentmon soak CA", 3)?;
        let server = create_request("localhost")?;
        std::fs::write(certs.join("ca.pem"), &ca.cert)?;
        std::fs::write(
            certs.join("server.pem"),
            sign_request(&server.cert, &ca, Role::Server, 3)?,
        )?;
        std::fs::write(certs.join("server.key"), &server.key)?;
        // Each client's certificate and key also on disk (for `silentmon supervisor`), with
        // its password file.
        let client = |cn: &str| -> Result<Arc<rustls::ClientConfig>, BoxError> {
            let r = create_request(cn)?;
            let cert = sign_request(&r.cert, &ca, Role::Client, 3)?;
            std::fs::write(certs.join(format!("{cn}.pem")), &cert)?;
            std::fs::write(certs.join(format!("{cn}.key")), &r.key)?;
            Ok(client_config(&ca.cert, Some((&cert, &r.key)))?)
        };
        for s in 1..=o.supervisors {
            std::fs::write(dir.join(format!("s{s}.password")), password(s) + "\n")?;
        }
        let client_tls = (1..=o.supervisors)
            .map(|s| client(&format!("s{s}")))
            .collect::<Result<_, _>>()?;
        Ok(Site {
            dir,
            agents,
            supervisors: o.supervisors,
            client_tls,
            stranger_tls: client("stranger")?,
            plain_tls: client_config(&ca.cert, None)?,
        })
    }

    /// The number of teams.
    pub fn teams(&self) -> u32 {
        self.agents.div_ceil(TEAM_SIZE).max(1)
    }

    /// Supervisor `s` (1-based)'s team number.
    pub fn team_of(&self, s: u32) -> u32 {
        (s - 1) % self.teams() + 1
    }

    /// The agents of team `t`.
    pub fn team_agents(&self, t: u32) -> std::ops::Range<u32> {
        let first = 5001 + (t - 1) * TEAM_SIZE;
        first..(first + TEAM_SIZE).min(5001 + self.agents)
    }

    /// A capture of `calls` calls of `secs` s each, with `junk` malformed frames per second
    /// merged in (cached by its parameters).
    pub fn capture(
        &self,
        o: &Options,
        calls: u32,
        secs: u32,
        junk: u32,
    ) -> Result<PathBuf, BoxError> {
        let clean = o.dir.join(format!("calls-{calls}-{secs}.pcap"));
        if !clean.exists() {
            eprintln!("soak: generating {} ...", clean.display());
            let st = Command::new(&o.capgen)
                .args(["calls", "--calls", &calls.to_string()])
                .args(["--duration", &secs.to_string(), "--rtp-phase", "random"])
                .args(["--encap", "vlan:100", "--seed", "11", "-o"])
                .arg(&clean)
                .status()
                .map_err(|e| format!("{}: {e}", o.capgen.display()))?;
            if !st.success() {
                return Err(format!("capgen failed: {st}").into());
            }
        }
        if junk == 0 {
            return Ok(clean);
        }
        let mixed = o.dir.join(format!("calls-{calls}-{secs}-junk{junk}.pcap"));
        if !mixed.exists() {
            let junk_file = o.dir.join(format!("junk-{secs}-{junk}.pcap"));
            write_junk(&junk_file, secs, junk)?;
            let st = Command::new("mergecap")
                .arg("-w")
                .arg(&mixed)
                .arg(&clean)
                .arg(&junk_file)
                .status()?;
            if !st.success() {
                return Err(format!("mergecap failed: {st}").into());
            }
        }
        Ok(mixed)
    }

    /// Starts appliance `tag` of this site replaying `capture` in a loop.
    pub fn start(&self, o: &Options, tag: &str, capture: &Path) -> Result<App, BoxError> {
        self.start_with(
            o,
            tag,
            &["--replay", &capture.display().to_string(), "--loop"],
        )
    }

    /// Starts appliance `tag` of this site with the server arguments `extra`.
    pub fn start_with(&self, o: &Options, tag: &str, extra: &[&str]) -> Result<App, BoxError> {
        let control: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let monitor: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let path = self.dir.join(format!("silentmon-{tag}.toml"));
        std::fs::write(&path, self.config(tag, control, monitor, metrics)?)?;
        let log = self.dir.join(format!("server-{tag}.log"));
        let child = Command::new(&o.silentmon)
            .arg("server")
            .arg("--config")
            .arg(&path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("{}: {e}", o.silentmon.display()))?;
        let app = App {
            child,
            control,
            monitor,
            metrics,
            log,
        };
        app.wait_ready()?;
        Ok(app)
    }

    fn config(
        &self,
        tag: &str,
        control: SocketAddr,
        monitor: SocketAddr,
        metrics: SocketAddr,
    ) -> Result<String, BoxError> {
        let mut cfg = format!(
            "[control]\nlisten = \"{control}\"\nmetrics_listen = \"{metrics}\"\n\
             monitor_mode_password_hash = \"{mon}\"\n\
             [monitor]\nlisten = \"{monitor}\"\n\
             [security]\ncerts_dir = \"{certs}\"\naudit_log = \"{audit}\"\n",
            mon = silentmon::security::password::hash("monitor-pw")?,
            certs = self.dir.join("certs").display(),
            audit = self.dir.join(format!("audit-{tag}.jsonl")).display(),
        );
        for a in 0..self.agents {
            cfg += &format!(
                "[[agent]]\nid = \"{id}\"\nextension = \"{id}\"\nteam = \"t{t}\"\n",
                id = 5001 + a,
                t = a / TEAM_SIZE + 1
            );
        }
        for s in 1..=self.supervisors {
            cfg += &format!(
                "[[supervisor]]\nid = \"s{s}\"\nteams = [\"t{t}\"]\npassword_hash = \"{h}\"\n",
                t = self.team_of(s),
                h = silentmon::security::password::hash(&password(s))?
            );
        }
        Ok(cfg)
    }
}

/// Supervisor `s`'s password.
pub fn password(s: u32) -> String {
    format!("pw-s{s}-soak")
}

/// A running appliance; killed when dropped.
pub struct App {
    pub child: Child,
    pub control: SocketAddr,
    pub monitor: SocketAddr,
    pub metrics: SocketAddr,
    pub log: PathBuf,
}

impl App {
    fn wait_ready(&self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while scrape(self.metrics).is_err() {
            if Instant::now() > deadline {
                return Err(format!("no metrics; see {}", self.log.display()).into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A sample of the metrics page (0 when absent or unreachable).
    pub fn metric(&self, name: &str) -> f64 {
        scrape(self.metrics).map_or(0.0, |p| metric(&p, name))
    }

    /// RSS (KiB) and open descriptors of the process.
    pub fn resources(&self) -> (u64, usize) {
        let pid = self.child.id();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        (rss, fds)
    }

    pub fn tls_name(&self) -> &'static str {
        "localhost"
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pcap of malformed frames, `per_sec` per second over `secs` seconds: truncated Ethernet
/// and VLAN headers, IPv4 with lying lengths, UDP with a bad length, SIP without an end of
/// headers or with a lying Content-Length, RTP-sized garbage, random bytes.
fn write_junk(path: &Path, secs: u32, per_sec: u32) -> Result<(), BoxError> {
    // The pcap file header: magic, version 2.4, zone, sigfigs, snaplen, Ethernet.
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let base = 1_700_000_000u32;
    for i in 0..secs * per_sec {
        let t_us = (i as u64 * 1_000_000) / per_sec as u64;
        let frame = junk_frame(i, &mut next);
        out.extend_from_slice(&(base + (t_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Malformed frame number `i` (its kind cycles).
fn junk_frame(i: u32, next: &mut impl FnMut() -> u64) -> Vec<u8> {
    let eth = |ethertype: [u8; 2]| {
        let mut f = vec![2, 0, 10, 2, 0, 1, 2, 0, 10, 1, 0, 1];
        f.extend_from_slice(&ethertype);
        f
    };
    let udp = |payload: &[u8], udp_len: u16| {
        let mut f = eth([0x08, 0x00]);
        let total = (28 + payload.len()) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        f.extend_from_slice(&[10, 1, 0, 1, 10, 2, 0, 1, 0x13, 0xc4, 0x13, 0xc4]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    };
    match i % 8 {
        0 => eth([0x81, 0x00])[..13].to_vec(),
        1 => {
            let mut f = eth([0x08, 0x00]);
            f.extend_from_slice(&[0x45, 0, 0xff, 0xff, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1]);
            f
        }
        2 => udp(b"hello", 4000),
        3 => udp(b"INVITE sip:5001@10.2.0.1 SIP/2.0\r\nCall-ID: junk\r\n", 60),
        4 => {
            let m = b"INVITE sip:5001@x SIP/2.0\r\nCall-ID: j\r\nContent-Length: 9999\r\n\r\nv=0";
            udp(m, (8 + m.len()) as u16)
        }
        5 => {
            let mut p = vec![0x80, 0x00];
            p.extend((0..170).map(|_| next() as u8));
            udp(&p, (8 + p.len()) as u16)
        }
        6 => (0..(next() % 200) as usize).map(|_| next() as u8).collect(),
        _ => {
            let mut f = eth([0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0, 0xff, 0xff, 17, 64]);
            f
        }
    }
}

/// A control-plane session logged in as supervisor `s` (1-based).
pub async fn supervisor(app: &App, site: &Site, s: u32) -> Result<Client, BoxError> {
    let tls = Some((site.plain_tls.clone(), app.tls_name()));
    let mut c = Client::connect(&app.control.to_string(), tls).await?;
    let login = Frame::new("Login")
        .with("mode", "supervisor")
        .with("id", format!("s{s}"))
        .with("password", password(s));
    let r = c.request(&login, "LoginReply", |_| {}).await?;
    if r.str("result") != Some("ok") {
        return Err(format!("s{s}: login refused: {:?}", r.str("reason")).into());
    }
    Ok(c)
}

/// A granted monitor: its session key and its id (to stop exactly this one).
pub struct Granted {
    /// The session key for the monitor service.
    pub key: String,
    /// The monitor id.
    pub id: u64,
}

/// Starts a monitor of `agent` on session `c`.
pub async fn start_monitor(c: &mut Client, agent: u32) -> Result<Granted, BoxError> {
    let f = Frame::new("StartSilentMonitor").with("agent", agent.to_string());
    let r = c.request(&f, "StartSilentMonitorReply", |_| {}).await?;
    match (r.str("key"), r.u64("monitor")) {
        (Some(k), Some(id)) if r.str("result") == Some("ok") => Ok(Granted {
            key: k.to_owned(),
            id,
        }),
        _ => Err(format!("monitor of {agent} refused: {:?}", r.str("reason")).into()),
    }
}

/// Attaches to a monitor with supervisor `s`'s certificate.
pub async fn attach(app: &App, site: &Site, s: u32, key: &str) -> Result<MonitorClient, BoxError> {
    let tls = Some((site.client_tls[(s - 1) as usize].clone(), app.tls_name()));
    let mut m = MonitorClient::connect(&app.monitor.to_string(), tls).await?;
    m.attach(key).await?;
    Ok(m)
}

/// Media frames received on `m` until `until` (or an error).
pub async fn listen(m: &mut MonitorClient, until: tokio::time::Instant) -> u64 {
    let mut frames = 0;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(until) => return frames,
            ev = m.next_event() => ev,
        };
        match ev {
            Ok(Event::Media { rtp, .. }) => {
                frames += 1;
                m.recycle(rtp);
            }
            Ok(Event::Stopped { .. }) | Err(_) => return frames,
            Ok(_) => {}
        }
    }
}

/// Writes `bytes` on a fresh TLS connection to the control plane from local address `from`
/// (any 127.0.0.0/8 address), reads what comes back for up to 2 s, and returns the reasons of
/// the refusals it got.
pub async fn raw_control(
    app: &App,
    site: &Site,
    from: &str,
    bytes: &[u8],
) -> Result<Vec<String>, BoxError> {
    use tokio::io::AsyncReadExt;
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{from}:0").parse()?)?;
    let tcp = sock.connect(app.control).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = tokio_rustls::TlsConnector::from(site.plain_tls.clone())
        .connect(name, tcp)
        .await?;
    tls.write_all(bytes).await?;
    let mut buf = Vec::new();
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        while let Ok((f, n)) = silentmon::control::frame::parse(&buf, 1 << 20) {
            buf.drain(..n);
            if let Some(r) = f.str("reason") {
                reasons.push(r.to_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Ok(reasons),
        }
    }
}

/// Sorted quantiles as text.
pub fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (pct(&v, 0.5), pct(&v, 0.99))
}
