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
use interlink_protocol::{
    Codec, Currency, E164, Prefix, ProviderId, SecretKey, ServiceKind, SignedOffer,
};

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

/// An offer of `provider` for all of +44 at 0.00 a minute claiming the best quality, for
/// ten minutes from now, unsigned: tests change the fields they need.
pub fn free_uk_service_offer(provider: ProviderId, name: &str) -> ServiceOffer {
    let now = clock::unix_now();
    ServiceOffer {
        version: OFFER_FORMAT_VERSION,
        provider,
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
    }
}

/// [`free_uk_service_offer`] signed by `key`: what a flood or a sybil would send.
pub fn free_uk_offer(key: &SecretKey, name: &str) -> SignedOffer {
    SignedOffer::sign(free_uk_service_offer(key.provider_id(), name), key).unwrap()
}

pub fn uk_mobile() -> E164 {
    E164::parse("+447700900123").expect("number")
}

/// How often [`wait_for`] and its siblings look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What the check of a wait answers: done, with a value (`Some`, `Ok`, `true`), or not yet
/// (`None`, `false`, or `Err` with what it saw, which the failure message then shows).
pub trait Check {
    type Value;
    fn done(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Check for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Check for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

impl Check for bool {
    type Value = ();
    fn done(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

/// The message of a wait that gave up.
fn timed_out(what: &str, deadline: Duration, seen: Option<String>) -> String {
    match seen {
        Some(seen) => format!("timed out after {deadline:?} waiting for {what}: {seen}"),
        None => format!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Polls `check` until it is done (see [`Check`]), or panics with `what` (and what the
/// check saw last) after `deadline`.
pub async fn wait_for<C, F, Fut>(what: &str, deadline: Duration, check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    poll(deadline, check)
        .await
        .unwrap_or_else(|seen| panic!("{}", timed_out(what, deadline, seen)))
}

/// [`wait_for`] for tests without a runtime.
pub fn wait_for_blocking<C: Check>(
    what: &str,
    deadline: Duration,
    check: impl FnMut() -> C,
) -> C::Value {
    poll_blocking(deadline, check)
        .unwrap_or_else(|seen| panic!("{}", timed_out(what, deadline, seen)))
}

/// Polls `check` until it is done, or gives up after `deadline` with what it saw last: for
/// a wait whose caller decides what a timeout means.
pub async fn poll<C, F, Fut>(deadline: Duration, mut check: F) -> Result<C::Value, Option<String>>
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let give_up = Instant::now() + deadline;
    loop {
        let seen = match check().await.done() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if Instant::now() >= give_up {
            return Err(seen);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`poll`] for tests without a runtime, or that must clean up (kill a child process, say)
/// before they fail.
pub fn poll_blocking<C: Check>(
    deadline: Duration,
    mut check: impl FnMut() -> C,
) -> Result<C::Value, Option<String>> {
    let give_up = Instant::now() + deadline;
    loop {
        let seen = match check().done() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if Instant::now() >= give_up {
            return Err(seen);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
