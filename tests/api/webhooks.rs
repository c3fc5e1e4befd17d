//! Outgoing webhooks (issue 16) over HTTP, against a receiver in this
//! process, on both backends: an event goes out signed exactly when its
//! change commits (a change that rolls back sends nothing); a receiver
//! answering 503 with `Retry-After`, a redirect and a 500 gets the event on
//! the fourth attempt with the same `webhook-id`; 410 disables the endpoint,
//! and a replay after enabling it sends the same id again; a rotation signs
//! with both secrets; the admin API refuses private targets and bad input;
//! and a `fenrun serve` killed with -9 mid-delivery delivers after restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use fenrun::domain::identity::PayoutChannel;
use fenrun::domain::webhook_signature::WebhookSecret;
use serde_json::{Value, json};

use crate::crash::{Server, migrated_db};
use crate::helpers::{Backend, Http, TestApp, TestDb, error_of, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{funded_distributor_paid_to, payout_account, request, wait_for_state};

on_both_backends!(
    an_event_is_sent_signed_when_its_change_commits_and_never_when_it_rolls_back,
    a_failing_receiver_gets_the_same_id_until_it_answers_and_410_disables_until_replayed,
    the_admin_api_refuses_private_targets_and_bad_input_and_audits_without_secrets,
    a_server_killed_mid_delivery_delivers_after_restart_with_the_same_id,
);

/// How long a test waits for a delivery before failing.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    Redirect,
    /// Waits this long first (a server killed meanwhile never hears back).
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// What it answered (0 while a hanging answer is pending).
    pub answered: u16,
}

impl Received {
    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Checks the signature as a receiver's library would.
    pub fn verify(&self, secret: &str) -> bool {
        WebhookSecret::parse(secret)
            .expect("a whsec_ secret")
            .verify(
                &self.id,
                &self.timestamp,
                &self.signature,
                self.body.as_bytes(),
                Utc::now().timestamp(),
            )
            .is_ok()
    }
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// A webhook receiver on a free loopback port: answers from its script,
/// then 204, and keeps every request.
pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Reply>) -> Receiver {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.into()),
            received: Mutex::default(),
        });
        let shared = state.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = shared.clone();
                async move { receive(&state, &headers, body).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the receiver");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, state }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until some request satisfies `found`.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        found: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + DELIVERY_WAIT;
        loop {
            let received = self.received();
            if found(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never got {what}; it got {received:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_type(&self, kind: &str) -> Received {
        let received = self
            .wait_for(kind, |all| all.iter().any(|one| type_of(one) == kind))
            .await;
        received
            .into_iter()
            .find(|one| type_of(one) == kind)
            .unwrap()
    }
}

fn type_of(received: &Received) -> String {
    received.body_json()["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn receive(
    state: &ReceiverState,
    headers: &HeaderMap,
    body: String,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(204));
    let index = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
            answered: 0,
        });
        received.len() - 1
    };
    let (status, response) = match reply {
        Reply::Status(status) => (
            status,
            StatusCode::from_u16(status).unwrap().into_response(),
        ),
        Reply::RetryAfter(status, after) => (
            status,
            (
                StatusCode::from_u16(status).unwrap(),
                [("retry-after", after)],
            )
                .into_response(),
        ),
        Reply::Redirect => (
            302,
            (
                StatusCode::FOUND,
                [("location", "http://127.0.0.1:9/elsewhere")],
            )
                .into_response(),
        ),
        Reply::Hang(pause) => {
            tokio::time::sleep(pause).await;
            (204, StatusCode::NO_CONTENT.into_response())
        }
    };
    state.received.lock().unwrap()[index].answered = status;
    response
}

pub(crate) async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.webhooks.allow_private_targets = true;
    })
    .await
}

