//! What the store hands back: plain rows, already converted to domain types.
//! The state enums the rows carry are the domain's, imported from there.

use chrono::{DateTime, Utc};

use crate::domain::access::Role;
use crate::domain::identity::PayoutChannel;
use crate::domain::ids::{CertificateNumber, DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::money::{Money, Rate};
use crate::domain::settlement::{DistributorStatus, LineState, OrderState};

/// A distributor to create; `request_sha256` fingerprints the request so a
/// replay can be told from a conflicting reuse of the id.
#[derive(Debug, Clone)]
pub struct NewDistributor {
    pub id: DistributorId,
    pub name: String,
    pub referrer_id: Option<DistributorId>,
    pub grade: String,
    pub status: DistributorStatus,
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

/// What inserting a correction came to: a certificate is corrected once,
/// and a later correction corrects the newest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectionOutcome {
    Inserted,
    /// Certificate `by` already corrects it; nothing was written.
    AlreadyCorrected {
        by: CertificateNumber,
    },
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

/// A stored API token as authentication needs it: whether it may still be
/// used is decided by the caller (`tokens::check`), which also says why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub role: Role,
    pub distributor_id: Option<DistributorId>,
    /// Revoked tokens never work again.
    pub revoked: bool,
    /// When the token stops working by itself; `None` = until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as `GET /v1/admin/tokens` and `fenrun token list` show it:
/// never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListing {
    pub id: String,
    pub role: Role,
    pub distributor_id: Option<DistributorId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What revoking a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now, with its page sessions ended and an audit entry.
    Revoked,
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
}

/// A page session: the token it belongs to and its two clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token: TokenRecord,
    /// The idle timeout counts from here.
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end.
    pub expires_at: DateTime<Utc>,
}

/// One ledger transfer as the journal holds it, with its postings, for
/// showing what moved for a withdrawal or an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalTransfer {
    pub id: i64,
    pub idempotency_key: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// In the order they were written; they sum to zero.
    pub postings: Vec<JournalPosting>,
}

/// One leg of a [`JournalTransfer`]: the account as stored
/// (`distributor:{id}:{bucket}` or `platform:{name}`) and its signed amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPosting {
    pub account: String,
    pub amount: Money,
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
    /// Postings naming an account or transfer that does not exist.
    pub orphan_postings: i64,
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
            && self.orphan_postings == 0
    }
}

/// An order ready to be written: validated, its commission computed under
/// the plan version in force at its confirmation.
#[derive(Debug, Clone)]
pub struct PreparedOrder {
    pub order_id: crate::domain::ids::OrderId,
    pub distributor_id: DistributorId,
    pub buyer_id: crate::domain::ids::BuyerId,
    pub placed_at: DateTime<Utc>,
    pub confirmed_at: DateTime<Utc>,
    pub items: Vec<crate::domain::commission::OrderItem>,
    pub total: Money,
    pub plan_version: i64,
    pub release_at: DateTime<Utc>,
    /// Whether `release_at` was counted over a provisional calendar year.
    pub release_at_provisional: bool,
    /// The beneficiary chain used, as JSON (kept with the order).
    pub chain_json: String,
    /// The commission's inputs: the chain, and who in it is cleared (清退).
    pub beneficiaries: Vec<crate::domain::commission::Beneficiary>,
    pub cleared: std::collections::BTreeSet<DistributorId>,
    /// Which running totals the order reads and moves.
    pub totals: TotalsKeys,
    // What follows is filled in the ingest transaction, once the running
    // totals are read (see `Store::ingest_orders`).
    pub lines: Vec<crate::domain::commission::ExplainedLine>,
    /// What the order adds to its seller's month of level-1 sales (the
    /// items the plan does not exclude).
    pub commissionable: Money,
    /// What the v2 rules saw, as JSON, when the plan has any (or someone in
    /// the chain is cleared); a refund recomputes with it.
    pub commission_context: Option<String>,
    /// Why the order is held longer, if it is.
    pub risk_flags: Vec<String>,
    pub extra_hold_days: u32,
    /// The pending credit of every line; `None` when nothing is earned.
    pub pending_transfer: Option<crate::domain::ledger::Transfer>,
    pub request_sha256: String,
}

