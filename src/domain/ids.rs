//! Identifiers that cross the edge: validated once, then trusted.
//!
//! Ids chosen by the shop (distributor ids, order ids) are 1–64 characters of
//! ASCII letters, digits and `-`, `_`, `.`, `:` so they are safe in URLs, logs,
//! idempotency keys (`{order_id}:{step}` uses `:` only as a suffix separator
//! after the id, which is why ids may not end with `:`) and file names. The
//! two ids made of dots alone, `.` and `..`, are refused: in a URL path or a
//! file name they mean "this folder" and "the folder above", so a client or
//! proxy that normalises paths would send `/v1/distributors/..` somewhere else.
//!
//! Ids fenrun mints itself (withdrawals, payout accounts, certificate
//! numbers) have a type each, so one cannot be passed where another is
//! expected; each is made where fenrun mints it and parsed where text comes
//! in (a path, a row).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest id we accept from a shop.
pub const MAX_ID_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} must be 1–{MAX_ID_CHARS} characters of letters, digits, '-', '_', '.' or ':', and not '.' or '..'"
)]
pub struct InvalidId {
    pub what: &'static str,
}

fn validate(text: &str, what: &'static str) -> Result<(), InvalidId> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if text.is_empty()
        || text.len() > MAX_ID_CHARS
        || !text.chars().all(allowed)
        || text.ends_with(':')
        || is_dot_segment(text)
    {
        return Err(InvalidId { what });
    }
    Ok(())
}

/// `.` and `..`: path segments with a meaning of their own in URLs and file
/// names (RFC 3986 §3.3 dot-segments).
pub fn is_dot_segment(text: &str) -> bool {
    matches!(text, "." | "..")
}

/// An id type: its text, shown as is, serialized as a JSON string and
/// deserialized through its own `parse`.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! shop_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        text_id!($(#[$doc])* $name);

        impl $name {
            pub fn parse(text: impl Into<String>) -> Result<$name, InvalidId> {
                let text = text.into();
                validate(&text, $what)?;
                Ok($name(text))
            }
        }
    };
}

shop_id!(
    /// A distributor (分销员), as the shop names them.
    DistributorId,
    "distributor id"
);
shop_id!(
    /// An order, as the shop names it.
    OrderId,
    "order id"
);
shop_id!(
    /// A buyer, as the shop names them; only compared with distributor ids
    /// (self-purchase), never looked up.
    BuyerId,
    "buyer id"
);

/// Text that is not one of the ids fenrun mints (the caller knows what to
/// answer: a path that names nothing is "not found", a row is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what}")]
pub struct NotAnId {
    pub what: &'static str,
    pub text: String,
}

