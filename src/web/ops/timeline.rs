//! The console's page per withdrawal (`/ops/withdrawals/{id}`) and per order
//! (`/ops/orders/{id}`): the facts, the timeline of its steps, the ledger
//! transfers that moved its money with their postings, and the webhook
//! deliveries about it. Server-rendered like the rest of `/ops`, for ops
//! and admin sessions; no script, and each table scrolls sideways on a
//! phone.
//!
//! `/ops/withdrawals/{id}.json` and `/ops/orders/{id}.json` keep the JSON
//! the console used to link to: the API's answer (`GET /v1/withdrawals/{id}`,
//! `GET /v1/orders/{id}`) for the signed-in session.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::api::error::ApiError;
use crate::api::policy::{AdminOpsOrIngest, Allowed};
use crate::domain::ids::{OrderId, WithdrawalId};
use crate::state::AppState;
use crate::store::{
    ItemRecord, JournalTransfer, LineRecord, OrderRecord, WebhookDeliveryRecord, WithdrawalRecord,
};
use crate::web::session::PageCaller;
use crate::web::{PageError, api_path, here, html_response, layout, signed_in};

use super::ops_caller;

/// What a path ending in it asks for: the JSON view, not the page.
const JSON_SUFFIX: &str = ".json";

/// The path of a withdrawal's page on the console.
pub(crate) fn withdrawal_path(id: &str) -> String {
    format!("/ops/withdrawals/{id}")
}

/// The path of an order's page on the console.
pub(crate) fn order_path(id: &str) -> String {
    format!("/ops/orders/{id}")
}

/// The [`Step`]s of a withdrawal's or an order's events (the two have the
/// same fields).
macro_rules! steps_of {
    ($events:expr) => {
        $events
            .iter()
            .map(|event| Step {
                at: event.at,
                step: &event.step,
                outcome: &event.outcome,
                attempt: event.attempt,
                detail: event.detail.as_deref(),
            })
            .collect::<Vec<Step<'_>>>()
    };
}

/// `GET /ops/withdrawals/{id}` (the page) and `GET /ops/withdrawals/{id}.json`.
pub(crate) async fn withdrawal_page(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    if let Some(id) = id.strip_suffix(JSON_SUFFIX) {
        return crate::web::withdrawal_json(State(state), caller, uri, Path(id.to_owned())).await;
    }
    ops_caller(caller, here(&uri))?;
    let not_found = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("No withdrawal {id}. 未找到该提现。"),
        )
    };
    let withdrawal_id = WithdrawalId::parse(id.as_str()).map_err(|_| not_found())?;
    let withdrawal = state
        .store
        .withdrawal(&withdrawal_id)
        .await?
        .ok_or_else(not_found)?;
    let events = state.store.withdrawal_events(&withdrawal_id).await?;
    let certificate = state.store.certificate_number_for(&withdrawal_id).await?;
    let steps = steps_of!(events);
    let facts = withdrawal_facts(
        &withdrawal,
        certificate.as_ref().map(|number| number.as_str()),
    );
    subject_page(
        &state,
        Subject {
            heading: "提现 Withdrawal",
            id: withdrawal_id.as_str(),
            key: format!("withdrawal:{withdrawal_id}"),
            path: withdrawal_path(withdrawal_id.as_str()),
        },
        facts,
        &steps,
    )
    .await
}

/// `GET /ops/orders/{id}` (the page) and `GET /ops/orders/{id}.json`.
pub(crate) async fn order_page(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    if let Some(id) = id.strip_suffix(JSON_SUFFIX) {
        let caller: Allowed<AdminOpsOrIngest> = signed_in(caller, here(&uri))?;
        return Ok(
            crate::api::orders::get(State(state), caller, api_path(Path(id.to_owned())))
                .await
                .into_response(),
        );
    }
    ops_caller(caller, here(&uri))?;
    let not_found = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("No order {id}. 未找到该订单。"),
        )
    };
    let order_id = OrderId::parse(id.as_str()).map_err(|_| not_found())?;
    let order = state
        .store
        .order(order_id.as_str())
        .await?
        .ok_or_else(not_found)?;
    let items = state.store.order_items(order_id.as_str()).await?;
    let steps = steps_of!(order.timeline);
    let facts = html! {
        (order_facts(&order))
        (items_section(&items))
        (commissions_section(&order.lines))
    };
    subject_page(
        &state,
        Subject {
            heading: "订单 Order",
            id: order_id.as_str(),
            key: format!("order:{order_id}"),
            path: order_path(order_id.as_str()),
        },
        facts,
        &steps,
    )
    .await
}

