//! Finding conference bridges: providers announced under a region, their verified offers,
//! and optionally the round trip to each.

use std::time::Duration;

use futures::StreamExt;
use interlink_protocol::conference::Region;
use interlink_protocol::ranking::{Measurement, Measurements};
use interlink_protocol::{DhtKey, ServiceKind, SignedOffer};

use crate::discovery::DiscoveryError;
use crate::identity;
use crate::network::Client;

/// Offer lookups run at once.
const CONCURRENT_OFFER_LOOKUPS: usize = 16;
/// How long to wait for one round-trip measurement.
const RTT_DEADLINE: Duration = Duration::from_secs(2);

/// The verified conference offers of the bridges announced in `region`, by provider, and
/// the round trips measured if `measure_rtt`.
pub async fn discover_bridges(
    client: &Client,
    region: Region,
    measure_rtt: bool,
) -> Result<(Vec<SignedOffer>, Measurements), DiscoveryError> {
    if client.status().await?.connected_peers == 0 {
        return Err(DiscoveryError::NoPeers);
    }
    let key = DhtKey::RegionProviders {
        kind: ServiceKind::Conference,
        region,
    };
    let providers = client.get_providers(key).await?;
    let lookups = providers.into_iter().map(|peer| {
        let client = client.clone();
        async move { client.get_offer(peer).await.ok().flatten() }
    });
    let fetched: Vec<Option<SignedOffer>> = futures::stream::iter(lookups)
        .buffer_unordered(CONCURRENT_OFFER_LOOKUPS)
        .collect()
        .await;
    let mut offers: Vec<SignedOffer> = fetched
        .into_iter()
        .flatten()
        .filter(|o| {
            o.offer().kind == ServiceKind::Conference && o.offer().region == region.as_str()
        })
        .collect();
    offers.sort_by_key(SignedOffer::provider);
    let mut measurements = Measurements::new();
    if measure_rtt {
        let probes = offers.iter().filter_map(|offer| {
            let peer = identity::peer_id(&offer.provider())?;
            let addresses = offer.offer().addresses.clone();
            Some(async move {
                let rtt =
                    tokio::time::timeout(RTT_DEADLINE, client.measure_rtt(peer, addresses)).await;
                (offer.provider(), rtt)
            })
        });
        for (provider, rtt) in futures::future::join_all(probes).await {
            if let Ok(Ok(rtt)) = rtt {
                measurements.insert(provider, Measurement { rtt });
            }
        }
    }
    Ok((offers, measurements))
}
