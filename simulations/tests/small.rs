//! The `small` scenario in the test suite: about 60 real nodes on libp2p's in-memory
//! transport for 30 s while nodes join, leave cleanly and crash. Callers must keep finding
//! the gateways that cover their numbers, and must never be handed an offer that was
//! withdrawn or has expired.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use interlink_simulations::run_point;
use interlink_simulations::scenario::{KadSettings, Method, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_churning_network_finds_its_gateways_and_never_a_withdrawn_offer() {
    let scenario = Scenario::named("small").unwrap();
    assert_eq!((scenario.nodes, scenario.duration_secs), (50, 30));

    let result = run_point(&scenario, KadSettings::Project, Method::Index, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("the simulation failed: {e}"));
    let summary = result.summary();
    eprintln!("{summary:#?}");

    // The network did churn, both ways, and with both kinds of leave.
    assert!(result.joins > 0, "no node joined");
    assert!(result.clean_leaves > 0, "no node left cleanly");
    assert!(result.crashes > 0, "no node crashed");
    // 4 callers at one lookup a second for 30 s, a Poisson process: far more than 40.
    assert!(summary.lookups >= 40, "only {} lookups", summary.lookups);

    // Every lookup that had something to find found at least one gateway, and nearly all
    // found every gateway that covered the number.
    assert_eq!(summary.none_found, 0.0, "{summary:#?}");
    assert!(summary.all_found >= 0.95, "{summary:#?}");
    // Withdrawals and republications (every 10 s here) win over the offers they replace;
    // expired offers never verify.
    assert_eq!(summary.stale_returned, 0, "{summary:#?}");
    assert_eq!(summary.withdrawn_returned, 0, "{summary:#?}");
    assert_eq!(summary.expired_returned, 0, "{summary:#?}");
    // Offers of gateways that joined during the run became discoverable.
    assert_eq!(result.never_discovered, 0, "{summary:#?}");
    assert!(!result.discoverable_ms.is_empty());
}
