//! The audit trail, for admins.

use crate::types::connection;
use crate::{IntoGqlResult, caller, services};
use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use domain::phi::AuditEntry;
use uuid::Uuid;

/// Which audit records to list.
#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    /// `patient`, `appointment`, `audit_log`, ...
    pub entity_type: Option<String>,
    /// One record's history.
    pub entity_id: Option<Uuid>,
    /// One user's actions.
    pub actor_user_id: Option<Uuid>,
    /// At or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// One audit record: who did what to which record, when, from where.
pub struct AuditEvent(AuditEntry);

#[Object]
impl AuditEvent {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// Position in the hash chain.
    async fn seq(&self) -> Option<i64> {
        self.0.seq
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    async fn actor_user_id(&self) -> Option<Uuid> {
        self.0.actor_user_id
    }
    async fn actor_role(&self) -> Option<&str> {
        self.0.actor_role.as_deref()
    }
    /// `read`, `search`, `create` or `update`.
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn entity_type(&self) -> &str {
        &self.0.entity_type
    }
    async fn entity_id(&self) -> Option<Uuid> {
        self.0.entity_id
    }
    async fn client_ip(&self) -> Option<&str> {
        self.0.client_ip.as_deref()
    }
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    /// Extra facts as JSON text (never PHI).
    async fn detail(&self) -> Option<String> {
        self.0.detail.as_ref().map(|d| d.to_string())
    }
    /// SHA-256 of this record and the one before it.
    async fn hash(&self) -> Option<&str> {
        self.0.hash.as_deref()
    }
}

/// Queries of the audit trail.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Audit records, newest first (ADMIN). Reading them is audited too.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditEventFilter>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AuditEvent>> {
        let filter = filter.unwrap_or_default();
        let filter = domain::phi::AuditFilter {
            entity_type: filter.entity_type,
            entity_id: filter.entity_id,
            actor_user_id: filter.actor_user_id,
            from: filter.from,
            to: filter.to,
        };
        let page = services(ctx)
            .audit_events(caller(ctx), filter, first.unwrap_or(50), after.as_deref())
            .await
            .gql()?;
        Ok(connection(page, AuditEvent))
    }
}
