//! `fenrun demo`: a guided tour on a throw-away SQLite file — a referral tree
//! four levels deep, commissions computed under the shipped plan and posted as
//! pending balance, an idempotent replay, then balances and `ledger verify`.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::Utc;

use crate::domain::commission::{self, Beneficiary, Order, OrderItem};
use crate::domain::ids::{BuyerId, DistributorId};
use crate::domain::ledger::{AccountId, Bucket, PlatformAccount, Transfer, TransferKind};
use crate::domain::money::Money;
use crate::store::{LedgerReport, NewDistributor, Store, StoreOptions, TransferOutcome};

/// How many sample orders the tour posts.
const DEMO_ORDERS: u64 = 60;

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

pub async fn run(keep: Option<PathBuf>) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let path = keep.unwrap_or_else(|| temp.path().join("demo.db"));
    let url = format!("sqlite://{}", path.display());
    println!("fenrun demo — database {}", path.display());
    let store = Store::open(&url, &StoreOptions::default()).await?;
    let now = Utc::now();
    crate::plans::ensure_default(&store, now).await?;
    let (version, plan) = crate::plans::in_force(&store, now).await?;
    println!(
        "commission plan in force: {:?} (version {version})",
        plan.name()
    );

    let tree = demo_tree();
    for (index, (id, name, referrer, grade)) in tree.iter().enumerate() {
        let new = NewDistributor {
            id: DistributorId::parse(id.as_str())?,
            name: name.clone(),
            referrer_id: referrer.as_deref().map(DistributorId::parse).transpose()?,
            grade: (*grade).to_owned(),
            status: crate::store::DistributorStatus::Active,
            request_sha256: crate::domain::ledger::sha256_hex(id.as_bytes()),
        };
        store.create_distributor(&new, now).await?;
        print!("\rcreating distributors {}/{}", index + 1, tree.len());
    }
    println!();

    let mut random = Lcg(20261122);
    let categories = ["apparel", "beauty", "electronics", "food"];
    let mut posted_lines = 0usize;
    for number in 1..=DEMO_ORDERS {
        let seller = DistributorId::parse(format!("d{:02}", 1 + random.next(15)))?;
        let distributor = store
            .distributor(&seller)
            .await?
            .ok_or_else(|| anyhow::anyhow!("missing {seller}"))?;
        let mut chain = vec![Beneficiary {
            distributor_id: seller.clone(),
            grade: distributor.grade.clone(),
            earns: true,
        }];
        for upline in distributor.upline.iter().take(2) {
            let above = store
                .distributor(upline)
                .await?
                .ok_or_else(|| anyhow::anyhow!("missing {upline}"))?;
            chain.push(Beneficiary {
                distributor_id: above.id,
                grade: above.grade,
                earns: true,
            });
        }
        let items = (0..1 + random.next(3))
            .map(|line| OrderItem {
                sku: format!("SKU-{number}-{line}"),
                category: categories[random.next(4) as usize].to_owned(),
                amount: Money::from_fen(990 + 100 * random.next(2_000) as i64),
            })
            .collect();
        let order = Order {
            distributor_id: seller,
            buyer_id: BuyerId::parse(format!("buyer-{number}"))?,
            items,
        };
        for line in commission::compute(&plan, &order, &chain)? {
            let transfer = Transfer::between(
                format!("demo:o{number}:{}:{}", line.level, line.rate.fraction()),
                TransferKind::CommissionPending,
                AccountId::Platform(PlatformAccount::CommissionExpense),
                AccountId::Distributor(line.beneficiary.clone(), Bucket::Pending),
                line.amount,
            )?;
            store.transfer(&transfer, now).await?;
            posted_lines += 1;
        }
        print!("\rposting commissions for orders {number}/{DEMO_ORDERS}");
    }
    println!("\n{posted_lines} commission lines posted as pending");

    let replay = Transfer::between(
        "demo:o1:replayed",
        TransferKind::Adjustment,
        AccountId::Platform(PlatformAccount::CommissionExpense),
        AccountId::Distributor(DistributorId::parse("d01")?, Bucket::Available),
        Money::from_fen(100),
    )?;
    let first = store.transfer(&replay, now).await?;
    let second = store.transfer(&replay, now).await?;
    println!(
        "idempotency: the same transfer applied twice → {} then {}",
        describe_outcome(first),
        describe_outcome(second)
    );

    println!(
        "\n{:<5} {:<14} {:<8} {:<16} {:>12} {:>12}",
        "id", "name", "grade", "upline", "pending", "available"
    );
    for (id, name, _, grade) in &tree {
        let id = DistributorId::parse(id.as_str())?;
        let distributor = store
            .distributor(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("missing {id}"))?;
        let balance = store.balance(&id).await?.unwrap_or_default();
        let upline: Vec<String> = distributor.upline.iter().map(ToString::to_string).collect();
        println!(
            "{:<5} {:<14} {:<8} {:<16} {:>12} {:>12}",
            id.as_str(),
            name.chars().take(12).collect::<String>(),
            grade,
            upline.join(","),
            balance.pending.to_string(),
            balance.available.to_string()
        );
    }
    let expense = store
        .account_balance(&AccountId::Platform(PlatformAccount::CommissionExpense))
        .await?
        .unwrap_or_default();
    println!("platform commission expense: {expense}");
    let report = store.verify_ledger().await?;
    print!("\n{}", describe_ledger_report(&report));
    store.close().await;
    if !report.is_clean() {
        anyhow::bail!("the ledger does not verify");
    }
    Ok(())
}

fn describe_outcome(outcome: TransferOutcome) -> &'static str {
    match outcome {
        TransferOutcome::Applied { .. } => "applied",
        TransferOutcome::AlreadyApplied { .. } => "already applied (no-op)",
    }
}

/// The human summary `ledger verify` and the demo print.
pub fn describe_ledger_report(report: &LedgerReport) -> String {
    let mut text = String::new();
    let verdict = if report.is_clean() { "OK" } else { "FAILED" };
    let _ = writeln!(
        text,
        "ledger verify: {verdict} — {} accounts, {} transfers, {} postings, Σ postings = {}",
        report.accounts,
        report.transfers,
        report.postings,
        Money::from_fen(report.postings_sum_fen)
    );
    for key in &report.unbalanced_transfers {
        let _ = writeln!(text, "  unbalanced transfer {key}");
    }
    for mismatch in &report.mismatched_accounts {
        let _ = writeln!(
            text,
            "  account {}: stored {} but postings say {}",
            mismatch.account,
            Money::from_fen(mismatch.stored_fen),
            Money::from_fen(mismatch.derived_fen)
        );
    }
    for account in &report.negative_accounts {
        let _ = writeln!(text, "  account {account} is negative but may never be");
    }
    text
}
