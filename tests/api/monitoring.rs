//! `/metrics` in the Prometheus text format: after a withdrawal is paid and
//! certified it shows HTTP requests by route template (never an id), the
//! steps' durations, the gateway's calls, the money moved in fen and the
//! queues as the database holds them.

use crate::certificates::certified_payout;
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::withdrawals::spawn;

on_both_backends!(metrics_show_requests_steps_gateway_money_and_queues);

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn metrics_show_requests_steps_gateway_money_and_queues(backend: Backend) {
    let app = spawn(backend).await;
    let (_, _, number) = certified_payout(&app, "carol").await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for expected in [
        "fenrun_http_requests_total{route=\"/v1/withdrawals\",method=\"POST\",status=\"202\"}",
        "fenrun_http_requests_total{route=\"/v1/withdrawals/{id}\",method=\"GET\",status=\"200\"}",
        "fenrun_http_request_duration_seconds_bucket{route=\"/v1/withdrawals\",le=\"0.001\"}",
        "fenrun_step_duration_seconds_bucket{workflow=\"withdrawal\",step=\"transfer\",outcome=\"ok\",le=",
        "fenrun_step_duration_seconds_count{workflow=\"withdrawal\",step=\"certificate\",outcome=\"ok\"}",
        "fenrun_gateway_calls_total{operation=\"transfer\",outcome=\"ok\"}",
        "fenrun_gateway_call_duration_seconds_count{operation=\"transfer\"}",
        // Done once apalis flushes its batched acknowledgement; running until then.
        "fenrun_queue_jobs{queue=\"withdrawal.transfer\",state=",
        "fenrun_withdrawals{state=\"paid\"} 1",
        "fenrun_calendar_covered_days ",
        // Present from the start, at 0 until a gateway reports a payment
        // fenrun did not send (alerts.yml needs the series to exist).
        "fenrun_gateway_unexpected_success_total{channel=\"bank\"} ",
        // Done once apalis flushes its batched acknowledgement; running until then.
        "fenrun_queue_jobs{queue=\"withdrawal.certificate\",state=",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // The recorder is shared by every application in this test process, so
    // counters hold at least this test's share.
    let net = sample(&text, "fenrun_money_moved_fen_total{kind=\"payout_net\"}").unwrap();
    let tax = sample(&text, "fenrun_money_moved_fen_total{kind=\"tax_withheld\"}").unwrap();
    assert!(net >= 136_000.0 && tax >= 14_000.0, "net {net}, tax {tax}");
    // Ids and numbers never become labels: one series per route, not per distributor.
    for id in ["carol", number.as_str(), "/v1/withdrawals/wd"] {
        assert!(!text.contains(id), "{id} appears in the metrics");
    }
}
