//! Order settlement rules (§2.1): when a confirmed order's hold ends, how a
//! refund is spread over the order's items, and which commission lines change
//! when the commission is recomputed after it.
//!
//! ```text
//! placed_at, confirmed_at ─► check_order_times(now) ─► refused, or:
//! confirmed_at ─► local date ─► + hold_business_days ─► 00:00 local = release_at
//!
//! refund ─► allocate_refund(item balances) ─► net items ─► commission::compute
//!        ─► reconcile(recorded lines, fresh lines) ─► LineChanges to post
//! ```
//!
//! Pure: the calendar, the balances and the lines come in, dates and amounts
//! go out. Money stays in integer fen throughout; no step rounds.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::UnknownName;

use crate::domain::calendar::BusinessCalendar;
use crate::domain::commission::CommissionLine;
use crate::domain::ids::DistributorId;
use crate::domain::money::{Money, Rate};

/// How far past a skipped local midnight [`release_at`] looks for the first
/// instant that exists. The longest jump on record is a whole day
/// (Pacific/Apia skipped 2011-12-30); twice that leaves room to spare.
const MAX_GAP_MINUTES: i64 = 48 * 60;

/// How far ahead of the workflow clock an order's times may run: a shop's
/// clock may be a little fast, but a confirmation from further in the future
/// is a bug or an attempt to shape the hold (a far-future `confirmed_at`
/// once released at once).
pub const MAX_ORDER_TIME_AHEAD: TimeDelta = TimeDelta::days(1);

/// Which of an order's times is out of range, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderTimeError {
    #[error(
        "{field} {at} is more than a day ahead of now ({now}); send the time the buyer confirmed, in RFC 3339 with its offset"
    )]
    Ahead {
        field: &'static str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error(
        "{field} {at} is more than {max_age_days} days before now ({now}); such an order is past settling here (the limit is the order_max_age_days setting)"
    )]
    TooOld {
        field: &'static str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        max_age_days: i64,
    },
}

impl OrderTimeError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            OrderTimeError::Ahead { field, .. } | OrderTimeError::TooOld { field, .. } => field,
        }
    }
}

/// Refuses an order whose `placed_at` or `confirmed_at` lies more than
/// [`MAX_ORDER_TIME_AHEAD`] after `now` or more than `max_age` before it.
/// `confirmed_at` is checked first: it is the one that starts the hold.
pub fn check_order_times(
    placed_at: DateTime<Utc>,
    confirmed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: TimeDelta,
) -> Result<(), OrderTimeError> {
    for (field, at) in [("confirmed_at", confirmed_at), ("placed_at", placed_at)] {
        // Compared as differences from `now`, so no bound needs to be a
        // representable instant of its own.
        if at.signed_duration_since(now) > MAX_ORDER_TIME_AHEAD {
            return Err(OrderTimeError::Ahead { field, at, now });
        }
        if now.signed_duration_since(at) > max_age {
            return Err(OrderTimeError::TooOld {
                field,
                at,
                now,
                max_age_days: max_age.num_days(),
            });
        }
    }
    Ok(())
}

/// When an order confirmed at `confirmed_at` leaves its hold: 00:00 in
/// `time_zone` of the `hold_business_days`-th business day after the local
/// date of `confirmed_at` ("T+n"; with 0, midnight starting the confirmation's
/// own local date, even a day off).
///
/// The local date is what counts: 23:30 in Beijing is still that day though
/// it is 15:30 UTC, and 00:30 in Beijing is the next day though UTC is still
/// on the previous one.
///
/// Zones with daylight saving time: if local midnight happens twice (clocks
/// set back across it) the release is the first of the two; if it does not
/// happen at all (clocks jump over it) the release is the first instant that
/// does exist after it, e.g. 01:00 in Havana on 2024-03-10. Asia/Shanghai
/// has neither.
pub fn release_at(
    confirmed_at: DateTime<Utc>,
    calendar: &BusinessCalendar,
    time_zone: Tz,
    hold_business_days: u32,
) -> DateTime<Utc> {
    let confirmed_on = confirmed_at.with_timezone(&time_zone).date_naive();
    let release_on = calendar.add_business_days(confirmed_on, hold_business_days);
    start_of_day(release_on, time_zone)
}

/// Whether the release time of an order confirmed at `confirmed_at` rests
/// on a provisional year of the calendar (one whose notice is not applied
/// yet): every day walked over from the local confirmation date to the
/// release date counts, so a hold ending on 4 January over a provisional New
/// Year is provisional though it was confirmed in a covered December.
pub fn release_is_provisional(
    confirmed_at: DateTime<Utc>,
    release_at: DateTime<Utc>,
    calendar: &BusinessCalendar,
    time_zone: Tz,
) -> bool {
    let confirmed_on = confirmed_at.with_timezone(&time_zone).date_naive();
    let release_on = release_at.with_timezone(&time_zone).date_naive();
    (confirmed_on.year()..=release_on.year()).any(|year| calendar.is_provisional(year))
}

/// The local day `at` falls on in `time_zone`, as the instants it starts
/// and ends (exclusive): every order confirmed inside it has the same hold.
pub fn local_day_of(at: DateTime<Utc>, time_zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = at.with_timezone(&time_zone).date_naive();
    let next = day
        .succ_opt()
        .expect("a confirmation date before NaiveDate::MAX");
    (start_of_day(day, time_zone), start_of_day(next, time_zone))
}

/// The first instant of 1 January of `year` in `time_zone`.
///
/// # Panics
/// For a year chrono cannot represent.
pub fn start_of_year(year: i32, time_zone: Tz) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(year, 1, 1).expect("a year chrono can represent");
    start_of_day(first, time_zone)
}

