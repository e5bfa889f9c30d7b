//! The supervisor's page in a real headless Chromium (WebDriver), served by a real
//! `silentmon supervisor` logged in over TLS to real appliances (`silentmon server --replay`)
//! replaying a generated capture: agent 5001's day (a call, a silent hold, the resume, the next
//! call; `capgen agent-day --no-consult`) merged with calls of agents 5002 (team blue) and 5003
//! (team green). Supervisor s1 has team blue.
//!
//! The browser tests run one at a time (each starts a browser, appliances and an endpoint).
//! Times are the capture's, replayed at speed 1 from the appliance's start; the waits are
//! bounded so a failure cannot hang, and no test asserts how fast something happened.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::appliance::{eventually, start_replaying, Pki, Replaying, Roster};
use common::audio::{capgen, seconds_of, Stereo};
use common::browser::Browser;
use common::endpoint::{recordings, Endpoint};
use common::run_ok;
use serde_json::{json, Value};

/// One browser test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ROSTER: Roster<'static> = Roster {
    agents: &[("5001", "blue"), ("5002", "blue"), ("5003", "green")],
    supervisors: &[("s1", &["blue"])],
};

/// 5001's first call starts this long into the capture.
const LEAD: f64 = 12.0;

/// The capture: 5001's day (call 1 at LEAD talks 4 s, is held 6 s in silence, resumes for
/// 3 s; call 2 at LEAD + 14.5 for 3.5 s; caller 400 / agent 1000 Hz, then 800 / 1400 Hz)
/// merged with 45 s calls of 5002 (caller 400 / agent 1000 Hz) and 5003 (410 / 1010 Hz) on
/// other addresses.
fn capture(dir: &Path) -> PathBuf {
    let day = dir.join("day.pcap");
    run_ok(
        capgen()
            .args([
                "agent-day",
                "--no-consult",
                "--lead",
                &LEAD.to_string(),
                "-o",
            ])
            .arg(&day)
            .arg("--truth")
            .arg(dir.join("day.json")),
    );
    let calls = dir.join("calls.pcap");
    run_ok(
        capgen()
            .args([
                "calls",
                "--calls",
                "2",
                "--agent-base",
                "5002",
                "--subnet",
                "5",
            ])
            .args(["--duration", "45", "-o"])
            .arg(&calls)
            .arg("--truth")
            .arg(dir.join("calls.json")),
    );
    let merged = dir.join("merged.pcap");
    run_ok(
        std::process::Command::new("mergecap")
            .args(["-F", "pcap", "-w"])
            .arg(&merged)
            .arg(&day)
            .arg(&calls),
    );
    merged
}

/// The page's URL from the endpoint's log.
fn page_url(e: &Endpoint) -> String {
    eventually(Duration::from_secs(10), "the page's URL", || {
        let log = e.log_text();
        let at = log.find("http://127.0.0.1:")?;
        let url: String = log[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        url.contains("token=").then_some(url)
    })
}

/// The team rows as (agent, state) in the page's order.
fn rows(b: &Browser) -> Vec<(String, String)> {
    let v = b.js(
        "return [...document.querySelectorAll('#team tbody tr')].map(r =>
            [r.dataset.agent, r.querySelector('.state').innerText]);",
        vec![],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
        .collect()
}

/// The meters' raw levels (agent, caller).
fn levels(b: &Browser) -> (u64, u64) {
    let v = b.js(
        "return ['meter-agent', 'meter-caller'].map(id =>
            Number(document.getElementById(id).dataset.level));",
        vec![],
    );
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
}

/// Waits until `secs` of capture time have passed since `t0`.
fn until(t0: Instant, secs: f64) {
    let at = t0 + Duration::from_secs_f64(secs);
    let now = Instant::now();
    assert!(
        now <= at + Duration::from_secs(2),
        "the test fell behind the capture at {secs} s"
    );
    std::thread::sleep(at.saturating_duration_since(now));
}

/// A supervisor endpoint for s1 against `servers`, recording in stereo to `dir`/rec-s1.
fn endpoint(pki: &Pki, dir: &Path, servers: &[&str]) -> Endpoint {
    Endpoint::start(pki, dir, servers, "s1", &[])
}

