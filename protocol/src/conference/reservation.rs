//! The reservation an organiser signs, and the join token the bridge gives back.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::call::OfferRef;
use crate::codec::Limit;
use crate::conference::ConferenceError;
use crate::conference::terms::{ConferenceTariff, MAX_PARTICIPANTS_PER_ROOM};
use crate::envelope::{self, Signable, Signed};
use crate::identity::ProviderId;
use crate::time::Timestamp;

/// Largest signed reservation or join token.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// A reservation sent further than this from the bridge's `now` is refused as a replay.
pub const MAX_RESERVATION_SKEW: Duration = Duration::from_secs(300);
/// Longest a room may be reserved for.
pub const MAX_ROOM_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Prepended to a reservation's body before the organiser signs it.
pub const RESERVATION_DOMAIN: &[u8] = b"interlink/conference-reservation/v1\0";
/// Prepended to a join token's body before the bridge signs it.
pub const JOIN_TOKEN_DOMAIN: &[u8] = b"interlink/conference-join-token/v1\0";

/// A room's identity, chosen at random by the organiser.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomId([u8; 16]);

impl RoomId {
    /// The room id with these bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> RoomId {
        RoomId(bytes)
    }

    /// The 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({self})")
    }
}

/// What the organiser asks of the bridge, and the terms it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub room_id: RoomId,
    /// The bridge's offer the room is reserved under.
    pub offer: OfferRef,
    /// Who pays (and countersigns the receipt).
    pub organiser: ProviderId,
    /// The price accepted: the offer's conference tariff as the organiser read it.
    pub tariff: ConferenceTariff,
    /// The most participants in the room at once.
    pub max_participants: u32,
    /// How long the room may stay open.
    pub lifetime_secs: u64,
    pub sent_at: Timestamp,
}

impl Reservation {
    fn check_fields(&self) -> Result<(), ConferenceError> {
        let invalid = |field, reason: String| Err(ConferenceError::InvalidField { field, reason });
        if !(1..=MAX_PARTICIPANTS_PER_ROOM).contains(&self.max_participants) {
            return invalid(
                "max_participants",
                format!("not between 1 and {MAX_PARTICIPANTS_PER_ROOM}"),
            );
        }
        if self.lifetime_secs == 0 || self.lifetime_secs > MAX_ROOM_LIFETIME.as_secs() {
            return invalid(
                "lifetime_secs",
                format!("not between 1 and {}", MAX_ROOM_LIFETIME.as_secs()),
            );
        }
        if let Err(e) = self.tariff.check("tariff") {
            return invalid("tariff", e.to_string());
        }
        Ok(())
    }

    /// When the room's join token expires.
    pub fn expires_at(&self) -> Timestamp {
        self.sent_at.plus(Duration::from_secs(self.lifetime_secs))
    }
}

/// A reservation signed by its organiser; it exists only verified.
pub type SignedReservation = Signed<Reservation>;

impl Signable for Reservation {
    const DOMAIN: &'static [u8] = RESERVATION_DOMAIN;
    type BodyLimit = Limit<MAX_TOKEN_BYTES>;
    /// The bridge's `now`, against replays.
    type Context = Timestamp;
    type Error = ConferenceError;

    fn signer(&self) -> ProviderId {
        self.organiser
    }

    fn check_to_sign(&self) -> Result<(), ConferenceError> {
        self.check_fields()
    }

    fn check_received(&self, &now: &Timestamp) -> Result<(), ConferenceError> {
        self.check_fields()?;
        let sent_at = self.sent_at;
        let skew = if sent_at > now {
            sent_at.since(now)
        } else {
            now.since(sent_at)
        };
        if skew > MAX_RESERVATION_SKEW {
            return Err(ConferenceError::Stale { sent_at, now });
        }
        Ok(())
    }
}

impl SignedReservation {
    /// Reads and verifies a reservation received at `now`.
    pub fn decode(bytes: &[u8], now: Timestamp) -> Result<SignedReservation, ConferenceError> {
        Signed::open(bytes, &now)
    }

    /// The reservation.
    pub fn reservation(&self) -> &Reservation {
        self.value()
    }
}

/// What lets a participant into a room: issued by the bridge to the organiser, who hands
/// it on. Whoever holds it may join until the room is full, ended or expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub room_id: RoomId,
    /// The bridge that signs the token and runs the room.
    pub bridge: ProviderId,
    pub organiser: ProviderId,
    pub max_participants: u32,
    pub expires_at: Timestamp,
}

/// A join token signed by its bridge; it exists only verified.
pub type SignedJoinToken = Signed<JoinToken>;

impl Signable for JoinToken {
    const DOMAIN: &'static [u8] = JOIN_TOKEN_DOMAIN;
    type BodyLimit = Limit<MAX_TOKEN_BYTES>;
    /// The bridge the token must be of, and `now`.
    type Context = (ProviderId, Timestamp);
    type Error = ConferenceError;

    fn signer(&self) -> ProviderId {
        self.bridge
    }

