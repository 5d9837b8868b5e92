//! Destinations and route prefixes in E.164.
//!
//! A caller may write a number the way people and SIP devices do (`tel:+44 7700 900123`,
//! `00447700900123`, `sip:+447700900123@example.net;user=phone`); everything else in
//! Interlink sees the normalised form, an [`E164`] of 1 to 15 digits that starts with an
//! assigned country code. A [`Prefix`] is the start of such a number, at least as long as
//! its country code, and covers every number that begins with it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;

/// The most digits an E.164 number may have (ITU-T E.164 §6.2.1).
pub const MAX_DIGITS: usize = 15;

/// The fewest digits after the country code we accept in a destination.
const MIN_SUBSCRIBER_DIGITS: usize = 2;

/// Characters people put between digits to make a number readable.
const VISUAL_SEPARATORS: &[char] = &[' ', '-', '.', '(', ')', '\u{a0}'];

/// Why a destination or prefix is not a valid E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    #[error("the number is empty")]
    Empty,
    #[error("unsupported URI scheme `{0}:` (use tel:, sip: or a plain +number)")]
    UnsupportedScheme(String),
    #[error("the SIP URI has no user part holding a number (expected sip:+NUMBER@host)")]
    MissingUserPart,
    #[error("not in international format: start with + or 00 and the country code")]
    NotInternational,
    #[error("unexpected character {0:?} in the number")]
    InvalidCharacter(char),
    #[error("{0} digits is more than the 15 an E.164 number may have")]
    TooLong(usize),
    #[error("{0} digits is too short to be a subscriber number")]
    TooShort(usize),
    #[error("+{0} does not start with an assigned country code")]
    UnknownCountryCode(String),
}

/// A destination in normalised E.164 form: digits only, country code first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164 {
    digits: String,
    country_code: CountryCode,
}

impl E164 {
    /// Parses and normalises a number written as `+CC…`, `00CC…`, `tel:+CC…` or
    /// `sip:+CC…@host`, with optional spaces, dashes, dots and brackets between digits.
    pub fn parse(input: &str) -> Result<E164, NumberError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(NumberError::Empty);
        }
        let number = strip_uri(input)?;
        let international = if let Some(rest) = number.strip_prefix('+') {
            rest
        } else if let Some(rest) = number.strip_prefix("00") {
            rest
        } else {
            return Err(NumberError::NotInternational);
        };
        // "+44 (0)20 …" shows the national trunk prefix, which is not dialled from abroad.
        let digits = collect_digits(&international.replace("(0)", ""))?;
        let country_code = country_code_of(&digits)?;
        if digits.len() < country_code.digit_count() + MIN_SUBSCRIBER_DIGITS {
            return Err(NumberError::TooShort(digits.len()));
        }
        Ok(E164 {
            digits,
            country_code,
        })
    }

    /// The digits, country code first, without `+`.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The country calling code the number starts with.
    pub fn country_code(&self) -> CountryCode {
        self.country_code
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.digits)
    }
}

impl FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl TryFrom<String> for E164 {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        E164::parse(&s)
    }
}

impl From<E164> for String {
    fn from(number: E164) -> String {
        number.to_string()
    }
}

/// The start of a range of E.164 numbers, such as `44` (the UK) or `447` (UK mobiles).
///
/// Decoding a prefix from the wire does not check it; [`crate::SignedOffer`] does, so
/// every prefix reachable from a verified offer is valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix from its digits, with or without a leading `+`.
    pub fn new(input: &str) -> Result<Prefix, NumberError> {
        let input = input.trim();
        let digits = input.strip_prefix('+').unwrap_or(input);
        if digits.is_empty() {
            return Err(NumberError::Empty);
        }
        let prefix = Prefix(collect_digits(digits)?);
        prefix.check()?;
        Ok(prefix)
    }

    /// A prefix as it might arrive from the wire, unchecked: for tests of refusal.
    #[cfg(test)]
    pub(crate) fn unchecked(digits: &str) -> Prefix {
        Prefix(digits.to_owned())
    }

    /// Checks what [`Prefix::new`] checks, for a prefix that came from the wire.
    pub(crate) fn check(&self) -> Result<(), NumberError> {
        if self.0.is_empty() {
            return Err(NumberError::Empty);
        }
        if let Some(c) = self.0.chars().find(|c| !c.is_ascii_digit()) {
            return Err(NumberError::InvalidCharacter(c));
        }
        if self.0.len() > MAX_DIGITS {
            return Err(NumberError::TooLong(self.0.len()));
        }
        country_code_of(&self.0).map(|_| ())
    }

    /// The digits of the prefix, without `+`.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The number of digits; a longer matching prefix is a more specific route.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a checked prefix.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The country code the prefix lies in.
    pub fn country_code(&self) -> Option<CountryCode> {
        CountryCode::of(&self.0)
    }

    /// Whether `number` begins with this prefix.
    pub fn covers(&self, number: &E164) -> bool {
        number.digits().starts_with(&self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl FromStr for Prefix {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefix::new(s)
    }
}

/// The number inside a `tel:` or `sip:` URI, or the input itself when it has no scheme.
fn strip_uri(input: &str) -> Result<&str, NumberError> {
    let Some((scheme, rest)) = input.split_once(':') else {
        return Ok(input);
    };
    let number = match scheme.to_ascii_lowercase().as_str() {
        // RFC 3966: parameters such as `;phone-context=` follow the number.
        "tel" => rest,
        // RFC 3261: the number is the user part, before `@`.
        "sip" | "sips" => rest.split_once('@').ok_or(NumberError::MissingUserPart)?.0,
        _ => return Err(NumberError::UnsupportedScheme(scheme.to_owned())),
    };
    Ok(number.split(';').next().unwrap_or_default().trim())
}

fn collect_digits(written: &str) -> Result<String, NumberError> {
    let mut digits = String::with_capacity(MAX_DIGITS);
    for c in written.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !VISUAL_SEPARATORS.contains(&c) {
            return Err(NumberError::InvalidCharacter(c));
        }
        if digits.len() > MAX_DIGITS {
            let total = written.chars().filter(char::is_ascii_digit).count();
            return Err(NumberError::TooLong(total));
        }
    }
    if digits.is_empty() {
        return Err(NumberError::Empty);
    }
    Ok(digits)
}

