//! The frames of a conference stream.
//!
//! Two kinds of stream go to a bridge. An organiser's: `Reserve` → `Reserved` (or
//! `Refused`), then `Event`s as participants join and leave, until the organiser sends
//! `End`; the bridge answers `Ended` with the signed receipt, and the organiser
//! `Countersigned` or `ReceiptRefused`. A participant's: `Join` → `Joined` with the SDP
//! answer (or `Refused`), then either side ends it: the participant with `Leave`, the
//! bridge with `Closed` when the room ends. And an organiser's request to end a room from
//! another process: `EndRoom` → `Ending` (or `Refused`).

use serde::{Deserialize, Serialize};

use crate::call::messages::MAX_SDP_BYTES;
use crate::codec::{self, CodecError};
use crate::conference::receipt::{MAX_ROOM_RECEIPT_BYTES, RoomReceiptDispute};
use crate::conference::reservation::RoomId;
use crate::conference::terms::ConferenceTariff;
use crate::identity::ProviderId;
use crate::time::Timestamp;

/// Largest frame on a conference stream.
pub const MAX_CONFERENCE_FRAME_BYTES: usize = 64 * 1024;

/// Why the bridge refuses a reservation or a join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The message is not signed by the peer that sent it, or cannot be read.
    #[error("unauthorised: the request is not signed by the peer that sent it")]
    Unauthorised,
    /// The join token is forged, another bridge's, or expired.
    #[error("the join token is not valid on this bridge")]
    InvalidToken,
    /// The token's room is not open here (never reserved, or already ended).
    #[error("the room is not open")]
    RoomClosed,
    /// The room already has as many participants as were reserved.
    #[error("the room is full ({max} participants reserved)")]
    RoomFull { max: u32 },
    /// The participant is in the room already.
    #[error("already in the room")]
    AlreadyJoined,
    /// Every room (or every participant slot) of the bridge is taken.
    #[error("the bridge has no room free")]
    OverCapacity,
    /// The accepted price or offer is not the bridge's current one.
    #[error("the price changed")]
    PriceChanged { current: Option<ConferenceTariff> },
    /// More participants than the bridge's rooms take.
    #[error("the bridge's rooms take at most {max} participants")]
    TooLarge { max: u32 },
    /// The room id is in use.
    #[error("the room id is taken")]
    RoomIdTaken,
    /// The bridge does not run conferences now (no offer, or withdrawn).
    #[error("the bridge offers no conference service now")]
    Unavailable,
    /// The participant's media could not be set up.
    #[error("the media could not be set up")]
    MediaFailed,
}

/// A join or leave the organiser is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomEvent {
    Joined {
        participant: ProviderId,
        at: Timestamp,
        /// Participants in the room after the join.
        present: u32,
    },
    Left {
        participant: ProviderId,
        at: Timestamp,
        present: u32,
    },
}

/// One frame of a conference stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConferenceFrame {
    /// Organiser → bridge: a signed reservation.
    Reserve(Vec<u8>),
    /// Bridge → organiser: the signed join token of the reserved room.
    Reserved { token: Vec<u8> },
    /// Participant → bridge: the join token and the participant's WebRTC SDP offer.
    Join { token: Vec<u8>, sdp_offer: String },
    /// Bridge → participant: admitted, with the SDP answer.
    Joined { sdp_answer: String },
    /// Bridge → organiser or participant: the request is refused.
    Refused(RefusalReason),
    /// Bridge → organiser: someone joined or left.
    Event(RoomEvent),
    /// Participant → bridge: leaving.
    Leave,
    /// Organiser → bridge: end the room.
    End,
    /// Bridge → participant: the room has ended.
    Closed,
    /// Bridge → organiser: the room has ended; its bridge-signed receipt.
    Ended { receipt: Vec<u8> },
    /// Organiser → bridge: the receipt countersigned.
    Countersigned(Vec<u8>),
    /// Organiser → bridge: the receipt is refused, and why.
    ReceiptRefused(RoomReceiptDispute),
    /// Organiser → bridge, on a stream of its own: end this room (the organiser's
    /// stream that reserved it gets the receipt). Only the room's organiser may.
    EndRoom(RoomId),
    /// Bridge → organiser: the room is ending; the receipt follows on the reserving stream.
    Ending,
}

impl ConferenceFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode::<_, MAX_CONFERENCE_FRAME_BYTES>(self)
    }

    /// Reads a frame, refusing one over the limits of its fields.
    pub fn decode(bytes: &[u8]) -> Result<ConferenceFrame, CodecError> {
        let frame: ConferenceFrame = codec::decode::<_, MAX_CONFERENCE_FRAME_BYTES>(bytes)?;
        let too_long = |what: &str, len: usize, limit: usize| {
            Err(CodecError::Malformed(format!(
                "{what} of {len} bytes, at most {limit}"
            )))
        };
        match &frame {
            ConferenceFrame::Join { sdp_offer: sdp, .. }
            | ConferenceFrame::Joined { sdp_answer: sdp }
                if sdp.len() > MAX_SDP_BYTES =>
            {
                too_long("SDP", sdp.len(), MAX_SDP_BYTES)
            }
            ConferenceFrame::Ended { receipt } | ConferenceFrame::Countersigned(receipt)
                if receipt.len() > MAX_ROOM_RECEIPT_BYTES + 96 =>
            {
                too_long("receipt", receipt.len(), MAX_ROOM_RECEIPT_BYTES)
            }
            _ => Ok(frame),
        }
    }

    /// The frame's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ConferenceFrame::Reserve(_) => "Reserve",
            ConferenceFrame::Reserved { .. } => "Reserved",
            ConferenceFrame::Join { .. } => "Join",
            ConferenceFrame::Joined { .. } => "Joined",
            ConferenceFrame::Refused(_) => "Refused",
            ConferenceFrame::Event(_) => "Event",
            ConferenceFrame::Leave => "Leave",
            ConferenceFrame::End => "End",
            ConferenceFrame::Closed => "Closed",
            ConferenceFrame::Ended { .. } => "Ended",
            ConferenceFrame::Countersigned(_) => "Countersigned",
            ConferenceFrame::ReceiptRefused(_) => "ReceiptRefused",
            ConferenceFrame::EndRoom(_) => "EndRoom",
            ConferenceFrame::Ending => "Ending",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_fields_are_refused() {
        let frames = [
            ConferenceFrame::Reserve(vec![1, 2, 3]),
            ConferenceFrame::Join {
                token: vec![4; 10],
                sdp_offer: "v=0".into(),
            },
            ConferenceFrame::Refused(RefusalReason::RoomFull { max: 4 }),
            ConferenceFrame::End,
        ];
        for frame in frames {
            let bytes = frame.encode().unwrap();
            assert_eq!(ConferenceFrame::decode(&bytes), Ok(frame));
        }
        let long = ConferenceFrame::Joined {
            sdp_answer: "x".repeat(MAX_SDP_BYTES + 1),
        };
        let bytes = long.encode().unwrap();
        assert!(matches!(
            ConferenceFrame::decode(&bytes),
            Err(CodecError::Malformed(_))
        ));
        assert!(ConferenceFrame::decode(&[200, 1, 2]).is_err());
    }
}
