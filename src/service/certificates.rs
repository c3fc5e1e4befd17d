//! Verifying a withholding certificate someone was handed: the use case
//! behind `POST /v1/tax/certificates/verify`, the /tax page's form and the
//! upload limit `fenrun certificate verify` shares with them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::certificate::Verification;
use crate::domain::ids::CertificateNumber;
use crate::domain::money::Money;
use crate::engine::certificate::verify_upload;
use crate::state::AppState;
use crate::store::StoreError;

/// Largest PDF `verify` accepts; a certificate is about 30 KiB.
pub const MAX_VERIFY_PDF_BYTES: usize = 2 * 1024 * 1024;
/// What `POST /v1/tax/certificates/verify` concluded.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    pub genuine: bool,
    pub number: Option<String>,
    #[schema(value_type = Option<String>)]
    pub gross: Option<Money>,
    #[schema(value_type = Option<String>)]
    pub tax: Option<Money>,
    #[schema(value_type = Option<String>)]
    pub net: Option<Money>,
    pub key_id: Option<String>,
    /// The certificate that corrects this one, if any: it is superseded.
    pub corrected_by: Option<String>,
    /// Why not genuine: a stable code and a sentence.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
}

/// Verifies a (PDF, optional manifest) pair, and says whether a genuine
/// one was corrected since.
pub async fn verify_pair(
    state: &AppState,
    pdf: &[u8],
    manifest: Option<&str>,
) -> Result<VerifyView, StoreError> {
    let verification = verify_upload(&state.store, pdf, manifest).await?;
    Ok(match verification {
        Verification::Genuine {
            number,
            gross,
            tax,
            net,
            key_id,
        } => VerifyView {
            genuine: true,
            corrected_by: match CertificateNumber::parse(number.as_str()) {
                Ok(number) => state
                    .store
                    .correction_of(&number)
                    .await?
                    .map(CertificateNumber::into_string),
                // Not a number fenrun issues, so nothing corrects it.
                Err(_) => None,
            },
            number: Some(number),
            gross: Some(gross),
            tax: Some(tax),
            net: Some(net),
            key_id: Some(key_id),
            reason_code: None,
            reason: None,
        },
        Verification::NotGenuine(rejection) => VerifyView {
            genuine: false,
            number: None,
            gross: None,
            tax: None,
            net: None,
            key_id: None,
            corrected_by: None,
            reason_code: Some(rejection.code().to_owned()),
            reason: Some(rejection.to_string()),
        },
    })
}
