//! Withdrawals over HTTP (SPEC §2.4), paid through the in-process sandbox
//! gateway: the full path, review, cancel, the payee's confirmation, gateway
//! failures, every refused input, and 64 concurrent requests against a
//! balance that funds exactly ten.

// Amounts in fen are written yuan_fen (`2545_00` is 2,545.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fenrun::domain::identity::{BankCardNumber, PayoutChannel};

use crate::helpers::{Backend, TestApp, error_of, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_withdrawal_is_reserved_taxed_paid_and_posted_to_the_ledger,
    a_large_express_withdrawal_waits_for_review_and_is_paid_once_approved,
    rejection_and_cancellation_return_the_funds,
    a_failure_at_the_gateway_returns_the_funds_with_the_reason,
    a_payee_confirmation_waits_and_its_expiry_returns_the_funds,
    bad_withdrawal_requests_are_refused_and_change_nothing,
    bad_callbacks_change_nothing,
    sixty_four_concurrent_requests_against_ten_withdrawals_of_balance_accept_exactly_ten,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
const FAILING_OPENID: &str = "oUpF8uFAILING_account_000001";

/// An 18-character ID number: `first17` and its ISO 7064 MOD 11-2 check character.
pub fn id_number(first17: &str) -> String {
    fenrun::domain::identity::IdNumber::complete(first17)
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| settings.simulated_clock = true).await
}

/// A distributor with identity, a WeChat account and `funds` available,
/// old enough (and with an account old enough) to raise no risk flag once
/// the clock has moved; returns (token, payout account id).
pub async fn funded_distributor(
    app: &TestApp,
    id: &str,
    funds: &str,
    openid: &str,
) -> (String, String) {
    funded_distributor_paid_to(
        app,
        id,
        funds,
        &json!({"channel": "wechat", "openid": openid}),
    )
    .await
}

