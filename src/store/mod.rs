//! All SQL of fenrun, for SQLite and PostgreSQL. Nothing outside this module
//! touches sqlx.
//!
//! The domain SQL is written once, in `sql/`, in the dialect both databases
//! share (`$n` parameters, `on conflict`, `returning`). Each backend
//! (`sqlite/`, `postgres/`) mounts those files as its own modules, compiled
//! against its `dialect.rs`: the written contract of the few things that
//! differ (row locks, bulk statements, job pushes, how a write transaction
//! begins). [`Store`] picks the backend from the database URL.

pub mod error;
mod postgres;
pub mod records;
pub mod scratch;
mod sqlite;
mod time;

use chrono::{DateTime, Utc};

use crate::domain::access::Role;
use crate::domain::ids::{CertificateNumber, DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::ledger::{AccountId, Transfer};
use crate::domain::money::Money;
use crate::domain::tax::Month;
use crate::domain::withdrawal::{GatewayOutcome, ReviewDecision, StateRefusal};
pub use error::StoreError;
pub use records::{
    AccountMismatch, Activity, Actor, AppliedYear, ApplyOutcome, AuditEntry, Balance, BatchOutcome,
    CalendarLock, CertificateRecord, ClosingDistributor, CorrectionOutcome, Creation, Distributor,
    DistributorEvent, FinishedReconciliation, FlaggedOrder, HoldPlan, IngestOutcome, ItemRecord,
    LedgerReport, LifecycleChange, LineRecord, LineUpdate, MismatchRecord, MonthCloseRecord,
    Movements, NewCalendarYear, NewCertificate, NewDistributor, NewMismatch, NewPlan, NewTeamBonus,
    OrderEvent, OrderRecord, OrderSnapshot, PreparedDeclaration, PreparedOrder,
    ReconciliationPayout, ReconciliationRun, RefundDecision, RefundOutcome, RefundRequest,
    Reinstatement, ReplanCounts, ReturnedPayout, ReviewChange, ReviewedPage, Revocation,
    RunningTotals, SealedIdentity, SealedPayoutAccount, SessionRecord, StatementRecord, StoredPlan,
    TeamBonusRecord, TokenListing, TokenRecord, TotalsDelta, TotalsKeys, TransferOutcome,
    UnresolvedMismatches, VoidOutcome, VoidedOrder, WithdrawalDecision, WithdrawalDraft,
    WithdrawalEvent, WithdrawalFacts, WithdrawalRecord, WithdrawalRequestOutcome, WithdrawalTotals,
    YearApplication,
};
pub use records::{
    AttemptEffect, ClaimedDelivery, DeliveryFilter, NewWebhookEndpoint, ReplayRefusal,
    WebhookAttempt, WebhookDeliveryRecord, WebhookEndpointRecord,
};
/// The journal as a page shows it (see `Store::ledger_transfers_of`).
pub use records::{JournalPosting, JournalTransfer};

/// Largest page any list query returns, whatever the caller asks for.
pub const MAX_PAGE: i64 = 500;

/// Our migrations' bookkeeping table; apalis keeps `_sqlx_migrations` to itself.
pub const MIGRATIONS_TABLE: &str = "fenrun_migrations";

/// Pool size unless the settings say otherwise: SQLite has one writer at a
/// time anyway, so a few readers beside it are all a pool can use.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How long a SQLite writer waits for the lock unless the settings say
/// otherwise: longer than any one write transaction should hold it.
pub const DEFAULT_SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

/// Connection settings the store needs (a slice of the application's settings).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size. SQLite has one writer at a time anyway; readers use the rest.
    pub max_connections: u32,
    /// How long a SQLite writer waits for the lock before failing.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            sqlite_busy_timeout_ms: DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
        }
    }
}

/// How to enqueue a step's job: its queue and how often apalis may try it.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub queue: String,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

enum Backend {
    Sqlite(sqlite::Repo),
    Postgres(postgres::Repo),
}

/// The database, whichever backend the URL names. Cheap to share behind an `Arc`.
pub struct Store {
    backend: Backend,
}

/// Runs the same call on whichever backend is open.
macro_rules! dispatch {
    ($self:ident, $repo:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($repo) => $call,
            Backend::Postgres($repo) => $call,
        }
    };
}

/// Which jobs the ops console lists.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub now_secs: i64,
    /// waiting, scheduled, retrying, running, failed or done.
    pub state: Option<String>,
    pub queue: Option<String>,
    pub after: Option<String>,
    pub limit: i64,
}

/// A job as the ops console shows it; times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsJob {
    pub id: String,
    pub queue: String,
    /// waiting, scheduled, retrying, running, failed or done.
    pub state: String,
    /// apalis's own status (Pending, Queued, Running, Done, Failed, Killed).
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub lock_at: Option<i64>,
    pub lock_by: Option<String>,
    pub done_at: Option<i64>,
    /// When the worker holding the job last said it was alive.
    pub worker_last_seen: Option<i64>,
    /// The last attempt's result as apalis recorded it (an error's text).
    pub last_result: Option<String>,
    /// The job's JSON payload (e.g. `{"withdrawal_id": …}`).
    pub payload: String,
}

