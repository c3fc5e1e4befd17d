//! `fenrun bench`: throughput figures, printed, never asserted.
//!
//! - `bench settle`: N orders through the real HTTP API (group-commit ingest),
//!   then the release of all of them as the simulated clock passes T+3; on
//!   PostgreSQL, pgbench's TPC-B on the same server in the same run, so the
//!   figures can be read as a ratio on a noisy machine.
//! - `bench replan`: N holding orders re-planned by applying a year of the
//!   business calendar that moves them all (`calendar.rs`).
//! - `bench month-close`: a month of N distributors (one order each, the
//!   team bonus on) closed by `POST /v1/ops/month-close` (`month_close.rs`).
//! - `bench reconcile`: a China day of N payouts reconciled against its
//!   WeChat fund-flow bill, parse and match-and-write timed apart
//!   (`reconcile.rs`).
//! - `bench queue`: drains an apalis backlog of no-op jobs (20,000 or
//!   100,000) to show that the SQLite ack stays fast (apalis.md).
//!
//! Each run gets a fresh database: a temporary SQLite file, or a scratch
//! PostgreSQL database created on the server named by `--database-url` and
//! dropped afterwards.

pub mod calendar;
pub mod certificates;
pub mod month_close;
pub mod reconcile;
pub mod withdraw;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::app::Application;
use crate::config::Settings;
use crate::domain::access::Role;
use crate::store::{QueuePool, Store, StoreOptions};

/// Distributors in the benchmark's referral tree (a binary tree: the
/// referrer of `n` is `n / 2`, so most chains have three levels).
pub(crate) const BENCH_DISTRIBUTORS: usize = 1_000;
/// Clients creating a level of the referral tree at once.
const TREE_CONCURRENCY: usize = 32;
/// The queue the no-op backlog is pushed to.
const NOOP_QUEUE: &str = "bench.noop";
/// A backlog that makes no progress for this long counts as stalled.
const STALL_AFTER: Duration = Duration::from_secs(30);
/// How long pgbench's TPC-B runs for the reference figure.
const PGBENCH_SECONDS: u32 = 15;

