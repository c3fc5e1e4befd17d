//! Individual income tax withheld from distributors' commissions
//! (劳务报酬所得, 预扣预缴), by either of the two methods a withholding agent
//! may be on. The rules and their sources are in the tax reference
//! (`tax-cn.md`); section numbers below are its sections.
//!
//! # Per-payment (按次预扣预缴) — the default
//!
//! 国家税务总局公告2018年第61号 第八条 with 个人所得税预扣率表二 (§1.1). For
//! continuing income from one project "one time" (一次) is one calendar month
//! (个人所得税法实施条例 第十四条, §1.2), so a distributor's payouts from one
//! withholding agent in one month are one 次, taxed on the month-to-date gross
//! (§1.3):
//!
//! ```text
//! fee      = 800.00 if gross ≤ 4000.00 else round_half_up(gross × 20%)
//! taxable  = max(0, gross − fee)
//! tax      = max(0, round_half_up(taxable × rate − quick))    表二: 20%/0 ≤ 20,000; 30%/2,000 ≤ 50,000; 40%/7,000
//! withhold = tax(month-to-date gross) − tax already withheld this month
//! ```
//!
//! # Cumulative (累计预扣法) — platform enterprises
//!
//! 国家税务总局公告2025年第16号 (in force 2025-10-01), applying 61号's cumulative
//! method to platform workers' labour remuneration, with 个人所得税预扣率表一
//! (§2.3, §2.4), per withholding agent, distributor and tax year:
//!
//! ```text
//! fee      = round_half_up(cumulative income × 20%)           累计费用
//! basic    = 5,000 × n, n = consecutive months with income this year, this month included   累计减除费用
//! taxable  = max(0, cumulative income − fee − basic)
//! tax      = max(0, round_half_up(taxable × rate − quick))    表一: 3%…45%, quick 0…181,920
//! withhold = max(0, tax − tax already withheld this year)     "为负值时，暂不退税": no refund within the year
//! ```
//!
//! Terms the formulas carry that fenrun holds at zero: 免税收入 (tax-free
//! income), 其他扣除 / 允许扣除的税费 (no VAT surcharges while distributors'
//! VAT is exempt, §1.5, §3) and 减免税额 (tax reductions).
//!
//! # Rounding
//!
//! Half-up to the fen through [`Money::round_half_up`], only at the fee and at
//! the tax, always on the amount to date (§1.4). Ties occur: 20,000.15 × 30% =
//! 6,000.045. Everything else is exact decimal or integer fen arithmetic,
//! checked.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::money::{Money, Rate};

/// 800 yuan: the fee when one 次 is at most 4,000 (61号 第八条).
const FLAT_FEE: Money = Money::from_fen(80_000);

/// 4,000 yuan: up to and including it the fee is flat ("不超过四千元"); above
/// it the fee is 20% of the income.
const FLAT_FEE_LIMIT: Money = Money::from_fen(400_000);

/// 20%: the expense share (费用) of the income above 4,000 per 次, and of the
/// cumulative income under 16号.
const EXPENSE_PERCENT: i64 = 20;

/// 5,000 yuan per consecutive month: the cumulative method's 减除费用 (16号).
const MONTHLY_BASIC_DEDUCTION: Money = Money::from_fen(500_000);

/// A tax year has twelve months, so at most twelve consecutive ones.
pub const MAX_MONTHS_COUNT: u8 = 12;

/// The first month the cumulative method applies: 16号 is in force from
/// 2025-10-01.
pub const CUMULATIVE_METHOD_FROM: Month = Month {
    year: 2025,
    month: 10,
};

/// One line of a withholding rate table: up to `upper_fen` of taxable amount
/// (inclusive; `None` = no limit) the rate is `percent`, less `quick_fen`.
struct Band {
    upper_fen: Option<i64>,
    percent: i64,
    quick_fen: i64,
}

const fn band(upper_fen: Option<i64>, percent: i64, quick_fen: i64) -> Band {
    Band {
        upper_fen,
        percent,
        quick_fen,
    }
}

/// 个人所得税预扣率表二 (劳务报酬, per payment), §1.1.
const TABLE_TWO: [Band; 3] = [
    band(Some(2_000_000), 20, 0),
    band(Some(5_000_000), 30, 200_000),
    band(None, 40, 700_000),
];

/// 个人所得税预扣率表一 (cumulative), §2.1.
const TABLE_ONE: [Band; 7] = [
    band(Some(3_600_000), 3, 0),
    band(Some(14_400_000), 10, 252_000),
    band(Some(30_000_000), 20, 1_692_000),
    band(Some(42_000_000), 25, 3_192_000),
    band(Some(66_000_000), 30, 5_292_000),
    band(Some(96_000_000), 35, 8_592_000),
    band(None, 45, 18_192_000),
];

/// Why a tax computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error("{what} must not be negative, got {amount}")]
    Negative { what: &'static str, amount: Money },
    #[error("amounts too large to compute the tax on")]
    Overflow,
    #[error("month must be YYYY-MM such as 2026-03, not {0:?}")]
    BadMonth(String),
    #[error("withholding method must be per-payment or cumulative, not {0:?}")]
    BadMethod(String),
    #[error(
        "months count must be between 1 and {max} (consecutive months with income this year, this month included), not {months_count}"
    )]
    BadMonthsCount { months_count: u8, max: u8 },
    #[error(
        "the cumulative method (2025年第16号) applies from {CUMULATIVE_METHOD_FROM}, not to {0}"
    )]
    CumulativeMethodNotInForce(Month),
    #[error(
        "the cumulative method needs the months count and the year's earlier income and withheld tax"
    )]
    MissingCumulativeContext,
    #[error(
        "months count, earlier income and earlier withheld tax apply only to the cumulative method"
    )]
    UnexpectedCumulativeContext,
    /// Per-payment: more was withheld this month than the month-to-date tax,
    /// which consistent inputs never produce. Refunding within the month
    /// (after a clawback) is a policy decision (§1.3) this engine does not make.
    #[error(
        "tax withheld earlier this month ({withheld}) exceeds the tax on the month-to-date gross ({tax})"
    )]
    WithheldExceedsTax { withheld: Money, tax: Money },
    /// The tax due now exceeds the payout itself: earlier withholding fell
    /// short (or, under the cumulative method, the consecutive-month count
    /// restarted after a gap while the year's income was kept).
    #[error("tax due on this payout ({due}) exceeds the payout ({payment})")]
    WithholdingExceedsPayment { due: Money, payment: Money },
}