/// Opening the database, and what the health checks and start-up ask of it.
impl Store {
    /// Opens the database named by `url` (`sqlite://…` or `postgres://…`),
    /// creating a SQLite file if needed, and applies every migration: apalis's
    /// and ours.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let backend = match backend_of(url) {
            Some(BackendKind::Sqlite) => {
                Backend::Sqlite(sqlite::Repo::connect(url, options).await?)
            }
            Some(BackendKind::Postgres) => {
                Backend::Postgres(postgres::Repo::connect(url, options).await?)
            }
            None => {
                return Err(StoreError::Database(sqlx::Error::Configuration(
                    format!(
                        "database URL must start with sqlite: or postgres:, got {:?}",
                        redact_url(url)
                    )
                    .into(),
                )));
            }
        };
        Ok(Store { backend })
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.ping().await)
    }

    pub async fn close(&self) {
        dispatch!(self, repo => repo.close().await)
    }

    pub fn queue_pool(&self) -> QueuePool {
        match &self.backend {
            Backend::Sqlite(repo) => QueuePool::Sqlite(repo.pool().clone()),
            Backend::Postgres(repo) => QueuePool::Postgres(repo.pool().clone()),
        }
    }

    /// How SQLite would plan apalis's ack query (`None` on PostgreSQL).
    pub async fn sqlite_ack_plan(&self) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(repo) => Ok(Some(sqlite::ack_plan(repo.pool()).await?)),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// `PRAGMA synchronous` of every pooled SQLite connection (`None` on PostgreSQL).
    pub async fn sqlite_synchronous_levels(&self) -> Result<Option<Vec<i64>>, StoreError> {
        let Backend::Sqlite(repo) = &self.backend else {
            return Ok(None);
        };
        let mut held = Vec::new();
        let mut levels = Vec::new();
        let size = repo.pool().size().max(1);
        for _ in 0..size {
            let mut conn = repo.pool().acquire().await?;
            levels.push(
                sqlx::query_scalar("pragma synchronous")
                    .fetch_one(&mut *conn)
                    .await?,
            );
            held.push(conn);
        }
        Ok(Some(levels))
    }
}

/// Distributors, the ledger and commission plans; the SQL is in `sql/ledger.rs`.
impl Store {
    pub async fn create_distributor(
        &self,
        new: &NewDistributor,
        now: DateTime<Utc>,
    ) -> Result<Creation<Distributor>, StoreError> {
        dispatch!(self, repo => repo.create_distributor(new, now).await)
    }

    pub async fn distributor(&self, id: &DistributorId) -> Result<Option<Distributor>, StoreError> {
        dispatch!(self, repo => repo.distributor(id).await)
    }

    pub async fn distributors_by_ids(&self, ids: &[&str]) -> Result<Vec<Distributor>, StoreError> {
        dispatch!(self, repo => repo.distributors_by_ids(ids).await)
    }

    pub async fn list_distributors(
        &self,
        after: Option<&DistributorId>,
        limit: i64,
    ) -> Result<Vec<Distributor>, StoreError> {
        dispatch!(self, repo => repo.list_distributors(after, limit).await)
    }

    pub async fn balance(&self, id: &DistributorId) -> Result<Option<Balance>, StoreError> {
        dispatch!(self, repo => repo.balance(id).await)
    }

    pub async fn transfer(
        &self,
        transfer: &Transfer,
        now: DateTime<Utc>,
    ) -> Result<TransferOutcome, StoreError> {
        dispatch!(self, repo => repo.transfer(transfer, now).await)
    }

    pub async fn adjust(
        &self,
        transfer: &Transfer,
        now: DateTime<Utc>,
        actor: &Actor,
        target: &str,
        details: serde_json::Value,
    ) -> Result<TransferOutcome, StoreError> {
        dispatch!(self, repo => repo.adjust(transfer, now, actor, target, details).await)
    }

    pub async fn account_balance(&self, account: &AccountId) -> Result<Option<Money>, StoreError> {
        dispatch!(self, repo => repo.account_balance(account).await)
    }

    pub async fn verify_ledger(&self) -> Result<LedgerReport, StoreError> {
        dispatch!(self, repo => repo.verify_ledger().await)
    }

    pub async fn insert_plan(
        &self,
        plan: &NewPlan<'_>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<StoredPlan, StoreError> {
        dispatch!(self, repo => repo.insert_plan(plan, actor, now).await)
    }

    pub async fn ensure_default_plan(
        &self,
        name: &str,
        source_toml: &str,
        source_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.ensure_default_plan(name, source_toml, source_sha256, now).await)
    }

    pub async fn plan_in_force(&self, at: DateTime<Utc>) -> Result<Option<StoredPlan>, StoreError> {
        dispatch!(self, repo => repo.plan_in_force(at).await)
    }

    pub async fn list_plans(&self) -> Result<Vec<StoredPlan>, StoreError> {
        dispatch!(self, repo => repo.list_plans().await)
    }
}

/// The business calendar's applied years and the re-planning of holds; the
/// SQL is in `sql/calendar.rs`.
impl Store {
    pub async fn calendar_generation(&self) -> Result<i64, StoreError> {
        dispatch!(self, repo => repo.calendar_generation().await)
    }

    pub async fn calendar_years(&self, calendar: &str) -> Result<Vec<AppliedYear>, StoreError> {
        dispatch!(self, repo => repo.calendar_years(calendar).await)
    }

    pub async fn pending_replans(&self) -> Result<Vec<AppliedYear>, StoreError> {
        dispatch!(self, repo => repo.pending_replans().await)
    }

