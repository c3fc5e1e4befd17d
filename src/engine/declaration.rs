//! The monthly withholding declaration (个人所得税扣缴申报表, tax-cn.md §5):
//! one row per distributor paid in the month, every one of them even when
//! no tax was withheld, in the column layout of `workflows/declaration.toml`
//! (the 扣缴端 import template's columns, then our reconciliation columns),
//! with a totals row; as CSV (UTF-8 with BOM, for Excel) or XLSX.
//!
//! The per-payment method makes the month's payouts one 次, so a row carries
//! the month's gross, the tax on it and the tax withheld on its payouts; the
//! cumulative method gets its own layout with the year-to-date figures of the
//! month's last payout. Full names and ID numbers are opened from the vault
//! here and only here: the declaration is the one document that must carry
//! them unmasked.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::domain::identity::starts_like_formula;
use crate::domain::money::{Money, Rate};
use crate::domain::tax::{self, Month, WithholdingMethod};
use crate::store::{Store, StoreError, WithdrawalRecord};
use crate::vault::Vault;
use crate::vault::credentials::open_identity;

/// The shipped layout, used when the workflows folder has none.
/// How many prepared months to look through for one: two years, the span
/// an accountant revisits (the /tax page, and start-up's missed run).
pub const PREPARED_MONTHS: i64 = 24;

pub const SHIPPED_LAYOUT: &str = include_str!("../../workflows/declaration.toml");

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    DistributorId,
    Name,
    IdType,
    IdNumber,
    IncomeItem,
    /// 本期收入: the month's gross.
    Income,
    /// An amount column the template has and we always fill with 0.00.
    Zero,
    /// A column the template has and we leave empty.
    Blank,
    Fee,
    BasicDeduction,
    Taxable,
    Rate,
    QuickDeduction,
    /// Tax due on the month (per-payment) or the year to date (cumulative).
    TaxDue,
    /// Tax withheld on the month's payouts.
    Withheld,
    Net,
    Payouts,
    /// Cumulative method: the year's income to date.
    IncomeToDate,
    /// Cumulative method: consecutive months counted.
    MonthsCount,
}

