//! The lists a session may read, sans-IO (part of [`ControlPlane`]): agents, calls, flows,
//! bindings and monitors. Rules: monitor mode sees everything; a supervisor sees its teams'
//! agents and what belongs to them (calls, flows and bindings from the engine's latest view),
//! and its own monitors; agents list nothing.

use serde_json::Value;

use super::frame::Frame;
use super::plane::{ControlPlane, Mode, SessionId};

impl ControlPlane {
    /// The items of a list a session may see: monitor mode all, a supervisor its teams' agents'.
    fn visible<'a, T: serde::Serialize + 'a>(
        &self,
        mode: Mode,
        who: usize,
        items: impl Iterator<Item = (Option<usize>, &'a T)>,
    ) -> Value {
        Value::Array(
            items
                .filter(|(agent, _)| {
                    mode == Mode::Monitor || agent.is_some_and(|a| self.may_see(who, a))
                })
                .filter_map(|(_, item)| serde_json::to_value(item).ok())
                .collect(),
        )
    }

    pub(super) fn list_agents(&mut self, sid: SessionId, m: Mode, who: usize) {
        let agents: Vec<Value> = (0..self.dir.agents.len())
            .filter(|&a| m == Mode::Monitor || self.may_see(who, a))
            .map(|a| {
                serde_json::json!({
                    "uid": format!("agent.{}", self.dir.agents[a].agent.id),
                    "agent": self.dir.agents[a].agent.id,
                    "extension": self.dir.agents[a].agent.extension,
                    "team": self.dir.agents[a].team,
                    "state": self.agent_state[a],
                })
            })
            .collect();
        self.send(
            sid,
            Frame::new("AgentList").with("agents", Value::Array(agents)),
        );
    }

    pub(super) fn list_calls(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items = self.visible(m, who, self.view.calls.iter().map(|c| (c.agent, c)));
        self.send(sid, Frame::new("CallList").with("calls", items));
    }

    pub(super) fn list_flows(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items = self.visible(m, who, self.view.flows.iter().map(|c| (c.agent, c)));
        self.send(sid, Frame::new("FlowList").with("flows", items));
    }

    pub(super) fn list_bindings(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items = self.visible(
            m,
            who,
            self.view.bindings.iter().map(|b| (Some(b.agent), b)),
        );
        self.send(sid, Frame::new("BindingList").with("bindings", items));
    }

    pub(super) fn list_monitors(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items: Vec<Value> = self
            .monitors
            .iter()
            .filter(|(_, r)| m == Mode::Monitor || r.supervisor == who)
            .map(|(id, r)| {
                serde_json::json!({
                    "uid": format!("monitor.{id}"),
                    "monitor": id,
                    "supervisor": self.dir.supervisors[r.supervisor].id,
                    "agent": self.dir.agents[r.agent].agent.id,
                    "started": r.started.as_secs_f64(),
                })
            })
            .collect();
        self.send(sid, Frame::new("MonitorList").with("monitors", items));
    }
}
