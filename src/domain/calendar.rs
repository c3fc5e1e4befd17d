//! Business days: which dates banks and payment channels settle on, and
//! "T+n" arithmetic over them.
//!
//! Owns [`BusinessCalendar`], built from a calendar file such as
//! `workflows/calendars/cn.toml`. A day is a business day unless it is a
//! weekend day or a listed public holiday; a listed make-up working day
//! (调休上班) is a business day even on a Saturday or Sunday.
//!
//! A year the file does not cover is *provisional*: its statutory holidays
//! are computed from the lunar calendar and the solar terms
//! ([`statutory`]), weekends stay off, and no make-up working day is
//! invented, so payouts keep flowing and never on a statutory holiday, but
//! the year's notice may still add bridging days. (Past
//! [`statutory::LAST_STATUTORY_YEAR`], or before the 2024 revision, only
//! weekends are off.) Such a year is reported twice, as one `tracing::warn!`
//! per year and through [`BusinessCalendar::fallback_years`], so ops can add
//! the year's State Council notice; [`BusinessCalendar::covers_range`] lets
//! the app warn ahead of time.
//!
//! Pure apart from [`BusinessCalendar::load`], which only reads the file.
//! Every problem in a file is refused at load, naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;
use toml::value::Date as TomlDate;

pub mod statutory;
mod year;

pub use year::{CalendarYear, CheckedYear, HolidayPeriod, YearError};
use year::{HolidayEntry, YearProblem};

/// Longest holiday period one entry may span, in days (inclusive). The
/// longest ever announced was 10 days (Spring Festival 2020, extended); 14
/// leaves room for that and still catches a mistyped month, such as
/// `to = 2026-12-23` for `2026-02-23`, which would silently close ten months.
pub const MAX_HOLIDAY_DAYS: i64 = 14;

/// The working calendar of one jurisdiction, loaded and checked once.
#[derive(Debug)]
pub struct BusinessCalendar {
    name: String,
    time_zone: Tz,
    /// Covered year → the notice it was copied from.
    sources: BTreeMap<i32, String>,
    /// Covered year applied at run time → its version (1, 2, … per
    /// correction); years from the file are not here.
    applied_versions: BTreeMap<i32, i64>,
    /// Every day off that is not simply a weekend, with its holiday's name.
    holidays: BTreeMap<NaiveDate, String>,
    makeup_workdays: BTreeSet<NaiveDate>,
    /// Years asked about but not covered; each is warned about once.
    fallback_years: Mutex<BTreeSet<i32>>,
    /// Statutory holidays of uncovered years, computed once per year: the
    /// hold of every order asks, and the lunar arithmetic is not free.
    statutory_holidays: Mutex<BTreeMap<i32, BTreeMap<NaiveDate, &'static str>>>,
}

/// Where the days of a year come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearOrigin<'a> {
    /// The calendar file, copied from the notice `source`.
    File { source: &'a str },
    /// Applied at run time from the notice `source`, in its `version`-th
    /// application (a later one corrects an earlier one).
    Applied { source: &'a str, version: i64 },
    /// Provisional: weekends and the statutory holidays computed from the
    /// lunar calendar, until the year's notice is applied.
    Statutory,
    /// Provisional: weekends only (a year outside the computed range).
    WeekendsOnly,
}

impl YearOrigin<'_> {
    pub fn is_provisional(&self) -> bool {
        matches!(self, YearOrigin::Statutory | YearOrigin::WeekendsOnly)
    }

    /// A stable name for APIs and metrics: `file`, `applied`, `statutory` or
    /// `weekends_only`.
    pub fn as_str(&self) -> &'static str {
        match self {
            YearOrigin::File { .. } => "file",
            YearOrigin::Applied { .. } => "applied",
            YearOrigin::Statutory => "statutory",
            YearOrigin::WeekendsOnly => "weekends_only",
        }
    }
}

/// Why a calendar file was refused. Every variant names the file, and all but
/// [`CalendarError::Unreadable`] the line, as `file:line: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("{file}: cannot read the business calendar: {source}")]
    Unreadable {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{}: {message}", line_or_unknown(*.line))]
    Syntax {
        file: String,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{file}:{line}: year table [years.{key}] must be named by a four-digit year such as 2026"
    )]
    InvalidYear {
        file: String,
        line: usize,
        key: String,
    },
    #[error(
        "{file}:{line}: unknown time zone {name:?}; use an IANA name such as \"Asia/Shanghai\""
    )]
    UnknownTimeZone {
        file: String,
        line: usize,
        name: String,
    },
    /// The TOML parser already refuses impossible dates such as 2026-02-30;
    /// this guards the conversion to `NaiveDate` all the same.
    #[error("{file}:{line}: {value} is not a calendar date; write a local date such as 2026-02-15")]
    NotADate {
        file: String,
        line: usize,
        value: String,
    },
    #[error("{file}:{line}: {date} is listed under [years.{year}] but is not in {year}")]
    DateOutsideYear {
        file: String,
        line: usize,
        date: NaiveDate,
        year: i32,
    },
    #[error("{file}:{line}: holiday {name} ends ({to}) before it starts ({from})")]
    HolidayEndsBeforeStart {
        file: String,
        line: usize,
        name: String,
        from: NaiveDate,
        to: NaiveDate,
    },
    #[error(
        "{file}:{line}: holiday {name} runs from {from} to {to}, past the end of [years.{year}]; \
         split it at the year end and list each part under its own year"
    )]
    HolidaySpansYears {
        file: String,
        line: usize,
        name: String,
        from: NaiveDate,
        to: NaiveDate,
        year: i32,
    },
    #[error(
        "{file}:{line}: holiday {name} is {days} days long; \
         more than {MAX_HOLIDAY_DAYS} is taken to be a typo"
    )]
    HolidayTooLong {
        file: String,
        line: usize,
        name: String,
        days: i64,
    },
    #[error(
        "{file}:{line}: make-up working day {date} is a {weekday}, \
         but make-up days are Saturdays or Sundays"
    )]
    MakeupDayNotWeekend {
        file: String,
        line: usize,
        date: NaiveDate,
        weekday: Weekday,
    },
    #[error(
        "{file}:{line}: {date} is listed as a make-up working day \
         and as holiday {holiday} (line {holiday_line})"
    )]
    HolidayAndMakeupDay {
        file: String,
        line: usize,
        date: NaiveDate,
        holiday: String,
        holiday_line: usize,
    },
    #[error("{file}:{line}: {date} is already listed on line {first_line}")]
    DuplicateDate {
        file: String,
        line: usize,
        date: NaiveDate,
        first_line: usize,
    },
}

