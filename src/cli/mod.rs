//! The `fenrun` command line: parse, build, run. Every command has `--help`.

pub mod bench;
pub mod demo;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::app::{Application, shutdown_signal};
use crate::clock::{Clock, SystemClock};
use crate::config::{LogFormat, Settings};
use crate::domain::access::Role;
use crate::domain::ids::DistributorId;
use crate::domain::money::Money;
use crate::domain::tax::{self, CumulativeContext, Month, Withholding, WithholdingMethod};
use crate::store::{Store, redact_url};

#[derive(Debug, Parser)]
#[command(
    name = "fenrun",
    version,
    about = "Payout and compliance orchestrator for social distribution commerce (分销)"
)]
pub struct Cli {
    /// Settings file (TOML); default `fenrun.toml` if present. Env: FENRUN_CONFIG.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// `sqlite://fenrun.db` (default) or `postgres://…`. Env: FENRUN_DATABASE_URL.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Log as `text` or `json`. Env: FENRUN_LOG_FORMAT.
    #[arg(long, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve {
        /// Address to listen on. Env: FENRUN_LISTEN (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Time moves only on POST /v1/admin/clock/advance. Never in production.
        #[arg(long)]
        simulated_clock: bool,
        /// Serve the API only; leave the step queues to `fenrun worker` processes.
        #[arg(long)]
        no_workers: bool,
    },
    /// Run the step workers and the scheduler, without the API.
    Worker,
    /// Apply every database migration (fenrun's and apalis's) and exit.
    Migrate,
    /// Ledger commands.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// API token commands.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Master key commands (payout credentials are sealed under it).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Commission plan commands.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Workflow definition commands.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// Benchmarks; they print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Withholding certificates.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// Individual income tax on distributors' commissions (劳务报酬所得).
    Tax {
        #[command(subcommand)]
        command: TaxCommand,
    },
    /// Run the sandbox payment gateway: a real HTTP server speaking the
    /// WeChat Pay v3 transfer dialect with test keys, fault injection and its
    /// own record of money sent (`GET /sandbox/ledger`). No real money moves.
    SandboxGateway {
        #[arg(long, default_value_t = 8090)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Faults to start with, as JSON (see `POST /sandbox/faults`).
        #[arg(long)]
        faults: Option<String>,
    },
    /// Run the order-settlement workflow end to end on a temporary database and a simulated clock.
    Demo {
        /// Keep the demo database here instead of a temporary file.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Orders through ingest (HTTP, group commit) and release; SQLite by
    /// default, or a scratch database on the PostgreSQL server of --database-url.
    Settle {
        #[arg(long, default_value_t = 10_000)]
        orders: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Withdrawals end to end through the in-process sandbox gateway: HTTP
    /// request, transfer, signed callback, completion; once per latency.
    Withdraw {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Sandbox answer latencies to run with, in milliseconds.
        #[arg(long, value_delimiter = ',', default_value = "0,200")]
        latency_ms: Vec<u64>,
        /// Runs per latency; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Certificates: render and sign per second, then `count` withdrawals
    /// through the workflow until certified, and their month's zip streamed.
    Certificates {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Concurrent HTTP clients requesting the withdrawals.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Runs of the render and zip measurements; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Drain a backlog of no-op apalis jobs.
    Queue {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Say whether a certificate PDF is genuine: signed by a published key,
    /// byte for byte. Exit 0 if genuine, 1 if not.
    Verify {
        /// The certificate PDF.
        file: PathBuf,
        /// Its signed manifest; default: FILE with the extension .json beside
        /// it, else the manifest stored for this PDF in the database.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// The published keys (the JSON of GET /v1/tax/keys, or keys.json of
        /// a month's zip) instead of the database's: verifies offline.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Re-derive every balance from the postings and check that Σ = 0; exit 1 if not.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token; the token is the last word printed.
    Create {
        /// admin, ingest, ops, accountant or distributor.
        #[arg(long)]
        role: Role,
        /// The distributor a distributor token is scoped to.
        #[arg(long)]
        distributor: Option<String>,
        /// Stop working after this long: `30d`, `12h`, `90m` or `3600s`
        /// (at most 3660 days). Without it or --expires-at, the token works
        /// until revoked.
        #[arg(long, value_parser = crate::service::tokens::parse_lifetime, conflicts_with = "expires_at")]
        expires_in: Option<chrono::Duration>,
        /// Stop working at this instant (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
    /// List the tokens (id, role, distributor, created, expires, revoked),
    /// never the tokens themselves.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (`tok_…`): it, and the page sessions signed
    /// in with it, stop working at once in every process. Revoking a revoked
    /// token is fine.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Reseal every payout credential not under the current master key
    /// (FENRUN_MASTER_KEY_FILE or FENRUN_MASTER_KEY), opening them with the
    /// previous key(s) in FENRUN_MASTER_KEY_PREVIOUS_FILE (one a line) or
    /// FENRUN_MASTER_KEY_PREVIOUS (comma-separated). Safe while the service
    /// runs (give it the previous keys too until this finishes) and safe to
    /// re-run; once it reports nothing left, the previous keys can be retired.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan file and store it as a new version.
    Apply { file: PathBuf },
    /// List every stored plan version.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TaxCommand {
    /// Trial calculation (试算): the tax withheld on each of a sequence of
    /// payouts to one distributor in one month.
    Quote {
        /// `per-payment` (按次预扣预缴, 2018年第61号) or `cumulative`
        /// (累计预扣法, 2025年第16号).
        #[arg(long)]
        method: WithholdingMethod,
        /// The month of the payouts, YYYY-MM.
        #[arg(long)]
        month: Month,
        /// The payouts' gross amounts in order, comma-separated (2000.00,2000.00).
        #[arg(long, value_delimiter = ',', required = true)]
        payments: Vec<Money>,
        /// Print JSON, amounts as two-decimal strings.
        #[arg(long)]
        json: bool,
        /// Cumulative only, required: consecutive months with income this
        /// year, this month included.
        #[arg(long)]
        months_count: Option<u8>,
        /// Cumulative only: the year's income before these payouts (default 0).
        #[arg(long)]
        prior_income: Option<Money>,
        /// Cumulative only: the tax withheld on that income (default 0).
        #[arg(long)]
        prior_withheld: Option<Money>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Validate the workflow definitions, schedules, calendars and plans under the workflows folder.
    Check {
        /// Folder to check (default: the `workflows_dir` setting).
        dir: Option<PathBuf>,
    },
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format must be text or json, not {other:?}")),
        }
    }
}

impl Cli {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(url) = &self.database_url {
            settings.database_url = SecretString::from(url.clone());
        }
        if let Some(format) = self.log_format {
            settings.log_format = format;
        }
        if let Command::Serve {
            listen,
            simulated_clock,
            no_workers,
        } = &self.command
        {
            if let Some(listen) = listen {
                settings.listen = listen.clone();
            }
            settings.simulated_clock |= *simulated_clock;
            settings.run_workers &= !*no_workers;
        }
        settings.validate()?;
        Ok(settings)
    }
}

/// `tax quote`: the cumulative context from the flags, refusing flags that do
/// not belong to the method.
fn cumulative_context(
    method: WithholdingMethod,
    month: Month,
    months_count: Option<u8>,
    prior_income: Option<Money>,
    prior_withheld: Option<Money>,
) -> anyhow::Result<Option<CumulativeContext>> {
    match (method, months_count) {
        (WithholdingMethod::Cumulative, Some(months_count)) => Ok(Some(CumulativeContext {
            month,
            months_count,
            prior_income: prior_income.unwrap_or(Money::ZERO),
            prior_withheld: prior_withheld.unwrap_or(Money::ZERO),
        })),
        (WithholdingMethod::Cumulative, None) => Err(anyhow::anyhow!(
            "--method cumulative needs --months-count (consecutive months with income this year, this month included)"
        )),
        (WithholdingMethod::PerPayment, _)
            if months_count.is_some() || prior_income.is_some() || prior_withheld.is_some() =>
        {
            Err(anyhow::anyhow!(
                "--months-count, --prior-income and --prior-withheld apply only to --method cumulative"
            ))
        }
        (WithholdingMethod::PerPayment, _) => Ok(None),
    }
}

/// `tax quote --json`: the payouts in order, their fields in certificate order.
#[derive(serde::Serialize)]
struct TaxQuoteReport<'a> {
    method: WithholdingMethod,
    month: Month,
    #[serde(skip_serializing_if = "Option::is_none")]
    months_count: Option<u8>,
    payouts: &'a [Withholding],
    total_gross: Money,
    total_withheld: Money,
    total_net: Money,
}

/// `tax quote` as a table, one line per payout, and the totals.
fn describe_tax_quote(
    method: WithholdingMethod,
    month: Month,
    quotes: &[Withholding],
    totals: [Money; 3],
) -> String {
    use std::fmt::Write as _;
    let (title, to_date) = match method {
        WithholdingMethod::PerPayment => (
            format!(
                "per-payment withholding (按次预扣预缴) in {month}: the month's payouts are one 次"
            ),
            "month-to-date",
        ),
        WithholdingMethod::Cumulative => (
            format!(
                "cumulative withholding (累计预扣法) in {month}, {} consecutive month(s) this year",
                quotes.first().and_then(|q| q.months_count).unwrap_or(0)
            ),
            "cumulative",
        ),
    };
    let mut out = format!("{title}\n");
    let _ = writeln!(
        out,
        "{:>3} {:>12} {:>14} {:>11} {:>11} {:>12} {:>5} {:>10} {:>12} {:>15} {:>12} {:>12}",
        "#",
        "gross",
        to_date,
        "fee",
        "basic ded.",
        "taxable",
        "rate",
        "quick ded.",
        "tax to date",
        "withheld before",
        "withheld now",
        "net"
    );
    for (index, q) in quotes.iter().enumerate() {
        // Money and Rate ignore width flags; pad their text instead.
        let _ = writeln!(
            out,
            "{:>3} {:>12} {:>14} {:>11} {:>11} {:>12} {:>5} {:>10} {:>12} {:>15} {:>12} {:>12}",
            index + 1,
            q.gross.to_string(),
            q.income_to_date.to_string(),
            q.fee.to_string(),
            q.basic_deduction.to_string(),
            q.taxable.to_string(),
            q.rate.to_string(),
            q.quick_deduction.to_string(),
            q.tax_to_date.to_string(),
            q.withheld_before.to_string(),
            q.withheld_now.to_string(),
            q.net.to_string()
        );
    }
    let [gross, withheld, net] = totals;
    let _ = writeln!(out, "total: gross {gross}, withheld {withheld}, net {net}");
    out
}

/// `fenrun certificate verify`: prints the verdict; true when genuine.
async fn verify_certificate_file(
    settings: &Settings,
    file: &Path,
    manifest: Option<PathBuf>,
    keys: Option<&Path>,
    json: bool,
) -> anyhow::Result<bool> {
    use crate::certificate::{Verification, verify};
    let read = |path: &Path, limit: u64| -> anyhow::Result<Vec<u8>> {
        let size = std::fs::metadata(path)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= limit,
            "{} is larger than {limit} bytes",
            path.display()
        );
        std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
    };
    let pdf = read(file, crate::api::certificates::MAX_VERIFY_PDF_BYTES as u64)?;
    let beside = file.with_extension("json");
    let manifest_path = manifest.or_else(|| beside.is_file().then_some(beside));
    let manifest = manifest_path
        .map(|path| -> anyhow::Result<String> {
            let bytes = read(&path, crate::certificate::MAX_MANIFEST_BYTES as u64)?;
            String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
        })
        .transpose()?;
    let verification = match keys {
        Some(keys_path) => {
            let document: serde_json::Value = serde_json::from_slice(&read(keys_path, 1 << 20)?)
                .map_err(|error| anyhow::anyhow!("{}: {error}", keys_path.display()))?;
            let keys = crate::certificate::archive::parse_keys_document(&document)
                .map_err(|error| anyhow::anyhow!("{}: {error}", keys_path.display()))?;
            let manifest = manifest.ok_or_else(|| {
                anyhow::anyhow!(
                    "no manifest beside {}: pass --manifest (offline verification needs it)",
                    file.display()
                )
            })?;
            verify(&pdf, &manifest, &keys)
        }
        None => {
            let store = open_store(settings).await?;
            let verification =
                crate::engine::certificate::verify_upload(&store, &pdf, manifest.as_deref()).await;
            store.close().await;
            verification?
        }
    };
    let genuine = matches!(verification, Verification::Genuine { .. });
    match (&verification, json) {
        (
            Verification::Genuine {
                number,
                gross,
                tax,
                net,
                key_id,
            },
            true,
        ) => println!(
            "{}",
            serde_json::json!({"genuine": true, "number": number, "gross": gross, "tax": tax, "net": net, "key_id": key_id})
        ),
        (Verification::NotGenuine(rejection), true) => println!(
            "{}",
            serde_json::json!({"genuine": false, "reason_code": rejection.code(), "reason": rejection.to_string()})
        ),
        (
            Verification::Genuine {
                number,
                gross,
                tax,
                net,
                key_id,
            },
            false,
        ) => println!(
            "genuine: certificate {number}: gross {gross}, tax withheld {tax}, net paid {net} (signed with key {key_id})"
        ),
        (Verification::NotGenuine(rejection), false) => {
            println!("NOT genuine ({}): {rejection}", rejection.code())
        }
    }
    Ok(genuine)
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database_url.expose_secret();
    let store = Store::open(url, &settings.store_options())
        .await
        .map_err(|error| anyhow::anyhow!("opening {}: {error}", redact_url(url)))?;
    crate::service::plans::ensure_default(&store, SystemClock.now()).await?;
    Ok(store)
}

/// `fenrun token create | list | revoke`.
async fn token_command(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let now = SystemClock.now();
    let actor = crate::service::audit::Actor::command_line();
    match command {
        TokenCommand::Create {
            role,
            distributor,
            expires_in,
            expires_at,
        } => {
            let distributor = distributor.map(DistributorId::parse).transpose()?;
            let expires_at = expires_in
                .map(|lifetime| chrono::SubsecRound::trunc_subsecs(now + lifetime, 0))
                .or_else(|| expires_at.map(|at| at.with_timezone(&chrono::Utc)));
            let issued = crate::service::tokens::create_expiring(
                &store,
                role,
                distributor.as_ref(),
                expires_at,
                now,
                &actor,
            )
            .await?;
            let until =
                expires_at.map_or_else(|| "until revoked".to_owned(), |at| format!("until {at}"));
            eprintln!(
                "created {role} token {} valid {until} (shown once; store it now)",
                issued.id
            );
            println!("{}", issued.secret.expose_secret());
        }
        TokenCommand::List { json } => {
            let mut after: Option<String> = None;
            if !json {
                println!(
                    "{:<22} {:<11} {:<20} {:<25} {:<25} revoked",
                    "id", "role", "distributor", "created", "expires"
                );
            }
            // Every page: the listing is bounded per query, not in total.
            loop {
                let page = store
                    .tokens(after.as_deref(), crate::store::MAX_PAGE)
                    .await?;
                for token in &page {
                    let distributor = token.distributor_id.as_ref().map(DistributorId::as_str);
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "id": token.id, "role": token.role, "distributor_id": distributor,
                                "created_at": token.created_at, "expires_at": token.expires_at,
                                "revoked_at": token.revoked_at,
                            })
                        );
                    } else {
                        let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                            at.map_or_else(
                                || "-".to_owned(),
                                |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                            )
                        };
                        println!(
                            "{:<22} {:<11} {:<20} {:<25} {:<25} {}",
                            token.id,
                            token.role,
                            distributor.unwrap_or("-"),
                            time(Some(token.created_at)),
                            time(token.expires_at),
                            time(token.revoked_at)
                        );
                    }
                }
                if (page.len() as i64) < crate::store::MAX_PAGE {
                    break;
                }
                after = page.last().map(|token| token.id.clone());
            }
        }
        TokenCommand::Revoke { id } => match store.revoke_token(&id, now, &actor).await? {
            Some(crate::store::Revocation::Revoked) => println!("revoked {id}"),
            Some(crate::store::Revocation::AlreadyRevoked) => println!("{id} was already revoked"),
            None => {
                store.close().await;
                anyhow::bail!("no token {id}");
            }
        },
    }
    store.close().await;
    Ok(())
}

