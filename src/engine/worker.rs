//! Running the steps: apalis workers consuming the step queues, and the
//! scheduler of the cron jobs in `workflows/schedules.toml`.
//!
//! Every process registers its workers under a name of its own (host, pid,
//! random suffix): apalis only re-enqueues a dead worker's jobs when no live
//! worker carries that name (apalis.md §5). Heartbeats every
//! [`HEARTBEAT_INTERVAL`] and [`MISSED_HEARTBEATS`] of them make a killed
//! worker's jobs run again within [`ORPHAN_TIMEOUT`].
//!
//! The scheduler follows the injected [`Clock`], not the wall clock, so under
//! `--simulated-clock` the cron jobs run when time is moved (apalis-cron ticks
//! on the wall clock, which is why it is not used here).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, RetryPolicy};
use apalis::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::Instrument;

use crate::clock::Clock;
use crate::domain::ids::WithdrawalId;
use crate::domain::tax::Month;
use crate::engine::certificate::CertificateIssuer;
use crate::engine::declaration::DeclarationPreparer;
use crate::engine::definition::{JobKind, Schedules, StepDefinition};
use crate::engine::grade_review::{GradeReview, REVIEW_ACTOR};
use crate::engine::settlement::SettlementEngine;
use crate::engine::step::{job_error, may_retry};
use crate::engine::withdrawal::WithdrawalEngine;
use crate::store::{Actor, CertificateJob, QueuePool, ReleaseJob, TransferJob};

