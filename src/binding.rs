//! Agent -> media bindings, sans-IO: which RTP flows belong to which agent, each binding with its
//! source and expiry. Sources: static configuration (the agent's phone IPs), SIP sniffed on the
//! SPAN (a call whose Request-URI, To, From or P-Asserted-Identity carries the agent's extension
//! or mobile-agent number binds the agent's side of that call's media), and explicit binds.
//!
//! Bindings follow the agent: a re-INVITE to hold keeps the call's binding (endpoints are
//! updated, not dropped), a consult call adds a second binding, and when a call ends its binding
//! lingers briefly (late packets) and the agent's next call binds anew. Fed call-table events and
//! `now`; the per-packet question ([`Bindings::classify`]) is two hash lookups.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::sip::{CallEvent, CallTable};
use crate::time::{Span, Timestamp};

/// An agent as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Agent id.
    pub id: String,
    /// Extension / instrument (the number calls to the agent carry).
    pub extension: String,
    /// Remote number of a mobile agent.
    pub mobile_number: Option<String>,
    /// IP addresses of the agent's phone(s): every flow to or from them is the agent's.
    pub phone_ips: Vec<IpAddr>,
}

/// Where a binding came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The agent's phone IPs in the configuration.
    Static,
    /// A SIP call (by call-table index).
    Sip(u32),
    /// An explicit bind request.
    Explicit,
}

/// One binding: an agent's media endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Index of the agent.
    pub agent: usize,
    /// The agent's media endpoint (where the agent receives RTP and sends from, symmetric RTP).
    pub endpoint: SocketAddr,
    /// Source.
    pub source: Source,
    /// Since when.
    pub since: Timestamp,
    /// Until when (None = until unbound).
    pub expires: Option<Timestamp>,
    /// A SIP binding of a call the agent placed itself (the caller side), not one delivered to
    /// it.
    pub placed_by_agent: bool,
}

/// Direction of a packet relative to the agent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the agent.
    FromAgent,
    /// Sent to the agent.
    ToAgent,
}

/// The binding table.
pub struct Bindings {
    agents: Vec<Agent>,
    by_phone_ip: HashMap<IpAddr, usize>,
    bindings: Vec<Binding>,
    by_endpoint: HashMap<SocketAddr, usize>,
    linger: Span,
}

fn digits(s: &str) -> &str {
    s.trim().trim_start_matches('+')
}

impl Bindings {
    /// A table for `agents`; a SIP binding outlives its call by `linger`.
    pub fn new(agents: Vec<Agent>, linger: Span) -> Self {
        let mut by_phone_ip = HashMap::new();
        for (i, a) in agents.iter().enumerate() {
            for ip in &a.phone_ips {
                by_phone_ip.insert(*ip, i);
            }
        }
        Bindings {
            agents,
            by_phone_ip,
            bindings: Vec::new(),
            by_endpoint: HashMap::new(),
            linger,
        }
    }

