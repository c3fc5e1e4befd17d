//! The WeChat Pay fund-flow bill (资金账单) of the operation account, as
//! `GET /v3/bill/fundflowbill` hands it out once decompressed: UTF-8 CSV, a
//! detail header, one row per movement with every value behind a backtick
//! (so spreadsheet programs keep long numbers as text), then a summary
//! header and its one row.
//!
//! A transfer is one 支出 row with our bill number in 业务凭证号; money
//! coming back for it is a 收入 row with the same 业务凭证号. The column
//! names are from the reference; the 业务名称 and 业务类型 words the writer
//! uses for transfers are our model, not read from a real file.

use chrono::NaiveDate;

use super::{
    Statement, StatementError, StatementLine, StatementLineKind, StatementSource, StatementSummary,
    TIME_FORMAT, check_summary, corrupt, csv_field, numbered_lines, parse_count, parse_time,
    parse_yuan, split_record, yuan_text,
};

pub const DETAIL_HEADER: [&str; 11] = [
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
];

pub const SUMMARY_HEADER: [&str; 5] = [
    "资金流水总笔数",
    "收入笔数",
    "收入金额",
    "支出笔数",
    "支出金额",
];

const INCOME: &str = "收入";
const EXPENSE: &str = "支出";

/// 业务名称 the writer gives transfers and their returns.
pub const TRANSFER_BUSINESS_NAME: &str = "商家转账";
/// 业务类型 the writer gives a payout, and a return, when the line has none.
pub const PAYOUT_BUSINESS_TYPE: &str = "商家转账";
pub const RETURN_BUSINESS_TYPE: &str = "商家转账退回";
/// Rows whose 业务名称 or 业务类型 holds this are fees.
const FEE_MARK: &str = "手续费";

/// The writer has no account to read: 账户结余 runs from this notional
/// opening balance (1,000,000.00 yuan), so balances stay plausible.
const RENDERED_OPENING_BALANCE_FEN: i64 = 100_000_000;

/// The submitter column; the real file shows the operator or `…API`.
const RENDERED_SUBMITTER: &str = "API";

/// The file for `lines` with `summary` as its summary row, which need not
/// agree with the lines (tests write disagreeing ones on purpose).
pub fn render(lines: &[StatementLine], summary: &StatementSummary) -> Vec<u8> {
    let mut out = String::new();
    out.push_str(&DETAIL_HEADER.join(","));
    out.push_str("\r\n");
    let mut balance = RENDERED_OPENING_BALANCE_FEN;
    for (index, line) in lines.iter().enumerate() {
        let income = line.kind.is_income();
        balance = if income {
            balance.saturating_add(line.amount.0)
        } else {
            balance.saturating_sub(line.amount.0)
        };
        let business_name = match line.kind {
            StatementLineKind::Payout | StatementLineKind::Return => TRANSFER_BUSINESS_NAME,
            StatementLineKind::Fee
            | StatementLineKind::OtherIncome
            | StatementLineKind::OtherExpense => line.business_type.as_str(),
        };
        let flow_no = format!("{}{:010}", line.occurred_at.format("%Y%m%d"), index + 1);
        let values = [
            line.occurred_at.format(TIME_FORMAT).to_string(),
            line.gateway_ref.clone(),
            flow_no,
            business_name.to_owned(),
            line.business_type.clone(),
            if income { INCOME } else { EXPENSE }.to_owned(),
            yuan_text(line.amount.0),
            yuan_text(balance),
            RENDERED_SUBMITTER.to_owned(),
            String::new(),
            line.out_bill_no.clone(),
        ];
        out.push_str(&backticked(&values));
    }
    out.push_str(&SUMMARY_HEADER.join(","));
    out.push_str("\r\n");
    out.push_str(&backticked(&[
        summary.line_count.to_string(),
        summary.income_count.to_string(),
        yuan_text(summary.income.0),
        summary.expense_count.to_string(),
        yuan_text(summary.expense.0),
    ]));
    out.into_bytes()
}

