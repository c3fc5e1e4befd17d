//! `/me`, the distributor's own page (SPEC §1): opened in the shop's app
//! through a single-use sign-in link (`/me/open?link=…`, made by `POST
//! /v1/distributors/{id}/portal-links`), it shows that one distributor's
//! balances, earnings of the last 30 days and 12 months, commission lines
//! with how each was worked out, payout accounts, and withdrawals with their
//! timelines and certificates; it quotes and requests a withdrawal and adds
//! a payout account. Mobile first (375 px wide and up), plain HTML forms,
//! no script.
//!
//! Every figure and every change goes through the API's own handlers, with
//! the session's distributor principal admitted by the same policies as a
//! distributor token: the page cannot see or do more than that token could,
//! and validation lives in one place. A staff session gets 403 here, and a
//! distributor session gets 403 on the console's and tax page's routes.
//! [`render`] draws the page, [`chart`] its earnings charts.

pub(crate) mod chart;
mod render;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use maud::html;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::credentials::{NewPayoutAccount, PayoutAccountView};
use crate::api::distributors::BalanceView;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, JsonBodyBytes};
use crate::api::orders::{CommissionLineView, CommissionQuery};
use crate::api::policy::{
    Allowed, Owner, SelfOnly, SelfOrAccountantAdmin, SelfOrIngest, SelfOrOpsAdmin,
};
use crate::api::statements::{EarningsQuery, PeriodView};
use crate::api::withdrawals::{QuoteView, WithdrawalBody, WithdrawalView};
use crate::domain::access::{Principal, Role};
use crate::domain::ids::DistributorId;
use crate::domain::withdrawal::Speed;
use crate::service::portal_links;
use crate::state::AppState;
use crate::store::PortalLinkOpening;
use crate::web::session::{self, PageCaller};
use crate::web::{html_response, signed_in_response};

/// Commission lines shown (the newest).
const COMMISSION_LINES: i64 = 30;
/// Withdrawals shown (the newest), each with its timeline.
const WITHDRAWALS: i64 = 10;
/// Days in the daily chart and months in the monthly one.
const CHART_DAYS: i64 = 30;
const CHART_MONTHS: u32 = 12;
/// Random bytes in a withdrawal form's nonce, its idempotency key.
const NONCE_BYTES: usize = 16;
/// What every refusal on this page tells a distributor to do when nothing
/// else helps: the page is reached from the shop's app only.
const REOPEN: &str = "Open this page again from the shop's app. 请从商城 App 重新打开本页。";

/// The signed-in distributor.
struct Me {
    principal: Principal,
    distributor: DistributorId,
}

impl Me {
    fn owner<P: crate::api::policy::Policy>(&self) -> Result<Owner<P>, ApiError> {
        Owner::admit(self.principal.clone(), self.distributor.clone())
    }

    fn allowed<P: crate::api::policy::Policy>(&self) -> Result<Allowed<P>, ApiError> {
        Allowed::admit(self.principal.clone())
    }
}

/// The distributor of the request's session, or the page that says why
/// there is none: 401 without a live session (reopen the link from the app),
/// 403 for a staff session.
fn me(caller: Result<PageCaller, ApiError>) -> Result<Me, Box<Response>> {
    match caller {
        Ok(PageCaller(principal)) if principal.role == Role::Distributor => {
            let Some(distributor) = principal.distributor.clone() else {
                return Err(Box::new(notice(
                    StatusCode::FORBIDDEN,
                    "无权访问 Not allowed",
                    "This session belongs to no distributor.",
                )));
            };
            Ok(Me {
                principal,
                distributor,
            })
        }
        Ok(_) => Err(Box::new(notice(
            StatusCode::FORBIDDEN,
            "仅限分销员 Distributors only",
            "This page is a distributor's own, opened from the shop's app; staff use /ops and /tax. 本页仅供分销员从商城 App 打开。",
        ))),
        Err(error) if error.status == StatusCode::UNAUTHORIZED => Err(Box::new(notice(
            StatusCode::UNAUTHORIZED,
            "请重新打开 Please reopen",
            &format!("You are not signed in, or your sign-in has ended. {REOPEN}"),
        ))),
        Err(error) => Err(Box::new(api_failure(error))),
    }
}

/// A page with only a message: a refusal or an ended link.
fn notice(status: StatusCode, title: &str, message: &str) -> Response {
    html_response(
        status,
        render::frame(
            title,
            false,
            html! {
                h1 { (title) }
                section { p.error { (message) } }
            },
        ),
    )
}

