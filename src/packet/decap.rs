//! Lax decapsulation (skeleton; see packet/mod.rs for the contract).
use super::{Decapsulated, LinkType};
use crate::time::{Span, Timestamp};

/// Decapsulator limits.
#[derive(Clone, Debug)]
pub struct DecapConfig {
    /// Most bytes held for IPv4 reassembly at once.
    pub max_fragment_bytes: usize,
    /// A fragment set older than this is dropped.
    pub fragment_timeout: Span,
    /// Most tunnel levels decoded.
    pub max_tunnel_depth: u8,
}

impl Default for DecapConfig {
    fn default() -> Self {
        DecapConfig {
            max_fragment_bytes: 4 << 20,
            fragment_timeout: Span::from_secs(30),
            max_tunnel_depth: 3,
        }
    }
}

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct DecapStats {}

impl DecapStats {
    /// (name, count) of frames by encapsulation seen (vlan, qinq, sll, gre, erspan2, ...).
    pub fn encapsulations(&self) -> Vec<(&'static str, u64)> {
        todo!()
    }
    /// (reason, count) of frames that stopped early, by "layer/reason".
    pub fn stops(&self) -> Vec<(String, u64)> {
        todo!()
    }
}

/// Stateful (fragment reassembly) decapsulator.
pub struct Decapsulator {}

impl Decapsulator {
    /// New decapsulator.
    pub fn new(_config: DecapConfig) -> Self {
        todo!()
    }
    /// Decodes one frame captured at `now` on a link of type `link`.
    pub fn decapsulate<'a>(
        &'a mut self,
        _now: Timestamp,
        _link: LinkType,
        _frame: &'a [u8],
    ) -> Decapsulated<'a> {
        todo!()
    }
    /// Counters so far.
    pub fn stats(&self) -> &DecapStats {
        todo!()
    }
}
