//! The ops console's job actions and rows, shared by both backends: the
//! dialect supplies `JOB_STATUS_SQL` (locking the row where the dialect
//! needs it), `RETRY_JOB_SQL` and `CANCEL_JOB_SQL` ($1 the job id, $2 for a
//! cancel the stored result); the jobs query itself is each backend's own.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use super::audit::audit_job_action;
use super::dialect::{CANCEL_JOB_SQL, DbRow, JOB_STATUS_SQL, RETRY_JOB_SQL};
use crate::store::OpsJob;
use crate::store::error::StoreError;
use crate::store::records::Actor;

/// What a cancelled job's result says.
const CANCELLED_BY_OPS: &str = r#"{"Err":"cancelled by ops"}"#;

/// One row of the dialect's ops jobs query.
pub(super) fn ops_job_from_row(row: &DbRow) -> Result<OpsJob, StoreError> {
    Ok(OpsJob {
        id: row.try_get("id")?,
        queue: row.try_get("job_type")?,
        state: row.try_get("state")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: row.try_get("run_at")?,
        lock_at: row.try_get("lock_at")?,
        lock_by: row.try_get("lock_by")?,
        done_at: row.try_get("done_at")?,
        worker_last_seen: row.try_get("last_seen")?,
        last_result: row.try_get("last_result")?,
        payload: row.try_get("payload")?,
    })
}

impl Repo {
    /// Puts a failed or killed job back to run now (on the database's clock,
    /// which apalis compares with), with one more attempt; any other job is
    /// left as it is. Returns its status before and after, if it exists.
    pub async fn retry_job(
        &self,
        id: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.change_job_status(id, RETRY_JOB_SQL, None, actor, at, "job.retry")
            .await
    }

    /// Stops a job that has not started (pending) or has failed; a running
    /// or finished one is left as it is. Returns its status before and after.
    pub async fn cancel_job(
        &self,
        id: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.change_job_status(
            id,
            CANCEL_JOB_SQL,
            Some(CANCELLED_BY_OPS),
            actor,
            at,
            "job.cancel",
        )
        .await
    }

    /// One write transaction: the status before, the guarded update, the
    /// status after, and the audit entry when it changed.
    async fn change_job_status(
        &self,
        id: &str,
        update_sql: &'static str,
        result: Option<&str>,
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let mut tx = self.begin_write().await?;
        let before: Option<String> = sqlx::query_scalar(JOB_STATUS_SQL)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else {
            return Ok(None);
        };
        let mut update = sqlx::query(update_sql).bind(id);
        if let Some(result) = result {
            update = update.bind(result);
        }
        update.execute(&mut *tx).await?;
        let after: String = sqlx::query_scalar(JOB_STATUS_SQL)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        audit_job_action(&mut tx, actor, at, action, id, &before, &after).await?;
        tx.commit().await?;
        Ok(Some((before, after)))
    }
}
