//! Money: ISO 4217 currencies and amounts in integer minor units.
//!
//! Amounts are never floats. An amount is a count of the currency's minor unit (pence for
//! GBP, cents for EUR, yen for JPY); the ISO 4217 exponent says how many decimals a person
//! sees. Charges are rounded up to a whole minor unit, in the seller's favour, as carriers
//! bill.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic currency code, such as `GBP`.
///
/// Decoding a currency from the wire does not check it; [`crate::SignedOffer`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency([u8; 3]);

/// Why a currency or an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    #[error("`{0}` is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("`{0}` is not an amount (expected for example `0.05 GBP`)")]
    InvalidAmount(String),
    #[error("{currency} has {exponent} decimals; `{amount}` has more")]
    TooManyDecimals {
        amount: String,
        currency: Currency,
        exponent: u32,
    },
    #[error("the amount is missing its currency (write for example `0.05 GBP`)")]
    MissingCurrency,
    #[error("the amount is too large")]
    TooLarge,
}

impl Currency {
    /// The currency with this code, if ISO 4217 lists it as active.
    pub fn new(code: &str) -> Result<Currency, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.to_owned());
        let bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| unknown())?;
        let currency = Currency(bytes);
        currency.exponent().ok_or_else(unknown)?;
        Ok(currency)
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Decimal places of the minor unit (2 for GBP, 0 for JPY, 3 for KWD); `None` if
    /// the code is not an active ISO 4217 currency.
    pub fn exponent(&self) -> Option<u32> {
        EXPONENTS
            .binary_search_by_key(&self.0, |&(code, _)| code)
            .ok()
            .map(|index| EXPONENTS[index].1)
    }

    pub(crate) fn is_known(&self) -> bool {
        self.exponent().is_some()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::new(&s.trim().to_ascii_uppercase())
    }
}

/// An amount of money: a whole number of the currency's minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Money {
    pub currency: Currency,
    pub minor_units: u64,
}

impl Money {
    /// `minor_units` of `currency`.
    pub fn new(currency: Currency, minor_units: u64) -> Money {
        Money {
            currency,
            minor_units,
        }
    }

    /// Reads `0.05 GBP`, `GBP 0.05` or `0.05GBP`; `default_currency` is used for a bare
    /// number.
    pub fn parse(input: &str, default_currency: Option<Currency>) -> Result<Money, MoneyError> {
        let input = input.trim();
        let letters = |c: char| c.is_ascii_alphabetic();
        let (number, currency) = if input.ends_with(letters) {
            let split = input.trim_end_matches(letters).len();
            (&input[..split], Some(input[split..].parse::<Currency>()?))
        } else if input.starts_with(letters) {
            let split = input.len() - input.trim_start_matches(letters).len();
            (&input[split..], Some(input[..split].parse::<Currency>()?))
        } else {
            (input, None)
        };
        let currency = currency
            .or(default_currency)
            .ok_or(MoneyError::MissingCurrency)?;
        let minor_units = parse_decimal(number.trim(), currency)?;
        Ok(Money {
            currency,
            minor_units,
        })
    }
}

impl Money {
    /// The amount in major units with the currency's decimals, without the code: `0.05`.
    pub fn decimal(&self) -> String {
        let exponent = self.currency.exponent().unwrap_or(2);
        let scale = 10u64.pow(exponent);
        let (whole, fraction) = (self.minor_units / scale, self.minor_units % scale);
        if exponent == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{fraction:0width$}", width = exponent as usize)
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s, None)
    }
}

