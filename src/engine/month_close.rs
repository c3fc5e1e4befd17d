//! The month close (月结, issue 14): on the 1st of each month (`job =
//! "close_month"` in `workflows/schedules.toml`) the previous local month is
//! closed — each distributor's team bonus (团队奖) under the plan in force at
//! the month's last instant, and a statement for every distributor with
//! activity in it. Settings are in `workflows/month-close.toml`.
//!
//! ```text
//! month over? ─► month_closes row (started) ─► figures of every distributor (one pass)
//!   ─► batches: [skip those with a statement] bonus transfer + bonus row + statement + counts, one transaction
//!   ─► month_closes finished
//! ```
//!
//! Durable without a queue: the `month_closes` row and the statements are
//! the progress. A re-run (the schedule's next tick, start-up, the ops
//! endpoint, the command) skips a finished month, and in an unfinished one
//! every distributor that has its statement; a distributor's bonus and
//! statement commit together, and the bonus transfer's idempotency key
//! (`team_bonus:{id}:{YYYY-MM}`) would refuse a second payment anyway. So a
//! crash at any point pays each bonus exactly once. Every run also closes
//! the months missed while no process ran (up to `catch_up_months` back).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::clock::Clock;
use crate::domain::earnings::{self, month_bounds, month_of, team_bonus_amount};
use crate::domain::ids::DistributorId;
use crate::domain::plan::Plan;
use crate::domain::tax::Month;
use crate::store::{ClosingDistributor, MonthCloseRecord, NewTeamBonus, Store, StoreError};

/// The shipped settings, used when the workflows folder has no file.
pub const SHIPPED_SETTINGS: &str = include_str!("../../workflows/month-close.toml");

/// The settings file's name in the workflows folder (not a workflow).
pub const SETTINGS_FILE_NAME: &str = crate::engine::definition::MONTH_CLOSE_FILE_NAME;

/// Distributors per transaction: enough to amortise a commit, few enough
/// that SQLite's write lock is held well under a second.
const BATCH_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;
/// Months a run looks back for unclosed ones: two years, as far back as
/// anyone reconciles statements.
const CATCH_UP_MONTHS_RANGE: std::ops::RangeInclusive<u32> = 1..=24;

/// Set to a number n, the close stops for good after its n-th batch (a
/// test kills the process there to prove a crash pays once). Never in production.
pub const PAUSE_AFTER_BATCHES_ENV: &str = "FENRUN_MONTH_CLOSE_PAUSE_AFTER_BATCHES";

/// `workflows/month-close.toml`, checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthCloseSettings {
    pub batch_size: usize,
    pub catch_up_months: u32,
}

impl MonthCloseSettings {
    /// Parses and checks the file's text; the error names the file and key.
    pub fn parse(text: &str, file: &str) -> anyhow::Result<MonthCloseSettings> {
        let settings: MonthCloseSettings =
            toml::from_str(text).map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
        if !BATCH_SIZE_RANGE.contains(&settings.batch_size) {
            anyhow::bail!(
                "{file}: batch_size must be {}–{}",
                BATCH_SIZE_RANGE.start(),
                BATCH_SIZE_RANGE.end()
            );
        }
        if !CATCH_UP_MONTHS_RANGE.contains(&settings.catch_up_months) {
            anyhow::bail!(
                "{file}: catch_up_months must be {}–{}",
                CATCH_UP_MONTHS_RANGE.start(),
                CATCH_UP_MONTHS_RANGE.end()
            );
        }
        Ok(settings)
    }

