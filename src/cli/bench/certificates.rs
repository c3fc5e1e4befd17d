//! `fenrun bench certificates`: how fast certificates are made, and what a
//! month's zip costs to stream.
//!
//! 1. **Render and sign** in-process (no database): one thread, then one per
//!    core — the step's CPU ceiling.
//! 2. **Through the workflow**: `count` withdrawals paid through the sandbox
//!    (as `bench withdraw`), then the time until every one has its
//!    certificate stored — the certificate step as it runs in production.
//! 3. **The month's zip** over HTTP, streamed and counted, never held: its
//!    time and the process's resident memory above what it was before,
//!    against a reference in the same run — reading the same PDFs from the
//!    database page by page without zipping or sending them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};

use crate::certificate::{CertificateData, CertificateSigner, INCOME_ITEM_SERVICE};
use crate::domain::identity::PayoutChannel;
use crate::domain::money::Money;
use crate::domain::tax::withhold_per_payment;

/// Certificates per render-and-sign run.
const RENDER_BATCH: usize = 500;
/// A stalled certificate backlog gives up after this.
const STALL_AFTER: Duration = Duration::from_secs(120);

/// `fenrun bench certificates`.
pub async fn certificates(
    count: usize,
    concurrency: usize,
    runs: usize,
    server_url: Option<&str>,
) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "bench certificates: render+sign {RENDER_BATCH} × {runs} runs on 1 and {cores} thread(s); then {count} withdrawals through the workflow and their month's zip, {backend}"
    );
    for threads in [1, cores] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            let rate = tokio::task::spawn_blocking(move || render_and_sign(threads)).await??;
            rates.push(rate);
        }
        println!(
            "render + sign, {threads} thread(s): median {:.0} certificates/s (runs: {})",
            crate::cli::bench::median(&mut rates.clone()),
            rates
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let db = crate::cli::bench::ScratchDb::new(server_url, "certificates").await?;
    let result = through_the_workflow(&db.url, count, concurrency, runs).await;
    db.drop().await;
    result
}

async fn through_the_workflow(
    url: &str,
    count: usize,
    concurrency: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let run = crate::cli::bench::withdraw::withdraw_once(
        url,
        PayoutChannel::Wechat,
        count,
        concurrency,
        0,
    )
    .await?;
    let store = run.state.store.clone();
    let mut last_progress = (usize::MAX, Instant::now());
    loop {
        let missing = store
            .paid_without_certificate(i64::try_from(count).unwrap_or(i64::MAX))
            .await?
            .len();
        if missing == 0 {
            break;
        }
        if missing < last_progress.0 {
            last_progress = (missing, Instant::now());
        } else if last_progress.1.elapsed() > STALL_AFTER {
            anyhow::bail!("certificates stalled with {missing} of {count} still missing");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let certified = run.started.elapsed();
    println!(
        "workflow: {count} withdrawals paid in {:.1} s ({:.0}/s), every certificate stored {:.1} s after the first request ({:.0} certificates/s end to end)",
        run.end_to_end.as_secs_f64(),
        count as f64 / run.end_to_end.as_secs_f64(),
        certified.as_secs_f64(),
        count as f64 / certified.as_secs_f64(),
    );

    let month = {
        let id = store
            .withdrawals_in_states(
                &[crate::domain::withdrawal::WithdrawalState::Paid],
                run.state.clock.now() + chrono::Duration::days(1),
                1,
            )
            .await?;
        id.first()
            .map(|withdrawal| withdrawal.tax_month.clone())
            .ok_or_else(|| anyhow::anyhow!("no paid withdrawal"))?
    };
    let month: crate::domain::tax::Month = month.parse()?;
    let (in_month, ..) = store.certificate_totals(month).await?;
    let token = crate::service::tokens::create(
        &store,
        crate::domain::access::Role::Accountant,
        None,
        run.state.clock.now(),
        &crate::service::audit::Actor::system("bench"),
    )
    .await?;
    let client = reqwest::Client::new();
    let (mut zip_seconds, mut zip_rss, mut scan_seconds, mut scan_rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut zip_bytes = 0;
    for _ in 0..runs {
        let sampler = RssSampler::start();
        let started = Instant::now();
        let mut response = client
            .get(format!("{}/v1/tax/certificates/{month}.zip", run.address))
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.secret))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "zip: {}", response.status());
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
        }
        zip_seconds.push(started.elapsed().as_secs_f64());
        zip_rss.push(sampler.stop().await as f64);
        zip_bytes = bytes;

        let sampler = RssSampler::start();
        let started = Instant::now();
        let mut after: Option<String> = None;
        let mut scanned = 0u64;
        loop {
            let page = store
                .certificate_files(
                    month,
                    after.as_deref(),
                    crate::certificate::archive::PAGE_SIZE,
                )
                .await?;
            scanned += page
                .iter()
                .map(|(_, pdf, manifest)| (pdf.len() + manifest.len()) as u64)
                .sum::<u64>();
            match page.last() {
                Some((number, ..))
                    if page.len() as i64 == crate::certificate::archive::PAGE_SIZE =>
                {
                    after = Some(number.clone());
                }
                _ => break,
            }
        }
        std::hint::black_box(scanned);
        scan_seconds.push(started.elapsed().as_secs_f64());
        scan_rss.push(sampler.stop().await as f64);
    }
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    println!(
        "zip of {month}: {in_month} certificates, {:.1} MiB, streamed over HTTP in median {:.2} s ({:.0} certificates/s), resident memory +{:.1} MiB at peak",
        mib(zip_bytes as f64),
        crate::cli::bench::median(&mut zip_seconds),
        in_month as f64 / crate::cli::bench::median(&mut zip_seconds.clone()),
        mib(crate::cli::bench::median(&mut zip_rss)),
    );
    println!(
        "reference, same run: reading the same rows page by page without zipping or sending: median {:.2} s, resident memory +{:.1} MiB at peak; peak RSS of the process {} MiB",
        crate::cli::bench::median(&mut scan_seconds),
        mib(crate::cli::bench::median(&mut scan_rss)),
        crate::cli::bench::peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
    );
    run.stop().await
}

