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

/// A session's clock: the wall clock read once, when the session starts, then moved on by
/// the monotonic clock. A call's state machines take their `now` from it, so that their
/// deadlines, and the answer and end times a receipt signs, keep their distances if the
/// wall clock steps (NTP) during the call; the next session reads the wall clock again.
#[derive(Clone, Copy, Debug)]
pub struct SessionClock {
    started: interlink_protocol::Timestamp,
    at: tokio::time::Instant,
}

impl SessionClock {
    /// A clock that reads the wall clock now.
    pub fn start() -> SessionClock {
        SessionClock {
            started: now(),
            at: tokio::time::Instant::now(),
        }
    }

    /// Now, as this session counts time.
    pub fn now(&self) -> interlink_protocol::Timestamp {
        self.started.plus(self.at.elapsed())
    }

    /// The monotonic instant of `deadline`, a time of this clock.
    pub fn instant_of(&self, deadline: interlink_protocol::Timestamp) -> tokio::time::Instant {
        self.at + deadline.since(self.started)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SessionClock;

    #[tokio::test(start_paused = true)]
    async fn a_session_clock_moves_with_the_monotonic_clock_only() {
        let clock = SessionClock::start();
        let started = clock.now();
        tokio::time::advance(Duration::from_millis(5_250)).await;
        assert_eq!(clock.now().since(started), Duration::from_millis(5_250));
        let deadline = clock.now().plus(Duration::from_secs(3));
        assert_eq!(
            clock.instant_of(deadline),
            tokio::time::Instant::now() + Duration::from_secs(3)
        );
        // A deadline already past is due now, not before the session began.
        assert_eq!(
            clock.instant_of(started),
            tokio::time::Instant::now() - Duration::from_millis(5_250)
        );
    }
}
