//! Daily gateway statements (对账单) in the gateways' own file formats, and
//! the neutral [`Statement`] both are read into, for reconciliation against
//! fenrun's ledger.
//!
//! - `wechat_fundflow`: the WeChat Pay fund-flow bill (资金账单) of the
//!   operation account: UTF-8 CSV, every value behind a backtick.
//! - `alipay_signcustomer`: the Alipay account log (`signcustomer`): a
//!   `csv.zip` of GBK CSVs framed by `#` comment lines.
//!
//! Each format has a writer (the sandbox's and the tests') and a parser that
//! refuses a malformed file with its line number and checks the file's own
//! summary against its detail lines. Money is integer fen throughout: yuan
//! strings are read digit by digit ([`fen_from_yuan_text`]), never through a
//! float. The clients that download the files are
//! [`crate::wechat::WechatPayClient::fund_flow_bill`] and
//! [`crate::alipay::AlipayClient::account_log_bill`].

pub mod alipay_signcustomer;
pub mod wechat_fundflow;

use chrono::{NaiveDate, NaiveDateTime};

use crate::AmountFen;

/// Largest decompressed statement accepted: a day of payouts is a few MB;
/// past this a file is refused rather than held in memory.
pub const MAX_STATEMENT_BYTES: u64 = 64 * 1024 * 1024;

/// How times are written in both formats (China time, no offset).
pub(crate) const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Which gateway wrote a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementSource {
    Wechat,
    Alipay,
}

/// One gateway's account movements on one China calendar day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub source: StatementSource,
    pub bill_date: NaiveDate,
    /// In file order.
    pub lines: Vec<StatementLine>,
    /// As the file states it; the parser has checked it against `lines`.
    pub summary: StatementSummary,
}

/// One movement of money on the merchant's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// Our bill number: WeChat 业务凭证号, Alipay 商户订单号. Empty when the
    /// gateway moved money fenrun did not ask for (a top-up, say).
    pub out_bill_no: String,
    /// The gateway's number for the movement: WeChat 微信支付业务单号,
    /// Alipay 业务流水号.
    pub gateway_ref: String,
    pub kind: StatementLineKind,
    /// Always positive: `kind` says the direction.
    pub amount: AmountFen,
    /// China time, as the file writes it.
    pub occurred_at: NaiveDateTime,
    /// The gateway's own words (WeChat 业务类型, Alipay 业务类型).
    pub business_type: String,
}

/// What a movement is, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatementLineKind {
    /// Money out to a payee.
    Payout,
    /// Money back in for one of our bills: a bounce (退票) or a refund of a
    /// transfer.
    Return,
    /// A channel fee (Alipay 收费, e.g. a bank card's `order_fee`).
    Fee,
    /// Any other money in (a top-up, say); `business_type` says what.
    OtherIncome,
    /// Any other money out; `business_type` says what.
    OtherExpense,
}

impl StatementLineKind {
    /// Whether the money came into the merchant's account. Each file states
    /// the direction of every line, so `Other…` keeps it.
    pub fn is_income(&self) -> bool {
        match self {
            StatementLineKind::Return | StatementLineKind::OtherIncome => true,
            StatementLineKind::Payout
            | StatementLineKind::Fee
            | StatementLineKind::OtherExpense => false,
        }
    }
}

/// Counts and sums as the file states them, fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementSummary {
    pub line_count: u64,
    pub income_count: u64,
    pub income: AmountFen,
    pub expense_count: u64,
    /// Positive, as [`StatementLine::amount`].
    pub expense: AmountFen,
}

impl StatementSummary {
    /// The summary that agrees with `lines`. Panics only past i64 fen, which
    /// no day of payouts reaches.
    pub fn of(lines: &[StatementLine]) -> StatementSummary {
        let mut summary = StatementSummary::default();
        for line in lines {
            summary.line_count += 1;
            let (count, sum) = if line.kind.is_income() {
                (&mut summary.income_count, &mut summary.income)
            } else {
                (&mut summary.expense_count, &mut summary.expense)
            };
            *count += 1;
            sum.0 = sum
                .0
                .checked_add(line.amount.0)
                .expect("a day's statement total fits in i64 fen");
        }
        summary
    }
}

/// Why a statement could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The gateway has not generated that day's bill yet (both are ready
    /// from about 10:00 China time the next day): ask again later.
    #[error("the statement is not ready yet; ask again after 10:00 China time the next day")]
    NotReady,
    /// Nothing wrong with the request: network, 5xx, busy. Ask again.
    #[error("statement download failed for now, ask again: {0}")]
    Transient(String),
    /// The file (or the answer pointing to it) cannot be trusted: hash
    /// mismatch, bad archive, malformed CSV, a summary that disagrees with
    /// its lines. Download again; if it persists, raise it with the gateway.
    #[error("statement is corrupt, download it again: {0}")]
    Corrupt(String),
    /// The gateway refused the request for good (a setting, a permission, a
    /// date out of range): fix the cause before asking again.
    #[error("gateway refused the statement request ({code}): {reason}")]
    Rejected { code: String, reason: String },
}

