//! The order-settlement workflow (SPEC §2.1): ingest, hold, release, refunds.
//!
//! ```text
//!  POST /v1/orders ──► [ingest] ────────────────► [hold] ──── release_at ───► [release]
//!                      group commit: orders,       orders.state = holding     one tx per batch:
//!                      lines, pending credit,      (a row, not a timer)       pending → available,
//!                      event, release job ──┐                                 lines released, event
//!                                           └─ apalis job `order.release`, key release:{time}
//!  POST /v1/orders/{id}/refunds ──► [refund] one tx: lock order, recompute on the net
//!                                   (in the hold) or claw back (after it), event
//! ```
//!
//! Durable step design: our tables are the truth about where an order is; an
//! apalis job is only the durable trigger of the next step. Each step runs in
//! ONE database transaction that locks its business rows, returns early when
//! its effect is already recorded (the `where state = …` of the transition, the
//! ledger's idempotency keys `order:{id}:{step}`), writes the effect and the
//! state transition, and pushes the next step's job on that same transaction
//! with a deterministic idempotency key. apalis delivers at least once, so a
//! step may run twice; the second run finds nothing to do. A crash between
//! any two statements rolls the whole step back.
//!
//! Time is the injected [`Clock`]'s: release jobs are enqueued for their
//! release time, and a sweep (scheduled in `workflows/schedules.toml`, and run
//! whenever a simulated clock moves) releases whatever is due, so a lost or
//! early-deduplicated job can only delay a release, never lose it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, ClockError};
use crate::domain::calendar::BusinessCalendar;
use crate::domain::commission::{
    self, Beneficiary, CommissionContext, CommissionLine, ExplainedLine, Order, OrderItem,
};
use crate::domain::ids::{BuyerId, DistributorId, OrderId};
use crate::domain::ledger;
use crate::domain::money::Money;
use crate::domain::plan::Plan;
use crate::domain::settlement::{
    self, DistributorStatus, ItemBalance, OrderState, OrderTimeError, RecordedLine, RefundError,
};
use crate::engine::calendar::{CalendarBook, CalendarInForce};
use crate::store::{
    HoldPlan, IngestOutcome, JobSpec, LineUpdate, OrderRecord, OrderSnapshot, PreparedOrder,
    RefundDecision, RefundOutcome, RefundRequest, ReplanCounts, RunningTotals, Store, StoreError,
    StoredPlan, TotalsDelta, TotalsKeys,
};

/// How many ingest requests may wait for the group-commit writer before new
/// ones are pushed back (the HTTP handler then waits for room).
const INGEST_QUEUE_CAPACITY: usize = 4_096;

/// How often one step reloads the business calendar when the database says
/// it changed, before giving up (the step is then retried): years are
/// applied a few times a year, so more than one reload in a row is a storm.
const CALENDAR_RELOADS: u32 = 3;

/// A confirmed order, validated at the edge.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub distributor_id: DistributorId,
    pub buyer_id: BuyerId,
    pub placed_at: DateTime<Utc>,
    pub confirmed_at: DateTime<Utc>,
    pub items: Vec<OrderItem>,
    /// SHA-256 of the request body as sent, for replay detection.
    pub request_sha256: String,
}

/// What ingesting one order came to.
#[derive(Debug, Clone)]
pub enum IngestAnswer {
    Created(Box<PreparedOrder>),
    Replayed(Box<OrderRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// An order, or a move of the simulated clock, refused by a rule (→ 422
    /// on [`OrderRefusal::field`]).
    #[error(transparent)]
    Order(#[from] OrderRefusal),
    /// The order id was already sent with a different body (→ 409 `order_conflict`).
    #[error("this order_id was already sent with a different body")]
    OrderConflict,
    /// The refund id was already used with a different body (→ 409 `refund_conflict`).
    #[error("refund {refund_id} was already made with a different body")]
    RefundConflict { refund_id: String },
    /// A refund refused by a rule (→ 422 on [`RefundRefusal::field`]).
    #[error(transparent)]
    Refund(#[from] RefundRefusal),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Money arithmetic past what 64 bits of fen hold, on amounts the store
    /// gave back: a bug or a tampered row, not the caller's error (→ 500).
    #[error("{0} overflowed")]
    Overflow(&'static str),
    /// The engine is shutting down.
    #[error("the service is stopping")]
    Stopping,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an order is refused; nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum OrderRefusal {
    #[error(transparent)]
    TimeOutOfRange(#[from] OrderTimeError),
    #[error("distributor {0} does not exist")]
    UnknownDistributor(DistributorId),
    #[error("the items' amounts overflow")]
    ItemsOverflow,
    /// The simulated clock cannot move as asked.
    #[error(transparent)]
    Clock(#[from] ClockError),
}

impl OrderRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            OrderRefusal::TimeOutOfRange(_) => "time_out_of_range",
            OrderRefusal::UnknownDistributor(_) => "unknown_distributor",
            OrderRefusal::ItemsOverflow => "invalid_amount",
            OrderRefusal::Clock(_) => "invalid_field",
        }
    }

    /// The request field at fault, when one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            OrderRefusal::TimeOutOfRange(error) => Some(error.field()),
            OrderRefusal::UnknownDistributor(_) => Some("distributor_id"),
            OrderRefusal::ItemsOverflow => Some("items"),
            OrderRefusal::Clock(_) => None,
        }
    }
}

/// Why a refund is refused; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefusal {
    #[error("the order has no item with sku {sku:?}")]
    UnknownSku { sku: String },
    #[error("the refund is larger than what remains refundable ({remaining})")]
    ExceedsRemaining { remaining: Money },
    /// Any other refusal of the refund's allocation, in the rule's words.
    #[error("{0}")]
    Invalid(RefundError),
}

impl RefundRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            RefundRefusal::UnknownSku { .. } => "unknown_sku",
            RefundRefusal::ExceedsRemaining { .. } => "refund_exceeds_remaining",
            RefundRefusal::Invalid(_) => "invalid_refund",
        }
    }

    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            RefundRefusal::UnknownSku { .. } => "sku",
            RefundRefusal::ExceedsRemaining { .. } | RefundRefusal::Invalid(_) => "amount",
        }
    }

    fn of(error: RefundError, sku: Option<&str>) -> RefundRefusal {
        match error {
            RefundError::UnknownSku => RefundRefusal::UnknownSku {
                sku: sku.unwrap_or("").to_owned(),
            },
            RefundError::ExceedsRemaining { remaining } => {
                RefundRefusal::ExceedsRemaining { remaining }
            }
            other => RefundRefusal::Invalid(other),
        }
    }
}

