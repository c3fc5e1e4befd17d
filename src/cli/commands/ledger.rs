//! `fenrun ledger verify`: re-derive every balance and print the verdict.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::config::Settings;
use crate::domain::money::Money;
use crate::store::LedgerReport;

use super::super::LedgerCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify { json } = command;
    let store = open_store(settings).await?;
    let report = store.verify_ledger().await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe_ledger_report(&report));
    }
    if !report.is_clean() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The human summary `ledger verify` and the demo print.
pub(crate) fn describe_ledger_report(report: &LedgerReport) -> String {
    let mut text = String::new();
    let verdict = if report.is_clean() { "OK" } else { "FAILED" };
    let _ = writeln!(
        text,
        "ledger verify: {verdict} — {} accounts, {} transfers, {} postings, Σ postings = {}",
        report.accounts,
        report.transfers,
        report.postings,
        Money::from_fen(report.postings_sum_fen)
    );
    for key in &report.unbalanced_transfers {
        let _ = writeln!(text, "  unbalanced transfer {key}");
    }
    for mismatch in &report.mismatched_accounts {
        let _ = writeln!(
            text,
            "  account {}: stored {} but postings say {}",
            mismatch.account,
            Money::from_fen(mismatch.stored_fen),
            Money::from_fen(mismatch.derived_fen)
        );
    }
    for account in &report.negative_accounts {
        let _ = writeln!(text, "  account {account} is negative but may never be");
    }
    if report.orphan_postings > 0 {
        let _ = writeln!(
            text,
            "  {} postings name an account or transfer that does not exist",
            report.orphan_postings
        );
    }
    text
}
