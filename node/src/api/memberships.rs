//! Conference rooms joined through the API for a browser: the node holds the membership
//! (its conference stream to the bridge) while the browser's media goes to the bridge
//! directly.
//!
//! Each membership has an entry: a snapshot ([`MembershipView`]) that
//! `GET /api/conferences/memberships/{id}` returns, and the log of its events
//! ([`MembershipEvent`]: joined, leaving, ended) that its event stream replays and then
//! streams. One task per membership waits for the first of: the browser leaves (`DELETE`),
//! the bridge closes the room, the stream to the bridge breaks (as it does when the bridge
//! drops a participant whose media ended), the page goes away (every event stream closed
//! for the orphan deadline), or the node stops. An ended membership moves to a short list
//! of recent ones, so that a page that reconnects still learns how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::ApiState;
use super::calls::GatewayRef;
use super::events::{self, EventLog, LoggedEvent};
use super::sessions::{self, Place, Served, Session, Sessions};
use crate::clock;
use crate::conference::participant::{Membership, MembershipEnd};

/// Ended memberships kept for a late look at how they ended.
const RECENT_MEMBERSHIPS: usize = 32;
/// Events kept per membership: it has three.
const MAX_EVENTS: usize = 16;
/// Events queued for a slow event stream before it is cut.
const LIVE_EVENTS: usize = 16;

/// Where a membership stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipState {
    /// In the room.
    Joined,
    /// Telling the bridge it leaves.
    Leaving,
    Ended,
}

/// How a membership ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipEndView {
    /// `left` (the browser left), `room_ended` (the organiser ended the room, or its time
    /// ran out), `lost` (the bridge closed the stream or could not be reached),
    /// `abandoned` (the page went away) or `node_stopped`.
    pub outcome: &'static str,
    /// Why, for people.
    pub cause: String,
}

/// A membership's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipView {
    pub membership_id: String,
    pub room_id: String,
    pub bridge: GatewayRef,
    /// The organiser's peer id.
    pub organiser: String,
    /// The most participants the room was reserved for.
    pub max_participants: u32,
    pub state: MembershipState,
    /// The bridge's SDP answer, for the browser.
    pub sdp_answer: String,
    pub joined_at_ms: u64,
    /// When the room's reservation runs out.
    pub expires_at_ms: u64,
    pub ended: Option<MembershipEndView>,
}

/// What happened to a membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MembershipEventKind {
    Joined { room_id: String, bridge: String },
    Leaving,
    Ended(MembershipEndView),
}

/// One event of a membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipEvent {
    /// 1, 2, …: the event stream's id.
    pub seq: u64,
    pub membership_id: String,
    /// Since the join was asked for.
    pub elapsed_ms: u64,
    #[serde(flatten)]
    pub kind: MembershipEventKind,
}

impl LoggedEvent for MembershipEvent {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn name(&self) -> &'static str {
        match self.kind {
            MembershipEventKind::Joined { .. } => "joined",
            MembershipEventKind::Leaving => "leaving",
            MembershipEventKind::Ended(_) => "ended",
        }
    }

    fn is_end(&self) -> bool {
        matches!(self.kind, MembershipEventKind::Ended(_))
    }
}

/// Why the node leaves a room it was not closed out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaveCause {
    /// The browser asked.
    Asked,
    /// The page closed its event streams and did not come back.
    Abandoned,
    NodeStopping,
}

/// One room joined through the API.
#[derive(Debug)]
pub struct MembershipEntry {
    id: String,
    started: Instant,
    view: watch::Sender<MembershipView>,
    log: Arc<EventLog<MembershipEvent>>,
    leave: watch::Sender<Option<LeaveCause>>,
}

impl MembershipEntry {
    /// The membership's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The membership's snapshot now.
    pub fn view(&self) -> MembershipView {
        self.view.borrow().clone()
    }

    /// The membership's events, for its event streams.
    pub fn events(&self) -> &Arc<EventLog<MembershipEvent>> {
        &self.log
    }

    /// Whether it is over.
    pub fn is_ended(&self) -> bool {
        self.view.borrow().state == MembershipState::Ended
    }

    /// Asks to leave the room; `ended` follows once the bridge is told.
    pub fn leave(&self) {
        self.ask_to_leave(LeaveCause::Asked);
    }

    fn ask_to_leave(&self, cause: LeaveCause) {
        self.leave.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(cause);
                true
            } else {
                false
            }
        });
    }

    fn push(&self, kind: MembershipEventKind) {
        self.log.push(|seq| MembershipEvent {
            seq,
            membership_id: self.id.clone(),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind,
        });
    }
}

/// Why a membership could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this node is in {0} conference room(s) through the API, the most it joins at once (api.max_memberships)"
)]
pub struct TooManyMemberships(pub usize);

/// What a membership is about, known once the bridge has admitted it.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub room_id: String,
    pub bridge: GatewayRef,
    pub organiser: String,
    pub max_participants: u32,
    pub sdp_answer: String,
    pub expires_at_ms: u64,
}

/// The rooms joined through the API.
pub type Memberships = Sessions<MembershipEntry>;

impl Session for MembershipEntry {
    type TooMany = TooManyMemberships;
    const RECENT: usize = RECENT_MEMBERSHIPS;

    fn id(&self) -> &str {
        &self.id
    }

    fn too_many(taken: usize) -> TooManyMemberships {
        TooManyMemberships(taken)
    }
}

impl Served for MembershipEntry {
    type View = MembershipView;
    type Event = MembershipEvent;
    const NOUN: &'static str = "conference membership";
    const UNKNOWN_CODE: &'static str = "unknown_membership";