/// A link of the beneficiary chain as stored with the order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ChainLink {
    distributor_id: String,
    grade: String,
    earns: bool,
}

/// Settings of the workflow, from `workflows/order-settlement.toml`.
#[derive(Debug, Clone)]
pub struct SettlementSettings {
    pub time_zone: Tz,
    pub hold_business_days: u32,
    pub release_job: JobSpec,
    pub release_batch_size: i64,
    pub ingest_batch_size: usize,
    pub ingest_batch_max_wait: Duration,
    /// Group-commit writers running side by side (1 on SQLite).
    pub ingest_writers: usize,
    /// Oldest `placed_at` / `confirmed_at` accepted, before the clock's now.
    pub order_max_age: chrono::TimeDelta,
}

/// What the workflow's steps share.
struct Shared {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    calendars: Arc<CalendarBook>,
    settings: SettlementSettings,
    plans: Mutex<HashMap<i64, Arc<Plan>>>,
    /// One release run at a time in this process: the worker, the sweep and
    /// a clock move would otherwise skip each other's locked rows and report
    /// a hold as still pending while another run is committing it.
    release_running: tokio::sync::Mutex<()>,
}

struct IngestRequest {
    order: NewOrder,
    answer: oneshot::Sender<Result<IngestAnswer, SettlementError>>,
}

pub struct SettlementEngine {
    shared: Arc<Shared>,
    ingest: mpsc::Sender<IngestRequest>,
}

impl SettlementEngine {
    /// The business calendar the holds are counted in, as last loaded.
    pub fn calendar(&self) -> Arc<BusinessCalendar> {
        self.shared.calendars.current().calendar.clone()
    }

    /// The calendar with its applied years and generation.
    pub fn calendars(&self) -> &CalendarBook {
        &self.shared.calendars
    }

    /// The calendar as the database has it now (see [`CalendarBook::refresh`]).
    pub async fn refresh_calendar(&self) -> Result<Arc<CalendarInForce>, StoreError> {
        self.shared.calendars.refresh(&self.shared.store).await
    }

