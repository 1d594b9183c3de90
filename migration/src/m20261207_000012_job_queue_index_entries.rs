//! Two more of the job queue's indexes made partial, so that claiming and
//! finishing a job write fewer index entries.
//!
//! A claim or a finish changes `status`, so it is never a HOT update, and the
//! row's new version takes an entry in every index whose predicate it meets.
//! Two indexes held every job whatever its state, but are read only for some:
//! - `(appointment_id)` is read to cancel an appointment's *pending* jobs
//!   (`cancel_pending`); it now holds pending jobs only.
//! - `(status, finished_at)` is read for finished jobs (the retention sweep:
//!   done and cancelled; dead letters); it now holds those only, so a claim,
//!   which leaves `finished_at` empty, no longer writes to it.
//!
//! A claimed job's new version goes into three indexes instead of five
//! (primary key, `dedupe_key`, leases), a finished one's into three instead of
//! four (primary key, `dedupe_key`, finished). Measured in BENCHMARKS.md.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE INDEX idx_jobs_pending_appointment ON jobs (appointment_id) WHERE status = 'pending'",
    "CREATE INDEX idx_jobs_finished ON jobs (status, finished_at) WHERE status IN ('done', 'cancelled', 'dead')",
    "DROP INDEX idx_jobs_appointment",
    "DROP INDEX idx_jobs_status_finished",
];

const DOWN: &[&str] = &[
    "CREATE INDEX idx_jobs_status_finished ON jobs (status, finished_at)",
    "CREATE INDEX idx_jobs_appointment ON jobs (appointment_id)",
    "DROP INDEX idx_jobs_finished",
    "DROP INDEX idx_jobs_pending_appointment",
];

crate::statements::statement_lists!(run);
