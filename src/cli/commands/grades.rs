//! `fenrun grades review`: the daily grade review, run by hand (the same
//! code the `review_grades` schedule runs; the command-line user is the
//! audit actor).

use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::engine::grade_review::GradeReview;
use crate::service::audit::Actor;

use super::super::GradesCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: GradesCommand) -> anyhow::Result<ExitCode> {
    let GradesCommand::Review { json } = command;
    let store = Arc::new(open_store(settings).await?);
    let report = GradeReview::new(store.clone())
        .run(SystemClock.now(), &Actor::command_line())
        .await;
    store.close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "grade review under plan v{}: {} distributors reviewed, {} upgraded, {} cleared",
            report.plan_version, report.reviewed, report.upgraded, report.cleared
        );
    }
    Ok(ExitCode::SUCCESS)
}
