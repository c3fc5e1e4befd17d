//! Withdrawals' SQL (SPEC §2.4), shared by both backends.
//!
//! Every step is one transaction that locks the withdrawal row (and, when
//! money moves, the distributor's balance rows), moves the state with a
//! `where state = …` guard, posts its ledger transfer under the key
//! `withdrawal:{id}:{reserve|return|paid}`, appends a timeline event and, when
//! the next step runs on a worker, pushes its job on the same transaction. A
//! step that finds its effect already recorded does nothing.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::Repo;
use super::audit::audit_in;
use super::credentials::{account_columns, account_from_row};
use super::dialect::{Conn, Db, DbRow, ROWS_PER_STATEMENT, for_update, lock_accounts, push_job};
use super::ledger::{apply_transfer, fetch_distributor};
use super::webhooks::{anyone_subscribes, record_events};
use crate::domain::identity::PayoutChannel;
use crate::domain::ids::{DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::ledger::{
    self as ledger_rules, AccountId, Bucket, PlatformAccount, TransferError,
};
use crate::domain::money::Money;
use crate::domain::tax::Month;
use crate::domain::webhooks::{EventType, NewEvent};
use crate::domain::withdrawal::{GatewayOutcome, ReviewDecision};
use crate::domain::withdrawal::{
    RiskFlag, Speed, StateRefusal, WithdrawalState, check_cancellable, check_reviewable,
};
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, ApplyOutcome, WithdrawalDecision, WithdrawalDraft, WithdrawalEvent, WithdrawalFacts,
    WithdrawalRecord, WithdrawalRequestOutcome,
};
use crate::store::time::DbTime;
use crate::store::{JobSpec, MAX_PAGE, withdrawal_step_task, withdrawal_step_task_at};

/// The columns of `withdrawals`, for `concat!`.
macro_rules! withdrawal_columns {
    () => {
        concat!(
            "id, distributor_id, payout_account_id, channel, speed, state, gross_fen, tax_fen, fee_fen, net_fen, ",
            "tax_method, tax_month, withholding, risk_flags, out_bill_no, gateway_bill_no, package_info, ",
            "failure_reason, review_note, reviewed_by, request_sha256, transfer_attempts, requested_at, updated_at, finished_at, ",
            "send_after, payout_cycle"
        )
    };
}

fn withdrawal_from_row(row: &DbRow) -> Result<WithdrawalRecord, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(what);
    Ok(WithdrawalRecord {
        id: WithdrawalId::parse(row.try_get::<String, _>("id")?)?,
        distributor_id: DistributorId::parse(row.try_get::<String, _>("distributor_id")?)?,
        payout_account_id: PayoutAccountId::parse(row.try_get::<String, _>("payout_account_id")?)?,
        channel: PayoutChannel::parse(&row.try_get::<String, _>("channel")?)?,
        speed: row
            .try_get::<String, _>("speed")?
            .parse::<Speed>()
            .map_err(corrupt)?,
        state: row
            .try_get::<String, _>("state")?
            .parse::<WithdrawalState>()
            .map_err(corrupt)?,
        gross: Money::from_fen(row.try_get("gross_fen")?),
        tax: Money::from_fen(row.try_get("tax_fen")?),
        fee: Money::from_fen(row.try_get("fee_fen")?),
        net: Money::from_fen(row.try_get("net_fen")?),
        tax_method: row.try_get("tax_method")?,
        tax_month: row.try_get("tax_month")?,
        withholding: row.try_get("withholding")?,
        risk_flags: serde_json::from_str::<Vec<RiskFlag>>(&row.try_get::<String, _>("risk_flags")?)
            .map_err(|error| StoreError::Corrupt(format!("risk_flags: {error}")))?,
        out_bill_no: row.try_get("out_bill_no")?,
        gateway_bill_no: row.try_get("gateway_bill_no")?,
        package_info: row.try_get("package_info")?,
        failure_reason: row.try_get("failure_reason")?,
        review_note: row.try_get("review_note")?,
        reviewed_by: row.try_get("reviewed_by")?,
        request_sha256: row.try_get("request_sha256")?,
        transfer_attempts: row.try_get("transfer_attempts")?,
        requested_at: row.try_get::<DbTime, _>("requested_at")?.0,
        updated_at: row.try_get::<DbTime, _>("updated_at")?.0,
        finished_at: row
            .try_get::<Option<DbTime>, _>("finished_at")?
            .map(Into::into),
        send_after: row
            .try_get::<Option<DbTime>, _>("send_after")?
            .map(Into::into),
        payout_cycle: row.try_get("payout_cycle")?,
    })
}

/// The withdrawal `id`, locked for the rest of the transaction; a missing
/// one is `StoreError::NotFound`.
async fn lock_existing_withdrawal(
    conn: &mut Conn,
    id: &WithdrawalId,
) -> Result<WithdrawalRecord, StoreError> {
    load_withdrawal(conn, id, true)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "withdrawal",
            id: id.to_string(),
        })
}

