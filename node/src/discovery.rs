//! Discovery: from a destination to the verified offers that may carry a call to it.
//!
//! 1. Normalise the destination and take its country code (done by [`E164`]).
//! 2. Ask the offer index (`interlink_protocol::discovery`): one walk toward the
//!    country's key, whose holders each answer with the best offers for the number under
//!    the caller's policy (and the best long-standing ones), every offer verified by the
//!    caller, what the holders disagree on confirmed; or, for a question asked lately,
//!    the node's cache, with the age of its answer.
//! 3. Optionally measure the round trip to each provider found, dialling the addresses in
//!    its signed offer.
//!
//! Ranking the result with the caller's own history is
//! [`interlink_protocol::ranking::rank`]'s job.

use std::time::{Duration, Instant};

use interlink_protocol::discovery::OfferQuery;
use interlink_protocol::discovery::walk::Ending;
use interlink_protocol::ranking::{Measurement, Measurements, Policy};
use interlink_protocol::{E164, ProviderId, ServiceKind, SignedOffer};
use libp2p::PeerId;

use crate::identity;
use crate::network::{CacheUse, Client, NetworkError};

/// How long to wait for one round-trip measurement.
const RTT_DEADLINE: Duration = Duration::from_secs(2);

/// What to look for.
#[derive(Clone, Debug)]
pub struct Query {
    pub destination: E164,
    /// Service kinds that can carry the call, e.g. WebRTC to PSTN and WebRTC to SIP.
    pub kinds: Vec<ServiceKind>,
    /// The caller's policy: holders pick and order the best offers by it.
    pub policy: Policy,
    /// How many of the best offers to ask for (and as many long-standing ones); `None`:
    /// the node's `[discovery] results`.
    pub limit: Option<u16>,
    /// Measure the round trip to each provider found.
    pub measure_rtt: bool,
    /// Whether a recent answer from the cache will do.
    pub cache: CacheUse,
    /// Only this provider's offer (a call `--via` one gateway).
    pub only: Option<ProviderId>,
}

impl Query {
    /// The best offers of `kinds` for `destination` under the default policy (as many as
    /// the node's `[discovery] results`), from the cache if it has them, with no round
    /// trips measured.
    pub fn new(destination: E164, kinds: Vec<ServiceKind>) -> Query {
        Query {
            destination,
            kinds,
            policy: Policy::default(),
            limit: None,
            measure_rtt: false,
            cache: CacheUse::Prefer,
            only: None,
        }
    }

    /// The question to the offer index, asking for `results` offers unless the query
    /// says how many.
    pub fn offer_query(&self, results: u16) -> OfferQuery {
        let query = OfferQuery::number(
            self.destination.clone(),
            self.kinds.clone(),
            self.policy.clone(),
            self.limit.unwrap_or(results),
        );
        match self.only {
            Some(provider) => query.about(vec![provider]),
            None => query,
        }
    }
}

/// What was found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// The newest verified offer of each provider found that can carry the call within
    /// the policy's limits, best first by the policy (without the caller's history).
    pub offers: Vec<SignedOffer>,
    pub measurements: Measurements,
    pub stats: Stats,
}

/// Counts and timings of one discovery, for the curious, the metrics and the benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Offers that matched the query at the best-informed holder: more than were returned
    /// means the answer holds the best of them only.
    pub matching: usize,
    /// The most providers a holder holds under the destination's key, matching or not.
    pub held: usize,
    /// A holder left offers out of its answer to stay within the protocol's size limit.
    pub truncated: bool,
    /// `Some(age)` when the answer came from the cache, fetched that long ago.
    pub cached: Option<Duration>,
    /// Time to the verified offers, before measuring round trips.
    pub lookup_time: Duration,
    /// Requests of the walk (none from the cache).
    pub requests: u64,
    /// Round trips of the walk, one after another.
    pub rounds: u32,
    /// Holders whose answers were merged.
    pub holders: usize,
    /// Requests of the walk that first had to set up a connection.
    pub dials: usize,
    /// Offers in answers that failed verification.
    pub invalid_offers: usize,
    /// Why the walk ended, if there was one.
    pub ending: Option<Ending>,
    /// Bytes this node sent and received meanwhile (the lookup's, and any background
    /// traffic that overlapped it).
    pub bytes: u64,
}

impl Stats {
    /// Whether the answer holds only the best of more offers than it returned.
    pub fn cut(&self, returned: usize) -> bool {
        self.matching > returned || self.truncated
    }
}

/// Why discovery could not run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error("the node knows no peer: it has no connection and an empty routing table")]
    NoPeers,
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Finds the verified offers for `query`.
pub async fn discover(client: &Client, query: &Query) -> Result<Discovery, DiscoveryError> {
    let started = Instant::now();
    let before = client.status().await?;
    // Connections close when idle; peers in the routing table are dialled again by the
    // walk itself. Only a node that knows nobody cannot look anything up.
    if before.connected_peers == 0 && before.routing_table_size == 0 {
        return Err(DiscoveryError::NoPeers);
    }
    let found = client
        .find_offers(query.offer_query(client.results()), query.cache)
        .await?;
    let after = client.status().await?;
    let stats = Stats {
        matching: found.matching,
        held: found.held,
        truncated: found.truncated,
        cached: found.cached,
        lookup_time: started.elapsed(),
        requests: found.walk.requests as u64,
        rounds: found.walk.rounds,
        holders: found.walk.holders,
        dials: found.dials,
        invalid_offers: found.walk.invalid_offers,
        ending: found.ending,
        bytes: after.traffic.since(&before.traffic).total(),
    };
    let measurements = if query.measure_rtt {
        measure_rtts(client, found.offers.iter()).await
    } else {
        Measurements::new()
    };
    Ok(Discovery {
        offers: found.offers,
        measurements,
        stats,
    })
}

/// The round trip to each of `offers`' providers, dialled at the addresses in its
/// signed offer, all at once; a provider that cannot be dialled or does not answer within
/// [`RTT_DEADLINE`] is measured unreachable, with why (ranking puts it last).
pub(crate) async fn measure_rtts<'a>(
    client: &Client,
    offers: impl Iterator<Item = &'a SignedOffer>,
) -> Measurements {
    let probes = offers.filter_map(|offer| {
        let peer: PeerId = identity::peer_id(&offer.provider())?;
        let addresses = offer.offer().addresses.clone();
        Some(async move {
            let rtt = tokio::time::timeout(RTT_DEADLINE, client.measure_rtt(peer, addresses)).await;
            (offer.provider(), rtt)
        })
    });
    let mut measurements = Measurements::new();
    for (provider, rtt) in futures::future::join_all(probes).await {
        let measurement = match rtt {
            Ok(Ok(rtt)) => Measurement::Reached { rtt },
            Ok(Err(e)) => Measurement::Unreachable {
                reason: e.to_string(),
            },
            Err(_) => Measurement::Unreachable {
                reason: format!("no answer within {} s", RTT_DEADLINE.as_secs_f64()),
            },
        };
        measurements.insert(provider, measurement);
    }
    measurements
}
