//! Workflow definitions and scheduled jobs: the step graph and its policies
//! as data, read from `workflows/*.toml` and `workflows/schedules.toml`.
//!
//! Owns [`WorkflowDefinition`] — a [`Trigger`] and ordered steps, each a
//! built-in [`StepKind`] with its queue, concurrency, timeout and
//! [`RetryPolicy`] — and [`Schedules`], the cron jobs of built-in
//! [`JobKind`]s. The step logic is code elsewhere in the engine; this module
//! decides whether a file describes something the engine can run, and
//! otherwise refuses it as `file:line: what is wrong` ([`DefinitionError`]):
//!
//! ```text
//! text ──► raw serde structs ──► each value checked ──────► each workflow checked ──► load_all
//!          (syntax, unknown      (ranges, names, zones,     (step order rules,        (queue and workflow
//!           keys, wrong types)    cron, kinds, calendar)     duplicate names/queues)   names unique across files)
//! ```
//!
//! Cron expressions are parsed here, at load, so a bad one fails the start
//! rather than the first run. They have 6 or 7 fields, seconds first
//! (`"0 0 1 * * *"` is 01:00 every day), as the `cron` crate reads them.
//!
//! The safety-net sweep of due holds is a scheduled job (`release_sweep` in
//! `schedules.toml`), not part of the order-settlement definition: every
//! cron schedule the engine fires lives in that one file.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

pub mod check;
mod params;
pub use params::{
    ConfirmParams, ReserveParams, ReviewParams, StepParams, TransferParams, WithholdTaxParams,
};

/// The file in the workflows folder that holds [`Schedules`]; every other
/// `*.toml` directly in the folder is a workflow definition.
pub const SCHEDULES_FILE_NAME: &str = "schedules.toml";

/// The declaration layout file in the workflows folder: not a workflow.
pub const DECLARATION_FILE_NAME: &str = "declaration.toml";

/// The month close's settings file in the workflows folder: not a workflow.
pub const MONTH_CLOSE_FILE_NAME: &str = "month-close.toml";
/// The reconciliation settings' file (not a workflow).
pub const RECONCILIATION_FILE_NAME: &str = "reconciliation.toml";

/// Where the shipped order-settlement workflow lives, relative to the
/// repository root (for error messages).
pub const SHIPPED_ORDER_SETTLEMENT_FILE: &str = "workflows/order-settlement.toml";

/// The order-settlement workflow built into the binary, for a machine without
/// the `workflows/` folder; see [`WorkflowDefinition::shipped_order_settlement`].
pub const SHIPPED_ORDER_SETTLEMENT: &str = include_str!("../../workflows/order-settlement.toml");

/// Where the shipped withdrawal workflow lives in the repository.
pub const SHIPPED_WITHDRAWAL_FILE: &str = "workflows/withdrawal.toml";

/// The shipped withdrawal workflow, built into the binary.
pub const SHIPPED_WITHDRAWAL: &str = include_str!("../../workflows/withdrawal.toml");

/// Where the shipped schedules live, relative to the repository root.
pub const SHIPPED_SCHEDULES_FILE: &str = "workflows/schedules.toml";

/// The scheduled jobs built into the binary; see [`Schedules::shipped`].
pub const SHIPPED_SCHEDULES: &str = include_str!("../../workflows/schedules.toml");

/// Workers per step when `concurrency` is left out: one keeps a queue's jobs
/// in order and suits SQLite's single writer.
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// Step timeout in milliseconds when `timeout_ms` is left out.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Attempts in all (the first included) when `retry.max_attempts` is left out.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Delay before the first retry, in milliseconds, when `retry.backoff_base_ms`
/// is left out.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 1_000;
/// Longest delay between attempts, in milliseconds, when
/// `retry.backoff_max_ms` is left out.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 60_000;

/// Workers per step. Beyond 64 they would only wait on the database pool
/// (and SQLite has one writer), so a larger number is taken to be a typo.
const CONCURRENCY_RANGE: RangeInclusive<i64> = 1..=64;
/// Step timeout in milliseconds: under 100 ms not even a database round trip
/// fits; a step running over an hour is stuck and should be retried.
const TIMEOUT_MS_RANGE: RangeInclusive<i64> = 100..=3_600_000;
/// Attempts in all. A hundred attempts at a one-minute cap already span more
/// than a day, after which a human should look.
const MAX_ATTEMPTS_RANGE: RangeInclusive<i64> = 1..=100;
/// Backoff base and cap in milliseconds; a wait over a day between attempts
/// is a forgotten step rather than a retry.
const BACKOFF_MS_RANGE: RangeInclusive<i64> = 1..=86_400_000;
/// Items per batch: enough to amortise a transaction, few enough that one
/// transaction holds the write lock well under a second.
const BATCH_SIZE_RANGE: RangeInclusive<i64> = 1..=10_000;
/// Milliseconds a batch waits to fill. The wait is added to the latency of
/// every request in the batch, so it stays short.
const BATCH_MAX_WAIT_MS_RANGE: RangeInclusive<i64> = 0..=1_000;
/// T+n for the hold. A month of business days is already far beyond any
/// return window; more is taken to be a typo.
const HOLD_BUSINESS_DAYS_RANGE: RangeInclusive<i64> = 0..=30;
/// Steps per workflow; the longest pipeline (withdrawal) has about eight.
const MAX_STEPS: usize = 32;
/// Longest workflow, step, queue, event or schedule name: they appear in
/// metric labels and the ops console.
const MAX_NAME_LEN: usize = 64;

/// One workflow, checked: what starts it and the steps it runs, in order.
#[derive(Debug, Clone)]
pub struct WorkflowDefinition {
    name: String,
    name_line: usize,
    file: String,
    description: String,
    trigger: Trigger,
    time_zone: Tz,
    calendar: Option<PathBuf>,
    hold_business_days: Option<u32>,
    steps: Vec<StepDefinition>,
}

/// What starts a run of a workflow.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// An event raised by the application, e.g. `order.confirmed`.
    Event(String),
    /// A cron schedule, read in the workflow's time zone. Boxed: a schedule
    /// is ten times the size of an event name.
    Cron(Box<cron::Schedule>),
}

/// One step of a workflow, checked.
#[derive(Debug, Clone)]
pub struct StepDefinition {
    name: String,
    kind: StepKind,
    queue: Option<String>,
    queue_line: usize,
    concurrency: u32,
    timeout: Duration,
    retry: RetryPolicy,
    batch_size: Option<usize>,
    batch_max_wait: Option<Duration>,
    params: StepParams,
}

/// How often and how patiently a failed step is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// Delay before the first retry; each later one doubles it.
    pub backoff_base: Duration,
    /// The longest delay between two attempts.
    pub backoff_max: Duration,
}

/// The built-in step kinds. The logic of each is code; a definition only
/// arranges them. There is deliberately no catch-all: a new kind is added
/// here, and every `match` on it then asks for its logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    /// Records a confirmed order and posts its commissions as pending.
    IngestOrder,
    /// Waits until the order's release date (T+n business days).
    Hold,
    /// Moves an order's commissions from pending to available.
    ReleaseCommission,
    /// Applies a refund: recomputes during the hold, claws back after it.
    Refund,
    /// Moves a withdrawal's amount from available to withdrawing.
    ReserveFunds,
    /// Computes the income tax withheld and the fee.
    WithholdTax,
    /// Approves a withdrawal automatically or waits for ops.
    Review,
    /// Sends the money through the payout gateway.
    Transfer,
    /// Learns the gateway's final answer (callback or polling).
    Confirm,
    /// Issues the withholding certificate.
    Certificate,
    /// Tells the shop by webhook.
    Notify,
}

/// Whether a step kind runs from a queue, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRule {
    /// The step is a waiting state, not work for a worker.
    Forbidden,
    /// The step may run on workers or inline where it is triggered.
    Optional,
    /// The step moves money, so it must run durably, with retries.
    Required,
}

/// "A step of this kind needs steps of those kinds earlier in the list",
/// so that, for instance, no money is transferred before tax and review.
struct OrderRule {
    step: StepKind,
    needs_before: &'static [StepKind],
    why: &'static str,
}

const ORDER_RULES: &[OrderRule] = &[
    OrderRule {
        step: StepKind::ReleaseCommission,
        needs_before: &[StepKind::IngestOrder, StepKind::Hold],
        why: "commissions are released only for recorded orders whose hold has ended",
    },
    OrderRule {
        step: StepKind::Transfer,
        needs_before: &[StepKind::WithholdTax, StepKind::Review],
        why: "no money leaves before its tax is withheld and the withdrawal is reviewed",
    },
    OrderRule {
        step: StepKind::Confirm,
        needs_before: &[StepKind::Transfer],
        why: "only a transfer that was sent can be confirmed",
    },
    OrderRule {
        step: StepKind::Certificate,
        needs_before: &[StepKind::Confirm],
        why: "a withholding certificate records a confirmed payout",
    },
];

