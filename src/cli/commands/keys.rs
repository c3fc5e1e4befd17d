//! `fenrun keys rotate`: reseal every payout credential under the current
//! master key, and audit the rotation.

use std::process::ExitCode;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

use super::open_store;

pub async fn rotate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let vault = crate::vault::Vault::from_sources(&settings.master_key, &settings.database_url)?;
    let previous: Vec<String> = vault
        .previous_key_ids()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "resealing under master key {} (opening with previous keys: {})",
        vault.current_key_id(),
        if previous.is_empty() {
            "none".to_owned()
        } else {
            previous.join(", ")
        }
    );
    let store = open_store(settings).await?;
    let report = crate::vault::credentials::rotate(&store, &vault, |table, counts| {
        println!(
            "{table}: {} resealed, {} skipped so far",
            counts.resealed, counts.skipped
        );
    })
    .await;
    if let Ok(report) = &report {
        crate::service::audit::record(
            &store,
            &crate::service::audit::Actor::command_line(),
            "keys.rotate",
            &format!("master_key:{}", vault.current_key_id()),
            Some(serde_json::json!({"previous_key_ids": previous})),
            Some(serde_json::json!({
                "key_id": vault.current_key_id().to_string(),
                "identities_resealed": report.identities.resealed,
                "payout_accounts_resealed": report.payout_accounts.resealed,
                "webhook_secrets_resealed": report.webhook_secrets.resealed,
            })),
            SystemClock.now(),
        )
        .await;
    }
    store.close().await;
    let report = report?;
    println!(
        "done: {} identities, {} payout accounts and {} webhook endpoint(s) resealed ({}, {} and {} changed meanwhile and were left alone)",
        report.identities.resealed,
        report.payout_accounts.resealed,
        report.webhook_secrets.resealed,
        report.identities.skipped,
        report.payout_accounts.skipped,
        report.webhook_secrets.skipped
    );
    Ok(ExitCode::SUCCESS)
}
