//! The node's configuration: one TOML file, documented defaults, checked once at start.
//!
//! [`Config::load`] reads the file, fills in defaults for what it leaves out and checks
//! every field, so that a mistake stops the node at start with the name of the field, not
//! later in the middle of a call. [`TEMPLATE`] is the commented file `interlink init`
//! writes; a test checks that it loads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use interlink_gateway_plugin::conference::ConferenceBridge;
use interlink_gateway_plugin::echo::{EchoConfig, EchoGateway};
use interlink_gateway_plugin::sip::{SipConfig, SipGateway};
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_gateway_plugin::{Capabilities, CapabilityError};
use interlink_protocol::call::Timers;
use interlink_protocol::conference::{ConferenceTariff, ConferenceTerms, Region};
use interlink_protocol::discovery::query::MAX_LIMIT;
use interlink_protocol::discovery::{CacheConfig, IndexConfig, WalkConfig};
use interlink_protocol::offer::{ClaimedQuality, Mos, Permille, Route, Tariff};
use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::signed::MAX_OFFER_LIFETIME;
use interlink_protocol::{Codec, Currency, Money, Prefix, ServiceKind};
use libp2p::Multiaddr;
use serde::Deserialize;

pub use crate::limits::LimitsSection;
pub use crate::metrics::MetricsSection;
pub use crate::network::reachability::Scope;
use crate::network::reachability::is_public;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub network: NetworkSection,
    pub dht: DhtSection,
    pub discovery: DiscoverySection,
    pub caller: CallerSection,
    pub media: MediaSection,
    pub calls: CallsSection,
    pub api: ApiSection,
    pub limits: LimitsSection,
    pub metrics: MetricsSection,
    /// Present on a gateway node: what it sells and at which prices.
    pub gateway: Option<GatewaySection>,
}

/// `[node]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Where the identity key and local data live; relative to the config file.
    pub data_dir: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            data_dir: PathBuf::from("."),
        }
    }
}

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
    fn validate(&self) -> Result<(), ConfigError> {
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

/// `[caller]`: how this node picks gateways for its own calls.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerSection {
    /// `cheapest`, `best-quality` or `balanced`.
    pub policy: Option<String>,
    /// Only consider offers in this ISO 4217 currency.
    pub currency: Option<String>,
    /// Never pay more per minute than this, e.g. `"0.10 GBP"`.
    pub max_price_per_minute: Option<String>,
    /// Only consider offers that list this codec.
    pub required_codec: Option<String>,
}

/// `[gateway]`: present on a node that sells a gateway service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// The name callers see.
    pub name: String,
    /// Where the gateway runs, e.g. `eu-west`.
    #[serde(default)]
    pub region: String,
    /// `webrtc-pstn`, `webrtc-sip`, …
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Concurrent calls.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// The back-end that carries the calls: `echo` (a test callee that plays the caller's
    /// audio back) or `sip` (a bridge to a SIP trunk). It decides the codecs the offer lists.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Settings of the echo back-end.
    #[serde(default)]
    pub echo: EchoConfig,
    /// Settings of the SIP back-end: the trunk (required with `backend = "sip"`).
    #[serde(default)]
    pub sip: Option<SipConfig>,
    /// How long each published offer is valid; it is republished at half this.
    #[serde(default = "default_offer_ttl")]
    pub offer_ttl_secs: u64,
    #[serde(default)]
    pub quality: QualitySection,
    /// The price list (none on a conference bridge).
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// A conference bridge's rooms and prices (required with `backend = "conference"`).
    #[serde(default)]
    pub conference: Option<ConferenceSection>,
}

/// `[gateway.conference]`: the rooms and prices of a conference bridge.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConferenceSection {
    /// Rooms mixed at once.
    #[serde(default = "default_rooms")]
    pub rooms: u32,
    /// The largest room.
    #[serde(default = "default_room_size")]
    pub participants_per_room: u32,
    /// ISO 4217 code of the prices below.
    pub currency: String,
    /// Charged once per room, e.g. `"0.50"`.
    #[serde(default = "zero")]
    pub per_room: String,
    /// Charged per participant-minute, e.g. `"0.02"`.
    pub per_participant_minute: String,
    /// Each participant's time is billed in whole multiples of this many seconds.
    #[serde(default = "default_increment")]
    pub billing_increment_secs: u32,
    /// Jitter buffer delay in 20 ms frames.
    #[serde(default = "default_jitter_frames")]
    pub jitter_frames: u16,
}

