//! One endpoint connection's logic, without sockets or clock reads: bytes in
//! ([`EndpointConn::handle_input`]), revocations in ([`EndpointConn::handle_revoked`]), time in
//! ([`EndpointConn::handle_timeout`] at [`EndpointConn::poll_timeout`]); out go control frames into the
//! connection's [`Subscriber`] queue, attach/detach commands to the publisher and ended
//! monitors to the control plane. The service's connection task is a thin loop around it.
//!
//! Rules: a refused attach, a malformed frame of known length or an unexpected request gets an
//! `Error` frame and the session goes on; only an oversized length (the stream cannot be
//! resynchronised) ends it, and [`MAX_FAILED_ATTACHES`] refused attaches (a client trying keys).
//! Every refused attach is audited with the connection's certificate name. Any bytes from the endpoint count as a sign of life; silence longer
//! than the heartbeat timeout ends the session. The `Attached` reply is queued before the
//! publisher is told to route, so it precedes the monitor's first media frame. Every monitor
//! still held when the session ends is unrouted from this connection and reported to the
//! control plane with the ending's reason; the grant itself goes when the control plane's
//! ending comes back as a revocation (the session never ends a monitor on its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::fanout::{FanoutCommand, Subscriber};
use super::registry::{AttachError, Revocations, REVOCATIONS_QUEUE};
use super::registry::{ConnId, Registry};
use super::stats::MonitorStats;
use super::wire::{self, Control, Frame};
use crate::control::reply::StopReason;
use crate::control::server::ControlHandle;
use crate::router::MonitorId;
use crate::security::audit::{AuditEvent, AuditSink};

/// Refused attaches after which a connection is closed.
pub(crate) const MAX_FAILED_ATTACHES: u32 = 3;

/// What every session of one service shares.
pub(crate) struct Context {
    pub(crate) registry: Arc<Registry>,
    pub(crate) control: ControlHandle,
    pub(crate) fanout: crossbeam_channel::Sender<FanoutCommand>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) queue_frames: usize,
    /// The most a connection's queue grows to with many monitors on it.
    pub(crate) queue_most: usize,
    pub(crate) stats: Arc<MonitorStats>,
    /// Where refused attaches are recorded.
    pub(crate) audit: AuditSink,
}

/// Why a session ended (the reason given to the control plane for its monitors).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The connection closed or failed.
    Disconnected,
    /// Nothing heard for longer than the heartbeat timeout.
    HeartbeatLost,
    /// A frame length over the limit.
    ProtocolError,
    /// The service is shutting down.
    Shutdown,
    /// Too many refused attaches.
    FailedAttaches,
}

impl Ending {
    /// The reason told to the control plane.
    pub(crate) fn reason(self) -> StopReason {
        match self {
            Ending::Disconnected => StopReason::EndpointDisconnected,
            Ending::HeartbeatLost => StopReason::EndpointHeartbeatLost,
            Ending::ProtocolError => StopReason::EndpointProtocolError,
            Ending::Shutdown => StopReason::ServiceStopped,
            Ending::FailedAttaches => StopReason::EndpointRefusedAttaches,
        }
    }
}

/// One endpoint connection.
pub(crate) struct EndpointConn {
    ctx: Arc<Context>,
    id: ConnId,
    peer: SocketAddr,
    /// The names in the connection's client certificate (None: plaintext, `--insecure`).
    certificate: Option<Vec<String>>,
    sub: Arc<Subscriber>,
    revoked: Revocations,
    failed_attaches: u32,
    held: Vec<u32>,
    last_heard: Instant,
    next_beat: Instant,
    seq: u64,
}

impl EndpointConn {
    /// A session for a connection from `peer` (client certificate names `certificate`, None
    /// on a plaintext link) opened at `now`, and the receiver of its revocations (feed them to
    /// [`EndpointConn::handle_revoked`]).
    pub(crate) fn new(
        ctx: Arc<Context>,
        peer: SocketAddr,
        certificate: Option<Vec<String>>,
        now: Instant,
    ) -> (EndpointConn, mpsc::Receiver<(u32, String)>) {
        let (revoked, rx) = mpsc::channel(REVOCATIONS_QUEUE);
        MonitorStats::add_one(&ctx.stats.endpoints);
        let session = EndpointConn {
            id: ctx.registry.connection_id(),
            sub: Arc::new(Subscriber::growing(
                ctx.queue_frames,
                ctx.queue_most,
                ctx.stats.clone(),
            )),
            next_beat: now + ctx.heartbeat_interval,
            ctx,
            peer,
            certificate,
            revoked,
            failed_attaches: 0,
            held: Vec::new(),
            last_heard: now,
            seq: 0,
        };
        (session, rx)
    }

