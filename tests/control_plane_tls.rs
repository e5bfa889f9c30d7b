//! The control plane over real TCP and TLS 1.3 on loopback: logins, team rights, actions,
//! malformed and oversized frames (clear error, connection closed, server unaffected), and a
//! client that trusts another CA refused.

use std::sync::{Arc, Mutex};

use silentmon::binding::Agent;
use silentmon::config::{AgentSettings, Supervisor};
use silentmon::control::client::Client;
use silentmon::control::frame::Frame;
use silentmon::control::server::{self, ControlServer, ControlStats};
use silentmon::control::session::{Action, ControlPlane, Directory};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_over_tls() {
    let ca = create_ca("test CA", 30).unwrap();
    let req = create_request("localhost").unwrap();
    let cert = sign_request(&req.cert, &ca, Role::Server, 30).unwrap();
    let tls = server_config(&ca.cert, &cert, &req.key, false).unwrap();
    let plane = ControlPlane::new(Directory {
        agents: vec![agent("5001", "blue"), agent("5002", "red")],
        supervisors: vec![Supervisor {
            id: "s1".into(),
            teams: vec!["blue".into()],
            password_hash: Some(silentmon::security::password::hash("secret").unwrap()),
        }],
        monitor_password_hash: None,
        lockout: LockoutConfig::default(),
        client_timeout: Span::from_secs(30),
        server_heartbeat: Span::from_secs(60),
        monitor_service: Some("localhost:42228".into()),
    });
    let actions = Arc::new(Mutex::new(Vec::new()));
    let seen = actions.clone();
    let (_view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(View::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_handle, ended) = server::handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server::run(
        listener,
        ControlServer {
            plane,
            tls: Some(tls),
            view: view_rx,
            actions: Box::new(move |a: &Action, _| seen.lock().unwrap().push(a.clone())),
            stats: Arc::new(ControlStats::default()),
            tos: 0x68,
        },
        ended,
        async {
            let _ = stop_rx.await;
        },
    ));
    let good = client_config(&ca.cert, None).unwrap();

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