    fn view(&self) -> MembershipView {
        MembershipEntry::view(self)
    }

    fn is_ended(&self) -> bool {
        MembershipEntry::is_ended(self)
    }

    fn events(&self) -> &Arc<EventLog<MembershipEvent>> {
        MembershipEntry::events(self)
    }

    /// Leaves the room; `ended` follows once the bridge is told.
    fn end(&self) {
        self.leave();
    }

    fn registry(state: &ApiState) -> &Memberships {
        &state.memberships
    }
}

impl Memberships {
    /// Registers the admitted `membership` in the place held for it, and follows it until
    /// it ends.
    pub fn start(
        &self,
        place: Place<MembershipEntry>,
        membership: Membership,
        admitted: Admitted,
    ) -> Arc<MembershipEntry> {
        let id = sessions::new_id();
        let entry = Arc::new(MembershipEntry {
            id: id.clone(),
            started: place.started(),
            view: watch::Sender::new(MembershipView {
                membership_id: id,
                room_id: admitted.room_id.clone(),
                bridge: admitted.bridge.clone(),
                organiser: admitted.organiser,
                max_participants: admitted.max_participants,
                state: MembershipState::Joined,
                sdp_answer: admitted.sdp_answer,
                joined_at_ms: clock::unix_millis(),
                expires_at_ms: admitted.expires_at_ms,
                ended: None,
            }),
            log: EventLog::new(MAX_EVENTS, LIVE_EVENTS),
            leave: watch::Sender::new(None),
        });
        entry.push(MembershipEventKind::Joined {
            room_id: admitted.room_id,
            bridge: admitted.bridge.name,
        });
        // The place becomes the membership.
        self.fill(place, &entry);
        self.spawn(&entry, drive(self.clone(), Arc::clone(&entry), membership));
        entry
    }

    /// Leaves every room and waits, up to `deadline`, for the bridges to be told.
    pub async fn leave_all(&self, deadline: Duration) {
        let leave = |entry: &MembershipEntry| entry.ask_to_leave(LeaveCause::NodeStopping);
        if !self.end_all(deadline, leave).await {
            tracing::warn!(
                "conference rooms joined through the API were not left within {}s",
                deadline.as_secs()
            );
        }
    }
}

/// What ended the membership.
enum Ending {
    Closed(MembershipEnd),
    Leave,
    Abandoned,
}

/// Follows one membership to its end.
async fn drive(memberships: Memberships, entry: Arc<MembershipEntry>, mut membership: Membership) {
    let mut leave = entry.leave.subscribe();
    let streams = entry.log.streams();
    let orphan_after = memberships.orphan_after();
    let orphaned = async move {
        match orphan_after {
            Some(after) if events::orphaned(streams, after).await => {}
            _ => std::future::pending::<()>().await,
        }
    };
    let ending = tokio::select! {
        end = membership.closed() => Ending::Closed(end),
        _ = leave.wait_for(Option::is_some) => Ending::Leave,
        () = orphaned => Ending::Abandoned,
    };
    let end = match ending {
        Ending::Closed(MembershipEnd::RoomEnded) => MembershipEndView {
            outcome: "room_ended",
            cause: "the room has ended".into(),
        },
        Ending::Closed(MembershipEnd::Lost) => MembershipEndView {
            outcome: "lost",
            cause: "the bridge closed the connection (it stopped, or the audio ended)".into(),
        },
        Ending::Leave | Ending::Abandoned => {
            if matches!(ending, Ending::Abandoned) {
                tracing::info!(membership = %entry.id, "the page of a conference went away; leaving");
                entry.ask_to_leave(LeaveCause::Abandoned);
            }
            entry
                .view
                .send_modify(|v| v.state = MembershipState::Leaving);
            entry.push(MembershipEventKind::Leaving);
            membership.leave().await;
            let cause = *entry.leave.borrow();
            match cause {
                Some(LeaveCause::Abandoned) => MembershipEndView {
                    outcome: "abandoned",
                    cause: "the page went away".into(),
                },
                Some(LeaveCause::NodeStopping) => MembershipEndView {
                    outcome: "node_stopped",
                    cause: "the node is stopping".into(),
                },
                Some(LeaveCause::Asked) | None => MembershipEndView {
                    outcome: "left",
                    cause: "you left the room".into(),
                },
            }
        }
    };
    tracing::info!(membership = %entry.id, outcome = end.outcome, "conference membership ended");
    // Out of the list before the event that says it ended.
    memberships.retire(&entry.id);
    entry.view.send_modify(|v| {
        v.state = MembershipState::Ended;
        v.ended = Some(end.clone());
    });
    entry.push(MembershipEventKind::Ended(end));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let memberships = Memberships::new(2, None);
        let first = memberships.hold_place().unwrap();
        let _second = memberships.hold_place().unwrap();
        assert_eq!(memberships.hold_place().err(), Some(TooManyMemberships(2)));
        drop(first);
        assert!(memberships.hold_place().is_ok());
    }

    #[test]
    fn events_serialise_with_their_name() {
        let event = MembershipEvent {
            seq: 2,
            membership_id: "m".into(),
            elapsed_ms: 5,
            kind: MembershipEventKind::Ended(MembershipEndView {
                outcome: "room_ended",
                cause: "the room has ended".into(),
            }),
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["event"], "ended");
        assert_eq!(json["outcome"], "room_ended");
        assert_eq!(event.name(), "ended");
        assert!(event.is_end());
    }
}
