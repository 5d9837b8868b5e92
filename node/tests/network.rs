//! A 20-node network on 127.0.0.1, each node a full swarm with its own TCP listener:
//! discovery, record validation on every node, withdrawal and republication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use ed25519_dalek::Signer;
use futures::StreamExt;
use interlink_node::config::DhtSection;
use interlink_node::discovery::{self, Discovery, Query};
use interlink_node::identity;
use interlink_node::local_network::{LocalNetwork, LocalTransport, caller_spec, local_spec};
use interlink_node::network::{CacheUse, KAD_PROTOCOL, MemorySecurity};
use interlink_node::node::{Node, NodeSpec};
use interlink_protocol::codec;
use interlink_protocol::offer::{OfferStatus, ServiceOffer};
use interlink_protocol::ranking::{self, History, Policy, PolicyKind};
use interlink_protocol::signed::SIGNING_DOMAIN;
use interlink_protocol::{DhtKey, ServiceKind, UnixTime};
use libp2p::identity::Keypair;
use libp2p::kad::{self, Quorum, Record, RecordKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use support::{free_uk_service_offer, plan, route, uk_mobile, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

/// Bootstrap + 15 DHT nodes + 4 gateways = 20 nodes.
async fn twenty_nodes() -> LocalNetwork {
    let gateways = vec![
        plan("Anglia", &[("+44", 2)], 420, 600), // covers all of +44
        plan("Mobile Max", &[("+447", 1)], 380, 500), // covers UK mobiles, cheaper
        plan("Londoner", &[("+4420", 1)], 440, 700), // +44 but London only
        plan("Gallia", &[("+33", 1)], 440, 700), // another country
    ];
    let network = LocalNetwork::start(15, gateways, &DhtSection::default())
        .await
        .expect("network");
    assert_eq!(network.nodes().count(), 20);
    network.wait_published(DEADLINE).await.expect("published");
    network
}

/// The network's answer for a UK mobile number, not the caller's cache.
fn query() -> Query {
    Query {
        cache: CacheUse::Bypass,
        ..Query::new(uk_mobile(), vec![ServiceKind::WEBRTC_TO_PSTN])
    }
}

/// Discovers until `accept` holds (offers are acknowledged before this runs, so the
/// first lookup normally does).
async fn discover_until(
    caller: &Node,
    what: &str,
    accept: impl Fn(&Discovery) -> bool,
) -> Discovery {
    let accept = &accept;
    wait_for(what, DEADLINE, || async move {
        // What the last lookup saw tells a lookup that misses from one that fails.
        match discovery::discover(caller.client(), &query()).await {
            Ok(found) if accept(&found) => Ok(found),
            Ok(found) => Err(format!(
                "the last lookup: {:?}, {:?}",
                names(&found),
                found.stats
            )),
            Err(e) => Err(format!("the last lookup: {e}")),
        }
    })
    .await
}

fn ranked_names(found: &Discovery, kind: PolicyKind) -> Vec<String> {
    let policy = Policy {
        kind,
        ..Policy::default()
    };
    let ranking = ranking::rank(
        &found.offers,
        &uk_mobile(),
        &found.measurements,
        &History::new(),
        &policy,
    );
    ranking
        .candidates
        .iter()
        .map(|c| c.offer.offer().display_name.clone())
        .collect()
}

fn names(found: &Discovery) -> Vec<String> {
    let mut names: Vec<String> = found
        .offers
        .iter()
        .map(|o| o.offer().display_name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_finds_exactly_the_covering_gateways_in_policy_order() {
    let network = twenty_nodes().await;
    let caller = network.caller().await.expect("caller");
    let found = discover_until(&caller, "the two offers covering a UK mobile", |f| {
        f.offers.len() == 2
    })
    .await;

    // Gallia serves +33 and is indexed under another key: never returned. Londoner is
    // under +44 but covers London only: its holders leave it out for a mobile number.
    assert_eq!(names(&found), ["Anglia", "Mobile Max"]);
    assert_eq!(found.stats.held, 3, "the holders of +44 hold three offers");
    assert_eq!(found.stats.matching, 2);
    assert_eq!(
        ranked_names(&found, PolicyKind::Cheapest),
        ["Mobile Max", "Anglia"]
    );
    assert_eq!(
        ranked_names(&found, PolicyKind::BestQuality),
        ["Anglia", "Mobile Max"]
    );

    let ranking = ranking::rank(
        &found.offers,
        &uk_mobile(),
        &found.measurements,
        &History::new(),
        &Policy::default(),
    );
    assert!(ranking.excluded.is_empty(), "{:?}", ranking.excluded);
    assert_eq!(
        ranking.candidates[0].route.prefix.to_string(),
        "+447",
        "longest prefix of Mobile Max"
    );

    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_shuts_down_cleanly_disappears_from_results() {
    let mut network = twenty_nodes().await;
    let caller = network.caller().await.expect("caller");
    discover_until(&caller, "Mobile Max", |f| {
        names(f).contains(&"Mobile Max".to_owned())
    })
    .await;

    let mobile_max = network.gateways.remove(1);
    let mobile_max_id = mobile_max.peer_id();
    mobile_max
        .shutdown()
        .await
        .expect("clean shutdown withdraws the offer");

    let found = discover_until(&caller, "Mobile Max to be gone", |f| {
        ranked_names(f, PolicyKind::Balanced) == ["Anglia"]
    })
    .await;
    // A withdrawal is never shown as an offer.
    assert!(
        found
            .offers
            .iter()
            .all(|o| o.offer().status != OfferStatus::Withdrawn)
    );
    // What remains of Mobile Max in the DHT is its signed withdrawal.
    let left = caller
        .client()
        .get_offer(mobile_max_id)
        .await
        .unwrap()
        .expect("a record under Mobile Max's key");
    assert_eq!(left.offer().status, OfferStatus::Withdrawn);
    assert_eq!(left.offer().display_name, "Mobile Max");

    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_offer_is_found_with_its_new_price() {
    let network = twenty_nodes().await;
    let caller = network.caller().await.expect("caller");
    let anglia = network.gateways[0].publisher().expect("gateway");
    let before = anglia.latest().expect("published").offer.seq();

    let republished = anglia
        .set_routes(vec![route("+44", 5)])
        .await
        .expect("republished");
    assert!(
        republished.offer.seq() > before,
        "a republish carries a higher seq"
    );

    let found = discover_until(&caller, "Anglia at 5p", |f| {
        f.offers.iter().any(|o| {
            o.offer().display_name == "Anglia" && o.offer().routes[0].tariff.per_minute == 5
        })
    })
    .await;
    let anglia_offer = found
        .offers
        .iter()
        .find(|o| o.offer().display_name == "Anglia")
        .unwrap();
    assert_eq!(anglia_offer.seq(), republished.offer.seq());

    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

/// A republication replaces every copy its publisher left, not only those on the nodes
/// now closest to the key. With k = 3, the three nodes closest to Anglia's key among six
/// are, once thirty more have joined, mostly no longer the closest; the copies they hold
/// would otherwise stay, and a lookup that stops at its first two copies could return them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republication_in_a_grown_network_replaces_every_earlier_copy() {
    let dht = DhtSection {
        replication_factor: 3,
        ..DhtSection::default()
    };
    let anglia_plan = plan("Anglia", &[("+44", 2)], 420, 600);
    let network = LocalNetwork::start(4, vec![anglia_plan], &dht)
        .await
        .expect("network");
    network.wait_published(DEADLINE).await.expect("published");
    let mut joined = Vec::new();
    for _ in 0..30 {
        joined.push(network.start_node(None).await.expect("node"));
    }

    let anglia = network.gateways[0].publisher().expect("gateway");
    let republished = anglia
        .set_routes(vec![route("+44", 5)])
        .await
        .expect("republished");

    // A node acknowledges a copy before its event loop has checked and stored it: wait
    // for that, briefly. A copy the republication never reached stays until it expires.
    let key = DhtKey::Offer(republished.offer.provider()).to_bytes();
    let newest = wait_for("every copy to be the newest", DEADLINE, || async {
        let (mut newest, mut earlier) = (0, Vec::new());
        for node in network.nodes().chain(&joined) {
            match node.client().stored_record(key.clone()).await {
                Some(stored) if stored == republished.offer.as_bytes() => newest += 1,
                Some(_) => earlier.push(node.peer_id()),
                None => {}
            }
        }
        if earlier.is_empty() {
            Ok(newest)
        } else {
            Err(format!(
                "these nodes still hold an earlier copy: {earlier:?}"
            ))
        }
    })
    .await;
    // The gateway's own copy and at least the three closest now.
    assert!(newest >= 4, "only {newest} copies");

    for node in joined {
        node.shutdown().await.unwrap();
    }
    network.shutdown().await.unwrap();
}

/// A bare Kademlia peer speaking our protocol, used to push records at every node.
struct Attacker {
    swarm: Swarm<kad::Behaviour<kad::store::MemoryStore>>,
    keypair: Keypair,
}

impl Attacker {
    fn new() -> Attacker {
        let keypair = Keypair::generate_ed25519();
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| {
                let peer = key.public().to_peer_id();
                kad::Behaviour::with_config(
                    peer,
                    kad::store::MemoryStore::new(peer),
                    kad::Config::new(KAD_PROTOCOL),
                )
            })
            .unwrap()
            .build();
        Attacker { swarm, keypair }
    }

    /// Sends `value` under `key` straight to each of `targets` and waits for the answers.
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>, targets: &[(PeerId, Multiaddr)]) {
        for (peer, addr) in targets {
            self.swarm.behaviour_mut().add_address(peer, addr.clone());
        }
        let record = Record::new(RecordKey::new(&key), value);
        let id = self.swarm.behaviour_mut().put_record_to(
            record,
            targets.iter().map(|(p, _)| *p),
            Quorum::All,
        );
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    id: done,
                    result: kad::QueryResult::PutRecord(_),
                    ..
                }) = self.swarm.select_next_some().await
                    && done == id
                {
                    return;
                }
            }
        })
        .await
        .expect("the nodes answer the PUT");
    }
}

