//! `/tax`, the accountant's month: its totals from the certificates and from
//! the declaration, the declaration files (live and as the schedule prepared
//! them), the month's zip and its certificates page by page; and
//! `/tax/verify`, which says whether a certificate someone hands in is ours.
//! Every figure comes from the same store queries and declaration as the
//! API's, so the page and the files cannot disagree.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Shanghai;
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::certificates::read_upload;
use crate::api::error::ApiError;
use crate::certificate::MAX_NUMBER_BYTES;
use crate::domain::money::Money;
use crate::domain::tax::Month;
use crate::engine::declaration::PREPARED_MONTHS;
use crate::service::certificates::{VerifyView, verify_pair};
use crate::state::AppState;
use crate::store::{CertificateRecord, PreparedDeclaration, ReturnedPayout};
use crate::web::session::PageCaller;
use crate::web::{PageError, accountant, html_response, layout, query_escape};

/// Certificates per page of the table.
const PAGE_SIZE: i64 = 100;

#[derive(Deserialize)]
pub(crate) struct TaxQuery {
    /// `YYYY-MM`; empty or absent is the current month in Beijing time.
    month: Option<String>,
    /// Show certificates whose number sorts after this one.
    after: Option<String>,
}

/// What the page shows for one month.
struct MonthView {
    month: Month,
    certificates: CertificateTotals,
    declared: crate::engine::declaration::Totals,
    prepared: Option<PreparedDeclaration>,
    /// Payouts returned after `prepared` was made: its figures include them.
    returned: Vec<ReturnedPayout>,
    rows: Vec<CertificateRecord>,
    after: Option<String>,
    next_after: Option<String>,
}

struct CertificateTotals {
    count: i64,
    gross: Money,
    tax: Money,
    net: Money,
}

/// `GET /tax?month=YYYY-MM&after=NUMBER`.
pub(crate) async fn page(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    uri: Uri,
    query: Result<Query<TaxQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let back_to = uri.path_and_query().map_or("/tax", |path| path.as_str());
    accountant(caller, back_to)?;
    let Query(query) = query
        .map_err(|rejection| PageError::new(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    let month = match query.month.as_deref().filter(|text| !text.is_empty()) {
        Some(text) => Month::parse(text)
            .map_err(|error| PageError::new(StatusCode::BAD_REQUEST, error.to_string()))?,
        None => current_month(state.clock.now()),
    };
    let after = query.after.filter(|after| !after.is_empty());
    if let Some(after) = &after {
        let number_like = after.len() <= MAX_NUMBER_BYTES
            && after
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !number_like {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "after must be a certificate number",
            ));
        }
    }
    let month_text = month.to_string();
    let (count, gross, tax, net) = state.store.certificate_totals(month).await?;
    let declared = state.declarations.declaration(month).await?.totals();
    let prepared = state
        .store
        .prepared_declarations(PREPARED_MONTHS)
        .await?
        .into_iter()
        .find(|prepared| prepared.tax_month == month_text);
    let returned = state.store.returned_after_declaration(&month_text).await?;
    let rows = state
        .store
        .certificates(month, None, after.as_deref(), PAGE_SIZE)
        .await?;
    let next_after = (rows.len() as i64 == PAGE_SIZE)
        .then(|| rows.last().map(|row| row.number.to_string()))
        .flatten();
    let view = MonthView {
        month,
        certificates: CertificateTotals {
            count,
            gross,
            tax,
            net,
        },
        declared,
        prepared,
        returned,
        rows,
        after,
        next_after,
    };
    Ok(html_response(StatusCode::OK, month_page(&view)))
}

/// The tax month (税款所属期) a moment falls in: Beijing time's calendar month.
fn current_month(now: DateTime<Utc>) -> Month {
    Month::of(now.with_timezone(&Shanghai).date_naive())
}

fn next_month(month: Month) -> Option<Month> {
    match month.month() {
        12 => Month::new(month.year().checked_add(1)?, 1).ok(),
        number => Month::new(month.year(), number + 1).ok(),
    }
}

/// The month before, unless that leaves the four-digit years [`Month`] holds.
fn previous_month(month: Month) -> Option<Month> {
    (month.year() > 1000 || month.month() > 1).then(|| month.previous())
}

fn beijing_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn month_link(month: Month) -> String {
    format!("/tax?month={month}")
}

fn month_page(view: &MonthView) -> Markup {
    let month = view.month;
    let title = format!("{month} 扣缴 Withholding");
    layout(
        &title,
        true,
        html! {
            h1 { (title) }
            (month_picker(month))
            (totals(view))
            (files(view))
            (certificate_table(view))
            (verify_form())
        },
    )
}

