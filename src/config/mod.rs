//! The appliance's configuration: one TOML file (default /etc/silentmon/silentmon.toml) whose
//! sections mirror the CTI OS registry keys. Raw serde structs are validated once into typed
//! [`Settings`]; every key has a working default (the empty file is a valid configuration), and
//! every error names the file and the key. Unknown keys are errors (a typo must not pass
//! silently).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod cti;
pub mod supervisor;

pub use cti::{AgentField, CtiSettings};

use crate::binding::Agent;
use crate::security::lockout::LockoutConfig;
use crate::time::Span;

/// Default location.
pub const DEFAULT_PATH: &str = "/etc/silentmon/silentmon.toml";

/// Configuration errors: the file, the key, the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (toml's message names the key and line).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// A value that parsed but makes no sense.
    #[error("{path}: key `{key}`: {problem}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Dotted key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    capture: RawCapture,
    control: RawControl,
    monitor: RawMonitor,
    cluster: RawCluster,
    cti: cti::RawCti,
    security: RawSecurity,
    /// A further file with `[[agent]]` and `[[supervisor]]` tables (relative to this one).
    directory: Option<PathBuf>,
    #[serde(rename = "agent")]
    agents: Vec<RawAgent>,
    #[serde(rename = "supervisor")]
    supervisors: Vec<RawSupervisor>,
}

/// The file `directory` names: agents and supervisors only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDirectory {
    #[serde(rename = "agent")]
    agents: Vec<RawAgent>,
    #[serde(rename = "supervisor")]
    supervisors: Vec<RawSupervisor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCapture {
    interfaces: Vec<String>,
    filter: Option<String>,
    filter_file: Option<PathBuf>,
    buffer_mib: u32,
    snaplen: u32,
    timeout_ms: u64,
}

