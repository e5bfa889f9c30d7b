//! The endpoint side of the monitor service (the supervisor endpoint and the tests): one
//! TLS 1.3 connection (client certificate from the given config; plaintext only with
//! `--insecure`), attach with session keys, then events.
//!
//! Rules: a thin shell over [`wire`](super::wire). A background task sends a `Heartbeat` every
//! interval (so an endpoint busy elsewhere stays alive); the service's heartbeats are answered
//! while [`MonitorClient::attach`] or [`MonitorClient::next_event`] read. Events that arrive
//! while `attach` waits for its reply are kept, in order, for `next_event`. Media of a monitor
//! this client does not hold (already stopped or detached) is dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::wire::{self, Control, Frame};
use crate::binding::Direction;
use crate::codec::PayloadMap;
use crate::router::MonitorId;
use crate::time::Timestamp;

/// Default interval of the client's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest TCP connect plus TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect, TLS or I/O.
    #[error("{addr}: {source}")]
    Io {
        /// Service address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server's name is not a valid TLS name.
    #[error("{0:?} is not a valid server name for TLS")]
    ServerName(String),
    /// The service sent a frame that did not decode.
    #[error("{addr}: bad frame from the monitor service: {source}")]
    Wire {
        /// Service address.
        addr: String,
        /// Cause.
        source: wire::Error,
    },
    /// The service closed the connection.
    #[error("{0}: the monitor service closed the connection")]
    Closed(String),
    /// The service refused a request.
    #[error("{addr}: refused: {reason}")]
    Refused {
        /// Service address.
        addr: String,
        /// The service's reason.
        reason: String,
    },
}

/// A successful attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The monitor.
    pub monitor: MonitorId,
    /// The monitored agent's id.
    pub agent: String,
}

/// What the service sends an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// One RTP packet of a monitored agent.
    Media {
        /// The monitor.
        monitor: MonitorId,
        /// The RTP stream (the appliance's flow table id).
        stream: u32,
        /// Relative to the agent.
        direction: Direction,
        /// When the appliance captured it.
        capture_ts: Timestamp,
        /// The RTP packet.
        rtp: Vec<u8>,
    },
    /// The agent's packets now come from this call.
    Call {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
        /// The call's payload formats.
        payloads: PayloadMap,
        /// When the call started.
        started: Timestamp,
    },
    /// A call the monitor was hearing ended.
    CallEnded {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
    },
    /// The monitor ended; no more of its media follows.
    Stopped {
        /// The monitor.
        monitor: MonitorId,
        /// Why.
        reason: String,
    },
    /// The service refused something this client sent (the connection stays).
    Error {
        /// The service's reason.
        reason: String,
    },
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Writer = Arc<Mutex<WriteHalf<Box<dyn Stream>>>>;

/// One connection to a monitor service.
pub struct MonitorClient {
    rd: ReadHalf<Box<dyn Stream>>,
    wr: Writer,
    heartbeat: JoinHandle<()>,
    addr: String,
    buf: Vec<u8>,
    pending: VecDeque<Event>,
    held: Vec<MonitorId>,
    stray_media: u64,
}

impl MonitorClient {
    /// Connects to `addr` (`host:port`); with `tls`, verifies the service as `server_name` and
    /// presents the config's client certificate. Sends heartbeats every 5 s.
    pub async fn connect(
        addr: &str,
        tls: Option<(Arc<rustls::ClientConfig>, &str)>,
    ) -> Result<MonitorClient, Error> {
        MonitorClient::connect_with_heartbeat(addr, tls, DEFAULT_HEARTBEAT_INTERVAL).await
    }

    /// [`MonitorClient::connect`] with another heartbeat interval.
    pub async fn connect_with_heartbeat(
        addr: &str,
        tls: Option<(Arc<rustls::ClientConfig>, &str)>,
        heartbeat: Duration,
    ) -> Result<MonitorClient, Error> {
        let io = |source| Error::Io {
            addr: addr.to_owned(),
            source,
        };
        let timed_out = || io(std::io::ErrorKind::TimedOut.into());
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match tls {
            Some((config, name)) => {
                let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
                    .map_err(|_| Error::ServerName(name.to_owned()))?;
                let connect = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
                let c = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(io)?;
                Box::new(c)
            }
            None => Box::new(tcp),
        };
        let (rd, wr) = tokio::io::split(stream);
        let wr: Writer = Arc::new(Mutex::new(wr));
        let heartbeat = tokio::spawn(send_heartbeats(wr.clone(), heartbeat));
        Ok(MonitorClient {
            rd,
            wr,
            heartbeat,
            addr: addr.to_owned(),
            buf: Vec::new(),
            pending: VecDeque::new(),
            held: Vec::new(),
            stray_media: 0,
        })
    }