/// What a page is about.
struct Subject<'a> {
    /// e.g. `提现 Withdrawal`.
    heading: &'static str,
    id: &'a str,
    /// `withdrawal:{id}` or `order:{id}`: what its ledger transfers' keys
    /// are filed under (its webhook events are filed under the bare id).
    key: String,
    /// The page's own path.
    path: String,
}

/// A page: `facts` (the subject's own), then what both kinds share: the
/// timeline, the ledger transfers and the webhook deliveries.
async fn subject_page(
    state: &AppState,
    subject: Subject<'_>,
    facts: Markup,
    steps: &[Step<'_>],
) -> Result<Response, PageError> {
    let transfers = state.store.ledger_transfers_of(&subject.key).await?;
    let deliveries = state
        .store
        .webhook_deliveries_of_subject(subject.id)
        .await?;
    let title = format!("{} {}", subject.heading, subject.id);
    let markup = layout(
        &title,
        true,
        html! {
            p { a href="/ops" { "← 运营 Ops console" } }
            h1 { (subject.heading) " " code { (subject.id) } }
            (facts)
            (timeline_section(steps))
            (transfers_section(&transfers))
            (webhook_deliveries_section(&deliveries))
            p.muted {
                "Times are China time (北京时间). The same as JSON: "
                a href={ (subject.path) (JSON_SUFFIX) } { (subject.path) (JSON_SUFFIX) }
            }
        },
    );
    Ok(html_response(StatusCode::OK, markup))
}

/// A timeline entry, whichever kind of subject it belongs to.
struct Step<'a> {
    at: DateTime<Utc>,
    step: &'a str,
    outcome: &'a str,
    attempt: i64,
    detail: Option<&'a str>,
}