fn country_code_of(digits: &str) -> Result<CountryCode, NumberError> {
    CountryCode::of(digits).ok_or_else(|| {
        let shown = digits.get(..3).unwrap_or(digits);
        NumberError::UnknownCountryCode(shown.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_ways_people_and_devices_write_numbers() {
        let cases = [
            ("+447700900123", "+447700900123"),
            ("tel:+44 7700 900123", "+447700900123"),
            (
                "tel:+44-7700-900123;phone-context=example.net",
                "+447700900123",
            ),
            ("TEL:+447700900123", "+447700900123"),
            ("00447700900123", "+447700900123"),
            ("+44 (0)7700 900123", "+447700900123"),
            ("sip:+447700900123@gw.example.net", "+447700900123"),
            (
                "sip:+447700900123@gw.example.net;user=phone",
                "+447700900123",
            ),
            ("sips:+33142685300@example.fr", "+33142685300"),
            ("sip:0033142685300@example.fr", "+33142685300"),
            ("  +1 (202) 555-0123  ", "+12025550123"),
            ("+1.202.555.0123", "+12025550123"),
            ("+353 86 123 4567", "+353861234567"),
            ("+290 6123", "+2906123"),
        ];
        for (input, expected) in cases {
            let parsed = E164::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.to_string(), expected, "normalising {input:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_international_number() {
        let cases = [
            ("", NumberError::Empty),
            ("   ", NumberError::Empty),
            ("07700900123", NumberError::NotInternational),
            ("tel:7700900123", NumberError::NotInternational),
            (
                "mailto:bob@example.net",
                NumberError::UnsupportedScheme("mailto".into()),
            ),
            ("sip:gw.example.net", NumberError::MissingUserPart),
            ("+44 7700 9OO123", NumberError::InvalidCharacter('O')),
            ("+4477009001234567", NumberError::TooLong(16)),
            ("+44", NumberError::TooShort(2)),
            ("+2101234567", NumberError::UnknownCountryCode("210".into())),
            ("+", NumberError::Empty),
        ];
        for (input, expected) in cases {
            assert_eq!(E164::parse(input), Err(expected), "parsing {input:?}");
        }
    }

    #[test]
    fn prefixes_cover_the_numbers_that_start_with_them() {
        let number = E164::parse("+447700900123").unwrap();
        for covering in ["44", "+447", "4477", "447700900123"] {
            let prefix = Prefix::new(covering).unwrap_or_else(|e| panic!("{covering}: {e}"));
            assert!(prefix.covers(&number), "{covering} covers {number}");
        }
        for other in ["33", "4420", "4477009001234"] {
            let prefix = Prefix::new(other).unwrap_or_else(|e| panic!("{other}: {e}"));
            assert!(!prefix.covers(&number), "{other} does not cover {number}");
        }
    }

    #[test]
    fn a_prefix_must_hold_a_whole_country_code() {
        assert_eq!(
            Prefix::new("4"),
            Err(NumberError::UnknownCountryCode("4".into()))
        );
        assert_eq!(Prefix::new("+"), Err(NumberError::Empty));
        assert_eq!(Prefix::new("44x"), Err(NumberError::InvalidCharacter('x')));
        assert_eq!(
            Prefix::new("1234567890123456"),
            Err(NumberError::TooLong(16))
        );
        let raw = Prefix("4a".into());
        assert_eq!(raw.check(), Err(NumberError::InvalidCharacter('a')));
    }

    #[test]
    fn serde_round_trip_validates() {
        let number = E164::parse("+12025550123").unwrap();
        let text = String::from(number.clone());
        assert_eq!(E164::try_from(text), Ok(number));
        assert!(E164::try_from("12025550123".to_owned()).is_err());
    }
}
