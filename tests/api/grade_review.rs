//! The daily grade review over the real app on the simulated clock: upgrades
//! by own and by team settled sales (`any` and all), never down, effective
//! for orders confirmed after; clearing after the inactive days, a cleared
//! distributor paid nothing, reinstatement; a second run changes nothing;
//! the ledger stays clean. Amounts are computed here, from the test's own
//! plan, not read back from fenrun.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use fenrun::engine::grade_review::{GradeReview, ReviewReport};
use fenrun::service::audit::Actor;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    upgrades_follow_settled_own_and_team_sales_never_go_down_and_pay_only_later_orders,
    an_inactive_distributor_is_cleared_paid_nothing_and_can_be_reinstated,
    the_command_line_runs_the_review_and_a_second_run_changes_nothing,
    the_daily_schedule_runs_the_review_once_the_clock_passes_it,
);

/// The test's plan: gold by own OR team sales, partner by own AND team
/// sales, clearing after 90 days; the cap is high enough never to trim.
pub(crate) const PLAN: &str = r#"
name = "lifecycle-test"
default_grade = "regular"
order_cap = "50%"

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["20%", "6%", "3%"]

[grades.gold.upgrade]
own_sales = "1000.00"
team_sales = "3000.00"
any = true

[grades.partner]
display_name = "合伙人"
levels = ["25%", "8%", "3%"]

[grades.partner.upgrade]
own_sales = "2000.00"
team_sales = "5000.00"
any = false

[clearing]
inactive_days = 90
"#;

