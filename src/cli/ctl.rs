//! `silentmon ctl`: the operator's and the tests' client of the control plane (42028). Logs in
//! (supervisor by default; `--mode monitor` or `--mode agent`), sends one typed request
//! (`control::request`), prints its typed reply (`control::reply`) as a table
//! (`report::table`) or, with `--json`, as the JSON the server sent. `monitor` and `events`
//! stay connected and print events until interrupted or `--for` passes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use super::duration::parse_duration;
use crate::control::client::Client;
use crate::control::frame::Frame;
use crate::control::reply::Reply;
use crate::control::request::{self, Bind, Login, Request, StopTarget, AGENT_STATES};
use crate::endpoint::local::{ask, LocalReply, LocalRequest};
use crate::report::table::Table;

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
    /// Agent media bindings: endpoint, source (static, sip, explicit, cti), expiry.
    Bindings,
    /// Active silent monitors.
    Monitors,
    /// The cluster's peers: up or down and since when, round trip, agents each sees,
    /// subscriptions and bytes each way.
    Cluster,
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
    /// With --endpoint: the supervisor's page's URL (with its token); --open opens it.
    Page {
        /// Open it in the desktop's browser (xdg-open).
        #[arg(long)]
        open: bool,
    },
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

/// The TLS client configuration and server name `args` ask for (None: plaintext).
fn tls(args: &CtlArgs) -> Result<Option<(Arc<rustls::ClientConfig>, String)>> {
    if args.insecure {
        return Ok(None);
    }
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
    Ok(Some((config, name)))
}

/// Connects and logs in as `args` say.
async fn connect(args: &CtlArgs) -> Result<Client> {
    let tls = tls(args)?;
    let mut client = Client::connect(
        &args.server,
        tls.as_ref().map(|(c, n)| (Arc::clone(c), n.as_str())),
    )
    .await?;
    let login = Request::Login(Login {
        mode: match args.mode {
            Mode::Supervisor => request::Mode::Supervisor,
            Mode::Monitor => request::Mode::Monitor,
            Mode::Agent => request::Mode::Agent,
        },
        id: args.user.clone(),
        password: super::read_password(args.password_file.as_deref())?.unwrap_or_default(),
        instrument: args.instrument.clone(),
    });
    granted(client.call(&login, |_| {}).await?)?;
    Ok(client)
}

/// A refusal becomes the error, with the server's reason.
fn granted(reply: Reply) -> Result<Reply> {
    match reply {
        Reply::Refused { request, reason } => bail!("{request}Reply: {reason}"),
        r => Ok(r),
    }
}

/// The request a command sends to the control plane (`events` sends none).
fn request_of(command: &CtlCommand) -> Result<Option<Request>> {
    Ok(Some(match command {
        CtlCommand::Agents => Request::ListAgents,
        CtlCommand::Calls => Request::ListCalls,
        CtlCommand::Flows => Request::ListFlows,
        CtlCommand::Bindings => Request::ListBindings,
        CtlCommand::Monitors => Request::ListMonitors,
        CtlCommand::Cluster => Request::ListPeers,
        CtlCommand::Bind {
            agent,
            endpoint,
            r#for,
        } => Request::Bind(Bind {
            agent: agent.clone(),
            endpoint: endpoint
                .parse()
                .map_err(|_| anyhow!("bind: {endpoint:?} is not IP:PORT"))?,
            seconds: r#for.map(|d| d.as_secs().max(1)),
        }),
        CtlCommand::Stop { agent: Some(agent) } => {
            Request::StopSilentMonitor(StopTarget::Agent(agent.clone()))
        }
        CtlCommand::Stop { agent: None } => bail!("stop: give the agent (or use --endpoint)"),
        CtlCommand::State { state } => Request::SetAgentState {
            state: AGENT_STATES
                .into_iter()
                .find(|s| s.eq_ignore_ascii_case(state))
                .ok_or_else(|| anyhow!("state: {state:?} is not one of {AGENT_STATES:?}"))?,
        },
        CtlCommand::Monitor { agent, .. } => Request::StartSilentMonitor {
            agent: agent.clone(),
        },
        CtlCommand::Events { .. } => return Ok(None),
        CtlCommand::Status => bail!("status is a request to a supervisor endpoint: add --endpoint"),
        CtlCommand::Page { .. } => {
            bail!("page is a request to a supervisor endpoint: add --endpoint")
        }
    }))
}

