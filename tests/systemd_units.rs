//! The systemd units in systemd/ checked by systemd itself: `systemd-analyze verify` for the
//! appliance's system unit and (`--user`) for the supervisor's user unit, and
//! `systemd-analyze security --offline` for the appliance's hardening. A missing
//! systemd-analyze fails the tests (it comes with Debian's `systemd` package).
//!
//! `systemd-analyze verify` exits 0 on many real mistakes (an unknown key, a value it cannot
//! parse: both are "ignoring" warnings that silently drop a hardening line), so a unit counts as
//! clean only when verify exits 0 *and* prints nothing about the unit's file. The negative tests
//! below break copies of the units and assert that this check catches each break.
//!
//! verify also insists that ExecStart's program exists: the units name the installed path
//! /usr/local/bin/silentmon, so each check runs on a copy in a temporary directory with that
//! path replaced by the binary cargo built for this test. `User=silentmon` need not exist for
//! verify (systemd 252 does not check it, and does not warn).

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALLED_BIN: &str = "/usr/local/bin/silentmon";
const SERVER: &str = "silentmon-server.service";
const SUPERVISOR: &str = "silentmon-supervisor.service";

fn unit_text(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn systemd_analyze() -> Command {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    match probe {
        Ok(o) if o.status.success() => Command::new("systemd-analyze"),
        _ => panic!(
            "systemd-analyze is required for this test (Debian package `systemd`; \
             tools/install-deps.sh --test)"
        ),
    }
}

/// A unit's text made verifiable here: the installed binary path replaced by the built one.
fn testable(text: &str) -> String {
    assert!(
        text.contains(INSTALLED_BIN),
        "the unit no longer runs {INSTALLED_BIN}"
    );
    text.replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_silentmon"))
}

/// Writes `text` as `name` into a fresh temporary directory (the file name is the unit name).
fn write_unit(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs `systemd-analyze [--user] verify` on the unit file; Err(report) when verify fails or
/// says anything about this unit (lines naming the unit or its file), Ok(whole output) else.
fn verify(path: &Path, user: bool) -> Result<String, String> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let mut cmd = systemd_analyze();
    // A user manager needs a runtime directory; as root in CI there is no login session, so
    // give it a private one.
    let runtime = tempfile::tempdir().unwrap();
    if user {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    }
    cmd.args(["verify", "--man=no"]).arg(path);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_unit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(name) || l.contains(&*path.to_string_lossy()))
        .collect();
    if !out.status.success() || !about_unit.is_empty() {
        return Err(format!(
            "systemd-analyze{} verify {} ({}):\n{text}",
            if user { " --user" } else { "" },
            path.display(),
            out.status
        ));
    }
    Ok(text)
}

#[test]
fn server_unit_verifies_without_any_complaint() {
    let (_dir, path) = write_unit(SERVER, &testable(&unit_text(SERVER)));
    if let Err(report) = verify(&path, false) {
        panic!("{report}");
    }
}

#[test]
fn supervisor_user_unit_verifies_without_any_complaint() {
    let (_dir, path) = write_unit(SUPERVISOR, &testable(&unit_text(SUPERVISOR)));
    if let Err(report) = verify(&path, true) {
        panic!("{report}");
    }
}

/// Each break must be caught: otherwise the two tests above could pass on broken units.
#[test]
fn verify_check_catches_broken_units() {
    let breaks: &[(&str, &str, &str)] = &[
        // A misspelt key: verify exits 0 and says "Unknown key ... ignoring".
        ("NoNewPrivileges=yes", "NoNewPrivilegs=yes", "Unknown key"),
        // A value it cannot parse: exits 0, "Failed to parse ... ignoring".
        (
            "RestrictAddressFamilies=AF_INET ",
            "RestrictAddressFamilies=AF_INETT ",
            "address family",
        ),
        // A program that does not exist: verify exits non-zero.
        (
            env!("CARGO_BIN_EXE_silentmon"),
            "/nonexistent/silentmon",
            "not executable",
        ),
        // A key outside any known section.
        ("[Service]", "[Servic]", "Servic"),
    ];
    for (unit, user) in [(SERVER, false), (SUPERVISOR, true)] {
        let good = testable(&unit_text(unit));
        for (from, to, expect) in breaks {
            assert!(good.contains(from), "{unit} has no {from:?} to break");
            let (_dir, path) = write_unit(unit, &good.replacen(from, to, 1));
            match verify(&path, user) {
                Ok(out) => panic!("{unit} with {from:?} -> {to:?} passed verify:\n{out}"),
                Err(report) => assert!(
                    report.contains(expect),
                    "{unit} with {from:?} -> {to:?}: expected {expect:?} in:\n{report}"
                ),
            }
        }
    }
}