/// The running totals one order reads and moves (`commission_totals`,
/// `buyer_day_orders`), in the settlement time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsKeys {
    /// `YYYY-MM` of the confirmation: the seller's level-1 sales.
    pub month: String,
    /// `YYYY-MM-DD` of the confirmation: the chain's earnings, the buyer's orders.
    pub day: String,
    /// The distributors of the order's chain, level 1 first.
    pub chain: Vec<DistributorId>,
    /// Whether the order's plan reads the totals (tiers, a daily cap, risk
    /// rules); the commission totals are kept for every order either way.
    pub read: bool,
    /// Whether the buyer's orders of the day are counted (risk rules).
    pub count_buyer: bool,
}

/// The running totals of a batch's keys inside the ingest transaction: what
/// the database held (for the keys read) plus what the batch's orders
/// before this one added, so rules apply in ingest order.
#[derive(Debug, Clone, Default)]
pub struct RunningTotals {
    pub(crate) stored: TotalsDelta,
    pub(crate) added: TotalsDelta,
}

/// Amounts keyed like the totals tables.
#[derive(Debug, Clone, Default)]
pub struct TotalsDelta {
    /// (distributor, `YYYY-MM`) → level-1 commissionable sales.
    pub level1_sales: std::collections::HashMap<(String, String), Money>,
    /// (distributor, `YYYY-MM-DD`) → commission earned.
    pub earned: std::collections::HashMap<(String, String), Money>,
    /// (buyer, `YYYY-MM-DD`) → orders.
    pub buyer_orders: std::collections::HashMap<(String, String), i64>,
}

impl TotalsDelta {
    fn key(who: &str, period: &str) -> (String, String) {
        (who.to_owned(), period.to_owned())
    }

    pub fn add_level1_sales(&mut self, distributor: &str, month: &str, amount: Money) {
        let total = self
            .level1_sales
            .entry(Self::key(distributor, month))
            .or_default();
        *total = total.checked_add(amount).unwrap_or(*total);
    }

    pub fn add_earned(&mut self, distributor: &str, day: &str, amount: Money) {
        let total = self.earned.entry(Self::key(distributor, day)).or_default();
        *total = total.checked_add(amount).unwrap_or(*total);
    }

    pub fn add_buyer_order(&mut self, buyer: &str, day: &str) {
        *self.buyer_orders.entry(Self::key(buyer, day)).or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.level1_sales.is_empty() && self.earned.is_empty() && self.buyer_orders.is_empty()
    }
}

impl RunningTotals {
    fn sum(stored: Option<&Money>, added: Option<&Money>) -> Money {
        let (stored, added) = (
            stored.copied().unwrap_or_default(),
            added.copied().unwrap_or_default(),
        );
        stored.checked_add(added).unwrap_or(stored)
    }

    /// The distributor's level-1 commissionable sales of the month so far.
    pub fn month_level1_sales(&self, distributor: &str, month: &str) -> Money {
        let key = TotalsDelta::key(distributor, month);
        Self::sum(
            self.stored.level1_sales.get(&key),
            self.added.level1_sales.get(&key),
        )
    }

    /// What the distributor earned on the day so far, all levels.
    pub fn earned_on(&self, distributor: &str, day: &str) -> Money {
        let key = TotalsDelta::key(distributor, day);
        Self::sum(self.stored.earned.get(&key), self.added.earned.get(&key))
    }

    /// The buyer's orders of the day so far.
    pub fn buyer_orders_on(&self, buyer: &str, day: &str) -> i64 {
        let key = TotalsDelta::key(buyer, day);
        self.stored.buyer_orders.get(&key).copied().unwrap_or(0)
            + self.added.buyer_orders.get(&key).copied().unwrap_or(0)
    }

