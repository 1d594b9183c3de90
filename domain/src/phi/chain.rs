//! The audit log's hash chain: each record carries its position, the previous
//! record's hash and its own, so an edited or deleted record is detected.
//!
//! Writers insert records unchained and never wait for one another. The
//! chainer links committed records in batches: it takes the chain's lock
//! (an advisory lock on PostgreSQL; SQLite has one writer), reads the chain's
//! head and fills `seq`, `prev_hash` and `hash` of the oldest unchained
//! records. The database's append-only triggers allow exactly that update.
//! The worker runs the chainer every second; `verify-audit` and `auditEvents`
//! run it first, so they see every committed record.

use crate::error::ServiceResult;
use chrono::SecondsFormat;
use entity::audit_log;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionSession, TransactionTrait, Value,
};
use sha2::{Digest, Sha256};

/// Advisory lock key that serializes chaining ("audit" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x0061_7564_6974;

/// Records linked per transaction: one read and one update statement each.
const CHAIN_BATCH: u64 = 1000;

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

/// Links every committed unchained record into the chain, oldest first.
/// Answers how many it linked.
pub async fn chain_pending<C: ConnectionTrait + TransactionTrait>(db: &C) -> ServiceResult<u64> {
    let mut linked = 0;
    loop {
        let batch = chain_batch(db).await?;
        linked += batch;
        if batch < CHAIN_BATCH {
            return Ok(linked);
        }
    }
}

/// Links up to [`CHAIN_BATCH`] records in one transaction.
async fn chain_batch<C: ConnectionTrait + TransactionTrait>(db: &C) -> ServiceResult<u64> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})"))
            .await?;
    }
    // Read after the lock: the previous chainer's links are committed and visible.
    let pending = audit_log::Entity::find()
        .filter(audit_log::Column::Seq.is_null())
        .order_by_asc(audit_log::Column::OccurredAt)
        .order_by_asc(audit_log::Column::Id)
        .limit(CHAIN_BATCH)
        .all(&txn)
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let head = audit_log::Entity::find()
        .filter(audit_log::Column::Seq.is_not_null())
        .order_by_desc(audit_log::Column::Seq)
        .one(&txn)
        .await?;
    let (mut seq, mut prev_hash) = match head {
        Some(row) => (row.seq.unwrap_or(0) + 1, row.hash.unwrap_or_default()),
        None => (1, GENESIS.to_owned()),
    };
    let count = pending.len() as u64;
    let mut values = Vec::with_capacity(pending.len() * 4);
    for mut row in pending {
        row.seq = Some(seq);
        row.prev_hash = Some(prev_hash);
        let hash = record_hash(&row);
        values.extend([
            Value::from(row.id),
            Value::from(seq),
            Value::from(row.prev_hash),
            Value::from(hash.clone()),
        ]);
        seq += 1;
        prev_hash = hash;
    }
    txn.execute_raw(link_statement(backend, values)).await?;
    txn.commit().await?;
    Ok(count)
}

/// One UPDATE that fills the chain columns of every record in `values`
/// (id, seq, prev_hash, hash per record). `VALUES` columns are named
/// `column1`... on both databases.
fn link_statement(backend: DbBackend, values: Vec<Value>) -> Statement {
    let placeholder = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let rows: Vec<String> = (0..values.len() / 4)
        .map(|r| {
            let p: Vec<String> = (1..=4).map(|c| placeholder(r * 4 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "UPDATE audit_log SET seq = v.column2, prev_hash = v.column3, hash = v.column4 \
         FROM (VALUES {}) AS v WHERE audit_log.id = v.column1",
        rows.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, values)
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

/// Links pending records, then walks the chain from the first record, in batches.
pub async fn verify_chain<C: ConnectionTrait + TransactionTrait>(conn: &C) -> ServiceResult<ChainCheck> {
    const BATCH: u64 = 1000;
    chain_pending(conn).await?;
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
