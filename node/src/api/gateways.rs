//! `GET /api/gateways`: the services that can reach a number, ranked, with why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use interlink_protocol::E164;
use interlink_protocol::ranking::{self, Policy, PolicyKind};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiQuery};
use crate::discovery::{self, Discovery, DiscoveryError, Query};
use crate::listing::{self, ExcludedRow, GatewayRow};
use crate::network::NetworkError;

/// How long a lookup may take before the API gives up on it.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewaysQuery {
    destination: Option<String>,
    policy: Option<String>,
}

/// The ranked services for a destination.
#[derive(Debug, Serialize)]
pub(super) struct GatewaysAnswer {
    destination: String,
    country: String,
    policy: String,
    lookup_ms: f64,
    offers_found: usize,
    /// Offers that can carry the call within the policy's limits at the best-informed
    /// holder: more than `offers_found` means the list holds the best of them only.
    offers_matching: usize,
    /// The list holds only the best of `offers_matching`.
    cut: bool,
    /// How old the answer is, when it came from this node's cache (a refresh runs).
    cached_age_ms: Option<f64>,
    /// Best first; the first is the recommendation.
    gateways: Vec<GatewayRow>,
    recommended: Recommendation,
    /// Offers found that cannot carry the call, with why.
    excluded: Vec<ExcludedRow>,
}

/// Which service is recommended and why.
#[derive(Debug, Serialize)]
struct Recommendation {
    name: String,
    peer_id: String,
    /// The ranking's reasons, in words.
    why: Vec<String>,
    /// The score and its parts.
    breakdown: String,
}

pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    ApiQuery(query): ApiQuery<GatewaysQuery>,
) -> Result<Json<GatewaysAnswer>, ApiError> {
    let destination = parse_destination(query.destination.as_deref())?;
    let policy = state.policy(query.policy.as_deref())?;
    let started = Instant::now();
    let found = discover(&state, &destination, &policy).await?;
    let history = state
        .caller
        .client
        .metrics()
        .store_result_or_default("history", state.caller.store.history().await);
    let ranking = ranking::rank(
        &found.offers,
        &destination,
        &found.measurements,
        &history,
        &policy,
    );
    let gateways = listing::rows(&ranking);
    let excluded = listing::excluded(&ranking);
    let Some(best) = gateways.first() else {
        return Err(not_covered(&destination, found.offers.len(), &excluded));
    };
    let recommended = Recommendation {
        name: best.name.clone(),
        peer_id: best.peer_id.clone(),
        why: best.reasons.clone(),
        breakdown: best.breakdown.clone(),
    };
    Ok(Json(GatewaysAnswer {
        destination: destination.to_string(),
        country: destination.country_code().name().to_owned(),
        policy: policy.kind.to_string(),
        lookup_ms: started.elapsed().as_secs_f64() * 1000.0,
        offers_found: found.offers.len(),
        offers_matching: found.stats.matching.max(found.offers.len()),
        cut: found.stats.cut(found.offers.len()),
        cached_age_ms: found.stats.cached.map(|age| age.as_secs_f64() * 1000.0),
        gateways,
        recommended,
        excluded,
    }))
}

/// The destination of a request, or why it is not a number.
pub(super) fn parse_destination(text: Option<&str>) -> Result<E164, ApiError> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_destination",
            "give the number to call, e.g. +44 7700 900123",
        ));
    }
    E164::parse(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_destination",
            format!("{text:?} is not a phone number in international form: {e}"),
        )
    })
}

/// The error for a destination no service covers.
pub(super) fn not_covered(destination: &E164, offers: usize, excluded: &[ExcludedRow]) -> ApiError {
    let country = destination.country_code();
    let detail = match (offers, excluded) {
        (0, _) => format!(
            "no service is published for +{country} ({})",
            country.name()
        ),
        (_, [first, ..]) => format!(
            "{offers} service(s) found for +{country}, none covers it ({}: {})",
            first.name, first.reason
        ),
        _ => format!("{offers} service(s) found for +{country}, none covers it"),
    };
    ApiError::not_found(
        "not_covered",
        format!("No service can reach {destination}: {detail}."),
    )
}

/// Discovers the best offers for `destination` under `policy`, from the node's cache if
/// it asked lately (the list the page shows, and then calls from), joining the network
/// again first if the node has no connection left (idle connections close; the node
/// stays a member).
pub(super) async fn discover(
    state: &ApiState,
    destination: &E164,
    policy: &Policy,
) -> Result<Discovery, ApiError> {
    let query = Query {
        policy: policy.clone(),
        measure_rtt: true,
        ..Query::new(destination.clone(), state.settings.kinds.clone())
    };
    let client = &state.caller.client;
    let lookup = async {
        match discovery::discover(client, &query).await {
            Err(DiscoveryError::NoPeers) if !state.settings.bootstrap.is_empty() => {
                client
                    .join(&state.settings.bootstrap, LOOKUP_DEADLINE / 2)
                    .await?;
                discovery::discover(client, &query).await
            }
            other => other,
        }
    };
    match tokio::time::timeout(LOOKUP_DEADLINE, lookup).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(DiscoveryError::NoPeers | DiscoveryError::Network(NetworkError::NoPeers))) => {
            Err(unreachable())
        }
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "lookup_failed",
            format!("the lookup failed: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "lookup_timeout",
            format!(
                "the network did not answer within {} s",
                LOOKUP_DEADLINE.as_secs()
            ),
        )),
    }
}

/// The error for a node that reaches no peer.
pub(super) fn unreachable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unreachable",
        "this node is not connected to the network: no peer could be reached",
    )
}

impl ApiState {
    /// The node's policy, with the kind a request names.
    pub(super) fn policy(&self, kind: Option<&str>) -> Result<Policy, ApiError> {
        let mut policy = self.settings.policy.clone();
        if let Some(kind) = kind.filter(|k| !k.is_empty()) {
            policy.kind = kind
                .parse::<PolicyKind>()
                .map_err(|e| ApiError::bad_request("invalid_policy", e.to_string()))?;
        }
        Ok(policy)
    }
}