    /// Adds what a finished order moves.
    pub(crate) fn add_order(&mut self, order: &PreparedOrder) {
        let keys = &order.totals;
        self.added.add_level1_sales(
            order.distributor_id.as_str(),
            &keys.month,
            order.commissionable,
        );
        for explained in &order.lines {
            self.added.add_earned(
                explained.line.beneficiary.as_str(),
                &keys.day,
                explained.line.amount,
            );
        }
        if keys.count_buyer {
            self.added
                .add_buyer_order(order.buyer_id.as_str(), &keys.day);
        }
    }
}

/// An order the plan's risk rules flagged, as the ops console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedOrder {
    pub order_id: String,
    pub distributor_id: String,
    pub buyer_id: String,
    pub state: OrderState,
    pub confirmed_at: DateTime<Utc>,
    pub release_at: DateTime<Utc>,
    pub risk_flags: Vec<String>,
    pub extra_hold_days: u32,
}

/// What happened to one order of an ingest batch.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// Written now, as prepared.
    Created(Box<PreparedOrder>),
    /// The same order was sent before with the same body.
    Replayed(Box<OrderRecord>),
    /// The same order id was sent before with a different body.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: String,
    pub distributor_id: String,
    pub buyer_id: String,
    pub placed_at: DateTime<Utc>,
    pub confirmed_at: DateTime<Utc>,
    pub total: Money,
    pub refunded: Money,
    pub plan_version: i64,
    pub state: OrderState,
    pub release_at: DateTime<Utc>,
    pub release_at_provisional: bool,
    pub chain_json: String,
    /// What the v2 rules saw at ingest (JSON), when they saw anything.
    pub commission_context: Option<String>,
    pub risk_flags: Vec<String>,
    pub extra_hold_days: u32,
    /// Whether ops voided the order's commission (its lines are then 0
    /// and no refund moves commission again).
    pub commission_voided: bool,
    pub lines: Vec<LineRecord>,
    pub timeline: Vec<OrderEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub line_no: i64,
    pub sku: String,
    pub category: String,
    pub amount: Money,
    pub refunded: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    pub id: i64,
    pub order_id: String,
    pub beneficiary_id: String,
    pub level: u8,
    pub rate: crate::domain::money::Rate,
    pub base: Money,
    pub amount: Money,
    pub plan_version: i64,
    pub campaign: Option<String>,
    pub state: LineState,
    pub created_at: DateTime<Utc>,
    /// The line's explanation as stored (JSON); `None` on lines written
    /// before rule trails were kept.
    pub rule_trail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub step: String,
    pub outcome: String,
    pub attempt: i64,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a refund decision sees: the order, locked, with its items and lines.
#[derive(Debug, Clone)]
pub struct OrderSnapshot {
    pub order: OrderRecord,
    pub items: Vec<ItemRecord>,
}

/// A refund as requested.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: String,
    pub refund_id: String,
    pub sku: Option<String>,
    pub amount: Money,
    pub request_sha256: String,
}

/// What a refund does, decided by the engine from the locked snapshot.
#[derive(Debug, Clone)]
pub struct RefundDecision {
    /// (item line_no, amount refunded from it by this refund).
    pub item_refunds: Vec<(i64, Money)>,
    /// (level, rate, beneficiary, new base, new amount) for every line that changes or appears.
    pub line_updates: Vec<LineUpdate>,
    pub transfer: Option<crate::domain::ledger::Transfer>,
    pub new_state: OrderState,
    /// `hold` or `after_release`.
    pub phase: &'static str,
    pub event_outcome: &'static str,
    pub event_detail: String,
    /// What the refund takes off the running totals (negative amounts).
    pub totals: TotalsDelta,
}

