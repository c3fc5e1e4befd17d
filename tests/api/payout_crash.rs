//! kill -9 during transfers: the real binary pays through a sandbox gateway
//! that lives in this test (so it outlives every crash) and answers slowly,
//! and is SIGKILLed while transfers are in flight, then restarted.
//!
//! - 80 withdrawals to WeChat balances, sent as soon as ops approve them
//!   (wall clock): killed twice while they go out.
//! - The settlement cycle's batch: 150 standard withdrawals to WeChat
//!   balances, Alipay accounts and bank cards, approved before the daily
//!   cut-off, wait for it; the simulated clock is moved past it, so the due
//!   sweep sends them together, and the server is killed twice while the
//!   batch goes out (more jobs than a worker fetches at once, so at each
//!   kill some are held by the dying worker and some still queued). Each
//!   start's simulated clock begins at the real now again, before the
//!   cut-off, so after each restart the clock is moved past it once more,
//!   and the batch must go on at once, not after the orphan timeout.
//!
//! Every withdrawal must still be paid exactly once at the sandbox, the
//! books (each channel's clearing account, every balance, `ledger verify`)
//! must agree with it, and each must end with exactly one certificate.
//!
//! ```text
//! distributors ─► withdrawals (reviewing) ─► ops approve ─┬─ at once ──────────────┐
//!                                                        └─ wait ─► clock past cut-off
//!   ┌──────────────────────────────────────────────────────────────────────────┘
//!   └─► SIGKILL while in flight ─► restart (─► clock past cut-off) ─► … ─► all paid ─► check
//! ```

// Amounts in fen are written yuan_fen (`2545_00` is 2,545.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use fenrun::domain::identity::PayoutChannel;
use fenrun::domain::ledger::{AccountId, PlatformAccount};
use fenrun_integrations::sandbox::{Faults, SandboxConfig, SandboxGateway, SandboxHandle};
use serde_json::{Value, json};

use crate::crash::{Server, fenrun, migrated_db, text, token};
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;
use crate::payout_cycles::advance_clock;
use crate::withdrawals::{id_number, payout_account};

on_both_backends!(
    withdrawals_transferring_through_sigkills_are_paid_exactly_once,
    a_cycles_batch_transferring_through_sigkills_is_paid_exactly_once,
);

/// Withdrawals of 30.00 per distributor, from 100.00 each.
const PER_DISTRIBUTOR: usize = 2;
const WITHDRAWAL_FEN: i64 = 30_00;
const KILLS: usize = 2;
/// How long the sandbox takes to answer each call: transfers stay in flight.
const SANDBOX_LATENCY_MS: u64 = 400;
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);
/// How soon after a restart (and the clock's move) the batch must be going
/// out again: well inside the orphan timeout, since a start resumes what
/// the killed process left rather than waiting for its jobs to be freed.
const RESUMED_DEADLINE: Duration =
    Duration::from_secs(fenrun::engine::worker::ORPHAN_TIMEOUT.as_secs() / 2);
/// The shipped settlement cycle (`workflows/withdrawal.toml`).
const DAILY_CYCLE: &str = "daily 15:00 Asia/Shanghai";

/// When the server sends an approved standard withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// At once, on the wall clock (`standard_withdrawals_at_once`).
    AtOnce,
    /// At the daily cycle's cut-off, on the simulated clock.
    AtTheCutoff,
}

/// The real binary on a fresh database, one token per role, and the
/// sandbox gateway in this process.
struct Rig {
    sandbox: SandboxHandle,
    db: TestDb,
    server: Server,
    address: String,
    client: reqwest::Client,
    admin: String,
    ingest: String,
    ops: String,
    /// The servers' logs, kept until the end of the test.
    _logs: tempfile::TempDir,
}

