//! The application: settings in, a bound listener and a running service out.
//! Tests start it exactly as `main` does, on port 0 with a fresh database.
//!
//! One process may serve the API, run the workers (the step queues and the
//! scheduler), or both (`serve`, `serve --no-workers`, `worker`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SimulatedClock, SystemClock};
use crate::config::Settings;
use crate::domain::calendar::BusinessCalendar;
use crate::engine::CALENDAR_HORIZON_DAYS;
use crate::engine::calendar::CalendarBook;
use crate::engine::certificate::CertificateIssuer;
use crate::engine::declaration::{DeclarationPreparer, PREPARED_MONTHS};
use crate::engine::definition::{JobKind, Schedules, StepDefinition, StepKind, WorkflowDefinition};
use crate::engine::grade_review::GradeReview;
use crate::engine::settlement::{SettlementEngine, SettlementSettings};
use crate::engine::withdrawal::{WithdrawalEngine, WithdrawalSettings};
use crate::engine::worker::ScheduledWork;
use crate::state::rate_limit::RateLimits;
use crate::state::{AppState, StepQueue};
use crate::store::{JobSpec, Store, redact_url};
use crate::vault::Vault;

/// How long stopping waits for workers to finish their current step.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(10);
/// T+3 when a workflow file leaves the hold unset.
const DEFAULT_HOLD_BUSINESS_DAYS: u32 = 3;
/// Orders released per transaction when the release step sets no `batch_size`.
const DEFAULT_RELEASE_BATCH_SIZE: usize = 1_000;
/// How far back start-up looks for a missed declaration run: the job is
/// monthly, so a month and a day finds the latest scheduled time.
const MISSED_DECLARATION_LOOKBACK_DAYS: i64 = 32;

/// The workflow files in force: from the workflows folder, or the copies
/// built into the binary for any file missing there.
pub struct Workflows {
    pub order_settlement: WorkflowDefinition,
    pub withdrawal: WorkflowDefinition,
    /// The calendar file's years; years applied at run time are laid over
    /// them by the settlement engine's [`CalendarBook`].
    pub calendar: Arc<BusinessCalendar>,
    /// The calendar's name in the API: its file's stem (`cn`).
    pub calendar_key: String,
    pub schedules: Schedules,
}

impl Workflows {
    pub fn load(dir: &Path) -> anyhow::Result<Workflows> {
        let definition_file = dir.join("order-settlement.toml");
        let order_settlement = if definition_file.exists() {
            WorkflowDefinition::load(&definition_file)?
        } else {
            WorkflowDefinition::shipped_order_settlement()?
        };
        let calendar = match order_settlement.calendar().filter(|path| path.exists()) {
            Some(path) => BusinessCalendar::load(path)?,
            None => BusinessCalendar::from_toml_str(
                crate::engine::definition::check::SHIPPED_CN_CALENDAR,
                "calendars/cn.toml",
            )?,
        };
        let calendar_key = order_settlement
            .calendar()
            .and_then(|path| path.file_stem())
            .map_or_else(
                || "cn".to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            );
        let withdrawal_file = dir.join("withdrawal.toml");
        let withdrawal = if withdrawal_file.exists() {
            WorkflowDefinition::load(&withdrawal_file)?
        } else {
            WorkflowDefinition::shipped_withdrawal()?
        };
        let schedules_file = dir.join("schedules.toml");
        let schedules = if schedules_file.exists() {
            Schedules::load(&schedules_file)?
        } else {
            Schedules::shipped()?
        };
        Ok(Workflows {
            order_settlement,
            withdrawal,
            calendar: Arc::new(calendar),
            calendar_key,
            schedules,
        })
    }

