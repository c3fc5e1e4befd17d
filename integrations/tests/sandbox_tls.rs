//! The gateway clients over HTTPS, against the sandbox serving TLS with a
//! certificate from a CA made in the test: told to trust that CA
//! (`extra_roots`), both dialects pay and their statements download over
//! HTTPS (the download URLs the sandbox hands out are `https://`); not told,
//! the client refuses the certificate before a byte of the request leaves,
//! so the error is transient and the sandbox has no bill.

#![cfg(feature = "tls")]

#[path = "support/test_ca.rs"]
mod test_ca;

use chrono::Utc;
use fenrun_integrations::alipay::{AlipayClient, AlipayProduct};
use fenrun_integrations::sandbox::{
    AlipayKeyMode, ConfirmMode, Faults, SandboxConfig, SandboxGateway, SandboxHandle, SandboxTls,
};
use fenrun_integrations::tls::ExtraRoots;
use fenrun_integrations::wechat::WechatPayClient;
use fenrun_integrations::{
    AmountFen, GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus,
};
use secrecy::SecretString;
use test_ca::TestCa;

/// Notifications go nowhere: these tests read answers and statements.
const DEAD_NOTIFY_URL: &str = "http://127.0.0.1:9/notify";

/// A sandbox serving HTTPS with `ca`'s server identity; WeChat payees
/// confirm only when told, so the test decides when a bill is paid.
async fn https_sandbox(ca: &TestCa) -> SandboxHandle {
    SandboxGateway::start(SandboxConfig {
        faults: Faults {
            confirm: ConfirmMode::Hold,
            ..Faults::default()
        },
        tls: Some(SandboxTls {
            cert_chain_pem: ca.server_chain_pem.clone(),
            private_key_pem: SecretString::from(ca.server_key_pem.clone()),
        }),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox over HTTPS")
}

fn payout(withdrawal: &str, fen: i64, payee: &str) -> PayoutRequest {
    PayoutRequest {
        out_bill_no: OutBillNo::for_withdrawal(withdrawal).unwrap(),
        amount: AmountFen(fen),
        remark: "佣金提现".to_owned(),
        payee_account: SecretString::from(payee),
        payee_name: Some(SecretString::from("张三")),
        bank_account: None,
    }
}

fn china_today(sandbox: &SandboxHandle) -> chrono::NaiveDate {
    (Utc::now() + sandbox.clock_offset())
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive()
}

#[tokio::test]
async fn clients_trusting_the_test_ca_pay_and_download_statements_over_https() {
    let ca = TestCa::new("fenrun test CA");
    let sandbox = https_sandbox(&ca).await;
    assert!(sandbox.base_url().starts_with("https://127.0.0.1:"));
    let roots = ExtraRoots::from_pem(&ca.ca_pem).unwrap();

    let mut wechat = sandbox.client_config(DEAD_NOTIFY_URL).unwrap();
    wechat.extra_roots = roots.clone();
    let wechat = WechatPayClient::new(wechat).unwrap();
    let request = payout("wdtls0001", 12_00, "o-test-openid-tls");
    wechat.transfer(&request).await.unwrap();
    assert_eq!(
        sandbox.confirm(request.out_bill_no.as_str()),
        Some(fenrun_integrations::wechat::BillState::Success)
    );
    assert_eq!(
        wechat.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::Succeeded)
    );

    let mut alipay = sandbox
        .alipay_client_config(
            AlipayProduct::AlipayAccount,
            AlipayKeyMode::Certificate,
            DEAD_NOTIFY_URL,
        )
        .unwrap();
    alipay.extra_roots = roots;
    let alipay = AlipayClient::new(alipay).unwrap();
    let status = alipay
        .transfer(&payout("wdtls0002", 34_00, "payee@example.com"))
        .await
        .unwrap();
    assert_eq!(status, TransferStatus::Succeeded);

    // The statements come through download URLs the sandbox hands out: they
    // must be https, on the host the client trusts.
    let today = china_today(&sandbox);
    let fund_flow = wechat.fund_flow_bill(today).await.unwrap();
    assert_eq!(fund_flow.lines.len(), 1, "{fund_flow:?}");
    assert_eq!(fund_flow.lines[0].out_bill_no, "wdtls0001");
    let account_log = alipay.account_log_bill(today).await.unwrap();
    assert_eq!(account_log.lines.len(), 1, "{account_log:?}");
    assert_eq!(account_log.lines[0].out_bill_no, "wdtls0002");

    let ledger = sandbox.ledger();
    assert_eq!(
        (ledger.paid_count, ledger.total_paid_fen),
        (2, 46_00),
        "{ledger:?}"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_client_not_told_to_trust_the_ca_refuses_the_certificate_and_sends_nothing() {
    let ca = TestCa::new("fenrun test CA");
    let sandbox = https_sandbox(&ca).await;
    // Trusting another CA is no better than trusting none.
    let stranger = TestCa::new("some other CA");
    for roots in [
        ExtraRoots::default(),
        ExtraRoots::from_pem(&stranger.ca_pem).unwrap(),
    ] {
        let mut config = sandbox.client_config(DEAD_NOTIFY_URL).unwrap();
        config.extra_roots = roots.clone();
        let wechat = WechatPayClient::new(config).unwrap();
        let error = wechat
            .transfer(&payout("wdtls0003", 1_00, "o-test-openid-tls"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, GatewayError::Transient(_)),
            "a refused certificate means nothing was sent: {error:?}"
        );

        let mut config = sandbox
            .alipay_client_config(
                AlipayProduct::BankCard,
                AlipayKeyMode::PublicKey,
                DEAD_NOTIFY_URL,
            )
            .unwrap();
        config.extra_roots = roots;
        let alipay = AlipayClient::new(config).unwrap();
        let error = alipay
            .transfer(&payout("wdtls0004", 1_00, "6222020000000000001"))
            .await
            .unwrap_err();
        assert!(matches!(error, GatewayError::Transient(_)), "{error:?}");
    }
    let ledger = sandbox.ledger();
    assert!(ledger.bills.is_empty(), "{ledger:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_bad_tls_identity_fails_the_sandbox_start() {
    let ca = TestCa::new("fenrun test CA");
    let other = TestCa::new("some other CA");
    for (chain, key, field) in [
        (
            String::new(),
            ca.server_key_pem.clone(),
            "tls.cert_chain_pem",
        ),
        (
            ca.server_chain_pem.clone(),
            String::new(),
            "tls.private_key_pem",
        ),
        // A key that is not the certificate's.
        (
            ca.server_chain_pem.clone(),
            other.server_key_pem.clone(),
            "tls.private_key_pem",
        ),
    ] {
        let error = SandboxGateway::start(SandboxConfig {
            tls: Some(SandboxTls {
                cert_chain_pem: chain,
                private_key_pem: SecretString::from(key),
            }),
            ..SandboxConfig::default()
        })
        .await
        .unwrap_err();
        assert!(error.to_string().contains(field), "{field}: {error}");
    }
}
