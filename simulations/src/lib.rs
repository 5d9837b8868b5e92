//! Simulations of Interlink networks: many real nodes in one process, their discovery
//! under load and churn, measured and reported.
//!
//! A run ([`run_point`]) builds a [`world::World`] of real nodes at the scenario's join
//! rate, lets it settle, then for the scenario's duration runs the callers' load, the
//! churn and the samplers side by side, and tears it all down. A scenario may sweep node
//! counts or churn rates, and may repeat every point with libp2p's default Kademlia
//! settings for comparison ([`run_scenario`]). [`report`] turns the results into a
//! table, CSV and JSON, SVG plots and a markdown report.

pub mod legacy;
pub mod links;
pub mod load;
pub mod measure;
pub mod report;
pub mod scenario;
pub mod world;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use interlink_node::lock::LockExt;
use interlink_node::node::NodeError;

use crate::load::{CallerLoad, Samples};
use crate::measure::{RunResult, cpu_time, ideal_routing_table, rss_bytes};
use crate::scenario::{KadSettings, LinkModelChoice, Method, Scenario};
use crate::world::World;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("the network did not settle: {0}")]
    Settle(String),
}

/// Where a run stands, for a progress bar.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Starting nodes: so many of so many, and the open connections per node lately.
    Building {
        started: usize,
        of: usize,
        connections: f64,
    },
    /// Waiting for the gateways' offers and the warm-up.
    Settling,
    /// The load runs: seconds done, lookups so far.
    Running {
        elapsed: Duration,
        of: Duration,
        lookups: usize,
    },
    TearingDown,
}

/// Runs one point of a scenario with one Kademlia setting and one discovery method.
pub async fn run_point(
    scenario: &Scenario,
    settings: KadSettings,
    method: Method,
    progress: &(dyn Fn(Phase) + Send + Sync),
) -> Result<RunResult, SimError> {
    let began = Instant::now();
    let cpu_before = cpu_time();
    let samples = Samples::default();
    let mut world = build(scenario, settings, method, &samples, progress).await?;
    let result = measure(&mut world, settings, began, cpu_before, &samples, progress).await;
    progress(Phase::TearingDown);
    world.tear_down().await;
    result
}

/// Runs a node sweep with one Kademlia setting and one discovery method in one network
/// that grows: built at the first size and measured, then grown by joins to each next size
/// and measured again, so that the largest size costs its own joins only. `finished` gets
/// each point's result.
pub async fn run_growing(
    scenario: &Scenario,
    settings: KadSettings,
    method: Method,
    progress: &(dyn Fn(Phase) + Send + Sync),
    finished: &mut (dyn FnMut(RunResult) + Send),
) -> Result<(), SimError> {
    let mut points = scenario.points();
    points.sort_by_key(|point| point.nodes);
    let Some((first, larger)) = points.split_first() else {
        return Ok(());
    };
    let began = Instant::now();
    let cpu_before = cpu_time();
    let samples = Samples::default();
    let mut world = build(first, settings, method, &samples, progress).await?;
    let mut result = measure(&mut world, settings, began, cpu_before, &samples, progress).await;
    for point in larger {
        let Ok(done) = result else { break };
        finished(done);
        let began = Instant::now();
        let cpu_before = cpu_time();
        world.scenario = point.clone();
        let grown = world.grow_to(point.nodes, &building(point, progress)).await;
        result = match grown {
            Ok(_) => {
                // measure() waits for every gateway's publication to be acknowledged.
                let samples = Samples::default();
                world.republish_gateways(&samples).await;
                measure(&mut world, settings, began, cpu_before, &samples, progress).await
            }
            Err(e) => Err(e.into()),
        };
    }
    progress(Phase::TearingDown);
    world.tear_down().await;
    finished(result?);
    Ok(())
}

/// Starts the nodes of `scenario`, reporting each.
async fn build(
    scenario: &Scenario,
    settings: KadSettings,
    method: Method,
    samples: &Samples,
    progress: &(dyn Fn(Phase) + Send + Sync),
) -> Result<World, SimError> {
    World::build(
        scenario,
        settings.dht(),
        method,
        samples,
        &building(scenario, progress),
    )
    .await
}

/// Reports each node started toward `scenario`'s size as a building phase.
fn building(scenario: &Scenario, progress: &(dyn Fn(Phase) + Send + Sync)) -> impl Fn(usize, f64) {
    let of = scenario.total_nodes();
    move |started, connections| {
        progress(Phase::Building {
            started,
            of,
            connections,
        });
    }
}

