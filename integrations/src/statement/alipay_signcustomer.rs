//! The Alipay account log (`bill_type=signcustomer`, 账务明细) as the URL
//! from `alipay.data.dataservice.bill.downloadurl.query` hands it out: a
//! `csv.zip` holding a detail member (`<account>_<date>_账务明细.csv`) and a
//! summary member (`…_账务明细(汇总).csv`), both GBK CSVs framed by `#`
//! comment lines.
//!
//! Our transfer is an expense row with our `out_biz_no` in 商户订单号; a bank
//! bounce an income row with the same 商户订单号; a bank card's channel fee
//! its own expense row with 业务类型 `收费` and the same 商户订单号. The
//! detail columns are from the reference; the summary member's columns and
//! the comment lines are our model of the real file, not read from one.

use std::io::{Cursor, Read, Write};

use chrono::NaiveDate;
use zip::write::SimpleFileOptions;

use super::{
    MAX_STATEMENT_BYTES, Statement, StatementError, StatementLine, StatementLineKind,
    StatementSource, StatementSummary, TIME_FORMAT, check_summary, corrupt, csv_field,
    numbered_lines, parse_count, parse_time, parse_yuan, split_record, yuan_text,
};
use crate::AmountFen;

/// Full-width parentheses, as Alipay writes them.
pub const DETAIL_HEADER: [&str; 12] = [
    "账务流水号",
    "业务流水号",
    "商户订单号",
    "商品名称",
    "发生时间",
    "对方账号",
    "收入金额（+元）",
    "支出金额（-元）",
    "账户余额（元）",
    "交易渠道",
    "业务类型",
    "备注",
];

pub const SUMMARY_HEADER: [&str; 4] =
    ["收入笔数", "收入金额（+元）", "支出笔数", "支出金额（-元）"];

/// 业务类型 of a channel fee.
pub const FEE_BUSINESS_TYPE: &str = "收费";
/// 业务类型 the writer's callers give a payout and a bounce.
pub const PAYOUT_BUSINESS_TYPE: &str = "转账";
pub const RETURN_BUSINESS_TYPE: &str = "退票";

/// A csv.zip holds two members; a few more (a readme) are tolerated, many
/// are not a statement.
const MAX_MEMBERS: usize = 8;

/// 账户余额 runs from this notional opening balance (1,000,000.00 yuan): the
/// writer has no account to read.
const RENDERED_OPENING_BALANCE_FEN: i64 = 100_000_000;

const RENDERED_CHANNEL: &str = "支付宝";

/// The detail member's name for `account` (the 2088… user id) and the day.
pub fn detail_member_name(account: &str, bill_date: NaiveDate) -> String {
    format!("{account}_{}_账务明细.csv", bill_date.format("%Y%m%d"))
}

pub fn summary_member_name(account: &str, bill_date: NaiveDate) -> String {
    format!(
        "{account}_{}_账务明细(汇总).csv",
        bill_date.format("%Y%m%d")
    )
}

