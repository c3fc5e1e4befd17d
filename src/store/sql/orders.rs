//! The order-settlement workflow's SQL, shared by both backends. Each
//! public procedure is one transaction: it writes the business state, the
//! ledger transfer and the timeline event together, and pushes the next
//! step's job on the same transaction — a crash leaves either all of it or
//! none.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;

use super::Repo;
use super::calendar::check_calendar;
use super::dialect::{
    Conn, Db, DbRow, ROWS_PER_STATEMENT, for_update, insert_event_rows, insert_item_rows,
    insert_line_rows, insert_order_rows, mark_released, pending_lines_of, push_release_jobs,
    skip_locked,
};
use super::ledger::{apply_transfer, apply_transfers};
use super::totals::{self, TotalsToRead};
use super::webhooks::{CommissionChange, commission_event, record_events};
use crate::domain::commission::{ExplainedLine, OrderItem};
use crate::domain::ids::DistributorId;
use crate::domain::ledger::{Transfer, commission_release};
use crate::domain::money::{Money, Rate};
use crate::domain::settlement::{LineState, OrderState};
use crate::domain::webhooks::EventType;
use crate::store::error::StoreError;
use crate::store::records::{
    CalendarLock, FlaggedOrder, IngestOutcome, ItemRecord, LineRecord, OrderEvent, OrderRecord,
    OrderSnapshot, PreparedOrder, RefundDecision, RefundOutcome, RefundRequest, RunningTotals,
    TotalsDelta,
};
use crate::store::time::DbTime;
use crate::store::{JobSpec, MAX_PAGE};

fn rate_from_db(text: &str) -> Result<Rate, StoreError> {
    Decimal::from_str_exact(text)
        .ok()
        .and_then(|fraction| Rate::from_fraction(fraction).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("commission rate {text:?}")))
}

pub(super) fn rate_to_db(rate: Rate) -> String {
    rate.fraction().normalize().to_string()
}

pub(super) fn line_from_row(row: &DbRow) -> Result<LineRecord, StoreError> {
    let level: i64 = row.try_get("level")?;
    Ok(LineRecord {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        beneficiary_id: row.try_get("beneficiary_id")?,
        level: u8::try_from(level).map_err(|_| StoreError::Corrupt(format!("level {level}")))?,
        rate: rate_from_db(&row.try_get::<String, _>("rate")?)?,
        base: Money::from_fen(row.try_get("base_fen")?),
        amount: Money::from_fen(row.try_get("amount_fen")?),
        plan_version: row.try_get("plan_version")?,
        campaign: row.try_get("campaign")?,
        state: LineState::parse(&row.try_get::<String, _>("state")?)?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
        rule_trail: row.try_get("rule_trail")?,
    })
}

pub(super) const LINE_COLUMNS: &str = "id, order_id, beneficiary_id, cast(level as bigint) as level, rate, base_fen, amount_fen, plan_version, campaign, state, created_at, rule_trail";

/// Risk flags as stored: comma-separated, `None` for none.
pub(super) fn risk_flags_to_db(flags: &[String]) -> Option<String> {
    (!flags.is_empty()).then(|| flags.join(","))
}

