//! The sandbox's Alipay dialect: `POST /gateway.do` as
//! [`crate::alipay::AlipayClient`] speaks it (`gateway`), the
//! `alipay.fund.trans.order.changed` notifications (`notify`), and the fund
//! orders themselves, kept in the shared book by `out_biz_no`.
//!
//! ```text
//! account:   transfer ─▶ SUCCESS (paid, exactly once)
//! bank card: transfer ─▶ DEALING ─(bank_settle_ms)─▶ SUCCESS (paid) ─bounce─▶ REFUND (returned)
//!                              └─(payee in fail_openids)─▶ FAIL
//! ```
//!
//! `SUCCESS`, `FAIL` and `REFUND` each send a notification. A bounce never
//! un-pays: `paid_times` stays 1 and `returned` records that the money came
//! back.

mod gateway;
mod notify;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ring::digest::{SHA256, digest};

pub(crate) use gateway::gateway;

use super::LedgerBill;
use super::state::{Book, Sandbox, beijing_rfc3339, china_datetime, openid_hash};
use crate::alipay::crypto::{AlipayVerifier, AppSigner};
use crate::alipay::{AlipayProduct, FundOrderStatus};
use crate::wechat::BillState;

/// The bounce reason when none is given (`fail_reason` of a `REFUND`).
pub const DEFAULT_BOUNCE_REASON: &str = "收款账户已注销";

/// `error_code` of a bank-card transfer to a payee in `fail_openids`
/// [U: a plausible code, not confirmed in Alipay's docs].
pub(crate) const PLANNED_BANK_FAIL_CODE: &str = "PAYEE_ACCOUNT_STATUS_ERROR";

/// How long after `pay_date` a bank card's money is due at the latest
/// (`arrival_time_end`) [U: Alipay promises T+0 to T+1; the exact rule is
/// not documented here].
const BANK_ARRIVAL_WINDOW: TimeDelta = TimeDelta::hours(24);

/// What the sandbox needs to speak for "Alipay": whose requests to trust,
/// the key it signs with, and the SNs of certificate mode.
pub(crate) struct AlipaySide {
    pub(crate) app_id: String,
    /// The app public key: verifies request signatures in both modes.
    pub(crate) app_verifier: AlipayVerifier,
    /// The test "Alipay" private key: signs answers and notifications.
    pub(crate) signer: AppSigner,
    pub(crate) app_cert_sn: String,
    pub(crate) alipay_root_cert_sn: String,
    /// Named in certificate-mode answers (`alipay_cert_sn`).
    pub(crate) alipay_cert_sn: String,
    /// Where notifications go when a request names no `notify_url`: the
    /// app's gateway address of the open platform.
    pub(crate) default_notify_url: Option<String>,
}

/// One fund order. The payee's account and name are never kept: only a hash
/// to compare replays and a short fingerprint for the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) out_biz_no: String,
    pub(crate) order_id: String,
    pub(crate) pay_fund_order_id: String,
    pub(crate) product: AlipayProduct,
    pub(crate) amount_fen: i64,
    /// SHA-256 of identity, NUL, name.
    payee_key: String,
    identity_hash: String,
    pub(crate) notify_url: Option<String>,
    pub(crate) status: FundOrderStatus,
    pub(crate) error_code: Option<String>,
    pub(crate) fail_reason: Option<String>,
    planned_failure: bool,
    /// Alipay times, `yyyy-MM-dd HH:mm:ss` China time, sandbox clock.
    pub(crate) trans_date: String,
    pub(crate) pay_date: Option<String>,
    pub(crate) arrival_time_end: Option<String>,
    /// RFC 3339, sandbox clock, for the ledger.
    paid_at: Option<String>,
    returned_at: Option<String>,
    pub(crate) order_fee_fen: i64,
    create_count: u32,
    paid_times: u32,
    callbacks_delivered: u32,
}

/// A transfer request that passed validation.
pub(crate) struct NewOrder {
    pub(crate) out_biz_no: String,
    pub(crate) product: AlipayProduct,
    pub(crate) amount_fen: i64,
    pub(crate) identity: String,
    pub(crate) name: String,
    pub(crate) notify_url: Option<String>,
}

