//! The withdrawal workflow (SPEC §2.4): request, review, transfer, confirm.
//!
//! ```text
//!  POST /v1/withdrawals ─► [reserve + tax + review] one transaction: checks under the
//!                          distributor's lock, available → withdrawing, withholding,
//!                          approved (transfer job pushed) or reviewing
//!  ops approve ──► approved + transfer job (same transaction) · reject / cancel ─► funds back
//!  [transfer] job `withdrawal.transfer`:
//!     1. one transaction: approved → transferring (the intent is durable before any call)
//!     2. a re-run (crash, timeout, 5xx) queries the bill by out_bill_no first and
//!        only sends again — with the same number — when the gateway has none
//!     3. the answer is applied under the row lock: awaiting payee / paid / failed
//!  [confirm] the gateway's signed callback, or the poller, whichever is first:
//!     paid → withdrawing to clearing + tax payable + fee income; failed → funds back
//! ```
//!
//! Our tables are the truth; the apalis job only triggers the transfer step,
//! which is idempotent: every write is guarded by the state it was read in
//! and the ledger keys `withdrawal:{id}:{reserve|return|paid}` apply once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use fenrun_integrations::{GatewayError, OutBillNo, PayoutRequest, TransferStatus};
use secrecy::SecretString;
use serde::Serialize;

use crate::clock::Clock;
use crate::domain::banks::BankAccountKind;
use crate::domain::identity::PayoutChannel;
use crate::domain::ids::{DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::money::Money;
use crate::domain::payout_cycle::{PayoutCycle, PayoutSchedule};
use crate::domain::tax::{Month, Withholding, WithholdingMethod};
use crate::domain::withdrawal::{
    self, EarlierPayout, Refusal, RequestFacts, RiskFacts, Speed, StateRefusal, WithdrawalRules,
    WithdrawalState,
};
use crate::domain::withdrawal::{GatewayOutcome, ReviewDecision};
use crate::engine::definition::{ReviewParams, StepKind, StepParams, WorkflowDefinition};
use crate::engine::gateway::{Gateway, GatewayNews, bank_payee};
use crate::store::{
    ApplyOutcome, JobSpec, Store, StoreError, WithdrawalDecision, WithdrawalDraft, WithdrawalFacts,
    WithdrawalRecord, WithdrawalRequestOutcome,
};
use crate::vault::Vault;
use crate::vault::credentials::{open_account, open_identity};

/// The workflow's settings, from `workflows/withdrawal.toml`.
#[derive(Debug, Clone)]
pub struct WithdrawalSettings {
    pub rules: WithdrawalRules,
    pub time_zone: Tz,
    pub method: WithholdingMethod,
    pub transfer_job: JobSpec,
    pub certificate_job: JobSpec,
    pub poll_interval: Duration,
    pub poll_batch_size: i64,
    pub payee_confirmation_timeout: chrono::Duration,
    /// When standard withdrawals are sent (the transfer step's cycle).
    pub payout_schedule: PayoutSchedule,
}

/// How long a bill waits for news before the poller asks, when the confirm
/// step's `poll_interval_ms` is left out.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// Bills asked about per polling round when `poll_batch_size` is left out.
const DEFAULT_POLL_BATCH_SIZE: i64 = 200;
/// Hours a payee has to accept when `payee_confirmation_hours` is left out
/// (WeChat's bills expire after about a day).
const DEFAULT_PAYEE_CONFIRMATION_HOURS: i64 = 24;
/// The settlement cycle when the transfer step names none: daily, at
/// 15:00 in the workflow's zone.
const DEFAULT_PAYOUT_CYCLE: PayoutCycle = PayoutCycle::Daily;
const DEFAULT_CUTOFF_HOUR: u32 = 15;
/// Due transfers a sweep pushes at most (the next sweep takes the rest).
const DUE_SWEEP_LIMIT: i64 = 500;

/// A withdrawal definition the engine cannot run: a step it needs is missing.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ParamError {
    file: String,
    message: String,
}