/// The scheduled jobs of the workflows folder, checked.
#[derive(Debug, Clone)]
pub struct Schedules {
    jobs: Vec<ScheduledJob>,
}

/// One cron job: which built-in job runs, and when.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    name: String,
    job: JobKind,
    schedule: cron::Schedule,
    time_zone: Tz,
}

/// The built-in scheduled jobs; no catch-all, as for [`StepKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Releases every hold that is due but still held (the safety net behind
    /// each order's own delayed release).
    ReleaseDueHolds,
    /// Prepares the monthly withholding declaration for the accountant.
    PrepareDeclaration,
    /// Closes the previous month (team bonus, statements) and any missed one.
    CloseMonth,
    /// The daily grade review: upgrades (晋级) and clearing (清退) under the
    /// plan in force.
    ReviewGrades,
    /// Reconciles the gateways' statements of the days due (daily, and the
    /// retries and catch-up of failed or missed days).
    ReconcileStatements,
}

/// Why a workflow definition or schedules file was refused. Every variant
/// names the file, and all but [`DefinitionError::Unreadable`] the line, as
/// `file:line: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{file}: cannot read: {source}")]
    Unreadable {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, a missing or unknown key, or a value of the wrong type.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "{file}:{line}: unknown step kind {kind:?}; the known kinds are {}",
        StepKind::known_names()
    )]
    UnknownStepKind {
        file: String,
        line: usize,
        kind: String,
    },
    #[error(
        "{file}:{line}: unknown job {job:?}; the known jobs are {}",
        JobKind::known_names()
    )]
    UnknownJob {
        file: String,
        line: usize,
        job: String,
    },
    /// A number out of range, a malformed name, an unknown time zone, or a
    /// setting that does not apply to its step.
    #[error("{file}:{line}: {message}")]
    BadValue {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: invalid cron expression {expression:?}: {reason}")]
    InvalidCron {
        file: String,
        line: usize,
        expression: String,
        reason: String,
    },
    #[error(
        "{file}:{line}: step {step:?} ({kind}) needs a step of kind {needs} earlier in the list: {why}"
    )]
    MissingEarlierStep {
        file: String,
        line: usize,
        step: String,
        kind: StepKind,
        needs: StepKind,
        why: &'static str,
    },
    /// A step, queue, workflow or schedule name used twice; queues and
    /// workflow names are compared across files too.
    #[error("{file}:{line}: {what} {name:?} is already used at {first_file}:{first_line}")]
    Duplicate {
        file: String,
        line: usize,
        what: &'static str,
        name: String,
        first_file: String,
        first_line: usize,
    },
    #[error("{file}:{line}: calendar file {} does not exist", path.display())]
    CalendarNotFound {
        file: String,
        line: usize,
        path: PathBuf,
    },
}

impl WorkflowDefinition {
    /// Parses and checks a workflow definition. `file_name` is only used in
    /// errors; `calendar` is resolved against `workflows_dir` and must exist.
    ///
    /// # Errors
    /// Any [`DefinitionError`] but `Unreadable`: the first problem found.
    pub fn parse(
        text: &str,
        file_name: &str,
        workflows_dir: &Path,
    ) -> Result<WorkflowDefinition, DefinitionError> {
        Source::new(text, file_name).workflow(workflows_dir, CalendarCheck::MustExist)
    }

    /// Reads and checks one definition; its calendar is resolved against the
    /// file's own folder.
    ///
    /// # Errors
    /// [`DefinitionError::Unreadable`], or as [`WorkflowDefinition::parse`].
    pub fn load(path: &Path) -> Result<WorkflowDefinition, DefinitionError> {
        let file_name = path.display().to_string();
        let text = read(path)?;
        let workflows_dir = path.parent().unwrap_or_else(|| Path::new(""));
        WorkflowDefinition::parse(&text, &file_name, workflows_dir)
    }

    /// Loads every `*.toml` directly in `dir` but [`SCHEDULES_FILE_NAME`] and
    /// [`DECLARATION_FILE_NAME`], in
    /// file-name order, and checks that no queue or workflow name is used by
    /// two files.
    ///
    /// # Errors
    /// The first file that fails to load, or the later of two clashing files.
    pub fn load_all(dir: &Path) -> Result<Vec<WorkflowDefinition>, DefinitionError> {
        let mut definitions = Vec::new();
        for path in definition_files(dir)? {
            definitions.push(WorkflowDefinition::load(&path)?);
        }
        check_unique_across_files(&definitions)?;
        Ok(definitions)
    }

    /// The shipped order-settlement workflow ([`SHIPPED_ORDER_SETTLEMENT`]).
    /// Its calendar path (`workflows/calendars/cn.toml`) is not required to
    /// exist: without the folder, the engine uses
    /// [`crate::engine::definition::check::SHIPPED_CN_CALENDAR`].
    ///
    /// # Errors
    /// Only if the shipped file is broken, which a unit test rules out.
    pub fn shipped_order_settlement() -> Result<WorkflowDefinition, DefinitionError> {
        Source::new(SHIPPED_ORDER_SETTLEMENT, SHIPPED_ORDER_SETTLEMENT_FILE)
            .workflow(Path::new("workflows"), CalendarCheck::Skip)
    }

    /// The shipped withdrawal workflow ([`SHIPPED_WITHDRAWAL`]).
    ///
    /// # Errors
    /// Only if the shipped file is broken, which a unit test rules out.
    pub fn shipped_withdrawal() -> Result<WorkflowDefinition, DefinitionError> {
        Source::new(SHIPPED_WITHDRAWAL, SHIPPED_WITHDRAWAL_FILE)
            .workflow(Path::new("workflows"), CalendarCheck::Skip)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the definition was read from, as given to
    /// [`WorkflowDefinition::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// The zone of "today" for holds, and of the cron trigger's fields.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The business calendar file, resolved against the workflows folder;
    /// present whenever the workflow has a [`StepKind::Hold`] step.
    pub fn calendar(&self) -> Option<&Path> {
        self.calendar.as_deref()
    }

    /// "n" in T+n: business days from the local date of confirmation to the
    /// release; present exactly when the workflow has a [`StepKind::Hold`] step.
    pub fn hold_business_days(&self) -> Option<u32> {
        self.hold_business_days
    }

    /// The steps in the order they run.
    pub fn steps(&self) -> &[StepDefinition] {
        &self.steps
    }

    /// The first step of `kind`, if the workflow has one.
    pub fn step(&self, kind: StepKind) -> Option<&StepDefinition> {
        self.steps.iter().find(|step| step.kind == kind)
    }
}

impl StepDefinition {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> StepKind {
        self.kind
    }

    /// The queue workers take this step's jobs from (unique across all
    /// workflows); `None` for a step that runs inline or is a waiting state.
    pub fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// Workers running this step at once ([`DEFAULT_CONCURRENCY`] unless set).
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// How long one attempt may run ([`DEFAULT_TIMEOUT_MS`] unless set).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Most items handled in one transaction; `None`: one at a time.
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size
    }

    /// Longest wait for a batch to fill; `None` with no batching, or to take
    /// whatever is waiting without delay.
    pub fn batch_max_wait(&self) -> Option<Duration> {
        self.batch_max_wait
    }

    /// The step's `[steps.params]`, typed by its kind ([`StepParams::None`]
    /// when the kind takes none or the file sets none).
    pub fn params(&self) -> &StepParams {
        &self.params
    }
}

impl Default for RetryPolicy {
    /// [`DEFAULT_MAX_ATTEMPTS`] attempts, backoff from
    /// [`DEFAULT_BACKOFF_BASE_MS`] up to [`DEFAULT_BACKOFF_MAX_MS`].
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: Duration::from_millis(DEFAULT_BACKOFF_BASE_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1 for the first):
    /// `backoff_base × 2^(attempt − 1)`, never more than `backoff_max`.
    /// Attempt 0 is treated as 1.
    pub fn backoff_for_attempt(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        // 2^doublings overflows u32 from 32 doublings on; the cap has long
        // been reached by then, as it has when the product overflows.
        let grown = 1_u32
            .checked_shl(doublings)
            .and_then(|factor| self.backoff_base.checked_mul(factor));
        match grown {
            Some(delay) => delay.min(self.backoff_max),
            None => self.backoff_max,
        }
    }
}

impl StepKind {
    /// Every kind, in pipeline order.
    pub const ALL: [StepKind; 11] = [
        StepKind::IngestOrder,
        StepKind::Hold,
        StepKind::ReleaseCommission,
        StepKind::Refund,
        StepKind::ReserveFunds,
        StepKind::WithholdTax,
        StepKind::Review,
        StepKind::Transfer,
        StepKind::Confirm,
        StepKind::Certificate,
        StepKind::Notify,
    ];

