//! The simulated network: real nodes, what is true about them, and what changes.
//!
//! Every node is an [`interlink_node::node::Node`]: the same swarm, record validation,
//! publisher and discovery an operator runs, on libp2p's in-memory transport (or loopback
//! TCP). Beside the nodes the world keeps the [`Truth`]: which gateways are up, since when
//! their offers are published, and which have withdrawn or crashed. Lookups are judged
//! against it.
//!
//! Node identities come from the scenario's seeded generator, so a seed builds the same
//! network; timing, as in any network, does not repeat exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use interlink_node::config::{DhtSection, GatewayPlan};
use interlink_node::local_network::{caller_spec, local_spec};
use interlink_node::lock::LockExt;
use interlink_node::network::Client;
use interlink_node::node::{Node, NodeError, NodeSpec};
use interlink_protocol::offer::{ClaimedQuality, Mos, Permille, Route, Tariff};
use interlink_protocol::{Currency, E164, Prefix, ProviderId, SignedOffer};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::SimError;
use crate::load::{self, Publication, Samples};
use crate::scenario::{LinkModelChoice, Method, Scenario};
use crate::{legacy, links};

/// What is known to be true about one gateway.
#[derive(Clone, Debug)]
pub struct GatewayTruth {
    pub routes: Vec<Prefix>,
    /// When its node started publishing.
    pub started_at: Instant,
    /// When other nodes first acknowledged its offer.
    pub published_at: Option<Instant>,
    /// The newest offer other nodes acknowledged: its `seq`, and when.
    pub latest: Option<(u64, Instant)>,
    /// The last few offers other nodes acknowledged, oldest first, with when.
    pub offers: Vec<(SignedOffer, Instant)>,
    pub ended: Option<(Instant, Ending)>,
}

/// Offers kept per gateway in the truth: enough for a change in flight.
const VERSIONS_KEPT: usize = 3;

/// How a gateway left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It shut down cleanly: its signed withdrawal is published.
    Withdrawn,
    /// It vanished: its offer stays valid until it expires.
    Crashed,
}

/// The gateways, as they really are. Shared by the churn and the load.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    gateways: Arc<Mutex<HashMap<ProviderId, GatewayTruth>>>,
}

impl Truth {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProviderId, GatewayTruth>> {
        self.gateways.locked()
    }

    /// A copy of what is known now.
    pub fn snapshot(&self) -> HashMap<ProviderId, GatewayTruth> {
        self.lock().clone()
    }

    fn started(&self, provider: ProviderId, routes: Vec<Prefix>) {
        self.lock().insert(
            provider,
            GatewayTruth {
                routes,
                started_at: Instant::now(),
                published_at: None,
                latest: None,
                offers: Vec::new(),
                ended: None,
            },
        );
    }

    fn published(&self, offer: &SignedOffer) {
        if let Some(gateway) = self.lock().get_mut(&offer.provider()) {
            let now = Instant::now();
            gateway.published_at.get_or_insert(now);
            gateway.latest = Some((offer.seq(), now));
            gateway.routes = offer
                .offer()
                .routes
                .iter()
                .map(|r| r.prefix.clone())
                .collect();
            gateway.offers.push((offer.clone(), now));
            if gateway.offers.len() > VERSIONS_KEPT {
                gateway.offers.remove(0);
            }
        }
    }

    fn ended(&self, provider: ProviderId, how: Ending) {
        if let Some(gateway) = self.lock().get_mut(&provider) {
            gateway.ended = Some((Instant::now(), how));
        }
    }
}

/// Ticks at the scenario's join rate; a tick missed (a slow join) delays the next.
fn join_pace(scenario: &Scenario) -> tokio::time::Interval {
    let mut pace = tokio::time::interval(scenario.join_interval());
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pace
}

/// A gateway node and its identity.
#[derive(Debug)]
pub struct SimGateway {
    pub provider: ProviderId,
    pub node: Node,
}