fn risk_flags_from_db(text: Option<String>) -> Vec<String> {
    text.map(|text| text.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The order with its lines and timeline, as the caller's connection sees it.
pub(super) async fn load_order(
    conn: &mut Conn,
    order_id: &str,
    lock: bool,
) -> Result<Option<OrderRecord>, StoreError> {
    // On SQLite `for_update!()` is empty and the two arms are the same text.
    #[allow(clippy::if_same_then_else)]
    let sql = if lock {
        concat!(
            "select order_id, distributor_id, buyer_id, placed_at, confirmed_at, total_fen, refunded_fen, ",
            "plan_version, state, release_at, release_at_provisional, chain, commission_context, ",
            "risk_flags, extra_hold_days, commission_voided_at from orders where order_id = $1",
            for_update!()
        )
    } else {
        concat!(
            "select order_id, distributor_id, buyer_id, placed_at, confirmed_at, total_fen, refunded_fen, ",
            "plan_version, state, release_at, release_at_provisional, chain, commission_context, ",
            "risk_flags, extra_hold_days, commission_voided_at from orders where order_id = $1"
        )
    };
    let Some(row) = sqlx::query(sql)
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {LINE_COLUMNS} from commission_lines where order_id = $1 order by level, id"
    )))
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(line_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    let timeline = sqlx::query_as::<_, (String, String, i64, Option<String>, DbTime)>(
        "select step, outcome, cast(attempt as bigint), detail, at from order_events where order_id = $1 order by id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(step, outcome, attempt, detail, at)| OrderEvent { step, outcome, attempt, detail, at: at.0 })
    .collect();
    Ok(Some(OrderRecord {
        order_id: row.try_get("order_id")?,
        distributor_id: row.try_get("distributor_id")?,
        buyer_id: row.try_get("buyer_id")?,
        placed_at: row.try_get::<DbTime, _>("placed_at")?.0,
        confirmed_at: row.try_get::<DbTime, _>("confirmed_at")?.0,
        total: Money::from_fen(row.try_get("total_fen")?),
        refunded: Money::from_fen(row.try_get("refunded_fen")?),
        plan_version: row.try_get("plan_version")?,
        state: OrderState::parse(&row.try_get::<String, _>("state")?)?,
        release_at: row.try_get::<DbTime, _>("release_at")?.0,
        release_at_provisional: row.try_get("release_at_provisional")?,
        chain_json: row.try_get("chain")?,
        commission_context: row.try_get("commission_context")?,
        risk_flags: risk_flags_from_db(row.try_get("risk_flags")?),
        extra_hold_days: u32::try_from(row.try_get::<i64, _>("extra_hold_days")?)
            .map_err(|_| StoreError::Corrupt("extra_hold_days".to_owned()))?,
        commission_voided: row
            .try_get::<Option<DbTime>, _>("commission_voided_at")?
            .is_some(),
        lines,
        timeline,
    }))
}

/// Which of `ids` are already written.
async fn existing_orders(conn: &mut Conn, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
    let mut existing = HashSet::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query =
            sqlx::QueryBuilder::<Db>::new("select order_id from orders where order_id in (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            existing.insert(row.try_get::<String, _>("order_id")?);
        }
    }
    Ok(existing)
}

/// The totals the batch's new orders read: only those whose plan has rules
/// that read them.
fn totals_to_read(batch: &[PreparedOrder], fresh: &[usize]) -> TotalsToRead {
    let mut keys = TotalsToRead::default();
    for order in fresh.iter().map(|&index| &batch[index]) {
        let totals = &order.totals;
        if !totals.read {
            continue;
        }
        keys.distributor_periods
            .insert((order.distributor_id.to_string(), totals.month.clone()));
        for distributor in &totals.chain {
            keys.distributor_periods
                .insert((distributor.to_string(), totals.day.clone()));
        }
        if totals.count_buyer {
            keys.buyer_days
                .insert((order.buyer_id.to_string(), totals.day.clone()));
        }
    }
    keys
}

pub(super) struct NewEvent<'a> {
    pub(super) order_id: &'a str,
    pub(super) step: &'a str,
    pub(super) outcome: &'a str,
    pub(super) attempt: i64,
    pub(super) detail: String,
}

pub(super) async fn insert_events(
    conn: &mut Conn,
    events: &[NewEvent<'_>],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let wall_clock = Utc::now();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        insert_event_rows(conn, chunk, at, wall_clock).await?;
    }
    Ok(())
}

