//! Black-box tests: the application on port 0 over HTTP, the real binary for
//! the command line, and the store's shared suite — each against SQLite and,
//! when `FENRUN_TEST_PG` is set, PostgreSQL.

mod helpers;

mod admin;
mod amounts;
mod audit;
mod bank_accounts;
mod calendar;
mod calendar_crash;
mod calendar_years;
mod certificates;
mod channels;
#[cfg(feature = "tls")]
mod gateway_tls;

mod cli;
mod commission_rules;
mod crash;
mod credentials;
mod declarations;
mod distributors;
mod grade_review;
mod http;
mod ledger_properties;
mod limits;
mod me_browser;
mod me_page;
mod migrations;
mod monitoring;
mod month_close;
mod names_and_ids;
mod ops;
mod ops_browser;
mod ops_console;
mod order_batches;
mod orders;
mod payout_crash;
mod payout_cycles;
mod reconciliation;
mod reconciliation_console;
mod role_matrix;
mod sessions;
mod shape;
mod step_failures;
mod store_suite;
mod tax_cli;
mod tax_page;
mod two_months;
mod void_commission;
mod webhook_receivers;
mod webhooks;
mod webhooks_console;
mod webhooks_end_to_end;
mod withdrawal_findings;
mod withdrawal_storm;
mod withdrawals;