/// An API refusal that leaves nothing to re-render (a 5xx carries no internals).
fn api_failure(error: ApiError) -> Response {
    let title = error.status.canonical_reason().unwrap_or("Error");
    notice(error.status, title, &format!("{} {REOPEN}", error.message))
}

#[derive(Deserialize)]
pub(crate) struct OpenQuery {
    link: Option<SecretString>,
}

/// `GET /me/open?link=…`: uses the link (once, within its five minutes),
/// signs this browser in as its distributor with a session whose token is
/// scoped to that distributor and ends with it, and goes on to `/me`.
pub(crate) async fn open_link(
    State(state): State<AppState>,
    query: Result<Query<OpenQuery>, QueryRejection>,
) -> Response {
    let secret = query
        .ok()
        .and_then(|Query(query)| query.link)
        .unwrap_or_else(|| SecretString::from(String::new()));
    let now = state.clock.now();
    let opened = match portal_links::open(&state.store, &secret, now).await {
        Ok(opened) => opened,
        Err(error) => return api_failure(error.into()),
    };
    let distributor = match opened {
        PortalLinkOpening::Opened(distributor) => distributor,
        PortalLinkOpening::Used | PortalLinkOpening::Expired => {
            return notice(
                StatusCode::GONE,
                "链接已失效 Link no longer valid",
                &format!(
                    "This sign-in link was already used or is more than five minutes old. {REOPEN}"
                ),
            );
        }
        PortalLinkOpening::Unknown => {
            return notice(
                StatusCode::NOT_FOUND,
                "链接无效 Unknown link",
                &format!("This sign-in link is not one of ours. {REOPEN}"),
            );
        }
    };
    match sign_in(&state, &distributor, now).await {
        Ok(response) => response,
        Err(error) => api_failure(error),
    }
}

/// A session for `distributor`: its own token, expiring when the session
/// does, so nothing outlives the sign-in.
async fn sign_in(
    state: &AppState,
    distributor: &DistributorId,
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let token = crate::service::tokens::create_expiring(
        &state.store,
        Role::Distributor,
        Some(distributor),
        Some(session::absolute_end(state, now)),
        now,
        &crate::service::audit::Actor::system("portal_link"),
    )
    .await
    .map_err(ApiError::internal)?;
    let principal = Principal {
        token_id: token.id,
        role: Role::Distributor,
        distributor: Some(distributor.clone()),
    };
    let session = session::start(state, &principal, now)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(distributor_id = %distributor, token_id = %principal.token_id, "distributor signed in by link");
    signed_in_response(&session, "/me").map_err(|_| ApiError::internal("session cookie"))
}

/// Everything the page shows of the distributor.
struct Dashboard {
    distributor: DistributorId,
    name: String,
    balance: BalanceView,
    next_release: Option<DateTime<Utc>>,
    days: Vec<PeriodView>,
    months: Vec<PeriodView>,
    commissions: Vec<CommissionLineView>,
    accounts: Vec<PayoutAccountView>,
    withdrawals: Vec<WithdrawalView>,
    time_zone: chrono_tz::Tz,
}

/// Reads the dashboard through the API's handlers, as the distributor.
async fn dashboard(state: &AppState, me: &Me) -> Result<Dashboard, ApiError> {
    use crate::api::extract::Query as ApiQuery;
    let id = &me.distributor;
    let distributor = state
        .store
        .distributor(id)
        .await?
        .ok_or_else(|| ApiError::not_found("distributor"))?;
    let axum::Json(balance) =
        crate::api::distributors::balance(State(state.clone()), me.owner::<SelfOrOpsAdmin>()?)
            .await?;
    let time_zone = state.month_close.time_zone();
    let today = state.clock.now().with_timezone(&time_zone).date_naive();
    let first_day = today - Duration::days(CHART_DAYS - 1);
    let first_month = months_before(today, CHART_MONTHS - 1);
    let days = earnings(state, me, first_day, today, "day").await?;
    let months = earnings(state, me, first_month, today, "month").await?;
    let axum::Json(commissions) = crate::api::orders::commissions(
        State(state.clone()),
        me.owner::<SelfOrOpsAdmin>()?,
        ApiQuery(CommissionQuery {
            before: None,
            limit: Some(COMMISSION_LINES),
        }),
    )
    .await?;
    let axum::Json(accounts) = crate::api::credentials::list_payout_accounts(
        State(state.clone()),
        me.owner::<SelfOrOpsAdmin>()?,
    )
    .await?;
    let mut withdrawals = Vec::new();
    for record in state
        .store
        .withdrawals_of_distributor(id, WITHDRAWALS)
        .await?
    {
        let axum::Json(view) = crate::api::withdrawals::get(
            State(state.clone()),
            me.allowed::<SelfOrOpsAdmin>()?,
            crate::api::extract::Path(record.id.into_string()),
        )
        .await?;
        withdrawals.push(view);
    }
    Ok(Dashboard {
        distributor: id.clone(),
        name: distributor.name,
        balance,
        next_release: state.store.next_release_at(id).await?,
        days,
        months,
        commissions: commissions.items,
        accounts: accounts.items,
        withdrawals,
        time_zone,
    })
}

