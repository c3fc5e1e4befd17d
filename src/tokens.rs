//! API tokens: 256 random bits, shown once, stored as SHA-256.

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::access::{Principal, Role};
use crate::domain::ids::DistributorId;
use crate::domain::ledger::sha256_hex;
use crate::store::{Store, StoreError};

/// Prefix of every token, so a leaked one is recognisable by secret scanners.
const TOKEN_PREFIX: &str = "fenrun_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a distributor token needs --distributor ID")]
    MissingDistributor,
    #[error("only distributor tokens are scoped to a distributor")]
    UnexpectedDistributor,
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly created token: the secret is shown to the operator once.
pub struct IssuedToken {
    pub id: String,
    pub secret: SecretString,
}

fn random_hex(bytes: usize) -> Result<String, TokenError> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| TokenError::Random)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

pub async fn create(
    store: &Store,
    role: Role,
    distributor: Option<&DistributorId>,
    now: DateTime<Utc>,
    created_by: &crate::audit::Actor,
) -> Result<IssuedToken, TokenError> {
    match (role, distributor) {
        (Role::Distributor, None) => return Err(TokenError::MissingDistributor),
        (Role::Distributor, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(TokenError::UnexpectedDistributor),
    }
    let id = format!("tok_{}", random_hex(8)?);
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    store
        .insert_token(
            &id,
            &sha256_hex(secret.as_bytes()),
            role,
            distributor,
            now,
            created_by,
        )
        .await?;
    Ok(IssuedToken {
        id,
        secret: SecretString::from(secret),
    })
}

/// The principal a presented token stands for, if it is valid and not revoked.
pub async fn authenticate(
    store: &Store,
    presented: &SecretString,
) -> Result<Option<Principal>, StoreError> {
    let token = presented.expose_secret();
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let record = store.token_by_hash(&sha256_hex(token.as_bytes())).await?;
    Ok(record.map(|record| Principal {
        token_id: record.id,
        role: record.role,
        distributor: record.distributor_id,
    }))
}

/// How long a verified token is trusted without asking the database again.
/// Revoking a token therefore takes effect within this time.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most tokens remembered at once; the cache is emptied when it is full.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Remembers recently verified tokens (by hash) so a busy client does not
/// cost a database round trip per request. Unknown tokens are never cached.
#[derive(Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Principal, std::time::Instant)>>,
}

impl TokenCache {
    /// Like [`authenticate`], answered from memory while fresh.
    pub async fn authenticate(
        &self,
        store: &Store,
        presented: &SecretString,
    ) -> Result<Option<Principal>, StoreError> {
        let token = presented.expose_secret();
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = sha256_hex(token.as_bytes());
        {
            let entries = self
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((principal, verified_at)) = entries.get(&hash)
                && verified_at.elapsed() < TOKEN_CACHE_TTL
            {
                return Ok(Some(principal.clone()));
            }
        }
        let principal = authenticate(store, presented).await?;
        if let Some(principal) = &principal {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if entries.len() >= TOKEN_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(hash, (principal.clone(), std::time::Instant::now()));
        }
        Ok(principal)
    }
}
