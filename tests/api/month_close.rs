//! The month close (issue 14): the team bonus computed here independently
//! of fenrun, paid once however often the month is closed (by hand, by the
//! schedule, after a kill -9 mid-way), the statements' figures, the
//! earnings view by day and by month, and the refusals.
//!
//! ```text
//! plan with [team_bonus] on ─► a ◄─ b ◄─ c (referrals) ─► orders by a, b, c ─► released
//!   ─► clock to 2027-01-01 01:00 (Shanghai) ─► close 2026-12 twice ─► schedule at 02:00
//!   ─► one bonus each for a and b, statements, earnings
//! ```

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::RoundingStrategy;
use serde_json::{Value, json};

use crate::crash::Server;
use std::sync::Arc;

use crate::helpers::{Backend, Http, TestDb, error_of, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    the_team_bonus_is_paid_once_and_statements_and_earnings_add_up,
    month_close_and_earnings_refuse_bad_input,
    the_schedule_closes_the_month_by_itself,
    a_month_close_killed_mid_way_pays_exactly_once,
);

const THRESHOLD: &str = "1000.00";
const RATE_PERCENT: &str = "1.5";
/// The month the orders fall in (the simulated clock starts at the wall
/// clock; the tests run in December 2026 or later, and the month is the
/// one the clock is in when the test starts).
fn plan_toml() -> String {
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workflows/plans/default.toml"
    ))
    .unwrap();
    format!(
        "{default}\n[team_bonus]\nenabled = true\nthreshold = \"{THRESHOLD}\"\nrate = \"{RATE_PERCENT}%\"\n"
    )
}

