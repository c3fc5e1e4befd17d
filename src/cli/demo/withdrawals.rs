//! The demo's second act: distributors withdraw what they earned, through
//! the in-process sandbox gateway on every channel — WeChat, an Alipay
//! account, a bank card that the bank then sends back (退票) — standard and
//! express, one rejected in review, one approved, one refused by the
//! gateway, one waiting for the payee's confirmation; then the figures, and
//! the sandbox's record of money sent against fenrun's clearing accounts.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::clock::{Clock, SimulatedClock};
use crate::domain::banks::BankAccountKind;
use crate::domain::identity::PayoutChannel;
use crate::domain::identity::{AlipayAccount, BankCardNumber, IdNumber, RealName, WechatOpenId};
use crate::domain::ids::{CertificateNumber, DistributorId, PayoutAccountId, WithdrawalId};
use crate::domain::ledger::{AccountId, PlatformAccount};
use crate::domain::money::Money;
use crate::domain::withdrawal::ReviewDecision;
use crate::domain::withdrawal::{Speed, WithdrawalState};
use crate::engine::withdrawal::WithdrawalRequest;
use crate::state::AppState;
use crate::store::WithdrawalRequestOutcome;
use crate::vault::credentials::{NewAccount, seal_account, seal_identity};

/// How long the demo waits for the gateway to settle everything.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One withdrawal of the story.
struct Plan {
    distributor: &'static str,
    real_name: &'static str,
    /// 17 digits; the check character is computed.
    id_first17: &'static str,
    speed: Speed,
    /// The rail the money goes out on.
    channel: PayoutChannel,
    /// Share of the distributor's available balance, in percent.
    share: i64,
    story: &'static str,
}

const PLANS: [Plan; 6] = [
    Plan {
        distributor: "d04",
        real_name: "赵敏",
        id_first17: "44030419900101123",
        speed: Speed::Standard,
        channel: PayoutChannel::Wechat,
        share: 40,
        story: "payee confirms in the app",
    },
    Plan {
        distributor: "d01",
        real_name: "王芳",
        id_first17: "11010119850307123",
        speed: Speed::Express,
        channel: PayoutChannel::Wechat,
        share: 90,
        story: "large: ops approve",
    },
    Plan {
        distributor: "d12",
        real_name: "李娜",
        id_first17: "31010419920512123",
        speed: Speed::Standard,
        channel: PayoutChannel::Alipay,
        share: 80,
        story: "auto-approved, to an Alipay account",
    },
    Plan {
        distributor: "d10",
        real_name: "张伟",
        id_first17: "32010219880820123",
        speed: Speed::Express,
        channel: PayoutChannel::Bank,
        share: 90,
        story: "express to a bank card; the bank sends it back",
    },
    Plan {
        distributor: "d05",
        real_name: "刘洋",
        id_first17: "51010719950615123",
        speed: Speed::Standard,
        channel: PayoutChannel::Wechat,
        share: 100,
        story: "gateway refuses the payee",
    },
    Plan {
        distributor: "d06",
        real_name: "陈静",
        id_first17: "33010619910909123",
        speed: Speed::Standard,
        channel: PayoutChannel::Wechat,
        share: 100,
        story: "new payout account: ops reject",
    },
];

fn id_number(first17: &str) -> String {
    IdNumber::complete(first17)
}

/// Every name, ID number and openid the demo stores: what its logs must
/// never show (the log test of a full demo run looks for each).
pub fn secrets() -> Vec<String> {
    PLANS
        .iter()
        .flat_map(|plan| {
            [
                plan.real_name.to_owned(),
                id_number(plan.id_first17),
                openid_of(plan.distributor),
                alipay_account_of(plan.distributor),
                BANK_CARD.to_owned(),
            ]
        })
        .collect()
}

fn openid_of(distributor: &str) -> String {
    format!("oDemo{distributor}Openid0000000000")
}

fn alipay_account_of(distributor: &str) -> String {
    format!("{distributor}.payee@demo.example")
}

/// The demo's bank card (a test number that passes the Luhn check).
const BANK_CARD: &str = "6222021234567894";

