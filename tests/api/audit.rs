//! The audit log: admin and ops actions over HTTP and on the command line
//! are recorded with actor, target, before and after; only admin reads it;
//! the table refuses updates and deletes.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, spawn};

on_both_backends!(admin_and_ops_actions_are_audited_append_only);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// The audit entries of `action` on `target` (the newest page), newest first.
pub async fn audit_entries(app: &TestApp, target: &str, action: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/v1/audit?target={target}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["action"] == action)
        .cloned()
        .collect()
}

async fn admin_and_ops_actions_are_audited_append_only(backend: Backend) {
    let app = spawn(backend).await;
    let (token, account) = funded_distributor(&app, "dora", "3000.00", OPENID).await;
    advance_days(&app, 4).await;
    let created: Value = request(
        &app,
        &token,
        "dora-1",
        &json!({"distributor_id": "dora", "amount": "2500.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["state"], "reviewing");
    let id = created["id"].as_str().unwrap();
    let response = app
        .post_json(
            &format!("/v1/withdrawals/{id}/approve"),
            &app.ops,
            &json!({"note": "checked by phone"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // A second approval is refused and writes no entry: the entry lives in
    // the approval's own transaction.
    let again = app
        .post_json(
            &format!("/v1/withdrawals/{id}/approve"),
            &app.ops,
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 409);

    // A command-line action is audited too, with the host user as actor.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fenrun"));
    command
        .args(["token", "create", "--role", "ops"])
        .env("FENRUN_DATABASE_URL", &app.db.url)
        .env("USER", "operator1")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let page: Value = app.get("/v1/audit", &app.admin).await.json().await.unwrap();
    // The harness's own tokens (four roles, then dora's) are audited too,
    // under fenrun's own name; the rest are this test's actions.
    let (harness, items): (Vec<&Value>, Vec<&Value>) = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|item| item["actor"] == "system:test");
    assert_eq!(harness.len(), 5, "{page:#}");
    assert!(harness.iter().all(|item| item["action"] == "token.create"));
    let actions: Vec<&str> = items
        .iter()
        .map(|item| item["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "token.create",
            "withdrawal.approve",
            "clock.advance",
            "ledger.adjust"
        ],
        "newest first: {page:#}"
    );
    let approve = items[1];
    assert_eq!(approve["target"], format!("withdrawal:{id}"));
    assert_eq!(approve["actor_role"], "ops");
    assert!(approve["actor"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(approve["before"], json!({"state": "reviewing"}));
    assert_eq!(approve["after"]["words"], "checked by phone");
    assert_eq!(items[0]["actor"], "cli:operator1");
    assert_eq!(items[0]["after"]["role"], "ops");
    assert_eq!(items[3]["after"]["amount"], "3000.00");
    assert_eq!(items[3]["target"], "distributor:dora");

    let about: Value = app
        .get(&format!("/v1/audit?target=withdrawal:{id}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(about["items"].as_array().unwrap().len(), 1);
    let older: Value = app
        .get(
            &format!("/v1/audit?before={}&limit=1", items[1]["id"]),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older["items"][0]["action"], "clock.advance");
    assert!(older["next_before"].is_i64());

    for token in [&app.ops, &app.accountant, &token] {
        let response = app.get("/v1/audit", token).await;
        assert_eq!(error_of(response, 403).await["code"], "forbidden");
    }

    let refused = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            let update = sqlx::query("update audit_log set actor = 'someone else'")
                .execute(&pool)
                .await;
            let delete = sqlx::query("delete from audit_log").execute(&pool).await;
            update.is_err() && delete.is_err()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let update = sqlx::query("update audit_log set actor = 'someone else'")
                .execute(&pool)
                .await;
            let delete = sqlx::query("delete from audit_log").execute(&pool).await;
            update.is_err() && delete.is_err()
        }
    };
    assert!(refused, "audit_log accepted an update or a delete");
}
