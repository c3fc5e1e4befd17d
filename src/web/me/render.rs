//! The distributor page's markup: mobile first (one column at 375 px, the
//! tables scroll sideways inside their section), Chinese and English side
//! by side, every form a plain HTML form.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::chart::{Bar, bar_chart};
use super::{Dashboard, Problem, Shown};
use crate::api::statements::PeriodView;
use crate::api::withdrawals::WithdrawalView;
use crate::domain::money::Money;
use crate::domain::withdrawal::WithdrawalState;
use crate::web::{frame as page_frame, logout_button};

/// The page's own style on top of the shared one: narrow margins, large
/// touch targets, cards two to a row, full-width fields and charts.
const ME_CSS: &str = "\
main{padding:.5rem .75rem 2rem;max-width:720px}header{padding:.5rem .75rem;gap:.75rem}\
section{padding:.7rem .8rem}section>h2:first-child{margin-top:.2rem}h1{font-size:1.25rem}\
.cards{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.5rem}\
.card{border:1px solid #e4e7ec;border-radius:6px;padding:.5rem .6rem}\
.card .figure{display:block;font-size:1.3rem;font-variant-numeric:tabular-nums}\
label{display:block;margin:.6rem 0 .2rem}input,select{width:100%;box-sizing:border-box;min-height:2.6rem;font-size:16px}\
input[type=radio]{width:auto;min-height:0}.choices label{display:inline;margin-right:1rem}\
button{min-height:2.75rem;margin:.6rem .4rem 0 0;padding:.4rem 1rem}\
svg.chart{width:100%;height:auto;display:block;margin:.4rem 0}\
.withdrawal{border-top:1px solid #e4e7ec;padding:.6rem 0}.withdrawal:first-of-type{border-top:0}\
ol.timeline{margin:.3rem 0;padding-left:1.2rem;font-size:.9rem}\
.package{word-break:break-all;background:#fff8e6;border:1px solid #f2c94c;padding:.5rem;border-radius:6px}\
.advice{color:#1d2330;font-weight:400}table{font-size:.9rem}";

/// The frame of every distributor page; `signed_in` adds the log-out button.
pub(super) fn frame(title: &str, signed_in: bool, content: Markup) -> Markup {
    let navigation = html! {
        span { "我的分润 My earnings" }
        @if signed_in { (logout_button()) }
    };
    page_frame(title, ME_CSS, navigation, content)
}

/// A money figure as the page shows it: two decimals, yuan.
fn yuan(money: Money) -> String {
    money.to_string()
}

