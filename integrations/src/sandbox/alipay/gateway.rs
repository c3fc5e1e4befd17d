//! `POST /gateway.do`, held to the OpenAPI v1 rules the client follows:
//! parameters from the query string and the form body, an RSA2 signature
//! over the sorted `k=v&…` of all but `sign`, certificate SNs in certificate
//! mode, answers signed over the exact response node text.
//!
//! The order inside each method is the fault model's, as on the WeChat
//! side: authenticate → latency → validate → faults that create nothing →
//! commit → faults after the commit → answer.
//!
//! Codes and sub-codes marked [U] below are plausible names, not confirmed
//! against Alipay's documentation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::faults::{Fault, Faults};
use super::super::state::{Endpoint, MAX_BILLS, Sandbox};
use super::super::statements::{BillRefusal, alipay_bill_download_url};
use super::{NewOrder, Order, OrderCommit};
use crate::AmountFen;
use crate::alipay::crypto::request_sign_content;
use crate::alipay::{AlipayProduct, FundOrderStatus, fen_from_yuan, yuan_from_fen};

const TRANSFER_METHOD: &str = "alipay.fund.trans.uni.transfer";
const QUERY_METHOD: &str = "alipay.fund.trans.common.query";
const BILL_URL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";
const ERROR_NODE: &str = "error_response";

/// The least a transfer may move: 0.10 yuan (older docs; [U] today).
const MIN_TRANS_AMOUNT_FEN: i64 = 10;

/// `out_biz_no` is at most 64 characters.
const MAX_OUT_BIZ_NO_CHARS: usize = 64;

/// How far a request's `timestamp` may be from the wall clock [U: Alipay
/// refuses stale timestamps with `isv.invalid-timestamp`; the window is not
/// documented here].
const TIMESTAMP_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// `sub_code` of a replayed `out_biz_no` with another payload [U: a
/// plausible name; the client classifies it as unknown, so ambiguous].
pub(crate) const CONFLICT_SUB_CODE: &str = "PARAM_ILLEGAL";

/// `sub_code` of a bill asked for before it is generated: the one
/// `AlipayClient::account_log_bill` maps to `StatementError::NotReady`
/// [U: reported for a bill asked for too early, not confirmed in the docs].
pub(crate) const BILL_NOT_READY_SUB_CODE: &str = "isp.bill_not_exist";

/// The only `bill_type` the sandbox keeps: the account log. `trade` holds
/// payments received, which a payout app has none of.
const BILL_TYPE: &str = "signcustomer";

/// One refusal: `code`, `msg`, `sub_code`, `sub_msg`, as Alipay groups them.
struct Refusal {
    code: &'static str,
    msg: &'static str,
    sub_code: &'static str,
    sub_msg: String,
}

impl Refusal {
    fn missing(sub_code: &'static str, sub_msg: &str) -> Refusal {
        Refusal {
            code: "40001",
            msg: "Missing Required Arguments",
            sub_code,
            sub_msg: sub_msg.to_owned(),
        }
    }

    fn invalid(sub_code: &'static str, sub_msg: &str) -> Refusal {
        Refusal {
            code: "40002",
            msg: "Invalid Arguments",
            sub_code,
            sub_msg: sub_msg.to_owned(),
        }
    }

