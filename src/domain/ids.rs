//! Identifiers that cross the edge: validated once, then trusted.
//!
//! Ids chosen by the shop (distributor ids, order ids) are 1–64 characters of
//! ASCII letters, digits and `-`, `_`, `.`, `:` so they are safe in URLs, logs,
//! idempotency keys (`{order_id}:{step}` uses `:` only as a suffix separator
//! after the id, which is why ids may not end with `:`) and file names. The
//! two ids made of dots alone, `.` and `..`, are refused: in a URL path or a
//! file name they mean "this folder" and "the folder above", so a client or
//! proxy that normalises paths would send `/v1/distributors/..` somewhere else.

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

macro_rules! shop_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: impl Into<String>) -> Result<$name, InvalidId> {
                let text = text.into();
                validate(&text, $what)?;
                Ok($name(text))
            }

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
}
