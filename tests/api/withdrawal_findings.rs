//! Four smaller withdrawal and identity findings (issue 17, item 9): a
//! verified success for a withdrawal never sent is logged, counted and
//! acknowledged, and changes nothing; a cancel after the payee accepted is a
//! 409 naming the state; a distributor never sees who reviewed their
//! withdrawal; an identity change after a certificate is audited and sends
//! the next withdrawal to review, once.

// Amounts in fen are written yuan_fen (`100_00` is 100.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use serde_json::{Value, json};

use crate::audit::audit_entries;
use crate::certificates::certified_payout;
use crate::helpers::{Backend, TestApp, error_of, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{
    advance_days, balance, funded_distributor, id_number, request, sandbox, spawn, wait_for_state,
    withdrawal,
};

on_both_backends!(
    a_verified_success_for_a_withdrawal_never_sent_is_counted_acknowledged_and_changes_nothing,
    cancelling_after_the_payee_accepted_is_a_conflict_naming_the_state,
    a_distributor_does_not_see_who_reviewed_their_withdrawal,
    an_identity_change_after_a_certificate_is_audited_and_sends_the_next_withdrawal_to_review,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// The sum of the unexpected-success counter over its channels. The
/// recorder is shared by every app of the test process, so callers compare
/// before and after and expect at least their own share.
async fn unexpected_successes(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("fenrun_gateway_unexpected_success_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn post_callback(
    app: &TestApp,
    callback: fenrun_integrations::sandbox::SignedCallback,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/gateways/wechat/notify"))
        .body(callback.body);
    for (name, value) in callback.headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

async fn a_verified_success_for_a_withdrawal_never_sent_is_counted_acknowledged_and_changes_nothing(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "olga", "5000.00", OPENID).await;
    advance_days(&app, 4).await;
    // Over the auto-approve limit: it waits for review and is never sent.
    let created: Value = request(
        &app,
        &token,
        "o1",
        &json!({"distributor_id": "olga", "amount": "3000.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "reviewing");
    let id = created["id"].as_str().unwrap();
    let out_bill_no = created["gateway"]["out_bill_no"].as_str().unwrap();
    let net_fen = (created["net"].as_str().unwrap().parse::<f64>().unwrap() * 100.0).round() as i64;
    let before = unexpected_successes(&app).await;

    let builder = sandbox(&app).callback_builder();
    // Genuine and fresh, for our bill, which was never sent: acknowledged as
    // WeChat Pay expects (no resending for a day), recorded, not applied.
    let response = post_callback(&app, builder.success(out_bill_no, net_fen)).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "SUCCESS");
    // Genuine and fresh, for a bill fenrun never had: the same.
    let response = post_callback(
        &app,
        builder.success("wdNOSUCHBILL0000000000000000000", 100_00),
    )
    .await;
    assert_eq!(response.status(), 200);

    assert!(
        unexpected_successes(&app).await >= before + 2.0,
        "both successes are counted"
    );
    let current = withdrawal(&app, id).await;
    assert_eq!(current["state"], "reviewing");
    let balance = balance(&app, "olga").await;
    assert_eq!(balance["withdrawing"], "3000.00");
    assert_eq!(balance["withdrawn_total"], "0.00");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn cancelling_after_the_payee_accepted_is_a_conflict_naming_the_state(backend: Backend) {
    // Callbacks go nowhere (the discard port), so fenrun learns of the
    // payee's acceptance only by asking: the cancel races the callback and wins.
    let app = spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.public_url = Some("http://127.0.0.1:9".to_owned());
    })
    .await;
    sandbox(&app).set_faults(fenrun_integrations::sandbox::Faults {
        confirm: fenrun_integrations::sandbox::ConfirmMode::Hold,
        ..Default::default()
    });
    let (token, account) = funded_distributor(&app, "paul", "300.00", OPENID).await;
    advance_days(&app, 4).await;
    let created: Value = request(
        &app,
        &token,
        "p1",
        &json!({"distributor_id": "paul", "amount": "100.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap();
    let waiting = wait_for_state(&app, id, "awaiting_payee_confirmation").await;
    let out_bill_no = waiting["gateway"]["out_bill_no"].as_str().unwrap();
    assert!(sandbox(&app).confirm(out_bill_no).is_some());

    let response = app
        .post_json(&format!("/v1/withdrawals/{id}/cancel"), &token, &json!({}))
        .await;
    let error = error_of(response, 409).await;
    assert_eq!(error["code"], "withdrawal_not_cancellable");
    assert!(
        error["message"].as_str().unwrap().contains("is paid"),
        "{error}"
    );
    // What the gateway said was recorded on the way: paid, once.
    assert_eq!(withdrawal(&app, id).await["state"], "paid");
    let balance = balance(&app, "paul").await;
    assert_eq!(balance["withdrawn_total"], "100.00");
    assert_eq!(balance["available"], "200.00");
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 100_00);
    // Asked again, the answer names the state as well.
    let error = error_of(
        app.post_json(&format!("/v1/withdrawals/{id}/cancel"), &token, &json!({}))
            .await,
        409,
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("is paid"));
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// The ops token's public id (`tok_…`), as `reviewed_by` records it.
async fn reviewer_of(app: &TestApp, id: &str) -> String {
    withdrawal(app, id).await["reviewed_by"]
        .as_str()
        .expect("ops see the reviewer")
        .to_owned()
}

async fn a_distributor_does_not_see_who_reviewed_their_withdrawal(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "quinn", "10000.00", OPENID).await;
    advance_days(&app, 4).await;
    let mut ids = Vec::new();
    for (key, amount) in [("q1", "3000.00"), ("q2", "2500.00")] {
        let created: Value = request(
            &app,
            &token,
            key,
            &json!({"distributor_id": "quinn", "amount": amount, "payout_account_id": account, "speed": "standard"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(created["state"], "reviewing");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let approve = app
        .post_json(
            &format!("/v1/withdrawals/{}/approve", ids[0]),
            &app.ops,
            &json!({"note": "called them"}),
        )
        .await;
    assert_eq!(approve.status(), 200);
    let reject = app
        .post_json(
            &format!("/v1/withdrawals/{}/reject", ids[1]),
            &app.ops,
            &json!({"reason": "account under check"}),
        )
        .await;
    assert_eq!(reject.status(), 200);
    let reviewer = reviewer_of(&app, &ids[0]).await;
    assert!(reviewer.starts_with("tok_"), "{reviewer}");
    assert_eq!(reviewer_of(&app, &ids[1]).await, reviewer);
    // Ops also see it on the review's timeline entry and in the list.
    let ops_view = withdrawal(&app, &ids[1]).await;
    assert!(ops_view.to_string().contains(&reviewer));
    let listed: Value = app
        .get("/v1/withdrawals?state=rejected", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["reviewed_by"], reviewer.as_str());

    for id in &ids {
        let response = app.get(&format!("/v1/withdrawals/{id}"), &token).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(!text.contains(&reviewer), "{text}");
        let view: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(view["reviewed_by"], Value::Null);
        let review: Vec<&Value> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["step"] == "review")
            .collect();
        assert!(!review.is_empty(), "{view:#}");
    }
    // The rejection's reason still reaches the distributor.
    let rejected: Value = app
        .get(&format!("/v1/withdrawals/{}", ids[1]), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rejected["failure_reason"], "account under check");
    assert!(
        rejected["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["outcome"] == "rejected" && entry["detail"] == "account under check"),
        "{rejected:#}"
    );
    // A replay of the request after the review shows no reviewer either.
    let replayed = request(
        &app,
        &token,
        "q1",
        &json!({"distributor_id": "quinn", "amount": "3000.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await;
    assert_eq!(replayed.status(), 202);
    assert!(!replayed.text().await.unwrap().contains(&reviewer));
}

async fn put_identity(app: &TestApp, token: &str, id: &str, real_name: &str, first17: &str) {
    let response = app
        .put_json(
            &format!("/v1/distributors/{id}/identity"),
            token,
            &json!({"real_name": real_name, "id_number": id_number(first17)}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn identity_audits(app: &TestApp, id: &str) -> Vec<Value> {
    audit_entries(
        app,
        &format!("distributor:{id}"),
        "identity.change_after_certificate",
    )
    .await
}

async fn small_withdrawal(app: &TestApp, token: &str, id: &str, key: &str) -> Value {
    let account: Value = app
        .get(&format!("/v1/distributors/{id}/payout-accounts"), token)
        .await
        .json()
        .await
        .unwrap();
    let response = request(
        app,
        token,
        key,
        &json!({"distributor_id": id, "amount": "50.00", "payout_account_id": account["items"][0]["id"], "speed": "standard"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

async fn an_identity_change_after_a_certificate_is_audited_and_sends_the_next_withdrawal_to_review(
    backend: Backend,
) {
    let app = spawn(backend).await;
    // Before any certificate, a change is a correction like any other.
    let (early, _) = funded_distributor(&app, "rita", "500.00", OPENID).await;
    put_identity(&app, &early, "rita", "李五", "11010119900307123").await;

    let (token, _, _) = certified_payout(&app, "sam").await;
    // The same identity again is no change. (Four withdrawals in 24 hours
    // at most below, so that `many_withdrawals` stays quiet.)
    put_identity(&app, &token, "sam", "李四", "11010119900307123").await;
    assert!(identity_audits(&app, "sam").await.is_empty());

    // A new name and a new number after the certificate: audited, masked.
    put_identity(&app, &token, "sam", "王五", "44030419851231002").await;
    let audits = identity_audits(&app, "sam").await;
    assert_eq!(audits.len(), 1, "{audits:#?}");
    let audit = &audits[0];
    assert_eq!(audit["actor_role"], "distributor");
    assert_eq!(audit["before"]["real_name"], "李*");
    assert_eq!(audit["after"]["real_name"], "王*");
    assert_eq!(audit["after"]["changed"], json!(["real_name", "id_number"]));
    let entry = audit.to_string();
    for number in [
        id_number("11010119900307123"),
        id_number("44030419851231002"),
    ] {
        assert!(!entry.contains(&number), "a full ID number in {entry}");
        assert!(
            !entry.contains(&number[3..14]),
            "the hidden digits in {entry}"
        );
    }

    // The next withdrawal, small as it is, waits for a person.
    let flagged = small_withdrawal(&app, &token, "sam", "s-flagged").await;
    assert_eq!(flagged["state"], "reviewing");
    assert_eq!(
        flagged["risk_flags"],
        json!(["identity_changed_after_certificate"])
    );
    // Until it is reviewed, every new one is flagged too.
    let second = small_withdrawal(&app, &token, "sam", "s-second").await;
    assert_eq!(
        second["risk_flags"],
        json!(["identity_changed_after_certificate"])
    );
    let queue: Value = app
        .get("/v1/withdrawals?state=reviewing", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["id"] == flagged["id"]
                && item["risk_flags"] == json!(["identity_changed_after_certificate"])),
        "{queue:#}"
    );
    let approve = app
        .post_json(
            &format!(
                "/v1/withdrawals/{}/approve",
                flagged["id"].as_str().unwrap()
            ),
            &app.ops,
            &json!({"note": "new ID card seen"}),
        )
        .await;
    assert_eq!(approve.status(), 200);

    // Reviewed once: the next one goes by the ordinary rules again.
    let after = small_withdrawal(&app, &token, "sam", "s-after").await;
    assert_eq!(after["risk_flags"], json!([]), "{after:#}");
    assert_eq!(after["state"], "approved");

    // The distributor who changed before any certificate was never flagged.
    let account: Value = app
        .get("/v1/distributors/rita/payout-accounts", &early)
        .await
        .json()
        .await
        .unwrap();
    let rita = request(
        &app,
        &early,
        "r1",
        &json!({"distributor_id": "rita", "amount": "50.00", "payout_account_id": account["items"][0]["id"], "speed": "standard"}),
    )
    .await;
    let rita: Value = rita.json().await.unwrap();
    assert_eq!(rita["risk_flags"], json!([]), "{rita:#}");
    assert!(identity_audits(&app, "rita").await.is_empty());
}
