//! Where offers live in the Kademlia DHT.
//!
//! Two kinds of key, both readable so that a DHT dump explains itself:
//! - `/interlink/providers/1/{kind}/{country code}`: provider records, one key per service
//!   kind and country code a provider serves, e.g. `/interlink/providers/1/webrtc-pstn/44`;
//! - `/interlink/region-providers/1/{kind}/{region}`: provider records of services found
//!   by region rather than destination, such as conference bridges, e.g.
//!   `/interlink/region-providers/1/conference/eu-west`;
//! - `/interlink/offer/1/{provider key in hex}`: the provider's current signed offer (or
//!   withdrawal), one value key per provider.
//!
//! Kademlia hashes keys with SHA-256 to place them, so readable keys spread as well as
//! random ones.

use crate::conference::Region;
use crate::country::CountryCode;
use crate::identity::ProviderId;
use crate::offer::ServiceKind;

const PROVIDERS_PREFIX: &str = "/interlink/providers/1/";
const REGION_PROVIDERS_PREFIX: &str = "/interlink/region-providers/1/";
const OFFER_PREFIX: &str = "/interlink/offer/1/";

/// A key of the Interlink DHT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DhtKey {
    /// Providers of `kind` that serve numbers under `country_code`.
    Providers {
        kind: ServiceKind,
        country_code: CountryCode,
    },
    /// Providers of `kind` (a conference bridge, say) whose service runs in `region`.
    RegionProviders { kind: ServiceKind, region: Region },
    /// The current signed offer of a provider.
    Offer(ProviderId),
}

impl DhtKey {
    /// The key's bytes in the DHT.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            DhtKey::Providers { kind, country_code } => {
                format!("{PROVIDERS_PREFIX}{kind}/{country_code}").into_bytes()
            }
            DhtKey::RegionProviders { kind, region } => {
                format!("{REGION_PROVIDERS_PREFIX}{kind}/{region}").into_bytes()
            }
            DhtKey::Offer(provider) => format!("{OFFER_PREFIX}{provider}").into_bytes(),
        }
    }

    /// Reads a key, or `None` if it is not one of ours.
    pub fn parse(bytes: &[u8]) -> Option<DhtKey> {
        let text = std::str::from_utf8(bytes).ok()?;
        if let Some(rest) = text.strip_prefix(PROVIDERS_PREFIX) {
            let (kind, code) = rest.split_once('/')?;
            let country_code = CountryCode::of(code).filter(|cc| cc.to_string() == code)?;
            return Some(DhtKey::Providers {
                kind: kind.parse().ok()?,
                country_code,
            });
        }
        if let Some(rest) = text.strip_prefix(REGION_PROVIDERS_PREFIX) {
            let (kind, region) = rest.split_once('/')?;
            return Some(DhtKey::RegionProviders {
                kind: kind.parse().ok()?,
                region: Region::new(region).ok()?,
            });
        }
        let hex = text.strip_prefix(OFFER_PREFIX)?;
        if hex.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        // Lowercase hex digits only, so that a key has one spelling: `from_str_radix`
        // alone also takes uppercase and a leading `+` ("+c" for "0c").
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(DhtKey::Offer(ProviderId::from_bytes(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;

    #[test]
    fn keys_round_trip_and_read_well() {
        let provider = SecretKey::from_seed(&[9; 32]).provider_id();
        let country_code = CountryCode::of("44").unwrap_or_else(|| panic!("44 is assigned"));
        let keys = [
            DhtKey::Providers {
                kind: ServiceKind::WEBRTC_TO_PSTN,
                country_code,
            },
            DhtKey::RegionProviders {
                kind: ServiceKind::Conference,
                region: Region::new("eu-west").unwrap(),
            },
            DhtKey::Offer(provider),
        ];
        for key in keys {
            assert_eq!(DhtKey::parse(&key.to_bytes()), Some(key));
        }
        assert_eq!(keys[0].to_bytes(), b"/interlink/providers/1/webrtc-pstn/44");
        assert_eq!(
            keys[1].to_bytes(),
            b"/interlink/region-providers/1/conference/eu-west"
        );
        assert!(String::from_utf8_lossy(&keys[2].to_bytes()).starts_with("/interlink/offer/1/"));
    }

    #[test]
    fn an_offer_key_has_one_spelling() {
        // Found by the dht_record fuzz target: "+c" read as the byte 0x0c, so one provider's
        // offer could be stored under many keys.
        let provider = SecretKey::from_seed(&[9; 32]).provider_id();
        let key = String::from_utf8(DhtKey::Offer(provider).to_bytes()).unwrap();
        let hex_at = OFFER_PREFIX.len();
        let pair_at = (0..32)
            .map(|i| hex_at + 2 * i)
            .find(|&at| &key[at..at + 1] == "0")
            .unwrap_or_else(|| panic!("no byte under 0x10 in {key}"));
        let mut plus = key.clone();
        plus.replace_range(pair_at..pair_at + 1, "+");
        assert_eq!(DhtKey::parse(plus.as_bytes()), None, "{plus}");
        assert_eq!(DhtKey::parse(key.to_uppercase().as_bytes()), None);
        assert_eq!(DhtKey::parse(key.as_bytes()), Some(DhtKey::Offer(provider)));
    }

    #[test]
    fn foreign_keys_are_not_ours() {
        for bad in [
            &b"/ipfs/abc"[..],
            b"/interlink/providers/1/webrtc-pstn/4",
            b"/interlink/providers/1/webrtc-pstn/044",
            b"/interlink/providers/1/fax/44",
            b"/interlink/offer/1/abcd",
            b"/interlink/region-providers/1/conference/EU West",
            b"/interlink/region-providers/1/conference/",
            b"/interlink/region-providers/1/fax/eu-west",
            b"\xff\xfe",
        ] {
            assert_eq!(DhtKey::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
