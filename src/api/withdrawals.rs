//! `/v1/withdrawals` (SPEC §2.4, §4): quote, request, the withdrawal with its
//! timeline, the distributor's cancel, ops' approve and reject, the review
//! queue; and `/v1/gateways/wechat/notify`, the gateway's signed callback.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::idempotency_key;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, JsonBodyBytes, OptionalJsonBody, Path, Query, RawBody};
use crate::api::orders::TimelineEntry;
use crate::api::policy::{Allowed, OpsOrAdmin, Policy, SelfOnly, SelfOrOpsAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::access::{Principal, Role};
use crate::domain::digest::sha256_hex;
use crate::domain::ids::{CertificateNumber, DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::money::Money;
use crate::domain::withdrawal::ReviewDecision;
use crate::domain::withdrawal::{RiskFlag, Speed, WithdrawalState};
use crate::engine::withdrawal::{WithdrawalError, WithdrawalRequest};
use crate::state::AppState;
use crate::store::{MAX_PAGE, StoreError, WithdrawalRecord, WithdrawalRequestOutcome};

/// Longest review note or rejection reason.
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalBody {
    pub distributor_id: DistributorId,
    /// CNY as a string with at most two decimals, e.g. `"100.00"`.
    pub amount: String,
    /// One of the distributor's payout accounts (`pa_…`).
    pub payout_account_id: String,
    pub speed: Speed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuoteView {
    pub gross: Money,
    pub tax: Money,
    pub fee: Money,
    pub net: Money,
    /// Every figure of the withholding (tax reference §4).
    #[schema(value_type = Object)]
    pub withholding: serde_json::Value,
    /// Whether it would wait for ops (see `risk_flags`).
    pub review_required: bool,
    pub risk_flags: Vec<RiskFlag>,
    /// When the money would be sent if requested now: the settlement
    /// cycle's next cut-off for a standard withdrawal, now for an express
    /// one (a withdrawal that waits for review goes at approval if that is
    /// later).
    pub send_after: DateTime<Utc>,
    /// The settlement cycle, e.g. `daily 15:00 Asia/Shanghai`, or `express`.
    pub cycle: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayView {
    /// Our idempotency key at the gateway, derived from the withdrawal id.
    pub out_bill_no: String,
    /// The gateway's own bill number, once known.
    pub bill_no: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalView {
    pub id: String,
    pub distributor_id: String,
    pub payout_account_id: String,
    pub channel: String,
    pub speed: Speed,
    pub state: WithdrawalState,
    pub gross: Money,
    pub tax: Money,
    pub fee: Money,
    pub net: Money,
    pub tax_method: String,
    pub tax_month: String,
    #[schema(value_type = Object)]
    pub withholding: serde_json::Value,
    pub risk_flags: Vec<RiskFlag>,
    pub gateway: GatewayView,
    /// WeChat user-confirm mode: what the shop's app hands to the payee.
    pub package_info: Option<String>,
    /// Why it was rejected, cancelled or failed.
    pub failure_reason: Option<String>,
    /// The reviewer's token id; shown to ops and admin only (`null` for a distributor).
    pub reviewed_by: Option<String>,
    pub review_note: Option<String>,
    /// The withholding certificate in force (shown by `GET /v1/withdrawals/{id}`
    /// once the certificate step has run after payment; corrections replace it).
    pub certificate_number: Option<String>,
    pub transfer_attempts: i64,
    pub requested_at: DateTime<Utc>,
    /// When the money is sent: the settlement cycle's cut-off for a standard
    /// withdrawal, the request for an express one; one approved by ops after
    /// it goes at approval. `null` for withdrawals recorded before cycles.
    pub send_after: Option<DateTime<Utc>>,
    /// The settlement cycle it was scheduled under, e.g.
    /// `daily 15:00 Asia/Shanghai`, or `express`; `null` before cycles.
    pub cycle: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Present on `GET /v1/withdrawals/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

impl From<WithdrawalRecord> for WithdrawalView {
    fn from(record: WithdrawalRecord) -> WithdrawalView {
        WithdrawalView {
            withholding: serde_json::from_str(&record.withholding)
                .unwrap_or(serde_json::Value::Null),
            id: record.id.into_string(),
            distributor_id: record.distributor_id.to_string(),
            payout_account_id: record.payout_account_id.into_string(),
            channel: record.channel.as_str().to_owned(),
            speed: record.speed,
            state: record.state,
            gross: record.gross,
            tax: record.tax,
            fee: record.fee,
            net: record.net,
            tax_method: record.tax_method,
            tax_month: record.tax_month,
            risk_flags: record.risk_flags,
            gateway: GatewayView {
                out_bill_no: record.out_bill_no,
                bill_no: record.gateway_bill_no,
            },
            package_info: record.package_info,
            failure_reason: record.failure_reason,
            reviewed_by: record.reviewed_by,
            review_note: record.review_note,
            certificate_number: None,
            transfer_attempts: record.transfer_attempts,
            requested_at: record.requested_at,
            send_after: record.send_after,
            cycle: record.payout_cycle,
            finished_at: record.finished_at,
            timeline: None,
        }
    }
}

impl WithdrawalView {
    /// The view as `principal` may see it: who reviewed a withdrawal (the
    /// reviewer's token id, in `reviewed_by` and in the review's timeline
    /// entry) is for ops and admin; a distributor sees the decision and its
    /// reason, not the person's handle.
    fn seen_by(mut self, principal: &Principal) -> WithdrawalView {
        if principal.has_any_role(&[Role::Ops, Role::Admin]) {
            return self;
        }
        if let Some(reviewer) = self.reviewed_by.take()
            && let Some(timeline) = &mut self.timeline
        {
            for entry in timeline {
                entry.detail = entry
                    .detail
                    .take()
                    .and_then(|detail| without_reviewer(detail, &reviewer));
            }
        }
        self
    }
}

/// A timeline detail without the reviewer's token id: the review's entries
/// read `by {reviewer}` (approved) or `by {reviewer}: {reason}` (rejected).
fn without_reviewer(detail: String, reviewer: &str) -> Option<String> {
    let by = format!("by {reviewer}");
    if detail == by {
        return None;
    }
    if let Some(reason) = detail.strip_prefix(&format!("{by}: ")) {
        return Some(reason.to_owned());
    }
    Some(detail.replace(reviewer, "ops"))
}

impl From<WithdrawalError> for ApiError {
    fn from(error: WithdrawalError) -> ApiError {
        match error {
            WithdrawalError::Refused(refusal) => {
                let refused = ApiError::unprocessable(refusal.code(), refusal.to_string());
                match refusal.field() {
                    Some(field) => refused.with_field(field),
                    None => refused,
                }
            }
            WithdrawalError::State(refusal) => {
                ApiError::conflict(refusal.code(), refusal.to_string())
            }
            WithdrawalError::BadAmount(message) => {
                ApiError::bad_request("invalid_amount", message).with_field("amount")
            }
            WithdrawalError::NotFound { what, .. } => ApiError::not_found(what),
            WithdrawalError::GatewayNotReady => ApiError::unavailable(error),
            WithdrawalError::Gateway(cause) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "gateway_error",
                format!("the payout gateway did not answer usefully: {cause}"),
            ),
            WithdrawalError::CallbackMismatch { .. } => {
                ApiError::unprocessable("callback_mismatch", error.to_string())
            }
            WithdrawalError::Store(StoreError::NotFound { what, .. }) => ApiError::not_found(what),
            WithdrawalError::Store(store) => store.into(),
        }
    }
}

fn request_of(body: &WithdrawalBody) -> Result<WithdrawalRequest, ApiError> {
    let account = PayoutAccountId::parse(body.payout_account_id.trim()).map_err(|_| {
        ApiError::bad_request("invalid_field", "payout_account_id must be an account id")
            .with_field("payout_account_id")
    })?;
    let amount = WithdrawalRequest::parse_amount(&body.amount)?;
    Ok(WithdrawalRequest {
        distributor_id: body.distributor_id.clone(),
        amount,
        payout_account_id: account,
        speed: body.speed,
    })
}

#[utoipa::path(
    post, path = "/v1/withdrawals/quote", tag = "withdrawals", request_body = WithdrawalBody,
    responses(
        (status = 200, description = "what the withdrawal would come to; nothing changes", body = QuoteView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field, invalid_amount", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 422, description = "a check refused it (same codes as the request)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn quote(
    State(state): State<AppState>,
    caller: Allowed<SelfOnly>,
    JsonBody(body): JsonBody<WithdrawalBody>,
) -> Result<Json<QuoteView>, ApiError> {
    caller.for_distributor(&body.distributor_id)?;
    let quote = state.withdrawals.quote(&request_of(&body)?).await?;
    Ok(Json(QuoteView {
        gross: quote.gross,
        tax: quote.tax,
        fee: quote.fee,
        net: quote.net,
        withholding: serde_json::to_value(quote.withholding).map_err(ApiError::internal)?,
        review_required: quote.review_required,
        risk_flags: quote.risk_flags,
        send_after: quote.send_after,
        cycle: quote.cycle,
    }))
}

#[utoipa::path(
    post, path = "/v1/withdrawals", tag = "withdrawals", request_body = WithdrawalBody,
    params(("Idempotency-Key" = String, Header, description = "same key + same body = the same withdrawal")),
    responses(
        (status = 202, description = "reserved; approved (transfer queued for `send_after`, its settlement cycle's cut-off, or now for express) or waiting for review", body = WithdrawalView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field, invalid_amount, missing_idempotency_key", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 409, description = "key reused with another body", body = ErrorBody),
        (status = 422, description = "identity_missing, amount_below_minimum, amount_precision, insufficient_balance, daily_limit_exceeded, balance_negative, payout_account_not_owned, channel_not_configured", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Allowed<SelfOnly>,
    headers: HeaderMap,
    JsonBodyBytes { value: body, bytes }: JsonBodyBytes<WithdrawalBody>,
) -> Result<(StatusCode, Json<WithdrawalView>), ApiError> {
    caller.for_distributor(&body.distributor_id)?;
    let key = idempotency_key(&headers)?;
    let outcome = state
        .withdrawals
        .request(&request_of(&body)?, key, sha256_hex(&bytes))
        .await?;
    let record = match outcome {
        WithdrawalRequestOutcome::Created(record) | WithdrawalRequestOutcome::Replayed(record) => {
            record
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(WithdrawalView::from(record).seen_by(&caller)),
    ))
}

/// The withdrawal the path names, if the caller may see it; a path that is
/// no withdrawal id names none.
async fn visible_withdrawal<P: Policy>(
    state: &AppState,
    caller: &Allowed<P>,
    id: &str,
) -> Result<WithdrawalRecord, ApiError> {
    let id = WithdrawalId::parse(id).map_err(|_| ApiError::not_found("withdrawal"))?;
    let record = state
        .store
        .withdrawal(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("withdrawal"))?;
    // Someone else's withdrawal is "not found" to a distributor, not "forbidden":
    // ids are not to be probed.
    if caller.is_stranger_to(&record.distributor_id) {
        return Err(ApiError::not_found("withdrawal"));
    }
    caller.for_distributor(&record.distributor_id)?;
    Ok(record)
}

#[utoipa::path(
    get, path = "/v1/withdrawals/{id}", tag = "withdrawals",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "state, figures, gateway reference and timeline", body = WithdrawalView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such withdrawal (or another distributor's)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Allowed<SelfOrOpsAdmin>,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let record = visible_withdrawal(&state, &caller, &id).await?;
    let timeline = state
        .store
        .withdrawal_events(&record.id)
        .await?
        .into_iter()
        .map(|event| TimelineEntry {
            at: event.at,
            step: event.step,
            outcome: event.outcome,
            attempt: event.attempt,
            detail: event.detail,
        })
        .collect();
    let certificate_number = state.store.certificate_number_for(&record.id).await?;
    let mut view = WithdrawalView::from(record);
    view.timeline = Some(timeline);
    view.certificate_number = certificate_number.map(CertificateNumber::into_string);
    Ok(Json(view.seen_by(&caller)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// e.g. `reviewing` for the review queue.
    pub state: WithdrawalState,
    pub limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/withdrawals", tag = "withdrawals", params(ListQuery),
    responses(
        (status = 200, description = "oldest first", body = [WithdrawalView]),
        (status = 400, description = "missing_field, invalid_field (state is required and must be a withdrawal state)", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    let records = state
        .store
        .withdrawals_in_states(
            &[query.state],
            state.clock.now() + chrono::Duration::days(1),
            query.limit.unwrap_or(50).clamp(1, MAX_PAGE),
        )
        .await?;
    Ok(Json(
        records.into_iter().map(WithdrawalView::from).collect(),
    ))
}

#[utoipa::path(
    post, path = "/v1/withdrawals/{id}/cancel", tag = "withdrawals",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "cancelled and funds returned (or, awaiting the payee, cancelling at the gateway)", body = WithdrawalView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such withdrawal (or another distributor's)", body = ErrorBody),
        (status = 409, description = "withdrawal_not_cancellable: the transfer has started or the payee accepted; the message names the state", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Allowed<SelfOnly>,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let record = visible_withdrawal(&state, &caller, &id).await?;
    let cancelled = state.withdrawals.cancel(&record.id).await?;
    Ok(Json(
        WithdrawalView::from(cancelled).seen_by(&caller.principal),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Shown to the distributor.
    pub reason: String,
}

fn check_reason(text: &str, field: &str) -> Result<String, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("must be 1–{MAX_REASON_CHARS} characters"),
        )
        .with_field(field.to_owned()));
    }
    Ok(trimmed.to_owned())
}

#[utoipa::path(
    post, path = "/v1/withdrawals/{id}/approve", tag = "withdrawals",
    params(("id" = String, Path)), request_body = ApproveBody,
    responses(
        (status = 200, description = "approved; the transfer is queued", body = WithdrawalView),
        (status = 400, description = "invalid_path, malformed_json, unknown_field, invalid_field (note)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such withdrawal", body = ErrorBody),
        (status = 409, description = "withdrawal_not_in_review", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
    // The body is optional: an approval needs no words.
    OptionalJsonBody(body): OptionalJsonBody<ApproveBody>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let principal = &caller.principal;
    let body = body.unwrap_or_default();
    let note = body
        .note
        .map(|note| check_reason(&note, "note"))
        .transpose()?;
    let decision = ReviewDecision::Approve {
        by: principal.token_id.clone(),
        note: note.clone(),
    };
    let id = WithdrawalId::parse(id).map_err(|_| ApiError::not_found("withdrawal"))?;
    let after = state
        .withdrawals
        .review(&id, &decision, &crate::service::audit::Actor::of(principal))
        .await?;
    Ok(Json(after.into()))
}

#[utoipa::path(
    post, path = "/v1/withdrawals/{id}/reject", tag = "withdrawals",
    params(("id" = String, Path)), request_body = RejectBody,
    responses(
        (status = 200, description = "rejected; funds returned", body = WithdrawalView),
        (status = 400, description = "invalid_path, malformed_json, missing_field, unknown_field, invalid_field (reason)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such withdrawal", body = ErrorBody),
        (status = 409, description = "withdrawal_not_in_review", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reject(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RejectBody>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let principal = &caller.principal;
    let reason = check_reason(&body.reason, "reason")?;
    let decision = ReviewDecision::Reject {
        by: principal.token_id.clone(),
        reason: reason.clone(),
    };
    let id = WithdrawalId::parse(id).map_err(|_| ApiError::not_found("withdrawal"))?;
    let after = state
        .withdrawals
        .review(&id, &decision, &crate::service::audit::Actor::of(principal))
        .await?;
    Ok(Json(after.into()))
}

/// WeChat Pay's success answer to a notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyAnswer {
    pub code: String,
    pub message: String,
}

#[utoipa::path(
    post, path = "/v1/gateways/wechat/notify", tag = "gateways",
    request_body(content = String, content_type = "application/json", description = "MCHTRANSFER.BILL.FINISHED, signed (Wechatpay-* headers) and encrypted"),
    responses(
        (status = 200, description = "verified and applied, already known, or recorded as unexpected (a bill fenrun never sent, or a withdrawal not at the gateway: logged, counted in fenrun_gateway_unexpected_success_total, nothing changed)", body = NotifyAnswer),
        (status = 401, description = "bad_signature, stale_callback, unknown_serial: nothing changed", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 422, description = "callback_mismatch: the amount differs from the withdrawal's net; nothing changed", body = ErrorBody),
    )
)]
pub async fn wechat_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<NotifyAnswer>, ApiError> {
    let gateway = state
        .withdrawals
        .gateway()
        .ok_or_else(|| ApiError::unavailable("the payout gateway is not connected yet"))?;
    let news = gateway
        .verify_callback(&headers, &body)
        .map_err(|refusal| {
            tracing::warn!(reason = %refusal.message, "gateway callback refused: nothing changed");
            ApiError::unauthenticated(refusal.code, refusal.message)
        })?;
    // A verified notification is acknowledged once it is recorded, even one
    // that could not be applied: WeChat Pay resends a notification until it
    // hears 2xx (for a day), and a resend of a bill we never sent or of a
    // withdrawal no longer at the gateway would change nothing; the
    // engine has logged and counted it for a person to reconcile.
    state.withdrawals.on_callback(news).await?;
    Ok(Json(NotifyAnswer {
        code: "SUCCESS".to_owned(),
        message: "OK".to_owned(),
    }))
}

#[utoipa::path(
    post, path = "/v1/gateways/alipay/notify", tag = "gateways",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "alipay.fund.trans.order.changed, RSA2-signed form fields"),
    responses(
        (status = 200, description = "the text `success`: verified and applied, already known, or recorded as unexpected (logged, counted, nothing changed); Alipay stops redelivering", body = String, content_type = "text/plain"),
        (status = 401, description = "bad_signature, unknown_app, missing_signature_field, malformed_callback, channel_not_configured: nothing changed; anything but `success` makes Alipay deliver again", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 422, description = "callback_mismatch: the amount or the rail differs from the withdrawal's; nothing changed", body = ErrorBody),
        (status = 503, description = "not recorded (the database or the gateway is not ready); Alipay delivers it again", body = ErrorBody),
    )
)]
/// Alipay's notification. Only `success` stops Alipay's redelivery, so it
/// is answered once the news is durably recorded; every refusal is the
/// usual JSON error, which Alipay reads as "deliver again".
pub async fn alipay_notify(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let gateway = state
        .withdrawals
        .gateway()
        .ok_or_else(|| ApiError::unavailable("the payout gateway is not connected yet"))?;
    let news = gateway
        .verify_alipay_notification(&body)
        .map_err(|refusal| {
            tracing::warn!(code = refusal.code, reason = %refusal.message, "Alipay notification refused: nothing changed");
            ApiError::unauthenticated(refusal.code, refusal.message)
        })?;
    state.withdrawals.on_callback(news).await?;
    Ok((StatusCode::OK, [(CONTENT_TYPE, "text/plain")], "success").into_response())
}