impl Repo {
    /// Writes a batch of confirmed orders in one transaction (group commit):
    /// the orders, their items and commission lines, the pending credit, the
    /// timeline event, and the release job of each distinct release time.
    /// A replay (same id, same body) changes nothing; the same id with
    /// another body is a conflict for that order alone.
    ///
    /// `finish` computes each new order's commission (and risk flags) from
    /// the running totals as they stand inside this transaction, in batch
    /// order, so a tier, a daily cap or a buyer's count sees every order
    /// ingested before it, whichever writer or process ingested it.
    pub async fn ingest_orders<F>(
        &self,
        batch: &mut [PreparedOrder],
        release_job: &JobSpec,
        calendar_generation: i64,
        now: DateTime<Utc>,
        mut finish: F,
    ) -> Result<Vec<IngestOutcome>, StoreError>
    where
        F: FnMut(&mut PreparedOrder, &RunningTotals) -> Result<(), StoreError> + Send,
    {
        let mut tx = self.begin_write().await?;
        // New orders may be planned while a re-plan is pending: they were
        // planned on the calendar that re-plan is for.
        check_calendar(&mut tx, CalendarLock::Shared, calendar_generation, true).await?;
        let ids: Vec<&str> = batch.iter().map(|order| order.order_id.as_str()).collect();
        let existing = existing_orders(&mut tx, &ids).await?;
        // A second copy of an order in the same batch is a replay of the first.
        let mut seen = HashSet::new();
        let fresh_index: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, order)| {
                !existing.contains(order.order_id.as_str()) && seen.insert(order.order_id.as_str())
            })
            .map(|(index, _)| index)
            .collect();
        let mut running = RunningTotals {
            stored: totals::lock_and_read(&mut tx, &totals_to_read(batch, &fresh_index)).await?,
            added: TotalsDelta::default(),
        };
        for &index in &fresh_index {
            finish(&mut batch[index], &running)?;
            running.add_order(&batch[index]);
        }
        // Totals before ledger accounts: the lock order of every writer.
        totals::add(&mut tx, &running.added).await?;
        let fresh: Vec<&PreparedOrder> = fresh_index.iter().map(|&index| &batch[index]).collect();
        let mut inserted = 0;
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            inserted += insert_order_rows(&mut tx, chunk, now).await?.len();
        }
        if inserted != fresh.len() {
            // Another writer committed one of these orders since the check
            // above: nothing of the batch stands; written again, it replays.
            return Err(StoreError::WriterRace(
                "an order of the batch was written by another writer meanwhile".to_owned(),
            ));
        }

        let items: Vec<(&PreparedOrder, usize, &OrderItem)> = fresh
            .iter()
            .flat_map(|order| {
                order
                    .items
                    .iter()
                    .enumerate()
                    .map(move |(line_no, item)| (*order, line_no, item))
            })
            .collect();
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            insert_item_rows(&mut tx, chunk, now).await?;
        }
        let lines: Vec<(&PreparedOrder, &ExplainedLine)> = fresh
            .iter()
            .flat_map(|order| order.lines.iter().map(move |line| (*order, line)))
            .collect();
        for chunk in lines.chunks(ROWS_PER_STATEMENT) {
            insert_line_rows(&mut tx, chunk, now).await?;
        }
        let pending_events = || {
            lines
                .iter()
                .filter(|(_, explained)| !explained.line.amount.is_zero())
                .map(|(order, explained)| {
                    commission_event(
                        EventType::CommissionPending,
                        &CommissionChange {
                            order_id: order.order_id.as_str(),
                            beneficiary_id: explained.line.beneficiary.as_str(),
                            level: explained.line.level,
                            amount: explained.line.amount,
                            previous_amount: None,
                            refund_id: None,
                            release_at: Some(order.release_at),
                        },
                        now,
                    )
                })
                .collect::<Vec<_>>()
        };
        record_events(&mut tx, pending_events).await?;
        let transfers: Vec<Transfer> = fresh
            .iter()
            .filter_map(|order| order.pending_transfer.clone())
            .collect();
        apply_transfers(&mut tx, &transfers, now).await?;
        let events: Vec<NewEvent<'_>> = fresh
            .iter()
            .map(|order| {
                let pending =
                    Money::checked_sum(order.lines.iter().map(|explained| explained.line.amount))
                        .unwrap_or_default();
                NewEvent {
                    order_id: order.order_id.as_str(),
                    step: "ingest",
                    outcome: if pending.is_zero() {
                        "no_commission"
                    } else {
                        "pending_posted"
                    },
                    attempt: 1,
                    detail: format!(
                        "{} line(s), {pending} pending under plan v{}; release at {}{}",
                        order.lines.len(),
                        order.plan_version,
                        order.release_at.to_rfc3339(),
                        if order.release_at_provisional {
                            " (provisional: counted over a year whose holiday notice is not applied yet)"
                        } else {
                            ""
                        }
                    ),
                }
            })
            .collect();
        insert_events(&mut tx, &events, now).await?;
        let mut release_times: Vec<DateTime<Utc>> =
            fresh.iter().map(|order| order.release_at).collect();
        release_times.sort();
        release_times.dedup();
        push_release_jobs(&mut tx, release_job, &release_times).await?;

        let risk_events: Vec<NewEvent<'_>> = fresh
            .iter()
            .filter(|order| !order.risk_flags.is_empty())
            .map(|order| NewEvent {
                order_id: order.order_id.as_str(),
                step: "risk",
                outcome: "flagged",
                attempt: 1,
                detail: format!(
                    "flagged {}: held {} more business day(s)",
                    order.risk_flags.join(", "),
                    order.extra_hold_days
                ),
            })
            .collect();
        insert_events(&mut tx, &risk_events, now).await?;

        let fresh_index: HashSet<usize> = fresh_index.into_iter().collect();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, order) in batch.iter().enumerate() {
            let id = order.order_id.as_str();
            if fresh_index.contains(&index) {
                outcomes.push(IngestOutcome::Created(Box::new(order.clone())));
                continue;
            }
            let fingerprint: String =
                sqlx::query_scalar("select request_sha256 from orders where order_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            if fingerprint != order.request_sha256 {
                outcomes.push(IngestOutcome::Conflict);
                continue;
            }
            let record = load_order(&mut tx, id, false)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("order {id} vanished")))?;
            outcomes.push(IngestOutcome::Replayed(Box::new(record)));
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Releases up to `limit` holding orders whose release time has come:
    /// pending → available with the lines' final amounts, in one transaction.
    /// Re-running it finds nothing left to do. Returns the released order ids.
    pub async fn release_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        attempt: i64,
        trigger: &str,
        calendar_generation: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        check_calendar(&mut tx, CalendarLock::Shared, calendar_generation, false).await?;
        let due: Vec<String> = sqlx::query_scalar(concat!(
            "select order_id from orders where state = 'holding' and release_at <= $1 ",
            "order by release_at, order_id limit $2",
            skip_locked!()
        ))
        .bind(DbTime(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(due);
        }
        let lines = pending_lines_of(&mut tx, &due).await?;
        let mut transfers = Vec::new();
        for chunk in lines.chunk_by(|a, b| a.order_id == b.order_id) {
            let amounts = chunk
                .iter()
                .map(|line| {
                    Ok((
                        DistributorId::parse(line.beneficiary_id.as_str())?,
                        line.amount,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let transfer = commission_release(&chunk[0].order_id, &amounts)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            transfers.extend(transfer);
        }
        apply_transfers(&mut tx, &transfers, now).await?;
        let released_events = || {
            lines
                .iter()
                .map(|line| {
                    commission_event(
                        EventType::CommissionReleased,
                        &CommissionChange {
                            order_id: &line.order_id,
                            beneficiary_id: &line.beneficiary_id,
                            level: line.level,
                            amount: line.amount,
                            previous_amount: None,
                            refund_id: None,
                            release_at: None,
                        },
                        now,
                    )
                })
                .collect::<Vec<_>>()
        };
        record_events(&mut tx, released_events).await?;
        for chunk in due.chunks(ROWS_PER_STATEMENT) {
            mark_released(&mut tx, chunk, now).await?;
        }
        let events: Vec<NewEvent<'_>> = due
            .iter()
            .map(|order_id| NewEvent {
                order_id,
                step: "release",
                outcome: "released",
                attempt,
                detail: format!("pending → available ({trigger})"),
            })
            .collect();
        insert_events(&mut tx, &events, now).await?;
        tx.commit().await?;
        Ok(due)
    }

    /// Applies a refund in one transaction: locks the order, lets `decide`
    /// work out the new amounts from the locked snapshot, and writes the
    /// refund, the items, the lines, the ledger transfer and the event.
    pub async fn refund_order<F, E>(
        &self,
        request: &RefundRequest,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<RefundOutcome, E>
    where
        F: FnOnce(&OrderSnapshot) -> Result<RefundDecision, E> + Send,
        E: From<StoreError>,
    {
        let mut tx = self.begin_write().await.map_err(StoreError::from)?;
        let snapshot = match lock_for_refund(&mut tx, request).await? {
            RefundLock::Replayed(order) => {
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(RefundOutcome::Replayed(order));
            }
            RefundLock::Fresh(snapshot) => snapshot,
        };
        let decision = decide(&snapshot)?;
        write_refund(&mut tx, request, &snapshot, &decision, now).await?;
        let record = load_order(&mut tx, &request.order_id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {} vanished", request.order_id)))?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(RefundOutcome::Applied(record))
    }

    /// Orders the risk rules flagged, most recently confirmed first.
    pub async fn flagged_orders(&self, limit: i64) -> Result<Vec<FlaggedOrder>, StoreError> {
        let rows = sqlx::query(concat!(
            "select order_id, distributor_id, buyer_id, state, confirmed_at, release_at, risk_flags, ",
            "extra_hold_days from orders where risk_flags is not null ",
            "order by confirmed_at desc, order_id limit $1"
        ))
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FlaggedOrder {
                    order_id: row.try_get("order_id")?,
                    distributor_id: row.try_get("distributor_id")?,
                    buyer_id: row.try_get("buyer_id")?,
                    state: OrderState::parse(&row.try_get::<String, _>("state")?)?,
                    confirmed_at: row.try_get::<DbTime, _>("confirmed_at")?.0,
                    release_at: row.try_get::<DbTime, _>("release_at")?.0,
                    risk_flags: risk_flags_from_db(row.try_get("risk_flags")?),
                    extra_hold_days: u32::try_from(row.try_get::<i64, _>("extra_hold_days")?)
                        .map_err(|_| StoreError::Corrupt("extra_hold_days".to_owned()))?,
                })
            })
            .collect()
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_order(&mut conn, order_id, false).await
    }

    /// An order's items with what was refunded of each, in line order.
    pub async fn order_items(&self, order_id: &str) -> Result<Vec<ItemRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_items(&mut conn, order_id).await
    }

    /// A beneficiary's commission lines, newest first, before `before_id` (keyset pagination).
    pub async fn commissions(
        &self,
        beneficiary_id: &str,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LineRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "select {LINE_COLUMNS} from commission_lines where beneficiary_id = $1 and id < $2 order by id desc limit $3"
        )))
        .bind(beneficiary_id)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(line_from_row)
        .collect()
    }

    /// How many orders are in each state.
    pub async fn order_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("select state, count(*) from orders group by state order by state")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Where a refund stands once its order is locked.