impl Default for RawCapture {
    fn default() -> Self {
        RawCapture {
            interfaces: Vec::new(),
            filter: None,
            filter_file: None,
            buffer_mib: 64,
            snaplen: 65535,
            timeout_ms: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawControl {
    listen: String,
    heartbeat_interval_ms: u64,
    heartbeat_retries: u32,
    monitor_mode_disable_threshold: u32,
    monitor_mode_disable_duration_min: u64,
    max_monitor_mode_connections: u32,
    monitor_mode_password_hash: Option<String>,
    metrics_listen: String,
    login_timeout_ms: u64,
    max_unauthenticated_per_address: u32,
    max_unauthenticated: u32,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            listen: "0.0.0.0:42028".into(),
            heartbeat_interval_ms: 60_000,
            heartbeat_retries: 5,
            monitor_mode_disable_threshold: 3,
            monitor_mode_disable_duration_min: 15,
            max_monitor_mode_connections: 7,
            monitor_mode_password_hash: None,
            metrics_listen: "127.0.0.1:9542".into(),
            login_timeout_ms: 5_000,
            max_unauthenticated_per_address: 8,
            max_unauthenticated: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMonitor {
    listen: String,
    tos: u8,
    heartbeat_interval_s: u64,
    heartbeat_timeout_s: u64,
    stop_sm_non_acd_call: bool,
}

impl Default for RawMonitor {
    fn default() -> Self {
        RawMonitor {
            listen: "0.0.0.0:42228".into(),
            tos: 0xB8,
            heartbeat_interval_s: 5,
            heartbeat_timeout_s: 15,
            stop_sm_non_acd_call: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCluster {
    name: Option<String>,
    listen: String,
    peers: Vec<String>,
    peer: Vec<RawPeer>,
    heartbeat_interval_s: u64,
    heartbeat_misses: u32,
}

impl Default for RawCluster {
    fn default() -> Self {
        RawCluster {
            name: None,
            listen: "0.0.0.0:42029".into(),
            peers: Vec::new(),
            peer: Vec::new(),
            heartbeat_interval_s: 1,
            heartbeat_misses: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Option<String>,
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSecurity {
    certs_dir: PathBuf,
    insecure: bool,
    audit_log: PathBuf,
    passwordless_logins: bool,
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            certs_dir: "/etc/silentmon/certs".into(),
            insecure: false,
            audit_log: "/var/lib/silentmon/audit.jsonl".into(),
            passwordless_logins: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    extension: String,
    #[serde(default)]
    mobile_number: Option<String>,
    #[serde(default)]
    phone_ips: Vec<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    warn_if_silent_monitored: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    id: String,
    teams: Vec<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
}

/// Capture settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSettings {
    /// SPAN interfaces (none: replay or nothing).
    pub interfaces: Vec<String>,
    /// BPF filter (inline or from the filter file).
    pub filter: Option<String>,
    /// Kernel ring size in bytes.
    pub buffer_bytes: u64,
    /// Bytes kept per frame.
    pub snaplen: u32,
    /// Packet timeout.
    pub timeout: Duration,
}

/// Control-plane settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlSettings {
    /// Listen address (42028).
    pub listen: SocketAddr,
    /// Server-to-client heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before a client is dropped.
    pub heartbeat_retries: u32,
    /// Monitor-mode lockout.
    pub lockout: LockoutConfig,
    /// Monitor-mode password hash (argon2 PHC string); None disables monitor mode.
    pub monitor_mode_password_hash: Option<String>,
    /// Metrics HTTP listen address.
    pub metrics_listen: SocketAddr,
    /// A connection must log in within this time.
    pub login_timeout: Duration,
    /// Most connections without a login from one address.
    pub max_unauthenticated_per_address: usize,
    /// Most connections without a login in all.
    pub max_unauthenticated: usize,
}

/// Monitor-service settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorSettings {
    /// Listen address (42228).
    pub listen: SocketAddr,
    /// TOS byte of media sockets (0xB8 = DSCP EF).
    pub tos: u8,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Stop monitoring on non-ACD calls.
    pub stop_sm_non_acd_call: bool,
}

/// Cluster settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// This appliance's name in the cluster (a name its certificate carries).
    pub name: String,
    /// Peer-link listen address (42029).
    pub listen: SocketAddr,
    /// The other appliances.
    pub peers: Vec<PeerSettings>,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Misses before a peer is dead.
    pub heartbeat_misses: u32,
}

/// Another appliance of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    /// The name its certificate carries (default: the host part of its address).
    pub name: String,
    /// Where to dial it, `host:port`.
    pub address: String,
}

/// A supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervisor {
    /// Id.
    pub id: String,
    /// Teams the supervisor may monitor.
    pub teams: Vec<String>,
    /// Password hash.
    pub password_hash: Option<String>,
    /// The name the supervisor's client certificate carries (default: the id): a monitor
    /// granted to the supervisor attaches only from a connection presenting it.
    pub certificate: String,
}

/// Agent settings beyond bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    /// Binding data.
    pub agent: Agent,
    /// Team.
    pub team: Option<String>,
    /// Password hash.
    pub password_hash: Option<String>,
    /// Tell the agent when a supervisor starts listening.
    pub warn_if_silent_monitored: bool,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Capture.
    pub capture: CaptureSettings,
    /// Control plane.
    pub control: ControlSettings,
    /// Monitor service.
    pub monitor: MonitorSettings,
    /// Cluster.
    pub cluster: ClusterSettings,
    /// The CTI Server feed (None: not configured).
    pub cti: Option<CtiSettings>,
    /// Directory of the CA, certificates and keys.
    pub certs_dir: PathBuf,
    /// Plaintext links (labs only).
    pub insecure: bool,
    /// Audit log (JSON lines).
    pub audit_log: PathBuf,
    /// Accounts without a `password_hash` log in with any password (labs only); otherwise
    /// they cannot log in.
    pub passwordless_logins: bool,
    /// Agents.
    pub agents: Vec<AgentSettings>,
    /// Supervisors.
    pub supervisors: Vec<Supervisor>,
}

impl Settings {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Settings, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::parse(&text, path)
    }

    /// Validates `text` (errors name `path`); the files it names (`directory`,
    /// `capture.filter_file`) are read from the file system.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, Error> {
        Settings::parse_with(text, path, &mut |p| std::fs::read_to_string(p))
    }

    /// [`Settings::parse`] with the files the configuration names read by `read` (tests and
    /// the fuzz target give them without a file system).
    pub fn parse_with(
        text: &str,
        path: &Path,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Settings, Error> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let v = Validate { path };
        v.merge_directory(&mut raw, read)?;
        let filter = v.capture_filter(&raw.capture, read)?;
        v.limits(&raw)?;
        v.password_hashes(&raw)?;
        let agents = v.agents(&raw.agents)?;
        let addr = |key: &str, text: &str| v.addr(key, text);
        let beside = |file: &Path| beside(path, file);
        let (name, peers) = v.cluster(&raw.cluster)?;
        let cti = v.cti(&raw.cti)?;
        Ok(Settings {
            capture: CaptureSettings {
                interfaces: raw.capture.interfaces,
                filter,
                buffer_bytes: raw.capture.buffer_mib as u64 * 1024 * 1024,
                snaplen: raw.capture.snaplen,
                timeout: Duration::from_millis(raw.capture.timeout_ms),
            },
            control: ControlSettings {
                listen: addr("control.listen", &raw.control.listen)?,
                heartbeat_interval: Duration::from_millis(raw.control.heartbeat_interval_ms),
                heartbeat_retries: raw.control.heartbeat_retries,
                lockout: LockoutConfig {
                    threshold: raw.control.monitor_mode_disable_threshold,
                    duration: Span::from_secs(
                        raw.control.monitor_mode_disable_duration_min as i64 * 60,
                    ),
                    max_connections: raw.control.max_monitor_mode_connections,
                },
                monitor_mode_password_hash: raw.control.monitor_mode_password_hash,
                metrics_listen: addr("control.metrics_listen", &raw.control.metrics_listen)?,
                login_timeout: Duration::from_millis(raw.control.login_timeout_ms),
                max_unauthenticated_per_address: raw.control.max_unauthenticated_per_address
                    as usize,
                max_unauthenticated: raw.control.max_unauthenticated as usize,
            },
            monitor: MonitorSettings {
                listen: addr("monitor.listen", &raw.monitor.listen)?,
                tos: raw.monitor.tos,
                heartbeat_interval: Duration::from_secs(raw.monitor.heartbeat_interval_s),
                heartbeat_timeout: Duration::from_secs(raw.monitor.heartbeat_timeout_s),
                stop_sm_non_acd_call: raw.monitor.stop_sm_non_acd_call,
            },
            cluster: ClusterSettings {
                name,
                listen: addr("cluster.listen", &raw.cluster.listen)?,
                peers,
                heartbeat_interval: Duration::from_secs(raw.cluster.heartbeat_interval_s),
                heartbeat_misses: raw.cluster.heartbeat_misses,
            },
            cti,
            certs_dir: beside(&raw.security.certs_dir),
            insecure: raw.security.insecure,
            audit_log: beside(&raw.security.audit_log),
            passwordless_logins: raw.security.passwordless_logins,
            agents,
            supervisors: raw
                .supervisors
                .into_iter()
                .map(|s| Supervisor {
                    certificate: s.certificate.unwrap_or_else(|| s.id.clone()),
                    id: s.id,
                    teams: s.teams,
                    password_hash: s.password_hash,
                })
                .collect(),
        })
    }
}

impl Settings {
    /// What an admin should know about a configuration that is valid (`--check-config` and
    /// the server's start print them).
    pub fn warnings(&self) -> Vec<String> {
        let s = self;
        let mut w = Vec::new();
        if !s.control.metrics_listen.ip().is_loopback() {
            w.push(format!(
                "control.metrics_listen = {} exposes the metrics (agents' call counts, monitors) \
                 without authentication beyond this host: prefer a loopback address and a reverse \
                 proxy, or firewall the port",
                s.control.metrics_listen
            ));
        }
        let cannot: Vec<String> = s
            .agents
            .iter()
            .filter(|a| a.password_hash.is_none())
            .map(|a| format!("agent {}", a.agent.id))
            .chain(
                s.supervisors
                    .iter()
                    .filter(|x| x.password_hash.is_none())
                    .map(|x| format!("supervisor {}", x.id)),
            )
            .collect();
        if !cannot.is_empty() && s.passwordless_logins {
            w.push(format!(
                "security.passwordless_logins = true: {} log in with any password (labs only)",
                name_some(&cannot)
            ));
        } else if !cannot.is_empty() {
            w.push(format!(
                "{} accounts have no password_hash and cannot log in: {} (make one with \
                 `silentmon passwd`)",
                cannot.len(),
                name_some(&cannot)
            ));
        }
        w
    }
}

/// At most five of `names`, then how many more (a site has thousands of agents).
fn name_some(names: &[String]) -> String {
    const NAMED: usize = 5;
    let shown = names[..names.len().min(NAMED)].join(", ");
    match names.len().saturating_sub(NAMED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The checks of one configuration file; every error names the file and the key.
struct Validate<'p> {
    path: &'p Path,
}

impl Validate<'_> {
    fn invalid(&self, key: &str, problem: String) -> Error {
        Error::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem,
        }
    }

