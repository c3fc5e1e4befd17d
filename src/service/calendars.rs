//! Applying a year of the business calendar at run time and reading a year
//! back, shared by `PUT/GET /v1/admin/calendars/{name}/years/{year}`,
//! `fenrun calendar apply` and the ops console. The domain checks the year,
//! the store keeps every version, and the settlement engine re-plans the
//! holds it moves.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::calendar::{CalendarYear, HolidayPeriod, YearError};
use crate::domain::digest::sha256_hex;
use crate::engine::settlement::SettlementEngine;
use crate::store::{
    AppliedYear, NewCalendarYear, ReplanCounts, Store, StoreError, YearApplication,
};

/// Years a calendar may be given at run time (the database's own bounds).
pub const APPLICABLE_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

#[derive(Debug, thiserror::Error)]
pub enum CalendarYearError {
    /// No calendar of this name is in use (→ 404 `unknown_calendar`).
    #[error("there is no business calendar {name:?}; this service uses {known:?}")]
    UnknownCalendar { name: String, known: String },
    /// (→ 422 `year_out_of_range`)
    #[error("year {0} is outside 1900–9999")]
    YearOutOfRange(i32),
    /// A rule of the year is broken (→ 422 on the field).
    #[error(transparent)]
    Invalid(#[from] YearError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A year of the calendar as it is used now, and where it comes from: the
/// answer of `GET /v1/admin/calendars/{name}/years/{year}` and a row of the
/// ops console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct YearInUse {
    /// The calendar's name, e.g. `cn`.
    pub calendar: String,
    pub year: i32,
    /// `file` (the calendar file), `applied` (at run time), `statutory`
    /// (provisional: statutory holidays computed) or `weekends_only`
    /// (provisional: past the computed range).
    pub origin: &'static str,
    /// True until the year's notice is in the file or applied: release
    /// times over it may still move.
    pub provisional: bool,
    /// The notice the year is copied from (file and applied years).
    pub source: Option<String>,
    /// The application in force (applied years).
    pub applied: Option<Applied>,
    pub holidays: Vec<HolidayPeriod>,
    #[schema(value_type = Vec<String>)]
    pub makeup_workdays: Vec<NaiveDate>,
}

/// Who applied the version of a year in force, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Applied {
    pub version: i64,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    /// When its holds were re-planned; `None` while that is pending.
    pub replanned_at: Option<DateTime<Utc>>,
}

/// What applying a year did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearApplied {
    /// False when the same body was in force already: nothing was written.
    pub changed: bool,
    pub year: YearInUse,
    /// The re-planning of the holds; `None` when it failed here and is left
    /// to the release step (it is already recorded as pending).
    pub replanned: Option<ReplanCounts>,
}

fn check_name(engine: &SettlementEngine, name: &str) -> Result<(), CalendarYearError> {
    let known = engine.calendars().key();
    if name == known {
        Ok(())
    } else {
        Err(CalendarYearError::UnknownCalendar {
            name: name.to_owned(),
            known: known.to_owned(),
        })
    }
}

fn check_year(year: i32) -> Result<(), CalendarYearError> {
    if APPLICABLE_YEARS.contains(&year) {
        Ok(())
    } else {
        Err(CalendarYearError::YearOutOfRange(year))
    }
}

/// Checks `body` as the calendar file's loader checks a year, stores it as
/// the next version of `year` of calendar `name` (audited in the same
/// transaction), then re-plans every holding order it moves.
pub async fn apply_year(
    engine: &SettlementEngine,
    store: &Store,
    name: &str,
    year: i32,
    body: &CalendarYear,
    actor: &crate::service::audit::Actor,
    now: DateTime<Utc>,
) -> Result<YearApplied, CalendarYearError> {
    check_name(engine, name)?;
    check_year(year)?;
    body.check(year)?;
    let canonical =
        serde_json::to_string(body).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let new = NewCalendarYear {
        calendar: name,
        year,
        body,
        body_sha256: &sha256_hex(canonical.as_bytes()),
    };
    let application = store
        .apply_calendar_year(&new, actor, &engine.settings().release_job, now)
        .await?;
    let changed = matches!(application, YearApplication::Applied(_));
    let (YearApplication::Applied(applied) | YearApplication::Unchanged(applied)) = application;
    let replanned = match engine.replan_pending().await {
        Ok(counts) => Some(counts),
        Err(error) => {
            tracing::warn!(
                error = %error,
                calendar = name,
                year,
                version = applied.version,
                "the year is applied; re-planning the holds failed here and is left to the release step"
            );
            None
        }
    };
    if changed {
        tracing::info!(
            calendar = name,
            year,
            version = applied.version,
            source = %applied.source,
            applied_by = %applied.applied_by,
            "business calendar year applied"
        );
    }
    Ok(YearApplied {
        changed,
        year: year_in_use(engine, store, name, year).await?,
        replanned,
    })
}

/// Year `year` of calendar `name` as it is used now.
pub async fn year_in_use(
    engine: &SettlementEngine,
    store: &Store,
    name: &str,
    year: i32,
) -> Result<YearInUse, CalendarYearError> {
    check_name(engine, name)?;
    check_year(year)?;
    Ok(years_in_use(engine, store, year, year).await?.remove(0))
}

/// Every year from `from` to `to` (inclusive) as it is used now, for the
/// console.
pub async fn years_in_use(
    engine: &SettlementEngine,
    store: &Store,
    from: i32,
    to: i32,
) -> Result<Vec<YearInUse>, StoreError> {
    let in_force = engine.refresh_calendar().await?;
    let name = engine.calendars().key();
    // Read afresh rather than from the loaded calendar: whether a version's
    // re-plan is done changes without a new generation.
    let versions = store.calendar_years(name).await?;
    let in_force_version = |year: i32| {
        versions
            .iter()
            .filter(|version| version.year == year && version.id <= in_force.generation)
            .max_by_key(|version| version.version)
    };
    Ok((from..=to)
        .map(|year| describe(name, year, &in_force.calendar, in_force_version(year)))
        .collect())
}

fn describe(
    name: &str,
    year: i32,
    calendar: &crate::domain::calendar::BusinessCalendar,
    applied: Option<&AppliedYear>,
) -> YearInUse {
    let origin = calendar.year_origin(year);
    let (holidays, makeup_workdays) = calendar.year_days(year);
    YearInUse {
        calendar: name.to_owned(),
        year,
        origin: origin.as_str(),
        provisional: origin.is_provisional(),
        source: calendar.source(year).map(str::to_owned),
        applied: applied.map(|applied| Applied {
            version: applied.version,
            applied_by: applied.applied_by.clone(),
            applied_at: applied.applied_at,
            replanned_at: applied.replanned_at,
        }),
        holidays,
        makeup_workdays,
    }
}