enum RefundLock {
    /// The same refund, same body, was already applied: answer it again.
    Replayed(OrderRecord),
    /// A new refund, and the order and items it will be decided on.
    Fresh(OrderSnapshot),
}

/// The refund's first step: locks the order, tells a replay from a refund
/// id reused with another body, and reads the items the decision needs.
async fn lock_for_refund(
    conn: &mut Conn,
    request: &RefundRequest,
) -> Result<RefundLock, StoreError> {
    let Some(order) = load_order(conn, &request.order_id, true).await? else {
        return Err(StoreError::NotFound {
            what: "order",
            id: request.order_id.clone(),
        });
    };
    let previous: Option<String> = sqlx::query_scalar(
        "select request_sha256 from order_refunds where order_id = $1 and refund_id = $2",
    )
    .bind(&request.order_id)
    .bind(&request.refund_id)
    .fetch_optional(&mut *conn)
    .await?;
    match previous {
        Some(hash) if hash == request.request_sha256 => return Ok(RefundLock::Replayed(order)),
        Some(_) => {
            return Err(StoreError::Conflict {
                what: "refund",
                id: request.refund_id.clone(),
            });
        }
        None => {}
    }
    let items = load_items(conn, &request.order_id).await?;
    Ok(RefundLock::Fresh(OrderSnapshot { order, items }))
}

