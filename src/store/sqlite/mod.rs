//! The SQLite backend: one file, WAL, `synchronous=FULL` on every connection,
//! `BEGIN IMMEDIATE` for every write so writers queue on the busy timeout
//! instead of failing on a lock upgrade.
//!
//! apalis-sqlite's own `setup()` sets `synchronous=OFF` on one pooled
//! connection, so we never call it: its migrations run on a throwaway
//! connection, then the planner hint of ../shared/reference/apalis.md is
//! written, and only then is the real pool opened — every connection of it
//! reads the hint and gets FULL from the connect options.
//!
//! The SQL both backends share lives in `../sql/`, mounted below as modules
//! compiled against this backend's [`dialect`]; what is here is SQLite's
//! alone: connecting, migrations, the start-up checks and apalis's tables.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Transaction;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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

/// apalis-sqlite 1.0.0's batched ack (`queries/task/ack.sql`), kept verbatim
/// so start-up can ask the planner how it would run it.
const APALIS_ACK_SQL: &str = "WITH j AS (SELECT value ->> 'task_id' AS task_id, value ->> 'attempt' AS attempt, \
     value ->> 'result' AS result, value ->> 'status' AS status FROM json_each(?1)) \
     UPDATE Jobs SET status = j.status, attempts = j.attempt, last_result = j.result, \
     done_at = cast(strftime('%s', 'now') as integer) FROM j WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2";

/// Statistics telling SQLite that apalis's `lock_by` and `status` indexes are
/// unselective, so the ack and lock queries drive from the id list instead of
/// scanning every job a worker ever ran (apalis.md, addendum).
const PLANNER_HINT: [(&str, &str); 3] = [
    ("LIdx", "1000000 1000000"),
    ("idx_jobs_status_run_at", "1000000 300000 1"),
    ("idx_jobs_claimable", "1000000 300000 1"),
];

pub struct Repo {
    pool: SqlitePool,
}

impl Repo {
    /// Jobs for the ops console, by id, filtered by queue
    /// and state (as [`Self::queue_stats`] names states), after an id (keyset).
    pub async fn ops_jobs(&self, filter: &JobFilter) -> Result<Vec<OpsJob>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from (select j.id, j.job_type, j.status, j.attempts, j.max_attempts, j.run_at, j.lock_at, j.lock_by, ",
            "j.done_at, cast(j.last_result as text) as last_result, cast(j.job as text) as payload, w.last_seen, ",
            "case when j.status = 'Pending' and j.run_at > $1 then 'scheduled' ",
            "when j.status = 'Pending' and j.attempts > 0 then 'retrying' when j.status = 'Pending' then 'waiting' ",
            "when j.status in ('Queued', 'Running') then 'running' when j.status in ('Failed', 'Killed') then 'failed' ",
            "when j.status = 'Done' then 'done' else lower(j.status) end as state ",
            "from Jobs j left join Workers w on w.id = j.lock_by) ",
            "where ($2 is null or state = $2) and ($3 is null or job_type = $3) and ($4 is null or id > $4) ",
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
        Ok(sqlx::query_as("select job_type, count(*) from Jobs where status = 'Done' and done_at >= cast(strftime('%s', 'now') as integer) - 3600 group by 1 order by 1")
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
            "select job_type, case when status = 'Pending' and run_at > $1 then 'scheduled' ",
            "when status = 'Pending' and attempts > 0 then 'retrying' when status = 'Pending' then 'waiting' ",
            "when status in ('Queued', 'Running') then 'running' when status in ('Failed', 'Killed') then 'failed' ",
            "when status = 'Done' then 'done' else lower(status) end as state, count(*), min(run_at) ",
            "from Jobs group by 1, 2 order by 1, 2"
        ))
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Repo, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(options.sqlite_busy_timeout_ms));
        if in_memory {
            // Each connection to :memory: is its own database: keep exactly one, forever.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(connect.journal_mode(SqliteJournalMode::Memory))
                .await?;
            migrate(&pool).await?;
            return Ok(Repo { pool });
        }
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await?;
        // WAL is a property of the file, kept once set: set it only when it
        // is not, because `PRAGMA journal_mode = WAL` on every new connection
        // can fail at once with "database is locked" while another process
        // (the service, beside a command) is writing.
        let mode: String = sqlx::query_scalar("pragma journal_mode")
            .fetch_one(&setup)
            .await?;
        if !mode.eq_ignore_ascii_case("wal") {
            sqlx::query("pragma journal_mode = wal")
                .execute(&setup)
                .await?;
        }
        migrate_beside_writers(&setup, options.sqlite_busy_timeout_ms).await?;
        setup.close().await;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .connect_with(connect)
            .await?;
        let repo = Repo { pool };
        repo.check_durability().await?;
        repo.check_ack_plan().await?;
        Ok(repo)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Every pooled connection must run at synchronous=FULL (2).
    async fn check_durability(&self) -> Result<(), StoreError> {
        let level: i64 = sqlx::query_scalar("pragma synchronous")
            .fetch_one(&self.pool)
            .await?;
        if level != 2 {
            return Err(StoreError::UnsafePlan(format!(
                "SQLite synchronous is {level}, expected 2 (FULL)"
            )));
        }
        Ok(())
    }

    /// Refuses to start if apalis's ack would be planned through `LIdx`
    /// (the quadratic slowdown of apalis.md).
    async fn check_ack_plan(&self) -> Result<(), StoreError> {
        let plan = ack_plan(&self.pool).await?;
        if plan.contains("LIdx") {
            return Err(StoreError::UnsafePlan(format!(
                "apalis ack would scan by lock_by: {plan}"
            )));
        }
        Ok(())
    }
}

