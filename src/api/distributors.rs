//! `/v1/distributors`: create (idempotent by id), read (with the timeline of
//! upgrades, clearing and reinstatements), list, balance.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::credentials::MaskedIdentity;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{JsonBody, Query, distributor_id_from_path};
use crate::api::policy::{AdminOpsOrIngest, Allowed, IngestOrAdmin, Owner, SelfOrOpsAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::access::Role;
use crate::domain::digest::sha256_hex;
use crate::domain::identity::check_readable_name;
use crate::domain::ids::DistributorId;
use crate::domain::money::Money;
use crate::domain::settlement::DistributorStatus;
use crate::state::AppState;
use crate::store::{Creation, Distributor, DistributorEvent, NewDistributor, StoreError};

/// Longest display name (characters) a distributor may have.
const MAX_NAME_CHARS: usize = 100;
/// Page size when the caller does not say.
const DEFAULT_PAGE: i64 = 50;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDistributor {
    pub id: DistributorId,
    /// Display name (nickname); the legal name goes to the identity endpoint.
    pub name: String,
    pub referrer_id: Option<DistributorId>,
    /// A grade key of the plan in force (e.g. `regular`, `gold`, `partner`);
    /// the plan's default grade when absent.
    pub grade: Option<String>,
    /// `active` (default) or `cleared` (清退: earns no new commission).
    pub status: Option<DistributorStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DistributorView {
    pub id: DistributorId,
    pub name: String,
    pub referrer_id: Option<DistributorId>,
    /// Referrer, the referrer's referrer, and theirs: at most 3, nearest first.
    pub upline: Vec<DistributorId>,
    pub grade: String,
    /// `active`, or `cleared` (清退: earns no new commission, keeps its balances).
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<Distributor> for DistributorView {
    fn from(distributor: Distributor) -> DistributorView {
        DistributorView {
            id: distributor.id,
            name: distributor.name,
            referrer_id: distributor.referrer_id,
            upline: distributor.upline,
            grade: distributor.grade,
            status: distributor.status.as_str().to_owned(),
            created_at: distributor.created_at,
        }
    }
}

/// One distributor as `GET /v1/distributors/{id}` shows it: the profile and
/// the identity, masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributorProfile {
    #[serde(flatten)]
    pub distributor: DistributorView,
    /// `null` until `PUT /v1/distributors/{id}/identity`.
    pub identity: Option<MaskedIdentity>,
    /// Upgrades, clearing and reinstatements, newest first (at most 100):
    /// what changed, why, and the figures it was decided on.
    pub timeline: Vec<DistributorEventView>,
}

/// One entry of a distributor's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributorEventView {
    pub at: DateTime<Utc>,
    /// `upgraded`, `cleared` or `reinstated`.
    pub kind: String,
    pub detail: String,
    /// The figures behind it (settled sales, the plan's conditions, the
    /// inactive days; the reason of a reinstatement).
    #[schema(value_type = Object)]
    pub figures: Option<serde_json::Value>,
    /// `system:grade_review`, or the token of the ops person who acted;
    /// `null` for a distributor, who sees the decision and its reason, not
    /// the person's handle (as with a withdrawal's reviewer).
    pub actor: Option<String>,
}

impl From<DistributorEvent> for DistributorEventView {
    fn from(event: DistributorEvent) -> DistributorEventView {
        DistributorEventView {
            at: event.at,
            kind: event.kind,
            detail: event.detail,
            figures: event.figures,
            actor: Some(event.actor),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DistributorPage {
    pub items: Vec<DistributorView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<DistributorId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Return distributors whose id sorts after this one.
    pub after: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub distributor_id: DistributorId,
    /// Commission inside the hold (待结算).
    pub pending: Money,
    /// Withdrawable; negative while a clawback debt is open.
    pub available: Money,
    /// Reserved by withdrawals in flight.
    pub withdrawing: Money,
    pub withdrawn_total: Money,
    /// Open clawback debt (欠款), repaid from later commissions; blocks withdrawals.
    pub debt: Money,
}

#[utoipa::path(
    post, path = "/v1/distributors", tag = "distributors",
    request_body = CreateDistributor,
    responses(
        (status = 201, description = "created, or the same request replayed", body = DistributorView),
        (status = 400, description = "malformed_json, missing_field, unknown_field, invalid_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 409, description = "id exists with a different body", body = ErrorBody),
        (status = 422, description = "unknown referrer or grade; invalid_name: a name starting like a spreadsheet formula or holding bidi or zero-width characters", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    _caller: Allowed<IngestOrAdmin>,
    JsonBody(request): JsonBody<CreateDistributor>,
) -> Result<(StatusCode, Json<DistributorView>), ApiError> {
    let name = request.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("name must be 1–{MAX_NAME_CHARS} printable characters"),
        )
        .with_field("name"));
    }
    // The name is shown on pages and in exports: nothing a spreadsheet
    // would run or a screen would reorder.
    check_readable_name(name).map_err(|unsafe_text| {
        ApiError::unprocessable("invalid_name", format!("name {unsafe_text}")).with_field("name")
    })?;
    if request.referrer_id.as_ref() == Some(&request.id) {
        return Err(ApiError::unprocessable(
            "invalid_referrer",
            "a distributor cannot refer itself",
        )
        .with_field("referrer_id"));
    }
    let now = state.clock.now();
    let (_, plan) = crate::service::plans::in_force(&state.store, now).await?;
    let grade = match &request.grade {
        Some(grade) if plan.grade(grade).is_none() => {
            let known: Vec<&str> = plan.grades().iter().map(|grade| grade.key()).collect();
            return Err(ApiError::unprocessable(
                "unknown_grade",
                format!(
                    "grade {grade:?} is not in the plan in force (known: {})",
                    known.join(", ")
                ),
            )
            .with_field("grade"));
        }
        Some(grade) => grade.clone(),
        None => plan.default_grade().key().to_owned(),
    };
    let fingerprint = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    let new = NewDistributor {
        id: request.id.clone(),
        name: name.to_owned(),
        referrer_id: request.referrer_id.clone(),
        grade,
        status: request.status.unwrap_or(DistributorStatus::Active),
        request_sha256: sha256_hex(&fingerprint),
    };
    match state.store.create_distributor(&new, now).await {
        Ok(Creation::Created(distributor)) => {
            tracing::info!(distributor_id = %distributor.id, "distributor created");
            Ok((StatusCode::CREATED, Json(distributor.into())))
        }
        Ok(Creation::Replayed(distributor)) => Ok((StatusCode::CREATED, Json(distributor.into()))),
        Err(StoreError::NotFound {
            what: "referrer",
            id,
        }) => Err(ApiError::unprocessable(
            "unknown_referrer",
            format!("referrer {id} does not exist"),
        )
        .with_field("referrer_id")),
        Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(
            "distributor_exists",
            format!(
                "distributor {} already exists with different details",
                request.id
            ),
        )),
        Err(other) => Err(other.into()),
    }
}

#[utoipa::path(
    get, path = "/v1/distributors", tag = "distributors", params(PageQuery),
    responses(
        (status = 200, body = DistributorPage),
        (status = 400, description = "invalid_field (limit out of range), invalid_id (after)", body = ErrorBody),
        AuthRefusals,
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Allowed<AdminOpsOrIngest>,
    Query(query): Query<PageQuery>,
) -> Result<Json<DistributorPage>, ApiError> {
    let after = query
        .after
        .as_deref()
        .map(distributor_id_from_path)
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=crate::store::MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_field", "limit must be between 1 and 500")
                .with_field("limit"),
        );
    }
    let items = state.store.list_distributors(after.as_ref(), limit).await?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(DistributorPage {
        items: items.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}", tag = "distributors",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = DistributorProfile),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Owner {
        distributor: id,
        principal,
        ..
    }: Owner<SelfOrOpsAdmin>,
) -> Result<Json<DistributorProfile>, ApiError> {
    let distributor = state
        .store
        .distributor(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("distributor"))?;
    let identity = state.store.identity(&id).await?;
    let timeline = state.store.distributor_events(&id).await?;
    Ok(Json(DistributorProfile {
        distributor: distributor.into(),
        identity: identity.as_ref().map(MaskedIdentity::from),
        timeline: timeline
            .into_iter()
            .map(|event| {
                let mut view = DistributorEventView::from(event);
                if !principal.has_any_role(&[Role::Ops, Role::Admin]) {
                    view.actor = None;
                }
                view
            })
            .collect(),
    }))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/balance", tag = "distributors",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = BalanceView),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn balance(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
) -> Result<Json<BalanceView>, ApiError> {
    let balance = state
        .store
        .balance(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("distributor"))?;
    Ok(Json(BalanceView {
        distributor_id: id,
        pending: balance.pending,
        available: balance.available,
        withdrawing: balance.withdrawing,
        withdrawn_total: balance.withdrawn_total,
        debt: balance.debt(),
    }))
}
