//! One year of a business calendar as a State Council notice gives it, and
//! the rules every year must keep, written once for the calendar file
//! (errors carry its line) and for a year applied at run time (errors carry
//! the JSON field).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use super::{MAX_HOLIDAY_DAYS, is_weekend};

/// A year as the body of `PUT /v1/admin/calendars/{name}/years/{year}`
/// writes it: the shape of a `[years.YYYY]` table of the calendar file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarYear {
    /// The notice the year is copied from, e.g. "国办发明电〔2026〕5号".
    pub source: String,
    #[serde(default)]
    pub holidays: Vec<HolidayPeriod>,
    /// Weekend days worked in exchange for a bridging day off (调休上班).
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["2027-02-20"]))]
    pub makeup_workdays: Vec<NaiveDate>,
}

/// A run of days off, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolidayPeriod {
    pub name: String,
    #[schema(value_type = String, example = "2027-02-05")]
    pub from: NaiveDate,
    #[schema(value_type = String, example = "2027-02-11")]
    pub to: NaiveDate,
}

/// A year that keeps every rule, ready to lay over a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedYear {
    pub year: i32,
    pub source: String,
    /// Every day off that is not simply a weekend, with its holiday's name.
    pub holidays: BTreeMap<NaiveDate, String>,
    pub makeup_workdays: BTreeSet<NaiveDate>,
}

/// Why an applied year was refused: the field at fault, as a JSON path such
/// as `holidays[1].to`, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct YearError {
    pub field: String,
    pub message: String,
}

/// Longest source text kept, in characters: a notice number is about 15.
pub const MAX_SOURCE_CHARS: usize = 200;

impl CalendarYear {
    /// Checks the year as the calendar file's loader checks a year table.
    ///
    /// # Errors
    /// The first rule broken, naming the field.
    pub fn check(&self, year: i32) -> Result<CheckedYear, YearError> {
        let source = self.source.trim();
        if source.is_empty() || source.chars().count() > MAX_SOURCE_CHARS {
            return Err(YearError {
                field: "source".to_owned(),
                message: format!(
                    "name the notice the year is copied from, in 1–{MAX_SOURCE_CHARS} characters"
                ),
            });
        }
        let holidays = self.holidays.iter().enumerate().map(|(index, holiday)| {
            let at = |end: &str| format!("holidays[{index}].{end}");
            HolidayEntry {
                name: holiday.name.clone(),
                from: holiday.from,
                from_at: at("from"),
                to: holiday.to,
                to_at: at("to"),
            }
        });
        let makeup_workdays = self
            .makeup_workdays
            .iter()
            .enumerate()
            .map(|(index, date)| (*date, format!("makeup_workdays[{index}]")));
        let days = check_year(year, holidays, makeup_workdays).map_err(|problem| YearError {
            field: problem.at().clone(),
            message: problem.to_string(),
        })?;
        if let Some((index, _)) = self
            .holidays
            .iter()
            .enumerate()
            .find(|(_, holiday)| holiday.name.trim().is_empty())
        {
            return Err(YearError {
                field: format!("holidays[{index}].name"),
                message: "name the holiday, e.g. \"春节\"".to_owned(),
            });
        }
        Ok(days.into_checked(year, source.to_owned()))
    }
}

/// A holiday entry with where each of its dates was written (a line of the
/// file, or a JSON field).
pub(super) struct HolidayEntry<L> {
    pub name: String,
    pub from: NaiveDate,
    pub from_at: L,
    pub to: NaiveDate,
    pub to_at: L,
}

/// A year's days with where each was written, so a clash names both places.
pub(super) struct YearDays<L> {
    /// Day off → (holiday name, where its entry starts).
    pub holidays: BTreeMap<NaiveDate, (String, L)>,
    /// Make-up working day → where it is written.
    pub makeup_workdays: BTreeMap<NaiveDate, L>,
}

impl<L> YearDays<L> {
    pub fn into_checked(self, year: i32, source: String) -> CheckedYear {
        CheckedYear {
            year,
            source,
            holidays: self
                .holidays
                .into_iter()
                .map(|(date, (name, _))| (date, name))
                .collect(),
            makeup_workdays: self.makeup_workdays.into_keys().collect(),
        }
    }
}

