//! The WeChat Pay client against the sandbox, over real HTTP on loopback,
//! with a small callback receiver that verifies and decrypts what the
//! sandbox posts.

// Amounts are written yuan_fen: `123_45` is 123.45 yuan.
#![allow(clippy::inconsistent_digit_grouping)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fenrun_integrations::sandbox::{
    CallbackSchedule, ConfirmMode, Faults, SandboxConfig, SandboxGateway, SandboxHandle,
};
use fenrun_integrations::wechat::{
    BillNotification, BillState, CallbackError, CallbackVerifier, WechatPayClient,
};
use fenrun_integrations::{
    AmountFen, GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus,
};
use secrecy::SecretString;

const OPENID: &str = "o-test-openid-0001";
const FAILING_OPENID: &str = "o-test-openid-frozen";

/// How long a test waits for a callback before failing.
const CALLBACK_WAIT: Duration = Duration::from_secs(10);

type Received = Arc<Mutex<Vec<Result<BillNotification, CallbackError>>>>;

/// A notify endpoint on port 0 that verifies every callback, records the
/// result, and answers 204 or 401. It refuses the first `refuse_first`
/// genuine callbacks with a 500, to exercise retries.
struct Receiver {
    url: String,
    received: Received,
}

#[derive(Clone)]
struct ReceiverState {
    verifier: Arc<CallbackVerifier>,
    received: Received,
    refuse_first: Arc<Mutex<usize>>,
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let result = state.verifier.verify_and_decrypt(&headers, &body, now);
    let verified = result.is_ok();
    if verified {
        let mut refuse = state.refuse_first.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    state.received.lock().unwrap().push(result);
    if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn receiver(sandbox: &SandboxHandle, refuse_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let received = Received::default();
    let state = ReceiverState {
        verifier: Arc::new(sandbox.callback_verifier()),
        received: Arc::clone(&received),
        refuse_first: Arc::new(Mutex::new(refuse_first)),
    };
    let app = axum::Router::new()
        .route("/notify", post(receive))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, received }
}

impl Receiver {
    /// Waits until `count` verified callbacks for `out_bill_no` arrived.
    async fn notifications(&self, out_bill_no: &OutBillNo, count: usize) -> Vec<BillNotification> {
        let deadline = Instant::now() + CALLBACK_WAIT;
        loop {
            let found: Vec<BillNotification> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter_map(|result| result.as_ref().ok())
                .filter(|notification| notification.out_bill_no == out_bill_no.as_str())
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} callbacks for {out_bill_no} in time: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn final_notification(&self, out_bill_no: &OutBillNo) -> BillNotification {
        self.notifications(out_bill_no, 1).await.remove(0)
    }

    fn refusals(&self) -> Vec<CallbackError> {
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
    client: WechatPayClient,
}

async fn setup(faults: Faults) -> Setup {
    setup_with(
        SandboxConfig {
            faults,
            ..SandboxConfig::default()
        },
        0,
    )
    .await
}

async fn setup_with(config: SandboxConfig, refuse_first: usize) -> Setup {
    let sandbox = SandboxGateway::start(config).await.unwrap();
    let receiver = receiver(&sandbox, refuse_first).await;
    let client = WechatPayClient::new(sandbox.client_config(&receiver.url).unwrap()).unwrap();
    Setup {
        sandbox,
        receiver,
        client,
    }
}

fn hold() -> Faults {
    Faults {
        confirm: ConfirmMode::Hold,
        ..Faults::default()
    }
}

fn payout(withdrawal_id: &str, fen: i64, openid: &str) -> PayoutRequest {
    PayoutRequest {
        out_bill_no: OutBillNo::for_withdrawal(withdrawal_id).unwrap(),
        amount: AmountFen(fen),
        remark: "佣金提现".to_owned(),
        payee_account: SecretString::from(openid),
        payee_name: Some(SecretString::from("张三")),
        bank_account: None,
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_transfer_waits_for_the_payee_then_succeeds_and_is_paid_once() {
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(Faults::default()).await;
    let request = payout("wd_0001", 123_45, OPENID);

    let status = client.transfer(&request).await.unwrap();
    let TransferStatus::AwaitingPayee { package_info } = status else {
        panic!("a new bill waits for the payee first, got {status:?}");
    };
    assert!(!package_info.is_empty());

    let notification = receiver.final_notification(&request.out_bill_no).await;
    assert_eq!(notification.status, TransferStatus::Succeeded);
    assert_eq!(notification.amount, AmountFen(123_45));
    assert_eq!(notification.event_type, "MCHTRANSFER.BILL.FINISHED");
    assert_eq!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::Succeeded)
    );

    let ledger = sandbox.ledger();
    assert_eq!((ledger.total_paid_fen, ledger.paid_count), (123_45, 1));
    let bill = &ledger.bills[0];
    assert_eq!(
        (bill.paid_times, bill.create_count, bill.state),
        (1, 1, BillState::Success)
    );
    assert_eq!(bill.transfer_bill_no, notification.transfer_bill_no);
    assert!(!format!("{ledger:?}").contains(OPENID));
    assert!(!format!("{request:?}").contains(OPENID) && !format!("{request:?}").contains("张三"));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_replay_returns_the_same_bill_and_a_conflicting_one_is_rejected() {
    let Setup {
        sandbox, client, ..
    } = setup(hold()).await;
    let request = payout("wd_0002", 500_00, OPENID);
    let first = client.transfer(&request).await.unwrap();
    let again = client.transfer(&request).await.unwrap();
    assert_eq!(first, again);
    assert!(matches!(first, TransferStatus::AwaitingPayee { .. }));

    for conflicting in [
        payout("wd_0002", 500_01, OPENID),
        payout("wd_0002", 500_00, "o-someone-else"),
    ] {
        match client.transfer(&conflicting).await {
            Err(GatewayError::Rejected { code, reason }) => {
                assert_eq!(code, "INVALID_REQUEST");
                assert!(reason.contains("out_bill_no reused"), "{reason}");
            }
            other => panic!("a conflicting replay is rejected, got {other:?}"),
        }
    }
    let ledger = sandbox.ledger();
    assert_eq!(ledger.bills.len(), 1);
    assert_eq!(ledger.bills[0].create_count, 2);
    assert_eq!(ledger.bills[0].amount_fen, 500_00);

    // Confirmed, the replay reports the final state and still pays once.
    assert_eq!(
        sandbox.confirm(request.out_bill_no.as_str()),
        Some(BillState::Success)
    );
    assert_eq!(
        client.transfer(&request).await.unwrap(),
        TransferStatus::Succeeded
    );
    assert_eq!(sandbox.ledger().total_paid_fen, 500_00);
    assert_eq!(sandbox.ledger().bills[0].paid_times, 1);
}

#[tokio::test]
async fn an_error_after_commit_is_ambiguous_and_the_query_then_finds_the_bill() {
    let Setup {
        sandbox,
        client,
        receiver,
    } = setup(Faults {
        error_after_commit_rate: 1.0,
        ..hold()
    })
    .await;
    let request = payout("wd_0003", 88_00, OPENID);

    let error = client.transfer(&request).await.unwrap_err();
    assert!(error.must_query_first(), "{error:?}");
    assert!(!error.to_string().contains(OPENID));
    assert!(matches!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::AwaitingPayee { .. })
    ));

    // Retried with the same number once the storm passes: the same bill.
    sandbox.set_faults(hold());
    assert!(matches!(
        client.transfer(&request).await.unwrap(),
        TransferStatus::AwaitingPayee { .. }
    ));
    sandbox.confirm(request.out_bill_no.as_str());
    assert_eq!(
        receiver
            .final_notification(&request.out_bill_no)
            .await
            .status,
        TransferStatus::Succeeded
    );
    let ledger = sandbox.ledger();
    assert_eq!(
        (
            ledger.bills.len(),
            ledger.total_paid_fen,
            ledger.bills[0].create_count
        ),
        (1, 88_00, 2)
    );
}

#[tokio::test]
async fn a_hang_after_success_is_a_timeout_and_the_bill_exists() {
    let config = SandboxConfig {
        faults: Faults {
            timeout_after_success_rate: 1.0,
            hang_ms: 1_000,
            ..hold()
        },
        client_request_timeout: Duration::from_millis(300),
        ..SandboxConfig::default()
    };
    let Setup {
        sandbox, client, ..
    } = setup_with(config, 0).await;
    let request = payout("wd_0004", 10_00, OPENID);
    let error = client.transfer(&request).await.unwrap_err();
    assert!(matches!(error, GatewayError::Ambiguous(_)), "{error:?}");
    assert!(matches!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::AwaitingPayee { .. })
    ));
    assert_eq!(sandbox.ledger().bills.len(), 1);
}

