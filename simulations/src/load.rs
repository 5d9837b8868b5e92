//! The load on a simulated network: callers' lookups and calls, probes of new gateways,
//! churn, and samples of the process and the routing tables.
//!
//! Each lookup is the discovery a caller's node runs before a call (providers, offers,
//! verification) followed by ranking, judged against the [`Truth`]: which gateways were up,
//! published for at least [`SETTLE`] and covering the number when it began.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interlink_node::calls::caller::{self, CallOptions, CallerContext};
use interlink_node::clock;
use interlink_node::discovery::{self, Query};
use interlink_node::network::Client;
use interlink_protocol::offer::OfferStatus;
use interlink_protocol::ranking::{self, History, Policy};
use interlink_protocol::{E164, ProviderId, ServiceKind};
use rand::RngExt;
use rand::rngs::StdRng;

use crate::measure::{CallSample, LookupSample, Outcome};
use crate::world::{Ending, GatewayTruth, Truth, World, random_destination};

/// A gateway must have been published this long before a lookup expects to find it, and
/// must have withdrawn this long before one must not: the time for its records to reach
/// the nodes a lookup asks.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How long a probe keeps looking for a new gateway.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(60);
/// How often a probe looks.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Samples collected while a run goes.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub lookups: Arc<Mutex<Vec<LookupSample>>>,
    pub calls: Arc<Mutex<Vec<CallSample>>>,
    pub discoverable_ms: Arc<Mutex<Vec<f64>>>,
    pub never_discovered: Arc<Mutex<usize>>,
}

fn push<T>(samples: &Mutex<Vec<T>>, sample: T) {
    samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(sample);
}

/// Takes what was collected.
pub fn take<T>(samples: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()))
}

