//! The supervisor's page: HTTP/1.1 (hyper) on the endpoint's loopback local-control port,
//! beside the local control protocol (`endpoint::local` tells them apart by the first byte).
//! `GET /` the page (every asset embedded in the binary), `GET /events` the desk's snapshots as
//! server-sent events, `GET /api/state` one snapshot, `GET /api/recordings` and
//! `GET /recordings/NAME` the record directory's WAVs; `POST /api/monitor`, `/api/stop`,
//! `/api/output` and `/api/record` are the local control's requests, answered by the same
//! shell (`endpoint::shell`), so the page can do nothing `ctl --endpoint` could not, and the
//! appliance keeps every right.
//!
//! Rules (`page::guard`): every request names this listener in Host and presents the
//! per-start token (the printed URL's `token=`, which sets an HttpOnly SameSite=Strict cookie
//! and redirects to a clean URL); every POST carries this listener's Origin. Refusals are 403
//! with a reason. At most [`MAX_CONNECTIONS`] connections (more are closed at once), headers
//! within [`HEADER_TIMEOUT`], bodies of at most [`MAX_BODY`] bytes.

pub mod guard;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::local::{Asked, LocalReply, LocalRequest};
use crate::control::frame::Frame;

/// Most page connections at once (a browser opens a handful).
pub const MAX_CONNECTIONS: usize = 32;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body.
pub const MAX_BODY: usize = 4096;
/// An event stream with nothing new says so this often (a closed page is noticed).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

const INDEX: &str = include_str!("page/assets/index.html");
const APP_JS: &str = include_str!("page/assets/app.js");
const STYLE: &str = include_str!("page/assets/style.css");

/// What every page connection shares.
pub struct Page {
    /// The per-start secret.
    pub token: String,
    /// The listener's port (Host and Origin must name it).
    pub port: u16,
    /// The desk's latest snapshot (JSON), published by the shell.
    pub state: watch::Receiver<Arc<str>>,
    /// The shell's request queue (the local control's).
    pub asked: mpsc::Sender<Asked>,
    /// The record directory, if any.
    pub record_dir: Option<PathBuf>,
    /// Connection slots.
    pub slots: Arc<Semaphore>,
}

impl Page {
    /// The URL to open: the listener with the token.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }
}

