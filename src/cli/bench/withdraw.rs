//! `fenrun bench withdraw`: withdrawals end to end — HTTP request (checks,
//! reserve, tax, auto-approval), the transfer step through the in-process
//! sandbox gateway, the signed callback, completion posting — for one
//! scratch database per run, with the sandbox answering at once and after a
//! set latency. `--channel` picks the payout accounts' channel and so the
//! rail: `wechat` (WeChat v3 dialect, the default), `alipay` (Alipay to an
//! account) or `bank` (Alipay to a card, which stays `DEALING` for the
//! sandbox's `bank_settle_ms` before it succeeds), each signed both ways.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::app::Application;
use crate::config::Settings;
use crate::domain::access::Role;
use crate::domain::banks::{BankAccountKind, find_bank};
use crate::domain::identity::PayoutChannel;
use crate::domain::identity::{AlipayAccount, BankCardNumber, IdNumber, RealName, WechatOpenId};
use crate::domain::ids::DistributorId;
use crate::domain::ledger::{AccountId, Bucket, PlatformAccount, Transfer, TransferKind};
use crate::domain::money::Money;
use crate::domain::settlement::DistributorStatus;
use crate::domain::withdrawal::WithdrawalState;
use crate::store::NewDistributor;
use crate::vault::credentials::{NewAccount, seal_account, seal_identity};

/// Each distributor withdraws this once (under the auto-approve limit).
const WITHDRAWAL: Money = Money::from_fen(10_000); // 100.00
/// A run that makes no progress for this long has stalled.
const STALL_AFTER: Duration = Duration::from_secs(120);

/// `fenrun bench withdraw`: `runs` runs per latency, medians reported.
pub async fn withdraw(
    channel: PayoutChannel,
    count: usize,
    concurrency: usize,
    latencies_ms: &[u64],
    runs: usize,
    server_url: Option<&str>,
) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let channel_name = channel.as_str();
    println!(
        "bench withdraw: {count} withdrawals of {WITHDRAWAL} to {channel_name} accounts ({}), {concurrency} concurrent HTTP clients, {backend}, sandbox latency {latencies_ms:?} ms, {runs} run(s) each",
        rail_of(channel)
    );
    for &latency in latencies_ms {
        let mut accepted_per_s = Vec::new();
        let mut paid_per_s = Vec::new();
        for run in 1..=runs {
            let db = crate::cli::bench::ScratchDb::new(server_url, "withdraw").await?;
            let result = match withdraw_once(&db.url, channel, count, concurrency, latency).await {
                Ok(run) => {
                    let figures = (run.accepted, run.end_to_end);
                    run.stop().await.map(|()| figures)
                }
                Err(error) => Err(error),
            };
            db.drop().await;
            let (accepted, end_to_end) = result?;
            let accepted = count as f64 / accepted.as_secs_f64();
            let paid = count as f64 / end_to_end.as_secs_f64();
            println!(
                "{channel_name}, latency {latency} ms, run {run}: requests accepted {accepted:.0}/s; end to end (request → paid, ledger posted) {paid:.0} withdrawals/s"
            );
            accepted_per_s.push(accepted);
            paid_per_s.push(paid);
        }
        println!(
            "{channel_name}, latency {latency} ms, median of {runs}: requests accepted {:.0}/s; end to end {:.0} withdrawals/s; peak RSS so far {} MiB",
            crate::cli::bench::median(&mut accepted_per_s),
            crate::cli::bench::median(&mut paid_per_s),
            crate::cli::bench::peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
        );
    }
    Ok(())
}

/// The rail a channel's payouts take, for the heading.
fn rail_of(channel: PayoutChannel) -> &'static str {
    match channel {
        PayoutChannel::Wechat => "WeChat Pay v3 商家转账",
        PayoutChannel::Alipay => "Alipay TRANS_ACCOUNT_NO_PWD",
        PayoutChannel::Bank => "Alipay TRANS_BANKCARD_NO_PWD",
    }
}

/// The bench's bank: any bank of the table would do.
const BENCH_BANK: &str = "CMB";