    /// The workflows folder's file, or the shipped one when it has none.
    pub fn load(workflows_dir: &std::path::Path) -> anyhow::Result<MonthCloseSettings> {
        let path = workflows_dir.join(SETTINGS_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => MonthCloseSettings::parse(&text, &path.display().to_string()),
            Err(_) => MonthCloseSettings::parse(SHIPPED_SETTINGS, "workflows/month-close.toml"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonthCloseError {
    #[error("{month} is not over yet: it ends at {ends_at}")]
    NotOver {
        month: Month,
        ends_at: DateTime<Utc>,
    },
    #[error("the plan in force at the end of {month} cannot be read: {message}")]
    Plan { month: Month, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a close did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    pub record: MonthCloseRecord,
    /// False when the month was closed before and nothing was done.
    pub ran: bool,
}

/// Closes months; one close at a time per process.
pub struct MonthCloser {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    time_zone: Tz,
    settings: MonthCloseSettings,
    running: tokio::sync::Mutex<()>,
}

impl MonthCloser {
    /// `time_zone`: the settlement workflow's, whose local months these are.
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        time_zone: Tz,
        settings: MonthCloseSettings,
    ) -> MonthCloser {
        MonthCloser {
            store,
            clock,
            time_zone,
            settings,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// Closes `month`, or finishes its interrupted close; a month closed
    /// before is answered as it stands, with nothing written.
    #[tracing::instrument(skip_all, fields(month = %month))]
    pub async fn close(&self, month: Month) -> Result<CloseOutcome, MonthCloseError> {
        let _one_at_a_time = self.running.lock().await;
        let (start, end) = month_bounds(month, self.time_zone);
        if self.clock.now() < end {
            return Err(MonthCloseError::NotOver {
                month,
                ends_at: end,
            });
        }
        let key = month.to_string();
        if let Some(record) = self.store.month_close(&key).await?
            && record.finished_at.is_some()
        {
            return Ok(CloseOutcome { record, ran: false });
        }
        let (plan_version, plan) = self.plan_at_end(month, end).await?;
        let record = self
            .store
            .begin_month_close(&key, plan_version, self.clock.now())
            .await?;
        // A resumed close keeps the plan it started with.
        let plan = if record.plan_version == plan_version {
            plan
        } else {
            self.plan_version(month, record.plan_version).await?
        };
        let activity = self.store.month_activity(start, end).await?;
        let closed = self.store.closed_distributors(&key).await?;
        // A leader cleared (清退) by the time of the close earns nothing new,
        // a team bonus included; their statement is still written.
        let cleared = self.store.cleared_distributors().await?;
        let rule = plan.team_bonus().filter(|rule| rule.enabled());
        let mut todo = Vec::with_capacity(activity.len());
        for (id, figures) in activity {
            if closed.contains(&id) {
                continue;
            }
            let bonus = match rule.filter(|_| !cleared.contains(&id)) {
                Some(rule) => team_bonus_amount(rule, figures.team_sales)
                    .map_err(|error| StoreError::Corrupt(format!("team bonus of {id}: {error}")))?
                    .map(|amount| NewTeamBonus {
                        own_sales: figures.own_sales,
                        team_sales: figures.team_sales,
                        threshold: rule.threshold(),
                        rate: rule.rate(),
                        amount,
                    }),
                None => None,
            };
            todo.push(ClosingDistributor {
                distributor_id: DistributorId::parse(id.clone()).map_err(StoreError::from)?,
                activity: figures,
                bonus,
            });
        }
        let pause_after: Option<usize> = std::env::var(PAUSE_AFTER_BATCHES_ENV)
            .ok()
            .and_then(|text| text.parse().ok());
        for (number, batch) in todo.chunks(self.settings.batch_size).enumerate() {
            let written = self
                .store
                .close_month_batch(&key, record.plan_version, batch, self.clock.now())
                .await?;
            tracing::debug!(
                batch = number + 1,
                statements = written.statements,
                bonuses = written.bonuses,
                "month close batch committed"
            );
            if pause_after == Some(number + 1) {
                tracing::warn!("{PAUSE_AFTER_BATCHES_ENV}: the close stops here for a test");
                std::future::pending::<()>().await;
            }
        }
        let record = self
            .store
            .finish_month_close(&key, self.clock.now())
            .await?;
        tracing::info!(statements = record.statements, bonuses = record.bonuses, bonus_total = %record.bonus_total, "month closed");
        Ok(CloseOutcome { record, ran: true })
    }

    /// Closes every unclosed month up to the one before `at`'s local month,
    /// oldest first, at most `catch_up_months` back and none before the
    /// first distributor. Returns the months it closed.
    pub async fn close_due(&self, at: DateTime<Utc>) -> Result<Vec<Month>, MonthCloseError> {
        let latest = month_of(at, self.time_zone).previous();
        let Some(first_activity) = self.store.first_activity().await? else {
            return Ok(Vec::new());
        };
        let mut first = month_of(first_activity, self.time_zone);
        let mut floor = latest;
        for _ in 1..self.settings.catch_up_months {
            floor = floor.previous();
        }
        first = first.max(floor);
        if first > latest {
            return Ok(Vec::new());
        }
        let finished = self.store.finished_month_closes(&first.to_string()).await?;
        let mut closed = Vec::new();
        let mut month = first;
        // Bounded: at most catch_up_months months.
        while month <= latest {
            if !finished.contains(&month.to_string()) {
                self.close(month).await?;
                closed.push(month);
            }
            month = earnings::next_month(month);
        }
        Ok(closed)
    }

    async fn plan_at_end(
        &self,
        month: Month,
        end: DateTime<Utc>,
    ) -> Result<(i64, Plan), MonthCloseError> {
        let last_instant = end - chrono::Duration::microseconds(1);
        let stored = self
            .store
            .plan_in_force(last_instant)
            .await?
            .ok_or_else(|| MonthCloseError::Plan {
                month,
                message: "no plan was in force".to_owned(),
            })?;
        let plan = Plan::parse(
            &stored.source_toml,
            &format!("plan version {}", stored.version),
        )
        .map_err(|error| MonthCloseError::Plan {
            month,
            message: error.to_string(),
        })?;
        Ok((stored.version, plan))
    }

    async fn plan_version(&self, month: Month, version: i64) -> Result<Plan, MonthCloseError> {
        let plans = self.store.list_plans().await?;
        let stored = plans
            .into_iter()
            .find(|plan| plan.version == version)
            .ok_or_else(|| MonthCloseError::Plan {
                month,
                message: format!("plan version {version} is missing"),
            })?;
        Plan::parse(&stored.source_toml, &format!("plan version {version}")).map_err(|error| {
            MonthCloseError::Plan {
                month,
                message: error.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_settings_parse_and_bad_values_are_refused_naming_the_file() {
        let shipped = MonthCloseSettings::parse(SHIPPED_SETTINGS, "month-close.toml").unwrap();
        assert!(shipped.batch_size >= 100);
        let error = MonthCloseSettings::parse("batch_size = 0\ncatch_up_months = 3", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("m.toml: batch_size"), "{error}");
        let error =
            MonthCloseSettings::parse("batch_size = 10\ncatch_up_months = 3\nx = 1", "m.toml")
                .unwrap_err()
                .to_string();
        assert!(error.contains("unknown field"), "{error}");
    }
}
