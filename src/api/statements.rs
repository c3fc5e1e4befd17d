//! A distributor's months and earnings: `/v1/distributors/{id}/statements`
//! (the month close's statements), `/team-bonuses` (each bonus with the
//! figures that explain it), `/earnings` (figures per day or month, the
//! tier and the next grade), and `POST /v1/ops/month-close/{YYYY-MM}` to
//! close a month by hand.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Path, Query, distributor_id_from_path};
use crate::api::policy::{Allowed, OpsOrAdmin, Owner, SelfOrOpsAdmin};
use crate::api::responses::AuthRefusals;
use crate::domain::earnings::{self, Grouping, RangeError};
use crate::domain::ids::DistributorId;
use crate::domain::money::{Money, Rate};
use crate::domain::settlement::start_of_day;
use crate::domain::tax::Month;
use crate::engine::month_close::MonthCloseError;
use crate::service::audit::Actor;
use crate::state::AppState;
use crate::store::{Activity, MonthCloseRecord, StatementRecord, TeamBonusRecord};

/// A month's or a period's figures; money as 2-decimal strings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Figures {
    /// Pending created by the lines of orders confirmed in the period.
    pub earned: Money,
    pub released: Money,
    pub clawed_back: Money,
    pub team_bonus: Money,
    pub withdrawn: Money,
    /// Released orders sold by the distributor, net of refunds, by release date.
    pub own_settled_sales: Money,
    /// Own settled sales plus those where the distributor is level 2 or 3.
    pub team_settled_sales: Money,
}