/// The first instant at or after 00:00 of `date` in `time_zone`.
///
/// A gap in local time has no instant to name, so this walks forward a
/// minute at a time to the first local time that exists and takes its
/// earliest instant. Zone transitions fall on whole minutes, so that is the
/// transition itself.
pub fn start_of_day(date: NaiveDate, time_zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    // Bounded: no zone has skipped more than MAX_GAP_MINUTES.
    for minute in 0..=MAX_GAP_MINUTES {
        let local = midnight + TimeDelta::minutes(minute);
        if let Some(instant) = time_zone.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
    }
    panic!("{time_zone} skips more than {MAX_GAP_MINUTES} minutes after {midnight}");
}

/// What is left to refund on one item of an order: what was paid for it, and
/// how much of that earlier refunds already returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemBalance {
    pub sku: String,
    pub paid: Money,
    pub refunded: Money,
}

impl ItemBalance {
    /// `paid − refunded`; an error if either is negative or more was
    /// refunded than paid.
    pub fn remaining(&self) -> Result<Money, RefundError> {
        if self.paid.is_negative() || self.refunded.is_negative() || self.refunded > self.paid {
            return Err(RefundError::InvalidBalance {
                sku: self.sku.clone(),
                paid: self.paid,
                refunded: self.refunded,
            });
        }
        self.paid
            .checked_sub(self.refunded)
            .ok_or(RefundError::Overflow)
    }
}

/// Why a refund could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    /// The refund amount is zero or negative.
    #[error("refund amount must be greater than zero")]
    NotPositive,
    /// The refund names a sku the order has no item for.
    #[error("the order has no item with this sku")]
    UnknownSku,
    /// The refund asks for more than is left: of the named sku's items, or of
    /// the whole order when no sku is named.
    #[error("refund exceeds the {remaining} left to refund")]
    ExceedsRemaining { remaining: Money },
    /// A stored balance that cannot be (a negative amount, or more refunded
    /// than paid): a bug upstream, reported rather than papered over.
    #[error("item {sku} shows {refunded} refunded of {paid} paid")]
    InvalidBalance {
        sku: String,
        paid: Money,
        refunded: Money,
    },
    #[error("refund arithmetic overflowed")]
    Overflow,
}

/// What is left to refund on the whole order: the checked sum of each item's
/// [`ItemBalance::remaining`].
pub fn remaining(items: &[ItemBalance]) -> Result<Money, RefundError> {
    items.iter().try_fold(Money::ZERO, |total, item| {
        total
            .checked_add(item.remaining()?)
            .ok_or(RefundError::Overflow)
    })
}

/// How much of a refund of `amount` comes off each item: one share per item,
/// in the order of `items`, summing exactly to `amount`, none negative and
/// none more than what is left on its item.
///
/// - With `sku`: from the items with that sku only, in item order, each
///   emptied before the next is touched.
/// - Without: from every item in proportion to what is left on it, by the
///   largest-remainder method: each share is first rounded down to the fen,
///   then the fen still missing go one each to the items with the largest
///   fractional remainders (ties to the earlier item). Every share is within
///   one fen of its exact proportion.
pub fn allocate_refund(
    items: &[ItemBalance],
    amount: Money,
    sku: Option<&str>,
) -> Result<Vec<Money>, RefundError> {
    if amount <= Money::ZERO {
        return Err(RefundError::NotPositive);
    }
    let balances = items
        .iter()
        .map(ItemBalance::remaining)
        .collect::<Result<Vec<_>, _>>()?;
    let shares = match sku {
        Some(sku) => allocate_to_sku(items, &balances, amount, sku)?,
        None => allocate_proportionally(&balances, amount)?,
    };

    assert_eq!(shares.len(), items.len(), "one refund share per item");
    assert_eq!(
        Money::checked_sum(shares.iter().copied()),
        Some(amount),
        "refund shares {shares:?} do not add up to {amount}"
    );
    for (share, balance) in shares.iter().zip(&balances) {
        assert!(
            !share.is_negative() && share <= balance,
            "refund share {share} is outside 0..={balance}"
        );
    }
    Ok(shares)
}

fn allocate_to_sku(
    items: &[ItemBalance],
    balances: &[Money],
    amount: Money,
    sku: &str,
) -> Result<Vec<Money>, RefundError> {
    let matching: Vec<usize> = (0..items.len())
        .filter(|&index| items[index].sku == sku)
        .collect();
    if matching.is_empty() {
        return Err(RefundError::UnknownSku);
    }
    let available = Money::checked_sum(matching.iter().map(|&index| balances[index]))
        .ok_or(RefundError::Overflow)?;
    if amount > available {
        return Err(RefundError::ExceedsRemaining {
            remaining: available,
        });
    }

    let mut shares = vec![Money::ZERO; items.len()];
    let mut left = amount;
    for index in matching {
        let take = balances[index].min(left);
        shares[index] = take;
        left = left.checked_sub(take).ok_or(RefundError::Overflow)?;
    }
    Ok(shares)
}

fn allocate_proportionally(balances: &[Money], amount: Money) -> Result<Vec<Money>, RefundError> {
    let total = Money::checked_sum(balances.iter().copied()).ok_or(RefundError::Overflow)?;
    if amount > total {
        return Err(RefundError::ExceedsRemaining { remaining: total });
    }

    // In i128 the products below cannot overflow (each factor < 2^63), and
    // `0 < amount <= total` makes every floor at most its item's balance.
    let amount_fen = i128::from(amount.fen());
    let total_fen = i128::from(total.fen());
    let mut shares_fen = Vec::with_capacity(balances.len());
    let mut remainders = Vec::with_capacity(balances.len());
    for balance in balances {
        let exact = amount_fen
            .checked_mul(i128::from(balance.fen()))
            .ok_or(RefundError::Overflow)?;
        shares_fen.push(i64::try_from(exact / total_fen).map_err(|_| RefundError::Overflow)?);
        remainders.push(exact % total_fen);
    }

    // The remainders add up to `leftover × total` and each is below `total`,
    // so more than `leftover` items have a positive remainder: the fen handed
    // out below never land on an item that is already full.
    let floored: i128 = shares_fen.iter().map(|&fen| i128::from(fen)).sum();
    let leftover = usize::try_from(amount_fen - floored).map_err(|_| RefundError::Overflow)?;
    assert!(
        leftover < balances.len().max(1),
        "largest-remainder leftover {leftover} fen for {} items",
        balances.len()
    );
    let mut by_remainder: Vec<usize> = (0..balances.len()).collect();
    by_remainder.sort_by_key(|&index| (Reverse(remainders[index]), index));
    for &index in &by_remainder[..leftover] {
        assert!(remainders[index] > 0, "leftover fen given to a full item");
        shares_fen[index] += 1;
    }
    Ok(shares_fen.into_iter().map(Money::from_fen).collect())
}