/// The nodes of a run.
#[derive(Debug)]
pub struct World {
    pub scenario: Scenario,
    pub dht: DhtSection,
    pub bootstrap: Node,
    pub bootstrap_addr: Multiaddr,
    /// DHT nodes that are up.
    pub nodes: Vec<Node>,
    pub gateways: Vec<SimGateway>,
    pub callers: Vec<Node>,
    /// The caller that measures time to discoverable.
    pub probe: Node,
    pub truth: Truth,
    /// How callers discover gateways in this run.
    pub method: Method,
    currency: Currency,
    rng: StdRng,
    gateways_started: usize,
    /// Numbers given to the nodes started, for their links.
    nodes_started: u64,
}

impl World {
    /// Starts the bootstrap node and the probe, then the DHT nodes, gateways and callers at
    /// the scenario's join rate; `progress` hears of each node started.
    ///
    /// Each gateway gets a probe from the moment it starts, measuring how long until its
    /// offer can be found.
    pub async fn build(
        scenario: &Scenario,
        mut dht: DhtSection,
        method: Method,
        samples: &Samples,
        progress: &dyn Fn(usize, f64),
    ) -> Result<World, SimError> {
        let currency = Currency::new(&scenario.routes.currency)
            .map_err(|e| SimError::Scenario(format!("routes.currency: {e}")))?;
        dht.bootstrap_interval_secs = scenario.bootstrap_interval_secs;
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let mut numbers = 0u64;
        let mut secured = |mut spec: NodeSpec| {
            spec.settings.memory_security = scenario.security.memory_security();
            spec.settings.memory_links = linked(scenario, numbers);
            numbers += 1;
            spec
        };
        let bootstrap = Node::start(
            secured(local_spec(scenario.transport, None, None, &dht)),
            keypair(&mut rng),
        )
        .await?;
        let bootstrap_addr =
            bootstrap
                .dialable_addrs()
                .await
                .into_iter()
                .next()
                .ok_or(SimError::Node(NodeError::Network(
                    interlink_node::network::NetworkError::NoPeers,
                )))?;
        let probe = Node::start(
            secured(caller_spec(vec![bootstrap_addr.clone()], &dht)),
            keypair(&mut rng),
        )
        .await?;
        let mut world = World {
            scenario: scenario.clone(),
            dht,
            bootstrap,
            bootstrap_addr,
            nodes: Vec::with_capacity(scenario.nodes),
            gateways: Vec::with_capacity(scenario.gateways),
            callers: Vec::with_capacity(scenario.callers),
            probe,
            truth: Truth::default(),
            method,
            currency,
            rng,
            gateways_started: 0,
            nodes_started: numbers,
        };
        let connections = world.grow_to(scenario.nodes, progress).await?;
        let mut started = world.node_count();
        let mut pace = join_pace(scenario);
        for _ in 0..scenario.gateways {
            pace.tick().await;
            let provider = world.start_gateway().await?;
            load::probe_new(&world, provider, samples);
            started += 1;
            progress(started, connections);
        }
        for _ in 0..scenario.callers {
            let spec = world.linked(caller_spec(vec![world.bootstrap_addr.clone()], &world.dht));
            let node = Node::start(spec, keypair(&mut world.rng)).await?;
            world.callers.push(node);
            started += 1;
            progress(started, connections);
        }
        Ok(world)
    }

    /// Starts DHT nodes at the scenario's join rate until there are `nodes`; `progress`
    /// hears of each. Returns the open connections per node last sampled (every 50 nodes:
    /// what the joins cost).
    pub async fn grow_to(
        &mut self,
        nodes: usize,
        progress: &dyn Fn(usize, f64),
    ) -> Result<f64, NodeError> {
        let mut pace = join_pace(&self.scenario);
        let mut connections = 0.0;
        while self.nodes.len() < nodes {
            pace.tick().await;
            self.start_dht_node().await?;
            if self.nodes.len().is_multiple_of(50) {
                connections = load::sample_tables(&self.spread_clients(16)).await.1;
            }
            progress(self.node_count(), connections);
        }
        Ok(connections)
    }