impl WithdrawalSettings {
    /// The settings of a checked withdrawal definition: its typed step
    /// parameters (range-checked when it was parsed) over the defaults, and
    /// the jobs of its queued steps.
    pub fn from_definition(
        definition: &WorkflowDefinition,
        method: WithholdingMethod,
    ) -> Result<WithdrawalSettings, ParamError> {
        let mut rules = WithdrawalRules::default();
        let mut poll_interval = DEFAULT_POLL_INTERVAL;
        let mut poll_batch_size = DEFAULT_POLL_BATCH_SIZE;
        let mut payee_confirmation_hours = DEFAULT_PAYEE_CONFIRMATION_HOURS;
        let mut payout_schedule = PayoutSchedule {
            cycle: DEFAULT_PAYOUT_CYCLE,
            cutoff: chrono::NaiveTime::from_hms_opt(DEFAULT_CUTOFF_HOUR, 0, 0)
                .expect("a time of day"),
            zone: definition.time_zone(),
        };
        for step in definition.steps() {
            match step.params() {
                StepParams::ReserveFunds(reserve) => {
                    rules.minimum = reserve.minimum.unwrap_or(rules.minimum);
                    rules.daily_limit = reserve.daily_limit.unwrap_or(rules.daily_limit);
                }
                StepParams::WithholdTax(tax) => {
                    rules.express_fee = tax.express_fee.unwrap_or(rules.express_fee);
                }
                StepParams::Review(review) => apply_review_params(&mut rules, review),
                StepParams::Confirm(confirm) => {
                    poll_interval = confirm
                        .poll_interval_ms
                        .map_or(poll_interval, Duration::from_millis);
                    poll_batch_size = confirm.poll_batch_size.unwrap_or(poll_batch_size);
                    payee_confirmation_hours = confirm
                        .payee_confirmation_hours
                        .unwrap_or(payee_confirmation_hours);
                }
                StepParams::Transfer(transfer) => {
                    payout_schedule.cycle = transfer.cycle.unwrap_or(payout_schedule.cycle);
                    payout_schedule.cutoff = transfer.cutoff.unwrap_or(payout_schedule.cutoff);
                }
                StepParams::None => {}
            }
        }
        Ok(WithdrawalSettings {
            rules,
            time_zone: definition.time_zone(),
            method,
            transfer_job: queued_job(definition, StepKind::Transfer)?,
            certificate_job: queued_job(definition, StepKind::Certificate)?,
            poll_interval,
            poll_batch_size,
            payee_confirmation_timeout: chrono::Duration::hours(payee_confirmation_hours),
            payout_schedule,
        })
    }
}

impl WithdrawalSettings {
    /// With `at_once`, standard withdrawals ignore the cycle (the
    /// `standard_withdrawals_at_once` setting of tests and benchmarks).
    pub fn sending_standard_at_once(mut self, at_once: bool) -> WithdrawalSettings {
        if at_once {
            self.payout_schedule.cycle = PayoutCycle::Immediate;
        }
        self
    }
}

fn apply_review_params(rules: &mut WithdrawalRules, review: &ReviewParams) {
    let hours = chrono::Duration::hours;
    rules.auto_approve_limit = review
        .auto_approve_limit
        .unwrap_or(rules.auto_approve_limit);
    rules.new_distributor_age = review
        .new_distributor_hours
        .map_or(rules.new_distributor_age, hours);
    rules.account_change_window = review
        .account_change_hours
        .map_or(rules.account_change_window, hours);
    rules.many_withdrawals = review
        .many_withdrawals_per_day
        .unwrap_or(rules.many_withdrawals);
    rules.clawback_window = review
        .clawback_lookback_hours
        .map_or(rules.clawback_window, hours);
}

/// The job of the definition's step of `kind`, which runs from a queue.
fn queued_job(definition: &WorkflowDefinition, kind: StepKind) -> Result<JobSpec, ParamError> {
    let missing = |message: String| ParamError {
        file: definition.file().to_owned(),
        message,
    };
    let step = definition
        .step(kind)
        .ok_or_else(|| missing(format!("the workflow has no {} step", kind.name())))?;
    Ok(JobSpec {
        queue: step
            .queue()
            .ok_or_else(|| missing(format!("the {} step needs a queue", step.name())))?
            .to_owned(),
        max_attempts: step.retry().max_attempts,
    })
}

/// A withdrawal request, validated at the edge: the amount is parsed to
/// [`Money`] there ([`WithdrawalRequest::parse_amount`]).
#[derive(Debug, Clone)]
pub struct WithdrawalRequest {
    pub distributor_id: DistributorId,
    pub amount: Money,
    pub payout_account_id: PayoutAccountId,
    pub speed: Speed,
}

