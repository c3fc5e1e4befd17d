//! Daily reconciliation against the gateways' statements (issue 15 item 6)
//! over HTTP, on the simulated clock with the in-process sandbox, whose
//! statements are built from what it really paid: a clean day has no
//! mismatch; each statement knob's disagreement is found as its class (a
//! line missing from its day only the day after); a resolution is audited
//! and kept across re-runs; a statement that fails its hash fails the run
//! loudly, reconciles nothing and is retried by the sweep; a bounce is
//! matched on both sides; and a day of
//! 10,000 payouts reconciles clean and finds what was changed.

// Amounts in fen are written yuan_fen (`300_00` is 300.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use fenrun::domain::identity::PayoutChannel;
use fenrun::domain::reconciliation::StatementSource;
use fenrun::engine::reconciliation::{Reconciler, ReconciliationSettings};
use fenrun_integrations::AmountFen;
use fenrun_integrations::sandbox::StatementFaults;
use fenrun_integrations::statement::{
    StatementLine, StatementLineKind, StatementSummary, wechat_fundflow,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app_with};
use crate::on_both_backends;
use crate::payout_cycles::advance_clock;
use crate::withdrawals::{
    advance_days, funded_distributor_paid_to, payout_account, request, sandbox, wait_for_state,
};

on_both_backends!(
    a_clean_day_has_no_mismatch_and_each_injected_one_is_found_as_its_class,
    a_bounce_is_matched_on_both_sides_and_a_statement_failing_its_hash_reconciles_nothing_until_retried,
    a_day_of_ten_thousand_payouts_reconciles_clean_and_finds_what_changed,
    a_fee_a_double_payment_and_a_bounce_the_statement_lacks_are_found_as_their_classes,
);

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| settings.simulated_clock = true).await
}

/// Pays, for each `(channel, count)`, `count` express withdrawals of
/// 300.00 yuan to that channel, each to its own distributor, all on one
/// China day; returns them as paid, per channel in order. Waits for the
/// reconciliation sweep the clock's move set off to finish first.
async fn pay(app: &TestApp, batches: &[(PayoutChannel, usize)]) -> Vec<Vec<Value>> {
    let mut funded = Vec::new();
    for (channel, count) in batches {
        let mut batch = Vec::new();
        for n in 1..=*count {
            let id = format!("{}{n:03}", channel.as_str());
            let (token, account) =
                funded_distributor_paid_to(app, &id, "1000.00", &payout_account(*channel, n)).await;
            batch.push((id, token, account));
        }
        funded.push(batch);
    }
    // Old enough to raise no risk flag.
    advance_days(app, 4).await;
    wait_for_catch_up(app).await;
    let mut paid = Vec::new();
    for batch in funded {
        let mut done = Vec::new();
        for (id, token, account) in batch {
            let body = json!({"distributor_id": id, "amount": "300.00", "payout_account_id": account, "speed": "express"});
            let response = request(app, &token, &format!("pay-{id}"), &body).await;
            assert_eq!(response.status(), 202);
            let created: Value = response.json().await.unwrap();
            done.push(wait_for_state(app, created["id"].as_str().unwrap(), "paid").await);
        }
        paid.push(done);
    }
    paid
}

