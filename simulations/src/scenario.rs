//! What a simulation runs: the network, its gateways, the callers' load and the churn.
//!
//! A [`Scenario`] comes from a TOML file or one of the named scenarios shipped in
//! `simulations/scenarios/`; flags can override any of its main figures. Every random
//! choice (routes, prices, destinations, churn) comes from one seeded generator, so a
//! scenario with the same seed builds the same network and the same load.

use std::time::Duration;

use interlink_node::config::DhtSection;
use interlink_node::local_network::LocalTransport;
use interlink_node::network::MemorySecurity;
use serde::{Deserialize, Serialize};

/// A scenario, as written in TOML.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// `memory` (libp2p's in-memory transport) or `tcp` (loopback sockets).
    #[serde(skip_serializing)]
    pub transport: LocalTransport,
    /// DHT nodes besides the bootstrap node, the gateways and the callers.
    pub nodes: usize,
    pub gateways: usize,
    /// Client-mode nodes that look gateways up (and call, if `calls_per_minute` > 0).
    pub callers: usize,
    /// Nodes started per second while the network is built.
    pub join_rate: f64,
    /// Time for the network to settle after it is built, before measuring.
    pub warmup_secs: u64,
    /// How long the load and the churn run.
    pub duration_secs: u64,
    /// Lookups per minute per caller.
    pub lookups_per_minute: f64,
    /// Echo calls per minute per caller, through the best gateway found; 0 for none.
    pub calls_per_minute: f64,
    pub routes: RouteMix,
    /// Lifetime of the gateways' offers; they republish at half of it.
    pub offer_ttl_secs: u64,
    pub churn: Churn,
    /// Close idle connections after this long.
    pub idle_connection_timeout_secs: u64,
    /// Peers a joining node is given to join through: the bootstrap node and, beyond one,
    /// DHT nodes already up, as an operator lists several. With 20 or more, a join costs
    /// one Kademlia bootstrap; with fewer, libp2p follows the node's own bootstrap with a
    /// second one because the routing table had fewer than 20 peers when it started.
    pub bootstrap_peers: usize,
    /// How often every node refreshes its routing table (`dht.bootstrap_interval_secs`).
    pub bootstrap_interval_secs: u64,
    /// How in-memory connections are secured: `noise`, as on the network, or `plaintext`
    /// (no key exchange or encryption) for runs of thousands of nodes.
    pub security: Security,
    /// Also run the scenario with libp2p's default Kademlia settings, for comparison.
    pub compare_default: bool,
    /// How callers discover: the offer index, the first design's provider records, or
    /// both, each in a run of its own.
    pub discovery: DiscoveryChoice,
    /// The best offers a lookup asks for; a lookup is judged on whether it got the true
    /// best this many for its policy. 256 asks for every covering offer.
    pub results: u16,
    /// Policies callers draw from for each lookup: `cheapest`, `balanced`,
    /// `best-quality`.
    pub policies: Vec<String>,
    /// The share of lookups that repeat one of the caller's recent questions, answered
    /// from its cache (the index only); measured apart from the others.
    pub repeat_share: f64,
    /// Gateways that publish new prices, per minute across the market, while the load
    /// runs.
    pub reprices_per_minute: f64,
    /// Round-trip times between nodes.
    pub links: LinkSettings,
    pub sweep: Sweep,
}

/// How callers discover gateways in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryChoice {
    /// The offer index: one walk toward the country's key.
    #[default]
    Index,
    /// The first design: provider records under the country's key, then one lookup per
    /// provider (gateways announce themselves as providers too).
    Providers,
    /// Every point twice: with the index, then with provider records.
    Both,
}

/// The network between the nodes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSettings {
    /// `none` (in-memory connections deliver at once) or `regions` (each node in a cloud
    /// region with a last mile of its own; see `links.rs`).
    pub model: LinkModelChoice,
}

/// A model of round-trip times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LinkModelChoice {
    #[default]
    None,
    Regions,
}

/// The security upgrade of the in-memory transport (TCP always uses noise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Noise,
    Plaintext,
}

impl Security {
    /// The node setting it stands for.
    pub fn memory_security(self) -> MemorySecurity {
        match self {
            Security::Noise => MemorySecurity::Noise,
            Security::Plaintext => MemorySecurity::Plaintext,
        }
    }
}

