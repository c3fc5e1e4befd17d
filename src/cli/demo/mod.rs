//! `fenrun demo`: the order-settlement workflow end to end, on a throw-away
//! SQLite file and a simulated clock — a referral tree four levels deep, a
//! commission plan, ~200 orders with refunds inside and after the hold, a
//! fast-forward past T+3, then every distributor's balances; withdrawals
//! through the sandbox gateway (`withdrawals.rs`), the commission rules
//! (`rules.rs`), the day's reconciliation against the gateways' statements
//! (`reconciliation.rs`), and `ledger verify`. All along, the shop's app — a
//! receiver inside the demo — gets every event as a signed webhook
//! (`webhooks.rs`) and says at the end what it got.
//!
//! It drives the same engine the HTTP API does (ingest through the group-commit
//! writer, refunds, the release step), only without the HTTP hop.

mod reconciliation;
mod rules;
mod webhooks;
mod withdrawals;

pub use crate::cli::demo::withdrawals::secrets;
use std::path::PathBuf;
use std::time::Instant;

use chrono::Duration;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::SecretString;

use crate::app::Application;
use crate::clock::Clock;
use crate::config::{Settings, WebhookSettings};
use crate::domain::commission::OrderItem;
use crate::domain::digest::sha256_hex;
use crate::domain::ids::{BuyerId, DistributorId, OrderId};
use crate::domain::money::Money;
use crate::domain::settlement::DistributorStatus;
use crate::engine::settlement::NewOrder;
use crate::store::NewDistributor;

/// Orders the demo sends.
const DEMO_ORDERS: u64 = 200;
/// Orders sent at once, so the group-commit writer batches them.
const CONCURRENT_ORDERS: usize = 25;
/// Days over which the orders are confirmed.
const ORDER_DAYS: u64 = 4;

/// The plan the demo applies on top of the shipped default: the same grades,
/// electronics paying less, gift cards paying nothing.
const DEMO_PLAN: &str = r#"name = "demo-spring"
default_grade = "regular"
order_cap = "30%"
self_purchase_pays = false
excluded_skus = ["GIFT-CARD"]

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["12%", "6%", "3%"]

[grades.partner]
display_name = "合伙人"
levels = ["15%", "8%", "3%"]

[[overrides]]
category = "electronics"
levels = ["4%", "2%", "1%"]
"#;

/// (id, name, referrer, grade): a root partner, two gold, four regular, eight leaves.
fn demo_tree() -> Vec<(String, String, Option<String>, &'static str)> {
    let mut tree = vec![("d01".to_owned(), "Wang Fang".to_owned(), None, "partner")];
    for (index, child) in (2..=15).enumerate() {
        let parent = (index / 2) + 1;
        let grade = match child {
            2 | 3 => "gold",
            _ => "regular",
        };
        tree.push((
            format!("d{child:02}"),
            format!("Seller {child:02}"),
            Some(format!("d{parent:02}")),
            grade,
        ));
    }
    tree
}

/// A small deterministic generator, so every demo run tells the same story.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn progress(length: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