    pub async fn apply_calendar_year(
        &self,
        new: &NewCalendarYear<'_>,
        actor: &Actor,
        release_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<YearApplication, StoreError> {
        dispatch!(self, repo => repo.apply_calendar_year(new, actor, release_job, now).await)
    }

    pub async fn replan_holds<F>(
        &self,
        expected_generation: i64,
        from: DateTime<Utc>,
        plan: F,
        describe: &str,
        release_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<ReplanCounts, StoreError>
    where
        F: FnMut(DateTime<Utc>, u32) -> HoldPlan,
    {
        dispatch!(self, repo => repo.replan_holds(expected_generation, from, plan, describe, release_job, now).await)
    }
}

/// Outgoing webhooks: endpoints, the delivery queue and replays; the SQL is
/// in `sql/webhooks.rs` (the outbox itself is written by each change's own
/// transaction there).
impl Store {
    pub async fn insert_webhook_endpoint(
        &self,
        new: &records::NewWebhookEndpoint,
        actor: &Actor,
    ) -> Result<records::WebhookEndpointRecord, StoreError> {
        dispatch!(self, repo => repo.insert_webhook_endpoint(new, actor).await)
    }

    pub async fn webhook_endpoints(
        &self,
    ) -> Result<Vec<records::WebhookEndpointRecord>, StoreError> {
        dispatch!(self, repo => repo.webhook_endpoints().await)
    }

    pub async fn webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<records::WebhookEndpointRecord>, StoreError> {
        dispatch!(self, repo => repo.webhook_endpoint(id).await)
    }

    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        url: &str,
        events: &[String],
        description: Option<&str>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.update_webhook_endpoint(id, url, events, description, actor, now).await)
    }

