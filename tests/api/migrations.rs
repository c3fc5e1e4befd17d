//! The two migration trees must stay in step: same versions, same names.

use std::collections::BTreeSet;
use std::path::Path;

fn migration_names(backend: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

#[test]
fn sqlite_and_postgres_migrations_have_the_same_versions_and_names() {
    let sqlite = migration_names("sqlite");
    let postgres = migration_names("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres differ"
    );
    for name in &sqlite {
        let (version, rest) = name.split_once('_').expect("VERSION_name.sql");
        assert!(
            version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        assert!(
            rest.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
            "{name}"
        );
    }
}

/// SQLite's text times become integer microseconds (20261203000012): a
/// database written before it, with every shape of time sqlx wrote, reads
/// back the same instants after it, and the append-only journal, its
/// triggers and the indexes survive the conversion.
#[tokio::test]
async fn sqlite_text_times_are_converted_to_microseconds_in_place() {
    use sqlx::{Connection, Row};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let conversion = files
        .iter()
        .position(|path| path.to_string_lossy().contains("20261203000012_"))
        .expect("the time conversion migration");
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    for file in &files[..conversion] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(std::fs::read_to_string(file).unwrap()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // As sqlx wrote them: 0, 3, 6 or 9 fraction digits, always +00:00.
    sqlx::raw_sql(
        "insert into distributors (id, name, grade, status, request_sha256, created_at) values \
           ('a', 'a', 'regular', 'active', 'h', '2026-11-22T10:00:00+00:00'), \
           ('b', 'b', 'regular', 'active', 'h', '2026-11-22T10:00:00.5+00:00'), \
           ('c', 'c', 'regular', 'active', 'h', '2026-11-22T10:00:00.123456+00:00'), \
           ('d', 'd', 'regular', 'active', 'h', '2026-11-22T10:00:00.123456789+00:00'); \
         insert into ledger_transfers (idempotency_key, kind, body_sha256, created_at) values \
           ('k', 'adjustment', 'h', '2026-11-22T10:00:00.250+00:00');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        std::fs::read_to_string(&files[conversion]).unwrap(),
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let base = 1_795_341_600_000_000_i64; // 2026-11-22T10:00:00Z in µs
    let rows = sqlx::query(
        "select id, created_at, typeof(created_at) as kind from distributors order by id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let got: Vec<(String, i64, String)> = rows
        .iter()
        .map(|row| (row.get("id"), row.get("created_at"), row.get("kind")))
        .collect();
    let integer = || "integer".to_owned();
    assert_eq!(
        got,
        [
            ("a".to_owned(), base, integer()),
            ("b".to_owned(), base + 500_000, integer()),
            ("c".to_owned(), base + 123_456, integer()),
            ("d".to_owned(), base + 123_456, integer()),
        ]
    );
    let platform: i64 = sqlx::query_scalar(
        "select created_at from ledger_accounts where id = 'platform:tax_payable'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(platform, 0, "'1970-01-01T00:00:00Z' is the epoch");
    let transfer: i64 =
        sqlx::query_scalar("select created_at from ledger_transfers where idempotency_key = 'k'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(transfer, base + 250_000);
    // The journal is append-only again, and the due index is back.
    assert!(
        sqlx::query("update ledger_transfers set kind = 'x'")
            .execute(&mut conn)
            .await
            .is_err()
    );
    let indexes: Vec<String> = sqlx::query_scalar("select name from sqlite_master where type = 'index' and name in ('orders_due', 'withdrawals_open', 'commission_plans_effective', 'payout_accounts_distributor', 'withdrawals_distributor_requested') order by name")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexes.len(), 5, "{indexes:?}");
}
