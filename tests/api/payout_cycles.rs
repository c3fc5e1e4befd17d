//! Settlement cycles (SPEC §2.4, issue 15 item 4) on the simulated clock:
//! a standard withdrawal waits for its cycle's cut-off and is paid once the
//! clock passes it; an express one is paid at once with its fee; one approved
//! after its cut-off goes at once; a cancelled one is never sent; a weekly
//! cycle waits for its weekday.

// Amounts in fen are written yuan_fen (`2560_00` is 2,560.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, SubsecRound, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Asia::Shanghai;
use fenrun::domain::ids::WithdrawalId;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{
    advance_days, balance, funded_distributor, request, sandbox, wait_for_state, withdrawal,
};

on_both_backends!(
    a_standard_withdrawal_waits_for_the_daily_cutoff_and_an_express_one_goes_at_once,
    a_withdrawal_approved_after_its_cutoff_goes_at_once,
    a_withdrawal_cancelled_before_its_cutoff_is_never_sent,
    a_weekly_cycle_waits_for_its_weekday,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// The app on the simulated clock with the shipped cycle (daily, 15:00
/// Asia/Shanghai), or the workflows of `workflows_dir`.
async fn spawn_with_cycle(backend: Backend, workflows_dir: Option<PathBuf>) -> TestApp {
    spawn_app_with(backend, move |settings| {
        settings.simulated_clock = true;
        settings.standard_withdrawals_at_once = false;
        if let Some(dir) = workflows_dir {
            settings.workflows_dir = dir;
        }
    })
    .await
}

async fn advance_seconds(app: &TestApp, seconds: i64) -> DateTime<Utc> {
    advance_clock(&app.client, &app.address, &app.admin, seconds).await
}

/// Moves the simulated clock of the server at `address` by `seconds` (as
/// `admin`); returns its time then.
pub(crate) async fn advance_clock(
    client: &reqwest::Client,
    address: &str,
    admin: &str,
    seconds: i64,
) -> DateTime<Utc> {
    let response = client
        .post(format!("{address}/v1/admin/clock/advance"))
        .bearer_auth(admin)
        .json(&json!({"seconds": seconds}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    DateTime::parse_from_rfc3339(answer["now"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

/// Moves the clock to the first instant at or after `at` (the simulated
/// clock keeps the sub-second part it started with); returns it.
async fn advance_until(app: &TestApp, now: DateTime<Utc>, at: DateTime<Utc>) -> DateTime<Utc> {
    let gap = at - now;
    let seconds = gap.num_seconds() + i64::from(gap.subsec_nanos() > 0);
    let reached = advance_seconds(app, seconds).await;
    assert!(reached >= at && reached - at < chrono::Duration::seconds(1));
    reached
}

/// Moves the clock to the next `hh:00` Shanghai time (on `weekday` when
/// given); returns the clock's time then, within a second after it.
async fn advance_to_local(app: &TestApp, weekday: Option<Weekday>, hour: u32) -> DateTime<Utc> {
    let now = advance_seconds(app, 1).await;
    let local = now.with_timezone(&Shanghai);
    let mut day = local.date_naive();
    // Bounded: a weekday comes within eight days.
    for _ in 0..8 {
        let at = Shanghai
            .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()))
            .unwrap()
            .to_utc();
        if at > now && weekday.is_none_or(|weekday| day.weekday() == weekday) {
            return advance_until(app, now, at).await;
        }
        day = day.succ_opt().unwrap();
    }
    panic!("no {weekday:?} {hour}:00 within a week of {now}");
}

/// `hour`:00 Shanghai time on the Shanghai day of `at`.
fn local_on(at: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let day = at.with_timezone(&Shanghai).date_naive();
    Shanghai
        .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()))
        .unwrap()
        .to_utc()
}

fn time_of(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .to_utc()
}

fn body(distributor: &str, amount: &str, account: &str, speed: &str) -> Value {
    json!({"distributor_id": distributor, "amount": amount, "payout_account_id": account, "speed": speed})
}

/// Gives the transfer worker time to (wrongly) send, then checks it did not.
async fn stays_approved(app: &TestApp, id: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(withdrawal(app, id).await["state"], "approved");
}

async fn a_standard_withdrawal_waits_for_the_daily_cutoff_and_an_express_one_goes_at_once(
    backend: Backend,
) {
    let app = spawn_with_cycle(backend, None).await;
    let (token, account) = funded_distributor(&app, "sara", "2000.00", OPENID).await;
    advance_days(&app, 4).await;
    let ten_am = advance_to_local(&app, None, 10).await;
    let cutoff = local_on(ten_am, 15);

    let quote: Value = app
        .post_json(
            "/v1/withdrawals/quote",
            &token,
            &body("sara", "500.00", &account, "standard"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(time_of(&quote["send_after"]), cutoff);
    assert_eq!(quote["cycle"], "daily 15:00 Asia/Shanghai");

    let response = request(
        &app,
        &token,
        "std",
        &body("sara", "500.00", &account, "standard"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["state"], "approved");
    assert_eq!(created["fee"], "0.00");
    assert_eq!(time_of(&created["send_after"]), cutoff);
    assert_eq!(created["cycle"], "daily 15:00 Asia/Shanghai");
    let standard = created["id"].as_str().unwrap().to_owned();

    // The express one goes at once and pays the fee (0.5% of 500.00); its
    // tax is the month's (1,000.00 − 800) × 20% less the 0.00 withheld.
    let response = request(
        &app,
        &token,
        "exp",
        &body("sara", "500.00", &account, "express"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let express: Value = response.json().await.unwrap();
    // Stored to the microsecond.
    assert_eq!(time_of(&express["send_after"]), ten_am.trunc_subsecs(6));
    assert_eq!(express["cycle"], "express");
    assert_eq!(
        (
            express["tax"].as_str(),
            express["fee"].as_str(),
            express["net"].as_str()
        ),
        (Some("40.00"), Some("2.50"), Some("457.50"))
    );
    let paid = wait_for_state(&app, express["id"].as_str().unwrap(), "paid").await;
    assert_eq!(paid["fee"], "2.50");
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 457_50);

    // The standard one waits, and its timeline says until when; the
    // distributor sees the same, and so does ops' list.
    stays_approved(&app, &standard).await;
    let shown = withdrawal(&app, &standard).await;
    let scheduled: Vec<&Value> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["outcome"] == "scheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{shown:#}");
    let detail = scheduled[0]["detail"].as_str().unwrap();
    assert!(detail.contains("daily 15:00 Asia/Shanghai"), "{detail}");
    assert!(detail.contains(&cutoff.to_rfc3339()), "{detail}");
    let theirs: Value = app
        .get(&format!("/v1/withdrawals/{standard}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(time_of(&theirs["send_after"]), cutoff);
    assert_eq!(theirs["cycle"], "daily 15:00 Asia/Shanghai");
    let waiting: Value = app
        .get("/v1/withdrawals?state=approved", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let listed = waiting
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == standard.as_str())
        .unwrap_or_else(|| panic!("{waiting:#}"));
    assert_eq!(time_of(&listed["send_after"]), cutoff);

    // Its transfer step, run early (as a queue whose clock is ahead would),
    // sends nothing.
    app.withdrawals
        .run_transfer(&WithdrawalId::parse(standard.as_str()).unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(withdrawal(&app, &standard).await["state"], "approved");

    // One second before the cut-off it still waits; at the cut-off it goes.
    let before = advance_until(&app, ten_am, cutoff - chrono::Duration::seconds(1)).await;
    assert!(before < cutoff);
    stays_approved(&app, &standard).await;
    advance_until(&app, before, cutoff).await;
    wait_for_state(&app, &standard, "paid").await;
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 457_50 + 500_00);
    assert_eq!(balance(&app, "sara").await["withdrawn_total"], "1000.00");
}

async fn a_withdrawal_approved_after_its_cutoff_goes_at_once(backend: Backend) {
    let app = spawn_with_cycle(backend, None).await;
    let (token, account) = funded_distributor(&app, "tom", "5000.00", OPENID).await;
    advance_days(&app, 4).await;
    let ten_am = advance_to_local(&app, None, 10).await;
    let cutoff = local_on(ten_am, 15);

    // Over the auto-approve limit: it waits for review.
    let created: Value = request(
        &app,
        &token,
        "big",
        &body("tom", "3000.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "reviewing");
    assert_eq!(time_of(&created["send_after"]), cutoff);
    let id = created["id"].as_str().unwrap().to_owned();

    // The cut-off passes while it is in review: nothing is sent.
    advance_seconds(&app, 6 * 3600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(withdrawal(&app, &id).await["state"], "reviewing");

    let approved = app
        .post_json(
            &format!("/v1/withdrawals/{id}/approve"),
            &app.ops,
            &json!({"note": "known seller"}),
        )
        .await;
    assert_eq!(approved.status(), 200);
    // No clock move: approved after its cut-off, it goes at once.
    let paid = wait_for_state(&app, &id, "paid").await;
    let detail = paid["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["outcome"] == "scheduled")
        .and_then(|entry| entry["detail"].as_str())
        .unwrap_or_else(|| panic!("{paid:#}"))
        .to_owned();
    assert!(detail.ends_with("sent now"), "{detail}");
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 2560_00);
}

async fn a_withdrawal_cancelled_before_its_cutoff_is_never_sent(backend: Backend) {
    let app = spawn_with_cycle(backend, None).await;
    let (token, account) = funded_distributor(&app, "uma", "1000.00", OPENID).await;
    advance_days(&app, 4).await;
    advance_to_local(&app, None, 10).await;
    let created: Value = request(
        &app,
        &token,
        "c",
        &body("uma", "300.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "approved");
    let id = created["id"].as_str().unwrap().to_owned();
    let cancelled = app
        .post_json(&format!("/v1/withdrawals/{id}/cancel"), &token, &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);

    advance_seconds(&app, 6 * 3600).await;
    // Its queued transfer job, run now, finds it cancelled and sends nothing.
    app.withdrawals
        .run_transfer(&WithdrawalId::parse(id.as_str()).unwrap(), 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(withdrawal(&app, &id).await["state"], "cancelled");
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 0);
    assert_eq!(balance(&app, "uma").await["available"], "1000.00");
}

/// The shipped workflows with the transfer step on a weekly cycle, Mondays.
fn weekly_workflows(into: &std::path::Path) -> PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let target = into.join("workflows");
    crate::ops_browser::copy_tree(&source, &target);
    let file = target.join("withdrawal.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replace(
        "cycle = \"daily\"\n",
        "cycle = \"weekly\"\nweekday = \"monday\"\n",
    );
    assert_ne!(text, changed, "the transfer step's cycle line moved");
    std::fs::write(&file, changed).unwrap();
    target
}

async fn a_weekly_cycle_waits_for_its_weekday(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_cycle(backend, Some(weekly_workflows(dir.path()))).await;
    let (token, account) = funded_distributor(&app, "vic", "1000.00", OPENID).await;
    advance_days(&app, 4).await;
    let wednesday = advance_to_local(&app, Some(Weekday::Wed), 16).await;
    let monday = local_on(wednesday + chrono::Duration::days(5), 15);
    assert_eq!(monday.with_timezone(&Shanghai).weekday(), Weekday::Mon);
    assert_eq!(monday.with_timezone(&Shanghai).hour(), 15);

    let created: Value = request(
        &app,
        &token,
        "w",
        &body("vic", "200.00", &account, "standard"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "approved");
    assert_eq!(time_of(&created["send_after"]), monday);
    assert_eq!(created["cycle"], "weekly monday 15:00 Asia/Shanghai");
    let id = created["id"].as_str().unwrap().to_owned();

    // Thursday's 15:00 (a daily cut-off) passes: it still waits.
    let thursday = advance_seconds(&app, 23 * 3600).await;
    stays_approved(&app, &id).await;
    // Monday 15:00.
    advance_until(&app, thursday, monday).await;
    wait_for_state(&app, &id, "paid").await;
    assert_eq!(sandbox(&app).ledger().total_paid_fen, 200_00);
}
