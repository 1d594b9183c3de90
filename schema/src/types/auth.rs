//! Users and sessions.

use async_graphql::{Enum, InputObject, Object};
use chrono::{DateTime, Utc};
use domain::auth as d;
use uuid::Uuid;

/// What a user may do.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything but creating locations and providers.
    Staff,
    /// Their own schedule and their patients.
    Provider,
    /// Their own record and appointments.
    Patient,
}

impl From<d::Role> for Role {
    fn from(role: d::Role) -> Self {
        match role {
            d::Role::Admin => Self::Admin,
            d::Role::Staff => Self::Staff,
            d::Role::Provider => Self::Provider,
            d::Role::Patient => Self::Patient,
        }
    }
}

impl From<Role> for d::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Staff => Self::Staff,
            Role::Provider => Self::Provider,
            Role::Patient => Self::Patient,
        }
    }
}

/// Input of `createUser`.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// Sign-in email.
    pub email: String,
    /// Initial password (12 characters or more).
    pub password: String,
    /// ADMIN or STAFF.
    pub role: Role,
    /// The locations a STAFF user works at; they see appointments, patients
    /// and calendars of these only. Not for ADMIN.
    #[graphql(default)]
    pub location_ids: Vec<Uuid>,
}

/// A signed-in user.
pub struct User(pub d::User);

#[Object]
impl User {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn provider_id(&self) -> Option<Uuid> {
        self.0.provider_id.map(|p| p.0)
    }
    async fn patient_id(&self) -> Option<Uuid> {
        self.0.patient_id.map(|p| p.0)
    }
    /// The locations a STAFF user works at (empty for other roles).
    async fn location_ids(&self) -> Vec<Uuid> {
        self.0.location_ids.iter().map(|l| l.0).collect()
    }
}

/// A new session: a short-lived access token and a single-use refresh token.
pub struct AuthPayload(pub d::AuthSession);

#[Object]
impl AuthPayload {
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn user(&self) -> User {
        User(self.0.user.clone())
    }
}
