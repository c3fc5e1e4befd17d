//! `POST /v1/orders/batch` (issue 19 item 1) on both backends: each order
//! of a batch answers as `POST /v1/orders` would answer it alone — accepted,
//! replayed, or refused with its own code and field — and only the refused
//! ones are left out; a batch of a thousand is held whole; the batch's own
//! limits are refused with nothing stored.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    each_order_of_a_batch_answers_as_it_would_alone,
    a_thousand_orders_in_one_batch_are_all_held,
    a_batch_over_its_limits_is_refused_whole,
);

fn order(id: &str, seller: &str, amount: &str) -> Value {
    let confirmed = Utc::now() - Duration::hours(1);
    json!({
        "order_id": id,
        "distributor_id": seller,
        "buyer_id": "buyer-1",
        "placed_at": (confirmed - Duration::days(1)).to_rfc3339(),
        "confirmed_at": confirmed.to_rfc3339(),
        "items": [{"sku": "S1", "category": "food", "amount": amount}],
    })
}

async fn batch(app: &TestApp, orders: Vec<Value>) -> reqwest::Response {
    app.post_json(
        "/v1/orders/batch",
        &app.ingest,
        &json!({ "orders": orders }),
    )
    .await
}

async fn stored(app: &TestApp, id: &str) -> bool {
    app.get(&format!("/v1/orders/{id}"), &app.ingest)
        .await
        .status()
        == 200
}

async fn each_order_of_a_batch_answers_as_it_would_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("seller1", None, None).await;
    let sent_alone = order("o-alone", "seller1", "80.00");
    let response = app.post_json("/v1/orders", &app.ingest, &sent_alone).await;
    assert_eq!(response.status(), 202);

    let mut changed = sent_alone.clone();
    changed["items"][0]["amount"] = json!("81.00");
    let mut no_buyer = order("o-no-buyer", "seller1", "10.00");
    no_buyer.as_object_mut().unwrap().remove("buyer_id");
    let first = order("o-1", "seller1", "100.00");
    let response = batch(
        &app,
        vec![
            first.clone(),
            sent_alone.clone(),
            order("o-bad-amount", "seller1", "1.234"),
            order("o-stranger", "nobody", "50.00"),
            changed,
            no_buyer,
            order("o-2", "seller1", "20.00"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let results = answer["results"].as_array().unwrap();
    // index, result, status, error code, error field
    type Summary<'a> = (u64, &'a str, u64, Option<&'a str>, Option<&'a str>);
    let summary: Vec<Summary> = results
        .iter()
        .map(|one| {
            (
                one["index"].as_u64().unwrap(),
                one["result"].as_str().unwrap(),
                one["status"].as_u64().unwrap(),
                one["error"]["code"].as_str(),
                one["error"]["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "accepted", 202, None, None),
            (1, "replayed", 202, None, None),
            (
                2,
                "refused",
                400,
                Some("invalid_amount"),
                Some("items[0].amount")
            ),
            (
                3,
                "refused",
                422,
                Some("unknown_distributor"),
                Some("distributor_id")
            ),
            (4, "refused", 409, Some("order_conflict"), None),
            (5, "refused", 400, Some("missing_field"), None),
            (6, "accepted", 202, None, None),
        ],
        "{answer:#}"
    );
    assert_eq!(
        (
            answer["accepted"].as_u64(),
            answer["replayed"].as_u64(),
            answer["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(4))
    );
    assert_eq!(results[0]["order"]["state"], "holding");
    assert!(
        results[0]["order"]["commissions"][0]["amount"]
            .as_str()
            .is_some()
    );

    // The refused orders are not stored; the single endpoint agrees on each.
    for (id, held) in [
        ("o-1", true),
        ("o-2", true),
        ("o-bad-amount", false),
        ("o-stranger", false),
    ] {
        assert_eq!(stored(&app, id).await, held, "{id}");
    }
    let alone = app
        .post_json(
            "/v1/orders",
            &app.ingest,
            &order("o-stranger", "nobody", "50.00"),
        )
        .await;
    assert_eq!(
        error_of(alone, 422).await["code"],
        results[3]["error"]["code"]
    );
    // The same batch again replays what was accepted.
    let again: Value = batch(&app, vec![first]).await.json().await.unwrap();
    assert_eq!(again["results"][0]["result"], "replayed");
}

async fn a_thousand_orders_in_one_batch_are_all_held(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("seller1", None, None).await;
    let orders: Vec<Value> = (0..1000)
        .map(|n| order(&format!("bulk-{n:04}"), "seller1", "10.00"))
        .collect();
    let response = batch(&app, orders).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 1000, "{}", answer["results"][0]);
    let results = answer["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(index, one)| one["index"] == index
                && one["order_id"] == format!("bulk-{index:04}"))
    );
    assert!(stored(&app, "bulk-0000").await && stored(&app, "bulk-0999").await);
    let balance: Value = app
        .get("/v1/distributors/seller1/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let single: Value = results[0]["order"]["commissions"][0]["amount"].clone();
    let per_order: rust_decimal::Decimal = single.as_str().unwrap().parse().unwrap();
    let pending: rust_decimal::Decimal = balance["pending"].as_str().unwrap().parse().unwrap();
    assert_eq!(pending, per_order * rust_decimal::Decimal::from(1000));
}

async fn a_batch_over_its_limits_is_refused_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("seller1", None, None).await;
    let error = error_of(batch(&app, Vec::new()).await, 422).await;
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("no_orders"), Some("orders"))
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|n| order(&format!("over-{n:04}"), "seller1", "1.00"))
        .collect();
    let error = error_of(batch(&app, too_many).await, 422).await;
    assert_eq!(error["code"], "too_many_orders");
    assert!(!stored(&app, "over-0000").await);
    let response = app
        .post_raw("/v1/orders/batch", &app.ingest, "{\"orders\": [")
        .await;
    assert_eq!(error_of(response, 400).await["code"], "malformed_json");
    let response = app
        .post_json(
            "/v1/orders/batch",
            &app.ingest,
            &json!({"orders": [], "extra": 1}),
        )
        .await;
    assert_eq!(error_of(response, 400).await["code"], "unknown_field");
    // An order whose id is "batch" is still read at its own address.
    let response = app.get("/v1/orders/batch", &app.ingest).await;
    assert_eq!(response.status(), 404);
}
