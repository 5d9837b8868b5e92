//! The load on a simulated network: callers' lookups and calls, probes of new gateways,
//! churn, and samples of the process and the routing tables.
//!
//! Each lookup is the discovery a caller's node runs before a call (a walk of the offer
//! index, or the first design's provider records and offer lookups) followed by ranking
//! under a policy, judged against the [`Truth`]: which gateways were up, published for at
//! least [`SETTLE`] and covering the number when it began; which of their offers were the
//! best for that policy; which offers had been replaced or withdrawn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interlink_node::calls::caller::{self, CallOptions, CallerContext};
use interlink_node::clock;
use interlink_node::discovery::{self, Discovery, Query};
use interlink_node::identity;
use interlink_node::lock::LockExt;
use interlink_node::network::{CacheUse, Client};
use interlink_protocol::offer::OfferStatus;
use interlink_protocol::ranking::{self, History, Measurements, Policy, PolicyKind};
use interlink_protocol::{E164, ProviderId, ServiceKind, SignedOffer};
use rand::RngExt;
use rand::rngs::StdRng;

use crate::legacy;
use crate::measure::{CacheSample, CallSample, ChurnEvent, LookupSample, Outcome};
use crate::scenario::Method;
use crate::world::{Ending, GatewayTruth, Truth, World, random_destination};

/// A gateway must have been published this long before a lookup expects to find it, and
/// must have withdrawn this long before one must not: the time for its records to reach
/// the nodes a lookup asks.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How long a probe keeps looking for a new gateway.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(60);
/// How often a probe looks.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Samples collected while a run goes.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub lookups: Arc<Mutex<Vec<LookupSample>>>,
    pub cached: Arc<Mutex<Vec<CacheSample>>>,
    pub calls: Arc<Mutex<Vec<CallSample>>>,
    pub discoverable_ms: Arc<Mutex<Vec<f64>>>,
    pub never_discovered: Arc<Mutex<usize>>,
    /// From a gateway's new prices to the first lookup that returns them.
    pub visible_ms: Arc<Mutex<Vec<f64>>>,
    pub never_visible: Arc<Mutex<usize>>,
}

/// What each caller of a run does.
#[derive(Clone, Debug)]
pub struct CallerLoad {
    pub lookups_per_minute: f64,
    pub calls_per_minute: f64,
    /// The best offers a lookup asks for.
    pub results: u16,
    /// Drawn from for each lookup.
    pub policies: Vec<PolicyKind>,
    /// The share of lookups repeating a recent question (answered from the cache).
    pub repeat_share: f64,
    pub method: Method,
}

/// Questions a caller remembers to ask again.
const RECENT: usize = 8;

fn push<T>(samples: &Mutex<Vec<T>>, sample: T) {
    samples.locked().push(sample);
}

/// Takes what was collected.
pub fn take<T>(samples: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *samples.locked())
}

