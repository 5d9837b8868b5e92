//! What a node agrees to store for others: the admission policy of the DHT.
//!
//! Kademlia is told to filter every inbound record and provider record
//! (`StoreInserts::FilterBoth`); the event loop asks this module before storing one. A
//! value is stored only if it is a valid [`SignedOffer`] under its provider's own offer
//! key and replaces nothing newer. A provider record is stored only under a well-formed
//! providers key: provider records are unsigned, so callers drop any provider without a
//! valid offer.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use interlink_protocol::codec::CodecError;
use interlink_protocol::{DhtKey, OfferError, ProviderId, SignedOffer, UnixTime, envelope};
use libp2p::PeerId;

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("not an Interlink offer key")]
    NotAnOfferKey,
    #[error("not an Interlink providers key")]
    NotAProvidersKey,
    #[error(transparent)]
    InvalidOffer(#[from] OfferError),
    #[error("offer of {offer} stored under the key of {key}")]
    WrongKey { key: ProviderId, offer: ProviderId },
}

impl Refusal {
    /// A short stable label, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotAnOfferKey => "not_offer_key",
            Refusal::NotAProvidersKey => "not_providers_key",
            Refusal::WrongKey { .. } => "wrong_key",
            Refusal::InvalidOffer(e) => match e {
                OfferError::Envelope(envelope::Error::Codec(CodecError::TooLarge { .. })) => {
                    "too_large"
                }
                OfferError::Envelope(envelope::Error::Codec(_)) => "malformed",
                OfferError::UnsupportedVersion(_) => "version",
                OfferError::Envelope(envelope::Error::BadSignature) => "bad_signature",
                OfferError::Envelope(envelope::Error::WrongSigner { .. }) => "signer_not_provider",
                OfferError::InvalidField(_) => "invalid_field",
                OfferError::Expired { .. } => "expired",
                OfferError::TooFarAhead { .. } | OfferError::IssuedInFuture { .. } => "time",
                OfferError::Stale { .. } => "stale_seq",
                _ => "other",
            },
        }
    }
}

/// Checks a record `value` offered for `key`, given what is stored under it now.
///
/// Returns the verified offer, to be stored with [`expiry`].
pub fn admit_value(
    key: &[u8],
    value: &[u8],
    stored: Option<&[u8]>,
    now: UnixTime,
) -> Result<SignedOffer, Refusal> {
    let Some(DhtKey::Offer(key_provider)) = DhtKey::parse(key) else {
        return Err(Refusal::NotAnOfferKey);
    };
    let offer = SignedOffer::decode(value, now)?;
    if offer.provider() != key_provider {
        return Err(Refusal::WrongKey {
            key: key_provider,
            offer: offer.provider(),
        });
    }
    // An expired or otherwise unreadable stored copy is replaced by any valid offer.
    if let Some(current) = stored.and_then(|bytes| SignedOffer::decode(bytes, now).ok()) {
        offer.may_replace(&current)?;
    }
    Ok(offer)
}

/// Checks the key of an inbound provider record.
pub fn admit_provider(key: &[u8]) -> Result<(), Refusal> {
    match DhtKey::parse(key) {
        Some(DhtKey::Providers { .. } | DhtKey::RegionProviders { .. }) => Ok(()),
        _ => Err(Refusal::NotAProvidersKey),
    }
}

/// When the stored copy of `offer` should be dropped: at the offer's own expiry.
pub fn expiry(offer: &SignedOffer, now: UnixTime, now_instant: Instant) -> Instant {
    let remaining = offer.offer().expires_at.since(now);
    now_instant + remaining.min(Duration::from_secs(24 * 3600))
}

/// What each peer has stored here, so that no peer can fill the store: an entry (a record
/// key, or a provider record's key and provider) belongs to the peer that last stored it.
///
/// Entries are not told when the store drops them (expiry, eviction): each check asks
/// `still_stored`, and stale entries are swept when a peer reaches its limit or the whole
/// table grows past `max_entries`.
#[derive(Debug)]
pub struct PeerQuota<K> {
    limit: usize,
    max_entries: usize,
    owners: HashMap<K, PeerId>,
    counts: HashMap<PeerId, usize>,
}