    fn business(sub_code: &'static str, sub_msg: impl Into<String>) -> Refusal {
        Refusal {
            code: "40004",
            msg: "Business Failed",
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    /// `20000 isp.unknow-error`: the outcome is unknown to the caller.
    fn unknown_outcome() -> Refusal {
        Refusal {
            code: "20000",
            msg: "Service Currently Unavailable",
            sub_code: "isp.unknow-error",
            sub_msg: "系统繁忙 (sandbox: injected)".to_owned(),
        }
    }

    fn node(&self) -> Value {
        json!({
            "code": self.code,
            "msg": self.msg,
            "sub_code": self.sub_code,
            "sub_msg": self.sub_msg,
        })
    }
}

/// How the caller signs: decides whether answers name `alipay_cert_sn`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMode {
    PublicKey,
    Certificate,
}

/// A signed answer: `{"<node_name>":<node>,"sign":"…"}`, plus
/// `alipay_cert_sn` in certificate mode. The node is serialised once and
/// signed as that very text.
fn answer(sandbox: &Sandbox, mode: KeyMode, node_name: &str, node: &Value) -> Response {
    let node = node.to_string();
    let sign = sandbox.alipay.signer.sign(&node);
    let cert_sn = match mode {
        KeyMode::Certificate => format!(r#","alipay_cert_sn":"{}""#, sandbox.alipay.alipay_cert_sn),
        KeyMode::PublicKey => String::new(),
    };
    let body = format!(r#"{{"{node_name}":{node},"sign":"{sign}"{cert_sn}}}"#);
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

fn node_name(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The caller's parameters; a key sent twice is refused, since which value
/// was signed would be a guess.
fn parameters(query: Option<&str>, body: &[u8]) -> Result<BTreeMap<String, String>, Refusal> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .chain(form_urlencoded::parse(body))
    {
        if params
            .insert(key.into_owned(), value.into_owned())
            .is_some()
        {
            return Err(Refusal::invalid(
                "isv.invalid-parameter",
                "a parameter is sent twice",
            ));
        }
    }
    Ok(params)
}

/// Checks who is calling and how they signed; the mode to answer in.
fn authenticate(sandbox: &Sandbox, params: &BTreeMap<String, String>) -> Result<KeyMode, Refusal> {
    let get = |key: &str| {
        params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let app_id =
        get("app_id").ok_or_else(|| Refusal::missing("isv.missing-app-id", "缺少AppID参数"))?;
    if app_id != sandbox.alipay.app_id {
        return Err(Refusal::invalid("isv.invalid-app-id", "无效的AppID参数"));
    }
    let sign =
        get("sign").ok_or_else(|| Refusal::missing("isv.missing-signature", "缺少签名参数"))?;
    if get("sign_type") != Some("RSA2") {
        return Err(Refusal::invalid(
            "isv.invalid-signature-type",
            "无效的签名类型 (sandbox: RSA2 only)",
        ));
    }
    // Either SN makes it certificate mode, and then both must name the
    // shipped test certificates. Sub-codes as seen in SDK issues [U].
    let mode = match (get("app_cert_sn"), get("alipay_root_cert_sn")) {
        (None, None) => KeyMode::PublicKey,
        (app_cert_sn, root_cert_sn) => {
            if app_cert_sn != Some(sandbox.alipay.app_cert_sn.as_str()) {
                return Err(Refusal::invalid(
                    "isv.app-cert-not-exist",
                    "应用公钥证书不存在 (app_cert_sn)",
                ));
            }
            if root_cert_sn != Some(sandbox.alipay.alipay_root_cert_sn.as_str()) {
                return Err(Refusal::invalid(
                    "isv.invalid-alipay-root-cert-sn",
                    "无效支付宝根证书序列号",
                ));
            }
            KeyMode::Certificate
        }
    };
    let content = request_sign_content(
        params
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );
    if !sandbox.alipay.app_verifier.verify(content.as_bytes(), sign) {
        return Err(Refusal::invalid(
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        ));
    }
    let timestamp = get("timestamp")
        .ok_or_else(|| Refusal::missing("isv.missing-timestamp", "缺少时间戳参数"))?;
    let sent = NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|naive| {
            naive
                .and_local_timezone(chrono::FixedOffset::east_opt(8 * 3600)?)
                .single()
        })
        .ok_or_else(|| Refusal::invalid("isv.invalid-timestamp", "非法的时间戳参数"))?;
    // The wall clock, not the sandbox clock: the caller's clock is real.
    if (chrono::Utc::now() - sent.to_utc()).abs() > TIMESTAMP_WINDOW {
        return Err(Refusal::invalid(
            "isv.invalid-timestamp",
            "非法的时间戳参数",
        ));
    }
    Ok(mode)
}

/// `biz_content` of a transfer, as the sandbox reads it.
#[derive(Deserialize)]
struct AlipayTransferBiz {
    out_biz_no: String,
    trans_amount: String,
    product_code: String,
    biz_scene: String,
    #[serde(default)]
    order_title: Option<String>,
    payee_info: AlipayPayee,
}

#[derive(Deserialize)]
struct AlipayPayee {
    identity: String,
    identity_type: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    bankcard_ext_info: Option<AlipayBankcardExt>,
}

#[derive(Deserialize)]
struct AlipayBankcardExt {
    account_type: String,
    #[serde(default)]
    inst_name: Option<String>,
    #[serde(default)]
    bank_code: Option<String>,
    #[serde(default)]
    inst_province: Option<String>,
    #[serde(default)]
    inst_city: Option<String>,
    #[serde(default)]
    inst_branch_name: Option<String>,
}

/// Digits of a 联行号 (`bank_code`).
const BANK_CODE_DIGITS: usize = 12;

impl AlipayBankcardExt {
    /// Whether the gateway could route the card: a personal account as it
    /// is; a company's only with its bank and its branch, by 联行号 or by
    /// province, city and branch name ("如果银行卡为对公，必须传递省市支行信息或者联行号").
    fn problem(&self) -> Option<&'static str> {
        let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        match self.account_type.as_str() {
            "2" => None,
            "1" if !given(&self.inst_name) => {
                Some("payee_info.bankcard_ext_info.inst_name is required for a company account")
            }
            "1" if self.bank_code.as_deref().is_some_and(|code| {
                code.len() != BANK_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit())
            }) =>
            {
                Some("payee_info.bankcard_ext_info.bank_code must be 12 digits")
            }
            "1" if given(&self.bank_code)
                || (given(&self.inst_province)
                    && given(&self.inst_city)
                    && given(&self.inst_branch_name)) =>
            {
                None
            }
            "1" => Some(
                "payee_info.bankcard_ext_info of a company account needs bank_code or inst_province, inst_city and inst_branch_name",
            ),
            _ => Some(
                "payee_info.bankcard_ext_info.account_type must be 1 (company) or 2 (personal)",
            ),
        }
    }
}

/// `biz_content` of the bill URL query.
#[derive(Deserialize)]
struct AlipayBillUrlBiz {
    bill_type: String,
    bill_date: String,
}

/// `biz_content` of a query by our number.
#[derive(Deserialize)]
struct AlipayQueryBiz {
    #[serde(default)]
    out_biz_no: Option<String>,
    #[serde(default)]
    product_code: Option<String>,
    #[serde(default)]
    biz_scene: Option<String>,
}

fn product_of(product_code: &str) -> Option<AlipayProduct> {
    [AlipayProduct::AlipayAccount, AlipayProduct::BankCard]
        .into_iter()
        .find(|product| product.product_code() == product_code)
}

fn invalid_parameter(why: &str) -> Refusal {
    // [U] the sub-code the client counts as a refusal for good.
    Refusal::business("INVALID_PARAMETER", format!("参数有误: {why}"))
}

/// Parses `biz_content` without ever quoting it: it holds the payee.
fn biz_content<T: for<'de> Deserialize<'de>>(
    params: &BTreeMap<String, String>,
) -> Result<T, Refusal> {
    let text = params
        .get("biz_content")
        .ok_or_else(|| Refusal::missing("isv.missing-biz-content", "缺少biz_content参数"))?;
    serde_json::from_str(text).map_err(|error| {
        let text = error.to_string();
        if text.starts_with("missing field") {
            invalid_parameter(&text)
        } else {
            invalid_parameter("biz_content is not the method's JSON")
        }
    })
}

fn valid_out_biz_no(out_biz_no: &str) -> bool {
    !out_biz_no.trim().is_empty() && out_biz_no.chars().count() <= MAX_OUT_BIZ_NO_CHARS
}

/// Validates a transfer into a [`NewOrder`], as the real gateway would.
fn validate_transfer(
    params: &BTreeMap<String, String>,
    faults: &Faults,
) -> Result<(NewOrder, bool), Refusal> {
    let biz: AlipayTransferBiz = biz_content(params)?;
    if !valid_out_biz_no(&biz.out_biz_no) {
        return Err(invalid_parameter("out_biz_no must be 1 to 64 characters"));
    }
    let amount_fen = fen_from_yuan(&biz.trans_amount)
        .filter(|amount| yuan_from_fen(*amount).as_deref() == Some(biz.trans_amount.as_str()))
        .ok_or_else(|| invalid_parameter("trans_amount must be yuan with two decimals"))?;
    if amount_fen.0 < MIN_TRANS_AMOUNT_FEN {
        // [U] the minimum-amount sub-code of older docs.
        return Err(Refusal::business(
            "EXCEED_LIMIT_SM_MIN_AMOUNT",
            "单笔最低转账金额0.1元",
        ));
    }
    let product = product_of(&biz.product_code)
        .ok_or_else(|| invalid_parameter("product_code is not one of this app's products"))?;
    if biz.biz_scene != product.biz_scene() {
        return Err(invalid_parameter("biz_scene must be DIRECT_TRANSFER"));
    }
    if biz.order_title.as_deref().is_some_and(str::is_empty) {
        return Err(invalid_parameter("order_title must not be empty"));
    }
    let payee = biz.payee_info;
    if payee.identity_type != product.identity_type() {
        return Err(invalid_parameter(
            "payee_info.identity_type does not match product_code",
        ));
    }
    if payee.identity.trim().is_empty() {
        return Err(invalid_parameter("payee_info.identity is required"));
    }
    let name = payee
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| invalid_parameter("payee_info.name is required"))?;
    match (product, payee.bankcard_ext_info) {
        (AlipayProduct::BankCard, Some(ext)) => {
            if let Some(problem) = ext.problem() {
                return Err(invalid_parameter(problem));
            }
        }
        (AlipayProduct::BankCard, None) => {
            return Err(invalid_parameter(
                "payee_info.bankcard_ext_info is required for a bank card",
            ));
        }
        (AlipayProduct::AlipayAccount, _) => {}
    }
    let planned_failure = faults.fail_openids.contains(&payee.identity);
    Ok((
        NewOrder {
            out_biz_no: biz.out_biz_no,
            product,
            amount_fen: amount_fen.0,
            identity: payee.identity,
            name,
            notify_url: params
                .get("notify_url")
                .filter(|url| !url.is_empty())
                .cloned(),
        },
        planned_failure,
    ))
}

fn yuan(fen: i64) -> String {
    // Zero has no `yuan_from_fen` (no transfer is of zero), but a fee can be.
    yuan_from_fen(AmountFen(fen)).unwrap_or_else(|| "0.00".to_owned())
}

fn transfer_node(order: &Order) -> Value {
    json!({
        "code": "10000",
        "msg": "Success",
        "order_id": order.order_id,
        "out_biz_no": order.out_biz_no,
        "pay_fund_order_id": order.pay_fund_order_id,
        "status": order.status,
        "trans_date": order.trans_date,
    })
}

fn query_node(order: &Order) -> Value {
    let mut node = json!({
        "code": "10000",
        "msg": "Success",
        "order_id": order.order_id,
        "pay_fund_order_id": order.pay_fund_order_id,
        "out_biz_no": order.out_biz_no,
        "trans_amount": yuan(order.amount_fen),
        "status": order.status,
    });
    if let Some(pay_date) = &order.pay_date {
        node["pay_date"] = json!(pay_date);
    }
    match order.status {
        FundOrderStatus::Fail | FundOrderStatus::Refund => {
            if let Some(error_code) = &order.error_code {
                node["error_code"] = json!(error_code);
            }
            if let Some(fail_reason) = &order.fail_reason {
                node["fail_reason"] = json!(fail_reason);
            }
        }
        FundOrderStatus::Success | FundOrderStatus::Dealing => {}
    }
    if order.product == AlipayProduct::BankCard {
        node["order_fee"] = json!(yuan(order.order_fee_fen));
        if let Some(arrival_time_end) = &order.arrival_time_end {
            node["arrival_time_end"] = json!(arrival_time_end);
        }
    }
    node
}

/// Waits out `Faults::latency_ms`.
async fn latency(sandbox: &Sandbox, faults: &Faults) {
    if faults.latency_ms > 0 {
        sandbox
            .sleep(Duration::from_millis(faults.latency_ms))
            .await;
    }
}

/// The faults that strike before anything changes. A limited call is an
/// HTTP 429 from the gateway's front [U: how Alipay throttles is not
/// documented here]; an error is `20000 isp.unknow-error`.
fn fault_before_commit(
    sandbox: &Sandbox,
    faults: &Faults,
    mode: KeyMode,
    method: &str,
    out_biz_no: &str,
    attempt: u32,
) -> Option<Response> {
    if faults.hits(Fault::Transient, out_biz_no, attempt) {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                "sandbox: rate limited (injected)",
            )
                .into_response(),
        );
    }
    if faults.hits(Fault::ErrorBeforeCommit, out_biz_no, attempt) {
        return Some(answer(
            sandbox,
            mode,
            &node_name(method),
            &Refusal::unknown_outcome().node(),
        ));
    }
    None
}