/// The `csv.zip` for `lines` with `summary` as its summary, which need not
/// agree with the lines (tests write disagreeing ones on purpose).
pub fn render(
    account: &str,
    bill_date: NaiveDate,
    lines: &[StatementLine],
    summary: &StatementSummary,
) -> Vec<u8> {
    let next_day = bill_date.succ_opt().unwrap_or(bill_date);
    let span = format!(
        "#起始日期：[{} 00:00:00]   终止日期：[{} 00:00:00]\r\n",
        bill_date.format("%Y年%m月%d日"),
        next_day.format("%Y年%m月%d日")
    );
    let exported = format!(
        "#导出时间：[{} 10:00:00]\r\n",
        next_day.format("%Y年%m月%d日")
    );

    let mut detail = format!("#支付宝账务明细查询\r\n#账号：[{account}]\r\n{span}");
    detail.push_str("#-----------------------------------------账务明细列表----------------------------------------\r\n");
    detail.push_str(&DETAIL_HEADER.join(","));
    detail.push_str("\r\n");
    let mut balance = RENDERED_OPENING_BALANCE_FEN;
    for (index, line) in lines.iter().enumerate() {
        let (income, expense) = if line.kind.is_income() {
            balance = balance.saturating_add(line.amount.0);
            (yuan_text(line.amount.0), String::new())
        } else {
            balance = balance.saturating_sub(line.amount.0);
            (String::new(), yuan_text(-line.amount.0))
        };
        let values = [
            format!("{}{:012}", bill_date.format("%Y%m%d"), index + 1),
            line.gateway_ref.clone(),
            line.out_bill_no.clone(),
            String::new(),
            line.occurred_at.format(TIME_FORMAT).to_string(),
            String::new(),
            income,
            expense,
            yuan_text(balance),
            RENDERED_CHANNEL.to_owned(),
            line.business_type.clone(),
            String::new(),
        ];
        let row: Vec<String> = values.iter().map(|value| csv_field(value)).collect();
        detail.push_str(&row.join(","));
        detail.push_str("\r\n");
    }
    detail.push_str("#-----------------------------------------账务明细列表结束------------------------------------\r\n");
    detail.push_str(&exported);

    let mut totals = format!("#支付宝账务明细汇总\r\n#账号：[{account}]\r\n{span}");
    totals.push_str(&SUMMARY_HEADER.join(","));
    totals.push_str("\r\n");
    totals.push_str(&format!(
        "{},{},{},{}\r\n",
        summary.income_count,
        yuan_text(summary.income.0),
        summary.expense_count,
        yuan_text(-summary.expense.0)
    ));
    totals.push_str(&exported);

    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in [
        (detail_member_name(account, bill_date), detail),
        (summary_member_name(account, bill_date), totals),
    ] {
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable, "the statement text is all GBK-encodable");
        archive
            .start_file(name, options)
            .expect("writing to memory cannot fail");
        archive
            .write_all(&gbk)
            .expect("writing to memory cannot fail");
    }
    archive
        .finish()
        .expect("writing to memory cannot fail")
        .into_inner()
}

/// Reads a `csv.zip` account log for `bill_date`. Members are told apart by
/// their header row, not their names: real archives store the names in GBK
/// without the zip UTF-8 flag, so names are only for messages.
pub fn parse(bill_date: NaiveDate, zip_bytes: &[u8]) -> Result<Statement, StatementError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|error| StatementError::Corrupt(format!("not a zip archive: {error}")))?;
    if archive.len() > MAX_MEMBERS {
        return Err(StatementError::Corrupt(format!(
            "the archive has {} members; a statement has 2",
            archive.len()
        )));
    }
    let mut detail = None;
    let mut summary = None;
    for index in 0..archive.len() {
        let mut member = archive
            .by_index(index)
            .map_err(|error| StatementError::Corrupt(format!("zip member {index}: {error}")))?;
        if member.is_dir() {
            continue;
        }
        // A GBK name without the UTF-8 flag may not decode: it is only a label.
        let name = member
            .name()
            .map_or_else(|_| format!("member {index}"), |name| name.into_owned());
        let mut bytes = Vec::new();
        (&mut member)
            .take(MAX_STATEMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| StatementError::Corrupt(format!("{name}: does not unzip: {error}")))?;
        if bytes.len() as u64 > MAX_STATEMENT_BYTES {
            return Err(StatementError::Corrupt(format!(
                "{name}: larger than {MAX_STATEMENT_BYTES} bytes unzipped"
            )));
        }
        let text = encoding_rs::GBK
            .decode_without_bom_handling_and_without_replacement(&bytes)
            .ok_or_else(|| StatementError::Corrupt(format!("{name}: not GBK text")))?
            .into_owned();
        let header = numbered_lines(&text)
            .find(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|(_, line)| split_record(line).unwrap_or_default());
        let slot = match header {
            Some(fields) if fields == DETAIL_HEADER => &mut detail,
            Some(fields) if fields == SUMMARY_HEADER => &mut summary,
            _ => continue,
        };
        if slot.replace((name.clone(), text)).is_some() {
            return Err(StatementError::Corrupt(format!(
                "{name}: a second member of the same kind"
            )));
        }
    }
    let (detail_name, detail) = detail.ok_or_else(|| {
        StatementError::Corrupt("no member with the 账务明细 detail header".to_owned())
    })?;
    let (summary_name, summary) = summary.ok_or_else(|| {
        StatementError::Corrupt("no member with the 账务明细(汇总) summary header".to_owned())
    })?;
    let in_member = |name: &str| {
        let name = name.to_owned();
        move |error: StatementError| match error {
            StatementError::Corrupt(why) => StatementError::Corrupt(format!("{name}: {why}")),
            other => other,
        }
    };
    let lines = parse_detail(bill_date, &detail).map_err(in_member(&detail_name))?;
    let (summary_line, summary) =
        parse_summary(bill_date, &summary).map_err(in_member(&summary_name))?;
    check_summary(&summary, &lines, summary_line).map_err(in_member(&summary_name))?;
    Ok(Statement {
        source: StatementSource::Alipay,
        bill_date,
        lines,
        summary,
    })
}

