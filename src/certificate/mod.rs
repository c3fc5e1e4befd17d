//! Withholding certificates (个人所得税扣缴凭证, tax-cn.md §4): the statement
//! a distributor gets after each withholding, as a one-page PDF with Chinese
//! text, signed with Ed25519 so anyone holding the published key can tell a
//! genuine certificate from an edited one.
//!
//! ```text
//! CertificateData ──render_pdf──► PDF bytes (prints the 验证码)
//!        │                            │ SHA-256
//!        └──facts──► manifest.signed { version, key_id, pdf_sha256, verification_code, certificate facts }
//!                                     │ Ed25519("fenrun-certificate-v1\n" ‖ canonical JSON of `signed`)
//!                                     ▼
//!                    manifest = { "signed": {…}, "signature": base64 }  ──► `{number}.json`
//! ```
//!
//! # The signing scheme (v1)
//!
//! - The PDF is rendered first, deterministically (same data → same bytes: no
//!   random ids, dates from the data), with the font embedded and subsetted.
//! - The **manifest** is a small JSON document that travels beside the PDF as
//!   `{number}.json` (a *detached* signature: the PDF itself is never edited
//!   after rendering, so no hand-written PDF syntax and no signature that has
//!   to cover itself). Its `signed` part holds the certificate number, the
//!   key id, the SHA-256 of the PDF bytes, the verification code and every
//!   amount in integer fen; `signature` is the Ed25519 signature of
//!   `"fenrun-certificate-v1\n"` followed by the compact JSON of `signed`.
//! - The manifest has one canonical form, the one [`CertificateSigner::sign`]
//!   writes (compact JSON, fields in a fixed order); [`verify`] refuses any
//!   other, so a single changed byte in either file fails verification.
//! - The **验证码** printed on the PDF is the first 64 bits of SHA-256 over the
//!   certificate's facts ([`verification_code`]), computed before rendering:
//!   it cannot come from the signature, which is made after the PDF exists.
//!   With the certificate number it lets a person with only a printout look
//!   the manifest up (and lets [`verify`] check the manifest's facts against
//!   the code it signed).
//! - The key id is the first 16 hex digits of SHA-256 of the raw 32-byte
//!   public key, so anyone can recompute it from the published key
//!   ([`CertificateSigner::public_key_jwk_like`]).
//! - The manifest carries no name and no ID number: the PDF has them, and its
//!   hash binds them; the manifest can be stored and served with less care.
//!
//! The font is Noto Sans SC Regular (SIL OFL 1.1, `assets/fonts/`), compiled
//! into the binary so a fresh machine needs no system font.

pub mod archive;
mod render;
mod sign;

#[cfg(test)]
mod tests;

use chrono::{DateTime, NaiveDate, Utc};
use ring::digest;

use crate::domain::digest::hex_upper;
use serde::{Deserialize, Serialize};

use crate::domain::money::{Money, Rate};
use crate::domain::tax::{Withholding, WithholdingMethod};

pub use render::render_pdf;
pub use sign::{
    CertificateSigner, MAX_MANIFEST_BYTES, Rejection, SignedCertificate, Verification, key_id_of,
    verify,
};

/// Version label of the signing scheme; the signed message starts with it.
pub const SCHEME_VERSION: &str = "fenrun-certificate-v1";
/// The income item of a platform payout (所得项目).
pub const INCOME_ITEM_SERVICE: &str = "劳务报酬所得";
/// Longest text field, in characters. A legal name runs to a few dozen
/// characters; the limit keeps every field inside its table cell.
pub const MAX_FIELD_CHARS: usize = 64;
/// Longest certificate number, in bytes: it names the `{number}.json` file.
pub const MAX_NUMBER_BYTES: usize = crate::domain::ids::MAX_CERTIFICATE_NUMBER_BYTES;

/// Domain-separation prefix of the verification-code hash.
const CODE_LABEL: &str = "fenrun-certificate-code-v1\n";
/// Bytes of SHA-256 kept in a verification code: 64 bits, 16 hex digits.
const CODE_HASH_BYTES: usize = 8;

/// Everything a certificate shows. Built by the caller from the withdrawal
/// and its withholding; [`render_pdf`] checks the fields before drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateData {
    /// 凭证编号, e.g. `{agentTIN}-{YYYYMM}-{distributorId}-{seq}`: ASCII
    /// letters, digits, `-` and `_` only, as it also names the manifest file.
    pub number: String,
    /// The number of the certificate this one corrects, if any.
    pub references: Option<String>,
    /// 扣缴义务人名称: the agent's legal name, in full.
    pub agent_name: String,
    /// 扣缴义务人纳税人识别号 (统一社会信用代码).
    pub agent_tin: String,
    pub distributor_id: String,
    /// 纳税人姓名: the distributor's full name (printed).
    pub distributor_name: String,
    /// 身份证件号码, masked (`110101********0011`).
    pub masked_id_number: String,
    /// 所得项目, normally [`INCOME_ITEM_SERVICE`].
    pub income_item: String,
    /// 税款所属期, e.g. `2026年3月1日至2026年3月31日`.
    pub tax_period: String,
    /// 扣缴日期: the day of the payout and withholding.
    pub payment_date: NaiveDate,
    pub withholding: Withholding,
    /// 实付金额: gross − tax withheld (− any VAT and surcharges withheld).
    pub net_paid: Money,
    pub withdrawal_id: String,
    /// When the certificate was issued (开具时间); also the PDF's creation date.
    pub issued_at: DateTime<Utc>,
}

