//! The job queue's indexes, cut to what claims read and what every update
//! must write.
//!
//! A job's row is rewritten at each step (claimed, finished), and a change of
//! `status` is never a HOT update, so every index of `jobs` takes a new entry
//! each time. There were eight: two duplicated others (`(status, lease_until)`
//! twice, `(status, run_at)` a prefix of `(status, run_at, id)`), and the two
//! claim indexes held every job whatever its status. Now the claim reads two
//! partial indexes, due pending jobs by `(run_at, id)` and running jobs by
//! lease expiry, which only the rows in those states enter: a finished job's
//! new version goes into four indexes instead of eight, a claimed job's into
//! five.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE INDEX idx_jobs_due ON jobs (run_at, id) WHERE status = 'pending'",
    "CREATE INDEX idx_jobs_leased ON jobs (lease_until) WHERE status = 'running'",
    "DROP INDEX idx_jobs_status_run_at_id",
    "DROP INDEX idx_jobs_status_lease_until",
    "DROP INDEX idx_jobs_status_run_at",
    "DROP INDEX idx_jobs_status_lease",
];

const DOWN: &[&str] = &[
    "CREATE INDEX idx_jobs_status_lease ON jobs (status, lease_until)",
    "CREATE INDEX idx_jobs_status_run_at ON jobs (status, run_at)",
    "CREATE INDEX idx_jobs_status_lease_until ON jobs (status, lease_until)",
    "CREATE INDEX idx_jobs_status_run_at_id ON jobs (status, run_at, id)",
    "DROP INDEX idx_jobs_leased",
    "DROP INDEX idx_jobs_due",
];

crate::statements::statement_lists!(run);
