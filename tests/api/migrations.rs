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