/// One caller's load until `end`: lookups (and calls, if asked) at Poisson intervals.
#[allow(clippy::too_many_arguments)]
pub async fn run_caller(
    index: usize,
    context: CallerContext,
    truth: Truth,
    mut rng: StdRng,
    load: CallerLoad,
    started: Instant,
    end: Instant,
    samples: Samples,
) {
    let rate = (load.lookups_per_minute + load.calls_per_minute) / 60.0;
    if rate <= 0.0 {
        return;
    }
    let call_share = load.calls_per_minute / (load.lookups_per_minute + load.calls_per_minute);
    let mut recent: Vec<(E164, Policy)> = Vec::new();
    loop {
        // Exponential gaps: a Poisson stream of requests.
        let gap = -rng.random_range(f64::EPSILON..1.0f64).ln() / rate;
        let at = Instant::now() + Duration::from_secs_f64(gap);
        if at >= end {
            return;
        }
        tokio::time::sleep_until(at.into()).await;
        let since =
            |t: Instant| u64::try_from(t.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        let repeat = load.method == Method::Index
            && !recent.is_empty()
            && rng.random_bool(load.repeat_share);
        if repeat {
            let (destination, policy) = recent[rng.random_range(0..recent.len())].clone();
            let sample =
                look_up_cached(&context.client, &truth, destination, policy, load.results).await;
            if let Some(sample) = sample {
                push(
                    &samples.cached,
                    CacheSample {
                        at_ms: since(at),
                        ..sample
                    },
                );
            }
            continue;
        }
        let Some(destination) = random_destination(&truth, &mut rng) else {
            continue;
        };
        let policy = Policy {
            kind: load.policies[rng.random_range(0..load.policies.len())],
            ..Policy::default()
        };
        if rng.random_bool(call_share) {
            let sample = place_call(&context, destination).await;
            push(
                &samples.calls,
                CallSample {
                    at_ms: since(at),
                    ..sample
                },
            );
        } else if let Some(sample) = look_up(
            index,
            &context.client,
            &truth,
            destination.clone(),
            &policy,
            load.results,
            load.method,
        )
        .await
        {
            push(
                &samples.lookups,
                LookupSample {
                    at_ms: since(at),
                    ..sample
                },
            );
            recent.push((destination, policy));
            if recent.len() > RECENT {
                recent.remove(0);
            }
        }
    }
}

/// One lookup of the network by `method`, ranked under `policy` and judged.
pub async fn look_up(
    caller: usize,
    client: &Client,
    truth: &Truth,
    destination: E164,
    policy: &Policy,
    results: u16,
    method: Method,
) -> Option<LookupSample> {
    let began = Instant::now();
    let began_unix = clock::unix_now();
    let expected = truth.snapshot();
    let found = match method {
        Method::Index => {
            let query = Query {
                policy: policy.clone(),
                limit: Some(results),
                cache: CacheUse::Bypass,
                ..Query::new(destination.clone(), vec![ServiceKind::WEBRTC_TO_PSTN])
            };
            discovery::discover(client, &query).await.ok()?
        }
        Method::Providers => legacy::discover(client, &destination, &[ServiceKind::WEBRTC_TO_PSTN])
            .await
            .ok()?,
    };
    let ranking = ranking::rank(
        &found.offers,
        &destination,
        &found.measurements,
        &History::new(),
        policy,
    );
    let latency = began.elapsed();
    let after = truth.snapshot();
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
    let mut sample = judge(
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
    let best = best_n(
        &found,
        &destination,
        policy,
        usize::from(results),
        &after,
        began,
        Instant::now(),
    );
    sample.best_found = Some(best.found);
    sample.best_expected = best.expected;
    sample.best_note = best.note;
    sample.method = method.label();
    sample.policy = policy.kind.to_string();
    sample.rounds = found.stats.rounds;
    sample.holders = found.stats.holders;
    sample.dials = found.stats.dials;
    if sample.outcome != Outcome::All {
        tracing::debug!(
            %destination,
            held = found.stats.held,
            holders = found.stats.holders,
            found = available.len(),
            expected = sample.expected,
            "lookup missed gateways"
        );
    }
    Some(sample)
}

/// A question asked again, answered from the caller's cache: how fast, how old, and
/// whether what it showed had been replaced meanwhile.
async fn look_up_cached(
    client: &Client,
    truth: &Truth,
    destination: E164,
    policy: Policy,
    results: u16,
) -> Option<CacheSample> {
    let began = Instant::now();
    let query = Query {
        policy,
        limit: Some(results),
        cache: CacheUse::Prefer,
        ..Query::new(destination, vec![ServiceKind::WEBRTC_TO_PSTN])
    };
    let found = discovery::discover(client, &query).await.ok()?;
    let latency = began.elapsed();
    let truth = truth.snapshot();
    let superseded = found
        .offers
        .iter()
        .filter(|offer| {
            truth.get(&offer.provider()).is_some_and(|g| {
                g.latest
                    .is_some_and(|(seq, at)| at + SETTLE <= began && offer.seq() < seq)
                    || g.ended.is_some_and(|(at, _)| at + SETTLE <= began)
            })
        })
        .count();
    Some(CacheSample {
        at_ms: 0,
        latency_ms: latency.as_secs_f64() * 1000.0,
        from_cache: found.stats.cached.is_some(),
        age_ms: found
            .stats
            .cached
            .map_or(0.0, |age| age.as_secs_f64() * 1000.0),
        offers: found.offers.len(),
        superseded,
    })
}

/// Whether a lookup got the true best `n` for its policy.
struct Best {
    found: bool,
    /// How many the truth had (fewer than `n` when fewer cover the number).
    expected: usize,
    /// When it did not: the gateways it missed and those it showed instead, each with its
    /// `seq` in the truth and how long before the lookup that was acknowledged.
    note: String,
}

/// Compares the best `n` of what a lookup `found` with the best `n` of what was true: the
/// offers acknowledged at least [`SETTLE`] before it began, `began`, of the gateways up
/// then. A change acknowledged later, up to `ended`, was in flight: the truth takes the
/// version the caller got if it is that one or newer, and the newest otherwise; a
/// gateway that left in that time may be there or not.
fn best_n(
    found: &Discovery,
    destination: &E164,
    policy: &Policy,
    n: usize,
    truth: &HashMap<ProviderId, GatewayTruth>,
    began: Instant,
    ended: Instant,
) -> Best {
    let settled = |at: Instant| at + SETTLE <= began;
    let shown: HashMap<ProviderId, &SignedOffer> =
        found.offers.iter().map(|o| (o.provider(), o)).collect();
    let mut true_offers: Vec<SignedOffer> = Vec::new();
    for (provider, gateway) in truth {
        if let Some((at, _)) = gateway.ended {
            if settled(at) {
                continue;
            }
            if at <= ended && !shown.contains_key(provider) {
                continue;
            }
        }
        let settled_version = gateway
            .offers
            .iter()
            .filter(|(_, at)| settled(*at))
            .map(|(offer, _)| offer)
            .next_back();
        let in_flight = gateway
            .offers
            .iter()
            .filter(|(_, at)| !settled(*at) && *at <= ended)
            .map(|(offer, _)| offer)
            .next_back();
        let version = match shown.get(provider) {
            // What it was shown is the settled offer, or a newer one: a signed offer with
            // a higher `seq` exists only once its gateway made it, so it was being
            // published (its acknowledgement may come after the lookup).
            Some(offer) if settled_version.is_none_or(|v| offer.seq() >= v.seq()) => Some(*offer),
            // An older one (counted stale): the truth is the settled one.
            Some(_) => settled_version,
            // Not shown: it may have been left out for its newest price, in flight.
            None => in_flight.or(settled_version),
        };
        if let Some(version) = version {
            true_offers.push(version.clone());
        }
    }
    let none = Measurements::new();
    let history = History::new();
    let top = |offers: &[SignedOffer]| -> Vec<ProviderId> {
        let mut best: Vec<ProviderId> = ranking::rank(offers, destination, &none, &history, policy)
            .candidates
            .iter()
            .take(n)
            .map(|c| c.offer.provider())
            .collect();
        best.sort();
        best
    };
    let truth_best = top(&true_offers);
    let found_best = top(&found.offers);
    let describe = |provider: &ProviderId| {
        let gateway = truth.get(provider);
        let latest = gateway.and_then(|g| g.offers.last());
        format!(
            "{}… seq {:?} acknowledged {:?} before, shown {:?}",
            &provider.to_string()[..8],
            latest.map(|(o, _)| o.seq()),
            latest.map(|(_, at)| began.saturating_duration_since(*at)),
            shown.get(provider).map(|o| o.seq()),
        )
    };
    let note = if truth_best == found_best {
        String::new()
    } else {
        let missed: Vec<String> = truth_best
            .iter()
            .filter(|p| !found_best.contains(p))
            .map(describe)
            .collect();
        let instead: Vec<String> = found_best
            .iter()
            .filter(|p| !truth_best.contains(p))
            .map(describe)
            .collect();
        format!("missed {missed:?}; instead {instead:?}")
    };
    Best {
        found: truth_best == found_best,
        expected: truth_best.len(),
        note,
    }
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
        method: "",
        policy: String::new(),
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
        best_found: None,
        best_expected: 0,
        best_note: String::new(),
        rounds: 0,
        holders: 0,
        dials: 0,
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
            outcome: report.receipt.status.to_string(),
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

/// Looks for a gateway's publication until found (by `method`); records how long after
/// it began in `found`, or counts it in `never`.
pub async fn probe(
    client: Client,
    truth: Truth,
    publication: Publication,
    method: Method,
    found: Arc<Mutex<Vec<f64>>>,
    never: Arc<Mutex<usize>>,
) {
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
        cache: CacheUse::Bypass,
        only: Some(provider),
        ..Query::new(destination, vec![ServiceKind::WEBRTC_TO_PSTN])
    };
    let newer = |offer: &SignedOffer| {
        offer.provider() == provider
            && offer.offer().seq > publication.after_seq
            && offer.offer().status == OfferStatus::Available
    };
    while since.elapsed() < PROBE_DEADLINE {
        let seen = match method {
            Method::Index => discovery::discover(&client, &query)
                .await
                .is_ok_and(|found| found.offers.iter().any(newer)),
            // The first design finds a known provider's offer under its value key.
            Method::Providers => match identity::peer_id(&provider) {
                Some(peer) => client
                    .get_offer(peer)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|offer| newer(&offer)),
                None => false,
            },
        };
        if seen {
            push(&found, since.elapsed().as_secs_f64() * 1000.0);
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    *never.locked() += 1;
}

/// A probe of a new gateway's first publication, into the discoverable samples.
pub fn probe_new(
    world: &World,
    provider: ProviderId,
    samples: &Samples,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(probe(
        world.probe.client().clone(),
        world.truth.clone(),
        Publication::first(provider),
        world.method,
        Arc::clone(&samples.discoverable_ms),
        Arc::clone(&samples.never_discovered),
    ))
}

/// What the churn did.
#[derive(Clone, Debug, Default)]
pub struct ChurnCounts {
    pub joins: usize,
    pub clean_leaves: usize,
    pub crashes: usize,
    pub reprices: usize,
    pub events: Vec<ChurnEvent>,
}

/// Joins, leaves and reprices at the scenario's rates until `end`; new gateways and new
/// prices get a probe.
pub async fn run_churn(world: &mut World, end: Instant, samples: &Samples) -> ChurnCounts {
    let mut counts = ChurnCounts::default();
    let churn = world.scenario.churn.clone();
    let reprices = world.scenario.reprices_per_minute;
    let rate = (churn.joins_per_minute + churn.leaves_per_minute + reprices) / 60.0;
    if rate <= 0.0 {
        tokio::time::sleep_until(end.into()).await;
        return counts;
    }
    let total = churn.joins_per_minute + churn.leaves_per_minute + reprices;
    let mut rng = world.fork_rng();
    let load_began = Instant::now();
    loop {
        let gap = -rng.random_range(f64::EPSILON..1.0f64).ln() / rate;
        let at = Instant::now() + Duration::from_secs_f64(gap);
        if at >= end {
            tokio::time::sleep_until(end.into()).await;
            return counts;
        }
        tokio::time::sleep_until(at.into()).await;
        let draw = rng.random_range(0.0..total);
        let began = Instant::now();
        let event = if draw < reprices {
            "new price"
        } else if draw < reprices + churn.joins_per_minute {
            "join"
        } else {
            "leave"
        };
        if draw < reprices {
            if let Some((provider, seq, _)) = world.reprice_random() {
                counts.reprices += 1;
                tokio::spawn(probe(
                    world.probe.client().clone(),
                    world.truth.clone(),
                    Publication {
                        provider,
                        since: Some(Instant::now()),
                        after_seq: seq,
                    },
                    world.method,
                    Arc::clone(&samples.visible_ms),
                    Arc::clone(&samples.never_visible),
                ));
            }
        } else if draw < reprices + churn.joins_per_minute {
            match world.add_random().await {
                Ok(Some(provider)) => {
                    counts.joins += 1;
                    probe_new(world, provider, samples);
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
        counts.events.push(ChurnEvent {
            at_ms: u64::try_from(began.duration_since(load_began).as_millis()).unwrap_or(u64::MAX),
            event,
            took_ms: began.elapsed().as_secs_f64() * 1000.0,
        });
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
            offers: Vec::new(),
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
