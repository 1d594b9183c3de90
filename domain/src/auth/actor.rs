//! Roles and the authenticated caller.

use crate::error::{ServiceError, ServiceResult};
use crate::ids::{PatientId, ProviderId, UserId};
use serde::{Deserialize, Serialize};

/// What a user may do (see the contract's Roles paragraph).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything but creating locations and providers.
    Staff,
    /// Their own schedule and the patients they see.
    Provider,
    /// Their own record and appointments.
    Patient,
}

impl Role {
    /// The stored and token name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::Staff => "STAFF",
            Self::Provider => "PROVIDER",
            Self::Patient => "PATIENT",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADMIN" => Self::Admin,
            "STAFF" => Self::Staff,
            "PROVIDER" => Self::Provider,
            "PATIENT" => Self::Patient,
            _ => return None,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// Set for PROVIDER users.
    pub provider_id: Option<ProviderId>,
    /// Set for PATIENT users.
    pub patient_id: Option<PatientId>,
}

impl Actor {
    /// True for ADMIN and STAFF, who act for anyone.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Staff)
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ServiceResult<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// Refuses unless the caller is ADMIN or STAFF.
    pub fn require_staff(&self) -> ServiceResult<()> {
        self.require(&[Role::Admin, Role::Staff])
    }
}
