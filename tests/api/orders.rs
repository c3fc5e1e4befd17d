//! The order-settlement workflow over HTTP: ingest, hold, release, refunds,
//! clawback, timeline, commission listing — on a simulated clock.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    an_order_is_held_and_released_after_three_business_days,
    replaying_an_order_answers_the_same_and_a_different_body_conflicts,
    bad_orders_are_refused_and_change_nothing,
    a_refund_inside_the_hold_recomputes_and_a_full_refund_cancels,
    a_refund_after_the_release_claws_back_and_may_leave_a_debt,
    bad_refunds_are_refused_and_change_nothing,
    commissions_are_listed_with_their_source_page_by_page,
    the_clock_endpoint_exists_only_with_a_simulated_clock,
    a_due_hold_is_released_by_its_queued_job,
    times_outside_the_window_are_refused_naming_the_field,
    one_order_the_database_refuses_fails_only_itself,
);

async fn simulated(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("a", None, Some("partner")).await;
    app.create_distributor("b", Some("a"), Some("gold")).await;
    app.create_distributor("c", Some("b"), None).await;
    app
}

fn order(id: &str, seller: &str, confirmed_at: DateTime<Utc>, items: Value) -> Value {
    json!({
        "order_id": id,
        "distributor_id": seller,
        "buyer_id": "buyer-1",
        "placed_at": (confirmed_at - Duration::days(2)).to_rfc3339(),
        "confirmed_at": confirmed_at.to_rfc3339(),
        "items": items,
    })
}

async fn ingest(app: &TestApp, body: &Value) -> Value {
    let response = app.post_json("/v1/orders", &app.ingest, body).await;
    assert_eq!(response.status(), 202, "{body}");
    response.json().await.unwrap()
}

async fn balance(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/distributors/{id}/balance"), &app.ops)
        .await
        .json()
        .await
        .unwrap()
}

