//! Money as an integer count of hundred-millionths of the account's currency unit.
//!
//! Famulor reports balances with eight decimals (`100.67447094`); storing that many
//! fractional digits in an `i64` keeps every sum exact and still allows ±92 billion units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An exact amount of money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Fractional digits kept.
pub const MONEY_DECIMALS: u32 = 8;
/// Sub-units in one currency unit.
pub const SUBUNITS_PER_UNIT: i64 = 10_i64.pow(MONEY_DECIMALS);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// From a count of sub-units (1e-8 of a currency unit).
    pub const fn from_subunits(subunits: i64) -> Self {
        Money(subunits)
    }

    /// The count of sub-units.
    pub const fn subunits(self) -> i64 {
        self.0
    }

    /// The sum, held at the bounds.
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }
}

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMoneyError(&'static str);

impl fmt::Display for ParseMoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseMoneyError {}

impl FromStr for Money {
    type Err = ParseMoneyError;

    /// Parses a plain decimal such as `10`, `10.5` or `-0.00000001`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = ParseMoneyError("expected a decimal amount such as 10.50");
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(invalid);
        }
        if digits.ends_with('.') {
            return Err(invalid);
        }
        if fraction.len() > MONEY_DECIMALS as usize {
            return Err(ParseMoneyError("at most 8 decimal places"));
        }
        let too_large = ParseMoneyError("amount too large");
        let whole: i64 = whole.parse().map_err(|_| too_large.clone())?;
        let padded = format!("{fraction:0<8}");
        let fraction: i64 = padded.parse().map_err(|_| invalid)?;
        let subunits = whole
            .checked_mul(SUBUNITS_PER_UNIT)
            .and_then(|w| w.checked_add(fraction))
            .ok_or(too_large)?;
        Ok(Money(if negative { -subunits } else { subunits }))
    }
}

impl fmt::Display for Money {
    /// Plain decimal with trailing zeros trimmed: `10.5`, `0.00000001`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = SUBUNITS_PER_UNIT as u64;
        let (whole, fraction) = (abs / unit, abs % unit);
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let fraction = format!("{fraction:08}");
        write!(f, "{sign}{whole}.{}", fraction.trim_end_matches('0'))
    }
}

impl Serialize for Money {
    /// A JSON number with the exact decimal digits (never a binary float).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// A JSON number, as [`Money`] serializes.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some(
                "An exact amount in currency units, with at most 8 decimals (e.g. `100.67447094`).",
            ))
            .examples([serde_json::json!(10.5)])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Money {}

impl<'de> Deserialize<'de> for Money {
    /// Accepts a JSON number or a decimal string.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, subunits, printed) in [
            ("10.50", 1_050_000_000, "10.5"),
            ("0.00000001", 1, "0.00000001"),
            ("3", 300_000_000, "3"),
            ("-1.25", -125_000_000, "-1.25"),
            ("100.67447094", 10_067_447_094, "100.67447094"),
        ] {
            let money: Money = text.parse().unwrap();
            assert_eq!(money.subunits(), subunits, "{text}");
            assert_eq!(money.to_string(), printed);
        }
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for text in [
            "",
            ".5",
            "1.",
            "1e3",
            "abc",
            "1.000000001",
            "99999999999999999999",
            "1,5",
        ] {
            assert!(text.parse::<Money>().is_err(), "{text}");
        }
    }

    #[test]
    fn serialises_as_an_exact_json_number() {
        let money: Money = "100.67447094".parse().unwrap();
        let json = serde_json::to_string(&serde_json::json!({ "total_balance": money })).unwrap();
        assert_eq!(json, r#"{"total_balance":100.67447094}"#);
        let back: Money = serde_json::from_str("100.67447094").unwrap();
        assert_eq!(back, money);
        let from_string: Money = serde_json::from_str("\"0.5\"").unwrap();
        assert_eq!(from_string.subunits(), 50_000_000);
    }
}
