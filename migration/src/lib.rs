//! Database migrations of Careslot.
//!
//! This crate stands alone (it never imports `entity`): a migration is a fixed
//! historical step, while entities follow the current code.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_reminders;
mod m20261125_000003_audit_chain;
mod m20261125_000004_job_trace_context;
mod m20261125_000005_staff_locations;
mod m20261125_000006_job_claim_indexes;
mod m20261125_000007_audit_chainer;
mod m20261129_000008_job_queue_partial_indexes;
mod m20261129_000009_job_queue_autovacuum;
mod m20261206_000010_interval_length_bound;
mod m20261206_000011_job_queue_fillfactor;
mod m20261207_000012_job_queue_index_entries;
mod m20261207_000013_unique_keys_without_nulls;
mod statements;

pub use m20261125_000001_initial::BLOCKING_STATUSES_SQL;

/// Every migration of Careslot, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_reminders::Migration),
            Box::new(m20261125_000003_audit_chain::Migration),
            Box::new(m20261125_000004_job_trace_context::Migration),
            Box::new(m20261125_000005_staff_locations::Migration),
            Box::new(m20261125_000006_job_claim_indexes::Migration),
            Box::new(m20261125_000007_audit_chainer::Migration),
            Box::new(m20261129_000008_job_queue_partial_indexes::Migration),
            Box::new(m20261129_000009_job_queue_autovacuum::Migration),
            Box::new(m20261206_000010_interval_length_bound::Migration),
            Box::new(m20261206_000011_job_queue_fillfactor::Migration),
            Box::new(m20261207_000012_job_queue_index_entries::Migration),
            Box::new(m20261207_000013_unique_keys_without_nulls::Migration),
        ]
    }
}
