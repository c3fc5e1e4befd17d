//! Distributors, the ledger and commission plans, shared by both backends:
//! one source, compiled once per backend (`../sqlite/mod.rs`,
//! `../postgres/mod.rs`) against that backend's `dialect` with concrete sqlx
//! types, so there is no second copy of the logic and no generic trait
//! bounds to fight.

use std::collections::{BTreeMap, HashMap};
use std::slice;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::Repo;
use super::audit::audit_in;
use super::dialect::{
    Conn, Db, DbRow, ROWS_PER_STATEMENT, for_update, insert_postings, insert_transfers,
    lock_balances, update_balances,
};
use crate::domain::ids::DistributorId;
use crate::domain::ledger::{AccountId, Bucket, Posting, Transfer};
use crate::domain::money::Money;
use crate::domain::settlement::DistributorStatus;
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{
    AccountMismatch, Actor, Balance, Creation, Distributor, JournalPosting, JournalTransfer,
    LedgerReport, NewDistributor, NewPlan, StoredPlan, TransferOutcome,
};
use crate::store::time::DbTime;

/// How many offending rows `verify_ledger` names before it stops listing.
const MAX_REPORTED_PROBLEMS: i64 = 100;

fn distributor_from_row(row: &DbRow) -> Result<Distributor, StoreError> {
    let referrer: Option<String> = row.try_get("referrer_id")?;
    let upline_2: Option<String> = row.try_get("upline_2")?;
    let upline_3: Option<String> = row.try_get("upline_3")?;
    let upline = [referrer.clone(), upline_2, upline_3]
        .into_iter()
        .flatten()
        .map(DistributorId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Distributor {
        id: DistributorId::parse(row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        referrer_id: referrer.map(DistributorId::parse).transpose()?,
        upline,
        grade: row.try_get("grade")?,
        status: DistributorStatus::parse(&row.try_get::<String, _>("status")?),
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
    })
}

pub(super) async fn fetch_distributor(
    conn: &mut Conn,
    id: &DistributorId,
) -> Result<Option<(Distributor, String)>, StoreError> {
    let row = sqlx::query(concat!(
        "select id, name, referrer_id, upline_2, upline_3, grade, status, created_at, request_sha256 ",
        "from distributors where id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let fingerprint: String = row.try_get("request_sha256")?;
            Ok(Some((distributor_from_row(&row)?, fingerprint)))
        }
    }
}

fn replay_or_conflict(
    existing: Distributor,
    existing_fingerprint: &str,
    new: &NewDistributor,
) -> Result<Creation<Distributor>, StoreError> {
    if existing_fingerprint == new.request_sha256 {
        Ok(Creation::Replayed(existing))
    } else {
        Err(StoreError::Conflict {
            what: "distributor",
            id: new.id.to_string(),
        })
    }
}

/// Applies balanced transfers inside the caller's transaction, each exactly
/// once per idempotency key, set-wise: one insert for the transfers, one
/// update per chunk of touched balances, one insert per chunk of postings.
/// Distributor balances move by a conditional update in the same
/// transaction, so the non-negative rule is enforced by the database and
/// never by a read-then-write race. On any error the caller must drop the
/// transaction: nothing of it may be committed.
pub(super) async fn apply_transfers(
    conn: &mut Conn,
    transfers: &[Transfer],
    now: DateTime<Utc>,
) -> Result<Vec<TransferOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(transfers.len());
    let mut fresh: Vec<(i64, &Transfer)> = Vec::with_capacity(transfers.len());
    for chunk in transfers.chunks(ROWS_PER_STATEMENT) {
        let inserted = insert_transfers(conn, chunk, now).await?;
        let inserted: HashMap<String, i64> =
            inserted.into_iter().map(|(id, key)| (key, id)).collect();
        let replayed: Vec<&Transfer> = chunk
            .iter()
            .filter(|transfer| !inserted.contains_key(transfer.key()))
            .collect();
        let mut existing = HashMap::new();
        if !replayed.is_empty() {
            let mut select = QueryBuilder::<Db>::new(
                "select id, idempotency_key, body_sha256 from ledger_transfers where idempotency_key in (",
            );
            let mut keys = select.separated(", ");
            for transfer in &replayed {
                keys.push_bind(transfer.key());
            }
            select.push(")");
            let rows: Vec<(i64, String, String)> =
                select.build_query_as().fetch_all(&mut *conn).await?;
            existing = rows
                .into_iter()
                .map(|(id, key, hash)| (key, (id, hash)))
                .collect();
        }
        for transfer in chunk {
            if let Some(&transfer_id) = inserted.get(transfer.key()) {
                outcomes.push(TransferOutcome::Applied { transfer_id });
                fresh.push((transfer_id, transfer));
                continue;
            }
            match existing.get(transfer.key()) {
                Some((transfer_id, hash)) if *hash == transfer.fingerprint() => {
                    outcomes.push(TransferOutcome::AlreadyApplied {
                        transfer_id: *transfer_id,
                    });
                }
                // The same key twice in one batch with different bodies also lands here.
                _ => {
                    return Err(StoreError::IdempotencyConflict {
                        key: transfer.key().to_owned(),
                    });
                }
            }
        }
    }
    if fresh.is_empty() {
        return Ok(outcomes);
    }

    // Net change per tracked account over the whole batch, in account order.
    let mut net: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    for (_, transfer) in &fresh {
        for (account, change) in transfer.net_by_account() {
            if !account.tracks_balance() || change.is_zero() {
                continue;
            }
            let entry = net.entry(account.to_string()).or_insert((0, true));
            entry.0 = entry
                .0
                .checked_add(change.fen())
                .ok_or_else(|| balance_overflow(&account.to_string()))?;
            // An overdraft is allowed only if every transfer touching the account allows it.
            entry.1 &= transfer.allows_overdraft(account);
        }
    }
    net.retain(|_, (change, _)| *change != 0);
    let touched: Vec<(&String, &(i64, bool))> = net.iter().collect();
    for chunk in touched.chunks(ROWS_PER_STATEMENT) {
        let balances =
            lock_balances(conn, chunk.iter().map(|(account, _)| account.as_str())).await?;
        // Checked here, under the lock and before the update, because the
        // database would not refuse an overflow cleanly: PostgreSQL fails the
        // statement ("bigint out of range"), which aborts the transaction,
        // and SQLite turns the sum into a float. An account missing here is
        // named by `refusal_for` after the update.
        for (account, (change, _)) in chunk {
            if let Some(balance) = balances.get(account.as_str())
                && balance.checked_add(*change).is_none()
            {
                return Err(balance_overflow(account));
            }
        }
        // The floor is in the WHERE clause, so a refusal shows as a missing
        // row and not as a constraint error (which would abort a PostgreSQL
        // transaction); `ledger_accounts_balance_floor` stays as the backstop.
        // A credit always passes: it moves a balance in debt toward zero
        // (a release or a team bonus repaying part of a clawback's debt).
        let updated = update_balances(conn, chunk).await?;
        if updated != chunk.len() as u64 {
            return Err(refusal_for(conn, chunk).await?);
        }
    }

    let postings: Vec<(i64, &Posting)> = fresh
        .iter()
        .flat_map(|(transfer_id, transfer)| {
            transfer
                .postings()
                .iter()
                .map(move |posting| (*transfer_id, posting))
        })
        .collect();
    for chunk in postings.chunks(ROWS_PER_STATEMENT) {
        insert_postings(conn, chunk, now).await?;
    }
    Ok(outcomes)
}

