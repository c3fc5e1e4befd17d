//! `/v1/orders`: confirmed orders in, refunds, the order's timeline; and a
//! distributor's commission lines.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path, Query};
use crate::api::policy::{AdminOpsOrIngest, Allowed, IngestOnly, Owner, SelfOrOpsAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::commission::{ExplainedLine, OrderItem, RuleTrail};
use crate::domain::digest::sha256_hex;
use crate::domain::ids::{BuyerId, DistributorId, OrderId, is_dot_segment};
use crate::domain::money::{Money, Rate};
use crate::domain::settlement::{LineState, OrderState};
use crate::engine::settlement::{IngestAnswer, NewOrder, SettlementError};
use crate::state::AppState;
use crate::store::{LineRecord, OrderRecord, RefundOutcome};

pub mod batch;

/// Most items one order may carry.
const MAX_ITEMS: usize = 500;
/// Longest sku or category.
const MAX_LABEL_CHARS: usize = 64;
/// Page size of commission listings when the caller does not say.
const DEFAULT_PAGE: i64 = 50;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmedOrder {
    /// The shop's order id; re-sending the same order is a no-op.
    pub order_id: OrderId,
    /// The attributed seller (level 1).
    pub distributor_id: DistributorId,
    pub buyer_id: BuyerId,
    /// RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: DateTime<FixedOffset>,
    /// RFC 3339; the buyer's confirmation of receipt (确认收货). Starts the hold.
    #[schema(value_type = String, format = DateTime)]
    pub confirmed_at: DateTime<FixedOffset>,
    pub items: Vec<ItemBody>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    pub sku: String,
    pub category: String,
    /// Paid for the line, CNY with at most two decimals.
    pub amount: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommissionView {
    pub beneficiary_id: String,
    /// 1 = the seller, 2 = their referrer, 3 = the referrer's referrer.
    pub level: u8,
    pub base: Money,
    pub rate: Rate,
    pub amount: Money,
    pub state: LineState,
    /// How the line came to be, step by step, each a `step`-tagged object:
    /// `rate` (its `source` — grade, sku or category override — the
    /// `source_rate`, the `tier` step that replaced a level-1 grade rate,
    /// the `campaign` multiplier, the `rate` paid, on `base`), `order_cap`
    /// and `daily_cap` (the fen each `removed`), `cleared` (a zero line).
    /// Absent on lines written before explanations were kept.
    #[schema(value_type = Option<Vec<Object>>)]
    pub rule_trail: Option<RuleTrail>,
    /// The same in one sentence, for people.
    pub explanation: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestView {
    pub order_id: String,
    pub state: OrderState,
    pub release_at: DateTime<Utc>,
    /// True when `release_at` was counted over a year whose State Council
    /// holiday notice is not applied yet (statutory holidays computed):
    /// the notice may still move it.
    pub release_at_provisional: bool,
    pub plan_version: i64,
    /// Why the order is held longer than the usual hold (risk rules of the
    /// plan: `same_buyer_over_limit (…)`, `self_purchase`); empty when not.
    pub risk_flags: Vec<String>,
    /// The business days the flags add to the hold.
    pub extra_hold_days: u32,
    pub commissions: Vec<CommissionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub step: String,
    pub outcome: String,
    pub attempt: i64,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub distributor_id: String,
    pub buyer_id: String,
    pub state: OrderState,
    pub placed_at: DateTime<Utc>,
    pub confirmed_at: DateTime<Utc>,
    pub release_at: DateTime<Utc>,
    /// As in the ingest answer: the release time may still move.
    pub release_at_provisional: bool,
    pub total: Money,
    pub refunded: Money,
    pub plan_version: i64,
    /// As in the ingest answer.
    pub risk_flags: Vec<String>,
    pub extra_hold_days: u32,
    pub commissions: Vec<CommissionView>,
    pub timeline: Vec<TimelineEntry>,
}

/// A stored line's rule trail; a trail that does not parse is logged and
/// left out rather than failing the whole answer.
fn stored_trail(line: &LineRecord) -> Option<RuleTrail> {
    line.rule_trail.as_deref().and_then(|text| {
        serde_json::from_str::<RuleTrail>(text)
            .inspect_err(|error| {
                tracing::error!(line_id = line.id, error = %error, "a stored rule trail does not parse");
            })
            .ok()
    })
}

fn line_view(line: &LineRecord) -> CommissionView {
    let rule_trail = stored_trail(line);
    CommissionView {
        beneficiary_id: line.beneficiary_id.clone(),
        level: line.level,
        base: line.base,
        rate: line.rate,
        amount: line.amount,
        state: line.state,
        explanation: rule_trail.as_ref().map(ToString::to_string),
        rule_trail,
    }
}

fn fresh_line_view(explained: &ExplainedLine) -> CommissionView {
    let line = &explained.line;
    CommissionView {
        beneficiary_id: line.beneficiary.to_string(),
        level: line.level,
        base: line.base,
        rate: line.rate,
        amount: line.amount,
        state: LineState::Pending,
        explanation: Some(explained.rule_trail.to_string()),
        rule_trail: Some(explained.rule_trail.clone()),
    }
}

impl From<OrderRecord> for OrderView {
    fn from(order: OrderRecord) -> OrderView {
        OrderView {
            commissions: order.lines.iter().map(line_view).collect(),
            timeline: order
                .timeline
                .into_iter()
                .map(|event| TimelineEntry {
                    at: event.at,
                    step: event.step,
                    outcome: event.outcome,
                    attempt: event.attempt,
                    detail: event.detail,
                })
                .collect(),
            order_id: order.order_id,
            distributor_id: order.distributor_id,
            buyer_id: order.buyer_id,
            state: order.state,
            placed_at: order.placed_at,
            confirmed_at: order.confirmed_at,
            release_at: order.release_at,
            release_at_provisional: order.release_at_provisional,
            total: order.total,
            refunded: order.refunded,
            plan_version: order.plan_version,
            risk_flags: order.risk_flags,
            extra_hold_days: order.extra_hold_days,
        }
    }
}

impl From<SettlementError> for ApiError {
    fn from(error: SettlementError) -> ApiError {
        match error {
            SettlementError::Order(refusal) => {
                let refused = ApiError::unprocessable(refusal.code(), refusal.to_string());
                match refusal.field() {
                    Some(field) => refused.with_field(field),
                    None => refused,
                }
            }
            SettlementError::Refund(refusal) => {
                ApiError::unprocessable(refusal.code(), refusal.to_string())
                    .with_field(refusal.field())
            }
            SettlementError::OrderConflict => {
                ApiError::conflict("order_conflict", error.to_string())
            }
            SettlementError::RefundConflict { .. } => {
                ApiError::conflict("refund_conflict", error.to_string())
            }
            SettlementError::NotFound(what) => ApiError::not_found(what),
            SettlementError::Stopping => ApiError::unavailable("the service is stopping"),
            SettlementError::Overflow(_) => ApiError::internal(error),
            SettlementError::Store(store) => store.into(),
        }
    }
}

/// A sku or category: 1–64 printable characters, and not `.` or `..` (a
/// sku is an id of the shop's, and such ids end up in URLs and file names).
fn check_label(text: &str, field: String) -> Result<String, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > MAX_LABEL_CHARS
        || trimmed.chars().any(char::is_control)
        || is_dot_segment(trimmed)
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("must be 1–{MAX_LABEL_CHARS} printable characters, and not '.' or '..'"),
        )
        .with_field(field));
    }
    Ok(trimmed.to_owned())
}