impl From<&Activity> for Figures {
    fn from(activity: &Activity) -> Figures {
        Figures {
            earned: activity.earned,
            released: activity.released,
            clawed_back: activity.clawed_back,
            team_bonus: activity.team_bonus,
            withdrawn: activity.withdrawn,
            own_settled_sales: activity.own_sales,
            team_settled_sales: activity.team_sales,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub distributor_id: String,
    /// `YYYY-MM`, local to the settlement time zone.
    pub month: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// Balances when the month was closed (the bonus included).
    pub pending_at_close: Money,
    pub available_at_close: Money,
    pub withdrawing_at_close: Money,
    pub closed_at: DateTime<Utc>,
}

impl From<StatementRecord> for StatementView {
    fn from(record: StatementRecord) -> StatementView {
        StatementView {
            figures: Figures::from(&record.activity),
            distributor_id: record.distributor_id,
            month: record.month,
            pending_at_close: record.pending,
            available_at_close: record.available,
            withdrawing_at_close: record.withdrawing,
            closed_at: record.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementList {
    /// Newest month first.
    pub items: Vec<StatementView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamBonusView {
    pub distributor_id: String,
    pub month: String,
    pub amount: Money,
    /// How the amount came about, e.g. "2026-11: team settled sales 120000.00 ≥ threshold 100000.00; 1% of 120000.00 = 1200.00 (plan version 2)".
    pub explanation: String,
    pub own_settled_sales: Money,
    pub team_settled_sales: Money,
    pub threshold: Money,
    #[schema(value_type = String)]
    pub rate: Rate,
    pub plan_version: i64,
    pub transfer_id: i64,
    pub paid_at: DateTime<Utc>,
}

impl From<TeamBonusRecord> for TeamBonusView {
    fn from(record: TeamBonusRecord) -> TeamBonusView {
        TeamBonusView {
            explanation: format!(
                "{}: team settled sales {} ≥ threshold {}; {} of {} = {} (own settled sales {}, plan version {})",
                record.month,
                record.team_sales,
                record.threshold,
                record.rate,
                record.team_sales,
                record.amount,
                record.own_sales,
                record.plan_version
            ),
            distributor_id: record.distributor_id,
            month: record.month,
            amount: record.amount,
            own_settled_sales: record.own_sales,
            team_settled_sales: record.team_sales,
            threshold: record.threshold,
            rate: record.rate,
            plan_version: record.plan_version,
            transfer_id: record.transfer_id,
            paid_at: record.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamBonusList {
    /// Newest month first.
    pub items: Vec<TeamBonusView>,
}

fn month_from_path(raw: &str) -> Result<Month, ApiError> {
    Month::parse(raw).map_err(|_| {
        ApiError::unprocessable("invalid_month", format!("{raw:?} is not a month (YYYY-MM)"))
            .with_field("month")
    })
}

async fn known(
    state: &AppState,
    id: &DistributorId,
) -> Result<crate::store::Distributor, ApiError> {
    state
        .store
        .distributor(id)
        .await?
        .ok_or_else(|| ApiError::not_found("distributor"))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/statements", tag = "distributors",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = StatementList),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
) -> Result<Json<StatementList>, ApiError> {
    known(&state, &id).await?;
    let items = state.store.statements(&id).await?;
    Ok(Json(StatementList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/statements/{month}", tag = "distributors",
    params(("id" = String, Path), ("month" = String, Path, description = "YYYY-MM")),
    responses(
        (status = 200, body = StatementView),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "no such distributor, or no statement for the month (not closed, or no activity)", body = ErrorBody),
        (status = 422, description = "invalid_month", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Allowed<SelfOrOpsAdmin>,
    Path((raw_id, raw_month)): Path<(String, String)>,
) -> Result<Json<StatementView>, ApiError> {
    let id = distributor_id_from_path(&raw_id)?;
    caller.for_distributor(&id)?;
    let month = month_from_path(&raw_month)?;
    known(&state, &id).await?;
    let statement = state
        .store
        .statement(&id, &month.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("statement"))?;
    Ok(Json(statement.into()))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/team-bonuses", tag = "distributors",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = TeamBonusList),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn team_bonuses(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
) -> Result<Json<TeamBonusList>, ApiError> {
    known(&state, &id).await?;
    let items = state.store.team_bonuses(&id).await?;
    Ok(Json(TeamBonusList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EarningsQuery {
    /// First local date, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last local date, included, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `day` (default) or `month`.
    pub group: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodView {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierStepView {
    pub from: Money,
    #[schema(value_type = String)]
    pub level1_rate: Rate,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    /// The current local month, whose level-1 sales pick the tier.
    pub month: String,
    pub month_level1_sales: Money,
    /// `null` when the plan in force has no tiers.
    pub current: Option<TierStepView>,
    /// The next step and the sales still needed; `null` at the top step.
    pub next: Option<TierStepView>,
    pub sales_needed_for_next: Option<Money>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NextGradeView {
    pub grade: String,
    pub own_sales_required: Money,
    pub own_sales_needed: Money,
    pub team_sales_required: Option<Money>,
    pub team_sales_needed: Option<Money>,
    /// Whether any one condition suffices (else all).
    pub any: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GradeView {
    pub current: String,
    pub own_settled_sales_lifetime: Money,
    pub team_settled_sales_lifetime: Money,
    /// The next grade of the plan with an upgrade rule; `null` when none.
    pub next: Option<NextGradeView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EarningsView {
    pub distributor_id: DistributorId,
    pub from: String,
    pub to: String,
    pub group: String,
    pub periods: Vec<PeriodView>,
    pub tier: TierView,
    pub grade: GradeView,
}

fn range_refusal(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_range", message)
}

fn date_param(value: Option<&str>, name: &str) -> Result<NaiveDate, ApiError> {
    let text = value.ok_or_else(|| {
        range_refusal(format!("{name} is required (YYYY-MM-DD)")).with_field(name)
    })?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| range_refusal(format!("{name} must be a date, YYYY-MM-DD")).with_field(name))
}

fn add_to(total: &mut Money, amount: Money) -> Result<(), ApiError> {
    *total = total
        .checked_add(amount)
        .ok_or_else(|| ApiError::internal("an earnings figure overflows"))?;
    Ok(())
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/earnings", tag = "distributors",
    params(("id" = String, Path), EarningsQuery),
    responses(
        (status = 200, body = EarningsView),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_range (a missing or malformed date, to before from, more than 366 periods), invalid_group", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn earnings(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
    Query(query): Query<EarningsQuery>,
) -> Result<Json<EarningsView>, ApiError> {
    let grouping = match query.group.as_deref() {
        None => Grouping::Day,
        Some(text) => Grouping::parse(text).ok_or_else(|| {
            ApiError::unprocessable("invalid_group", "group must be day or month")
                .with_field("group")
        })?,
    };
    let from = date_param(query.from.as_deref(), "from")?;
    let to = date_param(query.to.as_deref(), "to")?;
    let keys = earnings::periods(from, to, grouping).map_err(|error| match error {
        RangeError::Reversed { .. } => range_refusal(error.to_string()).with_field("to"),
        RangeError::TooManyPeriods { .. } => range_refusal(error.to_string()),
    })?;
    let distributor = known(&state, &id).await?;
    let time_zone = state.month_close.time_zone();
    let day_after = to
        .succ_opt()
        .ok_or_else(|| range_refusal("to is too late").with_field("to"))?;
    let (start, end) = (
        start_of_day(from, time_zone),
        start_of_day(day_after, time_zone),
    );
    let movements = state.store.movements(&id, start, end).await?;
    let mut figures: BTreeMap<String, Activity> = keys
        .iter()
        .map(|key| (key.clone(), Activity::default()))
        .collect();
    let period_of = |at: DateTime<Utc>| grouping.key(at.with_timezone(&time_zone).date_naive());
    for (at, amount) in &movements.earned {
        if let Some(period) = figures.get_mut(&period_of(*at)) {
            add_to(&mut period.earned, *amount)?;
        }
    }
    for (at, kind, amount) in &movements.ledger {
        let Some(period) = figures.get_mut(&period_of(*at)) else {
            continue;
        };
        let figure = match kind.as_str() {
            "commission_released" => &mut period.released,
            "commission_clawed_back" => &mut period.clawed_back,
            "team_bonus" => &mut period.team_bonus,
            "withdrawal_paid" | "withdrawal_bounced" => &mut period.withdrawn,
            other => return Err(ApiError::internal(format!("movement kind {other:?}"))),
        };
        add_to(figure, *amount)?;
    }
    for (at, own, team) in &movements.settled {
        if let Some(period) = figures.get_mut(&period_of(*at)) {
            add_to(&mut period.own_sales, *own)?;
            add_to(&mut period.team_sales, *team)?;
        }
    }
    let now = state.clock.now();
    let (_, plan) = crate::service::plans::in_force(&state.store, now).await?;
    let month = earnings::month_of(now, time_zone).to_string();
    let month_sales = state.store.tier_sales(&id, &month).await?;
    let tier = earnings::tier_progress(&plan, month_sales);
    let (own_lifetime, team_lifetime) = state.store.lifetime_settled_sales(&id).await?;
    let next_grade =
        earnings::grade_progress(&plan, &distributor.grade, own_lifetime, team_lifetime);
    Ok(Json(EarningsView {
        distributor_id: id,
        from: from.to_string(),
        to: to.to_string(),
        group: match grouping {
            Grouping::Day => "day",
            Grouping::Month => "month",
        }
        .to_owned(),
        periods: keys
            .into_iter()
            .map(|key| {
                let period = figures.get(&key).cloned().unwrap_or_default();
                PeriodView {
                    figures: Figures::from(&period),
                    period: key,
                }
            })
            .collect(),
        tier: TierView {
            month,
            month_level1_sales: month_sales,
            current: tier
                .current
                .map(|(from, level1_rate)| TierStepView { from, level1_rate }),
            sales_needed_for_next: tier.next.map(|(_, needed)| needed),
            next: tier.next.and_then(|(from, _)| {
                plan.tier_for(from).map(|step| TierStepView {
                    from,
                    level1_rate: step.level1(),
                })
            }),
        },
        grade: GradeView {
            current: distributor.grade,
            own_settled_sales_lifetime: own_lifetime,
            team_settled_sales_lifetime: team_lifetime,
            next: next_grade.map(|next| NextGradeView {
                grade: next.grade,
                own_sales_required: next.own_sales_required,
                own_sales_needed: next.own_sales_needed,
                team_sales_required: next.team_sales_required,
                team_sales_needed: next.team_sales_needed,
                any: next.any,
            }),
        },
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthCloseView {
    pub month: String,
    /// False when the month was closed before: nothing was done now.
    pub ran: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub plan_version: i64,
    pub statements: i64,
    pub team_bonuses: i64,
    pub team_bonus_total: Money,
}

impl MonthCloseView {
    fn of(record: MonthCloseRecord, ran: bool) -> MonthCloseView {
        MonthCloseView {
            month: record.month,
            ran,
            started_at: record.started_at,
            finished_at: record.finished_at,
            plan_version: record.plan_version,
            statements: record.statements,
            team_bonuses: record.bonuses,
            team_bonus_total: record.bonus_total,
        }
    }
}

impl From<MonthCloseError> for ApiError {
    fn from(error: MonthCloseError) -> ApiError {
        match error {
            MonthCloseError::NotOver { .. } => {
                ApiError::unprocessable("month_not_over", error.to_string()).with_field("month")
            }
            MonthCloseError::Plan { .. } => ApiError::internal(error),
            MonthCloseError::Store(store) => store.into(),
        }
    }
}

#[utoipa::path(
    post, path = "/v1/ops/month-close/{month}", tag = "ops",
    params(("month" = String, Path, description = "YYYY-MM")),
    responses(
        (status = 200, description = "the month is closed (now, or before: `ran` says which)", body = MonthCloseView),
        (status = 400, description = "invalid_path", body = ErrorBody),
        AuthRefusals,
        (status = 422, description = "invalid_month, month_not_over", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn close_month(
    State(state): State<AppState>,
    caller: Allowed<OpsOrAdmin>,
    Path(raw_month): Path<String>,
) -> Result<Json<MonthCloseView>, ApiError> {
    let month = month_from_path(&raw_month)?;
    let outcome = state.month_close.close(month).await?;
    if outcome.ran {
        // Many transactions: the entry is written once the close finished.
        crate::service::audit::record(
            &state.store,
            &Actor::of(&caller.principal),
            "month.close",
            &month.to_string(),
            None,
            Some(serde_json::json!({
                "statements": outcome.record.statements,
                "team_bonuses": outcome.record.bonuses,
                "team_bonus_total": outcome.record.bonus_total,
                "plan_version": outcome.record.plan_version,
            })),
            state.clock.now(),
        )
        .await;
    }
    Ok(Json(MonthCloseView::of(outcome.record, outcome.ran)))
}
