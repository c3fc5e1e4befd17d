//! The HTML pages for people: server-rendered, readable without JavaScript,
//! signed in with a server-side session ([`session`]) whose id is the cookie.
//!
//! This module owns logging in and out, the frame and error pages every page
//! shares, and the guard on every page response (no caching, no framing, no
//! cross-site form posts). [`tax`] is the accountant's page, [`ops`] the
//! console. The files the pages link to (declarations, certificates, a
//! withdrawal's or an order's JSON) are served under the pages' own paths
//! with the session, by the API's handlers: the API itself takes only
//! bearer tokens.

pub mod me;
pub mod ops;
pub mod session;
pub mod tax;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::extract::same_origin;
use crate::api::policy::{Allowed, Policy};
use crate::domain::access::{Principal, Role};
use crate::engine::declaration::DeclarationError;
use crate::state::AppState;
use crate::store::StoreError;
use session::{LEGACY_TOKEN_COOKIE, PageCaller, SESSION_COOKIE};

/// Every role but the distributor's: who may use the console's and tax
/// page's routes at all.
const STAFF_ROLES: [Role; 4] = [Role::Admin, Role::Ingest, Role::Ops, Role::Accountant];
/// Where logging in lands without a usable `next`.
const DEFAULT_PAGE: &str = "/tax";
/// Longest `next` carried through the login form; a longer one is dropped
/// for [`DEFAULT_PAGE`] rather than echoed into a page.
const MAX_NEXT_BYTES: usize = 1024;

/// Small enough to inline on every page; laid out for a 1280×800 screen
/// (`.scroll` lets a wide table scroll sideways on a phone).
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
input,button{font:inherit;padding:.25rem .5rem}button{cursor:pointer}\
.scroll{overflow-x:auto}.mismatch input[type=text]{max-width:100%;box-sizing:border-box}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/tax", get(tax::page))
        .route(
            "/tax/verify",
            // The upload's own limit, as on the API's verify route.
            post(tax::verify).layer(axum::extract::DefaultBodyLimit::max(
                crate::api::certificates::VERIFY_BODY_LIMIT_BYTES,
            )),
        )
        .route("/tax/declarations/{file}", get(declaration_file))
        .route("/tax/certificates/{file}", get(certificate_file))
        .route("/me", get(me::page))
        .route("/me/open", get(me::open_link))
        .route("/me/withdrawals", post(me::withdraw))
        .route("/me/payout-accounts", post(me::add_account))
        .route("/me/certificates/{file}", get(me::certificate))
        .route("/ops", get(ops::page))
        .route("/ops/refresh.js", get(ops::refresh_script))
        .route("/ops/queues.json", get(queues_json))
        .route("/ops/withdrawals/{id}", get(ops::timeline::withdrawal_page))
        .route("/ops/orders/{id}", get(ops::timeline::order_page))
        .route("/ops/jobs/{id}/{action}", post(ops::job))
        .route("/ops/withdrawals/{id}/{decision}", post(ops::review))
        .route("/ops/reconciliation/run", post(ops::reconciliation::run))
        .route(
            "/ops/reconciliation/mismatches/{id}/resolve",
            post(ops::reconciliation::resolve_mismatch),
        )
        .route(
            "/ops/webhooks/deliveries/{id}/replay",
            post(ops::webhooks::replay_one),
        )
        .route(
            "/ops/webhooks/endpoints/{id}/replay",
            post(ops::webhooks::replay_range),
        )
        .layer(middleware::from_fn(guard))
}

/// Refuses a state-changing request whose `Origin` is not this host (403),
/// on top of the cookie's SameSite=Strict; marks every page as not to be
/// framed, since pages show tax data and hold forms. (Not to be cached or
/// sniffed: the API router's layers mark every answer so, pages included.)
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
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
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
    let navigation = html! {
        @if signed_in {
            a href="/ops" { "运营 Ops" }
            a href="/tax" { "税务 Tax" }
            (logout_button())
        }
    };
    frame(title, "", navigation, content)
}

