//! The workflow engine: loads the workflow definitions and scheduled jobs
//! under `workflows/`, runs their durable steps and fires their cron jobs.
//!
//! - [`definition`]: the TOML files as checked, typed data;
//!   [`definition::check`]: `fenrun workflows check`.
//! - [`settlement`]: the order-settlement workflow's steps (ingest, release,
//!   refund) and the durable-step design they follow.
//! - [`withdrawal`]: the withdrawal workflow's steps (request, review,
//!   transfer, confirm); [`certificate`]: its last step, the certificate.
//! - [`gateway`]: the payout gateway of this process (sandbox or WeChat Pay
//!   v3, from `integrations/`), as the withdrawal steps call it.
//! - [`declaration`]: the monthly withholding declaration (CSV, XLSX) and
//!   the scheduled job that prepares it.
//! - [`month_close`]: the month close (team bonus, monthly statements) and
//!   its scheduled job.
//! - [`grade_review`]: the daily grade review (upgrades and clearing).
//! - [`reconciliation`]: the daily reconciliation against the gateways'
//!   statements, its retries and catch-up.
//! - [`worker`]: apalis workers for the step queues, and the scheduler;
//!   [`step`]: which step errors are retried and which fail the job at once.

/// How far ahead the business calendar should know its holidays, in days:
/// start-up warns and the ops console flags a calendar that ends sooner.
pub const CALENDAR_HORIZON_DAYS: u32 = 60;

/// The provisional years from `today` to the end of the horizon: what the
/// start-up warning, the ops console and `/metrics` name.
pub fn provisional_years_ahead(
    calendar: &crate::domain::calendar::BusinessCalendar,
    today: chrono::NaiveDate,
) -> Vec<(i32, crate::domain::calendar::YearOrigin<'_>)> {
    let horizon = today + chrono::Days::new(u64::from(CALENDAR_HORIZON_DAYS));
    calendar.provisional_years(today, horizon)
}

pub mod calendar;
pub mod certificate;
pub mod declaration;
pub mod definition;
pub mod gateway;
pub mod grade_review;
pub mod month_close;
pub mod reconciliation;
pub mod settlement;
pub mod step;
pub mod webhooks;
pub mod withdrawal;
pub mod worker;
