//! Settlement cycles (SPEC §2.4): standard withdrawals wait for their
//! cycle's cut-off and go out together; express ones go at once.
//!
//! ```text
//!  requested ──► next cut-off at or after the request ──► send_after
//!  daily        today at the cut-off, or tomorrow once it has passed
//!  weekly       the named weekday at the cut-off
//!  semi-monthly the 1st and the 16th at the cut-off
//!  monthly      the configured day, clamped to the month's last day
//! ```
//!
//! The cut-off is a local time of day in the workflow's zone; the answer is
//! a UTC instant. A request made exactly at a cut-off belongs to it.

use std::fmt;

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// How often standard withdrawals go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutCycle {
    /// No batching: a standard withdrawal goes as soon as it is approved,
    /// like an express one (tests, benches, or a business that wants it).
    Immediate,
    Daily,
    Weekly {
        weekday: Weekday,
    },
    /// The 1st and the 16th of each month.
    SemiMonthly,
    /// `day` (1..=31) of each month; a shorter month sends on its last day.
    Monthly {
        day: u32,
    },
}

/// The days of the month a semi-monthly cycle sends on.
pub const SEMI_MONTHLY_DAYS: [u32; 2] = [1, 16];

/// The longest gap between two cut-off dates of any cycle (a monthly one on
/// the 31st: from 31 January to 28 February is 28 days, from the 1st of one
/// month to the 1st of the next at most 31), plus the request's own day: the
/// bound of the search for the next cut-off.
const MAX_DAYS_TO_CUTOFF: u64 = 32;

/// A cycle with its local cut-off time and zone: when standard withdrawals
/// are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutSchedule {
    pub cycle: PayoutCycle,
    /// Local time of day of the cut-off.
    pub cutoff: NaiveTime,
    pub zone: Tz,
}

impl PayoutSchedule {
    /// The first cut-off at or after `requested_at` (see [`next_send_at`]).
    pub fn next_send_at(&self, requested_at: DateTime<Utc>) -> DateTime<Utc> {
        next_send_at(self.cycle, self.cutoff, requested_at, self.zone)
    }
}

impl fmt::Display for PayoutSchedule {
    /// `daily 15:00 Asia/Shanghai`, `weekly monday 15:00 Asia/Shanghai`,
    /// `semi-monthly 1st and 16th 15:00 …`, `monthly day 31 15:00 …`,
    /// `immediate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cutoff = self.cutoff.format("%H:%M");
        let zone = self.zone.name();
        match self.cycle {
            PayoutCycle::Immediate => write!(f, "immediate"),
            PayoutCycle::Daily => write!(f, "daily {cutoff} {zone}"),
            PayoutCycle::Weekly { weekday } => {
                write!(f, "weekly {} {cutoff} {zone}", weekday_name(weekday))
            }
            PayoutCycle::SemiMonthly => write!(f, "semi-monthly 1st and 16th {cutoff} {zone}"),
            PayoutCycle::Monthly { day } => write!(f, "monthly day {day} {cutoff} {zone}"),
        }
    }
}

