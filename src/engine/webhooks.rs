//! Delivering webhooks (issue 16): a loop in every process that runs
//! workers claims the due deliveries of the outbox under a lease, signs
//! each (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), POSTs it with a 15 s timeout and no redirects, and
//! records the answer: delivered, retried on the schedule (honouring
//! `Retry-After`), given up, or the endpoint disabled (410, or failing for
//! five days). A process killed mid-send leaves its claim to lapse, and the
//! delivery goes again with the same `webhook-id`: receivers dedupe on it.
//!
//! Deliveries to one endpoint are sent one at a time in event order within
//! a claim; across claims, retries and processes no order is promised
//! (README "Receiving webhooks").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::webhook_signature::{WebhookSecret, signature_header};
use crate::domain::webhooks::{
    Verdict, asks_to_back_off, check_target, is_public, judge, parse_retry_after, retry_delay,
};
use crate::store::{ClaimedDelivery, Store, StoreError, WebhookAttempt};
use crate::telemetry::metrics as telemetry;
use crate::vault::credentials::webhook_secret_aad;
use crate::vault::{SealedValue, Vault};

/// How long a receiver has to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim holds: well over a send's timeout, so only a dead
/// process's claims lapse.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// Deliveries claimed per round trip.
const CLAIM_BATCH: i64 = 32;
/// How often an idle loop looks for due deliveries.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// After a database error, before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an answer's body ops sees.
const RESPONSE_KEPT_BYTES: usize = 512;
/// Resolves host names to public addresses only, so a name pointing at the
/// internal network (or re-pointed there after the endpoint was checked)
/// is refused at connect time.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (private targets are not allowed)"
                )
                .into());
            }
            let addresses: Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

/// What one attempt got back.
struct Answer {
    status: Option<u16>,
    retry_after: Option<chrono::Duration>,
    error: Option<String>,
    response: Option<String>,
}

pub struct WebhookDeliverer {
    store: Arc<Store>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    allow_private_targets: bool,
}

impl WebhookDeliverer {
    pub fn new(
        store: Arc<Store>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        allow_private_targets: bool,
    ) -> anyhow::Result<WebhookDeliverer> {
        let mut builder = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf and skip the address check.
            .no_proxy()
            .user_agent(concat!("fenrun-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private_targets {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(WebhookDeliverer {
            store,
            vault,
            clock,
            client: builder.build()?,
            allow_private_targets,
        })
    }

    /// Delivers until `stop` turns true; woken early when a simulated clock
    /// moves, so retries due in simulated time go at once.
    pub async fn run(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut clock_moved: watch::Receiver<DateTime<Utc>>,
    ) {
        while !*stop.borrow() {
            let pause = match self.deliver_due().await {
                Ok(0) => IDLE_POLL,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(error = %error, "webhook deliveries cannot be claimed; trying again shortly");
                    ERROR_BACKOFF
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
                _ = clock_moved.changed() => {}
            }
        }
    }

