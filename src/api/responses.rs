//! The error answers many routes share, for their `#[utoipa::path]`
//! `responses(...)`: what the policy extractors ([`crate::api::policy`]) and
//! the body extractors ([`crate::api::extract`]) refuse with. Each is the
//! error shape ([`ErrorBody`](crate::api::error::ErrorBody)) as
//! `application/json`. A route lists its own 400 (with its codes), 404,
//! 409 and 422 beside these.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// 401 and 403: every route behind a token.
pub struct AuthRefusals;

impl IntoResponses for AuthRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            error_response(
                401,
                "unauthenticated (no token) or invalid_token: nothing was read or changed",
            ),
            error_response(
                403,
                "forbidden: this token's role (or distributor) may not do this",
            ),
        ])
    }
}

/// 413 and 415: every route that reads a body.
pub struct BodyRefusals;

impl IntoResponses for BodyRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            error_response(
                413,
                "body_too_large: the body is over the request body limit",
            ),
            error_response(
                415,
                "unsupported_media_type: the body is not sent as the route's content type",
            ),
        ])
    }
}

fn error_response(status: u16, description: &str) -> (String, RefOr<Response>) {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build();
    (status.to_string(), RefOr::T(response))
}
