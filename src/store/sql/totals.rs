//! The running totals the commission rules read at ingest
//! (`commission_totals`: a distributor's level-1 sales per month and
//! earnings per day; `buyer_day_orders`: a buyer's orders per day). They are
//! kept by addition in the transaction of the orders or refund that move
//! them, so a rule costs one keyed read however long the shop has run.
//!
//! Lock order: on PostgreSQL the rows are locked in key order, and before
//! any ledger account, in every transaction that touches them (ingest and
//! refund), so two writers cannot wait on each other.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{QueryBuilder, Row};

use super::dialect::{Conn, Db, ROWS_PER_STATEMENT};
use crate::domain::money::Money;
use crate::store::error::StoreError;
use crate::store::records::TotalsDelta;

/// The keys a batch reads: (distributor, period) and (buyer, day).
#[derive(Debug, Default)]
pub(super) struct TotalsToRead {
    pub(super) distributor_periods: BTreeSet<(String, String)>,
    pub(super) buyer_days: BTreeSet<(String, String)>,
}

/// Reads and locks the totals of `keys`, creating missing rows so that
/// there is a row to lock: one upsert per table that leaves every value as
/// it was and returns it (on PostgreSQL the upsert locks each row, in the
/// key order the rows are listed in; SQLite has one writer anyway). One
/// statement instead of an insert and a `select … for update`: ingest under
/// the v2 rules pays a round trip less per table and batch.
pub(super) async fn lock_and_read(
    conn: &mut Conn,
    keys: &TotalsToRead,
) -> Result<TotalsDelta, StoreError> {
    let mut stored = TotalsDelta::default();
    let distributor_periods: Vec<&(String, String)> = keys.distributor_periods.iter().collect();
    for chunk in distributor_periods.chunks(ROWS_PER_STATEMENT) {
        let mut lock =
            QueryBuilder::<Db>::new("insert into commission_totals (distributor_id, period) ");
        lock.push_values(chunk, |mut row, (distributor, period)| {
            row.push_bind(distributor.as_str())
                .push_bind(period.as_str());
        });
        lock.push(concat!(
            " on conflict (distributor_id, period) do update ",
            "set level1_sales_fen = commission_totals.level1_sales_fen ",
            "returning distributor_id, period, level1_sales_fen, earned_fen"
        ));
        for row in lock.build().fetch_all(&mut *conn).await? {
            let key = (row.try_get("distributor_id")?, row.try_get("period")?);
            stored.level1_sales.insert(
                key.clone(),
                Money::from_fen(row.try_get("level1_sales_fen")?),
            );
            stored
                .earned
                .insert(key, Money::from_fen(row.try_get("earned_fen")?));
        }
    }
    let buyer_days: Vec<&(String, String)> = keys.buyer_days.iter().collect();
    for chunk in buyer_days.chunks(ROWS_PER_STATEMENT) {
        let mut lock =
            QueryBuilder::<Db>::new("insert into buyer_day_orders (buyer_id, day, orders) ");
        lock.push_values(chunk, |mut row, (buyer, day)| {
            row.push_bind(buyer.as_str())
                .push_bind(day.as_str())
                .push_bind(0_i64);
        });
        lock.push(concat!(
            " on conflict (buyer_id, day) do update set orders = buyer_day_orders.orders ",
            "returning buyer_id, day, orders"
        ));
        for row in lock.build().fetch_all(&mut *conn).await? {
            stored.buyer_orders.insert(
                (row.try_get("buyer_id")?, row.try_get("day")?),
                row.try_get::<i64, _>("orders")?,
            );
        }
    }
    Ok(stored)
}

/// Adds `delta` to the totals, in key order.
pub(super) async fn add(conn: &mut Conn, delta: &TotalsDelta) -> Result<(), StoreError> {
    let mut by_key: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for ((distributor, period), amount) in &delta.level1_sales {
        by_key.entry((distributor, period)).or_default().0 += amount.fen();
    }
    for ((distributor, period), amount) in &delta.earned {
        by_key.entry((distributor, period)).or_default().1 += amount.fen();
    }
    let rows: Vec<_> = by_key
        .into_iter()
        .filter(|(_, (sales, earned))| *sales != 0 || *earned != 0)
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = QueryBuilder::<Db>::new(
            "insert into commission_totals (distributor_id, period, level1_sales_fen, earned_fen) ",
        );
        upsert.push_values(
            chunk,
            |mut row, ((distributor, period), (sales, earned))| {
                row.push_bind(*distributor)
                    .push_bind(*period)
                    .push_bind(*sales)
                    .push_bind(*earned);
            },
        );
        upsert.push(concat!(
            " on conflict (distributor_id, period) do update set ",
            "level1_sales_fen = commission_totals.level1_sales_fen + excluded.level1_sales_fen, ",
            "earned_fen = commission_totals.earned_fen + excluded.earned_fen"
        ));
        upsert.build().execute(&mut *conn).await?;
    }
    let buyers: BTreeMap<&(String, String), i64> = delta
        .buyer_orders
        .iter()
        .filter(|(_, orders)| **orders != 0)
        .map(|(key, orders)| (key, *orders))
        .collect();
    let buyers: Vec<_> = buyers.into_iter().collect();
    for chunk in buyers.chunks(ROWS_PER_STATEMENT) {
        let mut upsert =
            QueryBuilder::<Db>::new("insert into buyer_day_orders (buyer_id, day, orders) ");
        upsert.push_values(chunk, |mut row, ((buyer, day), orders)| {
            row.push_bind(buyer.as_str())
                .push_bind(day.as_str())
                .push_bind(*orders);
        });
        upsert.push(
            " on conflict (buyer_id, day) do update set orders = buyer_day_orders.orders + excluded.orders",
        );
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(())
}