impl BusinessCalendar {
    /// Reads and checks a calendar file.
    ///
    /// # Errors
    /// [`CalendarError::Unreadable`] if the file cannot be read, otherwise as
    /// [`BusinessCalendar::from_toml_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<BusinessCalendar, CalendarError> {
        let path = path.as_ref();
        let file_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Unreadable {
            file: file_name.clone(),
            source,
        })?;
        BusinessCalendar::from_toml_str(&text, &file_name)
    }

    /// Parses and checks calendar text; `file_name` is only used in errors.
    ///
    /// # Errors
    /// Any [`CalendarError`] but `Unreadable`: the first problem found, with
    /// its line.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<BusinessCalendar, CalendarError> {
        let builder = CalendarBuilder {
            text,
            file: file_name,
        };
        builder.build(builder.parse()?)
    }

    /// The years of a file for `fenrun calendar apply`: a calendar file, or
    /// a file of `[years.YYYY]` tables alone, checked as the loader checks
    /// them.
    ///
    /// # Errors
    /// As [`BusinessCalendar::from_toml_str`], with the file and line.
    pub fn years_from_toml_str(
        text: &str,
        file_name: &str,
    ) -> Result<Vec<CheckedYear>, CalendarError> {
        let builder = CalendarBuilder {
            text,
            file: file_name,
        };
        let parsed: YearsFile = builder.parse()?;
        builder.years(&parsed.years)
    }

    /// The years of a file to apply, as the bodies a `PUT` of each would
    /// carry, after checking them as [`BusinessCalendar::years_from_toml_str`]
    /// does (so a problem names the file and line).
    ///
    /// # Errors
    /// As [`BusinessCalendar::from_toml_str`], with the file and line.
    pub fn year_bodies_from_toml_str(
        text: &str,
        file_name: &str,
    ) -> Result<Vec<(i32, CalendarYear)>, CalendarError> {
        let builder = CalendarBuilder {
            text,
            file: file_name,
        };
        let parsed: YearsFile = builder.parse()?;
        builder.years(&parsed.years)?;
        parsed
            .years
            .iter()
            .map(|(key, table)| Ok((builder.year(key)?, builder.body(table)?)))
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The days off and make-up working days of `year` as this calendar
    /// has them, holidays as runs of consecutive days of one name: the
    /// file's or applied year, or for a provisional year the computed
    /// statutory days (and no make-up days).
    pub fn year_days(&self, year: i32) -> (Vec<HolidayPeriod>, Vec<NaiveDate>) {
        let (Some(first), Some(last)) = (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year, 12, 31),
        ) else {
            return (Vec::new(), Vec::new());
        };
        let days: Vec<(NaiveDate, String)> = if self.covers(year) {
            self.holidays
                .range(first..=last)
                .map(|(date, name)| (*date, name.clone()))
                .collect()
        } else {
            statutory::statutory_days(year)
                .unwrap_or_default()
                .into_iter()
                .map(|day| (day.date, day.name.to_owned()))
                .collect()
        };
        let mut periods: Vec<HolidayPeriod> = Vec::new();
        for (date, name) in days {
            match periods.last_mut() {
                Some(period) if period.name == name && period.to.succ_opt() == Some(date) => {
                    period.to = date;
                }
                _ => periods.push(HolidayPeriod {
                    name,
                    from: date,
                    to: date,
                }),
            }
        }
        let makeup = self.makeup_workdays.range(first..=last).copied().collect();
        (periods, makeup)
    }

    /// The zone in which to decide today's date before asking about it.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The years the file lists, in order.
    pub fn covered_years(&self) -> impl Iterator<Item = i32> + '_ {
        self.sources.keys().copied()
    }

    /// The notice a covered year was copied from, e.g. "国办发明电〔2025〕7号".
    pub fn source(&self, year: i32) -> Option<&str> {
        self.sources.get(&year).map(String::as_str)
    }

    pub fn covers(&self, year: i32) -> bool {
        self.sources.contains_key(&year)
    }

    /// Whether every date from `from` to `to` (inclusive) is in a covered
    /// year, e.g. the coming 60 days for the start-up warning. An empty range
    /// (`to` before `from`) is covered.
    pub fn covers_range(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.first_uncovered_date(from) > to
    }

    /// The first date on or after `from` in a year the file does not cover:
    /// from that day on, the calendar is provisional (statutory holidays
    /// computed, or weekends only).
    pub fn first_uncovered_date(&self, from: NaiveDate) -> NaiveDate {
        let mut date = from;
        // Bounded by the number of covered years.
        while self.covers(date.year()) {
            date = NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
                .expect("covered years have four digits, so the next 1 January exists");
        }
        date
    }

    /// Whether money moves on `date`: not a weekend day or holiday, or a
    /// make-up working day. In an uncovered year weekends and the computed
    /// statutory holidays are off, and the year is reported as provisional
    /// (see [`BusinessCalendar::fallback_years`]).
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        if !self.covers(date.year()) {
            self.record_fallback(date.year());
            return !is_weekend(date) && self.statutory_holiday(date).is_none();
        }
        if self.makeup_workdays.contains(&date) {
            return true;
        }
        !is_weekend(date) && !self.holidays.contains_key(&date)
    }

    /// The holiday `date` falls in: the file's, or in an uncovered year the
    /// computed statutory one.
    pub fn holiday_name(&self, date: NaiveDate) -> Option<&str> {
        if !self.covers(date.year()) {
            return self.statutory_holiday(date);
        }
        self.holidays.get(&date).map(String::as_str)
    }

    /// Whether dates of `year` are decided without the year's notice (from
    /// the computed statutory holidays, or weekends only): release times in
    /// it may still move when the notice is applied.
    pub fn is_provisional(&self, year: i32) -> bool {
        !self.covers(year)
    }

    fn statutory_holiday(&self, date: NaiveDate) -> Option<&'static str> {
        // A poisoned lock only means another thread panicked mid-insert of a
        // whole year; the years present are complete.
        let mut years = self
            .statutory_holidays
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        years
            .entry(date.year())
            .or_insert_with(|| {
                statutory::statutory_days(date.year())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|day| (day.date, day.name))
                    .collect()
            })
            .get(&date)
            .copied()
    }

    /// The `business_days`-th business day strictly after `date` ("T+n");
    /// `date` itself when `business_days` is 0, even if it is a day off.
    ///
    /// # Panics
    /// If the result would lie past [`NaiveDate::MAX`].
    pub fn add_business_days(&self, date: NaiveDate, business_days: u32) -> NaiveDate {
        let mut day = date;
        for _ in 0..business_days {
            day = self.next_business_day_after(day);
        }
        day
    }

    /// The first business day strictly after `date`.
    ///
    /// # Panics
    /// If the result would lie past [`NaiveDate::MAX`].
    pub fn next_business_day_after(&self, date: NaiveDate) -> NaiveDate {
        let mut day = date;
        // Ends: covered years hold finitely many holidays, each at most
        // MAX_HOLIDAY_DAYS long, and elsewhere at most a weekend is skipped.
        loop {
            day = day.succ_opt().expect("business day past NaiveDate::MAX");
            if self.is_business_day(day) {
                return day;
            }
        }
    }

    /// Years asked about that the file does not cover, for which only
    /// weekends were treated as days off. Empty when the calendar sufficed.
    pub fn fallback_years(&self) -> BTreeSet<i32> {
        self.fallback_years
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the days of `year` come from, for the console and the
    /// start-up warning.
    pub fn year_origin(&self, year: i32) -> YearOrigin<'_> {
        match (self.sources.get(&year), self.applied_versions.get(&year)) {
            (Some(source), Some(&version)) => YearOrigin::Applied { source, version },
            (Some(source), None) => YearOrigin::File { source },
            (None, _) if statutory::computes(year) => YearOrigin::Statutory,
            (None, _) => YearOrigin::WeekendsOnly,
        }
    }

    /// The provisional years among those of `from` to `to` (inclusive), in
    /// order, with where their days come from: what ops must apply a notice
    /// for.
    pub fn provisional_years(&self, from: NaiveDate, to: NaiveDate) -> Vec<(i32, YearOrigin<'_>)> {
        (from.year()..=to.year())
            .map(|year| (year, self.year_origin(year)))
            .filter(|(_, origin)| origin.is_provisional())
            .collect()
    }

    /// This calendar with `year` replaced by one applied at run time (its
    /// `version`-th application); every other year is unchanged.
    pub fn with_applied_year(&self, year: CheckedYear, version: i64) -> BusinessCalendar {
        let mut calendar = BusinessCalendar {
            name: self.name.clone(),
            time_zone: self.time_zone,
            sources: self.sources.clone(),
            applied_versions: self.applied_versions.clone(),
            holidays: self.holidays.clone(),
            makeup_workdays: self.makeup_workdays.clone(),
            fallback_years: Mutex::new(BTreeSet::new()),
            statutory_holidays: Mutex::new(BTreeMap::new()),
        };
        calendar.applied_versions.insert(year.year, version);
        calendar.lay(year);
        calendar
    }

    /// Lays `year` over the calendar, dropping what was known of it.
    fn lay(&mut self, year: CheckedYear) {
        let first = NaiveDate::from_ymd_opt(year.year, 1, 1).expect("checked years exist");
        let last = NaiveDate::from_ymd_opt(year.year, 12, 31).expect("checked years exist");
        self.holidays
            .retain(|date, _| !(first..=last).contains(date));
        self.makeup_workdays
            .retain(|date| !(first..=last).contains(date));
        self.holidays.extend(year.holidays);
        self.makeup_workdays.extend(year.makeup_workdays);
        self.sources.insert(year.year, year.source);
    }

    /// Notes that `year` was asked about without being covered; warns (and
    /// returns true) only the first time for each year.
    fn record_fallback(&self, year: i32) -> bool {
        // A poisoned lock only means another thread panicked mid-insert; the
        // set of years is still meaningful, so carry on with it.
        let mut years = self
            .fallback_years
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first_time = years.insert(year);
        if first_time {
            if statutory::computes(year) {
                tracing::warn!(
                    calendar = %self.name,
                    year,
                    "business calendar does not cover this year; it is provisional: its statutory holidays are computed, bridging days and make-up working days wait for the year's notice"
                );
            } else {
                tracing::warn!(
                    calendar = %self.name,
                    year,
                    "business calendar does not cover this year and no statutory holidays are computed for it; only weekends are treated as days off"
                );
            }
        }
        first_time
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

fn line_or_unknown(line: Option<usize>) -> String {
    line.map_or_else(|| "?".to_owned(), |line| line.to_string())
}

/// 1-based line of a byte offset, counted on bytes so an offset inside a
/// multi-byte character (a holiday name) cannot panic.
fn line_of(text: &str, byte_offset: usize) -> usize {
    let before = &text.as_bytes()[..byte_offset.min(text.len())];
    before.iter().filter(|&&byte| byte == b'\n').count() + 1
}

/// The file as written. Unknown keys are refused so that a misspelt
/// `makeup_workday` cannot silently drop every make-up day.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    name: String,
    time_zone: Spanned<String>,
    #[serde(default)]
    years: BTreeMap<Spanned<String>, YearTable>,
}

