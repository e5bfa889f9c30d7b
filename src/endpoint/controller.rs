//! The supervisor endpoint's decisions, sans-IO: which appliance of the cluster list to try
//! next (failover in the list's order, round it), which monitor to (re)start and when (on a
//! clock it is handed), what the control plane's and the monitor service's events mean for the
//! media loop (a call begins, ends), and why something failed ([`EndpointError`], typed). The
//! shell (`endpoint::shell`) connects, logs in, asks and attaches, and tells the controller what
//! happened; it decides nothing.
//!
//! Rules: the agent the supervisor asked for is *wanted* until the supervisor stops, or the
//! monitor ends for good ([`StopReason::is_final`]: the agent logged out, the supervisor stopped
//! it, StopSMNonACDCall ended it); any other end (the control plane or the monitor service
//! lost, an appliance's reason) restarts it at the next retry, on the next appliance of the
//! list if this one is lost. A start that failed is retried [`RETRY_EVERY`] later. A new
//! monitor replaces the running one only once granted (a refusal leaves the old one running).
//! Media of another monitor than the running one is not the media loop's.

use std::sync::Arc;

use crate::codec::PayloadMap;
use crate::control::reply::StopReason;
use crate::monitor::service_client::Event as ServiceEvent;
use crate::time::{Span, Timestamp};

/// How long after a failed start the next one is tried.
pub const RETRY_EVERY: Span = Span::from_secs(1);

/// Why the endpoint could not do what it was asked (its shells' causes kept as text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No control plane of the list could be reached (the last one's cause).
    #[error("control plane {server} unreachable: {cause}")]
    ControlUnreachable {
        /// The last appliance tried.
        server: String,
        /// Why.
        cause: String,
    },
    /// The control plane refused the login.
    #[error("login refused: {reason}")]
    LoginRefused {
        /// The appliance.
        server: String,
        /// Its reason.
        reason: String,
    },
    /// The connection to the control plane broke during a request.
    #[error("control plane {server} lost: {cause}")]
    ControlLost {
        /// The appliance.
        server: String,
        /// Why.
        cause: String,
    },
    /// The control plane refused the monitor.
    #[error("{reason}")]
    StartRefused {
        /// The agent.
        agent: String,
        /// Its reason (`agent is not in your teams`, ...).
        reason: String,
    },
    /// The monitor service could not be reached.
    #[error("monitor service {addr}: {cause}")]
    ServiceUnreachable {
        /// Its address.
        addr: String,
        /// Why.
        cause: String,
    },
    /// The monitor service refused the attach.
    #[error("monitor service {addr}: {reason}")]
    AttachRefused {
        /// Its address.
        addr: String,
        /// Its reason.
        reason: String,
    },
}

/// What the media loop must hear besides media.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaNotice {
    /// The agent's packets now come from this call.
    Call {
        /// The agent.
        agent: Arc<str>,
        /// SIP Call-ID.
        call_id: String,
        /// Its payload formats.
        payloads: PayloadMap,
        /// When it started.
        started: Timestamp,
    },
    /// A call ended (the current one, or one set aside for a consult).
    CallEnded {
        /// SIP Call-ID.
        call_id: String,
    },
}

/// Where one of the monitor service's events goes.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// Media of the running monitor: to the media loop, as the agent's.
    Media(Arc<str>),
    /// Not the running monitor's media (its buffer goes back to the client).
    Discard,
    /// Notices for the media loop (none: nothing to do).
    Notices(Vec<MediaNotice>),
}

/// What to do about a monitor of `agent` that the supervisor asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// It runs already.
    AlreadyRunning,
    /// Ask for it; once granted, the monitor of `replaces` (if any) is stopped.
    Ask {
        /// The agent monitored now, to stop once the new one is granted.
        replaces: Option<Arc<str>>,
    },
}

/// The running monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Monitor id.
    pub monitor: u64,
    /// The agent.
    pub agent: Arc<str>,
}

/// The endpoint's state and decisions.
#[derive(Debug)]
pub struct Controller {
    /// Control planes, in the order they are tried (the shell shuffles them first).
    servers: Vec<String>,
    /// The configured order, which `monitor_services` follows.
    configured: Vec<String>,
    monitor_services: Vec<String>,
    next: usize,
    control: Option<String>,
    service: Option<String>,
    wanted: Option<String>,
    running: Option<Running>,
    call: Option<String>,
    /// The appliance whose SPAN carries the call (in a cluster).
    appliance: Option<String>,
    /// Why the audio stopped coming, until the next call.
    interrupted: Option<String>,
    retry_at: Option<Timestamp>,
}