    fn step(&self, kind: StepKind) -> anyhow::Result<&StepDefinition> {
        self.order_settlement.step(kind).ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no {} step",
                self.order_settlement.file(),
                kind.name()
            )
        })
    }

    /// The settlement engine's settings for `backend`.
    pub fn settlement_settings(
        &self,
        backend: crate::store::BackendKind,
        settings: &Settings,
    ) -> anyhow::Result<SettlementSettings> {
        let release = self.step(StepKind::ReleaseCommission)?;
        let ingest = self.step(StepKind::IngestOrder)?;
        Ok(SettlementSettings {
            time_zone: self.order_settlement.time_zone(),
            hold_business_days: self
                .order_settlement
                .hold_business_days()
                .unwrap_or(DEFAULT_HOLD_BUSINESS_DAYS),
            release_job: JobSpec {
                queue: release
                    .queue()
                    .ok_or_else(|| anyhow::anyhow!("the release step needs a queue"))?
                    .to_owned(),
                max_attempts: release.retry().max_attempts,
            },
            release_batch_size: release.batch_size().unwrap_or(DEFAULT_RELEASE_BATCH_SIZE) as i64,
            ingest_batch_size: ingest.batch_size().unwrap_or(1),
            ingest_batch_max_wait: ingest.batch_max_wait().unwrap_or(Duration::ZERO),
            ingest_writers: match backend {
                // One writer at a time is all SQLite has; more would only queue on its lock.
                crate::store::BackendKind::Sqlite => 1,
                crate::store::BackendKind::Postgres => ingest.concurrency() as usize,
            },
            order_max_age: chrono::TimeDelta::days(i64::from(settings.order_max_age_days)),
        })
    }
}

/// Everything but the listener: the database, the clock, the engine.
pub struct Runtime {
    pub state: AppState,
    workflows: Workflows,
}

impl Runtime {
    /// Builds the runtime with the vault of SPEC §5: the master key from
    /// the settings' key sources (a development key file beside a SQLite
    /// database when none is set), and the previous keys of a rotation in
    /// progress. Reads no environment variable: `Settings::load` did.
    pub async fn build(settings: Settings) -> anyhow::Result<Runtime> {
        settings.validate()?;
        let vault = Vault::from_sources(&settings.master_key, &settings.database_url)?;
        Runtime::build_validated(settings, vault).await
    }

    /// Builds the runtime with a vault the caller made (a benchmark's
    /// throwaway key for its scratch database).
    pub async fn build_with_vault(settings: Settings, vault: Vault) -> anyhow::Result<Runtime> {
        settings.validate()?;
        Runtime::build_validated(settings, vault).await
    }

    async fn build_validated(settings: Settings, vault: Vault) -> anyhow::Result<Runtime> {
        crate::telemetry::metrics::install();
        tracing::info!(key_id = %vault.current_key_id(), "payout credentials sealed under this master key");
        let workflows = Workflows::load(&settings.workflows_dir)?;
        let url = settings.database_url.expose_secret().to_owned();
        let store = Arc::new(
            Store::open(&url, &settings.store_options())
                .await
                .map_err(|error| anyhow::anyhow!("opening {}: {error}", redact_url(&url)))?,
        );
        let (clock, simulated_clock): (Arc<dyn Clock>, Option<Arc<SimulatedClock>>) = if settings
            .simulated_clock
        {
            let simulated = Arc::new(SimulatedClock::starting_at(Utc::now()));
            tracing::warn!(
                "simulated clock: time only moves on POST /v1/admin/clock/advance; never use this in production"
            );
            (simulated.clone(), Some(simulated))
        } else {
            (Arc::new(SystemClock), None)
        };
        crate::service::plans::ensure_default(&store, clock.now()).await?;
        let calendars = Arc::new(CalendarBook::new(
            workflows.calendar_key.clone(),
            workflows.calendar.clone(),
        ));
        let calendar = calendars.refresh(&store).await?.calendar.clone();
        let today = clock.now().date_naive();
        let provisional = crate::engine::provisional_years_ahead(&calendar, today);
        if !provisional.is_empty() {
            let years: Vec<String> = provisional
                .iter()
                .map(|(year, origin)| format!("{year} ({})", origin.as_str()))
                .collect();
            tracing::warn!(
                calendar = calendar.name(),
                provisional_years = %years.join(", "),
                "the business calendar is provisional within the coming {CALENDAR_HORIZON_DAYS} days: \
                 statutory holidays are computed there, bridging days and make-up working days are not; \
                 apply the year's State Council notice when it is published \
                 (fenrun calendar apply FILE, or PUT /v1/admin/calendars/{}/years/YEAR)",
                workflows.calendar_key
            );
        }
        let settlement = Arc::new(SettlementEngine::start(
            store.clone(),
            clock.clone(),
            calendars,
            workflows.settlement_settings(store.kind(), &settings)?,
        ));
        let (clock_moved, _) = watch::channel(clock.now());
        let vault = Arc::new(vault);
        let withdrawals = Arc::new(WithdrawalEngine::new(
            store.clone(),
            clock.clone(),
            vault.clone(),
            WithdrawalSettings::from_definition(
                &workflows.withdrawal,
                settings.withholding_method,
            )?
            .sending_standard_at_once(settings.standard_withdrawals_at_once),
        ));
        let certificates = Arc::new(
            CertificateIssuer::start(
                store.clone(),
                vault.clone(),
                clock.clone(),
                settings.withholding_agent_name.clone(),
                settings.withholding_agent_tin.clone(),
                workflows.withdrawal.time_zone(),
            )
            .await?,
        );
        let settings = Arc::new(settings);
        let limits = Arc::new(RateLimits::new(&settings.guard));
        let declarations = Arc::new(DeclarationPreparer {
            store: store.clone(),
            vault: vault.clone(),
            settings: settings.clone(),
        });
        let month_close = Arc::new(crate::engine::month_close::MonthCloser::new(
            store.clone(),
            clock.clone(),
            workflows.order_settlement.time_zone(),
            crate::engine::month_close::MonthCloseSettings::load(&settings.workflows_dir)?,
        ));
        let reconciliation = Arc::new(crate::engine::reconciliation::Reconciler::new(
            store.clone(),
            clock.clone(),
            withdrawals.clone(),
            crate::engine::reconciliation::ReconciliationSettings::load(&settings.workflows_dir)?,
        ));
        let step_queues = Arc::new(
            [&workflows.order_settlement, &workflows.withdrawal]
                .iter()
                .flat_map(|definition| {
                    definition.steps().iter().filter_map(|step| {
                        step.queue().map(|queue| StepQueue {
                            workflow: definition.name().to_owned(),
                            step: step.name().to_owned(),
                            queue: queue.to_owned(),
                            timeout: step.timeout(),
                        })
                    })
                })
                .collect(),
        );
        Ok(Runtime {
            state: AppState {
                store,
                clock,
                simulated_clock,
                settings,
                settlement,
                clock_moved: Arc::new(clock_moved),
                limits,
                vault,
                withdrawals,
                certificates,
                declarations,
                month_close,
                reconciliation,
                step_queues,
            },
            workflows,
        })
    }