/// Measures `world` as it stands: waits for the gateways' offers and the warm-up, then
/// runs the callers' load, the churn and the samplers for the scenario's duration. The
/// build (or growth) began at `began`, when the process had used `cpu_before`.
async fn measure(
    world: &mut World,
    settings: KadSettings,
    began: Instant,
    cpu_before: Duration,
    samples: &Samples,
    progress: &(dyn Fn(Phase) + Send + Sync),
) -> Result<RunResult, SimError> {
    let scenario = world.scenario.clone();
    let build_secs = began.elapsed().as_secs_f64();
    let rss_after_build = rss_bytes();

    progress(Phase::Settling);
    for gateway in &world.gateways {
        if let Some(publisher) = gateway.node.publisher() {
            publisher
                .wait_replicated(Duration::from_secs(60))
                .await
                .map_err(|e| SimError::Settle(format!("a gateway could not publish: {e}")))?;
        }
    }
    tokio::time::sleep(Duration::from_secs(scenario.warmup_secs)).await;

    let duration = Duration::from_secs(scenario.duration_secs);
    let started = Instant::now();
    let end = started + duration;
    let load_cpu_before = cpu_time();
    let lag_probe = tokio::spawn(measure::probe_timer_lag(started, end));
    let covering = covering(&world.truth, &scenario.routes.countries);
    let answered_before = holder_answers(world).await;
    let mut callers = Vec::new();
    let contexts: Vec<_> = world.callers.iter().map(|node| node.caller()).collect();
    let caller_load = CallerLoad {
        lookups_per_minute: scenario.lookups_per_minute,
        calls_per_minute: scenario.calls_per_minute,
        results: scenario.results,
        policies: scenario
            .policies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        repeat_share: scenario.repeat_share,
        method: world.method,
    };
    for (index, context) in contexts.into_iter().enumerate() {
        let rng = world.fork_rng();
        callers.push(tokio::spawn(load::run_caller(
            index,
            context,
            world.truth.clone(),
            rng,
            caller_load.clone(),
            started,
            end,
            samples.clone(),
        )));
    }
    let sampled = world.sample_clients(32);
    let watcher = {
        let samples = samples.clone();
        async move {
            let mut peak = rss_bytes();
            let mut tables = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let mut ticks = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                peak = peak.max(rss_bytes());
                // Routing tables every 10 s: a status from 32 nodes is cheap but not free.
                if ticks.is_multiple_of(5) {
                    tables.push(load::sample_tables(&sampled).await);
                }
                ticks += 1;
                let lookups = samples.lookups.lock().map(|l| l.len()).unwrap_or(0);
                progress(Phase::Running {
                    elapsed: started.elapsed().min(duration),
                    of: duration,
                    lookups,
                });
            }
            (peak, tables)
        }
    };
    let (churn, (rss_peak, tables)) = tokio::join!(load::run_churn(world, end, samples), watcher);
    for caller in callers {
        let _ = caller.await;
    }
    let load_cpu_seconds = cpu_time().saturating_sub(load_cpu_before).as_secs_f64();
    let load_seconds = started.elapsed().as_secs_f64();
    let timer_lag = lag_probe.await.unwrap_or_default();

    let node_count = world.node_count();
    let (table_sum, connection_sum) = tables
        .iter()
        .fold((0.0, 0.0), |(t, c), (a, b)| (t + a, c + b));
    let sampled_rounds = tables.len().max(1) as f64;
    let lookups = load::take(&samples.lookups);
    let cached = load::take(&samples.cached);
    let calls = load::take(&samples.calls);
    let discoverable_ms = load::take(&samples.discoverable_ms);
    let visible_ms = load::take(&samples.visible_ms);
    let count = |counter: &std::sync::Mutex<usize>| std::mem::take(&mut *counter.locked());
    let never_discovered = count(&samples.never_discovered);
    let never_visible = count(&samples.never_visible);
    let answered_after = holder_answers(world).await;
    let mut answers: Vec<u64> = answered_after
        .iter()
        .map(|(peer, after)| after.saturating_sub(answered_before.get(peer).copied().unwrap_or(0)))
        .filter(|answers| *answers > 0)
        .collect();
    answers.sort_unstable_by(|a, b| b.cmp(a));
    let median_rtt_ms = (scenario.links.model == LinkModelChoice::Regions)
        .then(|| links::median_rtt(scenario.seed, node_count as u64).as_secs_f64() * 1000.0);
    Ok(RunResult {
        settings,
        method: world.method,
        median_rtt_ms,
        dht_nodes: scenario.nodes,
        total_nodes: scenario.total_nodes(),
        churn_per_minute: scenario
            .churn
            .joins_per_minute
            .max(scenario.churn.leaves_per_minute),
        build_secs,
        lookups,
        cached,
        calls,
        discoverable_ms,
        never_discovered,
        visible_ms,
        never_visible,
        reprices: churn.reprices,
        covering,
        holder_answers: answers,
        joins: churn.joins,
        clean_leaves: churn.clean_leaves,
        crashes: churn.crashes,
        rss_after_build_bytes: rss_after_build,
        rss_peak_bytes: rss_peak,
        cpu_seconds: cpu_time().saturating_sub(cpu_before).as_secs_f64(),
        wall_seconds: began.elapsed().as_secs_f64(),
        load_cpu_seconds,
        load_seconds,
        timer_lag,
        churn_events: churn.events,
        routing_table_mean: table_sum / sampled_rounds,
        routing_table_ideal: ideal_routing_table(node_count, settings.dht().replication_factor),
        connections_mean: connection_sum / sampled_rounds,
    })
}

