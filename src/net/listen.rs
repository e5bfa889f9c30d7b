//! The listening half of the appliance's TCP services (control plane 42028, monitor service
//! 42228): accept under a connection cap, a cap on connections still in their TLS handshake
//! (per address and in all), the handshake within a timeout, TOS marking of the listener (so
//! the SYN-ACK is marked) and of every connection, TCP_NODELAY, and the names in the client's
//! certificate. A thin shell; the handshake caps' bookkeeping ([`HandshakeGate`]) is pure.
//!
//! Rules: a connection slot is taken before `accept` and held until the connection's task
//! ends, so past the cap new connections wait in the kernel's backlog instead of being
//! accepted and dropped. A connection beyond the handshake caps is closed at once (counted):
//! one address opening connections and never finishing TLS cannot take every slot. An accept
//! error is logged and retried after 50 ms; `run` ends when its shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Stream;

/// The caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections in their TLS handshake at once.
    pub max_handshakes: usize,
    /// Most connections from one address in their TLS handshake at once.
    pub max_handshakes_per_address: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_handshakes: 128,
            max_handshakes_per_address: 8,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// A listener's counters (metrics).
#[derive(Debug, Default)]
pub struct ListenStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Connections closed at once for the handshake caps.
    pub handshakes_refused: AtomicU64,
}

/// Connections in their handshake, per address and in all (pure bookkeeping).
#[derive(Debug, Default)]
pub struct HandshakeGate {
    per_address: HashMap<IpAddr, usize>,
    total: usize,
}

impl HandshakeGate {
    /// Whether a connection from `ip` may start its handshake under `limits` (if so, it is
    /// counted until [`HandshakeGate::done`]).
    pub fn admit(&mut self, ip: IpAddr, limits: &Limits) -> bool {
        let mine = self.per_address.get(&ip).copied().unwrap_or(0);
        if self.total >= limits.max_handshakes || mine >= limits.max_handshakes_per_address {
            return false;
        }
        self.total += 1;
        *self.per_address.entry(ip).or_default() += 1;
        true
    }

    /// A handshake from `ip` ended (either way).
    pub fn done(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.total
    }
}

/// A connection whose handshake completed.
pub struct Accepted {
    /// The byte stream (TLS, or plaintext with `--insecure`).
    pub stream: Box<dyn Stream>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The names in the client's certificate (empty without one).
    pub certificate: Vec<String>,
    /// The client's certificate is an appliance's (it carries the TLS server usage): only
    /// such a certificate may open a cluster peer link.
    pub appliance: bool,
}

/// One TCP service's listener.
pub struct Listener {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tos: u8,
    limits: Limits,
    what: &'static str,
    stats: Arc<ListenStats>,
    send_buffer: Option<usize>,
}

/// Marks `gate`'s handshake of `ip` done when dropped.
struct InHandshake {
    gate: Arc<Mutex<HandshakeGate>>,
    ip: IpAddr,
}

impl Drop for InHandshake {
    fn drop(&mut self) {
        lock(&self.gate).done(self.ip);
    }
}

