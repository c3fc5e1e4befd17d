//! The console's reconciliation section (对账): one China day's statement
//! runs per source, the totals of both sides per channel, and the day's
//! mismatches, each with what to look at first and either its resolution
//! or a form that resolves it; and a button that runs the day again.
//!
//! The day and channel are the page's query (`/ops?date=&channel=`), by
//! default yesterday and every channel; the forms carry them back, so each
//! POST lands (303) on the day it was sent from. A run that fails comes
//! back as a short code in the query (`run=`), shown as a sentence: never
//! text from the URL. The use cases are `service::reconciliation`, as for
//! `/v1/ops/reconciliation`.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Datelike, NaiveDate};
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::domain::identity::PayoutChannel;
use crate::engine::reconciliation::ReconcileError;
use crate::service::audit::Actor;
use crate::service::reconciliation::{
    CountSumView, DaySelection, MAX_RESOLUTION_REASON_CHARS, MismatchView, ReconciliationView,
    ResolutionSide, SourceDayView, day_view, default_date, resolve, run_day,
};
use crate::state::AppState;
use crate::store::StoreError;
use crate::web::PageError;
use crate::web::session::PageCaller;

use super::{ops_caller, timestamp};

/// No gateway keeps statements from before this year: an earlier date is a
/// typo (the API refuses it alike).
const FIRST_YEAR: i32 = 2000;

/// The day and channel as the page's query gives them, and how the last
/// run the page sent went.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DayQuery {
    date: Option<String>,
    channel: Option<String>,
    run: Option<String>,
}

/// The day and channel a form was sent from.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunForm {
    date: Option<String>,
    channel: Option<String>,
}

/// A resolution, and the day and channel to come back to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResolveForm {
    date: Option<String>,
    channel: Option<String>,
    side: Option<String>,
    reason: Option<String>,
}

/// What the section shows: the selection, what was wrong with the query
/// (shown, and the default used instead), and the last run's outcome.
pub(crate) struct Shown {
    selection: DaySelection,
    problems: Vec<&'static str>,
    outcome: Option<RunOutcome>,
}

/// How a "run again" went, carried to the page by its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunOutcome {
    Done,
    DateInFuture,
    ChannelNotConfigured,
    NoGateway,
    StatementUnavailable,
    Failed,
}

impl RunOutcome {
    const ALL: [RunOutcome; 6] = [
        RunOutcome::Done,
        RunOutcome::DateInFuture,
        RunOutcome::ChannelNotConfigured,
        RunOutcome::NoGateway,
        RunOutcome::StatementUnavailable,
        RunOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Done => "done",
            RunOutcome::DateInFuture => "date_in_future",
            RunOutcome::ChannelNotConfigured => "channel_not_configured",
            RunOutcome::NoGateway => "no_gateway",
            RunOutcome::StatementUnavailable => "statement_unavailable",
            RunOutcome::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<RunOutcome> {
        RunOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }

    fn of(error: &ReconcileError) -> RunOutcome {
        match error {
            ReconcileError::FutureDate { .. } => RunOutcome::DateInFuture,
            ReconcileError::SourceNotConfigured { .. } => RunOutcome::ChannelNotConfigured,
            ReconcileError::NoGateway => RunOutcome::NoGateway,
            ReconcileError::Statement { .. } => RunOutcome::StatementUnavailable,
            ReconcileError::Store(_) => RunOutcome::Failed,
        }
    }

    /// The sentence the page shows for it.
    fn message(self, date: NaiveDate, today: NaiveDate) -> String {
        match self {
            RunOutcome::Done => format!(
                "{date} was reconciled again; resolutions given before are kept. 已重新对账。"
            ),
            RunOutcome::DateInFuture => format!(
                "{date} has not begun yet (today is {today}, China time): reconcile a past day or today. 该日尚未开始。"
            ),
            RunOutcome::ChannelNotConfigured => "No merchant is configured for this channel's statement: configure it, or choose another channel. 该渠道未配置商户。".to_owned(),
            RunOutcome::NoGateway => "The payout gateway is not connected yet; try again in a moment. 支付网关尚未连接。".to_owned(),
            RunOutcome::StatementUnavailable => "A statement could not be downloaded or failed its check: nothing of it was reconciled. A day not reconciled before is tried again at the time shown below; one reconciled before keeps its result. 账单下载失败或校验不符，未对账。".to_owned(),
            RunOutcome::Failed => "The run failed (see the server log); try again. 对账失败，请重试。".to_owned(),
        }
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|date| text.len() == 10 && date.year() >= FIRST_YEAR)
}

/// Every channel for an empty value or `all`; `None` for one we do not know.
fn parse_channel(text: &str) -> Option<Option<PayoutChannel>> {
    match text {
        "" | "all" => Some(None),
        other => PayoutChannel::parse(other).ok().map(Some),
    }
}

impl Shown {
    /// The page's query, read leniently: a value it cannot read is named on
    /// the page and its default used, so the rest of the console still shows.
    pub(crate) fn of(state: &AppState, query: DayQuery) -> Shown {
        let mut problems = Vec::new();
        let date = match query.date.as_deref().map(str::trim) {
            None | Some("") => default_date(state),
            Some(text) => parse_date(text).unwrap_or_else(|| {
                problems.push("The date must be a day as YYYY-MM-DD, in 2000 or later; showing yesterday. 日期无效。");
                default_date(state)
            }),
        };
        let channel = parse_channel(query.channel.as_deref().unwrap_or("")).unwrap_or_else(|| {
            problems.push(
                "The channel must be wechat, alipay or bank; showing every channel. 渠道无效。",
            );
            None
        });
        Shown {
            selection: DaySelection { date, channel },
            problems,
            outcome: query.run.as_deref().and_then(RunOutcome::parse),
        }
    }
}

/// A form's day and channel, strictly: a form the page made always has
/// readable ones.
fn form_selection(date: Option<&str>, channel: Option<&str>) -> Result<DaySelection, PageError> {
    let date = date.and_then(parse_date).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "The form's date must be a day as YYYY-MM-DD. 日期无效。",
        )
    })?;
    let channel = parse_channel(channel.unwrap_or("")).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "The form's channel must be wechat, alipay or bank. 渠道无效。",
        )
    })?;
    Ok(DaySelection { date, channel })
}

