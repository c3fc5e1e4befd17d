//! The reconciliation section of the `/ops` console and its gauges in
//! `/metrics`: a statement line nobody sent shows as an unresolved
//! mismatch of its channel, on the page with both sides' totals and a
//! form; the form (plain HTML, the session cookie, a same-site origin)
//! resolves it, audited, and the gauge falls back to 0. Running a day
//! again from the page says how it went, a failure included, on the page.

use chrono::NaiveDate;
use fenrun_integrations::sandbox::StatementFaults;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN};
use serde_json::{Value, json};

use crate::channels::fen;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::reconciliation::{china_today, wait_for_catch_up};
use crate::tax_page::{browser, get_page, sign_in};
use crate::withdrawals::{advance_days, funded_distributor, request, sandbox, wait_for_state};

on_both_backends!(
    a_line_nobody_sent_shows_on_the_console_and_in_the_metrics_until_ops_resolve_it_with_the_page_form,
    running_a_day_again_from_the_console_says_how_it_went_and_a_failing_statement_shows_its_error,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// `/metrics`' value of `series` (a name with its labels).
pub(crate) async fn gauge(app: &TestApp, series: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

async fn unresolved(app: &TestApp, channel: &str) -> f64 {
    gauge(
        app,
        &format!("fenrun_reconciliation_unresolved_mismatches{{channel=\"{channel}\"}}"),
    )
    .await
}

/// The form posting to `action` on the page: its hidden fields, as a
/// browser would send them.
fn hidden_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form to {action}:\n{html}"));
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attribute = |name: &str| {
                let from = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[from..from + input[from..].find('"').unwrap()].to_owned()
            };
            (attribute("name"), attribute("value"))
        })
        .collect()
}

/// `fen` as yuan with two decimals, as the page shows money.
fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

