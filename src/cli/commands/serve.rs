//! `fenrun serve`, `fenrun worker` and `fenrun migrate`: run the service,
//! or only its workers, or only prepare the database.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::app::{Application, Runtime, shutdown_signal};
use crate::config::Settings;
use crate::store::redact_url;

use super::open_store;

pub async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(settings: Settings) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::build(settings).await?;
    runtime.run_workers_until_stopped(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    println!(
        "migrations applied to {}",
        redact_url(settings.database_url.expose_secret())
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
