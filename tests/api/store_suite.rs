//! The store's shared suite: the same assertions against SQLite and PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use fenrun::domain::access::Role;
use fenrun::domain::ids::DistributorId;
use fenrun::domain::ledger::{AccountId, Bucket, PlatformAccount, Posting, Transfer, TransferKind};
use fenrun::domain::money::Money;
use fenrun::store::{Creation, NewDistributor, Store, StoreError, TransferOutcome};

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(
    the_upline_is_copied_down_three_levels,
    a_stale_calendar_plans_and_releases_nothing,
    a_transfer_applies_once_per_key,
    the_same_key_with_another_body_is_refused,
    an_overdraft_is_refused_by_the_database,
    a_clawback_may_take_available_below_zero_but_never_pending,
    a_refused_transfer_writes_nothing,
    ledger_rows_are_append_only,
    the_plan_in_force_is_the_latest_effective_one,
    tokens_are_stored_hashed_and_scoped,
    a_tampered_balance_is_caught_by_verify,
    times_compare_as_times_past_the_year_ten_thousand,
);

fn id(text: &str) -> DistributorId {
    DistributorId::parse(text).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

async fn create(store: &Store, name: &str, referrer: Option<&str>) {
    let new = NewDistributor {
        id: id(name),
        name: name.to_owned(),
        referrer_id: referrer.map(id),
        grade: "regular".to_owned(),
        status: fenrun::domain::settlement::DistributorStatus::Active,
        request_sha256: format!("hash-{name}"),
    };
    store.create_distributor(&new, now()).await.unwrap();
}

fn credit(key: &str, to: &str, bucket: Bucket, fen: i64) -> Transfer {
    Transfer::between(
        key,
        TransferKind::CommissionPending,
        AccountId::Platform(PlatformAccount::CommissionExpense),
        AccountId::Distributor(id(to), bucket),
        Money::from_fen(fen),
    )
    .unwrap()
}

async fn the_upline_is_copied_down_three_levels(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    create(&store, "b", Some("a")).await;
    create(&store, "c", Some("b")).await;
    create(&store, "d", Some("c")).await;
    create(&store, "e", Some("d")).await;
    let e = store.distributor(&id("e")).await.unwrap().unwrap();
    assert_eq!(e.upline, vec![id("d"), id("c"), id("b")]);
    let b = store.distributor(&id("b")).await.unwrap().unwrap();
    assert_eq!(b.upline, vec![id("a")]);
    // Replays are recognised by the request fingerprint.
    let replay = NewDistributor {
        id: id("e"),
        name: "e".to_owned(),
        referrer_id: Some(id("d")),
        grade: "regular".to_owned(),
        status: fenrun::domain::settlement::DistributorStatus::Active,
        request_sha256: "hash-e".to_owned(),
    };
    assert!(matches!(
        store.create_distributor(&replay, now()).await.unwrap(),
        Creation::Replayed(_)
    ));
    let conflicting = NewDistributor {
        request_sha256: "other".to_owned(),
        ..replay
    };
    assert!(matches!(
        store.create_distributor(&conflicting, now()).await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn a_transfer_applies_once_per_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    let transfer = credit("k1", "a", Bucket::Pending, 1234);
    assert!(matches!(
        store.transfer(&transfer, now()).await.unwrap(),
        TransferOutcome::Applied { .. }
    ));
    assert!(matches!(
        store.transfer(&transfer, now()).await.unwrap(),
        TransferOutcome::AlreadyApplied { .. }
    ));
    let balance = store.balance(&id("a")).await.unwrap().unwrap();
    assert_eq!(balance.pending, Money::from_fen(1234));
    let expense = store
        .account_balance(&AccountId::Platform(PlatformAccount::CommissionExpense))
        .await
        .unwrap();
    assert_eq!(expense, Some(Money::from_fen(-1234)));
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.transfers, report.postings), (1, 2));
}

async fn the_same_key_with_another_body_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    store
        .transfer(&credit("k1", "a", Bucket::Pending, 100), now())
        .await
        .unwrap();
    let error = store
        .transfer(&credit("k1", "a", Bucket::Pending, 101), now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::IdempotencyConflict { .. }),
        "{error}"
    );
    assert_eq!(
        store.balance(&id("a")).await.unwrap().unwrap().pending,
        Money::from_fen(100)
    );
}

async fn an_overdraft_is_refused_by_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    store
        .transfer(&credit("in", "a", Bucket::Available, 500), now())
        .await
        .unwrap();
    let reserve = |key: &str, fen| {
        Transfer::between(
            key,
            TransferKind::WithdrawalReserved,
            AccountId::Distributor(id("a"), Bucket::Available),
            AccountId::Distributor(id("a"), Bucket::Withdrawing),
            Money::from_fen(fen),
        )
        .unwrap()
    };
    let error = store
        .transfer(&reserve("w1", 501), now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InsufficientFunds { ref account } if account == "distributor:a:available"),
        "{error}"
    );
    store.transfer(&reserve("w2", 500), now()).await.unwrap();
    let balance = store.balance(&id("a")).await.unwrap().unwrap();
    assert_eq!(
        (balance.available, balance.withdrawing),
        (Money::ZERO, Money::from_fen(500))
    );
}

