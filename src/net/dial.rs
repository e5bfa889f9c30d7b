//! Dialing an appliance's service (the control plane, the monitor service): the TCP connect
//! and, unless the link is plaintext (`--insecure`), the TLS 1.3 handshake, each within the
//! given timeout, with TCP_NODELAY. The one place both clients connect through.
//!
//! Rules: a thin shell (no protocol); the caller names the address in its own errors.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Time the TCP connect, and then the TLS handshake, may each take when dialing an appliance.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected byte stream, TLS or plaintext.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// TCP connect, TLS handshake or I/O (a timeout is `TimedOut`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server name is not a valid TLS name.
    #[error("{0:?} is not a valid server name for TLS")]
    ServerName(String),
}

impl DialError {
    /// The caller's own error for this one: `io` makes it of an I/O error, `name` of a bad
    /// server name.
    pub fn into_error<E>(
        self,
        io: impl FnOnce(std::io::Error) -> E,
        name: impl FnOnce(String) -> E,
    ) -> E {
        match self {
            DialError::Io(e) => io(e),
            DialError::ServerName(n) => name(n),
        }
    }
}

/// Connects to `addr` (`host:port`); with `tls`, verifies the server as the given name and
/// presents the config's client certificate if it has one.
pub async fn dial(
    addr: &str,
    tls: Option<(Arc<rustls::ClientConfig>, &str)>,
    timeout: Duration,
) -> Result<Box<dyn Stream>, DialError> {
    let timed_out = || DialError::Io(std::io::ErrorKind::TimedOut.into());
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    let _ = tcp.set_nodelay(true);
    Ok(match tls {
        Some((config, name)) => {
            let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
                .map_err(|_| DialError::ServerName(name.to_owned()))?;
            let connect = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
            Box::new(
                tokio::time::timeout(timeout, connect)
                    .await
                    .map_err(|_| timed_out())??,
            )
        }
        None => Box::new(tcp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_never_answers_the_handshake_times_out() {
        // Accepts TCP, then says nothing: the TLS handshake must not wait forever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _silent = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let ca = crate::security::pki::create_ca("dial test CA", 1).unwrap();
        let config = crate::security::tls::client_config(&ca.cert, None).unwrap();
        let e = dial(
            &addr,
            Some((config, "localhost")),
            Duration::from_millis(200),
        )
        .await
        .err()
        .expect("no handshake, no stream");
        assert!(
            matches!(&e, DialError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            "{e:?}"
        );
        // A name rustls cannot use is said as such.
        let config = crate::security::tls::client_config(&ca.cert, None).unwrap();
        let e = dial(
            &addr,
            Some((config, "not a name!")),
            Duration::from_millis(200),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, DialError::ServerName(_)), "{e:?}");
    }
}
