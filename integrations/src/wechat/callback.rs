//! Trusting what WeChat sends: the signature check every answer and callback
//! passes (serial, time window, SHA256withRSA over `TS\nNONCE\nBODY\n`), and
//! the decryption of `MCHTRANSFER.BILL.FINISHED` callbacks into a
//! [`BillNotification`].

use http::HeaderMap;
use serde::Deserialize;

use super::crypto::{self, ResourceKey, RsaVerifier};
use super::{BillState, ConfigError, WechatPayConfig};
use crate::{AmountFen, TransferStatus};

/// Header names of a signed answer or callback.
pub(crate) const HEADER_TIMESTAMP: &str = "Wechatpay-Timestamp";
pub(crate) const HEADER_NONCE: &str = "Wechatpay-Nonce";
pub(crate) const HEADER_SIGNATURE: &str = "Wechatpay-Signature";
pub(crate) const HEADER_SERIAL: &str = "Wechatpay-Serial";
pub(crate) const HEADER_SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";

/// The only resource algorithm v3 uses.
const RESOURCE_ALGORITHM: &str = "AEAD_AES_256_GCM";

/// Why a signed message (a callback, or an API answer) was not trusted.
/// Messages name what failed, never a key, the openid or a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("signature header {0} is missing or not text")]
    MissingHeader(&'static str),
    /// `Wechatpay-Serial` names a key other than the WeChat Pay public key we
    /// hold.
    #[error("signed with a key we do not hold (Wechatpay-Serial)")]
    UnknownSerial,
    /// More than 5 minutes from our clock, either way: a replay or a clock
    /// problem.
    #[error("signature timestamp is more than 5 minutes from our clock")]
    StaleTimestamp,
    /// Also what a `WECHATPAY/SIGNTEST/` probe gets: probes are verified like
    /// any other message.
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("notification resource does not decrypt with the APIv3 key")]
    Decrypt,
}

/// Checks the signature headers of an answer or callback against the WeChat
/// Pay public key `key_id`: serial first, then the time window (cheap), then
/// the signature.
pub(crate) fn verify_signed(
    verifier: &RsaVerifier,
    key_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), CallbackError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(CallbackError::MissingHeader(name))
    };
    let serial = header(HEADER_SERIAL)?;
    let timestamp = header(HEADER_TIMESTAMP)?;
    let nonce = header(HEADER_NONCE)?;
    let signature = header(HEADER_SIGNATURE)?;
    if let Some(kind) = headers.get(HEADER_SIGNATURE_TYPE)
        && kind.as_bytes() != crypto::AUTH_SCHEME.as_bytes()
    {
        return Err(CallbackError::Malformed(
            "unsupported Wechatpay-Signature-Type".to_owned(),
        ));
    }
    if serial != key_id {
        return Err(CallbackError::UnknownSerial);
    }
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| CallbackError::Malformed("Wechatpay-Timestamp is not a number".to_owned()))?;
    if now_unix.abs_diff(signed_at) > crypto::TIMESTAMP_WINDOW_SECS.unsigned_abs() {
        return Err(CallbackError::StaleTimestamp);
    }
    if !verifier.verify(&crypto::answer_message(timestamp, nonce, body), signature) {
        return Err(CallbackError::BadSignature);
    }
    Ok(())
}

/// A verified, decrypted transfer-bill callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillNotification {
    /// The notification id (`EV-…`); a redelivery keeps it.
    pub event_id: String,
    /// `MCHTRANSFER.BILL.FINISHED` for final states.
    pub event_type: String,
    pub out_bill_no: String,
    pub transfer_bill_no: String,
    pub status: TransferStatus,
    pub amount: AmountFen,
    /// When the bill last changed, as WeChat formats it (RFC 3339, +08:00).
    pub update_time: Option<String>,
}

/// Verifies and decrypts callbacks for one merchant.
pub struct CallbackVerifier {
    mchid: String,
    platform_public_key_id: String,
    platform: RsaVerifier,
    resource_key: ResourceKey,
}

impl std::fmt::Debug for CallbackVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackVerifier")
            .field("mchid", &self.mchid)
            .field("platform_public_key_id", &self.platform_public_key_id)
            .finish_non_exhaustive()
    }
}

/// The callback envelope. Only what is used is read.
#[derive(Deserialize)]
struct WechatNotification {
    id: String,
    event_type: String,
    resource: WechatResource,
}

#[derive(Deserialize)]
struct WechatResource {
    algorithm: String,
    ciphertext: String,
    nonce: String,
    /// May be absent or empty: the transfer sample sends `""`.
    #[serde(default)]
    associated_data: String,
}

