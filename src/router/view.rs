//! The control plane's [`View`] of the router's tables, built a slice at a time.
//!
//! Rules:
//! - At 1000 calls a whole view (calls, flows, bindings: about 4000 rows of strings) takes the
//!   engine thread about 5 ms, and every packet waited behind it. So the engine loop builds it
//!   with [`Router::build_view`], a few dozen rows per call, between captured batches;
//!   [`Router::view`] builds one at once (tests, tools).
//! - A view built in slices is a view of a slightly longer moment, never a torn one: the
//!   stages walking the bindings by position begin again when a binding came or went meanwhile
//!   ([`Bindings::generation`](crate::binding::Bindings::generation)); the stages walking calls
//!   take their keys when they begin and skip a call that ended since; the flows' stage walks
//!   the flow table's slots, which never move (a stream forgotten meanwhile is skipped, a
//!   slot reused shows its new stream), and ends where the slots ended when it began.
//!   A stage that had to begin again [`MAX_REWINDS`] times finishes at once, so the view is
//!   published however fast bindings change.
//! - A call is listed once per agent in it (an agent-to-agent call twice, so each supervisor
//!   sees their own agent's row), and stays its agents' after their bindings lingered out, as
//!   long as the call table keeps the call. A flow is listed once per agent it belongs to.

use super::{BindingView, CallView, FlowView, Router, View};
use crate::binding::{Direction, Source};
use crate::sip::CallState;

/// A stage walking the bindings that had to begin again this often finishes in one go, so a
/// view is published however fast bindings come and go.
pub const MAX_REWINDS: u32 = 2;

/// Where a [`ViewBuild`] is.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum Stage {
    /// Noting which agents each call's bindings name (walks the bindings).
    #[default]
    Remember,
    /// The SIP calls' rows (walks the call keys).
    Calls,
    /// The CTI calls' rows (walks their keys).
    Cti,
    /// The flows' rows (walks the flow table's slots, which never move).
    Flows,
    /// The effective bindings' rows, then the static phone IPs (walks the bindings).
    Bindings,
    /// Complete.
    Done,
}

/// A view under construction; see [`Router::build_view`].
#[derive(Debug, Default)]
pub struct ViewBuild {
    stage: Stage,
    /// Position in what the stage walks.
    next: usize,
    /// The keys the stage walks (call indices), taken when it began.
    keys: Vec<u32>,
    /// Where the flows' stage ends: the flow table's slots when it began (streams in slots
    /// added since are the next view's, so a flood of new streams cannot keep it going).
    flows_end: usize,
    /// The bindings' generation when a stage walking them began (None: it has not begun).
    generation: Option<u64>,
    /// Times the current stage began again.
    rewinds: u32,
    view: View,
}

impl ViewBuild {
    /// True once every stage is done.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The complete view (empty rows if it is not done), ready for a new build.
    pub fn take(&mut self) -> View {
        let view = std::mem::take(&mut self.view);
        *self = ViewBuild::default();
        view
    }

    fn enter(&mut self, stage: Stage) {
        self.stage = stage;
        self.next = 0;
        self.keys.clear();
        self.generation = None;
        self.rewinds = 0;
    }

    /// What a stage walking the bindings may do now: `budget`, or all of it once it began
    /// again [`MAX_REWINDS`] times (bindings changing faster than a sliced walk ends).
    fn walk_budget(&self, budget: usize) -> usize {
        if self.rewinds >= MAX_REWINDS {
            usize::MAX
        } else {
            budget
        }
    }

    /// True when a stage walking the bindings must (re)begin: it has not begun, or a binding
    /// came or went since (positions shifted). Notes `generation` and rewinds.
    fn rewind_on(&mut self, generation: u64) -> bool {
        if self.generation == Some(generation) {
            return false;
        }
        if self.generation.is_some() {
            self.rewinds += 1;
        }
        self.generation = Some(generation);
        self.next = 0;
        true
    }
}

impl Router {
    /// A whole view at once.
    pub fn view(&mut self) -> View {
        let mut b = ViewBuild::default();
        while !self.build_view(&mut b, usize::MAX) {}
        b.take()
    }

