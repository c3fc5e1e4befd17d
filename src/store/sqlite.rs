//! The SQLite backend: one file, WAL, `synchronous=FULL` on every connection,
//! `BEGIN IMMEDIATE` for every write so writers queue on the busy timeout
//! instead of failing on a lock upgrade.
//!
//! apalis-sqlite's own `setup()` sets `synchronous=OFF` on one pooled
//! connection, so we never call it: its migrations run on a throwaway
//! connection, then the planner hint of ../shared/reference/apalis.md is
//! written, and only then is the real pool opened — every connection of it
//! reads the hint and gets FULL from the connect options.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite as Db, Transaction};

use crate::store::StoreOptions;

type Conn = sqlx::SqliteConnection;

/// SQLite has no row locks; `BEGIN IMMEDIATE` takes the write lock up front.
macro_rules! for_update {
    () => {
        ""
    };
}

/// apalis-sqlite 1.0.0's batched ack (`queries/task/ack.sql`), kept verbatim
/// so start-up can ask the planner how it would run it.
const APALIS_ACK_SQL: &str = "WITH j AS (SELECT value ->> 'task_id' AS task_id, value ->> 'attempt' AS attempt, \
     value ->> 'result' AS result, value ->> 'status' AS status FROM json_each(?1)) \
     UPDATE Jobs SET status = j.status, attempts = j.attempt, last_result = j.result, \
     done_at = strftime('%s', 'now') FROM j WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2";

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
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Repo, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
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
                .connect_with(connect)
                .await?;
            migrate(&pool).await?;
            return Ok(Repo { pool });
        }
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await?;
        migrate(&setup).await?;
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

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    apalis_sqlite::SqliteStorage::<()>::migrations()
        .run(pool)
        .await?;
    let mut ours = sqlx::migrate!("./migrations/sqlite");
    ours.dangerous_set_table_name(crate::store::MIGRATIONS_TABLE);
    ours.run(pool).await?;
    // `ANALYZE sqlite_schema` creates sqlite_stat1 if it is missing, without
    // measuring any table (a real ANALYZE on a small table would undo the hint).
    sqlx::query("analyze sqlite_schema").execute(pool).await?;
    let mut tx = pool.begin().await?;
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

/// SQLite has no row locks: `BEGIN IMMEDIATE` already holds the write lock.
async fn lock_accounts<'a>(
    _conn: &mut Conn,
    _accounts: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    Ok(())
}

/// SQLite has no row locks: `BEGIN IMMEDIATE` already holds the write lock.
macro_rules! skip_locked {
    () => {
        ""
    };
}

/// Enqueues the release step for each release time, on the caller's
/// transaction; apalis-sqlite skips a key it already has.
async fn push_release_jobs(
    conn: &mut Conn,
    spec: &crate::store::JobSpec,
    release_times: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    let tasks: Vec<apalis_sqlite::SqliteTask> = release_times
        .iter()
        .map(|release_at| crate::store::release_task(spec, *release_at))
        .collect::<Result<_, _>>()?;
    if !tasks.is_empty() {
        apalis_sqlite::queries::push_tasks(conn, &spec.queue, &tasks)
            .await
            .map_err(|error| StoreError::Corrupt(format!("pushing release jobs: {error}")))?;
    }
    Ok(())
}

/// Most rows one multi-row statement carries: well under SQLite's limit of
/// 32,766 bound parameters, and small enough that parsing stays cheap.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts transfers, skipping keys already present; returns (id, key) of the new ones.
async fn insert_transfers(
    conn: &mut Conn,
    transfers: &[Transfer],
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut insert = QueryBuilder::<Db>::new(
        "insert into ledger_transfers (idempotency_key, kind, body_sha256, created_at) ",
    );
    insert.push_values(transfers, |mut row, transfer| {
        row.push_bind(transfer.key())
            .push_bind(transfer.kind().as_str())
            .push_bind(transfer.fingerprint())
            .push_bind(now);
    });
    insert.push(" on conflict (idempotency_key) do nothing returning id, idempotency_key");
    Ok(insert.build_query_as().fetch_all(&mut *conn).await?)
}

/// Adds each change to its account where the floor allows; returns the rows updated.
async fn update_balances(
    conn: &mut Conn,
    changes: &[(&String, &(i64, bool))],
) -> Result<u64, StoreError> {
    let mut update = QueryBuilder::<Db>::new(
        "update ledger_accounts set balance_fen = balance_fen + v.change from (",
    );
    for (index, (account, (change, overdraft))) in changes.iter().enumerate() {
        update.push(if index == 0 {
            "select "
        } else {
            " union all select "
        });
        update.push_bind(account.as_str()).push(" as account_id, ");
        update.push_bind(*change).push(" as change, ");
        update.push_bind(*overdraft).push(" as overdraft");
    }
    update.push(concat!(
        ") v where ledger_accounts.id = v.account_id ",
        "and (ledger_accounts.balance_fen + v.change >= 0 ",
        "or (v.overdraft and ledger_accounts.may_go_negative))"
    ));
    Ok(update.build().execute(&mut *conn).await?.rows_affected())
}

async fn insert_postings(
    conn: &mut Conn,
    postings: &[(i64, &Posting)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = QueryBuilder::<Db>::new(
        "insert into ledger_postings (transfer_id, account_id, amount_fen, created_at) ",
    );
    insert.push_values(postings, |mut row, (transfer_id, posting)| {
        row.push_bind(*transfer_id)
            .push_bind(posting.account.to_string())
            .push_bind(posting.amount.fen())
            .push_bind(now);
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

include!("queries.rs");
include!("queries_orders.rs");
include!("queries_credentials.rs");