/// `POST /gateway.do`.
pub(crate) async fn gateway(
    State(sandbox): State<Arc<Sandbox>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match parameters(raw_query.as_deref(), &body) {
        Ok(params) => params,
        Err(refusal) => return answer(&sandbox, KeyMode::PublicKey, ERROR_NODE, &refusal.node()),
    };
    let Some(method) = params
        .get("method")
        .filter(|method| !method.is_empty())
        .cloned()
    else {
        let refusal = Refusal::missing("isv.missing-method", "缺少方法名参数");
        return answer(&sandbox, KeyMode::PublicKey, ERROR_NODE, &refusal.node());
    };
    let known = matches!(
        method.as_str(),
        TRANSFER_METHOD | QUERY_METHOD | BILL_URL_METHOD
    );
    let refused_node = if known {
        node_name(&method)
    } else {
        ERROR_NODE.to_owned()
    };
    let mode = match authenticate(&sandbox, &params) {
        Ok(mode) => mode,
        Err(refusal) => {
            let mode = if params.contains_key("app_cert_sn") {
                KeyMode::Certificate
            } else {
                KeyMode::PublicKey
            };
            return answer(&sandbox, mode, &refused_node, &refusal.node());
        }
    };
    match method.as_str() {
        TRANSFER_METHOD => transfer(&sandbox, mode, &params).await,
        QUERY_METHOD => query(&sandbox, mode, &params).await,
        BILL_URL_METHOD => {
            let host = headers.get(HOST).and_then(|host| host.to_str().ok());
            bill_download_url(&sandbox, mode, &params, host).await
        }
        _ => answer(
            &sandbox,
            mode,
            ERROR_NODE,
            &Refusal::invalid("isv.invalid-method", "不存在的方法名").node(),
        ),
    }
}

