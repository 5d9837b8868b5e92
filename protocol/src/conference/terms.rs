//! What a conference bridge sells: rooms, their size and their prices, and the region it
//! runs in.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::offer::{
    FieldError, MAX_BILLING_INCREMENT_SECS, MAX_PRICE_MINOR_UNITS, MAX_REGION_BYTES,
};

/// Most participants a bridge may offer per room.
pub const MAX_PARTICIPANTS_PER_ROOM: u32 = 1000;
/// Most rooms a bridge may offer at once.
pub const MAX_ROOMS: u32 = 100_000;

/// A region name as used in DHT keys: 1 to 32 bytes of lowercase ASCII letters, digits
/// and inner hyphens, such as `eu-west`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region {
    bytes: [u8; MAX_REGION_BYTES],
    len: u8,
}

/// The error for a region name that cannot be a DHT key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a region name (1 to 32 lowercase letters, digits and inner hyphens, e.g. eu-west)"
)]
pub struct InvalidRegion(pub String);

impl Region {
    /// The region with this name, if it is one.
    pub fn new(name: &str) -> Result<Region, InvalidRegion> {
        let invalid = || InvalidRegion(name.chars().take(64).collect());
        let ok_byte = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if name.is_empty()
            || name.len() > MAX_REGION_BYTES
            || !name.bytes().all(|b| ok_byte(&b))
            || name.starts_with('-')
            || name.ends_with('-')
        {
            return Err(invalid());
        }
        let mut bytes = [0u8; MAX_REGION_BYTES];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        let len = u8::try_from(name.len()).map_err(|_| invalid())?;
        Ok(Region { bytes, len })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl TryFrom<String> for Region {
    type Error = InvalidRegion;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Region::new(&name)
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.as_str().to_owned()
    }
}

impl std::str::FromStr for Region {
    type Err = InvalidRegion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::new(s)
    }
}

/// A conference bridge's prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConferenceTariff {
    pub currency: Currency,
    /// Charged once per room, in minor units.
    pub per_room: u64,
    /// Charged per minute each participant is in the room, in minor units.
    pub per_participant_minute: u64,
    /// Each participant's time is billed in whole multiples of this many seconds.
    pub billing_increment_secs: u32,
}

impl ConferenceTariff {
    /// A participant's billed time: rounded up to whole seconds, then to whole increments.
    pub fn billed_seconds(&self, present: Duration) -> u64 {
        let seconds = present.as_millis().div_ceil(1000);
        let increment = u128::from(self.billing_increment_secs.max(1));
        u64::try_from(seconds.div_ceil(increment) * increment).unwrap_or(u64::MAX)
    }

    /// What a room costs whose participants were billed `participant_seconds` in all: the
    /// room price plus the per-minute price pro rata, rounded up to a whole minor unit.
    pub fn charge(&self, participant_seconds: u64) -> Money {
        let usage = (u128::from(self.per_participant_minute) * u128::from(participant_seconds))
            .div_ceil(60);
        let total = u128::from(self.per_room) + usage;
        Money::new(self.currency, u64::try_from(total).unwrap_or(u64::MAX))
    }

    /// The price per participant-minute as money.
    pub fn per_participant_minute_money(&self) -> Money {
        Money::new(self.currency, self.per_participant_minute)
    }

    /// The room price as money.
    pub fn per_room_money(&self) -> Money {
        Money::new(self.currency, self.per_room)
    }

    pub(crate) fn check(&self, field: &str) -> Result<(), FieldError> {
        let fail = |name: &str, reason: String| {
            Err(FieldError {
                field: format!("{field}.{name}"),
                reason,
            })
        };
        if self.currency.exponent().is_none() {
            return fail(
                "currency",
                format!("`{}` is not an ISO 4217 code", self.currency),
            );
        }
        if self.per_room > MAX_PRICE_MINOR_UNITS
            || self.per_participant_minute > MAX_PRICE_MINOR_UNITS
        {
            return fail(
                "per_participant_minute",
                format!("a price over {MAX_PRICE_MINOR_UNITS} minor units"),
            );
        }
        if !(1..=MAX_BILLING_INCREMENT_SECS).contains(&self.billing_increment_secs) {
            return fail(
                "billing_increment_secs",
                format!("not between 1 and {MAX_BILLING_INCREMENT_SECS}"),
            );
        }
        Ok(())
    }
}

/// What a conference offer sells, beside the offer's codecs, region and quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConferenceTerms {
    /// Rooms the bridge runs at once.
    pub rooms: u32,
    /// Largest room the bridge mixes.
    pub participants_per_room: u32,
    pub tariff: ConferenceTariff,
}

impl ConferenceTerms {
    /// Checks the bounds of this module; the error names the field.
    pub fn check(&self) -> Result<(), FieldError> {
        let fail = |field: &str, reason: String| {
            Err(FieldError {
                field: format!("conference.{field}"),
                reason,
            })
        };
        if !(1..=MAX_ROOMS).contains(&self.rooms) {
            return fail("rooms", format!("not between 1 and {MAX_ROOMS}"));
        }
        if !(2..=MAX_PARTICIPANTS_PER_ROOM).contains(&self.participants_per_room) {
            return fail(
                "participants_per_room",
                format!("not between 2 and {MAX_PARTICIPANTS_PER_ROOM}"),
            );
        }
        self.tariff.check("conference.tariff")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tariff() -> ConferenceTariff {
        ConferenceTariff {
            currency: Currency::new("EUR").unwrap(),
            per_room: 10,
            per_participant_minute: 3,
            billing_increment_secs: 60,
        }
    }

    #[test]
    fn region_names_are_checked() {
        for good in ["eu-west", "us1", "a"] {
            assert_eq!(Region::new(good).map(|r| r.to_string()), Ok(good.into()));
        }
        for bad in ["", "EU", "eu west", "-eu", "eu-", "é", &"x".repeat(33)] {
            assert!(Region::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_room_costs_its_price_plus_participant_minutes_rounded_up() {
        let tariff = tariff();
        assert_eq!(tariff.billed_seconds(Duration::from_millis(1)), 60);
        assert_eq!(tariff.billed_seconds(Duration::from_secs(61)), 120);
        assert_eq!(tariff.charge(0).minor_units, 10);
        // Three participants of 60, 120 and 60 billed seconds: 4 minutes at 3.
        assert_eq!(tariff.charge(240).minor_units, 22);
        let per_second = ConferenceTariff {
            billing_increment_secs: 1,
            ..tariff
        };
        // 3 per minute for 90 s is 4.5, rounded up.
        assert_eq!(per_second.charge(90).minor_units, 15);
    }

    #[test]
    fn terms_bounds_name_the_field() {
        let good = ConferenceTerms {
            rooms: 10,
            participants_per_room: 8,
            tariff: tariff(),
        };
        assert_eq!(good.check(), Ok(()));
        let field = |terms: ConferenceTerms| terms.check().err().map(|e| e.field);
        assert_eq!(
            field(ConferenceTerms { rooms: 0, ..good }).as_deref(),
            Some("conference.rooms")
        );
        assert_eq!(
            field(ConferenceTerms {
                participants_per_room: 1,
                ..good
            })
            .as_deref(),
            Some("conference.participants_per_room")
        );
        let mut bad = good;
        bad.tariff.billing_increment_secs = 0;
        assert_eq!(
            field(bad).as_deref(),
            Some("conference.tariff.billing_increment_secs")
        );
    }
}
