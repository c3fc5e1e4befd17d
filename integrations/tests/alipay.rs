//! The Alipay client against a small fake `gateway.do` on loopback, in
//! public-key mode and in certificate mode. The fake checks every request's
//! RSA2 signature with the app public key (and, in certificate mode, the SNs
//! it carries) using its own sign-content code, and signs every answer over
//! the raw response node with the test "Alipay" key, as Alipay does.
//!
//! Payee accounts steer the fake: `unknown@fault` creates the order but
//! answers `20000`, `badsign@fault` answers with a broken signature,
//! `nobody@fault` is refused with `PAYEE_NOT_EXIST`. Bank-card orders answer
//! `DEALING`, then on successive queries `DEALING`, `SUCCESS`, `REFUND`.

// Amounts are written yuan_fen: `1234_56` is 1234.56 yuan.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fenrun_integrations::alipay::{AlipayClient, AlipayConfig, AlipayKeys, AlipayProduct};
use fenrun_integrations::{
    AmountFen, Channel, GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus,
};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use secrecy::SecretString;

const APP_ID: &str = "2021000000000001";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox-keys/alipay/");

/// SNs of the checked-in certificates, computed with openssl (see the README
/// beside them), not with the code under test.
const APP_CERT_SN: &str = "05effdbaa2dd4c7c8fcb0119b496f799";
const ALIPAY_CERT_SN: &str = "b0d12f0521d2b0a9378fc1b198bd0226";
const ROOT_CERT_SN: &str = "e319b691be34edd2601a007aba85a2db_910fd420da83cd0d1b63b55d3a9fd230";

const ACCOUNT: &str = "payee@example.com";
const CARD: &str = "6222020000000000001";
const NAME: &str = "张三";
const COMPANY: &str = "杭州某某科技有限公司";

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
}

/// The sorted `k=v&…` content, written independently of the crate's.
fn sign_content(params: &BTreeMap<String, String>, excluded: &[&str]) -> String {
    params
        .iter()
        .filter(|(key, value)| !value.is_empty() && !excluded.contains(&key.as_str()))
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    PublicKey,
    Certificate,
}

struct Order {
    status: &'static str,
    queries: usize,
}

/// A request's parameters, and its `biz_content` decoded.
type Received = (BTreeMap<String, String>, serde_json::Value);

#[derive(Clone)]
struct FakeAlipay {
    mode: Mode,
    alipay_key: Arc<RsaKeyPair>,
    app_public: Arc<rsa::RsaPublicKey>,
    orders: Arc<Mutex<HashMap<String, Order>>>,
    /// Every request the fake accepted, for the tests to read.
    requests: Arc<Mutex<Vec<Received>>>,
}

impl FakeAlipay {
    fn new(mode: Mode) -> FakeAlipay {
        let alipay_pem = pem::parse(key_file("alipay_private_key.pem")).unwrap();
        FakeAlipay {
            mode,
            alipay_key: Arc::new(RsaKeyPair::from_pkcs8(alipay_pem.contents()).unwrap()),
            app_public: Arc::new(
                rsa::RsaPublicKey::from_public_key_pem(&key_file("app_public_key.pem")).unwrap(),
            ),
            orders: Arc::default(),
            requests: Arc::default(),
        }
    }

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

    fn request_signature_verifies(&self, params: &BTreeMap<String, String>) -> bool {
        let Some(signature) = params.get("sign").and_then(|sign| BASE64.decode(sign).ok()) else {
            return false;
        };
        let key = ring::signature::RsaPublicKeyComponents {
            n: self.app_public.n().to_bytes_be(),
            e: self.app_public.e().to_bytes_be(),
        };
        key.verify(
            &RSA_PKCS1_2048_8192_SHA256,
            sign_content(params, &["sign"]).as_bytes(),
            &signature,
        )
        .is_ok()
    }

