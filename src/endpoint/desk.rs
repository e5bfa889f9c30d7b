//! What the supervisor's page shows, sans-IO: the team (the agents the control plane lets the
//! supervisor see, their states and since when, each one's current call), the monitored
//! agent's line quality per direction (the appliance's loss and jitter, rated by the E-model),
//! and the endpoint's status, as one JSON snapshot the page renders. Fed the control plane's
//! lists and events and the endpoint's status; the shell (`endpoint::shell`) fetches and
//! publishes, `endpoint::page` serves.
//!
//! Rules: an agent's "since" is when this endpoint saw its state change (the control plane
//! does not say how long an agent has been in a state); an agent the lists no longer name is
//! dropped; a state event for an agent not in the list is ignored (not in the supervisor's
//! teams). A flow counts for quality while it was seen in the last [`FLOW_FRESH_S`] seconds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::local::Status;
use crate::control::reply::AgentItem;
use crate::media::quality::{mos, r_factor, LineMeasure};
use crate::router::{CallView, FlowView};

/// A flow seen this recently (seconds) is the line now.
pub const FLOW_FRESH_S: f64 = 5.0;

/// One agent of the team.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentRow {
    /// The agent's id.
    pub id: String,
    /// Its extension.
    pub extension: String,
    /// Its team.
    pub team: Option<String>,
    /// The CTI state.
    pub state: String,
    /// When this endpoint saw the state begin (seconds since the epoch; None: before the
    /// page's first look).
    pub since: Option<f64>,
    /// The current call.
    pub call: Option<CallRow>,
    /// True while this supervisor monitors the agent.
    pub monitored: bool,
}

/// An agent's current call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallRow {
    /// The call's id.
    pub call_id: String,
    /// `inbound` (the agent was called) or `outbound` (the agent placed it).
    pub direction: &'static str,
    /// The other party's number.
    pub other: String,
    /// Seconds since the epoch.
    pub started: f64,
    /// On hold.
    pub hold: bool,
    /// The appliance whose SPAN carries it (in a cluster).
    pub appliance: Option<String>,
}

/// One direction of the monitored agent's line, as the appliance measures it on the wire.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineQuality {
    /// `from_agent` or `to_agent`.
    pub direction: String,
    /// The codec.
    pub codec: String,
    /// Packets lost, percent.
    pub loss_pct: f64,
    /// RFC 3550 jitter, ms.
    pub jitter_ms: f64,
    /// The E-model rating.
    pub r: f64,
    /// Its MOS estimate.
    pub mos: f64,
}

/// The page's snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeskView<'a> {
    /// The team, by agent id.
    pub agents: Vec<&'a AgentRow>,
    /// The monitored agent's line.
    pub quality: &'a [LineQuality],
    /// The endpoint.
    pub status: &'a Status,
    /// Output devices to choose from.
    pub devices: &'a [String],
    /// Whether recording can be switched on (a record directory is configured).
    pub can_record: bool,
}

/// The team and the line, as last fetched.
#[derive(Debug, Default)]
pub struct Desk {
    agents: BTreeMap<String, AgentRow>,
    quality: Vec<LineQuality>,
    /// Output devices.
    pub devices: Vec<String>,
    /// Whether a record directory is configured.
    pub can_record: bool,
}

impl Desk {
    /// The agents the control plane lists now (`ListAgents`), at `now` (epoch seconds).
    pub fn set_agents(&mut self, now: f64, list: Vec<AgentItem>) {
        let mut next = BTreeMap::new();
        for a in list {
            let old = self.agents.remove(&a.agent);
            let since = match &old {
                Some(o) if o.state == a.state => o.since,
                Some(_) => Some(now),
                None => None,
            };
            let row = AgentRow {
                id: a.agent.clone(),
                extension: a.extension,
                team: a.team,
                state: a.state,
                since,
                call: old.as_ref().and_then(|o| o.call.clone()),
                monitored: old.is_some_and(|o| o.monitored),
            };
            next.insert(a.agent, row);
        }
        self.agents = next;
    }

