//! The daily grade review (`job = "review_grades"` in
//! `workflows/schedules.toml`; by hand: `fenrun grades review`): upgrades
//! (晋级) and clearing (清退) under the plan in force, by the rules of
//! `domain::grades`.
//!
//! ```text
//! plan in force at now ─┐
//! page of distributors ─┴─> facts (settled sales, last sale, reinstatement)
//!                             └─> domain::grades::decide ─> change + timeline + audit
//!                                  (one transaction per page; next page by id)
//! ```
//!
//! Durable and idempotent without a job row of its own: each decision is
//! made on the distributor's current state and written only if that state
//! still holds (`grade = from`, `status = 'active'`), so running the review
//! late, twice, or beside another changes nothing more; a crash loses at
//! most the pages not yet committed, which the next run (start-up catch-up
//! or the next day) reviews. Clearing is measured in elapsed time from the
//! facts, so a review that missed days while the service was down decides
//! as the missed ones would have.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::grades::{self, Clearing, Decision, Upgrade};
use crate::domain::plan::Plan;
use crate::store::{Actor, LifecycleChange, ReviewChange, Store, StoreError};

/// Distributors reviewed per transaction: small enough that a page's write
/// lock is short next to ingest, large enough that 10,000 distributors take
/// 20 transactions.
pub const REVIEW_PAGE: i64 = 500;

/// The audit actor of the scheduled review.
pub const REVIEW_ACTOR: &str = "grade_review";

/// What one run of the review did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReviewReport {
    /// The plan version whose rules were applied.
    pub plan_version: i64,
    pub reviewed: usize,
    pub upgraded: usize,
    pub cleared: usize,
}

/// Runs the review against the store.
pub struct GradeReview {
    store: Arc<Store>,
}

impl GradeReview {
    pub fn new(store: Arc<Store>) -> GradeReview {
        GradeReview { store }
    }

    /// Reviews every distributor at `now` under the plan in force then.
    ///
    /// # Errors
    /// A store error, or no (readable) plan in force; the pages committed
    /// before it stay, and the next run picks up the rest.
    pub async fn run(&self, now: DateTime<Utc>, actor: &Actor) -> Result<ReviewReport, StoreError> {
        let stored = self.store.plan_in_force(now).await?.ok_or_else(|| {
            StoreError::Corrupt(
                "no commission plan is in force; the default plan is missing".to_owned(),
            )
        })?;
        let plan = Plan::parse(
            &stored.source_toml,
            &format!("plan version {}", stored.version),
        )
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let mut report = ReviewReport {
            plan_version: stored.version,
            ..ReviewReport::default()
        };
        if plan.clearing().is_none()
            && plan
                .grades()
                .iter()
                .all(|grade| plan.upgrade(grade.key()).is_none())
        {
            return Ok(report);
        }
        let version = stored.version;
        let decide = |facts: &grades::ReviewFacts| {
            grades::decide(&plan, facts, now).map(|decision| change_of(decision, version))
        };
        let mut after: Option<String> = None;
        // Bounded by the number of distributors: each page starts after the
        // last id of the one before, and a short page is the last.
        loop {
            let page = self
                .store
                .review_distributors(after.as_deref(), REVIEW_PAGE, now, actor, decide)
                .await?;
            report.reviewed += page.reviewed;
            report.upgraded += page.upgraded;
            report.cleared += page.cleared;
            if (page.reviewed as i64) < REVIEW_PAGE {
                break;
            }
            after = page.last_id;
        }
        if report.upgraded + report.cleared > 0 {
            tracing::info!(
                upgraded = report.upgraded,
                cleared = report.cleared,
                reviewed = report.reviewed,
                plan_version = version,
                "grade review changed distributors"
            );
        }
        Ok(report)
    }
}

/// The store's change, with the sentence and figures for the timeline.
fn change_of(decision: Decision, plan_version: i64) -> ReviewChange {
    match decision {
        Decision::Upgrade(upgrade) => ReviewChange {
            detail: describe_upgrade(&upgrade, plan_version),
            figures: figures(&upgrade, plan_version),
            change: LifecycleChange::Upgrade {
                from: upgrade.from,
                to: upgrade.to,
            },
        },
        Decision::Clear(clearing) => ReviewChange {
            detail: describe_clearing(&clearing, plan_version),
            figures: figures(&clearing, plan_version),
            change: LifecycleChange::Clear,
        },
    }
}

fn figures(decision: &impl Serialize, plan_version: i64) -> serde_json::Value {
    let mut figures = serde_json::to_value(decision).unwrap_or_default();
    figures["plan_version"] = plan_version.into();
    figures
}

fn describe_upgrade(upgrade: &Upgrade, plan_version: i64) -> String {
    let mut conditions = vec![format!(
        "own settled sales {} (needs {})",
        upgrade.own_sales, upgrade.required_own_sales
    )];
    if let Some(team) = upgrade.required_team_sales {
        conditions.push(format!(
            "team settled sales {} (needs {team})",
            upgrade.team_sales
        ));
    }
    format!(
        "upgraded from {} to {} under plan v{plan_version}: {}; {}",
        upgrade.from,
        upgrade.to,
        conditions.join(", "),
        if upgrade.any {
            "any condition suffices"
        } else {
            "all conditions hold"
        }
    )
}

fn describe_clearing(clearing: &Clearing, plan_version: i64) -> String {
    let since = match clearing.measured_from {
        "last_settled_sale" => "the last settled sale",
        "reinstated" => "the last reinstatement",
        _ => "creation, with no settled sale since",
    };
    format!(
        "cleared under plan v{plan_version}: no settled sale for {} days since {since} ({}); earns nothing new, keeps its balances",
        clearing.inactive_days,
        clearing.inactive_since.to_rfc3339()
    )
}
