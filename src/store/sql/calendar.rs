//! The business calendar's years applied at run time, and the re-planning
//! of holds over them (issue 13), shared by both backends.
//!
//! ```text
//! apply (one tx, calendar lock exclusive): version n+1 of the year, its
//!       audit entry, and a release job at once ── the job's release step
//!       finishes the re-plan should this process die before it does
//! re-plan (one tx, exclusive): every holding order whose release time the
//!       calendar now puts elsewhere gets it, a timeline entry and a release
//!       job; then the versions are marked re-planned
//! ingest, release (shared): stop with CalendarChanged when the calendar
//!       they planned with is not the latest (release also while a re-plan
//!       is pending), so no hold is planned or released on an old calendar
//! ```
//!
//! The highest `calendar_years.id` is the calendar's generation: every
//! process compares the one it loaded with it inside the transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Row, Transaction};

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Conn, Db, DbRow, lock_calendar, push_job, push_release_jobs};
use crate::domain::calendar::CalendarYear;
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, AppliedYear, CalendarLock, HoldPlan, NewCalendarYear, ReplanCounts, YearApplication,
};
use crate::store::time::DbTime;
use crate::store::{JobSpec, calendar_replan_task};

macro_rules! year_columns {
    () => {
        "id, calendar, cast(year as bigint) as year, cast(version as bigint) as version, \
         source, body, body_sha256, applied_by, applied_at, replanned_at"
    };
}

/// The holding orders of one group: confirmed on one local day ($3, $4)
/// with one stored release time ($1), provisional mark ($2) and extra hold
/// for risk ($5).
macro_rules! hold_group {
    () => {
        "state = 'holding' and release_at = $1 and release_at_provisional = $2 \
         and confirmed_at >= $3 and confirmed_at < $4 and extra_hold_days = $5"
    };
}

fn year_from_row(row: &DbRow) -> Result<AppliedYear, StoreError> {
    let body: String = row.try_get("body")?;
    let year: i64 = row.try_get("year")?;
    Ok(AppliedYear {
        id: row.try_get("id")?,
        calendar: row.try_get("calendar")?,
        year: i32::try_from(year)
            .map_err(|_| StoreError::Corrupt(format!("calendar year {year}")))?,
        version: row.try_get("version")?,
        source: row.try_get("source")?,
        body: serde_json::from_str::<CalendarYear>(&body)
            .map_err(|error| StoreError::Corrupt(format!("calendar year {year}: {error}")))?,
        body_sha256: row.try_get("body_sha256")?,
        applied_by: row.try_get("applied_by")?,
        applied_at: row.try_get::<DbTime, _>("applied_at")?.0,
        replanned_at: row
            .try_get::<Option<DbTime>, _>("replanned_at")?
            .map(|at| at.0),
    })
}

/// Holding orders that move together: (local confirmation day's start,
/// stored release time, stored provisional mark).
/// (local day starts, extra hold days, stored release, provisional).
type HoldGroup = (DateTime<Utc>, i64, DateTime<Utc>, bool);

/// The generation and the count of versions still to re-plan, as this
/// transaction sees them once it holds the calendar lock.
async fn generation_in(conn: &mut Conn) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query(concat!(
        "select coalesce(max(id), 0) as generation, ",
        "coalesce(sum(case when replanned_at is null then 1 else 0 end), 0) as pending ",
        "from calendar_years"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("generation")?, row.try_get("pending")?))
}

/// Takes the calendar lock in `mode` and checks that the caller's calendar
/// (`expected` generation) is still the latest: a hold planned or released
/// now agrees with every committed year. `pending_allowed` lets ingest go on
/// while a re-plan is pending (new orders are planned on the new calendar
/// already); release must wait for the re-plan.
pub(super) async fn check_calendar(
    tx: &mut Transaction<'static, Db>,
    mode: CalendarLock,
    expected: i64,
    pending_allowed: bool,
) -> Result<(), StoreError> {
    lock_calendar(&mut *tx, mode).await?;
    let (generation, pending) = generation_in(&mut *tx).await?;
    if generation != expected || (pending > 0 && !pending_allowed) {
        return Err(StoreError::CalendarChanged { generation });
    }
    Ok(())
}

