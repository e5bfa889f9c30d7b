//! `silentmon flows`: the RTP stream table of a capture file.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::engine::EngineConfig;
use crate::offline::{analyse, Input};
use crate::report::Report;

/// Arguments of `flows`.
#[derive(Debug, Args)]
#[command(
    after_help = "Streams are keyed by source, destination and SSRC (an SSRC change starts a \
new stream). RTP is recognised from SIP/SDP, else heuristically (version 2, plausible payload type, \
sequence and timestamp progression). Numbers agree with `tshark -q -z rtp,streams`."
)]
pub(crate) struct FlowsArgs {
    /// Capture file to read (pcap or pcapng; Ethernet, Linux cooked or raw IP).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: PathBuf,
    /// BPF filter applied while reading; say `vlan` to match tagged frames: `udp or (vlan and udp)`.
    #[arg(short = 'f', long, value_name = "BPF", conflicts_with = "filter_file")]
    filter: Option<String>,
    /// Read the BPF filter from a file (see capture-filters/).
    #[arg(long, value_name = "FILE")]
    filter_file: Option<PathBuf>,
    /// Print JSON (streams, calls, counters) instead of the table.
    #[arg(long)]
    json: bool,
    /// Only streams negotiated by SIP/SDP: no heuristic RTP detection.
    #[arg(long)]
    no_heuristic: bool,
}

pub(crate) fn run(args: FlowsArgs) -> Result<ExitCode> {
    let input = Input::new(
        &args.read,
        args.filter.as_deref(),
        args.filter_file.as_deref(),
    )?;
    let mut config = EngineConfig::default();
    config.flows.heuristic = !args.no_heuristic;
    let analysis = analyse(&input, config)?;
    let first = analysis.first_ts.unwrap_or_default();
    let report = Report::new(&analysis.engine, first);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        report.write_json(&mut out)?;
    } else {
        report.write_text(&mut out)?;
    }
    out.flush()?;
    match analysis.stopped {
        // As tshark does: what was read is reported, the damage said, the exit status 2.
        Some(e) => {
            eprintln!("silentmon flows: warning: {e}; the table shows the packets read before it");
            Ok(ExitCode::from(2))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