/// Stores an identity and a payout account on the plan's channel for
/// `distributor`; returns the account id.
async fn credentials(
    state: &AppState,
    plan: &Plan,
    at: chrono::DateTime<Utc>,
) -> anyhow::Result<PayoutAccountId> {
    let distributor = DistributorId::parse(plan.distributor)?;
    let name = RealName::parse(plan.real_name)?;
    let number = IdNumber::parse(&id_number(plan.id_first17), at.date_naive())?;
    let identity = seal_identity(&state.vault, &distributor, &name, &number, at)?;
    state.store.upsert_identity(&identity).await?;
    let account = match plan.channel {
        PayoutChannel::Wechat => {
            let openid = WechatOpenId::parse(&openid_of(plan.distributor))?;
            let new = NewAccount {
                distributor: &distributor,
                channel: PayoutChannel::Wechat,
                masked: openid.masked(),
                account_name_masked: None,
                bank_name: None,
                bank_account: None,
            };
            seal_account(&state.vault, new, &openid, at)?
        }
        PayoutChannel::Alipay => {
            let logon = AlipayAccount::parse(&alipay_account_of(plan.distributor))?;
            let new = NewAccount {
                distributor: &distributor,
                channel: PayoutChannel::Alipay,
                masked: logon.masked(),
                account_name_masked: Some(name.masked()),
                bank_name: None,
                bank_account: None,
            };
            seal_account(&state.vault, new, &logon, at)?
        }
        PayoutChannel::Bank => {
            let card = BankCardNumber::parse(BANK_CARD)?;
            let new = NewAccount {
                distributor: &distributor,
                channel: PayoutChannel::Bank,
                masked: card.masked(),
                account_name_masked: Some(name.masked()),
                bank_name: Some("招商银行".to_owned()),
                bank_account: Some(BankAccountKind::Personal),
            };
            seal_account(&state.vault, new, &card, at)?
        }
    };
    state.store.insert_payout_account(&account).await?;
    Ok(account.id)
}

/// Moves the simulated clock to a settlement cycle's cut-off when it is
/// still ahead, and sends the standard withdrawals that became due.
async fn reach_cutoff(
    state: &AppState,
    clock: &SimulatedClock,
    cutoff: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    let Some(cutoff) = cutoff.filter(|cutoff| *cutoff > clock.now()) else {
        return Ok(());
    };
    clock.advance(cutoff - clock.now())?;
    state.announce_clock_move();
    let sent = state.withdrawals.send_due(chrono::Duration::zero()).await?;
    println!(
        "the clock reaches the cut-off {}: {sent} standard withdrawal(s) go out together",
        cutoff.with_timezone(&state.withdrawals.settings().time_zone)
    );
    Ok(())
}