impl Rig {
    async fn start(backend: Backend, sending: Sending) -> Rig {
        let sandbox = SandboxGateway::start(SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            faults: Faults {
                latency_ms: SANDBOX_LATENCY_MS,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("sandbox");
        let (db, logs) = migrated_db(backend).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let sandbox_url = (
            "FENRUN_SANDBOX_URL".to_owned(),
            sandbox.base_url().to_string(),
        );
        let server = Server::new(&db.url, logs.path());
        let mut server = match sending {
            Sending::AtOnce => server.with_wall_clock_on_one_port(vec![sandbox_url]),
            Sending::AtTheCutoff => server
                .with_env(vec![
                    sandbox_url,
                    (
                        "FENRUN_STANDARD_WITHDRAWALS_AT_ONCE".to_owned(),
                        "false".to_owned(),
                    ),
                ])
                .on_one_port(),
        };
        let address = server.start(&client).await;
        Rig {
            admin: token(&db.url, "admin"),
            ingest: token(&db.url, "ingest"),
            ops: token(&db.url, "ops"),
            sandbox,
            db,
            server,
            address,
            client,
            _logs: logs,
        }
    }

    async fn post(
        &self,
        token: &str,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request")
    }

    /// `GET path` as ops, answered 200.
    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.ops)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// Distributor `id` with identity, a payout account on `channel`, and
    /// 100.00, requesting [`PER_DISTRIBUTOR`] standard withdrawals of 30.00;
    /// returns their ids. New distributors' withdrawals wait for review.
    async fn withdrawals_in_review(
        &self,
        id: &str,
        number: usize,
        channel: PayoutChannel,
    ) -> Vec<String> {
        let created = self
            .post(
                &self.ingest,
                "/v1/distributors",
                None,
                json!({"id": id, "name": id}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let response = self
            .client
            .put(format!("{}/v1/distributors/{id}/identity", self.address))
            .bearer_auth(&self.ingest)
            .json(&json!({"real_name": "李四", "id_number": id_number("11010119900307123")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let response = self
            .post(
                &self.ingest,
                &format!("/v1/distributors/{id}/payout-accounts"),
                None,
                payout_account(channel, number),
            )
            .await;
        assert_eq!(response.status(), 201);
        let account: Value = response.json().await.unwrap();
        let funded = self
            .post(&self.admin, "/v1/admin/adjustments", Some(&format!("fund-{id}")), json!({"distributor_id": id, "amount": "100.00", "direction": "credit", "reason": "test"}))
            .await;
        assert_eq!(funded.status(), 201);
        let output = fenrun(
            &self.db.url,
            &[
                "token",
                "create",
                "--role",
                "distributor",
                "--distributor",
                id,
            ],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        let distributor_token = text(&output.stdout)
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
        let mut ids = Vec::new();
        for n in 0..PER_DISTRIBUTOR {
            let response = self
                .post(&distributor_token, "/v1/withdrawals", Some(&format!("w{n}")), json!({"distributor_id": id, "amount": "30.00", "payout_account_id": account["id"], "speed": "standard"}))
                .await;
            assert_eq!(response.status(), 202);
            let created: Value = response.json().await.unwrap();
            assert_eq!(created["state"], "reviewing");
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    /// Ops approve each; returns the answers.
    async fn approve_all(&self, ids: &[String]) -> Vec<Value> {
        let mut approved = Vec::with_capacity(ids.len());
        for id in ids {
            let response = self
                .post(
                    &self.ops,
                    &format!("/v1/withdrawals/{id}/approve"),
                    None,
                    json!({}),
                )
                .await;
            assert_eq!(response.status(), 200);
            approved.push(response.json().await.unwrap());
        }
        approved
    }

    /// SIGKILL number `kill` (from 0) of the server; returns how many of
    /// `of` bills the sandbox had paid by then.
    fn kill(&mut self, kill: usize, of: usize) -> usize {
        self.server.kill();
        let paid = self.sandbox.ledger().paid_count as usize;
        eprintln!("kill {}: the sandbox had paid {paid} of {of}", kill + 1);
        paid
    }

    /// Starts the server again, on the same port.
    async fn restart(&mut self) {
        self.address = self.server.start(&self.client).await;
    }

    /// Waits until every withdrawal of `ids` is paid, at most `within`.
    async fn wait_until_paid(&self, ids: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        let mut states = Vec::new();
        loop {
            states.clear();
            for id in ids {
                let withdrawal = self.get(&format!("/v1/withdrawals/{id}")).await;
                states.push(withdrawal["state"].as_str().unwrap_or("?").to_owned());
            }
            if states.iter().all(|state| state == "paid") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not all paid after {within:?}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Each of `ids` (on the channels `channels`, as many each) paid once
    /// at the sandbox; every distributor `k00…` has 40.00 left and 60.00
    /// withdrawn; each withdrawal has one certificate of its own; then the
    /// server stops, each channel's clearing equals what the sandbox sent
    /// on it, and `ledger verify` passes.
    async fn check_paid_exactly_once(
        mut self,
        ids: &[String],
        distributors: usize,
        channels: &[PayoutChannel],
    ) {
        let ledger = self.sandbox.ledger();
        assert_eq!(ledger.paid_count, ids.len() as u64, "{ledger:?}");
        assert!(
            ledger.bills.iter().all(|bill| bill.paid_times == 1),
            "a bill was paid twice"
        );
        assert_eq!(ledger.total_paid_fen, WITHDRAWAL_FEN * ids.len() as i64);
        for number in 0..distributors {
            let balance = self
                .get(&format!("/v1/distributors/k{number:02}/balance"))
                .await;
            assert_eq!(
                (
                    balance["available"].as_str(),
                    balance["withdrawing"].as_str(),
                    balance["withdrawn_total"].as_str()
                ),
                (Some("40.00"), Some("0.00"), Some("60.00"))
            );
        }
        // The certificate step went through the kills too: one each, no more.
        // Those whose job the killed worker held wait for the orphan timeout.
        let started = Instant::now();
        let deadline = started + SETTLE_DEADLINE;
        let mut numbers = std::collections::BTreeSet::new();
        for id in ids {
            loop {
                let withdrawal = self.get(&format!("/v1/withdrawals/{id}")).await;
                if let Some(number) = withdrawal["certificate_number"].as_str() {
                    assert!(numbers.insert(number.to_owned()), "{number} twice");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{id} has no certificate after {SETTLE_DEADLINE:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(numbers.len(), ids.len());
        eprintln!("every certificate issued in {:.1?}", started.elapsed());
        self.server.kill();

        let store = self.db.open().await;
        for channel in channels {
            let clearing = match channel {
                PayoutChannel::Wechat => PlatformAccount::WechatClearing,
                PayoutChannel::Alipay => PlatformAccount::AlipayClearing,
                PayoutChannel::Bank => PlatformAccount::BankClearing,
            };
            let books = store
                .account_balance(&AccountId::Platform(clearing))
                .await
                .unwrap()
                .map_or(0, |balance| balance.fen());
            let sent = ledger.channel(channel.gateway_channel());
            let each = (ids.len() / channels.len()) as i64;
            assert_eq!(
                (sent.sent_count as i64, sent.sent_fen, books),
                (each, WITHDRAWAL_FEN * each, WITHDRAWAL_FEN * each),
                "{channel:?}"
            );
        }
        store.close().await;
        let verify = fenrun(&self.db.url, &["ledger", "verify"]);
        assert!(
            verify.status.success(),
            "ledger verify: {}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
        self.sandbox.shutdown().await;
    }
}

async fn withdrawals_transferring_through_sigkills_are_paid_exactly_once(backend: Backend) {
    const DISTRIBUTORS: usize = 40;
    let mut rig = Rig::start(backend, Sending::AtOnce).await;
    let mut ids = Vec::new();
    for number in 0..DISTRIBUTORS {
        let id = format!("k{number:02}");
        ids.extend(
            rig.withdrawals_in_review(&id, number, PayoutChannel::Wechat)
                .await,
        );
    }
    // Approve them all, then kill the server while the transfers run.
    rig.approve_all(&ids).await;
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(if kill == 0 { 300 } else { 700 })).await;
        rig.kill(kill, ids.len());
        rig.restart().await;
    }
    rig.wait_until_paid(&ids, SETTLE_DEADLINE).await;
    rig.check_paid_exactly_once(&ids, DISTRIBUTORS, &[PayoutChannel::Wechat])
        .await;
}

async fn a_cycles_batch_transferring_through_sigkills_is_paid_exactly_once(backend: Backend) {
    const DISTRIBUTORS: usize = 75;
    let started = Instant::now();
    let mut rig = Rig::start(backend, Sending::AtTheCutoff).await;
    // Too near the cut-off, the batch could go by the real clock before the
    // test moves it: then skip to after it.
    let now = Utc::now();
    if next_cutoff(now) - now < chrono::Duration::minutes(30) {
        rig.advance_clock(3_600).await;
    }
    let mut ids = Vec::new();
    for number in 0..DISTRIBUTORS {
        let id = format!("k{number:02}");
        let channel = PayoutChannel::ALL[number % PayoutChannel::ALL.len()];
        ids.extend(rig.withdrawals_in_review(&id, number, channel).await);
    }
    // Approved before their cut-off, they wait for it, all for the same one.
    let approved = rig.approve_all(&ids).await;
    let cutoff = approved[0]["send_after"].clone();
    for withdrawal in &approved {
        assert_eq!(
            (
                &withdrawal["state"],
                &withdrawal["send_after"],
                &withdrawal["cycle"]
            ),
            (&json!("approved"), &cutoff, &json!(DAILY_CYCLE)),
            "{withdrawal:#}"
        );
    }
    let cutoff = DateTime::parse_from_rfc3339(cutoff.as_str().unwrap())
        .unwrap()
        .to_utc();
    eprintln!("{} approved in {:.1?}", ids.len(), started.elapsed());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        rig.sandbox.ledger().paid_count,
        0,
        "sent before the cut-off"
    );

    // Past the cut-off the sweep sends the batch; kill the server once a
    // fifth more of it is paid, restart it, and move its clock past the
    // cut-off again.
    let step = ids.len() / 5;
    for kill in 0..KILLS {
        let paid_before = rig.sandbox.ledger().paid_count as usize;
        rig.advance_clock_past(cutoff).await;
        rig.sandbox_paid_at_least(paid_before + step).await;
        let paid = rig.kill(kill, ids.len());
        assert!(
            paid < ids.len(),
            "the batch was over before kill {}",
            kill + 1
        );
        rig.restart().await;
    }
    rig.advance_clock_past(cutoff).await;
    rig.wait_until_paid(&ids, RESUMED_DEADLINE).await;
    eprintln!("all paid after {:.1?}", started.elapsed());
    rig.check_paid_exactly_once(&ids, DISTRIBUTORS, &PayoutChannel::ALL)
        .await;
}

/// The daily cycle's next cut-off, 15:00 Shanghai, after `now`.
fn next_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.with_timezone(&Shanghai).date_naive();
    [day, day.succ_opt().unwrap()]
        .into_iter()
        .map(|day| {
            Shanghai
                .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(15, 0, 0).unwrap()))
                .unwrap()
                .to_utc()
        })
        .find(|at| *at > now)
        .expect("one of today's and tomorrow's 15:00 is ahead")
}

impl Rig {
    /// Moves the server's simulated clock; returns its time then.
    async fn advance_clock(&self, seconds: i64) -> DateTime<Utc> {
        advance_clock(&self.client, &self.address, &self.admin, seconds).await
    }

    /// Moves the server's simulated clock a minute past `at`.
    async fn advance_clock_past(&self, at: DateTime<Utc>) {
        let now = self.advance_clock(1).await;
        let gap = (at - now).num_seconds().max(0);
        let reached = self.advance_clock(gap + 60).await;
        assert!(reached > at, "{reached} is not past {at}");
    }

    /// Waits until the sandbox has paid `count` bills, at most
    /// [`RESUMED_DEADLINE`].
    async fn sandbox_paid_at_least(&self, count: usize) {
        let deadline = Instant::now() + RESUMED_DEADLINE;
        loop {
            let paid = self.sandbox.ledger().paid_count as usize;
            if paid >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox paid {paid}, not {count}, in {RESUMED_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
