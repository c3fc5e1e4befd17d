//! `fenrun bench month-close --distributors N`: how long closing a month
//! takes. N distributors in a binary referral tree each sell one order,
//! confirmed now under a plan with the team bonus on; the simulated clock
//! moves past their release and into the next month; then the month is
//! closed through the real `POST /v1/ops/month-close/{YYYY-MM}` (figures of
//! every distributor, a bonus for each leader over the threshold, a
//! statement for everyone), and timed.

use std::time::Instant;

use chrono::{Datelike, TimeZone, Utc};
use serde_json::json;

use super::{BenchApp, ScratchDb, median, peak_rss_mib, progress_bar};
use crate::domain::earnings::{first_day, month_of, next_month};

/// Concurrent HTTP clients sending the orders.
const FILL_CONCURRENCY: usize = 64;

/// `fenrun bench month-close`.
pub async fn month_close(
    distributors: usize,
    runs: usize,
    server_url: Option<&str>,
) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "bench month-close: {distributors} distributors with one released order each, team bonus on, {runs} run(s), {backend}"
    );
    let mut seconds = Vec::new();
    for run in 1..=runs {
        let db = ScratchDb::new(server_url, "monthclose").await?;
        let result = close_once(&db.url, distributors).await;
        db.drop().await;
        let (elapsed, answer) = result?;
        println!(
            "run {run}: month closed in {elapsed:.2} s: {} statements, {} team bonuses totalling {}",
            answer["statements"], answer["team_bonuses"], answer["team_bonus_total"]
        );
        seconds.push(elapsed);
    }
    let median_seconds = median(&mut seconds);
    println!(
        "median of {runs}: {median_seconds:.2} s to close a month of {distributors} distributors; peak RSS {} MiB",
        peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
    );
    Ok(())
}

/// Seconds the close took, and its answer.
async fn close_once(url: &str, distributors: usize) -> anyhow::Result<(f64, serde_json::Value)> {
    let app = BenchApp::start(url, FILL_CONCURRENCY).await?;
    let plan = format!(
        "{}\n[team_bonus]\nenabled = true\nthreshold = \"100.00\"\nrate = \"1%\"\n",
        crate::domain::plan::SHIPPED_DEFAULT_TOML
    );
    app.admin(
        reqwest::Method::POST,
        "/v1/admin/plans",
        &json!({"toml": plan, "file_name": "bench-bonus.toml"}),
    )
    .await?;
    app.create_tree(distributors).await?;
    let progress = progress_bar(distributors as u64, "confirming orders");
    let now = Utc::now();
    app.ingest(
        distributors,
        distributors,
        FILL_CONCURRENCY,
        1,
        now,
        Some(&progress),
    )
    .await?;
    progress.finish_and_clear();
    let time_zone = chrono_tz::Asia::Shanghai;
    let month = month_of(now, time_zone);
    let next = first_day(next_month(month));
    let after = time_zone
        .with_ymd_and_hms(next.year(), next.month(), 1, 1, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("01:00 on {next} does not exist"))?
        .with_timezone(&Utc);
    let seconds = (after - now).num_seconds().max(1);
    app.admin(
        reqwest::Method::POST,
        "/v1/admin/clock/advance",
        &json!({"seconds": seconds}),
    )
    .await?;
    let started = Instant::now();
    let answer = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/ops/month-close/{month}"),
            &json!({}),
        )
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        answer["statements"].as_u64().unwrap_or(0) >= distributors as u64,
        "the close wrote fewer statements than distributors: {answer}"
    );
    app.stop().await?;
    Ok((elapsed, answer))
}
