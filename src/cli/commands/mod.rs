//! One function per `fenrun` subcommand; `cli::run` only dispatches.

pub mod bench;
pub mod calendar;
pub mod certificate;
pub mod grades;
pub mod keys;
pub mod ledger;
pub mod month_close;
pub mod plan;
pub mod sandbox;
pub mod serve;
pub mod tax;
pub mod token;
pub mod webhooks;
pub mod workflows;

use secrecy::ExposeSecret;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::store::{Store, redact_url};

/// The database of the settings, migrated, with the default plan in force.
pub(super) async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database_url.expose_secret();
    let store = Store::open(url, &settings.store_options())
        .await
        .map_err(|error| {
            anyhow::Error::new(error).context(format!("opening {}", redact_url(url)))
        })?;
    crate::service::plans::ensure_default(&store, SystemClock.now()).await?;
    Ok(store)
}