pub(super) fn page(
    dashboard: &Dashboard,
    shown: &Shown,
    nonce: &str,
    now: DateTime<Utc>,
) -> Markup {
    let local = |at: DateTime<Utc>| {
        at.with_timezone(&dashboard.time_zone)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    frame(
        "我的分润 My earnings",
        true,
        html! {
            h1 { (dashboard.name) " " span.muted { "(" (dashboard.distributor.as_str()) ")" } }
            @if let Some(done) = &shown.done {
                p.ok id="done" { (done) }
            }
            (balances(dashboard, &local))
            (withdraw_form(dashboard, shown, nonce, &local))
            (earnings(dashboard))
            (withdrawals(dashboard, &local))
            (commissions(dashboard, &local))
            (accounts(dashboard, shown))
            p.muted { "更新于 As of " (local(now)) " (" (dashboard.time_zone.name()) ")" }
        },
    )
}

fn balances(dashboard: &Dashboard, local: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    let balance = &dashboard.balance;
    html! {
        section id="balances" {
            h2 { "余额 Balances" }
            div.cards {
                div.card id="balance-available" {
                    "可提现 Available" span.figure { (yuan(balance.available)) }
                }
                div.card id="balance-pending" {
                    "待结算 Pending" span.figure { (yuan(balance.pending)) }
                    span.muted {
                        @match dashboard.next_release {
                            Some(at) => { "下次结算 Next release " (local(at)) }
                            None => { "暂无待结算 Nothing pending" }
                        }
                    }
                }
                div.card id="balance-withdrawing" {
                    "提现中 Withdrawing" span.figure { (yuan(balance.withdrawing)) }
                }
                div.card id="balance-debt" {
                    "欠款 Debt" span.figure { (yuan(balance.debt)) }
                    @if !balance.debt.is_zero() {
                        span.muted { "从后续佣金中扣回 Repaid from new commissions; withdrawals wait until it is." }
                    }
                }
            }
            p.muted { "累计已提现 Withdrawn in total: " (yuan(balance.withdrawn_total)) }
        }
    }
}

fn problem(problem: &Problem) -> Markup {
    html! {
        div.error role="alert" {
            p { (problem.message) }
            p.advice { "下一步 What to do: " (problem.advice) }
        }
    }
}

fn withdraw_form(
    dashboard: &Dashboard,
    shown: &Shown,
    nonce: &str,
    local: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let form = &shown.form;
    let express = form.speed == "express";
    html! {
        section id="withdraw" {
            h2 { "提现 Withdraw" }
            @if let Some(found) = &shown.withdraw_problem { (problem(found)) }
            @if dashboard.accounts.is_empty() {
                p { "先添加收款账户 Add a payout account below first." }
            } @else {
                form method="post" action="/me/withdrawals" {
                    label for="amount" { "金额 Amount (元 CNY)" }
                    input #amount type="text" name="amount" inputmode="decimal" autocomplete="off"
                        placeholder="100.00" value=(form.amount) required;
                    label for="payout_account_id" { "收款账户 Payout account" }
                    select #payout_account_id name="payout_account_id" required {
                        @for account in &dashboard.accounts {
                            option value=(account.id) selected[account.id == form.payout_account_id] {
                                (channel_name(account.channel.as_str())) " " (account.account)
                                @if let Some(bank) = &account.bank_name { " " (bank) }
                            }
                        }
                    }
                    div.choices {
                        span { "到账速度 Speed: " }
                        label { input type="radio" name="speed" value="standard" checked[!express]; " 标准 Standard" }
                        label { input type="radio" name="speed" value="express" checked[express]; " 加急 Express" }
                    }
                    input type="hidden" name="nonce" value=(nonce);
                    button type="submit" name="action" value="quote" { "试算 Quote" }
                    button type="submit" name="action" value="withdraw" { "提现 Withdraw" }
                }
            }
            @if let Some(quote) = &shown.quote {
                div id="quote" {
                    h3 { "试算结果 Quote" }
                    table.facts {
                        tbody {
                            tr { th { "提现金额 Gross" } td.num id="quote-gross" { (yuan(quote.gross)) } }
                            tr { th { "代扣个税 Tax withheld" } td.num id="quote-tax" { (yuan(quote.tax)) } }
                            tr { th { "手续费 Fee" } td.num id="quote-fee" { (yuan(quote.fee)) } }
                            tr { th { "实际到账 Net" } td.num id="quote-net" { strong { (yuan(quote.net)) } } }
                            tr { th { "预计发出 Sent after" } td { (local(quote.send_after)) " · " (quote.cycle) } }
                        }
                    }
                    @if quote.review_required {
                        p.muted { "需人工审核 This withdrawal will wait for a review by the shop's payment team." }
                    }
                    p.muted { "确认无误后点「提现 Withdraw」。Press Withdraw to request it." }
                }
            }
        }
    }
}

fn channel_name(channel: &str) -> &'static str {
    match channel {
        "wechat" => "微信 WeChat",
        "alipay" => "支付宝 Alipay",
        "bank" => "银行卡 Bank card",
        _ => "",
    }
}

/// Bars of each period's earned commission.
fn bars(periods: &[PeriodView], label: impl Fn(&str) -> String) -> Vec<Bar> {
    periods
        .iter()
        .map(|period| Bar {
            period: period.period.clone(),
            label: label(&period.period),
            amount: period.figures.earned,
        })
        .collect()
}

fn total_earned(periods: &[PeriodView]) -> Money {
    Money::checked_sum(periods.iter().map(|period| period.figures.earned)).unwrap_or(Money::ZERO)
}

fn earnings(dashboard: &Dashboard) -> Markup {
    html! {
        section id="earnings" {
            h2 { "收益 Earnings" }
            (period_chart(&Chart {
                id: "days",
                heading: "近 30 天 Last 30 days",
                title: "近 30 天每日佣金 Commission earned per day, last 30 days",
                unit: "days",
                caption: "每日明细 Figures by day",
                label_every: 7,
            }, &dashboard.days))
            (period_chart(&Chart {
                id: "months",
                heading: "近 12 个月 Last 12 months",
                title: "近 12 个月每月佣金 Commission earned per month, last 12 months",
                unit: "months",
                caption: "每月明细 Figures by month",
                label_every: 1,
            }, &dashboard.months))
        }
    }
}