impl Controller {
    /// A controller trying `servers` in this order; `configured` is the configuration's order
    /// of the same list, which `monitor_services` (possibly empty) follows.
    pub fn new(
        servers: Vec<String>,
        configured: Vec<String>,
        monitor_services: Vec<String>,
    ) -> Self {
        Controller {
            servers,
            configured,
            monitor_services,
            next: 0,
            control: None,
            service: None,
            wanted: None,
            running: None,
            call: None,
            appliance: None,
            interrupted: None,
            retry_at: None,
        }
    }

    /// The appliances to try for the control plane, the next one first, round the list.
    pub fn servers_to_try(&self) -> Vec<String> {
        let n = self.servers.len();
        (0..n)
            .map(|i| self.servers[(self.next + i) % n].clone())
            .collect()
    }

    /// The control plane at `server` is up (logged in).
    pub fn control_up(&mut self, server: &str) {
        if let Some(i) = self.servers.iter().position(|s| s == server) {
            self.next = i;
        }
        self.control = Some(server.to_owned());
    }

    /// `server` could not be reached or refused the login: the next one is tried next.
    pub fn control_unreachable(&mut self, server: &str) {
        if let Some(i) = self.servers.iter().position(|s| s == server) {
            self.next = (i + 1) % self.servers.len().max(1);
        }
    }

    /// The control plane in use was lost: the appliance ended the monitor with the session;
    /// it starts again on the next appliance, at once.
    pub fn control_lost(&mut self, now: Timestamp) -> Vec<MediaNotice> {
        if let Some(server) = self.control.take() {
            self.control_unreachable(&server);
        }
        self.retry_at = Some(now);
        self.monitor_gone()
    }

    /// The control plane in use, if any.
    pub fn control(&self) -> Option<&str> {
        self.control.as_deref()
    }

    /// The monitor service to use with the control plane at `server`: the configured one at
    /// the same position of the list, else the one the appliance named, else its host on 42228.
    pub fn service_for(&self, server: &str, told: Option<&str>) -> String {
        if !self.monitor_services.is_empty() {
            let i = self
                .configured
                .iter()
                .position(|s| s == server)
                .unwrap_or(0);
            return self.monitor_services[i % self.monitor_services.len()].clone();
        }
        match told {
            Some(t) => t.to_owned(),
            None => format!("{}:42228", crate::config::host_of(server)),
        }
    }

    /// The monitor service connection, if any.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// Connected to the monitor service at `addr`.
    pub fn service_up(&mut self, addr: &str) {
        self.service = Some(addr.to_owned());
    }

    /// The monitor service connection was lost: the monitor ends here (and restarts).
    pub fn service_lost(&mut self, now: Timestamp) -> Vec<MediaNotice> {
        self.service = None;
        self.retry_at = Some(now);
        self.monitor_gone()
    }

    /// The supervisor (or the configuration) wants `agent` monitored.
    pub fn want(&mut self, agent: Option<String>) {
        self.wanted = agent;
    }

    /// The agent wanted, if any.
    pub fn wanted(&self) -> Option<&str> {
        self.wanted.as_deref()
    }

    /// The running monitor, if any.
    pub fn running(&self) -> Option<&Running> {
        self.running.as_ref()
    }

    /// The call the running monitor is on, if any.
    pub fn call(&self) -> Option<&str> {
        self.call.as_deref()
    }

    /// The appliance whose SPAN carries the call, in a cluster.
    pub fn appliance(&self) -> Option<&str> {
        self.appliance.as_deref()
    }

    /// Why the running monitor's audio stopped coming (an appliance of the cluster became
    /// unreachable), until its next call.
    pub fn interrupted(&self) -> Option<&str> {
        self.interrupted.as_deref()
    }

    /// What to do about a monitor of `agent` the supervisor asked for.
    pub fn plan_start(&self, agent: &str) -> StartPlan {
        match &self.running {
            Some(r) if &*r.agent == agent => StartPlan::AlreadyRunning,
            r => StartPlan::Ask {
                replaces: r.as_ref().map(|r| r.agent.clone()),
            },
        }
    }

    /// A monitor of `agent` was granted: it is the one wanted from now on.
    pub fn granted(&mut self, agent: &str) {
        self.wanted = Some(agent.to_owned());
    }

