//! The Standard Webhooks signature (issue 16; `reference/webhooks.md`): an
//! endpoint's `whsec_` secret, and the `webhook-signature` header —
//! space-separated `v1,<base64>` entries, each HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{raw body}`. Signing gives one entry
//! per secret in force (two during a rotation's overlap); verifying accepts
//! any entry made with the secret, compares in constant time, and refuses a
//! timestamp outside the tolerance, as receivers' libraries do.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;
use secrecy::{ExposeSecret, SecretSlice};

/// What an endpoint's secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// Receivers refuse a timestamp further than this from their clock: the
/// convention's usual five minutes.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 5 * 60;

/// Secret length, bytes: the convention's 24 to 64.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// The one signature version there is.
const VERSION: &str = "v1";

/// An endpoint's signing secret: the bytes behind `whsec_<base64>`.
pub struct WebhookSecret(SecretSlice<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("WebhookSecret(whsec_…)")
    }
}

/// Why a secret or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a webhook secret is whsec_ followed by base64 of 24–64 bytes")]
    MalformedSecret,
    #[error("the timestamp is not Unix seconds")]
    MalformedTimestamp,
    #[error(
        "the timestamp is {seconds} s from now, more than the {TIMESTAMP_TOLERANCE_SECONDS} s allowed: a replay, or a clock to fix"
    )]
    StaleTimestamp { seconds: i64 },
    #[error("no v1 signature in the header matches the body with this secret")]
    NoMatch,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<WebhookSecret, SignatureError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SignatureError::MalformedSecret)?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| SignatureError::MalformedSecret)?;
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(SignatureError::MalformedSecret);
        }
        Ok(WebhookSecret(SecretSlice::from(bytes)))
    }

    /// The secret from random bytes (made by the caller's random source).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<WebhookSecret, SignatureError> {
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(SignatureError::MalformedSecret);
        }
        Ok(WebhookSecret(SecretSlice::from(bytes)))
    }

    /// `whsec_<base64>`, to show once.
    pub fn reveal(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(self.0.expose_secret()))
    }

    /// The `v1,<base64>` entry of `id`, `timestamp` and `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret());
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("{VERSION},{}", BASE64.encode(context.sign().as_ref()))
    }

    /// Checks a `webhook-signature` header against `id`, `timestamp` (the
    /// header's text) and the raw `body`, at `now` (Unix seconds).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedTimestamp)?;
        let seconds = now.saturating_sub(timestamp);
        if seconds.abs() > TIMESTAMP_TOLERANCE_SECONDS {
            return Err(SignatureError::StaleTimestamp { seconds });
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret());
        let signed = format!("{id}.{timestamp}.");
        let mut message = Vec::with_capacity(signed.len() + body.len());
        message.extend_from_slice(signed.as_bytes());
        message.extend_from_slice(body);
        let matches = signature_header.split_whitespace().any(|entry| {
            let Some((VERSION, encoded)) = entry.split_once(',') else {
                return false;
            };
            BASE64
                .decode(encoded)
                .is_ok_and(|tag| hmac::verify(&key, &message, &tag).is_ok())
        });
        if matches {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

/// The `webhook-signature` header of one delivery: an entry per secret in
/// force, the newest first.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks test vector (its reference libraries' tests),
    /// recomputed here with Python's `hmac`: secret, id, timestamp, body and
    /// the signature they give.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signing_gives_the_conventions_test_vector() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(secret.reveal(), SECRET);
    }

    #[test]
    fn verification_takes_any_matching_entry_and_refuses_tampering_and_staleness() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let other = WebhookSecret::from_bytes(vec![7; 32]).unwrap();
        let both = signature_header(&[&other, &secret], ID, TIMESTAMP, BODY);
        assert_eq!(both.split(' ').count(), 2);
        let ts = TIMESTAMP.to_string();
        assert_eq!(secret.verify(ID, &ts, &both, BODY, TIMESTAMP + 60), Ok(()));
        assert_eq!(other.verify(ID, &ts, &both, BODY, TIMESTAMP), Ok(()));
        assert_eq!(
            secret.verify(ID, &ts, SIGNATURE, br#"{"test": 2432232315}"#, TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            secret.verify("msg_other", &ts, SIGNATURE, BODY, TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            secret.verify(
                ID,
                &ts,
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                BODY,
                TIMESTAMP
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            secret.verify(ID, &ts, SIGNATURE, BODY, TIMESTAMP + 301),
            Err(SignatureError::StaleTimestamp { seconds: 301 })
        );
        assert_eq!(
            secret.verify(ID, "soon", SIGNATURE, BODY, TIMESTAMP),
            Err(SignatureError::MalformedTimestamp)
        );
    }

    #[test]
    fn a_secret_must_be_whsec_and_24_to_64_bytes_and_never_shows_in_debug() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_AAAA"] {
            assert_eq!(
                WebhookSecret::parse(bad).unwrap_err(),
                SignatureError::MalformedSecret
            );
        }
        assert!(WebhookSecret::from_bytes(vec![0; 65]).is_err());
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