    /// Claims and sends the deliveries due now; how many were claimed.
    /// Each endpoint's are sent in order, endpoints side by side.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        // Whole milliseconds, so the lease reads back exactly as written on
        // both databases (PostgreSQL keeps microseconds, chrono nanoseconds).
        let lease_until = (now + LEASE)
            .duration_trunc(chrono::Duration::milliseconds(1))
            .unwrap_or(now + LEASE);
        let claimed = self
            .store
            .claim_webhook_deliveries(now, lease_until, CLAIM_BATCH)
            .await?;
        let count = claimed.len();
        let mut by_endpoint: BTreeMap<String, Vec<ClaimedDelivery>> = BTreeMap::new();
        for delivery in claimed {
            by_endpoint
                .entry(delivery.endpoint_id.clone())
                .or_default()
                .push(delivery);
        }
        let mut sending = tokio::task::JoinSet::new();
        for (_, deliveries) in by_endpoint {
            let deliverer = Arc::clone(self);
            sending.spawn(async move {
                for delivery in deliveries {
                    if let Err(error) = deliverer.deliver(&delivery).await {
                        tracing::warn!(
                            delivery = delivery.delivery_id,
                            event = %delivery.event_id,
                            error = %error,
                            "webhook attempt not recorded; it goes again when its claim lapses"
                        );
                    }
                }
            });
        }
        while sending.join_next().await.is_some() {}
        Ok(count)
    }

    async fn deliver(&self, delivery: &ClaimedDelivery) -> Result<(), StoreError> {
        let answer = self.send(delivery).await;
        let at = self.clock.now();
        let verdict = judge(answer.status);
        let attempts = delivery.attempts + 1;
        let next_attempt_at = match verdict {
            Verdict::Failed => {
                let asked = answer
                    .retry_after
                    .filter(|_| answer.status.is_some_and(asks_to_back_off));
                retry_delay(attempts, asked, jitter_permille()).map(|delay| at + delay)
            }
            Verdict::Delivered | Verdict::Gone => None,
        };
        let outcome = match (verdict, next_attempt_at) {
            (Verdict::Delivered, _) => "delivered",
            (Verdict::Gone, _) => "gone",
            (Verdict::Failed, Some(_)) => "retrying",
            (Verdict::Failed, None) => "failed",
        };
        telemetry::webhook_attempt(outcome);
        tracing::info!(
            delivery = delivery.delivery_id,
            event = %delivery.event_id,
            event_type = %delivery.event_type,
            endpoint = %delivery.endpoint_id,
            attempt = attempts,
            status = answer.status,
            outcome,
            error = answer.error.as_deref().unwrap_or(""),
            "webhook attempt"
        );
        let effect = self
            .store
            .record_webhook_attempt(&WebhookAttempt {
                delivery_id: delivery.delivery_id,
                endpoint_id: delivery.endpoint_id.clone(),
                lease_until: delivery.lease_until,
                at,
                status: answer.status.map(i64::from),
                error: answer.error,
                response: answer.response,
                verdict,
                next_attempt_at,
            })
            .await?;
        if let Some(reason) = effect.disabled {
            tracing::error!(
                endpoint = %delivery.endpoint_id,
                reason = %reason,
                "webhook endpoint disabled: enable it again with POST /v1/admin/webhooks/{{id}}/enable once the receiver is fixed, then replay its failed deliveries"
            );
        }
        Ok(())
    }

    /// One signed POST; never an error, whatever happens: what went wrong
    /// is the answer's `error`.
    async fn send(&self, delivery: &ClaimedDelivery) -> Answer {
        let failed = |error: String| Answer {
            status: None,
            retry_after: None,
            error: Some(error),
            response: None,
        };
        // The URL was checked when it was registered; checked again here,
        // so a setting turned off since stops private targets at once.
        if let Err(error) = check_target(&delivery.url, self.allow_private_targets) {
            return failed(error.to_string());
        }
        let signature = match self.signature(delivery) {
            Ok(signature) => signature,
            Err(error) => return failed(error),
        };
        let request = self
            .client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", signature.0.to_string())
            .header("webhook-signature", signature.1)
            .body(delivery.body.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return failed(describe_send_error(error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let mut kept = Vec::new();
        while kept.len() < RESPONSE_KEPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                _ => break,
            }
        }
        kept.truncate(RESPONSE_KEPT_BYTES);
        let error = match judge(Some(status)) {
            Verdict::Delivered => None,
            Verdict::Gone => Some("410 Gone".to_owned()),
            Verdict::Failed if (300..400).contains(&status) => {
                Some(format!("{status}: redirects are not followed"))
            }
            Verdict::Failed => Some(format!("answered {status}")),
        };
        Answer {
            status: Some(status),
            retry_after,
            error,
            response: (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned()),
        }
    }

    /// The attempt's Unix timestamp (the wall clock: receivers compare it
    /// with theirs) and its signature under every secret in force.
    fn signature(&self, delivery: &ClaimedDelivery) -> Result<(i64, String), String> {
        let open = |sealed: &[u8], column: &'static str| -> Result<WebhookSecret, String> {
            let sealed = SealedValue::from_stored(sealed)
                .map_err(|error| format!("the endpoint's secret cannot be read: {error}"))?;
            let text = self
                .vault
                .open(&sealed, &webhook_secret_aad(column, &delivery.endpoint_id))
                .map_err(|error| format!("the endpoint's secret cannot be opened: {error}"))?;
            WebhookSecret::parse(secrecy::ExposeSecret::expose_secret(&text))
                .map_err(|error| error.to_string())
        };
        let mut secrets = vec![open(&delivery.sealed_secret, "secret")?];
        if let Some(previous) = &delivery.sealed_previous_secret {
            secrets.push(open(previous, "previous_secret")?);
        }
        let timestamp = Utc::now().timestamp();
        let refs: Vec<&WebhookSecret> = secrets.iter().collect();
        Ok((
            timestamp,
            signature_header(
                &refs,
                &delivery.event_id,
                timestamp,
                delivery.body.as_bytes(),
            ),
        ))
    }
}

/// A send error in a line ops can act on, without the URL's query.
fn describe_send_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())
    } else if error.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        let mut detail = String::new();
        while let Some(cause) = source {
            detail = cause.to_string();
            source = cause.source();
        }
        format!("cannot connect: {detail}")
    } else {
        error.to_string()
    }
}

/// ±10% spread of a retry's delay, so deliveries that failed together do
/// not all come back at once.
fn jitter_permille() -> i64 {
    i64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 201 / 256 - 100
}