async fn transfer(
    sandbox: &Arc<Sandbox>,
    mode: KeyMode,
    params: &BTreeMap<String, String>,
) -> Response {
    let refuse =
        |refusal: Refusal| answer(sandbox, mode, &node_name(TRANSFER_METHOD), &refusal.node());
    let faults = sandbox.faults();
    latency(sandbox, &faults).await;
    let (new_order, planned_failure) = match validate_transfer(params, &faults) {
        Ok(valid) => valid,
        Err(refusal) => return refuse(refusal),
    };
    let out_biz_no = new_order.out_biz_no.clone();
    let attempt = sandbox
        .book()
        .next_attempt(Endpoint::AlipayTransfer, &out_biz_no);
    if let Some(refusal) = fault_before_commit(
        sandbox,
        &faults,
        mode,
        TRANSFER_METHOD,
        &out_biz_no,
        attempt,
    ) {
        return refusal;
    }
    // An account transfer to a payee whose name does not match is refused
    // outright; no order exists afterwards.
    if planned_failure && new_order.product == AlipayProduct::AlipayAccount {
        return refuse(Refusal::business(
            "PAYEE_USER_INFO_ERROR",
            "收款方信息与实名信息不符",
        ));
    }
    let commit =
        sandbox
            .book()
            .alipay_commit(new_order, planned_failure, faults.bank_order_fee_fen);
    let order = match commit {
        OrderCommit::Created(order) => {
            tracing::info!(out_biz_no = %order.out_biz_no, amount_fen = order.amount_fen, status = %order.status, "sandbox Alipay order created");
            sandbox.alipay_after_commit(&order);
            order
        }
        OrderCommit::Replayed(order) => order,
        OrderCommit::Conflict => {
            return refuse(Refusal::business(
                CONFLICT_SUB_CODE,
                "out_biz_no 已存在且请求参数不一致",
            ));
        }
        OrderCommit::Full => {
            tracing::warn!(
                max_bills = MAX_BILLS,
                "sandbox is full; refusing new Alipay orders"
            );
            return refuse(Refusal::business(
                "SYSTEM_ERROR",
                "sandbox holds too many orders; restart it",
            ));
        }
    };
    if faults.hits(Fault::ErrorAfterCommit, &out_biz_no, attempt) {
        return refuse(Refusal::unknown_outcome());
    }
    if faults.hits(Fault::TimeoutAfterSuccess, &out_biz_no, attempt) {
        sandbox.sleep(Duration::from_millis(faults.hang_ms)).await;
    }
    answer(
        sandbox,
        mode,
        &node_name(TRANSFER_METHOD),
        &transfer_node(&order),
    )
}

