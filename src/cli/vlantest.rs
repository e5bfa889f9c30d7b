//! `silentmon vlantest`: qualify a NIC for 802.1Q-tagged SPAN traffic (appendix A of the CTI OS
//! System Manager Guide, in one command per side). Thin shells: libpcap in and out through
//! `capture::live`, every decision in `vlantest::Tally`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::duration::parse_duration;
use crate::capture::live::{format_mac, interface_mac, parse_mac, LiveCapture, LiveOptions};
use crate::capture::{PacketSource, PcapFile};
use crate::packet::{DecapConfig, Decapsulator, LinkType};
use crate::vlantest::sample::{build_frame, set_dst_mac, strip_tags};
use crate::vlantest::{observe, Expectation, FrameClass, Observation, Signature, Tally, Verdict};

/// testdata/VLANSamplePackets.pcap (made by tools/capgen), the default frames of `send`.
const SAMPLE_CAPTURE: &[u8] = include_bytes!("../../testdata/VLANSamplePackets.pcap");

const PROCEDURE: &str = "\
Many NIC drivers drop or strip 802.1Q tags before frames reach the capture stack, and then silent
monitoring silently fails. The test, as in appendix A of the CTI OS System Manager Guide:
  1. on the silentmon host (the SPAN NIC, e.g. eth1):  silentmon vlantest listen -i eth1 --vlan 85
  2. on a host on a port of the voice VLAN trunk:       silentmon vlantest send -i eth0 --dst-mac <eth1's MAC> --vlan 85
     (or: tcpreplay -i eth0 testdata/VLANSamplePackets.pcap, five times)
  3. the listener prints each frame and ends with PASS (5 frames tagged with VLAN 85 arrived) or
     FAIL and the likeliest cause: nothing arrived, tags stripped, other VLAN, too few.
Both ends on one host (two NICs, or a veth pair): silentmon vlantest self -i TX -I RX.
A capture taken elsewhere (tcpdump -i eth1 -w f.pcap): silentmon vlantest -r f.pcap.
Exit codes: 0 PASS, 1 FAIL, 2 usage or system error (e.g. no such interface, not root).";

/// Arguments of `vlantest`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = PROCEDURE)]
pub(crate) struct VlantestArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Judge a capture file taken on the target (e.g. with tcpdump -w) instead of a live NIC.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Option<PathBuf>,
    #[command(flatten)]
    judge: JudgeArgs,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Listen on the SPAN NIC and judge the frames that arrive.
    Listen(ListenArgs),
    /// Send the signed sample frames to the listener's MAC (the appendix's packet generator).
    Send(SendArgs),
    /// Send on one NIC and listen on another of the same host: one PASS/FAIL.
    #[command(name = "self")]
    SelfTest(SelfArgs),
}

#[derive(Debug, Args, Clone)]
struct JudgeArgs {
    /// VLAN id the frames must carry.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u16).range(1..4095))]
    vlan: u16,
    /// Tagged frames needed for PASS.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    count: u16,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ListenArgs {
    /// Interface to listen on (opened in promiscuous mode).
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: String,
    /// Give up after this long: 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    judge: JudgeArgs,
}

#[derive(Debug, Args, Clone)]
struct SendOptions {
    /// VLAN id to tag the sample frames with.
    #[arg(long, default_value_t = 85, conflicts_with = "untagged", value_parser = clap::value_parser!(u16).range(1..4095))]
    vlan: u16,
    /// Send the frames without a tag (checks that the path reaches the listener at all).
    #[arg(long)]
    untagged: bool,
    /// Frames to send.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    count: u16,
    /// Pause between frames: 200ms, 1s.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    interval: Duration,
    /// Send the frames of this capture instead of the built-in testdata/VLANSamplePackets.pcap
    /// (destination MAC rewritten; sample frames in it are re-signed for this run; --count
    /// frames, cycling through the file).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SendArgs {
    /// Interface to send from.
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: String,
    /// MAC address of the listener's NIC.
    #[arg(long, value_name = "MAC", value_parser = parse_mac_arg)]
    dst_mac: [u8; 6],
    #[command(flatten)]
    send: SendOptions,
}

