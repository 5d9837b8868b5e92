//! A running Interlink node: the network task, membership upkeep and, on a gateway, the
//! publisher.
//!
//! [`Node::start`] listens, joins the network through the bootstrap peers (and keeps
//! rejoining if it ever loses every peer), and starts publishing if the node sells a
//! gateway service. [`Node::shutdown`] withdraws the offer before stopping, so callers stop
//! seeing the gateway at once instead of when its offer expires.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use interlink_gateway_plugin::CapabilityError;
use interlink_gateway_plugin::conference::{BridgeSettings, ConferenceBridge};
use interlink_gateway_plugin::echo::EchoGateway;
use interlink_gateway_plugin::gateway::Gateway;
use interlink_gateway_plugin::sip::{SipError, SipGateway};
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_protocol::SecretKey;
use interlink_protocol::call::Timers;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::calls::caller::CallerContext;
use crate::calls::gateway::{AlreadyAccepting, GatewayContext, GatewayService};
use crate::conference::bridge::{BridgeContext, ConferenceService};
use crate::config::{BackendSpec, Config, ConfigError, GatewayPlan};
use crate::identity;
use crate::metrics::Metrics;
use crate::network::{self, Client, NetworkError, NetworkTask, Scope, Settings};
use crate::publisher::{PublishError, Publisher};
use crate::store::{Role, Store, StoreError};

/// How long to wait for the listeners to bind.
const LISTEN_DEADLINE: Duration = Duration::from_secs(5);
/// How long one attempt to join through the bootstrap peers may take.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How often a node outside the network tries the bootstrap peers again.
const REJOIN_INTERVAL: Duration = Duration::from_secs(30);

/// Everything a node needs to start, already checked.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub settings: Settings,
    pub gateway: Option<GatewayPlan>,
    /// Where the database lives; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    /// Where this node's WebRTC media binds.
    pub media: MediaSettings,
    /// The deadlines of calls, as caller and as gateway.
    pub timers: Timers,
}

impl NodeSpec {
    /// The spec of a long-running node from its configuration.
    pub fn from_config(config: &Config) -> Result<NodeSpec, ConfigError> {
        Ok(NodeSpec {
            settings: Settings::from_config(config),
            gateway: config.gateway_plan()?,
            data_dir: Some(config.node.data_dir.clone()),
            media: config.media.settings(),
            timers: config.calls.timers(),
        })
    }

