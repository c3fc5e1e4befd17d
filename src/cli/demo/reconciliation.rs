//! The demo's last act: daily reconciliation (对账). Each gateway's
//! statement of every China day the demo paid or bounced on is downloaded
//! from the in-process sandbox and matched by bill number against fenrun's
//! payouts: both sides' totals per channel, and no unexplained mismatch.
//! Then the sandbox slips a line fenrun never sent into a statement
//! (`extra_lines: 1`), the day is run again, the mismatch is found and
//! resolved by ops with a reason, and the day ends with none unresolved.
//!
//! ```text
//! payout days ─► run_day (WeChat fund-flow bill, Alipay account log) ─► totals, 0 mismatches
//! extra_lines: 1 ─► WeChat day run again ─► sbxextra0001 missing_at_fenrun ─► resolved (ledger)
//! knob cleared ─► day run again ─► 0 unresolved, the resolution kept
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use fenrun_integrations::sandbox::StatementFaults;

use crate::clock::{Clock, SimulatedClock};
use crate::domain::identity::PayoutChannel;
use crate::domain::reconciliation::MismatchClass;
use crate::service::reconciliation::{
    CountSumView, DaySelection, ReconciliationView, ResolutionSide, resolve, run_day,
};
use crate::state::AppState;

/// The reason ops give for the injected line.
const INJECTED_REASON: &str = "the sandbox's injected line: no payout of ours";

/// The bill numbers the sandbox gives the lines it adds (`sbxextra0001`, …).
const INJECTED_BILL_PREFIX: &str = "sbxextra";

/// Runs the act over the payouts recorded since `since`; true when every
/// clean day had no mismatch and the injected one was found and resolved.
pub async fn run(
    state: &AppState,
    clock: &SimulatedClock,
    since: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let gateway = state
        .withdrawals
        .gateway()
        .ok_or_else(|| anyhow::anyhow!("the payout gateway is not connected"))?
        .clone();
    let sandbox = gateway
        .sandbox()
        .ok_or_else(|| anyhow::anyhow!("the demo reconciles against the in-process sandbox"))?;
    // The sandbox serves no statement of a day after its today.
    state.announce_clock_move();
    let time_zone = state.reconciliation.settings().time_zone;
    // The simulated clock stands still: a payout of this very instant is
    // before `now + 1 s`.
    let until = clock.now() + chrono::Duration::seconds(1);
    let days: BTreeSet<NaiveDate> = state
        .store
        .payouts_between(since, until)
        .await?
        .iter()
        .flat_map(|payout| [payout.finished_at, payout.returned_at])
        .flatten()
        .map(|at| at.with_timezone(&time_zone).date_naive())
        .collect();
    println!(
        "\nreconciliation (对账) — each gateway's statement of the demo's payout days, from the sandbox, matched by bill number"
    );
    let mut clean = true;
    let mut wechat_day = None;
    // Oldest first: a day's payouts missing from its file are held for the next.
    for &date in &days {
        let view = run_day(
            state,
            DaySelection {
                date,
                channel: None,
            },
        )
        .await?;
        print_day(&view);
        clean &= view.mismatches.is_empty();
        if paid_on_wechat(&view) {
            wechat_day = Some(date);
        }
    }
    println!(
        "{} day(s), both statements: {}",
        days.len(),
        if clean {
            "0 unexplained mismatches".to_owned()
        } else {
            "MISMATCHES on a clean run (this is a bug)".to_owned()
        }
    );

    let Some(date) = wechat_day else {
        println!("no WeChat payout to reconcile: the injected mismatch is NOT shown");
        return Ok(false);
    };
    let wechat = DaySelection {
        date,
        channel: Some(PayoutChannel::Wechat),
    };
    sandbox
        .set_statement_faults(StatementFaults {
            extra_lines: 1,
            ..StatementFaults::default()
        })
        .map_err(|error| anyhow::anyhow!("the sandbox refused the statement knob: {error}"))?;
    let spoiled = run_day(state, wechat).await;
    // Cleared before anything can fail, so no later statement carries it.
    sandbox
        .set_statement_faults(StatementFaults::default())
        .map_err(|error| anyhow::anyhow!("the sandbox kept the statement knob: {error}"))?;
    let spoiled = spoiled?;
    println!(
        "the sandbox adds a payout line fenrun never sent (extra_lines: 1); WeChat of {date} run again:"
    );
    let found: Vec<_> = spoiled
        .mismatches
        .iter()
        .filter(|mismatch| mismatch.resolution.is_none())
        .collect();
    for mismatch in &found {
        println!(
            "  found {} {}: {} at the channel, {} at fenrun — {}",
            mismatch.bill_no,
            mismatch.class,
            money_or_none(mismatch.at_channel),
            money_or_none(mismatch.at_fenrun),
            mismatch.advice
        );
    }
    let injected = match found.as_slice() {
        [only]
            if only.class == MismatchClass::MissingAtFenrun.as_str()
                && only.bill_no.starts_with(INJECTED_BILL_PREFIX) =>
        {
            *only
        }
        _ => {
            println!(
                "  expected exactly one missing_at_fenrun {INJECTED_BILL_PREFIX}… line, found {}",
                found.len()
            );
            return Ok(false);
        }
    };
    let ops = crate::service::audit::Actor {
        id: "demo-ops".to_owned(),
        role: "ops".to_owned(),
    };
    let resolved = resolve(
        state,
        injected.id,
        ResolutionSide::Ledger,
        INJECTED_REASON,
        &ops,
    )
    .await?;
    println!(
        "  ops resolve it ({}): {}",
        resolved
            .resolution
            .as_ref()
            .map_or("unresolved", |resolution| resolution.side.as_str()),
        INJECTED_REASON
    );

    let after = run_day(state, wechat).await?;
    let resolutions = after
        .mismatches
        .iter()
        .filter(|mismatch| mismatch.resolution.is_some())
        .count();
    println!(
        "the knob cleared, WeChat of {date} run again: {} unresolved ({resolutions} resolved, kept with its reason)",
        after.unresolved
    );
    Ok(clean && resolved.resolution.is_some() && after.unresolved == 0)
}

