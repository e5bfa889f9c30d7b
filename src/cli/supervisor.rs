//! `silentmon supervisor`: the supervisor's desktop endpoint. Arguments -> settings (the
//! configuration file with the flags on top) -> `endpoint::shell::run` (which logs in, attaches,
//! plays, records and serves the local control port; `endpoint::controller` decides) -> exit
//! code. `--list-devices` lists the output devices.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::duration::parse_duration;
use crate::config::supervisor::SupervisorSettings;
use crate::endpoint::shell::summary;

/// Arguments of `silentmon supervisor`.
#[derive(Debug, Args)]
pub(crate) struct SupervisorArgs {
    /// Configuration file (default ~/.config/silentmon/supervisor.toml when it exists); the
    /// flags below override its keys.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A control plane of the cluster, HOST:PORT (repeat for each appliance).
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// A monitor service, HOST:PORT (repeat; default: the control plane's host, port 42228).
    #[arg(long = "monitor-service", value_name = "HOST:PORT")]
    monitor_services: Vec<String>,
    /// Supervisor id.
    #[arg(long, short)]
    user: Option<String>,
    /// File whose first line is the password (else $SILENTMON_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// CA certificate of the appliances.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate for the monitor service (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Name in the appliances' certificates (default: each address's host).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Plaintext links (only against appliances running with --insecure).
    #[arg(long)]
    insecure: bool,
    /// Local control address (loopback only).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Record every monitored call as a WAV file in DIR.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Agent on the left channel, caller on the right (default: mono mix).
    #[arg(long)]
    stereo: bool,
    /// Output device: a name from --list-devices (the first column, or the description;
    /// default: the system's default output).
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// The output device's period in ms (default 8; 0: the device's own default, through
    /// PulseAudio 10.7 ms but about 25 ms of delay); two periods are queued in the device,
    /// so a longer one absorbs stalls of a loaded desktop or VM (gaps in the sound) at that
    /// much latency.
    #[arg(long, value_name = "MS")]
    device_period_ms: Option<u32>,
    /// The least audio the output device's queue holds, just before the endpoint refills it,
    /// in ms (default 10; the endpoint holds its queue there): it absorbs the endpoint's own
    /// scheduling delays. Less is that much less latency; too little gives gaps (underruns,
    /// in `ctl --endpoint status`).
    #[arg(long, value_name = "MS")]
    cushion_ms: Option<u32>,
    /// List the output devices and exit.
    #[arg(long)]
    list_devices: bool,
    /// Volume, 1.0 = as captured.
    #[arg(long)]
    volume: Option<f32>,
    /// Start monitoring this agent right away.
    #[arg(long, value_name = "AGENT")]
    monitor: Option<String>,
    /// Open the supervisor's page in the desktop's browser (xdg-open). The page's URL, with
    /// its per-start token, is printed either way.
    #[arg(long)]
    open: bool,
    /// Stop after this long (tests; default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    run_for: Option<Duration>,
}

pub(crate) fn run(args: SupervisorArgs) -> Result<ExitCode> {
    if args.list_devices {
        let devices = crate::endpoint::playout::list_devices();
        if devices.is_empty() {
            println!("no output device found");
        }
        // The name `--device` takes, then what it is; the default output is starred.
        let width = devices.iter().map(|d| d.id.len()).max().unwrap_or(0);
        for d in devices {
            let mark = if d.default { '*' } else { ' ' };
            println!("{mark} {:width$}  {}", d.id, d.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let settings = settings(&args)?;
    if let Some(name) = &settings.device {
        if !crate::endpoint::playout::has_device(name) {
            // Not fatal: a headset plugged in later is picked up by the reopen every second.
            let devices = crate::endpoint::playout::list_devices();
            let names: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
            tracing::warn!(
                device = %name,
                available = %names.join(", "),
                "no output device by this name now (see --list-devices); trying every second"
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("silentmon-endpoint")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let password = super::read_password(settings.password_file.as_deref())?;
    let stop = super::wait_for_stop(args.run_for);
    let report = rt.block_on(crate::endpoint::shell::run_with_page(
        settings, password, args.open, stop,
    ))?;
    eprintln!("silentmon supervisor: {}", summary(&report));
    Ok(ExitCode::SUCCESS)
}

/// The configuration file (if any) with the flags on top.
fn settings(a: &SupervisorArgs) -> Result<SupervisorSettings> {
    let mut s = match &a.config {
        Some(p) => SupervisorSettings::load(p)?,
        None => {
            let default = std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".config/silentmon/supervisor.toml"));
            match default.filter(|p| p.exists()) {
                Some(p) => SupervisorSettings::load(&p)?,
                None => SupervisorSettings::default(),
            }
        }
    };
    if !a.servers.is_empty() {
        s.servers = a.servers.clone();
    }
    if !a.monitor_services.is_empty() {
        s.monitor_services = a.monitor_services.clone();
    }
    macro_rules! take {
        ($field:ident) => {
            if let Some(v) = &a.$field {
                s.$field = v.clone().into();
            }
        };
    }
    take!(password_file);
    take!(cert);
    take!(key);
    take!(server_name);
    take!(record);
    take!(device);
    take!(monitor);
    if let Some(u) = &a.user {
        s.user = u.clone();
    }
    if let Some(c) = &a.ca {
        s.ca = c.clone();
    }
    if let Some(l) = a.listen {
        if !l.ip().is_loopback() {
            bail!("--listen {l}: local control must be on a loopback address");
        }
        s.listen = l;
    }
    if let Some(ms) = a.device_period_ms {
        crate::config::supervisor::check_device_period(ms)
            .map_err(|problem| anyhow::anyhow!("--device-period-ms: {problem}"))?;
        s.device_period_ms = ms;
    }
    if let Some(ms) = a.cushion_ms {
        crate::config::supervisor::check_cushion(ms)
            .map_err(|problem| anyhow::anyhow!("--cushion-ms: {problem}"))?;
        s.cushion_ms = Some(ms);
    }
    if let Some(v) = a.volume {
        if !(0.0..=4.0).contains(&v) {
            bail!("--volume {v} is not within 0..=4");
        }
        s.volume = v;
    }
    s.stereo |= a.stereo;
    s.insecure |= a.insecure;
    if s.servers.is_empty() {
        bail!("no appliance: give --server HOST:42028 (or `servers` in the configuration)");
    }
    if s.user.is_empty() {
        bail!("no supervisor: give --user ID (or `user` in the configuration)");
    }
    if !s.insecure && s.cert.is_none() {
        bail!(
            "the monitor service requires a client certificate: give --cert FILE --key FILE \
             (made with `silentmon certs request` and `certs sign --client`)"
        );
    }
    Ok(s)
}
