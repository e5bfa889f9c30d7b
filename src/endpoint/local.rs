//! The supervisor endpoint's local control port (loopback only, default 127.0.0.1:42228): the
//! requests desktop tools send (`Monitor {agent}`, `Stop`, `Status`) and the endpoint's answers
//! ([`LocalReply`]: `ctl --endpoint` and the page read them) as types, and the accept loop that
//! passes each request to the endpoint and writes its answer back. Same framing as the
//! control plane (4-byte length + JSON object with `msg`); no TLS and no login: the port is on
//! loopback and the endpoint is logged in already.
//!
//! Rules: a connection from a non-loopback address is closed at once; a malformed frame gets
//! a `ProtocolError` and ends that connection; requests of one connection are answered in
//! order; the queue to the endpoint is bounded ([`LOCAL_QUEUE`]: a connection waits when it
//! is full, which only slows that tool).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::control::frame::{self, Frame, DEFAULT_MAX_BODY};

/// Local requests queued towards the endpoint.
pub const LOCAL_QUEUE: usize = 64;

/// A request from a desktop tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalRequest {
    /// Monitor this agent (a monitor of another agent stops once this one is granted).
    Monitor {
        /// The agent's id.
        agent: String,
    },
    /// Stop monitoring.
    Stop,
    /// What the endpoint monitors and hears.
    Status,
    /// Playback settings: the output device (None: the system's default), stereo or mono
    /// mix, volume in percent (0 to 200).
    Output {
        /// The device's name.
        device: Option<String>,
        /// Stereo (agent left, caller right) or mixed to mono.
        stereo: bool,
        /// Percent.
        volume_pct: u16,
    },
    /// Recording on or off (on needs the endpoint's record directory).
    Record {
        /// On.
        on: bool,
    },
    /// The supervisor's page's URL with its token (a browser cannot ask this: it speaks
    /// HTTP, which the port hands to the page).
    Page,
}

impl LocalRequest {
    /// The request in `f`, or the refusal to send back.
    pub fn parse(f: &Frame) -> Result<LocalRequest, Frame> {
        match f.msg.as_str() {
            "Monitor" => match f.str("agent") {
                Some(a) if !a.is_empty() => Ok(LocalRequest::Monitor {
                    agent: a.to_owned(),
                }),
                _ => Err(refused("MonitorReply", "give an agent")),
            },
            "Stop" => Ok(LocalRequest::Stop),
            "Status" => Ok(LocalRequest::Status),
            "Page" => Ok(LocalRequest::Page),
            "Output" => {
                let volume = f.fields.get("volume_pct").and_then(Value::as_u64);
                match (f.fields.get("stereo").and_then(Value::as_bool), volume) {
                    (Some(stereo), Some(v)) if v <= 200 => Ok(LocalRequest::Output {
                        device: f.str("device").filter(|d| !d.is_empty()).map(str::to_owned),
                        stereo,
                        volume_pct: v as u16,
                    }),
                    _ => Err(refused(
                        "OutputReply",
                        "give stereo (true or false) and volume_pct (0 to 200)",
                    )),
                }
            }
            "Record" => match f.fields.get("on").and_then(Value::as_bool) {
                Some(on) => Ok(LocalRequest::Record { on }),
                None => Err(refused("RecordReply", "give on (true or false)")),
            },
            other => Err(refused(
                &format!("{}Reply", crate::control::request::echoable(other)),
                "unknown request (Monitor, Stop, Status, Output, Record, Page)",
            )),
        }
    }

    /// The frame a tool sends.
    pub fn to_frame(&self) -> Frame {
        match self {
            LocalRequest::Monitor { agent } => Frame::new("Monitor").with("agent", agent.clone()),
            LocalRequest::Stop => Frame::new("Stop"),
            LocalRequest::Status => Frame::new("Status"),
            LocalRequest::Output {
                device,
                stereo,
                volume_pct,
            } => Frame::new("Output")
                .with("device", device.clone().unwrap_or_default())
                .with("stereo", *stereo)
                .with("volume_pct", u64::from(*volume_pct)),
            LocalRequest::Record { on } => Frame::new("Record").with("on", *on),
            LocalRequest::Page => Frame::new("Page"),
        }
    }

    /// The name of its reply.
    pub fn reply_name(&self) -> &'static str {
        match self {
            LocalRequest::Monitor { .. } => "MonitorReply",
            LocalRequest::Stop => "StopReply",
            LocalRequest::Status => "StatusReply",
            LocalRequest::Output { .. } => "OutputReply",
            LocalRequest::Record { .. } => "RecordReply",
            LocalRequest::Page => "PageReply",
        }
    }
}

