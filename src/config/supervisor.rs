//! The supervisor endpoint's configuration (default ~/.config/silentmon/supervisor.toml): who
//! logs in, which appliances (the cluster list), the TLS files, the local control port, and how
//! to play or record. Same rules as the appliance's file: every key defaulted (command-line
//! flags fill or override them), unknown keys refused, errors name the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

/// Where the endpoint's local control listens by default (loopback only).
pub const DEFAULT_LOCAL: &str = "127.0.0.1:42228";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSupervisor {
    user: String,
    password_file: Option<PathBuf>,
    servers: Vec<String>,
    monitor_services: Vec<String>,
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    insecure: bool,
    listen: String,
    record: Option<PathBuf>,
    stereo: bool,
    device: Option<String>,
    device_period_ms: u32,
    cushion_ms: Option<u32>,
    volume: f32,
    monitor: Option<String>,
    privacy: RawPrivacy,
}

/// `[privacy]`: what supervisors must not hear.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPrivacy {
    /// Mute in-band DTMF digits (card numbers typed on a keypad) in playout and recordings.
    mute_dtmf: bool,
}

impl Default for RawPrivacy {
    fn default() -> Self {
        RawPrivacy { mute_dtmf: true }
    }
}

impl Default for RawSupervisor {
    fn default() -> Self {
        RawSupervisor {
            user: String::new(),
            password_file: None,
            servers: Vec::new(),
            monitor_services: Vec::new(),
            ca: "/etc/silentmon/certs/ca.pem".into(),
            cert: None,
            key: None,
            server_name: None,
            insecure: false,
            listen: DEFAULT_LOCAL.into(),
            record: None,
            stereo: false,
            device: None,
            device_period_ms: DEFAULT_DEVICE_PERIOD_MS,
            cushion_ms: None,
            volume: 1.0,
            monitor: None,
            privacy: RawPrivacy::default(),
        }
    }
}

/// The validated endpoint configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorSettings {
    /// Supervisor id.
    pub user: String,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Control planes of the cluster, `host:port`; one is picked at random, the next on failure.
    pub servers: Vec<String>,
    /// Monitor services; empty: each control plane's host on port 42228 (or what it tells).
    pub monitor_services: Vec<String>,
    /// CA certificate.
    pub ca: PathBuf,
    /// Client certificate for the monitor service (mutual TLS).
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Name in the appliances' certificates (default: each address's host).
    pub server_name: Option<String>,
    /// Plaintext (labs only).
    pub insecure: bool,
    /// Local control listen address (must be a loopback address).
    pub listen: SocketAddr,
    /// Record every monitored call as a WAV file in this directory.
    pub record: Option<PathBuf>,
    /// Agent left, caller right instead of a mono mix.
    pub stereo: bool,
    /// Output device name (default device when None).
    pub device: Option<String>,
    /// The output device's period in ms ([`DEFAULT_DEVICE_PERIOD_MS`]; 0: the device's own
    /// default). The device buffers two periods: a longer one absorbs stalls of a loaded
    /// desktop or VM, which would otherwise be gaps in the sound, at that much latency.
    pub device_period_ms: u32,
    /// The least audio the output device's queue holds, just before the endpoint refills it,
    /// in ms (`None`: the endpoint's default, `media::SessionConfig::lead`); the endpoint holds
    /// its queue there. It absorbs the endpoint's own scheduling delays. Less is that much
    /// less latency; too little gives gaps (counted as underruns in the endpoint's status).
    pub cushion_ms: Option<u32>,
    /// Playback volume (0..=4).
    pub volume: f32,
    /// An agent to monitor as soon as the endpoint is up.
    pub monitor: Option<String>,
    /// Mute in-band DTMF digits in playout and recordings (`[privacy] mute_dtmf`, default on;
    /// adds 30 ms to what the supervisor hears).
    pub mute_dtmf: bool,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings::parse("", Path::new("(defaults)")).expect("the defaults are valid")
    }
}

impl SupervisorSettings {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<SupervisorSettings, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        SupervisorSettings::parse(&text, path)
    }

    /// Validates `text` (errors name `path`).
    pub fn parse(text: &str, path: &Path) -> Result<SupervisorSettings, Error> {
        let raw: RawSupervisor = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &str, problem: String| Error::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        for (key, list) in [
            ("servers", &raw.servers),
            ("monitor_services", &raw.monitor_services),
        ] {
            for a in list {
                if a.rsplit_once(':')
                    .and_then(|(h, p)| (!h.is_empty()).then_some(p))
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(invalid(key, format!("{a:?} is not host:port")));
                }
            }
        }
        let listen: SocketAddr = raw
            .listen
            .parse()
            .map_err(|_| invalid("listen", format!("{:?} is not an address:port", raw.listen)))?;
        if !listen.ip().is_loopback() {
            return Err(invalid(
                "listen",
                format!(
                    "{listen} is not a loopback address: local control has no password, so \
                     it must not be reachable from the network"
                ),
            ));
        }
        if raw.cert.is_some() != raw.key.is_some() {
            return Err(invalid("cert", "set both cert and key, or neither".into()));
        }
        if !(0.0..=4.0).contains(&raw.volume) {
            return Err(invalid(
                "volume",
                format!("{} is not within 0..=4", raw.volume),
            ));
        }
        check_device_period(raw.device_period_ms)
            .map_err(|problem| invalid("device_period_ms", problem))?;
        if let Some(ms) = raw.cushion_ms {
            check_cushion(ms).map_err(|problem| invalid("cushion_ms", problem))?;
        }
        // Paths in the file are relative to it (command-line paths stay relative to the
        // working directory, as usual).
        let beside = |file: PathBuf| super::beside(path, &file);
        Ok(SupervisorSettings {
            user: raw.user,
            password_file: raw.password_file.map(beside),
            servers: raw.servers,
            monitor_services: raw.monitor_services,
            ca: beside(raw.ca),
            cert: raw.cert.map(beside),
            key: raw.key.map(beside),
            server_name: raw.server_name,
            insecure: raw.insecure,
            listen,
            record: raw.record.map(beside),
            stereo: raw.stereo,
            device: raw.device,
            device_period_ms: raw.device_period_ms,
            cushion_ms: raw.cushion_ms,
            volume: raw.volume,
            monitor: raw.monitor,
            mute_dtmf: raw.privacy.mute_dtmf,
        })
    }
}