impl Field {
    fn is_amount(self) -> bool {
        matches!(
            self,
            Field::Income
                | Field::Zero
                | Field::Fee
                | Field::BasicDeduction
                | Field::Taxable
                | Field::QuickDeduction
                | Field::TaxDue
                | Field::Withheld
                | Field::Net
                | Field::IncomeToDate
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub header: String,
    pub field: Field,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layouts {
    pub per_payment: Vec<Column>,
    pub cumulative: Vec<Column>,
}

impl Layouts {
    pub fn parse(text: &str, file: &str) -> Result<Layouts, DeclarationError> {
        let layouts: Layouts = toml::from_str(text)
            .map_err(|error| DeclarationError::Layout(format!("{file}: {error}")))?;
        for (name, columns) in [
            ("per_payment", &layouts.per_payment),
            ("cumulative", &layouts.cumulative),
        ] {
            if columns.is_empty() {
                return Err(DeclarationError::Layout(format!(
                    "{file}: [{name}] has no columns"
                )));
            }
        }
        Ok(layouts)
    }

    pub fn shipped() -> Layouts {
        Layouts::parse(SHIPPED_LAYOUT, "workflows/declaration.toml")
            .expect("the shipped layout parses (unit-tested)")
    }

    pub fn for_method(&self, method: WithholdingMethod) -> &[Column] {
        match method {
            WithholdingMethod::PerPayment => &self.per_payment,
            WithholdingMethod::Cumulative => &self.cumulative,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeclarationError {
    #[error("declaration layout: {0}")]
    Layout(String),
    #[error("opening a distributor's identity: {0}")]
    Vault(String),
    #[error("distributor {0} was paid but has no identity on file")]
    IdentityMissing(String),
    #[error("tax: {0}")]
    Tax(String),
    #[error("writing the spreadsheet: {0}")]
    Xlsx(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One distributor's month.
#[derive(Debug, Clone)]
pub struct Row {
    pub distributor_id: String,
    pub name: secrecy::SecretString,
    pub id_number: secrecy::SecretString,
    pub income: Money,
    pub fee: Money,
    pub basic_deduction: Money,
    pub taxable: Money,
    pub rate: Rate,
    pub quick_deduction: Money,
    pub tax_due: Money,
    pub withheld: Money,
    pub net: Money,
    pub payouts: usize,
    pub income_to_date: Money,
    pub months_count: Option<u8>,
}

/// A month's declaration, ready to write.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub month: Month,
    pub method: WithholdingMethod,
    pub agent_name: String,
    pub agent_tin: String,
    pub rows: Vec<Row>,
}

/// Totals over the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub distributors: usize,
    pub payouts: usize,
    pub income: Money,
    pub tax_due: Money,
    pub withheld: Money,
    pub net: Money,
}

fn money_of(value: &serde_json::Value, key: &str) -> Result<Money, DeclarationError> {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .and_then(|text| Money::parse_signed(text).ok())
        .ok_or_else(|| DeclarationError::Tax(format!("withholding without {key}")))
}

impl Declaration {
    /// Gathers the month's paid withdrawals into rows.
    pub async fn prepare(
        store: &Store,
        vault: &Vault,
        month: Month,
        method: WithholdingMethod,
        agent_name: &str,
        agent_tin: &str,
    ) -> Result<Declaration, DeclarationError> {
        let paid = store.paid_withdrawals_in_month(month).await?;
        let mut by_distributor: BTreeMap<String, Vec<WithdrawalRecord>> = BTreeMap::new();
        for withdrawal in paid {
            by_distributor
                .entry(withdrawal.distributor_id.to_string())
                .or_default()
                .push(withdrawal);
        }
        let mut rows = Vec::with_capacity(by_distributor.len());
        for (distributor_id, withdrawals) in by_distributor {
            let sum = |pick: fn(&WithdrawalRecord) -> Money| {
                Money::checked_sum(withdrawals.iter().map(pick))
                    .ok_or_else(|| DeclarationError::Tax("overflow".to_owned()))
            };
            let income = sum(|withdrawal| withdrawal.gross)?;
            let withheld = sum(|withdrawal| withdrawal.tax)?;
            let net = sum(|withdrawal| withdrawal.net)?;
            let identity = store
                .identity(&withdrawals[0].distributor_id)
                .await?
                .ok_or_else(|| DeclarationError::IdentityMissing(distributor_id.clone()))?;
            let (name, id_number) = open_identity(vault, &identity)
                .map_err(|error| DeclarationError::Vault(error.to_string()))?;
            let row = match method {
                WithholdingMethod::PerPayment => {
                    let computed = tax::per_payment_tax(income)
                        .map_err(|error| DeclarationError::Tax(error.to_string()))?;
                    Row {
                        distributor_id,
                        name,
                        id_number,
                        income,
                        fee: computed.fee,
                        basic_deduction: computed.basic_deduction,
                        taxable: computed.taxable,
                        rate: computed.rate,
                        quick_deduction: computed.quick_deduction,
                        tax_due: computed.tax,
                        withheld,
                        net,
                        payouts: withdrawals.len(),
                        income_to_date: income,
                        months_count: None,
                    }
                }
                WithholdingMethod::Cumulative => {
                    // The year to date as of the month's last payout.
                    let last = withdrawals
                        .iter()
                        .max_by_key(|withdrawal| withdrawal.requested_at)
                        .ok_or_else(|| DeclarationError::Tax("empty month".to_owned()))?;
                    let figures: serde_json::Value = serde_json::from_str(&last.withholding)
                        .map_err(|error| DeclarationError::Tax(error.to_string()))?;
                    let rate = figures
                        .get("rate")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|text| Rate::parse_percent(text).ok())
                        .unwrap_or(Rate::ZERO);
                    Row {
                        distributor_id,
                        name,
                        id_number,
                        income,
                        fee: money_of(&figures, "fee")?,
                        basic_deduction: money_of(&figures, "basic_deduction")?,
                        taxable: money_of(&figures, "taxable")?,
                        rate,
                        quick_deduction: money_of(&figures, "quick_deduction")?,
                        tax_due: money_of(&figures, "tax_to_date")?,
                        withheld,
                        net,
                        payouts: withdrawals.len(),
                        income_to_date: money_of(&figures, "income_to_date")?,
                        months_count: figures
                            .get("months_count")
                            .and_then(serde_json::Value::as_u64)
                            .and_then(|count| u8::try_from(count).ok()),
                    }
                }
            };
            rows.push(row);
        }
        Ok(Declaration {
            month,
            method,
            agent_name: agent_name.to_owned(),
            agent_tin: agent_tin.to_owned(),
            rows,
        })
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            distributors: self.rows.len(),
            ..Totals::default()
        };
        for row in &self.rows {
            totals.payouts += row.payouts;
            totals.income = totals
                .income
                .checked_add(row.income)
                .unwrap_or(totals.income);
            totals.tax_due = totals
                .tax_due
                .checked_add(row.tax_due)
                .unwrap_or(totals.tax_due);
            totals.withheld = totals
                .withheld
                .checked_add(row.withheld)
                .unwrap_or(totals.withheld);
            totals.net = totals.net.checked_add(row.net).unwrap_or(totals.net);
        }
        totals
    }

    /// 税款所属期: the first to the last day of the month.
    pub fn tax_period(&self) -> String {
        self.month.tax_period()
    }
}

/// A cell's content.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    Amount(Money),
    Count(i64),
    Empty,
}

fn cell(row: &Row, field: Field, income_item: &str) -> Cell {
    match field {
        Field::DistributorId => Cell::Text(row.distributor_id.clone()),
        Field::Name => Cell::Text(row.name.expose_secret().to_owned()),
        Field::IdType => Cell::Text("居民身份证".to_owned()),
        Field::IdNumber => Cell::Text(row.id_number.expose_secret().to_owned()),
        Field::IncomeItem => Cell::Text(income_item.to_owned()),
        Field::Income => Cell::Amount(row.income),
        Field::Zero => Cell::Amount(Money::ZERO),
        Field::Blank => Cell::Empty,
        Field::Fee => Cell::Amount(row.fee),
        Field::BasicDeduction => Cell::Amount(row.basic_deduction),
        Field::Taxable => Cell::Amount(row.taxable),
        Field::Rate => Cell::Text(row.rate.to_string()),
        Field::QuickDeduction => Cell::Amount(row.quick_deduction),
        Field::TaxDue => Cell::Amount(row.tax_due),
        Field::Withheld => Cell::Amount(row.withheld),
        Field::Net => Cell::Amount(row.net),
        Field::Payouts => Cell::Count(row.payouts as i64),
        Field::IncomeToDate => Cell::Amount(row.income_to_date),
        Field::MonthsCount => row
            .months_count
            .map_or(Cell::Empty, |count| Cell::Count(i64::from(count))),
    }
}

fn income_item(method: WithholdingMethod) -> &'static str {
    match method {
        WithholdingMethod::PerPayment => "一般劳务报酬所得",
        WithholdingMethod::Cumulative => "劳务报酬（适用累计预扣法）",
    }
}

/// The table: headers, rows, then the totals row (amount columns summed).
fn table(declaration: &Declaration, columns: &[Column]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let headers = columns.iter().map(|column| column.header.clone()).collect();
    let item = income_item(declaration.method);
    let mut rows: Vec<Vec<Cell>> = declaration
        .rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| cell(row, column.field, item))
                .collect()
        })
        .collect();
    let mut totals: Vec<Cell> = columns
        .iter()
        .map(|column| {
            if column.field.is_amount() {
                let sum = declaration.rows.iter().fold(Money::ZERO, |total, row| {
                    match cell(row, column.field, item) {
                        Cell::Amount(amount) => total.checked_add(amount).unwrap_or(total),
                        _ => total,
                    }
                });
                Cell::Amount(sum)
            } else if column.field == Field::Payouts {
                Cell::Count(declaration.rows.iter().map(|row| row.payouts as i64).sum())
            } else {
                Cell::Empty
            }
        })
        .collect();
    if let Some(first) = totals.first_mut() {
        *first = Cell::Text("合计".to_owned());
    }
    rows.push(totals);
    (headers, rows)
}

