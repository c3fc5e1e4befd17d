//! The sandbox's HTTP face: the three transfer-bills endpoints, held to the
//! v3 rules (signed requests, validated bodies, signed answers, idempotent
//! `out_bill_no`), Alipay's `/gateway.do` (in `super::alipay`), and the
//! unsigned `/sandbox/…` admin endpoints.
//!
//! The order inside each API handler is the point of the fault model:
//! authenticate → latency → validate → faults that create nothing → commit →
//! faults after the commit → answer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::alipay::{self, BounceRefusal, DEFAULT_BOUNCE_REASON};
use super::faults::{Fault, Faults};
use super::state::{
    Bill, Commit, Endpoint, MAX_BILLS, Move, NewBill, PLANNED_FAIL_REASON, Sandbox,
};
use crate::wechat::crypto::{
    self, is_acceptable_nonce, parse_authorization, request_message, sign_answer,
};
use crate::wechat::{BillState, unix_now};

/// Request bodies are a few hundred bytes; anything near this is abuse.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `transfer_scene_id` values WeChat lists.
const TRANSFER_SCENE_IDS: &[&str] = &[
    "1000", "1002", "1004", "1005", "1009", "1010", "1011", "1013",
];

const TRANSFER_BILLS_PATH: &str = "/v3/fund-app/mch-transfer/transfer-bills";

pub(crate) fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route(TRANSFER_BILLS_PATH, post(create_bill))
        .route(
            "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}",
            get(query_bill),
        )
        .route(
            "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel",
            post(cancel_bill),
        )
        .route("/sandbox/ledger", get(ledger))
        .route("/sandbox/faults", get(faults).post(set_faults))
        .route("/sandbox/bills/{out_bill_no}/confirm", post(confirm))
        .route("/sandbox/bills/{out_bill_no}/expire", post(expire))
        .route("/gateway.do", post(alipay::gateway))
        .route("/sandbox/alipay/bills/{out_biz_no}/bounce", post(bounce))
        .route("/sandbox/clock", get(clock).post(set_clock))
        .merge(super::statements::routes())
        .fallback(no_such_endpoint)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sandbox)
}

/// A v3 answer, signed with the platform key like every WeChat answer.
pub(super) fn signed(sandbox: &Sandbox, status: StatusCode, body: &Value) -> Response {
    let body = body.to_string().into_bytes();
    let signature = sign_answer(
        &sandbox.platform_signer,
        &sandbox.platform_public_key_id,
        unix_now(),
        &body,
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("Wechatpay-Timestamp", signature.timestamp),
        ("Wechatpay-Nonce", signature.nonce),
        ("Wechatpay-Signature", signature.signature),
        ("Wechatpay-Serial", signature.serial),
        ("Request-ID", crypto::alphanumeric_nonce(32)),
    ] {
        headers.insert(
            name,
            HeaderValue::try_from(value).expect("signature headers are ASCII"),
        );
    }
    response
}

pub(super) fn refuse(sandbox: &Sandbox, status: StatusCode, code: &str, message: &str) -> Response {
    signed(
        sandbox,
        status,
        &json!({ "code": code, "message": message }),
    )
}

/// Checks the `Authorization` header as WeChat does; the reason goes back in
/// the `401 SIGN_ERROR` message.
pub(super) fn authenticate(
    sandbox: &Sandbox,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or("Authorization header is missing")?;
    let fields = parse_authorization(header).ok_or(
        "Authorization is not WECHATPAY2-SHA256-RSA2048 with mchid, nonce_str, signature, timestamp and serial_no",
    )?;
    if fields.mchid != sandbox.mchid {
        return Err("mchid is not this merchant");
    }
    if fields.serial_no != sandbox.merchant_serial_no {
        return Err("serial_no is not the merchant certificate's");
    }
    if !is_acceptable_nonce(fields.nonce_str) {
        return Err("nonce_str must be 1 to 64 letters and digits");
    }
    let timestamp: i64 = fields
        .timestamp
        .parse()
        .map_err(|_| "timestamp is not a number")?;
    if unix_now().abs_diff(timestamp) > crypto::TIMESTAMP_WINDOW_SECS.unsigned_abs() {
        return Err("timestamp is more than 5 minutes from the server's clock");
    }
    let url = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |path_and_query| path_and_query.as_str());
    let message = request_message(
        method.as_str(),
        url,
        fields.timestamp,
        fields.nonce_str,
        body,
    );
    if !sandbox.merchant.verify(&message, fields.signature) {
        return Err("signature does not verify with the merchant certificate");
    }
    Ok(())
}

