//! `fenrun plan apply | list`: store a commission plan version; list them.

use std::path::Path;
use std::process::ExitCode;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

use super::super::PlanCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: PlanCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlanCommand::Apply { file } => apply(settings, &file).await,
        PlanCommand::List => list(settings).await,
    }
}

async fn apply(settings: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?;
    let store = open_store(settings).await?;
    let stored = crate::service::plans::apply(
        &store,
        &text,
        &file.display().to_string(),
        &crate::service::audit::Actor::command_line(),
        SystemClock.now(),
    )
    .await;
    store.close().await;
    let stored = stored?;
    println!(
        "plan {:?} stored as version {}, in force from {}",
        stored.name, stored.version, stored.effective_from
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let plans = store.list_plans().await?;
    store.close().await;
    println!(
        "{:>7}  {:<24}  {:<25}  applied by",
        "version", "name", "effective from"
    );
    for plan in plans {
        println!(
            "{:>7}  {:<24}  {:<25}  {}",
            plan.version,
            plan.name,
            plan.effective_from.to_rfc3339(),
            plan.applied_by
        );
    }
    Ok(ExitCode::SUCCESS)
}