impl<K: Hash + Eq + Clone> PeerQuota<K> {
    /// At most `limit` entries per peer; sweeps stale entries past `max_entries` in all.
    pub fn new(limit: usize, max_entries: usize) -> PeerQuota<K> {
        PeerQuota {
            limit,
            max_entries: max_entries.max(limit),
            owners: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// Whether `peer` may store `entry` (replacing its own entry always may).
    pub fn admits(&mut self, peer: PeerId, entry: &K, still_stored: impl Fn(&K) -> bool) -> bool {
        if self.owners.get(entry) == Some(&peer) || self.count(&peer) < self.limit {
            return true;
        }
        self.sweep(Some(peer), still_stored);
        self.count(&peer) < self.limit
    }

    /// Notes that `peer` stored `entry`.
    pub fn stored(&mut self, peer: PeerId, entry: K, still_stored: impl Fn(&K) -> bool) {
        if let Some(previous) = self.owners.insert(entry, peer) {
            self.release(previous);
        }
        *self.counts.entry(peer).or_default() += 1;
        if self.owners.len() > self.max_entries {
            self.sweep(None, still_stored);
        }
    }

    /// Entries `peer` holds here.
    pub fn count(&self, peer: &PeerId) -> usize {
        self.counts.get(peer).copied().unwrap_or(0)
    }

    /// Forgets the entries (of `only`, or of everyone) that the store no longer holds.
    fn sweep(&mut self, only: Option<PeerId>, still_stored: impl Fn(&K) -> bool) {
        let mut released = Vec::new();
        self.owners.retain(|entry, owner| {
            let keep = only.is_some_and(|p| p != *owner) || still_stored(entry);
            if !keep {
                released.push(*owner);
            }
            keep
        });
        for owner in released {
            self.release(owner);
        }
    }

    fn release(&mut self, peer: PeerId) {
        if let Some(count) = self.counts.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_protocol::SecretKey;
    use interlink_protocol::offer::{
        ClaimedQuality, Codec, Mos, OFFER_FORMAT_VERSION, OfferStatus, Permille, Route,
        ServiceOffer, Tariff,
    };
    use interlink_protocol::{Currency, Prefix, ServiceKind};

    const NOW: UnixTime = UnixTime(10_000);

    fn offer(key: &SecretKey, seq: u64) -> SignedOffer {
        let offer = ServiceOffer {
            version: OFFER_FORMAT_VERSION,
            provider: key.provider_id(),
            seq,
            issued_at: NOW,
            expires_at: NOW.plus(Duration::from_secs(600)),
            status: OfferStatus::Available,
            kind: ServiceKind::WEBRTC_TO_PSTN,
            display_name: "G".into(),
            region: String::new(),
            routes: vec![Route {
                prefix: Prefix::new("44").unwrap(),
                tariff: Tariff {
                    currency: Currency::new("GBP").unwrap(),
                    setup_fee: 0,
                    per_minute: 2,
                    billing_increment_secs: 60,
                },
            }],
            codecs: vec![Codec::Pcmu],
            quality: ClaimedQuality {
                answer_seizure_ratio: Permille(500),
                post_dial_delay_ms: 1000,
                mos: Mos(400),
            },
            capacity: 1,
            addresses: vec![],
            conference: None,
        };
        SignedOffer::sign(offer, key).unwrap()
    }

    #[test]
    fn a_valid_newer_offer_under_its_own_key_is_admitted() {
        let key = SecretKey::from_seed(&[1; 32]);
        let dht_key = DhtKey::Offer(key.provider_id()).to_bytes();
        let first = offer(&key, 1);
        let second = offer(&key, 2);
        assert!(admit_value(&dht_key, first.as_bytes(), None, NOW).is_ok());
        assert!(admit_value(&dht_key, second.as_bytes(), Some(first.as_bytes()), NOW).is_ok());
        let stale = admit_value(&dht_key, first.as_bytes(), Some(second.as_bytes()), NOW);
        assert_eq!(stale.map(|_| ()).map_err(|e| e.label()), Err("stale_seq"));
    }

    #[test]
    fn offers_under_foreign_keys_are_refused() {
        let key = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let offer = offer(&key, 1);
        let foreign = DhtKey::Offer(other.provider_id()).to_bytes();
        assert!(matches!(
            admit_value(&foreign, offer.as_bytes(), None, NOW),
            Err(Refusal::WrongKey { .. })
        ));
        assert_eq!(
            admit_value(b"/ipfs/x", offer.as_bytes(), None, NOW).err(),
            Some(Refusal::NotAnOfferKey)
        );
        assert_eq!(admit_provider(b"/ipfs/x"), Err(Refusal::NotAProvidersKey));
        assert_eq!(
            admit_provider(b"/interlink/providers/1/webrtc-pstn/44"),
            Ok(())
        );
    }

    #[test]
    fn a_peer_stores_no_more_than_its_quota_until_its_entries_go() {
        let mut quota = PeerQuota::new(2, 100);
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let mut store = std::collections::HashSet::new();
        for key in [1u8, 2] {
            assert!(quota.admits(flooder, &key, |k| store.contains(k)));
            store.insert(key);
            quota.stored(flooder, key, |k| store.contains(k));
        }
        assert!(!quota.admits(flooder, &3, |k| store.contains(k)));
        assert!(
            quota.admits(flooder, &1, |k| store.contains(k)),
            "replacing its own entry"
        );
        assert!(quota.admits(honest, &3, |k| store.contains(k)));
        quota.stored(honest, 1, |k| store.contains(k));
        assert_eq!(
            (quota.count(&flooder), quota.count(&honest)),
            (1, 1),
            "an entry belongs to whoever stored it last"
        );
        store.remove(&2);
        store.insert(3);
        quota.stored(flooder, 3, |k| store.contains(k));
        assert!(
            quota.admits(flooder, &4, |k| store.contains(k)),
            "at its limit, its expired entry is swept and no longer counts"
        );
        assert_eq!(quota.count(&flooder), 1);
        store.insert(4);
        quota.stored(flooder, 4, |k| store.contains(k));
        assert!(!quota.admits(flooder, &5, |k| store.contains(k)));
    }

    #[test]
    fn an_expired_stored_copy_gives_way() {
        let key = SecretKey::from_seed(&[1; 32]);
        let dht_key = DhtKey::Offer(key.provider_id()).to_bytes();
        let old = offer(&key, 5);
        let later = NOW.plus(Duration::from_secs(601));
        let mut fresh = old.offer().clone();
        fresh.seq = 1;
        fresh.issued_at = later;
        fresh.expires_at = later.plus(Duration::from_secs(600));
        let fresh = SignedOffer::sign(fresh, &key).unwrap();
        assert!(admit_value(&dht_key, fresh.as_bytes(), Some(old.as_bytes()), later).is_ok());
    }
}
