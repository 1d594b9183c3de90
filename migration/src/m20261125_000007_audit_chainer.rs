//! Audit records are written unchained and linked into the hash chain afterwards.
//!
//! Before, every audited write took one global lock to read the chain's head
//! and held it until its transaction committed, so audited writes of the whole
//! deployment committed one at a time. Now a write inserts its record with
//! `seq`, `prev_hash` and `hash` empty, and a chainer links committed records
//! in batches under the lock. The append-only triggers allow exactly that one
//! update: filling the three chain columns of a record that has none, with
//! every other column unchanged. Everything else still fails.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The chainer reads unchained records oldest first; this index holds only those.
const UNCHAINED_INDEX: &str = "CREATE INDEX idx_audit_log_unchained ON audit_log (occurred_at, id) WHERE seq IS NULL";

/// Columns an update must leave alone (PostgreSQL: `json` has no equality, so `detail` compares as text).
const POSTGRES_LINKING: &str = "\
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The chainer may link an unchained record once: fill seq, prev_hash and hash, change nothing else.
  IF TG_OP = 'UPDATE'
     AND OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
     AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
     AND (NEW.id, NEW.occurred_at, NEW.actor_user_id, NEW.actor_role, NEW.action, NEW.entity_type,
          NEW.entity_id, NEW.client_ip, NEW.user_agent, NEW.request_id, NEW.detail::text)
         IS NOT DISTINCT FROM
         (OLD.id, OLD.occurred_at, OLD.actor_user_id, OLD.actor_role, OLD.action, OLD.entity_type,
          OLD.entity_id, OLD.client_ip, OLD.user_agent, OLD.request_id, OLD.detail::text)
  THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only';
END $$;";

/// The same rule for SQLite (`IS` compares NULLs as equal).
const SQLITE_LINKING: &str = "\
DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT (
  OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
  AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
  AND NEW.id IS OLD.id AND NEW.occurred_at IS OLD.occurred_at AND NEW.actor_user_id IS OLD.actor_user_id
  AND NEW.actor_role IS OLD.actor_role AND NEW.action IS OLD.action AND NEW.entity_type IS OLD.entity_type
  AND NEW.entity_id IS OLD.entity_id AND NEW.client_ip IS OLD.client_ip AND NEW.user_agent IS OLD.user_agent
  AND NEW.request_id IS OLD.request_id AND NEW.detail IS OLD.detail
)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;";

/// The triggers of migration 000001: no update at all.
const POSTGRES_STRICT: &str = "\
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS \
$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;";
const SQLITE_STRICT: &str = "\
DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(UNCHAINED_INDEX).await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_LINKING).await?,
            _ => db.execute_unprepared(SQLITE_LINKING).await?,
        };
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_audit_log_unchained").await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => db.execute_unprepared(POSTGRES_STRICT).await?,
            _ => db.execute_unprepared(SQLITE_STRICT).await?,
        };
        Ok(())
    }
}
