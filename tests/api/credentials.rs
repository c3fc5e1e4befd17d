//! Payout credentials (SPEC §2.5): identities and payout accounts are shown
//! masked, refused with the field named, sealed so that neither a database
//! dump nor the service's log holds a plaintext, and resealed by
//! `fenrun keys rotate`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fenrun::domain::ids::{DistributorId, PayoutAccountId};
use fenrun::vault::credentials::{open_account, open_identity};
use fenrun::vault::{MasterKey, Vault, VaultError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_MASTER_KEY, TestApp, TestDb, error_of, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    an_identity_and_payout_accounts_are_stored_and_shown_masked,
    a_wrong_check_digit_is_refused_and_nothing_is_stored,
    another_distributors_token_gets_403,
    a_database_dump_holds_no_plaintext_credential,
    the_service_log_holds_no_plaintext_credential,
    keys_rotate_reseals_every_credential_so_the_new_key_alone_opens_them,
);

const NAME: &str = "张三丰";
const CARD: &str = "6222021234567894";
const ALIPAY: &str = "13812345678";
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
/// A second master key for the rotation test.
const NEW_MASTER_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// An 18-character ID number: `first17` and its ISO 7064 MOD 11-2 check character.
fn id_number(first17: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    format!("{first17}{}", char::from(check))
}

/// The same number with a wrong check character.
fn with_wrong_check(number: &str) -> String {
    let last = if number.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &number[..17])
}

fn the_id_number() -> String {
    id_number("11010119900307123")
}

pub fn vault_of(keys: &[&str]) -> Vault {
    let mut keys = keys
        .iter()
        .map(|key| MasterKey::parse(&SecretString::from(*key), "test key").unwrap());
    let current = keys.next().unwrap();
    Vault::new(current, keys.collect())
}

/// Stores the identity and one account of each channel for `id` (which the
/// ingest token creates), asserting each answer.
async fn store_credentials(app: &TestApp, id: &str) -> Vec<Value> {
    app.create_distributor(id, None, None).await;
    let response = app
        .put_json(
            &format!("/v1/distributors/{id}/identity"),
            &app.ingest,
            &json!({"real_name": NAME, "id_number": the_id_number()}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut accounts = Vec::new();
    for body in [
        json!({"channel": "wechat", "openid": OPENID}),
        json!({"channel": "alipay", "account": ALIPAY}),
        json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "holder_name": NAME}),
    ] {
        let response = app
            .post_json(
                &format!("/v1/distributors/{id}/payout-accounts"),
                &app.ingest,
                &body,
            )
            .await;
        assert_eq!(response.status(), 201, "{body}");
        accounts.push(response.json().await.unwrap());
    }
    accounts
}

fn plaintexts() -> Vec<String> {
    vec![
        NAME.to_owned(),
        the_id_number(),
        CARD.to_owned(),
        ALIPAY.to_owned(),
        OPENID.to_owned(),
    ]
}

/// Neither the credential's UTF-8 bytes nor their lower-case hex (how
/// `pg_dump` writes a `bytea`) appear in `bytes`.
fn assert_no_plaintext(bytes: &[u8], what: &str) {
    for plaintext in plaintexts() {
        let hex: String = plaintext.bytes().map(|b| format!("{b:02x}")).collect();
        for form in [&plaintext, &hex] {
            assert!(
                !contains(bytes, form),
                "{what} holds the plaintext credential {plaintext:?} (as {form:?})"
            );
        }
    }
}

