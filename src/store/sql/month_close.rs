//! Month close and earnings, shared by both backends: the one settled-sales
//! query (see `domain::earnings` for the definition), a span's ledger
//! movements per distributor, the month's statements and team bonuses, and
//! each month's close record.
//!
//! Every query is written once, as a macro that expands to the whole-shop
//! form (the month close) or the one-distributor form (the earnings view,
//! lifetime sales), so each form keeps an index-friendly `where` of its own
//! instead of an `$n is null or …` that no planner can use an index for.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::Repo;
use super::dialect::{Db, DbRow, ROWS_PER_STATEMENT};
use super::ledger::apply_transfers;
use super::orders::rate_to_db;
use crate::domain::ids::DistributorId;
use crate::domain::ledger;
use crate::domain::money::{Money, Rate};
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{
    Activity, BatchOutcome, ClosingDistributor, MonthCloseRecord, Movements, StatementRecord,
    TeamBonusRecord, TransferOutcome,
};
use crate::store::time::DbTime;

/// Settled sales (`domain::earnings`): released orders, `total − refunded`,
/// at `release_at` in `[$1, $2)`, credited to the seller as own and team
/// sales and to the seller's referrer (level 2) and theirs (level 3) as
/// team sales. `$filter` narrows the orders (and `$leader` the credited
/// distributors) for the one-distributor form; `$by` adds grouping columns.
macro_rules! settled_sales_sql {
    (orders: $filter:literal, leader: $leader:literal, select: $select:literal, by: $by:literal) => {
        concat!(
            "with sold as (select o.distributor_id as seller, d.referrer_id as level2, d.upline_2 as level3, ",
            "o.total_fen - o.refunded_fen as sales, o.release_at from orders o ",
            "join distributors d on d.id = o.distributor_id ",
            "where o.state = 'released' and o.commission_voided_at is null ",
            "and o.release_at >= $1 and o.release_at < $2",
            $filter,
            "), credited as (select seller as leader, sales as own, sales as team, release_at from sold ",
            "union all select level2, 0, sales, release_at from sold where level2 is not null ",
            "union all select level3, 0, sales, release_at from sold where level3 is not null) ",
            "select leader",
            $select,
            ", cast(sum(own) as bigint) as own_fen, cast(sum(team) as bigint) as team_fen ",
            "from credited",
            $leader,
            " group by leader",
            $by
        )
    };
}

/// A span's ledger movements to distributors, by transfer kind: clawed
/// back commission and team bonuses as they moved available,
/// withdrawals as they left withdrawing (signed so that each reads as a
/// positive amount of its kind).
macro_rules! movements_sql {
    (accounts: $filter:literal, select: $select:literal, by: $by:literal) => {
        concat!(
            "select a.owner_distributor_id as distributor_id, t.kind",
            $select,
            ", cast(sum(case when t.kind in ('commission_clawed_back', 'withdrawal_paid', 'withdrawal_bounced') ",
            "then -p.amount_fen else p.amount_fen end) as bigint) as amount_fen ",
            "from ledger_transfers t join ledger_postings p on p.transfer_id = t.id ",
            "join ledger_accounts a on a.id = p.account_id ",
            "where t.created_at >= $1 and t.created_at < $2 and a.owner_distributor_id is not null",
            $filter,
            " and ((a.kind = 'available' and t.kind in ('commission_clawed_back', 'team_bonus')) ",
            "or (a.kind = 'withdrawing' and t.kind in ('withdrawal_paid', 'withdrawal_bounced'))) ",
            "group by a.owner_distributor_id, t.kind",
            $by
        )
    };
}