/// `POST /v3/fund-app/mch-transfer/transfer-bills` as the sandbox reads it.
#[derive(Deserialize)]
struct WechatTransferBillRequest {
    appid: String,
    out_bill_no: String,
    transfer_scene_id: String,
    openid: String,
    #[serde(default)]
    user_name: Option<String>,
    transfer_amount: i64,
    transfer_remark: String,
    notify_url: String,
    #[serde(default)]
    user_recv_perception: Option<String>,
}

fn valid_out_bill_no(out_bill_no: &str) -> bool {
    (5..=32).contains(&out_bill_no.len())
        && out_bill_no.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// Validates a create request into a [`NewBill`]; the error is the
/// `PARAM_ERROR` message. Never quotes the openid or the name.
fn validate_create(sandbox: &Sandbox, headers: &HeaderMap, body: &[u8]) -> Result<NewBill, String> {
    let request: WechatTransferBillRequest = serde_json::from_slice(body).map_err(|error| {
        let text = error.to_string();
        // Missing-field messages name a field; others could quote a value.
        if text.starts_with("missing field") {
            text
        } else {
            format!(
                "body is not a transfer-bills request (line {}, column {})",
                error.line(),
                error.column()
            )
        }
    })?;
    if !valid_out_bill_no(&request.out_bill_no) {
        return Err("out_bill_no must be 5 to 32 letters and digits".to_owned());
    }
    if request.transfer_amount <= 0 {
        return Err("transfer_amount must be a positive number of fen".to_owned());
    }
    if request.openid.trim().is_empty() {
        return Err("openid is required".to_owned());
    }
    if request.appid != sandbox.appid {
        return Err("appid is not bound to this merchant".to_owned());
    }
    match reqwest::Url::parse(&request.notify_url) {
        Ok(url) if url.query().is_none() && matches!(url.scheme(), "http" | "https") => {}
        _ => return Err("notify_url must be an absolute URL without a query string".to_owned()),
    }
    if !TRANSFER_SCENE_IDS.contains(&request.transfer_scene_id.as_str()) {
        return Err("transfer_scene_id is not a known scene".to_owned());
    }
    if request.transfer_remark.is_empty() {
        return Err("transfer_remark is required".to_owned());
    }
    if request
        .user_recv_perception
        .as_deref()
        .is_some_and(str::is_empty)
    {
        return Err("user_recv_perception must not be empty".to_owned());
    }
    if let Some(user_name) = &request.user_name {
        let serial = headers
            .get("Wechatpay-Serial")
            .and_then(|value| value.to_str().ok());
        match serial {
            None => {
                return Err("Wechatpay-Serial is required with an encrypted user_name".to_owned());
            }
            Some(serial) if serial != sandbox.platform_public_key_id => {
                return Err("Wechatpay-Serial names a key this merchant does not have".to_owned());
            }
            Some(_) => {}
        }
        let name = crypto::decrypt_sensitive(&sandbox.platform_decryptor, user_name)
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if name.is_none_or(|name| name.trim().is_empty()) {
            return Err(
                "user_name does not decrypt with the platform key (RSA-OAEP-SHA1)".to_owned(),
            );
        }
    }
    Ok(NewBill {
        out_bill_no: request.out_bill_no,
        appid: request.appid,
        openid: request.openid,
        amount_fen: request.transfer_amount,
        remark: request.transfer_remark,
        notify_url: request.notify_url,
    })
}

/// The create answer.
fn created_json(bill: &Bill) -> Value {
    let mut answer = json!({
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "create_time": bill.create_time,
        "state": bill.state,
    });
    add_state_details(&mut answer, bill);
    answer
}

/// The query answer.
fn bill_json(sandbox: &Sandbox, bill: &Bill) -> Value {
    let mut answer = json!({
        "mch_id": sandbox.mchid,
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "appid": bill.appid,
        "state": bill.state,
        "transfer_amount": bill.amount_fen,
        "transfer_remark": bill.remark,
        "openid": bill.openid,
        "create_time": bill.create_time,
        "update_time": bill.update_time,
    });
    add_state_details(&mut answer, bill);
    answer
}

fn add_state_details(answer: &mut Value, bill: &Bill) {
    if bill.state == BillState::WaitUserConfirm {
        answer["package_info"] = json!(bill.package_info);
    }
    if let Some(reason) = &bill.fail_reason {
        answer["fail_reason"] = json!(reason);
    }
}

/// Waits out `Faults::latency_ms`.
async fn latency(sandbox: &Sandbox, faults: &Faults) {
    if faults.latency_ms > 0 {
        sandbox
            .sleep(Duration::from_millis(faults.latency_ms))
            .await;
    }
}

/// The faults that strike before anything changes, shared by every endpoint.
fn fault_before_commit(
    sandbox: &Sandbox,
    faults: &Faults,
    out_bill_no: &str,
    attempt: u32,
) -> Option<Response> {
    if faults.hits(Fault::Transient, out_bill_no, attempt) {
        return Some(refuse(
            sandbox,
            StatusCode::TOO_MANY_REQUESTS,
            "FREQUENCY_LIMITED",
            "sandbox: rate limited (injected)",
        ));
    }
    if faults.hits(Fault::ErrorBeforeCommit, out_bill_no, attempt) {
        return Some(system_error(sandbox));
    }
    None
}

fn system_error(sandbox: &Sandbox) -> Response {
    refuse(
        sandbox,
        StatusCode::INTERNAL_SERVER_ERROR,
        "SYSTEM_ERROR",
        "sandbox: system error (injected)",
    )
}

async fn create_bill(
    State(sandbox): State<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = authenticate(&sandbox, &method, &uri, &headers, &body) {
        return refuse(&sandbox, StatusCode::UNAUTHORIZED, "SIGN_ERROR", reason);
    }
    let faults = sandbox.faults();
    latency(&sandbox, &faults).await;
    let new_bill = match validate_create(&sandbox, &headers, &body) {
        Ok(new_bill) => new_bill,
        Err(reason) => return refuse(&sandbox, StatusCode::BAD_REQUEST, "PARAM_ERROR", &reason),
    };
    let out_bill_no = new_bill.out_bill_no.clone();
    let attempt = sandbox
        .book()
        .next_attempt(Endpoint::Transfer, &out_bill_no);
    if let Some(refusal) = fault_before_commit(&sandbox, &faults, &out_bill_no, attempt) {
        return refusal;
    }
    let planned_failure = faults
        .fail_openids
        .contains(&new_bill.openid)
        .then_some(PLANNED_FAIL_REASON);
    let commit = sandbox.book().commit(new_bill, planned_failure);
    let bill = match commit {
        Commit::Created(bill) => {
            tracing::info!(out_bill_no = %bill.out_bill_no, amount_fen = bill.amount_fen, "sandbox bill created");
            if let Some(after_ms) = faults.auto_confirm_after_ms(&bill.out_bill_no) {
                sandbox.confirm_later(bill.out_bill_no.clone(), after_ms);
            }
            bill
        }
        Commit::Replayed(bill) => bill,
        Commit::Conflict => {
            return refuse(
                &sandbox,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "out_bill_no reused with different payload",
            );
        }
        Commit::Full => {
            tracing::warn!(max_bills = MAX_BILLS, "sandbox is full; refusing new bills");
            return refuse(
                &sandbox,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "sandbox holds too many bills; restart it",
            );
        }
    };
    if faults.hits(Fault::ErrorAfterCommit, &out_bill_no, attempt) {
        return system_error(&sandbox);
    }
    if faults.hits(Fault::TimeoutAfterSuccess, &out_bill_no, attempt) {
        sandbox.sleep(Duration::from_millis(faults.hang_ms)).await;
    }
    signed(&sandbox, StatusCode::OK, &created_json(&bill))
}

async fn query_bill(
    State(sandbox): State<Arc<Sandbox>>,
    Path(out_bill_no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = authenticate(&sandbox, &method, &uri, &headers, &body) {
        return refuse(&sandbox, StatusCode::UNAUTHORIZED, "SIGN_ERROR", reason);
    }
    let faults = sandbox.faults();
    latency(&sandbox, &faults).await;
    let attempt = sandbox.book().next_attempt(Endpoint::Query, &out_bill_no);
    if let Some(refusal) = fault_before_commit(&sandbox, &faults, &out_bill_no, attempt) {
        return refusal;
    }
    let bill = sandbox.book().get(&out_bill_no).cloned();
    match bill {
        Some(bill) => signed(&sandbox, StatusCode::OK, &bill_json(&sandbox, &bill)),
        None => refuse(
            &sandbox,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no bill by that out_bill_no",
        ),
    }
}

async fn cancel_bill(
    State(sandbox): State<Arc<Sandbox>>,
    Path(out_bill_no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = authenticate(&sandbox, &method, &uri, &headers, &body) {
        return refuse(&sandbox, StatusCode::UNAUTHORIZED, "SIGN_ERROR", reason);
    }
    let faults = sandbox.faults();
    latency(&sandbox, &faults).await;
    let attempt = sandbox.book().next_attempt(Endpoint::Cancel, &out_bill_no);
    if let Some(refusal) = fault_before_commit(&sandbox, &faults, &out_bill_no, attempt) {
        return refusal;
    }
    let moved = sandbox.book().cancel(&out_bill_no);
    let bill = match moved {
        None => {
            return refuse(
                &sandbox,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no bill by that out_bill_no",
            );
        }
        Some(Move::Refused(_)) => {
            return refuse(
                &sandbox,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "the bill is no longer waiting for the payee",
            );
        }
        Some(Move::Moved(bill) | Move::Finished(bill)) => bill,
    };
    if bill.state == BillState::Canceling {
        sandbox.settle_cancel_later(bill.out_bill_no.clone());
    }
    if faults.hits(Fault::ErrorAfterCommit, &out_bill_no, attempt) {
        return system_error(&sandbox);
    }
    signed(
        &sandbox,
        StatusCode::OK,
        &json!({
            "out_bill_no": bill.out_bill_no,
            "transfer_bill_no": bill.transfer_bill_no,
            "state": bill.state,
            "update_time": bill.update_time,
        }),
    )
}

async fn ledger(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let ledger = sandbox.book().ledger();
    axum::Json(ledger).into_response()
}

async fn faults(State(sandbox): State<Arc<Sandbox>>) -> Response {
    axum::Json(sandbox.faults()).into_response()
}

async fn set_faults(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                &format!("not a Faults object: {error}"),
            );
        }
    };
    if let Err(reason) = faults.validate() {
        return admin_error(StatusCode::BAD_REQUEST, &reason);
    }
    // Not `?faults`: that would log the test openids in `fail_openids`.
    tracing::info!(
        seed = faults.seed,
        transient_rate = faults.transient_rate,
        error_before_commit_rate = faults.error_before_commit_rate,
        error_after_commit_rate = faults.error_after_commit_rate,
        timeout_after_success_rate = faults.timeout_after_success_rate,
        confirm = ?faults.confirm,
        "sandbox faults set"
    );
    sandbox.set_faults(faults.clone());
    axum::Json(faults).into_response()
}