fn default_rooms() -> u32 {
    10
}
fn default_room_size() -> u32 {
    10
}
fn default_jitter_frames() -> u16 {
    interlink_gateway_plugin::conference::bridge::DEFAULT_JITTER_FRAMES
}

impl ConferenceSection {
    fn terms(&self) -> Result<ConferenceTerms, ConfigError> {
        let field = |name: &str| format!("gateway.conference.{name}");
        let currency: Currency = self
            .currency
            .parse()
            .map_err(|e: interlink_protocol::money::MoneyError| invalid(field("currency"), e))?;
        let amount = |name: &str, text: &str| -> Result<u64, ConfigError> {
            let money = Money::parse(text, Some(currency)).map_err(|e| invalid(field(name), e))?;
            if money.currency != currency {
                return Err(invalid(
                    field(name),
                    format!(
                        "is in {}, the bridge is priced in {currency}",
                        money.currency
                    ),
                ));
            }
            Ok(money.minor_units)
        };
        if !(1..=50).contains(&self.jitter_frames) {
            return Err(invalid(field("jitter_frames"), "must be between 1 and 50"));
        }
        let terms = ConferenceTerms {
            rooms: self.rooms,
            participants_per_room: self.participants_per_room,
            tariff: ConferenceTariff {
                currency,
                per_room: amount("per_room", &self.per_room)?,
                per_participant_minute: amount(
                    "per_participant_minute",
                    &self.per_participant_minute,
                )?,
                billing_increment_secs: self.billing_increment_secs,
            },
        };
        terms
            .check()
            .map_err(|e| invalid(format!("gateway.{}", e.field), e.reason))?;
        Ok(terms)
    }
}

fn default_kind() -> String {
    "webrtc-pstn".into()
}
fn default_capacity() -> u32 {
    100
}
fn default_backend() -> String {
    "echo".into()
}
fn default_offer_ttl() -> u64 {
    3600
}

/// `[gateway.quality]`: the quality the operator claims.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualitySection {
    /// Answered over attempted calls, 0 to 1.
    pub answer_seizure_ratio: f64,
    /// Milliseconds from dialling to ringing.
    pub post_dial_delay_ms: u32,
    /// Mean opinion score, 1 to 5.
    pub mos: f64,
}

impl Default for QualitySection {
    fn default() -> Self {
        QualitySection {
            answer_seizure_ratio: 0.5,
            post_dial_delay_ms: 3000,
            mos: 4.0,
        }
    }
}

/// `[[gateway.routes]]`: one prefix and its price.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// E.164 prefix, e.g. `"+44"` or `"+447"`.
    pub prefix: String,
    /// ISO 4217 code of the prices below.
    pub currency: String,
    /// Price per minute in the currency, e.g. `"0.02"`.
    pub per_minute: String,
    /// Charge per answered call.
    #[serde(default = "zero")]
    pub setup_fee: String,
    /// Billing increment in seconds.
    #[serde(default = "default_increment")]
    pub billing_increment_secs: u32,
}

fn zero() -> String {
    "0".into()
}
fn default_increment() -> u32 {
    60
}

/// `[media]`: where this node's WebRTC media runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The address ICE binds to. `0.0.0.0` takes every interface but loopback; give the
    /// public address on an operator host, `127.0.0.1` to keep calls on one machine.
    pub ip: IpAddr,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

impl MediaSection {
    /// The media settings of calls.
    pub fn settings(&self) -> MediaSettings {
        MediaSettings { bind_ip: self.ip }
    }
}

/// `[calls]`: the deadline of each phase of a call, and of setting one up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSection {
    /// Invite to Trying.
    pub trying_secs: u64,
    /// Trying to the answer: how long a callee may ring.
    pub answer_secs: u64,
    /// Answer to the first media packet.
    pub media_secs: u64,
    /// End of the call to the receipt.
    pub receipt_secs: u64,
    /// While the callee rings, a gateway sends a keep-alive this often (milliseconds)...
    pub keepalive_ms: u64,
    /// ...and a caller gives up a gateway silent this long (milliseconds) and tries the
    /// next.
    pub silence_ms: u64,
    /// How long finding a gateway that answers may take, failovers included.
    pub setup_deadline_secs: u64,
}

impl Default for CallsSection {
    fn default() -> Self {
        let timers = Timers::default();
        CallsSection {
            trying_secs: timers.trying.as_secs(),
            answer_secs: timers.answer.as_secs(),
            media_secs: timers.media.as_secs(),
            receipt_secs: timers.receipt.as_secs(),
            keepalive_ms: millis(timers.keepalive),
            silence_ms: millis(timers.silence),
            setup_deadline_secs: 90,
        }
    }
}