/// How a withholding agent withholds; one per agent (the `withholding_method`
/// setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithholdingMethod {
    /// 按次预扣预缴 (61号 第八条): the month's payouts are one 次.
    #[default]
    PerPayment,
    /// 累计预扣法 (2025年第16号), for internet platform enterprises.
    Cumulative,
}

impl WithholdingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WithholdingMethod::PerPayment => "per-payment",
            WithholdingMethod::Cumulative => "cumulative",
        }
    }
}

impl fmt::Display for WithholdingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WithholdingMethod {
    type Err = TaxError;
    fn from_str(text: &str) -> Result<WithholdingMethod, TaxError> {
        [WithholdingMethod::PerPayment, WithholdingMethod::Cumulative]
            .into_iter()
            .find(|method| method.as_str() == text)
            .ok_or_else(|| TaxError::BadMethod(text.to_owned()))
    }
}

/// A calendar month, `YYYY-MM`: the unit of the per-payment method's 次 and of
/// the declaration's 税款所属期.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

impl Month {
    /// A month of a four-digit year.
    pub fn new(year: u16, month: u8) -> Result<Month, TaxError> {
        if !(1000..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(TaxError::BadMonth(format!("{year}-{month:02}")));
        }
        Ok(Month { year, month })
    }

    /// Parses exactly `YYYY-MM`: four digits, a hyphen, two digits, 01–12.
    pub fn parse(text: &str) -> Result<Month, TaxError> {
        let bad = || TaxError::BadMonth(text.to_owned());
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return Err(bad());
        }
        let year = year.parse().map_err(|_| bad())?;
        let month = month.parse().map_err(|_| bad())?;
        Month::new(year, month).map_err(|_| bad())
    }

    pub fn year(self) -> u16 {
        self.year
    }

    /// 1 = January … 12 = December.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The month a day falls in.
    pub fn of(day: chrono::NaiveDate) -> Month {
        use chrono::Datelike;
        Month {
            year: u16::try_from(day.year()).unwrap_or(0),
            month: day.month() as u8,
        }
    }

    /// The month before (December of the year before January).
    pub fn previous(self) -> Month {
        match self.month {
            1 => Month {
                year: self.year - 1,
                month: 12,
            },
            month => Month {
                year: self.year,
                month: month - 1,
            },
        }
    }

    /// The number of days in the month (Gregorian leap years).
    pub fn days(self) -> u8 {
        let year = self.year;
        match self.month {
            2 if (year.is_multiple_of(4) && !year.is_multiple_of(100))
                || year.is_multiple_of(400) =>
            {
                29
            }
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// 税款所属期 as printed: `2026年3月1日至2026年3月31日`.
    pub fn tax_period(self) -> String {
        let (year, month, last_day) = (self.year, self.month, self.days());
        format!("{year}年{month}月1日至{year}年{month}月{last_day}日")
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl fmt::Debug for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Month({self})")
    }
}

impl FromStr for Month {
    type Err = TaxError;
    fn from_str(text: &str) -> Result<Month, TaxError> {
        Month::parse(text)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The tax on an amount to date, with every figure that led to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaxComputation {
    /// 收入: the month-to-date gross (per-payment) or the year's cumulative
    /// income (累计收入).
    pub income: Money,
    /// 费用 / 累计费用: 800.00 or 20% of the income (per-payment; 800.00 even
    /// when the income is smaller), 20% of the cumulative income (cumulative).
    pub fee: Money,
    /// 累计减除费用 = 5,000 × consecutive months (cumulative); zero per-payment.
    pub basic_deduction: Money,
    /// 应纳税所得额: income − fee − basic deduction, never below zero.
    pub taxable: Money,
    /// 预扣率 of the taxable amount's band.
    pub rate: Rate,
    /// 速算扣除数 of that band.
    pub quick_deduction: Money,
    /// 应纳税额 to date: max(0, round_half_up(taxable × rate − quick deduction)).
    pub tax: Money,
}

/// The withholding on one payout: what a certificate (§4) and the monthly
/// declaration (§5) need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withholding {
    pub method: WithholdingMethod,
    /// Consecutive months with income this year, this month included, that
    /// the basic deduction counts (cumulative only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months_count: Option<u8>,
    /// 本次收入: this payout's gross.
    pub gross: Money,
    /// Month-to-date gross (per-payment) or cumulative income this year,
    /// this payout included.
    pub income_to_date: Money,
    /// See [`TaxComputation::fee`].
    pub fee: Money,
    /// See [`TaxComputation::basic_deduction`].
    pub basic_deduction: Money,
    /// 应纳税所得额 to date.
    pub taxable: Money,
    pub rate: Rate,
    pub quick_deduction: Money,
    /// 应纳税额 to date (this month, or this year for the cumulative method).
    pub tax_to_date: Money,
    /// 已扣缴税额: withheld earlier this month (or year).
    pub withheld_before: Money,
    /// 本次扣缴税额: withheld from this payout.
    pub withheld_now: Money,
    /// 实付金额: gross − withheld now.
    pub net: Money,
}

impl Withholding {
    /// The figures of a payout that was returned: the method and rate as
    /// they were, every amount zero, so a certificate voiding the original
    /// states that nothing was paid or withheld.
    pub fn voided(&self) -> Withholding {
        Withholding {
            method: self.method,
            months_count: self.months_count,
            gross: Money::ZERO,
            income_to_date: Money::ZERO,
            fee: Money::ZERO,
            basic_deduction: Money::ZERO,
            taxable: Money::ZERO,
            rate: self.rate,
            quick_deduction: Money::ZERO,
            tax_to_date: Money::ZERO,
            withheld_before: Money::ZERO,
            withheld_now: Money::ZERO,
            net: Money::ZERO,
        }
    }
}

/// What the cumulative method needs to know of the year before a month's
/// payouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CumulativeContext {
    /// The month of the payouts.
    pub month: Month,
    /// Consecutive months with income this year from this agent, this month
    /// included (1 ≤ n ≤ the month's number).
    pub months_count: u8,
    /// The year's income before this month's first quoted payout.
    pub prior_income: Money,
    /// The tax withheld on that income.
    pub prior_withheld: Money,
}

/// The per-payment tax on one 次: a month-to-date gross (§1.1 formula).
pub fn per_payment_tax(month_to_date_gross: Money) -> Result<TaxComputation, TaxError> {
    let income = non_negative("month-to-date gross", month_to_date_gross)?;
    let fee = if income <= FLAT_FEE_LIMIT {
        FLAT_FEE
    } else {
        income.times_rounded(percent(EXPENSE_PERCENT))?
    };
    let taxable = income.checked_sub(fee).ok_or(TaxError::Overflow)?;
    table_tax(
        income,
        fee,
        Money::ZERO,
        taxable.max(Money::ZERO),
        &TABLE_TWO,
    )
}

/// The cumulative tax to date on a year's income with `months_count`
/// consecutive months (§2.4 formula), before subtracting what was withheld.
pub fn cumulative_tax(
    cumulative_income: Money,
    months_count: u8,
) -> Result<TaxComputation, TaxError> {
    let income = non_negative("cumulative income", cumulative_income)?;
    let months_count = checked_months_count(months_count, MAX_MONTHS_COUNT)?;
    let fee = income.times_rounded(percent(EXPENSE_PERCENT))?;
    let basic_deduction = MONTHLY_BASIC_DEDUCTION
        .fen()
        .checked_mul(i64::from(months_count))
        .map(Money::from_fen)
        .ok_or(TaxError::Overflow)?;
    let taxable = income
        .checked_sub(fee)
        .and_then(|rest| rest.checked_sub(basic_deduction))
        .ok_or(TaxError::Overflow)?;
    table_tax(
        income,
        fee,
        basic_deduction,
        taxable.max(Money::ZERO),
        &TABLE_ONE,
    )
}

/// Per-payment withholding on `payment`, given the gross paid and the tax
/// withheld earlier in the same month by the same agent (§1.3).
pub fn withhold_per_payment(
    prior_gross_this_month: Money,
    prior_withheld_this_month: Money,
    payment: Money,
) -> Result<Withholding, TaxError> {
    let prior_gross = non_negative("gross paid earlier this month", prior_gross_this_month)?;
    let withheld_before =
        non_negative("tax withheld earlier this month", prior_withheld_this_month)?;
    let payment = non_negative("payment", payment)?;
    let month_to_date = prior_gross.checked_add(payment).ok_or(TaxError::Overflow)?;
    let computation = per_payment_tax(month_to_date)?;
    let withheld_now = computation
        .tax
        .checked_sub(withheld_before)
        .ok_or(TaxError::Overflow)?;
    if withheld_now.is_negative() {
        return Err(TaxError::WithheldExceedsTax {
            withheld: withheld_before,
            tax: computation.tax,
        });
    }
    withholding(
        WithholdingMethod::PerPayment,
        None,
        payment,
        computation,
        withheld_before,
        withheld_now,
    )
}

/// Cumulative withholding on `payment`, given the year's income and tax
/// withheld before it and the consecutive months with income this year, this
/// month included (§2.4). A negative result withholds nothing: "计算的本期应预扣
/// 预缴税额为负值时，暂不退税" (no refund within the year; the annual 汇算 settles).
pub fn withhold_cumulative(
    prior_income_this_year: Money,
    prior_withheld_this_year: Money,
    months_count: u8,
    payment: Money,
) -> Result<Withholding, TaxError> {
    let prior_income = non_negative("income earlier this year", prior_income_this_year)?;
    let withheld_before = non_negative("tax withheld earlier this year", prior_withheld_this_year)?;
    let payment = non_negative("payment", payment)?;
    let income = prior_income
        .checked_add(payment)
        .ok_or(TaxError::Overflow)?;
    let computation = cumulative_tax(income, months_count)?;
    let due = computation
        .tax
        .checked_sub(withheld_before)
        .ok_or(TaxError::Overflow)?;
    withholding(
        WithholdingMethod::Cumulative,
        Some(months_count),
        payment,
        computation,
        withheld_before,
        due.max(Money::ZERO),
    )
}

/// The withholding on each of a sequence of payouts to one distributor within
/// one month, in order (the accountant's trial calculation, 试算). Per-payment
/// starts the month at zero; the cumulative method starts from `cumulative`.
pub fn quote_sequence(
    method: WithholdingMethod,
    payments: &[Money],
    cumulative: Option<CumulativeContext>,
) -> Result<Vec<Withholding>, TaxError> {
    let (mut income, mut withheld) = match (method, cumulative) {
        (WithholdingMethod::PerPayment, None) => (Money::ZERO, Money::ZERO),
        (WithholdingMethod::Cumulative, Some(context)) => {
            if context.month < CUMULATIVE_METHOD_FROM {
                return Err(TaxError::CumulativeMethodNotInForce(context.month));
            }
            checked_months_count(context.months_count, context.month.month())?;
            (context.prior_income, context.prior_withheld)
        }
        (WithholdingMethod::PerPayment, Some(_)) => {
            return Err(TaxError::UnexpectedCumulativeContext);
        }
        (WithholdingMethod::Cumulative, None) => return Err(TaxError::MissingCumulativeContext),
    };
    let mut quotes = Vec::with_capacity(payments.len());
    for &payment in payments {
        let quote = match cumulative {
            None => withhold_per_payment(income, withheld, payment)?,
            Some(context) => withhold_cumulative(income, withheld, context.months_count, payment)?,
        };
        income = quote.income_to_date;
        withheld = withheld
            .checked_add(quote.withheld_now)
            .ok_or(TaxError::Overflow)?;
        quotes.push(quote);
    }
    Ok(quotes)
}

fn withholding(
    method: WithholdingMethod,
    months_count: Option<u8>,
    payment: Money,
    computation: TaxComputation,
    withheld_before: Money,
    withheld_now: Money,
) -> Result<Withholding, TaxError> {
    debug_assert!(!withheld_now.is_negative(), "withholding is never negative");
    if withheld_now > payment {
        return Err(TaxError::WithholdingExceedsPayment {
            due: withheld_now,
            payment,
        });
    }
    let net = payment
        .checked_sub(withheld_now)
        .ok_or(TaxError::Overflow)?;
    Ok(Withholding {
        method,
        months_count,
        gross: payment,
        income_to_date: computation.income,
        fee: computation.fee,
        basic_deduction: computation.basic_deduction,
        taxable: computation.taxable,
        rate: computation.rate,
        quick_deduction: computation.quick_deduction,
        tax_to_date: computation.tax,
        withheld_before,
        withheld_now,
        net,
    })
}

/// Looks `taxable` up in a rate table: max(0, round_half_up(taxable × rate − quick)).
fn table_tax(
    income: Money,
    fee: Money,
    basic_deduction: Money,
    taxable: Money,
    table: &[Band],
) -> Result<TaxComputation, TaxError> {
    let band = table
        .iter()
        .find(|band| band.upper_fen.is_none_or(|upper| taxable.fen() <= upper))
        .expect("a rate table's last band has no upper limit");
    let rate = percent(band.percent);
    let quick_deduction = Money::from_fen(band.quick_fen);
    let tax = Money::round_half_up(taxable.times(rate) - quick_deduction.to_decimal())?;
    Ok(TaxComputation {
        income,
        fee,
        basic_deduction,
        taxable,
        rate,
        quick_deduction,
        tax: tax.max(Money::ZERO),
    })
}

fn percent(percent: i64) -> Rate {
    Rate::from_fraction(Decimal::new(percent, 2)).expect("tax rates are between 0% and 100%")
}

fn non_negative(what: &'static str, amount: Money) -> Result<Money, TaxError> {
    if amount.is_negative() {
        return Err(TaxError::Negative { what, amount });
    }
    Ok(amount)
}

fn checked_months_count(months_count: u8, max: u8) -> Result<u8, TaxError> {
    if !(1..=max).contains(&months_count) {
        return Err(TaxError::BadMonthsCount { months_count, max });
    }
    Ok(months_count)
}

impl From<crate::domain::money::MoneyError> for TaxError {
    /// Only rounding a computed amount back to money fails, and only by
    /// overflowing.
    fn from(_: crate::domain::money::MoneyError) -> TaxError {
        TaxError::Overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_month_knows_its_length_its_predecessor_and_its_tax_period() {
        let month = |y, m| Month::new(y, m).unwrap();
        assert_eq!(month(2026, 2).days(), 28);
        assert_eq!(month(2028, 2).days(), 29);
        assert_eq!(month(2100, 2).days(), 28);
        assert_eq!(month(2000, 2).days(), 29);
        assert_eq!(month(2026, 4).days(), 30);
        assert_eq!(month(2026, 12).days(), 31);
        assert_eq!(month(2026, 1).previous(), month(2025, 12));
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(Month::of(day).previous(), month(2026, 11));
        assert_eq!(month(2026, 11).previous(), month(2026, 10));
        assert_eq!(month(2026, 3).tax_period(), "2026年3月1日至2026年3月31日");
        assert_eq!(month(2028, 2).tax_period(), "2028年2月1日至2028年2月29日");
    }

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn pct(text: &str) -> Rate {
        Rate::parse_percent(text).unwrap()
    }

    /// One row of a worked example: the figures to date and the withholding.
    struct Row {
        gross: &'static str,
        to_date: &'static str,
        fee: &'static str,
        taxable: &'static str,
        rate: &'static str,
        quick: &'static str,
        tax: &'static str,
        withhold: &'static str,
    }

    fn assert_row(quote: &Withholding, row: &Row) {
        assert_eq!(quote.gross, m(row.gross), "gross");
        assert_eq!(
            quote.income_to_date,
            m(row.to_date),
            "income to date of {}",
            row.gross
        );
        assert_eq!(quote.fee, m(row.fee), "fee of {}", row.to_date);
        assert_eq!(quote.taxable, m(row.taxable), "taxable of {}", row.to_date);
        assert_eq!(quote.rate, pct(row.rate), "rate of {}", row.to_date);
        assert_eq!(
            quote.quick_deduction,
            m(row.quick),
            "quick of {}",
            row.to_date
        );
        assert_eq!(quote.tax_to_date, m(row.tax), "tax of {}", row.to_date);
        assert_eq!(
            quote.withheld_now,
            m(row.withhold),
            "withholding on {}",
            row.gross
        );
        assert_eq!(
            quote.net,
            quote.gross.checked_sub(quote.withheld_now).unwrap()
        );
    }

    fn per_payment(payments: &[&str]) -> Vec<Withholding> {
        let payments: Vec<Money> = payments.iter().map(|p| m(p)).collect();
        quote_sequence(WithholdingMethod::PerPayment, &payments, None).unwrap()
    }

    fn month(text: &str) -> Month {
        Month::parse(text).unwrap()
    }

    // ---- §6 worked examples, per-payment ----

    #[test]
    fn the_reference_single_payment_examples_come_out_to_the_fen() {
        #[rustfmt::skip]
        let rows = [
            Row { gross: "500.00", to_date: "500.00", fee: "800.00", taxable: "0.00", rate: "20%", quick: "0", tax: "0.00", withhold: "0.00" },
            Row { gross: "1000.00", to_date: "1000.00", fee: "800.00", taxable: "200.00", rate: "20%", quick: "0", tax: "40.00", withhold: "40.00" },
            Row { gross: "5000.00", to_date: "5000.00", fee: "1000.00", taxable: "4000.00", rate: "20%", quick: "0", tax: "800.00", withhold: "800.00" },
            Row { gross: "30000.00", to_date: "30000.00", fee: "6000.00", taxable: "24000.00", rate: "30%", quick: "2000", tax: "5200.00", withhold: "5200.00" },
            Row { gross: "100000.00", to_date: "100000.00", fee: "20000.00", taxable: "80000.00", rate: "40%", quick: "7000", tax: "25000.00", withhold: "25000.00" },
        ];
        for row in &rows {
            let quotes = per_payment(&[row.gross]);
            assert_row(&quotes[0], row);
        }
    }

    #[test]
    fn the_reference_three_payouts_in_march_withhold_240_then_400_then_320() {
        let quotes = per_payment(&["2000.00", "2000.00", "2000.00"]);
        #[rustfmt::skip]
        let rows = [
            Row { gross: "2000.00", to_date: "2000.00", fee: "800.00", taxable: "1200.00", rate: "20%", quick: "0", tax: "240.00", withhold: "240.00" },
            Row { gross: "2000.00", to_date: "4000.00", fee: "800.00", taxable: "3200.00", rate: "20%", quick: "0", tax: "640.00", withhold: "400.00" },
            Row { gross: "2000.00", to_date: "6000.00", fee: "1200.00", taxable: "4800.00", rate: "20%", quick: "0", tax: "960.00", withhold: "320.00" },
        ];
        assert_eq!(quotes.len(), 3);
        for (quote, row) in quotes.iter().zip(&rows) {
            assert_row(quote, row);
        }
        assert_eq!(quotes[1].withheld_before, m("240.00"));
        assert_eq!(quotes[2].withheld_before, m("640.00"));
    }

    #[test]
    fn the_reference_april_payout_starts_a_new_time_and_withholds_440() {
        // A new month is a new 次: nothing carries over from March's 6,000.
        let quotes = per_payment(&["3000.00"]);
        #[rustfmt::skip]
        let april = Row { gross: "3000.00", to_date: "3000.00", fee: "800.00", taxable: "2200.00", rate: "20%", quick: "0", tax: "440.00", withhold: "440.00" };
        assert_row(&quotes[0], &april);
        assert_eq!(quotes[0].withheld_before, Money::ZERO);
    }

    // ---- §6 worked examples, cumulative ----

    fn cumulative_months(monthly: &str, months: u8) -> Vec<Withholding> {
        let (mut income, mut withheld) = (Money::ZERO, Money::ZERO);
        let mut quotes = Vec::new();
        for n in 1..=months {
            let context = CumulativeContext {
                month: Month::new(2026, n).unwrap(),
                months_count: n,
                prior_income: income,
                prior_withheld: withheld,
            };
            let quote = quote_sequence(WithholdingMethod::Cumulative, &[m(monthly)], Some(context))
                .unwrap()[0];
            income = quote.income_to_date;
            withheld = withheld.checked_add(quote.withheld_now).unwrap();
            quotes.push(quote);
        }
        quotes
    }

    #[test]
    fn the_reference_10000_a_month_example_withholds_90_in_january_and_february() {
        let quotes = cumulative_months("10000.00", 2);
        #[rustfmt::skip]
        let rows = [
            Row { gross: "10000.00", to_date: "10000.00", fee: "2000.00", taxable: "3000.00", rate: "3%", quick: "0", tax: "90.00", withhold: "90.00" },
            Row { gross: "10000.00", to_date: "20000.00", fee: "4000.00", taxable: "6000.00", rate: "3%", quick: "0", tax: "180.00", withhold: "90.00" },
        ];
        assert_row(&quotes[0], &rows[0]);
        assert_eq!(quotes[0].basic_deduction, m("5000.00"));
        assert_row(&quotes[1], &rows[1]);
        assert_eq!(quotes[1].basic_deduction, m("10000.00"));
        assert_eq!(quotes[1].months_count, Some(2));
    }

    #[test]
    fn the_reference_50000_a_month_example_withholds_1050_then_3430() {
        let quotes = cumulative_months("50000.00", 2);
        #[rustfmt::skip]
        let rows = [
            Row { gross: "50000.00", to_date: "50000.00", fee: "10000.00", taxable: "35000.00", rate: "3%", quick: "0", tax: "1050.00", withhold: "1050.00" },
            Row { gross: "50000.00", to_date: "100000.00", fee: "20000.00", taxable: "70000.00", rate: "10%", quick: "2520", tax: "4480.00", withhold: "3430.00" },
        ];
        assert_row(&quotes[0], &rows[0]);
        assert_row(&quotes[1], &rows[1]);
        assert_eq!(quotes[1].withheld_before, m("1050.00"));
    }

    #[test]
    fn at_8000_a_month_the_cumulative_method_withholds_42_where_per_payment_withholds_1280() {
        for quote in cumulative_months("8000.00", 12) {
            assert_eq!(quote.withheld_now, m("42.00"), "{quote:?}");
        }
        assert_eq!(per_payment(&["8000.00"])[0].withheld_now, m("1280.00"));
    }

    #[test]
    fn at_6250_a_month_the_cumulative_method_withholds_nothing_all_year() {
        // 6250 × 80% − 5000 = 0 (施正文's "6250元以下…无需预扣税款").
        for quote in cumulative_months("6250.00", 12) {
            assert_eq!(quote.taxable, Money::ZERO);
            assert_eq!(quote.withheld_now, Money::ZERO);
        }
    }

    // ---- per-payment boundaries ----

    #[test]
    fn gross_800_is_untaxed_and_800_01_is_taxable_by_a_fen_that_rounds_to_nothing() {
        let at = per_payment_tax(m("800.00")).unwrap();
        assert_eq!(
            (at.fee, at.taxable, at.tax),
            (m("800.00"), Money::ZERO, Money::ZERO)
        );
        let above = per_payment_tax(m("800.01")).unwrap();
        // 0.01 × 20% = 0.002 → 0.00
        assert_eq!((above.taxable, above.tax), (m("0.01"), Money::ZERO));
        // 0.03 × 20% = 0.006 → 0.01: the first fen of tax.
        assert_eq!(per_payment_tax(m("800.03")).unwrap().tax, m("0.01"));
    }

    #[test]
    fn gross_4000_still_deducts_800_and_4000_01_deducts_20_percent() {
        let at = per_payment_tax(m("4000.00")).unwrap();
        assert_eq!(
            (at.fee, at.taxable, at.tax),
            (m("800.00"), m("3200.00"), m("640.00"))
        );
        let above = per_payment_tax(m("4000.01")).unwrap();
        // fee = round_half_up(800.002) = 800.00; tax = round_half_up(640.002) = 640.00
        assert_eq!(
            (above.fee, above.taxable, above.tax),
            (m("800.00"), m("3200.01"), m("640.00"))
        );
        // The fee is 20% from here on: 4000.03 × 20% = 800.006 → 800.01.
        assert_eq!(per_payment_tax(m("4000.03")).unwrap().fee, m("800.01"));
    }

    #[test]
    fn taxable_20000_is_in_the_20_percent_band_and_20000_01_in_the_30_percent_band() {
        let at = per_payment_tax(m("25000.00")).unwrap();
        assert_eq!(
            (at.taxable, at.rate, at.quick_deduction),
            (m("20000.00"), pct("20%"), Money::ZERO)
        );
        assert_eq!(at.tax, m("4000.00"));
        let above = per_payment_tax(m("25000.01")).unwrap();
        assert_eq!(
            (above.taxable, above.rate, above.quick_deduction),
            (m("20000.01"), pct("30%"), m("2000.00"))
        );
        // 20000.01 × 30% − 2000 = 4000.003 → 4000.00: continuous at the edge.
        assert_eq!(above.tax, m("4000.00"));
    }

    #[test]
    fn taxable_50000_is_in_the_30_percent_band_and_50000_01_in_the_40_percent_band() {
        let at = per_payment_tax(m("62500.00")).unwrap();
        assert_eq!(
            (at.taxable, at.rate, at.quick_deduction),
            (m("50000.00"), pct("30%"), m("2000.00"))
        );
        assert_eq!(at.tax, m("13000.00"));
        let above = per_payment_tax(m("62500.01")).unwrap();
        assert_eq!(
            (above.taxable, above.rate, above.quick_deduction),
            (m("50000.01"), pct("40%"), m("7000.00"))
        );
        // 50000.01 × 40% − 7000 = 13000.004 → 13000.00
        assert_eq!(above.tax, m("13000.00"));
    }

    #[test]
    fn two_payments_of_2000_in_one_month_are_taxed_as_one_time_not_two() {
        let one_month: Money = per_payment(&["2000.00", "2000.00"])
            .iter()
            .map(|q| q.withheld_now)
            .fold(Money::ZERO, |a, b| a.checked_add(b).unwrap());
        // Two months (or two separate 次): 240.00 each, one 800 fee each.
        let separately = per_payment(&["2000.00"])[0]
            .withheld_now
            .checked_add(per_payment(&["2000.00"])[0].withheld_now)
            .unwrap();
        assert_eq!(one_month, m("640.00"));
        assert_eq!(separately, m("480.00"));
    }

    #[test]
    fn a_new_month_resets_the_month_to_date_gross_and_withholding() {
        let march = per_payment(&["2000.00", "2000.00", "2000.00"]);
        let april = per_payment(&["2000.00"]);
        assert_eq!(march[2].income_to_date, m("6000.00"));
        assert_eq!(april[0].income_to_date, m("2000.00"));
        assert_eq!(april[0], march[0]);
        assert_eq!(
            april[0],
            withhold_per_payment(Money::ZERO, Money::ZERO, m("2000.00")).unwrap()
        );
    }

    #[test]
    fn a_tax_landing_exactly_on_half_a_fen_rounds_up_and_just_below_rounds_down() {
        // gross 25000.19: fee = round_half_up(5000.038) = 5000.04, taxable 20000.15,
        // 20000.15 × 30% − 2000 = 4000.045 exactly → 4000.05 (banker's would say 4000.04).
        let tie = per_payment_tax(m("25000.19")).unwrap();
        assert_eq!(tie.taxable, m("20000.15"));
        assert_eq!(
            tie.taxable.times(tie.rate) - tie.quick_deduction.to_decimal(),
            d("4000.045")
        );
        assert_eq!(tie.tax, m("4000.05"));
        // gross 25000.60: taxable 20000.48, × 30% − 2000 = 4000.144 → 4000.14.
        let below = per_payment_tax(m("25000.60")).unwrap();
        assert_eq!(below.taxable, m("20000.48"));
        assert_eq!(
            below.taxable.times(below.rate) - below.quick_deduction.to_decimal(),
            d("4000.144")
        );
        assert_eq!(below.tax, m("4000.14"));
    }

    #[test]
    fn a_cumulative_tax_landing_on_half_a_fen_rounds_up() {
        // 6375.63 − round_half_up(1275.126) − 5000 = 100.50; × 3% = 3.015 → 3.02.
        let tax = cumulative_tax(m("6375.63"), 1).unwrap();
        assert_eq!(tax.taxable, m("100.50"));
        assert_eq!(tax.taxable.times(tax.rate), d("3.015"));
        assert_eq!(tax.tax, m("3.02"));
    }

    #[test]
    fn a_negative_payment_is_refused() {
        let minus = Money::from_fen(-1);
        assert!(matches!(
            withhold_per_payment(Money::ZERO, Money::ZERO, minus),
            Err(TaxError::Negative {
                what: "payment",
                ..
            })
        ));
        assert!(matches!(
            withhold_cumulative(Money::ZERO, Money::ZERO, 1, minus),
            Err(TaxError::Negative {
                what: "payment",
                ..
            })
        ));
        assert!(matches!(
            per_payment_tax(minus),
            Err(TaxError::Negative { .. })
        ));
        let error =
            quote_sequence(WithholdingMethod::PerPayment, &[m("1.00"), minus], None).unwrap_err();
        assert_eq!(error.to_string(), "payment must not be negative, got -0.01");
    }

    #[test]
    fn an_overflowing_month_to_date_is_refused() {
        let huge = Money::from_fen(i64::MAX);
        assert_eq!(
            withhold_per_payment(huge, Money::ZERO, m("0.01")),
            Err(TaxError::Overflow)
        );
        assert_eq!(
            withhold_cumulative(huge, Money::ZERO, 1, m("0.01")),
            Err(TaxError::Overflow)
        );
        // The largest amount still computes: no panic in the decimal arithmetic.
        assert!(per_payment_tax(huge).is_ok());
        assert!(cumulative_tax(huge, 12).is_ok());
    }

    #[test]
    fn withholding_on_the_month_to_date_never_refunds_what_was_already_withheld() {
        // Inconsistent input (more withheld than the tax on the month so far)
        // is refused rather than turned into a refund.
        assert_eq!(
            withhold_per_payment(m("2000.00"), m("300.00"), m("0.00")),
            Err(TaxError::WithheldExceedsTax {
                withheld: m("300.00"),
                tax: m("240.00")
            })
        );
    }

    // ---- cumulative edges ----

    #[test]
    fn cumulative_taxable_36000_is_taxed_at_3_percent_and_36000_01_at_10_percent_less_2520() {
        // 51250 − 10250 − 5000 = 36000.00
        let at = cumulative_tax(m("51250.00"), 1).unwrap();
        assert_eq!(
            (at.taxable, at.rate, at.quick_deduction),
            (m("36000.00"), pct("3%"), Money::ZERO)
        );
        assert_eq!(at.tax, m("1080.00"));
        // 51250.01 − round_half_up(10250.002) − 5000 = 36000.01
        let above = cumulative_tax(m("51250.01"), 1).unwrap();
        assert_eq!(
            (above.taxable, above.rate, above.quick_deduction),
            (m("36000.01"), pct("10%"), m("2520.00"))
        );
        // 3600.001 − 2520 = 1080.001 → 1080.00: continuous at the edge.
        assert_eq!(above.tax, m("1080.00"));
        // taxable 36000.10: 3600.01 − 2520 = 1080.01, the first fen at 10%.
        let next = cumulative_tax(m("51250.13"), 1).unwrap();
        assert_eq!((next.taxable, next.tax), (m("36000.10"), m("1080.01")));
    }

    #[test]
    fn every_band_edge_of_both_tables_is_continuous() {
        for table in [&TABLE_TWO[..], &TABLE_ONE[..]] {
            for pair in table.windows(2) {
                let edge = Money::from_fen(pair[0].upper_fen.unwrap());
                let below = edge.times(percent(pair[0].percent))
                    - Money::from_fen(pair[0].quick_fen).to_decimal();
                let above = edge.times(percent(pair[1].percent))
                    - Money::from_fen(pair[1].quick_fen).to_decimal();
                assert_eq!(below, above, "edge {edge}");
            }
        }
    }

    #[test]
    fn a_month_whose_cumulative_tax_falls_below_what_was_withheld_withholds_nothing_and_refunds_nothing()
     {
        // January 20,000: taxable 20000×80% − 5000 = 11,000 → 330.00.
        let january = withhold_cumulative(Money::ZERO, Money::ZERO, 1, m("20000.00")).unwrap();
        assert_eq!(january.withheld_now, m("330.00"));
        // February 1,000: taxable 21000×80% − 10000 = 6,800 → 204.00 < 330.00.
        // 204 − 330 is negative: 暂不退税, withhold 0.
        let february = withhold_cumulative(m("20000.00"), m("330.00"), 2, m("1000.00")).unwrap();
        assert_eq!(february.tax_to_date, m("204.00"));
        assert_eq!(february.withheld_now, Money::ZERO);
        assert_eq!(february.net, m("1000.00"));
        // March 10,000: 31000×80% − 15000 = 9,800 → 294.00, still below 330.
        let march = withhold_cumulative(m("21000.00"), m("330.00"), 3, m("10000.00")).unwrap();
        assert_eq!(
            (march.tax_to_date, march.withheld_now),
            (m("294.00"), Money::ZERO)
        );
        // April 10,000: 41000×80% − 20000 = 12,800 → 384.00; withhold 384 − 330 = 54.
        let april = withhold_cumulative(m("31000.00"), m("330.00"), 4, m("10000.00")).unwrap();
        assert_eq!(
            (april.tax_to_date, april.withheld_now),
            (m("384.00"), m("54.00"))
        );
    }

    #[test]
    fn a_payout_whose_tax_due_exceeds_it_is_refused() {
        // n restarted at 1 after a gap while the year's 12,000 was kept: the
        // 100.00 payout owes 12100×80% − 5000 = 4680 × 3% = 140.40.
        assert_eq!(
            withhold_cumulative(m("12000.00"), Money::ZERO, 1, m("100.00")),
            Err(TaxError::WithholdingExceedsPayment {
                due: m("140.40"),
                payment: m("100.00")
            })
        );
    }

    #[test]
    fn the_months_count_must_be_between_one_and_the_month_number() {
        for bad in [0, 13] {
            assert_eq!(
                withhold_cumulative(Money::ZERO, Money::ZERO, bad, m("1.00")),
                Err(TaxError::BadMonthsCount {
                    months_count: bad,
                    max: 12
                })
            );
        }
        let context = CumulativeContext {
            month: month("2026-03"),
            months_count: 4,
            prior_income: Money::ZERO,
            prior_withheld: Money::ZERO,
        };
        assert_eq!(
            quote_sequence(WithholdingMethod::Cumulative, &[m("1.00")], Some(context)),
            Err(TaxError::BadMonthsCount {
                months_count: 4,
                max: 3
            })
        );
    }

    #[test]
    fn the_cumulative_method_is_refused_before_october_2025() {
        let context = |text| CumulativeContext {
            month: month(text),
            months_count: 1,
            prior_income: Money::ZERO,
            prior_withheld: Money::ZERO,
        };
        assert_eq!(
            quote_sequence(
                WithholdingMethod::Cumulative,
                &[m("1.00")],
                Some(context("2025-09"))
            ),
            Err(TaxError::CumulativeMethodNotInForce(month("2025-09")))
        );
        assert!(
            quote_sequence(
                WithholdingMethod::Cumulative,
                &[m("1.00")],
                Some(context("2025-10"))
            )
            .is_ok()
        );
    }

    #[test]
    fn the_cumulative_context_goes_with_the_cumulative_method_only() {
        let context = CumulativeContext {
            month: month("2026-01"),
            months_count: 1,
            prior_income: Money::ZERO,
            prior_withheld: Money::ZERO,
        };
        assert_eq!(
            quote_sequence(WithholdingMethod::PerPayment, &[], Some(context)),
            Err(TaxError::UnexpectedCumulativeContext)
        );
        assert_eq!(
            quote_sequence(WithholdingMethod::Cumulative, &[], None),
            Err(TaxError::MissingCumulativeContext)
        );
    }

    #[test]
    fn several_payouts_in_one_month_accumulate_under_the_cumulative_method() {
        let context = CumulativeContext {
            month: month("2026-02"),
            months_count: 2,
            prior_income: m("10000.00"),
            prior_withheld: m("90.00"),
        };
        let quotes = quote_sequence(
            WithholdingMethod::Cumulative,
            &[m("4000.00"), m("6000.00")],
            Some(context),
        )
        .unwrap();
        // 14000×80% − 10000 = 1200 → 36.00 < 90: nothing; then 20000 → 180 − 90 = 90.
        assert_eq!(
            (quotes[0].tax_to_date, quotes[0].withheld_now),
            (m("36.00"), Money::ZERO)
        );
        assert_eq!(
            (quotes[1].tax_to_date, quotes[1].withheld_now),
            (m("180.00"), m("90.00"))
        );
        assert_eq!(quotes[1].withheld_before, m("90.00"));
    }

    // ---- month and method parsing ----

    #[test]
    fn months_parse_only_as_four_digit_year_hyphen_two_digit_month() {
        assert_eq!(month("2026-03").to_string(), "2026-03");
        assert_eq!(
            (month("2026-12").year(), month("2026-12").month()),
            (2026, 12)
        );
        assert!(month("2025-10") < month("2026-01"));
        for bad in [
            "2026-3",
            "2026-13",
            "2026-00",
            "26-03",
            "2026/03",
            " 2026-03",
            "2026-03 ",
            "2026-03-01",
            "２０２６-03",
            "+026-03",
            "2026-+3",
            "",
            "-",
            "0999-01",
        ] {
            assert_eq!(
                Month::parse(bad),
                Err(TaxError::BadMonth(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            serde_json::to_string(&month("2026-03")).unwrap(),
            "\"2026-03\""
        );
    }

    #[test]
    fn methods_parse_and_serialize_in_kebab_case() {
        assert_eq!("per-payment".parse(), Ok(WithholdingMethod::PerPayment));
        assert_eq!("cumulative".parse(), Ok(WithholdingMethod::Cumulative));
        assert_eq!(
            "per_payment".parse::<WithholdingMethod>(),
            Err(TaxError::BadMethod("per_payment".to_owned()))
        );
        assert_eq!(WithholdingMethod::default(), WithholdingMethod::PerPayment);
        assert_eq!(
            serde_json::to_string(&WithholdingMethod::PerPayment).unwrap(),
            "\"per-payment\""
        );
    }

    #[test]
    fn a_withholding_serializes_money_as_two_decimal_strings() {
        let json = serde_json::to_value(per_payment(&["2000.00"])[0]).unwrap();
        assert_eq!(json["gross"], "2000.00");
        assert_eq!(json["withheld_now"], "240.00");
        assert_eq!(json["rate"], "20%");
        assert_eq!(json["method"], "per-payment");
        assert!(json.get("months_count").is_none());
    }

    // ---- properties ----

    /// Up to 200,000.00: past the last per-payment band edge (62,500 gross).
    fn per_payment_gross() -> impl Strategy<Value = Money> {
        (0i64..=20_000_000).prop_map(Money::from_fen)
    }

    /// Up to 1,500,000.00 a year: past the last cumulative edge (960,000 taxable).
    fn cumulative_income() -> impl Strategy<Value = Money> {
        (0i64..=150_000_000).prop_map(Money::from_fen)
    }

    fn payouts() -> impl Strategy<Value = Vec<Money>> {
        proptest::collection::vec((0i64..=3_000_000).prop_map(Money::from_fen), 1..12)
    }

    proptest! {
        #[test]
        fn per_payment_tax_never_decreases_as_the_gross_grows(a in per_payment_gross(), b in per_payment_gross()) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(per_payment_tax(low).unwrap().tax <= per_payment_tax(high).unwrap().tax);
        }

        #[test]
        fn per_payment_tax_never_decreases_by_a_single_fen(gross in per_payment_gross()) {
            let next = gross.checked_add(Money::from_fen(1)).unwrap();
            prop_assert!(per_payment_tax(gross).unwrap().tax <= per_payment_tax(next).unwrap().tax);
        }

        #[test]
        fn cumulative_tax_never_decreases_as_income_grows_within_a_month(
            a in cumulative_income(), b in cumulative_income(), n in 1u8..=12,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(cumulative_tax(low, n).unwrap().tax <= cumulative_tax(high, n).unwrap().tax);
        }

        #[test]
        fn per_payment_withholding_is_never_negative_and_sums_to_the_month_tax(payments in payouts()) {
            let quotes = quote_sequence(WithholdingMethod::PerPayment, &payments, None).unwrap();
            let mut withheld = Money::ZERO;
            for quote in &quotes {
                prop_assert!(!quote.withheld_now.is_negative());
                prop_assert!(quote.withheld_now <= quote.gross);
                prop_assert_eq!(quote.withheld_before, withheld);
                withheld = withheld.checked_add(quote.withheld_now).unwrap();
            }
            let total = Money::checked_sum(payments.iter().copied()).unwrap();
            prop_assert_eq!(withheld, per_payment_tax(total).unwrap().tax);
        }

        #[test]
        fn cumulative_withholding_is_never_negative_and_never_below_the_tax_to_date(
            monthly in proptest::collection::vec(payouts(), 1..=12),
        ) {
            let (mut income, mut withheld) = (Money::ZERO, Money::ZERO);
            for (index, payments) in monthly.iter().enumerate() {
                let n = u8::try_from(index + 1).unwrap();
                let context = CumulativeContext {
                    month: Month::new(2026, n).unwrap(),
                    months_count: n,
                    prior_income: income,
                    prior_withheld: withheld,
                };
                let quotes = quote_sequence(WithholdingMethod::Cumulative, payments, Some(context)).unwrap();
                for quote in &quotes {
                    prop_assert!(!quote.withheld_now.is_negative());
                    prop_assert!(quote.withheld_now <= quote.gross);
                    withheld = withheld.checked_add(quote.withheld_now).unwrap();
                    income = quote.income_to_date;
                    // What was withheld covers the tax to date; any excess is
                    // never refunded within the year.
                    prop_assert!(withheld >= quote.tax_to_date);
                }
            }
        }
    }
}
