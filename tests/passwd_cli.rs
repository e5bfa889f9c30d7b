//! `silentmon passwd` makes argon2id hashes the configuration accepts.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn hashes_stdin_and_refuses_empty() {
    let mut child = silentmon()
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.trim().starts_with("$argon2id$"), "{hash}");
    assert!(silentmon::security::password::verify("s3cret", hash.trim()));

    let mut child = silentmon()
        .arg("passwd")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
