//! The room receipt: who was in a room, for how long, and what the room cost.
//!
//! The bridge computes a [`RoomReceipt`] from the reservation and the participants' joins
//! and leaves when the room ends, signs it ([`SignedRoomReceipt`]) and sends it to the
//! organiser. The organiser checks it ([`RoomReceipt::check`]) against the reservation it
//! signed and the joins and leaves it saw, and countersigns ([`SettledRoomReceipt`]):
//! `organiser ‖ organiser's signature ‖ bridge-signed receipt`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::call::OfferRef;
use crate::codec::Limit;
use crate::conference::ConferenceError;
use crate::conference::reservation::{Reservation, RoomId};
use crate::conference::terms::ConferenceTariff;
use crate::envelope::{Countersignable, Countersigned, HEADER_LEN, Signable, Signed};
use crate::identity::ProviderId;
use crate::money::Money;
use crate::time::Timestamp;

/// Most attendances (joins) one receipt lists; a room refuses joins beyond it.
pub const MAX_ATTENDANCES: usize = 512;
/// Largest room receipt, signed or settled.
pub const MAX_ROOM_RECEIPT_BYTES: usize = 48 * 1024;
/// Prepended to a room receipt's body before the bridge signs it.
pub const ROOM_RECEIPT_DOMAIN: &[u8] = b"interlink/room-receipt/v1\0";
/// Prepended to the bridge-signed receipt before the organiser countersigns it.
pub const ROOM_COUNTERSIGN_DOMAIN: &[u8] = b"interlink/room-receipt-countersign/v1\0";
/// How much longer than the organiser saw it a participant may be billed: the join and
/// leave events reach the organiser a network hop after the bridge saw them.
pub const ATTENDANCE_TOLERANCE: Duration = Duration::from_secs(2);

/// One participant's stay in the room, from join to leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendance {
    pub participant: ProviderId,
    pub joined_at: Timestamp,
    pub left_at: Timestamp,
    /// The stay rounded up to the tariff's billing increment.
    pub billed_seconds: u64,
}

impl Attendance {
    /// How long the participant was in the room.
    pub fn duration(&self) -> Duration {
        self.left_at.since(self.joined_at)
    }
}

/// What a room cost, as the bridge reckons it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomReceipt {
    pub room_id: RoomId,
    /// The offer the room was reserved under; its provider is the bridge that signs.
    pub offer: OfferRef,
    pub organiser: ProviderId,
    /// The accepted tariff.
    pub tariff: ConferenceTariff,
    pub opened_at: Timestamp,
    pub closed_at: Timestamp,
    pub attendances: Vec<Attendance>,
    /// The sum of the attendances' billed seconds.
    pub participant_seconds: u64,
    pub amount: Money,
}

/// Why an organiser refuses a room receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RoomReceiptDispute {
    #[error("the receipt cannot be read or its signature does not verify")]
    Unreadable,
    #[error("the receipt is for another room, offer, organiser or tariff")]
    WrongRoom,
    #[error("the receipt lists {claimed} stays of a participant the organiser saw {seen} times")]
    UnknownAttendance { claimed: usize, seen: usize },
    #[error("a stay of {claimed_ms} ms billed, but the organiser saw {observed_ms} ms")]
    DurationTooLong { claimed_ms: u64, observed_ms: u64 },
    #[error("a stay lies outside the room's open time or ends before it starts")]
    OutOfRoom,
    #[error("{claimed} billed seconds, the tariff gives {expected}")]
    WrongBilledSeconds { claimed: u64, expected: u64 },
    #[error("an amount of {claimed} minor units, the tariff gives {expected}")]
    WrongAmount { claimed: u64, expected: u64 },
}

/// A stay as the organiser saw it: told of the join, then of the leave.
pub type Observed = (ProviderId, Timestamp, Timestamp);

