//! `silentmon passwd`: an argon2id hash of a password read from standard input, for the
//! configuration's `password_hash` keys (the file never holds a password).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::security::password;

/// Arguments of `passwd`.
#[derive(Debug, Args)]
#[command(
    after_help = "Reads the password from the first line of standard input, e.g.\n  \
    printf '%s\\n' \"$PASSWORD\" | silentmon passwd\nand prints the hash to paste into \
    silentmon.toml (agent.password_hash, supervisor.password_hash, \
    control.monitor_mode_password_hash)."
)]
pub(crate) struct PasswdArgs {}

pub(crate) fn run(_args: PasswdArgs) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (it will be visible; pipe it in to avoid that): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        bail!("empty password on standard input");
    }
    println!("{}", password::hash(pw)?);
    Ok(ExitCode::SUCCESS)
}
