//! The console's webhooks section (Webhooks 推送, issue 16): each endpoint
//! not deleted with its subscription, state and health (healthy, failing
//! since…, disabled and why), its pending and failed deliveries and last
//! success and failure, with a form replaying its failed deliveries of a
//! time range; and the newest failed deliveries, each with what the
//! receiver last answered and a replay button.
//!
//! Replays are `service::webhooks::replay_delivery` and `replay_failed`, as
//! for `/v1/ops/webhooks/…/replay`, audited there with the session's actor.
//! Each POST lands (303) back on `/ops#webhooks` with a short code in the
//! query (`webhooks=`, and `replayed=` a count) shown as a sentence: never
//! text from the URL. A refusal (a disabled endpoint, a bad range) is the
//! error page saying what to do next.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::service::audit::Actor;
use crate::service::webhooks::{
    DeliveryView, EndpointView, WebhookError, deliveries, endpoints, replay_delivery, replay_failed,
};
use crate::state::AppState;
use crate::store::DeliveryFilter;
use crate::web::PageError;
use crate::web::session::PageCaller;

use super::{ROWS, ops_caller, timeline, timestamp};

/// The range a replay form offers unless changed: the last day.
const DEFAULT_RANGE: Duration = Duration::hours(24);
/// How `<input type="datetime-local">` sends a time (seconds when the
/// browser adds them).
const LOCAL_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"];

/// How the last replay the page sent went, as the redirect's query says.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Notice {
    webhooks: Option<String>,
    replayed: Option<u64>,
}

/// A range replay's two ends, as the form's datetime-local inputs send them
/// (China time).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeForm {
    from: Option<String>,
    to: Option<String>,
}

/// The sentence for the notice's code; `None` for a code the page never sends.
fn notice_message(notice: &Notice) -> Option<String> {
    match notice.webhooks.as_deref()? {
        "replayed" => Some(
            "The delivery was queued again with the same webhook-id; it goes out within seconds. 已重新排队发送。"
                .to_owned(),
        ),
        "replayed_range" => Some(format!(
            "{} failed deliveries were queued again, each with its own webhook-id as before. 已重新排队 {} 条。",
            notice.replayed.unwrap_or(0),
            notice.replayed.unwrap_or(0)
        )),
        _ => None,
    }
}

/// The section for the page.
pub(crate) async fn section(state: &AppState, notice: &Notice) -> Result<Markup, PageError> {
    let endpoints = endpoints(state)
        .await
        .map_err(|error| page_error(error, None))?;
    let failed = deliveries(
        state,
        &DeliveryFilter {
            state: Some("failed".to_owned()),
            endpoint_id: None,
            limit: ROWS,
        },
    )
    .await
    .map_err(|error| page_error(error, None))?;
    let (from, to) = default_range(state.clock.now());
    Ok(html! {
        h2 id="webhooks" { "Webhooks 推送" }
        @if let Some(message) = notice_message(notice) {
            p.ok id="webhooks-notice" { (message) }
        }
        @if endpoints.is_empty() {
            p.muted { "No webhook endpoint. An admin adds one with POST /v1/admin/webhooks. 暂无推送地址。" }
        } @else {
            @for endpoint in &endpoints {
                (endpoint_card(endpoint, &from, &to))
            }
        }
        h3 { "失败 Failed deliveries (newest first, " (ROWS) " at most)" }
        @if failed.is_empty() {
            p.muted { "No failed delivery. 无失败推送。" }
        } @else {
            (failed_table(&failed))
        }
        p.muted {
            "All deliveries: GET /v1/ops/webhooks/deliveries?state=failed&endpoint_id=… · "
            "a replay sends the same webhook-id, so a receiver that dedupes by it applies the event once."
        }
    })
}

fn health(endpoint: &EndpointView) -> Markup {
    html! {
        @match endpoint.health.as_str() {
            "healthy" => span.ok { "healthy 正常" },
            "failing" => {
                span.error { "failing 失败中" }
                @if let Some(since) = endpoint.failing_since { " since " (timestamp(since)) }
            },
            _ => {
                span.error { "disabled 已停用" }
                @if let Some(reason) = &endpoint.disabled_reason { ": " (reason) }
                @if let Some(at) = endpoint.disabled_at { " (" (timestamp(at)) ")" }
                br;
                span.muted { "Enable it once its receiver is fixed: POST /v1/admin/webhooks/" (endpoint.id) "/enable, then replay." }
            },
        }
    }
}