/// Registers an endpoint for `events`; returns its id and secret.
pub(crate) async fn endpoint(http: &Http, url: &str, events: &[&str]) -> (String, String) {
    let response = http
        .post_json(
            "/v1/admin/webhooks",
            &http.admin,
            &json!({"url": url, "events": events, "description": "the shop's app"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["state"], "enabled");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Pays an express withdrawal of `amount` from a fresh distributor `id`;
/// returns the withdrawal's id once paid.
pub(crate) async fn pay(app: &TestApp, id: &str, amount: &str) -> String {
    let (token, account) = funded_distributor_paid_to(
        app,
        id,
        "1000.00",
        &payout_account(PayoutChannel::Wechat, 1),
    )
    .await;
    let response = request(
        app,
        &token,
        &format!("pay-{id}"),
        &json!({"distributor_id": id, "amount": amount, "payout_account_id": account, "speed": "express"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let withdrawal: Value = response.json().await.unwrap();
    let withdrawal_id = withdrawal["id"].as_str().unwrap().to_owned();
    approve_if_reviewing(app, &withdrawal).await;
    wait_for_state(app, &withdrawal_id, "paid").await;
    withdrawal_id
}

/// A new distributor's first withdrawal waits for review: ops approves it.
async fn approve_if_reviewing(app: &TestApp, withdrawal: &Value) {
    if withdrawal["state"] == "reviewing" {
        let id = withdrawal["id"].as_str().unwrap();
        let response = app
            .post_json(
                &format!("/v1/withdrawals/{id}/approve"),
                &app.ops,
                &json!({}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
}

async fn deliveries(http: &Http, query: &str) -> Vec<Value> {
    let response = http
        .get(&format!("/v1/ops/webhooks/deliveries{query}"), &http.ops)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A trigger that fails a withdrawal request's transaction after its
/// `withdrawal.requested` event was written (at the tax line of its
/// timeline), so the change rolls back with the event in it.
async fn fail_requests_after_their_event(db: &TestDb, on: bool) {
    let postgres = db.url.starts_with("postgres");
    let statements: &[&str] = match (postgres, on) {
        (false, true) => &[
            "create trigger fail_after_event before insert on withdrawal_events when new.step = 'tax' \
             begin select raise(abort, 'injected failure'); end",
        ],
        (false, false) => &["drop trigger fail_after_event"],
        (true, true) => &[
            "create function fail_after_event() returns trigger language plpgsql as $$ begin \
             if new.step = 'tax' then raise exception 'injected failure'; end if; return new; end $$",
            "create trigger fail_after_event before insert on withdrawal_events for each row \
             execute function fail_after_event()",
        ],
        (true, false) => &["drop trigger fail_after_event on withdrawal_events"],
    };
    if postgres {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        run_each(&pool, statements).await;
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        run_each(&pool, statements).await;
    }
}

async fn run_each<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, statements: &[&str])
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
            .execute(pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

async fn an_event_is_sent_signed_when_its_change_commits_and_never_when_it_rolls_back(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (endpoint_id, secret) = endpoint(&app, &receiver.url, &["*"]).await;

    // A change that rolls back after writing its event sends nothing.
    let (token, account) = funded_distributor_paid_to(
        &app,
        "hook001",
        "1000.00",
        &payout_account(PayoutChannel::Wechat, 1),
    )
    .await;
    fail_requests_after_their_event(&app.db, true).await;
    let body = json!({"distributor_id": "hook001", "amount": "100.00", "payout_account_id": account, "speed": "express"});
    let refused = request(&app, &token, "rolled-back", &body).await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    fail_requests_after_their_event(&app.db, false).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());
    assert!(deliveries(&app, "").await.is_empty());

    // The same request committed: requested, approved, paid, and the
    // certificate, each signed, with its id as the webhook-id.
    let response = request(&app, &token, "committed", &body).await;
    assert_eq!(response.status(), 202);
    let withdrawal: Value = response.json().await.unwrap();
    let id = withdrawal["id"].as_str().unwrap();
    assert_eq!(
        withdrawal["state"], "reviewing",
        "a new distributor's first withdrawal"
    );
    approve_if_reviewing(&app, &withdrawal).await;
    wait_for_state(&app, id, "paid").await;
    for kind in [
        "withdrawal.requested",
        "withdrawal.in_review",
        "withdrawal.approved",
        "withdrawal.paid",
        "certificate.issued",
    ] {
        let event = receiver.wait_for_type(kind).await;
        assert!(event.verify(&secret), "{kind} is signed with the secret");
        assert!(!event.verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(event.id.starts_with("msg_"));
        let parsed = event.body_json();
        assert!(parsed["timestamp"].as_str().is_some());
        match kind {
            "certificate.issued" => {
                assert_eq!(parsed["data"]["withdrawal_id"], id);
                assert_eq!(parsed["data"]["gross"], "100.00");
            }
            _ => {
                assert_eq!(parsed["data"]["id"], id);
                assert_eq!(parsed["data"]["distributor_id"], "hook001");
                assert_eq!(parsed["data"]["gross"], withdrawal["gross"]);
                assert_eq!(parsed["data"]["net"], withdrawal["net"]);
            }
        }
    }
    let paid = receiver.wait_for_type("withdrawal.paid").await;
    assert_eq!(paid.body_json()["data"]["state"], "paid");
    assert_eq!(paid.body_json()["data"]["channel"], "wechat");
    let received = receiver.received();
    let mut ids: Vec<&str> = received.iter().map(|one| one.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), received.len(), "each event once: {received:#?}");

    // The timeline's deliveries, and the ops list, show them delivered.
    let listed = deliveries(&app, &format!("?endpoint_id={endpoint_id}")).await;
    assert_eq!(listed.len(), received.len());
    assert!(
        listed
            .iter()
            .all(|one| one["state"] == "delivered" && one["attempts"] == 1)
    );
    let about_it = received
        .iter()
        .filter(|one| {
            let data = &one.body_json()["data"];
            data["id"] == id || data["withdrawal_id"] == id
        })
        .count();
    let of_withdrawal = app.store.webhook_deliveries_of_subject(id).await.unwrap();
    assert_eq!(of_withdrawal.len(), about_it);

    // A rotation signs with both secrets until the overlap ends.
    let response = app
        .post_json(
            &format!("/v1/admin/webhooks/{endpoint_id}/rotate-secret"),
            &app.admin,
            &json!({"overlap_hours": 2}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let before = receiver.received().len();
    pay(&app, "hook002", "50.00").await;
    let received = receiver
        .wait_for("the next payout's events", |all| {
            all[before..]
                .iter()
                .any(|one| type_of(one) == "withdrawal.paid")
        })
        .await;
    let next = received[before..]
        .iter()
        .find(|one| type_of(one) == "withdrawal.paid")
        .unwrap();
    assert_eq!(next.signature.split(' ').count(), 2, "{}", next.signature);
    assert!(next.verify(new_secret) && next.verify(&secret));
}

async fn a_failing_receiver_gets_the_same_id_until_it_answers_and_410_disables_until_replayed(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let receiver = Receiver::start(vec![
        Reply::RetryAfter(503, "7200"),
        Reply::Redirect,
        Reply::Status(500),
    ])
    .await;
    let (endpoint_id, secret) = endpoint(&app, &receiver.url, &["withdrawal.paid"]).await;
    let withdrawal = pay(&app, "retry001", "100.00").await;

    // 503 asking for two hours: the next attempt waits at least that.
    receiver
        .wait_for("the first attempt", |all| all.len() == 1)
        .await;
    let first = wait_for_delivery(&app, &endpoint_id, |one| one["attempts"] == 1).await;
    assert_eq!(first["state"], "pending");
    assert_eq!(first["last_status"], 503);
    let waited = at(&first["next_attempt_at"]) - at(&first["last_attempt_at"]);
    assert!(waited >= chrono::Duration::seconds(7200), "{first:#}");
    advance(&app, 3600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "not before Retry-After");

    // Then a redirect (not followed) and a 500, then 204: four attempts.
    for attempts in 2..=4 {
        advance(&app, 4 * 3600).await;
        receiver
            .wait_for(&format!("attempt {attempts}"), |all| all.len() == attempts)
            .await;
    }
    let received = receiver.received();
    assert_eq!(
        received.iter().map(|one| one.answered).collect::<Vec<_>>(),
        [503, 302, 500, 204]
    );
    assert!(received.iter().all(|one| one.id == received[0].id));
    assert!(received.iter().all(|one| one.verify(&secret)));
    assert_eq!(received[0].body_json()["data"]["id"], withdrawal);
    let delivered = wait_for_delivery(&app, &endpoint_id, |one| one["state"] == "delivered").await;
    assert_eq!(delivered["attempts"], 4);
    assert_eq!(delivered["event_id"], received[0].id);

    // 410 disables the endpoint and gives up its delivery.
    let gone = Receiver::start(vec![Reply::Status(410)]).await;
    let (gone_id, _) = endpoint(&app, &gone.url, &["withdrawal.paid"]).await;
    pay(&app, "retry002", "60.00").await;
    gone.wait_for("the 410", |all| all.len() == 1).await;
    let failed = wait_for_delivery(&app, &gone_id, |one| one["state"] == "failed").await;
    let endpoint: Value = app
        .get(&format!("/v1/admin/webhooks/{gone_id}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(endpoint["state"], "disabled");
    assert_eq!(endpoint["health"], "disabled");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    let replay = format!(
        "/v1/ops/webhooks/deliveries/{}/replay",
        failed["id"].as_str().unwrap()
    );
    let refused = app.post_json(&replay, &app.ops, &json!({})).await;
    assert_eq!(
        error_of(refused, 409).await["code"],
        "webhook_endpoint_disabled"
    );
    // Another payout meanwhile is not queued for the disabled endpoint.
    pay(&app, "retry003", "70.00").await;
    assert_eq!(
        deliveries(&app, &format!("?endpoint_id={gone_id}"))
            .await
            .len(),
        1
    );

    // Enabled again, a replay sends the same id once more.
    let response = app
        .post_json(
            &format!("/v1/admin/webhooks/{gone_id}/enable"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app.post_json(&replay, &app.ops, &json!({})).await;
    assert_eq!(response.status(), 200);
    let again = gone.wait_for("the replay", |all| all.len() == 2).await;
    assert_eq!(again[1].id, again[0].id);
    assert_eq!(again[1].answered, 204);
    wait_for_delivery(&app, &gone_id, |one| one["state"] == "delivered").await;
    let audit: Value = app
        .get(
            &format!(
                "/v1/audit?target=webhook_delivery:{}",
                failed["id"].as_str().unwrap()
            ),
            &app.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit.to_string().contains("webhooks.replay_delivery"),
        "{audit}"
    );
}

/// Moves the simulated clock forward.
pub(crate) async fn advance(http: &Http, seconds: u64) {
    let response = http
        .post_json(
            "/v1/admin/clock/advance",
            &http.admin,
            &json!({"seconds": seconds}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// Waits until the endpoint's only (newest) delivery satisfies `done`.
pub(crate) async fn wait_for_delivery(
    app: &TestApp,
    endpoint_id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let listed = deliveries(app, &format!("?endpoint_id={endpoint_id}&limit=1")).await;
        if let Some(delivery) = listed.first()
            && done(delivery)
        {
            return delivery.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the delivery never got there: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_admin_api_refuses_private_targets_and_bad_input_and_audits_without_secrets(
    backend: Backend,
) {
    // Private targets are refused unless the setting allows them.
    let app = spawn_app_with(backend, |_| {}).await;
    for (url, status, code) in [
        ("http://127.0.0.1:9000/hook", 422, "webhook_target_refused"),
        ("https://10.0.0.7/hook", 422, "webhook_target_refused"),
        (
            "https://169.254.169.254/latest",
            422,
            "webhook_target_refused",
        ),
        ("https://localhost/hook", 422, "webhook_target_refused"),
        (
            "http://shop.example.com/hook",
            422,
            "webhook_target_refused",
        ),
        ("not a url", 400, "invalid_field"),
        (
            "https://user:pw@shop.example.com/hook",
            400,
            "invalid_field",
        ),
    ] {
        let response = app
            .post_json(
                "/v1/admin/webhooks",
                &app.admin,
                &json!({"url": url, "events": ["withdrawal.paid"]}),
            )
            .await;
        let error = error_of(response, status).await;
        assert_eq!(error["code"], code, "{url}");
        assert_eq!(error["field"], "url", "{url}");
    }
    for events in [json!([]), json!(["withdrawal.transferring"])] {
        let response = app
            .post_json(
                "/v1/admin/webhooks",
                &app.admin,
                &json!({"url": "https://shop.example.com/hook", "events": events}),
            )
            .await;
        assert_eq!(error_of(response, 400).await["field"], "events");
    }
    let body = json!({"url": "https://shop.example.com/hooks/fenrun", "events": ["*"]});
    for token in [&app.ops, &app.ingest, &app.accountant] {
        let response = app.post_json("/v1/admin/webhooks", token, &body).await;
        assert_eq!(response.status(), 403);
    }
    assert!(
        app.store.webhook_endpoints().await.unwrap().is_empty(),
        "nothing refused was stored"
    );

    let (id, secret) = endpoint(&app, "https://shop.example.com/hooks/fenrun", &["*"]).await;
    let listed = app
        .get("/v1/admin/webhooks", &app.admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains(&id) && !listed.contains("whsec_"),
        "{listed}"
    );
    let response = app
        .post_json(
            &format!("/v1/admin/webhooks/{id}/rotate-secret"),
            &app.admin,
            &json!({"overlap_hours": 1000}),
        )
        .await;
    assert_eq!(error_of(response, 400).await["field"], "overlap_hours");
    let response = app
        .post_json(
            &format!("/v1/admin/webhooks/{id}/rotate-secret"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let until = at(&rotated["previous_secret_expires_at"]) - Utc::now();
    assert!((23..=24).contains(&until.num_hours()), "{rotated}");
    let shown: Value = app
        .get(&format!("/v1/admin/webhooks/{id}"), &app.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"]
    );

    let response = app
        .client
        .delete(app.url(&format!("/v1/admin/webhooks/{id}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .get(&format!("/v1/admin/webhooks/{id}"), &app.admin)
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .post_json(
            "/v1/ops/webhooks/deliveries/999/replay",
            &app.ops,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 404);

    let audit = app.get("/v1/audit", &app.admin).await.text().await.unwrap();
    for action in [
        "webhooks.create_endpoint",
        "webhooks.rotate_secret",
        "webhooks.delete_endpoint",
    ] {
        assert!(audit.contains(action), "{action} audited");
    }
    assert!(!audit.contains("whsec_") && !audit.contains(&secret[6..]));
}

async fn a_server_killed_mid_delivery_delivers_after_restart_with_the_same_id(backend: Backend) {
    let (db, logs) = migrated_db(backend).await;
    let mut server = Server::new(&db.url, logs.path()).with_env(vec![(
        "FENRUN_WEBHOOKS_ALLOW_PRIVATE_TARGETS".to_owned(),
        "true".to_owned(),
    )]);
    let client = reqwest::Client::new();
    let address = server.start(&client).await;
    let http = Http::attach(&address, Arc::new(db.open().await)).await;
    // The first attempt hangs until the server is gone.
    let receiver = Receiver::start(vec![Reply::Hang(Duration::from_secs(20))]).await;
    let (endpoint_id, secret) = endpoint(&http, &receiver.url, &["commission.pending"]).await;
    http.create_distributor("kill001", None, None).await;
    let confirmed = Utc::now() - chrono::Duration::hours(1);
    let response = http
        .post_json(
            "/v1/orders",
            &http.ingest,
            &json!({
                "order_id": "kill-order-1",
                "distributor_id": "kill001",
                "buyer_id": "buyer-1",
                "placed_at": (confirmed - chrono::Duration::days(1)).to_rfc3339(),
                "confirmed_at": confirmed.to_rfc3339(),
                "items": [{"sku": "S1", "category": "food", "amount": "100.00"}],
            }),
        )
        .await;
    assert_eq!(response.status(), 202);
    receiver
        .wait_for("the first attempt", |all| all.len() == 1)
        .await;
    server.kill();

    // After a restart the lapsed claim is taken over: same id, delivered.
    let address = server.start(&client).await;
    let http = Http::attach(&address, Arc::new(db.open().await)).await;
    advance(&http, 120).await;
    let received = receiver
        .wait_for("the attempt after the restart", |all| all.len() == 2)
        .await;
    assert_eq!(received[1].id, received[0].id);
    assert!(received[1].verify(&secret));
    assert_eq!(received[1].body_json()["data"]["order_id"], "kill-order-1");
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let listed: Vec<Value> = http
            .get(
                &format!("/v1/ops/webhooks/deliveries?endpoint_id={endpoint_id}"),
                &http.ops,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "one delivery: {listed:#?}");
        if listed[0]["state"] == "delivered" {
            assert_eq!(
                listed[0]["attempts"], 1,
                "the killed attempt was never recorded"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{listed:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "nothing sent after it was delivered"
    );
}
