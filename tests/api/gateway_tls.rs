//! The production build is the tested build (issue 15): gateways are HTTPS.
//! The sandbox here serves HTTPS with a server certificate from a CA made in
//! the test, and fenrun reaches it as it reaches real gateways: `gateway =
//! "live"`, the `wechat_*` and `alipay_*` settings with `https://` base URLs.
//! Told to trust the CA (`gateway_ca_file`), every rail pays and each payout
//! gets its certificate; not told, the client refuses the gateway's
//! certificate, the refusal is a transient error (nothing was sent) that the
//! transfer step retries, and nothing is paid.
//!
//! The sandbox's Alipay side posts `order.changed` to fenrun's port, known
//! before fenrun starts: live Alipay requests name no `notify_url`, as the
//! address is subscribed on the open platform, which this stands for.

use std::time::{Duration, Instant};

use fenrun_integrations::sandbox::{SandboxConfig, SandboxGateway, SandboxHandle, SandboxTls};
use secrecy::SecretString;
use serde_json::{Value, json};

#[path = "../../integrations/tests/support/test_ca.rs"]
mod test_ca;

use crate::channels::{
    fen, funded_on_every_channel, live_wechat_merchant_at, sandbox_key, wait_for_certificate,
};
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, wait_for_state, withdrawal};
use test_ca::TestCa;

