//! `fenrun bench reconcile --lines N`: how long a day of N payouts takes to
//! reconcile against its statement. One withdrawal is paid through the
//! in-process sandbox (as `bench withdraw`) and cloned into a China day of
//! N paid withdrawals (`store::scratch::clone_paid_withdrawals`); the WeChat
//! fund-flow bill of those N payouts is written as the gateway writes it,
//! and then timed apart:
//!
//! 1. **parse**: the bill read into a statement (`wechat_fundflow::parse`,
//!    its summary checked against its lines); the Alipay account log of the
//!    same lines (a GBK `csv.zip`) is parsed too, for comparison;
//! 2. **match and write**: `Reconciler::reconcile_statement` — our side of
//!    the day read, every line matched by bill number, the run, its
//!    matches and mismatches written in one transaction.
//!
//! The day must come out clean (N matched, no mismatch, none held). Then,
//! once, a bill with the first line dropped and the second one's amount
//! 1.00 higher is reconciled again: exactly one `amount_larger_at_channel`
//! and one payout held, which the next day's (empty) bill calls
//! `missing_at_channel`.

use std::time::Instant;

use chrono::{Days, NaiveDate};
use fenrun_integrations::AmountFen;
use fenrun_integrations::statement::{
    Statement, StatementLine, StatementLineKind, StatementSummary, alipay_signcustomer,
    wechat_fundflow,
};

use super::withdraw::withdraw_once;
use super::{ScratchDb, median, peak_rss_mib, progress_bar};
use crate::domain::identity::PayoutChannel;
use crate::domain::reconciliation::{MismatchClass, StatementSource};
use crate::state::AppState;
use crate::store::MismatchRecord;

/// Withdrawals cloned per call, so the progress bar moves.
const CLONES_PER_STEP: usize = 10_000;
/// The Alipay user id the bench's account log names.
const BENCH_ALIPAY_ACCOUNT: &str = "2088000000000001";
/// What the changed line is off by: 1.00 yuan, in fen.
const CHANGED_BY_FEN: i64 = 100;

/// One run's seconds per phase.
#[derive(Debug, Clone, Copy)]
struct Figures {
    wechat_parse_s: f64,
    alipay_parse_s: f64,
    match_write_s: f64,
}

/// `fenrun bench reconcile`.
pub async fn reconcile(lines: usize, runs: usize, server_url: Option<&str>) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "bench reconcile: a China day of {lines} WeChat payouts against its fund-flow bill, {runs} run(s), {backend}"
    );
    let mut all = Vec::new();
    for run in 1..=runs {
        let db = ScratchDb::new(server_url, "reconcile").await?;
        let result = reconcile_once(&db.url, lines, run == 1).await;
        db.drop().await;
        let figures = result?;
        println!(
            "run {run}: parse {:.2} s ({:.0} lines/s); match and write {:.2} s ({:.0} lines/s); end to end {:.0} lines/s; Alipay account log parse {:.2} s ({:.0} lines/s)",
            figures.wechat_parse_s,
            per_s(lines, figures.wechat_parse_s),
            figures.match_write_s,
            per_s(lines, figures.match_write_s),
            per_s(lines, figures.wechat_parse_s + figures.match_write_s),
            figures.alipay_parse_s,
            per_s(lines, figures.alipay_parse_s),
        );
        all.push(figures);
    }
    let parse = median(&mut all.iter().map(|f| f.wechat_parse_s).collect::<Vec<_>>());
    let match_write = median(&mut all.iter().map(|f| f.match_write_s).collect::<Vec<_>>());
    let end_to_end = median(
        &mut all
            .iter()
            .map(|f| f.wechat_parse_s + f.match_write_s)
            .collect::<Vec<_>>(),
    );
    let alipay = median(&mut all.iter().map(|f| f.alipay_parse_s).collect::<Vec<_>>());
    println!(
        "median of {runs}, {lines} lines, {backend}: parse {parse:.2} s ({:.0} lines/s), match and write {match_write:.2} s ({:.0} lines/s), end to end {end_to_end:.2} s ({:.0} lines/s); Alipay account log parse {alipay:.2} s ({:.0} lines/s); 0 mismatches; peak RSS {} MiB",
        per_s(lines, parse),
        per_s(lines, match_write),
        per_s(lines, end_to_end),
        per_s(lines, alipay),
        peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
    );
    Ok(())
}

