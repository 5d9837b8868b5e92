//! A small `market` in the test suite: a few hundred real nodes on the in-memory
//! transport, gateways with overlapping prefixes of every depth repricing, leaving and
//! joining, callers asking for the best 10 under random policies. Every lookup must get
//! the true best 10 for its policy, and none may show a replaced, withdrawn or expired
//! offer. Speed is the simulation's business, not this test's.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use interlink_simulations::run_point;
use interlink_simulations::scenario::{KadSettings, Method, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_market_gets_the_true_best_ten_and_never_a_stale_offer() {
    let mut scenario = Scenario::named("market").unwrap();
    scenario.nodes = 120;
    scenario.gateways = 90;
    scenario.callers = 4;
    scenario.join_rate = 100.0;
    scenario.warmup_secs = 3;
    // Long enough for 60 lookups however slow a debug build on two cores makes them.
    scenario.duration_secs = 30;
    scenario.reprices_per_minute = 60.0;
    scenario.churn.joins_per_minute = 12.0;
    scenario.churn.leaves_per_minute = 12.0;

    let result = run_point(&scenario, KadSettings::Project, Method::Index, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("the simulation failed: {e}"));
    let summary = result.summary();
    eprintln!("{summary:#?}");
    eprintln!("covering: {:?}", result.covering);

    // A market, not a handful: many gateways on +1 and +44, of every prefix depth.
    let covering = |code: &str| {
        result
            .covering
            .iter()
            .find(|(c, _)| c == code)
            .map_or(0, |(_, n)| *n)
    };
    assert!(covering("1") >= 40, "{:?}", result.covering);
    assert!(covering("44") >= 20, "{:?}", result.covering);
    // The market moved while it was measured, and the load's timeline holds every move
    // and the timer that measures the wait for a core.
    assert!(result.reprices > 0 && result.joins > 0 && result.clean_leaves > 0);
    let moves = |what: &str| {
        result
            .churn_events
            .iter()
            .filter(|e| e.event == what)
            .count()
    };
    assert!(moves("join") >= result.joins);
    assert!(moves("leave") >= result.clean_leaves + result.crashes);
    assert!(moves("new price") >= result.reprices);
    assert!(
        result.timer_lag.len() > 100,
        "{} lag samples",
        result.timer_lag.len()
    );
    assert!(summary.lookups >= 60, "only {} lookups", summary.lookups);

    // Every lookup got the true best 10 for its policy; none showed an offer replaced,
    // withdrawn or expired at least a second before it began.
    for missed in result
        .lookups
        .iter()
        .filter(|l| l.best_found == Some(false))
    {
        eprintln!(
            "{} ({}): {}",
            missed.destination, missed.policy, missed.best_note
        );
    }
    assert_eq!(summary.best_judged, summary.lookups);
    assert_eq!(summary.best_found, 1.0, "{summary:#?}");
    assert_eq!(summary.none_found, 0.0, "{summary:#?}");
    assert_eq!(summary.stale_returned, 0, "{summary:#?}");
    assert_eq!(summary.withdrawn_returned, 0, "{summary:#?}");
    assert_eq!(summary.expired_returned, 0, "{summary:#?}");
    // New prices reached the callers; questions asked again came from the cache.
    assert!(
        summary.visible > 0 && summary.never_visible == 0,
        "{summary:#?}"
    );
    assert!(
        summary.cached > 0 && summary.cache_hits > 0.9,
        "{summary:#?}"
    );
}