/// The distributor's earnings from `from` to `to` by `group` (day or month).
async fn earnings(
    state: &AppState,
    me: &Me,
    from: NaiveDate,
    to: NaiveDate,
    group: &str,
) -> Result<Vec<PeriodView>, ApiError> {
    let axum::Json(view) = crate::api::statements::earnings(
        State(state.clone()),
        me.owner::<SelfOrOpsAdmin>()?,
        crate::api::extract::Query(EarningsQuery {
            from: Some(from.to_string()),
            to: Some(to.to_string()),
            group: Some(group.to_owned()),
        }),
    )
    .await?;
    Ok(view.periods)
}

/// The first day of the month `count` months before `day`'s.
fn months_before(day: NaiveDate, count: u32) -> NaiveDate {
    let months = i64::from(day.year()) * 12 + i64::from(day.month0()) - i64::from(count);
    let year = i32::try_from(months.div_euclid(12)).unwrap_or(day.year());
    let month = u32::try_from(months.rem_euclid(12)).unwrap_or(0) + 1;
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(day)
}

/// The withdrawal form's fields, as sent and as shown again.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WithdrawForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    payout_account_id: String,
    #[serde(default)]
    speed: String,
    /// The idempotency key: new with each page, the same when a page's form
    /// is sent twice (a double tap, a resend after a lost answer).
    #[serde(default)]
    nonce: String,
    /// `quote` or `withdraw`: which button was pressed.
    #[serde(default)]
    action: String,
}

/// The add-an-account form's fields. The account numbers are secrets: they
/// are never shown again, not even after a refusal.
#[derive(Deserialize)]
pub(crate) struct AccountForm {
    #[serde(default)]
    channel: String,
    openid: Option<SecretString>,
    account: Option<SecretString>,
    card_number: Option<SecretString>,
    #[serde(default)]
    bank_name: String,
    holder_name: Option<SecretString>,
}

/// A refusal shown on the page, with what to do about it.
struct Problem {
    message: String,
    advice: &'static str,
}

impl Problem {
    fn of(error: &ApiError) -> Problem {
        Problem {
            message: error.message.clone(),
            advice: advice(error.code),
        }
    }
}

/// What a distributor can do about a refusal, by its stable code.
fn advice(code: &str) -> &'static str {
    match code {
        "insufficient_balance" => {
            "Enter at most the available balance shown above. 请输入不超过可提现余额的金额。"
        }
        "invalid_amount" | "amount_precision" => {
            "Enter an amount in yuan with at most two decimals, e.g. 100.00. 金额最多两位小数。"
        }
        "amount_below_minimum" => "Enter a larger amount. 请提高提现金额。",
        "daily_limit_exceeded" => {
            "Try a smaller amount, or again tomorrow. 已达今日上限，请减少金额或明天再试。"
        }
        "balance_negative" => {
            "Your debt is repaid from new commissions first; withdraw once it is cleared. 欠款还清后方可提现。"
        }
        "identity_missing" => {
            "Complete real-name verification (实名认证) in the shop's app first, then try again."
        }
        "payout_account_not_owned" | "invalid_field" => {
            "Choose one of your payout accounts below, or add one. 请选择或添加收款账户。"
        }
        "channel_not_configured" => {
            "This channel is not available now: choose an account on another channel. 请改用其他收款渠道。"
        }
        "idempotency_conflict" | "idempotency_key_reused" => {
            "This form was already sent with other figures: reload the page and fill it in again. 请刷新页面后重新填写。"
        }
        "unknown_bank" => "Choose a bank from the list. 请从列表中选择银行。",
        code if code.starts_with("invalid_") => {
            "Check the field named above and try again. 请检查上述字段后重试。"
        }
        _ => {
            "Check the form and try again; if it keeps failing, contact the shop. 请检查后重试，仍失败请联系商城。"
        }
    }
}

/// What the page shows besides the dashboard.
#[derive(Default)]
struct Shown {
    form: WithdrawForm,
    quote: Option<QuoteView>,
    withdraw_problem: Option<Problem>,
    account_channel: String,
    account_problem: Option<Problem>,
    done: Option<String>,
}

