//! Service offers: what a provider sells, to which destinations, at what price.
//!
//! A [`ServiceOffer`] is plain data. It becomes something a node will store or a caller
//! will rank only inside a [`crate::SignedOffer`], which checks every bound below.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::conference::{ConferenceTerms, Region};
use crate::country::CountryCode;
use crate::destination::{E164, Prefix};
use crate::identity::ProviderId;
use crate::money::{Currency, Money};
use crate::time::UnixTime;

/// The offer format this crate writes and reads.
pub const OFFER_FORMAT_VERSION: u16 = 2;
/// Most routes (prefixes) in one offer.
pub const MAX_ROUTES: usize = 256;
/// Most codecs in one offer.
pub const MAX_CODECS: usize = 8;
/// Most listen addresses in one offer.
pub const MAX_ADDRESSES: usize = 8;
/// Largest encoded listen address.
pub const MAX_ADDRESS_BYTES: usize = 128;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 64;
/// Longest region name, in bytes.
pub const MAX_REGION_BYTES: usize = 32;
/// Highest setup fee or price per minute, in minor units (ten million GBP, say).
pub const MAX_PRICE_MINOR_UNITS: u64 = 1_000_000_000;
/// Longest billing increment.
pub const MAX_BILLING_INCREMENT_SECS: u32 = 3600;
/// Worst post-dial delay a provider may claim.
pub const MAX_POST_DIAL_DELAY_MS: u32 = 60_000;

/// A kind of network a gateway connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Network {
    /// Browsers and WebRTC endpoints (ICE, DTLS-SRTP).
    WebRtc,
    /// SIP trunks and SIP endpoints.
    Sip,
    /// The public switched telephone network.
    Pstn,
}

impl Network {
    fn name(self) -> &'static str {
        match self {
            Network::WebRtc => "webrtc",
            Network::Sip => "sip",
            Network::Pstn => "pstn",
        }
    }

    fn from_name(name: &str) -> Option<Network> {
        [Network::WebRtc, Network::Sip, Network::Pstn]
            .into_iter()
            .find(|n| n.name() == name)
    }
}

/// What a provider's service does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// A gateway that carries calls from one network to another.
    Gateway { from: Network, to: Network },
    /// A conference bridge (MCU) that mixes many participants.
    Conference,
}

impl ServiceKind {
    /// WebRTC to the telephone network.
    pub const WEBRTC_TO_PSTN: ServiceKind = ServiceKind::Gateway {
        from: Network::WebRtc,
        to: Network::Pstn,
    };
    /// WebRTC to a SIP network.
    pub const WEBRTC_TO_SIP: ServiceKind = ServiceKind::Gateway {
        from: Network::WebRtc,
        to: Network::Sip,
    };

    /// The gateway kinds that take a WebRTC caller to an E.164 number.
    pub const WEBRTC_TO_NUMBERS: [ServiceKind; 2] =
        [ServiceKind::WEBRTC_TO_PSTN, ServiceKind::WEBRTC_TO_SIP];
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKind::Gateway { from, to } => write!(f, "{}-{}", from.name(), to.name()),
            ServiceKind::Conference => f.write_str("conference"),
        }
    }
}

/// The error for a service kind that is not `FROM-TO` or `conference`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service kind `{0}` (expected webrtc-pstn, webrtc-sip, sip-pstn or conference)")]
pub struct UnknownServiceKind(pub String);

impl FromStr for ServiceKind {
    type Err = UnknownServiceKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "conference" {
            return Ok(ServiceKind::Conference);
        }
        let unknown = || UnknownServiceKind(s.to_owned());
        let (from, to) = s.split_once('-').ok_or_else(unknown)?;
        let from = Network::from_name(from).ok_or_else(unknown)?;
        let to = Network::from_name(to).ok_or_else(unknown)?;
        if from == to {
            return Err(unknown());
        }
        Ok(ServiceKind::Gateway { from, to })
    }
}

/// Audio codecs a provider accepts on its WebRTC leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Codec {
    /// G.711 μ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 wideband.
    G722,
    /// Opus.
    Opus,
    /// RFC 4733 DTMF events.
    TelephoneEvent,
}

