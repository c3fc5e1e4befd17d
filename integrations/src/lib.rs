//! # fenrun-integrations
//!
//! Payment gateways behind one small trait, [`PayoutGateway`]. Each gateway
//! module (WeChat Pay v3, Alipay, bank, the sandbox) keeps its wire structs
//! private and maps its statuses to [`TransferStatus`]; errors are classified
//! once, here, into [`GatewayError`] so the workflow knows whether to retry,
//! give up, or query before trying again.

use std::fmt;
use std::future::Future;

/// An amount in fen, the unit every gateway client converts from exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmountFen(pub i64);

/// Which rail a payout travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Wechat,
    Alipay,
    Bank,
}

/// The merchant's idempotency key for one payout (WeChat's `out_bill_no`).
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
    /// Accepted, not yet final.
    Processing,
    /// Waiting for the payee to accept (WeChat user-confirm mode); the
    /// `package_info` is handed to the payee's app.
    AwaitingPayee {
        package_info: String,
    },
    Succeeded,
    /// Final failure: the money did not move.
    Failed {
        reason: String,
    },
}

/// A gateway error, classified once.
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

/// One payout to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    pub out_bill_no: OutBillNo,
    pub amount: AmountFen,
    /// Shown to the payee (转账备注).
    pub remark: String,
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

    /// Asks where a payout stands.
    fn query(
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