/// The console showing `selection`'s day, at this section.
fn day_path(selection: DaySelection, outcome: Option<RunOutcome>) -> String {
    let mut path = format!("/ops?date={}", selection.date);
    if let Some(channel) = selection.channel {
        path.push_str("&channel=");
        path.push_str(channel.as_str());
    }
    if let Some(outcome) = outcome {
        path.push_str("&run=");
        path.push_str(outcome.as_str());
    }
    path.push_str("#reconciliation");
    path
}

/// The section for the page.
pub(crate) async fn section(state: &AppState, shown: &Shown) -> Result<Markup, PageError> {
    let view = day_view(state, shown.selection).await?;
    let today = state.reconciliation.today();
    let selection = shown.selection;
    Ok(html! {
        h2 id="reconciliation" { "对账 Reconciliation" }
        (day_form(selection, today))
        @for problem in &shown.problems {
            p.error { (problem) }
        }
        @if let Some(outcome) = shown.outcome {
            p id="reconciliation-run" class=(if outcome == RunOutcome::Done { "ok" } else { "error" }) {
                (outcome.message(selection.date, today))
            }
        }
        (sources_table(&view.sources))
        (totals_table(&view, selection.channel))
        h3 { "差异 Mismatches: " (view.unresolved) " unresolved of " (view.mismatches.len()) }
        @if view.mismatches.is_empty() {
            p.muted { "No mismatch on this day." }
        }
        @for mismatch in &view.mismatches {
            (mismatch_card(mismatch, selection))
        }
    })
}

fn hidden_selection(selection: DaySelection) -> Markup {
    html! {
        input type="hidden" name="date" value=(selection.date);
        input type="hidden" name="channel" value=(selection.channel.map_or("", PayoutChannel::as_str));
    }
}

/// Which day and channel (a GET form: the address can be bookmarked), and
/// the button that runs the shown day again.
fn day_form(selection: DaySelection, today: NaiveDate) -> Markup {
    html! {
        form.inline id="reconciliation-day" method="get" action="/ops#reconciliation" {
            label { "日期 Day " input type="date" name="date" value=(selection.date) max=(today) required; }
            " "
            label {
                "渠道 Channel "
                select name="channel" {
                    option value="" selected[selection.channel.is_none()] { "all 全部" }
                    @for channel in PayoutChannel::ALL {
                        option value=(channel.as_str()) selected[selection.channel == Some(channel)] { (channel.as_str()) }
                    }
                }
            }
            " "
            button type="submit" { "查看 Show" }
        }
        " "
        form.inline id="reconciliation-run-form" method="post" action="/ops/reconciliation/run" {
            (hidden_selection(selection))
            button type="submit" { "重新对账 Run again" }
        }
    }
}

