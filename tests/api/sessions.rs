//! Page sessions and API tokens (issue 17 item 5): the login cookie is an
//! opaque server-side session that opens pages only; it ends on logout,
//! when idle, at its absolute end, and with its token; tokens expire and are
//! revoked at once in every process; the token list never shows a token.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::tax_page::{browser, get_page, post_login, sign_in};

on_both_backends!(
    the_login_cookie_is_an_opaque_session_that_opens_pages_only_until_logout,
    an_idle_session_ends_and_a_busy_one_ends_at_its_absolute_end,
    an_expired_token_is_refused_with_its_sessions,
    a_revoked_token_stops_at_once_with_its_sessions_and_revoking_is_audited_once,
    the_token_list_shows_every_token_but_never_a_token_or_its_hash,
    the_store_keeps_token_expiry_and_sessions_to_the_microsecond,
    the_command_line_issues_expiring_tokens_lists_and_revokes_them_for_a_running_server,
);

/// `true` when `cookie` opens `path` (200), `false` when it is sent to log in.
async fn opens(app: &TestApp, path: &str, cookie: &str) -> bool {
    let response = get_page(app, path, cookie).await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            let location = response.headers()[LOCATION].to_str().unwrap();
            assert!(location.starts_with("/login?next="), "{location}");
            false
        }
        other => panic!("{path}: {other}"),
    }
}

