//! Discovery: from a destination to the verified offers that may carry a call to it.
//!
//! 1. Normalise the destination and take its country code (done by [`E164`]).
//! 2. Ask the DHT for the providers of each wanted service kind under that country code.
//! 3. Fetch each provider's offer from its value key; the network layer keeps only copies
//!    that verify, and the newest of them.
//! 4. Keep offers of the wanted kinds; drop providers with no valid offer (provider
//!    records are unsigned, so an announcement alone proves nothing).
//! 5. Optionally measure the round trip to each provider whose offer covers the number,
//!    dialling the addresses in its signed offer.
//!
//! Ranking the result is [`interlink_protocol::ranking::rank`]'s job.

use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink_protocol::ranking::{Measurement, Measurements};
use interlink_protocol::{DhtKey, E164, ServiceKind, SignedOffer};
use libp2p::PeerId;

use crate::identity;
use crate::network::{Client, NetworkError};

/// Offer lookups run at once.
const CONCURRENT_OFFER_LOOKUPS: usize = 16;
/// How long to wait for one round-trip measurement.
const RTT_DEADLINE: Duration = Duration::from_secs(2);

/// What to look for.
#[derive(Clone, Debug)]
pub struct Query {
    pub destination: E164,
    /// Service kinds that can carry the call, e.g. WebRTC to PSTN and WebRTC to SIP.
    pub kinds: Vec<ServiceKind>,
    /// Measure the round trip to each covering provider.
    pub measure_rtt: bool,
}

/// What was found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Verified offers of the wanted kinds, covering the destination or not.
    pub offers: Vec<SignedOffer>,
    pub measurements: Measurements,
    pub stats: Stats,
}

/// Counts and timings of one discovery, for the curious and the benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct providers announced under the wanted keys.
    pub providers: usize,
    /// Providers with no valid offer in the DHT (announcement only, or withdrawn copies
    /// replaced by garbage).
    pub without_offer: usize,
    /// Time to providers, offers and verification, before measuring round trips.
    pub lookup_time: Duration,
    /// Kademlia requests this node sent for the lookup.
    pub requests: u64,
    /// Bytes this node sent and received meanwhile (the lookup's, and any background
    /// traffic that overlapped it).
    pub bytes: u64,
}

/// Why discovery could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    // lookup itself. Only a node that knows nobody cannot look anything up.
    if before.connected_peers == 0 && before.routing_table_size == 0 {
        return Err(DiscoveryError::NoPeers);
    }
    let country_code = query.destination.country_code();
    let lookups = query
        .kinds
        .iter()
        .map(|&kind| client.get_providers(DhtKey::Providers { kind, country_code }));
    let mut providers: Vec<PeerId> = Vec::new();
    let mut last_error = None;
    for result in futures::future::join_all(lookups).await {
        match result {
            Ok(found) => providers.extend(found),
            Err(e) => last_error = Some(e),
        }
    }
    providers.sort();
    providers.dedup();
    if providers.is_empty()
        && let Some(e) = last_error
    {
        return Err(e.into());
    }

    let offers: Vec<SignedOffer> = fetch_offers(client, providers.iter().copied())
        .await
        .into_iter()
        .filter(|o| query.kinds.contains(&o.offer().kind))
        .collect();
    let after = client.status().await?;
    let stats = Stats {
        providers: providers.len(),
        without_offer: providers.len() - offers.len(),
        lookup_time: started.elapsed(),
        requests: after.query_requests.saturating_sub(before.query_requests),
        bytes: after.traffic.since(&before.traffic).total(),
    };

    let measurements = if query.measure_rtt {
        let covering = offers
            .iter()
            .filter(|o| o.offer().best_route(&query.destination).is_some());
        measure_rtts(client, covering).await
    } else {
        Measurements::new()
    };
    Ok(Discovery {
        offers,
        measurements,
        stats,
    })
}

/// Step 3: the verified offer of each of `providers` that has one, by provider.
pub(crate) async fn fetch_offers(
    client: &Client,
    providers: impl IntoIterator<Item = PeerId>,
) -> Vec<SignedOffer> {
    // Owned peer ids and client clones keep the future `Send` for callers that spawn it.
    let lookups = providers.into_iter().map(|peer| {
        let client = client.clone();
        async move { client.get_offer(peer).await.ok().flatten() }
    });
    let mut offers: Vec<SignedOffer> = futures::stream::iter(lookups)
        .buffer_unordered(CONCURRENT_OFFER_LOOKUPS)
        .filter_map(std::future::ready)
        .collect()
        .await;
    offers.sort_by_key(SignedOffer::provider);
    offers
}

/// Step 5: the round trip to each of `offers`' providers, dialled at the addresses in its
/// signed offer, all at once; a provider that does not answer within [`RTT_DEADLINE`] has
/// no measurement.
pub(crate) async fn measure_rtts<'a>(
    client: &Client,
    offers: impl Iterator<Item = &'a SignedOffer>,
) -> Measurements {
    let probes = offers.filter_map(|offer| {
        let peer = identity::peer_id(&offer.provider())?;
        let addresses = offer.offer().addresses.clone();
        Some(async move {
            let rtt = tokio::time::timeout(RTT_DEADLINE, client.measure_rtt(peer, addresses)).await;
            (offer.provider(), rtt)
        })
    });
    let mut measurements = Measurements::new();
    for (provider, rtt) in futures::future::join_all(probes).await {
        if let Ok(Ok(rtt)) = rtt {
            measurements.insert(provider, Measurement { rtt });
        }
    }
    measurements
}