/// A line per source, then one per channel: both sides' payouts (and
/// returns, when there are any), count and sum.
fn print_day(view: &ReconciliationView) {
    for source in &view.sources {
        let statement = match source.source.as_str() {
            "wechat" => "WeChat fund-flow bill",
            "alipay" => "Alipay account log",
            other => other,
        };
        if source.state != "finished" {
            println!(
                "{} {statement}: {} — {}",
                view.date,
                source.state,
                source.last_error.as_deref().unwrap_or("")
            );
            continue;
        }
        let mismatches = view
            .mismatches
            .iter()
            .filter(|mismatch| mismatch.source == source.source)
            .count();
        println!(
            "{} {statement}: {} line(s), {} matched, {} held for the next day, {mismatches} mismatch(es)",
            view.date, source.lines, source.matched, source.held
        );
        for totals in &source.totals {
            let returns = if totals.channel_returns.count + totals.fenrun_returns.count > 0 {
                format!(
                    "; returns (退票) statement {}, fenrun {}",
                    count_sum(totals.channel_returns),
                    count_sum(totals.fenrun_returns)
                )
            } else {
                String::new()
            };
            println!(
                "  {:<6} payouts statement {}, fenrun {}{returns}",
                totals.channel,
                count_sum(totals.channel_payouts),
                count_sum(totals.fenrun_payouts),
            );
        }
    }
}

fn paid_on_wechat(view: &ReconciliationView) -> bool {
    view.sources
        .iter()
        .flat_map(|source| &source.totals)
        .any(|totals| {
            totals.channel == PayoutChannel::Wechat.as_str() && totals.fenrun_payouts.count > 0
        })
}

fn count_sum(figure: CountSumView) -> String {
    format!("{} / {}", figure.count, figure.sum)
}

fn money_or_none(money: Option<crate::domain::money::Money>) -> String {
    money.map_or("none".to_owned(), |money| money.to_string())
}
