//! What a run records, and the figures made of it.

use std::time::Duration;

use serde::Serialize;

use crate::scenario::{KadSettings, Method};

/// How a lookup went against the truth: the gateways that were up, had published, and
/// covered the destination when it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every expected gateway was found.
    All,
    /// Some, not all.
    Some,
    /// None of them.
    None,
}

/// One lookup.
#[derive(Clone, Debug, Serialize)]
pub struct LookupSample {
    /// Since the start of the measured period.
    pub at_ms: u64,
    /// How it was looked up: `index` or `providers (before)`.
    pub method: &'static str,
    /// The caller's policy for it.
    pub policy: String,
    pub caller: usize,
    pub destination: String,
    pub latency_ms: f64,
    /// Kademlia requests the caller sent.
    pub requests: u64,
    /// Bytes through the caller's connections meanwhile.
    pub bytes: u64,
    /// Gateways that should have been found.
    pub expected: usize,
    /// Of those, found.
    pub found_expected: usize,
    /// Available offers covering the destination that were returned.
    pub found_total: usize,
    pub outcome: Outcome,
    /// Offers returned older than one their gateway had published before the lookup.
    pub stale_returned: usize,
    /// Offers returned as available from gateways that had withdrawn before the lookup.
    pub withdrawn_returned: usize,
    /// Offers returned that had expired (a verified offer cannot be; counted to prove it).
    pub expired_returned: usize,
    /// Offers of gateways that had crashed: still valid until they expire.
    pub crashed_returned: usize,
    /// Whether the best offers for its policy (as many as it asked for) were the true
    /// best; `None` if not judged.
    pub best_found: Option<bool>,
    /// How many the truth's best held (fewer when fewer gateways cover the number).
    pub best_expected: usize,
    /// When the best were not found: which were missed and which shown instead.
    pub best_note: String,
    /// Round trips of the walk, one after another (the index only).
    pub rounds: u32,
    /// Holders whose answers the walk merged (the index only).
    pub holders: usize,
    /// Requests of the walk that first had to open a connection (the index only).
    pub dials: usize,
}

/// A question asked again and answered from the caller's cache.
#[derive(Clone, Debug, Serialize)]
pub struct CacheSample {
    pub at_ms: u64,
    pub latency_ms: f64,
    /// The answer came from the cache (rather than from a walk, when the cache had
    /// dropped it).
    pub from_cache: bool,
    /// How old the answer was.
    pub age_ms: f64,
    /// Offers shown.
    pub offers: usize,
    /// Offers shown that their gateway had replaced or withdrawn (at least a second
    /// before): what an answer of that age may show, refreshed meanwhile.
    pub superseded: usize,
}

/// One call placed under load.
#[derive(Clone, Debug, Serialize)]
pub struct CallSample {
    pub at_ms: u64,
    pub answered: bool,
    /// Command to answer, discovery included.
    pub setup_ms: Option<f64>,
    pub failovers: usize,
    pub outcome: String,
}

