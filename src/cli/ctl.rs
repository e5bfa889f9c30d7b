//! `silentmon ctl`: the operator's and the tests' client of the control plane (42028). Logs in
//! (supervisor by default; `--mode monitor` or `--mode agent`), sends one request, prints the
//! reply as a table or, with `--json`, as the JSON the server sent. `monitor` and `events` stay
//! connected and print events until interrupted or `--for` passes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::duration::parse_duration;
use crate::control::client::Client;
use crate::control::frame::Frame;

/// Arguments of `silentmon ctl`.
#[derive(Debug, Args)]
pub(crate) struct CtlArgs {
    /// The appliance's control plane, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:42028", value_name = "HOST:PORT")]
    server: String,
    /// Talk to a supervisor endpoint's local control instead (`monitor`, `stop`, `status`;
    /// no credentials: the endpoint is logged in already).
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, default_missing_value = "127.0.0.1:42228")]
    endpoint: Option<String>,
    /// Who logs in (supervisor id, agent id; ignored in monitor mode).
    #[arg(long, short, default_value = "")]
    user: String,
    /// Session mode.
    #[arg(long, value_enum, default_value_t = Mode::Supervisor)]
    mode: Mode,
    /// Agent mode: the instrument (phone extension) logged in on (default: the agent's).
    #[arg(long, value_name = "EXT")]
    instrument: Option<String>,
    /// File holding the password (first line); else $SILENTMON_PASSWORD; else none.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// CA certificate that signed the appliance's certificate.
    #[arg(
        long,
        default_value = "/etc/silentmon/certs/ca.pem",
        value_name = "FILE"
    )]
    ca: PathBuf,
    /// Name in the appliance's certificate (default: the host part of --server).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Plaintext (only against an appliance running with --insecure).
    #[arg(long)]
    insecure: bool,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Supervisor,
    Monitor,
    Agent,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Agents you may see, with team and state.
    Agents,
    /// SIP calls of your agents (monitor mode: all).
    Calls,
    /// RTP streams of your agents (monitor mode: all).
    Flows,
    /// Agent media bindings: endpoint, source (static, sip, explicit), expiry.
    Bindings,
    /// Active silent monitors.
    Monitors,
    /// Bind a media endpoint (IP:PORT) to an agent.
    Bind {
        /// Agent id.
        agent: String,
        /// The agent's RTP endpoint, IP:PORT.
        endpoint: String,
        /// Lifetime (default: until the appliance restarts).
        #[arg(long, value_parser = parse_duration)]
        r#for: Option<Duration>,
    },
    /// Start silently monitoring an agent; prints the grant, then events while connected
    /// (the monitor ends when this command does).
    Monitor {
        /// Agent id.
        agent: String,
        /// Stay connected this long (default: until interrupted).
        #[arg(long, value_parser = parse_duration)]
        r#for: Option<Duration>,
    },
    /// Stop monitoring an agent (with --endpoint: whatever the endpoint monitors).
    Stop {
        /// Agent id (required against the control plane).
        agent: Option<String>,
    },
    /// With --endpoint: what the endpoint monitors and hears (packets, loss, device).
    Status,
    /// Print events (agent states, monitors) as they come.
    Events {
        /// Stop after this long (default: until interrupted).
        #[arg(long, value_parser = parse_duration)]
        r#for: Option<Duration>,
    },
    /// Agent mode: set your agent state (Available, NotReady, Talking, ...).
    State {
        /// The new state.
        state: String,
    },
}

