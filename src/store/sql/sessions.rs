//! API tokens and the pages' sessions, shared by both backends. Whether a
//! token or session may still be used is not decided here: the rows come
//! back with their revocation and times, and `tokens::check` /
//! `web::session` say yes, or why not.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use super::audit::audit_in;
use super::dialect::{DbRow, for_update};
use crate::domain::access::Role;
use crate::domain::ids::DistributorId;
use crate::store::MAX_PAGE;
use crate::store::error::StoreError;
use crate::store::records::{Actor, Revocation, SessionRecord, TokenListing, TokenRecord};
use crate::store::time::DbTime;

fn role_from_db(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown role {text:?} in api_tokens")))
}

/// The `role` and `distributor_id` columns of a token's row.
fn scope_from_row(row: &DbRow) -> Result<(Role, Option<DistributorId>), StoreError> {
    let distributor = row.try_get::<Option<String>, _>("distributor_id")?;
    Ok((
        role_from_db(&row.try_get::<String, _>("role")?)?,
        distributor.map(DistributorId::parse).transpose()?,
    ))
}

/// A `TokenRecord` from a row with `id`, `role`, `distributor_id`,
/// `revoked` (a boolean) and `token_expires_at`.
fn token_from_row(row: &DbRow) -> Result<TokenRecord, StoreError> {
    let (role, distributor_id) = scope_from_row(row)?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        role,
        distributor_id,
        revoked: row.try_get("revoked")?,
        expires_at: row
            .try_get::<Option<DbTime>, _>("token_expires_at")?
            .map(Into::into),
    })
}

/// The token columns `token_from_row` reads, from `api_tokens` as `t`.
macro_rules! token_columns {
    () => {
        "t.id, t.role, t.distributor_id, t.revoked_at is not null as revoked, t.expires_at as token_expires_at"
    };
}

impl Repo {
    /// Stores a token's hash, created by `actor`, with its audit entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_token(
        &self,
        token_id: &str,
        token_sha256: &str,
        role: Role,
        distributor: Option<&DistributorId>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(concat!(
            "insert into api_tokens (id, token_sha256, role, distributor_id, created_at, expires_at) ",
            "values ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(token_id)
        .bind(token_sha256)
        .bind(role.as_str())
        .bind(distributor.map(DistributorId::as_str))
        .bind(DbTime(now))
        .bind(expires_at.map(DbTime))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(error) if matches!(&error, sqlx::Error::Database(db) if db.is_foreign_key_violation()) =>
            {
                return Err(StoreError::NotFound {
                    what: "distributor",
                    id: distributor.map(ToString::to_string).unwrap_or_default(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        audit_in(
            &mut tx,
            actor,
            now,
            "token.create",
            format!("token:{token_id}"),
            None,
            Some(serde_json::json!({
                "role": role.as_str(),
                "distributor": distributor.map(DistributorId::as_str),
                "expires_at": expires_at,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The token with this hash, revoked and expired ones included.
    pub async fn token_by_hash(
        &self,
        token_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            token_columns!(),
            " from api_tokens t where t.token_sha256 = $1"
        ))
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Tokens in id order after `after` (keyset), at most `limit`.
    pub async fn tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenListing>, StoreError> {
        let rows = sqlx::query(concat!(
            "select id, role, distributor_id, created_at, expires_at, revoked_at from api_tokens ",
            "where ($1 is null or id > $1) order by id limit $2"
        ))
        .bind(after)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (role, distributor_id) = scope_from_row(row)?;
                Ok(TokenListing {
                    id: row.try_get("id")?,
                    role,
                    distributor_id,
                    created_at: row.try_get::<DbTime, _>("created_at")?.into(),
                    expires_at: row
                        .try_get::<Option<DbTime>, _>("expires_at")?
                        .map(Into::into),
                    revoked_at: row
                        .try_get::<Option<DbTime>, _>("revoked_at")?
                        .map(Into::into),
                })
            })
            .collect()
    }

    /// Revokes token `id` and ends its page sessions, with the audit entry,
    /// in one transaction; `None` if there is no such token. Revoking a
    /// revoked token changes nothing and records nothing.
    pub async fn revoke_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<Revocation>, StoreError> {
        let mut tx = self.begin_write().await?;
        let revoked: Option<bool> = sqlx::query_scalar(concat!(
            "select revoked_at is not null from api_tokens where id = $1",
            for_update!()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match revoked {
            None => return Ok(None),
            Some(true) => Revocation::AlreadyRevoked,
            Some(false) => {
                sqlx::query("update api_tokens set revoked_at = $2 where id = $1")
                    .bind(id)
                    .bind(DbTime(now))
                    .execute(&mut *tx)
                    .await?;
                audit_in(
                    &mut tx,
                    actor,
                    now,
                    "token.revoke",
                    format!("token:{id}"),
                    Some(serde_json::json!({"revoked_at": null})),
                    Some(serde_json::json!({"revoked_at": now})),
                )
                .await?;
                Revocation::Revoked
            }
        };
        // Also for a token revoked before sessions died with it: none survive.
        sqlx::query("delete from web_sessions where token_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// Stores a new page session of `token_id`, and deletes the sessions
    /// that ended (past `expires_at`, or idle since before `idle_cutoff`) so
    /// the table holds only live ones.
    pub async fn create_session(
        &self,
        session_sha256: &str,
        token_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("delete from web_sessions where expires_at <= $1 or last_seen_at <= $2")
            .bind(DbTime(now))
            .bind(DbTime(idle_cutoff))
            .execute(&mut *tx)
            .await?;
        sqlx::query(concat!(
            "insert into web_sessions (session_sha256, token_id, created_at, last_seen_at, expires_at) ",
            "values ($1, $2, $3, $3, $4)"
        ))
        .bind(session_sha256)
        .bind(token_id)
        .bind(DbTime(now))
        .bind(DbTime(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this hash and its token, whatever their state.
    pub async fn session_by_hash(
        &self,
        session_sha256: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            token_columns!(),
            ", s.last_seen_at, s.expires_at ",
            "from web_sessions s join api_tokens t on t.id = s.token_id where s.session_sha256 = $1"
        ))
        .bind(session_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRecord {
                token: token_from_row(&row)?,
                last_seen_at: row.try_get::<DbTime, _>("last_seen_at")?.into(),
                expires_at: row.try_get::<DbTime, _>("expires_at")?.into(),
            })
        })
        .transpose()
    }

    /// Restarts the session's idle timeout at `now`.
    pub async fn touch_session(
        &self,
        session_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("update web_sessions set last_seen_at = $2 where session_sha256 = $1 and last_seen_at < $2")
            .bind(session_sha256)
            .bind(DbTime(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session (logging out); ending one that is gone is fine.
    pub async fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("delete from web_sessions where session_sha256 = $1")
            .bind(session_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
