//! Daily statements end to end, against the sandbox over loopback: the
//! WeChat client downloads the fund-flow bill (signed answer, signed
//! download, SHA1 checked) and the Alipay client the account log
//! (`gateway.do` bill URL query, plain `csv.zip` download), both built from
//! the sandbox's ledger: WeChat bills in the one, Alipay-account and
//! bank-card bills (payouts, fees, bounces) in the other. Each statement
//! mismatch knob shows up in what is parsed, and the sandbox clock decides
//! which day a payout is on. A small fake `gateway.do` remains for what the
//! sandbox never serves: an archive whose summary disagrees with its lines.

// Amounts are written yuan_fen: `123_45` is 123.45 yuan.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{NaiveDate, TimeDelta, Utc};
use fenrun_integrations::alipay::{
    AlipayClient, AlipayConfig, AlipayKeys, AlipayProduct, FundOrderStatus,
};
use fenrun_integrations::sandbox::{
    AlipayKeyMode, ConfirmMode, Faults, SandboxConfig, SandboxGateway, SandboxHandle,
    StatementFaults,
};
use fenrun_integrations::statement::{
    Statement, StatementError, StatementLine, StatementLineKind, StatementSource, StatementSummary,
    alipay_signcustomer, wechat_fundflow,
};
use fenrun_integrations::wechat::WechatPayClient;
use fenrun_integrations::{AmountFen, Channel, OutBillNo, PayoutGateway, PayoutRequest};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use secrecy::SecretString;

const OPENID: &str = "o-test-openid-0001";
const ALIPAY_ACCOUNT: &str = "payee@example.com";
const CARD: &str = "6222020000000000001";
const NAME: &str = "张三";

/// Notifications go nowhere: these tests read statements, not callbacks.
const DEAD_NOTIFY_URL: &str = "http://127.0.0.1:9/notify";

/// How long a test waits for a bank card to settle.
const WAIT: Duration = Duration::from_secs(10);

fn china(at: chrono::DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive()
}

/// Today's China date by the wall clock.
fn china_today() -> NaiveDate {
    china(Utc::now())
}

/// Today's China date by the sandbox's clock, which stamps the payouts.
fn sandbox_today(sandbox: &SandboxHandle) -> NaiveDate {
    china(Utc::now() + sandbox.clock_offset())
}

/// A sandbox whose WeChat payees confirm only when told, its bank cards
/// settling quickly with `bank_fee_fen` each, and a client per rail: WeChat,
/// Alipay account (public-key mode), bank card (certificate mode).
struct Rails {
    sandbox: SandboxHandle,
    wechat: WechatPayClient,
    account: AlipayClient,
    bank: AlipayClient,
}