/// Everything one run (one sweep point, one setting) measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub settings: KadSettings,
    /// How the callers discovered.
    pub method: Method,
    /// The median round trip between two nodes, when links have one.
    pub median_rtt_ms: Option<f64>,
    /// DHT nodes the run started with (besides gateways, callers, bootstrap, probe).
    pub dht_nodes: usize,
    /// Every node started at first.
    pub total_nodes: usize,
    pub churn_per_minute: f64,
    pub build_secs: f64,
    pub lookups: Vec<LookupSample>,
    /// Questions asked again, answered from the cache.
    pub cached: Vec<CacheSample>,
    pub calls: Vec<CallSample>,
    /// From a gateway's start to the first lookup that finds its offer.
    pub discoverable_ms: Vec<f64>,
    /// Gateways whose offer no probe found within the deadline.
    pub never_discovered: usize,
    /// From a gateway's new prices to the first lookup that returns them.
    pub visible_ms: Vec<f64>,
    /// New prices no probe saw within the deadline.
    pub never_visible: usize,
    /// Gateways that published new prices during the load.
    pub reprices: usize,
    /// Gateways covering each country when the load began (live, published), as
    /// (country code, gateways).
    pub covering: Vec<(String, usize)>,
    /// Lookups each server node answered as a holder during the load, busiest first
    /// (nodes that answered none left out).
    pub holder_answers: Vec<u64>,
    pub joins: usize,
    pub clean_leaves: usize,
    pub crashes: usize,
    /// Process memory after the network was built, and at its largest.
    pub rss_after_build_bytes: u64,
    pub rss_peak_bytes: u64,
    /// CPU time of the whole run (build, warm-up, load).
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// CPU time and wall time of the load alone: how busy the cores were while lookups ran.
    pub load_cpu_seconds: f64,
    pub load_seconds: f64,
    /// How late a timer due every [`LAG_PROBE_PERIOD`] fired during the load: the wait
    /// any ready task (a lookup's next step) had for a core.
    pub timer_lag: Vec<Moment>,
    /// Joins, leaves and new prices during the load, with how long each took to start.
    pub churn_events: Vec<ChurnEvent>,
    /// Mean routing table size of sampled server nodes, and what a full table holds.
    pub routing_table_mean: f64,
    pub routing_table_ideal: f64,
    /// Mean open connections of sampled server nodes.
    pub connections_mean: f64,
}

/// The headline figures of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub settings: KadSettings,
    pub method: Method,
    pub total_nodes: usize,
    pub churn_per_minute: f64,
    pub lookups: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub all_found: f64,
    pub some_found: f64,
    pub none_found: f64,
    pub requests_per_lookup: f64,
    pub bytes_per_lookup: f64,
    /// Medians of requests and bytes per lookup.
    pub requests_p50: f64,
    pub bytes_p50: f64,
    /// Lookups judged on the true best offers for their policy, and the share that got
    /// them.
    pub best_judged: usize,
    pub best_found: f64,
    /// Round trips of the walks, one after another: median and 99th percentile.
    pub rounds_p50: f64,
    pub rounds_p99: f64,
    /// Latency in median round trips between nodes (when links have one).
    pub p50_rtts: Option<f64>,
    pub p99_rtts: Option<f64>,
    pub median_rtt_ms: Option<f64>,
    /// Publish → visible for new prices: p50, p95, and those never seen.
    pub visible_p50_ms: f64,
    pub visible_p95_ms: f64,
    pub visible: usize,
    pub never_visible: usize,
    /// Questions asked again: from the cache p50 and p95 latency, p50 age, the share of
    /// answers from the cache, and of answers showing a replaced offer.
    pub cached: usize,
    pub cache_p50_ms: f64,
    pub cache_p95_ms: f64,
    pub cache_age_p50_ms: f64,
    pub cache_hits: f64,
    pub cache_superseded: f64,
    /// Nodes that answered lookups as holders, all their answers, and the busiest one's
    /// share of them.
    pub holders_answering: usize,
    pub holder_answers: u64,
    pub busiest_holder_share: f64,
    pub discoverable_p50_ms: f64,
    pub discoverable_p95_ms: f64,
    /// Gateways whose offer a probe found, and those it never found within the deadline.
    pub gateways_discovered: usize,
    pub gateways_never_discovered: usize,
    pub stale_returned: usize,
    pub withdrawn_returned: usize,
    pub expired_returned: usize,
    pub crashed_returned: usize,
    pub calls: usize,
    pub calls_answered: usize,
    pub call_setup_p50_ms: f64,
    pub call_setup_p95_ms: f64,
    pub rss_per_node_mib: f64,
    pub cpu_seconds: f64,
    /// Cores busy on average during the load, and the timer lag's p50, p99 and largest.
    pub load_cores_busy: f64,
    pub timer_lag_p50_ms: f64,
    pub timer_lag_p99_ms: f64,
    pub timer_lag_max_ms: f64,
    /// The mean timer lag while the slowest 5 % of lookups ran, and while the rest did.
    pub lag_slowest_ms: f64,
    pub lag_rest_ms: f64,
    pub routing_table_mean: f64,
    pub routing_table_ideal: f64,
    pub connections_mean: f64,
}

