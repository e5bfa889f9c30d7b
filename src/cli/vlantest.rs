//! `silentmon vlantest`: qualify a NIC for 802.1Q-tagged SPAN traffic (appendix A of the CTI OS
//! System Manager Guide, in one command per side). Arguments only: the shells are
//! `vlantest::shell`, the verdict `vlantest::verdict`, the report `vlantest::report`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::duration::parse_duration;
use crate::capture::live::{format_mac, interface_mac, parse_mac};
use crate::vlantest::report::{summary, RunReport};
use crate::vlantest::shell::{self, judge_file, listen};
use crate::vlantest::{Expectation, Verdict};

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
struct SendFlags {
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
    send: SendFlags,
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
    send: SendFlags,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

impl From<&SendFlags> for shell::SendOptions {
    fn from(f: &SendFlags) -> Self {
        shell::SendOptions {
            vlan: f.vlan,
            untagged: f.untagged,
            count: f.count,
            interval: f.interval,
            from: f.from.clone(),
        }
    }
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
            let sent = shell::send(&a.interface, a.dst_mac, &(&a.send).into())?;
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

fn finish(report: RunReport, json: bool) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", summary(&report))?;
    }
    Ok(match report.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail { .. } => ExitCode::from(1),
    })
}

fn self_test(a: SelfArgs) -> Result<ExitCode> {
    let dst_mac =
        interface_mac(&a.rx).with_context(|| format!("cannot read the MAC address of {}", a.rx))?;
    let exp = Expectation {
        vlan: a.send.vlan,
        count: a.send.count,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let rx = a.rx.clone();
    let json = a.json;
    let timeout = a.timeout;
    let listener = std::thread::spawn(move || listen(&rx, exp, timeout, json, Some(ready_tx)));
    // Send only once the listener's capture is open (or it failed).
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_ok() {
        shell::send(&a.tx, dst_mac, &(&a.send).into())?;
    }
    let report = listener
        .join()
        .map_err(|_| anyhow::anyhow!("listener thread panicked"))??;
    finish(report, a.json)
}
