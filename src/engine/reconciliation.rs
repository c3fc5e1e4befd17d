//! Daily reconciliation (对账, issue 15 item 6): each gateway's statement of
//! a China day, downloaded and checked, matched against our payouts
//! ([`crate::domain::reconciliation`]), and the day's result written. The
//! settings are in `workflows/reconciliation.toml`; the job
//! (`reconcile_statements`) is in `workflows/schedules.toml`.
//!
//! ```text
//! day due? ─► download (hash / archive checked) ─► parse ─► our payouts of the day,
//!   those held from the day before, the withdrawals the file names
//!   ─► match ─► run row + matches + mismatches, one transaction
//! a failed download or parse ─► run row 'failed', next attempt after retry_minutes[n]; nothing reconciled
//! ```
//!
//! Durable without a queue: the run rows are the progress. Every sweep
//! (10:30 daily, and every few minutes for retries and catch-up) runs the
//! days of the last `catch_up_days` that have no finished run and whose
//! retry is due, so a process that was down, or a statement that was late
//! or corrupt, is reconciled by the next sweep. A run of a finished day
//! (ops' "run again") rewrites it whole, keeping resolutions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use fenrun_integrations::statement::{Statement, StatementError, StatementLineKind};
use serde::Deserialize;

use crate::clock::Clock;
use crate::domain::identity::PayoutChannel;
use crate::domain::money::Money;
use crate::domain::reconciliation::{
    ChannelLine, ChannelTotals, DayInput, FenrunPayout, LineKind, MatchKind, PayoutState,
    StatementSource, reconcile_day,
};
use crate::engine::withdrawal::WithdrawalEngine;
use crate::store::{
    FinishedReconciliation, NewMismatch, ReconciliationPayout, ReconciliationRun, Store, StoreError,
};
use crate::telemetry::metrics;

/// The shipped settings, used when the workflows folder has no file.
pub const SHIPPED_SETTINGS: &str = include_str!("../../workflows/reconciliation.toml");

/// The settings file's name in the workflows folder (not a workflow).
pub const SETTINGS_FILE_NAME: &str = crate::engine::definition::RECONCILIATION_FILE_NAME;

/// Days a sweep looks back: a month, past which a gateway no longer keeps
/// the statements anyway (WeChat keeps three months, Alipay a year).
const CATCH_UP_DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=31;
/// Retry intervals, minutes: a day at most between attempts.
const RETRY_MINUTES_RANGE: std::ops::RangeInclusive<u32> = 1..=1440;

/// `workflows/reconciliation.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    time_zone: String,
    ready_at: String,
    retry_minutes: Vec<u32>,
    catch_up_days: u32,
    fees: BTreeMap<String, String>,
}

/// `workflows/reconciliation.toml`, checked.
#[derive(Debug, Clone)]
pub struct ReconciliationSettings {
    /// The zone of the statements' days (the gateways': China).
    pub time_zone: Tz,
    /// When a day's statements are ready, the next day, in `time_zone`.
    pub ready_at: NaiveTime,
    /// Minutes to wait after the 1st, 2nd, … failed attempt; the last
    /// repeats.
    pub retry_minutes: Vec<u32>,
    pub catch_up_days: u32,
    /// The fee each channel's gateway charges per payout; none is zero.
    pub fees: BTreeMap<PayoutChannel, Money>,
}

