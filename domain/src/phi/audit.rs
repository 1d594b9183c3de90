//! Append-only audit records of PHI reads and writes.
//!
//! A write's record goes into the write's own transaction, so there is no change
//! without its record; a read's record is written right after the read.

use crate::auth::Actor;
use crate::clock::Clock;
use crate::error::ServiceResult;
use entity::audit_log;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

/// Where a request came from, for the audit trail.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// Client IP as seen by the server (after trusted proxies).
    pub client_ip: Option<String>,
    /// The User-Agent header.
    pub user_agent: Option<String>,
    /// The request id (x-request-id) or trace id.
    pub request_id: Option<String>,
}

/// What was done to the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    /// PHI was shown to the caller.
    Read,
    /// A search over PHI ran (the detail holds the result count, never the terms).
    Search,
    /// A record holding PHI was created.
    Create,
    /// A record holding PHI was changed.
    Update,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

/// One audit record to write.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// What was done.
    pub action: AuditAction,
    /// The kind of record, e.g. `patient`.
    pub entity_type: &'static str,
    /// The record's id, when there is one.
    pub entity_id: Option<Uuid>,
    /// Extra facts that carry no PHI (field names changed, result counts).
    pub detail: Option<serde_json::Value>,
}

/// Appends `record` for `actor` on `conn` (a transaction for writes).
pub async fn write_audit(
    conn: &impl ConnectionTrait,
    clock: &dyn Clock,
    actor: Option<&Actor>,
    meta: &RequestMeta,
    record: AuditRecord,
) -> ServiceResult<()> {
    audit_log::Entity::insert(audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        occurred_at: Set(clock.now()),
        actor_user_id: Set(actor.map(|a| a.user_id.0)),
        actor_role: Set(actor.map(|a| a.role.as_str().to_owned())),
        action: Set(record.action.as_str().to_owned()),
        entity_type: Set(record.entity_type.to_owned()),
        entity_id: Set(record.entity_id),
        client_ip: Set(meta.client_ip.clone()),
        user_agent: Set(meta.user_agent.clone()),
        request_id: Set(meta.request_id.clone()),
        detail: Set(record.detail),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
