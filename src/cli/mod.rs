//! Command line: clap definitions, validation into typed settings, one `run` per subcommand.
//! The only module that uses `anyhow`; [`main`] alone prints errors and chooses exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod certs;
mod ctl;
mod demo;
mod duration;
mod extract;
mod flows;
mod passwd;
mod server;
mod supervisor;
mod vlantest;

/// silentmon: supervisors listen, live and unnoticed, to contact-center agents' calls.
///
/// The appliance (`server`) sits behind a switch SPAN of the agent voice gateways, knows which
/// agent is on which RTP flows (SIP, phone IPs, binds, the PG's CTI Server) and forwards a
/// monitored agent's audio over TLS; appliances cluster on TCP 42029. The supervisor endpoint
/// (`supervisor`) plays and records it on the supervisor's desktop and serves the supervisor's
/// page (the team, states and calls, Monitor/Stop with one click) on its loopback port. `demo`
/// runs all of it on one machine. `ctl` drives an appliance or an endpoint from a shell;
/// `certs` and `passwd` make the TLS files and password hashes; `vlantest` qualifies a SPAN NIC;
/// `flows` and `extract` analyse capture files offline.
#[derive(Debug, Parser)]
#[command(
    name = "silentmon",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Log lines as JSON objects (for log shippers) instead of text.
    #[arg(long, global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance: capture, agent bindings, control plane (42028), monitor service
    /// (42228), cluster peer link (42029), CTI feed, metrics.
    Server(server::ServerArgs),
    /// The supervisor's desktop endpoint: plays and records monitored calls, serves the
    /// supervisor's page (its URL is printed; --open opens it).
    Supervisor(supervisor::SupervisorArgs),
    /// The whole product on one machine: an appliance replaying the bundled demo call with a
    /// mock CTI Server, a supervisor endpoint playing and recording it (--offline: analysis).
    Demo(demo::DemoArgs),
    /// Talk to an appliance's control plane (agents, calls, flows, bind, monitor, stop,
    /// events, cluster) or to a supervisor endpoint (--endpoint).
    Ctl(ctl::CtlArgs),
    /// The private CA: `certs ca`, `certs request`, `certs sign` (PEM files for TLS).
    Certs(certs::CertsArgs),
    /// Hash a password (read from standard input) for the configuration file.
    Passwd(passwd::PasswdArgs),
    /// Qualify a NIC for 802.1Q-tagged SPAN traffic (listen / send / self / -r FILE).
    Vlantest(vlantest::VlantestArgs),
    /// List the RTP streams of a capture: packets, loss, delta, jitter, VLANs, SIP call.
    Flows(flows::FlowsArgs),
    /// Decode a stream, a SIP call or all calls of a number to a 16-bit PCM WAV file.
    Extract(extract::ExtractArgs),
}

/// Runs the command line; the process exit code comes from here.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_json);
    let result = match cli.command {
        Command::Flows(a) => flows::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Certs(a) => certs::run(a),
        Command::Passwd(a) => passwd::run(a),
        Command::Vlantest(a) => vlantest::run(a),
        Command::Server(a) => server::run(a),
        Command::Ctl(a) => ctl::run(a),
        Command::Supervisor(a) => supervisor::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("silentmon: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A password: the first line of `file`, else $SILENTMON_PASSWORD, else none.
pub(crate) fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    Ok(std::env::var("SILENTMON_PASSWORD").ok())
}

pub(crate) use crate::config::host_of;

/// SIGINT, SIGTERM, or the end of `limit` (`--run-for`).
pub(crate) async fn wait_for_stop(limit: Option<std::time::Duration>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let limit = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = limit => {}
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("appliance1.example:42028"), "appliance1.example");
        assert_eq!(host_of("127.0.0.1:42028"), "127.0.0.1");
        assert_eq!(host_of("[::1]:42028"), "::1");
    }
}