/// The simulated clock moved by `seconds` (at least 1); the new now.
pub(crate) async fn advance(app: &TestApp, seconds: i64) -> DateTime<Utc> {
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({ "seconds": seconds.max(1) }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let moved: Value = response.json().await.unwrap();
    moved["now"].as_str().unwrap().parse().unwrap()
}

/// The simulated clock's now (moved by one second).
pub(crate) async fn now(app: &TestApp) -> DateTime<Utc> {
    advance(app, 1).await
}

/// Moves the clock past `release_at` (its holds are released before the answer).
pub(crate) async fn advance_past(app: &TestApp, release_at: DateTime<Utc>) -> DateTime<Utc> {
    let now = now(app).await;
    advance(app, (release_at - now).num_seconds() + 3600).await
}

pub(crate) async fn apply_plan(app: &TestApp, plan: &str) {
    let response = app
        .post_json("/v1/admin/plans", &app.admin, &json!({ "toml": plan }))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// Ingests a one-item order of `seller` confirmed now; the answer.
pub(crate) async fn ingest(app: &TestApp, order_id: &str, seller: &str, amount: &str) -> Value {
    let at = now(app).await;
    let body = json!({
        "order_id": order_id,
        "distributor_id": seller,
        "buyer_id": format!("buyer-of-{order_id}"),
        "placed_at": (at - Duration::hours(1)).to_rfc3339(),
        "confirmed_at": at.to_rfc3339(),
        "items": [{"sku": "SKU-1", "category": "general", "amount": amount}],
    });
    let response = app.post_json("/v1/orders", &app.ingest, &body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

pub(crate) fn release_at(answer: &Value) -> DateTime<Utc> {
    answer["release_at"].as_str().unwrap().parse().unwrap()
}

/// The amount paid to `beneficiary` by an order answer ("0.00" if no line).
pub(crate) fn paid_to(answer: &Value, beneficiary: &str) -> String {
    let lines: Vec<&Value> = answer["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["beneficiary_id"] == beneficiary)
        .collect();
    let fen: i64 = lines
        .iter()
        .map(|line| fen_of(line["amount"].as_str().unwrap()))
        .sum();
    yuan(fen)
}

/// "12.34" → 1234.
pub(crate) fn fen_of(text: &str) -> i64 {
    let (yuan, fen) = text.split_once('.').unwrap();
    yuan.parse::<i64>().unwrap() * 100 + fen.parse::<i64>().unwrap()
}

pub(crate) fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// `amount` × `percent`%, half-up to the fen, computed here.
pub(crate) fn percent_of(amount: &str, percent: i64) -> String {
    let product = fen_of(amount) * percent;
    yuan((product + 50) / 100)
}

pub(crate) async fn profile(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/v1/distributors/{id}"), &app.ops).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub(crate) async fn balance(app: &TestApp, id: &str) -> Value {
    let response = app
        .get(&format!("/v1/distributors/{id}/balance"), &app.ops)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub(crate) async fn audit_actions(app: &TestApp, target: &str) -> Vec<String> {
    let response = app
        .get(&format!("/v1/audit?target={target}"), &app.admin)
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}

/// An ops action with a reason refused, changing nothing: 422
/// `reason_required` for a missing, empty or blank reason, 404 on
/// `unknown_path`, 403 for the ingest role.
pub(crate) async fn refuses_without_reason_unknown_or_ingest(
    app: &TestApp,
    path: &str,
    unknown_path: &str,
) {
    for body in [json!({}), json!({"reason": ""}), json!({"reason": "   "})] {
        let error = error_of(app.post_json(path, &app.ops, &body).await, 422).await;
        assert_eq!(error["code"], "reason_required", "{body}");
        assert_eq!(error["field"], "reason");
    }
    let reason = json!({"reason": "x"});
    error_of(app.post_json(unknown_path, &app.ops, &reason).await, 404).await;
    error_of(app.post_json(path, &app.ingest, &reason).await, 403).await;
}

/// Runs the review at `at` as the schedule does (the scheduler may run it
/// too after a clock move; both write only what still holds).
async fn review(app: &TestApp, at: DateTime<Utc>) -> ReviewReport {
    GradeReview::new(Arc::clone(&app.store))
        .run(at, &Actor::system("grade_review"))
        .await
        .expect("grade review")
}

async fn grade_of(app: &TestApp, id: &str) -> String {
    profile(app, id).await["grade"].as_str().unwrap().to_owned()
}

async fn upgrades_follow_settled_own_and_team_sales_never_go_down_and_pay_only_later_orders(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    apply_plan(&app, PLAN).await;
    // own: sells alone. lead ← t1 ← t2: lead's team is t1's and t2's sales.
    // both ← b1: partner needs own AND team.
    for (id, referrer) in [
        ("own", None),
        ("lead", None),
        ("t1", Some("lead")),
        ("t2", Some("t1")),
        ("both", None),
        ("b1", Some("both")),
    ] {
        app.create_distributor(id, referrer, None).await;
    }
    let before = ingest(&app, "own-1", "own", "1000.00").await;
    assert_eq!(paid_to(&before, "own"), percent_of("1000.00", 10));
    ingest(&app, "t1-1", "t1", "900.00").await;
    ingest(&app, "t2-1", "t2", "2200.00").await;
    let last = ingest(&app, "both-1", "both", "2500.00").await;

    // Nothing is settled inside the hold: nobody moves up.
    let at = now(&app).await;
    review(&app, at).await;
    assert_eq!(grade_of(&app, "own").await, "regular");
    assert_eq!(grade_of(&app, "lead").await, "regular");

    let at = advance_past(&app, release_at(&last)).await;
    review(&app, at).await;
    // own: 1000 own ≥ 1000 → gold (any). lead: own 0, team 900 + 2200 =
    // 3100 ≥ 3000 → gold by team alone. t1: own 900, team 3100 → gold.
    // t2: own 2200 → gold. both: own 2500 ≥ 2000 but team 2500 < 5000 →
    // not partner (all needed), gold by own.
    assert_eq!(grade_of(&app, "own").await, "gold");
    assert_eq!(grade_of(&app, "lead").await, "gold");
    assert_eq!(grade_of(&app, "t1").await, "gold");
    assert_eq!(grade_of(&app, "t2").await, "gold");
    assert_eq!(grade_of(&app, "both").await, "gold");
    assert_eq!(grade_of(&app, "b1").await, "regular");

    // The reason and the figures, in the timeline and the audit log.
    let lead = profile(&app, "lead").await;
    let event = &lead["timeline"][0];
    assert_eq!(event["kind"], "upgraded", "{lead}");
    assert_eq!(event["figures"]["to"], "gold");
    assert_eq!(event["figures"]["own_sales"], "0.00");
    assert_eq!(event["figures"]["team_sales"], "3100.00");
    assert_eq!(event["figures"]["required_team_sales"], "3000.00");
    assert_eq!(event["actor"], "system:grade_review");
    assert!(
        event["detail"]
            .as_str()
            .unwrap()
            .contains("team settled sales 3100.00"),
        "{event}"
    );
    assert_eq!(
        audit_actions(&app, "distributor:lead").await,
        ["distributor.upgrade"]
    );

    // Running it again changes nothing: no grade, no event, no audit entry.
    let again = review(&app, at).await;
    assert_eq!((again.upgraded, again.cleared), (0, 0), "{again:?}");
    assert_eq!(
        profile(&app, "lead").await["timeline"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(audit_actions(&app, "distributor:lead").await.len(), 1);

    // The order confirmed before the upgrade kept 10%; one confirmed after
    // pays gold's 20%.
    let kept = app
        .get("/v1/orders/own-1", &app.ops)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(paid_to(&kept, "own"), percent_of("1000.00", 10));
    let after = ingest(&app, "own-2", "own", "100.00").await;
    assert_eq!(paid_to(&after, "own"), percent_of("100.00", 20));

    // all conditions: b1's 2600 lifts both's team to 5100 → partner.
    let b1 = ingest(&app, "b1-1", "b1", "2600.00").await;
    // Level 2 of b1's order goes to both at gold's 6%.
    assert_eq!(paid_to(&b1, "both"), percent_of("2600.00", 6));
    let at = advance_past(&app, release_at(&b1)).await;
    review(&app, at).await;
    assert_eq!(grade_of(&app, "both").await, "partner");
    assert_eq!(grade_of(&app, "b1").await, "gold", "own 2600 ≥ 1000");

    // Never down: own's sale is refunded after release (settled 1000 → 100),
    // and own stays gold.
    let refund = app
        .post_json(
            "/v1/orders/own-1/refunds",
            &app.ingest,
            &json!({"refund_id": "r1", "amount": "900.00"}),
        )
        .await;
    assert_eq!(refund.status(), 200);
    let at = now(&app).await;
    review(&app, at).await;
    assert_eq!(grade_of(&app, "own").await, "gold");

    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn an_inactive_distributor_is_cleared_paid_nothing_and_can_be_reinstated(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    apply_plan(&app, PLAN).await;
    let start = now(&app).await;
    app.create_distributor("idle", None, None).await;
    app.create_distributor("seller", None, None).await;
    let sale = ingest(&app, "seller-1", "seller", "300.00").await;
    let sold_at = release_at(&sale);

    // 89 days after creation nobody is cleared.
    let at = advance(
        &app,
        (start + Duration::days(89) - now(&app).await).num_seconds(),
    )
    .await;
    review(&app, at).await;
    assert_eq!(profile(&app, "idle").await["status"], "active");

    // 90 days after creation (no sale ever) idle is cleared; seller's last
    // settled sale was released later, so seller is not yet.
    let at = advance(
        &app,
        (start + Duration::days(90) + Duration::hours(1) - at).num_seconds(),
    )
    .await;
    assert!(at < sold_at + Duration::days(90));
    review(&app, at).await;
    let idle = profile(&app, "idle").await;
    assert_eq!(idle["status"], "cleared", "{idle}");
    assert_eq!(idle["timeline"][0]["kind"], "cleared");
    assert_eq!(idle["timeline"][0]["figures"]["measured_from"], "created");
    assert_eq!(idle["timeline"][0]["figures"]["inactive_days"], 90);
    assert_eq!(profile(&app, "seller").await["status"], "active");
    assert_eq!(
        audit_actions(&app, "distributor:idle").await,
        ["distributor.clear"]
    );
    let twice = review(&app, at).await;
    assert_eq!((twice.upgraded, twice.cleared), (0, 0));

    // 90 days after seller's sale was released, seller is cleared too.
    let at = advance(
        &app,
        (sold_at + Duration::days(90) + Duration::hours(1) - at).num_seconds(),
    )
    .await;
    review(&app, at).await;
    let seller = profile(&app, "seller").await;
    assert_eq!(seller["status"], "cleared");
    assert_eq!(
        seller["timeline"][0]["figures"]["measured_from"],
        "last_settled_sale"
    );
    // Cleared keeps its balance.
    assert_eq!(
        balance(&app, "seller").await["available"],
        percent_of("300.00", 10)
    );

    // A cleared distributor earns nothing on a new order.
    let unpaid = ingest(&app, "idle-1", "idle", "500.00").await;
    assert_eq!(paid_to(&unpaid, "idle"), "0.00", "{unpaid}");
    assert_eq!(balance(&app, "idle").await["pending"], "0.00");

    // Reinstatement: refused without a reason, for an unknown id, for an
    // active distributor; then done, in the timeline and the audit log.
    let path = "/v1/distributors/idle/reinstate";
    refuses_without_reason_unknown_or_ingest(&app, path, "/v1/distributors/nobody/reinstate").await;
    assert_eq!(
        profile(&app, "idle").await["status"],
        "cleared",
        "refusals change nothing"
    );

    let response = app
        .post_json(
            path,
            &app.ops,
            &json!({"reason": "came back after a break"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let reinstated: Value = response.json().await.unwrap();
    assert_eq!(reinstated["status"], "active");
    let error = error_of(
        app.post_json(path, &app.ops, &json!({"reason": "again"}))
            .await,
        409,
    )
    .await;
    assert_eq!(error["code"], "not_cleared");
    let idle = profile(&app, "idle").await;
    assert_eq!(idle["timeline"][0]["kind"], "reinstated");
    assert!(
        idle["timeline"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("tok_"),
        "{idle}"
    );
    // The distributor sees the decision and the reason, not the ops token.
    let own_token = app.distributor_token("idle").await;
    let seen: Value = app
        .get("/v1/distributors/idle", &own_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["timeline"][0]["actor"], Value::Null, "{seen}");
    assert_eq!(
        seen["timeline"][0]["figures"]["reason"],
        "came back after a break"
    );
    assert_eq!(
        idle["timeline"][0]["figures"]["reason"],
        "came back after a break"
    );
    assert_eq!(
        audit_actions(&app, "distributor:idle").await,
        ["distributor.reinstate", "distributor.clear"]
    );

    // The review right after does not clear it again (measured from the
    // reinstatement), and it earns on orders confirmed from now on.
    let at = now(&app).await;
    let report = review(&app, at).await;
    assert_eq!(report.cleared, 0);
    assert_eq!(profile(&app, "idle").await["status"], "active");
    let paid = ingest(&app, "idle-2", "idle", "500.00").await;
    assert_eq!(paid_to(&paid, "idle"), percent_of("500.00", 10));

    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// `fenrun grades review --json` on the app's database; the report. The
/// command runs on the blocking pool so the app (on this test's runtime)
/// keeps serving and finishes whatever write it has begun.
async fn review_on_the_command_line(app: &TestApp) -> Value {
    let url = app.db.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fenrun"))
            .args(["grades", "review", "--json"])
            .env("FENRUN_DATABASE_URL", url)
            .env("FENRUN_SQLITE_BUSY_TIMEOUT_MS", "30000")
            .env_remove("FENRUN_CONFIG")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

async fn the_command_line_runs_the_review_and_a_second_run_changes_nothing(backend: Backend) {
    // The command reads the wall clock, so the plan is applied without
    // moving the simulated one: it is in force for the command too. Gold
    // asks for no sales at all, so the review has work without a release.
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("c1", None, None).await;
    app.create_distributor("c2", Some("c1"), Some("partner"))
        .await;
    apply_plan(
        &app,
        &PLAN.replace("own_sales = \"1000.00\"", "own_sales = \"0.00\""),
    )
    .await;

    let first = review_on_the_command_line(&app).await;
    assert_eq!(first["reviewed"], 2, "{first}");
    assert_eq!(
        first["upgraded"], 1,
        "c1 to gold; c2 stays partner: {first}"
    );
    assert_eq!(first["cleared"], 0);
    assert_eq!(grade_of(&app, "c1").await, "gold");
    assert_eq!(grade_of(&app, "c2").await, "partner");
    let event = &profile(&app, "c1").await["timeline"][0];
    assert!(
        event["actor"].as_str().unwrap().starts_with("cli:"),
        "{event}"
    );

    let second = review_on_the_command_line(&app).await;
    assert_eq!(
        (second["upgraded"].as_i64(), second["cleared"].as_i64()),
        (Some(0), Some(0)),
        "{second}"
    );
    assert_eq!(
        profile(&app, "c1").await["timeline"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn the_daily_schedule_runs_the_review_once_the_clock_passes_it(backend: Backend) {
    // No direct call here: the scheduler runs `review_grades` when the
    // simulated clock moves past 03:30 (one run for the days jumped).
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    apply_plan(&app, PLAN).await;
    app.create_distributor("sleeper", None, None).await;
    advance(&app, Duration::days(91).num_seconds()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let sleeper = loop {
        let sleeper = profile(&app, "sleeper").await;
        if sleeper["status"] == "cleared" || std::time::Instant::now() > deadline {
            break sleeper;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(sleeper["status"], "cleared", "{sleeper}");
    assert_eq!(sleeper["timeline"][0]["actor"], "system:grade_review");
    assert_eq!(sleeper["timeline"].as_array().unwrap().len(), 1);
}