/// How often the timer-lag probe asks to be woken during the load.
pub const LAG_PROBE_PERIOD: Duration = Duration::from_millis(10);

/// A figure at a moment of the load: `at_ms` since the load began.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Moment {
    pub at_ms: u64,
    pub ms: f64,
}

/// A join, leave or new price during the load, and how long the simulator took to start it
/// (a join: the node's start; a leave: its withdrawal and stop; a price: the signing).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChurnEvent {
    pub at_ms: u64,
    pub event: &'static str,
    pub took_ms: f64,
}

/// Until `end`, sleeps [`LAG_PROBE_PERIOD`] at a time and records how much later than asked
/// each wake-up came, at its moment since `started`. On a runtime whose cores are all
/// busy, that is the queue a lookup's every step waits in, whatever the network does.
pub async fn probe_timer_lag(started: std::time::Instant, end: std::time::Instant) -> Vec<Moment> {
    let mut lag = Vec::new();
    while std::time::Instant::now() < end {
        let asked = std::time::Instant::now();
        tokio::time::sleep(LAG_PROBE_PERIOD).await;
        let late = asked.elapsed().saturating_sub(LAG_PROBE_PERIOD);
        lag.push(Moment {
            at_ms: u64::try_from(asked.duration_since(started).as_millis()).unwrap_or(u64::MAX),
            ms: late.as_secs_f64() * 1000.0,
        });
    }
    lag
}

/// The mean timer lag while lookups ran, for the slowest 5 % (one in twenty, rounded up)
/// and for the rest: the lag samples taken between each lookup's start and end, averaged
/// over the lookups of each group. A lookup is a chain of some thirty steps, each a task
/// woken on the shared runtime; if slow lookups wait in its queue rather than walk
/// further, they ran while the lag was high. `(slowest, rest)`; 0 for a group without
/// samples.
pub fn lag_during_lookups(lookups: &[(u64, f64)], lag: &[Moment]) -> (f64, f64) {
    let mut by_time: Vec<Moment> = lag.to_vec();
    by_time.sort_by_key(|m| m.at_ms);
    let during = |&(at_ms, ms): &(u64, f64)| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let end = at_ms + ms.ceil().max(0.0) as u64;
        let from = by_time.partition_point(|m| m.at_ms < at_ms);
        let to = by_time.partition_point(|m| m.at_ms <= end);
        let window = &by_time[from..to];
        (!window.is_empty()).then(|| mean(window.iter().map(|m| m.ms)))
    };
    let mut slowest_first = lookups.to_vec();
    slowest_first.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slowest = slowest_first.len().div_ceil(20);
    let (slow, rest) = slowest_first.split_at(slowest);
    (
        mean(slow.iter().filter_map(during)),
        mean(rest.iter().filter_map(during)),
    )
}

/// The `p`th percentile (nearest rank) of `values`; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    // In 1..=len by the clamp; a percentile outside 0..=100 is clamped too.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(0.0) as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn share(count: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

