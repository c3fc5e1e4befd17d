//! Webhook endpoints and deliveries as the admin and ops use them (issue
//! 16), for the API (`/v1/admin/webhooks…`, `/v1/ops/webhooks…`) and the
//! `/ops` page alike: registering an endpoint (its URL checked against
//! private targets, a `whsec_` secret made and shown once, sealed at rest),
//! rotating the secret with an overlap, enabling, deleting, and replaying
//! deliveries, each audited. Nothing here speaks HTTP.

use chrono::{DateTime, Duration, DurationRound, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::webhook_signature::WebhookSecret;
use crate::domain::webhooks::{ALL_EVENTS, EventType, TargetError, check_target};
use crate::state::AppState;
use crate::store::{
    Actor, DeliveryFilter, NewWebhookEndpoint, ReplayRefusal, StoreError, WebhookDeliveryRecord,
    WebhookEndpointRecord,
};
use crate::vault::SealedValue;
use crate::vault::credentials::webhook_secret_aad;

/// Bytes of a new secret: 256 bits, inside the convention's 24–64.
const SECRET_BYTES: usize = 32;
/// The old secret keeps signing this long after a rotation unless asked.
pub const DEFAULT_OVERLAP_HOURS: i64 = 24;
/// The longest overlap a rotation may ask for: a week.
pub const MAX_OVERLAP_HOURS: i64 = 7 * 24;
/// Longest description kept with an endpoint.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Longest URL an endpoint may have.
pub const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    InvalidUrl(TargetError),
    #[error("{0}")]
    PrivateTarget(TargetError),
    #[error("{0}")]
    InvalidEvents(String),
    #[error("{0}")]
    InvalidField(&'static str, String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error(
        "the endpoint is disabled: enable it (POST /v1/admin/webhooks/{{id}}/enable) once its receiver is fixed, then replay"
    )]
    EndpointDisabled,
    #[error("the secret cannot be made or sealed: {0}")]
    Secret(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An endpoint, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    /// The subscribed event types, or `["*"]` for all.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// enabled or disabled.
    pub state: String,
    /// healthy, failing (no success since `failing_since`) or disabled.
    pub health: String,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// While the previous secret still signs (after a rotation).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub pending_deliveries: i64,
    pub failed_deliveries: i64,
    pub created_at: DateTime<Utc>,
}

impl EndpointView {
    pub fn of(record: WebhookEndpointRecord, now: DateTime<Utc>) -> EndpointView {
        let health = if record.state != "enabled" {
            "disabled"
        } else if record.failing_since.is_some() {
            "failing"
        } else {
            "healthy"
        };
        EndpointView {
            health: health.to_owned(),
            id: record.id,
            url: record.url,
            events: record.events,
            description: record.description,
            state: record.state,
            disabled_reason: record.disabled_reason,
            disabled_at: record.disabled_at,
            failing_since: record.failing_since,
            last_success_at: record.last_success_at,
            last_failure_at: record.last_failure_at,
            previous_secret_expires_at: record.previous_secret_until.filter(|until| *until > now),
            pending_deliveries: record.pending_deliveries,
            failed_deliveries: record.failed_deliveries,
            created_at: record.created_at,
        }
    }
}

/// A new endpoint with its secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: keep it in the receiver's secret store; it is not shown again.
    pub secret: String,
}

/// A rotated secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    pub id: String,
    /// The new `whsec_…` secret.
    pub secret: String,
    /// Until then deliveries carry a signature under each secret.
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// A delivery of an event to an endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// The `webhook-id` of every attempt.
    pub event_id: String,
    pub event_type: String,
    /// The withdrawal, order or distributor the event is about.
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub endpoint_id: String,
    pub endpoint_url: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last answer's HTTP status (none when there was no answer).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// The start of the last answer's body.
    pub last_response: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<WebhookDeliveryRecord> for DeliveryView {
    fn from(record: WebhookDeliveryRecord) -> DeliveryView {
        DeliveryView {
            id: record.id.to_string(),
            event_id: record.event_id,
            event_type: record.event_type,
            subject: record.subject,
            occurred_at: record.occurred_at,
            endpoint_id: record.endpoint_id,
            endpoint_url: record.endpoint_url,
            state: record.state,
            attempts: record.attempts,
            next_attempt_at: record.next_attempt_at,
            last_attempt_at: record.last_attempt_at,
            last_status: record.last_status,
            last_error: record.last_error,
            last_response: record.last_response,
            delivered_at: record.delivered_at,
        }
    }
}