impl NewOrder {
    fn payee_key(&self) -> String {
        let mut input = Vec::with_capacity(self.identity.len() + self.name.len() + 1);
        input.extend_from_slice(self.identity.as_bytes());
        input.push(0);
        input.extend_from_slice(self.name.as_bytes());
        hex(digest(&SHA256, &input).as_ref())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) enum OrderCommit {
    Created(Order),
    Replayed(Order),
    /// Same `out_biz_no`, other amount, product or payee.
    Conflict,
    Full,
}

/// Why a bounce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BounceRefusal {
    #[error("no Alipay bill by that out_biz_no")]
    NoSuchBill,
    #[error("only bank-card bills bounce; this one paid an Alipay account")]
    NotBankCard,
    #[error("only a SUCCESS bill bounces; this one is {0}")]
    NotSuccess(FundOrderStatus),
}

impl Order {
    /// The nearest WeChat state, so code that reads `LedgerBill::state`
    /// for one channel reads the others too; the exact status is in
    /// `alipay_status`.
    fn bill_state(&self) -> BillState {
        match self.status {
            FundOrderStatus::Dealing => BillState::Processing,
            // A bounce follows a success: the transfer did succeed, and
            // `returned` says the money came back.
            FundOrderStatus::Success | FundOrderStatus::Refund => BillState::Success,
            FundOrderStatus::Fail => BillState::Fail,
        }
    }

    pub(crate) fn ledger_bill(&self) -> LedgerBill {
        LedgerBill {
            out_bill_no: self.out_biz_no.clone(),
            transfer_bill_no: self.order_id.clone(),
            amount_fen: self.amount_fen,
            state: self.bill_state(),
            fail_reason: self.error_code.clone().or_else(|| self.fail_reason.clone()),
            openid_hash: self.identity_hash.clone(),
            create_count: self.create_count,
            paid_times: self.paid_times,
            callbacks_delivered: self.callbacks_delivered,
            channel: self.product.channel(),
            order_id: self.order_id.clone(),
            alipay_status: Some(self.status),
            paid_at: self.paid_at.clone(),
            returned: self.status == FundOrderStatus::Refund,
            returned_at: self.returned_at.clone(),
            order_fee_fen: self.order_fee_fen,
        }
    }

    fn pay(&mut self, now: DateTime<Utc>) {
        assert_eq!(self.paid_times, 0, "a fund order is paid once");
        self.status = FundOrderStatus::Success;
        self.paid_times = 1;
        self.pay_date = Some(china_datetime(now));
        self.paid_at = Some(beijing_rfc3339(now));
        if self.product == AlipayProduct::BankCard {
            self.arrival_time_end = Some(china_datetime(now + BANK_ARRIVAL_WINDOW));
        }
    }
}

impl Book {
    pub(crate) fn alipay_order(&self, out_biz_no: &str) -> Option<&Order> {
        self.alipay_orders.get(out_biz_no)
    }

    /// Creates the order (an account transfer is paid at once), or replays
    /// it when the payload matches.
    pub(crate) fn alipay_commit(
        &mut self,
        new: NewOrder,
        planned_failure: bool,
        bank_order_fee_fen: i64,
    ) -> OrderCommit {
        let payee_key = new.payee_key();
        if let Some(order) = self.alipay_orders.get_mut(&new.out_biz_no) {
            if order.amount_fen != new.amount_fen
                || order.product != new.product
                || order.payee_key != payee_key
            {
                return OrderCommit::Conflict;
            }
            order.create_count = order.create_count.saturating_add(1);
            return OrderCommit::Replayed(order.clone());
        }
        if self.alipay_orders.len() >= super::state::MAX_BILLS {
            return OrderCommit::Full;
        }
        self.next_seq += 1;
        let now = self.now();
        let day = now.format("%Y%m%d");
        let mut order = Order {
            order_id: format!("{day}1100{:08}", self.next_seq),
            pay_fund_order_id: format!("{day}1107{:08}", self.next_seq),
            out_biz_no: new.out_biz_no,
            product: new.product,
            amount_fen: new.amount_fen,
            payee_key,
            identity_hash: openid_hash(&new.identity),
            notify_url: new.notify_url,
            status: FundOrderStatus::Dealing,
            error_code: None,
            fail_reason: None,
            planned_failure,
            trans_date: china_datetime(now),
            pay_date: None,
            arrival_time_end: None,
            paid_at: None,
            returned_at: None,
            order_fee_fen: match new.product {
                AlipayProduct::AlipayAccount => 0,
                AlipayProduct::BankCard => bank_order_fee_fen,
            },
            create_count: 1,
            paid_times: 0,
            callbacks_delivered: 0,
        };
        if order.product == AlipayProduct::AlipayAccount {
            order.pay(now);
        }
        self.alipay_orders
            .insert(order.out_biz_no.clone(), order.clone());
        OrderCommit::Created(order)
    }