async fn a_clawback_may_take_available_below_zero_but_never_pending(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    store
        .transfer(&credit("in", "a", Bucket::Available, 100), now())
        .await
        .unwrap();
    let clawback = |key: &str, bucket| {
        let account = AccountId::Distributor(id("a"), bucket);
        Transfer::between(
            key,
            TransferKind::CommissionClawedBack,
            account.clone(),
            AccountId::Platform(PlatformAccount::CommissionExpense),
            Money::from_fen(300),
        )
        .unwrap()
        .allowing_overdraft(account)
    };
    store
        .transfer(&clawback("c1", Bucket::Available), now())
        .await
        .unwrap();
    let balance = store.balance(&id("a")).await.unwrap().unwrap();
    assert_eq!(balance.available, Money::from_fen(-200));
    assert_eq!(balance.debt(), Money::from_fen(200));
    let error = store
        .transfer(&clawback("c2", Bucket::Pending), now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InsufficientFunds { .. }),
        "{error}"
    );
    assert!(store.verify_ledger().await.unwrap().is_clean());
}

async fn a_refused_transfer_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    create(&store, "b", None).await;
    // Credits a, then fails on b: the credit to a must roll back with it.
    let transfer = Transfer::new(
        "split",
        TransferKind::Adjustment,
        vec![
            Posting {
                account: AccountId::Distributor(id("a"), Bucket::Available),
                amount: Money::from_fen(50),
            },
            Posting {
                account: AccountId::Distributor(id("b"), Bucket::Available),
                amount: Money::from_fen(-50),
            },
        ],
    )
    .unwrap();
    assert!(store.transfer(&transfer, now()).await.is_err());
    assert_eq!(
        store.balance(&id("a")).await.unwrap().unwrap().available,
        Money::ZERO
    );
    let report = store.verify_ledger().await.unwrap();
    assert_eq!(report.transfers, 0);
    // An account that does not exist is refused, not created.
    let ghost = credit("ghost", "nobody", Bucket::Pending, 1);
    assert!(matches!(
        store.transfer(&ghost, now()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn raw_execute(url: &str, sql: &'static str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut conn).await.map(|_| ())
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut conn).await.map(|_| ())
    }
}

async fn ledger_rows_are_append_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    store
        .transfer(&credit("k", "a", Bucket::Pending, 100), now())
        .await
        .unwrap();
    for sql in [
        "update ledger_postings set amount_fen = 1",
        "delete from ledger_postings",
        "update ledger_transfers set kind = 'x'",
        "delete from ledger_transfers",
    ] {
        let error = raw_execute(&db.url, sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    assert!(store.verify_ledger().await.unwrap().is_clean());
}

async fn the_plan_in_force_is_the_latest_effective_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = now();
    fenrun::service::plans::ensure_default(&store, start)
        .await
        .unwrap();
    fenrun::service::plans::ensure_default(&store, start)
        .await
        .unwrap();
    let (version, plan) = fenrun::service::plans::in_force(&store, start)
        .await
        .unwrap();
    assert_eq!((version, plan.name()), (1, "default"));
    let later = start + Duration::days(10);
    let text = format!(
        "name = \"later\"\neffective_from = \"{}\"\ndefault_grade = \"regular\"\n[grades.regular]\ndisplay_name = \"普通\"\nlevels = [\"1%\"]\n",
        later.to_rfc3339()
    );
    let stored = fenrun::service::plans::apply(&store, &text, "later.toml", &tester(), start)
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.applied_by, "system:test");
    let audit = store.audit_entries(None, Some("plan:2"), 10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].1.action.as_str(), audit[0].1.actor.as_str()),
        ("plan.apply", "system:test")
    );
    assert_eq!(
        fenrun::service::plans::in_force(&store, start + Duration::days(9))
            .await
            .unwrap()
            .0,
        1
    );
    assert_eq!(
        fenrun::service::plans::in_force(&store, later)
            .await
            .unwrap()
            .0,
        2
    );
    assert_eq!(store.list_plans().await.unwrap().len(), 2);
}