    /// A signed answer. The node is written by hand, with an escaped slash,
    /// a `\u` escape and braces inside a string, so that only a client that
    /// verifies the raw text passes.
    fn answer(&self, node_name: &str, node: &str, break_signature: bool) -> String {
        let mut sign = self.sign(node);
        if break_signature {
            sign = self.sign(&format!("{node} "));
        }
        let cert_sn = match self.mode {
            Mode::Certificate => format!(r#","alipay_cert_sn":"{ALIPAY_CERT_SN}""#),
            Mode::PublicKey => String::new(),
        };
        format!("{{\"{node_name}\":{node},\"sign\":\"{sign}\"{cert_sn}}}")
    }
}

fn order_node(out_biz_no: &str, status: &str, extra: &str) -> String {
    format!(
        r#"{{"code":"10000","msg":"Success","order_id":"20241205110070000006","out_biz_no":"{out_biz_no}","pay_fund_order_id":"20241205110070001506","status":"{status}","trans_date":"2024-12-05 10:00:00","note":"\u8f6c\u8d26 a\/b {{x}} \"q\""{extra}}}"#
    )
}

fn refused_node(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> String {
    format!(r#"{{"code":"{code}","msg":"{msg}","sub_code":"{sub_code}","sub_msg":"{sub_msg}"}}"#)
}

async fn gateway(State(fake): State<FakeAlipay>, RawQuery(query): RawQuery, body: Bytes) -> String {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .chain(form_urlencoded::parse(&body))
    {
        assert!(
            params
                .insert(key.into_owned(), value.into_owned())
                .is_none(),
            "a parameter is sent twice"
        );
    }
    let method = params.get("method").cloned().unwrap_or_default();
    let node_name = format!("{}_response", method.replace('.', "_"));
    if !fake.request_signature_verifies(&params) {
        let node = refused_node(
            "40002",
            "Invalid Arguments",
            "isv.invalid-signature",
            "验签出错",
        );
        return fake.answer("error_response", &node, false);
    }
    let sns_ok = match fake.mode {
        Mode::PublicKey => {
            !params.contains_key("app_cert_sn") && !params.contains_key("alipay_root_cert_sn")
        }
        Mode::Certificate => {
            params.get("app_cert_sn").map(String::as_str) == Some(APP_CERT_SN)
                && params.get("alipay_root_cert_sn").map(String::as_str) == Some(ROOT_CERT_SN)
        }
    };
    if !sns_ok {
        let node = refused_node(
            "40002",
            "Invalid Arguments",
            "isv.invalid-cert-sn",
            "证书SN不匹配",
        );
        return fake.answer("error_response", &node, false);
    }
    for (key, expected) in [
        ("app_id", APP_ID),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("version", "1.0"),
    ] {
        assert_eq!(params.get(key).map(String::as_str), Some(expected), "{key}");
    }
    let timestamp = &params["timestamp"];
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{timestamp}"
    );
    let biz: serde_json::Value = serde_json::from_str(&params["biz_content"]).unwrap();
    fake.requests
        .lock()
        .unwrap()
        .push((params.clone(), biz.clone()));
    let out_biz_no = biz["out_biz_no"].as_str().unwrap().to_owned();
    let product_code = biz["product_code"].as_str().unwrap();
    assert_eq!(biz["biz_scene"], "DIRECT_TRANSFER");
    let mut orders = fake.orders.lock().unwrap();
    match method.as_str() {
        "alipay.fund.trans.uni.transfer" => {
            let identity = biz["payee_info"]["identity"].as_str().unwrap();
            match identity {
                "nobody@fault" => {
                    let node = refused_node(
                        "40004",
                        "Business Failed",
                        "PAYEE_NOT_EXIST",
                        "收款账号nobody@fault不存在",
                    );
                    return fake.answer(&node_name, &node, false);
                }
                "unknown@fault" => {
                    orders.insert(
                        out_biz_no,
                        Order {
                            status: "SUCCESS",
                            queries: 0,
                        },
                    );
                    let node = refused_node(
                        "20000",
                        "Service Currently Unavailable",
                        "isp.unknow-error",
                        "系统繁忙",
                    );
                    return fake.answer(&node_name, &node, false);
                }
                _ => {}
            }
            let status = if product_code == "TRANS_BANKCARD_NO_PWD" {
                "DEALING"
            } else {
                "SUCCESS"
            };
            let order = orders
                .entry(out_biz_no.clone())
                .or_insert(Order { status, queries: 0 });
            let node = order_node(&out_biz_no, order.status, "");
            fake.answer(&node_name, &node, identity == "badsign@fault")
        }
        "alipay.fund.trans.common.query" => {
            let Some(order) = orders.get_mut(&out_biz_no) else {
                let node = refused_node(
                    "40004",
                    "Business Failed",
                    "ORDER_NOT_EXIST",
                    "转账订单不存在",
                );
                return fake.answer(&node_name, &node, false);
            };
            order.queries += 1;
            if product_code == "TRANS_BANKCARD_NO_PWD" {
                order.status = match order.queries {
                    1 => "DEALING",
                    2 => "SUCCESS",
                    _ => "REFUND",
                };
            }
            let extra = if order.status == "REFUND" {
                r#","error_code":"ACCOUNT_CLOSED","fail_reason":"收款卡已销户""#
            } else {
                ""
            };
            let node = order_node(&out_biz_no, order.status, extra);
            fake.answer(&node_name, &node, false)
        }
        other => panic!("unexpected method {other}"),
    }
}

async fn start(fake: FakeAlipay) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/gateway.do", post(gateway))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base_url
}

fn keys(mode: Mode) -> AlipayKeys {
    match mode {
        Mode::PublicKey => AlipayKeys::PublicKey {
            alipay_public_key: key_file("alipay_public_key.pem"),
        },
        Mode::Certificate => AlipayKeys::Certificate {
            app_cert: key_file("app_public_cert.crt"),
            alipay_certs: key_file("alipay_public_cert.crt"),
            alipay_root_cert: key_file("alipay_root_cert.crt"),
        },
    }
}

fn client(base_url: &str, mode: Mode, product: AlipayProduct) -> AlipayClient {
    let config = AlipayConfig::new(
        base_url.to_owned(),
        APP_ID.to_owned(),
        product,
        SecretString::from(key_file("app_private_key.pem")),
        keys(mode),
    )
    .unwrap();
    AlipayClient::new(config).unwrap()
}

fn payout(withdrawal_id: &str, fen: i64, account: &str) -> PayoutRequest {
    PayoutRequest {
        out_bill_no: OutBillNo::for_withdrawal(withdrawal_id).unwrap(),
        amount: AmountFen(fen),
        remark: "佣金提现".to_owned(),
        payee_account: SecretString::from(account),
        payee_name: Some(SecretString::from(NAME)),
        bank_account: None,
    }
}

#[tokio::test]
async fn an_alipay_account_transfer_is_signed_verified_and_succeeds_in_both_modes() {
    for mode in [Mode::PublicKey, Mode::Certificate] {
        let fake = FakeAlipay::new(mode);
        let base_url = start(fake.clone()).await;
        let client = client(&base_url, mode, AlipayProduct::AlipayAccount);
        assert_eq!(client.channel(), Channel::Alipay);
        let request = payout("wd_account_01", 1234_56, ACCOUNT);

        assert_eq!(
            client.transfer(&request).await,
            Ok(TransferStatus::Succeeded),
            "{mode:?}"
        );
        assert_eq!(
            client.query(&request.out_bill_no).await,
            Ok(Some(TransferStatus::Succeeded))
        );
        // Resending the same payout names the same order.
        assert_eq!(
            client.transfer(&request).await,
            Ok(TransferStatus::Succeeded)
        );
        assert_eq!(fake.orders.lock().unwrap().len(), 1);

        let requests = fake.requests.lock().unwrap();
        let (params, biz) = &requests[0];
        assert_eq!(params["method"], "alipay.fund.trans.uni.transfer");
        assert_eq!(biz["out_biz_no"], "wdaccount01");
        assert_eq!(biz["trans_amount"], "1234.56");
        assert_eq!(biz["product_code"], "TRANS_ACCOUNT_NO_PWD");
        assert_eq!(biz["payee_info"]["identity_type"], "ALIPAY_LOGON_ID");
        assert_eq!(biz["payee_info"]["identity"], ACCOUNT);
        assert_eq!(biz["payee_info"]["name"], NAME);
        assert!(biz["payee_info"].get("bankcard_ext_info").is_none());
        let (params, biz) = &requests[1];
        assert_eq!(params["method"], "alipay.fund.trans.common.query");
        assert_eq!(biz["product_code"], "TRANS_ACCOUNT_NO_PWD");
        // The query names nobody.
        assert!(!params["biz_content"].contains(ACCOUNT));
    }
}

#[tokio::test]
async fn a_bank_card_transfer_deals_then_succeeds_then_bounces_in_both_modes() {
    for mode in [Mode::Certificate, Mode::PublicKey] {
        let fake = FakeAlipay::new(mode);
        let base_url = start(fake.clone()).await;
        let client = client(&base_url, mode, AlipayProduct::BankCard);
        assert_eq!(client.channel(), Channel::Bank);
        let request = payout("wd_card_0001", 1, CARD);

        assert_eq!(
            client.transfer(&request).await,
            Ok(TransferStatus::Processing),
            "{mode:?}"
        );
        let out_bill_no = &request.out_bill_no;
        assert_eq!(
            client.query(out_bill_no).await,
            Ok(Some(TransferStatus::Processing))
        );
        assert_eq!(
            client.query(out_bill_no).await,
            Ok(Some(TransferStatus::Succeeded))
        );
        let bounced = client.query(out_bill_no).await.unwrap().unwrap();
        assert_eq!(
            bounced,
            TransferStatus::Returned {
                reason: "ACCOUNT_CLOSED".to_owned()
            }
        );
        assert!(bounced.is_final());

        let requests = fake.requests.lock().unwrap();
        let (_, biz) = &requests[0];
        assert_eq!(biz["trans_amount"], "0.01");
        assert_eq!(biz["product_code"], "TRANS_BANKCARD_NO_PWD");
        assert_eq!(biz["payee_info"]["identity_type"], "BANKCARD_ACCOUNT");
        assert_eq!(biz["payee_info"]["bankcard_ext_info"]["account_type"], "2");
        assert!(
            requests
                .iter()
                .skip(1)
                .all(|(_, biz)| biz["product_code"] == "TRANS_BANKCARD_NO_PWD")
        );
    }
}

#[tokio::test]
async fn a_company_card_carries_its_bank_and_its_branch_in_bankcard_ext_info() {
    use fenrun_integrations::{BankAccount, BankBranch, CompanyBankAccount};
    let fake = FakeAlipay::new(Mode::Certificate);
    let base_url = start(fake.clone()).await;
    let client = client(&base_url, Mode::Certificate, AlipayProduct::BankCard);
    let by_code = PayoutRequest {
        payee_name: Some(SecretString::from(COMPANY)),
        bank_account: Some(BankAccount::Company(CompanyBankAccount {
            inst_name: "招商银行".to_owned(),
            bank_code: Some("308331012345".to_owned()),
            branch: None,
        })),
        ..payout("wd_card_corp_1", 100_00, CARD)
    };
    let by_place = PayoutRequest {
        payee_name: Some(SecretString::from(COMPANY)),
        bank_account: Some(BankAccount::Company(CompanyBankAccount {
            inst_name: "中国工商银行".to_owned(),
            bank_code: None,
            branch: Some(BankBranch {
                province: "浙江省".to_owned(),
                city: "杭州市".to_owned(),
                name: "中国工商银行杭州分行营业部".to_owned(),
            }),
        })),
        ..payout("wd_card_corp_2", 100_00, CARD)
    };
    let personal = PayoutRequest {
        bank_account: Some(BankAccount::Personal),
        ..payout("wd_card_corp_3", 100_00, CARD)
    };
    for request in [&by_code, &by_place, &personal] {
        assert_eq!(
            client.transfer(request).await,
            Ok(TransferStatus::Processing)
        );
    }
    let requests = fake.requests.lock().unwrap();
    let ext = |index: usize| requests[index].1["payee_info"]["bankcard_ext_info"].clone();
    assert_eq!(requests[0].1["payee_info"]["name"], COMPANY);
    assert_eq!(
        ext(0),
        serde_json::json!({"account_type": "1", "inst_name": "招商银行", "bank_code": "308331012345"})
    );
    assert_eq!(
        ext(1),
        serde_json::json!({"account_type": "1", "inst_name": "中国工商银行", "inst_province": "浙江省",
                           "inst_city": "杭州市", "inst_branch_name": "中国工商银行杭州分行营业部"})
    );
    assert_eq!(ext(2), serde_json::json!({"account_type": "2"}));
}

#[tokio::test]
async fn an_unknown_error_is_ambiguous_and_the_query_then_finds_the_order() {
    let fake = FakeAlipay::new(Mode::PublicKey);
    let base_url = start(fake.clone()).await;
    let client = client(&base_url, Mode::PublicKey, AlipayProduct::AlipayAccount);
    let request = payout("wd_unknown_01", 100_00, "unknown@fault");

    let error = client.transfer(&request).await.unwrap_err();
    assert!(error.must_query_first(), "{error:?}");
    assert!(!error.may_resend());
    assert_eq!(
        client.query(&request.out_bill_no).await,
        Ok(Some(TransferStatus::Succeeded))
    );
}

#[tokio::test]
async fn a_badly_signed_answer_is_ambiguous_and_never_trusted() {
    for mode in [Mode::PublicKey, Mode::Certificate] {
        let fake = FakeAlipay::new(mode);
        let base_url = start(fake).await;
        let client = client(&base_url, mode, AlipayProduct::AlipayAccount);
        let error = client
            .transfer(&payout("wd_badsign_01", 5_00, "badsign@fault"))
            .await
            .unwrap_err();
        match &error {
            GatewayError::Ambiguous(message) => {
                assert!(message.contains("signature"), "{message}")
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_answer_signed_by_a_certificate_we_do_not_hold_is_ambiguous() {
    // The fake answers in certificate mode, naming its certificate's SN; a
    // client holding only the public key would verify it, so give the
    // certificate-mode client a different Alipay certificate instead.
    let fake = FakeAlipay::new(Mode::Certificate);
    let base_url = start(fake).await;
    let config = AlipayConfig::new(
        base_url,
        APP_ID.to_owned(),
        AlipayProduct::AlipayAccount,
        SecretString::from(key_file("app_private_key.pem")),
        AlipayKeys::Certificate {
            app_cert: key_file("app_public_cert.crt"),
            alipay_certs: key_file("app_public_cert.crt"),
            alipay_root_cert: key_file("alipay_root_cert.crt"),
        },
    )
    .unwrap();
    let client = AlipayClient::new(config).unwrap();
    let error = client
        .transfer(&payout("wd_rotated_01", 5_00, ACCOUNT))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::Ambiguous(message) if message.contains("alipay_cert_sn")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_business_refusal_is_rejected_and_its_message_names_no_payee() {
    let fake = FakeAlipay::new(Mode::PublicKey);
    let base_url = start(fake).await;
    let client = client(&base_url, Mode::PublicKey, AlipayProduct::AlipayAccount);
    let error = client
        .transfer(&payout("wd_nobody_01", 5_00, "nobody@fault"))
        .await
        .unwrap_err();
    let GatewayError::Rejected { code, reason } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "PAYEE_NOT_EXIST");
    assert!(!reason.contains("nobody@fault"), "{reason}");
    assert!(!format!("{error} {error:?}").contains(NAME));
}

#[tokio::test]
async fn a_query_for_an_order_never_made_finds_none() {
    let fake = FakeAlipay::new(Mode::Certificate);
    let base_url = start(fake).await;
    let client = client(&base_url, Mode::Certificate, AlipayProduct::BankCard);
    let never = OutBillNo::for_withdrawal("wd_never_01").unwrap();
    assert_eq!(client.query(&never).await, Ok(None));
    // And there is nothing to cancel on either product.
    assert!(matches!(
        client.cancel(&never).await,
        Err(GatewayError::Rejected { code, .. }) if code == "CANCEL_NOT_SUPPORTED"
    ));
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_key_is_refused_by_the_gateway_and_rejected() {
    let fake = FakeAlipay::new(Mode::PublicKey);
    let base_url = start(fake.clone()).await;
    let config = AlipayConfig::new(
        base_url,
        APP_ID.to_owned(),
        AlipayProduct::AlipayAccount,
        SecretString::from(key_file("alipay_private_key.pem")),
        keys(Mode::PublicKey),
    )
    .unwrap();
    let client = AlipayClient::new(config).unwrap();
    let error = client
        .transfer(&payout("wd_wrongkey_01", 5_00, ACCOUNT))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GatewayError::Rejected { code, .. } if code == "isv.invalid-signature"),
        "{error:?}"
    );
    assert!(fake.orders.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_gateway_that_cannot_be_reached_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = client(&base_url, Mode::PublicKey, AlipayProduct::AlipayAccount);
    let error = client
        .transfer(&payout("wd_refused_01", 5_00, ACCOUNT))
        .await
        .unwrap_err();
    assert!(error.may_resend(), "{error:?}");
}
