//! A conference bridge for tests, and tone detection in what participants hear.

use std::net::SocketAddr;
use std::time::Duration;

use interlink_gateway_plugin::audio::{SAMPLE_RATE, goertzel_power};
use interlink_node::api::ApiSettings;
use interlink_node::conference::discovery::discover_bridges;
use interlink_node::config::{BackendSpec, ConferenceBackend, DhtSection, GatewayPlan};
use interlink_node::local_network::LocalNetwork;
use interlink_node::node::Node;
use interlink_protocol::call::Timers;
use interlink_protocol::conference::{ConferenceTariff, ConferenceTerms, Region};
use interlink_protocol::ranking::Policy;
use interlink_protocol::{Currency, ServiceKind, SignedOffer};

use super::{plan, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

/// The bridges' price: 0.50 EUR a room and 0.12 EUR a participant-minute, per second.
pub fn tariff() -> ConferenceTariff {
    ConferenceTariff {
        currency: Currency::new("EUR").expect("EUR"),
        per_room: 50,
        per_participant_minute: 12,
        billing_increment_secs: 1,
    }
}

/// A conference bridge in `region`: four rooms of up to eight.
pub fn bridge_plan(name: &str, region: &str) -> GatewayPlan {
    GatewayPlan {
        kind: ServiceKind::Conference,
        region: region.into(),
        capacity: 20,
        routes: Vec::new(),
        backend: BackendSpec::Conference(ConferenceBackend::default()),
        conference: Some(ConferenceTerms {
            rooms: 4,
            participants_per_room: 8,
            tariff: tariff(),
        }),
        ..plan(name, &[], 430, 900)
    }
}

/// An in-process network with `bridges`, their offers published.
pub async fn network(bridges: Vec<GatewayPlan>) -> LocalNetwork {
    let network = LocalNetwork::start(2, bridges, &DhtSection::default())
        .await
        .expect("network");
    network.wait_published(DEADLINE).await.expect("published");
    network
}

/// The API of a participant's node on a free loopback port, in at most `max_memberships`
/// rooms, leaving those whose page went away `orphan_after`.
pub fn api_settings(
    network: &LocalNetwork,
    max_memberships: usize,
    orphan_after: Option<Duration>,
) -> ApiSettings {
    ApiSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_calls: 1,
        max_memberships,
        orphan_call_after: orphan_after,
        policy: Policy::default(),
        kinds: ServiceKind::WEBRTC_TO_NUMBERS.to_vec(),
        timers: Timers::default(),
        setup_deadline: Duration::from_secs(30),
        bootstrap: vec![network.bootstrap_addr.clone()],
    }
}

/// The offer of a bridge in `region`, as `node` finds it.
pub async fn find_bridge(node: &Node, region: &str) -> SignedOffer {
    let region = Region::new(region).expect("region");
    wait_for("the bridge's offer", DEADLINE, || async {
        let (offers, _) = discover_bridges(node.client(), region, false).await.ok()?;
        offers.into_iter().next()
    })
    .await
}

/// The power of `freq` in 8 kHz `samples` (Goertzel).
pub fn power(samples: &[i16], freq: f64) -> f64 {
    goertzel_power(samples, freq, SAMPLE_RATE)
}

/// Whether `samples` carry each tone of `present` strongly and each of `absent` at less
/// than a hundredth of the weakest present one.
pub fn hears(samples: &[i16], present: &[f64], absent: &[f64]) -> bool {
    let weakest = present
        .iter()
        .map(|&f| power(samples, f))
        .fold(f64::INFINITY, f64::min);
    // A 4000-peak tone has a power of about 4e6 (A²/4).
    weakest > 1.0e6 && absent.iter().all(|&f| power(samples, f) < weakest / 100.0)
}