async fn tokens_are_stored_hashed_and_scoped(backend: Backend) {
    use secrecy::ExposeSecret;
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    let issued = fenrun::service::tokens::create(
        &store,
        Role::Distributor,
        Some(&id("a")),
        now(),
        &tester(),
    )
    .await
    .unwrap();
    let principal = fenrun::service::tokens::authenticate(&store, &issued.secret, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (principal.role, principal.distributor),
        (Role::Distributor, Some(id("a")))
    );
    let wrong = secrecy::SecretString::from(format!("{}0", issued.secret.expose_secret()));
    assert!(
        fenrun::service::tokens::authenticate(&store, &wrong, now())
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        fenrun::service::tokens::create(&store, Role::Distributor, None, now(), &tester())
            .await
            .is_err()
    );
    assert!(
        fenrun::service::tokens::create(&store, Role::Ops, Some(&id("a")), now(), &tester())
            .await
            .is_err()
    );
    assert!(
        fenrun::service::tokens::create(
            &store,
            Role::Distributor,
            Some(&id("ghost")),
            now(),
            &tester()
        )
        .await
        .is_err()
    );
    // Each token created has its audit entry, written with it; the refused
    // ones left none.
    let audit = store.audit_entries(None, None, 50).await.unwrap();
    let created: Vec<&str> = audit
        .iter()
        .filter(|(_, entry)| entry.action == "token.create")
        .map(|(_, entry)| entry.target.as_str())
        .collect();
    assert_eq!(created, [format!("token:{}", issued.id)], "{audit:?}");
}

fn tester() -> fenrun::service::audit::Actor {
    fenrun::service::audit::Actor::system("test")
}

async fn a_tampered_balance_is_caught_by_verify(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    create(&store, "a", None).await;
    store
        .transfer(&credit("k", "a", Bucket::Pending, 100), now())
        .await
        .unwrap();
    raw_execute(
        &db.url,
        "update ledger_accounts set balance_fen = 999 where id = 'distributor:a:pending'",
    )
    .await
    .unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert!(!report.is_clean());
    assert_eq!(
        report.mismatched_accounts[0].account,
        "distributor:a:pending"
    );
    assert_eq!(
        (
            report.mismatched_accounts[0].stored_fen,
            report.mismatched_accounts[0].derived_fen
        ),
        (999, 100)
    );
}

#[tokio::test]
async fn every_sqlite_connection_runs_at_synchronous_full_with_the_fast_ack_plan() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open().await;
    let levels = store.sqlite_synchronous_levels().await.unwrap().unwrap();
    assert!(!levels.is_empty());
    assert!(levels.iter().all(|&level| level == 2), "{levels:?}");
    let plan = store.sqlite_ack_plan().await.unwrap().unwrap();
    assert!(!plan.contains("LIdx"), "{plan}");
    assert!(plan.contains("json_each"), "{plan}");
}

fn held_order(order_id: &str, release_at: DateTime<Utc>) -> fenrun::store::PreparedOrder {
    let at = now() - Duration::days(1);
    fenrun::store::PreparedOrder {
        order_id: fenrun::domain::ids::OrderId::parse(order_id).unwrap(),
        distributor_id: id("a"),
        buyer_id: fenrun::domain::ids::BuyerId::parse("buyer").unwrap(),
        placed_at: at,
        confirmed_at: at,
        items: vec![fenrun::domain::commission::OrderItem {
            sku: "S1".to_owned(),
            category: "food".to_owned(),
            amount: Money::from_fen(1_000),
        }],
        total: Money::from_fen(1_000),
        plan_version: 1,
        release_at,
        release_at_provisional: false,
        chain_json: "[]".to_owned(),
        beneficiaries: Vec::new(),
        cleared: Default::default(),
        totals: fenrun::store::TotalsKeys {
            month: "2026-01".to_owned(),
            day: "2026-01-01".to_owned(),
            chain: Vec::new(),
            read: false,
            count_buyer: false,
        },
        lines: Vec::new(),
        commissionable: Money::ZERO,
        commission_context: None,
        risk_flags: Vec::new(),
        extra_hold_days: 0,
        pending_transfer: None,
        request_sha256: format!("hash-{order_id}"),
    }
}

/// Leaves each order as prepared: these tests are about time, not commission.
fn as_prepared(
    _: &mut fenrun::store::PreparedOrder,
    _: &fenrun::store::RunningTotals,
) -> Result<(), fenrun::store::StoreError> {
    Ok(())
}