fn per_s(lines: usize, seconds: f64) -> f64 {
    lines as f64 / seconds.max(f64::EPSILON)
}

/// One scratch database: the day set up, the clean file timed, and (when
/// `check`) the file with two differences reconciled and checked.
async fn reconcile_once(url: &str, lines: usize, check: bool) -> anyhow::Result<Figures> {
    let paid = withdraw_once(url, PayoutChannel::Wechat, 1, 1, 0).await?;
    let result = timed_day(&paid.state, lines, check).await;
    paid.stop().await?;
    result
}

async fn timed_day(state: &AppState, lines: usize, check: bool) -> anyhow::Result<Figures> {
    let store = &state.store;
    let reconciler = &state.reconciliation;
    let time_zone = reconciler.settings().time_zone;
    let now = state.clock.now();
    let template = store
        .payouts_between(
            now - chrono::Duration::days(1),
            now + chrono::Duration::seconds(1),
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the bench's withdrawal was not paid"))?;
    let paid_at = template
        .finished_at
        .ok_or_else(|| anyhow::anyhow!("the paid withdrawal has no time of payment"))?;
    // Today by the simulated clock: the five-minute sweep only runs days
    // before today, so it leaves the bench's day alone.
    let date = paid_at.with_timezone(&time_zone).date_naive();

    let setup = Instant::now();
    let bar = progress_bar(lines as u64, "cloning paid withdrawals");
    bar.inc(1);
    let mut bills = vec![template.out_bill_no.clone()];
    let mut next = 1;
    // Bounded: lines / CLONES_PER_STEP steps.
    while bills.len() < lines {
        let count = (lines - bills.len()).min(CLONES_PER_STEP);
        let ids = crate::store::scratch::clone_paid_withdrawals(
            store,
            &template.withdrawal_id,
            next,
            count,
            paid_at,
        )
        .await?;
        next += count as u64;
        bills.extend(ids);
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    let occurred_at = paid_at.with_timezone(&time_zone).naive_local();
    let net = template.net.fen();
    let day: Vec<StatementLine> = bills
        .iter()
        .map(|bill| StatementLine {
            out_bill_no: bill.clone(),
            gateway_ref: format!("1330{}", bill.trim_start_matches("wd")),
            kind: StatementLineKind::Payout,
            amount: AmountFen(net),
            occurred_at,
            business_type: wechat_fundflow::PAYOUT_BUSINESS_TYPE.to_owned(),
        })
        .collect();
    let summary = StatementSummary::of(&day);
    let wechat_file = wechat_fundflow::render(&day, &summary);
    let alipay_file = alipay_signcustomer::render(BENCH_ALIPAY_ACCOUNT, date, &day, &summary);
    println!(
        "set-up: {lines} paid withdrawals of {} on {date}, the WeChat bill ({:.1} MB) and the Alipay log ({:.1} MB zipped) written in {:.1} s",
        template.net,
        wechat_file.len() as f64 / 1e6,
        alipay_file.len() as f64 / 1e6,
        setup.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let alipay = alipay_signcustomer::parse(date, &alipay_file)?;
    let alipay_parse_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        alipay.lines.len() == lines,
        "the Alipay log read {} lines of {lines}",
        alipay.lines.len()
    );

    let started = Instant::now();
    let statement = wechat_fundflow::parse(date, &wechat_file)?;
    let wechat_parse_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let run = reconciler
        .reconcile_statement(StatementSource::Wechat, date, &statement)
        .await?;
    let match_write_s = started.elapsed().as_secs_f64();
    let mismatches = mismatches_of(state, date).await?;
    let held = held_of(&run.held)?;
    println!(
        "clean bill: {} lines, {} matched, {} mismatch(es), {held} held",
        run.lines,
        run.matched,
        mismatches.len()
    );
    anyhow::ensure!(
        run.matched == lines as i64 && mismatches.is_empty() && held == 0,
        "a clean day did not reconcile clean: {} matched of {lines}, mismatches {:?}, {held} held",
        run.matched,
        mismatches
            .iter()
            .map(|mismatch| format!("{} {}", mismatch.bill_no, mismatch.class))
            .collect::<Vec<_>>()
    );

    if check {
        differences_are_found(state, &day, date).await?;
    }
    Ok(Figures {
        wechat_parse_s,
        alipay_parse_s,
        match_write_s,
    })
}

/// The day again with its first line dropped and its second 1.00 higher:
/// exactly one amount mismatch and one payout held, and the next day's
/// empty bill calls the held one missing.
async fn differences_are_found(
    state: &AppState,
    day: &[StatementLine],
    date: NaiveDate,
) -> anyhow::Result<()> {
    let [dropped, changed, ..] = day else {
        println!("differences: fewer than 2 lines, not checked");
        return Ok(());
    };
    let mut lines = day[1..].to_vec();
    lines[0].amount = AmountFen(changed.amount.0 + CHANGED_BY_FEN);
    let started = Instant::now();
    let run = state
        .reconciliation
        .reconcile_statement(StatementSource::Wechat, date, &bill(&lines, date)?)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let found: Vec<(String, String)> = mismatches_of(state, date)
        .await?
        .into_iter()
        .map(|mismatch| (mismatch.bill_no, mismatch.class))
        .collect();
    let held: Vec<(String, String)> = serde_json::from_str(&run.held)?;
    println!(
        "1 line dropped, 1 amount +1.00: run again in {seconds:.2} s: {} mismatch(es) {found:?}; held for the next day {held:?}",
        found.len()
    );
    let expected = vec![(
        changed.out_bill_no.clone(),
        MismatchClass::AmountLargerAtChannel.as_str().to_owned(),
    )];
    anyhow::ensure!(found == expected, "expected {expected:?}, found {found:?}");
    anyhow::ensure!(
        held == vec![(dropped.out_bill_no.clone(), "payout".to_owned())],
        "expected {} held, held {held:?}",
        dropped.out_bill_no
    );

    let next_day = date + Days::new(1);
    state
        .reconciliation
        .reconcile_statement(StatementSource::Wechat, next_day, &bill(&[], next_day)?)
        .await?;
    let found: Vec<(String, String)> = mismatches_of(state, next_day)
        .await?
        .into_iter()
        .map(|mismatch| (mismatch.bill_no, mismatch.class))
        .collect();
    println!(
        "the next day's bill, empty: {} mismatch(es) {found:?}",
        found.len()
    );
    let expected = vec![(
        dropped.out_bill_no.clone(),
        MismatchClass::MissingAtChannel.as_str().to_owned(),
    )];
    anyhow::ensure!(found == expected, "expected {expected:?}, found {found:?}");
    Ok(())
}

/// The fund-flow bill of `lines`, written and read back.
fn bill(lines: &[StatementLine], date: NaiveDate) -> anyhow::Result<Statement> {
    let file = wechat_fundflow::render(lines, &StatementSummary::of(lines));
    Ok(wechat_fundflow::parse(date, &file)?)
}

async fn mismatches_of(state: &AppState, date: NaiveDate) -> anyhow::Result<Vec<MismatchRecord>> {
    let date = date.to_string();
    Ok(state
        .store
        .reconciliation_mismatches(&date, &date, Some(StatementSource::Wechat.as_str()))
        .await?)
}

fn held_of(json: &str) -> anyhow::Result<usize> {
    Ok(serde_json::from_str::<Vec<(String, String)>>(json)?.len())
}