    /// Adds up to `rows` rows (or binding visits) to `b`; true when the view is complete
    /// ([`ViewBuild::take`] it).
    pub fn build_view(&mut self, b: &mut ViewBuild, rows: usize) -> bool {
        let mut budget = rows;
        while budget > 0 && !b.is_done() {
            let used = match b.stage {
                Stage::Remember => self.remember_step(b, budget),
                Stage::Calls => self.calls_step(b, budget),
                Stage::Cti => self.cti_step(b, budget),
                Stage::Flows => self.flows_step(b, budget),
                Stage::Bindings => self.bindings_step(b, budget),
                Stage::Done => 0,
            };
            budget = budget.saturating_sub(used.max(1));
        }
        b.is_done()
    }

    /// Notes which agents each call's effective bindings name, so a call stays listed as its
    /// agents' after the bindings linger out; forgets calls the call table dropped.
    fn remember_step(&mut self, b: &mut ViewBuild, budget: usize) -> usize {
        if b.rewind_on(self.bindings.generation()) {
            // (Again) from the first binding; what was noted stays noted.
            let calls = self.engine.calls();
            self.call_agents
                .retain(|i, (id, _)| calls.call(*i).is_some_and(|c| c.call_id == *id));
        }
        let calls = self.engine.calls();
        let all = self.bindings.all();
        let end = all.len().min(b.next.saturating_add(b.walk_budget(budget)));
        for (i, bd) in all.iter().enumerate().take(end).skip(b.next) {
            if !self.bindings.is_effective(i) {
                continue;
            }
            for &(index, _) in &bd.dialogs {
                let Some(c) = calls.call(index) else { continue };
                let entry = self
                    .call_agents
                    .entry(index)
                    .or_insert_with(|| (c.call_id.clone(), Vec::new()));
                if !entry.1.contains(&bd.agent) {
                    entry.1.push(bd.agent);
                    entry.1.sort_unstable();
                }
            }
        }
        let used = end - b.next;
        b.next = end;
        if end == all.len() {
            b.enter(Stage::Calls);
            b.keys.extend(calls.calls().map(|c| c.index));
        }
        used
    }

    fn calls_step(&mut self, b: &mut ViewBuild, budget: usize) -> usize {
        let end = b.keys.len().min(b.next.saturating_add(budget));
        for k in b.next..end {
            self.call_rows(b.keys[k], &mut b.view.calls);
        }
        let used = end - b.next;
        b.next = end;
        if end == b.keys.len() {
            b.enter(Stage::Cti);
            self.cti_keys(&mut b.keys);
        }
        used
    }

    /// Call `index`'s rows: one per agent it is remembered for, or one without an agent.
    fn call_rows(&self, index: u32, out: &mut Vec<CallView>) {
        let Some(c) = self.engine.calls().call(index) else {
            return;
        };
        let agents = self.bindings.agents();
        let bound = self.call_agents.get(&index).map_or(&[][..], |x| &x.1[..]);
        let row = |agent: Option<usize>| CallView {
            agent,
            agent_id: agent.map(|i| agents[i].id.clone()),
            uid: format!("call.{}", c.index),
            call_id: c.call_id.clone(),
            from: c.from.user().to_owned(),
            to: crate::sip::message::uri_user(&c.request_uri).to_owned(),
            state: state_name(c.state),
            hold: c.on_hold(),
            started: c.started.as_secs_f64(),
            media: [c.caller_media, c.callee_media]
                .into_iter()
                .flatten()
                .map(|m| m.addr.to_string())
                .collect(),
            appliance: None,
        };
        if bound.is_empty() {
            out.push(row(None));
        }
        out.extend(bound.iter().map(|&a| row(Some(a))));
    }

    fn cti_step(&mut self, b: &mut ViewBuild, budget: usize) -> usize {
        let end = b.keys.len().min(b.next.saturating_add(budget));
        for k in b.next..end {
            b.view.calls.extend(self.cti_view(b.keys[k]));
        }
        let used = end - b.next;
        b.next = end;
        if end == b.keys.len() {
            b.enter(Stage::Flows);
            b.flows_end = self.engine.flows().slots();
        }
        used
    }