    pub async fn delete_webhook_endpoint(
        &self,
        id: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.delete_webhook_endpoint(id, actor, now).await)
    }

    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        sealed_secret: &[u8],
        sealed_previous: &[u8],
        previous_until: DateTime<Utc>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.rotate_webhook_secret(id, sealed_secret, sealed_previous, previous_until, actor, now).await)
    }

    pub async fn webhook_secrets(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StoreError> {
        dispatch!(self, repo => repo.webhook_secrets(id, now).await)
    }

    pub async fn sealed_webhook_secrets(
        &self,
    ) -> Result<Vec<(String, Vec<u8>, Option<Vec<u8>>)>, StoreError> {
        dispatch!(self, repo => repo.sealed_webhook_secrets().await)
    }

    pub async fn reseal_webhook_secrets(
        &self,
        id: &str,
        expected: (&[u8], Option<&[u8]>),
        resealed: (&[u8], Option<&[u8]>),
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.reseal_webhook_secrets(id, expected, resealed).await)
    }

    pub async fn enable_webhook_endpoint(
        &self,
        id: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.enable_webhook_endpoint(id, actor, now).await)
    }

    pub async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<records::ClaimedDelivery>, StoreError> {
        dispatch!(self, repo => repo.claim_webhook_deliveries(now, lease_until, limit).await)
    }

    pub async fn record_webhook_attempt(
        &self,
        attempt: &records::WebhookAttempt,
    ) -> Result<records::AttemptEffect, StoreError> {
        dispatch!(self, repo => repo.record_webhook_attempt(attempt).await)
    }

    pub async fn webhook_deliveries(
        &self,
        filter: &records::DeliveryFilter,
    ) -> Result<Vec<records::WebhookDeliveryRecord>, StoreError> {
        dispatch!(self, repo => repo.webhook_deliveries(filter).await)
    }

    pub async fn webhook_deliveries_of_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<records::WebhookDeliveryRecord>, StoreError> {
        dispatch!(self, repo => repo.webhook_deliveries_of_subject(subject).await)
    }

    pub async fn webhook_delivery(
        &self,
        id: i64,
    ) -> Result<Option<records::WebhookDeliveryRecord>, StoreError> {
        dispatch!(self, repo => repo.webhook_delivery(id).await)
    }

    pub async fn replay_webhook_delivery(
        &self,
        id: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Result<records::WebhookDeliveryRecord, records::ReplayRefusal>, StoreError> {
        dispatch!(self, repo => repo.replay_webhook_delivery(id, actor, now).await)
    }

    pub async fn replay_failed_webhook_deliveries(
        &self,
        endpoint_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Result<u64, records::ReplayRefusal>, StoreError> {
        dispatch!(self, repo => repo.replay_failed_webhook_deliveries(endpoint_id, from, to, actor, now).await)
    }
}

/// Reconciliation against the gateways' statements; the SQL is in
/// `sql/reconciliation.rs`.
impl Store {
    pub async fn payouts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        dispatch!(self, repo => repo.payouts_between(from, to).await)
    }

    pub async fn payouts_by_bill_no(
        &self,
        bill_nos: &[String],
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        dispatch!(self, repo => repo.payouts_by_bill_no(bill_nos).await)
    }

    pub async fn payouts_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        dispatch!(self, repo => repo.payouts_by_id(ids).await)
    }

    pub async fn matches_elsewhere(
        &self,
        ids: &[String],
        source: &str,
        bill_date: &str,
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
        dispatch!(self, repo => repo.matches_elsewhere(ids, source, bill_date).await)
    }

    pub async fn reconciliation_run(
        &self,
        source: &str,
        bill_date: &str,
    ) -> Result<Option<ReconciliationRun>, StoreError> {
        dispatch!(self, repo => repo.reconciliation_run(source, bill_date).await)
    }

    pub async fn reconciliation_runs(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<ReconciliationRun>, StoreError> {
        dispatch!(self, repo => repo.reconciliation_runs(first, last).await)
    }

    pub async fn record_reconciliation_failure(
        &self,
        source: &str,
        bill_date: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ReconciliationRun, StoreError> {
        dispatch!(self, repo => repo
            .record_reconciliation_failure(source, bill_date, error, next_attempt_at, now)
            .await)
    }

    pub async fn reconciliation_runs_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationRun>, StoreError> {
        dispatch!(self, repo => repo.reconciliation_runs_due(now).await)
    }

    pub async fn finish_reconciliation(
        &self,
        day: &FinishedReconciliation,
    ) -> Result<ReconciliationRun, StoreError> {
        dispatch!(self, repo => repo.finish_reconciliation(day).await)
    }

    pub async fn reconciliation_mismatches(
        &self,
        first: &str,
        last: &str,
        source: Option<&str>,
    ) -> Result<Vec<MismatchRecord>, StoreError> {
        dispatch!(self, repo => repo.reconciliation_mismatches(first, last, source).await)
    }

    pub async fn unresolved_mismatches(
        &self,
        limit: i64,
    ) -> Result<Vec<MismatchRecord>, StoreError> {
        dispatch!(self, repo => repo.unresolved_mismatches(limit).await)
    }

    pub async fn unresolved_mismatch_counts(
        &self,
    ) -> Result<Vec<UnresolvedMismatches>, StoreError> {
        dispatch!(self, repo => repo.unresolved_mismatch_counts().await)
    }

    pub async fn resolve_mismatch(
        &self,
        id: i64,
        side: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<MismatchRecord, StoreError> {
        dispatch!(self, repo => repo.resolve_mismatch(id, side, reason, actor, now).await)
    }
}

/// Month close and earnings; the SQL is in `sql/month_close.rs`.
impl Store {
    pub async fn month_activity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, Activity>, StoreError> {
        dispatch!(self, repo => repo.month_activity(from, to).await)
    }

    pub async fn movements(
        &self,
        distributor: &DistributorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Movements, StoreError> {
        dispatch!(self, repo => repo.movements(distributor, from, to).await)
    }

    pub async fn lifetime_settled_sales(
        &self,
        distributor: &DistributorId,
    ) -> Result<(Money, Money), StoreError> {
        dispatch!(self, repo => repo.lifetime_settled_sales(distributor).await)
    }

    pub async fn tier_sales(
        &self,
        distributor: &DistributorId,
        period: &str,
    ) -> Result<Money, StoreError> {
        dispatch!(self, repo => repo.tier_sales(distributor, period).await)
    }

    pub async fn begin_month_close(
        &self,
        month: &str,
        plan_version: i64,
        now: DateTime<Utc>,
    ) -> Result<MonthCloseRecord, StoreError> {
        dispatch!(self, repo => repo.begin_month_close(month, plan_version, now).await)
    }

    pub async fn month_close(&self, month: &str) -> Result<Option<MonthCloseRecord>, StoreError> {
        dispatch!(self, repo => repo.month_close(month).await)
    }

    pub async fn finished_month_closes(&self, first: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self, repo => repo.finished_month_closes(first).await)
    }

    pub async fn first_activity(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        dispatch!(self, repo => repo.first_activity().await)
    }

    pub async fn closed_distributors(
        &self,
        month: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        dispatch!(self, repo => repo.closed_distributors(month).await)
    }

    pub async fn cleared_distributors(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        dispatch!(self, repo => repo.cleared_distributors().await)
    }

    pub async fn close_month_batch(
        &self,
        month: &str,
        plan_version: i64,
        batch: &[ClosingDistributor],
        now: DateTime<Utc>,
    ) -> Result<BatchOutcome, StoreError> {
        dispatch!(self, repo => repo.close_month_batch(month, plan_version, batch, now).await)
    }

    pub async fn finish_month_close(
        &self,
        month: &str,
        now: DateTime<Utc>,
    ) -> Result<MonthCloseRecord, StoreError> {
        dispatch!(self, repo => repo.finish_month_close(month, now).await)
    }

    pub async fn statements(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        dispatch!(self, repo => repo.statements(distributor).await)
    }

    pub async fn statement(
        &self,
        distributor: &DistributorId,
        month: &str,
    ) -> Result<Option<StatementRecord>, StoreError> {
        dispatch!(self, repo => repo.statement(distributor, month).await)
    }

    pub async fn team_bonuses(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<TeamBonusRecord>, StoreError> {
        dispatch!(self, repo => repo.team_bonuses(distributor).await)
    }
}

/// Orders and their commission lines; the SQL is in `sql/orders.rs`.
impl Store {
    /// Writes a batch of prepared orders, planned on the calendar of
    /// `calendar_generation`; [`StoreError::CalendarChanged`] (nothing
    /// written) when a year was applied since.
    ///
    /// `finish` completes each new order (its commission, risk flags and
    /// release time) from the running totals inside the transaction, in
    /// batch order; it is not called for replays.
    pub async fn ingest_orders<F>(
        &self,
        batch: &mut [PreparedOrder],
        release_job: &JobSpec,
        calendar_generation: i64,
        now: DateTime<Utc>,
        finish: F,
    ) -> Result<Vec<IngestOutcome>, StoreError>
    where
        F: FnMut(&mut PreparedOrder, &RunningTotals) -> Result<(), StoreError> + Send,
    {
        dispatch!(self, repo => repo.ingest_orders(batch, release_job, calendar_generation, now, finish).await)
    }

    /// Releases up to `limit` holds due by `now`; refuses with
    /// [`StoreError::CalendarChanged`] (nothing released) when the caller's
    /// calendar (`calendar_generation`) is not the latest or a re-plan is
    /// pending, so no hold is released at a time the calendar moved.
    pub async fn release_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        attempt: i64,
        trigger: &str,
        calendar_generation: i64,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self, repo => repo.release_due(now, limit, attempt, trigger, calendar_generation).await)
    }

    /// Applies a refund in one transaction: `decide` rules on the locked
    /// order, and its refusal comes back as it is, in its own error type.
    pub async fn refund_order<F, E>(
        &self,
        request: &RefundRequest,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<RefundOutcome, E>
    where
        F: FnOnce(&OrderSnapshot) -> Result<RefundDecision, E> + Send,
        E: From<StoreError>,
    {
        dispatch!(self, repo => repo.refund_order(request, now, decide).await)
    }

    /// The transfers of `subject` (`withdrawal:{id}` or `order:{id}`),
    /// oldest first, with their postings.
    pub async fn ledger_transfers_of(
        &self,
        subject: &str,
    ) -> Result<Vec<JournalTransfer>, StoreError> {
        dispatch!(self, repo => repo.ledger_transfers_of(subject).await)
    }

    /// An order's items, in line order.
    pub async fn order_items(&self, order_id: &str) -> Result<Vec<ItemRecord>, StoreError> {
        dispatch!(self, repo => repo.order_items(order_id).await)
    }

    /// Orders the risk rules flagged, most recently confirmed first.
    pub async fn flagged_orders(&self, limit: i64) -> Result<Vec<FlaggedOrder>, StoreError> {
        dispatch!(self, repo => repo.flagged_orders(limit).await)
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        dispatch!(self, repo => repo.order(order_id).await)
    }

    /// Voids an order's commission (ops): reversed inside the hold, clawed
    /// back after it, and `totals_of` the locked order taken off the
    /// running totals; a second void answers the first again.
    pub async fn void_commission<F>(
        &self,
        order_id: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
        totals_of: F,
    ) -> Result<VoidOutcome, StoreError>
    where
        F: FnOnce(&OrderSnapshot) -> Result<TotalsDelta, StoreError> + Send,
    {
        dispatch!(self, repo => repo.void_commission(order_id, reason, actor, now, totals_of).await)
    }

    /// Reviews one page of distributors after `after` (the grade review):
    /// `decide` rules on each one's facts; changes are written with their
    /// timeline and audit entries in the page's transaction.
    pub async fn review_distributors<F>(
        &self,
        after: Option<&str>,
        limit: i64,
        now: DateTime<Utc>,
        actor: &Actor,
        decide: F,
    ) -> Result<ReviewedPage, StoreError>
    where
        F: Fn(&crate::domain::grades::ReviewFacts) -> Option<ReviewChange> + Send,
    {
        dispatch!(self, repo => repo.review_distributors(after, limit, now, actor, decide).await)
    }

    /// Reinstates a cleared distributor (ops); an active one is left alone.
    pub async fn reinstate_distributor(
        &self,
        id: &DistributorId,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Reinstatement, StoreError> {
        dispatch!(self, repo => repo.reinstate_distributor(id, reason, actor, now).await)
    }

    /// The distributor's timeline (upgrades, clearing, reinstatements), newest first.
    pub async fn distributor_events(
        &self,
        id: &DistributorId,
    ) -> Result<Vec<DistributorEvent>, StoreError> {
        dispatch!(self, repo => repo.distributor_events(id).await)
    }

    pub async fn commissions(
        &self,
        beneficiary_id: &str,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LineRecord>, StoreError> {
        dispatch!(self, repo => repo.commissions(beneficiary_id, before_id, limit).await)
    }

    pub async fn order_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, repo => repo.order_counts().await)
    }
}

/// Withdrawals (SPEC §2.4); the SQL is in `sql/withdrawals.rs`.
impl Store {
    /// Records a request in one transaction: `decide` rules on the locked
    /// facts, and its refusal comes back as it is, in its own error type.
    pub async fn request_withdrawal<F, E>(
        &self,
        draft: &WithdrawalDraft,
        transfer_job: &JobSpec,
        decide: F,
    ) -> Result<WithdrawalRequestOutcome, E>
    where
        F: FnOnce(&WithdrawalFacts) -> Result<WithdrawalDecision, E> + Send,
        E: From<StoreError>,
    {
        dispatch!(self, repo => repo.request_withdrawal(draft, transfer_job, decide).await)
    }

    pub async fn withdrawal_facts(
        &self,
        draft: &WithdrawalDraft,
    ) -> Result<WithdrawalFacts, StoreError> {
        dispatch!(self, repo => repo.withdrawal_facts(draft).await)
    }

    pub async fn withdrawal(
        &self,
        id: &WithdrawalId,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.withdrawal(id).await)
    }

    pub async fn withdrawal_by_out_bill_no(
        &self,
        out_bill_no: &str,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.withdrawal_by_out_bill_no(out_bill_no).await)
    }

    pub async fn withdrawal_events(
        &self,
        id: &WithdrawalId,
    ) -> Result<Vec<WithdrawalEvent>, StoreError> {
        dispatch!(self, repo => repo.withdrawal_events(id).await)
    }

    pub async fn withdrawals_in_states(
        &self,
        states: &[crate::domain::withdrawal::WithdrawalState],
        updated_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.withdrawals_in_states(states, updated_before, limit).await)
    }

    pub async fn paid_withdrawals_in_month(
        &self,
        tax_month: Month,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.paid_withdrawals_in_month(tax_month).await)
    }

    pub async fn mark_polled(
        &self,
        id: &WithdrawalId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.mark_polled(id, now).await)
    }

    /// Approves or rejects a withdrawal waiting for review; any other state
    /// is answered as the inner refusal, with nothing written.
    pub async fn review_withdrawal(
        &self,
        id: &WithdrawalId,
        decision: &ReviewDecision,
        transfer_job: &JobSpec,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Result<WithdrawalRecord, StateRefusal>, StoreError> {
        dispatch!(self, repo => repo.review_withdrawal(id, decision, transfer_job, now, actor).await)
    }

    /// Cancels a withdrawal whose transfer has not started; any other state
    /// is answered as the inner refusal, with nothing written.
    pub async fn cancel_withdrawal(
        &self,
        id: &WithdrawalId,
        now: DateTime<Utc>,
    ) -> Result<Result<WithdrawalRecord, StateRefusal>, StoreError> {
        dispatch!(self, repo => repo.cancel_withdrawal(id, now).await)
    }

    pub async fn begin_transfer_attempt(
        &self,
        id: &WithdrawalId,
        attempt: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.begin_transfer_attempt(id, attempt, now).await)
    }

    pub async fn apply_gateway_outcome(
        &self,
        id: &WithdrawalId,
        outcome: &GatewayOutcome,
        source: &str,
        attempt: i64,
        certificate_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, StoreError> {
        dispatch!(self, repo => repo.apply_gateway_outcome(id, outcome, source, attempt, certificate_job, now).await)
    }

    pub async fn resume_transfers(
        &self,
        transfer_job: &JobSpec,
        start_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        dispatch!(self, repo => repo.resume_transfers(transfer_job, start_id, now).await)
    }

    pub async fn push_due_transfers(
        &self,
        transfer_job: &JobSpec,
        start_id: &str,
        due_by: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        dispatch!(self, repo => repo.push_due_transfers(transfer_job, start_id, due_by, limit).await)
    }

    pub async fn push_transfer(
        &self,
        transfer_job: &JobSpec,
        id: &WithdrawalId,
        key: String,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.push_transfer(transfer_job, id, key).await)
    }

    pub async fn withdrawal_totals(
        &self,
    ) -> Result<
        Vec<(
            crate::domain::withdrawal::WithdrawalState,
            i64,
            Money,
            Money,
            Money,
            Money,
        )>,
        StoreError,
    > {
        dispatch!(self, repo => repo.withdrawal_totals().await)
    }
}

