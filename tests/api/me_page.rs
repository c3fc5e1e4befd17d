//! The distributor page `/me` and its sign-in links (issue 16 items 6, 7):
//! a link opens once, within five minutes on the simulated clock, and of
//! two opens at once exactly one wins; its session sees its own distributor
//! only and no staff page; the withdrawal form quotes, and requests exactly
//! one withdrawal however often the same form is sent; bad input shows what
//! to do and changes nothing.

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::helpers::{Backend, TestApp, error_of};
use crate::on_both_backends;
use crate::sessions::advance;
use crate::tax_page::{browser, get_page, sign_in};
use crate::withdrawals::{
    advance_days, balance, funded_distributor, sandbox, spawn, wait_for_state,
};

on_both_backends!(
    a_link_signs_its_distributor_in_once_and_shows_only_that_distributor,
    a_link_expires_after_five_minutes_and_two_opens_at_once_sign_in_once,
    the_withdrawal_form_quotes_and_requests_exactly_one_withdrawal,
    bad_input_shows_what_to_do_and_changes_nothing,
    a_withdrawal_awaiting_the_payee_shows_the_wechat_package,
    a_link_is_built_on_public_url_when_it_is_set,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// `POST /v1/distributors/{id}/portal-links` as the shop: `{url, expires_at}`.
pub async fn portal_link(app: &TestApp, distributor: &str) -> Value {
    let response = app
        .post_json(
            &format!("/v1/distributors/{distributor}/portal-links"),
            &app.ingest,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Opens a link's URL as a browser would, without following the redirect.
pub async fn open(url: &str) -> reqwest::Response {
    browser().get(url).send().await.unwrap()
}

/// A new link for `distributor`, opened: the session cookie it set.
pub async fn link_session(app: &TestApp, distributor: &str) -> String {
    let link = portal_link(app, distributor).await;
    let response = open(link["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/me");
    response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The page's HTML, after checking its status.
pub async fn page_text(app: &TestApp, path: &str, cookie: &str, status: StatusCode) -> String {
    let response = get_page(app, path, cookie).await;
    assert_eq!(response.status(), status, "{path}");
    response.text().await.unwrap()
}

/// The withdrawal form's nonce in a page.
fn nonce_of(html: &str) -> String {
    let start = html.find("name=\"nonce\" value=\"").expect("a nonce") + 20;
    html[start..start + 35].to_owned()
}

/// Posts a page form with `cookie`, from this site (as a browser does).
pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    browser()
        .post(app.url(path))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::ORIGIN, app.address.clone())
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// The withdrawal the form's redirect names (`/me?requested={id}#withdrawals`).
fn requested_id(location: &str) -> String {
    location
        .strip_prefix("/me?requested=")
        .and_then(|rest| rest.strip_suffix("#withdrawals"))
        .unwrap_or_else(|| panic!("{location}"))
        .to_owned()
}

/// How many payout accounts `distributor` has, as ops see them.
async fn account_count(app: &TestApp, distributor: &str) -> usize {
    let accounts: Value = app
        .get(
            &format!("/v1/distributors/{distributor}/payout-accounts"),
            &app.ops,
        )
        .await
        .json()
        .await
        .unwrap();
    accounts["items"].as_array().unwrap().len()
}

async fn a_link_signs_its_distributor_in_once_and_shows_only_that_distributor(backend: Backend) {
    let app = spawn(backend).await;
    // dave has a paid withdrawal and a certificate; carol a balance.
    let (_, dave_withdrawal, dave_certificate) = certified_payout(&app, "dave").await;
    let dave_withdrawal = dave_withdrawal["id"].as_str().unwrap().to_owned();
    funded_distributor(&app, "carol", "300.00", OPENID).await;

    let link = portal_link(&app, "carol").await;
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/me/open?link=", app.address)),
        "{url}"
    );
    // Five minutes on the app's clock (simulated: moved four days above).
    let expires_at: chrono::DateTime<chrono::Utc> =
        link["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires_at > chrono::Utc::now() + chrono::Duration::days(4));

    // Opened: a strict session cookie, then the page.
    let response = open(url).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let html = page_text(&app, "/me", &cookie, StatusCode::OK).await;
    assert!(html.contains("(carol)"), "{html}");
    assert!(html.contains("300.00"), "{html}");
    assert!(html.contains("id=\"chart-days\""), "{html}");
    assert!(html.contains("id=\"chart-months\""), "{html}");
    assert!(
        !html.contains(&dave_withdrawal),
        "dave's withdrawal on carol's page"
    );

    // Single use: the second open is refused with what to do.
    let again = open(url).await;
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(again.headers().get(SET_COOKIE).is_none());
    assert!(again.text().await.unwrap().contains("shop's app"));
    // Unknown and malformed links.
    let unknown = open(&app.url(&format!("/me/open?link={}", "ab".repeat(32)))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("shop's app"));
    assert_eq!(
        open(&app.url("/me/open?link=nope")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        open(&app.url("/me/open")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Carol's session: not dave's certificate, no staff page, no API.
    let response = get_page(
        &app,
        &format!("/me/certificates/{dave_certificate}.pdf"),
        &cookie,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    for staff_page in [
        "/ops".to_owned(),
        "/tax".to_owned(),
        "/ops/queues.json".to_owned(),
        format!("/ops/withdrawals/{dave_withdrawal}"),
        format!("/tax/certificates/{dave_certificate}.pdf"),
    ] {
        let response = get_page(&app, &staff_page, &cookie).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{staff_page}");
    }
    let api = browser()
        .get(app.url("/v1/distributors/carol/balance"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);

    // A staff session is not a distributor; no session is sent to reopen.
    let ops = sign_in(&app, &app.ops).await;
    let html = page_text(&app, "/me", &ops, StatusCode::FORBIDDEN).await;
    assert!(html.contains("Distributors only"), "{html}");
    let html = page_text(&app, "/me", "", StatusCode::UNAUTHORIZED).await;
    assert!(html.contains("shop's app"), "{html}");

    // dave's own session downloads his certificate.
    let dave = link_session(&app, "dave").await;
    let html = page_text(&app, "/me", &dave, StatusCode::OK).await;
    assert!(html.contains(&format!("/me/certificates/{dave_certificate}.pdf")));
    let pdf = get_page(
        &app,
        &format!("/me/certificates/{dave_certificate}.pdf"),
        &dave,
    )
    .await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));

    // Links: the shop's token only, for a distributor that exists.
    let missing = app
        .post_json(
            "/v1/distributors/nobody/portal-links",
            &app.ingest,
            &json!({}),
        )
        .await;
    assert_eq!(error_of(missing, 404).await["code"], "not_found");
    let ops_link = app
        .post_json("/v1/distributors/carol/portal-links", &app.ops, &json!({}))
        .await;
    assert_eq!(ops_link.status(), StatusCode::FORBIDDEN);
}

async fn a_link_expires_after_five_minutes_and_two_opens_at_once_sign_in_once(backend: Backend) {
    let app = spawn(backend).await;
    app.create_distributor("erin", None, None).await;
    let early = portal_link(&app, "erin").await;
    let late = portal_link(&app, "erin").await;
    advance(&app, 299).await;
    assert_eq!(
        open(early["url"].as_str().unwrap()).await.status(),
        StatusCode::SEE_OTHER
    );
    advance(&app, 2).await;
    let expired = open(late["url"].as_str().unwrap()).await;
    assert_eq!(expired.status(), StatusCode::GONE);
    assert!(expired.text().await.unwrap().contains("five minutes"));

    // Two browsers open one link at the same moment: one is signed in.
    for _ in 0..5 {
        let link = portal_link(&app, "erin").await;
        let url = link["url"].as_str().unwrap();
        let (first, second) = tokio::join!(open(url), open(url));
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [303, 410]);
    }
}

async fn the_withdrawal_form_quotes_and_requests_exactly_one_withdrawal(backend: Backend) {
    let app = spawn(backend).await;
    let (_, account) = funded_distributor(&app, "fay", "500.00", OPENID).await;
    advance_days(&app, 4).await;
    let cookie = link_session(&app, "fay").await;
    let html = page_text(&app, "/me", &cookie, StatusCode::OK).await;
    let nonce = nonce_of(&html);
    assert!(nonce.starts_with("me-"), "{nonce}");

    // The quote: the page again with the figures; nothing reserved.
    let form = |action: &'static str, nonce: String| {
        vec![
            ("amount", "200.00".to_owned()),
            ("payout_account_id", account.clone()),
            ("speed", "standard".to_owned()),
            ("nonce", nonce),
            ("action", action.to_owned()),
        ]
    };
    let fields = form("quote", nonce.clone());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = post_form(&app, "/me/withdrawals", &cookie, &fields).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"quote-gross\">200.00"), "{html}");
    for id in ["quote-tax", "quote-fee", "quote-net"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}: {html}");
    }
    assert_eq!(nonce_of(&html), nonce, "a quote keeps the form's key");
    assert_eq!(balance(&app, "fay").await["available"], "500.00");

    // Withdraw, twice with the same form: one withdrawal.
    let fields = form("withdraw", nonce.clone());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = post_form(&app, "/me/withdrawals", &cookie, &fields).await;
    let second = post_form(&app, "/me/withdrawals", &cookie, &fields).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let location = first.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(second.headers()[LOCATION].to_str().unwrap(), location);
    let id = requested_id(&location);
    let after = balance(&app, "fay").await;
    assert_eq!(after["available"], "300.00", "{after:#}");
    let html = page_text(&app, &location, &cookie, StatusCode::OK).await;
    assert!(html.contains(&format!("id=\"withdrawal-{id}\"")), "{html}");
    assert!(html.contains("requested"), "{html}");
    assert_eq!(html.matches("class=\"withdrawal\"").count(), 1, "{html}");
    assert_ne!(nonce_of(&html), nonce, "a new page, a new key");
}

async fn bad_input_shows_what_to_do_and_changes_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let (_, account) = funded_distributor(&app, "gus", "100.00", OPENID).await;
    advance_days(&app, 4).await;
    let cookie = link_session(&app, "gus").await;
    let nonce = nonce_of(&page_text(&app, "/me", &cookie, StatusCode::OK).await);

    for (amount, speed, status, expected) in [
        ("abc", "standard", 400, "two decimals"),
        ("5000.00", "standard", 422, "available balance"),
        ("50.00", "rocket", 400, "standard or express"),
    ] {
        let response = post_form(
            &app,
            "/me/withdrawals",
            &cookie,
            &[
                ("amount", amount),
                ("payout_account_id", &account),
                ("speed", speed),
                ("nonce", &nonce),
                ("action", "withdraw"),
            ],
        )
        .await;
        assert_eq!(response.status().as_u16(), status, "{amount} {speed}");
        let html = response.text().await.unwrap();
        assert!(html.contains("What to do"), "{html}");
        assert!(html.contains(expected), "{expected}: {html}");
        // The form keeps what was typed.
        assert!(html.contains(&format!("value=\"{amount}\"")), "{html}");
    }
    let after = balance(&app, "gus").await;
    assert_eq!(after["available"], "100.00", "{after:#}");
    assert_eq!(after["withdrawing"], "0.00", "{after:#}");

    // A bad card number: refused, nothing added, the number not echoed.
    let response = post_form(
        &app,
        "/me/payout-accounts",
        &cookie,
        &[
            ("channel", "bank"),
            ("card_number", "6222021234567890"),
            ("bank_name", "招商银行"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("What to do"), "{html}");
    assert!(!html.contains("6222021234567890"), "{html}");
    assert_eq!(account_count(&app, "gus").await, 1);

    // A good one is added and listed, masked.
    let response = post_form(
        &app,
        "/me/payout-accounts",
        &cookie,
        &[("channel", "alipay"), ("account", "gus@example.com")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let html = page_text(&app, "/me?added=1", &cookie, StatusCode::OK).await;
    assert!(html.contains("Payout account added"), "{html}");
    assert!(!html.contains("gus@example.com"), "{html}");
    assert_eq!(account_count(&app, "gus").await, 2);

    // A form from another site is refused before anything is read.
    let response = browser()
        .post(app.url("/me/withdrawals"))
        .header(reqwest::header::COOKIE, &cookie)
        .header(reqwest::header::ORIGIN, "https://evil.example")
        .form(&[("amount", "10.00"), ("action", "withdraw")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

async fn a_withdrawal_awaiting_the_payee_shows_the_wechat_package(backend: Backend) {
    let app = spawn(backend).await;
    let (_, account) = funded_distributor(&app, "ivy", "300.00", OPENID).await;
    advance_days(&app, 4).await;
    // The payee has not confirmed in WeChat yet.
    sandbox(&app).set_faults(fenrun_integrations::sandbox::Faults {
        confirm: fenrun_integrations::sandbox::ConfirmMode::Hold,
        ..Default::default()
    });
    let cookie = link_session(&app, "ivy").await;
    let nonce = nonce_of(&page_text(&app, "/me", &cookie, StatusCode::OK).await);
    let response = post_form(
        &app,
        "/me/withdrawals",
        &cookie,
        &[
            ("amount", "100.00"),
            ("payout_account_id", &account),
            ("speed", "standard"),
            ("nonce", &nonce),
            ("action", "withdraw"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = requested_id(&location);
    let waiting = wait_for_state(&app, &id, "awaiting_payee_confirmation").await;
    let package = waiting["package_info"].as_str().unwrap().to_owned();
    let html = page_text(&app, "/me", &cookie, StatusCode::OK).await;
    assert!(
        html.contains(&format!("data-package-info=\"{package}\"")),
        "{html}"
    );
    assert!(html.contains("Confirm receipt in WeChat"), "{html}");
}

async fn a_link_is_built_on_public_url_when_it_is_set(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |settings| {
        settings.public_url = Some("https://shop.example/fenrun/".to_owned());
    })
    .await;
    app.create_distributor("jay", None, None).await;
    let link = portal_link(&app, "jay").await;
    let url = link["url"].as_str().unwrap();
    let secret = url
        .strip_prefix("https://shop.example/fenrun/me/open?link=")
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(secret.len(), 64, "{url}");
    // The same secret opens the page here.
    let response = open(&app.url(&format!("/me/open?link={secret}"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
