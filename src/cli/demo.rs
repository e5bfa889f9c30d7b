//! `silentmon demo`: the whole product on its embedded default, on one machine and without a
//! SPAN (`crate::demo` prepares and runs it; this module parses the arguments and words what
//! happens). The appliance replays the bundled demo capture (a mobile agent's call on VLAN 85)
//! as live traffic over TLS 1.3 on loopback; an embedded supervisor endpoint monitors the demo
//! agent, plays both sides on the sound card (agent left, caller right) and records the call.
//! Without a sound device it says so and records only. A mock CTI Server plays the PG's view
//! of the call (`--no-cti`: the binding comes from the SIP alone). `--offline` runs the offline
//! analysis instead (`flows` and `extract` on the same capture).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::demo::{write_capture, Demo, DemoOptions, Step, DEMO_AGENT};
use crate::engine::EngineConfig;
use crate::offline::extract::{extract, Selection, WavLayout};
use crate::offline::{analyse, Input};
use crate::report::Report;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the capture copy, the demo's certificates, audit trail and the WAV.
    #[arg(long, value_name = "DIR", default_value = "silentmon-demo")]
    out: PathBuf,
    /// Replay speed of the call (1 = as it happened). Above 1 the call arrives faster than a
    /// supervisor can hear it: the endpoint plays and records the part that fits in the
    /// shorter replay (a quick check, not a listen).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Output device, a name from `silentmon supervisor --list-devices` (default: the
    /// system's default output).
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Mix both sides to mono instead of agent left, caller right.
    #[arg(long)]
    mono: bool,
    /// Offline analysis instead: the stream table and the agent's call decoded to a WAV.
    #[arg(long)]
    offline: bool,
    /// Without the mock CTI Server: the agent's binding comes from the capture's SIP alone
    /// and its state stays Logout.
    #[arg(long)]
    no_cti: bool,
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.offline {
        let capture = write_capture(&args.out)?;
        return offline(&args.out, &capture);
    }
    let options = DemoOptions {
        speed: args.speed,
        device: args.device.clone(),
        stereo: !args.mono,
        cti: !args.no_cti,
    };
    let demo = Demo::prepare(&args.out, &options)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(demo.run(say))?;
    println!(
        "supervisor: {}",
        crate::endpoint::shell::summary(&outcome.endpoint)
    );
    if let Some(line) = outcome.cti {
        println!("{line}");
    }
    if outcome.recordings.is_empty() {
        bail!("nothing was recorded (see the messages above)");
    }
    for w in outcome.recordings {
        println!("recorded: {}", w.display());
    }
    println!("audit trail: {}", outcome.audit.display());
    Ok(ExitCode::SUCCESS)
}

/// Words a step of the demo.
fn say(step: Step) {
    match step {
        Step::CallStarts {
            capture,
            device,
            length,
        } => {
            println!(
                "silentmon demo: the appliance replays {} as live SPAN traffic (TLS 1.3 \
                 control plane and monitor service on loopback); supervisor `demo` is \
                 monitoring agent {DEMO_AGENT}.",
                capture.display()
            );
            match device {
                Some(d) => println!(
                    "playing the call on the sound card ({d}), agent left, caller right; \
                     recording too."
                ),
                None => println!(
                    "no sound device could be opened here: the call is recorded to a WAV \
                     file only."
                ),
            }
            println!(
                "the call lasts {:.0} s; Ctrl-C ends the demo early.",
                length.as_secs_f64()
            );
        }
        Step::Interrupted => println!("interrupted"),
    }
}

fn offline(out: &Path, capture: &Path) -> Result<ExitCode> {
    let input = Input::new(capture, None, None)?;
    let analysis = analyse(&input, EngineConfig::default())?.complete()?;
    let report = Report::new(&analysis.engine, analysis.first_ts.unwrap_or_default());
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "silentmon demo: analysing {} (a call to mobile agent {DEMO_AGENT} on VLAN 85)\n",
        capture.display()
    )?;
    report.write_text(&mut stdout)?;
    let wav = out.join(format!("demo-agent-{DEMO_AGENT}.wav"));
    let summary = extract(
        &input,
        &analysis,
        &Selection::Number(DEMO_AGENT.to_owned()),
        WavLayout::Stereo,
        &wav,
    )?;
    writeln!(
        stdout,
        "\nagent {DEMO_AGENT}'s call: {summary}\nwritten to {} (agent left, caller right).",
        wav.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
