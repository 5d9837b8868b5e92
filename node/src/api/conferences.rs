//! The handlers of `/api/conferences…`: a browser joins a conference room with its join
//! token, through this node.
//!
//! The node reads and verifies the token, finds the token's bridge in the DHT, and joins
//! the room over libp2p with the browser's SDP offer; the bridge's SDP answer goes back to
//! the browser, whose WebRTC then connects to the bridge directly. The node holds the
//! membership ([`super::memberships`]) until the browser leaves, the room ends, the page
//! goes away or the node stops. The handlers of one membership by id are
//! [`super::sessions`]'s.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use interlink_protocol::conference::RefusalReason;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::calls::GatewayRef;
use super::error::{ApiError, ApiJson};
use super::memberships::{Admitted, MembershipView};
use super::routes::check_sdp_offer;
use crate::clock;
use crate::conference::participant::{self, JoinError, LocateError};
use crate::identity;

/// How long to look for the token's bridge in the DHT.
const OFFER_LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

/// `POST /api/conferences/join`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinRequest {
    /// The join token as `interlink conference reserve` prints it (hexadecimal).
    token: String,
    /// The browser's SDP offer, its ICE candidates gathered.
    sdp_offer: String,
}

/// A membership's snapshot and where its events are.
#[derive(Debug, Serialize)]
pub(super) struct Joined {
    #[serde(flatten)]
    membership: MembershipView,
    events: String,
}

pub(super) async fn join(
    State(state): State<Arc<ApiState>>,
    ApiJson(request): ApiJson<JoinRequest>,
) -> Result<Response, ApiError> {
    check_sdp_offer(&request.sdp_offer)?;
    let token = participant::parse_token(&request.token, clock::now())
        .map_err(|e| ApiError::bad_request("invalid_token", e.to_string()))?;
    let place = state.memberships.hold_place().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_memberships",
            e.to_string(),
        )
    })?;
    let client = &state.caller.client;
    let (peer, offer) = participant::locate_bridge(client, &token, OFFER_LOOKUP_DEADLINE)
        .await
        .map_err(|e| match e {
            LocateError::NoOffer(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "bridge_not_found", e.to_string())
            }
            _ => ApiError::bad_request("invalid_token", e.to_string()),
        })?;
    let bridge = GatewayRef {
        name: offer.offer().display_name.clone(),
        peer_id: peer.to_string(),
    };
    let (sdp_answer, membership) = participant::join(
        client,
        peer,
        offer.offer().addresses.clone(),
        token.as_bytes(),
        request.sdp_offer,
    )
    .await
    .map_err(|e| join_error(&bridge.name, &e))?;
    let details = token.token();
    let entry = state.memberships.start(
        place,
        membership,
        Admitted {
            room_id: details.room_id.to_string(),
            bridge,
            organiser: identity::peer_id(&details.organiser)
                .map(|p| p.to_string())
                .unwrap_or_else(|| details.organiser.to_string()),
            max_participants: details.max_participants,
            sdp_answer,
            expires_at_ms: details.expires_at.0,
        },
    );
    tracing::info!(membership = %entry.id(), room = %details.room_id, "browser joined a conference");
    let joined = Joined {
        events: format!("/api/conferences/memberships/{}/events", entry.id()),
        membership: entry.view(),
    };
    Ok((StatusCode::CREATED, Json(joined)).into_response())
}

/// A failed join as the API reports it: the bridge's refusal reason, with a status and a
/// code a page can branch on.
fn join_error(bridge: &str, error: &JoinError) -> ApiError {
    let (status, code) = match error {
        JoinError::Refused(reason) => match reason {
            RefusalReason::InvalidToken => (StatusCode::FORBIDDEN, "invalid_token"),
            RefusalReason::Unauthorised => (StatusCode::FORBIDDEN, "unauthorised"),
            RefusalReason::RoomClosed => (StatusCode::NOT_FOUND, "room_closed"),
            RefusalReason::RoomFull { .. } => (StatusCode::CONFLICT, "room_full"),
            RefusalReason::AlreadyJoined => (StatusCode::CONFLICT, "already_joined"),
            RefusalReason::MediaFailed => (StatusCode::BAD_REQUEST, "media_failed"),
            RefusalReason::OverCapacity | RefusalReason::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "bridge_unavailable")
            }
            _ => (StatusCode::BAD_GATEWAY, "refused"),
        },
        JoinError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "bridge_timeout"),
        _ => (StatusCode::BAD_GATEWAY, "bridge_unreachable"),
    };
    let message = match error {
        JoinError::Refused(reason) => format!("{bridge} refused to let you in: {reason}"),
        other => format!("{bridge}: {other}"),
    };
    ApiError::new(status, code, message)
}

/// `GET /api/conferences/memberships`: the rooms this node is in through the API.
#[derive(Debug, Serialize)]
pub(super) struct MembershipList {
    memberships: Vec<MembershipView>,
}

pub(super) async fn list(State(state): State<Arc<ApiState>>) -> Json<MembershipList> {
    Json(MembershipList {
        memberships: state
            .memberships
            .active()
            .iter()
            .map(|m| m.view())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_bridges_reason() {
        let full = join_error(
            "Mixer",
            &JoinError::Refused(RefusalReason::RoomFull { max: 3 }),
        );
        assert_eq!(
            (full.status, full.code),
            (StatusCode::CONFLICT, "room_full")
        );
        assert_eq!(
            full.message,
            "Mixer refused to let you in: the room is full (3 participants reserved)"
        );
        let closed = join_error("Mixer", &JoinError::Refused(RefusalReason::RoomClosed));
        assert_eq!(
            (closed.status, closed.code),
            (StatusCode::NOT_FOUND, "room_closed")
        );
        assert!(closed.message.ends_with("the room is not open"));
        let forged = join_error("Mixer", &JoinError::Refused(RefusalReason::InvalidToken));
        assert_eq!(forged.code, "invalid_token");
        assert_eq!(
            join_error("Mixer", &JoinError::Timeout).code,
            "bridge_timeout"
        );
    }
}