pub(crate) fn run(args: CtlArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

/// Connects and logs in as `args` say.
async fn connect(args: &CtlArgs) -> Result<Client> {
    let tls = if args.insecure {
        None
    } else {
        let ca = std::fs::read_to_string(&args.ca).with_context(|| {
            format!(
                "cannot read the CA certificate {} (give --ca FILE, or --insecure for a lab \
                 appliance)",
                args.ca.display()
            )
        })?;
        let config = crate::security::tls::client_config(&ca, None)
            .with_context(|| format!("CA certificate {}", args.ca.display()))?;
        let name = args
            .server_name
            .clone()
            .unwrap_or_else(|| super::host_of(&args.server));
        Some((config, name))
    };
    let mut client = Client::connect(
        &args.server,
        tls.as_ref().map(|(c, n)| (Arc::clone(c), n.as_str())),
    )
    .await?;
    let mode = match args.mode {
        Mode::Supervisor => "supervisor",
        Mode::Monitor => "monitor",
        Mode::Agent => "agent",
    };
    let mut login = Frame::new("Login")
        .with("mode", mode)
        .with("id", args.user.clone());
    if let Some(p) = super::read_password(args.password_file.as_deref())? {
        login = login.with("password", p);
    }
    if let Some(i) = &args.instrument {
        login = login.with("instrument", i.clone());
    }
    let reply = client.request(&login, "LoginReply", |_| {}).await?;
    check(&reply)?;
    Ok(client)
}

/// A refusal becomes the error, with the server's reason.
fn check(reply: &Frame) -> Result<()> {
    if reply.str("result") == Some("ok") {
        return Ok(());
    }
    bail!(
        "{}: {}",
        reply.msg,
        reply.str("reason").unwrap_or("refused without a reason")
    )
}

async fn run_async(args: CtlArgs) -> Result<ExitCode> {
    if let Some(endpoint) = &args.endpoint {
        return endpoint_command(endpoint, &args).await;
    }
    let mut client = connect(&args).await?;
    let json = args.json;
    let out = &mut std::io::stdout().lock();
    match &args.command {
        CtlCommand::Agents => {
            list(
                &mut client,
                "ListAgents",
                "AgentList",
                "agents",
                json,
                out,
                &["agent", "extension", "team", "state"],
            )
            .await?
        }
        CtlCommand::Calls => {
            list(
                &mut client,
                "ListCalls",
                "CallList",
                "calls",
                json,
                out,
                &[
                    "agent_id", "call_id", "from", "to", "state", "hold", "media",
                ],
            )
            .await?
        }
        CtlCommand::Flows => {
            list(
                &mut client,
                "ListFlows",
                "FlowList",
                "flows",
                json,
                out,
                &[
                    "agent_id",
                    "direction",
                    "src",
                    "dst",
                    "ssrc",
                    "payloads",
                    "packets",
                    "lost",
                    "jitter_ms",
                ],
            )
            .await?
        }
        CtlCommand::Bindings => {
            list(
                &mut client,
                "ListBindings",
                "BindingList",
                "bindings",
                json,
                out,
                &[
                    "agent_id", "endpoint", "source", "call_id", "since", "expires",
                ],
            )
            .await?
        }
        CtlCommand::Monitors => {
            list(
                &mut client,
                "ListMonitors",
                "MonitorList",
                "monitors",
                json,
                out,
                &["monitor", "supervisor", "agent", "started"],
            )
            .await?
        }
        CtlCommand::Bind {
            agent,
            endpoint,
            r#for,
        } => {
            let mut f = Frame::new("Bind")
                .with("agent", agent.clone())
                .with("endpoint", endpoint.clone());
            if let Some(d) = r#for {
                f = f.with("seconds", d.as_secs().max(1));
            }
            let reply = client.request(&f, "BindReply", |_| {}).await?;
            check(&reply)?;
            print_reply(
                out,
                &reply,
                json,
                &format!("bound {endpoint} to agent {agent}"),
            )?;
        }
        CtlCommand::Stop { agent } => {
            let Some(agent) = agent else {
                bail!("stop: give the agent (or use --endpoint)");
            };
            let f = Frame::new("StopSilentMonitor").with("agent", agent.clone());
            let reply = client.request(&f, "StopSilentMonitorReply", |_| {}).await?;
            check(&reply)?;
            print_reply(
                out,
                &reply,
                json,
                &format!("stopped monitoring agent {agent}"),
            )?;
        }
        CtlCommand::State { state } => {
            let f = Frame::new("SetAgentState").with("state", state.clone());
            let reply = client.request(&f, "SetAgentStateReply", |_| {}).await?;
            check(&reply)?;
            print_reply(out, &reply, json, &format!("state {state}"))?;
        }
        CtlCommand::Monitor { agent, r#for } => {
            let f = Frame::new("StartSilentMonitor").with("agent", agent.clone());
            let reply = client
                .request(&f, "StartSilentMonitorReply", |_| {})
                .await?;
            check(&reply)?;
            let text = format!(
                "monitoring agent {agent}: monitor {} (audio: monitor service {}, key {})",
                reply.u64("monitor").unwrap_or(0),
                reply.str("monitor_service").unwrap_or("-"),
                reply.str("key").unwrap_or("-"),
            );
            print_reply(out, &reply, json, &text)?;
            tail(&mut client, *r#for, json, out).await?;
        }
        CtlCommand::Events { r#for } => tail(&mut client, *r#for, json, out).await?,
        CtlCommand::Status => bail!("status is a request to a supervisor endpoint: add --endpoint"),
    }
    Ok(ExitCode::SUCCESS)
}

/// One request to a supervisor endpoint's local control (plaintext on loopback).
async fn endpoint_command(addr: &str, args: &CtlArgs) -> Result<ExitCode> {
    let request = match &args.command {
        CtlCommand::Monitor { agent, .. } => Frame::new("Monitor").with("agent", agent.clone()),
        CtlCommand::Stop { .. } => Frame::new("Stop"),
        CtlCommand::Status => Frame::new("Status"),
        _ => bail!("a supervisor endpoint answers monitor, stop and status only"),
    };
    let reply_name = format!("{}Reply", request.msg);
    let mut client = Client::connect(addr, None).await.with_context(|| {
        format!("no supervisor endpoint on {addr} (is `silentmon supervisor` running?)")
    })?;
    let reply = client.request(&request, &reply_name, |_| {}).await?;
    check(&reply)?;
    let out = &mut std::io::stdout().lock();
    let text = match &args.command {
        CtlCommand::Monitor { agent, .. } => format!(
            "monitoring agent {agent} (monitor {}, via {})",
            reply.u64("monitor").unwrap_or(0),
            reply.str("server").unwrap_or("-")
        ),
        CtlCommand::Stop { .. } => "stopped".to_owned(),
        _ => format!(
            "agent {}: {}{}\n{}",
            reply.str("agent").unwrap_or("-"),
            if reply.fields.get("monitoring") == Some(&Value::Bool(true)) {
                "monitoring"
            } else {
                "not monitoring"
            },
            reply
                .str("call_id")
                .map(|c| format!(", call {c}"))
                .unwrap_or_default(),
            reply.str("summary").unwrap_or("")
        ),
    };
    print_reply(out, &reply, args.json, &text)?;
    Ok(ExitCode::SUCCESS)
}

fn print_reply(out: &mut impl Write, reply: &Frame, json: bool, text: &str) -> Result<()> {
    if json {
        writeln!(out, "{}", Value::Object(reply.fields.clone()))?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

/// Sends a list request and prints the items.
#[allow(clippy::too_many_arguments)]
async fn list(
    client: &mut Client,
    request: &str,
    reply: &str,
    key: &str,
    json: bool,
    out: &mut impl Write,
    columns: &[&str],
) -> Result<()> {
    let r = client.request(&Frame::new(request), reply, |_| {}).await?;
    if r.str("result") == Some("refused") {
        check(&r)?;
    }
    let items = r
        .fields
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if json {
        writeln!(out, "{}", Value::Array(items))?;
        return Ok(());
    }
    let cell = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|c| cell(i.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let head: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    writeln!(out, "{}", line(&head))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    if rows.is_empty() {
        writeln!(out, "(none)")?;
    }
    Ok(())
}

/// Prints events until the connection closes, Ctrl-C, or `limit` passes.
async fn tail(
    client: &mut Client,
    limit: Option<Duration>,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = client.next_event() => ev?,
            _ = sleep => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if json {
            writeln!(out, "{}", Value::Object(ev.fields.clone()))?;
        } else {
            let fields: Vec<String> = ev
                .fields
                .iter()
                .filter(|(k, _)| *k != "msg" && *k != "v")
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            writeln!(out, "{} {}", ev.msg, fields.join(" "))?;
        }
        out.flush()?;
    }
}
