//! Daily statements end to end: the WeChat client downloads the fund-flow
//! bill the sandbox builds from its ledger (signed answer, signed download,
//! SHA1 checked), each statement mismatch knob shows up in what is parsed,
//! and the Alipay client fetches an account log from a small fake
//! `gateway.do` that signs its answers with the test Alipay key.

// Amounts are written yuan_fen: `123_45` is 123.45 yuan.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{NaiveDate, Utc};
use fenrun_integrations::alipay::{AlipayClient, AlipayConfig, AlipayKeys, AlipayProduct};
use fenrun_integrations::sandbox::{
    ConfirmMode, Faults, SandboxConfig, SandboxGateway, SandboxHandle, StatementFaults,
};
use fenrun_integrations::statement::{
    StatementError, StatementLine, StatementLineKind, StatementSource, StatementSummary,
    alipay_signcustomer,
};
use fenrun_integrations::wechat::WechatPayClient;
use fenrun_integrations::{AmountFen, OutBillNo, PayoutGateway, PayoutRequest};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use secrecy::SecretString;

const OPENID: &str = "o-test-openid-0001";

/// The sandbox stamps payouts with the wall clock: today's China date.
fn china_today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive()
}

/// A sandbox whose payees confirm only when told.
async fn sandbox() -> (SandboxHandle, WechatPayClient) {
    let sandbox = SandboxGateway::start(SandboxConfig {
        faults: Faults {
            confirm: ConfirmMode::Hold,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let client =
        WechatPayClient::new(sandbox.client_config("http://127.0.0.1:9/notify").unwrap()).unwrap();
    (sandbox, client)
}

/// Sends and, when `confirm`, pays one transfer.
async fn pay(
    sandbox: &SandboxHandle,
    client: &WechatPayClient,
    withdrawal: &str,
    fen: i64,
    confirm: bool,
) {
    let request = PayoutRequest {
        out_bill_no: OutBillNo::for_withdrawal(withdrawal).unwrap(),
        amount: AmountFen(fen),
        remark: "佣金提现".to_owned(),
        payee_account: SecretString::from(OPENID),
        payee_name: None,
    };
    client.transfer(&request).await.unwrap();
    if confirm {
        sandbox.confirm(request.out_bill_no.as_str()).unwrap();
    }
}

fn summarised(lines: &[StatementLine]) -> Vec<(&str, StatementLineKind, i64)> {
    lines
        .iter()
        .map(|line| (line.out_bill_no.as_str(), line.kind.clone(), line.amount.0))
        .collect()
}

#[tokio::test]
async fn the_fund_flow_bill_lists_each_paid_transfer_once_with_its_hash_checked() {
    let (sandbox, client) = sandbox().await;
    pay(&sandbox, &client, "wd0001", 12_30, true).await;
    pay(&sandbox, &client, "wd0002", 10, true).await;
    pay(&sandbox, &client, "wd0003", 5_00, false).await;

    let statement = client.fund_flow_bill(china_today()).await.unwrap();
    assert_eq!(statement.source, StatementSource::Wechat);
    let mut lines = summarised(&statement.lines);
    lines.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        lines,
        vec![
            ("wd0001", StatementLineKind::Payout, 12_30),
            ("wd0002", StatementLineKind::Payout, 10),
        ],
        "paid bills only, each once"
    );
    let ledger = sandbox.ledger();
    for line in &statement.lines {
        let bill = ledger
            .bills
            .iter()
            .find(|bill| bill.out_bill_no == line.out_bill_no)
            .unwrap();
        assert_eq!(line.gateway_ref, bill.transfer_bill_no);
        assert!(bill.paid_at.is_some());
    }
    assert_eq!(
        statement.summary,
        StatementSummary {
            line_count: 2,
            income_count: 0,
            income: AmountFen(0),
            expense_count: 2,
            expense: AmountFen(12_40),
        }
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn each_statement_knob_shows_up_in_the_parsed_statement() {
    let (sandbox, client) = sandbox().await;
    for (withdrawal, fen) in [
        ("wd0001", 1_00),
        ("wd0002", 2_00),
        ("wd0003", 3_00),
        ("wd0004", 4_00),
    ] {
        pay(&sandbox, &client, withdrawal, fen, true).await;
    }
    sandbox
        .set_statement_faults(StatementFaults {
            drop_lines: 1,
            wrong_amount_lines: 1,
            flip_state_lines: 1,
            extra_lines: 2,
        })
        .unwrap();
    let statement = client.fund_flow_bill(china_today()).await.unwrap();
    let mut lines = summarised(&statement.lines);
    lines.sort_by(|a, b| (a.0, a.1.is_income()).cmp(&(b.0, b.1.is_income())));
    assert_eq!(
        lines,
        vec![
            // wd0001 dropped; wd0002 1.00 yuan more; wd0003 also returned.
            ("sbxextra0001", StatementLineKind::Payout, 1_00),
            ("sbxextra0002", StatementLineKind::Payout, 1_00),
            ("wd0002", StatementLineKind::Payout, 3_00),
            ("wd0003", StatementLineKind::Payout, 3_00),
            ("wd0003", StatementLineKind::Return, 3_00),
            ("wd0004", StatementLineKind::Payout, 4_00),
        ]
    );
    assert_eq!(statement.summary, StatementSummary::of(&statement.lines));

    // The knobs are settable over HTTP too, and cleared the same way.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/sandbox/statements/faults", sandbox.base_url()))
        .body(r#"{"drop_lines": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(sandbox.statement_faults(), StatementFaults::default());
    let refused = http
        .post(format!("{}/sandbox/statements/faults", sandbox.base_url()))
        .body(r#"{"drop_lines": 1000000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        client
            .fund_flow_bill(china_today())
            .await
            .unwrap()
            .lines
            .len(),
        4
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_day_not_yet_billed_is_not_ready_and_the_download_needs_a_signature() {
    let (sandbox, client) = sandbox().await;
    let tomorrow = china_today().succ_opt().unwrap();
    assert_eq!(
        client.fund_flow_bill(tomorrow).await.unwrap_err(),
        StatementError::NotReady
    );

    let unsigned = reqwest::get(format!(
        "{}/v3/bill/fundflowbill?bill_date={}&account_type=OPERATION&tar_type=GZIP",
        sandbox.base_url(),
        china_today()
    ))
    .await
    .unwrap();
    assert_eq!(unsigned.status(), 401);
    sandbox.shutdown().await;
}

// ---- Alipay, against a fake gateway.do ----

const APP_ID: &str = "2021000000000001";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox-keys/alipay/");
const METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
}

#[derive(Clone)]
struct FakeAlipay {
    base_url: String,
    alipay_key: Arc<RsaKeyPair>,
    app_public: Arc<rsa::RsaPublicKey>,
    /// The archive the download serves.
    zip: Arc<Vec<u8>>,
}

impl FakeAlipay {
    fn sign(&self, content: &str) -> String {
        let mut signature = vec![0u8; self.alipay_key.public().modulus_len()];
        self.alipay_key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                content.as_bytes(),
                &mut signature,
            )
            .unwrap();
        BASE64.encode(signature)
    }

    /// RSA2 over the sorted `k=v&…` of every parameter but `sign`.
    fn request_verifies(&self, params: &BTreeMap<String, String>) -> bool {
        let Some(signature) = params.get("sign").and_then(|sign| BASE64.decode(sign).ok()) else {
            return false;
        };
        let content = params
            .iter()
            .filter(|(key, value)| !value.is_empty() && key.as_str() != "sign")
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&");
        ring::signature::RsaPublicKeyComponents {
            n: self.app_public.n().to_bytes_be(),
            e: self.app_public.e().to_bytes_be(),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, content.as_bytes(), &signature)
        .is_ok()
    }
}

async fn gateway(State(fake): State<FakeAlipay>, RawQuery(query): RawQuery, body: Bytes) -> String {
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .chain(form_urlencoded::parse(&body))
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
    assert!(
        fake.request_verifies(&params),
        "the request is signed with the app key"
    );
    assert_eq!(params["method"], METHOD);
    let biz: serde_json::Value = serde_json::from_str(&params["biz_content"]).unwrap();
    assert_eq!(biz["bill_type"], "signcustomer");
    let bill_date =
        NaiveDate::parse_from_str(biz["bill_date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let node = if bill_date > china_today() {
        r#"{"code":"40004","msg":"Business Failed","sub_code":"isp.bill_not_exist","sub_msg":"账单不存在"}"#
            .to_owned()
    } else {
        // Written by hand with an escaped slash, as Alipay escapes them.
        format!(
            r#"{{"code":"10000","msg":"Success","bill_download_url":"{}\/download?token=t0k3n"}}"#,
            fake.base_url.replace('/', "\\/")
        )
    };
    let sign = fake.sign(&node);
    format!(
        r#"{{"alipay_data_dataservice_bill_downloadurl_query_response":{node},"sign":"{sign}"}}"#
    )
}

async fn download(State(fake): State<FakeAlipay>, RawQuery(query): RawQuery) -> Vec<u8> {
    assert_eq!(query.as_deref(), Some("token=t0k3n"));
    fake.zip.as_ref().clone()
}

async fn fake_alipay(zip: Vec<u8>) -> AlipayClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let alipay_pem = pem::parse(key_file("alipay_private_key.pem")).unwrap();
    let fake = FakeAlipay {
        base_url: base_url.clone(),
        alipay_key: Arc::new(RsaKeyPair::from_pkcs8(alipay_pem.contents()).unwrap()),
        app_public: Arc::new(
            rsa::RsaPublicKey::from_public_key_pem(&key_file("app_public_key.pem")).unwrap(),
        ),
        zip: Arc::new(zip),
    };
    let app = axum::Router::new()
        .route("/gateway.do", post(gateway))
        .route("/download", get(download))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = AlipayConfig::new(
        base_url,
        APP_ID.to_owned(),
        AlipayProduct::BankCard,
        SecretString::from(key_file("app_private_key.pem")),
        AlipayKeys::PublicKey {
            alipay_public_key: key_file("alipay_public_key.pem"),
        },
    )
    .unwrap();
    AlipayClient::new(config).unwrap()
}

fn alipay_line(
    out_bill_no: &str,
    kind: StatementLineKind,
    fen: i64,
    business_type: &str,
) -> StatementLine {
    StatementLine {
        out_bill_no: out_bill_no.to_owned(),
        gateway_ref: format!("20240501110070001{out_bill_no}"),
        kind,
        amount: AmountFen(fen),
        occurred_at: china_today().and_hms_opt(9, 30, 0).unwrap(),
        business_type: business_type.to_owned(),
    }
}

#[tokio::test]
async fn the_alipay_client_fetches_and_reads_the_account_log() {
    let lines = vec![
        alipay_line(
            "wd0001",
            StatementLineKind::Payout,
            1234_50,
            alipay_signcustomer::PAYOUT_BUSINESS_TYPE,
        ),
        alipay_line(
            "wd0001",
            StatementLineKind::Fee,
            2_00,
            alipay_signcustomer::FEE_BUSINESS_TYPE,
        ),
        alipay_line(
            "wd0001",
            StatementLineKind::Return,
            1234_50,
            alipay_signcustomer::RETURN_BUSINESS_TYPE,
        ),
    ];
    let zip = alipay_signcustomer::render(
        "2088000000000001",
        china_today(),
        &lines,
        &StatementSummary::of(&lines),
    );
    let client = fake_alipay(zip).await;

    let statement = client.account_log_bill(china_today()).await.unwrap();
    assert_eq!(statement.source, StatementSource::Alipay);
    assert_eq!(statement.lines, lines);

    let tomorrow = china_today().succ_opt().unwrap();
    assert_eq!(
        client.account_log_bill(tomorrow).await.unwrap_err(),
        StatementError::NotReady
    );
}

#[tokio::test]
async fn an_alipay_archive_whose_summary_disagrees_is_corrupt() {
    let lines = vec![alipay_line("wd0001", StatementLineKind::Payout, 10, "转账")];
    let mut summary = StatementSummary::of(&lines);
    summary.expense = AmountFen(11);
    let client = fake_alipay(alipay_signcustomer::render(
        "2088000000000001",
        china_today(),
        &lines,
        &summary,
    ))
    .await;
    let error = client.account_log_bill(china_today()).await.unwrap_err();
    assert!(
        matches!(&error, StatementError::Corrupt(why) if why.contains("summary states")),
        "{error}"
    );
}