#[tokio::test]
async fn forged_stale_probe_and_foreign_callbacks_are_refused() {
    let Setup {
        sandbox, client, ..
    } = setup(hold()).await;
    let request = payout("wd_0005", 100_00, OPENID);
    client.transfer(&request).await.unwrap();
    let verifier = sandbox.callback_verifier();
    let builder = sandbox.callback_builder();
    let bill = request.out_bill_no.as_str();
    let check = |callback: fenrun_integrations::sandbox::SignedCallback| {
        verifier.verify_and_decrypt(&callback.header_map(), &callback.body, now_unix())
    };

    assert_eq!(
        check(builder.success(bill, 100_00).with_corrupted_signature()),
        Err(CallbackError::BadSignature)
    );
    assert_eq!(
        check(builder.success(bill, 100_00).as_probe()),
        Err(CallbackError::BadSignature)
    );
    assert_eq!(
        check(builder.success(bill, 100_00).at_timestamp(now_unix() - 600)),
        Err(CallbackError::StaleTimestamp)
    );
    assert_eq!(
        check(
            builder
                .success(bill, 100_00)
                .with_serial("PUB_KEY_ID_SOMEONE_ELSE")
        ),
        Err(CallbackError::UnknownSerial)
    );
    // Genuine ones verify, with either spelling of the associated data.
    for builder in [builder.clone(), builder.clone().with_associated_data("")] {
        let notification = check(builder.failed(bill, 100_00, "PAYEE_ACCOUNT_ABNORMAL")).unwrap();
        assert_eq!(
            notification.status,
            TransferStatus::Failed {
                reason: "PAYEE_ACCOUNT_ABNORMAL".to_owned()
            }
        );
    }
    // A callback from another sandbox (other keys) does not verify here.
    let other = SandboxGateway::start(SandboxConfig {
        platform_private_key: SandboxConfig::default().merchant_private_key,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(
        check(other.callback_builder().success(bill, 100_00)),
        Err(CallbackError::BadSignature)
    );
}

#[tokio::test]
async fn a_held_bill_that_expires_is_cancelled_and_pays_nothing() {
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(hold()).await;
    let request = payout("wd_0006", 120_00, OPENID);
    assert!(matches!(
        client.transfer(&request).await.unwrap(),
        TransferStatus::AwaitingPayee { .. }
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(TransferStatus::AwaitingPayee { .. })
    ));

    assert_eq!(
        sandbox.expire(request.out_bill_no.as_str()),
        Some(BillState::Cancelled)
    );
    let cancelled = TransferStatus::Failed {
        reason: "CANCELLED".to_owned(),
    };
    assert_eq!(
        receiver
            .final_notification(&request.out_bill_no)
            .await
            .status,
        cancelled
    );
    assert_eq!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(cancelled)
    );
    // A late confirmation changes nothing.
    assert_eq!(
        sandbox.confirm(request.out_bill_no.as_str()),
        Some(BillState::Cancelled)
    );
    assert_eq!(sandbox.ledger().total_paid_fen, 0);
    assert_eq!(sandbox.expire("wdNOSUCHBILL"), None);
}

#[tokio::test]
async fn a_cancel_settles_into_cancelled_and_a_final_bill_cannot_be_cancelled() {
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(hold()).await;
    let waiting = payout("wd_0007", 30_00, OPENID);
    client.transfer(&waiting).await.unwrap();
    assert_eq!(
        client.cancel(&waiting.out_bill_no).await.unwrap(),
        TransferStatus::Processing
    );
    let cancelled = TransferStatus::Failed {
        reason: "CANCELLED".to_owned(),
    };
    assert_eq!(
        receiver
            .final_notification(&waiting.out_bill_no)
            .await
            .status,
        cancelled
    );
    assert_eq!(
        client.cancel(&waiting.out_bill_no).await.unwrap(),
        cancelled
    );

    let paid = payout("wd_0008", 40_00, OPENID);
    client.transfer(&paid).await.unwrap();
    sandbox.confirm(paid.out_bill_no.as_str());
    assert!(matches!(
        client.cancel(&paid.out_bill_no).await,
        Err(GatewayError::Rejected { code, .. }) if code == "INVALID_REQUEST"
    ));
    let unknown = OutBillNo::for_withdrawal("wd_nosuch").unwrap();
    assert!(matches!(
        client.cancel(&unknown).await,
        Err(GatewayError::Rejected { code, .. }) if code == "NOT_FOUND"
    ));
    assert_eq!(client.query(&unknown).await.unwrap(), None);
    assert_eq!(sandbox.ledger().total_paid_fen, 40_00);
}

#[tokio::test]
async fn a_payee_in_fail_openids_fails_with_payee_account_abnormal() {
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(Faults {
        fail_openids: vec![FAILING_OPENID.to_owned()],
        ..Faults::default()
    })
    .await;
    let request = payout("wd_0009", 66_00, FAILING_OPENID);
    assert!(matches!(
        client.transfer(&request).await.unwrap(),
        TransferStatus::AwaitingPayee { .. }
    ));
    let failed = TransferStatus::Failed {
        reason: "PAYEE_ACCOUNT_ABNORMAL".to_owned(),
    };
    assert_eq!(
        receiver
            .final_notification(&request.out_bill_no)
            .await
            .status,
        failed
    );
    assert_eq!(
        client.query(&request.out_bill_no).await.unwrap(),
        Some(failed)
    );
    assert_eq!(sandbox.ledger().total_paid_fen, 0);
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_merchant_key_is_rejected_with_sign_error() {
    let sandbox = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let mut config = sandbox.client_config("http://127.0.0.1:9/notify").unwrap();
    config.merchant_private_key = SandboxConfig::default().platform_private_key;
    let client = WechatPayClient::new(config).unwrap();
    let request = payout("wd_0010", 1_00, OPENID);
    for result in [
        client.transfer(&request).await.map(|_| ()),
        client.query(&request.out_bill_no).await.map(|_| ()),
    ] {
        match result {
            Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "SIGN_ERROR"),
            other => panic!("a bad signature is SIGN_ERROR, got {other:?}"),
        }
    }
    assert!(sandbox.ledger().bills.is_empty());
}

#[tokio::test]
async fn an_answer_signed_with_another_platform_key_is_not_trusted() {
    let sandbox = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let mut config = sandbox.client_config("http://127.0.0.1:9/notify").unwrap();
    // The client expects another WeChat Pay public key than the one that signs.
    config.platform_public_key = include_str!("../sandbox-keys/merchant_public_key.pem").to_owned();
    let client = WechatPayClient::new(config).unwrap();
    let request = payout("wd_0011", 1_00, OPENID);
    let error = client.transfer(&request).await.unwrap_err();
    assert!(matches!(error, GatewayError::Ambiguous(_)), "{error:?}");
}

#[tokio::test]
async fn a_connection_refused_is_transient() {
    let sandbox = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let config = sandbox.client_config("http://127.0.0.1:9/notify").unwrap();
    sandbox.shutdown().await;
    let client = WechatPayClient::new(config).unwrap();
    let error = client
        .transfer(&payout("wd_0012", 1_00, OPENID))
        .await
        .unwrap_err();
    assert!(error.may_resend(), "{error:?}");
}

/// Sends one bill through a storm until it is created, recording what each
/// attempt met.
async fn weather_the_storm(client: &WechatPayClient, request: &PayoutRequest) -> Vec<&'static str> {
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        match client.transfer(request).await {
            Ok(_) => {
                outcomes.push("created");
                return outcomes;
            }
            Err(GatewayError::Transient(_)) => outcomes.push("transient"),
            Err(GatewayError::Ambiguous(_)) => {
                // Query first; a miss means nothing was created.
                let mut found = None;
                for _ in 0..50 {
                    if let Ok(answer) = client.query(&request.out_bill_no).await {
                        found = Some(answer);
                        break;
                    }
                }
                let found = found.expect("50 queries did not get through");
                outcomes.push(if found.is_some() {
                    "ambiguous-created"
                } else {
                    "ambiguous-nothing"
                });
            }
            Err(other) => panic!("a storm rejects nothing: {other:?}"),
        }
    }
    panic!("50 attempts did not get through: {outcomes:?}");
}

