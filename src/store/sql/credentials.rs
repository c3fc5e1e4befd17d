//! Payout credentials' SQL (SPEC §2.5), shared by both backends. The store
//! only ever handles sealed bytes and masks: sealing and opening are the
//! vault's, above the store.
//!
//! Rotation (`fenrun keys rotate`) reads the rows whose key id is not the
//! current one a page at a time, and writes each resealed row back with the
//! key id and sealed bytes it read in the WHERE clause: a row changed
//! meanwhile (a concurrent rotation, or the distributor replacing their
//! identity, even through a process still sealing under the old key) is left
//! alone, and the update reports that it did nothing.

use sqlx::Row;

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Conn, DbRow, for_update};
use crate::domain::banks::{BankAccountKind, BankAccountType, CompanyAccount, CompanyFields};
use crate::domain::identity::PayoutChannel;
use crate::domain::ids::{DistributorId, PayoutAccountId};
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{Actor, SealedIdentity, SealedPayoutAccount};
use crate::store::time::DbTime;

/// The columns of `distributor_identities`, for `concat!`.
macro_rules! identity_columns {
    () => {
        "distributor_id, real_name, id_number, key_id, masked_name, masked_id_number, created_at, updated_at"
    };
}

/// The columns of `payout_accounts`, for `concat!`.
macro_rules! account_columns {
    () => {
        "id, distributor_id, channel, account, key_id, masked, account_name_masked, bank_name, \
         account_type, company_name, inst_name, bank_code, inst_province, inst_city, inst_branch_name, created_at"
    };
}
pub(super) use account_columns;

fn identity_from_row(row: &DbRow) -> Result<SealedIdentity, StoreError> {
    Ok(SealedIdentity {
        distributor_id: DistributorId::parse(row.try_get::<String, _>("distributor_id")?)?,
        real_name: row.try_get("real_name")?,
        id_number: row.try_get("id_number")?,
        key_id: row.try_get("key_id")?,
        masked_name: row.try_get("masked_name")?,
        masked_id_number: row.try_get("masked_id_number")?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
        updated_at: row.try_get::<DbTime, _>("updated_at")?.0,
    })
}

pub(super) fn account_from_row(row: &DbRow) -> Result<SealedPayoutAccount, StoreError> {
    Ok(SealedPayoutAccount {
        id: PayoutAccountId::parse(row.try_get::<String, _>("id")?)?,
        distributor_id: DistributorId::parse(row.try_get::<String, _>("distributor_id")?)?,
        channel: PayoutChannel::parse(&row.try_get::<String, _>("channel")?)?,
        account: row.try_get("account")?,
        key_id: row.try_get("key_id")?,
        masked: row.try_get("masked")?,
        account_name_masked: row.try_get("account_name_masked")?,
        bank_name: row.try_get("bank_name")?,
        bank_account: bank_account_from_row(row)?,
        created_at: row.try_get::<DbTime, _>("created_at")?.0,
    })
}

/// A bank account's type and, for a company's, its branch, parsed again by
/// the domain's rules: a row the rules refuse is corrupt, not paid.
fn bank_account_from_row(row: &DbRow) -> Result<Option<BankAccountKind>, StoreError> {
    let Some(account_type) = row.try_get::<Option<String>, _>("account_type")? else {
        return Ok(None);
    };
    let text = |column: &str| row.try_get::<Option<String>, _>(column);
    match BankAccountType::parse(&account_type)? {
        BankAccountType::Personal => Ok(Some(BankAccountKind::Personal)),
        BankAccountType::Company => {
            let (inst_name, bank_code) = (text("inst_name")?, text("bank_code")?);
            let (province, city, branch_name) = (
                text("inst_province")?,
                text("inst_city")?,
                text("inst_branch_name")?,
            );
            let fields = CompanyFields {
                inst_name: inst_name.as_deref(),
                bank_code: bank_code.as_deref(),
                province: province.as_deref(),
                city: city.as_deref(),
                branch_name: branch_name.as_deref(),
            };
            CompanyAccount::parse(text("company_name")?.as_deref(), &fields)
                .map(|company| Some(BankAccountKind::Company(company)))
                .map_err(|error| {
                    StoreError::Corrupt(format!("a stored company bank account: {error}"))
                })
        }
    }
}