async fn rails(bank_fee_fen: i64) -> Rails {
    let sandbox = SandboxGateway::start(SandboxConfig {
        faults: Faults {
            confirm: ConfirmMode::Hold,
            bank_settle_ms: 20,
            bank_order_fee_fen: bank_fee_fen,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let wechat = WechatPayClient::new(sandbox.client_config(DEAD_NOTIFY_URL).unwrap()).unwrap();
    let alipay = |product, mode| {
        AlipayClient::new(
            sandbox
                .alipay_client_config(product, mode, DEAD_NOTIFY_URL)
                .unwrap(),
        )
        .unwrap()
    };
    Rails {
        account: alipay(AlipayProduct::AlipayAccount, AlipayKeyMode::PublicKey),
        bank: alipay(AlipayProduct::BankCard, AlipayKeyMode::Certificate),
        wechat,
        sandbox,
    }
}

fn payout(withdrawal: &str, fen: i64, payee: &str, name: Option<&str>) -> PayoutRequest {
    PayoutRequest {
        out_bill_no: OutBillNo::for_withdrawal(withdrawal).unwrap(),
        amount: AmountFen(fen),
        remark: "佣金提现".to_owned(),
        payee_account: SecretString::from(payee),
        payee_name: name.map(SecretString::from),
        bank_account: None,
    }
}

impl Rails {
    /// A WeChat transfer, confirmed (paid) when `confirm`.
    async fn wechat(&self, withdrawal: &str, fen: i64, confirm: bool) {
        let request = payout(withdrawal, fen, OPENID, None);
        self.wechat.transfer(&request).await.unwrap();
        if confirm {
            self.sandbox.confirm(request.out_bill_no.as_str()).unwrap();
        }
    }

    /// An Alipay-account transfer: paid at once.
    async fn account(&self, withdrawal: &str, fen: i64) {
        self.account
            .transfer(&payout(withdrawal, fen, ALIPAY_ACCOUNT, Some(NAME)))
            .await
            .unwrap();
        self.wait_for(withdrawal, FundOrderStatus::Success);
    }

    /// A bank-card transfer, waited for until the bank settles it.
    async fn bank(&self, withdrawal: &str, fen: i64) {
        self.bank
            .transfer(&payout(withdrawal, fen, CARD, Some(NAME)))
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while self.status(withdrawal) != Some(FundOrderStatus::Success) {
            assert!(Instant::now() < deadline, "{withdrawal} never settled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn status(&self, withdrawal: &str) -> Option<FundOrderStatus> {
        self.sandbox
            .ledger()
            .bills
            .into_iter()
            .find(|bill| bill.out_bill_no == withdrawal)
            .and_then(|bill| bill.alipay_status)
    }

    fn wait_for(&self, withdrawal: &str, status: FundOrderStatus) {
        assert_eq!(self.status(withdrawal), Some(status), "{withdrawal}");
    }

    /// The Alipay account log, asked for by both Alipay clients (one per
    /// signing mode): one app, one account log.
    async fn account_log(&self, date: NaiveDate) -> Statement {
        let statement = self.account.account_log_bill(date).await.unwrap();
        let again = self.bank.account_log_bill(date).await.unwrap();
        assert_eq!(statement, again);
        assert_eq!(statement.source, StatementSource::Alipay);
        statement
    }
}

/// `(out_bill_no, kind, fen)` of each line, sorted by number, then payout,
/// fee, return.
fn summarised(lines: &[StatementLine]) -> Vec<(&str, StatementLineKind, i64)> {
    let rank = |kind: &StatementLineKind| match kind {
        StatementLineKind::Payout => 0,
        StatementLineKind::Fee => 1,
        _ => 2,
    };
    let mut lines: Vec<_> = lines
        .iter()
        .map(|line| (line.out_bill_no.as_str(), line.kind.clone(), line.amount.0))
        .collect();
    lines.sort_by(|a, b| (a.0, rank(&a.1)).cmp(&(b.0, rank(&b.1))));
    lines
}

#[tokio::test]
async fn each_statement_holds_its_own_rails_bills_from_the_ledger() {
    let rails = rails(2_00).await;
    rails.wechat("wd0001", 12_30, true).await;
    // Never confirmed: no money moved, so on no statement.
    rails.wechat("wd0005", 5_00, false).await;
    rails.account("wd0002", 100_00).await;
    rails.bank("wd0003", 200_00).await;
    rails.bank("wd0004", 300_00).await;
    assert_eq!(
        rails.sandbox.bounce("wd0004", None).unwrap(),
        FundOrderStatus::Refund
    );
    let today = sandbox_today(&rails.sandbox);

    let wechat = rails.wechat.fund_flow_bill(today).await.unwrap();
    assert_eq!(wechat.source, StatementSource::Wechat);
    assert_eq!(
        summarised(&wechat.lines),
        vec![("wd0001", StatementLineKind::Payout, 12_30)],
        "the WeChat bill holds exactly the paid WeChat transfer"
    );
    assert_eq!(
        wechat.lines[0].business_type,
        wechat_fundflow::PAYOUT_BUSINESS_TYPE
    );

    let alipay = rails.account_log(today).await;
    assert_eq!(
        summarised(&alipay.lines),
        vec![
            ("wd0002", StatementLineKind::Payout, 100_00),
            ("wd0003", StatementLineKind::Payout, 200_00),
            ("wd0003", StatementLineKind::Fee, 2_00),
            ("wd0004", StatementLineKind::Payout, 300_00),
            ("wd0004", StatementLineKind::Fee, 2_00),
            ("wd0004", StatementLineKind::Return, 300_00),
        ],
        "the account log holds the account and card transfers, their fees and the bounce"
    );
    assert_eq!(
        alipay.summary,
        StatementSummary {
            line_count: 6,
            income_count: 1,
            income: AmountFen(300_00),
            expense_count: 5,
            expense: AmountFen(604_00),
        }
    );

    // Every line names our number and the gateway's order id, in the
    // gateway's words, and agrees with the sandbox's ledger.
    let ledger = rails.sandbox.ledger();
    for line in wechat.lines.iter().chain(&alipay.lines) {
        let bill = ledger
            .bills
            .iter()
            .find(|bill| bill.out_bill_no == line.out_bill_no)
            .unwrap();
        assert_eq!(line.gateway_ref, bill.order_id, "{line:?}");
        assert_eq!(line.occurred_at.date(), today);
        if line.kind == StatementLineKind::Return {
            assert!(bill.returned && bill.returned_at.is_some());
        } else {
            assert!(bill.paid_at.is_some());
        }
    }
    for (kind, words) in [
        (
            StatementLineKind::Payout,
            alipay_signcustomer::PAYOUT_BUSINESS_TYPE,
        ),
        (
            StatementLineKind::Fee,
            alipay_signcustomer::FEE_BUSINESS_TYPE,
        ),
        (
            StatementLineKind::Return,
            alipay_signcustomer::RETURN_BUSINESS_TYPE,
        ),
    ] {
        assert!(
            alipay
                .lines
                .iter()
                .filter(|line| line.kind == kind)
                .all(|line| line.business_type == words)
        );
    }
    let [wechat_totals, account_totals, bank_totals] =
        [Channel::Wechat, Channel::Alipay, Channel::Bank].map(|channel| ledger.channel(channel));
    assert_eq!(wechat.summary.expense.0, wechat_totals.sent_fen);
    assert_eq!(
        alipay.summary.expense.0,
        account_totals.sent_fen + bank_totals.sent_fen + bank_totals.fee_fen
    );
    assert_eq!(alipay.summary.income.0, bank_totals.returned_fen);
    rails.sandbox.shutdown().await;
}

#[tokio::test]
async fn without_a_bank_fee_the_account_log_has_no_fee_line() {
    let rails = rails(0).await;
    rails.bank("wd0003", 200_00).await;
    let alipay = rails.account_log(sandbox_today(&rails.sandbox)).await;
    assert_eq!(
        summarised(&alipay.lines),
        vec![("wd0003", StatementLineKind::Payout, 200_00)]
    );
    rails.sandbox.shutdown().await;
}

#[tokio::test]
async fn each_statement_knob_shows_up_in_both_parsed_statements() {
    let rails = rails(0).await;
    for (n, fen) in [(1, 1_00), (2, 2_00), (3, 3_00), (4, 4_00)] {
        rails.wechat(&format!("wx000{n}"), fen, true).await;
        rails.account(&format!("ali000{n}"), fen).await;
    }
    rails
        .sandbox
        .set_statement_faults(StatementFaults {
            drop_lines: 1,
            wrong_amount_lines: 1,
            flip_state_lines: 1,
            extra_lines: 2,
            ..StatementFaults::default()
        })
        .unwrap();
    let today = sandbox_today(&rails.sandbox);
    let wechat = rails.wechat.fund_flow_bill(today).await.unwrap();
    let alipay = rails.account_log(today).await;
    for (statement, prefix) in [(&wechat, "wx"), (&alipay, "ali")] {
        let number = |n: u32| format!("{prefix}000{n}");
        let mut expected: Vec<(String, StatementLineKind, i64)> = vec![
            // The first (by number) dropped; the second 1.00 yuan more; the
            // third also returned; two payouts nobody sent.
            ("sbxextra0001".to_owned(), StatementLineKind::Payout, 1_00),
            ("sbxextra0002".to_owned(), StatementLineKind::Payout, 1_00),
            (number(2), StatementLineKind::Payout, 3_00),
            (number(3), StatementLineKind::Payout, 3_00),
            (number(3), StatementLineKind::Return, 3_00),
            (number(4), StatementLineKind::Payout, 4_00),
        ];
        expected.sort_by(|a, b| (&a.0, a.1.is_income()).cmp(&(&b.0, b.1.is_income())));
        let seen: Vec<(String, StatementLineKind, i64)> = summarised(&statement.lines)
            .into_iter()
            .map(|(number, kind, fen)| (number.to_owned(), kind, fen))
            .collect();
        assert_eq!(seen, expected, "{:?}", statement.source);
        // The file is self-consistent, as a real one would be.
        assert_eq!(statement.summary, StatementSummary::of(&statement.lines));
    }

    // The knobs are settable over HTTP too, and cleared the same way.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!(
            "{}/sandbox/statements/faults",
            rails.sandbox.base_url()
        ))
        .body(r#"{"drop_lines": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(rails.sandbox.statement_faults(), StatementFaults::default());
    let refused = http
        .post(format!(
            "{}/sandbox/statements/faults",
            rails.sandbox.base_url()
        ))
        .body(r#"{"drop_lines": 1000000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        rails
            .wechat
            .fund_flow_bill(today)
            .await
            .unwrap()
            .lines
            .len(),
        4
    );
    assert_eq!(rails.account_log(today).await.lines.len(), 4);
    rails.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_download_is_refused_as_corrupt_and_the_next_one_reads() {
    let rails = rails(0).await;
    rails.wechat("wd0001", 1_00, true).await;
    rails.account("wd0002", 2_00).await;
    let today = sandbox_today(&rails.sandbox);
    rails
        .sandbox
        .set_statement_faults(StatementFaults {
            corrupt_downloads: 2,
            ..StatementFaults::default()
        })
        .unwrap();
    let wechat = rails.wechat.fund_flow_bill(today).await;
    assert!(
        matches!(&wechat, Err(StatementError::Corrupt(reason)) if reason.contains("SHA1") || reason.contains("hash")),
        "{wechat:?}"
    );
    let alipay = rails.account.account_log_bill(today).await;
    assert!(
        matches!(alipay, Err(StatementError::Corrupt(_))),
        "{alipay:?}"
    );
    // The knob counted itself down: the retries read both files.
    assert_eq!(rails.sandbox.statement_faults(), StatementFaults::default());
    assert_eq!(
        rails
            .wechat
            .fund_flow_bill(today)
            .await
            .unwrap()
            .lines
            .len(),
        1
    );
    assert_eq!(rails.account_log(today).await.lines.len(), 1);
    rails.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_sandbox_clock_a_day_behind_puts_the_payouts_in_yesterdays_statements() {
    let rails = rails(0).await;
    rails.sandbox.set_clock_offset(TimeDelta::days(-1)).unwrap();
    rails.wechat("wd0001", 1_00, true).await;
    rails.account("wd0002", 2_00).await;
    rails.bank("wd0003", 3_00).await;
    let yesterday = sandbox_today(&rails.sandbox);
    assert_eq!(yesterday, china_today().pred_opt().unwrap());

    let wechat = rails.wechat.fund_flow_bill(yesterday).await.unwrap();
    assert_eq!(
        summarised(&wechat.lines),
        vec![("wd0001", StatementLineKind::Payout, 1_00)]
    );
    let alipay = rails.account_log(yesterday).await;
    assert_eq!(
        summarised(&alipay.lines),
        vec![
            ("wd0002", StatementLineKind::Payout, 2_00),
            ("wd0003", StatementLineKind::Payout, 3_00),
        ]
    );
    assert!(
        wechat
            .lines
            .iter()
            .chain(&alipay.lines)
            .all(|line| line.occurred_at.date() == yesterday)
    );

    // By the sandbox's clock the wall clock's today has not begun.
    assert_eq!(
        rails
            .wechat
            .fund_flow_bill(china_today())
            .await
            .unwrap_err(),
        StatementError::NotReady
    );
    assert_eq!(
        rails
            .account
            .account_log_bill(china_today())
            .await
            .unwrap_err(),
        StatementError::NotReady
    );

    // Back on the wall clock, today is billable and holds none of them.
    rails.sandbox.set_clock_offset(TimeDelta::zero()).unwrap();
    let today = sandbox_today(&rails.sandbox);
    assert!(
        rails
            .wechat
            .fund_flow_bill(today)
            .await
            .unwrap()
            .lines
            .is_empty()
    );
    assert!(rails.account_log(today).await.lines.is_empty());
    rails.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_day_not_yet_billed_is_not_ready_and_the_wechat_download_needs_a_signature() {
    let rails = rails(0).await;
    let tomorrow = sandbox_today(&rails.sandbox).succ_opt().unwrap();
    assert_eq!(
        rails.wechat.fund_flow_bill(tomorrow).await.unwrap_err(),
        StatementError::NotReady
    );
    for client in [&rails.account, &rails.bank] {
        assert_eq!(
            client.account_log_bill(tomorrow).await.unwrap_err(),
            StatementError::NotReady
        );
    }

    let unsigned = reqwest::get(format!(
        "{}/v3/bill/fundflowbill?bill_date={}&account_type=OPERATION&tar_type=GZIP",
        rails.sandbox.base_url(),
        sandbox_today(&rails.sandbox)
    ))
    .await
    .unwrap();
    assert_eq!(unsigned.status(), 401);
    rails.sandbox.shutdown().await;
}

// ---- Alipay, against a fake gateway.do ----
//
// The sandbox always writes a summary that agrees with its lines; a
// disagreeing one needs a gateway that serves any archive. The fake also
// escapes the URL's slashes (`\/`), as Alipay does and the sandbox does not.

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
    // Written by hand with an escaped slash, as Alipay escapes them.
    let node = format!(
        r#"{{"code":"10000","msg":"Success","bill_download_url":"{}\/download?token=t0k3n"}}"#,
        fake.base_url.replace('/', "\\/")
    );
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

#[tokio::test]
async fn an_alipay_archive_whose_summary_disagrees_is_corrupt() {
    let lines = vec![StatementLine {
        out_bill_no: "wd0001".to_owned(),
        gateway_ref: "20240501110000000001".to_owned(),
        kind: StatementLineKind::Payout,
        amount: AmountFen(10),
        occurred_at: china_today().and_hms_opt(9, 30, 0).unwrap(),
        business_type: alipay_signcustomer::PAYOUT_BUSINESS_TYPE.to_owned(),
    }];
    let render = |summary: &StatementSummary| {
        alipay_signcustomer::render("2088000000000001", china_today(), &lines, summary)
    };

    // Agreeing, it reads back as written (through the escaped URL).
    let client = fake_alipay(render(&StatementSummary::of(&lines))).await;
    assert_eq!(
        client.account_log_bill(china_today()).await.unwrap().lines,
        lines
    );

    let mut summary = StatementSummary::of(&lines);
    summary.expense = AmountFen(11);
    let client = fake_alipay(render(&summary)).await;
    let error = client.account_log_bill(china_today()).await.unwrap_err();
    assert!(
        matches!(&error, StatementError::Corrupt(why) if why.contains("summary states")),
        "{error}"
    );
}
