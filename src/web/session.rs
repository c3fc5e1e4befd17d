//! Page sessions: signing in with a token makes a random server-side
//! session, and the browser's cookie holds only its id.
//!
//! The id is 256 random bits; the database keeps its SHA-256, the token it
//! belongs to, when it was last used and when it ends. A session is refused
//! once it has been idle longer than `session_idle_timeout_seconds`, once
//! `session_absolute_timeout_seconds` have passed since sign-in, and as soon
//! as its token is revoked or expires (checked on every request, in the
//! database, so another process's revocation counts at once). Logging out
//! deletes it. The id is not a token: `Authorization: Bearer` refuses it,
//! and the API reads no cookie at all.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use chrono::{DateTime, Duration, Utc};

use crate::api::error::ApiError;
use crate::domain::access::Principal;
use crate::domain::digest::sha256_hex;
use crate::service::tokens::TokenError;
use crate::state::AppState;
use crate::store::SessionRecord;

/// The cookie that holds the session id.
pub const SESSION_COOKIE: &str = "fenrun_session";
/// The cookie of earlier versions, which held the API token itself; it is
/// cleared on every sign-in and sign-out and read by nothing.
pub const LEGACY_TOKEN_COOKIE: &str = "fenrun_token";
/// Random bytes in a session id (shown as twice as many hex digits).
const SESSION_ID_BYTES: usize = 32;

/// Why a session cookie was refused; logged and counted, never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// No such session (never was, logged out, or cleaned away).
    Unknown,
    /// Past its absolute end.
    Expired,
    /// Unused for longer than the idle timeout.
    Idle,
    /// Its token was revoked or expired.
    Token(crate::service::tokens::Rejection),
}

impl SessionEnd {
    pub fn reason(self) -> &'static str {
        match self {
            SessionEnd::Unknown => "unknown_session",
            SessionEnd::Expired => "session_expired",
            SessionEnd::Idle => "session_idle",
            SessionEnd::Token(rejection) => match rejection {
                crate::service::tokens::Rejection::Revoked => "revoked",
                crate::service::tokens::Rejection::Expired => "expired",
                crate::service::tokens::Rejection::Malformed
                | crate::service::tokens::Rejection::Unknown => "unknown",
            },
        }
    }
}

/// Whether `record` still signs someone in at `now`, with `idle` the idle
/// timeout: the token's principal, or why not.
pub fn check(
    record: Option<SessionRecord>,
    now: DateTime<Utc>,
    idle: Duration,
) -> Result<Principal, SessionEnd> {
    let record = record.ok_or(SessionEnd::Unknown)?;
    if now >= record.expires_at {
        return Err(SessionEnd::Expired);
    }
    if now >= record.last_seen_at + idle {
        return Err(SessionEnd::Idle);
    }
    crate::service::tokens::check(Some(record.token), now).map_err(SessionEnd::Token)
}

/// A new session id for the cookie; the database gets its hash.
pub struct NewSession {
    pub id: String,
}

/// Starts a session of `principal`'s token at `now`.
pub async fn start(
    state: &AppState,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<NewSession, TokenError> {
    let id = crate::service::tokens::random_hex(SESSION_ID_BYTES)?;
    let settings = &state.settings.guard;
    state
        .store
        .create_session(
            &sha256_hex(id.as_bytes()),
            &principal.token_id,
            now,
            absolute_end(state, now),
            now - seconds(settings.session_idle_timeout_seconds),
        )
        .await?;
    Ok(NewSession { id })
}

/// When a session started at `now` ends, however busy it is.
pub fn absolute_end(state: &AppState, now: DateTime<Utc>) -> DateTime<Utc> {
    now + seconds(state.settings.guard.session_absolute_timeout_seconds)
}

/// Ends the session the request's cookie names, if any.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(id) = session_id(headers) {
        state
            .store
            .delete_session(&sha256_hex(id.as_bytes()))
            .await?;
    }
    Ok(())
}

fn seconds(value: u64) -> Duration {
    // Settings are validated to at most a week.
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1_000))
}

/// The session id in the [`SESSION_COOKIE`], if it has the shape of one
/// (64 lowercase hex digits); anything else is not looked up.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| {
            value.len() == 2 * SESSION_ID_BYTES
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(str::to_owned)
}

/// The person signed in to a page, by the session cookie. Rejected with 401
/// when there is no live session (the pages turn that into a sign-in).
pub struct PageCaller(pub Principal);

impl<S> FromRequestParts<S> for PageCaller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PageCaller, ApiError> {
        let state = AppState::from_ref(state);
        let signed_out = || ApiError::unauthenticated("unauthenticated", "sign in first");
        let Some(id) = session_id(&parts.headers) else {
            return Err(signed_out());
        };
        let hash = sha256_hex(id.as_bytes());
        let now = state.clock.now();
        let idle = seconds(state.settings.guard.session_idle_timeout_seconds);
        let record = state.store.session_by_hash(&hash).await?;
        let principal = check(record, now, idle).map_err(|end| {
            crate::telemetry::metrics::auth_failure(
                "page",
                end.reason(),
                crate::api::extract::client_addr(parts),
            );
            signed_out()
        })?;
        state.store.touch_session(&hash, now).await?;
        tracing::Span::current().record("token_id", principal.token_id.as_str());
        Ok(PageCaller(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Role;
    use crate::store::TokenRecord;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn session(last_seen: &str, expires: &str, revoked: bool) -> SessionRecord {
        SessionRecord {
            token: TokenRecord {
                id: "tok_1".to_owned(),
                role: Role::Accountant,
                distributor_id: None,
                revoked,
                expires_at: None,
            },
            last_seen_at: at(last_seen),
            expires_at: at(expires),
        }
    }

    #[test]
    fn a_session_ends_when_idle_at_its_absolute_end_or_with_its_token() {
        let idle = Duration::minutes(30);
        let now = at("2026-12-03T12:00:00Z");
        let live = session("2026-12-03T11:31:00Z", "2026-12-03T20:00:00Z", false);
        assert_eq!(check(Some(live), now, idle).unwrap().token_id, "tok_1");
        let idle_session = session("2026-12-03T11:30:00Z", "2026-12-03T20:00:00Z", false);
        assert_eq!(check(Some(idle_session), now, idle), Err(SessionEnd::Idle));
        let over = session("2026-12-03T11:59:00Z", "2026-12-03T12:00:00Z", false);
        assert_eq!(check(Some(over), now, idle), Err(SessionEnd::Expired));
        let revoked = session("2026-12-03T11:59:00Z", "2026-12-03T20:00:00Z", true);
        assert_eq!(
            check(Some(revoked), now, idle),
            Err(SessionEnd::Token(
                crate::service::tokens::Rejection::Revoked
            ))
        );
        assert_eq!(check(None, now, idle), Err(SessionEnd::Unknown));
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let id = "ab".repeat(32);
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("other=1; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(session_id(&headers), Some(id));
        for value in [
            String::new(),
            "ab".repeat(31),
            "AB".repeat(32),
            format!("fenrun_{}", "0".repeat(64)),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, format!("{SESSION_COOKIE}={value}").parse().unwrap());
            assert_eq!(session_id(&headers), None, "{value:?}");
        }
    }
}
