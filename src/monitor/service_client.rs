//! The endpoint side of the monitor service (the supervisor endpoint and the tests): one
//! TLS 1.3 connection (client certificate from the given config; plaintext only with
//! `--insecure`), attach with session keys, then events.
//!
//! Rules: a thin shell over [`wire`]. A background task sends a `Heartbeat` every
//! interval (so an endpoint busy elsewhere stays alive); the service's heartbeats are answered
//! while [`MonitorClient::attach`] or [`MonitorClient::next_event`] read. Events that arrive
//! while `attach` waits for its reply are kept, in order, for `next_event`. Media of a monitor
//! this client does not hold (already stopped or detached) is dropped and counted.
//!
//! The read side is a sans-IO [`Decoder`] (bytes from the service in, frames out) that the
//! shell fills straight from the socket. Per media frame it allocates nothing in steady state:
//! the read buffer is reused (consumed bytes are skipped by an offset and the unread tail is
//! moved to the front only when the free room runs short), and each [`Event::Media`]'s RTP is
//! copied into a spare buffer that the application hands back with
//! [`MonitorClient::recycle`] once it is done with it (an application that never recycles
//! gets a fresh `Vec` per packet). Control objects (calls, stops, heartbeats) are rare and
//! allocate. Below this module, rustls's buffered connection copies each received TLS
//! record's plaintext into a `Vec` of its own (one allocation per record, which may carry
//! one media frame or a batch of them).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::wire::{self, Control, Frame};
use crate::binding::Direction;
use crate::codec::PayloadMap;
use crate::net::{dial, Stream, CONNECT_TIMEOUT};
use crate::router::MonitorId;
use crate::time::Timestamp;

/// Default interval of the client's heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Free room the read buffer offers each socket read.
const READ_CHUNK: usize = 16 * 1024;
/// Capacity of a fresh RTP buffer (a large RTP packet; a longer one grows its buffer once).
const RTP_BUFFER: usize = 2048;
/// Most recycled RTP buffers kept for reuse (the others are freed).
pub const SPARE_BUFFERS: usize = 1024;

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
        /// The RTP packet, in a recycled buffer: give it back with [`MonitorClient::recycle`]
        /// (or [`Decoder::recycle`]) when done, so the next packet needs no allocation.
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
        /// The appliance whose SPAN carries the call, in a cluster.
        appliance: Option<String>,
    },
    /// A call the monitor was hearing ended.
    CallEnded {
        /// The monitor.
        monitor: MonitorId,
        /// SIP Call-ID.
        call_id: String,
    },
    /// The monitor's audio stopped coming: the appliance that carried it is unreachable. The
    /// monitor goes on; its audio comes back with a later `Call`.
    Interrupted {
        /// The monitor.
        monitor: MonitorId,
        /// Why.
        reason: String,
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

/// What [`Decoder::next_frame`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// A media frame of a held monitor, as [`Event::Media`].
    Media(Event),
    /// A control object (heartbeats included; answering them is the caller's job).
    Control(Control),
}

