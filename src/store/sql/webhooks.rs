//! Webhooks' SQL (issue 16), shared by both backends: the outbox written in
//! the transaction of each change ([`record_events`]), the endpoints and
//! their audited administration, and the delivery queue — claimed under a
//! lease, so a killed worker's deliveries go again (with the same event id)
//! and two workers never send the same attempt.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Conn, Db, DbRow, skip_locked};
use crate::domain::money::Money;
use crate::domain::webhooks::{ALL_EVENTS, DISABLE_AFTER, EventType, NewEvent, Verdict};
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, AttemptEffect, ClaimedDelivery, DeliveryFilter, NewWebhookEndpoint, ReplayRefusal,
    WebhookAttempt, WebhookDeliveryRecord, WebhookEndpointRecord,
};
use crate::store::time::DbTime;

/// The stored form of a subscription: the types between commas, so one
/// `like` pattern finds a type's subscribers.
fn events_to_db(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

fn events_from_db(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|kind| !kind.is_empty())
        .map(str::to_owned)
        .collect()
}

fn subscribes(events: &str, kind: &str) -> bool {
    events.contains(&format!(",{ALL_EVENTS},")) || events.contains(&format!(",{kind},"))
}

/// The enabled endpoints and their stored subscriptions.
async fn enabled_endpoints(conn: &mut Conn) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "select id, events from webhook_endpoints where state = 'enabled' and deleted_at is null",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Whether some enabled endpoint subscribes to `kind`: a change whose event
/// costs a read to describe asks first.
pub(super) async fn anyone_subscribes(
    conn: &mut Conn,
    kind: EventType,
) -> Result<bool, StoreError> {
    Ok(enabled_endpoints(conn)
        .await?
        .iter()
        .any(|(_, subscribed)| subscribes(subscribed, kind.as_str())))
}

