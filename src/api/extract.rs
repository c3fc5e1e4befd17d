//! Request extractors with our error shape: a JSON body whose errors name the
//! field, and a bearer token resolved to a [`Principal`].
//!
//! Handlers take their path, query and body only through the extractors
//! here ([`Path`], [`Query`], [`JsonBody`] and its kin, [`MultipartBody`],
//! [`RawBody`]), never axum's own, whose refusals are plain text: every
//! refusal is `{"error": {"code", "message", "field"}}` with a stable code.
//! A handler lists the caller first (see [`crate::api::policy`]) and the
//! body last, so who may not call a route learns nothing of its schema.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::api::error::ApiError;
use crate::domain::access::Principal;
use crate::domain::ids::DistributorId;
use crate::state::AppState;

/// Marker the money type puts first in its errors, so a bad amount gets its own code.
// Matched as text because serde_json keeps only the message of a custom error
// (`Error::custom` formats it into a String): no type from Money's
// deserializer survives to here, and serde_path_to_error only adds the path.
const MONEY_ERROR_MARKER: &str = "amount must";

/// A JSON body. Without `Content-Type: application/json` → 415
/// `unsupported_media_type`; past the body limit → 413 `body_too_large`;
/// malformed JSON → 400 `malformed_json`; a missing, unknown or invalid
/// field → 400 with the field's path; a bad amount → 400 `invalid_amount`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = json_bytes(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A [`JsonBody`] with the bytes it was parsed from, for a route whose
/// idempotency fingerprint is the body as sent.
pub struct JsonBodyBytes<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<S, T> FromRequest<S> for JsonBodyBytes<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBodyBytes<T>, ApiError> {
        let bytes = json_bytes(request, state).await?;
        let value = parse_json(&bytes)?;
        Ok(JsonBodyBytes { value, bytes })
    }
}

/// A JSON body a route may go without: an empty (or all-blank) body is
/// `None` whatever its `Content-Type`; any other is a [`JsonBody`].
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<OptionalJsonBody<T>, ApiError> {
        let is_json = has_media_type(request.headers(), "application/json");
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if !is_json {
            return Err(unsupported_media_type("application/json"));
        }
        parse_json(&bytes).map(|value| OptionalJsonBody(Some(value)))
    }
}

/// A body taken as it is (a gateway's signed callback, whose signature
/// covers the exact bytes); only the body limit applies (413).
pub struct RawBody(pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<RawBody, ApiError> {
        read_body(request, state).await.map(RawBody)
    }
}

/// A `multipart/form-data` body (415 for any other type; 400
/// `malformed_upload` without a boundary). Errors while reading its parts
/// are the handler's: see [`multipart_error`].
pub struct MultipartBody(pub axum::extract::Multipart);

impl<S> FromRequest<S> for MultipartBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<MultipartBody, ApiError> {
        if !has_media_type(request.headers(), "multipart/form-data") {
            return Err(unsupported_media_type("multipart/form-data"));
        }
        axum::extract::Multipart::from_request(request, state)
            .await
            .map(MultipartBody)
            .map_err(|rejection| {
                ApiError::bad_request(
                    "malformed_upload",
                    format!("malformed upload: {}", rejection.body_text()),
                )
            })
    }
}

/// A part of a multipart body that could not be read: 413 past the body
/// limit, else 400 `malformed_upload`.
pub fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large()
    } else {
        ApiError::bad_request(
            "malformed_upload",
            format!("malformed upload: {}", error.body_text()),
        )
    }
}

/// Whether `Content-Type` names `media_type` (parameters such as `charset`
/// aside; case does not matter).
fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

fn unsupported_media_type(media_type: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("send the body as {media_type}"),
    )
    .with_field("Content-Type")
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than allowed",
    )
}

/// The bytes of a body that must be JSON (415 otherwise).
async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    if !has_media_type(request.headers(), "application/json") {
        return Err(unsupported_media_type("application/json"));
    }
    read_body(request, state).await
}

/// The whole body, within the router's body limit (413 past it).
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                body_too_large()
            } else {
                ApiError::bad_request("unreadable_body", rejection.body_text())
            }
        })
}

/// A path parameter (or a tuple of them). One that is not valid UTF-8 once
/// percent-decoded, or not of its type, is 400 `invalid_path` naming it.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(error) => {
            let field = match error.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            };
            let refused = ApiError::bad_request("invalid_path", error.kind().to_string());
            match field {
                Some(field) => refused.with_field(field),
                None => refused,
            }
        }
        // A handler asking for parameters its route does not have: our bug.
        other => ApiError::internal(other.body_text()),
    }
}

/// A query string. A missing, unknown or mistyped parameter is 400 with a
/// stable code (`missing_field`, `unknown_field`, `invalid_field`) and the
/// parameter's name.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Query<T>, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Deserializes a query string as axum's `Query` would, with errors that
/// name the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let code = if message.starts_with("missing field") {
            "missing_field"
        } else if message.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_field"
        };
        // serde names a missing field only in its message: `missing field `state``.
        let field = match message.split('`').nth(1) {
            Some(name) if code != "invalid_field" => Some(name.to_owned()),
            _ => (path != ".").then_some(path),
        };
        let refused = ApiError::bad_request(code, format!("query string: {message}"));
        match field {
            Some(field) => refused.with_field(field),
            None => refused,
        }
    })
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
        let principal =
            crate::service::tokens::authenticate(&state.store, &token, state.clock.now())
                .await?
                .map_err(|rejection| {
                    crate::telemetry::metrics::auth_failure(
                        "api",
                        rejection.reason(),
                        client_addr(parts),
                    );
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

/// A distributor id from the path, validated (400 if malformed).
pub fn distributor_id_from_path(raw: &str) -> Result<DistributorId, ApiError> {
    DistributorId::parse(raw)
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()).with_field("id"))
}

#[cfg(test)]
mod tests {
    use axum::http::header::CONTENT_TYPE;
    use axum::http::{HeaderMap, HeaderValue};
    use serde::Deserialize;

    use super::{has_media_type, parse_query};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Page {
        state: String,
        limit: Option<i64>,
    }

    #[test]
    fn a_query_error_names_the_parameter_and_the_kind_of_fault() {
        let page: Page = parse_query("state=paid&limit=5").unwrap();
        assert_eq!((page.state.as_str(), page.limit), ("paid", Some(5)));
        let error = parse_query::<Page>("state=paid&limit=five").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("invalid_field", Some("limit"))
        );
        let error = parse_query::<Page>("limit=5").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("missing_field", Some("state"))
        );
        let error = parse_query::<Page>("state=paid&colour=red").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("unknown_field", Some("colour"))
        );
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_media_type_matches_whatever_its_parameters_and_case() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        assert!(has_media_type(
            &with("application/json"),
            "application/json"
        ));
        assert!(has_media_type(
            &with("Application/JSON ; charset=utf-8"),
            "application/json"
        ));
        assert!(!has_media_type(
            &with("application/jsonp"),
            "application/json"
        ));
        assert!(!has_media_type(&with("text/plain"), "application/json"));
        assert!(!has_media_type(&HeaderMap::new(), "application/json"));
    }
}