    /// The queue the connection's writer drains.
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        &self.sub
    }

    /// Handles the whole frames at the start of `buf`, received at `now`; returns how many
    /// bytes they took (keep the rest and call again with more), or why the session ends.
    pub(crate) fn handle_input(&mut self, now: Instant, buf: &[u8]) -> Result<usize, Ending> {
        self.last_heard = now;
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match wire::decode(rest) {
                Ok((frame, len)) => {
                    used += len;
                    self.handle_frame(frame)?;
                }
                Err(wire::Error::Incomplete) => return Ok(used),
                Err(e @ wire::Error::TooLarge { .. }) => {
                    MonitorStats::add_one(&self.ctx.stats.protocol_errors_total);
                    tracing::info!(peer = %self.peer, error = %e, "monitor service: closing connection");
                    self.refuse(e.to_string());
                    return Err(Ending::ProtocolError);
                }
                Err(e) => {
                    MonitorStats::add_one(&self.ctx.stats.protocol_errors_total);
                    // Any error but Incomplete and TooLarge comes after check() measured the
                    // frame, so its length is known and the next frame starts after it.
                    used += wire::check(rest).unwrap_or(rest.len());
                    self.refuse(e.to_string());
                }
            }
        }
    }

    /// When [`EndpointConn::handle_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next_beat
    }

    /// Sends the next heartbeat, or ends the session when the endpoint was silent too long.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), Ending> {
        if now < self.next_beat {
            return Ok(());
        }
        if now.duration_since(self.last_heard) > self.ctx.heartbeat_timeout {
            return Err(Ending::HeartbeatLost);
        }
        self.seq += 1;
        self.sub.send_control(&Control::Heartbeat { seq: self.seq });
        self.next_beat = now + self.ctx.heartbeat_interval;
        Ok(())
    }

    /// The appliance revoked `monitor`: `Stopped` to the endpoint, the route removed.
    pub(crate) fn handle_revoked(&mut self, monitor: u32, reason: String) {
        if self.forget(monitor) {
            self.sub.send_control(&Control::Stopped { monitor, reason });
        }
    }

    /// Ends the session: every monitor still held is unrouted and reported with `ending`'s
    /// reason; the writer is told to finish.
    pub(crate) fn end(&mut self, ending: Ending) {
        for monitor in self.held.clone() {
            self.forget(monitor);
            tracing::info!(monitor, peer = %self.peer, reason = %ending.reason(), "monitor service: monitor ended");
            self.ctx
                .control
                .end_monitor(MonitorId::from(monitor), ending.reason());
        }
        self.sub.close();
    }

    fn refuse(&self, reason: String) {
        self.sub.send_control(&Control::Error { reason });
    }

    /// Drops `monitor` from the held set and its route; false when it was not held.
    fn forget(&mut self, monitor: u32) -> bool {
        let Some(i) = self.held.iter().position(|m| *m == monitor) else {
            return false;
        };
        self.held.swap_remove(i);
        MonitorStats::sub_one(&self.ctx.stats.attached);
        let detach = FanoutCommand::Detach {
            monitor: MonitorId::from(monitor),
        };
        if self.ctx.fanout.try_send(detach).is_err() {
            tracing::warn!(monitor, "monitor service: publisher not taking commands");
        }
        true
    }

    fn handle_frame(&mut self, frame: Frame<'_>) -> Result<(), Ending> {
        let unexpected = |what: &str| format!("{what} is not a request an endpoint sends");
        match frame {
            Frame::Control(Control::Attach { key }) => return self.attach(&key),
            Frame::Control(Control::Detach { monitor }) => self.detach(monitor),
            Frame::Control(Control::Heartbeat { seq }) => {
                self.sub.send_control(&Control::HeartbeatReply { seq })
            }
            Frame::Control(Control::HeartbeatReply { .. }) => {}
            Frame::Media(_) => {
                MonitorStats::add_one(&self.ctx.stats.protocol_errors_total);
                self.refuse(unexpected("a media frame"))
            }
            Frame::Control(other) => {
                MonitorStats::add_one(&self.ctx.stats.protocol_errors_total);
                self.refuse(unexpected(other.name()))
            }
        }
        Ok(())
    }

    /// A refused attach: told, counted, audited; too many end the session.
    fn attach_refused(&mut self, e: &AttachError) -> Result<(), Ending> {
        MonitorStats::add_one(&self.ctx.stats.attach_refused_total);
        let certificate = self.certificate.as_ref().and_then(|c| c.first().cloned());
        tracing::info!(peer = %self.peer, certificate, error = %e, "monitor service: attach refused");
        let monitor = match e {
            AttachError::WrongCertificate { monitor } => Some(*monitor),
            _ => None,
        };
        (self.ctx.audit)(
            &AuditEvent::AttachRefused {
                certificate,
                monitor,
                reason: e.to_string(),
            },
            Some(self.peer),
        );
        self.refuse(e.to_string());
        self.failed_attaches += 1;
        if self.failed_attaches >= MAX_FAILED_ATTACHES {
            return Err(Ending::FailedAttaches);
        }
        Ok(())
    }

    fn attach(&mut self, key: &str) -> Result<(), Ending> {
        let r = self.ctx.registry.attach(
            key,
            (self.id, self.certificate.as_deref()),
            &self.sub,
            &self.revoked,
        );
        let (monitor, agent) = match r {
            Ok(x) => x,
            Err(e) => return self.attach_refused(&e),
        };
        self.sub.send_control(&Control::Attached { monitor, agent });
        let attach = FanoutCommand::Attach {
            monitor: MonitorId::from(monitor),
            wire: monitor,
            subscriber: self.sub.clone(),
        };
        if self.ctx.fanout.try_send(attach).is_err() {
            MonitorStats::add_one(&self.ctx.stats.attach_refused_total);
            let reason = StopReason::ServiceBusy;
            self.sub.send_control(&Control::Stopped {
                monitor,
                reason: reason.to_string(),
            });
            self.ctx
                .control
                .end_monitor(MonitorId::from(monitor), reason);
            return Ok(());
        }
        self.held.push(monitor);
        MonitorStats::add_one(&self.ctx.stats.attached);
        Ok(())
    }

    fn detach(&mut self, monitor: u32) {
        if !self.forget(monitor) {
            return self.refuse(format!("not attached to monitor {monitor}"));
        }
        self.ctx
            .control
            .end_monitor(MonitorId::from(monitor), StopReason::EndpointDetached);
        self.sub.send_control(&Control::Stopped {
            monitor,
            reason: "detached by the endpoint".into(),
        });
    }
}