/// A monitor the endpoint started (or already had).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitoring {
    /// The agent's id.
    pub agent: String,
    /// The monitor id (None when it was running already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<u64>,
    /// The appliance's control plane that granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The monitor service the audio comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_service: Option<String>,
    /// True when this agent was monitored already (nothing changed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already: bool,
}

/// What the endpoint monitors and hears.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor logged in.
    pub user: String,
    /// The appliance's control plane in use.
    pub server: Option<String>,
    /// The monitor service in use.
    pub monitor_service: Option<String>,
    /// The agent monitored (or wanted, while the endpoint retries).
    pub agent: Option<String>,
    /// The running monitor's id.
    pub monitor: Option<u64>,
    /// True while a monitor is attached.
    pub monitoring: bool,
    /// The SIP call heard, when the appliance said.
    pub call_id: Option<String>,
    /// The appliance whose SPAN carries the call (in a cluster).
    #[serde(default)]
    pub appliance: Option<String>,
    /// Why the audio stopped coming (an appliance of the cluster is unreachable), until the
    /// next call.
    #[serde(default)]
    pub interrupted: Option<String>,
    /// RTP packets received.
    pub packets: u64,
    /// Audio packets decoded.
    pub decoded: u64,
    /// Packets that came after their playout time.
    pub late: u64,
    /// Packets lost.
    pub lost: u64,
    /// Packets that came before the media pipeline was ready (dropped).
    pub dropped_before_media: u64,
    /// The sound device, `<rate> Hz x <channels>`.
    pub device: Option<String>,
    /// Device frames played.
    pub frames_played: Option<u64>,
    /// Device underruns.
    pub underruns: Option<u64>,
    /// Sound queued for the device now, ms (the cushion and what the device has not taken
    /// yet): part of the listen latency.
    #[serde(default)]
    pub queued_ms: Option<u32>,
    /// The least sound the device queue held over the last whole second, ms.
    #[serde(default)]
    pub queue_low_ms: Option<u32>,
    /// Sound left out of (trimmed) and silence added to (padded) the device queue to hold it
    /// at its target, ms so far.
    #[serde(default)]
    pub queue_fixed_ms: [u64; 2],
    /// The output device's own delay as it last reported it, ms (its buffer and, through
    /// PulseAudio, the server's): the rest of the way to the ear after the queue.
    #[serde(default)]
    pub device_delay_ms: Option<u32>,
    /// What is heard now per direction (agent, caller): RMS on the i16 scale, held and
    /// falling like a meter's needle.
    #[serde(default)]
    pub levels: [u16; 2],
    /// The jitter buffers' delay now per direction (agent, caller), ms.
    #[serde(default)]
    pub delay_ms: [u32; 2],
    /// Milliseconds of audible concealment (loss and underruns) so far, at 8 kHz.
    #[serde(default)]
    pub concealed_ms: u64,
    /// In-band DTMF digits muted so far (`[privacy] mute_dtmf`; never which digits).
    #[serde(default)]
    pub dtmf_muted: u64,
    /// The output device asked for (None: the system's default).
    #[serde(default)]
    pub device_name: Option<String>,
    /// Playback in stereo (agent left, caller right) rather than mixed to mono.
    #[serde(default)]
    pub stereo: bool,
    /// Playback volume, percent.
    #[serde(default)]
    pub volume_pct: u16,
    /// Whether calls are recorded.
    #[serde(default)]
    pub recording: bool,
    /// The link to the appliances.
    #[serde(default)]
    pub link: Link,
    /// Why the last monitor request failed (`agent is not in your teams`, ...), until the
    /// next one succeeds.
    #[serde(default)]
    pub error: Option<String>,
    /// One line for people.
    pub summary: String,
}

/// Where the endpoint stands with the appliances' control planes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not connected, nothing to do yet.
    #[default]
    Idle,
    /// Trying an appliance (`Link::trying`).
    Connecting,
    /// Logged in (`Link::server`).
    Connected,
    /// No appliance of the list answered.
    Unreachable,
    /// The appliance refused the login (wrong password, unknown supervisor).
    LoginRefused,
}

/// The link to the appliances, for the page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The state.
    pub state: LinkState,
    /// The appliance logged in to.
    pub server: Option<String>,
    /// The appliance being tried (failover in progress).
    pub trying: Option<String>,
    /// The last failure, for people.
    pub error: Option<String>,
}