/// The decrypted resource of a transfer-bill callback.
#[derive(Deserialize)]
struct WechatBillResource {
    #[serde(default)]
    mchid: Option<String>,
    out_bill_no: String,
    transfer_bill_no: String,
    state: BillState,
    transfer_amount: i64,
    #[serde(default)]
    fail_reason: Option<String>,
    #[serde(default)]
    update_time: Option<String>,
}

impl CallbackVerifier {
    /// Takes the platform key, its id and the APIv3 key from `config`.
    pub fn new(config: &WechatPayConfig) -> Result<CallbackVerifier, ConfigError> {
        config.validate_identity()?;
        Ok(CallbackVerifier {
            mchid: config.mchid.clone(),
            platform_public_key_id: config.platform_public_key_id.clone(),
            platform: config.platform_verifier()?,
            resource_key: config.resource_key()?,
        })
    }

    /// Checks `Wechatpay-Serial`, the ±5 minute window around `now_unix`, the
    /// signature over the raw `body`, then decrypts the resource. Nothing in
    /// an unverified body is looked at.
    pub fn verify_and_decrypt(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<BillNotification, CallbackError> {
        verify_signed(
            &self.platform,
            &self.platform_public_key_id,
            headers,
            body,
            now_unix,
        )?;
        // serde_json's messages can quote the input; say where, not what.
        let envelope: WechatNotification = serde_json::from_slice(body).map_err(|error| {
            CallbackError::Malformed(format!(
                "body is not a v3 notification (line {}, column {})",
                error.line(),
                error.column()
            ))
        })?;
        let resource = &envelope.resource;
        if resource.algorithm != RESOURCE_ALGORITHM {
            return Err(CallbackError::Malformed(
                "resource algorithm is not AEAD_AES_256_GCM".to_owned(),
            ));
        }
        let plaintext = self
            .resource_key
            .open(
                &resource.nonce,
                &resource.associated_data,
                &resource.ciphertext,
            )
            .ok_or(CallbackError::Decrypt)?;
        let bill: WechatBillResource = serde_json::from_slice(&plaintext).map_err(|_| {
            CallbackError::Malformed("decrypted resource is not a transfer bill".to_owned())
        })?;
        if bill
            .mchid
            .as_deref()
            .is_some_and(|mchid| mchid != self.mchid)
        {
            return Err(CallbackError::Malformed(
                "notification is for another merchant".to_owned(),
            ));
        }
        Ok(BillNotification {
            event_id: envelope.id,
            event_type: envelope.event_type,
            status: bill.state.to_status(bill.fail_reason.as_deref(), None),
            out_bill_no: bill.out_bill_no,
            transfer_bill_no: bill.transfer_bill_no,
            amount: AmountFen(bill.transfer_amount),
            update_time: bill.update_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::super::crypto::test_keys::*;
    use super::super::crypto::{RsaSigner, sign_answer};
    use super::super::tests::valid_config;
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn platform_signer() -> RsaSigner {
        RsaSigner::from_pkcs8_pem(&platform_private()).unwrap()
    }

    fn signed_headers(body: &[u8], timestamp: i64, serial: &str) -> HeaderMap {
        let signed = sign_answer(&platform_signer(), serial, timestamp, body);
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (HEADER_TIMESTAMP, signed.timestamp),
            (HEADER_NONCE, signed.nonce),
            (HEADER_SIGNATURE, signed.signature),
            (HEADER_SERIAL, signed.serial),
        ] {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        headers
    }

    fn notification_body(associated_data: &str, state: &str) -> Vec<u8> {
        let key = ResourceKey::from_api_v3_key(&api_v3_key()).unwrap();
        let plaintext = json!({
            "mchid": "1900000109", "out_bill_no": "wd01ABC", "transfer_bill_no": "1330000071100999991182020050700019480001",
            "state": state, "transfer_amount": 12345, "fail_reason": if state == "FAIL" { "PAYEE_ACCOUNT_ABNORMAL" } else { "" },
            "openid": "o-secret-openid", "create_time": "2025-01-01T10:00:00.000+08:00", "update_time": "2025-01-01T10:00:05.000+08:00"
        });
        let ciphertext = key
            .seal(
                "abcdefghijkl",
                associated_data,
                plaintext.to_string().as_bytes(),
            )
            .unwrap();
        json!({
            "id": "EV-2018022511223320873", "create_time": "2025-01-01T10:00:05+08:00", "resource_type": "encrypt-resource",
            "event_type": "MCHTRANSFER.BILL.FINISHED", "summary": "商家转账单据终态通知",
            "resource": {"original_type": "mch_payment", "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                         "nonce": "abcdefghijkl", "associated_data": associated_data}
        })
        .to_string()
        .into_bytes()
    }

    fn verifier() -> CallbackVerifier {
        CallbackVerifier::new(&valid_config()).unwrap()
    }

    #[test]
    fn a_signed_callback_decrypts_with_or_without_associated_data() {
        for aad in ["mch_payment", ""] {
            let body = notification_body(aad, "SUCCESS");
            let headers = signed_headers(&body, NOW - 10, "PUB_KEY_ID_0000000001");
            let notification = verifier().verify_and_decrypt(&headers, &body, NOW).unwrap();
            assert_eq!(notification.out_bill_no, "wd01ABC");
            assert_eq!(notification.status, TransferStatus::Succeeded);
            assert_eq!(notification.amount, AmountFen(12345));
            assert_eq!(notification.event_type, "MCHTRANSFER.BILL.FINISHED");
            assert!(!format!("{notification:?}").contains("o-secret-openid"));
        }
        let body = notification_body("", "FAIL");
        let headers = signed_headers(&body, NOW, "PUB_KEY_ID_0000000001");
        assert_eq!(
            verifier()
                .verify_and_decrypt(&headers, &body, NOW)
                .unwrap()
                .status,
            TransferStatus::Failed {
                reason: "PAYEE_ACCOUNT_ABNORMAL".to_owned()
            }
        );
    }

    #[test]
    fn a_callback_is_refused_for_a_bad_signature_a_stale_time_a_wrong_serial_or_a_missing_header() {
        let body = notification_body("", "SUCCESS");
        let good = signed_headers(&body, NOW, "PUB_KEY_ID_0000000001");

        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(
            verifier().verify_and_decrypt(&good, &tampered, NOW),
            Err(CallbackError::BadSignature)
        );

        let mut probe = good.clone();
        probe.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_static("WECHATPAY/SIGNTEST/abcdef"),
        );
        assert_eq!(
            verifier().verify_and_decrypt(&probe, &body, NOW),
            Err(CallbackError::BadSignature)
        );

        for skew in [301, -301] {
            assert_eq!(
                verifier().verify_and_decrypt(&good, &body, NOW + skew),
                Err(CallbackError::StaleTimestamp)
            );
        }
        assert!(
            verifier()
                .verify_and_decrypt(&good, &body, NOW + 300)
                .is_ok()
        );

        let other_serial = signed_headers(&body, NOW, "PUB_KEY_ID_OTHER");
        assert_eq!(
            verifier().verify_and_decrypt(&other_serial, &body, NOW),
            Err(CallbackError::UnknownSerial)
        );

        let mut missing = good.clone();
        missing.remove(HEADER_NONCE);
        assert_eq!(
            verifier().verify_and_decrypt(&missing, &body, NOW),
            Err(CallbackError::MissingHeader(HEADER_NONCE))
        );
    }

    #[test]
    fn a_resource_sealed_with_another_key_does_not_decrypt() {
        let mut config = valid_config();
        config.api_v3_key = secrecy::SecretString::from("0123456789abcdef0123456789abcdef");
        let other = CallbackVerifier::new(&config).unwrap();
        let body = notification_body("", "SUCCESS");
        let headers = signed_headers(&body, NOW, "PUB_KEY_ID_0000000001");
        assert_eq!(
            other.verify_and_decrypt(&headers, &body, NOW),
            Err(CallbackError::Decrypt)
        );
    }

    #[test]
    fn an_api_answer_is_held_to_the_same_rules_including_an_empty_body() {
        let platform = RsaVerifier::from_spki_pem(PLATFORM_PUBLIC).unwrap();
        let key_id = "PUB_KEY_ID_0000000001";
        for body in [&b""[..], br#"{"out_bill_no":"wd01ABC","state":"ACCEPTED"}"#] {
            let headers = signed_headers(body, NOW, key_id);
            assert_eq!(
                verify_signed(&platform, key_id, &headers, body, NOW),
                Ok(())
            );
            assert_eq!(
                verify_signed(&platform, key_id, &headers, b"{}", NOW),
                Err(CallbackError::BadSignature)
            );
            assert_eq!(
                verify_signed(&platform, key_id, &headers, body, NOW + 301),
                Err(CallbackError::StaleTimestamp)
            );
            assert_eq!(
                verify_signed(&platform, "PUB_KEY_ID_OTHER", &headers, body, NOW),
                Err(CallbackError::UnknownSerial)
            );
        }
    }
}