async fn query(
    sandbox: &Arc<Sandbox>,
    mode: KeyMode,
    params: &BTreeMap<String, String>,
) -> Response {
    let refuse =
        |refusal: Refusal| answer(sandbox, mode, &node_name(QUERY_METHOD), &refusal.node());
    let faults = sandbox.faults();
    latency(sandbox, &faults).await;
    let biz: AlipayQueryBiz = match biz_content(params) {
        Ok(biz) => biz,
        Err(refusal) => return refuse(refusal),
    };
    let Some(out_biz_no) = biz.out_biz_no.filter(|number| valid_out_biz_no(number)) else {
        return refuse(invalid_parameter(
            "out_biz_no is required (the sandbox does not look up order_id)",
        ));
    };
    // With out_biz_no, both are mandatory: the number is only unique per
    // product and scene.
    let (Some(product_code), Some(biz_scene)) = (biz.product_code, biz.biz_scene) else {
        return refuse(invalid_parameter(
            "product_code and biz_scene are required with out_biz_no",
        ));
    };
    let attempt = sandbox
        .book()
        .next_attempt(Endpoint::AlipayQuery, &out_biz_no);
    if let Some(refusal) =
        fault_before_commit(sandbox, &faults, mode, QUERY_METHOD, &out_biz_no, attempt)
    {
        return refusal;
    }
    let order = sandbox.book().alipay_order(&out_biz_no).cloned();
    match order {
        Some(order)
            if order.product.product_code() == product_code
                && order.product.biz_scene() == biz_scene =>
        {
            answer(sandbox, mode, &node_name(QUERY_METHOD), &query_node(&order))
        }
        // The sub-code the client maps to "no such bill" ([U] at Alipay).
        Some(_) | None => refuse(Refusal::business("ORDER_NOT_EXIST", "转账订单不存在")),
    }
}

