//! The 13 statutory holiday days of a year (《全国年节及纪念日放假办法》 as
//! revised in 2024, in force from 2025), computed from the Chinese lunar
//! calendar and the solar terms with `tyme4rs`.
//!
//! This is what the law fixes, not what a year's notice arranges: the notice
//! adds bridging days off and weekend days worked in exchange (调休), which
//! no formula predicts. So a year known only from here is *provisional*: it
//! never releases money on a statutory holiday, but the notice may still
//! move a hold by the bridging days, and it invents no make-up working day.

use chrono::{Datelike, Days, NaiveDate};
use tyme4rs::tyme::Culture;
use tyme4rs::tyme::lunar::LunarDay;
use tyme4rs::tyme::solar::SolarDay;

/// The first year the 2024 revision (13 days, with 除夕) governs; earlier
/// years had 11 statutory days and must come from the calendar file.
pub const FIRST_STATUTORY_YEAR: i32 = 2025;
/// The last year computed. `tyme4rs` reaches 9999, but its solar terms are an
/// astronomical approximation; 2100 is as far as the lunar tables published
/// by observatories (and `icu_calendar`'s precomputed data) go, and far past
/// any hold fenrun accepts (`confirmed_at` at most a day ahead).
pub const LAST_STATUTORY_YEAR: i32 = 2100;

/// A statutory holiday day: its date and the holiday's name as a calendar
/// file would write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatutoryDay {
    pub date: NaiveDate,
    pub name: &'static str,
}

/// Whether [`statutory_days`] computes `year`: a range check, without the
/// lunar arithmetic.
pub fn computes(year: i32) -> bool {
    (FIRST_STATUTORY_YEAR..=LAST_STATUTORY_YEAR).contains(&year)
}

/// The statutory holiday days of `year` in date order, or `None` outside
/// [`FIRST_STATUTORY_YEAR`]..=[`LAST_STATUTORY_YEAR`].
pub fn statutory_days(year: i32) -> Option<Vec<StatutoryDay>> {
    if !computes(year) {
        return None;
    }
    let day = |date: NaiveDate, name| StatutoryDay { date, name };
    let spring_festival = lunar_date(year, 1, 1);
    let eve = spring_festival
        .checked_sub_days(Days::new(1))
        .expect("the Spring Festival falls in late January at the earliest");
    let mut days = vec![
        day(solar_date(year, 1, 1), "元旦"),
        day(eve, "春节"),
        day(spring_festival, "春节"),
        day(spring_festival + Days::new(1), "春节"),
        day(spring_festival + Days::new(2), "春节"),
        day(qingming(year), "清明节"),
        day(solar_date(year, 5, 1), "劳动节"),
        day(solar_date(year, 5, 2), "劳动节"),
        day(lunar_date(year, 5, 5), "端午节"),
        day(lunar_date(year, 8, 15), "中秋节"),
        day(solar_date(year, 10, 1), "国庆节"),
        day(solar_date(year, 10, 2), "国庆节"),
        day(solar_date(year, 10, 3), "国庆节"),
    ];
    days.sort_by_key(|day| day.date);
    // Mid-Autumn can fall on 1–3 October (it did in 2020 and 2001): the law
    // then gives no extra day, so the day is counted once.
    days.dedup_by_key(|day| day.date);
    Some(days)
}

fn solar_date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a fixed statutory date exists every year")
}

/// The Gregorian date of lunar `month`/`day` of the lunar year that starts
/// in Gregorian `year` (never a leap month: the holidays are in ordinary
/// months).
fn lunar_date(year: i32, month: isize, day: usize) -> NaiveDate {
    let solar = LunarDay::from_ymd(year as isize, month, day).get_solar_day();
    to_naive(&solar)
}

/// The day the sun reaches 15° ecliptic longitude (清明), 4–6 April in
/// Beijing time.
fn qingming(year: i32) -> NaiveDate {
    (3..=7)
        .map(|day| SolarDay::from_ymd(year as isize, 4, day))
        .find(|day| {
            let term = day.get_term_day();
            term.get_day_index() == 0 && term.get_solar_term().get_name() == "清明"
        })
        .map(|day| to_naive(&day))
        .expect("清明 falls between 3 and 7 April")
}