/// Runs the parsed command; the process exit code is the result's.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let settings = cli.settings()?;
    // The demo prints its own story; its logs only matter when something is wrong.
    let log_filter = match cli.command {
        Command::Demo { .. } | Command::Bench { .. }
            if std::env::var_os("FENRUN_LOG_FILTER").is_none() =>
        {
            "warn"
        }
        _ => settings.log_filter.as_str(),
    };
    crate::telemetry::init(settings.log_format, log_filter);
    match cli.command {
        Command::Serve { .. } => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Worker => {
            let runtime = crate::app::Runtime::build(settings).await?;
            runtime.run_workers_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = open_store(&settings).await?;
            println!(
                "migrations applied to {}",
                redact_url(settings.database_url.expose_secret())
            );
            store.close().await;
        }
        Command::Certificate {
            command:
                CertificateCommand::Verify {
                    file,
                    manifest,
                    keys,
                    json,
                },
        } => {
            let genuine =
                verify_certificate_file(&settings, &file, manifest, keys.as_deref(), json).await?;
            if !genuine {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Ledger {
            command: LedgerCommand::Verify { json },
        } => {
            let store = open_store(&settings).await?;
            let report = store.verify_ledger().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", crate::cli::demo::describe_ledger_report(&report));
            }
            if !report.is_clean() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Token { command } => token_command(&settings, command).await?,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let vault =
                crate::vault::Vault::from_sources(&settings.master_key, &settings.database_url)?;
            let previous: Vec<String> = vault
                .previous_key_ids()
                .iter()
                .map(ToString::to_string)
                .collect();
            println!(
                "resealing under master key {} (opening with previous keys: {})",
                vault.current_key_id(),
                if previous.is_empty() {
                    "none".to_owned()
                } else {
                    previous.join(", ")
                }
            );
            let store = open_store(&settings).await?;
            let report = crate::vault::credentials::rotate(&store, &vault, |table, counts| {
                println!(
                    "{table}: {} resealed, {} skipped so far",
                    counts.resealed, counts.skipped
                );
            })
            .await;
            if let Ok(report) = &report {
                crate::service::audit::record(
                    &store,
                    &crate::service::audit::Actor::command_line(),
                    "keys.rotate",
                    &format!("master_key:{}", vault.current_key_id()),
                    Some(serde_json::json!({"previous_key_ids": previous})),
                    Some(serde_json::json!({
                        "key_id": vault.current_key_id().to_string(),
                        "identities_resealed": report.identities.resealed,
                        "payout_accounts_resealed": report.payout_accounts.resealed,
                    })),
                    SystemClock.now(),
                )
                .await;
            }
            store.close().await;
            let report = report?;
            println!(
                "done: {} identities and {} payout accounts resealed ({} and {} changed meanwhile and were left alone)",
                report.identities.resealed,
                report.payout_accounts.resealed,
                report.identities.skipped,
                report.payout_accounts.skipped
            );
        }
        Command::Plan {
            command: PlanCommand::Apply { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?;
            let store = open_store(&settings).await?;
            let stored = crate::service::plans::apply(
                &store,
                &text,
                &file.display().to_string(),
                &crate::service::audit::Actor::command_line(),
                SystemClock.now(),
            )
            .await;
            store.close().await;
            let stored = stored?;
            println!(
                "plan {:?} stored as version {}, in force from {}",
                stored.name, stored.version, stored.effective_from
            );
        }
        Command::Plan {
            command: PlanCommand::List,
        } => {
            let store = open_store(&settings).await?;
            let plans = store.list_plans().await?;
            store.close().await;
            println!(
                "{:>7}  {:<24}  {:<25}  applied by",
                "version", "name", "effective from"
            );
            for plan in plans {
                println!(
                    "{:>7}  {:<24}  {:<25}  {}",
                    plan.version,
                    plan.name,
                    plan.effective_from.to_rfc3339(),
                    plan.applied_by
                );
            }
        }
        Command::Workflows {
            command: WorkflowsCommand::Check { dir },
        } => {
            let dir = dir.unwrap_or_else(|| settings.workflows_dir.clone());
            let checked = crate::engine::definition::check::check_dir(&dir)?;
            for file in &checked {
                println!("ok  {}", file.display());
            }
            println!("{} file(s) valid", checked.len());
        }
        Command::Bench { command } => {
            // Only an explicit --database-url / FENRUN_DATABASE_URL picks PostgreSQL.
            let url = settings.database_url.expose_secret().to_owned();
            let server = url.starts_with("postgres").then_some(url.as_str());
            match command {
                BenchCommand::Settle {
                    orders,
                    concurrency,
                    runs,
                } => {
                    crate::cli::bench::settle(orders, concurrency.max(1), runs.max(1), server)
                        .await?;
                }
                BenchCommand::Queue { jobs } => crate::cli::bench::queue(jobs, server).await?,
                BenchCommand::Certificates {
                    count,
                    concurrency,
                    runs,
                } => {
                    crate::cli::bench::certificates::certificates(
                        count.max(1),
                        concurrency.max(1),
                        runs.max(1),
                        server,
                    )
                    .await?;
                }
                BenchCommand::Withdraw {
                    count,
                    concurrency,
                    latency_ms,
                    runs,
                } => {
                    crate::cli::bench::withdraw::withdraw(
                        count,
                        concurrency.max(1),
                        &latency_ms,
                        runs.max(1),
                        server,
                    )
                    .await?;
                }
            }
        }
        Command::Tax {
            command:
                TaxCommand::Quote {
                    method,
                    month,
                    payments,
                    json,
                    months_count,
                    prior_income,
                    prior_withheld,
                },
        } => {
            let cumulative =
                cumulative_context(method, month, months_count, prior_income, prior_withheld)?;
            let quotes = tax::quote_sequence(method, &payments, cumulative)?;
            let total = |pick: fn(&Withholding) -> Money| {
                Money::checked_sum(quotes.iter().map(pick))
                    .ok_or_else(|| anyhow::anyhow!("the payouts' total is too large"))
            };
            let totals = [
                total(|q| q.gross)?,
                total(|q| q.withheld_now)?,
                total(|q| q.net)?,
            ];
            if json {
                let [total_gross, total_withheld, total_net] = totals;
                let report = TaxQuoteReport {
                    method,
                    month,
                    months_count,
                    payouts: &quotes,
                    total_gross,
                    total_withheld,
                    total_net,
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", describe_tax_quote(method, month, &quotes, totals));
            }
        }
        Command::Demo { keep } => {
            crate::cli::demo::run(keep).await?;
        }
        Command::SandboxGateway { port, host, faults } => {
            let faults = match faults {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|error| anyhow::anyhow!("--faults: {error}"))?,
                None => fenrun_integrations::sandbox::Faults::default(),
            };
            let address: std::net::SocketAddr = format!("{host}:{port}")
                .parse()
                .map_err(|_| anyhow::anyhow!("--host {host:?} --port {port} is not an address"))?;
            let sandbox = fenrun_integrations::sandbox::SandboxGateway::start(
                fenrun_integrations::sandbox::SandboxConfig {
                    listen: address,
                    faults,
                    ..Default::default()
                },
            )
            .await?;
            tracing::warn!(address = %sandbox.base_url(), "SANDBOX payment gateway (WeChat Pay v3 dialect, test keys): no real money moves");
            println!("sandbox gateway listening on {}", sandbox.base_url());
            crate::app::shutdown_signal().await;
            sandbox.shutdown().await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
