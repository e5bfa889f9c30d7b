//! The `[cti]` table: the CTI Server feed (docs/CTI.md). Absent or without `side_a`: no feed.
//!
//! ```toml
//! [cti]
//! side_a = "10.0.0.20:42027"      # host:port of side A
//! side_b = "10.0.0.21:43027"      # optional: side B, tried alternately
//! version = 24                    # CTI protocol version asked for (19 to 25)
//! peripheral_id = 5000            # PeripheralID (0xFFFFFFFF: all)
//! client_id = "silentmon"
//! client_password = ""
//! heartbeat_s = 5                 # at least 5
//! agent_field = "id"              # which field names the agent: id, extension, instrument
//! endpoint = "address-and-port"   # or "address": bind every port of the phone's address
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::Error;
use super::Validate;
use crate::binding::CtiEndpoint;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCti {
    side_a: Option<String>,
    side_b: Option<String>,
    version: u32,
    peripheral_id: u32,
    client_id: String,
    client_password: String,
    heartbeat_s: u64,
    agent_field: String,
    endpoint: String,
}

impl Default for RawCti {
    fn default() -> Self {
        RawCti {
            side_a: None,
            side_b: None,
            version: 24,
            peripheral_id: 0xFFFF_FFFF,
            client_id: "silentmon".into(),
            client_password: String::new(),
            heartbeat_s: 5,
            agent_field: "id".into(),
            endpoint: "address-and-port".into(),
        }
    }
}

/// Which field of a CTI event names the agent (matched to `id`, or to `extension`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum AgentField {
    /// AgentID, matched to the agent's `id`.
    #[default]
    Id,
    /// AgentExtension, matched to the agent's `extension`.
    Extension,
    /// AgentInstrument, matched to the agent's `extension`.
    Instrument,
}

/// The CTI Server feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtiSettings {
    /// Side A, then side B when configured (`host:port`).
    pub sides: Vec<String>,
    /// Protocol version.
    pub version: u32,
    /// PeripheralID.
    pub peripheral_id: u32,
    /// ClientID.
    pub client_id: String,
    /// ClientPassword.
    pub client_password: String,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Which field names the agent.
    pub agent_field: AgentField,
    /// What of an RTP event is the phone's media endpoint.
    pub endpoint: CtiEndpoint,
}

impl Validate<'_> {
    /// The `[cti]` table, checked; None when no side is configured.
    pub(super) fn cti(&self, c: &RawCti) -> Result<Option<CtiSettings>, Error> {
        let Some(a) = &c.side_a else {
            if c.side_b.is_some() {
                let problem = "is required with cti.side_b (side A is tried first)".into();
                return Err(self.invalid("cti.side_a", problem));
            }
            return Ok(None);
        };
        if c.side_b.as_ref() == Some(a) {
            let problem = format!("{a:?} is side A too: side B is the other CTI Server");
            return Err(self.invalid("cti.side_b", problem));
        }
        let mut sides = vec![a.clone()];
        sides.extend(c.side_b.clone());
        for (key, s) in ["cti.side_a", "cti.side_b"].iter().zip(&sides) {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(self.invalid(key, format!("{s:?} is not host:port")));
            }
        }
        if !(19..=25).contains(&c.version) {
            let problem = format!("{} is not a supported version (19 to 25)", c.version);
            return Err(self.invalid("cti.version", problem));
        }
        if c.heartbeat_s < 5 {
            return Err(self.invalid(
                "cti.heartbeat_s",
                "must be at least 5 (the protocol's minimum)".into(),
            ));
        }
        let agent_field = match c.agent_field.as_str() {
            "id" => AgentField::Id,
            "extension" => AgentField::Extension,
            "instrument" => AgentField::Instrument,
            other => {
                let problem = format!("{other:?} is not id, extension or instrument");
                return Err(self.invalid("cti.agent_field", problem));
            }
        };
        let endpoint = match c.endpoint.as_str() {
            "address-and-port" => CtiEndpoint::AddressAndPort,
            "address" => CtiEndpoint::Address,
            other => {
                let problem = format!("{other:?} is not address-and-port or address");
                return Err(self.invalid("cti.endpoint", problem));
            }
        };
        Ok(Some(CtiSettings {
            sides,
            version: c.version,
            peripheral_id: c.peripheral_id,
            client_id: c.client_id.clone(),
            client_password: c.client_password.clone(),
            heartbeat: Duration::from_secs(c.heartbeat_s),
            agent_field,
            endpoint,
        }))
    }
}