/// Which prefixes gateways serve and at what price.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMix {
    /// Country codes the gateways serve, e.g. `["44", "33"]`.
    pub countries: Vec<String>,
    /// Routes per gateway, at least and at most.
    pub routes_per_gateway: [usize; 2],
    /// Digits added to a country code to make a prefix, at least and at most.
    pub extra_digits: [usize; 2],
    pub currency: String,
    /// Price per minute in minor units, at least and at most (uniform).
    pub price_per_minute: [u64; 2],
    /// How likely each of `countries` is for a route (empty: all alike).
    pub country_weights: Vec<f64>,
    /// Claimed quality, drawn uniformly: MOS at least and at most...
    pub mos: [f64; 2],
    /// ...answer-seizure ratio...
    pub answer_seizure_ratio: [f64; 2],
    /// ...and post-dial delay in ms.
    pub post_dial_delay_ms: [u32; 2],
}

/// Nodes joining and leaving while the load runs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    pub joins_per_minute: f64,
    pub leaves_per_minute: f64,
    /// Leaves that are crashes (no withdrawal); the others shut down cleanly.
    pub crash_fraction: f64,
    /// Joins and leaves that are gateways; the others are DHT nodes.
    pub gateway_fraction: f64,
}

/// Figures a scenario runs at in turn; empty lists mean one run at the scenario's own.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sweep {
    /// DHT node counts.
    pub nodes: Vec<usize>,
    /// Churn rates: joins and leaves per minute each.
    pub churn_per_minute: Vec<f64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            description: String::new(),
            seed: 1,
            transport: LocalTransport::Memory,
            nodes: 50,
            gateways: 8,
            callers: 4,
            join_rate: 50.0,
            warmup_secs: 5,
            duration_secs: 30,
            lookups_per_minute: 60.0,
            calls_per_minute: 0.0,
            routes: RouteMix::default(),
            offer_ttl_secs: 600,
            churn: Churn::default(),
            idle_connection_timeout_secs: 60,
            bootstrap_peers: 1,
            bootstrap_interval_secs: 300,
            security: Security::Noise,
            compare_default: false,
            discovery: DiscoveryChoice::Index,
            results: 256,
            policies: vec!["balanced".into()],
            repeat_share: 0.0,
            reprices_per_minute: 0.0,
            links: LinkSettings::default(),
            sweep: Sweep::default(),
        }
    }
}

