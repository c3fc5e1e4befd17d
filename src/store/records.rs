//! What the store hands back: plain rows, already converted to domain types.

use chrono::{DateTime, Utc};

use crate::domain::access::Role;
use crate::domain::ids::DistributorId;
use crate::domain::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributorStatus {
    Active,
    /// 清退: earns no new commission, keeps its balances.
    Cleared,
}

impl DistributorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DistributorStatus::Active => "active",
            DistributorStatus::Cleared => "cleared",
        }
    }

    pub(crate) fn from_db(text: &str) -> DistributorStatus {
        match text {
            "cleared" => DistributorStatus::Cleared,
            _ => DistributorStatus::Active,
        }
    }
}

/// A distributor to create; `request_sha256` fingerprints the request so a
/// replay can be told from a conflicting reuse of the id.
#[derive(Debug, Clone)]
pub struct NewDistributor {
    pub id: DistributorId,
    pub name: String,
    pub referrer_id: Option<DistributorId>,
    pub grade: String,
    pub request_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distributor {
    pub id: DistributorId,
    pub name: String,
    pub referrer_id: Option<DistributorId>,
    /// Referrer, the referrer's referrer, and theirs: at most 3, nearest first.
    pub upline: Vec<DistributorId>,
    pub grade: String,
    pub status: DistributorStatus,
    pub created_at: DateTime<Utc>,
}

/// Whether a create call made the row or found the same request already done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation<T> {
    Created(T),
    Replayed(T),
}

impl<T> Creation<T> {
    pub fn into_inner(self) -> T {
        match self {
            Creation::Created(inner) | Creation::Replayed(inner) => inner,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub pending: Money,
    /// Negative while a clawback debt is open.
    pub available: Money,
    pub withdrawing: Money,
    pub withdrawn_total: Money,
}

impl Balance {
    /// The open clawback debt (欠款): what available is below zero.
    pub fn debt(&self) -> Money {
        if self.available.is_negative() {
            self.available.checked_neg().unwrap_or(Money::ZERO)
        } else {
            Money::ZERO
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    Applied {
        transfer_id: i64,
    },
    /// The same key and the same body were applied before: nothing changed.
    AlreadyApplied {
        transfer_id: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub version: i64,
    pub name: String,
    pub effective_from: DateTime<Utc>,
    pub source_toml: String,
    pub applied_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub role: Role,
    pub distributor_id: Option<DistributorId>,
}

/// The result of re-deriving the ledger from its postings.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LedgerReport {
    pub accounts: i64,
    pub transfers: i64,
    pub postings: i64,
    /// Σ of every posting, in fen: must be 0.
    pub postings_sum_fen: i64,
    /// Transfers whose postings do not sum to zero, or that have fewer than two.
    pub unbalanced_transfers: Vec<String>,
    /// Tracked accounts whose stored balance differs from Σ of their postings.
    pub mismatched_accounts: Vec<AccountMismatch>,
    /// Accounts below zero that may never be.
    pub negative_accounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountMismatch {
    pub account: String,
    pub stored_fen: i64,
    pub derived_fen: i64,
}

impl LedgerReport {
    pub fn is_clean(&self) -> bool {
        self.postings_sum_fen == 0
            && self.unbalanced_transfers.is_empty()
            && self.mismatched_accounts.is_empty()
            && self.negative_accounts.is_empty()
    }
}