/// A payout account of `channel` for distributor `serial`, sealed: a
/// different openid, logon id or card number for each.
fn bench_account(
    vault: &crate::vault::Vault,
    channel: PayoutChannel,
    id: &DistributorId,
    serial: usize,
    name: &RealName,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<crate::store::SealedPayoutAccount> {
    let new = |masked, account_name_masked| NewAccount {
        distributor: id,
        channel,
        masked,
        account_name_masked,
        bank_name: None,
        bank_account: None,
    };
    let sealed = match channel {
        PayoutChannel::Wechat => {
            let openid = WechatOpenId::parse(&format!("oBench{serial:010}Openid000000"))?;
            seal_account(vault, new(openid.masked(), None), &openid, now)?
        }
        PayoutChannel::Alipay => {
            let logon = AlipayAccount::parse(&format!("bench{serial}@bench.example"))?;
            seal_account(vault, new(logon.masked(), Some(name.masked())), &logon, now)?
        }
        PayoutChannel::Bank => {
            let card =
                BankCardNumber::parse(&BankCardNumber::complete(&format!("622588{serial:09}")))?;
            let bank = find_bank(BENCH_BANK).expect("the bench's bank is in the table");
            let account = NewAccount {
                bank_name: Some(bank.name.to_owned()),
                bank_account: Some(BankAccountKind::Personal),
                ..new(card.masked(), Some(name.masked()))
            };
            seal_account(vault, account, &card, now)?
        }
    };
    Ok(sealed)
}

fn id_number(serial: usize) -> String {
    IdNumber::complete(&format!("11010119900101{:03}", serial % 1_000))
}

/// A finished run of withdrawals whose application still serves, so that
/// another benchmark can go on from it (`bench certificates`).
pub(crate) struct WithdrawRun {
    pub state: crate::state::AppState,
    pub address: String,
    /// Time from the first request to the last one accepted (202).
    pub accepted: Duration,
    /// Time from the first request to the last withdrawal paid.
    pub end_to_end: Duration,
    /// When the first request was sent.
    pub started: Instant,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl WithdrawRun {
    /// Stops the application and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await??;
        }
        Ok(())
    }
}

