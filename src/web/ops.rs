//! `/ops`, the payment-ops console (SPEC §2.9): per workflow step, jobs by
//! state with the oldest wait and the last hour's throughput; failed and
//! stuck jobs with their error and what they drive, with retry and cancel;
//! the review queue with each withdrawal's risk flags, approve and reject;
//! a warning when the business calendar runs out; and a day's
//! reconciliation against the gateways' statements ([`reconciliation`]):
//! both sides' totals, the mismatches, resolving one, running the day
//! again; and the outgoing webhooks ([`webhooks`]): each endpoint's
//! health, the failed deliveries, replaying them. Each withdrawal and order
//! it names links to its own page ([`timeline`]). Plain HTML whose buttons
//! are forms (safe to press twice: the actions are idempotent); it reloads
//! itself every few seconds with a small script that waits while someone
//! writes in a form, or with a meta refresh when scripts are off.

pub(crate) mod reconciliation;
pub(crate) mod timeline;
pub(crate) mod webhooks;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::domain::access::Role;
use crate::domain::ids::WithdrawalId;
use crate::domain::withdrawal::ReviewDecision;
use crate::domain::withdrawal::WithdrawalState;
use crate::service::ops::{
    JOB_STATES, JobAction, JobView, JobsQuery, QueuesView, job_action, jobs_page, queues_view,
};
use crate::state::AppState;
use crate::store::{FlaggedOrder, WithdrawalRecord};
use crate::web::session::PageCaller;
use crate::web::{PageError, html_response, layout, signed_in_as};

/// Seconds between the page's own reloads.
const REFRESH_SECONDS: u32 = 10;
/// The console's self-reload, served from this host (the pages' CSP allows
/// scripts from 'self' only).
const REFRESH_SCRIPT: &str = include_str!("assets/ops-refresh.js");
/// Rows per table.
const ROWS: i64 = 50;

fn ops_caller(
    caller: Result<PageCaller, ApiError>,
    back_to: &str,
) -> Result<crate::domain::access::Principal, PageError> {
    signed_in_as(
        caller,
        back_to,
        &[Role::Ops, Role::Admin],
        "This page is for the ops and admin tokens. 仅限运营与管理员令牌。",
    )
}

/// `GET /ops`.
pub(crate) async fn page(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: Uri,
    day: Result<Query<reconciliation::DayQuery>, QueryRejection>,
    webhooks_notice: Result<Query<webhooks::Notice>, QueryRejection>,
) -> Result<Response, PageError> {
    let back_to = uri.path_and_query().map_or("/ops", |path| path.as_str());
    ops_caller(caller, back_to)?;
    let shown = reconciliation::Shown::of(&state, day.map(|Query(day)| day).unwrap_or_default());
    let queues = queues_view(&state).await?;
    let failed = jobs_page(&state, &query(Some("failed"))).await?.items;
    let stuck: Vec<JobView> = jobs_page(&state, &query(Some("running")))
        .await?
        .items
        .into_iter()
        .filter(|job| job.stuck)
        .collect();
    let reviewing = state
        .store
        .withdrawals_in_states(
            &[WithdrawalState::Reviewing],
            state.clock.now() + chrono::Duration::days(1),
            ROWS,
        )
        .await?;
    let flagged = state.store.flagged_orders(ROWS).await?;
    let reconciliation = reconciliation::section(&state, &shown).await?;
    let webhooks = webhooks::section(
        &state,
        &webhooks_notice
            .map(|Query(notice)| notice)
            .unwrap_or_default(),
    )
    .await?;
    let markup = layout(
        "运营 Ops",
        true,
        html! {
            noscript { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
            script src="/ops/refresh.js" data-seconds=(REFRESH_SECONDS) defer {}
            h1 { "运营 Ops console" }
            (calendar_warning(&queues))
            (queue_table(&queues))
            (calendar_table(&queues))
            (jobs_table("失败 Failed jobs", "No failed jobs.", &failed))
            (jobs_table("卡住 Stuck jobs (running past their timeout or held by a dead worker)", "No stuck jobs.", &stuck))
            (review_table(&reviewing))
            (flagged_table(&flagged))
            (reconciliation)
            (webhooks)
            p.muted { "Reloads every " (REFRESH_SECONDS) " s · " a href="/ops/queues.json" { "JSON" } " · " a href="/metrics" { "metrics" } }
        },
    );
    Ok(html_response(StatusCode::OK, markup))
}

/// `GET /ops/refresh.js`: public, like any static file; it holds no data.
pub(crate) async fn refresh_script() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        REFRESH_SCRIPT,
    )
        .into_response()
}

fn query(job_state: Option<&str>) -> JobsQuery {
    JobsQuery {
        state: job_state.map(str::to_owned),
        workflow: None,
        step: None,
        after: None,
        limit: Some(ROWS),
    }
}