    /// The bank settles a `DEALING` order: `SUCCESS`, or `FAIL` when
    /// planned. `None` if it is not dealing (or not known).
    pub(crate) fn alipay_settle(&mut self, out_biz_no: &str) -> Option<Order> {
        let now = self.now();
        let order = self.alipay_orders.get_mut(out_biz_no)?;
        if order.status != FundOrderStatus::Dealing {
            return None;
        }
        if order.planned_failure {
            order.status = FundOrderStatus::Fail;
            order.error_code = Some(PLANNED_BANK_FAIL_CODE.to_owned());
            order.fail_reason = Some("收款账户状态异常".to_owned());
        } else {
            order.pay(now);
        }
        Some(order.clone())
    }

    /// The bank returns a paid bank-card transfer: `REFUND`.
    pub(crate) fn alipay_bounce(
        &mut self,
        out_biz_no: &str,
        reason: &str,
    ) -> Result<Order, BounceRefusal> {
        let now = self.now();
        let order = self
            .alipay_orders
            .get_mut(out_biz_no)
            .ok_or(BounceRefusal::NoSuchBill)?;
        if order.product != AlipayProduct::BankCard {
            return Err(BounceRefusal::NotBankCard);
        }
        if order.status != FundOrderStatus::Success {
            return Err(BounceRefusal::NotSuccess(order.status));
        }
        assert_eq!(order.paid_times, 1, "a SUCCESS order was paid once");
        order.status = FundOrderStatus::Refund;
        order.fail_reason = Some(reason.to_owned());
        order.returned_at = Some(beijing_rfc3339(now));
        Ok(order.clone())
    }

    pub(crate) fn alipay_record_delivery(&mut self, out_biz_no: &str) {
        if let Some(order) = self.alipay_orders.get_mut(out_biz_no) {
            order.callbacks_delivered = order.callbacks_delivered.saturating_add(1);
        }
    }
}

impl Sandbox {
    /// Whatever follows a commit: an account order's notification, a bank
    /// order's settlement later.
    pub(crate) fn alipay_after_commit(self: &Arc<Self>, order: &Order) {
        match order.status {
            FundOrderStatus::Dealing => {
                let settle_ms = self.faults().bank_settle_ms;
                let sandbox = Arc::clone(self);
                let out_biz_no = order.out_biz_no.clone();
                self.runtime.spawn(async move {
                    if sandbox.sleep(Duration::from_millis(settle_ms)).await {
                        sandbox.alipay_settle(&out_biz_no);
                    }
                });
            }
            FundOrderStatus::Success | FundOrderStatus::Fail | FundOrderStatus::Refund => {
                notify::dispatch(self, order.clone());
            }
        }
    }

    /// Settles a dealing bank-card order, notifies, and, if the faults say
    /// so, bounces it later.
    pub(crate) fn alipay_settle(self: &Arc<Self>, out_biz_no: &str) {
        let settled = self.book().alipay_settle(out_biz_no);
        let Some(order) = settled else {
            return;
        };
        tracing::info!(out_biz_no, status = %order.status, "sandbox Alipay order settled");
        let faults = self.faults();
        if order.status == FundOrderStatus::Success && faults.bank_bounces(out_biz_no) {
            let sandbox = Arc::clone(self);
            let out_biz_no = out_biz_no.to_owned();
            self.runtime.spawn(async move {
                if sandbox
                    .sleep(Duration::from_millis(faults.bank_bounce_after_ms))
                    .await
                {
                    // It may have been bounced by hand meanwhile; then
                    // there is nothing left to do.
                    let _ = sandbox.alipay_bounce(&out_biz_no, DEFAULT_BOUNCE_REASON);
                }
            });
        }
        notify::dispatch(self, order);
    }