#[derive(Debug, Args)]
struct SelfArgs {
    /// Interface to send from.
    #[arg(short = 'i', long = "tx", value_name = "IFACE_TX")]
    tx: String,
    /// Interface to listen on.
    #[arg(short = 'I', long = "rx", value_name = "IFACE_RX")]
    rx: String,
    /// Give up after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    send: SendOptions,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_mac_arg(text: &str) -> Result<[u8; 6], String> {
    parse_mac(text).ok_or_else(|| format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

pub(crate) fn run(args: VlantestArgs) -> Result<ExitCode> {
    match (args.mode, args.read) {
        (Some(Mode::Listen(a)), _) => {
            let exp = Expectation {
                vlan: a.judge.vlan,
                count: a.judge.count,
            };
            let report = listen(&a.interface, exp, a.timeout, a.judge.json, None)?;
            finish(report, a.judge.json)
        }
        (Some(Mode::Send(a)), _) => {
            let sent = send(&a.interface, a.dst_mac, &a.send)?;
            println!(
                "sent {sent} frame(s) on {} to {}",
                a.interface,
                format_mac(&a.dst_mac)
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some(Mode::SelfTest(a)), _) => self_test(a),
        (None, Some(file)) => {
            let exp = Expectation {
                vlan: args.judge.vlan,
                count: args.judge.count,
            };
            let report = judge_file(&file, exp, args.judge.json)?;
            finish(report, args.judge.json)
        }
        (None, None) => {
            bail!("say `listen`, `send`, `self` or `-r FILE` (see `silentmon vlantest --help`)")
        }
    }
}

/// What a listen (or file) run saw.
#[derive(Serialize)]
struct RunReport {
    source: String,
    expected: Expectation,
    #[serde(flatten)]
    verdict: Verdict,
    tag_path: &'static str,
    tally: Tally,
    frames: Vec<FrameReport>,
}

#[derive(Serialize)]
struct FrameReport {
    time: String,
    src_mac: String,
    dst_mac: String,
    vlans: Vec<TagReport>,
    ethertype: String,
    ip_protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<SampleReport>,
    class: FrameClass,
}

#[derive(Serialize)]
struct TagReport {
    tpid: String,
    id: u16,
    pcp: u8,
    dei: bool,
}

#[derive(Serialize)]
struct SampleReport {
    test_id: u32,
    seq: u16,
    sent_vlan: Option<u16>,
}

const LIVE_TAG_PATH: &str = "live Linux capture: the kernel hands the outer tag up out of band (VLAN \
offload metadata) and libpcap puts it back into the frame, as tcpdump shows it; inner tags arrive in \
the frame itself";
const FILE_TAG_PATH: &str = "capture file: tags as recorded in the file";

/// Most frames listed in a report (the tally counts them all).
const MAX_FRAMES_LISTED: usize = 200;

fn frame_report(o: &Observation, class: FrameClass) -> FrameReport {
    FrameReport {
        time: format_time(o.ts),
        src_mac: format_mac(&o.src_mac),
        dst_mac: format_mac(&o.dst_mac),
        vlans: o
            .vlans
            .tags()
            .iter()
            .map(|t| TagReport {
                tpid: format!("0x{:04x}", t.tpid),
                id: t.vid,
                pcp: t.pcp,
                dei: t.dei,
            })
            .collect(),
        ethertype: format!("0x{:04x}", o.ethertype),
        ip_protocol: o.ip_protocol,
        sample: o.signature.map(|s| SampleReport {
            test_id: s.test_id,
            seq: s.seq,
            sent_vlan: s.sent_vlan,
        }),
        class,
    }
}

fn format_time(ts: crate::time::Timestamp) -> String {
    let secs = ts.as_nanos().div_euclid(1_000_000_000);
    let micros = ts.as_nanos().rem_euclid(1_000_000_000) / 1000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

fn print_frame(f: &FrameReport) {
    let tags = if f.vlans.is_empty() {
        "untagged".to_owned()
    } else {
        f.vlans
            .iter()
            .map(|t| {
                format!(
                    "vlan {} pcp {} dei {} ({})",
                    t.id, t.pcp, t.dei as u8, t.tpid
                )
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let proto = match (f.ethertype.as_str(), f.ip_protocol) {
        ("0x0800", Some(17)) => "IPv4/UDP".to_owned(),
        ("0x0800", Some(p)) => format!("IPv4/proto {p}"),
        ("0x86dd", Some(17)) => "IPv6/UDP".to_owned(),
        (e, _) => format!("ethertype {e}"),
    };
    let sample = match &f.sample {
        Some(s) => format!(
            " sample #{} (sent {})",
            s.seq,
            s.sent_vlan
                .map(|v| format!("on vlan {v}"))
                .unwrap_or_else(|| "untagged".into())
        ),
        None => String::new(),
    };
    println!(
        "{} {} > {} {tags} {proto}{sample}: {:?}",
        f.time, f.src_mac, f.dst_mac, f.class
    );
}

/// Listens on `iface` until `count` tagged frames arrived or `timeout` passed. `ready`, if
/// given, is told once the capture is open (so `self` starts sending only then).
fn listen(
    iface: &str,
    exp: Expectation,
    timeout: Duration,
    json: bool,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> Result<RunReport> {
    let options = LiveOptions {
        snaplen: 512,
        buffer_bytes: 4 << 20,
        timeout: Duration::from_millis(50),
        nonblocking: true,
        ..LiveOptions::default()
    };
    let mut cap = LiveCapture::open(iface, &options)?;
    let link = cap.link_type();
    if !json {
        let mac = interface_mac(iface)
            .map(|m| format_mac(&m))
            .unwrap_or_else(|| "unknown".into());
        println!(
            "listening on {iface} (MAC {mac}) for {} frames tagged with VLAN {}, up to {:?}",
            exp.count, exp.vlan, timeout
        );
    }
    if let Some(r) = ready {
        let _ = r.send(());
    }
    let mut judge = Judge::new(exp, json);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !judge.tally.is_complete(&exp) {
        let Some(frame) = cap.poll_frame()? else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        judge.frame(frame.ts, link, frame.data);
    }
    Ok(judge.report(iface.to_owned(), LIVE_TAG_PATH))
}

/// Observes frames, tallies them and lists (and prints) the frames of interest.
struct Judge {
    exp: Expectation,
    json: bool,
    decap: Decapsulator,
    tally: Tally,
    frames: Vec<FrameReport>,
}

impl Judge {
    fn new(exp: Expectation, json: bool) -> Self {
        Judge {
            exp,
            json,
            decap: Decapsulator::new(DecapConfig::default()),
            tally: Tally::default(),
            frames: Vec::new(),
        }
    }

    fn frame(&mut self, ts: crate::time::Timestamp, link: LinkType, data: &[u8]) {
        let obs = observe(&mut self.decap, ts, link, data);
        let class = self.tally.observe(&self.exp, &obs);
        if class != FrameClass::Background && self.frames.len() < MAX_FRAMES_LISTED {
            let f = frame_report(&obs, class);
            if !self.json {
                print_frame(&f);
            }
            self.frames.push(f);
        }
    }

    fn report(self, source: String, tag_path: &'static str) -> RunReport {
        RunReport {
            verdict: self.tally.verdict(&self.exp, &source),
            source,
            expected: self.exp,
            tag_path,
            tally: self.tally,
            frames: self.frames,
        }
    }
}

fn judge_file(path: &Path, exp: Expectation, json: bool) -> Result<RunReport> {
    let mut file = PcapFile::open(path, None)?;
    let link = file.link_type();
    let mut judge = Judge::new(exp, json);
    while let Some(frame) = file.next_frame()? {
        judge.frame(frame.ts, link, frame.data);
    }
    Ok(judge.report(path.display().to_string(), FILE_TAG_PATH))
}

fn finish(report: RunReport, json: bool) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        let t = &report.tally;
        writeln!(
            out,
            "{} frames seen: {} tagged with VLAN {}, {} stripped, {} re-tagged, {} other VLAN, {} untagged samples, {} background",
            t.frames, t.tagged, report.expected.vlan, t.stripped, t.retagged, t.other_vlan, t.untagged_as_sent, t.background
        )?;
        writeln!(out, "tag path: {}", report.tag_path)?;
        match &report.verdict {
            Verdict::Pass => writeln!(
                out,
                "PASS: {} frames tagged with VLAN {} reached the capture stack on {}",
                t.tagged, report.expected.vlan, report.source
            )?,
            Verdict::Fail { cause, diagnosis } => writeln!(out, "FAIL ({cause:?}): {diagnosis}")?,
        }
    }
    Ok(match report.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail { .. } => ExitCode::from(1),
    })
}

/// Sends the sample frames (or a file's frames); returns how many were sent.
fn send(iface: &str, dst_mac: [u8; 6], opts: &SendOptions) -> Result<usize> {
    let frames = sample_frames(dst_mac, opts)?;
    let mut cap = LiveCapture::open(
        iface,
        &LiveOptions {
            promiscuous: false,
            snaplen: 128,
            buffer_bytes: 1 << 20,
            ..LiveOptions::default()
        },
    )?;
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(opts.interval);
        }
        cap.send(f)?;
    }
    Ok(frames.len())
}

/// The frames to send: generated sample frames, or those of `--from FILE` rewritten.
fn sample_frames(dst_mac: [u8; 6], opts: &SendOptions) -> Result<Vec<Vec<u8>>> {
    let test_id = test_id();
    let sent_vlan = (!opts.untagged).then_some(opts.vlan);
    // The default is the project's own sample capture, embedded in the binary; libpcap reads
    // files, so it goes through a private temporary copy.
    let embedded;
    let path: &Path = match &opts.from {
        Some(p) => p,
        None => {
            embedded = std::env::temp_dir()
                .join(format!("silentmon-vlan-sample-{}.pcap", std::process::id()));
            std::fs::write(&embedded, SAMPLE_CAPTURE)
                .with_context(|| format!("cannot write {}", embedded.display()))?;
            &embedded
        }
    };
    let frames = read_frames(path);
    if opts.from.is_none() {
        let _ = std::fs::remove_file(path);
    }
    let frames = frames?;
    if frames.is_empty() {
        bail!("{} holds no frames", path.display());
    }
    // `count` frames, cycling through the file; sample frames are re-signed for this run with
    // their position, and tagged as asked.
    let mut decap = Decapsulator::new(DecapConfig::default());
    let mut out = Vec::with_capacity(opts.count as usize);
    for seq in 0..opts.count {
        let (ts, data) = &frames[seq as usize % frames.len()];
        let obs = observe(&mut decap, *ts, LinkType::Ethernet, data);
        let mut f = match obs.signature {
            Some(_) => {
                let mut f = Vec::new();
                let sig = Signature {
                    test_id,
                    seq,
                    count: opts.count,
                    sent_vlan,
                };
                build_frame(&mut f, dst_mac, obs.src_mac, &sig);
                f
            }
            None => {
                let mut f = data.clone();
                if opts.untagged {
                    strip_tags(&mut f);
                }
                f
            }
        };
        set_dst_mac(&mut f, dst_mac);
        out.push(f);
    }
    Ok(out)
}

/// All frames of an Ethernet capture file.
fn read_frames(path: &Path) -> Result<Vec<(crate::time::Timestamp, Vec<u8>)>> {
    let mut file = PcapFile::open(path, None)?;
    if file.link_type() != LinkType::Ethernet {
        bail!("{}: only Ethernet captures can be sent", path.display());
    }
    let mut frames = Vec::new();
    while let Some(frame) = file.next_frame()? {
        frames.push((frame.ts, frame.data.to_vec()));
    }
    Ok(frames)
}

/// A test id that differs between runs (time-derived; not security relevant).
fn test_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ std::process::id().rotate_left(16)
}

fn self_test(a: SelfArgs) -> Result<ExitCode> {
    let dst_mac =
        interface_mac(&a.rx).with_context(|| format!("cannot read the MAC address of {}", a.rx))?;
    let exp = Expectation {
        vlan: a.send.vlan,
        count: a.send.count,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = a.rx.clone();
    let json = a.json;
    let timeout = a.timeout;
    let listener = std::thread::spawn(move || listen(&rx, exp, timeout, json, Some(ready_tx)));
    // Send only once the listener's capture is open (or it failed).
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_ok() {
        send(&a.tx, dst_mac, &a.send)?;
    }
    let report = listener
        .join()
        .map_err(|_| anyhow::anyhow!("listener thread panicked"))??;
    finish(report, a.json)
}
