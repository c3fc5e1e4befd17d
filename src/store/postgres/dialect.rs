//! The PostgreSQL side of the contract the shared SQL in `../sql/` is
//! compiled against: every shared module imports what it uses from here,
//! and may rely on nothing else of the backend's but `super::Repo` (its
//! `pool` and `begin_write()`). `../sqlite/dialect.rs` exports the same names
//! with the same meaning, so each shared module compiles once per backend.
//!
//! - `Db`, `Conn`, `DbRow`: the sqlx database, its connection and its row type.
//! - `for_update!()`, `skip_locked!()`: the row-lock suffix of a `select`.
//! - `lock_accounts`, `lock_balances`: balance rows locked in account order
//!   before a set-wise update.
//! - `lock_calendar`: the business calendar's lock (ingest and release
//!   share it; applying a year and re-planning take it alone).
//! - `push_job`, `push_release_jobs`: enqueue on the caller's transaction;
//!   a key the queue already has is skipped (in a savepoint).
//! - `ROWS_PER_STATEMENT` and the bulk statements: `insert_transfers`,
//!   `update_balances`, `insert_postings` (the ledger), `insert_order_rows`,
//!   `insert_item_rows`, `insert_line_rows`, `insert_event_rows`,
//!   `pending_lines_of`, `mark_released` (the order workflow).
//! - `JOB_STATUS_SQL`, `RETRY_JOB_SQL`, `CANCEL_JOB_SQL`: the ops job actions
//!   on apalis's tables (`$1` the job id, `$2` for a cancel the stored result).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::orders::{LINE_COLUMNS, NewEvent, line_from_row, rate_to_db, risk_flags_to_db};
use crate::domain::commission::{ExplainedLine, OrderItem};
use crate::domain::ledger::{Posting, Transfer};
use crate::store::error::StoreError;
use crate::store::records::{CalendarLock, LineRecord, PreparedOrder};
use crate::store::{JobSpec, release_task};

pub(super) use sqlx::Postgres as Db;
pub(super) type Conn = sqlx::PgConnection;
/// A row as the shared `…_from_row` readers take it.
pub(super) type DbRow = <Db as sqlx::Database>::Row;

/// Rows a step reads and then writes are locked until it commits.
macro_rules! for_update {
    () => {
        " for update"
    };
}
pub(super) use for_update;

/// Several workers may release at once: each takes rows no one else holds.
macro_rules! skip_locked {
    () => {
        " for update skip locked"
    };
}
pub(super) use skip_locked;

/// The ops job actions' SQL on apalis-postgres's tables (see `../sql/jobs.rs`).
pub(super) const JOB_STATUS_SQL: &str = "select status from apalis.jobs where id = $1 for update";
pub(super) const RETRY_JOB_SQL: &str = concat!(
    "update apalis.jobs set status = 'Pending', run_at = now(), lock_by = null, lock_at = null, done_at = null, ",
    "max_attempts = attempts + 1 where id = $1 and status in ('Failed', 'Killed')"
);
pub(super) const CANCEL_JOB_SQL: &str = concat!(
    "update apalis.jobs set status = 'Killed', done_at = now(), last_result = cast($2 as jsonb) ",
    "where id = $1 and status in ('Pending', 'Failed')"
);

/// Locks balance rows in account order before a set-wise update, whose own
/// lock order is the planner's: two batches then never wait on each other
/// in a cycle (the deadlocks of performance.md's script C). `no key update`
/// is the lock the UPDATE itself takes: it does not block the key-share
/// locks that other transactions' posting inserts take for their foreign key.
pub(super) async fn lock_accounts<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    lock_balances(conn, accounts).await.map(drop)
}

/// [`lock_accounts`], answering the balances as they are under the lock.
pub(super) async fn lock_balances<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>, StoreError> {
    let accounts: Vec<&str> = accounts.collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select id, balance_fen from ledger_accounts where id = any($1) order by id for no key update",
    )
    .bind(&accounts)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The advisory lock key of the business calendar ("fenrun calendar").
const CALENDAR_LOCK_KEY: i64 = 0x6665_6e72_7563_616c;