    /// The spec of a short-lived client of the network (`interlink gateways`, `call`,
    /// `conference`) from its configuration: its `[dht]`, `[discovery]`, `[limits]`,
    /// `[media]`, `[calls]` and idle timeout, no listener, Kademlia in client mode, joined
    /// through `bootstrap`.
    pub fn client(config: &Config, bootstrap: Vec<Multiaddr>) -> NodeSpec {
        let mut settings = Settings::from_config(config);
        settings.listen = Vec::new();
        settings.external_addresses = Vec::new();
        settings.server_mode = false;
        settings.scope = config
            .network
            .scope
            .unwrap_or_else(|| Scope::of(&bootstrap));
        settings.bootstrap = bootstrap;
        NodeSpec {
            settings,
            gateway: None,
            data_dir: Some(config.node.data_dir.clone()),
            media: config.media.settings(),
            timers: config.calls.timers(),
        }
    }
}

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("the identity key is not an ed25519 key; offers must be signed with ed25519")]
    NotEd25519,
    #[error("withdrawing the offer failed: {0}")]
    Withdraw(#[from] PublishError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the gateway back-end: {0}")]
    Backend(#[from] CapabilityError),
    #[error("the SIP back-end: {0}")]
    Sip(#[from] SipError),
    #[error(transparent)]
    Calls(#[from] AlreadyAccepting),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    client: Client,
    network: NetworkTask,
    publisher: Option<Publisher>,
    calls: Option<GatewayService>,
    conferences: Option<ConferenceService>,
    membership: Option<JoinHandle<()>>,
    key: SecretKey,
    store: Store,
    media: MediaSettings,
}

impl Node {
    /// Starts a node with identity `keypair`.
    pub async fn start(spec: NodeSpec, keypair: Keypair) -> Result<Node, NodeError> {
        let secret = identity::secret_key(&keypair).ok_or(NodeError::NotEd25519)?;
        let metrics = Metrics::new();
        let (client, network) = network::start(keypair, &spec.settings, metrics.clone())?;
        let listen_addrs = if spec.settings.listen.is_empty() {
            Vec::new()
        } else {
            client
                .listen_addrs(spec.settings.listen.len(), LISTEN_DEADLINE)
                .await?
        };

        let bootstrap = &spec.settings.bootstrap;
        let mut membership = None;
        if !bootstrap.is_empty() {
            let joined = client.join(bootstrap, JOIN_DEADLINE).await;
            if spec.settings.server_mode {
                // A long-running node keeps trying: its bootstrap peers may start later.
                if let Err(e) = joined {
                    tracing::warn!(error = %e, "cannot reach any bootstrap peer yet");
                }
                membership = Some(tokio::spawn(keep_joined(client.clone(), bootstrap.clone())));
            } else if let Err(e) = joined {
                network.stop().await;
                return Err(e.into());
            }
        }

        let store = match &spec.data_dir {
            Some(dir) => Store::open(dir)?,
            None => Store::in_memory()?,
        };
        if spec.gateway.is_some() {
            // Calls still open on record were cut when this gateway last stopped: no receipt
            // was issued for them, and now the record says so.
            match store.close_interrupted_calls(Role::Gateway).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    calls = n,
                    "{n} call(s) were cut when this gateway last stopped; recorded as interrupted, with no receipt"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot check the record for interrupted calls")
                }
            }
        }
        let (mut publisher, mut calls, mut conferences) = (None, None, None);
        // On the internet an offer carries the addresses confirmed reachable, as they
        // come; on a local network, the configured or listen addresses, fixed.
        let addresses = match spec.settings.scope {
            Scope::Internet => client.external_addrs(),
            Scope::Local => {
                let fixed = if spec.settings.external_addresses.is_empty() {
                    offer_addresses(&listen_addrs)
                } else {
                    spec.settings.external_addresses.clone()
                };
                watch::channel(fixed).1
            }
        };
        if let Some(plan) = spec.gateway.clone()
            && let BackendSpec::Conference(settings) = &plan.backend
        {
            let bridge = Arc::new(ConferenceBridge::new(
                plan.capacity,
                BridgeSettings {
                    media: spec.media,
                    jitter_frames: settings.jitter_frames,
                },
            )?);
            let capabilities = bridge.advertised().clone();
            let published = Publisher::spawn(
                client.clone(),
                secret.clone(),
                plan,
                capabilities,
                addresses.clone(),
                store.clone(),
            );
            let context = BridgeContext {
                key: secret.clone(),
                bridge,
                offer: published.subscribe(),
                store: store.clone(),
            };
            conferences = Some(ConferenceService::spawn(&client, context)?);
            publisher = Some(published);
        } else if let Some(plan) = spec.gateway {
            let backend = start_backend(&plan, spec.media).await?;
            let capabilities = backend.capabilities().clone();
            let published = Publisher::spawn(
                client.clone(),
                secret.clone(),
                plan,
                capabilities,
                addresses,
                store.clone(),
            );
            let context = GatewayContext {
                key: secret.clone(),
                backend,
                offer: published.subscribe(),
                store: store.clone(),
                timers: spec.timers,
                limits: spec.settings.limits.clone(),
                metrics,
            };
            calls = Some(GatewayService::spawn(&client, context)?);
            publisher = Some(published);
        }
        Ok(Node {
            client,
            network,
            publisher,
            calls,
            conferences,
            membership,
            key: secret,
            store,
            media: spec.media,
        })
    }

    /// The client of the node's network task.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// Waits until the node's network task ends without being asked to (a bug), and says
    /// why; a supervisor should then restart the node.
    pub async fn failed(&mut self) -> String {
        self.network.ended().await
    }

    /// What this node needs to place calls of its own.
    pub fn caller(&self) -> CallerContext {
        CallerContext {
            client: self.client.clone(),
            key: self.key.clone(),
            store: self.store.clone(),
            media: self.media,
        }
    }

    /// The node's metrics, for its `/metrics` endpoint.
    pub fn metrics(&self) -> &Metrics {
        self.client.metrics()
    }

    /// The node's database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The publisher, on a gateway node.
    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// Addresses others can dial this node at, each ending in `/p2p/PEER_ID`.
    pub async fn dialable_addrs(&self) -> Vec<Multiaddr> {
        let status = self
            .client
            .status()
            .await
            .map(|s| s.listen_addrs)
            .unwrap_or_default();
        let peer = self.peer_id();
        status
            .into_iter()
            .map(|a| a.with(Protocol::P2p(peer)))
            .collect()
    }

    /// Stops at once, as a crash does: no withdrawal (the offer stays in the DHT until it
    /// expires) and no receipts for calls in progress. For simulations and tests of churn.
    pub async fn kill(self) {
        if let Some(task) = self.membership {
            task.abort();
        }
        if let Some(calls) = self.calls {
            calls.abort();
        }
        if let Some(conferences) = self.conferences {
            conferences.abort();
        }
        if let Some(publisher) = self.publisher {
            publisher.abort();
        }
        self.network.stop().await;
    }

    /// Ends the calls in progress (with receipts), withdraws the offer (on a gateway) and
    /// stops the node.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        if let Some(task) = self.membership {
            task.abort();
        }
        if let Some(calls) = self.calls {
            calls.shut_down().await;
        }
        if let Some(conferences) = self.conferences {
            conferences.shut_down().await;
        }
        let withdrawn = match self.publisher {
            Some(publisher) => publisher.withdraw().await.map(|_| ()),
            None => Ok(()),
        };
        self.network.stop().await;
        withdrawn.map_err(NodeError::from)
    }
}

