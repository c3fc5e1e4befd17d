//! `/v1/admin`: commission plans, API tokens (list and revoke; they are
//! created with `fenrun token create`) and, with `--simulated-clock`, the clock.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Path, Query};
use crate::api::policy::{AdminOnly, Allowed};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::access::Role;
use crate::domain::ids::DistributorId;
use crate::domain::ledger::{AccountId, Bucket, PlatformAccount, Transfer, TransferKind};
use crate::domain::money::Money;
use crate::state::AppState;
use crate::store::{Revocation, StoreError, StoredPlan, TokenListing, TransferOutcome};

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub version: i64,
    pub name: String,
    pub effective_from: DateTime<Utc>,
    pub applied_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<StoredPlan> for PlanView {
    fn from(plan: StoredPlan) -> PlanView {
        PlanView {
            version: plan.version,
            name: plan.name,
            effective_from: plan.effective_from,
            applied_by: plan.applied_by,
            created_at: plan.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPlan {
    /// The plan file's TOML text, as `fenrun plan apply FILE` would read it.
    pub toml: String,
    /// Name used for the file in error messages (default `plan.toml`).
    pub file_name: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/admin/plans", tag = "admin", request_body = ApplyPlan,
    responses(
        (status = 201, body = PlanView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 422, description = "invalid plan, with file and line", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn apply_plan(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    JsonBody(request): JsonBody<ApplyPlan>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    let principal = &caller.principal;
    let file_name = request.file_name.as_deref().unwrap_or("plan.toml");
    let stored = crate::service::plans::apply(
        &state.store,
        &request.toml,
        file_name,
        &crate::service::audit::Actor::of(principal),
        state.clock.now(),
    )
    .await?;
    tracing::info!(version = stored.version, applied_by = %principal.token_id, "commission plan applied");
    Ok((StatusCode::CREATED, Json(stored.into())))
}

#[utoipa::path(
    get, path = "/v1/admin/plans", tag = "admin",
    responses((status = 200, body = Vec<PlanView>), AuthRefusals),
    security(("bearer" = []))
)]
pub async fn list_plans(
    State(state): State<AppState>,
    _caller: Allowed<AdminOnly>,
) -> Result<Json<Vec<PlanView>>, ApiError> {
    let plans = state.store.list_plans().await?;
    Ok(Json(plans.into_iter().map(Into::into).collect()))
}

/// Direction of a manual adjustment, from the distributor's point of view.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentDirection {
    /// Platform → distributor's available balance.
    Credit,
    /// Distributor's available balance → platform; refused if it would go below zero.
    Debit,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdjustment {
    pub distributor_id: DistributorId,
    /// Positive amount with at most two decimals.
    pub amount: Money,
    pub direction: AdjustmentDirection,
    /// Why, for the record (1–200 characters).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentView {
    pub transfer_id: i64,
    /// `false` when the same Idempotency-Key and body were applied before.
    pub applied_now: bool,
    pub distributor_id: DistributorId,
    pub amount: Money,
    pub direction: AdjustmentDirection,
}

/// Longest reason text of a manual adjustment.
const MAX_REASON_CHARS: usize = 200;

#[utoipa::path(
    post, path = "/v1/admin/adjustments", tag = "admin", request_body = CreateAdjustment,
    params(("Idempotency-Key" = String, Header, description = "same key + same body = no-op")),
    responses(
        (status = 201, body = AdjustmentView),
        (status = 400, description = "malformed, e.g. an amount with 3 decimals (invalid_amount); missing_idempotency_key", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 409, description = "key reused with another body", body = ErrorBody),
        (status = 422, description = "insufficient_balance; amount_too_large (over the adjustment ceiling); balance_overflow (the balance would pass 64 bits of fen); unknown_distributor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn adjust(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateAdjustment>,
) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    let principal = &caller.principal;
    let key = idempotency_key(&headers)?;
    if request.amount.is_zero() {
        return Err(
            ApiError::bad_request("invalid_amount", "amount must be greater than zero")
                .with_field("amount"),
        );
    }
    let ceiling = Money::from_fen(state.settings.adjustment_amount_max_fen);
    if request.amount > ceiling {
        return Err(ApiError::unprocessable(
            "amount_too_large",
            format!("an adjustment may be at most {ceiling}; make a larger correction in parts"),
        )
        .with_field("amount"));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(
            ApiError::bad_request("invalid_field", "reason must be 1–200 characters")
                .with_field("reason"),
        );
    }
    if state
        .store
        .distributor(&request.distributor_id)
        .await?
        .is_none()
    {
        return Err(
            ApiError::unprocessable("unknown_distributor", "distributor does not exist")
                .with_field("distributor_id"),
        );
    }
    let platform = AccountId::Platform(PlatformAccount::CommissionExpense);
    let available = AccountId::Distributor(request.distributor_id.clone(), Bucket::Available);
    let (from, to) = match request.direction {
        AdjustmentDirection::Credit => (platform, available),
        AdjustmentDirection::Debit => (available, platform),
    };
    let transfer = Transfer::between(
        format!("adjustment:{key}"),
        TransferKind::Adjustment,
        from,
        to,
        request.amount,
    )
    .map_err(|error| ApiError::bad_request("invalid_field", error.to_string()))?;
    let outcome = state
        .store
        .adjust(
            &transfer,
            state.clock.now(),
            &crate::service::audit::Actor::of(principal),
            &format!("distributor:{}", request.distributor_id),
            serde_json::json!({
                "amount": request.amount, "direction": request.direction, "reason": reason,
            }),
        )
        .await
        .map_err(|error| match error {
            // The balance would pass what 64 bits of fen hold: the amount is at fault.
            overflow @ StoreError::BalanceOverflow { .. } => {
                ApiError::unprocessable("balance_overflow", overflow.to_string())
                    .with_field("amount")
            }
            other => other.into(),
        })?;
    let (transfer_id, applied_now) = match outcome {
        TransferOutcome::Applied { transfer_id } => (transfer_id, true),
        TransferOutcome::AlreadyApplied { transfer_id } => (transfer_id, false),
    };
    tracing::info!(
        transfer_id, applied_now, distributor_id = %request.distributor_id,
        actor = %principal.token_id, reason, "manual adjustment"
    );
    Ok((
        StatusCode::CREATED,
        Json(AdjustmentView {
            transfer_id,
            applied_now,
            distributor_id: request.distributor_id,
            amount: request.amount,
            direction: request.direction,
        }),
    ))
}

/// Longest Idempotency-Key header accepted.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 100;

/// The `Idempotency-Key` header: required, 1–100 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::bad_request(
            "missing_idempotency_key",
            "send an Idempotency-Key header (1–100 printable ASCII characters)",
        )
        .with_field("Idempotency-Key")
    };
    let value = headers.get("idempotency-key").ok_or_else(missing)?;
    let key = value.to_str().map_err(|_| missing())?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_CHARS
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(missing());
    }
    Ok(key.to_owned())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Calendar days to move forward.
    pub days: Option<u32>,
    /// Seconds to move forward.
    pub seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    pub now: DateTime<Utc>,
    /// Orders whose hold ended and were released as the clock moved.
    pub released: usize,
}