impl RoomReceipt {
    /// The receipt of the room `reservation` reserved, open from `opened_at` to
    /// `closed_at`, with these stays (participant, join, leave), in the order given.
    pub fn for_room(
        reservation: &Reservation,
        opened_at: Timestamp,
        closed_at: Timestamp,
        stays: &[Observed],
    ) -> RoomReceipt {
        let tariff = reservation.tariff;
        let attendances: Vec<Attendance> = stays
            .iter()
            .map(|&(participant, joined_at, left_at)| Attendance {
                participant,
                joined_at,
                left_at,
                billed_seconds: tariff.billed_seconds(left_at.since(joined_at)),
            })
            .collect();
        let participant_seconds = attendances
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(a.billed_seconds));
        RoomReceipt {
            room_id: reservation.room_id,
            offer: reservation.offer,
            organiser: reservation.organiser,
            tariff,
            opened_at,
            closed_at,
            attendances,
            participant_seconds,
            amount: tariff.charge(participant_seconds),
        }
    }

    /// Checks the receipt against the reservation the organiser signed and the stays it
    /// saw (participant, when it was told of the join, when of the leave).
    pub fn check(
        &self,
        reservation: &Reservation,
        observed: &[Observed],
    ) -> Result<(), RoomReceiptDispute> {
        if self.room_id != reservation.room_id
            || self.offer != reservation.offer
            || self.organiser != reservation.organiser
            || self.tariff != reservation.tariff
        {
            return Err(RoomReceiptDispute::WrongRoom);
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut claimed: BTreeMap<ProviderId, Vec<Duration>> = BTreeMap::new();
        for a in &self.attendances {
            if a.left_at < a.joined_at || a.joined_at < self.opened_at || a.left_at > self.closed_at
            {
                return Err(RoomReceiptDispute::OutOfRoom);
            }
            let expected = self.tariff.billed_seconds(a.duration());
            if a.billed_seconds != expected {
                return Err(RoomReceiptDispute::WrongBilledSeconds {
                    claimed: a.billed_seconds,
                    expected,
                });
            }
            claimed.entry(a.participant).or_default().push(a.duration());
        }
        let mut seen: BTreeMap<ProviderId, Vec<Duration>> = BTreeMap::new();
        for &(participant, joined, left) in observed {
            seen.entry(participant)
                .or_default()
                .push(left.since(joined));
        }
        for (participant, mut stays) in claimed {
            let mut saw = seen.remove(&participant).unwrap_or_default();
            if stays.len() != saw.len() {
                return Err(RoomReceiptDispute::UnknownAttendance {
                    claimed: stays.len(),
                    seen: saw.len(),
                });
            }
            // Longest against longest: a fair pairing whatever the order of the stays.
            stays.sort();
            saw.sort();
            for (claim, observed) in stays.into_iter().zip(saw) {
                if claim > observed + ATTENDANCE_TOLERANCE {
                    return Err(RoomReceiptDispute::DurationTooLong {
                        claimed_ms: millis(claim),
                        observed_ms: millis(observed),
                    });
                }
            }
        }
        let total = self
            .attendances
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(a.billed_seconds));
        if self.participant_seconds != total {
            return Err(RoomReceiptDispute::WrongBilledSeconds {
                claimed: self.participant_seconds,
                expected: total,
            });
        }
        let amount = self.tariff.charge(total);
        if self.amount != amount {
            return Err(RoomReceiptDispute::WrongAmount {
                claimed: self.amount.minor_units,
                expected: amount.minor_units,
            });
        }
        Ok(())
    }
}

/// A room receipt signed by the bridge (the offer's provider); it exists only verified.
pub type SignedRoomReceipt = Signed<RoomReceipt>;
/// A room receipt signed by the bridge and countersigned by the organiser.
pub type SettledRoomReceipt = Countersigned<RoomReceipt>;

impl Signable for RoomReceipt {
    const DOMAIN: &'static [u8] = ROOM_RECEIPT_DOMAIN;
    type BodyLimit = Limit<MAX_ROOM_RECEIPT_BYTES>;
    type Context = ();
    type Error = ConferenceError;

    fn signer(&self) -> ProviderId {
        self.offer.provider
    }

    fn check_to_sign(&self) -> Result<(), ConferenceError> {
        if self.attendances.len() > MAX_ATTENDANCES {
            return Err(ConferenceError::InvalidField {
                field: "attendances",
                reason: format!(
                    "{} stays, at most {MAX_ATTENDANCES}",
                    self.attendances.len()
                ),
            });
        }
        Ok(())
    }
}

impl Countersignable for RoomReceipt {
    const COUNTERSIGN_DOMAIN: &'static [u8] = ROOM_COUNTERSIGN_DOMAIN;
    const MAX_COUNTERSIGNED_BYTES: usize = MAX_ROOM_RECEIPT_BYTES + HEADER_LEN;

    fn countersigner(&self) -> ProviderId {
        self.organiser
    }
}

impl SignedRoomReceipt {
    /// Reads and verifies a bridge-signed room receipt.
    pub fn decode(bytes: &[u8]) -> Result<SignedRoomReceipt, ConferenceError> {
        Signed::open(bytes, &())
    }

