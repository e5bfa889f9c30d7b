//! `silentmon certs` in three steps; OpenSSL, an independent implementation, verifies the chain
//! and the key usage of what was issued, and private keys are not world-readable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn ca_request_sign_verified_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = d.join("ca.pw");
    std::fs::write(&pw, "ca secret\n").unwrap();
    // A CA key without a password is refused unless asked for explicitly.
    let bare = silentmon()
        .args(["certs", "ca", "--out"])
        .arg(d.join("bare"))
        .env_remove("SILENTMON_CA_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("needs a password"));
    run_ok(
        silentmon()
            .args(["certs", "ca", "--password-file"])
            .arg(&pw)
            .arg("--out")
            .arg(d),
    );
    // The key on disk is encrypted; OpenSSL opens it with the password, not without.
    let key = std::fs::read_to_string(d.join("ca.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-noout", "-passin", "pass:ca secret", "-in"])
            .arg(d.join("ca.key")),
    );
    let wrong = Command::new("openssl")
        .args(["pkey", "-noout", "-passin", "pass:nope", "-in"])
        .arg(d.join("ca.key"))
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    run_ok(
        silentmon()
            .args(["certs", "request", "--name", "appliance1.example", "--out"])
            .arg(d),
    );
    // Signing needs the password: without it, or with a wrong one, a clear error.
    let sign = |password: Option<&str>| {
        let mut c = silentmon();
        c.args(["certs", "sign", "--server", "--ca-dir"])
            .arg(d)
            .arg("--request")
            .arg(d.join("appliance1.example.csr"))
            .arg("-o")
            .arg(d.join("appliance1.example.pem"))
            .env_remove("SILENTMON_CA_PASSWORD");
        if let Some(p) = password {
            c.env("SILENTMON_CA_PASSWORD", p);
        }
        c.output().unwrap()
    };
    for bad in [None, Some("nope")] {
        let out = sign(bad);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ca.key") && err.contains("password"), "{err}");
    }
    let ok = sign(Some("ca secret"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let key_mode = std::fs::metadata(d.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    let out = run_ok(
        Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(d.join("ca.pem"))
            .arg(d.join("appliance1.example.pem")),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    let text = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(d.join("appliance1.example.pem")),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:appliance1.example"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    // Signing without a CA is a clear error naming the file.
    let bad = silentmon()
        .args([
            "certs",
            "sign",
            "--client",
            "--ca-dir",
            "/nonexistent",
            "--request",
        ])
        .arg(d.join("appliance1.example.csr"))
        .arg("-o")
        .arg(d.join("x.pem"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/ca.pem"));
}
