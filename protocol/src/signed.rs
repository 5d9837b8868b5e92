//! Signed offers: the only form in which an offer is stored, forwarded or ranked.
//!
//! Wire format: the [`envelope`], whose body is the bincode encoding of a
//! [`ServiceOffer`] signed under [`SIGNING_DOMAIN`]. A [`SignedOffer`] exists only if it
//! was made with the provider's secret key ([`SignedOffer::sign`]) or has passed every
//! check of [`SignedOffer::decode`]: size, encoding, version, signature, signer =
//! provider, field bounds and the expiry window. Its fields cannot be changed; a new offer
//! needs the key again and, to replace the old one, a higher `seq`.

use std::time::Duration;

use crate::codec::{self, Limit};
use crate::envelope::{self, HEADER_LEN, Signable, Signed};
use crate::identity::ProviderId;
use crate::offer::{FieldError, OFFER_FORMAT_VERSION, ServiceOffer};
use crate::time::UnixTime;

/// Largest signed offer accepted from the network or produced by [`SignedOffer::sign`].
pub const MAX_SIGNED_OFFER_BYTES: usize = 16 * 1024;
/// An offer may not expire more than this long after `now`.
pub const MAX_OFFER_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How far in the future an offer's issue time may lie, for clocks that disagree.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Prepended to the body before signing, so an offer signature means nothing elsewhere.
pub const SIGNING_DOMAIN: &[u8] = b"interlink/offer/v1\0";

const MAX_BODY_BYTES: usize = MAX_SIGNED_OFFER_BYTES - HEADER_LEN;

/// A verified, signed [`ServiceOffer`] and its exact wire bytes.
pub type SignedOffer = Signed<ServiceOffer>;

/// Why bytes are not a valid signed offer, or an offer does not replace another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// Size, encoding, signature, or a signer that is not the offer's provider.
    #[error(transparent)]
    Envelope(#[from] envelope::Error),
    #[error(
        "offer format version {0} is not supported (this node reads version {OFFER_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    #[error("the offer expired at {expires_at} (now {now})")]
    Expired { expires_at: UnixTime, now: UnixTime },
    #[error("the offer expires at {expires_at}, more than 24 h after now ({now})")]
    TooFarAhead { expires_at: UnixTime, now: UnixTime },
    #[error("the offer was issued at {issued_at}, in the future (now {now})")]
    IssuedInFuture { issued_at: UnixTime, now: UnixTime },
    #[error("seq {seq} does not replace the current offer's seq {current}")]
    Stale { seq: u64, current: u64 },
    #[error("the offer is from {incoming}, not {current}")]
    OtherProvider {
        incoming: ProviderId,
        current: ProviderId,
    },
}

impl Signable for ServiceOffer {
    const DOMAIN: &'static [u8] = SIGNING_DOMAIN;
    const MAX_BYTES: usize = MAX_SIGNED_OFFER_BYTES;
    type BodyLimit = Limit<MAX_BODY_BYTES>;
    /// `now`, for the validity window.
    type Context = UnixTime;
    type Error = OfferError;

    fn signer(&self) -> ProviderId {
        self.provider
    }

    /// The version comes first in the body: an offer of another version is refused
    /// before its body is read by this version's rules.
    fn check_body(body: &[u8]) -> Result<(), OfferError> {
        let version: u16 = codec::decode_prefix(body).map_err(envelope::Error::from)?;
        check_version(version)
    }

    fn check_to_sign(&self) -> Result<(), OfferError> {
        check_version(self.version)?;
        Ok(self.check_fields()?)
    }

    fn check_received(&self, &now: &UnixTime) -> Result<(), OfferError> {
        self.check_fields()?;
        check_validity_window(self, now)
    }
}

impl SignedOffer {
    /// Reads and verifies a signed offer received at `now`.
    pub fn decode(bytes: &[u8], now: UnixTime) -> Result<SignedOffer, OfferError> {
        Signed::open(bytes, &now)
    }

    /// The offer.
    pub fn offer(&self) -> &ServiceOffer {
        self.value()
    }

    /// The provider that signed it.
    pub fn provider(&self) -> ProviderId {
        self.offer().provider
    }

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.offer().seq
    }

    /// Whether the offer has expired at `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.offer().expires_at
    }

    /// Checks that this offer may replace `current`: same provider, higher `seq`.
    pub fn may_replace(&self, current: &SignedOffer) -> Result<(), OfferError> {
        if self.provider() != current.provider() {
            return Err(OfferError::OtherProvider {
                incoming: self.provider(),
                current: current.provider(),
            });
        }
        if self.seq() <= current.seq() {
            return Err(OfferError::Stale {
                seq: self.seq(),
                current: current.seq(),
            });
        }
        Ok(())
    }
}

