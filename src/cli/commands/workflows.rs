//! `fenrun workflows check`: validate the files under the workflows folder.

use std::process::ExitCode;

use crate::config::Settings;

use super::super::WorkflowsCommand;

pub fn run(settings: &Settings, command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    let WorkflowsCommand::Check { dir } = command;
    let dir = dir.unwrap_or_else(|| settings.workflows_dir.clone());
    let checked = crate::engine::definition::check::check_dir(&dir)?;
    for file in &checked {
        println!("ok  {}", file.display());
    }
    println!("{} file(s) valid", checked.len());
    Ok(ExitCode::SUCCESS)
}
