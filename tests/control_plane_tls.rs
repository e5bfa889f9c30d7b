//! The control plane over real TCP and TLS 1.3 on loopback: logins, team rights, actions,
//! malformed and oversized frames (clear error, connection closed, server unaffected), and a
//! client that trusts another CA refused.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use silentmon::binding::Agent;
use silentmon::config::{AgentSettings, Supervisor};
use silentmon::control::client::Client;
use silentmon::control::frame::Frame;
use silentmon::control::plane::{Action, ControlPlane, Directory, SessionLimits};
use silentmon::control::server::{self, ControlServer, ControlStats};
use silentmon::net::listen::Limits;
use silentmon::router::View;
use silentmon::security::lockout::LockoutConfig;
use silentmon::security::pki::{create_ca, create_request, sign_request, Role};
use silentmon::security::tls::{client_config, server_config};
use silentmon::time::Span;

fn agent(id: &str, team: &str) -> AgentSettings {
    AgentSettings {
        agent: Agent {
            id: id.into(),
            extension: id.into(),
            mobile_number: None,
            phone_ips: vec![],
        },
        team: Some(team.into()),
        password_hash: None,
        warn_if_silent_monitored: true,
    }
}

/// A control plane over TLS on 127.0.0.1 with `dir`.
struct Server {
    addr: String,
    good: Arc<rustls::ClientConfig>,
    ca: String,
    stats: Arc<ControlStats>,
    actions: Arc<Mutex<Vec<Action>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn directory(limits: SessionLimits) -> Directory {
    let supervisor = |id: &str, team: &str, pw: &str| Supervisor {
        id: id.into(),
        teams: vec![team.into()],
        password_hash: Some(silentmon::security::password::hash(pw).unwrap()),
        certificate: id.into(),
    };
    Directory {
        agents: vec![agent("5001", "blue"), agent("5002", "red")],
        supervisors: vec![
            supervisor("s1", "blue", "secret"),
            supervisor("s2", "red", "other"),
        ],
        monitor_password_hash: None,
        passwordless: true,
        lockout: LockoutConfig::default(),
        client_timeout: Span::from_secs(30),
        server_heartbeat: Span::from_secs(60),
        monitor_service: Some("localhost:42228".into()),
        limits,
    }
}

async fn serve(dir: Directory) -> Server {
    let ca = create_ca("test CA", 30).unwrap();
    let req = create_request("localhost").unwrap();
    let cert = sign_request(&req.cert, &ca, Role::Server, 30).unwrap();
    let tls = server_config(&ca.cert, &cert, &req.key, false).unwrap();
    let actions = Arc::new(Mutex::new(Vec::new()));
    let seen = actions.clone();
    let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(View::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stats = Arc::new(ControlStats::default());
    let (_handle, ended) = server::handle(&stats);
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(
        listener,
        ControlServer {
            plane: ControlPlane::new(dir),
            tls: Some(tls),
            view: view_rx,
            cluster: None,
            actions: Box::new(move |a: &Action, _| seen.lock().unwrap().push(a.clone())),
            stats: stats.clone(),
            tos: 0x68,
            limits: Limits::default(),
        },
        ended,
        async move {
            let _ = stop_rx.await;
            drop(view_tx);
        },
    ));
    Server {
        addr,
        good: client_config(&ca.cert, None).unwrap(),
        ca: ca.cert,
        stats,
        actions,
        stop,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_over_tls() {
    let Server {
        addr,
        good,
        ca,
        actions,
        stop: stop_tx,
        task: srv,
        ..
    } = serve(directory(SessionLimits::default())).await;

    // An agent and a supervisor log in over TLS.
    let mut ag = Client::connect(&addr, Some((good.clone(), "localhost")))
        .await
        .unwrap();
    let r = ag
        .request(
            &Frame::new("Login").with("mode", "agent").with("id", "5001"),
            "LoginReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r.str("result"), Some("ok"));
    let mut sup = Client::connect(&addr, Some((good.clone(), "localhost")))
        .await
        .unwrap();
    let bad = sup
        .request(
            &Frame::new("Login")
                .with("mode", "supervisor")
                .with("id", "s1")
                .with("password", "wrong"),
            "LoginReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(bad.str("result"), Some("refused"));
    let ok = sup
        .request(
            &Frame::new("Login")
                .with("mode", "supervisor")
                .with("id", "s1")
                .with("password", "secret"),
            "LoginReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(ok.str("result"), Some("ok"));
    let list = sup
        .request(&Frame::new("ListAgents"), "AgentList", |_| {})
        .await
        .unwrap();
    let agents = list.fields["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["agent"], "5001");
    let other = sup
        .request(
            &Frame::new("StartSilentMonitor").with("agent", "5002"),
            "StartSilentMonitorReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(other.str("reason"), Some("agent is not in your teams"));
    let mine = sup
        .request(
            &Frame::new("StartSilentMonitor").with("agent", "5001"),
            "StartSilentMonitorReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(mine.str("result"), Some("ok"));
    assert_eq!(mine.str("key").map(str::len), Some(32));
    // The agent is warned (WarnIfSilentMonitored).
    let ev = ag.recv().await.unwrap();
    assert_eq!(ev.msg, "SilentMonitorStartedEvent");
    assert!(actions
        .lock()
        .unwrap()
        .iter()
        .any(|a| matches!(a, Action::MonitorStarted { agent_id, .. } if agent_id == "5001")));

    // Malformed and oversized frames: a ProtocolError, the connection closes, the server lives.
    for raw in [
        {
            let mut v = 9u32.to_be_bytes().to_vec();
            v.extend_from_slice(b"{not json");
            v
        },
        vec![0xFF, 0xFF, 0xFF, 0xFF],
    ] {
        let mut c = Client::connect(&addr, Some((good.clone(), "localhost")))
            .await
            .unwrap();
        c.send_raw(&raw).await.unwrap();
        let e = c.recv().await.unwrap();
        assert_eq!(e.msg, "ProtocolError");
        assert!(c.recv().await.is_err(), "connection must close");
    }
    // Supervisor disconnects: its monitor stops and is reported.
    drop(sup);
    let ev = ag.recv().await.unwrap();
    assert_eq!(ev.msg, "SilentMonitorStoppedEvent");

    // A client trusting another CA refuses the server.
    let other_ca = create_ca("other", 30).unwrap();
    let stranger = client_config(&other_ca.cert, None).unwrap();
    let _ = ca;
    assert!(Client::connect(&addr, Some((stranger, "localhost")))
        .await
        .is_err());
    // The server still answers.
    let mut again = Client::connect(&addr, Some((good, "localhost")))
        .await
        .unwrap();
    let hb = again
        .request(
            &Frame::new("Heartbeat").with("seq", 3u64),
            "HeartbeatReply",
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(hb.u64("seq"), Some(3));
    let _ = stop_tx.send(());
    srv.await.unwrap();
}

/// A TLS connection to `s` from local address `from` (any 127.0.0.0/8 address on lo).
async fn connect_from(
    s: &Server,
    from: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(s.addr.parse().unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(s.good.clone())
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends frames and reads whole frames on a raw stream.
struct Raw<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    async fn send(&mut self, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out);
        }
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame, or None when the server closed the connection.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Ok((f, n)) = silentmon::control::frame::parse(&self.buf, 1 << 20) {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("the server answers or closes");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Upper bound on any wait, so that a broken server fails the test instead of hanging it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

fn login(id: &str, pw: &str) -> Frame {
    Frame::new("Login")
        .with("mode", "supervisor")
        .with("id", id)
        .with("password", pw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_wrong_passwords_are_refused_without_a_check_each() {
    let s = serve(directory(SessionLimits::default())).await;
    let mut attacker = Raw {
        stream: connect_from(&s, "127.0.0.1").await,
        buf: Vec::new(),
    };
    let guesses: Vec<Frame> = (0..400)
        .map(|i| login("s1", &format!("guess{i}")))
        .collect();
    attacker.send(&guesses).await;
    // Another supervisor logs in and lists its agents meanwhile.
    let mut s2 = Raw {
        stream: connect_from(&s, "127.0.0.2").await,
        buf: Vec::new(),
    };
    s2.send(&[login("s2", "other")]).await;
    assert_eq!(s2.recv().await.unwrap().str("result"), Some("ok"));
    s2.send(&[Frame::new("ListAgents")]).await;
    assert_eq!(s2.recv().await.unwrap().msg, "AgentList");
    // Every guess is answered; only a few were checked at all.
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let f = attacker.recv().await.expect("a reply per login");
        assert_eq!(
            (f.msg.as_str(), f.str("result")),
            ("LoginReply", Some("refused"))
        );
        let r = f.str("reason").unwrap();
        let kind = if r.starts_with("too many failed logins") {
            "throttled"
        } else {
            r
        };
        *reasons.entry(kind.to_owned()).or_default() += 1;
    }
    let checked = reasons
        .get("unknown supervisor or wrong password")
        .copied()
        .unwrap_or(0);
    assert!((1..=8).contains(&checked), "{reasons:?}");
    assert!(
        reasons["a login is already in progress"] > 300,
        "{reasons:?}"
    );
    let failed = s
        .stats
        .logins_failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        failed as usize,
        checked + reasons.get("throttled").copied().unwrap_or(0)
    );
    // Each failure is in the audit trail, with the real reason.
    let audited = s
        .actions
        .lock()
        .unwrap()
        .iter()
        .filter(|a| matches!(a, Action::Audit { .. }))
        .count();
    assert!(
        audited >= checked,
        "{audited} audit entries for {checked} failures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_keep_nobody_out_and_are_closed_in_time() {
    let s = serve(directory(SessionLimits {
        login_timeout: Span::from_millis(1500),
        ..SessionLimits::default()
    }))
    .await;
    // A flood of handshaken connections that never log in, from 127.0.0.1: the first eight
    // are kept (until the deadline), the rest closed at once.
    let mut idle = Vec::new();
    for _ in 0..14 {
        idle.push(Raw {
            stream: connect_from(&s, "127.0.0.1").await,
            buf: Vec::new(),
        });
    }
    let mut at_once = 0;
    for c in idle.iter_mut().skip(8) {
        let f = c.recv().await.expect("a reason before the close");
        assert_eq!(
            f.str("reason"),
            Some("too many connections from your address that have not logged in")
        );
        assert!(c.recv().await.is_none(), "closed");
        at_once += 1;
    }
    assert_eq!(at_once, 6);
    // A supervisor from another address gets in meanwhile.
    let mut s1 = Raw {
        stream: connect_from(&s, "127.0.0.3").await,
        buf: Vec::new(),
    };
    s1.send(&[login("s1", "secret")]).await;
    assert_eq!(s1.recv().await.unwrap().str("result"), Some("ok"));
    s1.send(&[Frame::new("ListAgents")]).await;
    assert_eq!(s1.recv().await.unwrap().msg, "AgentList");
    // The eight idle ones are closed at the login deadline, with the reason.
    for c in idle.iter_mut().take(8) {
        let f = c.recv().await.expect("a reason before the close");
        assert_eq!(f.str("reason"), Some("no login within the login timeout"));
        assert!(c.recv().await.is_none(), "closed");
    }
    // The logged-in supervisor is still served.
    s1.send(&[Frame::new("Heartbeat").with("seq", 9u64)]).await;
    assert_eq!(s1.recv().await.unwrap().u64("seq"), Some(9));
    let counted = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted(&s.stats.unauthenticated_closed), 6);
    assert_eq!(counted(&s.stats.login_timeouts), 8);
}
