//! `fenrun calendar apply FILE [--year Y] | show YEAR`: apply a year's
//! State Council notice to the business calendar at run time (every
//! `serve` and `worker` picks it up without a restart, and the holds it
//! moves are re-planned), or show a year as it is used.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::app::Workflows;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::calendar::BusinessCalendar;
use crate::engine::calendar::CalendarBook;
use crate::engine::settlement::SettlementEngine;
use crate::service::calendars::{CalendarYearError, YearInUse, apply_year, year_in_use};
use crate::store::Store;

use super::super::CalendarCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: CalendarCommand) -> anyhow::Result<ExitCode> {
    let workflows = Workflows::load(&settings.workflows_dir)?;
    let store = Arc::new(open_store_patiently(settings).await?);
    let engine = SettlementEngine::start(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(CalendarBook::new(
            workflows.calendar_key.clone(),
            workflows.calendar.clone(),
        )),
        workflows.settlement_settings(store.kind(), settings)?,
    );
    let result = match command {
        CalendarCommand::Apply { file, year } => {
            apply(&engine, &store, &workflows.calendar_key, &file, year).await
        }
        CalendarCommand::Show { year } => {
            show(&engine, &store, &workflows.calendar_key, year).await
        }
    };
    drop(engine);
    store.close().await;
    result
}

async fn apply(
    engine: &SettlementEngine,
    store: &Store,
    calendar: &str,
    file: &Path,
    only: Option<i32>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?;
    let mut years =
        BusinessCalendar::year_bodies_from_toml_str(&text, &file.display().to_string())?;
    if let Some(only) = only {
        years.retain(|(year, _)| *year == only);
        if years.is_empty() {
            anyhow::bail!(
                "{} has no [years.{only}] table; add it, or leave out --year to apply every year in the file",
                file.display()
            );
        }
    }
    if years.is_empty() {
        anyhow::bail!(
            "{} has no [years.YYYY] table to apply; see workflows/calendars/cn.toml for the shape",
            file.display()
        );
    }
    let actor = crate::service::audit::Actor::command_line();
    for (year, body) in &years {
        let applied = apply_retrying(engine, store, calendar, *year, body, &actor).await?;
        let version = applied
            .year
            .applied
            .as_ref()
            .map_or(0, |applied| applied.version);
        if !applied.changed {
            println!("calendar {calendar} {year}: unchanged, version {version} is the same year");
            continue;
        }
        match applied.replanned {
            Some(counts) => println!(
                "calendar {calendar} {year}: version {version} applied ({}); {} holding order(s) moved, {} no longer provisional",
                body.source, counts.moved, counts.confirmed
            ),
            None => println!(
                "calendar {calendar} {year}: version {version} applied ({}); re-planning the holds is left to the workers' release step (see the log)",
                body.source
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// [`apply_year`], tried again while the database is busy (SQLite's write
/// lock held by a running service on a loaded machine) for up to
/// [`BUSY_RETRY_FOR`]: applying is idempotent, the same year twice changes
/// nothing, and a pending re-plan is finished by the next try.
async fn apply_retrying(
    engine: &SettlementEngine,
    store: &Store,
    calendar: &str,
    year: i32,
    body: &crate::domain::calendar::CalendarYear,
    actor: &crate::service::audit::Actor,
) -> anyhow::Result<crate::service::calendars::YearApplied> {
    let deadline = std::time::Instant::now() + BUSY_RETRY_FOR;
    // A try that stored the year but could not re-plan is followed by one
    // that finds the year unchanged and finishes the re-plan.
    let mut changed = false;
    loop {
        match apply_year(
            engine,
            store,
            calendar,
            year,
            body,
            actor,
            SystemClock.now(),
        )
        .await
        {
            Ok(applied) if applied.replanned.is_none() && std::time::Instant::now() < deadline => {
                changed |= applied.changed;
                eprintln!(
                    "calendar {calendar} {year}: re-planning the holds did not finish; trying again"
                );
                tokio::time::sleep(BUSY_RETRY_PAUSE).await;
            }
            Ok(mut applied) => {
                applied.changed |= changed;
                return Ok(applied);
            }
            Err(CalendarYearError::Store(error))
                if error.is_retryable() && std::time::Instant::now() < deadline =>
            {
                eprintln!(
                    "calendar {calendar} {year}: the database is busy ({error}); trying again"
                );
                tokio::time::sleep(BUSY_RETRY_PAUSE).await;
            }
            Err(CalendarYearError::Store(error)) if error.is_retryable() => {
                anyhow::bail!(
                    "calendar {calendar} {year}: the database stayed busy for {} s ({error}); \
                     run the same command again: applying the same year twice changes nothing",
                    BUSY_RETRY_FOR.as_secs()
                )
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// [`open_store`], tried again while the database is busy: SQLite beside a
/// running service has been seen to refuse a first write at once with
/// "database is locked" on a loaded machine, busy timeout or not.
async fn open_store_patiently(settings: &Settings) -> anyhow::Result<Store> {
    let deadline = std::time::Instant::now() + BUSY_RETRY_FOR;
    loop {
        match open_store(settings).await {
            Err(error) if is_busy(&error) && std::time::Instant::now() < deadline => {
                eprintln!("the database is busy ({error:#}); trying again");
                tokio::time::sleep(BUSY_RETRY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// Whether `error` is the database being busy, worth another try.
fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<crate::store::StoreError>()
            .is_some_and(crate::store::StoreError::is_retryable)
            || cause
                .downcast_ref::<crate::service::plans::ApplyPlanError>()
                .is_some_and(|error| {
                    matches!(error, crate::service::plans::ApplyPlanError::Store(store) if store.is_retryable())
                })
            || cause
                .downcast_ref::<sqlx::Error>()
                .and_then(|error| error.as_database_error())
                .and_then(|error| error.code())
                .is_some_and(|code| code == "5" || code == "6")
    })
}

/// How long `calendar apply` keeps trying while the database is busy.
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// The pause between two tries.
const BUSY_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

async fn show(
    engine: &SettlementEngine,
    store: &Store,
    calendar: &str,
    year: i32,
) -> anyhow::Result<ExitCode> {
    let year = year_in_use(engine, store, calendar, year).await?;
    print_year(&year);
    Ok(ExitCode::SUCCESS)
}

fn print_year(year: &YearInUse) {
    println!(
        "calendar {} {}: {}{}",
        year.calendar,
        year.year,
        year.origin,
        if year.provisional {
            " (provisional)"
        } else {
            ""
        }
    );
    if let Some(source) = &year.source {
        println!("  source: {source}");
    }
    if let Some(applied) = &year.applied {
        println!(
            "  version {} applied by {} at {}{}",
            applied.version,
            applied.applied_by,
            applied.applied_at.to_rfc3339(),
            if applied.replanned_at.is_none() {
                "; holds not yet re-planned"
            } else {
                ""
            }
        );
    }
    for holiday in &year.holidays {
        println!("  {} … {}  {}", holiday.from, holiday.to, holiday.name);
    }
    for day in &year.makeup_workdays {
        println!("  {day}  make-up working day");
    }
}