/// Longest single move of the simulated clock: a year.
const MAX_ADVANCE_SECONDS: u64 = 366 * 86_400;

#[utoipa::path(
    post, path = "/v1/admin/clock/advance", tag = "admin", request_body = AdvanceClock,
    responses(
        (status = 200, body = ClockView),
        (status = 400, description = "malformed_json, unknown_field, invalid_field (not 1 second to 366 days)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, description = "not running with --simulated-clock", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn advance_clock(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    JsonBody(request): JsonBody<AdvanceClock>,
) -> Result<Json<ClockView>, ApiError> {
    let Some(clock) = &state.simulated_clock else {
        return Err(ApiError::not_found("route"));
    };
    let seconds = u64::from(request.days.unwrap_or(0))
        .checked_mul(86_400)
        .and_then(|days| days.checked_add(request.seconds.unwrap_or(0)))
        .filter(|total| (1..=MAX_ADVANCE_SECONDS).contains(total))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_field",
                "move the clock by 1 second to 366 days, with days and/or seconds",
            )
        })?;
    // Due holds are released before answering, so the caller sees their effect.
    let (now, released) = state
        .settlement
        .advance_and_release(clock, chrono::Duration::seconds(seconds as i64))
        .await?;
    // Standard withdrawals whose cut-off the jump passed go now: their jobs
    // wait for the database's clock, which did not move.
    state.withdrawals.send_due(chrono::Duration::zero()).await?;
    tracing::info!(now = %now, released, actor = %caller.token_id, "simulated clock advanced");
    crate::service::audit::record(
        &state.store,
        &crate::service::audit::Actor::of(&caller),
        "clock.advance",
        "clock:simulated",
        None,
        Some(serde_json::json!({"now": now})),
        now,
    )
    .await;
    state.announce_clock_move();
    Ok(Json(ClockView { now, released }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries older than this id (the page before).
    pub before: Option<i64>,
    /// Only entries about this target, e.g. `withdrawal:wd…`.
    pub target: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// A token id (`tok_…`) or `cli:{user}`.
    pub actor: String,
    pub actor_role: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "admin", params(AuditQuery),
    responses(
        (status = 200, description = "newest first", body = AuditPage),
        (status = 400, description = "invalid_field (a query parameter of the wrong type)", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    State(state): State<AppState>,
    _caller: Allowed<AdminOnly>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, crate::store::MAX_PAGE);
    let entries = state
        .store
        .audit_entries(query.before, query.target.as_deref(), limit)
        .await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|(id, _)| *id))
        .flatten();
    Ok(Json(AuditPage {
        items: entries
            .into_iter()
            .map(|(id, entry)| AuditEntryView {
                id,
                at: entry.at,
                actor: entry.actor,
                actor_role: entry.actor_role,
                action: entry.action,
                target: entry.target,
                before: entry.before,
                after: entry.after,
            })
            .collect(),
        next_before,
    }))
}

