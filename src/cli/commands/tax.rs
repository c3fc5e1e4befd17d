//! `fenrun tax quote`: the trial calculation (试算) of the tax withheld on a
//! sequence of payouts, as a table or JSON.

use std::process::ExitCode;

use crate::domain::money::Money;
use crate::domain::tax::{self, CumulativeContext, Month, Withholding, WithholdingMethod};

use super::super::TaxCommand;

pub fn run(command: TaxCommand) -> anyhow::Result<ExitCode> {
    let TaxCommand::Quote {
        method,
        month,
        payments,
        json,
        months_count,
        prior_income,
        prior_withheld,
    } = command;
    let cumulative = cumulative_context(method, month, months_count, prior_income, prior_withheld)?;
    let quotes = tax::quote_sequence(method, &payments, cumulative)?;
    let total = |pick: fn(&Withholding) -> Money| {
        Money::checked_sum(quotes.iter().map(pick))
            .ok_or_else(|| anyhow::anyhow!("the payouts' total is too large"))
    };
    let totals = [
        total(|q| q.gross)?,
        total(|q| q.withheld_now)?,
        total(|q| q.net)?,
    ];
    if json {
        let [total_gross, total_withheld, total_net] = totals;
        let report = TaxQuoteReport {
            method,
            month,
            months_count,
            payouts: &quotes,
            total_gross,
            total_withheld,
            total_net,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe_tax_quote(method, month, &quotes, totals));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tax quote`: the cumulative context from the flags, refusing flags that do
/// not belong to the method.
fn cumulative_context(
    method: WithholdingMethod,
    month: Month,
    months_count: Option<u8>,
    prior_income: Option<Money>,
    prior_withheld: Option<Money>,
) -> anyhow::Result<Option<CumulativeContext>> {
    match (method, months_count) {
        (WithholdingMethod::Cumulative, Some(months_count)) => Ok(Some(CumulativeContext {
            month,
            months_count,
            prior_income: prior_income.unwrap_or(Money::ZERO),
            prior_withheld: prior_withheld.unwrap_or(Money::ZERO),
        })),
        (WithholdingMethod::Cumulative, None) => Err(anyhow::anyhow!(
            "--method cumulative needs --months-count (consecutive months with income this year, this month included)"
        )),
        (WithholdingMethod::PerPayment, _)
            if months_count.is_some() || prior_income.is_some() || prior_withheld.is_some() =>
        {
            Err(anyhow::anyhow!(
                "--months-count, --prior-income and --prior-withheld apply only to --method cumulative"
            ))
        }
        (WithholdingMethod::PerPayment, _) => Ok(None),
    }
}

/// `tax quote --json`: the payouts in order, their fields in certificate order.
#[derive(serde::Serialize)]
struct TaxQuoteReport<'a> {
    method: WithholdingMethod,
    month: Month,
    #[serde(skip_serializing_if = "Option::is_none")]
    months_count: Option<u8>,
    payouts: &'a [Withholding],
    total_gross: Money,
    total_withheld: Money,
    total_net: Money,
}

/// `tax quote` as a table, one line per payout, and the totals.
fn describe_tax_quote(
    method: WithholdingMethod,
    month: Month,
    quotes: &[Withholding],
    totals: [Money; 3],
) -> String {
    use std::fmt::Write as _;
    let (title, to_date) = match method {
        WithholdingMethod::PerPayment => (
            format!(
                "per-payment withholding (按次预扣预缴) in {month}: the month's payouts are one 次"
            ),
            "month-to-date",
        ),
        WithholdingMethod::Cumulative => (
            format!(
                "cumulative withholding (累计预扣法) in {month}, {} consecutive month(s) this year",
                quotes.first().and_then(|q| q.months_count).unwrap_or(0)
            ),
            "cumulative",
        ),
    };
    let mut out = format!("{title}\n");
    let _ = writeln!(
        out,
        "{:>3} {:>12} {:>14} {:>11} {:>11} {:>12} {:>5} {:>10} {:>12} {:>15} {:>12} {:>12}",
        "#",
        "gross",
        to_date,
        "fee",
        "basic ded.",
        "taxable",
        "rate",
        "quick ded.",
        "tax to date",
        "withheld before",
        "withheld now",
        "net"
    );
    for (index, q) in quotes.iter().enumerate() {
        // Money and Rate ignore width flags; pad their text instead.
        let _ = writeln!(
            out,
            "{:>3} {:>12} {:>14} {:>11} {:>11} {:>12} {:>5} {:>10} {:>12} {:>15} {:>12} {:>12}",
            index + 1,
            q.gross.to_string(),
            q.income_to_date.to_string(),
            q.fee.to_string(),
            q.basic_deduction.to_string(),
            q.taxable.to_string(),
            q.rate.to_string(),
            q.quick_deduction.to_string(),
            q.tax_to_date.to_string(),
            q.withheld_before.to_string(),
            q.withheld_now.to_string(),
            q.net.to_string()
        );
    }
    let [gross, withheld, net] = totals;
    let _ = writeln!(out, "total: gross {gross}, withheld {withheld}, net {net}");
    out
}