/// Commission moved by an order's own step, counted at the order's time
/// of that step in `[$1, $2)`: earned = the pending its ingest credited
/// (transfer `order:{id}:pending`, before any refund) by `confirmed_at`;
/// released = what its release moved to available (`order:{id}:release`)
/// by `release_at`, the same instant settled sales are counted at, so a
/// release run late (after downtime) still lands in its own month.
macro_rules! order_step_sql {
    (from: $from:expr, account: $account:literal, kind: $kind:literal, time: $time:literal, select: $select:literal, by: $by:literal) => {
        concat!(
            "select a.owner_distributor_id as distributor_id",
            $select,
            ", cast(sum(p.amount_fen) as bigint) as amount_fen ",
            $from,
            " and a.kind = '",
            $account,
            "' and t.kind = '",
            $kind,
            "' ",
            "and ",
            $time,
            " >= $1 and ",
            $time,
            " < $2 ",
            "group by a.owner_distributor_id",
            $by
        )
    };
}

/// The whole shop's form of [`order_step_sql`]'s `from`, for `step`.
macro_rules! orders_from {
    ($step:literal) => {
        concat!(
            "from orders o join ledger_transfers t on t.idempotency_key = 'order:' || o.order_id || ':", $step, "' ",
            "join ledger_postings p on p.transfer_id = t.id join ledger_accounts a on a.id = p.account_id ",
            "where a.owner_distributor_id is not null"
        )
    };
}

/// One account's form of [`order_step_sql`]'s `from` (`$3`, the account):
/// the order id is the key's middle (`order:` and `:pending` or `:release`
/// are 6 and 8 characters).
macro_rules! account_from {
    () => {
        concat!(
            "from ledger_postings p join ledger_accounts a on a.id = p.account_id ",
            "join ledger_transfers t on t.id = p.transfer_id ",
            "join orders o on o.order_id = substr(t.idempotency_key, 7, length(t.idempotency_key) - 14) ",
            "where p.account_id = $3"
        )
    };
}

/// The earliest and latest instants the store is asked about (lifetime sums).
fn all_time() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default(),
        DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or_default(),
    )
}

fn month_close_from_row(row: &DbRow) -> Result<MonthCloseRecord, StoreError> {
    Ok(MonthCloseRecord {
        month: row.try_get("month")?,
        started_at: row.try_get::<DbTime, _>("started_at")?.0,
        finished_at: row
            .try_get::<Option<DbTime>, _>("finished_at")?
            .map(|at| at.0),
        plan_version: row.try_get("plan_version")?,
        statements: row.try_get("statements")?,
        bonuses: row.try_get("bonuses")?,
        bonus_total: Money::from_fen(row.try_get("bonus_fen")?),
    })
}

fn statement_from_row(row: &DbRow) -> Result<StatementRecord, StoreError> {
    let fen = |column: &str| -> Result<Money, StoreError> {
        Ok(Money::from_fen(row.try_get::<i64, _>(column)?))
    };
    Ok(StatementRecord {
        distributor_id: row.try_get("distributor_id")?,
        month: row.try_get("month")?,
        activity: Activity {
            earned: fen("earned_fen")?,
            released: fen("released_fen")?,
            clawed_back: fen("clawed_back_fen")?,
            team_bonus: fen("team_bonus_fen")?,
            withdrawn: fen("withdrawn_fen")?,
            own_sales: fen("own_sales_fen")?,
            team_sales: fen("team_sales_fen")?,
        },
        pending: fen("pending_fen")?,
        available: fen("available_fen")?,
        withdrawing: fen("withdrawing_fen")?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
    })
}

fn rate_from_db(text: &str) -> Result<Rate, StoreError> {
    rust_decimal::Decimal::from_str_exact(text)
        .ok()
        .and_then(|fraction| Rate::from_fraction(fraction).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("team bonus rate {text:?}")))
}

fn bonus_from_row(row: &DbRow) -> Result<TeamBonusRecord, StoreError> {
    let fen = |column: &str| -> Result<Money, StoreError> {
        Ok(Money::from_fen(row.try_get::<i64, _>(column)?))
    };
    Ok(TeamBonusRecord {
        distributor_id: row.try_get("distributor_id")?,
        month: row.try_get("month")?,
        own_sales: fen("own_sales_fen")?,
        team_sales: fen("team_sales_fen")?,
        threshold: fen("threshold_fen")?,
        rate: rate_from_db(&row.try_get::<String, _>("rate")?)?,
        amount: fen("amount_fen")?,
        plan_version: row.try_get("plan_version")?,
        transfer_id: row.try_get("transfer_id")?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
    })
}