fn calendar_warning(queues: &QueuesView) -> Markup {
    html! {
        @if queues.calendar_warning {
            p.error id="calendar-warning" {
                "营业日历只覆盖未来 " (queues.calendar_covered_days) " 天 — the business calendar covers only "
                (queues.calendar_covered_days) " more days; apply next year's State Council notice (fenrun calendar apply FILE)."
            }
        }
        @for provisional in &queues.provisional_years {
            p.error.provisional-year id={ "provisional-" (provisional.year) } {
                (provisional.year) " 年为暂定日历 — " (provisional.year) " is provisional ("
                @if provisional.origin == "statutory" {
                    "statutory holidays computed; bridging days and make-up working days unknown"
                } @else {
                    "weekends only"
                }
                "): release times in it may move. When the year's State Council notice is published, apply it: "
                code { "fenrun calendar apply FILE --year " (provisional.year) }
                " or PUT /v1/admin/calendars/{name}/years/" (provisional.year) "; holding orders are re-planned."
            }
        }
    }
}

/// Orders the plan's risk rules held longer, newest first.
fn flagged_table(flagged: &[FlaggedOrder]) -> Markup {
    html! {
        h2 { "风险订单 Flagged orders (held longer by the plan's risk rules)" }
        @if flagged.is_empty() {
            p.muted { "No flagged orders." }
        } @else {
            table id="flagged-orders" {
                thead { tr {
                    th { "order" } th { "distributor" } th { "buyer" } th { "state" }
                    th { "flags" } th.num { "extra days" } th { "confirmed" } th { "release" }
                } }
                tbody {
                    @for order in flagged {
                        tr id={ "flagged-" (order.order_id) } {
                            td { a href=(timeline::order_path(&order.order_id)) { code { (order.order_id) } } }
                            td { code { (order.distributor_id) } }
                            td { code { (order.buyer_id) } }
                            td { (order.state.as_str()) }
                            td { (order.risk_flags.join("; ")) }
                            td.num { (order.extra_hold_days) }
                            td { (order.confirmed_at.format("%Y-%m-%d %H:%M UTC")) }
                            td { (order.release_at.format("%Y-%m-%d %H:%M UTC")) }
                        }
                    }
                }
            }
            p.muted { "To void an order's commission: POST /v1/orders/{id}/void-commission with a reason (audited)." }
        }
    }
}

fn calendar_table(queues: &QueuesView) -> Markup {
    html! {
        h2 { "营业日历 Business calendar" }
        table id="calendar-years" {
            thead { tr {
                th { "year" } th { "from" } th { "notice" } th { "version" } th { "applied by" } th { "applied at" }
            } }
            tbody {
                @for year in &queues.calendar_years {
                    tr id={ "calendar-" (year.year) } {
                        td { (year.year) }
                        td {
                            @match year.origin {
                                "file" => "calendar file",
                                "applied" => "applied at run time",
                                "statutory" => span.error { "provisional: statutory holidays computed" },
                                _ => span.error { "provisional: weekends only" },
                            }
                        }
                        td { (year.source.as_deref().unwrap_or("—")) }
                        @if let Some(applied) = &year.applied {
                            td.num {
                                "v" (applied.version)
                                @if applied.replanned_at.is_none() { " " span.error { "re-planning holds…" } }
                            }
                            td { (applied.applied_by) }
                            td { (applied.applied_at.format("%Y-%m-%d %H:%M UTC")) }
                        } @else {
                            td.num { "—" } td { "—" } td { "—" }
                        }
                    }
                }
            }
        }
    }
}

fn queue_table(queues: &QueuesView) -> Markup {
    html! {
        h2 { "队列 Queues" }
        table id="queues" {
            thead { tr {
                th { "workflow" } th { "step" } th { "queue" }
                @for job_state in JOB_STATES { th.num { (job_state) } }
                th.num { "oldest wait" } th.num { "done, last hour" }
            } }
            tbody {
                @for step in &queues.steps {
                    tr {
                        td { (step.workflow) } td { (step.step) } td { code { (step.queue) } }
                        @for job_state in JOB_STATES {
                            td.num data-state=(job_state) { (step.counts.get(job_state).copied().unwrap_or(0)) }
                        }
                        td.num { (age(step.oldest_waiting_seconds)) }
                        td.num { (step.done_last_hour) }
                    }
                }
            }
        }
    }
}