/// Withholding certificates (SPEC §2.6); the SQL is in `sql/certificates.rs`.
impl Store {
    pub async fn insert_certificate(
        &self,
        new: &NewCertificate,
    ) -> Result<CertificateNumber, StoreError> {
        dispatch!(self, repo => repo.insert_certificate(new).await)
    }

    pub async fn certificate_number_for(
        &self,
        withdrawal_id: &WithdrawalId,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        dispatch!(self, repo => repo.certificate_number_for(withdrawal_id).await)
    }

    pub async fn certificate(
        &self,
        number: &CertificateNumber,
    ) -> Result<Option<(CertificateRecord, Vec<u8>)>, StoreError> {
        dispatch!(self, repo => repo.certificate(number).await)
    }

    pub async fn certificates(
        &self,
        tax_month: Month,
        distributor: Option<&DistributorId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        dispatch!(self, repo => repo.certificates(tax_month, distributor, after, limit).await)
    }

    pub async fn record_certificate_key(
        &self,
        key_id: &str,
        public_key: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.record_certificate_key(key_id, public_key, now).await)
    }

    pub async fn certificate_keys(
        &self,
    ) -> Result<Vec<(String, Vec<u8>, DateTime<Utc>)>, StoreError> {
        dispatch!(self, repo => repo.certificate_keys().await)
    }

    /// Pushes certificate jobs for paid withdrawals without a certificate
    /// (after a crash, or paid before the step existed); returns how many.
    pub async fn push_missing_certificates(
        &self,
        certificate_job: &JobSpec,
        key_suffix: &str,
        paid_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        dispatch!(self, repo => repo.push_missing_certificates(certificate_job, key_suffix, paid_before, limit).await)
    }

    pub async fn paid_without_certificate(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, repo => repo.paid_without_certificate(limit).await)
    }

    /// Inserts a correction unless the certificate it replaces was already
    /// corrected (then nothing is written).
    pub async fn insert_correction(
        &self,
        new: &NewCertificate,
        actor: &Actor,
    ) -> Result<CorrectionOutcome, StoreError> {
        dispatch!(self, repo => repo.insert_correction(new, actor).await)
    }

    pub async fn certificate_number_by_pdf(
        &self,
        pdf_sha256: &str,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        dispatch!(self, repo => repo.certificate_number_by_pdf(pdf_sha256).await)
    }

    pub async fn correction_of(
        &self,
        number: &CertificateNumber,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        dispatch!(self, repo => repo.correction_of(number).await)
    }

    pub async fn certificate_files(
        &self,
        tax_month: Month,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>, String)>, StoreError> {
        dispatch!(self, repo => repo.certificate_files(tax_month, after, limit).await)
    }

    pub async fn certificate_totals(
        &self,
        tax_month: Month,
    ) -> Result<(i64, Money, Money, Money), StoreError> {
        dispatch!(self, repo => repo.certificate_totals(tax_month).await)
    }

    pub async fn save_prepared_declaration(
        &self,
        prepared: &PreparedDeclaration,
        csv: &[u8],
        xlsx: &[u8],
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.save_prepared_declaration(prepared, csv, xlsx).await)
    }

    pub async fn returned_after_declaration(
        &self,
        tax_month: &str,
    ) -> Result<Vec<ReturnedPayout>, StoreError> {
        dispatch!(self, repo => repo.returned_after_declaration(tax_month).await)
    }

    pub async fn prepared_declarations(
        &self,
        limit: i64,
    ) -> Result<Vec<PreparedDeclaration>, StoreError> {
        dispatch!(self, repo => repo.prepared_declarations(limit).await)
    }

    pub async fn prepared_declaration_file(
        &self,
        tax_month: Month,
        xlsx: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, repo => repo.prepared_declaration_file(tax_month, xlsx).await)
    }

    pub async fn ledger_tax_for_month(&self, tax_month: Month) -> Result<Money, StoreError> {
        dispatch!(self, repo => repo.ledger_tax_for_month(tax_month).await)
    }
}

