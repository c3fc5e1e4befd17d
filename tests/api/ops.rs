//! `/v1/ops`: the queues per workflow and step as ops see them, the jobs
//! with what they drive, and retry and cancel that are safe to press twice.

use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::helpers::{Backend, TestApp, error_of};
use crate::on_both_backends;
use crate::withdrawals::spawn;

on_both_backends!(ops_see_queues_and_jobs_and_retry_or_cancel_them_idempotently);

/// Ingests an order confirmed "now" on a clock that a payout moved 4 days
/// on: its release, three business days out, is a scheduled job.
pub async fn scheduled_release(app: &TestApp, order_id: &str, distributor: &str) {
    let confirmed = chrono::Utc::now() + chrono::Duration::days(4);
    let response = app
        .post_json(
            "/v1/orders",
            &app.ingest,
            &json!({
                "order_id": order_id, "distributor_id": distributor, "buyer_id": "buyer-1",
                "placed_at": (confirmed - chrono::Duration::days(1)).to_rfc3339(),
                "confirmed_at": confirmed.to_rfc3339(),
                "items": [{"sku": "S1", "category": "food", "amount": "100.00"}],
            }),
        )
        .await;
    assert_eq!(response.status(), 202);
}

/// `/v1/ops/queues` once the withdrawal's transfer job counts as done,
/// within 10 s.
async fn transfer_done_in_queues(app: &TestApp) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let queues: Value = app
            .get("/v1/ops/queues", &app.ops)
            .await
            .json()
            .await
            .unwrap();
        let done = queues["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|step| step["queue"] == "withdrawal.transfer" && step["counts"]["done"] == 1);
        if done || std::time::Instant::now() > deadline {
            return queues;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn ops_see_queues_and_jobs_and_retry_or_cancel_them_idempotently(backend: Backend) {
    let app = spawn(backend).await;
    let (carol, withdrawal, _) = certified_payout(&app, "carol").await;
    let withdrawal_id = withdrawal["id"].as_str().unwrap();
    // An order whose release waits three business days: a scheduled job.
    scheduled_release(&app, "o-ops-1", "carol").await;

    // apalis acknowledges finished jobs in batches, so the transfer job may
    // read "running" for a moment after the payout it made is visible.
    let queues = transfer_done_in_queues(&app).await;
    let steps = queues["steps"].as_array().unwrap();
    let step = |workflow: &str, name: &str| {
        steps
            .iter()
            .find(|step| step["workflow"] == workflow && step["step"] == name)
            .unwrap_or_else(|| panic!("{workflow}/{name} missing: {queues:#}"))
    };
    let transfer = step("withdrawal", "transfer");
    assert_eq!(transfer["queue"], "withdrawal.transfer");
    assert_eq!(transfer["counts"]["done"], 1, "{transfer:#}");
    assert_eq!(transfer["done_last_hour"], 1);
    let certificate = step("withdrawal", "certificate");
    assert_eq!(
        certificate["counts"]["done"].as_i64().unwrap()
            + certificate["counts"]["running"].as_i64().unwrap(),
        1,
        "{certificate:#}"
    );
    assert_eq!(
        step("order-settlement", "release")["counts"]["scheduled"],
        1
    );
    assert!(queues["calendar_covered_days"].as_i64().is_some());

    let transfers: Value = app
        .get("/v1/ops/jobs?workflow=withdrawal&step=transfer", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let items = transfers["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{transfers:#}");
    assert_eq!(
        items[0]["target"],
        format!("/v1/withdrawals/{withdrawal_id}")
    );
    assert!(
        items[0]["state"] == "done" || items[0]["state"] == "running",
        "{transfers:#}"
    );
    assert_eq!(items[0]["stuck"], false);

    let scheduled: Value = app
        .get("/v1/ops/jobs?state=scheduled", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    let release = &scheduled["items"].as_array().unwrap()[0];
    assert_eq!(release["step"], "release");
    assert!(
        release["target"]
            .as_str()
            .unwrap()
            .starts_with("order release at ")
    );
    let id = release["id"].as_str().unwrap();

    // Cancel, twice: the second press changes nothing.
    for _ in 0..2 {
        let cancelled: Value = app
            .post_json(&format!("/v1/ops/jobs/{id}/cancel"), &app.ops, &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(cancelled["status"], "Killed");
    }
    let failed: Value = app
        .get("/v1/ops/jobs?state=failed", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["items"][0]["id"], id);
    // Retry, twice: it runs again once.
    for _ in 0..2 {
        let retried: Value = app
            .post_json(&format!("/v1/ops/jobs/{id}/retry"), &app.ops, &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_ne!(retried["status"], "Killed", "{retried}");
    }

    let response = app
        .post_json("/v1/ops/jobs/no-such-job/retry", &app.ops, &json!({}))
        .await;
    assert_eq!(error_of(response, 404).await["code"], "not_found");
    for (path, code) in [
        ("/v1/ops/jobs?state=stalled", "invalid_state"),
        (
            "/v1/ops/jobs?workflow=withdrawal&step=reserve",
            "unknown_step",
        ),
    ] {
        let response = app.get(path, &app.ops).await;
        assert_eq!(error_of(response, 400).await["code"], code, "{path}");
    }
    for token in [&app.accountant, &app.ingest, &carol] {
        assert_eq!(app.get("/v1/ops/queues", token).await.status(), 403);
        assert_eq!(app.get("/v1/ops/jobs", token).await.status(), 403);
        let response = app
            .post_json(&format!("/v1/ops/jobs/{id}/cancel"), token, &json!({}))
            .await;
        assert_eq!(response.status(), 403);
    }
    let response = app
        .client
        .get(app.url("/v1/ops/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
