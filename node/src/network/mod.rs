//! The node's libp2p network: one task owns the swarm, a [`Client`] talks to it.
//!
//! [`start`] builds the swarm (TCP and QUIC, noise, yamux; Kademlia, identify, ping and
//! connection limits), starts listening and spawns the [`event_loop`]. The returned
//! [`Client`] is cheap to clone; each call sends a command over a bounded channel and
//! awaits its reply, and every network wait inside has a deadline (Kademlia's query
//! timeout, the dial timeout) so that no call hangs forever.

mod behaviour;
mod copies;
pub mod dht_rate_limit;
mod error;
mod event_loop;
pub mod index;
pub mod links;
pub mod reachability;
pub mod records;
mod store;
pub mod traffic;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use interlink_protocol::discovery::{IndexKey, OfferQuery};
use interlink_protocol::{DhtKey, SignedOffer};
use libp2p::core::ConnectedPoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{MemoryTransport, Transport, upgrade};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, kad, noise, plaintext, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use behaviour::{Behaviour, KAD_PROTOCOL};
pub use copies::Placement;
pub use error::{Cause, NetworkError};
pub use index::{CacheUse, Found, Indexed};
pub use links::{LinkModel, Links};
pub use reachability::Scope;
pub use traffic::Traffic;
use traffic::{Counted, TrafficCounters};

use crate::config::{Config, DhtSection, DiscoverySection, LimitsSection, peer_id_of};
use crate::metrics::Metrics;

/// Commands queued for the event loop before senders wait.
const COMMAND_QUEUE: usize = 256;

/// What the network layer needs to know, drawn from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: Vec<Multiaddr>,
    /// Addresses others should dial this node at; empty: its listen addresses.
    pub external_addresses: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub idle_connection_timeout: Duration,
    pub dht: DhtSection,
    /// The offer index: lookups, the cache, what is held for others.
    pub discovery: DiscoverySection,
    /// Serve the DHT to others (a reachable node) or only query it (a short-lived client).
    /// On the internet a server serves only while others can reach it (`reachability.rs`).
    pub server_mode: bool,
    /// Where the network lives: what this node may advertise.
    pub scope: Scope,
    /// How connections over the in-memory transport are secured; TCP and QUIC always use
    /// noise (or QUIC's TLS).
    pub memory_security: MemorySecurity,
    /// Round-trip times of in-memory connections (simulations of the internet); `None`:
    /// none.
    pub memory_links: Option<Links>,
    /// What one peer may ask of this node.
    pub limits: LimitsSection,
}

/// The security upgrade of in-memory connections, which never leave the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemorySecurity {
    /// Noise, as on the network: what a real node pays for every connection.
    #[default]
    Noise,
    /// libp2p's plaintext exchange of public keys (the peer ids still match the keys,
    /// nothing is encrypted): for simulations of thousands of nodes on a few cores, where
    /// noise's key exchanges and buffers would be most of the cost.
    Plaintext,
}

impl Settings {
    /// The settings of a long-running node from its configuration.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            listen: config.network.listen.clone(),
            external_addresses: config.network.external_addresses.clone(),
            bootstrap: config.network.bootstrap.clone(),
            idle_connection_timeout: Duration::from_secs(
                config.network.idle_connection_timeout_secs,
            ),
            dht: config.dht.clone(),
            discovery: config.discovery.clone(),
            server_mode: true,
            scope: config.network.scope(),
            memory_security: MemorySecurity::Noise,
            memory_links: None,
            limits: config.limits.clone(),
        }
    }
}

/// Records and provider records refused, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts(pub BTreeMap<&'static str, u64>);

impl RefusalCounts {
    fn record(&mut self, reason: &'static str) {
        *self.0.entry(reason).or_default() += 1;
    }

