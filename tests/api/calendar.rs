//! The business calendar over HTTP: a hold counted over a year the
//! calendar file does not cover yet (its statutory holidays computed, its
//! notice not applied) says so in the order's answer and timeline, on the
//! ops console and in `/metrics`.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;
use crate::tax_page::{get_page, sign_in};

on_both_backends!(
    a_hold_over_a_provisional_year_says_so_in_its_answer_timeline_console_and_metrics
);

/// Tuesday 29 December 2026, 10:00 in Beijing: T+3 runs over New Year's
/// Day 2027, which the shipped calendar (2025–2026) knows only from the
/// statutory rules.
const BEFORE_NEW_YEAR: &str = "2026-12-29T02:00:00Z";

/// Ingests a one-item order of distributor `a` confirmed at `confirmed_at`.
pub(crate) async fn ingest(app: &TestApp, id: &str, confirmed_at: DateTime<Utc>) -> Value {
    let body = json!({
        "order_id": id,
        "distributor_id": "a",
        "buyer_id": "buyer-1",
        "placed_at": (confirmed_at - Duration::hours(1)).to_rfc3339(),
        "confirmed_at": confirmed_at.to_rfc3339(),
        "items": [{"sku": "S1", "category": "food", "amount": "100.00"}],
    });
    let response = app.post_json("/v1/orders", &app.ingest, &body).await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

async fn clock_now(app: &TestApp, seconds: u64) -> DateTime<Utc> {
    let moved: Value = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({"seconds": seconds}),
        )
        .await
        .json()
        .await
        .unwrap();
    moved["now"].as_str().unwrap().parse().unwrap()
}

async fn a_hold_over_a_provisional_year_says_so_in_its_answer_timeline_console_and_metrics(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("a", None, None).await;
    let started = clock_now(&app, 1).await;
    let target: DateTime<Utc> = BEFORE_NEW_YEAR.parse().unwrap();
    // Run before the end of 2026, a hold inside covered December is not
    // provisional; later, every hold is (the shipped file ends with 2026).
    if started + Duration::days(6) < target {
        let covered = ingest(&app, "covered", started).await;
        assert_eq!(covered["release_at_provisional"], false, "{covered}");
    }
    let now = if started < target {
        let seconds = u64::try_from((target - started).num_seconds()).unwrap();
        clock_now(&app, seconds).await
    } else {
        started
    };

    let answer = ingest(&app, "over-new-year", now).await;
    assert_eq!(answer["release_at_provisional"], true, "{answer}");
    if now == target {
        // Wed 30, Thu 31, New Year's Day off, the weekend: Monday 4 January.
        assert_eq!(answer["release_at"], "2027-01-03T16:00:00Z");
    }
    let view: Value = app
        .get("/v1/orders/over-new-year", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["release_at_provisional"], true);
    let ingested = view["timeline"][0]["detail"].as_str().unwrap();
    assert!(ingested.contains("provisional"), "{ingested}");

    let queues: Value = app
        .get("/v1/ops/queues", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let year = (now + Duration::days(30)).year();
    let provisional = queues["provisional_years"].as_array().unwrap();
    assert!(
        provisional
            .iter()
            .any(|entry| entry["year"] == year && entry["origin"] == "statutory"),
        "{queues}"
    );
    let cookie = sign_in(&app, &app.ops).await;
    let console = get_page(&app, "/ops", &cookie).await.text().await.unwrap();
    assert!(
        console.contains(&format!("id=\"provisional-{year}\"")),
        "{console}"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "fenrun_calendar_provisional_year{{year=\"{year}\",origin=\"statutory\"}} 1"
        )),
        "{metrics}"
    );
}
