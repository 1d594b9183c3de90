//! Autovacuum for the job queue's table, tuned as queue tables need.
//!
//! Every claim and finish rewrites a job's row, and the claim reads its
//! partial index from the oldest due job: until a vacuum removes them, the
//! dead entries that claimed jobs leave at the front of that index are walked
//! by every later claim (BENCHMARKS.md: a claim of 200 cost 34 ms with tens
//! of thousands of them). PostgreSQL's defaults vacuum a table once a fifth
//! of it is dead; the queue is vacuumed after 1,000 dead rows plus 1%, without
//! cost-based pauses, and analyzed as often, so claims stay short and the
//! planner's picture of pending and running jobs stays current. PostgreSQL
//! only; SQLite has no vacuum daemon to tune.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE jobs SET (\
    autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0.01, \
    autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01, \
    autovacuum_vacuum_cost_delay = 0)";
const DOWN: &str = "ALTER TABLE jobs RESET (\
    autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor, \
    autovacuum_analyze_threshold, autovacuum_analyze_scale_factor, \
    autovacuum_vacuum_cost_delay)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::statements::run_on_postgres(manager, &[UP]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::statements::run_on_postgres(manager, &[DOWN]).await
    }
}