impl Codec {
    const ALL: [Codec; 5] = [
        Codec::Pcmu,
        Codec::Pcma,
        Codec::G722,
        Codec::Opus,
        Codec::TelephoneEvent,
    ];

    /// The codec's SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
            Codec::TelephoneEvent => "telephone-event",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a codec name this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec `{0}` (expected PCMU, PCMA, G722, opus or telephone-event)")]
pub struct UnknownCodec(pub String);

impl FromStr for Codec {
    type Err = UnknownCodec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCodec(s.to_owned()))
    }
}

/// A price list entry: what a call to numbers under one prefix costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tariff {
    pub currency: Currency,
    /// Charged once per answered call, in minor units.
    pub setup_fee: u64,
    /// Charged per minute of answered time, in minor units.
    pub per_minute: u64,
    /// Answered time is billed in whole multiples of this many seconds.
    pub billing_increment_secs: u32,
}

impl Tariff {
    /// The answered time that is billed: rounded up to whole seconds, then to whole
    /// billing increments.
    pub fn billed_seconds(&self, answered: Duration) -> u64 {
        let seconds = answered.as_millis().div_ceil(1000);
        let increment = u128::from(self.billing_increment_secs.max(1));
        let billed = seconds.div_ceil(increment) * increment;
        u64::try_from(billed).unwrap_or(u64::MAX)
    }

    /// What a call billed for `billed_seconds` costs: the setup fee plus the per-minute
    /// price pro rata, rounded up to a whole minor unit.
    pub fn charge(&self, billed_seconds: u64) -> Money {
        let usage = (u128::from(self.per_minute) * u128::from(billed_seconds)).div_ceil(60);
        let total = u128::from(self.setup_fee) + usage;
        Money::new(self.currency, u64::try_from(total).unwrap_or(u64::MAX))
    }

    /// The price per minute as money.
    pub fn per_minute_money(&self) -> Money {
        Money::new(self.currency, self.per_minute)
    }

    /// The setup fee as money.
    pub fn setup_fee_money(&self) -> Money {
        Money::new(self.currency, self.setup_fee)
    }
}

/// One destination range and its price.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub prefix: Prefix,
    pub tariff: Tariff,
}

/// A ratio in thousandths, such as an answer-seizure ratio of 0.55 as 550.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permille(pub u16);

impl Permille {
    /// The ratio as a fraction of one.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for Permille {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} %", self.0 / 10, self.0 % 10)
    }
}

/// A mean opinion score (ITU-T P.800, 1 to 5) in hundredths: 4.20 is 420.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mos(pub u16);

impl Mos {
    /// The score as a number from 1 to 5.
    pub fn value(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for Mos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// The quality a provider claims for its service. Callers weigh it against their own
/// history with the provider, since anyone can claim anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimedQuality {
    /// Answered calls over attempted calls.
    pub answer_seizure_ratio: Permille,
    /// Time from the last digit sent to ringing, in milliseconds.
    pub post_dial_delay_ms: u32,
    /// Mean opinion score of the audio.
    pub mos: Mos,
}

/// Whether an offer is open for business or has been withdrawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OfferStatus {
    /// The provider takes calls on the offer's routes.
    Available,
    /// The provider has withdrawn: this replaces any earlier offer and covers nothing.
    Withdrawn,
}

/// A provider's offer, as signed and published in the DHT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOffer {
    /// Format version; always [`OFFER_FORMAT_VERSION`] for offers this crate writes.
    pub version: u16,
    pub provider: ProviderId,
    /// Grows with every offer the provider publishes; a higher `seq` replaces a lower.
    pub seq: u64,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub status: OfferStatus,
    pub kind: ServiceKind,
    pub display_name: String,
    /// Where the provider's media and far-end legs run, e.g. `eu-west`.
    pub region: String,
    pub routes: Vec<Route>,
    pub codecs: Vec<Codec>,
    pub quality: ClaimedQuality,
    /// Concurrent calls the provider accepts.
    pub capacity: u32,
    /// Where to dial the provider (libp2p multiaddrs without `/p2p/`).
    pub addresses: Vec<Multiaddr>,
    /// A conference bridge's rooms and prices; present exactly on available
    /// [`ServiceKind::Conference`] offers.
    pub conference: Option<ConferenceTerms>,
}

