//! `[gateway]`: what a gateway node sells and runs, and [`GatewayPlan`], the same checked
//! and in protocol types.

use std::time::Duration;

use interlink_gateway_plugin::conference::ConferenceBridge;
use interlink_gateway_plugin::echo::{EchoConfig, EchoGateway};
use interlink_gateway_plugin::sip::{SipConfig, SipGateway};
use interlink_gateway_plugin::{Capabilities, CapabilityError};
use interlink_protocol::conference::{ConferenceTariff, ConferenceTerms, Region};
use interlink_protocol::offer::{ClaimedQuality, Mos, Permille, Route, Tariff};
use interlink_protocol::signed::MAX_OFFER_LIFETIME;
use interlink_protocol::{Currency, Money, Prefix, ServiceKind};
use serde::Deserialize;

use super::{ConfigError, invalid};

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

impl GatewaySection {
    pub(super) fn plan(&self) -> Result<GatewayPlan, ConfigError> {
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

/// The back-end a gateway runs.
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
