//! `fenrun token create | list | revoke`.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::ids::DistributorId;

use super::super::TokenCommand;
use super::open_store;

/// `fenrun token create | list | revoke`.
pub async fn run(settings: &Settings, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let now = SystemClock.now();
    let actor = crate::service::audit::Actor::command_line();
    match command {
        TokenCommand::Create {
            role,
            distributor,
            expires_in,
            expires_at,
        } => {
            let distributor = distributor.map(DistributorId::parse).transpose()?;
            let expires_at = expires_in
                .map(|lifetime| chrono::SubsecRound::trunc_subsecs(now + lifetime, 0))
                .or_else(|| expires_at.map(|at| at.with_timezone(&chrono::Utc)));
            let issued = crate::service::tokens::create_expiring(
                &store,
                role,
                distributor.as_ref(),
                expires_at,
                now,
                &actor,
            )
            .await?;
            let until =
                expires_at.map_or_else(|| "until revoked".to_owned(), |at| format!("until {at}"));
            eprintln!(
                "created {role} token {} valid {until} (shown once; store it now)",
                issued.id
            );
            println!("{}", issued.secret.expose_secret());
        }
        TokenCommand::List { json } => {
            let mut after: Option<String> = None;
            if !json {
                println!(
                    "{:<22} {:<11} {:<20} {:<25} {:<25} revoked",
                    "id", "role", "distributor", "created", "expires"
                );
            }
            // Every page: the listing is bounded per query, not in total.
            loop {
                let page = store
                    .tokens(after.as_deref(), crate::store::MAX_PAGE)
                    .await?;
                for token in &page {
                    let distributor = token.distributor_id.as_ref().map(DistributorId::as_str);
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "id": token.id, "role": token.role, "distributor_id": distributor,
                                "created_at": token.created_at, "expires_at": token.expires_at,
                                "revoked_at": token.revoked_at,
                            })
                        );
                    } else {
                        let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                            at.map_or_else(
                                || "-".to_owned(),
                                |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                            )
                        };
                        println!(
                            "{:<22} {:<11} {:<20} {:<25} {:<25} {}",
                            token.id,
                            token.role,
                            distributor.unwrap_or("-"),
                            time(Some(token.created_at)),
                            time(token.expires_at),
                            time(token.revoked_at)
                        );
                    }
                }
                if (page.len() as i64) < crate::store::MAX_PAGE {
                    break;
                }
                after = page.last().map(|token| token.id.clone());
            }
        }
        TokenCommand::Revoke { id } => match store.revoke_token(&id, now, &actor).await? {
            Some(crate::store::Revocation::Revoked) => println!("revoked {id}"),
            Some(crate::store::Revocation::AlreadyRevoked) => println!("{id} was already revoked"),
            None => {
                store.close().await;
                anyhow::bail!("no token {id}");
            }
        },
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