/// One text cell of the CSV, safe to open in a spreadsheet.
///
/// Every text cell goes through here, whoever wrote the text: names and ids
/// come from distributors and the shop, headers and the agent's name from
/// files an operator edits. A cell a spreadsheet would read as a formula
/// (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading
/// `'` (OWASP CSV injection), which spreadsheets show as text and do not run;
/// then the cell is quoted when it holds a separator, a quote or a line
/// break, with its quotes doubled (RFC 4180).
///
/// Amounts and counts do not come through here: we format them ourselves
/// from integers (`-12.50`, `3`), so they are only ever digits, one `.` and
/// perhaps a leading `-`, which a spreadsheet reads as a number, never as a
/// formula; a `'` before them would turn them into text and break the
/// accountant's sums.
fn csv_text(text: &str) -> String {
    let neutral = if starts_like_formula(text) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

/// The declaration as CSV: a BOM (Excel reads UTF-8 then), a title line with
/// the agent and the period, the header, the rows and the totals row.
pub fn to_csv(declaration: &Declaration, columns: &[Column]) -> String {
    let (headers, rows) = table(declaration, columns);
    let mut out = String::from("\u{feff}");
    out.push_str(&format!(
        "{},{},{},{}\n",
        csv_text(&format!("扣缴义务人名称：{}", declaration.agent_name)),
        csv_text(&format!("纳税人识别号：{}", declaration.agent_tin)),
        csv_text(&format!("税款所属期：{}", declaration.tax_period())),
        csv_text("金额单位：人民币元（列至角分）")
    ));
    out.push_str(
        &headers
            .iter()
            .map(|header| csv_text(header))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push('\n');
    for row in rows {
        let fields: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                Cell::Text(text) => csv_text(text),
                Cell::Amount(amount) => amount.to_string(),
                Cell::Count(count) => count.to_string(),
                Cell::Empty => String::new(),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The declaration as an XLSX workbook: amounts are numbers with a
/// two-decimal format (a spreadsheet stores numbers as binary floating
/// point; every amount here is a whole number of fen divided by 100, which
/// the format shows exactly), ID numbers and ids are text.
///
/// Text is written with `write_string` only, which stores it as a string
/// cell: a name such as `=HYPERLINK(…)` stays text and is never a formula.
/// No cell of this workbook is a formula; the totals row is summed here.
pub fn to_xlsx(declaration: &Declaration, columns: &[Column]) -> Result<Vec<u8>, DeclarationError> {
    use rust_xlsxwriter::{Format, Workbook};
    let xlsx = |error: rust_xlsxwriter::XlsxError| DeclarationError::Xlsx(error.to_string());
    let (headers, rows) = table(declaration, columns);
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet
        .set_name(declaration.month.to_string())
        .map_err(xlsx)?;
    let bold = Format::new().set_bold();
    let amount = Format::new().set_num_format("0.00");
    sheet
        .write_string(
            0,
            0,
            format!(
                "扣缴义务人名称：{}　纳税人识别号：{}　税款所属期：{}　金额单位：人民币元（列至角分）",
                declaration.agent_name,
                declaration.agent_tin,
                declaration.tax_period()
            ),
        )
        .map_err(xlsx)?;
    for (column, header) in headers.iter().enumerate() {
        sheet
            .write_string_with_format(1, column as u16, header, &bold)
            .map_err(xlsx)?;
    }
    for (index, row) in rows.iter().enumerate() {
        let line = (index + 2) as u32;
        for (column, cell) in row.iter().enumerate() {
            let column = column as u16;
            match cell {
                Cell::Text(text) => {
                    sheet.write_string(line, column, text).map_err(xlsx)?;
                }
                Cell::Amount(money) => {
                    // Exact: fen / 100 is the nearest double to the decimal amount.
                    let yuan = money.fen() as f64 / 100.0;
                    sheet
                        .write_number_with_format(line, column, yuan, &amount)
                        .map_err(xlsx)?;
                }
                Cell::Count(count) => {
                    sheet
                        .write_number(line, column, *count as f64)
                        .map_err(xlsx)?;
                }
                Cell::Empty => {}
            }
        }
    }
    workbook.save_to_buffer().map_err(xlsx)
}

/// Prepares the monthly declarations the schedule asks for (`job =
/// "prepare_declaration"` in `workflows/schedules.toml`): builds last month's
/// CSV and XLSX, checks the tax against the ledger, and records them with
/// their totals for the accountant's page. Re-preparing a month replaces
/// what was prepared (a payout confirmed late still belongs to its month).
pub struct DeclarationPreparer {
    pub store: std::sync::Arc<Store>,
    pub vault: std::sync::Arc<Vault>,
    pub settings: std::sync::Arc<crate::config::Settings>,
}

impl DeclarationPreparer {
    /// The layouts in force: the workflows folder's file, or the shipped one.
    pub fn layouts(&self) -> Result<Layouts, DeclarationError> {
        match std::fs::read_to_string(self.settings.workflows_dir.join("declaration.toml")) {
            Ok(text) => Layouts::parse(&text, "workflows/declaration.toml"),
            Err(_) => Ok(Layouts::shipped()),
        }
    }

    /// The declaration of `month` as it stands now.
    pub async fn declaration(&self, month: Month) -> Result<Declaration, DeclarationError> {
        Declaration::prepare(
            &self.store,
            &self.vault,
            month,
            self.settings.withholding_method,
            &self.settings.withholding_agent_name,
            &self.settings.withholding_agent_tin,
        )
        .await
    }

    /// Prepares and records `month`'s declaration.
    pub async fn prepare(
        &self,
        month: Month,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::PreparedDeclaration, DeclarationError> {
        let declaration = self.declaration(month).await?;
        let layouts = self.layouts()?;
        let columns = layouts.for_method(declaration.method);
        let csv = to_csv(&declaration, columns);
        let xlsx = to_xlsx(&declaration, columns)?;
        let totals = declaration.totals();
        let ledger_tax = self.store.ledger_tax_for_month(month).await?;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let prepared = crate::store::PreparedDeclaration {
            tax_month: month.to_string(),
            method: declaration.method.as_str().to_owned(),
            prepared_at: now,
            distributors: count(totals.distributors),
            payouts: count(totals.payouts),
            gross: totals.income,
            tax: totals.withheld,
            net: totals.net,
            ledger_tax,
        };
        self.store
            .save_prepared_declaration(&prepared, csv.as_bytes(), &xlsx)
            .await?;
        if ledger_tax == totals.withheld {
            tracing::info!(month = %month, distributors = totals.distributors, payouts = totals.payouts, tax = %totals.withheld, "withholding declaration prepared");
        } else {
            tracing::error!(month = %month, declared = %totals.withheld, ledger = %ledger_tax, "withholding declaration prepared, but its tax differs from the ledger's tax payable: reconcile before filing");
        }
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn row(id: &str, income_fen: i64, withheld_fen: i64, payouts: usize) -> Row {
        let computed = tax::per_payment_tax(Money::from_fen(income_fen)).unwrap();
        Row {
            distributor_id: id.to_owned(),
            name: SecretString::from("张三"),
            id_number: SecretString::from("11010119900307123X"),
            income: Money::from_fen(income_fen),
            fee: computed.fee,
            basic_deduction: computed.basic_deduction,
            taxable: computed.taxable,
            rate: computed.rate,
            quick_deduction: computed.quick_deduction,
            tax_due: computed.tax,
            withheld: Money::from_fen(withheld_fen),
            net: Money::from_fen(income_fen - withheld_fen),
            payouts,
            income_to_date: Money::from_fen(income_fen),
            months_count: None,
        }
    }

    fn declaration() -> Declaration {
        Declaration {
            month: Month::parse("2026-02").unwrap(),
            method: WithholdingMethod::PerPayment,
            agent_name: "某某网络科技有限公司, 分公司".to_owned(),
            agent_tin: "91110000MA0000000X".to_owned(),
            // 4,000.00 in two payouts: (4000 − 800) × 20% = 640.00; 500.00: no tax.
            rows: vec![row("d1", 400_000, 64_000, 2), row("d2", 50_000, 0, 1)],
        }
    }

    #[test]
    fn the_shipped_layouts_parse_and_start_with_the_import_template_columns() {
        let layouts = Layouts::shipped();
        let headers: Vec<&str> = layouts
            .per_payment
            .iter()
            .map(|column| column.header.as_str())
            .collect();
        assert_eq!(
            &headers[..5],
            ["工号", "*姓名", "*证件类型", "*证件号码", "*所得项目"]
        );
        assert!(
            layouts
                .cumulative
                .iter()
                .any(|column| column.field == Field::IncomeToDate)
        );
        assert!(Layouts::parse("per_payment = []\ncumulative = []", "x.toml").is_err());
        assert!(
            Layouts::parse(
                "[[per_payment]]\nheader = \"a\"\nfield = \"nope\"",
                "x.toml"
            )
            .is_err()
        );
    }

    #[test]
    fn the_csv_has_every_distributor_a_totals_row_and_amounts_to_the_fen() {
        let declaration = declaration();
        let layouts = Layouts::shipped();
        let csv = to_csv(&declaration, &layouts.per_payment);
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5, "{csv}");
        assert!(lines[0].contains("2026年2月1日至2026年2月28日"));
        assert!(lines[0].starts_with("\u{feff}\"扣缴义务人名称：某某网络科技有限公司, 分公司\""));
        assert!(
            lines[2].starts_with("d1,张三,居民身份证,11010119900307123X,一般劳务报酬所得,4000.00,")
        );
        assert!(lines[2].contains(",640.00,"));
        assert!(lines[3].starts_with("d2,"));
        assert!(lines[4].starts_with("合计,"));
        assert!(lines[4].contains(",4500.00,"), "{}", lines[4]);
        assert_eq!(declaration.totals().withheld, Money::from_fen(64_000));
        assert_eq!(declaration.totals().payouts, 3);
    }

    #[test]
    fn text_cells_a_spreadsheet_would_run_are_neutralised_and_our_numbers_are_not() {
        assert_eq!(csv_text("张三"), "张三");
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("+86"), "'+86");
        assert_eq!(csv_text("-2+3"), "'-2+3");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("\t=1"), "'\t=1");
        // Neutralised, then quoted: the quote inside is doubled and the
        // separator stays inside the one cell.
        assert_eq!(
            csv_text("=HYPERLINK(\"http://evil\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_text("\rcmd|' /C calc'!A0"), "\"'\rcmd|' /C calc'!A0\"");

        let mut declaration = declaration();
        declaration.rows[0].name = SecretString::from("=HYPERLINK(\"http://evil\",\"x\")");
        declaration.rows[1].distributor_id = "-d2".to_owned();
        // A negative amount (not one the month produces today, but the
        // writer must not care) stays a number.
        declaration.rows[1].net = Money::from_fen(-1_250);
        let csv = to_csv(&declaration, &Layouts::shipped().per_payment);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[2].starts_with("d1,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",居民身份证,"),
            "{}",
            lines[2]
        );
        assert!(lines[3].starts_with("'-d2,张三,"), "{}", lines[3]);
        assert!(lines[3].contains(",-12.50,"), "{}", lines[3]);
        for line in &lines[2..] {
            for cell in line.split(',') {
                let cell = cell.trim_start_matches('"');
                assert!(
                    !cell.starts_with(['=', '+', '@', '\t', '\r'])
                        && (!cell.starts_with('-') || cell[1..].parse::<f64>().is_ok()),
                    "{cell:?} in {line}"
                );
            }
        }
    }

    #[test]
    fn the_xlsx_writes_hostile_text_as_text_and_no_formula() {
        use calamine::{Data, Reader, Xlsx};
        let mut declaration = declaration();
        let hostile = "=HYPERLINK(\"http://evil\",\"x\")";
        declaration.rows[0].name = SecretString::from(hostile);
        let bytes = to_xlsx(&declaration, &Layouts::shipped().per_payment).unwrap();
        let mut workbook = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        let range = workbook.worksheet_range("2026-02").unwrap();
        assert_eq!(
            range.get_value((2, 1)),
            Some(&Data::String(hostile.to_owned()))
        );
        let formulas = workbook.worksheet_formula("2026-02").unwrap();
        assert!(
            formulas
                .used_cells()
                .all(|(_, _, formula)| formula.is_empty()),
            "no cell of the declaration is a formula"
        );
    }

    #[test]
    fn the_xlsx_is_a_workbook() {
        let bytes = to_xlsx(&declaration(), &Layouts::shipped().per_payment).unwrap();
        assert_eq!(&bytes[..2], b"PK");
    }

    #[test]
    fn the_tax_period_knows_month_lengths() {
        let mut declaration = declaration();
        assert!(declaration.tax_period().ends_with("2月28日"));
        declaration.month = Month::parse("2028-02").unwrap();
        assert!(declaration.tax_period().ends_with("2月29日"));
        declaration.month = Month::parse("2026-11").unwrap();
        assert!(declaration.tax_period().ends_with("11月30日"));
    }
}