/// How often a worker tells the database it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Heartbeats a worker may miss before its jobs are given to another.
pub const MISSED_HEARTBEATS: usize = 6;
/// A killed worker's job runs again after at most this (plus one heartbeat).
pub const ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);
/// A worker that ended by itself starts again after this.
const WORKER_RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often an idle worker looks for due jobs (apalis.md: without a poll
/// interval, delayed jobs wait for the heartbeat).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the poller looks for paid withdrawals without a certificate.
pub const CERTIFICATE_SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// A paid withdrawal this young may still have its certificate job queued.
const CERTIFICATE_GRACE: chrono::Duration = chrono::Duration::minutes(10);
/// Transfers are latency-sensitive (a distributor waits): look often.
const TRANSFER_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Jobs a worker fetches per round trip; ≥ 100 keeps SQLite commits cheap (apalis.md).
const FETCH_BATCH: usize = 100;
/// The scheduler's resolution under a wall clock: it re-reads the clock at
/// least this often, so a moved simulated clock is noticed promptly.
const SCHEDULER_TICK: Duration = Duration::from_secs(1);

/// A name no other process has: host, pid and a random suffix.
pub fn worker_name(role: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// A step's retry policy: its backoff, and never again once an attempt gave
/// up (see [`crate::engine::step`]). A struct rather than apalis's
/// `retry_if(fn)`, whose higher-ranked predicate makes the worker futures
/// fail the `Send` check.
#[derive(Clone, Debug)]
struct StepRetryPolicy(BackoffRetryPolicy<apalis::layers::retry::backoff::ExponentialBackoff>);

impl<T, Res> apalis::layers::retry::Policy<apalis_core::task::Task<T>, Res, BoxDynError>
    for StepRetryPolicy
where
    T: Clone,
{
    type Future = <BackoffRetryPolicy<apalis::layers::retry::backoff::ExponentialBackoff> as apalis::layers::retry::Policy<apalis_core::task::Task<T>, Res, BoxDynError>>::Future;

    fn retry(
        &mut self,
        task: &mut apalis_core::task::Task<T>,
        result: &mut Result<Res, BoxDynError>,
    ) -> Option<Self::Future> {
        match result {
            Err(error) if !may_retry(error) => None,
            _ => self.0.retry(task, result),
        }
    }

    fn clone_request(
        &mut self,
        task: &apalis_core::task::Task<T>,
    ) -> Option<apalis_core::task::Task<T>> {
        apalis::layers::retry::Policy::<_, Res, BoxDynError>::clone_request(&mut self.0, task)
    }
}

fn retry_policy(step: &StepDefinition) -> anyhow::Result<StepRetryPolicy> {
    let retry = step.retry();
    let backoff = ExponentialBackoffMaker::new(
        retry.backoff_base,
        retry.backoff_max,
        0.2,
        HasherRng::default(),
    )
    .map_err(|error| anyhow::anyhow!("step {}: {error}", step.name()))?
    .make_backoff();
    Ok(StepRetryPolicy(
        RetryPolicy::retries(retry.max_attempts.saturating_sub(1) as usize).with_backoff(backoff),
    ))
}

/// The `release` step as an apalis handler: releases everything due.
async fn release_step(
    job: ReleaseJob,
    attempt: Attempt,
    engine: Data<Arc<SettlementEngine>>,
) -> Result<(), BoxDynError> {
    let attempt = attempt.current() as i64;
    let span = tracing::info_span!("step", step = "release", attempt, release_at = %job.release_at);
    async move {
        let started = std::time::Instant::now();
        let result = engine.release_due(attempt, "job order.release").await;
        crate::telemetry::metrics::step_attempt(
            "order-settlement",
            "release",
            attempt,
            started,
            result.is_ok(),
        );
        result.map_err(|error| job_error("release", error))?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// Runs one step queue's worker until `stop` turns true: the worker name,
/// heartbeats, fetch batch, poll interval, concurrency and retry policy are
/// the same for every step; only the job type and handler differ. The two
/// storages share no trait we could name here, hence a macro.
macro_rules! run_step_worker {
    ($pool:expr, $engine:expr, $step:expr, $stop:expr, $role:literal, $job:ty, $handler:expr, $poll:expr) => {{
        let step: &StepDefinition = &$step;
        let queue = step
            .queue()
            .ok_or_else(|| anyhow::anyhow!("step {} has no queue", step.name()))?
            .to_owned();
        let concurrency = step.concurrency() as usize;
        let mut stop: watch::Receiver<bool> = $stop;
        // apalis ends a worker's job stream for good on one failed fetch (a
        // busy database, a dropped connection: apalis.md §7.6), and the
        // worker then returns as if asked to stop. Supervise it: a worker
        // that ends while no stop was asked for starts again, under a new
        // name, so its unfinished jobs are re-enqueued by the orphan rule.
        loop {
            let name = worker_name($role);
            tracing::info!(worker = %name, queue = %queue, "starting worker");
            let mut stop_signal = stop.clone();
            let signal = async move {
                let _ = stop_signal.wait_for(|stopped| *stopped).await;
                Ok::<(), std::io::Error>(())
            };
            let policy = retry_policy(step)?;
            let engine = $engine.clone();
            let outcome: anyhow::Result<()> = async {
                macro_rules! run_on {
                    ($config:path, $storage:path, $db:expr) => {{
                        let config = <$config>::default()
                            .queue(&queue)
                            .batch_size(FETCH_BATCH)
                            .heartbeat_interval(HEARTBEAT_INTERVAL)
                            .missed_heartbeats(MISSED_HEARTBEATS);
                        let storage = <$storage>::new(&$db).with_config(config);
                        WorkerBuilder::new(name.clone())
                            .backend(storage.poll_with_interval($poll))
                            .data(engine)
                            .concurrency(concurrency)
                            .retry(policy)
                            .build($handler)
                            .run_until(signal)
                            .await?
                    }};
                }
                match $pool.clone() {
                    QueuePool::Sqlite(db) => {
                        run_on!(apalis_sqlite::Config, apalis_sqlite::SqliteStorage<$job>, db)
                    }
                    QueuePool::Postgres(db) => {
                        run_on!(apalis_postgres::Config, apalis_postgres::PostgresStorage<$job>, db)
                    }
                }
                Ok(())
            }
            .await;
            if *stop.borrow() {
                return Ok(());
            }
            match outcome {
                Ok(()) => tracing::error!(worker = %name, queue = %queue, "worker ended by itself (its job stream closed, e.g. after a database error); restarting it"),
                Err(error) => tracing::error!(worker = %name, queue = %queue, error = %error, "worker failed; restarting it"),
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
                () = tokio::time::sleep(WORKER_RESTART_DELAY) => {}
            }
        }
    }};
}

/// Runs the release queue's worker until `stop` turns true.
pub async fn run_release_worker(
    pool: QueuePool,
    engine: Arc<SettlementEngine>,
    step: StepDefinition,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_step_worker!(
        pool,
        engine,
        step,
        stop,
        "release",
        ReleaseJob,
        release_step,
        POLL_INTERVAL
    )
}

/// The `transfer` step as an apalis handler: one attempt at one withdrawal's payout.
async fn transfer_step(
    job: TransferJob,
    attempt: Attempt,
    engine: Data<Arc<WithdrawalEngine>>,
) -> Result<(), BoxDynError> {
    let attempt = attempt.current() as i64;
    let span =
        tracing::info_span!("step", step = "transfer", withdrawal_id = %job.withdrawal_id, attempt);
    async move {
        let started = std::time::Instant::now();
        let Ok(id) = WithdrawalId::parse(job.withdrawal_id.as_str()) else {
            tracing::warn!("transfer job for no withdrawal id: nothing to do");
            return Ok(());
        };
        let result = engine.run_transfer(&id, attempt).await;
        crate::telemetry::metrics::step_attempt(
            "withdrawal",
            "transfer",
            attempt,
            started,
            result.is_ok(),
        );
        result.map_err(|error| job_error("transfer", error))
    }
    .instrument(span)
    .await
}

/// Runs the transfer queue's worker until `stop` turns true.
pub async fn run_transfer_worker(
    pool: QueuePool,
    engine: Arc<WithdrawalEngine>,
    step: StepDefinition,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_step_worker!(
        pool,
        engine,
        step,
        stop,
        "transfer",
        TransferJob,
        transfer_step,
        TRANSFER_POLL_INTERVAL
    )
}

/// The `certificate` step as an apalis handler: issues one withdrawal's
/// withholding certificate (or finds it issued).
async fn certificate_step(
    job: CertificateJob,
    attempt: Attempt,
    issuer: Data<Arc<CertificateIssuer>>,
) -> Result<(), BoxDynError> {
    let attempt = attempt.current() as i64;
    let span = tracing::info_span!("step", step = "certificate", withdrawal_id = %job.withdrawal_id, attempt);
    async move {
        let started = std::time::Instant::now();
        let Ok(id) = WithdrawalId::parse(job.withdrawal_id.as_str()) else {
            tracing::warn!("certificate job for no withdrawal id: nothing to do");
            return Ok(());
        };
        let result = issuer.issue(&id).await;
        crate::telemetry::metrics::step_attempt(
            "withdrawal",
            "certificate",
            attempt,
            started,
            result.is_ok(),
        );
        result
            .map(|_| ())
            .map_err(|error| job_error("certificate", error))
    }
    .instrument(span)
    .await
}

/// Runs the certificate queue's worker until `stop` turns true.
pub async fn run_certificate_worker(
    pool: QueuePool,
    issuer: Arc<CertificateIssuer>,
    step: StepDefinition,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_step_worker!(
        pool,
        issuer,
        step,
        stop,
        "certificate",
        CertificateJob,
        certificate_step,
        TRANSFER_POLL_INTERVAL
    )
}

/// Runs the confirm step's poller until `stop`: asks the gateway about
/// bills that have heard nothing for a poll interval (callbacks usually come
/// first), on the wall clock, because gateways answer in real time. Every
/// [`CERTIFICATE_SWEEP_INTERVAL`] it also pushes certificate jobs for
/// withdrawals paid [`CERTIFICATE_GRACE`] ago that still have none.
pub async fn run_payout_poller(
    engine: Arc<WithdrawalEngine>,
    issuer: Arc<CertificateIssuer>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let tick = (engine.settings().poll_interval / 3).max(Duration::from_secs(1));
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(tick) => {},
        }
        match engine.poll_once().await {
            Ok(0) => {}
            Ok(polled) => tracing::debug!(polled, step = "confirm", "polled open payouts"),
            Err(error) => {
                tracing::warn!(error = %error, step = "confirm", "polling payouts failed; next round")
            }
        }
        // A standard withdrawal's job runs at its cut-off; this catches one
        // whose job ran early or was lost, a poll interval later.
        let grace = chrono::Duration::from_std(engine.settings().poll_interval)
            .unwrap_or(chrono::Duration::seconds(15));
        if let Err(error) = engine.send_due(grace).await {
            tracing::warn!(error = %error, step = "transfer", "pushing due transfers failed; next round");
        }
        if last_sweep.elapsed() >= CERTIFICATE_SWEEP_INTERVAL {
            last_sweep = tokio::time::Instant::now();
            let paid_before = clock.now() - CERTIFICATE_GRACE;
            match issuer
                .sweep(&engine.settings().certificate_job, paid_before)
                .await
            {
                Ok(0) => {}
                Ok(pushed) => tracing::warn!(
                    pushed,
                    step = "certificate",
                    "paid withdrawals without a certificate: jobs pushed again"
                ),
                Err(error) => {
                    tracing::warn!(error = %error, step = "certificate", "certificate sweep failed; next round")
                }
            }
        }
    }
}

/// Runs the cron jobs of `schedules` on the injected clock until `stop`.
/// Each job runs at most once per scheduled instant; what fell due while the
/// process was down is released by [`crate::app::Runtime::catch_up`] before
/// the process starts serving.
pub async fn run_scheduler(
    schedules: Schedules,
    clock: Arc<dyn Clock>,
    work: ScheduledWork,
    mut stop: watch::Receiver<bool>,
    mut clock_moved: watch::Receiver<DateTime<Utc>>,
) {
    let start = clock.now();
    let mut next: Vec<Option<DateTime<Utc>>> = schedules
        .jobs()
        .iter()
        .map(|job| {
            job.schedule()
                .after(&start.with_timezone(&job.time_zone()))
                .next()
                .map(|at| at.to_utc())
        })
        .collect();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = clock_moved.changed() => {},
            () = tokio::time::sleep(SCHEDULER_TICK) => {},
        }
        let now = clock.now();
        for (job, next_at) in schedules.jobs().iter().zip(next.iter_mut()) {
            let Some(at) = *next_at else { continue };
            if at > now {
                continue;
            }
            work.run(job.job(), at.with_timezone(&job.time_zone()))
                .await;
            *next_at = job
                .schedule()
                .after(&now.with_timezone(&job.time_zone()))
                .next()
                .map(|at| at.to_utc());
        }
    }
}

