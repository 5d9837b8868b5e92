//! Where the node lives and how it finds others: `[network]`, `[dht]` and `[discovery]`.

use std::time::Duration;

use interlink_protocol::discovery::query::MAX_LIMIT;
use interlink_protocol::discovery::{CacheConfig, IndexConfig, WalkConfig};
use libp2p::Multiaddr;
use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::network::reachability::Scope;

/// `[network]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Addresses to listen on (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Addresses others should dial, if not the listen addresses (behind NAT, say).
    pub external_addresses: Vec<Multiaddr>,
    /// Peers to join the network through, each ending in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Close a connection after this long without use.
    pub idle_connection_timeout_secs: u64,
    /// Where the network lives: `local` (one machine or LAN: listen addresses are
    /// advertised as they are) or `internet` (only addresses confirmed reachable, and
    /// public). Unset: local when every listen and bootstrap address is loopback or
    /// private, the internet otherwise.
    pub scope: Option<Scope>,
}

impl NetworkSection {
    /// The scope set, or the one the addresses in use imply.
    pub fn scope(&self) -> Scope {
        self.scope
            .unwrap_or_else(|| Scope::of(self.listen.iter().chain(&self.bootstrap)))
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            external_addresses: Vec::new(),
            bootstrap: Vec::new(),
            idle_connection_timeout_secs: 60,
            scope: None,
        }
    }
}

/// `[dht]`: Kademlia settings. The defaults suit networks of up to thousands of nodes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtSection {
    /// How many of the closest nodes store each record (Kademlia's k).
    pub replication_factor: usize,
    /// Concurrent requests per lookup (Kademlia's α).
    pub parallelism: usize,
    /// Look up over disjoint paths (S/Kademlia), so a few bad nodes cannot hide a record.
    pub disjoint_paths: bool,
    /// Valid copies of an offer to collect before a lookup stops early.
    pub record_quorum: usize,
    /// Give up on a lookup after this long.
    pub query_timeout_secs: u64,
    /// Longest time a stored record is kept (offers also expire on their own).
    pub record_ttl_secs: u64,
    /// How often stored records are re-sent to the nodes closest to their key.
    pub record_replication_secs: u64,
    /// How long a provider record is kept.
    pub provider_record_ttl_secs: u64,
    /// How often this node re-announces itself as a provider.
    pub provider_publication_secs: u64,
    /// Most providers kept per key.
    pub max_providers_per_key: usize,
    /// Most records kept in all.
    pub max_records: usize,
    /// How often the node refreshes its routing table with a Kademlia bootstrap (a lookup
    /// of its own id and of a random id in each farther bucket); libp2p's default is 300.
    pub bootstrap_interval_secs: u64,
}

impl Default for DhtSection {
    fn default() -> Self {
        DhtSection {
            replication_factor: 20,
            parallelism: 3,
            disjoint_paths: true,
            record_quorum: 2,
            query_timeout_secs: 10,
            record_ttl_secs: 24 * 3600,
            record_replication_secs: 3600,
            provider_record_ttl_secs: 2 * 3600,
            provider_publication_secs: 1800,
            max_providers_per_key: 64,
            max_records: 4096,
            bootstrap_interval_secs: 300,
        }
    }
}

impl DhtSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("dht.replication_factor", self.replication_factor as u64),
            ("dht.parallelism", self.parallelism as u64),
            ("dht.record_quorum", self.record_quorum as u64),
            ("dht.query_timeout_secs", self.query_timeout_secs),
            ("dht.record_ttl_secs", self.record_ttl_secs),
            ("dht.record_replication_secs", self.record_replication_secs),
            (
                "dht.provider_record_ttl_secs",
                self.provider_record_ttl_secs,
            ),
            (
                "dht.provider_publication_secs",
                self.provider_publication_secs,
            ),
            (
                "dht.max_providers_per_key",
                self.max_providers_per_key as u64,
            ),
            ("dht.max_records", self.max_records as u64),
            ("dht.bootstrap_interval_secs", self.bootstrap_interval_secs),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*field, "must be greater than zero"));
        }
        if self.provider_publication_secs >= self.provider_record_ttl_secs {
            return Err(invalid(
                "dht.provider_publication_secs",
                "must be shorter than dht.provider_record_ttl_secs, or provider records lapse",
            ));
        }
        Ok(())
    }
}

