//! Outgoing webhooks' rules (issue 16; `reference/webhooks.md`): the event
//! catalogue, the stable event id and the thin body of the Standard
//! Webhooks convention, the retry schedule, how an answer is judged, and
//! which targets an endpoint may name. Pure: the outbox and the delivery
//! queue live in `store::sql::webhooks` and `engine::webhooks`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::Url;

use crate::domain::digest::sha256_hex;

/// Every event fenrun sends, by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CommissionPending,
    CommissionReleased,
    CommissionClawedBack,
    CommissionVoided,
    WithdrawalRequested,
    WithdrawalInReview,
    WithdrawalApproved,
    WithdrawalRejected,
    WithdrawalCancelled,
    WithdrawalAwaitingPayeeConfirmation,
    WithdrawalPaid,
    WithdrawalFailed,
    WithdrawalReturned,
    CertificateIssued,
    DistributorGradeChanged,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::CommissionPending,
        EventType::CommissionReleased,
        EventType::CommissionClawedBack,
        EventType::CommissionVoided,
        EventType::WithdrawalRequested,
        EventType::WithdrawalInReview,
        EventType::WithdrawalApproved,
        EventType::WithdrawalRejected,
        EventType::WithdrawalCancelled,
        EventType::WithdrawalAwaitingPayeeConfirmation,
        EventType::WithdrawalPaid,
        EventType::WithdrawalFailed,
        EventType::WithdrawalReturned,
        EventType::CertificateIssued,
        EventType::DistributorGradeChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CommissionPending => "commission.pending",
            EventType::CommissionReleased => "commission.released",
            EventType::CommissionClawedBack => "commission.clawed_back",
            EventType::CommissionVoided => "commission.voided",
            EventType::WithdrawalRequested => "withdrawal.requested",
            EventType::WithdrawalInReview => "withdrawal.in_review",
            EventType::WithdrawalApproved => "withdrawal.approved",
            EventType::WithdrawalRejected => "withdrawal.rejected",
            EventType::WithdrawalCancelled => "withdrawal.cancelled",
            EventType::WithdrawalAwaitingPayeeConfirmation => {
                "withdrawal.awaiting_payee_confirmation"
            }
            EventType::WithdrawalPaid => "withdrawal.paid",
            EventType::WithdrawalFailed => "withdrawal.failed",
            EventType::WithdrawalReturned => "withdrawal.returned",
            EventType::CertificateIssued => "certificate.issued",
            EventType::DistributorGradeChanged => "distributor.grade_changed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The event a withdrawal's move into `state` sends; `None` for the
    /// in-between `transferring`, which a shop has nothing to do about.
    /// (`withdrawal.requested` is sent by the request itself, followed by
    /// `in_review` or `approved`.)
    pub fn of_withdrawal_state(state: crate::domain::withdrawal::WithdrawalState) -> Option<Self> {
        use crate::domain::withdrawal::WithdrawalState as S;
        Some(match state {
            S::Reviewing => EventType::WithdrawalInReview,
            S::Approved => EventType::WithdrawalApproved,
            S::Rejected => EventType::WithdrawalRejected,
            S::Cancelled => EventType::WithdrawalCancelled,
            S::AwaitingPayeeConfirmation => EventType::WithdrawalAwaitingPayeeConfirmation,
            S::Paid => EventType::WithdrawalPaid,
            S::Failed => EventType::WithdrawalFailed,
            S::Returned => EventType::WithdrawalReturned,
            S::Transferring => return None,
        })
    }
}

/// An endpoint subscribing to every type, present and future.
pub const ALL_EVENTS: &str = "*";

/// An event as the outbox writes it, in the transaction of its change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub kind: EventType,
    /// The withdrawal, order, certificate or distributor it is about.
    pub subject: String,
    pub occurred_at: DateTime<Utc>,
    pub body: String,
}

