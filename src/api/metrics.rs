//! `GET /metrics` (SPEC §2.10): what `telemetry::metrics` recorded, and, at
//! each scrape, the queues as the database holds them (jobs per queue and
//! state, the oldest waiting job's age), withdrawals per state, the
//! business calendar's coverage, the unresolved reconciliation
//! mismatches per channel and the webhook endpoints' health and queues;
//! and the middleware that counts requests.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::error::ApiError;
use crate::domain::identity::PayoutChannel;
use crate::service::webhooks::EndpointView;
use crate::state::AppState;
use crate::store::UnresolvedMismatches;
use crate::telemetry::metrics::{
    CALENDAR_COVERED_DAYS, CALENDAR_PROVISIONAL_YEAR, HTTP_DURATION, HTTP_REQUESTS, QUEUE_JOBS,
    QUEUE_OLDEST_WAITING, RECONCILIATION_OLDEST_UNRESOLVED, RECONCILIATION_UNRESOLVED,
    WEBHOOK_DELIVERIES_BY_STATE, WEBHOOK_ENDPOINT_DISABLED, WEBHOOK_ENDPOINT_FAILING, WITHDRAWALS,
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
    queue_lines.push_str(&webhook_lines(
        &crate::service::webhooks::endpoints(&state)
            .await
            .map_err(ApiError::from)?,
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

/// Each webhook endpoint's seconds failing (since its first failure after
/// its last success; 0 when healthy, and when disabled: the disabled
/// gauge speaks for it then, so one outage raises one alert at a time)
/// and whether it is disabled; and the deliveries pending and failed over
/// all endpoints, both states always present.
fn webhook_lines(endpoints: &[EndpointView], now: DateTime<Utc>) -> String {
    let mut lines = format!(
        "# HELP {WEBHOOK_ENDPOINT_FAILING} Seconds a webhook endpoint has failed without a success (0 when healthy or disabled).\n# TYPE {WEBHOOK_ENDPOINT_FAILING} gauge\n"
    );
    for endpoint in endpoints {
        let failing = match endpoint.failing_since {
            Some(since) if endpoint.health == "failing" => (now - since).num_seconds().max(0),
            _ => 0,
        };
        lines.push_str(&format!(
            "{WEBHOOK_ENDPOINT_FAILING}{{endpoint=\"{}\"}} {failing}\n",
            label(&endpoint.id)
        ));
    }
    lines.push_str(&format!(
        "# HELP {WEBHOOK_ENDPOINT_DISABLED} 1 for a webhook endpoint disabled (after 410 or five days failing), else 0.\n# TYPE {WEBHOOK_ENDPOINT_DISABLED} gauge\n"
    ));
    for endpoint in endpoints {
        lines.push_str(&format!(
            "{WEBHOOK_ENDPOINT_DISABLED}{{endpoint=\"{}\"}} {}\n",
            label(&endpoint.id),
            u8::from(endpoint.state != "enabled")
        ));
    }
    let pending: i64 = endpoints.iter().map(|one| one.pending_deliveries).sum();
    let failed: i64 = endpoints.iter().map(|one| one.failed_deliveries).sum();
    lines.push_str(&format!(
        "# HELP {WEBHOOK_DELIVERIES_BY_STATE} Webhook deliveries waiting to be sent (pending) or given up (failed), over all endpoints.\n# TYPE {WEBHOOK_DELIVERIES_BY_STATE} gauge\n{WEBHOOK_DELIVERIES_BY_STATE}{{state=\"pending\"}} {pending}\n{WEBHOOK_DELIVERIES_BY_STATE}{{state=\"failed\"}} {failed}\n"
    ));
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

    fn endpoint(id: &str, health: &str, failing_since: Option<DateTime<Utc>>) -> EndpointView {
        let at: DateTime<Utc> = "2027-03-01T00:00:00Z".parse().unwrap();
        EndpointView {
            id: id.to_owned(),
            url: "https://shop.example/hooks".to_owned(),
            events: vec!["*".to_owned()],
            description: None,
            state: if health == "disabled" {
                "disabled"
            } else {
                "enabled"
            }
            .to_owned(),
            health: health.to_owned(),
            disabled_reason: None,
            disabled_at: None,
            failing_since,
            last_success_at: None,
            last_failure_at: None,
            previous_secret_expires_at: None,
            pending_deliveries: 2,
            failed_deliveries: 1,
            created_at: at,
        }
    }

    #[test]
    fn each_webhook_endpoint_has_its_failing_and_disabled_series_and_deliveries_are_totalled() {
        let now: DateTime<Utc> = "2027-03-11T02:30:00Z".parse().unwrap();
        let none = webhook_lines(&[], now);
        assert!(none.contains("fenrun_webhook_deliveries{state=\"pending\"} 0\n"));
        assert!(none.contains("fenrun_webhook_deliveries{state=\"failed\"} 0\n"));
        let lines = webhook_lines(
            &[
                endpoint("ep_ok", "healthy", None),
                endpoint("ep_bad", "failing", Some(now - chrono::Duration::hours(2))),
                endpoint("ep_off", "disabled", Some(now - chrono::Duration::days(5))),
            ],
            now,
        );
        for expected in [
            "fenrun_webhook_endpoint_failing_seconds{endpoint=\"ep_ok\"} 0\n",
            "fenrun_webhook_endpoint_failing_seconds{endpoint=\"ep_bad\"} 7200\n",
            "fenrun_webhook_endpoint_failing_seconds{endpoint=\"ep_off\"} 0\n",
            "fenrun_webhook_endpoint_disabled{endpoint=\"ep_ok\"} 0\n",
            "fenrun_webhook_endpoint_disabled{endpoint=\"ep_bad\"} 0\n",
            "fenrun_webhook_endpoint_disabled{endpoint=\"ep_off\"} 1\n",
            "fenrun_webhook_deliveries{state=\"pending\"} 6\n",
            "fenrun_webhook_deliveries{state=\"failed\"} 3\n",
        ] {
            assert!(
                lines.contains(expected),
                "{expected} missing from:\n{lines}"
            );
        }
    }
}
