//! The distributor page `/me` in a real browser at a phone's size (375×812):
//! headless Chromium, driven through chromedriver (the rig of
//! [`crate::ops_browser`]), opens a sign-in link as the shop's app would,
//! sees the balances and the earnings chart, asks for a quote and requests a
//! withdrawal, sees it paid through the sandbox on the simulated clock,
//! downloads its certificate with the browser's session, and finds the link
//! refused when opened again. Screenshots (`me-*.png`) are kept as test
//! artifacts. Runs when `FENRUN_TEST_BROWSER` names a Chromium binary;
//! otherwise it is listed as ignored with the reason.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::me_page::portal_link;
use crate::ops_browser::{Chromedriver, artifacts_dir, drive_then_close, open_browser, screenshot};
use crate::withdrawals::{advance_days, funded_distributor, wait_for_state, withdrawal};

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
/// The phone the page is laid out for.
const PHONE: (u32, u32) = (375, 812);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fenrun_test_browser),
    ignore = "browser test skipped: set FENRUN_TEST_BROWSER=/usr/bin/chromium (Debian packages chromium and chromium-driver)"
)]
async fn a_distributor_signs_in_by_link_withdraws_with_a_quote_and_downloads_the_certificate_on_a_phone()
 {
    let folder = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.simulated_clock = true;
    })
    .await;
    seed(&app).await;
    let link = portal_link(&app, "hana").await;
    let url = link["url"].as_str().unwrap().to_owned();

    let driver = Chromedriver::start(&artifacts_dir().join("chromedriver-me.log"));
    let browser = open_browser(&driver, &folder.path().join("profile")).await;
    browser.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    drive_then_close(&browser, "me-failure.png", drive(&app, &browser, &url)).await;
}

/// hana: 800.00 available, old enough for no risk flag, and an order whose
/// commission is pending (so the chart and the next release have figures).
async fn seed(app: &TestApp) {
    funded_distributor(app, "hana", "800.00", OPENID).await;
    advance_days(app, 4).await;
    // The app's clock moved four days: the order is confirmed an hour ago.
    let confirmed = chrono::Utc::now() + chrono::Duration::days(4) - chrono::Duration::hours(1);
    let order = json!({
        "order_id": "o-hana-1", "distributor_id": "hana", "buyer_id": "buyer-1",
        "placed_at": (confirmed - chrono::Duration::days(1)).to_rfc3339(),
        "confirmed_at": confirmed.to_rfc3339(),
        "items": [{"sku": "S1", "category": "food", "amount": "1000.00"}],
    });
    let response = app.post_json("/v1/orders", &app.ingest, &order).await;
    assert_eq!(response.status(), 202);
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css}: {error}"))
        .text()
        .await
        .unwrap()
}

async fn wait_for(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css} never appeared: {error}"));
}

async fn press(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css}: {error}"))
        .click()
        .await
        .unwrap();
}

/// Scrolls the element with `id` into view, for the screenshot.
async fn scroll_to(browser: &Client, id: &str) {
    browser
        .execute(
            "document.getElementById(arguments[0]).scrollIntoView();",
            vec![json!(id)],
        )
        .await
        .unwrap();
}

async fn drive(app: &TestApp, browser: &Client, url: &str) {
    // The shop's app opens the link: signed in, on /me.
    browser.goto(url).await.unwrap();
    wait_for(browser, "section#balances").await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/me");
    assert!(
        text_of(browser, "#balance-available")
            .await
            .contains("800.00")
    );
    let pending = text_of(browser, "#balance-pending").await;
    assert!(pending.contains("Next release"), "{pending}");
    let bars = browser
        .find_all(Locator::Css("svg#chart-days rect"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 30, "a bar per day");
    // Not rendered, so read as the document holds it.
    let title = browser
        .find(Locator::Css("svg#chart-days title"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(title.contains("last 30 days"), "{title}");
    // Laid out for the phone: nothing wider than the screen.
    let fits = browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the page scrolls sideways at 375 px");
    screenshot(browser, "me-balances.png").await;

    // A quote, then the withdrawal.
    let amount = browser.find(Locator::Css("input#amount")).await.unwrap();
    amount.send_keys("300.00").await.unwrap();
    press(browser, "button[value='quote']").await;
    wait_for(browser, "#quote").await;
    assert_eq!(text_of(browser, "#quote-gross").await, "300.00");
    let net = text_of(browser, "#quote-net").await;
    assert!(!net.is_empty(), "no net in the quote");
    scroll_to(browser, "quote").await;
    screenshot(browser, "me-quote.png").await;
    press(browser, "button[value='withdraw']").await;
    wait_for(browser, "#done").await;
    let page = browser.current_url().await.unwrap();
    let id = page
        .query_pairs()
        .find(|(key, _)| key == "requested")
        .map(|(_, value)| value.into_owned())
        .expect("the requested withdrawal in the URL");

    // Paid by the sandbox; its certificate follows.
    wait_for_state(app, &id, "paid").await;
    let number = certificate_of(app, &id).await;
    browser.refresh().await.unwrap();
    wait_for(browser, &format!("#withdrawal-{id}[data-state='paid']")).await;
    let entry = text_of(browser, &format!("#withdrawal-{id}")).await;
    assert!(entry.contains("Paid"), "{entry}");
    assert!(entry.contains(&net), "{entry}");
    let href = browser
        .find(Locator::Css(&format!("#withdrawal-{id} a[download]")))
        .await
        .expect("the certificate's link")
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, format!("/me/certificates/{number}.pdf"));
    scroll_to(browser, &format!("withdrawal-{id}")).await;
    screenshot(browser, "me-paid.png").await;

    // The download, with the browser's own session.
    let cookie = browser
        .get_named_cookie("fenrun_session")
        .await
        .expect("the session cookie");
    let pdf = reqwest::Client::new()
        .get(app.url(&href))
        .header(
            reqwest::header::COOKIE,
            format!("fenrun_session={}", cookie.value()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));

    // The link again: used, refused, with what to do.
    browser.goto(url).await.unwrap();
    let body = text_of(browser, "main").await;
    assert!(body.contains("already used"), "{body}");
    assert!(body.contains("shop's app"), "{body}");
    screenshot(browser, "me-link-reused.png").await;
}

/// The certificate number of a paid withdrawal, once its step has run.
async fn certificate_of(app: &TestApp, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view: Value = withdrawal(app, id).await;
        if let Some(number) = view["certificate_number"].as_str() {
            return number.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no certificate for {id}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
