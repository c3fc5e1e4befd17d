//! The demo's webhooks act (issue 16): the shop's app, played by a tiny
//! receiver inside the demo process, gets every event fenrun sends while
//! the story runs, and checks each as a shop would — the Standard Webhooks
//! signature against its `whsec_` secret, 204 when genuine and 400
//! otherwise, each `webhook-id` counted once. At the end the queue is
//! drained and the shop tells what it got, per type.
//!
//! ```text
//! open:   bind 127.0.0.1:0 ─► create_endpoint(url, ["*"]) ─► whsec_ kept by the shop ─► serve
//! story:  orders, refunds, withdrawals, certificates ─► outbox ─► deliverer ─► POST /fenrun/webhooks
//! finish: no pending delivery (bounded wait) ─► per type, 0 refused, a withdrawal.paid per payout
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

use crate::clock::{Clock, SimulatedClock};
use crate::domain::webhook_signature::WebhookSecret;
use crate::domain::webhooks::{ALL_EVENTS, EventType};
use crate::service::audit::Actor;
use crate::state::AppState;
use crate::store::DeliveryFilter;

/// Where the shop's app takes fenrun's webhooks.
const RECEIVER_PATH: &str = "/fenrun/webhooks";

/// How long the demo waits for the last deliveries once the story is told.
/// Most go while it runs; the rest (at worst about a thousand, at a few
/// milliseconds each) in a second or two, so this only bounds a stuck queue.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the wait looks at the queue.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The event the end of the act shows, as the shop got it.
const EXAMPLE_TYPE: EventType = EventType::WithdrawalPaid;

/// What the shop has received so far. Its sets grow with the demo's events
/// (about two thousand), so they need no bound of their own.
#[derive(Default)]
struct Tally {
    /// Every `webhook-id` accepted: a second delivery of one is a retry.
    seen: HashSet<String>,
    /// Accepted events per `type`.
    per_type: BTreeMap<String, u64>,
    /// Deliveries answered 400: a signature or timestamp that did not verify.
    refused: u64,
    /// Genuine deliveries of an id already accepted (answered 204 again).
    duplicates: u64,
    /// The withdrawals a `withdrawal.paid` was accepted for.
    paid: BTreeSet<String>,
    /// The first `withdrawal.paid`: its `webhook-id` and raw body.
    example: Option<(String, String)>,
}

/// The shop's side: the secret it was given and what it got.
struct Inbox {
    secret: WebhookSecret,
    tally: Mutex<Tally>,
}

impl Inbox {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A handler cannot panic while holding the lock; if one did, the
        // counts it left are still the best account there is.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shop's receiver, running until [`Shop::finish`].
pub struct Shop {
    endpoint_id: String,
    inbox: Arc<Inbox>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Shop {
    /// Starts the receiver on a free loopback port and registers it for
    /// every event, as the shop's admin would through the API. Needs
    /// `webhooks.allow_private_targets`, which the demo sets for itself.
    pub async fn open(state: &AppState) -> anyhow::Result<Shop> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{RECEIVER_PATH}", listener.local_addr()?);
        let created = crate::service::webhooks::create_endpoint(
            state,
            &Actor::system("demo"),
            &url,
            &[ALL_EVENTS.to_owned()],
            Some("the demo's shop"),
        )
        .await?;
        // Parsed once: the shop keeps the secret, never printed.
        let secret = WebhookSecret::parse(&created.secret)
            .map_err(|error| anyhow::anyhow!("the endpoint's new secret: {error}"))?;
        let inbox = Arc::new(Inbox {
            secret,
            tally: Mutex::default(),
        });
        let router = axum::Router::new()
            .route(RECEIVER_PATH, axum::routing::post(receive))
            .with_state(Arc::clone(&inbox));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        println!(
            "webhooks: the shop's receiver {url} is endpoint {} for every event (\"*\"); it keeps the whsec_ secret to verify each delivery",
            created.endpoint.id
        );
        Ok(Shop {
            endpoint_id: created.endpoint.id,
            inbox,
            stop,
            server,
        })
    }

