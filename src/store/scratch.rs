//! What the benchmarks need of a database and nothing else does: a
//! PostgreSQL database made for one run, and a backlog of no-op jobs with
//! their counts. Kept off the [`Store`] facade so the service's own calls
//! are all that `impl Store` shows.

use apalis_core::task::builder::TaskBuilder;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{Backend, Store, StoreError};

/// How many no-op jobs one transaction pushes: the backlog is built in
/// bounded steps instead of one transaction of any size.
const NOOP_JOBS_PER_TRANSACTION: usize = 1_000;

/// How often apalis may try a no-op job.
const NOOP_JOB_MAX_ATTEMPTS: usize = 3;

/// A name fit to splice into `create database`: it cannot be bound.
fn is_plain_database_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A bad argument to a scratch call, reported as the database would report
/// a bad configuration.
fn configuration_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(message.into()))
}

/// A PostgreSQL database made for one run (a benchmark), dropped by
/// [`drop_scratch_database`]; answers its URL.
pub async fn create_scratch_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    if !is_plain_database_name(name) {
        return Err(configuration_error(format!(
            "scratch database name {name:?}"
        )));
    }
    let mut conn = PgConnection::connect(server_url).await?;
    sqlx::query(AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, _) = server_url
        .rsplit_once('/')
        .ok_or_else(|| configuration_error("a PostgreSQL URL ends with /database".to_owned()))?;
    Ok(format!("{base}/{name}"))
}

pub async fn drop_scratch_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect(server_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// Jobs of one apalis queue by status.
pub async fn queue_counts(store: &Store, queue: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(match &store.backend {
        Backend::Sqlite(repo) => {
            sqlx::query_as(
                "select status, count(*) from Jobs where job_type = $1 group by status order by status",
            )
            .bind(queue)
            .fetch_all(repo.pool())
            .await?
        }
        Backend::Postgres(repo) => {
            sqlx::query_as(
                "select status, count(*) from apalis.jobs where job_type = $1 group by status order by status",
            )
            .bind(queue)
            .fetch_all(repo.pool())
            .await?
        }
    })
}

/// Pushes `count` no-op jobs onto `queue` (the queue benchmark's backlog).
pub async fn push_noop_jobs(store: &Store, queue: &str, count: usize) -> Result<(), StoreError> {
    let payload =
        serde_json::to_vec(&json!({})).map_err(|error| StoreError::Queue(error.to_string()))?;
    let mut left = count;
    while left > 0 {
        let take = left.min(NOOP_JOBS_PER_TRANSACTION);
        let tasks: Vec<_> = (0..take)
            .map(|_| {
                TaskBuilder::new(payload.clone())
                    .max_attempts(NOOP_JOB_MAX_ATTEMPTS)
                    .build()
            })
            .collect();
        match &store.backend {
            Backend::Sqlite(repo) => {
                let mut tx = repo.pool().begin().await?;
                apalis_sqlite::queries::push_tasks(&mut *tx, queue, &tasks)
                    .await
                    .map_err(|error| StoreError::Queue(error.to_string()))?;
                tx.commit().await?;
            }
            Backend::Postgres(repo) => {
                let mut tx = repo.pool().begin().await?;
                apalis_postgres::queries::push_tasks(&mut *tx, queue, tasks)
                    .await
                    .map_err(|error| StoreError::Queue(error.to_string()))?;
                tx.commit().await?;
            }
        }
        left -= take;
    }
    Ok(())
}

/// Rows per statement when cloning withdrawals: three binds a row, well
/// under either database's limit.
const CLONES_PER_STATEMENT: usize = 1_000;

/// Clones the withdrawal `template` `count` times as paid at `paid_at`,
/// each with a fresh id (`wd` + 30 digits from `first_number`) and the bill
/// number equal to it: a day of payouts for the reconciliation benchmark
/// and its 10,000-payout test, without paying each through the gateway.
/// Only rows: no ledger transfer, so `ledger verify` of such a database
/// does not balance. Returns the ids (= bill numbers) in order.
pub async fn clone_paid_withdrawals(
    store: &Store,
    template: &str,
    first_number: u64,
    count: usize,
    paid_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, StoreError> {
    use crate::store::time::DbTime;
    let ids: Vec<String> = (0..count as u64)
        .map(|n| format!("wd{:030}", first_number + n))
        .collect();
    for chunk in ids.chunks(CLONES_PER_STATEMENT) {
        macro_rules! clone_statement {
            ($db:ty) => {{
                let mut insert = sqlx::QueryBuilder::<$db>::new("with clones (id, idempotency_key) as (");
                insert.push_values(chunk, |mut row, id| {
                    row.push_bind(id.as_str()).push_bind(format!("seed-{id}"));
                });
                insert.push(concat!(
                    ") insert into withdrawals (id, distributor_id, payout_account_id, channel, speed, ",
                    "state, gross_fen, tax_fen, fee_fen, net_fen, tax_method, tax_month, local_day, ",
                    "withholding, risk_flags, out_bill_no, idempotency_key, request_sha256, ",
                    "transfer_attempts, requested_at, updated_at, finished_at) ",
                    "select clones.id, w.distributor_id, w.payout_account_id, w.channel, w.speed, ",
                    "'paid', w.gross_fen, w.tax_fen, w.fee_fen, w.net_fen, w.tax_method, w.tax_month, ",
                    "w.local_day, w.withholding, w.risk_flags, clones.id, clones.idempotency_key, ",
                    "w.request_sha256, 1, w.requested_at, "
                ));
                insert.push_bind(DbTime(paid_at)).push(", ").push_bind(DbTime(paid_at));
                insert
                    .push(" from withdrawals w cross join clones where w.id = ")
                    .push_bind(template);
                insert
            }};
        }
        match &store.backend {
            Backend::Sqlite(repo) => {
                let mut insert = clone_statement!(sqlx::Sqlite);
                insert.build().execute(repo.pool()).await?;
            }
            Backend::Postgres(repo) => {
                let mut insert = clone_statement!(sqlx::Postgres);
                insert.build().execute(repo.pool()).await?;
            }
        }
    }
    Ok(ids)
}
