//! `GET /metrics` (SPEC §2.10): what `telemetry::metrics` recorded, and, at
//! each scrape, the queues as the database holds them (jobs per queue and
//! state, the oldest waiting job's age), withdrawals per state, the
//! business calendar's coverage and the unresolved reconciliation
//! mismatches per channel; and the middleware that counts requests.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::error::ApiError;
use crate::domain::identity::PayoutChannel;
use crate::state::AppState;
use crate::store::UnresolvedMismatches;
use crate::telemetry::metrics::{
    CALENDAR_COVERED_DAYS, CALENDAR_PROVISIONAL_YEAR, HTTP_DURATION, HTTP_REQUESTS, QUEUE_JOBS,
    QUEUE_OLDEST_WAITING, RECONCILIATION_OLDEST_UNRESOLVED, RECONCILIATION_UNRESOLVED, WITHDRAWALS,
    install,
};

/// Counts and times every request by its route template (not its path:
/// ids would make a series per distributor) and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let stats = state.store.queue_stats(now.timestamp()).await?;
    let mut queue_lines = format!(
        "# HELP {QUEUE_JOBS} Jobs per queue and state, as the database holds them.\n# TYPE {QUEUE_JOBS} gauge\n"
    );
    let mut oldest = std::collections::BTreeMap::<String, i64>::new();
    for (queue, job_state, count, oldest_run_at) in &stats {
        queue_lines.push_str(&format!(
            "{QUEUE_JOBS}{{queue=\"{}\",state=\"{}\"}} {count}\n",
            label(queue),
            label(job_state)
        ));
        if matches!(job_state.as_str(), "waiting" | "retrying") {
            let age = oldest_run_at.map_or(0, |at| (now.timestamp() - at).max(0));
            let entry = oldest.entry(queue.clone()).or_default();
            *entry = (*entry).max(age);
        }
    }
    queue_lines.push_str(&format!(
        "# HELP {QUEUE_OLDEST_WAITING} Age of the oldest job due but not yet taken, per queue.\n# TYPE {QUEUE_OLDEST_WAITING} gauge\n"
    ));
    for (queue, age) in &oldest {
        queue_lines.push_str(&format!(
            "{QUEUE_OLDEST_WAITING}{{queue=\"{}\"}} {age}\n",
            label(queue)
        ));
    }
    queue_lines.push_str(&format!(
        "# HELP {WITHDRAWALS} Withdrawals per state (reviewing is the review queue).\n# TYPE {WITHDRAWALS} gauge\n"
    ));
    for (withdrawal_state, count, ..) in state.store.withdrawal_totals().await? {
        queue_lines.push_str(&format!(
            "{WITHDRAWALS}{{state=\"{}\"}} {count}\n",
            withdrawal_state.as_str()
        ));
    }
    let today = now.date_naive();
    // A year applied by another process since this one last looked counts.
    let calendar = state.settlement.refresh_calendar().await?.calendar.clone();
    let covered = (calendar.first_uncovered_date(today) - today)
        .num_days()
        .max(0);
    queue_lines.push_str(&format!(
        "# HELP {CALENDAR_COVERED_DAYS} Days from today the business calendar covers (holidays known).\n# TYPE {CALENDAR_COVERED_DAYS} gauge\n{CALENDAR_COVERED_DAYS} {covered}\n"
    ));
    queue_lines.push_str(&format!(
        "# HELP {CALENDAR_PROVISIONAL_YEAR} 1 for each year within the calendar horizon known only provisionally (origin statutory or weekends_only).\n# TYPE {CALENDAR_PROVISIONAL_YEAR} gauge\n"
    ));
    for (year, origin) in crate::engine::provisional_years_ahead(&calendar, today) {
        queue_lines.push_str(&format!(
            "{CALENDAR_PROVISIONAL_YEAR}{{year=\"{year}\",origin=\"{}\"}} 1\n",
            origin.as_str()
        ));
    }
    queue_lines.push_str(&reconciliation_lines(
        &state.store.unresolved_mismatch_counts().await?,
        now,
    ));
    let recorded = install().map(PrometheusHandle::render).unwrap_or_default();
    let mut response = format!("{recorded}{queue_lines}").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// The unresolved reconciliation mismatches and the oldest one's age in
/// seconds at `now`, per channel: a series for each channel always (0 when
/// none, so an alert sees it fall back), and one for any other name the
/// store gives. A mismatch naming no withdrawal of ours counts under its
/// statement's name, `wechat` or `alipay`, which is that channel's.
fn reconciliation_lines(unresolved: &[UnresolvedMismatches], now: DateTime<Utc>) -> String {
    let mut per_channel: std::collections::BTreeMap<&str, (i64, i64)> = PayoutChannel::ALL
        .iter()
        .map(|channel| (channel.as_str(), (0, 0)))
        .collect();
    for group in unresolved {
        let entry = per_channel.entry(group.channel.as_str()).or_default();
        entry.0 += group.count;
        entry.1 = entry
            .1
            .max((now - group.oldest_found_at).num_seconds().max(0));
    }
    let mut lines = format!(
        "# HELP {RECONCILIATION_UNRESOLVED} Reconciliation mismatches without a resolution, per channel.\n# TYPE {RECONCILIATION_UNRESOLVED} gauge\n"
    );
    for (channel, (count, _)) in &per_channel {
        lines.push_str(&format!(
            "{RECONCILIATION_UNRESOLVED}{{channel=\"{}\"}} {count}\n",
            label(channel)
        ));
    }
    lines.push_str(&format!(
        "# HELP {RECONCILIATION_OLDEST_UNRESOLVED} Age of the oldest unresolved reconciliation mismatch, per channel (0 when none).\n# TYPE {RECONCILIATION_OLDEST_UNRESOLVED} gauge\n"
    ));
    for (channel, (_, age)) in &per_channel {
        lines.push_str(&format!(
            "{RECONCILIATION_OLDEST_UNRESOLVED}{{channel=\"{}\"}} {age}\n",
            label(channel)
        ));
    }
    lines
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("withdrawal.transfer"), "withdrawal.transfer");
    }

    #[test]
    fn every_channel_has_a_reconciliation_series_and_a_source_counts_as_its_channel() {
        let now: DateTime<Utc> = "2027-03-11T02:30:00Z".parse().unwrap();
        let none = reconciliation_lines(&[], now);
        for channel in ["wechat", "alipay", "bank"] {
            assert!(none.contains(&format!(
                "fenrun_reconciliation_unresolved_mismatches{{channel=\"{channel}\"}} 0\n"
            )));
            assert!(none.contains(&format!(
                "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{{channel=\"{channel}\"}} 0\n"
            )));
        }
        let lines = reconciliation_lines(
            &[
                UnresolvedMismatches {
                    channel: "alipay".to_owned(),
                    count: 2,
                    oldest_found_at: now - chrono::Duration::hours(25),
                },
                UnresolvedMismatches {
                    channel: "bank".to_owned(),
                    count: 1,
                    oldest_found_at: now - chrono::Duration::seconds(90),
                },
            ],
            now,
        );
        for expected in [
            "fenrun_reconciliation_unresolved_mismatches{channel=\"alipay\"} 2\n",
            "fenrun_reconciliation_unresolved_mismatches{channel=\"bank\"} 1\n",
            "fenrun_reconciliation_unresolved_mismatches{channel=\"wechat\"} 0\n",
            "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{channel=\"alipay\"} 90000\n",
            "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{channel=\"bank\"} 90\n",
            "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{channel=\"wechat\"} 0\n",
        ] {
            assert!(
                lines.contains(expected),
                "{expected} missing from:\n{lines}"
            );
        }
    }
}
