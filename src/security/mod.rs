//! Security decisions that need no I/O: monitor-mode lockout and admission ([`lockout`]), login
//! throttling ([`throttle`]), argon2 password hashes ([`password`]), what the audit trail
//! records ([`audit`]), the private CA ([`pki`]) and the rustls configurations every TCP link
//! uses ([`tls`]). PEM in, configurations out: no sockets, no clock reads.

pub mod audit;
pub mod lockout;
pub mod password;
pub mod pki;
pub mod throttle;
pub mod tls;
