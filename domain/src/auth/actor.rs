//! Roles and the authenticated caller.

use crate::error::{ServiceError, ServiceResult};
use crate::ids::{LocationId, PatientId, ProviderId, UserId};
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// Set for PROVIDER users.
    pub provider_id: Option<ProviderId>,
    /// Set for PATIENT users.
    pub patient_id: Option<PatientId>,
    /// The locations a STAFF user works at (empty for other roles). Carried in
    /// the access token; changing them revokes the user's sessions.
    pub locations: std::sync::Arc<[LocationId]>,
    /// The sign-in (refresh-token family) the access token belongs to, so that
    /// signing out ends it everywhere.
    pub session_id: Option<uuid::Uuid>,
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

    /// True when the caller administers `location`: every ADMIN, and STAFF
    /// who work there. Other roles never do.
    pub fn manages_location(&self, location: LocationId) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Staff => self.locations.contains(&location),
            Role::Provider | Role::Patient => false,
        }
    }

    /// Refuses unless the caller is ADMIN, or STAFF working at `location`.
    pub fn require_manages(&self, location: LocationId) -> ServiceResult<()> {
        if self.manages_location(location) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// The locations that bound a STAFF caller's view; `None` for everyone
    /// else (ADMIN sees all; PROVIDER and PATIENT are bounded otherwise).
    pub fn staff_scope(&self) -> Option<Vec<uuid::Uuid>> {
        (self.role == Role::Staff).then(|| self.locations.iter().map(|l| l.0).collect())
    }
}
