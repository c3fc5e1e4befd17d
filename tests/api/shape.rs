//! Answers keep their shape: a request the API cannot parse (query, path,
//! body, content type, size, route, method) gets the JSON error shape with a
//! stable code, never axum's plain text; authorization comes before the
//! body is read; and every answer — success, error, download — carries
//! `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.

use reqwest::Response;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::spawn;

on_both_backends!(
    query_and_path_errors_answer_the_json_error_shape,
    body_errors_answer_the_json_error_shape,
    unknown_routes_and_methods_answer_the_json_error_shape,
    authorization_is_checked_before_the_request_is_parsed,
    every_answer_and_download_is_marked_no_store_and_nosniff,
);

/// The `error` object of an answer, after checking its status and that it
/// is the JSON error shape with a code and a message.
async fn refusal(response: Response, status: u16) -> Value {
    let url = response.url().clone();
    assert_eq!(response.status().as_u16(), status, "{url}");
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/json", "{url}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{url}: not JSON ({error}): {text}"));
    let error = body["error"].clone();
    assert!(error["code"].is_string(), "{url}: {text}");
    assert!(error["message"].is_string(), "{url}: {text}");
    error
}

fn marked_private(response: &Response) -> bool {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    header("cache-control").as_deref() == Some("no-store")
        && header("x-content-type-options").as_deref() == Some("nosniff")
}

async fn query_and_path_errors_answer_the_json_error_shape(backend: Backend) {
    let app = spawn_app(backend).await;

    let error = refusal(app.get("/v1/withdrawals?state=bogus", &app.ops).await, 400).await;
    assert_eq!(error["code"], "invalid_field");
    assert_eq!(error["field"], "state");
    let error = refusal(app.get("/v1/withdrawals", &app.ops).await, 400).await;
    assert_eq!(error["code"], "missing_field");
    assert_eq!(error["field"], "state");
    let error = refusal(app.get("/v1/distributors?limit=ten", &app.ops).await, 400).await;
    assert_eq!(error["code"], "invalid_field");
    assert_eq!(error["field"], "limit");
    let error = refusal(
        app.get(
            "/v1/tax/declarations/2026-11.csv?as_prepared=maybe",
            &app.accountant,
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["field"], "as_prepared");

    // A path parameter that is not UTF-8 once percent-decoded.
    let error = refusal(app.get("/v1/orders/%FF", &app.ingest).await, 400).await;
    assert_eq!(error["code"], "invalid_path");
    assert_eq!(error["field"], "id");
    let error = refusal(app.get("/v1/distributors/%C0", &app.ops).await, 400).await;
    assert_eq!(error["code"], "invalid_path");
}

async fn body_errors_answer_the_json_error_shape(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.request_body_limit_bytes = 4096;
    })
    .await;
    app.create_distributor("carol", None, None).await;
    let carol = app.distributor_token("carol").await;
    let withdrawal = json!({"distributor_id": "carol", "amount": "10.00", "payout_account_id": "pa_x", "speed": "standard"});

    // POST /v1/withdrawals wants application/json like its siblings.
    let response = app
        .client
        .post(app.url("/v1/withdrawals"))
        .bearer_auth(&carol)
        .header("Idempotency-Key", "shape-1")
        .header("content-type", "text/plain")
        .body(withdrawal.to_string())
        .send()
        .await
        .unwrap();
    let error = refusal(response, 415).await;
    assert_eq!(error["code"], "unsupported_media_type");
    assert_eq!(error["field"], "Content-Type");
    // So does an order, with no Content-Type at all.
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.ingest)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response, 415).await["code"],
        "unsupported_media_type"
    );
    // Charset and case do not matter.
    let response = app
        .client
        .post(app.url("/v1/distributors"))
        .bearer_auth(&app.ingest)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(json!({"id": "dave", "name": "Dave"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // Malformed JSON on a route that kept the raw bytes.
    let response = app
        .client
        .post(app.url("/v1/withdrawals"))
        .bearer_auth(&carol)
        .header("Idempotency-Key", "shape-2")
        .header("content-type", "application/json")
        .body("{\"distributor_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response, 400).await["code"], "malformed_json");

    // An approval's body is optional, but a body there is JSON.
    let response = app
        .client
        .post(app.url("/v1/withdrawals/wd_none/approve"))
        .bearer_auth(&app.ops)
        .header("content-type", "text/plain")
        .body("looks fine")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response, 415).await["code"],
        "unsupported_media_type"
    );
    let response = app
        .client
        .post(app.url("/v1/withdrawals/wd_none/approve"))
        .bearer_auth(&app.ops)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response, 404).await["code"], "not_found");

    // An upload that is not multipart, and one without a boundary.
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .json(&json!({"pdf": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response, 415).await["code"],
        "unsupported_media_type"
    );
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .header("content-type", "multipart/form-data")
        .body("--x\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response, 400).await["code"], "malformed_upload");
    // The gateway's callback takes any bytes, within the limit.
    let response = app
        .client
        .post(app.url("/v1/gateways/wechat/notify"))
        .header("content-type", "application/json")
        .body("x".repeat(8192))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response, 413).await["code"], "body_too_large");
}

