//! Where offers are indexed: one key per country calling code, one per conference region.
//!
//! A gateway's offer is stored, whole and signed, at the nodes closest to the key of
//! every country its routes lie in (`/interlink/index/1/country/44`); a conference
//! bridge's at the key of its region (`/interlink/index/1/region/eu-west`). A caller
//! walks towards the one key of its destination's country and asks the nodes there for
//! the best offers that cover the whole number: the longest-prefix match (`+1` against
//! `+1212`) is done by those nodes in memory, on the signed routes, so one walk finds a
//! country-wide route and the deepest one alike. Service kinds are not part of the key:
//! the nodes filter them, so a caller that accepts two kinds still walks once.
//!
//! Kademlia places a key at SHA-256 of these bytes, as it places record keys.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::conference::Region;
use crate::country::CountryCode;
use crate::destination::E164;
use crate::offer::{OfferStatus, ServiceKind, ServiceOffer};

const COUNTRY_PREFIX: &str = "/interlink/index/1/country/";
const REGION_PREFIX: &str = "/interlink/index/1/region/";

/// A key of the offer index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IndexKey {
    /// Offers of gateways with a route in this country.
    Country(CountryCode),
    /// Offers of conference bridges in this region.
    Region(Region),
}

/// The error for bytes that are not an index key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Interlink index key: {0:?}")]
pub struct NotAnIndexKey(pub String);

impl IndexKey {
    /// The key of the country `destination` lies in.
    pub fn of_number(destination: &E164) -> IndexKey {
        IndexKey::Country(destination.country_code())
    }

    /// Every key `offer` belongs under: the countries of its routes, and its region if it
    /// is an available conference offer. A withdrawal belongs under none.
    pub fn of_offer(offer: &ServiceOffer) -> BTreeSet<IndexKey> {
        let mut keys: BTreeSet<IndexKey> = offer
            .country_codes()
            .into_iter()
            .map(IndexKey::Country)
            .collect();
        if offer.kind == ServiceKind::Conference
            && offer.status == OfferStatus::Available
            && offer.conference.is_some()
            && let Ok(region) = Region::new(&offer.region)
        {
            keys.insert(IndexKey::Region(region));
        }
        keys
    }

    /// Whether `offer` belongs under this key (see [`IndexKey::of_offer`]).
    pub fn fits(&self, offer: &ServiceOffer) -> bool {
        match self {
            IndexKey::Country(code) => offer
                .routes
                .iter()
                .any(|route| route.prefix.country_code() == Some(*code)),
            IndexKey::Region(_) => IndexKey::of_offer(offer).contains(self),
        }
    }

    /// The key's bytes, as Kademlia places them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Reads a key written by [`IndexKey::to_bytes`]; a key has exactly one spelling.
    pub fn parse(text: &str) -> Result<IndexKey, NotAnIndexKey> {
        let refused = || NotAnIndexKey(text.chars().take(64).collect());
        if let Some(code) = text.strip_prefix(COUNTRY_PREFIX) {
            return CountryCode::of(code)
                .filter(|cc| cc.to_string() == code)
                .map(IndexKey::Country)
                .ok_or_else(refused);
        }
        let region = text.strip_prefix(REGION_PREFIX).ok_or_else(refused)?;
        Region::new(region)
            .map(IndexKey::Region)
            .map_err(|_| refused())
    }
}

impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexKey::Country(code) => write!(f, "{COUNTRY_PREFIX}{code}"),
            IndexKey::Region(region) => write!(f, "{REGION_PREFIX}{region}"),
        }
    }
}

impl TryFrom<String> for IndexKey {
    type Error = NotAnIndexKey;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        IndexKey::parse(&text)
    }
}

impl From<IndexKey> for String {
    fn from(key: IndexKey) -> String {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::conference::ranking::tests::conference_offer;
    use crate::offer::tests::{route, sample_offer};

    fn country(code: &str) -> IndexKey {
        IndexKey::Country(CountryCode::of(code).unwrap_or_else(|| panic!("{code}")))
    }

    #[test]
    fn a_deep_prefix_and_its_country_share_the_destinations_key() {
        let number = E164::parse("+12125550123").unwrap();
        assert_eq!(IndexKey::of_number(&number), country("1"));
        let key = SecretKey::from_seed(&[3; 32]);
        let offer = sample_offer(
            &key,
            vec![route("+1212", 3), route("+1", 5), route("+4420", 2)],
        );
        assert_eq!(
            IndexKey::of_offer(&offer),
            BTreeSet::from([country("1"), country("44")])
        );
        assert!(country("1").fits(&offer));
        assert!(!country("33").fits(&offer));
    }

    #[test]
    fn a_conference_bridge_is_indexed_by_region_and_a_withdrawal_nowhere() {
        let mut offer = conference_offer(4, "Bridge", 10, 0, 1, 400);
        let region = IndexKey::Region(Region::new("eu-west").unwrap());
        assert_eq!(IndexKey::of_offer(&offer), BTreeSet::from([region]));
        assert!(region.fits(&offer));
        offer = offer.withdrawal(offer.issued_at);
        assert!(IndexKey::of_offer(&offer).is_empty());
        assert!(!region.fits(&offer));
    }

    #[test]
    fn keys_round_trip_with_one_spelling() {
        let region = IndexKey::Region(Region::new("us-east").unwrap());
        for key in [country("44"), country("1"), country("353"), region] {
            assert_eq!(IndexKey::parse(&key.to_string()), Ok(key));
        }
        assert_eq!(country("44").to_bytes(), b"/interlink/index/1/country/44");
        for bad in [
            "/interlink/index/1/country/044",
            "/interlink/index/1/country/4",
            "/interlink/index/1/country/",
            "/interlink/index/1/region/EU",
            "/interlink/index/2/country/44",
            "/interlink/providers/1/webrtc-pstn/44",
        ] {
            assert!(IndexKey::parse(bad).is_err(), "{bad}");
        }
    }
}