    /// Refusals of all reasons.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// A snapshot of the node's network state.
#[derive(Clone, Debug)]
pub struct Status {
    pub peer_id: PeerId,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub stored_records: usize,
    pub listen_addrs: Vec<Multiaddr>,
    pub refusals: RefusalCounts,
    /// Bytes through all of the node's connections so far.
    pub traffic: Traffic,
    /// Requests sent by the node's own Kademlia queries so far.
    pub query_requests: u64,
    /// Offers this node holds in the offer index for others, and their bytes.
    pub index_offers: usize,
    pub index_bytes: usize,
    /// Lookups of other peers this node answered as a holder of their key.
    pub index_answers: u64,
}

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

pub(crate) enum Command {
    Dial {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        reply: Reply<()>,
    },
    AddPeer {
        peer: PeerId,
        address: Multiaddr,
    },
    Bootstrap {
        reply: Reply<()>,
    },
    PutOffer {
        offer: SignedOffer,
        placement: Placement,
        reply: Reply<usize>,
    },
    StartProviding {
        key: DhtKey,
        reply: Reply<()>,
    },
    StopProviding {
        key: DhtKey,
    },
    GetProviders {
        key: DhtKey,
        reply: Reply<HashSet<PeerId>>,
    },
    GetOffer {
        provider: PeerId,
        reply: Reply<Option<SignedOffer>>,
    },
    FindOffers {
        query: OfferQuery,
        cache: CacheUse,
        reply: Reply<Found>,
    },
    IndexOffer {
        offer: SignedOffer,
        key: IndexKey,
        placement: Placement,
        reply: Reply<Indexed>,
    },
    MeasureRtt {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        reply: Reply<Duration>,
    },
    StoredRecord {
        key: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    StoredProviders {
        key: DhtKey,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
}

impl Command {
    /// Whether the command leaves a reply waiting on the network.
    fn waits(&self) -> bool {
        matches!(
            self,
            Command::Dial { .. }
                | Command::PutOffer { .. }
                | Command::StartProviding { .. }
                | Command::GetProviders { .. }
                | Command::GetOffer { .. }
                | Command::FindOffers { .. }
                | Command::IndexOffer { .. }
                | Command::MeasureRtt { .. }
        )
    }

    /// Answers the command at once with `error`.
    fn refuse(self, error: NetworkError) {
        match self {
            Command::Dial { reply, .. }
            | Command::StartProviding { reply, .. }
            | Command::Bootstrap { reply } => {
                let _ = reply.send(Err(error));
            }
            Command::PutOffer { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::GetProviders { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::GetOffer { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::FindOffers { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::IndexOffer { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::MeasureRtt { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::AddPeer { .. }
            | Command::StopProviding { .. }
            | Command::StoredRecord { .. }
            | Command::StoredProviders { .. }
            | Command::Status { .. } => {}
        }
    }
}

/// A handle on the network task. Clones share the task.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    /// The addresses others can reach this node at, as confirmed (see `reachability.rs`).
    external_addrs: watch::Receiver<Vec<Multiaddr>>,
    streams: libp2p_stream::Control,
    metrics: Metrics,
    /// How many offers a lookup asks for unless told: `[discovery] results`.
    results: u16,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// The running network task; dropping it does not stop the task, [`NetworkTask::stop`] does.
#[derive(Debug)]
pub struct NetworkTask {
    shutdown: oneshot::Sender<()>,
    handle: Option<JoinHandle<()>>,
}

impl NetworkTask {
    /// Waits until the event loop ends without being asked to: a bug, reported with its
    /// panic message if it panicked.
    pub async fn ended(&mut self) -> String {
        match self.handle.as_mut() {
            Some(handle) => {
                let result = handle.await;
                self.handle = None;
                match result {
                    Ok(()) => "the network event loop returned".to_owned(),
                    Err(e) => format!("the network event loop failed: {e}"),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the event loop and waits for it to end; open connections are closed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        if let Some(handle) = self.handle {
            let _ = handle.await;
        }
    }
}

/// yamux with room for many concurrent calls between two nodes: each call is a stream on
/// the caller's connection to the gateway, so a busy caller service needs many (yamux's
/// default is 512; its limit on the connection's receive window, 1 GiB allocated only as
/// data arrives, allows `[limits] max_streams_per_connection`, 4096 by default).
fn multiplexer(max_streams: usize) -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(max_streams);
    config
}

/// Wraps each connection of a transport so that its bytes are counted into `counters`.
fn counting<S>(
    counters: &Arc<TrafficCounters>,
) -> impl Fn(S, ConnectedPoint) -> Counted<S> + Clone + use<S> {
    let counters = Arc::clone(counters);
    move |connection, _| Counted::new(connection, Arc::clone(&counters))
}

/// How long a QUIC connection may hear nothing before it is closed, in ms (quinn's default
/// via libp2p is 10 s). A peer that dies sends nothing on QUIC, unlike TCP's FIN: a caller
/// learns that its gateway died during a call only when this runs out, so it is kept to a
/// few seconds. Both ends use the lower of their two values.
const QUIC_IDLE_TIMEOUT_MS: u32 = 3_000;
/// Keep-alive packets on a quiet QUIC connection, well within the idle timeout.
const QUIC_KEEP_ALIVE: Duration = Duration::from_millis(750);

/// Builds the swarm, starts listening, and spawns the event loop; what it does is counted
/// in `metrics`.
pub fn start(
    keypair: Keypair,
    settings: &Settings,
    metrics: Metrics,
) -> Result<(Client, NetworkTask), NetworkError> {
    let dht = settings.dht.clone();
    let limits = settings.limits.clone();
    // A node that others should reach over the internet finds out whether they can.
    let reachability = settings.server_mode && settings.scope == Scope::Internet;
    let max_streams = limits.max_streams_per_connection;
    let traffic = Arc::new(TrafficCounters::default());
    let counters = Arc::clone(&traffic);
    let memory_security = settings.memory_security;
    let memory_links = settings.memory_links.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic_config(|mut config| {
            config.max_idle_timeout = QUIC_IDLE_TIMEOUT_MS;
            config.keep_alive_interval = QUIC_KEEP_ALIVE;
            config
        })
        // TCP, and libp2p's in-memory transport for simulations of many nodes in one
        // process (secured by noise, or plaintext in large simulations); both counted
        // under the security layer so a node knows what its traffic costs.
        .with_other_transport(|key| {
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .map(counting(&counters))
                .upgrade(upgrade::Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(multiplexer(max_streams))
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            let memory = MemoryTransport::default()
                .and_then(move |connection, endpoint| {
                    links::connect(connection, endpoint, memory_links.clone())
                })
                .map(counting(&counters))
                .upgrade(upgrade::Version::V1Lazy);
            let memory = match memory_security {
                MemorySecurity::Noise => memory
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(multiplexer(max_streams))
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                    .boxed(),
                MemorySecurity::Plaintext => memory
                    .authenticate(plaintext::Config::new(key))
                    .multiplex(multiplexer(max_streams))
                    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                    .boxed(),
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp.or_transport(memory)
                    .map(|either, _| either.into_inner()),
            )
        })
        .map_err(|e| NetworkError::Transport(Cause::new(e)))?
        .with_dns()
        .map_err(|e| NetworkError::Transport(Cause::new(e)))?
        .with_behaviour(|key| {
            Behaviour::new(
                key,
                &dht,
                &limits,
                settings.scope,
                reachability,
                metrics.clone(),
            )
        })
        .map_err(|e| NetworkError::Transport(Cause::new(e)))?
        // A stream's protocol is proposed with its first bytes instead of a round trip
        // before them (multistream-select's "V1Lazy"): every stream opened names exactly
        // one protocol, so nothing is lost but the wait.
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(settings.idle_connection_timeout)
                .with_substream_upgrade_protocol_override(upgrade::Version::V1Lazy)
        })
        .with_connection_timeout(Duration::from_secs(settings.limits.handshake_timeout_secs))
        .build();

    let mode = match (settings.server_mode, settings.scope) {
        (true, Scope::Local) => Some(kad::Mode::Server),
        // libp2p-kad's automatic mode: a server only while an external address is
        // confirmed (configured, or dialled back by a peer through AutoNAT).
        (true, Scope::Internet) => None,
        (false, _) => Some(kad::Mode::Client),
    };
    swarm.behaviour_mut().kad.set_mode(mode);
    // Provider records carry the provider's confirmed external addresses; without any,
    // libp2p-kad answers a provider lookup with that provider only if the answering node
    // has it in its routing table, so gateways went missing. A server confirms the
    // addresses it was configured with, or else each listen address as it binds.
    for address in &settings.external_addresses {
        swarm.add_external_address(address.clone());
    }
    for address in &settings.listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetworkError::Listen {
                address: address.clone(),
                source: Cause::new(e),
            })?;
    }

    let local_peer_id = *swarm.local_peer_id();
    let streams = swarm.behaviour().stream.new_control();
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    let (external_tx, external_rx) = watch::channel(Vec::new());
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let event_loop = event_loop::EventLoop::new(
        swarm,
        commands_rx,
        listen_tx,
        external_tx,
        settings,
        traffic,
        metrics.clone(),
    );
    let handle = tokio::spawn(event_loop.run(shutdown_rx));
    let client = Client {
        commands: commands_tx,
        local_peer_id,
        listen_addrs: listen_rx,
        external_addrs: external_rx,
        streams,
        metrics,
        results: settings.discovery.results,
    };
    Ok((
        client,
        NetworkTask {
            shutdown: shutdown_tx,
            handle: Some(handle),
        },
    ))
}

impl Client {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// How many of the best offers a lookup asks for unless told (`[discovery] results`).
    pub fn results(&self) -> u16 {
        self.results
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Opens and accepts streams of our own protocols (a handle, not the swarm: the event
    /// loop still owns it).
    pub fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        response.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Connects to `peer` at `addresses` (or a known address), waiting for the connection.
    pub async fn dial(&self, peer: PeerId, addresses: Vec<Multiaddr>) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Dial {
            peer,
            addresses,
            reply,
        })
        .await
    }

    /// Connects to `peer` (dialled at `addresses` unless already connected) and opens a
    /// stream of `protocol` to it. Twice: a connection can close while the stream opens
    /// (a simultaneous dial that lost, a limit on the other side), and nothing was sent on
    /// it yet, so a second connection is as good as the first.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, NetworkError> {
        let attempt = || async {
            self.dial(peer, addresses.clone()).await?;
            self.streams
                .clone()
                .open_stream(peer, protocol.clone())
                .await
                .map_err(|e| NetworkError::Unreachable {
                    peer,
                    source: Cause::new(e),
                })
        };
        match attempt().await {
            Ok(stream) => Ok(stream),
            Err(_) => attempt().await,
        }
    }

    /// Joins the network through `bootstrap` peers: adds them to the routing table, connects
    /// to them and starts a Kademlia bootstrap. Succeeds once one of them is connected.
    pub async fn join(
        &self,
        bootstrap: &[Multiaddr],
        deadline: Duration,
    ) -> Result<(), NetworkError> {
        let mut dials = Vec::new();
        for address in bootstrap {
            let Some(peer) = peer_id_of(address) else {
                continue;
            };
            let _ = self
                .commands
                .send(Command::AddPeer {
                    peer,
                    address: address.clone(),
                })
                .await;
            dials.push(Box::pin(self.dial(peer, vec![address.clone()])));
        }
        if dials.is_empty() {
            return Err(NetworkError::NoPeers);
        }
        let mut last_error = NetworkError::NoPeers;
        let connected = tokio::time::timeout(deadline, async {
            while !dials.is_empty() {
                let (result, _, rest) = futures::future::select_all(dials).await;
                dials = rest;
                match result {
                    Ok(()) => return true,
                    Err(e) => last_error = e,
                }
            }
            false
        })
        .await;
        match connected {
            Ok(true) => {
                let (reply, _) = oneshot::channel();
                let _ = self.commands.send(Command::Bootstrap { reply }).await;
                Ok(())
            }
            Ok(false) => Err(last_error),
            Err(_) => Err(NetworkError::Timeout),
        }
    }

    /// Runs a Kademlia bootstrap (a lookup of this node's own id) to fill the routing table.
    pub async fn bootstrap(&self) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Bootstrap { reply }).await
    }

    /// Stores this node's signed offer locally and at the nodes closest to its key (found
    /// anew, or those found a moment ago, as `placement` says).
    pub async fn put_offer(
        &self,
        offer: SignedOffer,
        placement: Placement,
    ) -> Result<usize, NetworkError> {
        self.ask(|reply| Command::PutOffer {
            offer,
            placement,
            reply,
        })
        .await
    }

    /// Announces this node as a provider under `key`.
    pub async fn start_providing(&self, key: DhtKey) -> Result<(), NetworkError> {
        self.ask(|reply| Command::StartProviding { key, reply })
            .await
    }

    /// Stops announcing this node under `key` (others forget it when their copy expires).
    pub async fn stop_providing(&self, key: DhtKey) {
        let _ = self.commands.send(Command::StopProviding { key }).await;
    }

    /// The peers announced as providers under `key`.
    pub async fn get_providers(&self, key: DhtKey) -> Result<HashSet<PeerId>, NetworkError> {
        self.ask(|reply| Command::GetProviders { key, reply }).await
    }

    /// The newest valid offer of `provider` in the DHT, if any.
    pub async fn get_offer(&self, provider: PeerId) -> Result<Option<SignedOffer>, NetworkError> {
        self.ask(|reply| Command::GetOffer { provider, reply })
            .await
    }

    /// The offers that answer `query`, from the offer index: from the cache if `cache`
    /// allows and holds it, else by a walk toward the query's key.
    pub async fn find_offers(
        &self,
        query: OfferQuery,
        cache: CacheUse,
    ) -> Result<Found, NetworkError> {
        self.ask(|reply| Command::FindOffers {
            query,
            cache,
            reply,
        })
        .await
    }

    /// Stores this node's `offer` at the nodes closest to `key` of the offer index (found
    /// anew, or those found a moment ago, as `placement` says).
    pub async fn index_offer(
        &self,
        offer: SignedOffer,
        key: IndexKey,
        placement: Placement,
    ) -> Result<Indexed, NetworkError> {
        self.ask(|reply| Command::IndexOffer {
            offer,
            key,
            placement,
            reply,
        })
        .await
    }

    /// The round-trip time to `peer`, connecting at `addresses` if need be.
    pub async fn measure_rtt(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<Duration, NetworkError> {
        self.ask(|reply| Command::MeasureRtt {
            peer,
            addresses,
            reply,
        })
        .await
    }

    /// The record this node stores under `key`, if any.
    pub async fn stored_record(&self, key: Vec<u8>) -> Option<Vec<u8>> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::StoredRecord { key, reply })
            .await
            .ok()?;
        response.await.ok()?
    }

    /// The providers this node stores under `key`.
    pub async fn stored_providers(&self, key: DhtKey) -> Vec<PeerId> {
        let (reply, response) = oneshot::channel();
        if self
            .commands
            .send(Command::StoredProviders { key, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        response.await.unwrap_or_default()
    }

    /// A snapshot of the network state.
    pub async fn status(&self) -> Result<Status, NetworkError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::Status { reply })
            .await
            .map_err(|_| NetworkError::Stopped)?;
        response.await.map_err(|_| NetworkError::Stopped)
    }

    /// The addresses others can reach this node at, confirmed (configured, dialled back
    /// by a peer, or on a local network its listen addresses), as they change.
    pub fn external_addrs(&self) -> watch::Receiver<Vec<Multiaddr>> {
        self.external_addrs.clone()
    }

    /// The addresses the node listens on, once at least `count` are bound.
    pub async fn listen_addrs(
        &self,
        count: usize,
        deadline: Duration,
    ) -> Result<Vec<Multiaddr>, NetworkError> {
        let mut receiver = self.listen_addrs.clone();
        let addrs = tokio::time::timeout(deadline, receiver.wait_for(|addrs| addrs.len() >= count))
            .await
            .map_err(|_| NetworkError::Timeout)?
            .map_err(|_| NetworkError::Stopped)?;
        Ok(addrs.clone())
    }
}
