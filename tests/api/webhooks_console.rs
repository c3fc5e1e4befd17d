//! The webhooks section of the `/ops` console and its gauges in `/metrics`,
//! on both backends: a receiver answering 500 until the schedule is spent
//! leaves its endpoint failing and its delivery failed, both on the page
//! (with the status and the withdrawal's link) and in the failing gauge;
//! the page's replay button (plain HTML, the session cookie, this site's
//! origin) queues it again, the receiver now answering 204 gets the same
//! webhook-id, and the gauge falls back to 0. Accountant and distributor
//! sessions cannot press it; the range form reads its times in China time.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::helpers::{Backend, TestApp};
use crate::me_page::{link_session, post_form};
use crate::on_both_backends;
use crate::reconciliation_console::gauge;
use crate::tax_page::{get_page, sign_in};
use crate::webhooks::{Receiver, Reply, advance, endpoint, pay, spawn, wait_for_delivery};

on_both_backends!(
    a_failed_delivery_shows_on_the_console_and_its_replay_button_sends_the_same_id_again,
);

/// Attempts the schedule makes before giving a delivery up.
const ATTEMPTS: usize = fenrun::domain::webhooks::MAX_ATTEMPTS as usize;

async fn failing_seconds(app: &TestApp, endpoint_id: &str) -> f64 {
    gauge(
        app,
        &format!("fenrun_webhook_endpoint_failing_seconds{{endpoint=\"{endpoint_id}\"}}"),
    )
    .await
}

async fn console(app: &TestApp, cookie: &str) -> String {
    let page = get_page(app, "/ops", cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

async fn a_failed_delivery_shows_on_the_console_and_its_replay_button_sends_the_same_id_again(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let receiver = Receiver::start(vec![Reply::Status(500); ATTEMPTS]).await;
    let (endpoint_id, _) = endpoint(&app, &receiver.url, &["withdrawal.paid"]).await;
    let withdrawal = pay(&app, "hookops1", "100.00").await;

    // Every attempt of the schedule answered 500: the clock moved to each
    // next attempt in turn (about three days, short of the five that
    // disable an endpoint).
    for attempts in 1..=ATTEMPTS {
        receiver
            .wait_for(&format!("attempt {attempts}"), |all| all.len() == attempts)
            .await;
        let delivery =
            wait_for_delivery(&app, &endpoint_id, |one| one["attempts"] == attempts).await;
        if attempts < ATTEMPTS {
            let at = |field: &str| {
                delivery[field]
                    .as_str()
                    .unwrap()
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
            };
            let wait = (at("next_attempt_at") - at("last_attempt_at")).num_seconds();
            advance(&app, u64::try_from(wait).unwrap() + 2).await;
        }
    }
    let failed = wait_for_delivery(&app, &endpoint_id, |one| one["state"] == "failed").await;
    assert_eq!(failed["last_status"], 500);
    let delivery_id = failed["id"].as_str().unwrap().to_owned();
    let event_id = receiver.received()[0].id.clone();
    assert!(failing_seconds(&app, &endpoint_id).await > 0.0);
    assert_eq!(
        gauge(
            &app,
            &format!("fenrun_webhook_endpoint_disabled{{endpoint=\"{endpoint_id}\"}}")
        )
        .await,
        0.0
    );
    assert_eq!(
        gauge(&app, "fenrun_webhook_deliveries{state=\"failed\"}").await,
        1.0
    );

    // The console shows the endpoint failing and the delivery with its
    // status, its withdrawal's page and a replay button.
    let cookie = sign_in(&app, &app.ops).await;
    let html = console(&app, &cookie).await;
    let action = format!("/ops/webhooks/deliveries/{delivery_id}/replay");
    for expected in [
        "id=\"webhooks\"".to_owned(),
        "Webhooks 推送".to_owned(),
        format!("id=\"webhook-endpoint-{endpoint_id}\""),
        receiver.url.clone(),
        "failing 失败中".to_owned(),
        "withdrawal.paid".to_owned(),
        format!("id=\"webhook-delivery-{delivery_id}\""),
        format!("href=\"/ops/withdrawals/{withdrawal}\""),
        "<td class=\"num status\">500</td>".to_owned(),
        format!("action=\"{action}\""),
        format!("action=\"/ops/webhooks/endpoints/{endpoint_id}/replay\""),
        "type=\"datetime-local\" name=\"from\"".to_owned(),
    ] {
        assert!(
            html.contains(&expected),
            "{expected} missing from the console:\n{html}"
        );
    }

    // Neither an accountant nor a distributor may press it.
    for other in [
        sign_in(&app, &app.accountant).await,
        link_session(&app, "hookops1").await,
    ] {
        let refused = post_form(&app, &action, &other, &[]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(receiver.received().len(), ATTEMPTS);

    // Ops presses it: queued again, the receiver (now answering 204) gets
    // the same webhook-id, and the endpoint is healthy again.
    let response = post_form(&app, &action, &cookie, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ops?webhooks=replayed#webhooks"
    );
    let received = receiver
        .wait_for("the replay", |all| all.len() == ATTEMPTS + 1)
        .await;
    assert_eq!(received[ATTEMPTS].id, event_id);
    assert_eq!(received[ATTEMPTS].answered, 204);
    wait_for_delivery(&app, &endpoint_id, |one| one["state"] == "delivered").await;
    assert_eq!(failing_seconds(&app, &endpoint_id).await, 0.0);
    assert_eq!(
        gauge(&app, "fenrun_webhook_deliveries{state=\"failed\"}").await,
        0.0
    );
    let html = get_page(&app, "/ops?webhooks=replayed", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"webhooks-notice\""), "{html}");
    assert!(html.contains("healthy 正常"), "{html}");
    assert!(html.contains("No failed delivery."), "{html}");

    // Audited, by the signed-in ops token.
    let audit: Value = app
        .get(
            &format!("/v1/audit?target=webhook_delivery:{delivery_id}"),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let entries = audit["items"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "webhooks.replay_delivery"
                && entry["actor_role"] == "ops"),
        "{audit:#}"
    );

    // The range form: nothing failed is left to replay; a time it cannot
    // read is refused with what it wants.
    let range = format!("/ops/webhooks/endpoints/{endpoint_id}/replay");
    let response = post_form(
        &app,
        &range,
        &cookie,
        &[("from", "2020-01-01T00:00"), ("to", "2099-01-01T00:00")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ops?webhooks=replayed_range&replayed=0#webhooks"
    );
    let response = post_form(
        &app,
        &range,
        &cookie,
        &[("from", "yesterday"), ("to", "2099-01-01T00:00")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("YYYY-MM-DDTHH:MM"));
}
