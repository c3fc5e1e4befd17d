//! Gateway storms, one per dialect. The sandbox answers 10% of transfers
//! only after the client has timed out (the bill was created), fails 5%
//! with a 5xx (Alipay: `20000 isp.unknow-error`) before creating the bill
//! and 5% after creating it, duplicates every notification, sends some late
//! and out of order (an earlier state after the final one), and forges some
//! with bad signatures.
//!
//! - WeChat: 500 withdrawals to WeChat balances.
//! - Alipay: 400 withdrawals, half to Alipay accounts and half to bank cards
//!   through `gateway.do`, notified at `/v1/gateways/alipay/notify`; one
//!   bank payout in ten bounces (退票) by itself shortly after its success,
//!   so a bounce's notification can overtake the success's.
//!
//! Every withdrawal must end final and be paid at most once at the sandbox,
//! and fenrun's clearing account of each channel must equal what the sandbox
//! sent on it less what came back.

// Amounts in fen are written yuan_fen (`2545_00` is 2,545.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use fenrun::domain::identity::PayoutChannel;
use fenrun::domain::ids::WithdrawalId;
use fenrun::domain::ledger::{AccountId, PlatformAccount};
use fenrun::domain::withdrawal::WithdrawalState;
use fenrun::store::WithdrawalRecord;
use fenrun_integrations::sandbox::{Faults, SandboxLedger};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::withdrawals::{
    advance_days, funded_distributor_paid_to, payout_account, request, sandbox,
};

on_both_backends!(
    a_gateway_storm_pays_every_withdrawal_at_most_once_and_the_books_agree,
    an_alipay_storm_pays_every_withdrawal_at_most_once_and_each_channels_books_agree,
);

/// Withdrawals per distributor: one fewer than raises the "many withdrawals" flag.
const PER_DISTRIBUTOR: usize = 4;
/// How long the client waits for a gateway's answer; a hang outlasts it.
const GATEWAY_TIMEOUT_MS: u64 = 1_000;

/// The storm both dialects weather; `bank_bounce_permille` of bank payouts
/// come back by themselves.
fn storm(bank_bounce_permille: u16) -> Faults {
    Faults {
        timeout_after_success_rate: 0.10,
        error_before_commit_rate: 0.05,
        error_after_commit_rate: 0.05,
        duplicate_callbacks: true,
        out_of_order_callbacks: true,
        bad_signature_callback_rate: 0.10,
        hang_ms: 2 * GATEWAY_TIMEOUT_MS,
        seed: 2026,
        bank_bounce_permille,
        ..Default::default()
    }
}

/// The app on the simulated clock, with calls answered after the client
/// gave up (their outcome is unknown).
async fn spawn_for_storm(backend: Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.gateway_timeout_ms = GATEWAY_TIMEOUT_MS;
    })
    .await
}

