//! A node sweep runs in one network that grows: measured at its first size, then grown by
//! joins to the next and measured again, with the gateways' offers found at every size.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use interlink_simulations::run_growing;
use interlink_simulations::scenario::{KadSettings, Method, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_network_is_measured_at_each_size_and_finds_its_gateways() {
    let mut scenario = Scenario::named("small").unwrap();
    scenario.churn.joins_per_minute = 0.0;
    scenario.churn.leaves_per_minute = 0.0;
    scenario.offer_ttl_secs = 600;
    scenario.duration_secs = 10;
    scenario.sweep.nodes = vec![60, 20];

    let mut results = Vec::new();
    run_growing(
        &scenario,
        KadSettings::Project,
        Method::Index,
        &|_| {},
        &mut |result| results.push(result),
    )
    .await
    .unwrap_or_else(|e| panic!("the simulation failed: {e}"));

    let sizes: Vec<_> = results
        .iter()
        .map(|r| (r.dht_nodes, r.total_nodes))
        .collect();
    assert_eq!(sizes, [(20, 34), (60, 74)], "smallest first, then grown");
    for result in &results {
        let summary = result.summary();
        eprintln!("{summary:#?}");
        assert!(summary.lookups >= 20, "only {} lookups", summary.lookups);
        assert_eq!(summary.none_found, 0.0, "{summary:#?}");
        assert!(summary.all_found >= 0.95, "{summary:#?}");
        // After growth most copies of the offers are on nodes no longer closest to their
        // keys; lookups still return the republished ones.
        assert_eq!(summary.stale_returned, 0, "{summary:#?}");
        assert_eq!(summary.withdrawn_returned, 0, "{summary:#?}");
    }
    // The second size was reached by joins into the first network, not built again: the
    // first size timed each gateway's first publication until a lookup found it, the
    // second each gateway's republication into the grown network; and the routing tables
    // grew with the network.
    for result in &results {
        assert_eq!(
            (result.discoverable_ms.len(), result.never_discovered),
            (scenario.gateways, 0),
            "every gateway's publication found at {} nodes",
            result.dht_nodes
        );
    }
    assert!(
        results[1].routing_table_mean > results[0].routing_table_mean,
        "{} then {}",
        results[0].routing_table_mean,
        results[1].routing_table_mean
    );
}
