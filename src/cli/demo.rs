//! `silentmon demo`: the product on its embedded default. Today that is the offline path on the
//! bundled demo capture (a mobile agent's call on VLAN 85): the stream table, then the agent's
//! call decoded to a stereo WAV (agent left, caller right).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::extract::{extract, Selection, WavLayout};
use super::offline::{analyse, Input};
use crate::engine::EngineConfig;
use crate::report::Report;

/// The demo capture, made by tools/capgen (see testdata/README.md), embedded in the binary.
const DEMO_CAPTURE: &[u8] = include_bytes!("../../testdata/demo-vlan85-mobile-agent.pcap");
/// The demo agent's number.
const DEMO_AGENT: &str = "5001";

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo capture copy and the agent's WAV.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out: PathBuf,
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let capture = args.out.join("demo-vlan85-mobile-agent.pcap");
    std::fs::write(&capture, DEMO_CAPTURE)
        .with_context(|| format!("cannot write {}", capture.display()))?;
    let input = Input::new(&capture, None, None)?;

    let analysis = analyse(&input, EngineConfig::default())?;
    let report = Report::new(&analysis.engine, analysis.first_ts.unwrap_or_default());
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "silentmon demo: analysing {} (a call to mobile agent {DEMO_AGENT} on VLAN 85)\n",
        capture.display()
    )?;
    report.write_text(&mut out)?;

    let wav = args.out.join(format!("demo-agent-{DEMO_AGENT}.wav"));
    let summary = extract(
        &input,
        &analysis,
        &Selection::Number(DEMO_AGENT.to_owned()),
        WavLayout::Stereo,
        &wav,
    )?;
    writeln!(
        out,
        "\nagent {DEMO_AGENT}'s call: {summary}\nwritten to {} (agent left, caller right).",
        wav.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
