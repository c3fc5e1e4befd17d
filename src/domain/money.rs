//! Exact money: CNY amounts held as integer fen, rates as `rust_decimal`.
//!
//! Every conversion from a computed decimal back to money goes through
//! [`Money::round_half_up`], the one rounding site (half-up = away from zero at
//! the midpoint, 四舍五入). Arithmetic is checked; JSON carries amounts as
//! strings with exactly two decimals.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Fen per yuan: the one place the wire unit of an amount string is declared.
const FEN_PER_YUAN: i64 = 100;

/// Longest amount string we accept; 18 characters cover 10^15 yuan, far past
/// any real payout, and keep the parser from ever overflowing an `i64`.
const MAX_AMOUNT_CHARS: usize = 18;

/// An amount of CNY, exact to the fen. May be negative (a debt, a reversal);
/// parsing from user input refuses negatives unless asked for explicitly.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    fen: i64,
}

/// Why an amount string or computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a decimal number such as \"199.00\"")]
    NotANumber,
    #[error("amount must have at most two decimals (fen)")]
    TooManyDecimals,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount must be smaller (too many digits)")]
    Overflow,
}

impl Money {
    pub const ZERO: Money = Money { fen: 0 };

    pub const fn from_fen(fen: i64) -> Money {
        Money { fen }
    }

    pub const fn fen(self) -> i64 {
        self.fen
    }

    pub const fn is_negative(self) -> bool {
        self.fen < 0
    }

    pub const fn is_zero(self) -> bool {
        self.fen == 0
    }

    /// Parses a non-negative amount with at most two decimals (`"12"`, `"12.3"`, `"12.34"`).
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let money = Money::parse_signed(text)?;
        if money.is_negative() || text.trim_start().starts_with('-') {
            return Err(MoneyError::Negative);
        }
        Ok(money)
    }

    /// Parses an amount that may carry a leading minus sign.
    pub fn parse_signed(text: &str) -> Result<Money, MoneyError> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if digits.len() > MAX_AMOUNT_CHARS {
            return Err(MoneyError::Overflow);
        }
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (digits, None),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) {
            return Err(MoneyError::NotANumber);
        }
        let fraction = fraction.unwrap_or("");
        if fraction.is_empty() && digits.ends_with('.') || !all_digits(fraction) {
            return Err(MoneyError::NotANumber);
        }
        if fraction.len() > 2 {
            return Err(MoneyError::TooManyDecimals);
        }
        let whole_fen = whole
            .parse::<i64>()
            .map_err(|_| MoneyError::Overflow)?
            .checked_mul(FEN_PER_YUAN)
            .ok_or(MoneyError::Overflow)?;
        let fraction_fen = match fraction.len() {
            0 => 0,
            1 => i64::from(fraction.as_bytes()[0] - b'0') * 10,
            _ => fraction
                .parse::<i64>()
                .map_err(|_| MoneyError::NotANumber)?,
        };
        let fen = whole_fen
            .checked_add(fraction_fen)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            fen: if negative { -fen } else { fen },
        })
    }

    /// The rounding site: an exact decimal number of yuan, rounded half-up
    /// (away from zero at .5 fen) to the fen.
    pub fn round_half_up(yuan: Decimal) -> Result<Money, MoneyError> {
        let rounded = yuan.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let fen = rounded
            .checked_mul(Decimal::from(FEN_PER_YUAN))
            .ok_or(MoneyError::Overflow)?;
        i64::try_from(fen)
            .map(Money::from_fen)
            .map_err(|_| MoneyError::Overflow)
    }

    /// This amount times a rate, exact, before any rounding.
    pub fn times(self, rate: Rate) -> Decimal {
        self.to_decimal() * rate.fraction()
    }

    /// This amount times a rate, rounded half-up to the fen.
    pub fn times_rounded(self, rate: Rate) -> Result<Money, MoneyError> {
        Money::round_half_up(self.times(rate))
    }

    /// The amount in yuan as an exact decimal with scale 2.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.fen, 2)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.fen.checked_add(other.fen).map(Money::from_fen)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.fen.checked_sub(other.fen).map(Money::from_fen)
    }

    pub fn checked_neg(self) -> Option<Money> {
        self.fen.checked_neg().map(Money::from_fen)
    }

    /// Sum of amounts, `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(amounts: I) -> Option<Money> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |total, amount| total.checked_add(amount))
    }

    pub fn min(self, other: Money) -> Money {
        if self <= other { self } else { other }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.fen < 0 { "-" } else { "" };
        let abs = self.fen.unsigned_abs();
        let per_yuan = FEN_PER_YUAN.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / per_yuan, abs % per_yuan)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Money, MoneyError> {
        Money::parse(text)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserializes only from a JSON string, never a JSON number: a float would
/// already have lost the fen before we saw it. Negative amounts are refused.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount as a string with at most two decimals, such as \"199.00\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Money, E> {
                Money::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?\d+\.\d{2}$"))
            .description(Some("CNY amount with exactly two decimals"))
            .examples([serde_json::json!("199.00")])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// A rate between 0 and 1 inclusive (0%–100%), exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate must be a percentage such as \"10%\" or \"2.5%\"")]
    NotAPercentage,
    #[error("rate must be between 0% and 100%")]
    OutOfRange,
}