/// The member's data rows with their line numbers, after checking any
/// `#起始日期` comment names `bill_date`. The header row is the first.
fn data_rows(
    bill_date: NaiveDate,
    text: &str,
) -> Result<Vec<(usize, Vec<String>)>, StatementError> {
    let start = format!("#起始日期：[{}", bill_date.format("%Y年%m月%d日"));
    let mut rows = Vec::new();
    for (number, line) in numbered_lines(text) {
        if line.starts_with("#起始日期") && !line.starts_with(&start) {
            return Err(corrupt(number, format!("the file is not for {bill_date}")));
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        rows.push((
            number,
            split_record(line).map_err(|why| corrupt(number, why))?,
        ));
    }
    Ok(rows)
}

fn parse_detail(bill_date: NaiveDate, text: &str) -> Result<Vec<StatementLine>, StatementError> {
    data_rows(bill_date, text)?
        .into_iter()
        .skip(1)
        .map(|(number, values)| detail_line(bill_date, number, &values))
        .collect()
}

fn detail_line(
    bill_date: NaiveDate,
    number: usize,
    values: &[String],
) -> Result<StatementLine, StatementError> {
    let [
        _account_flow_no,
        gateway_ref,
        out_bill_no,
        _item,
        time,
        _counterparty,
        income,
        expense,
        balance,
        _channel,
        business_type,
        _remark,
    ] = values
    else {
        return Err(corrupt(
            number,
            format!("a detail row has {} columns, not 12", values.len()),
        ));
    };
    let occurred_at = parse_time(number, "发生时间", time)?;
    if occurred_at.date() != bill_date {
        return Err(corrupt(
            number,
            format!("发生时间 {time} is not on the bill date {bill_date}"),
        ));
    }
    let optional = |column: &str, text: &str| {
        if text.is_empty() {
            Ok(0)
        } else {
            parse_yuan(number, column, text)
        }
    };
    let income = optional("收入金额（+元）", income)?;
    let expense = optional("支出金额（-元）", expense)?;
    parse_yuan(number, "账户余额（元）", balance)?;
    let (is_income, amount) = match (income, expense) {
        (income, 0) if income > 0 => (true, income),
        (0, expense) if expense != 0 => (false, expense.abs()),
        _ => {
            return Err(corrupt(
                number,
                "exactly one of 收入金额（+元） (positive) and 支出金额（-元） must be set",
            ));
        }
    };
    let kind = match (is_income, out_bill_no.is_empty()) {
        (false, _) if business_type == FEE_BUSINESS_TYPE => StatementLineKind::Fee,
        (false, false) => StatementLineKind::Payout,
        (false, true) => StatementLineKind::OtherExpense,
        (true, false) => StatementLineKind::Return,
        (true, true) => StatementLineKind::OtherIncome,
    };
    Ok(StatementLine {
        out_bill_no: out_bill_no.clone(),
        gateway_ref: gateway_ref.clone(),
        kind,
        amount: AmountFen(amount),
        occurred_at,
        business_type: business_type.clone(),
    })
}

/// The summary and the line it is on.
fn parse_summary(
    bill_date: NaiveDate,
    text: &str,
) -> Result<(usize, StatementSummary), StatementError> {
    let rows = data_rows(bill_date, text)?;
    let [_header, (number, values)] = rows.as_slice() else {
        return Err(StatementError::Corrupt(format!(
            "the summary member has {} rows under its header, not 1",
            rows.len().saturating_sub(1)
        )));
    };
    let number = *number;
    let [income_count, income, expense_count, expense] = values.as_slice() else {
        return Err(corrupt(
            number,
            format!("the summary row has {} columns, not 4", values.len()),
        ));
    };
    let income_count = parse_count(number, "收入笔数", income_count)?;
    let expense_count = parse_count(number, "支出笔数", expense_count)?;
    Ok((
        number,
        StatementSummary {
            line_count: income_count + expense_count,
            income_count,
            income: AmountFen(parse_yuan(number, "收入金额（+元）", income)?),
            expense_count,
            expense: AmountFen(parse_yuan(number, "支出金额（-元）", expense)?.abs()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "2088000000000001";

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    fn line(
        out_bill_no: &str,
        kind: StatementLineKind,
        fen: i64,
        business_type: &str,
    ) -> StatementLine {
        StatementLine {
            out_bill_no: out_bill_no.to_owned(),
            gateway_ref: format!("2024050111070001{out_bill_no}"),
            kind,
            amount: AmountFen(fen),
            occurred_at: chrono::NaiveDateTime::parse_from_str("2024-05-01 09:30:00", TIME_FORMAT)
                .unwrap(),
            business_type: business_type.to_owned(),
        }
    }

    fn zip_of(members: &[(&str, &str)]) -> Vec<u8> {
        let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, text) in members {
            archive
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            archive.write_all(&encoding_rs::GBK.encode(text).0).unwrap();
        }
        archive.finish().unwrap().into_inner()
    }

    /// Written by hand as the real file looks: `#` lines at both ends,
    /// full-width parentheses, padded columns, expenses with a minus sign.
    const DETAIL: &str = "#支付宝账务明细查询\r\n\
#账号：[2088000000000001]\r\n\
#起始日期：[2024年05月01日 00:00:00]   终止日期：[2024年05月02日 00:00:00]\r\n\
#-----------------------------------------账务明细列表----------------------------------------\r\n\
账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,交易渠道,业务类型,备注\r\n\
310000001\t,20240501110070001506,wd0001\t,佣金提现,2024-05-01 09:30:00,622202******0001,,-0.10,999.90,支付宝,转账,\r\n\
310000002\t,20240501110070001506,wd0001\t,,2024-05-01 09:30:00,,,-2.00,997.90,支付宝,收费,手续费\r\n\
310000003\t,20240501110070001507,wd0002\t,佣金提现,2024-05-01 10:00:00,622202******0002,,-1234.5,-236.60,支付宝,转账,\r\n\
310000004\t,20240501110070001507,wd0002\t,,2024-05-01 16:00:00,622202******0002,+1234.50,,997.90,支付宝,退票,\"退票,户名不符\"\r\n\
#-----------------------------------------账务明细列表结束------------------------------------\r\n\
#导出时间：[2024年05月02日 10:00:00]\r\n";

    const SUMMARY: &str = "#支付宝账务明细汇总\r\n\
#账号：[2088000000000001]\r\n\
#起始日期：[2024年05月01日 00:00:00]   终止日期：[2024年05月02日 00:00:00]\r\n\
收入笔数,收入金额（+元）,支出笔数,支出金额（-元）\r\n\
1,1234.50,3,-1236.60\r\n\
#导出时间：[2024年05月02日 10:00:00]\r\n";

    #[test]
    fn a_hand_written_gbk_archive_reads_exactly() {
        let bytes = zip_of(&[
            ("2088000000000001_20240501_账务明细.csv", DETAIL),
            ("2088000000000001_20240501_账务明细(汇总).csv", SUMMARY),
        ]);
        let statement = parse(date(), &bytes).unwrap();
        let kinds: Vec<_> = statement
            .lines
            .iter()
            .map(|line| (line.out_bill_no.as_str(), line.kind.clone(), line.amount.0))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("wd0001", StatementLineKind::Payout, 10),
                ("wd0001", StatementLineKind::Fee, 200),
                ("wd0002", StatementLineKind::Payout, 123_450),
                ("wd0002", StatementLineKind::Return, 123_450),
            ]
        );
        assert_eq!(statement.summary.expense, AmountFen(123_660));
        assert_eq!(statement.source, StatementSource::Alipay);
    }

    #[test]
    fn what_the_writer_writes_the_parser_reads_back_and_it_is_gbk() {
        let lines = vec![
            line(
                "wd0001",
                StatementLineKind::Payout,
                1230,
                PAYOUT_BUSINESS_TYPE,
            ),
            line("wd0001", StatementLineKind::Fee, 200, FEE_BUSINESS_TYPE),
            line(
                "wd0001",
                StatementLineKind::Return,
                1230,
                RETURN_BUSINESS_TYPE,
            ),
        ];
        let bytes = render(ACCOUNT, date(), &lines, &StatementSummary::of(&lines));
        let statement = parse(date(), &bytes).unwrap();
        assert_eq!(statement.lines, lines);

        let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
        let mut raw = Vec::new();
        archive
            .by_name(&detail_member_name(ACCOUNT, date()))
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        assert!(std::str::from_utf8(&raw).is_err(), "GBK, not UTF-8");
        let (gbk_header, _, _) = encoding_rs::GBK.encode("收入金额（+元）");
        assert!(
            raw.windows(gbk_header.len())
                .any(|window| window == &gbk_header[..])
        );
    }

    #[test]
    fn a_summary_that_disagrees_with_the_detail_is_refused() {
        let lines = vec![line(
            "wd0001",
            StatementLineKind::Payout,
            1230,
            PAYOUT_BUSINESS_TYPE,
        )];
        let mut summary = StatementSummary::of(&lines);
        summary.expense_count = 2;
        summary.line_count = 2;
        let error = parse(date(), &render(ACCOUNT, date(), &lines, &summary)).unwrap_err();
        assert!(
            matches!(&error, StatementError::Corrupt(why) if why.contains("(汇总).csv: line 5: the summary states")),
            "{error}"
        );
    }

    #[test]
    fn malformed_archives_are_refused_with_a_reason() {
        let error = parse(date(), b"PK not really").unwrap_err();
        assert!(error.to_string().contains("not a zip archive"), "{error}");

        let no_summary = zip_of(&[("a.csv", DETAIL)]);
        assert!(
            parse(date(), &no_summary)
                .unwrap_err()
                .to_string()
                .contains("summary header")
        );

        let three_decimals = DETAIL.replace("-0.10", "-0.101");
        let error = parse(
            date(),
            &zip_of(&[("a.csv", &three_decimals), ("b.csv", SUMMARY)]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("a.csv: line 6: 支出金额（-元）"),
            "{error}"
        );

        let both_set = DETAIL.replace(",,-0.10,", ",0.10,-0.10,");
        let error =
            parse(date(), &zip_of(&[("a.csv", &both_set), ("b.csv", SUMMARY)])).unwrap_err();
        assert!(error.to_string().contains("line 6: exactly one"), "{error}");

        let other_day = parse(
            NaiveDate::from_ymd_opt(2024, 5, 2).unwrap(),
            &zip_of(&[("a.csv", DETAIL), ("b.csv", SUMMARY)]),
        );
        assert!(
            other_day
                .unwrap_err()
                .to_string()
                .contains("line 3: the file is not for 2024-05-02")
        );

        let utf8 = {
            let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
            archive
                .start_file("a.csv", SimpleFileOptions::default())
                .unwrap();
            archive.write_all(&[0x81, 0x20]).unwrap();
            archive.finish().unwrap().into_inner()
        };
        assert!(
            parse(date(), &utf8)
                .unwrap_err()
                .to_string()
                .contains("not GBK")
        );
    }
}