/// Why a certificate could not be rendered or signed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate field {field} is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("certificate amounts disagree: {0}")]
    Inconsistent(&'static str),
    #[error("the embedded certificate font could not be loaded")]
    Font,
    #[error("PDF rendering failed: {0}")]
    Render(String),
    #[error("certificate signing key is invalid: {0}")]
    Key(&'static str),
    #[error("cannot read certificate signing key file {path}: {source}")]
    KeyFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("Ed25519 signing failed")]
    Signing,
    #[error("manifest could not be written: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// The facts a certificate attests, as the manifest carries them: amounts in
/// integer fen, no name and no ID number. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFacts {
    pub number: String,
    pub references: Option<String>,
    pub agent_tin: String,
    pub distributor_id: String,
    pub withdrawal_id: String,
    pub income_item: String,
    pub tax_period: String,
    pub payment_date: NaiveDate,
    pub issued_at: DateTime<Utc>,
    pub method: WithholdingMethod,
    pub months_count: Option<u8>,
    pub gross_fen: i64,
    pub income_to_date_fen: i64,
    pub fee_fen: i64,
    pub basic_deduction_fen: i64,
    pub taxable_fen: i64,
    pub rate: Rate,
    pub quick_deduction_fen: i64,
    pub tax_to_date_fen: i64,
    pub withheld_before_fen: i64,
    pub withheld_now_fen: i64,
    pub net_paid_fen: i64,
}

impl CertificateFacts {
    pub(crate) fn of(data: &CertificateData) -> CertificateFacts {
        let w = &data.withholding;
        CertificateFacts {
            number: data.number.clone(),
            references: data.references.clone(),
            agent_tin: data.agent_tin.clone(),
            distributor_id: data.distributor_id.clone(),
            withdrawal_id: data.withdrawal_id.clone(),
            income_item: data.income_item.clone(),
            tax_period: data.tax_period.clone(),
            payment_date: data.payment_date,
            issued_at: data.issued_at,
            method: w.method,
            months_count: w.months_count,
            gross_fen: w.gross.fen(),
            income_to_date_fen: w.income_to_date.fen(),
            fee_fen: w.fee.fen(),
            basic_deduction_fen: w.basic_deduction.fen(),
            taxable_fen: w.taxable.fen(),
            rate: w.rate,
            quick_deduction_fen: w.quick_deduction.fen(),
            tax_to_date_fen: w.tax_to_date.fen(),
            withheld_before_fen: w.withheld_before.fen(),
            withheld_now_fen: w.withheld_now.fen(),
            net_paid_fen: data.net_paid.fen(),
        }
    }

    /// The 验证码 of these facts: `XXXX-XXXX-XXXX-XXXX`, upper-case hex.
    pub(crate) fn code(&self) -> Result<String, serde_json::Error> {
        let json = serde_json::to_string(self)?;
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(CODE_LABEL.as_bytes());
        context.update(json.as_bytes());
        let hex = hex_upper(&context.finish().as_ref()[..CODE_HASH_BYTES]);
        let groups: Vec<&str> = (0..hex.len())
            .step_by(4)
            .map(|start| &hex[start..start + 4])
            .collect();
        Ok(groups.join("-"))
    }
}

/// The verification code (验证码) printed on the certificate for `data`.
pub fn verification_code(data: &CertificateData) -> Result<String, CertificateError> {
    Ok(CertificateFacts::of(data).code()?)
}

/// Checks the fields before anything is drawn or signed: bad input is an
/// error value, never a garbled certificate.
fn validate(data: &CertificateData) -> Result<(), CertificateError> {
    let number_ok = data
        .number
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if data.number.is_empty() || data.number.len() > MAX_NUMBER_BYTES || !number_ok {
        return Err(CertificateError::InvalidField {
            field: "number",
            reason: "must be 1–64 ASCII letters, digits, '-' or '_'",
        });
    }
    let texts = [
        ("agent_name", Some(&data.agent_name)),
        ("agent_tin", Some(&data.agent_tin)),
        ("distributor_id", Some(&data.distributor_id)),
        ("distributor_name", Some(&data.distributor_name)),
        ("masked_id_number", Some(&data.masked_id_number)),
        ("income_item", Some(&data.income_item)),
        ("tax_period", Some(&data.tax_period)),
        ("withdrawal_id", Some(&data.withdrawal_id)),
        ("references", data.references.as_ref()),
    ];
    for (field, text) in texts {
        let Some(text) = text else { continue };
        if text.trim().is_empty() {
            return Err(CertificateError::InvalidField {
                field,
                reason: "must not be empty",
            });
        }
        if text.chars().count() > MAX_FIELD_CHARS {
            return Err(CertificateError::InvalidField {
                field,
                reason: "is longer than 64 characters",
            });
        }
        if text.chars().any(char::is_control) {
            return Err(CertificateError::InvalidField {
                field,
                reason: "must not contain control characters",
            });
        }
    }
    let w = &data.withholding;
    let amounts = [
        w.gross,
        w.income_to_date,
        w.fee,
        w.basic_deduction,
        w.taxable,
        w.quick_deduction,
        w.tax_to_date,
        w.withheld_before,
        w.withheld_now,
        data.net_paid,
    ];
    if amounts.iter().any(|amount| amount.is_negative()) {
        return Err(CertificateError::Inconsistent("an amount is negative"));
    }
    if data.net_paid > w.net {
        return Err(CertificateError::Inconsistent(
            "net paid exceeds gross minus the tax withheld",
        ));
    }
    Ok(())
}