/// Agent `id` logs in (an agent session over TLS, as a desktop would) and sets `state`; the
/// session stays open while the returned runtime and client live.
fn agent_session(
    r: &Replaying,
    pki: &Pki,
    id: &str,
    state: &str,
) -> (tokio::runtime::Runtime, silentmon::control::client::Client) {
    use silentmon::control::reply::Reply;
    use silentmon::control::request::{Login, Mode, Request};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = std::fs::read_to_string(pki.ca()).unwrap();
    let tls = silentmon::security::tls::client_config(&ca, None).unwrap();
    let client = rt.block_on(async {
        let mut c =
            silentmon::control::client::Client::connect(&r.control, Some((tls, "localhost")))
                .await
                .unwrap();
        let login = Request::Login(Login {
            mode: Mode::Agent,
            id: id.into(),
            password: "any".into(),
            instrument: None,
        });
        assert!(matches!(
            c.call(&login, |_| {}).await.unwrap(),
            Reply::Login { .. }
        ));
        let set = Request::SetAgentState {
            state: silentmon::control::request::AGENT_STATES
                .into_iter()
                .find(|s| *s == state)
                .unwrap(),
        };
        let reply = c.call(&set, |_| {}).await.unwrap();
        assert_eq!(reply, Reply::SetAgentState);
        c
    });
    (rt, client)
}