    /// Starts the group-commit writer; it stops when the engine is dropped.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        calendars: Arc<CalendarBook>,
        settings: SettlementSettings,
    ) -> SettlementEngine {
        let shared = Arc::new(Shared {
            store,
            clock,
            calendars,
            settings,
            plans: Mutex::new(HashMap::new()),
            release_running: tokio::sync::Mutex::new(()),
        });
        let (sender, receiver) = mpsc::channel(INGEST_QUEUE_CAPACITY);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..shared.settings.ingest_writers.max(1) {
            tokio::spawn(group_commit(shared.clone(), receiver.clone()));
        }
        SettlementEngine {
            shared,
            ingest: sender,
        }
    }

    pub fn settings(&self) -> &SettlementSettings {
        &self.shared.settings
    }

    /// Ingests a confirmed order (the `ingest` step); returns once it is committed.
    pub async fn ingest(&self, order: NewOrder) -> Result<IngestAnswer, SettlementError> {
        settlement::check_order_times(
            order.placed_at,
            order.confirmed_at,
            self.shared.clock.now(),
            self.shared.settings.order_max_age,
        )
        .map_err(OrderRefusal::from)?;
        let (answer, answered) = oneshot::channel();
        self.ingest
            .send(IngestRequest { order, answer })
            .await
            .map_err(|_| SettlementError::Stopping)?;
        answered.await.map_err(|_| SettlementError::Stopping)?
    }

    /// Releases every order due by the clock's now, in batches (the `release`
    /// step). Safe to run any number of times, from any number of workers.
    /// `trigger` says what ran it, for the order's timeline.
    pub async fn release_due(&self, attempt: i64, trigger: &str) -> Result<usize, StoreError> {
        let _running = self.shared.release_running.lock().await;
        release_due(&self.shared, attempt, trigger).await
    }

    /// Re-plans the holds over the calendar versions still pending (after a
    /// year is applied); safe to run any number of times, anywhere.
    pub async fn replan_pending(&self) -> Result<ReplanCounts, StoreError> {
        let _running = self.shared.release_running.lock().await;
        replan_pending(&self.shared).await
    }

    /// Moves a simulated clock and releases what became due, with no other
    /// release run in between: when this returns, every hold due by the new
    /// time is released, and the count is exactly those.
    pub async fn advance_and_release(
        &self,
        clock: &crate::clock::SimulatedClock,
        by: chrono::Duration,
    ) -> Result<(DateTime<Utc>, usize), SettlementError> {
        let _running = self.shared.release_running.lock().await;
        let now = clock.advance(by).map_err(OrderRefusal::from)?;
        let released = release_due(&self.shared, 1, "clock advance").await?;
        Ok((now, released))
    }

    /// Voids an order's commission (ops, issue 14): the store reverses the
    /// lines, and the running totals lose what the order added — its net
    /// commissionable amount from the seller's month of level-1 sales, each
    /// line from its beneficiary's day — so a voided order never lifts a
    /// tier or fills a daily cap.
    pub async fn void_commission(
        &self,
        order_id: &OrderId,
        reason: &str,
        actor: &crate::store::Actor,
    ) -> Result<crate::store::VoidOutcome, StoreError> {
        let shared = &self.shared;
        let Some(order) = shared.store.order(order_id.as_str()).await? else {
            return Err(StoreError::NotFound {
                what: "order",
                id: order_id.to_string(),
            });
        };
        // The plan and the confirmation never change, so they may be read
        // before the order is locked; the items and lines are read after.
        let plan = plan_by_version(shared, order.plan_version).await?;
        let local = order.confirmed_at.with_timezone(&shared.settings.time_zone);
        let (month, day) = (
            local.format("%Y-%m").to_string(),
            local.format("%Y-%m-%d").to_string(),
        );
        let totals_of = |snapshot: &OrderSnapshot| -> Result<TotalsDelta, StoreError> {
            let net = commissionable_of(
                &plan,
                snapshot
                    .items
                    .iter()
                    .map(|item| (item.sku.as_str(), item.amount.checked_sub(item.refunded))),
            )
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            let mut totals = TotalsDelta::default();
            totals.add_level1_sales(
                snapshot.order.distributor_id.as_str(),
                &month,
                net.checked_neg()
                    .ok_or_else(|| StoreError::Corrupt("void arithmetic".to_owned()))?,
            );
            for line in &snapshot.order.lines {
                let back = line
                    .amount
                    .checked_neg()
                    .ok_or_else(|| StoreError::Corrupt("void arithmetic".to_owned()))?;
                totals.add_earned(line.beneficiary_id.as_str(), &day, back);
            }
            Ok(totals)
        };
        let now = shared.clock.now();
        shared
            .store
            .void_commission(order_id.as_str(), reason, actor, now, totals_of)
            .await
    }

    /// Applies a refund (the `refund` step).
    pub async fn refund(
        &self,
        order_id: &OrderId,
        refund_id: &str,
        amount: Money,
        sku: Option<String>,
        request_sha256: String,
    ) -> Result<(RefundOutcome, bool), SettlementError> {
        let shared = &self.shared;
        let Some(order) = shared.store.order(order_id.as_str()).await? else {
            return Err(SettlementError::NotFound("order"));
        };
        let plan = plan_by_version(shared, order.plan_version).await?;
        let chain = chain_from_json(&order.chain_json)?;
        let context = match &order.commission_context {
            Some(text) => serde_json::from_str(text).map_err(|error| {
                StoreError::Corrupt(format!("commission context of {order_id}: {error}"))
            })?,
            None => CommissionContext::default(),
        };
        let local = order.confirmed_at.with_timezone(&shared.settings.time_zone);
        let periods = (
            local.format("%Y-%m").to_string(),
            local.format("%Y-%m-%d").to_string(),
        );
        let request = RefundRequest {
            order_id: order_id.to_string(),
            refund_id: refund_id.to_owned(),
            sku,
            amount,
            request_sha256,
        };
        let now = shared.clock.now();
        let inputs = RecomputeInputs {
            plan: &plan,
            chain: &chain,
            context: &context,
            month: &periods.0,
            day: &periods.1,
        };
        let decide = |snapshot: &OrderSnapshot| decide_refund(&inputs, &request, snapshot);
        match shared.store.refund_order(&request, now, decide).await {
            Ok(RefundOutcome::Replayed(record)) => Ok((RefundOutcome::Replayed(record), false)),
            Ok(applied) => Ok((applied, true)),
            Err(SettlementError::Store(StoreError::Conflict { what: "refund", id })) => {
                Err(SettlementError::RefundConflict { refund_id: id })
            }
            Err(SettlementError::Store(StoreError::NotFound { what: "order", .. })) => {
                Err(SettlementError::NotFound("order"))
            }
            Err(other) => Err(other),
        }
    }
}

/// A group-commit writer: takes every request already waiting (up to the
/// batch size, waiting at most the configured time for more) and writes them
/// in one transaction, so the fsync of a commit is paid once per batch.
/// Several writers share the queue; each holds it only while gathering.
async fn group_commit(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<IngestRequest>>>,
) {
    let batch_size = shared.settings.ingest_batch_size.max(1);
    let max_wait = shared.settings.ingest_batch_max_wait;
    loop {
        let batch = {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            gather(&mut receiver, first, batch_size, max_wait).await
        };
        ingest_batch(&shared, batch).await;
    }
}

