//! `/v1/ops/reconciliation` (issue 15 item 6): a day's reconciliation
//! against the gateways' statements (totals per channel on both sides, the
//! mismatches), running a day again, and resolving a mismatch by taking a
//! side, audited. The use cases are `service::reconciliation`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path, Query};
use crate::api::policy::{Allowed, OpsOrAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::identity::PayoutChannel;
use crate::engine::reconciliation::ReconcileError;
use crate::service::audit::Actor;
use crate::service::reconciliation::{
    DaySelection, MAX_RESOLUTION_REASON_CHARS, MismatchView, ReconciliationView, ResolutionSide,
    day_view, default_date, resolve, run_day,
};
use crate::state::AppState;

/// No gateway keeps statements from before this year: an earlier date is a
/// typo, refused rather than asked of the gateway.
const FIRST_YEAR: i32 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// YYYY-MM-DD (a China day); yesterday when absent.
    pub date: Option<String>,
    /// wechat, alipay or bank; every channel when absent.
    pub channel: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// YYYY-MM-DD (a China day, today at the latest).
    pub date: String,
    /// wechat, alipay or bank (runs that channel's statement: the Alipay
    /// account log holds alipay and bank); every configured one when absent.
    pub channel: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `ledger`: fenrun's books are right; `channel`: the gateway is right.
    pub side: String,
    /// Why, for the audit log (1–500 characters).
    pub reason: String,
}

fn selection(
    date: Option<&str>,
    channel: Option<&str>,
    state: &AppState,
) -> Result<DaySelection, ApiError> {
    let date = match date {
        None => default_date(state),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .filter(|date| text.len() == 10 && date.year() >= FIRST_YEAR)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_field",
                    format!("date must be a day as YYYY-MM-DD, in {FIRST_YEAR} or later"),
                )
                .with_field("date")
            })?,
    };
    let channel = channel
        .map(|text| {
            PayoutChannel::parse(text).map_err(|_| {
                ApiError::bad_request("invalid_field", "channel must be wechat, alipay or bank")
                    .with_field("channel")
            })
        })
        .transpose()?;
    Ok(DaySelection { date, channel })
}

impl From<ReconcileError> for ApiError {
    fn from(error: ReconcileError) -> ApiError {
        match error {
            ReconcileError::FutureDate { .. } => {
                ApiError::unprocessable("date_in_future", error.to_string()).with_field("date")
            }
            ReconcileError::SourceNotConfigured { .. } => {
                ApiError::unprocessable("channel_not_configured", error.to_string())
                    .with_field("channel")
            }
            ReconcileError::NoGateway => ApiError::unavailable(error),
            ReconcileError::Statement { ref run, .. } => {
                let next = run
                    .next_attempt_at
                    .map(|at| format!("; it is tried again at {}", at.to_rfc3339()))
                    .unwrap_or_default();
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "statement_unavailable",
                    format!("{error}: nothing was reconciled{next}"),
                )
            }
            ReconcileError::Store(store) => store.into(),
        }
    }
}

#[utoipa::path(
    get, path = "/v1/ops/reconciliation", tag = "ops", params(DayQuery),
    responses(
        (status = 200, description = "the day's runs per statement with the totals of both sides per channel, and its mismatches", body = ReconciliationView),
        (status = 400, description = "invalid_field (date, channel), unknown_field", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn day(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
    Query(query): Query<DayQuery>,
) -> Result<Json<ReconciliationView>, ApiError> {
    let selection = selection(query.date.as_deref(), query.channel.as_deref(), &state)?;
    Ok(Json(day_view(&state, selection).await?))
}

#[utoipa::path(
    post, path = "/v1/ops/reconciliation/run", tag = "ops", request_body = RunBody,
    responses(
        (status = 200, description = "the day was reconciled (again); resolutions given before are kept", body = ReconciliationView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field (date, channel)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 422, description = "date_in_future, channel_not_configured", body = ErrorBody),
        (status = 502, description = "statement_unavailable: the statement could not be downloaded or failed its check; nothing was reconciled and the run is retried", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<Json<ReconciliationView>, ApiError> {
    let selection = selection(Some(&body.date), body.channel.as_deref(), &state)?;
    let view = run_day(&state, selection).await?;
    crate::service::audit::record(
        &state.store,
        &Actor::of(&caller.principal),
        "reconciliation.run",
        &format!("reconciliation:{}", view.date),
        None,
        Some(serde_json::json!({
            "channel": view.channel,
            "mismatches": view.mismatches.len(),
            "unresolved": view.unresolved,
        })),
        state.clock.now(),
    )
    .await;
    Ok(Json(view))
}

#[utoipa::path(
    post, path = "/v1/ops/reconciliation/mismatches/{id}/resolve", tag = "ops",
    params(("id" = i64, Path)), request_body = ResolveBody,
    responses(
        (status = 200, description = "resolved (or already resolved the same way)", body = MismatchView),
        (status = 400, description = "invalid_path, malformed_json, missing_field, unknown_field, invalid_field (side, reason)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such mismatch", body = ErrorBody),
        (status = 409, description = "mismatch_already_resolved: resolved before with another side or reason", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resolve_mismatch(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<MismatchView>, ApiError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("mismatch"))?;
    let side = ResolutionSide::parse(&body.side).ok_or_else(|| {
        ApiError::bad_request("invalid_field", "side must be ledger or channel").with_field("side")
    })?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_RESOLUTION_REASON_CHARS {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("reason must be 1–{MAX_RESOLUTION_REASON_CHARS} characters"),
        )
        .with_field("reason"));
    }
    match resolve(&state, id, side, reason, &Actor::of(&caller.principal)).await {
        Ok(view) => Ok(Json(view)),
        Err(crate::store::StoreError::Conflict { .. }) => Err(ApiError::conflict(
            "mismatch_already_resolved",
            format!(
                "mismatch {id} was resolved before with another side or reason; its resolution stands (see the audit log)"
            ),
        )),
        Err(error) => Err(error.into()),
    }
}
