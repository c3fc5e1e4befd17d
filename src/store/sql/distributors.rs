//! A distributor's lifecycle after creation, shared by both backends: the
//! daily grade review (upgrades and clearing, SPEC §2.2), ops' reinstatement
//! and the distributor's timeline (`distributor_events`). Each change, its
//! timeline entry and its audit entry are one transaction, and each change is
//! written only if the distributor is still as the decision saw them, so a
//! review that runs twice, late, or beside another changes nothing more.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Conn, for_update};
use super::ledger::fetch_distributor;
use super::webhooks::record_events;
use crate::domain::grades::ReviewFacts;
use crate::domain::ids::DistributorId;
use crate::domain::money::Money;
use crate::domain::webhooks::{EventType, NewEvent};
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, DistributorEvent, LifecycleChange, Reinstatement, ReviewChange, ReviewedPage,
};
use crate::store::time::DbTime;

/// Most timeline entries `GET /v1/distributors/{id}` shows (newest first).
pub const MAX_TIMELINE: i64 = 100;

/// The review's facts for a page of distributors, read in the transaction
/// that writes the decisions. Settled sales: released orders, net of
/// refunds, whose commission was not voided (a voided order was ruled out
/// by ops, so it does not lift anyone's grade or keep them active).
/// A seller two levels down has `upline_2` = the leader; one level down,
/// `referrer_id` (each sum uses its own index).
const REVIEW_FACTS: &str = concat!(
    "select d.id, d.grade, d.status, d.created_at, ",
    "(select cast(coalesce(sum(o.total_fen - o.refunded_fen), 0) as bigint) from orders o ",
    " where o.distributor_id = d.id and o.state = 'released' and o.commission_voided_at is null) as own_fen, ",
    "(select cast(coalesce(sum(o.total_fen - o.refunded_fen), 0) as bigint) from orders o ",
    " join distributors s on s.id = o.distributor_id ",
    " where s.referrer_id = d.id and o.state = 'released' and o.commission_voided_at is null) as level2_fen, ",
    "(select cast(coalesce(sum(o.total_fen - o.refunded_fen), 0) as bigint) from orders o ",
    " join distributors s on s.id = o.distributor_id ",
    " where s.upline_2 = d.id and o.state = 'released' and o.commission_voided_at is null) as level3_fen, ",
    "(select max(o.release_at) from orders o where o.distributor_id = d.id and o.state = 'released' ",
    " and o.total_fen > o.refunded_fen and o.commission_voided_at is null) as last_sale_at, ",
    "(select max(e.at) from distributor_events e where e.distributor_id = d.id and e.kind = 'reinstated') ",
    " as last_reinstated_at ",
    "from distributors d where d.id > $1 order by d.id limit $2",
    for_update!()
);

