//! The soak's load: monitor workers, the slow endpoint, the ListAgents prober, the attacker,
//! and the reporter's rows (see the bench's doc).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use silentmon::control::frame::Frame;
use silentmon::monitor::service_client::MonitorClient;
use tokio::time::Instant as TokioInstant;

use super::support::BoxError;
use super::{
    attach, listen, quantiles, raw_control, start_monitor, supervisor, App, Options, Site,
};

/// What the clients count between two rows.
#[derive(Default)]
struct Tally {
    list_ms: Vec<f64>,
    monitors_started: u64,
    frames: u64,
    worker_errors: u64,
    last_error: Option<String>,
    attacks: u64,
    attacks_not_refused: u64,
}

type Shared = Rc<RefCell<Tally>>;

/// A tiny xorshift for the workers' choices (deterministic per worker).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs the soak for `o.minutes`; returns the report (markdown).
pub async fn soak(o: &Options, site: Rc<Site>, app: App) -> Result<String, BoxError> {
    let app = Rc::new(app);
    let tally: Shared = Rc::default();
    let end = TokioInstant::now() + Duration::from_secs(o.minutes * 60);
    let mut tasks = Vec::new();
    for w in 0..o.monitors {
        let (app, site, tally) = (app.clone(), site.clone(), tally.clone());
        tasks.push(tokio::task::spawn_local(async move {
            worker(w, &app, &site, &tally, end).await
        }));
    }
    {
        let (app, site) = (app.clone(), site.clone());
        tasks.push(tokio::task::spawn_local(async move {
            slow_endpoint(&app, &site, end).await
        }));
    }
    {
        let (app, site, tally) = (app.clone(), site.clone(), tally.clone());
        tasks.push(tokio::task::spawn_local(async move {
            prober(&app, &site, &tally, end).await
        }));
    }
    {
        let (app, site, tally) = (app.clone(), site.clone(), tally.clone());
        let every = Duration::from_secs(o.attack_secs);
        tasks.push(tokio::task::spawn_local(async move {
            attacker(&app, &site, &tally, every, end).await
        }));
    }
    let report = reporter(o, &app, &tally, end).await;
    for t in tasks {
        t.abort();
    }
    Ok(report)
}

