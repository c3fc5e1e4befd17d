//! `/v1/admin/calendars/{name}/years/{year}`: a year of the business
//! calendar as it is used, and its official notice applied at run time
//! (admin). Every process picks an applied year up without a restart, and
//! the holds it moves are re-planned.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path};
use crate::api::policy::{AdminOnly, Allowed, OpsOrAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::calendar::CalendarYear;
use crate::service::calendars::{CalendarYearError, YearApplied, YearInUse};
use crate::state::AppState;

/// The answer to applying a year.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedYearView {
    /// False when the same year was in force already: nothing changed.
    pub changed: bool,
    #[serde(flatten)]
    pub year: YearInUse,
    /// Holding orders whose release time moved, each with a timeline entry;
    /// absent when the re-plan is left to the workers' release step.
    pub orders_moved: Option<i64>,
    /// Holding orders whose release time stayed but is no longer provisional.
    pub orders_confirmed: Option<i64>,
}

impl From<YearApplied> for AppliedYearView {
    fn from(applied: YearApplied) -> AppliedYearView {
        AppliedYearView {
            changed: applied.changed,
            year: applied.year,
            orders_moved: applied.replanned.map(|counts| counts.moved),
            orders_confirmed: applied.replanned.map(|counts| counts.confirmed),
        }
    }
}

impl From<CalendarYearError> for ApiError {
    fn from(error: CalendarYearError) -> ApiError {
        match error {
            CalendarYearError::UnknownCalendar { .. } => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_calendar",
                error.to_string(),
            ),
            CalendarYearError::YearOutOfRange(_) => {
                ApiError::unprocessable("year_out_of_range", error.to_string()).with_field("year")
            }
            CalendarYearError::Invalid(invalid) => {
                ApiError::unprocessable("invalid_calendar_year", invalid.message)
                    .with_field(invalid.field)
            }
            CalendarYearError::Store(error) => error.into(),
        }
    }
}

#[utoipa::path(
    put, path = "/v1/admin/calendars/{name}/years/{year}", tag = "admin",
    params(
        ("name" = String, Path, description = "the calendar, e.g. cn"),
        ("year" = i32, Path, description = "the year the body describes"),
    ),
    request_body = CalendarYear,
    responses(
        (status = 200, body = AppliedYearView),
        (status = 400, description = "invalid_path (the year is not a number), malformed_json, missing_field, unknown_field, invalid_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "unknown_calendar", body = ErrorBody),
        (status = 422, description = "invalid_calendar_year naming the field (a date outside the year, `to` before `from`, a make-up day not on a weekend or also a holiday, …); year_out_of_range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_year(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path((name, year)): Path<(String, i32)>,
    JsonBody(body): JsonBody<CalendarYear>,
) -> Result<Json<AppliedYearView>, ApiError> {
    let applied = crate::service::calendars::apply_year(
        &state.settlement,
        &state.store,
        &name,
        year,
        &body,
        &crate::service::audit::Actor::of(&caller.principal),
        state.clock.now(),
    )
    .await?;
    Ok(Json(applied.into()))
}

#[utoipa::path(
    get, path = "/v1/admin/calendars/{name}/years/{year}", tag = "admin",
    params(
        ("name" = String, Path, description = "the calendar, e.g. cn"),
        ("year" = i32, Path),
    ),
    responses(
        (status = 200, body = YearInUse),
        (status = 400, description = "invalid_path: the year is not a number", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "unknown_calendar", body = ErrorBody),
        (status = 422, description = "year_out_of_range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_year(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
    Path((name, year)): Path<(String, i32)>,
) -> Result<Json<YearInUse>, ApiError> {
    let year = crate::service::calendars::year_in_use(&state.settlement, &state.store, &name, year)
        .await?;
    Ok(Json(year))
}