fn to_naive(day: &SolarDay) -> NaiveDate {
    let year = i32::try_from(day.get_year()).expect("years in range fit an i32");
    let month = u32::try_from(day.get_month()).expect("a month fits a u32");
    let date = u32::try_from(day.get_day()).expect("a day fits a u32");
    let naive = NaiveDate::from_ymd_opt(year, month, date).expect("tyme4rs gives real dates");
    debug_assert!(naive.year() == year);
    naive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn dates(year: i32) -> Vec<String> {
        statutory_days(year)
            .unwrap()
            .iter()
            .map(|day| format!("{} {}", day.date, day.name))
            .collect()
    }

    /// Every day off of the official notices (国办发明电〔2024〕12号 for
    /// 2025, 〔2025〕7号 for 2026), as `from..=to` ranges.
    fn official_days_off(year: i32) -> Vec<(NaiveDate, NaiveDate)> {
        let ranges: &[(&str, &str)] = match year {
            2025 => &[
                ("2025-01-01", "2025-01-01"),
                ("2025-01-28", "2025-02-04"),
                ("2025-04-04", "2025-04-06"),
                ("2025-05-01", "2025-05-05"),
                ("2025-05-31", "2025-06-02"),
                ("2025-10-01", "2025-10-08"),
            ],
            2026 => &[
                ("2026-01-01", "2026-01-03"),
                ("2026-02-15", "2026-02-23"),
                ("2026-04-04", "2026-04-06"),
                ("2026-05-01", "2026-05-05"),
                ("2026-06-19", "2026-06-21"),
                ("2026-09-25", "2026-09-27"),
                ("2026-10-01", "2026-10-07"),
            ],
            _ => unreachable!("fixtures exist for 2025 and 2026"),
        };
        ranges
            .iter()
            .map(|(from, to)| (date(from), date(to)))
            .collect()
    }

    #[test]
    fn every_computed_statutory_day_of_2025_and_2026_is_a_day_off_in_the_official_notice() {
        for year in [2025, 2026] {
            let official = official_days_off(year);
            let days = statutory_days(year).unwrap();
            assert_eq!(days.len(), 13, "{year}: {days:?}");
            for day in days {
                assert!(
                    official
                        .iter()
                        .any(|(from, to)| (*from..=*to).contains(&day.date)),
                    "{year}: {} ({}) is not a day off in the notice",
                    day.date,
                    day.name
                );
            }
        }
    }

    #[test]
    fn the_lunar_and_solar_term_days_of_2025_and_2026_are_the_published_ones() {
        assert_eq!(
            dates(2025),
            [
                "2025-01-01 元旦",
                "2025-01-28 春节",
                "2025-01-29 春节",
                "2025-01-30 春节",
                "2025-01-31 春节",
                "2025-04-04 清明节",
                "2025-05-01 劳动节",
                "2025-05-02 劳动节",
                "2025-05-31 端午节",
                "2025-10-01 国庆节",
                "2025-10-02 国庆节",
                "2025-10-03 国庆节",
                "2025-10-06 中秋节",
            ]
        );
        assert_eq!(
            dates(2026),
            [
                "2026-01-01 元旦",
                "2026-02-16 春节",
                "2026-02-17 春节",
                "2026-02-18 春节",
                "2026-02-19 春节",
                "2026-04-05 清明节",
                "2026-05-01 劳动节",
                "2026-05-02 劳动节",
                "2026-06-19 端午节",
                "2026-09-25 中秋节",
                "2026-10-01 国庆节",
                "2026-10-02 国庆节",
                "2026-10-03 国庆节",
            ]
        );
    }

    #[test]
    fn the_2027_statutory_days_are_the_ones_computed_in_the_calendar_reference() {
        assert_eq!(
            dates(2027),
            [
                "2027-01-01 元旦",
                "2027-02-05 春节",
                "2027-02-06 春节",
                "2027-02-07 春节",
                "2027-02-08 春节",
                "2027-04-05 清明节",
                "2027-05-01 劳动节",
                "2027-05-02 劳动节",
                "2027-06-09 端午节",
                "2027-09-15 中秋节",
                "2027-10-01 国庆节",
                "2027-10-02 国庆节",
                "2027-10-03 国庆节",
            ]
        );
    }

    #[test]
    fn every_year_in_range_has_thirteen_days_or_twelve_when_mid_autumn_meets_national_day() {
        for year in FIRST_STATUTORY_YEAR..=LAST_STATUTORY_YEAR {
            let days = statutory_days(year).unwrap();
            let mid_autumn = lunar_date(year, 8, 15);
            let meets_national_day = mid_autumn.month() == 10 && mid_autumn.day() <= 3;
            assert_eq!(days.len(), 13 - usize::from(meets_national_day), "{year}");
            assert!(days.iter().all(|day| day.date.year() == year), "{year}");
            let qingming = days.iter().find(|day| day.name == "清明节").unwrap().date;
            assert!(
                (4..=6).contains(&qingming.day()) && qingming.month() == 4,
                "{year}"
            );
            let eve = days.iter().find(|day| day.name == "春节").unwrap().date;
            assert!(
                eve >= solar_date(year, 1, 20) && eve <= solar_date(year, 2, 19),
                "{year}"
            );
        }
    }

    #[test]
    fn years_outside_the_computed_range_have_no_statutory_days() {
        assert!(statutory_days(FIRST_STATUTORY_YEAR - 1).is_none());
        assert!(statutory_days(LAST_STATUTORY_YEAR + 1).is_none());
    }
}
