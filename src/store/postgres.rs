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
/// in a cycle (the deadlocks of performance.md's script C).
async fn lock_accounts<'a>(
    conn: &mut Conn,
    accounts: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let accounts: Vec<&str> = accounts.collect();
    sqlx::query("select id from ledger_accounts where id = any($1) order by id for update")
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

include!("queries.rs");
include!("queries_orders.rs");