async fn gather(
    receiver: &mut mpsc::Receiver<IngestRequest>,
    first: IngestRequest,
    batch_size: usize,
    max_wait: Duration,
) -> Vec<IngestRequest> {
    {
        let mut batch = vec![first];
        while batch.len() < batch_size {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if batch.len() < batch_size && !max_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + max_wait;
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(request)) => batch.push(request),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        batch
    }
}

/// Writes a gathered batch and answers each requester. When the batch's
/// transaction fails, nothing of it was written, and the fault may lie with
/// one order alone (a row the database refuses): each order is then written
/// again in a transaction of its own, so only the offending one gets an
/// error and every valid order of the batch is accepted. Orders are
/// idempotent by id, so writing one again is safe.
async fn ingest_batch(shared: &Shared, batch: Vec<IngestRequest>) {
    let (requests, answers): (Vec<NewOrder>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.order, request.answer))
        .unzip();
    let results = match prepare_and_write(shared, &requests).await {
        Ok(results) => results,
        Err(error) if requests.len() > 1 => {
            tracing::warn!(error = %error, orders = requests.len(), "ingest batch failed; writing its orders one by one");
            let mut results = Vec::with_capacity(requests.len());
            for order in &requests {
                results.push(ingest_alone(shared, order).await);
            }
            results
        }
        Err(error) => {
            tracing::error!(error = %error, order_id = %requests[0].order_id, "order could not be written");
            vec![Err(SettlementError::Store(error))]
        }
    };
    for (answer, result) in answers.into_iter().zip(results) {
        // The requester may have gone away (client timeout); the order stands.
        let _ = answer.send(result);
    }
}

/// One order of a failed batch, in a transaction of its own.
async fn ingest_alone(shared: &Shared, order: &NewOrder) -> Result<IngestAnswer, SettlementError> {
    match prepare_and_write(shared, std::slice::from_ref(order)).await {
        Ok(mut results) => results.pop().unwrap_or(Err(SettlementError::Stopping)),
        Err(error) => {
            tracing::error!(error = %error, order_id = %order.order_id, "order could not be written");
            Err(SettlementError::Store(error))
        }
    }
}

/// Prepares every order of a batch (distributors, plan, commission, release
/// time) and writes the valid ones in one transaction. Should a year of the
/// calendar be applied meanwhile, the store refuses the batch whole and it
/// is planned again on the new calendar.
async fn prepare_and_write(
    shared: &Shared,
    orders: &[NewOrder],
) -> Result<Vec<Result<IngestAnswer, SettlementError>>, StoreError> {
    let mut calendar = shared.calendars.current();
    let mut attempts = 0;
    loop {
        match prepare_and_write_on(shared, orders, &calendar).await {
            Err(StoreError::CalendarChanged { .. }) if attempts < CALENDAR_RELOADS => {
                attempts += 1;
                calendar = shared.calendars.refresh(&shared.store).await?;
            }
            // Written again, the orders another writer committed replay.
            Err(StoreError::WriterRace(_)) if attempts < CALENDAR_RELOADS => attempts += 1,
            result => return result,
        }
    }
}

async fn prepare_and_write_on(
    shared: &Shared,
    orders: &[NewOrder],
    calendar: &CalendarInForce,
) -> Result<Vec<Result<IngestAnswer, SettlementError>>, StoreError> {
    let distributors = load_chains(shared, orders).await?;
    let plans = shared.store.list_plans().await?;
    let mut results: Vec<Option<Result<IngestAnswer, SettlementError>>> = Vec::new();
    results.resize_with(orders.len(), || None);
    let mut prepared = Vec::with_capacity(orders.len());
    let mut prepared_index = Vec::with_capacity(orders.len());
    for (index, order) in orders.iter().enumerate() {
        match prepare(shared, &calendar.calendar, order, &distributors, &plans).await {
            Ok(ready) => {
                prepared.push(ready);
                prepared_index.push(index);
            }
            Err(error) => results[index] = Some(Err(error)),
        }
    }
    if !prepared.is_empty() {
        let now = shared.clock.now();
        let plans_by_version: HashMap<i64, Arc<Plan>> = plans
            .iter()
            .map(|stored| Ok((stored.version, plan_from_stored(shared, stored)?)))
            .collect::<Result<_, StoreError>>()?;
        let settings = &shared.settings;
        let calendar_now = &calendar.calendar;
        let outcomes = shared
            .store
            .ingest_orders(
                &mut prepared,
                &shared.settings.release_job,
                calendar.generation,
                now,
                |order, totals| {
                    let plan = plans_by_version.get(&order.plan_version).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "plan version {} is missing",
                            order.plan_version
                        ))
                    })?;
                    finish(settings, calendar_now, plan, order, totals)
                },
            )
            .await?;
        for (index, outcome) in prepared_index.into_iter().zip(outcomes) {
            results[index] = Some(match outcome {
                IngestOutcome::Created(order) => {
                    tracing::info!(order_id = %order.order_id, step = "ingest", attempt = 1, lines = order.lines.len(), "order ingested");
                    Ok(IngestAnswer::Created(order))
                }
                IngestOutcome::Replayed(record) => Ok(IngestAnswer::Replayed(record)),
                IngestOutcome::Conflict => Err(SettlementError::OrderConflict),
            });
        }
    }
    Ok(results
        .into_iter()
        .map(|result| result.unwrap_or(Err(SettlementError::Stopping)))
        .collect())
}

