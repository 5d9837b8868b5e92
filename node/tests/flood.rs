//! One peer floods a gateway on 127.0.0.1 with forged records, call invitations and DHT
//! requests, each bounded in count and time, while an honest caller keeps discovering the
//! gateway and calling through it. The gateway runs with the default `[limits]`.
//!
//! The flooder is a bare libp2p peer (TCP, noise, yamux) that opens streams of the
//! gateway's own protocols and writes to them directly: Kademlia messages encoded here
//! (the protobuf of libp2p-kad, length-prefixed with an unsigned varint) and call frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use interlink_gateway_plugin::echo::EchoConfig;
use interlink_node::calls::caller::{self, CallOptions, Progress};
use interlink_node::calls::wire::CALL_PROTOCOL;
use interlink_node::clock;
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::identity;
use interlink_node::local_network::{LocalNetwork, loopback_spec};
use interlink_node::metrics::MetricsServer;
use interlink_node::network::KAD_PROTOCOL;
use interlink_node::node::Node;
use interlink_protocol::call::{CallId, Frame, Invite, OfferRef, SignedInvite};
use interlink_protocol::offer::Tariff;
use interlink_protocol::signed::MAX_SIGNED_OFFER_BYTES;
use interlink_protocol::{CountryCode, DhtKey, E164, SecretKey, ServiceKind, SignedOffer};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, noise, tcp, yamux};
use support::scrape::{count, scrape};
use support::{free_uk_offer, plan, uk_mobile};
use tokio::sync::Mutex;

const DEADLINE: Duration = Duration::from_secs(30);
/// How long one phase of the flood may go on.
const PHASE: Duration = Duration::from_secs(10);
/// Streams the flooder works on at once.
const WORKERS: usize = 16;
/// How often the flooder dials again after it is cut off.
const MAX_REDIALS: u32 = 50;
/// How long the flooder waits for an answer before it counts the request as unanswered.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// The most an honest call may take, discovery included, during and after the flood: the
/// README's figures are 6–10 ms (release build, idle machine); this is a debug build on
/// two cores that the flood shares, where it took 17–101 ms on a busy machine and up to
/// 630 ms while another engineer's test suite ran beside it.
const HONEST_CALL_BOUND: Duration = Duration::from_secs(1);

/// A bare libp2p peer with nothing but raw streams.
struct Flooder {
    keypair: Keypair,
    control: libp2p_stream::Control,
    target: PeerId,
    _swarm: tokio::task::JoinHandle<()>,
}

impl Flooder {
    async fn start(target: PeerId, addresses: Vec<Multiaddr>) -> Flooder {
        let keypair = Keypair::generate_ed25519();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let control = swarm.behaviour().new_control();
        // Dial, and dial again whenever cut off, as a flooder would (a bounded number of
        // times): each attempt after a block is one the gateway must refuse.
        let dial = move |swarm: &mut libp2p::Swarm<libp2p_stream::Behaviour>| {
            let opts = DialOpts::peer_id(target)
                .addresses(addresses.clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = swarm.dial(opts);
        };
        dial(&mut swarm);
        tokio::time::timeout(DEADLINE, async {
            while !matches!(
                swarm.select_next_some().await,
                SwarmEvent::ConnectionEstablished { .. }
            ) {}
        })
        .await
        .expect("the flooder connects");
        let task = tokio::spawn(async move {
            let mut redials = 0;
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    }
                    | SwarmEvent::OutgoingConnectionError { .. }
                        if redials < MAX_REDIALS =>
                    {
                        redials += 1;
                        dial(&mut swarm);
                    }
                    _ => {}
                }
            }
        });
        Flooder {
            keypair,
            control,
            target,
            _swarm: task,
        }
    }

    async fn open(&self, protocol: StreamProtocol) -> Option<Stream> {
        let mut control = self.control.clone();
        let opened =
            tokio::time::timeout(ANSWER_WAIT, control.open_stream(self.target, protocol)).await;
        match opened {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                eprintln!("open: {e}");
                None
            }
            Err(_) => None,
        }
    }
}

