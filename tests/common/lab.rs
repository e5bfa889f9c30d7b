//! A SPAN lab in network namespaces: a switch (Linux bridge) with a voice gateway and an agent
//! phone on two ports, every frame the bridge receives mirrored (tc ingress + mirred) to a SPAN
//! port whose peer is the appliance's capture NIC, real SIP user agents (baresip) for calls, and
//! tcpreplay into a third bridge port for captured (tagged) traffic. Root only; see
//! docs/LAB-HARNESS.md for the topology and `netns::require_root` for the CI rule.
//!
//! Everything is torn down on drop, also when the test panics: the processes started in the
//! lab's namespaces are killed (by pid, from `ip netns pids`), then the namespaces are deleted,
//! which removes every veth, the bridge and the root-side management interface.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::{sh, Netns};

/// Where the lab's address slots are claimed (one lock file per N, holding the owner's pid).
const SLOT_DIR: &str = "/run/silentmon-lab";

/// The namespaces of a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// The switch: bridge `br0`, ports `p-gw`, `p-ph`, `p-rp`, the SPAN port `span`, and `rp0`
    /// (the replay NIC, the other end of `p-rp`).
    Switch,
    /// The voice gateway, `eth0` 10.77.N.1/24.
    Gw,
    /// The agent's phone (extension 5001), `eth0` 10.77.N.2/24.
    Phone,
    /// The appliance: `span0` (SPAN NIC, no address) and `mgmt0` 10.78.N.2/24.
    Appl,
}

/// The G.711 law both user agents offer and answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    fn sdp_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The payload name `silentmon flows` and tshark print.
    pub fn payload_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "g711U",
            Codec::Pcma => "g711A",
        }
    }
}

/// What a user agent sends.
#[derive(Clone, Debug)]
pub enum Audio {
    /// A sine tone at this frequency (Hz), amplitude 0.5.
    Tone(f64),
    /// Speech by espeak-ng.
    Speech(String),
    /// Any sound file sox can read; converted to 8 kHz mono 16 bit.
    Wav(PathBuf),
}

/// One call from the gateway to the agent's phone.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// From "Call established" to the gateway's BYE.
    pub duration: Duration,
    pub codec: Codec,
    /// The user part of the Request-URI (the agent's extension).
    pub extension: String,
    /// The gateway's SIP user (From).
    pub caller: String,
    pub gw_audio: Audio,
    pub phone_audio: Audio,
    /// Put the call on hold (re-INVITE a=sendonly from the gateway) at this offset after the
    /// call is established, resume after the given length.
    pub hold: Option<(Duration, Duration)>,
}

impl CallSpec {
    /// A PCMU call of `duration` to 5001, caller tone 400 Hz, agent tone 1000 Hz, no hold.
    pub fn new(duration: Duration) -> CallSpec {
        CallSpec {
            duration,
            codec: Codec::Pcmu,
            extension: "5001".into(),
            caller: "4930555000".into(),
            gw_audio: Audio::Tone(400.0),
            phone_audio: Audio::Tone(1000.0),
            hold: None,
        }
    }

    pub fn codec(mut self, codec: Codec) -> CallSpec {
        self.codec = codec;
        self
    }

    pub fn hold(mut self, at: Duration, length: Duration) -> CallSpec {
        self.hold = Some((at, length));
        self
    }

    pub fn audio(mut self, gw: Audio, phone: Audio) -> CallSpec {
        self.gw_audio = gw;
        self.phone_audio = phone;
        self
    }
}

/// What happened during a call, as the user agents reported it.
#[derive(Debug)]
pub struct CallReport {
    pub spec: CallSpec,
    /// From sending `/dial` to both UAs printing "Call established".
    pub setup: Duration,
    /// From "Call established" (the later of both UAs) to both UAs printing "terminated".
    pub talk: Duration,
    /// When both UAs had printed "Call established" (`talk` runs from here).
    pub established_at: Instant,
    /// When the gateway sent `/hold` and `/resume` (calls with a hold).
    pub hold_at: Option<(Instant, Instant)>,
    /// When both UAs had printed "terminated".
    pub ended_at: Instant,
    pub gw_log: String,
    pub phone_log: String,
}