/// The distributors of every order's chain (seller and two levels up), by id.
async fn load_chains(
    shared: &Shared,
    orders: &[NewOrder],
) -> Result<HashMap<String, crate::store::Distributor>, StoreError> {
    let sellers: HashSet<&str> = orders
        .iter()
        .map(|order| order.distributor_id.as_str())
        .collect();
    let sellers: Vec<&str> = sellers.into_iter().collect();
    let mut found: HashMap<String, crate::store::Distributor> = shared
        .store
        .distributors_by_ids(&sellers)
        .await?
        .into_iter()
        .map(|distributor| (distributor.id.to_string(), distributor))
        .collect();
    let above: HashSet<String> = found
        .values()
        .flat_map(|distributor| distributor.upline.iter().take(2).map(ToString::to_string))
        .filter(|id| !found.contains_key(id))
        .collect();
    if !above.is_empty() {
        let above: Vec<&str> = above.iter().map(String::as_str).collect();
        for distributor in shared.store.distributors_by_ids(&above).await? {
            found.insert(distributor.id.to_string(), distributor);
        }
    }
    Ok(found)
}

/// Everything about an order that does not depend on the running totals:
/// its chain, plan, hold and the keys of the totals its rules read. The
/// commission itself is computed by [`finish`], inside the write.
async fn prepare(
    shared: &Shared,
    calendar: &BusinessCalendar,
    order: &NewOrder,
    distributors: &HashMap<String, crate::store::Distributor>,
    plans: &[StoredPlan],
) -> Result<PreparedOrder, SettlementError> {
    let Some(seller) = distributors.get(order.distributor_id.as_str()) else {
        return Err(OrderRefusal::UnknownDistributor(order.distributor_id.clone()).into());
    };
    let mut chain = vec![seller];
    for id in seller.upline.iter().take(2) {
        let above = distributors.get(id.as_str()).ok_or_else(|| {
            StoreError::Corrupt(format!("upline {id} of {} is missing", seller.id))
        })?;
        chain.push(above);
    }
    // Cleared distributors keep their place in the chain and get an
    // explained zero line (see `commission::compute_with`).
    let beneficiaries: Vec<Beneficiary> = chain
        .iter()
        .map(|distributor| Beneficiary {
            distributor_id: distributor.id.clone(),
            grade: distributor.grade.clone(),
            earns: true,
        })
        .collect();
    let cleared: BTreeSet<DistributorId> = chain
        .iter()
        .filter(|distributor| distributor.status == DistributorStatus::Cleared)
        .map(|distributor| distributor.id.clone())
        .collect();
    let stored = plans
        .iter()
        .filter(|plan| plan.effective_from <= order.confirmed_at)
        .max_by_key(|plan| (plan.effective_from, plan.version))
        .ok_or_else(|| StoreError::Corrupt("no plan is in force".to_owned()))?;
    let plan = plan_from_stored(shared, stored)?;
    let planned = plan_hold(&shared.settings, calendar, order.confirmed_at, 0);
    let chain_json = serde_json::to_string(
        &beneficiaries
            .iter()
            .map(|beneficiary| ChainLink {
                distributor_id: beneficiary.distributor_id.to_string(),
                grade: beneficiary.grade.clone(),
                earns: beneficiary.earns,
            })
            .collect::<Vec<_>>(),
    )
    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let total = Money::checked_sum(order.items.iter().map(|item| item.amount))
        .ok_or(SettlementError::Order(OrderRefusal::ItemsOverflow))?;
    let local = order.confirmed_at.with_timezone(&shared.settings.time_zone);
    let totals = TotalsKeys {
        month: local.format("%Y-%m").to_string(),
        day: local.format("%Y-%m-%d").to_string(),
        chain: beneficiaries
            .iter()
            .map(|beneficiary| beneficiary.distributor_id.clone())
            .collect(),
        read: plan_reads_totals(&plan),
        count_buyer: plan.risk().is_some(),
    };
    Ok(PreparedOrder {
        order_id: order.order_id.clone(),
        distributor_id: order.distributor_id.clone(),
        buyer_id: order.buyer_id.clone(),
        placed_at: order.placed_at,
        confirmed_at: order.confirmed_at,
        items: order.items.clone(),
        total,
        plan_version: stored.version,
        release_at: planned.release_at,
        release_at_provisional: planned.provisional,
        chain_json,
        beneficiaries,
        cleared,
        totals,
        lines: Vec::new(),
        commissionable: Money::ZERO,
        commission_context: None,
        risk_flags: Vec::new(),
        extra_hold_days: 0,
        pending_transfer: None,
        request_sha256: order.request_sha256.clone(),
    })
}

/// Whether `plan` has a rule that reads the running totals.
fn plan_reads_totals(plan: &Plan) -> bool {
    !plan.tiers().is_empty() || plan.daily_cap().is_some() || plan.risk().is_some()
}