impl Drop for EndpointConn {
    fn drop(&mut self) {
        MonitorStats::sub_one(&self.ctx.stats.endpoints);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::server;
    use crate::monitor::fanout::commands;

    struct Rig {
        session: EndpointConn,
        revoked: mpsc::Receiver<(u32, String)>,
        ended: mpsc::Receiver<(u64, StopReason)>,
        audited: Arc<std::sync::Mutex<Vec<AuditEvent>>>,
        fanout: crossbeam_channel::Receiver<FanoutCommand>,
        fanout_tx: crossbeam_channel::Sender<FanoutCommand>,
        registry: Arc<Registry>,
        stats: Arc<MonitorStats>,
        t0: Instant,
    }

    fn rig() -> Rig {
        rig_with(None)
    }

    /// A session on a connection whose client certificate carries `certificate`.
    fn rig_with(certificate: Option<&str>) -> Rig {
        let (control, inbox) = server::handle(&server::ControlStats::default());
        let ended = inbox.ended;
        let audited = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = audited.clone();
        let (tx, fanout) = commands();
        let registry = Arc::new(Registry::new());
        let stats = Arc::new(MonitorStats::default());
        let ctx = Arc::new(Context {
            registry: registry.clone(),
            control,
            fanout: tx.clone(),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            queue_frames: 8,
            queue_most: 8,
            stats: stats.clone(),
            audit: Arc::new(move |e: &AuditEvent, _| seen.lock().unwrap().push(e.clone())),
        });
        let t0 = Instant::now();
        let names = certificate.map(|c| vec![c.to_owned()]);
        let (session, revoked) = EndpointConn::new(ctx, "127.0.0.1:9".parse().unwrap(), names, t0);
        Rig {
            session,
            revoked,
            ended,
            audited,
            fanout,
            fanout_tx: tx,
            registry,
            stats,
            t0,
        }
    }

    fn bytes(frames: &[Control]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            f.append(&mut v).unwrap();
        }
        v
    }

    /// The control frames the session queued for the endpoint.
    fn sent(s: &EndpointConn) -> Vec<Control> {
        let mut out = Vec::new();
        s.subscriber().drain_into(&mut out, usize::MAX);
        let mut rest = &out[..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let (f, n) = wire::decode(rest).unwrap();
            match f {
                Frame::Control(c) => got.push(c),
                Frame::Media(m) => panic!("unexpected media {m:?}"),
            }
            rest = &rest[n..];
        }
        got
    }