/// 422 `amount_too_large`: an amount over a configured ceiling.
fn amount_too_large(field: String, message: String) -> ApiError {
    ApiError::unprocessable("amount_too_large", message).with_field(field)
}

#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", request_body = ConfirmedOrder,
    responses(
        (status = 202, description = "held; commissions pending", body = IngestView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field, invalid_amount", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 409, description = "order_id sent before with a different body", body = ErrorBody),
        (status = 422, description = "unknown distributor, no items, confirmed before placed; amount_too_large: a line (field `items[i].amount`) or the total (field `items`) over its ceiling", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    _caller: Allowed<IngestOnly>,
    JsonBody(request): JsonBody<ConfirmedOrder>,
) -> Result<(StatusCode, Json<IngestView>), ApiError> {
    let order = prepare(&state, request)?;
    let (view, _) = ingest_prepared(&state, order).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Checks a confirmed order at the edge (items, times, ceilings, labels) and
/// makes it the engine's, fingerprinted for idempotency. Shared by the
/// single and the batch endpoint, so an order answers the same either way.
pub(crate) fn prepare(state: &AppState, request: ConfirmedOrder) -> Result<NewOrder, ApiError> {
    if request.items.is_empty() {
        return Err(
            ApiError::unprocessable("no_items", "an order needs at least one item")
                .with_field("items"),
        );
    }
    if request.items.len() > MAX_ITEMS {
        return Err(ApiError::unprocessable(
            "too_many_items",
            format!("an order may have at most {MAX_ITEMS} items"),
        )
        .with_field("items"));
    }
    if request.confirmed_at < request.placed_at {
        return Err(ApiError::unprocessable(
            "confirmed_before_placed",
            "confirmed_at is earlier than placed_at",
        )
        .with_field("confirmed_at"));
    }
    let item_max = Money::from_fen(state.settings.order_item_amount_max_fen);
    let total_max = Money::from_fen(state.settings.order_total_max_fen);
    let mut items = Vec::with_capacity(request.items.len());
    for (index, item) in request.items.iter().enumerate() {
        if item.amount > item_max {
            return Err(amount_too_large(
                format!("items[{index}].amount"),
                format!("a line may be at most {item_max}"),
            ));
        }
        items.push(OrderItem {
            sku: check_label(&item.sku, format!("items[{index}].sku"))?,
            category: check_label(&item.category, format!("items[{index}].category"))?,
            amount: item.amount,
        });
    }
    // Each line is under its ceiling, and the ceilings are bounded so that
    // the most lines at the ceiling still sum in 64 bits; checked anyway.
    if Money::checked_sum(items.iter().map(|item| item.amount))
        .is_none_or(|total| total > total_max)
    {
        return Err(amount_too_large(
            "items".to_owned(),
            format!("the order's total may be at most {total_max}"),
        ));
    }
    let fingerprint = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    Ok(NewOrder {
        order_id: request.order_id,
        distributor_id: request.distributor_id,
        buyer_id: request.buyer_id,
        placed_at: request.placed_at.to_utc(),
        confirmed_at: request.confirmed_at.to_utc(),
        items,
        request_sha256: sha256_hex(&fingerprint),
    })
}

/// Hands a prepared order to the group-commit ingest; the view, and whether
/// it was a replay of an order already stored.
pub(crate) async fn ingest_prepared(
    state: &AppState,
    order: NewOrder,
) -> Result<(IngestView, bool), ApiError> {
    let answer = state.settlement.ingest(order).await?;
    let replayed = matches!(answer, IngestAnswer::Replayed(_));
    let view = match answer {
        IngestAnswer::Created(order) => IngestView {
            order_id: order.order_id.to_string(),
            state: OrderState::Holding,
            release_at: order.release_at,
            release_at_provisional: order.release_at_provisional,
            plan_version: order.plan_version,
            risk_flags: order.risk_flags.clone(),
            extra_hold_days: order.extra_hold_days,
            commissions: order.lines.iter().map(fresh_line_view).collect(),
        },
        IngestAnswer::Replayed(order) => IngestView {
            commissions: order.lines.iter().map(line_view).collect(),
            order_id: order.order_id,
            state: order.state,
            release_at: order.release_at,
            release_at_provisional: order.release_at_provisional,
            plan_version: order.plan_version,
            risk_flags: order.risk_flags,
            extra_hold_days: order.extra_hold_days,
        },
    };
    Ok((view, replayed))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The shop's refund id; the same id again is a no-op.
    pub refund_id: String,
    pub amount: Money,
    /// Refund this sku's lines; without it the refund is spread over the
    /// items in proportion to what remains of each.
    pub sku: Option<String>,
}

/// `GET /v1/orders/batch`: the order whose id is "batch" (the batch route
/// shadows `/v1/orders/{id}` for that one id).
pub async fn get_order_named_batch(
    state: State<AppState>,
    caller: Allowed<AdminOpsOrIngest>,
) -> Result<Json<OrderView>, ApiError> {
    get(state, caller, Path("batch".to_owned())).await
}

#[utoipa::path(
    post, path = "/v1/orders/{id}/refunds", tag = "orders", request_body = RefundBody,
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "applied (or replayed): the order after it", body = OrderView),
        (status = 400, description = "invalid_id (path), malformed_json, missing_field, unknown_field, invalid_field, invalid_amount", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "unknown order", body = ErrorBody),
        (status = 409, description = "refund_id reused with another body", body = ErrorBody),
        (status = 422, description = "larger than what remains, unknown sku", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn refund(
    State(state): State<AppState>,
    _caller: Allowed<IngestOnly>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<RefundBody>,
) -> Result<Json<OrderView>, ApiError> {
    let order_id = OrderId::parse(order_id)
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()))?;
    let refund_id = crate::domain::ids::OrderId::parse(request.refund_id.clone())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_field",
                "refund_id must be 1–64 letters, digits, '-', '_', '.' or ':', and not '.' or '..'",
            )
            .with_field("refund_id")
        })?
        .to_string();
    if request.amount.is_zero() {
        return Err(
            ApiError::bad_request("invalid_amount", "amount must be greater than zero")
                .with_field("amount"),
        );
    }
    let sku = request
        .sku
        .as_deref()
        .map(|sku| check_label(sku, "sku".to_owned()))
        .transpose()?;
    let fingerprint = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    let (outcome, applied_now) = state
        .settlement
        .refund(
            &order_id,
            &refund_id,
            request.amount,
            sku,
            sha256_hex(&fingerprint),
        )
        .await?;
    let record = match outcome {
        RefundOutcome::Applied(record) | RefundOutcome::Replayed(record) => record,
    };
    if applied_now {
        tracing::info!(order_id = %order_id, refund_id, step = "refund", attempt = 1, "refund applied");
    }
    Ok(Json(record.into()))
}