    /// The name used in definition files, e.g. `release_commission`.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::IngestOrder => "ingest_order",
            StepKind::Hold => "hold",
            StepKind::ReleaseCommission => "release_commission",
            StepKind::Refund => "refund",
            StepKind::ReserveFunds => "reserve_funds",
            StepKind::WithholdTax => "withhold_tax",
            StepKind::Review => "review",
            StepKind::Transfer => "transfer",
            StepKind::Confirm => "confirm",
            StepKind::Certificate => "certificate",
            StepKind::Notify => "notify",
        }
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn known_names() -> String {
        StepKind::ALL.map(StepKind::name).join(", ")
    }

    fn queue_rule(self) -> QueueRule {
        match self {
            StepKind::Hold => QueueRule::Forbidden,
            StepKind::ReleaseCommission | StepKind::Transfer | StepKind::Certificate => {
                QueueRule::Required
            }
            StepKind::IngestOrder
            | StepKind::Refund
            | StepKind::ReserveFunds
            | StepKind::WithholdTax
            | StepKind::Review
            | StepKind::Confirm
            | StepKind::Notify => QueueRule::Optional,
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Schedules {
    /// Parses and checks a schedules file; `file_name` is only used in errors.
    ///
    /// # Errors
    /// Any [`DefinitionError`] but `Unreadable`: the first problem found.
    pub fn parse(text: &str, file_name: &str) -> Result<Schedules, DefinitionError> {
        Source::new(text, file_name).schedules()
    }

    /// Reads and checks a schedules file.
    ///
    /// # Errors
    /// [`DefinitionError::Unreadable`], or as [`Schedules::parse`].
    pub fn load(path: &Path) -> Result<Schedules, DefinitionError> {
        let text = read(path)?;
        Schedules::parse(&text, &path.display().to_string())
    }

    /// The shipped schedules ([`SHIPPED_SCHEDULES`]).
    ///
    /// # Errors
    /// Only if the shipped file is broken, which a unit test rules out.
    pub fn shipped() -> Result<Schedules, DefinitionError> {
        Schedules::parse(SHIPPED_SCHEDULES, SHIPPED_SCHEDULES_FILE)
    }

    /// The jobs in file order.
    pub fn jobs(&self) -> &[ScheduledJob] {
        &self.jobs
    }

    /// The first schedule of `job`, if any.
    pub fn job(&self, job: JobKind) -> Option<&ScheduledJob> {
        self.jobs.iter().find(|scheduled| scheduled.job == job)
    }
}

impl ScheduledJob {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn job(&self) -> JobKind {
        self.job
    }

    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    /// The zone in which the schedule's fields are read.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::ReleaseDueHolds,
        JobKind::PrepareDeclaration,
        JobKind::CloseMonth,
        JobKind::ReviewGrades,
        JobKind::ReconcileStatements,
    ];

    /// The name used in `schedules.toml`, e.g. `release_due_holds`.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::ReleaseDueHolds => "release_due_holds",
            JobKind::PrepareDeclaration => "prepare_declaration",
            JobKind::CloseMonth => "close_month",
            JobKind::ReviewGrades => "review_grades",
            JobKind::ReconcileStatements => "reconcile_statements",
        }
    }

    pub fn from_name(name: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|job| job.name() == name)
    }

    fn known_names() -> String {
        JobKind::ALL.map(JobKind::name).join(", ")
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

fn read(path: &Path) -> Result<String, DefinitionError> {
    std::fs::read_to_string(path).map_err(|source| DefinitionError::Unreadable {
        file: path.display().to_string(),
        source,
    })
}

/// The workflow definition files directly in `dir`, sorted by name.
fn definition_files(dir: &Path) -> Result<Vec<PathBuf>, DefinitionError> {
    let unreadable = |source| DefinitionError::Unreadable {
        file: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let is_toml = path.extension().is_some_and(|ext| ext == "toml");
        let is_schedules = path.file_name().is_some_and(|name| {
            name == SCHEDULES_FILE_NAME
                || name == DECLARATION_FILE_NAME
                || name == MONTH_CLOSE_FILE_NAME
                || name == RECONCILIATION_FILE_NAME
        });
        if path.is_file() && is_toml && !is_schedules {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Queues are claimed by one step of one workflow, or two steps' jobs would
/// be run by each other's workers; workflow names key the ops console.
fn check_unique_across_files(definitions: &[WorkflowDefinition]) -> Result<(), DefinitionError> {
    let mut names: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    let mut queues: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for definition in definitions {
        let here = (definition.file.as_str(), definition.name_line);
        if let Some(first) = names.insert(&definition.name, here) {
            return Err(duplicate("workflow name", &definition.name, here, first));
        }
        for step in &definition.steps {
            let Some(queue) = &step.queue else { continue };
            let here = (definition.file.as_str(), step.queue_line);
            if let Some(first) = queues.insert(queue, here) {
                return Err(duplicate("queue", queue, here, first));
            }
        }
    }
    Ok(())
}

fn duplicate(
    what: &'static str,
    name: &str,
    (file, line): (&str, usize),
    (first_file, first_line): (&str, usize),
) -> DefinitionError {
    DefinitionError::Duplicate {
        file: file.to_owned(),
        line,
        what,
        name: name.to_owned(),
        first_file: first_file.to_owned(),
        first_line,
    }
}

// ---- the files as written, before checking ----
//
// Every table refuses unknown keys, so a misspelt `timeout_ms` cannot
// silently fall back to its default. Numbers are read as i64 so that a
// negative or huge value gets our range message rather than serde's.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    trigger: Spanned<RawTrigger>,
    time_zone: Spanned<String>,
    calendar: Option<Spanned<String>>,
    hold_business_days: Option<Spanned<i64>>,
    steps: Spanned<Vec<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    event: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    kind: Spanned<String>,
    queue: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    retry: Option<Spanned<RawRetry>>,
    batch_size: Option<Spanned<i64>>,
    batch_max_wait_ms: Option<Spanned<i64>>,
    params: Option<params::RawParams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<Spanned<i64>>,
    backoff_base_ms: Option<Spanned<i64>>,
    backoff_max_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedules {
    time_zone: Spanned<String>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Spanned<String>,
    job: Spanned<String>,
    cron: Spanned<String>,
    time_zone: Option<Spanned<String>>,
}

// ---- checking ----

/// Whether a definition's calendar must be on disk: yes for files, no for
/// the shipped definition, whose calendar is built into the binary too.
#[derive(Clone, Copy)]
enum CalendarCheck {
    MustExist,
    Skip,
}

/// The text being checked and its name, to turn byte spans into `file:line`.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl<'a> Source<'a> {
    fn new(text: &'a str, file: &'a str) -> Source<'a> {
        Source { text, file }
    }

    fn workflow(
        &self,
        workflows_dir: &Path,
        calendar_check: CalendarCheck,
    ) -> Result<WorkflowDefinition, DefinitionError> {
        let raw: RawWorkflow = toml::from_str(self.text).map_err(|error| self.syntax(&error))?;
        let name = self.name("workflow name", &raw.name)?;
        let time_zone = self.time_zone(&raw.time_zone)?;
        let trigger = self.trigger(&raw.trigger)?;
        let calendar = raw
            .calendar
            .as_ref()
            .map(|calendar| self.calendar(calendar, workflows_dir, calendar_check))
            .transpose()?;
        let hold_business_days = raw
            .hold_business_days
            .as_ref()
            .map(|days| {
                self.number(
                    "hold_business_days",
                    days,
                    HOLD_BUSINESS_DAYS_RANGE,
                    "business days",
                )
            })
            .transpose()?;
        let steps = self.steps(&raw.steps)?;
        self.check_hold_settings(&raw, &steps)?;
        Ok(WorkflowDefinition {
            name,
            name_line: self.line(raw.name.span()),
            file: self.file.to_owned(),
            description: raw.description,
            trigger,
            time_zone,
            calendar,
            hold_business_days: hold_business_days.map(to_u32),
            steps: steps.into_iter().map(|(step, _)| step).collect(),
        })
    }

    fn trigger(&self, trigger: &Spanned<RawTrigger>) -> Result<Trigger, DefinitionError> {
        match (&trigger.get_ref().event, &trigger.get_ref().cron) {
            (Some(event), None) => Ok(Trigger::Event(self.name("event name", event)?)),
            (None, Some(cron)) => Ok(Trigger::Cron(Box::new(self.cron(cron)?))),
            (Some(_), Some(_)) | (None, None) => Err(self.bad_value(
                trigger.span(),
                "`trigger` needs exactly one of `event` or `cron`, \
                 e.g. trigger = { event = \"order.confirmed\" }",
            )),
        }
    }

    fn calendar(
        &self,
        calendar: &Spanned<String>,
        workflows_dir: &Path,
        calendar_check: CalendarCheck,
    ) -> Result<PathBuf, DefinitionError> {
        let path = workflows_dir.join(calendar.get_ref());
        match calendar_check {
            CalendarCheck::MustExist if !path.is_file() => Err(DefinitionError::CalendarNotFound {
                file: self.file.to_owned(),
                line: self.line(calendar.span()),
                path,
            }),
            CalendarCheck::MustExist | CalendarCheck::Skip => Ok(path),
        }
    }

    /// Checks each step, then the rules between steps. Each step comes back
    /// with the line of its `kind`, where rules about it are reported.
    fn steps(
        &self,
        raw_steps: &Spanned<Vec<RawStep>>,
    ) -> Result<Vec<(StepDefinition, usize)>, DefinitionError> {
        if raw_steps.get_ref().is_empty() {
            return Err(self.bad_value(raw_steps.span(), "a workflow needs at least one step"));
        }
        if raw_steps.get_ref().len() > MAX_STEPS {
            return Err(self.bad_value(
                raw_steps.span(),
                format!("a workflow has at most {MAX_STEPS} steps"),
            ));
        }
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut queues: BTreeMap<String, usize> = BTreeMap::new();
        let mut steps = Vec::new();
        for raw in raw_steps.get_ref() {
            let step = self.step(raw)?;
            let name_line = self.line(raw.name.span());
            if let Some(first_line) = names.insert(step.name.clone(), name_line) {
                return Err(self.duplicate("step name", &step.name, name_line, first_line));
            }
            if let Some(queue) = &step.queue
                && let Some(first_line) = queues.insert(queue.clone(), step.queue_line)
            {
                return Err(self.duplicate("queue", queue, step.queue_line, first_line));
            }
            steps.push((step, self.line(raw.kind.span())));
        }
        for (index, (step, kind_line)) in steps.iter().enumerate() {
            let earlier = &steps[..index];
            for rule in ORDER_RULES.iter().filter(|rule| rule.step == step.kind) {
                let missing = rule
                    .needs_before
                    .iter()
                    .find(|needed| !earlier.iter().any(|(before, _)| before.kind == **needed));
                if let Some(&needs) = missing {
                    return Err(DefinitionError::MissingEarlierStep {
                        file: self.file.to_owned(),
                        line: *kind_line,
                        step: step.name.clone(),
                        kind: step.kind,
                        needs,
                        why: rule.why,
                    });
                }
            }
        }
        Ok(steps)
    }

    fn step(&self, raw: &RawStep) -> Result<StepDefinition, DefinitionError> {
        let name = self.name("step name", &raw.name)?;
        let kind = StepKind::from_name(raw.kind.get_ref()).ok_or_else(|| {
            DefinitionError::UnknownStepKind {
                file: self.file.to_owned(),
                line: self.line(raw.kind.span()),
                kind: raw.kind.get_ref().clone(),
            }
        })?;
        match (kind.queue_rule(), &raw.queue) {
            (QueueRule::Forbidden, Some(queue)) => {
                return Err(self.bad_value(
                    queue.span(),
                    format!("a {kind} step is a waiting state, not work for a worker: remove its `queue`"),
                ));
            }
            (QueueRule::Required, None) => {
                return Err(self.bad_value(
                    raw.kind.span(),
                    format!(
                        "a {kind} step moves money, so it must run from a `queue`, with retries"
                    ),
                ));
            }
            (QueueRule::Forbidden | QueueRule::Optional | QueueRule::Required, _) => {}
        }
        if kind == StepKind::Hold
            && let Some(timeout) = &raw.timeout_ms
        {
            return Err(self.bad_value(
                timeout.span(),
                "a hold step waits for its release date; it has no `timeout_ms`",
            ));
        }
        if raw.queue.is_none() {
            self.refuse_worker_settings(raw)?;
        }
        let queue = raw
            .queue
            .as_ref()
            .map(|queue| self.name("queue name", queue))
            .transpose()?;
        let concurrency = match &raw.concurrency {
            Some(value) => {
                to_u32(self.number("concurrency", value, CONCURRENCY_RANGE, "workers")?)
            }
            None => DEFAULT_CONCURRENCY,
        };
        let timeout = match &raw.timeout_ms {
            Some(value) => {
                millis(self.number("timeout_ms", value, TIMEOUT_MS_RANGE, "milliseconds")?)
            }
            None => Duration::from_millis(DEFAULT_TIMEOUT_MS),
        };
        let retry = match &raw.retry {
            Some(retry) => self.retry(retry)?,
            None => RetryPolicy::default(),
        };
        let batch_size = raw
            .batch_size
            .as_ref()
            .map(|value| self.number("batch_size", value, BATCH_SIZE_RANGE, "items"))
            .transpose()?;
        let batch_max_wait_ms = match (&raw.batch_max_wait_ms, batch_size) {
            (Some(value), None) => {
                return Err(self.bad_value(
                    value.span(),
                    "`batch_max_wait_ms` is the wait for a batch to fill; set `batch_size` too",
                ));
            }
            (Some(value), Some(_)) => Some(self.number(
                "batch_max_wait_ms",
                value,
                BATCH_MAX_WAIT_MS_RANGE,
                "milliseconds",
            )?),
            (None, _) => None,
        };
        Ok(StepDefinition {
            name,
            kind,
            queue,
            queue_line: raw
                .queue
                .as_ref()
                .map_or(0, |queue| self.line(queue.span())),
            concurrency,
            timeout,
            retry,
            batch_size: batch_size
                .map(|size| usize::try_from(size).expect("batch_size is range-checked")),
            batch_max_wait: batch_max_wait_ms.map(millis),
            params: self.params(kind, raw.params.as_ref())?,
        })
    }

    /// A step without a queue runs inline or waits, so worker settings on it
    /// would be silently ignored; refuse them instead. The one exception is
    /// batching on `ingest_order`, which batches inline (group commit of the
    /// requests waiting at the same moment) with `concurrency` writers.
    fn refuse_worker_settings(&self, raw: &RawStep) -> Result<(), DefinitionError> {
        let batches_inline = raw.kind.get_ref() == StepKind::IngestOrder.name();
        let settings = [
            ("concurrency", raw.concurrency.as_ref().map(Spanned::span)),
            ("retry", raw.retry.as_ref().map(Spanned::span)),
            ("batch_size", raw.batch_size.as_ref().map(Spanned::span)),
            (
                "batch_max_wait_ms",
                raw.batch_max_wait_ms.as_ref().map(Spanned::span),
            ),
        ];
        for (key, span) in settings {
            if batches_inline && (key.starts_with("batch_") || key == "concurrency") {
                continue;
            }
            if let Some(span) = span {
                return Err(self.bad_value(
                    span,
                    format!(
                        "`{key}` applies to steps run by workers from a queue; \
                         step {:?} has no `queue`",
                        raw.name.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn retry(&self, retry: &Spanned<RawRetry>) -> Result<RetryPolicy, DefinitionError> {
        let raw = retry.get_ref();
        let defaults = RetryPolicy::default();
        let max_attempts = match &raw.max_attempts {
            Some(value) => {
                to_u32(self.number("max_attempts", value, MAX_ATTEMPTS_RANGE, "attempts")?)
            }
            None => defaults.max_attempts,
        };
        let backoff_base = match &raw.backoff_base_ms {
            Some(value) => {
                millis(self.number("backoff_base_ms", value, BACKOFF_MS_RANGE, "milliseconds")?)
            }
            None => defaults.backoff_base,
        };
        let backoff_max = match &raw.backoff_max_ms {
            Some(value) => {
                millis(self.number("backoff_max_ms", value, BACKOFF_MS_RANGE, "milliseconds")?)
            }
            None => defaults.backoff_max,
        };
        if backoff_max < backoff_base {
            return Err(self.bad_value(
                retry.span(),
                format!(
                    "`backoff_max_ms` ({}) must be at least `backoff_base_ms` ({})",
                    backoff_max.as_millis(),
                    backoff_base.as_millis()
                ),
            ));
        }
        Ok(RetryPolicy {
            max_attempts,
            backoff_base,
            backoff_max,
        })
    }

    /// `hold_business_days` and `calendar` say when a hold ends, so a hold
    /// step needs both, and `hold_business_days` without a hold step is a
    /// mistake (a hold step forgotten, or a leftover setting).
    fn check_hold_settings(
        &self,
        raw: &RawWorkflow,
        steps: &[(StepDefinition, usize)],
    ) -> Result<(), DefinitionError> {
        let hold = steps.iter().find(|(step, _)| step.kind == StepKind::Hold);
        match (hold, &raw.hold_business_days, &raw.calendar) {
            (Some((_, kind_line)), None, _) | (Some((_, kind_line)), _, None) => {
                Err(DefinitionError::BadValue {
                    file: self.file.to_owned(),
                    line: *kind_line,
                    message: "a hold step needs `hold_business_days` and `calendar` \
                              at the top of the file"
                        .to_owned(),
                })
            }
            (None, Some(days), _) => Err(self.bad_value(
                days.span(),
                "`hold_business_days` is set but no step has kind = \"hold\"",
            )),
            (Some(_), Some(_), Some(_)) | (None, None, _) => Ok(()),
        }
    }

    fn schedules(&self) -> Result<Schedules, DefinitionError> {
        let raw: RawSchedules = toml::from_str(self.text).map_err(|error| self.syntax(&error))?;
        let default_time_zone = self.time_zone(&raw.time_zone)?;
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut jobs = Vec::new();
        for schedule in &raw.schedules {
            let name = self.name("schedule name", &schedule.name)?;
            let name_line = self.line(schedule.name.span());
            if let Some(first_line) = names.insert(name.clone(), name_line) {
                return Err(self.duplicate("schedule name", &name, name_line, first_line));
            }
            let job = JobKind::from_name(schedule.job.get_ref()).ok_or_else(|| {
                DefinitionError::UnknownJob {
                    file: self.file.to_owned(),
                    line: self.line(schedule.job.span()),
                    job: schedule.job.get_ref().clone(),
                }
            })?;
            let time_zone = match &schedule.time_zone {
                Some(zone) => self.time_zone(zone)?,
                None => default_time_zone,
            };
            jobs.push(ScheduledJob {
                name,
                job,
                schedule: self.cron(&schedule.cron)?,
                time_zone,
            });
        }
        Ok(Schedules { jobs })
    }

    /// A name that can serve as a queue, metric label or URL segment.
    fn name(&self, what: &str, value: &Spanned<String>) -> Result<String, DefinitionError> {
        let name = value.get_ref();
        let starts_well = name
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
        let all_allowed = name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'_' | b'-')
        });
        if starts_well && all_allowed && name.len() <= MAX_NAME_LEN {
            Ok(name.clone())
        } else {
            Err(self.bad_value(
                value.span(),
                format!(
                    "{what} {name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, \
                     '.', '_' or '-', starting with a letter or digit"
                ),
            ))
        }
    }

    fn time_zone(&self, value: &Spanned<String>) -> Result<Tz, DefinitionError> {
        value.get_ref().parse::<Tz>().map_err(|_| {
            self.bad_value(
                value.span(),
                format!(
                    "unknown time zone {:?}; use an IANA name such as \"Asia/Shanghai\"",
                    value.get_ref()
                ),
            )
        })
    }

    /// Parses a cron expression with the `cron` crate, which wants seconds
    /// first. A classic 5-field expression would be read shifted by one
    /// field, so the count is checked first with a message that says so.
    fn cron(&self, value: &Spanned<String>) -> Result<cron::Schedule, DefinitionError> {
        let expression = value.get_ref().trim();
        let invalid = |reason: String| DefinitionError::InvalidCron {
            file: self.file.to_owned(),
            line: self.line(value.span()),
            expression: value.get_ref().clone(),
            reason,
        };
        let fields = expression.split_whitespace().count();
        let is_shorthand = expression.starts_with('@');
        if !is_shorthand && !(6..=7).contains(&fields) {
            return Err(invalid(format!(
                "it has {fields} fields, but 6 or 7 are needed, seconds first: \
                 second minute hour day-of-month month day-of-week [year], \
                 e.g. \"0 0 1 * * *\" for 01:00 every day"
            )));
        }
        cron::Schedule::from_str(expression).map_err(|error| invalid(error.to_string()))
    }

    fn number(
        &self,
        key: &str,
        value: &Spanned<i64>,
        range: RangeInclusive<i64>,
        unit: &str,
    ) -> Result<i64, DefinitionError> {
        let number = *value.get_ref();
        if range.contains(&number) {
            Ok(number)
        } else {
            Err(self.bad_value(
                value.span(),
                format!(
                    "`{key}` must be from {} to {} ({unit}), not {number}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    fn bad_value(&self, span: Range<usize>, message: impl Into<String>) -> DefinitionError {
        DefinitionError::BadValue {
            file: self.file.to_owned(),
            line: self.line(span),
            message: message.into(),
        }
    }

    fn duplicate(
        &self,
        what: &'static str,
        name: &str,
        line: usize,
        first_line: usize,
    ) -> DefinitionError {
        duplicate(what, name, (self.file, line), (self.file, first_line))
    }

    fn syntax(&self, error: &toml::de::Error) -> DefinitionError {
        DefinitionError::Syntax {
            file: self.file.to_owned(),
            line: error.span().map_or(1, |span| self.line(span)),
            message: error.message().trim_end().to_owned(),
        }
    }

    /// The 1-based line of the first byte of `span`, counted on bytes so an
    /// offset inside a multi-byte character cannot panic.
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
            + 1
    }
}

/// For numbers already range-checked against a range inside `u32`.
fn to_u32(number: i64) -> u32 {
    u32::try_from(number).expect("range-checked to fit in u32")
}

/// For numbers already range-checked to be non-negative.
fn millis(number: i64) -> Duration {
    Duration::from_millis(u64::try_from(number).expect("range-checked to be non-negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workflows folder holding only a calendar, so that definitions
    /// naming `calendars/cn.toml` resolve.
    fn folder_with_calendar() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("calendars")).unwrap();
        std::fs::write(
            dir.path().join("calendars/cn.toml"),
            crate::engine::definition::check::SHIPPED_CN_CALENDAR,
        )
        .unwrap();
        dir
    }

    fn parse(text: &str) -> Result<WorkflowDefinition, DefinitionError> {
        let dir = folder_with_calendar();
        WorkflowDefinition::parse(text, "test.toml", dir.path())
    }

    fn refusal(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// `test.toml:N:` where N is the line of the first occurrence of `marker`.
    fn at_line_of(text: &str, marker: &str) -> String {
        let offset = text.find(marker).expect("marker is in the text");
        let line = text[..offset].matches('\n').count() + 1;
        format!("test.toml:{line}:")
    }

    const SETTLEMENT: &str = r#"
name = "settlement"
trigger = { event = "order.confirmed" }
time_zone = "Asia/Shanghai"
calendar = "calendars/cn.toml"
hold_business_days = 3

[[steps]]
name = "ingest"
kind = "ingest_order"
queue = "test.ingest"

[[steps]]
name = "hold"
kind = "hold"

[[steps]]
name = "release"
kind = "release_commission"
queue = "test.release"
"#;

    const WITHDRAWAL: &str = r#"
name = "withdrawal"
trigger = { event = "withdrawal.requested" }
time_zone = "Asia/Shanghai"

[[steps]]
name = "reserve"
kind = "reserve_funds"

[[steps]]
name = "tax"
kind = "withhold_tax"

[[steps]]
name = "review"
kind = "review"

[[steps]]
name = "transfer"
kind = "transfer"
queue = "withdrawal.transfer"

[[steps]]
name = "confirm"
kind = "confirm"
queue = "withdrawal.confirm"

[[steps]]
name = "certificate"
kind = "certificate"
queue = "withdrawal.certificate"
"#;

    fn shipped_workflows_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
    }

    #[test]
    fn the_shipped_order_settlement_file_parses_with_its_promised_steps() {
        let definition =
            WorkflowDefinition::load(&shipped_workflows_dir().join("order-settlement.toml"))
                .unwrap();
        assert_eq!(definition.name(), "order-settlement");
        assert!(
            matches!(definition.trigger(), Trigger::Event(event) if event == "order.confirmed")
        );
        assert_eq!(definition.time_zone(), chrono_tz::Asia::Shanghai);
        assert_eq!(definition.hold_business_days(), Some(3));
        assert!(
            definition
                .calendar()
                .unwrap()
                .ends_with("calendars/cn.toml")
        );
        let kinds: Vec<StepKind> = definition
            .steps()
            .iter()
            .map(StepDefinition::kind)
            .collect();
        assert_eq!(
            kinds,
            [
                StepKind::IngestOrder,
                StepKind::Hold,
                StepKind::ReleaseCommission,
                StepKind::Refund
            ]
        );
        let ingest = definition.step(StepKind::IngestOrder).unwrap();
        assert_eq!(ingest.queue(), None, "ingest runs inside the request");
        assert_eq!(ingest.batch_size(), Some(200));
        assert_eq!(ingest.batch_max_wait(), Some(Duration::from_millis(2)));
        let release = definition.step(StepKind::ReleaseCommission).unwrap();
        assert_eq!(release.queue(), Some("order.release"));
        assert_eq!(release.batch_size(), Some(1000));
        assert_eq!(release.retry().max_attempts, 10);
        assert_eq!(release.retry().backoff_base, Duration::from_secs(1));
        assert_eq!(release.retry().backoff_max, Duration::from_secs(60));
        assert_eq!(definition.step(StepKind::Hold).unwrap().queue(), None);
        assert_eq!(definition.step(StepKind::Refund).unwrap().queue(), None);
    }

    #[test]
    fn the_embedded_order_settlement_matches_the_file_and_parses_without_the_folder() {
        let on_disk =
            std::fs::read_to_string(shipped_workflows_dir().join("order-settlement.toml")).unwrap();
        assert_eq!(on_disk, SHIPPED_ORDER_SETTLEMENT);
        let shipped = WorkflowDefinition::shipped_order_settlement().unwrap();
        assert_eq!(shipped.name(), "order-settlement");
        assert_eq!(shipped.file(), SHIPPED_ORDER_SETTLEMENT_FILE);
    }

    #[test]
    fn the_shipped_schedules_parse_and_include_the_release_sweep_every_minute() {
        let on_disk =
            std::fs::read_to_string(shipped_workflows_dir().join(SCHEDULES_FILE_NAME)).unwrap();
        assert_eq!(on_disk, SHIPPED_SCHEDULES);
        let schedules =
            Schedules::load(&shipped_workflows_dir().join(SCHEDULES_FILE_NAME)).unwrap();
        let sweep = schedules.job(JobKind::ReleaseDueHolds).unwrap();
        assert_eq!(sweep.name(), "release_sweep");
        assert_eq!(sweep.time_zone(), chrono_tz::Asia::Shanghai);
        let after = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:30+08:00").unwrap();
        let next = sweep
            .schedule()
            .after(&after.with_timezone(&sweep.time_zone()))
            .next()
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-02T10:01:00+08:00");
        assert!(schedules.job(JobKind::PrepareDeclaration).is_some());
        Schedules::shipped().unwrap();
    }

    #[test]
    fn the_monthly_declaration_runs_at_one_in_the_morning_of_the_first_in_shanghai() {
        let schedules = Schedules::shipped().unwrap();
        let declaration = schedules.job(JobKind::PrepareDeclaration).unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-03-15T12:00:00+08:00").unwrap();
        let next = declaration
            .schedule()
            .after(&after.with_timezone(&declaration.time_zone()))
            .next()
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-04-01T01:00:00+08:00");
    }

    #[test]
    fn a_minimal_settlement_workflow_takes_the_documented_defaults() {
        let definition = parse(SETTLEMENT).unwrap();
        let ingest = definition.step(StepKind::IngestOrder).unwrap();
        assert_eq!(ingest.concurrency(), DEFAULT_CONCURRENCY);
        assert_eq!(ingest.timeout(), Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(ingest.retry(), RetryPolicy::default());
        assert_eq!(ingest.batch_size(), None);
        assert_eq!(ingest.batch_max_wait(), None);
        assert_eq!(ingest.params(), &StepParams::None);
        assert_eq!(definition.description(), "");
    }

    #[test]
    fn params_on_a_kind_that_takes_none_are_refused_with_their_line() {
        let text = SETTLEMENT.replace(
            "queue = \"test.release\"\n",
            "queue = \"test.release\"\n[steps.params]\nnote = \"kept\"\n",
        );
        let error = refusal(&text);
        let line = text
            .lines()
            .position(|line| line.starts_with("note"))
            .unwrap()
            + 1;
        assert!(error.contains(&format!("test.toml:{line}:")), "{error}");
        assert!(error.contains("takes no `[steps.params]`"), "{error}");
    }

    /// The shipped withdrawal workflow with one line of its params replaced.
    fn withdrawal_with(from: &str, to: &str) -> (String, usize) {
        assert!(SHIPPED_WITHDRAWAL.contains(from), "{from}");
        let text = SHIPPED_WITHDRAWAL.replace(from, to);
        let line = text
            .lines()
            .position(|line| line.starts_with(to.lines().next().unwrap()))
            .unwrap()
            + 1;
        (text, line)
    }

    #[test]
    fn the_shipped_withdrawal_params_are_typed() {
        let dir = folder_with_calendar();
        let definition =
            WorkflowDefinition::parse(SHIPPED_WITHDRAWAL, "withdrawal.toml", dir.path()).unwrap();
        let reserve = definition.step(StepKind::ReserveFunds).unwrap();
        assert_eq!(
            reserve.params(),
            &StepParams::ReserveFunds(ReserveParams {
                minimum: Some(crate::domain::money::Money::from_fen(1_000)),
                daily_limit: Some(crate::domain::money::Money::from_fen(2_000_000)),
            })
        );
        let StepParams::Confirm(confirm) = definition.step(StepKind::Confirm).unwrap().params()
        else {
            panic!("confirm params");
        };
        assert_eq!(confirm.poll_interval_ms, Some(15_000));
        assert_eq!(confirm.payee_confirmation_hours, Some(24));
    }

    #[test]
    fn the_shipped_transfer_step_batches_daily_at_three_pm() {
        let dir = folder_with_calendar();
        let definition =
            WorkflowDefinition::parse(SHIPPED_WITHDRAWAL, "withdrawal.toml", dir.path()).unwrap();
        assert_eq!(
            definition.step(StepKind::Transfer).unwrap().params(),
            &StepParams::Transfer(TransferParams {
                cycle: Some(crate::domain::payout_cycle::PayoutCycle::Daily),
                cutoff: chrono::NaiveTime::from_hms_opt(15, 0, 0),
            })
        );
    }

    #[test]
    fn weekly_and_monthly_cycles_take_their_day() {
        let dir = folder_with_calendar();
        for (to, cycle) in [
            (
                "cycle = \"weekly\"\nweekday = \"friday\"",
                crate::domain::payout_cycle::PayoutCycle::Weekly {
                    weekday: chrono::Weekday::Fri,
                },
            ),
            (
                "cycle = \"monthly\"\nmonthly_day = 31",
                crate::domain::payout_cycle::PayoutCycle::Monthly { day: 31 },
            ),
            (
                "cycle = \"semi-monthly\"",
                crate::domain::payout_cycle::PayoutCycle::SemiMonthly,
            ),
        ] {
            let (text, _) = withdrawal_with("cycle = \"daily\"", to);
            let definition =
                WorkflowDefinition::parse(&text, "withdrawal.toml", dir.path()).unwrap();
            let StepParams::Transfer(transfer) =
                definition.step(StepKind::Transfer).unwrap().params()
            else {
                panic!("transfer params");
            };
            assert_eq!(transfer.cycle, Some(cycle), "{to}");
        }
    }

    #[test]
    fn a_bad_cycle_is_refused_with_its_file_and_line() {
        for (from, to, says) in [
            (
                "cycle = \"daily\"",
                "cycle = \"fortnightly\"",
                "unknown cycle `fortnightly`",
            ),
            ("cycle = \"daily\"", "cycle = 1", "`cycle` must be a string"),
            (
                "cycle = \"daily\"",
                "cycle = \"weekly\"",
                "a weekly cycle needs `weekday`",
            ),
            (
                "cycle = \"daily\"",
                "cycle = \"monthly\"",
                "a monthly cycle needs `monthly_day`",
            ),
            (
                "cutoff = \"15:00\"",
                "cutoff = \"25:00\"",
                "`cutoff` must be a local time of day",
            ),
            (
                "cutoff = \"15:00\"",
                "cutoff = \"3pm\"",
                "`cutoff` must be a local time of day",
            ),
            (
                "cutoff = \"15:00\"",
                "cutoff = \"15:00\"\nweekday = \"monday\"",
                "`weekday` does not apply to the daily cycle",
            ),
            (
                "cutoff = \"15:00\"",
                "cutoff = \"15:00\"\nweekday = \"Monday\"",
                "`weekday` must be a lowercase English weekday",
            ),
            (
                "cutoff = \"15:00\"",
                "cutoff = \"15:00\"\nmonthly_day = 1",
                "`monthly_day` does not apply to the daily cycle",
            ),
            (
                "cycle = \"daily\"",
                "cycle = \"monthly\"\nmonthly_day = 32",
                "`monthly_day` must be a whole number of days from 1 to 31",
            ),
            (
                "cycle = \"daily\"",
                "cycle = \"immediate\"",
                "`cutoff` does not apply to the immediate cycle",
            ),
        ] {
            let (text, _) = withdrawal_with(from, to);
            let error = refusal_of_withdrawal(&text);
            assert!(error.contains(says), "{to}: {error}");
            // The line named is one of the params table's lines.
            let named: usize = error
                .split("withdrawal.toml:")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .and_then(|line| line.parse().ok())
                .unwrap_or_else(|| panic!("no line in {error}"));
            let line_text = text.lines().nth(named - 1).unwrap();
            assert!(
                ["cycle", "cutoff", "weekday", "monthly_day"]
                    .iter()
                    .any(|key| line_text.starts_with(key)),
                "{to}: line {named} is {line_text:?}"
            );
        }
    }

    #[test]
    fn a_zero_poll_interval_is_refused_with_its_file_and_line() {
        let (text, line) = withdrawal_with("poll_interval_ms = 15000", "poll_interval_ms = 0");
        let error = refusal_of_withdrawal(&text);
        assert!(error.contains(&format!("withdrawal.toml:{line}: `poll_interval_ms` must be a whole number of milliseconds from 1000")), "{error}");
    }

    #[test]
    fn a_misspelt_param_is_refused_naming_the_keys_the_kind_takes() {
        let (text, line) =
            withdrawal_with("daily_limit = \"20000.00\"", "daily_limt = \"20000.00\"");
        let error = refusal_of_withdrawal(&text);
        assert!(
            error.contains(&format!(
                "withdrawal.toml:{line}: unknown parameter `daily_limt`"
            )),
            "{error}"
        );
        assert!(error.contains("minimum, daily_limit"), "{error}");
    }

    #[test]
    fn a_param_of_the_wrong_type_is_refused_with_its_line() {
        for (from, to, says) in [
            (
                "minimum = \"10.00\"",
                "minimum = 10",
                "must be an amount in a string",
            ),
            (
                "minimum = \"10.00\"",
                "minimum = \"0.00\"",
                "must be above zero",
            ),
            (
                "express_fee = \"0.5%\"",
                "express_fee = 0.005",
                "must be a percentage",
            ),
            (
                "many_withdrawals_per_day = 5",
                "many_withdrawals_per_day = \"5\"",
                "whole number of withdrawals",
            ),
            (
                "payee_confirmation_hours = 24",
                "payee_confirmation_hours = 721",
                "from 1 to 720",
            ),
        ] {
            let (text, line) = withdrawal_with(from, to);
            let error = refusal_of_withdrawal(&text);
            assert!(
                error.contains(&format!("withdrawal.toml:{line}: ")),
                "{to}: {error}"
            );
            assert!(error.contains(says), "{to}: {error}");
        }
    }

    fn refusal_of_withdrawal(text: &str) -> String {
        let dir = folder_with_calendar();
        WorkflowDefinition::parse(text, "withdrawal.toml", dir.path())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unknown_step_kind_is_refused_with_its_line_and_the_known_kinds() {
        let text = SETTLEMENT.replace("kind = \"hold\"", "kind = \"wait\"");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"wait\"")),
            "{error}"
        );
        assert!(error.contains("unknown step kind \"wait\""), "{error}");
        assert!(
            error.contains("ingest_order, hold, release_commission, refund"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("kind = \"hold\"", "kind = \"hold\"\ntimeout = 5");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "timeout = 5")),
            "{error}"
        );
        assert!(error.contains("timeout"), "{error}");
    }

    #[test]
    fn an_out_of_range_timeout_is_refused_with_its_line_and_unit() {
        let text = SETTLEMENT.replace(
            "queue = \"test.ingest\"",
            "queue = \"test.ingest\"\ntimeout_ms = 5",
        );
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "timeout_ms = 5")),
            "{error}"
        );
        assert!(
            error.contains("from 100 to 3600000 (milliseconds), not 5"),
            "{error}"
        );
    }

    #[test]
    fn a_hold_longer_than_thirty_business_days_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("hold_business_days = 3", "hold_business_days = 31");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "hold_business_days")),
            "{error}"
        );
    }

    #[test]
    fn a_zero_concurrency_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "queue = \"test.ingest\"",
            "queue = \"test.ingest\"\nconcurrency = 0",
        );
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "concurrency = 0")),
            "{error}"
        );
    }

    #[test]
    fn a_queue_name_with_spaces_or_capitals_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("\"test.release\"", "\"Test Release\"");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "Test Release")),
            "{error}"
        );
        assert!(error.contains("queue name \"Test Release\""), "{error}");
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("Asia/Shanghai", "Asia/Beijing");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "Asia/Beijing")),
            "{error}"
        );
        assert!(error.contains("unknown time zone"), "{error}");
    }

    #[test]
    fn a_cron_trigger_with_six_fields_parses() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ cron = \"0 0 1 * * *\" }",
        );
        let definition = parse(&text).unwrap();
        assert!(matches!(definition.trigger(), Trigger::Cron(_)));
    }

    #[test]
    fn a_cron_trigger_with_seven_fields_parses() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ cron = \"0 0 1 * * * 2026\" }",
        );
        parse(&text).unwrap();
    }

    #[test]
    fn a_five_field_cron_trigger_is_refused_with_its_line_and_the_seconds_hint() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ cron = \"0 1 * * *\" }",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "trigger")), "{error}");
        assert!(error.contains("has 5 fields"), "{error}");
        assert!(error.contains("seconds first"), "{error}");
    }

    #[test]
    fn a_garbage_cron_trigger_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ cron = \"every day at one\" }",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "trigger")), "{error}");
        assert!(error.contains("invalid cron expression"), "{error}");
    }

    #[test]
    fn a_six_field_cron_with_an_impossible_hour_is_refused() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ cron = \"0 0 25 * * *\" }",
        );
        let error = refusal(&text);
        assert!(
            error.contains("invalid cron expression \"0 0 25 * * *\""),
            "{error}"
        );
    }

    #[test]
    fn a_trigger_with_both_an_event_and_a_cron_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "{ event = \"order.confirmed\" }",
            "{ event = \"order.confirmed\", cron = \"0 0 1 * * *\" }",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "trigger")), "{error}");
        assert!(
            error.contains("exactly one of `event` or `cron`"),
            "{error}"
        );
    }

    #[test]
    fn a_release_without_a_hold_before_it_is_refused_at_the_release() {
        let text = SETTLEMENT
            .replace("[[steps]]\nname = \"hold\"\nkind = \"hold\"\n", "")
            .replace("hold_business_days = 3\n", "");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"release_commission\"")),
            "{error}"
        );
        assert!(
            error.contains("needs a step of kind hold earlier in the list"),
            "{error}"
        );
    }

    #[test]
    fn a_release_listed_before_its_hold_is_refused() {
        let text = r#"
name = "settlement"
trigger = { event = "order.confirmed" }
time_zone = "Asia/Shanghai"
calendar = "calendars/cn.toml"
hold_business_days = 3

[[steps]]
name = "ingest"
kind = "ingest_order"

[[steps]]
name = "release"
kind = "release_commission"
queue = "test.release"

[[steps]]
name = "hold"
kind = "hold"
"#;
        let error = refusal(text);
        assert!(
            error.starts_with(&at_line_of(text, "kind = \"release_commission\"")),
            "{error}"
        );
        assert!(error.contains("hold"), "{error}");
    }

    #[test]
    fn a_withdrawal_with_tax_and_review_before_its_transfer_is_accepted() {
        let definition = parse(WITHDRAWAL).unwrap();
        assert_eq!(definition.steps().len(), 6);
        assert_eq!(definition.hold_business_days(), None);
        assert_eq!(definition.calendar(), None);
    }

    #[test]
    fn a_transfer_without_review_before_it_is_refused_at_the_transfer() {
        let text = WITHDRAWAL.replace("[[steps]]\nname = \"review\"\nkind = \"review\"\n", "");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"transfer\"")),
            "{error}"
        );
        assert!(error.contains("needs a step of kind review"), "{error}");
        assert!(error.contains("no money leaves"), "{error}");
    }

    #[test]
    fn a_transfer_without_tax_before_it_is_refused_at_the_transfer() {
        let text = WITHDRAWAL.replace("[[steps]]\nname = \"tax\"\nkind = \"withhold_tax\"\n", "");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"transfer\"")),
            "{error}"
        );
        assert!(
            error.contains("needs a step of kind withhold_tax"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_without_a_confirm_before_it_is_refused() {
        let text = WITHDRAWAL.replace(
            "[[steps]]\nname = \"confirm\"\nkind = \"confirm\"\nqueue = \"withdrawal.confirm\"\n",
            "",
        );
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"certificate\"")),
            "{error}"
        );
        assert!(error.contains("needs a step of kind confirm"), "{error}");
    }

    #[test]
    fn a_transfer_without_a_queue_is_refused_at_its_kind() {
        let text = WITHDRAWAL.replace("queue = \"withdrawal.transfer\"\n", "");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"transfer\"")),
            "{error}"
        );
        assert!(error.contains("must run from a `queue`"), "{error}");
    }

    #[test]
    fn a_hold_step_with_a_queue_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("kind = \"hold\"", "kind = \"hold\"\nqueue = \"test.hold\"");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "queue = \"test.hold\"")),
            "{error}"
        );
        assert!(error.contains("waiting state"), "{error}");
    }

    #[test]
    fn a_hold_step_without_hold_business_days_is_refused_at_the_hold() {
        let text = SETTLEMENT.replace("hold_business_days = 3\n", "");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "kind = \"hold\"")),
            "{error}"
        );
        assert!(error.contains("hold_business_days"), "{error}");
    }

    #[test]
    fn hold_business_days_without_a_hold_step_is_refused_with_its_line() {
        let text = WITHDRAWAL.replace(
            "time_zone = \"Asia/Shanghai\"\n",
            "time_zone = \"Asia/Shanghai\"\nhold_business_days = 3\n",
        );
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "hold_business_days")),
            "{error}"
        );
    }

    #[test]
    fn worker_settings_on_a_step_without_a_queue_are_refused_with_their_line() {
        let text = WITHDRAWAL.replace(
            "kind = \"review\"\n",
            "kind = \"review\"\nretry = { max_attempts = 3 }\n",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "retry =")), "{error}");
        assert!(error.contains("step \"review\" has no `queue`"), "{error}");
    }

    #[test]
    fn a_batch_wait_without_a_batch_size_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "queue = \"test.ingest\"",
            "queue = \"test.ingest\"\nbatch_max_wait_ms = 2",
        );
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "batch_max_wait_ms")),
            "{error}"
        );
    }

    #[test]
    fn a_backoff_cap_below_its_base_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "queue = \"test.release\"",
            "queue = \"test.release\"\nretry = { backoff_base_ms = 5000, backoff_max_ms = 1000 }",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "retry =")), "{error}");
        assert!(error.contains("at least `backoff_base_ms`"), "{error}");
    }

    #[test]
    fn an_unknown_retry_key_is_refused_with_its_line() {
        let text = SETTLEMENT.replace(
            "queue = \"test.release\"",
            "queue = \"test.release\"\nretry = { attempts = 3 }",
        );
        let error = refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "retry =")), "{error}");
        assert!(error.contains("attempts"), "{error}");
    }

    #[test]
    fn a_duplicate_step_name_is_refused_naming_both_lines() {
        let text = SETTLEMENT.replace("name = \"release\"", "name = \"ingest\"");
        let error = refusal(&text);
        let second = text.rfind("name = \"ingest\"").unwrap();
        let second_line = text[..second].matches('\n').count() + 1;
        assert!(
            error.starts_with(&format!("test.toml:{second_line}:")),
            "{error}"
        );
        let first = at_line_of(&text, "name = \"ingest\"");
        assert!(error.ends_with(first.trim_end_matches(':')), "{error}");
    }

    #[test]
    fn a_queue_used_by_two_steps_of_one_file_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("\"test.release\"", "\"test.ingest\"");
        let error = refusal(&text);
        let second = text.rfind("queue = \"test.ingest\"").unwrap();
        let second_line = text[..second].matches('\n').count() + 1;
        assert!(
            error.starts_with(&format!("test.toml:{second_line}:")),
            "{error}"
        );
        assert!(
            error.contains("queue \"test.ingest\" is already used"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_calendar_file_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("calendars/cn.toml", "calendars/mars.toml");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "calendar =")),
            "{error}"
        );
        assert!(error.contains("mars.toml does not exist"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_refused_with_its_line() {
        let text = SETTLEMENT.replace("hold_business_days = 3", "hold_business_days = ");
        let error = refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "hold_business_days")),
            "{error}"
        );
    }

    #[test]
    fn load_all_reads_every_definition_but_the_schedules_file() {
        let dir = folder_with_calendar();
        std::fs::write(dir.path().join("a.toml"), SETTLEMENT).unwrap();
        std::fs::write(dir.path().join("b.toml"), WITHDRAWAL).unwrap();
        std::fs::write(dir.path().join(SCHEDULES_FILE_NAME), SHIPPED_SCHEDULES).unwrap();
        let definitions = WorkflowDefinition::load_all(dir.path()).unwrap();
        let names: Vec<&str> = definitions.iter().map(WorkflowDefinition::name).collect();
        assert_eq!(names, ["settlement", "withdrawal"]);
    }

    #[test]
    fn load_all_refuses_a_queue_claimed_by_two_files_naming_both() {
        let dir = folder_with_calendar();
        std::fs::write(dir.path().join("a.toml"), SETTLEMENT).unwrap();
        let other = WITHDRAWAL.replace("withdrawal.transfer", "test.release");
        std::fs::write(dir.path().join("b.toml"), &other).unwrap();
        let error = WorkflowDefinition::load_all(dir.path())
            .unwrap_err()
            .to_string();
        let line_in = |text: &str| {
            text[..text.find("\"test.release\"").unwrap()]
                .matches('\n')
                .count()
                + 1
        };
        assert!(
            error.contains(&format!("b.toml:{}:", line_in(&other))),
            "{error}"
        );
        assert!(
            error.contains(&format!("a.toml:{}", line_in(SETTLEMENT))),
            "{error}"
        );
    }

    #[test]
    fn load_all_refuses_two_workflows_of_the_same_name() {
        let dir = folder_with_calendar();
        std::fs::write(dir.path().join("a.toml"), SETTLEMENT).unwrap();
        let copy = SETTLEMENT
            .replace("test.ingest", "copy.ingest")
            .replace("test.release", "copy.release");
        std::fs::write(dir.path().join("b.toml"), copy).unwrap();
        let error = WorkflowDefinition::load_all(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("b.toml:2: workflow name \"settlement\" is already used"),
            "{error}"
        );
    }

    #[test]
    fn backoff_doubles_from_its_base_on_each_attempt() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        };
        let delays: Vec<u128> = (1..=5)
            .map(|attempt| policy.backoff_for_attempt(attempt).as_millis())
            .collect();
        assert_eq!(delays, [500, 1_000, 2_000, 4_000, 8_000]);
        assert_eq!(policy.backoff_for_attempt(0), Duration::from_millis(500));
    }

    #[test]
    fn backoff_stops_growing_at_its_cap() {
        let policy = RetryPolicy {
            max_attempts: 100,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        };
        assert_eq!(policy.backoff_for_attempt(6), Duration::from_secs(32));
        assert_eq!(policy.backoff_for_attempt(7), Duration::from_secs(60));
        assert_eq!(policy.backoff_for_attempt(33), Duration::from_secs(60));
        assert_eq!(
            policy.backoff_for_attempt(u32::MAX),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn every_step_kind_and_job_is_found_by_its_own_name() {
        for kind in StepKind::ALL {
            assert_eq!(StepKind::from_name(kind.name()), Some(kind));
        }
        for job in JobKind::ALL {
            assert_eq!(JobKind::from_name(job.name()), Some(job));
        }
        assert_eq!(StepKind::from_name("Hold"), None);
    }

    const SCHEDULES: &str = r#"
time_zone = "Asia/Shanghai"

[[schedules]]
name = "release_sweep"
job = "release_due_holds"
cron = "0 * * * * *"

[[schedules]]
name = "monthly_declaration"
job = "prepare_declaration"
cron = "0 0 1 1 * *"
time_zone = "UTC"
"#;

    fn schedules_refusal(text: &str) -> String {
        Schedules::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_schedule_takes_the_file_time_zone_unless_it_names_its_own() {
        let schedules = Schedules::parse(SCHEDULES, "test.toml").unwrap();
        assert_eq!(schedules.jobs().len(), 2);
        assert_eq!(schedules.jobs()[0].time_zone(), chrono_tz::Asia::Shanghai);
        assert_eq!(schedules.jobs()[1].time_zone(), chrono_tz::UTC);
    }

    #[test]
    fn a_five_field_schedule_cron_is_refused_with_its_line() {
        let text = SCHEDULES.replace("\"0 * * * * *\"", "\"* * * * *\"");
        let error = schedules_refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "\"* * * * *\"")),
            "{error}"
        );
        assert!(error.contains("has 5 fields"), "{error}");
    }

    #[test]
    fn a_garbage_schedule_cron_is_refused_with_its_line() {
        let text = SCHEDULES.replace("\"0 0 1 1 * *\"", "\"0 0 1 1 * nonsense\"");
        let error = schedules_refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "nonsense")), "{error}");
        assert!(error.contains("invalid cron expression"), "{error}");
    }

    #[test]
    fn an_unknown_job_is_refused_with_its_line_and_the_known_jobs() {
        let text = SCHEDULES.replace("\"prepare_declaration\"", "\"pay_bonus\"");
        let error = schedules_refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "pay_bonus")),
            "{error}"
        );
        assert!(
            error.contains("release_due_holds, prepare_declaration"),
            "{error}"
        );
    }

    #[test]
    fn a_duplicate_schedule_name_is_refused_with_its_line() {
        let text = SCHEDULES.replace("\"monthly_declaration\"", "\"release_sweep\"");
        let error = schedules_refusal(&text);
        let second = text.rfind("name = \"release_sweep\"").unwrap();
        let second_line = text[..second].matches('\n').count() + 1;
        assert!(
            error.starts_with(&format!("test.toml:{second_line}:")),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_schedule_time_zone_is_refused_with_its_line() {
        let text = SCHEDULES.replace("\"UTC\"", "\"Mars/Olympus\"");
        let error = schedules_refusal(&text);
        assert!(
            error.starts_with(&at_line_of(&text, "Mars/Olympus")),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_schedule_key_is_refused_with_its_line() {
        let text = SCHEDULES.replace(
            "cron = \"0 * * * * *\"",
            "cron = \"0 * * * * *\"\nenabled = true",
        );
        let error = schedules_refusal(&text);
        assert!(error.starts_with(&at_line_of(&text, "enabled")), "{error}");
    }
}
