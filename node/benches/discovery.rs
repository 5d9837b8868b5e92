//! Discovery latency in a 20-node network on 127.0.0.1: a walk of the offer index,
//! verification and ranking, as a caller node does them for each call, and the same
//! question answered again from the caller's cache. Prints percentiles.
//!
//! `cargo bench -p interlink-node --bench discovery [-- LOOKUPS]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::time::{Duration, Instant};

mod common;

use common::report;
use interlink_node::config::{DhtSection, GatewayPlan};
use interlink_node::discovery::{self, Query};
use interlink_node::local_network::LocalNetwork;
use interlink_node::network::CacheUse;
use interlink_node::node::Node;
use interlink_protocol::offer::{Route, Tariff};
use interlink_protocol::ranking::{self, History, Policy};
use interlink_protocol::{Currency, E164, Prefix, ServiceKind};

fn plan(name: &str, prefixes: &[(&str, u64)]) -> GatewayPlan {
    let gbp = Currency::new("GBP").unwrap();
    let routes = prefixes
        .iter()
        .map(|&(p, price)| Route {
            prefix: Prefix::new(p).unwrap(),
            tariff: Tariff {
                currency: gbp,
                setup_fee: 0,
                per_minute: price,
                billing_increment_secs: 60,
            },
        })
        .collect();
    GatewayPlan {
        region: "bench".into(),
        ..GatewayPlan::new(name, routes)
    }
}

/// One discovery and ranking, checked, and how long it took.
async fn timed_lookup(caller: &Node, query: &Query) -> Duration {
    let started = Instant::now();
    let found = discovery::discover(caller.client(), query).await.unwrap();
    let ranking = ranking::rank(
        &found.offers,
        &query.destination,
        &found.measurements,
        &History::new(),
        &Policy::default(),
    );
    assert_eq!(ranking.candidates.len(), 2, "both covering gateways found");
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lookups: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let gateways = vec![
        plan("Anglia", &[("+44", 2)]),
        plan("Mobile Max", &[("+447", 1)]),
        plan("Londoner", &[("+4420", 1)]),
        plan("Gallia", &[("+33", 1)]),
    ];
    let network = LocalNetwork::start(15, gateways, &DhtSection::default())
        .await
        .unwrap();
    network
        .wait_published(Duration::from_secs(20))
        .await
        .unwrap();
    let destination = E164::parse("+447700900123").unwrap();
    let query = Query {
        cache: CacheUse::Bypass,
        ..Query::new(destination.clone(), vec![ServiceKind::WEBRTC_TO_PSTN])
    };
    let repeated = Query {
        cache: CacheUse::Prefer,
        ..query.clone()
    };
    println!(
        "20 nodes (bootstrap, 15 DHT nodes, 4 gateways) on 127.0.0.1, {lookups} lookups of {destination}"
    );

    let caller = network.caller().await.unwrap();
    // Right after start every node is still bootstrapping and filling its routing table.
    let mut fresh = Vec::new();
    for _ in 0..lookups / 2 {
        fresh.push(timed_lookup(&caller, &query).await);
    }
    report("discover + verify + rank (first 2 s)", fresh);
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        timed_lookup(&caller, &query).await;
    }
    let mut warm = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        warm.push(timed_lookup(&caller, &query).await);
    }
    report("discover + verify + rank (steady)", warm);
    timed_lookup(&caller, &repeated).await;
    let mut cached = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        cached.push(timed_lookup(&caller, &repeated).await);
    }
    report("the same destination again, from the cache + rank", cached);
    caller.shutdown().await.unwrap();

    let mut cold = Vec::new();
    for _ in 0..(lookups / 4).max(10) {
        let started = Instant::now();
        let caller = network.caller().await.unwrap();
        timed_lookup(&caller, &query).await;
        cold.push(started.elapsed());
        caller.shutdown().await.unwrap();
    }
    report("join + discover + rank (new caller)", cold);
    network.shutdown().await.unwrap();
}
