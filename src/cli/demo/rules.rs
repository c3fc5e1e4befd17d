//! The demo's commission-rules act (issue 14): a plan with every v2 rule
//! on, and a handful of orders that show each rule at work with the
//! explanation fenrun keeps on every line — a tier crossing, a campaign
//! order, a day capped by the daily cap, an order flagged by the risk
//! rules and held longer; then, once the orders are released, the daily
//! grade review upgrading a seller by settled sales (晋级) and the month
//! close paying team bonuses (团队奖).

use chrono::Duration;

use crate::clock::{Clock, SimulatedClock};
use crate::domain::commission::OrderItem;
use crate::domain::digest::sha256_hex;
use crate::domain::earnings::{month_bounds, month_of};
use crate::domain::ids::{BuyerId, DistributorId, OrderId};
use crate::domain::money::Money;
use crate::domain::settlement::DistributorStatus;
use crate::engine::grade_review::GradeReview;
use crate::engine::settlement::{IngestAnswer, NewOrder, SettlementEngine};
use crate::service::audit::Actor;
use crate::state::AppState;
use crate::store::NewDistributor;

/// The plan of this act: the demo's grades, with tiers, a campaign around
/// the demo's "now", a daily cap and risk rules. `{from}` / `{to}` are the
/// campaign's window.
const RULES_PLAN: &str = r#"name = "demo-rules"
default_grade = "regular"
daily_cap = "400.00"

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["12%", "6%", "3%"]

[grades.partner]
display_name = "合伙人"
levels = ["15%", "8%", "3%"]

[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "2000.00", level1 = "15%" } ]

[[campaigns]]
name = "双11"
from = {from}
to = {to}
multiplier = "2"
categories = ["beauty"]

[risk]
same_buyer_orders_per_day = 3
extra_hold_days = 5

[grades.gold.upgrade]
own_sales = "2000.00"

[team_bonus]
enabled = true
threshold = "3000.00"
rate = "1%"
"#;

/// The upgrade rule's and the team bonus's figures, as printed.
const GOLD_OWN_SALES: &str = "2000.00";
const BONUS_THRESHOLD: &str = "3000.00";

/// Runs the act; prints each rule's order with its lines' explanations.
pub async fn run(state: &AppState, clock: &SimulatedClock) -> anyhow::Result<()> {
    let now = clock.now();
    let plan_text = RULES_PLAN
        .replace("{from}", &(now - Duration::days(2)).to_rfc3339())
        .replace("{to}", &(now + Duration::days(1)).to_rfc3339());
    let plan = crate::service::plans::apply(
        &state.store,
        &plan_text,
        "demo-rules.toml",
        &crate::service::audit::Actor::system("demo"),
        now,
    )
    .await?;
    println!(
        "\ncommission rules v2: plan {:?} (version {}) — tiers, a 双11 campaign, a daily cap of 400.00, risk holds",
        plan.name, plan.version
    );
    for (id, referrer) in [("r01", None), ("r02", Some("r01")), ("r03", Some("r02"))] {
        let new = NewDistributor {
            id: DistributorId::parse(id)?,
            name: format!("Rules {id}"),
            referrer_id: referrer.map(DistributorId::parse).transpose()?,
            grade: "regular".to_owned(),
            status: DistributorStatus::Active,
            request_sha256: sha256_hex(id.as_bytes()),
        };
        state.store.create_distributor(&new, now).await?;
    }
    let engine = &state.settlement;
    let mut number = 0;
    let mut sell = |seller: &str,
                    buyer: &str,
                    category: &str,
                    amount: i64,
                    placed_days_ago: i64|
     -> anyhow::Result<NewOrder> {
        number += 1;
        let confirmed_at = clock.now();
        Ok(NewOrder {
            order_id: OrderId::parse(format!("rules-{number:02}"))?,
            distributor_id: DistributorId::parse(seller)?,
            buyer_id: BuyerId::parse(buyer)?,
            placed_at: confirmed_at - Duration::days(placed_days_ago),
            confirmed_at,
            items: vec![OrderItem {
                sku: format!("SKU-R{number}"),
                category: category.to_owned(),
                amount: Money::from_fen(amount * 100),
            }],
            request_sha256: sha256_hex(format!("demo-rules-{number}").as_bytes()),
        })
    };

    println!("阶梯佣金 tier: r03 sells 1500.00, then 1000.00 — the month passes 2000.00");
    show(engine, sell("r03", "buyer-t1", "food", 1_500, 3)?, "r03").await?;
    show(engine, sell("r03", "buyer-t2", "food", 1_000, 3)?, "r03").await?;
    println!("活动佣金 campaign: r02 sells 200.00 of beauty placed during 双11 — ×2");
    show(engine, sell("r02", "buyer-c1", "beauty", 200, 1)?, "r02").await?;
    println!(
        "防刷 daily cap: r03 has earned 300.00 today; 800.00 more at 15% would pay 120.00, the cap of 400.00 leaves 100.00"
    );
    show(engine, sell("r03", "buyer-d1", "food", 800, 3)?, "r03").await?;
    println!(
        "风险 risk: buyer-x buys from r02 four times today — the 4th is flagged and held 5 business days longer"
    );
    for _ in 0..3 {
        engine
            .ingest(sell("r02", "buyer-x", "food", 50, 3)?)
            .await?;
    }
    show(engine, sell("r02", "buyer-x", "food", 50, 3)?, "r02").await?;
    upgrade_and_close(state, clock).await
}