impl NewEvent {
    /// An event about `subject`; `key` names the change uniquely (the same
    /// change written twice is one event: its id is derived from the key).
    pub fn new(
        kind: EventType,
        key: &str,
        subject: &str,
        occurred_at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> NewEvent {
        NewEvent {
            id: event_id(kind, key),
            kind,
            subject: subject.to_owned(),
            occurred_at,
            body: event_body(kind, occurred_at, data),
        }
    }
}

/// `msg_` and 32 hex digits of SHA-256 over the type and the change's key:
/// stable, so a change written again (a replayed transaction) is the same
/// event, and the receiver's dedupe key holds across every attempt.
pub fn event_id(kind: EventType, key: &str) -> String {
    let digest = sha256_hex(format!("{}:{key}", kind.as_str()).as_bytes());
    format!("msg_{}", &digest[..32])
}

/// The convention's thin body: `type`, `timestamp` and `data` (ids,
/// amounts and the new state; the API has the rest).
pub fn event_body(kind: EventType, occurred_at: DateTime<Utc>, data: serde_json::Value) -> String {
    serde_json::json!({
        "type": kind.as_str(),
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// How long after each failed attempt the next one goes: the reference's
/// schedule (at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
/// 24 h: about three days in ten attempts).
pub const RETRY_DELAYS_SECONDS: [i64; 9] = [
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];

/// Attempts before a delivery is given up (ops may replay it).
pub const MAX_ATTEMPTS: i64 = RETRY_DELAYS_SECONDS.len() as i64 + 1;

/// An endpoint failing without a success for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// A `Retry-After` longer than this is read as this: a receiver cannot
/// park a delivery for longer than the schedule's longest wait.
const RETRY_AFTER_CAP_SECONDS: i64 = 24 * 3600;

/// When to try again after `attempts` failed attempts, or `None` when the
/// schedule is spent. `jitter_permille` (−100..=100) spreads retries of
/// many deliveries that failed together; a receiver's `Retry-After` is
/// honoured when it asks for longer.
pub fn retry_delay(
    attempts: i64,
    retry_after: Option<Duration>,
    jitter_permille: i64,
) -> Option<Duration> {
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let base = *RETRY_DELAYS_SECONDS.get(index)?;
    let jitter = jitter_permille.clamp(-100, 100);
    let scheduled = Duration::milliseconds(base * (1000 + jitter));
    let asked = retry_after
        .map(|asked| asked.min(Duration::seconds(RETRY_AFTER_CAP_SECONDS)))
        .unwrap_or_else(Duration::zero);
    Some(scheduled.max(asked))
}

/// What an attempt's answer means for the delivery and its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// 410: the receiver is gone for good; the endpoint is disabled.
    Gone,
    /// Anything else (a redirect included: it is not followed), or no answer.
    Failed,
}

pub fn judge(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        _ => Verdict::Failed,
    }
}

/// Whether an answer asks to back off, so its `Retry-After` counts.
pub fn asks_to_back_off(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` header: delay seconds or an HTTP date (RFC 7231).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return (seconds >= 0).then(|| Duration::seconds(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).max(Duration::zero()))
}

/// Why an endpoint's URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not an absolute http(s) URL")]
    Malformed,
    #[error("only https URLs are accepted (http is allowed only for private test targets)")]
    NotHttps,
    #[error(
        "the URL names a loopback, private or link-local address, which a webhook may not target (set webhooks.allow_private_targets for tests)"
    )]
    PrivateTarget,
    #[error("the URL must not carry a user name or password")]
    Credentials,
}

/// Checks an endpoint URL: absolute http(s) without credentials; https, and
/// not naming a non-public address, unless private targets are allowed
/// (tests and the demo). A host name is checked again, by address, each
/// time a delivery resolves it (`engine::webhooks`).
pub fn check_target(text: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = Url::parse(text.trim()).map_err(|_| TargetError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TargetError::Malformed);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if allow_private {
        return Ok(url);
    }
    if url.scheme() != "https" {
        return Err(TargetError::NotHttps);
    }
    let private = match url.host() {
        Some(url::Host::Ipv4(address)) => !is_public(IpAddr::V4(address)),
        Some(url::Host::Ipv6(address)) => !is_public(IpAddr::V6(address)),
        Some(url::Host::Domain(name)) => is_local_name(name),
        None => true,
    };
    if private {
        return Err(TargetError::PrivateTarget);
    }
    Ok(url)
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
}

/// Whether a webhook may reach `address`: not loopback, private,
/// link-local, unspecified, shared (CGNAT), multicast, broadcast or
/// documentation space, in IPv4 or IPv6 (mapped IPv4 judged as IPv4).
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, ..] = address.octets();
    !(address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32 documentation.
        || (first == 0x2001 && address.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_and_the_catalogue_has_no_duplicates() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        assert_eq!(EventType::parse("withdrawal.transferring"), None);
    }

    #[test]
    fn an_event_id_is_stable_per_change_and_differs_between_changes() {
        let paid = event_id(EventType::WithdrawalPaid, "wd_1");
        assert_eq!(paid, event_id(EventType::WithdrawalPaid, "wd_1"));
        assert_ne!(paid, event_id(EventType::WithdrawalPaid, "wd_2"));
        assert_ne!(paid, event_id(EventType::WithdrawalFailed, "wd_1"));
        assert!(paid.starts_with("msg_") && paid.len() == 36);
    }

    #[test]
    fn the_body_is_the_conventions_thin_shape() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = event_body(
            EventType::WithdrawalPaid,
            at,
            serde_json::json!({"id": "wd_1", "net": "90.00"}),
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["type"], "withdrawal.paid");
        assert_eq!(parsed["timestamp"], "2026-12-06T04:00:00.000Z");
        assert_eq!(parsed["data"]["net"], "90.00");
    }

    #[test]
    fn retries_follow_the_schedule_with_bounded_jitter_and_end() {
        assert_eq!(retry_delay(1, None, 0), Some(Duration::seconds(5)));
        assert_eq!(retry_delay(2, None, 0), Some(Duration::minutes(5)));
        assert_eq!(retry_delay(9, None, 0), Some(Duration::hours(24)));
        assert_eq!(retry_delay(10, None, 0), None);
        assert_eq!(retry_delay(0, None, 0), None);
        assert_eq!(
            retry_delay(2, None, 100),
            Some(Duration::seconds(330)),
            "+10% of 5 min"
        );
        assert_eq!(
            retry_delay(2, None, -500),
            Some(Duration::seconds(270)),
            "jitter is clamped to ±10%"
        );
        let total: i64 = RETRY_DELAYS_SECONDS.iter().sum();
        assert!(
            (2 * 86_400..4 * 86_400).contains(&total),
            "about three days"
        );
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        assert_eq!(
            retry_delay(1, Some(Duration::seconds(120)), 0),
            Some(Duration::seconds(120))
        );
        assert_eq!(
            retry_delay(3, Some(Duration::seconds(10)), 0),
            Some(Duration::minutes(30))
        );
        assert_eq!(
            retry_delay(1, Some(Duration::days(30)), 0),
            Some(Duration::hours(24))
        );
        let now = Utc::now();
        assert_eq!(parse_retry_after("120", now), Some(Duration::seconds(120)));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let later = (now + Duration::seconds(90)).to_rfc2822();
        let parsed = parse_retry_after(&later, now).unwrap();
        assert!((89..=90).contains(&parsed.num_seconds()));
    }

    #[test]
    fn answers_are_judged_as_the_convention_says() {
        assert_eq!(judge(Some(200)), Verdict::Delivered);
        assert_eq!(judge(Some(204)), Verdict::Delivered);
        assert_eq!(judge(Some(301)), Verdict::Failed, "redirects are failures");
        assert_eq!(judge(Some(410)), Verdict::Gone);
        assert_eq!(judge(Some(500)), Verdict::Failed);
        assert_eq!(judge(None), Verdict::Failed);
        assert!(asks_to_back_off(429) && asks_to_back_off(503) && !asks_to_back_off(500));
    }

    #[test]
    fn private_and_plain_http_targets_are_refused_unless_allowed() {
        for refused in [
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://192.168.0.5/hook",
            "https://172.16.0.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::1]/hook",
            "https://[fe80::1]/hook",
            "https://[fd00::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://localhost/hook",
            "https://printer.local/hook",
        ] {
            assert_eq!(
                check_target(refused, false),
                Err(TargetError::PrivateTarget),
                "{refused}"
            );
            assert!(
                check_target(refused, true).is_ok(),
                "{refused} when allowed"
            );
        }
        assert_eq!(
            check_target("http://shop.example.com/hook", false),
            Err(TargetError::NotHttps)
        );
        assert!(check_target("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(check_target("https://shop.example.com/hooks/fenrun", false).is_ok());
        assert!(check_target("https://8.8.8.8/hook", false).is_ok());
        assert_eq!(
            check_target("ftp://shop.example.com/", false),
            Err(TargetError::Malformed)
        );
        assert_eq!(check_target("/hook", false), Err(TargetError::Malformed));
        assert_eq!(
            check_target("https://user:pw@shop.example.com/", false),
            Err(TargetError::Credentials)
        );
    }
}