on_both_backends!(
    every_rail_pays_over_https_when_told_to_trust_the_gateways_ca,
    without_the_ca_the_certificate_is_refused_retried_as_transient_and_nothing_is_paid,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// Live Alipay settings (certificate mode, bank cards too) for a sandbox at
/// `base_url`, by the `alipay_*` settings and key files.
fn live_alipay_app_at(settings: &mut fenrun::config::Settings, base_url: &str) {
    settings.gateway = fenrun::config::GatewayKind::Live;
    settings.alipay_base_url = Some(base_url.to_owned());
    settings.alipay_app_id = Some(fenrun_integrations::sandbox::SANDBOX_ALIPAY_APP_ID.to_owned());
    settings.alipay_app_private_key_file = Some(sandbox_key("alipay/app_private_key.pem"));
    settings.alipay_app_cert_file = Some(sandbox_key("alipay/app_public_cert.crt"));
    settings.alipay_cert_file = Some(sandbox_key("alipay/alipay_public_cert.crt"));
    settings.alipay_root_cert_file = Some(sandbox_key("alipay/alipay_root_cert.crt"));
    settings.alipay_bank_card = true;
}

/// The sandbox over HTTPS with `ca`'s server certificate (for `127.0.0.1`),
/// posting Alipay notifications to fenrun on `fenrun_port`.
async fn https_sandbox(ca: &TestCa, fenrun_port: u16) -> SandboxHandle {
    let sandbox = SandboxGateway::start(SandboxConfig {
        alipay_notify_url: Some(format!(
            "http://127.0.0.1:{fenrun_port}/v1/gateways/alipay/notify"
        )),
        tls: Some(SandboxTls {
            cert_chain_pem: ca.server_chain_pem.clone(),
            private_key_pem: SecretString::from(ca.server_key_pem.clone()),
        }),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox over HTTPS");
    assert!(sandbox.base_url().starts_with("https://"), "{sandbox:?}");
    sandbox
}

/// fenrun on `port` with every rail live at `sandbox`, trusting the CA in
/// `ca_file` if given.
async fn app_paying_through(
    backend: Backend,
    port: u16,
    sandbox: &SandboxHandle,
    ca_file: Option<std::path::PathBuf>,
) -> TestApp {
    let base_url = sandbox.base_url().to_owned();
    spawn_app_with(backend, move |settings| {
        settings.listen = format!("127.0.0.1:{port}");
        settings.simulated_clock = true;
        live_wechat_merchant_at(settings, &base_url);
        live_alipay_app_at(settings, &base_url);
        settings.gateway_ca_file = ca_file;
    })
    .await
}

async fn every_rail_pays_over_https_when_told_to_trust_the_gateways_ca(backend: Backend) {
    let ca = TestCa::new("fenrun test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("gateway-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let port = crate::cli::free_port();
    let sandbox = https_sandbox(&ca, port).await;
    let app = app_paying_through(backend, port, &sandbox, Some(ca_file)).await;
    assert!(!app.withdrawals.gateway().unwrap().is_sandbox());

    let (token, accounts) = funded_on_every_channel(&app, "tess").await;
    for (channel, account) in accounts {
        let body = json!({"distributor_id": "tess", "amount": "300.00", "payout_account_id": account, "speed": "express"});
        let response = request(&app, &token, &format!("tls-{channel:?}"), &body).await;
        assert_eq!(response.status(), 202);
        let created: Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        let paid = wait_for_state(&app, id, "paid").await;
        let certificate = wait_for_certificate(&app, id).await;
        assert_eq!(certificate["gross"], "300.00", "{certificate}");
        let sent = sandbox.ledger().channel(channel);
        assert_eq!(
            (sent.sent_count, sent.sent_fen),
            (1, fen(&paid["net"])),
            "{channel:?} went over HTTPS to the sandbox: {sent:?}"
        );
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    sandbox.shutdown().await;
}

async fn without_the_ca_the_certificate_is_refused_retried_as_transient_and_nothing_is_paid(
    backend: Backend,
) {
    let ca = TestCa::new("fenrun test CA");
    let port = crate::cli::free_port();
    let sandbox = https_sandbox(&ca, port).await;
    let app = app_paying_through(backend, port, &sandbox, None).await;
    let (token, account) = funded_distributor(&app, "ugo", "1000.00", OPENID).await;
    advance_days(&app, 4).await;
    let body = json!({"distributor_id": "ugo", "amount": "100.00", "payout_account_id": account, "speed": "express"});
    let response = request(&app, &token, "tls-untrusted", &body).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();

    // Each attempt is refused at the handshake; a transient error, so the
    // step is attempted again (querying first, as its outcome is unknown to
    // the engine), and neither the job nor the withdrawal fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view = withdrawal(&app, id).await;
        if view["transfer_attempts"].as_u64().unwrap_or(0) >= 3 {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the transfer was never retried: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["state"], "transferring", "{view:#}");
    let failed: Value = app
        .get(
            "/v1/ops/jobs?state=failed&workflow=withdrawal&step=transfer",
            &app.ops,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["items"], json!([]), "{failed:#}");
    let sent = sandbox.ledger();
    assert!(
        sent.bills.is_empty(),
        "no request may pass the refused handshake: {sent:?}"
    );
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_gateway_ca_file_that_cannot_be_read_or_holds_no_certificate_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "# no certificate here\n").unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, TestCa::new("fenrun test CA").server_key_pem).unwrap();
    for (file, expected) in [
        (dir.path().join("missing.pem"), "reading"),
        (empty, "holds no certificate"),
        (key, "not a CERTIFICATE"),
    ] {
        let db = crate::helpers::TestDb::new(Backend::Sqlite).await;
        let settings = fenrun::config::Settings {
            database_url: SecretString::from(db.url.clone()),
            listen: "127.0.0.1:0".to_owned(),
            master_key: fenrun::vault::KeySources {
                key: Some(SecretString::from(crate::helpers::TEST_MASTER_KEY)),
                ..Default::default()
            },
            gateway_ca_file: Some(file.clone()),
            ..fenrun::config::Settings::default()
        };
        let Err(error) = fenrun::app::Application::build(settings).await else {
            panic!("{} was accepted", file.display());
        };
        let message = format!("{error:#}");
        assert!(
            message.contains("`gateway_ca_file`") && message.contains(expected),
            "{message}"
        );
    }
}

#[test]
fn the_sandbox_gateway_command_serves_https_with_the_certificate_it_is_given() {
    let ca = TestCa::new("fenrun test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &ca.server_chain_pem).unwrap();
    std::fs::write(&key, &ca.server_key_pem).unwrap();
    let (mut child, port) = crate::cli::spawn_sandbox_gateway(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/sandbox/ledger");
    let (ledger, untrusting) = runtime.block_on(async {
        let trusting = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let ledger = crate::cli::ledger_once_up(&trusting, &url).await;
        (ledger, reqwest::get(&url).await)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ledger["bills"], json!([]));
    let error = untrusting.expect_err("a client that does not trust the test CA is refused");
    assert!(error.is_connect(), "{error:?}");
    // Only one of the two flags is refused by the command line itself.
    let half = std::process::Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["sandbox-gateway", "--port", "0", "--tls-cert"])
        .arg(&cert)
        .env_remove("FENRUN_CONFIG")
        .output()
        .unwrap();
    assert!(!half.status.success());
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );
}