/// What tells one earnings chart from the other.
struct Chart {
    /// `chart-{id}` and `table-{id}` are the elements' ids.
    id: &'static str,
    heading: &'static str,
    title: &'static str,
    /// What a period is, in the chart's description: `days`, `months`.
    unit: &'static str,
    caption: &'static str,
    label_every: usize,
}

/// A heading with the total, the bars of each period's earned commission
/// (labelled by its day or month, without the year), and the figures table.
fn period_chart(chart: &Chart, periods: &[PeriodView]) -> Markup {
    let bars = bars(periods, |period| {
        period.get(5..).unwrap_or(period).to_owned()
    });
    let total = total_earned(periods);
    let summary = format!(
        "{} {} from {} to {}; {} earned in total. The figures are in the table below.",
        periods.len(),
        chart.unit,
        periods.first().map_or("", |p| p.period.as_str()),
        periods.last().map_or("", |p| p.period.as_str()),
        yuan(total)
    );
    html! {
        h3 { (chart.heading) ": " (yuan(total)) }
        (bar_chart(&format!("chart-{}", chart.id), chart.title, &summary, &bars, chart.label_every))
        (figures_table(&format!("table-{}", chart.id), chart.caption, periods))
    }
}

fn figures_table(id: &str, caption: &str, periods: &[PeriodView]) -> Markup {
    html! {
        details {
            summary { (caption) }
            div.scroll {
                table id=(id) {
                    thead { tr {
                        th { "期间 Period" } th.num { "佣金 Earned" } th.num { "结算 Released" }
                        th.num { "扣回 Clawed back" } th.num { "提现 Withdrawn" }
                    } }
                    tbody {
                        @for period in periods {
                            tr {
                                td { (period.period) }
                                td.num { (yuan(period.figures.earned)) }
                                td.num { (yuan(period.figures.released)) }
                                td.num { (yuan(period.figures.clawed_back)) }
                                td.num { (yuan(period.figures.withdrawn)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_name(state: WithdrawalState) -> &'static str {
    match state {
        WithdrawalState::Reviewing => "审核中 In review",
        WithdrawalState::Approved => "已批准 Approved",
        WithdrawalState::Transferring => "转账中 Transferring",
        WithdrawalState::AwaitingPayeeConfirmation => "待确认收款 Confirm receipt",
        WithdrawalState::Paid => "已到账 Paid",
        WithdrawalState::Rejected => "已拒绝 Rejected",
        WithdrawalState::Cancelled => "已取消 Cancelled",
        WithdrawalState::Failed => "失败 Failed",
        WithdrawalState::Returned => "已退回 Returned",
    }
}

fn withdrawals(dashboard: &Dashboard, local: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    html! {
        section id="withdrawals" {
            h2 { "提现记录 Withdrawals" }
            @if dashboard.withdrawals.is_empty() {
                p.muted { "暂无提现 No withdrawals yet." }
            }
            @for withdrawal in &dashboard.withdrawals {
                (withdrawal_entry(withdrawal, local))
            }
        }
    }
}

fn withdrawal_entry(
    withdrawal: &WithdrawalView,
    local: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    html! {
        div.withdrawal id={ "withdrawal-" (withdrawal.id) } data-state=(withdrawal.state.as_str()) {
            p {
                strong.state { (state_name(withdrawal.state)) } " · "
                (yuan(withdrawal.gross)) " → " strong { (yuan(withdrawal.net)) }
                br;
                span.muted {
                    code { (withdrawal.id) } " · " (local(withdrawal.requested_at)) " · "
                    "税 tax " (yuan(withdrawal.tax)) " · 费 fee " (yuan(withdrawal.fee))
                }
            }
            @if let Some(reason) = &withdrawal.failure_reason {
                p.error { "原因 Reason: " (reason) }
            }
            @if withdrawal.state == WithdrawalState::AwaitingPayeeConfirmation {
                @if let Some(package) = &withdrawal.package_info {
                    div.package id={ "package-" (withdrawal.id) } data-package-info=(package) {
                        p { strong { "请在微信中确认收款 Confirm receipt in WeChat" } }
                        p { "商城 App 会用以下信息打开微信的确认页。The shop's app opens WeChat's confirmation with this package:" }
                        code { (package) }
                    }
                }
            }
            @if let Some(number) = &withdrawal.certificate_number {
                p {
                    "完税凭证 Withholding certificate " (number) ": "
                    a href={ "/me/certificates/" (number) ".pdf" } download { "下载 PDF Download" }
                }
            }
            @if let Some(timeline) = &withdrawal.timeline {
                details {
                    summary { "进度 Timeline" }
                    ol.timeline {
                        @for entry in timeline {
                            li {
                                (local(entry.at)) " " (entry.step) ": " (entry.outcome)
                                @if let Some(detail) = &entry.detail { " — " (detail) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn commissions(dashboard: &Dashboard, local: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    html! {
        section id="commissions" {
            h2 { "佣金明细 Commission lines" }
            @if dashboard.commissions.is_empty() {
                p.muted { "暂无佣金 No commission yet." }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th { "订单 Order" } th.num { "佣金 Amount" } th { "计算 How" } th { "状态 State" }
                        } }
                        tbody {
                            @for line in &dashboard.commissions {
                                tr id={ "line-" (line.id) } {
                                    td { code { (line.order_id) } br; span.muted { (local(line.created_at)) } }
                                    td.num { (yuan(line.amount)) }
                                    td {
                                        (yuan(line.base)) " × " (line.rate.to_string())
                                        " · " (line.level) " 级 level " (line.level)
                                        " · 方案 plan v" (line.plan_version)
                                        @if let Some(campaign) = &line.campaign { " · 活动 campaign " (campaign) }
                                        @if let Some(explanation) = &line.explanation {
                                            br; span.muted { (explanation) }
                                        }
                                    }
                                    td { (line_state(line.state.as_str())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn line_state(state: &str) -> &'static str {
    match state {
        "pending" => "待结算 Pending",
        "released" => "已结算 Released",
        "cancelled" => "已取消 Cancelled",
        _ => "",
    }
}

fn accounts(dashboard: &Dashboard, shown: &Shown) -> Markup {
    let channel = shown.account_channel.as_str();
    html! {
        section id="accounts" {
            h2 { "收款账户 Payout accounts" }
            @if dashboard.accounts.is_empty() {
                p.muted { "暂无账户 No payout account yet." }
            } @else {
                ul {
                    @for account in &dashboard.accounts {
                        li id={ "account-" (account.id) } {
                            (channel_name(account.channel.as_str())) " " code { (account.account) }
                            @if let Some(bank) = &account.bank_name { " " (bank) }
                            @if let Some(holder) = &account.holder_name { " · " (holder) }
                        }
                    }
                }
            }
            h3 { "添加账户 Add an account" }
            @if let Some(found) = &shown.account_problem { (problem(found)) }
            form method="post" action="/me/payout-accounts" {
                label for="channel" { "渠道 Channel" }
                select #channel name="channel" required {
                    option value="wechat" selected[channel == "wechat"] { "微信 WeChat" }
                    option value="alipay" selected[channel == "alipay"] { "支付宝 Alipay" }
                    option value="bank" selected[channel == "bank"] { "银行卡 Bank card" }
                }
                p.muted { "只填所选渠道的字段 Fill in the fields of the chosen channel only." }
                label for="openid" { "微信 openid (WeChat)" }
                input #openid type="text" name="openid" autocomplete="off";
                label for="alipay-account" { "支付宝账号 Alipay account (mobile or email)" }
                input #alipay-account type="text" name="account" autocomplete="off";
                label for="card_number" { "银行卡号 Card number" }
                input #card_number type="text" name="card_number" inputmode="numeric" autocomplete="off";
                label for="bank_name" { "开户银行 Bank (e.g. 招商银行, ICBC)" }
                input #bank_name type="text" name="bank_name" autocomplete="off";
                label for="holder_name" { "持卡人 Card holder (optional 可选)" }
                input #holder_name type="text" name="holder_name" autocomplete="off";
                button type="submit" { "添加 Add account" }
            }
        }
    }
}
