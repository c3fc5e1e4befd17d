//! Withholding certificates' SQL (SPEC §2.6), shared by both backends.
//! Certificates are written once and never changed: the table's triggers
//! refuse UPDATE and DELETE. A withdrawal has one original certificate
//! (`replaces` null) and a line of corrections.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Repo;
use super::audit::audit_in;
use super::dialect::{Conn, DbRow, ROWS_PER_STATEMENT, push_job};
use super::webhooks::record_events;
use crate::domain::ids::{CertificateNumber, DistributorId, WithdrawalId};
use crate::domain::ledger::{AccountId, PlatformAccount};
use crate::domain::money::Money;
use crate::domain::tax::Month;
use crate::domain::webhooks::{EventType, NewEvent};
use crate::store::error::StoreError;
use crate::store::records::{
    Actor, CertificateRecord, CorrectionOutcome, NewCertificate, PreparedDeclaration,
    ReturnedPayout,
};
use crate::store::time::DbTime;
use crate::store::{JobSpec, MAX_PAGE, withdrawal_step_task};

/// The columns of `certificates` without the PDF, for `concat!`.
macro_rules! certificate_columns {
    () => {
        "number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen, net_fen, manifest, replaces, reason, issued_at"
    };
}

fn certificate_from_row(row: &DbRow) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        number: CertificateNumber::parse(row.try_get::<String, _>("number")?)?,
        withdrawal_id: WithdrawalId::parse(row.try_get::<String, _>("withdrawal_id")?)?,
        distributor_id: DistributorId::parse(row.try_get::<String, _>("distributor_id")?)?,
        tax_month: row.try_get("tax_month")?,
        key_id: row.try_get("key_id")?,
        gross: Money::from_fen(row.try_get("gross_fen")?),
        tax: Money::from_fen(row.try_get("tax_fen")?),
        net: Money::from_fen(row.try_get("net_fen")?),
        manifest: row.try_get("manifest")?,
        replaces: row
            .try_get::<Option<String>, _>("replaces")?
            .map(CertificateNumber::parse)
            .transpose()?,
        reason: row.try_get("reason")?,
        issued_at: row.try_get::<DbTime, _>("issued_at")?.0,
    })
}

impl Repo {
    /// Stores a withdrawal's original certificate unless it has one already;
    /// returns the original's number either way (the step may run twice).
    pub async fn insert_certificate(
        &self,
        new: &NewCertificate,
    ) -> Result<CertificateNumber, StoreError> {
        let mut tx = self.begin_write().await?;
        insert_certificate_row(&mut tx, new).await?;
        let number: String = sqlx::query_scalar(
            "select number from certificates where withdrawal_id = $1 and replaces is null",
        )
        .bind(new.withdrawal_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CertificateNumber::parse(number)?)
    }