/// `[discovery]`: the offer index, as a caller reads it and as a node holds it for others.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Holders a lookup collects answers from before it stops.
    pub holders: usize,
    /// The best offers a lookup asks for (and as many long-standing ones).
    pub results: u16,
    /// A peer that has not answered a lookup's request within this no longer holds it up.
    pub request_timeout_ms: u64,
    /// The most requests one lookup sends.
    pub max_requests: usize,
    /// Lookups whose answers are cached.
    pub cache_answers: usize,
    /// A cached answer older than this is refreshed in the background when read (0: every
    /// time it is read).
    pub cache_refresh_secs: u64,
    /// A cached answer older than this is not used.
    pub cache_max_age_secs: u64,
    /// Providers held under one key for others.
    pub max_offers_per_key: usize,
    /// Below this many providers under a key, new ones are admitted at once...
    pub open_admission: usize,
    /// ...above, this many a minute.
    pub newcomers_per_minute: u32,
    /// New offers of other providers that one peer may store here.
    pub offers_per_sender: usize,
    /// Bytes of offers held for others in all.
    pub max_index_bytes: usize,
    /// Every this many seconds, compare each key this node holds for others with another
    /// of its holders, and hand each other what the other lacks (0: never).
    pub sync_secs: u64,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        let index = IndexConfig::default();
        let walk = WalkConfig::default();
        let cache = CacheConfig::default();
        DiscoverySection {
            holders: walk.holders,
            results: 10,
            request_timeout_ms: u64::try_from(walk.request_timeout.as_millis()).unwrap_or(1000),
            max_requests: walk.max_requests,
            cache_answers: cache.max_answers,
            cache_refresh_secs: cache.refresh_after.as_secs(),
            cache_max_age_secs: cache.max_age.as_secs(),
            max_offers_per_key: index.max_offers_per_key,
            open_admission: index.open_admission,
            newcomers_per_minute: index.newcomers_per_minute,
            offers_per_sender: index.per_sender,
            max_index_bytes: index.max_bytes,
            sync_secs: 10,
        }
    }
}

impl DiscoverySection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("discovery.holders", self.holders as u64),
            ("discovery.results", u64::from(self.results)),
            ("discovery.request_timeout_ms", self.request_timeout_ms),
            ("discovery.max_requests", self.max_requests as u64),
            ("discovery.cache_answers", self.cache_answers as u64),
            ("discovery.cache_max_age_secs", self.cache_max_age_secs),
            (
                "discovery.max_offers_per_key",
                self.max_offers_per_key as u64,
            ),
            ("discovery.max_index_bytes", self.max_index_bytes as u64),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*field, "must be greater than zero"));
        }
        if self.results > MAX_LIMIT {
            return Err(invalid(
                "discovery.results",
                format!("at most {MAX_LIMIT} offers a lookup"),
            ));
        }
        if self.open_admission > self.max_offers_per_key {
            return Err(invalid(
                "discovery.open_admission",
                "must not exceed discovery.max_offers_per_key",
            ));
        }
        Ok(())
    }

    /// How this node's lookups walk, with Kademlia's parallelism and k from `[dht]`.
    pub fn walk(&self, dht: &DhtSection) -> WalkConfig {
        WalkConfig {
            parallelism: dht.parallelism.max(1),
            holders: self.holders.max(1),
            closest: dht.replication_factor.max(1),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_requests: self.max_requests.max(1),
            deadline: Duration::from_secs(dht.query_timeout_secs.max(1)),
        }
    }

    /// The bounds of the index this node holds for others.
    pub fn index(&self) -> IndexConfig {
        IndexConfig {
            max_offers_per_key: self.max_offers_per_key,
            open_admission: self.open_admission,
            newcomers_per_minute: self.newcomers_per_minute,
            per_sender: self.offers_per_sender,
            max_bytes: self.max_index_bytes,
            ..IndexConfig::default()
        }
    }

    /// The bounds of this node's cache of answers.
    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            max_answers: self.cache_answers,
            refresh_after: Duration::from_secs(self.cache_refresh_secs),
            max_age: Duration::from_secs(self.cache_max_age_secs),
            ..CacheConfig::default()
        }
    }
}