/// Waits until the sweep has reconciled the days before today that are
/// ready (yesterday from 10:30 China time, the day before until then), so
/// that no download of its consumes a statement knob a test sets.
pub(crate) async fn wait_for_catch_up(app: &TestApp) {
    let today = china_today(app).await;
    let local = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).time();
    let ready_at = chrono::NaiveTime::from_hms_opt(10, 31, 0).unwrap();
    let last_ready = if local >= ready_at {
        today.pred_opt().unwrap()
    } else {
        today.pred_opt().unwrap().pred_opt().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = day(app, Some(last_ready)).await;
        if view["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|source| source["state"] == "finished")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep never caught up: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Today in China by the app's clock: the day after the default day.
pub(crate) async fn china_today(app: &TestApp) -> NaiveDate {
    let view = day(app, None).await;
    let yesterday: NaiveDate = view["date"].as_str().unwrap().parse().unwrap();
    yesterday.succ_opt().unwrap()
}

async fn day(app: &TestApp, date: Option<NaiveDate>) -> Value {
    let path = match date {
        Some(date) => format!("/v1/ops/reconciliation?date={date}"),
        None => "/v1/ops/reconciliation".to_owned(),
    };
    let response = app.get(&path, &app.ops).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn run(app: &TestApp, date: NaiveDate) -> Value {
    let response = app
        .post_json(
            "/v1/ops/reconciliation/run",
            &app.ops,
            &json!({"date": date.to_string()}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `(source, bill_no, class)` of each mismatch of a day's view.
fn classes(view: &Value) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = view["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["source"].as_str().unwrap().to_owned(),
                m["bill_no"].as_str().unwrap().to_owned(),
                m["class"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

fn bill_no(withdrawal: &Value) -> String {
    withdrawal["gateway"]["out_bill_no"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn set_statement_faults(app: &TestApp, faults: StatementFaults) {
    sandbox(app).set_statement_faults(faults).unwrap();
}

async fn a_clean_day_has_no_mismatch_and_each_injected_one_is_found_as_its_class(backend: Backend) {
    let app = spawn(backend).await;
    let mut paid = pay(
        &app,
        &[
            (PayoutChannel::Wechat, 3),
            (PayoutChannel::Alipay, 3),
            (PayoutChannel::Bank, 1),
        ],
    )
    .await;
    let bank = paid.pop().unwrap();
    let alipay = paid.pop().unwrap();
    let mut wechat = paid.pop().unwrap();
    let today = china_today(&app).await;

    // A clean day: every payout matched, both sides the same per channel.
    let clean = run(&app, today).await;
    assert_eq!(classes(&clean), vec![], "{clean:#}");
    for source in clean["sources"].as_array().unwrap() {
        assert_eq!(source["state"], "finished", "{source:#}");
        assert_eq!(source["held"], 0, "{source:#}");
        for totals in source["totals"].as_array().unwrap() {
            assert_eq!(
                totals["channel_payouts"], totals["fenrun_payouts"],
                "{totals:#}"
            );
        }
    }
    let totals_of = |channel: &str| {
        clean["sources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|source| source["totals"].as_array().unwrap().iter())
            .find(|totals| totals["channel"] == channel)
            .cloned()
            .unwrap()
    };
    let net: i64 = wechat.iter().map(|w| crate::channels::fen(&w["net"])).sum();
    assert_eq!(totals_of("wechat")["fenrun_payouts"]["count"], 3);
    assert_eq!(
        crate::channels::fen(&totals_of("wechat")["channel_payouts"]["sum"]),
        net
    );
    assert_eq!(totals_of("bank")["channel_payouts"]["count"], 1);

    // Each knob on both statements (payouts by bill number: the first is
    // dropped, the second is 1.00 yuan more, the third also returned, and
    // one line nobody sent).
    set_statement_faults(
        &app,
        StatementFaults {
            drop_lines: 1,
            wrong_amount_lines: 1,
            flip_state_lines: 1,
            extra_lines: 1,
            ..StatementFaults::default()
        },
    );
    let mut alipay_side: Vec<Value> = alipay.iter().chain(bank.iter()).cloned().collect();
    for side in [&mut wechat, &mut alipay_side] {
        side.sort_by_key(bill_no);
    }
    let faulty = run(&app, today).await;
    let mut expected = Vec::new();
    for (source, side) in [("wechat", &wechat), ("alipay", &alipay_side)] {
        expected.push((
            source.to_owned(),
            bill_no(&side[1]),
            "amount_larger_at_channel".to_owned(),
        ));
        expected.push((
            source.to_owned(),
            bill_no(&side[2]),
            "returned_at_channel_not_at_fenrun".to_owned(),
        ));
        expected.push((
            source.to_owned(),
            "sbxextra0001".to_owned(),
            "missing_at_fenrun".to_owned(),
        ));
    }
    expected.sort();
    assert_eq!(classes(&faulty), expected, "{faulty:#}");
    // The dropped payout is held a day, not yet missing.
    for source in faulty["sources"].as_array().unwrap() {
        assert_eq!(source["held"], 1, "{source:#}");
    }
    let larger = faulty["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["class"] == "amount_larger_at_channel" && m["source"] == "wechat")
        .unwrap()
        .clone();
    assert_eq!(
        crate::channels::fen(&larger["at_channel"]) - crate::channels::fen(&larger["at_fenrun"]),
        1_00
    );
    assert!(!larger["advice"].as_str().unwrap().is_empty());

    // Resolving: audited, the same again is fine, another side conflicts.
    let id = faulty["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["class"] == "missing_at_fenrun" && m["source"] == "wechat")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/v1/ops/reconciliation/mismatches/{id}/resolve");
    let body =
        json!({"side": "ledger", "reason": "the sandbox's injected line: no payout of ours"});
    let resolved = app.post_json(&path, &app.ops, &body).await;
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["resolution"]["side"], "ledger");
    assert_eq!(app.post_json(&path, &app.ops, &body).await.status(), 200);
    let other = json!({"side": "channel", "reason": "changed my mind"});
    let refused = error_of(app.post_json(&path, &app.ops, &other).await, 409).await;
    assert_eq!(refused["code"], "mismatch_already_resolved");
    for (bad, field) in [
        (json!({"side": "both", "reason": "x"}), "side"),
        (json!({"side": "ledger", "reason": "  "}), "reason"),
    ] {
        let refused = error_of(app.post_json(&path, &app.ops, &bad).await, 400).await;
        assert_eq!(refused["field"], field, "{refused}");
    }
    let unknown = app
        .post_json(
            "/v1/ops/reconciliation/mismatches/999999/resolve",
            &app.ops,
            &body,
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let forbidden = app.post_json(&path, &app.accountant, &body).await;
    assert_eq!(forbidden.status(), 403);
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

    // The day after: the payout dropped from its day's file is now missing
    // at the channel (its own statement never showed it).
    advance_days(&app, 1).await;
    let next = run(&app, today.succ_opt().unwrap()).await;
    let missing: Vec<_> = classes(&next)
        .into_iter()
        .filter(|(_, _, class)| class == "missing_at_channel")
        .collect();
    assert_eq!(
        missing,
        vec![
            (
                "alipay".to_owned(),
                bill_no(&alipay_side[0]),
                "missing_at_channel".to_owned()
            ),
            (
                "wechat".to_owned(),
                bill_no(&wechat[0]),
                "missing_at_channel".to_owned()
            ),
        ],
        "{next:#}"
    );

    // The knobs cleared, the first day again: only the resolved mismatch
    // is left, with its resolution; the rest were fixed at the source.
    set_statement_faults(&app, StatementFaults::default());
    let again = run(&app, today).await;
    let left = again["mismatches"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{again:#}");
    assert_eq!(left[0]["id"], id);
    assert_eq!(left[0]["resolution"]["side"], "ledger");
    assert_eq!(again["unresolved"], 0);

    // Bad input changes nothing.
    for (body, status, code) in [
        (json!({"date": "2027-13-01"}), 400, "invalid_field"),
        (json!({"date": "1999-12-31"}), 400, "invalid_field"),
        (json!({"date": "+12027-01-01"}), 400, "invalid_field"),
        (
            json!({"date": today.to_string(), "channel": "paypal"}),
            400,
            "invalid_field",
        ),
        (json!({"date": "2999-01-01"}), 422, "date_in_future"),
    ] {
        let refused = error_of(
            app.post_json("/v1/ops/reconciliation/run", &app.ops, &body)
                .await,
            status,
        )
        .await;
        assert_eq!(refused["code"], code, "{body}: {refused}");
    }
    assert_eq!(
        day(&app, Some(today)).await["mismatches"],
        again["mismatches"]
    );
}

async fn a_bounce_is_matched_on_both_sides_and_a_statement_failing_its_hash_reconciles_nothing_until_retried(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let paid = pay(
        &app,
        &[(PayoutChannel::Wechat, 1), (PayoutChannel::Bank, 1)],
    )
    .await;
    let today = china_today(&app).await;

    // The bank sends its payout back (退票): the account log's return
    // matches fenrun's, both sides count it.
    let bounced = &paid[1][0];
    sandbox(&app)
        .bounce(&bill_no(bounced), Some("收款账户已注销"))
        .unwrap();
    wait_for_state(&app, bounced["id"].as_str().unwrap(), "returned").await;
    let response = app
        .post_json(
            "/v1/ops/reconciliation/run",
            &app.ops,
            &json!({"date": today.to_string(), "channel": "bank"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["mismatches"], json!([]), "{view:#}");
    let bank = view["sources"][0]["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|totals| totals["channel"] == "bank")
        .unwrap()
        .clone();
    assert_eq!(bank["fenrun_returns"]["count"], 1, "{bank:#}");
    assert_eq!(bank["channel_returns"], bank["fenrun_returns"]);
    assert_eq!(view["sources"][0]["matched"], 2, "payout and return");

    set_statement_faults(
        &app,
        StatementFaults {
            corrupt_downloads: 1,
            ..StatementFaults::default()
        },
    );
    let refused = error_of(
        app.post_json(
            "/v1/ops/reconciliation/run",
            &app.ops,
            &json!({"date": today.to_string(), "channel": "wechat"}),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(refused["code"], "statement_unavailable");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("SHA1") && message.contains("nothing was reconciled"),
        "{message}"
    );

    let failed = day(&app, Some(today)).await;
    let wechat = failed["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|source| source["source"] == "wechat")
        .unwrap()
        .clone();
    assert_eq!(wechat["state"], "failed", "{wechat:#}");
    assert_eq!(wechat["attempts"], 1);
    assert_eq!(wechat["matched"], 0);
    assert!(wechat["last_error"].as_str().unwrap().contains("SHA1"));
    let next: DateTime<Utc> = wechat["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(failed["mismatches"], json!([]));

    // Past the retry time, the five-minute sweep runs it again and the
    // (now sound) file reconciles.
    let now = advance_clock(&app.client, &app.address, &app.admin, 6 * 60).await;
    assert!(now > next);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = day(&app, Some(today)).await;
        let wechat = view["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|source| source["source"] == "wechat")
            .unwrap()
            .clone();
        if wechat["state"] == "finished" {
            assert_eq!(wechat["attempts"], 2, "{wechat:#}");
            assert_eq!(wechat["matched"], 1, "{wechat:#}");
            assert_eq!(view["mismatches"], json!([]));
            break;
        }
        assert!(Instant::now() < deadline, "never retried: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_day_of_ten_thousand_payouts_reconciles_clean_and_finds_what_changed(backend: Backend) {
    const PAYOUTS: usize = 10_000;
    let app = spawn(backend).await;
    let template = pay(&app, &[(PayoutChannel::Wechat, 1)])
        .await
        .remove(0)
        .remove(0);
    let today = china_today(&app).await;
    let paid_at: DateTime<Utc> = template["finished_at"].as_str().unwrap().parse().unwrap();
    let clones = fenrun::store::scratch::clone_paid_withdrawals(
        &app.store,
        template["id"].as_str().unwrap(),
        1,
        PAYOUTS - 1,
        paid_at,
    )
    .await
    .unwrap();
    let net = crate::channels::fen(&template["net"]);
    let occurred_at = paid_at
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local();
    let line = |bill_no: &str, fen: i64| StatementLine {
        out_bill_no: bill_no.to_owned(),
        gateway_ref: format!("1330{bill_no}"),
        kind: StatementLineKind::Payout,
        amount: AmountFen(fen),
        occurred_at,
        business_type: wechat_fundflow::PAYOUT_BUSINESS_TYPE.to_owned(),
    };
    let mut lines: Vec<StatementLine> = std::iter::once(bill_no(&template))
        .chain(clones.iter().cloned())
        .map(|bill| line(&bill, net))
        .collect();
    let reconciler = Reconciler::new(
        app.store.clone(),
        Arc::new(fenrun::clock::SystemClock),
        app.withdrawals.clone(),
        ReconciliationSettings::parse(
            fenrun::engine::reconciliation::SHIPPED_SETTINGS,
            "reconciliation.toml",
        )
        .unwrap(),
    );
    let reconcile = |lines: Vec<StatementLine>| {
        let file = wechat_fundflow::render(&lines, &StatementSummary::of(&lines));
        let statement = wechat_fundflow::parse(today, &file).unwrap();
        let reconciler = &reconciler;
        async move {
            let started = Instant::now();
            let run = reconciler
                .reconcile_statement(StatementSource::Wechat, today, &statement)
                .await
                .unwrap();
            eprintln!(
                "reconciled {} lines in {:?}",
                statement.lines.len(),
                started.elapsed()
            );
            run
        }
    };
    let clean = reconcile(lines.clone()).await;
    assert_eq!(
        (clean.lines, clean.matched),
        (PAYOUTS as i64, PAYOUTS as i64)
    );
    let view = day(&app, Some(today)).await;
    assert_eq!(view["mismatches"], json!([]), "{view:#}");
    let wechat = &view["sources"][0]["totals"][0];
    assert_eq!(wechat["fenrun_payouts"]["count"], PAYOUTS);
    assert_eq!(wechat["channel_payouts"], wechat["fenrun_payouts"]);

    // One line 0.01 short, one gone: exactly those two are told.
    lines[5_000].amount.0 -= 1;
    let dropped = lines.remove(7_000);
    let changed = reconcile(lines.clone()).await;
    assert_eq!(changed.matched, PAYOUTS as i64 - 1);
    let view = day(&app, Some(today)).await;
    assert_eq!(
        classes(&view),
        vec![(
            "wechat".to_owned(),
            lines[5_000].out_bill_no.clone(),
            "amount_smaller_at_channel".to_owned()
        )],
        "{view:#}"
    );
    assert_eq!(view["sources"][0]["held"], 1);
    assert_ne!(dropped.out_bill_no, lines[5_000].out_bill_no);
}

async fn a_fee_a_double_payment_and_a_bounce_the_statement_lacks_are_found_as_their_classes(
    backend: Backend,
) {
    let app = spawn(backend).await;
    // The bank charges 0.50 a card payout; the shipped settings expect none.
    let mut faults = sandbox(&app).faults();
    faults.bank_order_fee_fen = 50;
    sandbox(&app).set_faults(faults);
    let mut bank = pay(&app, &[(PayoutChannel::Bank, 2)]).await.remove(0);
    bank.sort_by_key(bill_no);
    let today = china_today(&app).await;
    let (first, second) = (bill_no(&bank[0]), bill_no(&bank[1]));
    sandbox(&app).bounce(&first, None).unwrap();
    wait_for_state(&app, bank[0]["id"].as_str().unwrap(), "returned").await;

    // The first card payout twice on the statement, its bounce left out.
    set_statement_faults(
        &app,
        StatementFaults {
            duplicate_lines: 1,
            drop_returns: 1,
            ..StatementFaults::default()
        },
    );
    let view = run(&app, today).await;
    let alipay = |class: &str, bill: &str| ("alipay".to_owned(), bill.to_owned(), class.to_owned());
    let mut expected = vec![
        alipay("fee_differs", &first),
        alipay("paid_twice_at_channel", &first),
        alipay("fee_differs", &second),
    ];
    expected.sort();
    assert_eq!(classes(&view), expected, "{view:#}");
    let fee = view["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["class"] == "fee_differs")
        .unwrap()
        .clone();
    assert_eq!(
        (fee["at_channel"].as_str(), fee["at_fenrun"].as_str()),
        (Some("0.50"), Some("0.00")),
        "{fee:#}"
    );

    // The bounce no statement showed is missing the day after.
    advance_days(&app, 1).await;
    let next = run(&app, today.succ_opt().unwrap()).await;
    assert_eq!(
        classes(&next),
        vec![alipay("returned_at_fenrun_not_at_channel", &first)],
        "{next:#}"
    );
}