/// The device period asked for by default (ms). Through PulseAudio the device's own default
/// (10.7 ms) came with a buffer of 21 to 31 ms; asking for 8 ms gives two periods, about
/// 10 ms (docs/PERFORMANCE.md, latency to the ear).
pub const DEFAULT_DEVICE_PERIOD_MS: u32 = 8;

/// Device periods accepted (ms): at least 1 ms, at most 250 ms (two of them queued are half
/// a second of delay).
pub const DEVICE_PERIOD_MS: std::ops::RangeInclusive<u32> = 1..=250;

/// Checks a device period in ms (the file's `device_period_ms`, `--device-period-ms`); 0
/// means the device's own default.
pub fn check_device_period(ms: u32) -> Result<(), String> {
    if ms == 0 {
        return Ok(());
    }
    within(ms, &DEVICE_PERIOD_MS)
}

/// `ms` within `range`, or the problem (for a key or flag to name).
fn within(ms: u32, range: &std::ops::RangeInclusive<u32>) -> Result<(), String> {
    if range.contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "{ms} is not within {}..={} ms",
            range.start(),
            range.end()
        ))
    }
}

/// Cushions accepted (ms): none at all up to half a second.
pub const CUSHION_MS: std::ops::RangeInclusive<u32> = 0..=500;

/// Checks a cushion in ms (the file's `cushion_ms`, `--cushion-ms`).
pub fn check_cushion(ms: u32) -> Result<(), String> {
    within(ms, &CUSHION_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SupervisorSettings, Error> {
        SupervisorSettings::parse(
            text,
            Path::new("/home/s1/.config/silentmon/supervisor.toml"),
        )
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let s = parse(
            "ca = \"ca.pem\"\ncert = \"s1.pem\"\nkey = \"keys/s1.key\"\n\
             password_file = \"password\"\nrecord = \"/var/rec\"\n",
        )
        .unwrap();
        let dir = Path::new("/home/s1/.config/silentmon");
        assert_eq!(s.ca, dir.join("ca.pem"));
        assert_eq!(s.cert.as_deref(), Some(dir.join("s1.pem").as_path()));
        assert_eq!(s.key.as_deref(), Some(dir.join("keys/s1.key").as_path()));
        assert_eq!(
            s.password_file.as_deref(),
            Some(dir.join("password").as_path())
        );
        assert_eq!(s.record.as_deref(), Some(Path::new("/var/rec")));
    }

    #[test]
    fn defaults_and_a_full_file() {
        let d = parse("").unwrap();
        assert_eq!(d.listen, DEFAULT_LOCAL.parse().unwrap());
        assert!(d.servers.is_empty() && !d.stereo && d.volume == 1.0);
        let s = parse(
            r#"
            user = "s1"
            servers = ["appl1.example:42028", "appl2.example:42028"]
            ca = "/etc/ca.pem"
            cert = "/home/s1/s1.pem"
            key = "/home/s1/s1.key"
            record = "/home/s1/recordings"
            stereo = true
            device_period_ms = 40
            cushion_ms = 20
            volume = 0.5
            [privacy]
            mute_dtmf = false
            "#,
        )
        .unwrap();
        assert!(d.mute_dtmf, "on by default");
        assert_eq!((d.cushion_ms, s.cushion_ms), (None, Some(20)));
        assert!(!s.mute_dtmf);
        assert_eq!(s.servers.len(), 2);
        assert!(s.stereo && s.volume == 0.5);
        assert_eq!((d.device_period_ms, s.device_period_ms), (8, 40));
        // 0: the device's own default.
        assert_eq!(parse("device_period_ms = 0").unwrap().device_period_ms, 0);
        assert_eq!(s.record.as_deref(), Some(Path::new("/home/s1/recordings")));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        for (text, key) in [
            ("servers = [\"nohost\"]", "servers"),
            ("listen = \"0.0.0.0:42228\"", "listen"),
            ("cert = \"/x.pem\"", "cert"),
            ("volume = 9.0", "volume"),
            ("device_period_ms = 1000", "device_period_ms"),
            ("cushion_ms = 501", "cushion_ms"),
            ("voume = 1.0", "voume"),
            ("[privacy]\nmute_dmtf = false", "mute_dmtf"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.contains("supervisor.toml") && e.contains(key),
                "{text}: {e}"
            );
        }
    }
}
