//! Prometheus metrics (SPEC §2.10): the recorder and what the code counts
//! as it runs — HTTP requests by route and status, step durations, retries
//! and failures, gateway calls, money moved in fen. Serving them, with the
//! queues as the database holds them at each scrape, is `api::metrics`;
//! nothing here speaks HTTP, so the engine can record without the API.
//!
//! The names are the contract of `ops/prometheus/alerts.yml` and the
//! dashboard; they are constants here so that code and tests use the same.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::identity::PayoutChannel;

pub const HTTP_REQUESTS: &str = "fenrun_http_requests_total";
pub const HTTP_DURATION: &str = "fenrun_http_request_duration_seconds";
pub const STEP_DURATION: &str = "fenrun_step_duration_seconds";
pub const STEP_RETRIES: &str = "fenrun_step_retries_total";
pub const STEP_FAILURES: &str = "fenrun_step_failures_total";
pub const GATEWAY_CALLS: &str = "fenrun_gateway_calls_total";
pub const GATEWAY_DURATION: &str = "fenrun_gateway_call_duration_seconds";
pub const MONEY_MOVED: &str = "fenrun_money_moved_fen_total";
pub const QUEUE_JOBS: &str = "fenrun_queue_jobs";
pub const QUEUE_OLDEST_WAITING: &str = "fenrun_queue_oldest_waiting_seconds";
pub const WITHDRAWALS: &str = "fenrun_withdrawals";
pub const CALENDAR_COVERED_DAYS: &str = "fenrun_calendar_covered_days";
pub const CALENDAR_PROVISIONAL_YEAR: &str = "fenrun_calendar_provisional_year";
pub const GATEWAY_UNEXPECTED_SUCCESS: &str = "fenrun_gateway_unexpected_success_total";
pub const AUTH_FAILURES: &str = "fenrun_auth_failures_total";
pub const RATE_LIMITED: &str = "fenrun_rate_limited_total";
pub const RECONCILIATION_RUNS: &str = "fenrun_reconciliation_runs_total";
pub const RECONCILIATION_UNRESOLVED: &str = "fenrun_reconciliation_unresolved_mismatches";
pub const RECONCILIATION_OLDEST_UNRESOLVED: &str =
    "fenrun_reconciliation_oldest_unresolved_mismatch_seconds";
pub const WEBHOOK_DELIVERIES: &str = "fenrun_webhook_deliveries_total";
pub const WEBHOOK_ENDPOINT_FAILING: &str = "fenrun_webhook_endpoint_failing_seconds";
pub const WEBHOOK_ENDPOINT_DISABLED: &str = "fenrun_webhook_endpoint_disabled";
pub const WEBHOOK_DELIVERIES_BY_STATE: &str = "fenrun_webhook_deliveries";

/// The outcomes an attempt is counted under.
pub const WEBHOOK_OUTCOMES: [&str; 4] = ["delivered", "retrying", "failed", "gone"];

/// Latency buckets, in seconds: a millisecond to a minute.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (several applications in one
/// process, as in tests, share it). `None` if another recorder was there.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    // At 0 from the start, so that the first unexpected
                    // success is an increase an alert can see (a series
                    // born at 1 has no increase).
                    for channel in [
                        PayoutChannel::Wechat,
                        PayoutChannel::Alipay,
                        PayoutChannel::Bank,
                    ] {
                        metrics::counter!(GATEWAY_UNEXPECTED_SUCCESS, "channel" => channel.as_str())
                            .increment(0);
                    }
                    // Likewise the first failed reconciliation after a start.
                    for source in ["wechat", "alipay"] {
                        for outcome in ["finished", "failed"] {
                            metrics::counter!(RECONCILIATION_RUNS, "source" => source, "outcome" => outcome)
                                .increment(0);
                        }
                    }
                    for outcome in WEBHOOK_OUTCOMES {
                        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
                    }
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Logs (at warn) and counts a refused credential: `surface` is `api` (a
/// bearer token), `login` (a token typed into the login form) or `page` (a
/// session cookie); `reason` says why (`unknown`, `revoked`, `expired`,
/// `malformed`, `idle`). Never the credential or any part of it.
pub fn auth_failure(
    surface: &'static str,
    reason: &'static str,
    client: Option<std::net::SocketAddr>,
) {
    let client = client.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
    tracing::warn!(surface, reason, client = %client, "authentication refused");
    metrics::counter!(AUTH_FAILURES, "surface" => surface, "reason" => reason).increment(1);
}

/// Counts one reconciliation run of a statement `source` by its outcome
/// (`finished` or `failed`).
pub fn reconciliation_run(source: &'static str, outcome: &'static str) {
    metrics::counter!(RECONCILIATION_RUNS, "source" => source, "outcome" => outcome).increment(1);
}

/// Counts one webhook delivery attempt by its outcome (one of
/// [`WEBHOOK_OUTCOMES`]).
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// Counts a request refused by a rate limit (`limit` names its route family).
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// Records one step attempt: its duration, a retry when it is not the
/// first attempt, a failure when it did not finish.
pub fn step_attempt(
    workflow: &'static str,
    step: &'static str,
    attempt: i64,
    started: Instant,
    ok: bool,
) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(STEP_DURATION, "workflow" => workflow, "step" => step, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    if attempt > 1 {
        metrics::counter!(STEP_RETRIES, "workflow" => workflow, "step" => step).increment(1);
    }
    if !ok {
        metrics::counter!(STEP_FAILURES, "workflow" => workflow, "step" => step).increment(1);
    }
}

/// Records one gateway call: `operation` (transfer, query, cancel) and its
/// outcome (ok, rejected, transient, ambiguous).
pub fn gateway_call(operation: &'static str, outcome: &'static str, started: Instant) {
    metrics::counter!(GATEWAY_CALLS, "operation" => operation, "outcome" => outcome).increment(1);
    metrics::histogram!(GATEWAY_DURATION, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

/// Counts a verified gateway success (callback or query answer) for a bill
/// fenrun never sent, or for a withdrawal not at the gateway: never applied,
/// always worth a person's look. `channel` is the payout channel (`wechat`,
/// `alipay`, `bank`).
pub fn gateway_unexpected_success(channel: &'static str) {
    metrics::counter!(GATEWAY_UNEXPECTED_SUCCESS, "channel" => channel).increment(1);
}

/// Adds fen moved by kind: `payout_net`, `tax_withheld`, `fee`,
/// `commission_released`.
pub fn money_moved(kind: &'static str, fen: i64) {
    if let Ok(fen) = u64::try_from(fen) {
        metrics::counter!(MONEY_MOVED, "kind" => kind).increment(fen);
    }
}
