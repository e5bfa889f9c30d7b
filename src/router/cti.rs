//! What the CTI Server says about calls, in the live path: RTP_STARTED / RTP_STOPPED bind and
//! unbind the phone's media endpoint (`binding::cti`), and the calls the CTI Server names
//! (BEGIN_CALL ... END_CALL) become conversations: a monitor of the agent hears "call cti-N"
//! begin and end, however many SIP dialogs (or none: SIP over TLS, SCCP phones) carry it.
//!
//! Rules:
//! - While the CTI names a call of the agent, its call events (not SIP dialogs) delimit the
//!   conversation: a mobile agent's nailed connection (one SIP dialog for the whole shift, a
//!   re-INVITE per customer call) gives one conversation per customer call, one WAV each.
//! - StopSMNonACDCall applies per CTI call: a call of a non-ACD CallType (agent out, out, agent
//!   inside) ends the agent's monitors, and a monitor started during it, before one packet of
//!   it is forwarded; the supervisor's
//!   own monitor legs (CallType 21-24) are never bound.
//! - The calls appear in the view (the control plane's lists) as `cti-ID`, with ANI and DNIS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{CallView, MonitorId, Notice, Router};
use crate::binding::CtiEndpoint;
use crate::codec::PayloadMap;
use crate::cti::wire::CallRef;
use crate::time::Timestamp;

/// CallTypes of calls an agent places or makes inside the contact center (not delivered by
/// the ACD): agent out (8), out (9), agent inside (10).
pub const NON_ACD_CALL_TYPES: [u16; 3] = [8, 9, 10];
/// CallTypes of a supervisor's own monitor, whisper, barge-in and intercept legs.
pub const SUPERVISOR_CALL_TYPES: std::ops::RangeInclusive<u16> = 21..=24;

/// A CallType the CTI Server stated: not 0 (a call known only from its RTP events so far)
/// nor NULL_CALLTYPE (0xFFFF).
fn known_call_type(t: u16) -> Option<u16> {
    (t != 0 && t != 0xFFFF).then_some(t)
}

/// Whether a call of CallType `t` was delivered by the ACD (not one the agent placed itself or
/// made inside the contact center).
pub fn is_acd_call_type(t: u16) -> bool {
    !NON_ACD_CALL_TYPES.contains(&t)
}

/// One call the CTI Server named.
#[derive(Clone, Debug)]
struct CtiCall {
    call: CallRef,
    agent: Option<usize>,
    call_type: u16,
    ani: String,
    dnis: String,
    started: Timestamp,
    phones: Vec<SocketAddr>,
}

/// The CTI calls the router knows, by ConnectionCallID.
#[derive(Debug, Default)]
pub(crate) struct CtiCalls {
    calls: BTreeMap<u32, CtiCall>,
    endpoint: CtiEndpoint,
}

impl CtiCalls {
    /// Whether the CTI Server named call `id` and has not ended it.
    pub(super) fn is_open(&self, id: u32) -> bool {
        self.calls.contains_key(&id)
    }
}

/// The name a CTI call has at endpoints and in lists.
pub fn call_id(call: &CallRef) -> String {
    format!("cti-{call}")
}

/// A call the CTI Server began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtiBegin {
    /// The call.
    pub call: CallRef,
    /// CallType.
    pub call_type: u16,
    /// Calling number.
    pub ani: String,
    /// Called number.
    pub dnis: String,
    /// The agent, when its device named one.
    pub agent: Option<usize>,
}

impl Router {
    /// How RTP events name the phone's media endpoint.
    pub fn set_cti_endpoint(&mut self, mode: CtiEndpoint) {
        self.cti.endpoint = mode;
    }

    /// Times SIP and the CTI Server named different agents for one media endpoint.
    pub fn cti_disagreements(&self) -> u64 {
        self.bindings.disagreements()
    }

    fn cti_call(&mut self, call: &CallRef, now: Timestamp) -> &mut CtiCall {
        self.cti.calls.entry(call.id).or_insert_with(|| CtiCall {
            call: call.clone(),
            agent: None,
            call_type: 0,
            ani: String::new(),
            dnis: String::new(),
            started: now,
            phones: Vec::new(),
        })
    }

    /// RTP_STARTED: agent `agent`'s phone `phone` carries call `call`.
    pub fn cti_rtp_started(
        &mut self,
        now: Timestamp,
        agent: usize,
        call: &CallRef,
        phone: SocketAddr,
    ) {
        let c = self.cti_call(call, now);
        if SUPERVISOR_CALL_TYPES.contains(&c.call_type) {
            return;
        }
        c.agent = Some(agent);
        if !c.phones.contains(&phone) {
            c.phones.push(phone);
        }
        let mode = self.cti.endpoint;
        self.bindings.cti_bind(now, agent, call.id, phone, mode);
    }

    /// RTP_STOPPED: `phone` stopped carrying call `call` (hold, hang-up).
    pub fn cti_rtp_stopped(&mut self, now: Timestamp, call: &CallRef, phone: SocketAddr) {
        let mode = self.cti.endpoint;
        self.bindings.cti_unbind(now, call.id, phone, mode);
    }