    fn routed(r: &Rig) -> Vec<(bool, MonitorId)> {
        r.fanout
            .try_iter()
            .map(|c| match c {
                FanoutCommand::Attach { monitor, .. } => (true, monitor),
                FanoutCommand::Detach { monitor } => (false, monitor),
            })
            .collect()
    }

    #[test]
    fn attach_refusals_detach_and_revoke() {
        let mut r = rig();
        r.registry.grant(1, "k1", "5001", ("s1", "s1")).unwrap();
        r.registry.grant(2, "k2", "5002", ("s1", "s1")).unwrap();
        let input = bytes(&[
            Control::Attach { key: "bad".into() },
            Control::Attach { key: "k1".into() },
            Control::Attach { key: "k1".into() },
            Control::Attach { key: "k2".into() },
            Control::Heartbeat { seq: 4 },
        ]);
        // Fed in two pieces: the first ends mid-frame.
        let cut = input.len() - 3;
        let used = r.session.handle_input(r.t0, &input[..cut]).unwrap();
        assert!(used < cut);
        let rest = &input[used..];
        assert_eq!(r.session.handle_input(r.t0, rest), Ok(rest.len()));
        assert_eq!(
            sent(&r.session),
            [
                Control::Error {
                    reason: "unknown session key".into()
                },
                Control::Attached {
                    monitor: 1,
                    agent: "5001".into()
                },
                Control::Error {
                    reason: "session key already used".into()
                },
                Control::Attached {
                    monitor: 2,
                    agent: "5002".into()
                },
                Control::HeartbeatReply { seq: 4 },
            ]
        );
        assert_eq!(routed(&r), [(true, 1), (true, 2)]);
        assert_eq!(MonitorStats::get(&r.stats.attached), 2);

        // The appliance revokes 1: Stopped, route removed, the control plane not told.
        assert!(r.registry.revoke(1, "stopped by supervisor"));
        let (m, reason) = r.revoked.try_recv().unwrap();
        r.session.handle_revoked(m, reason);
        assert_eq!(
            sent(&r.session),
            [Control::Stopped {
                monitor: 1,
                reason: "stopped by supervisor".into()
            }]
        );
        // The endpoint detaches 2 (and then 2 again, and 1 it no longer holds).
        let input = bytes(&[
            Control::Detach { monitor: 2 },
            Control::Detach { monitor: 2 },
            Control::Detach { monitor: 1 },
        ]);
        assert_eq!(r.session.handle_input(r.t0, &input), Ok(input.len()));
        assert_eq!(
            sent(&r.session),
            [
                Control::Stopped {
                    monitor: 2,
                    reason: "detached by the endpoint".into()
                },
                Control::Error {
                    reason: "not attached to monitor 2".into()
                },
                Control::Error {
                    reason: "not attached to monitor 1".into()
                },
            ]
        );
        assert_eq!(routed(&r), [(false, 1), (false, 2)]);
        assert_eq!(
            r.ended.try_recv().unwrap(),
            (2, StopReason::EndpointDetached)
        );
        assert!(r.ended.try_recv().is_err());
        assert_eq!(MonitorStats::get(&r.stats.attached), 0);
        assert_eq!(MonitorStats::get(&r.stats.attach_refused_total), 2);
    }

    #[test]
    fn another_supervisors_key_is_refused_audited_and_three_refusals_end_the_session() {
        let mut r = rig_with(Some("s2"));
        r.registry.grant(1, "k1", "5001", ("s1", "s1")).unwrap();
        r.registry.grant(2, "k2", "5002", ("s2", "s2")).unwrap();
        let one = |key: &str| bytes(&[Control::Attach { key: key.into() }]);
        // s2's connection with s1's key: refused, and the grant stays for s1.
        assert!(r.session.handle_input(r.t0, &one("k1")).is_ok());
        assert_eq!(
            sent(&r.session),
            [Control::Error {
                reason: "this session key was granted to another supervisor".into()
            }]
        );
        assert!(r.registry.is_granted(1));
        assert_eq!(
            r.audited.lock().unwrap()[0],
            AuditEvent::AttachRefused {
                certificate: Some("s2".into()),
                monitor: Some(1),
                reason: "this session key was granted to another supervisor".into()
            }
        );
        // Its own key works.
        assert!(r.session.handle_input(r.t0, &one("k2")).is_ok());
        assert!(matches!(
            sent(&r.session)[..],
            [Control::Attached { monitor: 2, .. }]
        ));
        // Guessing keys: the third refusal ends the connection (and reports what it held, which
        // goes when the control plane revokes it).
        assert!(r.session.handle_input(r.t0, &one("guess")).is_ok());
        assert_eq!(
            r.session.handle_input(r.t0, &one("guess2")),
            Err(Ending::FailedAttaches)
        );
        assert_eq!(r.audited.lock().unwrap().len(), 3);
        r.session.end(Ending::FailedAttaches);
        assert_eq!(
            r.ended.try_recv().unwrap(),
            (2, StopReason::EndpointRefusedAttaches)
        );
        assert!(r
            .registry
            .revoke(2, StopReason::EndpointRefusedAttaches.as_str()));
        assert!(!r.registry.is_granted(2));
    }