/// Requests [`PER_DISTRIBUTOR`] standard withdrawals of 10.00 for each of
/// `funded` (id, token, payout account) at once; returns their ids.
async fn request_all(app: &TestApp, funded: &[(String, String, String)]) -> Vec<String> {
    let requests = funded.iter().flat_map(|(id, token, account)| {
        (0..PER_DISTRIBUTOR).map(move |n| async move {
            let response = request(
                app,
                token,
                &format!("storm-{id}-{n}"),
                &json!({"distributor_id": id, "amount": "10.00", "payout_account_id": account, "speed": "standard"}),
            )
            .await;
            assert_eq!(response.status(), 202);
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    let ids: Vec<String> = futures::future::join_all(requests).await;
    assert_eq!(ids.len(), funded.len() * PER_DISTRIBUTOR);
    ids
}

/// Waits until no withdrawal is open, at most `deadline`.
async fn wait_until_all_final(app: &TestApp, deadline: Duration) {
    let started = Instant::now();
    loop {
        let totals = app.store.withdrawal_totals().await.unwrap();
        let open: i64 = totals
            .iter()
            .filter(|(state, ..)| !state.is_final())
            .map(|(_, count, ..)| count)
            .sum();
        if open == 0 {
            eprintln!("the storm settled in {:.1?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{open} withdrawals still open after {deadline:?}: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the withdrawals came to, checked one by one against the sandbox.
#[derive(Debug, Default)]
struct Outcome {
    /// Withdrawals whose transfer step ran more than once.
    retried: usize,
    /// Per fenrun state: how many.
    states: BTreeMap<String, usize>,
    /// Per channel: net fen fenrun counts as paid and not returned.
    kept_fen: BTreeMap<&'static str, i64>,
}

/// Checks that no bill was created or paid twice, and that each withdrawal
/// is final and agrees with its bill: paid ⇔ paid and kept at the sandbox;
/// returned (or failed by a bounce heard before the success) ⇔ paid and
/// back; anything else ⇔ never paid.
async fn check_each_withdrawal(app: &TestApp, ids: &[String], ledger: &SandboxLedger) -> Outcome {
    let mut bills_per_number: HashMap<&str, usize> = HashMap::new();
    for bill in &ledger.bills {
        assert!(bill.paid_times <= 1, "{} was paid twice", bill.out_bill_no);
        // A bill is never created twice: after an unknown outcome fenrun asks first.
        assert_eq!(
            bill.create_count, 1,
            "a transfer was sent again for {}",
            bill.out_bill_no
        );
        *bills_per_number.entry(&bill.out_bill_no).or_default() += 1;
    }
    assert!(bills_per_number.values().all(|count| *count == 1));

    let mut outcome = Outcome::default();
    for id in ids {
        let withdrawal = record(app, id).await;
        assert!(withdrawal.state.is_final(), "{id} is {}", withdrawal.state);
        if withdrawal.transfer_attempts > 1 {
            outcome.retried += 1;
        }
        *outcome
            .states
            .entry(withdrawal.state.to_string())
            .or_default() += 1;
        let bill = ledger
            .bills
            .iter()
            .find(|bill| bill.out_bill_no == withdrawal.out_bill_no);
        let at_sandbox = bill.map(|bill| (bill.channel, bill.paid_times, bill.returned));
        let channel = withdrawal.channel.gateway_channel();
        match withdrawal.state {
            WithdrawalState::Paid => {
                assert_eq!(
                    at_sandbox,
                    Some((channel, 1, false)),
                    "{id} is paid in fenrun, not at the sandbox"
                );
                *outcome
                    .kept_fen
                    .entry(withdrawal.channel.as_str())
                    .or_default() += withdrawal.net.fen();
            }
            _ if came_back(&withdrawal) => assert_eq!(
                at_sandbox,
                Some((channel, 1, true)),
                "{id} is {} by a bounce the sandbox never made",
                withdrawal.state
            ),
            state => assert_eq!(
                at_sandbox.map_or(0, |(_, paid_times, _)| paid_times),
                0,
                "{id} is {state} in fenrun but paid at the sandbox"
            ),
        }
    }
    eprintln!("{outcome:?}");
    // The storm did blow: timeouts and 5xx made the step run again.
    assert!(
        outcome.retried > 0,
        "no transfer was ever retried: the faults did not fire"
    );
    outcome
}

/// Each channel's clearing account holds what the sandbox sent on it less
/// what came back, which is what fenrun counts as paid; the ledger verifies.
async fn check_the_books(app: &TestApp, outcome: &Outcome, ledger: &SandboxLedger) {
    for (channel, clearing) in [
        (PayoutChannel::Wechat, PlatformAccount::WechatClearing),
        (PayoutChannel::Alipay, PlatformAccount::AlipayClearing),
        (PayoutChannel::Bank, PlatformAccount::BankClearing),
    ] {
        let books = app
            .store
            .account_balance(&AccountId::Platform(clearing))
            .await
            .unwrap()
            .map_or(0, |balance| balance.fen());
        let sent = ledger.channel(channel.gateway_channel());
        assert_eq!(
            books,
            sent.sent_fen - sent.returned_fen,
            "{channel:?}: {sent:?}"
        );
        assert_eq!(
            books,
            outcome.kept_fen.get(channel.as_str()).copied().unwrap_or(0),
            "{channel:?}"
        );
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A storm over `withdrawals` requests from distributors funded with 40.00
/// each and paid to the account `account_of` gives their number; returns
/// the app, the sandbox's settled ledger and the checked outcome.
async fn weather_storm(
    backend: Backend,
    withdrawals: usize,
    account_of: impl Fn(usize) -> Value,
    faults: Faults,
    deadline: Duration,
) -> (TestApp, SandboxLedger, Outcome) {
    let app = spawn_for_storm(backend).await;
    let mut funded = Vec::new();
    for number in 0..withdrawals / PER_DISTRIBUTOR {
        let id = format!("s{number:03}");
        let (token, account) =
            funded_distributor_paid_to(&app, &id, "40.00", &account_of(number)).await;
        funded.push((id, token, account));
    }
    advance_days(&app, 4).await;
    sandbox(&app).set_faults(faults);

    let ids = request_all(&app, &funded).await;
    wait_until_all_final(&app, deadline).await;
    let ledger = settled_ledger(&app, &ids).await;
    let outcome = check_each_withdrawal(&app, &ids, &ledger).await;
    check_the_books(&app, &outcome, &ledger).await;
    (app, ledger, outcome)
}

async fn a_gateway_storm_pays_every_withdrawal_at_most_once_and_the_books_agree(backend: Backend) {
    const WITHDRAWALS: usize = 500;
    let (_app, ledger, outcome) = weather_storm(
        backend,
        WITHDRAWALS,
        |number| payout_account(PayoutChannel::Wechat, number),
        storm(0),
        Duration::from_secs(240),
    )
    .await;
    // No transfer was refused for good in this storm: every one is paid.
    assert_eq!(outcome.states.get("paid"), Some(&WITHDRAWALS));
    assert_eq!(ledger.paid_count as usize, WITHDRAWALS);
}

async fn an_alipay_storm_pays_every_withdrawal_at_most_once_and_each_channels_books_agree(
    backend: Backend,
) {
    const WITHDRAWALS: usize = 400;
    // Half the distributors are paid to Alipay accounts, half to bank cards.
    let account_of = |number: usize| {
        let channel = if number.is_multiple_of(2) {
            PayoutChannel::Alipay
        } else {
            PayoutChannel::Bank
        };
        payout_account(channel, number)
    };
    let (_app, ledger, outcome) = weather_storm(
        backend,
        WITHDRAWALS,
        account_of,
        storm(100),
        Duration::from_secs(120),
    )
    .await;
    // Nothing went to WeChat; both Alipay products were paid.
    assert_eq!(
        ledger
            .channel(fenrun_integrations::Channel::Wechat)
            .sent_count,
        0
    );
    for channel in [PayoutChannel::Alipay, PayoutChannel::Bank] {
        let sent = ledger.channel(channel.gateway_channel());
        assert_eq!(sent.sent_count as usize, WITHDRAWALS / 2, "{sent:?}");
    }
    // Every transfer reached its payee; the bank sent some back.
    let returned = ledger.returned_count as usize;
    assert!(returned > 0, "no bank payout bounced: {ledger:?}");
    assert_eq!(
        outcome.states.get("paid").copied().unwrap_or(0) + returned,
        WITHDRAWALS,
        "{outcome:?}"
    );
}

/// The sandbox's ledger once the storm has blown over: no bank bill is
/// still dealing; every notification of a bill's final state (and of its
/// bounce) was acknowledged twice, the duplicate too; and the sandbox's
/// returned bills and fenrun's withdrawals taken back from the bank are as
/// many, twice in a row (a bounce follows its success by a moment).
async fn settled_ledger(app: &TestApp, ids: &[String]) -> SandboxLedger {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let ledger = sandbox(app).ledger();
        let unsettled = ledger
            .bills
            .iter()
            .filter(|bill| {
                let changes = 1 + u32::from(bill.returned);
                bill.alipay_status == Some(fenrun_integrations::alipay::FundOrderStatus::Dealing)
                    || bill.callbacks_delivered < 2 * changes
            })
            .count();
        let mut back = 0;
        for id in ids {
            back += usize::from(came_back(&record(app, id).await));
        }
        let counts = (ledger.returned_count as usize, back);
        if unsettled == 0 && counts.0 == counts.1 && last == Some(counts) {
            return ledger;
        }
        assert!(
            Instant::now() < deadline,
            "{unsettled} bills unsettled; the sandbox returned {} bills, fenrun took back {back}",
            counts.0
        );
        last = Some(counts);
        // Longer than a bounce takes to follow its success.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The withdrawal `id` as the store holds it.
async fn record(app: &TestApp, id: &str) -> WithdrawalRecord {
    app.store
        .withdrawal(&WithdrawalId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{id} is not stored"))
}

/// Whether the bank sent the withdrawal's money back: `returned`, or
/// `failed` by a bounce heard before the success.
fn came_back(withdrawal: &WithdrawalRecord) -> bool {
    match withdrawal.state {
        WithdrawalState::Returned => true,
        WithdrawalState::Failed => withdrawal
            .failure_reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with("RETURNED")),
        _ => false,
    }
}
