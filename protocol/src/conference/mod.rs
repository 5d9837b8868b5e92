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
//! [`messages::ConferenceFrame`] is what travels on a conference stream.

pub mod messages;
pub mod ranking;
pub mod receipt;
pub mod reservation;
pub mod terms;

pub use messages::{ConferenceFrame, RefusalReason, RoomEvent};
pub use receipt::{
    Attendance, RoomReceipt, RoomReceiptDispute, SettledRoomReceipt, SignedRoomReceipt,
};
pub use reservation::{JoinToken, Reservation, RoomId, SignedJoinToken, SignedReservation};
pub use terms::{ConferenceTariff, ConferenceTerms, InvalidRegion, Region};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::envelope::{self, Envelope};
use crate::identity::{ProviderId, SecretKey};
use crate::time::Timestamp;

/// Why bytes are not a valid signed conference message, or a message cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConferenceError {
    #[error("{size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the message is truncated")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("signed by {signer}, not by {expected}")]
    WrongSigner {
        signer: ProviderId,
        expected: ProviderId,
    },
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

impl From<CodecError> for ConferenceError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::TooLarge { size, limit } => ConferenceError::TooLarge { size, limit },
            CodecError::Truncated => ConferenceError::Truncated,
            CodecError::Malformed(reason) => ConferenceError::Malformed(reason),
        }
    }
}

/// Encodes and signs `value` under `domain`.
fn seal<T: Serialize, const LIMIT: usize>(
    domain: &[u8],
    value: &T,
    key: &SecretKey,
) -> Result<Vec<u8>, ConferenceError> {
    let body = codec::encode::<_, LIMIT>(value)?;
    Ok(envelope::seal(domain, &body, key))
}

/// Checks size and signature under `domain` and decodes; returns the signer and value.
fn open<T: Serialize + DeserializeOwned, const LIMIT: usize>(
    domain: &[u8],
    bytes: &[u8],
) -> Result<(ProviderId, T), ConferenceError> {
    if bytes.len() > LIMIT {
        return Err(ConferenceError::TooLarge {
            size: bytes.len(),
            limit: LIMIT,
        });
    }
    let envelope = Envelope::split(bytes).ok_or(ConferenceError::Truncated)?;
    let value: T = codec::decode::<_, LIMIT>(envelope.body)?;
    if !envelope.verify(domain) {
        return Err(ConferenceError::BadSignature);
    }
    Ok((envelope.signer, value))
}

fn check_signer(signer: ProviderId, expected: ProviderId) -> Result<(), ConferenceError> {
    if signer == expected {
        Ok(())
    } else {
        Err(ConferenceError::WrongSigner { signer, expected })
    }
}