    pub(crate) fn alipay_bounce(
        self: &Arc<Self>,
        out_biz_no: &str,
        reason: &str,
    ) -> Result<FundOrderStatus, BounceRefusal> {
        let order = self.book().alipay_bounce(out_biz_no, reason)?;
        tracing::info!(out_biz_no, "sandbox Alipay order bounced");
        let status = order.status;
        notify::dispatch(self, order);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_order(out_biz_no: &str, product: AlipayProduct, amount_fen: i64) -> NewOrder {
        NewOrder {
            out_biz_no: out_biz_no.to_owned(),
            product,
            amount_fen,
            identity: "6222020000000000001".to_owned(),
            name: "张三".to_owned(),
            notify_url: None,
        }
    }

    #[test]
    fn a_bank_order_deals_then_succeeds_then_bounces_and_stays_paid_once() {
        let mut book = Book::default();
        let OrderCommit::Created(order) =
            book.alipay_commit(new_order("wd0001", AlipayProduct::BankCard, 100), false, 3)
        else {
            panic!("created");
        };
        assert_eq!(order.status, FundOrderStatus::Dealing);
        assert!(matches!(
            book.alipay_bounce("wd0001", "x"),
            Err(BounceRefusal::NotSuccess(FundOrderStatus::Dealing))
        ));
        assert!(matches!(
            book.alipay_commit(new_order("wd0001", AlipayProduct::BankCard, 100), false, 3),
            OrderCommit::Replayed(_)
        ));
        assert!(matches!(
            book.alipay_commit(new_order("wd0001", AlipayProduct::BankCard, 101), false, 3),
            OrderCommit::Conflict
        ));
        let mut other_payee = new_order("wd0001", AlipayProduct::BankCard, 100);
        other_payee.name = "李四".to_owned();
        assert!(matches!(
            book.alipay_commit(other_payee, false, 3),
            OrderCommit::Conflict
        ));
        assert_eq!(
            book.alipay_settle("wd0001").unwrap().status,
            FundOrderStatus::Success
        );
        assert!(book.alipay_settle("wd0001").is_none());
        let bounced = book.alipay_bounce("wd0001", "收款账户已注销").unwrap();
        assert_eq!(bounced.status, FundOrderStatus::Refund);
        assert!(book.alipay_bounce("wd0001", "again").is_err());
        let ledger = book.ledger();
        let bill = &ledger.bills[0];
        assert_eq!(bill.channel, crate::Channel::Bank);
        assert_eq!(
            (bill.paid_times, bill.returned, bill.order_fee_fen),
            (1, true, 3)
        );
        assert!(bill.paid_at.is_some() && bill.returned_at.is_some());
        assert_eq!(
            (ledger.total_paid_fen, ledger.total_returned_fen),
            (100, 100)
        );
        assert_eq!(bill.create_count, 2);
        assert!(!format!("{ledger:?}").contains("6222020000000000001"));
    }

    #[test]
    fn an_account_order_is_paid_at_once_and_never_bounces() {
        let mut book = Book::default();
        let OrderCommit::Created(order) = book.alipay_commit(
            new_order("wd0002", AlipayProduct::AlipayAccount, 250),
            false,
            3,
        ) else {
            panic!("created");
        };
        assert_eq!(
            (order.status, order.order_fee_fen),
            (FundOrderStatus::Success, 0)
        );
        assert_eq!(
            book.alipay_bounce("wd0002", "x").unwrap_err(),
            BounceRefusal::NotBankCard
        );
        assert_eq!(
            book.alipay_bounce("nosuch", "x").unwrap_err(),
            BounceRefusal::NoSuchBill
        );
        let ledger = book.ledger();
        let alipay = &ledger.channels[1];
        assert_eq!(
            (alipay.channel, alipay.sent_count, alipay.sent_fen),
            (crate::Channel::Alipay, 1, 250)
        );
    }

    #[test]
    fn a_planned_bank_failure_moves_no_money() {
        let mut book = Book::default();
        book.alipay_commit(new_order("wd0003", AlipayProduct::BankCard, 100), true, 0);
        let failed = book.alipay_settle("wd0003").unwrap();
        assert_eq!(failed.status, FundOrderStatus::Fail);
        assert_eq!(failed.error_code.as_deref(), Some(PLANNED_BANK_FAIL_CODE));
        assert_eq!(book.ledger().total_paid_fen, 0);
    }
}
