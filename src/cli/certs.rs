//! `silentmon certs`: the private CA in the seed's three steps (create a CA; make a key and a
//! request; have the CA sign it). Writes PEM files; private keys are created mode 0600.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::security::pki::{
    create_ca, create_request, decrypt_key, encrypt_key, sign_request, Pem, Role,
};

/// Arguments of `certs`.
#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    step: Step,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Step 1: a self-signed CA (DIR/ca.pem and DIR/ca.key).
    Ca {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "silentmon CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        #[command(flatten)]
        password: CaPassword,
        /// Leave the CA key unencrypted (labs and tests only).
        #[arg(long, conflicts_with = "password_file")]
        no_password: bool,
    },
    /// Step 2: a key and a certificate request (DIR/NAME.key and DIR/NAME.csr).
    Request {
        /// The host name or IP address the certificate is for (a server), or the client's name.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
    /// Step 3: the CA signs a request (writes the certificate PEM).
    #[command(group(clap::ArgGroup::new("role").required(true).args(["server", "client", "peer"])))]
    Sign {
        /// The request (.csr) to sign.
        #[arg(long)]
        request: PathBuf,
        /// Directory holding ca.pem and ca.key.
        #[arg(long, default_value = "certs")]
        ca_dir: PathBuf,
        /// A server certificate (a lone appliance).
        #[arg(long)]
        server: bool,
        /// A client certificate (supervisor endpoint, CLI).
        #[arg(long)]
        client: bool,
        /// An appliance of a cluster: server and client usage in one certificate (its
        /// services, and the peer link it dials on 42029).
        #[arg(long)]
        peer: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Output certificate file.
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[command(flatten)]
        password: CaPassword,
    },
}

/// Where the CA key's password comes from.
#[derive(Debug, clap::Args)]
struct CaPassword {
    /// File whose first line is the CA key's password (else $SILENTMON_CA_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

impl CaPassword {
    fn get(&self) -> Result<Option<String>> {
        if let Some(f) = &self.password_file {
            let text = read(f)?;
            return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
        }
        Ok(std::env::var("SILENTMON_CA_PASSWORD").ok())
    }
}

fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn run(args: CertsArgs) -> Result<ExitCode> {
    match args.step {
        Step::Ca {
            out,
            name,
            days,
            password,
            no_password,
        } => {
            let password = match (password.get()?, no_password) {
                (_, true) => None,
                (Some(p), false) => Some(p),
                (None, false) => bail!(
                    "the CA key needs a password: --password-file FILE or \
                     $SILENTMON_CA_PASSWORD (or --no-password for a lab)"
                ),
            };
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let ca = create_ca(&name, days)?;
            let key = match &password {
                Some(p) => encrypt_key(&ca.key, p)?,
                None => ca.key.clone(),
            };
            write(&out.join("ca.pem"), &ca.cert, false)?;
            write(&out.join("ca.key"), &key, true)?;
        }
        Step::Request { name, out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let req = create_request(&name)?;
            let file = name.replace(['/', ':'], "_");
            write(&out.join(format!("{file}.csr")), &req.cert, false)?;
            write(&out.join(format!("{file}.key")), &req.key, true)?;
        }
        Step::Sign {
            request,
            ca_dir,
            server,
            client,
            peer,
            days,
            output,
            password,
        } => {
            let ca_cert = read(&ca_dir.join("ca.pem"))?;
            let key_file = ca_dir.join("ca.key");
            let key =
                decrypt_key(&read(&key_file)?, password.get()?.as_deref()).with_context(|| {
                    format!(
                        "{} (give the CA password with --password-file FILE or \
                         $SILENTMON_CA_PASSWORD)",
                        key_file.display()
                    )
                })?;
            let ca = Pem { cert: ca_cert, key };
            let role = match (server, client, peer) {
                (true, _, _) => Role::Server,
                (_, true, _) => Role::Client,
                (_, _, true) => Role::Peer,
                _ => bail!("say --server, --client or --peer"),
            };
            let cert = sign_request(&read(&request)?, &ca, role, days)
                .with_context(|| format!("signing {}", request.display()))?;
            write(&output, &cert, false)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
