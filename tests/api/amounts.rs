//! Amount ceilings and checked balances (issue 17, item 2): an order line
//! or total over its ceiling, an adjustment over its ceiling, an amount too
//! large to parse, and a credit that would take a balance past 64 bits of
//! fen are refused with a JSON error naming the field, and change nothing.

use chrono::{Duration, Utc};
use fenrun::domain::ids::DistributorId;
use fenrun::domain::ledger::{AccountId, Bucket, PlatformAccount, Transfer, TransferKind};
use fenrun::domain::money::Money;
use serde_json::{Value, json};

use crate::audit::audit_entries;
use crate::helpers::{Backend, TestApp, error_of, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    an_order_at_the_ceilings_is_accepted_and_one_fen_over_is_refused_naming_the_field,
    an_adjustment_over_its_ceiling_or_past_what_a_balance_holds_is_refused_and_changes_nothing,
);

fn order(id: &str, amounts: &[&str]) -> Value {
    let confirmed_at = Utc::now() - Duration::hours(1);
    let items: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(index, amount)| json!({"sku": format!("sku-{index}"), "category": "tea", "amount": amount}))
        .collect();
    json!({
        "order_id": id,
        "distributor_id": "seller",
        "buyer_id": "buyer-1",
        "placed_at": (confirmed_at - Duration::days(2)).to_rfc3339(),
        "confirmed_at": confirmed_at.to_rfc3339(),
        "items": items,
    })
}

async fn nothing_stored(app: &TestApp, order_id: &str) {
    let response = app.get(&format!("/v1/orders/{order_id}"), &app.ops).await;
    assert_eq!(response.status(), 404, "{order_id} was stored");
}

async fn an_order_at_the_ceilings_is_accepted_and_one_fen_over_is_refused_naming_the_field(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_distributor("seller", None, None).await;

    // The default ceilings: 1,000,000.00 a line, 10,000,000.00 an order.
    let at_line_ceiling = app
        .post_json("/v1/orders", &app.ingest, &order("o-line", &["1000000.00"]))
        .await;
    assert_eq!(at_line_ceiling.status(), 202);
    let at_total_ceiling = app
        .post_json(
            "/v1/orders",
            &app.ingest,
            &order("o-total", &["1000000.00"; 10]),
        )
        .await;
    assert_eq!(at_total_ceiling.status(), 202);

    let line_over = order(
        "o-line-over",
        &["1.00", "2.00", "3.00", "1000000.01", "5.00"],
    );
    let error = error_of(
        app.post_json("/v1/orders", &app.ingest, &line_over).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "amount_too_large");
    assert_eq!(error["field"], "items[3].amount");
    assert!(error["message"].as_str().unwrap().contains("1000000.00"));
    nothing_stored(&app, "o-line-over").await;

    let mut amounts = vec!["1000000.00"; 10];
    amounts.push("0.01");
    let total_over = order("o-total-over", &amounts);
    let error = error_of(
        app.post_json("/v1/orders", &app.ingest, &total_over).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "amount_too_large");
    assert_eq!(error["field"], "items");
    nothing_stored(&app, "o-total-over").await;

    // Too many digits to be an amount at all: a JSON error, not a 500 or a wrap.
    for huge in ["99999999999999999999.00", "92233720368547758.08"] {
        let error = error_of(
            app.post_json("/v1/orders", &app.ingest, &order("o-huge", &[huge]))
                .await,
            400,
        )
        .await;
        assert_eq!(error["code"], "invalid_amount", "{huge}");
        assert_eq!(error["field"], "items[0].amount", "{huge}");
    }
    nothing_stored(&app, "o-huge").await;

    // Only the two orders at the ceilings moved money: 10% of 11,000,000.00.
    let balance: Value = app
        .get("/v1/distributors/seller/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["pending"], "1100000.00", "{balance}");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn adjust(app: &TestApp, key: &str, amount: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/admin/adjustments"))
        .bearer_auth(&app.admin)
        .header("Idempotency-Key", key)
        .json(&json!({"distributor_id": "rich", "amount": amount, "direction": "credit", "reason": "test"}))
        .send()
        .await
        .unwrap()
}

async fn adjustments_audited(app: &TestApp) -> usize {
    audit_entries(app, "distributor:rich", "ledger.adjust")
        .await
        .len()
}

async fn an_adjustment_over_its_ceiling_or_past_what_a_balance_holds_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_distributor("rich", None, None).await;

    // The default ceiling is 10,000,000.00 an adjustment.
    assert_eq!(
        adjust(&app, "at-ceiling", "10000000.00").await.status(),
        201
    );
    let error = error_of(adjust(&app, "over-ceiling", "10000000.01").await, 422).await;
    assert_eq!(error["code"], "amount_too_large");
    assert_eq!(error["field"], "amount");

    // Bring the balance to 100 fen short of the largest one 64 bits hold,
    // through the store (no ceiling there) with a balanced transfer.
    let rich = DistributorId::parse("rich").unwrap();
    let available = AccountId::Distributor(rich, Bucket::Available);
    let near_max = i64::MAX - 100 - 1_000_000_000;
    let transfer = Transfer::between(
        "test:near-max",
        TransferKind::Adjustment,
        AccountId::Platform(PlatformAccount::CommissionExpense),
        available.clone(),
        Money::from_fen(near_max),
    )
    .unwrap();
    app.store.transfer(&transfer, Utc::now()).await.unwrap();
    let before = app
        .store
        .account_balance(&available)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, Money::from_fen(i64::MAX - 100));
    let transfers_before = app.store.verify_ledger().await.unwrap().transfers;
    let audited_before = adjustments_audited(&app).await;

    // 1.01 more would overflow: a clean 422, and nothing changes.
    let error = error_of(adjust(&app, "overflow", "1.01").await, 422).await;
    assert_eq!(error["code"], "balance_overflow");
    assert_eq!(error["field"], "amount");
    assert_eq!(
        app.store.account_balance(&available).await.unwrap(),
        Some(before)
    );
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transfers, transfers_before);
    assert_eq!(adjustments_audited(&app).await, audited_before);
    // The same key may be used again: nothing of the refused one was kept.
    let error = error_of(adjust(&app, "overflow", "1.01").await, 422).await;
    assert_eq!(error["code"], "balance_overflow");

    // Exactly up to the largest balance is still fine.
    assert_eq!(adjust(&app, "to-the-top", "1.00").await.status(), 201);
    let balance: Value = app
        .get("/v1/distributors/rich/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["available"], "92233720368547758.07");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