#[derive(Debug, Clone)]
pub struct LineUpdate {
    pub beneficiary_id: String,
    pub level: u8,
    pub rate: crate::domain::money::Rate,
    pub base: Money,
    pub amount: Money,
    /// The line's new explanation (JSON); `None` keeps the stored one.
    pub rule_trail: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RefundOutcome {
    Applied(OrderRecord),
    Replayed(OrderRecord),
}

/// A distributor's identity as stored: both values sealed by the vault (the
/// store never sees plaintext), their key id, and the masks shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedIdentity {
    pub distributor_id: DistributorId,
    /// `SealedValue::to_stored` bytes, AAD (distributor_identities, real_name, id).
    pub real_name: Vec<u8>,
    /// `SealedValue::to_stored` bytes, AAD (distributor_identities, id_number, id).
    pub id_number: Vec<u8>,
    /// The master key both values are wrapped under.
    pub key_id: String,
    pub masked_name: String,
    pub masked_id_number: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A payout account as stored: the account sealed, the rest shown masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPayoutAccount {
    /// `pa_` + 32 hex digits, chosen before sealing (it is part of the AAD).
    pub id: PayoutAccountId,
    pub distributor_id: DistributorId,
    pub channel: PayoutChannel,
    /// `SealedValue::to_stored` bytes, AAD (payout_accounts, account, id).
    pub account: Vec<u8>,
    pub key_id: String,
    pub masked: String,
    /// The bank card holder's name, masked, when one was given.
    pub account_name_masked: Option<String>,
    pub bank_name: Option<String>,
    /// Bank accounts only: a person's, or a company's with its bank and
    /// branch (plain columns: none of it is a credential).
    pub bank_account: Option<crate::domain::banks::BankAccountKind>,
    pub created_at: DateTime<Utc>,
}

/// A withdrawal as stored (SPEC §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalRecord {
    pub id: WithdrawalId,
    pub distributor_id: DistributorId,
    pub payout_account_id: PayoutAccountId,
    pub channel: PayoutChannel,
    pub speed: crate::domain::withdrawal::Speed,
    pub state: crate::domain::withdrawal::WithdrawalState,
    pub gross: Money,
    pub tax: Money,
    pub fee: Money,
    pub net: Money,
    pub tax_method: String,
    pub tax_month: String,
    /// The engine's `Withholding`, as JSON, for the certificate.
    pub withholding: String,
    pub risk_flags: Vec<crate::domain::withdrawal::RiskFlag>,
    pub out_bill_no: String,
    pub gateway_bill_no: Option<String>,
    pub package_info: Option<String>,
    pub failure_reason: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_by: Option<String>,
    pub request_sha256: String,
    pub transfer_attempts: i64,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the transfer may start (the settlement cycle's cut-off, or the
    /// request for an express one); `None` for withdrawals recorded before
    /// cycles, which went at once.
    pub send_after: Option<DateTime<Utc>>,
    /// The cycle it was scheduled under ("daily 15:00 Asia/Shanghai",
    /// "express"); `None` before cycles.
    pub payout_cycle: Option<String>,
}

impl WithdrawalRecord {
    /// Whether its transfer may start at `now`: its cut-off has come.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.send_after.is_none_or(|send_after| send_after <= now)
    }
}

/// One step of a withdrawal's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalEvent {
    pub step: String,
    pub outcome: String,
    pub attempt: i64,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// A withdrawal request, validated at the edge, before the checks that need
/// the distributor's lock.
#[derive(Debug, Clone)]
pub struct WithdrawalDraft {
    pub id: WithdrawalId,
    pub out_bill_no: String,
    pub distributor_id: DistributorId,
    pub payout_account_id: PayoutAccountId,
    pub speed: crate::domain::withdrawal::Speed,
    pub amount: Money,
    pub idempotency_key: String,
    pub request_sha256: String,
    pub now: DateTime<Utc>,
    /// 'YYYY-MM-DD' and 'YYYY-MM' of `now` in Asia/Shanghai.
    pub local_day: String,
    pub tax_month: String,
    /// Look-back windows of the risk flags.
    pub day_ago: DateTime<Utc>,
    pub clawback_since: DateTime<Utc>,
    /// When the transfer may start: `now` for an express withdrawal, the
    /// cycle's next cut-off for a standard one.
    pub send_after: DateTime<Utc>,
    /// The cycle, as the answer names it.
    pub payout_cycle: String,
}