async fn load_withdrawal(
    conn: &mut Conn,
    id: &WithdrawalId,
    lock: bool,
) -> Result<Option<WithdrawalRecord>, StoreError> {
    // On SQLite `for_update!()` is empty and the two arms are the same text.
    #[allow(clippy::if_same_then_else)]
    let sql = if lock {
        concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where id = $1",
            for_update!()
        )
    } else {
        concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where id = $1"
        )
    };
    let row = sqlx::query(sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(withdrawal_from_row).transpose()
}

async fn insert_withdrawal_event(
    conn: &mut Conn,
    withdrawal_id: &WithdrawalId,
    step: &str,
    outcome: &str,
    attempt: i64,
    detail: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "insert into withdrawal_events (withdrawal_id, step, outcome, attempt, detail, at, created_at) ",
        "values ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(withdrawal_id.as_str())
    .bind(step)
    .bind(outcome)
    .bind(attempt)
    .bind(detail)
    .bind(DbTime(at))
    .bind(DbTime(Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the state, guarded by the state it was read in; false when another
/// step moved it first (the caller's transaction then changes nothing).
async fn move_withdrawal(
    conn: &mut Conn,
    id: &WithdrawalId,
    from: WithdrawalState,
    to: WithdrawalState,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let finished = to.is_final().then_some(now);
    let moved = sqlx::query(
        "update withdrawals set state = $1, updated_at = $2, finished_at = coalesce(finished_at, $3) where id = $4 and state = $5",
    )
    .bind(to.as_str())
    .bind(DbTime(now))
    .bind(finished.map(DbTime))
    .bind(id.as_str())
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved == 1
        && let Some(kind) = EventType::of_withdrawal_state(to)
    {
        record_withdrawal_event(conn, id, kind, Some(from), now).await?;
    }
    Ok(moved == 1)
}

/// Writes the webhook event of a withdrawal's change into the outbox of the
/// change's transaction: its ids, amounts and new state.
async fn record_withdrawal_event(
    conn: &mut Conn,
    id: &WithdrawalId,
    kind: EventType,
    previous_state: Option<WithdrawalState>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !anyone_subscribes(conn, kind).await? {
        return Ok(());
    }
    let Some(withdrawal) = load_withdrawal(conn, id, false).await? else {
        return Ok(());
    };
    let data = serde_json::json!({
        "id": withdrawal.id.as_str(),
        "distributor_id": withdrawal.distributor_id.as_str(),
        "state": withdrawal.state.as_str(),
        "previous_state": previous_state.map(WithdrawalState::as_str),
        "channel": withdrawal.channel.as_str(),
        "speed": withdrawal.speed.as_str(),
        "gross": withdrawal.gross.to_string(),
        "tax": withdrawal.tax.to_string(),
        "fee": withdrawal.fee.to_string(),
        "net": withdrawal.net.to_string(),
    });
    let event = NewEvent::new(kind, id.as_str(), id.as_str(), now, data);
    record_events(conn, || vec![event]).await
}

fn ledger_error(error: TransferError) -> StoreError {
    StoreError::Corrupt(format!("withdrawal transfer: {error}"))
}

async fn return_funds(
    conn: &mut Conn,
    withdrawal: &WithdrawalRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let transfer = ledger_rules::withdrawal_return(
        withdrawal.id.as_str(),
        &withdrawal.distributor_id,
        withdrawal.gross,
    )
    .map_err(ledger_error)?;
    apply_transfer(conn, &transfer, now).await?;
    Ok(())
}

fn clearing_account(channel: PayoutChannel) -> PlatformAccount {
    match channel {
        PayoutChannel::Wechat => PlatformAccount::WechatClearing,
        PayoutChannel::Alipay => PlatformAccount::AlipayClearing,
        PayoutChannel::Bank => PlatformAccount::BankClearing,
    }
}

/// Pushes a transfer job, to run at `run_at` when given (a settlement
/// cycle's cut-off still ahead), else at once.
async fn push_transfer_job(
    conn: &mut Conn,
    spec: &JobSpec,
    withdrawal_id: &WithdrawalId,
    key: String,
    run_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let task = withdrawal_step_task_at(spec, withdrawal_id, key, run_at)?;
    push_job(conn, &spec.queue, task).await
}

/// Appends to the timeline when the money will be sent: at the cycle's
/// cut-off still ahead of `now`, or at once.
async fn insert_send_event(
    conn: &mut Conn,
    withdrawal_id: &WithdrawalId,
    payout_cycle: Option<&str>,
    send_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let cycle = payout_cycle.unwrap_or("immediate");
    let detail = match transfer_run_at(send_after, now) {
        Some(at) => format!("{cycle}: sent at the cut-off {}", at.to_rfc3339()),
        None => format!("{cycle}: sent now"),
    };
    insert_withdrawal_event(
        conn,
        withdrawal_id,
        "transfer",
        "scheduled",
        1,
        Some(&detail),
        now,
    )
    .await
}

/// When an approved withdrawal's transfer job runs: at its cut-off while
/// that is ahead of `now`, at once after it (`max(send_after, now)`; "at
/// once" is left to the queue's own clock, so a simulated clock that runs
/// ahead of the database's never delays a due transfer).
fn transfer_run_at(send_after: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    send_after.filter(|send_after| *send_after > now)
}

/// The facts a request is decided on (see [`WithdrawalFacts`]).
async fn load_facts(
    conn: &mut Conn,
    draft: &WithdrawalDraft,
) -> Result<WithdrawalFacts, StoreError> {
    let distributor = &draft.distributor_id;
    let available_account =
        AccountId::Distributor(distributor.clone(), Bucket::Available).to_string();
    let Some((distributor_row, _)) = fetch_distributor(conn, distributor).await? else {
        return Err(StoreError::NotFound {
            what: "distributor",
            id: distributor.to_string(),
        });
    };
    let available: i64 =
        sqlx::query_scalar("select balance_fen from ledger_accounts where id = $1")
            .bind(&available_account)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0);
    let identity_on_file: bool = sqlx::query_scalar::<_, i64>(
        "select count(*) from distributor_identities where distributor_id = $1",
    )
    .bind(distributor.as_str())
    .fetch_one(&mut *conn)
    .await?
        > 0;
    let account = sqlx::query(concat!(
        "select ",
        account_columns!(),
        " from payout_accounts where id = $1"
    ))
    .bind(draft.payout_account_id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(account_from_row)
    .transpose()?
    .filter(|account| &account.distributor_id == distributor);
    let newest_account_at: Option<DateTime<Utc>> = sqlx::query_scalar::<_, Option<DbTime>>(
        "select max(created_at) from payout_accounts where distributor_id = $1",
    )
    .bind(distributor.as_str())
    .fetch_one(&mut *conn)
    .await?
    .map(Into::into);
    let gross_today: i64 = sqlx::query_scalar(concat!(
        "select cast(coalesce(sum(gross_fen), 0) as bigint) from withdrawals ",
        "where distributor_id = $1 and local_day = $2 and state not in ('rejected', 'cancelled', 'failed', 'returned')"
    ))
    .bind(distributor.as_str())
    .bind(&draft.local_day)
    .fetch_one(&mut *conn)
    .await?;
    let withdrawals_last_24h: i64 = sqlx::query_scalar(
        "select count(*) from withdrawals where distributor_id = $1 and requested_at > $2",
    )
    .bind(distributor.as_str())
    .bind(DbTime(draft.day_ago))
    .fetch_one(&mut *conn)
    .await?;
    let last_clawback_at: Option<DateTime<Utc>> = sqlx::query_scalar::<_, Option<DbTime>>(concat!(
        "select max(t.created_at) from ledger_postings p join ledger_transfers t on t.id = p.transfer_id ",
        "where p.account_id = $1 and t.kind = 'commission_clawed_back' and t.created_at > $2"
    ))
    .bind(&available_account)
    .bind(DbTime(draft.clawback_since))
    .fetch_one(&mut *conn)
    .await?
    .map(Into::into);
    let year = &draft.tax_month[..4];
    let year_payouts = sqlx::query_as::<_, (String, i64, i64)>(concat!(
        "select tax_month, gross_fen, tax_fen from withdrawals where distributor_id = $1 ",
        "and tax_month >= $2 and tax_month <= $3 and state not in ('rejected', 'cancelled', 'failed', 'returned') order by requested_at"
    ))
    .bind(distributor.as_str())
    .bind(format!("{year}-01"))
    .bind(format!("{year}-12"))
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(month, gross, tax)| (month, Money::from_fen(gross), Money::from_fen(tax)))
    .collect();
    let identity_review_owed: bool = sqlx::query_scalar(
        "select exists (select 1 from identity_review_flags where distributor_id = $1)",
    )
    .bind(distributor.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let facts = WithdrawalFacts {
        distributor: distributor_row,
        available: Money::from_fen(available),
        identity_on_file,
        account,
        newest_account_at,
        gross_today: Money::from_fen(gross_today),
        withdrawals_last_24h,
        last_clawback_at,
        year_payouts,
        identity_review_owed,
    };
    Ok(facts)
}

impl Repo {
    /// Records a withdrawal request in one transaction: locks the
    /// distributor's balance rows, answers a replay of the same key, reads
    /// the facts, lets `decide` check them and work out the figures, then
    /// writes the withdrawal, reserves the gross (available → withdrawing),
    /// appends the timeline and, when approved at once, pushes the transfer.
    pub async fn request_withdrawal<F, E>(
        &self,
        draft: &WithdrawalDraft,
        transfer_job: &JobSpec,
        decide: F,
    ) -> Result<WithdrawalRequestOutcome, E>
    where
        F: FnOnce(&WithdrawalFacts) -> Result<WithdrawalDecision, E> + Send,
        E: From<StoreError>,
    {
        let mut tx = self.begin_write().await.map_err(StoreError::from)?;
        let facts = match lock_for_request(&mut tx, draft).await? {
            RequestLock::Replayed(previous) => {
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(WithdrawalRequestOutcome::Replayed(previous));
            }
            RequestLock::Fresh(facts) => facts,
        };
        let decision = decide(&facts)?;
        write_request(&mut tx, draft, transfer_job, &decision).await?;
        let created = load_withdrawal(&mut tx, &draft.id, false)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("withdrawal vanished in its own transaction".to_owned())
            })?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(WithdrawalRequestOutcome::Created(created))
    }

    /// The facts of a request without locking anything (a quote).
    pub async fn withdrawal_facts(
        &self,
        draft: &WithdrawalDraft,
    ) -> Result<WithdrawalFacts, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_facts(&mut conn, draft).await
    }

    pub async fn withdrawal(
        &self,
        id: &WithdrawalId,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_withdrawal(&mut conn, id, false).await
    }

    pub async fn withdrawal_by_out_bill_no(
        &self,
        out_bill_no: &str,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where out_bill_no = $1"
        ))
        .bind(out_bill_no)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(withdrawal_from_row).transpose()
    }

    pub async fn withdrawal_events(
        &self,
        id: &WithdrawalId,
    ) -> Result<Vec<WithdrawalEvent>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String, i64, Option<String>, DbTime)>(
            "select step, outcome, cast(attempt as bigint), detail, at from withdrawal_events where withdrawal_id = $1 order by id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(step, outcome, attempt, detail, at)| WithdrawalEvent {
                step,
                outcome,
                attempt,
                detail,
                at: at.0,
            })
            .collect())
    }

    /// Withdrawals in `states`, oldest update first (the poller's and the
    /// review queue's list).
    pub async fn withdrawals_in_states(
        &self,
        states: &[WithdrawalState],
        updated_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        let states: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
        let mut query = QueryBuilder::<Db>::new(concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where state in ("
        ));
        let mut separated = query.separated(", ");
        for state in &states {
            separated.push_bind(*state);
        }
        query
            .push(") and coalesce(polled_at, updated_at) <= ")
            .push_bind(DbTime(updated_before));
        query
            .push(" order by coalesce(polled_at, updated_at), id limit ")
            .push_bind(limit.clamp(1, MAX_PAGE));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(withdrawal_from_row).collect()
    }

    /// The paid withdrawals of a tax month ('YYYY-MM'), by distributor then
    /// request time: the rows of that month's withholding declaration.
    pub async fn paid_withdrawals_in_month(
        &self,
        tax_month: Month,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where tax_month = $1 and state = 'paid' ",
            "order by distributor_id, requested_at, id"
        ))
        .bind(tax_month.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(withdrawal_from_row).collect()
    }

    /// Notes that the poller asked about it, so the next round asks others first.
    pub async fn mark_polled(
        &self,
        id: &WithdrawalId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("update withdrawals set polled_at = $1 where id = $2")
            .bind(DbTime(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An ops decision on a withdrawal in review, with its audit entry in
    /// the same transaction.
    pub async fn review_withdrawal(
        &self,
        id: &WithdrawalId,
        decision: &ReviewDecision,
        transfer_job: &JobSpec,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Result<WithdrawalRecord, StateRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let withdrawal = lock_existing_withdrawal(&mut tx, id).await?;
        if let Err(refusal) = check_reviewable(id.as_str(), withdrawal.state) {
            return Ok(Err(refusal));
        }
        match decision {
            ReviewDecision::Approve { by, note } => {
                move_withdrawal(
                    &mut tx,
                    id,
                    WithdrawalState::Reviewing,
                    WithdrawalState::Approved,
                    now,
                )
                .await?;
                sqlx::query(
                    "update withdrawals set reviewed_by = $1, review_note = $2 where id = $3",
                )
                .bind(by)
                .bind(note.as_deref())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "review",
                    "approved",
                    1,
                    Some(&format!("by {by}")),
                    now,
                )
                .await?;
                insert_send_event(
                    &mut tx,
                    id,
                    withdrawal.payout_cycle.as_deref(),
                    withdrawal.send_after,
                    now,
                )
                .await?;
                // Approved after its cut-off: it goes at once.
                push_transfer_job(
                    &mut tx,
                    transfer_job,
                    id,
                    format!("transfer:{id}"),
                    transfer_run_at(withdrawal.send_after, now),
                )
                .await?;
            }
            ReviewDecision::Reject { by, reason } => {
                move_withdrawal(
                    &mut tx,
                    id,
                    WithdrawalState::Reviewing,
                    WithdrawalState::Rejected,
                    now,
                )
                .await?;
                sqlx::query("update withdrawals set reviewed_by = $1, review_note = $2, failure_reason = $2 where id = $3")
                    .bind(by)
                    .bind(reason)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                return_funds(&mut tx, &withdrawal, now).await?;
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "review",
                    "rejected",
                    1,
                    Some(&format!("by {by}: {reason}")),
                    now,
                )
                .await?;
            }
        }
        if withdrawal
            .risk_flags
            .contains(&RiskFlag::IdentityChangedAfterCertificate)
        {
            // A person has looked at the new identity: the review it owed is
            // done, unless it changed again after this withdrawal was requested.
            sqlx::query(
                "delete from identity_review_flags where distributor_id = $1 and changed_at <= $2",
            )
            .bind(withdrawal.distributor_id.as_str())
            .bind(DbTime(withdrawal.requested_at))
            .execute(&mut *tx)
            .await?;
        }
        let updated = load_withdrawal(&mut tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("withdrawal vanished".to_owned()))?;
        let (action, words) = match decision {
            ReviewDecision::Approve { note, .. } => ("withdrawal.approve", note.clone()),
            ReviewDecision::Reject { reason, .. } => ("withdrawal.reject", Some(reason.clone())),
        };
        audit_in(
            &mut tx,
            actor,
            now,
            action,
            format!("withdrawal:{id}"),
            Some(serde_json::json!({"state": withdrawal.state.as_str()})),
            Some(serde_json::json!({"state": updated.state.as_str(), "words": words, "gross": updated.gross})),
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(updated))
    }

    /// The distributor's cancellation before the transfer starts.
    pub async fn cancel_withdrawal(
        &self,
        id: &WithdrawalId,
        now: DateTime<Utc>,
    ) -> Result<Result<WithdrawalRecord, StateRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let withdrawal = lock_existing_withdrawal(&mut tx, id).await?;
        if let Err(refusal) = check_cancellable(id.as_str(), withdrawal.state) {
            return Ok(Err(refusal));
        }
        move_withdrawal(
            &mut tx,
            id,
            withdrawal.state,
            WithdrawalState::Cancelled,
            now,
        )
        .await?;
        sqlx::query(
            "update withdrawals set failure_reason = 'cancelled by the distributor' where id = $1",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        return_funds(&mut tx, &withdrawal, now).await?;
        insert_withdrawal_event(
            &mut tx,
            id,
            "review",
            "cancelled",
            1,
            Some("by the distributor"),
            now,
        )
        .await?;
        let updated = load_withdrawal(&mut tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("withdrawal vanished".to_owned()))?;
        tx.commit().await?;
        Ok(Ok(updated))
    }

    /// The transfer step's first write, before any HTTP call: an approved
    /// withdrawal becomes `transferring` (the intent is durable before the
    /// gateway hears of it). Counts the attempt. Returns the withdrawal as
    /// it was before, so the caller knows whether this is the first send.
    pub async fn begin_transfer_attempt(
        &self,
        id: &WithdrawalId,
        attempt: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<WithdrawalRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(withdrawal) = load_withdrawal(&mut tx, id, true).await? else {
            return Ok(None);
        };
        match withdrawal.state {
            // Its cycle's cut-off has not come (a job run early by a clock
            // ahead of ours): nothing moves; the caller sees it not due.
            WithdrawalState::Approved if !withdrawal.is_due(now) => {
                tx.commit().await?;
                return Ok(Some(withdrawal));
            }
            WithdrawalState::Approved => {
                move_withdrawal(
                    &mut tx,
                    id,
                    WithdrawalState::Approved,
                    WithdrawalState::Transferring,
                    now,
                )
                .await?;
            }
            WithdrawalState::Transferring => {}
            _ => {
                tx.commit().await?;
                return Ok(Some(withdrawal));
            }
        }
        sqlx::query("update withdrawals set transfer_attempts = transfer_attempts + 1, updated_at = $1 where id = $2")
            .bind(DbTime(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_withdrawal_event(
            &mut tx,
            id,
            "transfer",
            if withdrawal.state == WithdrawalState::Approved {
                "sending"
            } else {
                "resuming"
            },
            attempt,
            Some(&format!("out_bill_no {}", withdrawal.out_bill_no)),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(withdrawal))
    }

    /// Applies what the gateway said, under the withdrawal's row lock:
    /// completion posts withdrawing → clearing + tax payable + fee income, a
    /// final failure returns the funds, a payee wait records `package_info`.
    /// News that contradicts a final state is recorded on the timeline and
    /// never applied.
    pub async fn apply_gateway_outcome(
        &self,
        id: &WithdrawalId,
        outcome: &GatewayOutcome,
        source: &str,
        attempt: i64,
        certificate_job: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let withdrawal = lock_existing_withdrawal(&mut tx, id).await?;
        let state = withdrawal.state;
        let bill_no = match outcome {
            GatewayOutcome::Processing { bill_no }
            | GatewayOutcome::AwaitingPayee { bill_no, .. }
            | GatewayOutcome::Paid { bill_no } => bill_no.as_deref(),
            GatewayOutcome::Failed { .. } | GatewayOutcome::Returned { .. } => None,
        };
        if let Some(bill_no) = bill_no.filter(|_| state.at_gateway()) {
            sqlx::query("update withdrawals set gateway_bill_no = $1 where id = $2 and gateway_bill_no is null")
                .bind(bill_no)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let result = match (state, outcome) {
            (
                WithdrawalState::Transferring | WithdrawalState::AwaitingPayeeConfirmation,
                GatewayOutcome::Paid { .. },
            ) => {
                move_withdrawal(&mut tx, id, state, WithdrawalState::Paid, now).await?;
                let paid = ledger_rules::withdrawal_paid(
                    id.as_str(),
                    &withdrawal.distributor_id,
                    clearing_account(withdrawal.channel),
                    withdrawal.net,
                    withdrawal.tax,
                    withdrawal.fee,
                )
                .map_err(ledger_error)?;
                apply_transfer(&mut tx, &paid, now).await?;
                let detail = format!(
                    "net {} paid, tax {} payable, fee {} ({source})",
                    withdrawal.net, withdrawal.tax, withdrawal.fee
                );
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "confirm",
                    "paid",
                    attempt,
                    Some(&detail),
                    now,
                )
                .await?;
                // The certificate step continues from here, in the same transaction.
                let task = withdrawal_step_task(certificate_job, id, format!("certificate:{id}"))?;
                push_job(&mut tx, &certificate_job.queue, task).await?;
                ApplyOutcome::Moved(WithdrawalState::Paid)
            }
            (
                WithdrawalState::Transferring | WithdrawalState::AwaitingPayeeConfirmation,
                GatewayOutcome::Failed { reason },
            ) => {
                // A bill cancelled (by the payee's inaction, the distributor
                // or us) ends the withdrawal as cancelled, not failed.
                let end = if reason.starts_with("CANCELLED") {
                    WithdrawalState::Cancelled
                } else {
                    WithdrawalState::Failed
                };
                move_withdrawal(&mut tx, id, state, end, now).await?;
                sqlx::query("update withdrawals set failure_reason = $1 where id = $2")
                    .bind(reason)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                return_funds(&mut tx, &withdrawal, now).await?;
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "confirm",
                    end.as_str(),
                    attempt,
                    Some(&format!("{reason} ({source}); funds returned")),
                    now,
                )
                .await?;
                ApplyOutcome::Moved(end)
            }
            (WithdrawalState::Transferring, GatewayOutcome::AwaitingPayee { package_info, .. }) => {
                move_withdrawal(
                    &mut tx,
                    id,
                    state,
                    WithdrawalState::AwaitingPayeeConfirmation,
                    now,
                )
                .await?;
                sqlx::query("update withdrawals set package_info = $1 where id = $2")
                    .bind(package_info)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "transfer",
                    "awaiting_payee_confirmation",
                    attempt,
                    Some(source),
                    now,
                )
                .await?;
                ApplyOutcome::Moved(WithdrawalState::AwaitingPayeeConfirmation)
            }
            (WithdrawalState::Paid, GatewayOutcome::Returned { reason }) => {
                // The bank sent a paid payout back (退票): the paid legs are
                // reversed and the gross is the distributor's again; the
                // withdrawal no longer counts for the month's tax, so the
                // next payout withholds as if it never happened; the
                // certificate step voids the certificate.
                move_withdrawal(&mut tx, id, state, WithdrawalState::Returned, now).await?;
                sqlx::query(
                    "update withdrawals set failure_reason = $1, returned_at = $2 where id = $3",
                )
                .bind(reason)
                .bind(DbTime(now))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                let bounced = ledger_rules::withdrawal_bounced(
                    id.as_str(),
                    &withdrawal.distributor_id,
                    clearing_account(withdrawal.channel),
                    withdrawal.net,
                    withdrawal.tax,
                    withdrawal.fee,
                )
                .map_err(ledger_error)?;
                apply_transfer(&mut tx, &bounced, now).await?;
                return_funds(&mut tx, &withdrawal, now).await?;
                let detail = format!(
                    "{reason} ({source}); gross {} back to available: net {} from clearing, tax {} no longer payable, fee {} refunded",
                    withdrawal.gross, withdrawal.net, withdrawal.tax, withdrawal.fee
                );
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "confirm",
                    "returned",
                    attempt,
                    Some(&detail),
                    now,
                )
                .await?;
                let task = withdrawal_step_task(
                    certificate_job,
                    id,
                    format!("certificate:{id}:returned"),
                )?;
                push_job(&mut tx, &certificate_job.queue, task).await?;
                ApplyOutcome::Moved(WithdrawalState::Returned)
            }
            (
                WithdrawalState::Transferring | WithdrawalState::AwaitingPayeeConfirmation,
                GatewayOutcome::Returned { reason },
            ) => {
                // Paid and bounced before we heard of the payment: nothing
                // was posted as paid, so this is a failure whose funds come back.
                let reason = format!("RETURNED: {reason}");
                move_withdrawal(&mut tx, id, state, WithdrawalState::Failed, now).await?;
                sqlx::query("update withdrawals set failure_reason = $1 where id = $2")
                    .bind(&reason)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                return_funds(&mut tx, &withdrawal, now).await?;
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "confirm",
                    "failed",
                    attempt,
                    Some(&format!("{reason} ({source}); funds returned")),
                    now,
                )
                .await?;
                ApplyOutcome::Moved(WithdrawalState::Failed)
            }
            // The bank rail's success precedes its bounce; heard late, it is old news.
            (
                WithdrawalState::Returned,
                GatewayOutcome::Paid { .. } | GatewayOutcome::Returned { .. },
            ) => ApplyOutcome::Unchanged(state),
            (WithdrawalState::Paid, GatewayOutcome::Failed { reason }) => {
                insert_withdrawal_event(
                    &mut tx,
                    id,
                    "confirm",
                    "contradiction_ignored",
                    attempt,
                    Some(&format!(
                        "{source} says failed ({reason}) but the withdrawal is paid"
                    )),
                    now,
                )
                .await?;
                ApplyOutcome::Contradicts(state)
            }
            (final_state, GatewayOutcome::Paid { .. }) if final_state.returned_funds() => {
                insert_withdrawal_event(&mut tx, id, "confirm", "contradiction_ignored", attempt, Some(&format!("{source} says paid but the withdrawal is {final_state} and its funds were returned")), now).await?;
                ApplyOutcome::Contradicts(state)
            }
            _ => ApplyOutcome::Unchanged(state),
        };
        tx.commit().await?;
        Ok(result)
    }

    /// Pushes a transfer job for every withdrawal that is approved or
    /// transferring, with a key of this start's own: after a crash the
    /// transfer resumes now rather than after the orphan timeout (or, for an
    /// approved one whose cycle's cut-off is still ahead, at the cut-off).
    /// The step is idempotent (it queries the gateway before sending again).
    pub async fn resume_transfers(
        &self,
        transfer_job: &JobSpec,
        start_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let rows: Vec<(String, String, Option<DbTime>)> = sqlx::query_as(
            "select id, state, send_after from withdrawals where state in ('approved', 'transferring') order by id",
        )
        .fetch_all(&self.pool)
        .await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut tx = self.begin_write().await?;
            for (id, state, send_after) in chunk {
                // An approved withdrawal still waits for its cut-off; one
                // under way (transferring) has passed it and resumes now,
                // whatever this start's clock says (a simulated clock
                // starts again at the real now, before the cut-off it
                // had been moved past).
                let run_at = match state.as_str() {
                    "approved" => transfer_run_at(send_after.map(Into::into), now),
                    _ => None,
                };
                push_transfer_job(
                    &mut tx,
                    transfer_job,
                    &WithdrawalId::parse(id.as_str())?,
                    format!("transfer:{id}:resume:{start_id}"),
                    run_at,
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(rows.len())
    }

    /// Pushes one more transfer job for a withdrawal (the poller's nudge for
    /// a transfer whose job ran out of attempts, or ops' retry).
    pub async fn push_transfer(
        &self,
        transfer_job: &JobSpec,
        id: &WithdrawalId,
        key: String,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        push_transfer_job(&mut tx, transfer_job, id, key, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pushes a transfer job, due at once, for each approved withdrawal
    /// whose cut-off came by `due_by`, at most `limit` of them: the nudge
    /// after a simulated clock jumps past cut-offs (the jobs pushed for them
    /// wait for the database's clock), and the poller's net for a job lost
    /// or run early. Its key is one per withdrawal, cut-off and process
    /// start (`start_id`), so repeated sweeps of one process push it once,
    /// and the first sweep after a restart pushes it again: a job of an
    /// earlier start may have run early and done nothing (a simulated clock
    /// starts again at the real now, before the cut-off) or be held by the
    /// dead worker until the orphan timeout. Returns how many it found.
    pub async fn push_due_transfers(
        &self,
        transfer_job: &JobSpec,
        start_id: &str,
        due_by: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let rows: Vec<(String, DbTime)> = sqlx::query_as(concat!(
            "select id, send_after from withdrawals where state = 'approved' ",
            "and send_after is not null and send_after <= $1 order by send_after, id limit $2"
        ))
        .bind(DbTime(due_by))
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut tx = self.begin_write().await?;
            for (id, send_after) in chunk {
                push_transfer_job(
                    &mut tx,
                    transfer_job,
                    &WithdrawalId::parse(id.as_str())?,
                    format!("transfer:{id}:due:{}:{start_id}", send_after.0.timestamp()),
                    None,
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(rows.len())
    }

    /// Count and money per state, for summaries (the demo, the ops console).
    pub async fn withdrawal_totals(
        &self,
    ) -> Result<Vec<(WithdrawalState, i64, Money, Money, Money, Money)>, StoreError> {
        let rows = sqlx::query_as::<_, (String, i64, i64, i64, i64, i64)>(concat!(
            "select state, count(*), cast(coalesce(sum(gross_fen), 0) as bigint), cast(coalesce(sum(tax_fen), 0) as bigint), ",
            "cast(coalesce(sum(fee_fen), 0) as bigint), cast(coalesce(sum(net_fen), 0) as bigint) from withdrawals group by state order by state"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(state, count, gross, tax, fee, net)| {
                Ok((
                    state
                        .parse::<WithdrawalState>()
                        .map_err(StoreError::Corrupt)?,
                    count,
                    Money::from_fen(gross),
                    Money::from_fen(tax),
                    Money::from_fen(fee),
                    Money::from_fen(net),
                ))
            })
            .collect()
    }
}

/// Where a withdrawal request stands once the distributor's balances are locked.
enum RequestLock {
    /// The same key and body were already recorded: answer that withdrawal again.
    Replayed(WithdrawalRecord),
    /// A new request, and the facts it will be decided on.
    Fresh(WithdrawalFacts),
}

/// The request's first step: locks the distributor's balance rows, tells a
/// replay from a key reused with another body, and reads the facts.
async fn lock_for_request(
    conn: &mut Conn,
    draft: &WithdrawalDraft,
) -> Result<RequestLock, StoreError> {
    let distributor = &draft.distributor_id;
    let available_account =
        AccountId::Distributor(distributor.clone(), Bucket::Available).to_string();
    let withdrawing_account =
        AccountId::Distributor(distributor.clone(), Bucket::Withdrawing).to_string();
    lock_accounts(
        conn,
        [available_account.as_str(), withdrawing_account.as_str()].into_iter(),
    )
    .await?;

    let previous = sqlx::query(concat!(
        "select ",
        withdrawal_columns!(),
        " from withdrawals where distributor_id = $1 and idempotency_key = $2"
    ))
    .bind(distributor.as_str())
    .bind(&draft.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = previous {
        let previous = withdrawal_from_row(&row)?;
        if previous.request_sha256 == draft.request_sha256 {
            return Ok(RequestLock::Replayed(previous));
        }
        return Err(StoreError::IdempotencyConflict {
            key: draft.idempotency_key.clone(),
        });
    }
    Ok(RequestLock::Fresh(load_facts(conn, draft).await?))
}

/// The request's last step: writes the decided withdrawal, reserves its
/// gross, appends the timeline and, when approved at once, pushes the transfer.
async fn write_request(
    conn: &mut Conn,
    draft: &WithdrawalDraft,
    transfer_job: &JobSpec,
    decision: &WithdrawalDecision,
) -> Result<(), StoreError> {
    let distributor = &draft.distributor_id;
    let risk_flags = serde_json::to_string(&decision.risk_flags)
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    sqlx::query(concat!(
        "insert into withdrawals (id, distributor_id, payout_account_id, channel, speed, state, gross_fen, tax_fen, ",
        "fee_fen, net_fen, tax_method, tax_month, local_day, withholding, risk_flags, out_bill_no, idempotency_key, ",
        "request_sha256, requested_at, updated_at, send_after, payout_cycle) ",
        "values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $20, $21)"
    ))
    .bind(draft.id.as_str())
    .bind(distributor.as_str())
    .bind(draft.payout_account_id.as_str())
    .bind(decision.channel.as_str())
    .bind(draft.speed.as_str())
    .bind(decision.state.as_str())
    .bind(decision.gross.fen())
    .bind(decision.tax.fen())
    .bind(decision.fee.fen())
    .bind(decision.net.fen())
    .bind(&decision.tax_method)
    .bind(&draft.tax_month)
    .bind(&draft.local_day)
    .bind(&decision.withholding)
    .bind(&risk_flags)
    .bind(&draft.out_bill_no)
    .bind(&draft.idempotency_key)
    .bind(&draft.request_sha256)
    .bind(DbTime(draft.now))
    .bind(DbTime(draft.send_after))
    .bind(&draft.payout_cycle)
    .execute(&mut *conn)
    .await?;
    let reserve = ledger_rules::withdrawal_reserve(draft.id.as_str(), distributor, decision.gross)
        .map_err(ledger_error)?;
    apply_transfer(conn, &reserve, draft.now).await?;
    record_withdrawal_event(
        conn,
        &draft.id,
        EventType::WithdrawalRequested,
        None,
        draft.now,
    )
    .await?;
    if let Some(kind) = EventType::of_withdrawal_state(decision.state) {
        record_withdrawal_event(conn, &draft.id, kind, None, draft.now).await?;
    }
    let figures = format!(
        "gross {} tax {} fee {} net {} ({})",
        decision.gross, decision.tax, decision.fee, decision.net, decision.tax_method
    );
    insert_withdrawal_event(
        conn,
        &draft.id,
        "reserve",
        "reserved",
        1,
        Some(&format!("available → withdrawing {}", decision.gross)),
        draft.now,
    )
    .await?;
    insert_withdrawal_event(
        conn,
        &draft.id,
        "tax",
        "withheld",
        1,
        Some(&figures),
        draft.now,
    )
    .await?;
    match decision.state {
        WithdrawalState::Approved => {
            insert_withdrawal_event(
                conn,
                &draft.id,
                "review",
                "auto_approved",
                1,
                None,
                draft.now,
            )
            .await?;
            insert_send_event(
                conn,
                &draft.id,
                Some(&draft.payout_cycle),
                Some(draft.send_after),
                draft.now,
            )
            .await?;
            push_transfer_job(
                conn,
                transfer_job,
                &draft.id,
                format!("transfer:{}", draft.id),
                transfer_run_at(Some(draft.send_after), draft.now),
            )
            .await?;
        }
        _ => {
            insert_withdrawal_event(
                conn,
                &draft.id,
                "review",
                "waiting_for_review",
                1,
                Some(&risk_flags),
                draft.now,
            )
            .await?;
        }
    }
    Ok(())
}

impl Repo {
    /// A distributor's withdrawals, newest first, at most `limit` (the
    /// distributor page's list; the index on distributor and request time
    /// serves it).
    pub async fn withdrawals_of_distributor(
        &self,
        distributor: &DistributorId,
        limit: i64,
    ) -> Result<Vec<WithdrawalRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            withdrawal_columns!(),
            " from withdrawals where distributor_id = $1 order by requested_at desc, id desc limit $2"
        ))
        .bind(distributor.as_str())
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(withdrawal_from_row).collect()
    }
}
