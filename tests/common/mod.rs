//! Shared helpers of the black-box tests: paths, running the built binary, and running tshark
//! as the reference. A missing tshark fails the test (tools/test.sh installs it).
#![allow(dead_code)]

pub mod appliance;
pub mod audio;
pub mod browser;
pub mod endpoint;
pub mod lab;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The third-party captures (../shared/testdata/public, or $SILENTMON_PUBLIC_TESTDATA).
pub fn public_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SILENTMON_PUBLIC_TESTDATA") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/public")
}

/// A third-party capture by file name; panics with a clear message if it is missing.
pub fn public(name: &str) -> PathBuf {
    let p = public_dir().join(name);
    assert!(p.exists(), "missing public capture {}", p.display());
    p
}

/// The project's own testdata directory.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The built `silentmon` binary.
pub fn silentmon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_silentmon"))
}

/// Runs a command and returns its output, panicking with stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One row of `tshark -q -z rtp,streams`.
#[derive(Clone, Debug, PartialEq)]
pub struct TsharkStream {
    pub src: String,
    pub dst: String,
    pub ssrc: u32,
    pub payload: String,
    pub packets: u64,
    pub lost: i64,
    pub min_delta_ms: f64,
    pub mean_delta_ms: f64,
    pub max_delta_ms: f64,
    pub min_jitter_ms: f64,
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub problem: bool,
}

/// Runs `tshark -n -q -z rtp,streams` (with the RTP heuristic when `heuristic`) and parses it.
pub fn tshark_rtp_streams(file: &Path, heuristic: bool) -> Vec<TsharkStream> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    if heuristic {
        cmd.args(["-o", "rtp.heuristic_rtp:TRUE"]);
    }
    cmd.args(["-q", "-z", "rtp,streams"]);
    let out = cmd
        .output()
        .expect("tshark is required for this test (tools/install-deps.sh --test installs it)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_tshark_rtp_streams(&String::from_utf8_lossy(&out.stdout))
}

/// Parses tshark 4.0's rtp,streams table. Columns are whitespace separated; the payload column
/// may contain ", " between names, so rows are parsed from both ends.
pub fn parse_tshark_rtp_streams(text: &str) -> Vec<TsharkStream> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let t = line.trim_end();
        if t.is_empty() || t.starts_with('=') || t.trim_start().starts_with("Start time") {
            continue;
        }
        let mut tok: Vec<&str> = t.split_whitespace().collect();
        let problem = tok.last() == Some(&"X");
        if problem {
            tok.pop();
        }
        // Tail: pkts lost (pct) mind meand maxd minj meanj maxj  => 9 tokens.
        assert!(tok.len() >= 16, "unexpected tshark row: {line}");
        let n = tok.len();
        let f = |i: usize| {
            tok[i]
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad number in {line}"))
        };
        let head = &tok[..7];
        let payload = tok[7..n - 9].join(" ");
        rows.push(TsharkStream {
            src: socket_text(head[2], head[3]),
            dst: socket_text(head[4], head[5]),
            ssrc: u32::from_str_radix(head[6].trim_start_matches("0x"), 16).unwrap(),
            payload,
            packets: tok[n - 9].parse().unwrap(),
            lost: tok[n - 8].parse().unwrap(),
            min_delta_ms: f(n - 6),
            mean_delta_ms: f(n - 5),
            max_delta_ms: f(n - 4),
            min_jitter_ms: f(n - 3),
            mean_jitter_ms: f(n - 2),
            max_jitter_ms: f(n - 1),
            problem,
        });
    }
    rows
}

/// "ip:port" as Rust's `SocketAddr` prints it (IPv6 in brackets).
fn socket_text(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The sample frames with their 802.1Q tags removed by tcprewrite: what a tag-stripping driver
/// would deliver.
pub fn strip_tags_with_tcprewrite(input: &Path, output: &Path) {
    run_ok(
        Command::new("tcprewrite")
            .arg("--enet-vlan=del")
            .arg("--infile")
            .arg(input)
            .arg("--outfile")
            .arg(output),
    );
}

/// A counter of `silentmon flows --json` output by name.
pub fn flows_counter(v: &serde_json::Value, name: &str) -> u64 {
    v["counters"]
        .as_array()
        .expect("flows --json has counters")
        .iter()
        .find(|c| c[0] == name)
        .and_then(|c| c[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// `silentmon flows --json -r FILE`, parsed.
pub fn flows_json(pcap: &Path) -> serde_json::Value {
    let out = run_ok(silentmon().args(["flows", "--json", "-r"]).arg(pcap));
    serde_json::from_slice(&out.stdout).expect("flows --json is JSON")
}
