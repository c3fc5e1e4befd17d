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

/// The ops job actions' SQL on apalis-sqlite's tables (see `queries_jobs.rs`);
/// `BEGIN IMMEDIATE` already holds the write lock, so no row lock.
const JOB_STATUS_SQL: &str = "select status from Jobs where id = $1";
const RETRY_JOB_SQL: &str = concat!(
    "update Jobs set status = 'Pending', run_at = cast(strftime('%s', 'now') as integer), lock_by = null, lock_at = null, ",
    "done_at = null, max_attempts = attempts + 1 where id = $1 and status in ('Failed', 'Killed')"
);
const CANCEL_JOB_SQL: &str = concat!(
    "update Jobs set status = 'Killed', done_at = cast(strftime('%s', 'now') as integer), last_result = $2 ",
    "where id = $1 and status in ('Pending', 'Failed')"
);

impl Repo {
    /// Jobs for the ops console, by id, filtered by queue
    /// and state (as [`Self::queue_stats`] names states), after an id (keyset).
    pub async fn ops_jobs(
        &self,
        filter: &crate::store::JobFilter,
    ) -> Result<Vec<crate::store::OpsJob>, StoreError> {
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

/// The balances of `accounts`, which the write lock of `BEGIN IMMEDIATE`
/// already holds still.
async fn lock_balances<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let mut select =
        QueryBuilder::<Db>::new("select id, balance_fen from ledger_accounts where id in (");
    let mut ids = select.separated(", ");
    for account in accounts {
        ids.push_bind(account);
    }
    select.push(")");
    let rows: Vec<(String, i64)> = select.build_query_as().fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
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
            .map_err(|error| queue_error("pushing release jobs", error))?;
    }
    Ok(())
}

/// A failed push: the database's own errors stay database errors (a busy
/// database is worth another try); apalis's others are the queue's.
fn queue_error(doing: &str, error: apalis_sqlite::Error) -> StoreError {
    match error {
        apalis_sqlite::Error::Database(database) => StoreError::Database(database),
        other => StoreError::Queue(format!("{doing}: {other}")),
    }
}