/// A broken rule of one year, at `L` (a line or a field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum YearProblem<L> {
    #[error("{date} is listed under year {year} but is not in {year}")]
    DateOutsideYear { at: L, date: NaiveDate, year: i32 },
    #[error("holiday {name} ends ({to}) before it starts ({from})")]
    HolidayEndsBeforeStart {
        at: L,
        name: String,
        from: NaiveDate,
        to: NaiveDate,
    },
    #[error(
        "holiday {name} runs from {from} to {to}, past the end of {year}; split it at the year end"
    )]
    HolidaySpansYears {
        at: L,
        name: String,
        from: NaiveDate,
        to: NaiveDate,
        year: i32,
    },
    #[error(
        "holiday {name} is {days} days long; more than {MAX_HOLIDAY_DAYS} is taken to be a typo"
    )]
    HolidayTooLong { at: L, name: String, days: i64 },
    #[error("make-up working day {date} is a {weekday}, but make-up days are Saturdays or Sundays")]
    MakeupDayNotWeekend {
        at: L,
        date: NaiveDate,
        weekday: Weekday,
    },
    #[error("{date} is listed as a make-up working day and as holiday {holiday}")]
    HolidayAndMakeupDay {
        at: L,
        date: NaiveDate,
        holiday: String,
        holiday_at: L,
    },
    #[error("{date} is listed twice")]
    DuplicateDate { at: L, date: NaiveDate, first_at: L },
}

impl<L> YearProblem<L> {
    pub fn at(&self) -> &L {
        match self {
            YearProblem::DateOutsideYear { at, .. }
            | YearProblem::HolidayEndsBeforeStart { at, .. }
            | YearProblem::HolidaySpansYears { at, .. }
            | YearProblem::HolidayTooLong { at, .. }
            | YearProblem::MakeupDayNotWeekend { at, .. }
            | YearProblem::HolidayAndMakeupDay { at, .. }
            | YearProblem::DuplicateDate { at, .. } => at,
        }
    }
}

/// The rules of one year: every date inside it, holidays that end on or
/// after they start, within the year and at most [`MAX_HOLIDAY_DAYS`] long,
/// make-up days on weekends, no date listed twice and none both off and
/// worked.
pub(super) fn check_year<L: Clone>(
    year: i32,
    holidays: impl IntoIterator<Item = HolidayEntry<L>>,
    makeup_workdays: impl IntoIterator<Item = (NaiveDate, L)>,
) -> Result<YearDays<L>, YearProblem<L>> {
    let mut days = YearDays {
        holidays: BTreeMap::new(),
        makeup_workdays: BTreeMap::new(),
    };
    for holiday in holidays {
        add_holiday(&mut days, year, holiday)?;
    }
    for (date, at) in makeup_workdays {
        add_makeup_workday(&mut days, year, date, at)?;
    }
    for (date, at) in &days.makeup_workdays {
        if let Some((holiday, holiday_at)) = days.holidays.get(date) {
            return Err(YearProblem::HolidayAndMakeupDay {
                at: at.clone(),
                date: *date,
                holiday: holiday.clone(),
                holiday_at: holiday_at.clone(),
            });
        }
    }
    Ok(days)
}

fn add_holiday<L: Clone>(
    days: &mut YearDays<L>,
    year: i32,
    holiday: HolidayEntry<L>,
) -> Result<(), YearProblem<L>> {
    let HolidayEntry {
        name,
        from,
        from_at,
        to,
        to_at,
    } = holiday;
    if from.year() != year {
        return Err(YearProblem::DateOutsideYear {
            at: from_at,
            date: from,
            year,
        });
    }
    if to < from {
        return Err(YearProblem::HolidayEndsBeforeStart {
            at: to_at,
            name,
            from,
            to,
        });
    }
    if to.year() != year {
        return Err(YearProblem::HolidaySpansYears {
            at: to_at,
            name,
            from,
            to,
            year,
        });
    }
    let length = (to - from).num_days() + 1;
    if length > MAX_HOLIDAY_DAYS {
        return Err(YearProblem::HolidayTooLong {
            at: to_at,
            name,
            days: length,
        });
    }
    // `length` is at most MAX_HOLIDAY_DAYS, so this walk is short.
    for date in from.iter_days().take_while(|date| *date <= to) {
        if let Some((_, first_at)) = days.holidays.get(&date) {
            return Err(YearProblem::DuplicateDate {
                at: from_at,
                date,
                first_at: first_at.clone(),
            });
        }
        days.holidays.insert(date, (name.clone(), from_at.clone()));
    }
    Ok(())
}