async fn run_async(args: CtlArgs) -> Result<ExitCode> {
    if let Some(endpoint) = &args.endpoint {
        return endpoint_command(endpoint, &args).await;
    }
    let request = request_of(&args.command)?;
    let mut client = connect(&args).await?;
    let out = &mut std::io::stdout().lock();
    if let Some(request) = request {
        let reply = granted(client.call(&request, |_| {}).await?)?;
        print_reply(out, &request, &reply, args.json)?;
    }
    match &args.command {
        CtlCommand::Events { r#for } | CtlCommand::Monitor { r#for, .. } => {
            tail(&mut client, *r#for, args.json, out).await
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints a granted reply: lists as tables (or their items as a JSON array), the others as a
/// line (or the server's JSON object).
fn print_reply(out: &mut impl Write, request: &Request, reply: &Reply, json: bool) -> Result<()> {
    let table = match reply {
        Reply::AgentList(v) => items(v, &["agent", "extension", "team", "state", "appliance"]),
        Reply::CallList(v) => items(
            v,
            &[
                "agent_id",
                "call_id",
                "from",
                "to",
                "state",
                "hold",
                "media",
                "appliance",
            ],
        ),
        Reply::FlowList(v) => items(
            v,
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
        ),
        Reply::BindingList(v) => items(
            v,
            &[
                "agent_id", "endpoint", "source", "call_id", "since", "expires",
            ],
        ),
        Reply::MonitorList(v) => items(
            v,
            &["monitor", "supervisor", "agent", "started", "appliance"],
        ),
        Reply::PeerList(v) => items(
            v,
            &[
                "name",
                "address",
                "up",
                "since",
                "rtt_ms",
                "agents",
                "asked",
                "served",
                "bytes_in",
                "bytes_out",
            ],
        ),
        other => {
            let line = describe(request, other);
            return print_frame(out, &other.to_frame(), json, &line);
        }
    };
    let (values, columns) = table;
    if json {
        writeln!(out, "{}", Value::Array(values))?;
    } else {
        write!(out, "{}", Table::json_rows(columns, &values).render())?;
    }
    Ok(())
}

/// A list's items as JSON values, with the columns its table shows.
fn items<'c, T: Serialize>(v: &[T], columns: &'c [&'c str]) -> (Vec<Value>, &'c [&'c str]) {
    let values = v
        .iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    (values, columns)
}

/// One line for a reply that is not a list.
fn describe(request: &Request, reply: &Reply) -> String {
    match (request, reply) {
        (_, Reply::Bind { agent, endpoint }) => format!("bound {endpoint} to agent {agent}"),
        (Request::StopSilentMonitor(StopTarget::Agent(a)), _) => {
            format!("stopped monitoring agent {a}")
        }
        (Request::SetAgentState { state }, _) => format!("state {state}"),
        (_, Reply::StartSilentMonitor(g)) => format!(
            "monitoring agent {}: monitor {} (audio: monitor service {}, key {})",
            g.agent,
            g.monitor,
            g.monitor_service.as_deref().unwrap_or("-"),
            g.key
        ),
        (_, other) => format!("{other:?}"),
    }
}

/// One request to a supervisor endpoint's local control (plaintext on loopback).
async fn endpoint_command(addr: &str, args: &CtlArgs) -> Result<ExitCode> {
    let request = match &args.command {
        CtlCommand::Monitor { agent, .. } => LocalRequest::Monitor {
            agent: agent.clone(),
        },
        CtlCommand::Stop { .. } => LocalRequest::Stop,
        CtlCommand::Status => LocalRequest::Status,
        CtlCommand::Page { .. } => LocalRequest::Page,
        _ => bail!("a supervisor endpoint answers monitor, stop, status and page only"),
    };
    let reply = ask(addr, &request)
        .await
        .map_err(|e| anyhow!("{e} (is `silentmon supervisor` running?)"))?;
    let text = match &reply {
        LocalReply::Refused { msg, reason } => bail!("{msg}: {reason}"),
        LocalReply::Monitoring(m) => format!(
            "monitoring agent {} (monitor {}, via {})",
            m.agent,
            m.monitor.map_or("-".into(), |m| m.to_string()),
            m.server.as_deref().unwrap_or("-")
        ),
        LocalReply::Stopped => "stopped".to_owned(),
        LocalReply::Done(_) => "done".to_owned(),
        LocalReply::Page(url) => {
            if matches!(args.command, CtlCommand::Page { open: true }) {
                crate::endpoint::shell::open_in_browser(url);
            }
            url.clone()
        }
        LocalReply::Status(s) => s.describe(),
    };
    print_frame(
        &mut std::io::stdout().lock(),
        &reply.to_frame(),
        args.json,
        &text,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `text`, or with `--json` the frame's JSON object.
fn print_frame(out: &mut impl Write, frame: &Frame, json: bool, text: &str) -> Result<()> {
    if json {
        writeln!(out, "{}", Value::Object(frame.fields.clone()))?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

/// Prints events until the connection closes, Ctrl-C, or `limit` passes.
async fn tail(
    client: &mut Client,
    limit: Option<Duration>,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
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
            _ = sleep => return Ok(ExitCode::SUCCESS),
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let fields: Vec<String> = ev
            .fields
            .iter()
            .filter(|(k, _)| *k != "msg" && *k != "v")
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let line = format!("{} {}", ev.msg, fields.join(" "));
        print_frame(out, &ev, json, &line)?;
    }
}
