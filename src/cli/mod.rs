//! The `fenrun` command line: parse, build, run. Every command has `--help`.

pub mod bench;
mod commands;
pub mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::config::{LogFormat, Settings};
use crate::domain::access::Role;
use crate::domain::money::Money;
use crate::domain::tax::{Month, WithholdingMethod};

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
    /// Distributor grade commands.
    Grades {
        #[command(subcommand)]
        command: GradesCommand,
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
    /// Business calendar commands: apply a year's State Council notice.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
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
    /// Month close (月结): team bonus and monthly statements.
    MonthClose {
        #[command(subcommand)]
        command: MonthCloseCommand,
    },
    /// Webhook tools: check a delivery's Standard Webhooks signature.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
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
        #[command(flatten)]
        tls: commands::sandbox::TlsArgs,
    },
    /// Run the order-settlement workflow end to end on a temporary database and a simulated clock.
    Demo {
        /// Keep the demo database here instead of a temporary file.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MonthCloseCommand {
    /// Close a month now (or finish its interrupted close): each team bonus
    /// and every distributor's statement. A month closed before is left as
    /// it is. The month must be over.
    Run {
        /// The local month, YYYY-MM.
        #[arg(long, value_parser = parse_month)]
        month: crate::domain::tax::Month,
    },
}

fn parse_channel(text: &str) -> Result<crate::domain::identity::PayoutChannel, String> {
    crate::domain::identity::PayoutChannel::parse(text)
        .map_err(|_| "expected wechat, alipay or bank".to_owned())
}

fn parse_month(text: &str) -> Result<crate::domain::tax::Month, String> {
    crate::domain::tax::Month::parse(text).map_err(|error| error.to_string())
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
        /// Orders per request: 1 sends each to `POST /v1/orders`; more
        /// sends them in batches to `POST /v1/orders/batch` (at most 1,000).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
        batch: u16,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Which commission plan the orders are computed with: `v1` (grade
        /// rates), `v2` (every v2 rule on: tiers, a campaign, a daily cap,
        /// risk holds) or `both`, alternating in each run, with the ratio.
        #[arg(long, value_enum, default_value_t = crate::cli::bench::BenchPlan::V1)]
        plan: crate::cli::bench::BenchPlan,
    },
    /// Withdrawals end to end through the in-process sandbox gateway: HTTP
    /// request, transfer, signed callback, completion; once per latency.
    Withdraw {
        /// The channel of every payout account: `wechat` (WeChat v3),
        /// `alipay` (Alipay to an account) or `bank` (Alipay to a card).
        #[arg(long, default_value = "wechat", value_parser = parse_channel)]
        channel: crate::domain::identity::PayoutChannel,
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
    /// Holding orders re-planned by applying a year of the business
    /// calendar that moves every one of them (the real PUT, one transaction).
    Replan {
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A month of N distributors closed (team bonus on): seconds to close it.
    MonthClose {
        #[arg(long, default_value_t = 10_000)]
        distributors: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// A China day of N WeChat payouts reconciled against its fund-flow
    /// bill: parse, then match and write, timed apart; the clean day must
    /// have no mismatch, and a dropped line and a changed amount are found.
    Reconcile {
        /// Payouts of the day, one statement line each.
        #[arg(long, default_value_t = 100_000)]
        lines: usize,
        /// Runs; the median is reported.
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
pub enum WebhooksCommand {
    /// Check a delivery's `webhook-signature` against its raw body and the
    /// endpoint's secret (when a receiver refuses what fenrun sent): prints
    /// why not and exits 1, or says it is genuine.
    Verify {
        /// The endpoint's secret, `whsec_…` (or FENRUN_WEBHOOK_SECRET, which
        /// keeps it out of the process list).
        #[arg(long, env = "FENRUN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: secrecy::SecretString,
        /// The `webhook-id` header.
        #[arg(long)]
        id: String,
        /// The `webhook-timestamp` header (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The `webhook-signature` header (one or more `v1,…` entries).
        #[arg(long)]
        signature: String,
        /// Skip the five-minute freshness check, for a delivery saved earlier.
        #[arg(long)]
        any_time: bool,
        /// The raw body as received, byte for byte; `-` for standard input.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum GradesCommand {
    /// Run the daily grade review now: upgrades (晋级) and clearing (清退)
    /// under the plan in force, as the `review_grades` schedule does; a
    /// second run changes nothing more.
    Review {
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
pub enum CalendarCommand {
    /// Apply the years of a calendar file (`[years.YYYY]` tables, as in
    /// workflows/calendars/cn.toml) at run time: each becomes a new version
    /// that every serve and worker uses without a restart, and the holds it
    /// moves are re-planned. The same year applied twice changes nothing.
    Apply {
        file: PathBuf,
        /// Apply only this year of the file.
        #[arg(long)]
        year: Option<i32>,
    },
    /// Show a year as it is used: where it comes from and its days off.
    Show { year: i32 },
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

/// Runs the parsed command; the process exit code is the result's.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings()?;
    init_logging(&cli.command, &settings);
    match cli.command {
        Command::Serve { .. } => commands::serve::serve(settings).await,
        Command::Worker => commands::serve::worker(settings).await,
        Command::Migrate => commands::serve::migrate(&settings).await,
        Command::Certificate { command } => commands::certificate::run(&settings, command).await,
        Command::Ledger { command } => commands::ledger::run(&settings, command).await,
        Command::Grades { command } => commands::grades::run(&settings, command).await,
        Command::Token { command } => commands::token::run(&settings, command).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => commands::keys::rotate(&settings).await,
        Command::Calendar { command } => commands::calendar::run(&settings, command).await,
        Command::Plan { command } => commands::plan::run(&settings, command).await,
        Command::Workflows { command } => commands::workflows::run(&settings, command),
        Command::Bench { command } => commands::bench::run(&settings, command).await,
        Command::MonthClose { command } => commands::month_close::run(&settings, command).await,
        Command::Webhooks { command } => commands::webhooks::run(command),
        Command::Tax { command } => commands::tax::run(command),
        Command::Demo { keep } => {
            demo::run(keep).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SandboxGateway {
            port,
            host,
            faults,
            tls,
        } => commands::sandbox::run(port, host, faults, tls).await,
    }
}

/// Logging at the settings' filter; the demo and the benchmarks print their
/// own story, so their logs only matter when something is wrong.
fn init_logging(command: &Command, settings: &Settings) {
    let log_filter = match command {
        Command::Demo { .. } | Command::Bench { .. }
            if std::env::var_os("FENRUN_LOG_FILTER").is_none() =>
        {
            "warn"
        }
        _ => settings.log_filter.as_str(),
    };
    crate::telemetry::init(settings.log_format, log_filter);
}
