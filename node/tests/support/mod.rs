//! Helpers shared by the node's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod conference;
pub mod http;
pub mod lab;
pub mod node_process;
pub mod scrape;
pub mod sipp;

use std::future::Future;
use std::time::{Duration, Instant};

use interlink_node::clock;
use interlink_node::config::GatewayPlan;
use interlink_protocol::offer::{
    ClaimedQuality, Mos, OFFER_FORMAT_VERSION, OfferStatus, Permille, Route, ServiceOffer, Tariff,
};
use interlink_protocol::{Codec, Currency, E164, Prefix, SecretKey, ServiceKind, SignedOffer};

/// An echo gateway plan priced in GBP with 60-second increments.
pub fn plan(name: &str, routes: &[(&str, u64)], mos: u16, asr: u16) -> GatewayPlan {
    GatewayPlan {
        region: "test".into(),
        capacity: 10,
        quality: ClaimedQuality {
            answer_seizure_ratio: Permille(asr),
            post_dial_delay_ms: 2000,
            mos: Mos(mos),
        },
        offer_ttl: Duration::from_secs(600),
        ..GatewayPlan::new(
            name,
            routes
                .iter()
                .map(|&(prefix, per_minute)| route(prefix, per_minute))
                .collect(),
        )
    }
}

/// A GBP route with no setup fee.
pub fn route(prefix: &str, per_minute: u64) -> Route {
    Route {
        prefix: Prefix::new(prefix).expect("prefix"),
        tariff: Tariff {
            currency: Currency::new("GBP").expect("GBP"),
            setup_fee: 0,
            per_minute,
            billing_increment_secs: 60,
        },
    }
}

/// A valid offer of `key`'s provider for all of +44 at 0.00 a minute claiming the best
/// quality, for ten minutes from now: what a flood or a sybil would send.
pub fn free_uk_offer(key: &SecretKey, name: &str) -> SignedOffer {
    let now = clock::unix_now();
    let offer = ServiceOffer {
        version: OFFER_FORMAT_VERSION,
        provider: key.provider_id(),
        seq: 1,
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(600)),
        status: OfferStatus::Available,
        kind: ServiceKind::WEBRTC_TO_PSTN,
        display_name: name.into(),
        region: String::new(),
        routes: vec![route("+44", 0)],
        codecs: vec![Codec::Pcmu],
        quality: ClaimedQuality {
            answer_seizure_ratio: Permille(1000),
            post_dial_delay_ms: 0,
            mos: Mos(500),
        },
        capacity: 1000,
        addresses: Vec::new(),
        conference: None,
    };
    SignedOffer::sign(offer, key).unwrap()
}

pub fn uk_mobile() -> E164 {
    E164::parse("+447700900123").expect("number")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`wait_for`] for tests without a runtime: polls `check` until it returns `Some`, or
/// panics with `what` after `deadline`.
pub fn wait_for_blocking<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