impl RunResult {
    /// The headline figures.
    pub fn summary(&self) -> Summary {
        let latencies: Vec<f64> = self.lookups.iter().map(|l| l.latency_ms).collect();
        let counted: Vec<&LookupSample> = self.lookups.iter().filter(|l| l.expected > 0).collect();
        let outcome = |o: Outcome| {
            share(
                counted.iter().filter(|l| l.outcome == o).count(),
                counted.len(),
            )
        };
        let setups: Vec<f64> = self.calls.iter().filter_map(|c| c.setup_ms).collect();
        let judged: Vec<bool> = self.lookups.iter().filter_map(|l| l.best_found).collect();
        let requests: Vec<f64> = self.lookups.iter().map(|l| l.requests as f64).collect();
        let bytes: Vec<f64> = self.lookups.iter().map(|l| l.bytes as f64).collect();
        let rounds: Vec<f64> = self.lookups.iter().map(|l| f64::from(l.rounds)).collect();
        let in_rtts = |ms: f64| {
            self.median_rtt_ms
                .filter(|rtt| *rtt > 0.0)
                .map(|rtt| ms / rtt)
        };
        let hits: Vec<&CacheSample> = self.cached.iter().filter(|c| c.from_cache).collect();
        let hit_latencies: Vec<f64> = hits.iter().map(|c| c.latency_ms).collect();
        let ages: Vec<f64> = hits.iter().map(|c| c.age_ms).collect();
        let p50_ms = percentile(&latencies, 50.0);
        let p99_ms = percentile(&latencies, 99.0);
        let lags: Vec<f64> = self.timer_lag.iter().map(|m| m.ms).collect();
        let timed: Vec<(u64, f64)> = self
            .lookups
            .iter()
            .map(|l| (l.at_ms, l.latency_ms))
            .collect();
        let (lag_slowest_ms, lag_rest_ms) = lag_during_lookups(&timed, &self.timer_lag);
        Summary {
            settings: self.settings,
            method: self.method,
            total_nodes: self.total_nodes,
            churn_per_minute: self.churn_per_minute,
            lookups: self.lookups.len(),
            p50_ms,
            p95_ms: percentile(&latencies, 95.0),
            p99_ms,
            max_ms: latencies.iter().copied().fold(0.0, f64::max),
            all_found: outcome(Outcome::All),
            some_found: outcome(Outcome::Some),
            none_found: outcome(Outcome::None),
            requests_per_lookup: mean(self.lookups.iter().map(|l| l.requests as f64)),
            bytes_per_lookup: mean(self.lookups.iter().map(|l| l.bytes as f64)),
            requests_p50: percentile(&requests, 50.0),
            bytes_p50: percentile(&bytes, 50.0),
            best_judged: judged.len(),
            best_found: share(judged.iter().filter(|b| **b).count(), judged.len()),
            rounds_p50: percentile(&rounds, 50.0),
            rounds_p99: percentile(&rounds, 99.0),
            p50_rtts: in_rtts(p50_ms),
            p99_rtts: in_rtts(p99_ms),
            median_rtt_ms: self.median_rtt_ms,
            visible_p50_ms: percentile(&self.visible_ms, 50.0),
            visible_p95_ms: percentile(&self.visible_ms, 95.0),
            visible: self.visible_ms.len(),
            never_visible: self.never_visible,
            cached: self.cached.len(),
            cache_p50_ms: percentile(&hit_latencies, 50.0),
            cache_p95_ms: percentile(&hit_latencies, 95.0),
            cache_age_p50_ms: percentile(&ages, 50.0),
            cache_hits: share(hits.len(), self.cached.len()),
            cache_superseded: share(
                self.cached.iter().filter(|c| c.superseded > 0).count(),
                self.cached.len(),
            ),
            holders_answering: self.holder_answers.len(),
            holder_answers: self.holder_answers.iter().sum(),
            busiest_holder_share: {
                let total: u64 = self.holder_answers.iter().sum();
                let busiest = self.holder_answers.first().copied().unwrap_or(0);
                if total == 0 {
                    0.0
                } else {
                    busiest as f64 / total as f64
                }
            },
            discoverable_p50_ms: percentile(&self.discoverable_ms, 50.0),
            discoverable_p95_ms: percentile(&self.discoverable_ms, 95.0),
            gateways_discovered: self.discoverable_ms.len(),
            gateways_never_discovered: self.never_discovered,
            stale_returned: self.lookups.iter().map(|l| l.stale_returned).sum(),
            withdrawn_returned: self.lookups.iter().map(|l| l.withdrawn_returned).sum(),
            expired_returned: self.lookups.iter().map(|l| l.expired_returned).sum(),
            crashed_returned: self.lookups.iter().map(|l| l.crashed_returned).sum(),
            calls: self.calls.len(),
            calls_answered: self.calls.iter().filter(|c| c.answered).count(),
            call_setup_p50_ms: percentile(&setups, 50.0),
            call_setup_p95_ms: percentile(&setups, 95.0),
            rss_per_node_mib: self.rss_after_build_bytes as f64
                / self.total_nodes.max(1) as f64
                / (1024.0 * 1024.0),
            cpu_seconds: self.cpu_seconds,
            load_cores_busy: if self.load_seconds > 0.0 {
                self.load_cpu_seconds / self.load_seconds
            } else {
                0.0
            },
            timer_lag_p50_ms: percentile(&lags, 50.0),
            timer_lag_p99_ms: percentile(&lags, 99.0),
            timer_lag_max_ms: lags.iter().copied().fold(0.0, f64::max),
            lag_slowest_ms,
            lag_rest_ms,
            routing_table_mean: self.routing_table_mean,
            routing_table_ideal: self.routing_table_ideal,
            connections_mean: self.connections_mean,
        }
    }
}

