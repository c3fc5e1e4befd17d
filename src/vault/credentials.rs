//! Payout credentials between the edge and the store (SPEC §2.5): sealing a
//! parsed identity or account with the AAD of the row it goes to, opening
//! it again, and `fenrun keys rotate`.
//!
//! ```text
//! API body ─parse─► RealName / IdNumber / BankCardNumber …  (secrecy types)
//!          ─seal (vault, AAD = table, column, row id)─► SealedIdentity / SealedPayoutAccount
//!          ─store─► blob / bytea + key_id + masks
//! ```
//!
//! The store sees sealed bytes and masks only; nothing here logs a value.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::banks::BankAccountKind;
use crate::domain::identity::PayoutChannel;
use crate::domain::identity::{IdNumber, RealName};
use crate::domain::ids::{DistributorId, PayoutAccountId};
use crate::store::{SealedIdentity, SealedPayoutAccount, Store, StoreError};
use crate::vault::{Aad, SealedValue, Vault, VaultError};

/// The identity table, as named in every identity value's AAD.
pub const IDENTITIES_TABLE: &str = "distributor_identities";
/// The payout account table, as named in every account value's AAD.
pub const ACCOUNTS_TABLE: &str = "payout_accounts";
/// Where the webhook endpoints' signing secrets are sealed.
pub const WEBHOOK_SECRETS_TABLE: &str = "webhook_endpoints";
/// Rows `keys rotate` reads per page: small enough that a page's reseal
/// holds no lock for long, large enough that paging costs nothing.
pub const ROTATE_PAGE_ROWS: i64 = 200;

/// The AAD of an identity column (`real_name` or `id_number`) of a distributor.
pub fn identity_aad(column: &'static str, distributor: &DistributorId) -> Aad {
    Aad::new(IDENTITIES_TABLE, column, distributor.as_str())
}

/// The AAD of a payout account's sealed account.
pub fn account_aad(account_id: &PayoutAccountId) -> Aad {
    Aad::new(ACCOUNTS_TABLE, "account", account_id.as_str())
}

/// A new payout account id: `pa_` and 32 random hex digits. Made before the
/// insert because the id is part of the account's AAD.
pub fn new_account_id() -> PayoutAccountId {
    PayoutAccountId::generate()
}

/// Seals an identity for `distributor`, ready for [`Store::upsert_identity`].
pub fn seal_identity(
    vault: &Vault,
    distributor: &DistributorId,
    real_name: &RealName,
    id_number: &IdNumber,
    now: DateTime<Utc>,
) -> Result<SealedIdentity, VaultError> {
    let name = vault.seal(real_name, &identity_aad("real_name", distributor))?;
    let number = vault.seal(id_number, &identity_aad("id_number", distributor))?;
    Ok(SealedIdentity {
        distributor_id: distributor.clone(),
        real_name: name.to_stored(),
        id_number: number.to_stored(),
        key_id: vault.current_key_id().to_string(),
        masked_name: real_name.masked(),
        masked_id_number: id_number.masked(),
        created_at: now,
        updated_at: now,
    })
}

/// What a new payout account holds before it is sealed.
pub struct NewAccount<'a> {
    pub distributor: &'a DistributorId,
    pub channel: PayoutChannel,
    pub masked: String,
    pub account_name_masked: Option<String>,
    pub bank_name: Option<String>,
    /// Bank accounts only: personal, or a company's with its branch.
    pub bank_account: Option<BankAccountKind>,
}

/// The binding of a webhook endpoint's current (`secret`) or previous
/// (`previous_secret`) signing secret.
pub fn webhook_secret_aad(column: &'static str, endpoint_id: &str) -> Aad {
    Aad::new(WEBHOOK_SECRETS_TABLE, column, endpoint_id)
}

/// Seals a new payout account under a fresh id; `account` is the openid,
/// Alipay logon id or card number, already parsed.
pub fn seal_account(
    vault: &Vault,
    new: NewAccount<'_>,
    account: &impl ExposeSecret<str>,
    now: DateTime<Utc>,
) -> Result<SealedPayoutAccount, VaultError> {
    let id = new_account_id();
    let sealed = vault.seal(account, &account_aad(&id))?;
    Ok(SealedPayoutAccount {
        distributor_id: new.distributor.clone(),
        channel: new.channel,
        account: sealed.to_stored(),
        key_id: vault.current_key_id().to_string(),
        masked: new.masked,
        account_name_masked: new.account_name_masked,
        bank_name: new.bank_name,
        bank_account: new.bank_account,
        created_at: now,
        id,
    })
}

/// The real name and ID number of a stored identity, in the clear (for the
/// one line that hands them to a gateway or a certificate).
pub fn open_identity(
    vault: &Vault,
    identity: &SealedIdentity,
) -> Result<(SecretString, SecretString), VaultError> {
    let id = &identity.distributor_id;
    let name = vault.open(
        &SealedValue::from_stored(&identity.real_name)?,
        &identity_aad("real_name", id),
    )?;
    let number = vault.open(
        &SealedValue::from_stored(&identity.id_number)?,
        &identity_aad("id_number", id),
    )?;
    Ok((name, number))
}

