//! The sandbox's memory: its keys, its faults, and its book of bills keyed by
//! `out_bill_no`, with the one state machine every bill follows.
//!
//! ```text
//! create ─▶ WAIT_USER_CONFIRM ─confirm─▶ SUCCESS (paid, exactly once)
//!              │   │                └──▶ FAIL    (payee in fail_openids)
//!              │   └─cancel─▶ CANCELING ─(settles)─▶ CANCELLED
//!              └─expire─────────────────────────────▶ CANCELLED
//! ```
//!
//! Every move into a final state hands a snapshot of the bill to `notify`,
//! which sends the callback. Locks are std mutexes, never held across an
//! `.await`. Alipay orders live in the same book (`alipay_orders`, their
//! moves in `super::alipay`), so one lock and one clock cover both dialects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use ring::digest::{SHA256, digest};
use tokio::sync::watch;

use super::alipay::{AlipaySide, Order};
use super::faults::Faults;
use super::notify::{self, CallbackSchedule};
use super::{ChannelTotals, LedgerBill, SandboxLedger};
use crate::Channel;
use crate::wechat::BillState;
use crate::wechat::crypto::{ResourceKey, RsaSigner, RsaVerifier};

/// Bills the sandbox keeps before it refuses new ones: a demo left running
/// must not grow without bound.
pub(crate) const MAX_BILLS: usize = 1_000_000;

/// Attempt counters kept before they are reset (decisions then restart at
/// attempt 0, still deterministic).
const MAX_TRACKED_ATTEMPTS: usize = 1_000_000;

/// How long a cancel stays `CANCELING` before it settles.
const CANCEL_SETTLE: Duration = Duration::from_millis(20);

/// The `fail_reason` of bills to a payee in `Faults::fail_openids`.
pub(crate) const PLANNED_FAIL_REASON: &str = "PAYEE_ACCOUNT_ABNORMAL";

/// Which endpoint an attempt counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Transfer,
    Query,
    Cancel,
    AlipayTransfer,
    AlipayQuery,
}

/// One bill as the sandbox holds it. The openid stays in memory (callbacks
/// carry it, encrypted); the ledger shows only its hash.
#[derive(Debug, Clone)]
pub(crate) struct Bill {
    pub(crate) out_bill_no: String,
    pub(crate) transfer_bill_no: String,
    pub(crate) appid: String,
    pub(crate) openid: String,
    pub(crate) amount_fen: i64,
    pub(crate) remark: String,
    pub(crate) notify_url: String,
    pub(crate) state: BillState,
    pub(crate) fail_reason: Option<String>,
    /// Decided at creation: the failure a confirmation ends in.
    planned_failure: Option<&'static str>,
    pub(crate) package_info: String,
    pub(crate) create_time: String,
    pub(crate) update_time: String,
    /// When the money moved, by the sandbox's clock.
    paid_at: Option<String>,
    /// Create requests that reached this bill (the first and every replay).
    create_count: u32,
    /// Times the money moved. Never more than 1.
    paid_times: u32,
    callbacks_delivered: u32,
}

impl Bill {
    /// A bill the sandbox never held, for crafted callbacks.
    pub(crate) fn stand_in(out_bill_no: &str, amount_fen: i64, now: &str) -> Bill {
        Bill {
            out_bill_no: out_bill_no.to_owned(),
            transfer_bill_no: format!("1330{:020}", 0),
            appid: String::new(),
            openid: "o-sandbox-stand-in".to_owned(),
            amount_fen,
            remark: String::new(),
            notify_url: String::new(),
            state: BillState::WaitUserConfirm,
            fail_reason: None,
            planned_failure: None,
            package_info: String::new(),
            create_time: now.to_owned(),
            update_time: now.to_owned(),
            paid_at: None,
            create_count: 0,
            paid_times: 0,
            callbacks_delivered: 0,
        }
    }

    /// The same bill claiming another amount, for crafted callbacks.
    pub(crate) fn with_amount(mut self, amount_fen: i64) -> Bill {
        self.amount_fen = amount_fen;
        self
    }
}

/// A create request that passed validation.
pub(crate) struct NewBill {
    pub(crate) out_bill_no: String,
    pub(crate) appid: String,
    pub(crate) openid: String,
    pub(crate) amount_fen: i64,
    pub(crate) remark: String,
    pub(crate) notify_url: String,
}

