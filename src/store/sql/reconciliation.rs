//! Reconciliation's SQL (issue 15 item 6), shared by both backends: our
//! payouts of a day, the day's run, its matches and its mismatches, and the
//! audited resolution of a mismatch. A finished day is written in one
//! transaction, so a re-run replaces it whole or not at all.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Db, DbRow, ROWS_PER_STATEMENT};
use crate::domain::money::Money;
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, FinishedReconciliation, MismatchRecord, ReconciliationPayout, ReconciliationRun,
    UnresolvedMismatches,
};
use crate::store::time::DbTime;

/// The select of the columns [`payout_from_row`] reads (a macro, so
/// `concat!` keeps each statement a literal).
macro_rules! select_payouts {
    () => {
        "select id, out_bill_no, channel, state, net_fen, finished_at, returned_at from withdrawals "
    };
}

/// Columns of a match row; bound per row in the bulk insert.
const MATCH_BINDS_PER_ROW: usize = 5;

fn payout_from_row(row: &DbRow) -> Result<ReconciliationPayout, StoreError> {
    Ok(ReconciliationPayout {
        withdrawal_id: row.try_get("id")?,
        out_bill_no: row.try_get("out_bill_no")?,
        channel: row.try_get("channel")?,
        state: row.try_get("state")?,
        net: Money::from_fen(row.try_get("net_fen")?),
        finished_at: row
            .try_get::<Option<DbTime>, _>("finished_at")?
            .map(|at| at.0),
        returned_at: row
            .try_get::<Option<DbTime>, _>("returned_at")?
            .map(|at| at.0),
    })
}

fn run_from_row(row: &DbRow) -> Result<ReconciliationRun, StoreError> {
    Ok(ReconciliationRun {
        source: row.try_get("source")?,
        bill_date: row.try_get("bill_date")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row
            .try_get::<Option<DbTime>, _>("next_attempt_at")?
            .map(|at| at.0),
        lines: row.try_get("lines")?,
        matched: row.try_get("matched")?,
        totals: row.try_get("totals")?,
        held: row.try_get("held")?,
        finished_at: row
            .try_get::<Option<DbTime>, _>("finished_at")?
            .map(|at| at.0),
        updated_at: row.try_get::<DbTime, _>("updated_at")?.0,
    })
}

fn mismatch_from_row(row: &DbRow) -> Result<MismatchRecord, StoreError> {
    let fen = |column: &str| -> Result<Option<Money>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Money::from_fen))
    };
    Ok(MismatchRecord {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        bill_date: row.try_get("bill_date")?,
        bill_no: row.try_get("bill_no")?,
        class: row.try_get("class")?,
        withdrawal_id: row.try_get("withdrawal_id")?,
        channel: row.try_get("channel")?,
        at_channel: fen("at_channel_fen")?,
        at_fenrun: fen("at_fenrun_fen")?,
        found_at: row.try_get::<DbTime, _>("found_at")?.0,
        resolution: row.try_get("resolution")?,
        resolution_reason: row.try_get("resolution_reason")?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: row
            .try_get::<Option<DbTime>, _>("resolved_at")?
            .map(|at| at.0),
    })
}

