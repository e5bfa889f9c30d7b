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
    run_ok(silentmon().args(["certs", "ca", "--out"]).arg(d));
    run_ok(
        silentmon()
            .args(["certs", "request", "--name", "appliance1.example", "--out"])
            .arg(d),
    );
    run_ok(
        silentmon()
            .args(["certs", "sign", "--server", "--ca-dir"])
            .arg(d)
            .arg("--request")
            .arg(d.join("appliance1.example.csr"))
            .arg("-o")
            .arg(d.join("appliance1.example.pem")),
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
