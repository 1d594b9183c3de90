//! Append-only audit records of PHI reads and writes.
//!
//! A write's record goes into the write's own transaction, so there is no change
//! without its record; a read's record is written right after the read. Records
//! are linked into the tamper-evident hash chain afterwards (see `chain`).

use crate::auth::Actor;
use crate::clock::Clock;
use crate::error::ServiceResult;
use chrono::SubsecRound;
use entity::audit_log;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel};
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

/// Appends `record` for `actor` on `conn` (a transaction for writes, so the
/// record commits or rolls back with the change).
pub async fn write_audit<C: ConnectionTrait>(
    conn: &C,
    clock: &dyn Clock,
    actor: Option<&Actor>,
    meta: &RequestMeta,
    record: AuditRecord,
) -> ServiceResult<()> {
    write_audits(conn, clock, actor, meta, vec![record]).await
}

/// Appends `records` (in order) for `actor` on `conn` in one statement.
///
/// The records are written unchained: no lock is taken and nothing is read,
/// so audited writes commit in parallel. [`chain_pending`](super::chain_pending)
/// links them into the hash chain after they commit.
pub async fn write_audits<C: ConnectionTrait>(
    conn: &C,
    clock: &dyn Clock,
    actor: Option<&Actor>,
    meta: &RequestMeta,
    records: Vec<AuditRecord>,
) -> ServiceResult<()> {
    write_audits_of(conn, clock, records.into_iter().map(|record| (actor, meta, record))).await
}

/// Appends records of several callers (each with its actor and request) on
/// `conn` in one statement, as [`write_audits`] does for one caller: a batch
/// of bookings writes its records together.
pub async fn write_audits_of<'a, C: ConnectionTrait>(
    conn: &C,
    clock: &dyn Clock,
    records: impl IntoIterator<Item = (Option<&'a Actor>, &'a RequestMeta, AuditRecord)>,
) -> ServiceResult<()> {
    // Microseconds: what both databases store, so the hash can be recomputed.
    let occurred_at = clock.now().trunc_subsecs(6);
    let rows: Vec<_> = records
        .into_iter()
        .map(|(actor, meta, record)| {
            audit_log::Model {
                id: Uuid::now_v7(),
                occurred_at,
                actor_user_id: actor.map(|a| a.user_id.0),
                actor_role: actor.map(|a| a.role.as_str().to_owned()),
                action: record.action.as_str().to_owned(),
                entity_type: record.entity_type.to_owned(),
                entity_id: record.entity_id,
                client_ip: meta.client_ip.clone(),
                user_agent: meta.user_agent.clone(),
                request_id: meta.request_id.clone(),
                detail: record.detail,
                seq: None,
                prev_hash: None,
                hash: None,
            }
            .into_active_model()
            .reset_all()
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_log::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
