//! `/v1/ops` (SPEC §2.9): the workflow queue as payment ops steer it — per
//! workflow and step, jobs by state with the oldest wait and the last hour's
//! throughput; the jobs themselves (failed and stuck ones with their error,
//! attempts and the withdrawal or order release they drive); and retry and
//! cancel, which are safe to press twice. The use cases are `service::ops`;
//! this module is their HTTP face.

use axum::Json;
use axum::extract::State;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Path, Query};
use crate::api::policy::{Allowed, OpsOrAdmin};
use crate::api::responses::AuthRefusals;
use crate::service::ops::{
    JobAction, JobActionView, JobPage, JobsQuery, OpsError, QueuesView, job_action, jobs_page,
    queues_view,
};
use crate::state::AppState;

#[utoipa::path(
    get, path = "/v1/ops/queues", tag = "ops",
    responses((status = 200, description = "per workflow and step, jobs by state", body = QueuesView), AuthRefusals),
    security(("bearer" = []))
)]
pub async fn queues(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
) -> Result<Json<QueuesView>, ApiError> {
    Ok(Json(queues_view(&state).await?))
}

#[utoipa::path(
    get, path = "/v1/ops/jobs", tag = "ops", params(JobsQuery),
    responses(
        (status = 200, description = "jobs by id", body = JobPage),
        (status = 400, description = "invalid_state, unknown_step, invalid_field (a parameter of the wrong type)", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn jobs(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobPage>, ApiError> {
    Ok(Json(jobs_page(&state, &query).await?))
}

#[utoipa::path(
    post, path = "/v1/ops/jobs/{id}/retry", tag = "ops", params(("id" = String, Path)),
    responses(
        (status = 200, description = "a failed or cancelled job runs again now, with one more attempt", body = JobActionView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<JobActionView>, ApiError> {
    let principal = &caller.principal;
    Ok(Json(
        job_action(&state, principal, id, JobAction::Retry).await?,
    ))
}

#[utoipa::path(
    post, path = "/v1/ops/jobs/{id}/cancel", tag = "ops", params(("id" = String, Path)),
    responses(
        (status = 200, description = "a pending or failed job will not run", body = JobActionView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<JobActionView>, ApiError> {
    let principal = &caller.principal;
    Ok(Json(
        job_action(&state, principal, id, JobAction::Cancel).await?,
    ))
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> ApiError {
        match error {
            OpsError::InvalidState => {
                ApiError::bad_request("invalid_state", error.to_string()).with_field("state")
            }
            OpsError::UnknownStep => {
                ApiError::bad_request("unknown_step", error.to_string()).with_field("step")
            }
            OpsError::AmbiguousStep => {
                ApiError::bad_request("ambiguous_step", error.to_string()).with_field("step")
            }
            OpsError::JobNotFound => ApiError::not_found("job"),
            OpsError::Store(error) => error.into(),
        }
    }
}