impl Default for RouteMix {
    fn default() -> Self {
        RouteMix {
            countries: vec!["44".into(), "33".into(), "49".into()],
            routes_per_gateway: [1, 3],
            extra_digits: [0, 2],
            currency: "GBP".into(),
            price_per_minute: [1, 10],
            country_weights: Vec::new(),
            mos: [4.0, 4.0],
            answer_seizure_ratio: [0.5, 0.5],
            post_dial_delay_ms: [3000, 3000],
        }
    }
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            joins_per_minute: 0.0,
            leaves_per_minute: 0.0,
            crash_fraction: 0.5,
            gateway_fraction: 0.2,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("unknown scenario `{0}` (try: {names})", names = NAMED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("scenario: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The scenarios shipped with the crate.
pub const NAMED: &[(&str, &str)] = &[
    ("small", include_str!("../scenarios/small.toml")),
    ("country", include_str!("../scenarios/country.toml")),
    ("churn", include_str!("../scenarios/churn.toml")),
    ("scale", include_str!("../scenarios/scale.toml")),
    ("market", include_str!("../scenarios/market.toml")),
];

impl Scenario {
    /// A named scenario.
    pub fn named(name: &str) -> Result<Scenario, ScenarioError> {
        let text = NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
            .ok_or_else(|| ScenarioError::Unknown(name.to_owned()))?;
        Scenario::parse(text)
    }

    /// A scenario from TOML text, checked.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks the figures; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |field, reason: &str| {
            Err(ScenarioError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.gateways == 0 {
            return invalid(
                "gateways",
                "at least one gateway is needed to look anything up",
            );
        }
        if self.callers == 0 {
            return invalid("callers", "at least one caller is needed");
        }
        if self.bootstrap_peers == 0 {
            return invalid("bootstrap_peers", "must be at least 1 (the bootstrap node)");
        }
        if self.bootstrap_interval_secs == 0 {
            return invalid("bootstrap_interval_secs", "must be greater than zero");
        }
        if self.join_rate.is_nan() || self.join_rate <= 0.0 {
            return invalid("join_rate", "must be positive");
        }
        if self.routes.countries.is_empty() {
            return invalid("routes.countries", "list at least one country code");
        }
        for code in &self.routes.countries {
            if interlink_protocol::CountryCode::of(code).map(|c| c.to_string())
                != Some(code.clone())
            {
                return invalid(
                    "routes.countries",
                    "each entry must be an assigned country code, e.g. \"44\"",
                );
            }
        }
        let [low, high] = self.routes.routes_per_gateway;
        if low == 0 || low > high {
            return invalid(
                "routes.routes_per_gateway",
                "must be [least, most] with 1 <= least <= most",
            );
        }
        if self.routes.extra_digits[0] > self.routes.extra_digits[1] {
            return invalid("routes.extra_digits", "must be [least, most]");
        }
        if self.routes.price_per_minute[0] > self.routes.price_per_minute[1] {
            return invalid("routes.price_per_minute", "must be [least, most]");
        }
        if interlink_protocol::Currency::new(&self.routes.currency).is_err() {
            return invalid("routes.currency", "must be an ISO 4217 code");
        }
        if !(0.0..=1.0).contains(&self.churn.crash_fraction)
            || !(0.0..=1.0).contains(&self.churn.gateway_fraction)
        {
            return invalid("churn", "fractions must be between 0 and 1");
        }
        if self.offer_ttl_secs < 10 {
            return invalid("offer_ttl_secs", "must be at least 10");
        }
        if self.results == 0 || self.results > interlink_protocol::discovery::query::MAX_LIMIT {
            return invalid("results", "must be between 1 and 256");
        }
        if self.policies.is_empty()
            || self.policies.iter().any(|p| {
                p.parse::<interlink_protocol::ranking::PolicyKind>()
                    .is_err()
            })
        {
            return invalid(
                "policies",
                "list one or more of cheapest, balanced, best-quality",
            );
        }
        if !(0.0..=1.0).contains(&self.repeat_share) {
            return invalid("repeat_share", "must be between 0 and 1");
        }
        if self.reprices_per_minute.is_nan() || self.reprices_per_minute < 0.0 {
            return invalid("reprices_per_minute", "must be zero or more");
        }
        let mix = &self.routes;
        if !mix.country_weights.is_empty()
            && (mix.country_weights.len() != mix.countries.len()
                || mix
                    .country_weights
                    .iter()
                    .any(|w| !w.is_finite() || *w < 0.0)
                || mix.country_weights.iter().sum::<f64>() <= 0.0)
        {
            return invalid(
                "routes.country_weights",
                "one non-negative weight per country, not all zero",
            );
        }
        if !(1.0..=5.0).contains(&mix.mos[0]) || mix.mos[0] > mix.mos[1] || mix.mos[1] > 5.0 {
            return invalid("routes.mos", "must be [least, most] within 1 to 5");
        }
        if !(0.0..=1.0).contains(&mix.answer_seizure_ratio[0])
            || mix.answer_seizure_ratio[0] > mix.answer_seizure_ratio[1]
            || mix.answer_seizure_ratio[1] > 1.0
        {
            return invalid(
                "routes.answer_seizure_ratio",
                "must be [least, most] within 0 to 1",
            );
        }
        if mix.post_dial_delay_ms[0] > mix.post_dial_delay_ms[1]
            || mix.post_dial_delay_ms[1] > interlink_protocol::offer::MAX_POST_DIAL_DELAY_MS
        {
            return invalid(
                "routes.post_dial_delay_ms",
                "must be [least, most] within 0 to 60000",
            );
        }
        Ok(())
    }

    /// The discovery methods the scenario's points run with, in order.
    pub fn methods(&self) -> Vec<Method> {
        match self.discovery {
            DiscoveryChoice::Index => vec![Method::Index],
            DiscoveryChoice::Providers => vec![Method::Providers],
            DiscoveryChoice::Both => vec![Method::Index, Method::Providers],
        }
    }

    /// The scenario's runs: one, or one per sweep point.
    pub fn points(&self) -> Vec<Scenario> {
        let mut points = vec![self.clone()];
        if !self.sweep.nodes.is_empty() {
            points = self
                .sweep
                .nodes
                .iter()
                .map(|&nodes| Scenario {
                    nodes,
                    ..self.clone()
                })
                .collect();
        } else if !self.sweep.churn_per_minute.is_empty() {
            points = self
                .sweep
                .churn_per_minute
                .iter()
                .map(|&rate| Scenario {
                    churn: Churn {
                        joins_per_minute: rate,
                        leaves_per_minute: rate,
                        ..self.churn.clone()
                    },
                    ..self.clone()
                })
                .collect();
        }
        points
    }

    /// Every node the run starts at first: bootstrap, DHT nodes, gateways, callers and the
    /// probe that measures time to discoverable.
    pub fn total_nodes(&self) -> usize {
        1 + self.nodes + self.gateways + self.callers + 1
    }

    /// How long to wait between starting two nodes.
    pub fn join_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.join_rate)
    }
}

/// How the callers of a run discover gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The offer index.
    Index,
    /// Provider records and one lookup per provider: the first design.
    Providers,
}

