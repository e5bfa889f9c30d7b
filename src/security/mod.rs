//! Security decisions that need no I/O: monitor-mode lockout and admission ([`lockout`]) and
//! argon2 password hashes ([`password`]). TLS configuration and the private CA join here with
//! the appliance.

pub mod lockout;
pub mod password;
