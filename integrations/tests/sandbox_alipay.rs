//! The Alipay client against the sandbox's `gateway.do`, over real HTTP on
//! loopback, in public-key and certificate mode, with a small notify
//! receiver that verifies what the sandbox posts and answers `success`
//! (or refuses the first few, to exercise redelivery).

// Amounts are written yuan_fen: `123_45` is 123.45 yuan.
#![allow(clippy::inconsistent_digit_grouping)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use fenrun_integrations::alipay::{
    AlipayClient, AlipayProduct, FundOrderNotification, FundOrderNotifyVerifier, FundOrderStatus,
    NotifyError,
};
use fenrun_integrations::sandbox::{
    AlipayKeyMode, BounceRefusal, CallbackSchedule, Faults, SandboxConfig, SandboxGateway,
    SandboxHandle,
};
use fenrun_integrations::{
    AmountFen, Channel, GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus,
};
use secrecy::SecretString;

const ACCOUNT: &str = "payee@example.com";
const CARD: &str = "6222020000000000001";
const NAME: &str = "张三";

const MODES: [AlipayKeyMode; 2] = [AlipayKeyMode::PublicKey, AlipayKeyMode::Certificate];

/// How long a test waits for the sandbox to do something by itself.
const WAIT: Duration = Duration::from_secs(10);

type Received = Arc<Mutex<Vec<Result<FundOrderNotification, NotifyError>>>>;

#[derive(Clone)]
struct ReceiverState {
    verifier: Arc<FundOrderNotifyVerifier>,
    received: Received,
    refuse_first: Arc<Mutex<usize>>,
}

/// Verifies, records, and answers `success`; a refused genuine one is
/// answered `fail`.
async fn receive(State(state): State<ReceiverState>, body: Bytes) -> &'static str {
    let result = state.verifier.verify_form(&body);
    let verified = result.is_ok();
    if verified {
        let mut refuse = state.refuse_first.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return "fail";
        }
    }
    state.received.lock().unwrap().push(result);
    if verified { "success" } else { "fail" }
}

struct Receiver {
    url: String,
    received: Received,
}

async fn receiver(sandbox: &SandboxHandle, mode: AlipayKeyMode, refuse_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alipay/notify", listener.local_addr().unwrap());
    let received = Received::default();
    let state = ReceiverState {
        verifier: Arc::new(sandbox.alipay_notify_verifier(mode)),
        received: Arc::clone(&received),
        refuse_first: Arc::new(Mutex::new(refuse_first)),
    };
    let app = axum::Router::new()
        .route("/alipay/notify", post(receive))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, received }
}

impl Receiver {
    /// Waits for a verified notification of `out_bill_no` with `status`.
    async fn notification(
        &self,
        out_bill_no: &OutBillNo,
        status: &TransferStatus,
    ) -> FundOrderNotification {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter_map(|result| result.as_ref().ok())
                .find(|n| &n.out_bill_no == out_bill_no && &n.status == status)
                .cloned();
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {status:?} notification for {out_bill_no}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refusals(&self) -> Vec<NotifyError> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|result| result.clone().err())
            .collect()
    }
}

struct Setup {
    sandbox: SandboxHandle,
    receiver: Receiver,
    account: AlipayClient,
    bank: AlipayClient,
}