fn yuan(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// rate × sales, half-up to the fen, when sales reach the threshold.
fn expected_bonus(team_sales: Decimal) -> Option<Decimal> {
    (team_sales >= yuan(THRESHOLD)).then(|| {
        (team_sales * yuan(RATE_PERCENT) / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
    })
}

fn money(value: &Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a money string, not {value}"))
        .parse()
        .unwrap()
}

fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// The local month (Asia/Shanghai, no daylight saving) of `at`, and the
/// first instant of the month after it, at 01:00 local.
fn month_and_next_1am(at: DateTime<Utc>) -> (String, DateTime<Utc>) {
    use chrono::{Datelike, TimeZone};
    let local = at.with_timezone(&shanghai());
    let (year, month) = (local.year(), local.month());
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let next = shanghai()
        .with_ymd_and_hms(next_year, next_month, 1, 1, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    (format!("{year:04}-{month:02}"), next)
}

struct Shop {
    month: String,
    /// The orders' answers, by order id.
    answers: Vec<Value>,
    /// 01:00 local on the 1st of the month after.
    after_month: DateTime<Utc>,
}

/// The plan with the bonus on; a ◄─ b ◄─ c, and x on its own; orders by
/// each, confirmed now. Returns once every order is released and the clock
/// stands at 01:00 on the 1st of the next month (before the schedule's 02:00).
async fn shop(app: &Http, now: DateTime<Utc>) -> Shop {
    let applied = app
        .post_json(
            "/v1/admin/plans",
            &app.admin,
            &json!({"toml": plan_toml(), "file_name": "bonus.toml"}),
        )
        .await;
    assert_eq!(applied.status(), 201, "{}", applied.text().await.unwrap());
    app.create_distributor("a", None, None).await;
    app.create_distributor("b", Some("a"), None).await;
    app.create_distributor("c", Some("b"), None).await;
    app.create_distributor("x", None, None).await;
    let (month, after_month) = month_and_next_1am(now);
    let mut answers: Vec<Value> = Vec::new();
    for (order, seller, amount) in [
        ("o-a", "a", "100.00"),
        ("o-b", "b", "500.00"),
        ("o-c", "c", "600.33"),
        ("o-x", "x", "50.00"),
    ] {
        let response = app
            .post_json(
                "/v1/orders",
                &app.ingest,
                &json!({
                    "order_id": order,
                    "distributor_id": seller,
                    "buyer_id": format!("buyer-{order}"),
                    "placed_at": now.to_rfc3339(),
                    "confirmed_at": now.to_rfc3339(),
                    "items": [{"sku": "S1", "category": "food", "amount": amount}],
                }),
            )
            .await;
        assert_eq!(response.status(), 202);
        answers.push(response.json().await.unwrap());
    }
    advance_to(app, after_month).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for answer in &answers {
        let id = answer["order_id"].as_str().unwrap();
        loop {
            let order: Value = app
                .get(&format!("/v1/orders/{id}"), &app.ops)
                .await
                .json()
                .await
                .unwrap();
            if order["state"] == "released" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} was not released: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Shop {
        month,
        answers,
        after_month,
    }
}

/// The simulated clock's time (moving it a second: it cannot stand still).
async fn clock_now(app: &Http) -> DateTime<Utc> {
    let view: Value = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({"seconds": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    view["now"].as_str().unwrap().parse().unwrap()
}

async fn advance_to(app: &Http, at: DateTime<Utc>) {
    let now = clock_now(app).await;
    // Rounded up: the clock moves in whole seconds and must reach `at`.
    let seconds = ((at - now).num_milliseconds() + 999) / 1000;
    assert!(seconds >= 0, "the clock is past {at}");
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({"seconds": seconds}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// What `beneficiary` earned on the orders, from the ingest answers.
fn earned_by(shop: &Shop, beneficiary: &str) -> Decimal {
    shop.answers
        .iter()
        .flat_map(|answer| answer["commissions"].as_array().unwrap().iter())
        .filter(|line| line["beneficiary_id"] == beneficiary)
        .map(|line| money(&line["amount"]))
        .sum()
}

async fn the_team_bonus_is_paid_once_and_statements_and_earnings_add_up(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let now = clock_now(&app).await;
    let shop = shop(&app, now).await;
    let month = &shop.month;

    // Team settled sales, computed here: own + level 2 + level 3.
    let team_a = yuan("100.00") + yuan("500.00") + yuan("600.33");
    let team_b = yuan("500.00") + yuan("600.33");
    let team_c = yuan("600.33");
    let bonus_a = expected_bonus(team_a).unwrap();
    let bonus_b = expected_bonus(team_b).unwrap();
    assert_eq!(expected_bonus(team_c), None);
    assert_eq!(bonus_a, yuan("18.00"), "1200.33 × 1.5% = 18.00495");
    assert_eq!(bonus_b, yuan("16.50"), "1100.33 × 1.5% = 16.50495");

    let balance_before: Value = app
        .get("/v1/distributors/a/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();

    let path = format!("/v1/ops/month-close/{month}");
    let first: Value = app
        .post_json(&path, &app.ops, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["ran"], true, "{first}");
    assert_eq!(first["statements"], 4, "{first}");
    assert_eq!(first["team_bonuses"], 2, "{first}");
    assert_eq!(money(&first["team_bonus_total"]), bonus_a + bonus_b);
    let second: Value = app
        .post_json(&path, &app.admin, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["ran"], false, "{second}");
    assert_eq!(second["team_bonuses"], 2);
    // The schedule's own run at 02:00 finds the month closed.
    advance_to(&app, shop.after_month + chrono::Duration::hours(2)).await;

    let bonuses: Value = app
        .get("/v1/distributors/a/team-bonuses", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let items = bonuses["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{bonuses}");
    assert_eq!(money(&items[0]["amount"]), bonus_a);
    assert_eq!(money(&items[0]["team_settled_sales"]), team_a);
    assert_eq!(money(&items[0]["own_settled_sales"]), yuan("100.00"));
    assert_eq!(items[0]["rate"], "1.5%");
    let explanation = items[0]["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("1200.33") && explanation.contains("1000.00"),
        "{explanation}"
    );
    let c_bonuses: Value = app
        .get("/v1/distributors/c/team-bonuses", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c_bonuses["items"].as_array().unwrap().len(), 0);

    let balance_after: Value = app
        .get("/v1/distributors/a/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        money(&balance_after["available"]) - money(&balance_before["available"]),
        bonus_a,
        "paid once, straight to available"
    );
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    // a's statement, from a's own token.
    let a_token = app.distributor_token("a").await;
    let statement: Value = app
        .get(&format!("/v1/distributors/a/statements/{month}"), &a_token)
        .await
        .json()
        .await
        .unwrap();
    let earned_a = earned_by(&shop, "a");
    assert!(earned_a > Decimal::ZERO);
    assert_eq!(money(&statement["earned"]), earned_a, "{statement}");
    assert_eq!(money(&statement["released"]), earned_a);
    assert_eq!(money(&statement["clawed_back"]), Decimal::ZERO);
    assert_eq!(money(&statement["withdrawn"]), Decimal::ZERO);
    assert_eq!(money(&statement["team_bonus"]), bonus_a);
    assert_eq!(money(&statement["own_settled_sales"]), yuan("100.00"));
    assert_eq!(money(&statement["team_settled_sales"]), team_a);
    assert_eq!(money(&statement["available_at_close"]), earned_a + bonus_a);
    assert_eq!(money(&statement["pending_at_close"]), Decimal::ZERO);
    let list: Value = app
        .get("/v1/distributors/x/statements", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let x = &list["items"][0];
    assert_eq!(x["month"], month.as_str());
    assert_eq!(money(&x["team_bonus"]), Decimal::ZERO);
    assert_eq!(money(&x["team_settled_sales"]), yuan("50.00"));

    // Earnings by month: the sales and commissions in the month, the bonus
    // in the month it was paid (the close, on the 1st after).
    let first_day = format!("{month}-01");
    let next_month_day = shop
        .after_month
        .with_timezone(&shanghai())
        .date_naive()
        .to_string();
    let by_month: Value = app
        .get(
            &format!(
                "/v1/distributors/a/earnings?from={first_day}&to={next_month_day}&group=month"
            ),
            &a_token,
        )
        .await
        .json()
        .await
        .unwrap();
    let periods = by_month["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "{by_month}");
    assert_eq!(periods[0]["period"], month.as_str());
    assert_eq!(money(&periods[0]["earned"]), earned_a);
    assert_eq!(money(&periods[0]["released"]), earned_a);
    assert_eq!(money(&periods[0]["team_settled_sales"]), team_a);
    assert_eq!(money(&periods[0]["team_bonus"]), Decimal::ZERO);
    assert_eq!(money(&periods[1]["team_bonus"]), bonus_a);
    assert_eq!(by_month["grade"]["current"], "regular");
    assert_eq!(
        money(&by_month["grade"]["own_settled_sales_lifetime"]),
        yuan("100.00")
    );
    assert_eq!(
        money(&by_month["grade"]["team_settled_sales_lifetime"]),
        team_a
    );

    // By day: earned on the day of confirmation, sales on the day of release.
    let confirmed_day = now.with_timezone(&shanghai()).date_naive().to_string();
    let release_at: DateTime<Utc> = shop.answers[0]["release_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let release_day = release_at
        .with_timezone(&shanghai())
        .date_naive()
        .to_string();
    let last_day = (shop.after_month - chrono::Duration::days(1))
        .with_timezone(&shanghai())
        .date_naive()
        .to_string();
    let by_day: Value = app
        .get(
            &format!("/v1/distributors/a/earnings?from={first_day}&to={last_day}&group=day"),
            &app.ops,
        )
        .await
        .json()
        .await
        .unwrap();
    let days = by_day["periods"].as_array().unwrap();
    assert_eq!(days.first().unwrap()["period"], first_day.as_str());
    assert_eq!(days.last().unwrap()["period"], last_day.as_str());
    for day in days {
        let period = day["period"].as_str().unwrap();
        let earned = money(&day["earned"]);
        assert_eq!(
            earned,
            if period == confirmed_day {
                earned_a
            } else {
                Decimal::ZERO
            },
            "{day}"
        );
        let own = money(&day["own_settled_sales"]);
        assert_eq!(
            own,
            if period == release_day {
                yuan("100.00")
            } else {
                Decimal::ZERO
            },
            "{day}"
        );
    }
}

async fn the_schedule_closes_the_month_by_itself(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let now = clock_now(&app).await;
    let shop = shop(&app, now).await;
    assert!(app.store.month_close(&shop.month).await.unwrap().is_none());
    // 02:00 on the 1st: `close_month` in workflows/schedules.toml.
    advance_to(&app, shop.after_month + chrono::Duration::hours(1)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        if let Some(record) = app.store.month_close(&shop.month).await.unwrap()
            && record.finished_at.is_some()
        {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule did not close {}",
            shop.month
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record.statements, 4);
    assert_eq!(record.bonuses, 2);
    let total = expected_bonus(yuan("1200.33")).unwrap() + expected_bonus(yuan("1100.33")).unwrap();
    assert_eq!(record.bonus_total.to_string(), total.to_string());
}

async fn month_close_and_earnings_refuse_bad_input(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("a", None, None).await;
    app.create_distributor("b", None, None).await;
    let now = clock_now(&app).await;
    let (month, _) = month_and_next_1am(now);

    let bad = error_of(
        app.post_json("/v1/ops/month-close/2026-13", &app.ops, &json!({}))
            .await,
        422,
    )
    .await;
    assert_eq!(bad["code"], "invalid_month");
    let open = error_of(
        app.post_json(
            &format!("/v1/ops/month-close/{month}"),
            &app.ops,
            &json!({}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(open["code"], "month_not_over");
    let a_token = app.distributor_token("a").await;
    let response = app
        .post_json(
            &format!("/v1/ops/month-close/{month}"),
            &a_token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 403);
    let response = app
        .post_json("/v1/ops/month-close/2020-01", &app.ingest, &json!({}))
        .await;
    assert_eq!(response.status(), 403);

    for path in [
        "/v1/distributors/b/statements".to_owned(),
        format!("/v1/distributors/b/statements/{month}"),
        "/v1/distributors/b/team-bonuses".to_owned(),
        "/v1/distributors/b/earnings?from=2026-12-01&to=2026-12-02".to_owned(),
    ] {
        assert_eq!(app.get(&path, &a_token).await.status(), 403, "{path}");
        assert_eq!(app.get(&path, &app.ingest).await.status(), 403, "{path}");
    }
    let missing = error_of(
        app.get("/v1/distributors/zz/statements", &app.ops).await,
        404,
    )
    .await;
    assert_eq!(missing["code"], "not_found");
    // No close yet: no statement.
    let response = app
        .get(&format!("/v1/distributors/a/statements/{month}"), &a_token)
        .await;
    assert_eq!(response.status(), 404);
    let bad_month = error_of(
        app.get("/v1/distributors/a/statements/2026-1", &a_token)
            .await,
        422,
    )
    .await;
    assert_eq!(bad_month["code"], "invalid_month");

    for (query, code) in [
        ("from=2026-12-01&to=2026-12-31&group=week", "invalid_group"),
        ("from=2026-12-31&to=2026-12-01", "invalid_range"),
        ("from=2026-12-01", "invalid_range"),
        ("from=2026-12-1&to=2026-12-31", "invalid_range"),
        ("from=2025-01-01&to=2026-12-31&group=day", "invalid_range"),
    ] {
        let error = error_of(
            app.get(&format!("/v1/distributors/a/earnings?{query}"), &a_token)
                .await,
            422,
        )
        .await;
        assert_eq!(error["code"], code, "{query}");
    }
    let ten_years: Value = app
        .get(
            "/v1/distributors/a/earnings?from=2017-01-01&to=2026-12-31&group=month",
            &a_token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ten_years["periods"].as_array().unwrap().len(), 120);
}

/// kill -9 of the real binary between a close's batches (one distributor
/// per batch here; a failpoint stops it after the first), then a restart
/// that resumes the close: each bonus once, the first one's not again.
async fn a_month_close_killed_mid_way_pays_exactly_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let logs = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    crate::ops_browser::copy_tree(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows")),
        workflows.path(),
    );
    std::fs::write(
        workflows.path().join("month-close.toml"),
        "batch_size = 1\ncatch_up_months = 12\n",
    )
    .unwrap();
    let workflows_env = (
        "FENRUN_WORKFLOWS_DIR".to_owned(),
        workflows.path().display().to_string(),
    );
    let client = reqwest::Client::new();
    let mut server = Server::new(&db.url, logs.path()).with_env(vec![
        workflows_env.clone(),
        (
            fenrun::engine::month_close::PAUSE_AFTER_BATCHES_ENV.to_owned(),
            "1".to_owned(),
        ),
    ]);
    let address = server.start(&client).await;
    let store = Arc::new(db.open().await);
    let app = Http::attach(&address, store.clone()).await;
    let now = clock_now(&app).await;
    let shop = shop(&app, now).await;
    let path = format!("/v1/ops/month-close/{}", shop.month);
    // The close stops after its first batch and never answers.
    let closing = {
        let client = app.client.clone();
        let url = app.url(&path);
        let token = app.ops.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statements = app
            .store
            .statements(&fenrun::domain::ids::DistributorId::parse("a").unwrap())
            .await
            .unwrap();
        if !statements.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the close wrote nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    closing.abort();
    let record = app.store.month_close(&shop.month).await.unwrap().unwrap();
    assert!(record.finished_at.is_none(), "killed before it finished");
    assert_eq!(record.statements, 1, "one distributor per batch, one batch");
    assert_eq!(record.bonuses, 1, "a's bonus, in a's batch");

    // A fresh start (its clock at the wall clock again) resumes the close.
    let mut restarted = Server::new(&db.url, logs.path()).with_env(vec![workflows_env]);
    let address = restarted.start(&client).await;
    let app = Http { address, ..app };
    advance_to(&app, shop.after_month).await;
    let done: Value = app
        .post_json(&path, &app.ops, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["team_bonuses"], 2, "{done}");
    assert_eq!(done["statements"], 4, "{done}");
    assert!(done["finished_at"].is_string(), "{done}");
    let again: Value = app
        .post_json(&path, &app.ops, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["ran"], false);
    for (id, team) in [("a", yuan("1200.33")), ("b", yuan("1100.33"))] {
        let bonuses: Value = app
            .get(&format!("/v1/distributors/{id}/team-bonuses"), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        let items = bonuses["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{id}: {bonuses}");
        assert_eq!(money(&items[0]["amount"]), expected_bonus(team).unwrap());
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
