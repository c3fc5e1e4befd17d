//! The withdrawal rules (SPEC §2.4) that need no database: the states and
//! their moves, the checks at request, the express fee, the risk flags that
//! send a withdrawal to manual review, and the withholding on it. The engine
//! gathers the facts under the distributor's lock and asks these functions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::money::{Money, Rate};
use crate::domain::tax::{self, Month, TaxError, Withholding, WithholdingMethod};

/// Where a withdrawal stands. The first four are in flight; the money is in
/// the distributor's withdrawing account until a final state moves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalState {
    /// Waiting for an ops decision.
    Reviewing,
    /// Approved; its transfer job is queued.
    Approved,
    /// Sent (or being sent) to the gateway; the outcome is not known yet.
    Transferring,
    /// WeChat user-confirm mode: the payee must accept with `package_info`.
    AwaitingPayeeConfirmation,
    Paid,
    Rejected,
    Cancelled,
    Failed,
    /// Paid, then the bank sent the money back (退票, bank cards only): the
    /// gross is the distributor's again and the certificate is voided.
    Returned,
}

impl WithdrawalState {
    pub const ALL: [WithdrawalState; 9] = [
        WithdrawalState::Reviewing,
        WithdrawalState::Approved,
        WithdrawalState::Transferring,
        WithdrawalState::AwaitingPayeeConfirmation,
        WithdrawalState::Paid,
        WithdrawalState::Rejected,
        WithdrawalState::Cancelled,
        WithdrawalState::Failed,
        WithdrawalState::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalState::Reviewing => "reviewing",
            WithdrawalState::Approved => "approved",
            WithdrawalState::Transferring => "transferring",
            WithdrawalState::AwaitingPayeeConfirmation => "awaiting_payee_confirmation",
            WithdrawalState::Paid => "paid",
            WithdrawalState::Rejected => "rejected",
            WithdrawalState::Cancelled => "cancelled",
            WithdrawalState::Failed => "failed",
            WithdrawalState::Returned => "returned",
        }
    }

    /// Whether nothing will ever happen to it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            WithdrawalState::Paid
                | WithdrawalState::Rejected
                | WithdrawalState::Cancelled
                | WithdrawalState::Failed
                | WithdrawalState::Returned
        )
    }

    /// Whether its money went back to the distributor: such a withdrawal
    /// counts for no limit and no tax.
    pub fn returned_funds(self) -> bool {
        matches!(
            self,
            WithdrawalState::Rejected
                | WithdrawalState::Cancelled
                | WithdrawalState::Failed
                | WithdrawalState::Returned
        )
    }

    /// Whether the gateway may hold a bill for it.
    pub fn at_gateway(self) -> bool {
        matches!(
            self,
            WithdrawalState::Transferring | WithdrawalState::AwaitingPayeeConfirmation
        )
    }
}

/// Whether a gateway's word that a withdrawal's bill was paid is unexpected
/// in `state`: only a withdrawal sent to the gateway can be paid, and a paid
/// one may hear it again (duplicate callbacks, a poll crossing a callback).
/// A returned one hears it late (the bank rail's success precedes the
/// bounce, and notifications may arrive out of order). Any other state never
/// sent a bill, or already took its funds back: the news is not applied, and
/// someone must find out where the money went.
pub fn success_is_unexpected(state: WithdrawalState) -> bool {
    !(state.at_gateway() || matches!(state, WithdrawalState::Paid | WithdrawalState::Returned))
}

impl fmt::Display for WithdrawalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WithdrawalState {
    type Err = String;
    fn from_str(text: &str) -> Result<WithdrawalState, String> {
        WithdrawalState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("withdrawal state {text:?}"))
    }
}

/// How fast the money should go; express pays a fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    Standard,
    Express,
}

impl Speed {
    pub fn as_str(self) -> &'static str {
        match self {
            Speed::Standard => "standard",
            Speed::Express => "express",
        }
    }
}

impl FromStr for Speed {
    type Err = String;
    fn from_str(text: &str) -> Result<Speed, String> {
        match text {
            "standard" => Ok(Speed::Standard),
            "express" => Ok(Speed::Express),
            other => Err(format!("speed {other:?}")),
        }
    }
}