/// An order's items with what was refunded of each, in line order.
pub(super) async fn load_items(
    conn: &mut Conn,
    order_id: &str,
) -> Result<Vec<ItemRecord>, StoreError> {
    Ok(sqlx::query_as::<_, (i64, String, String, i64, i64)>(
        "select cast(line_no as bigint), sku, category, amount_fen, refunded_fen from order_items where order_id = $1 order by line_no",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(line_no, sku, category, amount, refunded)| ItemRecord {
        line_no,
        sku,
        category,
        amount: Money::from_fen(amount),
        refunded: Money::from_fen(refunded),
    })
    .collect())
}

/// The refund's last step: writes what was decided — the refund row, the
/// items' refunded amounts, the order, its commission lines, the ledger
/// transfer and the timeline event — on the locked order's transaction.
async fn write_refund(
    conn: &mut Conn,
    request: &RefundRequest,
    snapshot: &OrderSnapshot,
    decision: &RefundDecision,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    record_refund(conn, request, decision, now).await?;
    rewrite_commission_lines(conn, request, snapshot, decision, now).await?;
    record_events(conn, || {
        reduced_line_events(request, snapshot, decision, now)
    })
    .await?;
    // Totals before ledger accounts: the lock order of every writer.
    totals::add(conn, &decision.totals).await?;
    if let Some(transfer) = &decision.transfer {
        apply_transfer(conn, transfer, now).await?;
    }
    insert_events(
        conn,
        &[NewEvent {
            order_id: &request.order_id,
            step: "refund",
            outcome: decision.event_outcome,
            attempt: 1,
            detail: decision.event_detail.clone(),
        }],
        now,
    )
    .await
}