/// A file of years to apply: a whole calendar file (its name and zone are
/// ignored) or its `[years.YYYY]` tables alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearsFile {
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default, rename = "time_zone")]
    _time_zone: Option<String>,
    years: BTreeMap<Spanned<String>, YearTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearTable {
    source: String,
    #[serde(default)]
    holidays: Vec<HolidayTableEntry>,
    #[serde(default)]
    makeup_workdays: Vec<Spanned<TomlDate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayTableEntry {
    name: String,
    from: Spanned<TomlDate>,
    to: Spanned<TomlDate>,
}

/// Checks a parsed file year by year with the rules of [`year`], turning
/// each broken rule into an error with the file and line.
struct CalendarBuilder<'a> {
    text: &'a str,
    file: &'a str,
}

impl CalendarBuilder<'_> {
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, CalendarError> {
        toml::from_str(self.text).map_err(|error| CalendarError::Syntax {
            file: self.file.to_owned(),
            line: error.span().map(|span| line_of(self.text, span.start)),
            message: error.message().trim_end().to_owned(),
        })
    }

    fn build(&self, parsed: CalendarFile) -> Result<BusinessCalendar, CalendarError> {
        let time_zone = parsed.time_zone.get_ref().parse::<Tz>().map_err(|_| {
            CalendarError::UnknownTimeZone {
                file: self.file.to_owned(),
                line: self.line(&parsed.time_zone),
                name: parsed.time_zone.get_ref().clone(),
            }
        })?;
        let mut calendar = BusinessCalendar {
            name: parsed.name,
            time_zone,
            sources: BTreeMap::new(),
            applied_versions: BTreeMap::new(),
            holidays: BTreeMap::new(),
            makeup_workdays: BTreeSet::new(),
            fallback_years: Mutex::new(BTreeSet::new()),
            statutory_holidays: Mutex::new(BTreeMap::new()),
        };
        for year in self.years(&parsed.years)? {
            calendar.lay(year);
        }
        Ok(calendar)
    }

    fn years(
        &self,
        tables: &BTreeMap<Spanned<String>, YearTable>,
    ) -> Result<Vec<CheckedYear>, CalendarError> {
        tables
            .iter()
            .map(|(key, table)| {
                let year = self.year(key)?;
                self.check_table(year, table)
            })
            .collect()
    }

    fn check_table(&self, year: i32, table: &YearTable) -> Result<CheckedYear, CalendarError> {
        let holidays = table
            .holidays
            .iter()
            .map(|holiday| {
                Ok(HolidayEntry {
                    name: holiday.name.clone(),
                    from: self.date(&holiday.from)?,
                    from_at: self.line(&holiday.from),
                    to: self.date(&holiday.to)?,
                    to_at: self.line(&holiday.to),
                })
            })
            .collect::<Result<Vec<_>, CalendarError>>()?;
        let makeup_workdays = table
            .makeup_workdays
            .iter()
            .map(|day| Ok((self.date(day)?, self.line(day))))
            .collect::<Result<Vec<_>, CalendarError>>()?;
        let days = year::check_year(year, holidays, makeup_workdays)
            .map_err(|problem| self.located(problem))?;
        Ok(days.into_checked(year, table.source.clone()))
    }

    /// The file's error for a broken rule, worded as the file's reader needs
    /// it (`[years.Y]`, both lines of a clash).
    fn located(&self, problem: YearProblem<usize>) -> CalendarError {
        let file = self.file.to_owned();
        match problem {
            YearProblem::DateOutsideYear { at, date, year } => CalendarError::DateOutsideYear {
                file,
                line: at,
                date,
                year,
            },
            YearProblem::HolidayEndsBeforeStart { at, name, from, to } => {
                CalendarError::HolidayEndsBeforeStart {
                    file,
                    line: at,
                    name,
                    from,
                    to,
                }
            }
            YearProblem::HolidaySpansYears {
                at,
                name,
                from,
                to,
                year,
            } => CalendarError::HolidaySpansYears {
                file,
                line: at,
                name,
                from,
                to,
                year,
            },
            YearProblem::HolidayTooLong { at, name, days } => CalendarError::HolidayTooLong {
                file,
                line: at,
                name,
                days,
            },
            YearProblem::MakeupDayNotWeekend { at, date, weekday } => {
                CalendarError::MakeupDayNotWeekend {
                    file,
                    line: at,
                    date,
                    weekday,
                }
            }
            YearProblem::HolidayAndMakeupDay {
                at,
                date,
                holiday,
                holiday_at,
            } => CalendarError::HolidayAndMakeupDay {
                file,
                line: at,
                date,
                holiday,
                holiday_line: holiday_at,
            },
            YearProblem::DuplicateDate { at, date, first_at } => CalendarError::DuplicateDate {
                file,
                line: at,
                date,
                first_line: first_at,
            },
        }
    }

    /// A year table as the body of a `PUT`; its dates were checked already.
    fn body(&self, table: &YearTable) -> Result<CalendarYear, CalendarError> {
        Ok(CalendarYear {
            source: table.source.clone(),
            holidays: table
                .holidays
                .iter()
                .map(|holiday| {
                    Ok(HolidayPeriod {
                        name: holiday.name.clone(),
                        from: self.date(&holiday.from)?,
                        to: self.date(&holiday.to)?,
                    })
                })
                .collect::<Result<_, CalendarError>>()?,
            makeup_workdays: table
                .makeup_workdays
                .iter()
                .map(|day| self.date(day))
                .collect::<Result<_, _>>()?,
        })
    }

    fn year(&self, key: &Spanned<String>) -> Result<i32, CalendarError> {
        let digits = key.get_ref();
        let is_four_digits = digits.len() == 4 && digits.bytes().all(|byte| byte.is_ascii_digit());
        match digits.parse::<i32>() {
            Ok(year) if is_four_digits => Ok(year),
            _ => Err(CalendarError::InvalidYear {
                file: self.file.to_owned(),
                line: self.line(key),
                key: digits.clone(),
            }),
        }
    }

    fn date(&self, value: &Spanned<TomlDate>) -> Result<NaiveDate, CalendarError> {
        let TomlDate { year, month, day } = *value.get_ref();
        NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day)).ok_or_else(
            || CalendarError::NotADate {
                file: self.file.to_owned(),
                line: self.line(value),
                value: value.get_ref().to_string(),
            },
        )
    }

    fn line<T>(&self, value: &Spanned<T>) -> usize {
        line_of(self.text, value.span().start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN_TOML: &str = include_str!("../../workflows/calendars/cn.toml");

    fn cn() -> BusinessCalendar {
        BusinessCalendar::from_toml_str(CN_TOML, "cn.toml").expect("cn.toml loads")
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid test date")
    }

    /// One holiday period as the State Council notice states it, weekdays included.
    struct Period {
        name: &'static str,
        from: (i32, u32, u32, Weekday),
        to: (i32, u32, u32, Weekday),
    }

    const fn period(
        name: &'static str,
        from: (i32, u32, u32, Weekday),
        to: (i32, u32, u32, Weekday),
    ) -> Period {
        Period { name, from, to }
    }

    use Weekday::{Fri, Mon, Sat, Sun, Thu, Tue, Wed};

    /// 国办发明电〔2024〕12号 and 国办发明电〔2025〕7号, typed in independently of cn.toml.
    const NOTICE_HOLIDAYS: [Period; 13] = [
        period("元旦", (2025, 1, 1, Wed), (2025, 1, 1, Wed)),
        period("春节", (2025, 1, 28, Tue), (2025, 2, 4, Tue)),
        period("清明节", (2025, 4, 4, Fri), (2025, 4, 6, Sun)),
        period("劳动节", (2025, 5, 1, Thu), (2025, 5, 5, Mon)),
        period("端午节", (2025, 5, 31, Sat), (2025, 6, 2, Mon)),
        period("国庆节、中秋节", (2025, 10, 1, Wed), (2025, 10, 8, Wed)),
        period("元旦", (2026, 1, 1, Thu), (2026, 1, 3, Sat)),
        period("春节", (2026, 2, 15, Sun), (2026, 2, 23, Mon)),
        period("清明节", (2026, 4, 4, Sat), (2026, 4, 6, Mon)),
        period("劳动节", (2026, 5, 1, Fri), (2026, 5, 5, Tue)),
        period("端午节", (2026, 6, 19, Fri), (2026, 6, 21, Sun)),
        period("中秋节", (2026, 9, 25, Fri), (2026, 9, 27, Sun)),
        period("国庆节", (2026, 10, 1, Thu), (2026, 10, 7, Wed)),
    ];

    const NOTICE_MAKEUP_WORKDAYS: [(i32, u32, u32, Weekday); 11] = [
        (2025, 1, 26, Sun),
        (2025, 2, 8, Sat),
        (2025, 4, 27, Sun),
        (2025, 9, 28, Sun),
        (2025, 10, 11, Sat),
        (2026, 1, 4, Sun),
        (2026, 2, 14, Sat),
        (2026, 2, 28, Sat),
        (2026, 5, 9, Sat),
        (2026, 9, 20, Sun),
        (2026, 10, 10, Sat),
    ];

    fn dated((year, month, day, weekday): (i32, u32, u32, Weekday)) -> NaiveDate {
        let result = date(year, month, day);
        assert_eq!(result.weekday(), weekday, "{result} is not a {weekday}");
        result
    }

    /// Asserts that `first..=last` are all off, that `last_business_day_before`
    /// and `first_business_day_after` are business days, and that nothing in
    /// between them and the period is.
    fn assert_holiday_boundaries(
        last_business_day_before: NaiveDate,
        first: NaiveDate,
        last: NaiveDate,
        first_business_day_after: NaiveDate,
    ) {
        let calendar = cn();
        assert!(calendar.is_business_day(last_business_day_before));
        assert!(!calendar.is_business_day(first), "{first} should be off");
        assert!(!calendar.is_business_day(last), "{last} should be off");
        assert!(calendar.is_business_day(first_business_day_after));
        for day in last_business_day_before
            .succ_opt()
            .unwrap()
            .iter_days()
            .take_while(|day| *day < first_business_day_after)
        {
            assert!(!calendar.is_business_day(day), "{day} should be off");
        }
        assert_eq!(
            calendar.next_business_day_after(last_business_day_before),
            first_business_day_after
        );
        assert_eq!(
            calendar.add_business_days(last_business_day_before, 1),
            first_business_day_after
        );
    }

    #[test]
    fn the_china_calendar_loads_with_its_zone_years_and_sources() {
        let calendar = cn();
        assert_eq!(calendar.time_zone(), chrono_tz::Asia::Shanghai);
        assert_eq!(calendar.covered_years().collect::<Vec<_>>(), [2025, 2026]);
        assert_eq!(calendar.source(2025), Some("国办发明电〔2024〕12号"));
        assert_eq!(calendar.source(2026), Some("国办发明电〔2025〕7号"));
        assert!(calendar.fallback_years().is_empty());
    }

    #[test]
    fn the_china_calendar_loads_from_disk() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/calendars/cn.toml");
        let calendar = BusinessCalendar::load(path).expect("cn.toml loads from disk");
        assert!(calendar.covers(2026));
    }

    #[test]
    fn every_notice_date_falls_on_the_weekday_the_notice_gives() {
        for holiday in &NOTICE_HOLIDAYS {
            dated(holiday.from);
            dated(holiday.to);
        }
        for day in NOTICE_MAKEUP_WORKDAYS {
            dated(day);
        }
    }

    #[test]
    fn the_file_lists_exactly_the_holidays_of_the_notices() {
        let mut expected = BTreeMap::new();
        for holiday in &NOTICE_HOLIDAYS {
            let (from, to) = (dated(holiday.from), dated(holiday.to));
            for day in from.iter_days().take_while(|day| *day <= to) {
                expected.insert(day, holiday.name.to_owned());
            }
        }
        assert_eq!(cn().holidays, expected);
    }

    #[test]
    fn the_file_lists_exactly_the_makeup_workdays_of_the_notices() {
        let expected: BTreeSet<NaiveDate> = NOTICE_MAKEUP_WORKDAYS.into_iter().map(dated).collect();
        assert_eq!(cn().makeup_workdays, expected);
    }

    #[test]
    fn every_makeup_workday_in_the_file_is_a_saturday_or_sunday() {
        for day in &cn().makeup_workdays {
            assert!(is_weekend(*day), "{day} is a {}", day.weekday());
        }
    }

    #[test]
    fn every_2026_makeup_workday_is_a_business_day_though_a_weekend_day() {
        let calendar = cn();
        let days_2026: Vec<_> = NOTICE_MAKEUP_WORKDAYS
            .into_iter()
            .filter(|(year, ..)| *year == 2026)
            .map(dated)
            .collect();
        assert_eq!(days_2026.len(), 6);
        for day in days_2026 {
            assert!(is_weekend(day));
            assert!(
                calendar.is_business_day(day),
                "{day} is a make-up working day"
            );
        }
    }

    #[test]
    fn every_2025_makeup_workday_is_a_business_day_though_a_weekend_day() {
        let calendar = cn();
        for day in NOTICE_MAKEUP_WORKDAYS
            .into_iter()
            .filter(|(year, ..)| *year == 2025)
        {
            assert!(calendar.is_business_day(dated(day)));
        }
    }

    #[test]
    fn new_years_day_2026_runs_thursday_to_saturday_and_sunday_is_worked() {
        assert_holiday_boundaries(
            date(2025, 12, 31),
            date(2026, 1, 1),
            date(2026, 1, 3),
            date(2026, 1, 4),
        );
    }

    #[test]
    fn spring_festival_2026_runs_sunday_to_monday_after_a_saturday_make_up_day() {
        assert_holiday_boundaries(
            date(2026, 2, 14),
            date(2026, 2, 15),
            date(2026, 2, 23),
            date(2026, 2, 24),
        );
    }

    #[test]
    fn qingming_2026_runs_saturday_to_monday() {
        assert_holiday_boundaries(
            date(2026, 4, 3),
            date(2026, 4, 4),
            date(2026, 4, 6),
            date(2026, 4, 7),
        );
    }

    #[test]
    fn labour_day_2026_runs_friday_to_tuesday() {
        assert_holiday_boundaries(
            date(2026, 4, 30),
            date(2026, 5, 1),
            date(2026, 5, 5),
            date(2026, 5, 6),
        );
    }

    #[test]
    fn dragon_boat_2026_runs_friday_to_sunday() {
        assert_holiday_boundaries(
            date(2026, 6, 18),
            date(2026, 6, 19),
            date(2026, 6, 21),
            date(2026, 6, 22),
        );
    }

    #[test]
    fn mid_autumn_2026_runs_friday_to_sunday() {
        assert_holiday_boundaries(
            date(2026, 9, 24),
            date(2026, 9, 25),
            date(2026, 9, 27),
            date(2026, 9, 28),
        );
    }

    #[test]
    fn national_day_2026_runs_thursday_to_wednesday() {
        assert_holiday_boundaries(
            date(2026, 9, 30),
            date(2026, 10, 1),
            date(2026, 10, 7),
            date(2026, 10, 8),
        );
    }

    #[test]
    fn ordinary_weekdays_are_business_days_and_weekends_are_not() {
        let calendar = cn();
        assert!(calendar.is_business_day(date(2026, 3, 10)));
        assert!(!calendar.is_business_day(date(2026, 3, 14)));
        assert!(!calendar.is_business_day(date(2026, 3, 15)));
    }

    #[test]
    fn holiday_name_names_the_period_a_day_falls_in() {
        let calendar = cn();
        assert_eq!(calendar.holiday_name(date(2026, 2, 16)), Some("春节"));
        assert_eq!(
            calendar.holiday_name(date(2025, 10, 6)),
            Some("国庆节、中秋节")
        );
        assert_eq!(calendar.holiday_name(date(2026, 2, 14)), None);
    }

    #[test]
    fn t_plus_3_from_the_thursday_before_spring_festival_2026_is_the_tuesday_after() {
        // Fri Feb 13, Sat Feb 14 (make-up day), then Tue Feb 24.
        assert_eq!(
            cn().add_business_days(date(2026, 2, 12), 3),
            date(2026, 2, 24)
        );
    }

    #[test]
    fn t_plus_1_across_national_day_2026_lands_on_the_thursday_after() {
        let calendar = cn();
        assert_eq!(
            calendar.add_business_days(date(2026, 9, 30), 1),
            date(2026, 10, 8)
        );
        // Sat Oct 10 is worked: Thu Oct 8, Fri Oct 9, Sat Oct 10.
        assert_eq!(
            calendar.add_business_days(date(2026, 9, 30), 3),
            date(2026, 10, 10)
        );
        // Sun Sep 20 is worked too.
        assert_eq!(
            calendar.add_business_days(date(2026, 9, 18), 1),
            date(2026, 9, 20)
        );
    }

    #[test]
    fn t_plus_3_across_national_day_2025_lands_on_the_saturday_make_up_day() {
        let calendar = cn();
        assert_eq!(
            calendar.add_business_days(date(2025, 9, 30), 1),
            date(2025, 10, 9)
        );
        assert_eq!(
            calendar.add_business_days(date(2025, 9, 30), 3),
            date(2025, 10, 11)
        );
    }

    #[test]
    fn business_days_carry_across_the_2025_to_2026_year_end() {
        let calendar = cn();
        assert_eq!(
            calendar.add_business_days(date(2025, 12, 30), 2),
            date(2026, 1, 4)
        );
        assert_eq!(
            calendar.add_business_days(date(2025, 12, 30), 3),
            date(2026, 1, 5)
        );
        assert!(calendar.fallback_years().is_empty());
    }

    #[test]
    fn adding_zero_business_days_returns_the_same_date_even_on_a_holiday() {
        let calendar = cn();
        assert_eq!(
            calendar.add_business_days(date(2026, 2, 16), 0),
            date(2026, 2, 16)
        );
        assert_eq!(
            calendar.add_business_days(date(2026, 3, 10), 0),
            date(2026, 3, 10)
        );
    }

    #[test]
    fn an_uncovered_year_is_provisional_and_skips_weekends_and_its_statutory_holidays() {
        let calendar = cn();
        assert!(!calendar.covers(2027));
        assert!(calendar.is_provisional(2027));
        assert!(!calendar.is_provisional(2026));
        // New Year's Day 2027 is a Friday: off, then the weekend.
        assert!(!calendar.is_business_day(date(2027, 1, 1)));
        assert_eq!(calendar.holiday_name(date(2027, 1, 1)), Some("元旦"));
        assert!(!calendar.is_business_day(date(2027, 1, 2)));
        assert_eq!(
            calendar.add_business_days(date(2026, 12, 31), 1),
            date(2027, 1, 4)
        );
        // (from, T+n, release day): 除夕 (Fri 5 Feb) to 初三 (Mon 8 Feb)
        // with no bridging day invented; Qingming Monday 5 April; Labour
        // Day on a weekend; Dragon Boat Wednesday 9 June; Mid-Autumn
        // Wednesday 15 September; National Day Friday 1 to Sunday 3 October.
        let holds = [
            (date(2027, 2, 3), 3, date(2027, 2, 10)),
            (date(2027, 4, 2), 1, date(2027, 4, 6)),
            (date(2027, 4, 30), 1, date(2027, 5, 3)),
            (date(2027, 6, 8), 1, date(2027, 6, 10)),
            (date(2027, 9, 14), 1, date(2027, 9, 16)),
            (date(2027, 9, 30), 1, date(2027, 10, 4)),
        ];
        for (from, business_days, release) in holds {
            assert_eq!(
                calendar.add_business_days(from, business_days),
                release,
                "T+{business_days} from {from}"
            );
        }
        // No make-up working day is invented: a Saturday stays off.
        assert!(!calendar.is_business_day(date(2027, 2, 20)));
        assert_eq!(calendar.fallback_years(), BTreeSet::from([2027]));
    }

    #[test]
    fn a_year_past_the_computed_range_skips_only_weekends() {
        let calendar = cn();
        let year = statutory::LAST_STATUTORY_YEAR + 1;
        assert!(calendar.is_provisional(year));
        // 1 October 2101 is a Saturday, 3 October a Monday.
        assert!(!calendar.is_business_day(date(year, 10, 1)));
        assert!(calendar.is_business_day(date(year, 10, 3)));
        assert_eq!(calendar.holiday_name(date(year, 10, 3)), None);
    }

    const NOTICE_2027: &str = r#"
[years.2027]
source = "国办发明电〔2026〕9号"
holidays = [
    { name = "元旦", from = 2027-01-01, to = 2027-01-03 },
    { name = "春节", from = 2027-02-05, to = 2027-02-11 },
]
makeup_workdays = [2027-02-20]
"#;

    #[test]
    fn an_applied_year_replaces_the_provisional_one_and_leaves_other_years_alone() {
        let calendar = cn();
        assert_eq!(calendar.year_origin(2027), YearOrigin::Statutory);
        assert!(calendar.year_origin(2027).is_provisional());
        let years = BusinessCalendar::years_from_toml_str(NOTICE_2027, "2027.toml").unwrap();
        let [year] = <[CheckedYear; 1]>::try_from(years).unwrap();
        let applied = calendar.with_applied_year(year, 1);
        assert_eq!(
            applied.year_origin(2027),
            YearOrigin::Applied {
                source: "国办发明电〔2026〕9号",
                version: 1
            }
        );
        assert!(!applied.is_provisional(2027));
        // The bridging days 9–11 February are off now, and 20 February worked.
        assert_eq!(
            applied.add_business_days(date(2027, 2, 3), 3),
            date(2027, 2, 15)
        );
        assert!(applied.is_business_day(date(2027, 2, 20)));
        assert_eq!(applied.fallback_years(), BTreeSet::new());
        // 2026 is still the file's.
        assert_eq!(
            applied.year_origin(2026),
            YearOrigin::File {
                source: "国办发明电〔2025〕7号"
            }
        );
        assert_eq!(
            applied
                .holidays
                .range(date(2026, 1, 1)..date(2027, 1, 1))
                .count(),
            {
                cn().holidays
                    .range(date(2026, 1, 1)..date(2027, 1, 1))
                    .count()
            }
        );
    }

    #[test]
    fn the_provisional_years_of_a_range_are_those_the_file_does_not_cover() {
        let calendar = cn();
        assert_eq!(
            calendar.provisional_years(date(2026, 11, 20), date(2027, 1, 19)),
            [(2027, YearOrigin::Statutory)]
        );
        assert!(
            calendar
                .provisional_years(date(2026, 1, 1), date(2026, 12, 31))
                .is_empty()
        );
        let past = statutory::LAST_STATUTORY_YEAR + 1;
        assert_eq!(
            calendar.provisional_years(date(past, 1, 1), date(past, 2, 1)),
            [(past, YearOrigin::WeekendsOnly)]
        );
    }

    #[test]
    fn a_corrected_year_replaces_every_day_of_the_earlier_application() {
        let years = BusinessCalendar::years_from_toml_str(NOTICE_2027, "2027.toml").unwrap();
        let first = cn().with_applied_year(years[0].clone(), 1);
        let corrected = CalendarYear {
            source: "国办发明电〔2026〕9号（更正）".to_owned(),
            holidays: vec![HolidayPeriod {
                name: "春节".to_owned(),
                from: date(2027, 2, 6),
                to: date(2027, 2, 12),
            }],
            makeup_workdays: vec![],
        }
        .check(2027)
        .unwrap();
        let second = first.with_applied_year(corrected, 2);
        assert!(second.is_business_day(date(2027, 2, 5)));
        assert!(!second.is_business_day(date(2027, 2, 12)));
        assert!(
            !second.is_business_day(date(2027, 2, 20)),
            "no longer worked"
        );
        assert!(second.is_business_day(date(2027, 1, 1)), "no longer listed");
        assert_eq!(
            second.year_origin(2027),
            YearOrigin::Applied {
                source: "国办发明电〔2026〕9号（更正）",
                version: 2
            }
        );
    }

    #[test]
    fn a_year_file_to_apply_is_checked_as_the_calendar_file_is() {
        let bad = NOTICE_2027.replace(
            "makeup_workdays = [2027-02-20]",
            "makeup_workdays = [2027-02-17]",
        );
        let error = BusinessCalendar::years_from_toml_str(&bad, "2027.toml").unwrap_err();
        assert_eq!(
            error.to_string(),
            "2027.toml:8: make-up working day 2027-02-17 is a Wed, but make-up days are Saturdays or Sundays"
        );
        let whole_file = BusinessCalendar::years_from_toml_str(CN_TOML, "cn.toml").unwrap();
        assert_eq!(
            whole_file.iter().map(|year| year.year).collect::<Vec<_>>(),
            [2025, 2026]
        );
    }

    #[test]
    fn a_year_file_gives_the_bodies_a_put_would_carry() {
        let bodies = BusinessCalendar::year_bodies_from_toml_str(NOTICE_2027, "2027.toml").unwrap();
        let [(year, body)] = <[(i32, CalendarYear); 1]>::try_from(bodies).unwrap();
        assert_eq!(year, 2027);
        assert_eq!(body.source, "国办发明电〔2026〕9号");
        assert_eq!(body.holidays.len(), 2);
        assert_eq!(body.makeup_workdays, [date(2027, 2, 20)]);
        // Checked as the loader checks: the same day off twice is refused.
        let checked = body.check(2027).unwrap();
        let years = BusinessCalendar::years_from_toml_str(NOTICE_2027, "2027.toml").unwrap();
        assert_eq!(checked, years[0]);
        let bad = NOTICE_2027.replace("to = 2027-02-11", "to = 2027-02-01");
        let error = BusinessCalendar::year_bodies_from_toml_str(&bad, "2027.toml").unwrap_err();
        assert!(error.to_string().starts_with("2027.toml:"), "{error}");
    }

    #[test]
    fn the_days_of_a_year_come_back_as_runs_of_one_holiday() {
        let calendar = cn();
        let (holidays, makeup) = calendar.year_days(2026);
        let spring = holidays
            .iter()
            .find(|period| period.name == "春节")
            .unwrap();
        assert!(spring.to > spring.from, "{spring:?}");
        assert!(!makeup.is_empty());
        // A provisional year: the 13 statutory days, no make-up days.
        let (statutory, makeup) = calendar.year_days(2027);
        let days: i64 = statutory
            .iter()
            .map(|period| (period.to - period.from).num_days() + 1)
            .sum();
        assert_eq!(days, 13, "{statutory:?}");
        assert!(makeup.is_empty());
        assert!(calendar.year_days(i32::MAX).0.is_empty());
    }

    #[test]
    fn an_uncovered_year_is_warned_about_once_however_often_it_is_asked() {
        // Asserted on the decision to warn, not on a captured log: tracing's
        // per-callsite interest is process-wide and races with parallel tests.
        let calendar = cn();
        calendar.add_business_days(date(2027, 1, 1), 30);
        assert!(
            !calendar.record_fallback(2027),
            "2027 was already warned about"
        );
        assert!(calendar.record_fallback(2028));
        calendar.is_business_day(date(2028, 6, 1));
        assert!(!calendar.record_fallback(2028));
        assert_eq!(calendar.fallback_years(), BTreeSet::from([2027, 2028]));
    }

    #[test]
    fn the_coming_60_days_from_mid_november_2026_are_not_covered() {
        let calendar = cn();
        let today = date(2026, 11, 15);
        let horizon = today + chrono::Days::new(60);
        assert!(!calendar.covers_range(today, horizon));
        assert_eq!(calendar.first_uncovered_date(today), date(2027, 1, 1));
        assert!(calendar.covers_range(date(2025, 12, 1), date(2026, 1, 30)));
        assert!(calendar.covers_range(today, date(2026, 12, 31)));
    }

    #[test]
    fn a_date_before_the_first_covered_year_is_itself_uncovered() {
        assert_eq!(
            cn().first_uncovered_date(date(2024, 6, 1)),
            date(2024, 6, 1)
        );
    }

    #[test]
    fn checking_coverage_does_not_count_as_a_fallback() {
        let calendar = cn();
        assert!(!calendar.covers_range(date(2026, 12, 1), date(2027, 2, 1)));
        assert!(calendar.fallback_years().is_empty());
    }

    /// Loads `text` as "test.toml" and returns the error message. Test
    /// inputs start with the same two lines, so line 3 is the first after them.
    fn refusal(body: &str) -> String {
        let text = format!("name = \"test\"\ntime_zone = \"Asia/Shanghai\"\n{body}");
        BusinessCalendar::from_toml_str(&text, "test.toml")
            .expect_err("the calendar should be refused")
            .to_string()
    }

    #[test]
    fn a_holiday_ending_before_it_starts_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            holidays = [
                { name = "春节", from = 2026-02-15, to = 2026-02-13 },
            ]"#,
        );
        let expected = "test.toml:6: holiday 春节 ends (2026-02-13) before it starts (2026-02-15)";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_holiday_in_another_year_than_its_table_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2025]
            source = "x"
            holidays = [{ name = "春节", from = 2026-02-15, to = 2026-02-23 }]"#,
        );
        let expected = "test.toml:5: 2026-02-15 is listed under [years.2025] but is not in 2025";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_makeup_workday_in_another_year_than_its_table_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workdays = [
                2025-02-08,
            ]"#,
        );
        let expected = "test.toml:6: 2025-02-08 is listed under [years.2026] but is not in 2026";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_holiday_crossing_the_year_end_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2025]
            source = "x"
            holidays = [{ name = "元旦", from = 2025-12-31, to = 2026-01-02 }]"#,
        );
        let expected = "test.toml:5: holiday 元旦 runs from 2025-12-31 to 2026-01-02, \
                        past the end of [years.2025]; \
                        split it at the year end and list each part under its own year";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_weekday_listed_as_makeup_workday_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workdays = [2026-02-14, 2026-02-13]"#,
        );
        let expected = "test.toml:5: make-up working day 2026-02-13 is a Fri, \
                        but make-up days are Saturdays or Sundays";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_date_both_holiday_and_makeup_workday_is_refused_naming_both_lines() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            holidays = [{ name = "春节", from = 2026-02-14, to = 2026-02-23 }]
            makeup_workdays = [
                2026-02-14,
            ]"#,
        );
        let expected = "test.toml:7: 2026-02-14 is listed as a make-up working day \
                        and as holiday 春节 (line 5)";
        assert_eq!(message, expected);
    }

    #[test]
    fn a_holiday_longer_than_two_weeks_is_refused_as_a_typo() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            holidays = [{ name = "春节", from = 2026-02-15, to = 2026-12-23 }]"#,
        );
        let expected = "test.toml:5: holiday 春节 is 312 days long; \
                        more than 14 is taken to be a typo";
        assert_eq!(message, expected);
    }

    #[test]
    fn overlapping_holidays_are_refused_naming_both_lines() {
        let message = refusal(
            r#"[years.2025]
            source = "x"
            holidays = [
                { name = "国庆节", from = 2025-10-01, to = 2025-10-07 },
                { name = "中秋节", from = 2025-10-06, to = 2025-10-06 },
            ]"#,
        );
        assert_eq!(
            message,
            "test.toml:7: 2025-10-06 is already listed on line 6"
        );
    }

    #[test]
    fn a_makeup_workday_listed_twice_is_refused_naming_both_lines() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workdays = [
                2026-02-14,
                2026-02-14,
            ]"#,
        );
        assert_eq!(
            message,
            "test.toml:7: 2026-02-14 is already listed on line 6"
        );
    }

    #[test]
    fn a_year_table_not_named_by_a_year_is_refused_with_its_line() {
        let message = refusal(
            r#"
            [years.next]
            source = "x""#,
        );
        let expected = "test.toml:4: year table [years.next] \
                        must be named by a four-digit year such as 2026";
        assert_eq!(message, expected);
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_its_line() {
        let error = BusinessCalendar::from_toml_str(
            "name = \"test\"\ntime_zone = \"Asia/Beijing\"\n",
            "test.toml",
        )
        .expect_err("Asia/Beijing is not an IANA zone");
        let expected = "test.toml:2: unknown time zone \"Asia/Beijing\"; \
                        use an IANA name such as \"Asia/Shanghai\"";
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn a_misspelt_key_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workday = [2026-02-14]"#,
        );
        assert!(
            message.starts_with("test.toml:5: unknown field `makeup_workday`"),
            "{message}"
        );
    }

    #[test]
    fn a_quoted_date_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workdays = ["2026-02-14"]"#,
        );
        assert!(
            message.starts_with("test.toml:5: invalid type: string"),
            "{message}"
        );
    }

    #[test]
    fn an_impossible_date_is_refused_with_its_line() {
        let message = refusal(
            r#"[years.2026]
            source = "x"
            makeup_workdays = [2026-02-29]"#,
        );
        assert!(
            message.starts_with("test.toml:5: invalid date"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_is_refused_naming_the_file() {
        let message = BusinessCalendar::load("/nonexistent/calendar.toml")
            .expect_err("no such file")
            .to_string();
        assert!(
            message.starts_with("/nonexistent/calendar.toml: cannot read the business calendar"),
            "{message}"
        );
    }
}