/// The refusal of a change that would take a balance past what 64 bits of
/// fen hold; nothing is written.
fn balance_overflow(account: &str) -> StoreError {
    StoreError::BalanceOverflow {
        account: account.to_owned(),
    }
}

/// Names the account a refused balance update stumbled on.
async fn refusal_for(
    conn: &mut Conn,
    chunk: &[(&String, &(i64, bool))],
) -> Result<StoreError, StoreError> {
    for (account, (change, overdraft)) in chunk {
        let row: Option<(i64, bool)> = sqlx::query_as(
            "select balance_fen, may_go_negative from ledger_accounts where id = $1",
        )
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            None => {
                return Ok(StoreError::NotFound {
                    what: "account",
                    id: (*account).clone(),
                });
            }
            // Without the failed update, the balance is as it was before it.
            // The same rule as the update's WHERE: only a debit is refused.
            Some((balance, may_go_negative))
                if *change < 0
                    && balance.saturating_add(*change) < 0
                    && !(*overdraft && may_go_negative) =>
            {
                return Ok(StoreError::InsufficientFunds {
                    account: (*account).clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(StoreError::Corrupt(
        "a balance update was refused for no visible reason".to_owned(),
    ))
}

/// Applies one transfer inside the caller's transaction.
pub(super) async fn apply_transfer(
    conn: &mut Conn,
    transfer: &Transfer,
    now: DateTime<Utc>,
) -> Result<TransferOutcome, StoreError> {
    let outcomes = apply_transfers(conn, slice::from_ref(transfer), now).await?;
    outcomes
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("a transfer vanished".to_owned()))
}

fn plan_from_row(row: &DbRow) -> Result<StoredPlan, StoreError> {
    Ok(StoredPlan {
        version: row.try_get("version")?,
        name: row.try_get("name")?,
        effective_from: row.try_get::<DbTime, _>("effective_from")?.0,
        source_toml: row.try_get("source_toml")?,
        applied_by: row.try_get("applied_by")?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
    })
}

impl Repo {
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn create_distributor(
        &self,
        new: &NewDistributor,
        now: DateTime<Utc>,
    ) -> Result<Creation<Distributor>, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some((existing, fingerprint)) = fetch_distributor(&mut tx, &new.id).await? {
            return replay_or_conflict(existing, &fingerprint, new);
        }
        let upline: [Option<String>; 3] = match &new.referrer_id {
            None => [None, None, None],
            Some(referrer) => {
                let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(concat!(
                    "select referrer_id, upline_2 from distributors where id = $1",
                    for_update!()
                ))
                .bind(referrer.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((referrer_of_referrer, third)) = row else {
                    return Err(StoreError::NotFound {
                        what: "referrer",
                        id: referrer.to_string(),
                    });
                };
                [Some(referrer.to_string()), referrer_of_referrer, third]
            }
        };
        let [referrer_id, upline_2, upline_3] = upline;
        let inserted = sqlx::query(concat!(
            "insert into distributors ",
            "(id, name, referrer_id, upline_2, upline_3, grade, status, request_sha256, created_at) ",
            "values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (id) do nothing"
        ))
        .bind(new.id.as_str())
        .bind(&new.name)
        .bind(referrer_id)
        .bind(upline_2)
        .bind(upline_3)
        .bind(&new.grade)
        .bind(new.status.as_str())
        .bind(&new.request_sha256)
        .bind(DbTime(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Lost a race with the same id: the winner has committed by now.
            let (existing, fingerprint) = fetch_distributor(&mut tx, &new.id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("distributor {} vanished", new.id)))?;
            return replay_or_conflict(existing, &fingerprint, new);
        }
        let mut accounts = QueryBuilder::<Db>::new(concat!(
            "insert into ledger_accounts ",
            "(id, owner_distributor_id, kind, tracks_balance, may_go_negative, created_at) "
        ));
        accounts.push_values(Bucket::ALL, |mut row, bucket| {
            let account = AccountId::Distributor(new.id.clone(), bucket);
            row.push_bind(account.to_string())
                .push_bind(new.id.as_str())
                .push_bind(bucket.as_str())
                .push_bind(true)
                .push_bind(bucket.may_go_negative())
                .push_bind(DbTime(now));
        });
        accounts.build().execute(&mut *tx).await?;
        let (created, _) = fetch_distributor(&mut tx, &new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("distributor {} vanished", new.id)))?;
        tx.commit().await?;
        Ok(Creation::Created(created))
    }

    pub async fn distributor(&self, id: &DistributorId) -> Result<Option<Distributor>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(fetch_distributor(&mut conn, id)
            .await?
            .map(|(distributor, _)| distributor))
    }

    /// The distributors among `ids` that exist, in no particular order.
    pub async fn distributors_by_ids(&self, ids: &[&str]) -> Result<Vec<Distributor>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(
                "select id, name, referrer_id, upline_2, upline_3, grade, status, created_at from distributors where id in (",
            );
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select.push(")");
            for row in select.build().fetch_all(&self.pool).await? {
                found.push(distributor_from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// Distributors in id order, after `after` (keyset pagination).
    pub async fn list_distributors(
        &self,
        after: Option<&DistributorId>,
        limit: i64,
    ) -> Result<Vec<Distributor>, StoreError> {
        let rows = sqlx::query(concat!(
            "select id, name, referrer_id, upline_2, upline_3, grade, status, created_at ",
            "from distributors where id > $1 order by id limit $2"
        ))
        .bind(after.map(DistributorId::as_str).unwrap_or(""))
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(distributor_from_row).collect()
    }

    pub async fn balance(&self, id: &DistributorId) -> Result<Option<Balance>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select kind, balance_fen from ledger_accounts where owner_distributor_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut balance = Balance::default();
        for (kind, fen) in rows {
            let money = Money::from_fen(fen);
            match kind.as_str() {
                "pending" => balance.pending = money,
                "available" => balance.available = money,
                "withdrawing" => balance.withdrawing = money,
                other => return Err(StoreError::Corrupt(format!("account kind {other:?}"))),
            }
        }
        let withdrawn: i64 = sqlx::query_scalar(concat!(
            "select cast(coalesce(-sum(p.amount_fen), 0) as bigint) from ledger_postings p ",
            "join ledger_transfers t on t.id = p.transfer_id ",
            "where p.account_id = $1 and t.kind in ('withdrawal_paid', 'withdrawal_bounced')"
        ))
        .bind(AccountId::Distributor(id.clone(), Bucket::Withdrawing).to_string())
        .fetch_one(&self.pool)
        .await?;
        balance.withdrawn_total = Money::from_fen(withdrawn);
        Ok(Some(balance))
    }

    /// Applies one transfer in a transaction of its own.
    pub async fn transfer(
        &self,
        transfer: &Transfer,
        now: DateTime<Utc>,
    ) -> Result<TransferOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = apply_transfer(&mut tx, transfer, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// A manual adjustment by `actor`: the transfer and, when it is applied
    /// now (not a replay of its idempotency key), its audit entry on
    /// `target`, whose `after` is `details` with the transfer id.
    pub async fn adjust(
        &self,
        transfer: &Transfer,
        now: DateTime<Utc>,
        actor: &Actor,
        target: &str,
        details: serde_json::Value,
    ) -> Result<TransferOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = apply_transfer(&mut tx, transfer, now).await?;
        if let TransferOutcome::Applied { transfer_id } = &outcome {
            let mut after = details;
            if let Some(fields) = after.as_object_mut() {
                fields.insert("transfer_id".to_owned(), serde_json::json!(transfer_id));
            }
            audit_in(
                &mut tx,
                actor,
                now,
                "ledger.adjust",
                target.to_owned(),
                None,
                Some(after),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The balance of any account, derived from postings for platform accounts.
    pub async fn account_balance(&self, account: &AccountId) -> Result<Option<Money>, StoreError> {
        let row: Option<(i64, bool)> =
            sqlx::query_as("select balance_fen, tracks_balance from ledger_accounts where id = $1")
                .bind(account.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some((stored, tracked)) = row else {
            return Ok(None);
        };
        if tracked {
            return Ok(Some(Money::from_fen(stored)));
        }
        let derived: i64 = sqlx::query_scalar(
            "select cast(coalesce(sum(amount_fen), 0) as bigint) from ledger_postings where account_id = $1",
        )
        .bind(account.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(Money::from_fen(derived)))
    }

    /// Re-derives every balance from the postings and checks Σ = 0.
    pub async fn verify_ledger(&self) -> Result<LedgerReport, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let accounts: i64 = sqlx::query_scalar("select count(*) from ledger_accounts")
            .fetch_one(&mut *conn)
            .await?;
        let transfers: i64 = sqlx::query_scalar("select count(*) from ledger_transfers")
            .fetch_one(&mut *conn)
            .await?;
        let (postings, postings_sum_fen): (i64, i64) = sqlx::query_as(
            "select count(*), cast(coalesce(sum(amount_fen), 0) as bigint) from ledger_postings",
        )
        .fetch_one(&mut *conn)
        .await?;
        let unbalanced_transfers: Vec<String> = sqlx::query_scalar(concat!(
            "select t.idempotency_key from ledger_transfers t ",
            "left join ledger_postings p on p.transfer_id = t.id ",
            "group by t.id, t.idempotency_key ",
            "having count(p.id) < 2 or coalesce(sum(p.amount_fen), 0) <> 0 ",
            "order by t.id limit $1"
        ))
        .bind(MAX_REPORTED_PROBLEMS)
        .fetch_all(&mut *conn)
        .await?;
        let mismatched: Vec<(String, i64, i64)> = sqlx::query_as(concat!(
            "select a.id, a.balance_fen, cast(coalesce(sum(p.amount_fen), 0) as bigint) ",
            "from ledger_accounts a left join ledger_postings p on p.account_id = a.id ",
            "where a.tracks_balance = $1 group by a.id, a.balance_fen ",
            "having a.balance_fen <> coalesce(sum(p.amount_fen), 0) order by a.id limit $2"
        ))
        .bind(true)
        .bind(MAX_REPORTED_PROBLEMS)
        .fetch_all(&mut *conn)
        .await?;
        let negative_accounts: Vec<String> = sqlx::query_scalar(concat!(
            "select a.id from ledger_accounts a left join ledger_postings p on p.account_id = a.id ",
            "where a.may_go_negative = $1 group by a.id ",
            "having coalesce(sum(p.amount_fen), 0) < 0 order by a.id limit $2"
        ))
        .bind(false)
        .bind(MAX_REPORTED_PROBLEMS)
        .fetch_all(&mut *conn)
        .await?;
        let orphan_postings: i64 = sqlx::query_scalar(concat!(
            "select count(*) from ledger_postings p ",
            "where not exists (select 1 from ledger_accounts a where a.id = p.account_id) ",
            "or not exists (select 1 from ledger_transfers t where t.id = p.transfer_id)"
        ))
        .fetch_one(&mut *conn)
        .await?;
        Ok(LedgerReport {
            orphan_postings,
            accounts,
            transfers,
            postings,
            postings_sum_fen,
            unbalanced_transfers,
            mismatched_accounts: mismatched
                .into_iter()
                .map(|(account, stored_fen, derived_fen)| AccountMismatch {
                    account,
                    stored_fen,
                    derived_fen,
                })
                .collect(),
            negative_accounts,
        })
    }

    /// The transfers whose idempotency key belongs to `subject`
    /// (`withdrawal:{id}` or `order:{id}`: keys are `{subject}:{step}`,
    /// see `domain::ledger`), oldest first, each with its postings.
    ///
    /// Matched with `substr`, not `like`: SQLite's `like` ignores ASCII case
    /// and both treat `_` as a wildcard, and ids may hold either. That reads
    /// the keys without their index; the page that asks shows one subject.
    pub async fn ledger_transfers_of(
        &self,
        subject: &str,
    ) -> Result<Vec<JournalTransfer>, StoreError> {
        let prefix = format!("{subject}:");
        let rows = sqlx::query(concat!(
            "select t.id, t.idempotency_key, t.kind, t.created_at, p.account_id, p.amount_fen ",
            "from ledger_transfers t join ledger_postings p on p.transfer_id = t.id ",
            "where substr(t.idempotency_key, 1, cast($2 as integer)) = $1 ",
            "order by t.id, p.id limit $3"
        ))
        .bind(&prefix)
        .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        let mut transfers: Vec<JournalTransfer> = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let posting = JournalPosting {
                account: row.try_get("account_id")?,
                amount: Money::from_fen(row.try_get("amount_fen")?),
            };
            match transfers.last_mut() {
                Some(last) if last.id == id => last.postings.push(posting),
                _ => transfers.push(JournalTransfer {
                    id,
                    idempotency_key: row.try_get("idempotency_key")?,
                    kind: row.try_get("kind")?,
                    created_at: row.try_get::<DbTime, _>("created_at")?.0,
                    postings: vec![posting],
                }),
            }
        }
        // Each transfer balanced when it was written; a page must not show
        // one that does not (a broken invariant, not bad input).
        for transfer in &transfers {
            let sum: i64 = transfer.postings.iter().map(|p| p.amount.fen()).sum();
            debug_assert_eq!(
                sum, 0,
                "transfer {} does not balance",
                transfer.idempotency_key
            );
        }
        Ok(transfers)
    }

    /// Stores a new plan version, applied by `actor`, with its audit entry;
    /// the caller has parsed and validated it.
    pub async fn insert_plan(
        &self,
        plan: &NewPlan<'_>,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<StoredPlan, StoreError> {
        let NewPlan {
            name,
            effective_from,
            source_toml,
            source_sha256,
            file_name,
        } = *plan;
        let applied_by = actor.id.as_str();
        let mut tx = self.begin_write().await?;
        let version: i64 = sqlx::query_scalar(concat!(
            "insert into commission_plans ",
            "(name, effective_from, source_toml, source_sha256, applied_by, created_at) ",
            "values ($1, $2, $3, $4, $5, $6) returning version"
        ))
        .bind(name)
        .bind(DbTime(effective_from))
        .bind(source_toml)
        .bind(source_sha256)
        .bind(applied_by)
        .bind(DbTime(now))
        .fetch_one(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "plan.apply",
            format!("plan:{version}"),
            None,
            Some(serde_json::json!({"version": version, "name": name, "file": file_name, "effective_from": effective_from})),
        )
        .await?;
        tx.commit().await?;
        Ok(StoredPlan {
            version,
            name: name.to_owned(),
            effective_from,
            source_toml: source_toml.to_owned(),
            applied_by: applied_by.to_owned(),
            created_at: now,
        })
    }

    /// Puts the shipped default plan in force from the beginning of time,
    /// unless some plan exists already: a fresh install pays out of the box.
    pub async fn ensure_default_plan(
        &self,
        name: &str,
        source_toml: &str,
        source_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: i64 = sqlx::query_scalar("select count(*) from commission_plans")
            .fetch_one(&mut *tx)
            .await?;
        if existing == 0 {
            sqlx::query(concat!(
                "insert into commission_plans ",
                "(name, effective_from, source_toml, source_sha256, applied_by, created_at) ",
                "values ($1, $2, $3, $4, 'install', $5)"
            ))
            .bind(name)
            .bind(DbTime(DateTime::<Utc>::UNIX_EPOCH))
            .bind(source_toml)
            .bind(source_sha256)
            .bind(DbTime(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The plan in force at `at`: the latest effective_from at or before it.
    pub async fn plan_in_force(&self, at: DateTime<Utc>) -> Result<Option<StoredPlan>, StoreError> {
        let row = sqlx::query(concat!(
            "select version, name, effective_from, source_toml, applied_by, created_at ",
            "from commission_plans where effective_from <= $1 ",
            "order by effective_from desc, version desc limit 1"
        ))
        .bind(DbTime(at))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    pub async fn list_plans(&self) -> Result<Vec<StoredPlan>, StoreError> {
        let rows = sqlx::query(concat!(
            "select version, name, effective_from, source_toml, applied_by, created_at ",
            "from commission_plans order by version limit $1"
        ))
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plan_from_row).collect()
    }
}