/// A commission line as already recorded for an order: what was posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLine {
    pub beneficiary: DistributorId,
    pub level: u8,
    pub rate: Rate,
    pub base: Money,
    pub amount: Money,
}

impl From<&CommissionLine> for RecordedLine {
    fn from(line: &CommissionLine) -> RecordedLine {
        RecordedLine {
            beneficiary: line.beneficiary.clone(),
            level: line.level,
            rate: line.rate,
            base: line.base,
            amount: line.amount,
        }
    }
}

/// One commission line whose amount or base a recomputation changed, or
/// which it added or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineChange {
    pub beneficiary: DistributorId,
    pub level: u8,
    pub rate: Rate,
    /// The fresh line's base; zero when the line vanished.
    pub base: Money,
    /// Zero when the line is new.
    pub old_amount: Money,
    /// Zero when the line vanished.
    pub new_amount: Money,
}

impl LineChange {
    /// `new_amount − old_amount`: negative when the beneficiary gives money
    /// back. `None` on overflow.
    pub fn difference(&self) -> Option<Money> {
        self.new_amount.checked_sub(self.old_amount)
    }
}

/// Records `beneficiary` as the one for `level`, or checks it is the one
/// already recorded.
fn pin_beneficiary<'a>(
    pinned: &mut BTreeMap<u8, &'a DistributorId>,
    level: u8,
    beneficiary: &'a DistributorId,
) {
    let first = *pinned.entry(level).or_insert(beneficiary);
    assert_eq!(
        first, beneficiary,
        "level {level} of one order has two beneficiaries"
    );
}

/// The changes that take an order's `recorded` commission lines to the
/// `fresh` ones (from [`crate::domain::commission::compute`] on the net
/// items), matching lines by (level, rate).
///
/// Every line of either side whose amount or base differs appears once (a
/// base can move while the rounded amount stays: the line must still show
/// its true base); a line only
/// in `fresh` always appears (with `old_amount` zero), a line only in
/// `recorded` appears with `new_amount` and `base` zero. Unchanged lines are
/// left out, so no change at all gives an empty list. Ordered by level, then
/// by rate, highest first, as `compute` orders its lines.
///
/// # Panics
/// If either side holds two lines with the same (level, rate), or the two
/// sides name different beneficiaries for one level: an order's beneficiary
/// chain is pinned when it is confirmed, so either is a bug in the caller.
pub fn reconcile(recorded: &[RecordedLine], fresh: &[CommissionLine]) -> Vec<LineChange> {
    type Pair<'a> = (Option<&'a RecordedLine>, Option<&'a CommissionLine>);
    let mut by_key: BTreeMap<(u8, Reverse<Rate>), Pair<'_>> = BTreeMap::new();
    let mut beneficiaries: BTreeMap<u8, &DistributorId> = BTreeMap::new();

    for line in recorded {
        pin_beneficiary(&mut beneficiaries, line.level, &line.beneficiary);
        let slot = by_key.entry((line.level, Reverse(line.rate))).or_default();
        assert!(
            slot.0.replace(line).is_none(),
            "two recorded lines at level {} rate {}",
            line.level,
            line.rate
        );
    }
    for line in fresh {
        pin_beneficiary(&mut beneficiaries, line.level, &line.beneficiary);
        let slot = by_key.entry((line.level, Reverse(line.rate))).or_default();
        assert!(
            slot.1.replace(line).is_none(),
            "two fresh lines at level {} rate {}",
            line.level,
            line.rate
        );
    }

    by_key
        .into_values()
        .filter_map(|pair| match pair {
            (Some(old), Some(new)) => {
                (old.amount != new.amount || old.base != new.base).then(|| LineChange {
                    beneficiary: new.beneficiary.clone(),
                    level: new.level,
                    rate: new.rate,
                    base: new.base,
                    old_amount: old.amount,
                    new_amount: new.amount,
                })
            }
            (Some(old), None) => {
                (!old.amount.is_zero() || !old.base.is_zero()).then(|| LineChange {
                    beneficiary: old.beneficiary.clone(),
                    level: old.level,
                    rate: old.rate,
                    base: Money::ZERO,
                    old_amount: old.amount,
                    new_amount: Money::ZERO,
                })
            }
            (None, Some(new)) => Some(LineChange {
                beneficiary: new.beneficiary.clone(),
                level: new.level,
                rate: new.rate,
                base: new.base,
                old_amount: Money::ZERO,
                new_amount: new.amount,
            }),
            (None, None) => unreachable!("every key comes from a line"),
        })
        .collect()
}

/// Whether a distributor earns commission.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DistributorStatus {
    Active,
    /// 清退: earns no new commission, keeps its balances.
    Cleared,
}

impl DistributorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DistributorStatus::Active => "active",
            DistributorStatus::Cleared => "cleared",
        }
    }

    /// Any name but `cleared` reads as active, as the column's default does.
    pub fn parse(text: &str) -> DistributorStatus {
        match text {
            "cleared" => DistributorStatus::Cleared,
            _ => DistributorStatus::Active,
        }
    }
}

/// Where an order is in the settlement workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Inside the T+3 hold: commission is pending.
    Holding,
    /// Past the hold: commission is available.
    Released,
    /// Fully refunded inside the hold: no commission.
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Holding => "holding",
            OrderState::Released => "released",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<OrderState, UnknownName> {
        match text {
            "holding" => Ok(OrderState::Holding),
            "released" => Ok(OrderState::Released),
            "cancelled" => Ok(OrderState::Cancelled),
            other => Err(UnknownName(format!("order state {other:?}"))),
        }
    }
}

