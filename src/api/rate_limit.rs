//! Per-client rate limits on the routes anyone may call without a token
//! (`POST /login`, `POST /v1/tax/certificates/verify`, and whatever public
//! route comes next, such as sign-in links): the middleware that asks the
//! route family's [`RateLimit`] (`state::rate_limit`) about the client's
//! address and answers 429 with `Retry-After`.
//!
//! The key is the TCP peer's address (`server` records it). Behind a reverse
//! proxy that is the proxy's, so every client shares one budget: see
//! `GuardSettings` for what the deployment must do then.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::state::rate_limit::RateLimit;

/// The client's address as the server recorded it; the unspecified address
/// when there is none (a router called in-process), which then shares one
/// budget rather than escaping the limit.
pub fn client_ip(request_extensions: &axum::http::Extensions) -> IpAddr {
    request_extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// Whole seconds to wait, rounded up and at least 1, for `Retry-After`.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Sets `Retry-After` on a 429 answer.
pub fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_seconds(wait)),
    );
    response
}

/// Middleware for an API route: 429 in the JSON error shape when the
/// client's budget for `limit` is spent.
pub async fn enforce(
    State(limit): State<std::sync::Arc<RateLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let client = client_ip(request.extensions());
    match limit.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::warn!(client = %client, limit = limit.name(), "rate limited");
            let seconds = retry_after_seconds(wait);
            with_retry_after(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests from this address; try again in {seconds} s"),
                )
                .into_response(),
                wait,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(12)), 12);
    }
}