/// Why a request is refused; each is a 422 with [`Refusal::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the distributor's real name and ID number are not on file")]
    IdentityMissing,
    #[error("the payout account does not belong to this distributor")]
    ForeignAccount,
    #[error("amount must have at most two decimals (fen)")]
    TooManyDecimals,
    #[error("amount must be at least {minimum}")]
    BelowMinimum { minimum: Money },
    #[error("amount exceeds the available balance of {available}")]
    InsufficientBalance { available: Money },
    #[error(
        "the balance is negative (a clawback debt of {debt}): nothing can be withdrawn until it is repaid"
    )]
    OpenDebt { debt: Money },
    #[error("today's withdrawals would come to {would_be}, over the daily limit of {limit}")]
    DailyLimit { limit: Money, would_be: Money },
    #[error("the distributor is {status}: withdrawals are not allowed")]
    DistributorInactive { status: String },
    #[error(
        "no merchant is configured for payouts on the {channel} channel: choose a payout account on another channel, or ask the operator to configure {channel}"
    )]
    ChannelNotConfigured { channel: String },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::IdentityMissing => "identity_missing",
            Refusal::ForeignAccount => "payout_account_not_owned",
            Refusal::TooManyDecimals => "amount_precision",
            Refusal::BelowMinimum { .. } => "amount_below_minimum",
            Refusal::InsufficientBalance { .. } => "insufficient_balance",
            Refusal::OpenDebt { .. } => "balance_negative",
            Refusal::DailyLimit { .. } => "daily_limit_exceeded",
            Refusal::DistributorInactive { .. } => "distributor_inactive",
            Refusal::ChannelNotConfigured { .. } => "channel_not_configured",
        }
    }

    /// The request field the refusal is about, if one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Refusal::ForeignAccount | Refusal::ChannelNotConfigured { .. } => {
                Some("payout_account_id")
            }
            Refusal::TooManyDecimals
            | Refusal::BelowMinimum { .. }
            | Refusal::InsufficientBalance { .. }
            | Refusal::DailyLimit { .. } => Some("amount"),
            Refusal::IdentityMissing
            | Refusal::OpenDebt { .. }
            | Refusal::DistributorInactive { .. } => Some("distributor_id"),
        }
    }
}

/// Why a withdrawal cannot take the step asked of it from the state it is
/// in; each is a 409 with [`StateRefusal::code`], and its message names the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateRefusal {
    #[error("withdrawal {id} is {state}, not waiting for review")]
    NotInReview { id: String, state: WithdrawalState },
    #[error(
        "withdrawal {id} is {state}: only a withdrawal whose transfer has not started can be cancelled"
    )]
    TransferStarted { id: String, state: WithdrawalState },
    /// The payee's bill was at the gateway, which would not cancel it.
    #[error(
        "withdrawal {id} is {state}: too late to cancel, the gateway would not cancel its bill (the payee accepted it, or it ended)"
    )]
    GatewayKeptBill { id: String, state: WithdrawalState },
}

impl StateRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            StateRefusal::NotInReview { .. } => "withdrawal_not_in_review",
            StateRefusal::TransferStarted { .. } | StateRefusal::GatewayKeptBill { .. } => {
                "withdrawal_not_cancellable"
            }
        }
    }
}

/// Ops approve or reject only a withdrawal that waits for review.
pub fn check_reviewable(id: &str, state: WithdrawalState) -> Result<(), StateRefusal> {
    match state {
        WithdrawalState::Reviewing => Ok(()),
        _ => Err(StateRefusal::NotInReview {
            id: id.to_owned(),
            state,
        }),
    }
}

/// The distributor cancels on our side only before the transfer starts
/// (a bill awaiting the payee is cancelled at the gateway instead).
pub fn check_cancellable(id: &str, state: WithdrawalState) -> Result<(), StateRefusal> {
    match state {
        WithdrawalState::Reviewing | WithdrawalState::Approved => Ok(()),
        _ => Err(StateRefusal::TransferStarted {
            id: id.to_owned(),
            state,
        }),
    }
}

/// The limits of the withdrawal workflow (`workflows/withdrawal.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalRules {
    pub minimum: Money,
    pub daily_limit: Money,
    pub express_fee: Rate,
    pub auto_approve_limit: Money,
    /// A distributor younger than this is a risk flag.
    pub new_distributor_age: Duration,
    /// A payout account added within this window is a risk flag.
    pub account_change_window: Duration,
    /// This many withdrawals (this one included) within 24 h is a risk flag.
    pub many_withdrawals: u32,
    /// A clawback within this window is a risk flag.
    pub clawback_window: Duration,
}

