//! kill -9 during transfers: the real binary pays 80 approved withdrawals
//! through a sandbox gateway that lives in this test (so it outlives every
//! crash) and answers slowly; the server is SIGKILLed twice while transfers
//! are in flight and restarted. Every withdrawal must still be paid exactly
//! once at the sandbox, the books must agree with it, and each must end with
//! exactly one certificate.

// Amounts in fen are written yuan_fen (`2545_00` is 2,545.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash::{Server, fenrun, text, token};
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;
use crate::withdrawals::id_number;

on_both_backends!(withdrawals_transferring_through_sigkills_are_paid_exactly_once);

const DISTRIBUTORS: usize = 40;
const PER_DISTRIBUTOR: usize = 2;
const KILLS: usize = 2;
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);

async fn send(
    client: &reqwest::Client,
    address: &str,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{address}{path}"))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("request")
}

async fn withdrawals_transferring_through_sigkills_are_paid_exactly_once(backend: Backend) {
    let sandbox = fenrun_integrations::sandbox::SandboxGateway::start(
        fenrun_integrations::sandbox::SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            faults: fenrun_integrations::sandbox::Faults {
                latency_ms: 400,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("sandbox");
    let db = TestDb::new(backend).await;
    let logs = tempfile::tempdir().expect("temp dir for server logs");
    let migrate = fenrun(&db.url, &["migrate"]);
    assert!(
        migrate.status.success(),
        "migrate: {}",
        text(&migrate.stderr)
    );
    let (admin, ingest, ops) = (
        token(&db.url, "admin"),
        token(&db.url, "ingest"),
        token(&db.url, "ops"),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut server = Server::new(&db.url, logs.path()).with_wall_clock_on_one_port(vec![
        (
            "FENRUN_SANDBOX_URL".to_owned(),
            sandbox.base_url().to_string(),
        ),
        (
            "FENRUN_MASTER_KEY".to_owned(),
            crate::helpers::TEST_MASTER_KEY.to_owned(),
        ),
    ]);
    let address = server.start(&client).await;

    let mut ids = Vec::new();
    for number in 0..DISTRIBUTORS {
        let id = format!("k{number:02}");
        assert_eq!(
            send(
                &client,
                &address,
                &ingest,
                "/v1/distributors",
                None,
                json!({"id": id, "name": id})
            )
            .await
            .status(),
            201
        );
        let response = client
            .put(format!("{address}/v1/distributors/{id}/identity"))
            .bearer_auth(&ingest)
            .json(&json!({"real_name": "周杰", "id_number": id_number("11010119900307123")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let account: Value = send(
            &client,
            &address,
            &ingest,
            &format!("/v1/distributors/{id}/payout-accounts"),
            None,
            json!({"channel": "wechat", "openid": format!("oKill{number:04}Openid000000000000")}),
        )
        .await
        .json()
        .await
        .unwrap();
        let funded = send(&client, &address, &admin, "/v1/admin/adjustments", Some(&format!("fund-{id}")), json!({"distributor_id": id, "amount": "100.00", "direction": "credit", "reason": "test"})).await;
        assert_eq!(funded.status(), 201);
        let output = fenrun(
            &db.url,
            &[
                "token",
                "create",
                "--role",
                "distributor",
                "--distributor",
                &id,
            ],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        let distributor_token = text(&output.stdout)
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
        for n in 0..PER_DISTRIBUTOR {
            let response = send(&client, &address, &distributor_token, "/v1/withdrawals", Some(&format!("w{n}")), json!({"distributor_id": id, "amount": "30.00", "payout_account_id": account["id"], "speed": "standard"})).await;
            assert_eq!(response.status(), 202);
            let created: Value = response.json().await.unwrap();
            // A new distributor: every one waits for review.
            assert_eq!(created["state"], "reviewing");
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
    }
    // Approve them all, then kill the server while the transfers run.
    for id in &ids {
        assert_eq!(
            send(
                &client,
                &address,
                &ops,
                &format!("/v1/withdrawals/{id}/approve"),
                None,
                json!({})
            )
            .await
            .status(),
            200
        );
    }
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(if kill == 0 { 300 } else { 700 })).await;
        server.kill();
        let paid_at_kill = sandbox.ledger().paid_count;
        eprintln!(
            "kill {}: the sandbox had paid {paid_at_kill} of {}",
            kill + 1,
            ids.len()
        );
        server.start(&client).await;
    }

    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut states = Vec::new();
    loop {
        states.clear();
        for id in &ids {
            let withdrawal: Value = client
                .get(format!("{address}/v1/withdrawals/{id}"))
                .bearer_auth(&ops)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            states.push(withdrawal["state"].as_str().unwrap_or("?").to_owned());
        }
        if states.iter().all(|state| state == "paid") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all paid after {SETTLE_DEADLINE:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ledger = sandbox.ledger();
    assert_eq!(ledger.paid_count, ids.len() as u64, "{ledger:?}");
    assert!(
        ledger.bills.iter().all(|bill| bill.paid_times == 1),
        "a bill was paid twice"
    );
    assert_eq!(ledger.total_paid_fen, 30_00 * ids.len() as i64);
    for number in 0..DISTRIBUTORS {
        let balance: Value = client
            .get(format!("{address}/v1/distributors/k{number:02}/balance"))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (
                balance["available"].as_str(),
                balance["withdrawing"].as_str(),
                balance["withdrawn_total"].as_str()
            ),
            (Some("40.00"), Some("0.00"), Some("60.00"))
        );
    }
    // The certificate step went through the kills too: one each, no more.
    let mut numbers = std::collections::BTreeSet::new();
    for id in &ids {
        loop {
            let withdrawal: Value = client
                .get(format!("{address}/v1/withdrawals/{id}"))
                .bearer_auth(&ops)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(number) = withdrawal["certificate_number"].as_str() {
                assert!(numbers.insert(number.to_owned()), "{number} twice");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} has no certificate after {SETTLE_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(numbers.len(), ids.len());
    server.kill();
    let verify = fenrun(&db.url, &["ledger", "verify"]);
    assert!(
        verify.status.success(),
        "ledger verify: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    sandbox.shutdown().await;
}
