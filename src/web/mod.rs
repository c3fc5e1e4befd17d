//! The HTML pages for people: server-rendered, readable without JavaScript,
//! signed in with a session cookie that holds an API token.
//!
//! This module owns logging in and out, the frame and error pages every page
//! shares, and the guard on every page response (no caching, no framing, no
//! cross-site form posts). [`tax`] is the accountant's page.

pub mod ops;
pub mod tax;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::extract::{Caller, SESSION_COOKIE, same_origin};
use crate::app::AppState;
use crate::declaration::DeclarationError;
use crate::domain::access::{Principal, Role};
use crate::store::StoreError;

/// How long a page session lasts, in seconds: one working day, after which
/// the accountant pastes the token again.
const SESSION_MAX_AGE_SECONDS: u32 = 8 * 60 * 60;
/// Where logging in lands without a usable `next`.
const DEFAULT_PAGE: &str = "/tax";
/// Longest `next` carried through the login form; a longer one is dropped
/// for [`DEFAULT_PAGE`] rather than echoed into a page.
const MAX_NEXT_BYTES: usize = 1024;

/// Small enough to inline on every page; laid out for a 1280×800 screen.
const CSS: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{display:flex;align-items:center;gap:1.5rem;padding:.6rem 1.5rem;background:#1d2330;color:#fff}\
header a{color:#fff}header form{margin-left:auto}\
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 3rem}\
h1{font-size:1.4rem;margin:.6rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}\
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e7ec;text-align:left}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.error{color:#a4161a;font-weight:600}.ok{color:#1b7a3a;font-weight:600}.muted{color:#667085}\
.verdict{font-size:1.3rem}table.facts{width:auto}form.inline{display:inline}\
input,button{font:inherit;padding:.25rem .5rem}button{cursor:pointer}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/tax", get(tax::page))
        .route("/tax/verify", post(tax::verify))
        .route("/ops", get(ops::page))
        .route("/ops/refresh.js", get(ops::refresh_script))
        .route("/ops/jobs/{id}/{action}", post(ops::job))
        .route("/ops/withdrawals/{id}/{decision}", post(ops::review))
        .layer(middleware::from_fn(guard))
}