impl Default for WithdrawalRules {
    fn default() -> WithdrawalRules {
        WithdrawalRules {
            minimum: Money::from_fen(1_000),         // 10.00
            daily_limit: Money::from_fen(2_000_000), // 20,000.00
            express_fee: Rate::parse_percent("0.5%").expect("a valid rate"),
            auto_approve_limit: Money::from_fen(200_000), // 2,000.00
            new_distributor_age: Duration::hours(72),
            account_change_window: Duration::hours(24),
            many_withdrawals: 5,
            clawback_window: Duration::days(30),
        }
    }
}

/// What a request is checked against, read under the distributor's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub amount: Money,
    pub available: Money,
    pub distributor_status: String,
    pub identity_on_file: bool,
    pub account_owned: bool,
    /// Gross of today's withdrawals (Asia/Shanghai) whose funds were not returned.
    pub gross_today: Money,
}

/// The checks at request, in the order a distributor would want to hear them.
pub fn check_request(rules: &WithdrawalRules, facts: &RequestFacts) -> Result<(), Refusal> {
    if facts.distributor_status != "active" {
        return Err(Refusal::DistributorInactive {
            status: facts.distributor_status.clone(),
        });
    }
    if !facts.account_owned {
        return Err(Refusal::ForeignAccount);
    }
    if !facts.identity_on_file {
        return Err(Refusal::IdentityMissing);
    }
    if facts.available.is_negative() {
        return Err(Refusal::OpenDebt {
            debt: facts.available.checked_neg().unwrap_or(Money::ZERO),
        });
    }
    if facts.amount < rules.minimum {
        return Err(Refusal::BelowMinimum {
            minimum: rules.minimum,
        });
    }
    if facts.amount > facts.available {
        return Err(Refusal::InsufficientBalance {
            available: facts.available,
        });
    }
    let would_be = facts
        .gross_today
        .checked_add(facts.amount)
        .unwrap_or(Money::from_fen(i64::MAX));
    if would_be > rules.daily_limit {
        return Err(Refusal::DailyLimit {
            limit: rules.daily_limit,
            would_be,
        });
    }
    Ok(())
}

/// The express fee: a rate of the gross, half-up to the fen; standard is free.
pub fn fee(rules: &WithdrawalRules, speed: Speed, gross: Money) -> Result<Money, TaxError> {
    match speed {
        Speed::Standard => Ok(Money::ZERO),
        Speed::Express => gross
            .times_rounded(rules.express_fee)
            .map_err(|_| TaxError::Overflow),
    }
}

/// Why a withdrawal waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskFlag {
    /// Gross above the auto-approve limit.
    OverAutoApproveLimit,
    NewDistributor,
    PayoutAccountChanged,
    ManyWithdrawals,
    RecentClawback,
    /// The real name or ID number changed after a withholding certificate
    /// was issued in the old one; raised until a person has reviewed a
    /// withdrawal carrying this flag.
    IdentityChangedAfterCertificate,
}

/// What the risk flags look at, read under the distributor's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskFacts {
    pub gross: Money,
    pub now: DateTime<Utc>,
    pub distributor_since: DateTime<Utc>,
    /// When the newest of the distributor's payout accounts was added.
    pub newest_account_at: Option<DateTime<Utc>>,
    /// Withdrawals requested in the last 24 h, this one not included.
    pub withdrawals_last_24h: u32,
    pub last_clawback_at: Option<DateTime<Utc>>,
    /// The identity changed after a certificate and no withdrawal has been
    /// reviewed since.
    pub identity_changed_after_certificate: bool,
}

/// The flags raised; none means the withdrawal is approved at once.
pub fn risk_flags(rules: &WithdrawalRules, facts: &RiskFacts) -> Vec<RiskFlag> {
    let mut flags = Vec::new();
    if facts.gross > rules.auto_approve_limit {
        flags.push(RiskFlag::OverAutoApproveLimit);
    }
    if facts.now - facts.distributor_since < rules.new_distributor_age {
        flags.push(RiskFlag::NewDistributor);
    }
    if facts
        .newest_account_at
        .is_some_and(|at| facts.now - at < rules.account_change_window)
    {
        flags.push(RiskFlag::PayoutAccountChanged);
    }
    if facts.withdrawals_last_24h + 1 >= rules.many_withdrawals {
        flags.push(RiskFlag::ManyWithdrawals);
    }
    if facts
        .last_clawback_at
        .is_some_and(|at| facts.now - at < rules.clawback_window)
    {
        flags.push(RiskFlag::RecentClawback);
    }
    if facts.identity_changed_after_certificate {
        flags.push(RiskFlag::IdentityChangedAfterCertificate);
    }
    flags
}