/// The page, with a fresh nonce for its withdrawal form.
async fn render_page(state: &AppState, me: &Me, status: StatusCode, shown: Shown) -> Response {
    let dashboard = match dashboard(state, me).await {
        Ok(dashboard) => dashboard,
        Err(error) => return api_failure(error),
    };
    // A quote keeps the nonce it was asked with, so "withdraw" after it is
    // still the same request; a new page gets a new one.
    let nonce = match shown.form.nonce.as_str() {
        nonce if is_nonce(nonce) && shown.withdraw_problem.is_none() => nonce.to_owned(),
        _ => match crate::service::tokens::random_hex(NONCE_BYTES) {
            Ok(hex) => format!("me-{hex}"),
            Err(error) => return api_failure(ApiError::internal(error)),
        },
    };
    html_response(
        status,
        render::page(&dashboard, &shown, &nonce, state.clock.now()),
    )
}

/// `me-` and 32 lowercase hex digits, as [`render_page`] makes them.
fn is_nonce(text: &str) -> bool {
    text.strip_prefix("me-").is_some_and(|hex| {
        hex.len() == 2 * NONCE_BYTES
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    /// A withdrawal just requested (after the redirect of the form).
    requested: Option<String>,
    /// `1` after a payout account was added.
    added: Option<String>,
}

/// `GET /me`.
pub(crate) async fn page(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let me = match me(caller) {
        Ok(me) => me,
        Err(refusal) => return *refusal,
    };
    let query = query.ok().map(|Query(query)| query);
    let done = query.and_then(|query| match (query.requested, query.added) {
        (Some(id), _) => Some(format!(
            "提现已提交 Withdrawal {id} requested: follow it below. 请在下方查看进度。"
        )),
        (None, Some(_)) => Some("收款账户已添加 Payout account added.".to_owned()),
        (None, None) => None,
    });
    render_page(
        &state,
        &me,
        StatusCode::OK,
        Shown {
            done,
            ..Shown::default()
        },
    )
    .await
}

/// `POST /me/withdrawals`: `action=quote` shows the page again with the
/// live quote; `action=withdraw` requests the withdrawal with the form's
/// nonce as its idempotency key (so the same form sent twice makes one
/// withdrawal) and goes back to the page.
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    form: Result<Form<WithdrawForm>, FormRejection>,
) -> Response {
    let me = match me(caller) {
        Ok(me) => me,
        Err(refusal) => return *refusal,
    };
    let Ok(Form(form)) = form else {
        return refused(&state, &me, WithdrawForm::default(), &bad_form()).await;
    };
    let speed = match form.speed.parse::<Speed>() {
        Ok(speed) => speed,
        Err(_) => {
            let error = ApiError::bad_request("invalid_field", "choose standard or express speed")
                .with_field("speed");
            return refused(&state, &me, form, &error).await;
        }
    };
    let body = WithdrawalBody {
        distributor_id: me.distributor.clone(),
        amount: form.amount.trim().to_owned(),
        payout_account_id: form.payout_account_id.trim().to_owned(),
        speed,
    };
    match form.action.as_str() {
        "quote" => {
            let quoted = match me.allowed::<SelfOnly>() {
                Ok(caller) => {
                    crate::api::withdrawals::quote(State(state.clone()), caller, JsonBody(body))
                        .await
                }
                Err(error) => Err(error),
            };
            match quoted {
                Ok(axum::Json(quote)) => {
                    let shown = Shown {
                        form,
                        quote: Some(quote),
                        ..Shown::default()
                    };
                    render_page(&state, &me, StatusCode::OK, shown).await
                }
                Err(error) => refused(&state, &me, form, &error).await,
            }
        }
        "withdraw" => match request(&state, &me, &form.nonce, body).await {
            Ok(id) => Redirect::to(&format!("/me?requested={id}#withdrawals")).into_response(),
            Err(error) => refused(&state, &me, form, &error).await,
        },
        _ => {
            let error = ApiError::bad_request("invalid_field", "press quote or withdraw")
                .with_field("action");
            refused(&state, &me, form, &error).await
        }
    }
}

/// Requests the withdrawal through the API's handler, `nonce` as its
/// `Idempotency-Key` and the body's JSON as its fingerprint: the same form
/// sent again answers the same withdrawal.
async fn request(
    state: &AppState,
    me: &Me,
    nonce: &str,
    body: WithdrawalBody,
) -> Result<String, ApiError> {
    let mut headers = HeaderMap::new();
    let key = HeaderValue::from_str(nonce).map_err(|_| {
        ApiError::bad_request("invalid_field", "this form has lost its key").with_field("nonce")
    })?;
    headers.insert("idempotency-key", key);
    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    let (_, axum::Json(view)) = crate::api::withdrawals::create(
        State(state.clone()),
        me.allowed::<SelfOnly>()?,
        headers,
        JsonBodyBytes {
            value: body,
            bytes: bytes.into(),
        },
    )
    .await?;
    Ok(view.id)
}

fn bad_form() -> ApiError {
    ApiError::bad_request("invalid_field", "the form could not be read")
}

/// The page again with the withdrawal form's refusal, the form as it was.
async fn refused(state: &AppState, me: &Me, form: WithdrawForm, error: &ApiError) -> Response {
    let shown = Shown {
        form,
        withdraw_problem: Some(Problem::of(error)),
        ..Shown::default()
    };
    render_page(state, me, error.status, shown).await
}

/// `POST /me/payout-accounts`: adds an account through the API's handler
/// (its validation and sealing), then back to the page.
pub(crate) async fn add_account(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    form: Result<Form<AccountForm>, FormRejection>,
) -> Response {
    let me = match me(caller) {
        Ok(me) => me,
        Err(refusal) => return *refusal,
    };
    let Ok(Form(form)) = form else {
        return account_refused(&state, &me, String::new(), &bad_form()).await;
    };
    let channel = form.channel.clone();
    let account = match new_account(form) {
        Ok(account) => account,
        Err(error) => return account_refused(&state, &me, channel, &error).await,
    };
    let added = match me.owner::<SelfOrIngest>() {
        Ok(owner) => {
            crate::api::credentials::add_payout_account(
                State(state.clone()),
                owner,
                JsonBody(account),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match added {
        Ok(_) => Redirect::to("/me?added=1#accounts").into_response(),
        Err(error) => account_refused(&state, &me, channel, &error).await,
    }
}

/// The API's body for the form's channel; empty optional fields are absent.
fn new_account(form: AccountForm) -> Result<NewPayoutAccount, ApiError> {
    let given =
        |field: Option<SecretString>| field.filter(|text| !text.expose_secret().trim().is_empty());
    let required = |field: Option<SecretString>, name: &'static str| {
        given(field).ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("fill in {name}")).with_field(name)
        })
    };
    match form.channel.as_str() {
        "wechat" => Ok(NewPayoutAccount::Wechat {
            openid: required(form.openid, "openid")?,
        }),
        "alipay" => Ok(NewPayoutAccount::Alipay {
            account: required(form.account, "account")?,
        }),
        "bank" => Ok(NewPayoutAccount::Bank {
            card_number: required(form.card_number, "card_number")?,
            bank_name: form.bank_name,
            holder_name: given(form.holder_name),
            account_type: None,
            inst_name: None,
            bank_code: None,
            province: None,
            city: None,
            branch_name: None,
        }),
        _ => Err(
            ApiError::bad_request("invalid_field", "choose WeChat, Alipay or a bank card")
                .with_field("channel"),
        ),
    }
}

