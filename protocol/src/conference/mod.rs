//! Conferences: rooms on a discovered conference bridge (MCU), paid for by an organiser.
//!
//! The flow, with every message signed by the side that commits to it:
//!
//! 1. A bridge publishes a [`crate::ServiceOffer`] of kind
//!    [`crate::ServiceKind::Conference`] with [`ConferenceTerms`] (rooms, participants per
//!    room, [`ConferenceTariff`]) and announces itself under its region
//!    ([`crate::DhtKey::RegionProviders`]). Organisers rank such offers with
//!    [`ranking::rank_conferences`].
//! 2. The organiser sends a [`Reservation`] signed with its key: the room id it chose,
//!    the offer and price it accepts, the largest size of the room.
//! 3. The bridge answers with a [`JoinToken`] signed with its key, which the organiser
//!    hands to the participants. The bridge admits whoever shows a valid token of an open
//!    room while the room has fewer participants than reserved.
//! 4. When the organiser ends the room, the bridge signs one [`RoomReceipt`] (who was in
//!    the room, from when to when, billed seconds, amount); the organiser checks it
//!    against the reservation and the joins and leaves it was told of, and countersigns
//!    ([`SettledRoomReceipt`]).
//!
//! [`messages::ConferenceFrame`] is what travels on a conference stream; [`room::Room`] is
//! the bridge's room as a state machine without IO (who is let in, who was in and when,
//! when the room ends, its receipt and countersignature).

pub mod messages;
pub mod ranking;
pub mod receipt;
pub mod reservation;
pub mod room;
pub mod terms;

pub use messages::{ConferenceFrame, RefusalReason, RoomEvent};
pub use receipt::{
    Attendance, RoomReceipt, RoomReceiptDispute, SettledRoomReceipt, SignedRoomReceipt,
};
pub use reservation::{JoinToken, Reservation, RoomId, SignedJoinToken, SignedReservation};
pub use terms::{ConferenceTariff, ConferenceTerms, InvalidRegion, Region};

use crate::envelope;
use crate::time::Timestamp;

/// Why bytes are not a valid signed conference message, or a message cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConferenceError {
    /// Size, encoding, signature, or a signer that is not the one the message names.
    #[error(transparent)]
    Envelope(#[from] envelope::Error),
    #[error("invalid field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("expired at {expires_at} (now {now})")]
    Expired {
        expires_at: Timestamp,
        now: Timestamp,
    },
    #[error("sent at {sent_at}, too far from now ({now}): a replay or a wrong clock")]
    Stale { sent_at: Timestamp, now: Timestamp },
}