/// The error for an offer field outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid offer field `{field}`: {reason}")]
pub struct FieldError {
    /// Path of the field, e.g. `routes[3].prefix`.
    pub field: String,
    pub reason: String,
}

impl ServiceOffer {
    /// The most specific route that covers `destination`, if the offer is available.
    pub fn best_route(&self, destination: &E164) -> Option<&Route> {
        if self.status == OfferStatus::Withdrawn {
            return None;
        }
        self.routes
            .iter()
            .filter(|route| route.prefix.covers(destination))
            .max_by_key(|route| route.prefix.len())
    }

    /// The country codes the offer's routes lie in: one provider key each.
    pub fn country_codes(&self) -> BTreeSet<CountryCode> {
        self.routes
            .iter()
            .filter_map(|route| route.prefix.country_code())
            .collect()
    }

    /// A withdrawal of this offer: the next `seq`, no routes, kept until `expires_at`
    /// so that it shadows every copy of the offer it replaces.
    pub fn withdrawal(&self, issued_at: UnixTime) -> ServiceOffer {
        ServiceOffer {
            seq: self.seq.saturating_add(1),
            issued_at,
            expires_at: self.expires_at.max(issued_at.plus(Duration::from_secs(60))),
            status: OfferStatus::Withdrawn,
            routes: Vec::new(),
            conference: None,
            ..self.clone()
        }
    }

    /// Checks every field against the bounds of this module.
    pub fn check_fields(&self) -> Result<(), FieldError> {
        let fail = |field: &str, reason: String| {
            Err(FieldError {
                field: field.to_owned(),
                reason,
            })
        };
        check_text("display_name", &self.display_name, MAX_DISPLAY_NAME_BYTES)?;
        if self.display_name.trim().is_empty() {
            return fail("display_name", "is empty".into());
        }
        check_text("region", &self.region, MAX_REGION_BYTES)?;
        if self.expires_at <= self.issued_at {
            return fail(
                "expires_at",
                format!(
                    "{} is not after issued_at {}",
                    self.expires_at, self.issued_at
                ),
            );
        }
        if let ServiceKind::Gateway { from, to } = self.kind
            && from == to
        {
            return fail("kind", format!("a gateway from {} to itself", from.name()));
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return fail(
                "addresses",
                format!(
                    "{} addresses, at most {MAX_ADDRESSES}",
                    self.addresses.len()
                ),
            );
        }
        if let Some(i) = self
            .addresses
            .iter()
            .position(|a| a.len() > MAX_ADDRESS_BYTES)
        {
            return fail(
                &format!("addresses[{i}]"),
                format!("longer than {MAX_ADDRESS_BYTES} bytes"),
            );
        }
        if self.codecs.len() > MAX_CODECS {
            return fail(
                "codecs",
                format!("{} codecs, at most {MAX_CODECS}", self.codecs.len()),
            );
        }
        if self.codecs.iter().collect::<BTreeSet<_>>().len() != self.codecs.len() {
            return fail("codecs", "lists a codec twice".into());
        }
        match self.status {
            OfferStatus::Withdrawn if !self.routes.is_empty() => {
                fail("routes", "a withdrawal has no routes".into())
            }
            OfferStatus::Withdrawn if self.conference.is_some() => {
                fail("conference", "a withdrawal has no conference terms".into())
            }
            OfferStatus::Withdrawn => Ok(()),
            OfferStatus::Available => self.check_terms(),
        }
    }

