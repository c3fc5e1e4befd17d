//! Trusting the `alipay.fund.trans.order.changed` notification: a form POST
//! whose `sign` covers every other field but `sign_type` (sorted `k=v&…`),
//! turned into a [`FundOrderNotification`], and the text to answer
//! ([`NotifyAnswer`]).

use serde::Deserialize;

use super::crypto;
use super::{AlipayConfig, ConfigError, FundOrderStatus, Trust, fen_from_yuan};
use crate::{AmountFen, OutBillNo, TransferStatus};

/// The `msg_method` of a fund order's status change.
pub const ORDER_CHANGED_METHOD: &str = "alipay.fund.trans.order.changed";

/// Why a notification was not trusted or not understood. Messages name what
/// failed, never a key, an account or a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("field {0} is missing, empty or repeated")]
    MissingField(&'static str),
    #[error("signature does not verify with any Alipay key we hold")]
    BadSignature,
    /// Signed, but for another app: not ours to act on.
    #[error("notification is for another app_id")]
    WrongApp,
    #[error("not an {ORDER_CHANGED_METHOD} notification")]
    WrongMethod,
    #[error("malformed notification: {0}")]
    Malformed(&'static str),
}

/// A verified fund order status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundOrderNotification {
    pub out_bill_no: OutBillNo,
    pub status: TransferStatus,
    pub amount: AmountFen,
    /// Alipay's id for this delivery; redeliveries of one change share it.
    pub notify_id: String,
    /// Alipay's order id (`order_id`), for reconciliation.
    pub order_id: String,
    /// The product the order was made with, as Alipay names it.
    pub product_code: String,
}

/// What to answer Alipay, as the exact body text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAnswer {
    /// `success`: stop redelivering.
    Success,
    /// `fail`: deliver it again later.
    Fail,
}

impl NotifyAnswer {
    /// Answer `success` only for a notification that verified and that the
    /// caller has durably recorded; `fail` otherwise, so Alipay delivers it
    /// again (a forged one will simply never verify).
    pub fn after(
        outcome: &Result<FundOrderNotification, NotifyError>,
        recorded: bool,
    ) -> NotifyAnswer {
        match outcome {
            Ok(_) if recorded => NotifyAnswer::Success,
            Ok(_) | Err(_) => NotifyAnswer::Fail,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyAnswer::Success => "success",
            NotifyAnswer::Fail => "fail",
        }
    }
}

/// `biz_content` of `alipay.fund.trans.order.changed`; only what is used is
/// read.
#[derive(Deserialize)]
struct AlipayOrderChangedBizContent {
    out_biz_no: String,
    status: FundOrderStatus,
    trans_amount: String,
    #[serde(default)]
    order_id: String,
    #[serde(default)]
    product_code: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    fail_reason: Option<String>,
}

/// Verifies and parses notifications for one app.
#[derive(Debug, Clone)]
pub struct FundOrderNotifyVerifier {
    app_id: String,
    trust: Trust,
}

impl FundOrderNotifyVerifier {
    pub fn new(config: &AlipayConfig) -> Result<FundOrderNotifyVerifier, ConfigError> {
        config.validate()?;
        Ok(FundOrderNotifyVerifier {
            app_id: config.app_id.clone(),
            trust: config.trust()?,
        })
    }

    /// Verifies a notification from its raw form body
    /// (`application/x-www-form-urlencoded`), then parses it.
    pub fn verify_form(&self, body: &[u8]) -> Result<FundOrderNotification, NotifyError> {
        let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        self.verify(&fields)
    }