/// Checks a subscription: at least one type, each known (or `*`), no
/// repeats; kept in the order given.
pub fn parse_events(events: &[String]) -> Result<Vec<String>, WebhookError> {
    if events.is_empty() {
        return Err(WebhookError::InvalidEvents(
            "events must name at least one event type, or \"*\" for all".to_owned(),
        ));
    }
    let mut parsed: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        let event = event.trim();
        if event != ALL_EVENTS && EventType::parse(event).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
            return Err(WebhookError::InvalidEvents(format!(
                "unknown event type {event:?}; known: {}, or \"*\"",
                known.join(", ")
            )));
        }
        if !parsed.iter().any(|seen| seen == event) {
            parsed.push(event.to_owned());
        }
    }
    Ok(parsed)
}

fn check_url(state: &AppState, url: &str) -> Result<String, WebhookError> {
    if url.len() > MAX_URL_BYTES {
        return Err(WebhookError::InvalidField(
            "url",
            format!("url must be at most {MAX_URL_BYTES} bytes"),
        ));
    }
    match check_target(url, state.settings.webhooks.allow_private_targets) {
        Ok(url) => Ok(url.to_string()),
        Err(error @ (TargetError::PrivateTarget | TargetError::NotHttps)) => {
            Err(WebhookError::PrivateTarget(error))
        }
        Err(error) => Err(WebhookError::InvalidUrl(error)),
    }
}

/// A fresh random secret, as `whsec_<base64>`.
fn new_secret() -> Result<SecretString, WebhookError> {
    let mut bytes = vec![0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| WebhookError::Secret("no randomness".to_owned()))?;
    let secret = WebhookSecret::from_bytes(bytes)
        .map_err(|error| WebhookError::Secret(error.to_string()))?;
    Ok(SecretString::from(secret.reveal()))
}