    #[test]
    fn a_publisher_not_taking_commands_ends_the_attach_as_service_busy() {
        let mut r = rig();
        r.registry.grant(1, "k1", "5001", ("s1", "s1")).unwrap();
        while r
            .fanout_tx
            .try_send(FanoutCommand::Detach { monitor: 0 })
            .is_ok()
        {}
        let input = bytes(&[Control::Attach { key: "k1".into() }]);
        assert!(r.session.handle_input(r.t0, &input).is_ok());
        assert_eq!(
            sent(&r.session),
            [
                Control::Attached {
                    monitor: 1,
                    agent: "5001".into()
                },
                Control::Stopped {
                    monitor: 1,
                    reason: "monitor service busy".into()
                }
            ]
        );
        assert_eq!(r.ended.try_recv().unwrap(), (1, StopReason::ServiceBusy));
        assert_eq!(MonitorStats::get(&r.stats.attached), 0);
    }

    #[test]
    fn bad_frames_are_answered_and_skipped_an_oversized_one_ends_the_session() {
        let mut r = rig();
        let mut input = vec![0, 0, 0, 1, 0x07]; // unknown kind
        input.extend_from_slice(&bytes(&[Control::Stopped {
            monitor: 1,
            reason: "x".into(),
        }]));
        input.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']); // not a control object
        input.extend_from_slice(&bytes(&[Control::Heartbeat { seq: 1 }]));
        assert_eq!(r.session.handle_input(r.t0, &input), Ok(input.len()));
        let got = sent(&r.session);
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            Control::Error {
                reason: "unknown frame kind 0x07 (0x01 is media, '{' is control)".into()
            }
        );
        assert_eq!(
            got[1],
            Control::Error {
                reason: "Stopped is not a request an endpoint sends".into()
            }
        );
        assert!(
            matches!(&got[2], Control::Error { reason } if reason.starts_with("bad control frame"))
        );
        assert_eq!(got[3], Control::HeartbeatReply { seq: 1 });
        assert_eq!(MonitorStats::get(&r.stats.protocol_errors_total), 3);
        assert_eq!(
            r.session.handle_input(r.t0, &[0xFF, 0, 0, 0]),
            Err(Ending::ProtocolError)
        );
    }

    #[test]
    fn heartbeats_and_silence_on_a_simulated_clock() {
        let mut r = rig();
        r.registry.grant(1, "k1", "5001", ("s1", "s1")).unwrap();
        let input = bytes(&[Control::Attach { key: "k1".into() }]);
        r.session.handle_input(r.t0, &input).unwrap();
        sent(&r.session);
        let s = |secs| r.t0 + Duration::from_secs(secs);
        assert_eq!(r.session.poll_timeout(), s(5));
        assert_eq!(r.session.handle_timeout(s(4)), Ok(()));
        assert!(sent(&r.session).is_empty());
        assert_eq!(r.session.handle_timeout(s(5)), Ok(()));
        assert_eq!(sent(&r.session), [Control::Heartbeat { seq: 1 }]);
        assert_eq!(r.session.poll_timeout(), s(10));
        // Heard at 9 s: still alive at 20 s, not at 25 s.
        r.session.handle_input(s(9), &[]).unwrap();
        assert_eq!(r.session.handle_timeout(s(20)), Ok(()));
        assert_eq!(r.session.handle_timeout(s(25)), Err(Ending::HeartbeatLost));
        r.session.end(Ending::HeartbeatLost);
        assert_eq!(
            r.ended.try_recv().unwrap(),
            (1, StopReason::EndpointHeartbeatLost)
        );
        assert!(r
            .registry
            .revoke(1, StopReason::EndpointHeartbeatLost.as_str()));
        assert!(!r.registry.is_granted(1));
        assert!(r.session.subscriber().is_closed());
    }
}