fn month_picker(month: Month) -> Markup {
    html! {
        section {
            form method="get" action="/tax" {
                label for="month" { "所属期 Month " }
                input #month type="month" name="month" value=(month.to_string()) required;
                " "
                button type="submit" { "查看 Show" }
                " "
                @if let Some(previous) = previous_month(month) {
                    a href=(month_link(previous)) { "← " (previous.to_string()) }
                    " "
                }
                @if let Some(next) = next_month(month) {
                    a href=(month_link(next)) { (next.to_string()) " →" }
                }
            }
        }
    }
}

fn totals(view: &MonthView) -> Markup {
    let certificates = &view.certificates;
    let declared = &view.declared;
    html! {
        h2 { "合计 Totals" }
        section {
            table {
                thead {
                    tr {
                        th { "" }
                        th.num { "份数 Count" }
                        th.num { "收入 Gross" }
                        th.num { "税额 Tax" }
                        th.num { "实发 Net" }
                    }
                }
                tbody {
                    tr {
                        th { "扣缴凭证 Certificates in force" }
                        td.num { (certificates.count) }
                        td.num { (certificates.gross.to_string()) }
                        td.num { (certificates.tax.to_string()) }
                        td.num { (certificates.net.to_string()) }
                    }
                    tr {
                        th { "申报表 Declaration (live)" }
                        td.num {
                            (declared.payouts) " 笔 payouts / "
                            (declared.distributors) " 人 distributors"
                        }
                        td.num { (declared.income.to_string()) }
                        td.num { (declared.withheld.to_string()) }
                        td.num { (declared.net.to_string()) }
                    }
                }
            }
        }
    }
}