/// One monitor at a time, continuously: log in, monitor an agent of the team for 5-30 s,
/// stop; every 1-4 monitors log out and in again.
async fn worker(w: u32, app: &App, site: &Site, tally: &Shared, end: TokioInstant) {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ ((w as u64 + 1) * 0x2545_f491));
    // Spread the first logins over the first 10 s.
    tokio::time::sleep(Duration::from_millis(dice.below(10_000))).await;
    let s = w % site.supervisors + 1;
    let agents = site.team_agents(site.team_of(s));
    while TokioInstant::now() < end {
        if let Err(e) = session(app, site, s, &agents, &mut dice, tally, end).await {
            {
                let mut t = tally.borrow_mut();
                t.worker_errors += 1;
                t.last_error = Some(e.to_string());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One logged-in session of a worker.
async fn session(
    app: &App,
    site: &Site,
    s: u32,
    agents: &std::ops::Range<u32>,
    dice: &mut Dice,
    tally: &Shared,
    end: TokioInstant,
) -> Result<(), BoxError> {
    let mut c = supervisor(app, site, s).await?;
    for _ in 0..=dice.below(4) {
        let agent = agents.start + dice.below((agents.end - agents.start) as u64) as u32;
        let granted = match start_monitor(&mut c, agent).await {
            Ok(g) => g,
            // Another worker of this supervisor monitors the agent: pick again.
            Err(e) if e.to_string().contains("already monitoring") => continue,
            Err(e) => return Err(e),
        };
        tally.borrow_mut().monitors_started += 1;
        let mut m = attach(app, site, s, &granted.key).await?;
        let until = (TokioInstant::now() + Duration::from_secs(5 + dice.below(25))).min(end);
        let frames = listen(&mut m, until).await;
        tally.borrow_mut().frames += frames;
        drop(m);
        // By id: stopping by agent could end the monitor another worker of this supervisor
        // started of the same agent meanwhile. The endpoint's disconnect may have ended it
        // first: either answer is fine.
        let stop = Frame::new("StopSilentMonitor").with("monitor", granted.id);
        let _ = c.request(&stop, "StopSilentMonitorReply", |_| {}).await?;
        if TokioInstant::now() >= end {
            break;
        }
    }
    Ok(())
}

/// A supervisor endpoint that reads its monitor at a trickle (one read every 200 ms).
async fn slow_endpoint(app: &App, site: &Site, end: TokioInstant) {
    while TokioInstant::now() < end {
        let s = site.supervisors;
        let agent = site.team_agents(site.team_of(s)).start;
        let run = async {
            let mut c = supervisor(app, site, s).await?;
            let granted = start_monitor(&mut c, agent).await?;
            let mut m: MonitorClient = attach(app, site, s, &granted.key).await?;
            while TokioInstant::now() < end {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let ev = tokio::time::timeout(Duration::from_secs(30), m.next_event()).await;
                match ev {
                    Ok(Ok(silentmon::monitor::service_client::Event::Media { rtp, .. })) => {
                        m.recycle(rtp)
                    }
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            Ok::<_, BoxError>(())
        };
        if run.await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Times `ListAgents` once a second on a kept session.
async fn prober(app: &App, site: &Site, tally: &Shared, end: TokioInstant) {
    while TokioInstant::now() < end {
        let Ok(mut c) = supervisor(app, site, 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while TokioInstant::now() < end {
            let t0 = Instant::now();
            if c.request(&Frame::new("ListAgents"), "AgentList", |_| {})
                .await
                .is_err()
            {
                break;
            }
            tally
                .borrow_mut()
                .list_ms
                .push(t0.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The attacks, one round every `every`: each must be refused.
async fn attacker(app: &App, site: &Site, tally: &Shared, every: Duration, end: TokioInstant) {
    let mut round = 0u64;
    while TokioInstant::now() < end {
        tokio::time::sleep(every).await;
        round += 1;
        let refused = attack_round(app, site, round).await;
        let mut t = tally.borrow_mut();
        t.attacks += 1;
        if !refused {
            t.attacks_not_refused += 1;
        }
    }
}

/// One round; true when every attack in it was refused. The attacker's own addresses are
/// 127.0.0.66 and .67 (its failed logins throttle those, never the supervisors' 127.0.0.1).
async fn attack_round(app: &App, site: &Site, round: u64) -> bool {
    const ATTACKER: &str = "127.0.0.66";
    let login = |id: &str, pw: &str| {
        Frame::new("Login")
            .with("mode", "supervisor")
            .with("id", id)
            .with("password", pw)
    };
    let mut refused = true;
    // Wrong passwords, an unknown id, then a pipelined burst of 20 logins.
    let mut bytes = Vec::new();
    login("s1", "guess").encode(&mut bytes);
    let answers = raw_control(app, site, ATTACKER, &bytes)
        .await
        .unwrap_or_default();
    refused &= !answers.is_empty();
    let mut bytes = Vec::new();
    login("nobody", "guess").encode(&mut bytes);
    refused &= !raw_control(app, site, ATTACKER, &bytes)
        .await
        .unwrap_or_default()
        .is_empty();
    let mut burst = Vec::new();
    for _ in 0..20 {
        login("s2", "x").encode(&mut burst);
    }
    let _ = raw_control(app, site, ATTACKER, &burst).await;
    // Malformed and oversized frames; a connection that never logs in; a handshake that never
    // ends.
    let _ = raw_control(app, site, "127.0.0.67", b"\x00\x00\x00\x09{not json").await;
    let _ = raw_control(app, site, "127.0.0.67", &[0xff, 0xff, 0xff, 0xff]).await;
    let idle = raw_control(app, site, "127.0.0.67", b"")
        .await
        .unwrap_or_default();
    refused &= idle.is_empty() || idle.iter().all(|r| r.contains("login"));
    if let Ok(sock) = tokio::net::TcpSocket::new_v4() {
        if sock
            .bind("127.0.0.67:0".parse().expect("an address"))
            .is_ok()
        {
            if let Ok(tcp) = sock.connect(app.control).await {
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    drop(tcp);
                });
            }
        }
    }
    // With a real login: a Bind with bad seconds, another team's agent, another's key.
    if let Ok(mut c) = supervisor(app, site, 1).await {
        let bad = Frame::new("Bind")
            .with("agent", "5001")
            .with("endpoint", "10.1.0.1:20000")
            .with("seconds", -1);
        let r = c.request(&bad, "BindReply", |_| {}).await;
        refused &= r.is_ok_and(|r| r.str("result") == Some("refused"));
        if site.teams() > 1 {
            let other_team = 5001 + super::TEAM_SIZE * (site.teams() - 1);
            refused &= start_monitor(&mut c, other_team).await.is_err();
        }
        if let Ok(granted) = start_monitor(&mut c, 5001 + (round % 50) as u32).await {
            let tls = Some((site.stranger_tls.clone(), app.tls_name()));
            if let Ok(mut m) = MonitorClient::connect(&app.monitor.to_string(), tls).await {
                refused &= m.attach(&granted.key).await.is_err();
            }
        }
    }
    refused
}

/// Every `o.report_secs`, a row; returns the whole report.
async fn reporter(o: &Options, app: &App, tally: &Shared, end: TokioInstant) -> String {
    let started = Instant::now();
    let mut report = format!(
        "# Soak: {} calls looped, {} monitor workers, {} supervisors, {} junk frames/s, \
         attacks every {} s, {} minutes\n\n\
         | min | RSS MiB | fds | monitors | started | frames fwd | frames dropped (slow) | \
         kernel drop | pipeline drop | ListAgents p50/p99 ms | logins failed | worker errors | attacks (not refused) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        o.calls, o.monitors, o.supervisors, o.junk, o.attack_secs, o.minutes
    );
    let mut minute = 0;
    while TokioInstant::now() < end {
        tokio::time::sleep(Duration::from_secs(o.report_secs)).await;
        minute += 1;
        let (rss, fds) = app.resources();
        let t = std::mem::take(&mut *tally.borrow_mut());
        let (p50, p99) = quantiles(t.list_ms.clone());
        let m = |name: &str| app.metric(name);
        let row = format!(
            "| {minute} | {:.1} | {fds} | {} | {} | {} | {} | {} | {} | {p50:.1}/{p99:.1} | {} | {} | {} ({}) |\n",
            rss as f64 / 1024.0,
            m("silentmon_monitors"),
            t.monitors_started,
            m("silentmon_monitor_frames_forwarded_total"),
            m("silentmon_monitor_frames_dropped_total"),
            m("silentmon_capture_kernel_dropped_total{interface=\"replay\"}"),
            m("silentmon_pipeline_dropped_total{interface=\"replay\"}"),
            m("silentmon_control_logins_failed_total"),
            t.worker_errors,
            t.attacks,
            t.attacks_not_refused,
        );
        eprint!("{row}");
        if let Some(e) = t.last_error {
            eprintln!("  last worker error: {e}");
        }
        report += &row;
    }
    report += &format!(
        "\nran {:.0} s; the appliance's log is {}\n",
        started.elapsed().as_secs_f64(),
        app.log.display()
    );
    report
}