    /// Connects the payout gateway of the settings; its callbacks go to
    /// `public_url`, or to `default_public_url` (this process) when unset.
    pub async fn connect_gateway(&self, default_public_url: String) -> anyhow::Result<()> {
        let settings = &self.state.settings;
        let public = settings.public_url.clone().unwrap_or(default_public_url);
        let notify = crate::engine::gateway::NotifyUrls::below(&public);
        let gateway = Arc::new(crate::engine::gateway::Gateway::connect(settings, &notify).await?);
        self.state.withdrawals.connect_gateway(gateway);
        self.state.align_sandbox_clock();
        Ok(())
    }

    /// Releases the holds that fell due while no worker ran, before the
    /// process takes traffic or queue jobs.
    pub async fn catch_up(&self) -> anyhow::Result<()> {
        let released = self
            .state
            .settlement
            .release_due(1, "start-up catch-up")
            .await?;
        if released > 0 {
            tracing::info!(released, "released holds that fell due while stopped");
        }
        let swept = self
            .state
            .certificates
            .sweep(
                &self.state.withdrawals.settings().certificate_job,
                self.state.clock.now(),
            )
            .await?;
        if swept > 0 {
            tracing::info!(
                swept,
                "issuing certificates of withdrawals paid without one"
            );
        }
        self.prepare_missed_declaration().await;
        self.close_missed_months().await;
        // The grade review decides on current facts and writes only what
        // still holds, so running it at every start catches up whatever
        // daily run was missed while stopped and changes nothing otherwise.
        if self
            .workflows
            .schedules
            .job(JobKind::ReviewGrades)
            .is_some()
        {
            self.scheduled_work()
                .run(
                    JobKind::ReviewGrades,
                    self.state.clock.now().with_timezone(&chrono_tz::UTC),
                )
                .await;
        }
        let resumed = self.state.withdrawals.resume().await?;
        if resumed > 0 {
            tracing::info!(
                resumed,
                "resuming transfers that were under way when the last process stopped"
            );
        }
        Ok(())
    }

    fn scheduled_work(&self) -> ScheduledWork {
        ScheduledWork {
            settlement: self.state.settlement.clone(),
            declarations: self.state.declarations.clone(),
            month_close: self.state.month_close.clone(),
            reconciliation: self.state.reconciliation.clone(),
            grades: Arc::new(GradeReview::new(self.state.store.clone())),
            clock: self.state.clock.clone(),
        }
    }