    /// Waits for the queue to drain, stops the receiver and prints what the
    /// shop got; true when events arrived, every one verified, and every
    /// withdrawal paid since `payouts_since` had its `withdrawal.paid`.
    pub async fn finish(
        self,
        state: &AppState,
        clock: &SimulatedClock,
        payouts_since: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let pending = drain(state, &self.endpoint_id).await?;
        let _ = self.stop.send(());
        self.server.await??;
        // As the reconciliation act reads them: the simulated clock stands
        // still, so a payout of this very instant is before `now + 1 s`.
        let paid: BTreeSet<String> = state
            .store
            .payouts_between(payouts_since, clock.now() + chrono::Duration::seconds(1))
            .await?
            .into_iter()
            .map(|payout| payout.withdrawal_id)
            .collect();
        let tally = self.inbox.tally();
        println!(
            "\nwebhooks — what the shop's receiver got, each delivery checked against its Standard Webhooks signature and deduplicated on webhook-id"
        );
        for (kind, count) in in_catalogue_order(&tally.per_type) {
            println!("  {kind:<40} {count:>5}");
        }
        let received = tally.seen.len();
        let missing: Vec<&String> = paid.difference(&tally.paid).collect();
        println!(
            "the shop received {received} events: {received} verified, {} refused, {} duplicate(s) ignored; withdrawal.paid for {} of the {} payouts",
            tally.refused,
            tally.duplicates,
            paid.len() - missing.len(),
            paid.len()
        );
        if let Some((id, body)) = &tally.example {
            println!(
                "a {} as the shop got it (webhook-id {id}):",
                EXAMPLE_TYPE.as_str()
            );
            let pretty = serde_json::from_str::<serde_json::Value>(body)
                .and_then(|value| serde_json::to_string_pretty(&value))
                .unwrap_or_else(|_| body.clone());
            for line in pretty.lines() {
                println!("  {line}");
            }
        }
        if received == 0 {
            println!("NO event reached the shop (this is a bug)");
        }
        if tally.refused > 0 {
            println!(
                "{} deliveries did NOT verify (this is a bug)",
                tally.refused
            );
        }
        for id in &missing {
            println!("{id} was paid, but NO withdrawal.paid reached the shop");
        }
        if pending > 0 {
            println!("{pending} deliveries still pending after {DRAIN_TIMEOUT:?}");
        }
        Ok(received > 0 && tally.refused == 0 && missing.is_empty() && pending == 0)
    }
}

/// Waits, up to [`DRAIN_TIMEOUT`], until the endpoint has no pending
/// delivery; how many are left (0 once drained).
async fn drain(state: &AppState, endpoint_id: &str) -> anyhow::Result<usize> {
    let filter = DeliveryFilter {
        state: Some("pending".into()),
        endpoint_id: Some(endpoint_id.to_owned()),
        limit: crate::store::MAX_PAGE,
    };
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let pending = state.store.webhook_deliveries(&filter).await?.len();
        if pending == 0 || Instant::now() > deadline {
            return Ok(pending);
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// The counts in the catalogue's order, then any type it does not know.
fn in_catalogue_order(per_type: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let known = EventType::ALL
        .iter()
        .filter_map(|kind| Some((kind.as_str(), *per_type.get(kind.as_str())?)));
    let unknown = per_type
        .iter()
        .filter(|(kind, _)| EventType::parse(kind).is_none())
        .map(|(kind, count)| (kind.as_str(), *count));
    known.chain(unknown).collect()
}

/// One delivery, as the shop's app takes it: the raw body verified first,
/// 400 when it does not verify, 204 when genuine (again for a retry).
async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    };
    let id = header("webhook-id");
    // The shop's own clock: fenrun signs with the wall clock, not the
    // demo's simulated one.
    let verified = inbox.secret.verify(
        id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        Utc::now().timestamp(),
    );
    let mut tally = inbox.tally();
    if let Err(error) = verified {
        tally.refused += 1;
        tracing::warn!(event = %id, error = %error, "the demo's shop refused a webhook");
        return StatusCode::BAD_REQUEST;
    }
    if !tally.seen.insert(id.to_owned()) {
        tally.duplicates += 1;
        return StatusCode::NO_CONTENT;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or("(no type)").to_owned();
    if kind == EXAMPLE_TYPE.as_str() {
        if let Some(withdrawal) = event["data"]["id"].as_str() {
            tally.paid.insert(withdrawal.to_owned());
        }
        if tally.example.is_none() {
            tally.example = Some((id.to_owned(), String::from_utf8_lossy(&body).into_owned()));
        }
    }
    *tally.per_type.entry(kind).or_default() += 1;
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &WebhookSecret, id: &str, body: &str) -> HeaderMap {
        let now = Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", secret.sign(id, now, body.as_bytes())),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn the_shop_counts_a_genuine_event_once_and_refuses_a_changed_body() {
        let secret = WebhookSecret::from_bytes(vec![7; 32]).unwrap();
        let inbox = Arc::new(Inbox {
            secret: WebhookSecret::parse(&secret.reveal()).unwrap(),
            tally: Mutex::default(),
        });
        let body = r#"{"type":"withdrawal.paid","timestamp":"2026-12-06T04:00:00.000Z","data":{"id":"wd_1"}}"#;
        let headers = signed(&secret, "msg_1", body);
        let answer = |headers: HeaderMap, body: &'static str| {
            receive(State(Arc::clone(&inbox)), headers, Bytes::from(body))
        };
        assert_eq!(answer(headers.clone(), body).await, StatusCode::NO_CONTENT);
        assert_eq!(
            answer(headers.clone(), body).await,
            StatusCode::NO_CONTENT,
            "a retry is answered as delivered"
        );
        assert_eq!(
            answer(
                headers,
                r#"{"type":"withdrawal.paid","data":{"id":"wd_2"}}"#
            )
            .await,
            StatusCode::BAD_REQUEST
        );
        let other = WebhookSecret::from_bytes(vec![8; 32]).unwrap();
        assert_eq!(
            answer(signed(&other, "msg_2", body), body).await,
            StatusCode::BAD_REQUEST
        );
        let tally = inbox.tally();
        assert_eq!(tally.seen.len(), 1);
        assert_eq!(tally.per_type.get("withdrawal.paid"), Some(&1));
        assert_eq!((tally.duplicates, tally.refused), (1, 2));
        assert_eq!(tally.paid.iter().collect::<Vec<_>>(), ["wd_1"]);
        assert_eq!(
            tally.example.as_ref().map(|(id, _)| id.as_str()),
            Some("msg_1")
        );
    }
}