#[test]
fn the_page_shows_the_team_and_monitors_with_one_click() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = capture(d);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let browser = Browser::start(&d.join("chromedriver.log"));
    let r = start_replaying(d, &pki, "a", &ROSTER, &pcap, ("1", false));
    let t0 = Instant::now();
    let e = endpoint(&pki, d, &[&r.control]);
    browser.goto(&page_url(&e));

    // 1. Exactly s1's team, live.
    let team = eventually(Duration::from_secs(15), "the team", || {
        let rows = rows(&browser);
        (rows.len() == 2).then_some(rows)
    });
    let ids: Vec<&str> = team.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(ids, ["5001", "5002"], "team blue only");
    let (_rt, _agent) = agent_session(&r, &pki, "5002", "NotReady");
    let asked = Instant::now();
    eventually(Duration::from_secs(5), "5002 not ready on the page", || {
        rows(&browser)
            .iter()
            .any(|(a, s)| a == "5002" && s == "NotReady")
            .then_some(())
    });
    eprintln!("the state change reached the page in {:?}", asked.elapsed());

    // 2. Monitor 5001 with one click, before its first call.
    browser.click("#team button.monitor[data-agent='5001']");
    let st = eventually(Duration::from_secs(10), "monitoring 5001", || {
        let st = e.status().ok()?;
        (st["monitoring"] == true && st["agent"] == "5001").then_some(st)
    });
    assert_eq!(st["packets"], 0, "before the call: {st:#}");
    let listening = eventually(Duration::from_secs(5), "the page listening", || {
        let t = browser.text("#monitoring");
        t.contains("Listening to agent 5001").then_some(t)
    });
    assert!(listening.contains("(no call right now)"), "{listening}");

    // 3. The meters move while call 1 talks, with the line's quality shown...
    until(t0, LEAD + 1.0);
    let mut talking = Vec::new();
    while t0.elapsed().as_secs_f64() < LEAD + 3.5 {
        talking.push(levels(&browser));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        talking.iter().filter(|(a, c)| *a > 500 && *c > 500).count() >= talking.len() / 2,
        "both meters up while the call talks: {talking:?}"
    );
    let quality = browser.text("#quality tbody");
    assert!(
        quality.contains("Agent → caller") && quality.contains("g711U"),
        "{quality}"
    );
    browser.screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/supervisor-page.png"));
    // ... and stay still on hold (LEAD + 4 to LEAD + 10, after the meters' fall).
    until(t0, LEAD + 5.5);
    let mut held = Vec::new();
    while t0.elapsed().as_secs_f64() < LEAD + 9.5 {
        held.push(levels(&browser));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(held.iter().all(|l| *l == (0, 0)), "still on hold: {held:?}");
    assert!(browser
        .text("#team tbody tr[data-agent='5001'] .call")
        .contains("on hold"));

    // Stop after call 1 ended (LEAD + 13), before call 2 (LEAD + 14.5); then 5002.
    until(t0, LEAD + 13.6);
    browser.click("#stop");
    eventually(Duration::from_secs(10), "stopped", || {
        let st = e.status().ok()?;
        (st["monitoring"] == false && st["agent"].is_null()).then_some(())
    });
    browser.click("#team button.monitor[data-agent='5002']");
    eventually(Duration::from_secs(10), "monitoring 5002", || {
        let st = e.status().ok()?;
        (st["monitoring"] == true && st["agent"] == "5002" && st["packets"].as_u64()? > 100)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    browser.click("#team button.stop[data-agent='5002']");
    eventually(Duration::from_secs(10), "stopped 5002", || {
        let st = e.status().ok()?;
        (st["monitoring"] == false).then_some(())
    });

    // The recordings are listed on the page, playable.
    let names = eventually(Duration::from_secs(15), "the recordings listed", || {
        let v = browser.js(
            "return [...document.querySelectorAll('#recordings li audio')].map(a => a.src);",
            vec![],
        );
        let v: Vec<String> = v
            .as_array()?
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect();
        (v.len() == 2).then_some(v)
    });
    assert!(
        names.iter().all(|n| n.contains("/recordings/")),
        "{names:?}"
    );
    let log = e.stop();

    // What was recorded: 5001's call 1 (agent 1000 Hz left, caller 400 Hz right), not call 2;
    // then 5002's call (the same tones on another line), not 5001's.
    let all = [400.0, 410.0, 800.0, 1000.0, 1010.0, 1400.0];
    let rec = d.join("rec-s1");
    let heard = |agent: &str| -> Vec<Stereo> {
        recordings(&rec, agent)
            .iter()
            .map(|w| Stereo::from_wav(w))
            .collect()
    };
    let w1 = heard("5001");
    assert_eq!(w1.len(), 1, "{log}");
    assert!(seconds_of(&w1, 0, 1000.0, &all) >= 5.0, "5001's agent side");
    assert!(seconds_of(&w1, 1, 400.0, &all) >= 5.0, "5001's caller side");
    assert_eq!(seconds_of(&w1, 0, 1400.0, &all), 0.0, "not call 2");
    let w2 = heard("5002");
    assert_eq!(w2.len(), 1, "{log}");
    assert!(seconds_of(&w2, 0, 1000.0, &all) >= 2.0);
    assert!(seconds_of(&w2, 1, 400.0, &all) >= 2.0);
    assert_eq!(seconds_of(&w2, 0, 1010.0, &all), 0.0, "not 5003's");
}

/// A raw HTTP/1.1 request to the page; the status code.
fn http(port: u16, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[test]
fn the_page_refuses_requests_without_the_token_from_other_hosts_and_other_pages() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = capture(d);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let r = start_replaying(d, &pki, "a", &ROSTER, &pcap, ("1", true));
    let e = endpoint(&pki, d, &[&r.control]);
    let url = page_url(&e);
    let port: u16 = url["http://127.0.0.1:".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = url.split("token=").nth(1).unwrap().to_owned();
    // The desktop (the user unit's launcher) asks the endpoint for the URL.
    let out = e.ctl(&["page"]);
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["url"], json!(url), "{reply}");
    let host = format!("127.0.0.1:{port}");
    let get = |path: &str, host: &str, extra: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    assert_eq!(get("/", &host, ""), 403, "no token");
    assert_eq!(get("/api/state", &host, ""), 403, "no token");
    assert_eq!(get("/?token=0000", &host, ""), 403, "a wrong token");
    assert_eq!(
        get(&format!("/?token={token}"), &host, ""),
        303,
        "the printed URL"
    );
    let cookie = format!("Cookie: silentmon_page={token}\r\n");
    assert_eq!(get("/api/state", &host, &cookie), 200);
    assert_eq!(
        get("/api/state", "evil.example", &cookie),
        403,
        "DNS rebinding"
    );
    assert_eq!(
        get("/api/state", &format!("evil.example:{port}"), &cookie),
        403
    );
    let post = |origin: &str| {
        let body = r#"{"agent":"5001"}"#;
        http(
            port,
            &format!(
                "POST /api/monitor HTTP/1.1\r\nHost: {host}\r\n{cookie}{origin}\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(post(""), 403, "a POST without Origin");
    assert_eq!(
        post("Origin: http://127.0.0.1:1\r\n"),
        403,
        "another origin"
    );
    assert!(e.status().unwrap()["agent"].is_null(), "nothing started");

    // A page of another origin in the same browser (which holds the page's cookie: the same
    // site, another port) posts to the endpoint: refused, nothing starts.
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let script = format!(
        "<!doctype html><script>fetch('http://127.0.0.1:{port}/api/monitor', {{method: 'POST', \
         credentials: 'include', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}, \
         body: JSON.stringify({{agent: '5001'}})}}).finally(() => document.title = 'sent');</script>"
    );
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for _ in 0..2 {
            let Ok((mut s, _)) = evil.accept() else {
                return;
            };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let page = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{script}",
                script.len()
            );
            let _ = s.write_all(page.as_bytes());
        }
    });
    let browser = Browser::start(&d.join("chromedriver.log"));
    browser.goto(&url);
    eventually(Duration::from_secs(15), "the page", || {
        (browser.text("#team-h") == "Team").then_some(())
    });
    // At 200 % zoom the page still fits the window's width (nothing scrolls sideways).
    let fits = browser.js(
        "document.body.style.zoom = '2';
         const r = [document.documentElement.scrollWidth, window.innerWidth];
         document.body.style.zoom = ''; return r;",
        vec![],
    );
    assert!(
        fits[0].as_u64() <= fits[1].as_u64(),
        "readable at 200 %: {fits}"
    );
    // An agent of another team (not listed, asked for anyway): the page says why not.
    browser.js(
        "fetch('/api/monitor', {method: 'POST', body: JSON.stringify({agent: '5003'})});",
        vec![],
    );
    eventually(Duration::from_secs(10), "the refusal on the page", || {
        browser
            .text("#message")
            .contains("agent is not in your teams")
            .then_some(())
    });
    // A supervisor the appliance does not know: the page says the login was refused.
    std::fs::create_dir_all(d.join("s9")).unwrap();
    let stranger = Endpoint::start(&pki, &d.join("s9"), &[&r.control], "s9", &[]);
    browser.goto(&page_url(&stranger));
    eventually(
        Duration::from_secs(15),
        "the refused login on the page",
        || {
            let link = browser.text("#link");
            link.contains("Login refused").then_some(())
        },
    );
    drop(stranger);
    browser.goto(&format!("http://127.0.0.1:{evil_port}/"));
    eventually(Duration::from_secs(10), "the cross-origin POST", || {
        (browser.js("return document.title;", vec![]) == json!("sent")).then_some(())
    });
    eventually(Duration::from_secs(5), "the refusal logged", || {
        e.log_text()
            .contains("page request refused: a request from another page")
            .then_some(())
    });
    assert!(e.status().unwrap()["agent"].is_null(), "nothing started");
    drop(browser);
    drop(server);
    let _: Value = e.status().unwrap();
}

#[test]
fn the_page_shows_the_failover_and_recovers_on_the_next_appliance() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = capture(d);
    let pki = Pki::new(&d.join("certs"), "localhost");
    let a = start_replaying(d, &pki, "a", &ROSTER, &pcap, ("1", true));
    let b = start_replaying(d, &pki, "b", &ROSTER, &pcap, ("1", true));
    let e = endpoint(&pki, d, &[&a.control, &b.control]);
    let browser = Browser::start(&d.join("chromedriver.log"));
    browser.goto(&page_url(&e));
    eventually(Duration::from_secs(15), "the team", || {
        (rows(&browser).len() == 2).then_some(())
    });
    // By keyboard: the Monitor button takes the focus and Enter presses it.
    browser.js(
        "document.querySelector(\"#team button.monitor[data-agent='5002']\").focus();",
        vec![],
    );
    browser.key_enter();
    let first = eventually(Duration::from_secs(15), "5002's audio", || {
        let st = e.status().ok()?;
        (st["packets"].as_u64()? > 50).then(|| st["server"].as_str().unwrap().to_owned())
    });
    let (dead, mut dead_app, other) = if first == a.control {
        (a.control.clone(), a.app, b.control.clone())
    } else {
        (b.control.clone(), b.app, a.control.clone())
    };
    assert!(browser
        .text("#link")
        .contains(&format!("Connected to {dead}")));
    // The appliance dies: the page says so, then shows the other one.
    let _ = dead_app.child.as_mut().unwrap().kill();
    let said = eventually(Duration::from_secs(15), "the failover on the page", || {
        let t = browser.text("#link");
        (!t.contains(&format!("Connected to {dead}"))).then_some(t)
    });
    assert!(
        said.contains(&format!(
            "lost the appliance {dead}; trying the next appliance"
        )) || said.contains("Trying appliance")
            || said.contains(&format!("Connected to {other}")),
        "{said}"
    );
    eventually(
        Duration::from_secs(30),
        "the next appliance on the page",
        || {
            let link = browser.text("#link");
            let listening = browser.text("#monitoring");
            (link.contains(&format!("Connected to {other}"))
                && listening.contains("Listening to agent 5002"))
            .then_some(())
        },
    );
    let before = e.status().unwrap()["packets"].as_u64().unwrap();
    eventually(Duration::from_secs(10), "audio again", || {
        (e.status().ok()?["packets"].as_u64()? > before + 50).then_some(())
    });
}
