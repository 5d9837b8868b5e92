//! The handlers of `/api/node` and `/api/calls…` (those of one call by id are
//! [`super::sessions`]'s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::calls::{CallEntry, CallState, CallView};
use super::error::{ApiError, ApiJson};
use super::gateways::{self, not_covered, parse_destination};
use super::sessions;
use crate::calls::caller::{self, CallError, CallOptions};
use crate::identity;

/// The longest SDP offer taken: the invite that carries it is at most 64 KiB.
const MAX_SDP_BYTES: usize = 32 * 1024;

/// `GET /api/node`
#[derive(Debug, Serialize)]
pub(super) struct NodeInfo {
    peer_id: String,
    version: &'static str,
    policy: String,
    connected_peers: usize,
    calls_in_progress: usize,
    max_calls: usize,
}

pub(super) async fn node(State(state): State<Arc<ApiState>>) -> Json<NodeInfo> {
    let connected_peers = state
        .caller
        .client
        .status()
        .await
        .map(|s| s.connected_peers)
        .unwrap_or(0);
    Json(NodeInfo {
        peer_id: state.caller.client.local_peer_id().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        policy: state.settings.policy.kind.to_string(),
        connected_peers,
        calls_in_progress: state.calls.active().len(),
        max_calls: state.settings.max_calls,
    })
}

/// `POST /api/calls`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCall {
    destination: String,
    /// A gateway's peer id, or `recommended` (the default).
    #[serde(default)]
    gateway: Option<String>,
    /// The browser's SDP offer, its ICE candidates gathered.
    sdp_offer: String,
    /// `cheapest`, `best-quality` or `balanced` [default: the node's].
    #[serde(default)]
    policy: Option<String>,
    /// Try the next-ranked gateways if the chosen one fails (default true).
    #[serde(default)]
    failover: Option<bool>,
    /// Answer only once the call is answered, with the SDP answer (default false: at once,
    /// and the answer comes as an event).
    #[serde(default)]
    wait_for_answer: Option<bool>,
}

/// A call's snapshot and where its events are.
#[derive(Debug, Serialize)]
pub(super) struct CallCreated {
    #[serde(flatten)]
    call: CallView,
    events: String,
}

pub(super) async fn start_call(
    State(state): State<Arc<ApiState>>,
    ApiJson(request): ApiJson<NewCall>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let destination = parse_destination(Some(&request.destination))?;
    let policy = state.policy(request.policy.as_deref())?;
    check_sdp_offer(&request.sdp_offer)?;
    let chosen = match request.gateway.as_deref().map(str::trim) {
        None | Some("") | Some("recommended") => None,
        Some(text) => Some(text.parse::<PeerId>().map_err(|_| {
            ApiError::bad_request(
                "invalid_gateway",
                format!("{text:?} is neither a gateway's peer id nor \"recommended\""),
            )
        })?),
    };
    state.calls.check_capacity().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_calls",
            e.to_string(),
        )
    })?;

    let options = CallOptions {
        kinds: state.settings.kinds.clone(),
        policy,
        setup_deadline: state.settings.setup_deadline,
        timers: state.settings.timers,
        ..CallOptions::new(destination.clone())
    };
    let found = gateways::discover(&state, &destination, &options.policy).await?;
    let mut plan = match caller::plan_found(&state.caller, &options, &found, started).await {
        Ok(plan) => plan,
        Err(CallError::NotCovered { offers, .. }) => {
            return Err(not_covered(&destination, offers, &[]));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "lookup_failed",
                e.to_string(),
            ));
        }
    };
    if let Some(peer) = chosen {
        let index = plan
            .candidates
            .iter()
            .position(|c| identity::peer_id(&c.offer.provider()) == Some(peer))
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_gateway",
                    format!("{peer} is not among the services that can reach {destination}"),
                )
            })?;
        let first = plan.candidates.remove(index);
        plan.candidates.insert(0, first);
    }
    if !request.failover.unwrap_or(true) {
        plan.candidates.truncate(1);
    }

    let entry = state
        .calls
        .start(
            state.caller.clone(),
            options,
            plan,
            request.sdp_offer,
            started,
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_calls",
                e.to_string(),
            )
        })?;
    tracing::info!(call = %entry.id(), %destination, "browser call started");
    if request.wait_for_answer.unwrap_or(false) {
        wait_answered(&entry, state.settings.setup_deadline).await?;
    }
    let created = CallCreated {
        events: format!("/api/calls/{}/events", entry.id()),
        call: entry.view(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A usable offer: an SDP session with an audio stream, of a size the invite can carry.
pub(super) fn check_sdp_offer(sdp: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::bad_request("invalid_sdp", why.to_owned());
    if sdp.len() > MAX_SDP_BYTES {
        return Err(invalid(&format!(
            "the SDP offer is over {MAX_SDP_BYTES} bytes"
        )));
    }
    if !sdp.starts_with("v=0") {
        return Err(invalid("the SDP offer must start with v=0"));
    }
    if !sdp.lines().any(|line| line.starts_with("m=audio ")) {
        return Err(invalid("the SDP offer has no audio stream (m=audio)"));
    }
    Ok(())
}

/// Waits until the call is answered; an error if it ends first.
async fn wait_answered(entry: &CallEntry, setup_deadline: Duration) -> Result<(), ApiError> {
    let mut view = entry.watch();
    let settled = tokio::time::timeout(
        setup_deadline + Duration::from_secs(5),
        view.wait_for(|v| {
            !matches!(
                v.state,
                CallState::Inviting | CallState::Trying | CallState::Ringing
            )
        }),
    )
    .await;
    let ended = match settled {
        Ok(Ok(view)) => view.ended.clone(),
        _ => None,
    };
    match ended {
        Some(end) if !end.answered => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "not_answered",
            end.cause,
        )),
        _ => Ok(()),
    }
}

/// `GET /api/calls`: the calls in progress.
#[derive(Debug, Serialize)]
pub(super) struct CallList {
    calls: Vec<CallView>,
}

pub(super) async fn list_calls(State(state): State<Arc<ApiState>>) -> Json<CallList> {
    Json(CallList {
        calls: state.calls.active().iter().map(|c| c.view()).collect(),
    })
}

/// `POST /api/calls/{id}/media`: the browser received its first media packet.
pub(super) async fn media_started(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let entry = sessions::find::<CallEntry>(&state, &id)?;
    if entry.is_ended() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "call_ended",
            format!("call {id} has ended"),
        ));
    }
    entry.media_started();
    Ok(Json(entry.view()))
}