fn check_version(version: u16) -> Result<(), OfferError> {
    if version == OFFER_FORMAT_VERSION {
        Ok(())
    } else {
        Err(OfferError::UnsupportedVersion(version))
    }
}

fn check_validity_window(offer: &ServiceOffer, now: UnixTime) -> Result<(), OfferError> {
    let ServiceOffer {
        issued_at,
        expires_at,
        ..
    } = *offer;
    if now >= expires_at {
        return Err(OfferError::Expired { expires_at, now });
    }
    if expires_at > now.plus(MAX_OFFER_LIFETIME) {
        return Err(OfferError::TooFarAhead { expires_at, now });
    }
    if issued_at > now.plus(MAX_CLOCK_SKEW) {
        return Err(OfferError::IssuedInFuture { issued_at, now });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::codec::CodecError;
    use crate::destination::Prefix;
    use crate::offer::tests::{route, sample_offer};

    const NOW: UnixTime = UnixTime(2000);

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn signed(key: &SecretKey) -> SignedOffer {
        SignedOffer::sign(
            sample_offer(key, vec![route("44", 3), route("447", 2)]),
            key,
        )
        .unwrap()
    }

    #[test]
    fn sign_then_decode_round_trips() {
        let key = key(1);
        let offer = signed(&key);
        let decoded = SignedOffer::decode(offer.as_bytes(), NOW).unwrap();
        assert_eq!(decoded, offer);
        assert_eq!(decoded.provider(), key.provider_id());
    }

    #[test]
    fn only_the_providers_key_can_sign() {
        let offer = sample_offer(&key(1), vec![route("44", 3)]);
        let result = SignedOffer::sign(offer, &key(2));
        assert!(matches!(
            result,
            Err(OfferError::Envelope(envelope::Error::WrongSigner { .. }))
        ));
    }

    #[test]
    fn a_flipped_bit_breaks_the_signature() {
        let offer = signed(&key(1));
        let name_at = offer
            .as_bytes()
            .windows(5)
            .position(|w| w == b"Inter")
            .unwrap_or_else(|| panic!("name not found"));
        let mut bytes = offer.as_bytes().to_vec();
        bytes[name_at] ^= 0x01;
        assert_eq!(
            SignedOffer::decode(&bytes, NOW),
            Err(OfferError::Envelope(envelope::Error::BadSignature))
        );
        let mut bytes = offer.as_bytes().to_vec();
        bytes[40] ^= 0x80; // inside the signature
        assert_eq!(
            SignedOffer::decode(&bytes, NOW),
            Err(OfferError::Envelope(envelope::Error::BadSignature))
        );
    }

    #[test]
    fn another_key_is_not_the_provider() {
        let offer = sample_offer(&key(1), vec![route("44", 3)]);
        let forged = SignedOffer::sign_unchecked(offer, &key(2)).unwrap();
        assert!(matches!(
            SignedOffer::decode(forged.as_bytes(), NOW),
            Err(OfferError::Envelope(envelope::Error::WrongSigner { signer, .. }))
                if signer == key(2).provider_id()
        ));
    }

    #[test]
    fn truncated_and_oversize_input_is_refused() {
        let bytes = signed(&key(1)).as_bytes().to_vec();
        for len in [0, 10, HEADER_LEN, HEADER_LEN + 5, bytes.len() - 1] {
            assert_eq!(
                SignedOffer::decode(&bytes[..len], NOW),
                Err(OfferError::Envelope(CodecError::Truncated.into())),
                "{len} bytes"
            );
        }
        let mut oversize = bytes.clone();
        oversize.resize(MAX_SIGNED_OFFER_BYTES + 1, 0);
        assert!(matches!(
            SignedOffer::decode(&oversize, NOW),
            Err(OfferError::Envelope(envelope::Error::Codec(
                CodecError::TooLarge { .. }
            )))
        ));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(
            SignedOffer::decode(&trailing, NOW),
            Err(OfferError::Envelope(envelope::Error::Codec(
                CodecError::Malformed(_)
            )))
        ));
    }

    #[test]
    fn the_validity_window_is_enforced() {
        let key = key(1);
        let offer = signed(&key);
        let expires = offer.offer().expires_at;
        assert!(matches!(
            SignedOffer::decode(offer.as_bytes(), expires),
            Err(OfferError::Expired { .. })
        ));

        let mut far = sample_offer(&key, vec![route("44", 3)]);
        far.expires_at = NOW.plus(MAX_OFFER_LIFETIME + Duration::from_secs(1));
        let far = SignedOffer::sign(far, &key).unwrap();
        assert!(matches!(
            SignedOffer::decode(far.as_bytes(), NOW),
            Err(OfferError::TooFarAhead { .. })
        ));

        let mut future = sample_offer(&key, vec![route("44", 3)]);
        future.issued_at = NOW.plus(MAX_CLOCK_SKEW + Duration::from_secs(1));
        future.expires_at = future.issued_at.plus(Duration::from_secs(60));
        let future = SignedOffer::sign(future, &key).unwrap();
        assert!(matches!(
            SignedOffer::decode(future.as_bytes(), NOW),
            Err(OfferError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn a_malformed_prefix_is_refused_even_when_signed() {
        let key = key(1);
        let mut offer = sample_offer(&key, vec![route("44", 3)]);
        offer.routes[0].prefix = Prefix::unchecked("44a");
        assert!(matches!(
            SignedOffer::sign(offer.clone(), &key),
            Err(OfferError::InvalidField(_))
        ));
        let signed = SignedOffer::sign_unchecked(offer, &key).unwrap();
        assert!(matches!(
            SignedOffer::decode(signed.as_bytes(), NOW),
            Err(OfferError::InvalidField(FieldError { field, .. })) if field == "routes[0].prefix"
        ));
    }

    #[test]
    fn an_unknown_version_is_refused_before_parsing() {
        let key = key(1);
        let mut offer = sample_offer(&key, vec![route("44", 3)]);
        offer.version = OFFER_FORMAT_VERSION + 1;
        let signed = SignedOffer::sign_unchecked(offer, &key).unwrap();
        assert_eq!(
            SignedOffer::decode(signed.as_bytes(), NOW),
            Err(OfferError::UnsupportedVersion(OFFER_FORMAT_VERSION + 1))
        );
    }

    #[test]
    fn an_older_seq_never_replaces_a_newer_one() {
        let key = key(1);
        let mut newer = sample_offer(&key, vec![route("44", 3)]);
        newer.seq = 10;
        let newer = SignedOffer::sign(newer.clone(), &key).unwrap();
        let mut older = newer.offer().clone();
        older.seq = 9;
        let older = SignedOffer::sign(older, &key).unwrap();
        assert_eq!(
            older.may_replace(&newer),
            Err(OfferError::Stale {
                seq: 9,
                current: 10
            })
        );
        assert_eq!(
            newer.may_replace(&newer),
            Err(OfferError::Stale {
                seq: 10,
                current: 10
            })
        );
        assert_eq!(newer.may_replace(&older), Ok(()));

        let withdrawal = SignedOffer::sign(newer.offer().withdrawal(NOW), &key).unwrap();
        assert_eq!(withdrawal.may_replace(&newer), Ok(()));
        let other = signed(&SecretKey::from_seed(&[3; 32]));
        assert!(matches!(
            other.may_replace(&newer),
            Err(OfferError::OtherProvider { .. })
        ));
    }

    /// An offer signed by the hand-written opener this envelope replaced: signatures made
    /// by earlier builds verify, and signing the same offer again gives the same bytes.
    #[test]
    fn an_offer_signed_by_an_earlier_build_still_verifies() {
        let bytes = hex("\
            ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c72a6ca1c0910d33a\
            fb414e9485e55c65359eabe245d0e059107dcbbe3f1fa04c2c385f3781b442c5227a6b5b078d719a\
            d3f574bc17527d521557b531324bd50302ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b\
            92421eea691446d22c2afc00d2496bfc10e0496b0000000205496e7465720765752d776573740202\
            343447425001033c0334343747425001023c0100fb5802fbdc05fb9a0164010804cb007107060fa1\
            00");
        let offer = SignedOffer::decode(&bytes, UnixTime(1_800_000_000)).unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        assert_eq!(offer.provider(), key.provider_id());
        let again = SignedOffer::sign(offer.offer().clone(), &key).unwrap();
        assert_eq!(again.as_bytes(), &bytes[..]);
    }

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