/// Releases the act's orders, runs the grade review (r03's settled sales
/// pass the gold rule), then moves into the next month and closes what is
/// over, printing the act's team bonuses with their figures.
async fn upgrade_and_close(state: &AppState, clock: &SimulatedClock) -> anyhow::Result<()> {
    let store = &state.store;
    // Past the flagged order's longer hold too.
    let (now, released) = state
        .settlement
        .advance_and_release(clock, Duration::days(21))
        .await?;
    println!("three weeks later: {released} held orders released");
    let review = GradeReview::new(std::sync::Arc::clone(store))
        .run(now, &Actor::system("demo"))
        .await?;
    let r03 = DistributorId::parse("r03")?;
    let (own, _) = store.lifetime_settled_sales(&r03).await?;
    let grade = store
        .distributor(&r03)
        .await?
        .map(|distributor| distributor.grade)
        .unwrap_or_default();
    println!(
        "晋级 grade review: r03's settled own sales {own} ≥ {GOLD_OWN_SALES} → {grade} ({} upgraded in the shop, by sales, never by head count)",
        review.upgraded
    );

    let time_zone = state.month_close.time_zone();
    let (_, next_month) = month_bounds(month_of(now, time_zone), time_zone);
    let (now, _) = state
        .settlement
        .advance_and_release(clock, next_month - now + Duration::hours(1))
        .await?;
    let closed = state.month_close.close_due(now).await?;
    let months: Vec<String> = closed.iter().map(ToString::to_string).collect();
    println!(
        "团队奖 month close of {}: a leader whose team's settled sales reach {BONUS_THRESHOLD} earns 1% of them",
        months.join(", ")
    );
    for id in ["r01", "r02", "r03"] {
        for bonus in store.team_bonuses(&DistributorId::parse(id)?).await? {
            println!(
                "  {id} {}: team settled sales {} ≥ {} × {} = {} (own {})",
                bonus.month,
                bonus.team_sales,
                bonus.threshold,
                bonus.rate,
                bonus.amount,
                bonus.own_sales
            );
        }
    }
    Ok(())
}

/// Ingests `order` and prints `who`'s lines with their explanations, and
/// the risk flags when there are any.
async fn show(engine: &SettlementEngine, order: NewOrder, who: &str) -> anyhow::Result<()> {
    let id = order.order_id.clone();
    let IngestAnswer::Created(prepared) = engine.ingest(order).await? else {
        anyhow::bail!("order {id} was already ingested");
    };
    for explained in prepared
        .lines
        .iter()
        .filter(|explained| explained.line.beneficiary.as_str() == who)
    {
        println!(
            "  {id} {who} level {}: {} — {}",
            explained.line.level, explained.line.amount, explained.rule_trail
        );
    }
    if !prepared.risk_flags.is_empty() {
        println!(
            "  {id} flagged: {}; release at {} instead of the usual hold",
            prepared.risk_flags.join(", "),
            prepared.release_at.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    Ok(())
}