async fn account_refused(state: &AppState, me: &Me, channel: String, error: &ApiError) -> Response {
    let shown = Shown {
        account_channel: channel,
        account_problem: Some(Problem::of(error)),
        ..Shown::default()
    };
    render_page(state, me, error.status, shown).await
}

/// `GET /me/certificates/{number}.pdf` (or `.json`): the distributor's own
/// certificate, through the API's handler, which answers another's as not
/// found.
pub(crate) async fn certificate(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path(file): Path<String>,
) -> Response {
    let me = match me(caller) {
        Ok(me) => me,
        Err(refusal) => return *refusal,
    };
    if !(file.ends_with(".pdf") || file.ends_with(".json")) {
        return notice(
            StatusCode::NOT_FOUND,
            "找不到 Not found",
            "Certificates are downloaded as PDF from the list on your page.",
        );
    }
    let caller = match me.allowed::<SelfOrAccountantAdmin>() {
        Ok(caller) => caller,
        Err(error) => return api_failure(error),
    };
    match crate::api::certificates::file(State(state), caller, crate::api::extract::Path(file))
        .await
    {
        Ok(response) => response,
        Err(error) => api_failure(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_months_back_crosses_years() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        assert_eq!(
            months_before(day, 11),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );
        let day = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        assert_eq!(
            months_before(day, 11),
            NaiveDate::from_ymd_opt(2025, 4, 1).unwrap()
        );
    }

    #[test]
    fn only_the_pages_own_nonces_are_kept() {
        assert!(is_nonce(&format!("me-{}", "0a".repeat(16))));
        for other in ["", "me-", "x-00", &format!("me-{}", "0A".repeat(16))] {
            assert!(!is_nonce(other), "{other:?}");
        }
    }
}
