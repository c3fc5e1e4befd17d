//! Sign-in links to the distributor page (`/me`), shared by both backends:
//! storing a link's hash, and opening it at most once.
//!
//! Opening is one guarded `update … where used_at is null and expires_at >
//! now returning distributor_id`: on PostgreSQL a second open of the same
//! link waits for the first's row lock and then matches nothing; on SQLite
//! writes are serialised by `BEGIN IMMEDIATE`. Either way exactly one of two
//! concurrent opens gets the distributor. Only a failed open reads the row
//! again, to say whether the link was used, expired or never existed.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use crate::domain::ids::DistributorId;
use crate::store::error::StoreError;
use crate::store::records::PortalLinkOpening;
use crate::store::time::DbTime;

impl Repo {
    /// Stores a new link's hash for `distributor`, asked for by `created_by`
    /// (a token id); a distributor that does not exist is `NotFound`.
    pub async fn insert_portal_link(
        &self,
        link_sha256: &str,
        distributor: &DistributorId,
        created_by: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(concat!(
            "insert into portal_links (link_sha256, distributor_id, created_by, created_at, expires_at) ",
            "values ($1, $2, $3, $4, $5)"
        ))
        .bind(link_sha256)
        .bind(distributor.as_str())
        .bind(created_by)
        .bind(DbTime(now))
        .bind(DbTime(expires_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(error) if matches!(&error, sqlx::Error::Database(db) if db.is_foreign_key_violation()) =>
            {
                return Err(StoreError::NotFound {
                    what: "distributor",
                    id: distributor.to_string(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Uses the link with this hash at `now`, if it is unused and unexpired:
    /// its distributor; otherwise why not. Exactly one caller ever gets
    /// `Opened` for a link.
    pub async fn open_portal_link(
        &self,
        link_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<PortalLinkOpening, StoreError> {
        let mut tx = self.begin_write().await?;
        let opened: Option<String> = sqlx::query_scalar(concat!(
            "update portal_links set used_at = $2 ",
            "where link_sha256 = $1 and used_at is null and expires_at > $2 ",
            "returning distributor_id"
        ))
        .bind(link_sha256)
        .bind(DbTime(now))
        .fetch_optional(&mut *tx)
        .await?;
        let opening = match opened {
            Some(distributor) => PortalLinkOpening::Opened(DistributorId::parse(distributor)?),
            None => {
                let row = sqlx::query(
                    "select used_at is not null as used from portal_links where link_sha256 = $1",
                )
                .bind(link_sha256)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    None => PortalLinkOpening::Unknown,
                    Some(row) if row.try_get::<bool, _>("used")? => PortalLinkOpening::Used,
                    Some(_) => PortalLinkOpening::Expired,
                }
            }
        };
        tx.commit().await?;
        Ok(opening)
    }
}