/// Completes a prepared order inside the ingest transaction, from the
/// running totals as they stand before it: its commission lines with their
/// explanations, what it adds to the seller's month, its risk flags (and
/// the longer hold they bring), and its pending credit.
fn finish(
    settings: &SettlementSettings,
    calendar: &BusinessCalendar,
    plan: &Plan,
    order: &mut PreparedOrder,
    totals: &RunningTotals,
) -> Result<(), StoreError> {
    let keys = &order.totals;
    let context = CommissionContext {
        placed_at: Some(order.placed_at),
        // Below zero only when refunds of orders ingested before the totals
        // were kept took off what was never added.
        month_level1_sales_before: totals
            .month_level1_sales(order.distributor_id.as_str(), &keys.month)
            .max(Money::ZERO),
        earned_today: keys
            .chain
            .iter()
            .map(|id| (id.clone(), totals.earned_on(id.as_str(), &keys.day)))
            .filter(|(_, earned)| *earned > Money::ZERO)
            .collect(),
        cleared: order.cleared.clone(),
    };
    let commission_order = Order {
        distributor_id: order.distributor_id.clone(),
        buyer_id: order.buyer_id.clone(),
        items: order.items.clone(),
    };
    order.lines = commission::compute_with(plan, &commission_order, &order.beneficiaries, &context)
        .map_err(|error| {
            StoreError::Corrupt(format!("commission of {}: {error}", order.order_id))
        })?;
    order.commissionable = Money::checked_sum(
        order
            .items
            .iter()
            .filter(|item| !plan.is_excluded(&item.sku))
            .map(|item| item.amount),
    )
    .ok_or_else(|| StoreError::Corrupt(format!("items of {} overflow", order.order_id)))?;
    if plan.uses_v2_rules() || !context.cleared.is_empty() {
        order.commission_context = Some(
            serde_json::to_string(&context)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
        );
    }
    if let Some(risk) = plan.risk() {
        let buyer_orders = totals.buyer_orders_on(order.buyer_id.as_str(), &keys.day) + 1;
        let mut flags = Vec::new();
        if buyer_orders > i64::from(risk.same_buyer_orders_per_day()) {
            flags.push(format!(
                "same_buyer_over_limit ({buyer_orders} orders of buyer today, limit {})",
                risk.same_buyer_orders_per_day()
            ));
        }
        if order.buyer_id.as_str() == order.distributor_id.as_str() && !plan.self_purchase_pays() {
            flags.push("self_purchase".to_owned());
        }
        if !flags.is_empty() {
            order.risk_flags = flags;
            order.extra_hold_days = risk.extra_hold_days();
            let planned = plan_hold(
                settings,
                calendar,
                order.confirmed_at,
                order.extra_hold_days,
            );
            order.release_at = planned.release_at;
            order.release_at_provisional = planned.provisional;
        }
    }
    let credited: Vec<(DistributorId, Money)> = order
        .lines
        .iter()
        .filter(|explained| !explained.line.amount.is_zero())
        .map(|explained| (explained.line.beneficiary.clone(), explained.line.amount))
        .collect();
    order.pending_transfer = ledger::commission_pending(order.order_id.as_str(), &credited)
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok(())
}

fn plan_from_stored(shared: &Shared, stored: &StoredPlan) -> Result<Arc<Plan>, StoreError> {
    let mut cache = shared
        .plans
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(plan) = cache.get(&stored.version) {
        return Ok(plan.clone());
    }
    let plan = Plan::parse(
        &stored.source_toml,
        &format!("plan version {}", stored.version),
    )
    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let plan = Arc::new(plan);
    cache.insert(stored.version, plan.clone());
    Ok(plan)
}

async fn plan_by_version(shared: &Shared, version: i64) -> Result<Arc<Plan>, StoreError> {
    if let Some(plan) = shared
        .plans
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&version)
    {
        return Ok(plan.clone());
    }
    let plans = shared.store.list_plans().await?;
    let stored = plans
        .iter()
        .find(|plan| plan.version == version)
        .ok_or_else(|| StoreError::Corrupt(format!("plan version {version} is missing")))?;
    plan_from_stored(shared, stored)
}

fn chain_from_json(text: &str) -> Result<Vec<Beneficiary>, StoreError> {
    let links: Vec<ChainLink> = serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("order chain: {error}")))?;
    links
        .into_iter()
        .map(|link| {
            Ok(Beneficiary {
                distributor_id: DistributorId::parse(link.distributor_id)?,
                grade: link.grade,
                earns: link.earns,
            })
        })
        .collect()
}

/// What an order's commission is recomputed with: what it was computed
/// with at ingest, and the periods of its running totals.
struct RecomputeInputs<'a> {
    plan: &'a Plan,
    chain: &'a [Beneficiary],
    context: &'a CommissionContext,
    month: &'a str,
    day: &'a str,
}