/// Writes the events `build` makes into the outbox inside the caller's
/// transaction, with a pending delivery per enabled endpoint subscribing to
/// each: the change and its events commit or vanish together. Without
/// subscribers nothing is built or written (one read of the small
/// endpoints table), so a hot path pays nothing for bodies nobody wants. An
/// event already written (the same change again) is left as it is.
pub(super) async fn record_events(
    conn: &mut Conn,
    build: impl FnOnce() -> Vec<NewEvent>,
) -> Result<(), StoreError> {
    let endpoints = enabled_endpoints(conn).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let events = build();
    let created = DbTime(Utc::now());
    for event in &events {
        let subscribers: Vec<&str> = endpoints
            .iter()
            .filter(|(_, subscribed)| subscribes(subscribed, event.kind.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let written = sqlx::query(concat!(
            "insert into webhook_events (id, type, subject, occurred_at, body, created_at) ",
            "values ($1, $2, $3, $4, $5, $6) on conflict (id) do nothing"
        ))
        .bind(&event.id)
        .bind(event.kind.as_str())
        .bind(&event.subject)
        .bind(DbTime(event.occurred_at))
        .bind(&event.body)
        .bind(created)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if written == 0 {
            continue;
        }
        let mut insert = QueryBuilder::<Db>::new(
            "insert into webhook_deliveries (event_id, endpoint_id, state, attempts, next_attempt_at, created_at, updated_at) ",
        );
        insert.push_values(subscribers, |mut row, endpoint| {
            row.push_bind(&event.id)
                .push_bind(endpoint)
                .push("'pending'")
                .push("0")
                .push_bind(DbTime(event.occurred_at))
                .push_bind(created)
                .push_bind(created);
        });
        insert.push(" on conflict (event_id, endpoint_id) do nothing");
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A commission line's change, as its webhook event tells it.
pub(super) struct CommissionChange<'a> {
    pub order_id: &'a str,
    pub beneficiary_id: &'a str,
    pub level: u8,
    /// The line's amount after the change.
    pub amount: Money,
    /// Before a refund or void reduced it.
    pub previous_amount: Option<Money>,
    /// The refund that reduced it (none for a void or a release).
    pub refund_id: Option<&'a str>,
    pub release_at: Option<DateTime<Utc>>,
}

/// The event of a commission line's change. Keyed by order, level,
/// beneficiary and cause, so each change of a line is one event.
pub(super) fn commission_event(
    kind: EventType,
    change: &CommissionChange<'_>,
    at: DateTime<Utc>,
) -> NewEvent {
    let state = match kind {
        EventType::CommissionPending => "pending",
        EventType::CommissionReleased => "released",
        _ if change.amount.is_zero() => "cancelled",
        EventType::CommissionClawedBack => "released",
        _ => "pending",
    };
    let cause = change.refund_id.map_or_else(
        || match kind {
            EventType::CommissionVoided | EventType::CommissionClawedBack => "void".to_owned(),
            _ => String::new(),
        },
        |refund| format!("refund:{refund}"),
    );
    let key = format!(
        "{}:{}:{}:{cause}",
        change.order_id, change.level, change.beneficiary_id
    );
    let mut data = serde_json::json!({
        "order_id": change.order_id,
        "distributor_id": change.beneficiary_id,
        "level": change.level,
        "amount": change.amount.to_string(),
        "state": state,
    });
    if let Some(previous) = change.previous_amount {
        data["previous_amount"] = previous.to_string().into();
    }
    if let Some(refund) = change.refund_id {
        data["refund_id"] = refund.into();
    }
    if let Some(release_at) = change.release_at {
        data["release_at"] = release_at.to_rfc3339().into();
    }
    NewEvent::new(kind, &key, change.order_id, at, data)
}

macro_rules! endpoint_columns {
    () => {
        concat!(
            "e.id, e.url, e.events, e.description, e.state, e.disabled_reason, e.disabled_at, ",
            "e.failing_since, e.last_success_at, e.last_failure_at, e.previous_secret_until, e.created_at, ",
            "(select count(*) from webhook_deliveries d where d.endpoint_id = e.id and d.state = 'pending') as pending, ",
            "(select count(*) from webhook_deliveries d where d.endpoint_id = e.id and d.state = 'failed') as failed "
        )
    };
}

fn optional_time(row: &DbRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(row.try_get::<Option<DbTime>, _>(column)?.map(|at| at.0))
}

fn endpoint_from_row(row: &DbRow) -> Result<WebhookEndpointRecord, StoreError> {
    let time = |column: &str| optional_time(row, column);
    Ok(WebhookEndpointRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: events_from_db(&row.try_get::<String, _>("events")?),
        description: row.try_get("description")?,
        state: row.try_get("state")?,
        disabled_reason: row.try_get("disabled_reason")?,
        disabled_at: time("disabled_at")?,
        failing_since: time("failing_since")?,
        last_success_at: time("last_success_at")?,
        last_failure_at: time("last_failure_at")?,
        previous_secret_until: time("previous_secret_until")?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
        pending_deliveries: row.try_get("pending")?,
        failed_deliveries: row.try_get("failed")?,
    })
}

macro_rules! delivery_columns {
    () => {
        concat!(
            "select d.id, d.event_id, ev.type, ev.subject, ev.occurred_at, d.endpoint_id, ep.url, d.state, ",
            "d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.last_response, ",
            "d.delivered_at from webhook_deliveries d join webhook_events ev on ev.id = d.event_id ",
            "join webhook_endpoints ep on ep.id = d.endpoint_id "
        )
    };
}

fn delivery_from_row(row: &DbRow) -> Result<WebhookDeliveryRecord, StoreError> {
    let time = |column: &str| optional_time(row, column);
    Ok(WebhookDeliveryRecord {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("type")?,
        subject: row.try_get("subject")?,
        occurred_at: row.try_get::<DbTime, _>("occurred_at")?.0,
        endpoint_id: row.try_get("endpoint_id")?,
        endpoint_url: row.try_get("url")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: time("next_attempt_at")?,
        last_attempt_at: time("last_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        last_response: row.try_get("last_response")?,
        delivered_at: time("delivered_at")?,
    })
}

/// Disables an endpoint still enabled and gives up its pending deliveries
/// (ops may replay them once it is enabled again). True when it was enabled.
async fn disable_endpoint(
    conn: &mut Conn,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let disabled = sqlx::query(concat!(
        "update webhook_endpoints set state = 'disabled', disabled_reason = $1, disabled_at = $2, ",
        "updated_at = $2 where id = $3 and state = 'enabled'"
    ))
    .bind(reason)
    .bind(DbTime(now))
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(concat!(
        "update webhook_deliveries set state = 'failed', next_attempt_at = null, lease_until = null, ",
        "last_error = $1, updated_at = $2 where endpoint_id = $3 and state = 'pending'"
    ))
    .bind(format!("not sent: the endpoint was disabled ({reason})"))
    .bind(DbTime(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(disabled == 1)
}

impl Repo {
    pub async fn insert_webhook_endpoint(
        &self,
        new: &NewWebhookEndpoint,
        actor: &Actor,
    ) -> Result<WebhookEndpointRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into webhook_endpoints (id, url, events, description, secret, state, created_at, updated_at) ",
            "values ($1, $2, $3, $4, $5, 'enabled', $6, $6)"
        ))
        .bind(&new.id)
        .bind(&new.url)
        .bind(events_to_db(&new.events))
        .bind(new.description.as_deref())
        .bind(&new.sealed_secret)
        .bind(DbTime(new.now))
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            actor,
            new.now,
            "webhooks.create_endpoint",
            format!("webhook_endpoint:{}", new.id),
            None,
            Some(serde_json::json!({ "url": new.url, "events": new.events })),
        )
        .await?;
        let row = sqlx::query(concat!(
            "select ",
            endpoint_columns!(),
            "from webhook_endpoints e where e.id = $1"
        ))
        .bind(&new.id)
        .fetch_one(&mut *tx)
        .await?;
        let record = endpoint_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Endpoints not deleted, oldest first.
    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            endpoint_columns!(),
            "from webhook_endpoints e where e.deleted_at is null order by e.created_at, e.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            endpoint_columns!(),
            "from webhook_endpoints e where e.id = $1 and e.deleted_at is null"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// Points an endpoint at a new URL and subscription, keeping its id,
    /// secret and deliveries (pending ones go to the new URL). False when
    /// there is no such endpoint.
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        url: &str,
        events: &[String],
        description: Option<&str>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let before: Option<(String, String)> = sqlx::query_as(
            "select url, events from webhook_endpoints where id = $1 and deleted_at is null",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((old_url, old_events)) = before else {
            return Ok(false);
        };
        sqlx::query(concat!(
            "update webhook_endpoints set url = $1, events = $2, description = $3, updated_at = $4 ",
            "where id = $5"
        ))
        .bind(url)
        .bind(events_to_db(events))
        .bind(description)
        .bind(DbTime(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "webhooks.update_endpoint",
            format!("webhook_endpoint:{id}"),
            Some(serde_json::json!({ "url": old_url, "events": events_from_db(&old_events) })),
            Some(serde_json::json!({ "url": url, "events": events })),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes an endpoint (kept for its deliveries' history; nothing more
    /// is sent to it). False when there is no such endpoint.
    pub async fn delete_webhook_endpoint(
        &self,
        id: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "update webhook_endpoints set deleted_at = $1, updated_at = $1 where id = $2 and deleted_at is null",
        )
        .bind(DbTime(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        disable_endpoint(&mut tx, id, "deleted", now).await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "webhooks.delete_endpoint",
            format!("webhook_endpoint:{id}"),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the secret; the old one keeps signing until `previous_until`.
    /// False when there is no such endpoint.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        sealed_secret: &[u8],
        sealed_previous: &[u8],
        previous_until: DateTime<Utc>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let rotated = sqlx::query(concat!(
            "update webhook_endpoints set previous_secret = $1, previous_secret_until = $2, secret = $3, ",
            "updated_at = $4 where id = $5 and deleted_at is null"
        ))
        .bind(sealed_previous)
        .bind(DbTime(previous_until))
        .bind(sealed_secret)
        .bind(DbTime(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if rotated == 0 {
            return Ok(false);
        }
        audit_in(
            &mut tx,
            actor,
            now,
            "webhooks.rotate_secret",
            format!("webhook_endpoint:{id}"),
            None,
            Some(serde_json::json!({ "previous_secret_until": previous_until })),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The endpoint's sealed secrets: the current one, and the previous one
    /// while it still signs at `now`.
    pub async fn webhook_secrets(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StoreError> {
        let row = sqlx::query(concat!(
            "select secret, case when previous_secret_until > $2 then previous_secret end as previous ",
            "from webhook_endpoints where id = $1 and deleted_at is null"
        ))
        .bind(id)
        .bind(DbTime(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("secret")?, row.try_get("previous")?)))
            .transpose()
    }

    /// Every endpoint's sealed secrets (deleted ones too: their rows keep
    /// them), for `fenrun keys rotate`: id, current, previous.
    pub async fn sealed_webhook_secrets(
        &self,
    ) -> Result<Vec<(String, Vec<u8>, Option<Vec<u8>>)>, StoreError> {
        Ok(
            sqlx::query_as("select id, secret, previous_secret from webhook_endpoints order by id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Writes resealed secrets back if the row still holds the sealed bytes
    /// they were made from (a rotation of the secret meanwhile wins).
    pub async fn reseal_webhook_secrets(
        &self,
        id: &str,
        expected: (&[u8], Option<&[u8]>),
        resealed: (&[u8], Option<&[u8]>),
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(concat!(
            "update webhook_endpoints set secret = $1, previous_secret = $2 where id = $3 ",
            "and secret = $4 and (previous_secret = $5 or (previous_secret is null and $5 is null))"
        ))
        .bind(resealed.0)
        .bind(resealed.1)
        .bind(id)
        .bind(expected.0)
        .bind(expected.1)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    /// Enables a disabled endpoint again, its failure streak forgotten.
    /// False when there is no such endpoint.
    pub async fn enable_webhook_endpoint(
        &self,
        id: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let before: Option<(String, Option<String>)> = sqlx::query_as(
            "select state, disabled_reason from webhook_endpoints where id = $1 and deleted_at is null",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, reason)) = before else {
            return Ok(false);
        };
        sqlx::query(concat!(
            "update webhook_endpoints set state = 'enabled', disabled_reason = null, disabled_at = null, ",
            "failing_since = null, updated_at = $1 where id = $2"
        ))
        .bind(DbTime(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if state != "enabled" {
            audit_in(
                &mut tx,
                actor,
                now,
                "webhooks.enable_endpoint",
                format!("webhook_endpoint:{id}"),
                Some(serde_json::json!({ "state": state, "disabled_reason": reason })),
                Some(serde_json::json!({ "state": "enabled" })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Claims up to `limit` deliveries due at `now` until `lease_until`,
    /// oldest event first. A claim another worker holds is skipped; one that
    /// lapsed (its worker died) is taken over.
    pub async fn claim_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // A read first: an idle queue (the usual case) costs no write
        // transaction, which on SQLite would take the one writer's lock.
        let due: Option<i64> = sqlx::query_scalar(concat!(
            "select id from webhook_deliveries where state = 'pending' and next_attempt_at <= $1 ",
            "and (lease_until is null or lease_until <= $1) ",
            "and endpoint_id in (select id from webhook_endpoints where state = 'enabled') limit 1"
        ))
        .bind(DbTime(now))
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = sqlx::query_scalar(concat!(
            "select id from webhook_deliveries where state = 'pending' and next_attempt_at <= $1 ",
            "and (lease_until is null or lease_until <= $1) ",
            // Queued in the instant its endpoint was disabled: not sent.
            "and endpoint_id in (select id from webhook_endpoints where state = 'enabled') ",
            "order by next_attempt_at, id limit $2",
            skip_locked!()
        ))
        .bind(DbTime(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut claim = QueryBuilder::<Db>::new("update webhook_deliveries set lease_until = ");
        claim.push_bind(DbTime(lease_until)).push(" where id in (");
        let mut separated = claim.separated(", ");
        for id in &ids {
            separated.push_bind(*id);
        }
        claim.push(")");
        claim.build().execute(&mut *tx).await?;
        let mut select = QueryBuilder::<Db>::new(concat!(
            "select d.id, d.attempts, ev.id as event_id, ev.type, ev.body, ep.id as endpoint_id, ep.url, ",
            "ep.secret, case when ep.previous_secret_until > "
        ));
        select.push_bind(DbTime(now)).push(concat!(
            " then ep.previous_secret end as previous from webhook_deliveries d ",
            "join webhook_events ev on ev.id = d.event_id join webhook_endpoints ep on ep.id = d.endpoint_id ",
            "where d.id in ("
        ));
        let mut separated = select.separated(", ");
        for id in &ids {
            separated.push_bind(*id);
        }
        select.push(") order by ev.occurred_at, d.id");
        let rows = select.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    delivery_id: row.try_get("id")?,
                    lease_until,
                    attempts: row.try_get("attempts")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("type")?,
                    body: row.try_get("body")?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    url: row.try_get("url")?,
                    sealed_secret: row.try_get("secret")?,
                    sealed_previous_secret: row.try_get("previous")?,
                })
            })
            .collect()
    }

    /// Records an attempt against its claim, and what it means for the
    /// endpoint: a success ends its failure streak; a failure starts or
    /// extends it, and disables it after [`DISABLE_AFTER`]; a 410 disables
    /// it at once. A lapsed claim (another worker took the delivery over)
    /// records nothing.
    pub async fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
    ) -> Result<AttemptEffect, StoreError> {
        let mut tx = self.begin_write().await?;
        let (state, next, delivered_at) = match (attempt.verdict, attempt.next_attempt_at) {
            (Verdict::Delivered, _) => ("delivered", None, Some(attempt.at)),
            (Verdict::Failed, Some(next)) => ("pending", Some(next), None),
            _ => ("failed", None, None),
        };
        let recorded = sqlx::query(concat!(
            "update webhook_deliveries set attempts = attempts + 1, state = $1, next_attempt_at = $2, ",
            "lease_until = null, last_attempt_at = $3, last_status = $4, last_error = $5, last_response = $6, ",
            "delivered_at = coalesce($7, delivered_at), updated_at = $3 ",
            "where id = $8 and state = 'pending' and lease_until = $9"
        ))
        .bind(state)
        .bind(next.map(DbTime))
        .bind(DbTime(attempt.at))
        .bind(attempt.status)
        .bind(attempt.error.as_deref())
        .bind(attempt.response.as_deref())
        .bind(delivered_at.map(DbTime))
        .bind(attempt.delivery_id)
        .bind(DbTime(attempt.lease_until))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.commit().await?;
            return Ok(AttemptEffect {
                stale: true,
                disabled: None,
            });
        }
        let mut effect = AttemptEffect::default();
        let at = DbTime(attempt.at);
        match attempt.verdict {
            Verdict::Delivered => {
                sqlx::query(concat!(
                    "update webhook_endpoints set failing_since = null, last_success_at = $1, ",
                    "updated_at = $1 where id = $2"
                ))
                .bind(at)
                .bind(&attempt.endpoint_id)
                .execute(&mut *tx)
                .await?;
            }
            Verdict::Gone => {
                let reason = "the receiver answered 410 Gone";
                if disable_endpoint(&mut tx, &attempt.endpoint_id, reason, attempt.at).await? {
                    effect.disabled = Some(reason.to_owned());
                }
            }
            Verdict::Failed => {
                let failing_since: Option<DbTime> = sqlx::query_scalar(concat!(
                    "update webhook_endpoints set failing_since = coalesce(failing_since, $1), ",
                    "last_failure_at = $1, updated_at = $1 where id = $2 returning failing_since"
                ))
                .bind(at)
                .bind(&attempt.endpoint_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(since) = failing_since
                    && attempt.at - since.0 >= DISABLE_AFTER
                {
                    let reason = format!(
                        "failing since {} with no success for {} days",
                        since.0.to_rfc3339(),
                        DISABLE_AFTER.num_days()
                    );
                    if disable_endpoint(&mut tx, &attempt.endpoint_id, &reason, attempt.at).await? {
                        effect.disabled = Some(reason);
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(effect)
    }

    pub async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            delivery_columns!(),
            "where ($1 is null or d.state = $1) and ($2 is null or d.endpoint_id = $2) ",
            "order by d.id desc limit $3"
        ))
        .bind(filter.state.as_deref())
        .bind(filter.endpoint_id.as_deref())
        .bind(filter.limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// The deliveries of the events about `subject` (a withdrawal, order,
    /// certificate or distributor id), oldest first.
    pub async fn webhook_deliveries_of_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            delivery_columns!(),
            "where ev.subject = $1 order by ev.occurred_at, d.id limit $2"
        ))
        .bind(subject)
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn webhook_delivery(
        &self,
        id: i64,
    ) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
        let row = sqlx::query(concat!(delivery_columns!(), "where d.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Sends a delivery again, as a new attempt sequence with the same event
    /// id, audited. A delivery still pending is left as it is.
    pub async fn replay_webhook_delivery(
        &self,
        id: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Result<WebhookDeliveryRecord, ReplayRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let found: Option<(String, String, String)> = sqlx::query_as(concat!(
            "select d.state, ep.state, d.event_id from webhook_deliveries d ",
            "join webhook_endpoints ep on ep.id = d.endpoint_id where d.id = $1 and ep.deleted_at is null"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, endpoint_state, event_id)) = found else {
            return Ok(Err(ReplayRefusal::NotFound));
        };
        if endpoint_state != "enabled" {
            return Ok(Err(ReplayRefusal::EndpointDisabled));
        }
        if state != "pending" {
            sqlx::query(concat!(
                "update webhook_deliveries set state = 'pending', attempts = 0, next_attempt_at = $1, ",
                "lease_until = null, updated_at = $1 where id = $2"
            ))
            .bind(DbTime(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            audit_in(
                &mut tx,
                actor,
                now,
                "webhooks.replay_delivery",
                format!("webhook_delivery:{id}"),
                Some(serde_json::json!({ "state": state, "event_id": event_id })),
                Some(serde_json::json!({ "state": "pending", "event_id": event_id })),
            )
            .await?;
        }
        let row = sqlx::query(concat!(delivery_columns!(), "where d.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let record = delivery_from_row(&row)?;
        tx.commit().await?;
        Ok(Ok(record))
    }

    /// Replays every failed delivery of an endpoint whose event happened in
    /// `[from, to)`, audited once; the number replayed.
    pub async fn replay_failed_webhook_deliveries(
        &self,
        endpoint_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Result<u64, ReplayRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let state: Option<String> = sqlx::query_scalar(
            "select state from webhook_endpoints where id = $1 and deleted_at is null",
        )
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await?;
        match state.as_deref() {
            None => return Ok(Err(ReplayRefusal::NotFound)),
            Some("enabled") => {}
            Some(_) => return Ok(Err(ReplayRefusal::EndpointDisabled)),
        }
        let replayed = sqlx::query(concat!(
            "update webhook_deliveries set state = 'pending', attempts = 0, next_attempt_at = $1, ",
            "lease_until = null, updated_at = $1 where endpoint_id = $2 and state = 'failed' and event_id in ",
            "(select id from webhook_events where occurred_at >= $3 and occurred_at < $4)"
        ))
        .bind(DbTime(now))
        .bind(endpoint_id)
        .bind(DbTime(from))
        .bind(DbTime(to))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        audit_in(
            &mut tx,
            actor,
            now,
            "webhooks.replay_failed",
            format!("webhook_endpoint:{endpoint_id}"),
            None,
            Some(serde_json::json!({ "from": from, "to": to, "replayed": replayed })),
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(replayed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_matches_its_types_or_everything() {
        let stored = events_to_db(&[
            "withdrawal.paid".to_owned(),
            "commission.released".to_owned(),
        ]);
        assert!(subscribes(&stored, "withdrawal.paid"));
        assert!(subscribes(&stored, "commission.released"));
        assert!(!subscribes(&stored, "withdrawal.failed"));
        assert!(!subscribes(&stored, "paid"), "whole types only");
        assert!(subscribes(
            &events_to_db(&["*".to_owned()]),
            "certificate.issued"
        ));
        assert_eq!(
            events_from_db(&stored),
            ["withdrawal.paid", "commission.released"]
        );
    }
}
