//! What the node does, for Prometheus: one registry per node, served by [`MetricsServer`].
//!
//! [`Metrics`] is a cheap handle (an `Arc`) held by the network's event loop, the DHT
//! request limiter, the publisher, the caller and the gateway; each records what it sees
//! as it happens. The swarm's own events also go to `libp2p-metrics` (connections,
//! Kademlia, ping), registered in the same registry under `libp2p_`. [`MetricsServer`]
//! answers `GET /metrics` with the OpenMetrics text format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use libp2p::metrics::Recorder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

pub use crate::store::Role;
use crate::store::{ReceiptStatus, StoreError};

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Serve `GET /metrics` at all.
    pub enabled: bool,
    /// Where. The metrics say nothing secret but much about the node's traffic: keep them
    /// on loopback or a private address that only the Prometheus server reaches.
    pub listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histograms, in seconds: 1 ms to 1 min.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The limits of `[limits]` whose refusals are counted, as `limit` labels.
pub const LIMITS: [&str; 9] = [
    "connections",
    "blocked_peer",
    "dht_requests",
    "index_requests",
    "records_per_peer",
    "providers_per_peer",
    "call_invites",
    "pending_invites",
    "call_frame_size",
];

/// Upper bounds of the histograms of requests per lookup.
const REQUEST_BUCKETS: [f64; 8] = [2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0];
/// Upper bounds of the histograms of round trips per lookup.
const ROUND_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcomeLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleOutcomeLabels {
    role: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    role: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiptLabels {
    role: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    libp2p: libp2p::metrics::Metrics,
    peers_connected: Gauge,
    reachable: Gauge,
    routing_table_peers: Gauge,
    stored_records: Gauge,
    dht_queries: Family<QueryLabels, Counter>,
    dht_query_seconds: Histograms<KindLabel>,
    dht_inbound_requests: Family<KindLabel, Counter>,
    offers_published: Family<OutcomeLabel, Counter>,
    offers_validated: Family<SourceLabel, Counter>,
    offers_refused: Family<ReasonLabel, Counter>,
    provider_records_refused: Family<ReasonLabel, Counter>,
    limit_refusals: Family<LimitLabel, Counter>,
    calls: Family<RoleOutcomeLabels, Counter>,
    call_failovers: Counter,
    call_setup_seconds: Histograms<StageLabels>,
    calls_active: Family<RoleLabel, Gauge>,
    receipts_written: Family<ReceiptLabels, Counter>,
    calls_not_charged: Family<RoleLabel, Counter>,
    call_stream_errors: Family<ErrorLabel, Counter>,
    store_errors: Family<OperationLabel, Counter>,
    index_offers: Gauge,
    index_bytes: Gauge,
    index_requests: Family<KindLabel, Counter>,
    index_requests_failed: Counter,
    index_stores: Family<OutcomeLabel, Counter>,
    index_publications: Family<OutcomeLabel, Counter>,
    index_replicated: Counter,
    lookups: Family<SourceOutcomeLabels, Counter>,
    lookup_seconds: Histograms<SourceLabel>,
    lookup_requests: Histogram,
    lookup_rounds: Histogram,
    lookup_invalid_offers: Counter,
}

/// A node's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts a call as active for as long as it lives.
#[derive(Debug)]
pub struct ActiveCall {
    gauge: Gauge,
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// A new registry with every metric of the node, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        let r = registry.sub_registry_with_prefix("interlink");

        let peers_connected = Gauge::default();
        r.register(
            "peers_connected",
            "Peers with at least one open connection",
            peers_connected.clone(),
        );
        let reachable = Gauge::default();
        r.register(
            "reachable",
            "1 while an address of this node is confirmed reachable by others (configured, \
             dialled back by a peer, or a listen address of a local network), else 0",
            reachable.clone(),
        );
        let routing_table_peers = Gauge::default();
        r.register(
            "routing_table_peers",
            "Peers in the Kademlia routing table",
            routing_table_peers.clone(),
        );
        let stored_records = Gauge::default();
        r.register(
            "dht_stored_records",
            "Records (offers) this node stores for the DHT",
            stored_records.clone(),
        );
        let dht_queries = Family::default();
        r.register(
            "dht_queries",
            "Kademlia queries this node ran, by kind and outcome",
            dht_queries.clone(),
        );
        let dht_query_seconds: Histograms<KindLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "dht_query_seconds",
            "How long this node's Kademlia queries took, by kind",
            dht_query_seconds.clone(),
        );
        let dht_inbound_requests = Family::default();
        r.register(
            "dht_inbound_requests",
            "Kademlia requests from other peers that this node answered, by kind",
            dht_inbound_requests.clone(),
        );
        let offers_published = Family::default();
        r.register(
            "offers_published",
            "This gateway's own offers stored in the DHT (replicated: acknowledged by others)",
            offers_published.clone(),
        );
        let offers_validated = Family::default();
        r.register(
            "offers_validated",
            "Offers verified as valid: stored for others (put) or found by lookups (lookup)",
            offers_validated.clone(),
        );
        let offers_refused = Family::default();
        r.register(
            "offers_refused",
            "Offer records refused, by reason",
            offers_refused.clone(),
        );
        let provider_records_refused = Family::default();
        r.register(
            "provider_records_refused",
            "Provider records refused, by reason",
            provider_records_refused.clone(),
        );
        let limit_refusals = Family::default();
        r.register(
            "limit_refusals",
            "Connections, requests, records and call streams refused by a limit of [limits]",
            limit_refusals.clone(),
        );
        let calls = Family::default();
        r.register("calls", "Calls over, by role and outcome", calls.clone());
        let call_failovers = Counter::default();
        r.register(
            "call_failovers",
            "Gateways given up for the next one during a call's setup",
            call_failovers.clone(),
        );
        let call_setup_seconds: Histograms<StageLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "call_setup_seconds",
            "Call setup times, by role and stage",
            call_setup_seconds.clone(),
        );
        let calls_active = Family::default();
        r.register(
            "calls_active",
            "Calls in progress, by role",
            calls_active.clone(),
        );
        let receipts_written = Family::default();
        r.register(
            "receipts_written",
            "Receipts stored in the node's database, by role and status",
            receipts_written.clone(),
        );
        let calls_not_charged = Family::default();
        r.register(
            "calls_not_charged",
            "Answered calls settled at no charge because media never flowed both ways, by role",
            calls_not_charged.clone(),
        );
        let call_stream_errors = Family::default();
        r.register(
            "call_stream_errors",
            "Call streams given up: oversized (too_large), truncated, malformed or late \
             frames, invalid invites, streams that did not open with one",
            call_stream_errors.clone(),
        );
        let store_errors = Family::default();
        r.register(
            "store_errors",
            "Reads and writes of the node's database that failed and that the node carried \
             on without (the call history for ranking, a failed attempt, a disputed room \
             receipt), by operation",
            store_errors.clone(),
        );
        let index_offers = Gauge::default();
        r.register(
            "index_offers",
            "Offers this node holds in the offer index for others",
            index_offers.clone(),
        );
        let index_bytes = Gauge::default();
        r.register(
            "index_bytes",
            "Bytes of signed offers this node holds in the offer index",
            index_bytes.clone(),
        );
        let index_requests = Family::default();
        r.register(
            "index_requests",
            "Offer index requests from other peers: find, store, or refused by the rate limit",
            index_requests.clone(),
        );
        let index_requests_failed = Counter::default();
        r.register(
            "index_requests_failed",
            "Offer index requests this node sent that failed: the peer could not be dialled, \
             did not answer in time, closed the connection, or answered unreadably",
            index_requests_failed.clone(),
        );
        let index_stores = Family::default();
        r.register(
            "index_stores",
            "Offers others asked this node to hold: added, replaced, unchanged, or why refused",
            index_stores.clone(),
        );
        let index_publications = Family::default();
        r.register(
            "index_publications",
            "This gateway's offer at each holder of its keys: stored, unreachable, or why refused",
            index_publications.clone(),
        );
        let index_replicated = Counter::default();
        r.register(
            "index_replicated_offers",
            "Offers this node handed to a new peer now among the closest to their key",
            index_replicated.clone(),
        );
        let lookups = Family::default();
        r.register(
            "discovery_lookups",
            "Offer lookups, by source (network or cache) and outcome (found or empty)",
            lookups.clone(),
        );
        let lookup_seconds: Histograms<SourceLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "discovery_lookup_seconds",
            "How long offer lookups took, by source",
            lookup_seconds.clone(),
        );
        let lookup_requests = Histogram::new(REQUEST_BUCKETS);
        r.register(
            "discovery_lookup_requests",
            "Requests one walk of the offer index sent",
            lookup_requests.clone(),
        );
        let lookup_rounds = Histogram::new(ROUND_BUCKETS);
        r.register(
            "discovery_lookup_rounds",
            "Round trips one walk of the offer index took, one after another",
            lookup_rounds.clone(),
        );
        let lookup_invalid_offers = Counter::default();
        r.register(
            "discovery_invalid_offers",
            "Offers in holders' answers that failed verification (forged, tampered, expired)",
            lookup_invalid_offers.clone(),
        );
        // Series a dashboard watches from the start show 0 rather than nothing.
        for limit in LIMITS {
            let _ = limit_refusals.get_or_create(&LimitLabel { limit });
        }
        for role in [Role::Caller, Role::Gateway] {
            let _ = calls_active.get_or_create(&RoleLabel {
                role: role.as_str(),
            });
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                libp2p,
                peers_connected,
                reachable,
                routing_table_peers,
                stored_records,
                dht_queries,
                dht_query_seconds,
                dht_inbound_requests,
                offers_published,
                offers_validated,
                offers_refused,
                provider_records_refused,
                limit_refusals,
                calls,
                call_failovers,
                call_setup_seconds,
                calls_active,
                receipts_written,
                calls_not_charged,
                call_stream_errors,
                store_errors,
                index_offers,
                index_bytes,
                index_requests,
                index_requests_failed,
                index_stores,
                index_publications,
                index_replicated,
                lookups,
                lookup_seconds,
                lookup_requests,
                lookup_rounds,
                lookup_invalid_offers,
            }),
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// Hands a swarm, Kademlia or ping event to `libp2p-metrics`.
    pub(crate) fn record<E>(&self, event: &E)
    where
        libp2p::metrics::Metrics: Recorder<E>,
    {
        self.inner.libp2p.record(event);
    }

    pub(crate) fn set_network(&self, peers: usize, routing_table: usize, records: usize) {
        self.set_peers(peers);
        self.inner.routing_table_peers.set(gauge(routing_table));
        self.inner.stored_records.set(gauge(records));
    }

    pub(crate) fn set_reachable(&self, reachable: bool) {
        self.inner.reachable.set(i64::from(reachable));
    }

    pub(crate) fn set_peers(&self, peers: usize) {
        self.inner.peers_connected.set(gauge(peers));
    }

    pub(crate) fn dht_query(&self, kind: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.inner
            .dht_queries
            .get_or_create(&QueryLabels { kind, outcome })
            .inc();
        self.inner
            .dht_query_seconds
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn dht_inbound_request(&self, kind: &'static str) {
        self.inner
            .dht_inbound_requests
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub(crate) fn offer_published(&self, replicated: bool) {
        let outcome = if replicated { "replicated" } else { "failed" };
        self.inner
            .offers_published
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub(crate) fn offer_validated(&self, source: &'static str) {
        self.inner
            .offers_validated
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    pub(crate) fn offer_refused(&self, reason: &'static str) {
        self.inner
            .offers_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn provider_record_refused(&self, reason: &'static str) {
        self.inner
            .provider_records_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Something refused by one of the `[limits]`.
    pub(crate) fn limit_refusal(&self, limit: &'static str) {
        self.inner
            .limit_refusals
            .get_or_create(&LimitLabel { limit })
            .inc();
    }

    pub(crate) fn call_over(&self, role: Role, outcome: &'static str) {
        self.inner
            .calls
            .get_or_create(&RoleOutcomeLabels {
                role: role.as_str(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn call_failover(&self) {
        self.inner.call_failovers.inc();
    }

    pub(crate) fn call_setup(&self, role: Role, stage: &'static str, took: Duration) {
        self.inner
            .call_setup_seconds
            .get_or_create(&StageLabels {
                role: role.as_str(),
                stage,
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a call as active until the returned guard is dropped.
    pub(crate) fn call_started(&self, role: Role) -> ActiveCall {
        let gauge = self.inner.calls_active.get_or_create_owned(&RoleLabel {
            role: role.as_str(),
        });
        gauge.inc();
        ActiveCall { gauge }
    }

    pub(crate) fn call_stream_error(&self, error: &'static str) {
        self.inner
            .call_stream_errors
            .get_or_create(&ErrorLabel { error })
            .inc();
    }

    /// `result`'s value; if the database failed, logs and counts the failure and goes on
    /// with the default (an empty history, nothing recorded).
    pub fn store_result_or_default<T: Default>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> T {
        result.unwrap_or_else(|error| {
            tracing::warn!(operation, %error, "the database failed; carrying on without it");
            self.inner
                .store_errors
                .get_or_create(&OperationLabel { operation })
                .inc();
            T::default()
        })
    }

    pub(crate) fn set_index(&self, offers: usize, bytes: usize) {
        self.inner.index_offers.set(gauge(offers));
        self.inner.index_bytes.set(gauge(bytes));
    }

    /// A request of another peer to the offer index: `find`, `store` or `refused`.
    pub(crate) fn index_request(&self, kind: &'static str) {
        self.inner
            .index_requests
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// An offer index request this node sent failed (no answer, or none it could read).
    pub(crate) fn index_request_failed(&self) {
        self.inner.index_requests_failed.inc();
    }

    /// What became of an offer another peer asked this node to hold.
    pub(crate) fn index_store(&self, outcome: &'static str) {
        self.inner
            .index_stores
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// What became of this gateway's offer at one holder.
    pub(crate) fn index_publication(&self, outcome: &'static str) {
        self.inner
            .index_publications
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Offers handed to a new peer among the closest to their key.
    pub(crate) fn index_replication(&self, offers: usize) {
        self.inner.index_replicated.inc_by(offers as u64);
    }

    /// A lookup answered from `source` (`network` or `cache`).
    pub(crate) fn lookup(&self, source: &'static str, found: bool, took: Duration) {
        let outcome = if found { "found" } else { "empty" };
        self.inner
            .lookups
            .get_or_create(&SourceOutcomeLabels { source, outcome })
            .inc();
        self.inner
            .lookup_seconds
            .get_or_create(&SourceLabel { source })
            .observe(took.as_secs_f64());
    }

    /// What one walk of the offer index cost.
    pub(crate) fn walk(&self, stats: &interlink_protocol::discovery::walk::WalkStats) {
        self.inner.lookup_requests.observe(stats.requests as f64);
        self.inner.lookup_rounds.observe(f64::from(stats.rounds));
        self.inner
            .lookup_invalid_offers
            .inc_by(stats.invalid_offers as u64);
        self.inner
            .offers_validated
            .get_or_create(&SourceLabel { source: "lookup" })
            .inc_by(stats.verified_offers as u64);
    }

    /// An answered call got a receipt at no charge: media never flowed both ways.
    pub(crate) fn call_not_charged(&self, role: Role) {
        self.inner
            .calls_not_charged
            .get_or_create(&RoleLabel {
                role: role.as_str(),
            })
            .inc();
    }

    pub(crate) fn receipt_written(&self, role: Role, status: ReceiptStatus) {
        self.inner
            .receipts_written
            .get_or_create(&ReceiptLabels {
                role: role.as_str(),
                status: status.as_str(),
            })
            .inc();
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {source}")]
pub struct MetricsServerError {
    address: SocketAddr,
    source: std::io::Error,
}

/// The running `/metrics` endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Serves `metrics` at `http://ADDRESS/metrics` (port 0: any free port).
    pub async fn start(
        address: SocketAddr,
        metrics: Metrics,
    ) -> Result<MetricsServer, MetricsServerError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| MetricsServerError { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsServerError { address, source })?;
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move { scrape(&metrics) }
                }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics\n") });
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
        Ok(MetricsServer {
            address: bound,
            shutdown,
            task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The address to scrape.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.address)
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn scrape(metrics: &Metrics) -> axum::response::Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_registry_encodes_every_family_and_records_what_it_is_told() {
        let metrics = Metrics::new();
        metrics.call_over(Role::Gateway, "settled");
        metrics.receipt_written(Role::Caller, ReceiptStatus::Settled);
        metrics.limit_refusal("dht_requests");
        metrics.limit_refusal("dht_requests");
        {
            let _active = metrics.call_started(Role::Caller);
            assert!(
                metrics
                    .encode()
                    .contains("interlink_calls_active{role=\"caller\"} 1")
            );
        }
        metrics.call_setup(Role::Caller, "invite_to_answer", Duration::from_millis(3));
        let failed: Result<u32, StoreError> = Err(StoreError::Poisoned);
        assert_eq!(metrics.store_result_or_default("history", failed), 0);
        assert_eq!(metrics.store_result_or_default("history", Ok(7)), 7);
        let text = metrics.encode();
        for line in [
            "interlink_calls_total{role=\"gateway\",outcome=\"settled\"} 1",
            "interlink_receipts_written_total{role=\"caller\",status=\"settled\"} 1",
            "interlink_limit_refusals_total{limit=\"dht_requests\"} 2",
            "interlink_store_errors_total{operation=\"history\"} 1",
            "interlink_calls_active{role=\"caller\"} 0",
            "interlink_call_setup_seconds_bucket{le=\"0.005\",role=\"caller\",stage=\"invite_to_answer\"} 1",
            "# TYPE libp2p_swarm_dial_attempt counter",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }
}
