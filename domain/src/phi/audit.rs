//! Append-only audit records of PHI reads and writes.
//!
//! A write's record goes into the write's own transaction, so there is no change
//! without its record; a read's record is written right after the read.

use crate::auth::Actor;
use crate::clock::Clock;
use crate::error::ServiceResult;
use chrono::{SecondsFormat, SubsecRound};
use entity::audit_log;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, TransactionSession, TransactionTrait,
};
use sha2::{Digest, Sha256};
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

/// Advisory lock key that serializes appends to the chain ("audit" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x0061_7564_6974;

/// Appends `record` for `actor` on `conn` (a transaction for writes, so the
/// record commits or rolls back with the change). The append links the record
/// to the previous one: appends are serialized (an advisory lock on
/// PostgreSQL, held to the end of the caller's transaction; SQLite has one
/// writer) so the chain has no forks.
pub async fn write_audit<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    clock: &dyn Clock,
    actor: Option<&Actor>,
    meta: &RequestMeta,
    record: AuditRecord,
) -> ServiceResult<()> {
    write_audits(conn, clock, actor, meta, vec![record]).await
}

/// Appends `records` (in order) for `actor` on `conn` under one acquisition of
/// the chain's lock and one statement. Appends are serialized until the
/// transaction commits, and a commit waits for its WAL flush: a caller with
/// many records (the worker, for a claimed batch) pays for that once, not once
/// per record.
pub async fn write_audits<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    clock: &dyn Clock,
    actor: Option<&Actor>,
    meta: &RequestMeta,
    records: Vec<AuditRecord>,
) -> ServiceResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let txn = conn.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})"))
            .await?;
    }
    let last = audit_log::Entity::find()
        .filter(audit_log::Column::Seq.is_not_null())
        .order_by_desc(audit_log::Column::Seq)
        .one(&txn)
        .await?;
    let (mut seq, mut prev_hash) = match last {
        Some(row) => (row.seq.unwrap_or(0) + 1, row.hash.unwrap_or_default()),
        None => (1, GENESIS.to_owned()),
    };
    // Microseconds: what both databases store, so the hash can be recomputed.
    let occurred_at = clock.now().trunc_subsecs(6);
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let mut row = audit_log::Model {
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
            seq: Some(seq),
            prev_hash: Some(prev_hash),
            hash: None,
        };
        let hash = record_hash(&row);
        row.hash = Some(hash.clone());
        rows.push(row.into_active_model().reset_all());
        seq += 1;
        prev_hash = hash;
    }
    audit_log::Entity::insert_many(rows)
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "careslot-audit-genesis";

/// SHA-256 (hex) over every field of a record and the previous record's hash.
pub fn record_hash(row: &audit_log::Model) -> String {
    let fields = serde_json::json!([
        row.seq,
        row.prev_hash,
        row.id,
        row.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.actor_user_id,
        row.actor_role,
        row.action,
        row.entity_type,
        row.entity_id,
        row.client_ip,
        row.user_agent,
        row.request_id,
        row.detail,
    ]);
    super::hex_digest(&Sha256::digest(fields.to_string().as_bytes()))
}

/// Where the chain is broken, if it is.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every record links to the one before and matches its hash.
    Intact {
        /// How many records were checked.
        records: u64,
    },
    /// The first record that does not fit.
    Broken {
        /// Its sequence number (or the one missing).
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the chain from the first record, in batches.
pub async fn verify_chain(conn: &impl ConnectionTrait) -> ServiceResult<ChainCheck> {
    const BATCH: u64 = 1000;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_owned();
    loop {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_log::Column::Seq)
            .limit(BATCH)
            .all(conn)
            .await?;
        if rows.is_empty() {
            return Ok(ChainCheck::Intact {
                records: (expected_seq - 1) as u64,
            });
        }
        for row in &rows {
            let seq = row.seq.unwrap_or_default();
            let broken = |reason: &str| {
                Ok(ChainCheck::Broken {
                    seq,
                    reason: reason.to_owned(),
                })
            };
            if seq != expected_seq {
                return Ok(ChainCheck::Broken {
                    seq: expected_seq,
                    reason: "record missing (deleted?)".into(),
                });
            }
            if row.prev_hash.as_deref() != Some(prev_hash.as_str()) {
                return broken("does not link to the record before it");
            }
            let hash = record_hash(row);
            if row.hash.as_deref() != Some(hash.as_str()) {
                return broken("its content does not match its hash (edited?)");
            }
            prev_hash = hash;
            expected_seq += 1;
        }
    }
}