fn backticked(values: &[String]) -> String {
    let mut row = values
        .iter()
        .map(|value| csv_field(&format!("`{value}")))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

/// Reads a decompressed fund-flow bill for `bill_date`. Refuses, with the
/// line number, anything that is not exactly the detail header, detail rows
/// of that day, the summary header and a summary agreeing with the rows.
pub fn parse(bill_date: NaiveDate, bytes: &[u8]) -> Result<Statement, StatementError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        StatementError::Corrupt(format!(
            "the fund-flow bill is not UTF-8 (byte {})",
            error.valid_up_to()
        ))
    })?;
    let mut rows = numbered_lines(text).filter(|(_, line)| !line.trim().is_empty());
    let (number, header) = rows
        .next()
        .ok_or_else(|| StatementError::Corrupt("the fund-flow bill is empty".to_owned()))?;
    if fields(number, header)? != DETAIL_HEADER {
        return Err(corrupt(
            number,
            "not the fund-flow detail header (记账时间,微信支付业务单号,…,业务凭证号)",
        ));
    }
    let mut lines = Vec::new();
    let summary_header_line = loop {
        let (number, row) = rows.next().ok_or_else(|| {
            StatementError::Corrupt(
                "the file ends before its summary (资金流水总笔数,…)".to_owned(),
            )
        })?;
        let values = fields(number, row)?;
        if values == SUMMARY_HEADER {
            break number;
        }
        lines.push(detail_line(bill_date, number, &values)?);
    };
    let (number, row) = rows.next().ok_or_else(|| {
        corrupt(
            summary_header_line,
            "the summary header has no summary row after it",
        )
    })?;
    let values = fields(number, row)?;
    let [total, income_count, income, expense_count, expense] = values.as_slice() else {
        return Err(corrupt(
            number,
            format!("the summary row has {} columns, not 5", values.len()),
        ));
    };
    let summary = StatementSummary {
        line_count: parse_count(number, "资金流水总笔数", total)?,
        income_count: parse_count(number, "收入笔数", income_count)?,
        income: crate::AmountFen(parse_yuan(number, "收入金额", income)?),
        expense_count: parse_count(number, "支出笔数", expense_count)?,
        expense: crate::AmountFen(parse_yuan(number, "支出金额", expense)?),
    };
    if let Some((extra, _)) = rows.next() {
        return Err(corrupt(extra, "text after the summary row"));
    }
    check_summary(&summary, &lines, number)?;
    Ok(Statement {
        source: StatementSource::Wechat,
        bill_date,
        lines,
        summary,
    })
}

/// A row's values, each without its leading backtick.
fn fields(number: usize, row: &str) -> Result<Vec<String>, StatementError> {
    let values = split_record(row).map_err(|why| corrupt(number, why))?;
    Ok(values
        .into_iter()
        .map(|value| value.strip_prefix('`').map(str::to_owned).unwrap_or(value))
        .collect())
}