/// China time to the second: steps a few seconds apart stay apart.
fn moment(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn optional(text: Option<&str>) -> &str {
    text.filter(|text| !text.is_empty()).unwrap_or("—")
}

fn withdrawal_facts(withdrawal: &WithdrawalRecord, certificate: Option<&str>) -> Markup {
    let flags: Vec<String> = withdrawal
        .risk_flags
        .iter()
        .filter_map(|flag| {
            serde_json::to_value(flag)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
        })
        .collect();
    html! {
        section {
            table.facts id="facts" {
                tr { th { "状态 State" } td #state { strong { (withdrawal.state.as_str()) } } }
                tr { th { "分销员 Distributor" } td { code { (withdrawal.distributor_id) } } }
                tr { th { "申请金额 Gross" } td.num #gross { (withdrawal.gross) } }
                tr { th { "个税 Tax" } td.num #tax { (withdrawal.tax) } }
                tr { th { "手续费 Fee" } td.num #fee { (withdrawal.fee) } }
                tr { th { "实发 Net" } td.num #net { (withdrawal.net) } }
                tr { th { "渠道 Channel" } td #channel { (withdrawal.channel.as_str()) " · " (withdrawal.speed.as_str()) } }
                tr { th { "收款账户 Payout account" } td { code { (withdrawal.payout_account_id) } } }
                tr { th { "商户单号 Our reference" } td { code { (withdrawal.out_bill_no) } } }
                tr { th { "网关单号 Gateway reference" } td #gateway-reference { code { (optional(withdrawal.gateway_bill_no.as_deref())) } } }
                tr { th { "完税证明 Certificate" } td #certificate { code { (optional(certificate)) } } }
                tr { th { "计税 Tax method" } td { (withdrawal.tax_method) " · " (withdrawal.tax_month) } }
                tr { th { "风险 Risk flags" } td { (optional(Some(&flags.join("; ")))) } }
                tr { th { "审核 Reviewed by" } td { (optional(withdrawal.reviewed_by.as_deref())) @if let Some(note) = &withdrawal.review_note { " — " (note) } } }
                tr { th { "原因 Failure reason" } td.error { (optional(withdrawal.failure_reason.as_deref())) } }
                tr { th { "转账尝试 Transfer attempts" } td.num { (withdrawal.transfer_attempts) } }
                tr { th { "申请 Requested" } td { (moment(withdrawal.requested_at)) } }
                tr { th { "发出 Sent after" } td { (withdrawal.send_after.map_or_else(|| "—".to_owned(), moment)) @if let Some(cycle) = &withdrawal.payout_cycle { " (" (cycle) ")" } } }
                tr { th { "完成 Finished" } td { (withdrawal.finished_at.map_or_else(|| "—".to_owned(), moment)) } }
            }
        }
    }
}

fn order_facts(order: &OrderRecord) -> Markup {
    html! {
        section {
            table.facts id="facts" {
                tr { th { "状态 State" } td #state { strong { (order.state.as_str()) } } }
                tr { th { "分销员 Distributor" } td { code { (order.distributor_id) } } }
                tr { th { "买家 Buyer" } td { code { (order.buyer_id) } } }
                tr { th { "金额 Total" } td.num #total { (order.total) } }
                tr { th { "已退款 Refunded" } td.num #refunded { (order.refunded) } }
                tr { th { "下单 Placed" } td { (moment(order.placed_at)) } }
                tr { th { "确认收货 Confirmed" } td { (moment(order.confirmed_at)) } }
                tr {
                    th { "解冻 Hold release" }
                    td #release {
                        (moment(order.release_at))
                        @if order.release_at_provisional { " " span.error { "provisional 暂定 (the calendar may move it)" } }
                        @if order.extra_hold_days > 0 { " (+" (order.extra_hold_days) " days for risk 风险延长)" }
                    }
                }
                tr { th { "方案 Plan version" } td.num { (order.plan_version) } }
                tr { th { "风险 Risk flags" } td { (optional(Some(&order.risk_flags.join("; ")))) } }
                @if order.commission_voided {
                    tr { th { "作废 Voided" } td.error { "commission voided by ops 佣金已作废" } }
                }
            }
        }
    }
}

fn items_section(items: &[ItemRecord]) -> Markup {
    html! {
        h2 { "商品 Items" }
        div.scroll { table id="items" {
            thead { tr { th.num { "#" } th { "sku" } th { "category" } th.num { "amount" } th.num { "refunded" } } }
            tbody {
                @for item in items {
                    tr {
                        td.num { (item.line_no) }
                        td { code { (item.sku) } }
                        td { (item.category) }
                        td.num { (item.amount) }
                        td.num { (item.refunded) }
                    }
                }
            }
        } }
    }
}

fn commissions_section(lines: &[LineRecord]) -> Markup {
    html! {
        h2 { "佣金 Commissions" }
        @if lines.is_empty() {
            p.muted { "This order earns no commission. 无佣金。" }
        } @else {
            div.scroll { table id="commissions" {
                thead { tr {
                    th.num { "level 级" } th { "beneficiary" } th.num { "base" } th.num { "rate" }
                    th.num { "amount" } th { "state" } th { "campaign" }
                } }
                tbody {
                    @for line in lines {
                        tr id={ "commission-" (line.level) } {
                            td.num { (line.level) }
                            td { code { (line.beneficiary_id) } }
                            td.num { (line.base) }
                            td.num { (line.rate) }
                            td.num { (line.amount) }
                            td { (line.state.as_str()) }
                            td { (optional(line.campaign.as_deref())) }
                        }
                    }
                }
            } }
        }
    }
}

fn timeline_section(steps: &[Step<'_>]) -> Markup {
    html! {
        h2 { "时间线 Timeline" }
        @if steps.is_empty() {
            p.muted { "No step recorded yet. 暂无记录。" }
        } @else {
            div.scroll { table id="timeline" {
                thead { tr { th { "at" } th { "step" } th { "outcome" } th.num { "attempt" } th { "detail" } } }
                tbody {
                    @for step in steps {
                        tr.step {
                            td { (moment(step.at)) }
                            td { code { (step.step) } }
                            td { (step.outcome) }
                            td.num { (step.attempt) }
                            td { (optional(step.detail)) }
                        }
                    }
                }
            } }
        }
    }
}

fn transfers_section(transfers: &[JournalTransfer]) -> Markup {
    html! {
        h2 { "账本 Ledger transfers" }
        @if transfers.is_empty() {
            p.muted { "No ledger transfer yet. 暂无账本记录。" }
        } @else {
            div.scroll { table id="transfers" {
                thead { tr { th { "transfer" } th { "kind" } th { "at" } th { "account" } th.num { "amount" } } }
                tbody {
                    @for transfer in transfers {
                        @for (index, posting) in transfer.postings.iter().enumerate() {
                            tr.posting data-transfer=(transfer.idempotency_key) {
                                @if index == 0 {
                                    td rowspan=(transfer.postings.len()) { code { (transfer.idempotency_key) } }
                                    td rowspan=(transfer.postings.len()) { (transfer.kind) }
                                    td rowspan=(transfer.postings.len()) { (moment(transfer.created_at)) }
                                }
                                td { code { (posting.account) } }
                                td.num { (posting.amount) }
                            }
                        }
                    }
                }
            } }
            p.muted { "Each transfer's postings sum to zero: a positive amount is money into the account. 每笔转账借贷相抵。" }
        }
    }
}

/// The webhook deliveries of the events about this withdrawal or order
/// (one row per event and endpoint), oldest first, with how each went.
fn webhook_deliveries_section(deliveries: &[WebhookDeliveryRecord]) -> Markup {
    html! {
        h2 id="webhook-deliveries" { "Webhook deliveries 推送记录" }
        @if deliveries.is_empty() {
            p.muted { "No webhook delivery about it. 暂无推送。" }
        } @else {
            div.scroll { table id="deliveries" {
                thead { tr {
                    th.num { "delivery" } th { "event" } th { "webhook-id" } th { "occurred" } th { "endpoint" } th { "state" }
                    th.num { "attempts" } th { "last answer" } th { "next attempt" }
                } }
                tbody {
                    @for delivery in deliveries {
                        tr.delivery data-state=(delivery.state) {
                            td.num { (delivery.id) }
                            td { (delivery.event_type) }
                            td { code { (delivery.event_id) } }
                            td { (moment(delivery.occurred_at)) }
                            td { code { (delivery.endpoint_url) } }
                            td {
                                @match delivery.state.as_str() {
                                    "delivered" => span.ok { "delivered" },
                                    "failed" => span.error { "failed" },
                                    other => (other),
                                }
                                @if let Some(at) = delivery.delivered_at { " " (moment(at)) }
                            }
                            td.num { (delivery.attempts) }
                            td {
                                @if let Some(status) = delivery.last_status { (status) " " }
                                @if let Some(error) = &delivery.last_error { span.error { (error) } }
                            }
                            td { (delivery.next_attempt_at.map_or_else(|| "—".to_owned(), moment)) }
                        }
                    }
                }
            } }
            p.muted { "To send one again: POST /v1/ops/webhooks/deliveries/{delivery}/replay (ops). 重放推送。" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_shows_each_posting_under_one_key_cell() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let transfer = JournalTransfer {
            id: 1,
            idempotency_key: "withdrawal:w_1:paid".to_owned(),
            kind: "withdrawal_paid".to_owned(),
            created_at: at,
            postings: vec![
                crate::store::JournalPosting {
                    account: "distributor:d:withdrawing".to_owned(),
                    amount: crate::domain::money::Money::from_fen(-10_000),
                },
                crate::store::JournalPosting {
                    account: "platform:clearing_wechat".to_owned(),
                    amount: crate::domain::money::Money::from_fen(10_000),
                },
            ],
        };
        let html = transfers_section(&[transfer]).into_string();
        assert_eq!(html.matches("withdrawal:w_1:paid</code>").count(), 1);
        assert!(html.contains("rowspan=\"2\""), "{html}");
        assert!(
            html.contains("-100.00") && html.contains(">100.00<"),
            "{html}"
        );
    }

    #[test]
    fn an_empty_delivery_list_still_shows_its_section() {
        let html = webhook_deliveries_section(&[]).into_string();
        assert!(html.contains("Webhook deliveries 推送记录"));
    }
}