fn sources_table(sources: &[SourceDayView]) -> Markup {
    html! {
        div.scroll { table id="reconciliation-sources" {
            thead { tr {
                th { "statement" } th { "state" } th.num { "lines" } th.num { "matched" } th.num { "held" }
                th.num { "attempts" } th { "finished" } th { "error" }
            } }
            tbody {
                @for source in sources {
                    tr id={ "reconciliation-source-" (source.source) } {
                        td { (source.source) }
                        td {
                            @match source.state.as_str() {
                                "finished" => span.ok { "finished" },
                                "failed" => span.error { "failed" },
                                "not_run" => span.muted { "not run" },
                                other => (other),
                            }
                        }
                        td.num { (source.lines) }
                        td.num { (source.matched) }
                        td.num { (source.held) }
                        td.num { (source.attempts) }
                        td { (source.finished_at.map_or_else(|| "—".to_owned(), timestamp)) }
                        td {
                            @if let Some(error) = &source.last_error {
                                @if source.state == "finished" { "a later run failed (this result stands): " }
                                span.error { (error) }
                            }
                            @if let Some(next) = source.next_attempt_at {
                                " — next attempt " (timestamp(next))
                            }
                        }
                    }
                }
            }
        } }
        p.muted { "Held: our payouts of the day not on its statement, given until the next day's before they are called missing." }
    }
}

fn count_sum(figure: &CountSumView) -> Markup {
    html! { (figure.count) " / " (figure.sum) }
}

fn differ(a: &CountSumView, b: &CountSumView) -> bool {
    a.count != b.count || a.sum != b.sum
}

/// Both sides per channel: payouts and returns on the statement and in
/// fenrun, and the statement's fees.
fn totals_table(view: &ReconciliationView, channel: Option<PayoutChannel>) -> Markup {
    let rows: Vec<_> = view
        .sources
        .iter()
        .flat_map(|source| source.totals.iter())
        .filter(|totals| channel.is_none_or(|wanted| totals.channel == wanted.as_str()))
        .collect();
    html! {
        @if rows.is_empty() {
            p.muted { "No totals: no statement of this day was reconciled." }
        } @else {
            div.scroll { table id="reconciliation-totals" {
                thead { tr {
                    th { "channel" }
                    th.num { "payouts at channel" } th.num { "payouts at fenrun" }
                    th.num { "returns at channel" } th.num { "returns at fenrun" }
                    th.num { "fees at channel" }
                } }
                tbody {
                    @for totals in rows {
                        tr id={ "totals-" (totals.channel) } {
                            td { (totals.channel) }
                            @let payouts_differ = differ(&totals.channel_payouts, &totals.fenrun_payouts);
                            @let returns_differ = differ(&totals.channel_returns, &totals.fenrun_returns);
                            td.num.error[payouts_differ] { (count_sum(&totals.channel_payouts)) }
                            td.num.error[payouts_differ] { (count_sum(&totals.fenrun_payouts)) }
                            td.num.error[returns_differ] { (count_sum(&totals.channel_returns)) }
                            td.num.error[returns_differ] { (count_sum(&totals.fenrun_returns)) }
                            td.num { (count_sum(&totals.channel_fees)) }
                        }
                    }
                }
            } }
            p.muted { "count / sum in yuan" }
        }
    }
}

fn money(amount: Option<crate::domain::money::Money>) -> String {
    amount.map_or_else(|| "—".to_owned(), |amount| amount.to_string())
}

/// One mismatch: what it is, what to look at first, and its resolution or
/// the form to give one.
fn mismatch_card(mismatch: &MismatchView, selection: DaySelection) -> Markup {
    html! {
        section.mismatch id={ "mismatch-" (mismatch.id) } {
            p {
                strong.error[mismatch.resolution.is_none()] { (mismatch.class) }
                " — " (mismatch.advice)
            }
            table.facts {
                tr { th { "bill" } td { code { (mismatch.bill_no) } } }
                tr { th { "withdrawal" } td {
                    @match &mismatch.withdrawal_id {
                        Some(id) => a href=(super::timeline::withdrawal_path(id)) { code { (id) } },
                        None => "— (none of ours)",
                    }
                } }
                tr { th { "channel" } td {
                    @match &mismatch.channel {
                        Some(channel) => (channel),
                        None => { "— (" (mismatch.source) " statement)" },
                    }
                } }
                tr { th { "at channel" } td.num { (money(mismatch.at_channel)) } }
                tr { th { "at fenrun" } td.num { (money(mismatch.at_fenrun)) } }
                tr { th { "found" } td { (timestamp(mismatch.found_at)) } }
            }
            @match &mismatch.resolution {
                Some(resolution) => {
                    p.resolution {
                        span.ok { "已解决 Resolved: " (resolution.side) " is right" }
                        " — " (resolution.reason)
                        " — by " code { (resolution.by.as_deref().unwrap_or("?")) }
                        @if let Some(at) = resolution.at { " at " (timestamp(at)) }
                    }
                }
                None => {
                    form method="post" action={ "/ops/reconciliation/mismatches/" (mismatch.id) "/resolve" } {
                        (hidden_selection(selection))
                        label { input type="radio" name="side" value="ledger" required; " 账本对 ledger (fenrun is right)" }
                        " "
                        label { input type="radio" name="side" value="channel" required; " 渠道对 channel (the gateway is right)" }
                        " "
                        input type="text" name="reason" required placeholder="reason 原因"
                            maxlength=(MAX_RESOLUTION_REASON_CHARS) size="40";
                        " "
                        button type="submit" { "解决 Resolve" }
                    }
                }
            }
        }
    }
}

