//! Finding conference bridges: the offer index under a region's key, and optionally the
//! round trip to each bridge.

use interlink_protocol::SignedOffer;
use interlink_protocol::conference::Region;
use interlink_protocol::discovery::OfferQuery;
use interlink_protocol::ranking::{Measurements, Policy};

use crate::discovery::{self, DiscoveryError};
use crate::network::{CacheUse, Client};

/// Bridges asked for: a region has few, and the organiser ranks them all under its own
/// policy and room size, so that it can say why it left one out.
const BRIDGES: u16 = 64;

/// The verified conference offers of the bridges in `region` (up to 64), and the round
/// trips measured if `measure_rtt`.
pub async fn discover_bridges(
    client: &Client,
    region: Region,
    measure_rtt: bool,
) -> Result<(Vec<SignedOffer>, Measurements), DiscoveryError> {
    let status = client.status().await?;
    if status.connected_peers == 0 && status.routing_table_size == 0 {
        return Err(DiscoveryError::NoPeers);
    }
    let query = OfferQuery::region(region, 1, Policy::default(), BRIDGES);
    let offers = client.find_offers(query, CacheUse::Bypass).await?.offers;
    let measurements = if measure_rtt {
        discovery::measure_rtts(client, offers.iter()).await
    } else {
        Measurements::new()
    };
    Ok((offers, measurements))
}
