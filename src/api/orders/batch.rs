//! `POST /v1/orders/batch` (issue 19 item 1): how shops' ERPs sync orders —
//! up to [`MAX_BATCH_ORDERS`] confirmed orders in one request, each checked
//! and made idempotent on its own exactly as by `POST /v1/orders`, so one bad
//! order does not refuse the others. The orders go to the group-commit
//! ingest together, so they are written in as few transactions as it
//! allows; the answer has one result per order, in the request's order.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ConfirmedOrder, IngestView, ingest_prepared, prepare};
use crate::api::error::{ApiError, ErrorBody, ErrorDetail};
use crate::api::extract::{JsonBody, parse_json};
use crate::api::policy::{Allowed, IngestOnly};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::state::AppState;

/// Orders one request may carry.
pub const MAX_BATCH_ORDERS: usize = 1_000;

/// The batch route's body limit: a thousand orders of a few items each,
/// with room for long labels; the global limit stays for every other route.
pub const BATCH_BODY_LIMIT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1–1,000 orders, each as `POST /v1/orders` takes it.
    #[schema(value_type = Vec<ConfirmedOrder>)]
    pub orders: Vec<serde_json::Value>,
}

/// One order's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// Its position in the request.
    pub index: usize,
    /// As sent, when it could be read.
    pub order_id: Option<String>,
    /// accepted (held now), replayed (sent before with the same body) or refused.
    pub result: &'static str,
    /// The status `POST /v1/orders` would have answered for it alone.
    pub status: u16,
    /// The order, unless refused.
    pub order: Option<IngestView>,
    /// Why it was refused: the single endpoint's code, message and field.
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub accepted: usize,
    pub replayed: usize,
    pub refused: usize,
    pub results: Vec<BatchResult>,
}

fn refused(index: usize, order_id: Option<String>, error: ApiError) -> BatchResult {
    BatchResult {
        index,
        order_id,
        result: "refused",
        status: error.status.as_u16(),
        order: None,
        error: Some(ErrorDetail {
            code: error.code.to_owned(),
            message: error.message,
            field: error.field,
        }),
    }
}

#[utoipa::path(
    post, path = "/v1/orders/batch", tag = "orders", request_body = BatchBody,
    responses(
        (status = 200, description = "one result per order, in order: accepted, replayed, or refused with the code the single endpoint gives", body = BatchView),
        (status = 400, description = "malformed_json, missing_field, unknown_field (the batch itself)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 422, description = "no_orders, too_many_orders (field `orders`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    _caller: Allowed<IngestOnly>,
    JsonBody(batch): JsonBody<BatchBody>,
) -> Result<Json<BatchView>, ApiError> {
    if batch.orders.is_empty() {
        return Err(
            ApiError::unprocessable("no_orders", "a batch needs at least one order")
                .with_field("orders"),
        );
    }
    if batch.orders.len() > MAX_BATCH_ORDERS {
        return Err(ApiError::unprocessable(
            "too_many_orders",
            format!("a batch may have at most {MAX_BATCH_ORDERS} orders: send the rest in another"),
        )
        .with_field("orders"));
    }
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(batch.orders.len());
    let mut ingesting = tokio::task::JoinSet::new();
    for (index, value) in batch.orders.into_iter().enumerate() {
        let order_id = value
            .get("order_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        // Each order read as the single endpoint reads its body, so its
        // error names the same field.
        let prepared = serde_json::to_vec(&value)
            .map_err(ApiError::internal)
            .and_then(|bytes| parse_json::<ConfirmedOrder>(&bytes))
            .and_then(|request| prepare(&state, request));
        match prepared {
            Ok(order) => {
                results.push(None);
                let state = state.clone();
                ingesting
                    .spawn(async move { (index, order_id, ingest_prepared(&state, order).await) });
            }
            Err(error) => results.push(Some(refused(index, order_id, error))),
        }
    }
    // All in flight at once: the group commit writes them together.
    while let Some(joined) = ingesting.join_next().await {
        let (index, order_id, answer) = joined.map_err(ApiError::internal)?;
        results[index] = Some(match answer {
            Ok((view, replayed)) => BatchResult {
                index,
                order_id,
                result: if replayed { "replayed" } else { "accepted" },
                status: StatusCode::ACCEPTED.as_u16(),
                order: Some(view),
                error: None,
            },
            Err(error) => refused(index, order_id, error),
        });
    }
    let results: Vec<BatchResult> = results.into_iter().flatten().collect();
    let count = |wanted: &str| results.iter().filter(|one| one.result == wanted).count();
    Ok(Json(BatchView {
        accepted: count("accepted"),
        replayed: count("replayed"),
        refused: count("refused"),
        results,
    }))
}