fn files(view: &MonthView) -> Markup {
    let month = view.month;
    html! {
        h2 { "文件 Files" }
        section {
            p {
                "申报表 Declaration: "
                a href={ "/tax/declarations/" (month.to_string()) ".csv" } { "CSV" }
                " · "
                a href={ "/tax/declarations/" (month.to_string()) ".xlsx" } { "XLSX" }
            }
            @match &view.prepared {
                Some(prepared) => {
                    p {
                        "已生成 Prepared " (beijing_time(prepared.prepared_at)) " (北京时间): "
                        a href={ "/tax/declarations/" (month.to_string()) ".csv?as_prepared=true" } { "CSV" }
                        " · "
                        a href={ "/tax/declarations/" (month.to_string()) ".xlsx?as_prepared=true" } { "XLSX" }
                    }
                    ul {
                        li {
                            (check(prepared.tax == view.declared.withheld))
                            " 税额 tax " (prepared.tax.to_string())
                            " vs. live 现值 " (view.declared.withheld.to_string())
                        }
                        li {
                            (check(prepared.tax == prepared.ledger_tax))
                            " 税额 tax " (prepared.tax.to_string())
                            " vs. ledger 账簿应交税费 " (prepared.ledger_tax.to_string())
                        }
                    }
                }
                None => {
                    p.muted { "本月尚未生成 Not prepared by the schedule yet." }
                }
            }
            @if !view.returned.is_empty() {
                h3 { "退票 Returned after the declaration was prepared" }
                p {
                    "The prepared declaration counts these payouts, but the bank sent them back: "
                    "file a correction (更正申报) for the month without them. Their certificates are voided."
                }
                table {
                    thead { tr { th { "提现 Withdrawal" } th { "分销商 Distributor" } th { "收入 Gross" } th { "税额 Tax" } th { "退回 Returned (北京时间)" } th { "原因 Reason" } } }
                    tbody {
                        @for payout in &view.returned {
                            tr {
                                td { code { (payout.withdrawal_id.as_str()) } }
                                td { (payout.distributor_id) }
                                td.num { (payout.gross.to_string()) }
                                td.num { (payout.tax.to_string()) }
                                td { (beijing_time(payout.returned_at)) }
                                td { (payout.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            p {
                "扣缴凭证 Certificates: "
                a href={ "/tax/certificates/" (month.to_string()) ".zip" } { "ZIP" }
            }
        }
    }
}

fn check(equal: bool) -> Markup {
    html! {
        @if equal {
            span.ok { "✓ 一致 matches" }
        } @else {
            span.error { "✗ 不一致 differs: reconcile before filing 申报前请核对" }
        }
    }
}

fn certificate_table(view: &MonthView) -> Markup {
    let month = view.month;
    html! {
        h2 { "扣缴凭证 Certificates" }
        section {
            @if view.rows.is_empty() {
                p.muted { "没有凭证 No certificates." }
            } @else {
                table {
                    thead {
                        tr {
                            th { "编号 Number" }
                            th { "分销商 Distributor" }
                            th.num { "收入 Gross" }
                            th.num { "税额 Tax" }
                            th.num { "实发 Net" }
                            th { "签发 Issued (北京时间)" }
                            th { "更正自 Replaces" }
                            th { "文件 Files" }
                        }
                    }
                    tbody {
                        @for row in &view.rows {
                            tr {
                                td { (row.number) }
                                td { (row.distributor_id.to_string()) }
                                td.num { (row.gross.to_string()) }
                                td.num { (row.tax.to_string()) }
                                td.num { (row.net.to_string()) }
                                td { (beijing_time(row.issued_at)) }
                                td { (row.replaces.as_ref().map_or("", |number| number.as_str())) }
                                td {
                                    a href={ "/tax/certificates/" (row.number) ".pdf" } { "PDF" }
                                    " · "
                                    a href={ "/tax/certificates/" (row.number) ".json" } { "JSON" }
                                }
                            }
                        }
                    }
                }
            }
            p {
                @if view.after.is_some() {
                    a href=(month_link(month)) { "第一页 First page" }
                    " "
                }
                @if let Some(next_after) = &view.next_after {
                    a href={ (month_link(month)) "&after=" (query_escape(next_after)) } {
                        "下一页 Next page →"
                    }
                }
            }
        }
    }
}

fn verify_form() -> Markup {
    html! {
        h2 { "核验凭证 Verify a certificate" }
        section {
            form method="post" action="/tax/verify" enctype="multipart/form-data" {
                p {
                    label for="pdf" { "凭证 PDF " }
                    input #pdf type="file" name="pdf" accept="application/pdf,.pdf" required;
                }
                p {
                    label for="manifest" { "清单 Manifest (.json, optional 可选) " }
                    input #manifest type="file" name="manifest" accept="application/json,.json";
                }
                button type="submit" { "核验 Verify" }
            }
        }
    }
}

/// `POST /tax/verify`: the verdict on an uploaded certificate, as a page.
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Result<PageCaller, ApiError>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    accountant(caller, "/tax")?;
    let form = form.map_err(|rejection| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "send the form as multipart/form-data: {}",
                rejection.body_text()
            ),
        )
    })?;
    let upload = read_upload(form).await?;
    let verdict = verify_pair(&state, &upload.pdf, upload.manifest.as_deref()).await?;
    Ok(html_response(StatusCode::OK, verdict_page(&verdict)))
}

fn verdict_page(verdict: &VerifyView) -> Markup {
    let amount = |money: Option<Money>| money.map(|money| money.to_string()).unwrap_or_default();
    layout(
        "核验 Verification",
        true,
        html! {
            h1 { "核验结果 Verification" }
            section {
                @if verdict.genuine {
                    p.verdict.ok { "真实 Genuine" }
                    table.facts {
                        tbody {
                            tr { th { "编号 Number" } td { (verdict.number.as_deref().unwrap_or("")) } }
                            tr { th { "收入 Gross" } td.num { (amount(verdict.gross)) } }
                            tr { th { "税额 Tax" } td.num { (amount(verdict.tax)) } }
                            tr { th { "实发 Net" } td.num { (amount(verdict.net)) } }
                            tr { th { "签名密钥 Key id" } td { (verdict.key_id.as_deref().unwrap_or("")) } }
                        }
                    }
                    @if let Some(corrected_by) = &verdict.corrected_by {
                        p.error {
                            "已被更正 Superseded by " (corrected_by)
                            ": 请以更正后的凭证为准 the correction is the one in force."
                        }
                    }
                } @else {
                    p.verdict.error { "非真实 NOT genuine" }
                    p {
                        (verdict.reason.as_deref().unwrap_or("the certificate could not be verified"))
                        @if let Some(code) = &verdict.reason_code {
                            " " span.muted { "(" (code) ")" }
                        }
                    }
                }
            }
            p { a href="/tax" { "← 返回 Back to the tax page" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_across_years_and_stop_at_the_edges() {
        let month = |text: &str| Month::parse(text).unwrap();
        assert_eq!(next_month(month("2026-12")), Some(month("2027-01")));
        assert_eq!(previous_month(month("2027-01")), Some(month("2026-12")));
        assert_eq!(next_month(month("9999-12")), None);
        assert_eq!(previous_month(month("1000-01")), None);
    }

    #[test]
    fn the_current_month_is_beijings() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(current_month(at), Month::parse("2026-12").unwrap());
    }
}
