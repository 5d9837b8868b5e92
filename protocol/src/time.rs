//! Wall-clock time as the protocol sees it: whole seconds since the Unix epoch.
//!
//! The protocol never reads a clock. Whoever drives it passes `now` in, so that tests run
//! in virtual time and a verdict such as "expired" depends only on its inputs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// This time plus `duration` (whole seconds), saturating at the end of time.
    pub fn plus(self, duration: Duration) -> UnixTime {
        UnixTime(self.0.saturating_add(duration.as_secs()))
    }

    /// This time minus `duration` (whole seconds), saturating at the epoch.
    pub fn minus(self, duration: Duration) -> UnixTime {
        UnixTime(self.0.saturating_sub(duration.as_secs()))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: UnixTime) -> Duration {
        Duration::from_secs(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// Milliseconds since the Unix epoch: the time of calls, their deadlines and receipts.
///
/// Calls use wall-clock milliseconds for both deadlines and billing so that one `now`
/// drives a call; deadlines are seconds long, and billing needs wall time anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus `duration`, saturating.
    pub fn plus(self, duration: Duration) -> Timestamp {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The whole second this falls in.
    pub fn unix_time(self) -> UnixTime {
        UnixTime(self.0 / 1000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}