/// Payout credentials, sealed by the vault (SPEC §2.5); the SQL is in `sql/credentials.rs`.
impl Store {
    /// Stores a distributor's identity (sealed), replacing an earlier one.
    pub async fn upsert_identity(
        &self,
        identity: &SealedIdentity,
    ) -> Result<SealedIdentity, StoreError> {
        dispatch!(self, repo => repo.upsert_identity(identity).await)
    }

    /// Stores an identity given through the API: a change after a
    /// certificate is audited and flags the next withdrawal for review (see
    /// the backends' `put_identity`). `compare` names the changed fields.
    pub async fn put_identity<F>(
        &self,
        identity: &SealedIdentity,
        actor: &Actor,
        compare: F,
    ) -> Result<SealedIdentity, StoreError>
    where
        F: FnOnce(&SealedIdentity) -> Result<Vec<&'static str>, StoreError> + Send,
    {
        dispatch!(self, repo => repo.put_identity(identity, actor, compare).await)
    }

    pub async fn identity(&self, id: &DistributorId) -> Result<Option<SealedIdentity>, StoreError> {
        dispatch!(self, repo => repo.identity(id).await)
    }

    pub async fn insert_payout_account(
        &self,
        account: &SealedPayoutAccount,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.insert_payout_account(account).await)
    }

    /// A distributor's payout accounts, oldest first.
    pub async fn payout_accounts(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<SealedPayoutAccount>, StoreError> {
        dispatch!(self, repo => repo.payout_accounts(distributor).await)
    }

    pub async fn payout_account(
        &self,
        id: &PayoutAccountId,
    ) -> Result<Option<SealedPayoutAccount>, StoreError> {
        dispatch!(self, repo => repo.payout_account(id).await)
    }

    /// Identities sealed under another key than `current_key_id`, after
    /// distributor id `after`: one page of `keys rotate`.
    pub async fn identities_to_reseal(
        &self,
        current_key_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedIdentity>, StoreError> {
        dispatch!(self, repo => repo.identities_to_reseal(current_key_id, after, limit).await)
    }

    /// Replaces an identity's sealed values if the row is still `expected`
    /// (key id and sealed bytes); `false` if it changed meanwhile.
    pub async fn reseal_identity(
        &self,
        expected: &SealedIdentity,
        real_name: &[u8],
        id_number: &[u8],
        new_key_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.reseal_identity(expected, real_name, id_number, new_key_id).await)
    }

    /// Payout accounts sealed under another key than `current_key_id`, after
    /// account id `after`: one page of `keys rotate`.
    pub async fn payout_accounts_to_reseal(
        &self,
        current_key_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedPayoutAccount>, StoreError> {
        dispatch!(self, repo => repo.payout_accounts_to_reseal(current_key_id, after, limit).await)
    }

    /// Replaces an account's sealed value if the row is still `expected`
    /// (key id and sealed bytes); `false` if it changed meanwhile.
    pub async fn reseal_payout_account(
        &self,
        expected: &SealedPayoutAccount,
        account: &[u8],
        new_key_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, repo => repo.reseal_payout_account(expected, account, new_key_id).await)
    }
}