async fn advance_days(app: &TestApp, days: u32) -> Value {
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({"days": days}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn refund(app: &TestApp, order_id: &str, body: Value) -> reqwest::Response {
    app.post_json(
        &format!("/v1/orders/{order_id}/refunds"),
        &app.ingest,
        &body,
    )
    .await
}

async fn an_order_is_held_and_released_after_three_business_days(backend: Backend) {
    let app = simulated(backend).await;
    let confirmed = Utc::now();
    let answer = ingest(
        &app,
        &order(
            "o1",
            "c",
            confirmed,
            json!([{"sku": "S1", "category": "food", "amount": "100.00"}]),
        ),
    )
    .await;
    assert_eq!(answer["state"], "holding");
    assert_eq!(answer["plan_version"], 1);
    let commissions: Vec<(String, String)> = answer["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["beneficiary_id"].as_str().unwrap().to_owned(),
                line["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Default plan: regular 10% at level 1, gold 6% at level 2, partner 3% at level 3.
    assert_eq!(
        commissions,
        [
            ("c".into(), "10.00".into()),
            ("b".into(), "6.00".into()),
            ("a".into(), "3.00".into())
        ]
    );
    let release_at: DateTime<Utc> = answer["release_at"].as_str().unwrap().parse().unwrap();
    assert!(
        release_at > confirmed + Duration::days(2),
        "T+3 business days, at local midnight"
    );
    assert_eq!(balance(&app, "c").await["pending"], "10.00");
    assert_eq!(balance(&app, "c").await["available"], "0.00");

    let moved = advance_days(&app, 1).await;
    assert_eq!(moved["released"], 0, "one day is not enough");
    let moved = advance_days(&app, 9).await;
    assert_eq!(moved["released"], 1);
    let c = balance(&app, "c").await;
    assert_eq!(
        (c["pending"].as_str(), c["available"].as_str()),
        (Some("0.00"), Some("10.00"))
    );
    assert_eq!(balance(&app, "a").await["available"], "3.00");
    let view: Value = app
        .get("/v1/orders/o1", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "released");
    let steps: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["ingest", "release"]);
    assert_eq!(view["timeline"][1]["attempt"], 1);
    assert!(
        view["commissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|line| line["state"] == "released")
    );
    // Moving the clock again releases nothing twice.
    assert_eq!(advance_days(&app, 5).await["released"], 0);
    assert_eq!(balance(&app, "c").await["available"], "10.00");
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn replaying_an_order_answers_the_same_and_a_different_body_conflicts(backend: Backend) {
    let app = simulated(backend).await;
    let body = order(
        "o1",
        "c",
        Utc::now(),
        json!([{"sku": "S1", "category": "food", "amount": "50.00"}]),
    );
    let first = ingest(&app, &body).await;
    let again = ingest(&app, &body).await;
    assert_eq!(first, again);
    let mut other = body.clone();
    other["items"][0]["amount"] = json!("51.00");
    let error = error_of(app.post_json("/v1/orders", &app.ingest, &other).await, 409).await;
    assert_eq!(error["code"], "order_conflict");
    assert_eq!(balance(&app, "c").await["pending"], "5.00", "credited once");
    // Only the ingest role sends orders.
    error_of(app.post_json("/v1/orders", &app.ops, &body).await, 403).await;
}

async fn bad_orders_are_refused_and_change_nothing(backend: Backend) {
    let app = simulated(backend).await;
    let now = Utc::now();
    let item = json!([{"sku": "S1", "category": "food", "amount": "10.00"}]);
    let cases = [
        (
            order("o1", "ghost", now, item.clone()),
            422,
            "unknown_distributor",
        ),
        (order("o2", "c", now, json!([])), 422, "no_items"),
        (
            order(
                "o3",
                "c",
                now,
                json!([{"sku": "S1", "category": "food", "amount": "1.234"}]),
            ),
            400,
            "invalid_amount",
        ),
        (
            order(
                "o4",
                "c",
                now,
                json!([{"sku": "S1", "category": "food", "amount": "-5.00"}]),
            ),
            400,
            "invalid_amount",
        ),
        (
            order(
                "o5",
                "c",
                now,
                json!([{"sku": "S1", "category": "food", "amount": "abc"}]),
            ),
            400,
            "invalid_amount",
        ),
        (
            order(
                "o6",
                "c",
                now,
                json!([{"sku": "", "category": "food", "amount": "1.00"}]),
            ),
            400,
            "invalid_field",
        ),
    ];
    for (body, status, code) in cases {
        let error = error_of(
            app.post_json("/v1/orders", &app.ingest, &body).await,
            status,
        )
        .await;
        assert_eq!(error["code"], code, "{body}");
    }
    let mut malformed_time = order("o7", "c", now, item.clone());
    malformed_time["confirmed_at"] = json!("yesterday");
    let error = error_of(
        app.post_json("/v1/orders", &app.ingest, &malformed_time)
            .await,
        400,
    )
    .await;
    assert_eq!(error["field"], "confirmed_at");
    let mut backwards = order("o8", "c", now, item.clone());
    backwards["placed_at"] = json!((now + Duration::hours(1)).to_rfc3339());
    let error = error_of(
        app.post_json("/v1/orders", &app.ingest, &backwards).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "confirmed_before_placed");
    let error = error_of(
        app.post_raw("/v1/orders", &app.ingest, "{\"order_id\": ")
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "malformed_json");
    for id in ["o1", "o2", "o3", "o7", "o8"] {
        error_of(app.get(&format!("/v1/orders/{id}"), &app.ops).await, 404).await;
    }
    assert_eq!(balance(&app, "c").await["pending"], "0.00");
    assert_eq!(app.store.verify_ledger().await.unwrap().transfers, 0);
}

async fn a_refund_inside_the_hold_recomputes_and_a_full_refund_cancels(backend: Backend) {
    let app = simulated(backend).await;
    let items = json!([
        {"sku": "S1", "category": "food", "amount": "60.00"},
        {"sku": "S2", "category": "food", "amount": "40.00"},
    ]);
    ingest(&app, &order("o1", "c", Utc::now(), items)).await;
    assert_eq!(balance(&app, "c").await["pending"], "10.00");
    let after = refund(
        &app,
        "o1",
        json!({"refund_id": "r1", "amount": "40.00", "sku": "S2"}),
    )
    .await;
    assert_eq!(after.status(), 200);
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["state"], "holding");
    assert_eq!(after["refunded"], "40.00");
    assert_eq!(balance(&app, "c").await["pending"], "6.00");
    assert_eq!(balance(&app, "b").await["pending"], "3.60");
    // The same refund again changes nothing.
    let again = refund(
        &app,
        "o1",
        json!({"refund_id": "r1", "amount": "40.00", "sku": "S2"}),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(balance(&app, "c").await["pending"], "6.00");
    let cancelled: Value = refund(&app, "o1", json!({"refund_id": "r2", "amount": "60.00"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    for id in ["a", "b", "c"] {
        assert_eq!(balance(&app, id).await["pending"], "0.00", "{id}");
    }
    assert!(
        cancelled["commissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|line| line["state"] == "cancelled")
    );
    advance_days(&app, 10).await;
    assert_eq!(
        balance(&app, "c").await["available"],
        "0.00",
        "a cancelled order never releases"
    );
    let outcomes: Vec<&str> = cancelled["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["pending_posted", "recomputed", "cancelled"]);
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn a_refund_after_the_release_claws_back_and_may_leave_a_debt(backend: Backend) {
    let app = simulated(backend).await;
    ingest(
        &app,
        &order(
            "o1",
            "c",
            Utc::now(),
            json!([{"sku": "S1", "category": "food", "amount": "100.00"}]),
        ),
    )
    .await;
    advance_days(&app, 10).await;
    assert_eq!(balance(&app, "c").await["available"], "10.00");
    // c spends part of it (a manual debit stands in for a withdrawal here).
    let debit = app
        .client
        .post(app.url("/v1/admin/adjustments"))
        .bearer_auth(&app.admin)
        .header("idempotency-key", "spend")
        .json(&json!({"distributor_id": "c", "amount": "8.00", "direction": "debit", "reason": "withdrawn"}))
        .send()
        .await
        .unwrap();
    assert_eq!(debit.status(), 201);
    let after: Value = refund(&app, "o1", json!({"refund_id": "r1", "amount": "100.00"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["state"], "released",
        "a released order stays released"
    );
    let c = balance(&app, "c").await;
    assert_eq!(c["available"], "-8.00");
    assert_eq!(c["debt"], "8.00");
    assert_eq!(balance(&app, "a").await["available"], "0.00");
    assert_eq!(after["timeline"][2]["outcome"], "clawed_back");
    // A release smaller than the debt repays part of it.
    ingest(
        &app,
        &order(
            "o1b",
            "c",
            Utc::now() + Duration::days(10),
            json!([{"sku": "S1", "category": "food", "amount": "50.00"}]),
        ),
    )
    .await;
    advance_days(&app, 10).await;
    let c = balance(&app, "c").await;
    assert_eq!(
        (c["available"].as_str(), c["debt"].as_str()),
        (Some("-3.00"), Some("3.00"))
    );
    // Later commission repays the debt first.
    ingest(
        &app,
        &order(
            "o2",
            "c",
            Utc::now() + Duration::days(20),
            json!([{"sku": "S1", "category": "food", "amount": "200.00"}]),
        ),
    )
    .await;
    advance_days(&app, 10).await;
    let c = balance(&app, "c").await;
    assert_eq!(
        (c["available"].as_str(), c["debt"].as_str()),
        (Some("17.00"), Some("0.00"))
    );
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn bad_refunds_are_refused_and_change_nothing(backend: Backend) {
    let app = simulated(backend).await;
    ingest(
        &app,
        &order(
            "o1",
            "c",
            Utc::now(),
            json!([{"sku": "S1", "category": "food", "amount": "100.00"}]),
        ),
    )
    .await;
    let error = error_of(
        refund(&app, "ghost", json!({"refund_id": "r1", "amount": "1.00"})).await,
        404,
    )
    .await;
    assert_eq!(error["code"], "not_found");
    let error = error_of(
        refund(&app, "o1", json!({"refund_id": "r1", "amount": "100.01"})).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "refund_exceeds_remaining");
    let error = error_of(
        refund(
            &app,
            "o1",
            json!({"refund_id": "r1", "amount": "1.00", "sku": "NOPE"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error["code"], "unknown_sku");
    let error = error_of(
        refund(&app, "o1", json!({"refund_id": "r1", "amount": "1.005"})).await,
        400,
    )
    .await;
    assert_eq!(error["code"], "invalid_amount");
    assert_eq!(
        refund(&app, "o1", json!({"refund_id": "r1", "amount": "10.00"}))
            .await
            .status(),
        200
    );
    let error = error_of(
        refund(&app, "o1", json!({"refund_id": "r1", "amount": "20.00"})).await,
        409,
    )
    .await;
    assert_eq!(error["code"], "refund_conflict");
    let error = error_of(
        refund(&app, "o1", json!({"refund_id": "r2", "amount": "90.01"})).await,
        422,
    )
    .await;
    assert_eq!(error["code"], "refund_exceeds_remaining");
    let view: Value = app
        .get("/v1/orders/o1", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["refunded"], "10.00");
    assert_eq!(balance(&app, "c").await["pending"], "9.00");
}

async fn commissions_are_listed_with_their_source_page_by_page(backend: Backend) {
    let app = simulated(backend).await;
    for number in 1..=3 {
        ingest(
            &app,
            &order(
                &format!("o{number}"),
                "c",
                Utc::now(),
                json!([{"sku": "S1", "category": "food", "amount": "10.00"}]),
            ),
        )
        .await;
    }
    let c = app.distributor_token("c").await;
    let first: Value = app
        .get("/v1/distributors/c/commissions?limit=2", &c)
        .await
        .json()
        .await
        .unwrap();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["order_id"], "o3", "newest first");
    assert_eq!(
        (
            items[0]["level"].as_u64(),
            items[0]["rate"].as_str(),
            items[0]["base"].as_str()
        ),
        (Some(1), Some("10%"), Some("10.00"))
    );
    assert_eq!(items[0]["plan_version"], 1);
    assert_eq!(items[0]["state"], "pending");
    let before = first["next_before"].as_i64().unwrap();
    let rest: Value = app
        .get(
            &format!("/v1/distributors/c/commissions?limit=2&before={before}"),
            &c,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_before"].is_null());
    let a: Value = app
        .get("/v1/distributors/a/commissions", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        a["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|line| line["level"] == 3)
    );
    error_of(app.get("/v1/distributors/a/commissions", &c).await, 403).await;
}

async fn the_clock_endpoint_exists_only_with_a_simulated_clock(backend: Backend) {
    let app = spawn_app(backend).await;
    let error = error_of(
        app.post_json("/v1/admin/clock/advance", &app.admin, &json!({"days": 1}))
            .await,
        404,
    )
    .await;
    assert_eq!(error["code"], "not_found");
    let simulated = simulated(backend).await;
    error_of(
        simulated
            .post_json(
                "/v1/admin/clock/advance",
                &simulated.ops,
                &json!({"days": 1}),
            )
            .await,
        403,
    )
    .await;
    error_of(
        simulated
            .post_json("/v1/admin/clock/advance", &simulated.admin, &json!({}))
            .await,
        400,
    )
    .await;
}

/// A workflows folder whose hold is 0 business days (release at 00:00 of the
/// confirmation's own date, already past) and whose sweep runs once a year, so
/// only the order's apalis job can release it.
fn workflows_releasing_at_once() -> tempfile::TempDir {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("calendars")).unwrap();
    std::fs::copy(
        source.join("calendars/cn.toml"),
        dir.path().join("calendars/cn.toml"),
    )
    .unwrap();
    let definition = std::fs::read_to_string(source.join("order-settlement.toml"))
        .unwrap()
        .replace("hold_business_days = 3", "hold_business_days = 0");
    assert!(definition.contains("hold_business_days = 0"));
    std::fs::write(dir.path().join("order-settlement.toml"), definition).unwrap();
    std::fs::write(
        dir.path().join("schedules.toml"),
        "time_zone = \"Asia/Shanghai\"\n[[schedules]]\nname = \"release_sweep\"\njob = \"release_due_holds\"\ncron = \"0 0 0 1 1 *\"\n",
    )
    .unwrap();
    dir
}

async fn a_due_hold_is_released_by_its_queued_job(backend: Backend) {
    let workflows = workflows_releasing_at_once();
    let folder = workflows.path().to_path_buf();
    let app = spawn_app_with(backend, move |settings| settings.workflows_dir = folder).await;
    app.create_distributor("a", None, None).await;
    let answer = ingest(
        &app,
        &order(
            "o1",
            "a",
            Utc::now(),
            json!([{"sku": "S1", "category": "food", "amount": "30.00"}]),
        ),
    )
    .await;
    let release_at: DateTime<Utc> = answer["release_at"].as_str().unwrap().parse().unwrap();
    assert!(release_at <= Utc::now(), "a hold of 0 days is due at once");
    // The worker polls its queue every second; bounded wait.
    let mut view = Value::Null;
    for _ in 0..100 {
        view = app
            .get("/v1/orders/o1", &app.ops)
            .await
            .json()
            .await
            .unwrap();
        if view["state"] == "released" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(view["state"], "released", "{view}");
    assert_eq!(
        view["timeline"][1]["detail"],
        "pending → available (job order.release)"
    );
    assert_eq!(balance(&app, "a").await["available"], "3.00");
}

/// A far-future `confirmed_at` once released its hold at once (times were
/// compared as text); an ancient one answered 500. Both are refused at the
/// edge now, against the workflow clock, and nothing is written.
async fn times_outside_the_window_are_refused_naming_the_field(backend: Backend) {
    let app = simulated(backend).await;
    let now = Utc::now();
    let item = json!([{"sku": "S1", "category": "food", "amount": "10.00"}]);
    let with_times = |id: &str, placed: &str, confirmed: &str| {
        let mut body = order(id, "c", now, item.clone());
        body["placed_at"] = json!(placed);
        body["confirmed_at"] = json!(confirmed);
        body
    };
    let day_ahead_and_a_minute = (now + Duration::days(1) + Duration::minutes(1)).to_rfc3339();
    let too_old = (now - Duration::days(181)).to_rfc3339();
    let recent = (now - Duration::days(1)).to_rfc3339();
    let cases = [
        (
            with_times("t1", &recent, &day_ahead_and_a_minute),
            "confirmed_at",
        ),
        (
            with_times("t2", &recent, "9999-12-31T23:59:59+08:00"),
            "confirmed_at",
        ),
        (with_times("t3", &too_old, &too_old), "confirmed_at"),
        (
            with_times("t4", "0001-01-01T00:00:00Z", &now.to_rfc3339()),
            "placed_at",
        ),
        (with_times("t5", &too_old, &now.to_rfc3339()), "placed_at"),
        // The probe's case: as text, a year past 9999 sorted before 2026.
        (
            with_times("t6", &recent, "+10000-01-01T00:00:00Z"),
            "confirmed_at",
        ),
    ];
    for (body, field) in &cases {
        let error = error_of(app.post_json("/v1/orders", &app.ingest, body).await, 422).await;
        assert_eq!(error["code"], "time_out_of_range", "{body}");
        assert_eq!(error["field"], *field, "{body}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    for id in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        error_of(app.get(&format!("/v1/orders/{id}"), &app.ops).await, 404).await;
    }
    assert_eq!(balance(&app, "c").await["pending"], "0.00");

    // Within the window, up to a day ahead: accepted, and held its full T+3.
    let answer = ingest(
        &app,
        &order("t7", "c", now + Duration::hours(23), item.clone()),
    )
    .await;
    let release_at: DateTime<Utc> = answer["release_at"].as_str().unwrap().parse().unwrap();
    assert!(release_at > now + Duration::days(3), "{answer}");
    // The window moves with the workflow clock, not the wall clock.
    advance_days(&app, 10).await;
    ingest(
        &app,
        &order("t8", "c", now + Duration::days(10), item.clone()),
    )
    .await;
}

/// Installs a trigger that makes the database refuse one order id, the way
/// an unforeseen bad row would fail a whole group-commit batch.
async fn refuse_order_in_database(app: &TestApp, order_id: &str) {
    use sqlx::Connection;
    let url = &app.db.url;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "create trigger orders_poison before insert on orders when new.order_id = '{order_id}' \
             begin select raise(abort, 'poison order'); end"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "create function refuse_poison() returns trigger language plpgsql as $$ \
             begin if new.order_id = '{order_id}' then raise exception 'poison order'; end if; return new; end $$"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "create trigger orders_poison before insert on orders for each row execute function refuse_poison()",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// A group-commit batch that the database refuses is written again order by
/// order: the poison order gets its error, every valid one is accepted.
async fn one_order_the_database_refuses_fails_only_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("a", None, None).await;
    refuse_order_in_database(&app, "poison").await;
    let now = Utc::now();
    let item = json!([{"sku": "S1", "category": "food", "amount": "100.00"}]);
    let ids: Vec<String> = (0..24)
        .map(|n| {
            if n == 7 {
                "poison".to_owned()
            } else {
                format!("ok-{n}")
            }
        })
        .collect();
    let requests = ids.iter().map(|id| {
        let body = order(id, "a", now, item.clone());
        let app = &app;
        async move {
            (
                app.post_json("/v1/orders", &app.ingest, &body)
                    .await
                    .status()
                    .as_u16(),
                id,
            )
        }
    });
    for (status, id) in futures::future::join_all(requests).await {
        let expected = if id == "poison" { 500 } else { 202 };
        assert_eq!(status, expected, "order {id}");
    }
    error_of(app.get("/v1/orders/poison", &app.ops).await, 404).await;
    for id in ids.iter().filter(|id| *id != "poison") {
        assert_eq!(
            app.get(&format!("/v1/orders/{id}"), &app.ops)
                .await
                .status(),
            200,
            "{id}"
        );
    }
    // 23 orders × 100.00 at the default plan's level-1 rate, each once.
    let pending: Value = balance(&app, "a").await;
    let one: Value = app
        .get("/v1/orders/ok-0", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let per_order: rust_decimal::Decimal = one["commissions"][0]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let total: rust_decimal::Decimal = pending["pending"].as_str().unwrap().parse().unwrap();
    assert_eq!(total, per_order * rust_decimal::Decimal::from(23));
}