/// What the scheduled jobs act on.
#[derive(Clone)]
pub struct ScheduledWork {
    pub settlement: Arc<SettlementEngine>,
    pub declarations: Arc<DeclarationPreparer>,
    pub month_close: Arc<crate::engine::month_close::MonthCloser>,
    pub grades: Arc<GradeReview>,
    pub reconciliation: Arc<crate::engine::reconciliation::Reconciler>,
    /// The review decides at the clock's now, not at the scheduled instant:
    /// after downtime (or a simulated jump) the missed runs are one run now.
    pub clock: Arc<dyn Clock>,
}

impl ScheduledWork {
    /// Runs `job` for its instant `at` (in the schedule's zone). A failure is
    /// logged; the job runs again at its next time (both jobs are idempotent).
    pub async fn run(&self, job: JobKind, at: DateTime<chrono_tz::Tz>) {
        match job {
            JobKind::ReleaseDueHolds => {
                if let Err(error) = self.settlement.release_due(1, "scheduled sweep").await {
                    tracing::warn!(error = %error, job = job.name(), "scheduled job failed; it runs again at its next time");
                }
            }
            JobKind::PrepareDeclaration => {
                let month = Month::of(at.date_naive()).previous();
                if let Err(error) = self.declarations.prepare(month, at.to_utc()).await {
                    tracing::error!(error = %error, job = job.name(), month = %month, "preparing the declaration failed; it runs again at its next time or start");
                }
            }
            JobKind::CloseMonth => match self.month_close.close_due(at.to_utc()).await {
                Ok(months) if !months.is_empty() => {
                    tracing::info!(job = job.name(), months = ?months, "months closed");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(error = %error, job = job.name(), "closing the month failed; it resumes at its next time or start");
                }
            },
            JobKind::ReviewGrades => {
                let actor = Actor::system(REVIEW_ACTOR);
                if let Err(error) = self.grades.run(self.clock.now(), &actor).await {
                    tracing::error!(error = %error, job = job.name(), "the grade review failed; it runs again at its next time or start");
                }
            }
            // Downloads can take a while: off the scheduler's loop, so the
            // release sweep keeps its minute. A sweep already running in
            // this process makes this one a no-op.
            JobKind::ReconcileStatements => {
                let reconciliation = self.reconciliation.clone();
                tokio::spawn(async move {
                    let finished = reconciliation.run_due().await;
                    if finished > 0 {
                        tracing::info!(days = finished, "statements reconciled");
                    }
                });
            }
        }
    }
}

/// Parses a cron expression the way the definitions do (for tests and tools).
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, cron::error::Error> {
    cron::Schedule::from_str(expression)
}