/// An earlier withdrawal of the same tax year whose funds were not returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierPayout {
    pub month: Month,
    pub gross: Money,
    pub tax: Money,
}

/// The withholding on a new payout of `gross` in `month`, given the same
/// year's earlier payouts to the distributor (in flight or paid).
///
/// Per-payment: the month's payouts are one 次. When an earlier payout of the
/// month was returned after later ones were taxed on top of it, what was
/// withheld can exceed the tax on what remains; then nothing more is withheld
/// now (no refund mid-month; the monthly declaration settles the 次).
pub fn withholding(
    method: WithholdingMethod,
    month: Month,
    earlier: &[EarlierPayout],
    gross: Money,
) -> Result<Withholding, TaxError> {
    fn sum<'a>(mut payouts: impl Iterator<Item = &'a EarlierPayout>) -> Option<(Money, Money)> {
        payouts.try_fold((Money::ZERO, Money::ZERO), |(gross, tax), payout| {
            Some((
                gross.checked_add(payout.gross)?,
                tax.checked_add(payout.tax)?,
            ))
        })
    }
    match method {
        WithholdingMethod::PerPayment => {
            let (prior_gross, prior_withheld) =
                sum(earlier.iter().filter(|payout| payout.month == month))
                    .ok_or(TaxError::Overflow)?;
            let due =
                tax::per_payment_tax(prior_gross.checked_add(gross).ok_or(TaxError::Overflow)?)?
                    .tax;
            tax::withhold_per_payment(prior_gross, prior_withheld.min(due), gross)
        }
        WithholdingMethod::Cumulative => {
            let (prior_income, prior_withheld) = sum(earlier
                .iter()
                .filter(|payout| payout.month.year() == month.year() && payout.month <= month))
            .ok_or(TaxError::Overflow)?;
            let months_count = consecutive_months(month, earlier);
            tax::withhold_cumulative(prior_income, prior_withheld, months_count, gross)
        }
    }
}

/// Consecutive months with income this year up to and including `month`
/// (which has income now). tax-cn.md §7 leaves open whether a month without
/// income restarts the count; counting back to the first gap is the reading
/// that never over-deducts.
fn consecutive_months(month: Month, earlier: &[EarlierPayout]) -> u8 {
    let mut count = 1u8;
    let mut current = month.month();
    while current > 1 {
        current -= 1;
        let had_income = earlier
            .iter()
            .any(|payout| payout.month.year() == month.year() && payout.month.month() == current);
        if !had_income {
            break;
        }
        count += 1;
    }
    count
}

/// An ops review decision.
#[derive(Debug, Clone)]
pub enum ReviewDecision {
    Approve { by: String, note: Option<String> },
    Reject { by: String, reason: String },
}

