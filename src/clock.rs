//! The wall clock, for shells: the one place the appliance and the endpoint read
//! `SystemTime` as a [`Timestamp`]. Cores never call it; they are handed `now`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::Timestamp;

/// The wall clock as a [`Timestamp`] (nanoseconds since the epoch).
pub fn wall_now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(d.as_nanos() as i64)
}