/// Adds a ledger movement of `kind` to the figure it belongs to.
fn add_movement(activity: &mut Activity, kind: &str, amount: Money) -> Result<(), StoreError> {
    let figure = match kind {
        "commission_released" => &mut activity.released,
        "commission_clawed_back" => &mut activity.clawed_back,
        "team_bonus" => &mut activity.team_bonus,
        // A bounce comes back as a negative amount withdrawn.
        "withdrawal_paid" | "withdrawal_bounced" => &mut activity.withdrawn,
        other => return Err(StoreError::Corrupt(format!("movement kind {other:?}"))),
    };
    *figure = figure
        .checked_add(amount)
        .ok_or_else(|| StoreError::Corrupt("a month's figure overflows".to_owned()))?;
    Ok(())
}

macro_rules! statement_columns {
    () => {
        concat!(
            "distributor_id, month, earned_fen, released_fen, clawed_back_fen, team_bonus_fen, withdrawn_fen, ",
            "own_sales_fen, team_sales_fen, pending_fen, available_fen, withdrawing_fen, created_at"
        )
    };
}

macro_rules! bonus_columns {
    () => {
        concat!(
            "distributor_id, month, own_sales_fen, team_sales_fen, threshold_fen, rate, amount_fen, ",
            "plan_version, transfer_id, created_at"
        )
    };
}