    /// Runs the declaration job if its latest scheduled time (within the
    /// last [`MISSED_DECLARATION_LOOKBACK_DAYS`]) passed while no process ran and its month was never
    /// prepared.
    async fn prepare_missed_declaration(&self) {
        let Some(at) = self.latest_scheduled(JobKind::PrepareDeclaration) else {
            return;
        };
        let month = crate::domain::tax::Month::of(at.date_naive()).previous();
        match self
            .state
            .store
            .prepared_declarations(PREPARED_MONTHS)
            .await
        {
            Ok(prepared) if prepared.iter().any(|p| p.tax_month == month.to_string()) => {}
            Ok(_) => {
                tracing::info!(month = %month, "the declaration's scheduled time passed while stopped: preparing it now");
                self.scheduled_work()
                    .run(JobKind::PrepareDeclaration, at)
                    .await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the prepared declarations; the schedule will prepare the next one")
            }
        }
    }

    /// Closes the months whose close fell due while no process ran (the
    /// latest scheduled time of `close_month` that has passed), or that a
    /// crash left unfinished.
    async fn close_missed_months(&self) {
        let Some(at) = self.latest_scheduled(JobKind::CloseMonth) else {
            return;
        };
        self.scheduled_work().run(JobKind::CloseMonth, at).await;
    }

    /// The latest time a monthly `job` was scheduled for that has passed
    /// (within [`MISSED_DECLARATION_LOOKBACK_DAYS`]), in its zone; `None`
    /// when the schedules do not run it.
    fn latest_scheduled(&self, job: JobKind) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let job = self.workflows.schedules.job(job)?;
        let now = self.state.clock.now().with_timezone(&job.time_zone());
        job.schedule()
            .after(&(now - chrono::Duration::days(MISSED_DECLARATION_LOOKBACK_DAYS)))
            .take_while(|at| *at <= now)
            .last()
    }

    /// Starts the release worker and the scheduler; they stop when `stop` turns true.
    pub fn spawn_workers(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let release = self.workflows.step(StepKind::ReleaseCommission)?.clone();
        let pool = self.state.store.queue_pool();
        let engine = self.state.settlement.clone();
        let worker_stop = stop.clone();
        let worker = tokio::spawn(async move {
            if let Err(error) =
                crate::engine::worker::run_release_worker(pool, engine, release, worker_stop).await
            {
                tracing::error!(error = %error, "release worker stopped with an error");
            }
        });
        let scheduler = tokio::spawn(crate::engine::worker::run_scheduler(
            self.workflows.schedules.clone(),
            self.state.clock.clone(),
            self.scheduled_work(),
            stop.clone(),
            self.state.clock_moved.subscribe(),
        ));
        let mut handles = vec![worker, scheduler];
        handles.extend(self.spawn_payout_workers(stop)?);
        Ok(handles)
    }

    /// Starts the withdrawal transfer and certificate workers, the payout
    /// poller and the webhook deliveries.
    pub fn spawn_payout_workers(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let transfer = self
            .workflows
            .withdrawal
            .step(StepKind::Transfer)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("{} has no transfer step", self.workflows.withdrawal.file())
            })?;
        let pool = self.state.store.queue_pool();
        let withdrawals = self.state.withdrawals.clone();
        let worker_stop = stop.clone();
        let worker = tokio::spawn(async move {
            if let Err(error) =
                crate::engine::worker::run_transfer_worker(pool, withdrawals, transfer, worker_stop)
                    .await
            {
                tracing::error!(error = %error, "transfer worker stopped with an error");
            }
        });
        let certificate = self
            .workflows
            .withdrawal
            .step(StepKind::Certificate)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no certificate step",
                    self.workflows.withdrawal.file()
                )
            })?;
        let pool = self.state.store.queue_pool();
        let issuer = self.state.certificates.clone();
        let certificate_stop = stop.clone();
        let certificate_worker = tokio::spawn(async move {
            if let Err(error) = crate::engine::worker::run_certificate_worker(
                pool,
                issuer,
                certificate,
                certificate_stop,
            )
            .await
            {
                tracing::error!(error = %error, "certificate worker stopped with an error");
            }
        });
        let poller = tokio::spawn(crate::engine::worker::run_payout_poller(
            self.state.withdrawals.clone(),
            self.state.certificates.clone(),
            self.state.clock.clone(),
            stop.clone(),
        ));
        let deliverer = Arc::new(crate::engine::webhooks::WebhookDeliverer::new(
            self.state.store.clone(),
            self.state.vault.clone(),
            self.state.clock.clone(),
            self.state.settings.webhooks.allow_private_targets,
        )?);
        let webhooks =
            tokio::spawn(deliverer.run(stop.clone(), self.state.clock_moved.subscribe()));
        Ok(vec![worker, certificate_worker, poller, webhooks])
    }

    /// A worker process's own small HTTP surface on `listen`: `/healthz`,
    /// `/readyz` and `/metrics` (its steps' and gateway calls' figures live
    /// in this process). A port already taken (a worker beside `fenrun
    /// serve` with the default address) costs the endpoints, not the workers.
    async fn serve_worker_endpoints(&self, stop: &watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        let listen = self.state.settings.listen.clone();
        let listener = match TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(listen = %listen, error = %error, "cannot listen for /healthz and /metrics; the workers run without them (set FENRUN_LISTEN per worker)");
                return None;
            }
        };
        tracing::info!(listen = %listen, "worker endpoints: /healthz, /readyz, /metrics");
        let router = axum::Router::new()
            .route("/healthz", axum::routing::get(crate::api::health::healthz))
            .route("/readyz", axum::routing::get(crate::api::health::readyz))
            .route("/metrics", axum::routing::get(crate::api::metrics::render))
            .with_state(self.state.clone());
        let mut stop = stop.clone();
        Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %error, "worker endpoints stopped");
            }
        }))
    }

    /// Runs only the workers until `shutdown` (`fenrun worker`).
    pub async fn run_workers_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        self.connect_gateway(format!("http://{}", self.state.settings.listen))
            .await?;
        self.catch_up().await?;
        let mut handles = self.spawn_workers(&stopped)?;
        handles.extend(self.serve_worker_endpoints(&stopped).await);
        shutdown.await;
        let _ = stop.send(true);
        join_within(handles, WORKER_STOP_GRACE).await;
        self.state.store.close().await;
        Ok(())
    }
}

