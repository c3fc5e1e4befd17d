//! Routing by channel (issue 15): the payout account's channel picks the
//! rail; with real merchants (`gateway = "live"`) a channel with none is
//! refused at request (422 `channel_not_configured`) and nothing changes,
//! while a configured one pays. The live WeChat rail here is a sandbox
//! started by the test, reached exactly as a real merchant would be: by
//! the `wechat_*` settings and key files.

use serde_json::{Value, json};

use crate::helpers::{Backend, error_of, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{
    advance_days, balance, funded_distributor, request, sandbox, wait_for_state, withdrawal,
};

on_both_backends!(
    each_channel_pays_through_its_own_rail_of_the_sandbox,
    a_bank_bounce_returns_the_gross_voids_the_certificate_and_frees_the_months_tax_once,
    with_only_wechat_configured_an_alipay_or_bank_withdrawal_is_refused_and_wechat_pays,
    an_alipay_notification_that_does_not_verify_is_refused_and_changes_nothing,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

pub fn sandbox_key(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integrations/sandbox-keys")
        .join(file)
}

/// Live WeChat settings for a sandbox at `base_url`: its merchant, reached
/// by the `wechat_*` settings and key files, as a real merchant would be.
pub fn live_wechat_merchant_at(settings: &mut fenrun::config::Settings, base_url: &str) {
    use fenrun_integrations::sandbox::{
        SANDBOX_APPID, SANDBOX_MCHID, SANDBOX_MERCHANT_SERIAL_NO, SANDBOX_PLATFORM_PUBLIC_KEY_ID,
    };
    settings.gateway = fenrun::config::GatewayKind::Live;
    settings.wechat_base_url = Some(base_url.to_owned());
    settings.wechat_mchid = Some(SANDBOX_MCHID.to_owned());
    settings.wechat_appid = Some(SANDBOX_APPID.to_owned());
    settings.wechat_merchant_serial_no = Some(SANDBOX_MERCHANT_SERIAL_NO.to_owned());
    settings.wechat_merchant_key_file = Some(sandbox_key("merchant_private_key.pem"));
    settings.wechat_platform_public_key_id = Some(SANDBOX_PLATFORM_PUBLIC_KEY_ID.to_owned());
    settings.wechat_platform_public_key_file = Some(sandbox_key("platform_public_key.pem"));
    settings.wechat_api_v3_key_file = Some(sandbox_key("api_v3_key.txt"));
}

async fn with_only_wechat_configured_an_alipay_or_bank_withdrawal_is_refused_and_wechat_pays(
    backend: Backend,
) {
    use fenrun_integrations::sandbox::{SandboxConfig, SandboxGateway};
    let merchant = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let base_url = merchant.base_url().to_owned();
    let app = spawn_app_with(backend, move |settings| {
        settings.simulated_clock = true;
        live_wechat_merchant_at(settings, &base_url);
    })
    .await;
    assert!(!app.withdrawals.gateway().unwrap().is_sandbox());
    let (token, wechat_account) = funded_distributor(&app, "carol", "1000.00", OPENID).await;
    let mut others = Vec::new();
    for body in [
        json!({"channel": "alipay", "account": "carol@example.com"}),
        json!({"channel": "bank", "card_number": "6222021234567894", "bank_name": "招商银行", "holder_name": "李四"}),
    ] {
        let response = app
            .post_json("/v1/distributors/carol/payout-accounts", &app.ingest, &body)
            .await;
        assert_eq!(response.status(), 201);
        let account: Value = response.json().await.unwrap();
        others.push(account["id"].as_str().unwrap().to_owned());
    }
    advance_days(&app, 4).await;
    let before = balance(&app, "carol").await;

    for (index, account) in others.iter().enumerate() {
        let body = json!({"distributor_id": "carol", "amount": "100.00", "payout_account_id": account, "speed": "express"});
        let quote = app.post_json("/v1/withdrawals/quote", &token, &body).await;
        let error = error_of(quote, 422).await;
        assert_eq!(error["code"], "channel_not_configured", "{error}");
        let response = request(&app, &token, &format!("other-{index}"), &body).await;
        let error = error_of(response, 422).await;
        assert_eq!(error["code"], "channel_not_configured", "{error}");
        assert_eq!(error["field"], "payout_account_id", "{error}");
    }
    assert_eq!(
        balance(&app, "carol").await,
        before,
        "a refusal moves nothing"
    );

    let body = json!({"distributor_id": "carol", "amount": "100.00", "payout_account_id": wechat_account, "speed": "express"});
    let response = request(&app, &token, "wechat-1", &body).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let paid = wait_for_state(&app, id, "paid").await;
    assert_eq!(paid["channel"], "wechat");
    let sent = merchant.ledger();
    assert_eq!(sent.paid_count, 1, "{sent:?}");
    assert_eq!(
        sent.total_paid_fen,
        paid["net"]
            .as_str()
            .unwrap()
            .replace('.', "")
            .parse::<i64>()
            .unwrap()
    );
    merchant.shutdown().await;
}

async fn an_alipay_notification_that_does_not_verify_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let forged = "charset=utf-8&msg_method=alipay.fund.trans.order.changed&sign_type=RSA2&sign=AAAA&app_id=2021000000000000&biz_content=%7B%22out_biz_no%22%3A%22wd0000000000000000000000000000%22%2C%22status%22%3A%22REFUND%22%2C%22trans_amount%22%3A%221.00%22%7D";
    let response = app
        .client
        .post(app.url("/v1/gateways/alipay/notify"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(forged)
        .send()
        .await
        .unwrap();
    let error = error_of(response, 401).await;
    assert_eq!(error["code"], "bad_signature", "{error}");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Adds a payout account of `body`'s channel to `distributor`; returns its id.
pub async fn add_account(app: &crate::helpers::TestApp, distributor: &str, body: Value) -> String {
    let response = app
        .post_json(
            &format!("/v1/distributors/{distributor}/payout-accounts"),
            &app.ingest,
            &body,
        )
        .await;
    assert_eq!(response.status(), 201);
    let account: Value = response.json().await.unwrap();
    account["id"].as_str().unwrap().to_owned()
}

/// A distributor `id` with 3,000.00 available and a payout account on each
/// channel, old enough to pay (the clock moved 4 days); returns the
/// distributor's token and each channel's account id.
pub async fn funded_on_every_channel(
    app: &crate::helpers::TestApp,
    id: &str,
) -> (String, [(fenrun_integrations::Channel, String); 3]) {
    use fenrun_integrations::Channel;
    let (token, wechat) = funded_distributor(app, id, "3000.00", OPENID).await;
    let alipay = add_account(
        app,
        id,
        json!({"channel": "alipay", "account": format!("{id}@example.com")}),
    )
    .await;
    let bank = add_account(app, id, json!({"channel": "bank", "card_number": "6222021234567894", "bank_name": "招商银行", "holder_name": "李四"})).await;
    advance_days(app, 4).await;
    (
        token,
        [
            (Channel::Wechat, wechat),
            (Channel::Alipay, alipay),
            (Channel::Bank, bank),
        ],
    )
}

pub fn fen(amount: &Value) -> i64 {
    amount.as_str().unwrap().replace('.', "").parse().unwrap()
}

async fn each_channel_pays_through_its_own_rail_of_the_sandbox(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let (token, accounts) = funded_on_every_channel(&app, "dora").await;
    let mut paid = Vec::new();
    for (channel, account) in accounts {
        let body = json!({"distributor_id": "dora", "amount": "300.00", "payout_account_id": account, "speed": "express"});
        let response = request(&app, &token, &format!("{channel:?}"), &body).await;
        assert_eq!(response.status(), 202);
        let created: Value = response.json().await.unwrap();
        let done = wait_for_state(&app, created["id"].as_str().unwrap(), "paid").await;
        paid.push((channel, fen(&done["net"])));
    }
    let sent = sandbox(&app).ledger();
    for (channel, net) in paid {
        let totals = sent.channel(channel);
        assert_eq!(
            (totals.sent_count, totals.sent_fen),
            (1, net),
            "{channel:?}: {sent:?}"
        );
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn a_bank_bounce_returns_the_gross_voids_the_certificate_and_frees_the_months_tax_once(
    backend: Backend,
) {
    use fenrun_integrations::Channel;
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let (token, _) = funded_distributor(&app, "erin", "20000.00", OPENID).await;
    let bank = add_account(&app, "erin", json!({"channel": "bank", "card_number": "6222021234567894", "bank_name": "招商银行", "holder_name": "李四"})).await;
    advance_days(&app, 4).await;
    // Every notification twice and out of order: the bounce must still apply once.
    let mut faults = sandbox(&app).faults();
    faults.duplicate_callbacks = true;
    faults.out_of_order_callbacks = true;
    sandbox(&app).set_faults(faults);

    let body = json!({"distributor_id": "erin", "amount": "1500.00", "payout_account_id": bank, "speed": "express"});
    let quote_before: Value = app
        .post_json("/v1/withdrawals/quote", &token, &body)
        .await
        .json()
        .await
        .unwrap();
    let response = request(&app, &token, "bounce-1", &body).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let paid = wait_for_state(&app, &id, "paid").await;
    assert_eq!(paid["channel"], "bank");
    let certificate = wait_for_certificate(&app, &id).await;
    assert_eq!(certificate["gross"], "1500.00", "{certificate}");
    let after_payment = balance(&app, "erin").await;

    // The month's declaration is prepared before the bank's word comes back.
    let month = paid["tax_month"].as_str().unwrap().to_owned();
    let prepared = fenrun::store::PreparedDeclaration {
        tax_month: month.clone(),
        method: "per-payment".to_owned(),
        prepared_at: chrono::Utc::now() - chrono::Duration::days(400),
        distributors: 1,
        payouts: 1,
        gross: fenrun::domain::money::Money::parse("1500.00").unwrap(),
        tax: fenrun::domain::money::Money::parse(certificate["tax"].as_str().unwrap()).unwrap(),
        net: fenrun::domain::money::Money::parse(certificate["net"].as_str().unwrap()).unwrap(),
        ledger_tax: fenrun::domain::money::Money::parse(certificate["tax"].as_str().unwrap())
            .unwrap(),
    };
    app.store
        .save_prepared_declaration(&prepared, b"csv", b"xlsx")
        .await
        .unwrap();
    let cookie = crate::tax_page::sign_in(&app, &app.accountant).await;
    let page = crate::tax_page::get_page(&app, &format!("/tax?month={month}"), &cookie).await;
    assert!(
        !page.text().await.unwrap().contains(&id),
        "nothing returned yet"
    );

    let out_bill_no = paid["gateway"]["out_bill_no"].as_str().unwrap().to_owned();
    sandbox(&app)
        .bounce(&out_bill_no, Some("收款账户已注销"))
        .unwrap();
    let returned = wait_for_state(&app, &id, "returned").await;
    assert!(
        returned["failure_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("收款账户已注销"),
        "{returned:#}"
    );
    // The gross is available again: the same as before the payout.
    let after_bounce = balance(&app, "erin").await;
    assert_eq!(
        fen(&after_bounce["available"]),
        fen(&after_payment["available"]) + 150_000, // 1,500.00 in fen
        "{after_bounce} vs {after_payment}"
    );
    // Late and duplicate notifications keep arriving; nothing moves twice.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(balance(&app, "erin").await, after_bounce);
    let timeline = withdrawal(&app, &id).await;
    let bounces = timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["outcome"] == "returned")
        .count();
    assert_eq!(bounces, 1, "{timeline:#}");
    // The certificate is voided by a correction stating nothing was paid.
    let void = wait_for_void(&app, &id).await;
    assert_eq!(
        (
            void["gross"].as_str(),
            void["tax"].as_str(),
            void["net"].as_str()
        ),
        (Some("0.00"), Some("0.00"), Some("0.00")),
        "{void}"
    );
    assert_eq!(void["replaces"], certificate["number"], "{void}");
    // The month's tax is as if the returned payout never happened.
    let quote_after: Value = app
        .post_json("/v1/withdrawals/quote", &token, &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        quote_after["tax"], quote_before["tax"],
        "{quote_after} vs {quote_before}"
    );
    // The accountant sees it: the prepared declaration counts it.
    let page = crate::tax_page::get_page(&app, &format!("/tax?month={month}"), &cookie).await;
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Returned after the declaration was prepared") && page.contains(&id),
        "{page}"
    );
    let sent = sandbox(&app).ledger().channel(Channel::Bank);
    assert_eq!((sent.sent_count, sent.returned_count), (1, 1), "{sent:?}");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// The certificates of a withdrawal, oldest first.
async fn certificates_of(app: &crate::helpers::TestApp, id: &str) -> Vec<Value> {
    let month = withdrawal(app, id).await["tax_month"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .get(
            &format!("/v1/tax/certificates?month={month}"),
            &app.accountant,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|certificate| certificate["withdrawal_id"] == id)
        .cloned()
        .collect()
}

pub async fn wait_for_certificate(app: &crate::helpers::TestApp, id: &str) -> Value {
    for _ in 0..600 {
        if let Some(first) = certificates_of(app, id).await.first() {
            return first.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("withdrawal {id} got no certificate");
}

async fn wait_for_void(app: &crate::helpers::TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let all = certificates_of(app, id).await;
        if let Some(void) = all.iter().find(|c| c["gross"] == "0.00") {
            return void.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("withdrawal {id}'s certificate was never voided");
}
