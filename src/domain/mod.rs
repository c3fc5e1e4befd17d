//! Pure business rules: no I/O, no SQL, no HTTP. Every function takes the
//! time it needs as an argument. `payout_cycle` says when a standard
//! withdrawal is sent (its settlement cycle's cut-off); `banks` the banks a
//! card payout can go to and what a company account needs; `reconciliation`
//! how a gateway's daily statement is matched against our payouts;
//! `webhook_signature` the Standard Webhooks signature of a delivery.

pub mod access;
pub mod banks;
pub mod calendar;
pub mod commission;
pub mod digest;
pub mod earnings;
pub mod grades;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod payout_cycle;
pub mod plan;
pub mod reconciliation;
pub mod settlement;
pub mod tax;
pub mod webhook_signature;
pub mod webhooks;
pub mod withdrawal;

/// A stored or sent name that no variant of a domain enum has, such as an
/// order state a newer version wrote; the message names what was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownName(pub String);
