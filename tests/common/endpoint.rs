//! Running the real supervisor endpoint in tests: `silentmon supervisor` as a child process
//! with a client certificate of the tests' PKI, driven through its local control (`ctl
//! --endpoint`), stopped with SIGTERM so its recordings are finalised.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::appliance::{eventually, free_port, Pki};
use super::silentmon;

/// A running `silentmon supervisor`.
pub struct Endpoint {
    pub child: Option<Child>,
    pub local: String,
    pub log: PathBuf,
    /// The network namespace it runs in (None: this one).
    pub netns: Option<String>,
}

/// `silentmon`, in network namespace `netns` when given.
fn silentmon_in(netns: Option<&str>) -> Command {
    match netns {
        None => silentmon(),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns])
                .arg(env!("CARGO_BIN_EXE_silentmon"));
            c
        }
    }
}

impl Endpoint {
    /// `silentmon supervisor` as `user` (a client certificate from `pki`) against `servers`,
    /// recording into `dir`/rec-USER (stereo), logging to `dir`/USER.log, with `extra` flags;
    /// returns once its local control answers.
    pub fn start(pki: &Pki, dir: &Path, servers: &[&str], user: &str, extra: &[&str]) -> Endpoint {
        Endpoint::start_in((None, "localhost"), pki, dir, servers, user, extra)
    }

    /// [`Endpoint::start`] inside network namespace `netns` (its local control there too),
    /// checking the appliances' certificates for `server_name`.
    pub fn start_in(
        (netns, server_name): (Option<&str>, &str),
        pki: &Pki,
        dir: &Path,
        servers: &[&str],
        user: &str,
        extra: &[&str],
    ) -> Endpoint {
        let (cert, key) = pki.client(user);
        let local = format!("127.0.0.1:{}", free_port());
        let record = dir.join(format!("rec-{user}"));
        let log = dir.join(format!("{user}.log"));
        let child = silentmon_in(netns)
            .arg("supervisor")
            .args(servers.iter().flat_map(|s| ["--server", s]))
            .args(["--server-name", server_name, "--user", user])
            .arg("--ca")
            .arg(pki.ca())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--listen", &local, "--stereo"])
            .arg("--record")
            .arg(&record)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let e = Endpoint {
            child: Some(child),
            local,
            log,
            netns: netns.map(str::to_owned),
        };
        eventually(
            Duration::from_secs(20),
            "the endpoint's local control",
            || e.status().ok(),
        );
        e
    }

    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        silentmon_in(self.netns.as_deref())
            .args(["ctl", "--endpoint", &self.local, "--json"])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn status(&self) -> Result<Value, String> {
        let out = self.ctl(&["status"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: recordings are finalised.
    pub fn stop(mut self) -> String {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "supervisor exited {status}: {}",
            self.log_text()
        );
        self.log_text()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The WAV files an endpoint recorded for `agent`.
pub fn recordings(dir: &Path, agent: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{agent}_")) && n.ends_with(".wav"))
    });
    v.sort();
    v
}

/// The stereo recordings of `agent` in `dir`, oldest first.
pub fn stereo_recordings(dir: &Path, agent: &str) -> Vec<super::audio::Stereo> {
    recordings(dir, agent)
        .iter()
        .map(|w| super::audio::Stereo::from_wav(w))
        .collect()
}
