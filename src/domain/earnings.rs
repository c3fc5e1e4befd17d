//! The month close's and the earnings view's rules, without storage: a
//! local month's instants, the team bonus (团队奖) a month's team settled
//! sales earn, the periods an earnings query is cut into, and how far a
//! distributor is from the next tier step and the next grade.
//!
//! Settled sales (one definition, counted by the store in one query): an
//! order's `total − refunded` once released, at its `release_at`, unless
//! ops voided its commission (a voided order sold nothing that counts); a
//! distributor's *own* settled sales are those of orders it sold, its
//! *team* settled sales its own plus those of orders whose seller it
//! referred (level 2) or whose seller's referrer it referred (level 3).
//! Never a count of people.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::domain::money::{Money, MoneyError};
use crate::domain::plan::{Plan, TeamBonus};
use crate::domain::settlement::start_of_day;
use crate::domain::tax::Month;

/// Most periods one earnings answer holds: a year and a day of days, or
/// ten years of months. A longer range is refused rather than cut short.
pub const MAX_PERIODS: usize = 366;

/// The first day of `month`.
pub fn first_day(month: Month) -> NaiveDate {
    NaiveDate::from_ymd_opt(i32::from(month.year()), u32::from(month.month()), 1)
        .expect("a Month is a valid year and month")
}

/// The month after `month`.
pub fn next_month(month: Month) -> Month {
    let last = first_day(month) + chrono::Days::new(u64::from(month.days()) - 1);
    Month::of(last + chrono::Days::new(1))
}

/// The instants `[start, end)` of `month` in `time_zone`.
pub fn month_bounds(month: Month, time_zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        start_of_day(first_day(month), time_zone),
        start_of_day(first_day(next_month(month)), time_zone),
    )
}

/// The local month `at` falls in.
pub fn month_of(at: DateTime<Utc>, time_zone: Tz) -> Month {
    Month::of(at.with_timezone(&time_zone).date_naive())
}

/// The team bonus a month's team settled sales earn under `rule`: nothing
/// when the bonus is off, below the threshold, or rounds to zero; otherwise
/// `rate × team sales` (the whole month's, not only what is above the
/// threshold), half-up to the fen.
pub fn team_bonus_amount(rule: &TeamBonus, team_sales: Money) -> Result<Option<Money>, MoneyError> {
    if !rule.enabled() || team_sales < rule.threshold() || team_sales <= Money::ZERO {
        return Ok(None);
    }
    let amount = team_sales.times_rounded(rule.rate())?;
    Ok((amount > Money::ZERO).then_some(amount))
}

/// How an earnings query groups its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Day,
    Month,
}

impl Grouping {
    pub fn parse(text: &str) -> Option<Grouping> {
        match text {
            "day" => Some(Grouping::Day),
            "month" => Some(Grouping::Month),
            _ => None,
        }
    }

    /// The period a local date belongs to: `YYYY-MM-DD` or `YYYY-MM`.
    pub fn key(self, day: NaiveDate) -> String {
        match self {
            Grouping::Day => day.format("%Y-%m-%d").to_string(),
            Grouping::Month => Month::of(day).to_string(),
        }
    }
}

/// Why an earnings range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`to` ({to}) is before `from` ({from})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("the range has {periods} periods; at most {MAX_PERIODS} are answered at once")]
    TooManyPeriods { periods: usize },
}

/// The periods of the local dates `from..=to`, in order, each once.
pub fn periods(
    from: NaiveDate,
    to: NaiveDate,
    grouping: Grouping,
) -> Result<Vec<String>, RangeError> {
    if to < from {
        return Err(RangeError::Reversed { from, to });
    }
    let count = match grouping {
        Grouping::Day => usize::try_from((to - from).num_days() + 1).unwrap_or(usize::MAX),
        Grouping::Month => {
            let months = |day: NaiveDate| i64::from(day.year()) * 12 + i64::from(day.month0());
            usize::try_from(months(to) - months(from) + 1).unwrap_or(usize::MAX)
        }
    };
    if count > MAX_PERIODS {
        return Err(RangeError::TooManyPeriods { periods: count });
    }
    let mut keys = Vec::with_capacity(count);
    let mut day = from;
    // Bounded: `count` periods, checked above.
    while day <= to {
        let key = grouping.key(day);
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        day = match grouping {
            Grouping::Day => day + chrono::Days::new(1),
            Grouping::Month => first_day(next_month(Month::of(day))),
        };
    }
    Ok(keys)
}

/// Where a distributor stands on the plan's tiers this month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierProgress {
    /// The step's `from` and its level-1 rate; `None` when the plan has no tiers.
    pub current: Option<(Money, crate::domain::money::Rate)>,
    /// The next step's `from`, and what is still needed to reach it.
    pub next: Option<(Money, Money)>,
}

pub fn tier_progress(plan: &Plan, month_sales: Money) -> TierProgress {
    let current = plan
        .tier_for(month_sales)
        .map(|step| (step.from(), step.level1()));
    let next = plan
        .tiers()
        .iter()
        .find(|step| step.from() > month_sales)
        .map(|step| {
            let needed = step.from().checked_sub(month_sales).unwrap_or(Money::ZERO);
            (step.from(), needed)
        });
    TierProgress { current, next }
}

/// The next grade a distributor can be upgraded to, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeProgress {
    pub grade: String,
    pub own_sales_required: Money,
    pub own_sales_needed: Money,
    pub team_sales_required: Option<Money>,
    pub team_sales_needed: Option<Money>,
    /// Whether any one condition suffices (else all of them).
    pub any: bool,
}