/// The facts a request is decided on, read in its transaction after the
/// distributor's balance rows are locked.
#[derive(Debug, Clone)]
pub struct WithdrawalFacts {
    pub distributor: Distributor,
    pub available: Money,
    pub identity_on_file: bool,
    /// The payout account, when it belongs to the distributor.
    pub account: Option<SealedPayoutAccount>,
    pub newest_account_at: Option<DateTime<Utc>>,
    /// Gross of today's withdrawals whose funds were not returned.
    pub gross_today: Money,
    pub withdrawals_last_24h: i64,
    pub last_clawback_at: Option<DateTime<Utc>>,
    /// This tax year's withdrawals whose funds were not returned: (tax month, gross, tax).
    pub year_payouts: Vec<(String, Money, Money)>,
    /// The identity changed after a certificate and no withdrawal carrying
    /// that flag has been reviewed since (`identity_review_flags`).
    pub identity_review_owed: bool,
}

/// What the engine decided for a request.
#[derive(Debug, Clone)]
pub struct WithdrawalDecision {
    pub channel: PayoutChannel,
    pub gross: Money,
    pub tax: Money,
    pub fee: Money,
    pub net: Money,
    pub tax_method: String,
    pub withholding: String,
    pub risk_flags: Vec<crate::domain::withdrawal::RiskFlag>,
    /// `Approved` (its transfer job is pushed in the same transaction) or `Reviewing`.
    pub state: crate::domain::withdrawal::WithdrawalState,
}

#[derive(Debug, Clone)]
pub enum WithdrawalRequestOutcome {
    Created(WithdrawalRecord),
    /// The same Idempotency-Key and body again: the withdrawal as it is now.
    Replayed(WithdrawalRecord),
}

/// What applying a gateway outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The state moved (to the state given).
    Moved(crate::domain::withdrawal::WithdrawalState),
    /// Nothing to do: the same news again, or news of no consequence.
    Unchanged(crate::domain::withdrawal::WithdrawalState),
    /// The news contradicts a final state; recorded, never applied.
    Contradicts(crate::domain::withdrawal::WithdrawalState),
}

/// Money per withdrawal state, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WithdrawalTotals {
    pub by_state: Vec<(String, i64, Money, Money, Money, Money)>,
}

/// A withholding certificate as stored, without its PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub number: CertificateNumber,
    pub withdrawal_id: WithdrawalId,
    pub distributor_id: DistributorId,
    pub tax_month: String,
    pub key_id: String,
    pub gross: Money,
    pub tax: Money,
    pub net: Money,
    /// The signed manifest (JSON) that travels with the PDF.
    pub manifest: String,
    /// The certificate this one corrects.
    pub replaces: Option<CertificateNumber>,
    /// Why a correction was issued.
    pub reason: Option<String>,
    pub issued_at: DateTime<Utc>,
}

/// A certificate to store.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub number: CertificateNumber,
    pub withdrawal_id: WithdrawalId,
    pub distributor_id: DistributorId,
    pub tax_month: String,
    pub key_id: String,
    pub gross: Money,
    pub tax: Money,
    pub net: Money,
    pub pdf: Vec<u8>,
    /// SHA-256 of `pdf`, lower-case hex: finds the manifest of a bare PDF.
    pub pdf_sha256: String,
    pub manifest: String,
    pub replaces: Option<CertificateNumber>,
    pub reason: Option<String>,
    pub issued_at: DateTime<Utc>,
}

/// A payout returned (退票) after its month's declaration was prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnedPayout {
    pub withdrawal_id: WithdrawalId,
    pub distributor_id: String,
    pub gross: Money,
    pub tax: Money,
    pub returned_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub declaration_prepared_at: DateTime<Utc>,
}

/// A monthly declaration as the schedule prepared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDeclaration {
    pub tax_month: String,
    pub method: String,
    pub prepared_at: DateTime<Utc>,
    pub distributors: i64,
    pub payouts: i64,
    pub gross: Money,
    pub tax: Money,
    pub net: Money,
    /// The tax payable the ledger credited for the month's payouts when prepared.
    pub ledger_tax: Money,
}

