//! The first design of discovery, kept to measure the index against: gateways announce
//! themselves as Kademlia providers under one key per (service kind, country code); a
//! caller looks up the providers of its destination's country, then each provider's
//! offer under its own value key, 16 at a time, and verifies them.
//!
//! Its cost grows with the market (one lookup per provider), and a key keeps at most
//! `dht.max_providers_per_key` (64) providers, of which an answer carries 20.

use std::collections::HashSet;
use std::time::Instant;

use futures::StreamExt;
use interlink_node::discovery::{Discovery, DiscoveryError, Stats};
use interlink_node::network::Client;
use interlink_protocol::{DhtKey, E164, ServiceKind, SignedOffer};
use libp2p::PeerId;

/// Offer lookups run at once.
const CONCURRENT_OFFER_LOOKUPS: usize = 16;

/// Announces the node of `client` as a provider of `offer`'s kind in each of its
/// countries.
pub async fn announce(client: &Client, offer: &SignedOffer) {
    let announcements = offer
        .offer()
        .country_codes()
        .into_iter()
        .map(|country_code| DhtKey::Providers {
            kind: offer.offer().kind,
            country_code,
        })
        .map(|key| client.start_providing(key));
    for result in futures::future::join_all(announcements).await {
        if let Err(e) = result {
            tracing::debug!(error = %e, "a provider announcement was not acknowledged");
        }
    }
}

/// Finds the verified offers of `kinds` for `destination` the first design's way: every
/// one found, covering the number or not, in no order.
pub async fn discover(
    client: &Client,
    destination: &E164,
    kinds: &[ServiceKind],
) -> Result<Discovery, DiscoveryError> {
    let started = Instant::now();
    let before = client.status().await?;
    if before.connected_peers == 0 && before.routing_table_size == 0 {
        return Err(DiscoveryError::NoPeers);
    }
    let country_code = destination.country_code();
    let lookups = kinds
        .iter()
        .map(|&kind| client.get_providers(DhtKey::Providers { kind, country_code }));
    let mut providers: HashSet<PeerId> = HashSet::new();
    for found in futures::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
    {
        providers.extend(found);
    }
    let fetches = providers.iter().copied().map(|peer| {
        let client = client.clone();
        async move { client.get_offer(peer).await.ok().flatten() }
    });
    let offers: Vec<SignedOffer> = futures::stream::iter(fetches)
        .buffer_unordered(CONCURRENT_OFFER_LOOKUPS)
        .filter_map(std::future::ready)
        .filter(|offer| std::future::ready(kinds.contains(&offer.offer().kind)))
        .collect()
        .await;
    let after = client.status().await?;
    Ok(Discovery {
        stats: Stats {
            matching: offers.len(),
            held: providers.len(),
            lookup_time: started.elapsed(),
            requests: after.query_requests.saturating_sub(before.query_requests),
            bytes: after.traffic.since(&before.traffic).total(),
            ..Stats::default()
        },
        offers,
        measurements: Default::default(),
    })
}