pub(crate) enum Commit {
    Created(Bill),
    Replayed(Bill),
    /// Same `out_bill_no`, other amount or payee.
    Conflict,
    Full,
}

/// The result of asking a bill to move.
pub(crate) enum Move {
    /// It just reached a final state: a callback is due.
    Finished(Bill),
    /// It moved to a state that is not final.
    Moved(Bill),
    /// Not possible from where it stands.
    Refused(Bill),
}

#[derive(Default)]
pub(crate) struct Book {
    bills: HashMap<String, Bill>,
    pub(crate) alipay_orders: HashMap<String, Order>,
    attempts: HashMap<(Endpoint, String), u32>,
    pub(crate) next_seq: u64,
    /// Added to the wall clock for every time the sandbox stamps on a bill
    /// or notification; never for signature timestamps, which receivers
    /// check against their own wall clock.
    clock_offset_ms: i64,
}

/// The furthest the sandbox clock may be moved either way: far enough for
/// any statement period, near enough that no date arithmetic overflows.
pub(crate) const MAX_CLOCK_OFFSET: TimeDelta = TimeDelta::days(3_660);

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// `at` as WeChat writes times: RFC 3339, milliseconds, Beijing time.
pub(crate) fn beijing_rfc3339(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing())
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// `at` as Alipay writes times: `yyyy-MM-dd HH:mm:ss`, China time.
pub(crate) fn china_datetime(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A short fingerprint of an openid, for the ledger.
pub(crate) fn openid_hash(openid: &str) -> String {
    digest(&SHA256, openid.as_bytes()).as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl Book {
    /// The sandbox's clock: the wall clock plus the offset.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.clock_offset_ms)
    }

    /// [`Self::now`] as WeChat writes it.
    pub(crate) fn beijing_now(&self) -> String {
        beijing_rfc3339(self.now())
    }

    pub(crate) fn clock_offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.clock_offset_ms)
    }

    /// Refuses offsets beyond [`MAX_CLOCK_OFFSET`].
    pub(crate) fn set_clock_offset(&mut self, offset: TimeDelta) -> Result<(), String> {
        if offset.abs() > MAX_CLOCK_OFFSET {
            return Err(format!(
                "the clock offset must be within {} days either way",
                MAX_CLOCK_OFFSET.num_days()
            ));
        }
        self.clock_offset_ms = offset.num_milliseconds();
        Ok(())
    }

    /// Counts a request against `(endpoint, out_bill_no)` and returns its
    /// number, from 0.
    pub(crate) fn next_attempt(&mut self, endpoint: Endpoint, out_bill_no: &str) -> u32 {
        if self.attempts.len() >= MAX_TRACKED_ATTEMPTS {
            self.attempts.clear();
        }
        let counter = self
            .attempts
            .entry((endpoint, out_bill_no.to_owned()))
            .or_insert(0);
        let attempt = *counter;
        *counter = counter.saturating_add(1);
        attempt
    }

    pub(crate) fn get(&self, out_bill_no: &str) -> Option<&Bill> {
        self.bills.get(out_bill_no)
    }

    /// Creates the bill, or replays it when the payload matches.
    pub(crate) fn commit(&mut self, new: NewBill, planned_failure: Option<&'static str>) -> Commit {
        if let Some(bill) = self.bills.get_mut(&new.out_bill_no) {
            if bill.amount_fen != new.amount_fen || bill.openid != new.openid {
                return Commit::Conflict;
            }
            bill.create_count = bill.create_count.saturating_add(1);
            return Commit::Replayed(bill.clone());
        }
        if self.bills.len() >= MAX_BILLS {
            return Commit::Full;
        }
        self.next_seq += 1;
        let transfer_bill_no = format!("1330{:020}", self.next_seq);
        let now = self.beijing_now();
        let bill = Bill {
            package_info: format!("SANDBOX_PACKAGE_{transfer_bill_no}"),
            transfer_bill_no,
            out_bill_no: new.out_bill_no,
            appid: new.appid,
            openid: new.openid,
            amount_fen: new.amount_fen,
            remark: new.remark,
            notify_url: new.notify_url,
            state: BillState::WaitUserConfirm,
            fail_reason: None,
            planned_failure,
            create_time: now.clone(),
            update_time: now,
            paid_at: None,
            create_count: 1,
            paid_times: 0,
            callbacks_delivered: 0,
        };
        self.bills.insert(bill.out_bill_no.clone(), bill.clone());
        Commit::Created(bill)
    }

    /// The payee confirms: `SUCCESS` (the money moves, once) or the planned
    /// failure.
    pub(crate) fn confirm(&mut self, out_bill_no: &str) -> Option<Move> {
        let now = self.beijing_now();
        let bill = self.bills.get_mut(out_bill_no)?;
        if bill.state != BillState::WaitUserConfirm {
            return Some(Move::Refused(bill.clone()));
        }
        match bill.planned_failure {
            Some(reason) => {
                bill.state = BillState::Fail;
                bill.fail_reason = Some(reason.to_owned());
            }
            None => {
                assert_eq!(
                    bill.paid_times, 0,
                    "only WAIT_USER_CONFIRM moves to SUCCESS, and only once"
                );
                bill.state = BillState::Success;
                bill.paid_times += 1;
                bill.paid_at = Some(now.clone());
            }
        }
        bill.update_time = now;
        Some(Move::Finished(bill.clone()))
    }

    /// The merchant cancels a bill still waiting for the payee.
    pub(crate) fn cancel(&mut self, out_bill_no: &str) -> Option<Move> {
        let now = self.beijing_now();
        let bill = self.bills.get_mut(out_bill_no)?;
        match bill.state {
            BillState::WaitUserConfirm => {
                bill.state = BillState::Canceling;
                bill.update_time = now;
                Some(Move::Moved(bill.clone()))
            }
            // Asking again is harmless: report where it stands.
            BillState::Canceling | BillState::Cancelled => Some(Move::Moved(bill.clone())),
            BillState::Accepted
            | BillState::Processing
            | BillState::Transfering
            | BillState::Success
            | BillState::Fail => Some(Move::Refused(bill.clone())),
        }
    }

    /// The confirm window closed, or a cancel settled: `CANCELLED`.
    pub(crate) fn close(&mut self, out_bill_no: &str) -> Option<Move> {
        let now = self.beijing_now();
        let bill = self.bills.get_mut(out_bill_no)?;
        match bill.state {
            BillState::WaitUserConfirm | BillState::Canceling => {
                bill.state = BillState::Cancelled;
                bill.update_time = now;
                Some(Move::Finished(bill.clone()))
            }
            BillState::Accepted
            | BillState::Processing
            | BillState::Transfering
            | BillState::Success
            | BillState::Fail
            | BillState::Cancelled => Some(Move::Refused(bill.clone())),
        }
    }

    pub(crate) fn record_delivery(&mut self, out_bill_no: &str) {
        if let Some(bill) = self.bills.get_mut(out_bill_no) {
            bill.callbacks_delivered = bill.callbacks_delivered.saturating_add(1);
        }
    }

    pub(crate) fn ledger(&self) -> SandboxLedger {
        let mut bills: Vec<LedgerBill> = self
            .bills
            .values()
            .map(|bill| LedgerBill {
                out_bill_no: bill.out_bill_no.clone(),
                transfer_bill_no: bill.transfer_bill_no.clone(),
                amount_fen: bill.amount_fen,
                state: bill.state,
                fail_reason: bill.fail_reason.clone(),
                openid_hash: openid_hash(&bill.openid),
                create_count: bill.create_count,
                paid_times: bill.paid_times,
                callbacks_delivered: bill.callbacks_delivered,
                channel: Channel::Wechat,
                order_id: bill.transfer_bill_no.clone(),
                alipay_status: None,
                paid_at: bill.paid_at.clone(),
                returned: false,
                returned_at: None,
                order_fee_fen: 0,
            })
            .chain(self.alipay_orders.values().map(Order::ledger_bill))
            .collect();
        bills.sort_by(|a, b| (&a.out_bill_no, a.channel).cmp(&(&b.out_bill_no, b.channel)));
        let sum = |fen: &mut i64, add: i64| {
            *fen = fen
                .checked_add(add)
                .expect("the sandbox's totals fit in i64 fen");
        };
        let mut channels: Vec<ChannelTotals> = [Channel::Wechat, Channel::Alipay, Channel::Bank]
            .into_iter()
            .map(ChannelTotals::empty)
            .collect();
        for bill in &bills {
            let totals = channels
                .iter_mut()
                .find(|totals| totals.channel == bill.channel)
                .expect("every channel has its totals");
            totals.sent_count += u64::from(bill.paid_times);
            sum(
                &mut totals.sent_fen,
                bill.amount_fen * i64::from(bill.paid_times),
            );
            if bill.returned {
                totals.returned_count += 1;
                sum(&mut totals.returned_fen, bill.amount_fen);
            }
            sum(&mut totals.fee_fen, bill.order_fee_fen);
        }
        let mut total_paid_fen = 0;
        let mut total_returned_fen = 0;
        for totals in &channels {
            sum(&mut total_paid_fen, totals.sent_fen);
            sum(&mut total_returned_fen, totals.returned_fen);
        }
        let ledger = SandboxLedger {
            paid_count: channels.iter().map(|totals| totals.sent_count).sum(),
            returned_count: channels.iter().map(|totals| totals.returned_count).sum(),
            bills,
            total_paid_fen,
            total_returned_fen,
            channels,
        };
        // Money can only come back if it went out first.
        assert!(
            ledger
                .bills
                .iter()
                .all(|bill| !bill.returned || bill.paid_times == 1),
            "only a paid bill is returned"
        );
        ledger
    }
}

