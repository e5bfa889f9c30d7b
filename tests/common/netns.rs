//! Network namespaces and veth pairs for tests that need real interfaces. Root only: in CI
//! (`CI` set) a missing privilege fails the test; elsewhere the test says so and returns.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// True when the test may create namespaces. Panics in CI when it may not.
pub fn require_root(test: &str) -> bool {
    // SAFETY-free check: /proc/self/status Uid line.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid == "0" {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root (network namespaces) and CI must run it as root");
    }
    eprintln!("{test}: not root, not run (CI runs it as root)");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique suffix for names (interface names are limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 10000)
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        sh(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        Netns { name }
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` inside the namespace, panicking on failure.
    pub fn sh(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// The MAC address of `iface` in this namespace.
    pub fn mac(&self, iface: &str) -> String {
        let out = self
            .cmd("cat")
            .arg(format!("/sys/class/net/{iface}/address"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a veth pair `a` (in `ns_a`) <-> `b` (in `ns_b`), both up.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    sh(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
    sh(&["ip", "link", "set", a, "netns", &ns_a.name]);
    sh(&["ip", "link", "set", b, "netns", &ns_b.name]);
    ns_a.sh(&["ip", "link", "set", a, "up"]);
    ns_b.sh(&["ip", "link", "set", b, "up"]);
}

/// Kills a background child on drop.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Netns {
    /// Waits (up to 20 s) until a packet socket is open in the namespace: a listener is ready.
    pub fn wait_for_packet_socket(&self) {
        for _ in 0..400 {
            let out = self.cmd("cat").arg("/proc/net/packet").output().unwrap();
            if String::from_utf8_lossy(&out.stdout).lines().count() > 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no packet socket appeared in {}", self.name);
    }
}
