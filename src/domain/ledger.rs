//! The ledger's rules, without storage: account names, balanced transfers,
//! and the fingerprint that makes a transfer idempotent.
//!
//! A [`Transfer`] can only be built balanced (its postings sum to zero), so
//! the store never sees an unbalanced one; the store then applies it exactly
//! once per idempotency key and keeps distributor balances in step.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::digest::sha256_hex;

use crate::domain::ids::DistributorId;
use crate::domain::money::Money;

/// The three balances a distributor has (SPEC §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Commission inside the T+3 hold (待结算).
    Pending,
    /// Released commission that may be withdrawn; negative while a clawback debt is open.
    Available,
    /// Reserved by a withdrawal in flight.
    Withdrawing,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Pending, Bucket::Available, Bucket::Withdrawing];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Pending => "pending",
            Bucket::Available => "available",
            Bucket::Withdrawing => "withdrawing",
        }
    }

    /// Only available balance may be driven below zero, and only by a transfer
    /// that explicitly allows it (a clawback); the others never.
    pub fn may_go_negative(self) -> bool {
        match self {
            Bucket::Pending | Bucket::Withdrawing => false,
            Bucket::Available => true,
        }
    }
}

/// The platform's accounts; their balances are derived from postings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlatformAccount {
    CommissionExpense,
    /// What the monthly team bonus (团队奖) costs, kept apart from commission.
    TeamBonusExpense,
    TaxPayable,
    FeeIncome,
    WechatClearing,
    AlipayClearing,
    BankClearing,
}

impl PlatformAccount {
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformAccount::CommissionExpense => "platform:commission_expense",
            PlatformAccount::TeamBonusExpense => "platform:team_bonus_expense",
            PlatformAccount::TaxPayable => "platform:tax_payable",
            PlatformAccount::FeeIncome => "platform:fee_income",
            PlatformAccount::WechatClearing => "platform:clearing:wechat",
            PlatformAccount::AlipayClearing => "platform:clearing:alipay",
            PlatformAccount::BankClearing => "platform:clearing:bank",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountId {
    Distributor(DistributorId, Bucket),
    Platform(PlatformAccount),
}

impl AccountId {
    /// Whether the store keeps a running balance for this account (distributor
    /// accounts) or derives it from postings (platform accounts).
    pub fn tracks_balance(&self) -> bool {
        matches!(self, AccountId::Distributor(..))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Distributor(id, bucket) => write!(f, "distributor:{id}:{}", bucket.as_str()),
            AccountId::Platform(account) => f.write_str(account.as_str()),
        }
    }
}

/// What a transfer is for; stored with it so the journal reads as a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransferKind {
    CommissionPending,
    CommissionReversed,
    CommissionReleased,
    CommissionClawedBack,
    /// A month's team bonus, paid straight to available at month close.
    TeamBonus,
    WithdrawalReserved,
    WithdrawalReturned,
    WithdrawalPaid,
    /// A paid withdrawal the bank sent back (退票): the paid legs reversed
    /// into withdrawing, from where [`withdrawal_return`] frees the gross.
    WithdrawalBounced,
    Adjustment,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::CommissionPending => "commission_pending",
            TransferKind::CommissionReversed => "commission_reversed",
            TransferKind::CommissionReleased => "commission_released",
            TransferKind::CommissionClawedBack => "commission_clawed_back",
            TransferKind::TeamBonus => "team_bonus",
            TransferKind::WithdrawalReserved => "withdrawal_reserved",
            TransferKind::WithdrawalReturned => "withdrawal_returned",
            TransferKind::WithdrawalPaid => "withdrawal_paid",
            TransferKind::WithdrawalBounced => "withdrawal_bounced",
            TransferKind::Adjustment => "adjustment",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: AccountId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("a transfer needs at least two postings")]
    TooFewPostings,
    #[error("a posting of zero moves nothing")]
    ZeroPosting,
    #[error("postings sum to {0}, not zero")]
    Unbalanced(Money),
    #[error("the postings overflow")]
    Overflow,
    #[error("idempotency key must be 1–200 printable ASCII characters")]
    BadKey,
}

/// Longest idempotency key; long enough for `{kind}:{order_id}:{step}:{n}`.
const MAX_KEY_CHARS: usize = 200;