fn detail_line(
    bill_date: NaiveDate,
    number: usize,
    values: &[String],
) -> Result<StatementLine, StatementError> {
    let [
        time,
        gateway_ref,
        _flow_no,
        business_name,
        business_type,
        direction,
        amount,
        balance,
        _submitter,
        _remark,
        out_bill_no,
    ] = values
    else {
        return Err(corrupt(
            number,
            format!("a detail row has {} columns, not 11", values.len()),
        ));
    };
    let occurred_at = parse_time(number, "记账时间", time)?;
    if occurred_at.date() != bill_date {
        return Err(corrupt(
            number,
            format!("记账时间 {time} is not on the bill date {bill_date}"),
        ));
    }
    let amount = parse_yuan(number, "收支金额(元)", amount)?;
    if amount <= 0 {
        return Err(corrupt(
            number,
            "收支金额(元) must be positive; 收支类型 gives the direction",
        ));
    }
    parse_yuan(number, "账户结余(元)", balance)?;
    let is_fee = business_name.contains(FEE_MARK) || business_type.contains(FEE_MARK);
    let kind = match (direction.as_str(), out_bill_no.is_empty()) {
        (EXPENSE, _) if is_fee => StatementLineKind::Fee,
        (EXPENSE, false) => StatementLineKind::Payout,
        (EXPENSE, true) => StatementLineKind::OtherExpense,
        (INCOME, false) => StatementLineKind::Return,
        (INCOME, true) => StatementLineKind::OtherIncome,
        (other, _) => {
            return Err(corrupt(
                number,
                format!("收支类型 {other:?} is neither 收入 nor 支出"),
            ));
        }
    };
    Ok(StatementLine {
        out_bill_no: out_bill_no.clone(),
        gateway_ref: gateway_ref.clone(),
        kind,
        amount: crate::AmountFen(amount),
        occurred_at,
        business_type: business_type.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AmountFen;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    fn line(out_bill_no: &str, kind: StatementLineKind, fen: i64, time: &str) -> StatementLine {
        StatementLine {
            out_bill_no: out_bill_no.to_owned(),
            gateway_ref: format!("1330{out_bill_no}"),
            business_type: match kind {
                StatementLineKind::Return => RETURN_BUSINESS_TYPE,
                _ => PAYOUT_BUSINESS_TYPE,
            }
            .to_owned(),
            kind,
            amount: AmountFen(fen),
            occurred_at: chrono::NaiveDateTime::parse_from_str(
                &format!("2024-05-01 {time}"),
                TIME_FORMAT,
            )
            .unwrap(),
        }
    }

    /// Written by hand as the real file looks: header without backticks,
    /// every value behind one, CRLF line ends, a remark with a comma.
    const FIXTURE: &str = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号\r\n\
`2024-05-01 09:15:02,`1330000000000000000000001,`20240501000001,`商家转账,`商家转账,`支出,`0.10,`999.90,`1900000109API,`,`wd0001\r\n\
`2024-05-01 10:00:00,`1330000000000000000000002,`20240501000002,`商家转账,`商家转账,`支出,`1234.5,`-234.60,`1900000109API,\"`佣金,五月\",`wd0002\r\n\
`2024-05-01 11:30:00,`1330000000000000000000002,`20240501000003,`商家转账,`商家转账退回,`收入,`1234.50,`999.90,`1900000109API,`,`wd0002\r\n\
`2024-05-01 12:00:00,`4200000000000000000000009,`20240501000004,`充值,`充值,`收入,`500,`1499.90,`admin,`,`\r\n\
资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\r\n\
`4,`2,`1734.50,`2,`1234.60\r\n";

    #[test]
    fn a_hand_written_bill_reads_exactly() {
        let statement = parse(date(), FIXTURE.as_bytes()).unwrap();
        let kinds: Vec<_> = statement
            .lines
            .iter()
            .map(|line| (line.out_bill_no.as_str(), line.kind.clone(), line.amount.0))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("wd0001", StatementLineKind::Payout, 10),
                ("wd0002", StatementLineKind::Payout, 123_450),
                ("wd0002", StatementLineKind::Return, 123_450),
                ("", StatementLineKind::OtherIncome, 50_000),
            ]
        );
        assert_eq!(statement.lines[0].gateway_ref, "1330000000000000000000001");
        assert_eq!(statement.summary.expense, AmountFen(123_460));
        assert_eq!(statement.summary.line_count, 4);
    }

    #[test]
    fn what_the_writer_writes_the_parser_reads_back() {
        let lines = vec![
            line("wd0001", StatementLineKind::Payout, 1230, "08:00:00"),
            line("wd0002", StatementLineKind::Payout, 5, "09:00:00"),
            line("wd0002", StatementLineKind::Return, 5, "10:00:00"),
        ];
        let bytes = render(&lines, &StatementSummary::of(&lines));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("`支出,`12.30,"), "{text}");
        let statement = parse(date(), &bytes).unwrap();
        assert_eq!(statement.lines, lines);
        assert_eq!(statement.summary, StatementSummary::of(&lines));
    }

    #[test]
    fn a_summary_that_disagrees_with_the_detail_is_refused_with_its_line() {
        let lines = vec![line("wd0001", StatementLineKind::Payout, 1230, "08:00:00")];
        let mut summary = StatementSummary::of(&lines);
        summary.expense = AmountFen(1231);
        let error = parse(date(), &render(&lines, &summary)).unwrap_err();
        assert!(
            matches!(&error, StatementError::Corrupt(why) if why.starts_with("line 4:") && why.contains("summary")),
            "{error}"
        );
    }

    #[test]
    fn malformed_files_are_refused_with_the_line_number() {
        let three_decimals = FIXTURE.replace("`0.10,", "`0.101,");
        let error = parse(date(), three_decimals.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("line 2: 收支金额(元)"),
            "{error}"
        );
        assert!(
            error.to_string().contains("more than 2 decimals"),
            "{error}"
        );

        let short_row = FIXTURE.replace(",`wd0001\r\n", "\r\n");
        assert!(
            parse(date(), short_row.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("line 2: a detail row has 10 columns")
        );

        let no_summary = FIXTURE.split("资金流水总笔数").next().unwrap();
        assert!(
            parse(date(), no_summary.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("ends before its summary")
        );

        let other_day = FIXTURE.replace("`2024-05-01 10:00:00", "`2024-05-02 10:00:00");
        assert!(
            parse(date(), other_day.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("line 3: 记账时间")
        );

        let bad_header = FIXTURE.replacen("记账时间", "时间", 1);
        assert!(
            parse(date(), bad_header.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("line 1:")
        );

        let direction = FIXTURE.replacen("`支出,`0.10", "`转出,`0.10", 1);
        assert!(
            parse(date(), direction.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("收支类型")
        );
    }
}