/// Renders and signs [`RENDER_BATCH`] certificates on `threads` threads;
/// returns certificates per second.
fn render_and_sign(threads: usize) -> anyhow::Result<f64> {
    let signer = Arc::new(CertificateSigner::generate()?);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let signer = signer.clone();
                let done = done.clone();
                scope.spawn(move || -> anyhow::Result<()> {
                    for serial in (thread..RENDER_BATCH).step_by(threads) {
                        let signed = signer.issue(&sample(serial)?)?;
                        std::hint::black_box(signed);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a render thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// A certificate with figures that vary by `serial`.
fn sample(serial: usize) -> anyhow::Result<CertificateData> {
    let gross = Money::from_fen(100_000 + (serial as i64 % 500) * 137);
    let withholding = withhold_per_payment(Money::ZERO, Money::ZERO, gross)?;
    Ok(CertificateData {
        number: format!("FR202611-BENCH{serial:08}"),
        references: None,
        agent_name: "上海示例网络科技有限公司".to_owned(),
        agent_tin: "91310000MA1FL0000X".to_owned(),
        distributor_id: format!("w{serial}"),
        distributor_name: "王芳".to_owned(),
        masked_id_number: "110***********0011".to_owned(),
        income_item: INCOME_ITEM_SERVICE.to_owned(),
        tax_period: "2026年11月1日至2026年11月30日".to_owned(),
        payment_date: NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date"),
        net_paid: withholding.net,
        withholding,
        withdrawal_id: format!("wdbench{serial}"),
        issued_at: Utc
            .with_ymd_and_hms(2026, 11, 30, 6, 0, 0)
            .single()
            .expect("a time"),
    })
}

/// Samples this process's resident memory every few milliseconds and keeps
/// the highest value above where it started.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let baseline = rss_bytes().unwrap_or(0);
            let mut peak = baseline;
            loop {
                peak = peak.max(rss_bytes().unwrap_or(0));
                tokio::select! {
                    _ = &mut stopped => return peak.saturating_sub(baseline),
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        });
        RssSampler { stop, task }
    }

    /// Bytes of resident memory at the peak above the start.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// Resident memory now (VmRSS), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
