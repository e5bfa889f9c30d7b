//! Security decisions that need no I/O: monitor-mode lockout and admission ([`lockout`]).
//! TLS configuration, the private CA and password hashing join here with the appliance.

pub mod lockout;