impl Rate {
    pub const ZERO: Rate = Rate(Decimal::ZERO);

    /// A fraction between 0 and 1 inclusive.
    pub fn from_fraction(fraction: Decimal) -> Result<Rate, RateError> {
        if fraction < Decimal::ZERO || fraction > Decimal::ONE {
            return Err(RateError::OutOfRange);
        }
        Ok(Rate(fraction.normalize()))
    }

    /// Parses `"10%"`, `"2.5%"`, `"0%"`: the form plan files use.
    pub fn parse_percent(text: &str) -> Result<Rate, RateError> {
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or(RateError::NotAPercentage)?
            .trim();
        let percent = Decimal::from_str_exact(number).map_err(|_| RateError::NotAPercentage)?;
        Rate::from_fraction(percent / Decimal::ONE_HUNDRED)
    }

    pub fn fraction(self) -> Decimal {
        self.0
    }

    /// This rate times a multiplier, if the product is still within 0–100%.
    pub fn scaled(self, multiplier: Decimal) -> Result<Rate, RateError> {
        Rate::from_fraction(self.0 * multiplier)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * Decimal::ONE_HUNDRED).normalize())
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({self})")
    }
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(text: &str) -> Result<Rate, RateError> {
        Rate::parse_percent(text)
    }
}

/// Rates travel as percentage strings (`"10%"`) in JSON and plan files.
impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rate::parse_percent(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Rate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("rate as a percentage string"))
            .examples([serde_json::json!("10%")])
            .into()
    }
}

impl utoipa::ToSchema for Rate {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    #[test]
    fn parses_whole_one_and_two_decimal_amounts() {
        assert_eq!(Money::parse("12").unwrap().fen(), 1200);
        assert_eq!(Money::parse("12.3").unwrap().fen(), 1230);
        assert_eq!(Money::parse("12.34").unwrap().fen(), 1234);
        assert_eq!(Money::parse("0.01").unwrap().fen(), 1);
        assert_eq!(Money::parse("0").unwrap(), Money::ZERO);
    }

    #[test]
    fn refuses_more_than_two_decimals() {
        assert_eq!(Money::parse("1.234"), Err(MoneyError::TooManyDecimals));
        assert_eq!(Money::parse("1.000"), Err(MoneyError::TooManyDecimals));
    }

    #[test]
    fn refuses_negatives_unless_signed_parsing_is_asked_for() {
        assert_eq!(Money::parse("-5.00"), Err(MoneyError::Negative));
        assert_eq!(Money::parse("-0.00"), Err(MoneyError::Negative));
        assert_eq!(Money::parse_signed("-5.00").unwrap().fen(), -500);
    }

    #[test]
    fn refuses_anything_that_is_not_a_plain_decimal() {
        for bad in [
            "abc", "", " 1.00", "1.00 ", "1e3", "+1.00", "1.", ".5", "1,000.00", "0x10", "1.2.3",
            "１２", "NaN", "--1",
        ] {
            assert_eq!(Money::parse(bad), Err(MoneyError::NotANumber), "{bad:?}");
        }
    }