fn parse_decimal(number: &str, currency: Currency) -> Result<u64, MoneyError> {
    let invalid = || MoneyError::InvalidAmount(number.to_owned());
    let exponent = currency.exponent().ok_or_else(invalid)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(invalid());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > exponent as usize {
        return Err(MoneyError::TooManyDecimals {
            amount: number.to_owned(),
            currency,
            exponent,
        });
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| MoneyError::TooLarge)?
    };
    let padded = format!("{fraction:0<width$}", width = exponent as usize);
    let fraction: u64 = if padded.is_empty() {
        0
    } else {
        padded.parse().map_err(|_| invalid())?
    };
    whole
        .checked_mul(10u64.pow(exponent))
        .and_then(|w| w.checked_add(fraction))
        .ok_or(MoneyError::TooLarge)
}

/// Active ISO 4217 codes and their minor-unit exponents, sorted by code.
#[rustfmt::skip]
const EXPONENTS: &[([u8; 3], u32)] = &[
    (*b"AED", 2), (*b"AFN", 2), (*b"ALL", 2), (*b"AMD", 2), (*b"ANG", 2), (*b"AOA", 2),
    (*b"ARS", 2), (*b"AUD", 2), (*b"AWG", 2), (*b"AZN", 2), (*b"BAM", 2), (*b"BBD", 2),
    (*b"BDT", 2), (*b"BGN", 2), (*b"BHD", 3), (*b"BIF", 0), (*b"BMD", 2), (*b"BND", 2),
    (*b"BOB", 2), (*b"BOV", 2), (*b"BRL", 2), (*b"BSD", 2), (*b"BTN", 2), (*b"BWP", 2),
    (*b"BYN", 2), (*b"BZD", 2), (*b"CAD", 2), (*b"CDF", 2), (*b"CHE", 2), (*b"CHF", 2),
    (*b"CHW", 2), (*b"CLF", 4), (*b"CLP", 0), (*b"CNY", 2), (*b"COP", 2), (*b"COU", 2),
    (*b"CRC", 2), (*b"CUP", 2), (*b"CVE", 2), (*b"CZK", 2), (*b"DJF", 0), (*b"DKK", 2),
    (*b"DOP", 2), (*b"DZD", 2), (*b"EGP", 2), (*b"ERN", 2), (*b"ETB", 2), (*b"EUR", 2),
    (*b"FJD", 2), (*b"FKP", 2), (*b"GBP", 2), (*b"GEL", 2), (*b"GHS", 2), (*b"GIP", 2),
    (*b"GMD", 2), (*b"GNF", 0), (*b"GTQ", 2), (*b"GYD", 2), (*b"HKD", 2), (*b"HNL", 2),
    (*b"HTG", 2), (*b"HUF", 2), (*b"IDR", 2), (*b"ILS", 2), (*b"INR", 2), (*b"IQD", 3),
    (*b"IRR", 2), (*b"ISK", 0), (*b"JMD", 2), (*b"JOD", 3), (*b"JPY", 0), (*b"KES", 2),
    (*b"KGS", 2), (*b"KHR", 2), (*b"KMF", 0), (*b"KPW", 2), (*b"KRW", 0), (*b"KWD", 3),
    (*b"KYD", 2), (*b"KZT", 2), (*b"LAK", 2), (*b"LBP", 2), (*b"LKR", 2), (*b"LRD", 2),
    (*b"LSL", 2), (*b"LYD", 3), (*b"MAD", 2), (*b"MDL", 2), (*b"MGA", 2), (*b"MKD", 2),
    (*b"MMK", 2), (*b"MNT", 2), (*b"MOP", 2), (*b"MRU", 2), (*b"MUR", 2), (*b"MVR", 2),
    (*b"MWK", 2), (*b"MXN", 2), (*b"MXV", 2), (*b"MYR", 2), (*b"MZN", 2), (*b"NAD", 2),
    (*b"NGN", 2), (*b"NIO", 2), (*b"NOK", 2), (*b"NPR", 2), (*b"NZD", 2), (*b"OMR", 3),
    (*b"PAB", 2), (*b"PEN", 2), (*b"PGK", 2), (*b"PHP", 2), (*b"PKR", 2), (*b"PLN", 2),
    (*b"PYG", 0), (*b"QAR", 2), (*b"RON", 2), (*b"RSD", 2), (*b"RUB", 2), (*b"RWF", 0),
    (*b"SAR", 2), (*b"SBD", 2), (*b"SCR", 2), (*b"SDG", 2), (*b"SEK", 2), (*b"SGD", 2),
    (*b"SHP", 2), (*b"SLE", 2), (*b"SOS", 2), (*b"SRD", 2), (*b"SSP", 2), (*b"STN", 2),
    (*b"SVC", 2), (*b"SYP", 2), (*b"SZL", 2), (*b"THB", 2), (*b"TJS", 2), (*b"TMT", 2),
    (*b"TND", 3), (*b"TOP", 2), (*b"TRY", 2), (*b"TTD", 2), (*b"TWD", 2), (*b"TZS", 2),
    (*b"UAH", 2), (*b"UGX", 0), (*b"USD", 2), (*b"USN", 2), (*b"UYI", 0), (*b"UYU", 2),
    (*b"UYW", 4), (*b"UZS", 2), (*b"VED", 2), (*b"VES", 2), (*b"VND", 0), (*b"VUV", 0),
    (*b"WST", 2), (*b"XAF", 0), (*b"XCD", 2), (*b"XCG", 2), (*b"XOF", 0), (*b"XPF", 0),
    (*b"YER", 2), (*b"ZAR", 2), (*b"ZMW", 2), (*b"ZWG", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn gbp() -> Currency {
        Currency::new("GBP").unwrap()
    }

    #[test]
    fn currency_table_is_sorted() {
        assert!(EXPONENTS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn currencies_are_checked_against_iso_4217() {
        assert_eq!(gbp().exponent(), Some(2));
        assert_eq!("jpy".parse::<Currency>().map(|c| c.exponent()), Ok(Some(0)));
        assert_eq!(Currency::new("KWD").map(|c| c.exponent()), Ok(Some(3)));
        for bad in ["XYZ", "GB", "GBPP", "gbp", ""] {
            assert!(
                Currency::new(bad).is_err(),
                "{bad:?} is not a currency code"
            );
        }
    }

    #[test]
    fn amounts_parse_and_print_in_minor_units() {
        let cases = [
            ("0.05 GBP", 5, "0.05 GBP"),
            ("GBP 1.5", 150, "1.50 GBP"),
            ("12GBP", 1200, "12.00 GBP"),
            (".07 gbp", 7, "0.07 GBP"),
            ("3 JPY", 3, "3 JPY"),
            ("0.125 KWD", 125, "0.125 KWD"),
            ("0.500 GBP", 50, "0.50 GBP"),
        ];
        for (input, minor, shown) in cases {
            let money = Money::parse(input, None).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(money.minor_units, minor, "{input}");
            assert_eq!(money.to_string(), shown, "{input}");
        }
        assert_eq!(Money::parse("0.05", Some(gbp())), Ok(Money::new(gbp(), 5)));
    }

    #[test]
    fn bad_amounts_are_refused_with_a_reason() {
        assert_eq!(Money::parse("0.05", None), Err(MoneyError::MissingCurrency));
        assert!(matches!(
            Money::parse("0.055 GBP", None),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(Money::parse("1 JPY", None).is_ok());
        assert!(matches!(
            Money::parse("0.5 JPY", None),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            Money::parse("-1 GBP", None),
            Err(MoneyError::InvalidAmount(_))
        ));
        assert!(matches!(
            Money::parse("1e3 GBP", None),
            Err(MoneyError::InvalidAmount(_))
        ));
        assert!(matches!(
            Money::parse("1 XYZ", None),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Money::parse(". GBP", None),
            Err(MoneyError::InvalidAmount(_))
        ));
        assert_eq!(
            Money::parse("99999999999999999999 GBP", None),
            Err(MoneyError::TooLarge)
        );
    }
}