    /// `AgentStateEvent`: shown at once, since `now`.
    pub fn agent_state(&mut self, now: f64, agent: &str, state: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            if a.state != state {
                a.state = state.to_owned();
                a.since = Some(now);
            }
        }
    }

    /// The calls the control plane lists (`ListCalls`): each agent's newest call that has
    /// not ended.
    pub fn set_calls(&mut self, calls: &[CallView]) {
        for a in self.agents.values_mut() {
            a.call = calls
                .iter()
                .filter(|c| c.agent_id.as_deref() == Some(a.id.as_str()))
                .filter(|c| matches!(c.state.as_str(), "Calling" | "Ringing" | "Answered"))
                .max_by(|x, y| x.started.total_cmp(&y.started))
                .map(|c| call_row(a, c));
        }
    }

    /// The monitored agent (None: none): marks its row.
    pub fn set_monitored(&mut self, agent: Option<&str>) {
        for a in self.agents.values_mut() {
            a.monitored = Some(a.id.as_str()) == agent;
        }
    }

    /// The flows the control plane lists (`ListFlows`), at `now`: the monitored agent's
    /// fresh ones, one per direction (the most recently seen), rated.
    pub fn set_flows(&mut self, now: f64, agent: Option<&str>, flows: &[FlowView]) {
        self.quality.clear();
        let Some(agent) = agent else { return };
        for dir in ["from_agent", "to_agent"] {
            let line = flows
                .iter()
                .filter(|f| f.agent_id.as_deref() == Some(agent))
                .filter(|f| f.direction.as_deref() == Some(dir))
                .filter(|f| now - f.last_seen <= FLOW_FRESH_S)
                .max_by(|x, y| x.last_seen.total_cmp(&y.last_seen));
            if let Some(f) = line {
                self.quality.push(quality(dir, f));
            }
        }
    }

    /// The snapshot with the endpoint's `status`.
    pub fn view<'a>(&'a self, status: &'a Status) -> DeskView<'a> {
        DeskView {
            agents: self.agents.values().collect(),
            quality: &self.quality,
            status,
            devices: &self.devices,
            can_record: self.can_record,
        }
    }
}

/// An agent's call as the page shows it: the direction and the other party from whether the
/// agent's extension or id placed it.
fn call_row(a: &AgentRow, c: &CallView) -> CallRow {
    let placed = [&a.extension, &a.id]
        .iter()
        .any(|n| !n.is_empty() && c.from.ends_with(n.as_str()));
    CallRow {
        call_id: c.call_id.clone(),
        direction: if placed { "outbound" } else { "inbound" },
        other: if placed { c.to.clone() } else { c.from.clone() },
        started: c.started,
        hold: c.hold,
        appliance: c.appliance.clone(),
    }
}

