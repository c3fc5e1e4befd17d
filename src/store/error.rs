//! The store's errors: refusals a caller can act on, and failures it cannot.

use crate::domain::ids::InvalidId;

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
    /// A business rule refused the change (→ 422 with this code); nothing was written.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A stored value the code does not understand: a bug or a tampered row.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite planner would run apalis's ack as a scan (see apalis.md).
    #[error("unsafe query plan: {0}")]
    UnsafePlan(String),
}

impl From<crate::store::records::StoreErrorText> for StoreError {
    fn from(error: crate::store::records::StoreErrorText) -> StoreError {
        StoreError::Corrupt(error.0)
    }
}

impl From<InvalidId> for StoreError {
    fn from(error: InvalidId) -> StoreError {
        StoreError::Corrupt(error.to_string())
    }
}