/// Everything the server, the handle and the callback tasks share.
pub(crate) struct Sandbox {
    pub(crate) mchid: String,
    pub(crate) appid: String,
    pub(crate) merchant_serial_no: String,
    pub(crate) platform_public_key_id: String,
    pub(crate) merchant: RsaVerifier,
    pub(crate) platform_signer: RsaSigner,
    pub(crate) platform_decryptor: rsa::RsaPrivateKey,
    pub(crate) resource_key: ResourceKey,
    pub(crate) schedule: CallbackSchedule,
    pub(crate) notifier: reqwest::Client,
    pub(crate) alipay: AlipaySide,
    /// `https` when the sandbox serves TLS, else `http`: the scheme of the
    /// download URLs it hands out.
    pub(crate) scheme: &'static str,
    /// Tasks are spawned here, so the handle's synchronous methods work from
    /// any thread.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) shutdown: watch::Receiver<bool>,
    faults: Mutex<Faults>,
    book: Mutex<Book>,
    pub(crate) statements: super::statements::StatementDesk,
}

impl Sandbox {
    #[expect(
        clippy::too_many_arguments,
        reason = "built once, from SandboxConfig, in SandboxGateway::start"
    )]
    pub(crate) fn new(
        ids: [String; 4],
        merchant: RsaVerifier,
        platform_signer: RsaSigner,
        platform_decryptor: rsa::RsaPrivateKey,
        resource_key: ResourceKey,
        schedule: CallbackSchedule,
        notifier: reqwest::Client,
        alipay: AlipaySide,
        scheme: &'static str,
        faults: Faults,
        shutdown: watch::Receiver<bool>,
    ) -> Sandbox {
        let [mchid, appid, merchant_serial_no, platform_public_key_id] = ids;
        Sandbox {
            mchid,
            appid,
            merchant_serial_no,
            platform_public_key_id,
            merchant,
            platform_signer,
            platform_decryptor,
            resource_key,
            schedule,
            notifier,
            alipay,
            scheme,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
            faults: Mutex::new(faults),
            book: Mutex::new(Book::default()),
            statements: super::statements::StatementDesk::default(),
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .lock()
            .expect("sandbox faults poisoned by a panic")
            .clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *self
            .faults
            .lock()
            .expect("sandbox faults poisoned by a panic") = faults;
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().expect("sandbox book poisoned by a panic")
    }

    /// The sandbox's clock. Takes the book's lock: never call it while
    /// holding the book.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.book().now()
    }

    /// Sleeps, unless the sandbox shuts down first; false then.
    pub(crate) async fn sleep(&self, duration: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = shutdown.wait_for(|stopped| *stopped) => false,
        }
    }

    /// Applies a move and, if it finished the bill, sends the callback.
    /// Returns the state the bill is in afterwards.
    fn settle(self: &Arc<Self>, moved: Option<Move>) -> Option<BillState> {
        match moved? {
            Move::Finished(bill) => {
                let state = bill.state;
                tracing::info!(out_bill_no = %bill.out_bill_no, state = %state, "sandbox bill finished");
                notify::dispatch(self, bill);
                Some(state)
            }
            Move::Moved(bill) | Move::Refused(bill) => Some(bill.state),
        }
    }

    pub(crate) fn confirm(self: &Arc<Self>, out_bill_no: &str) -> Option<BillState> {
        let moved = self.book().confirm(out_bill_no);
        self.settle(moved)
    }

    pub(crate) fn close(self: &Arc<Self>, out_bill_no: &str) -> Option<BillState> {
        let moved = self.book().close(out_bill_no);
        self.settle(moved)
    }

    /// The payee confirms by themself after `after_ms`.
    pub(crate) fn confirm_later(self: &Arc<Self>, out_bill_no: String, after_ms: u64) {
        let sandbox = Arc::clone(self);
        self.runtime.spawn(async move {
            if sandbox.sleep(Duration::from_millis(after_ms)).await {
                sandbox.confirm(&out_bill_no);
            }
        });
    }

    /// A cancel settles into `CANCELLED` a moment later.
    pub(crate) fn settle_cancel_later(self: &Arc<Self>, out_bill_no: String) {
        let sandbox = Arc::clone(self);
        self.runtime.spawn(async move {
            if sandbox.sleep(CANCEL_SETTLE).await {
                sandbox.close(&out_bill_no);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_bill(out_bill_no: &str, amount_fen: i64, openid: &str) -> NewBill {
        NewBill {
            out_bill_no: out_bill_no.to_owned(),
            appid: "wx1".to_owned(),
            openid: openid.to_owned(),
            amount_fen,
            remark: "佣金提现".to_owned(),
            notify_url: "http://127.0.0.1/notify".to_owned(),
        }
    }

    #[test]
    fn a_bill_is_paid_once_however_often_it_is_created_and_confirmed() {
        let mut book = Book::default();
        assert!(matches!(
            book.commit(new_bill("wd0001", 100, "o1"), None),
            Commit::Created(_)
        ));
        assert!(matches!(
            book.commit(new_bill("wd0001", 100, "o1"), None),
            Commit::Replayed(_)
        ));
        assert!(matches!(
            book.commit(new_bill("wd0001", 101, "o1"), None),
            Commit::Conflict
        ));
        assert!(matches!(
            book.commit(new_bill("wd0001", 100, "o2"), None),
            Commit::Conflict
        ));
        assert!(matches!(book.confirm("wd0001"), Some(Move::Finished(_))));
        assert!(matches!(book.confirm("wd0001"), Some(Move::Refused(_))));
        assert!(matches!(book.close("wd0001"), Some(Move::Refused(_))));
        assert!(book.confirm("nosuch").is_none());
        let ledger = book.ledger();
        assert_eq!((ledger.total_paid_fen, ledger.paid_count), (100, 1));
        assert_eq!(ledger.bills[0].create_count, 2);
        assert_eq!(ledger.bills[0].openid_hash, openid_hash("o1"));
        assert_ne!(ledger.bills[0].openid_hash, "o1");
    }

    #[test]
    fn a_planned_failure_and_a_cancel_move_no_money() {
        let mut book = Book::default();
        book.commit(new_bill("wd0001", 100, "o1"), Some(PLANNED_FAIL_REASON));
        book.commit(new_bill("wd0002", 200, "o2"), None);
        let Some(Move::Finished(failed)) = book.confirm("wd0001") else {
            panic!("a waiting bill finishes on confirm");
        };
        assert_eq!(
            (failed.state, failed.fail_reason.as_deref()),
            (BillState::Fail, Some(PLANNED_FAIL_REASON))
        );
        assert!(
            matches!(book.cancel("wd0002"), Some(Move::Moved(bill)) if bill.state == BillState::Canceling)
        );
        assert!(matches!(book.cancel("wd0002"), Some(Move::Moved(_))));
        assert!(matches!(book.confirm("wd0002"), Some(Move::Refused(_))));
        assert!(
            matches!(book.close("wd0002"), Some(Move::Finished(bill)) if bill.state == BillState::Cancelled)
        );
        assert!(matches!(book.cancel("wd0001"), Some(Move::Refused(_))));
        assert_eq!(book.ledger().total_paid_fen, 0);
    }
}
