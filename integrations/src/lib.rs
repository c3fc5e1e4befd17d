//! # fenrun-integrations
//!
//! Payment gateways behind one small trait, [`PayoutGateway`]. Each gateway
//! module keeps its wire structs private and maps its statuses to
//! [`TransferStatus`]; errors are classified once into [`GatewayError`] so the
//! workflow knows whether to retry, give up, or query before trying again.
//!
//! # Layout
//! - [`wechat`]: WeChat Pay API v3 商家转账 (transfer-bills) client, request
//!   signing, answer and callback verification, callback decryption.
//! - [`alipay`]: Alipay `alipay.fund.trans.uni.transfer` to an Alipay account
//!   or a bank card, its query and `order.changed` notification, RSA2 in
//!   public-key or certificate mode.
//! - [`sandbox`]: a local HTTP (or HTTPS) server speaking both dialects,
//!   WeChat v3 transfer-bills and Alipay `gateway.do`, with test keys, a
//!   ledger per channel and injectable faults: the test double and the demo
//!   gateway. No real money moves through it.
//! - [`statement`]: the daily statements (WeChat fund-flow bill, Alipay
//!   account log) in their real file formats, read into one neutral model
//!   for reconciliation.
//! - [`tls`]: whom the clients trust over HTTPS: the public roots and the
//!   [`tls::ExtraRoots`] a deployment names.

use std::fmt;
use std::future::Future;

use secrecy::SecretString;

pub mod alipay;
pub mod sandbox;
pub mod statement;
pub mod tls;
pub mod wechat;

/// Why a gateway's `base_url` setting cannot work, if it cannot: it must be
/// absolute, http (https only in a build with the `tls` feature), and
/// scheme and host only, since each client adds its own `paths`.
pub(crate) fn base_url_problem(base_url: &str, paths: &str) -> Option<String> {
    let Ok(url) = reqwest::Url::parse(base_url) else {
        return Some("is not an absolute URL".to_owned());
    };
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Some(
                "is HTTPS, but fenrun-integrations was built without its `tls` feature".to_owned(),
            );
        }
        _ => return Some("must be http or https".to_owned()),
    }
    if url.path() != "/" || url.query().is_some() {
        return Some(format!("must be scheme and host only ({paths} added)"));
    }
    None
}

/// An amount in fen, the unit every gateway client converts from exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct AmountFen(pub i64);

/// Which rail a payout travels on. Serialised in lowercase (`wechat`,
/// `alipay`, `bank`), as the sandbox ledger writes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Wechat,
    Alipay,
    Bank,
}

/// The merchant's idempotency key for one payout (WeChat's `out_bill_no`,
/// Alipay's `out_biz_no`).
/// Derived from the withdrawal id and never changed while an outcome is
/// unknown, so a retry can never pay twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutBillNo(String);

