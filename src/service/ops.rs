//! The payment-ops use cases (SPEC §2.9) behind both `/v1/ops` and the
//! `/ops` console: the queues per workflow step, the jobs (failed and stuck
//! ones with their error and what they drive), and retry and cancel, which
//! are safe to press twice and audited. No HTTP here: refusals are
//! [`OpsError`]s, which the API and the pages answer in their own shapes.

use std::collections::BTreeMap;

use chrono::Datelike;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::access::Principal;
use crate::engine::CALENDAR_HORIZON_DAYS;
use crate::engine::worker::ORPHAN_TIMEOUT;
use crate::service::audit::Actor;
use crate::state::{AppState, StepQueue};
use crate::store::{JobFilter, MAX_PAGE, OpsJob, StoreError};

/// Jobs listed when a query names no `limit`.
const DEFAULT_JOB_PAGE: i64 = 50;

/// Why an ops request cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A `state` that is not one of [`JOB_STATES`].
    #[error("state must be one of {}", JOB_STATES.join(", "))]
    InvalidState,
    /// A workflow and step with no queue.
    #[error("no step of that workflow runs from a queue")]
    UnknownStep,
    /// A step name that more than one workflow has.
    #[error("name the workflow and the step")]
    AmbiguousStep,
    #[error("no such job")]
    JobNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The states a job is counted in, in the console's order.
