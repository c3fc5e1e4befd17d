//! Re-planning survives kill -9: `fenrun calendar apply`, run as its own
//! process against a database with thousands of holding orders, is
//! SIGKILLed again and again — at random moments, and right after it
//! committed the year while it re-plans the holds — and the running
//! service (started before any of it) finishes each interrupted re-plan in
//! its release step. In the end every order moved exactly once per
//! committed version (one timeline entry each), sits at the time the last
//! version gives, and is released then, exactly once.
//!
//! ```text
//! 2,000 holds ─► apply (clean, to time it) ─► ×10: apply ─► SIGKILL (random, or once the
//!     year is committed) ─► the service's release step finishes a pending re-plan
//! ─► every order: release time of the last version, one entry per version ─► release, once each
//! ```
//!
//! `FENRUN_CALENDAR_CRASH_ORDERS` sets the number of holds (2,000 in CI);
//! the seed is printed and `FENRUN_CALENDAR_CRASH_SEED` replays it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::json;

use crate::calendar_years::{advance_to, first_monday, midnight_utc, ten_am, test_year};
use crate::crash::Rng;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(replanning_killed_mid_way_finishes_exactly_once);

/// Holding orders re-planned on every application.
const DEFAULT_ORDERS: usize = 2_000;
/// Applications killed.
const KILLS: usize = 10;
/// Concurrent clients filling the holds.
const CLIENTS: usize = 16;
/// How long one `calendar apply` may take before the test gives up on it.
const APPLY_DEADLINE: Duration = Duration::from_secs(120);

/// The two notices the applications alternate between, so that each
/// committed version moves every hold: the first puts Tuesday off (a
/// Monday confirmation releases on Friday, not Thursday), the second
/// Tuesday and Wednesday (Monday after).
fn notice(year: i32, monday: NaiveDate, second: bool) -> (String, NaiveDate) {
    let tuesday = monday + chrono::Days::new(1);
    let (to, release) = if second {
        (monday + chrono::Days::new(2), monday + chrono::Days::new(7))
    } else {
        (tuesday, monday + chrono::Days::new(4))
    };
    let source = if second {
        "测试〔B〕号"
    } else {
        "测试〔A〕号"
    };
    (
        format!(
            "[years.{year}]\nsource = \"{source}\"\nholidays = [{{ name = \"测试假\", from = {tuesday}, to = {to} }}]\n"
        ),
        release,
    )
}

fn spawn_apply(app: &TestApp, file: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["calendar", "apply", file.to_str().unwrap()])
        .env("FENRUN_DATABASE_URL", &app.db.url)
        .env("FENRUN_LOG_FILTER", "warn")
        // A loaded CI machine's fsyncs can hold SQLite's write lock for
        // seconds; the command waits for it rather than fail.
        .env("FENRUN_SQLITE_BUSY_TIMEOUT_MS", "30000")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait(child: &mut Child) {
    let deadline = Instant::now() + APPLY_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "calendar apply did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn fill_holds(app: &TestApp, orders: usize, confirmed_at: chrono::DateTime<chrono::Utc>) {
    let limiter = Arc::new(tokio::sync::Semaphore::new(CLIENTS));
    let mut sending = tokio::task::JoinSet::new();
    for number in 0..orders {
        let permit = limiter.clone().acquire_owned().await.unwrap();
        let client = app.client.clone();
        let url = app.url("/v1/orders");
        let token = app.ingest.clone();
        sending.spawn(async move {
            let _permit = permit;
            let body = json!({
                "order_id": format!("c{number}"),
                "distributor_id": "a",
                "buyer_id": format!("buyer-{number}"),
                "placed_at": confirmed_at.to_rfc3339(),
                "confirmed_at": confirmed_at.to_rfc3339(),
                "items": [{"sku": "S1", "category": "food", "amount": "100.00"}],
            });
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        });
    }
    while let Some(done) = sending.join_next().await {
        done.unwrap();
    }
}

async fn replanning_killed_mid_way_finishes_exactly_once(backend: Backend) {
    let orders = std::env::var("FENRUN_CALENDAR_CRASH_ORDERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_ORDERS);
    let seed = std::env::var("FENRUN_CALENDAR_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1)
        });
    eprintln!("calendar crash on {backend:?}: {orders} holds, FENRUN_CALENDAR_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);

    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    app.create_distributor("a", None, None).await;
    let year = test_year();
    let monday = first_monday(year);
    advance_to(&app, ten_am(monday)).await;
    fill_holds(&app, orders, ten_am(monday)).await;

    let dir = tempfile::tempdir().unwrap();
    let file_of = |second: bool| {
        let path = dir.path().join(format!("{year}-{second}.toml"));
        std::fs::write(&path, notice(year, monday, second).0).unwrap();
        path
    };
    // A clean application first, to time one.
    let started = Instant::now();
    let mut clean = spawn_apply(&app, &file_of(false));
    wait(&mut clean).await;
    assert!(clean.wait().unwrap().success());
    let one_apply = started.elapsed();

    let mut killed_while_replanning = 0;
    for kill in 0..KILLS {
        let versions = app.store.calendar_years("cn").await.unwrap();
        let last_is_first = versions
            .last()
            .is_some_and(|version| version.source.contains("〔A〕"));
        let mut child = spawn_apply(&app, &file_of(last_is_first));
        let committed_before = versions.len();
        if kill % 2 == 0 {
            // At a random moment of a whole application.
            let delay = rng.below(one_apply.as_millis() as u64 + 1);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        } else {
            // Once the year is committed: the re-plan is under way.
            let deadline = Instant::now() + APPLY_DEADLINE;
            while app.store.calendar_years("cn").await.unwrap().len() == committed_before
                && child.try_wait().unwrap().is_none()
            {
                assert!(Instant::now() < deadline, "calendar apply did not commit");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if !app.store.pending_replans().await.unwrap().is_empty() {
            killed_while_replanning += 1;
        }
        // The service's release step (a clock tick runs it) finishes the re-plan.
        let tick: serde_json::Value = app
            .post_json(
                "/v1/admin/clock/advance",
                &app.admin,
                &json!({"seconds": 1}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert!(tick["now"].is_string(), "{tick}");
        assert!(
            app.store.pending_replans().await.unwrap().is_empty(),
            "a re-plan is still pending after the release step"
        );
    }
    eprintln!(
        "calendar crash: {KILLS} kills, {killed_while_replanning} after the year was committed and before its re-plan was"
    );
    assert!(
        killed_while_replanning > 0,
        "no kill landed between the year's commit and its re-plan's (seed {seed})"
    );

    let versions = app.store.calendar_years("cn").await.unwrap();
    let last = versions.last().unwrap();
    let release = notice(year, monday, last.source.contains("〔B〕")).1;
    for number in 0..orders {
        let order = app
            .store
            .order(&format!("c{number}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.release_at, midnight_utc(release), "c{number}");
        let moves = order
            .timeline
            .iter()
            .filter(|event| event.outcome == "replanned")
            .count();
        assert_eq!(
            moves,
            versions.len(),
            "c{number} moved {moves} times for {} versions (seed {seed})",
            versions.len()
        );
    }
    advance_to(&app, midnight_utc(release) + chrono::Duration::hours(1)).await;
    for number in 0..orders {
        let order = app
            .store
            .order(&format!("c{number}"))
            .await
            .unwrap()
            .unwrap();
        let releases = order
            .timeline
            .iter()
            .filter(|event| event.outcome == "released")
            .count();
        assert_eq!(releases, 1, "c{number} (seed {seed})");
    }
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}
