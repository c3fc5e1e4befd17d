//! Retry or give up: how a step attempt that did not finish is handed back
//! to the job queue. An error that may pass (a busy database, a gateway
//! timeout) is retried with the step's backoff; one that comes out the same
//! every time (a missing vault key, a corrupt row, a refused transfer) fails
//! the job at once, wrapped in apalis's `AbortError`: the row turns Killed
//! with the reason as its last result, and `/ops` lists it as failed, ready
//! for a person to fix the cause and press retry.

use apalis_core::error::{AbortError, BoxDynError};

/// An error a step may return, classified once.
pub trait StepFailure: std::error::Error + Send + Sync + 'static {
    /// Whether another attempt of the same step may succeed.
    fn is_retryable(&self) -> bool;
}

impl StepFailure for crate::store::StoreError {
    fn is_retryable(&self) -> bool {
        crate::store::StoreError::is_retryable(self)
    }
}

/// The error the queue gets for a failed attempt of `step`, logged once here.
pub fn job_error<E: StepFailure>(step: &'static str, error: E) -> BoxDynError {
    if error.is_retryable() {
        tracing::warn!(step, error = %error, "step did not finish; it will be retried");
        Box::new(error)
    } else {
        tracing::error!(step, error = %error, "step failed for good: not retried; fix the cause, then retry the job in /ops");
        Box::new(AbortError::new(error))
    }
}

/// The retry policy's test: an attempt given up on is never tried again.
pub fn may_retry(error: &BoxDynError) -> bool {
    error.downcast_ref::<AbortError>().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_retryable_error_is_retried_and_a_fatal_one_is_aborted_with_its_reason() {
        let blip = job_error("transfer", StoreError::Database(sqlx::Error::PoolTimedOut));
        assert!(may_retry(&blip));
        let corrupt = job_error(
            "transfer",
            StoreError::Corrupt("payout account of wd1".to_owned()),
        );
        assert!(!may_retry(&corrupt));
        assert!(
            corrupt.to_string().contains("payout account of wd1"),
            "{corrupt}"
        );
    }
}