impl CallsSection {
    /// The deadlines of a call's phases.
    pub fn timers(&self) -> Timers {
        Timers {
            trying: Duration::from_secs(self.trying_secs),
            answer: Duration::from_secs(self.answer_secs),
            media: Duration::from_secs(self.media_secs),
            receipt: Duration::from_secs(self.receipt_secs),
            keepalive: Duration::from_millis(self.keepalive_ms),
            silence: Duration::from_millis(self.silence_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("calls.trying_secs", self.trying_secs),
            ("calls.answer_secs", self.answer_secs),
            ("calls.media_secs", self.media_secs),
            ("calls.receipt_secs", self.receipt_secs),
            ("calls.keepalive_ms", self.keepalive_ms),
            ("calls.silence_ms", self.silence_ms),
            ("calls.setup_deadline_secs", self.setup_deadline_secs),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*field, "must be greater than zero"));
        }
        if self.silence_ms <= self.keepalive_ms {
            return Err(invalid(
                "calls.silence_ms",
                "must be longer than calls.keepalive_ms, or every ringing call is given up",
            ));
        }
        Ok(())
    }
}

/// The back-end a gateway runs.
/// `[api]`: the node's own HTTP API and web page, for its user's calls.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve them at all.
    pub enabled: bool,
    /// Where: a loopback address, as they have no authentication of their own.
    pub listen: SocketAddr,
    /// Calls placed through the API at once.
    pub max_calls: usize,
    /// Conference rooms joined through the API at once.
    pub max_memberships: usize,
    /// Hang up a call, or leave a room, whose page has closed every event stream for this
    /// long (0: never).
    pub orphan_call_secs: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7080),
            max_calls: 8,
            max_memberships: 4,
            orphan_call_secs: 30,
        }
    }
}