fn optional_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".to_owned(), timestamp)
}

/// One endpoint's facts and its range replay form.
fn endpoint_card(endpoint: &EndpointView, from: &str, to: &str) -> Markup {
    html! {
        section.webhook-endpoint id={ "webhook-endpoint-" (endpoint.id) } {
            p {
                code { (endpoint.id) } " " strong { (endpoint.url) }
                @if let Some(description) = &endpoint.description { " — " (description) }
            }
            table.facts {
                tr { th { "events 事件" } td { (endpoint.events.join(", ")) } }
                tr { th { "state 状态" } td { (endpoint.state) } }
                tr { th { "health 健康" } td.health { (health(endpoint)) } }
                tr { th { "pending 待发" } td.num.pending { (endpoint.pending_deliveries) } }
                tr { th { "failed 失败" } td.num.failed { (endpoint.failed_deliveries) } }
                tr { th { "last success 上次成功" } td { (optional_time(endpoint.last_success_at)) } }
                tr { th { "last failure 上次失败" } td { (optional_time(endpoint.last_failure_at)) } }
            }
            form method="post" action={ "/ops/webhooks/endpoints/" (endpoint.id) "/replay" } {
                "重发失败 Replay all failed deliveries of events between "
                label { input type="datetime-local" name="from" value=(from) required; }
                " and "
                label { input type="datetime-local" name="to" value=(to) required; }
                " (China time 北京时间) "
                button type="submit" { "重发 Replay" }
            }
        }
    }
}

/// Where an event's subject has a page on the console.
fn subject_link(delivery: &DeliveryView) -> Markup {
    let subject = delivery.subject.as_str();
    let path = match delivery.event_type.split('.').next() {
        Some("withdrawal" | "certificate") => Some(timeline::withdrawal_path(subject)),
        Some("commission") => Some(timeline::order_path(subject)),
        _ => None,
    };
    html! {
        @match path {
            Some(path) => a href=(path) { code { (subject) } },
            None => code { (subject) },
        }
    }
}