    fn addr(&self, key: &str, text: &str) -> Result<SocketAddr, Error> {
        text.parse::<SocketAddr>()
            .map_err(|_| self.invalid(key, format!("{text:?} is not an address:port")))
    }

    /// This appliance's name and its peers: `peers = ["host:port"]` (named by the host) and
    /// `[[cluster.peer]]` tables; names unique and not this appliance's.
    fn cluster(&self, c: &RawCluster) -> Result<(String, Vec<PeerSettings>), Error> {
        let mut peers = Vec::new();
        let shorthand = c.peers.iter().map(|a| (None, a));
        let tables = c.peer.iter().map(|p| (p.name.clone(), &p.address));
        for (name, address) in shorthand.chain(tables) {
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                let problem = format!("{address:?} is not host:port");
                return Err(self.invalid("cluster.peers", problem));
            }
            let name = name.unwrap_or_else(|| host_of(address));
            if peers.iter().any(|p: &PeerSettings| p.name == name) {
                return Err(self.invalid("cluster.peer.name", format!("{name:?} is listed twice")));
            }
            peers.push(PeerSettings {
                name,
                address: address.clone(),
            });
        }
        if peers.len() > usize::from(crate::router::remote::MAX_PEERS) {
            return Err(self.invalid("cluster.peers", "at most 127 peers".into()));
        }
        let name = match (&c.name, peers.is_empty()) {
            (Some(n), _) if peers.iter().any(|p| p.name == *n) => {
                return Err(self.invalid("cluster.name", format!("{n:?} is also listed as a peer")))
            }
            (Some(n), _) => n.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(self.invalid(
                    "cluster.name",
                    "name this appliance (a name its certificate carries) when peers are listed"
                        .into(),
                ))
            }
        };
        Ok((name, peers))
    }

    /// Agents and supervisors may live in a file of their own (kept by another team).
    fn merge_directory(
        &self,
        raw: &mut RawConfig,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<(), Error> {
        let Some(dir_file) = raw.directory.take() else {
            return Ok(());
        };
        let file = beside(self.path, &dir_file);
        let text = read(&file).map_err(|e| {
            self.invalid("directory", format!("cannot read {}: {e}", file.display()))
        })?;
        let d: RawDirectory = toml::from_str(&text).map_err(|e| Error::Parse {
            path: file.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        raw.agents.extend(d.agents);
        raw.supervisors.extend(d.supervisors);
        Ok(())
    }

    /// The capture filter: given inline or in a file beside the configuration.
    fn capture_filter(
        &self,
        c: &RawCapture,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Option<String>, Error> {
        match (&c.filter, &c.filter_file) {
            (Some(_), Some(_)) => Err(self.invalid(
                "capture.filter_file",
                "set capture.filter or capture.filter_file, not both".into(),
            )),
            (Some(f), None) => Ok(Some(f.clone())),
            (None, Some(file)) => {
                let file = beside(self.path, file);
                let text = read(&file).map_err(|e| {
                    self.invalid(
                        "capture.filter_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                Ok(Some(crate::capture::read_filter_file(&text)))
            }
            (None, None) => Ok(None),
        }
    }

    /// Numbers that must lie within their ranges.
    fn limits(&self, raw: &RawConfig) -> Result<(), Error> {
        let within = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(self.invalid(key, format!("{v} is not within {lo}..={hi}")))
            }
        };
        within(
            "capture.buffer_mib",
            u64::from(raw.capture.buffer_mib),
            1,
            4096,
        )?;
        within(
            "capture.snaplen",
            u64::from(raw.capture.snaplen),
            64,
            262_144,
        )?;
        within(
            "control.login_timeout_ms",
            raw.control.login_timeout_ms,
            100,
            60_000,
        )?;
        let c = &raw.control;
        if c.max_unauthenticated_per_address == 0
            || c.max_unauthenticated < c.max_unauthenticated_per_address
        {
            return Err(self.invalid(
                "control.max_unauthenticated",
                "must be at least control.max_unauthenticated_per_address, which must be at \
                 least 1"
                    .into(),
            ));
        }
        if c.monitor_mode_disable_threshold == 0 {
            return Err(self.invalid(
                "control.monitor_mode_disable_threshold",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Every password hash is one we can check.
    fn password_hashes(&self, raw: &RawConfig) -> Result<(), Error> {
        let monitor = (
            "control.monitor_mode_password_hash",
            &raw.control.monitor_mode_password_hash,
        );
        let agents = raw
            .agents
            .iter()
            .map(|a| ("agent.password_hash", &a.password_hash));
        let supervisors = raw
            .supervisors
            .iter()
            .map(|s| ("supervisor.password_hash", &s.password_hash));
        for (key, hash) in std::iter::once(monitor).chain(agents).chain(supervisors) {
            if let Some(h) = hash {
                crate::security::password::check_hash(h)
                    .map_err(|e| self.invalid(key, e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The agents: ids unique, phone addresses IP addresses.
    fn agents(&self, raw: &[RawAgent]) -> Result<Vec<AgentSettings>, Error> {
        let mut agents: Vec<AgentSettings> = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            if agents.iter().any(|x| x.agent.id == a.id) {
                return Err(self.invalid(
                    &format!("agent[{i}].id"),
                    format!("{:?} is defined twice", a.id),
                ));
            }
            let mut phone_ips = Vec::new();
            for ip in &a.phone_ips {
                phone_ips.push(ip.parse::<IpAddr>().map_err(|_| {
                    self.invalid(
                        &format!("agent[{i}].phone_ips"),
                        format!("{ip:?} is not an IP address"),
                    )
                })?);
            }
            agents.push(AgentSettings {
                agent: Agent {
                    id: a.id.clone(),
                    extension: a.extension.clone(),
                    mobile_number: a.mobile_number.clone(),
                    phone_ips,
                },
                team: a.team.clone(),
                password_hash: a.password_hash.clone(),
                warn_if_silent_monitored: a.warn_if_silent_monitored,
            });
        }
        Ok(agents)
    }
}

/// `host:port` -> host (brackets of an IPv6 literal removed): the name an appliance's
/// certificate is checked against when no other is configured.
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// `file` as a configuration at `config` means it: a relative path is relative to the
/// configuration's directory (not to the working directory, which is / under systemd).
fn beside(config: &Path, file: &Path) -> PathBuf {
    match config.parent() {
        Some(base) if file.is_relative() => base.join(file),
        _ => file.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, Error> {
        Settings::parse(text, Path::new("/etc/silentmon/silentmon.toml"))
    }

    #[test]
    fn parse_with_reads_the_named_files_through_the_reader() {
        // The fuzz target's seed, with the files it names given in memory.
        let text = include_str!("../../fuzz/seeds/config_toml/appliance.toml");
        let mut asked = Vec::new();
        let mut read = |p: &Path| {
            asked.push(p.to_owned());
            match p.file_name().and_then(|n| n.to_str()) {
                Some("agents.toml") => Ok("[[agent]]\nid = \"5001\"\nextension = \"5001\"\n\
                                           team = \"t\"\n"
                    .to_owned()),
                Some("span.bpf") => Ok("# comment\nudp or (vlan and udp)\n".to_owned()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        let s = Settings::parse_with(text, Path::new("/etc/silentmon/silentmon.toml"), &mut read)
            .unwrap();
        let mut ids: Vec<&str> = s.agents.iter().map(|a| a.agent.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["5001", "5002"]);
        assert_eq!(s.capture.filter.as_deref(), Some("udp or (vlan and udp)"));
        assert_eq!(
            asked,
            [
                Path::new("/etc/silentmon/agents.toml"),
                Path::new("/etc/silentmon/span.bpf")
            ]
        );
        // Relative paths of the security section are relative to the file too.
        let s = Settings::parse_with(
            "[security]\ncerts_dir = \"certs\"\naudit_log = \"audit.jsonl\"\n",
            Path::new("/etc/silentmon/silentmon.toml"),
            &mut |_| Err(std::io::ErrorKind::NotFound.into()),
        )
        .unwrap();
        assert_eq!(s.certs_dir, Path::new("/etc/silentmon/certs"));
        assert_eq!(s.audit_log, Path::new("/etc/silentmon/audit.jsonl"));
        // A file the reader does not have is named with its key.
        let e = Settings::parse_with(
            "directory = \"gone.toml\"\n",
            Path::new("/etc/silentmon/silentmon.toml"),
            &mut |_| Err(std::io::ErrorKind::NotFound.into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("directory") && e.contains("gone.toml"), "{e}");
    }

    #[test]
    fn the_empty_file_is_a_working_configuration() {
        let s = parse("").unwrap();
        assert_eq!(s.control.listen, "0.0.0.0:42028".parse().unwrap());
        assert_eq!(s.monitor.listen.port(), 42228);
        assert_eq!(s.cluster.listen.port(), 42029);
        assert_eq!(s.monitor.tos, 0xB8);
        assert_eq!(s.control.lockout, LockoutConfig::default());
        assert_eq!(s.capture.buffer_bytes, 64 << 20);
        assert!(s.agents.is_empty() && !s.insecure);
    }

    #[test]
    fn agents_supervisors_and_sections() {
        let s = parse(
            r#"
            [capture]
            interfaces = ["eth1"]
            filter = "udp or (vlan and udp)"
            [cluster]
            name = "a"
            peers = ["10.0.0.2:42029"]
            [[agent]]
            id = "a1"
            extension = "5001"
            mobile_number = "+4915112345678"
            phone_ips = ["10.2.0.1"]
            team = "blue"
            warn_if_silent_monitored = true
            [[supervisor]]
            id = "s1"
            teams = ["blue"]
            "#,
        )
        .unwrap();
        assert_eq!(s.capture.interfaces, vec!["eth1"]);
        assert_eq!(
            s.agents[0].agent.phone_ips,
            vec!["10.2.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(s.agents[0].team.as_deref(), Some("blue"));
        assert_eq!(s.supervisors[0].teams, vec!["blue"]);
        assert_eq!(s.cluster.peers.len(), 1);
    }

    #[test]
    fn agents_and_supervisors_from_a_directory_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("directory.toml"),
            "[[agent]]\nid = \"5002\"\nextension = \"5002\"\nteam = \"blue\"\n\
             [[supervisor]]\nid = \"s2\"\nteams = [\"blue\"]\n",
        )
        .unwrap();
        let main = dir.path().join("silentmon.toml");
        let s = Settings::parse(
            "directory = \"directory.toml\"\n[[agent]]\nid = \"5001\"\nextension = \"5001\"\n",
            &main,
        )
        .unwrap();
        let ids: Vec<&str> = s.agents.iter().map(|a| a.agent.id.as_str()).collect();
        assert_eq!(ids, ["5001", "5002"]);
        assert_eq!(s.supervisors[0].id, "s2");
        // Its errors name that file; a missing one names the key.
        std::fs::write(dir.path().join("bad.toml"), "[[agent]]\nid = \"x\"\n").unwrap();
        let e = Settings::parse("directory = \"bad.toml\"\n", &main)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains("extension"), "{e}");
        let e = Settings::parse("directory = \"none.toml\"\n", &main)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`directory`") && e.contains("none.toml"), "{e}");
        // The same agent twice across both files is an error.
        let e = Settings::parse(
            "directory = \"directory.toml\"\n[[agent]]\nid = \"5002\"\nextension = \"1\"\n",
            &main,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("[control]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("silentmon.toml") && e.contains("control.listen") && e.contains("nowhere"),
            "{e}"
        );
        let e = parse("[capture]\nbuffer_mb = 3\n").unwrap_err().to_string();
        assert!(e.contains("buffer_mb"), "{e}");
        let e = parse("[capture]\nsnaplen = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("snaplen"), "{e}");
        let e = parse("[[agent]]\nid = \"a\"\nextension = \"1\"\nphone_ips = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent[0].phone_ips"), "{e}");
        let e = parse(
            "[[agent]]\nid = \"a\"\nextension = \"1\"\n[[agent]]\nid = \"a\"\nextension = \"2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agent[1].id") && e.contains("twice"), "{e}");
        let e = parse("[control]\nmonitor_mode_password_hash = \"plain\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("control.monitor_mode_password_hash"), "{e}");
        let e = Settings::load(Path::new("/nonexistent/silentmon.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/silentmon.toml"), "{e}");
    }

    #[test]
    fn a_warning_names_five_accounts_and_counts_the_rest() {
        let mut text = String::new();
        for i in 0..12 {
            text.push_str(&format!("[[agent]]\nid = \"{i}\"\nextension = \"{i}\"\n"));
        }
        let s = Settings::parse(&text, Path::new("silentmon.toml")).unwrap();
        let w = s.warnings();
        let line = w.iter().find(|l| l.contains("cannot log in")).unwrap();
        assert!(
            line.starts_with(
                "12 accounts have no password_hash and cannot log in: agent 0, \
                              agent 1, agent 2, agent 3, agent 4 and 7 more"
            ),
            "{line}"
        );
    }

    #[test]
    fn the_cluster_names_this_appliance_and_its_peers() {
        let s = parse(
            r#"
            [cluster]
            name = "appliance-a"
            peers = ["10.0.0.2:42029"]
            [[cluster.peer]]
            name = "appliance-c"
            address = "c.example:42029"
            "#,
        )
        .unwrap();
        assert_eq!(s.cluster.name, "appliance-a");
        let peers: Vec<(&str, &str)> = s
            .cluster
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.address.as_str()))
            .collect();
        assert_eq!(
            peers,
            [
                ("10.0.0.2", "10.0.0.2:42029"),
                ("appliance-c", "c.example:42029")
            ]
        );
        assert_eq!(s.cluster.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(s.cluster.heartbeat_misses, 3);
        for (text, key) in [
            ("[cluster]\npeers = [\"10.0.0.2:42029\"]", "cluster.name"),
            ("[cluster]\nname = \"a\"\npeers = [\"10.0.0.2\"]", "cluster.peers"),
            (
                "[cluster]\nname = \"a\"\npeers = [\"b:1\"]\n[[cluster.peer]]\nname = \"b\"\naddress = \"b2:1\"",
                "cluster.peer.name",
            ),
            ("[cluster]\nname = \"b\"\npeers = [\"b:1\"]", "cluster.name"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