    async fn send(&self, c: &Control) -> Result<(), Error> {
        write_control(&self.wr, c)
            .await
            .map_err(|source| Error::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Attaches to the monitor granted for `key`; waits for the service's answer.
    pub async fn attach(&mut self, key: &str) -> Result<Attached, Error> {
        self.send(&Control::Attach {
            key: key.to_owned(),
        })
        .await?;
        loop {
            match self.read_control().await? {
                Control::Attached { monitor, agent } => {
                    let monitor = MonitorId::from(monitor);
                    self.held.push(monitor);
                    return Ok(Attached { monitor, agent });
                }
                Control::Error { reason } => {
                    return Err(Error::Refused {
                        addr: self.addr.clone(),
                        reason,
                    })
                }
                other => {
                    if let Some(e) = self.event_of(other) {
                        self.pending.push_back(e);
                    }
                }
            }
        }
    }

    /// Asks the service to stop `monitor`; its `Stopped` event follows.
    pub async fn detach(&mut self, monitor: MonitorId) -> Result<(), Error> {
        let Ok(id) = u32::try_from(monitor) else {
            return Err(Error::Refused {
                addr: self.addr.clone(),
                reason: format!("monitor {monitor} is not a monitor service id"),
            });
        };
        self.send(&Control::Detach { monitor: id }).await
    }

    /// The next event (media, call changes, stops, refusals), answering heartbeats meanwhile.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        loop {
            if let Some(e) = self.read_event().await? {
                return Ok(e);
            }
        }
    }

    /// Media frames received for monitors this client does not hold.
    pub fn stray_media(&self) -> u64 {
        self.stray_media
    }

    /// Reads frames until a control object, keeping media as pending events.
    async fn read_control(&mut self) -> Result<Control, Error> {
        loop {
            if let Some(c) = self.read_frame().await? {
                return Ok(c);
            }
        }
    }

    /// Reads one frame: an event, or None for a heartbeat or stray media.
    async fn read_event(&mut self) -> Result<Option<Event>, Error> {
        Ok(match self.read_frame().await? {
            Some(c) => self.event_of(c),
            None => self.pending.pop_front(),
        })
    }

    /// Reads one frame. Media becomes a pending event (None returned); heartbeats are answered
    /// (None returned); other control objects are returned.
    async fn read_frame(&mut self) -> Result<Option<Control>, Error> {
        loop {
            match wire::decode(&self.buf) {
                Ok((Frame::Media(m), n)) => {
                    let monitor = MonitorId::from(m.monitor);
                    if self.held.contains(&monitor) {
                        self.pending.push_back(Event::Media {
                            monitor,
                            stream: m.stream,
                            direction: m.direction,
                            capture_ts: m.capture_ts,
                            rtp: m.rtp.to_vec(),
                        });
                    } else {
                        self.stray_media += 1;
                    }
                    self.buf.drain(..n);
                    return Ok(None);
                }
                Ok((Frame::Control(c), n)) => {
                    self.buf.drain(..n);
                    if let Control::Heartbeat { seq } = c {
                        self.send(&Control::HeartbeatReply { seq }).await?;
                        return Ok(None);
                    }
                    if let Control::HeartbeatReply { .. } = c {
                        return Ok(None);
                    }
                    return Ok(Some(c));
                }
                Err(wire::Error::Incomplete) => {}
                Err(source) => {
                    return Err(Error::Wire {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.rd.read(&mut chunk).await.map_err(|source| Error::Io {
                addr: self.addr.clone(),
                source,
            })?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The event a control object means for the application (None for ones it never sees).
    fn event_of(&mut self, c: Control) -> Option<Event> {
        Some(match c {
            Control::Call {
                monitor,
                call_id,
                payloads,
                started,
            } => Event::Call {
                monitor: monitor.into(),
                call_id,
                payloads,
                started,
            },
            Control::CallEnded { monitor, call_id } => Event::CallEnded {
                monitor: monitor.into(),
                call_id,
            },
            Control::Stopped { monitor, reason } => {
                let monitor = MonitorId::from(monitor);
                self.held.retain(|m| *m != monitor);
                Event::Stopped { monitor, reason }
            }
            Control::Error { reason } => Event::Error { reason },
            Control::Attach { .. }
            | Control::Attached { .. }
            | Control::Detach { .. }
            | Control::Heartbeat { .. }
            | Control::HeartbeatReply { .. } => return None,
        })
    }
}

impl Drop for MonitorClient {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

async fn write_control(wr: &Writer, c: &Control) -> std::io::Result<()> {
    let mut out = Vec::new();
    c.append(&mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut w = wr.lock().await;
    w.write_all(&out).await?;
    w.flush().await
}

async fn send_heartbeats(wr: Writer, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        seq += 1;
        if write_control(&wr, &Control::Heartbeat { seq })
            .await
            .is_err()
        {
            return;
        }
    }
}