macro_rules! fenrun_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $valid:expr) => {
        text_id!($(#[$doc])* $name);

        impl $name {
            pub fn parse(text: impl Into<String>) -> Result<$name, NotAnId> {
                let text = text.into();
                let valid: fn(&str) -> bool = $valid;
                if !valid(&text) {
                    return Err(NotAnId { what: $what, text });
                }
                Ok($name(text))
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }
    };
}

/// Hex digits in a withdrawal id after `wd`: 32 characters in all.
const WITHDRAWAL_ID_HEX_DIGITS: usize = 30;

fenrun_id!(
    /// A withdrawal: `wd` and 30 lower-case hex digits, minted by
    /// [`WithdrawalId::generate`] when the request comes in.
    WithdrawalId,
    "withdrawal id",
    |text| {
        text.strip_prefix("wd").is_some_and(|hex| {
            hex.len() == WITHDRAWAL_ID_HEX_DIGITS
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }
);

impl WithdrawalId {
    /// A new random withdrawal id.
    pub fn generate() -> WithdrawalId {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        WithdrawalId(format!("wd{}", &hex[..WITHDRAWAL_ID_HEX_DIGITS]))
    }
}

fenrun_id!(
    /// A payout account: `pa_` and 32 hex digits when fenrun mints it
    /// ([`PayoutAccountId::generate`]). A request may name any 1–64
    /// characters: one that is no account of the distributor's is refused
    /// as not theirs, not as malformed.
    PayoutAccountId,
    "payout account id",
    |text| !text.is_empty() && text.len() <= MAX_ID_CHARS
);

impl PayoutAccountId {
    /// A new random payout account id.
    pub fn generate() -> PayoutAccountId {
        PayoutAccountId(format!("pa_{}", uuid::Uuid::new_v4().simple()))
    }
}

fenrun_id!(
    /// A withholding certificate: `FR{YYYYMM}-{id}` for a withdrawal's first
    /// certificate, with `-C{n}` after it for its n-th correction: ASCII
    /// letters, digits and `-`, `_`, as many bytes as a file name takes.
    CertificateNumber,
    "certificate number",
    |text| {
        text.starts_with("FR")
            && text.len() <= MAX_CERTIFICATE_NUMBER_BYTES
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
);

/// Longest certificate number (it is a file name too): `FR{YYYYMM}-` and 30
/// hex digits leave room for many corrections.
pub const MAX_CERTIFICATE_NUMBER_BYTES: usize = 64;

impl CertificateNumber {
    /// The number of `withdrawal`'s first certificate, paid in `tax_month`
    /// (`YYYY-MM`): unique because the withdrawal id is, and the same on
    /// every run of the certificate step.
    pub fn first(withdrawal: &WithdrawalId, tax_month: &str) -> CertificateNumber {
        let digits: String = withdrawal
            .as_str()
            .trim_start_matches("wd")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_uppercase();
        CertificateNumber(format!("FR{}-{digits}", tax_month.replace('-', "")))
    }

    /// The number of the correction of this one: `FR…-X` → `FR…-X-C1`,
    /// `FR…-X-C1` → `FR…-X-C2`.
    pub fn correction(&self) -> CertificateNumber {
        if let Some((base, count)) = self.0.rsplit_once("-C")
            && let Ok(count) = count.parse::<u32>()
        {
            return CertificateNumber(format!("{base}-C{}", count + 1));
        }
        CertificateNumber(format!("{}-C1", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_shop_ids() {
        for ok in ["d1", "D-001", "shop_7.user:42", &"x".repeat(MAX_ID_CHARS)] {
            assert!(DistributorId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_long_or_odd_ids() {
        for bad in [
            "",
            "a b",
            "a/b",
            "分销",
            "a:",
            &"x".repeat(MAX_ID_CHARS + 1),
        ] {
            assert!(DistributorId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dot_segments_are_refused_as_every_id_but_dots_inside_an_id_are_not() {
        for bad in [".", ".."] {
            assert!(DistributorId::parse(bad).is_err(), "{bad:?}");
            assert!(OrderId::parse(bad).is_err(), "{bad:?}");
            assert!(BuyerId::parse(bad).is_err(), "{bad:?}");
        }
        for ok in ["...", ".a", "a.", "a..b", "v1.2"] {
            assert!(DistributorId::parse(ok).is_ok(), "{ok:?}");
        }
        assert!(
            OrderId::parse("..")
                .unwrap_err()
                .to_string()
                .contains("not '.' or '..'")
        );
    }

    #[test]
    fn minted_ids_parse_back_and_are_not_each_other() {
        let withdrawal = WithdrawalId::generate();
        assert_eq!(withdrawal.as_str().len(), 32);
        assert_eq!(
            WithdrawalId::parse(withdrawal.as_str()),
            Ok(withdrawal.clone())
        );
        let account = PayoutAccountId::generate();
        assert!(WithdrawalId::parse(account.as_str()).is_err());
        let number = CertificateNumber::first(&withdrawal, "2026-11");
        assert!(number.as_str().starts_with("FR202611-"));
        assert_eq!(
            CertificateNumber::parse(number.as_str()),
            Ok(number.clone())
        );
        assert!(WithdrawalId::parse(number.as_str()).is_err());
        for bad in ["", "wd1", "WD0123456789abcdef0123456789abcd", "pa_x"] {
            assert!(WithdrawalId::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "fr202611-AB",
            "FR2026/x",
            &format!("FR{}", "1".repeat(80)),
        ] {
            assert!(CertificateNumber::parse(bad).is_err(), "{bad:?}");
        }
    }
}