impl Status {
    /// The status for people: who is heard, then the media line.
    pub fn describe(&self) -> String {
        format!(
            "agent {}: {}{}{}\n{}",
            self.agent.as_deref().unwrap_or("-"),
            if self.monitoring {
                "monitoring"
            } else {
                "not monitoring"
            },
            match (&self.call_id, &self.appliance) {
                (Some(c), Some(a)) => format!(", call {c} on {a}"),
                (Some(c), None) => format!(", call {c}"),
                _ => String::new(),
            },
            self.interrupted
                .as_deref()
                .map(|r| format!(" (interrupted: {r})"))
                .unwrap_or_default(),
            self.summary
        )
    }
}

/// The endpoint's answer to a local request.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalReply {
    /// `MonitorReply`: monitoring.
    Monitoring(Monitoring),
    /// `StopReply`: stopped.
    Stopped,
    /// `OutputReply` / `RecordReply`: done.
    Done(String),
    /// `PageReply`: the page's URL.
    Page(String),
    /// `StatusReply`.
    Status(Box<Status>),
    /// `<request>Reply` refused.
    Refused {
        /// The reply's name.
        msg: String,
        /// Why.
        reason: String,
    },
}

impl LocalReply {
    /// The frame the endpoint sends.
    pub fn to_frame(&self) -> Frame {
        match self {
            LocalReply::Monitoring(m) => reply("MonitorReply", ok_fields(m)),
            LocalReply::Stopped => Frame::new("StopReply").with("result", "ok"),
            LocalReply::Done(msg) => Frame::new(msg).with("result", "ok"),
            LocalReply::Page(url) => Frame::new("PageReply")
                .with("result", "ok")
                .with("url", url.clone()),
            LocalReply::Status(s) => reply("StatusReply", ok_fields(s)),
            LocalReply::Refused { msg, reason } => refused(msg, reason),
        }
    }

