// Withholding certificates' SQL (SPEC §2.6), shared by both backends like
// `queries.rs` (and included after it). Certificates are written once and
// never changed: the table's triggers refuse UPDATE and DELETE.

use crate::store::records::{CertificateRecord, NewCertificate};

/// The columns of `certificates` without the PDF, for `concat!`.
macro_rules! certificate_columns {
    () => {
        "number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen, net_fen, manifest, replaces, issued_at"
    };
}

fn certificate_from_row(row: &<Db as sqlx::Database>::Row) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        number: row.try_get("number")?,
        withdrawal_id: row.try_get("withdrawal_id")?,
        distributor_id: DistributorId::parse(row.try_get::<String, _>("distributor_id")?)?,
        tax_month: row.try_get("tax_month")?,
        key_id: row.try_get("key_id")?,
        gross: Money::from_fen(row.try_get("gross_fen")?),
        tax: Money::from_fen(row.try_get("tax_fen")?),
        net: Money::from_fen(row.try_get("net_fen")?),
        manifest: row.try_get("manifest")?,
        replaces: row.try_get("replaces")?,
        issued_at: row.try_get("issued_at")?,
    })
}

impl Repo {
    /// Stores a certificate unless its withdrawal has one already; returns
    /// the number in force for the withdrawal either way.
    pub async fn insert_certificate(&self, new: &NewCertificate) -> Result<String, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into certificates (number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen, ",
            "net_fen, pdf, manifest, replaces, issued_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ",
            "on conflict (withdrawal_id) do nothing"
        ))
        .bind(&new.number)
        .bind(&new.withdrawal_id)
        .bind(new.distributor_id.as_str())
        .bind(&new.tax_month)
        .bind(&new.key_id)
        .bind(new.gross.fen())
        .bind(new.tax.fen())
        .bind(new.net.fen())
        .bind(&new.pdf)
        .bind(&new.manifest)
        .bind(new.replaces.as_deref())
        .bind(new.issued_at)
        .execute(&mut *tx)
        .await?;
        let number: String = sqlx::query_scalar("select number from certificates where withdrawal_id = $1")
            .bind(&new.withdrawal_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(number)
    }

    pub async fn certificate_number_for(&self, withdrawal_id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("select number from certificates where withdrawal_id = $1")
            .bind(withdrawal_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The certificate and its PDF.
    pub async fn certificate(&self, number: &str) -> Result<Option<(CertificateRecord, Vec<u8>)>, StoreError> {
        let row = sqlx::query(concat!("select ", certificate_columns!(), ", pdf from certificates where number = $1"))
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some((certificate_from_row(&row)?, row.try_get("pdf")?))),
            None => Ok(None),
        }
    }

    /// A month's certificates (optionally one distributor's), by number,
    /// after `after` (keyset pagination); without the PDFs.
    pub async fn certificates(
        &self,
        tax_month: &str,
        distributor: Option<&DistributorId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ", certificate_columns!(), " from certificates where tax_month = $1 ",
            "and ($2 is null or distributor_id = $2) and ($3 is null or number > $3) order by number limit $4"
        ))
        .bind(tax_month)
        .bind(distributor.map(DistributorId::as_str))
        .bind(after)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    /// Publishes a signing key's public half (once; later calls change nothing).
    pub async fn record_certificate_key(&self, key_id: &str, public_key: &[u8], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("insert into certificate_keys (key_id, public_key, first_used_at) values ($1, $2, $3) on conflict (key_id) do nothing")
            .bind(key_id)
            .bind(public_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every published signing key: (key id, public key, first used), oldest first.
    pub async fn certificate_keys(&self) -> Result<Vec<(String, Vec<u8>, DateTime<Utc>)>, StoreError> {
        Ok(sqlx::query_as("select key_id, public_key, first_used_at from certificate_keys order by first_used_at, key_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Paid withdrawals that have no certificate yet (the certificate
    /// step's catch-up after a crash).
    pub async fn paid_without_certificate(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(concat!(
            "select w.id from withdrawals w left join certificates c on c.withdrawal_id = w.id ",
            "where w.state = 'paid' and c.number is null order by w.finished_at limit $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