    /// The receipt.
    pub fn receipt(&self) -> &RoomReceipt {
        self.value()
    }
}

impl SettledRoomReceipt {
    /// Reads and verifies both signatures of a settled room receipt.
    pub fn decode(bytes: &[u8]) -> Result<SettledRoomReceipt, ConferenceError> {
        Countersigned::open(bytes, &())
    }

    /// The receipt.
    pub fn receipt(&self) -> &RoomReceipt {
        self.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::reservation::tests::{NOW, key, reservation};

    fn at(secs: u64) -> Timestamp {
        NOW.plus(Duration::from_secs(secs))
    }

    /// Participants 3 and 4 from the start for 90 s and 30 s, then 5 for 150 s.
    fn stays() -> Vec<Observed> {
        vec![
            (key(3).provider_id(), at(0), at(90)),
            (key(4).provider_id(), at(0), at(30)),
            (key(5).provider_id(), at(30), at(180)),
        ]
    }

    #[test]
    fn the_amount_follows_from_the_stays_and_the_tariff() {
        let receipt = RoomReceipt::for_room(&reservation(), at(0), at(180), &stays());
        let billed: Vec<u64> = receipt
            .attendances
            .iter()
            .map(|a| a.billed_seconds)
            .collect();
        // 60-second increments: 90 s is two minutes, 30 s one, 150 s three.
        assert_eq!(billed, vec![120, 60, 180]);
        assert_eq!(receipt.participant_seconds, 360);
        // 10 for the room and 6 participant-minutes at 3.
        assert_eq!(receipt.amount.minor_units, 28);
        assert_eq!(receipt.check(&reservation(), &stays()), Ok(()));
    }

    #[test]
    fn an_organiser_refuses_what_it_did_not_see_or_agree_to() {
        let good = RoomReceipt::for_room(&reservation(), at(0), at(180), &stays());
        let mut inflated = stays();
        inflated[1].2 = at(40);
        let longer = RoomReceipt::for_room(&reservation(), at(0), at(180), &inflated);
        assert!(matches!(
            longer.check(&reservation(), &stays()),
            Err(RoomReceiptDispute::DurationTooLong { .. })
        ));
        let mut extra = stays();
        extra.push((key(6).provider_id(), at(0), at(10)));
        let ghost = RoomReceipt::for_room(&reservation(), at(0), at(180), &extra);
        assert_eq!(
            ghost.check(&reservation(), &stays()),
            Err(RoomReceiptDispute::UnknownAttendance {
                claimed: 1,
                seen: 0
            })
        );
        let mut overcharged = good.clone();
        overcharged.amount.minor_units += 1;
        assert_eq!(
            overcharged.check(&reservation(), &stays()),
            Err(RoomReceiptDispute::WrongAmount {
                claimed: 29,
                expected: 28
            })
        );
        let mut pricier = good.clone();
        pricier.tariff.per_participant_minute = 4;
        assert_eq!(
            pricier.check(&reservation(), &stays()),
            Err(RoomReceiptDispute::WrongRoom)
        );
        let mut padded = good;
        padded.attendances[0].billed_seconds = 180;
        assert!(matches!(
            padded.check(&reservation(), &stays()),
            Err(RoomReceiptDispute::WrongBilledSeconds { .. })
        ));
    }

    #[test]
    fn signatures_of_bridge_and_organiser_settle_it() {
        let receipt = RoomReceipt::for_room(&reservation(), at(0), at(180), &stays());
        // The bridge is key 2, the organiser key 1.
        assert!(SignedRoomReceipt::sign(receipt.clone(), &key(1)).is_err());
        let signed = SignedRoomReceipt::sign(receipt.clone(), &key(2)).unwrap();
        assert_eq!(
            SignedRoomReceipt::decode(signed.as_bytes()).map(|s| s.receipt().clone()),
            Ok(receipt.clone())
        );
        assert!(signed.countersign(&key(2)).is_err());
        let settled = signed.countersign(&key(1)).unwrap();
        let decoded = SettledRoomReceipt::decode(settled.as_bytes()).unwrap();
        assert_eq!(decoded.receipt(), &receipt);

        let mut tampered = settled.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(SettledRoomReceipt::decode(&tampered).is_err());
        let mut resigned = settled.as_bytes().to_vec();
        resigned[40] ^= 1;
        assert_eq!(
            SettledRoomReceipt::decode(&resigned),
            Err(ConferenceError::Envelope(
                crate::envelope::Error::BadSignature
            ))
        );
    }
}