pub const JOB_STATES: [&str; 6] = [
    "waiting",
    "scheduled",
    "retrying",
    "running",
    "failed",
    "done",
];

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuesView {
    pub steps: Vec<StepView>,
    /// Days from today the business calendar covers; below 60
    /// (`engine::CALENDAR_HORIZON_DAYS`) it is a warning.
    pub calendar_covered_days: i64,
    pub calendar_warning: bool,
    /// Years within the horizon the calendar knows only provisionally: the
    /// statutory holidays computed (`statutory`), or weekends only
    /// (`weekends_only`); their release times may move when the year's
    /// notice is added.
    pub provisional_years: Vec<ProvisionalYear>,
    /// Each year from this one to the horizon's, and where its days come from.
    pub calendar_years: Vec<crate::service::calendars::YearInUse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionalYear {
    pub year: i32,
    /// `statutory` or `weekends_only`.
    pub origin: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub workflow: String,
    pub step: String,
    pub queue: String,
    /// Jobs per state: waiting, scheduled, retrying, running, failed, done.
    pub counts: BTreeMap<String, i64>,
    /// Age of the oldest job that is due but not taken, in seconds.
    pub oldest_waiting_seconds: i64,
    pub done_last_hour: i64,
}

/// What `/v1/ops/queues` and the console show.
pub async fn queues_view(state: &AppState) -> Result<QueuesView, OpsError> {
    let now = state.clock.now();
    let stats = state.store.queue_stats(now.timestamp()).await?;
    let done = state.store.done_last_hour().await?;
    let steps = state
        .step_queues
        .iter()
        .map(|step| {
            let mut counts: BTreeMap<String, i64> = JOB_STATES
                .iter()
                .map(|name| ((*name).to_owned(), 0))
                .collect();
            let mut oldest_waiting_seconds = 0;
            for (queue, job_state, count, oldest) in &stats {
                if *queue != step.queue {
                    continue;
                }
                *counts.entry(job_state.clone()).or_default() += count;
                if matches!(job_state.as_str(), "waiting" | "retrying") {
                    let age = oldest.map_or(0, |at| (now.timestamp() - at).max(0));
                    oldest_waiting_seconds = oldest_waiting_seconds.max(age);
                }
            }
            StepView {
                workflow: step.workflow.clone(),
                step: step.step.clone(),
                queue: step.queue.clone(),
                counts,
                oldest_waiting_seconds,
                done_last_hour: done
                    .iter()
                    .find(|(queue, _)| *queue == step.queue)
                    .map_or(0, |(_, count)| *count),
            }
        })
        .collect();
    let today = now.date_naive();
    // A year applied by another process since this one last looked counts.
    let calendar = state.settlement.refresh_calendar().await?.calendar.clone();
    let covered = (calendar.first_uncovered_date(today) - today)
        .num_days()
        .max(0);
    let provisional_years = crate::engine::provisional_years_ahead(&calendar, today)
        .into_iter()
        .map(|(year, origin)| ProvisionalYear {
            year,
            origin: origin.as_str(),
        })
        .collect();
    let horizon = today + chrono::Days::new(u64::from(CALENDAR_HORIZON_DAYS));
    let calendar_years = crate::service::calendars::years_in_use(
        &state.settlement,
        &state.store,
        today.year(),
        horizon.year(),
    )
    .await?;
    Ok(QueuesView {
        steps,
        calendar_covered_days: covered,
        calendar_warning: covered < i64::from(CALENDAR_HORIZON_DAYS),
        provisional_years,
        calendar_years,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// waiting, scheduled, retrying, running, failed or done.
    pub state: Option<String>,
    /// A workflow name (`withdrawal`, `order-settlement`); with `step`, one queue.
    pub workflow: Option<String>,
    pub step: Option<String>,
    /// Jobs whose id sorts after this one.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub workflow: Option<String>,
    pub step: Option<String>,
    pub queue: String,
    pub state: String,
    /// apalis's own status.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub locked_by: Option<String>,
    pub locked_at: Option<i64>,
    pub done_at: Option<i64>,
    /// Running longer than the step's timeout, or held by a worker that has
    /// not been seen for the orphan timeout.
    pub stuck: bool,
    /// The last attempt's error, when there was one.
    pub last_error: Option<String>,
    /// What the job drives: `/v1/withdrawals/{id}` or an order release time.
    pub target: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    pub next_after: Option<String>,
}

/// What `/v1/ops/jobs` and the console list.
pub async fn jobs_page(state: &AppState, query: &JobsQuery) -> Result<JobPage, OpsError> {
    if let Some(job_state) = &query.state
        && !JOB_STATES.contains(&job_state.as_str())
    {
        return Err(OpsError::InvalidState);
    }
    let queue = match (&query.workflow, &query.step) {
        (None, None) => None,
        (workflow, step) => {
            let matching: Vec<&StepQueue> = state
                .step_queues
                .iter()
                .filter(|candidate| {
                    workflow
                        .as_ref()
                        .is_none_or(|name| *name == candidate.workflow)
                        && step.as_ref().is_none_or(|name| *name == candidate.step)
                })
                .collect();
            match matching.as_slice() {
                [one] => Some(one.queue.clone()),
                [] => return Err(OpsError::UnknownStep),
                _ => return Err(OpsError::AmbiguousStep),
            }
        }
    };
    let now = state.clock.now().timestamp();
    let limit = query.limit.unwrap_or(DEFAULT_JOB_PAGE).clamp(1, MAX_PAGE);
    let jobs = state
        .store
        .ops_jobs(&JobFilter {
            now_secs: now,
            state: query.state.clone(),
            queue,
            after: query.after.clone(),
            limit,
        })
        .await?;
    let next_after = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|job| job.id.clone()))
        .flatten();
    Ok(JobPage {
        // apalis stamps lock and heartbeat times with the database's clock,
        // not the workflow clock (which a simulated clock may have moved).
        items: jobs
            .into_iter()
            .map(|job| job_view(&state.step_queues, job, chrono::Utc::now().timestamp()))
            .collect(),
        next_after,
    })
}

fn job_view(steps: &[StepQueue], job: OpsJob, now: i64) -> JobView {
    let step = steps.iter().find(|step| step.queue == job.queue);
    let running = job.state == "running";
    let overran = step.is_some_and(|step| {
        job.lock_at
            .is_some_and(|at| now - at > step.timeout.as_secs() as i64)
    });
    let worker_gone = job
        .worker_last_seen
        .is_none_or(|seen| now - seen > ORPHAN_TIMEOUT.as_secs() as i64);
    let payload: serde_json::Value = serde_json::from_str(&job.payload).unwrap_or_default();
    let target = payload
        .get("withdrawal_id")
        .and_then(serde_json::Value::as_str)
        .map(|id| format!("/v1/withdrawals/{id}"))
        .or_else(|| {
            payload
                .get("release_at")
                .and_then(serde_json::Value::as_str)
                .map(|at| format!("order release at {at}"))
        });
    JobView {
        stuck: running && (overran || worker_gone),
        workflow: step.map(|step| step.workflow.clone()),
        step: step.map(|step| step.step.clone()),
        last_error: job
            .last_result
            .filter(|result| result.contains("Err") || job.status == "Failed")
            .map(|result| error_text(&result)),
        id: job.id,
        queue: job.queue,
        state: job.state,
        status: job.status,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        run_at: job.run_at,
        locked_by: job.lock_by,
        locked_at: job.lock_at,
        done_at: job.done_at,
        target,
    }
}

/// The error apalis stored as `{"Err": "…"}`, unwrapped for people; any
/// other shape is shown as stored.
fn error_text(last_result: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(last_result) {
        Ok(serde_json::Value::Object(fields)) if fields.len() == 1 => match fields.get("Err") {
            // A step that gave up (engine::step) reaches apalis as an AbortError.
            Some(serde_json::Value::String(message)) => {
                match message.strip_prefix("AbortError: ") {
                    Some(reason) => format!("gave up, not retried: {reason}"),
                    None => message.clone(),
                }
            }
            _ => last_result.to_owned(),
        },
        _ => last_result.to_owned(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobActionView {
    pub id: String,
    /// apalis's status after the action: `Pending` after a retry, `Killed`
    /// after a cancel, or unchanged when the job was not in a state the
    /// action applies to (pressing twice changes nothing more).
    pub status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Retry,
    Cancel,
}

/// Retries or cancels a job for a caller whose role was checked, and
/// audits a change; shared with the console.
pub async fn job_action(
    state: &AppState,
    principal: &Principal,
    id: String,
    action: JobAction,
) -> Result<JobActionView, OpsError> {
    let actor = Actor::of(principal);
    let now = state.clock.now();
    let (name, changed) = match action {
        JobAction::Retry => ("job.retry", state.store.retry_job(&id, &actor, now).await?),
        JobAction::Cancel => (
            "job.cancel",
            state.store.cancel_job(&id, &actor, now).await?,
        ),
    };
    let (_, status) = changed.ok_or(OpsError::JobNotFound)?;
    tracing::info!(job_id = %id, status = %status, token_id = %principal.token_id, action = name, "ops: job action");
    Ok(JobActionView { id, status })
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn an_apalis_error_is_unwrapped_and_anything_else_is_shown_as_stored() {
        assert_eq!(
            error_text(r#"{"Err":"gateway: HTTP 429 FREQUENCY_LIMITED"}"#),
            "gateway: HTTP 429 FREQUENCY_LIMITED"
        );
        assert_eq!(error_text(r#"{"Err":{"code":7}}"#), r#"{"Err":{"code":7}}"#);
        assert_eq!(
            error_text(r#"{"Err":"AbortError: opening the payout credentials: no key k1"}"#),
            "gave up, not retried: opening the payout credentials: no key k1"
        );
        assert_eq!(
            error_text(r#"{"Err":"a","Ok":null}"#),
            r#"{"Err":"a","Ok":null}"#
        );
        assert_eq!(error_text("worker lost"), "worker lost");
    }
}
