//! Sign-in links to the distributor page (SPEC §1, §4 `POST
//! /v1/distributors/{id}/portal-links`): the shop's app asks for one and
//! opens it in its web view; opening it signs that browser in as that one
//! distributor, once.
//!
//! A link's secret is 256 random bits, shown once in the URL; the database
//! keeps its SHA-256 and when it expires ([`LINK_LIFETIME_SECONDS`] after it
//! was made) and was used. The secret travels in the query string, which
//! the request log never records (the HTTP span holds the path only), and
//! is never logged here.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::digest::sha256_hex;
use crate::domain::ids::DistributorId;
use crate::service::tokens::{TokenError, random_hex};
use crate::store::{PortalLinkOpening, Store, StoreError};

/// How long a link may wait to be opened: long enough for the app to open
/// it, short enough that one forwarded or left in a history is dead.
pub const LINK_LIFETIME_SECONDS: i64 = 5 * 60;
/// Random bytes in a link's secret (shown as twice as many hex digits).
const LINK_SECRET_BYTES: usize = 32;
/// The page route that opens a link; its secret is the `link` parameter.
pub const OPEN_PATH: &str = "/me/open";

/// A new link's secret, for the URL only, and when it stops working.
pub struct IssuedLink {
    pub secret: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl IssuedLink {
    /// The link's URL below `base` (`https://shop.example`, no trailing slash).
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}{OPEN_PATH}?link={}",
            base.trim_end_matches('/'),
            self.secret.expose_secret()
        )
    }
}

/// Makes a link for `distributor`, asked for by the token `created_by`;
/// `NotFound` (in [`TokenError::Store`]) when there is no such distributor.
pub async fn issue(
    store: &Store,
    distributor: &DistributorId,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<IssuedLink, TokenError> {
    let secret = random_hex(LINK_SECRET_BYTES)?;
    let expires_at = now + Duration::seconds(LINK_LIFETIME_SECONDS);
    store
        .insert_portal_link(
            &sha256_hex(secret.as_bytes()),
            distributor,
            created_by,
            now,
            expires_at,
        )
        .await?;
    Ok(IssuedLink {
        secret: SecretString::from(secret),
        expires_at,
    })
}

/// Whether `text` has the shape of a link's secret (64 lowercase hex
/// digits); anything else is not looked up.
pub fn is_secret_shaped(text: &str) -> bool {
    text.len() == 2 * LINK_SECRET_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Uses the link whose secret is `secret` at `now`: its distributor if this
/// call is the one that used it, else why not (see the store's guarded
/// update: two opens at once never both succeed).
pub async fn open(
    store: &Store,
    secret: &SecretString,
    now: DateTime<Utc>,
) -> Result<PortalLinkOpening, StoreError> {
    let secret = secret.expose_secret();
    if !is_secret_shaped(secret) {
        return Ok(PortalLinkOpening::Unknown);
    }
    store
        .open_portal_link(&sha256_hex(secret.as_bytes()), now)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_its_secret_in_the_query_below_the_base() {
        let link = IssuedLink {
            secret: SecretString::from("ab".repeat(32)),
            expires_at: Utc::now(),
        };
        assert_eq!(
            link.url("https://shop.example/"),
            format!("https://shop.example/me/open?link={}", "ab".repeat(32))
        );
        assert!(is_secret_shaped(&"ab".repeat(32)));
        for other in ["", "AB", &"AB".repeat(32), &"ab".repeat(33)] {
            assert!(!is_secret_shaped(other), "{other:?}");
        }
    }
}
