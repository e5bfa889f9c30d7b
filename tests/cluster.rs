//! The cluster on real processes, real TLS and real interfaces (root; CI runs it as root):
//! three appliances a, b and c, each in a network namespace of its own with its own SPAN veth
//! fed by tcpreplay of its own generated capture, point-to-point management links between the
//! namespaces (a-b, a-c, b-c), and supervisor endpoints attached to a only.
//!
//! Agents 5999-6002 are known everywhere (6002 in team green, the others blue); c's capture
//! has 6001 (agent tone 1000 Hz, caller 400 Hz) and 6002 (1010/410), b's has 5999, 6000 and
//! 6001 (1020/420). One test walks the issue's cases in order: a monitor of an agent only c
//! sees; two supervisors on one agent (one copy on the link); rights kept on the asking side;
//! the agent's next call on b; c killed and restarted; the a-c link cut and restored; peers
//! refused (another CA, an unlisted name, a supervisor's certificate).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::appliance::{eventually, Pki};
use common::audio::{capgen, dominant, Stereo};
use common::endpoint::{recordings, Endpoint};
use common::netns::{require_root, unique, veth, Netns};
use common::run_ok;

/// One appliance in its namespace.
struct Node {
    ns: Netns,
    name: String,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

const CONTROL: &str = "127.0.0.1:42028";

impl Node {
    fn path(&self) -> &str {
        &self.ns.name
    }

    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = self
            .ns
            .cmd(env!("CARGO_BIN_EXE_silentmon"))
            .args(["server", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually(Duration::from_secs(30), "the appliance to listen", || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(
                !text.contains("silentmon: error"),
                "{} did not start:\n{text}",
                self.name
            );
            text.contains("control plane on").then_some(())
        });
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `ctl --json ARGS` as `user` against this appliance, inside its namespace.
    fn ctl(&self, user: &str, args: &[&str]) -> Result<Value, String> {
        let out = self
            .ns
            .cmd(env!("CARGO_BIN_EXE_silentmon"))
            .args([
                "ctl",
                "--server",
                CONTROL,
                "--server-name",
                &self.name,
                "--ca",
            ])
            .arg(self.dir.join("ca.pem"))
            .args(["--user", user, "--json"])
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str(text.lines().next().unwrap_or("")).map_err(|e| e.to_string())
    }

    /// This appliance's view of peer `name`.
    fn peer(&self, name: &str) -> Value {
        let peers = self.ctl("s1", &["cluster"]).expect("ctl cluster");
        peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{} does not list {name}: {peers}", self.name))
    }

    fn up(&self, name: &str) -> bool {
        self.peer(name)["up"] == true
    }

    /// tcpreplay of `pcap` into the SPAN, in the background.
    fn replay(&self, pcap: &Path) -> Child {
        self.ns
            .cmd("tcpreplay")
            .args(["-q", "-i", "inj0"])
            .arg(pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Open descriptors and resident KiB of the appliance process.
    fn footprint(&self) -> (usize, u64) {
        let pid = self.pid();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        (fds, rss)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The management addresses: each pair of appliances on a /30 of its own.
const LINKS: [(usize, usize, &str, &str); 3] = [
    (0, 1, "10.80.1.1", "10.80.1.2"),
    (0, 2, "10.80.2.1", "10.80.2.2"),
    (1, 2, "10.80.3.1", "10.80.3.2"),
];
const NAMES: [&str; 3] = ["appliance-a", "appliance-b", "appliance-c"];

struct Cluster {
    dir: tempfile::TempDir,
    pki: Pki,
    nodes: Vec<Node>,
    /// The interface in a's namespace that carries the a-c link.
    a_to_c: String,
    /// The root namespace's end of the link to a (for the refusal cases) and a's address.
    root_link: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_link])
            .stderr(Stdio::null())
            .status();
    }
}

fn build() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "unused");
    let namespaces: Vec<Netns> = (0..3).map(|_| Netns::new("clu")).collect();
    for ns in &namespaces {
        ns.sh(&[
            "ip", "link", "add", "span0", "type", "veth", "peer", "name", "inj0",
        ]);
        ns.sh(&["ip", "link", "set", "span0", "up"]);
        ns.sh(&["ip", "link", "set", "inj0", "up"]);
    }
    let mut peers: Vec<Vec<(String, String)>> = vec![Vec::new(); 3];
    let mut a_to_c = String::new();
    for (x, y, ax, ay) in LINKS {
        let (ix, iy) = (unique("cx"), unique("cy"));
        veth(&namespaces[x], &ix, &namespaces[y], &iy);
        namespaces[x].sh(&["ip", "addr", "add", &format!("{ax}/30"), "dev", &ix]);
        namespaces[y].sh(&["ip", "addr", "add", &format!("{ay}/30"), "dev", &iy]);
        peers[x].push((NAMES[y].into(), format!("{ay}:42029")));
        peers[y].push((NAMES[x].into(), format!("{ax}:42029")));
        if (x, y) == (0, 2) {
            a_to_c = ix;
        }
    }
    // The root namespace reaches a's peer port (10.80.9.2) for the refusal cases.
    let (root_link, a_side) = (unique("cr"), unique("ca"));
    run_ok(Command::new("ip").args([
        "link", "add", &root_link, "type", "veth", "peer", "name", &a_side,
    ]));
    run_ok(Command::new("ip").args(["link", "set", &a_side, "netns", &namespaces[0].name]));
    run_ok(Command::new("ip").args(["addr", "add", "10.80.9.1/30", "dev", &root_link]));
    run_ok(Command::new("ip").args(["link", "set", &root_link, "up"]));
    namespaces[0].sh(&["ip", "addr", "add", "10.80.9.2/30", "dev", &a_side]);
    namespaces[0].sh(&["ip", "link", "set", &a_side, "up"]);
    let mut nodes = Vec::new();
    for (i, ns) in namespaces.into_iter().enumerate() {
        let certs = pki.appliance(NAMES[i]);
        let config = certs.join("silentmon.toml");
        std::fs::write(&config, config_text(NAMES[i], &peers[i], &certs)).unwrap();
        let log = dir.path().join(format!("{}.log", NAMES[i]));
        nodes.push(Node {
            ns,
            name: NAMES[i].into(),
            dir: certs,
            config,
            log,
            child: None,
        });
    }
    for n in &mut nodes {
        n.start();
    }
    Cluster {
        dir,
        pki,
        nodes,
        a_to_c,
        root_link,
    }
}

fn config_text(name: &str, peers: &[(String, String)], dir: &Path) -> String {
    let mut t = format!(
        "[capture]\ninterfaces = [\"span0\"]\n\
         [control]\nlisten = \"{CONTROL}\"\nmetrics_listen = \"127.0.0.1:9092\"\n\
         [monitor]\nlisten = \"127.0.0.1:42228\"\n\
         [cluster]\nname = \"{name}\"\nlisten = \"0.0.0.0:42029\"\n\
         heartbeat_interval_s = 1\nheartbeat_misses = 3\n"
    );
    for (peer, address) in peers {
        t += &format!("[[cluster.peer]]\nname = \"{peer}\"\naddress = \"{address}\"\n");
    }
    t += &format!(
        "[security]\ncerts_dir = \"{}\"\naudit_log = \"{}\"\npasswordless_logins = true\n",
        dir.display(),
        dir.join("audit.jsonl").display()
    );
    for (id, team) in [
        ("5999", "blue"),
        ("6000", "blue"),
        ("6001", "blue"),
        ("6002", "green"),
    ] {
        t += &format!("[[agent]]\nid = \"{id}\"\nextension = \"{id}\"\nteam = \"{team}\"\n");
    }
    for (id, team) in [("s1", "blue"), ("s2", "green"), ("s3", "blue")] {
        t += &format!("[[supervisor]]\nid = \"{id}\"\nteams = [\"{team}\"]\n");
    }
    t
}

/// `calls` calls of 8 s to agents from `base` on, untagged.
fn capture(dir: &Path, name: &str, calls: u32, base: u32) -> PathBuf {
    let out = dir.join(name);
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                &calls.to_string(),
                "--duration",
                "8",
                "--agent-base",
                &base.to_string(),
                "-o",
            ])
            .arg(&out),
    );
    out
}