/// What the flooder saw.
#[derive(Default, Debug)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    timeouts: AtomicU64,
    open_failures: AtomicU64,
}

impl Tally {
    fn get(&self, field: &AtomicU64) -> u64 {
        field.load(Ordering::Relaxed)
    }
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag << 3 | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// A Kademlia request: message type (0 PUT_VALUE, 3 GET_PROVIDERS, 4 FIND_NODE), key and,
/// for a PUT, the record's value; length-prefixed as on the wire.
fn kad_request(kind: u8, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut message = vec![1 << 3, kind];
    bytes_field(2, key, &mut message);
    if let Some(value) = value {
        let mut record = Vec::new();
        bytes_field(1, key, &mut record);
        bytes_field(2, value, &mut record);
        bytes_field(3, &record, &mut message);
    }
    let mut framed = Vec::new();
    varint(message.len(), &mut framed);
    framed.extend(message);
    framed
}

/// Reads one length-prefixed Kademlia response.
async fn read_kad_response(stream: &mut Stream) -> std::io::Result<()> {
    let mut length = 0usize;
    for shift in (0..35).step_by(7) {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await?;
        length |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    stream.read_exact(&mut body).await
}

/// Sends `requests` over a few Kademlia streams at once, each waiting for its answer; a
/// request whose stream is reset or not answered in time counts as refused.
async fn flood_dht(flooder: &Flooder, requests: Vec<Vec<u8>>, tally: &Tally) {
    let queue = Arc::new(Mutex::new(requests));
    let give_up = Instant::now() + PHASE;
    let workers = (0..WORKERS).map(|_| {
        let queue = Arc::clone(&queue);
        async move {
            let mut stream: Option<Stream> = None;
            let mut failures_in_a_row = 0;
            while Instant::now() < give_up && failures_in_a_row < 20 {
                let Some(request) = queue.lock().await.pop() else {
                    return;
                };
                if stream.is_none() {
                    stream = flooder.open(KAD_PROTOCOL).await;
                }
                let Some(open) = stream.as_mut() else {
                    tally.open_failures.fetch_add(1, Ordering::Relaxed);
                    failures_in_a_row += 1;
                    continue;
                };
                failures_in_a_row = 0;
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let exchange = async {
                    open.write_all(&request).await?;
                    open.flush().await?;
                    read_kad_response(open).await
                };
                match tokio::time::timeout(ANSWER_WAIT, exchange).await {
                    Ok(Ok(())) => {
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        if other.is_err() {
                            tally.timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        stream = None;
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
}

fn put(key: Vec<u8>, value: &[u8]) -> Vec<u8> {
    kad_request(0, &key, Some(value))
}

/// Forged records: bad signatures, offers under another provider's key, oversized values,
/// and valid offers of many made-up providers, more than one peer may have stored.
fn forged_records() -> Vec<Vec<u8>> {
    let mut requests = Vec::new();
    for i in 0..100u32 {
        let key = SecretKey::from_seed(&[u8::try_from(i % 250).unwrap(); 32]);
        let mut bytes = free_uk_offer(&key, "Forged").as_bytes().to_vec();
        bytes[40] ^= 0xff; // inside the signature
        requests.push(put(DhtKey::Offer(key.provider_id()).to_bytes(), &bytes));
        let other = SecretKey::from_seed(&[u8::try_from(i % 250).unwrap() ^ 0x80; 32]);
        requests.push(put(
            DhtKey::Offer(other.provider_id()).to_bytes(),
            free_uk_offer(&key, "Misplaced").as_bytes(),
        ));
    }
    for _ in 0..50 {
        let key = SecretKey::from_seed(&rand::random());
        requests.push(put(
            DhtKey::Offer(key.provider_id()).to_bytes(),
            &vec![7u8; MAX_SIGNED_OFFER_BYTES + 2000],
        ));
    }
    for _ in 0..300 {
        let key = SecretKey::from_seed(&rand::random());
        requests.push(put(
            DhtKey::Offer(key.provider_id()).to_bytes(),
            free_uk_offer(&key, "Sybil").as_bytes(),
        ));
    }
    requests
}

/// Lookups of random ids and of the providers of UK gateways.
fn lookups(count: usize) -> Vec<Vec<u8>> {
    let providers = DhtKey::Providers {
        kind: ServiceKind::WEBRTC_TO_PSTN,
        country_code: CountryCode::of("44").unwrap(),
    }
    .to_bytes();
    (0..count)
        .map(|i| {
            if i.is_multiple_of(2) {
                kad_request(4, &rand::random::<[u8; 32]>(), None)
            } else {
                kad_request(3, &providers, None)
            }
        })
        .collect()
}

/// Call streams: more silent ones than the peer has places for (each holds its place until
/// it sends an invite, closes, or the invite deadline passes), then invites signed by the
/// flooder at a price the gateway does not offer, and garbage.
async fn flood_invites(flooder: &Flooder, gateway: &SignedOffer, streams: u64, tally: &Tally) {
    let key = identity::secret_key(&flooder.keypair).unwrap();
    let route = gateway.offer().routes[0].clone();
    let invite = |i: u64| {
        let invite = Invite {
            call_id: CallId::from_bytes(rand::random()),
            destination: E164::parse("+447700900999").unwrap(),
            offer: OfferRef {
                provider: gateway.provider(),
                seq: gateway.seq(),
            },
            prefix: route.prefix.clone(),
            tariff: Tariff {
                per_minute: 0,
                ..route.tariff
            },
            caller: key.provider_id(),
            sdp_offer: format!("v=0 {i}"),
            sent_at: clock::now(),
        };
        let bytes = Frame::Invite(
            SignedInvite::sign(invite, &key)
                .unwrap()
                .as_bytes()
                .to_vec(),
        )
        .encode()
        .unwrap();
        let mut framed = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        framed.extend(bytes);
        framed
    };
    let mut silent = Vec::new();
    for _ in 0..40 {
        if let Some(stream) = flooder.open(CALL_PROTOCOL).await {
            silent.push(stream);
        }
    }
    // The places beyond the peer's 32 were refused: those streams are closed unread.
    let closed = futures::future::join_all(silent.into_iter().map(|mut stream| async move {
        let mut byte = [0u8];
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte))
            .await
            .is_ok()
    }))
    .await;
    let closed = closed.into_iter().filter(|closed| *closed).count();
    assert!(
        closed >= 1 && 40 - closed <= 32,
        "no more than the peer's 32 places were held: {closed} closed"
    );
    let next = Arc::new(AtomicU64::new(0));
    let give_up = Instant::now() + PHASE;
    let workers = (0..WORKERS).map(|_| {
        let next = Arc::clone(&next);
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= streams || Instant::now() >= give_up {
                    return;
                }
                let Some(mut stream) = flooder.open(CALL_PROTOCOL).await else {
                    tally.open_failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let bytes = if i.is_multiple_of(4) {
                    vec![0, 0, 0, 3, 0xfa, 0xfa, 0xfa]
                } else {
                    invite(i)
                };
                // A reject frame back means the gateway read the invite; a closed stream
                // with nothing means it was refused unread (or was garbage).
                let exchange = async {
                    stream.write_all(&bytes).await?;
                    stream.flush().await?;
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).await?;
                    Ok::<_, std::io::Error>(answer)
                };
                match tokio::time::timeout(ANSWER_WAIT * 3, exchange).await {
                    Ok(Ok(answer)) if !answer.is_empty() => {
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
}

/// An honest call through the flooded gateway: discovery must list it and it must answer.
async fn honest_call(caller: &Node, gateway: &str) -> (Duration, Duration) {
    let lookup = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let seen = Arc::clone(&lookup);
    let options = CallOptions {
        hold_for: Duration::from_millis(300),
        ..CallOptions::new(uk_mobile())
    };
    let started = Instant::now();
    let report = caller::place_call(&caller.caller(), &options, &move |p| {
        if let Progress::Found { lookup, .. } = p {
            *seen.lock().unwrap() = lookup;
        }
    })
    .await
    .expect("the honest call");
    assert_eq!(report.gateway, gateway);
    assert_eq!(report.receipt.status, "settled");
    let answer = Duration::from_secs_f64(report.command_to_answer_ms / 1000.0);
    assert!(started.elapsed() < DEADLINE);
    let lookup = *lookup.lock().unwrap();
    (lookup, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_refused_and_honest_callers_still_call_through_the_gateway() {
    let gateway_plan = GatewayPlan {
        backend: BackendSpec::Echo(EchoConfig {
            ring_ms: 0,
            ..EchoConfig::default()
        }),
        ..plan("Target", &[("+44", 2)], 420, 600)
    };
    let network = LocalNetwork::start(3, vec![gateway_plan], &DhtSection::default())
        .await
        .unwrap();
    network.wait_published(DEADLINE).await.unwrap();
    let gateway = &network.gateways[0];
    let published = gateway.publisher().unwrap().latest().unwrap().offer;
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), gateway.metrics().clone())
        .await
        .unwrap();
    let honest = network.caller().await.unwrap();

    let mut figures = vec![("before the flood", honest_call(&honest, "Target").await)];

    let flooder = Flooder::start(gateway.peer_id(), gateway.dialable_addrs().await).await;
    let started = Instant::now();

    // Forged records: within the request rate, so each reaches the validator.
    let records = Tally::default();
    flood_dht(&flooder, forged_records(), &records).await;
    let (_, _, text) = scrape(&metrics.url()).await;
    let refused = |reason: &str| {
        count(
            &text,
            &format!("interlink_offers_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("bad_signature"), 100.0, "{records:?}");
    assert_eq!(refused("wrong_key"), 100.0);
    assert_eq!(refused("too_large"), 50.0);
    assert_eq!(
        count(
            &text,
            "interlink_limit_refusals_total{limit=\"records_per_peer\"}"
        ),
        300.0 - 256.0,
        "valid offers beyond the peer's quota of 256"
    );
    assert_eq!(
        count(&text, "interlink_offers_validated_total{source=\"put\"}"),
        256.0
    );

    // Call invitations, while an honest caller calls through the same gateway.
    let invites = Tally::default();
    let (_, during_invites) = tokio::join!(
        flood_invites(&flooder, &published, 2000, &invites),
        honest_call(&honest, "Target"),
    );
    figures.push(("during the invitation flood", during_invites));

    // Kademlia requests far over the peer's rate, while the honest caller calls again.
    let requests = Tally::default();
    let (_, during_requests) = tokio::join!(
        flood_dht(&flooder, lookups(4000), &requests),
        honest_call(&honest, "Target"),
    );
    figures.push(("during the DHT request flood", during_requests));
    let flood_took = started.elapsed();
    figures.push(("after the flood", honest_call(&honest, "Target").await));

    // The gateway counts its side of the last call once it is over, which may follow the
    // caller's return.
    let text = support::wait_for("the gateway's last call", DEADLINE, || async {
        let (_, _, text) = scrape(&metrics.url()).await;
        (count(
            &text,
            "interlink_calls_total{role=\"gateway\",outcome=\"settled\"}",
        ) >= 4.0)
            .then_some(text)
    })
    .await;
    let limit = |name: &str| {
        count(
            &text,
            &format!("interlink_limit_refusals_total{{limit=\"{name}\"}}"),
        )
    };
    eprintln!(
        "flood of {flood_took:?}: records {records:?}\ninvites {invites:?}\nrequests {requests:?}\n\
         refusals: call_invites {} pending_invites {} dht_requests {} blocked_peer {}",
        limit("call_invites"),
        limit("pending_invites"),
        limit("dht_requests"),
        limit("blocked_peer"),
    );
    for (when, (lookup, answer)) in &figures {
        eprintln!("honest call {when}: lookup {lookup:?}, command to answer {answer:?}");
    }
    // The call before the flood is the caller's first (its connections are new): the
    // baseline, not held to the bound.
    for (when, (_, answer)) in &figures[1..] {
        assert!(*answer < HONEST_CALL_BOUND, "{when}: {answer:?}");
    }
    assert!(flood_took < 4 * PHASE, "the flood is bounded in time");
    assert!(records.get(&records.sent) <= 700 && invites.get(&invites.sent) <= 2000);
    assert!(
        limit("call_invites") > 0.0,
        "invitations over the rate were refused"
    );
    assert!(
        limit("pending_invites") > 0.0,
        "silent streams beyond the peer's places were refused"
    );
    assert!(
        count(
            &text,
            "interlink_calls_total{role=\"gateway\",outcome=\"rejected\"}"
        ) > 0.0,
        "invites within the rate were read and refused (price changed)"
    );
    assert!(
        count(
            &text,
            "interlink_call_stream_errors_total{error=\"malformed\"}"
        ) > 0.0
    );
    assert!(
        limit("dht_requests") > 0.0,
        "requests over the rate were refused"
    );
    assert!(
        requests.get(&requests.refused) > 0,
        "the flooder saw its excess requests fail: {requests:?}"
    );
    assert!(
        limit("blocked_peer") > 0.0 || requests.get(&requests.open_failures) > 0,
        "the peer that kept flooding was cut off: {requests:?}"
    );
    assert_eq!(
        count(
            &text,
            "interlink_calls_total{role=\"gateway\",outcome=\"settled\"}"
        ),
        4.0,
        "every honest call was carried"
    );
    gateway.client().status().await.expect("the gateway is up");

    metrics.shutdown().await;
    honest.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_hold_a_pending_place_only_until_the_handshake_deadline() {
    let mut spec = loopback_spec(None, None, &DhtSection::default());
    spec.settings.limits.handshake_timeout_secs = 1;
    spec.settings.limits.max_pending_incoming = 16;
    let target = Node::start(spec, Keypair::generate_ed25519())
        .await
        .unwrap();
    let address = target.dialable_addrs().await.remove(0);
    let port = address
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), target.metrics().clone())
        .await
        .unwrap();

    // 24 sockets that never say a word: 16 wait in the handshake, 8 are refused at once,
    // and every one is closed by the node within the deadline (1 s, plus slack).
    let mut sockets = Vec::new();
    for _ in 0..24 {
        sockets.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let closed = futures::future::join_all(sockets.into_iter().map(|mut socket| async move {
        let mut byte = [0u8; 64];
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut socket, &mut byte),
            )
            .await
            {
                Ok(Ok(0) | Err(_)) => return true,
                // The node's side of the handshake (multistream-select) may come first.
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }))
    .await;
    assert!(closed.iter().all(|c| *c), "every silent socket was closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, _, text) = scrape(&metrics.url()).await;
    assert!(
        count(
            &text,
            "interlink_limit_refusals_total{limit=\"connections\"}"
        ) >= 8.0,
        "the sockets beyond 16 pending were refused"
    );

    // The places are free again: a node joins through it.
    let joining = Node::start(
        loopback_spec(Some(address), None, &DhtSection::default()),
        Keypair::generate_ed25519(),
    )
    .await
    .unwrap();
    support::wait_for("the joining node's connection", DEADLINE, || async {
        let status = target.client().status().await.unwrap();
        (status.connected_peers >= 1).then_some(())
    })
    .await;

    metrics.shutdown().await;
    joining.shutdown().await.unwrap();
    target.shutdown().await.unwrap();
}