#[tokio::test]
async fn a_fault_storm_is_reproducible_from_its_seed_and_a_retried_bill_gets_through() {
    let faults = Faults {
        transient_rate: 0.4,
        error_before_commit_rate: 0.3,
        error_after_commit_rate: 0.3,
        seed: 42,
        ..hold()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let Setup {
            sandbox, client, ..
        } = setup(faults.clone()).await;
        let mut run = Vec::new();
        for id in ["wd_storm_1", "wd_storm_2", "wd_storm_3"] {
            run.push(weather_the_storm(&client, &payout(id, 5_00, OPENID)).await);
        }
        let ledger = sandbox.ledger();
        assert_eq!(ledger.bills.len(), 3);
        assert!(ledger.bills.iter().all(|bill| bill.paid_times == 0));
        runs.push(run);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0]
            .iter()
            .flatten()
            .any(|outcome| *outcome != "created"),
        "{runs:?}"
    );
}

#[tokio::test]
async fn callback_faults_send_duplicates_a_forgery_and_a_stale_state_yet_pay_once() {
    let faults = Faults {
        duplicate_callbacks: true,
        out_of_order_callbacks: true,
        bad_signature_callback_rate: 1.0,
        ..Faults::default()
    };
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(faults).await;
    let mut ids = Vec::new();
    // Ten bills: with seed 0, wdcb7 and wdcb9 also get a stale callback.
    for n in 0..10 {
        let request = payout(&format!("wd_cb_{n}"), 10_00, OPENID);
        client.transfer(&request).await.unwrap();
        ids.push(request.out_bill_no);
    }
    // Both copies of every genuine callback are acknowledged...
    let deadline = Instant::now() + CALLBACK_WAIT;
    while sandbox
        .ledger()
        .bills
        .iter()
        .any(|bill| bill.callbacks_delivered < 2)
    {
        assert!(
            Instant::now() < deadline,
            "duplicates not delivered: {:?}",
            sandbox.ledger()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        let finals = receiver.notifications(id, 2).await;
        let succeeded = finals
            .iter()
            .filter(|n| n.status == TransferStatus::Succeeded)
            .count();
        assert_eq!(succeeded, 2, "{finals:?}");
        assert_eq!(
            finals[0].event_id, finals[1].event_id,
            "a duplicate is the same event"
        );
    }
    // ...then the stale earlier-state ones land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stale = receiver
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|result| matches!(result, Ok(n) if !n.status.is_final()))
        .count();
    assert!(
        stale > 0,
        "some bills get an earlier-state callback after the final one"
    );
    let forged = receiver.refusals();
    assert_eq!(forged.len(), ids.len());
    assert!(
        forged
            .iter()
            .all(|error| *error == CallbackError::BadSignature)
    );
    let ledger = sandbox.ledger();
    assert_eq!((ledger.paid_count, ledger.total_paid_fen), (10, 100_00));
}

