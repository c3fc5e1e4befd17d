//! The audit log (SPEC §2.10): every admin and ops action — token creation,
//! plan application, adjustments, withdrawal approval and rejection, job
//! retry and cancel, certificate corrections, key rotation, clock moves —
//! with its actor, time, target and the state before and after; and one
//! action of a distributor's (or the shop's): changing an identity after a
//! certificate was issued in it (`identity.change_after_certificate`,
//! masked before and after).
//!
//! Actions that are one database transaction — token creation, plan
//! application, adjustments, approve and reject, job retry and cancel,
//! certificate corrections, identity changes — write their entry in that
//! transaction (the store takes the [`Actor`]), so the change and its entry
//! commit or vanish together. Key rotation reseals rows in many transactions and the
//! simulated clock lives in memory: those two write theirs once the action
//! has finished ([`record`]), so the log never claims an action that did not
//! happen; a crash in the instant between the two loses that entry, and the
//! failure to write one is logged as an error naming the action.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::access::Principal;
pub use crate::store::Actor;
use crate::store::{AuditEntry, Store};

impl Actor {
    pub fn of(principal: &Principal) -> Actor {
        Actor {
            id: principal.token_id.clone(),
            role: principal.role.as_str().to_owned(),
        }
    }

    /// fenrun itself acting for `what` (the demo, a test, a benchmark), not
    /// a person.
    pub fn system(what: &str) -> Actor {
        Actor {
            id: format!("system:{what}"),
            role: "system".to_owned(),
        }
    }

    /// A command run on the host: the operating-system user is the actor.
    pub fn command_line() -> Actor {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Actor {
            id: format!("cli:{user}"),
            role: "cli".to_owned(),
        }
    }
}

/// Appends an entry for an action that has committed.
pub async fn record(
    store: &Store,
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
    at: DateTime<Utc>,
) {
    let entry = AuditEntry {
        at,
        actor: actor.id.clone(),
        actor_role: actor.role.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        before,
        after,
    };
    if let Err(error) = store.record_audit(&entry).await {
        tracing::error!(error = %error, action, target, actor = %actor.id, "audit entry could not be written");
    }
}