async fn confirm(State(sandbox): State<Arc<Sandbox>>, Path(out_bill_no): Path<String>) -> Response {
    let state = sandbox.confirm(&out_bill_no);
    bill_state(&out_bill_no, state)
}

async fn expire(State(sandbox): State<Arc<Sandbox>>, Path(out_bill_no): Path<String>) -> Response {
    let state = sandbox.close(&out_bill_no);
    bill_state(&out_bill_no, state)
}

fn bill_state(out_bill_no: &str, state: Option<BillState>) -> Response {
    match state {
        Some(state) => {
            axum::Json(json!({ "out_bill_no": out_bill_no, "state": state })).into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, "no bill by that out_bill_no"),
    }
}

/// `POST /sandbox/alipay/bills/{out_biz_no}/bounce`, body optional:
/// `{"reason": "…"}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BounceRequest {
    #[serde(default)]
    reason: Option<String>,
}

async fn bounce(
    State(sandbox): State<Arc<Sandbox>>,
    Path(out_biz_no): Path<String>,
    body: Bytes,
) -> Response {
    let request: BounceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BounceRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("not a bounce request ({{\"reason\": \"…\"}}): {error}"),
                );
            }
        }
    };
    let reason = request
        .reason
        .filter(|reason| !reason.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BOUNCE_REASON.to_owned());
    match sandbox.alipay_bounce(&out_biz_no, &reason) {
        Ok(status) => {
            axum::Json(json!({ "out_biz_no": out_biz_no, "status": status })).into_response()
        }
        Err(refusal @ BounceRefusal::NoSuchBill) => {
            admin_error(StatusCode::NOT_FOUND, &refusal.to_string())
        }
        Err(refusal @ (BounceRefusal::NotBankCard | BounceRefusal::NotSuccess(_))) => {
            admin_error(StatusCode::CONFLICT, &refusal.to_string())
        }
    }
}