async fn setup(mode: AlipayKeyMode, faults: Faults, refuse_first: usize) -> Setup {
    let sandbox = SandboxGateway::start(SandboxConfig {
        faults,
        callback_schedule: CallbackSchedule {
            retry_delays_ms: vec![20, 50],
            then_every_ms: 100,
            max_tries: 20,
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let receiver = receiver(&sandbox, mode, refuse_first).await;
    let client = |product| {
        AlipayClient::new(
            sandbox
                .alipay_client_config(product, mode, &receiver.url)
                .unwrap(),
        )
        .unwrap()
    };
    Setup {
        account: client(AlipayProduct::AlipayAccount),
        bank: client(AlipayProduct::BankCard),
        sandbox,
        receiver,
    }
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

/// Queries until the status is `wanted`.
async fn query_until(
    client: &AlipayClient,
    out_bill_no: &OutBillNo,
    wanted: &TransferStatus,
) -> TransferStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client.query(out_bill_no).await.unwrap().unwrap();
        if &status == wanted {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{out_bill_no} stuck at {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_account_transfer_succeeds_at_once_is_notified_and_paid_once_in_both_modes() {
    for mode in MODES {
        let Setup {
            sandbox,
            receiver,
            account,
            ..
        } = setup(mode, Faults::default(), 0).await;
        let request = payout("wd_acct_0001", 123_45, ACCOUNT);
        assert_eq!(
            account.transfer(&request).await.unwrap(),
            TransferStatus::Succeeded
        );
        let notification = receiver
            .notification(&request.out_bill_no, &TransferStatus::Succeeded)
            .await;
        assert_eq!(notification.amount, AmountFen(123_45));
        assert_eq!(notification.product_code, "TRANS_ACCOUNT_NO_PWD");
        assert_eq!(
            account.query(&request.out_bill_no).await.unwrap(),
            Some(TransferStatus::Succeeded)
        );
        let ledger = sandbox.ledger();
        let bill = &ledger.bills[0];
        assert_eq!(bill.channel, Channel::Alipay);
        assert_eq!(bill.alipay_status, Some(FundOrderStatus::Success));
        assert_eq!(bill.order_id, notification.order_id);
        assert_eq!((bill.paid_times, bill.order_fee_fen), (1, 0));
        assert!(bill.paid_at.is_some() && !bill.returned);
        let alipay = ledger.channel(Channel::Alipay);
        assert_eq!((alipay.sent_count, alipay.sent_fen), (1, 123_45));
        assert_eq!(ledger.channel(Channel::Wechat).sent_fen, 0);
        assert_eq!(ledger.total_paid_fen, 123_45);
        let shown = format!("{ledger:?}{}", serde_json::to_string(&ledger).unwrap());
        assert!(!shown.contains(ACCOUNT) && !shown.contains(NAME), "{shown}");
        sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn a_bank_transfer_deals_then_succeeds_then_bounces_and_the_money_comes_back() {
    for mode in MODES {
        let Setup {
            sandbox,
            receiver,
            bank,
            ..
        } = setup(
            mode,
            Faults {
                bank_order_fee_fen: 2_00,
                ..Faults::default()
            },
            0,
        )
        .await;
        let request = payout("wd_bank_0001", 500_00, CARD);
        assert_eq!(
            bank.transfer(&request).await.unwrap(),
            TransferStatus::Processing
        );
        query_until(&bank, &request.out_bill_no, &TransferStatus::Succeeded).await;
        receiver
            .notification(&request.out_bill_no, &TransferStatus::Succeeded)
            .await;

        let bounced = sandbox
            .bounce(request.out_bill_no.as_str(), Some("收款账户已注销"))
            .unwrap();
        assert_eq!(bounced, FundOrderStatus::Refund);
        let returned = TransferStatus::Returned {
            reason: "收款账户已注销".to_owned(),
        };
        assert_eq!(
            bank.query(&request.out_bill_no).await.unwrap(),
            Some(returned.clone())
        );
        let notification = receiver.notification(&request.out_bill_no, &returned).await;
        assert_eq!(notification.product_code, "TRANS_BANKCARD_NO_PWD");
        assert_eq!(notification.amount, AmountFen(500_00));

        let ledger = sandbox.ledger();
        let bill = &ledger.bills[0];
        assert_eq!(bill.channel, Channel::Bank);
        assert_eq!((bill.paid_times, bill.returned), (1, true));
        assert!(bill.paid_at.is_some() && bill.returned_at.is_some());
        assert_eq!(bill.order_fee_fen, 2_00);
        let totals = ledger.channel(Channel::Bank);
        assert_eq!(
            (totals.sent_fen, totals.returned_fen, totals.fee_fen),
            (500_00, 500_00, 2_00)
        );
        assert_eq!(
            (ledger.total_paid_fen, ledger.total_returned_fen),
            (500_00, 500_00)
        );
        // A second bounce, or one of an account bill, is refused.
        assert!(matches!(
            sandbox.bounce(request.out_bill_no.as_str(), None),
            Err(BounceRefusal::NotSuccess(FundOrderStatus::Refund))
        ));
        sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn a_replay_returns_the_same_order_and_a_conflicting_one_is_refused() {
    for mode in MODES {
        let Setup {
            sandbox, account, ..
        } = setup(mode, Faults::default(), 0).await;
        let request = payout("wd_replay_01", 88_00, ACCOUNT);
        assert_eq!(
            account.transfer(&request).await.unwrap(),
            TransferStatus::Succeeded
        );
        assert_eq!(
            account.transfer(&request).await.unwrap(),
            TransferStatus::Succeeded
        );
        let conflicting = PayoutRequest {
            amount: AmountFen(99_00),
            ..request.clone()
        };
        let error = account.transfer(&conflicting).await.unwrap_err();
        assert!(error.to_string().contains("PARAM_ILLEGAL"), "{error}");
        let ledger = sandbox.ledger();
        assert_eq!(ledger.bills.len(), 1);
        assert_eq!(
            (
                ledger.bills[0].create_count,
                ledger.bills[0].paid_times,
                ledger.total_paid_fen
            ),
            (2, 1, 88_00)
        );
        sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn an_unknown_bill_is_none_and_a_bank_bill_is_not_found_by_the_account_product() {
    let Setup {
        sandbox,
        account,
        bank,
        ..
    } = setup(AlipayKeyMode::Certificate, Faults::default(), 0).await;
    let unknown = OutBillNo::for_withdrawal("wd_never_sent").unwrap();
    assert_eq!(account.query(&unknown).await.unwrap(), None);
    let request = payout("wd_bank_0002", 10_00, CARD);
    bank.transfer(&request).await.unwrap();
    assert_eq!(account.query(&request.out_bill_no).await.unwrap(), None);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_company_card_without_its_branch_is_refused_and_with_it_is_paid() {
    use fenrun_integrations::{BankAccount, CompanyBankAccount};
    let Setup { sandbox, bank, .. } = setup(AlipayKeyMode::Certificate, Faults::default(), 0).await;
    let company = |bank_code: Option<&str>| {
        Some(BankAccount::Company(CompanyBankAccount {
            inst_name: "招商银行".to_owned(),
            bank_code: bank_code.map(str::to_owned),
            branch: None,
        }))
    };
    let without = PayoutRequest {
        bank_account: company(None),
        ..payout("wd_corp_0001", 10_00, CARD)
    };
    let error = bank.transfer(&without).await.unwrap_err();
    assert!(
        matches!(&error, GatewayError::Rejected { code, .. } if code.contains("INVALID_PARAMETER")),
        "{error}"
    );
    let with = PayoutRequest {
        bank_account: company(Some("308331012345")),
        ..payout("wd_corp_0002", 10_00, CARD)
    };
    bank.transfer(&with).await.unwrap();
    query_until(&bank, &with.out_bill_no, &TransferStatus::Succeeded).await;
    let totals = sandbox.ledger().channel(Channel::Bank);
    assert_eq!((totals.sent_count, totals.sent_fen), (1, 10_00));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn an_error_after_commit_is_ambiguous_and_the_query_then_finds_the_payment_paid_once() {
    for mode in MODES {
        let Setup {
            sandbox, account, ..
        } = setup(
            mode,
            Faults {
                error_after_commit_rate: 1.0,
                ..Faults::default()
            },
            0,
        )
        .await;
        let request = payout("wd_after_0001", 66_60, ACCOUNT);
        let error = account.transfer(&request).await.unwrap_err();
        assert!(error.must_query_first(), "{error:?}");
        assert_eq!(
            account.query(&request.out_bill_no).await.unwrap(),
            Some(TransferStatus::Succeeded)
        );
        let ledger = sandbox.ledger();
        assert_eq!((ledger.paid_count, ledger.total_paid_fen), (1, 66_60));
        sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn busy_and_failing_gateways_create_nothing_and_a_hang_is_a_timeout() {
    let Setup {
        sandbox, account, ..
    } = setup(
        AlipayKeyMode::PublicKey,
        Faults {
            transient_rate: 1.0,
            ..Faults::default()
        },
        0,
    )
    .await;
    let request = payout("wd_busy_0001", 1_00, ACCOUNT);
    assert!(account.transfer(&request).await.unwrap_err().may_resend());
    sandbox.set_faults(Faults {
        error_before_commit_rate: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        account.transfer(&request).await,
        Err(GatewayError::Ambiguous(_))
    ));
    // A query under the same fault is only transient: it changes nothing.
    assert!(
        account
            .query(&request.out_bill_no)
            .await
            .unwrap_err()
            .may_resend()
    );
    sandbox.set_faults(Faults::default());
    assert_eq!(account.query(&request.out_bill_no).await.unwrap(), None);
    assert!(sandbox.ledger().bills.is_empty());

    sandbox.set_faults(Faults {
        timeout_after_success_rate: 1.0,
        ..Faults::default()
    });
    assert!(
        account
            .transfer(&request)
            .await
            .unwrap_err()
            .must_query_first()
    );
    sandbox.set_faults(Faults::default());
    assert_eq!(
        account.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::Succeeded)
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_request_signed_with_another_key_or_naming_other_certificates_is_refused() {
    let sandbox = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let notify = format!("{}/notify", sandbox.base_url());
    let mut config = sandbox
        .alipay_client_config(
            AlipayProduct::AlipayAccount,
            AlipayKeyMode::PublicKey,
            &notify,
        )
        .unwrap();
    // The "Alipay" key is a valid RSA key, just not the app's.
    config.app_private_key = SecretString::from(include_str!(
        "../sandbox-keys/alipay/alipay_private_key.pem"
    ));
    let client = AlipayClient::new(config).unwrap();
    let request = payout("wd_badsig_01", 1_00, ACCOUNT);
    match client.transfer(&request).await {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "isv.invalid-signature"),
        other => panic!("{other:?}"),
    }

    let mut config = sandbox
        .alipay_client_config(
            AlipayProduct::AlipayAccount,
            AlipayKeyMode::Certificate,
            &notify,
        )
        .unwrap();
    // A root bundle with one root missing gives another root SN.
    config.keys = fenrun_integrations::alipay::AlipayKeys::Certificate {
        app_cert: include_str!("../sandbox-keys/alipay/app_public_cert.crt").to_owned(),
        alipay_certs: include_str!("../sandbox-keys/alipay/alipay_public_cert.crt").to_owned(),
        alipay_root_cert: include_str!("../sandbox-keys/alipay/root_rsa_sha256.crt").to_owned(),
    };
    let client = AlipayClient::new(config).unwrap();
    match client.transfer(&request).await {
        Err(GatewayError::Rejected { code, .. }) => {
            assert_eq!(code, "isv.invalid-alipay-root-cert-sn")
        }
        other => panic!("{other:?}"),
    }
    assert!(sandbox.ledger().bills.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn notifications_are_redelivered_until_success_and_forgeries_and_stale_ones_are_told_apart() {
    let Setup {
        sandbox,
        receiver,
        bank,
        ..
    } = setup(
        AlipayKeyMode::Certificate,
        Faults {
            bad_signature_callback_rate: 1.0,
            out_of_order_callbacks: true,
            duplicate_callbacks: true,
            ..Faults::default()
        },
        2,
    )
    .await;
    let request = payout("wd_notify_01", 20_00, CARD);
    bank.transfer(&request).await.unwrap();
    receiver
        .notification(&request.out_bill_no, &TransferStatus::Succeeded)
        .await;
    let deadline = Instant::now() + WAIT;
    while sandbox.ledger().bills[0].callbacks_delivered < 2 {
        assert!(Instant::now() < deadline, "the duplicate never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        receiver.refusals().contains(&NotifyError::BadSignature),
        "{:?}",
        receiver.refusals()
    );
    assert_eq!(sandbox.ledger().bills[0].paid_times, 1);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn bank_bills_bounce_by_themselves_as_the_seed_says() {
    let Setup {
        sandbox,
        receiver,
        bank,
        ..
    } = setup(
        AlipayKeyMode::PublicKey,
        Faults {
            bank_bounce_permille: 1_000,
            bank_settle_ms: 10,
            bank_bounce_after_ms: 10,
            ..Faults::default()
        },
        0,
    )
    .await;
    let request = payout("wd_autobounce", 3_00, CARD);
    bank.transfer(&request).await.unwrap();
    let returned = TransferStatus::Returned {
        reason: fenrun_integrations::sandbox::DEFAULT_BOUNCE_REASON.to_owned(),
    };
    query_until(&bank, &request.out_bill_no, &returned).await;
    receiver.notification(&request.out_bill_no, &returned).await;
    assert_eq!(sandbox.ledger().total_returned_fen, 3_00);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_clock_offset_moves_every_stamp_and_the_admin_endpoints_bounce_and_refuse() {
    let Setup {
        sandbox,
        account,
        bank,
        ..
    } = setup(AlipayKeyMode::PublicKey, Faults::default(), 0).await;
    let http = reqwest::Client::new();
    let base = sandbox.base_url().to_owned();
    let clock: serde_json::Value = http
        .post(format!("{base}/sandbox/clock"))
        .json(&serde_json::json!({ "offset_seconds": -86_400 * 40 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clock["offset_seconds"], -86_400 * 40);
    assert_eq!(sandbox.clock_offset(), chrono::Duration::days(-40));

    let card = payout("wd_clock_0001", 9_00, CARD);
    bank.transfer(&card).await.unwrap();
    query_until(&bank, &card.out_bill_no, &TransferStatus::Succeeded).await;
    let ledger = sandbox.ledger();
    let paid_at =
        chrono::DateTime::parse_from_rfc3339(ledger.bills[0].paid_at.as_deref().unwrap()).unwrap();
    let behind = chrono::Utc::now().signed_duration_since(paid_at);
    assert!(
        behind > chrono::Duration::days(39) && behind < chrono::Duration::days(41),
        "{behind}"
    );

    let bounce = |out_biz_no: &str, body: &'static str| {
        http.post(format!("{base}/sandbox/alipay/bills/{out_biz_no}/bounce"))
            .body(body)
            .send()
    };
    let answer = bounce(card.out_bill_no.as_str(), r#"{"reason":"账户冻结"}"#)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        bank.query(&card.out_bill_no).await.unwrap(),
        Some(TransferStatus::Returned {
            reason: "账户冻结".to_owned()
        })
    );
    let returned_at = sandbox.ledger().bills[0].returned_at.clone().unwrap();
    let returned_at = chrono::DateTime::parse_from_rfc3339(&returned_at).unwrap();
    assert!(chrono::Utc::now().signed_duration_since(returned_at) > chrono::Duration::days(39));

    let acct = payout("wd_clock_0002", 9_00, ACCOUNT);
    account.transfer(&acct).await.unwrap();
    assert_eq!(
        bounce(acct.out_bill_no.as_str(), "")
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        bounce(card.out_bill_no.as_str(), "")
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(bounce("wdnosuch", "").await.unwrap().status(), 404);
    let ledger: serde_json::Value = http
        .get(format!("{base}/sandbox/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["channels"][2]["channel"], "bank");
    assert_eq!(ledger["channels"][2]["returned_fen"], 9_00);
    assert_eq!(ledger["total_paid_fen"], 18_00);
    sandbox.shutdown().await;
}