impl ReconciliationSettings {
    /// Parses and checks the file's text; the error names the file and key.
    pub fn parse(text: &str, file: &str) -> anyhow::Result<ReconciliationSettings> {
        let raw: SettingsFile =
            toml::from_str(text).map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
        let time_zone: Tz = raw.time_zone.parse().map_err(|_| {
            anyhow::anyhow!(
                "{file}: time_zone {:?} is not an IANA zone such as \"Asia/Shanghai\"",
                raw.time_zone
            )
        })?;
        let ready_at = NaiveTime::parse_from_str(&raw.ready_at, "%H:%M")
            .map_err(|_| anyhow::anyhow!("{file}: ready_at {:?} must be HH:MM", raw.ready_at))?;
        if raw.retry_minutes.is_empty()
            || raw
                .retry_minutes
                .iter()
                .any(|minutes| !RETRY_MINUTES_RANGE.contains(minutes))
        {
            anyhow::bail!(
                "{file}: retry_minutes must list at least one interval, each {}–{} minutes",
                RETRY_MINUTES_RANGE.start(),
                RETRY_MINUTES_RANGE.end()
            );
        }
        if !CATCH_UP_DAYS_RANGE.contains(&raw.catch_up_days) {
            anyhow::bail!(
                "{file}: catch_up_days must be {}–{}",
                CATCH_UP_DAYS_RANGE.start(),
                CATCH_UP_DAYS_RANGE.end()
            );
        }
        let mut fees = BTreeMap::new();
        for (channel, fee) in &raw.fees {
            let channel = PayoutChannel::parse(channel).map_err(|_| {
                anyhow::anyhow!(
                    "{file}: [fees] {channel:?} is not a channel (wechat, alipay, bank)"
                )
            })?;
            let fee = Money::parse(fee)
                .map_err(|error| anyhow::anyhow!("{file}: [fees] {}: {error}", channel.as_str()))?;
            fees.insert(channel, fee);
        }
        Ok(ReconciliationSettings {
            time_zone,
            ready_at,
            retry_minutes: raw.retry_minutes,
            catch_up_days: raw.catch_up_days,
            fees,
        })
    }

    /// The workflows folder's file, or the shipped one when it has none.
    pub fn load(workflows_dir: &std::path::Path) -> anyhow::Result<ReconciliationSettings> {
        let path = workflows_dir.join(SETTINGS_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => ReconciliationSettings::parse(&text, &path.display().to_string()),
            Err(_) => {
                ReconciliationSettings::parse(SHIPPED_SETTINGS, "workflows/reconciliation.toml")
            }
        }
    }

    /// How long to wait after the `attempts`-th failure.
    fn retry_after(&self, attempts: i64) -> TimeDelta {
        let index = usize::try_from(attempts.max(1) - 1)
            .unwrap_or(usize::MAX)
            .min(self.retry_minutes.len() - 1);
        TimeDelta::minutes(i64::from(self.retry_minutes[index]))
    }

