//! The lists a session may read, sans-IO (part of [`ControlPlane`]): agents, calls, flows,
//! bindings, monitors and the cluster's peers. Rules: monitor mode sees everything; a
//! supervisor sees its teams' agents and what belongs to them (calls, flows and bindings from
//! the engine's latest view; in a cluster also the calls the peers' SPANs show, each named
//! with its appliance), its own monitors and the peers; agents list nothing.

use super::plane::{ControlPlane, Mode, SessionId};
use super::reply::{AgentItem, MonitorItem, Reply};
use crate::router::CallView;

impl ControlPlane {
    /// The items a session may see: monitor mode all, a supervisor its teams' agents'.
    fn visible<'a, T: Clone + 'a>(
        &self,
        mode: Mode,
        who: usize,
        items: impl Iterator<Item = (Option<usize>, &'a T)>,
    ) -> Vec<T> {
        items
            .filter(|(agent, _)| {
                mode == Mode::Monitor || agent.is_some_and(|a| self.may_see(who, a))
            })
            .map(|(_, item)| item.clone())
            .collect()
    }

    pub(super) fn list_agents(&mut self, sid: SessionId, m: Mode, who: usize) {
        let agents = (0..self.dir.agents.len())
            .filter(|&a| m == Mode::Monitor || self.may_see(who, a))
            .map(|a| {
                let s = &self.dir.agents[a];
                AgentItem {
                    uid: format!("agent.{}", s.agent.id),
                    agent: s.agent.id.clone(),
                    extension: s.agent.extension.clone(),
                    team: s.team.clone(),
                    state: self.agent_state[a].to_owned(),
                    appliance: self.appliance_of(a),
                }
            })
            .collect();
        self.reply(sid, &Reply::AgentList(agents));
    }

    /// In a cluster, the appliance whose SPAN shows agent `a` on a call now.
    fn appliance_of(&self, a: usize) -> Option<String> {
        let me = &self.cluster.me;
        if me.is_empty() {
            return None;
        }
        let here = self
            .view
            .calls
            .iter()
            .any(|c| c.agent == Some(a) && c.state != "Ended");
        if here {
            return Some(me.clone());
        }
        let id = &self.dir.agents[a].agent.id;
        self.cluster.where_is(id).map(str::to_owned)
    }

    /// This appliance's calls and, in a cluster, the peers', each named with its appliance.
    fn cluster_calls(&self) -> Vec<CallView> {
        let me = (!self.cluster.me.is_empty()).then(|| self.cluster.me.clone());
        let mut calls: Vec<CallView> = self
            .view
            .calls
            .iter()
            .map(|c| CallView {
                appliance: me.clone(),
                ..c.clone()
            })
            .collect();
        for (peer, seen) in self.cluster.peers.iter().zip(&self.cluster.seen) {
            for (agent, list) in seen {
                let index = self.agent_index(agent);
                calls.extend(list.iter().map(|c| CallView {
                    agent: index,
                    appliance: Some(peer.name.clone()),
                    ..c.clone()
                }));
            }
        }
        calls
    }

    pub(super) fn list_calls(&mut self, sid: SessionId, m: Mode, who: usize) {
        let calls = self.cluster_calls();
        let items = self.visible(m, who, calls.iter().map(|c| (c.agent, c)));
        self.reply(sid, &Reply::CallList(items));
    }

    pub(super) fn list_peers(&mut self, sid: SessionId) {
        let peers = self.cluster.peers.clone();
        self.reply(sid, &Reply::PeerList(peers));
    }

    pub(super) fn list_flows(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items = self.visible(m, who, self.view.flows.iter().map(|c| (c.agent, c)));
        self.reply(sid, &Reply::FlowList(items));
    }

    pub(super) fn list_bindings(&mut self, sid: SessionId, m: Mode, who: usize) {
        let bindings = self.view.bindings.iter().map(|b| (Some(b.agent), b));
        let items = self.visible(m, who, bindings);
        self.reply(sid, &Reply::BindingList(items));
    }

    pub(super) fn list_monitors(&mut self, sid: SessionId, m: Mode, who: usize) {
        let items = self
            .monitors
            .iter()
            .filter(|(_, r)| m == Mode::Monitor || r.supervisor == who)
            .map(|(id, r)| MonitorItem {
                uid: format!("monitor.{id}"),
                monitor: *id,
                supervisor: self.dir.supervisors[r.supervisor].id.clone(),
                agent: self.dir.agents[r.agent].agent.id.clone(),
                started: r.started.as_secs_f64(),
                appliance: self.appliance_of(r.agent),
            })
            .collect();
        self.reply(sid, &Reply::MonitorList(items));
    }
}
