//! The SQLite side of the contract the shared SQL in `../sql/` is compiled
//! against: every shared module imports what it uses from here, and may
//! rely on nothing else of the backend's but `super::Repo` (its `pool` and
//! `begin_write()`). `../postgres/dialect.rs` exports the same names with the
//! same meaning, so each shared module compiles once per backend.
//!
//! - `Db`, `Conn`, `DbRow`: the sqlx database, its connection and its row type.
//! - `for_update!()`, `skip_locked!()`: the row-lock suffix of a `select`;
//!   empty here, because `BEGIN IMMEDIATE` already holds the write lock.
//! - `lock_accounts`, `lock_balances`: balance rows held before a set-wise update.
//! - `lock_calendar`: the business calendar's lock (ingest and release
//!   share it; applying a year and re-planning take it alone).
//! - `push_job`, `push_release_jobs`: enqueue on the caller's transaction;
//!   a key the queue already has is skipped.
//! - `ROWS_PER_STATEMENT` and the bulk statements: `insert_transfers`,
//!   `update_balances`, `insert_postings` (the ledger), `insert_order_rows`,
//!   `insert_item_rows`, `insert_line_rows`, `insert_event_rows`,
//!   `pending_lines_of`, `mark_released` (the order workflow).
//! - `JOB_STATUS_SQL`, `RETRY_JOB_SQL`, `CANCEL_JOB_SQL`: the ops job actions
//!   on apalis's tables (`$1` the job id, `$2` for a cancel the stored result).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::orders::{LINE_COLUMNS, NewEvent, line_from_row, rate_to_db, risk_flags_to_db};
use crate::domain::commission::{ExplainedLine, OrderItem};
use crate::domain::ledger::{Posting, Transfer};
use crate::domain::settlement::{LineState, OrderState};
use crate::store::error::StoreError;
use crate::store::records::{CalendarLock, LineRecord, PreparedOrder};
use crate::store::time::DbTime;
use crate::store::{JobSpec, release_task};

pub(super) use sqlx::Sqlite as Db;
pub(super) type Conn = sqlx::SqliteConnection;
/// A row as the shared `…_from_row` readers take it.
pub(super) type DbRow = <Db as sqlx::Database>::Row;

/// SQLite has no row locks; `BEGIN IMMEDIATE` takes the write lock up front.
macro_rules! for_update {
    () => {
        ""
    };
}
pub(super) use for_update;

/// SQLite has no row locks: `BEGIN IMMEDIATE` already holds the write lock.
macro_rules! skip_locked {
    () => {
        ""
    };
}
pub(super) use skip_locked;

/// The ops job actions' SQL on apalis-sqlite's tables (see `../sql/jobs.rs`);
/// `BEGIN IMMEDIATE` already holds the write lock, so no row lock.
pub(super) const JOB_STATUS_SQL: &str = "select status from Jobs where id = $1";
pub(super) const RETRY_JOB_SQL: &str = concat!(
    "update Jobs set status = 'Pending', run_at = cast(strftime('%s', 'now') as integer), lock_by = null, lock_at = null, ",
    "done_at = null, max_attempts = attempts + 1 where id = $1 and status in ('Failed', 'Killed')"
);
pub(super) const CANCEL_JOB_SQL: &str = concat!(
    "update Jobs set status = 'Killed', done_at = cast(strftime('%s', 'now') as integer), last_result = $2 ",
    "where id = $1 and status in ('Pending', 'Failed')"
);

/// SQLite has no row locks: `BEGIN IMMEDIATE` already holds the write lock.
pub(super) async fn lock_accounts<'a>(
    _conn: &mut Conn,
    _accounts: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    Ok(())
}

/// The balances of `accounts`, which the write lock of `BEGIN IMMEDIATE`
/// already holds still.
pub(super) async fn lock_balances<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>, StoreError> {
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

/// Holds the business calendar until the transaction ends. A SQLite write
/// transaction (`BEGIN IMMEDIATE`) already excludes every other writer, so
/// there is nothing more to take, shared or alone.
pub(super) async fn lock_calendar(_conn: &mut Conn, _mode: CalendarLock) -> Result<(), StoreError> {
    Ok(())
}

/// Enqueues the release step for each release time, on the caller's
/// transaction; apalis-sqlite skips a key it already has.
pub(super) async fn push_release_jobs(
    conn: &mut Conn,
    spec: &JobSpec,
    release_times: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    let tasks: Vec<apalis_sqlite::SqliteTask> = release_times
        .iter()
        .map(|release_at| release_task(spec, *release_at))
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
pub(super) async fn push_job(
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
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Inserts transfers, skipping keys already present; returns (id, key) of the new ones.
pub(super) async fn insert_transfers(
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
pub(super) async fn update_balances(
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
        "and (ledger_accounts.balance_fen + v.change >= 0 or v.change > 0 ",
        "or (v.overdraft and ledger_accounts.may_go_negative))"
    ));
    Ok(update.build().execute(&mut *conn).await?.rows_affected())
}

pub(super) async fn insert_postings(
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

// ---- Bulk statements of the order workflow: multi-row VALUES, which SQLite
// parses in-process at little cost. Shared logic in `../sql/orders.rs`.

pub(super) async fn insert_order_rows(
    conn: &mut Conn,
    orders: &[&PreparedOrder],
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut insert = QueryBuilder::<Db>::new(concat!(
        "insert into orders (order_id, distributor_id, buyer_id, placed_at, confirmed_at, ",
        "total_fen, chain, plan_version, state, release_at, release_at_provisional, request_sha256, ",
        "commission_context, risk_flags, extra_hold_days, created_at, updated_at) "
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
            .push_bind(order.release_at_provisional)
            .push_bind(order.request_sha256.as_str())
            .push_bind(order.commission_context.as_deref())
            .push_bind(risk_flags_to_db(&order.risk_flags))
            .push_bind(i64::from(order.extra_hold_days))
            .push_bind(DbTime(now))
            .push_bind(DbTime(now));
    });
    insert.push(" on conflict (order_id) do nothing returning order_id");
    Ok(insert.build_query_scalar().fetch_all(&mut *conn).await?)
}

pub(super) async fn insert_item_rows(
    conn: &mut Conn,
    items: &[(&PreparedOrder, usize, &OrderItem)],
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

pub(super) async fn insert_line_rows(
    conn: &mut Conn,
    lines: &[(&PreparedOrder, &ExplainedLine)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = QueryBuilder::<Db>::new(concat!(
        "insert into commission_lines (order_id, beneficiary_id, level, rate, base_fen, amount_fen, ",
        "plan_version, campaign, rule_trail, state, created_at, updated_at) "
    ));
    insert.push_values(lines, |mut row, (order, explained)| {
        let line = &explained.line;
        row.push_bind(order.order_id.as_str())
            .push_bind(line.beneficiary.as_str())
            .push_bind(i64::from(line.level))
            .push_bind(rate_to_db(line.rate))
            .push_bind(line.base.fen())
            .push_bind(line.amount.fen())
            .push_bind(order.plan_version)
            .push_bind(explained.campaign_name())
            .push_bind(explained.rule_trail.to_json())
            .push_bind(LineState::Pending.as_str())
            .push_bind(DbTime(now))
            .push_bind(DbTime(now));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn insert_event_rows(
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
pub(super) async fn pending_lines_of(
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
pub(super) async fn mark_released(
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
