//! What silentmon prints for people: the `flows` report ([`flows`]) and the plain text table
//! `ctl` prints the control plane's lists with ([`table`]). Presentation only: rows come from
//! the engine's tables or the control plane's typed replies; nothing here decides anything.

pub mod flows;
pub mod table;

pub use flows::Report;
