//! The accountant's HTML page `/tax`: signing in sets a strict session
//! cookie and refuses bad tokens and other sites' forms; only the accountant
//! (or admin) sees the month's totals, files and certificates; an uploaded
//! certificate is judged genuine, and with one byte changed it is not.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::withdrawals::spawn;

on_both_backends!(
    signing_in_sets_a_strict_cookie_and_refuses_bad_tokens_other_roles_and_other_sites,
    the_tax_page_shows_the_months_certificates_and_judges_an_uploaded_one,
);

/// A client that shows redirects instead of following them.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

pub async fn post_login(
    app: &TestApp,
    token: &str,
    next: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut builder = browser()
        .post(app.url("/login"))
        .form(&[("token", token), ("next", next)]);
    if let Some(origin) = origin {
        builder = builder.header(ORIGIN, origin);
    }
    builder.send().await.unwrap()
}

/// Signs in with `token` and returns the `Cookie` header a browser would send.
pub async fn sign_in(app: &TestApp, token: &str) -> String {
    let response = post_login(app, token, "/tax", None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = header(&response, SET_COOKIE);
    set_cookie.split(';').next().unwrap().to_owned()
}

pub async fn get_page(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    browser()
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn signing_in_sets_a_strict_cookie_and_refuses_bad_tokens_other_roles_and_other_sites(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app(backend).await;

    // Not signed in (or signed in with a token that is no longer valid): to the login form.
    let response = browser()
        .get(app.url("/tax?month=2026-11"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&response, LOCATION),
        "/login?next=%2Ftax%3Fmonth%3D2026-11"
    );
    let stale = format!("fenrun_session={}", "0".repeat(64));
    let response = get_page(&app, "/tax", &stale).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(header(&response, LOCATION).starts_with("/login?next="));

    let form = browser()
        .get(app.url("/login?next=/tax%3Fmonth%3D2026-11"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(header(&form, CONTENT_TYPE).starts_with("text/html"));
    let form = form.text().await.unwrap();
    assert!(form.contains(r#"type="password" name="token""#), "{form}");
    assert!(form.contains(r#"value="/tax?month=2026-11""#), "{form}");

    // A bad token: 401, the form again, no cookie, and the token not echoed.
    let bad = format!("fenrun_{}", "f".repeat(64));
    let response = post_login(&app, &bad, "/tax", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("not valid") && !page.contains(&bad), "{page}");

    // The accountant's token: a strict session cookie (not the token) and back to `next`.
    let response = post_login(&app, &app.accountant, "/tax?month=2026-11", None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&response, LOCATION), "/tax?month=2026-11");
    let cookie = header(&response, SET_COOKIE);
    assert!(cookie.starts_with("fenrun_session="), "{cookie}");
    assert!(!cookie.contains(&app.accountant), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let accountant = cookie.split(';').next().unwrap().to_owned();
    // `next` must be a path here, not another site.
    for elsewhere in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let response = post_login(&app, &app.accountant, elsewhere, None).await;
        assert_eq!(header(&response, LOCATION), "/tax", "{elsewhere}");
    }
    // Another site's form: 403, whatever the token.
    let response = post_login(&app, &app.accountant, "/tax", Some("https://evil.example")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    // Our own page's form, as a browser sends it, is fine.
    let host = app.address.trim_start_matches("http://");
    let response = post_login(
        &app,
        &app.accountant,
        "/tax",
        Some(&format!("http://{host}")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let response = get_page(&app, "/tax?month=2026-11", &accountant).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "cache-control".parse().unwrap()),
        "no-store"
    );
    // The cookie also fetches the files the page links to, under the page's paths …
    let csv = get_page(&app, "/tax/declarations/2026-11.csv", &accountant).await;
    assert_eq!(csv.status(), StatusCode::OK);
    // … but opens no API route, from this site or another.
    let csv = get_page(&app, "/v1/tax/declarations/2026-11.csv", &accountant).await;
    assert_eq!(csv.status(), StatusCode::UNAUTHORIZED);
    let response = browser()
        .post(app.url("/v1/tax/certificates/FR202611-X/corrections"))
        .header(COOKIE, &accountant)
        .header(ORIGIN, "https://evil.example")
        .json(&json!({"reason": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Other roles may sign in but not see the page.
    app.create_distributor("dora", None, None).await;
    let dora = app.distributor_token("dora").await;
    for token in [&app.ops, &dora] {
        let cookie = sign_in(&app, token).await;
        let response = get_page(&app, "/tax", &cookie).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(header(&response, CONTENT_TYPE).starts_with("text/html"));
    }

    // Logging out expires the cookie (and the old token cookie of earlier versions).
    let response = browser()
        .post(app.url("/logout"))
        .header(COOKIE, &accountant)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&response, LOCATION), "/login");
    let expired: Vec<&str> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    for name in ["fenrun_session", "fenrun_token"] {
        assert!(
            expired
                .iter()
                .any(|cookie| cookie.starts_with(&format!("{name}=;"))
                    && cookie.contains("Max-Age=0")),
            "{expired:?}"
        );
    }
}

/// Pays carol 1500.00 (tax 140.00, net 1360.00) and waits for the
/// certificate; returns (tax month, number).
async fn certified_payout(app: &TestApp) -> (String, String) {
    let (_, withdrawal, number) = crate::certificates::certified_payout(app, "carol").await;
    (withdrawal["tax_month"].as_str().unwrap().to_owned(), number)
}

async fn post_verify(app: &TestApp, cookie: &str, pdf: Option<&[u8]>) -> reqwest::Response {
    let form = match pdf {
        Some(pdf) => reqwest::multipart::Form::new().part(
            "pdf",
            reqwest::multipart::Part::bytes(pdf.to_vec()).file_name("certificate.pdf"),
        ),
        // A browser sends an empty file input as an empty part.
        None => reqwest::multipart::Form::new().part(
            "manifest",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        ),
    };
    browser()
        .post(app.url("/tax/verify"))
        .header(COOKIE, cookie)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn the_tax_page_shows_the_months_certificates_and_judges_an_uploaded_one(backend: Backend) {
    let app = spawn(backend).await;
    let (month, number) = certified_payout(&app).await;
    let cookie = sign_in(&app, &app.accountant).await;

    let response = get_page(&app, &format!("/tax?month={month}"), &cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, CONTENT_TYPE).starts_with("text/html"));
    let page = response.text().await.unwrap();
    for expected in [
        r#"<html lang="zh-CN">"#,
        r#"<meta charset="utf-8">"#,
        r#"type="month" name="month""#,
        number.as_str(),
        "carol",
        "1500.00",
        "140.00",
        "1360.00",
        &format!(r#"href="/tax/declarations/{month}.csv""#),
        &format!(r#"href="/tax/declarations/{month}.xlsx""#),
        &format!(r#"href="/tax/certificates/{month}.zip""#),
        &format!(r#"href="/tax/certificates/{number}.pdf""#),
        &format!(r#"href="/tax/certificates/{number}.json""#),
        r#"action="/tax/verify""#,
        r#"enctype="multipart/form-data""#,
    ] {
        assert!(
            page.contains(expected),
            "{expected:?} missing from:\n{page}"
        );
    }
    // Every file the page links to opens with the session cookie.
    for link in [
        format!("/tax/declarations/{month}.csv"),
        format!("/tax/declarations/{month}.xlsx"),
        format!("/tax/declarations/{month}.csv?as_prepared=false"),
        format!("/tax/certificates/{month}.zip"),
        format!("/tax/certificates/{number}.pdf"),
        format!("/tax/certificates/{number}.json"),
    ] {
        let response = get_page(&app, &link, &cookie).await;
        assert_eq!(response.status(), StatusCode::OK, "{link}");
    }
    // Without a month, the current one; a bad month is an HTML 400.
    let response = get_page(&app, "/tax", &cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get_page(&app, "/tax?month=2026-13", &cookie).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(header(&response, CONTENT_TYPE).starts_with("text/html"));

    let pdf = app
        .get(
            &format!("/v1/tax/certificates/{number}.pdf"),
            &app.accountant,
        )
        .await;
    assert_eq!(pdf.status(), StatusCode::OK);
    let mut pdf = pdf.bytes().await.unwrap().to_vec();

    let response = post_verify(&app, &cookie, Some(&pdf)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let verdict = response.text().await.unwrap();
    assert!(
        verdict.contains("Genuine") && !verdict.contains("NOT genuine"),
        "{verdict}"
    );
    for expected in [number.as_str(), "1500.00", "140.00", "1360.00"] {
        assert!(
            verdict.contains(expected),
            "{expected:?} missing from:\n{verdict}"
        );
    }

    let middle = pdf.len() / 2;
    pdf[middle] ^= 0x01;
    let verdict = post_verify(&app, &cookie, Some(&pdf))
        .await
        .text()
        .await
        .unwrap();
    assert!(verdict.contains("NOT genuine"), "{verdict}");

    // No PDF: an HTML 400. Not signed in: to the login form.
    let response = post_verify(&app, &cookie, None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(header(&response, CONTENT_TYPE).starts_with("text/html"));
    let response = post_verify(&app, "fenrun_session=", Some(&pdf)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(header(&response, LOCATION).starts_with("/login"));
}