impl Repo {
    /// Withdrawals paid (now paid or returned) in `[from, to)`, and those
    /// returned in it: each once. Two statements, so each uses its own
    /// partial index.
    pub async fn payouts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        let paid = sqlx::query(concat!(
            select_payouts!(),
            "where state in ('paid', 'returned') and finished_at >= $1 and finished_at < $2"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .fetch_all(&self.pool)
        .await?;
        let returned = sqlx::query(concat!(
            select_payouts!(),
            "where state = 'returned' and returned_at >= $1 and returned_at < $2"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .fetch_all(&self.pool)
        .await?;
        let mut seen = HashSet::new();
        let mut payouts = Vec::with_capacity(paid.len() + returned.len());
        for row in paid.iter().chain(returned.iter()) {
            let payout = payout_from_row(row)?;
            if seen.insert(payout.withdrawal_id.clone()) {
                payouts.push(payout);
            }
        }
        Ok(payouts)
    }

    /// The withdrawals whose `column` (`id` or `out_bill_no`) is one of
    /// `keys`; unknown keys are left out.
    async fn payouts_where_in(
        &self,
        column: &str,
        keys: &[String],
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        let mut payouts = Vec::new();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(select_payouts!());
            select.push(format!("where {column} in ("));
            let mut list = select.separated(", ");
            for key in chunk {
                list.push_bind(key.as_str());
            }
            select.push(")");
            for row in select.build().fetch_all(&self.pool).await? {
                payouts.push(payout_from_row(&row)?);
            }
        }
        Ok(payouts)
    }

    pub async fn payouts_by_bill_no(
        &self,
        bill_nos: &[String],
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        self.payouts_where_in("out_bill_no", bill_nos).await
    }

    pub async fn payouts_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<ReconciliationPayout>, StoreError> {
        self.payouts_where_in("id", ids).await
    }

    /// `(withdrawal_id, kind)` of `ids` matched on a statement other than
    /// `source`'s of `bill_date`.
    pub async fn matches_elsewhere(
        &self,
        ids: &[String],
        source: &str,
        bill_date: &str,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let mut matched = HashSet::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(
                "select withdrawal_id, kind from reconciliation_matches where not (source = ",
            );
            select
                .push_bind(source)
                .push(" and bill_date = ")
                .push_bind(bill_date)
                .push(") and withdrawal_id in (");
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            select.push(")");
            for row in select.build().fetch_all(&self.pool).await? {
                matched.insert((row.try_get("withdrawal_id")?, row.try_get("kind")?));
            }
        }
        Ok(matched)
    }

    pub async fn reconciliation_run(
        &self,
        source: &str,
        bill_date: &str,
    ) -> Result<Option<ReconciliationRun>, StoreError> {
        let row =
            sqlx::query("select * from reconciliation_runs where source = $1 and bill_date = $2")
                .bind(source)
                .bind(bill_date)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The runs of the days in `[first, last]` (`YYYY-MM-DD`), oldest first.
    pub async fn reconciliation_runs(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<ReconciliationRun>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from reconciliation_runs where bill_date >= $1 and bill_date <= $2 ",
            "order by bill_date, source"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Records a failed attempt: the error, and when to try again. A day
    /// finished before keeps its results (a failed re-run changes nothing
    /// reconciled) and only notes the error.
    pub async fn record_reconciliation_failure(
        &self,
        source: &str,
        bill_date: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ReconciliationRun, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into reconciliation_runs (source, bill_date, state, attempts, last_error, ",
            "next_attempt_at, created_at, updated_at) values ($1, $2, 'failed', 1, $3, $4, $5, $5) ",
            "on conflict (source, bill_date) do update set attempts = reconciliation_runs.attempts + 1, ",
            "last_error = excluded.last_error, updated_at = excluded.updated_at, ",
            "next_attempt_at = case when reconciliation_runs.state = 'finished' then null ",
            "else excluded.next_attempt_at end"
        ))
        .bind(source)
        .bind(bill_date)
        .bind(error)
        .bind(next_attempt_at.map(DbTime))
        .bind(DbTime(now))
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("select * from reconciliation_runs where source = $1 and bill_date = $2")
                .bind(source)
                .bind(bill_date)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        run_from_row(&row)
    }

    /// Failed runs whose next attempt is due at `now`.
    pub async fn reconciliation_runs_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationRun>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from reconciliation_runs where state = 'failed' and next_attempt_at <= $1 ",
            "order by next_attempt_at"
        ))
        .bind(DbTime(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Writes a finished day in one transaction: its matches (replacing the
    /// day's earlier ones), its mismatches (keeping the ids and resolutions
    /// of those found before, dropping unresolved ones no longer found) and
    /// the run row.
    pub async fn finish_reconciliation(
        &self,
        day: &FinishedReconciliation,
    ) -> Result<ReconciliationRun, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("delete from reconciliation_matches where source = $1 and bill_date = $2")
            .bind(&day.source)
            .bind(&day.bill_date)
            .execute(&mut *tx)
            .await?;
        let rows_per_insert = (ROWS_PER_STATEMENT * 4 / MATCH_BINDS_PER_ROW).max(1);
        for chunk in day.matches.chunks(rows_per_insert) {
            let mut insert = QueryBuilder::<Db>::new(
                "insert into reconciliation_matches (withdrawal_id, kind, source, bill_date, created_at) ",
            );
            insert.push_values(chunk, |mut row, (withdrawal_id, kind)| {
                row.push_bind(withdrawal_id.as_str())
                    .push_bind(kind.as_str())
                    .push_bind(day.source.as_str())
                    .push_bind(day.bill_date.as_str())
                    .push_bind(DbTime(day.at));
            });
            // Matched on another day's file first: that day keeps it.
            insert.push(" on conflict (withdrawal_id, kind) do nothing");
            insert.build().execute(&mut *tx).await?;
        }
        let before: Vec<(i64, String, String)> = sqlx::query_as(concat!(
            "select id, bill_no, class from reconciliation_mismatches ",
            "where source = $1 and bill_date = $2 and resolution is null"
        ))
        .bind(&day.source)
        .bind(&day.bill_date)
        .fetch_all(&mut *tx)
        .await?;
        let found: HashSet<(&str, &str)> = day
            .mismatches
            .iter()
            .map(|mismatch| (mismatch.bill_no.as_str(), mismatch.class.as_str()))
            .collect();
        for (id, bill_no, class) in &before {
            if !found.contains(&(bill_no.as_str(), class.as_str())) {
                sqlx::query("delete from reconciliation_mismatches where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for mismatch in &day.mismatches {
            sqlx::query(concat!(
                "insert into reconciliation_mismatches (source, bill_date, bill_no, class, ",
                "withdrawal_id, channel, at_channel_fen, at_fenrun_fen, found_at, created_at) ",
                "values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ",
                "on conflict (source, bill_date, bill_no, class) do update set ",
                "withdrawal_id = excluded.withdrawal_id, channel = excluded.channel, ",
                "at_channel_fen = excluded.at_channel_fen, at_fenrun_fen = excluded.at_fenrun_fen"
            ))
            .bind(&day.source)
            .bind(&day.bill_date)
            .bind(&mismatch.bill_no)
            .bind(&mismatch.class)
            .bind(&mismatch.withdrawal_id)
            .bind(&mismatch.channel)
            .bind(mismatch.at_channel.map(Money::fen))
            .bind(mismatch.at_fenrun.map(Money::fen))
            .bind(DbTime(day.at))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(concat!(
            "insert into reconciliation_runs (source, bill_date, state, attempts, lines, matched, ",
            "totals, held, finished_at, created_at, updated_at) ",
            "values ($1, $2, 'finished', 1, $3, $4, $5, $6, $7, $7, $7) ",
            "on conflict (source, bill_date) do update set state = 'finished', ",
            "attempts = reconciliation_runs.attempts + 1, last_error = null, next_attempt_at = null, ",
            "lines = excluded.lines, matched = excluded.matched, totals = excluded.totals, ",
            "held = excluded.held, finished_at = excluded.finished_at, updated_at = excluded.updated_at"
        ))
        .bind(&day.source)
        .bind(&day.bill_date)
        .bind(day.lines)
        .bind(i64::try_from(day.matches.len()).expect("a day's matches fit in i64"))
        .bind(&day.totals)
        .bind(&day.held)
        .bind(DbTime(day.at))
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("select * from reconciliation_runs where source = $1 and bill_date = $2")
                .bind(&day.source)
                .bind(&day.bill_date)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        run_from_row(&row)
    }

    /// The mismatches of the days in `[first, last]`, optionally of one
    /// source, in day and bill order.
    pub async fn reconciliation_mismatches(
        &self,
        first: &str,
        last: &str,
        source: Option<&str>,
    ) -> Result<Vec<MismatchRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from reconciliation_mismatches where bill_date >= $1 and bill_date <= $2 ",
            "and ($3 is null or source = $3) order by bill_date, source, bill_no, class"
        ))
        .bind(first)
        .bind(last)
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mismatch_from_row).collect()
    }

    /// Unresolved mismatches, oldest first, at most `limit`.
    pub async fn unresolved_mismatches(
        &self,
        limit: i64,
    ) -> Result<Vec<MismatchRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select * from reconciliation_mismatches where resolution is null ",
            "order by found_at, id limit $1"
        ))
        .bind(limit.clamp(1, crate::store::MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mismatch_from_row).collect()
    }

    /// Per channel (the source's name where no withdrawal of ours was
    /// named), the unresolved mismatches and the oldest one's time.
    pub async fn unresolved_mismatch_counts(
        &self,
    ) -> Result<Vec<UnresolvedMismatches>, StoreError> {
        let rows = sqlx::query(concat!(
            "select coalesce(channel, source) as channel, count(*) as count, ",
            "min(found_at) as oldest from reconciliation_mismatches where resolution is null ",
            "group by coalesce(channel, source) order by 1"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnresolvedMismatches {
                    channel: row.try_get("channel")?,
                    count: row.try_get("count")?,
                    oldest_found_at: row.try_get::<DbTime, _>("oldest")?.0,
                })
            })
            .collect()
    }

    /// Resolves mismatch `id` by taking `side` (`ledger` or `channel`) for
    /// `reason`, audited in the same transaction. The same resolution again
    /// is answered as it stands; a different one is a conflict.
    pub async fn resolve_mismatch(
        &self,
        id: i64,
        side: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<MismatchRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("select * from reconciliation_mismatches where id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "mismatch",
                id: id.to_string(),
            })?;
        let before = mismatch_from_row(&row)?;
        if let Some(resolution) = &before.resolution {
            if resolution == side && before.resolution_reason.as_deref() == Some(reason) {
                return Ok(before);
            }
            return Err(StoreError::Conflict {
                what: "resolution of mismatch",
                id: id.to_string(),
            });
        }
        sqlx::query(concat!(
            "update reconciliation_mismatches set resolution = $2, resolution_reason = $3, ",
            "resolved_by = $4, resolved_at = $5 where id = $1"
        ))
        .bind(id)
        .bind(side)
        .bind(reason)
        .bind(&actor.id)
        .bind(DbTime(now))
        .execute(&mut *tx)
        .await?;
        audit_in(
            &mut tx,
            actor,
            now,
            "reconciliation.resolve_mismatch",
            format!("reconciliation_mismatch:{id}"),
            Some(serde_json::json!({
                "source": before.source,
                "bill_date": before.bill_date,
                "bill_no": before.bill_no,
                "class": before.class,
                "resolution": null,
            })),
            Some(serde_json::json!({"resolution": side, "reason": reason})),
        )
        .await?;
        let row = sqlx::query("select * from reconciliation_mismatches where id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        mismatch_from_row(&row)
    }
}
