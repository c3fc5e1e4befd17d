//! The certificate step of the withdrawal workflow (SPEC §2.6): turns a paid
//! withdrawal into its signed withholding certificate, issues corrections,
//! and answers verification requests against the published keys.
//!
//! The step is idempotent: the certificate's number is derived from the
//! withdrawal id, and the store keeps the first original a withdrawal gets,
//! so a job that runs twice (a crash before its acknowledgement, the start-up
//! sweep racing the queue) changes nothing the second time.

use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;
use secrecy::ExposeSecret;

use crate::certificate::{
    CertificateData, CertificateError, CertificateSigner, INCOME_ITEM_SERVICE, Verification, verify,
};
use crate::clock::Clock;
use crate::domain::digest::sha256_hex;
use crate::domain::identity::IdNumber;
use crate::domain::ids::{CertificateNumber, WithdrawalId};
use crate::domain::money::Money;
use crate::domain::tax::{Month, Withholding};
use crate::domain::withdrawal::WithdrawalState;
use crate::store::{
    CertificateRecord, CorrectionOutcome, NewCertificate, Store, StoreError, WithdrawalRecord,
};
use crate::vault::Vault;
use crate::vault::credentials::open_identity;

/// The HKDF label of the signing key derived from the vault's master key.
pub const SIGNING_KEY_LABEL: &str = "fenrun certificate signing key v1";
/// Paid withdrawals the sweep looks at per round.
const SWEEP_BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("opening the distributor's identity: {0}")]
    Vault(String),
    #[error("withdrawal {0} has no identity on file")]
    IdentityMissing(String),
    #[error("stored withholding of {id} is unreadable: {reason}")]
    Withholding { id: String, reason: String },
    #[error("certificate {0} does not exist")]
    NotFound(String),
    /// A correction of a certificate that another already corrects (→ 422).
    #[error("certificate {number} was already corrected by {by}; correct that one")]
    AlreadyCorrected { number: String, by: String },
    #[error("the rendering task failed: {0}")]
    Join(String),
}

impl crate::engine::step::StepFailure for IssueError {
    fn is_retryable(&self) -> bool {
        match self {
            IssueError::Store(store) => store.is_retryable(),
            // The rendering task was cancelled or panicked: worth one more go.
            IssueError::Join(_) => true,
            // The same rows give the same refusal: a person must look.
            IssueError::Certificate(_)
            | IssueError::Vault(_)
            | IssueError::IdentityMissing(_)
            | IssueError::Withholding { .. }
            | IssueError::NotFound(_)
            | IssueError::AlreadyCorrected { .. } => false,
        }
    }
}

/// How the reason of a void correction begins; the bounce's reason follows.
pub const VOID_REASON_PREFIX: &str = "退票作废 (payout returned by the bank): ";

/// Issues, corrects and verifies certificates; shared by the step worker,
/// the sweep and the API.
pub struct CertificateIssuer {
    store: Arc<Store>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    signer: Arc<CertificateSigner>,
    agent_name: String,
    agent_tin: String,
    time_zone: Tz,
}

/// Where an issue call left the withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// This call or an earlier one issued the certificate with this number.
    Certificate(CertificateNumber),
    /// The withdrawal is not paid (or unknown): there is nothing to certify.
    NotPaid,
}

impl CertificateIssuer {
    /// Builds the issuer with the key derived from the vault's master key
    /// and publishes that key's public half (a new master key after a
    /// rotation signs with a new key; the old ones stay published).
    pub async fn start(
        store: Arc<Store>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        agent_name: String,
        agent_tin: String,
        time_zone: Tz,
    ) -> Result<CertificateIssuer, IssueError> {
        let seed = vault
            .derive_secret(SIGNING_KEY_LABEL)
            .map_err(|error| IssueError::Vault(error.to_string()))?;
        let signer = CertificateSigner::from_seed(seed.expose_secret())?;
        store
            .record_certificate_key(signer.key_id(), signer.public_key(), clock.now())
            .await?;
        tracing::info!(
            key_id = signer.key_id(),
            "certificates are signed with this key"
        );
        Ok(CertificateIssuer {
            store,
            vault,
            clock,
            signer: Arc::new(signer),
            agent_name,
            agent_tin,
            time_zone,
        })
    }

    pub fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    /// The certificate number of a withdrawal: `FR{YYYYMM}-{id}`, unique
    /// because the withdrawal id is, and the same on every run of the step.
    pub fn number_for(withdrawal: &WithdrawalRecord) -> CertificateNumber {
        CertificateNumber::first(&withdrawal.id, &withdrawal.tax_month)
    }