fn age(seconds: i64) -> String {
    match seconds {
        0 => "—".to_owned(),
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

fn jobs_table(title: &str, empty: &str, jobs: &[JobView]) -> Markup {
    html! {
        h2 { (title) }
        @if jobs.is_empty() {
            p.muted { (empty) }
        } @else {
            table.jobs {
                thead { tr {
                    th { "job" } th { "step" } th { "target" } th.num { "attempts" } th { "error" } th { "" }
                } }
                tbody {
                    @for job in jobs {
                        tr {
                            td { code { (job.id) } }
                            td { (job.workflow.as_deref().unwrap_or("?")) " / " (job.step.as_deref().unwrap_or(&job.queue)) }
                            td {
                                @match &job.target {
                                    // The API's path of a withdrawal, opened as the
                                    // console's page of it (the API takes no cookie).
                                    Some(target) if target.starts_with('/') => a href=(target.replacen("/v1/withdrawals/", "/ops/withdrawals/", 1)) { (target) },
                                    Some(target) => (target),
                                    None => "—",
                                }
                            }
                            td.num { (job.attempts) " / " (job.max_attempts) }
                            td.error { (job.last_error.as_deref().unwrap_or("")) }
                            td {
                                form.inline method="post" action={"/ops/jobs/" (job.id) "/retry"} {
                                    button type="submit" { "重试 Retry" }
                                }
                                " "
                                form.inline method="post" action={"/ops/jobs/" (job.id) "/cancel"} {
                                    button type="submit" { "取消 Cancel" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn review_table(reviewing: &[WithdrawalRecord]) -> Markup {
    html! {
        h2 { "待审核 Review queue" }
        @if reviewing.is_empty() {
            p.muted { "No withdrawal waits for review." }
        } @else {
            table id="reviews" {
                thead { tr {
                    th { "withdrawal" } th { "distributor" } th.num { "gross" } th.num { "net" }
                    th { "risk flags" } th { "requested" } th { "" }
                } }
                tbody {
                    @for withdrawal in reviewing {
                        tr {
                            td { a href=(timeline::withdrawal_path(withdrawal.id.as_str())) { code { (withdrawal.id) } } }
                            td { (withdrawal.distributor_id.as_str()) }
                            td.num { (withdrawal.gross) }
                            td.num { (withdrawal.net) }
                            td {
                                @for flag in &withdrawal.risk_flags {
                                    span.flag { (serde_json::to_value(flag).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } " "
                                }
                            }
                            td { (timestamp(withdrawal.requested_at)) }
                            td {
                                form.inline method="post" action={"/ops/withdrawals/" (withdrawal.id) "/approve"} {
                                    button type="submit" { "批准 Approve" }
                                }
                                " "
                                form.inline method="post" action={"/ops/withdrawals/" (withdrawal.id) "/reject"} {
                                    input type="text" name="reason" required placeholder="reason 原因" maxlength="200";
                                    button type="submit" { "拒绝 Reject" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// `POST /ops/jobs/{id}/{retry|cancel}`: the API's action, then back to the console.
pub(crate) async fn job(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops")?;
    let action = match action.as_str() {
        "retry" => JobAction::Retry,
        "cancel" => JobAction::Cancel,
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    job_action(&state, &principal, id, action).await?;
    Ok(Redirect::to("/ops").into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReviewForm {
    reason: Option<String>,
}

/// `POST /ops/withdrawals/{id}/{approve|reject}`.
pub(crate) async fn review(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<ReviewForm>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops")?;
    let decision = match decision.as_str() {
        "approve" => ReviewDecision::Approve {
            by: principal.token_id.clone(),
            note: None,
        },
        "reject" => {
            let reason = form.reason.unwrap_or_default();
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > 200 {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "A rejection needs a reason of 1–200 characters. 拒绝需填写原因。",
                ));
            }
            ReviewDecision::Reject {
                by: principal.token_id.clone(),
                reason: reason.to_owned(),
            }
        }
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "no such decision")),
    };
    let id = WithdrawalId::parse(id).map_err(|_| ApiError::not_found("withdrawal"))?;
    let reviewed = state
        .withdrawals
        .review(
            &id,
            &decision,
            &crate::service::audit::Actor::of(&principal),
        )
        .await;
    match reviewed {
        Ok(_) => {}
        // A second press (a double click, or two people on the queue) after
        // the same decision already took effect: nothing to do, back to the
        // console. A different decision, or a cancellation, stays an error.
        Err(error) if already_decided(&state, &id, &decision).await? => {
            tracing::info!(withdrawal_id = %id, error = %error, "ops: review already decided");
        }
        Err(error) => return Err(ApiError::from(error).into()),
    }
    Ok(Redirect::to("/ops").into_response())
}

/// Whether the withdrawal was already reviewed with `decision`'s outcome.
async fn already_decided(
    state: &AppState,
    id: &WithdrawalId,
    decision: &ReviewDecision,
) -> Result<bool, PageError> {
    let Some(withdrawal) = state.store.withdrawal(id).await? else {
        return Ok(false);
    };
    Ok(withdrawal.reviewed_by.is_some()
        && match decision {
            ReviewDecision::Approve { .. } => !matches!(
                withdrawal.state,
                WithdrawalState::Reviewing | WithdrawalState::Rejected
            ),
            ReviewDecision::Reject { .. } => withdrawal.state == WithdrawalState::Rejected,
        })
}