/// As text, '+10000-01-01…' sorted before '2026-…': a far-future release
/// was due at once and a far-future plan was in force at once. Stored as
/// time, neither is; every instant reads back to the microsecond.
async fn times_compare_as_times_past_the_year_ten_thousand(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = now();
    fenrun::service::plans::ensure_default(&store, start)
        .await
        .unwrap();
    create(&store, "a", None).await;
    let far: DateTime<Utc> = "+10000-01-01T00:00:00Z".parse().unwrap();
    let ancient: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
    let due = start - Duration::seconds(1);
    let precise: DateTime<Utc> = "2026-12-03T08:15:30.123456Z".parse().unwrap();
    let mut orders = [
        held_order("far", far),
        held_order("due", due),
        held_order("ancient", ancient),
        held_order("later", start + Duration::days(1)),
        held_order("precise", precise),
    ];
    let release = fenrun::store::JobSpec {
        queue: "order.release".to_owned(),
        max_attempts: 3,
    };
    // Generation 0: no calendar year applied at run time.
    store
        .ingest_orders(&mut orders, &release, 0, start, as_prepared)
        .await
        .unwrap();
    let mut released = store.release_due(start, 100, 1, "test", 0).await.unwrap();
    released.sort();
    assert_eq!(released, ["ancient", "due", "precise"]);
    assert_eq!(store.order("far").await.unwrap().unwrap().release_at, far);
    let stored = store.order("precise").await.unwrap().unwrap();
    assert_eq!(stored.release_at, precise);
    assert_eq!(stored.release_at.timestamp_subsec_micros(), 123_456);

    let far_plan = "name = \"far\"\ndefault_grade = \"regular\"\n[grades.regular]\ndisplay_name = \"普通\"\nlevels = [\"1%\"]\n";
    let new = fenrun::store::NewPlan {
        name: "far",
        effective_from: far,
        source_toml: far_plan,
        source_sha256: "hash-far",
        file_name: "far.toml",
    };
    store.insert_plan(&new, &tester(), start).await.unwrap();
    let in_force = store.plan_in_force(start).await.unwrap().unwrap();
    assert_eq!(in_force.name, "default");
    assert_eq!(store.plan_in_force(far).await.unwrap().unwrap().name, "far");
}

/// A process whose calendar is older than the database's plans no hold and
/// releases none: ingest refuses until it reloads, and release also while
/// the new year's re-plan is pending; nothing is written either way.
async fn a_stale_calendar_plans_and_releases_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = now();
    fenrun::service::plans::ensure_default(&store, start)
        .await
        .unwrap();
    create(&store, "a", None).await;
    let release = fenrun::store::JobSpec {
        queue: "order.release".to_owned(),
        max_attempts: 3,
    };
    let mut due = held_order("due", start - Duration::seconds(1));
    store
        .ingest_orders(
            std::slice::from_mut(&mut due),
            &release,
            0,
            start,
            as_prepared,
        )
        .await
        .unwrap();
    let body = fenrun::domain::calendar::CalendarYear {
        source: "测试".to_owned(),
        holidays: vec![],
        makeup_workdays: vec![],
    };
    let applied = store
        .apply_calendar_year(
            &fenrun::store::NewCalendarYear {
                calendar: "cn",
                year: 2099,
                body: &body,
                body_sha256: "sha",
            },
            &tester(),
            &release,
            start,
        )
        .await
        .unwrap();
    let fenrun::store::YearApplication::Applied(applied) = applied else {
        panic!("a new year is applied");
    };
    let generation = store.calendar_generation().await.unwrap();
    assert_eq!(generation, applied.id);

    let mut later = held_order("later", start + Duration::days(1));
    let refused = store
        .ingest_orders(
            std::slice::from_mut(&mut later),
            &release,
            0,
            start,
            as_prepared,
        )
        .await;
    assert!(
        matches!(refused, Err(fenrun::store::StoreError::CalendarChanged { generation: g }) if g == generation),
        "{refused:?}"
    );
    assert!(store.order("later").await.unwrap().is_none());
    // Release waits for the pending re-plan even on the latest calendar.
    let refused = store.release_due(start, 100, 1, "test", generation).await;
    assert!(
        matches!(
            refused,
            Err(fenrun::store::StoreError::CalendarChanged { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.order("due").await.unwrap().unwrap().state,
        fenrun::domain::settlement::OrderState::Holding
    );

    // As stored (to the microsecond): the plan moves nothing.
    let stored_release = store.order("due").await.unwrap().unwrap().release_at;
    let counts = store
        .replan_holds(
            generation,
            start - Duration::days(30),
            |confirmed_at, _| fenrun::store::HoldPlan {
                day_starts: confirmed_at - Duration::hours(1),
                day_ends: confirmed_at + Duration::hours(1),
                release_at: stored_release,
                provisional: false,
            },
            "cn 2099 v1",
            &release,
            start,
        )
        .await
        .unwrap();
    assert_eq!((counts.moved, counts.versions), (0, 1), "{counts:?}");
    assert!(store.pending_replans().await.unwrap().is_empty());
    let released = store
        .release_due(start, 100, 1, "test", generation)
        .await
        .unwrap();
    assert_eq!(released, ["due"]);
    store
        .ingest_orders(
            std::slice::from_mut(&mut later),
            &release,
            generation,
            start,
            as_prepared,
        )
        .await
        .unwrap();
}
