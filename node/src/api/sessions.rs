//! The one registry of what the API drives for a browser: calls ([`super::calls`]) and
//! conference memberships ([`super::memberships`]) alike.
//!
//! [`Sessions`] bounds how many run at once (counting the places held for ones being set
//! up), finds them by id, keeps a short list of recently ended ones so that a page that
//! reconnects still learns how its session ended, and ends them all when the node stops.
//! Each session's task retires it from the active list when it is over. The handlers of
//! `GET …/{id}`, `DELETE …/{id}` and `GET …/{id}/events` are written once here, for any
//! [`Session`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::ApiState;
use super::error::ApiError;
use super::events::{EventLog, LoggedEvent};
use crate::lock::LockExt;

/// Something the API drives for a browser, as the registry knows it.
pub trait Session: std::fmt::Debug + Send + Sync + 'static {
    /// Why another cannot start: the most of its kind are running or being set up.
    type TooMany;
    /// Ended sessions of its kind kept for a late look at how they ended.
    const RECENT: usize;

    /// Its id.
    fn id(&self) -> &str;
    /// The error for `taken` sessions (running and being set up) at the most.
    fn too_many(taken: usize) -> Self::TooMany;
}

/// A session as the API's handlers serve it: a snapshot, an event log and a way to end.
pub trait Served: Session + Sized {
    /// What `GET …/{id}` returns.
    type View: Serialize + Send;
    type Event: LoggedEvent;
    /// What an unknown id is called in the error: "no call … on this node".
    const NOUN: &'static str;
    /// The error code of an unknown id.
    const UNKNOWN_CODE: &'static str;

    /// Its snapshot now.
    fn view(&self) -> Self::View;
    /// Whether it is over.
    fn is_ended(&self) -> bool;
    /// Its events, for its event streams.
    fn events(&self) -> &Arc<EventLog<Self::Event>>;
    /// What `DELETE …/{id}` asks for (hang up, leave); its `ended` event follows.
    fn end(&self);
    /// The registry of its kind in the API's state.
    fn registry(state: &ApiState) -> &Sessions<Self>;
}