impl Repo {
    /// Reviews the distributors after `after` (in id order, at most `limit`)
    /// in one transaction: reads each one's facts, lets `decide` rule, and
    /// writes each change with its timeline and audit entries.
    pub async fn review_distributors<F>(
        &self,
        after: Option<&str>,
        limit: i64,
        now: DateTime<Utc>,
        actor: &Actor,
        decide: F,
    ) -> Result<ReviewedPage, StoreError>
    where
        F: Fn(&ReviewFacts) -> Option<ReviewChange> + Send,
    {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(REVIEW_FACTS)
            .bind(after.unwrap_or(""))
            .bind(limit.clamp(1, MAX_PAGE))
            .fetch_all(&mut *tx)
            .await?;
        let mut page = ReviewedPage::default();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let own = Money::from_fen(row.try_get("own_fen")?);
            let team = [
                row.try_get::<i64, _>("own_fen")?,
                row.try_get("level2_fen")?,
                row.try_get("level3_fen")?,
            ]
            .into_iter()
            .try_fold(0_i64, i64::checked_add)
            .map(Money::from_fen)
            .ok_or_else(|| StoreError::Corrupt(format!("team sales of {id} overflow")))?;
            let facts = ReviewFacts {
                grade: row.try_get("grade")?,
                active: row.try_get::<String, _>("status")? == "active",
                own_sales: own,
                team_sales: team,
                created_at: row.try_get::<DbTime, _>("created_at")?.0,
                last_sale_at: row
                    .try_get::<Option<DbTime>, _>("last_sale_at")?
                    .map(|at| at.0),
                last_reinstated_at: row
                    .try_get::<Option<DbTime>, _>("last_reinstated_at")?
                    .map(|at| at.0),
            };
            page.reviewed += 1;
            if let Some(change) = decide(&facts)
                && write_change(&mut tx, &id, &change, actor, now).await?
            {
                match change.change {
                    LifecycleChange::Upgrade { .. } => page.upgraded += 1,
                    LifecycleChange::Clear => page.cleared += 1,
                }
            }
            page.last_id = Some(id);
        }
        tx.commit().await?;
        Ok(page)
    }

    /// Reinstates a cleared distributor (ops), with the timeline and audit
    /// entries, in one transaction. An active one is left as it is.
    pub async fn reinstate_distributor(
        &self,
        id: &DistributorId,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Reinstatement, StoreError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar(concat!(
            "select status from distributors where id = $1",
            for_update!()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        match status.as_deref() {
            None => {
                return Err(StoreError::NotFound {
                    what: "distributor",
                    id: id.to_string(),
                });
            }
            Some("cleared") => {}
            Some(_) => {
                tx.commit().await?;
                return Ok(Reinstatement::NotCleared);
            }
        }
        sqlx::query(
            "update distributors set status = 'active' where id = $1 and status = 'cleared'",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let figures = serde_json::json!({ "reason": reason });
        insert_event(
            &mut tx,
            id.as_str(),
            "reinstated",
            &format!("reinstated by ops: {reason}"),
            &figures,
            actor,
            now,
        )
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "distributor.reinstate",
            format!("distributor:{id}"),
            Some(serde_json::json!({ "status": "cleared" })),
            Some(serde_json::json!({ "status": "active", "reason": reason })),
        )
        .await?;
        let (distributor, _) = fetch_distributor(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("distributor {id} vanished")))?;
        tx.commit().await?;
        Ok(Reinstatement::Reinstated(distributor))
    }

    /// The distributor's timeline, newest first, at most [`MAX_TIMELINE`].
    pub async fn distributor_events(
        &self,
        id: &DistributorId,
    ) -> Result<Vec<DistributorEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            "select id, kind, detail, figures, actor, at from distributor_events ",
            "where distributor_id = $1 order by id desc limit $2"
        ))
        .bind(id.as_str())
        .bind(MAX_TIMELINE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let figures: Option<String> = row.try_get("figures")?;
                Ok(DistributorEvent {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    detail: row.try_get("detail")?,
                    figures: figures
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|error| StoreError::Corrupt(format!("event figures: {error}")))?,
                    actor: row.try_get("actor")?,
                    at: row.try_get::<DbTime, _>("at")?.0,
                })
            })
            .collect()
    }
}

/// Writes one review change if the distributor is still as decided on;
/// `false` when another review got there first.
async fn write_change(
    conn: &mut sqlx::Transaction<'static, super::dialect::Db>,
    id: &str,
    change: &ReviewChange,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (changed, kind, action, before, after) = match &change.change {
        LifecycleChange::Upgrade { from, to } => {
            let changed = sqlx::query("update distributors set grade = $1 where id = $2 and grade = $3 and status = 'active'")
                .bind(to)
                .bind(id)
                .bind(from)
                .execute(&mut **conn)
                .await?
                .rows_affected();
            (
                changed,
                "upgraded",
                "distributor.upgrade",
                serde_json::json!({ "grade": from }),
                serde_json::json!({ "grade": to }),
            )
        }
        LifecycleChange::Clear => {
            let changed = sqlx::query(
                "update distributors set status = 'cleared' where id = $1 and status = 'active'",
            )
            .bind(id)
            .execute(&mut **conn)
            .await?
            .rows_affected();
            (
                changed,
                "cleared",
                "distributor.clear",
                serde_json::json!({ "status": "active" }),
                serde_json::json!({ "status": "cleared" }),
            )
        }
    };
    if changed == 0 {
        return Ok(false);
    }
    insert_event(conn, id, kind, &change.detail, &change.figures, actor, now).await?;
    if let LifecycleChange::Upgrade { from, to } = &change.change {
        let data = serde_json::json!({
            "distributor_id": id,
            "grade": to,
            "previous_grade": from,
            "reason": change.detail,
        });
        let event = NewEvent::new(
            EventType::DistributorGradeChanged,
            &format!("{id}:{from}:{to}:{}", now.timestamp_micros()),
            id,
            now,
            data,
        );
        record_events(conn, || vec![event]).await?;
    }
    let mut after = after;
    after["figures"] = change.figures.clone();
    audit_in(
        conn,
        actor,
        now,
        action,
        format!("distributor:{id}"),
        Some(before),
        Some(after),
    )
    .await?;
    Ok(true)
}

async fn insert_event(
    conn: &mut Conn,
    id: &str,
    kind: &str,
    detail: &str,
    figures: &serde_json::Value,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "insert into distributor_events (distributor_id, kind, detail, figures, actor, at, created_at) ",
        "values ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(id)
    .bind(kind)
    .bind(detail)
    .bind(figures.to_string())
    .bind(&actor.id)
    .bind(DbTime(at))
    .bind(DbTime(Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