/// `POST /sandbox/clock`: `{"offset_seconds": N}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    offset_seconds: i64,
}

fn clock_json(sandbox: &Sandbox) -> Response {
    let book = sandbox.book();
    axum::Json(json!({
        "offset_seconds": book.clock_offset().num_seconds(),
        "now": book.beijing_now(),
    }))
    .into_response()
}

async fn clock(State(sandbox): State<Arc<Sandbox>>) -> Response {
    clock_json(&sandbox)
}

async fn set_clock(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    let request: ClockRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                &format!("not a clock request ({{\"offset_seconds\": N}}): {error}"),
            );
        }
    };
    let Some(offset) = chrono::TimeDelta::try_seconds(request.offset_seconds) else {
        return admin_error(StatusCode::BAD_REQUEST, "offset_seconds is out of range");
    };
    if let Err(reason) = sandbox.book().set_clock_offset(offset) {
        return admin_error(StatusCode::BAD_REQUEST, &reason);
    }
    tracing::info!(
        offset_seconds = request.offset_seconds,
        "sandbox clock moved"
    );
    clock_json(&sandbox)
}

pub(super) fn admin_error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::CONFLICT => "INVALID_STATE",
        _ => "PARAM_ERROR",
    };
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

async fn no_such_endpoint(State(sandbox): State<Arc<Sandbox>>) -> Response {
    refuse(
        &sandbox,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint in the sandbox",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_bill_numbers_are_five_to_thirty_two_letters_and_digits() {
        assert!(valid_out_bill_no("wd001"));
        assert!(valid_out_bill_no(&"a".repeat(32)));
        assert!(!valid_out_bill_no("wd01"));
        assert!(!valid_out_bill_no(&"a".repeat(33)));
        assert!(!valid_out_bill_no("wd_001"));
    }
}