/// The planner's description of apalis's ack query, one detail per line.
pub async fn ack_plan(pool: &SqlitePool) -> Result<String, StoreError> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "explain query plan {APALIS_ACK_SQL}"
    )))
    .bind("[]")
    .bind("worker")
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect::<Vec<_>>()
        .join("; "))
}

/// [`migrate`] while other processes may be writing (a `fenrun calendar
/// apply` beside a running service): a statement that read before it wrote
/// can get SQLITE_BUSY at once, without the busy timeout's wait, when
/// another writer committed in between. Every step is idempotent, so the
/// whole is tried again until the busy timeout has passed.
async fn migrate_beside_writers(pool: &SqlitePool, busy_timeout_ms: u64) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_millis(busy_timeout_ms);
    loop {
        match migrate(pool).await {
            Err(error) if error.is_retryable() && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %error, "database busy while checking migrations; trying again");
                tokio::time::sleep(MIGRATE_RETRY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// Whether sqlite_stat1 holds exactly [`PLANNER_HINT`] for apalis's table.
async fn planner_hint_in_place(pool: &SqlitePool) -> Result<bool, StoreError> {
    let exists: i64 = sqlx::query_scalar(
        "select count(*) from sqlite_schema where type = 'table' and name = 'sqlite_stat1'",
    )
    .fetch_one(pool)
    .await?;
    if exists == 0 {
        return Ok(false);
    }
    let mut stored: Vec<(String, String)> =
        sqlx::query_as("select idx, stat from sqlite_stat1 where tbl = 'Jobs'")
            .fetch_all(pool)
            .await?;
    stored.sort();
    let mut wanted: Vec<(String, String)> = PLANNER_HINT
        .iter()
        .map(|(index, stat)| ((*index).to_owned(), (*stat).to_owned()))
        .collect();
    wanted.sort();
    Ok(stored == wanted)
}

/// The pause before [`migrate_beside_writers`] tries again.
const MIGRATE_RETRY_PAUSE: Duration = Duration::from_millis(20);

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    apalis_sqlite::SqliteStorage::<()>::migrations()
        .run(pool)
        .await?;
    let mut ours = sqlx::migrate!("./migrations/sqlite");
    ours.dangerous_set_table_name(MIGRATIONS_TABLE);
    ours.run(pool).await?;
    if planner_hint_in_place(pool).await? {
        // Nothing to write: a process opening a database that others use
        // (a command beside the service) takes no write lock here.
        return Ok(());
    }
    // `ANALYZE sqlite_schema` creates sqlite_stat1 if it is missing, without
    // measuring any table (a real ANALYZE on a small table would undo the hint).
    sqlx::query("analyze sqlite_schema").execute(pool).await?;
    // IMMEDIATE: take the write lock first (waiting the busy timeout), not
    // after reading, when a writer in between would refuse it at once.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for (index, _) in PLANNER_HINT {
        sqlx::query("delete from sqlite_stat1 where tbl = 'Jobs' and idx = $1")
            .bind(index)
            .execute(&mut *tx)
            .await?;
    }
    for (index, stat) in PLANNER_HINT {
        sqlx::query("insert into sqlite_stat1 (tbl, idx, stat) values ('Jobs', $1, $2)")
            .bind(index)
            .bind(stat)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // This connection loaded the schema before the hint existed.
    sqlx::query("analyze sqlite_schema").execute(pool).await?;
    Ok(())
}
