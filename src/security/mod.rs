//! Security decisions that need no I/O: monitor-mode lockout and admission ([`lockout`]) and
//! argon2 password hashes ([`password`]), the private CA ([`pki`]) and the rustls
//! configurations every TCP link uses ([`tls`]). PEM in, configurations out: no sockets.

pub mod lockout;
pub mod password;
pub mod pki;
pub mod tls;
