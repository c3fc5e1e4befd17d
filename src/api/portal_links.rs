//! `POST /v1/distributors/{id}/portal-links`: the shop asks for a short-lived,
//! single-use sign-in URL to the distributor's mobile page (`/me`) and opens
//! it in its app (see [`crate::service::portal_links`]).
//!
//! The URL is built from `public_url` when it is set, else from the request's
//! own host (`https` when a proxy says `X-Forwarded-Proto: https`), so it
//! points where the shop reached fenrun.

use axum::Json;
use axum::extract::State;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::policy::{IngestOnly, Owner};
use crate::api::responses::AuthRefusals;
use crate::service::portal_links::issue;
use crate::service::tokens::TokenError;
use crate::state::AppState;
use crate::store::StoreError;

/// Longest `Host` a link is built on (a DNS name and a port).
const MAX_HOST_BYTES: usize = 260;

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLinkView {
    /// Opens the distributor's page once, within five minutes; the secret in
    /// it is shown only here.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Where the link points: `public_url`, else this request's scheme and host.
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(public) = &state.settings.public_url {
        return Ok(public.trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        // A host name, an IPv4 or bracketed IPv6 address, and a port: nothing
        // that could end the authority and steer the URL elsewhere.
        .filter(|host| {
            !host.is_empty()
                && host.len() <= MAX_HOST_BYTES
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_host",
                "send a Host header naming this server, or set public_url",
            )
            .with_field("Host")
        })?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|proto| proto.to_str().ok())
    {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}

#[utoipa::path(
    post, path = "/v1/distributors/{id}/portal-links", tag = "distributors",
    params(("id" = String, Path)),
    responses(
        (status = 201, description = "a sign-in URL to the distributor's page, single use, valid for five minutes", body = PortalLinkView),
        (status = 400, description = "invalid_id (path), invalid_host (no usable Host header and no public_url)", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "not_found: no such distributor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Owner {
        distributor,
        principal,
        ..
    }: Owner<IngestOnly>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<PortalLinkView>), ApiError> {
    let base = base_url(&state, &headers)?;
    let link = match issue(
        &state.store,
        &distributor,
        &principal.token_id,
        state.clock.now(),
    )
    .await
    {
        Ok(link) => link,
        Err(TokenError::Store(StoreError::NotFound { .. })) => {
            return Err(ApiError::not_found("distributor"));
        }
        Err(TokenError::Store(error)) => return Err(error.into()),
        Err(error) => return Err(ApiError::internal(error)),
    };
    // The secret is not logged: the URL goes to the caller only.
    tracing::info!(distributor_id = %distributor, expires_at = %link.expires_at, "portal link issued");
    Ok((
        StatusCode::CREATED,
        Json(PortalLinkView {
            url: link.url(&base),
            expires_at: link.expires_at,
        }),
    ))
}
