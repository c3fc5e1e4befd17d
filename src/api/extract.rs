//! Request extractors with our error shape: a JSON body whose errors name the
//! field, and a bearer token resolved to a [`Principal`].

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::request::Parts;
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::api::error::ApiError;
use crate::app::AppState;
use crate::domain::access::{Principal, Role};
use crate::domain::ids::DistributorId;

/// Marker the money type puts first in its errors, so a bad amount gets its own code.
const MONEY_ERROR_MARKER: &str = "amount must";

/// A JSON body. Malformed JSON → 400 `malformed_json`; a missing, unknown or
/// invalid field → 400 with the field's path; a bad amount → 400 `invalid_amount`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_rejection(rejection.status(), rejection.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn body_rejection(status: axum::http::StatusCode, text: String) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "body_too_large",
            "the request body is larger than allowed",
        )
    } else {
        ApiError::bad_request("unreadable_body", text)
    }
}

/// Deserializes JSON, turning serde's error into one that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let field = (path != ".").then_some(path);
        use serde_json::error::Category;
        let api_error = match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                return ApiError::bad_request(
                    "malformed_json",
                    format!("malformed JSON: {message}"),
                );
            }
            Category::Data if message.starts_with("missing field") => {
                ApiError::bad_request("missing_field", message)
            }
            Category::Data if message.starts_with("unknown field") => {
                ApiError::bad_request("unknown_field", message)
            }
            Category::Data if message.contains(MONEY_ERROR_MARKER) => {
                ApiError::bad_request("invalid_amount", message)
            }
            Category::Data => ApiError::bad_request("invalid_field", message),
        };
        match field {
            Some(field) => api_error.with_field(field),
            None => api_error,
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::bad_request("malformed_json", format!("malformed JSON: {error}"))
    })?;
    Ok(value)
}

/// The caller, authenticated by `Authorization: Bearer <token>`. The pages'
/// session cookie opens no API route: a session is not a bearer token
/// (`web::session`), and a cookie a browser attaches by itself could not
/// then be used against the API by another site.
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let state = AppState::from_ref(state);
        let missing =
            || ApiError::unauthenticated("unauthenticated", "send Authorization: Bearer <token>");
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(missing)?
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| SecretString::from(token.trim().to_owned()))
            .ok_or_else(missing)?;
        let principal = crate::tokens::authenticate(&state.store, &token, state.clock.now())
            .await?
            .map_err(|rejection| {
                crate::monitoring::auth_failure("api", rejection.reason(), client_addr(parts));
                ApiError::unauthenticated("invalid_token", "the token is not valid")
            })?;
        tracing::Span::current().record("token_id", principal.token_id.as_str());
        Ok(Caller(principal))
    }
}

/// The address of the client at the other end of the connection, if the
/// server recorded it (it does; see `server`). Behind a reverse proxy this is
/// the proxy: fenrun trusts no forwarding header.
pub fn client_addr(parts: &Parts) -> Option<std::net::SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0)
}

/// False when the request names an `Origin` other than the `Host` it was
/// sent to (a cross-site form post); true without an `Origin`, which
/// browsers send with every cross-origin POST.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority);
    let host = headers.get(HOST).and_then(|host| host.to_str().ok());
    match (authority, host) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

impl Caller {
    /// Refuses (403) unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if self.0.has_any_role(roles) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Refuses (403) unless the caller has one of `roles` or is a distributor
    /// token for exactly `distributor`.
    pub fn require_self_or(
        &self,
        distributor: &DistributorId,
        roles: &[Role],
    ) -> Result<&Principal, ApiError> {
        if self.0.is_distributor_self(distributor) || self.0.has_any_role(roles) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// A distributor id from the path, validated (400 if malformed).
pub fn distributor_id_from_path(raw: &str) -> Result<DistributorId, ApiError> {
    DistributorId::parse(raw)
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()).with_field("id"))
}