/// Key=value pairs of a unit file (comments and section headers dropped; repeated keys kept).
fn entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn values<'a>(entries: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(entries: &'a [(String, String)], key: &str) -> &'a str {
    match values(entries, key).as_slice() {
        [v] => v,
        other => panic!("expected exactly one {key}=, found {other:?}"),
    }
}

/// The promises the documentation makes about the appliance's unit, and its agreement with the
/// configuration's defaults (file location, audit log inside the state directory).
#[test]
fn server_unit_runs_unprivileged_with_only_cap_net_raw() {
    let e = entries(&unit_text(SERVER));
    let config = silentmon::config::DEFAULT_PATH;
    assert_eq!(
        one(&e, "ExecStart"),
        format!("{INSTALLED_BIN} server --config {config}")
    );
    assert_eq!(
        one(&e, "ExecStartPre"),
        format!("{INSTALLED_BIN} server --config {config} --check-config")
    );
    assert_eq!(one(&e, "User"), "silentmon");
    assert_eq!(one(&e, "Group"), "silentmon");
    assert_eq!(one(&e, "AmbientCapabilities"), "CAP_NET_RAW");
    assert_eq!(one(&e, "CapabilityBoundingSet"), "CAP_NET_RAW");
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("Restart", "on-failure"),
        ("StateDirectory", "silentmon"),
        ("ConfigurationDirectory", "silentmon"),
    ] {
        assert_eq!(one(&e, key), want, "{key}");
    }
    let families: Vec<&str> = one(&e, "RestrictAddressFamilies").split(' ').collect();
    assert_eq!(
        families,
        ["AF_INET", "AF_INET6", "AF_UNIX", "AF_PACKET", "AF_NETLINK"]
    );
    assert!(one(&e, "After").contains("network-online.target"));
    assert!(one(&e, "Wants").contains("network-online.target"));
    assert!(!one(&e, "RestartSec").is_empty());

    // ConfigurationDirectory=silentmon is /etc/silentmon, StateDirectory=silentmon is
    // /var/lib/silentmon: the defaults of the configuration must live there.
    assert!(config.starts_with("/etc/silentmon/"), "{config}");
    let defaults =
        silentmon::config::Settings::parse("", Path::new(config)).expect("empty config is valid");
    assert!(
        defaults.audit_log.starts_with("/var/lib/silentmon"),
        "default audit log {} is outside StateDirectory",
        defaults.audit_log.display()
    );
    assert!(
        defaults.certs_dir.starts_with("/etc/silentmon"),
        "default certs dir {} is outside ConfigurationDirectory",
        defaults.certs_dir.display()
    );
}

#[test]
fn supervisor_unit_is_a_user_unit_in_the_sound_session() {
    let e = entries(&unit_text(SUPERVISOR));
    assert_eq!(
        one(&e, "ExecStart"),
        format!("{INSTALLED_BIN} supervisor --config %h/.config/silentmon/supervisor.toml")
    );
    // User units run as their user: User=/Group= would be refused by a user manager.
    assert!(values(&e, "User").is_empty() && values(&e, "Group").is_empty());
    let after = one(&e, "After");
    for unit in ["sound.target", "pipewire-pulse.service"] {
        assert!(after.split(' ').any(|u| u == unit), "After= lacks {unit}");
    }
    assert_eq!(one(&e, "Restart"), "on-failure");
    assert_eq!(one(&e, "WantedBy"), "default.target");
}

/// systemd's own exposure score of the appliance's sandbox (0 = locked down, 10 = none):
/// removing hardening lines raises it past the bound and fails here.
#[test]
fn server_unit_exposure_stays_low() {
    let (_dir, path) = write_unit(SERVER, &testable(&unit_text(SERVER)));
    let out = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");

    // And the bound means something: the same unit without its sandbox scores far higher.
    let bare: String = unit_text(SERVER)
        .lines()
        .filter(|l| {
            !l.starts_with("Protect")
                && !l.starts_with("Private")
                && !l.starts_with("Restrict")
                && !l.starts_with("SystemCall")
                && !l.starts_with("CapabilityBoundingSet")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (_dir2, bare_path) = write_unit(SERVER, &testable(&bare));
    let out = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&bare_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bare_score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level for the bare unit:\n{text}"));
    assert!(bare_score > 2.5, "the bare unit scores {bare_score}");
}