    fn check_received(
        &self,
        &(bridge, now): &(ProviderId, Timestamp),
    ) -> Result<(), ConferenceError> {
        if self.bridge != bridge {
            return Err(envelope::Error::WrongSigner {
                signer: self.bridge,
                expected: bridge,
            }
            .into());
        }
        if now >= self.expires_at {
            return Err(ConferenceError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

impl SignedJoinToken {
    /// Reads and verifies a token of `bridge` at `now`.
    pub fn decode(
        bytes: &[u8],
        bridge: ProviderId,
        now: Timestamp,
    ) -> Result<SignedJoinToken, ConferenceError> {
        Signed::open(bytes, &(bridge, now))
    }

    /// The token.
    pub fn token(&self) -> &JoinToken {
        self.value()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::CodecError;
    use crate::identity::SecretKey;
    use crate::money::Currency;

    pub(crate) const NOW: Timestamp = Timestamp(1_000_000);

    pub(crate) fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    pub(crate) fn tariff() -> ConferenceTariff {
        ConferenceTariff {
            currency: Currency::new("EUR").unwrap(),
            per_room: 10,
            per_participant_minute: 3,
            billing_increment_secs: 60,
        }
    }

    /// Organiser key 1 reserves four places on bridge key 2's offer.
    pub(crate) fn reservation() -> Reservation {
        Reservation {
            room_id: RoomId::from_bytes([7; 16]),
            offer: OfferRef {
                provider: key(2).provider_id(),
                seq: 3,
            },
            organiser: key(1).provider_id(),
            tariff: tariff(),
            max_participants: 4,
            lifetime_secs: 3600,
            sent_at: NOW,
        }
    }

    fn token() -> JoinToken {
        JoinToken {
            room_id: RoomId::from_bytes([7; 16]),
            bridge: key(2).provider_id(),
            organiser: key(1).provider_id(),
            max_participants: 4,
            expires_at: NOW.plus(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn a_reservation_round_trips_and_only_its_organiser_signs_it() {
        let signed = SignedReservation::sign(reservation(), &key(1)).unwrap();
        assert_eq!(
            SignedReservation::decode(signed.as_bytes(), NOW).map(|s| s.reservation().clone()),
            Ok(reservation())
        );
        assert!(matches!(
            SignedReservation::sign(reservation(), &key(3)),
            Err(ConferenceError::Envelope(
                envelope::Error::WrongSigner { .. }
            ))
        ));
    }

    #[test]
    fn a_tampered_stale_or_oversized_reservation_is_refused() {
        let signed = SignedReservation::sign(reservation(), &key(1)).unwrap();
        let mut bytes = signed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(SignedReservation::decode(&bytes, NOW).is_err());
        // Raise the size the organiser signed for: the signature no longer holds.
        let mut bigger = reservation();
        bigger.max_participants = 40;
        let forged = SignedReservation::sign(bigger, &key(1)).unwrap();
        let mut spliced = signed.as_bytes()[..96].to_vec();
        spliced.extend_from_slice(&forged.as_bytes()[96..]);
        assert_eq!(
            SignedReservation::decode(&spliced, NOW),
            Err(ConferenceError::Envelope(envelope::Error::BadSignature))
        );
        assert!(matches!(
            SignedReservation::decode(signed.as_bytes(), NOW.plus(Duration::from_secs(301))),
            Err(ConferenceError::Stale { .. })
        ));
        assert!(matches!(
            SignedReservation::decode(&vec![0; MAX_TOKEN_BYTES + 1], NOW),
            Err(ConferenceError::Envelope(envelope::Error::Codec(
                CodecError::TooLarge { .. }
            )))
        ));
        let mut empty = reservation();
        empty.max_participants = 0;
        assert!(matches!(
            SignedReservation::sign(empty, &key(1)),
            Err(ConferenceError::InvalidField {
                field: "max_participants",
                ..
            })
        ));
    }

    #[test]
    fn a_join_token_is_valid_only_from_its_bridge_and_until_it_expires() {
        let bridge = key(2).provider_id();
        let signed = SignedJoinToken::sign(token(), &key(2)).unwrap();
        assert_eq!(
            SignedJoinToken::decode(signed.as_bytes(), bridge, NOW).map(|t| t.token().clone()),
            Ok(token())
        );
        // Another bridge's token, or one the organiser made itself, is not this bridge's.
        let other = SignedJoinToken::sign(
            JoinToken {
                bridge: key(1).provider_id(),
                ..token()
            },
            &key(1),
        )
        .unwrap();
        assert!(matches!(
            SignedJoinToken::decode(other.as_bytes(), bridge, NOW),
            Err(ConferenceError::Envelope(
                envelope::Error::WrongSigner { .. }
            ))
        ));
        assert!(matches!(
            SignedJoinToken::decode(
                signed.as_bytes(),
                bridge,
                NOW.plus(Duration::from_secs(3600))
            ),
            Err(ConferenceError::Expired { .. })
        ));
        let mut bytes = signed.as_bytes().to_vec();
        bytes[100] ^= 1;
        assert!(SignedJoinToken::decode(&bytes, bridge, NOW).is_err());
        assert_eq!(
            SignedJoinToken::decode(&bytes[..50], bridge, NOW),
            Err(ConferenceError::Envelope(CodecError::Truncated.into()))
        );
    }
}