async fn unknown_routes_and_methods_answer_the_json_error_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let error = refusal(app.get("/v1/nothing-here", &app.admin).await, 404).await;
    assert_eq!(error["code"], "not_found");
    let response = app
        .client
        .delete(app.url("/v1/distributors"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get(ALLOW)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(refusal(response, 405).await["code"], "method_not_allowed");
    let response = app
        .client
        .put(app.url("/v1/withdrawals/quote"))
        .send()
        .await
        .unwrap();
    refusal(response, 405).await;
}

async fn authorization_is_checked_before_the_request_is_parsed(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.request_body_limit_bytes = 4096;
    })
    .await;
    app.create_distributor("carol", None, None).await;
    app.create_distributor("dave", None, None).await;
    let dave = app.distributor_token("dave").await;
    let send =
        |method: reqwest::Method, path: &str, token: &str, content_type: &str, body: String| {
            app.client
                .request(method, app.url(path))
                .bearer_auth(token)
                .header("content-type", content_type)
                .header("Idempotency-Key", "auth-first")
                .body(body)
                .send()
        };
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let json = "application/json";
    let bad = || "{".to_owned();
    let huge = || format!("{{\"name\": \"{}\"}}", "x".repeat(8192));

    // A bad token with a bad body: 401, and the body's errors stay unknown.
    for (path, body) in [
        ("/v1/distributors", bad()),
        ("/v1/orders", bad()),
        ("/v1/withdrawals/quote", bad()),
        ("/v1/withdrawals", huge()),
    ] {
        let response = send(post.clone(), path, "fr_not_a_real_token", json, body)
            .await
            .unwrap();
        assert_eq!(
            refusal(response, 401).await["code"],
            "invalid_token",
            "{path}"
        );
    }
    // A token of the wrong role with a bad body, a wrong content type or
    // one over the limit: 403.
    let wrong_role = [
        (
            post.clone(),
            "/v1/distributors",
            app.ops.clone(),
            json,
            bad(),
        ),
        (
            post.clone(),
            "/v1/withdrawals/quote",
            app.admin.clone(),
            json,
            bad(),
        ),
        (
            post.clone(),
            "/v1/withdrawals",
            app.ops.clone(),
            "text/plain",
            bad(),
        ),
        (
            post.clone(),
            "/v1/admin/plans",
            app.accountant.clone(),
            json,
            huge(),
        ),
        (
            post.clone(),
            "/v1/withdrawals/wd_x/reject",
            app.ingest.clone(),
            json,
            bad(),
        ),
        (
            post.clone(),
            "/v1/tax/certificates/FR1/corrections",
            app.ops.clone(),
            json,
            bad(),
        ),
        (
            put.clone(),
            "/v1/distributors/carol/identity",
            app.ops.clone(),
            json,
            bad(),
        ),
        // Another distributor's identity: a distributor may send its own,
        // not carol's.
        (
            put.clone(),
            "/v1/distributors/carol/identity",
            dave.clone(),
            json,
            bad(),
        ),
    ];
    for (method, path, token, content_type, body) in wrong_role {
        let response = send(method, path, &token, content_type, body)
            .await
            .unwrap();
        assert_eq!(refusal(response, 403).await["code"], "forbidden", "{path}");
    }
    // The query string, too, is read only for a caller who may ask.
    let response = app.get("/v1/withdrawals?state=bogus", &app.ingest).await;
    assert_eq!(refusal(response, 403).await["code"], "forbidden");
    let response = app
        .get("/v1/withdrawals?state=bogus", "fr_not_a_real_token")
        .await;
    assert_eq!(refusal(response, 401).await["code"], "invalid_token");
    // A caller who may: the body's own error.
    let response = send(post.clone(), "/v1/distributors", &app.ingest, json, bad())
        .await
        .unwrap();
    assert_eq!(refusal(response, 400).await["code"], "malformed_json");
}

async fn every_answer_and_download_is_marked_no_store_and_nosniff(backend: Backend) {
    let app: TestApp = spawn(backend).await;
    let (carol, withdrawal, number) = certified_payout(&app, "carol").await;
    let month = withdrawal["tax_month"].as_str().unwrap().to_owned();

    let answers = [
        // Successes.
        app.get("/v1/distributors/carol", &app.ops).await,
        app.get("/v1/distributors/carol/balance", &carol).await,
        // Errors: refused, unknown route, wrong method, unparsable.
        app.get("/v1/distributors", "fr_not_a_real_token").await,
        app.get("/v1/audit", &app.ops).await,
        app.get("/v1/nothing-here", &app.admin).await,
        app.client
            .delete(app.url("/v1/orders"))
            .send()
            .await
            .unwrap(),
        app.get("/v1/withdrawals?state=bogus", &app.ops).await,
        // Downloads with unmasked ID numbers.
        app.get(&format!("/v1/tax/certificates/{number}.pdf"), &carol)
            .await,
        app.get(
            &format!("/v1/tax/certificates/{number}.json"),
            &app.accountant,
        )
        .await,
        app.get(
            &format!("/v1/tax/certificates/{month}.zip"),
            &app.accountant,
        )
        .await,
        app.get(
            &format!("/v1/tax/declarations/{month}.csv"),
            &app.accountant,
        )
        .await,
        app.get(&format!("/v1/tax/declarations/{month}.xlsx"), &app.admin)
            .await,
    ];
    let mut unmarked = Vec::new();
    for response in &answers {
        if !marked_private(response) {
            unmarked.push(format!(
                "{} {}: {:?}",
                response.status(),
                response.url().path(),
                response.headers()
            ));
        }
    }
    let statuses: Vec<u16> = answers
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 401, 403, 404, 405, 400, 200, 200, 200, 200, 200]
    );
    assert!(unmarked.is_empty(), "not marked:\n{}", unmarked.join("\n"));
}
