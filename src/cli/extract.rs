//! `silentmon extract`: a stream, a SIP call or all calls of a number decoded to WAV.
//! Arguments only: the work is `offline::extract`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::engine::EngineConfig;
use crate::offline::extract::{extract, Selection, WavLayout};
use crate::offline::{analyse, Input};

/// Arguments of `extract`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["stream", "call", "number"])))]
pub(crate) struct ExtractArgs {
    /// Capture file to read.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: PathBuf,
    /// One direction: SRC-DST with optional /SSRC, e.g. 10.0.0.1:4000-10.0.0.2:5000/0x1234ABCD
    /// (without /SSRC every SSRC of that flow, in time order).
    #[arg(long, value_name = "SRC-DST[/SSRC]")]
    stream: Option<String>,
    /// Both directions of the SIP call with this Call-ID.
    #[arg(long, value_name = "CALL-ID")]
    call: Option<String>,
    /// Both directions of every call whose Request-URI, To, From or P-Asserted-Identity carries
    /// this number.
    #[arg(long, value_name = "DIGITS")]
    number: Option<String>,
    /// Output WAV file (16-bit PCM; 8 kHz for G.711, 48 kHz when Opus is involved).
    #[arg(short = 'o', long = "output", value_name = "OUT.wav")]
    output: PathBuf,
    /// Two channels: the agent (called party) left, the other side right. Default: mixed mono.
    #[arg(long)]
    stereo: bool,
    /// BPF filter applied while reading (say `vlan` for tagged frames).
    #[arg(short = 'f', long, value_name = "BPF")]
    filter: Option<String>,
}

pub(crate) fn run(args: ExtractArgs) -> Result<ExitCode> {
    let selection = match (&args.stream, &args.call, &args.number) {
        (Some(s), _, _) => Selection::parse_stream(s)?,
        (_, Some(c), _) => Selection::Call(c.clone()),
        (_, _, Some(n)) => Selection::Number(n.clone()),
        _ => bail!("say --stream, --call or --number"),
    };
    let layout = if args.stereo {
        WavLayout::Stereo
    } else {
        WavLayout::Mono
    };
    let input = Input::new(&args.read, args.filter.as_deref(), None)?;
    let analysis = analyse(&input, EngineConfig::default())?.complete()?;
    let summary = extract(&input, &analysis, &selection, layout, &args.output)?;
    eprintln!("{}: {summary}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