/// The webhook events of the lines a refund reduced: voided in the hold,
/// clawed back after the release.
fn reduced_line_events(
    request: &RefundRequest,
    snapshot: &OrderSnapshot,
    decision: &RefundDecision,
    now: DateTime<Utc>,
) -> Vec<crate::domain::webhooks::NewEvent> {
    let kind = if snapshot.order.state == OrderState::Released {
        EventType::CommissionClawedBack
    } else {
        EventType::CommissionVoided
    };
    snapshot
        .order
        .lines
        .iter()
        .filter(|line| !line.amount.is_zero())
        .filter_map(|line| {
            let updated = decision
                .line_updates
                .iter()
                .find(|update| update.level == line.level && update.rate == line.rate);
            let amount = match (updated, decision.new_state) {
                (_, OrderState::Cancelled) => Money::ZERO,
                (Some(update), _) => update.amount,
                (None, _) => line.amount,
            };
            (amount < line.amount).then(|| {
                commission_event(
                    kind,
                    &CommissionChange {
                        order_id: &request.order_id,
                        beneficiary_id: &line.beneficiary_id,
                        level: line.level,
                        amount,
                        previous_amount: Some(line.amount),
                        refund_id: Some(&request.refund_id),
                        release_at: None,
                    },
                    now,
                )
            })
        })
        .collect()
}