pub async fn advance(app: &TestApp, seconds: u64) {
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({ "seconds": seconds }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The id (`tok_…`) of the only token with `role`.
async fn token_id_of(app: &TestApp, role: &str) -> String {
    let list: Value = app
        .get("/v1/admin/tokens", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|token| token["role"] == role)
        .map(|token| token["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{list:#}");
    ids[0].to_owned()
}

async fn the_login_cookie_is_an_opaque_session_that_opens_pages_only_until_logout(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let response = post_login(&app, app.accountant.as_str(), "/tax", None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    // A session cookie: the browser drops it when it closes.
    assert!(
        !set_cookie.contains("Max-Age") && !set_cookie.contains("Expires"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let id = cookie.strip_prefix("fenrun_session=").unwrap().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let token_hex = app.accountant.trim_start_matches("fenrun_");
    assert!(!id.contains(token_hex) && !token_hex.contains(&id));
    // Stored hashed: the id itself finds nothing.
    assert!(app.store.session_by_hash(&id).await.unwrap().is_none());
    let hash = fenrun::domain::digest::sha256_hex(id.as_bytes());
    assert!(app.store.session_by_hash(&hash).await.unwrap().is_some());

    assert!(opens(&app, "/tax", &cookie).await);
    // Not a bearer token, and no API route reads the cookie.
    let as_bearer = app.get("/v1/tax/certificates?month=2026-11", &id).await;
    assert_eq!(error_of(as_bearer, 401).await["code"], "invalid_token");
    let as_cookie = browser()
        .get(app.url("/v1/tax/certificates?month=2026-11"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(as_cookie, 401).await["code"], "unauthenticated");
    // The cookie of earlier versions, holding a real token, opens nothing either.
    let legacy = format!("fenrun_token={}", app.accountant);
    assert!(!opens(&app, "/tax", &legacy).await);
    let response = browser()
        .get(app.url("/v1/tax/certificates?month=2026-11"))
        .header(COOKIE, &legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // An ops session opens the console; logging out ends it on the server:
    // the old cookie, replayed, opens neither page.
    let ops = sign_in(&app, &app.ops).await;
    assert!(opens(&app, "/ops", &ops).await);
    let response = browser()
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(!opens(&app, "/tax", &cookie).await);
    assert!(app.store.session_by_hash(&hash).await.unwrap().is_none());
    let response = browser()
        .post(app.url("/logout"))
        .header(COOKIE, &ops)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(!opens(&app, "/ops", &ops).await);
    // The token itself still works: logging out ends a session, not a token.
    assert_eq!(
        app.get("/v1/ops/queues", &app.ops).await.status(),
        StatusCode::OK
    );
}

async fn an_idle_session_ends_and_a_busy_one_ends_at_its_absolute_end(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.run_workers = false;
        settings.guard.session_idle_timeout_seconds = 60;
        settings.guard.session_absolute_timeout_seconds = 150;
    })
    .await;
    // Idle: a minute without a page request ends it.
    let idle = sign_in(&app, &app.accountant).await;
    advance(&app, 59).await;
    assert!(opens(&app, "/tax", &idle).await);
    advance(&app, 60).await;
    assert!(!opens(&app, "/tax", &idle).await);

    // Busy: each request restarts the idle minute, but not the absolute end.
    let busy = sign_in(&app, &app.accountant).await;
    for _ in 0..2 {
        advance(&app, 50).await;
        assert!(opens(&app, "/tax", &busy).await);
    }
    advance(&app, 45).await; // 145 s after sign-in
    assert!(opens(&app, "/tax", &busy).await);
    advance(&app, 5).await; // 150 s: over
    assert!(!opens(&app, "/tax", &busy).await);
    // Signing in again starts afresh.
    let again = sign_in(&app, &app.accountant).await;
    assert!(opens(&app, "/tax", &again).await);
}

async fn an_expired_token_is_refused_with_its_sessions(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.run_workers = false;
        settings.guard.session_idle_timeout_seconds = 86_400;
        settings.guard.session_absolute_timeout_seconds = 86_400;
    })
    .await;
    // The simulated clock started at the real time, a moment before this.
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let issued = fenrun::service::tokens::create_expiring(
        &app.store,
        fenrun::domain::access::Role::Accountant,
        None,
        Some(expires_at),
        chrono::Utc::now(),
        &fenrun::service::audit::Actor::system("test"),
    )
    .await
    .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned();
    assert_eq!(
        app.get("/v1/tax/certificates?month=2026-11", &token)
            .await
            .status(),
        StatusCode::OK
    );
    let cookie = sign_in(&app, &token).await;
    assert!(opens(&app, "/tax", &cookie).await);
    let list: Value = app
        .get("/v1/admin/tokens", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|listed| listed["id"] == issued.id.as_str())
        .unwrap()
        .clone();
    let listed_expiry: chrono::DateTime<chrono::Utc> =
        listed["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        listed_expiry,
        chrono::SubsecRound::trunc_subsecs(expires_at, 6)
    );

    advance(&app, 2 * 3600).await;
    let error = error_of(
        app.get("/v1/tax/certificates?month=2026-11", &token).await,
        401,
    )
    .await;
    assert_eq!(error["code"], "invalid_token");
    assert!(!opens(&app, "/tax", &cookie).await);
    let response = post_login(&app, token.as_str(), "/tax", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Refusals are counted by surface and reason.
    let metrics = app.get("/metrics", &app.admin).await.text().await.unwrap();
    for series in [
        r#"fenrun_auth_failures_total{surface="api",reason="expired"}"#,
        r#"fenrun_auth_failures_total{surface="page",reason="expired"}"#,
        r#"fenrun_auth_failures_total{surface="login",reason="expired"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
}

async fn a_revoked_token_stops_at_once_with_its_sessions_and_revoking_is_audited_once(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let cookie = sign_in(&app, &app.accountant).await;
    assert!(opens(&app, "/tax", &cookie).await);
    assert_eq!(
        app.get("/v1/tax/certificates?month=2026-11", &app.accountant)
            .await
            .status(),
        StatusCode::OK
    );
    let id = token_id_of(&app, "accountant").await;
    // Only an admin may revoke.
    let response = app
        .client
        .delete(app.url(&format!("/v1/admin/tokens/{id}")))
        .bearer_auth(&app.ops)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let revoke = || {
        app.client
            .delete(app.url(&format!("/v1/admin/tokens/{id}")))
            .bearer_auth(&app.admin)
            .send()
    };
    assert_eq!(revoke().await.unwrap().status(), StatusCode::NO_CONTENT);
    // At once: the very next request, bearer or session.
    let error = error_of(
        app.get("/v1/tax/certificates?month=2026-11", &app.accountant)
            .await,
        401,
    )
    .await;
    assert_eq!(error["code"], "invalid_token");
    assert!(!opens(&app, "/tax", &cookie).await);
    // Again: fine, and nothing more is recorded.
    assert_eq!(revoke().await.unwrap().status(), StatusCode::NO_CONTENT);
    let response = app
        .client
        .delete(app.url("/v1/admin/tokens/tok_ffffffffffffffff"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response, 404).await["code"], "not_found");
    let audit: Value = app
        .get(&format!("/v1/audit?target=token:{id}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    let revocations: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "token.revoke")
        .collect();
    assert_eq!(revocations.len(), 1, "{audit:#}");
    assert_eq!(revocations[0]["actor"], token_id_of(&app, "admin").await);
    let list: Value = app
        .get("/v1/admin/tokens", &app.admin)
        .await
        .json()
        .await
        .unwrap();
    let revoked = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["id"] == id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked:#}");
    // A revoked token cannot sign in to the pages either.
    let response = post_login(&app, app.accountant.as_str(), "/tax", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn the_token_list_shows_every_token_but_never_a_token_or_its_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("dora", None, None).await;
    let dora = app.distributor_token("dora").await;
    let response = app.get("/v1/admin/tokens?limit=2", &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/v1/admin/tokens?after={after}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(rest["next_after"].is_null());
    let items: Vec<Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(items.len(), 5, "{items:#?}");
    let dora_listed = items
        .iter()
        .find(|token| token["role"] == "distributor")
        .unwrap();
    assert_eq!(dora_listed["distributor_id"], "dora");
    for token in &items {
        let mut keys: Vec<&str> = token
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "created_at",
                "distributor_id",
                "expires_at",
                "id",
                "revoked_at",
                "role"
            ]
        );
    }
    let text = format!("{first}{rest}");
    for secret in [&app.admin, &app.ops, &app.ingest, &app.accountant, &dora] {
        let hex = secret.trim_start_matches("fenrun_");
        let hash = fenrun::domain::digest::sha256_hex(secret.as_bytes());
        assert!(!text.contains(hex) && !text.contains(&hash), "{text}");
    }
    assert!(!text.contains("fenrun_"), "{text}");
    // Admins only.
    let response = app.get("/v1/admin/tokens", &app.ops).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .client
        .get(app.url("/v1/admin/tokens"))
        .header(AUTHORIZATION, "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn the_store_keeps_token_expiry_and_sessions_to_the_microsecond(backend: Backend) {
    let db = crate::helpers::TestDb::new(backend).await;
    let store = db.open().await;
    let actor = fenrun::service::audit::Actor::system("test");
    let now: chrono::DateTime<chrono::Utc> = "2026-12-03T10:00:00.123456Z".parse().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> = "2027-01-01T00:00:00.654321Z".parse().unwrap();
    store
        .insert_token(
            "tok_a",
            "hash-a",
            fenrun::domain::access::Role::Ops,
            None,
            Some(expires_at),
            now,
            &actor,
        )
        .await
        .unwrap();
    let token = store.token_by_hash("hash-a").await.unwrap().unwrap();
    assert_eq!((token.revoked, token.expires_at), (false, Some(expires_at)));

    let session_end = now + chrono::Duration::hours(12);
    store
        .create_session(
            "s1",
            "tok_a",
            now,
            session_end,
            now - chrono::Duration::minutes(30),
        )
        .await
        .unwrap();
    let session = store.session_by_hash("s1").await.unwrap().unwrap();
    assert_eq!(
        (session.last_seen_at, session.expires_at),
        (now, session_end)
    );
    assert_eq!(session.token.id, "tok_a");
    let later = now + chrono::Duration::seconds(90);
    store.touch_session("s1", later).await.unwrap();
    assert_eq!(
        store
            .session_by_hash("s1")
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    // A second session, started after the first went idle, cleans it away.
    let much_later = later + chrono::Duration::hours(1);
    store
        .create_session(
            "s2",
            "tok_a",
            much_later,
            much_later + chrono::Duration::hours(12),
            much_later - chrono::Duration::minutes(30),
        )
        .await
        .unwrap();
    assert!(store.session_by_hash("s1").await.unwrap().is_none());

    // Revoking ends the token's sessions and records one audit entry.
    let revoke = |id: &'static str| store.revoke_token(id, much_later, &actor);
    assert_eq!(
        revoke("tok_a").await.unwrap(),
        Some(fenrun::store::Revocation::Revoked)
    );
    assert!(
        store
            .token_by_hash("hash-a")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(store.session_by_hash("s2").await.unwrap().is_none());
    assert_eq!(
        revoke("tok_a").await.unwrap(),
        Some(fenrun::store::Revocation::AlreadyRevoked)
    );
    assert_eq!(revoke("tok_nope").await.unwrap(), None);
    let audit = store
        .audit_entries(None, Some("token:tok_a"), 10)
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|(_, entry)| entry.action.as_str())
        .collect();
    assert_eq!(actions, ["token.revoke", "token.create"]);
    let listed = store.tokens(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].expires_at, Some(expires_at));
    assert!(listed[0].revoked_at.is_some());
    store.close().await;
}

/// Runs the `fenrun` binary against `database_url`: another process.
async fn fenrun(database_url: &str, args: &[&str]) -> std::process::Output {
    let database_url = database_url.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fenrun"))
            .args(&args)
            .env("FENRUN_DATABASE_URL", database_url)
            .env_remove("FENRUN_CONFIG")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run fenrun")
    })
    .await
    .unwrap()
}

async fn the_command_line_issues_expiring_tokens_lists_and_revokes_them_for_a_running_server(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let created = fenrun(
        &app.db.url,
        &["token", "create", "--role", "ops", "--expires-in", "1h"],
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let said = String::from_utf8(created.stderr).unwrap();
    let id = said
        .split_whitespace()
        .find(|word| word.starts_with("tok_"))
        .unwrap()
        .to_owned();
    assert!(said.contains("valid until"), "{said}");
    assert_eq!(
        app.get("/v1/ops/queues", &token).await.status(),
        StatusCode::OK
    );
    let cookie = sign_in(&app, &token).await;
    assert!(opens(&app, "/ops", &cookie).await);

    let listed = fenrun(&app.db.url, &["token", "list"]).await;
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains(&id), "{listed}");
    assert!(
        !listed.contains(token.trim_start_matches("fenrun_")),
        "{listed}"
    );
    let json = fenrun(&app.db.url, &["token", "list", "--json"]).await;
    let line = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .find(|line| line.contains(&id))
        .unwrap()
        .to_owned();
    let listed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(listed["role"], "ops");
    assert!(listed["expires_at"].is_string() && listed["revoked_at"].is_null());

    // Revoked by another process: refused at the very next request, both ways.
    let revoked = fenrun(&app.db.url, &["token", "revoke", &id]).await;
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        app.get("/v1/ops/queues", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(!opens(&app, "/ops", &cookie).await);
    let again = fenrun(&app.db.url, &["token", "revoke", &id]).await;
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8(again.stdout)
            .unwrap()
            .contains("already revoked")
    );
    let unknown = fenrun(&app.db.url, &["token", "revoke", "tok_ffffffffffffffff"]).await;
    assert!(!unknown.status.success());

    // The session and limit settings are read from the environment too, and
    // a bad one fails the start with its key.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .arg("migrate")
        .env("FENRUN_DATABASE_URL", &app.db.url)
        .env("FENRUN_SESSION_IDLE_TIMEOUT_SECONDS", "0")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("session_idle_timeout_seconds"), "{said}");

    // An expiry in the past, or a lifetime that is none, is refused.
    for args in [
        &[
            "token",
            "create",
            "--role",
            "ops",
            "--expires-at",
            "2000-01-01T00:00:00Z",
        ][..],
        &["token", "create", "--role", "ops", "--expires-in", "0d"][..],
        &[
            "token",
            "create",
            "--role",
            "ops",
            "--expires-in",
            "1d",
            "--expires-at",
            "2999-01-01T00:00:00Z",
        ][..],
    ] {
        let output = fenrun(&app.db.url, args).await;
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let future = fenrun(
        &app.db.url,
        &[
            "token",
            "create",
            "--role",
            "accountant",
            "--expires-at",
            "2999-01-01T08:00:00+08:00",
        ],
    )
    .await;
    assert!(future.status.success(), "{future:?}");
    let future = String::from_utf8(future.stdout).unwrap().trim().to_owned();
    assert_eq!(
        app.get("/v1/tax/certificates?month=2026-11", &future)
            .await
            .status(),
        StatusCode::OK
    );
}