/// tcpreplay's pace.
#[derive(Clone, Copy, Debug)]
pub enum Speed {
    /// Packets per second.
    Pps(u32),
    /// Times the capture's own speed (1.0 = as captured).
    Multiplier(f64),
    /// As fast as possible.
    Topspeed,
}

/// tcpreplay's own account of a replay.
#[derive(Debug)]
pub struct ReplayStats {
    pub sent: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// tcpdump's own account of a capture.
#[derive(Debug)]
pub struct CaptureStats {
    pub captured: u64,
    pub dropped_by_kernel: u64,
}

/// The lab. Field order matters: namespaces are deleted (fields dropped) after `Drop::drop` has
/// killed the processes inside them; the slot is released last.
pub struct Lab {
    /// The lab's number: addresses 10.77.N.0/24 (inside) and 10.78.N.0/24 (management).
    pub n: u8,
    sw: Netns,
    gw: Netns,
    phone: Netns,
    appl: Netns,
    mgmt_root_if: String,
    dir: tempfile::TempDir,
    calls: Mutex<u32>,
    _slot: Slot,
}

impl Lab {
    /// Builds the whole lab. `prefix` (a few letters) starts every namespace name, so a leftover
    /// tells which test made it; two labs never share a name or an address plan.
    pub fn new(prefix: &str) -> Lab {
        let slot = Slot::claim();
        let n = slot.n;
        let sw = Netns::new(&format!("{prefix}sw"));
        let gw = Netns::new(&format!("{prefix}gw"));
        let phone = Netns::new(&format!("{prefix}ph"));
        let appl = Netns::new(&format!("{prefix}ap"));
        let mgmt_root_if = format!("smlab{n}");
        let lab = Lab {
            n,
            sw,
            gw,
            phone,
            appl,
            mgmt_root_if,
            dir: tempfile::tempdir().unwrap(),
            calls: Mutex::new(0),
            _slot: slot,
        };
        lab.build();
        lab
    }