    /// Stores a correction of `new.replaces`, which must be the newest
    /// certificate of its withdrawal: a certificate is corrected once, and a
    /// second correction corrects the first.
    /// Stores a correction issued by `actor`, with its audit entry.
    pub async fn insert_correction(
        &self,
        new: &NewCertificate,
        actor: &Actor,
    ) -> Result<CorrectionOutcome, StoreError> {
        let replaces = new.replaces.as_ref().ok_or_else(|| {
            StoreError::Corrupt("a correction names the certificate it replaces".to_owned())
        })?;
        let mut tx = self.begin_write().await?;
        let corrected: Option<String> =
            sqlx::query_scalar("select number from certificates where replaces = $1")
                .bind(replaces.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(corrected) = corrected {
            return Ok(CorrectionOutcome::AlreadyCorrected {
                by: CertificateNumber::parse(corrected)?,
            });
        }
        insert_certificate_row(&mut tx, new).await?;
        audit_in(
            &mut tx,
            actor,
            new.issued_at,
            "certificate.correct",
            format!("certificate:{replaces}"),
            None,
            Some(serde_json::json!({"number": new.number, "reason": new.reason})),
        )
        .await?;
        tx.commit().await?;
        Ok(CorrectionOutcome::Inserted)
    }

    /// The number of the certificate in force for a withdrawal: the newest
    /// of its line (the one nothing replaces).
    pub async fn certificate_number_for(
        &self,
        withdrawal_id: &WithdrawalId,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        let number: Option<String> = sqlx::query_scalar(concat!(
            "select c.number from certificates c where c.withdrawal_id = $1 ",
            "and not exists (select 1 from certificates n where n.replaces = c.number)"
        ))
        .bind(withdrawal_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(number.map(CertificateNumber::parse).transpose()?)
    }

    /// The certificate and its PDF.
    pub async fn certificate(
        &self,
        number: &CertificateNumber,
    ) -> Result<Option<(CertificateRecord, Vec<u8>)>, StoreError> {
        let row = sqlx::query(concat!(
            "select ",
            certificate_columns!(),
            ", pdf from certificates where number = $1"
        ))
        .bind(number.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((certificate_from_row(&row)?, row.try_get("pdf")?))),
            None => Ok(None),
        }
    }

    /// The number of the certificate whose PDF has this SHA-256.
    pub async fn certificate_number_by_pdf(
        &self,
        pdf_sha256: &str,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        let number: Option<String> =
            sqlx::query_scalar("select number from certificates where pdf_sha256 = $1")
                .bind(pdf_sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(number.map(CertificateNumber::parse).transpose()?)
    }

    /// The number of the certificate that corrects `number`, if any.
    pub async fn correction_of(
        &self,
        number: &CertificateNumber,
    ) -> Result<Option<CertificateNumber>, StoreError> {
        let number: Option<String> =
            sqlx::query_scalar("select number from certificates where replaces = $1")
                .bind(number.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(number.map(CertificateNumber::parse).transpose()?)
    }

    /// Certificates with their PDFs, in number order after `after`: the
    /// pages a month's zip is streamed from.
    pub async fn certificate_files(
        &self,
        tax_month: Month,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>, String)>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "select number, pdf, manifest from certificates where tax_month = $1 ",
            "and ($2 is null or number > $2) order by number limit $3"
        ))
        .bind(tax_month.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Count and money of a month's certificates in force (corrections
    /// replace what they correct).
    pub async fn certificate_totals(
        &self,
        tax_month: Month,
    ) -> Result<(i64, Money, Money, Money), StoreError> {
        let (count, gross, tax, net): (i64, i64, i64, i64) = sqlx::query_as(concat!(
            "select count(*), cast(coalesce(sum(gross_fen), 0) as bigint), cast(coalesce(sum(tax_fen), 0) as bigint), ",
            "cast(coalesce(sum(net_fen), 0) as bigint) from certificates c where tax_month = $1 ",
            "and not exists (select 1 from certificates n where n.replaces = c.number)"
        ))
        .bind(tax_month.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            count,
            Money::from_fen(gross),
            Money::from_fen(tax),
            Money::from_fen(net),
        ))
    }

    /// Records (or re-records) the declaration the schedule prepared for a month.
    pub async fn save_prepared_declaration(
        &self,
        prepared: &PreparedDeclaration,
        csv: &[u8],
        xlsx: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "insert into prepared_declarations (tax_month, method, prepared_at, distributors, payouts, gross_fen, tax_fen, net_fen, ",
            "ledger_tax_fen, csv, xlsx) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) on conflict (tax_month) do update set ",
            "method = excluded.method, prepared_at = excluded.prepared_at, distributors = excluded.distributors, payouts = excluded.payouts, ",
            "gross_fen = excluded.gross_fen, tax_fen = excluded.tax_fen, net_fen = excluded.net_fen, ledger_tax_fen = excluded.ledger_tax_fen, ",
            "csv = excluded.csv, xlsx = excluded.xlsx"
        ))
        .bind(&prepared.tax_month)
        .bind(&prepared.method)
        .bind(DbTime(prepared.prepared_at))
        .bind(prepared.distributors)
        .bind(prepared.payouts)
        .bind(prepared.gross.fen())
        .bind(prepared.tax.fen())
        .bind(prepared.net.fen())
        .bind(prepared.ledger_tax.fen())
        .bind(csv)
        .bind(xlsx)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The prepared declarations, newest month first.
    pub async fn prepared_declarations(
        &self,
        limit: i64,
    ) -> Result<Vec<PreparedDeclaration>, StoreError> {
        let rows = sqlx::query(concat!(
            "select tax_month, method, prepared_at, distributors, payouts, gross_fen, tax_fen, net_fen, ledger_tax_fen ",
            "from prepared_declarations order by tax_month desc limit $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PreparedDeclaration {
                    tax_month: row.try_get("tax_month")?,
                    method: row.try_get("method")?,
                    prepared_at: row.try_get::<DbTime, _>("prepared_at")?.0,
                    distributors: row.try_get("distributors")?,
                    payouts: row.try_get("payouts")?,
                    gross: Money::from_fen(row.try_get("gross_fen")?),
                    tax: Money::from_fen(row.try_get("tax_fen")?),
                    net: Money::from_fen(row.try_get("net_fen")?),
                    ledger_tax: Money::from_fen(row.try_get("ledger_tax_fen")?),
                })
            })
            .collect()
    }

    /// Payouts of `tax_month` the bank returned after the month's
    /// declaration was prepared: that declaration counted income that was
    /// never paid, so the accountant files a correction (更正申报).
    pub async fn returned_after_declaration(
        &self,
        tax_month: &str,
    ) -> Result<Vec<ReturnedPayout>, StoreError> {
        let rows = sqlx::query(concat!(
            "select w.id, w.distributor_id, w.gross_fen, w.tax_fen, w.returned_at, w.failure_reason, ",
            "d.prepared_at from withdrawals w join prepared_declarations d on d.tax_month = w.tax_month ",
            "where w.tax_month = $1 and w.state = 'returned' and w.returned_at > d.prepared_at ",
            "order by w.returned_at, w.id"
        ))
        .bind(tax_month)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReturnedPayout {
                    withdrawal_id: WithdrawalId::parse(row.try_get::<String, _>("id")?)?,
                    distributor_id: row.try_get("distributor_id")?,
                    gross: Money::from_fen(row.try_get("gross_fen")?),
                    tax: Money::from_fen(row.try_get("tax_fen")?),
                    returned_at: row.try_get::<DbTime, _>("returned_at")?.0,
                    reason: row.try_get("failure_reason")?,
                    declaration_prepared_at: row.try_get::<DbTime, _>("prepared_at")?.0,
                })
            })
            .collect()
    }

    /// A prepared declaration's file: `xlsx` or else the CSV.
    pub async fn prepared_declaration_file(
        &self,
        tax_month: Month,
        xlsx: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = if xlsx {
            "select xlsx from prepared_declarations where tax_month = $1"
        } else {
            "select csv from prepared_declarations where tax_month = $1"
        };
        Ok(sqlx::query_scalar(sql)
            .bind(tax_month.to_string())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The tax payable the ledger credited for withdrawals of a tax month
    /// (their `paid` transfers, less the `bounced` ones), to check a
    /// declaration against.
    pub async fn ledger_tax_for_month(&self, tax_month: Month) -> Result<Money, StoreError> {
        let fen: i64 = sqlx::query_scalar(concat!(
            "select cast(coalesce(sum(p.amount_fen), 0) as bigint) from withdrawals w ",
            // A bounce (退票) takes its payout's tax back off the month.
            "join ledger_transfers t on t.idempotency_key in ('withdrawal:' || w.id || ':paid', 'withdrawal:' || w.id || ':bounced') ",
            "join ledger_postings p on p.transfer_id = t.id and p.account_id = $2 ",
            "where w.tax_month = $1"
        ))
        .bind(tax_month.to_string())
        .bind(AccountId::Platform(PlatformAccount::TaxPayable).to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(Money::from_fen(fen.abs()))
    }

    /// A month's certificates (optionally one distributor's), by number,
    /// after `after` (keyset pagination); without the PDFs.
    pub async fn certificates(
        &self,
        tax_month: Month,
        distributor: Option<&DistributorId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "select ", certificate_columns!(), " from certificates where tax_month = $1 ",
            "and ($2 is null or distributor_id = $2) and ($3 is null or number > $3) order by number limit $4"
        ))
        .bind(tax_month.to_string())
        .bind(distributor.map(DistributorId::as_str))
        .bind(after)
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    /// Publishes a signing key's public half (once; later calls change nothing).
    pub async fn record_certificate_key(
        &self,
        key_id: &str,
        public_key: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("insert into certificate_keys (key_id, public_key, first_used_at) values ($1, $2, $3) on conflict (key_id) do nothing")
            .bind(key_id)
            .bind(public_key)
            .bind(DbTime(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every published signing key: (key id, public key, first used), oldest first.
    pub async fn certificate_keys(
        &self,
    ) -> Result<Vec<(String, Vec<u8>, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, Vec<u8>, DbTime)> =
            sqlx::query_as("select key_id, public_key, first_used_at from certificate_keys order by first_used_at, key_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(key_id, public_key, first_used_at)| (key_id, public_key, first_used_at.0))
            .collect())
    }

    /// Pushes a certificate job for each paid withdrawal without a
    /// certificate, with a key of this sweep's own; returns how many.
    /// Only withdrawals paid before `paid_before` count: a younger one's job
    /// is most likely still in the queue.
    pub async fn push_missing_certificates(
        &self,
        certificate_job: &JobSpec,
        key_suffix: &str,
        paid_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(concat!(
            "select w.id from withdrawals w where w.state = 'paid' and w.finished_at < $1 ",
            "and not exists (select 1 from certificates c where c.withdrawal_id = w.id) order by w.finished_at limit $2"
        ))
        .bind(DbTime(paid_before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut tx = self.begin_write().await?;
            for id in chunk {
                let task = withdrawal_step_task(
                    certificate_job,
                    &WithdrawalId::parse(id.as_str())?,
                    format!("certificate:{id}:{key_suffix}"),
                )?;
                push_job(&mut tx, &certificate_job.queue, task).await?;
            }
            tx.commit().await?;
        }
        Ok(ids.len())
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

/// Inserts a certificate row; a second original for a withdrawal, or a
/// second correction of a certificate, is skipped by the unique indexes.
/// A certificate written tells the shop (`certificate.issued`).
async fn insert_certificate_row(conn: &mut Conn, new: &NewCertificate) -> Result<(), StoreError> {
    let inserted = sqlx::query(concat!(
        "insert into certificates (number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen, ",
        "net_fen, pdf, pdf_sha256, manifest, replaces, reason, issued_at) ",
        "values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) on conflict do nothing"
    ))
    .bind(new.number.as_str())
    .bind(new.withdrawal_id.as_str())
    .bind(new.distributor_id.as_str())
    .bind(&new.tax_month)
    .bind(&new.key_id)
    .bind(new.gross.fen())
    .bind(new.tax.fen())
    .bind(new.net.fen())
    .bind(&new.pdf)
    .bind(&new.pdf_sha256)
    .bind(&new.manifest)
    .bind(new.replaces.as_ref().map(CertificateNumber::as_str))
    .bind(new.reason.as_deref())
    .bind(DbTime(new.issued_at))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        let data = serde_json::json!({
            "number": new.number.as_str(),
            "withdrawal_id": new.withdrawal_id.as_str(),
            "distributor_id": new.distributor_id.as_str(),
            "tax_month": new.tax_month,
            "gross": new.gross.to_string(),
            "tax": new.tax.to_string(),
            "net": new.net.to_string(),
            "replaces": new.replaces.as_ref().map(CertificateNumber::as_str),
        });
        let event = NewEvent::new(
            EventType::CertificateIssued,
            new.number.as_str(),
            new.withdrawal_id.as_str(),
            new.issued_at,
            data,
        );
        record_events(conn, || vec![event]).await?;
    }
    Ok(())
}
