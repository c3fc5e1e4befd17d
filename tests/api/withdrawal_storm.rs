//! A gateway storm: 500 withdrawals through a sandbox that answers 10% of
//! transfers only after the client has timed out (the bill was created),
//! fails 5% with a 5xx before creating the bill and 5% after creating it,
//! duplicates every callback, sends some late and out of order, and forges
//! some with bad signatures. Every withdrawal must end final, be paid at
//! most once at the sandbox, and fenrun's books must equal the sandbox's.

// Amounts in fen are written yuan_fen (`2545_00` is 2,545.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fenrun::domain::ledger::{AccountId, PlatformAccount};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request};

on_both_backends!(a_gateway_storm_pays_every_withdrawal_at_most_once_and_the_books_agree);

const WITHDRAWALS: usize = 500;
/// Withdrawals per distributor: one fewer than raises the "many withdrawals" flag.
const PER_DISTRIBUTOR: usize = 4;
const STORM_DEADLINE: Duration = Duration::from_secs(240);

async fn a_gateway_storm_pays_every_withdrawal_at_most_once_and_the_books_agree(backend: Backend) {
    // Calls answered after the client gave up: the outcome is unknown.
    let app = crate::helpers::spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.gateway_timeout_ms = 1_000;
    })
    .await;
    let distributors = WITHDRAWALS / PER_DISTRIBUTOR;
    let mut funded = Vec::new();
    for number in 0..distributors {
        let id = format!("s{number:03}");
        let openid = format!("oStorm{number:04}Openid00000000000");
        let (token, account) = funded_distributor(&app, &id, "40.00", &openid).await;
        funded.push((id, token, account));
    }
    advance_days(&app, 4).await;
    let sandbox = app.withdrawals.gateway().unwrap().sandbox().unwrap();
    sandbox.set_faults(fenrun_integrations::sandbox::Faults {
        timeout_after_success_rate: 0.10,
        error_before_commit_rate: 0.05,
        error_after_commit_rate: 0.05,
        duplicate_callbacks: true,
        out_of_order_callbacks: true,
        bad_signature_callback_rate: 0.10,
        hang_ms: 2_000,
        seed: 2026,
        ..Default::default()
    });

    let started = Instant::now();
    let app_ref: &TestApp = &app;
    let requests = funded.iter().flat_map(|(id, token, account)| {
        (0..PER_DISTRIBUTOR).map(move |n| {
            let app = app_ref;
            async move {
                let response = request(
                    app,
                    token,
                    &format!("storm-{id}-{n}"),
                    &json!({"distributor_id": id, "amount": "10.00", "payout_account_id": account, "speed": "standard"}),
                )
                .await;
                assert_eq!(response.status(), 202);
                response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
            }
        })
    });
    let ids: Vec<String> = futures::future::join_all(requests).await;
    assert_eq!(ids.len(), WITHDRAWALS);

    // Every withdrawal reaches a final state.
    let deadline = Instant::now() + STORM_DEADLINE;
    loop {
        let totals = app.store.withdrawal_totals().await.unwrap();
        let open: i64 = totals
            .iter()
            .filter(|(state, ..)| !state.is_final())
            .map(|(_, count, ..)| count)
            .sum();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} withdrawals still open after {STORM_DEADLINE:?}: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "storm of {WITHDRAWALS} settled in {:.1?}",
        started.elapsed()
    );

    let ledger = sandbox.ledger();
    assert!(
        ledger.bills.iter().all(|bill| bill.paid_times <= 1),
        "a bill was paid twice"
    );
    // A bill is never created twice: after an unknown outcome fenrun asks first.
    assert!(
        ledger.bills.iter().all(|bill| bill.create_count == 1),
        "a transfer was sent again for an existing bill"
    );
    let mut bills_per_withdrawal: HashMap<String, usize> = HashMap::new();
    for bill in &ledger.bills {
        *bills_per_withdrawal
            .entry(bill.out_bill_no.clone())
            .or_default() += 1;
    }
    assert!(bills_per_withdrawal.values().all(|count| *count == 1));

    let mut retried = 0;
    let mut paid = 0i64;
    let mut paid_fen = 0i64;
    for id in &ids {
        let withdrawal = app
            .store
            .withdrawal(&fenrun::domain::ids::WithdrawalId::parse(id.as_str()).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(withdrawal.state.is_final(), "{id} is {}", withdrawal.state);
        if withdrawal.transfer_attempts > 1 {
            retried += 1;
        }
        let bill = ledger
            .bills
            .iter()
            .find(|bill| bill.out_bill_no == withdrawal.out_bill_no);
        match withdrawal.state {
            fenrun::domain::withdrawal::WithdrawalState::Paid => {
                assert_eq!(
                    bill.map(|bill| bill.paid_times),
                    Some(1),
                    "{id} is paid in fenrun but not at the sandbox"
                );
                paid += 1;
                paid_fen += withdrawal.net.fen();
            }
            state => {
                assert_eq!(
                    bill.map_or(0, |bill| bill.paid_times),
                    0,
                    "{id} is {state} in fenrun but paid at the sandbox"
                );
            }
        }
    }
    eprintln!("{retried} transfers took more than one attempt");
    // The storm did blow: timeouts and 5xx made the step run again.
    assert!(
        retried > 0,
        "no transfer was ever retried: the faults did not fire"
    );
    assert_eq!(paid, ledger.paid_count as i64);
    assert_eq!(paid_fen, ledger.total_paid_fen);
    // No transfer was refused for good in this storm: every one is paid.
    assert_eq!(paid as usize, WITHDRAWALS);
    let clearing = app
        .store
        .account_balance(&AccountId::Platform(PlatformAccount::WechatClearing))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(clearing.fen(), ledger.total_paid_fen);
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
