//! The PostgreSQL backend: a pool, apalis's migrations (they need the
//! `hstore` extension), ours, and row locks where a step reads what it writes.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres as Db, Transaction};

use crate::store::StoreOptions;

type Conn = sqlx::PgConnection;

macro_rules! for_update {
    () => {
        " for update"
    };
}

pub struct Repo {
    pool: PgPool,
}

impl Repo {
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Repo, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .connect(url)
            .await?;
        apalis_postgres::PostgresStorage::<()>::migrations()
            .run(&pool)
            .await?;
        let mut ours = sqlx::migrate!("./migrations/postgres");
        ours.dangerous_set_table_name(crate::store::MIGRATIONS_TABLE);
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

/// Locks balance rows in account order before a set-wise update, whose own
/// lock order is the planner's: two batches then never wait on each other
/// in a cycle (the deadlocks of performance.md's script C). `no key update`
/// is the lock the UPDATE itself takes: it does not block the key-share
/// locks that other transactions' posting inserts take for their foreign key.
async fn lock_accounts<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let accounts: Vec<&str> = accounts.collect();
    sqlx::query("select id from ledger_accounts where id = any($1) order by id for no key update")
        .bind(&accounts)
        .fetch_all(&mut *conn)
        .await?;
    Ok(())
}

/// Several workers may release at once: each takes rows no one else holds.
macro_rules! skip_locked {
    () => {
        " for update skip locked"
    };
}

/// Enqueues the release step for each release time, on the caller's
/// transaction. apalis-postgres has no `on conflict` for a duplicate
/// idempotency key, so each push runs in a savepoint and a duplicate is
/// rolled back to it instead of aborting the whole transaction.
async fn push_release_jobs(
    conn: &mut Conn,
    spec: &crate::store::JobSpec,
    release_times: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    for release_at in release_times {
        let task = crate::store::release_task(spec, *release_at)?;
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
                return Err(StoreError::Corrupt(format!(
                    "pushing release jobs: {error}"
                )));
            }
        }
    }
    Ok(())
}

/// Most rows one statement carries. The bulk statements below pass arrays
/// (`unnest`), so their text is fixed and prepared once; the limit only
/// bounds the size of one round trip.
const ROWS_PER_STATEMENT: usize = 5_000;

/// Inserts transfers, skipping keys already present; returns (id, key) of the new ones.
async fn insert_transfers(
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
async fn update_balances(
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
        "where a.id = v.account_id and (a.balance_fen + v.change >= 0 or (v.overdraft and a.may_go_negative))"
    ))
    .bind(&accounts)
    .bind(&amounts)
    .bind(&overdrafts)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

async fn insert_postings(
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

include!("queries.rs");
include!("queries_orders.rs");
include!("queries_credentials.rs");