/// Where a commission line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineState {
    Pending,
    Released,
    Cancelled,
}

impl LineState {
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Pending => "pending",
            LineState::Released => "released",
            LineState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<LineState, UnknownName> {
        match text {
            "pending" => Ok(LineState::Pending),
            "released" => Ok(LineState::Released),
            "cancelled" => Ok(LineState::Cancelled),
            other => Err(UnknownName(format!("commission line state {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::commission::{self, Beneficiary, Order, OrderItem};
    use crate::domain::ids::BuyerId;
    use crate::domain::plan::Plan;
    use proptest::prelude::*;

    #[test]
    fn a_local_day_runs_from_midnight_to_midnight_in_the_zone() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        // 23:59:59 and 00:00:00 Beijing time fall on different days.
        assert_eq!(
            local_day_of(at("2026-12-31T15:59:59Z"), shanghai),
            (at("2026-12-30T16:00:00Z"), at("2026-12-31T16:00:00Z"))
        );
        assert_eq!(
            local_day_of(at("2026-12-31T16:00:00Z"), shanghai),
            (at("2026-12-31T16:00:00Z"), at("2027-01-01T16:00:00Z"))
        );
        assert_eq!(start_of_year(2027, shanghai), at("2026-12-31T16:00:00Z"));
        // A day with a clock change is 23 hours long.
        let new_york: Tz = "America/New_York".parse().unwrap();
        let (starts, ends) = local_day_of(at("2026-03-08T12:00:00Z"), new_york);
        assert_eq!(ends - starts, TimeDelta::hours(23));
    }

    #[test]
    fn order_times_within_a_day_ahead_and_the_age_limit_are_accepted() {
        let now = at("2026-12-03T12:00:00Z");
        let age = TimeDelta::days(180);
        assert_eq!(check_order_times(now, now, now, age), Ok(()));
        let edge_ahead = now + MAX_ORDER_TIME_AHEAD;
        assert_eq!(check_order_times(now, edge_ahead, now, age), Ok(()));
        let edge_old = now - age;
        assert_eq!(check_order_times(edge_old, edge_old, now, age), Ok(()));
    }

    #[test]
    fn a_confirmation_one_second_past_a_day_ahead_is_refused_naming_the_field() {
        let now = at("2026-12-03T12:00:00Z");
        let ahead = now + MAX_ORDER_TIME_AHEAD + TimeDelta::seconds(1);
        let error = check_order_times(now, ahead, now, TimeDelta::days(180)).unwrap_err();
        assert_eq!(error.field(), "confirmed_at");
        assert!(matches!(error, OrderTimeError::Ahead { .. }));
    }

    #[test]
    fn far_future_and_ancient_times_are_refused_without_overflow() {
        let now = at("2026-12-03T12:00:00Z");
        let age = TimeDelta::days(180);
        let far = at("9999-12-31T23:59:59Z");
        assert_eq!(
            check_order_times(now, far, now, age).unwrap_err().field(),
            "confirmed_at"
        );
        let end_of_time = DateTime::<Utc>::MAX_UTC;
        assert_eq!(
            check_order_times(now, end_of_time, now, age)
                .unwrap_err()
                .field(),
            "confirmed_at"
        );
        let ancient = DateTime::<Utc>::MIN_UTC;
        let error = check_order_times(ancient, now, now, age).unwrap_err();
        assert_eq!(error.field(), "placed_at");
        assert!(matches!(
            error,
            OrderTimeError::TooOld {
                max_age_days: 180,
                ..
            }
        ));
        let one_second_too_old = now - age - TimeDelta::seconds(1);
        assert_eq!(
            check_order_times(one_second_too_old, now, now, age)
                .unwrap_err()
                .field(),
            "placed_at"
        );
    }

    fn cn() -> BusinessCalendar {
        BusinessCalendar::from_toml_str(
            include_str!("../../workflows/calendars/cn.toml"),
            "cn.toml",
        )
        .expect("cn.toml loads")
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a valid RFC 3339 time")
            .with_timezone(&Utc)
    }

    /// T+3 in Beijing, as the shipped workflow configures it.
    fn t_plus_3(confirmed_at: &str) -> DateTime<Utc> {
        release_at(at(confirmed_at), &cn(), chrono_tz::Asia::Shanghai, 3)
    }

    #[test]
    fn a_hold_reaching_into_a_year_the_file_does_not_cover_is_provisional() {
        let shanghai = chrono_tz::Asia::Shanghai;
        let provisional = |confirmed_at: &str| {
            let confirmed_at = at(confirmed_at);
            let release = release_at(confirmed_at, &cn(), shanghai, 3);
            (
                release,
                release_is_provisional(confirmed_at, release, &cn(), shanghai),
            )
        };
        // Covered 2026 throughout.
        assert_eq!(
            provisional("2026-12-01T10:00:00+08:00"),
            (at("2026-12-04T00:00:00+08:00"), false)
        );
        // Tue 29 Dec: Wed 30, Thu 31, then New Year's Day 2027 (computed)
        // and the weekend: Mon 4 January, provisional.
        assert_eq!(
            provisional("2026-12-29T10:00:00+08:00"),
            (at("2027-01-04T00:00:00+08:00"), true)
        );
        // Before the Spring Festival of 2027 (除夕 Fri 5 Feb to Mon 8 Feb).
        assert_eq!(
            provisional("2027-02-03T10:00:00+08:00"),
            (at("2027-02-10T00:00:00+08:00"), true)
        );
    }

    #[test]
    fn an_order_confirmed_the_thursday_before_spring_festival_2026_releases_the_tuesday_after() {
        // Fri Feb 13, Sat Feb 14 (make-up day), then the holiday to Mon Feb 23.
        let release = t_plus_3("2026-02-12T10:00:00+08:00");
        assert_eq!(release, at("2026-02-24T00:00:00+08:00"));
        assert_eq!(release, at("2026-02-23T16:00:00Z"));
    }

    #[test]
    fn late_evening_in_beijing_counts_as_that_beijing_day_though_utc_says_the_same_day() {
        assert_eq!(
            t_plus_3("2026-02-12T23:30:00+08:00"),
            at("2026-02-23T16:00:00Z")
        );
        assert_eq!(t_plus_3("2026-02-12T15:30:00Z"), at("2026-02-23T16:00:00Z"));
    }

    #[test]
    fn just_after_midnight_in_beijing_counts_as_the_new_day_though_utc_is_still_on_the_old_one() {
        // 16:30Z on Feb 11 is 00:30 on Feb 12 in Beijing.
        assert_eq!(t_plus_3("2026-02-11T16:30:00Z"), at("2026-02-23T16:00:00Z"));
        // A minute before Beijing midnight is still Wed Feb 11: Thu, Fri,
        // then the make-up Saturday.
        assert_eq!(
            t_plus_3("2026-02-11T15:59:00Z"),
            at("2026-02-14T00:00:00+08:00")
        );
    }

    #[test]
    fn an_order_confirmed_the_day_before_national_day_2026_releases_on_the_make_up_saturday() {
        // Thu Oct 8, Fri Oct 9, Sat Oct 10 (make-up day).
        assert_eq!(
            t_plus_3("2026-09-30T12:00:00+08:00"),
            at("2026-10-10T00:00:00+08:00")
        );
        // Confirmed during the holiday: the same three days.
        assert_eq!(
            t_plus_3("2026-10-03T12:00:00+08:00"),
            at("2026-10-10T00:00:00+08:00")
        );
    }

    #[test]
    fn a_friday_order_in_an_ordinary_week_releases_the_following_wednesday_at_midnight() {
        assert_eq!(
            t_plus_3("2026-03-13T18:00:00+08:00"),
            at("2026-03-18T00:00:00+08:00")
        );
    }

    #[test]
    fn a_hold_of_zero_days_releases_at_midnight_starting_the_confirmation_day_even_a_holiday() {
        let shanghai = chrono_tz::Asia::Shanghai;
        assert_eq!(
            release_at(at("2026-03-13T18:00:00+08:00"), &cn(), shanghai, 0),
            at("2026-03-13T00:00:00+08:00")
        );
        assert_eq!(
            release_at(at("2026-02-16T09:00:00+08:00"), &cn(), shanghai, 0),
            at("2026-02-16T00:00:00+08:00")
        );
    }

    #[test]
    fn the_local_date_is_taken_in_the_zone_given_not_the_calendars() {
        // 20:00Z on Thu 2026-03-12 is Thursday afternoon in New York but
        // already Friday morning in Beijing.
        let confirmed_at = at("2026-03-12T20:00:00Z");
        assert_eq!(
            release_at(confirmed_at, &cn(), chrono_tz::America::New_York, 1),
            at("2026-03-13T00:00:00-04:00")
        );
        assert_eq!(
            release_at(confirmed_at, &cn(), chrono_tz::Asia::Shanghai, 1),
            at("2026-03-16T00:00:00+08:00")
        );
    }

    #[test]
    fn a_skipped_local_midnight_releases_at_the_first_instant_that_exists_after_it() {
        // Havana sprang forward from 00:00 CST to 01:00 CDT on Sun 2024-03-10.
        let havana = chrono_tz::America::Havana;
        assert_eq!(
            release_at(at("2024-03-10T12:00:00-04:00"), &cn(), havana, 0),
            at("2024-03-10T01:00:00-04:00")
        );
    }

    #[test]
    fn a_local_midnight_that_happens_twice_releases_at_the_first_of_the_two() {
        // Havana fell back from 01:00 CDT to 00:00 CST on Sun 2023-11-05.
        let havana = chrono_tz::America::Havana;
        assert_eq!(
            release_at(at("2023-11-05T12:00:00-05:00"), &cn(), havana, 0),
            at("2023-11-05T00:00:00-04:00")
        );
    }

    #[test]
    fn a_release_day_a_zone_skipped_entirely_releases_at_the_start_of_the_next_day() {
        // Samoa skipped Fri 2011-12-30: Thu 23:59:59 -10:00 was followed by
        // Sat 00:00 +14:00. 2011 is neither in cn.toml nor under the 2024 rules, so only weekends count.
        let apia = chrono_tz::Pacific::Apia;
        assert_eq!(
            release_at(at("2011-12-29T12:00:00-10:00"), &cn(), apia, 1),
            at("2011-12-31T00:00:00+14:00")
        );
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn fen(amounts: &[&str]) -> Vec<Money> {
        amounts.iter().map(|text| money(text)).collect()
    }

    fn balance(sku: &str, paid: &str, refunded: &str) -> ItemBalance {
        ItemBalance {
            sku: sku.to_owned(),
            paid: money(paid),
            refunded: money(refunded),
        }
    }

    fn three_equal_items() -> Vec<ItemBalance> {
        vec![
            balance("A", "5.00", "0"),
            balance("B", "5.00", "0"),
            balance("C", "5.00", "0"),
        ]
    }

    #[test]
    fn a_proportional_refund_hands_the_leftover_fen_to_the_earliest_of_equal_items() {
        let shares = allocate_refund(&three_equal_items(), money("10.00"), None).unwrap();
        assert_eq!(shares, fen(&["3.34", "3.33", "3.33"]));
    }

    #[test]
    fn a_proportional_refund_is_exact_when_the_proportions_divide_evenly() {
        let items = vec![
            balance("A", "100.00", "0"),
            balance("B", "300.00", "100.00"),
            balance("C", "50.00", "0"),
        ];
        let shares = allocate_refund(&items, money("35.00"), None).unwrap();
        assert_eq!(shares, fen(&["10.00", "20.00", "5.00"]));
    }

    #[test]
    fn leftover_fen_go_to_the_largest_fractional_remainders_not_the_largest_items() {
        // 3 fen over 1, 1 and 2 fen: exact shares 0.75, 0.75 and 1.5.
        let items = vec![
            balance("A", "0.01", "0"),
            balance("B", "0.01", "0"),
            balance("C", "0.02", "0"),
        ];
        let shares = allocate_refund(&items, money("0.03"), None).unwrap();
        assert_eq!(shares, fen(&["0.01", "0.01", "0.01"]));
    }

    #[test]
    fn a_proportional_refund_never_takes_more_than_an_item_has_left() {
        let items = vec![
            balance("A", "100.00", "99.99"),
            balance("B", "100.00", "100.00"),
            balance("C", "0.02", "0"),
        ];
        // Exact shares 0.01 × 2/3 and 0.02 × 2/3: 0.0066… and 0.0133….
        let shares = allocate_refund(&items, money("0.02"), None).unwrap();
        assert_eq!(shares, fen(&["0.01", "0.00", "0.01"]));
        let shares = allocate_refund(&items, money("0.03"), None).unwrap();
        assert_eq!(shares, fen(&["0.01", "0.00", "0.02"]));
    }

    #[test]
    fn a_full_refund_takes_exactly_what_is_left_on_every_item() {
        let items = vec![
            balance("A", "19.99", "5.00"),
            balance("B", "0.01", "0"),
            balance("C", "7.00", "7.00"),
            balance("D", "123.45", "0.45"),
        ];
        let total = remaining(&items).unwrap();
        assert_eq!(total, money("138.00"));
        let shares = allocate_refund(&items, total, None).unwrap();
        assert_eq!(shares, fen(&["14.99", "0.01", "0.00", "123.00"]));
    }

    #[test]
    fn huge_balances_split_without_overflow() {
        let half = Money::from_fen(i64::MAX / 2);
        let items = vec![
            ItemBalance {
                sku: "A".to_owned(),
                paid: half,
                refunded: Money::ZERO,
            },
            ItemBalance {
                sku: "B".to_owned(),
                paid: half,
                refunded: Money::ZERO,
            },
        ];
        let shares = allocate_refund(&items, Money::from_fen(3), None).unwrap();
        assert_eq!(shares, vec![Money::from_fen(2), Money::from_fen(1)]);
        let all = remaining(&items).unwrap();
        assert_eq!(
            allocate_refund(&items, all, None).unwrap(),
            vec![half, half]
        );
    }

    #[test]
    fn a_sku_refund_empties_that_skus_lines_in_order_and_touches_no_other() {
        let items = vec![
            balance("TEA", "30.00", "0"),
            balance("CUP", "50.00", "0"),
            balance("TEA", "20.00", "5.00"),
            balance("TEA", "10.00", "0"),
        ];
        let shares = allocate_refund(&items, money("40.00"), Some("TEA")).unwrap();
        assert_eq!(shares, fen(&["30.00", "0", "10.00", "0"]));
        let shares = allocate_refund(&items, money("55.00"), Some("TEA")).unwrap();
        assert_eq!(shares, fen(&["30.00", "0", "15.00", "10.00"]));
    }

    #[test]
    fn a_sku_refund_skips_a_line_already_refunded_in_full() {
        let items = vec![
            balance("TEA", "30.00", "30.00"),
            balance("TEA", "20.00", "0"),
        ];
        let shares = allocate_refund(&items, money("1.00"), Some("TEA")).unwrap();
        assert_eq!(shares, fen(&["0", "1.00"]));
    }

    #[test]
    fn a_zero_or_negative_refund_is_refused() {
        let items = three_equal_items();
        for amount in [Money::ZERO, Money::from_fen(-1)] {
            assert_eq!(
                allocate_refund(&items, amount, None),
                Err(RefundError::NotPositive)
            );
            assert_eq!(
                allocate_refund(&items, amount, Some("A")),
                Err(RefundError::NotPositive)
            );
        }
    }

    #[test]
    fn a_refund_of_a_sku_the_order_does_not_have_is_refused() {
        assert_eq!(
            allocate_refund(&three_equal_items(), money("1.00"), Some("Z")),
            Err(RefundError::UnknownSku)
        );
    }

    #[test]
    fn a_refund_over_what_is_left_is_refused_naming_what_is_left() {
        let items = vec![
            balance("TEA", "30.00", "10.00"),
            balance("CUP", "50.00", "0"),
            balance("TEA", "20.00", "0"),
        ];
        assert_eq!(
            allocate_refund(&items, money("40.01"), Some("TEA")),
            Err(RefundError::ExceedsRemaining {
                remaining: money("40.00")
            })
        );
        assert_eq!(
            allocate_refund(&items, money("90.01"), None),
            Err(RefundError::ExceedsRemaining {
                remaining: money("90.00")
            })
        );
        let refunded = vec![balance("TEA", "30.00", "30.00")];
        assert_eq!(
            allocate_refund(&refunded, money("0.01"), None),
            Err(RefundError::ExceedsRemaining {
                remaining: Money::ZERO
            })
        );
        assert_eq!(
            allocate_refund(&[], money("0.01"), None),
            Err(RefundError::ExceedsRemaining {
                remaining: Money::ZERO
            })
        );
    }

    #[test]
    fn an_impossible_balance_is_an_error_not_a_panic() {
        let over_refunded = vec![balance("A", "1.00", "1.01")];
        let expected = RefundError::InvalidBalance {
            sku: "A".to_owned(),
            paid: money("1.00"),
            refunded: money("1.01"),
        };
        assert_eq!(remaining(&over_refunded), Err(expected.clone()));
        assert_eq!(
            allocate_refund(&over_refunded, money("0.01"), None),
            Err(expected)
        );
        let negative = vec![ItemBalance {
            sku: "A".to_owned(),
            paid: Money::from_fen(-5),
            refunded: Money::from_fen(-10),
        }];
        assert!(matches!(
            remaining(&negative),
            Err(RefundError::InvalidBalance { .. })
        ));
        let huge = ItemBalance {
            sku: "A".to_owned(),
            paid: Money::from_fen(i64::MAX),
            refunded: Money::ZERO,
        };
        let overflowing = vec![huge.clone(), huge];
        assert_eq!(remaining(&overflowing), Err(RefundError::Overflow));
        assert_eq!(
            allocate_refund(&overflowing, money("1.00"), None),
            Err(RefundError::Overflow)
        );
    }

    /// Up to eight items with skus from a small set (so skus repeat), paid up
    /// to 10^10 yuan, with some part already refunded.
    fn arbitrary_items() -> impl Strategy<Value = Vec<ItemBalance>> {
        let item = (0usize..3, 0i64..=1_000_000_000_000, 0i64..=100).prop_map(
            |(sku, paid_fen, refunded_percent)| ItemBalance {
                sku: ["A", "B", "C"][sku].to_owned(),
                paid: Money::from_fen(paid_fen),
                refunded: Money::from_fen(paid_fen / 100 * refunded_percent),
            },
        );
        prop::collection::vec(item, 0..8)
    }

    fn assert_shares_fit(items: &[ItemBalance], shares: &[Money], amount: Money) {
        assert_eq!(shares.len(), items.len());
        assert_eq!(Money::checked_sum(shares.iter().copied()), Some(amount));
        for (share, item) in shares.iter().zip(items) {
            assert!(!share.is_negative());
            assert!(*share <= item.remaining().unwrap());
        }
    }

    proptest! {
        #[test]
        fn any_proportional_refund_sums_to_its_amount_within_every_items_balance(
            items in arbitrary_items(),
            pick in any::<u64>(),
        ) {
            let total = remaining(&items).unwrap();
            let Ok(total_fen) = u64::try_from(total.fen()) else { unreachable!() };
            if total_fen == 0 {
                prop_assert_eq!(
                    allocate_refund(&items, Money::from_fen(1), None),
                    Err(RefundError::ExceedsRemaining { remaining: Money::ZERO })
                );
                return Ok(());
            }
            let amount = Money::from_fen(i64::try_from(1 + pick % total_fen).unwrap());
            let shares = allocate_refund(&items, amount, None).unwrap();
            assert_shares_fit(&items, &shares, amount);
            // Largest remainder: each share is within one fen of its exact
            // proportion amount × balance / total.
            for (share, item) in shares.iter().zip(&items) {
                let exact = i128::from(amount.fen()) * i128::from(item.remaining().unwrap().fen());
                let scaled = i128::from(share.fen()) * i128::from(total.fen());
                prop_assert!((scaled - exact).abs() < i128::from(total.fen()));
            }
        }

        #[test]
        fn any_sku_refund_sums_to_its_amount_from_that_skus_items_only(
            items in arbitrary_items(),
            sku in prop::sample::select(vec!["A", "B", "C"]),
            pick in any::<u64>(),
        ) {
            let of_sku: Vec<ItemBalance> =
                items.iter().filter(|item| item.sku == sku).cloned().collect();
            if of_sku.is_empty() {
                prop_assert_eq!(
                    allocate_refund(&items, Money::from_fen(1), Some(sku)),
                    Err(RefundError::UnknownSku)
                );
                return Ok(());
            }
            let available = remaining(&of_sku).unwrap();
            let Ok(available_fen) = u64::try_from(available.fen()) else { unreachable!() };
            let over = available.checked_add(Money::from_fen(1)).unwrap();
            prop_assert_eq!(
                allocate_refund(&items, over, Some(sku)),
                Err(RefundError::ExceedsRemaining { remaining: available })
            );
            prop_assume!(available_fen > 0);
            let amount = Money::from_fen(i64::try_from(1 + pick % available_fen).unwrap());
            let shares = allocate_refund(&items, amount, Some(sku)).unwrap();
            assert_shares_fit(&items, &shares, amount);
            for (share, item) in shares.iter().zip(&items) {
                prop_assert!(item.sku == sku || share.is_zero());
            }
        }
    }

    /// Regular pays 10% / 5% / 2%, books 4% / 2% / 1%; `star` pays 10% at
    /// every level for the cap test; HOT pays 30% at level 1 and nothing
    /// deeper; GIFT pays nothing.
    fn plan(order_cap: &str) -> Plan {
        let text = format!(
            r#"
name = "test"
default_grade = "regular"
order_cap = "{order_cap}"
excluded_skus = ["GIFT"]

[grades.regular]
levels = ["10%", "5%", "2%"]

[grades.star]
levels = ["10%", "10%", "10%"]

[[overrides]]
category = "books"
grade = "regular"
levels = ["4%", "2%", "1%"]

[[overrides]]
sku = "HOT"
levels = ["30%"]
"#
        );
        Plan::parse(&text, "test.toml").unwrap()
    }

    fn id(text: &str) -> DistributorId {
        DistributorId::parse(text).unwrap()
    }

    fn item(sku: &str, category: &str, amount: &str) -> OrderItem {
        OrderItem {
            sku: sku.to_owned(),
            category: category.to_owned(),
            amount: money(amount),
        }
    }

    /// The lines for `items` with the chain a ← b ← c, all of `grade`.
    fn lines(plan: &Plan, items: &[OrderItem], grade: &str) -> Vec<CommissionLine> {
        let order = Order {
            distributor_id: id("a"),
            buyer_id: BuyerId::parse("buyer").unwrap(),
            items: items.to_vec(),
        };
        let chain: Vec<Beneficiary> = ["a", "b", "c"]
            .into_iter()
            .map(|who| Beneficiary {
                distributor_id: id(who),
                grade: grade.to_owned(),
                earns: true,
            })
            .collect();
        commission::compute(plan, &order, &chain).unwrap()
    }

    fn recorded(lines: &[CommissionLine]) -> Vec<RecordedLine> {
        lines.iter().map(RecordedLine::from).collect()
    }

    /// Refunds `amount` (of `sku`, if given) from `items` as nothing was
    /// refunded before, and returns the net items.
    fn refund(items: &[OrderItem], amount: &str, sku: Option<&str>) -> Vec<OrderItem> {
        let balances: Vec<ItemBalance> = items
            .iter()
            .map(|item| ItemBalance {
                sku: item.sku.clone(),
                paid: item.amount,
                refunded: Money::ZERO,
            })
            .collect();
        let shares = allocate_refund(&balances, money(amount), sku).unwrap();
        items
            .iter()
            .zip(shares)
            .map(|(item, share)| OrderItem {
                amount: item.amount.checked_sub(share).unwrap(),
                ..item.clone()
            })
            .collect()
    }

    /// A change as (beneficiary, level, rate, base, old, new), for readable
    /// asserts.
    type Summary = (String, u8, String, String, String, String);

    fn summary(changes: &[LineChange]) -> Vec<Summary> {
        changes
            .iter()
            .map(|change| {
                (
                    change.beneficiary.to_string(),
                    change.level,
                    change.rate.to_string(),
                    change.base.to_string(),
                    change.old_amount.to_string(),
                    change.new_amount.to_string(),
                )
            })
            .collect()
    }

    fn change(who: &str, level: u8, rate: &str, base: &str, old: &str, new: &str) -> Summary {
        (
            who.to_owned(),
            level,
            rate.to_owned(),
            base.to_owned(),
            old.to_owned(),
            new.to_owned(),
        )
    }

    #[test]
    fn a_partial_refund_lowers_every_line() {
        let plan = plan("30%");
        let items = vec![item("T1", "toys", "100.00"), item("T2", "toys", "100.00")];
        let before = lines(&plan, &items, "regular");
        let after = lines(&plan, &refund(&items, "50.00", None), "regular");
        let changes = reconcile(&recorded(&before), &after);
        assert_eq!(
            summary(&changes),
            vec![
                change("a", 1, "10%", "150.00", "20.00", "15.00"),
                change("b", 2, "5%", "150.00", "10.00", "7.50"),
                change("c", 3, "2%", "150.00", "4.00", "3.00"),
            ]
        );
        assert_eq!(
            changes[0].difference(),
            Some(money("5.00").checked_neg().unwrap())
        );
    }

    #[test]
    fn refunding_a_whole_rate_group_zeroes_its_lines_and_leaves_the_others_alone() {
        let plan = plan("30%");
        let items = vec![
            item("T1", "toys", "100.00"),
            item("NOVEL", "books", "50.00"),
        ];
        let before = lines(&plan, &items, "regular");
        assert_eq!(before.len(), 6);
        let after = lines(&plan, &refund(&items, "50.00", Some("NOVEL")), "regular");
        let changes = reconcile(&recorded(&before), &after);
        assert_eq!(
            summary(&changes),
            vec![
                change("a", 1, "4%", "0.00", "2.00", "0.00"),
                change("b", 2, "2%", "0.00", "1.00", "0.00"),
                change("c", 3, "1%", "0.00", "0.50", "0.00"),
            ]
        );
    }

    #[test]
    fn a_line_the_cap_trimmed_grows_back_when_a_refund_lowers_the_lines_above_it() {
        // Before: 30.00 + 10.00 at level 1, 10.00 at 2 and at 3 = 60.00
        // against a cap of 22.5% × 200.00 = 45.00: level 3 is trimmed away
        // and level 2 down to 5.00. Refunding HOT leaves 30.00 against
        // 22.50: level 2 is paid in full and level 3 comes back at 2.50.
        let plan = plan("22.5%");
        let items = vec![item("HOT", "toys", "100.00"), item("T1", "toys", "100.00")];
        let before = lines(&plan, &items, "star");
        let after = lines(&plan, &refund(&items, "100.00", Some("HOT")), "star");
        let changes = reconcile(&recorded(&before), &after);
        assert_eq!(
            summary(&changes),
            vec![
                change("a", 1, "30%", "0.00", "30.00", "0.00"),
                change("b", 2, "10%", "100.00", "5.00", "10.00"),
                change("c", 3, "10%", "100.00", "0.00", "2.50"),
            ]
        );
        assert!(changes[1].new_amount > changes[1].old_amount);
    }

    #[test]
    fn a_recomputation_that_changes_nothing_gives_no_changes() {
        let plan = plan("30%");
        let items = vec![item("T1", "toys", "100.00"), item("GIFT", "cards", "30.00")];
        let before = lines(&plan, &items, "regular");
        // GIFT pays no commission, so refunding it changes no line.
        let after = lines(&plan, &refund(&items, "30.00", Some("GIFT")), "regular");
        assert!(reconcile(&recorded(&before), &after).is_empty());
        assert!(reconcile(&[], &[]).is_empty());
    }

    #[test]
    fn a_refund_that_keeps_the_rounded_amount_still_moves_the_base() {
        let plan = plan("30%");
        let items = vec![item("T1", "toys", "100.00")];
        let before = lines(&plan, &items, "regular");
        let after = lines(&plan, &refund(&items, "0.01", Some("T1")), "regular");
        let changes = reconcile(&recorded(&before), &after);
        let level_one = changes
            .iter()
            .find(|change| change.level == 1)
            .expect("level 1 reported");
        assert_eq!(level_one.base, money("99.99"));
        assert_eq!(
            level_one.old_amount, level_one.new_amount,
            "10% of 99.99 still rounds to 10.00"
        );
        assert_eq!(level_one.difference(), Some(Money::ZERO));
    }

    #[test]
    fn a_full_refund_zeroes_every_recorded_line() {
        let plan = plan("30%");
        let items = vec![item("T1", "toys", "100.00")];
        let before = lines(&plan, &items, "regular");
        let changes = reconcile(&recorded(&before), &[]);
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().all(|change| change.new_amount.is_zero()));
        assert_eq!(
            changes
                .iter()
                .map(|change| change.level)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    #[should_panic(expected = "level 1 of one order has two beneficiaries")]
    fn a_level_whose_beneficiary_changed_is_a_bug() {
        let plan = plan("30%");
        let before = lines(&plan, &[item("T1", "toys", "100.00")], "regular");
        let mut other = recorded(&before);
        other[0].beneficiary = id("z");
        reconcile(&other, &before);
    }
}