/// The sessions of one kind. Clones share them.
#[derive(Debug)]
pub struct Sessions<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Sessions<S> {
    fn clone(&self) -> Self {
        Sessions {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<S> {
    max: usize,
    orphan_after: Option<Duration>,
    entries: Mutex<Entries<S>>,
}

#[derive(Debug)]
struct Entries<S> {
    /// Oldest first.
    active: Vec<Running<S>>,
    /// Sessions being set up: they hold a place until registered or given up.
    pending: usize,
    recent: VecDeque<Arc<S>>,
}

#[derive(Debug)]
struct Running<S> {
    session: Arc<S>,
    /// Its task, until the node stops and waits for it.
    task: Option<JoinHandle<()>>,
}

/// A place held for a session being set up; given back when dropped unless the session
/// fills it.
#[derive(Debug)]
pub struct Place<S: Session> {
    sessions: Option<Sessions<S>>,
    started: Instant,
}

impl<S: Session> Place<S> {
    /// When the place was taken: when the user asked.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl<S: Session> Drop for Place<S> {
    fn drop(&mut self) {
        if let Some(sessions) = self.sessions.take() {
            let mut entries = sessions.entries();
            entries.pending = entries.pending.saturating_sub(1);
        }
    }
}

impl<S: Session> Sessions<S> {
    /// At most `max` at once; `orphan_after` ends those whose page went away.
    pub fn new(max: usize, orphan_after: Option<Duration>) -> Sessions<S> {
        Sessions {
            inner: Arc::new(Inner {
                max,
                orphan_after,
                entries: Mutex::new(Entries {
                    active: Vec::new(),
                    pending: 0,
                    recent: VecDeque::new(),
                }),
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries<S>> {
        // Every change is a single push, remove or count.
        self.inner.entries.locked()
    }

    /// How long a session whose page closed its event streams is kept.
    pub fn orphan_after(&self) -> Option<Duration> {
        self.inner.orphan_after
    }

    /// Whether another session may start now.
    pub fn check_capacity(&self) -> Result<(), S::TooMany> {
        self.entries().check(self.inner.max)
    }

    /// Holds a place for a session being set up, if there is room.
    pub fn hold_place(&self) -> Result<Place<S>, S::TooMany> {
        let mut entries = self.entries();
        entries.check(self.inner.max)?;
        entries.pending += 1;
        Ok(Place {
            sessions: Some(self.clone()),
            started: Instant::now(),
        })
    }

    /// Registers `session`, if there is room.
    pub fn insert(&self, session: &Arc<S>) -> Result<(), S::TooMany> {
        let mut entries = self.entries();
        entries.check(self.inner.max)?;
        entries.push(session);
        Ok(())
    }

    /// Registers `session` in the place held for it.
    pub fn fill(&self, mut place: Place<S>, session: &Arc<S>) {
        let mut entries = self.entries();
        if place.sessions.take().is_some() {
            entries.pending = entries.pending.saturating_sub(1);
        }
        entries.push(session);
    }

    /// Runs `driver`, the task of the registered `session`, which retires it when done.
    pub fn spawn(&self, session: &Arc<S>, driver: impl Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(driver);
        let mut entries = self.entries();
        if let Some(running) = entries
            .active
            .iter_mut()
            .find(|r| r.session.id() == session.id())
        {
            running.task = Some(task);
        }
        // Else it has already ended: nothing to wait for.
    }

    /// The active or recently ended session `id`.
    pub fn get(&self, id: &str) -> Option<Arc<S>> {
        let entries = self.entries();
        entries
            .active
            .iter()
            .map(|r| &r.session)
            .chain(entries.recent.iter())
            .find(|s| s.id() == id)
            .cloned()
    }

    /// The sessions in progress, oldest first.
    pub fn active(&self) -> Vec<Arc<S>> {
        self.entries()
            .active
            .iter()
            .map(|r| Arc::clone(&r.session))
            .collect()
    }

    /// Moves `id` from the active sessions to the recent ones.
    pub fn retire(&self, id: &str) {
        let mut entries = self.entries();
        if let Some(index) = entries.active.iter().position(|r| r.session.id() == id) {
            let running = entries.active.remove(index);
            if entries.recent.len() >= S::RECENT {
                entries.recent.pop_front();
            }
            entries.recent.push_back(running.session);
        }
    }

    /// Asks every session to `end` and waits, up to `deadline`, for their tasks; `false`
    /// if some did not end in time.
    pub async fn end_all(&self, deadline: Duration, end: impl Fn(&S)) -> bool {
        let running: Vec<(Arc<S>, Option<JoinHandle<()>>)> = self
            .entries()
            .active
            .iter_mut()
            .map(|r| (Arc::clone(&r.session), r.task.take()))
            .collect();
        for (session, _) in &running {
            end(session);
        }
        let tasks = running.into_iter().filter_map(|(_, task)| task);
        tokio::time::timeout(deadline, futures::future::join_all(tasks))
            .await
            .is_ok()
    }
}

impl<S: Session> Entries<S> {
    fn check(&self, max: usize) -> Result<(), S::TooMany> {
        let taken = self.active.len() + self.pending;
        if taken >= max {
            Err(S::too_many(taken))
        } else {
            Ok(())
        }
    }

    fn push(&mut self, session: &Arc<S>) {
        self.active.push(Running {
            session: Arc::clone(session),
            task: None,
        });
    }
}

/// A random id in the form of a call id.
pub fn new_id() -> String {
    interlink_protocol::call::CallId::from_bytes(rand::random()).to_string()
}

/// The session `id` of kind `S`, or the API's not-found error for it.
pub(super) fn find<S: Served>(state: &ApiState, id: &str) -> Result<Arc<S>, ApiError> {
    S::registry(state).get(id).ok_or_else(|| {
        ApiError::not_found(
            S::UNKNOWN_CODE,
            format!("no {} {id:?} on this node", S::NOUN),
        )
    })
}

/// `GET …/{id}`: the session's snapshot.
pub(super) async fn get<S: Served>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<S::View>, ApiError> {
    Ok(Json(find::<S>(&state, &id)?.view()))
}

/// `DELETE …/{id}`: ends the session (`202`), or says it has ended (`200`), with its
/// snapshot; the `ended` event follows.
pub(super) async fn end<S: Served>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = find::<S>(&state, &id)?;
    if session.is_ended() {
        return Ok((StatusCode::OK, Json(session.view())).into_response());
    }
    session.end();
    Ok((StatusCode::ACCEPTED, Json(session.view())).into_response())
}

/// `GET …/{id}/events`: the session's events so far, then each as it happens, as
/// server-sent events; the stream ends after `ended`. A browser that reconnects sends the
/// last id it saw (`Last-Event-ID`) and gets only what followed.
pub(super) async fn events<S: Served>(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = find::<S>(&state, &id)?;
    Ok(super::events::stream(session.events(), &headers).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    #[derive(Debug)]
    struct Probe {
        id: String,
        end: watch::Sender<bool>,
    }

    impl Session for Probe {
        type TooMany = usize;
        const RECENT: usize = 2;

        fn id(&self) -> &str {
            &self.id
        }

        fn too_many(taken: usize) -> usize {
            taken
        }
    }

    fn probe(id: &str) -> Arc<Probe> {
        Arc::new(Probe {
            id: id.into(),
            end: watch::Sender::new(false),
        })
    }

    fn ids(sessions: &[Arc<Probe>]) -> Vec<&str> {
        sessions.iter().map(|s| s.id()).collect()
    }

    #[test]
    fn places_and_sessions_share_the_bound() {
        let sessions = Sessions::<Probe>::new(2, None);
        let place = sessions.hold_place().unwrap();
        sessions.insert(&probe("a")).unwrap();
        assert_eq!(sessions.insert(&probe("b")), Err(2));
        assert_eq!(sessions.check_capacity(), Err(2));
        drop(place);
        assert_eq!(sessions.check_capacity(), Ok(()));
        let place = sessions.hold_place().unwrap();
        sessions.fill(place, &probe("b"));
        // The filled place is the session's now: dropping it gave nothing back.
        assert_eq!(sessions.hold_place().err(), Some(2));
        assert_eq!(ids(&sessions.active()), ["a", "b"]);
    }

    #[test]
    fn ended_sessions_are_found_among_the_last_few() {
        let sessions = Sessions::<Probe>::new(8, None);
        for id in ["a", "b", "c", "d"] {
            sessions.insert(&probe(id)).unwrap();
        }
        for id in ["a", "b", "c"] {
            sessions.retire(id);
        }
        assert_eq!(ids(&sessions.active()), ["d"]);
        assert!(sessions.get("a").is_none());
        assert_eq!(
            sessions.get("b").map(|s| s.id().to_owned()).as_deref(),
            Some("b")
        );
        assert!(sessions.get("d").is_some());
        assert_eq!(sessions.check_capacity(), Ok(()));
    }

    #[tokio::test]
    async fn ending_all_asks_each_and_waits_for_its_task() {
        let sessions = Sessions::<Probe>::new(8, None);
        for id in ["a", "b"] {
            let session = probe(id);
            sessions.insert(&session).unwrap();
            let (registry, mut end) = (sessions.clone(), session.end.subscribe());
            let id = id.to_owned();
            sessions.spawn(&session, async move {
                let _ = end.wait_for(|ended| *ended).await;
                registry.retire(&id);
            });
        }
        let ended = sessions
            .end_all(Duration::from_secs(5), |s| {
                s.end.send_replace(true);
            })
            .await;
        assert!(ended);
        assert!(sessions.active().is_empty());
    }
}