/// The dominant agent (left) and caller (right) tones of a WAV, after its first 200 ms.
fn tones(wav: &Path) -> (f64, f64) {
    let a = Stereo::from_wav(wav);
    let end = (a.secs() - 0.2).min(3.0);
    let (l, r) = a.window(0.2, end);
    (dominant(l, a.rate, 5.0), dominant(r, a.rate, 5.0))
}

fn wait(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tcpreplay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds a finished WAV holds (None while its header is not final).
fn finished_secs(path: &Path) -> Option<f64> {
    let r = hound::WavReader::open(path).ok()?;
    let secs = f64::from(r.duration()) / f64::from(r.spec().sample_rate);
    (secs > 0.0).then_some(secs)
}

/// The endpoint's WAV of 6001 that is not among `seen`, once it is finished with at least
/// 5 s (file names sort by Call-ID, not by time: a replayed call has the same one).
fn new_wav(dir: &Path, seen: &[PathBuf]) -> PathBuf {
    eventually(Duration::from_secs(20), "the call's recording", || {
        recordings(dir, "6001")
            .into_iter()
            .find(|p| !seen.contains(p) && finished_secs(p).is_some_and(|s| s > 5.0))
    })
}

#[test]
fn a_supervisor_on_one_appliance_hears_agents_the_others_see() {
    if !require_root("a_supervisor_on_one_appliance_hears_agents_the_others_see") {
        return;
    }
    let mut cl = build();
    let (a, b, c) = (0, 1, 2);
    eventually(Duration::from_secs(20), "the links up", || {
        (cl.nodes[a].up(NAMES[b]) && cl.nodes[a].up(NAMES[c]) && cl.nodes[c].up(NAMES[a]))
            .then_some(())
    });
    let caps = cl.dir.path().to_owned();
    let on_c = capture(&caps, "c.pcap", 2, 6001);
    let on_b = capture(&caps, "b.pcap", 3, 5999);

    // 1 and 5: s1 and s3 on a monitor 6001, seen only by c.
    let rec = cl.dir.path().join("rec-s1");
    let on_a = (Some(cl.nodes[a].path()), NAMES[a]);
    let s1 = Endpoint::start_in(on_a, &cl.pki, cl.dir.path(), &[CONTROL], "s1", &[]);
    let s3 = Endpoint::start_in(on_a, &cl.pki, cl.dir.path(), &[CONTROL], "s3", &[]);
    for e in [&s1, &s3] {
        let out = e.ctl(&["monitor", "6001"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // 7: blue's supervisor cannot reach green's agent on c through the link.
    let refused = cl.nodes[a].ctl("s1", &["monitor", "6002", "--for", "1s"]);
    assert!(refused.is_err_and(|e| e.contains("not in your teams")));
    let mut replay = cl.nodes[c].replay(&on_c);
    let listed = eventually(Duration::from_secs(10), "c's call in a's list", || {
        let calls = cl.nodes[a].ctl("s1", &["calls"]).ok()?;
        let calls = calls.as_array()?.clone();
        calls
            .iter()
            .any(|x| x["agent_id"] == "6001" && x["appliance"] == NAMES[c])
            .then_some(calls)
    });
    assert!(
        !listed.iter().any(|x| x["agent_id"] == "6002"),
        "s1 sees green's calls: {listed:?}"
    );
    wait(&mut replay, Duration::from_secs(30));
    let wav1 = new_wav(&rec, &[]);
    let status = s1.status().unwrap();
    let (agent, caller) = tones(&wav1);
    assert!(
        (agent - 1000.0).abs() < 6.0 && (caller - 400.0).abs() < 6.0,
        "{agent} {caller}; {status}"
    );
    let heard = status["packets"].as_u64().unwrap();
    assert!(heard > 600, "{status}");
    // One copy on the a-c link for two listeners.
    let media_in = cl.nodes[a].peer(NAMES[c])["media_in"].as_u64().unwrap();
    let ratio = media_in as f64 / heard as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "link {media_in} frames, endpoint {heard}"
    );
    let subscribed: Vec<Value> = cl.nodes[c]
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "peer_subscribed")
        .collect();
    assert!(
        subscribed
            .iter()
            .all(|e| e["agent"] == "6001" && e["appliance"] == NAMES[a]),
        "{subscribed:?}"
    );
    let named: Vec<&str> = subscribed
        .iter()
        .flat_map(|e| {
            e["supervisors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
        })
        .collect();
    assert!(named.contains(&"s1") && named.contains(&"s3"), "{named:?}");
    drop(s3);

    // 2: 6001's next call is on b: the same monitor records it, without a command.
    let mut replay = cl.nodes[b].replay(&on_b);
    eventually(Duration::from_secs(10), "the call on b", || {
        (s1.status().ok()?["appliance"] == NAMES[b]).then_some(())
    });
    wait(&mut replay, Duration::from_secs(30));
    let wav2 = new_wav(&rec, std::slice::from_ref(&wav1));
    let (agent, caller) = tones(&wav2);
    assert!(
        (agent - 1020.0).abs() < 6.0 && (caller - 420.0).abs() < 6.0,
        "{agent} {caller}"
    );

    // 3: c is killed during a monitored call: told within 3 s; back, the monitor resumes.
    let mut replay = cl.nodes[c].replay(&on_c);
    eventually(Duration::from_secs(10), "the call on c", || {
        let s = s1.status().ok()?;
        (s["appliance"] == NAMES[c]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    cl.nodes[c].kill();
    let reason = eventually(Duration::from_secs(5), "the interruption", || {
        s1.status().ok()?["interrupted"].as_str().map(str::to_owned)
    });
    let told = killed.elapsed();
    assert!(
        told < Duration::from_secs(3),
        "told after {told:?}: {reason}"
    );
    assert!(reason.contains(NAMES[c]), "{reason}");
    let _ = replay.kill();
    let _ = replay.wait();
    cl.nodes[c].start();
    eventually(Duration::from_secs(15), "c back in a's view", || {
        cl.nodes[a].up(NAMES[c]).then_some(())
    });
    let before = recordings(&rec, "6001");
    let mut replay = cl.nodes[c].replay(&on_c);
    wait(&mut replay, Duration::from_secs(30));
    let wav3 = new_wav(&rec, &before);
    let (agent, caller) = tones(&wav3);
    assert!(
        (agent - 1000.0).abs() < 6.0 && (caller - 400.0).abs() < 6.0,
        "{agent} {caller}"
    );
    assert!(s1.status().unwrap()["interrupted"].is_null());

    // 4: the a-c link cut and restored: detected, healed, nothing leaks.
    let footprint = cl.nodes[a].footprint();
    cl.nodes[a]
        .ns
        .sh(&["ip", "link", "set", &cl.a_to_c, "down"]);
    let cut = Instant::now();
    eventually(Duration::from_secs(6), "the cut seen", || {
        (!cl.nodes[a].up(NAMES[c])).then_some(())
    });
    assert!(
        cut.elapsed() < Duration::from_secs(5),
        "{:?}",
        cut.elapsed()
    );
    cl.nodes[a].ns.sh(&["ip", "link", "set", &cl.a_to_c, "up"]);
    eventually(Duration::from_secs(15), "the link healed", || {
        cl.nodes[a].up(NAMES[c]).then_some(())
    });
    let after = eventually(Duration::from_secs(10), "descriptors back", || {
        let f = cl.nodes[a].footprint();
        (f.0 <= footprint.0).then_some(f)
    });
    assert!(
        after.1 < footprint.1 + 4096,
        "RSS {footprint:?} -> {after:?}"
    );

    // 6: refusals at a's peer port, from the root namespace.
    refusals(&cl);
    drop(s1);
}

/// A peer with another CA's certificate, one with an unlisted name, and a supervisor's
/// certificate: none gets a `Welcome`; the last two are audited.
fn refusals(cl: &Cluster) {
    use silentmon::net::dial;
    use silentmon::security::tls::client_config;
    let other = Pki::new(&cl.dir.path().join("other-ca"), "x");
    let ca = std::fs::read_to_string(cl.pki.ca()).unwrap();
    let stranger = cl.pki.appliance("appliance-x");
    let (sup_pem, sup_key) = cl.pki.client("s2");
    let other_dir = other.appliance("appliance-b");
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let identities = [
        (
            read(other_dir.join("server.pem")),
            read(other_dir.join("server.key")),
        ),
        (
            read(stranger.join("server.pem")),
            read(stranger.join("server.key")),
        ),
        (read(sup_pem), read(sup_key)),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (cert, key) in &identities {
        let tls = client_config(&ca, Some((cert, key))).unwrap();
        let welcomed = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(mut s) = dial(
                "10.80.9.2:42029",
                Some((tls, NAMES[0])),
                Duration::from_secs(5),
            )
            .await
            else {
                return false;
            };
            let hello = silentmon::peer::wire::PeerMsg::Hello {
                name: "appliance-b".into(),
                version: silentmon::peer::wire::VERSION,
            };
            let _ = s.write_all(&hello.to_bytes().unwrap()).await;
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            matches!(n, Ok(Ok(n)) if n > 0)
        });
        assert!(!welcomed, "a peer that must be refused was answered");
    }
    let refused: Vec<Value> = cl.nodes[0]
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "peer_refused")
        .collect();
    assert!(
        refused.iter().any(|e| e["certificate"] == "appliance-x"),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|e| e["certificate"] == "s2"
            && e["reason"].as_str().unwrap().contains("not an appliance")),
        "{refused:?}"
    );
}