/// One caller's load until `end`: lookups (and calls, if asked) at Poisson intervals.
#[allow(clippy::too_many_arguments)]
pub async fn run_caller(
    index: usize,
    context: CallerContext,
    truth: Truth,
    mut rng: StdRng,
    lookups_per_minute: f64,
    calls_per_minute: f64,
    started: Instant,
    end: Instant,
    samples: Samples,
) {
    let rate = (lookups_per_minute + calls_per_minute) / 60.0;
    if rate <= 0.0 {
        return;
    }
    let call_share = calls_per_minute / (lookups_per_minute + calls_per_minute);
    loop {
        // Exponential gaps: a Poisson stream of requests.
        let gap = -rng.random_range(f64::EPSILON..1.0f64).ln() / rate;
        let at = Instant::now() + Duration::from_secs_f64(gap);
        if at >= end {
            return;
        }
        tokio::time::sleep_until(at.into()).await;
        let Some(destination) = random_destination(&truth, &mut rng) else {
            continue;
        };
        let since =
            |t: Instant| u64::try_from(t.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        if rng.random_bool(call_share) {
            let sample = place_call(&context, destination).await;
            push(
                &samples.calls,
                CallSample {
                    at_ms: since(at),
                    ..sample
                },
            );
        } else if let Some(sample) = look_up(index, &context.client, &truth, destination).await {
            push(
                &samples.lookups,
                LookupSample {
                    at_ms: since(at),
                    ..sample
                },
            );
        }
    }
}

/// One lookup, ranked and judged.
pub async fn look_up(
    caller: usize,
    client: &Client,
    truth: &Truth,
    destination: E164,
) -> Option<LookupSample> {
    let began = Instant::now();
    let began_unix = clock::unix_now();
    let expected = truth.snapshot();
    let query = Query {
        destination: destination.clone(),
        kinds: vec![ServiceKind::WEBRTC_TO_PSTN],
        measure_rtt: false,
    };
    let found = discovery::discover(client, &query).await.ok()?;
    let ranking = ranking::rank(
        &found.offers,
        &destination,
        &found.measurements,
        &History::new(),
        &Policy::default(),
    );
    let latency = began.elapsed();
    let available: Vec<ProviderId> = ranking
        .candidates
        .iter()
        .map(|c| c.offer.provider())
        .collect();
    // Offers that had expired before the lookup began (one may lapse while it runs).
    let expired = found
        .offers
        .iter()
        .filter(|o| o.is_expired(began_unix) && o.offer().status == OfferStatus::Available)
        .count();
    let returned: Vec<(ProviderId, u64)> = found
        .offers
        .iter()
        .map(|o| (o.provider(), o.seq()))
        .collect();
    let sample = judge(
        caller,
        &destination,
        &available,
        &returned,
        expired,
        &expected,
        began,
        latency,
        found.stats.requests,
        found.stats.bytes,
    );
    if sample.outcome != Outcome::All {
        let missing: Vec<String> = expected
            .iter()
            .filter(|(p, g)| {
                g.routes.iter().any(|r| r.covers(&destination))
                    && g.ended.is_none()
                    && g.published_at.is_some()
                    && !available.contains(p)
            })
            .map(|(p, g)| {
                format!(
                    "{} published {:?} ago",
                    &p.to_string()[..8],
                    g.published_at.map(|t| t.elapsed())
                )
            })
            .collect();
        tracing::debug!(
            %destination,
            providers = found.stats.providers,
            without_offer = found.stats.without_offer,
            ?missing,
            "lookup missed gateways"
        );
    }
    Some(sample)
}

/// Compares what a lookup returned (the available offers after ranking, and the `seq` of
/// every offer discovery returned) with what was true when it began.
#[allow(clippy::too_many_arguments)]
fn judge(
    caller: usize,
    destination: &E164,
    available: &[ProviderId],
    returned: &[(ProviderId, u64)],
    expired_returned: usize,
    truth: &HashMap<ProviderId, GatewayTruth>,
    began: Instant,
    latency: Duration,
    requests: u64,
    bytes: u64,
) -> LookupSample {
    let covers = |g: &GatewayTruth| g.routes.iter().any(|p| p.covers(destination));
    let settled = |at: Instant| at + SETTLE <= began;
    let expected: Vec<&ProviderId> = truth
        .iter()
        .filter(|(_, g)| covers(g) && g.published_at.is_some_and(settled) && g.ended.is_none())
        .map(|(p, _)| p)
        .collect();
    let found_expected = expected.iter().filter(|p| available.contains(p)).count();
    let ended_before = |how: Ending| {
        available
            .iter()
            .filter(|p| {
                truth
                    .get(p)
                    .and_then(|g| g.ended)
                    .is_some_and(|(at, h)| h == how && settled(at))
            })
            .count()
    };
    // A newer offer had been acknowledged by the nodes closest to its key: one still
    // running, or the withdrawal of one that left (counted as withdrawn, not stale).
    let stale_returned = returned
        .iter()
        .filter(|(p, seq)| {
            truth.get(p).is_some_and(|g| {
                g.ended.is_none()
                    && g.latest
                        .is_some_and(|(latest, at)| settled(at) && *seq < latest)
            })
        })
        .count();
    let outcome = match found_expected {
        n if n == expected.len() => Outcome::All,
        0 => Outcome::None,
        _ => Outcome::Some,
    };
    LookupSample {
        at_ms: 0,
        caller,
        destination: destination.to_string(),
        latency_ms: latency.as_secs_f64() * 1000.0,
        requests,
        bytes,
        expected: expected.len(),
        found_expected,
        found_total: available.len(),
        outcome,
        stale_returned,
        withdrawn_returned: ended_before(Ending::Withdrawn),
        expired_returned,
        crashed_returned: ended_before(Ending::Crashed),
    }
}

/// An echo call through the best gateway, held for a second.
async fn place_call(context: &CallerContext, destination: E164) -> CallSample {
    let options = CallOptions {
        kinds: vec![ServiceKind::WEBRTC_TO_PSTN],
        hold_for: Duration::from_secs(1),
        setup_deadline: Duration::from_secs(20),
        ..CallOptions::new(destination)
    };
    match caller::place_call(context, &options, &|_| {}).await {
        Ok(report) => CallSample {
            at_ms: 0,
            answered: true,
            setup_ms: Some(report.command_to_answer_ms),
            failovers: report.failovers.len(),
            outcome: report.receipt.status,
        },
        Err(e) => CallSample {
            at_ms: 0,
            answered: false,
            setup_ms: None,
            failovers: 0,
            outcome: e.to_string(),
        },
    }
}

/// What a probe waits to find: a gateway's offer with a `seq` above `after_seq`, timed
/// from `since` (the gateway's start when `None`).
#[derive(Clone, Copy, Debug)]
pub struct Publication {
    pub provider: ProviderId,
    pub since: Option<Instant>,
    pub after_seq: u64,
}

impl Publication {
    /// A new gateway's first offer, timed from its node's start.
    pub fn first(provider: ProviderId) -> Self {
        Self {
            provider,
            since: None,
            after_seq: 0,
        }
    }
}

/// Looks for a gateway's publication until found; records how long after it began.
pub async fn probe(client: Client, truth: Truth, publication: Publication, samples: Samples) {
    let provider = publication.provider;
    let Some(gateway) = truth.snapshot().get(&provider).cloned() else {
        return;
    };
    let since = publication.since.unwrap_or(gateway.started_at);
    let Some(prefix) = gateway.routes.first() else {
        return;
    };
    let Ok(destination) = E164::parse(&format!(
        "+{}{}",
        prefix.digits(),
        "0".repeat(12usize.saturating_sub(prefix.len()).max(2))
    )) else {
        return;
    };
    let query = Query {
        destination,
        kinds: vec![ServiceKind::WEBRTC_TO_PSTN],
        measure_rtt: false,
    };
    while since.elapsed() < PROBE_DEADLINE {
        if let Ok(found) = discovery::discover(&client, &query).await
            && found.offers.iter().any(|o| {
                o.provider() == provider
                    && o.offer().seq > publication.after_seq
                    && o.offer().status == OfferStatus::Available
            })
        {
            push(
                &samples.discoverable_ms,
                since.elapsed().as_secs_f64() * 1000.0,
            );
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    *samples
        .never_discovered
        .lock()
        .unwrap_or_else(|p| p.into_inner()) += 1;
}

/// What the churn did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChurnCounts {
    pub joins: usize,
    pub clean_leaves: usize,
    pub crashes: usize,
}

/// Joins and leaves at the scenario's rates until `end`; new gateways get a probe.
pub async fn run_churn(world: &mut World, end: Instant, samples: &Samples) -> ChurnCounts {
    let mut counts = ChurnCounts::default();
    let churn = world.scenario.churn.clone();
    let rate = (churn.joins_per_minute + churn.leaves_per_minute) / 60.0;
    if rate <= 0.0 {
        tokio::time::sleep_until(end.into()).await;
        return counts;
    }
    let join_share = churn.joins_per_minute / (churn.joins_per_minute + churn.leaves_per_minute);
    let mut rng = world.fork_rng();
    loop {
        let gap = -rng.random_range(f64::EPSILON..1.0f64).ln() / rate;
        let at = Instant::now() + Duration::from_secs_f64(gap);
        if at >= end {
            tokio::time::sleep_until(end.into()).await;
            return counts;
        }
        tokio::time::sleep_until(at.into()).await;
        if rng.random_bool(join_share) {
            match world.add_random().await {
                Ok(Some(provider)) => {
                    counts.joins += 1;
                    tokio::spawn(probe(
                        world.probe.client().clone(),
                        world.truth.clone(),
                        Publication::first(provider),
                        samples.clone(),
                    ));
                }
                Ok(None) => counts.joins += 1,
                Err(e) => tracing::warn!(error = %e, "a node could not join"),
            }
        } else {
            match world.remove_random().await {
                Some(Ending::Crashed) => counts.crashes += 1,
                Some(Ending::Withdrawn) => counts.clean_leaves += 1,
                None => {}
            }
        }
    }
}

/// Routing table and connection figures of a sample of server nodes.
pub async fn sample_tables(clients: &[Client]) -> (f64, f64) {
    let statuses = futures::future::join_all(clients.iter().map(Client::status)).await;
    let live: Vec<_> = statuses.into_iter().flatten().collect();
    if live.is_empty() {
        return (0.0, 0.0);
    }
    let n = live.len() as f64;
    let table = live
        .iter()
        .map(|s| s.routing_table_size as f64)
        .sum::<f64>()
        / n;
    let connections = live.iter().map(|s| s.connected_peers as f64).sum::<f64>() / n;
    (table, connections)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use interlink_protocol::{Prefix, SecretKey};

    use super::*;

    /// A gateway covering +44 whose offer `latest` was acknowledged `ago` before now.
    fn gateway(latest: u64, ago: Duration, ended: bool) -> (ProviderId, GatewayTruth) {
        let at = Instant::now().checked_sub(ago).unwrap();
        let truth = GatewayTruth {
            routes: vec![Prefix::new("+44").unwrap()],
            started_at: at,
            published_at: Some(at),
            latest: Some((latest, at)),
            ended: ended.then_some((at, Ending::Withdrawn)),
        };
        (SecretKey::from_seed(&[7; 32]).provider_id(), truth)
    }

    fn stale(truth: (ProviderId, GatewayTruth), returned_seq: u64) -> usize {
        let provider = truth.0;
        let sample = judge(
            0,
            &E164::parse("+442071838750").unwrap(),
            &[provider],
            &[(provider, returned_seq)],
            0,
            &HashMap::from([truth]),
            Instant::now(),
            Duration::from_millis(20),
            0,
            0,
        );
        sample.stale_returned
    }

    #[test]
    fn an_offer_older_than_a_settled_publication_is_stale() {
        let settled = SETTLE * 2;
        assert_eq!(stale(gateway(3, settled, false), 2), 1);
        assert_eq!(stale(gateway(3, settled, false), 3), 0, "the newest");
        assert_eq!(
            stale(gateway(3, Duration::ZERO, false), 2),
            0,
            "the newer one may not have reached the closest nodes yet"
        );
        assert_eq!(
            stale(gateway(3, settled, true), 2),
            0,
            "a gateway that left is counted as withdrawn, not stale"
        );
    }
}