impl Repo {
    /// The calendar's generation: the id of the latest year applied, 0 when
    /// none was.
    pub async fn calendar_generation(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(generation_in(&mut conn).await?.0)
    }

    /// Every version of every year applied to `calendar`, by year and version.
    pub async fn calendar_years(&self, calendar: &str) -> Result<Vec<AppliedYear>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            year_columns!(),
            " from calendar_years where calendar = $1 order by year, version"
        ))
        .bind(calendar)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(year_from_row).collect()
    }

    /// Versions whose holds are still to re-plan, oldest first.
    pub async fn pending_replans(&self) -> Result<Vec<AppliedYear>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            year_columns!(),
            " from calendar_years where replanned_at is null order by id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(year_from_row).collect()
    }

    /// Stores `new` as the next version of its year, with its audit entry
    /// and a release job due at once, in one transaction; the same body as
    /// the version in force changes nothing.
    pub async fn apply_calendar_year(
        &self,
        new: &NewCalendarYear<'_>,
        actor: &Actor,
        release_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<YearApplication, StoreError> {
        let body = serde_json::to_string(new.body)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let mut tx = self.begin_write().await?;
        lock_calendar(&mut tx, CalendarLock::Exclusive).await?;
        let latest = sqlx::query(concat!(
            "select ",
            year_columns!(),
            " from calendar_years where calendar = $1 and year = $2 order by version desc limit 1"
        ))
        .bind(new.calendar)
        .bind(new.year)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| year_from_row(&row))
        .transpose()?;
        if let Some(latest) = latest.filter(|latest| latest.body_sha256 == new.body_sha256) {
            tx.commit().await?;
            return Ok(YearApplication::Unchanged(latest));
        }
        let version = latest_version(&mut tx, new.calendar, new.year).await? + 1;
        let id: i64 = sqlx::query_scalar(concat!(
            "insert into calendar_years ",
            "(calendar, year, version, source, body, body_sha256, applied_by, applied_at) ",
            "values ($1, $2, $3, $4, $5, $6, $7, $8) returning id"
        ))
        .bind(new.calendar)
        .bind(new.year)
        .bind(version)
        .bind(&new.body.source)
        .bind(&body)
        .bind(new.body_sha256)
        .bind(&actor.id)
        .bind(DbTime(now))
        .fetch_one(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "calendar.apply",
            format!("calendar:{}:{}", new.calendar, new.year),
            (version > 1).then(|| serde_json::json!({"version": version - 1})),
            Some(serde_json::json!({
                "version": version,
                "source": new.body.source,
                "holidays": new.body.holidays.len(),
                "makeup_workdays": new.body.makeup_workdays.len(),
            })),
        )
        .await?;
        // The release step finishes a pending re-plan before it releases:
        // this job makes a worker do so even if no one else asks.
        push_job(
            &mut tx,
            &release_job.queue,
            calendar_replan_task(release_job, new.calendar, new.year, version, now)?,
        )
        .await?;
        tx.commit().await?;
        Ok(YearApplication::Applied(AppliedYear {
            id,
            calendar: new.calendar.to_owned(),
            year: new.year,
            version,
            source: new.body.source.clone(),
            body: new.body.clone(),
            body_sha256: new.body_sha256.to_owned(),
            applied_by: actor.id.clone(),
            applied_at: now,
            replanned_at: None,
        }))
    }

    /// Re-plans every holding order whose release time is `from` or later,
    /// over the calendar of generation `expected`, in one transaction: each
    /// group of orders confirmed on one day whose `plan` differs from what is
    /// stored gets the new time, a timeline entry (`describe` names the
    /// calendar versions) and a release job; then every version up to
    /// `expected` is marked re-planned. Run again, it finds nothing to move.
    pub async fn replan_holds<F>(
        &self,
        expected: i64,
        from: DateTime<Utc>,
        mut plan: F,
        describe: &str,
        release_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<ReplanCounts, StoreError>
    where
        F: FnMut(DateTime<Utc>, u32) -> HoldPlan,
    {
        let mut tx = self.begin_write().await?;
        check_calendar(&mut tx, CalendarLock::Exclusive, expected, true).await?;
        let rows = sqlx::query(concat!(
            "select confirmed_at, release_at, release_at_provisional, extra_hold_days from orders ",
            "where state = 'holding' and release_at >= $1"
        ))
        .bind(DbTime(from))
        .fetch_all(&mut *tx)
        .await?;
        let mut groups: BTreeMap<HoldGroup, (HoldPlan, i64)> = BTreeMap::new();
        for row in &rows {
            let confirmed_at = row.try_get::<DbTime, _>("confirmed_at")?.0;
            let release_at = row.try_get::<DbTime, _>("release_at")?.0;
            let provisional: bool = row.try_get("release_at_provisional")?;
            let extra_days: i64 = row.try_get("extra_hold_days")?;
            let planned = plan(confirmed_at, u32::try_from(extra_days).unwrap_or(0));
            if planned.release_at == release_at && planned.provisional == provisional {
                continue;
            }
            groups
                .entry((planned.day_starts, extra_days, release_at, provisional))
                .or_insert((planned, 0))
                .1 += 1;
        }
        let wall_clock = Utc::now();
        let mut counts = ReplanCounts::default();
        let mut new_times = Vec::new();
        for ((day_starts, extra_days, old_release, old_provisional), (planned, orders)) in &groups {
            let moved = planned.release_at != *old_release;
            let (outcome, detail) = if moved {
                (
                    "replanned",
                    format!(
                        "release moved from {} to {}{} by calendar {describe}",
                        old_release.to_rfc3339(),
                        planned.release_at.to_rfc3339(),
                        if planned.provisional {
                            " (provisional)"
                        } else {
                            ""
                        },
                    ),
                )
            } else {
                (
                    "release_confirmed",
                    format!(
                        "release at {} no longer provisional: calendar {describe}",
                        planned.release_at.to_rfc3339()
                    ),
                )
            };
            sqlx::query(concat!(
                "insert into order_events (order_id, step, outcome, attempt, detail, at, created_at) ",
                "select order_id, 'hold', $6, 1, $7, $8, $9 from orders where ",
                hold_group!()
            ))
            .bind(DbTime(*old_release))
            .bind(*old_provisional)
            .bind(DbTime(*day_starts))
            .bind(DbTime(planned.day_ends))
            .bind(*extra_days)
            .bind(outcome)
            .bind(&detail)
            .bind(DbTime(now))
            .bind(DbTime(wall_clock))
            .execute(&mut *tx)
            .await?;
            let updated = sqlx::query(concat!(
                "update orders set release_at = $6, release_at_provisional = $7, updated_at = $8 where ",
                hold_group!()
            ))
            .bind(DbTime(*old_release))
            .bind(*old_provisional)
            .bind(DbTime(*day_starts))
            .bind(DbTime(planned.day_ends))
            .bind(*extra_days)
            .bind(DbTime(planned.release_at))
            .bind(planned.provisional)
            .bind(DbTime(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != u64::try_from(*orders).unwrap_or(u64::MAX) {
                return Err(StoreError::Corrupt(format!(
                    "re-planning the holds confirmed from {day_starts} moved {updated} orders, \
                     {orders} expected under the calendar lock"
                )));
            }
            if moved {
                counts.moved += orders;
                new_times.push(planned.release_at);
            } else {
                counts.confirmed += orders;
            }
        }
        new_times.sort_unstable();
        new_times.dedup();
        push_release_jobs(&mut tx, release_job, &new_times).await?;
        counts.versions = sqlx::query(
            "update calendar_years set replanned_at = $1 where replanned_at is null and id <= $2",
        )
        .bind(DbTime(now))
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(counts)
    }
}

async fn latest_version(
    tx: &mut Transaction<'static, Db>,
    calendar: &str,
    year: i32,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "select coalesce(max(cast(version as bigint)), 0) from calendar_years where calendar = $1 and year = $2",
    )
    .bind(calendar)
    .bind(year)
    .fetch_one(&mut **tx)
    .await?)
}