/// A commission plan version to store, as read from its file.
#[derive(Debug, Clone, Copy)]
pub struct NewPlan<'a> {
    pub name: &'a str,
    pub effective_from: DateTime<Utc>,
    pub source_toml: &'a str,
    pub source_sha256: &'a str,
    /// The file it came from, for the audit log and error messages.
    pub file_name: &'a str,
}

/// Who acted, for the audit log: an API token (its id and role), or the
/// command line. Actions that change the database in one transaction take
/// it and write their audit entry in that same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub role: String,
}

/// One audit log entry: who did what to which thing, and how it was before
/// and after (SPEC §2.10).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The token id (`tok_…`) of an API caller, or `cli:{user}` for a command.
    pub actor: String,
    pub actor_role: String,
    /// e.g. `withdrawal.approve`, `job.retry`, `plan.apply`, `token.create`.
    pub action: String,
    /// e.g. `withdrawal:wd…`, `job:…`, `plan:3`.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// How a transaction holds the business calendar: ingest and release share
/// it, applying a year and re-planning the holds take it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarLock {
    Shared,
    Exclusive,
}

/// A year of a business calendar applied at run time, one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedYear {
    /// Also the calendar's generation once this version is the latest.
    pub id: i64,
    /// The calendar file's stem, e.g. `cn`.
    pub calendar: String,
    pub year: i32,
    pub version: i64,
    pub source: String,
    pub body: crate::domain::calendar::CalendarYear,
    pub body_sha256: String,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    /// When the holds were re-planned over it; `None` while pending.
    pub replanned_at: Option<DateTime<Utc>>,
}

/// A year to apply, already checked.
#[derive(Debug, Clone, Copy)]
pub struct NewCalendarYear<'a> {
    pub calendar: &'a str,
    pub year: i32,
    pub body: &'a crate::domain::calendar::CalendarYear,
    pub body_sha256: &'a str,
}

/// What applying a year came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YearApplication {
    /// Stored as a new version.
    Applied(AppliedYear),
    /// The version in force has the same body: nothing was written.
    Unchanged(AppliedYear),
}

/// Where the calendar puts the hold of an order confirmed at some moment:
/// the local confirmation day (as instants, end exclusive) and its release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPlan {
    pub day_starts: DateTime<Utc>,
    pub day_ends: DateTime<Utc>,
    pub release_at: DateTime<Utc>,
    pub provisional: bool,
}

/// What one re-planning of the holds did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplanCounts {
    /// Holding orders whose release time moved.
    pub moved: i64,
    /// Holding orders whose time stayed but is no longer provisional.
    pub confirmed: i64,
    /// Calendar versions marked re-planned.
    pub versions: u64,
}

/// A month's close (`month_closes`): when it started and finished, the plan
/// whose team bonus applied, and how much it has written so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthCloseRecord {
    /// `YYYY-MM`, local to the settlement time zone.
    pub month: String,
    pub started_at: DateTime<Utc>,
    /// `None` while distributors are still to be closed (or after a crash).
    pub finished_at: Option<DateTime<Utc>>,
    pub plan_version: i64,
    pub statements: i64,
    pub bonuses: i64,
    pub bonus_total: Money,
}

/// One distributor's figures for a span of time, as the month close and
/// the earnings view read them. Settled sales as `domain::earnings` defines them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Pending created by the lines of orders confirmed in the span.
    pub earned: Money,
    pub released: Money,
    pub clawed_back: Money,
    pub team_bonus: Money,
    pub withdrawn: Money,
    pub own_sales: Money,
    pub team_sales: Money,
}

impl Activity {
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

/// A team bonus to pay at month close, with the figures that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTeamBonus {
    pub own_sales: Money,
    pub team_sales: Money,
    pub threshold: Money,
    pub rate: Rate,
    pub amount: Money,
}