async fn a_line_nobody_sent_shows_on_the_console_and_in_the_metrics_until_ops_resolve_it_with_the_page_form(
    backend: Backend,
) {
    let app = crate::withdrawals::spawn(backend).await;
    let (token, account) = funded_distributor(&app, "erin", "1000.00", OPENID).await;
    // Old enough to raise no risk flag; the sweep catches up on the days
    // the clock skipped, before any knob is set.
    advance_days(&app, 4).await;
    wait_for_catch_up(&app).await;
    let body = json!({"distributor_id": "erin", "amount": "300.00", "payout_account_id": account, "speed": "express"});
    let response = request(&app, &token, "erin-1", &body).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let paid = wait_for_state(&app, created["id"].as_str().unwrap(), "paid").await;
    let net = fen(&paid["net"]);
    for channel in ["wechat", "alipay", "bank"] {
        assert_eq!(unresolved(&app, channel).await, 0.0, "{channel}");
    }

    // The WeChat statement of today carries one payout of 1.00 yuan for a
    // bill number fenrun never sent.
    sandbox(&app)
        .set_statement_faults(StatementFaults {
            extra_lines: 1,
            ..StatementFaults::default()
        })
        .unwrap();
    let today = china_today(&app).await;
    let response = app
        .post_json(
            "/v1/ops/reconciliation/run",
            &app.ops,
            &json!({"date": today.to_string(), "channel": "wechat"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    let mismatches = view["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{view:#}");
    assert_eq!(mismatches[0]["class"], "missing_at_fenrun");
    let id = mismatches[0]["id"].as_i64().unwrap();
    assert_eq!(unresolved(&app, "wechat").await, 1.0);
    assert_eq!(unresolved(&app, "alipay").await, 0.0);
    assert_eq!(unresolved(&app, "bank").await, 0.0);
    let age = gauge(
        &app,
        "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{channel=\"wechat\"}",
    )
    .await;
    assert!((0.0..3600.0).contains(&age), "{age}");

    // The console shows the day: the run, both sides' totals (the extra
    // line on the channel's side only), and the mismatch with its form.
    let cookie = sign_in(&app, &app.ops).await;
    let page_path = format!("/ops?date={today}&channel=wechat");
    let page = get_page(&app, &page_path, &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let action = format!("/ops/reconciliation/mismatches/{id}/resolve");
    for expected in [
        "对账 Reconciliation".to_owned(),
        format!("value=\"{today}\""),
        "id=\"reconciliation-source-wechat\"".to_owned(),
        "<span class=\"ok\">finished</span>".to_owned(),
        "id=\"totals-wechat\"".to_owned(),
        format!("2 / {}", yuan(net + 1_00)),
        format!("1 / {}", yuan(net)),
        format!("id=\"mismatch-{id}\""),
        "missing_at_fenrun".to_owned(),
        "money moved that fenrun never asked for".to_owned(),
        "sbxextra0001".to_owned(),
        "1.00".to_owned(),
        format!("action=\"{action}\""),
        "name=\"side\" value=\"ledger\"".to_owned(),
        "name=\"side\" value=\"channel\"".to_owned(),
        "action=\"/ops/reconciliation/run\"".to_owned(),
    ] {
        assert!(
            html.contains(&expected),
            "{expected} missing from the console:\n{html}"
        );
    }
    // Other channels' totals are not this selection's.
    assert!(!html.contains("id=\"totals-alipay\""), "{html}");

    // The form, as a browser without JavaScript sends it: its hidden
    // fields, a side and a reason, the cookie and this site's origin.
    let mut form = hidden_fields(&html, &action);
    assert_eq!(
        form,
        vec![
            ("date".to_owned(), today.to_string()),
            ("channel".to_owned(), "wechat".to_owned())
        ]
    );
    form.push(("side".to_owned(), "ledger".to_owned()));
    form.push((
        "reason".to_owned(),
        "the sandbox's injected line: no payout of ours".to_owned(),
    ));
    // From another site: refused, nothing resolved.
    let refused = browser()
        .post(app.url(&action))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Another role: refused.
    let accountant = sign_in(&app, &app.accountant).await;
    let refused = browser()
        .post(app.url(&action))
        .header(COOKIE, &accountant)
        .header(ORIGIN, &app.address)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(unresolved(&app, "wechat").await, 1.0);
    // Pressed twice: the same resolution again changes nothing.
    for _ in 0..2 {
        let response = browser()
            .post(app.url(&action))
            .header(COOKIE, &cookie)
            .header(ORIGIN, &app.address)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[LOCATION],
            format!("/ops?date={today}&channel=wechat#reconciliation").as_str()
        );
    }

    let html = get_page(&app, &page_path, &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("已解决 Resolved: ledger is right"),
        "no resolution on the console:\n{html}"
    );
    assert!(
        html.contains("the sandbox&#39;s injected line: no payout of ours")
            || html.contains("the sandbox's injected line: no payout of ours"),
        "{html}"
    );
    assert!(!html.contains(&format!("action=\"{action}\"")), "{html}");
    assert!(html.contains("0 unresolved of 1"), "{html}");
    assert_eq!(unresolved(&app, "wechat").await, 0.0);
    assert_eq!(
        gauge(
            &app,
            "fenrun_reconciliation_oldest_unresolved_mismatch_seconds{channel=\"wechat\"}",
        )
        .await,
        0.0
    );

    // Audited once, by the signed-in ops token.
    let audit: Value = app
        .get(
            &format!("/v1/audit?target=reconciliation_mismatch:{id}"),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit:#}");
    assert_eq!(entries[0]["action"], "reconciliation.resolve_mismatch");
    assert_eq!(entries[0]["actor_role"], "ops");
    let actor = entries[0]["actor"].as_str().unwrap();
    assert!(html.contains(&format!("by <code>{actor}</code>")), "{html}");
}

async fn running_a_day_again_from_the_console_says_how_it_went_and_a_failing_statement_shows_its_error(
    backend: Backend,
) {
    let app = crate::withdrawals::spawn(backend).await;
    advance_days(&app, 1).await;
    wait_for_catch_up(&app).await;
    let today = china_today(&app).await;
    let cookie = sign_in(&app, &app.ops).await;
    let press = |date: NaiveDate, channel: &'static str| {
        let cookie = cookie.clone();
        let url = app.url("/ops/reconciliation/run");
        let origin = app.address.clone();
        async move {
            let response = browser()
                .post(url)
                .header(COOKIE, &cookie)
                .header(ORIGIN, &origin)
                .form(&[("date", date.to_string()), ("channel", channel.to_owned())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            response.headers()[LOCATION].to_str().unwrap().to_owned()
        }
    };

    // Today's WeChat statement failing its hash: the run fails, the page
    // says so and shows the statement's error and when it is tried again.
    sandbox(&app)
        .set_statement_faults(StatementFaults {
            corrupt_downloads: 1,
            ..StatementFaults::default()
        })
        .unwrap();
    let location = press(today, "wechat").await;
    assert_eq!(
        location,
        format!("/ops?date={today}&channel=wechat&run=statement_unavailable#reconciliation")
    );
    let html = get_page(&app, &location, &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("A statement could not be downloaded or failed its check"),
        "{html}"
    );
    let row = &html[html.find("id=\"reconciliation-source-wechat\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("SHA1"), "{row}");
    assert!(row.contains("next attempt"), "{row}");

    // Every channel of today, run from the page (the next download is a
    // sound file): back on the day, done.
    let html = get_page(&app, &format!("/ops?date={today}"), &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        hidden_fields(&html, "/ops/reconciliation/run"),
        vec![
            ("date".to_owned(), today.to_string()),
            ("channel".to_owned(), String::new())
        ]
    );
    let location = press(today, "").await;
    assert_eq!(
        location,
        format!("/ops?date={today}&run=done#reconciliation")
    );
    let html = get_page(&app, &location, &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("{today} was reconciled again")),
        "{html}"
    );
    assert!(
        html.contains("id=\"reconciliation-source-alipay\""),
        "{html}"
    );
    let audit: Value = app
        .get(
            &format!("/v1/audit?target=reconciliation:{today}"),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["items"][0]["action"], "reconciliation.run",
        "{audit:#}"
    );

    // A day that has not begun: said on the page, not a server error.
    let tomorrow = today.succ_opt().unwrap();
    let location = press(tomorrow, "bank").await;
    assert_eq!(
        location,
        format!("/ops?date={tomorrow}&channel=bank&run=date_in_future#reconciliation")
    );
    let page = get_page(&app, &location, &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "{tomorrow} has not begun yet (today is {today}, China time)"
        )),
        "{html}"
    );

    // A query the page cannot read: named, and yesterday shown instead.
    let html = get_page(&app, "/ops?date=yesterday&channel=paypal", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("The date must be a day as YYYY-MM-DD"),
        "{html}"
    );
    assert!(
        html.contains("The channel must be wechat, alipay or bank"),
        "{html}"
    );
    let yesterday = today.pred_opt().unwrap();
    assert!(html.contains(&format!("value=\"{yesterday}\"")), "{html}");
}