impl CtiSettings {
    /// `--check-config`'s words for the feed.
    pub fn summary(&self) -> String {
        let sides = match &self.sides[..] {
            [a] => format!("side A {a}"),
            [a, b, ..] => format!("sides A {a} and B {b}"),
            [] => "no side".to_owned(),
        };
        format!(
            "CTI Server feed from {sides} (protocol {}, peripheral {}, agents by {})",
            self.version,
            if self.peripheral_id == u32::MAX {
                "all".to_owned()
            } else {
                self.peripheral_id.to_string()
            },
            match self.agent_field {
                AgentField::Id => "AgentID",
                AgentField::Extension => "AgentExtension",
                AgentField::Instrument => "AgentInstrument",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Settings;
    use super::*;

    fn parse(text: &str) -> Result<Settings, super::super::Error> {
        Settings::parse(text, Path::new("/etc/silentmon/silentmon.toml"))
    }

    #[test]
    fn a_feed_needs_side_a_and_has_working_defaults() {
        assert_eq!(parse("").unwrap().cti, None);
        assert_eq!(parse("[cti]\nversion = 19\n").unwrap().cti, None);
        let c = parse("[cti]\nside_a = \"pg1a:42027\"\nside_b = \"pg1b:43027\"\n")
            .unwrap()
            .cti
            .unwrap();
        assert_eq!(c.sides, ["pg1a:42027", "pg1b:43027"]);
        assert_eq!(
            (c.version, c.peripheral_id, c.heartbeat),
            (24, u32::MAX, Duration::from_secs(5))
        );
        assert_eq!(
            (c.agent_field, c.endpoint),
            (AgentField::Id, CtiEndpoint::AddressAndPort)
        );
        assert_eq!(
            c.summary(),
            "CTI Server feed from sides A pg1a:42027 and B pg1b:43027 (protocol 24, peripheral \
             all, agents by AgentID)"
        );
        let c = parse(
            "[cti]\nside_a = \"10.0.0.20:42027\"\nversion = 19\nperipheral_id = 5000\n\
             agent_field = \"instrument\"\nendpoint = \"address\"\nheartbeat_s = 10\n",
        )
        .unwrap()
        .cti
        .unwrap();
        assert_eq!(
            (c.version, c.agent_field, c.endpoint),
            (19, AgentField::Instrument, CtiEndpoint::Address)
        );
        assert_eq!(c.heartbeat, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        let a = "[cti]\nside_a = \"pg:42027\"\n";
        for (text, key) in [
            ("[cti]\nside_b = \"pg:43027\"\n".to_owned(), "cti.side_a"),
            ("[cti]\nside_a = \"pg\"\n".to_owned(), "cti.side_a"),
            (format!("{a}side_b = \"pg:42027\"\n"), "cti.side_b"),
            (format!("{a}side_b = \":1\"\n"), "cti.side_b"),
            (format!("{a}version = 18\n"), "cti.version"),
            (format!("{a}version = 26\n"), "cti.version"),
            (format!("{a}heartbeat_s = 4\n"), "cti.heartbeat_s"),
            (format!("{a}agent_field = \"name\"\n"), "cti.agent_field"),
            (format!("{a}endpoint = \"port\"\n"), "cti.endpoint"),
            (format!("{a}sidea = \"x:1\"\n"), "sidea"),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains("/etc/silentmon/silentmon.toml"),
                "{text}: {e}"
            );
        }
    }
}