impl ApiSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() {
            return Err(invalid(
                "api.listen",
                format!(
                    "{} is not a loopback address: the API places paid calls and has no \
                     authentication, so it listens on 127.0.0.1 or [::1] only",
                    self.listen
                ),
            ));
        }
        if self.max_calls == 0 {
            return Err(invalid("api.max_calls", "must be greater than zero"));
        }
        if self.max_memberships == 0 {
            return Err(invalid("api.max_memberships", "must be greater than zero"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendSpec {
    /// Answers and plays the caller's audio back.
    Echo(EchoConfig),
    /// Bridges each call to a SIP trunk.
    Sip(Box<SipConfig>),
    /// A conference bridge (MCU): rooms instead of calls.
    Conference(ConferenceBackend),
}

/// The conference back-end's settings (`[gateway.conference]`, beside the rooms and prices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConferenceBackend {
    /// Jitter buffer delay in 20 ms frames.
    pub jitter_frames: u16,
}

impl Default for ConferenceBackend {
    fn default() -> Self {
        ConferenceBackend {
            jitter_frames: interlink_gateway_plugin::conference::bridge::DEFAULT_JITTER_FRAMES,
        }
    }
}

/// What a gateway node sells and runs, checked and in protocol types.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayPlan {
    pub name: String,
    pub region: String,
    pub kind: ServiceKind,
    /// Concurrent calls.
    pub capacity: u32,
    pub quality: ClaimedQuality,
    pub routes: Vec<Route>,
    pub offer_ttl: Duration,
    pub backend: BackendSpec,
    /// The rooms and prices of a conference bridge (kind `conference`).
    pub conference: Option<ConferenceTerms>,
}

impl GatewayPlan {
    /// A WebRTC-to-PSTN echo gateway named `name` with these routes, 100 calls, claimed
    /// quality MOS 4.0, answer ratio 0.5, post-dial delay 3 s, offers valid for an hour.
    pub fn new(name: &str, routes: Vec<Route>) -> GatewayPlan {
        GatewayPlan {
            name: name.to_owned(),
            region: String::new(),
            kind: ServiceKind::WEBRTC_TO_PSTN,
            capacity: 100,
            quality: ClaimedQuality {
                answer_seizure_ratio: Permille(500),
                post_dial_delay_ms: 3000,
                mos: Mos(400),
            },
            routes,
            offer_ttl: Duration::from_secs(3600),
            backend: BackendSpec::Echo(EchoConfig::default()),
            conference: None,
        }
    }

    /// What the back-end can do: the codecs and capacity the offer advertises.
    pub fn capabilities(&self) -> Result<Capabilities, CapabilityError> {
        match self.backend {
            BackendSpec::Echo(_) => EchoGateway::capabilities(self.kind, self.capacity),
            BackendSpec::Sip(_) => SipGateway::capabilities(self.kind, self.capacity),
            BackendSpec::Conference(_) => ConferenceBridge::capabilities(self.capacity),
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`; `data_dir` becomes relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if config.node.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.node.data_dir = base.join(&config.node.data_dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without checking it.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, addr) in self.network.bootstrap.iter().enumerate() {
            if peer_id_of(addr).is_none() {
                return Err(invalid(
                    format!("network.bootstrap[{i}]"),
                    format!("{addr} does not end in /p2p/PEER_ID"),
                ));
            }
        }
        if self.network.scope() == Scope::Internet {
            for (i, addr) in self.network.external_addresses.iter().enumerate() {
                if !is_public(addr) {
                    return Err(invalid(
                        format!("network.external_addresses[{i}]"),
                        format!(
                            "{addr} is not a public address: nobody on the internet could \
                             dial it (set network.scope = \"local\" for a network on one \
                             machine or LAN)"
                        ),
                    ));
                }
            }
        }
        self.dht.validate()?;
        self.discovery.validate()?;
        self.calls.validate()?;
        self.api.validate()?;
        self.limits.validate()?;
        self.caller_policy()?;
        if self.gateway.is_some() {
            self.gateway_plan()?;
        }
        Ok(())
    }

    /// The caller's policy from `[caller]`.
    pub fn caller_policy(&self) -> Result<Policy, ConfigError> {
        let caller = &self.caller;
        let kind = match &caller.policy {
            Some(name) => name
                .parse::<PolicyKind>()
                .map_err(|e| invalid("caller.policy", e))?,
            None => PolicyKind::default(),
        };
        let currency = caller
            .currency
            .as_deref()
            .map(str::parse::<Currency>)
            .transpose()
            .map_err(|e| invalid("caller.currency", e))?;
        let max_price_per_minute = caller
            .max_price_per_minute
            .as_deref()
            .map(|m| Money::parse(m, currency))
            .transpose()
            .map_err(|e| invalid("caller.max_price_per_minute", e))?;
        let required_codec = caller
            .required_codec
            .as_deref()
            .map(str::parse::<Codec>)
            .transpose()
            .map_err(|e| invalid("caller.required_codec", e))?;
        Ok(Policy {
            kind,
            max_price_per_minute,
            currency,
            required_codec,
        })
    }

    /// What this node publishes as a gateway, if it is one.
    pub fn gateway_plan(&self) -> Result<Option<GatewayPlan>, ConfigError> {
        let Some(gateway) = &self.gateway else {
            return Ok(None);
        };
        gateway.plan().map(Some)
    }
}

impl DhtSection {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl GatewaySection {
    fn plan(&self) -> Result<GatewayPlan, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(invalid("gateway.name", "is empty"));
        }
        let kind: ServiceKind = self.kind.parse().map_err(|e| invalid("gateway.kind", e))?;
        let backend = match self.backend.as_str() {
            "echo" => BackendSpec::Echo(self.echo.clone()),
            "sip" => {
                let Some(sip) = &self.sip else {
                    return Err(invalid(
                        "gateway.sip",
                        "backend = \"sip\" needs a [gateway.sip] section naming the trunk's host",
                    ));
                };
                sip.check()
                    .map_err(|e| invalid(format!("gateway.sip.{}", e.field), e.reason))?;
                BackendSpec::Sip(Box::new(sip.clone()))
            }
            "conference" => {
                let Some(conference) = &self.conference else {
                    return Err(invalid(
                        "gateway.conference",
                        "backend = \"conference\" needs a [gateway.conference] section with the rooms and prices",
                    ));
                };
                BackendSpec::Conference(ConferenceBackend {
                    jitter_frames: conference.jitter_frames,
                })
            }
            other => {
                return Err(invalid(
                    "gateway.backend",
                    format!("unknown back-end `{other}` (expected echo, sip or conference)"),
                ));
            }
        };
        let conference = match (&backend, kind) {
            (BackendSpec::Conference(_), ServiceKind::Conference) => self
                .conference
                .as_ref()
                .map(ConferenceSection::terms)
                .transpose()?,
            (BackendSpec::Conference(_), _) => {
                return Err(invalid(
                    "gateway.kind",
                    "backend = \"conference\" needs kind = \"conference\"",
                ));
            }
            (_, ServiceKind::Conference) => {
                return Err(invalid(
                    "gateway.backend",
                    "kind = \"conference\" needs backend = \"conference\"",
                ));
            }
            _ => None,
        };
        let offer_ttl = Duration::from_secs(self.offer_ttl_secs);
        if !(Duration::from_secs(60)..=MAX_OFFER_LIFETIME).contains(&offer_ttl) {
            return Err(invalid(
                "gateway.offer_ttl_secs",
                "must be between 60 and 86400",
            ));
        }
        let q = &self.quality;
        if !(0.0..=1.0).contains(&q.answer_seizure_ratio) {
            return Err(invalid(
                "gateway.quality.answer_seizure_ratio",
                "must be between 0 and 1",
            ));
        }
        if !(1.0..=5.0).contains(&q.mos) {
            return Err(invalid("gateway.quality.mos", "must be between 1 and 5"));
        }
        // Both are range-checked above, so the rounded values fit a u16.
        #[allow(clippy::cast_possible_truncation)]
        let quality = ClaimedQuality {
            answer_seizure_ratio: Permille((q.answer_seizure_ratio * 1000.0).round() as u16),
            post_dial_delay_ms: q.post_dial_delay_ms,
            mos: Mos((q.mos * 100.0).round() as u16),
        };
        if self.routes.is_empty() && conference.is_none() {
            return Err(invalid(
                "gateway.routes",
                "a gateway needs at least one route",
            ));
        }
        if !self.routes.is_empty() && conference.is_some() {
            return Err(invalid(
                "gateway.routes",
                "a conference bridge has no routes: its prices are in [gateway.conference]",
            ));
        }
        if conference.is_some() {
            Region::new(&self.region).map_err(|e| invalid("gateway.region", e))?;
        }
        let routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.route().map_err(|(field, reason)| {
                    invalid(format!("gateway.routes[{i}].{field}"), reason)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let plan = GatewayPlan {
            name: self.name.clone(),
            region: self.region.clone(),
            kind,
            capacity: self.capacity,
            quality,
            routes,
            offer_ttl,
            backend,
            conference,
        };
        plan.capabilities().map_err(|e| invalid("gateway", e))?;
        Ok(plan)
    }
}

impl RouteSection {
    fn route(&self) -> Result<Route, (&'static str, String)> {
        let prefix = Prefix::new(&self.prefix).map_err(|e| ("prefix", e.to_string()))?;
        let currency: Currency = self
            .currency
            .parse()
            .map_err(|e: interlink_protocol::money::MoneyError| ("currency", e.to_string()))?;
        let amount = |field: &'static str, text: &str| {
            Money::parse(text, Some(currency))
                .map_err(|e| (field, e.to_string()))
                .and_then(|m| {
                    if m.currency == currency {
                        Ok(m.minor_units)
                    } else {
                        Err((
                            field,
                            format!("is in {}, the route is priced in {currency}", m.currency),
                        ))
                    }
                })
        };
        Ok(Route {
            prefix,
            tariff: Tariff {
                currency,
                setup_fee: amount("setup_fee", &self.setup_fee)?,
                per_minute: amount("per_minute", &self.per_minute)?,
                billing_increment_secs: self.billing_increment_secs,
            },
        })
    }
}

/// The peer id at the end of a `/p2p/` multiaddr.
pub fn peer_id_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The commented configuration `interlink init` writes.
pub const TEMPLATE: &str = r#"# Interlink node configuration.
# Every setting has a working default; uncomment to change one.

[node]
# Where the identity key (identity.key) and local data live, relative to this file.
data_dir = "."

[network]
# Addresses to listen on: TCP and QUIC on port 4001 of every interface.
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Addresses other nodes should dial, when they differ from the listen addresses
# (a public address behind NAT, say). Gateways publish these in their offers.
# external_addresses = ["/ip4/203.0.113.7/tcp/4001"]
# Nodes to join the network through; each ends in /p2p/PEER_ID.
# bootstrap = ["/ip4/203.0.113.1/tcp/4001/p2p/12D3KooW..."]
# idle_connection_timeout_secs = 60
# Where the network lives. "internet": the node advertises (and a gateway publishes) only
# external_addresses above or addresses a peer confirmed by dialling back (AutoNAT), and
# serves the DHT only once it has one; a gateway nobody can reach says so and publishes
# nothing. "local" (one machine or LAN): listen addresses are advertised as they are.
# Default: local when every listen and bootstrap address is loopback or private.
# scope = "internet"

[dht]
# replication_factor = 20        # nodes that store each record (Kademlia's k)
# parallelism = 3                # concurrent requests per lookup (alpha)
# disjoint_paths = true          # S/Kademlia disjoint lookups
# record_quorum = 2              # valid copies of an offer before a lookup stops
# query_timeout_secs = 10
# record_ttl_secs = 86400        # offers also expire on their own, sooner
# record_replication_secs = 3600
# provider_record_ttl_secs = 7200
# provider_publication_secs = 1800
# max_providers_per_key = 64
# max_records = 4096
# bootstrap_interval_secs = 300  # routing table refresh

[discovery]
# Gateways' offers are kept, signed, by the nodes closest to each country's key; a
# lookup walks there once and collects the best offers from several of them.
# holders = 3                    # holders a lookup hears before it stops
# results = 10                   # best offers asked for, and as many of those held longest
# request_timeout_ms = 1000      # a peer slower than this no longer holds a lookup up
# max_requests = 48              # per lookup
# cache_answers = 256            # lookups remembered; a repeat is answered at once...
# cache_refresh_secs = 0         # ...and refreshed in the background when older than this
# cache_max_age_secs = 600       # an answer older than this is not used
# What this node holds for others, under the keys it is close to:
# max_offers_per_key = 1024      # providers under one key; newcomers wait beyond it
# open_admission = 512           # below this many, new providers enter at once...
# newcomers_per_minute = 60      # ...above, this many a minute
# offers_per_sender = 1024       # other providers' offers one peer may store here
# max_index_bytes = 67108864     # in all
# sync_secs = 10                 # compare each held key with another holder's this often

[caller]
# How this node ranks gateways: cheapest, best-quality or balanced.
# policy = "balanced"
# currency = "GBP"
# max_price_per_minute = "0.10 GBP"
# required_codec = "PCMU"

[media]
# The address WebRTC media (ICE) binds to. 0.0.0.0 takes every interface except
# loopback; set the public address on an operator host, 127.0.0.1 for one machine.
# ip = "0.0.0.0"

[calls]
# Deadlines of a call's phases, in seconds.
# trying_secs = 5                # invite to Trying
# answer_secs = 60               # Trying to the answer (ringing)
# media_secs = 10                # answer to the first media packet
# receipt_secs = 5               # end of the call to the receipt
# keepalive_ms = 250             # while ringing, a gateway's keep-alive this often...
# silence_ms = 750               # ...and a caller gives up a gateway silent this long
# setup_deadline_secs = 90       # finding a gateway that answers, failovers included

[api]
# The web page and JSON API for this node's own calls: open http://127.0.0.1:7080/
# in a browser. Loopback only, as they have no authentication.
# enabled = true
# listen = "127.0.0.1:7080"
# max_calls = 8                  # calls through the API at once
# max_memberships = 4            # conference rooms joined through the API at once
# orphan_call_secs = 30          # hang up a call, or leave a room, whose page has gone (0: never)

[metrics]
# A Prometheus endpoint: GET http://127.0.0.1:9464/metrics (OpenMetrics text).
# enabled = false
# listen = "127.0.0.1:9464"

[limits]
# What one peer may ask of this node; each refusal is counted in the metrics
# (interlink_limit_refusals_total) and logged once per peer and interval.
# max_connections_per_peer = 6
# max_incoming_connections = 4096
# max_pending_incoming = 256     # inbound handshakes in progress
# max_pending_outgoing = 512
# handshake_timeout_secs = 10    # to set up a connection (TCP, noise, yamux)
# max_streams_per_connection = 4096
# dht_requests_per_sec = 200     # Kademlia requests per peer: rate...
# dht_request_burst = 1000       # ...and burst; a peer far over it is cut off
# index_requests_per_sec = 100   # offer index lookups and stores per peer: rate...
# index_request_burst = 400      # ...and burst
# block_secs = 60                # for this long
# records_per_peer = 256         # offers stored on behalf of one peer
# provider_records_per_peer = 256
# call_invites_per_sec = 200     # call invitations per peer: rate...
# call_invite_burst = 400        # ...and burst
# max_pending_invites = 256      # call streams waiting for their invite, all peers...
# max_pending_invites_per_peer = 32   # ...and one peer
# max_dht_packet_bytes = 32768
# max_call_frame_bytes = 65536
# refusal_log_interval_secs = 60

# Uncomment to sell a gateway service from this node.
# [gateway]
# name = "Inter"
# region = "eu-west"
# kind = "webrtc-pstn"           # webrtc-pstn, webrtc-sip, ...
# capacity = 100                 # concurrent calls
# backend = "echo"              # echo: a callee that plays the caller's audio back;
#                                # sip: bridge calls to the SIP trunk of [gateway.sip]
# offer_ttl_secs = 3600          # offers are republished at half this
#
# [gateway.echo]                 # the echo back-end
# ring_ms = 500
# answering = "answer"           # answer, busy or never-answer
# hang_up_after_secs = 0         # 0: the caller hangs up
# early_answer = true            # media connects while it rings; false: at the answer
#
# [gateway.sip]                  # the SIP trunk, for backend = "sip"
# host = "sip.trunk.example"     # required: the trunk's host name or address
# port = 5060
# transport = "udp"              # udp or tcp
# local_address = "0.0.0.0:5060" # where this gateway's SIP endpoint binds
# media_ip = "203.0.113.7"       # RTP address for the trunk; default: the one routing to it
# from_user = "interlink"        # From: user@from_domain (the caller's key goes in its
# from_domain = "sip.trunk.example" # display name and in P-Asserted-Identity)
# ring_timeout_secs = 120        # CANCEL a callee that rings longer
# media_timeout_secs = 30        # hang up after this long without RTP from the trunk (0: never)
#
# [gateway.sip.credentials]      # if the trunk challenges (digest)
# username = "gateway"
# password = "secret"
#
# [[gateway.sip.numbering]]      # number rewriting, first match wins; unmatched: E.164 with +
# prefix = "+44"                 # numbers starting with this
# strip = "+44"                  # remove this from the front
# add = "0"                      # and put this there instead: +447700900123 -> 07700900123
#
# [[gateway.sip.numbering]]
# prefix = "+"
# strip = "+"
# add = "00"                     # other countries: +33... -> 0033...
#
# [gateway.quality]              # what you claim; callers check it against their calls
# answer_seizure_ratio = 0.55
# post_dial_delay_ms = 2500
# mos = 4.2
#
# [[gateway.routes]]
# prefix = "+44"
# currency = "GBP"
# per_minute = "0.02"
# setup_fee = "0.00"
# billing_increment_secs = 60
#
# [[gateway.routes]]
# prefix = "+447"
# currency = "GBP"
# per_minute = "0.03"
"#;

/// A duration in whole milliseconds, as the config file writes them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_loads_with_defaults() {
        let config = Config::parse(TEMPLATE).unwrap();
        config.validate().unwrap();
        assert!(config.gateway.is_none());
        assert_eq!(config.dht, DhtSection::default());
        assert_eq!(config.network.listen.len(), 2);
        assert_eq!(config.api, ApiSection::default());
        assert_eq!(config.api.listen.to_string(), "127.0.0.1:7080");
        assert_eq!(config.limits, LimitsSection::default());
        assert_eq!(config.metrics, MetricsSection::default());
    }

    #[test]
    fn the_commented_gateway_example_is_valid() {
        let uncommented: String = TEMPLATE
            .lines()
            .skip_while(|l| !l.starts_with("# [gateway]"))
            .map(|l| {
                l.strip_prefix("# ")
                    .or_else(|| l.strip_prefix('#'))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let plan = config
            .gateway_plan()
            .unwrap()
            .unwrap_or_else(|| panic!("no plan"));
        assert_eq!(plan.routes.len(), 2);
        assert_eq!(plan.routes[1].tariff.per_minute, 3);
        assert_eq!(plan.quality.mos, Mos(420));
    }

    fn error_field(text: &str) -> String {
        let config = Config::parse(text).unwrap();
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let gateway =
            |route: &str| format!("[gateway]\nname = \"G\"\n[[gateway.routes]]\n{route}\n");
        assert_eq!(
            error_field(&gateway(
                "prefix = \"+4x\"\ncurrency = \"GBP\"\nper_minute = \"0.02\""
            )),
            "gateway.routes[0].prefix"
        );
        assert_eq!(
            error_field(&gateway(
                "prefix = \"+44\"\ncurrency = \"QQQ\"\nper_minute = \"0.02\""
            )),
            "gateway.routes[0].currency"
        );
        assert_eq!(
            error_field(&gateway(
                "prefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.025\""
            )),
            "gateway.routes[0].per_minute"
        );
        assert_eq!(
            error_field(&gateway(
                "prefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.02 EUR\""
            )),
            "gateway.routes[0].per_minute"
        );
        assert_eq!(
            error_field("[caller]\npolicy = \"fastest\""),
            "caller.policy"
        );
        assert_eq!(
            error_field("[dht]\nreplication_factor = 0"),
            "dht.replication_factor"
        );
        assert_eq!(
            error_field("[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]"),
            "network.bootstrap[0]"
        );
        assert_eq!(
            error_field("[api]\nlisten = \"0.0.0.0:7080\""),
            "api.listen"
        );
        assert_eq!(error_field("[api]\nmax_calls = 0"), "api.max_calls");
        assert_eq!(
            error_field("[api]\nmax_memberships = 0"),
            "api.max_memberships"
        );
        assert_eq!(
            error_field("[limits]\ncall_invite_burst = 0"),
            "limits.call_invite_burst"
        );
    }

    #[test]
    fn a_conference_bridge_has_rooms_and_prices_instead_of_routes() {
        let bridge = |extra: &str| {
            format!(
                "[gateway]\nname = \"Mixer\"\nkind = \"conference\"\nbackend = \"conference\"\n\
                 region = \"eu-west\"\n{extra}"
            )
        };
        let section = "[gateway.conference]\nrooms = 5\nparticipants_per_room = 12\n\
                       currency = \"EUR\"\nper_room = \"0.50\"\nper_participant_minute = \"0.02\"";
        let config = Config::parse(&bridge(section)).unwrap();
        let plan = config
            .gateway_plan()
            .unwrap()
            .unwrap_or_else(|| panic!("no plan"));
        let terms = plan.conference.unwrap_or_else(|| panic!("no terms"));
        assert_eq!((terms.rooms, terms.participants_per_room), (5, 12));
        assert_eq!(
            (terms.tariff.per_room, terms.tariff.per_participant_minute),
            (50, 2)
        );
        assert_eq!(plan.kind, ServiceKind::Conference);
        assert_eq!(error_field(&bridge("")), "gateway.conference");
        assert_eq!(
            error_field(&bridge(&section.replace("12", "1"))),
            "gateway.conference.participants_per_room"
        );
        assert_eq!(
            error_field(&bridge(&section.replace("\"0.02\"", "\"0.02 GBP\""))),
            "gateway.conference.per_participant_minute"
        );
        assert_eq!(
            error_field(&bridge(&format!(
                "{section}\n[[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"EUR\"\nper_minute = \"1\""
            ))),
            "gateway.routes"
        );
        assert_eq!(
            error_field(&bridge(section).replace("eu-west", "EU West")),
            "gateway.region"
        );
        assert_eq!(
            error_field(
                &bridge(section).replace("kind = \"conference\"", "kind = \"webrtc-pstn\"")
            ),
            "gateway.kind"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::parse("[network]\nlisten_on = []").is_err());
    }

    #[test]
    fn a_sip_gateway_names_its_trunk() {
        let gateway = |sip: &str| {
            format!(
                "[gateway]\nname = \"G\"\nbackend = \"sip\"\n{sip}\n\
                 [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.02\"\n"
            )
        };
        let config = Config::parse(&gateway(
            "[gateway.sip]\nhost = \"127.0.0.1\"\nport = 5070\ntransport = \"tcp\"\n\
             [[gateway.sip.numbering]]\nprefix = \"+44\"\nstrip = \"+44\"\nadd = \"0\"",
        ))
        .unwrap();
        let plan = config
            .gateway_plan()
            .unwrap()
            .unwrap_or_else(|| panic!("no plan"));
        let BackendSpec::Sip(sip) = &plan.backend else {
            panic!("not a SIP back-end: {:?}", plan.backend);
        };
        assert_eq!((sip.host.as_str(), sip.port), ("127.0.0.1", 5070));
        assert_eq!(sip.numbering.len(), 1);
        let codecs = plan.capabilities().unwrap().codecs;
        assert!(codecs.contains(&Codec::TelephoneEvent));

        assert_eq!(error_field(&gateway("")), "gateway.sip");
        assert_eq!(
            error_field(&gateway("[gateway.sip]\nhost = \"127.0.0.1\"\nport = 0")),
            "gateway.sip.port"
        );
        assert_eq!(
            error_field(&gateway(
                "[gateway.sip]\nhost = \"h\"\n[[gateway.sip.numbering]]\nprefix = \"44\""
            )),
            "gateway.sip.numbering[0].prefix"
        );
        assert!(
            Config::parse(&gateway("[gateway.sip]\nhost = \"h\"\ntransport = \"tls\"")).is_err(),
            "an unknown transport is refused"
        );
    }
}