/// API tokens and page sessions; the SQL is in `sql/sessions.rs`.
impl Store {
    /// Stores a token's hash (expiring at `expires_at`, if set) with its
    /// audit entry by `actor`.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_token(
        &self,
        token_id: &str,
        token_sha256: &str,
        role: Role,
        distributor: Option<&DistributorId>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.insert_token(token_id, token_sha256, role, distributor, expires_at, now, actor).await)
    }

    /// The token with this hash, revoked and expired ones included.
    pub async fn token_by_hash(
        &self,
        token_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, repo => repo.token_by_hash(token_sha256).await)
    }

    /// Tokens in id order after `after`, at most `limit` (≤ [`MAX_PAGE`]).
    pub async fn tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenListing>, StoreError> {
        dispatch!(self, repo => repo.tokens(after, limit).await)
    }

    /// Revokes a token and ends its page sessions, audited in the same
    /// transaction; `None` if there is no such token.
    pub async fn revoke_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<Revocation>, StoreError> {
        dispatch!(self, repo => repo.revoke_token(id, now, actor).await)
    }

    /// Stores a page session; deletes the ended ones on the way.
    pub async fn create_session(
        &self,
        session_sha256: &str,
        token_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.create_session(session_sha256, token_id, now, expires_at, idle_cutoff).await)
    }

    pub async fn session_by_hash(
        &self,
        session_sha256: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, repo => repo.session_by_hash(session_sha256).await)
    }

    pub async fn touch_session(
        &self,
        session_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.touch_session(session_sha256, now).await)
    }

    pub async fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.delete_session(session_sha256).await)
    }
}

/// The audit log (SPEC §2.10); the SQL is in `sql/audit.rs`.
impl Store {
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        dispatch!(self, repo => repo.record_audit(entry).await)
    }

    pub async fn audit_entries(
        &self,
        before: Option<i64>,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        dispatch!(self, repo => repo.audit_entries(before, target, limit).await)
    }
}

/// The job queues as the ops console and `/metrics` see them; the SQL is in
/// `sql/jobs.rs` and each backend's own `mod.rs`.
impl Store {
    pub async fn ops_jobs(&self, filter: &JobFilter) -> Result<Vec<OpsJob>, StoreError> {
        dispatch!(self, repo => repo.ops_jobs(filter).await)
    }

    pub async fn done_last_hour(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, repo => repo.done_last_hour().await)
    }

    /// Also appends the audit entry, in the same transaction, when the
    /// job's status changed.
    pub async fn retry_job(
        &self,
        id: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        dispatch!(self, repo => repo.retry_job(id, actor, at).await)
    }

    /// Also appends the audit entry, in the same transaction, when the
    /// job's status changed.
    pub async fn cancel_job(
        &self,
        id: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        dispatch!(self, repo => repo.cancel_job(id, actor, at).await)
    }

    /// Jobs per queue and state with the oldest `run_at` (unix seconds) of
    /// each group, for `/metrics` and the ops console.
    pub async fn queue_stats(
        &self,
        now_secs: i64,
    ) -> Result<Vec<(String, String, i64, Option<i64>)>, StoreError> {
        dispatch!(self, repo => repo.queue_stats(now_secs).await)
    }
}