/// An offer in the wire format, signed by `signer` whatever provider it names.
fn signed_bytes(offer: &ServiceOffer, signer: &Keypair) -> Vec<u8> {
    let body = codec::encode::<_, 16384>(offer).unwrap();
    let ed = signer.clone().try_into_ed25519().unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(ed.secret().as_ref().try_into().unwrap());
    let message = [SIGNING_DOMAIN, &body].concat();
    let mut bytes = ed.public().to_bytes().to_vec();
    bytes.extend_from_slice(&signing.sign(&message).to_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

fn attacker_offer(attacker: &Keypair, issued_at: UnixTime, expires_at: UnixTime) -> ServiceOffer {
    ServiceOffer {
        seq: u64::MAX / 2,
        issued_at,
        expires_at,
        ..free_uk_service_offer(
            identity::secret_key(attacker).unwrap().provider_id(),
            "Too Good To Be True",
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_expired_and_stale_records_are_in_no_store() {
    let network = twenty_nodes().await;
    let anglia = network.gateways[0].publisher().expect("gateway");
    let genuine_old = anglia.latest().unwrap().offer;
    let genuine_new = anglia
        .set_routes(vec![route("+44", 3)])
        .await
        .unwrap()
        .offer;
    let anglia_key = DhtKey::Offer(genuine_new.provider()).to_bytes();

    let mut targets = Vec::new();
    for node in network.nodes() {
        targets.push((node.peer_id(), node.dialable_addrs().await.remove(0)));
    }
    let mut attacker = Attacker::new();
    let attacker_key = DhtKey::Offer(
        identity::secret_key(&attacker.keypair)
            .unwrap()
            .provider_id(),
    )
    .to_bytes();
    let now = interlink_node::clock::unix_now();

    // Anglia's offer, re-signed by the attacker: the signer is not the provider.
    let mut forged_offer = genuine_new.offer().clone();
    forged_offer.routes = vec![route("+44", 0)];
    forged_offer.seq += 1;
    let forged = signed_bytes(&forged_offer, &attacker.keypair);
    // Anglia's genuine bytes with the price changed: the signature breaks.
    let mut tampered = genuine_new.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last - 40] ^= 0x01;
    // A correctly signed offer of the attacker's own that expired an hour ago.
    let expired = signed_bytes(
        &attacker_offer(
            &attacker.keypair,
            now.minus(Duration::from_secs(7200)),
            now.minus(Duration::from_secs(3600)),
        ),
        &attacker.keypair,
    );
    // A correctly signed, current offer of the attacker's under Anglia's key.
    let misplaced = signed_bytes(
        &attacker_offer(&attacker.keypair, now, now.plus(Duration::from_secs(600))),
        &attacker.keypair,
    );
    // Far more than any offer may weigh.
    let oversize = vec![0u8; 20 * 1024];

    let attacks = [
        ("forged", anglia_key.clone(), forged.clone()),
        ("tampered", anglia_key.clone(), tampered.clone()),
        (
            "older seq",
            anglia_key.clone(),
            genuine_old.as_bytes().to_vec(),
        ),
        ("misplaced", anglia_key.clone(), misplaced.clone()),
        ("expired", attacker_key.clone(), expired.clone()),
        ("oversize", attacker_key.clone(), oversize.clone()),
    ];
    for (_, key, value) in &attacks {
        attacker.put(key.clone(), value.clone(), &targets).await;
    }

    for node in network.nodes() {
        let stored = node
            .client()
            .stored_record(anglia_key.clone())
            .await
            .expect("every node stores Anglia's offer");
        assert_eq!(
            stored,
            genuine_new.as_bytes(),
            "node {} holds Anglia's newest genuine offer",
            node.peer_id()
        );
        assert_eq!(
            node.client().stored_record(attacker_key.clone()).await,
            None,
            "node {}",
            node.peer_id()
        );
        let refusals = node.client().status().await.unwrap().refusals;
        assert!(
            refusals.total() >= attacks.len() as u64,
            "node {} refused {refusals:?}",
            node.peer_id()
        );
        for label in [
            "signer_not_provider",
            "bad_signature",
            "stale_seq",
            "wrong_key",
            "expired",
            "too_large",
        ] {
            assert!(
                refusals.0.contains_key(label),
                "node {} did not refuse {label}: {refusals:?}",
                node.peer_id()
            );
        }
    }
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_republishes_with_a_higher_seq_before_its_offer_expires() {
    let mut short_lived = plan("Brief", &[("+44", 2)], 400, 500);
    short_lived.offer_ttl = Duration::from_secs(4);
    let network = LocalNetwork::start(4, vec![short_lived], &DhtSection::default())
        .await
        .expect("network");
    network.wait_published(DEADLINE).await.expect("published");
    let publisher = network.gateways[0].publisher().expect("gateway");
    let first = publisher.latest().expect("published").offer;

    // Republished at half the lifetime, with the next seq and a later expiry.
    let second = wait_for("a republication", DEADLINE, || async {
        publisher
            .latest()
            .map(|p| p.offer)
            .filter(|o| o.seq() > first.seq())
    })
    .await;
    assert_eq!(second.seq(), first.seq() + 1);
    assert!(second.offer().expires_at > first.offer().expires_at);

    // Long after the first offer expired, the gateway is still found, with a newer offer.
    let caller = network.caller().await.expect("caller");
    let found = discover_until(&caller, "an offer issued after the first expired", |f| {
        let now = interlink_node::clock::unix_now();
        now > first.offer().expires_at && f.offers.iter().any(|o| o.seq() > second.seq())
    })
    .await;
    assert!(
        found
            .offers
            .iter()
            .all(|o| !o.is_expired(interlink_node::clock::unix_now()))
    );
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

/// Starts a node on the in-memory transport, its connections secured with `security`.
async fn start_in_memory(mut spec: NodeSpec, security: MemorySecurity) -> Node {
    spec.settings.memory_security = security;
    Node::start(spec, Keypair::generate_ed25519())
        .await
        .unwrap()
}

/// A bootstrap node, four DHT nodes and the gateway "Mobile Max" (its offer replicated)
/// on the in-memory transport: the bootstrap node's address and the nodes, the gateway
/// first so that it withdraws its offer while the others still run.
async fn mobile_max_in_memory(
    security: MemorySecurity,
    dht: &DhtSection,
) -> (Multiaddr, Vec<Node>) {
    let bootstrap = start_in_memory(
        local_spec(LocalTransport::Memory, None, None, dht),
        security,
    )
    .await;
    let address = bootstrap.dialable_addrs().await.remove(0);
    let mut nodes = vec![bootstrap];
    for _ in 0..4 {
        let spec = local_spec(LocalTransport::Memory, Some(address.clone()), None, dht);
        nodes.push(start_in_memory(spec, security).await);
    }
    let gateway_plan = plan("Mobile Max", &[("+447", 1)], 380, 500);
    let spec = local_spec(
        LocalTransport::Memory,
        Some(address.clone()),
        Some(gateway_plan),
        dht,
    );
    let gateway = start_in_memory(spec, security).await;
    gateway
        .publisher()
        .unwrap()
        .wait_replicated(DEADLINE)
        .await
        .unwrap();
    nodes.insert(0, gateway);
    (address, nodes)
}

/// Simulations run nodes on the in-memory transport, secured by noise or, for thousands of
/// nodes, by plaintext: a node joins, publishes and is found the same way on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_the_in_memory_transport_discover_with_noise_or_plaintext() {
    for security in [MemorySecurity::Noise, MemorySecurity::Plaintext] {
        let dht = DhtSection::default();
        let (address, nodes) = mobile_max_in_memory(security, &dht).await;
        assert!(
            address.to_string().starts_with("/memory/"),
            "{security:?}: {address}"
        );
        let caller = start_in_memory(caller_spec(vec![address], &dht), security).await;

        let found = discover_until(&caller, "Mobile Max", |f| !f.offers.is_empty()).await;
        assert_eq!(names(&found), ["Mobile Max"], "{security:?}");

        for node in [caller].into_iter().chain(nodes) {
            node.shutdown().await.unwrap();
        }
    }
}

/// A caller whose connections all closed while it was idle still finds gateways: its
/// lookup dials the peers of its routing table again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_whose_idle_connections_closed_still_discovers() {
    let dht = DhtSection::default();
    let (address, nodes) = mobile_max_in_memory(MemorySecurity::Noise, &dht).await;
    let mut spec = caller_spec(vec![address], &dht);
    spec.settings.idle_connection_timeout = Duration::from_secs(1);
    let caller = start_in_memory(spec, MemorySecurity::Noise).await;
    discover_until(&caller, "Mobile Max", |f| !f.offers.is_empty()).await;

    let status = wait_for("the caller's connections to close", DEADLINE, || async {
        let status = caller.client().status().await.ok()?;
        (status.connected_peers == 0).then_some(status)
    })
    .await;
    assert!(status.routing_table_size > 0, "{status:?}");
    let found = discovery::discover(caller.client(), &query())
        .await
        .unwrap();
    assert_eq!(names(&found), ["Mobile Max"]);

    for node in [caller].into_iter().chain(nodes) {
        node.kill().await;
    }
}