#[tokio::test]
async fn a_refused_callback_is_retried_on_the_schedule() {
    let config = SandboxConfig {
        callback_schedule: CallbackSchedule {
            retry_delays_ms: vec![10, 20],
            then_every_ms: 30,
            max_tries: 5,
        },
        ..SandboxConfig::default()
    };
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup_with(config, 3).await;
    let request = payout("wd_0013", 2_00, OPENID);
    client.transfer(&request).await.unwrap();
    assert_eq!(
        receiver
            .final_notification(&request.out_bill_no)
            .await
            .status,
        TransferStatus::Succeeded
    );
    assert_eq!(sandbox.ledger().bills[0].callbacks_delivered, 1);
}

#[tokio::test]
async fn the_admin_endpoints_set_faults_confirm_and_show_the_ledger() {
    let Setup {
        sandbox,
        receiver,
        client,
    } = setup(Faults::default()).await;
    let http = reqwest::Client::new();
    let base = sandbox.base_url().to_owned();
    let answer = http
        .post(format!("{base}/sandbox/faults"))
        .json(&serde_json::json!({"confirm": {"mode": "hold"}, "latency_ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(sandbox.faults().confirm, ConfirmMode::Hold);
    let bad = http
        .post(format!("{base}/sandbox/faults"))
        .json(&serde_json::json!({"transient_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let request = payout("wd_0014", 7_00, OPENID);
    client.transfer(&request).await.unwrap();
    let confirmed: serde_json::Value = http
        .post(format!(
            "{base}/sandbox/bills/{}/confirm",
            request.out_bill_no
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["state"], "SUCCESS");
    receiver.final_notification(&request.out_bill_no).await;
    let missing = http
        .post(format!("{base}/sandbox/bills/wdNOSUCH/expire"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let ledger = http
        .get(format!("{base}/sandbox/ledger"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!ledger.contains(OPENID), "{ledger}");
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(ledger["total_paid_fen"], 7_00);
    assert_eq!(ledger["paid_count"], 1);
    assert_eq!(ledger["bills"][0]["paid_times"], 1);
    assert_eq!(ledger["bills"][0]["state"], "SUCCESS");
}

#[tokio::test]
async fn an_unsigned_request_is_refused_with_sign_error() {
    let sandbox = SandboxGateway::start(SandboxConfig::default())
        .await
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/v3/fund-app/mch-transfer/transfer-bills",
            sandbox.base_url()
        ))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert!(answer.headers().contains_key("Wechatpay-Signature"));
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "SIGN_ERROR");
}