impl OutBillNo {
    /// WeChat allows 5–32 letters and digits; other rails accept a subset.
    pub fn for_withdrawal(withdrawal_id: &str) -> Result<OutBillNo, GatewayError> {
        let cleaned: String = withdrawal_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        if !(5..=32).contains(&cleaned.len()) {
            return Err(GatewayError::Rejected {
                code: "INVALID_OUT_BILL_NO".to_owned(),
                reason: format!("withdrawal id {withdrawal_id:?} gives no valid out_bill_no"),
            });
        }
        Ok(OutBillNo(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutBillNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a payout stands at the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStatus {
    /// Accepted, not yet final (WeChat `ACCEPTED`, `PROCESSING`,
    /// `TRANSFERING`, `CANCELING`).
    Processing,
    /// Waiting for the payee to accept (WeChat user-confirm mode); the
    /// `package_info` is handed to the payee's app. Empty when the answer did
    /// not carry it (callbacks never do).
    AwaitingPayee { package_info: String },
    /// Final: the money reached the payee. On the bank-card rail this is
    /// final for WeChat's and Alipay's state machines but not for the money:
    /// the receiving bank can still bounce it, and the payout then turns
    /// [`TransferStatus::Returned`].
    Succeeded,
    /// Final failure: the money did not move. `reason` is the gateway's code
    /// (WeChat `fail_reason`, Alipay `error_code`, or `CANCELLED` for a
    /// cancelled bill).
    Failed { reason: String },
    /// Final: the bank returned the money (退票, Alipay `REFUND` on the
    /// bank-card rail), possibly days after [`TransferStatus::Succeeded`].
    /// The payee was not paid and the money is back with the payer; `reason`
    /// is the gateway's code or text for the bounce.
    Returned { reason: String },
}

impl TransferStatus {
    /// Whether the gateway will never change this status again.
    pub fn is_final(&self) -> bool {
        match self {
            TransferStatus::Processing | TransferStatus::AwaitingPayee { .. } => false,
            // `Succeeded` may still become `Returned` on the bank rail; no
            // status follows `Returned`.
            TransferStatus::Succeeded
            | TransferStatus::Failed { .. }
            | TransferStatus::Returned { .. } => true,
        }
    }
}

/// A gateway error, classified once. Messages never carry secrets, the
/// payee's account or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Nothing happened (connection refused, 429, a documented "try again"):
    /// retry with backoff.
    #[error("transient gateway error: {0}")]
    Transient(String),
    /// The gateway refused the request for good: do not retry.
    #[error("gateway rejected the transfer ({code}): {reason}")]
    Rejected { code: String, reason: String },
    /// We cannot know whether it happened (timeout, 5xx after sending): query
    /// by `out_bill_no` before any new attempt.
    #[error("ambiguous gateway result: {0}")]
    Ambiguous(String),
}

impl GatewayError {
    /// Whether the same request may simply be sent again.
    pub fn may_resend(&self) -> bool {
        matches!(self, GatewayError::Transient(_))
    }

    /// Whether the outcome must be queried before anything else.
    pub fn must_query_first(&self) -> bool {
        matches!(self, GatewayError::Ambiguous(_))
    }
}

/// One payout to send. `Debug` shows neither the payee's account nor name:
/// both are secret types.
#[derive(Debug, Clone)]
pub struct PayoutRequest {
    pub out_bill_no: OutBillNo,
    pub amount: AmountFen,
    /// Shown to the payee (转账备注).
    pub remark: String,
    /// The payee's account on this channel: a WeChat openid, an Alipay logon
    /// id, or a bank card number.
    pub payee_account: SecretString,
    /// The payee's real name. WeChat encrypts it into `user_name`; it is sent
    /// whenever given (WeChat requires it from 2,000.00 yuan up; Alipay always,
    /// for both its products). A company's bank account: the company's
    /// registered name.
    pub payee_name: Option<SecretString>,
    /// Bank cards: whose account it is. `None` on the other channels; a card
    /// payout without it is sent as a personal account's.
    pub bank_account: Option<BankAccount>,
}

/// Whose account a bank card is, as Alipay's `payee_info.bankcard_ext_info`
/// says it: a person's (对私, `account_type` "2"), or a company's (对公,
/// "1"), which the bank finds by its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankAccount {
    Personal,
    Company(CompanyBankAccount),
}

/// A company's bank account beyond its number: the bank, and the branch by
/// its 联行号, by its place and name, or both (Alipay needs one of the two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyBankAccount {
    /// `inst_name`: the bank (`招商银行`).
    pub inst_name: String,
    /// `bank_code`: the branch's 12-digit 联行号.
    pub bank_code: Option<String>,
    /// `inst_province`, `inst_city`, `inst_branch_name`: the branch by place.
    pub branch: Option<BankBranch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankBranch {
    pub province: String,
    pub city: String,
    pub name: String,
}

/// A payout rail. Implementations sign requests and verify answers as their
/// protocol demands; the same `out_bill_no` always names the same payout.
pub trait PayoutGateway: Send + Sync {
    fn channel(&self) -> Channel;

    /// Starts (or, for a known `out_bill_no`, re-reports) a payout.
    fn transfer(
        &self,
        request: &PayoutRequest,
    ) -> impl Future<Output = Result<TransferStatus, GatewayError>> + Send;

    /// Asks where a payout stands. `None`: the gateway has no bill by that
    /// number, so it was never created and the same number may be sent again.
    fn query(
        &self,
        out_bill_no: &OutBillNo,
    ) -> impl Future<Output = Result<Option<TransferStatus>, GatewayError>> + Send;

    /// Cancels a bill still waiting for the payee (WeChat
    /// `WAIT_USER_CONFIRM`) and returns where it stands after the request.
    fn cancel(
        &self,
        out_bill_no: &OutBillNo,
    ) -> impl Future<Output = Result<TransferStatus, GatewayError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_out_bill_no_is_derived_from_the_withdrawal_id_and_stable() {
        let first = OutBillNo::for_withdrawal("wd_01JABCDEF").unwrap();
        let again = OutBillNo::for_withdrawal("wd_01JABCDEF").unwrap();
        assert_eq!(first, again);
        assert_eq!(first.as_str(), "wd01JABCDEF");
        assert!(OutBillNo::for_withdrawal("w-1").is_err());
        assert!(OutBillNo::for_withdrawal(&"x".repeat(33)).is_err());
    }

    #[test]
    fn only_transient_errors_may_be_resent_and_ambiguous_ones_are_queried() {
        assert!(GatewayError::Transient("503".into()).may_resend());
        let ambiguous = GatewayError::Ambiguous("timeout".into());
        assert!(!ambiguous.may_resend() && ambiguous.must_query_first());
        let rejected = GatewayError::Rejected {
            code: "NO_AUTH".into(),
            reason: "x".into(),
        };
        assert!(!rejected.may_resend() && !rejected.must_query_first());
    }
}