/// What a refund does to a locked order: which items it comes from, the
/// commission recomputed on the net amount, and the ledger movement.
fn decide_refund(
    inputs: &RecomputeInputs<'_>,
    request: &RefundRequest,
    snapshot: &OrderSnapshot,
) -> Result<RefundDecision, SettlementError> {
    let allocation = allocate(request, snapshot)?;
    let (net_items, remaining_after) = net_items_after(snapshot, &allocation)?;
    let commissionable_before = commissionable_of(
        inputs.plan,
        snapshot
            .items
            .iter()
            .map(|item| (item.sku.as_str(), item.amount.checked_sub(item.refunded))),
    )?;
    let commissionable_after = commissionable_of(
        inputs.plan,
        net_items
            .iter()
            .map(|item| (item.sku.as_str(), Some(item.amount))),
    )?;
    // Voided by ops: the lines stay at 0 whatever is refunded later.
    let (changes, trails) = if snapshot.order.commission_voided {
        (Vec::new(), TrailsByLine::new())
    } else {
        recompute_commission(inputs, snapshot, net_items)?
    };
    let after_release = snapshot.order.state == OrderState::Released;
    let new_state = match snapshot.order.state {
        OrderState::Holding if remaining_after.is_zero() => OrderState::Cancelled,
        state => state,
    };
    let deltas = changes
        .iter()
        .map(|change| {
            change
                .new_amount
                .checked_sub(change.old_amount)
                .map(|delta| (change.beneficiary.clone(), delta))
                .ok_or(SettlementError::Overflow("commission delta"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let transfer = ledger::commission_refund(
        &request.order_id,
        &request.refund_id,
        &deltas,
        after_release,
    )
    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let moved = Money::checked_sum(deltas.iter().map(|(_, delta)| *delta)).unwrap_or_default();
    let (event_outcome, phase) = match (after_release, new_state) {
        (true, _) => ("clawed_back", "after_release"),
        (false, OrderState::Cancelled) => ("cancelled", "hold"),
        (false, _) => ("recomputed", "hold"),
    };
    Ok(RefundDecision {
        item_refunds: snapshot
            .items
            .iter()
            .map(|item| item.line_no)
            .zip(allocation)
            .collect(),
        line_updates: changes
            .iter()
            .map(|change| LineUpdate {
                beneficiary_id: change.beneficiary.to_string(),
                level: change.level,
                rate: change.rate,
                base: change.base,
                amount: change.new_amount,
                rule_trail: trails
                    .get(&(change.level, change.rate))
                    .map(|trail| trail.to_json()),
            })
            .collect(),
        totals: refund_totals(
            inputs,
            snapshot,
            &deltas,
            // A void took the order's whole net amount off the totals already.
            if snapshot.order.commission_voided {
                Money::ZERO
            } else {
                commissionable_after
                    .checked_sub(commissionable_before)
                    .ok_or(SettlementError::Overflow("refund arithmetic"))?
            },
        ),
        transfer,
        new_state,
        phase,
        event_outcome,
        event_detail: format!(
            "refund {} of {}: commission changed by {moved}; {} refundable remains",
            request.refund_id, request.amount, remaining_after
        ),
    })
}

/// The refund's first step: how much of it each item gives back.
fn allocate(
    request: &RefundRequest,
    snapshot: &OrderSnapshot,
) -> Result<Vec<Money>, RefundRefusal> {
    let balances: Vec<ItemBalance> = snapshot
        .items
        .iter()
        .map(|item| ItemBalance {
            sku: item.sku.clone(),
            paid: item.amount,
            refunded: item.refunded,
        })
        .collect();
    settlement::allocate_refund(&balances, request.amount, request.sku.as_deref())
        .map_err(|error| RefundRefusal::of(error, request.sku.as_deref()))
}

/// The items as they stand after the refund, and what stays refundable.
fn net_items_after(
    snapshot: &OrderSnapshot,
    allocation: &[Money],
) -> Result<(Vec<OrderItem>, Money), SettlementError> {
    let mut net_items = Vec::with_capacity(snapshot.items.len());
    let mut remaining_after = Money::ZERO;
    for (item, refunded_now) in snapshot.items.iter().zip(allocation) {
        let net = item
            .amount
            .checked_sub(item.refunded)
            .and_then(|left| left.checked_sub(*refunded_now))
            .ok_or(SettlementError::Overflow("refund arithmetic"))?;
        remaining_after = remaining_after
            .checked_add(net)
            .ok_or(SettlementError::Overflow("refund arithmetic"))?;
        net_items.push(OrderItem {
            sku: item.sku.clone(),
            category: item.category.clone(),
            amount: net,
        });
    }
    Ok((net_items, remaining_after))
}

/// The sum of the amounts of the items the plan does not exclude.
fn commissionable_of<'a>(
    plan: &Plan,
    items: impl Iterator<Item = (&'a str, Option<Money>)>,
) -> Result<Money, SettlementError> {
    let mut sum = Money::ZERO;
    for (sku, amount) in items {
        if plan.is_excluded(sku) {
            continue;
        }
        sum = amount
            .and_then(|amount| sum.checked_add(amount))
            .ok_or(SettlementError::Overflow("refund arithmetic"))?;
    }
    Ok(sum)
}

/// What a refund moves on the running totals: the seller's month of
/// level-1 sales by the commissionable amount refunded, and each
/// beneficiary's day by their commission's change.
fn refund_totals(
    inputs: &RecomputeInputs<'_>,
    snapshot: &OrderSnapshot,
    deltas: &[(DistributorId, Money)],
    commissionable_change: Money,
) -> TotalsDelta {
    let mut totals = TotalsDelta::default();
    totals.add_level1_sales(
        snapshot.order.distributor_id.as_str(),
        inputs.month,
        commissionable_change,
    );
    for (beneficiary, delta) in deltas {
        totals.add_earned(beneficiary.as_str(), inputs.day, *delta);
    }
    totals
}

/// The explanation of each fresh line, by (level, rate).
type TrailsByLine = HashMap<(u8, crate::domain::money::Rate), commission::RuleTrail>;

/// The commission the plan pays on the net items, with the context the
/// order was ingested in, reconciled line by line with what was recorded.
fn recompute_commission(
    inputs: &RecomputeInputs<'_>,
    snapshot: &OrderSnapshot,
    net_items: Vec<OrderItem>,
) -> Result<(Vec<settlement::LineChange>, TrailsByLine), StoreError> {
    let order = Order {
        distributor_id: DistributorId::parse(snapshot.order.distributor_id.as_str())?,
        buyer_id: BuyerId::parse(snapshot.order.buyer_id.as_str())?,
        items: net_items,
    };
    let explained: Vec<ExplainedLine> =
        commission::compute_with(inputs.plan, &order, inputs.chain, inputs.context)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let trails: TrailsByLine = explained
        .iter()
        .map(|line| ((line.line.level, line.line.rate), line.rule_trail.clone()))
        .collect();
    let fresh: Vec<CommissionLine> = explained.into_iter().map(|line| line.line).collect();
    let recorded = snapshot
        .order
        .lines
        .iter()
        .map(|line| {
            Ok(RecordedLine {
                beneficiary: DistributorId::parse(line.beneficiary_id.as_str())?,
                level: line.level,
                rate: line.rate,
                base: line.base,
                amount: line.amount,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((settlement::reconcile(&recorded, &fresh), trails))
}

/// Where `calendar` puts the hold of an order confirmed at `confirmed_at`
/// (held `extra_hold_days` business days longer when risk flagged it).
fn plan_hold(
    settings: &SettlementSettings,
    calendar: &BusinessCalendar,
    confirmed_at: DateTime<Utc>,
    extra_hold_days: u32,
) -> HoldPlan {
    let release_at = settlement::release_at(
        confirmed_at,
        calendar,
        settings.time_zone,
        settings.hold_business_days.saturating_add(extra_hold_days),
    );
    let (day_starts, day_ends) = settlement::local_day_of(confirmed_at, settings.time_zone);
    HoldPlan {
        day_starts,
        day_ends,
        release_at,
        provisional: settlement::release_is_provisional(
            confirmed_at,
            release_at,
            calendar,
            settings.time_zone,
        ),
    }
}

/// Re-plans the holds over every calendar version still pending, on the
/// calendar as the database has it now; nothing to do when none is.
async fn replan_pending(shared: &Shared) -> Result<ReplanCounts, StoreError> {
    let mut attempts = 0;
    loop {
        let calendar = shared.calendars.refresh(&shared.store).await?;
        let pending = shared.store.pending_replans().await?;
        let Some(first_year) = pending.iter().map(|version| version.year).min() else {
            return Ok(ReplanCounts::default());
        };
        // Only holds ending on or after 1 January of the earliest changed
        // year can move: before it both calendars agree day for day.
        let from = settlement::start_of_year(first_year, shared.settings.time_zone);
        let describe = format!(
            "{} {}",
            shared.calendars.key(),
            pending
                .iter()
                .map(|version| format!("{} v{}", version.year, version.version))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut days: HashMap<(chrono::NaiveDate, u32), HoldPlan> = HashMap::new();
        let time_zone = shared.settings.time_zone;
        let plan = |confirmed_at: DateTime<Utc>, extra_hold_days: u32| {
            let day = confirmed_at.with_timezone(&time_zone).date_naive();
            *days.entry((day, extra_hold_days)).or_insert_with(|| {
                plan_hold(
                    &shared.settings,
                    &calendar.calendar,
                    confirmed_at,
                    extra_hold_days,
                )
            })
        };
        let started = std::time::Instant::now();
        match shared
            .store
            .replan_holds(
                calendar.generation,
                from,
                plan,
                &describe,
                &shared.settings.release_job,
                shared.clock.now(),
            )
            .await
        {
            Ok(counts) => {
                tracing::info!(
                    calendar = %describe,
                    moved = counts.moved,
                    confirmed = counts.confirmed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "holds re-planned over the business calendar"
                );
                return Ok(counts);
            }
            Err(StoreError::CalendarChanged { .. }) if attempts < CALENDAR_RELOADS => {
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn release_due(shared: &Shared, attempt: i64, trigger: &str) -> Result<usize, StoreError> {
    let batch = shared.settings.release_batch_size.max(1);
    let mut released = 0;
    // Bounded: each round releases a full batch or ends the loop, and the
    // clock's now is read once, so orders confirmed meanwhile wait for the next run.
    let now = shared.clock.now();
    // A pending re-plan or a newer calendar is found by the release
    // transaction itself (CalendarChanged), so the usual run costs nothing more.
    let mut calendar = shared.calendars.current();
    let mut reloads = 0;
    loop {
        let ids = match shared
            .store
            .release_due(now, batch, attempt, trigger, calendar.generation)
            .await
        {
            Ok(ids) => ids,
            // A year was applied since: its re-plan first, then release on it.
            Err(StoreError::CalendarChanged { .. }) if reloads < CALENDAR_RELOADS => {
                reloads += 1;
                replan_pending(shared).await?;
                calendar = shared.calendars.refresh(&shared.store).await?;
                continue;
            }
            Err(error) => return Err(error),
        };
        released += ids.len();
        for id in &ids {
            tracing::debug!(order_id = %id, step = "release", attempt, "order released");
        }
        if (ids.len() as i64) < batch {
            break;
        }
    }
    if released > 0 {
        tracing::info!(step = "release", attempt, released, "released due holds");
    }
    Ok(released)
}