    /// Attached to monitor `monitor` of `agent`: it runs.
    pub fn attached(&mut self, monitor: u64, agent: &str) {
        self.running = Some(Running {
            monitor,
            agent: Arc::from(agent),
        });
        self.retry_at = None;
    }

    /// A start failed (`error`): tried again [`RETRY_EVERY`] after `now`, unless nothing
    /// could ever make it work (the control plane refused the monitor: it stays wanted only
    /// when it was wanted before this request).
    pub fn start_failed(&mut self, now: Timestamp, error: &EndpointError) {
        self.retry_at = Some(now + RETRY_EVERY);
        if let EndpointError::ControlLost { .. } = error {
            if let Some(server) = self.control.take() {
                self.control_unreachable(&server);
            }
        }
    }

    /// The supervisor stops: nothing is wanted; the running monitor (its agent returned, to
    /// tell the control plane) ends with its call.
    pub fn stop(&mut self) -> (Option<Arc<str>>, Vec<MediaNotice>) {
        self.wanted = None;
        let agent = self.running.as_ref().map(|r| r.agent.clone());
        (agent, self.monitor_gone())
    }

    /// The control plane says monitor `monitor` ended for `reason`.
    pub fn monitor_stopped(
        &mut self,
        now: Timestamp,
        monitor: u64,
        reason: &StopReason,
    ) -> Vec<MediaNotice> {
        if self.running.as_ref().map(|r| r.monitor) != Some(monitor) {
            return Vec::new();
        }
        self.ended(now, reason);
        self.monitor_gone()
    }

    /// The running monitor ended for `reason`: wanted no more when that is final (the agent
    /// left, the supervisor stopped it, StopSMNonACDCall), else started again now.
    fn ended(&mut self, now: Timestamp, reason: &StopReason) {
        if reason.is_final() {
            self.wanted = None;
        } else {
            self.retry_at = Some(now);
        }
    }

    /// Where the monitor service's event goes.
    pub fn on_service_event(&mut self, now: Timestamp, ev: &ServiceEvent) -> Route {
        let Some(run) = self.running.clone() else {
            return Route::Discard;
        };
        match ev {
            ServiceEvent::Media { monitor, .. } if *monitor == run.monitor => {
                Route::Media(run.agent)
            }
            ServiceEvent::Call {
                monitor,
                call_id,
                payloads,
                started,
                appliance,
            } if *monitor == run.monitor && self.call.as_deref() != Some(call_id.as_str()) => {
                self.call = Some(call_id.clone());
                self.appliance = appliance.clone();
                self.interrupted = None;
                Route::Notices(vec![MediaNotice::Call {
                    agent: run.agent,
                    call_id: call_id.clone(),
                    payloads: *payloads,
                    started: *started,
                }])
            }
            ServiceEvent::CallEnded { monitor, call_id } if *monitor == run.monitor => {
                if self.call.as_deref() == Some(call_id.as_str()) {
                    self.call = None;
                }
                // The current call, or one set aside for a consult: the media loop closes it.
                Route::Notices(vec![MediaNotice::CallEnded {
                    call_id: call_id.clone(),
                }])
            }
            ServiceEvent::Interrupted { monitor, reason } if *monitor == run.monitor => {
                // The call's appliance is gone: its call ends here (its WAV is finished); the
                // monitor stays and hears the agent's next call wherever it is seen.
                self.interrupted = Some(reason.clone());
                self.appliance = None;
                let ended = self
                    .call
                    .take()
                    .map(|call_id| MediaNotice::CallEnded { call_id });
                Route::Notices(ended.into_iter().collect())
            }
            ServiceEvent::Stopped { monitor, reason } if *monitor == run.monitor => {
                // The appliance revoked it: for good when the reason is final (as the control
                // plane's word would say), else it starts again.
                self.ended(now, &StopReason::from_wire(reason));
                Route::Notices(self.monitor_gone())
            }
            ServiceEvent::Media { .. } => Route::Discard,
            _ => Route::Notices(Vec::new()),
        }
    }

    /// The agent to (re)start now, if one is wanted, none runs, and the retry time came.
    pub fn due(&self, now: Timestamp) -> Option<String> {
        let wanted = self.wanted.clone()?;
        if self.running.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        Some(wanted)
    }

    /// The running monitor ends here: its call ends for the media loop.
    fn monitor_gone(&mut self) -> Vec<MediaNotice> {
        self.running = None;
        self.call
            .take()
            .map(|call_id| MediaNotice::CallEnded { call_id })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests;