/// [`funded_distributor`] with the payout account of `account` (a body of
/// `POST /v1/distributors/{id}/payout-accounts`, e.g. [`payout_account`]).
pub async fn funded_distributor_paid_to(
    app: &TestApp,
    id: &str,
    funds: &str,
    account: &Value,
) -> (String, String) {
    app.create_distributor(id, None, None).await;
    let response = app
        .put_json(
            &format!("/v1/distributors/{id}/identity"),
            &app.ingest,
            &json!({"real_name": "李四", "id_number": id_number("11010119900307123")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .post_json(
            &format!("/v1/distributors/{id}/payout-accounts"),
            &app.ingest,
            account,
        )
        .await;
    assert_eq!(response.status(), 201);
    let account: Value = response.json().await.unwrap();
    let response = app
        .client
        .post(app.url("/v1/admin/adjustments"))
        .bearer_auth(&app.admin)
        .header("Idempotency-Key", format!("fund-{id}"))
        .json(&json!({"distributor_id": id, "amount": funds, "direction": "credit", "reason": "test funds"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    (
        app.distributor_token(id).await,
        account["id"].as_str().unwrap().to_owned(),
    )
}

/// A payout account on `channel` for payee number `number`, in the name on
/// file (李四): an openid, an Alipay email, or a bank card whose last digit
/// is its Luhn check digit. Distinct numbers give distinct payees.
pub fn payout_account(channel: PayoutChannel, number: usize) -> Value {
    match channel {
        PayoutChannel::Wechat => {
            json!({"channel": "wechat", "openid": format!("oPayee{number:06}Openid0000000000")})
        }
        PayoutChannel::Alipay => {
            json!({"channel": "alipay", "account": format!("payee{number}@example.com")})
        }
        PayoutChannel::Bank => {
            let card = BankCardNumber::complete(&format!("62220212{number:07}"));
            json!({"channel": "bank", "card_number": card, "bank_name": "招商银行", "holder_name": "李四"})
        }
    }
}

pub async fn advance_days(app: &TestApp, days: u32) {
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({"days": days}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

pub async fn request(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/withdrawals"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn withdrawal(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/v1/withdrawals/{id}"), &app.ops).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until the withdrawal reaches `state` (callbacks and the transfer
/// worker run in the background).
pub async fn wait_for_state(app: &TestApp, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = withdrawal(app, id).await;
        if current["state"] == state {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "withdrawal {id} never reached {state}: {current:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn balance(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/distributors/{id}/balance"), &app.ops)
        .await
        .json()
        .await
        .unwrap()
}

fn body(distributor: &str, amount: &str, account: &str, speed: &str) -> Value {
    json!({"distributor_id": distributor, "amount": amount, "payout_account_id": account, "speed": speed})
}

pub fn sandbox(app: &TestApp) -> &fenrun_integrations::sandbox::SandboxHandle {
    app.withdrawals
        .gateway()
        .expect("gateway connected")
        .sandbox()
        .expect("in-process sandbox")
}

async fn ledger_is_balanced(app: &TestApp) {
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn a_withdrawal_is_reserved_taxed_paid_and_posted_to_the_ledger(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "alice", "1000.00", OPENID).await;
    advance_days(&app, 4).await;

    let quote = app
        .post_json(
            "/v1/withdrawals/quote",
            &token,
            &body("alice", "500.00", &account, "standard"),
        )
        .await;
    assert_eq!(quote.status(), 200);
    let quote: Value = quote.json().await.unwrap();
    assert_eq!(
        (
            quote["gross"].as_str(),
            quote["tax"].as_str(),
            quote["fee"].as_str(),
            quote["net"].as_str()
        ),
        (Some("500.00"), Some("0.00"), Some("0.00"), Some("500.00"))
    );
    assert_eq!(
        balance(&app, "alice").await["available"],
        "1000.00",
        "a quote changes nothing"
    );

    let response = request(
        &app,
        &token,
        "w-1",
        &body("alice", "500.00", &account, "standard"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["state"], "approved");
    assert_eq!(created["net"], "500.00");
    let id = created["id"].as_str().unwrap().to_owned();

    // The same key and body answer the same withdrawal.
    let again: Value = request(
        &app,
        &token,
        "w-1",
        &body("alice", "500.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["id"], created["id"]);

    let paid = wait_for_state(&app, &id, "paid").await;
    let steps: Vec<(&str, &str)> = paid["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["step"].as_str().unwrap(),
                event["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        steps.starts_with(&[
            ("reserve", "reserved"),
            ("tax", "withheld"),
            ("review", "auto_approved"),
            ("transfer", "scheduled"),
            ("transfer", "sending")
        ]),
        "{steps:?}"
    );
    assert!(steps.contains(&("confirm", "paid")), "{steps:?}");
    assert!(paid["gateway"]["out_bill_no"].as_str().unwrap().len() >= 5);

    let balance = balance(&app, "alice").await;
    assert_eq!(
        (
            balance["available"].as_str(),
            balance["withdrawing"].as_str(),
            balance["withdrawn_total"].as_str()
        ),
        (Some("500.00"), Some("0.00"), Some("500.00"))
    );
    ledger_is_balanced(&app).await;
    let ledger = sandbox(&app).ledger();
    assert_eq!(ledger.total_paid_fen, 500_00);
    assert!(ledger.bills.iter().all(|bill| bill.paid_times <= 1));
}

async fn a_large_express_withdrawal_waits_for_review_and_is_paid_once_approved(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "bob", "5000.00", OPENID).await;
    advance_days(&app, 4).await;
    let response = request(
        &app,
        &token,
        "big",
        &body("bob", "3000.00", &account, "express"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    // tax-cn.md per-payment: (3000 − 800) × 20% = 440.00; fee 0.5% = 15.00.
    assert_eq!(
        (
            created["state"].as_str(),
            created["tax"].as_str(),
            created["fee"].as_str(),
            created["net"].as_str()
        ),
        (
            Some("reviewing"),
            Some("440.00"),
            Some("15.00"),
            Some("2545.00")
        )
    );
    assert_eq!(created["risk_flags"], json!(["over_auto_approve_limit"]));
    let id = created["id"].as_str().unwrap();

    let queue: Value = app
        .get("/v1/withdrawals?state=reviewing", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1);
    // A distributor cannot approve.
    error_of(
        app.post_json(&format!("/v1/withdrawals/{id}/approve"), &token, &json!({}))
            .await,
        403,
    )
    .await;
    let approved = app
        .post_json(
            &format!("/v1/withdrawals/{id}/approve"),
            &app.ops,
            &json!({"note": "known seller"}),
        )
        .await;
    assert_eq!(approved.status(), 200);
    wait_for_state(&app, id, "paid").await;
    // Approving it again, now that it is paid, is refused.
    let error = error_of(
        app.post_json(
            &format!("/v1/withdrawals/{id}/approve"),
            &app.ops,
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(error["code"], "withdrawal_not_in_review");

    let balance = balance(&app, "bob").await;
    assert_eq!(
        (
            balance["available"].as_str(),
            balance["withdrawn_total"].as_str()
        ),
        (Some("2000.00"), Some("3000.00"))
    );
    use fenrun::domain::ledger::{AccountId, PlatformAccount};
    let tax = app
        .store
        .account_balance(&AccountId::Platform(PlatformAccount::TaxPayable))
        .await
        .unwrap()
        .unwrap();
    let fee = app
        .store
        .account_balance(&AccountId::Platform(PlatformAccount::FeeIncome))
        .await
        .unwrap()
        .unwrap();
    let clearing = app
        .store
        .account_balance(&AccountId::Platform(PlatformAccount::WechatClearing))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (tax.fen(), fee.fen(), clearing.fen()),
        (440_00, 15_00, 2545_00)
    );
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 2545_00);
    ledger_is_balanced(&app).await;
}

async fn rejection_and_cancellation_return_the_funds(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "carol", "6000.00", OPENID).await;
    advance_days(&app, 4).await;
    let rejected: Value = request(
        &app,
        &token,
        "r",
        &body("carol", "2500.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let cancelled: Value = request(
        &app,
        &token,
        "c",
        &body("carol", "2600.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(balance(&app, "carol").await["available"], "900.00");

    let error = error_of(
        app.post_json(
            &format!(
                "/v1/withdrawals/{}/reject",
                rejected["id"].as_str().unwrap()
            ),
            &app.ops,
            &json!({"reason": ""}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["field"], "reason");
    let response = app
        .post_json(
            &format!(
                "/v1/withdrawals/{}/reject",
                rejected["id"].as_str().unwrap()
            ),
            &app.ops,
            &json!({"reason": "documents do not match"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let rejected: Value = response.json().await.unwrap();
    assert_eq!(
        (
            rejected["state"].as_str(),
            rejected["failure_reason"].as_str()
        ),
        (Some("rejected"), Some("documents do not match"))
    );

    // Another distributor cannot see or cancel it.
    app.create_distributor("mallory", None, None).await;
    let mallory = app.distributor_token("mallory").await;
    error_of(
        app.post_json(
            &format!(
                "/v1/withdrawals/{}/cancel",
                cancelled["id"].as_str().unwrap()
            ),
            &mallory,
            &json!({}),
        )
        .await,
        404,
    )
    .await;
    let response = app
        .post_json(
            &format!(
                "/v1/withdrawals/{}/cancel",
                cancelled["id"].as_str().unwrap()
            ),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["state"],
        "cancelled"
    );
    // Twice is refused: it is final.
    let error = error_of(
        app.post_json(
            &format!(
                "/v1/withdrawals/{}/cancel",
                cancelled["id"].as_str().unwrap()
            ),
            &token,
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(error["code"], "withdrawal_not_cancellable");

    let balance = balance(&app, "carol").await;
    assert_eq!(
        (
            balance["available"].as_str(),
            balance["withdrawing"].as_str()
        ),
        (Some("6000.00"), Some("0.00"))
    );
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 0);
    ledger_is_balanced(&app).await;
}

async fn a_failure_at_the_gateway_returns_the_funds_with_the_reason(backend: Backend) {
    let app = spawn(backend).await;
    sandbox(&app).set_faults(fenrun_integrations::sandbox::Faults {
        fail_openids: vec![FAILING_OPENID.to_owned()],
        ..Default::default()
    });
    let (token, account) = funded_distributor(&app, "dave", "100.00", FAILING_OPENID).await;
    advance_days(&app, 4).await;
    let created: Value = request(
        &app,
        &token,
        "f",
        &body("dave", "100.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let failed = wait_for_state(&app, created["id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("PAYEE_ACCOUNT_ABNORMAL"),
        "{failed}"
    );
    let balance = balance(&app, "dave").await;
    assert_eq!(
        (
            balance["available"].as_str(),
            balance["withdrawing"].as_str()
        ),
        (Some("100.00"), Some("0.00"))
    );
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 0);
    ledger_is_balanced(&app).await;
}

async fn a_payee_confirmation_waits_and_its_expiry_returns_the_funds(backend: Backend) {
    let app = spawn(backend).await;
    sandbox(&app).set_faults(fenrun_integrations::sandbox::Faults {
        confirm: fenrun_integrations::sandbox::ConfirmMode::Hold,
        ..Default::default()
    });
    let (token, account) = funded_distributor(&app, "erin", "300.00", OPENID).await;
    advance_days(&app, 4).await;
    let first: Value = request(
        &app,
        &token,
        "p1",
        &body("erin", "100.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let second: Value = request(
        &app,
        &token,
        "p2",
        &body("erin", "120.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let waiting = wait_for_state(&app, first, "awaiting_payee_confirmation").await;
    assert!(!waiting["package_info"].as_str().unwrap().is_empty());
    let waiting = wait_for_state(&app, second, "awaiting_payee_confirmation").await;

    // The payee accepts the first; the second's bill expires.
    assert_eq!(waiting["state"], "awaiting_payee_confirmation");
    let first_bill = withdrawal_out_bill_no(&app, first).await;
    sandbox(&app).confirm(&first_bill);
    wait_for_state(&app, first, "paid").await;
    let out_bill_no = withdrawal_out_bill_no(&app, second).await;
    sandbox(&app).expire(&out_bill_no);
    let expired = wait_for_state(&app, second, "cancelled").await;
    assert!(
        expired["failure_reason"]
            .as_str()
            .unwrap()
            .contains("CANCELLED"),
        "{expired}"
    );

    // A third: the distributor cancels while the payee has not accepted; the
    // bill is cancelled at the gateway and the funds come back.
    let third: Value = request(
        &app,
        &token,
        "p3",
        &body("erin", "50.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let third = third["id"].as_str().unwrap();
    wait_for_state(&app, third, "awaiting_payee_confirmation").await;
    let response = app
        .post_json(
            &format!("/v1/withdrawals/{third}/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    wait_for_state(&app, third, "cancelled").await;

    let balance = balance(&app, "erin").await;
    assert_eq!(
        (
            balance["available"].as_str(),
            balance["withdrawing"].as_str()
        ),
        (Some("200.00"), Some("0.00"))
    );
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 100_00);
    ledger_is_balanced(&app).await;
}

async fn withdrawal_out_bill_no(app: &TestApp, id: &str) -> String {
    withdrawal(app, id).await["gateway"]["out_bill_no"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn bad_withdrawal_requests_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "frank", "30000.00", OPENID).await;
    let (other_token, other_account) = funded_distributor(&app, "grace", "10.00", OPENID).await;
    app.create_distributor("nobody", None, None).await;
    let nobody = app.distributor_token("nobody").await;
    advance_days(&app, 4).await;
    let before = balance(&app, "frank").await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "below the minimum",
            body("frank", "9.99", &account, "standard"),
            422,
            "amount_below_minimum",
        ),
        (
            "three decimals",
            body("frank", "10.001", &account, "standard"),
            422,
            "amount_precision",
        ),
        (
            "not a number",
            body("frank", "ten", &account, "standard"),
            400,
            "invalid_amount",
        ),
        (
            "over available",
            body("frank", "30000.01", &account, "standard"),
            422,
            "insufficient_balance",
        ),
        (
            "someone else's account",
            body("frank", "10.00", &other_account, "standard"),
            422,
            "payout_account_not_owned",
        ),
        (
            "an unknown account",
            body("frank", "10.00", "pa_0000", "standard"),
            422,
            "payout_account_not_owned",
        ),
        (
            "an unknown speed",
            body("frank", "10.00", &account, "instant"),
            400,
            "invalid_field",
        ),
    ];
    for (case, request_body, status, code) in cases {
        let error = error_of(
            request(&app, &token, &case.replace([' ', '\''], "-"), &request_body).await,
            status,
        )
        .await;
        assert_eq!(error["code"], code, "{case}: {error}");
    }
    // Over the daily limit: 15,000 (to review) then 6,000 more.
    let first = request(
        &app,
        &token,
        "day-1",
        &body("frank", "15000.00", &account, "standard"),
    )
    .await;
    assert_eq!(first.status(), 202);
    let error = error_of(
        request(
            &app,
            &token,
            "day-2",
            &body("frank", "6000.00", &account, "standard"),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("daily_limit_exceeded"), Some("amount"))
    );
    // The same key with another body.
    let error = error_of(
        request(
            &app,
            &token,
            "day-1",
            &body("frank", "15000.01", &account, "standard"),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(error["code"], "idempotency_conflict");
    // No identity on file.
    let (no_id_account, _) = {
        let response = app
            .post_json(
                "/v1/distributors/nobody/payout-accounts",
                &app.ingest,
                &json!({"channel": "wechat", "openid": OPENID}),
            )
            .await;
        let account: Value = response.json().await.unwrap();
        (account["id"].as_str().unwrap().to_owned(), ())
    };
    let error = error_of(
        request(
            &app,
            &nobody,
            "n",
            &body("nobody", "10.00", &no_id_account, "standard"),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error["code"], "identity_missing");
    // Another distributor's token, for frank.
    error_of(
        request(
            &app,
            &other_token,
            "o",
            &body("frank", "10.00", &account, "standard"),
        )
        .await,
        403,
    )
    .await;
    // No Idempotency-Key.
    let response = app
        .post_json(
            "/v1/withdrawals",
            &token,
            &body("frank", "10.00", &account, "standard"),
        )
        .await;
    assert_eq!(
        error_of(response, 400).await["code"],
        "missing_idempotency_key"
    );
    // A JSON number for the amount is malformed.
    let error = error_of(request(&app, &token, "num", &json!({"distributor_id": "frank", "amount": 10, "payout_account_id": account, "speed": "standard"})).await, 400).await;
    assert_eq!(error["field"], "amount");

    let after = balance(&app, "frank").await;
    assert_eq!(
        after["available"], "15000.00",
        "only the one accepted withdrawal reserved money: {before} → {after}"
    );
    assert_eq!(after["withdrawing"], "15000.00");
    assert_eq!(balance(&app, "grace").await["available"], "10.00");
    ledger_is_balanced(&app).await;
}

async fn bad_callbacks_change_nothing(backend: Backend) {
    let app = spawn(backend).await;
    sandbox(&app).set_faults(fenrun_integrations::sandbox::Faults {
        confirm: fenrun_integrations::sandbox::ConfirmMode::Hold,
        ..Default::default()
    });
    let (token, account) = funded_distributor(&app, "heidi", "100.00", OPENID).await;
    advance_days(&app, 4).await;
    let created: Value = request(
        &app,
        &token,
        "h",
        &body("heidi", "100.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap();
    wait_for_state(&app, id, "awaiting_payee_confirmation").await;
    let out_bill_no = withdrawal_out_bill_no(&app, id).await;
    let notify = app.url("/v1/gateways/wechat/notify");
    let builder = sandbox(&app).callback_builder();

    let post = |callback: fenrun_integrations::sandbox::SignedCallback| {
        let client = app.client.clone();
        let notify = notify.clone();
        async move {
            let mut request = client.post(&notify).body(callback.body);
            for (name, value) in callback.headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    // A forged SUCCESS: the signature does not verify.
    let forged = builder
        .success(&out_bill_no, 100_00)
        .with_corrupted_signature();
    assert_eq!(
        error_of(post(forged).await, 401).await["code"],
        "bad_signature"
    );
    // A genuine signature, but ten minutes old.
    let stale = builder
        .success(&out_bill_no, 100_00)
        .at_timestamp(chrono::Utc::now().timestamp() - 600);
    assert_eq!(
        error_of(post(stale).await, 401).await["code"],
        "stale_callback"
    );
    // Genuine and fresh, for a bill fenrun never sent: acknowledged (so the
    // gateway stops resending it) and recorded, nothing applied.
    let unknown = builder.success("wdNOSUCHBILL0000000000000000000", 100_00);
    assert_eq!(post(unknown).await.status(), 200);
    // Genuine, for our bill, with another amount.
    let wrong_amount = builder.success(&out_bill_no, 99_00);
    assert_eq!(
        error_of(post(wrong_amount).await, 422).await["code"],
        "callback_mismatch"
    );
    // Garbage.
    let response = app.client.post(&notify).body("{").send().await.unwrap();
    assert!(response.status().is_client_error());

    let current = withdrawal(&app, id).await;
    assert_eq!(current["state"], "awaiting_payee_confirmation");
    assert_eq!(balance(&app, "heidi").await["withdrawing"], "100.00");
    // A genuine one, twice: applied once.
    let genuine = builder.success(&out_bill_no, 100_00);
    assert_eq!(post(genuine.clone()).await.status(), 200);
    assert_eq!(post(genuine).await.status(), 200);
    wait_for_state(&app, id, "paid").await;
    assert_eq!(balance(&app, "heidi").await["withdrawn_total"], "100.00");
    ledger_is_balanced(&app).await;
}

async fn sixty_four_concurrent_requests_against_ten_withdrawals_of_balance_accept_exactly_ten(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "ivan", "1000.00", OPENID).await;
    advance_days(&app, 4).await;
    let requests = (0..64).map(|n| {
        let (app, token, account) = (&app, token.clone(), account.clone());
        async move {
            request(
                app,
                &token,
                &format!("c-{n}"),
                &body("ivan", "100.00", &account, "standard"),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|status| **status == 202).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 422).count(),
        54,
        "{statuses:?}"
    );
    let balance = balance(&app, "ivan").await;
    assert_eq!(balance["available"], "0.00");
    ledger_is_balanced(&app).await;
}
