//! Ops voiding an order's commission (issue 14, risk holds), shared by both
//! backends. One transaction: lock the order; if it was voided before,
//! answer that again; else reverse every line's amount in the ledger the way
//! a full refund would (pending inside the hold, clawed back from available
//! after the release — `domain::ledger::commission_void`), leave the lines
//! at 0 (cancelled, base and explanation kept), mark the order so that its
//! release moves nothing and a later refund no commission, and write the
//! order's `void` event and the audit entry. The running totals lose what
//! the order added (its seller's month of level-1 sales, each beneficiary's
//! day of earnings), so later orders' tiers and daily caps read sales that
//! count; the engine says how much (`SettlementEngine::void_commission`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use super::audit::audit_in;
use super::dialect::Conn;
use super::ledger::apply_transfer;
use super::orders::{NewEvent, insert_events, load_items, load_order};
use super::totals;
use super::webhooks::{CommissionChange, commission_event, record_events};
use crate::domain::ids::DistributorId;
use crate::domain::ledger::commission_void;
use crate::domain::money::Money;
use crate::domain::settlement::OrderState;
use crate::domain::webhooks::EventType;
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, OrderRecord, OrderSnapshot, TotalsDelta, VoidOutcome, VoidedOrder,
};
use crate::store::time::DbTime;

/// The `void` event's outcome when the commission came back from available.
const CLAWED_BACK: &str = "clawed_back";

impl Repo {
    /// Voids the commission of `order_id` (see the module docs); `totals_of`
    /// says what the locked order takes off the running totals. A second
    /// call answers the first void again, whatever its reason, and moves
    /// nothing.
    pub async fn void_commission<F>(
        &self,
        order_id: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
        totals_of: F,
    ) -> Result<VoidOutcome, StoreError>
    where
        F: FnOnce(&OrderSnapshot) -> Result<TotalsDelta, StoreError> + Send,
    {
        let mut tx = self.begin_write().await?;
        let Some(order) = load_order(&mut tx, order_id, true).await? else {
            return Err(StoreError::NotFound {
                what: "order",
                id: order_id.to_owned(),
            });
        };
        if order.commission_voided {
            let voided = voided_order(&mut tx, order).await?;
            tx.commit().await?;
            return Ok(VoidOutcome::Replayed(voided));
        }
        let after_release = order.state == OrderState::Released;
        let deltas = order
            .lines
            .iter()
            .filter(|line| !line.amount.is_zero())
            .map(|line| {
                let back = line.amount.checked_neg().ok_or_else(|| {
                    StoreError::Corrupt(format!("line amount {} of {order_id}", line.amount))
                })?;
                Ok((DistributorId::parse(line.beneficiary_id.as_str())?, back))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let kind = if after_release {
            EventType::CommissionClawedBack
        } else {
            EventType::CommissionVoided
        };
        let events = || {
            order
                .lines
                .iter()
                .filter(|line| !line.amount.is_zero())
                .map(|line| {
                    commission_event(
                        kind,
                        &CommissionChange {
                            order_id,
                            beneficiary_id: &line.beneficiary_id,
                            level: line.level,
                            amount: Money::ZERO,
                            previous_amount: Some(line.amount),
                            refund_id: None,
                            release_at: None,
                        },
                        now,
                    )
                })
                .collect::<Vec<_>>()
        };
        record_events(&mut tx, events).await?;
        let reversed = Money::checked_sum(order.lines.iter().map(|line| line.amount))
            .ok_or_else(|| StoreError::Corrupt(format!("commission total of {order_id}")))?;
        let items = load_items(&mut tx, order_id).await?;
        let snapshot = OrderSnapshot { order, items };
        // Totals before ledger accounts: the lock order of every writer.
        totals::add(&mut tx, &totals_of(&snapshot)?).await?;
        let order = snapshot.order;
        if let Some(transfer) = commission_void(order_id, &deltas, after_release)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?
        {
            apply_transfer(&mut tx, &transfer, now).await?;
        }
        sqlx::query(concat!(
            "update commission_lines set amount_fen = 0, state = 'cancelled', updated_at = $1 ",
            "where order_id = $2 and (amount_fen <> 0 or state <> 'cancelled')"
        ))
        .bind(DbTime(now))
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(concat!(
            "update orders set commission_voided_at = $1, void_reason = $2, void_reversed_fen = $3, ",
            "updated_at = $1 where order_id = $4"
        ))
        .bind(DbTime(now))
        .bind(reason)
        .bind(reversed.fen())
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let (outcome, how) = match (reversed.is_zero(), after_release) {
            (true, _) => ("nothing_to_void", "no commission was left to reverse"),
            (false, true) => (CLAWED_BACK, "clawed back from available"),
            (false, false) => (
                "reversed",
                "reversed from pending; the release will pay nothing",
            ),
        };
        insert_events(
            &mut tx,
            &[NewEvent {
                order_id,
                step: "void",
                outcome,
                attempt: 1,
                detail: format!("commission voided by ops ({reason}): {reversed} {how}"),
            }],
            now,
        )
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "order.void_commission",
            format!("order:{order_id}"),
            Some(serde_json::json!({
                "state": order.state.as_str(),
                "lines": order.lines.iter().map(|line| serde_json::json!({
                    "beneficiary_id": line.beneficiary_id,
                    "level": line.level,
                    "amount": line.amount,
                })).collect::<Vec<_>>(),
            })),
            Some(serde_json::json!({
                "reason": reason,
                "reversed": reversed,
                "clawed_back": after_release && !reversed.is_zero(),
            })),
        )
        .await?;
        let order = load_order(&mut tx, order_id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished")))?;
        let voided = voided_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(VoidOutcome::Voided(voided))
    }
}

/// The void as recorded on a voided order.
async fn voided_order(conn: &mut Conn, order: OrderRecord) -> Result<VoidedOrder, StoreError> {
    let row = sqlx::query(
        "select commission_voided_at, void_reason, void_reversed_fen from orders where order_id = $1",
    )
    .bind(&order.order_id)
    .fetch_one(&mut *conn)
    .await?;
    let voided_at = row
        .try_get::<Option<DbTime>, _>("commission_voided_at")?
        .ok_or_else(|| StoreError::Corrupt(format!("order {} is not voided", order.order_id)))?
        .0;
    let clawed_back = order
        .timeline
        .iter()
        .any(|event| event.step == "void" && event.outcome == CLAWED_BACK);
    Ok(VoidedOrder {
        voided_at,
        reason: row
            .try_get::<Option<String>, _>("void_reason")?
            .unwrap_or_default(),
        reversed: Money::from_fen(
            row.try_get::<Option<i64>, _>("void_reversed_fen")?
                .unwrap_or(0),
        ),
        clawed_back,
        order,
    })
}