/// A database for one benchmark run.
pub(crate) struct ScratchDb {
    pub(crate) url: String,
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl ScratchDb {
    pub(crate) async fn new(server_url: Option<&str>, tag: &str) -> anyhow::Result<ScratchDb> {
        match server_url {
            Some(url) if url.starts_with("postgres") => {
                let name = format!("fenrun_bench_{tag}_{}", std::process::id());
                crate::store::scratch::drop_scratch_database(url, &name).await?;
                let scratch = crate::store::scratch::create_scratch_database(url, &name).await?;
                Ok(ScratchDb {
                    url: scratch,
                    server: Some((url.to_owned(), name)),
                    _dir: None,
                })
            }
            _ => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(ScratchDb {
                    url,
                    server: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    pub(crate) async fn drop(self) {
        if let Some((server, name)) = &self.server
            && let Err(error) = crate::store::scratch::drop_scratch_database(server, name).await
        {
            eprintln!("could not drop scratch database {name}: {error}");
        }
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub(crate) fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// A progress bar for a benchmark's set-up.
pub(crate) fn progress_bar(length: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[derive(Debug, Clone, Copy)]
struct SettleFigures {
    ingest_per_s: f64,
    release_per_s: f64,
    end_to_end_per_s: f64,
}

/// The commission plan `bench settle` computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPlan {
    V1,
    V2,
    Both,
}

impl BenchPlan {
    fn plans(self) -> &'static [BenchPlan] {
        match self {
            BenchPlan::V1 => &[BenchPlan::V1],
            BenchPlan::V2 => &[BenchPlan::V2],
            BenchPlan::Both => &[BenchPlan::V1, BenchPlan::V2],
        }
    }

    fn label(self) -> &'static str {
        match self {
            BenchPlan::V1 => "v1 plan",
            BenchPlan::V2 => "v2 plan",
            BenchPlan::Both => "both plans",
        }
    }
}

/// The shipped plan with every v2 rule that acts at ingest switched on, at
/// values the bench's orders meet: tiers crossed within a run, a campaign
/// around now on the bench's category, a daily cap that trims the busiest
/// distributors, and risk counts of every buyer (each bench order has its
/// own buyer, so every order writes its count: the dearest case).
fn v2_bench_plan(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "daily_cap = \"2000.00\"\n{}\n\
         [tiers]\nsteps = [ {{ from = \"0.00\", level1 = \"10%\" }}, {{ from = \"5000.00\", level1 = \"12%\" }}, {{ from = \"20000.00\", level1 = \"14%\" }} ]\n\
         [[campaigns]]\nname = \"bench\"\nfrom = {}\nto = {}\nmultiplier = \"1.5\"\ncategories = [\"bench\"]\n\
         [risk]\nsame_buyer_orders_per_day = 5\nextra_hold_days = 2\n\
         [clearing]\ninactive_days = 90\n",
        crate::domain::plan::SHIPPED_DEFAULT_TOML
            .replace("name = \"default\"", "name = \"bench-v2\""),
        (now - chrono::Duration::days(30)).to_rfc3339(),
        (now + chrono::Duration::days(30)).to_rfc3339(),
    )
}

/// `fenrun bench settle`.
pub async fn settle(
    orders: usize,
    concurrency: usize,
    batch: usize,
    runs: usize,
    plan: BenchPlan,
    server_url: Option<&str>,
) -> anyhow::Result<()> {
    let backend = if server_url.is_some_and(|url| url.starts_with("postgres")) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "bench settle: {orders} orders, {concurrency} concurrent HTTP clients, {}, {runs} run(s), {backend}, {}",
        if batch > 1 {
            format!("{batch} orders per request (POST /v1/orders/batch)")
        } else {
            "one order per request".to_owned()
        },
        plan.label()
    );
    let mut figures: Vec<(BenchPlan, SettleFigures)> = Vec::new();
    let mut pgbench = Vec::new();
    for run in 1..=runs {
        if let Some(url) = server_url.filter(|url| url.starts_with("postgres")) {
            match pgbench_tpcb(url).await {
                Ok(tps) => {
                    println!(
                        "run {run}: pgbench TPC-B (scale 10, 8 clients, {PGBENCH_SECONDS} s): {tps:.0} tps"
                    );
                    pgbench.push(tps);
                }
                Err(error) => println!("run {run}: pgbench unavailable: {error}"),
            }
        }
        for &which in plan.plans() {
            let db = ScratchDb::new(server_url, "settle").await?;
            let result = settle_once(&db.url, orders, concurrency, batch, which).await;
            db.drop().await;
            let result = result?;
            println!(
                "run {run}, {}: ingest {:.0} orders/s, release {:.0} orders/s, end-to-end {:.0} orders/s",
                which.label(),
                result.ingest_per_s,
                result.release_per_s,
                result.end_to_end_per_s
            );
            figures.push((which, result));
        }
    }
    let mut medians = Vec::new();
    for &which in plan.plans() {
        let of_plan: Vec<SettleFigures> = figures
            .iter()
            .filter(|(plan, _)| *plan == which)
            .map(|(_, figures)| *figures)
            .collect();
        let mut ingest: Vec<f64> = of_plan.iter().map(|f| f.ingest_per_s).collect();
        let mut release: Vec<f64> = of_plan.iter().map(|f| f.release_per_s).collect();
        let mut end_to_end: Vec<f64> = of_plan.iter().map(|f| f.end_to_end_per_s).collect();
        let end_to_end = median(&mut end_to_end);
        println!(
            "median of {runs}, {}: ingest {:.0} orders/s, release {:.0} orders/s, end-to-end {end_to_end:.0} orders/s",
            which.label(),
            median(&mut ingest),
            median(&mut release),
        );
        if !pgbench.is_empty() {
            let tps = median(&mut pgbench);
            println!(
                "pgbench TPC-B median {tps:.0} tps; {} end-to-end / TPC-B = {:.2}",
                which.label(),
                end_to_end / tps
            );
        }
        medians.push(end_to_end);
    }
    if let [v1, v2] = medians[..] {
        println!(
            "v2 plan / v1 plan end-to-end = {:.2} (target: at least 0.90)",
            v2 / v1
        );
    }
    println!(
        "peak RSS {} MiB",
        peak_rss_mib().map_or("?".to_owned(), |mib| mib.to_string())
    );
    Ok(())
}

/// The bench's order number `number`: one to three items, its seller one
/// of `sellers` spread by a prime stride.
fn bench_order(
    number: usize,
    sellers: usize,
    confirmed_at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let seller = 1 + (number * 7_919) % sellers;
    let items: Vec<_> = (0..1 + number % 3)
        .map(|line| json!({"sku": format!("S{line}"), "category": "bench", "amount": format!("{}.{:02}", 10 + number % 990, number % 100)}))
        .collect();
    json!({
        "order_id": format!("b{number}"),
        "distributor_id": format!("d{seller}"),
        "buyer_id": format!("buyer{number}"),
        "placed_at": confirmed_at.to_rfc3339(),
        "confirmed_at": confirmed_at.to_rfc3339(),
        "items": items,
    })
}

/// The application on a scratch database, serving on a free port with a
/// simulated clock and no workers, with an ingest and an admin token.
pub(crate) struct BenchApp {
    pub(crate) address: String,
    pub(crate) store: Arc<Store>,
    pub(crate) client: reqwest::Client,
    ingest_token: Arc<String>,
    admin_token: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BenchApp {
    pub(crate) async fn start(url: &str, concurrency: usize) -> anyhow::Result<BenchApp> {
        let settings = Settings {
            database_url: SecretString::from(url.to_owned()),
            listen: "127.0.0.1:0".to_owned(),
            simulated_clock: true,
            // Measures throughput, not the settlement cycle: standard
            // withdrawals go as soon as they are approved.
            standard_withdrawals_at_once: true,
            run_workers: false,
            db_max_connections: 16,
            ..Settings::default()
        };
        // A scratch database gets a throwaway key: it is dropped after the
        // run, and a PostgreSQL one would otherwise need FENRUN_MASTER_KEY.
        let vault = crate::vault::Vault::new(crate::vault::MasterKey::generate()?, Vec::new());
        let app = Application::build_with_vault(settings, vault).await?;
        let address = format!("http://{}", app.local_addr());
        let store = app.state().store.clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let now = chrono::Utc::now();
        let bench = crate::service::audit::Actor::system("bench");
        let ingest_token =
            crate::service::tokens::create(&store, Role::Ingest, None, now, &bench).await?;
        let admin_token =
            crate::service::tokens::create(&store, Role::Admin, None, now, &bench).await?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        Ok(BenchApp {
            address,
            store,
            client,
            ingest_token: Arc::new(ingest_token.secret.expose_secret().to_owned()),
            admin_token: admin_token.secret.expose_secret().to_owned(),
            shutdown,
            server,
        })
    }

    /// The referral tree of [`BENCH_DISTRIBUTORS`] distributors.
    pub(crate) async fn create_distributors(&self) -> anyhow::Result<()> {
        self.create_tree(BENCH_DISTRIBUTORS).await
    }

    /// A binary referral tree of `count` distributors (`d1`…; the referrer
    /// of `dn` is `d(n/2)`), created a level at a time by up to
    /// [`TREE_CONCURRENCY`] clients, so each referrer exists before its referrals.
    pub(crate) async fn create_tree(&self, count: usize) -> anyhow::Result<()> {
        let limiter = Arc::new(Semaphore::new(TREE_CONCURRENCY));
        let mut level_start = 1;
        // Bounded: log2(count) + 1 levels.
        while level_start <= count {
            let level_end = (level_start * 2).min(count + 1);
            let mut sending = tokio::task::JoinSet::new();
            for number in level_start..level_end {
                let permit = limiter.clone().acquire_owned().await?;
                let client = self.client.clone();
                let url = format!("{}/v1/distributors", self.address);
                let token = self.ingest_token.clone();
                sending.spawn(async move {
                    let _permit = permit;
                    let mut body =
                        json!({"id": format!("d{number}"), "name": format!("bench {number}")});
                    if number > 1 {
                        body["referrer_id"] = json!(format!("d{}", number / 2));
                    }
                    let response = client
                        .post(url)
                        .bearer_auth(token.as_str())
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status().as_u16() == 201,
                        "creating d{number}: {}",
                        response.status()
                    );
                    Ok(())
                });
            }
            while let Some(done) = sending.join_next().await {
                done??;
            }
            level_start = level_end;
        }
        Ok(())
    }

    /// `orders` orders confirmed at `confirmed_at`, sent by `concurrency`
    /// clients, one per request (`batch` 1: `POST /v1/orders`) or `batch`
    /// per request (`POST /v1/orders/batch`, as an ERP syncs); answers how
    /// long it took.
    pub(crate) async fn ingest(
        &self,
        orders: usize,
        sellers: usize,
        concurrency: usize,
        batch: usize,
        confirmed_at: chrono::DateTime<chrono::Utc>,
        progress: Option<&indicatif::ProgressBar>,
    ) -> anyhow::Result<Duration> {
        let limiter = Arc::new(Semaphore::new(concurrency));
        let started = Instant::now();
        let mut sending = tokio::task::JoinSet::new();
        let batch = batch.max(1);
        for first in (0..orders).step_by(batch) {
            let permit = limiter.clone().acquire_owned().await?;
            let client = self.client.clone();
            let address = self.address.clone();
            let token = self.ingest_token.clone();
            let numbers = first..(first + batch).min(orders);
            sending.spawn(async move {
                let _permit = permit;
                let count = numbers.len();
                let bodies: Vec<serde_json::Value> = numbers
                    .map(|number| bench_order(number, sellers, confirmed_at))
                    .collect();
                if batch == 1 {
                    let response = client
                        .post(format!("{address}/v1/orders"))
                        .bearer_auth(token.as_str())
                        .json(&bodies[0])
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status().as_u16() == 202,
                        "order b{first}: {}",
                        response.status()
                    );
                } else {
                    let response = client
                        .post(format!("{address}/v1/orders/batch"))
                        .bearer_auth(token.as_str())
                        .json(&json!({ "orders": bodies }))
                        .send()
                        .await?;
                    let status = response.status();
                    let answer: serde_json::Value = response.json().await?;
                    anyhow::ensure!(
                        status.as_u16() == 200 && answer["accepted"].as_u64() == Some(count as u64),
                        "batch from b{first}: {status}, {} accepted of {count}",
                        answer["accepted"]
                    );
                }
                Ok(count)
            });
            while let Some(done) = sending.try_join_next() {
                let count = done??;
                if let Some(progress) = progress {
                    progress.inc(count as u64);
                }
            }
        }
        while let Some(done) = sending.join_next().await {
            let count = done??;
            if let Some(progress) = progress {
                progress.inc(count as u64);
            }
        }
        Ok(started.elapsed())
    }

    /// An admin request with a JSON body; answers the JSON it got back.
    pub(crate) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {answer}");
        Ok(answer)
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await?
    }
}

async fn settle_once(
    url: &str,
    orders: usize,
    concurrency: usize,
    batch: usize,
    plan: BenchPlan,
) -> anyhow::Result<SettleFigures> {
    let app = BenchApp::start(url, concurrency).await?;
    app.create_distributors().await?;
    if plan == BenchPlan::V2 {
        let toml = v2_bench_plan(chrono::Utc::now());
        app.admin(
            reqwest::Method::POST,
            "/v1/admin/plans",
            &json!({"toml": toml, "file_name": "bench-v2.toml"}),
        )
        .await?;
    }
    let ingest = app
        .ingest(
            orders,
            BENCH_DISTRIBUTORS,
            concurrency,
            batch,
            chrono::Utc::now(),
            None,
        )
        .await?;

    let release_started = Instant::now();
    let released = app
        .admin(
            reqwest::Method::POST,
            "/v1/admin/clock/advance",
            &json!({"days": 10}),
        )
        .await?;
    let release = release_started.elapsed();
    anyhow::ensure!(
        released["released"].as_u64() == Some(orders as u64),
        "released {} of {orders}",
        released["released"]
    );
    let report = app.store.verify_ledger().await?;
    anyhow::ensure!(
        report.is_clean(),
        "the ledger does not verify after the run"
    );
    app.stop().await?;
    let orders = orders as f64;
    Ok(SettleFigures {
        ingest_per_s: orders / ingest.as_secs_f64(),
        release_per_s: orders / release.as_secs_f64(),
        end_to_end_per_s: orders / (ingest + release).as_secs_f64(),
    })
}

/// pgbench's TPC-B on a scratch database of the same server.
async fn pgbench_tpcb(server_url: &str) -> anyhow::Result<f64> {
    let db = ScratchDb::new(Some(server_url), "pgbench").await?;
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let init = Command::new("pgbench")
            .args(["-i", "-s", "10", "-q", &url])
            .output()?;
        anyhow::ensure!(
            init.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let run = Command::new("pgbench")
            .args([
                "-c",
                "8",
                "-j",
                "2",
                "-T",
                &PGBENCH_SECONDS.to_string(),
                &url,
            ])
            .output()?;
        anyhow::ensure!(
            run.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stdout = String::from_utf8_lossy(&run.stdout);
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|tps| tps.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no tps line in pgbench's output"))
    })
    .await?;
    db.drop().await;
    result
}

async fn noop(_job: serde_json::Value) -> Result<(), BoxDynError> {
    Ok(())
}

/// `fenrun bench queue`: drains a backlog of no-op jobs through an apalis worker.
pub async fn queue(jobs: usize, server_url: Option<&str>) -> anyhow::Result<()> {
    let db = ScratchDb::new(server_url, "queue").await?;
    let result = queue_once(&db.url, jobs).await;
    db.drop().await;
    result
}

async fn queue_once(url: &str, jobs: usize) -> anyhow::Result<()> {
    let store = Store::open(url, &StoreOptions::default()).await?;
    if let Some(plan) = store.sqlite_ack_plan().await? {
        println!("SQLite ack plan: {plan}");
        println!(
            "SQLite synchronous per connection: {:?}",
            store.sqlite_synchronous_levels().await?.unwrap_or_default()
        );
    }
    let pushed = Instant::now();
    crate::store::scratch::push_noop_jobs(&store, NOOP_QUEUE, jobs).await?;
    println!("pushed {jobs} jobs in {:.2?}", pushed.elapsed());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let name = crate::engine::worker::worker_name("bench");
    let signal = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
        Ok::<(), std::io::Error>(())
    };
    let worker = match store.queue_pool() {
        QueuePool::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(NOOP_QUEUE)
                .batch_size(100);
            let storage =
                apalis_sqlite::SqliteStorage::<serde_json::Value>::new(&pool).with_config(config);
            tokio::spawn(async move {
                WorkerBuilder::new(name)
                    .backend(storage.poll_with_interval(Duration::from_millis(100)))
                    .concurrency(8)
                    .build(noop)
                    .run_until(signal)
                    .await
            })
        }
        QueuePool::Postgres(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(NOOP_QUEUE)
                .batch_size(100);
            let storage = apalis_postgres::PostgresStorage::<serde_json::Value>::new(&pool)
                .with_config(config);
            tokio::spawn(async move {
                WorkerBuilder::new(name)
                    .backend(storage.poll_with_interval(Duration::from_millis(100)))
                    .concurrency(8)
                    .build(noop)
                    .run_until(signal)
                    .await
            })
        }
    };
    let started = Instant::now();
    let mut last_done = 0;
    let mut last_progress = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let counts = crate::store::scratch::queue_counts(&store, NOOP_QUEUE).await?;
        let done = counts
            .iter()
            .find(|(status, _)| status == "Done")
            .map_or(0, |(_, count)| *count);
        if done > last_done {
            last_done = done;
            last_progress = Instant::now();
        }
        if done as usize >= jobs {
            let elapsed = started.elapsed();
            println!(
                "drained {jobs} jobs in {elapsed:.2?}: {:.0} jobs/s (no stall)",
                jobs as f64 / elapsed.as_secs_f64()
            );
            break;
        }
        if last_progress.elapsed() > STALL_AFTER {
            let _ = stop.send(true);
            anyhow::bail!(
                "STALLED: {done} of {jobs} done, no progress for {STALL_AFTER:?}; counts {counts:?}"
            );
        }
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    store.close().await;
    Ok(())
}