/// The columns a bank account's type and branch are written to, in the
/// order of [`account_columns`]: `(account_type, company_name, inst_name,
/// bank_code, inst_province, inst_city, inst_branch_name)`.
type BankColumns<'a> = (
    Option<&'static str>,
    Option<&'a str>,
    Option<&'static str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn bank_columns(account: Option<&BankAccountKind>) -> BankColumns<'_> {
    let Some(account) = account else {
        return (None, None, None, None, None, None, None);
    };
    let company = account.company();
    let location = company.and_then(CompanyAccount::location);
    (
        Some(account.account_type().as_str()),
        company.map(CompanyAccount::company_name),
        company.map(|company| company.inst().name),
        company.and_then(CompanyAccount::bank_code),
        location.map(|place| place.province.as_str()),
        location.map(|place| place.city.as_str()),
        location.map(|place| place.branch_name.as_str()),
    )
}

/// A foreign-key violation on a credential insert means the distributor is gone.
fn distributor_missing(error: sqlx::Error, id: &DistributorId) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound {
            what: "distributor",
            id: id.to_string(),
        },
        _ => error.into(),
    }
}

impl Repo {
    /// Writes a distributor's identity in the caller's transaction,
    /// replacing any earlier one (its `created_at` is kept); returns the row
    /// as stored.
    async fn upsert_identity_in(
        tx: &mut Conn,
        identity: &SealedIdentity,
    ) -> Result<SealedIdentity, StoreError> {
        let row = sqlx::query(concat!(
            "insert into distributor_identities (", identity_columns!(), ") ",
            "values ($1, $2, $3, $4, $5, $6, $7, $8) ",
            "on conflict (distributor_id) do update set real_name = excluded.real_name, ",
            "id_number = excluded.id_number, key_id = excluded.key_id, masked_name = excluded.masked_name, ",
            "masked_id_number = excluded.masked_id_number, updated_at = excluded.updated_at ",
            "returning ", identity_columns!()
        ))
        .bind(identity.distributor_id.as_str())
        .bind(&identity.real_name)
        .bind(&identity.id_number)
        .bind(&identity.key_id)
        .bind(&identity.masked_name)
        .bind(&identity.masked_id_number)
        .bind(DbTime(identity.created_at))
        .bind(DbTime(identity.updated_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| distributor_missing(error, &identity.distributor_id))?;
        identity_from_row(&row)
    }

    /// Stores a distributor's identity, replacing any earlier one (its
    /// `created_at` is kept); returns the row as stored.
    pub async fn upsert_identity(
        &self,
        identity: &SealedIdentity,
    ) -> Result<SealedIdentity, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored = Self::upsert_identity_in(&mut tx, identity).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Stores an identity given through the API by `actor`. Under the row's
    /// lock, `compare` (which holds the vault) names the fields in which the
    /// new identity differs from the stored one. A change after a
    /// withholding certificate was issued for the distributor — the
    /// certificate names the old identity — is audited in this transaction
    /// (masked before and after, never the number itself) and owes a
    /// person's review of the distributor's next withdrawal
    /// (`identity_review_flags`).
    pub async fn put_identity<F>(
        &self,
        identity: &SealedIdentity,
        actor: &Actor,
        compare: F,
    ) -> Result<SealedIdentity, StoreError>
    where
        F: FnOnce(&SealedIdentity) -> Result<Vec<&'static str>, StoreError> + Send,
    {
        let distributor = &identity.distributor_id;
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(concat!(
            "select ",
            identity_columns!(),
            " from distributor_identities where distributor_id = $1",
            for_update!()
        ))
        .bind(distributor.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(identity_from_row)
        .transpose()?;
        let changed = current
            .as_ref()
            .map(compare)
            .transpose()?
            .unwrap_or_default();
        let stored = Self::upsert_identity_in(&mut tx, identity).await?;
        if let Some(previous) = current.filter(|_| !changed.is_empty()) {
            let certified: bool = sqlx::query_scalar(
                "select exists (select 1 from certificates where distributor_id = $1)",
            )
            .bind(distributor.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if certified {
                sqlx::query(concat!(
                    "insert into identity_review_flags (distributor_id, changed_at, created_at) values ($1, $2, $2) ",
                    "on conflict (distributor_id) do update set changed_at = excluded.changed_at"
                ))
                .bind(distributor.as_str())
                .bind(DbTime(identity.updated_at))
                .execute(&mut *tx)
                .await?;
                audit_in(
                    &mut tx,
                    actor,
                    identity.updated_at,
                    "identity.change_after_certificate",
                    format!("distributor:{distributor}"),
                    Some(serde_json::json!({
                        "real_name": previous.masked_name, "id_number": previous.masked_id_number,
                    })),
                    Some(serde_json::json!({
                        "real_name": stored.masked_name, "id_number": stored.masked_id_number,
                        "changed": changed, "next_withdrawal": "manual review",
                    })),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn identity(&self, id: &DistributorId) -> Result<Option<SealedIdentity>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            identity_columns!(),
            " from distributor_identities where distributor_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(identity_from_row).transpose()
    }

    pub async fn insert_payout_account(
        &self,
        account: &SealedPayoutAccount,
    ) -> Result<(), StoreError> {
        let (
            account_type,
            company_name,
            inst_name,
            bank_code,
            inst_province,
            inst_city,
            inst_branch_name,
        ) = bank_columns(account.bank_account.as_ref());
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into payout_accounts (",
            account_columns!(),
            ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(account.id.as_str())
        .bind(account.distributor_id.as_str())
        .bind(account.channel.as_str())
        .bind(&account.account)
        .bind(&account.key_id)
        .bind(&account.masked)
        .bind(&account.account_name_masked)
        .bind(&account.bank_name)
        .bind(account_type)
        .bind(company_name)
        .bind(inst_name)
        .bind(bank_code)
        .bind(inst_province)
        .bind(inst_city)
        .bind(inst_branch_name)
        .bind(DbTime(account.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|error| distributor_missing(error, &account.distributor_id))?;
        tx.commit().await?;
        Ok(())
    }

    /// A distributor's payout accounts, oldest first (at most [`MAX_PAGE`]).
    pub async fn payout_accounts(
        &self,
        distributor: &DistributorId,
    ) -> Result<Vec<SealedPayoutAccount>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from payout_accounts ",
            "where distributor_id = $1 order by created_at, id limit $2"
        ))
        .bind(distributor.as_str())
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    pub async fn payout_account(
        &self,
        id: &PayoutAccountId,
    ) -> Result<Option<SealedPayoutAccount>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from payout_accounts where id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// Identities not sealed under `current_key_id`, in distributor id order
    /// after `after` (keyset pagination), at most `limit` (≤ [`MAX_PAGE`]).
    pub async fn identities_to_reseal(
        &self,
        current_key_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedIdentity>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            identity_columns!(),
            " from distributor_identities ",
            "where key_id <> $1 and distributor_id > $2 order by distributor_id limit $3"
        ))
        .bind(current_key_id)
        .bind(after)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(identity_from_row).collect()
    }

    /// Writes a resealed identity if the row is still exactly `expected` (its
    /// key id and sealed bytes: a random nonce makes every sealing unique);
    /// returns whether it was.
    pub async fn reseal_identity(
        &self,
        expected: &SealedIdentity,
        real_name: &[u8],
        id_number: &[u8],
        new_key_id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(concat!(
            "update distributor_identities set real_name = $1, id_number = $2, key_id = $3 ",
            "where distributor_id = $4 and key_id = $5 and real_name = $6 and id_number = $7"
        ))
        .bind(real_name)
        .bind(id_number)
        .bind(new_key_id)
        .bind(expected.distributor_id.as_str())
        .bind(&expected.key_id)
        .bind(&expected.real_name)
        .bind(&expected.id_number)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    /// Payout accounts not sealed under `current_key_id`, in id order after
    /// `after`, at most `limit` (≤ [`MAX_PAGE`]).
    pub async fn payout_accounts_to_reseal(
        &self,
        current_key_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedPayoutAccount>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ",
            account_columns!(),
            " from payout_accounts ",
            "where key_id <> $1 and id > $2 order by id limit $3"
        ))
        .bind(current_key_id)
        .bind(after)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// Writes a resealed account if the row is still exactly `expected` (its
    /// key id and sealed bytes); returns whether it was.
    pub async fn reseal_payout_account(
        &self,
        expected: &SealedPayoutAccount,
        account: &[u8],
        new_key_id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "update payout_accounts set account = $1, key_id = $2 where id = $3 and key_id = $4 and account = $5",
        )
        .bind(account)
        .bind(new_key_id)
        .bind(expected.id.as_str())
        .bind(&expected.key_id)
        .bind(&expected.account)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }
}