/// The refund row, the items' refunded amounts and the order's new total
/// and state.
async fn record_refund(
    conn: &mut Conn,
    request: &RefundRequest,
    decision: &RefundDecision,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "insert into order_refunds (order_id, refund_id, sku, amount_fen, phase, request_sha256, created_at) ",
        "values ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&request.order_id)
    .bind(&request.refund_id)
    .bind(request.sku.as_deref())
    .bind(request.amount.fen())
    .bind(decision.phase)
    .bind(&request.request_sha256)
    .bind(DbTime(now))
    .execute(&mut *conn)
    .await?;
    for (line_no, amount) in &decision.item_refunds {
        if amount.is_zero() {
            continue;
        }
        sqlx::query("update order_items set refunded_fen = refunded_fen + $1 where order_id = $2 and line_no = $3")
            .bind(amount.fen())
            .bind(&request.order_id)
            .bind(*line_no)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(concat!(
        "update orders set refunded_fen = refunded_fen + $1, state = $2, updated_at = $3 ",
        "where order_id = $4"
    ))
    .bind(request.amount.fen())
    .bind(decision.new_state.as_str())
    .bind(DbTime(now))
    .bind(&request.order_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The order's commission lines as recomputed on the net amount: each
/// updated in place, added if the plan now pays a new one, and all
/// cancelled with the order.
async fn rewrite_commission_lines(
    conn: &mut Conn,
    request: &RefundRequest,
    snapshot: &OrderSnapshot,
    decision: &RefundDecision,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let live_state = match decision.new_state {
        OrderState::Holding => LineState::Pending,
        OrderState::Released => LineState::Released,
        OrderState::Cancelled => LineState::Cancelled,
    };
    for update in &decision.line_updates {
        let state = if update.amount.is_zero() {
            LineState::Cancelled
        } else {
            live_state
        };
        let changed = sqlx::query(concat!(
            "update commission_lines set base_fen = $1, amount_fen = $2, state = $3, updated_at = $4, ",
            "rule_trail = coalesce($8, rule_trail) where order_id = $5 and level = $6 and rate = $7"
        ))
        .bind(update.base.fen())
        .bind(update.amount.fen())
        .bind(state.as_str())
        .bind(DbTime(now))
        .bind(&request.order_id)
        .bind(i64::from(update.level))
        .bind(rate_to_db(update.rate))
        .bind(update.rule_trail.as_deref())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed == 0 {
            sqlx::query(concat!(
                "insert into commission_lines (order_id, beneficiary_id, level, rate, base_fen, amount_fen, ",
                "plan_version, state, created_at, updated_at, rule_trail) ",
                "values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)"
            ))
            .bind(&request.order_id)
            .bind(&update.beneficiary_id)
            .bind(i64::from(update.level))
            .bind(rate_to_db(update.rate))
            .bind(update.base.fen())
            .bind(update.amount.fen())
            .bind(snapshot.order.plan_version)
            .bind(state.as_str())
            .bind(DbTime(now))
            .bind(update.rule_trail.as_deref())
            .execute(&mut *conn)
            .await?;
        }
    }
    if decision.new_state == OrderState::Cancelled {
        sqlx::query(
            "update commission_lines set state = 'cancelled', updated_at = $1 where order_id = $2",
        )
        .bind(DbTime(now))
        .bind(&request.order_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Repo {
    /// When the next of `beneficiary`'s pending commission lines is due to
    /// be released: the earliest release time of a holding order it earns
    /// on; `None` when nothing is pending.
    pub async fn next_release_at(
        &self,
        beneficiary: &DistributorId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<DbTime> = sqlx::query_scalar(concat!(
            "select min(o.release_at) from commission_lines l join orders o on o.order_id = l.order_id ",
            "where l.beneficiary_id = $1 and l.state = 'pending' and o.state = 'holding'"
        ))
        .bind(beneficiary.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(next.map(|at| at.0))
    }
}