    /// The certificate step: issues the certificate of a paid withdrawal,
    /// or finds the one already issued; for a withdrawal the bank sent back
    /// (退票), voids the certificate in force with a correction whose
    /// figures are zero.
    pub async fn issue(&self, withdrawal_id: &WithdrawalId) -> Result<Issued, IssueError> {
        let Some(withdrawal) = self.store.withdrawal(withdrawal_id).await? else {
            tracing::warn!(
                %withdrawal_id,
                "certificate job for an unknown withdrawal: nothing to do"
            );
            return Ok(Issued::NotPaid);
        };
        match withdrawal.state {
            WithdrawalState::Paid => {}
            WithdrawalState::Returned => return self.void_returned(&withdrawal).await,
            _ => return Ok(Issued::NotPaid),
        }
        if let Some(number) = self.store.certificate_number_for(withdrawal_id).await? {
            return Ok(Issued::Certificate(number));
        }
        let new = self
            .render(&withdrawal, Self::number_for(&withdrawal), None, None)
            .await?;
        let number = self.store.insert_certificate(&new).await?;
        tracing::info!(%withdrawal_id, certificate = %number, key_id = %new.key_id, "withholding certificate issued");
        Ok(Issued::Certificate(number))
    }

    /// Voids the certificate in force of a returned withdrawal, once: a
    /// certificate whose gross is zero is already the void. A withdrawal
    /// that bounced before its certificate was issued has nothing to void.
    async fn void_returned(&self, withdrawal: &WithdrawalRecord) -> Result<Issued, IssueError> {
        let actor = crate::store::Actor::system("certificate step");
        // A person may correct the same certificate at the same moment; the
        // newest of the line is read again and voided in turn.
        for _ in 0..3 {
            let Some(number) = self.store.certificate_number_for(&withdrawal.id).await? else {
                return Ok(Issued::NotPaid);
            };
            let (current, _) = self
                .store
                .certificate(&number)
                .await?
                .ok_or_else(|| IssueError::NotFound(number.to_string()))?;
            if current.gross.is_zero() {
                return Ok(Issued::Certificate(number));
            }
            let reason = format!(
                "{VOID_REASON_PREFIX}{}",
                withdrawal.failure_reason.as_deref().unwrap_or("退票")
            );
            let new = self
                .render(
                    withdrawal,
                    number.correction(),
                    Some(number.clone()),
                    Some(reason),
                )
                .await?;
            if let CorrectionOutcome::Inserted = self.store.insert_correction(&new, &actor).await? {
                tracing::info!(withdrawal_id = %withdrawal.id, certificate = %new.number, voids = %number, "withholding certificate voided: the payout was returned");
                return Ok(Issued::Certificate(new.number));
            }
        }
        Err(IssueError::AlreadyCorrected {
            number: withdrawal.id.to_string(),
            by: "corrections made while voiding".to_owned(),
        })
    }

