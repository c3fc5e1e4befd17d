//! `/v1/tax/certificates` and `/v1/tax/keys` (SPEC §2.6): listing and
//! downloading withholding certificates (one PDF, its manifest, a month's
//! zip), corrections, the published signing keys, and verification of a
//! certificate someone hands us.

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, MultipartBody, Path, Query, multipart_error};
use crate::api::policy::{AccountantOrAdmin, Allowed, SelfOrAccountantAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::certificate::MAX_NUMBER_BYTES;
use crate::certificate::archive::{keys_document, stream_month_zip};
use crate::domain::access::Role;
use crate::domain::ids::{CertificateNumber, DistributorId};
use crate::domain::money::Money;
use crate::domain::tax::Month;
use crate::engine::certificate::IssueError;
use crate::service::certificates::{MAX_VERIFY_PDF_BYTES, VerifyView, verify_pair};
use crate::state::AppState;
use crate::store::{CertificateRecord, MAX_PAGE};

/// Largest verification upload: the PDF, its manifest (a few KiB) and the
/// multipart framing. Larger bodies are cut off and answered 413
/// `body_too_large`; the global `request_body_limit_bytes` (1 MiB by default)
/// would refuse a legitimate 2 MiB PDF before the handler could judge it.
pub const VERIFY_BODY_LIMIT_BYTES: usize = MAX_VERIFY_PDF_BYTES + 256 * 1024;
/// Longest correction reason, in characters.
const MAX_REASON_CHARS: usize = 500;

impl From<IssueError> for ApiError {
    fn from(error: IssueError) -> ApiError {
        match error {
            IssueError::Store(store) => store.into(),
            IssueError::NotFound(_) => ApiError::not_found("certificate"),
            IssueError::AlreadyCorrected { .. } => {
                ApiError::unprocessable("certificate_already_corrected", error.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

/// A certificate as listed (its files are at `pdf_url` and `manifest_url`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    pub number: String,
    pub withdrawal_id: String,
    pub distributor_id: String,
    /// `YYYY-MM`.
    pub tax_month: String,
    #[schema(value_type = String, example = "3000.00")]
    pub gross: Money,
    #[schema(value_type = String, example = "440.00")]
    pub tax: Money,
    #[schema(value_type = String, example = "2560.00")]
    pub net: Money,
    pub key_id: String,
    pub issued_at: DateTime<Utc>,
    /// The certificate this one corrects.
    pub replaces: Option<String>,
    pub reason: Option<String>,
    pub pdf_url: String,
    pub manifest_url: String,
}

impl From<CertificateRecord> for CertificateView {
    fn from(record: CertificateRecord) -> CertificateView {
        CertificateView {
            pdf_url: format!("/v1/tax/certificates/{}.pdf", record.number),
            manifest_url: format!("/v1/tax/certificates/{}.json", record.number),
            number: record.number.into_string(),
            withdrawal_id: record.withdrawal_id.into_string(),
            distributor_id: record.distributor_id.to_string(),
            tax_month: record.tax_month,
            gross: record.gross,
            tax: record.tax,
            net: record.net,
            key_id: record.key_id,
            issued_at: record.issued_at,
            replaces: record.replaces.map(CertificateNumber::into_string),
            reason: record.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificatePage {
    pub items: Vec<CertificateView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `YYYY-MM`, the tax month (税款所属期).
    pub month: Option<String>,
    /// One distributor's; a distributor token sees only its own.
    pub distributor_id: Option<String>,
    /// Certificates whose number sorts after this one.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub(crate) fn parse_month(text: Option<&str>, field: &str) -> Result<Month, ApiError> {
    let text = text.ok_or_else(|| {
        ApiError::bad_request("invalid_month", "give the month as YYYY-MM").with_field(field)
    })?;
    Month::parse(text).map_err(|error| {
        ApiError::bad_request("invalid_month", error.to_string()).with_field(field)
    })
}

#[utoipa::path(
    get, path = "/v1/tax/certificates", tag = "tax", params(ListQuery),
    responses(
        (status = 200, description = "the month's certificates by number", body = CertificatePage),
        (status = 400, description = "invalid_month, invalid_id, invalid_field (a parameter of the wrong type)", body = ErrorBody),
        AuthRefusals,
        (status = 403, description = "forbidden: not a role that reads certificates, or another distributor's certificates", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Allowed<SelfOrAccountantAdmin>,
    Query(query): Query<ListQuery>,
) -> Result<Json<CertificatePage>, ApiError> {
    let month = parse_month(query.month.as_deref(), "month")?;
    let requested = query
        .distributor_id
        .as_deref()
        .map(|raw| {
            DistributorId::parse(raw).map_err(|error| {
                ApiError::bad_request("invalid_id", error.to_string()).with_field("distributor_id")
            })
        })
        .transpose()?;
    let distributor = if caller.role == Role::Distributor {
        let own = caller.distributor.clone().ok_or_else(ApiError::forbidden)?;
        if requested
            .as_ref()
            .is_some_and(|requested| *requested != own)
        {
            return Err(ApiError::forbidden());
        }
        Some(own)
    } else {
        requested
    };
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let records = state
        .store
        .certificates(month, distributor.as_ref(), query.after.as_deref(), limit)
        .await?;
    let next_after = (records.len() as i64 == limit)
        .then(|| records.last().map(|record| record.number.to_string()))
        .flatten();
    Ok(Json(CertificatePage {
        items: records.into_iter().map(CertificateView::from).collect(),
        next_after,
    }))
}

#[utoipa::path(
    get, path = "/v1/tax/certificates/{file}", tag = "tax",
    params(("file" = String, Path, description = "`{number}.pdf`, `{number}.json` (the signed manifest) or `{YYYY-MM}.zip` (every certificate of the month, streamed)")),
    responses(
        (status = 200, description = "the file", content(
            (Vec<u8> = "application/pdf"),
            (Object = "application/json"),
            (Vec<u8> = "application/zip"),
        )),
        (status = 400, description = "invalid_file, invalid_month, invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such certificate (or another distributor's)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn file(
    State(state): State<AppState>,
    caller: Allowed<SelfOrAccountantAdmin>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_file",
            "ask for {number}.pdf, {number}.json or {YYYY-MM}.zip",
        )
        .with_field("file")
    };
    let (stem, extension) = file.rsplit_once('.').ok_or_else(invalid)?;
    if extension == "zip" {
        caller.without_own()?;
        let month = parse_month(Some(stem), "file")?;
        let chunks = stream_month_zip(state.store.clone(), month);
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(chunks));
        return Ok(attachment(
            body,
            "application/zip",
            &format!("certificates-{month}.zip"),
        ));
    }
    let number_ok = !stem.is_empty()
        && stem.len() <= MAX_NUMBER_BYTES
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !number_ok || !matches!(extension, "pdf" | "json") {
        return Err(invalid());
    }
    // A stem that is no certificate number names no certificate.
    let number = CertificateNumber::parse(stem).map_err(|_| ApiError::not_found("certificate"))?;
    let (record, pdf) = state
        .store
        .certificate(&number)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate"))?;
    // Someone else's certificate is "not found" to a distributor: numbers
    // are not to be probed.
    if caller.is_stranger_to(&record.distributor_id) {
        return Err(ApiError::not_found("certificate"));
    }
    caller.for_distributor(&record.distributor_id)?;
    Ok(if extension == "pdf" {
        attachment(Body::from(pdf), "application/pdf", &format!("{stem}.pdf"))
    } else {
        attachment(
            Body::from(record.manifest),
            "application/json",
            &format!("{stem}.json"),
        )
    })
}

fn attachment(body: Body, content_type: &'static str, file_name: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionBody {
    /// Why the certificate is corrected (e.g. the name on file was wrong).
    pub reason: String,
}

#[utoipa::path(
    post, path = "/v1/tax/certificates/{number}/corrections", tag = "tax",
    params(("number" = String, Path)),
    request_body = CorrectionBody,
    responses(
        (status = 201, description = "the correction, under a new number that names the old", body = CertificateView),
        (status = 400, description = "invalid_path, malformed_json, missing_field, unknown_field, invalid_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, body = ErrorBody),
        (status = 422, description = "certificate_already_corrected: correct the newest one; invalid_reason", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn correct(
    State(state): State<AppState>,
    caller: Allowed<AccountantOrAdmin>,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<CorrectionBody>,
) -> Result<(StatusCode, Json<CertificateView>), ApiError> {
    let reason = body.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "give a reason of 1–500 characters on one line",
        )
        .with_field("reason"));
    }
    let principal = &caller.principal;
    // A path that is no certificate number names no certificate.
    let number = CertificateNumber::parse(number)
        .map_err(|not| ApiError::from(IssueError::NotFound(not.text)))?;
    let record = state
        .certificates
        .correct(
            &number,
            reason,
            &crate::service::audit::Actor::of(principal),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

#[utoipa::path(
    get, path = "/v1/tax/keys", tag = "tax",
    responses((status = 200, description = "every Ed25519 key certificates were ever signed with: key id, raw public key (base64url) and JWK (RFC 8037)", body = Object)),
)]
pub async fn keys(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let keys = state.store.certificate_keys().await?;
    let mut document = keys_document(&keys);
    document["current_key_id"] = serde_json::Value::from(state.certificates.key_id());
    Ok(Json(document))
}

/// The parts of a verification upload.
pub(crate) struct Upload {
    pub pdf: Vec<u8>,
    pub manifest: Option<String>,
}

/// Reads `pdf` (required) and `manifest` (optional) from a multipart form;
/// an empty `manifest` part (a form's unused file input) counts as absent.
pub(crate) async fn read_upload(mut form: Multipart) -> Result<Upload, ApiError> {
    let mut pdf = None;
    let mut manifest = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        match name.as_str() {
            "pdf" => {
                if bytes.len() > MAX_VERIFY_PDF_BYTES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "pdf_too_large",
                        "a certificate PDF is at most 2 MiB",
                    )
                    .with_field("pdf"));
                }
                pdf = Some(bytes.to_vec());
            }
            "manifest" if bytes.is_empty() => {}
            "manifest" => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request("invalid_manifest", "the manifest is not UTF-8 text")
                        .with_field("manifest")
                })?;
                manifest = Some(text);
            }
            other => {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!("unknown form field {other:?}: send pdf and, optionally, manifest"),
                )
                .with_field(other.to_owned()));
            }
        }
    }
    let pdf = pdf.filter(|pdf| !pdf.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_pdf",
            "send the certificate PDF as the form field pdf",
        )
        .with_field("pdf")
    })?;
    Ok(Upload { pdf, manifest })
}

#[utoipa::path(
    post, path = "/v1/tax/certificates/verify", tag = "tax",
    request_body(content_type = "multipart/form-data", description = "`pdf`: the certificate PDF; `manifest` (optional): its `{number}.json`, else the one fenrun stored for this PDF"),
    responses(
        (status = 200, description = "genuine (with number and amounts) or not (with the reason)", body = VerifyView),
        (status = 400, description = "missing_pdf, malformed_upload, unknown_field, invalid_manifest", body = ErrorBody),
        (status = 408, description = "request_timeout: the upload did not arrive in time", body = ErrorBody),
        BodyRefusals,
        (status = 413, description = "pdf_too_large (the PDF is over 2 MiB), body_too_large (the upload is over 2.25 MiB)", body = ErrorBody),
        (status = 429, description = "rate_limited: too many verifications from this address; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds until the next request is allowed"))),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    MultipartBody(form): MultipartBody,
) -> Result<Json<VerifyView>, ApiError> {
    let upload = read_upload(form).await?;
    Ok(Json(
        verify_pair(&state, &upload.pdf, upload.manifest.as_deref()).await?,
    ))
}