/// `alipay.data.dataservice.bill.downloadurl.query`: the URL of a day's
/// account log, served by the sandbox under the host the request reached.
/// Latency applies; the other faults do not, as on the WeChat bill.
async fn bill_download_url(
    sandbox: &Arc<Sandbox>,
    mode: KeyMode,
    params: &BTreeMap<String, String>,
    host: Option<&str>,
) -> Response {
    let refuse =
        |refusal: Refusal| answer(sandbox, mode, &node_name(BILL_URL_METHOD), &refusal.node());
    let faults = sandbox.faults();
    latency(sandbox, &faults).await;
    let biz: AlipayBillUrlBiz = match biz_content(params) {
        Ok(biz) => biz,
        Err(refusal) => return refuse(refusal),
    };
    if biz.bill_type != BILL_TYPE {
        return refuse(invalid_parameter(
            "the sandbox keeps only bill_type=signcustomer (the account log)",
        ));
    }
    // Real Alipay also takes yyyy-MM for a month; the sandbox keeps days.
    let Ok(bill_date) = NaiveDate::parse_from_str(&biz.bill_date, "%Y-%m-%d") else {
        return refuse(invalid_parameter(
            "bill_date must be yyyy-MM-dd (the sandbox has no monthly bills)",
        ));
    };
    let Some(host) = host else {
        return refuse(invalid_parameter("the Host header is required"));
    };
    match alipay_bill_download_url(sandbox, &format!("{}://{host}", sandbox.scheme), bill_date) {
        Ok(url) => answer(
            sandbox,
            mode,
            &node_name(BILL_URL_METHOD),
            &json!({
                "code": "10000",
                "msg": "Success",
                "bill_download_url": url,
            }),
        ),
        Err(BillRefusal::NotReady) => refuse(Refusal::business(
            BILL_NOT_READY_SUB_CODE,
            "账单不存在 (sandbox: that day is not over by the sandbox's clock)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_yuan_of_at_least_ten_fen_is_a_transfer_amount() {
        let canonical = |yuan: &str| {
            fen_from_yuan(yuan).filter(|amount| yuan_from_fen(*amount).as_deref() == Some(yuan))
        };
        assert_eq!(canonical("0.10"), Some(AmountFen(10)));
        assert_eq!(canonical("1234.56"), Some(AmountFen(123_456)));
        assert_eq!(canonical("1.5"), None);
        assert_eq!(canonical("3"), None);
        assert_eq!(canonical("01.00"), None);
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(250), "2.50");
    }

    #[test]
    fn out_biz_numbers_are_one_to_sixty_four_characters() {
        assert!(valid_out_biz_no("wd1"));
        assert!(valid_out_biz_no(&"单".repeat(64)));
        assert!(!valid_out_biz_no(&"a".repeat(65)));
        assert!(!valid_out_biz_no(" "));
    }
}
