//! The CTI Server as a binding source: RTP_STARTED puts an agent on the phone's media endpoint
//! for a call, RTP_STOPPED (hold, hang-up) and the call's end take it off after the linger,
//! as a SIP dialog's end does.
//!
//! Rules: a CTI binding is the ACD's own word on who is on the phone, so it beats any SIP,
//! static or explicit claim on the same endpoint (rank 4; docs/CTI.md); every time the two
//! name different agents for one endpoint is counted ([`Bindings::disagreements`]). Which
//! fields carry the phone's media endpoint is unconfirmed in Cisco's documents: by default the
//! address and port (ClientAddress:ClientPort), or the address alone on every port
//! ([`CtiEndpoint::Address`]).

use std::net::{IpAddr, SocketAddr};

use super::{Binding, Bindings, Source};
use crate::time::Timestamp;

/// What of an RTP event names the phone's media endpoint.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum CtiEndpoint {
    /// ClientAddress:ClientPort.
    #[default]
    AddressAndPort,
    /// ClientAddress, any port (when ClientPort is not the media port).
    Address,
}

impl Bindings {
    /// RTP_STARTED: agent `agent` is on `phone` for CTI call `call`.
    pub fn cti_bind(
        &mut self,
        now: Timestamp,
        agent: usize,
        call: u32,
        phone: SocketAddr,
        mode: CtiEndpoint,
    ) {
        if agent >= self.agents.len() {
            return;
        }
        if mode == CtiEndpoint::Address {
            self.cti_ips.insert(phone.ip(), (agent, call, None));
            return;
        }
        if let Some(b) = self
            .bindings
            .iter_mut()
            .find(|b| b.endpoint == phone && b.source == Source::Cti(call) && b.agent == agent)
        {
            b.expires = None;
            return;
        }
        if self.by_endpoint.get(&phone).is_some_and(|&i| {
            let b = &self.bindings[i];
            b.agent != agent && matches!(b.source, Source::Sip(_) | Source::Static)
        }) || self
            .by_phone_ip
            .get(&phone.ip())
            .is_some_and(|&a| a != agent)
        {
            self.disagreements += 1;
        }
        self.bindings.push(Binding {
            agent,
            endpoint: phone,
            source: Source::Cti(call),
            dialogs: Vec::new(),
            since: now,
            expires: None,
            placed_by_agent: false,
            direct: true,
        });
        self.reindex();
    }

    /// RTP_STOPPED: `phone`'s binding for CTI call `call` ends after the linger.
    pub fn cti_unbind(&mut self, now: Timestamp, call: u32, phone: SocketAddr, mode: CtiEndpoint) {
        let until = now + self.linger;
        if mode == CtiEndpoint::Address {
            if let Some(e) = self.cti_ips.get_mut(&phone.ip()).filter(|e| e.1 == call) {
                e.2 = Some(until);
            }
            return;
        }
        for b in self
            .bindings
            .iter_mut()
            .filter(|b| b.endpoint == phone && b.source == Source::Cti(call))
        {
            b.expires = Some(until);
        }
    }

    /// The CTI call ended (END_CALL, CALL_CLEARED): its bindings end after the linger.
    pub fn cti_call_ended(&mut self, now: Timestamp, call: u32) {
        let until = now + self.linger;
        for b in self
            .bindings
            .iter_mut()
            .filter(|b| b.source == Source::Cti(call) && b.expires.is_none())
        {
            b.expires = Some(until);
        }
        for e in self
            .cti_ips
            .values_mut()
            .filter(|e| e.1 == call && e.2.is_none())
        {
            e.2 = Some(until);
        }
    }

    /// The agent logged out: its CTI bindings end after the linger.
    pub fn cti_agent_gone(&mut self, now: Timestamp, agent: usize) {
        let until = now + self.linger;
        for b in self.bindings.iter_mut().filter(|b| {
            b.agent == agent && matches!(b.source, Source::Cti(_)) && b.expires.is_none()
        }) {
            b.expires = Some(until);
        }
        for e in self
            .cti_ips
            .values_mut()
            .filter(|e| e.0 == agent && e.2.is_none())
        {
            e.2 = Some(until);
        }
    }

    /// Times a SIP claim and a CTI binding named different agents for one endpoint.
    pub fn disagreements(&self) -> u64 {
        self.disagreements
    }

    /// The agent the CTI Server put on `ip` (address mode).
    pub fn cti_agent_of(&self, ip: IpAddr) -> Option<usize> {
        self.cti_ips.get(&ip).map(|e| e.0)
    }
}
