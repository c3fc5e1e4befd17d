//! `/v1/admin`: commission plans and manual adjustments.

use crate::helpers::{Backend, error_of, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_plan_with_a_fourth_level_is_refused_with_its_line,
    a_valid_plan_becomes_the_next_version,
    a_plan_cannot_take_effect_in_the_past,
    bad_amounts_are_refused_and_change_nothing,
    an_adjustment_is_idempotent_by_its_key,
    a_debit_beyond_the_available_balance_is_refused,
);

const FOUR_LEVEL_PLAN: &str = "name = \"greedy\"\ndefault_grade = \"regular\"\n\n[grades.regular]\ndisplay_name = \"普通\"\nlevels = [\"10%\", \"5%\", \"2%\", \"1%\"]\n";

const VALID_PLAN: &str = "name = \"spring\"\ndefault_grade = \"regular\"\norder_cap = \"25%\"\n\n[grades.regular]\ndisplay_name = \"普通\"\nlevels = [\"8%\", \"4%\", \"1%\"]\n";

async fn a_plan_with_a_fourth_level_is_refused_with_its_line(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::json!({"toml": FOUR_LEVEL_PLAN, "file_name": "greedy.toml"});
    let error = error_of(
        app.post_json("/v1/admin/plans", &app.admin, &body).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "invalid_plan");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("greedy.toml:6"), "{message}");
    assert!(message.contains("3"), "{message}");
    let plans: serde_json::Value = app
        .get("/v1/admin/plans", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        plans.as_array().unwrap().len(),
        1,
        "only the shipped default"
    );
}

async fn a_valid_plan_becomes_the_next_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::json!({"toml": VALID_PLAN});
    let response = app.post_json("/v1/admin/plans", &app.admin, &body).await;
    assert_eq!(response.status(), 201);
    let plan: serde_json::Value = response.json().await.unwrap();
    assert_eq!(plan["version"], 2);
    assert_eq!(plan["name"], "spring");
    let plans: serde_json::Value = app
        .get("/v1/admin/plans", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plans[0]["applied_by"], "install");
    // A grade only the old plan had is no longer accepted for new distributors.
    let gold = serde_json::json!({"id": "g", "name": "g", "grade": "gold"});
    error_of(
        app.post_json("/v1/distributors", &app.ingest, &gold).await,
        422,
    )
    .await;
    // Only admins manage plans.
    error_of(app.post_json("/v1/admin/plans", &app.ops, &body).await, 403).await;
    error_of(app.get("/v1/admin/plans", &app.ingest).await, 403).await;
}

async fn a_plan_cannot_take_effect_in_the_past(backend: Backend) {
    let app = spawn_app(backend).await;
    let text = format!("effective_from = \"2020-01-01T00:00:00+08:00\"\n{VALID_PLAN}");
    let error = error_of(
        app.post_json(
            "/v1/admin/plans",
            &app.admin,
            &serde_json::json!({"toml": text}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error["code"], "plan_effective_in_past");
}

async fn adjust(
    app: &crate::helpers::TestApp,
    key: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/admin/adjustments"))
        .bearer_auth(&app.admin)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn balance_of(app: &crate::helpers::TestApp, id: &str) -> serde_json::Value {
    app.get(&format!("/v1/distributors/{id}/balance"), &app.ops)
        .await
        .json()
        .await
        .unwrap()
}

async fn bad_amounts_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    for (amount, code) in [
        (serde_json::json!("1.234"), "invalid_amount"),
        (serde_json::json!("-5.00"), "invalid_amount"),
        (serde_json::json!("abc"), "invalid_amount"),
        (serde_json::json!("0.00"), "invalid_amount"),
        (serde_json::json!(12.5), "invalid_field"),
    ] {
        let body = serde_json::json!({"distributor_id": "a", "amount": amount, "direction": "credit", "reason": "test"});
        let error = error_of(adjust(&app, &format!("k-{amount}"), body).await, 400).await;
        assert_eq!(error["code"], code, "{amount}");
        assert_eq!(error["field"], "amount", "{amount}");
    }
    let no_key = app
        .post_json("/v1/admin/adjustments", &app.admin, &serde_json::json!({"distributor_id": "a", "amount": "1.00", "direction": "credit", "reason": "x"}))
        .await;
    assert_eq!(
        error_of(no_key, 400).await["code"],
        "missing_idempotency_key"
    );
    let ghost = serde_json::json!({"distributor_id": "ghost", "amount": "1.00", "direction": "credit", "reason": "x"});
    assert_eq!(
        error_of(adjust(&app, "k-ghost", ghost).await, 422).await["code"],
        "unknown_distributor"
    );
    assert_eq!(balance_of(&app, "a").await["available"], "0.00");
    let report = app.store.verify_ledger().await.unwrap();
    assert_eq!(report.transfers, 0, "nothing was written");
}

async fn an_adjustment_is_idempotent_by_its_key(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    let body = serde_json::json!({"distributor_id": "a", "amount": "12.30", "direction": "credit", "reason": "goodwill"});
    let first: serde_json::Value = adjust(&app, "adj-1", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let again = adjust(&app, "adj-1", body).await;
    assert_eq!(again.status(), 201);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["applied_now"], true);
    assert_eq!(again["applied_now"], false);
    assert_eq!(first["transfer_id"], again["transfer_id"]);
    assert_eq!(balance_of(&app, "a").await["available"], "12.30");
    let other = serde_json::json!({"distributor_id": "a", "amount": "99.00", "direction": "credit", "reason": "goodwill"});
    let error = error_of(adjust(&app, "adj-1", other).await, 409).await;
    assert_eq!(error["code"], "idempotency_conflict");
    assert_eq!(balance_of(&app, "a").await["available"], "12.30");
}

async fn a_debit_beyond_the_available_balance_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    let credit = serde_json::json!({"distributor_id": "a", "amount": "5.00", "direction": "credit", "reason": "r"});
    assert_eq!(adjust(&app, "c1", credit).await.status(), 201);
    let debit = serde_json::json!({"distributor_id": "a", "amount": "5.01", "direction": "debit", "reason": "r"});
    let error = error_of(adjust(&app, "d1", debit).await, 422).await;
    assert_eq!(error["code"], "insufficient_balance");
    assert_eq!(balance_of(&app, "a").await["available"], "5.00");
    let debit = serde_json::json!({"distributor_id": "a", "amount": "5.00", "direction": "debit", "reason": "r"});
    assert_eq!(adjust(&app, "d2", debit).await.status(), 201);
    assert_eq!(balance_of(&app, "a").await["available"], "0.00");
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}