fn new_endpoint_id() -> String {
    format!("ep_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

fn seal(
    state: &AppState,
    secret: &SecretString,
    column: &'static str,
    id: &str,
) -> Result<Vec<u8>, WebhookError> {
    Ok(state
        .vault
        .seal(secret, &webhook_secret_aad(column, id))
        .map_err(|error| WebhookError::Secret(error.to_string()))?
        .to_stored())
}

/// A description as kept: trimmed, empty as none, at most
/// [`MAX_DESCRIPTION_CHARS`].
fn check_description(description: Option<&str>) -> Result<Option<String>, WebhookError> {
    let description = description.map(str::trim).filter(|text| !text.is_empty());
    if description.is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(WebhookError::InvalidField(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(description.map(str::to_owned))
}

pub async fn create_endpoint(
    state: &AppState,
    actor: &Actor,
    url: &str,
    events: &[String],
    description: Option<&str>,
) -> Result<CreatedEndpoint, WebhookError> {
    let url = check_url(state, url)?;
    let events = parse_events(events)?;
    let description = check_description(description)?;
    let id = new_endpoint_id();
    let secret = new_secret()?;
    let now = state.clock.now();
    let record = state
        .store
        .insert_webhook_endpoint(
            &NewWebhookEndpoint {
                sealed_secret: seal(state, &secret, "secret", &id)?,
                id,
                url,
                events,
                description,
                now,
            },
            actor,
        )
        .await?;
    Ok(CreatedEndpoint {
        endpoint: EndpointView::of(record, now),
        secret: secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
    })
}

pub async fn endpoints(state: &AppState) -> Result<Vec<EndpointView>, WebhookError> {
    let now = state.clock.now();
    Ok(state
        .store
        .webhook_endpoints()
        .await?
        .into_iter()
        .map(|record| EndpointView::of(record, now))
        .collect())
}

pub async fn endpoint(state: &AppState, id: &str) -> Result<EndpointView, WebhookError> {
    let record = state
        .store
        .webhook_endpoint(id)
        .await?
        .ok_or(WebhookError::NotFound("webhook endpoint"))?;
    Ok(EndpointView::of(record, state.clock.now()))
}

/// Changes an endpoint's URL (checked as at creation), events and
/// description; its id, secret and deliveries stay.
pub async fn update_endpoint(
    state: &AppState,
    actor: &Actor,
    id: &str,
    url: &str,
    events: &[String],
    description: Option<&str>,
) -> Result<EndpointView, WebhookError> {
    let url = check_url(state, url)?;
    let events = parse_events(events)?;
    let description = check_description(description)?;
    if !state
        .store
        .update_webhook_endpoint(
            id,
            &url,
            &events,
            description.as_deref(),
            actor,
            state.clock.now(),
        )
        .await?
    {
        return Err(WebhookError::NotFound("webhook endpoint"));
    }
    endpoint(state, id).await
}

pub async fn delete_endpoint(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<(), WebhookError> {
    if state
        .store
        .delete_webhook_endpoint(id, actor, state.clock.now())
        .await?
    {
        Ok(())
    } else {
        Err(WebhookError::NotFound("webhook endpoint"))
    }
}

pub async fn enable_endpoint(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<EndpointView, WebhookError> {
    if !state
        .store
        .enable_webhook_endpoint(id, actor, state.clock.now())
        .await?
    {
        return Err(WebhookError::NotFound("webhook endpoint"));
    }
    endpoint(state, id).await
}

/// Makes a new secret; the current one keeps signing for `overlap_hours`
/// (one rotation's overlap at a time: a second rotation ends the first's).
pub async fn rotate_secret(
    state: &AppState,
    actor: &Actor,
    id: &str,
    overlap_hours: Option<i64>,
) -> Result<RotatedSecret, WebhookError> {
    let overlap = overlap_hours.unwrap_or(DEFAULT_OVERLAP_HOURS);
    if !(0..=MAX_OVERLAP_HOURS).contains(&overlap) {
        return Err(WebhookError::InvalidField(
            "overlap_hours",
            format!("overlap_hours must be 0–{MAX_OVERLAP_HOURS}"),
        ));
    }
    let now = state.clock.now();
    let (sealed_current, _) = state
        .store
        .webhook_secrets(id, now)
        .await?
        .ok_or(WebhookError::NotFound("webhook endpoint"))?;
    let current = SealedValue::from_stored(&sealed_current)
        .and_then(|sealed| state.vault.open(&sealed, &webhook_secret_aad("secret", id)))
        .map_err(|error| WebhookError::Secret(error.to_string()))?;
    let secret = new_secret()?;
    // Whole seconds: the time shown is the time stored, on both databases.
    let previous_until = (now + Duration::hours(overlap))
        .duration_trunc(Duration::seconds(1))
        .unwrap_or(now + Duration::hours(overlap));
    let rotated = state
        .store
        .rotate_webhook_secret(
            id,
            &seal(state, &secret, "secret", id)?,
            &seal(state, &current, "previous_secret", id)?,
            previous_until,
            actor,
            now,
        )
        .await?;
    if !rotated {
        return Err(WebhookError::NotFound("webhook endpoint"));
    }
    Ok(RotatedSecret {
        id: id.to_owned(),
        secret: secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
        previous_secret_expires_at: previous_until,
    })
}

pub async fn deliveries(
    state: &AppState,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryView>, WebhookError> {
    Ok(state
        .store
        .webhook_deliveries(filter)
        .await?
        .into_iter()
        .map(DeliveryView::from)
        .collect())
}

fn refusal(refusal: ReplayRefusal, what: &'static str) -> WebhookError {
    match refusal {
        ReplayRefusal::NotFound => WebhookError::NotFound(what),
        ReplayRefusal::EndpointDisabled => WebhookError::EndpointDisabled,
    }
}

/// Sends a delivery again with the same event id, audited.
pub async fn replay_delivery(
    state: &AppState,
    actor: &Actor,
    id: i64,
) -> Result<DeliveryView, WebhookError> {
    let replayed = state
        .store
        .replay_webhook_delivery(id, actor, state.clock.now())
        .await?
        .map_err(|reason| refusal(reason, "webhook delivery"))?;
    Ok(replayed.into())
}

/// Replays an endpoint's failed deliveries of events in `[from, to)`; how many.
pub async fn replay_failed(
    state: &AppState,
    actor: &Actor,
    endpoint_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, WebhookError> {
    if from >= to {
        return Err(WebhookError::InvalidField(
            "to",
            "to must be after from".to_owned(),
        ));
    }
    let replayed = state
        .store
        .replay_failed_webhook_deliveries(endpoint_id, from, to, actor, state.clock.now())
        .await?
        .map_err(|reason| refusal(reason, "webhook endpoint"))?;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_names_known_types_or_all() {
        assert_eq!(
            parse_events(&["withdrawal.paid".into(), "withdrawal.paid".into()]).unwrap(),
            ["withdrawal.paid"]
        );
        assert_eq!(parse_events(&["*".into()]).unwrap(), ["*"]);
        assert!(matches!(
            parse_events(&[]),
            Err(WebhookError::InvalidEvents(_))
        ));
        assert!(matches!(
            parse_events(&["withdrawal.transferring".into()]),
            Err(WebhookError::InvalidEvents(message)) if message.contains("withdrawal.paid")
        ));
    }

    #[test]
    fn a_new_secret_is_a_valid_whsec_of_32_bytes_and_never_repeats() {
        let first = new_secret().unwrap();
        let second = new_secret().unwrap();
        let text = secrecy::ExposeSecret::expose_secret(&first);
        assert!(WebhookSecret::parse(text).is_ok());
        assert_ne!(text, secrecy::ExposeSecret::expose_secret(&second));
        assert!(new_endpoint_id().starts_with("ep_") && new_endpoint_id().len() == 27);
    }
}
