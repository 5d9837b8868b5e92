//! A network of real nodes in one process on 127.0.0.1: for the demo, tests and benchmarks.
//!
//! Each node is a full [`Node`] with its own swarm, TCP listener on an ephemeral loopback
//! port and event loop; they find each other through the first node, the bootstrap.

use std::time::Duration;

use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_protocol::call::Timers;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;

use crate::config::{DhtSection, DiscoverySection, GatewayPlan, LimitsSection};
use crate::network::{MemorySecurity, NetworkError, Scope, Settings};
use crate::node::{Node, NodeError, NodeSpec};
use crate::publisher::PublishError;

/// How in-process nodes reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalTransport {
    /// Real TCP sockets on 127.0.0.1.
    #[default]
    Tcp,
    /// libp2p's in-memory transport: the same noise and yamux on channels instead of
    /// sockets, for many nodes in one process.
    Memory,
}

impl LocalTransport {
    /// An address to listen on with an ephemeral port.
    pub fn listen_addr(self) -> Multiaddr {
        match self {
            LocalTransport::Tcp => Multiaddr::empty()
                .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
                .with(Protocol::Tcp(0)),
            LocalTransport::Memory => Multiaddr::empty().with(Protocol::Memory(0)),
        }
    }
}

/// The spec of a node on loopback TCP that joins through `bootstrap`.
pub fn loopback_spec(
    bootstrap: Option<Multiaddr>,
    gateway: Option<GatewayPlan>,
    dht: &DhtSection,
) -> NodeSpec {
    local_spec(LocalTransport::Tcp, bootstrap, gateway, dht)
}

/// The spec of a server node on `transport` that joins through `bootstrap`.
pub fn local_spec(
    transport: LocalTransport,
    bootstrap: Option<Multiaddr>,
    gateway: Option<GatewayPlan>,
    dht: &DhtSection,
) -> NodeSpec {
    NodeSpec {
        settings: Settings {
            listen: vec![transport.listen_addr()],
            external_addresses: Vec::new(),
            bootstrap: bootstrap.into_iter().collect(),
            idle_connection_timeout: Duration::from_secs(60),
            dht: dht.clone(),
            discovery: DiscoverySection::default(),
            server_mode: true,
            scope: Scope::Local,
            memory_security: MemorySecurity::Noise,
            memory_links: None,
            limits: LimitsSection::default(),
        },
        gateway,
        data_dir: None,
        media: MediaSettings::loopback(),
        timers: Timers::default(),
    }
}

/// The spec of a short-lived caller: no listener, Kademlia client mode.
pub fn caller_spec(bootstrap: Vec<Multiaddr>, dht: &DhtSection) -> NodeSpec {
    NodeSpec {
        settings: Settings {
            listen: Vec::new(),
            external_addresses: Vec::new(),
            scope: Scope::of(&bootstrap),
            bootstrap,
            idle_connection_timeout: Duration::from_secs(60),
            dht: dht.clone(),
            discovery: DiscoverySection::default(),
            server_mode: false,
            memory_security: MemorySecurity::Noise,
            memory_links: None,
            limits: LimitsSection::default(),
        },
        gateway: None,
        data_dir: None,
        media: MediaSettings::loopback(),
        timers: Timers::default(),
    }
}

/// Nodes running in this process.
#[derive(Debug)]
pub struct LocalNetwork {
    /// The node everyone else joins through.
    pub bootstrap: Node,
    /// Its address, ending in `/p2p/PEER_ID`.
    pub bootstrap_addr: Multiaddr,
    /// Nodes that only serve the DHT.
    pub peers: Vec<Node>,
    /// Gateway nodes, in the order of the plans given.
    pub gateways: Vec<Node>,
    dht: DhtSection,
}

impl LocalNetwork {
    /// Starts a bootstrap node, `peers` plain nodes and one gateway per plan.
    pub async fn start(
        peers: usize,
        gateways: Vec<GatewayPlan>,
        dht: &DhtSection,
    ) -> Result<LocalNetwork, NodeError> {
        let bootstrap =
            Node::start(loopback_spec(None, None, dht), Keypair::generate_ed25519()).await?;
        let bootstrap_addr = bootstrap
            .dialable_addrs()
            .await
            .into_iter()
            .next()
            .ok_or(NodeError::Network(NetworkError::NoPeers))?;
        let mut network = LocalNetwork {
            bootstrap,
            bootstrap_addr,
            peers: Vec::new(),
            gateways: Vec::new(),
            dht: dht.clone(),
        };
        for _ in 0..peers {
            let node = network.start_node(None).await?;
            network.peers.push(node);
        }
        for plan in gateways {
            let node = network.start_node(Some(plan)).await?;
            network.gateways.push(node);
        }
        Ok(network)
    }

    /// Starts one more node that joins through the bootstrap node.
    pub async fn start_node(&self, gateway: Option<GatewayPlan>) -> Result<Node, NodeError> {
        let spec = loopback_spec(Some(self.bootstrap_addr.clone()), gateway, &self.dht);
        Node::start(spec, Keypair::generate_ed25519()).await
    }

    /// Starts a caller (client mode, no listener) joined through the bootstrap node.
    pub async fn caller(&self) -> Result<Node, NodeError> {
        Node::start(
            caller_spec(vec![self.bootstrap_addr.clone()], &self.dht),
            Keypair::generate_ed25519(),
        )
        .await
    }

    /// Waits until every gateway's offer has been acknowledged by other nodes.
    pub async fn wait_published(&self, deadline: Duration) -> Result<(), PublishError> {
        for gateway in &self.gateways {
            if let Some(publisher) = gateway.publisher() {
                publisher.wait_replicated(deadline).await?;
            }
        }
        Ok(())
    }

    /// Every node, bootstrap first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.bootstrap)
            .chain(&self.peers)
            .chain(&self.gateways)
    }

    /// Shuts every node down, gateways first so that their withdrawals reach the others.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let mut result = Ok(());
        for node in self
            .gateways
            .into_iter()
            .chain(self.peers)
            .chain(std::iter::once(self.bootstrap))
        {
            if let Err(e) = node.shutdown().await {
                result = Err(e);
            }
        }
        result
    }
}