    /// BEGIN_CALL: a call of `b.agent` (when known). A monitored agent's monitors hear it as
    /// a conversation of its own; a non-ACD call ends them under StopSMNonACDCall.
    pub fn cti_call_began(&mut self, now: Timestamp, b: CtiBegin) {
        let c = self.cti_call(&b.call, now);
        c.call_type = b.call_type;
        c.ani = b.ani;
        c.dnis = b.dnis;
        if b.agent.is_some() {
            c.agent = b.agent;
        }
        let Some(agent) = c.agent else { return };
        if SUPERVISOR_CALL_TYPES.contains(&b.call_type) {
            return;
        }
        let non_acd = NON_ACD_CALL_TYPES.contains(&b.call_type) && self.stop_on_non_acd;
        let id = b.call.id;
        let mut announce = Vec::new();
        for m in self
            .monitors
            .iter_mut()
            .filter(|m| m.agent == agent && !m.ending && !m.relay)
        {
            if non_acd {
                m.ending = true;
                self.notices.push_back(Notice::NonAcdCall {
                    monitor: m.id,
                    call_id: call_id(&b.call),
                });
            } else if m.cti != Some(id) {
                m.cti = Some(id);
                announce.push(m.id);
            }
        }
        for monitor in announce {
            self.announce_cti(monitor, id);
        }
    }

    /// A monitor starting while the CTI names a call of its agent hears that call as its
    /// conversation (not the SIP dialog that carries it, e.g. a nailed connection); under
    /// StopSMNonACDCall a non-ACD call ends it at once, before one packet is forwarded.
    pub(super) fn join_cti_call(&mut self, monitor: MonitorId, agent: usize) {
        let Some(c) = self
            .cti
            .calls
            .values()
            .filter(|c| c.agent == Some(agent) && !SUPERVISOR_CALL_TYPES.contains(&c.call_type))
            .max_by_key(|c| c.started)
        else {
            return;
        };
        let (id, non_acd, name) = (
            c.call.id,
            NON_ACD_CALL_TYPES.contains(&c.call_type),
            call_id(&c.call),
        );
        let Some(m) = self.monitors.iter_mut().find(|m| m.id == monitor) else {
            return;
        };
        if non_acd && self.stop_on_non_acd {
            m.ending = true;
            self.notices.push_back(Notice::NonAcdCall {
                monitor,
                call_id: name,
            });
        } else {
            m.cti = Some(id);
            self.announce_cti(monitor, id);
        }
    }

    /// END_CALL or CALL_CLEARED: the call is over; its bindings go after the linger and the
    /// monitors hearing it are told.
    pub fn cti_call_ended(&mut self, now: Timestamp, call: &CallRef) {
        self.bindings.cti_call_ended(now, call.id);
        let Some(c) = self.cti.calls.remove(&call.id) else {
            return;
        };
        for m in self.monitors.iter_mut().filter(|m| m.cti == Some(call.id)) {
            m.cti = None;
            // A SIP dialog that goes on (a nailed connection) is not announced again.
            self.notices.push_back(Notice::CallEnded {
                monitor: m.id,
                call_id: call_id(&c.call),
            });
        }
    }

    /// The CTI Server logged agent `agent` out: whatever it bound for the agent ends after
    /// the linger, and the agent's calls with it (an END_CALL lost in a CTI outage must not
    /// leave the agent on a phone someone else uses next).
    pub fn cti_logged_out(&mut self, now: Timestamp, agent: usize) {
        let calls: Vec<CallRef> = self
            .cti
            .calls
            .values()
            .filter(|c| c.agent == Some(agent))
            .map(|c| c.call.clone())
            .collect();
        for call in &calls {
            self.cti_call_ended(now, call);
        }
        self.bindings.cti_agent_gone(now, agent);
    }

    /// The CTI call changes seen during the last frame, as `Notice::Call`s.
    pub(super) fn resolve_cti_notices(&mut self) {
        let changes = std::mem::take(&mut self.cti_changes);
        for (monitor, id) in changes {
            self.announce_cti(monitor, id);
        }
    }

    pub(super) fn announce_cti(&mut self, monitor: MonitorId, id: u32) {
        let (call, started, call_type) = match self.cti.calls.get(&id) {
            Some(c) => (c.call.clone(), c.started, known_call_type(c.call_type)),
            None => (
                CallRef {
                    id,
                    device: String::new(),
                },
                Timestamp::default(),
                None,
            ),
        };
        if let Some(m) = self.monitors.iter_mut().find(|m| m.id == monitor) {
            // Hearing the CTI's call now: a SIP dialog or a peer's call is not the current one,
            // and a SIP dialog that goes on after it (a nailed connection) is not announced.
            if let Some(sip) = m.call.take() {
                m.ended = Some(sip);
            }
            m.remote = None;
        }
        self.notices.push_back(Notice::Call {
            monitor,
            call_id: call_id(&call),
            payloads: PayloadMap::default(),
            started,
            appliance: self.name.clone(),
            call_type,
        });
    }

    /// The CTI calls' keys, in the order the control plane lists them.
    pub(super) fn cti_keys(&self, out: &mut Vec<u32>) {
        out.extend(self.cti.calls.keys().copied());
    }

    /// CTI call `key` as the control plane lists it (None: it ended since its key was taken).
    pub(super) fn cti_view(&self, key: u32) -> Option<CallView> {
        let agents = self.bindings.agents();
        let c = self.cti.calls.get(&key)?;
        Some(CallView {
            agent: c.agent,
            agent_id: c.agent.map(|a| agents[a].id.clone()),
            uid: format!("cti.{}", c.call.id),
            call_id: call_id(&c.call),
            from: c.ani.clone(),
            to: c.dnis.clone(),
            state: if c.phones.is_empty() {
                "Delivered".into()
            } else {
                "Answered".into()
            },
            hold: false,
            started: c.started.as_secs_f64(),
            media: c.phones.iter().map(|p| p.to_string()).collect(),
            appliance: None,
        })
    }
}

#[cfg(test)]
mod tests;
