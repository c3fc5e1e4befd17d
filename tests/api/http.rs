//! Cross-cutting HTTP behaviour: auth, health, OpenAPI, limits, unknown routes.

use crate::helpers::{Backend, error_of, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    requests_without_a_valid_token_get_401,
    health_and_readiness_answer,
    the_openapi_document_describes_the_routes,
    an_oversized_body_gets_413,
);

async fn requests_without_a_valid_token_get_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let none = app
        .client
        .get(app.url("/v1/distributors"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(none, 401).await["code"], "unauthenticated");
    let bad = app.get("/v1/distributors", "fenrun_0000").await;
    assert_eq!(error_of(bad, 401).await["code"], "invalid_token");
    let not_bearer = app
        .client
        .get(app.url("/v1/distributors"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    error_of(not_bearer, 401).await;
    let unknown = app.get("/v1/nothing-here", &app.admin).await;
    assert_eq!(error_of(unknown, 404).await["code"], "not_found");
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let health: serde_json::Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

async fn the_openapi_document_describes_the_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/distributors",
        "/v1/distributors/{id}",
        "/v1/distributors/{id}/balance",
        "/v1/admin/plans",
        "/healthz",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn an_oversized_body_gets_413(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.request_body_limit_bytes = 2048).await;
    let big = format!("{{\"id\": \"a\", \"name\": \"{}\"}}", "x".repeat(4096));
    let error = error_of(
        app.post_raw("/v1/distributors", &app.ingest, &big).await,
        413,
    )
    .await;
    assert_eq!(error["code"], "body_too_large");
}
