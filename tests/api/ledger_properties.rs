//! Property test: random sequences of transfers (credits, moves between
//! buckets, clawbacks, replays, conflicting replays, overdrafts) leave the
//! store exactly where a simple in-memory model says, and `verify` clean.

use std::collections::BTreeMap;

use fenrun::domain::ids::DistributorId;
use fenrun::domain::ledger::{AccountId, Bucket, PlatformAccount, Transfer, TransferKind};
use fenrun::domain::money::Money;
use fenrun::store::{NewDistributor, Store, StoreError, StoreOptions, TransferOutcome};
use proptest::prelude::*;

/// Distributors every case draws from.
const DISTRIBUTORS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Credit {
        to: usize,
        bucket: Bucket,
        fen: i64,
    },
    Move {
        who: usize,
        from: Bucket,
        to: Bucket,
        fen: i64,
    },
    Clawback {
        who: usize,
        fen: i64,
    },
    ReplayLast,
    ConflictLast {
        fen: i64,
    },
}

fn bucket() -> impl Strategy<Value = Bucket> {
    prop_oneof![
        Just(Bucket::Pending),
        Just(Bucket::Available),
        Just(Bucket::Withdrawing)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..DISTRIBUTORS;
    let fen = 1i64..50_000;
    prop_oneof![
        4 => (who.clone(), bucket(), fen.clone()).prop_map(|(to, bucket, fen)| Op::Credit { to, bucket, fen }),
        4 => (who.clone(), bucket(), bucket(), fen.clone()).prop_map(|(who, from, to, fen)| Op::Move { who, from, to, fen }),
        1 => (who, fen.clone()).prop_map(|(who, fen)| Op::Clawback { who, fen }),
        1 => Just(Op::ReplayLast),
        1 => fen.prop_map(|fen| Op::ConflictLast { fen }),
    ]
}

struct Model {
    balances: BTreeMap<AccountId, i64>,
}

impl Model {
    fn can_apply(&self, transfer: &Transfer) -> bool {
        transfer.net_by_account().into_iter().all(|(account, net)| {
            let AccountId::Distributor(_, bucket) = account else {
                return true;
            };
            let after = self.balances.get(account).copied().unwrap_or(0) + net.fen();
            // A credit always passes: it moves a debt toward zero.
            after >= 0
                || net.fen() > 0
                || (bucket.may_go_negative() && transfer.allows_overdraft(account))
        })
    }

    fn apply(&mut self, transfer: &Transfer) {
        for (account, net) in transfer.net_by_account() {
            *self.balances.entry(account.clone()).or_default() += net.fen();
        }
    }
}

fn account(case: u64, who: usize, bucket: Bucket) -> AccountId {
    AccountId::Distributor(
        DistributorId::parse(format!("c{case}-d{who}")).unwrap(),
        bucket,
    )
}

fn expense() -> AccountId {
    AccountId::Platform(PlatformAccount::CommissionExpense)
}

async fn run_case(store: &Store, case: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let now = chrono::Utc::now();
    for who in 0..DISTRIBUTORS {
        let new = NewDistributor {
            id: DistributorId::parse(format!("c{case}-d{who}")).unwrap(),
            name: "p".to_owned(),
            referrer_id: None,
            grade: "regular".to_owned(),
            status: fenrun::domain::settlement::DistributorStatus::Active,
            request_sha256: "p".to_owned(),
        };
        store.create_distributor(&new, now).await.unwrap();
    }
    let mut model = Model {
        balances: BTreeMap::new(),
    };
    let mut applied: Vec<Transfer> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let key = format!("c{case}-op{index}");
        let (transfer, expect_conflict) = match op {
            Op::Credit { to, bucket, fen } => (
                Transfer::between(
                    &key,
                    TransferKind::Adjustment,
                    expense(),
                    account(case, *to, *bucket),
                    Money::from_fen(*fen),
                )
                .unwrap(),
                false,
            ),
            Op::Move { who, from, to, .. } if from == to => continue,
            Op::Move { who, from, to, fen } => (
                Transfer::between(
                    &key,
                    TransferKind::Adjustment,
                    account(case, *who, *from),
                    account(case, *who, *to),
                    Money::from_fen(*fen),
                )
                .unwrap(),
                false,
            ),
            Op::Clawback { who, fen } => {
                let available = account(case, *who, Bucket::Available);
                (
                    Transfer::between(
                        &key,
                        TransferKind::CommissionClawedBack,
                        available.clone(),
                        expense(),
                        Money::from_fen(*fen),
                    )
                    .unwrap()
                    .allowing_overdraft(available),
                    false,
                )
            }
            Op::ReplayLast => match applied.last() {
                Some(last) => (last.clone(), false),
                None => continue,
            },
            Op::ConflictLast { fen } => match applied.last() {
                Some(last) => (
                    Transfer::between(
                        last.key(),
                        TransferKind::Adjustment,
                        expense(),
                        account(case, 0, Bucket::Pending),
                        Money::from_fen(*fen),
                    )
                    .unwrap(),
                    true,
                ),
                None => continue,
            },
        };
        let is_replay = matches!(op, Op::ReplayLast);
        let outcome = store.transfer(&transfer, now).await;
        match outcome {
            Ok(TransferOutcome::AlreadyApplied { .. }) => {
                prop_assert!(is_replay, "op {index} {op:?} was a no-op")
            }
            Ok(TransferOutcome::Applied { .. }) => {
                prop_assert!(
                    !is_replay && !expect_conflict,
                    "op {index} {op:?} applied twice"
                );
                prop_assert!(model.can_apply(&transfer), "op {index} {op:?} overdrew");
                model.apply(&transfer);
                applied.push(transfer);
            }
            Err(StoreError::IdempotencyConflict { .. }) => {
                // Unless the "conflicting" body happens to equal the original.
                prop_assert!(expect_conflict, "op {index} {op:?} conflicted");
            }
            Err(StoreError::InsufficientFunds { .. }) => {
                prop_assert!(
                    !model.can_apply(&transfer),
                    "op {index} {op:?} refused but the model allows it"
                )
            }
            Err(other) => return Err(TestCaseError::fail(format!("op {index} {op:?}: {other}"))),
        }
    }
    for who in 0..DISTRIBUTORS {
        let id = DistributorId::parse(format!("c{case}-d{who}")).unwrap();
        let balance = store.balance(&id).await.unwrap().unwrap();
        for (bucket, stored) in [
            (Bucket::Pending, balance.pending),
            (Bucket::Available, balance.available),
            (Bucket::Withdrawing, balance.withdrawing),
        ] {
            let expected = model
                .balances
                .get(&account(case, who, bucket))
                .copied()
                .unwrap_or(0);
            prop_assert_eq!(
                stored.fen(),
                expected,
                "case {} d{} {:?}",
                case,
                who,
                bucket
            );
        }
    }
    Ok(())
}

fn check_backend(url: &str, cases: u32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(Store::open(url, &StoreOptions::default()))
        .unwrap();
    let case = std::cell::Cell::new(0u64);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..12))| {
        case.set(case.get() + 1);
        runtime.block_on(run_case(&store, case.get(), &ops))?;
    });
    let report = runtime.block_on(store.verify_ledger()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.transfers > i64::from(cases),
        "the cases did move money"
    );
    runtime.block_on(store.close());
}

#[test]
fn random_transfer_sequences_match_the_model_on_sqlite() {
    // An in-memory database: the property is about the SQL, not the disk.
    check_backend("sqlite::memory:", 10_000);
}

#[test]
#[cfg_attr(
    not(fenrun_test_pg),
    ignore = "PostgreSQL suite skipped: set FENRUN_TEST_PG=postgres://postgres@127.0.0.1:5432/postgres"
)]
fn random_transfer_sequences_match_the_model_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(crate::helpers::TestDb::new(
        crate::helpers::Backend::Postgres,
    ));
    drop(runtime);
    check_backend(&db.url, 1_000);
}