    #[test]
    fn refuses_amounts_that_overflow() {
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::parse("92233720368547759"), Err(MoneyError::Overflow));
        // With decimals, and at the edge of what 64 bits of fen hold: refused
        // as too large, never wrapped.
        assert_eq!(
            Money::parse("99999999999999999999.00"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse("92233720368547758.07"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse_signed("-99999999999999999999.00"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse("999999999999999.99").unwrap().fen(),
            99_999_999_999_999_999
        );
    }

    #[test]
    fn displays_exactly_two_decimals() {
        assert_eq!(Money::from_fen(0).to_string(), "0.00");
        assert_eq!(Money::from_fen(5).to_string(), "0.05");
        assert_eq!(Money::from_fen(-5).to_string(), "-0.05");
        assert_eq!(Money::from_fen(19900).to_string(), "199.00");
        assert_eq!(Money::from_fen(-123456).to_string(), "-1234.56");
    }

    #[test]
    fn json_is_a_two_decimal_string_and_numbers_are_refused() {
        let money: Money = serde_json::from_str("\"199.5\"").unwrap();
        assert_eq!(serde_json::to_string(&money).unwrap(), "\"199.50\"");
        assert!(serde_json::from_str::<Money>("199.5").is_err());
        assert!(serde_json::from_str::<Money>("\"1.234\"").is_err());
        assert!(serde_json::from_str::<Money>("\"-5.00\"").is_err());
    }

    #[test]
    fn rounds_half_up_at_the_fen_boundary() {
        assert_eq!(Money::round_half_up(d("0.004")).unwrap().fen(), 0);
        assert_eq!(Money::round_half_up(d("0.005")).unwrap().fen(), 1);
        assert_eq!(Money::round_half_up(d("0.0049999")).unwrap().fen(), 0);
        assert_eq!(Money::round_half_up(d("1.015")).unwrap().fen(), 102);
        assert_eq!(Money::round_half_up(d("1.025")).unwrap().fen(), 103);
        assert_eq!(Money::round_half_up(d("-0.005")).unwrap().fen(), -1);
        assert_eq!(Money::round_half_up(d("-0.004")).unwrap().fen(), 0);
    }

    #[test]
    fn multiplies_by_a_rate_and_rounds_half_up() {
        let rate = Rate::parse_percent("2.5%").unwrap();
        // 0.21 × 2.5% = 0.00525 → 0.01
        assert_eq!(Money::from_fen(21).times_rounded(rate).unwrap().fen(), 1);
        // 0.19 × 2.5% = 0.00475 → 0.00
        assert_eq!(Money::from_fen(19).times_rounded(rate).unwrap().fen(), 0);
        // 0.20 × 2.5% = 0.005 exactly → 0.01 (the tie goes up)
        assert_eq!(Money::from_fen(20).times_rounded(rate).unwrap().fen(), 1);
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        let max = Money::from_fen(i64::MAX);
        assert_eq!(max.checked_add(Money::from_fen(1)), None);
        assert_eq!(Money::from_fen(i64::MIN).checked_neg(), None);
        assert_eq!(
            Money::checked_sum([Money::from_fen(1), Money::from_fen(2)]),
            Some(Money::from_fen(3))
        );
    }

    #[test]
    fn rates_parse_as_percentages_within_zero_and_one_hundred() {
        assert_eq!(Rate::parse_percent("10%").unwrap().fraction(), d("0.1"));
        assert_eq!(Rate::parse_percent("0%").unwrap(), Rate::ZERO);
        assert_eq!(
            Rate::parse_percent("100%").unwrap().fraction(),
            Decimal::ONE
        );
        assert_eq!(Rate::parse_percent("100.01%"), Err(RateError::OutOfRange));
        assert_eq!(Rate::parse_percent("-1%"), Err(RateError::OutOfRange));
        assert_eq!(Rate::parse_percent("10"), Err(RateError::NotAPercentage));
        assert_eq!(Rate::parse_percent("ten%"), Err(RateError::NotAPercentage));
        assert_eq!(Rate::parse_percent("12.5%").unwrap().to_string(), "12.5%");
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(fen in -100_000_000_000_000_000i64..100_000_000_000_000_000) {
            let money = Money::from_fen(fen);
            prop_assert_eq!(Money::parse_signed(&money.to_string()).unwrap(), money);
        }

        #[test]
        fn decimal_conversion_is_exact(fen in -1_000_000_000_000i64..1_000_000_000_000) {
            let money = Money::from_fen(fen);
            prop_assert_eq!(Money::round_half_up(money.to_decimal()).unwrap(), money);
        }
    }
}