/// An API token as an admin sees it: never the token or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// The token's public handle (`tok_…`), as the audit log names it.
    pub id: String,
    pub role: Role,
    pub distributor_id: Option<DistributorId>,
    pub created_at: DateTime<Utc>,
    /// When it stops working by itself; absent = until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenListing> for TokenView {
    fn from(token: TokenListing) -> TokenView {
        TokenView {
            id: token.id,
            role: token.role,
            distributor_id: token.distributor_id,
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPage {
    pub items: Vec<TokenView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Tokens after this id (the page after).
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/admin/tokens", tag = "admin", params(TokenQuery),
    responses(
        (status = 200, description = "in id order; revoked and expired ones included", body = TokenPage),
        (status = 400, description = "invalid_field (a parameter of the wrong type)", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    _caller: Allowed<AdminOnly>,
    Query(query): Query<TokenQuery>,
) -> Result<Json<TokenPage>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, crate::store::MAX_PAGE);
    let tokens = state.store.tokens(query.after.as_deref(), limit).await?;
    let next_after = (tokens.len() as i64 == limit)
        .then(|| tokens.last().map(|token| token.id.clone()))
        .flatten();
    Ok(Json(TokenPage {
        items: tokens.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

#[utoipa::path(
    delete, path = "/v1/admin/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "the token's id, `tok_…`")),
    responses(
        (status = 204, description = "revoked: from now on it and its page sessions are refused, in every process; revoking again is fine"),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Allowed<AdminOnly>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let principal = &caller.principal;
    let revocation = state
        .store
        .revoke_token(
            &id,
            state.clock.now(),
            &crate::service::audit::Actor::of(principal),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    if revocation == Revocation::Revoked {
        tracing::info!(token_id = %id, actor = %principal.token_id, "token revoked");
    }
    Ok(StatusCode::NO_CONTENT)
}