    /// Has every gateway publish its offer again at once (a higher `seq`), as each does at
    /// half its offer's lifetime. After the network grew, the nodes closest to a key are
    /// mostly new ones that never stored it; in a real network the gateways reach them at
    /// their next republication, which this brings forward. A publication no peer
    /// acknowledged is retried by its publisher. The probe times each republication until
    /// a lookup finds it; this returns when every republication was found or its probe
    /// gave up, so that the probe's lookups do not share the cores with those measured next.
    pub async fn republish_gateways(&self, samples: &Samples) {
        let since = Instant::now();
        let mut republications = Vec::new();
        let mut probes = Vec::new();
        for gateway in &self.gateways {
            let Some(publisher) = gateway.node.publisher() else {
                continue;
            };
            let Some(latest) = publisher.latest() else {
                continue;
            };
            let offer = latest.offer.offer();
            probes.push(tokio::spawn(load::probe(
                self.probe.client().clone(),
                self.truth.clone(),
                Publication {
                    provider: gateway.provider,
                    since: Some(since),
                    after_seq: offer.seq,
                },
                self.method,
                std::sync::Arc::clone(&samples.discoverable_ms),
                std::sync::Arc::clone(&samples.never_discovered),
            )));
            republications.push(publisher.republish());
        }
        let outcomes = futures::future::join_all(republications).await;
        let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
        if failed > 0 {
            tracing::warn!(
                failed,
                "gateways' republications not acknowledged; their publishers retry"
            );
        }
        futures::future::join_all(probes).await;
    }

    /// `spec` secured as the scenario says, with the links of the next node's number.
    fn linked(&mut self, mut spec: NodeSpec) -> NodeSpec {
        spec.settings.memory_security = self.scenario.security.memory_security();
        spec.settings.memory_links = linked(&self.scenario, self.nodes_started);
        self.nodes_started += 1;
        spec
    }

    async fn server_spec(&mut self, gateway: Option<GatewayPlan>) -> NodeSpec {
        let mut spec = local_spec(
            self.scenario.transport,
            Some(self.bootstrap_addr.clone()),
            gateway,
            &self.dht,
        );
        spec.settings.idle_connection_timeout =
            Duration::from_secs(self.scenario.idle_connection_timeout_secs);
        let mut spec = self.linked(spec);
        spec.settings.dht.bootstrap_interval_secs =
            spread_interval(self.scenario.bootstrap_interval_secs, &mut self.rng);
        let others = (self.scenario.bootstrap_peers - 1).min(self.nodes.len());
        for index in rand::seq::index::sample(&mut self.rng, self.nodes.len(), others) {
            let address = self.nodes[index].dialable_addrs().await.into_iter().next();
            spec.settings.bootstrap.extend(address);
        }
        spec
    }

    /// Starts one more DHT node.
    pub async fn start_dht_node(&mut self) -> Result<(), NodeError> {
        let spec = self.server_spec(None).await;
        let node = Node::start(spec, keypair(&mut self.rng)).await?;
        self.nodes.push(node);
        Ok(())
    }