impl Method {
    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Method::Index => "index",
            Method::Providers => "providers (before)",
        }
    }
}

/// The Kademlia settings a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KadSettings {
    /// Interlink's settings: disjoint lookup paths, two valid copies of an offer before a
    /// lookup stops, records that live as long as the offer, provider records of hours.
    Project,
    /// libp2p's defaults: one path, the first copy found, 48 h records and provider
    /// records, 1024 records and 20 providers a key at most.
    Libp2pDefault,
}

impl KadSettings {
    /// The `[dht]` section of the setting.
    pub fn dht(self) -> DhtSection {
        match self {
            KadSettings::Project => DhtSection::default(),
            KadSettings::Libp2pDefault => DhtSection {
                replication_factor: 20,
                parallelism: 3,
                disjoint_paths: false,
                record_quorum: 1,
                query_timeout_secs: 60,
                record_ttl_secs: 48 * 3600,
                record_replication_secs: 3600,
                provider_record_ttl_secs: 48 * 3600,
                provider_publication_secs: 12 * 3600,
                max_providers_per_key: 20,
                max_records: 1024,
                bootstrap_interval_secs: 300,
            },
        }
    }

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            KadSettings::Project => "interlink",
            KadSettings::Libp2pDefault => "libp2p default",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_scenarios_load() {
        for (name, _) in NAMED {
            let scenario = Scenario::named(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&scenario.name, name);
            assert!(!scenario.points().is_empty());
        }
    }

    #[test]
    fn bad_figures_are_named() {
        let field = |text: &str| match Scenario::parse(text) {
            Err(ScenarioError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field("gateways = 0"), "gateways");
        assert_eq!(field("[routes]\ncountries = [\"4\"]"), "routes.countries");
        assert_eq!(field("[churn]\ncrash_fraction = 2.0"), "churn");
        assert_eq!(field("bootstrap_peers = 0"), "bootstrap_peers");
        assert_eq!(
            field("bootstrap_interval_secs = 0"),
            "bootstrap_interval_secs"
        );
        assert!(Scenario::parse("security = \"rot13\"").is_err());
        assert!(
            Scenario::parse("nodez = 3").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn the_scale_scenario_is_tuned_for_thousands_of_nodes() {
        let scale = Scenario::named("scale").unwrap_or_else(|e| panic!("scale: {e}"));
        assert_eq!(scale.security, Security::Plaintext);
        assert_eq!(scale.bootstrap_peers, 20);
        assert!(scale.bootstrap_interval_secs > 300);
        // What operators run: noise, libp2p's refresh interval, one bootstrap peer.
        let default = Scenario::default();
        assert_eq!(default.security, Security::Noise);
        assert_eq!(default.bootstrap_interval_secs, 300);
        assert_eq!(default.bootstrap_peers, 1);
    }

    #[test]
    fn sweeps_make_one_point_each() {
        let scenario = Scenario {
            sweep: Sweep {
                nodes: vec![10, 20],
                ..Sweep::default()
            },
            ..Scenario::default()
        };
        let nodes: Vec<usize> = scenario.points().iter().map(|p| p.nodes).collect();
        assert_eq!(nodes, [10, 20]);
    }
}
