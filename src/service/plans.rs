//! Applying commission plans and finding the one in force: the domain parses
//! and validates, the store keeps every version.

use chrono::{DateTime, Utc};

use crate::domain::digest::sha256_hex;
use crate::domain::plan::{Plan, PlanError};
use crate::store::{NewPlan, Store, StoreError, StoredPlan};

#[derive(Debug, thiserror::Error)]
pub enum ApplyPlanError {
    #[error(transparent)]
    Invalid(#[from] PlanError),
    /// A plan may not take effect before it is applied: orders already
    /// confirmed keep the version they were computed with.
    #[error(
        "effective_from {effective_from} is before now ({now}); a plan cannot take effect in the past"
    )]
    EffectiveInPast {
        effective_from: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses, validates and stores a plan as a new version.
pub async fn apply(
    store: &Store,
    source_toml: &str,
    file_name: &str,
    applied_by: &crate::service::audit::Actor,
    now: DateTime<Utc>,
) -> Result<StoredPlan, ApplyPlanError> {
    let plan = Plan::parse(source_toml, file_name)?;
    let effective_from = plan.effective_from().unwrap_or(now);
    if effective_from < now {
        return Err(ApplyPlanError::EffectiveInPast {
            effective_from,
            now,
        });
    }
    let source_sha256 = sha256_hex(source_toml.as_bytes());
    let new = NewPlan {
        name: plan.name(),
        effective_from,
        source_toml,
        source_sha256: &source_sha256,
        file_name,
    };
    Ok(store.insert_plan(&new, applied_by, now).await?)
}

/// Installs the shipped default plan on a database that has none.
pub async fn ensure_default(store: &Store, now: DateTime<Utc>) -> Result<(), ApplyPlanError> {
    let plan = Plan::shipped_default()?;
    let text = plan.source_text();
    store
        .ensure_default_plan(plan.name(), text, &sha256_hex(text.as_bytes()), now)
        .await?;
    Ok(())
}

/// The plan in force at `at`, parsed, with its version.
pub async fn in_force(store: &Store, at: DateTime<Utc>) -> Result<(i64, Plan), ApplyPlanError> {
    let stored = store.plan_in_force(at).await?.ok_or_else(|| {
        StoreError::Corrupt(
            "no commission plan is in force; the default plan is missing".to_owned(),
        )
    })?;
    let plan = Plan::parse(
        &stored.source_toml,
        &format!("plan version {}", stored.version),
    )?;
    Ok((stored.version, plan))
}