    fn check_terms(&self) -> Result<(), FieldError> {
        let fail = |field: String, reason: String| Err(FieldError { field, reason });
        match (&self.conference, self.kind) {
            (Some(terms), ServiceKind::Conference) => {
                if let Err(e) = Region::new(&self.region) {
                    return fail("region".into(), e.to_string());
                }
                if !self.routes.is_empty() {
                    return fail(
                        "routes".into(),
                        "a conference offer has no destination routes".into(),
                    );
                }
                terms.check()?;
            }
            (None, ServiceKind::Conference) => {
                return fail(
                    "conference".into(),
                    "a conference offer needs its rooms and prices".into(),
                );
            }
            (Some(_), ServiceKind::Gateway { .. }) => {
                return fail(
                    "conference".into(),
                    "a gateway offer has no conference terms".into(),
                );
            }
            (None, ServiceKind::Gateway { .. }) => {}
        }
        if self.kind != ServiceKind::Conference && self.routes.is_empty() {
            return fail(
                "routes".into(),
                "an available gateway offer needs at least one route".into(),
            );
        }
        if self.routes.len() > MAX_ROUTES {
            return fail(
                "routes".into(),
                format!("{} routes, at most {MAX_ROUTES}", self.routes.len()),
            );
        }
        if self.codecs.is_empty() {
            return fail("codecs".into(), "no codec offered".into());
        }
        if self.capacity == 0 {
            return fail("capacity".into(), "zero concurrent calls".into());
        }
        let quality = &self.quality;
        if quality.answer_seizure_ratio.0 > 1000 {
            return fail(
                "quality.answer_seizure_ratio".into(),
                format!("{} permille is over 1000", quality.answer_seizure_ratio.0),
            );
        }
        if !(100..=500).contains(&quality.mos.0) {
            return fail(
                "quality.mos".into(),
                format!("{} is not between 1.00 and 5.00", quality.mos),
            );
        }
        if quality.post_dial_delay_ms > MAX_POST_DIAL_DELAY_MS {
            return fail(
                "quality.post_dial_delay_ms".into(),
                format!("over {MAX_POST_DIAL_DELAY_MS} ms"),
            );
        }
        let mut prefixes = BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            if let Err(e) = route.prefix.check() {
                return fail(format!("routes[{i}].prefix"), e.to_string());
            }
            if !prefixes.insert(&route.prefix) {
                return fail(
                    format!("routes[{i}].prefix"),
                    format!("{} appears twice", route.prefix),
                );
            }
            let tariff = &route.tariff;
            if !tariff.currency.is_known() {
                return fail(
                    format!("routes[{i}].tariff.currency"),
                    format!("`{}` is not an ISO 4217 code", tariff.currency),
                );
            }
            if tariff.setup_fee > MAX_PRICE_MINOR_UNITS || tariff.per_minute > MAX_PRICE_MINOR_UNITS
            {
                return fail(
                    format!("routes[{i}].tariff"),
                    format!("a price over {MAX_PRICE_MINOR_UNITS} minor units"),
                );
            }
            if !(1..=MAX_BILLING_INCREMENT_SECS).contains(&tariff.billing_increment_secs) {
                return fail(
                    format!("routes[{i}].tariff.billing_increment_secs"),
                    format!("not between 1 and {MAX_BILLING_INCREMENT_SECS}"),
                );
            }
        }
        Ok(())
    }
}