    /// The flow table as the control plane lists it: a row per agent a stream belongs to
    /// (none: one row without an agent).
    fn flows_step(&mut self, b: &mut ViewBuild, budget: usize) -> usize {
        let agents = self.bindings.agents();
        let left = b.flows_end.saturating_sub(b.next);
        // Slots, not streams: a forgotten stream's slot costs its step too.
        let used = budget.min(left);
        let streams = self.engine.flows().streams_in(b.next..b.next + used);
        for s in streams {
            let hits = self.bindings.lookup(s.key.src, s.key.dst);
            let row = |hit: Option<crate::binding::Hit>| FlowView {
                agent: hit.map(|h| h.agent),
                agent_id: hit.map(|h| agents[h.agent].id.clone()),
                direction: hit.map(|h| {
                    match h.direction {
                        Direction::FromAgent => "from_agent",
                        Direction::ToAgent => "to_agent",
                    }
                    .to_owned()
                }),
                src: s.key.src.to_string(),
                dst: s.key.dst.to_string(),
                ssrc: format!("0x{:08X}", s.key.ssrc),
                payloads: s.payload_names(),
                packets: s.stats.packets,
                lost: s.stats.lost(),
                jitter_ms: s.stats.jitter_ms,
                vlans: s.vlans.ids().collect(),
                last_seen: s.stats.last_ts.as_secs_f64(),
            };
            if hits.iter().all(Option::is_none) {
                b.view.flows.push(row(None));
            }
            b.view
                .flows
                .extend(hits.into_iter().flatten().map(|h| row(Some(h))));
        }
        b.next += used;
        if b.next >= b.flows_end {
            b.enter(Stage::Bindings);
        }
        used
    }

    /// The effective bindings (another agent's stronger claim hides a binding) and, last, the
    /// static phone IPs, as the control plane lists them.
    fn bindings_step(&mut self, b: &mut ViewBuild, budget: usize) -> usize {
        if b.rewind_on(self.bindings.generation()) {
            // Begun, or a binding came or went: the rows so far may be off; list them again.
            b.view.bindings.clear();
        }
        let agents = self.bindings.agents();
        let all = self.bindings.all();
        let end = all.len().min(b.next.saturating_add(b.walk_budget(budget)));
        for (i, bd) in all.iter().enumerate().take(end).skip(b.next) {
            if !self.bindings.is_effective(i) {
                continue;
            }
            b.view.bindings.push(BindingView {
                agent: bd.agent,
                agent_id: agents[bd.agent].id.clone(),
                endpoint: bd.endpoint.to_string(),
                source: match bd.source {
                    Source::Static => "static",
                    Source::Sip(_) => "sip",
                    Source::Explicit => "explicit",
                    Source::Cti(_) => "cti",
                }
                .to_owned(),
                call_id: match bd.source {
                    Source::Sip(i) => self.engine.calls().call(i).map(|c| c.call_id.clone()),
                    _ => None,
                },
                since: Some(bd.since.as_secs_f64()),
                expires: bd.expires.map(|t| t.as_secs_f64()),
            });
        }
        let used = end - b.next;
        b.next = end;
        if end == all.len() {
            self.static_rows(&mut b.view.bindings);
            b.enter(Stage::Done);
        }
        used
    }

    /// The static phone IPs' rows.
    fn static_rows(&self, out: &mut Vec<BindingView>) {
        for (i, a) in self.bindings.agents().iter().enumerate() {
            out.extend(a.phone_ips.iter().map(|ip| BindingView {
                agent: i,
                agent_id: a.id.clone(),
                endpoint: ip.to_string(),
                source: "static".to_owned(),
                call_id: None,
                since: None,
                expires: None,
            }));
        }
    }
}