/// `POST /ops/reconciliation/run`: runs the form's day again, as
/// `POST /v1/ops/reconciliation/run` does (audited alike), then back to that
/// day on the console, saying how it went.
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Form(form): Form<RunForm>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops")?;
    let selection = form_selection(form.date.as_deref(), form.channel.as_deref())?;
    let outcome = match run_day(&state, selection).await {
        Ok(view) => {
            crate::service::audit::record(
                &state.store,
                &Actor::of(&principal),
                "reconciliation.run",
                &format!("reconciliation:{}", view.date),
                None,
                Some(serde_json::json!({
                    "channel": view.channel,
                    "mismatches": view.mismatches.len(),
                    "unresolved": view.unresolved,
                })),
                state.clock.now(),
            )
            .await;
            RunOutcome::Done
        }
        Err(error) => {
            tracing::warn!(error = %error, date = %selection.date, "ops: reconciliation run failed");
            RunOutcome::of(&error)
        }
    };
    Ok(Redirect::to(&day_path(selection, Some(outcome))).into_response())
}

/// `POST /ops/reconciliation/mismatches/{id}/resolve`: takes a side with a
/// reason (audited as `reconciliation.resolve_mismatch`), then back to the
/// form's day. The same resolution again changes nothing.
pub(crate) async fn resolve_mismatch(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, PageError> {
    let principal = ops_caller(caller, "/ops")?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("mismatch"))?;
    let selection = form_selection(form.date.as_deref(), form.channel.as_deref())?;
    let side = form
        .side
        .as_deref()
        .and_then(ResolutionSide::parse)
        .ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Choose a side: ledger (fenrun is right) or channel (the gateway is right). 请选择以哪一方为准。",
            )
        })?;
    let reason = form.reason.as_deref().unwrap_or_default().trim();
    if reason.is_empty() || reason.chars().count() > MAX_RESOLUTION_REASON_CHARS {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "A resolution needs a reason of 1–{MAX_RESOLUTION_REASON_CHARS} characters. 请填写原因。"
            ),
        ));
    }
    match resolve(&state, id, side, reason, &Actor::of(&principal)).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                format!(
                    "Mismatch {id} was resolved before with another side or reason; its resolution stands (see the audit log). 该差异已被处理。"
                ),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(Redirect::to(&day_path(selection, None)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_comes_back_to_the_day_and_channel_a_form_was_sent_from() {
        let date = NaiveDate::from_ymd_opt(2027, 3, 10).unwrap();
        let all = DaySelection {
            date,
            channel: None,
        };
        assert_eq!(day_path(all, None), "/ops?date=2027-03-10#reconciliation");
        let bank = DaySelection {
            date,
            channel: Some(PayoutChannel::Bank),
        };
        assert_eq!(
            day_path(bank, Some(RunOutcome::StatementUnavailable)),
            "/ops?date=2027-03-10&channel=bank&run=statement_unavailable#reconciliation"
        );
    }

    #[test]
    fn every_run_outcome_reads_back_from_its_code_and_nothing_else_does() {
        for outcome in RunOutcome::ALL {
            assert_eq!(RunOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(RunOutcome::parse("<script>"), None);
    }

    #[test]
    fn a_form_day_is_a_date_since_2000_and_its_channel_one_we_pay_or_all() {
        assert_eq!(
            parse_date("2027-03-10"),
            NaiveDate::from_ymd_opt(2027, 3, 10)
        );
        for bad in ["2027-3-10", "1999-12-31", "10/03/2027", "", "+2027-03-10"] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        assert_eq!(parse_channel(""), Some(None));
        assert_eq!(parse_channel("all"), Some(None));
        assert_eq!(parse_channel("bank"), Some(Some(PayoutChannel::Bank)));
        assert_eq!(parse_channel("paypal"), None);
    }
}
