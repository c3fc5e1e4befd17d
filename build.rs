//! Marks the build when `FENRUN_TEST_PG` is set, so the PostgreSQL half of
//! the test suite runs, and when `FENRUN_TEST_BROWSER` names a Chromium, so
//! the console's browser test runs; without them those tests are listed as
//! ignored with the reason, never silently passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fenrun_test_pg)");
    println!("cargo::rustc-check-cfg=cfg(fenrun_test_browser)");
    println!("cargo::rerun-if-env-changed=FENRUN_TEST_PG");
    println!("cargo::rerun-if-env-changed=FENRUN_TEST_BROWSER");
    if std::env::var_os("FENRUN_TEST_PG").is_some_and(|value| !value.is_empty()) {
        println!("cargo::rustc-cfg=fenrun_test_pg");
    }
    if std::env::var_os("FENRUN_TEST_BROWSER").is_some_and(|value| !value.is_empty()) {
        println!("cargo::rustc-cfg=fenrun_test_browser");
    }
}
