//! The audit log's SQL (SPEC §2.10), shared by both backends. Rows are only
//! ever inserted, inside the transaction of the action they record.

use chrono::{DateTime, Utc};
use sqlx::{Row, Transaction};

use super::Repo;
use super::dialect::Db;
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{Actor, AuditEntry};
use crate::store::time::DbTime;

/// Appends `entry` inside the transaction of the action it records, so the
/// action and its entry commit or vanish together.
async fn insert_audit(
    tx: &mut Transaction<'static, Db>,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(concat!(
        "insert into audit_log (at, actor, actor_role, action, target, before, after) ",
        "values ($1, $2, $3, $4, $5, $6, $7) returning id"
    ))
    .bind(DbTime(entry.at))
    .bind(&entry.actor)
    .bind(&entry.actor_role)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(entry.before.as_ref().map(ToString::to_string))
    .bind(entry.after.as_ref().map(ToString::to_string))
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Appends the entry of `actor`'s `action` on `target` inside the action's
/// own transaction.
pub(super) async fn audit_in(
    tx: &mut Transaction<'static, Db>,
    actor: &Actor,
    at: DateTime<Utc>,
    action: &str,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    insert_audit(
        tx,
        &AuditEntry {
            at,
            actor: actor.id.clone(),
            actor_role: actor.role.clone(),
            action: action.to_owned(),
            target,
            before,
            after,
        },
    )
    .await?;
    Ok(())
}

/// The entry of a job retry or cancel that changed the job's status.
pub(super) async fn audit_job_action(
    tx: &mut Transaction<'static, Db>,
    actor: &Actor,
    at: DateTime<Utc>,
    action: &str,
    id: &str,
    before: &str,
    after: &str,
) -> Result<(), StoreError> {
    if before == after {
        return Ok(());
    }
    audit_in(
        tx,
        actor,
        at,
        action,
        format!("job:{id}"),
        Some(serde_json::json!({"status": before})),
        Some(serde_json::json!({"status": after})),
    )
    .await
}

impl Repo {
    /// Appends one entry on its own, for an action whose change committed
    /// elsewhere; returns its id.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Entries newest first, before id `before` (keyset), optionally about one target.
    pub async fn audit_entries(
        &self,
        before: Option<i64>,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let rows = sqlx::query(concat!(
            "select id, at, actor, actor_role, action, target, before, after from audit_log ",
            "where ($1 is null or id < $1) and ($2 is null or target = $2) order by id desc limit $3"
        ))
        .bind(before)
        .bind(target)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
                    row.try_get::<Option<String>, _>(column)?
                        .map(|text| {
                            serde_json::from_str(&text)
                                .map_err(|error| StoreError::Corrupt(error.to_string()))
                        })
                        .transpose()
                };
                Ok((
                    row.try_get("id")?,
                    AuditEntry {
                        at: row.try_get::<DbTime, _>("at")?.0,
                        actor: row.try_get("actor")?,
                        actor_role: row.try_get("actor_role")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        before: json("before")?,
                        after: json("after")?,
                    },
                ))
            })
            .collect()
    }
}