/// The fields (`real_name`, `id_number`) in which `stored` differs from a
/// new identity, compared in the clear and only here; nothing is kept.
pub fn changed_identity_fields(
    vault: &Vault,
    stored: &SealedIdentity,
    real_name: &RealName,
    id_number: &IdNumber,
) -> Result<Vec<&'static str>, VaultError> {
    let (stored_name, stored_number) = open_identity(vault, stored)?;
    let mut changed = Vec::new();
    if stored_name.expose_secret() != real_name.expose_secret() {
        changed.push("real_name");
    }
    if stored_number.expose_secret() != id_number.expose_secret() {
        changed.push("id_number");
    }
    Ok(changed)
}

/// A stored payout account's account, in the clear.
pub fn open_account(
    vault: &Vault,
    account: &SealedPayoutAccount,
) -> Result<SecretString, VaultError> {
    vault.open(
        &SealedValue::from_stored(&account.account)?,
        &account_aad(&account.id),
    )
}

/// Why a rotation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A row could not be opened: its key was not given, or it is corrupt.
    /// Named by table and row id only.
    #[error("{table} row {row_id}: {source}")]
    Vault {
        table: &'static str,
        row_id: String,
        #[source]
        source: VaultError,
    },
}

/// What a rotation did, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationCounts {
    /// Rows resealed under the current key by this run.
    pub resealed: u64,
    /// Rows that changed between being read and written (another rotation,
    /// or a new identity under the current key): left as they were.
    pub skipped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    pub identities: RotationCounts,
    pub payout_accounts: RotationCounts,
    pub webhook_secrets: RotationCounts,
}

/// `fenrun keys rotate`: reseals every credential not under the vault's
/// current key, a page at a time, calling `progress` after each page.
///
/// Safe beside a running service and safe to re-run: each row is written
/// back only if it still has the key id and sealed bytes it was read with
/// (so a concurrent rotation, or an identity replaced meanwhile, is never
/// overwritten), and a finished row is no longer selected. Each page is read after the last id of the
/// previous one, so a row that is skipped is not read again in this run;
/// the loops end because ids only grow.
pub async fn rotate(
    store: &Store,
    vault: &Vault,
    mut progress: impl FnMut(&'static str, RotationCounts),
) -> Result<RotationReport, RotateError> {
    let current = vault.current_key_id().to_string();
    let mut report = RotationReport::default();

    let mut after = String::new();
    loop {
        let page = store
            .identities_to_reseal(&current, &after, ROTATE_PAGE_ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.distributor_id.to_string();
        for identity in &page {
            let id = &identity.distributor_id;
            let reseal = |column: &'static str, stored: &[u8]| {
                SealedValue::from_stored(stored)
                    .and_then(|sealed| vault.reseal(&sealed, &identity_aad(column, id)))
                    .map(|sealed| sealed.to_stored())
                    .map_err(|source| RotateError::Vault {
                        table: IDENTITIES_TABLE,
                        row_id: id.to_string(),
                        source,
                    })
            };
            let name = reseal("real_name", &identity.real_name)?;
            let number = reseal("id_number", &identity.id_number)?;
            if store
                .reseal_identity(identity, &name, &number, &current)
                .await?
            {
                report.identities.resealed += 1;
            } else {
                report.identities.skipped += 1;
            }
        }
        progress(IDENTITIES_TABLE, report.identities);
    }

    let mut after = String::new();
    loop {
        let page = store
            .payout_accounts_to_reseal(&current, &after, ROTATE_PAGE_ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.to_string();
        for account in &page {
            let resealed = SealedValue::from_stored(&account.account)
                .and_then(|sealed| vault.reseal(&sealed, &account_aad(&account.id)))
                .map_err(|source| RotateError::Vault {
                    table: ACCOUNTS_TABLE,
                    row_id: account.id.to_string(),
                    source,
                })?;
            if store
                .reseal_payout_account(account, &resealed.to_stored(), &current)
                .await?
            {
                report.payout_accounts.resealed += 1;
            } else {
                report.payout_accounts.skipped += 1;
            }
        }
        progress(ACCOUNTS_TABLE, report.payout_accounts);
    }

    // Webhook endpoints are few: one pass, each row checked by its bytes.
    for (id, secret, previous) in store.sealed_webhook_secrets().await? {
        let reseal = |column: &'static str, stored: &[u8]| {
            SealedValue::from_stored(stored)
                .and_then(|sealed| {
                    if vault.needs_reseal(&sealed) {
                        vault
                            .reseal(&sealed, &webhook_secret_aad(column, &id))
                            .map(|resealed| Some(resealed.to_stored()))
                    } else {
                        Ok(None)
                    }
                })
                .map_err(|source| RotateError::Vault {
                    table: WEBHOOK_SECRETS_TABLE,
                    row_id: id.clone(),
                    source,
                })
        };
        let new_secret = reseal("secret", &secret)?;
        let new_previous = previous
            .as_deref()
            .map(|stored| reseal("previous_secret", stored))
            .transpose()?
            .flatten();
        if new_secret.is_none() && new_previous.is_none() {
            continue;
        }
        let resealed_secret = new_secret.as_deref().unwrap_or(&secret);
        let resealed_previous = new_previous.as_deref().or(previous.as_deref());
        if store
            .reseal_webhook_secrets(
                &id,
                (&secret, previous.as_deref()),
                (resealed_secret, resealed_previous),
            )
            .await?
        {
            report.webhook_secrets.resealed += 1;
        } else {
            report.webhook_secrets.skipped += 1;
        }
    }
    progress(WEBHOOK_SECRETS_TABLE, report.webhook_secrets);
    Ok(report)
}
