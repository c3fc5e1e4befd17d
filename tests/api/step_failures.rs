//! Retry or give up: a step error that no retry can mend fails its job at
//! once, with its reason, where ops look; a passing one is retried.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, spawn, withdrawal};

on_both_backends!(a_transfer_whose_credential_cannot_be_opened_fails_at_once_with_its_reason);

/// Gives a payout account the sealed credential of another row: the vault
/// binds each to its row, so it no longer opens, as with a lost key or a
/// row restored from elsewhere.
async fn break_the_seal_of(app: &TestApp, account: &str, other: &str) {
    use sqlx::Connection;
    let sql = format!(
        "update payout_accounts set account = (select account from payout_accounts where id = '{other}') \
         where id = '{account}'"
    );
    if app.db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn a_transfer_whose_credential_cannot_be_opened_fails_at_once_with_its_reason(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (token, account) =
        funded_distributor(&app, "erin", "2000.00", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").await;
    let (_, other) =
        funded_distributor(&app, "frank", "10.00", "oUpF8uMuAJO_M2pxb1Q9zNjWeS7p").await;
    advance_days(&app, 4).await;
    break_the_seal_of(&app, &account, &other).await;
    let response = request(
        &app,
        &token,
        "erin-1",
        &json!({"distributor_id": "erin", "amount": "1500.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();

    // The transfer step allows 8 attempts with backoff; a lost key must not
    // use them: the job is failed after its first, with the reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let failed: Value = app
            .get(
                "/v1/ops/jobs?state=failed&workflow=withdrawal&step=transfer",
                &app.ops,
            )
            .await
            .json()
            .await
            .unwrap();
        if let Some(job) = failed["items"].as_array().unwrap().first() {
            break job.clone();
        }
        if Instant::now() >= deadline {
            let all: Value = app
                .get("/v1/ops/jobs?workflow=withdrawal&step=transfer", &app.ops)
                .await
                .json()
                .await
                .unwrap();
            panic!("the transfer job never failed: {all:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["attempts"], 1, "{job:#}");
    assert_eq!(job["target"], format!("/v1/withdrawals/{id}"));
    let reason = job["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("gave up, not retried: opening the payout credentials"),
        "{job:#}"
    );
    // Nothing was sent and the money stays reserved for ops to resolve.
    let view = withdrawal(&app, id).await;
    assert_eq!(view["state"], "transferring", "{view:#}");
    let sent = crate::withdrawals::sandbox(&app).ledger();
    assert!(
        sent.bills.is_empty(),
        "no bill may reach the gateway: {sent:?}"
    );
}