/// The log-out button of a page's header.
pub(crate) fn logout_button() -> Markup {
    html! {
        form.inline method="post" action="/logout" {
            button type="submit" { "退出 Log out" }
        }
    }
}

/// The HTML around every page: the shared style plus `extra_css`, a header
/// holding `navigation`, and `content`.
pub(crate) fn frame(title: &str, extra_css: &str, navigation: Markup, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fenrun" }
                style { (PreEscaped(CSS)) (PreEscaped(extra_css)) }
            }
            body {
                header {
                    strong { "fenrun" }
                    (navigation)
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

impl From<crate::service::ops::OpsError> for PageError {
    fn from(error: crate::service::ops::OpsError) -> PageError {
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
    caller: Result<PageCaller, ApiError>,
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
    caller: Result<PageCaller, ApiError>,
    back_to: &str,
    roles: &[Role],
    refusal: &str,
) -> Result<Principal, PageError> {
    match caller {
        Ok(PageCaller(principal)) if principal.has_any_role(roles) => Ok(principal),
        Ok(_) => Err(PageError::new(StatusCode::FORBIDDEN, refusal.to_owned())),
        Err(error) if error.status == StatusCode::UNAUTHORIZED => Err(PageError::SignIn {
            next: back_to.to_owned(),
        }),
        Err(error) => Err(error.into()),
    }
}

/// The signed-in staff caller, whatever the staff role (the API handler a
/// file route delegates to decides what the role may see); without a
/// session, a sign-in that returns to `back_to`. A distributor's session
/// (from a sign-in link) gets 403: its page is `/me`, and the console's
/// and tax page's routes are not for it.
fn signed_in<P: Policy>(
    caller: Result<PageCaller, ApiError>,
    back_to: &str,
) -> Result<Allowed<P>, PageError> {
    let principal = signed_in_as(
        caller,
        back_to,
        &STAFF_ROLES,
        "This page is for staff tokens; a distributor's page is /me. 仅限员工令牌。",
    )?;
    Allowed::admit(principal).map_err(PageError::from)
}

/// The page's path parameters as the API handler it calls takes them.
fn api_path<T>(Path(value): Path<T>) -> crate::api::extract::Path<T> {
    crate::api::extract::Path(value)
}

/// The page's query as the API handler it calls takes it.
fn api_query<T>(Query(value): Query<T>) -> crate::api::extract::Query<T> {
    crate::api::extract::Query(value)
}

/// The path and query of a request, to come back to after signing in.
fn here(uri: &axum::http::Uri) -> &str {
    uri.path_and_query().map_or("/", |path| path.as_str())
}

/// `GET /tax/declarations/{file}`: `GET /v1/tax/declarations/{file}` for the
/// signed-in page.
async fn declaration_file(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: axum::http::Uri,
    file: Path<String>,
    query: Query<crate::api::tax::DeclarationQuery>,
) -> Result<Response, PageError> {
    let caller = signed_in(caller, here(&uri))?;
    Ok(
        crate::api::tax::declaration(State(state), caller, api_path(file), api_query(query))
            .await
            .into_response(),
    )
}

/// `GET /tax/certificates/{file}`: `GET /v1/tax/certificates/{file}` for
/// the signed-in page.
async fn certificate_file(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: axum::http::Uri,
    file: Path<String>,
) -> Result<Response, PageError> {
    let caller = signed_in(caller, here(&uri))?;
    Ok(
        crate::api::certificates::file(State(state), caller, api_path(file))
            .await
            .into_response(),
    )
}

/// `GET /ops/queues.json`: `GET /v1/ops/queues` for the signed-in console.
async fn queues_json(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: axum::http::Uri,
) -> Result<Response, PageError> {
    let _caller: Allowed<crate::api::policy::OpsOrAdmin> = signed_in(caller, here(&uri))?;
    Ok(match crate::service::ops::queues_view(&state).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    })
}

/// `GET /ops/withdrawals/{id}.json` (see [`ops::timeline`]):
/// `GET /v1/withdrawals/{id}` for the signed-in console.
async fn withdrawal_json(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: axum::http::Uri,
    id: Path<String>,
) -> Result<Response, PageError> {
    let caller = signed_in(caller, here(&uri))?;
    Ok(
        crate::api::withdrawals::get(State(state), caller, api_path(id))
            .await
            .into_response(),
    )
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

async fn login_page(
    State(state): State<AppState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = query
        .ok()
        .and_then(|Query(query)| query.next)
        .unwrap_or_default();
    html_response(StatusCode::OK, login_form(&state, local_path(&next), None))
}

fn login_form(state: &AppState, next: &str, message: Option<&str>) -> Markup {
    let guard = &state.settings.guard;
    let idle_minutes = guard.session_idle_timeout_seconds.div_ceil(60);
    let hours = guard.session_absolute_timeout_seconds as f64 / 3600.0;
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
                    "Sessions end after " (idle_minutes) " minutes without activity, and after "
                    (format!("{hours:.1}")) " hours at most. 会话闲置 " (idle_minutes)
                    " 分钟或满 " (format!("{hours:.1}")) " 小时后失效。"
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
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    if let Err(wait) = state.limits.login.check(client.ip()) {
        tracing::warn!(client = %client.ip(), limit = "login", "rate limited");
        let seconds = crate::api::rate_limit::retry_after_seconds(wait);
        let message = format!(
            "Too many sign-in attempts from this address; try again in {seconds} s. 登录尝试过多，请 {seconds} 秒后再试。"
        );
        return Ok(crate::api::rate_limit::with_retry_after(
            html_response(
                StatusCode::TOO_MANY_REQUESTS,
                login_form(&state, DEFAULT_PAGE, Some(&message)),
            ),
            wait,
        ));
    }
    let Ok(Form(form)) = form else {
        return Ok(html_response(
            StatusCode::BAD_REQUEST,
            login_form(&state, DEFAULT_PAGE, Some("Enter a token. 请输入令牌。")),
        ));
    };
    let next = local_path(&form.next);
    let token = SecretString::from(form.token.expose_secret().trim().to_owned());
    let now = state.clock.now();
    let principal = match crate::service::tokens::authenticate(&state.store, &token, now).await? {
        Ok(principal) => principal,
        Err(rejection) => {
            crate::telemetry::metrics::auth_failure("login", rejection.reason(), Some(client));
            return Ok(html_response(
                StatusCode::UNAUTHORIZED,
                login_form(&state, next, Some("That token is not valid. 令牌无效。")),
            ));
        }
    };
    let session = session::start(&state, &principal, now)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(token_id = %principal.token_id, role = %principal.role, "signed in to the pages");
    signed_in_response(&session, next)
}

/// A redirect to `next` that gives the browser `session`'s cookie (and
/// drops the cookie of earlier versions).
pub(crate) fn signed_in_response(
    session: &session::NewSession,
    next: &str,
) -> Result<Response, PageError> {
    // A session cookie (no Max-Age or Expires): the browser forgets it when
    // it closes; the server ends it earlier when idle or at its absolute end.
    let mut cookie = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/",
        session.id
    ))
    .map_err(ApiError::internal)?;
    cookie.set_sensitive(true);
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .append(header::SET_COOKIE, expired_cookie(LEGACY_TOKEN_COOKIE)?);
    Ok(response)
}

/// A `Set-Cookie` that makes the browser drop cookie `name`.
fn expired_cookie(name: &str) -> Result<HeaderValue, PageError> {
    Ok(HeaderValue::from_str(&format!(
        "{name}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
    ))
    .map_err(ApiError::internal)?)
}

/// `POST /logout`: ends the session on the server, then in the browser.
async fn logout(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    session::end(&state, &headers).await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, expired_cookie(SESSION_COOKIE)?);
    response
        .headers_mut()
        .append(header::SET_COOKIE, expired_cookie(LEGACY_TOKEN_COOKIE)?);
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