/// The pool apalis's storages run on: the job queue lives in the same
/// database as the business tables, so a step's effect and its next job
/// commit together.
#[derive(Clone)]
pub enum QueuePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The payload of a withdrawal's transfer job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TransferJob {
    pub withdrawal_id: String,
}

/// The payload of a withdrawal's certificate job (the same shape as a
/// transfer job's, on its own queue).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CertificateJob {
    pub withdrawal_id: String,
}

/// The apalis task of a withdrawal step (transfer or certificate), due now.
pub(crate) fn withdrawal_step_task(
    spec: &JobSpec,
    withdrawal_id: &WithdrawalId,
    key: String,
) -> Result<apalis_core::task::Task<Vec<u8>>, StoreError> {
    withdrawal_step_task_at(spec, withdrawal_id, key, None)
}

/// The apalis task of a withdrawal step, due at `run_at` (whole seconds, the
/// queue's resolution) when given, else now: a transfer waiting for its
/// settlement cycle's cut-off.
pub(crate) fn withdrawal_step_task_at(
    spec: &JobSpec,
    withdrawal_id: &WithdrawalId,
    key: String,
    run_at: Option<DateTime<Utc>>,
) -> Result<apalis_core::task::Task<Vec<u8>>, StoreError> {
    let payload = serde_json::to_vec(&TransferJob {
        withdrawal_id: withdrawal_id.to_string(),
    })
    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let builder = apalis_core::task::builder::TaskBuilder::new(payload)
        .max_attempts(spec.max_attempts as usize)
        .idempotency_key(key);
    let builder = match run_at {
        // Rounded up: a job never runs before its cut-off's second.
        Some(at) => builder.run_at_timestamp(
            u64::try_from(at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0)).unwrap_or(0),
        ),
        None => builder,
    };
    Ok(builder.build())
}

/// The payload of a release job: the release time it was enqueued for. The
/// step releases everything due by then (and anything else already due).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReleaseJob {
    pub release_at: DateTime<Utc>,
}

/// The apalis task for a release time: runs at that time, and its
/// idempotency key makes every order with the same release time share one job.
pub(crate) fn release_task(
    spec: &JobSpec,
    release_at: DateTime<Utc>,
) -> Result<apalis_core::task::Task<Vec<u8>>, StoreError> {
    keyed_release_task(
        spec,
        release_at,
        format!("release:{}", release_at.to_rfc3339()),
    )
}

/// The release task that finishes the re-plan of a calendar year's
/// `version`, due `now`: the release step re-plans before it releases.
pub(crate) fn calendar_replan_task(
    spec: &JobSpec,
    calendar: &str,
    year: i32,
    version: i64,
    now: DateTime<Utc>,
) -> Result<apalis_core::task::Task<Vec<u8>>, StoreError> {
    keyed_release_task(spec, now, format!("calendar:{calendar}:{year}:v{version}"))
}

fn keyed_release_task(
    spec: &JobSpec,
    release_at: DateTime<Utc>,
    idempotency_key: String,
) -> Result<apalis_core::task::Task<Vec<u8>>, StoreError> {
    let payload = serde_json::to_vec(&ReleaseJob { release_at })
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let run_at = u64::try_from(release_at.timestamp()).unwrap_or(0);
    Ok(apalis_core::task::builder::TaskBuilder::new(payload)
        .run_at_timestamp(run_at)
        .max_attempts(spec.max_attempts as usize)
        .idempotency_key(idempotency_key)
        .build())
}

/// Which backend a URL names.
pub fn backend_of(url: &str) -> Option<BackendKind> {
    if url.starts_with("sqlite:") {
        Some(BackendKind::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Some(BackendKind::Postgres)
    } else {
        None
    }
}

/// A database URL with any password replaced, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub use records::PortalLinkOpening;

/// The distributor page's sign-in links and lists; the SQL is in
/// `sql/portal_links.rs` and `sql/withdrawals.rs`.
impl Store {
    /// Stores a sign-in link's hash; `NotFound` for an unknown distributor.
    pub async fn insert_portal_link(
        &self,
        link_sha256: &str,
        distributor: &DistributorId,
        created_by: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self, repo => repo.insert_portal_link(link_sha256, distributor, created_by, now, expires_at).await)
    }

    /// Uses a sign-in link at most once (see `sql/portal_links.rs`).
    pub async fn open_portal_link(
        &self,
        link_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<PortalLinkOpening, StoreError> {
        dispatch!(self, repo => repo.open_portal_link(link_sha256, now).await)
    }

    /// When the distributor's next pending commission is due to be released.
    pub async fn next_release_at(
        &self,
        beneficiary: &DistributorId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        dispatch!(self, repo => repo.next_release_at(beneficiary).await)
    }

    /// A distributor's withdrawals, newest first.
    pub async fn withdrawals_of_distributor(
        &self,
        distributor: &DistributorId,
        limit: i64,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        dispatch!(self, repo => repo.withdrawals_of_distributor(distributor, limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_redacted_url() {
        assert_eq!(
            redact_url("postgres://fenrun:s3cret@db:5432/fenrun"),
            "postgres://fenrun:***@db:5432/fenrun"
        );
        assert_eq!(
            redact_url("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://fenrun.db"), "sqlite://fenrun.db");
    }

    #[test]
    fn the_backend_is_chosen_by_the_url_scheme() {
        assert_eq!(backend_of("sqlite://fenrun.db"), Some(BackendKind::Sqlite));
        assert_eq!(backend_of("postgres://x/y"), Some(BackendKind::Postgres));
        assert_eq!(backend_of("postgresql://x/y"), Some(BackendKind::Postgres));
        assert_eq!(backend_of("mysql://x"), None);
    }
}
