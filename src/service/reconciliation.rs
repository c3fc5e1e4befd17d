//! Reconciliation as payment ops see it (issue 15 item 6), for the API
//! (`/v1/ops/reconciliation…`) and the `/ops` page alike: a day's runs with
//! the totals of both sides per channel, its mismatches, running a day
//! again, and resolving a mismatch by taking a side, audited. Nothing here
//! speaks HTTP.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::identity::PayoutChannel;
use crate::domain::money::Money;
use crate::domain::reconciliation::{ChannelTotals, MismatchClass, StatementSource};
use crate::engine::reconciliation::ReconcileError;
use crate::state::AppState;
use crate::store::{Actor, MismatchRecord, ReconciliationRun, StoreError};

/// Longest reason kept with a resolution.
pub const MAX_RESOLUTION_REASON_CHARS: usize = 500;

/// A count and a sum, the sum in yuan with two decimals.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct CountSumView {
    pub count: u64,
    pub sum: Money,
}

/// One channel's day on both sides.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelTotalsView {
    /// wechat, alipay or bank.
    pub channel: String,
    /// Payout lines on the statement.
    pub channel_payouts: CountSumView,
    /// Payouts fenrun recorded on the day.
    pub fenrun_payouts: CountSumView,
    pub channel_returns: CountSumView,
    pub fenrun_returns: CountSumView,
    pub channel_fees: CountSumView,
}

/// One statement source's day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceDayView {
    /// wechat (the fund-flow bill) or alipay (the account log: Alipay and bank cards).
    pub source: String,
    /// finished, failed, or not_run.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub lines: i64,
    pub matched: i64,
    /// Our payouts not on this day's file, given until the next day's.
    pub held: usize,
    pub totals: Vec<ChannelTotalsView>,
}

/// How a mismatch was resolved.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResolutionView {
    /// ledger (fenrun is right) or channel (the gateway is right).
    pub side: String,
    pub reason: String,
    /// The token id of who resolved it.
    pub by: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MismatchView {
    pub id: i64,
    pub source: String,
    pub bill_date: String,
    /// Our bill number (`ref:` and the gateway's when the line had none).
    pub bill_no: String,
    /// missing_at_channel, missing_at_fenrun, paid_at_channel_not_at_fenrun,
    /// returned_at_channel_not_at_fenrun, returned_at_fenrun_not_at_channel,
    /// amount_larger_at_channel, amount_smaller_at_channel, fee_differs,
    /// paid_twice_at_channel.
    pub class: String,
    /// What to look at first.
    pub advice: String,
    pub withdrawal_id: Option<String>,
    pub channel: Option<String>,
    pub at_channel: Option<Money>,
    pub at_fenrun: Option<Money>,
    pub found_at: DateTime<Utc>,
    /// Absent while unresolved.
    pub resolution: Option<ResolutionView>,
}

impl From<MismatchRecord> for MismatchView {
    fn from(record: MismatchRecord) -> MismatchView {
        let advice = MismatchClass::parse(&record.class)
            .map(MismatchClass::advice)
            .unwrap_or("a class this version does not know: upgrade fenrun")
            .to_owned();
        let resolution = match (record.resolution, record.resolution_reason) {
            (Some(side), Some(reason)) => Some(ResolutionView {
                side,
                reason,
                by: record.resolved_by,
                at: record.resolved_at,
            }),
            _ => None,
        };
        MismatchView {
            id: record.id,
            source: record.source,
            bill_date: record.bill_date,
            bill_no: record.bill_no,
            class: record.class,
            advice,
            withdrawal_id: record.withdrawal_id,
            channel: record.channel,
            at_channel: record.at_channel,
            at_fenrun: record.at_fenrun,
            found_at: record.found_at,
            resolution,
        }
    }
}

/// A day's reconciliation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReconciliationView {
    pub date: String,
    /// The channel asked for, if any.
    pub channel: Option<String>,
    pub sources: Vec<SourceDayView>,
    pub mismatches: Vec<MismatchView>,
    /// Of `mismatches`, those without a resolution.
    pub unresolved: usize,
}

/// Which day and channel to show or run.
#[derive(Debug, Clone, Copy)]
pub struct DaySelection {
    pub date: NaiveDate,
    pub channel: Option<PayoutChannel>,
}

impl DaySelection {
    /// The sources the selection covers.
    fn sources(self) -> Vec<StatementSource> {
        match self.channel {
            Some(channel) => vec![StatementSource::of_channel(channel)],
            None => StatementSource::ALL.to_vec(),
        }
    }
}