/// The lowercase English name of a weekday, as the workflow file spells it.
pub fn weekday_name(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

/// The weekday a workflow file names (`monday` … `sunday`).
pub fn parse_weekday(name: &str) -> Option<Weekday> {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .find(|weekday| weekday_name(*weekday) == name)
}

/// When a standard withdrawal requested at `requested_at` is sent: the first
/// cut-off of `cycle` at or after it, the cut-off being `cutoff` local time
/// in `zone`. [`PayoutCycle::Immediate`] answers `requested_at` itself.
pub fn next_send_at(
    cycle: PayoutCycle,
    cutoff: NaiveTime,
    requested_at: DateTime<Utc>,
    zone: Tz,
) -> DateTime<Utc> {
    if cycle == PayoutCycle::Immediate {
        return requested_at;
    }
    let first_day = requested_at.with_timezone(&zone).date_naive();
    // Bounded: every cycle has a cut-off date within MAX_DAYS_TO_CUTOFF days.
    for offset in 0..=MAX_DAYS_TO_CUTOFF {
        let Some(day) = first_day.checked_add_days(Days::new(offset)) else {
            break;
        };
        if !sends_on(cycle, day) {
            continue;
        }
        let at = local_instant(zone, day, cutoff);
        if at >= requested_at {
            return at;
        }
    }
    // Only at the end of chrono's calendar (year 262143); send at once
    // rather than never.
    requested_at
}

/// Whether `day` is a cut-off date of `cycle`.
fn sends_on(cycle: PayoutCycle, day: NaiveDate) -> bool {
    match cycle {
        PayoutCycle::Immediate | PayoutCycle::Daily => true,
        PayoutCycle::Weekly { weekday } => day.weekday() == weekday,
        PayoutCycle::SemiMonthly => SEMI_MONTHLY_DAYS.contains(&day.day()),
        PayoutCycle::Monthly { day: wanted } => day.day() == wanted.min(last_day_of_month(day)),
    }
}

fn last_day_of_month(day: NaiveDate) -> u32 {
    // The day before the 1st of next month; every month has a 28th.
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(28, |last| last.day())
}

/// `day` at `time` in `zone` as a UTC instant. A time repeated by a clock
/// going back counts at its first occurrence; a time skipped by a clock
/// going forward counts at the first instant after the gap.
fn local_instant(zone: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = day.and_time(time);
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.to_utc(),
        LocalResult::None => {
            // Gaps are at most a few hours; step forward a minute at a time.
            (1..=24 * 60)
                .find_map(|minutes| {
                    zone.from_local_datetime(&(naive + chrono::Duration::minutes(minutes)))
                        .earliest()
                })
                .map_or_else(|| naive.and_utc(), |at| at.to_utc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    fn three_pm() -> NaiveTime {
        NaiveTime::from_hms_opt(15, 0, 0).unwrap()
    }

    fn send(cycle: PayoutCycle, requested: &str) -> DateTime<Utc> {
        next_send_at(cycle, three_pm(), at(requested), SHANGHAI)
    }

    #[test]
    fn a_daily_request_before_the_cutoff_goes_the_same_day() {
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T09:30:00+08:00"),
            at("2026-03-10T15:00:00+08:00")
        );
    }

    #[test]
    fn a_request_exactly_at_the_cutoff_belongs_to_it() {
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T15:00:00+08:00"),
            at("2026-03-10T15:00:00+08:00")
        );
    }

    #[test]
    fn a_request_one_second_after_the_cutoff_waits_for_the_next_one() {
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T15:00:01+08:00"),
            at("2026-03-11T15:00:00+08:00")
        );
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T14:59:59+08:00"),
            at("2026-03-10T15:00:00+08:00")
        );
    }

    #[test]
    fn the_day_is_the_zones_day_not_utcs() {
        // 2026-03-10 20:00 UTC is already 2026-03-11 04:00 in Shanghai: the
        // cut-off is Shanghai's 11th at 15:00, not UTC's 10th.
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T20:00:00Z"),
            at("2026-03-11T15:00:00+08:00")
        );
        // The same instant in UTC has passed UTC's 15:00 of the 10th.
        assert_eq!(
            next_send_at(
                PayoutCycle::Daily,
                three_pm(),
                at("2026-03-10T20:00:00Z"),
                chrono_tz::UTC
            ),
            at("2026-03-11T15:00:00Z")
        );
        // 2026-03-10 06:59:59 UTC is 14:59:59 in Shanghai: still today.
        assert_eq!(
            send(PayoutCycle::Daily, "2026-03-10T06:59:59Z"),
            at("2026-03-10T07:00:00Z")
        );
    }

    #[test]
    fn a_daily_request_after_the_last_cutoff_of_the_year_goes_on_new_years_day() {
        assert_eq!(
            send(PayoutCycle::Daily, "2026-12-31T16:00:00+08:00"),
            at("2027-01-01T15:00:00+08:00")
        );
    }

    #[test]
    fn a_weekly_cycle_waits_for_its_weekday() {
        let monday = PayoutCycle::Weekly {
            weekday: Weekday::Mon,
        };
        // 2026-03-11 is a Wednesday.
        assert_eq!(
            send(monday, "2026-03-11T10:00:00+08:00"),
            at("2026-03-16T15:00:00+08:00")
        );
        // On the Monday itself: before the cut-off that Monday, after it the next.
        assert_eq!(
            send(monday, "2026-03-16T15:00:00+08:00"),
            at("2026-03-16T15:00:00+08:00")
        );
        assert_eq!(
            send(monday, "2026-03-16T15:00:01+08:00"),
            at("2026-03-23T15:00:00+08:00")
        );
        // Across the year end: Thursday 2026-12-31 → Monday 2027-01-04.
        assert_eq!(
            send(monday, "2026-12-31T10:00:00+08:00"),
            at("2027-01-04T15:00:00+08:00")
        );
    }

    #[test]
    fn a_semi_monthly_cycle_sends_on_the_1st_and_the_16th() {
        let cycle = PayoutCycle::SemiMonthly;
        assert_eq!(
            send(cycle, "2026-03-02T10:00:00+08:00"),
            at("2026-03-16T15:00:00+08:00")
        );
        assert_eq!(
            send(cycle, "2026-03-16T15:00:00+08:00"),
            at("2026-03-16T15:00:00+08:00")
        );
        assert_eq!(
            send(cycle, "2026-03-16T15:00:01+08:00"),
            at("2026-04-01T15:00:00+08:00")
        );
        assert_eq!(
            send(cycle, "2026-12-20T10:00:00+08:00"),
            at("2027-01-01T15:00:00+08:00")
        );
        assert_eq!(
            send(cycle, "2026-03-01T09:00:00+08:00"),
            at("2026-03-01T15:00:00+08:00")
        );
    }

    #[test]
    fn a_monthly_day_past_the_months_end_sends_on_its_last_day() {
        let on_31st = PayoutCycle::Monthly { day: 31 };
        // February 2026 has 28 days, 2028 has 29.
        assert_eq!(
            send(on_31st, "2026-02-01T10:00:00+08:00"),
            at("2026-02-28T15:00:00+08:00")
        );
        assert_eq!(
            send(on_31st, "2028-02-10T10:00:00+08:00"),
            at("2028-02-29T15:00:00+08:00")
        );
        assert_eq!(
            send(on_31st, "2028-02-29T15:00:01+08:00"),
            at("2028-03-31T15:00:00+08:00")
        );
        // April has 30 days.
        assert_eq!(
            send(on_31st, "2026-04-05T10:00:00+08:00"),
            at("2026-04-30T15:00:00+08:00")
        );
        // After December's 31st cut-off: January's.
        assert_eq!(
            send(on_31st, "2026-12-31T15:00:01+08:00"),
            at("2027-01-31T15:00:00+08:00")
        );
        let on_29th = PayoutCycle::Monthly { day: 29 };
        assert_eq!(
            send(on_29th, "2026-02-28T15:00:01+08:00"),
            at("2026-03-29T15:00:00+08:00")
        );
        assert_eq!(
            send(on_29th, "2026-01-30T10:00:00+08:00"),
            at("2026-02-28T15:00:00+08:00")
        );
    }

    #[test]
    fn a_monthly_cycle_on_the_1st_crosses_the_year() {
        let on_1st = PayoutCycle::Monthly { day: 1 };
        assert_eq!(
            send(on_1st, "2026-12-01T15:00:01+08:00"),
            at("2027-01-01T15:00:00+08:00")
        );
        assert_eq!(
            send(on_1st, "2027-01-01T14:59:59+08:00"),
            at("2027-01-01T15:00:00+08:00")
        );
    }

    #[test]
    fn an_immediate_cycle_sends_at_the_request() {
        let requested = at("2026-03-10T15:00:01+08:00");
        assert_eq!(
            next_send_at(PayoutCycle::Immediate, three_pm(), requested, SHANGHAI),
            requested
        );
    }

    #[test]
    fn a_cutoff_skipped_by_daylight_saving_counts_after_the_gap() {
        // New York skips 02:00–03:00 on 2026-03-08.
        let cutoff = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            next_send_at(
                PayoutCycle::Daily,
                cutoff,
                at("2026-03-08T01:00:00-05:00"),
                chrono_tz::America::New_York
            ),
            at("2026-03-08T03:00:00-04:00")
        );
    }

    #[test]
    fn the_next_cutoff_is_never_before_the_request_nor_a_cycle_away() {
        let cycles = [
            PayoutCycle::Daily,
            PayoutCycle::Weekly {
                weekday: Weekday::Fri,
            },
            PayoutCycle::SemiMonthly,
            PayoutCycle::Monthly { day: 31 },
            PayoutCycle::Monthly { day: 15 },
        ];
        let start = at("2027-12-20T00:00:00+08:00");
        for hour in (0..24 * 80).step_by(7) {
            let requested = start + chrono::Duration::hours(hour) + chrono::Duration::seconds(13);
            for cycle in cycles {
                let sent = send_at_utc(cycle, requested);
                assert!(sent >= requested, "{cycle:?} at {requested}");
                assert!(
                    sent - requested <= chrono::Duration::days(31),
                    "{cycle:?} at {requested} → {sent}"
                );
                let local = sent.with_timezone(&SHANGHAI);
                assert_eq!(local.time(), three_pm());
                assert!(sends_on(cycle, local.date_naive()));
            }
        }
    }

    fn send_at_utc(cycle: PayoutCycle, requested: DateTime<Utc>) -> DateTime<Utc> {
        next_send_at(cycle, three_pm(), requested, SHANGHAI)
    }

    #[test]
    fn a_schedule_names_its_cycle_cutoff_and_zone() {
        let schedule = |cycle| PayoutSchedule {
            cycle,
            cutoff: three_pm(),
            zone: SHANGHAI,
        };
        assert_eq!(
            schedule(PayoutCycle::Daily).to_string(),
            "daily 15:00 Asia/Shanghai"
        );
        assert_eq!(
            schedule(PayoutCycle::Weekly {
                weekday: Weekday::Mon
            })
            .to_string(),
            "weekly monday 15:00 Asia/Shanghai"
        );
        assert_eq!(
            schedule(PayoutCycle::Monthly { day: 31 }).to_string(),
            "monthly day 31 15:00 Asia/Shanghai"
        );
        assert_eq!(schedule(PayoutCycle::Immediate).to_string(), "immediate");
        assert_eq!(parse_weekday("sunday"), Some(Weekday::Sun));
        assert_eq!(parse_weekday("Sunday"), None);
    }
}