/// One distributor's part of a month close: its figures and its bonus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingDistributor {
    pub distributor_id: DistributorId,
    pub activity: Activity,
    pub bonus: Option<NewTeamBonus>,
}

/// What one batch of a month close wrote (distributors already closed by
/// an earlier run are skipped and not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub statements: i64,
    pub bonuses: i64,
    pub bonus_total: Money,
}

/// A monthly statement (`monthly_statements`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRecord {
    pub distributor_id: String,
    pub month: String,
    pub activity: Activity,
    /// Balances when the statement was written (at close, bonus included).
    pub pending: Money,
    pub available: Money,
    pub withdrawing: Money,
    pub created_at: DateTime<Utc>,
}

/// A team bonus paid (`team_bonuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamBonusRecord {
    pub distributor_id: String,
    pub month: String,
    pub own_sales: Money,
    pub team_sales: Money,
    pub threshold: Money,
    pub rate: Rate,
    pub amount: Money,
    pub plan_version: i64,
    pub transfer_id: i64,
    pub created_at: DateTime<Utc>,
}

/// One distributor's movements over a span, each at its own time, for the
/// earnings view to cut into periods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Movements {
    /// (confirmed_at, pending created) per order.
    pub earned: Vec<(DateTime<Utc>, Money)>,
    /// (created_at, kind, amount to the distributor) per ledger transfer;
    /// kind as `TransferKind::as_str`, amounts signed as the statement shows them.
    pub ledger: Vec<(DateTime<Utc>, String, Money)>,
    /// (release_at, own settled sales, team settled sales).
    pub settled: Vec<(DateTime<Utc>, Money, Money)>,
}

/// A change the grade review makes to one distributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleChange {
    /// 晋级: the grade moves from `from` to `to` (written only if it is
    /// still `from`, so a second review changes nothing).
    Upgrade { from: String, to: String },
    /// 清退: active → cleared (written only if still active).
    Clear,
}

/// A review decision as the store writes it: the change, the sentence and
/// the figures for the distributor's timeline and the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewChange {
    pub change: LifecycleChange,
    pub detail: String,
    pub figures: serde_json::Value,
}

/// What one page of the grade review did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewedPage {
    pub reviewed: usize,
    /// The last distributor id of the page (where the next page starts);
    /// `None` when the page was empty.
    pub last_id: Option<String>,
    pub upgraded: usize,
    pub cleared: usize,
}

/// One entry of a distributor's timeline (upgrade, clearing, reinstatement).
#[derive(Debug, Clone, PartialEq)]
pub struct DistributorEvent {
    pub id: i64,
    /// `upgraded`, `cleared` or `reinstated`.
    pub kind: String,
    pub detail: String,
    pub figures: Option<serde_json::Value>,
    /// The audit actor: `system:grade_review`, or the ops token id.
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// How a reinstatement went.
#[derive(Debug, Clone, PartialEq)]
pub enum Reinstatement {
    Reinstated(Distributor),
    /// The distributor is active: nothing to reinstate, nothing changed.
    NotCleared,
}

/// How voiding an order's commission went.
#[derive(Debug, Clone)]
pub enum VoidOutcome {
    /// Voided now: the order as it stands after.
    Voided(VoidedOrder),
    /// Voided before: the same answer, nothing moved again.
    Replayed(VoidedOrder),
}

/// An order whose commission was voided, and what the void did.
#[derive(Debug, Clone)]
pub struct VoidedOrder {
    pub order: OrderRecord,
    pub voided_at: DateTime<Utc>,
    pub reason: String,
    /// The commission reversed (inside the hold) or clawed back (after it).
    pub reversed: Money,
    /// Whether it came back from available balances (after the release).
    pub clawed_back: bool,
}

/// One of our withdrawals as reconciliation reads it (issue 15 item 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationPayout {
    pub withdrawal_id: String,
    pub out_bill_no: String,
    pub channel: String,
    pub state: String,
    pub net: Money,
    /// When it was paid, for a paid or returned one.
    pub finished_at: Option<DateTime<Utc>>,
    pub returned_at: Option<DateTime<Utc>>,
}