fn check_text(field: &str, text: &str, max_bytes: usize) -> Result<(), FieldError> {
    let fail = |reason: String| {
        Err(FieldError {
            field: field.to_owned(),
            reason,
        })
    };
    if text.len() > max_bytes {
        return fail(format!("{} bytes, at most {max_bytes}", text.len()));
    }
    if text.chars().any(char::is_control) {
        return fail("contains control characters".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::SecretKey;

    pub(crate) fn gbp() -> Currency {
        Currency::new("GBP").unwrap()
    }

    pub(crate) fn route(prefix: &str, per_minute: u64) -> Route {
        Route {
            prefix: Prefix::new(prefix).unwrap(),
            tariff: Tariff {
                currency: gbp(),
                setup_fee: 0,
                per_minute,
                billing_increment_secs: 60,
            },
        }
    }

    /// An offer by `key` issued at 1000 s, valid for an hour.
    pub(crate) fn sample_offer(key: &SecretKey, routes: Vec<Route>) -> ServiceOffer {
        ServiceOffer {
            version: OFFER_FORMAT_VERSION,
            provider: key.provider_id(),
            seq: 1,
            issued_at: UnixTime(1000),
            expires_at: UnixTime(4600),
            status: OfferStatus::Available,
            kind: ServiceKind::WEBRTC_TO_PSTN,
            display_name: "Inter".into(),
            region: "eu-west".into(),
            routes,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            quality: ClaimedQuality {
                answer_seizure_ratio: Permille(550),
                post_dial_delay_ms: 2500,
                mos: Mos(420),
            },
            capacity: 100,
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            conference: None,
        }
    }

    fn number(n: &str) -> E164 {
        E164::parse(n).unwrap()
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let key = SecretKey::from_seed(&[1; 32]);
        let offer = sample_offer(
            &key,
            vec![route("44", 3), route("447", 2), route("4420", 1)],
        );
        let best = |n: &str| offer.best_route(&number(n)).map(|r| r.prefix.to_string());
        assert_eq!(best("+447700900123").as_deref(), Some("+447"));
        assert_eq!(best("+442079460000").as_deref(), Some("+4420"));
        assert_eq!(best("+441632960000").as_deref(), Some("+44"));
        assert_eq!(best("+33142685300"), None);
        let withdrawn = offer.withdrawal(UnixTime(2000));
        assert_eq!(withdrawn.best_route(&number("+447700900123")), None);
        assert_eq!(withdrawn.seq, offer.seq + 1);
    }

    #[test]
    fn billing_rounds_up_to_the_increment_and_the_minor_unit() {
        let tariff = Tariff {
            currency: gbp(),
            setup_fee: 5,
            per_minute: 7,
            billing_increment_secs: 30,
        };
        assert_eq!(tariff.billed_seconds(Duration::ZERO), 0);
        assert_eq!(tariff.billed_seconds(Duration::from_millis(200)), 30);
        assert_eq!(tariff.billed_seconds(Duration::from_secs(30)), 30);
        assert_eq!(tariff.billed_seconds(Duration::from_millis(30_001)), 60);
        // 7 per minute for 30 s is 3.5, rounded up to 4, plus the setup fee.
        assert_eq!(tariff.charge(30).minor_units, 9);
        assert_eq!(tariff.charge(60).minor_units, 12);
        assert_eq!(tariff.charge(0).minor_units, 5);
    }

    #[test]
    fn service_kinds_round_trip_through_their_names() {
        for kind in ["webrtc-pstn", "webrtc-sip", "sip-pstn", "conference"] {
            let parsed: ServiceKind = kind.parse().unwrap();
            assert_eq!(parsed.to_string(), kind);
        }
        assert!("webrtc-webrtc".parse::<ServiceKind>().is_err());
        assert!("fax".parse::<ServiceKind>().is_err());
    }

    #[test]
    fn field_bounds_name_the_field() {
        let key = SecretKey::from_seed(&[1; 32]);
        let good = sample_offer(&key, vec![route("44", 3)]);
        assert_eq!(good.check_fields(), Ok(()));

        let field_of = |offer: ServiceOffer| offer.check_fields().err().map(|e| e.field);
        let mut bad = good.clone();
        bad.routes.push(Route {
            prefix: Prefix::unchecked("44x"),
            ..route("44", 1)
        });
        assert_eq!(field_of(bad).as_deref(), Some("routes[1].prefix"));

        let mut bad = good.clone();
        bad.display_name = "x".repeat(MAX_DISPLAY_NAME_BYTES + 1);
        assert_eq!(field_of(bad).as_deref(), Some("display_name"));

        let mut bad = good.clone();
        bad.routes = (0..=MAX_ROUTES)
            .map(|i| route(&format!("44{i:04}"), 1))
            .collect();
        assert_eq!(field_of(bad).as_deref(), Some("routes"));

        let mut bad = good.clone();
        bad.quality.mos = Mos(510);
        assert_eq!(field_of(bad).as_deref(), Some("quality.mos"));

        let mut bad = good.clone();
        bad.routes[0].tariff.billing_increment_secs = 0;
        assert_eq!(
            field_of(bad).as_deref(),
            Some("routes[0].tariff.billing_increment_secs")
        );

        let mut bad = good.clone();
        bad.routes.push(route("44", 9));
        assert_eq!(field_of(bad).as_deref(), Some("routes[1].prefix"));
    }
}
