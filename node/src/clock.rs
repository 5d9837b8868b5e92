//! The node's one reading of the wall clock; the protocol crate takes `now` as input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interlink_protocol::UnixTime;

/// Now, in whole seconds since the Unix epoch.
pub fn unix_now() -> UnixTime {
    UnixTime(since_epoch().as_secs())
}

/// Now, in milliseconds since the Unix epoch: a `seq` that grows across restarts.
pub fn unix_millis() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in milliseconds since the Unix epoch, as calls count time.
pub fn now() -> interlink_protocol::Timestamp {
    interlink_protocol::Timestamp(unix_millis())
}
