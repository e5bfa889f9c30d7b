//! Running the real appliance in tests: a private CA made with `silentmon certs` (the same
//! three steps an operator runs), free loopback ports, `silentmon server` as a child process
//! stopped with SIGTERM on drop, `silentmon ctl`, and the metrics endpoint read over HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{run_ok, silentmon};

/// A CA with a server certificate (`server.pem`/`server.key`) and client certificates.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// `certs ca`, then a server certificate for `server_name` in `dir`.
    pub fn new(dir: &Path, server_name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        // The tests' CA keys stay unencrypted (tests/certs_cli.rs covers the password).
        run_ok(
            silentmon()
                .args(["certs", "ca", "--no-password", "--out"])
                .arg(dir),
        );
        let (pem, key) = sign(dir, server_name, "--server");
        std::fs::rename(pem, dir.join("server.pem")).unwrap();
        std::fs::rename(key, dir.join("server.key")).unwrap();
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// A client certificate and key for `name` (supervisor endpoints).
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        sign(&self.dir, name, "--client")
    }

    /// A cluster appliance's certificate (server and client usage) and key for `name`, in a
    /// directory of its own holding `ca.pem`, `server.pem` and `server.key`.
    pub fn appliance(&self, name: &str) -> PathBuf {
        let (pem, key) = sign(&self.dir, name, "--peer");
        let dir = self.dir.join(format!("appliance-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca(), dir.join("ca.pem")).unwrap();
        std::fs::copy(pem, dir.join("server.pem")).unwrap();
        std::fs::copy(key, dir.join("server.key")).unwrap();
        dir
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

fn sign(dir: &Path, name: &str, role: &str) -> (PathBuf, PathBuf) {
    run_ok(
        silentmon()
            .args(["certs", "request", "--name", name, "--out"])
            .arg(dir),
    );
    let pem = dir.join(format!("{name}.pem"));
    run_ok(
        silentmon()
            .args(["certs", "sign", role, "--request"])
            .arg(dir.join(format!("{name}.csr")))
            .arg("--ca-dir")
            .arg(dir)
            .arg("-o")
            .arg(&pem),
    );
    (pem, dir.join(format!("{name}.key")))
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `silentmon server`; SIGTERM and wait on drop.
pub struct Appliance {
    pub child: Option<Child>,
    pub metrics: SocketAddr,
    pub log: PathBuf,
}

impl Appliance {
    /// Starts `cmd` (a `silentmon server ...` command line) with stderr to `log`, and waits
    /// until its metrics endpoint answers.
    pub fn start(mut cmd: Command, metrics: SocketAddr, log: &Path) -> Appliance {
        let file = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting silentmon server");
        let mut a = Appliance {
            child: Some(child),
            metrics,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if fetch_metrics(metrics).is_some() {
                return a;
            }
            if let Some(status) = a.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("silentmon server exited ({status}):\n{}", a.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the appliance's metrics never answered:\n{}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics text (panics when the endpoint does not answer).
    pub fn metrics_text(&self) -> String {
        fetch_metrics(self.metrics).expect("metrics endpoint answers")
    }

    /// One sample's value (`name` with its labels, as printed).
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics_text(), name)
            .unwrap_or_else(|| panic!("no metric {name} in\n{}", self.metrics_text()))
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status and the log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let status = terminate(&mut child);
        (status, self.log_text())
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

/// GET /metrics, or None when nothing answers.
pub fn fetch_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The value of the sample line starting with `name ` in exposition `text`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `f` until it returns Some, or panics after `limit` saying `what`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `silentmon ctl` with `args`; returns its output whatever the exit status.
pub fn ctl(base: &[&str], args: &[&str]) -> Output {
    silentmon()
        .arg("ctl")
        .args(base)
        .args(args)
        .output()
        .expect("running silentmon ctl")
}

/// `ctl ... --json` that must succeed, parsed.
pub fn ctl_json(base: &[&str], args: &[&str]) -> serde_json::Value {
    let out = ctl(base, &[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("ctl {args:?} printed no JSON ({e}): {text}"))
}

/// Who the appliance knows: agents (id = extension, team) and supervisors (id, teams).
pub struct Roster<'a> {
    pub agents: &'a [(&'a str, &'a str)],
    pub supervisors: &'a [(&'a str, &'a [&'a str])],
}

/// A replaying appliance: its control plane and monitor service addresses.
pub struct Replaying {
    pub control: String,
    pub monitor: String,
    pub app: Appliance,
}

/// `silentmon server` (configuration `tag` in `dir`, TLS from `pki`, audit trail
/// `dir`/audit[-TAG].jsonl) knowing `roster`, replaying `capture` at `speed` (again and again
/// when `looped`), on free loopback ports.
pub fn start_replaying(
    dir: &Path,
    pki: &Pki,
    tag: &str,
    roster: &Roster<'_>,
    capture: &Path,
    replay: (&str, bool),
) -> Replaying {
    start_replaying_with(dir, pki, tag, roster, capture, replay, "")
}

/// [`start_replaying`] with `extra` TOML tables at the end of the configuration.
pub fn start_replaying_with(
    dir: &Path,
    pki: &Pki,
    tag: &str,
    roster: &Roster<'_>,
    capture: &Path,
    (speed, looped): (&str, bool),
    extra: &str,
) -> Replaying {
    let mut people = String::new();
    for (id, team) in roster.agents {
        people += &format!("[[agent]]\nid = \"{id}\"\nextension = \"{id}\"\nteam = \"{team}\"\n");
    }
    for (id, teams) in roster.supervisors {
        people += &format!("[[supervisor]]\nid = \"{id}\"\nteams = {teams:?}\n");
    }
    start_replaying_people(
        dir,
        pki,
        tag,
        (&people, ""),
        capture,
        (speed, looped),
        extra,
    )
}

/// [`start_replaying_with`] for people a [`Roster`] cannot describe: `people` is their
/// `[[agent]]` / `[[supervisor]]` TOML, `monitor_keys` more keys of the `[monitor]` table.
pub fn start_replaying_people(
    dir: &Path,
    pki: &Pki,
    tag: &str,
    (people, monitor_keys): (&str, &str),
    capture: &Path,
    (speed, looped): (&str, bool),
    extra: &str,
) -> Replaying {
    let control = format!("127.0.0.1:{}", free_port());
    let monitor = format!("127.0.0.1:{}", free_port());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let audit = if tag == "a" {
        "audit.jsonl".to_owned()
    } else {
        format!("audit-{tag}.jsonl")
    };
    let config = dir.join(format!("silentmon-{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"{control}\"\nmetrics_listen = \"{metrics}\"\n\
             [monitor]\nlisten = \"{monitor}\"\n{monitor_keys}\
             [security]\ncerts_dir = \"{certs}\"\naudit_log = \"{audit}\"\n\
             passwordless_logins = true\n{people}{extra}",
            certs = pki.dir.display(),
            audit = dir.join(audit).display(),
        ),
    )
    .unwrap();
    let mut cmd = super::silentmon();
    cmd.arg("server")
        .arg("--config")
        .arg(&config)
        .arg("--replay")
        .arg(capture)
        .args(["--speed", speed]);
    if looped {
        cmd.arg("--loop");
    }
    let app = Appliance::start(cmd, metrics, &dir.join(format!("server-{tag}.log")));
    Replaying {
        control,
        monitor,
        app,
    }
}

/// Waits (up to 40 s) until a non-looping replay has ended, then a second for the last frames.
pub fn wait_replay_end(r: &Replaying) {
    eventually(Duration::from_secs(40), "the replay's end", || {
        (r.app.metric("silentmon_capture_inputs") == 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
}