/// Fen from a yuan string with an optional sign and at most two decimals
/// (`"12.3"`, `"-12.30"`, `"+0.10"`, `"1234"`). Anything else is refused with
/// a reason; the value is read digit by digit, never through a float.
pub fn fen_from_yuan_text(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, decimals) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(decimals) {
        return Err(format!("{text:?} is not a yuan amount"));
    }
    if digits.contains('.') && decimals.is_empty() {
        return Err(format!("{text:?} ends in a bare decimal point"));
    }
    if decimals.len() > 2 {
        return Err(format!("{text:?} has more than 2 decimals (fen)"));
    }
    let too_large = || format!("{text:?} is too large");
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let cents: i64 = match decimals.len() {
        0 => 0,
        1 => decimals.parse::<i64>().map_err(|_| too_large())? * 10,
        _ => decimals.parse().map_err(|_| too_large())?,
    };
    let fen = whole
        .checked_mul(100)
        .and_then(|fen| fen.checked_add(cents))
        .ok_or_else(too_large)?;
    Ok(if negative { -fen } else { fen })
}

/// Yuan with two decimals, `-` for a negative amount: `-1230` → `"-12.30"`.
pub fn yuan_text(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Splits one CSV record: commas, with RFC 4180 double quotes honoured so a
/// remark holding a comma survives. Fields are trimmed, as both gateways pad
/// columns with spaces or tabs.
pub(crate) fn split_record(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field).trim().to_owned()),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed");
    }
    fields.push(field.trim().to_owned());
    Ok(fields)
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The file's lines, numbered from 1, without line ends or a UTF-8 BOM.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

pub(crate) fn corrupt(line: usize, what: impl std::fmt::Display) -> StatementError {
    StatementError::Corrupt(format!("line {line}: {what}"))
}

/// The line `StatementSummary::of` computes must be what the file states.
pub(crate) fn check_summary(
    stated: &StatementSummary,
    lines: &[StatementLine],
    summary_line: usize,
) -> Result<(), StatementError> {
    let computed = StatementSummary::of(lines);
    if *stated != computed {
        return Err(corrupt(
            summary_line,
            format!(
                "the summary states {} lines ({} in, {} fen; {} out, {} fen) but the detail has {} ({} in, {} fen; {} out, {} fen)",
                stated.line_count,
                stated.income_count,
                stated.income.0,
                stated.expense_count,
                stated.expense.0,
                computed.line_count,
                computed.income_count,
                computed.income.0,
                computed.expense_count,
                computed.expense.0,
            ),
        ));
    }
    Ok(())
}

/// A count as the summary writes it.
pub(crate) fn parse_count(line: usize, column: &str, text: &str) -> Result<u64, StatementError> {
    text.parse()
        .map_err(|_| corrupt(line, format!("{column} {text:?} is not a count")))
}

pub(crate) fn parse_time(
    line: usize,
    column: &str,
    text: &str,
) -> Result<NaiveDateTime, StatementError> {
    NaiveDateTime::parse_from_str(text, TIME_FORMAT).map_err(|_| {
        corrupt(
            line,
            format!("{column} {text:?} is not a time like 2024-05-01 10:00:00"),
        )
    })
}

pub(crate) fn parse_yuan(line: usize, column: &str, text: &str) -> Result<i64, StatementError> {
    fen_from_yuan_text(text).map_err(|why| corrupt(line, format!("{column}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_are_read_exactly_and_more_than_two_decimals_refused() {
        for (text, fen) in [
            ("0.10", 10),
            ("1234.5", 123_450),
            ("-12.30", -1230),
            ("12.3", 1230),
            ("+7", 700),
            ("0.01", 1),
            ("0", 0),
        ] {
            assert_eq!(fen_from_yuan_text(text), Ok(fen), "{text}");
        }
        for text in [
            "1.234",
            "",
            "-",
            ".5",
            "1.",
            "1e3",
            "1,000.00",
            "--1",
            "99999999999999999999",
        ] {
            assert!(fen_from_yuan_text(text).is_err(), "{text}");
        }
        assert!(
            fen_from_yuan_text("0.101")
                .unwrap_err()
                .contains("more than 2 decimals")
        );
        assert_eq!(yuan_text(-1230), "-12.30");
        assert_eq!(yuan_text(5), "0.05");
        assert_eq!(yuan_text(123_450), "1234.50");
    }

    #[test]
    fn a_record_splits_on_commas_outside_quotes() {
        assert_eq!(
            split_record(r#"`a, "b,c" ,"d""e""#).unwrap(),
            vec!["`a", "b,c", "d\"e"]
        );
        assert!(split_record(r#"a,"b"#).is_err());
        assert_eq!(csv_field("x,y"), "\"x,y\"");
    }
}