/// A statement source's day, as far as it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationRun {
    pub source: String,
    pub bill_date: String,
    /// `finished` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lines: i64,
    pub matched: i64,
    /// JSON of the per-channel totals (see `domain::reconciliation::ChannelTotals`).
    pub totals: Option<String>,
    /// JSON array of `[withdrawal_id, kind]` held for the next day.
    pub held: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A mismatch as the store writes it on a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMismatch {
    pub bill_no: String,
    pub class: String,
    pub withdrawal_id: Option<String>,
    pub channel: Option<String>,
    pub at_channel: Option<Money>,
    pub at_fenrun: Option<Money>,
}

/// A finished day: written in one transaction.
#[derive(Debug, Clone)]
pub struct FinishedReconciliation {
    pub source: String,
    pub bill_date: String,
    pub lines: i64,
    /// `(withdrawal_id, kind)` the file matched.
    pub matches: Vec<(String, String)>,
    pub mismatches: Vec<NewMismatch>,
    pub totals: String,
    pub held: String,
    pub at: DateTime<Utc>,
}

/// A mismatch as stored, with its resolution if one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MismatchRecord {
    pub id: i64,
    pub source: String,
    pub bill_date: String,
    pub bill_no: String,
    pub class: String,
    pub withdrawal_id: Option<String>,
    pub channel: Option<String>,
    pub at_channel: Option<Money>,
    pub at_fenrun: Option<Money>,
    pub found_at: DateTime<Utc>,
    /// `ledger` or `channel`.
    pub resolution: Option<String>,
    pub resolution_reason: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Unresolved mismatches of one channel (or a source's, where the line
/// named no withdrawal of ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedMismatches {
    pub channel: String,
    pub count: i64,
    pub oldest_found_at: DateTime<Utc>,
}

/// What opening a portal sign-in link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalLinkOpening {
    /// This call used the link: sign in as this distributor.
    Opened(DistributorId),
    /// Used before (by this browser or another).
    Used,
    /// Never used, but past its five minutes.
    Expired,
    /// No link has this secret.
    Unknown,
}

/// A webhook endpoint as stored, without its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpointRecord {
    pub id: String,
    pub url: String,
    /// The subscribed types (or `*`).
    pub events: Vec<String>,
    pub description: Option<String>,
    /// `enabled` or `disabled`.
    pub state: String,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The first failure since the last success, while it keeps failing.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Until when the previous secret still signs (a rotation's overlap).
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub pending_deliveries: i64,
    pub failed_deliveries: i64,
}

/// A new endpoint, its secret already sealed.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub sealed_secret: Vec<u8>,
    pub now: DateTime<Utc>,
}

/// A delivery claimed for sending: the event, the endpoint and its sealed
/// secrets (the previous one while it still signs).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    pub lease_until: DateTime<Utc>,
    pub attempts: i64,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    pub endpoint_id: String,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub sealed_previous_secret: Option<Vec<u8>>,
}

/// What one attempt got, to be recorded against its claim.
#[derive(Debug, Clone)]
pub struct WebhookAttempt {
    pub delivery_id: i64,
    pub endpoint_id: String,
    pub lease_until: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub status: Option<i64>,
    pub error: Option<String>,
    /// The start of the answer's body, for ops.
    pub response: Option<String>,
    pub verdict: crate::domain::webhooks::Verdict,
    /// When to try again; `None` gives the delivery up (or it was delivered).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What recording an attempt did beyond the delivery itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptEffect {
    /// The claim had lapsed and another worker recorded it: nothing written.
    pub stale: bool,
    /// The endpoint was disabled, and why.
    pub disabled: Option<String>,
}

/// A delivery as ops sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDeliveryRecord {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub endpoint_id: String,
    pub endpoint_url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_response: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Which deliveries a list shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<String>,
    pub endpoint_id: Option<String>,
    pub limit: i64,
}

/// Why a replay was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayRefusal {
    NotFound,
    EndpointDisabled,
}
