//! The libp2p behaviours every Interlink node runs.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStoreConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, connection_limits, identify, kad, ping};

use super::dht_rate_limit;
use super::index::codec::{Codec as IndexCodec, PROTOCOL as INDEX_PROTOCOL};
use super::reachability::Scope;
use super::store::Store;
use crate::config::{DhtSection, LimitsSection};
use crate::metrics::Metrics;
use interlink_protocol::signed::MAX_SIGNED_OFFER_BYTES;

/// Our own Kademlia protocol, so the network stays apart from the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/interlink/kad/1.0.0");
/// What identify announces as the protocol family.
const IDENTIFY_PROTOCOL_VERSION: &str = "/interlink/1.0.0";

/// How long a peer has to answer one request of the offer index; a lookup moves on much
/// sooner (`discovery.request_timeout_ms`) but still takes a late answer until this. An
/// answer is at most 256 KiB, about 2 s at 1 Mbit/s plus a round trip or two to open the
/// stream; past this the peer is taken as unreachable for a while (`index/unreachable.rs`).
const INDEX_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Kademlia query (finding the closest peers to publish, joining) waits for one
/// peer on the internet before it goes on without it: a peer that died in other nodes'
/// routing tables, or one behind an address that drops the dial, then costs a query 2 s
/// instead of libp2p's 10. A new connection and a request take about four round trips,
/// under a second even at 250 ms; an answer that comes later is still used
/// (`vendor/libp2p-kad`'s `set_peer_timeout`). On a local network, where a dead peer's
/// dial is refused at once, libp2p's 10 s stay: there a slow answer is a busy host, and
/// leaving it out would only move an offer's holders.
const KAD_PEER_TIMEOUT: Duration = Duration::from_secs(2);
const KAD_PEER_TIMEOUT_LOCAL: Duration = Duration::from_secs(10);
/// Index requests in flight on one connection, both ways.
const INDEX_STREAMS_PER_CONNECTION: usize = 64;

/// Kademlia for routing and offer records, the offer index (`/interlink/index/1`),
/// identify to learn listen addresses, ping to measure round trips and keep connections
/// honest, streams of our own protocols (calls), connection limits, and AutoNAT to learn
/// whether others can reach this node. Kademlia sits
/// behind a per-peer limit on inbound requests.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub kad: dht_rate_limit::Behaviour,
    pub index: request_response::Behaviour<IndexCodec>,
    pub stream: libp2p_stream::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub limits: connection_limits::Behaviour,
    /// AutoNAT on nodes that serve over the internet (`reachability.rs`); off elsewhere.
    pub autonat: Toggle<autonat::v1::Behaviour>,
}

impl Behaviour {
    /// The behaviours of a node with `keypair`, configured by `[dht]` and `[limits]`.
    pub fn new(
        keypair: &Keypair,
        dht: &DhtSection,
        limits: &LimitsSection,
        scope: Scope,
        reachability: bool,
        metrics: Metrics,
    ) -> Behaviour {
        let peer_id = keypair.public().to_peer_id();
        let nonzero = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_replication_factor(nonzero(dht.replication_factor))
            .set_parallelism(nonzero(dht.parallelism))
            .disjoint_query_paths(dht.disjoint_paths)
            .set_query_timeout(Duration::from_secs(dht.query_timeout_secs))
            .set_peer_timeout(match scope {
                Scope::Internet => KAD_PEER_TIMEOUT,
                Scope::Local => KAD_PEER_TIMEOUT_LOCAL,
            })
            // Every inbound record and provider record is checked by the event loop
            // before it is stored (see `records.rs`).
            .set_record_filtering(kad::StoreInserts::FilterBoth)
            // A stored offer lives until the offer expires (or `dht.record_ttl_secs`), set
            // by the event loop. libp2p's own record TTL also halves a copy's life for
            // each node this node knows closer to the key than the k closest: a node far
            // from the key would drop a new copy as already expired, acknowledge it, and
            // keep the earlier copy, which lookups then return (see `copies.rs`).
            .set_record_ttl(None)
            .set_replication_interval(Some(Duration::from_secs(dht.record_replication_secs)))
            // The publisher republishes offers itself, each time with a higher seq: a
            // republished unchanged record would be refused as stale.
            .set_publication_interval(None)
            .set_provider_record_ttl(Some(Duration::from_secs(dht.provider_record_ttl_secs)))
            .set_provider_publication_interval(Some(Duration::from_secs(
                dht.provider_publication_secs,
            )))
            // Messages carry at most one offer plus its record envelope and peer lists.
            .set_max_packet_size(limits.max_dht_packet_bytes)
            .set_periodic_bootstrap_interval(Some(Duration::from_secs(
                dht.bootstrap_interval_secs,
            )));
        let store = Store::new(
            peer_id,
            MemoryStoreConfig {
                max_records: dht.max_records,
                max_value_bytes: MAX_SIGNED_OFFER_BYTES,
                max_providers_per_key: dht.max_providers_per_key,
                max_provided_keys: 1024,
            },
        );
        let kad = dht_rate_limit::Behaviour::new(
            kad::Behaviour::with_config(peer_id, store, kad_config),
            limits,
            metrics,
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), keypair.public())
                .with_agent_version(format!("interlink/{}", env!("CARGO_PKG_VERSION"))),
        );
        let ping = ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15)));
        // Two per peer by default, not one: two nodes dialling each other at once must
        // both succeed.
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                .with_max_established_incoming(Some(limits.max_incoming_connections))
                .with_max_pending_incoming(Some(limits.max_pending_incoming))
                .with_max_pending_outgoing(Some(limits.max_pending_outgoing)),
        );
        let index = request_response::Behaviour::with_codec(
            IndexCodec,
            [(INDEX_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(INDEX_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(INDEX_STREAMS_PER_CONNECTION),
        );
        Behaviour {
            kad,
            index,
            stream: libp2p_stream::Behaviour::new(),
            identify,
            ping,
            limits,
            autonat: Toggle::from(reachability.then(|| {
                autonat::v1::Behaviour::new(peer_id, super::reachability::autonat_config())
            })),
        }
    }
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}
