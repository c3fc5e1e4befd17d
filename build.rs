//! Marks the build when `FENRUN_TEST_PG` is set, so the PostgreSQL half of
//! the test suite runs; without it those tests are listed as ignored with the
//! reason, never silently passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fenrun_test_pg)");
    println!("cargo::rerun-if-env-changed=FENRUN_TEST_PG");
    if std::env::var_os("FENRUN_TEST_PG").is_some_and(|value| !value.is_empty()) {
        println!("cargo::rustc-cfg=fenrun_test_pg");
    }
}