/// The first grade after `current` in the plan's file order that has an
/// upgrade rule (grades are listed from the lowest up), with the settled
/// sales still needed; `None` when there is none above.
pub fn grade_progress(
    plan: &Plan,
    current: &str,
    own_lifetime: Money,
    team_lifetime: Money,
) -> Option<GradeProgress> {
    let grades = plan.grades();
    let position = grades
        .iter()
        .position(|grade| grade.key() == current)
        .or_else(|| {
            grades
                .iter()
                .position(|grade| grade.key() == plan.default_grade().key())
        })?;
    let needed = |required: Money, reached: Money| {
        required
            .checked_sub(reached)
            .unwrap_or(Money::ZERO)
            .max(Money::ZERO)
    };
    grades[position + 1..].iter().find_map(|grade| {
        let rule = plan.upgrade(grade.key())?;
        Some(GradeProgress {
            grade: grade.key().to_owned(),
            own_sales_required: rule.own_sales(),
            own_sales_needed: needed(rule.own_sales(), own_lifetime),
            team_sales_required: rule.team_sales(),
            team_sales_needed: rule.team_sales().map(|team| needed(team, team_lifetime)),
            any: rule.any(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::SHIPPED_DEFAULT_TOML;

    fn plan_with(extra: &str) -> Plan {
        // Appended: the grades keep their file order (regular, gold, partner).
        let text = format!("{SHIPPED_DEFAULT_TOML}\n{extra}");
        Plan::parse(&text, "test.toml").unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_month_in_shanghai_starts_at_16_00_utc_the_day_before() {
        let (start, end) =
            month_bounds(Month::parse("2026-12").unwrap(), chrono_tz::Asia::Shanghai);
        assert_eq!(start.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-31T16:00:00+00:00");
        assert_eq!(
            next_month(Month::parse("2026-12").unwrap()).to_string(),
            "2027-01"
        );
        assert_eq!(
            month_of(end, chrono_tz::Asia::Shanghai).to_string(),
            "2027-01"
        );
    }

    #[test]
    fn the_team_bonus_is_paid_on_the_whole_month_from_the_threshold_on() {
        let plan =
            plan_with("[team_bonus]\nenabled = true\nthreshold = \"100000.00\"\nrate = \"1.5%\"\n");
        let rule = plan.team_bonus().unwrap();
        let below = Money::parse("99999.99").unwrap();
        assert_eq!(team_bonus_amount(rule, below).unwrap(), None);
        let at = Money::parse("100000.00").unwrap();
        assert_eq!(
            team_bonus_amount(rule, at).unwrap(),
            Some(Money::parse("1500.00").unwrap())
        );
        // 100,000.33 × 1.5% = 1,500.00495 → 1,500.00; .70 → 1,500.0105 → 1,500.01.
        assert_eq!(
            team_bonus_amount(rule, Money::parse("100000.33").unwrap()).unwrap(),
            Some(Money::parse("1500.00").unwrap())
        );
        assert_eq!(
            team_bonus_amount(rule, Money::parse("100000.70").unwrap()).unwrap(),
            Some(Money::parse("1500.01").unwrap())
        );
        let off = plan_with("[team_bonus]\nenabled = false\nthreshold = \"1.00\"\nrate = \"1%\"\n");
        assert_eq!(
            team_bonus_amount(off.team_bonus().unwrap(), at).unwrap(),
            None
        );
    }

    #[test]
    fn periods_cover_the_range_once_each_and_are_capped() {
        assert_eq!(
            periods(day("2026-11-29"), day("2026-12-01"), Grouping::Day).unwrap(),
            ["2026-11-29", "2026-11-30", "2026-12-01"]
        );
        assert_eq!(
            periods(day("2026-11-29"), day("2027-01-01"), Grouping::Month).unwrap(),
            ["2026-11", "2026-12", "2027-01"]
        );
        assert!(matches!(
            periods(day("2026-12-02"), day("2026-12-01"), Grouping::Day),
            Err(RangeError::Reversed { .. })
        ));
        assert!(periods(day("2026-01-01"), day("2026-12-31"), Grouping::Day).is_ok());
        assert!(matches!(
            periods(day("2025-01-01"), day("2026-12-31"), Grouping::Day),
            Err(RangeError::TooManyPeriods { periods: 730 })
        ));
        assert_eq!(Grouping::parse("week"), None);
    }

    #[test]
    fn tier_and_grade_progress_say_what_is_still_needed() {
        let plan = plan_with(concat!(
            "[tiers]\nsteps = [ { from = \"0.00\", level1 = \"10%\" }, { from = \"10000.00\", level1 = \"15%\" } ]\n",
            "[grades.gold.upgrade]\nown_sales = \"50000.00\"\nteam_sales = \"200000.00\"\nany = true\n",
        ));
        let progress = tier_progress(&plan, Money::parse("2500.00").unwrap());
        assert_eq!(progress.current.unwrap().0, Money::ZERO);
        assert_eq!(
            progress.next,
            Some((
                Money::parse("10000.00").unwrap(),
                Money::parse("7500.00").unwrap()
            ))
        );
        assert_eq!(
            tier_progress(&plan, Money::parse("10000.00").unwrap()).next,
            None
        );
        let grade = grade_progress(
            &plan,
            "regular",
            Money::parse("20000.00").unwrap(),
            Money::parse("250000.00").unwrap(),
        )
        .unwrap();
        assert_eq!(grade.grade, "gold");
        assert_eq!(grade.own_sales_needed, Money::parse("30000.00").unwrap());
        assert_eq!(grade.team_sales_needed, Some(Money::ZERO));
        assert!(grade.any);
        assert_eq!(
            grade_progress(&plan, "gold", Money::ZERO, Money::ZERO),
            None
        );
    }
}
