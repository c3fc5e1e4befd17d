//! The `/ops` console: ops sign in with their token, see the queues per
//! step, failed jobs with their target and the review queue with risk
//! flags, and retry a job and approve a withdrawal with the page's forms;
//! other roles are refused and a signed-out browser is sent to log in.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::tax_page::{browser, get_page, sign_in};
use crate::withdrawals::{funded_distributor, request, wait_for_state};

on_both_backends!(ops_steer_the_queue_and_the_review_queue_from_the_console);

async fn ops_steer_the_queue_and_the_review_queue_from_the_console(backend: Backend) {
    let app = crate::withdrawals::spawn(backend).await;
    certified_payout(&app, "carol").await;
    // A large withdrawal waits for review.
    let (token, account) =
        funded_distributor(&app, "dora", "3000.00", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").await;
    let created: Value = request(
        &app,
        &token,
        "dora-1",
        &json!({"distributor_id": "dora", "amount": "2500.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let withdrawal = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "reviewing");
    // A job to fail: an order release three business days out, cancelled by ops.
    crate::ops::scheduled_release(&app, "o-console-1", "carol").await;
    let jobs: Value = app
        .get("/v1/ops/jobs?state=scheduled", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let job = jobs["items"][0]["id"].as_str().unwrap().to_owned();
    let response = browser().get(app.url("/ops")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login?next=%2Fops")
    );

    let cookie = sign_in(&app, &app.ops).await;
    let page = get_page(&app, "/ops", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for expected in [
        "http-equiv=\"refresh\"",
        "withdrawal.transfer",
        "withdrawal.certificate",
        "order.release",
        &withdrawal,
        "over_auto_approve_limit",
        "new_distributor",
        &format!("action=\"/ops/withdrawals/{withdrawal}/approve\""),
        // The review queue links each withdrawal to its page.
        &format!("href=\"/ops/withdrawals/{withdrawal}\""),
    ] {
        assert!(
            html.contains(expected),
            "{expected} missing from the console:\n{html}"
        );
    }

    // Retry from the console, with the form's cookie and same-site origin.
    let cancelled = app
        .post_json(&format!("/v1/ops/jobs/{job}/cancel"), &app.ops, &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);
    let html = get_page(&app, "/ops", &cookie).await.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"/ops/jobs/{job}/retry\"")),
        "{html}"
    );
    for _ in 0..2 {
        let response = browser()
            .post(app.url(&format!("/ops/jobs/{job}/retry")))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/ops");
    }
    let html = get_page(&app, "/ops", &cookie).await.text().await.unwrap();
    assert!(
        !html.contains(&format!("action=\"/ops/jobs/{job}/retry\"")),
        "still failed:\n{html}"
    );
    assert!(html.contains("No stuck jobs."), "{html}");

    // Approve from the console: the withdrawal goes on to be paid. A second
    // press lands back on the console; rejecting it now is an error.
    for _ in 0..2 {
        let response = browser()
            .post(app.url(&format!("/ops/withdrawals/{withdrawal}/approve")))
            .header(COOKIE, &cookie)
            .form(&[("reason", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/ops");
    }
    let response = browser()
        .post(app.url(&format!("/ops/withdrawals/{withdrawal}/reject")))
        .header(COOKIE, &cookie)
        .form(&[("reason", "too late")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    wait_for_state(&app, &withdrawal, "paid").await;
    let audit: Value = app
        .get(
            &format!("/v1/audit?target=withdrawal:{withdrawal}"),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["action"], "withdrawal.approve");
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit:#}");

    // Other roles are refused, on the page and on its forms.
    let accountant = sign_in(&app, &app.accountant).await;
    assert_eq!(
        get_page(&app, "/ops", &accountant).await.status(),
        StatusCode::FORBIDDEN
    );
    let response = browser()
        .post(app.url(&format!("/ops/jobs/{job}/cancel")))
        .header(COOKIE, &accountant)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

on_both_backends!(
    ops_open_a_paid_withdrawal_and_a_released_order_as_pages_with_their_steps_and_transfers
);

/// The order's API view once its release (moved by the clock) has run.
async fn wait_for_order_state(app: &crate::helpers::TestApp, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let order: Value = app
            .get(&format!("/v1/orders/{id}"), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        if order["state"] == state {
            return order;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {id} never reached {state}: {order:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Asserts `html` holds every one of `expected`.
fn assert_shows(html: &str, expected: &[&str]) {
    for text in expected {
        assert!(
            html.contains(text),
            "{text:?} missing from the page:\n{html}"
        );
    }
}

async fn ops_open_a_paid_withdrawal_and_a_released_order_as_pages_with_their_steps_and_transfers(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.webhooks.allow_private_targets = true;
    })
    .await;
    // The shop's endpoint, on a closed local port: every event is written
    // with a delivery that stays pending, which the pages list.
    let response = app
        .post_json(
            "/v1/admin/webhooks",
            &app.admin,
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["*"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let (_, paid, certificate) = certified_payout(&app, "carol").await;
    let withdrawal = paid["id"].as_str().unwrap().to_owned();
    crate::ops::scheduled_release(&app, "o-timeline-1", "carol").await;
    crate::withdrawals::advance_days(&app, 7).await;
    let order = wait_for_order_state(&app, "o-timeline-1", "released").await;
    let withdrawal_page = format!("/ops/withdrawals/{withdrawal}");
    let order_page = "/ops/orders/o-timeline-1".to_owned();

    // Signed out: to the login page, and back here after it. Signed in
    // with another role than ops or admin: refused.
    let distributor = app.distributor_token("carol").await;
    let distributor = sign_in(&app, &distributor).await;
    let accountant = sign_in(&app, &app.accountant).await;
    for path in [&withdrawal_page, &order_page] {
        let response = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(location.starts_with("/login?next=%2Fops%2F"), "{location}");
        for cookie in [&distributor, &accountant] {
            assert_eq!(
                get_page(&app, path, cookie).await.status(),
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
    }

    let cookie = sign_in(&app, &app.ops).await;
    // The withdrawal: its facts, every step of its timeline, and the
    // reserve and payment transfers with their postings.
    let response = get_page(&app, &withdrawal_page, &cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    let reserve = format!("withdrawal:{withdrawal}:reserve");
    let payment = format!("withdrawal:{withdrawal}:paid");
    assert_shows(
        &html,
        &[
            "<strong>paid</strong>",
            "1500.00",
            "-1500.00",
            "140.00",
            "1360.00",
            "wechat",
            &certificate,
            &reserve,
            &payment,
            "Webhook deliveries 推送记录",
            "withdrawal.requested",
            "withdrawal.paid",
            "certificate.issued",
            "http://127.0.0.1:9/hooks",
            &format!("href=\"{withdrawal_page}.json\""),
        ],
    );
    let timeline = paid["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    for step in timeline {
        assert_shows(&html, &[step["step"].as_str().unwrap()]);
    }
    assert!(
        html.find(&reserve) < html.find(&payment),
        "transfers oldest first"
    );
    if let Some(reference) = paid["gateway"]["bill_no"].as_str() {
        assert_shows(&html, &[reference]);
    }
    // The JSON the console linked to before stays, beside the page.
    let json: Value = get_page(&app, &format!("{withdrawal_page}.json"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["id"], withdrawal.as_str());
    assert_eq!(json["state"], "paid");

    // The order: items, commissions per level, the hold's release, its
    // steps and its pending and release transfers.
    let response = get_page(&app, &order_page, &cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert_shows(
        &html,
        &[
            "<strong>released</strong>",
            "100.00",
            "<code>S1</code>",
            "order:o-timeline-1:pending",
            "order:o-timeline-1:release",
            "Webhook deliveries 推送记录",
            "commission.pending",
            "commission.released",
            "解冻 Hold release",
        ],
    );
    for step in order["timeline"].as_array().unwrap() {
        assert_shows(&html, &[step["step"].as_str().unwrap()]);
    }
    for line in order["commissions"].as_array().unwrap() {
        assert_shows(
            &html,
            &[
                &format!("id=\"commission-{}\"", line["level"]),
                line["amount"].as_str().unwrap(),
            ],
        );
    }
    let json: Value = get_page(&app, &format!("{order_page}.json"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["order_id"], "o-timeline-1");

    // Ids that name nothing: a 404 page.
    for path in [
        "/ops/withdrawals/wd000000000000000000000000000000",
        "/ops/withdrawals/not-an-id",
        "/ops/orders/no-such-order",
    ] {
        let response = get_page(&app, path, &cookie).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.text().await.unwrap().contains("404"), "{path}");
    }
}