fn lock(gate: &Mutex<HandshakeGate>) -> std::sync::MutexGuard<'_, HandshakeGate> {
    // Counters stay consistent through a panic elsewhere: each update is one statement.
    gate.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listener {
    /// A listener for the service called `what` (in logs): TLS 1.3 with `tls` (None:
    /// plaintext, `--insecure`), sockets marked `tos`. Marks the listening socket at once.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        tos: u8,
        limits: Limits,
        what: &'static str,
        stats: Arc<ListenStats>,
    ) -> Listener {
        // Linux sends the SYN-ACK with the listener's TOS: mark it, so no segment goes out
        // unmarked.
        if let Err(e) = mark_tos(&listener, tos) {
            tracing::debug!(error = %e, "{what}: cannot set the listener's TOS");
        }
        Listener {
            listener,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            tos,
            limits,
            what,
            stats,
            send_buffer: None,
        }
    }

    /// Gives every accepted socket a fixed kernel send buffer of `bytes` (no autotuning).
    pub fn with_send_buffer(mut self, bytes: usize) -> Listener {
        self.send_buffer = Some(bytes);
        self
    }

    /// Accepts until `shutdown` resolves; each connection whose handshake completes is handed
    /// to `serve` on a task of its own, which holds a connection slot until it returns.
    pub async fn run<F, Fut>(self, shutdown: impl Future<Output = ()>, serve: F)
    where
        F: Fn(Accepted) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let gate = Arc::new(Mutex::new(HandshakeGate::default()));
        tokio::pin!(shutdown);
        while let Some((permit, sock, peer)) = self.accept(&slots, &mut shutdown).await {
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            if !lock(&gate).admit(peer.ip(), &self.limits) {
                self.stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "{}: too many TLS handshakes in progress; closed", self.what);
                continue;
            }
            set_tos(&sock, self.tos);
            if let Some(bytes) = self.send_buffer {
                if let Err(e) = socket2::SockRef::from(&sock).set_send_buffer_size(bytes) {
                    tracing::debug!(%peer, error = %e, "{}: cannot set the send buffer", self.what);
                }
            }
            let guard = InHandshake {
                gate: gate.clone(),
                ip: peer.ip(),
            };
            let (tls, limits, what) = (self.tls.clone(), self.limits, self.what);
            let (stats, serve) = (self.stats.clone(), serve.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let accepted = handshake(sock, peer, tls, limits.handshake_timeout).await;
                drop(guard);
                match accepted {
                    Ok(a) => serve(a).await,
                    Err(e) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%peer, error = %e, "{what}: TLS handshake failed");
                    }
                }
            });
        }
    }

    /// The next connection under the cap; None once `shutdown` resolves.
    async fn accept<F: Future<Output = ()>>(
        &self,
        slots: &Arc<Semaphore>,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> Option<(tokio::sync::OwnedSemaphorePermit, TcpStream, SocketAddr)> {
        let permit = tokio::select! {
            _ = shutdown.as_mut() => return None,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        loop {
            tokio::select! {
                _ = shutdown.as_mut() => return None,
                r = self.listener.accept() => match r {
                    Ok((sock, peer)) => return Some((permit, sock, peer)),
                    Err(e) => {
                        tracing::warn!(error = %e, "{}: accept failed", self.what);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

/// The TLS handshake of `sock` within `timeout` (plaintext: nothing to do).
async fn handshake(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeout: Duration,
) -> std::io::Result<Accepted> {
    let Some(acceptor) = tls else {
        return Ok(Accepted {
            stream: Box::new(sock),
            peer,
            certificate: Vec::new(),
            appliance: false,
        });
    };
    let stream = tokio::time::timeout(timeout, acceptor.accept(sock))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    let certificate = leaf
        .map(|c| crate::security::tls::certificate_names(c.as_ref()))
        .unwrap_or_default();
    let appliance = leaf.is_some_and(|c| crate::security::tls::is_server_certificate(c.as_ref()));
    Ok(Accepted {
        stream: Box::new(stream),
        peer,
        certificate,
        appliance,
    })
}

/// Sets TCP_NODELAY and marks a connection's TOS byte (best effort: a failure is logged, the
/// connection goes on).
pub fn set_tos(sock: &TcpStream, tos: u8) {
    let _ = socket2::SockRef::from(sock).set_tcp_nodelay(true);
    if let Err(e) = mark_tos(sock, tos) {
        tracing::debug!(error = %e, "cannot set TOS");
    }
}

/// Marks a socket's packets with `tos`: the IPv4 TOS byte, or on an IPv6 socket the traffic
/// class (and the TOS byte for IPv4-mapped peers). On a listener, Linux sends the SYN-ACK with it
/// and accepted sockets inherit it.
pub fn mark_tos(sock: &impl std::os::fd::AsFd, tos: u8) -> std::io::Result<()> {
    let s = socket2::SockRef::from(sock);
    match s.local_addr()?.as_socket() {
        Some(SocketAddr::V6(_)) => {
            let _ = s.set_tos_v4(tos as u32);
            s.set_tclass_v6(tos as u32)
        }
        _ => s.set_tos_v4(tos as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_tos_sets_the_tos_byte_on_ipv4_and_the_traffic_class_on_ipv6() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        mark_tos(&v4, 0xB8).unwrap();
        assert_eq!(socket2::SockRef::from(&v4).tos_v4().unwrap(), 0xB8);
        // The build and CI machines have ::1 on lo.
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        mark_tos(&v6, 0xB8).unwrap();
        assert_eq!(socket2::SockRef::from(&v6).tclass_v6().unwrap(), 0xB8);
    }

    #[test]
    fn one_address_cannot_take_every_handshake_slot() {
        let limits = Limits {
            max_handshakes: 4,
            max_handshakes_per_address: 2,
            ..Limits::default()
        };
        let mut g = HandshakeGate::default();
        let (a, b, c) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        assert!(g.admit(a, &limits) && g.admit(a, &limits));
        assert!(!g.admit(a, &limits), "a third from one address");
        assert!(g.admit(b, &limits) && g.admit(b, &limits));
        assert!(!g.admit(c, &limits), "all four taken");
        g.done(a);
        assert!(g.admit(c, &limits));
        assert_eq!(g.in_progress(), 4);
        for ip in [a, b, b, c] {
            g.done(ip);
        }
        assert_eq!(g.in_progress(), 0);
        assert!(g.per_address.is_empty());
    }

    #[tokio::test]
    async fn a_silent_handshake_times_out_and_frees_its_slot() {
        let ca = crate::security::pki::create_ca("t", 1).unwrap();
        let req = crate::security::pki::create_request("localhost").unwrap();
        let cert = crate::security::pki::sign_request(
            &req.cert,
            &ca,
            crate::security::pki::Role::Server,
            1,
        )
        .unwrap();
        let tls = crate::security::tls::server_config(&ca.cert, &cert, &req.key, false).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let stats = Arc::new(ListenStats::default());
        let limits = Limits {
            max_handshakes_per_address: 1,
            handshake_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let l = Listener::new(tcp, Some(tls), 0, limits, "test", stats.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(l.run(
            async {
                let _ = stop_rx.await;
            },
            |_a: Accepted| async {},
        ));
        // The first connection says nothing; a second from the same address is closed at once.
        let _silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut second, &mut buf).await;
        assert!(matches!(n, Ok(0) | Err(_)), "closed at once");
        assert_eq!(stats.handshakes_refused.load(Ordering::Relaxed), 1);
        // After the timeout the silent one is dropped and the address may try again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(stats.tls_failures.load(Ordering::Relaxed), 1);
        let _third = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(stats.handshakes_refused.load(Ordering::Relaxed), 1);
        let _ = stop_tx.send(());
        server.await.unwrap();
    }
}