/// Runs `count` withdrawals until every one is paid and the ledger verifies.
pub(crate) async fn withdraw_once(
    url: &str,
    channel: PayoutChannel,
    count: usize,
    concurrency: usize,
    latency_ms: u64,
) -> anyhow::Result<WithdrawRun> {
    let settings = Settings {
        database_url: SecretString::from(url.to_owned()),
        listen: "127.0.0.1:0".to_owned(),
        simulated_clock: true,
        // Measures throughput, not the settlement cycle: standard
        // withdrawals go as soon as they are approved.
        standard_withdrawals_at_once: true,
        run_workers: true,
        log_filter: "error".to_owned(),
        db_max_connections: 16,
        ..Settings::default()
    };
    let vault = crate::vault::Vault::new(crate::vault::MasterKey::generate()?, Vec::new());
    let app = Application::build_with_vault(settings, vault).await?;
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let store = state.store.clone();
    let sandbox_faults = fenrun_integrations::sandbox::Faults {
        latency_ms,
        ..Default::default()
    };
    state
        .withdrawals
        .gateway()
        .and_then(|gateway| gateway.sandbox())
        .ok_or_else(|| anyhow::anyhow!("the bench pays through the in-process sandbox"))?
        .set_faults(sandbox_faults);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Setup, not timed: distributors with identity, an account on the channel, funds and a token.
    let clock = state.clock.clone();
    let setup = crate::cli::bench::progress_bar(count as u64, "setting up distributors");
    let mut work = Vec::with_capacity(count);
    for serial in 0..count {
        let id = DistributorId::parse(format!("w{serial}"))?;
        let now = clock.now();
        store
            .create_distributor(
                &NewDistributor {
                    id: id.clone(),
                    name: format!("bench {serial}"),
                    referrer_id: None,
                    grade: "regular".to_owned(),
                    status: DistributorStatus::Active,
                    request_sha256: crate::domain::digest::sha256_hex(id.as_str().as_bytes()),
                },
                now,
            )
            .await?;
        let name = RealName::parse("王芳")?;
        let identity = seal_identity(
            &state.vault,
            &id,
            &name,
            &IdNumber::parse(&id_number(serial), now.date_naive())?,
            now,
        )?;
        store.upsert_identity(&identity).await?;
        let account = bench_account(&state.vault, channel, &id, serial, &name, now)?;
        store.insert_payout_account(&account).await?;
        let funds = Transfer::between(
            format!("bench:fund:{serial}"),
            TransferKind::Adjustment,
            AccountId::Platform(PlatformAccount::CommissionExpense),
            AccountId::Distributor(id.clone(), Bucket::Available),
            WITHDRAWAL,
        )?;
        store.transfer(&funds, now).await?;
        let token = crate::service::tokens::create(
            &store,
            Role::Distributor,
            Some(&id),
            now,
            &crate::service::audit::Actor::system("bench"),
        )
        .await?;
        work.push((id, account.id, token.secret.expose_secret().to_owned()));
        setup.inc(1);
    }
    setup.finish();
    // Past the new-distributor and new-account risk windows.
    if let Some(simulated) = &state.simulated_clock {
        simulated.advance(chrono::Duration::days(4))?;
        // As `POST /v1/admin/clock/advance` does: the sandbox's clock follows,
        // so the reconciliation sweep finds its statements of the days passed.
        state.announce_clock_move();
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let limiter = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut sending = tokio::task::JoinSet::new();
    for (id, account, token) in work {
        let permit = limiter.clone().acquire_owned().await?;
        let client = client.clone();
        let address = address.clone();
        sending.spawn(async move {
            let _permit = permit;
            let response = client
                .post(format!("{address}/v1/withdrawals"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("bench-{id}"))
                .json(&json!({"distributor_id": id.as_str(), "amount": WITHDRAWAL.to_string(), "payout_account_id": account, "speed": "standard"}))
                .send()
                .await?;
            anyhow::ensure!(response.status().as_u16() == 202, "withdrawal of {id}: {}", response.status());
            Ok(())
        });
        while let Some(done) = sending.try_join_next() {
            done??;
        }
    }
    while let Some(done) = sending.join_next().await {
        done??;
    }
    let accepted = started.elapsed();

    let mut last_progress = (0i64, Instant::now());
    loop {
        let totals = store.withdrawal_totals().await?;
        let finished: i64 = totals
            .iter()
            .filter(|(state, ..)| state.is_final())
            .map(|(_, count, ..)| count)
            .sum();
        if finished as usize >= count {
            let not_paid: Vec<String> = totals
                .iter()
                .filter(|(state, ..)| *state != WithdrawalState::Paid)
                .map(|(state, count, ..)| format!("{count} {state}"))
                .collect();
            anyhow::ensure!(
                not_paid.is_empty(),
                "not every withdrawal was paid: {}",
                not_paid.join(", ")
            );
            break;
        }
        if finished > last_progress.0 {
            last_progress = (finished, Instant::now());
        } else if last_progress.1.elapsed() > STALL_AFTER {
            anyhow::bail!("stalled at {finished} of {count} withdrawals finished");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_to_end = started.elapsed();
    let report = store.verify_ledger().await?;
    anyhow::ensure!(
        report.is_clean(),
        "the ledger does not verify after the run"
    );
    // Every payout went out on the chosen channel's rail, and only there.
    let sandbox_sent = state
        .withdrawals
        .gateway()
        .and_then(|gateway| gateway.sandbox())
        .map(|sandbox| sandbox.ledger().channel(channel.gateway_channel()))
        .map(|totals| (totals.sent_count, totals.sent_fen))
        .unwrap_or_default();
    anyhow::ensure!(
        sandbox_sent == (count as u64, WITHDRAWAL.fen() * count as i64),
        "the sandbox's {} rail sent {} bills, {} fen; fenrun paid {count} × {WITHDRAWAL}",
        channel.as_str(),
        sandbox_sent.0,
        sandbox_sent.1
    );
    Ok(WithdrawRun {
        state,
        address,
        accepted,
        end_to_end,
        started,
        shutdown: Some(shutdown),
        server: Some(server),
    })
}