fn failed_table(failed: &[DeliveryView]) -> Markup {
    html! {
        div.scroll { table id="webhook-failed" {
            thead { tr {
                th { "delivery" } th { "event" } th { "subject" } th { "endpoint" } th { "occurred" }
                th.num { "attempts" } th.num { "last status" } th { "last error" } th { "response" } th { "" }
            } }
            tbody {
                @for delivery in failed {
                    tr id={ "webhook-delivery-" (delivery.id) } {
                        td { code { (delivery.id) } br; span.muted { (delivery.event_id) } }
                        td { (delivery.event_type) }
                        td { (subject_link(delivery)) }
                        td { code { (delivery.endpoint_id) } }
                        td { (timestamp(delivery.occurred_at)) }
                        td.num { (delivery.attempts) }
                        td.num.status { (delivery.last_status.map_or_else(|| "—".to_owned(), |status| status.to_string())) }
                        td.error { (delivery.last_error.as_deref().unwrap_or("")) }
                        td { code { (response_start(delivery.last_response.as_deref())) } }
                        td {
                            form.inline method="post" action={ "/ops/webhooks/deliveries/" (delivery.id) "/replay" } {
                                button type="submit" { "重发 Replay" }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// Characters of the receiver's answer shown in the table (the API has
/// the whole kept start).
const RESPONSE_SHOWN_CHARS: usize = 120;

fn response_start(response: Option<&str>) -> String {
    let Some(response) = response else {
        return String::new();
    };
    let mut shown: String = response.chars().take(RESPONSE_SHOWN_CHARS).collect();
    if response.chars().count() > RESPONSE_SHOWN_CHARS {
        shown.push('…');
    }
    shown
}

/// The last day, as datetime-local values in China time: `to` is the next
/// whole minute, so an event of this minute is inside `[from, to)`.
fn default_range(now: DateTime<Utc>) -> (String, String) {
    let minute = Duration::minutes(1);
    let to = now.duration_trunc(minute).unwrap_or(now) + minute;
    (local_value(to - DEFAULT_RANGE), local_value(to))
}

fn local_value(at: DateTime<Utc>) -> String {
    at.with_timezone(&Shanghai)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A datetime-local value read as China time.
fn parse_local(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let naive = LOCAL_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())?;
    // China keeps no daylight saving: every local time is one instant.
    Shanghai
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// A service refusal as the page says it, with what to do next; `endpoint`
/// names the endpoint when the form did.
fn page_error(error: WebhookError, endpoint: Option<&str>) -> PageError {
    match error {
        WebhookError::EndpointDisabled => PageError::new(
            StatusCode::CONFLICT,
            format!(
                "The endpoint is disabled, so nothing was replayed. Fix its receiver, have an admin enable it \
                 (POST /v1/admin/webhooks/{}/enable; its id is on its card in the console's Webhooks section), \
                 then replay again. 推送地址已停用：请先修复接收方并启用，再重发。",
                endpoint.unwrap_or("{id}")
            ),
        ),
        other => ApiError::from(other).into(),
    }
}

fn back(notice: &str) -> Response {
    Redirect::to(&format!("/ops?webhooks={notice}#webhooks")).into_response()
}

/// `POST /ops/webhooks/deliveries/{id}/replay`: sends the delivery again
/// with the same webhook-id (audited as `webhooks.replay_delivery`).
pub(crate) async fn replay_one(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops#webhooks")?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    replay_delivery(&state, &Actor::of(&principal), id)
        .await
        .map_err(|error| page_error(error, None))?;
    Ok(back("replayed"))
}

/// `POST /ops/webhooks/endpoints/{id}/replay`: replays the endpoint's
/// failed deliveries of events in `[from, to)` (audited as the API's).
pub(crate) async fn replay_range(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
    Form(form): Form<RangeForm>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops#webhooks")?;
    let read = |value: Option<&str>, name: &str| {
        value.and_then(parse_local).ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "The range's {name} must be a date and time as YYYY-MM-DDTHH:MM (China time). 时间格式无效。"
                ),
            )
        })
    };
    let from = read(form.from.as_deref(), "start")?;
    let to = read(form.to.as_deref(), "end")?;
    let replayed = replay_failed(&state, &Actor::of(&principal), &id, from, to)
        .await
        .map_err(|error| page_error(error, Some(&id)))?;
    Ok(back(&format!("replayed_range&replayed={replayed}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_read_in_china_time_and_defaults_to_the_last_day() {
        assert_eq!(
            parse_local("2027-03-10T08:30"),
            Some("2027-03-10T00:30:00Z".parse().unwrap())
        );
        assert_eq!(
            parse_local("2027-03-10T08:30:15"),
            Some("2027-03-10T00:30:15Z".parse().unwrap())
        );
        for bad in ["", "2027-03-10", "10/03/2027 08:30", "2027-03-10T25:00"] {
            assert_eq!(parse_local(bad), None, "{bad:?}");
        }
        let now: DateTime<Utc> = "2027-03-10T00:30:20Z".parse().unwrap();
        assert_eq!(
            default_range(now),
            ("2027-03-09T08:31".to_owned(), "2027-03-10T08:31".to_owned())
        );
    }

    #[test]
    fn only_the_codes_the_page_sends_become_a_sentence() {
        let notice = |code: &str, replayed| Notice {
            webhooks: Some(code.to_owned()),
            replayed,
        };
        assert!(notice_message(&notice("replayed", None)).is_some());
        assert!(
            notice_message(&notice("replayed_range", Some(3)))
                .unwrap()
                .starts_with("3 failed")
        );
        assert_eq!(notice_message(&notice("<script>", None)), None);
        assert_eq!(notice_message(&Notice::default()), None);
    }

    #[test]
    fn a_disabled_endpoint_says_how_to_enable_it() {
        let PageError::Status { status, message } =
            page_error(WebhookError::EndpointDisabled, Some("ep_abc"))
        else {
            panic!("a status page");
        };
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            message.contains("POST /v1/admin/webhooks/ep_abc/enable"),
            "{message}"
        );
    }

    #[test]
    fn a_long_response_is_cut_at_a_character() {
        assert_eq!(response_start(None), "");
        let long = "错".repeat(RESPONSE_SHOWN_CHARS + 5);
        let shown = response_start(Some(&long));
        assert_eq!(shown.chars().count(), RESPONSE_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