/// Enqueues one job on the caller's transaction; apalis-sqlite skips a key it already has.
async fn push_job(
    conn: &mut Conn,
    queue: &str,
    task: apalis_sqlite::SqliteTask,
) -> Result<(), StoreError> {
    apalis_sqlite::queries::push_tasks(conn, queue, &[task])
        .await
        .map_err(|error| queue_error(&format!("pushing a {queue} job"), error))
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
            .push_bind(DbTime(now));
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
            .push_bind(DbTime(now));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

include!("../sql/ledger.rs");
include!("../sql/orders.rs");

// ---- Bulk statements of the order workflow: multi-row VALUES, which SQLite
// parses in-process at little cost. Shared logic in `queries_orders.rs`.

async fn insert_order_rows(
    conn: &mut Conn,
    orders: &[PreparedOrder],
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut insert = QueryBuilder::<Db>::new(concat!(
        "insert into orders (order_id, distributor_id, buyer_id, placed_at, confirmed_at, ",
        "total_fen, chain, plan_version, state, release_at, request_sha256, created_at, updated_at) "
    ));
    insert.push_values(orders, |mut row, order| {
        row.push_bind(order.order_id.as_str())
            .push_bind(order.distributor_id.as_str())
            .push_bind(order.buyer_id.as_str())
            .push_bind(DbTime(order.placed_at))
            .push_bind(DbTime(order.confirmed_at))
            .push_bind(order.total.fen())
            .push_bind(order.chain_json.as_str())
            .push_bind(order.plan_version)
            .push_bind(OrderState::Holding.as_str())
            .push_bind(DbTime(order.release_at))
            .push_bind(order.request_sha256.as_str())
            .push_bind(DbTime(now))
            .push_bind(DbTime(now));
    });
    insert.push(" on conflict (order_id) do nothing returning order_id");
    Ok(insert.build_query_scalar().fetch_all(&mut *conn).await?)
}

async fn insert_item_rows(
    conn: &mut Conn,
    items: &[(&PreparedOrder, usize, &crate::domain::commission::OrderItem)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = QueryBuilder::<Db>::new(
        "insert into order_items (order_id, line_no, sku, category, amount_fen, created_at) ",
    );
    insert.push_values(items, |mut row, (order, line_no, item)| {
        row.push_bind(order.order_id.as_str())
            .push_bind(*line_no as i64)
            .push_bind(item.sku.as_str())
            .push_bind(item.category.as_str())
            .push_bind(item.amount.fen())
            .push_bind(DbTime(now));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

async fn insert_line_rows(
    conn: &mut Conn,
    lines: &[(&PreparedOrder, &crate::domain::commission::CommissionLine)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = QueryBuilder::<Db>::new(concat!(
        "insert into commission_lines (order_id, beneficiary_id, level, rate, base_fen, amount_fen, ",
        "plan_version, state, created_at, updated_at) "
    ));
    insert.push_values(lines, |mut row, (order, line)| {
        row.push_bind(order.order_id.as_str())
            .push_bind(line.beneficiary.as_str())
            .push_bind(i64::from(line.level))
            .push_bind(rate_to_db(line.rate))
            .push_bind(line.base.fen())
            .push_bind(line.amount.fen())
            .push_bind(order.plan_version)
            .push_bind(LineState::Pending.as_str())
            .push_bind(DbTime(now))
            .push_bind(DbTime(now));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

async fn insert_event_rows(
    conn: &mut Conn,
    events: &[NewEvent<'_>],
    at: DateTime<Utc>,
    wall_clock: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = QueryBuilder::<Db>::new(
        "insert into order_events (order_id, step, outcome, attempt, detail, at, created_at) ",
    );
    insert.push_values(events, |mut row, event| {
        row.push_bind(event.order_id)
            .push_bind(event.step)
            .push_bind(event.outcome)
            .push_bind(event.attempt)
            .push_bind(event.detail.as_str())
            .push_bind(DbTime(at))
            .push_bind(DbTime(wall_clock));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// The pending, non-zero lines of `order_ids`, by order then level.
async fn pending_lines_of(
    conn: &mut Conn,
    order_ids: &[String],
) -> Result<Vec<LineRecord>, StoreError> {
    let mut lines = Vec::new();
    for chunk in order_ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Db>::new(format!(
            "select {LINE_COLUMNS} from commission_lines where state = 'pending' and amount_fen > 0 and order_id in ("
        ));
        let mut ids = select.separated(", ");
        for id in chunk {
            ids.push_bind(id.as_str());
        }
        select.push(") order by order_id, level, id");
        for row in select.build().fetch_all(&mut *conn).await? {
            lines.push(line_from_row(&row)?);
        }
    }
    Ok(lines)
}

/// Holding orders → released, and their pending lines with them.
async fn mark_released(
    conn: &mut Conn,
    order_ids: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (table, from, to) in [
        ("orders", "holding", "released"),
        ("commission_lines", "pending", "released"),
    ] {
        let mut update = QueryBuilder::<Db>::new(format!("update {table} set state = "));
        update
            .push_bind(to)
            .push(", updated_at = ")
            .push_bind(DbTime(now));
        update
            .push(" where state = ")
            .push_bind(from)
            .push(" and order_id in (");
        let mut ids = update.separated(", ");
        for id in order_ids {
            ids.push_bind(id.as_str());
        }
        update.push(")");
        update.build().execute(&mut *conn).await?;
    }
    Ok(())
}

include!("../sql/credentials.rs");
include!("../sql/withdrawals.rs");
include!("../sql/certificates.rs");
include!("../sql/audit.rs");
include!("../sql/jobs.rs");
include!("../sql/sessions.rs");