/// Starts the back-end a gateway plan names.
async fn start_backend(
    plan: &GatewayPlan,
    media: MediaSettings,
) -> Result<Arc<dyn Gateway>, NodeError> {
    match &plan.backend {
        BackendSpec::Echo(config) => Ok(Arc::new(EchoGateway::new(
            plan.kind,
            plan.capacity,
            config.clone(),
            media,
        )?)),
        BackendSpec::Sip(config) => Ok(Arc::new(
            SipGateway::start(plan.kind, plan.capacity, config, media).await?,
        )),
        // Started as a conference service by `Node::start`, never as a call back-end.
        BackendSpec::Conference(_) => Err(NodeError::Backend(CapabilityError::NoCapacity)),
    }
}

/// The listen addresses worth publishing: routable ones if there are any, else loopback
/// (a node on a single machine).
fn offer_addresses(listen_addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    let is_loopback = |a: &Multiaddr| {
        a.iter().any(|p| match p {
            Protocol::Ip4(ip) => ip.is_loopback(),
            Protocol::Ip6(ip) => ip.is_loopback(),
            _ => false,
        })
    };
    let routable: Vec<Multiaddr> = listen_addrs
        .iter()
        .filter(|a| !is_loopback(a))
        .cloned()
        .collect();
    if routable.is_empty() {
        listen_addrs.to_vec()
    } else {
        routable
    }
}

/// Joins again through `bootstrap` whenever the node has lost every peer.
async fn keep_joined(client: Client, bootstrap: Vec<Multiaddr>) {
    loop {
        tokio::time::sleep(REJOIN_INTERVAL).await;
        // A node whose connections all closed when idle has not left: it still knows its
        // peers, and Kademlia's periodic bootstrap refreshes them. It is out of the
        // network when it knows nobody, or only its (unreachable) bootstrap peers.
        let (connected, known) = client
            .status()
            .await
            .map(|s| (s.connected_peers, s.routing_table_size))
            .unwrap_or((0, 0));
        if known == 0 || (connected == 0 && known <= bootstrap.len()) {
            match client.join(&bootstrap, JOIN_DEADLINE).await {
                Ok(()) => tracing::info!("joined the network"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach any bootstrap peer; retrying in {}s", REJOIN_INTERVAL.as_secs())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_carry_routable_addresses_when_there_are_some() {
        let parse = |s: &str| s.parse::<Multiaddr>().unwrap();
        let loopback = parse("/ip4/127.0.0.1/tcp/4001");
        let lan = parse("/ip4/10.0.0.5/tcp/4001");
        assert_eq!(offer_addresses(&[loopback.clone(), lan.clone()]), vec![lan]);
        assert_eq!(
            offer_addresses(std::slice::from_ref(&loopback)),
            vec![loopback]
        );
    }
}
