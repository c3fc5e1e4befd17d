//! `fenrun webhooks verify`: checks a webhook delivery's signature the way
//! a receiver does (`domain::webhook_signature`), for debugging a receiver
//! that refuses what fenrun sent.

use std::io::Read;
use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::domain::webhook_signature::WebhookSecret;

use super::super::WebhooksCommand;

/// Largest body read: deliveries are thin (under 20 KB); anything this
/// large is not one.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

pub fn run(command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let WebhooksCommand::Verify {
        secret,
        id,
        timestamp,
        signature,
        any_time,
        file,
    } = command;
    let secret = WebhookSecret::parse(secret.expose_secret())
        .map_err(|error| anyhow::anyhow!("--secret: {error}"))?;
    let mut body = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_BODY_BYTES)
            .read_to_end(&mut body)?;
    } else {
        std::fs::File::open(&file)
            .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?
            .take(MAX_BODY_BYTES)
            .read_to_end(&mut body)?;
    }
    let now = if any_time {
        timestamp.trim().parse().unwrap_or_default()
    } else {
        chrono::Utc::now().timestamp()
    };
    match secret.verify(&id, &timestamp, &signature, &body, now) {
        Ok(()) => {
            println!("genuine: {id} at {timestamp} was signed with this secret");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!(
                "NOT genuine: {error}. Check that the body is the raw bytes received (not re-serialised JSON), \
                 the secret is the endpoint's current one, and the headers are copied whole"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