    fn build(&self) {
        let n = self.n;
        // No IPv6: no router solicitations, MLD or DAD probes on the SPAN.
        for ns in [&self.sw, &self.gw, &self.phone, &self.appl] {
            ns.sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.sh(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        let sw = &self.sw;
        sw.sh(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        sw.sh(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        sw.sh(&["ip", "link", "set", "br0", "up"]);
        // Host ports, the replay port and the SPAN port, each created with both ends already in
        // their namespaces (no name clash in the root namespace).
        veth_between(&self.gw, "eth0", sw, "p-gw");
        veth_between(&self.phone, "eth0", sw, "p-ph");
        veth_between(sw, "rp0", sw, "p-rp");
        veth_between(sw, "span", &self.appl, "span0");
        for port in ["p-gw", "p-ph", "p-rp"] {
            sw.sh(&["ip", "link", "set", port, "master", "br0"]);
            sw.sh(&["ip", "link", "set", port, "up"]);
            // The SPAN: everything the bridge receives on this port, copied to `span`.
            sw.sh(&["tc", "qdisc", "add", "dev", port, "ingress"]);
            sw.sh(&[
                "tc", "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all", "u32",
                "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "span",
            ]);
        }
        for ns in [&self.gw, &self.phone] {
            ns.sh(&["ip", "link", "set", "eth0", "up"]);
        }
        self.gw.sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{n}.1/24"),
            "dev",
            "eth0",
        ]);
        self.phone.sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{n}.2/24"),
            "dev",
            "eth0",
        ]);
        sw.sh(&["ip", "link", "set", "rp0", "up"]);
        sw.sh(&["ip", "link", "set", "span", "up"]);
        self.appl.sh(&["ip", "link", "set", "span0", "up"]);
        // Management: root namespace <-> appl, outside the bridge (never on the SPAN).
        let root_if = &self.mgmt_root_if;
        sh(&[
            "ip",
            "link",
            "add",
            root_if,
            "type",
            "veth",
            "peer",
            "name",
            "mgmt0",
            "netns",
            &self.appl.name,
        ]);
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{root_if}/disable_ipv6"),
            "1",
        );
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.78.{n}.1/24"),
            "dev",
            root_if,
        ]);
        sh(&["ip", "link", "set", root_if, "up"]);
        self.appl.sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.78.{n}.2/24"),
            "dev",
            "mgmt0",
        ]);
        self.appl.sh(&["ip", "link", "set", "mgmt0", "up"]);
    }

    /// The network namespace behind `ns`.
    pub fn netns(&self, ns: Ns) -> &Netns {
        match ns {
            Ns::Switch => &self.sw,
            Ns::Gw => &self.gw,
            Ns::Phone => &self.phone,
            Ns::Appl => &self.appl,
        }
    }

    /// The appliance's namespace name (for `ip netns exec`).
    pub fn appl_ns(&self) -> &str {
        &self.appl.name
    }

    /// The SPAN NIC's name inside the appliance's namespace.
    pub fn span_iface(&self) -> &str {
        "span0"
    }

    /// The gateway's address.
    pub fn gw_ip(&self) -> String {
        format!("10.77.{}.1", self.n)
    }

    /// The phone's address.
    pub fn phone_ip(&self) -> String {
        format!("10.77.{}.2", self.n)
    }

    /// The root namespace's end of the management link.
    pub fn mgmt_root_ip(&self) -> String {
        format!("10.78.{}.1", self.n)
    }

    /// The appliance's management address: a server in `appl` bound here (or to 0.0.0.0) is
    /// reachable from the test process over TCP.
    pub fn mgmt_appl_ip(&self) -> String {
        format!("10.78.{}.2", self.n)
    }

    /// The lab's scratch directory (configs, audio, logs); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command to run inside `ns`.
    pub fn cmd_in(&self, ns: Ns, program: &str) -> Command {
        self.netns(ns).cmd(program)
    }

    /// Runs `args` inside `ns`; panics with its output when it fails.
    pub fn exec_in(&self, ns: Ns, args: &[&str]) -> Output {
        let out = self
            .cmd_in(ns, args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns:?}: {e}"));
        assert!(
            out.status.success(),
            "{args:?} in {ns:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `args` inside `ns` in the background, output discarded; killed when the returned
    /// handle is dropped (and in any case when the lab is dropped).
    pub fn spawn_in(&self, ns: Ns, args: &[&str]) -> super::netns::Background {
        let child = self
            .cmd_in(ns, args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {ns:?}: {e}"));
        super::netns::Background(child)
    }

    /// Starts `tcpdump -i span0 -w FILE` in the appliance's namespace and returns when its
    /// capture is open.
    pub fn capture_span(&self, file: &Path) -> SpanCapture {
        let mut child = self
            .cmd_in(Ns::Appl, "tcpdump")
            .args(["-n", "-U", "-s", "0", "-i", self.span_iface(), "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump is required (tools/install-deps.sh --test)");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(String::new()));
        let reader = collect(stderr, lines.clone());
        wait_until(
            Duration::from_secs(10),
            "tcpdump listening on span0",
            || lines.lock().unwrap().contains("listening on"),
        );
        SpanCapture {
            child: Some(child),
            lines,
            reader: Some(reader),
        }
    }

    /// Replays a capture into the bridge (from `rp0` in the switch namespace into bridge port
    /// `p-rp`), frames as they are in the file (tags and MACs included), so the SPAN copies them.
    /// Blocks until tcpreplay is done; panics if it fails or takes longer than `timeout`.
    pub fn replay_into_bridge(&self, pcap: &Path, speed: Speed, timeout: Duration) -> ReplayStats {
        let mut cmd = self.cmd_in(Ns::Switch, "tcpreplay");
        cmd.args(["-i", "rp0"]);
        match speed {
            Speed::Pps(p) => cmd.arg(format!("--pps={p}")),
            Speed::Multiplier(m) => cmd.arg(format!("--multiplier={m}")),
            Speed::Topspeed => cmd.arg("--topspeed"),
        };
        cmd.arg(pcap).stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let child = cmd.spawn().expect("tcpreplay is required");
        let out = wait_output(child, timeout, "tcpreplay");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tcpreplay failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ReplayStats {
            sent: stat_after(&text, "Successful packets:"),
            failed: stat_after(&text, "Failed packets:"),
            elapsed: start.elapsed(),
        }
    }

    /// One real SIP call: baresip in `gw` dials `sip:EXT@10.77.N.2`, baresip in `phone`
    /// auto-answers, both send the given audio with the given G.711 law, optionally the gateway
    /// holds and resumes, then the gateway hangs up (BYE). Both user agents are fresh processes
    /// for every call (new ports, SSRCs and Call-ID) and are gone when this returns.
    pub fn sip_call(&self, spec: &CallSpec) -> CallReport {
        let k = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        // The audio runs out only after the call: sources are padded well past the hangup.
        let pad = spec.duration + Duration::from_secs(5);
        let gw_wav = self.dir().join(format!("call{k}-gw.wav"));
        let ph_wav = self.dir().join(format!("call{k}-phone.wav"));
        make_wav(&spec.gw_audio, pad, &gw_wav, self.dir());
        make_wav(&spec.phone_audio, pad, &ph_wav, self.dir());

        let phone = Ua::start(
            self,
            Ns::Phone,
            &format!("call{k}-phone"),
            &spec.extension,
            &self.phone_ip(),
            &ph_wav,
            spec.codec,
        );
        let gw = Ua::start(
            self,
            Ns::Gw,
            &format!("call{k}-gw"),
            &spec.caller,
            &self.gw_ip(),
            &gw_wav,
            spec.codec,
        );
        let dialed = Instant::now();
        gw.command(&format!("/dial sip:{}@{}", spec.extension, self.phone_ip()));
        let limit = Duration::from_secs(10);
        gw.wait_for("Call established", limit);
        phone.wait_for("Call established", limit);
        let established = Instant::now();
        let mut hold_at = None;
        if let Some((at, length)) = spec.hold {
            sleep_until(established + at);
            gw.command("/hold");
            let held = Instant::now();
            sleep_until(established + at + length);
            gw.command("/resume");
            hold_at = Some((held, Instant::now()));
        }
        sleep_until(established + spec.duration);
        gw.command("/hangup");
        gw.wait_for("terminated", limit);
        phone.wait_for("terminated", limit);
        let ended = Instant::now();
        let gw_log = gw.quit();
        let phone_log = phone.quit();
        CallReport {
            spec: spec.clone(),
            setup: established - dialed,
            talk: ended - established,
            established_at: established,
            hold_at,
            ended_at: ended,
            gw_log,
            phone_log,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever still runs in the lab (a UA or tcpdump of a panicking test): killed by pid.
        for ns in [&self.gw, &self.phone, &self.sw, &self.appl] {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &ns.name])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        // The namespaces go when their fields drop; a namespace with a process left in it would
        // linger, so wait (bounded) for the killed ones to be gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let busy = [&self.gw, &self.phone, &self.sw, &self.appl]
                .iter()
                .any(|ns| {
                    Command::new("ip")
                        .args(["netns", "pids", &ns.name])
                        .output()
                        .map(|o| !o.stdout.is_empty())
                        .unwrap_or(false)
                });
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The management veth is deleted here, synchronously: deleting its namespace would take
        // it along only later (the kernel cleans up namespaces asynchronously), and the next lab
        // to get this slot would find the name taken.
        remove_root_link(&self.mgmt_root_if);
    }
}

/// Deletes a root-namespace link and waits (bounded) until the kernel has let go of its name.
fn remove_root_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", name])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/sys/class/net/{name}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running tcpdump on the SPAN NIC. `stop` ends it cleanly (SIGINT, file flushed); dropping
/// it kills it.
pub struct SpanCapture {
    child: Option<Child>,
    lines: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl SpanCapture {
    /// Stops tcpdump (SIGINT), waits up to 10 s for it, and returns its counters.
    pub fn stop(mut self) -> CaptureStats {
        // libpcap's TPACKET_V3 ring hands tcpdump full blocks or blocks older than its 1 s
        // timeout: frames of the last second are lost if it is stopped at once.
        std::thread::sleep(Duration::from_millis(1300));
        let mut child = self.child.take().unwrap();
        sh(&["kill", "-INT", &child.id().to_string()]);
        let status = wait_child(&mut child, Duration::from_secs(10), "tcpdump");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let text = self.lines.lock().unwrap().clone();
        assert!(status.success(), "tcpdump failed ({status}): {text}");
        CaptureStats {
            captured: number_before(&text, "packets captured"),
            dropped_by_kernel: number_before(&text, "packets dropped by kernel"),
        }
    }
}

impl Drop for SpanCapture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One baresip process driven through its stdin (the `stdio` UI module), its console output
/// collected by a thread. Killed on drop.
struct Ua {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    name: String,
}

impl Ua {
    fn start(lab: &Lab, ns: Ns, name: &str, user: &str, ip: &str, wav: &Path, codec: Codec) -> Ua {
        let dir = lab.dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t{ip}:5060\n\
             sip_trans_def\t\tudp\n\
             net_interface\t\teth0\n\
             call_local_timeout\t30\n\
             call_max_calls\t\t4\n\
             audio_source\t\taufile,{wav}\n\
             audio_player\t\taubridge,nil\n\
             audio_alert\t\taubridge,nil\n\
             audio_srate\t\t8000\n\
             audio_channels\t\t1\n\
             rtp_ports\t\t16384-16484\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tstdio.so\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n",
            wav = wav.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        // regint=0: no registrar; answermode=auto: the phone answers at once; one codec only.
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{ip}>;regint=0;answermode=auto;audio_codecs={}\n",
                codec.sdp_name()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("contacts"), "").unwrap();
        let mut child = lab
            .cmd_in(ns, "baresip")
            .arg("-f")
            .arg(&dir)
            // A pipe, never /dev/null: stdio cannot poll /dev/null, and on EOF baresip 1.0 spins
            // at 100 % CPU. The pipe stays open until `quit`.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baresip is required (tools/install-deps.sh --test)");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let reader = collect(stdout, out.clone());
        // stderr carries the same kind of messages (warnings in colour): keep them in the log.
        let _ = collect(stderr, out.clone());
        let ua = Ua {
            stdin: child.stdin.take(),
            child: Some(child),
            out,
            reader: Some(reader),
            name: name.to_owned(),
        };
        ua.wait_for("baresip is ready.", Duration::from_secs(10));
        ua
    }

    fn command(&self, line: &str) {
        let mut stdin = self.stdin.as_ref().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {line:?}: {e}", self.name));
    }

    fn log(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.out.lock().unwrap().contains(text) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {text:?} within {limit:?}; its output:\n{}",
                    self.name,
                    printable(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `/quit`, then waits up to 5 s for the process to end (killed after that). Its log.
    fn quit(mut self) -> String {
        self.command("/quit");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: did not quit within 5 s:\n{}",
                    self.name,
                    printable(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stdin.take();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        printable(&self.log())
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Claims a free N in 1..=250 with a lock file holding our pid; a lock whose process is gone is
/// taken over (and the management interface it may have left behind is removed).
struct Slot {
    n: u8,
    path: PathBuf,
}

impl Slot {
    fn claim() -> Slot {
        std::fs::create_dir_all(SLOT_DIR).unwrap();
        let me = std::process::id();
        let start = (me % 250) as u16;
        for i in 0..250u16 {
            let n = ((start + i) % 250 + 1) as u8;
            let path = PathBuf::from(format!("{SLOT_DIR}/{n}.lock"));
            for _ in 0..2 {
                // The lock appears with its owner's pid already in it (written to a private
                // file, then hard-linked into place, which fails if the lock exists): a
                // competitor never reads an empty lock and takes it for a dead owner's.
                let tmp = PathBuf::from(format!(
                    "{SLOT_DIR}/{n}.lock.{me}.{:?}",
                    std::thread::current().id()
                ));
                std::fs::write(&tmp, me.to_string()).unwrap();
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        // A root-side interface of a lab killed before it could clean up.
                        remove_root_link(&format!("smlab{n}"));
                        return Slot { n, path };
                    }
                    Err(_) => {
                        let owner = std::fs::read_to_string(&path).unwrap_or_default();
                        let alive = owner
                            .trim()
                            .parse::<u32>()
                            .map(|p| Path::new(&format!("/proc/{p}")).exists())
                            .unwrap_or(false);
                        if alive {
                            break;
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        panic!("no free lab slot in {SLOT_DIR}");
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A veth pair with `a` in `ns_a` and `b` in `ns_b`, created directly in those namespaces.
fn veth_between(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    sh(&[
        "ip", "link", "add", a, "netns", &ns_a.name, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ]);
}

/// Writes `audio` as 8 kHz mono 16-bit WAV (what baresip's aufile plays without conversion),
/// padded with silence or cut to exactly `length`.
pub fn make_wav(audio: &Audio, length: Duration, out: &Path, scratch: &Path) {
    let secs = format!("{:.3}", length.as_secs_f64());
    let mut sox = Command::new("sox");
    match audio {
        Audio::Tone(hz) => {
            sox.args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
                .arg(out)
                .args(["synth", &secs, "sine", &hz.to_string(), "vol", "0.5"]);
        }
        Audio::Speech(text) => {
            let raw = scratch.join(format!(
                "{}.espeak.wav",
                out.file_stem().unwrap().to_string_lossy()
            ));
            super::run_ok(Command::new("espeak-ng").arg("-w").arg(&raw).arg(text));
            sox.arg(&raw)
                .args(["-r", "8000", "-c", "1", "-b", "16"])
                .arg(out)
                .args(["pad", "0", &secs, "trim", "0", &secs]);
        }
        Audio::Wav(p) => {
            sox.arg(p)
                .args(["-r", "8000", "-c", "1", "-b", "16"])
                .arg(out)
                .args(["pad", "0", &secs, "trim", "0", &secs]);
        }
    }
    super::run_ok(&mut sox);
}

/// A thread appending everything `r` produces to `into`.
fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(k) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..k])),
            }
        }
    })
}

/// baresip's console output without the status line it rewrites with `\r` and without colour.
fn printable(log: &str) -> String {
    log.split(['\r', '\n'])
        .filter(|l| !l.contains("(bit/s)") && !l.trim().is_empty())
        .map(|l| l.replace("\x1b[31m", "").replace("\x1b[;m", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Polls `ok` every 10 ms; panics after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out ({limit:?}) waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` up to `limit`; kills it and panics after that.
fn wait_child(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wait_with_output` with a time limit (the pipes are drained by threads meanwhile).
fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let r1 = collect(child.stdout.take().unwrap(), out.clone());
    let r2 = collect(child.stderr.take().unwrap(), err.clone());
    let status = wait_child(&mut child, limit, what);
    let _ = r1.join();
    let _ = r2.join();
    let stdout = out.lock().unwrap().clone().into_bytes();
    let stderr = err.lock().unwrap().clone().into_bytes();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The first number after `label` in `text` (tcpreplay's "Successful packets:   3993").
fn stat_after(text: &str, label: &str) -> u64 {
    let i = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    text[i + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {text}"))
}

/// The number right before `label` in `text` (tcpdump's "812 packets captured").
fn number_before(text: &str, label: &str) -> u64 {
    let i = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    text[..i]
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number before {label:?} in {text}"))
}