/// Keeps this process's memory in small pages. mimalloc asks for transparent huge pages
/// on its arenas (`MADV_HUGEPAGE`), and a huge page stays resident whole while any of its
/// 2 MiB is used: at 1,056 nodes that was 3.42 MiB of resident memory a node, against
/// 3.04 without (peak RSS 3.70 against 3.29 GiB, `simulations/README.md`).
/// `prctl(PR_SET_THP_DISABLE)` applies to the whole process, including memory already
/// mapped.
#[cfg(target_os = "linux")]
pub fn disable_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

/// Huge pages are a Linux matter.
#[cfg(not(target_os = "linux"))]
pub fn disable_huge_pages() -> std::io::Result<()> {
    Ok(())
}

/// This process's resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// CPU time this process has used, user and system.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports in clock ticks of 1/100 s (USER_HZ).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// How many entries a full Kademlia routing table holds in a network of `nodes` with
/// buckets of `k`: bucket `i` can only hold the nodes at that distance, about `nodes / 2^i`.
pub fn ideal_routing_table(nodes: usize, k: usize) -> f64 {
    let others = nodes.saturating_sub(1) as f64;
    (1..=256)
        .map(|i| (others / 2f64.powi(i)).min(k as f64))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_for_the_whole_process() {
        let thp_enabled = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_owned()))
        };
        disable_huge_pages().unwrap_or_else(|e| panic!("prctl refused: {e}"));
        assert_eq!(thp_enabled().as_deref(), Some("0"));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn a_full_routing_table_grows_with_the_log_of_the_network() {
        assert!((ideal_routing_table(21, 20) - 20.0).abs() < 1.0);
        let at_5000 = ideal_routing_table(5000, 20);
        assert!((150.0..200.0).contains(&at_5000), "{at_5000}");
    }

    #[test]
    fn the_timer_lag_probe_sees_a_core_held_by_other_work() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let held = Duration::from_millis(60);
        let lag = runtime.block_on(async {
            let started = std::time::Instant::now();
            let probe = tokio::spawn(probe_timer_lag(
                started,
                started + Duration::from_millis(300),
            ));
            // Another task takes the only core while the probe sleeps.
            tokio::time::sleep(Duration::from_millis(15)).await;
            std::thread::sleep(held);
            probe.await.unwrap()
        });
        let worst = lag.iter().map(|m| m.ms).fold(0.0, f64::max);
        assert!(
            worst >= (held - LAG_PROBE_PERIOD).as_secs_f64() * 1000.0,
            "the probe saw at most {worst} ms of lag while the core was held {held:?}"
        );
    }

    #[test]
    fn lookups_that_ran_while_the_queue_was_long_are_told_apart() {
        // A lag of 1 ms every 10 ms, 20 ms between 500 and 700 ms.
        let lag: Vec<Moment> = (0..100u64)
            .map(|i| Moment {
                at_ms: i * 10,
                ms: if (500..700).contains(&(i * 10)) {
                    20.0
                } else {
                    1.0
                },
            })
            .collect();
        // Nineteen quick lookups outside the long queue, one slow one inside it.
        let mut lookups: Vec<(u64, f64)> = (0..19u64).map(|i| (i * 20, 8.0)).collect();
        lookups.push((520, 150.0));
        let (slowest, rest) = lag_during_lookups(&lookups, &lag);
        assert_eq!((slowest, rest), (20.0, 1.0));
        assert_eq!(lag_during_lookups(&[], &lag), (0.0, 0.0));
        assert_eq!(lag_during_lookups(&lookups, &[]), (0.0, 0.0));
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        assert!(rss_bytes() > 0);
        let _ = cpu_time();
    }
}
