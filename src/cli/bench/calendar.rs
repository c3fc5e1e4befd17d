//! `fenrun bench replan`: how long applying a year of the business calendar
//! takes when it moves every holding order. N orders are confirmed now
//! (all holding, released on one day R); then the year of R is applied as
//! it is used plus one more day off on R, through the real
//! `PUT /v1/admin/calendars/{name}/years/{year}`, which re-plans all N in
//! one transaction: new time, timeline entry, release job.

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use serde_json::json;

use super::{BenchApp, ScratchDb, median, peak_rss_mib, progress_bar};

/// Concurrent HTTP clients filling the holds.
const FILL_CONCURRENCY: usize = 64;

/// `fenrun bench replan`.
pub async fn replan(orders: usize, runs: usize, server_url: Option<&str>) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "bench replan: {orders} holding orders moved by applying a calendar year, {runs} run(s), {backend}"
    );
    let mut seconds = Vec::new();
    for run in 1..=runs {
        let db = ScratchDb::new(server_url, "replan").await?;
        let result = replan_once(&db.url, orders).await;
        db.drop().await;
        let elapsed = result?;
        println!(
            "run {run}: {orders} orders re-planned in {elapsed:.2} s ({:.0} orders/s)",
            orders as f64 / elapsed
        );
        seconds.push(elapsed);
    }
    let median_seconds = median(&mut seconds);
    println!(
        "median of {runs}: {median_seconds:.2} s for {orders} orders ({:.0} orders/s); peak RSS {} MiB",
        orders as f64 / median_seconds,
        peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
    );
    Ok(())
}

/// Seconds the `PUT` took, re-planning included.
async fn replan_once(url: &str, orders: usize) -> anyhow::Result<f64> {
    let app = BenchApp::start(url, FILL_CONCURRENCY).await?;
    app.create_distributors().await?;
    let progress = progress_bar(orders as u64, "filling holds");
    app.ingest(
        orders,
        super::BENCH_DISTRIBUTORS,
        FILL_CONCURRENCY,
        1,
        Utc::now(),
        Some(&progress),
    )
    .await?;
    progress.finish_and_clear();
    let sample = app
        .store
        .order("b0")
        .await?
        .ok_or_else(|| anyhow::anyhow!("order b0 is missing"))?;
    let time_zone = chrono_tz::Asia::Shanghai;
    let release_day: NaiveDate = sample.release_at.with_timezone(&time_zone).date_naive();
    let year = chrono::Datelike::year(&release_day);
    let calendar = app
        .admin(
            reqwest::Method::GET,
            &format!("/v1/admin/calendars/cn/years/{year}"),
            &json!(null),
        )
        .await?;
    let mut holidays = calendar["holidays"].as_array().cloned().unwrap_or_default();
    holidays.push(json!({"name": "bench", "from": release_day, "to": release_day}));
    let makeup: Vec<serde_json::Value> = calendar["makeup_workdays"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|day| day.as_str() != Some(release_day.to_string().as_str()))
        .collect();
    let body = json!({
        "source": format!("bench: {} plus {release_day} off", calendar["source"].as_str().unwrap_or("statutory days")),
        "holidays": holidays,
        "makeup_workdays": makeup,
    });
    let started = Instant::now();
    let applied = app
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/admin/calendars/cn/years/{year}"),
            &body,
        )
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        applied["orders_moved"].as_u64() == Some(orders as u64),
        "moved {} of {orders} orders: {applied}",
        applied["orders_moved"]
    );
    let moved = app
        .store
        .order("b0")
        .await?
        .ok_or_else(|| anyhow::anyhow!("order b0 is missing"))?;
    anyhow::ensure!(
        moved.release_at > sample.release_at,
        "order b0 still releases at {}",
        moved.release_at
    );
    app.stop().await?;
    Ok(elapsed)
}
