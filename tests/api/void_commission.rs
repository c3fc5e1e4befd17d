//! Ops voiding an order's commission: inside the hold the pending
//! commission is reversed and the release pays nothing; after the release it
//! is clawed back from available; lines end at 0 with a `void` event;
//! voiding twice answers the same and moves nothing; a later refund moves no
//! commission; bad requests change nothing; the ledger stays clean. Amounts
//! are computed here from the default plan's 10% / 5%.

use serde_json::{Value, json};

use crate::grade_review::{
    advance_past, audit_actions, balance, ingest, percent_of,
    refuses_without_reason_unknown_or_ingest, release_at,
};
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    voiding_in_the_hold_reverses_pending_and_the_release_pays_nothing,
    voiding_after_the_release_claws_back_and_a_later_refund_moves_nothing,
    a_void_without_a_reason_or_of_an_unknown_order_is_refused_and_changes_nothing,
);

async fn void(app: &TestApp, order_id: &str, reason: &str) -> Value {
    let response = app
        .post_json(
            &format!("/v1/orders/{order_id}/void-commission"),
            &app.ops,
            &json!({ "reason": reason }),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn amounts(view: &Value) -> Vec<(String, String, String)> {
    view["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["beneficiary_id"].as_str().unwrap().to_owned(),
                line["amount"].as_str().unwrap().to_owned(),
                line["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn setup(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("r", None, None).await;
    app.create_distributor("s", Some("r"), None).await;
    app
}

async fn voiding_in_the_hold_reverses_pending_and_the_release_pays_nothing(backend: Backend) {
    let app = setup(backend).await;
    let order = ingest(&app, "o-hold", "s", "200.00").await;
    let (s_fen, r_fen) = (percent_of("200.00", 10), percent_of("200.00", 5));
    assert_eq!(balance(&app, "s").await["pending"], s_fen);
    assert_eq!(balance(&app, "r").await["pending"], r_fen);

    let voided = void(&app, "o-hold", "self-referral ring").await;
    assert_eq!(voided["reversed"], "30.00", "20.00 + 10.00: {voided}");
    assert_eq!(voided["clawed_back"], false);
    assert_eq!(voided["void_reason"], "self-referral ring");
    assert_eq!(voided["state"], "holding");
    for (_, amount, state) in amounts(&voided) {
        assert_eq!((amount.as_str(), state.as_str()), ("0.00", "cancelled"));
    }
    let event = voided["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (event["step"].as_str(), event["outcome"].as_str()),
        (Some("void"), Some("reversed"))
    );
    let detail = event["detail"].as_str().unwrap();
    assert!(
        detail.contains("self-referral ring") && detail.contains("30.00"),
        "{detail}"
    );
    assert_eq!(balance(&app, "s").await["pending"], "0.00");
    assert_eq!(balance(&app, "r").await["pending"], "0.00");

    // Twice: the same answer (the first reason), nothing moved again.
    let transfers = app.store.verify_ledger().await.unwrap().transfers;
    let again = void(&app, "o-hold", "another reason").await;
    assert_eq!(again, voided);
    assert_eq!(
        app.store.verify_ledger().await.unwrap().transfers,
        transfers
    );
    assert_eq!(
        audit_actions(&app, "order:o-hold").await,
        ["order.void_commission"]
    );

    // The release pays nothing.
    advance_past(&app, release_at(&order)).await;
    let released: Value = app
        .get("/v1/orders/o-hold", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(released["state"], "released", "{released}");
    for id in ["s", "r"] {
        let balance = balance(&app, id).await;
        assert_eq!(
            (balance["pending"].as_str(), balance["available"].as_str()),
            (Some("0.00"), Some("0.00")),
            "{id}"
        );
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn voiding_after_the_release_claws_back_and_a_later_refund_moves_nothing(backend: Backend) {
    let app = setup(backend).await;
    let order = ingest(&app, "o-rel", "s", "300.00").await;
    // A second order keeps paying: the void touches only its own order.
    let keep = ingest(&app, "o-keep", "s", "100.00").await;
    advance_past(&app, release_at(&order).max(release_at(&keep))).await;
    let s_total = 30_00 + 10_00;
    assert_eq!(
        balance(&app, "s").await["available"],
        crate::grade_review::yuan(s_total)
    );
    assert_eq!(
        balance(&app, "r").await["available"],
        crate::grade_review::yuan(15_00 + 5_00)
    );

    let voided = void(&app, "o-rel", "fake buyer").await;
    assert_eq!(voided["reversed"], "45.00");
    assert_eq!(voided["clawed_back"], true);
    let event = voided["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(event["outcome"], "clawed_back");
    assert_eq!(
        balance(&app, "s").await["available"],
        percent_of("100.00", 10)
    );
    assert_eq!(
        balance(&app, "r").await["available"],
        percent_of("100.00", 5)
    );

    // A voided order sold nothing that counts: lifetime settled sales (the
    // grade's and the month close's measure) are the other order's alone.
    let today = chrono::Utc::now().date_naive();
    let earnings: Value = app
        .get(
            &format!(
                "/v1/distributors/s/earnings?from={}&to={}&group=month",
                today - chrono::Duration::days(31),
                today + chrono::Duration::days(62)
            ),
            &app.ops,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        earnings["grade"]["own_settled_sales_lifetime"], "100.00",
        "{earnings}"
    );
    let team_sales: Vec<&str> = earnings["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|period| period["team_settled_sales"].as_str().unwrap())
        .filter(|sales| *sales != "0.00")
        .collect();
    assert_eq!(team_sales, ["100.00"], "{earnings}");

    // A refund after the void moves no commission.
    let transfers = app.store.verify_ledger().await.unwrap().transfers;
    let refund = app
        .post_json(
            "/v1/orders/o-rel/refunds",
            &app.ingest,
            &json!({"refund_id": "rf-1", "amount": "100.00"}),
        )
        .await;
    assert_eq!(refund.status(), 200);
    let refunded: Value = refund.json().await.unwrap();
    assert_eq!(refunded["refunded"], "100.00");
    for (_, amount, _) in amounts(&refunded) {
        assert_eq!(amount, "0.00");
    }
    assert_eq!(
        app.store.verify_ledger().await.unwrap().transfers,
        transfers
    );
    assert_eq!(
        balance(&app, "s").await["available"],
        percent_of("100.00", 10)
    );
    assert_eq!(
        balance(&app, "r").await["available"],
        percent_of("100.00", 5)
    );

    // Twice: same figures, nothing moved.
    let again = void(&app, "o-rel", "fake buyer").await;
    assert_eq!(
        (again["reversed"].as_str(), again["clawed_back"].as_bool()),
        (Some("45.00"), Some(true))
    );
    assert_eq!(
        app.store.verify_ledger().await.unwrap().transfers,
        transfers
    );

    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn a_void_without_a_reason_or_of_an_unknown_order_is_refused_and_changes_nothing(
    backend: Backend,
) {
    let app = setup(backend).await;
    ingest(&app, "o-1", "s", "100.00").await;
    let path = "/v1/orders/o-1/void-commission";
    refuses_without_reason_unknown_or_ingest(&app, path, "/v1/orders/nope/void-commission").await;
    assert_eq!(
        balance(&app, "s").await["pending"],
        percent_of("100.00", 10)
    );
    assert!(audit_actions(&app, "order:o-1").await.is_empty());
    // Admin may void too.
    let response = app
        .post_json(path, &app.admin, &json!({"reason": "admin check"}))
        .await;
    assert_eq!(response.status(), 200);
}
