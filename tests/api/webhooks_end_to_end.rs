//! The README's Python and Node.js receivers (issue 16 item 5) get real
//! deliveries from fenrun's queue and accept each event once, on both
//! backends: what the shop copies from the README verifies what fenrun
//! sends. Skipped, saying so, where the receivers' libraries are not
//! installed (see `webhook_receivers`).

use fenrun::domain::identity::PayoutChannel;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};
use crate::on_both_backends;
use crate::webhook_receivers::{Language, start_readme_receiver};
use crate::withdrawals::{funded_distributor_paid_to, payout_account, request, wait_for_state};

on_both_backends!(the_readme_receivers_accept_each_real_delivery_once);

async fn the_readme_receivers_accept_each_real_delivery_once(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.webhooks.allow_private_targets = true;
    })
    .await;
    let mut receivers = Vec::new();
    for language in [Language::Python, Language::Node] {
        // fenrun makes the secret, the receiver starts with it on a port of
        // its own, and the endpoint is then pointed at it.
        let created = app
            .post_json(
                "/v1/admin/webhooks",
                &app.admin,
                &json!({"url": "http://127.0.0.1:9/not-yet", "events": ["withdrawal.approved", "withdrawal.paid"]}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let Some(receiver) = start_readme_receiver(language, created["secret"].as_str().unwrap())
        else {
            return;
        };
        let updated = app
            .client
            .put(app.url(&format!("/v1/admin/webhooks/{id}")))
            .bearer_auth(&app.admin)
            .json(
                &json!({"url": receiver.url, "events": ["withdrawal.approved", "withdrawal.paid"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), 200);
        receivers.push((language, receiver));
    }

    let (token, account) = funded_distributor_paid_to(
        &app,
        "e2e001",
        "1000.00",
        &payout_account(PayoutChannel::Wechat, 1),
    )
    .await;
    let response = request(
        &app,
        &token,
        "e2e-1",
        &json!({"distributor_id": "e2e001", "amount": "100.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let withdrawal: Value = response.json().await.unwrap();
    let id = withdrawal["id"].as_str().unwrap();
    if withdrawal["state"] == "reviewing" {
        let approved = app
            .post_json(
                &format!("/v1/withdrawals/{id}/approve"),
                &app.ops,
                &json!({}),
            )
            .await;
        assert_eq!(approved.status(), 200);
    }
    wait_for_state(&app, id, "paid").await;
    for (language, receiver) in &receivers {
        let accepted = receiver.wait_for_accepted(2).await;
        let types: Vec<&str> = accepted
            .iter()
            .map(|line| line.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            types,
            ["withdrawal.approved", "withdrawal.paid"],
            "{language:?}: {accepted:?}"
        );
    }
}
