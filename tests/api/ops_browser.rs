//! The `/ops` console in a real browser: headless Chromium, driven through
//! chromedriver, signs in with the ops token, reads the queue counts, retries
//! a payout whose transfer job failed and approves a withdrawal from the
//! review queue, and both withdrawals are paid; the page reloads itself, but
//! not while a rejection reason is being written. Screenshots are kept as test
//! artifacts. Runs when `FENRUN_TEST_BROWSER` names a Chromium binary (CI
//! installs Debian's `chromium` and `chromium-driver`); otherwise it is
//! listed as ignored with the reason.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::withdrawals::{advance_days, funded_distributor, request, sandbox, wait_for_state};

/// The flags the issue and this machine's closed network call for; the
/// window is the console's target size.
const CHROMIUM_FLAGS: [&str; 6] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--window-size=1280,800",
];

/// Where screenshots go: `FENRUN_TEST_ARTIFACTS`, else `target/tmp/artifacts`.
pub(crate) fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("FENRUN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    dir
}

/// A chromedriver on a free loopback port, killed with the test.
pub(crate) struct Chromedriver {
    process: Child,
    url: String,
}

impl Chromedriver {
    pub(crate) fn start(log: &Path) -> Chromedriver {
        let binary = std::env::var("FENRUN_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let process = Command::new(&binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("FENRUN_TEST_BROWSER is set but {binary} does not start ({error}); install Debian's chromium-driver or set FENRUN_CHROMEDRIVER")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Chromedriver {
            process,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub(crate) async fn open_browser(driver: &Chromedriver, profile: &Path) -> Client {
    let chromium = std::env::var("FENRUN_TEST_BROWSER").expect("FENRUN_TEST_BROWSER");
    let mut args: Vec<String> = CHROMIUM_FLAGS
        .iter()
        .map(|flag| (*flag).to_owned())
        .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|error| panic!("chromium ({chromium}) did not start: {error}"))
}

/// The shipped workflows with one change: a transfer gets a single attempt,
/// so a gateway that keeps failing leaves a failed job at once instead of
/// after a minute of backoff.
fn workflows_with_one_transfer_attempt(into: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let target = into.join("workflows");
    copy_tree(&source, &target);
    let file = target.join("withdrawal.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replace(
        "retry = { max_attempts = 8, backoff_base_ms = 500,",
        "retry = { max_attempts = 1, backoff_base_ms = 500,",
    );
    assert_ne!(text, changed, "the transfer step's retry line moved");
    std::fs::write(&file, changed).unwrap();
    target
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The seeded console: erin's payout whose only transfer attempt met a
/// gateway answering 429 (a failed job), and dora's 2,500.00 waiting for
/// review. Returns (erin's withdrawal, the failed job, dora's withdrawal).
async fn seed(app: &TestApp) -> (String, String, String) {
    let (erin, erin_account) =
        funded_distributor(app, "erin", "800.00", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").await;
    advance_days(app, 4).await;
    sandbox(app).set_faults(fenrun_integrations::sandbox::Faults {
        transient_rate: 1.0,
        ..Default::default()
    });
    let created: Value = request(
        app,
        &erin,
        "erin-1",
        &json!({"distributor_id": "erin", "amount": "500.00", "payout_account_id": erin_account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let erin_withdrawal = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed_job = loop {
        let jobs: Value = app
            .get("/v1/ops/jobs?state=failed", &app.ops)
            .await
            .json()
            .await
            .unwrap();
        if let Some(job) = jobs["items"].as_array().unwrap().first() {
            assert_eq!(job["step"], "transfer", "{jobs:#}");
            break job["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the transfer never failed: {jobs:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    sandbox(app).set_faults(Default::default());

    let (dora, dora_account) =
        funded_distributor(app, "dora", "3000.00", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").await;
    let created: Value = request(
        app,
        &dora,
        "dora-1",
        &json!({"distributor_id": "dora", "amount": "2500.00", "payout_account_id": dora_account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "reviewing", "{created:#}");
    (
        erin_withdrawal,
        failed_job,
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// The text of the queue table's cell for `queue` and `state`.
async fn queue_count(browser: &Client, queue: &str, state: &str) -> String {
    browser
        .find(Locator::XPath(&format!(
            "//table[@id='queues']//tr[td/code='{queue}']/td[@data-state='{state}']"
        )))
        .await
        .unwrap_or_else(|error| panic!("no {state} count for {queue}: {error}"))
        .text()
        .await
        .unwrap()
}

/// Clicks the button of the form posting to `action`, then waits for the
/// console to load again.
async fn press(browser: &Client, action: &str) {
    browser
        .find(Locator::Css(&format!("form[action='{action}'] button")))
        .await
        .unwrap_or_else(|error| panic!("no button posting to {action}: {error}"))
        .click()
        .await
        .unwrap();
    wait_for_console(browser).await;
}

async fn wait_for_console(browser: &Client) {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("table#queues"))
        .await
        .expect("the console");
}

pub(crate) async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fenrun_test_browser),
    ignore = "browser test skipped: set FENRUN_TEST_BROWSER=/usr/bin/chromium (Debian packages chromium and chromium-driver)"
)]
async fn ops_sign_in_retry_a_failed_payout_and_approve_a_review_in_chromium() {
    let folder = tempfile::tempdir().unwrap();
    let workflows = workflows_with_one_transfer_attempt(folder.path());
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.simulated_clock = true;
        settings.workflows_dir = workflows;
    })
    .await;
    let (erin_withdrawal, failed_job, dora_withdrawal) = seed(&app).await;

    let driver = Chromedriver::start(&artifacts_dir().join("chromedriver.log"));
    let browser = open_browser(&driver, &folder.path().join("profile")).await;
    let drive = drive(
        &app,
        &browser,
        &erin_withdrawal,
        &failed_job,
        &dora_withdrawal,
    );
    drive_then_close(&browser, "ops-console-failure.png", drive).await;
}

/// Runs `drive` in `browser`, then closes it; a failure leaves a screenshot
/// named `failure_png` before it is passed on.
pub(crate) async fn drive_then_close(
    browser: &Client,
    failure_png: &str,
    drive: impl std::future::Future<Output = ()>,
) {
    let outcome = std::panic::AssertUnwindSafe(drive).catch_unwind().await;
    if outcome.is_err() {
        let _ = browser
            .screenshot()
            .await
            .map(|png| std::fs::write(artifacts_dir().join(failure_png), png));
    }
    let _ = browser.clone().close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn drive(
    app: &TestApp,
    browser: &Client,
    erin_withdrawal: &str,
    failed_job: &str,
    dora_withdrawal: &str,
) {
    // Signed out, the console sends the browser to log in, and back after.
    browser.goto(&app.url("/ops")).await.unwrap();
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/login", "{url}");
    browser
        .find(Locator::Css("input#token"))
        .await
        .unwrap()
        .send_keys(&app.ops)
        .await
        .unwrap();
    browser
        .find(Locator::Css("form[action='/login'] button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_console(browser).await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/ops");

    // The counts: one failed transfer, nothing waiting.
    assert_eq!(
        queue_count(browser, "withdrawal.transfer", "failed").await,
        "1"
    );
    assert_eq!(
        queue_count(browser, "withdrawal.transfer", "waiting").await,
        "0"
    );
    let failed_row = browser
        .find(Locator::XPath(&format!(
            "//table[contains(@class,'jobs')]//tr[td/code='{failed_job}']"
        )))
        .await
        .expect("the failed job's row")
        .text()
        .await
        .unwrap();
    assert!(failed_row.contains("withdrawal / transfer"), "{failed_row}");
    assert!(
        failed_row.contains(&format!("/v1/withdrawals/{erin_withdrawal}")),
        "{failed_row}"
    );
    assert!(failed_row.contains("1 / 1"), "{failed_row}");
    assert!(failed_row.contains("429 FREQUENCY_LIMITED"), "{failed_row}");
    let review_row = browser
        .find(Locator::XPath(&format!(
            "//table[@id='reviews']//tr[td/a/code='{dora_withdrawal}']"
        )))
        .await
        .expect("the review queue's row")
        .text()
        .await
        .unwrap();
    for expected in [
        "dora",
        "2500.00",
        "over_auto_approve_limit",
        "new_distributor",
    ] {
        assert!(
            review_row.contains(expected),
            "{expected} missing: {review_row}"
        );
    }
    screenshot(browser, "ops-console.png").await;
    // The whole page too, review queue included, then back to 1280×800.
    browser.set_window_size(1280, 1400).await.unwrap();
    screenshot(browser, "ops-console-full.png").await;
    browser.set_window_size(1280, 800).await.unwrap();

    // The console reloads itself (a mark left on the page disappears)...
    browser
        .execute("window.fenrunMark = 1;", vec![])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser
        .execute("return window.fenrunMark === 1;", vec![])
        .await
        .map_or(true, |still| still == json!(true))
    {
        assert!(
            Instant::now() < deadline,
            "the console never reloaded itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_console(browser).await;
    // ...but not while ops write a rejection reason, which would be lost.
    let reason = browser
        .find(Locator::Css(&format!(
            "form[action='/ops/withdrawals/{dora_withdrawal}/reject'] input[name='reason']"
        )))
        .await
        .expect("the reason field");
    reason.send_keys("calling the distributor").await.unwrap();
    browser
        .execute("window.fenrunMark = 2;", vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        browser
            .execute("return window.fenrunMark;", vec![])
            .await
            .unwrap(),
        json!(2),
        "the console reloaded while a reason was being written"
    );
    assert_eq!(
        reason.prop("value").await.unwrap().as_deref(),
        Some("calling the distributor")
    );
    reason.clear().await.unwrap();
    browser
        .execute("document.activeElement.blur();", vec![])
        .await
        .unwrap();

    // Retry the failed transfer: the gateway answers now and erin is paid.
    press(browser, &format!("/ops/jobs/{failed_job}/retry")).await;
    wait_for_state(app, erin_withdrawal, "paid").await;
    // Approve dora's withdrawal: it goes on to be paid.
    press(
        browser,
        &format!("/ops/withdrawals/{dora_withdrawal}/approve"),
    )
    .await;
    wait_for_state(app, dora_withdrawal, "paid").await;

    browser.refresh().await.unwrap();
    wait_for_console(browser).await;
    let body = browser
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("No failed jobs."), "{body}");
    assert!(body.contains("No withdrawal waits for review."), "{body}");
    assert_eq!(
        queue_count(browser, "withdrawal.transfer", "failed").await,
        "0"
    );
    screenshot(browser, "ops-console-after.png").await;

    // Both presses are in the audit log, under the ops token.
    for (target, action) in [
        (format!("job:{failed_job}"), "job.retry"),
        (
            format!("withdrawal:{dora_withdrawal}"),
            "withdrawal.approve",
        ),
    ] {
        let audit: Value = app
            .get(&format!("/v1/audit?target={target}"), &app.admin)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(audit["items"][0]["action"], action, "{audit:#}");
        assert_eq!(audit["items"][0]["actor_role"], "ops", "{audit:#}");
    }
}