/// The client's read side, sans-IO: bytes from the service in ([`Decoder::space`] and
/// [`Decoder::filled`], or [`Decoder::feed`]), frames out ([`Decoder::next_frame`]).
///
/// Media of monitors not [held](Decoder::hold) is dropped and counted. Once warm (the read
/// buffer grown to the largest frame seen, enough spare RTP buffers recycled), decoding a
/// media frame allocates nothing.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes `start..end` are received and not yet decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    held: Vec<MonitorId>,
    spare: Vec<Vec<u8>>,
    stray_media: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// An empty decoder holding no monitor.
    pub fn new() -> Decoder {
        Decoder {
            buf: vec![0; 2 * READ_CHUNK],
            start: 0,
            end: 0,
            held: Vec::new(),
            spare: Vec::with_capacity(SPARE_BUFFERS),
            stray_media: 0,
        }
    }

    /// Media of `monitor` is now delivered.
    pub fn hold(&mut self, monitor: MonitorId) {
        if !self.held.contains(&monitor) {
            self.held.push(monitor);
        }
    }

    /// Media of `monitor` is now dropped (counted in [`Decoder::stray_media`]).
    pub fn release(&mut self, monitor: MonitorId) {
        self.held.retain(|m| *m != monitor);
    }

    /// Media frames received for monitors not held.
    pub fn stray_media(&self) -> u64 {
        self.stray_media
    }

    /// Gives back an [`Event::Media`]'s buffer for a later packet (kept up to
    /// [`SPARE_BUFFERS`]; never allocates).
    pub fn recycle(&mut self, mut rtp: Vec<u8>) {
        if self.spare.len() < self.spare.capacity() {
            rtp.clear();
            self.spare.push(rtp);
        }
    }

    /// Free room for the next read, at least 16 KiB; call [`Decoder::filled`]
    /// with what was written there. Call it only after [`Decoder::next_frame`] returned
    /// `None` (so the unread bytes are less than one frame and the buffer stays bounded).
    pub fn space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < READ_CHUNK && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() - self.end < READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were written at the start of [`Decoder::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends received bytes (for callers that do not read into [`Decoder::space`]).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.space();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// The next whole frame, or `None` when more bytes are needed. Media of monitors not held
    /// is skipped. An error is the service's fault; after [`wire::Error::TooLarge`] the
    /// stream cannot be resynchronised, after others the bad frame is skipped.
    pub fn next_frame(&mut self) -> Result<Option<Received>, wire::Error> {
        loop {
            let (frame, n) = match wire::decode(&self.buf[self.start..self.end]) {
                Ok(decoded) => decoded,
                Err(wire::Error::Incomplete) => return Ok(None),
                Err(e) => {
                    self.skip_frame();
                    return Err(e);
                }
            };
            let received = match frame {
                Frame::Media(m) => {
                    let monitor = MonitorId::from(m.monitor);
                    if self.held.contains(&monitor) {
                        let mut rtp = self
                            .spare
                            .pop()
                            .unwrap_or_else(|| Vec::with_capacity(RTP_BUFFER));
                        rtp.extend_from_slice(m.rtp);
                        Some(Received::Media(Event::Media {
                            monitor,
                            stream: m.stream,
                            direction: m.direction,
                            capture_ts: m.capture_ts,
                            rtp,
                        }))
                    } else {
                        self.stray_media += 1;
                        None
                    }
                }
                Frame::Control(c) => Some(Received::Control(c)),
            };
            self.start += n;
            if received.is_some() {
                return Ok(received);
            }
        }
    }

    /// Steps over the bad frame at the front (its length is [`wire::check`]'s answer).
    fn skip_frame(&mut self) {
        if let Ok(n) = wire::check(&self.buf[self.start..self.end]) {
            self.start += n;
        }
    }
}

type Writer = Arc<Mutex<WriteHalf<Box<dyn Stream>>>>;

/// One connection to a monitor service.
pub struct MonitorClient {
    rd: ReadHalf<Box<dyn Stream>>,
    wr: Writer,
    heartbeat: JoinHandle<()>,
    addr: String,
    decoder: Decoder,
    pending: VecDeque<Event>,
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
        let stream = dial(addr, tls, CONNECT_TIMEOUT)
            .await
            .map_err(|e| e.into_error(|source| io_error(addr, source), Error::ServerName))?;
        let (rd, wr) = tokio::io::split(stream);
        let wr: Writer = Arc::new(Mutex::new(wr));
        let heartbeat = tokio::spawn(send_heartbeats(wr.clone(), heartbeat));
        Ok(MonitorClient {
            rd,
            wr,
            heartbeat,
            addr: addr.to_owned(),
            decoder: Decoder::new(),
            pending: VecDeque::new(),
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
                    self.decoder.hold(monitor);
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
        self.decoder.stray_media()
    }

    /// Gives back an [`Event::Media`]'s RTP buffer for a later packet (see [`Decoder::recycle`]).
    pub fn recycle(&mut self, rtp: Vec<u8>) {
        self.decoder.recycle(rtp);
    }

    /// Reads frames until a control object, keeping media as pending events.
    async fn read_control(&mut self) -> Result<Control, Error> {
        loop {
            match self.read_frame().await? {
                Received::Control(c) => return Ok(c),
                Received::Media(e) => self.pending.push_back(e),
            }
        }
    }

    /// Reads one frame: an event, or None for a heartbeat (or a control object the
    /// application never sees).
    async fn read_event(&mut self) -> Result<Option<Event>, Error> {
        Ok(match self.read_frame().await? {
            Received::Media(e) => Some(e),
            Received::Control(c) => self.event_of(c),
        })
    }

    /// Reads one frame, answering heartbeats on the way; heartbeat replies are skipped.
    async fn read_frame(&mut self) -> Result<Received, Error> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Received::Control(Control::Heartbeat { seq }))) => {
                    self.send(&Control::HeartbeatReply { seq }).await?;
                }
                Ok(Some(Received::Control(Control::HeartbeatReply { .. }))) => {}
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {
                    let n =
                        self.rd
                            .read(self.decoder.space())
                            .await
                            .map_err(|source| Error::Io {
                                addr: self.addr.clone(),
                                source,
                            })?;
                    if n == 0 {
                        return Err(Error::Closed(self.addr.clone()));
                    }
                    self.decoder.filled(n);
                }
                Err(source) => {
                    return Err(Error::Wire {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
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
                appliance,
            } => Event::Call {
                monitor: monitor.into(),
                call_id,
                payloads,
                started,
                appliance,
            },
            Control::Interrupted { monitor, reason } => Event::Interrupted {
                monitor: monitor.into(),
                reason,
            },
            Control::CallEnded { monitor, call_id } => Event::CallEnded {
                monitor: monitor.into(),
                call_id,
            },
            Control::Stopped { monitor, reason } => {
                let monitor = MonitorId::from(monitor);
                self.decoder.release(monitor);
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

/// An I/O error on the link to `addr`.
fn io_error(addr: &str, source: std::io::Error) -> Error {
    Error::Io {
        addr: addr.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::wire::Media;

    fn media(monitor: u32, rtp: &[u8], out: &mut Vec<u8>) {
        Media {
            monitor,
            stream: 9,
            direction: Direction::ToAgent,
            capture_ts: Timestamp::from_nanos(5),
            rtp,
        }
        .append(out)
        .unwrap();
    }

    fn rtp_of(r: Option<Received>) -> Vec<u8> {
        match r {
            Some(Received::Media(Event::Media { monitor, rtp, .. })) => {
                assert_eq!(monitor, 1);
                rtp
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_straddling_reads_decode_in_order_and_stray_media_is_counted() {
        let mut bytes = Vec::new();
        media(1, &[1; 300], &mut bytes);
        media(2, &[2; 10], &mut bytes);
        Control::Heartbeat { seq: 4 }.append(&mut bytes).unwrap();
        media(1, &[3; wire::MAX_RTP], &mut bytes);
        let mut d = Decoder::new();
        d.hold(1);
        let mut got = Vec::new();
        for chunk in bytes.chunks(333) {
            d.feed(chunk);
            while let Some(r) = d.next_frame().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(d.stray_media(), 1);
        let mut got = got.into_iter();
        assert_eq!(rtp_of(got.next()), [1; 300]);
        assert_eq!(
            got.next(),
            Some(Received::Control(Control::Heartbeat { seq: 4 }))
        );
        assert_eq!(rtp_of(got.next()).len(), wire::MAX_RTP);
        assert_eq!(got.next(), None);
        assert_eq!((d.start, d.end), (d.end, d.end), "everything consumed");
        d.release(1);
        d.feed(&bytes[..304 + 18]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.stray_media(), 2);
    }

    #[test]
    fn a_recycled_buffer_carries_the_next_packet() {
        let mut bytes = Vec::new();
        media(1, &[7; 40], &mut bytes);
        media(1, &[8; 20], &mut bytes);
        let mut d = Decoder::new();
        d.hold(1);
        d.feed(&bytes);
        let first = rtp_of(d.next_frame().unwrap());
        let ptr = first.as_ptr();
        d.recycle(first);
        let second = rtp_of(d.next_frame().unwrap());
        assert_eq!(second, [8; 20]);
        assert_eq!(second.as_ptr(), ptr);
    }

    #[test]
    fn a_bad_frame_is_skipped_and_the_next_one_decodes() {
        let mut bytes = vec![0, 0, 0, 2, 0x01, 0x00]; // media body shorter than its header
        media(1, &[5; 12], &mut bytes);
        let mut d = Decoder::new();
        d.hold(1);
        d.feed(&bytes);
        assert_eq!(d.next_frame(), Err(wire::Error::MediaTooShort { len: 2 }));
        assert_eq!(rtp_of(d.next_frame().unwrap()), [5; 12]);
    }
}
