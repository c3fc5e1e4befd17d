//! The store's errors: refusals a caller can act on, and failures it cannot.

use crate::domain::UnknownName;
use crate::domain::ids::{InvalidId, NotAnId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id exists with a different body (→ 409).
    #[error("{what} {id} already exists with different details")]
    Conflict { what: &'static str, id: String },
    /// A referenced row does not exist (→ 404 or 422 depending on where it was named).
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    /// The same idempotency key was used for a transfer with another body (→ 409).
    #[error("idempotency key {key} was already used for a different transfer")]
    IdempotencyConflict { key: String },
    /// The transfer would take an account below zero (→ 422).
    #[error("insufficient balance in {account}")]
    InsufficientFunds { account: String },
    /// The change would take a balance past what 64 bits of fen hold
    /// (±92,233,720,368,547,758.07 yuan) (→ 422 `balance_overflow`); nothing
    /// was written.
    #[error("the balance of {account} would overflow: the change is refused")]
    BalanceOverflow { account: String },
    /// A stored value the code does not understand: a bug or a tampered row.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The job queue could not take a job for a reason other than the
    /// database (apalis could not encode it): the same job would fail again.
    #[error("job queue: {0}")]
    Queue(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The business calendar changed since the caller loaded it (a year
    /// was applied, or a re-plan is pending): reload it and plan again.
    /// Nothing was written.
    #[error("the business calendar changed (generation {generation}); reload it and try again")]
    CalendarChanged { generation: i64 },
    /// Another writer committed a row this transaction had checked was not
    /// there (two batches ingesting the same order at once): nothing was
    /// written, and the same call made again finds the row.
    #[error("{0}; try again")]
    WriterRace(String),
    /// The SQLite planner would run apalis's ack as a scan (see apalis.md).
    #[error("unsafe query plan: {0}")]
    UnsafePlan(String),
}

impl From<UnknownName> for StoreError {
    fn from(error: UnknownName) -> StoreError {
        StoreError::Corrupt(error.0)
    }
}

impl From<InvalidId> for StoreError {
    fn from(error: InvalidId) -> StoreError {
        StoreError::Corrupt(error.to_string())
    }
}

impl From<NotAnId> for StoreError {
    fn from(error: NotAnId) -> StoreError {
        StoreError::Corrupt(error.to_string())
    }
}

impl StoreError {
    /// Whether the same call may succeed if made again: the database was
    /// busy, unreachable or chose this transaction as a deadlock victim.
    /// Refusals, corrupt rows and broken set-up come out the same every
    /// time, so a step that meets them gives up at once instead of
    /// retrying them as if they were network blips.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(error) => database_error_is_retryable(error),
            // The next try reloads the calendar first.
            StoreError::CalendarChanged { .. } | StoreError::WriterRace(_) => true,
            StoreError::Conflict { .. }
            | StoreError::NotFound { .. }
            | StoreError::IdempotencyConflict { .. }
            | StoreError::InsufficientFunds { .. }
            | StoreError::BalanceOverflow { .. }
            | StoreError::Corrupt(_)
            | StoreError::Queue(_)
            | StoreError::Migrate(_)
            | StoreError::UnsafePlan(_) => false,
        }
    }
}

/// Connection trouble, pool exhaustion, lock waits, serialization failures
/// and deadlocks pass; a constraint the row breaks, a type the code reads
/// wrongly or a bad statement do not.
fn database_error_is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            let Some(code) = database.code() else {
                return false;
            };
            if database
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLite: 5 BUSY, 6 LOCKED, and their extended codes, whose
                // low byte is the primary code.
                code.parse::<i64>()
                    .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
            } else {
                // PostgreSQL: 40001 serialization failure, 40P01 deadlock,
                // 55P03 lock not available, 57P01..57P03 shutting down or
                // not accepting connections yet, 08xxx connection trouble.
                matches!(
                    code.as_ref(),
                    "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("08")
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_blips_are_retried_and_refusals_and_corruption_are_not() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(
            StoreError::Database(sqlx::Error::Io(std::io::Error::other("reset"))).is_retryable()
        );
        assert!(!StoreError::Corrupt("x".to_owned()).is_retryable());
        assert!(!StoreError::Queue("x".to_owned()).is_retryable());
        assert!(
            !StoreError::NotFound {
                what: "withdrawal",
                id: "wd1".to_owned()
            }
            .is_retryable()
        );
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_retryable());
    }
}