fn add_makeup_workday<L: Clone>(
    days: &mut YearDays<L>,
    year: i32,
    date: NaiveDate,
    at: L,
) -> Result<(), YearProblem<L>> {
    if date.year() != year {
        return Err(YearProblem::DateOutsideYear { at, date, year });
    }
    if !is_weekend(date) {
        return Err(YearProblem::MakeupDayNotWeekend {
            at,
            date,
            weekday: date.weekday(),
        });
    }
    if let Some(first_at) = days.makeup_workdays.get(&date) {
        return Err(YearProblem::DuplicateDate {
            at,
            date,
            first_at: first_at.clone(),
        });
    }
    days.makeup_workdays.insert(date, at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn year_2027() -> CalendarYear {
        serde_json::from_value(serde_json::json!({
            "source": "国办发明电〔2026〕9号",
            "holidays": [
                {"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"},
                {"name": "春节", "from": "2027-02-05", "to": "2027-02-11"},
            ],
            "makeup_workdays": ["2027-02-20"],
        }))
        .unwrap()
    }

    fn refusal(edit: impl FnOnce(&mut CalendarYear)) -> YearError {
        let mut year = year_2027();
        edit(&mut year);
        year.check(2027).unwrap_err()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_year_as_the_notice_gives_it_is_checked_into_its_days() {
        let checked = year_2027().check(2027).unwrap();
        assert_eq!(checked.holidays.len(), 3 + 7);
        assert_eq!(checked.holidays[&date("2027-02-08")], "春节");
        assert_eq!(
            checked.makeup_workdays,
            BTreeSet::from([date("2027-02-20")])
        );
        assert_eq!(checked.source, "国办发明电〔2026〕9号");
    }

    #[test]
    fn each_broken_rule_is_refused_naming_its_field() {
        type Edit = fn(&mut CalendarYear);
        let cases: [(Edit, &str, &str); 8] = [
            (
                |year| year.makeup_workdays[0] = date("2027-02-17"),
                "makeup_workdays[0]",
                "is a Wed",
            ),
            (
                |year| year.holidays[1].from = date("2026-02-05"),
                "holidays[1].from",
                "not in 2027",
            ),
            (
                |year| year.holidays[1].to = date("2027-02-01"),
                "holidays[1].to",
                "before it starts",
            ),
            (
                |year| year.holidays[1].to = date("2027-12-30"),
                "holidays[1].to",
                "typo",
            ),
            (
                |year| {
                    year.holidays[1].from = date("2027-01-03");
                    year.holidays[1].to = date("2027-01-08");
                },
                "holidays[1].from",
                "listed twice",
            ),
            (
                |year| year.makeup_workdays[0] = date("2027-01-02"),
                "makeup_workdays[0]",
                "and as holiday 元旦",
            ),
            (|year| year.source = " ".to_owned(), "source", "notice"),
            (
                |year| year.holidays[0].name = String::new(),
                "holidays[0].name",
                "name the holiday",
            ),
        ];
        for (edit, field, message) in cases {
            let error = refusal(edit);
            assert_eq!(error.field, field, "{error}");
            assert!(error.message.contains(message), "{error}");
        }
    }

    #[test]
    fn a_holiday_running_into_the_next_year_is_refused_at_its_end() {
        let error = refusal(|year| {
            year.holidays.push(HolidayPeriod {
                name: "元旦".to_owned(),
                from: date("2027-12-31"),
                to: date("2028-01-01"),
            });
        });
        assert_eq!(error.field, "holidays[2].to");
        assert!(error.message.contains("split it at the year end"));
    }

    #[test]
    fn unknown_keys_in_a_body_are_refused() {
        let refused = serde_json::from_value::<CalendarYear>(serde_json::json!({
            "source": "x", "makeup_workday": ["2027-02-20"]
        }));
        assert!(refused.unwrap_err().to_string().contains("makeup_workday"));
    }
}
