//! `/v1/admin/webhooks` (admin: the shop's endpoints, their secrets and
//! rotation) and `/v1/ops/webhooks` (ops: deliveries, and replaying one or
//! an endpoint's failed ones in a time range), issue 16. The use cases are
//! `service::webhooks`; delivery itself is `engine::webhooks`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path, Query};
use crate::api::policy::{AdminOnly, Allowed, OpsOrAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::service::audit::Actor;
use crate::service::webhooks::{
    CreatedEndpoint, DeliveryView, EndpointView, RotatedSecret, WebhookError,
};
use crate::state::AppState;
use crate::store::DeliveryFilter;

/// Deliveries a list shows unless asked for fewer.
const DEFAULT_DELIVERIES: i64 = 100;

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> ApiError {
        match error {
            WebhookError::InvalidUrl(_) => {
                ApiError::bad_request("invalid_field", error.to_string()).with_field("url")
            }
            WebhookError::PrivateTarget(_) => {
                ApiError::unprocessable("webhook_target_refused", error.to_string())
                    .with_field("url")
            }
            WebhookError::InvalidEvents(_) => {
                ApiError::bad_request("invalid_field", error.to_string()).with_field("events")
            }
            WebhookError::InvalidField(field, _) => {
                ApiError::bad_request("invalid_field", error.to_string()).with_field(field)
            }
            WebhookError::NotFound(what) => ApiError::not_found(what),
            WebhookError::EndpointDisabled => {
                ApiError::conflict("webhook_endpoint_disabled", error.to_string())
            }
            WebhookError::Secret(_) => ApiError::unavailable(error),
            WebhookError::Store(store) => store.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// https URL of the receiver (a private or loopback target only when
    /// `webhooks.allow_private_targets` is set).
    pub url: String,
    /// Event types to send, e.g. `["withdrawal.paid", "commission.released"]`, or `["*"]`.
    pub events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps signing too (0–168 hours, default 24).
    pub overlap_hours: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// pending, delivered or failed; all when absent.
    pub state: Option<String>,
    pub endpoint_id: Option<String>,
    /// 1–500, default 100; newest first.
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRangeBody {
    /// Events that happened at or after this (RFC 3339).
    pub from: DateTime<Utc>,
    /// …and before this.
    pub to: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedCount {
    pub endpoint_id: String,
    pub replayed: u64,
}

#[utoipa::path(
    post, path = "/v1/admin/webhooks", tag = "admin", request_body = CreateBody,
    responses(
        (status = 201, description = "the endpoint, and its secret shown this once", body = CreatedEndpoint),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field (url, events, description)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 422, description = "webhook_target_refused: a loopback, private or link-local target, or plain http, while webhooks.allow_private_targets is off", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let created = crate::service::webhooks::create_endpoint(
        &state,
        &Actor::of(&caller.principal),
        &body.url,
        &body.events,
        body.description.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get, path = "/v1/admin/webhooks", tag = "admin",
    responses(
        (status = 200, description = "the endpoints with their health (no secrets)", body = [EndpointView]),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Allowed<AdminOnly>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(crate::service::webhooks::endpoints(&state).await?))
}

#[utoipa::path(
    get, path = "/v1/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    responses(
        (status = 200, description = "the endpoint", body = EndpointView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(crate::service::webhooks::endpoint(&state, &id).await?))
}

#[utoipa::path(
    put, path = "/v1/admin/webhooks/{id}", tag = "admin",
    params(("id" = String, Path)), request_body = CreateBody,
    responses(
        (status = 200, description = "the endpoint, pointed at the new URL and events; its secret and deliveries stay", body = EndpointView),
        (status = 400, description = "invalid_path, malformed_json, missing_field, unknown_field, invalid_field (url, events, description)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
        (status = 422, description = "webhook_target_refused", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(
        crate::service::webhooks::update_endpoint(
            &state,
            &Actor::of(&caller.principal),
            &id,
            &body.url,
            &body.events,
            body.description.as_deref(),
        )
        .await?,
    ))
}

#[utoipa::path(
    delete, path = "/v1/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    responses(
        (status = 204, description = "deleted: nothing more is sent to it; its pending deliveries are given up"),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    crate::service::webhooks::delete_endpoint(&state, &Actor::of(&caller.principal), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/admin/webhooks/{id}/rotate-secret", tag = "admin",
    params(("id" = String, Path)), request_body = RotateBody,
    responses(
        (status = 200, description = "the new secret, shown this once; both sign until previous_secret_expires_at", body = RotatedSecret),
        (status = 400, description = "invalid_path, invalid_field (overlap_hours), unknown_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Json<RotatedSecret>, ApiError> {
    Ok(Json(
        crate::service::webhooks::rotate_secret(
            &state,
            &Actor::of(&caller.principal),
            &id,
            body.overlap_hours,
        )
        .await?,
    ))
}

#[utoipa::path(
    post, path = "/v1/admin/webhooks/{id}/enable", tag = "admin", params(("id" = String, Path)),
    responses(
        (status = 200, description = "enabled again (or already enabled); replay its failed deliveries next", body = EndpointView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enable(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(
        crate::service::webhooks::enable_endpoint(&state, &Actor::of(&caller.principal), &id)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/v1/ops/webhooks/deliveries", tag = "ops", params(DeliveriesQuery),
    responses(
        (status = 200, description = "deliveries, newest first, with the last answer", body = [DeliveryView]),
        (status = 400, description = "invalid_field (state, limit), unknown_field", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    _caller: Allowed<OpsOrAdmin>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    if let Some(wanted) = query.state.as_deref()
        && !matches!(wanted, "pending" | "delivered" | "failed")
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "state must be pending, delivered or failed",
        )
        .with_field("state"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_DELIVERIES);
    if !(1..=crate::store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("limit must be 1–{}", crate::store::MAX_PAGE),
        )
        .with_field("limit"));
    }
    let filter = DeliveryFilter {
        state: query.state,
        endpoint_id: query.endpoint_id,
        limit,
    };
    Ok(Json(
        crate::service::webhooks::deliveries(&state, &filter).await?,
    ))
}

#[utoipa::path(
    post, path = "/v1/ops/webhooks/deliveries/{id}/replay", tag = "ops", params(("id" = String, Path)),
    responses(
        (status = 200, description = "queued again with the same webhook-id (a pending delivery is left as it is); audited", body = DeliveryView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such delivery", body = ErrorBody),
        (status = 409, description = "webhook_endpoint_disabled: enable the endpoint first", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    Ok(Json(
        crate::service::webhooks::replay_delivery(&state, &Actor::of(&caller.principal), id)
            .await?,
    ))
}

#[utoipa::path(
    post, path = "/v1/ops/webhooks/endpoints/{id}/replay", tag = "ops",
    params(("id" = String, Path)), request_body = ReplayRangeBody,
    responses(
        (status = 200, description = "the endpoint's failed deliveries of events in [from, to) queued again; audited", body = ReplayedCount),
        (status = 400, description = "invalid_path, malformed_json, missing_field, unknown_field, invalid_field (to)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such endpoint", body = ErrorBody),
        (status = 409, description = "webhook_endpoint_disabled: enable the endpoint first", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replay_range(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayRangeBody>,
) -> Result<Json<ReplayedCount>, ApiError> {
    let replayed = crate::service::webhooks::replay_failed(
        &state,
        &Actor::of(&caller.principal),
        &id,
        body.from,
        body.to,
    )
    .await?;
    Ok(Json(ReplayedCount {
        endpoint_id: id,
        replayed,
    }))
}
