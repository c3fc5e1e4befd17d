//! `/v1/distributors`: the referral tree, idempotent creation, access rules.

use crate::helpers::{Backend, error_of, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_distributor_gets_an_upline_of_up_to_three_ids,
    replaying_the_same_creation_answers_the_same,
    reusing_an_id_with_a_different_body_is_a_conflict,
    an_unknown_referrer_is_refused_and_nothing_is_created,
    an_unknown_grade_is_refused,
    a_distributor_token_reads_itself_but_gets_403_for_another,
    a_new_distributor_has_zero_balances,
    distributors_are_listed_in_pages,
    malformed_requests_get_400_with_the_field,
);

async fn a_distributor_gets_an_upline_of_up_to_three_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, Some("partner")).await;
    app.create_distributor("b", Some("a"), Some("gold")).await;
    app.create_distributor("c", Some("b"), None).await;
    app.create_distributor("d", Some("c"), None).await;
    let e = app.create_distributor("e", Some("d"), None).await;
    assert_eq!(e["upline"], serde_json::json!(["d", "c", "b"]));
    assert_eq!(e["referrer_id"], "d");
    assert_eq!(e["grade"], "regular", "the plan's default grade");
    assert_eq!(e["status"], "active");
    let b = app.get("/v1/distributors/b", &app.ops).await;
    assert_eq!(b.status(), 200);
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(b["upline"], serde_json::json!(["a"]));
    assert_eq!(b["grade"], "gold");
    let cleared =
        serde_json::json!({"id": "f", "name": "f", "referrer_id": "a", "status": "cleared"});
    let cleared: serde_json::Value = app
        .post_json("/v1/distributors", &app.ingest, &cleared)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["status"], "cleared");
}

async fn replaying_the_same_creation_answers_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_distributor("a", None, None).await;
    let second = app.create_distributor("a", None, None).await;
    assert_eq!(first, second);
}

async fn reusing_an_id_with_a_different_body_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    let body = serde_json::json!({"id": "a", "name": "someone else"});
    let error = error_of(
        app.post_json("/v1/distributors", &app.ingest, &body).await,
        409,
    )
    .await;
    assert_eq!(error["code"], "distributor_exists");
    let kept: serde_json::Value = app
        .get("/v1/distributors/a", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kept["name"], "name of a", "the first body stands");
}

async fn an_unknown_referrer_is_refused_and_nothing_is_created(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::json!({"id": "x", "name": "x", "referrer_id": "ghost"});
    let error = error_of(
        app.post_json("/v1/distributors", &app.ingest, &body).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "unknown_referrer");
    assert_eq!(error["field"], "referrer_id");
    let missing = app.get("/v1/distributors/x", &app.admin).await;
    assert_eq!(missing.status(), 404);
    let own = serde_json::json!({"id": "y", "name": "y", "referrer_id": "y"});
    let error = error_of(
        app.post_json("/v1/distributors", &app.ingest, &own).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "invalid_referrer");
}

async fn an_unknown_grade_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::json!({"id": "x", "name": "x", "grade": "diamond"});
    let error = error_of(
        app.post_json("/v1/distributors", &app.ingest, &body).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "unknown_grade");
    assert_eq!(error["field"], "grade");
}

async fn a_distributor_token_reads_itself_but_gets_403_for_another(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("alice", None, None).await;
    app.create_distributor("bob", None, None).await;
    let alice = app.distributor_token("alice").await;
    assert_eq!(
        app.get("/v1/distributors/alice", &alice).await.status(),
        200
    );
    assert_eq!(
        app.get("/v1/distributors/alice/balance", &alice)
            .await
            .status(),
        200
    );
    let error = error_of(app.get("/v1/distributors/bob", &alice).await, 403).await;
    assert_eq!(error["code"], "forbidden");
    error_of(app.get("/v1/distributors/bob/balance", &alice).await, 403).await;
    // Nor can it list, or create.
    error_of(app.get("/v1/distributors", &alice).await, 403).await;
    let body = serde_json::json!({"id": "mallory", "name": "m"});
    error_of(app.post_json("/v1/distributors", &alice, &body).await, 403).await;
    // Another role without the right: the accountant.
    error_of(app.get("/v1/distributors/bob", &app.accountant).await, 403).await;
}

async fn a_new_distributor_has_zero_balances(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    let balance: serde_json::Value = app
        .get("/v1/distributors/a/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        balance,
        serde_json::json!({
            "distributor_id": "a", "pending": "0.00", "available": "0.00",
            "withdrawing": "0.00", "withdrawn_total": "0.00", "debt": "0.00"
        })
    );
    error_of(
        app.get("/v1/distributors/nobody/balance", &app.ops).await,
        404,
    )
    .await;
}

async fn distributors_are_listed_in_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in ["d1", "d2", "d3", "d4", "d5"] {
        app.create_distributor(id, None, None).await;
    }
    let first: serde_json::Value = app
        .get("/v1/distributors?limit=2", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["next_after"], "d2");
    let rest: serde_json::Value = app
        .get("/v1/distributors?limit=10&after=d2", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d3", "d4", "d5"]);
    assert!(rest["next_after"].is_null());
    error_of(app.get("/v1/distributors?limit=0", &app.ops).await, 400).await;
}

async fn malformed_requests_get_400_with_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let error = error_of(
        app.post_raw("/v1/distributors", &app.ingest, "{\"id\": \"a\",")
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "malformed_json");
    let error = error_of(
        app.post_raw(
            "/v1/distributors",
            &app.ingest,
            "{\"id\": \"a b\", \"name\": \"x\"}",
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "invalid_field");
    assert_eq!(error["field"], "id");
    let error = error_of(
        app.post_raw("/v1/distributors", &app.ingest, "{\"id\": \"a\"}")
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "missing_field");
    let error = error_of(
        app.post_raw(
            "/v1/distributors",
            &app.ingest,
            "{\"id\": \"a\", \"name\": \"x\", \"level\": 4}",
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "unknown_field");
    let error = error_of(
        app.post_raw(
            "/v1/distributors",
            &app.ingest,
            "{\"id\": \"a\", \"name\": \"\"}",
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["field"], "name");
    let listed: serde_json::Value = app
        .get("/v1/distributors", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"],
        serde_json::json!([]),
        "nothing was created"
    );
}
