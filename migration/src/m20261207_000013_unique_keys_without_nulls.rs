//! Two unique indexes hold only rows whose key is set.
//!
//! A B-tree index takes an entry for a NULL key too, though NULLs never
//! conflict and no read looks them up there:
//! - `uq_audit_log_seq`: every audit record (one per booking, per job's
//!   contact-details read, per PHI read) is written without `seq`, which the
//!   chainer sets later. Reads by `seq` compare it (`seq >= $1`,
//!   `seq IS NOT NULL`), which implies the predicate; unchained records are
//!   found through `idx_audit_log_unchained`.
//! - `uq_appointments_idempotency`: most bookings carry no idempotency key.
//!   The replay looks a key up by `created_by = $1 AND idempotency_key = $2`,
//!   which implies the predicate, and the booking insert's
//!   `ON CONFLICT DO NOTHING` (no target) still meets the index.
//!
//! Each such write now enters one index fewer.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "DROP INDEX uq_audit_log_seq",
    "CREATE UNIQUE INDEX uq_audit_log_seq ON audit_log (seq) WHERE seq IS NOT NULL",
    "DROP INDEX uq_appointments_idempotency",
    "CREATE UNIQUE INDEX uq_appointments_idempotency ON appointments (created_by, idempotency_key) \
     WHERE idempotency_key IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX uq_appointments_idempotency",
    "CREATE UNIQUE INDEX uq_appointments_idempotency ON appointments (created_by, idempotency_key)",
    "DROP INDEX uq_audit_log_seq",
    "CREATE UNIQUE INDEX uq_audit_log_seq ON audit_log (seq)",
];

crate::statements::statement_lists!(run);
