//! Who may call which route, as types. A handler names its policy in its
//! first extractor, [`Allowed`] or [`Owner`], which authenticates (401) and
//! authorizes (403) before any later extractor reads the path, query or
//! body. So a caller without the right gets 401 or 403 whatever it sent,
//! and learns nothing of a route's schema from a 400, 413 or 415.
//!
//! A policy is a set of roles that may call the route about anything, and
//! whether a distributor token may call it about itself. Which resources
//! are a distributor's own is for [`Owner`] (the path's `{id}`) or for the
//! handler (a withdrawal's or certificate's distributor, a body's
//! `distributor_id`) to decide; the policy only lets the token that far.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::api::extract::{Caller, Path, distributor_id_from_path};
use crate::domain::access::{Principal, Role};
use crate::domain::ids::DistributorId;
use crate::state::AppState;

/// Who may call a route.
pub trait Policy: Send + Sync + 'static {
    /// Roles that may call the route about any resource.
    const ROLES: &'static [Role];
    /// Whether a distributor token may call it about its own distributor.
    const OWN: bool;
}

macro_rules! policy {
    ($(#[$doc:meta])* $name:ident: [$($role:ident),*], own: $own:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl Policy for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),*];
            const OWN: bool = $own;
        }
    };
}

policy!(
    /// Plans, adjustments, the audit log, the simulated clock.
    AdminOnly: [Admin], own: false
);
policy!(
    /// The queues and jobs, the review queue and its decisions.
    OpsOrAdmin: [Ops, Admin], own: false
);
policy!(
    /// Orders and refunds from the shop.
    IngestOnly: [Ingest], own: false
);
policy!(
    /// Creating distributors.
    IngestOrAdmin: [Ingest, Admin], own: false
);
policy!(
    /// Listing distributors, reading an order.
    AdminOpsOrIngest: [Admin, Ops, Ingest], own: false
);
policy!(
    /// Declarations and certificate corrections.
    AccountantOrAdmin: [Accountant, Admin], own: false
);
policy!(
    /// A distributor's own withdrawals: quote, request, cancel.
    SelfOnly: [], own: true
);
policy!(
    /// A distributor's profile, balance, accounts, commissions, withdrawals.
    SelfOrOpsAdmin: [Ops, Admin], own: true
);
policy!(
    /// A distributor's identity and payout accounts, sent by itself or the shop.
    SelfOrIngest: [Ingest], own: true
);
policy!(
    /// Withholding certificates.
    SelfOrAccountantAdmin: [Accountant, Admin], own: true
);

/// A caller the policy `P` lets call the route (401 without a valid token,
/// 403 with one `P` does not admit). A distributor token gets this far when
/// `P::OWN`; the handler then checks the resource is its own.
pub struct Allowed<P> {
    pub principal: Principal,
    policy: PhantomData<fn() -> P>,
}

impl<S, P> FromRequestParts<S> for Allowed<P>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    P: Policy,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Allowed<P>, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        Allowed::admit(principal)
    }
}

impl<P: Policy> Allowed<P> {
    /// A principal authenticated another way (a page's session), admitted
    /// as the extractor admits a token's (403 otherwise).
    pub fn admit(principal: Principal) -> Result<Allowed<P>, ApiError> {
        let own = P::OWN && principal.role == Role::Distributor;
        if !own && !principal.has_any_role(P::ROLES) {
            return Err(ApiError::forbidden());
        }
        Ok(Allowed {
            principal,
            policy: PhantomData,
        })
    }

    /// The caller, acting about `distributor`: one of the policy's roles, or
    /// that distributor's own token (403 for another distributor's).
    pub fn for_distributor(&self, distributor: &DistributorId) -> Result<&Principal, ApiError> {
        if self.principal.has_any_role(P::ROLES) || self.principal.is_distributor_self(distributor)
        {
            Ok(&self.principal)
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// The caller, for something no distributor token may do even about
    /// itself (a month's certificates at once): one of the policy's roles.
    pub fn without_own(&self) -> Result<&Principal, ApiError> {
        if self.principal.has_any_role(P::ROLES) {
            Ok(&self.principal)
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// A distributor token for another distributor than `distributor`: to
    /// whom that resource does not exist (404, so ids cannot be probed).
    pub fn is_stranger_to(&self, distributor: &DistributorId) -> bool {
        self.principal.role == Role::Distributor && !self.principal.is_distributor_self(distributor)
    }
}

impl<P> Deref for Allowed<P> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// A caller acting about the distributor named by the path's `{id}`: one of
/// `P`'s roles, or (when `P::OWN`) that distributor's own token. 401, then
/// 403 for a role `P` does not admit, then 400 for a malformed id, then 403
/// for another distributor's token.
pub struct Owner<P> {
    pub principal: Principal,
    /// The `{id}` of the path, parsed.
    pub distributor: DistributorId,
    policy: PhantomData<fn() -> P>,
}

impl<S, P> FromRequestParts<S> for Owner<P>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    P: Policy,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Owner<P>, ApiError> {
        let allowed = Allowed::<P>::from_request_parts(parts, state).await?;
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        let distributor = distributor_id_from_path(&raw)?;
        allowed.for_distributor(&distributor)?;
        Ok(Owner {
            principal: allowed.principal,
            distributor,
            policy: PhantomData,
        })
    }
}

impl<P: Policy> Owner<P> {
    /// A principal authenticated another way (a page's session), acting
    /// about `distributor`, admitted as the extractor admits a token's
    /// (403 for a role `P` does not admit or another distributor's).
    pub fn admit(principal: Principal, distributor: DistributorId) -> Result<Owner<P>, ApiError> {
        let allowed = Allowed::<P>::admit(principal)?;
        allowed.for_distributor(&distributor)?;
        Ok(Owner {
            principal: allowed.principal,
            distributor,
            policy: PhantomData,
        })
    }
}

impl<P> Deref for Owner<P> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}
