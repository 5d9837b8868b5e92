//! Finding conference bridges: providers announced under a region, their verified offers,
//! and optionally the round trip to each.

use interlink_protocol::conference::Region;
use interlink_protocol::ranking::Measurements;
use interlink_protocol::{DhtKey, ServiceKind, SignedOffer};

use crate::discovery::{self, DiscoveryError};
use crate::network::Client;

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
    let offers: Vec<SignedOffer> = discovery::fetch_offers(client, providers)
        .await
        .into_iter()
        .filter(|o| {
            o.offer().kind == ServiceKind::Conference && o.offer().region == region.as_str()
        })
        .collect();
    let measurements = if measure_rtt {
        discovery::measure_rtts(client, offers.iter()).await
    } else {
        Measurements::new()
    };
    Ok((offers, measurements))
}