    /// Starts one more gateway with random routes and prices; its publication is tracked
    /// in the truth.
    pub async fn start_gateway(&mut self) -> Result<ProviderId, NodeError> {
        self.gateways_started += 1;
        let plan = GatewayPlan {
            offer_ttl: Duration::from_secs(self.scenario.offer_ttl_secs),
            quality: self.random_quality(),
            ..GatewayPlan::new(
                &format!("Gateway {}", self.gateways_started),
                self.random_routes(),
            )
        };
        let prefixes = plan.routes.iter().map(|r| r.prefix.clone()).collect();
        let spec = self.server_spec(Some(plan)).await;
        let keypair = keypair(&mut self.rng);
        let provider = interlink_node::identity::secret_key(&keypair)
            .map(|k| k.provider_id())
            .ok_or(NodeError::NotEd25519)?;
        self.truth.started(provider, prefixes);
        let node = Node::start(spec, keypair).await?;
        if let Some(publisher) = node.publisher() {
            let mut published = publisher.subscribe();
            let truth = self.truth.clone();
            // The first design found gateways by their provider records: announced when
            // an offer is first acknowledged, and when its countries change.
            let announcer = (self.method == Method::Providers).then(|| node.client().clone());
            tokio::spawn(async move {
                let mut last_seq = None;
                let mut announced = None;
                loop {
                    let replicated = published
                        .borrow_and_update()
                        .as_ref()
                        .filter(|p| p.replicated)
                        .map(|p| p.offer.clone());
                    if let Some(offer) = replicated
                        && last_seq != Some(offer.seq())
                    {
                        last_seq = Some(offer.seq());
                        if let Some(client) = &announcer {
                            let countries = offer.offer().country_codes();
                            if announced.as_ref() != Some(&countries) {
                                legacy::announce(client, &offer).await;
                                announced = Some(countries);
                            }
                        }
                        truth.published(&offer);
                    }
                    if published.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        self.gateways.push(SimGateway { provider, node });
        Ok(provider)
    }

    fn random_routes(&mut self) -> Vec<Route> {
        let mix = self.scenario.routes.clone();
        let currency = self.currency;
        let count = self
            .rng
            .random_range(mix.routes_per_gateway[0]..=mix.routes_per_gateway[1]);
        let mut routes: Vec<Route> = Vec::with_capacity(count);
        while routes.len() < count {
            let country = mix.countries[self.random_country()].clone();
            let extra = self
                .rng
                .random_range(mix.extra_digits[0]..=mix.extra_digits[1]);
            let digits: String = (0..extra)
                .map(|_| char::from(b'0' + self.rng.random_range(0..10u8)))
                .collect();
            let Ok(prefix) = Prefix::new(&format!("{country}{digits}")) else {
                continue;
            };
            if routes.iter().any(|r| r.prefix == prefix) {
                continue;
            }
            let per_minute = self
                .rng
                .random_range(mix.price_per_minute[0]..=mix.price_per_minute[1]);
            routes.push(Route {
                prefix,
                tariff: Tariff {
                    currency,
                    setup_fee: 0,
                    per_minute,
                    billing_increment_secs: 60,
                },
            });
        }
        routes
    }

    /// A country of the route mix, by its weight.
    fn random_country(&mut self) -> usize {
        let mix = &self.scenario.routes;
        if mix.country_weights.is_empty() {
            return self.rng.random_range(0..mix.countries.len());
        }
        let total: f64 = mix.country_weights.iter().sum();
        let mut draw = self.rng.random_range(0.0..total);
        for (index, weight) in mix.country_weights.iter().enumerate() {
            if draw < *weight {
                return index;
            }
            draw -= weight;
        }
        mix.countries.len() - 1
    }

    /// A claimed quality drawn from the route mix's ranges.
    fn random_quality(&mut self) -> ClaimedQuality {
        let mix = &self.scenario.routes;
        let between = |rng: &mut StdRng, [low, high]: [f64; 2]| {
            if low < high {
                rng.random_range(low..=high)
            } else {
                low
            }
        };
        let mos = between(&mut self.rng, mix.mos);
        let asr = between(&mut self.rng, mix.answer_seizure_ratio);
        let [pdd_low, pdd_high] = mix.post_dial_delay_ms;
        // Within 1-5 and 0-1 by the scenario's checks: the products fit a u16.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        ClaimedQuality {
            mos: Mos((mos * 100.0).round() as u16),
            answer_seizure_ratio: Permille((asr * 1000.0).round() as u16),
            post_dial_delay_ms: self.rng.random_range(pdd_low..=pdd_high),
        }
    }

    /// Has a random live gateway publish new prices (each route's within ±30 %, inside the
    /// mix's range), at once, as an operator's reload does. Returns the gateway's identity
    /// and the `seq` its prices replace.
    pub fn reprice_random(&mut self) -> Option<(ProviderId, u64, tokio::task::JoinHandle<()>)> {
        if self.gateways.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..self.gateways.len());
        let [low, high] = self.scenario.routes.price_per_minute;
        let gateway = &self.gateways[index];
        let publisher = gateway.node.publisher()?;
        let latest = publisher.latest()?;
        let routes: Vec<Route> = latest
            .offer
            .offer()
            .routes
            .iter()
            .map(|route| {
                let factor: f64 = self.rng.random_range(0.7..1.3);
                let mut route = route.clone();
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let price = (route.tariff.per_minute as f64 * factor).round() as u64;
                route.tariff.per_minute = price.clamp(low, high.max(low));
                route
            })
            .collect();
        let (provider, seq) = (gateway.provider, latest.offer.seq());
        let client = gateway.node.client().clone();
        let publisher_task = {
            let published = publisher.set_routes(routes);
            tokio::spawn(async move {
                if let Err(e) = published.await {
                    tracing::debug!(error = %e, peer = %client.local_peer_id(), "a reprice was not acknowledged");
                }
            })
        };
        Some((provider, seq, publisher_task))
    }

    /// Removes a random node: a DHT node or, with the scenario's gateway fraction, a
    /// gateway; a crash or, otherwise, a clean shutdown (a gateway withdraws first).
    /// Returns whether it crashed, or `None` if there was nothing to remove.
    pub async fn remove_random(&mut self) -> Option<Ending> {
        let churn = &self.scenario.churn;
        let crash = self.rng.random_bool(churn.crash_fraction);
        let gateway = self.rng.random_bool(churn.gateway_fraction) && !self.gateways.is_empty();
        if gateway {
            let index = self.rng.random_range(0..self.gateways.len());
            let SimGateway { provider, node } = self.gateways.swap_remove(index);
            let how = if crash {
                node.kill().await;
                Ending::Crashed
            } else {
                // Withdrawn once shutdown returns: the withdrawal reached the closest nodes.
                let _ = node.shutdown().await;
                Ending::Withdrawn
            };
            self.truth.ended(provider, how);
            return Some(how);
        }
        if self.nodes.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..self.nodes.len());
        let node = self.nodes.swap_remove(index);
        if crash {
            node.kill().await;
            Some(Ending::Crashed)
        } else {
            let _ = node.shutdown().await;
            Some(Ending::Withdrawn)
        }
    }

    /// Adds a random node (a gateway with the scenario's gateway fraction); returns the
    /// gateway's identity if it was one.
    pub async fn add_random(&mut self) -> Result<Option<ProviderId>, NodeError> {
        if self.rng.random_bool(self.scenario.churn.gateway_fraction) {
            self.start_gateway().await.map(Some)
        } else {
            self.start_dht_node().await.map(|()| None)
        }
    }

    /// A random number a random live, published gateway covers, from the world's generator.
    pub fn random_destination(&mut self) -> Option<E164> {
        random_destination(&self.truth, &mut self.rng)
    }

    /// A new generator for a task, drawn from the world's so runs repeat.
    pub fn fork_rng(&mut self) -> StdRng {
        StdRng::seed_from_u64(self.rng.random())
    }

    /// Clients of server nodes to sample routing tables from.
    pub fn sample_clients(&mut self, count: usize) -> Vec<Client> {
        let mut clients: Vec<Client> = self.nodes.iter().map(|n| n.client().clone()).collect();
        for i in (1..clients.len()).rev() {
            clients.swap(i, self.rng.random_range(0..=i));
        }
        clients.truncate(count);
        clients
    }

    /// Up to `count` DHT nodes spread evenly over those up, without drawing from the seeded
    /// generator.
    fn spread_clients(&self, count: usize) -> Vec<Client> {
        let step = (self.nodes.len() / count.max(1)).max(1);
        self.nodes
            .iter()
            .step_by(step)
            .take(count)
            .map(|n| n.client().clone())
            .collect()
    }

    /// Every node that is up.
    pub fn node_count(&self) -> usize {
        2 + self.nodes.len() + self.gateways.len() + self.callers.len()
    }

    /// Stops every node at once; no goodbyes (the whole network is going).
    pub async fn tear_down(self) {
        let mut stops: Vec<_> = Vec::new();
        stops.extend(self.nodes.into_iter().map(|n| Box::pin(n.kill())));
        stops.extend(self.gateways.into_iter().map(|g| Box::pin(g.node.kill())));
        stops.extend(self.callers.into_iter().map(|n| Box::pin(n.kill())));
        stops.push(Box::pin(self.probe.kill()));
        stops.push(Box::pin(self.bootstrap.kill()));
        futures::future::join_all(stops).await;
    }
}

/// A number under a random route of a random live, published gateway.
pub fn random_destination(truth: &Truth, rng: &mut StdRng) -> Option<E164> {
    let live: Vec<Prefix> = {
        let gateways = truth.lock();
        let mut live: Vec<(&ProviderId, &GatewayTruth)> = gateways
            .iter()
            .filter(|(_, g)| g.published_at.is_some() && g.ended.is_none())
            .collect();
        live.sort_by_key(|(provider, _)| **provider);
        let (_, gateway) = live.get(rng.random_range(0..live.len().max(1)))?;
        gateway.routes.clone()
    };
    let prefix = live.get(rng.random_range(0..live.len().max(1)))?;
    let missing = 12usize.saturating_sub(prefix.len()).max(2);
    let digits: String = (0..missing)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    E164::parse(&format!("+{}{digits}", prefix.digits())).ok()
}

/// The links of node number `number`, if the scenario models them.
fn linked(scenario: &Scenario, number: u64) -> Option<interlink_node::network::Links> {
    match scenario.links.model {
        LinkModelChoice::None => None,
        LinkModelChoice::Regions => Some(links::links(scenario.seed, number)),
    }
}

/// A node's routing-table refresh interval: drawn between half and one and a half times the
/// scenario's. A real network's nodes start at unrelated times, so their refreshes are spread
/// out; here hundreds start within minutes, and with one shared interval they would refresh
/// together, every interval, for as long as the run lasts.
fn spread_interval(secs: u64, rng: &mut StdRng) -> u64 {
    rng.random_range(secs / 2..=secs + secs / 2).max(1)
}

/// A node identity drawn from the scenario's generator.
fn keypair(rng: &mut StdRng) -> Keypair {
    let mut seed: [u8; 32] = rng.random();
    Keypair::ed25519_from_bytes(&mut seed).unwrap_or_else(|_| Keypair::generate_ed25519())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_intervals_are_spread_around_the_scenarios() {
        let mut rng = StdRng::seed_from_u64(1);
        let drawn: Vec<u64> = (0..1000).map(|_| spread_interval(3600, &mut rng)).collect();
        assert!(drawn.iter().all(|secs| (1800..=5400).contains(secs)));
        let mean = drawn.iter().sum::<u64>() as f64 / drawn.len() as f64;
        assert!((3400.0..3800.0).contains(&mean), "mean {mean}");
        // Nodes started together refresh apart: no minute holds more than a few percent.
        let mut per_minute = HashMap::<u64, usize>::new();
        for secs in &drawn {
            *per_minute.entry(secs / 60).or_default() += 1;
        }
        let busiest = per_minute.values().max().copied().unwrap_or(0);
        assert!(busiest < 40, "{busiest} of 1000 in one minute");
        assert_eq!(spread_interval(1, &mut rng), 1);
    }
}
