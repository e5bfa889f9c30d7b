//! A control-plane client connection (for `silentmon ctl`, the supervisor endpoint and the
//! tests): TLS 1.3 trusting the private CA (or plaintext with `--insecure`). Typed
//! ([`Client::call`]: a [`Request`] out, its [`Reply`] back) or frames in and out (the protocol
//! tests send what no type would build). A thin shell over the frame codec; server heartbeats
//! are answered here.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::frame::{self, Frame, DEFAULT_MAX_BODY};
use super::reply::Reply;
use super::request::{ParseError, Request};
use crate::net::{dial, Stream, CONNECT_TIMEOUT};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect or I/O.
    #[error("{addr}: {source}")]
    Io {
        /// Server address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server's name is not a valid TLS name.
    #[error("{0:?} is not a valid server name for TLS")]
    ServerName(String),
    /// The server sent a frame that did not decode.
    #[error("{addr}: bad frame from the server: {source}")]
    Frame {
        /// Server address.
        addr: String,
        /// Cause.
        source: frame::Error,
    },
    /// The server closed the connection.
    #[error("{0}: the server closed the connection")]
    Closed(String),
    /// The server's reply is not what the protocol says.
    #[error("{addr}: bad reply from the server: {source}")]
    Reply {
        /// Server address.
        addr: String,
        /// Cause.
        source: ParseError,
    },
}

/// An open connection.
pub struct Client {
    stream: Box<dyn Stream>,
    addr: String,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (`host:port`); with `tls`, verifies the server as `server_name`.
    pub async fn connect(
        addr: &str,
        tls: Option<(Arc<rustls::ClientConfig>, &str)>,
    ) -> Result<Client, Error> {
        let stream = dial(addr, tls, CONNECT_TIMEOUT)
            .await
            .map_err(|e| e.into_error(|source| io_error(addr, source), Error::ServerName))?;
        Ok(Client {
            stream,
            addr: addr.to_owned(),
            buf: Vec::new(),
        })
    }

    /// Sends one frame.
    pub async fn send(&mut self, f: &Frame) -> Result<(), Error> {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.send_raw(&out).await
    }

    /// Sends raw bytes (protocol tests send malformed frames with it).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let addr = self.addr.clone();
        let io = |source| Error::Io { addr, source };
        self.stream.write_all(bytes).await.map_err(io)?;
        self.stream.flush().await.map_err(|source| Error::Io {
            addr: self.addr.clone(),
            source,
        })
    }

    /// The next frame from the server.
    pub async fn recv(&mut self) -> Result<Frame, Error> {
        loop {
            match frame::parse(&self.buf, DEFAULT_MAX_BODY) {
                Ok((f, len)) => {
                    self.buf.drain(..len);
                    return Ok(f);
                }
                Err(frame::Error::Incomplete) => {}
                Err(source) => {
                    return Err(Error::Frame {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|source| Error::Io {
                    addr: self.addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame that is not a server heartbeat (those are answered here).
    pub async fn next_event(&mut self) -> Result<Frame, Error> {
        loop {
            let r = self.recv().await?;
            if r.msg == "Heartbeat" {
                let seq = r.u64("seq").unwrap_or(0);
                self.send(&Frame::new("HeartbeatReply").with("seq", seq))
                    .await?;
                continue;
            }
            return Ok(r);
        }
    }

    /// Sends `f` and returns the first reply named `reply`, answering server heartbeats and
    /// passing other frames (events) to `events`.
    pub async fn request(
        &mut self,
        f: &Frame,
        reply: &str,
        events: impl FnMut(Frame),
    ) -> Result<Frame, Error> {
        self.send(f).await?;
        self.answer(|msg| msg == reply, events).await
    }

    /// The first frame `is_answer` accepts; the frames before it go to `events`.
    async fn answer(
        &mut self,
        is_answer: impl Fn(&str) -> bool,
        mut events: impl FnMut(Frame),
    ) -> Result<Frame, Error> {
        loop {
            let r = self.next_event().await?;
            if is_answer(&r.msg) {
                return Ok(r);
            }
            events(r);
        }
    }

    /// Sends `request` and returns its typed reply (a refusal is `Ok(Reply::Refused)`), passing
    /// the frames that come meanwhile (events) to `events`.
    pub async fn call(
        &mut self,
        request: &Request,
        events: impl FnMut(Frame),
    ) -> Result<Reply, Error> {
        self.send(&request.to_frame()).await?;
        let f = self
            .answer(|msg| request.is_answered_by(msg), events)
            .await?;
        Reply::parse(&f).map_err(|source| Error::Reply {
            addr: self.addr.clone(),
            source,
        })
    }
}

/// An I/O error on the link to `addr`.
fn io_error(addr: &str, source: std::io::Error) -> Error {
    Error::Io {
        addr: addr.to_owned(),
        source,
    }
}