/// Runs the act; true when the sandbox's record equals fenrun's ledger.
pub async fn run(state: &AppState, clock: &SimulatedClock) -> anyhow::Result<bool> {
    let engine = &state.withdrawals;
    let gateway = engine
        .gateway()
        .ok_or_else(|| anyhow::anyhow!("the payout gateway is not connected"))?
        .clone();
    let sandbox = gateway
        .sandbox()
        .ok_or_else(|| anyhow::anyhow!("the demo pays through the in-process sandbox"))?;
    println!(
        "\nwithdrawals — through the in-process SANDBOX gateway (WeChat Pay v3 and Alipay dialects; no real money moves)"
    );

    let mut accounts = Vec::new();
    for plan in &PLANS {
        accounts.push(credentials(state, plan, clock.now()).await?);
    }
    // Past the "new payout account" window, except for d06's second account below.
    clock.advance(chrono::Duration::days(2))?;
    state.announce_clock_move();
    let d06_fresh_account = credentials(state, &PLANS[5], clock.now()).await?;
    accounts[5] = d06_fresh_account;

    let mut faults = fenrun_integrations::sandbox::Faults {
        fail_openids: vec![openid_of("d05")],
        confirm: fenrun_integrations::sandbox::ConfirmMode::Hold,
        ..Default::default()
    };
    sandbox.set_faults(faults.clone());

    let mut requested = Vec::new();
    for (plan, account) in PLANS.iter().zip(&accounts) {
        let distributor = DistributorId::parse(plan.distributor)?;
        let available = state
            .store
            .balance(&distributor)
            .await?
            .unwrap_or_default()
            .available;
        let amount = Money::from_fen(available.fen() * plan.share / 100);
        if amount.fen() < 10_00 {
            println!(
                "{} has only {available} available: skipped",
                plan.distributor
            );
            continue;
        }
        let request = WithdrawalRequest {
            distributor_id: distributor,
            amount,
            payout_account_id: account.clone(),
            speed: plan.speed,
        };
        let outcome = engine
            .request(
                &request,
                format!("demo-{}", plan.distributor),
                crate::domain::digest::sha256_hex(plan.distributor.as_bytes()),
            )
            .await?;
        let (WithdrawalRequestOutcome::Created(withdrawal)
        | WithdrawalRequestOutcome::Replayed(withdrawal)) = outcome;
        requested.push((plan, withdrawal.id.clone()));
        if let Some(send_after) = withdrawal.send_after {
            println!(
                "{}: {} {} — to be sent {} ({})",
                plan.distributor,
                withdrawal.id,
                withdrawal.speed.as_str(),
                send_after.with_timezone(&engine.settings().time_zone),
                withdrawal.payout_cycle.as_deref().unwrap_or("immediate")
            );
        }
        if withdrawal.state == WithdrawalState::Reviewing {
            let flags: Vec<String> = withdrawal
                .risk_flags
                .iter()
                .map(|flag| format!("{flag:?}"))
                .collect();
            let decision = if plan.distributor == "d06" {
                ReviewDecision::Reject {
                    by: "demo-ops".to_owned(),
                    reason: "payout account changed minutes ago; call the distributor".to_owned(),
                }
            } else {
                ReviewDecision::Approve {
                    by: "demo-ops".to_owned(),
                    note: Some("known distributor".to_owned()),
                }
            };
            let ops = crate::service::audit::Actor {
                id: "demo-ops".to_owned(),
                role: "ops".to_owned(),
            };
            let reviewed = engine.review(&withdrawal.id, &decision, &ops).await?;
            println!(
                "{}: {} sent to review ({}); ops: {}",
                plan.distributor,
                withdrawal.id,
                flags.join(", "),
                reviewed.state
            );
        }
        if plan.distributor == "d04" {
            reach_cutoff(state, clock, withdrawal.send_after).await?;
            // Hold the first bill at the payee's confirmation, then let the rest through.
            let waiting = wait_until(state, &withdrawal.id, |state| {
                state == WithdrawalState::AwaitingPayeeConfirmation
            })
            .await?;
            println!(
                "{}: {} waits for the payee (package_info {}…)",
                plan.distributor,
                withdrawal.id,
                waiting
                    .package_info
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(16)
                    .collect::<String>()
            );
            faults.confirm = fenrun_integrations::sandbox::ConfirmMode::default();
            sandbox.set_faults(faults.clone());
        }
    }
    if let Some((_, id)) = requested.iter().find(|(plan, _)| plan.distributor == "d04") {
        let bill = state
            .store
            .withdrawal(id)
            .await?
            .map(|withdrawal| withdrawal.out_bill_no)
            .unwrap_or_default();
        sandbox.confirm(&bill);
    }
    // The standard withdrawals requested after d04's cut-off wait for the next one.
    let mut last_cutoff = None;
    for (_, id) in &requested {
        let send_after = state.store.withdrawal(id).await?.and_then(|w| w.send_after);
        last_cutoff = last_cutoff.max(send_after);
    }
    reach_cutoff(state, clock, last_cutoff).await?;
    for (_, id) in &requested {
        wait_until(state, id, WithdrawalState::is_final).await?;
    }
    let bounced = bounce_the_bank_payout(state, sandbox, &requested).await?;

    println!(
        "\n{:<4} {:<34} {:<8} {:<10} {:>10} {:>8} {:>7} {:>10}  story / reason",
        "who", "withdrawal", "speed", "state", "gross", "tax", "fee", "net"
    );
    let (mut gross, mut tax, mut fee, mut net) =
        (Money::ZERO, Money::ZERO, Money::ZERO, Money::ZERO);
    for (plan, id) in &requested {
        let withdrawal = state
            .store
            .withdrawal(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{id} vanished"))?;
        if withdrawal.state == WithdrawalState::Paid {
            gross = gross.checked_add(withdrawal.gross).unwrap_or(gross);
            tax = tax.checked_add(withdrawal.tax).unwrap_or(tax);
            fee = fee.checked_add(withdrawal.fee).unwrap_or(fee);
            net = net.checked_add(withdrawal.net).unwrap_or(net);
        }
        println!(
            "{:<4} {:<34} {:<8} {:<10} {:>10} {:>8} {:>7} {:>10}  {}{}",
            plan.distributor,
            withdrawal.id,
            withdrawal.speed.as_str(),
            withdrawal.state.as_str(),
            withdrawal.gross.to_string(),
            withdrawal.tax.to_string(),
            withdrawal.fee.to_string(),
            withdrawal.net.to_string(),
            plan.story,
            withdrawal
                .failure_reason
                .map(|reason| format!(" — {reason}"))
                .unwrap_or_default(),
        );
    }
    println!("paid in all: gross {gross}, tax withheld {tax}, fees {fee}, net sent {net}");
    let ledger = sandbox.ledger();
    let mut matches = true;
    for (channel, rail, clearing) in [
        (
            PayoutChannel::Wechat,
            fenrun_integrations::Channel::Wechat,
            PlatformAccount::WechatClearing,
        ),
        (
            PayoutChannel::Alipay,
            fenrun_integrations::Channel::Alipay,
            PlatformAccount::AlipayClearing,
        ),
        (
            PayoutChannel::Bank,
            fenrun_integrations::Channel::Bank,
            PlatformAccount::BankClearing,
        ),
    ] {
        let held = state
            .store
            .account_balance(&AccountId::Platform(clearing))
            .await?
            .unwrap_or_default();
        let sent = ledger.channel(rail);
        let kept = Money::from_fen(sent.sent_fen - sent.returned_fen);
        let equal = kept == held;
        matches &= equal;
        println!(
            "sandbox {:<6}: sent {} in {} payout(s), {} returned; fenrun's {} clearing account holds {held}: {}",
            channel.as_str(),
            Money::from_fen(sent.sent_fen),
            sent.sent_count,
            Money::from_fen(sent.returned_fen),
            channel.as_str(),
            if equal { "equal" } else { "DIFFERENT" }
        );
    }
    matches &= ledger.total_paid_fen - ledger.total_returned_fen == net.fen();
    let mut paid = Vec::new();
    for (plan, id) in &requested {
        if let Some(withdrawal) = state.store.withdrawal(id).await?
            && withdrawal.state == WithdrawalState::Paid
        {
            paid.push((plan.distributor, withdrawal));
        }
    }
    let certified = certificates(state, &paid).await?;
    let voided = match &bounced {
        Some((who, id)) => void_certificate(state, who, id).await?,
        None => true,
    };
    Ok(matches && certified && voided)
}

/// The bank sends d10's card payout back (退票) through the sandbox, as a
/// bank does days after success: the withdrawal moves to `returned` once,
/// the gross is available again and the month's tax forgets the payout.
async fn bounce_the_bank_payout(
    state: &AppState,
    sandbox: &fenrun_integrations::sandbox::SandboxHandle,
    requested: &[(&Plan, WithdrawalId)],
) -> anyhow::Result<Option<(&'static str, WithdrawalId)>> {
    let Some((plan, id)) = requested
        .iter()
        .find(|(plan, _)| plan.channel == PayoutChannel::Bank)
    else {
        return Ok(None);
    };
    let paid = wait_until(state, id, WithdrawalState::is_final).await?;
    if paid.state != WithdrawalState::Paid {
        return Ok(None);
    }
    // The certificate is issued before the bank's word comes back.
    wait_for_certificate(state, id).await?;
    let distributor = DistributorId::parse(plan.distributor)?;
    let before = state.store.balance(&distributor).await?.unwrap_or_default();
    sandbox
        .bounce(&paid.out_bill_no, Some("收款账户已注销"))
        .map_err(|refusal| anyhow::anyhow!("the sandbox would not bounce {id}: {refusal:?}"))?;
    let returned = wait_until(state, id, |state| state == WithdrawalState::Returned).await?;
    let after = state.store.balance(&distributor).await?.unwrap_or_default();
    println!(
        "{}: the bank sent {} back (退票: {}): {} → returned; available {} → {} (the gross {} again)",
        plan.distributor,
        paid.net,
        returned.failure_reason.as_deref().unwrap_or(""),
        paid.id,
        before.available,
        after.available,
        paid.gross,
    );
    Ok(Some((plan.distributor, id.clone())))
}

/// The certificate of a returned payout is voided by a correction stating
/// zero income, zero tax and zero paid.
async fn void_certificate(state: &AppState, who: &str, id: &WithdrawalId) -> anyhow::Result<bool> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let number = wait_for_certificate(state, id).await?;
        let (record, _) = state
            .store
            .certificate(&number)
            .await?
            .ok_or_else(|| anyhow::anyhow!("certificate {number} vanished"))?;
        if record.gross.is_zero() {
            println!(
                "{who}: certificate {} voids {} (gross {}, tax {}, net {}): {}",
                record.number,
                record
                    .replaces
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                record.gross,
                record.tax,
                record.net,
                record.reason.as_deref().unwrap_or("")
            );
            return Ok(record.replaces.is_some());
        }
        if Instant::now() > deadline {
            println!("{who}: the certificate of the returned payout was NOT voided");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Act three: every paid withdrawal's signed certificate, checked as a
/// stranger would check it, a tampered copy refused, and the month's
/// declaration held against the ledger.
async fn certificates(
    state: &AppState,
    paid: &[(&str, crate::store::WithdrawalRecord)],
) -> anyhow::Result<bool> {
    use crate::certificate::Verification;
    use crate::engine::certificate::verify_upload;

    println!("\nwithholding certificates — one per payout, signed with Ed25519 (GET /v1/tax/keys)");
    println!(
        "{:<4} {:<42} {:>10} {:>8} {:>10} {:>7}  verdict",
        "who", "certificate", "gross", "tax", "net", "PDF"
    );
    let mut genuine = 0;
    let mut first_pdf = None;
    for (who, withdrawal) in paid {
        let number = wait_for_certificate(state, &withdrawal.id).await?;
        let (record, pdf) = state
            .store
            .certificate(&number)
            .await?
            .ok_or_else(|| anyhow::anyhow!("certificate {number} vanished"))?;
        let verdict = match verify_upload(&state.store, &pdf, Some(&record.manifest)).await? {
            Verification::Genuine { .. } => {
                genuine += 1;
                "genuine".to_owned()
            }
            Verification::NotGenuine(rejection) => format!("NOT genuine: {rejection}"),
        };
        println!(
            "{:<4} {:<42} {:>10} {:>8} {:>10} {:>5}KB  {verdict}",
            who,
            number,
            record.gross.to_string(),
            record.tax.to_string(),
            record.net.to_string(),
            pdf.len().div_ceil(1024),
        );
        first_pdf.get_or_insert((pdf, record.manifest));
    }
    let tampered_refused = match first_pdf {
        Some((mut pdf, manifest)) => {
            let middle = pdf.len() / 2;
            pdf[middle] ^= 0x01;
            let verdict = verify_upload(&state.store, &pdf, Some(&manifest)).await?;
            match verdict {
                Verification::NotGenuine(rejection) => {
                    println!(
                        "a copy with one byte changed: NOT genuine ({})",
                        rejection.code()
                    );
                    true
                }
                Verification::Genuine { .. } => {
                    println!("a copy with one byte changed: GENUINE (this is a bug)");
                    false
                }
            }
        }
        None => true,
    };
    println!("certificates: {} issued, {genuine} genuine", paid.len());
    let mut declarations_equal = true;
    let months: std::collections::BTreeSet<&str> =
        paid.iter().map(|(_, w)| w.tax_month.as_str()).collect();
    for month in months {
        let month = crate::domain::tax::Month::parse(month)?;
        let declaration = crate::engine::declaration::Declaration::prepare(
            &state.store,
            &state.vault,
            month,
            state.settings.withholding_method,
            &state.settings.withholding_agent_name,
            &state.settings.withholding_agent_tin,
        )
        .await?;
        let totals = declaration.totals();
        let ledger_tax = state.store.ledger_tax_for_month(month).await?;
        let equal = totals.withheld == ledger_tax;
        declarations_equal &= equal;
        println!(
            "declaration {month}: {} distributors, {} payouts, income {}, tax withheld {}; ledger tax payable {ledger_tax}: {}",
            totals.distributors,
            totals.payouts,
            totals.income,
            totals.withheld,
            if equal { "equal" } else { "DIFFERENT" }
        );
    }
    Ok(genuine == paid.len() && tampered_refused && declarations_equal)
}

/// Waits until the certificate step has run for a paid withdrawal.
async fn wait_for_certificate(
    state: &AppState,
    id: &WithdrawalId,
) -> anyhow::Result<CertificateNumber> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(number) = state.store.certificate_number_for(id).await? {
            return Ok(number);
        }
        if Instant::now() > deadline {
            anyhow::bail!("withdrawal {id} has no certificate after {SETTLE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (on the wall clock: the gateway answers in real time) until the
/// withdrawal's state satisfies `done`.
async fn wait_until(
    state: &AppState,
    id: &WithdrawalId,
    done: impl Fn(WithdrawalState) -> bool,
) -> anyhow::Result<crate::store::WithdrawalRecord> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let withdrawal = state
            .store
            .withdrawal(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{id} vanished"))?;
        if done(withdrawal.state) {
            return Ok(withdrawal);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "withdrawal {id} is still {} after {SETTLE_TIMEOUT:?}",
                withdrawal.state
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