impl WithdrawalRequest {
    /// Parses a requested amount: a string with at most two decimals
    /// (three are a rule's refusal, `amount_precision`; anything else is
    /// malformed).
    ///
    /// # Errors
    /// [`Refusal::TooManyDecimals`] or [`WithdrawalError::BadAmount`].
    pub fn parse_amount(text: &str) -> Result<Money, WithdrawalError> {
        match Money::parse(text) {
            Ok(amount) => Ok(amount),
            Err(crate::domain::money::MoneyError::TooManyDecimals) => {
                Err(Refusal::TooManyDecimals.into())
            }
            Err(error) => Err(WithdrawalError::BadAmount(error.to_string())),
        }
    }
}

/// What a request would come to: the answer of a quote.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    /// When the money would be sent if requested now and approved at once.
    pub send_after: DateTime<Utc>,
    pub cycle: String,
    pub gross: Money,
    pub tax: Money,
    pub fee: Money,
    pub net: Money,
    pub withholding: Withholding,
    pub review_required: bool,
    pub risk_flags: Vec<withdrawal::RiskFlag>,
}

#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The withdrawal is not in a state that allows the step (→ 409).
    #[error(transparent)]
    State(#[from] StateRefusal),
    #[error("amount: {0}")]
    BadAmount(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("the payout gateway is not connected yet")]
    GatewayNotReady,
    #[error("gateway: {0}")]
    Gateway(GatewayError),
    #[error("the callback's amount for bill {out_bill_no} differs from the withdrawal's net")]
    CallbackMismatch { out_bill_no: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a step attempt did not finish; [`StepFailure`] says whether apalis
/// retries it with backoff or fails the job at once.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("gateway: {0}")]
    Gateway(GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed credential that cannot be opened (its key is gone or the row
    /// was altered): no retry brings the key back.
    #[error("opening the payout credentials: {0}")]
    Vault(String),
    #[error("the payout gateway is not connected yet")]
    GatewayNotReady,
}

impl crate::engine::step::StepFailure for StepError {
    fn is_retryable(&self) -> bool {
        match self {
            StepError::Gateway(GatewayError::Transient(_) | GatewayError::Ambiguous(_)) => true,
            StepError::Gateway(GatewayError::Rejected { .. }) => false,
            StepError::Store(store) => store.is_retryable(),
            StepError::Vault(_) => false,
            StepError::GatewayNotReady => true,
        }
    }
}

/// What the engine shares with its steps.
pub struct WithdrawalEngine {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    vault: Arc<Vault>,
    gateway: OnceLock<Arc<Gateway>>,
    settings: WithdrawalSettings,
    /// This process's own part of the keys of the transfer jobs it pushes
    /// to resume or sweep (12 hex digits): unique per start, so a restart
    /// can push again what a job of the crashed process left undone.
    start_id: String,
}

impl WithdrawalEngine {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        vault: Arc<Vault>,
        settings: WithdrawalSettings,
    ) -> WithdrawalEngine {
        WithdrawalEngine {
            store,
            clock,
            vault,
            gateway: OnceLock::new(),
            settings,
            start_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        }
    }

    pub fn settings(&self) -> &WithdrawalSettings {
        &self.settings
    }

    /// Connects the payout gateway once the callback address is known.
    pub fn connect_gateway(&self, gateway: Arc<Gateway>) {
        if self.gateway.set(gateway).is_err() {
            tracing::warn!("the payout gateway was already connected; keeping the first");
        }
    }

    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.gateway.get()
    }

    fn draft(
        &self,
        request: &WithdrawalRequest,
        idempotency_key: String,
        request_sha256: String,
    ) -> Result<WithdrawalDraft, WithdrawalError> {
        let amount = request.amount;
        let now = self.clock.now();
        let local = now.with_timezone(&self.settings.time_zone);
        let id = WithdrawalId::generate();
        let (send_after, payout_cycle) = match request.speed {
            Speed::Express => (now, EXPRESS_CYCLE.to_owned()),
            Speed::Standard => (
                self.settings.payout_schedule.next_send_at(now),
                self.settings.payout_schedule.to_string(),
            ),
        };
        let out_bill_no = OutBillNo::for_withdrawal(id.as_str())
            .map_err(WithdrawalError::Gateway)?
            .as_str()
            .to_owned();
        Ok(WithdrawalDraft {
            id,
            out_bill_no,
            distributor_id: request.distributor_id.clone(),
            payout_account_id: request.payout_account_id.clone(),
            speed: request.speed,
            amount,
            idempotency_key,
            request_sha256,
            now,
            local_day: local.format("%Y-%m-%d").to_string(),
            tax_month: local.format("%Y-%m").to_string(),
            day_ago: now - chrono::Duration::hours(24),
            clawback_since: now - self.settings.rules.clawback_window,
            send_after,
            payout_cycle,
        })
    }

    /// The checks and figures of a request, from facts read under the lock.
    fn decide(
        &self,
        draft: &WithdrawalDraft,
        facts: &WithdrawalFacts,
    ) -> Result<(WithdrawalDecision, Withholding), WithdrawalError> {
        let rules = &self.settings.rules;
        withdrawal::check_request(
            rules,
            &RequestFacts {
                amount: draft.amount,
                available: facts.available,
                distributor_status: facts.distributor.status.as_str().to_owned(),
                identity_on_file: facts.identity_on_file,
                account_owned: facts.account.is_some(),
                gross_today: facts.gross_today,
            },
        )?;
        let account = facts.account.as_ref().ok_or(Refusal::ForeignAccount)?;
        if let Some(gateway) = self.gateway.get()
            && !gateway.pays(account.channel)
        {
            return Err(Refusal::ChannelNotConfigured {
                channel: account.channel.as_str().to_owned(),
            }
            .into());
        }
        let month = Month::parse(&draft.tax_month)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let earlier = facts
            .year_payouts
            .iter()
            .map(|(month, gross, tax)| {
                Ok(EarlierPayout {
                    month: Month::parse(month)
                        .map_err(|error| StoreError::Corrupt(error.to_string()))?,
                    gross: *gross,
                    tax: *tax,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let method = self.effective_method(month);
        let withholding = withdrawal::withholding(method, month, &earlier, draft.amount)
            .map_err(|error| StoreError::Corrupt(format!("withholding: {error}")))?;
        let fee = withdrawal::fee(rules, draft.speed, draft.amount)
            .map_err(|error| StoreError::Corrupt(format!("fee: {error}")))?;
        let net = draft
            .amount
            .checked_sub(withholding.withheld_now)
            .and_then(|rest| rest.checked_sub(fee))
            .filter(|net| !net.is_negative() && !net.is_zero())
            .ok_or_else(|| StoreError::Corrupt("net amount is not positive".to_owned()))?;
        let risk_flags = withdrawal::risk_flags(
            rules,
            &RiskFacts {
                gross: draft.amount,
                now: draft.now,
                distributor_since: facts.distributor.created_at,
                newest_account_at: facts.newest_account_at,
                withdrawals_last_24h: u32::try_from(facts.withdrawals_last_24h).unwrap_or(u32::MAX),
                last_clawback_at: facts.last_clawback_at,
                identity_changed_after_certificate: facts.identity_review_owed,
            },
        );
        let state = if risk_flags.is_empty() {
            WithdrawalState::Approved
        } else {
            WithdrawalState::Reviewing
        };
        let decision = WithdrawalDecision {
            channel: account.channel,
            gross: draft.amount,
            tax: withholding.withheld_now,
            fee,
            net,
            tax_method: method.as_str().to_owned(),
            withholding: serde_json::to_string(&withholding)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            risk_flags,
            state,
        };
        Ok((decision, withholding))
    }

    /// The cumulative method applies from 2025-10 (2025年第16号); an agent
    /// configured for it withholds per payment before.
    fn effective_method(&self, month: Month) -> WithholdingMethod {
        match self.settings.method {
            WithholdingMethod::Cumulative if month < Month::new(2025, 10).expect("a month") => {
                WithholdingMethod::PerPayment
            }
            method => method,
        }
    }

    /// What a request would come to, changing nothing.
    pub async fn quote(&self, request: &WithdrawalRequest) -> Result<Quote, WithdrawalError> {
        let draft = self.draft(request, String::new(), String::new())?;
        let facts = self.store.withdrawal_facts(&draft).await?;
        let (decision, withholding) = self.decide(&draft, &facts)?;
        Ok(Quote {
            send_after: draft.send_after,
            cycle: draft.payout_cycle,
            gross: decision.gross,
            tax: decision.tax,
            fee: decision.fee,
            net: decision.net,
            withholding,
            review_required: decision.state == WithdrawalState::Reviewing,
            risk_flags: decision.risk_flags,
        })
    }

    /// Records a request: checks, reserve, withholding and review in one
    /// transaction; the same key and body answer the same withdrawal.
    pub async fn request(
        &self,
        request: &WithdrawalRequest,
        idempotency_key: String,
        request_sha256: String,
    ) -> Result<WithdrawalRequestOutcome, WithdrawalError> {
        let draft = self.draft(request, idempotency_key, request_sha256)?;
        let outcome = self
            .store
            .request_withdrawal(&draft, &self.settings.transfer_job, |facts| {
                self.decide(&draft, facts).map(|(decision, _)| decision)
            })
            .await?;
        if let WithdrawalRequestOutcome::Created(created) = &outcome {
            tracing::info!(withdrawal_id = %created.id, distributor_id = %created.distributor_id, state = %created.state, gross = %created.gross, "withdrawal requested");
        }
        Ok(outcome)
    }

    pub async fn review(
        &self,
        id: &WithdrawalId,
        decision: &ReviewDecision,
        actor: &crate::store::Actor,
    ) -> Result<WithdrawalRecord, WithdrawalError> {
        let record = self
            .store
            .review_withdrawal(
                id,
                decision,
                &self.settings.transfer_job,
                self.clock.now(),
                actor,
            )
            .await??;
        tracing::info!(withdrawal_id = %id, state = %record.state, "withdrawal reviewed");
        Ok(record)
    }

    /// The distributor's cancellation: before the transfer, the funds come
    /// back at once; while the payee has not accepted, the bill is cancelled
    /// at the gateway first and the funds come back when it says so.
    pub async fn cancel(&self, id: &WithdrawalId) -> Result<WithdrawalRecord, WithdrawalError> {
        let Some(current) = self.store.withdrawal(id).await? else {
            return Err(WithdrawalError::NotFound {
                what: "withdrawal",
                id: id.to_string(),
            });
        };
        if current.state == WithdrawalState::AwaitingPayeeConfirmation {
            let gateway = self.gateway.get().ok_or(WithdrawalError::GatewayNotReady)?;
            match gateway.cancel(current.channel, &current.out_bill_no).await {
                Ok(news) => {
                    self.apply(&current, news, "cancel requested by the distributor", 1)
                        .await?;
                }
                Err(GatewayError::Rejected { code, .. }) => {
                    // The gateway will not cancel the bill: the payee has
                    // accepted it (or it ended otherwise) before its callback
                    // reached us. Learn where it stands and record that, then
                    // tell the distributor the cancel came too late.
                    tracing::info!(withdrawal_id = %id, code = %code, "the gateway refused to cancel the bill; asking where it stands");
                    if let Ok(Some(news)) =
                        gateway.query(current.channel, &current.out_bill_no).await
                    {
                        self.apply(&current, news, "query after a refused cancel", 1)
                            .await?;
                    }
                    let after = self.current(id).await?;
                    if after.state != WithdrawalState::Cancelled {
                        return Err(StateRefusal::GatewayKeptBill {
                            id: id.to_string(),
                            state: after.state,
                        }
                        .into());
                    }
                }
                Err(error) => return Err(WithdrawalError::Gateway(error)),
            }
            return self.current(id).await;
        }
        Ok(self.store.cancel_withdrawal(id, self.clock.now()).await??)
    }

    async fn current(&self, id: &WithdrawalId) -> Result<WithdrawalRecord, WithdrawalError> {
        self.store
            .withdrawal(id)
            .await?
            .ok_or(WithdrawalError::NotFound {
                what: "withdrawal",
                id: id.to_string(),
            })
    }

    async fn apply(
        &self,
        withdrawal: &WithdrawalRecord,
        news: GatewayNews,
        source: &str,
        attempt: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let outcome = news.into_outcome();
        let applied = self
            .store
            .apply_gateway_outcome(
                &withdrawal.id,
                &outcome,
                source,
                attempt,
                &self.settings.certificate_job,
                self.clock.now(),
            )
            .await?;
        if let (
            GatewayOutcome::Paid { .. },
            ApplyOutcome::Unchanged(state) | ApplyOutcome::Contradicts(state),
        ) = (&outcome, &applied)
            && withdrawal::success_is_unexpected(*state)
        {
            // Under the row lock the withdrawal was not at the gateway: it
            // was never sent, or its funds already went back. Nothing was
            // applied; money may have left twice, so a person must look.
            tracing::error!(withdrawal_id = %withdrawal.id, out_bill_no = %withdrawal.out_bill_no, channel = withdrawal.channel.as_str(), state = %state, source, "the gateway says a bill was paid that fenrun never sent or whose funds it returned: not applied; reconcile by hand");
            crate::telemetry::metrics::gateway_unexpected_success(withdrawal.channel.as_str());
            return Ok(applied);
        }
        match &applied {
            ApplyOutcome::Moved(state) => {
                if *state == WithdrawalState::Paid {
                    crate::telemetry::metrics::money_moved("payout_net", withdrawal.net.fen());
                    crate::telemetry::metrics::money_moved("tax_withheld", withdrawal.tax.fen());
                    crate::telemetry::metrics::money_moved("fee", withdrawal.fee.fen());
                }
                tracing::info!(withdrawal_id = %withdrawal.id, step = "confirm", attempt, state = %state, source, "withdrawal moved");
            }
            ApplyOutcome::Contradicts(state) => {
                tracing::error!(withdrawal_id = %withdrawal.id, step = "confirm", state = %state, source, news = ?outcome, "gateway news contradicts a final state: not applied; reconcile by hand");
            }
            ApplyOutcome::Unchanged(_) => {}
        }
        Ok(applied)
    }

    /// The transfer step (job `withdrawal.transfer`).
    pub async fn run_transfer(&self, id: &WithdrawalId, attempt: i64) -> Result<(), StepError> {
        let now = self.clock.now();
        let Some(before) = self.store.begin_transfer_attempt(id, attempt, now).await? else {
            tracing::warn!(withdrawal_id = %id, "transfer job for an unknown withdrawal: nothing to do");
            return Ok(());
        };
        if before.state == WithdrawalState::Approved && !before.is_due(now) {
            // Run before its cycle's cut-off (the queue's clock is ahead of
            // the workflow's, as under a simulated clock): the due sweep
            // pushes it again once the cut-off comes.
            tracing::info!(withdrawal_id = %id, send_after = ?before.send_after, "transfer not due yet: waits for its cut-off");
            return Ok(());
        }
        let gateway = self.gateway.get().ok_or(StepError::GatewayNotReady)?;
        match before.state {
            WithdrawalState::Approved => self.send(gateway, &before, attempt).await,
            WithdrawalState::Transferring | WithdrawalState::AwaitingPayeeConfirmation => {
                // The outcome of an earlier attempt is unknown: ask before sending again.
                match gateway.query(before.channel, &before.out_bill_no).await {
                    Ok(Some(news)) => {
                        self.apply(&before, news, "query", attempt).await?;
                        Ok(())
                    }
                    Ok(None) if before.state == WithdrawalState::Transferring => {
                        self.send(gateway, &before, attempt).await
                    }
                    Ok(None) => Ok(()),
                    Err(error) => Err(StepError::Gateway(error)),
                }
            }
            _ => Ok(()),
        }
    }

    async fn send(
        &self,
        gateway: &Gateway,
        withdrawal: &WithdrawalRecord,
        attempt: i64,
    ) -> Result<(), StepError> {
        let request = self.payout_request(withdrawal).await?;
        match gateway.transfer(withdrawal.channel, &request).await {
            Ok(news) => {
                self.apply(withdrawal, news, "transfer answer", attempt)
                    .await?;
                Ok(())
            }
            Err(GatewayError::Rejected { code, reason }) => {
                tracing::warn!(withdrawal_id = %withdrawal.id, step = "transfer", attempt, code = %code, "the gateway refused the transfer for good; returning the funds");
                self.apply(
                    withdrawal,
                    GatewayNews::Status {
                        status: TransferStatus::Failed {
                            reason: format!("{code}: {reason}"),
                        },
                        bill_no: None,
                    },
                    "transfer refused",
                    attempt,
                )
                .await?;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(withdrawal_id = %withdrawal.id, step = "transfer", attempt, error = %error, "transfer outcome unknown or refused for now; the next attempt queries first");
                Err(StepError::Gateway(error))
            }
        }
    }

    async fn payout_request(
        &self,
        withdrawal: &WithdrawalRecord,
    ) -> Result<PayoutRequest, StepError> {
        let account = self
            .store
            .payout_account(&withdrawal.payout_account_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("payout account of {}", withdrawal.id)))?;
        let payee_account = open_account(&self.vault, &account)
            .map_err(|error| StepError::Vault(error.to_string()))?;
        let bank_account = account.bank_account.as_ref().map(bank_payee);
        // A company's account is in the company's name, which the bank checks
        // the payee's name against; any other account is the distributor's own.
        let payee_name = match account
            .bank_account
            .as_ref()
            .and_then(BankAccountKind::company)
        {
            Some(company) => Some(SecretString::from(company.company_name())),
            None => match self.store.identity(&withdrawal.distributor_id).await? {
                Some(identity) => Some(
                    open_identity(&self.vault, &identity)
                        .map_err(|error| StepError::Vault(error.to_string()))?
                        .0,
                ),
                None => None,
            },
        };
        Ok(PayoutRequest {
            out_bill_no: OutBillNo::for_withdrawal(&withdrawal.out_bill_no)
                .map_err(StepError::Gateway)?,
            amount: fenrun_integrations::AmountFen(withdrawal.net.fen()),
            remark: "佣金提现".to_owned(),
            payee_account,
            payee_name,
            bank_account,
        })
    }

    /// A verified gateway callback: applies its news to the withdrawal of
    /// its bill. Unknown bills and amounts that do not match change nothing.
    /// `None`: no withdrawal has this bill; the callback was recorded (an
    /// error and `fenrun_gateway_unexpected_success_total` when it says
    /// paid) and nothing else can be done with it.
    pub async fn on_callback(
        &self,
        news: CallbackNews,
    ) -> Result<Option<ApplyOutcome>, WithdrawalError> {
        let Some(withdrawal) = self
            .store
            .withdrawal_by_out_bill_no(&news.out_bill_no)
            .await?
        else {
            let GatewayNews::Status { status, .. } = &news.news;
            let dialect = news.dialect.as_str();
            if matches!(status, TransferStatus::Succeeded) {
                tracing::error!(out_bill_no = %news.out_bill_no, dialect, "the gateway says a bill was paid that fenrun never sent: nothing applied; reconcile by hand");
                crate::telemetry::metrics::gateway_unexpected_success(dialect);
            } else {
                tracing::warn!(out_bill_no = %news.out_bill_no, dialect, "callback for a bill fenrun never sent: ignored");
            }
            return Ok(None);
        };
        let routed = self
            .gateway
            .get()
            .and_then(|gateway| gateway.dialect_of(withdrawal.channel));
        if routed != Some(news.dialect) {
            // A genuine notification of one rail about a payout sent on
            // another: the bill numbers of two merchants collided, or the
            // routing changed under a payout in flight. Either way it is not
            // this withdrawal's news.
            tracing::error!(withdrawal_id = %withdrawal.id, channel = withdrawal.channel.as_str(), dialect = news.dialect.as_str(), "a notification arrived on a rail this withdrawal was not sent on: not applied; reconcile by hand");
            return Err(WithdrawalError::CallbackMismatch {
                out_bill_no: news.out_bill_no,
            });
        }
        if news.amount_fen != withdrawal.net.fen() {
            tracing::error!(withdrawal_id = %withdrawal.id, callback_fen = news.amount_fen, net_fen = withdrawal.net.fen(), "callback amount differs from the withdrawal's net: not applied");
            return Err(WithdrawalError::CallbackMismatch {
                out_bill_no: news.out_bill_no,
            });
        }
        Ok(Some(
            self.apply(&withdrawal, news.news, "callback", 1).await?,
        ))
    }

    /// One round of the poller: asks the gateway about bills that have heard
    /// nothing for a poll interval, and cancels payee confirmations that
    /// waited too long. Returns how many withdrawals it looked at.
    pub async fn poll_once(&self) -> Result<usize, StepError> {
        let Some(gateway) = self.gateway.get() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let quiet_since = now
            - chrono::Duration::from_std(self.settings.poll_interval)
                .unwrap_or(chrono::Duration::seconds(15));
        let open = self
            .store
            .withdrawals_in_states(
                &[
                    WithdrawalState::Transferring,
                    WithdrawalState::AwaitingPayeeConfirmation,
                ],
                quiet_since,
                self.settings.poll_batch_size,
            )
            .await?;
        for withdrawal in &open {
            let news = match gateway
                .query(withdrawal.channel, &withdrawal.out_bill_no)
                .await
            {
                Ok(Some(news)) => news,
                Ok(None) => {
                    // Never reached the gateway (the job ran out of attempts
                    // while it was unreachable): try the transfer again.
                    self.store
                        .push_transfer(
                            &self.settings.transfer_job,
                            &withdrawal.id,
                            format!("transfer:{}:poll:{}", withdrawal.id, now.timestamp()),
                        )
                        .await?;
                    continue;
                }
                Err(error) => {
                    tracing::debug!(withdrawal_id = %withdrawal.id, error = %error, "poll failed; next round");
                    continue;
                }
            };
            let applied = self.apply(withdrawal, news, "poll", 1).await?;
            if applied == ApplyOutcome::Unchanged(WithdrawalState::AwaitingPayeeConfirmation)
                && now - withdrawal.updated_at > self.settings.payee_confirmation_timeout
            {
                tracing::info!(withdrawal_id = %withdrawal.id, "payee did not confirm in time: cancelling the bill");
                if let Ok(news) = gateway
                    .cancel(withdrawal.channel, &withdrawal.out_bill_no)
                    .await
                {
                    self.apply(withdrawal, news, "payee confirmation expired", 1)
                        .await?;
                }
            } else if applied == ApplyOutcome::Unchanged(withdrawal.state) {
                self.store.mark_polled(&withdrawal.id, now).await?;
            }
        }
        Ok(open.len())
    }

    /// After a start: transfers that were approved or under way get a job of
    /// this start's own, so they resume now instead of after the orphan timeout.
    pub async fn resume(&self) -> Result<usize, StoreError> {
        self.store
            .resume_transfers(
                &self.settings.transfer_job,
                &self.start_id,
                self.clock.now(),
            )
            .await
    }

    /// Pushes a due-now transfer job for every approved withdrawal whose
    /// cut-off came at least `grace` ago (after a simulated clock's jump,
    /// with no grace; in the poller, a poll interval, so the job pushed for
    /// the cut-off runs first and this only catches what it missed). Once
    /// per withdrawal and cut-off in a process; again after a restart.
    pub async fn send_due(&self, grace: chrono::Duration) -> Result<usize, StoreError> {
        let due_by = self.clock.now() - grace;
        let found = self
            .store
            .push_due_transfers(
                &self.settings.transfer_job,
                &self.start_id,
                due_by,
                DUE_SWEEP_LIMIT,
            )
            .await?;
        if found > 0 {
            tracing::info!(withdrawals = found, due_by = %due_by, "transfers past their cut-off pushed");
        }
        Ok(found)
    }

    /// The tax month a time falls in, in the workflow's zone.
    pub fn tax_month(&self, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&self.settings.time_zone);
        format!("{:04}-{:02}", local.year(), local.month())
    }
}

/// The cycle an express withdrawal is answered with: it goes at once.
pub const EXPRESS_CYCLE: &str = "express";

/// A verified, decrypted callback's content.
#[derive(Debug, Clone)]
pub struct CallbackNews {
    /// The rail whose notification route it came in on.
    pub dialect: crate::engine::gateway::Dialect,
    pub out_bill_no: String,
    pub amount_fen: i64,
    pub news: GatewayNews,
}

impl PayoutChannel {
    /// The gateway channel of a payout account's channel.
    pub fn gateway_channel(self) -> fenrun_integrations::Channel {
        match self {
            PayoutChannel::Wechat => fenrun_integrations::Channel::Wechat,
            PayoutChannel::Alipay => fenrun_integrations::Channel::Alipay,
            PayoutChannel::Bank => fenrun_integrations::Channel::Bank,
        }
    }
}
