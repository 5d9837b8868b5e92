//! The offer index between real nodes on libp2p's in-memory transport (or 127.0.0.1): a
//! market larger than any cap of the first design, a deep prefix beside a country-wide
//! route, a holder that lies, prices and withdrawals that must never be shown stale, a
//! flood of validly signed offers from a thousand fresh keys, and holders that died.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use interlink_node::clock;
use interlink_node::config::{DhtSection, DiscoverySection, GatewayPlan};
use interlink_node::discovery::{self, Discovery, Query};
use interlink_node::local_network::{LocalTransport, caller_spec, local_spec};
use interlink_node::network::index::codec::{Codec as IndexCodec, PROTOCOL as INDEX_PROTOCOL};
use interlink_node::network::{CacheUse, KAD_PROTOCOL, MemorySecurity};
use interlink_node::node::{Node, NodeSpec};
use interlink_protocol::discovery::wire::{
    Found, MAX_CLOSER_PEERS, PeerRecord, Request, RequestRefusal, Response, StoreOutcome,
    WireAnswer,
};
use interlink_protocol::discovery::{Index, IndexConfig, IndexKey};
use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::{E164, ProviderId, SecretKey, ServiceKind, SignedOffer};
use libp2p::identity::Keypair;
use libp2p::kad::{self, KBucketKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, plaintext, yamux};
use support::{free_uk_offer, plan, route, scrape, uk_mobile, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// In-memory nodes secured by plaintext, as in the simulations: many in one process.
fn memory(mut spec: NodeSpec) -> NodeSpec {
    spec.settings.memory_security = MemorySecurity::Plaintext;
    spec
}

/// A bootstrap node and DHT nodes on the in-memory transport, with `dht` and `discovery`.
struct Network {
    bootstrap: Node,
    address: Multiaddr,
    nodes: Vec<Node>,
    gateways: Vec<Node>,
    dht: DhtSection,
    discovery: DiscoverySection,
}

impl Network {
    async fn start(nodes: usize, dht: DhtSection, discovery: DiscoverySection) -> Network {
        let spec = |bootstrap: Option<Multiaddr>, gateway: Option<GatewayPlan>| {
            let mut spec = memory(local_spec(LocalTransport::Memory, bootstrap, gateway, &dht));
            spec.settings.discovery = discovery.clone();
            spec
        };
        let bootstrap = Node::start(spec(None, None), Keypair::generate_ed25519())
            .await
            .unwrap();
        let address = bootstrap.dialable_addrs().await.remove(0);
        let mut started = Vec::new();
        for _ in 0..nodes {
            let node = Node::start(
                spec(Some(address.clone()), None),
                Keypair::generate_ed25519(),
            );
            started.push(node.await.unwrap());
        }
        Network {
            bootstrap,
            address,
            nodes: started,
            gateways: Vec::new(),
            dht,
            discovery,
        }
    }

    fn spec(&self, gateway: Option<GatewayPlan>) -> NodeSpec {
        let mut spec = memory(local_spec(
            LocalTransport::Memory,
            Some(self.address.clone()),
            gateway,
            &self.dht,
        ));
        spec.settings.discovery = self.discovery.clone();
        spec
    }

    /// Starts gateways, `batch` at a time, each waiting until its offer is stored.
    async fn add_gateways(&mut self, plans: Vec<GatewayPlan>, batch: usize) {
        let mut plans = plans.into_iter().peekable();
        while plans.peek().is_some() {
            let starts = plans.by_ref().take(batch).map(|plan| {
                let spec = self.spec(Some(plan));
                async move {
                    let node = Node::start(spec, Keypair::generate_ed25519())
                        .await
                        .unwrap();
                    node.publisher()
                        .unwrap()
                        .wait_replicated(DEADLINE)
                        .await
                        .unwrap();
                    node
                }
            });
            self.gateways
                .extend(futures::future::join_all(starts).await);
        }
    }

    async fn caller(&self) -> Node {
        let mut spec = memory(caller_spec(vec![self.address.clone()], &self.dht));
        spec.settings.discovery = self.discovery.clone();
        Node::start(spec, Keypair::generate_ed25519())
            .await
            .unwrap()
    }

    fn all(self) -> impl Iterator<Item = Node> {
        std::iter::once(self.bootstrap)
            .chain(self.nodes)
            .chain(self.gateways)
    }

    async fn stop(self) {
        futures::future::join_all(self.all().map(Node::kill)).await;
    }
}

/// What the network answers now (not the caller's cache), under `policy`, `limit` offers.
async fn ask(caller: &Node, number: &E164, kind: PolicyKind, limit: u16) -> Discovery {
    let query = Query {
        policy: Policy {
            kind,
            ..Policy::default()
        },
        limit: Some(limit),
        cache: CacheUse::Bypass,
        ..Query::new(number.clone(), vec![ServiceKind::WEBRTC_TO_PSTN])
    };
    discovery::discover(caller.client(), &query).await.unwrap()
}

fn names(found: &Discovery) -> Vec<String> {
    found
        .offers
        .iter()
        .map(|o| o.offer().display_name.clone())
        .collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_served_by_two_hundred_gateways_shows_every_one_that_covers_the_number() {
    // 140 gateways for all of +44 and 60 for London only, each at its own price: more
    // than the first design kept under a key (64) or put in an answer (20).
    let mut network = Network::start(12, DhtSection::default(), DiscoverySection::default()).await;
    let plans: Vec<GatewayPlan> = (1..=200u64)
        .map(|i| {
            let prefix = if i % 10 < 7 { "+44" } else { "+4420" };
            plan(&format!("UK {i:03}"), &[(prefix, i)], 400, 500)
        })
        .collect();
    let covering: Vec<String> = plans
        .iter()
        .filter(|p| p.routes[0].prefix.to_string() == "+44")
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(covering.len(), 140);
    network.add_gateways(plans, 25).await;
    let caller = network.caller().await;

    let everything = wait_for("all 140 covering offers", DEADLINE, || async {
        let found = ask(&caller, &uk_mobile(), PolicyKind::Cheapest, 256).await;
        (found.offers.len() >= covering.len()).then_some(found)
    })
    .await;
    assert_eq!(sorted(names(&everything)), sorted(covering.clone()));
    assert!(
        everything.stats.held > 140,
        "London-only offers are held, not shown: {:?}",
        everything.stats
    );
    assert!(!everything.stats.cut(everything.offers.len()));

    // The best ten for the policy, and the caller told there were more.
    let best = ask(&caller, &uk_mobile(), PolicyKind::Cheapest, 10).await;
    let cheapest: Vec<String> = covering.iter().take(10).cloned().collect();
    assert_eq!(names(&best)[..10], cheapest[..]);
    assert_eq!(best.stats.matching, 140);
    assert!(best.stats.cut(best.offers.len()));
    // One walk, whatever the size of the market.
    assert!(best.stats.requests <= 40, "{:?}", best.stats);

    caller.kill().await;
    network.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_prefix_and_a_country_wide_route_are_found_ranked_by_the_route_that_covers() {
    let mut network = Network::start(8, DhtSection::default(), DiscoverySection::default()).await;
    network
        .add_gateways(
            vec![
                plan("Nationwide", &[("+1", 5)], 400, 500),
                plan("Manhattan", &[("+1212", 2), ("+1", 9)], 400, 500),
                plan("Bay", &[("+1415", 1)], 400, 500),
            ],
            3,
        )
        .await;
    let caller = network.caller().await;
    let new_york = E164::parse("+12125550123").unwrap();
    let found = wait_for("the New York offers", DEADLINE, || async {
        let found = ask(&caller, &new_york, PolicyKind::Cheapest, 10).await;
        (found.offers.len() == 2).then_some(found)
    })
    .await;
    assert_eq!(names(&found), ["Manhattan", "Nationwide"]);
    let san_francisco = E164::parse("+14155550123").unwrap();
    let found = ask(&caller, &san_francisco, PolicyKind::Cheapest, 10).await;
    assert_eq!(names(&found), ["Bay", "Nationwide", "Manhattan"]);
    caller.kill().await;
    network.stop().await;
}

/// Lookups of `number` from each caller `rounds` times, of the network and of the
/// caller's cache; returns every `(provider, seq)` shown.
async fn shown(callers: &[Node], number: &E164, rounds: usize) -> Vec<(ProviderId, u64)> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        for caller in callers {
            let found = ask(caller, number, PolicyKind::Cheapest, 10).await;
            seen.extend(found.offers.iter().map(|o| (o.provider(), o.seq())));
            let cached = Query {
                policy: Policy {
                    kind: PolicyKind::Cheapest,
                    ..Policy::default()
                },
                limit: Some(10),
                cache: CacheUse::Prefer,
                ..Query::new(number.clone(), vec![ServiceKind::WEBRTC_TO_PSTN])
            };
            let found = discovery::discover(caller.client(), &cached).await.unwrap();
            seen.extend(found.offers.iter().map(|o| (o.provider(), o.seq())));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_price_or_a_withdrawal_is_never_undone_once_a_caller_has_seen_it() {
    let mut network = Network::start(10, DhtSection::default(), DiscoverySection::default()).await;
    network
        .add_gateways(
            vec![
                plan("Steady", &[("+44", 5)], 400, 500),
                plan("Mover", &[("+44", 9)], 400, 500),
                plan("Leaver", &[("+447", 3)], 400, 500),
            ],
            3,
        )
        .await;
    let callers = vec![network.caller().await, network.caller().await];
    let mover = &network.gateways[1];
    let mover_id = interlink_node::identity::provider_id(&mover.peer_id()).unwrap();
    let before = shown(&callers, &uk_mobile(), 1).await;
    assert!(before.iter().any(|(p, _)| *p == mover_id));

    let published = mover
        .publisher()
        .unwrap()
        .set_routes(vec![route("+44", 1)])
        .await
        .unwrap();
    let new_seq = published.offer.seq();
    wait_for("the new price", DEADLINE, || async {
        let found = ask(&callers[0], &uk_mobile(), PolicyKind::Cheapest, 10).await;
        found
            .offers
            .iter()
            .any(|o| o.provider() == mover_id && o.seq() == new_seq)
            .then_some(())
    })
    .await;
    for (provider, seq) in shown(&callers, &uk_mobile(), 10).await {
        assert!(
            provider != mover_id || seq >= new_seq,
            "the superseded offer {seq} shown after {new_seq}"
        );
    }

    let leaver = network.gateways.remove(2);
    let leaver_id = interlink_node::identity::provider_id(&leaver.peer_id()).unwrap();
    leaver.shutdown().await.unwrap();
    wait_for("the withdrawal", DEADLINE, || async {
        let found = ask(&callers[0], &uk_mobile(), PolicyKind::Cheapest, 10).await;
        (!found.offers.iter().any(|o| o.provider() == leaver_id)).then_some(())
    })
    .await;
    let after = shown(&callers, &uk_mobile(), 10).await;
    assert!(
        !after.iter().any(|(p, _)| *p == leaver_id),
        "a withdrawn offer shown again"
    );
    for caller in callers {
        caller.kill().await;
    }
    network.stop().await;
}

/// Walks toward keys `node` ran to find the nodes closest to them, so far.
fn walks(node: &Node) -> f64 {
    scrape::sum_with(
        &node.metrics().encode(),
        "interlink_dht_queries_total",
        "kind=\"get_closest_peers\"",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_price_goes_to_the_holders_a_recent_walk_found_and_walks_again_when_they_are_gone() {
    let mut network = Network::start(10, DhtSection::default(), DiscoverySection::default()).await;
    network
        .add_gateways(vec![plan("Mover", &[("+44", 9)], 400, 500)], 1)
        .await;
    let caller = network.caller().await;
    let mover = network.gateways.remove(0);
    let mover_id = interlink_node::identity::provider_id(&mover.peer_id()).unwrap();
    let publisher = mover.publisher().unwrap();
    let sees = |seq: u64| {
        let caller = &caller;
        async move {
            let found = ask(caller, &uk_mobile(), PolicyKind::Cheapest, 10).await;
            found
                .offers
                .iter()
                .any(|o| o.provider() == mover_id && o.seq() == seq)
                .then_some(())
        }
    };

    // A new price a moment after the walks of the first publication: no walk, and the
    // caller sees it.
    let before = walks(&mover);
    let repriced = publisher.set_routes(vec![route("+44", 1)]).await.unwrap();
    assert!(repriced.replicated);
    assert_eq!(walks(&mover), before, "a new price walked again");
    wait_for("the new price", DEADLINE, || sees(repriced.offer.seq())).await;

    // Most of the holders die: the next price reaches the few left, finds the closest
    // nodes anew, and is stored there.
    let dead = network.nodes.len() - 3;
    futures::future::join_all(network.nodes.drain(..dead).map(Node::kill)).await;
    let before = walks(&mover);
    let repriced = publisher.set_routes(vec![route("+44", 2)]).await.unwrap();
    assert!(repriced.replicated);
    assert!(walks(&mover) > before, "no walk after the holders died");
    wait_for("the price after the deaths", DEADLINE, || {
        sees(repriced.offer.seq())
    })
    .await;

    // A republication finds the closest nodes anew whatever the last walk.
    let before = walks(&mover);
    publisher.republish().await.unwrap();
    assert!(walks(&mover) > before, "a republication did not walk");

    caller.kill().await;
    mover.kill().await;
    network.stop().await;
}

// ---- A holder that lies --------------------------------------------------------------

#[derive(NetworkBehaviour)]
struct LiarBehaviour {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    index: request_response::Behaviour<IndexCodec>,
}

/// A bare swarm of `keypair` on the in-memory transport (plaintext, yamux) running
/// `behaviour`: a peer that speaks the node's protocols its own way.
fn memory_swarm<B: NetworkBehaviour>(
    keypair: Keypair,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            use libp2p::core::transport::{MemoryTransport, Transport, upgrade};
            MemoryTransport::default()
                .upgrade(upgrade::Version::V1Lazy)
                .authenticate(plaintext::Config::new(key))
                .multiplex(yamux::Config::default())
        })
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A node that stores what it is sent like any holder but answers lookups without the
/// `omit` cheapest offers it holds; it counts the lookups it answered.
async fn start_liar(keypair: Keypair, bootstrap: Multiaddr, omit: usize) -> Arc<AtomicUsize> {
    let peer = keypair.public().to_peer_id();
    let mut swarm = memory_swarm(keypair, |key| LiarBehaviour {
        kad: kad::Behaviour::with_config(
            peer,
            kad::store::MemoryStore::new(peer),
            kad::Config::new(KAD_PROTOCOL),
        ),
        identify: identify::Behaviour::new(identify::Config::new(
            "/interlink/1.0.0".into(),
            key.public(),
        )),
        index: request_response::Behaviour::with_codec(
            IndexCodec,
            [(INDEX_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        ),
    });
    swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
    swarm.listen_on("/memory/0".parse().unwrap()).unwrap();
    let listening = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    swarm.add_external_address(listening);
    let bootstrap_peer = match bootstrap.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => peer,
        _ => panic!("no /p2p in {bootstrap}"),
    };
    swarm
        .behaviour_mut()
        .kad
        .add_address(&bootstrap_peer, bootstrap);
    swarm.behaviour_mut().kad.bootstrap().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    tokio::spawn(async move {
        let mut index: Index<PeerId> = Index::new(IndexConfig::default());
        loop {
            let event = swarm.select_next_some().await;
            let SwarmEvent::Behaviour(event) = event else {
                continue;
            };
            match event {
                LiarBehaviourEvent::Identify(identify::Event::Received {
                    peer_id, info, ..
                }) => {
                    for address in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, address);
                    }
                }
                LiarBehaviourEvent::Index(request_response::Event::Message {
                    peer: from,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                }) => {
                    let response = match request {
                        Request::Store { key, offers } => Response::Stored(
                            offers
                                .iter()
                                .map(|bytes| {
                                    let offer =
                                        SignedOffer::decode(bytes, clock::unix_now()).unwrap();
                                    let own = interlink_node::identity::provider_id(&from)
                                        == Some(offer.provider());
                                    match index.admit(key, offer, &from, own, Instant::now()) {
                                        Ok(_) => StoreOutcome::Added,
                                        Err(_) => StoreOutcome::Unchanged,
                                    }
                                })
                                .collect(),
                        ),
                        Request::Find(query) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let target = KBucketKey::new(query.key().to_bytes());
                            let closer = swarm
                                .behaviour_mut()
                                .kad
                                .find_closest_local_peers(&target, &from)
                                .take(MAX_CLOSER_PEERS)
                                .map(|p| PeerRecord {
                                    peer: p.node_id.to_bytes(),
                                    addresses: p.multiaddrs,
                                })
                                .collect();
                            let mut held: Vec<&SignedOffer> = index.offers(&query.key()).collect();
                            held.sort_by_key(|o| o.offer().routes[0].tariff.per_minute);
                            let hidden: BTreeSet<ProviderId> =
                                held.iter().take(omit).map(|o| o.provider()).collect();
                            let answer = index
                                .answer(&query, clock::unix_now(), Instant::now())
                                .map(|answer| {
                                    let mut wire =
                                        WireAnswer::from_selection(&answer.selection, answer.held);
                                    wire.offers.retain(|o| {
                                        SignedOffer::decode(&o.offer, clock::unix_now())
                                            .is_ok_and(|o| !hidden.contains(&o.provider()))
                                    });
                                    wire
                                });
                            Response::Found(Found { closer, answer })
                        }
                        Request::Sync { .. } => Response::Refused(RequestRefusal::Invalid),
                    };
                    let _ = swarm.behaviour_mut().index.send_response(channel, response);
                }
                _ => {}
            }
        }
    });
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_omits_the_cheapest_offers_does_not_hide_them() {
    // Three holders a key, and the liar the closest node to +44's key: every lookup of a
    // UK number meets it, and asks the three.
    let dht = DhtSection {
        replication_factor: 3,
        ..DhtSection::default()
    };
    let mut network = Network::start(8, dht, DiscoverySection::default()).await;
    let key = KBucketKey::new(IndexKey::of_number(&uk_mobile()).to_bytes());
    let farthest_node = network
        .nodes
        .iter()
        .map(|n| KBucketKey::from(n.peer_id()).distance(&key))
        .min()
        .unwrap();
    let liar_key = loop {
        let keypair = Keypair::generate_ed25519();
        if KBucketKey::from(keypair.public().to_peer_id()).distance(&key) < farthest_node {
            break keypair;
        }
    };
    let answered = start_liar(liar_key, network.address.clone(), 2).await;
    // The liar must be in the bootstrap node's routing table before the gateways join
    // through it, so that they find it among the closest to the key.
    wait_for("the liar in the routing table", DEADLINE, || async {
        let status = network.bootstrap.client().status().await.ok()?;
        (status.routing_table_size > network.nodes.len()).then_some(())
    })
    .await;
    network
        .add_gateways(
            (1..=6u64)
                .map(|i| plan(&format!("UK {i}"), &[("+44", i)], 400, 500))
                .collect(),
            6,
        )
        .await;
    let caller = network.caller().await;
    let found = wait_for("six offers despite the liar", DEADLINE, || async {
        let found = ask(&caller, &uk_mobile(), PolicyKind::Cheapest, 3).await;
        (answered.load(Ordering::SeqCst) > 0
            && names(&found).first().map(String::as_str) == Some("UK 1"))
        .then_some(found)
    })
    .await;
    assert_eq!(names(&found)[..3], ["UK 1", "UK 2", "UK 3"]);
    assert!(answered.load(Ordering::SeqCst) > 0, "the liar was asked");
    caller.kill().await;
    network.stop().await;
}

// ---- A flood of fresh keys ------------------------------------------------------------

/// A valid offer for all of +44 at 0.00 a minute, signed by a fresh key.
fn spam(index: usize) -> SignedOffer {
    free_uk_offer(
        &SecretKey::from_seed(&rand::random()),
        &format!("Spam {index}"),
    )
}

/// Sends `offers` to `target` from a bare peer of the in-memory transport, 16 a request;
/// returns what became of them.
async fn flood(target: &Node, offers: &[SignedOffer]) -> Vec<StoreOutcome> {
    let keypair = Keypair::generate_ed25519();
    let mut swarm = memory_swarm(keypair, |_| libp2p_stream::Behaviour::new());
    let mut control = swarm.behaviour().new_control();
    let address = target.dialable_addrs().await.remove(0);
    swarm.dial(address).unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the flooder connects");
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let key = IndexKey::of_number(&uk_mobile());
    let mut outcomes = Vec::new();
    for (number, chunk) in offers.chunks(16).enumerate() {
        let request = Request::Store {
            key,
            offers: chunk.iter().map(|o| o.as_bytes().to_vec()).collect(),
        };
        let exchange = async {
            let mut stream = control
                .open_stream(target.peer_id(), INDEX_PROTOCOL)
                .await
                .unwrap();
            let bytes = request.encode().unwrap();
            stream
                .write_all(&u32::try_from(bytes.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.close().await.unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
            stream.read_exact(&mut body).await.unwrap();
            body
        };
        let body = tokio::time::timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("store {number} had no answer within {DEADLINE:?}"));
        match Response::decode(&body).unwrap() {
            Response::Stored(stored) => outcomes.extend(stored),
            other => panic!("{other:?}"),
        }
    }
    driver.abort();
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_a_thousand_fresh_keys_leaves_the_honest_gateways_in_callers_results() {
    // Holders compare what they hold every second, so that every node holds the six
    // honest offers before the flood, whichever nodes each gateway knew when it published.
    let discovery = DiscoverySection {
        sync_secs: 1,
        ..DiscoverySection::default()
    };
    let mut network = Network::start(10, DhtSection::default(), discovery).await;
    network
        .add_gateways(
            (1..=6u64)
                .map(|i| plan(&format!("Honest {i}"), &[("+44", 10 + i)], 420, 550))
                .collect(),
            6,
        )
        .await;
    let caller = network.caller().await;
    wait_for("the six honest offers at every node", DEADLINE, || async {
        for node in network.all_nodes() {
            if node.client().status().await.ok()?.index_offers < 6 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // A thousand offers cheaper and better than any honest one, each from a key of its
    // own, sent to every node of the network by eight peers of 125 keys each.
    let spam: Vec<SignedOffer> = (0..1000).map(spam).collect();
    let mut refused = 0;
    for node in network.all_nodes() {
        for part in spam.chunks(125) {
            let outcomes = flood(node, part).await;
            assert_eq!(outcomes.len(), part.len());
            refused += outcomes
                .iter()
                .filter(|o| matches!(o, StoreOutcome::Refused(_)))
                .count();
        }
    }
    let bounds = IndexConfig::default();
    for node in network.all_nodes() {
        let status = node.client().status().await.unwrap();
        assert!(
            status.index_offers <= bounds.max_offers_per_key,
            "{} offers held",
            status.index_offers
        );
        // Past open admission newcomers wait: no more than a minute's worth got in.
        assert!(
            status.index_offers <= 6 + bounds.open_admission + bounds.newcomers_per_minute as usize,
            "{} offers held",
            status.index_offers
        );
        assert!(status.index_bytes <= bounds.max_bytes);
    }
    assert!(refused > 0, "newcomers beyond open admission wait");

    // Callers see the cheapest of the flood, and every honest gateway beside it.
    let found = ask(&caller, &uk_mobile(), PolicyKind::Cheapest, 10).await;
    let shown = names(&found);
    for i in 1..=6 {
        assert!(
            shown.contains(&format!("Honest {i}")),
            "Honest {i} pushed out: {shown:?}"
        );
    }
    assert!(shown.iter().any(|name| name.starts_with("Spam")));
    assert!(found.offers.len() <= 20, "{} offers", found.offers.len());
    caller.kill().await;
    network.stop().await;
}

// ---- The dead and the unreachable ----------------------------------------------------

/// Offer index requests `node` sent that failed (no dial, no answer), so far.
fn failed_requests(node: &Node) -> f64 {
    scrape::count(
        &node.metrics().encode(),
        "interlink_index_requests_failed_total",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_that_died_are_asked_once_and_then_left_out_of_lookups() {
    let mut network = Network::start(10, DhtSection::default(), DiscoverySection::default()).await;
    network
        .add_gateways(
            (1..=3u64)
                .map(|i| plan(&format!("UK {i}"), &[("+44", i)], 400, 500))
                .collect(),
            3,
        )
        .await;
    let caller = network.caller().await;
    // The caller knows every node, so that the ones about to die are among the first its
    // walks would ask, as in a routing table filled before they died.
    let others = network.all_nodes().count();
    wait_for(
        "every node in the caller's routing table",
        DEADLINE,
        || async {
            let status = caller.client().status().await.ok()?;
            (status.routing_table_size >= others).then_some(())
        },
    )
    .await;
    // Every node holds the three offers. The caller looks nothing up before the deaths,
    // so that none of its requests is in flight to a node when it dies.
    wait_for("the three offers at every node", DEADLINE, || async {
        for node in network.all_nodes() {
            if node.client().status().await.ok()?.index_offers < 3 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // The four nodes closest to +44's key (the bootstrap node aside; gateways are holders
    // too) die as in a crash. Every routing table keeps them, and a walk asks the three
    // closest peers it knows first: without a memory of failures, each lookup would ask
    // at least two of them again.
    let key = KBucketKey::new(IndexKey::of_number(&uk_mobile()).to_bytes());
    let mut holders: Vec<Node> = network
        .nodes
        .drain(..)
        .chain(network.gateways.drain(..))
        .collect();
    holders.sort_by_key(|node| KBucketKey::from(node.peer_id()).distance(&key));
    let dead: Vec<Node> = holders.drain(..4).collect();
    let dead_count = dead.len() as f64;
    network.nodes = holders;
    futures::future::join_all(dead.into_iter().map(Node::kill)).await;

    // Lookups in a row: the dead are asked at most once in all, the last lookups do not
    // ask them at all, and every lookup still finds the offers from the live holders
    // (a killed gateway's offer stays held until it expires).
    let everyone = ["UK 1", "UK 2", "UK 3"];
    let mut failed = Vec::new();
    for _ in 0..5 {
        let before = failed_requests(&caller);
        let found = ask(&caller, &uk_mobile(), PolicyKind::Cheapest, 10).await;
        assert_eq!(names(&found), everyone, "{:?}", found.stats);
        failed.push(failed_requests(&caller) - before);
    }
    let total: f64 = failed.iter().sum();
    assert!(
        total >= 1.0,
        "the dead were among the first asked: {failed:?}"
    );
    assert!(
        total <= dead_count,
        "each dead holder asked at most once: {failed:?}"
    );
    assert_eq!(failed[3..], [0.0, 0.0], "{failed:?}");
    caller.kill().await;
    network.stop().await;
}

impl Network {
    fn all_nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.bootstrap)
            .chain(&self.nodes)
            .chain(&self.gateways)
    }
}