pub async fn run(keep: Option<PathBuf>) -> anyhow::Result<()> {
    let started = Instant::now();
    let temp = tempfile::tempdir()?;
    let path = keep.unwrap_or_else(|| temp.path().join("demo.db"));
    let settings = Settings {
        database_url: SecretString::from(format!("sqlite://{}", path.display())),
        // The sandbox gateway calls back over HTTP, so the API listens too.
        listen: "127.0.0.1:0".to_owned(),
        simulated_clock: true,
        run_workers: false,
        log_filter: "warn".to_owned(),
        // The shop's receiver listens on 127.0.0.1, in this process: a
        // private target, refused unless allowed. Only this process's
        // settings allow it; no file or environment is changed.
        webhooks: WebhookSettings {
            allow_private_targets: true,
        },
        ..Settings::default()
    };
    println!(
        "fenrun demo — SQLite database {}, simulated clock",
        path.display()
    );
    println!(
        "webhooks.allow_private_targets is on in the demo's own settings, so its shop's receiver on 127.0.0.1 may be a target (as in the tests; off by default)"
    );
    // The demo's database is thrown away, so its credentials' key is too.
    let vault = crate::vault::Vault::new(crate::vault::MasterKey::generate()?, Vec::new());
    let app = Application::build_with_vault(settings, vault).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let payout_workers = app.spawn_payout_workers(&stopped)?;
    let state = &app.state().clone();
    let (shutdown, shutdown_requested) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = shutdown_requested.await;
    }));
    let clock = state
        .simulated_clock
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the demo needs the simulated clock"))?;
    let store = &state.store;
    let engine = &state.settlement;
    // Registered before anything happens: events are only written for the
    // endpoints there are.
    let shop = crate::cli::demo::webhooks::Shop::open(state).await?;

    let plan = crate::service::plans::apply(
        store,
        DEMO_PLAN,
        "demo-plan.toml",
        &crate::service::audit::Actor::system("demo"),
        clock.now(),
    )
    .await?;
    println!(
        "commission plan applied: {:?} as version {}",
        plan.name, plan.version
    );

    let tree = demo_tree();
    let bar = progress(tree.len() as u64, "creating distributors");
    for (id, name, referrer, grade) in &tree {
        let new = NewDistributor {
            id: DistributorId::parse(id.as_str())?,
            name: name.clone(),
            referrer_id: referrer.as_deref().map(DistributorId::parse).transpose()?,
            grade: (*grade).to_owned(),
            status: DistributorStatus::Active,
            request_sha256: sha256_hex(id.as_bytes()),
        };
        store.create_distributor(&new, clock.now()).await?;
        bar.inc(1);
    }
    bar.finish();

    let mut random = Lcg(20_261_122);
    let categories = ["apparel", "beauty", "electronics", "food"];
    let orders_per_day = DEMO_ORDERS / ORDER_DAYS;
    let mut all_orders = Vec::new();
    let bar = progress(DEMO_ORDERS, "confirming orders (4 days)");
    for day in 0..ORDER_DAYS {
        let mut batch = Vec::new();
        for number in day * orders_per_day + 1..=(day + 1) * orders_per_day {
            let seller = DistributorId::parse(format!("d{:02}", 1 + random.next(15)))?;
            let items = (0..1 + random.next(3))
                .map(|line| {
                    let gift = random.next(10) == 0;
                    OrderItem {
                        sku: if gift {
                            "GIFT-CARD".to_owned()
                        } else {
                            format!("SKU-{number}-{line}")
                        },
                        category: categories[random.next(4) as usize].to_owned(),
                        amount: Money::from_fen(990 + 100 * random.next(2_000) as i64),
                    }
                })
                .collect();
            let confirmed_at = clock.now();
            batch.push(NewOrder {
                order_id: OrderId::parse(format!("o{number:04}"))?,
                distributor_id: seller,
                buyer_id: BuyerId::parse(format!("buyer-{number}"))?,
                placed_at: confirmed_at - Duration::days(3),
                confirmed_at,
                items,
                request_sha256: sha256_hex(format!("demo-order-{number}").as_bytes()),
            });
        }
        for chunk in batch.chunks(CONCURRENT_ORDERS) {
            let mut sending = tokio::task::JoinSet::new();
            for order in chunk.iter().cloned() {
                let engine = engine.clone();
                sending.spawn(async move { engine.ingest(order).await });
            }
            while let Some(answer) = sending.join_next().await {
                answer??;
                bar.inc(1);
            }
        }
        all_orders.extend(batch);
        engine
            .advance_and_release(&clock, Duration::days(1))
            .await?;
    }
    bar.finish();

    // Refunds while the last day's orders are still held: every 5th order,
    // alternately partial (by sku) and full.
    let held: Vec<&NewOrder> = all_orders
        .iter()
        .rev()
        .take(orders_per_day as usize)
        .collect();
    let mut refunds_in_hold = 0;
    for (index, order) in held.iter().enumerate().filter(|(index, _)| index % 5 == 0) {
        let full = index % 10 == 0;
        let (amount, sku) = if full {
            (
                Money::checked_sum(order.items.iter().map(|item| item.amount)).unwrap_or_default(),
                None,
            )
        } else {
            (order.items[0].amount, Some(order.items[0].sku.clone()))
        };
        engine
            .refund(
                &order.order_id,
                "hold-refund",
                amount,
                sku,
                sha256_hex(order.order_id.as_str().as_bytes()),
            )
            .await?;
        refunds_in_hold += 1;
    }
    println!(
        "{refunds_in_hold} refunds inside the hold: commission recomputed on the net, fully refunded orders cancelled"
    );

    let (_, released) = engine
        .advance_and_release(&clock, Duration::days(7))
        .await?;
    println!("clock moved past T+3 business days: {released} held orders released");

    // A leaf seller takes out everything available (a manual debit stands in
    // for the withdrawal workflow), then a refund of one of their released
    // orders claws back more than is left: a debt, repaid from later commission.
    let spender = DistributorId::parse("d15")?;
    let spent = store.balance(&spender).await?.unwrap_or_default().available;
    if spent.fen() > 0 {
        let debit = crate::domain::ledger::Transfer::between(
            "demo:d15:payout",
            crate::domain::ledger::TransferKind::Adjustment,
            crate::domain::ledger::AccountId::Distributor(
                spender.clone(),
                crate::domain::ledger::Bucket::Available,
            ),
            crate::domain::ledger::AccountId::Platform(
                crate::domain::ledger::PlatformAccount::CommissionExpense,
            ),
            spent,
        )?;
        store.transfer(&debit, clock.now()).await?;
    }
    let mut clawbacks = 0;
    if let Some(order) = all_orders
        .iter()
        .take((orders_per_day * 2) as usize)
        .find(|order| order.distributor_id == spender)
    {
        refund_in_full(engine, order, "late-refund").await?;
        clawbacks += 1;
        println!(
            "d15 withdrew {spent}, then order {} was refunded after its release",
            order.order_id
        );
    }
    // Refunds after the release claw commission back, possibly into debt.
    for order in all_orders
        .iter()
        .take(orders_per_day as usize)
        .filter(|order| order.order_id.as_str().ends_with('7'))
    {
        refund_in_full(engine, order, "late-refund").await?;
        clawbacks += 1;
    }
    println!("{clawbacks} refunds after the release (clawed back from available balance)");

    println!(
        "\n{:<5} {:<10} {:<8} {:<13} {:>10} {:>10} {:>8} {:>6}",
        "id", "name", "grade", "upline", "pending", "available", "debt", "lines"
    );
    let mut total_available = Money::ZERO;
    for (id, name, _, grade) in &tree {
        let id = DistributorId::parse(id.as_str())?;
        let distributor = store
            .distributor(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("missing {id}"))?;
        let balance = store.balance(&id).await?.unwrap_or_default();
        let lines = store
            .commissions(id.as_str(), None, crate::store::MAX_PAGE)
            .await?;
        let upline: Vec<String> = distributor.upline.iter().map(ToString::to_string).collect();
        total_available = total_available
            .checked_add(balance.available)
            .unwrap_or(total_available);
        println!(
            "{:<5} {:<10} {:<8} {:<13} {:>10} {:>10} {:>8} {:>6}",
            id.as_str(),
            name,
            grade,
            upline.join(","),
            balance.pending.to_string(),
            balance.available.to_string(),
            balance.debt().to_string(),
            lines.iter().filter(|line| !line.amount.is_zero()).count(),
        );
    }
    let counts = store.order_counts().await?;
    let counts: Vec<String> = counts
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    println!(
        "\norders: {}; distributors' available total {total_available}",
        counts.join(", ")
    );
    let payouts_since = clock.now();
    let paid_out = crate::cli::demo::withdrawals::run(state, &clock).await?;
    crate::cli::demo::rules::run(state, &clock).await?;
    let reconciled = crate::cli::demo::reconciliation::run(state, &clock, payouts_since).await?;
    let webhooks_received = shop.finish(state, &clock, payouts_since).await?;
    let report = store.verify_ledger().await?;
    print!(
        "{}",
        crate::cli::commands::ledger::describe_ledger_report(&report)
    );
    println!("demo finished in {:.1?}", started.elapsed());
    let _ = stop.send(true);
    for worker in payout_workers {
        let _ = worker.await;
    }
    let _ = shutdown.send(());
    server.await??;
    if !report.is_clean() {
        anyhow::bail!("the ledger does not verify");
    }
    if !paid_out {
        anyhow::bail!("the sandbox gateway's record differs from fenrun's ledger");
    }
    if !reconciled {
        anyhow::bail!(
            "the reconciliation found a mismatch on a clean day, or missed or kept the injected one"
        );
    }
    if !webhooks_received {
        anyhow::bail!(
            "the shop's receiver got no events, refused one, or missed a paid withdrawal's withdrawal.paid"
        );
    }
    Ok(())
}

/// Refunds everything that is left of `order`.
async fn refund_in_full(
    engine: &crate::engine::settlement::SettlementEngine,
    order: &NewOrder,
    refund_id: &str,
) -> anyhow::Result<()> {
    let amount = Money::checked_sum(order.items.iter().map(|item| item.amount)).unwrap_or_default();
    engine
        .refund(
            &order.order_id,
            refund_id,
            amount,
            None,
            sha256_hex(refund_id.as_bytes()),
        )
        .await?;
    Ok(())
}
