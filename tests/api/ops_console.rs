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