#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path)),
    responses(
        (status = 200, body = OrderView),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: Allowed<AdminOpsOrIngest>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order_id = OrderId::parse(order_id)
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()))?;
    let order = state
        .store
        .order(order_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(Json(order.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommissionQuery {
    /// Return lines older than this line id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommissionLineView {
    pub id: i64,
    pub order_id: String,
    pub level: u8,
    pub base: Money,
    pub rate: Rate,
    pub amount: Money,
    pub plan_version: i64,
    /// The campaign that multiplied the line's rate, if one did.
    pub campaign: Option<String>,
    pub state: LineState,
    pub created_at: DateTime<Utc>,
    /// As in the order's answer: how the line came to be.
    #[schema(value_type = Option<Vec<Object>>)]
    pub rule_trail: Option<RuleTrail>,
    pub explanation: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommissionPage {
    pub items: Vec<CommissionLineView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/commissions", tag = "distributors",
    params(("id" = String, Path), CommissionQuery),
    responses(
        (status = 200, body = CommissionPage),
        (status = 400, description = "invalid_id, invalid_field (limit out of range or a parameter of the wrong type)", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such distributor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn commissions(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
    Query(query): Query<CommissionQuery>,
) -> Result<Json<CommissionPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=crate::store::MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_field", "limit must be between 1 and 500")
                .with_field("limit"),
        );
    }
    if state.store.distributor(&id).await?.is_none() {
        return Err(ApiError::not_found("distributor"));
    }
    let lines = state
        .store
        .commissions(id.as_str(), query.before, limit)
        .await?;
    let next_before = (lines.len() as i64 == limit)
        .then(|| lines.last().map(|line| line.id))
        .flatten();
    Ok(Json(CommissionPage {
        items: lines
            .into_iter()
            .map(|line| {
                let trail = stored_trail(&line);
                CommissionLineView {
                    id: line.id,
                    order_id: line.order_id,
                    level: line.level,
                    base: line.base,
                    rate: line.rate,
                    amount: line.amount,
                    plan_version: line.plan_version,
                    campaign: line.campaign,
                    state: line.state,
                    created_at: line.created_at,
                    explanation: trail.as_ref().map(ToString::to_string),
                    rule_trail: trail,
                }
            })
            .collect(),
        next_before,
    }))
}