    /// The agents.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Index of the agent with this id.
    pub fn agent_index(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.id == id)
    }

    /// Live bindings of agent `agent`.
    pub fn of_agent(&self, agent: usize) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(move |b| b.agent == agent)
    }

    /// Whether SIP call `call` is one its agent placed itself (rare: asked when a monitored
    /// agent's packets move to another call).
    pub fn placed_by_agent(&self, call: u32) -> bool {
        self.bindings
            .iter()
            .any(|b| b.source == Source::Sip(call) && b.placed_by_agent)
    }

    /// Which agent a call belongs to, and whether the agent is the called party (false: the
    /// agent placed the call).
    fn agent_of_call(&self, call: &crate::sip::Call) -> Option<(usize, bool)> {
        self.agents.iter().enumerate().find_map(|(i, a)| {
            let numbers = std::iter::once(a.extension.as_str()).chain(a.mobile_number.as_deref());
            for n in numbers {
                if digits(n).is_empty() || !call.matches_number(n) {
                    continue;
                }
                let called = call.called_is(n)
                    || call
                        .asserted_identity
                        .as_ref()
                        .is_some_and(|p| digits(p.user()) == digits(n))
                        && digits(call.from.user()) != digits(n);
                return Some((i, called));
            }
            None
        })
    }

    /// Applies one call-table event (call after each `CallTable::poll_event`).
    pub fn handle_call_event(&mut self, now: Timestamp, event: CallEvent, calls: &CallTable) {
        let (CallEvent::Started(idx)
        | CallEvent::Ringing(idx)
        | CallEvent::Answered(idx)
        | CallEvent::MediaChanged(idx)
        | CallEvent::Ended(idx)) = event;
        let Some(call) = calls.call(idx) else {
            return;
        };
        let Some((agent, agent_is_callee)) = self.agent_of_call(call) else {
            return;
        };
        if let CallEvent::Ended(_) = event {
            let until = now + self.linger;
            for b in self
                .bindings
                .iter_mut()
                .filter(|b| b.source == Source::Sip(idx))
            {
                b.expires = Some(until);
            }
            return;
        }
        let endpoint = if agent_is_callee {
            call.callee_media
        } else {
            call.caller_media
        };
        let Some(ep) = endpoint.filter(|e| !e.addr.ip().is_unspecified()) else {
            return; // no usable endpoint yet (or held with 0.0.0.0: keep the old one)
        };
        // One SIP binding per call: a re-INVITE moves it, hold keeps it.
        if let Some(b) = self
            .bindings
            .iter_mut()
            .find(|b| b.source == Source::Sip(idx))
        {
            if b.endpoint != ep.addr {
                self.by_endpoint.remove(&b.endpoint);
                b.endpoint = ep.addr;
            }
            b.expires = None;
        } else {
            self.bindings.push(Binding {
                agent,
                endpoint: ep.addr,
                source: Source::Sip(idx),
                since: now,
                expires: None,
                placed_by_agent: !agent_is_callee,
            });
        }
        self.reindex();
    }

    /// Binds `endpoint` to agent `agent` explicitly until `expires`.
    pub fn bind(
        &mut self,
        now: Timestamp,
        agent: usize,
        endpoint: SocketAddr,
        expires: Option<Timestamp>,
    ) {
        self.bindings
            .retain(|b| !(b.endpoint == endpoint && b.source == Source::Explicit));
        self.bindings.push(Binding {
            agent,
            endpoint,
            source: Source::Explicit,
            since: now,
            expires,
            placed_by_agent: false,
        });
        self.reindex();
    }

    /// Drops expired bindings.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let before = self.bindings.len();
        self.bindings.retain(|b| b.expires.is_none_or(|t| now < t));
        if self.bindings.len() != before {
            self.reindex();
        }
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.bindings.iter().filter_map(|b| b.expires).min()
    }

    fn reindex(&mut self) {
        self.by_endpoint.clear();
        for (i, b) in self.bindings.iter().enumerate() {
            self.by_endpoint.insert(b.endpoint, i);
        }
    }

    /// Like [`Bindings::classify`], with the source of the binding that matched. Per packet.
    pub fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> Option<(usize, Direction, Source)> {
        if let Some(&i) = self.by_endpoint.get(&src) {
            let b = &self.bindings[i];
            return Some((b.agent, Direction::FromAgent, b.source));
        }
        if let Some(&i) = self.by_endpoint.get(&dst) {
            let b = &self.bindings[i];
            return Some((b.agent, Direction::ToAgent, b.source));
        }
        if let Some(&a) = self.by_phone_ip.get(&src.ip()) {
            return Some((a, Direction::FromAgent, Source::Static));
        }
        self.by_phone_ip
            .get(&dst.ip())
            .map(|&a| (a, Direction::ToAgent, Source::Static))
    }

    /// Every live binding.
    pub fn all(&self) -> &[Binding] {
        &self.bindings
    }

    /// The agent a call (by call-table index) is bound to, if any.
    pub fn agent_of_call_index(&self, call: u32) -> Option<usize> {
        self.bindings
            .iter()
            .find(|b| b.source == Source::Sip(call))
            .map(|b| b.agent)
    }

    /// The agent a packet from `src` to `dst` belongs to, and its direction. Per packet.
    pub fn classify(&self, src: SocketAddr, dst: SocketAddr) -> Option<(usize, Direction)> {
        if let Some(&i) = self.by_endpoint.get(&src) {
            return Some((self.bindings[i].agent, Direction::FromAgent));
        }
        if let Some(&i) = self.by_endpoint.get(&dst) {
            return Some((self.bindings[i].agent, Direction::ToAgent));
        }
        if let Some(&a) = self.by_phone_ip.get(&src.ip()) {
            return Some((a, Direction::FromAgent));
        }
        self.by_phone_ip
            .get(&dst.ip())
            .map(|&a| (a, Direction::ToAgent))
    }

    /// Where agent `agent` is bound (static phone IPs count as bindings).
    pub fn sources(&self, agent: usize) -> Vec<Source> {
        let mut v: Vec<Source> = self.of_agent(agent).map(|b| b.source).collect();
        if !self.agents[agent].phone_ips.is_empty() {
            v.push(Source::Static);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::CallConfig;

    fn sdp(ip: &str, port: u16, dir: &str) -> String {
        format!("v=0\r\nc=IN IP4 {ip}\r\nm=audio {port} RTP/AVP 0\r\na={dir}\r\n")
    }

    fn msg(
        start: &str,
        cid: &str,
        ruri_to: &str,
        ftag: &str,
        ttag: &str,
        cseq: &str,
        body: &str,
    ) -> Vec<u8> {
        let to_tag = if ttag.is_empty() {
            String::new()
        } else {
            format!(";tag={ttag}")
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nFrom: <sip:+4930111@gw>;tag={ftag}\r\nTo: <sip:{ruri_to}@pbx>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    struct Lab {
        calls: CallTable,
        bindings: Bindings,
    }

    impl Lab {
        fn new() -> Lab {
            let agents = vec![
                Agent {
                    id: "a1".into(),
                    extension: "5001".into(),
                    mobile_number: None,
                    phone_ips: vec![],
                },
                Agent {
                    id: "a2".into(),
                    extension: "5002".into(),
                    mobile_number: Some("+4915112345678".into()),
                    phone_ips: vec![],
                },
                Agent {
                    id: "a3".into(),
                    extension: "5003".into(),
                    mobile_number: None,
                    phone_ips: vec!["10.9.9.9".parse().unwrap()],
                },
            ];
            Lab {
                calls: CallTable::new(CallConfig::default()),
                bindings: Bindings::new(agents, Span::from_secs(2)),
            }
        }

        fn feed(&mut self, t: i64, from_gw: bool, m: Vec<u8>) {
            let (gw, ph): (SocketAddr, SocketAddr) = (
                "10.0.0.1:5060".parse().unwrap(),
                "10.0.0.2:5060".parse().unwrap(),
            );
            let (s, d) = if from_gw { (gw, ph) } else { (ph, gw) };
            let now = Timestamp::from_nanos(t * 1_000_000_000);
            self.calls.handle_message(now, s, d, &m).unwrap();
            while let Some(e) = self.calls.poll_event() {
                self.bindings.handle_call_event(now, e, &self.calls);
            }
        }

        fn call(&mut self, t: i64, cid: &str, to: &str, agent_port: u16) {
            self.feed(
                t,
                true,
                msg(
                    &format!("INVITE sip:{to}@pbx SIP/2.0"),
                    cid,
                    to,
                    "f",
                    "",
                    "1 INVITE",
                    &sdp("10.0.0.1", 20000, "sendrecv"),
                ),
            );
            self.feed(
                t,
                false,
                msg(
                    "SIP/2.0 200 OK",
                    cid,
                    to,
                    "f",
                    "t",
                    "1 INVITE",
                    &sdp("10.0.0.2", agent_port, "sendrecv"),
                ),
            );
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn follows_the_agent_through_hold_consult_and_next_call() {
        let mut lab = Lab::new();
        lab.call(0, "c1", "5001", 30000);
        let b = &lab.bindings;
        assert_eq!(
            b.classify(a("10.0.0.2:30000"), a("10.0.0.1:20000")),
            Some((0, Direction::FromAgent))
        );
        assert_eq!(
            b.classify(a("10.0.0.1:20000"), a("10.0.0.2:30000")),
            Some((0, Direction::ToAgent))
        );
        // Hold (agent sends a re-INVITE sendonly on the same endpoint): still bound.
        lab.feed(
            5,
            false,
            msg(
                "INVITE sip:+4930111@gw SIP/2.0",
                "c1",
                "5001",
                "t",
                "f",
                "2 INVITE",
                &sdp("10.0.0.2", 30000, "sendonly"),
            ),
        );
        assert_eq!(lab.bindings.of_agent(0).count(), 1);
        // Consult: a second call to the agent's extension adds a binding.
        lab.call(6, "c2", "5001", 30002);
        assert_eq!(lab.bindings.of_agent(0).count(), 2);
        assert_eq!(
            lab.bindings
                .classify(a("10.0.0.2:30002"), a("10.0.0.1:20000"))
                .map(|x| x.0),
            Some(0)
        );
        // The first call ends: its binding lingers 2 s, then goes; the consult stays.
        lab.feed(
            10,
            true,
            msg(
                "BYE sip:5001@pbx SIP/2.0",
                "c1",
                "5001",
                "f",
                "t",
                "3 BYE",
                "",
            ),
        );
        lab.bindings
            .handle_timeout(Timestamp::from_nanos(11_000_000_000));
        assert_eq!(lab.bindings.of_agent(0).count(), 2);
        lab.bindings
            .handle_timeout(Timestamp::from_nanos(12_500_000_000));
        assert_eq!(lab.bindings.of_agent(0).count(), 1);
        assert_eq!(
            lab.bindings
                .classify(a("10.0.0.2:30000"), a("10.0.0.1:20000")),
            None
        );
        // Next call: bound automatically.
        lab.call(20, "c3", "5001", 30004);
        assert!(lab.bindings.sources(0).contains(&Source::Sip(2)));
    }

    #[test]
    fn mobile_number_static_phone_ip_and_explicit() {
        let mut lab = Lab::new();
        lab.call(0, "m1", "+4915112345678", 31000);
        assert_eq!(
            lab.bindings
                .classify(a("10.0.0.2:31000"), a("10.0.0.1:20000"))
                .map(|x| x.0),
            Some(1)
        );
        // Static: anything to or from agent 3's phone.
        assert_eq!(
            lab.bindings.classify(a("10.9.9.9:4000"), a("10.0.0.1:1")),
            Some((2, Direction::FromAgent))
        );
        assert_eq!(lab.bindings.sources(2), vec![Source::Static]);
        // Explicit with expiry.
        let t0 = Timestamp::from_nanos(0);
        lab.bindings.bind(
            t0,
            0,
            a("10.5.5.5:7000"),
            Some(Timestamp::from_nanos(5_000_000_000)),
        );
        assert_eq!(
            lab.bindings.classify(a("10.1.1.1:1"), a("10.5.5.5:7000")),
            Some((0, Direction::ToAgent))
        );
        assert_eq!(
            lab.bindings.poll_timeout(),
            Some(Timestamp::from_nanos(5_000_000_000))
        );
        lab.bindings
            .handle_timeout(Timestamp::from_nanos(6_000_000_000));
        assert_eq!(
            lab.bindings.classify(a("10.1.1.1:1"), a("10.5.5.5:7000")),
            None
        );
        // A call to nobody we know binds nothing.
        lab.call(30, "x1", "7777", 32000);
        assert_eq!(
            lab.bindings
                .classify(a("10.0.0.2:32000"), a("10.0.0.1:20000")),
            None
        );
    }
}
