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
}

include!("queries.rs");
