//! Abuse limits (issue 17 item 6): per-client rate limits on the public
//! routes with 429 and `Retry-After`; header and body read timeouts so slow
//! clients cannot hold connections; the certificate upload's own body limit,
//! answered with its own 413.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, error_of, spawn_app_with};

/// The `Retry-After` of a 429, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn post_login(app: &TestApp, token: &str) -> reqwest::Response {
    crate::tax_page::post_login(app, token, "/tax", None).await
}

#[tokio::test]
async fn logins_past_the_burst_get_429_with_retry_after_and_a_page() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.guard.login_rate_per_minute = 2;
        settings.guard.login_rate_burst = 3;
    })
    .await;
    let wrong = format!("fenrun_{}", "e".repeat(64));
    for _ in 0..2 {
        assert_eq!(
            post_login(&app, &wrong).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        post_login(&app, &app.accountant).await.status(),
        StatusCode::SEE_OTHER
    );
    // The budget is spent, for a right token as for a wrong one.
    let response = post_login(&app, &app.accountant).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&response);
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.headers().get("set-cookie").is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("Too many sign-in attempts"), "{page}");
    // Failed sign-ins are counted by reason; the API is not limited by the login's budget.
    let metrics = app.get("/metrics", &app.admin).await.text().await.unwrap();
    assert!(metrics.contains(r#"fenrun_auth_failures_total{surface="login",reason="unknown"}"#));
    assert!(metrics.contains(r#"fenrun_rate_limited_total{limit="login"}"#));
    assert_eq!(
        app.get("/v1/tax/certificates?month=2026-11", &app.accountant)
            .await
            .status(),
        StatusCode::OK
    );
}

async fn post_verify(app: &TestApp, pdf: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "pdf",
        reqwest::multipart::Part::bytes(pdf).file_name("c.pdf"),
    );
    app.client
        .post(app.url("/v1/tax/certificates/verify"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_public_verify_endpoint_is_rate_limited_per_client_in_the_json_shape() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.guard.verify_rate_per_minute = 1;
        settings.guard.verify_rate_burst = 2;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            post_verify(&app, b"%PDF-1.7 not ours".to_vec())
                .await
                .status(),
            StatusCode::OK
        );
    }
    let response = post_verify(&app, b"%PDF-1.7 not ours".to_vec()).await;
    let wait = retry_after(&response);
    assert!((30..=60).contains(&wait), "{wait}");
    let error = error_of(response, 429).await;
    assert_eq!(error["code"], "rate_limited");
    // Other routes are not limited by it.
    assert_eq!(
        app.get("/v1/tax/keys", &app.admin).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_tokens_are_counted_by_reason() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let unknown = format!("fenrun_{}", "d".repeat(64));
    assert_eq!(
        app.get("/v1/ops/queues", &unknown).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/ops/queues", "not-a-token").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let metrics = app.get("/metrics", &app.admin).await.text().await.unwrap();
    for reason in ["unknown", "malformed"] {
        let series = format!(r#"fenrun_auth_failures_total{{surface="api",reason="{reason}"}}"#);
        assert!(metrics.contains(&series), "{series} missing");
    }
}

/// Reads until the server closes the connection (or `limit` passes, which
/// fails the test): what it sent, and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "the connection was still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_sends_half_a_header_is_disconnected_within_the_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.guard.header_read_timeout_ms = 500;
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fenrun\r\nX-Slow: ")
        .await
        .unwrap();
    let (received, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!received.contains("200 OK"), "{received}");
    // An idle keep-alive connection is closed after as long.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fenrun\r\n\r\n")
        .await
        .unwrap();
    let (received, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_and_is_disconnected() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.guard.body_read_timeout_ms = 600;
    })
    .await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/distributors HTTP/1.1\r\nHost: fenrun\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n",
        app.ingest
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // One byte every 200 ms: never idle for long, never done in time.
    let trickle = async {
        for byte in br#"{"id": "slow", "name": "#.iter() {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), trickle)
        .await
        .ok();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        received.contains(r#""code":"request_timeout""#),
        "{received}"
    );
    // Nothing was created.
    let response = app.get("/v1/distributors/slow", &app.admin).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A multipart body of one `pdf` part of `size` bytes.
fn multipart_pdf(size: usize) -> (String, Vec<u8>) {
    let boundary = "fenrun-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"pdf\"; filename=\"c.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(b'x', size));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn the_certificate_upload_has_its_own_limit_and_413s_in_the_json_shape() {
    const MIB: usize = 1024 * 1024;
    // The default body limit of every other route (1 MiB) stays in force.
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let big_json = format!(r#"{{"id": "big", "name": "{}"}}"#, "x".repeat(MIB + 1));
    let error = error_of(
        app.post_raw("/v1/distributors", &app.ingest, &big_json)
            .await,
        413,
    )
    .await;
    assert_eq!(error["code"], "body_too_large");

    // A PDF of 1.5 MiB is judged (not ours), not cut off at the global limit.
    let (content_type, body) = multipart_pdf(MIB + MIB / 2);
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let verdict: serde_json::Value = response.json().await.unwrap();
    assert_eq!(verdict["genuine"], false);
    // Just over 2 MiB: the handler's own 413.
    let (content_type, body) = multipart_pdf(2 * MIB + 1);
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let error = error_of(response, 413).await;
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("pdf_too_large"), Some("pdf"))
    );

    // Far over: cut off at the route's limit, still 413 in the JSON shape.
    // Sent by hand so that the client stops sending just past the limit and
    // reads the answer (a client still sending could meet a reset instead).
    let (content_type, body) = multipart_pdf(4 * MIB);
    let sent = fenrun::api::certificates::VERIFY_BODY_LIMIT_BYTES + 64 * 1024;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/tax/certificates/verify HTTP/1.1\r\nHost: fenrun\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 413"), "{received}");
    assert!(
        received.contains(r#""code":"body_too_large""#),
        "{received}"
    );
}
