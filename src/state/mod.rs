//! The state every request handler, page and worker reaches: the store,
//! the clock, the settings and the engines. A leaf of the module graph:
//! it imports what it holds and nothing that serves HTTP, so `api`, `web`
//! and `app` can all import it without importing each other.

pub mod rate_limit;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::clock::{Clock, SimulatedClock};
use crate::config::Settings;
use crate::engine::certificate::CertificateIssuer;
use crate::engine::declaration::DeclarationPreparer;
use crate::engine::settlement::SettlementEngine;
use crate::engine::withdrawal::WithdrawalEngine;
use crate::store::Store;
use crate::vault::Vault;
use rate_limit::RateLimits;

/// What every request handler and worker can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// Present only under `--simulated-clock`.
    pub simulated_clock: Option<Arc<SimulatedClock>>,
    pub settings: Arc<Settings>,
    pub settlement: Arc<SettlementEngine>,
    /// Told the new time whenever a simulated clock moves, so the scheduler runs at once.
    pub clock_moved: Arc<watch::Sender<DateTime<Utc>>>,
    /// Per-client rate limits of the public routes (`state::rate_limit`).
    pub limits: Arc<RateLimits>,
    /// Seals and opens payout credentials (SPEC §2.5).
    pub vault: Arc<Vault>,
    /// The withdrawal workflow (SPEC §2.4) and its payout gateway.
    pub withdrawals: Arc<WithdrawalEngine>,
    /// The withdrawal's certificate step, corrections and verification (SPEC §2.6).
    pub certificates: Arc<CertificateIssuer>,
    /// The monthly withholding declarations (SPEC §2.6).
    pub declarations: Arc<DeclarationPreparer>,
    /// The month close (team bonus, statements).
    pub month_close: Arc<crate::engine::month_close::MonthCloser>,
    /// The daily reconciliation against the gateways' statements.
    pub reconciliation: Arc<crate::engine::reconciliation::Reconciler>,
    /// Every step that runs from a queue, in workflow order (the ops views).
    pub step_queues: Arc<Vec<StepQueue>>,
}

impl AppState {
    /// Under a simulated clock, moves the in-process sandbox's clock to it:
    /// the sandbox stamps payouts and serves statements by its own clock,
    /// and a statement of a simulated day must hold that day's payouts.
    pub fn align_sandbox_clock(&self) {
        if self.simulated_clock.is_none() {
            return;
        }
        if let Some(gateway) = self.withdrawals.gateway()
            && let Some(sandbox) = gateway.sandbox()
            && let Err(error) = sandbox.set_clock_offset(self.clock.now() - chrono::Utc::now())
        {
            tracing::warn!(error = %error, "the sandbox's clock cannot follow the simulated clock");
        }
    }

    /// Whoever moves a simulated clock calls this: the sandbox's clock
    /// follows at once, and the scheduler runs what fell due.
    pub fn announce_clock_move(&self) {
        self.align_sandbox_clock();
        let _ = self.clock_moved.send(self.clock.now());
    }
}

/// A step that runs from a queue, as the ops console groups jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepQueue {
    pub workflow: String,
    pub step: String,
    pub queue: String,
    /// The step's `timeout_ms`: a job running longer is stuck.
    pub timeout: Duration,
}