/// Refuses a state-changing request whose `Origin` is not this host (403),
/// on top of the cookie's SameSite=Strict; marks every page as not to be
/// cached, framed or sniffed, since pages show tax data and hold forms.
async fn guard(request: Request, next: Next) -> Response {
    if !request.method().is_safe() && !same_origin(request.headers()) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This form was sent from another site. 请从本站页面提交。",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    // `Origin: null` with the pages' own form posts, which the check above
    // must refuse. Other sites still get no referrer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page: the frame around `content`, with the navigation and a log-out
/// button unless this is the login page itself.
pub(crate) fn layout(title: &str, signed_in: bool, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fenrun" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    strong { "fenrun" }
                    @if signed_in {
                        a href="/ops" { "运营 Ops" }
                        a href="/tax" { "税务 Tax" }
                        form.inline method="post" action="/logout" {
                            button type="submit" { "退出 Log out" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// A rendered page as a response.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// Why a page could not be shown: a sign-in to do first, or an HTML error
/// page with its status. A 5xx carries no internals (see [`ApiError::internal`]).
#[derive(Debug)]
pub(crate) enum PageError {
    /// Not signed in (or the cookie's token is no longer valid): log in,
    /// then come back to `next`.
    SignIn {
        next: String,
    },
    Status {
        status: StatusCode,
        message: String,
    },
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError::Status {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        PageError::new(error.status, error.message)
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> PageError {
        ApiError::from(error).into()
    }
}

impl From<DeclarationError> for PageError {
    fn from(error: DeclarationError) -> PageError {
        ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                Redirect::to(&format!("/login?next={}", query_escape(&next))).into_response()
            }
            PageError::Status { status, message } => {
                let title = status.canonical_reason().unwrap_or("Error");
                let markup = layout(
                    title,
                    status != StatusCode::UNAUTHORIZED,
                    html! {
                        h1 { (status.as_u16()) " " (title) }
                        p.error { (message) }
                        p { "返回 Back to " a href="/ops" { "the ops console" } " · " a href="/tax" { "the tax page" } }
                    },
                );
                html_response(status, markup)
            }
        }
    }
}

/// The signed-in accountant or admin: without a valid token, a sign-in that
/// returns to `back_to`; with another role, 403.
pub(crate) fn accountant(
    caller: Result<Caller, ApiError>,
    back_to: &str,
) -> Result<Principal, PageError> {
    signed_in_as(
        caller,
        back_to,
        &[Role::Accountant, Role::Admin],
        "This page is for the accountant and admin tokens. 仅限会计与管理员令牌。",
    )
}

/// The signed-in caller with one of `roles`: without a valid token, a
/// sign-in that returns to `back_to`; with another role, 403 with `refusal`.
pub(crate) fn signed_in_as(
    caller: Result<Caller, ApiError>,
    back_to: &str,
    roles: &[Role],
    refusal: &str,
) -> Result<Principal, PageError> {
    match caller {
        Ok(Caller(principal)) if principal.has_any_role(roles) => Ok(principal),
        Ok(_) => Err(PageError::new(StatusCode::FORBIDDEN, refusal.to_owned())),
        Err(error) if error.status == StatusCode::UNAUTHORIZED => Err(PageError::SignIn {
            next: back_to.to_owned(),
        }),
        Err(error) => Err(error.into()),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// value inside a query string.
pub(crate) fn query_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// `next` if it is a path on this site, else [`DEFAULT_PAGE`]. `//host` and
/// `/\host` are other sites to a browser, so neither counts as a path; and
/// only visible ASCII can go into the `Location` header (browsers
/// percent-encode the rest).
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= MAX_NEXT_BYTES
        && next.bytes().all(|b| b.is_ascii_graphic());
    if local { next } else { DEFAULT_PAGE }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(query: Result<Query<LoginQuery>, QueryRejection>) -> Response {
    let next = query
        .ok()
        .and_then(|Query(query)| query.next)
        .unwrap_or_default();
    html_response(StatusCode::OK, login_form(local_path(&next), None))
}

fn login_form(next: &str, message: Option<&str>) -> Markup {
    layout(
        "登录 Log in",
        false,
        html! {
            h1 { "登录 Log in" }
            section {
                @if let Some(message) = message {
                    p.error { (message) }
                }
                form method="post" action="/login" {
                    p {
                        label for="token" { "令牌 API token" }
                        br;
                        input #token type="password" name="token" size="72"
                            autocomplete="current-password" required autofocus;
                    }
                    input type="hidden" name="next" value=(next);
                    button type="submit" { "登录 Log in" }
                }
                p.muted {
                    "Sessions last 8 hours. 会话有效期 8 小时。"
                }
            }
        },
    )
}

/// The login form's fields. The token stays wrapped: it is never logged,
/// and a failed attempt's page does not echo it.
#[derive(Deserialize)]
struct LoginForm {
    token: SecretString,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(form)) = form else {
        return Ok(html_response(
            StatusCode::BAD_REQUEST,
            login_form(DEFAULT_PAGE, Some("Enter a token. 请输入令牌。")),
        ));
    };
    let next = local_path(&form.next);
    let token = form.token.expose_secret().trim();
    // Our tokens are `fenrun_` and hex; anything else could break out of the
    // cookie's value, and is not a token anyway.
    let cookie_safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let principal = if cookie_safe {
        state
            .tokens
            .authenticate(&state.store, &SecretString::from(token.to_owned()))
            .await?
    } else {
        None
    };
    let Some(principal) = principal else {
        return Ok(html_response(
            StatusCode::UNAUTHORIZED,
            login_form(next, Some("That token is not valid. 令牌无效。")),
        ));
    };
    tracing::info!(token_id = %principal.token_id, role = %principal.role, "signed in to the pages");
    let mut cookie = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={SESSION_MAX_AGE_SECONDS}"
    ))
    .map_err(ApiError::internal)?;
    cookie.set_sensitive(true);
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn logout() -> Result<Response, PageError> {
    let expired = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
    ))
    .map_err(ApiError::internal)?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, expired);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_followed_after_login() {
        assert_eq!(local_path("/tax?month=2026-11"), "/tax?month=2026-11");
        for other in [
            "",
            "tax",
            "/tax?month=é",
            "/tax\r\nSet-Cookie: x=1",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
        ] {
            assert_eq!(local_path(other), DEFAULT_PAGE, "{other:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_escape("/tax?month=2026-11&after=C-1"),
            "%2Ftax%3Fmonth%3D2026-11%26after%3DC-1"
        );
    }
}