fn quality(dir: &str, f: &FlowView) -> LineQuality {
    let codec = f.payloads.first().cloned().unwrap_or_default();
    let (ie, bpl) = LineMeasure::for_payload(&codec);
    let lost = f.lost.max(0) as f64;
    let sent = f.packets as f64 + lost;
    let loss_pct = if sent > 0.0 { 100.0 * lost / sent } else { 0.0 };
    let r = r_factor(&LineMeasure {
        ie,
        bpl,
        loss_pct,
        jitter_ms: f.jitter_ms,
        ptime_ms: 20.0,
    });
    LineQuality {
        direction: dir.to_owned(),
        codec,
        loss_pct,
        jitter_ms: f.jitter_ms,
        r,
        mos: mos(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, state: &str) -> AgentItem {
        AgentItem {
            uid: format!("agent.{id}"),
            agent: id.into(),
            extension: id.into(),
            team: Some("blue".into()),
            state: state.into(),
            appliance: None,
        }
    }

    fn call(agent: &str, from: &str, to: &str, state: &str, started: f64) -> CallView {
        CallView {
            agent: None,
            agent_id: Some(agent.into()),
            uid: format!("call.{started}"),
            call_id: format!("c{started}"),
            from: from.into(),
            to: to.into(),
            state: state.into(),
            hold: false,
            started,
            media: vec![],
            appliance: Some("b".into()),
        }
    }

    fn flow(agent: &str, dir: &str, packets: u64, lost: i64, last_seen: f64) -> FlowView {
        FlowView {
            agent: None,
            agent_id: Some(agent.into()),
            direction: Some(dir.into()),
            src: String::new(),
            dst: String::new(),
            ssrc: String::new(),
            payloads: vec!["g711U".into()],
            packets,
            lost,
            jitter_ms: 2.0,
            vlans: vec![],
            last_seen,
        }
    }

    #[test]
    fn states_keep_their_since_until_they_change_and_gone_agents_go() {
        let mut d = Desk::default();
        d.set_agents(
            100.0,
            vec![agent("5001", "Available"), agent("5002", "Logout")],
        );
        assert_eq!(
            d.agents["5001"].since, None,
            "unknown before the first look"
        );
        d.agent_state(105.0, "5001", "Talking");
        d.agent_state(106.0, "7777", "Talking");
        assert_eq!(d.agents["5001"].since, Some(105.0));
        d.set_agents(
            110.0,
            vec![agent("5001", "Talking"), agent("5002", "Login")],
        );
        assert_eq!(d.agents["5001"].since, Some(105.0));
        assert_eq!(d.agents["5002"].since, Some(110.0));
        d.set_agents(111.0, vec![agent("5002", "Login")]);
        let s = Status::default();
        let ids: Vec<&str> = d.view(&s).agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["5002"]);
    }

    #[test]
    fn each_agent_shows_its_newest_live_call_and_which_way_it_goes() {
        let mut d = Desk::default();
        d.set_agents(
            0.0,
            vec![agent("5001", "Talking"), agent("5002", "Talking")],
        );
        d.set_calls(&[
            call("5001", "+4930111", "5001", "Ended", 1.0),
            call("5001", "+4930222", "5001", "Answered", 2.0),
            call("5002", "5002", "+4930333", "Answered", 3.0),
        ]);
        let c = d.agents["5001"].call.clone().unwrap();
        assert_eq!((c.direction, c.other.as_str()), ("inbound", "+4930222"));
        assert_eq!(c.appliance.as_deref(), Some("b"));
        let c = d.agents["5002"].call.clone().unwrap();
        assert_eq!((c.direction, c.other.as_str()), ("outbound", "+4930333"));
        d.set_calls(&[]);
        assert!(d.agents.values().all(|a| a.call.is_none()));
        d.set_monitored(Some("5002"));
        assert!(d.agents["5002"].monitored && !d.agents["5001"].monitored);
    }

    #[test]
    fn the_line_is_the_monitored_agents_fresh_flows_rated() {
        let mut d = Desk::default();
        let flows = [
            flow("5001", "from_agent", 99, 1, 100.0),
            flow("5001", "from_agent", 500, 0, 80.0),
            flow("5001", "to_agent", 100, 0, 99.0),
            flow("5002", "to_agent", 100, 50, 100.0),
        ];
        d.set_flows(101.0, Some("5001"), &flows);
        let q: Vec<(&str, f64)> = d
            .quality
            .iter()
            .map(|q| (q.direction.as_str(), q.loss_pct))
            .collect();
        assert_eq!(q, [("from_agent", 1.0), ("to_agent", 0.0)]);
        assert!(d.quality[0].mos < d.quality[1].mos);
        d.set_flows(120.0, Some("5001"), &flows);
        assert!(d.quality.is_empty(), "nothing fresh");
        d.set_flows(101.0, None, &flows);
        assert!(d.quality.is_empty());
    }
}