    /// Verifies a notification from its decoded form fields: signature first
    /// (over every field but `sign` and `sign_type`), then app, method and
    /// content. Notifications do not name the key that signed them, so in
    /// certificate mode every Alipay certificate we hold is tried.
    pub fn verify(
        &self,
        fields: &[(String, String)],
    ) -> Result<FundOrderNotification, NotifyError> {
        let field = |name: &'static str| {
            let mut values = fields.iter().filter(|(key, _)| key == name);
            match (values.next(), values.next()) {
                (Some((_, value)), None) if !value.is_empty() => Ok(value.as_str()),
                _ => Err(NotifyError::MissingField(name)),
            }
        };
        // A repeated key would make the signed content a guess.
        let mut keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(NotifyError::Malformed("a field is repeated"));
        }
        let sign = field("sign")?;
        if field("sign_type")? != "RSA2" {
            return Err(NotifyError::Malformed("sign_type is not RSA2"));
        }
        let content = crypto::notify_sign_content(
            fields
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        if !self
            .trust
            .verifiers()
            .into_iter()
            .any(|verifier| verifier.verify(content.as_bytes(), sign))
        {
            return Err(NotifyError::BadSignature);
        }
        if field("app_id")? != self.app_id {
            return Err(NotifyError::WrongApp);
        }
        if field("msg_method")? != ORDER_CHANGED_METHOD {
            return Err(NotifyError::WrongMethod);
        }
        let notify_id = field("notify_id")?.to_owned();
        let biz: AlipayOrderChangedBizContent = serde_json::from_str(field("biz_content")?)
            .map_err(|_| {
                NotifyError::Malformed(
                    "biz_content is not a fund order (unknown status or missing field)",
                )
            })?;
        let out_bill_no = OutBillNo::for_withdrawal(&biz.out_biz_no)
            .ok()
            .filter(|number| number.as_str() == biz.out_biz_no)
            .ok_or(NotifyError::Malformed("out_biz_no is not one of ours"))?;
        let amount = fen_from_yuan(&biz.trans_amount)
            .ok_or(NotifyError::Malformed("trans_amount is not a yuan amount"))?;
        Ok(FundOrderNotification {
            out_bill_no,
            status: biz
                .status
                .to_status(biz.error_code.as_deref(), biz.fail_reason.as_deref()),
            amount,
            notify_id,
            order_id: biz.order_id,
            product_code: biz.product_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::crypto::AppSigner;
    use super::super::crypto::test_keys::*;
    use super::super::tests::{certificate_config, public_key_config};
    use super::*;

    fn signed_fields(biz_content: &str, app_id: &str) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = [
            ("charset", "utf-8"),
            ("biz_content", biz_content),
            ("msg_method", ORDER_CHANGED_METHOD),
            ("utc_timestamp", "1733369999000"),
            ("version", "1.1"),
            ("notify_id", "2024120500222000000000000001"),
            ("app_id", app_id),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let content = crypto::notify_sign_content(
            fields
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        let sign = AppSigner::from_pem(&alipay_private())
            .unwrap()
            .sign(&content);
        fields.push(("sign_type".to_owned(), "RSA2".to_owned()));
        fields.push(("sign".to_owned(), sign));
        fields
    }

    const REFUND: &str = r#"{"pay_fund_order_id":"20241205110070001506","out_biz_no":"wd01JABCDEF","product_code":"TRANS_BANKCARD_NO_PWD","biz_scene":"DIRECT_TRANSFER","order_id":"20241205110070000006","status":"REFUND","action_type":"REFUND","trans_amount":"1234.56","pay_date":"2024-12-05 10:00:00","error_code":"ACCOUNT_CLOSED"}"#;

    #[test]
    fn a_signed_notification_verifies_in_both_modes_and_parses() {
        for config in [public_key_config(), certificate_config()] {
            let verifier = FundOrderNotifyVerifier::new(&config).unwrap();
            let notification = verifier
                .verify(&signed_fields(REFUND, "2021000000000001"))
                .unwrap();
            assert_eq!(notification.out_bill_no.as_str(), "wd01JABCDEF");
            assert_eq!(
                notification.status,
                TransferStatus::Returned {
                    reason: "ACCOUNT_CLOSED".to_owned()
                }
            );
            assert_eq!(notification.amount, AmountFen(123_456));
            assert_eq!(notification.product_code, "TRANS_BANKCARD_NO_PWD");
            assert_eq!(
                NotifyAnswer::after(&Ok(notification), true).as_str(),
                "success"
            );
        }
    }

    #[test]
    fn the_form_body_is_decoded_before_verifying() {
        let fields = signed_fields(REFUND, "2021000000000001");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        let verifier = FundOrderNotifyVerifier::new(&public_key_config()).unwrap();
        assert!(verifier.verify_form(body.as_bytes()).is_ok());
    }

    #[test]
    fn tampered_foreign_or_malformed_notifications_are_refused_and_answered_fail() {
        let verifier = FundOrderNotifyVerifier::new(&public_key_config()).unwrap();
        let mut tampered = signed_fields(REFUND, "2021000000000001");
        tampered[1].1 = REFUND.replace("1234.56", "9234.56");
        let outcome = verifier.verify(&tampered);
        assert_eq!(outcome, Err(NotifyError::BadSignature));
        assert_eq!(NotifyAnswer::after(&outcome, false), NotifyAnswer::Fail);

        // `sign_type` is not signed: changing it alone still verifies, but
        // anything but RSA2 is refused.
        let mut other_type = signed_fields(REFUND, "2021000000000001");
        other_type[7].1 = "RSA".to_owned();
        assert_eq!(
            verifier.verify(&other_type),
            Err(NotifyError::Malformed("sign_type is not RSA2"))
        );

        assert_eq!(
            verifier.verify(&signed_fields(REFUND, "2021999999999999")),
            Err(NotifyError::WrongApp)
        );
        let unknown_status =
            REFUND.replace("\"REFUND\",\"action_type", "\"WAIT_PAY\",\"action_type");
        assert!(matches!(
            verifier.verify(&signed_fields(&unknown_status, "2021000000000001")),
            Err(NotifyError::Malformed(_))
        ));
        let bad_amount = REFUND.replace("1234.56", "1234.567");
        assert!(matches!(
            verifier.verify(&signed_fields(&bad_amount, "2021000000000001")),
            Err(NotifyError::Malformed(_))
        ));
        let mut repeated = signed_fields(REFUND, "2021000000000001");
        repeated.push(("app_id".to_owned(), "2021000000000001".to_owned()));
        assert!(verifier.verify(&repeated).is_err());

        // Verified and parsed, but not yet recorded: still `fail`.
        let outcome = verifier.verify(&signed_fields(REFUND, "2021000000000001"));
        assert_eq!(NotifyAnswer::after(&outcome, false), NotifyAnswer::Fail);
    }
}
