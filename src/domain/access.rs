//! Who may do what: the roles a bearer token carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::ids::DistributorId;

/// The roles of SPEC §1. A distributor token is always scoped to one distributor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Ingest,
    Ops,
    Accountant,
    Distributor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Ingest,
        Role::Ops,
        Role::Accountant,
        Role::Distributor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Ops => "ops",
            Role::Accountant => "accountant",
            Role::Distributor => "distributor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, ingest, ops, accountant or distributor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's public handle (`tok_…`), safe to log and to audit.
    pub token_id: String,
    pub role: Role,
    /// Set exactly when `role` is `Distributor`.
    pub distributor: Option<DistributorId>,
}

impl Principal {
    pub fn has_any_role(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }

    /// A distributor token acting on its own distributor.
    pub fn is_distributor_self(&self, id: &DistributorId) -> bool {
        self.role == Role::Distributor && self.distributor.as_ref() == Some(id)
    }
}
