//! Event logs the API replays and then streams as server-sent events, for calls and for
//! conference memberships alike.
//!
//! A log keeps the events of one call (or membership) so far, numbered 1, 2, …; an event
//! stream sends those after the browser's `Last-Event-ID`, then each new one, and ends
//! after the end event. The log counts the streams open on it, so that a call whose page
//! went away can be noticed ([`orphaned`]).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::lock::LockExt;

/// An event a log keeps and a stream sends.
pub trait LoggedEvent: Clone + Serialize + Send + Sync + 'static {
    /// Its number in the log, from 1: the event stream's id.
    fn seq(&self) -> u64;
    /// Its name on the event stream.
    fn name(&self) -> &'static str;
    /// Whether it is the last: the stream ends after it.
    fn is_end(&self) -> bool;
}

/// The events so far, and the channel that carries new ones.
#[derive(Debug)]
pub struct EventLog<E> {
    inner: Mutex<Inner<E>>,
    /// Event streams open on the log, and opened in all.
    streams: watch::Sender<StreamCount>,
    max_events: usize,
}

/// How many event streams a log has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCount {
    /// Open now.
    pub open: usize,
    /// Opened since the log began.
    pub opened: u64,
}

#[derive(Debug)]
struct Inner<E> {
    events: Vec<E>,
    live: broadcast::Sender<E>,
}

impl<E: LoggedEvent> EventLog<E> {
    /// A log that keeps at most `max_events` (and the end event), and queues
    /// `live_events` for a slow stream before cutting it (the browser reconnects and
    /// replays from its last event id).
    pub fn new(max_events: usize, live_events: usize) -> Arc<EventLog<E>> {
        let (live, _) = broadcast::channel(live_events.max(1));
        Arc::new(EventLog {
            inner: Mutex::new(Inner {
                events: Vec::new(),
                live,
            }),
            streams: watch::Sender::new(StreamCount::default()),
            max_events,
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner<E>> {
        // Appending an event leaves the log consistent at every step.
        self.inner.locked()
    }

    /// Appends the event `make` builds with the next number.
    pub fn push(&self, make: impl FnOnce(u64) -> E) {
        let mut inner = self.inner();
        let event = make(inner.events.len() as u64 + 1);
        if inner.events.len() >= self.max_events && !event.is_end() {
            return;
        }
        inner.events.push(event.clone());
        // Nobody listening is fine: the log keeps it.
        let _ = inner.live.send(event);
    }

    /// The events after `after` so far, and a receiver of the ones to come; the stream is
    /// counted open until the guard is dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        after: u64,
    ) -> (Vec<E>, broadcast::Receiver<E>, StreamGuard<E>) {
        let inner = self.inner();
        let backlog = inner
            .events
            .iter()
            .filter(|e| e.seq() > after)
            .cloned()
            .collect();
        // Taken under the same lock as the backlog: no event falls between the two.
        let live = inner.live.subscribe();
        drop(inner);
        self.streams.send_modify(|n| {
            n.open += 1;
            n.opened += 1;
        });
        (
            backlog,
            live,
            StreamGuard {
                log: Arc::clone(self),
            },
        )
    }

    /// A receiver of the log's stream counts.
    pub fn streams(&self) -> watch::Receiver<StreamCount> {
        self.streams.subscribe()
    }
}

/// Counts an event stream open on a log while it lives.
#[derive(Debug)]
pub struct StreamGuard<E> {
    log: Arc<EventLog<E>>,
}

impl<E> Drop for StreamGuard<E> {
    fn drop(&mut self) {
        self.log
            .streams
            .send_modify(|n| n.open = n.open.saturating_sub(1));
    }
}

/// The log's events after the request's `Last-Event-ID` (all if none), then each as it
/// happens, as server-sent events; the stream ends after the end event.
pub fn stream<E: LoggedEvent>(
    log: &Arc<EventLog<E>>,
    headers: &HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<E>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (backlog, live, guard) = log.subscribe(after);
    let ended = backlog.iter().any(LoggedEvent::is_end);
    let live = futures::stream::unfold(
        Live {
            receiver: live,
            _guard: guard,
            done: ended,
        },
        next_live,
    );
    let events = futures::stream::iter(backlog)
        .chain(live)
        .map(|event| Ok(sse_event(&event)));
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The live part of an event stream.
struct Live<E> {
    receiver: broadcast::Receiver<E>,
    /// Counts the stream open while it lives.
    _guard: StreamGuard<E>,
    done: bool,
}

async fn next_live<E: LoggedEvent>(mut live: Live<E>) -> Option<(E, Live<E>)> {
    if live.done {
        return None;
    }
    match live.receiver.recv().await {
        Ok(event) => {
            live.done = event.is_end();
            Some((event, live))
        }
        // Lagging behind: cut the stream, the browser resumes from its last id.
        Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => None,
    }
}

fn sse_event<E: LoggedEvent>(event: &E) -> Event {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Event::default()
        .event(event.name())
        .id(event.seq().to_string())
        .data(data)
}

/// Resolves `true` once every event stream on a log (`streams`) has closed and none
/// opened again within `after`: the page went away. A log nobody ever watched is left
/// alone (a script may not want the events); `false` if the log is gone.
pub async fn orphaned(mut streams: watch::Receiver<StreamCount>, after: Duration) -> bool {
    // Counted, not sampled: a stream that opened and closed before this looked counts.
    if streams.wait_for(|n| n.opened > 0).await.is_err() {
        return false;
    }
    loop {
        let opened = match streams.wait_for(|n| n.open == 0).await {
            Ok(now) => now.opened,
            Err(_) => return false,
        };
        let back = streams.wait_for(|n| n.open > 0 || n.opened > opened);
        if tokio::time::timeout(after, back).await.is_err() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Serialize)]
    struct Tick {
        seq: u64,
        last: bool,
    }

    impl LoggedEvent for Tick {
        fn seq(&self) -> u64 {
            self.seq
        }
        fn name(&self) -> &'static str {
            "tick"
        }
        fn is_end(&self) -> bool {
            self.last
        }
    }

    #[test]
    fn a_full_log_keeps_only_the_end_and_replays_after_an_id() {
        let log = EventLog::<Tick>::new(2, 4);
        for _ in 0..3 {
            log.push(|seq| Tick { seq, last: false });
        }
        log.push(|seq| Tick { seq, last: true });
        let (all, _, _guard) = log.subscribe(0);
        let seqs: Vec<(u64, bool)> = all.iter().map(|t| (t.seq, t.last)).collect();
        assert_eq!(seqs, vec![(1, false), (2, false), (3, true)]);
        let (after, _, _guard) = log.subscribe(2);
        assert_eq!(after.len(), 1);
        assert_eq!(*log.streams().borrow(), StreamCount { open: 2, opened: 2 });
    }

    #[tokio::test]
    async fn a_log_is_orphaned_once_its_streams_close_and_not_once_it_is_gone() {
        let log = EventLog::<Tick>::new(8, 4);
        let watcher = tokio::spawn(orphaned(log.streams(), Duration::from_millis(100)));
        let (_, _, stream) = log.subscribe(0);
        drop(stream);
        let orphaned_now = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert!(orphaned_now);

        let log = EventLog::<Tick>::new(8, 4);
        let watcher = tokio::spawn(orphaned(log.streams(), Duration::from_millis(100)));
        drop(log);
        let gone = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert!(!gone);
    }
}
