//! Ops' lifecycle actions, each with a reason and audited in its own
//! transaction: reinstating a cleared distributor
//! (`POST /v1/distributors/{id}/reinstate`) and voiding an order's
//! commission (`POST /v1/orders/{id}/void-commission`, e.g. for
//! self-referral abuse).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::distributors::DistributorView;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path};
use crate::api::orders::OrderView;
use crate::api::policy::{Allowed, OpsOrAdmin, Owner};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::ids::OrderId;
use crate::domain::money::Money;
use crate::service::audit::Actor;
use crate::state::AppState;
use crate::store::{Reinstatement, StoreError, VoidOutcome, VoidedOrder};

/// Longest reason ops may give.
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why: kept in the timeline and the audit log. Required, 1–200 characters.
    pub reason: Option<String>,
}

/// The reason, trimmed; 422 `reason_required` when missing, empty or too long.
fn reason_of(body: &ReasonBody) -> Result<String, ApiError> {
    let reason = body.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "reason_required",
            format!("give a reason of 1–{MAX_REASON_CHARS} printable characters"),
        )
        .with_field("reason"));
    }
    Ok(reason.to_owned())
}

#[utoipa::path(
    post, path = "/v1/distributors/{id}/reinstate", tag = "distributors",
    params(("id" = String, Path)), request_body = ReasonBody,
    responses(
        (status = 200, description = "reinstated: active again, earns on orders confirmed from now on; in the timeline and the audit log", body = DistributorView),
        (status = 400, description = "invalid_id, malformed_json, unknown_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such distributor", body = ErrorBody),
        (status = 409, description = "not_cleared: the distributor is active; nothing changed", body = ErrorBody),
        (status = 422, description = "reason_required", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Owner<OpsOrAdmin>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<DistributorView>, ApiError> {
    let reason = reason_of(&body)?;
    let actor = Actor::of(&caller.principal);
    let now = state.clock.now();
    match state
        .store
        .reinstate_distributor(&caller.distributor, &reason, &actor, now)
        .await
    {
        Ok(Reinstatement::Reinstated(distributor)) => {
            tracing::info!(distributor_id = %distributor.id, actor = %actor.id, "distributor reinstated");
            Ok(Json(distributor.into()))
        }
        Ok(Reinstatement::NotCleared) => Err(ApiError::conflict(
            "not_cleared",
            format!(
                "distributor {} is active; only a cleared distributor can be reinstated",
                caller.distributor
            ),
        )),
        Err(StoreError::NotFound { .. }) => Err(ApiError::not_found("distributor")),
        Err(other) => Err(other.into()),
    }
}

/// An order after its commission was voided.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoidView {
    #[serde(flatten)]
    pub order: OrderView,
    pub commission_voided_at: DateTime<Utc>,
    pub void_reason: String,
    /// The commission reversed (inside the hold) or clawed back (after it).
    pub reversed: Money,
    /// `true` when it came back from available balances (after the release).
    pub clawed_back: bool,
}

impl From<VoidedOrder> for VoidView {
    fn from(voided: VoidedOrder) -> VoidView {
        VoidView {
            order: voided.order.into(),
            commission_voided_at: voided.voided_at,
            void_reason: voided.reason,
            reversed: voided.reversed,
            clawed_back: voided.clawed_back,
        }
    }
}

#[utoipa::path(
    post, path = "/v1/orders/{id}/void-commission", tag = "orders",
    params(("id" = String, Path)), request_body = ReasonBody,
    responses(
        (status = 200, description = "voided: every line at 0, the pending commission reversed (holding order) or clawed back from available (released order), the order's timeline has a `void` event; voiding again answers the same and moves nothing", body = VoidView),
        (status = 400, description = "invalid_id, malformed_json, unknown_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "no such order", body = ErrorBody),
        (status = 422, description = "reason_required", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn void_commission(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(order_id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<VoidView>, ApiError> {
    let order_id = OrderId::parse(order_id)
        .map_err(|error| ApiError::bad_request("invalid_id", error.to_string()))?;
    let reason = reason_of(&body)?;
    let actor = Actor::of(&caller.principal);
    match state
        .settlement
        .void_commission(&order_id, &reason, &actor)
        .await
    {
        Ok(VoidOutcome::Voided(voided)) => {
            tracing::info!(order_id = %order_id, reversed = %voided.reversed, actor = %actor.id, "commission voided");
            Ok(Json(voided.into()))
        }
        Ok(VoidOutcome::Replayed(voided)) => Ok(Json(voided.into())),
        Err(StoreError::NotFound { .. }) => Err(ApiError::not_found("order")),
        Err(other) => Err(other.into()),
    }
}