    /// `[start, end)` of the local day `date`, in UTC.
    fn day_bounds(&self, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = |date: NaiveDate| {
            self.time_zone
                .from_local_datetime(&date.and_time(NaiveTime::MIN))
                .earliest()
                .expect("midnight exists in the statements' zone")
                .to_utc()
        };
        (start(date), start(date + Days::new(1)))
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A day after today has no statement yet.
    #[error("{date} has not begun yet (today is {today} in {zone}): reconcile a past day or today")]
    FutureDate {
        date: NaiveDate,
        today: NaiveDate,
        zone: Tz,
    },
    #[error("the payout gateway is not connected yet; try again in a moment")]
    NoGateway,
    #[error(
        "no merchant is configured for the {statement} statement: configure it, or ask for another channel"
    )]
    SourceNotConfigured { statement: &'static str },
    /// The statement could not be had; the run is recorded as failed and
    /// retried.
    #[error("{statement} statement of {date}: {error}")]
    Statement {
        statement: &'static str,
        date: NaiveDate,
        error: StatementError,
        run: Box<ReconciliationRun>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs reconciliations; one at a time per process.
pub struct Reconciler {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    withdrawals: Arc<WithdrawalEngine>,
    settings: ReconciliationSettings,
    /// Held by each run: one day at a time.
    running: tokio::sync::Mutex<()>,
    /// Held by a sweep for all its days: a tick that finds one under way
    /// leaves the work to it.
    sweeping: tokio::sync::Mutex<()>,
}

impl Reconciler {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        withdrawals: Arc<WithdrawalEngine>,
        settings: ReconciliationSettings,
    ) -> Reconciler {
        Reconciler {
            store,
            clock,
            withdrawals,
            settings,
            running: tokio::sync::Mutex::new(()),
            sweeping: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &ReconciliationSettings {
        &self.settings
    }

    /// Today in the statements' zone, by the workflow clock.
    pub fn today(&self) -> NaiveDate {
        self.settings.local_date(self.clock.now())
    }

    /// The sources this process can reconcile (those whose merchant is
    /// configured); empty until the gateway is connected.
    pub fn sources(&self) -> Vec<StatementSource> {
        self.withdrawals
            .gateway()
            .map(|gateway| gateway.statement_sources())
            .unwrap_or_default()
    }

    /// Reconciles `source`'s statement of `bill_date`: a first run, a retry
    /// or a re-run alike.
    #[tracing::instrument(skip_all, fields(source = source.as_str(), %bill_date))]
    pub async fn run(
        &self,
        source: StatementSource,
        bill_date: NaiveDate,
    ) -> Result<ReconciliationRun, ReconcileError> {
        let today = self.today();
        if bill_date > today {
            return Err(ReconcileError::FutureDate {
                date: bill_date,
                today,
                zone: self.settings.time_zone,
            });
        }
        let gateway = self
            .withdrawals
            .gateway()
            .ok_or(ReconcileError::NoGateway)?
            .clone();
        if !gateway.statement_sources().contains(&source) {
            return Err(ReconcileError::SourceNotConfigured {
                statement: source.as_str(),
            });
        }
        let _one_at_a_time = self.running.lock().await;
        let date_text = bill_date.to_string();
        let statement = match gateway.statement(source, bill_date).await {
            Ok(statement) => statement,
            Err(error) => {
                let now = self.clock.now();
                let attempts = self
                    .store
                    .reconciliation_run(source.as_str(), &date_text)
                    .await?
                    .map_or(0, |run| run.attempts)
                    + 1;
                let next_attempt_at = now + self.settings.retry_after(attempts);
                let run = self
                    .store
                    .record_reconciliation_failure(
                        source.as_str(),
                        &date_text,
                        &error.to_string(),
                        Some(next_attempt_at),
                        now,
                    )
                    .await?;
                metrics::reconciliation_run(source.as_str(), "failed");
                tracing::error!(
                    error = %error,
                    attempts = run.attempts,
                    next_attempt_at = ?run.next_attempt_at,
                    "the statement could not be had: nothing was reconciled; the run is tried again"
                );
                return Err(ReconcileError::Statement {
                    statement: source.as_str(),
                    date: bill_date,
                    error,
                    run: Box::new(run),
                });
            }
        };
        self.reconcile_statement(source, bill_date, &statement)
            .await
    }

    /// Matches a statement already downloaded and checked against our
    /// payouts of its day, and writes the day (the second half of
    /// [`Reconciler::run`]; the benchmark and tests call it with a file they
    /// made). Callers other than `run` must not run two at once.
    pub async fn reconcile_statement(
        &self,
        source: StatementSource,
        bill_date: NaiveDate,
        statement: &Statement,
    ) -> Result<ReconciliationRun, ReconcileError> {
        let date_text = bill_date.to_string();
        let lines: Vec<ChannelLine> = statement
            .lines
            .iter()
            .map(|line| ChannelLine {
                bill_no: line.out_bill_no.clone(),
                gateway_ref: line.gateway_ref.clone(),
                kind: match line.kind {
                    StatementLineKind::Payout => LineKind::Payout,
                    StatementLineKind::Return => LineKind::Return,
                    StatementLineKind::Fee => LineKind::Fee,
                    StatementLineKind::OtherIncome | StatementLineKind::OtherExpense => {
                        LineKind::Other
                    }
                },
                amount: Money::from_fen(line.amount.0),
            })
            .collect();
        let input = self.day_input(source, bill_date, lines).await?;
        let result = reconcile_day(&input);
        let totals: BTreeMap<&str, ChannelTotals> = result
            .totals
            .iter()
            .map(|(channel, totals)| (channel.as_str(), *totals))
            .collect();
        let held: Vec<(&str, &str)> = result
            .held
            .iter()
            .map(|(id, kind)| (id.as_str(), kind.as_str()))
            .collect();
        let day = FinishedReconciliation {
            source: source.as_str().to_owned(),
            bill_date: date_text,
            lines: i64::try_from(statement.lines.len()).expect("a statement's lines fit in i64"),
            matches: result
                .matches
                .iter()
                .map(|(id, kind)| (id.clone(), kind.as_str().to_owned()))
                .collect(),
            mismatches: result
                .mismatches
                .iter()
                .map(|mismatch| NewMismatch {
                    bill_no: mismatch.bill_no.clone(),
                    class: mismatch.class.as_str().to_owned(),
                    withdrawal_id: mismatch.withdrawal_id.clone(),
                    channel: mismatch.channel.map(|channel| channel.as_str().to_owned()),
                    at_channel: mismatch.at_channel,
                    at_fenrun: mismatch.at_fenrun,
                })
                .collect(),
            totals: serde_json::to_string(&totals).expect("totals serialise"),
            held: serde_json::to_string(&held).expect("held serialises"),
            at: self.clock.now(),
        };
        let run = self.store.finish_reconciliation(&day).await?;
        metrics::reconciliation_run(source.as_str(), "finished");
        tracing::info!(
            lines = run.lines,
            matched = run.matched,
            mismatches = result.mismatches.len(),
            held = result.held.len(),
            "statement reconciled"
        );
        Ok(run)
    }

    /// Our side of the day: the payouts and returns of `bill_date` on the
    /// source's channels, what the day before held, and every withdrawal a
    /// line names.
    async fn day_input(
        &self,
        source: StatementSource,
        bill_date: NaiveDate,
        lines: Vec<ChannelLine>,
    ) -> Result<DayInput, StoreError> {
        let (from, to) = self.settings.day_bounds(bill_date);
        let mut payouts: HashMap<String, ReconciliationPayout> = self
            .store
            .payouts_between(from, to)
            .await?
            .into_iter()
            .filter(|payout| {
                PayoutChannel::parse(&payout.channel)
                    .is_ok_and(|channel| source.channels().contains(&channel))
            })
            .map(|payout| (payout.withdrawal_id.clone(), payout))
            .collect();
        let previous = bill_date - Days::new(1);
        let held_before: Vec<(String, MatchKind)> = match self
            .store
            .reconciliation_run(source.as_str(), &previous.to_string())
            .await?
        {
            Some(run) if run.state == "finished" => {
                let held: Vec<(String, String)> = serde_json::from_str(&run.held)
                    .map_err(|error| StoreError::Corrupt(format!("held of a run: {error}")))?;
                held.into_iter()
                    .filter_map(|(id, kind)| MatchKind::parse(&kind).ok().map(|kind| (id, kind)))
                    .collect()
            }
            _ => Vec::new(),
        };
        let missing_ids: Vec<String> = held_before
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !payouts.contains_key(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for payout in self.store.payouts_by_id(&missing_ids).await? {
            payouts.insert(payout.withdrawal_id.clone(), payout);
        }
        let known_bills: HashSet<&str> = payouts
            .values()
            .map(|payout| payout.out_bill_no.as_str())
            .collect();
        let unknown_bills: Vec<String> = lines
            .iter()
            .filter(|line| !line.bill_no.is_empty() && !known_bills.contains(line.bill_no.as_str()))
            .map(|line| line.bill_no.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for payout in self.store.payouts_by_bill_no(&unknown_bills).await? {
            payouts.insert(payout.withdrawal_id.clone(), payout);
        }
        let ids: Vec<String> = payouts.keys().cloned().collect();
        let matched_elsewhere = self
            .store
            .matches_elsewhere(&ids, source.as_str(), &bill_date.to_string())
            .await?
            .into_iter()
            .filter_map(|(id, kind)| MatchKind::parse(&kind).ok().map(|kind| (id, kind)))
            .collect();
        let payouts = payouts
            .into_values()
            .map(|payout| self.fenrun_payout(payout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DayInput {
            source,
            bill_date,
            lines,
            payouts,
            held_before,
            matched_elsewhere,
            fees: self.settings.fees.clone(),
        })
    }

    fn fenrun_payout(&self, payout: ReconciliationPayout) -> Result<FenrunPayout, StoreError> {
        let channel = PayoutChannel::parse(&payout.channel)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let state = match payout.state.as_str() {
            "paid" => PayoutState::Paid,
            "returned" => PayoutState::Returned,
            _ => PayoutState::NotPaid,
        };
        let paid = state != PayoutState::NotPaid;
        Ok(FenrunPayout {
            withdrawal_id: payout.withdrawal_id,
            bill_no: payout.out_bill_no,
            channel,
            state,
            net: payout.net,
            paid_on: payout
                .finished_at
                .filter(|_| paid)
                .map(|at| self.settings.local_date(at)),
            returned_on: payout
                .returned_at
                .filter(|_| state == PayoutState::Returned)
                .map(|at| self.settings.local_date(at)),
        })
    }

    /// The days of the last `catch_up_days` whose statements are ready and
    /// that have no finished run, and whose retry (if they failed) is due;
    /// and any other failed run whose retry is due. Oldest day first.
    pub async fn days_due(&self) -> Result<Vec<(StatementSource, NaiveDate)>, StoreError> {
        let now = self.clock.now();
        let local = now.with_timezone(&self.settings.time_zone);
        let last_ready = if local.time() >= self.settings.ready_at {
            local.date_naive() - Days::new(1)
        } else {
            local.date_naive() - Days::new(2)
        };
        let first = last_ready - Days::new(u64::from(self.settings.catch_up_days) - 1);
        let runs: HashMap<(String, String), ReconciliationRun> = self
            .store
            .reconciliation_runs(&first.to_string(), &last_ready.to_string())
            .await?
            .into_iter()
            .map(|run| ((run.source.clone(), run.bill_date.clone()), run))
            .collect();
        let sources = self.sources();
        let mut due = Vec::new();
        for date in first.iter_days().take_while(|date| *date <= last_ready) {
            for source in &sources {
                let source = *source;
                match runs.get(&(source.as_str().to_owned(), date.to_string())) {
                    Some(run) if run.state == "finished" => {}
                    Some(run) if run.next_attempt_at.is_some_and(|at| at > now) => {}
                    _ => due.push((source, date)),
                }
            }
        }
        // A failed run outside the window (today's, run by hand; or one
        // older than catch_up_days) is retried too, once due.
        for run in self.store.reconciliation_runs_due(now).await? {
            let (Ok(source), Ok(date)) = (
                StatementSource::parse(&run.source),
                run.bill_date.parse::<NaiveDate>(),
            ) else {
                continue;
            };
            if !due.contains(&(source, date)) {
                due.push((source, date));
            }
        }
        due.sort_by_key(|(source, date)| (*date, *source));
        Ok(due)
    }

    /// Runs every day due, oldest first (a day's held payouts feed the
    /// next). Skipped when a sweep is already running in this process.
    pub async fn run_due(&self) -> usize {
        let Ok(_one_sweep) = self.sweeping.try_lock() else {
            return 0;
        };
        let due = match self.days_due().await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(error = %error, "cannot read the reconciliation runs; the next sweep tries again");
                return 0;
            }
        };
        let mut finished = 0;
        for (source, date) in due {
            match self.run(source, date).await {
                Ok(_) => finished += 1,
                // Logged and recorded where it failed.
                Err(ReconcileError::Statement { .. }) => {}
                Err(error) => {
                    tracing::error!(error = %error, source = source.as_str(), %date, "reconciliation failed; the next sweep tries again");
                }
            }
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_settings_parse_and_bad_values_name_their_key() {
        let settings =
            ReconciliationSettings::parse(SHIPPED_SETTINGS, "reconciliation.toml").unwrap();
        assert_eq!(settings.time_zone, chrono_tz::Asia::Shanghai);
        assert_eq!(
            settings.ready_at,
            NaiveTime::from_hms_opt(10, 30, 0).unwrap()
        );
        assert_eq!(settings.retry_after(1), TimeDelta::minutes(5));
        assert_eq!(settings.retry_after(99), TimeDelta::minutes(180));
        for (bad, key) in [
            (
                SHIPPED_SETTINGS.replace("\"10:30\"", "\"25:00\""),
                "ready_at",
            ),
            (
                SHIPPED_SETTINGS.replace("catch_up_days = 7", "catch_up_days = 0"),
                "catch_up_days",
            ),
            (
                SHIPPED_SETTINGS.replace("bank = \"0.00\"", "bank = \"-1\""),
                "bank",
            ),
            (
                SHIPPED_SETTINGS.replace("bank = \"0.00\"", "card = \"0.00\""),
                "card",
            ),
        ] {
            let error = ReconciliationSettings::parse(&bad, "r.toml").unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn a_china_day_is_bounded_by_china_midnights() {
        let settings =
            ReconciliationSettings::parse(SHIPPED_SETTINGS, "reconciliation.toml").unwrap();
        let (from, to) = settings.day_bounds(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(from.to_rfc3339(), "2026-12-31T16:00:00+00:00");
        assert_eq!(to - from, TimeDelta::days(1));
    }
}