/// The day before today in the statements' zone: the default day to show.
pub fn default_date(state: &AppState) -> NaiveDate {
    state.reconciliation.today() - Days::new(1)
}

fn source_day(source: StatementSource, run: Option<&ReconciliationRun>) -> SourceDayView {
    let Some(run) = run else {
        return SourceDayView {
            source: source.as_str().to_owned(),
            state: "not_run".to_owned(),
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            finished_at: None,
            lines: 0,
            matched: 0,
            held: 0,
            totals: Vec::new(),
        };
    };
    let totals: std::collections::BTreeMap<String, ChannelTotals> = run
        .totals
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let held: Vec<(String, String)> = serde_json::from_str(&run.held).unwrap_or_default();
    let view = |sum: crate::domain::reconciliation::CountSum| CountSumView {
        count: sum.count,
        sum: sum.sum,
    };
    SourceDayView {
        source: run.source.clone(),
        state: run.state.clone(),
        attempts: run.attempts,
        last_error: run.last_error.clone(),
        next_attempt_at: run.next_attempt_at,
        finished_at: run.finished_at,
        lines: run.lines,
        matched: run.matched,
        held: held.len(),
        totals: totals
            .into_iter()
            .map(|(channel, totals)| ChannelTotalsView {
                channel,
                channel_payouts: view(totals.channel_payouts),
                fenrun_payouts: view(totals.fenrun_payouts),
                channel_returns: view(totals.channel_returns),
                fenrun_returns: view(totals.fenrun_returns),
                channel_fees: view(totals.channel_fees),
            })
            .collect(),
    }
}

/// The day's runs and mismatches of the selection.
pub async fn day_view(
    state: &AppState,
    selection: DaySelection,
) -> Result<ReconciliationView, StoreError> {
    let date = selection.date.to_string();
    let runs = state.store.reconciliation_runs(&date, &date).await?;
    let sources = selection
        .sources()
        .into_iter()
        .map(|source| {
            source_day(
                source,
                runs.iter().find(|run| run.source == source.as_str()),
            )
        })
        .collect();
    let source_filter = selection
        .channel
        .map(|channel| StatementSource::of_channel(channel).as_str());
    let mismatches: Vec<MismatchView> = state
        .store
        .reconciliation_mismatches(&date, &date, source_filter)
        .await?
        .into_iter()
        .filter(|mismatch| match (selection.channel, &mismatch.channel) {
            (Some(wanted), Some(channel)) => channel == wanted.as_str(),
            _ => true,
        })
        .map(MismatchView::from)
        .collect();
    Ok(ReconciliationView {
        date,
        channel: selection.channel.map(|channel| channel.as_str().to_owned()),
        unresolved: mismatches
            .iter()
            .filter(|mismatch| mismatch.resolution.is_none())
            .count(),
        sources,
        mismatches,
    })
}

/// Runs (again) the selection's day for each source this process can
/// reconcile, and answers the day as it stands then. The first failure is
/// returned after every source was tried.
pub async fn run_day(
    state: &AppState,
    selection: DaySelection,
) -> Result<ReconciliationView, ReconcileError> {
    let configured = state.reconciliation.sources();
    let mut sources = selection.sources();
    if selection.channel.is_none() {
        sources.retain(|source| configured.contains(source));
    }
    let mut first_error = None;
    for source in sources {
        if let Err(error) = state.reconciliation.run(source, selection.date).await {
            first_error.get_or_insert(error);
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(day_view(state, selection).await?)
}

/// The side a resolution takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionSide {
    /// fenrun's books are right: the gateway corrects, or it is explained.
    Ledger,
    /// The gateway is right: fenrun's books get corrected.
    Channel,
}

impl ResolutionSide {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionSide::Ledger => "ledger",
            ResolutionSide::Channel => "channel",
        }
    }

    pub fn parse(text: &str) -> Option<ResolutionSide> {
        match text {
            "ledger" => Some(ResolutionSide::Ledger),
            "channel" => Some(ResolutionSide::Channel),
            _ => None,
        }
    }
}

/// Resolves a mismatch, audited in the same transaction.
pub async fn resolve(
    state: &AppState,
    id: i64,
    side: ResolutionSide,
    reason: &str,
    actor: &Actor,
) -> Result<MismatchView, StoreError> {
    let record = state
        .store
        .resolve_mismatch(id, side.as_str(), reason, actor, state.clock.now())
        .await?;
    Ok(record.into())
}
