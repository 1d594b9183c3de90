//! Indexes that let a claim read only what it takes: due pending jobs in
//! (run_at, id) order, and running jobs by lease expiry. Before, the claim's
//! `pending OR lapsed` condition scanned and sorted every pending job.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Status,
    RunAt,
    Id,
    LeaseUntil,
}

const DUE: &str = "idx_jobs_status_run_at_id";
const LEASES: &str = "idx_jobs_status_lease_until";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(DUE)
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::RunAt)
                    .col(Jobs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(LEASES)
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::LeaseUntil)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [DUE, LEASES] {
            manager
                .drop_index(Index::drop().name(name).table(Jobs::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