fn contains(bytes: &[u8], needle: &str) -> bool {
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

async fn an_identity_and_payout_accounts_are_stored_and_shown_masked(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("d1", None, None).await;
    let own = app.distributor_token("d1").await;

    let before: Value = app
        .get("/v1/distributors/d1", &own)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["identity"], Value::Null);

    let number = the_id_number();
    let response = app
        .put_json(
            "/v1/distributors/d1/identity",
            &own,
            &json!({"real_name": NAME, "id_number": number}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let masked_number = format!("110***********{}", &number[14..]);
    let identity: Value = response.json().await.unwrap();
    assert_eq!(
        identity,
        json!({"distributor_id": "d1", "real_name": "张**", "id_number": masked_number})
    );
    let profile: Value = app
        .get("/v1/distributors/d1", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        profile["identity"],
        json!({"real_name": "张**", "id_number": masked_number})
    );
    assert_eq!(profile["id"], "d1", "the profile is still there");

    let wechat = app
        .post_json(
            "/v1/distributors/d1/payout-accounts",
            &own,
            &json!({"channel": "wechat", "openid": OPENID}),
        )
        .await;
    assert_eq!(wechat.status(), 201);
    let wechat: Value = wechat.json().await.unwrap();
    assert_eq!(wechat["channel"], "wechat");
    assert_eq!(wechat["account"], "oUpF***eS6o");
    assert!(wechat["id"].as_str().unwrap().starts_with("pa_"));

    let alipay: Value = app
        .post_json(
            "/v1/distributors/d1/payout-accounts",
            &app.ingest,
            &json!({"channel": "alipay", "account": ALIPAY}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alipay["account"], "138****5678");

    let bank = app
        .post_json(
            "/v1/distributors/d1/payout-accounts",
            &own,
            &json!({"channel": "bank", "card_number": "6222 0212 3456 7894", "bank_name": "招商银行", "holder_name": NAME}),
        )
        .await;
    assert_eq!(bank.status(), 201);
    let bank: Value = bank.json().await.unwrap();
    assert_eq!(bank["account"], "6222 **** **** 7894");
    assert_eq!(bank["bank_name"], "招商银行");
    assert_eq!(bank["holder_name"], "张**");

    for token in [&own, &app.ops, &app.admin] {
        let list = app.get("/v1/distributors/d1/payout-accounts", token).await;
        assert_eq!(list.status(), 200);
        let list: Value = list.json().await.unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        let mut ids: Vec<&Value> = items.iter().map(|item| &item["id"]).collect();
        ids.sort_by_key(|id| id.as_str().unwrap().to_owned());
        let mut expected = vec![&wechat["id"], &alipay["id"], &bank["id"]];
        expected.sort_by_key(|id| id.as_str().unwrap().to_owned());
        assert_eq!(ids, expected);
    }

    // Stored sealed under the row's AAD: the test key opens them again.
    let vault = vault_of(&[TEST_MASTER_KEY]);
    let d1 = DistributorId::parse("d1").unwrap();
    let stored = app.store.identity(&d1).await.unwrap().unwrap();
    let (name, opened_number) = open_identity(&vault, &stored).unwrap();
    assert_eq!(name.expose_secret(), NAME);
    assert_eq!(opened_number.expose_secret(), number);
    let card = app
        .store
        .payout_account(&PayoutAccountId::parse(bank["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open_account(&vault, &card).unwrap().expose_secret(), CARD);

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/distributors/{id}/identity"]["put"].is_object());
    let accounts = &doc["paths"]["/v1/distributors/{id}/payout-accounts"];
    assert!(accounts["post"].is_object() && accounts["get"].is_object());

    // A second PUT replaces the identity.
    let other = id_number("44030819800101001");
    let replaced: Value = app
        .put_json(
            "/v1/distributors/d1/identity",
            &app.ingest,
            &json!({"real_name": "李四", "id_number": other}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["real_name"], "李*");
    assert_eq!(
        replaced["id_number"],
        format!("440***********{}", &other[14..])
    );
}

async fn a_wrong_check_digit_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("d1", None, None).await;
    let wrong = with_wrong_check(&the_id_number());
    let error = error_of(
        app.put_json(
            "/v1/distributors/d1/identity",
            &app.ingest,
            &json!({"real_name": NAME, "id_number": wrong}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error["code"], "invalid_id_number");
    assert_eq!(error["field"], "id_number");
    assert!(!error.to_string().contains(&wrong[..17]), "{error}");
    // A number where a string belongs is refused without being repeated.
    let digits: u64 = the_id_number()[..17].parse().unwrap();
    for body in [
        json!({"real_name": NAME, "id_number": digits}),
        json!({"channel": "bank", "card_number": 6222021234567894_u64, "bank_name": "b"}),
    ] {
        let path = if body.get("channel").is_some() {
            "/v1/distributors/d1/payout-accounts"
        } else {
            "/v1/distributors/d1/identity"
        };
        let response = if body.get("channel").is_some() {
            app.post_json(path, &app.ingest, &body).await
        } else {
            app.put_json(path, &app.ingest, &body).await
        };
        let error = error_of(response, 400).await;
        assert!(
            !error.to_string().contains("110101") && !error.to_string().contains("622202"),
            "{error}"
        );
    }
    let d1 = DistributorId::parse("d1").unwrap();
    assert!(app.store.identity(&d1).await.unwrap().is_none());
    let profile: Value = app
        .get("/v1/distributors/d1", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["identity"], Value::Null);

    let error = error_of(
        app.put_json(
            "/v1/distributors/d1/identity",
            &app.ingest,
            &json!({"real_name": "  ", "id_number": the_id_number()}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error["field"], "real_name");

    for (body, code, field) in [
        (
            json!({"channel": "bank", "card_number": "6222021234567895", "bank_name": "招商银行"}),
            "invalid_card_number",
            "card_number",
        ),
        (
            json!({"channel": "alipay", "account": "12345"}),
            "invalid_alipay_account",
            "account",
        ),
        (
            json!({"channel": "wechat", "openid": "not an openid"}),
            "invalid_openid",
            "openid",
        ),
    ] {
        let error = error_of(
            app.post_json("/v1/distributors/d1/payout-accounts", &app.ingest, &body)
                .await,
            422,
        )
        .await;
        assert_eq!(error["code"], code, "{body}");
        assert_eq!(error["field"], field, "{body}");
    }
    let error = error_of(
        app.post_json(
            "/v1/distributors/d1/payout-accounts",
            &app.ingest,
            &json!({"channel": "cash", "account": "x"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "invalid_field");
    assert!(app.store.payout_accounts(&d1).await.unwrap().is_empty());

    let missing = app
        .put_json(
            "/v1/distributors/ghost/identity",
            &app.ingest,
            &json!({"real_name": NAME, "id_number": the_id_number()}),
        )
        .await;
    assert_eq!(missing.status(), 404);
}

async fn another_distributors_token_gets_403(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("d1", None, None).await;
    app.create_distributor("d2", None, None).await;
    let other = app.distributor_token("d2").await;
    let identity = json!({"real_name": NAME, "id_number": the_id_number()});
    let account = json!({"channel": "alipay", "account": ALIPAY});
    for token in [&other, &app.accountant] {
        let put = app
            .put_json("/v1/distributors/d1/identity", token, &identity)
            .await;
        assert_eq!(put.status(), 403);
        let post = app
            .post_json("/v1/distributors/d1/payout-accounts", token, &account)
            .await;
        assert_eq!(post.status(), 403);
        let list = app.get("/v1/distributors/d1/payout-accounts", token).await;
        assert_eq!(list.status(), 403);
    }
    // ops and admin read but do not write credentials.
    let put = app
        .put_json("/v1/distributors/d1/identity", &app.ops, &identity)
        .await;
    assert_eq!(put.status(), 403);
    let d1 = DistributorId::parse("d1").unwrap();
    assert!(app.store.identity(&d1).await.unwrap().is_none());
    assert!(app.store.payout_accounts(&d1).await.unwrap().is_empty());
}

async fn a_database_dump_holds_no_plaintext_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    store_credentials(&app, "d1").await;
    let dump = match app.db.sqlite_file() {
        Some(file) => {
            let mut bytes = std::fs::read(&file).unwrap();
            let wal = file.with_file_name("fenrun.db-wal");
            if let Ok(more) = std::fs::read(&wal) {
                bytes.extend(more);
            }
            bytes
        }
        None => {
            let pg_dump = std::path::Path::new("/usr/bin/pg_dump");
            if !pg_dump.exists() {
                eprintln!(
                    "SKIPPED: /usr/bin/pg_dump is not installed; the PostgreSQL dump was not checked"
                );
                return;
            }
            let output = Command::new(pg_dump)
                .arg("--dbname")
                .arg(&app.db.url)
                .output()
                .expect("run pg_dump");
            assert!(
                output.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }
    };
    // The dump does hold the rows: their masks are there.
    for mask in [
        "110***********",
        "6222 **** **** 7894",
        "138****5678",
        "张**",
    ] {
        assert!(contains(&dump, mask), "the dump lacks {mask:?}");
    }
    assert_no_plaintext(&dump, "the database dump");
}

/// `fenrun` with only the given database and key in its environment's
/// fenrun variables.
/// Runs a command off the test's runtime thread: the service under test
/// runs on that thread, and a write transaction of its that is waiting to be
/// polled would otherwise hold SQLite's write lock against the command.
async fn output_of(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("run fenrun"))
        .await
        .expect("the command's thread")
}

fn fenrun(database_url: &str, master_key: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fenrun"));
    command
        .args(["--database-url", database_url])
        .env("FENRUN_MASTER_KEY", master_key)
        .env_remove("FENRUN_MASTER_KEY_FILE")
        .env_remove("FENRUN_MASTER_KEY_PREVIOUS")
        .env_remove("FENRUN_MASTER_KEY_PREVIOUS_FILE")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// Kills the server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn the_service_log_holds_no_plaintext_credential(backend: Backend) {
    let db = TestDb::new(backend).await;
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("serve.log");
    let token = |role: &str| {
        let output = fenrun(&db.url, TEST_MASTER_KEY)
            .args(["token", "create", "--role", role])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    let ingest = token("ingest");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(&log_file).unwrap();
    let server = Child(
        fenrun(&db.url, TEST_MASTER_KEY)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            // Everything fenrun, sqlx and the HTTP layer say, as JSON.
            .env("FENRUN_LOG_FORMAT", "json")
            .env("FENRUN_LOG_FILTER", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "serve did not start: {}",
            std::fs::read_to_string(&log_file).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let send = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{address}{path}"))
            .bearer_auth(&ingest)
            .json(&body)
            .send()
    };
    let created = send(
        reqwest::Method::POST,
        "/v1/distributors",
        json!({"id": "d1", "name": "d1"}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let wrong = with_wrong_check(&the_id_number());
    for (method, path, body, status) in [
        (
            reqwest::Method::PUT,
            "/v1/distributors/d1/identity",
            json!({"real_name": NAME, "id_number": wrong}),
            422,
        ),
        (
            reqwest::Method::PUT,
            "/v1/distributors/d1/identity",
            json!({"real_name": NAME, "id_number": the_id_number()}),
            200,
        ),
        (
            reqwest::Method::POST,
            "/v1/distributors/d1/payout-accounts",
            json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "holder_name": NAME}),
            201,
        ),
        (
            reqwest::Method::POST,
            "/v1/distributors/d1/payout-accounts",
            json!({"channel": "alipay", "account": ALIPAY}),
            201,
        ),
        (
            reqwest::Method::POST,
            "/v1/distributors/d1/payout-accounts",
            json!({"channel": "wechat", "openid": OPENID}),
            201,
        ),
        (
            reqwest::Method::POST,
            "/v1/distributors/d1/payout-accounts",
            json!({"channel": "wechat", "openid": OPENID, "extra": CARD}),
            400,
        ),
    ] {
        let response = send(method, path, body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {body}");
    }
    // A withdrawal paid to the WeChat account: the gateway call carries the
    // openid and the (encrypted) real name; neither may reach the log.
    let (admin, ops) = (token("admin"), token("ops"));
    let accounts: Value = client
        .get(format!("{address}/v1/distributors/d1/payout-accounts"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wechat = accounts["items"]
        .as_array()
        .expect("a list of accounts")
        .iter()
        .find(|account| account["channel"] == "wechat")
        .unwrap()["id"]
        .clone();
    let funded = client
        .post(format!("{address}/v1/admin/adjustments"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "fund-d1")
        .json(&json!({"distributor_id": "d1", "amount": "3000.00", "direction": "credit", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(funded.status(), 201);
    let output = fenrun(&db.url, TEST_MASTER_KEY)
        .args([
            "token",
            "create",
            "--role",
            "distributor",
            "--distributor",
            "d1",
        ])
        .output()
        .unwrap();
    let d1_token = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let created: Value = client
        .post(format!("{address}/v1/withdrawals"))
        .bearer_auth(&d1_token)
        .header("Idempotency-Key", "log-test")
        .json(&json!({"distributor_id": "d1", "amount": "2500.00", "payout_account_id": wechat, "speed": "express"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a withdrawal id").to_owned();
    let approved = client
        .post(format!("{address}/v1/withdrawals/{id}/approve"))
        .bearer_auth(&ops)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = client
            .get(format!("{address}/v1/withdrawals/{id}"))
            .bearer_auth(&ops)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current["state"] == "paid" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the withdrawal was not paid: {current}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    let written = std::fs::read(&log_file).unwrap();
    assert!(
        contains(&written, "identity stored")
            && contains(&written, "payout account added")
            && contains(&written, "withdrawal moved"),
        "the log was captured: {}",
        String::from_utf8_lossy(&written)
    );
    assert_no_plaintext(&written, "the service log");
}

async fn keys_rotate_reseals_every_credential_so_the_new_key_alone_opens_them(backend: Backend) {
    let app = spawn_app(backend).await;
    store_credentials(&app, "d1").await;
    store_credentials(&app, "d2").await;
    let d1 = DistributorId::parse("d1").unwrap();

    // Without the old key the rotation refuses, naming the row, and changes nothing.
    let mut refuse = fenrun(&app.db.url, NEW_MASTER_KEY);
    refuse.args(["keys", "rotate"]);
    let refused = output_of(refuse).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("distributor_identities row d1"), "{stderr}");
    let old = vault_of(&[TEST_MASTER_KEY]);
    let stored = app.store.identity(&d1).await.unwrap().unwrap();
    assert!(open_identity(&old, &stored).is_ok());

    // A rotation that read d2 before d2 was replaced by a service still
    // sealing under the old key (same key id) must not write the old value back.
    let d2 = DistributorId::parse("d2").unwrap();
    let read_before = app.store.identity(&d2).await.unwrap().unwrap();
    let replaced = app
        .put_json(
            "/v1/distributors/d2/identity",
            &app.ingest,
            &json!({"real_name": NAME, "id_number": the_id_number()}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    assert!(
        !app.store
            .reseal_identity(&read_before, b"x", b"y", &read_before.key_id)
            .await
            .unwrap()
    );
    let kept = app.store.identity(&d2).await.unwrap().unwrap();
    assert_ne!(kept.real_name, read_before.real_name);
    assert!(open_identity(&old, &kept).is_ok());

    // A webhook endpoint whose secret was rotated holds two sealed secrets.
    let created = app
        .post_json(
            "/v1/admin/webhooks",
            &app.admin,
            &json!({"url": "https://shop.example.com/hooks", "events": ["*"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let endpoint: Value = created.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let rotated = app
        .post_json(
            &format!("/v1/admin/webhooks/{endpoint_id}/rotate-secret"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), 200);

    // With it, every row is resealed, page by page, while the service runs.
    let rotate = || {
        let mut rotate = fenrun(&app.db.url, NEW_MASTER_KEY);
        rotate
            .args(["keys", "rotate"])
            .env("FENRUN_MASTER_KEY_PREVIOUS", TEST_MASTER_KEY);
        output_of(rotate)
    };
    let rotated = rotate().await;
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        stdout.contains("done: 2 identities, 6 payout accounts and 1 webhook endpoint(s) resealed"),
        "{stdout}"
    );

    let new_only = vault_of(&[NEW_MASTER_KEY]);
    for id in ["d1", "d2"] {
        let id = DistributorId::parse(id).unwrap();
        let identity = app.store.identity(&id).await.unwrap().unwrap();
        assert_eq!(&identity.key_id, new_only.current_key_id().as_str());
        let (name, number) = open_identity(&new_only, &identity).unwrap();
        assert_eq!(name.expose_secret(), NAME);
        assert_eq!(number.expose_secret(), the_id_number());
        assert!(matches!(
            open_identity(&old, &identity),
            Err(VaultError::UnknownKey(_))
        ));
        let accounts = app.store.payout_accounts(&id).await.unwrap();
        assert_eq!(accounts.len(), 3);
        let mut opened: Vec<String> = accounts
            .iter()
            .map(|account| {
                open_account(&new_only, account)
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            })
            .collect();
        opened.sort();
        let mut expected = vec![ALIPAY.to_owned(), CARD.to_owned(), OPENID.to_owned()];
        expected.sort();
        assert_eq!(opened, expected);
    }

    let (_, secret, previous) = app
        .store
        .sealed_webhook_secrets()
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _, _)| id == endpoint_id)
        .unwrap();
    for (column, sealed) in [("secret", secret), ("previous_secret", previous.unwrap())] {
        let sealed = fenrun::vault::SealedValue::from_stored(&sealed).unwrap();
        let aad = fenrun::vault::credentials::webhook_secret_aad(column, endpoint_id);
        assert!(
            new_only
                .open(&sealed, &aad)
                .unwrap()
                .expose_secret()
                .starts_with("whsec_")
        );
        assert!(matches!(
            old.open(&sealed, &aad),
            Err(VaultError::UnknownKey(_))
        ));
    }

    // A concurrent rotation that read the row before this one wrote it
    // writes nothing.
    assert!(
        !app.store
            .reseal_identity(&stored, b"x", b"y", "k")
            .await
            .unwrap()
    );

    // Running it again finds nothing left to do.
    let again = rotate().await;
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("done: 0 identities, 0 payout accounts and 0 webhook endpoint(s) resealed"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}