/// Runs every point of a scenario, each with Interlink's settings and, if the scenario
/// asks, with libp2p's defaults, and with each discovery method it names; `progress` hears which point runs and how it goes, and
/// `finished` gets the results so far after each point (so that a long sweep cut short
/// still leaves its finished points).
pub async fn run_scenario(
    scenario: &Scenario,
    progress: &(dyn Fn(usize, usize, &str, Phase) + Send + Sync),
    finished: &mut (dyn FnMut(&[RunResult]) + Send),
) -> Result<Vec<RunResult>, SimError> {
    let mut settings = vec![KadSettings::Project];
    if scenario.compare_default {
        settings.push(KadSettings::Libp2pDefault);
    }
    let variants: Vec<(KadSettings, Method)> = scenario
        .methods()
        .into_iter()
        .flat_map(|method| settings.iter().map(move |&setting| (setting, method)))
        .collect();
    let points = scenario.points();
    let runs = points.len() * variants.len();
    let mut results = Vec::with_capacity(runs);
    if scenario.sweep.nodes.len() > 1 {
        // Results so far, read by the progress bar while the growing run adds to them.
        let done = AtomicUsize::new(0);
        for &(setting, method) in &variants {
            run_growing(
                scenario,
                setting,
                method,
                &|phase| {
                    let label = variant_label(setting, method);
                    progress(done.load(Ordering::Relaxed), runs, &label, phase)
                },
                &mut |result| {
                    results.push(result);
                    done.store(results.len(), Ordering::Relaxed);
                    finished(&results);
                },
            )
            .await?;
        }
        return Ok(results);
    }
    for point in &points {
        for &(setting, method) in &variants {
            let index = results.len();
            let label = variant_label(setting, method);
            let result = run_point(point, setting, method, &|phase| {
                progress(index, runs, &label, phase)
            })
            .await?;
            results.push(result);
            finished(&results);
        }
    }
    Ok(results)
}

/// How many live, published gateways cover each of `countries` (any route in it).
fn covering(truth: &world::Truth, countries: &[String]) -> Vec<(String, usize)> {
    let snapshot = truth.snapshot();
    countries
        .iter()
        .map(|code| {
            let count = snapshot
                .values()
                .filter(|g| g.ended.is_none() && g.published_at.is_some())
                .filter(|g| {
                    g.routes
                        .iter()
                        .any(|r| r.digits().starts_with(code.as_str()))
                })
                .count();
            (code.clone(), count)
        })
        .collect()
}

/// How a run's settings and method read in progress lines.
fn variant_label(settings: KadSettings, method: Method) -> String {
    match settings {
        KadSettings::Project => method.label().to_owned(),
        other => format!("{}, {}", method.label(), other.label()),
    }
}

/// How many lookups each server node has answered as a holder so far, by peer.
async fn holder_answers(world: &World) -> std::collections::HashMap<libp2p::PeerId, u64> {
    let clients: Vec<_> = world
        .nodes
        .iter()
        .chain(world.gateways.iter().map(|g| &g.node))
        .map(|node| node.client().clone())
        .collect();
    let statuses = futures::future::join_all(
        clients
            .iter()
            .map(|client| async move { client.status().await.ok() }),
    )
    .await;
    statuses
        .into_iter()
        .flatten()
        .map(|status| (status.peer_id, status.index_answers))
        .collect()
}
