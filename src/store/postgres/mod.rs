//! The PostgreSQL backend: a pool, apalis's migrations (they need the
//! `hstore` extension), ours, and row locks where a step reads what it writes.
//!
//! The SQL both backends share lives in `../sql/`, mounted below as modules
//! compiled against this backend's [`dialect`]; what is here is PostgreSQL's
//! alone: connecting, migrations and apalis's tables.

use sqlx::Transaction;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::store::error::StoreError;
use crate::store::{JobFilter, MIGRATIONS_TABLE, OpsJob, StoreOptions};
use dialect::Db;
use jobs::ops_job_from_row;

// Each shared file is compiled once per backend, on purpose: that is how
// one SQL source gets each backend's concrete types (see `dialect`).
#[allow(clippy::duplicate_mod)]
#[path = "../sql/audit.rs"]
mod audit;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/calendar.rs"]
mod calendar;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/certificates.rs"]
mod certificates;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/credentials.rs"]
mod credentials;
mod dialect;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/distributors.rs"]
mod distributors;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/jobs.rs"]
mod jobs;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/ledger.rs"]
mod ledger;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/month_close.rs"]
mod month_close;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/order_void.rs"]
mod order_void;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/orders.rs"]
mod orders;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/portal_links.rs"]
mod portal_links;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/reconciliation.rs"]
mod reconciliation;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/sessions.rs"]
mod sessions;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/totals.rs"]
mod totals;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/webhooks.rs"]
mod webhooks;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/withdrawals.rs"]
mod withdrawals;

pub struct Repo {
    pool: PgPool,
}

impl Repo {
    /// Jobs for the ops console, by id, filtered by queue
    /// and state (as [`Self::queue_stats`] names states), after an id (keyset).
    pub async fn ops_jobs(&self, filter: &JobFilter) -> Result<Vec<OpsJob>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from (select j.id, j.job_type, j.status, j.attempts, j.max_attempts, cast(extract(epoch from j.run_at) as bigint) as run_at, cast(extract(epoch from j.lock_at) as bigint) as lock_at, j.lock_by, ",
            "cast(extract(epoch from j.done_at) as bigint) as done_at, cast(j.last_result as text) as last_result, convert_from(j.job, 'UTF8') as payload, cast(extract(epoch from w.last_seen) as bigint) as last_seen, ",
            "case when j.status = 'Pending' and j.run_at > to_timestamp($1) then 'scheduled' ",
            "when j.status = 'Pending' and j.attempts > 0 then 'retrying' when j.status = 'Pending' then 'waiting' ",
            "when j.status in ('Queued', 'Running') then 'running' when j.status in ('Failed', 'Killed') then 'failed' ",
            "when j.status = 'Done' then 'done' else lower(j.status) end as state ",
            "from apalis.jobs j left join apalis.workers w on w.id = j.lock_by) t ",
            "where ($2::text is null or state = $2) and ($3::text is null or job_type = $3) and ($4::text is null or id > $4) ",
            "order by id limit $5"
        ))
        .bind(filter.now_secs)
        .bind(filter.state.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.after.as_deref())
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ops_job_from_row).collect()
    }

    /// Jobs finished in the last hour, per queue (the console's throughput).
    /// apalis stamps `done_at` with the database's clock, so the hour is too.
    pub async fn done_last_hour(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as("select job_type, count(*) from apalis.jobs where status = 'Done' and done_at >= now() - interval '1 hour' group by 1 order by 1")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Jobs per queue and state (waiting, scheduled, retrying, running,
    /// failed, done) with the oldest `run_at` (unix seconds) of each group.
    pub async fn queue_stats(
        &self,
        now_secs: i64,
    ) -> Result<Vec<(String, String, i64, Option<i64>)>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "select job_type, case when status = 'Pending' and run_at > to_timestamp($1) then 'scheduled' ",
            "when status = 'Pending' and attempts > 0 then 'retrying' when status = 'Pending' then 'waiting' ",
            "when status in ('Queued', 'Running') then 'running' when status in ('Failed', 'Killed') then 'failed' ",
            "when status = 'Done' then 'done' else lower(status) end as state, count(*), ",
            "cast(extract(epoch from min(run_at)) as bigint) from apalis.jobs group by 1, 2 order by 1, 2"
        ))
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Repo, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .connect(url)
            .await?;
        apalis_postgres::PostgresStorage::<()>::migrations()
            .run(&pool)
            .await?;
        let mut ours = sqlx::migrate!("./migrations/postgres");
        ours.dangerous_set_table_name(MIGRATIONS_TABLE);
        ours.run(&pool).await?;
        Ok(Repo { pool })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        self.pool.begin().await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