/// A fresh token: 128 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves one HTTP connection (closed at once when every slot is taken).
pub async fn serve(sock: tokio::net::TcpStream, page: Arc<Page>) {
    let Ok(permit) = page.slots.clone().try_acquire_owned() else {
        return;
    };
    let svc = hyper::service::service_fn(move |req| {
        let page = page.clone();
        async move { Ok::<_, Infallible>(route(req, &page).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "page connection ended");
    }
    drop(permit);
}

fn header(req: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route(req: Request<Incoming>, page: &Page) -> Response<Body> {
    if !guard::host_ok(header(&req, header::HOST), page.port) {
        return refuse("this page answers to 127.0.0.1 and localhost only");
    }
    let token = guard::presented(req.uri().query(), header(&req, header::COOKIE));
    if !guard::token_ok(token, &page.token) {
        return refuse("open the URL silentmon supervisor printed (with its token)");
    }
    let path = req.uri().path().to_owned();
    if req.method() == Method::POST {
        if !guard::origin_ok(header(&req, header::ORIGIN), page.port) {
            return refuse("a request from another page");
        }
        return post(req, &path, page).await;
    }
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST");
    }
    let from_query = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    match path.as_str() {
        "/" if from_query => enter(page),
        "/" => asset(INDEX, "text/html; charset=utf-8"),
        "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/style.css" => asset(STYLE, "text/css; charset=utf-8"),
        "/events" => events(page),
        "/api/state" => json_text(StatusCode::OK, page.state.borrow().to_string()),
        "/api/recordings" => recordings(page).await,
        p if p.starts_with("/recordings/") => recording(page, &p["/recordings/".len()..]).await,
        _ => plain(StatusCode::NOT_FOUND, "no such page"),
    }
}

/// The printed URL: the token becomes a cookie and the address bar loses it.
fn enter(page: &Page) -> Response<Body> {
    let mut r = plain(StatusCode::SEE_OTHER, "");
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        guard::COOKIE,
        page.token
    );
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

/// A POST: the body is the local request's named values.
async fn post(req: Request<Incoming>, path: &str, page: &Page) -> Response<Body> {
    let msg = match path {
        "/api/monitor" => "Monitor",
        "/api/stop" => "Stop",
        "/api/output" => "Output",
        "/api/record" => "Record",
        _ => return plain(StatusCode::NOT_FOUND, "no such action"),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ if body.is_empty() => serde_json::Map::new(),
        _ => return plain(StatusCode::BAD_REQUEST, "the body is not a JSON object"),
    };
    let mut frame = Frame::new(msg);
    frame.fields.extend(fields);
    let answer = match LocalRequest::parse(&frame) {
        Err(refusal) => refusal,
        Ok(request) => ask(page, request).await.to_frame(),
    };
    let status = if answer.str("result") == Some("refused") {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    json_text(status, Value::Object(answer.fields).to_string())
}

/// One request through the shell's queue.
async fn ask(page: &Page, request: LocalRequest) -> LocalReply {
    let name = request.reply_name().to_owned();
    let gone = || LocalReply::Refused {
        msg: name.clone(),
        reason: "the endpoint is shutting down".into(),
    };
    let (tx, rx) = oneshot::channel();
    let asked = Asked {
        request,
        answer: tx,
    };
    if page.asked.send(asked).await.is_err() {
        return gone();
    }
    rx.await.unwrap_or_else(|_| gone())
}

/// The desk's snapshots as server-sent events: the current one, then each change.
fn events(page: &Page) -> Response<Body> {
    let rx = page.state.clone();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            match tokio::time::timeout(KEEPALIVE, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => {
                    let beat = BodyFrame::data(Bytes::from_static(b": keepalive\n\n"));
                    return Some((Ok(beat), (rx, false)));
                }
            }
        }
        let snapshot = rx.borrow_and_update().clone();
        let data = BodyFrame::data(Bytes::from(format!("data: {snapshot}\n\n")));
        Some((Ok::<_, Infallible>(data), (rx, false)))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    secure(&mut r, "text/event-stream");
    r
}

/// One WAV of the record directory.
#[derive(Serialize)]
struct RecordingItem {
    name: String,
    bytes: u64,
    /// Seconds since the epoch.
    modified: f64,
}

/// The record directory's WAVs, newest first.
async fn recordings(page: &Page) -> Response<Body> {
    let Some(dir) = page.record_dir.clone() else {
        return json_text(StatusCode::OK, "[]".into());
    };
    let list = tokio::task::spawn_blocking(move || list_wavs(&dir))
        .await
        .unwrap_or_default();
    json_text(
        StatusCode::OK,
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()),
    )
}

fn list_wavs(dir: &Path) -> Vec<RecordingItem> {
    let mut v: Vec<RecordingItem> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let meta = e.metadata().ok()?;
                    let modified = meta
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()?
                        .as_secs_f64();
                    (safe_name(&name) && meta.is_file()).then_some(RecordingItem {
                        name,
                        bytes: meta.len(),
                        modified,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.modified.total_cmp(&a.modified));
    v
}

/// A recording's file name as the recorder makes them: no path, a WAV.
fn safe_name(name: &str) -> bool {
    name.ends_with(".wav")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
}

/// One recording, streamed from the file.
async fn recording(page: &Page, name: &str) -> Response<Body> {
    let (Some(dir), true) = (&page.record_dir, safe_name(name)) else {
        return plain(StatusCode::NOT_FOUND, "no such recording");
    };
    let path = dir.join(name);
    let Ok(file) = std::fs::File::open(&path) else {
        return plain(StatusCode::NOT_FOUND, "no such recording");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || send_file(file, &tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(BodyFrame::data(chunk)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    secure(&mut r, "audio/wav");
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    r
}

/// Reads `file` in 64 KiB chunks into `tx` until the end or the reader goes.
fn send_file(mut file: std::fs::File, tx: &mpsc::Sender<Bytes>) {
    use std::io::Read;
    loop {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Bytes::from(buf)).is_err() {
                    return;
                }
            }
        }
    }
}

fn asset(text: &'static str, kind: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    secure(&mut r, kind);
    r
}

fn json_text(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
    *r.status_mut() = status;
    secure(&mut r, "application/json");
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    secure(&mut r, "text/plain; charset=utf-8");
    r
}

/// 403 with the reason, logged (someone or something tried the page without the right).
fn refuse(reason: &'static str) -> Response<Body> {
    tracing::warn!("page request refused: {reason}");
    plain(StatusCode::FORBIDDEN, reason)
}

/// The headers every answer carries: its type, no caching, no sniffing, no framing, no
/// referrer (the token never leaves in one), scripts and data from this origin only.
fn secure(r: &mut Response<Body>, kind: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             media-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recorders_file_names_are_served() {
        assert!(safe_name("5001_cti-1000_5001_20261206T145339Z.wav"));
        assert!(safe_name("5001_c1@capgen_20261202T080546Z-2.wav"));
        for bad in [
            "../etc/passwd.wav",
            "a/b.wav",
            ".hidden.wav",
            "x.wav.exe",
            "5001 x.wav",
            "",
            "%2e%2e.wav",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