    /// Issues a correction of certificate `number` (the newest of its
    /// withdrawal's line) from the withdrawal and identity as they are now,
    /// under a new number that names the old one.
    pub async fn correct(
        &self,
        number: &CertificateNumber,
        reason: &str,
        actor: &crate::store::Actor,
    ) -> Result<CertificateRecord, IssueError> {
        let (old, _) = self
            .store
            .certificate(number)
            .await?
            .ok_or_else(|| IssueError::NotFound(number.to_string()))?;
        let withdrawal = self
            .store
            .withdrawal(&old.withdrawal_id)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("certificate {number} without withdrawal"))
            })?;
        let new_number = number.correction();
        let new = self
            .render(
                &withdrawal,
                new_number.clone(),
                Some(number.clone()),
                Some(reason.to_owned()),
            )
            .await?;
        if let CorrectionOutcome::AlreadyCorrected { by } =
            self.store.insert_correction(&new, actor).await?
        {
            return Err(IssueError::AlreadyCorrected {
                number: number.to_string(),
                by: by.into_string(),
            });
        }
        tracing::info!(withdrawal_id = %withdrawal.id, certificate = %new_number, replaces = %number, "withholding certificate corrected");
        let (record, _) = self
            .store
            .certificate(&new_number)
            .await?
            .ok_or_else(|| IssueError::NotFound(new_number.to_string()))?;
        Ok(record)
    }

    async fn render(
        &self,
        withdrawal: &WithdrawalRecord,
        number: CertificateNumber,
        references: Option<CertificateNumber>,
        reason: Option<String>,
    ) -> Result<NewCertificate, IssueError> {
        let withholding: Withholding =
            serde_json::from_str(&withdrawal.withholding).map_err(|error| {
                IssueError::Withholding {
                    id: withdrawal.id.to_string(),
                    reason: error.to_string(),
                }
            })?;
        let month =
            Month::parse(&withdrawal.tax_month).map_err(|error| IssueError::Withholding {
                id: withdrawal.id.to_string(),
                reason: error.to_string(),
            })?;
        let identity = self
            .store
            .identity(&withdrawal.distributor_id)
            .await?
            .ok_or_else(|| IssueError::IdentityMissing(withdrawal.id.to_string()))?;
        let (name, id_number) = open_identity(&self.vault, &identity)
            .map_err(|error| IssueError::Vault(error.to_string()))?;
        let now = self.clock.now();
        let paid_at = withdrawal.finished_at.unwrap_or(withdrawal.updated_at);
        // A returned payout paid nothing: every certificate of it from the
        // bounce on states zero income, zero tax and zero paid.
        let (withholding, net_paid) = if withdrawal.state == WithdrawalState::Returned {
            (withholding.voided(), Money::ZERO)
        } else {
            (withholding, withdrawal.net)
        };
        let data = CertificateData {
            number: number.into_string(),
            references: references.as_ref().map(|number| number.to_string()),
            agent_name: self.agent_name.clone(),
            agent_tin: self.agent_tin.clone(),
            distributor_id: withdrawal.distributor_id.to_string(),
            distributor_name: name.expose_secret().to_owned(),
            masked_id_number: mask_id_number(id_number.expose_secret(), now.date_naive()),
            income_item: INCOME_ITEM_SERVICE.to_owned(),
            tax_period: month.tax_period(),
            payment_date: paid_at.with_timezone(&self.time_zone).date_naive(),
            net_paid,
            withholding,
            withdrawal_id: withdrawal.id.to_string(),
            issued_at: now,
        };
        let (data_gross, data_tax) = (data.withholding.gross, data.withholding.withheld_now);
        let signer = self.signer.clone();
        // Rendering and subsetting take a millisecond or two of CPU: off the
        // async threads.
        let signed = tokio::task::spawn_blocking(move || signer.issue(&data))
            .await
            .map_err(|error| IssueError::Join(error.to_string()))??;
        Ok(NewCertificate {
            number: CertificateNumber::parse(signed.number)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            withdrawal_id: withdrawal.id.clone(),
            distributor_id: withdrawal.distributor_id.clone(),
            tax_month: withdrawal.tax_month.clone(),
            key_id: signed.key_id,
            gross: data_gross,
            tax: data_tax,
            net: net_paid,
            pdf_sha256: sha256_hex(&signed.pdf),
            pdf: signed.pdf,
            manifest: signed.manifest_json,
            replaces: references,
            reason,
            issued_at: now,
        })
    }

    /// Pushes certificate jobs for withdrawals paid before `paid_before`
    /// that still have no certificate (their job ran out of attempts, or was
    /// lost with a database restored from backup).
    pub async fn sweep(
        &self,
        certificate_job: &crate::store::JobSpec,
        paid_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        self.store
            .push_missing_certificates(certificate_job, &suffix[..12], paid_before, SWEEP_BATCH)
            .await
    }
}

/// Checks a PDF (and its manifest, or the stored one found by the PDF's
/// hash) against every published key. A PDF fenrun never issued is not
/// genuine; so is a manifest that is not byte for byte what was signed.
pub async fn verify_upload(
    store: &Store,
    pdf: &[u8],
    manifest: Option<&str>,
) -> Result<Verification, StoreError> {
    let stored_manifest;
    let manifest = match manifest {
        Some(manifest) => manifest,
        None => {
            let number = store.certificate_number_by_pdf(&sha256_hex(pdf)).await?;
            let stored = match number {
                Some(number) => store.certificate(&number).await?,
                None => None,
            };
            match stored {
                Some((record, _)) => {
                    stored_manifest = record.manifest;
                    &stored_manifest
                }
                None => {
                    return Ok(Verification::NotGenuine(
                        crate::certificate::Rejection::UnknownPdf,
                    ));
                }
            }
        }
    };
    let keys: Vec<(String, Vec<u8>)> = store
        .certificate_keys()
        .await?
        .into_iter()
        .map(|(key_id, public_key, _)| (key_id, public_key))
        .collect();
    Ok(verify(pdf, manifest, &keys))
}

/// The ID number as certificates print it (`110***********1234`); a number
/// that no longer parses (rules changed since it was stored) keeps only its
/// first three and last four characters all the same.
fn mask_id_number(number: &str, today: NaiveDate) -> String {
    match IdNumber::parse(number, today) {
        Ok(parsed) => parsed.masked(),
        Err(_) => {
            let chars: Vec<char> = number.chars().collect();
            if chars.len() < 8 {
                return "*".repeat(chars.len().max(1));
            }
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_count_up_from_the_original_number() {
        let correction_number = |text: &str| {
            CertificateNumber::parse(text)
                .unwrap()
                .correction()
                .into_string()
        };
        assert_eq!(correction_number("FR202611-AB12"), "FR202611-AB12-C1");
        assert_eq!(correction_number("FR202611-AB12-C1"), "FR202611-AB12-C2");
        assert_eq!(correction_number("FR202611-AB12-C9"), "FR202611-AB12-C10");
    }

    #[test]
    fn id_numbers_print_masked_even_when_they_no_longer_parse() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(
            mask_id_number("11010519491231002X", today),
            "110***********002X"
        );
        assert_eq!(mask_id_number("A1234567890", today), "A12****7890");
        assert_eq!(mask_id_number("123", today), "***");
    }
}