impl Repo {
    /// Every distributor's figures for `[from, to)` (a local month), with
    /// the team bonus left at zero: the close decides it. Distributors with
    /// nothing in the span are absent.
    pub async fn month_activity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<String, Activity>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut activity: BTreeMap<String, Activity> = BTreeMap::new();
        let sales: Vec<(String, i64, i64)> = sqlx::query_as(settled_sales_sql!(
            orders: "", leader: "", select: "", by: ""
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .fetch_all(&mut *conn)
        .await?;
        for (leader, own, team) in sales {
            let entry = activity.entry(leader).or_default();
            entry.own_sales = Money::from_fen(own);
            entry.team_sales = Money::from_fen(team);
        }
        let earned: Vec<(String, i64)> = sqlx::query_as(order_step_sql!(
            from: orders_from!("pending"), account: "pending", kind: "commission_pending",
            time: "o.confirmed_at", select: "", by: ""
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .fetch_all(&mut *conn)
        .await?;
        for (distributor, fen) in earned {
            activity.entry(distributor).or_default().earned = Money::from_fen(fen);
        }
        let released: Vec<(String, i64)> = sqlx::query_as(order_step_sql!(
            from: orders_from!("release"), account: "available", kind: "commission_released",
            time: "o.release_at", select: "", by: ""
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .fetch_all(&mut *conn)
        .await?;
        for (distributor, fen) in released {
            activity.entry(distributor).or_default().released = Money::from_fen(fen);
        }
        let moved: Vec<(String, String, i64)> =
            sqlx::query_as(movements_sql!(accounts: "", select: "", by: ""))
                .bind(DbTime(from))
                .bind(DbTime(to))
                .fetch_all(&mut *conn)
                .await?;
        for (distributor, kind, fen) in moved {
            add_movement(
                activity.entry(distributor).or_default(),
                &kind,
                Money::from_fen(fen),
            )?;
        }
        activity.retain(|_, figures| !figures.is_empty());
        Ok(activity)
    }

    /// One distributor's movements in `[from, to)`, each at its time.
    pub async fn movements(
        &self,
        distributor: &DistributorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Movements, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let pending_account =
            ledger::AccountId::Distributor(distributor.clone(), ledger::Bucket::Pending)
                .to_string();
        let earned: Vec<(String, DbTime, i64)> = sqlx::query_as(order_step_sql!(
            from: account_from!(), account: "pending", kind: "commission_pending",
            time: "o.confirmed_at", select: ", o.confirmed_at", by: ", o.confirmed_at"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(&pending_account)
        .fetch_all(&mut *conn)
        .await?;
        let available_account =
            ledger::AccountId::Distributor(distributor.clone(), ledger::Bucket::Available)
                .to_string();
        let released: Vec<(String, DbTime, i64)> = sqlx::query_as(order_step_sql!(
            from: account_from!(), account: "available", kind: "commission_released",
            time: "o.release_at", select: ", o.release_at", by: ", o.release_at"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(&available_account)
        .fetch_all(&mut *conn)
        .await?;
        let ledger: Vec<(String, String, DbTime, i64)> = sqlx::query_as(movements_sql!(
            accounts: " and a.owner_distributor_id = $3",
            select: ", t.created_at",
            by: ", t.created_at"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(distributor.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let settled: Vec<(String, DbTime, i64, i64)> = sqlx::query_as(settled_sales_sql!(
            orders: " and (o.distributor_id = $3 or d.referrer_id = $3 or d.upline_2 = $3)",
            leader: " where leader = $3",
            select: ", release_at",
            by: ", release_at"
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(distributor.as_str())
        .fetch_all(&mut *conn)
        .await?;
        Ok(Movements {
            earned: earned
                .into_iter()
                .map(|(_, at, fen)| (at.0, Money::from_fen(fen)))
                .collect(),
            ledger: released
                .into_iter()
                .map(|(_, at, fen)| (at.0, "commission_released".to_owned(), Money::from_fen(fen)))
                .chain(
                    ledger
                        .into_iter()
                        .map(|(_, kind, at, fen)| (at.0, kind, Money::from_fen(fen))),
                )
                .collect(),
            settled: settled
                .into_iter()
                .map(|(_, at, own, team)| (at.0, Money::from_fen(own), Money::from_fen(team)))
                .collect(),
        })
    }

    /// One distributor's own and team settled sales, lifetime.
    pub async fn lifetime_settled_sales(
        &self,
        distributor: &DistributorId,
    ) -> Result<(Money, Money), StoreError> {
        let (from, to) = all_time();
        let row: Option<(String, i64, i64)> = sqlx::query_as(settled_sales_sql!(
            orders: " and (o.distributor_id = $3 or d.referrer_id = $3 or d.upline_2 = $3)",
            leader: " where leader = $3",
            select: "",
            by: ""
        ))
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(distributor.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or((Money::ZERO, Money::ZERO), |(_, own, team)| {
            (Money::from_fen(own), Money::from_fen(team))
        }))
    }

    /// A distributor's level-1 sales this tier period (`commission_totals`).
    pub async fn tier_sales(
        &self,
        distributor: &DistributorId,
        period: &str,
    ) -> Result<Money, StoreError> {
        let fen: Option<i64> = sqlx::query_scalar(
            "select level1_sales_fen from commission_totals where distributor_id = $1 and period = $2",
        )
        .bind(distributor.as_str())
        .bind(period)
        .fetch_optional(&self.pool)
        .await?;
        Ok(Money::from_fen(fen.unwrap_or(0)))
    }

    /// Starts `month`'s close, or finds the one started before.
    pub async fn begin_month_close(
        &self,
        month: &str,
        plan_version: i64,
        now: DateTime<Utc>,
    ) -> Result<MonthCloseRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into month_closes (month, started_at, plan_version, created_at) values ($1, $2, $3, $2) ",
            "on conflict (month) do nothing"
        ))
        .bind(month)
        .bind(DbTime(now))
        .bind(plan_version)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("select * from month_closes where month = $1")
            .bind(month)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        month_close_from_row(&row)
    }

    pub async fn month_close(&self, month: &str) -> Result<Option<MonthCloseRecord>, StoreError> {
        let row = sqlx::query("select * from month_closes where month = $1")
            .bind(month)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(month_close_from_row).transpose()
    }

    /// The months whose close finished, from `first` (`YYYY-MM`) on.
    pub async fn finished_month_closes(&self, first: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "select month from month_closes where month >= $1 and finished_at is not null order by month",
        )
        .bind(first)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The first instant anything that a statement reports could have happened:
    /// the oldest distributor's creation (`None` on an empty shop).
    pub async fn first_activity(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let first: Option<DbTime> = sqlx::query_scalar("select min(created_at) from distributors")
            .fetch_one(&self.pool)
            .await?;
        Ok(first.map(|at| at.0))
    }

    /// The distributors that already have `month`'s statement.
    pub async fn closed_distributors(&self, month: &str) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("select distributor_id from monthly_statements where month = $1")
                .bind(month)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().collect())
    }

    /// Every distributor cleared (清退) now: the month close pays them no
    /// team bonus, as a cleared distributor earns nothing new.
    pub async fn cleared_distributors(&self) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("select id from distributors where status = 'cleared'")
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().collect())
    }

    /// Closes one batch of distributors for `month` in one transaction: each
    /// one's team bonus (ledger transfer and explained row) and statement,
    /// with the balances after the bonus; and the close's counts. A
    /// distributor that has its statement already (an earlier run, or
    /// another process) is skipped whole.
    pub async fn close_month_batch(
        &self,
        month: &str,
        plan_version: i64,
        batch: &[ClosingDistributor],
        now: DateTime<Utc>,
    ) -> Result<BatchOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut done: HashSet<String> = HashSet::new();
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(
                "select distributor_id from monthly_statements where month = ",
            );
            select.push_bind(month).push(" and distributor_id in (");
            let mut ids = select.separated(", ");
            for closing in chunk {
                ids.push_bind(closing.distributor_id.as_str());
            }
            select.push(")");
            let found: Vec<String> = select.build_query_scalar().fetch_all(&mut *tx).await?;
            done.extend(found);
        }
        let todo: Vec<&ClosingDistributor> = batch
            .iter()
            .filter(|closing| !done.contains(closing.distributor_id.as_str()))
            .collect();
        if todo.is_empty() {
            tx.commit().await?;
            return Ok(BatchOutcome::default());
        }
        let mut transfers = Vec::new();
        let mut paid = Vec::new();
        for closing in &todo {
            if let Some(bonus) = &closing.bonus {
                transfers.push(
                    ledger::team_bonus(&closing.distributor_id, month, bonus.amount)
                        .map_err(|error| StoreError::Corrupt(format!("team bonus: {error}")))?,
                );
                paid.push((*closing, bonus));
            }
        }
        let outcomes = apply_transfers(&mut tx, &transfers, now).await?;
        let mut outcome = BatchOutcome::default();
        for chunk in paid
            .iter()
            .zip(&outcomes)
            .collect::<Vec<_>>()
            .chunks(ROWS_PER_STATEMENT)
        {
            let mut insert = QueryBuilder::<Db>::new(concat!(
                "insert into team_bonuses (",
                bonus_columns!(),
                ") "
            ));
            insert.push_values(chunk, |mut row, ((closing, bonus), transferred)| {
                let (TransferOutcome::Applied { transfer_id }
                | TransferOutcome::AlreadyApplied { transfer_id }) = transferred;
                row.push_bind(closing.distributor_id.as_str())
                    .push_bind(month)
                    .push_bind(bonus.own_sales.fen())
                    .push_bind(bonus.team_sales.fen())
                    .push_bind(bonus.threshold.fen())
                    .push_bind(rate_to_db(bonus.rate))
                    .push_bind(bonus.amount.fen())
                    .push_bind(plan_version)
                    .push_bind(*transfer_id)
                    .push_bind(DbTime(now));
            });
            insert.push(" on conflict (distributor_id, month) do nothing");
            insert.build().execute(&mut *tx).await?;
        }
        for (_, bonus) in &paid {
            outcome.bonuses += 1;
            outcome.bonus_total = outcome
                .bonus_total
                .checked_add(bonus.amount)
                .ok_or_else(|| StoreError::Corrupt("the month's bonuses overflow".to_owned()))?;
        }
        for chunk in todo.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(
                "select owner_distributor_id, kind, balance_fen from ledger_accounts where owner_distributor_id in (",
            );
            let mut ids = select.separated(", ");
            for closing in chunk {
                ids.push_bind(closing.distributor_id.as_str());
            }
            select.push(")");
            let rows: Vec<(String, String, i64)> =
                select.build_query_as().fetch_all(&mut *tx).await?;
            let mut balances: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (owner, kind, fen) in rows {
                balances.insert((owner, kind), fen);
            }
            let balance = |id: &DistributorId, kind: &str| {
                balances
                    .get(&(id.as_str().to_owned(), kind.to_owned()))
                    .copied()
                    .unwrap_or(0)
            };
            let mut insert = QueryBuilder::<Db>::new(concat!(
                "insert into monthly_statements (",
                statement_columns!(),
                ") "
            ));
            insert.push_values(chunk, |mut row, closing| {
                let figures = &closing.activity;
                let bonus = closing.bonus.as_ref().map_or(Money::ZERO, |b| b.amount);
                row.push_bind(closing.distributor_id.as_str())
                    .push_bind(month)
                    .push_bind(figures.earned.fen())
                    .push_bind(figures.released.fen())
                    .push_bind(figures.clawed_back.fen())
                    .push_bind(bonus.fen())
                    .push_bind(figures.withdrawn.fen())
                    .push_bind(figures.own_sales.fen())
                    .push_bind(figures.team_sales.fen())
                    .push_bind(balance(&closing.distributor_id, "pending"))
                    .push_bind(balance(&closing.distributor_id, "available"))
                    .push_bind(balance(&closing.distributor_id, "withdrawing"))
                    .push_bind(DbTime(now));
            });
            insert.push(" on conflict (distributor_id, month) do nothing");
            insert.build().execute(&mut *tx).await?;
        }
        outcome.statements = i64::try_from(todo.len()).unwrap_or(i64::MAX);
        sqlx::query(concat!(
            "update month_closes set statements = statements + $2, bonuses = bonuses + $3, ",
            "bonus_fen = bonus_fen + $4 where month = $1"
        ))
        .bind(month)
        .bind(outcome.statements)
        .bind(outcome.bonuses)
        .bind(outcome.bonus_total.fen())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Marks `month`'s close finished (once; a later call changes nothing).
    pub async fn finish_month_close(
        &self,
        month: &str,
        now: DateTime<Utc>,
    ) -> Result<MonthCloseRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "update month_closes set finished_at = $2 where month = $1 and finished_at is null",
        )
        .bind(month)
        .bind(DbTime(now))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("select * from month_closes where month = $1")
            .bind(month)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        month_close_from_row(&row)
    }

    /// A distributor's statements, newest month first.
    pub async fn statements(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            statement_columns!(),
            " from monthly_statements where distributor_id = $1 order by month desc limit $2"
        ))
        .bind(distributor.as_str())
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(statement_from_row).collect()
    }

    pub async fn statement(
        &self,
        distributor: &DistributorId,
        month: &str,
    ) -> Result<Option<StatementRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            statement_columns!(),
            " from monthly_statements where distributor_id = $1 and month = $2"
        ))
        .bind(distributor.as_str())
        .bind(month)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(statement_from_row).transpose()
    }

    /// A distributor's team bonuses, newest month first.
    pub async fn team_bonuses(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<TeamBonusRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            bonus_columns!(),
            " from team_bonuses where distributor_id = $1 order by month desc limit $2"
        ))
        .bind(distributor.as_str())
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bonus_from_row).collect()
    }
}
