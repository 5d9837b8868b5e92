//! The node's configuration: one TOML file, documented defaults, checked once at start.
//!
//! [`Config::load`] reads the file, fills in defaults for what it leaves out and checks
//! every field, so that a mistake stops the node at start with the name of the field, not
//! later in the middle of a call. [`TEMPLATE`] is the commented file `interlink init`
//! writes (`template.toml` beside this file); a test checks that it loads.
//!
//! The sections live where a reader looks for them: `network.rs` (`[network]`, `[dht]`,
//! `[discovery]`), `calls.rs` (`[caller]`, `[media]`, `[calls]`, `[api]`), `gateway.rs`
//! (`[gateway]` and the plan made from it); `[limits]` and `[metrics]` beside the code
//! they bound and expose.

mod calls;
mod gateway;
mod network;

use std::path::{Path, PathBuf};

use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::{Codec, Currency, Money};
use libp2p::Multiaddr;
use serde::Deserialize;

pub use self::calls::{ApiSection, CallerSection, CallsSection, MediaSection};
pub use self::gateway::{
    BackendSpec, ConferenceBackend, ConferenceSection, GatewayPlan, GatewaySection, QualitySection,
    RouteSection,
};
pub use self::network::{DhtSection, DiscoverySection, NetworkSection};
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

/// The peer id at the end of a `/p2p/` multiaddr.
pub fn peer_id_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}
/// The commented configuration `interlink init` writes.
pub const TEMPLATE: &str = include_str!("template.toml");

#[cfg(test)]
mod tests {
    use interlink_protocol::ServiceKind;
    use interlink_protocol::offer::Mos;

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
