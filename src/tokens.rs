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
) -> Result<IssuedToken, TokenError> {
    match (role, distributor) {
        (Role::Distributor, None) => return Err(TokenError::MissingDistributor),
        (Role::Distributor, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(TokenError::UnexpectedDistributor),
    }
    let id = format!("tok_{}", random_hex(8)?);
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    store
        .insert_token(&id, &sha256_hex(secret.as_bytes()), role, distributor, now)
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