/// What the gateway (by answer, query or callback) says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Created or still moving; nothing to record but the bill number.
    Processing {
        bill_no: Option<String>,
    },
    AwaitingPayee {
        bill_no: Option<String>,
        package_info: String,
    },
    Paid {
        bill_no: Option<String>,
    },
    /// The money did not move (FAIL, CANCELLED, or refused for good).
    Failed {
        reason: String,
    },
    /// The money moved and came back (a bank bounce, 退票).
    Returned {
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn facts(amount: &str, available: &str) -> RequestFacts {
        RequestFacts {
            amount: money(amount),
            available: Money::parse_signed(available).unwrap(),
            distributor_status: "active".to_owned(),
            identity_on_file: true,
            account_owned: true,
            gross_today: Money::ZERO,
        }
    }

    #[test]
    fn each_check_refuses_with_its_own_code() {
        let rules = WithdrawalRules::default();
        assert_eq!(check_request(&rules, &facts("10.00", "10.00")), Ok(()));
        assert_eq!(
            check_request(&rules, &facts("9.99", "100.00"))
                .unwrap_err()
                .code(),
            "amount_below_minimum"
        );
        assert_eq!(
            check_request(&rules, &facts("100.01", "100.00"))
                .unwrap_err()
                .code(),
            "insufficient_balance"
        );
        assert_eq!(
            check_request(&rules, &facts("10.00", "-0.01"))
                .unwrap_err()
                .code(),
            "balance_negative"
        );
        let mut no_identity = facts("10.00", "10.00");
        no_identity.identity_on_file = false;
        assert_eq!(
            check_request(&rules, &no_identity).unwrap_err().code(),
            "identity_missing"
        );
        let mut foreign = facts("10.00", "10.00");
        foreign.account_owned = false;
        assert_eq!(
            check_request(&rules, &foreign).unwrap_err().code(),
            "payout_account_not_owned"
        );
    }

    #[test]
    fn the_daily_limit_counts_today_and_allows_exactly_the_limit() {
        let rules = WithdrawalRules::default();
        let mut today = facts("5000.00", "50000.00");
        today.gross_today = money("15000.00");
        assert_eq!(check_request(&rules, &today), Ok(()));
        today.amount = money("5000.01");
        assert_eq!(
            check_request(&rules, &today),
            Err(Refusal::DailyLimit {
                limit: money("20000.00"),
                would_be: money("20000.01")
            })
        );
    }

    #[test]
    fn the_express_fee_is_half_a_percent_rounded_half_up() {
        let rules = WithdrawalRules::default();
        assert_eq!(
            fee(&rules, Speed::Standard, money("1000.00")).unwrap(),
            Money::ZERO
        );
        assert_eq!(
            fee(&rules, Speed::Express, money("1000.00")).unwrap(),
            money("5.00")
        );
        // 0.5% of 10.01 = 0.05005 → 0.05.
        assert_eq!(
            fee(&rules, Speed::Express, money("10.01")).unwrap(),
            money("0.05")
        );
        // 0.5% of 11.00 = 0.055: exactly half a fen, rounded up.
        assert_eq!(
            fee(&rules, Speed::Express, money("11.00")).unwrap(),
            money("0.06")
        );
        // 0.5% of 10.99 = 0.05495 → 0.05.
        assert_eq!(
            fee(&rules, Speed::Express, money("10.99")).unwrap(),
            money("0.05")
        );
    }

    fn risk(gross: &str) -> RiskFacts {
        let now = DateTime::parse_from_rfc3339("2026-06-10T12:00:00Z")
            .unwrap()
            .to_utc();
        RiskFacts {
            gross: money(gross),
            now,
            distributor_since: now - Duration::days(30),
            newest_account_at: Some(now - Duration::days(10)),
            withdrawals_last_24h: 0,
            last_clawback_at: None,
            identity_changed_after_certificate: false,
        }
    }

    #[test]
    fn a_small_withdrawal_of_a_settled_distributor_raises_no_flag() {
        let rules = WithdrawalRules::default();
        assert!(risk_flags(&rules, &risk("2000.00")).is_empty());
        assert_eq!(
            risk_flags(&rules, &risk("2000.01")),
            [RiskFlag::OverAutoApproveLimit]
        );
    }

    #[test]
    fn an_identity_changed_after_a_certificate_alone_sends_a_small_withdrawal_to_review() {
        let rules = WithdrawalRules::default();
        let mut facts = risk("50.00");
        assert!(risk_flags(&rules, &facts).is_empty());
        facts.identity_changed_after_certificate = true;
        assert_eq!(
            risk_flags(&rules, &facts),
            [RiskFlag::IdentityChangedAfterCertificate]
        );
        assert_eq!(
            serde_json::to_string(&RiskFlag::IdentityChangedAfterCertificate).unwrap(),
            "\"identity_changed_after_certificate\""
        );
    }

    #[test]
    fn every_risk_flag_is_raised_by_its_own_fact() {
        let rules = WithdrawalRules::default();
        let mut facts = risk("100.00");
        facts.distributor_since = facts.now - Duration::hours(71);
        facts.newest_account_at = Some(facts.now - Duration::hours(23));
        facts.withdrawals_last_24h = 4;
        facts.last_clawback_at = Some(facts.now - Duration::days(29));
        facts.identity_changed_after_certificate = true;
        assert_eq!(
            risk_flags(&rules, &facts),
            [
                RiskFlag::NewDistributor,
                RiskFlag::PayoutAccountChanged,
                RiskFlag::ManyWithdrawals,
                RiskFlag::RecentClawback,
                RiskFlag::IdentityChangedAfterCertificate,
            ]
        );
        facts.identity_changed_after_certificate = false;
        facts.withdrawals_last_24h = 3;
        facts.last_clawback_at = Some(facts.now - Duration::days(31));
        facts.distributor_since = facts.now - Duration::hours(72);
        facts.newest_account_at = Some(facts.now - Duration::hours(24));
        assert!(risk_flags(&rules, &facts).is_empty());
    }

    fn month(text: &str) -> Month {
        Month::parse(text).unwrap()
    }

    #[test]
    fn per_payment_withholding_aggregates_the_month_and_restarts_in_a_new_one() {
        // tax-cn.md: 2,000 + 2,000 in one month = one 次 of 4,000: 640 in all.
        let first = withholding(
            WithholdingMethod::PerPayment,
            month("2026-03"),
            &[],
            money("2000.00"),
        )
        .unwrap();
        assert_eq!(first.withheld_now, money("240.00"));
        let earlier = [EarlierPayout {
            month: month("2026-03"),
            gross: money("2000.00"),
            tax: money("240.00"),
        }];
        let second = withholding(
            WithholdingMethod::PerPayment,
            month("2026-03"),
            &earlier,
            money("2000.00"),
        )
        .unwrap();
        assert_eq!(second.withheld_now, money("400.00"));
        let april = withholding(
            WithholdingMethod::PerPayment,
            month("2026-04"),
            &earlier,
            money("2000.00"),
        )
        .unwrap();
        assert_eq!(april.withheld_now, money("240.00"));
    }

    #[test]
    fn a_returned_earlier_payout_never_makes_the_withholding_negative() {
        // The 2,000 taxed 240 was returned; a later 1,000 was taxed on top of it
        // (400 more). A further 100 finds 400 withheld on 1,000 whose tax is 40.
        let earlier = [EarlierPayout {
            month: month("2026-03"),
            gross: money("1000.00"),
            tax: money("400.00"),
        }];
        let next = withholding(
            WithholdingMethod::PerPayment,
            month("2026-03"),
            &earlier,
            money("100.00"),
        )
        .unwrap();
        assert_eq!(next.withheld_now, Money::ZERO);
        assert_eq!(next.net, money("100.00"));
    }

    #[test]
    fn cumulative_withholding_counts_consecutive_months_back_to_the_first_gap() {
        let earlier = [
            EarlierPayout {
                month: month("2026-01"),
                gross: money("3000.00"),
                tax: money("0.00"),
            },
            EarlierPayout {
                month: month("2026-03"),
                gross: money("3000.00"),
                tax: money("0.00"),
            },
            EarlierPayout {
                month: month("2026-04"),
                gross: money("3000.00"),
                tax: money("0.00"),
            },
        ];
        assert_eq!(consecutive_months(month("2026-05"), &earlier), 3);
        assert_eq!(consecutive_months(month("2026-02"), &earlier), 2);
        assert_eq!(consecutive_months(month("2026-07"), &earlier), 1);
        let quote = withholding(
            WithholdingMethod::Cumulative,
            month("2026-05"),
            &earlier,
            money("10000.00"),
        )
        .unwrap();
        assert_eq!(quote.months_count, Some(3));
        assert_eq!(quote.income_to_date, money("19000.00"));
    }

    #[test]
    fn a_success_is_expected_only_for_a_withdrawal_at_the_gateway_already_paid_or_bounced() {
        let unexpected: Vec<WithdrawalState> = WithdrawalState::ALL
            .into_iter()
            .filter(|state| success_is_unexpected(*state))
            .collect();
        assert_eq!(
            unexpected,
            [
                WithdrawalState::Reviewing,
                WithdrawalState::Approved,
                WithdrawalState::Rejected,
                WithdrawalState::Cancelled,
                WithdrawalState::Failed,
            ]
        );
    }

    #[test]
    fn states_round_trip_and_know_whether_they_returned_funds() {
        for state in WithdrawalState::ALL {
            assert_eq!(state.as_str().parse::<WithdrawalState>(), Ok(state));
        }
        assert!(WithdrawalState::Failed.returned_funds());
        assert!(WithdrawalState::Returned.returned_funds() && WithdrawalState::Returned.is_final());
        assert!(!WithdrawalState::Paid.returned_funds());
        assert!(WithdrawalState::Paid.is_final());
        assert!(!WithdrawalState::AwaitingPayeeConfirmation.is_final());
    }
}