    /// The reply in `f` (a tool reads the answer to its request).
    pub fn parse(f: &Frame) -> Result<LocalReply, String> {
        if f.str("result") == Some("refused") {
            let reason = f.str("reason").unwrap_or("refused without a reason");
            return Ok(LocalReply::Refused {
                msg: f.msg.clone(),
                reason: reason.to_owned(),
            });
        }
        let body = || Value::Object(f.fields.clone());
        let bad = |e: serde_json::Error| format!("{}: {e}", f.msg);
        match f.msg.as_str() {
            "MonitorReply" => Ok(LocalReply::Monitoring(
                serde_json::from_value(body()).map_err(bad)?,
            )),
            "StopReply" => Ok(LocalReply::Stopped),
            "OutputReply" | "RecordReply" => Ok(LocalReply::Done(f.msg.clone())),
            "PageReply" => Ok(LocalReply::Page(
                f.str("url").ok_or("PageReply without url")?.to_owned(),
            )),
            "StatusReply" => Ok(LocalReply::Status(Box::new(
                serde_json::from_value(body()).map_err(bad)?,
            ))),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
}

/// Sends one request to the endpoint's local control at `addr` and reads its answer (the
/// client side of `ctl --endpoint` and the demo).
pub async fn ask(addr: &str, request: &LocalRequest) -> Result<LocalReply, String> {
    let mut c = crate::control::client::Client::connect(addr, None)
        .await
        .map_err(|e| format!("no supervisor endpoint on {addr} ({e})"))?;
    let f = c
        .request(&request.to_frame(), request.reply_name(), |_| {})
        .await
        .map_err(|e| e.to_string())?;
    LocalReply::parse(&f).map_err(|e| format!("{addr}: {e}"))
}

/// `v`'s fields and `result: ok`.
fn ok_fields<T: Serialize>(v: &T) -> Value {
    // Our own structs always serialise to an object.
    let mut v = serde_json::to_value(v).expect("local replies serialise");
    if let Value::Object(m) = &mut v {
        m.insert("result".into(), "ok".into());
    }
    v
}

/// A refusal: `msg` with `result: refused` and `reason`.
pub fn refused(msg: &str, reason: &str) -> Frame {
    Frame::new(msg)
        .with("result", "refused")
        .with("reason", reason)
}

/// `msg` with the fields of the JSON object `v` (its `result` among them).
pub fn reply(msg: &str, v: Value) -> Frame {
    let mut f = Frame::new(msg);
    if let Value::Object(m) = v {
        for (k, v) in m {
            f.fields.insert(k, v);
        }
    }
    f
}

/// A request with where its answer goes.
pub struct Asked {
    /// The request.
    pub request: LocalRequest,
    /// The answer's way back.
    pub answer: oneshot::Sender<LocalReply>,
}

/// Accepts local control connections (loopback only) and passes their requests to `to`; a
/// connection that begins like HTTP (an upper-case method) is the supervisor's page
/// (`endpoint::page`), when there is one: a local control frame begins with its length's
/// high byte, 0 under the 16 MiB limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    to: mpsc::Sender<Asked>,
    page: Option<std::sync::Arc<super::page::Page>>,
) {
    loop {
        let Ok((sock, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let (to, page) = (to.clone(), page.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(super::page::HEADER_TIMEOUT, sock.peek(&mut first));
            let http = matches!(peeked.await, Ok(Ok(1)) if first[0].is_ascii_uppercase());
            match page {
                Some(page) if http => super::page::serve(sock, page).await,
                _ => connection(sock, to).await,
            }
        });
    }
}

/// One tool's connection: requests in, answers out, in order.
async fn connection(mut sock: tokio::net::TcpStream, to: mpsc::Sender<Asked>) {
    let mut buf = Vec::new();
    loop {
        let f = match next_frame(&mut sock, &mut buf).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                let mut out = Vec::new();
                refused("ProtocolError", &e.to_string()).encode(&mut out);
                let _ = sock.write_all(&out).await;
                return;
            }
        };
        let answer = match LocalRequest::parse(&f) {
            Err(refusal) => refusal,
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                let asked = Asked {
                    request,
                    answer: tx,
                };
                if to.send(asked).await.is_err() {
                    return;
                }
                let Ok(answer) = rx.await else { return };
                answer.to_frame()
            }
        };
        let mut out = Vec::new();
        answer.encode(&mut out);
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The next whole frame of the connection (None: it closed).
async fn next_frame(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, frame::Error> {
    loop {
        match frame::parse(buf, DEFAULT_MAX_BODY) {
            Ok((f, len)) => {
                buf.drain(..len);
                return Ok(Some(f));
            }
            Err(frame::Error::Incomplete) => {}
            Err(e) => return Err(e),
        }
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused_with_a_reason() {
        for r in [
            LocalRequest::Monitor {
                agent: "5001".into(),
            },
            LocalRequest::Stop,
            LocalRequest::Status,
            LocalRequest::Page,
            LocalRequest::Record { on: true },
            LocalRequest::Output {
                device: Some("alsa:pulse".into()),
                stereo: true,
                volume_pct: 150,
            },
            LocalRequest::Output {
                device: None,
                stereo: false,
                volume_pct: 0,
            },
        ] {
            assert_eq!(LocalRequest::parse(&r.to_frame()), Ok(r));
        }
        let loud = Frame::new("Output")
            .with("stereo", true)
            .with("volume_pct", 201u64);
        assert_eq!(
            LocalRequest::parse(&loud).unwrap_err().msg,
            "OutputReply",
            "over 200 %"
        );
        assert!(LocalRequest::parse(&Frame::new("Record")).is_err());
        let no_agent = LocalRequest::parse(&Frame::new("Monitor")).unwrap_err();
        assert_eq!(
            (no_agent.msg.as_str(), no_agent.str("reason")),
            ("MonitorReply", Some("give an agent"))
        );
        let odd = LocalRequest::parse(&Frame::new("Reboot")).unwrap_err();
        assert_eq!(odd.str("result"), Some("refused"));
    }

    #[test]
    fn replies_round_trip_through_their_frames() {
        let status = Status {
            user: "s1".into(),
            agent: Some("5001".into()),
            monitor: Some(7),
            monitoring: true,
            call_id: Some("c1@x".into()),
            packets: 100,
            device: Some("48000 Hz x 2".into()),
            frames_played: Some(4800),
            summary: "100 packets received".into(),
            ..Status::default()
        };
        let replies = [
            LocalReply::Monitoring(Monitoring {
                agent: "5001".into(),
                monitor: Some(7),
                server: Some("a1:42028".into()),
                monitor_service: Some("a1:42027".into()),
                already: false,
            }),
            LocalReply::Monitoring(Monitoring {
                agent: "5001".into(),
                already: true,
                ..Monitoring::default()
            }),
            LocalReply::Stopped,
            LocalReply::Status(Box::new(status.clone())),
            LocalReply::Refused {
                msg: "MonitorReply".into(),
                reason: "agent 9 is not in your teams".into(),
            },
        ];
        for r in replies {
            let f = r.to_frame();
            assert_eq!(LocalReply::parse(&f), Ok(r.clone()), "{f:?}");
        }
        assert_eq!(
            status.describe(),
            "agent 5001: monitoring, call c1@x\n100 packets received"
        );
        let bad = Frame::new("StatusReply")
            .with("result", "ok")
            .with("packets", "many");
        assert!(LocalReply::parse(&bad).unwrap_err().contains("StatusReply"));
    }
}