/// Holds the business calendar until the transaction ends: shared by the
/// transactions that plan or release holds, alone by one that changes a
/// year, so a hold is never planned on a calendar that changed under it.
pub(super) async fn lock_calendar(conn: &mut Conn, mode: CalendarLock) -> Result<(), StoreError> {
    let sql = match mode {
        CalendarLock::Shared => "select pg_advisory_xact_lock_shared($1)",
        CalendarLock::Exclusive => "select pg_advisory_xact_lock($1)",
    };
    sqlx::query(sql)
        .bind(CALENDAR_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Enqueues the release step for each release time, on the caller's
/// transaction. apalis-postgres has no `on conflict` for a duplicate
/// idempotency key, so each push runs in a savepoint and a duplicate is
/// rolled back to it instead of aborting the whole transaction.
pub(super) async fn push_release_jobs(
    conn: &mut Conn,
    spec: &JobSpec,
    release_times: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    for release_at in release_times {
        let task = release_task(spec, *release_at)?;
        sqlx::query("savepoint push_release_job")
            .execute(&mut *conn)
            .await?;
        match apalis_postgres::queries::push_tasks(conn, &spec.queue, vec![task]).await {
            Ok(()) => {
                sqlx::query("release savepoint push_release_job")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(apalis_postgres::Error::Database(sqlx::Error::Database(db)))
                if db.is_unique_violation() =>
            {
                sqlx::query("rollback to savepoint push_release_job")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(error) => {
                return Err(queue_error("pushing release jobs", error));
            }
        }
    }
    Ok(())
}

/// A failed push: the database's own errors stay database errors (a busy or
/// lost connection is worth another try); apalis's others are the queue's.
fn queue_error(doing: &str, error: apalis_postgres::Error) -> StoreError {
    match error {
        apalis_postgres::Error::Database(database) => StoreError::Database(database),
        other => StoreError::Queue(format!("{doing}: {other}")),
    }
}

/// Enqueues one job on the caller's transaction, in a savepoint so that a
/// duplicate idempotency key is skipped instead of aborting the transaction.
pub(super) async fn push_job(
    conn: &mut Conn,
    queue: &str,
    task: apalis_core::task::Task<Vec<u8>>,
) -> Result<(), StoreError> {
    sqlx::query("savepoint push_job")
        .execute(&mut *conn)
        .await?;
    match apalis_postgres::queries::push_tasks(conn, queue, vec![task]).await {
        Ok(()) => {
            sqlx::query("release savepoint push_job")
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        Err(apalis_postgres::Error::Database(sqlx::Error::Database(db)))
            if db.is_unique_violation() =>
        {
            sqlx::query("rollback to savepoint push_job")
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        Err(error) => Err(queue_error(&format!("pushing a {queue} job"), error)),
    }
}

/// Most rows one statement carries. The bulk statements below pass arrays
/// (`unnest`), so their text is fixed and prepared once; the limit only
/// bounds the size of one round trip.
pub(super) const ROWS_PER_STATEMENT: usize = 5_000;

/// Inserts transfers, skipping keys already present; returns (id, key) of the new ones.
pub(super) async fn insert_transfers(
    conn: &mut Conn,
    transfers: &[Transfer],
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String)>, StoreError> {
    let keys: Vec<&str> = transfers.iter().map(Transfer::key).collect();
    let kinds: Vec<&str> = transfers
        .iter()
        .map(|transfer| transfer.kind().as_str())
        .collect();
    let fingerprints: Vec<String> = transfers.iter().map(Transfer::fingerprint).collect();
    Ok(sqlx::query_as(concat!(
        "insert into ledger_transfers (idempotency_key, kind, body_sha256, created_at) ",
        "select key, kind, fingerprint, $4 from unnest($1::text[], $2::text[], $3::text[]) as t(key, kind, fingerprint) ",
        "on conflict (idempotency_key) do nothing returning id, idempotency_key"
    ))
    .bind(&keys)
    .bind(&kinds)
    .bind(&fingerprints)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// Adds each change to its account where the floor allows; returns the rows updated.
pub(super) async fn update_balances(
    conn: &mut Conn,
    changes: &[(&String, &(i64, bool))],
) -> Result<u64, StoreError> {
    let accounts: Vec<&str> = changes
        .iter()
        .map(|(account, _)| account.as_str())
        .collect();
    let amounts: Vec<i64> = changes.iter().map(|(_, (change, _))| *change).collect();
    let overdrafts: Vec<bool> = changes
        .iter()
        .map(|(_, (_, overdraft))| *overdraft)
        .collect();
    Ok(sqlx::query(concat!(
        "update ledger_accounts a set balance_fen = a.balance_fen + v.change ",
        "from unnest($1::text[], $2::bigint[], $3::bool[]) as v(account_id, change, overdraft) ",
        "where a.id = v.account_id and (a.balance_fen + v.change >= 0 or v.change > 0 ",
        "or (v.overdraft and a.may_go_negative))"
    ))
    .bind(&accounts)
    .bind(&amounts)
    .bind(&overdrafts)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

pub(super) async fn insert_postings(
    conn: &mut Conn,
    postings: &[(i64, &Posting)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let transfer_ids: Vec<i64> = postings
        .iter()
        .map(|(transfer_id, _)| *transfer_id)
        .collect();
    let accounts: Vec<String> = postings
        .iter()
        .map(|(_, posting)| posting.account.to_string())
        .collect();
    let amounts: Vec<i64> = postings
        .iter()
        .map(|(_, posting)| posting.amount.fen())
        .collect();
    sqlx::query(concat!(
        "insert into ledger_postings (transfer_id, account_id, amount_fen, created_at) ",
        "select transfer_id, account_id, amount_fen, $4 ",
        "from unnest($1::bigint[], $2::text[], $3::bigint[]) as p(transfer_id, account_id, amount_fen)"
    ))
    .bind(&transfer_ids)
    .bind(&accounts)
    .bind(&amounts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---- Bulk statements of the order workflow: arrays through `unnest`, so
// each statement's text is fixed and prepared once per connection (multi-row
// VALUES of varying length were re-parsed every batch). Shared logic in
// `../sql/orders.rs`.

pub(super) async fn insert_order_rows(
    conn: &mut Conn,
    orders: &[&PreparedOrder],
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let ids: Vec<&str> = orders.iter().map(|order| order.order_id.as_str()).collect();
    let distributors: Vec<&str> = orders
        .iter()
        .map(|order| order.distributor_id.as_str())
        .collect();
    let buyers: Vec<&str> = orders.iter().map(|order| order.buyer_id.as_str()).collect();
    let placed: Vec<DateTime<Utc>> = orders.iter().map(|order| order.placed_at).collect();
    let confirmed: Vec<DateTime<Utc>> = orders.iter().map(|order| order.confirmed_at).collect();
    let totals: Vec<i64> = orders.iter().map(|order| order.total.fen()).collect();
    let chains: Vec<&str> = orders
        .iter()
        .map(|order| order.chain_json.as_str())
        .collect();
    let plans: Vec<i64> = orders.iter().map(|order| order.plan_version).collect();
    let release: Vec<DateTime<Utc>> = orders.iter().map(|order| order.release_at).collect();
    let provisional: Vec<bool> = orders
        .iter()
        .map(|order| order.release_at_provisional)
        .collect();
    let hashes: Vec<&str> = orders
        .iter()
        .map(|order| order.request_sha256.as_str())
        .collect();
    let contexts: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.commission_context.as_deref())
        .collect();
    let flags: Vec<Option<String>> = orders
        .iter()
        .map(|order| risk_flags_to_db(&order.risk_flags))
        .collect();
    let extra_days: Vec<i64> = orders
        .iter()
        .map(|order| i64::from(order.extra_hold_days))
        .collect();
    Ok(sqlx::query_scalar(concat!(
        "insert into orders (order_id, distributor_id, buyer_id, placed_at, confirmed_at, ",
        "total_fen, chain, plan_version, state, release_at, release_at_provisional, request_sha256, ",
        "commission_context, risk_flags, extra_hold_days, created_at, updated_at) ",
        "select o, d, b, p, c, t, ch, pv, 'holding', r, rp, h, cc, rf, ed, $12, $12 from unnest(",
        "$1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], ",
        "$7::text[], $8::bigint[], $9::timestamptz[], $10::boolean[], $11::text[], ",
        "$13::text[], $14::text[], $15::bigint[]) ",
        "as x(o, d, b, p, c, t, ch, pv, r, rp, h, cc, rf, ed) ",
        "on conflict (order_id) do nothing returning order_id"
    ))
    .bind(&ids)
    .bind(&distributors)
    .bind(&buyers)
    .bind(&placed)
    .bind(&confirmed)
    .bind(&totals)
    .bind(&chains)
    .bind(&plans)
    .bind(&release)
    .bind(&provisional)
    .bind(&hashes)
    .bind(now)
    .bind(&contexts)
    .bind(&flags)
    .bind(&extra_days)
    .fetch_all(&mut *conn)
    .await?)
}

pub(super) async fn insert_item_rows(
    conn: &mut Conn,
    items: &[(&PreparedOrder, usize, &OrderItem)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let orders: Vec<&str> = items
        .iter()
        .map(|(order, _, _)| order.order_id.as_str())
        .collect();
    let numbers: Vec<i64> = items
        .iter()
        .map(|(_, line_no, _)| *line_no as i64)
        .collect();
    let skus: Vec<&str> = items.iter().map(|(_, _, item)| item.sku.as_str()).collect();
    let categories: Vec<&str> = items
        .iter()
        .map(|(_, _, item)| item.category.as_str())
        .collect();
    let amounts: Vec<i64> = items.iter().map(|(_, _, item)| item.amount.fen()).collect();
    sqlx::query(concat!(
        "insert into order_items (order_id, line_no, sku, category, amount_fen, created_at) ",
        "select o, n, s, c, a, $6 from unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bigint[]) ",
        "as x(o, n, s, c, a)"
    ))
    .bind(&orders)
    .bind(numbers.iter().map(|n| *n as i32).collect::<Vec<i32>>())
    .bind(&skus)
    .bind(&categories)
    .bind(&amounts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn insert_line_rows(
    conn: &mut Conn,
    lines: &[(&PreparedOrder, &ExplainedLine)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let orders: Vec<&str> = lines
        .iter()
        .map(|(order, _)| order.order_id.as_str())
        .collect();
    let beneficiaries: Vec<&str> = lines
        .iter()
        .map(|(_, explained)| explained.line.beneficiary.as_str())
        .collect();
    let levels: Vec<i32> = lines
        .iter()
        .map(|(_, explained)| i32::from(explained.line.level))
        .collect();
    let rates: Vec<String> = lines
        .iter()
        .map(|(_, explained)| rate_to_db(explained.line.rate))
        .collect();
    let bases: Vec<i64> = lines
        .iter()
        .map(|(_, explained)| explained.line.base.fen())
        .collect();
    let amounts: Vec<i64> = lines
        .iter()
        .map(|(_, explained)| explained.line.amount.fen())
        .collect();
    let plans: Vec<i64> = lines.iter().map(|(order, _)| order.plan_version).collect();
    let campaigns: Vec<Option<&str>> = lines
        .iter()
        .map(|(_, explained)| explained.campaign_name())
        .collect();
    let trails: Vec<String> = lines
        .iter()
        .map(|(_, explained)| explained.rule_trail.to_json())
        .collect();
    sqlx::query(concat!(
        "insert into commission_lines (order_id, beneficiary_id, level, rate, base_fen, amount_fen, ",
        "plan_version, campaign, rule_trail, state, created_at, updated_at) ",
        "select o, b, l, r, ba, a, pv, ca, rt, 'pending', $8, $8 from unnest($1::text[], $2::text[], $3::int[], ",
        "$4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $9::text[], $10::text[]) ",
        "as x(o, b, l, r, ba, a, pv, ca, rt)"
    ))
    .bind(&orders)
    .bind(&beneficiaries)
    .bind(&levels)
    .bind(&rates)
    .bind(&bases)
    .bind(&amounts)
    .bind(&plans)
    .bind(now)
    .bind(&campaigns)
    .bind(&trails)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn insert_event_rows(
    conn: &mut Conn,
    events: &[NewEvent<'_>],
    at: DateTime<Utc>,
    wall_clock: DateTime<Utc>,
) -> Result<(), StoreError> {
    let orders: Vec<&str> = events.iter().map(|event| event.order_id).collect();
    let steps: Vec<&str> = events.iter().map(|event| event.step).collect();
    let outcomes: Vec<&str> = events.iter().map(|event| event.outcome).collect();
    let attempts: Vec<i32> = events
        .iter()
        .map(|event| i32::try_from(event.attempt).unwrap_or(i32::MAX))
        .collect();
    let details: Vec<&str> = events.iter().map(|event| event.detail.as_str()).collect();
    sqlx::query(concat!(
        "insert into order_events (order_id, step, outcome, attempt, detail, at, created_at) ",
        "select o, s, oc, a, d, $6, $7 from unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[]) ",
        "as x(o, s, oc, a, d)"
    ))
    .bind(&orders)
    .bind(&steps)
    .bind(&outcomes)
    .bind(&attempts)
    .bind(&details)
    .bind(at)
    .bind(wall_clock)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The pending, non-zero lines of `order_ids`, by order then level.
pub(super) async fn pending_lines_of(
    conn: &mut Conn,
    order_ids: &[String],
) -> Result<Vec<LineRecord>, StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {LINE_COLUMNS} from commission_lines where state = 'pending' and amount_fen > 0 \
         and order_id = any($1) order by order_id, level, id"
    )))
    .bind(order_ids)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(line_from_row)
    .collect()
}

/// Holding orders → released, and their pending lines with them.
pub(super) async fn mark_released(
    conn: &mut Conn,
    order_ids: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("update orders set state = 'released', updated_at = $2 where state = 'holding' and order_id = any($1)")
        .bind(order_ids)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "update commission_lines set state = 'released', updated_at = $2 where state = 'pending' and order_id = any($1)",
    )
    .bind(order_ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