/// A balanced movement of money, with the key that makes it happen once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    key: String,
    kind: TransferKind,
    postings: Vec<Posting>,
    overdraft_allowed: Vec<AccountId>,
}

impl Transfer {
    pub fn new(
        key: impl Into<String>,
        kind: TransferKind,
        postings: Vec<Posting>,
    ) -> Result<Transfer, TransferError> {
        let key = key.into();
        if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(TransferError::BadKey);
        }
        if postings.len() < 2 {
            return Err(TransferError::TooFewPostings);
        }
        if postings.iter().any(|posting| posting.amount.is_zero()) {
            return Err(TransferError::ZeroPosting);
        }
        let total = Money::checked_sum(postings.iter().map(|posting| posting.amount))
            .ok_or(TransferError::Overflow)?;
        if !total.is_zero() {
            return Err(TransferError::Unbalanced(total));
        }
        // Each account's net must fit too (postings to one account can
        // overflow while the running total of all of them does not), and no
        // amount may be i64::MIN fen, which has no opposite to reverse it with.
        let mut net: BTreeMap<&AccountId, Money> = BTreeMap::new();
        for posting in &postings {
            posting
                .amount
                .checked_neg()
                .ok_or(TransferError::Overflow)?;
            let entry = net.entry(&posting.account).or_default();
            *entry = entry
                .checked_add(posting.amount)
                .ok_or(TransferError::Overflow)?;
        }
        Ok(Transfer {
            key,
            kind,
            postings,
            overdraft_allowed: Vec::new(),
        })
    }

    /// A transfer moving `amount` from one account to another.
    pub fn between(
        key: impl Into<String>,
        kind: TransferKind,
        from: AccountId,
        to: AccountId,
        amount: Money,
    ) -> Result<Transfer, TransferError> {
        let negated = amount.checked_neg().ok_or(TransferError::Overflow)?;
        Transfer::new(
            key,
            kind,
            vec![
                Posting {
                    account: from,
                    amount: negated,
                },
                Posting {
                    account: to,
                    amount,
                },
            ],
        )
    }

    /// Lets this transfer drive `account` below zero (a clawback creating a
    /// debt). The database still refuses it for accounts that may never be negative.
    pub fn allowing_overdraft(mut self, account: AccountId) -> Transfer {
        self.overdraft_allowed.push(account);
        self
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn kind(&self) -> TransferKind {
        self.kind
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    pub fn allows_overdraft(&self, account: &AccountId) -> bool {
        self.overdraft_allowed.contains(account)
    }

    /// Net change per account, in account order: the order the store locks
    /// balance rows in, so two transfers never wait on each other in a cycle.
    pub fn net_by_account(&self) -> BTreeMap<&AccountId, Money> {
        let mut net: BTreeMap<&AccountId, Money> = BTreeMap::new();
        for posting in &self.postings {
            let entry = net.entry(&posting.account).or_default();
            *entry = entry
                .checked_add(posting.amount)
                .expect("Transfer::new refuses a transfer whose net per account overflows");
        }
        net
    }

    /// SHA-256 of the transfer's meaning (kind, postings regardless of order,
    /// overdraft permissions): a replay with the same key must match it.
    pub fn fingerprint(&self) -> String {
        let mut lines: Vec<String> = self
            .postings
            .iter()
            .map(|posting| format!("{}={}", posting.account, posting.amount.fen()))
            .collect();
        lines.sort();
        let mut overdraft: Vec<String> = self
            .overdraft_allowed
            .iter()
            .map(|a| a.to_string())
            .collect();
        overdraft.sort();
        let text = format!(
            "{}\n{}\noverdraft:{}",
            self.kind.as_str(),
            lines.join("\n"),
            overdraft.join(",")
        );
        sha256_hex(text.as_bytes())
    }
}

/// The pending credit of an order's commission lines: expense → each
/// beneficiary's pending balance. `None` when the order earns nothing.
pub fn commission_pending(
    order_id: &str,
    lines: &[(DistributorId, Money)],
) -> Result<Option<Transfer>, TransferError> {
    commission_movement(
        format!("order:{order_id}:pending"),
        TransferKind::CommissionPending,
        lines,
        |beneficiary| {
            (
                AccountId::Platform(PlatformAccount::CommissionExpense),
                AccountId::Distributor(beneficiary, Bucket::Pending),
            )
        },
    )
}

/// The release of an order's lines at the end of the hold: pending →
/// available, line by line, with the final amounts.
pub fn commission_release(
    order_id: &str,
    lines: &[(DistributorId, Money)],
) -> Result<Option<Transfer>, TransferError> {
    commission_movement(
        format!("order:{order_id}:release"),
        TransferKind::CommissionReleased,
        lines,
        |beneficiary| {
            (
                AccountId::Distributor(beneficiary.clone(), Bucket::Pending),
                AccountId::Distributor(beneficiary, Bucket::Available),
            )
        },
    )
}

/// A month's team bonus (团队奖): team bonus expense → the leader's
/// available balance, once per distributor and month (`month` is `YYYY-MM`).
pub fn team_bonus(
    distributor: &DistributorId,
    month: &str,
    amount: Money,
) -> Result<Transfer, TransferError> {
    Transfer::between(
        format!("team_bonus:{distributor}:{month}"),
        TransferKind::TeamBonus,
        AccountId::Platform(PlatformAccount::TeamBonusExpense),
        AccountId::Distributor(distributor.clone(), Bucket::Available),
        amount,
    )
}

/// A withdrawal's reserve: available → withdrawing, in the request's transaction.
pub fn withdrawal_reserve(
    withdrawal_id: &str,
    distributor: &DistributorId,
    gross: Money,
) -> Result<Transfer, TransferError> {
    Transfer::between(
        format!("withdrawal:{withdrawal_id}:reserve"),
        TransferKind::WithdrawalReserved,
        AccountId::Distributor(distributor.clone(), Bucket::Available),
        AccountId::Distributor(distributor.clone(), Bucket::Withdrawing),
        gross,
    )
}

/// A withdrawal's funds going back (rejected, cancelled, failed): withdrawing → available.
pub fn withdrawal_return(
    withdrawal_id: &str,
    distributor: &DistributorId,
    gross: Money,
) -> Result<Transfer, TransferError> {
    Transfer::between(
        format!("withdrawal:{withdrawal_id}:return"),
        TransferKind::WithdrawalReturned,
        AccountId::Distributor(distributor.clone(), Bucket::Withdrawing),
        AccountId::Distributor(distributor.clone(), Bucket::Available),
        gross,
    )
}

/// A paid withdrawal: withdrawing → the channel's clearing account (net) +
/// tax payable + fee income. Zero legs are left out.
pub fn withdrawal_paid(
    withdrawal_id: &str,
    distributor: &DistributorId,
    clearing: PlatformAccount,
    net: Money,
    tax: Money,
    fee: Money,
) -> Result<Transfer, TransferError> {
    let gross = Money::checked_sum([net, tax, fee]).ok_or(TransferError::Overflow)?;
    let mut postings = vec![Posting {
        account: AccountId::Distributor(distributor.clone(), Bucket::Withdrawing),
        amount: gross.checked_neg().ok_or(TransferError::Overflow)?,
    }];
    for (account, amount) in [
        (clearing, net),
        (PlatformAccount::TaxPayable, tax),
        (PlatformAccount::FeeIncome, fee),
    ] {
        if !amount.is_zero() {
            postings.push(Posting {
                account: AccountId::Platform(account),
                amount,
            });
        }
    }
    Transfer::new(
        format!("withdrawal:{withdrawal_id}:paid"),
        TransferKind::WithdrawalPaid,
        postings,
    )
}

/// A paid withdrawal bounced by the bank (退票): each leg of
/// [`withdrawal_paid`] back into withdrawing (the clearing account gets the
/// net back from the channel, the tax is no longer payable, the fee no
/// longer earned). The caller then returns the gross to available with
/// [`withdrawal_return`], in the same transaction.
pub fn withdrawal_bounced(
    withdrawal_id: &str,
    distributor: &DistributorId,
    clearing: PlatformAccount,
    net: Money,
    tax: Money,
    fee: Money,
) -> Result<Transfer, TransferError> {
    let paid = withdrawal_paid(withdrawal_id, distributor, clearing, net, tax, fee)?;
    let reversed = paid
        .postings()
        .iter()
        .map(|posting| {
            Ok(Posting {
                account: posting.account.clone(),
                amount: posting
                    .amount
                    .checked_neg()
                    .ok_or(TransferError::Overflow)?,
            })
        })
        .collect::<Result<Vec<_>, TransferError>>()?;
    Transfer::new(
        format!("withdrawal:{withdrawal_id}:bounced"),
        TransferKind::WithdrawalBounced,
        reversed,
    )
}

/// The change a refund makes to an order's lines, as `(beneficiary, new −
/// old)` deltas: inside the hold it moves pending; after the release it
/// moves available and may leave a debt (a clawback). `None` when nothing changes.
pub fn commission_refund(
    order_id: &str,
    refund_id: &str,
    deltas: &[(DistributorId, Money)],
    after_release: bool,
) -> Result<Option<Transfer>, TransferError> {
    commission_reversal(
        format!("order:{order_id}:refund:{refund_id}"),
        deltas,
        after_release,
    )
}

/// Ops voiding an order's commission: every line's amount reversed, as a
/// full refund would — from pending inside the hold, clawed back from
/// available after the release (which may leave a debt). One per order
/// (key `order:{id}:void`). `None` when there was nothing left to void.
pub fn commission_void(
    order_id: &str,
    deltas: &[(DistributorId, Money)],
    after_release: bool,
) -> Result<Option<Transfer>, TransferError> {
    commission_reversal(format!("order:{order_id}:void"), deltas, after_release)
}

/// A change to an order's commission after ingest under `key`: deltas on
/// pending inside the hold, on available (overdraft allowed) after it.
fn commission_reversal(
    key: String,
    deltas: &[(DistributorId, Money)],
    after_release: bool,
) -> Result<Option<Transfer>, TransferError> {
    let bucket = if after_release {
        Bucket::Available
    } else {
        Bucket::Pending
    };
    let kind = if after_release {
        TransferKind::CommissionClawedBack
    } else {
        TransferKind::CommissionReversed
    };
    let mut postings = Vec::new();
    let mut total = Money::ZERO;
    for (beneficiary, delta) in deltas {
        if delta.is_zero() {
            continue;
        }
        postings.push(Posting {
            account: AccountId::Distributor(beneficiary.clone(), bucket),
            amount: *delta,
        });
        total = total.checked_add(*delta).ok_or(TransferError::Overflow)?;
    }
    if postings.is_empty() {
        return Ok(None);
    }
    if !total.is_zero() {
        let expense = total.checked_neg().ok_or(TransferError::Overflow)?;
        postings.push(Posting {
            account: AccountId::Platform(PlatformAccount::CommissionExpense),
            amount: expense,
        });
    }
    let mut transfer = Transfer::new(key, kind, postings)?;
    if after_release {
        for (beneficiary, _) in deltas {
            transfer = transfer.allowing_overdraft(AccountId::Distributor(
                beneficiary.clone(),
                Bucket::Available,
            ));
        }
    }
    Ok(Some(transfer))
}

fn commission_movement(
    key: String,
    kind: TransferKind,
    lines: &[(DistributorId, Money)],
    accounts: impl Fn(DistributorId) -> (AccountId, AccountId),
) -> Result<Option<Transfer>, TransferError> {
    let mut postings = Vec::new();
    for (beneficiary, amount) in lines {
        if amount.is_zero() {
            continue;
        }
        let (from, to) = accounts(beneficiary.clone());
        let negated = amount.checked_neg().ok_or(TransferError::Overflow)?;
        postings.push(Posting {
            account: from,
            amount: negated,
        });
        postings.push(Posting {
            account: to,
            amount: *amount,
        });
    }
    if postings.is_empty() {
        return Ok(None);
    }
    Transfer::new(key, kind, postings).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_reverses_every_leg_of_the_payment_under_its_own_key() {
        let distributor = DistributorId::parse("d1").unwrap();
        let money = |text: &str| Money::parse(text).unwrap();
        let paid = withdrawal_paid(
            "wd1",
            &distributor,
            PlatformAccount::BankClearing,
            money("860.00"),
            money("140.00"),
            money("5.00"),
        )
        .unwrap();
        let bounced = withdrawal_bounced(
            "wd1",
            &distributor,
            PlatformAccount::BankClearing,
            money("860.00"),
            money("140.00"),
            money("5.00"),
        )
        .unwrap();
        assert_eq!(bounced.key(), "withdrawal:wd1:bounced");
        assert_eq!(bounced.kind(), TransferKind::WithdrawalBounced);
        for (forth, back) in paid.postings().iter().zip(bounced.postings()) {
            assert_eq!(forth.account, back.account);
            assert_eq!(forth.amount.checked_add(back.amount), Some(Money::ZERO));
        }
        assert_eq!(paid.postings().len(), bounced.postings().len());
    }

    #[test]
    fn a_paid_withdrawal_splits_the_gross_and_leaves_out_zero_legs() {
        let distributor = DistributorId::parse("d1").unwrap();
        let paid = withdrawal_paid(
            "wd1",
            &distributor,
            PlatformAccount::WechatClearing,
            Money::from_fen(254_500),
            Money::from_fen(44_000),
            Money::from_fen(1_500),
        )
        .unwrap();
        assert_eq!(paid.key(), "withdrawal:wd1:paid");
        assert_eq!(paid.postings().len(), 4);
        assert_eq!(
            paid.postings()[0],
            Posting {
                account: AccountId::Distributor(distributor.clone(), Bucket::Withdrawing),
                amount: Money::from_fen(-300_000),
            }
        );
        let untaxed = withdrawal_paid(
            "wd2",
            &distributor,
            PlatformAccount::WechatClearing,
            Money::from_fen(50_000),
            Money::ZERO,
            Money::ZERO,
        )
        .unwrap();
        assert_eq!(untaxed.postings().len(), 2);
        let reserve = withdrawal_reserve("wd2", &distributor, Money::from_fen(50_000)).unwrap();
        let back = withdrawal_return("wd2", &distributor, Money::from_fen(50_000)).unwrap();
        assert_eq!(reserve.postings()[0].account, back.postings()[1].account);
        assert_ne!(reserve.key(), back.key());
    }

    fn available(id: &str) -> AccountId {
        AccountId::Distributor(DistributorId::parse(id).unwrap(), Bucket::Available)
    }

    fn expense() -> AccountId {
        AccountId::Platform(PlatformAccount::CommissionExpense)
    }

    #[test]
    fn a_balanced_transfer_is_accepted() {
        let transfer = Transfer::between(
            "k1",
            TransferKind::Adjustment,
            expense(),
            available("d1"),
            Money::from_fen(100),
        )
        .unwrap();
        assert_eq!(transfer.postings().len(), 2);
        assert_eq!(
            transfer.net_by_account()[&available("d1")],
            Money::from_fen(100)
        );
    }

    #[test]
    fn an_unbalanced_transfer_cannot_be_built() {
        let postings = vec![
            Posting {
                account: expense(),
                amount: Money::from_fen(-100),
            },
            Posting {
                account: available("d1"),
                amount: Money::from_fen(99),
            },
        ];
        assert_eq!(
            Transfer::new("k", TransferKind::Adjustment, postings),
            Err(TransferError::Unbalanced(Money::from_fen(-1)))
        );
    }

    #[test]
    fn zero_postings_and_single_postings_are_refused() {
        let zero = vec![
            Posting {
                account: expense(),
                amount: Money::ZERO,
            },
            Posting {
                account: available("d1"),
                amount: Money::ZERO,
            },
        ];
        assert_eq!(
            Transfer::new("k", TransferKind::Adjustment, zero),
            Err(TransferError::ZeroPosting)
        );
        let single = vec![Posting {
            account: expense(),
            amount: Money::from_fen(1),
        }];
        assert_eq!(
            Transfer::new("k", TransferKind::Adjustment, single),
            Err(TransferError::TooFewPostings)
        );
    }

    #[test]
    fn the_fingerprint_ignores_posting_order_but_not_amounts() {
        let a = Posting {
            account: expense(),
            amount: Money::from_fen(-100),
        };
        let b = Posting {
            account: available("d1"),
            amount: Money::from_fen(100),
        };
        let one = Transfer::new("k", TransferKind::Adjustment, vec![a.clone(), b.clone()]).unwrap();
        let two = Transfer::new("k", TransferKind::Adjustment, vec![b, a]).unwrap();
        assert_eq!(one.fingerprint(), two.fingerprint());
        let other = Transfer::between(
            "k",
            TransferKind::Adjustment,
            expense(),
            available("d1"),
            Money::from_fen(101),
        )
        .unwrap();
        assert_ne!(one.fingerprint(), other.fingerprint());
    }

    #[test]
    fn an_order_moves_from_pending_to_available_line_by_line() {
        let lines = vec![
            (DistributorId::parse("d1").unwrap(), Money::from_fen(1000)),
            (DistributorId::parse("d2").unwrap(), Money::from_fen(500)),
            (DistributorId::parse("d3").unwrap(), Money::ZERO),
        ];
        let pending = commission_pending("o1", &lines).unwrap().unwrap();
        assert_eq!(pending.key(), "order:o1:pending");
        assert_eq!(
            pending.net_by_account()[&AccountId::Platform(PlatformAccount::CommissionExpense)],
            Money::from_fen(-1500)
        );
        let release = commission_release("o1", &lines).unwrap().unwrap();
        assert_eq!(release.postings().len(), 4, "zero lines move nothing");
        assert_eq!(
            release.net_by_account()[&available("d1")],
            Money::from_fen(1000)
        );
        assert!(commission_release("o2", &[]).unwrap().is_none());
    }

    #[test]
    fn a_refund_after_release_is_a_clawback_that_may_overdraw_available() {
        let deltas = vec![(DistributorId::parse("d1").unwrap(), Money::from_fen(-300))];
        let clawback = commission_refund("o1", "r1", &deltas, true)
            .unwrap()
            .unwrap();
        assert_eq!(clawback.kind(), TransferKind::CommissionClawedBack);
        assert!(clawback.allows_overdraft(&available("d1")));
        assert_eq!(clawback.net_by_account()[&expense()], Money::from_fen(300));
        let in_hold = commission_refund("o1", "r1", &deltas, false)
            .unwrap()
            .unwrap();
        assert_eq!(in_hold.kind(), TransferKind::CommissionReversed);
        assert!(
            commission_refund(
                "o1",
                "r2",
                &[(DistributorId::parse("d1").unwrap(), Money::ZERO)],
                false
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn a_transfer_whose_amounts_or_net_per_account_overflow_cannot_be_built() {
        let max = Money::from_fen(i64::MAX);
        let min = Money::from_fen(-i64::MAX);
        // The running total stays in range (MAX, 0, MAX, 0) but d1's net is 2 × MAX.
        let postings = vec![
            Posting {
                account: available("d1"),
                amount: max,
            },
            Posting {
                account: expense(),
                amount: min,
            },
            Posting {
                account: available("d1"),
                amount: max,
            },
            Posting {
                account: expense(),
                amount: min,
            },
        ];
        assert_eq!(
            Transfer::new("k", TransferKind::Adjustment, postings),
            Err(TransferError::Overflow)
        );
        // i64::MIN fen has no opposite.
        let postings = vec![
            Posting {
                account: available("d1"),
                amount: Money::from_fen(i64::MIN),
            },
            Posting {
                account: expense(),
                amount: Money::from_fen(i64::MAX),
            },
            Posting {
                account: available("d2"),
                amount: Money::from_fen(1),
            },
        ];
        assert_eq!(
            Transfer::new("k", TransferKind::Adjustment, postings),
            Err(TransferError::Overflow)
        );
        assert_eq!(
            Transfer::between(
                "k",
                TransferKind::Adjustment,
                expense(),
                available("d1"),
                Money::from_fen(i64::MIN)
            ),
            Err(TransferError::Overflow)
        );
        // The largest amount that can be moved still can be.
        let largest = Transfer::between(
            "k",
            TransferKind::Adjustment,
            expense(),
            available("d1"),
            max,
        )
        .unwrap();
        assert_eq!(largest.net_by_account()[&available("d1")], max);
        assert_eq!(largest.net_by_account()[&expense()], min);
    }

    #[test]
    fn keys_must_be_printable_and_bounded() {
        let build = |key: &str| {
            Transfer::between(
                key,
                TransferKind::Adjustment,
                expense(),
                available("d1"),
                Money::from_fen(1),
            )
        };
        assert_eq!(build(""), Err(TransferError::BadKey));
        assert_eq!(build("a b"), Err(TransferError::BadKey));
        assert_eq!(build(&"k".repeat(201)), Err(TransferError::BadKey));
        assert!(build("order:o-1:pending").is_ok());
    }
}