fn state_name(s: CallState) -> String {
    match s {
        CallState::Calling => "Calling".into(),
        CallState::Ringing => "Ringing".into(),
        CallState::Answered => "Answered".into(),
        CallState::Ended => "Ended".into(),
        CallState::Cancelled => "Cancelled".into(),
        CallState::Failed(code) => format!("Failed {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::{a, ms, rtp, udp, Lab};

    /// Three calls of agent 5001 with media, an explicit bind, and agent 5002's static IP.
    fn busy_lab() -> Lab {
        let mut lab = Lab::new();
        for (i, port) in [30000u16, 30010, 30020].into_iter().enumerate() {
            let t = i as i64 * 100;
            lab.call(t, &format!("c{i}"), port);
            for seq in 1..4 {
                lab.media(t + 20 * i64::from(seq), port, seq, 10);
            }
        }
        lab.r.bind(ms(500), 1, a("10.5.5.5:7000"), Some(ms(60_000)));
        lab
    }

    /// Builds `r`'s view one row per call, running `between` after each slice; the slices.
    fn by_rows(lab: &mut Lab, mut between: impl FnMut(&mut Lab, usize)) -> (View, usize) {
        let mut b = ViewBuild::default();
        let mut slices = 0;
        while !lab.r.build_view(&mut b, 1) {
            slices += 1;
            between(lab, slices);
        }
        (b.take(), slices)
    }

    #[test]
    fn a_view_built_a_row_at_a_time_equals_one_built_at_once() {
        let mut lab = busy_lab();
        let whole = lab.r.view();
        assert_eq!(whole.calls.len(), 3);
        assert_eq!(whole.flows.len(), 6);
        // 3 SIP bindings, the explicit one, the static phone IP.
        assert_eq!(whole.bindings.len(), 5);
        let (sliced, slices) = by_rows(&mut lab, |_, _| {});
        assert_eq!(sliced, whole);
        assert!(slices > 15, "{slices} slices");
        // A second build starts afresh.
        assert_eq!(lab.r.view(), whole);
    }

    #[test]
    fn a_binding_that_comes_or_goes_mid_build_is_listed_as_it_is_at_the_end() {
        // The change comes after every slice in turn: before, during and after each stage.
        let (_, slices) = by_rows(&mut busy_lab(), |_, _| {});
        for when in 1..=slices {
            let mut lab = busy_lab();
            let (sliced, _) = by_rows(&mut lab, |lab, slice| {
                if slice == when {
                    // The first call's binding lingers out (positions shift) and a bind comes.
                    lab.bye(1000, "c0");
                    lab.r.handle_timeout(ms(9000));
                    lab.r.bind(ms(9000), 0, a("10.5.5.6:7000"), None);
                }
            });
            let now = lab.r.view();
            assert_eq!(sliced.bindings, now.bindings, "changed after slice {when}");
        }
    }

    #[test]
    fn bindings_changing_after_every_slice_still_let_the_view_finish() {
        let mut lab = busy_lab();
        let mut b = ViewBuild::default();
        let mut slices = 0u16;
        while !lab.r.build_view(&mut b, 1) {
            slices += 1;
            assert!(slices < 1000, "the view never finishes");
            let port = 7000 + slices;
            lab.r.bind(ms(600), 0, a(&format!("10.5.5.7:{port}")), None);
        }
        let sliced = b.take();
        assert_eq!(sliced.bindings, lab.r.view().bindings);
    }

    #[test]
    fn a_call_forgotten_after_its_key_was_taken_is_left_out() {
        let mut lab = busy_lab();
        lab.bye(1000, "c0");
        let mut b = ViewBuild::default();
        let mut forgotten = false;
        while !lab.r.build_view(&mut b, 1) {
            if b.stage == Stage::Calls && b.next == 0 && !forgotten {
                // c0's key is taken; the call table forgets the call (60 s after its end).
                assert!(b.keys.len() == 3, "{:?}", b.keys);
                lab.r.handle_timeout(ms(70_000));
                forgotten = true;
            }
        }
        assert!(forgotten);
        let sliced = b.take();
        assert!(sliced.calls.iter().all(|c| c.call_id != "c0"), "{sliced:?}");
        assert_eq!(sliced.calls, lab.r.view().calls);
    }

    #[test]
    fn streams_added_during_the_flows_stage_wait_for_the_next_view() {
        let mut lab = busy_lab();
        let mut b = ViewBuild::default();
        let mut added = 0u16;
        while !lab.r.build_view(&mut b, 1) {
            if b.stage == Stage::Flows {
                // A new stream after every slice: a flood the stage must not chase.
                added += 1;
                let src = a(&format!("10.7.0.1:{}", 10_000 + 2 * added));
                for seq in 1..5 {
                    let pkt = udp(src, a("10.7.0.2:9000"), &rtp(seq, u32::from(added), 1));
                    lab.frame(5000 + i64::from(seq) * 20, pkt);
                }
                assert!(added < 100, "the flows' stage never ends");
            }
        }
        let sliced = b.take();
        assert_eq!(
            sliced.flows.len(),
            6,
            "only the streams there when the stage began"
        );
        assert!(
            lab.r.view().flows.len() > 6 + 3,
            "{added} streams were added"
        );
    }
}