async fn join_within(handles: Vec<JoinHandle<()>>, grace: Duration) {
    for handle in handles {
        if tokio::time::timeout(grace, handle).await.is_err() {
            tracing::warn!(
                "a worker did not stop within {grace:?}; its job will be re-run elsewhere"
            );
        }
    }
}

pub struct Application {
    listener: TcpListener,
    runtime: Runtime,
}

impl Application {
    /// Opens and migrates the database, installs the default plan if none is
    /// in force, loads the workflow files, starts the ingest writer and binds
    /// the listener. Workers start with [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listen = settings.listen_addr()?;
        let runtime = Runtime::build(settings).await?;
        Application::bind(listen, runtime).await
    }

    /// [`Application::build`] with a vault the caller made; see
    /// [`Runtime::build_with_vault`].
    pub async fn build_with_vault(settings: Settings, vault: Vault) -> anyhow::Result<Application> {
        let listen = settings.listen_addr()?;
        let runtime = Runtime::build_with_vault(settings, vault).await?;
        Application::bind(listen, runtime).await
    }

    async fn bind(listen: SocketAddr, runtime: Runtime) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(listen).await?;
        runtime
            .connect_gateway(format!("http://{}", listener.local_addr()?))
            .await?;
        tracing::info!(
            address = %listener.local_addr()?,
            database = %redact_url(runtime.state.settings.database_url.expose_secret()),
            workers = runtime.state.settings.run_workers,
            "fenrun is ready"
        );
        Ok(Application { listener, runtime })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.runtime.state
    }

    /// See [`Runtime::spawn_payout_workers`] (the demo runs only these).
    pub fn spawn_payout_workers(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        self.runtime.spawn_payout_workers(stop)
    }

    /// Serves (and, unless `run_workers` is off, runs the workers) until
    /// `shutdown` resolves; then finishes in-flight requests, stops the
    /// workers and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let handles = if self.runtime.state.settings.run_workers {
            self.runtime.catch_up().await?;
            self.runtime.spawn_workers(&stopped)?
        } else {
            Vec::new()
        };
        let store = self.runtime.state.store.clone();
        let state = self.runtime.state.clone();
        let router = crate::api::serve(
            crate::api::routes(&state).merge(crate::web::router()),
            state,
        );
        let header_read_timeout =
            Duration::from_millis(self.runtime.state.settings.guard.header_read_timeout_ms);
        crate::api::server::serve(self.listener, router, header_read_timeout, shutdown).await?;
        let _ = stop.send(true);
        join_within(handles, WORKER_STOP_GRACE).await;
        store.close().await;
        tracing::info!("fenrun stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
