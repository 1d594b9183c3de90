//! Reminders: per-channel delivery records of jobs (the idempotency record of
//! every send), reminder and quiet-hour settings of locations and appointment
//! types, and patients' channel preferences.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum JobDeliveries {
    Table,
    JobId,
    Channel,
    Status,
    Attempt,
    ProviderRef,
    Error,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Locations {
    Table,
    ReminderOffsetsMinutes,
    SmsQuietHours,
}

#[derive(DeriveIden)]
enum AppointmentTypes {
    Table,
    ReminderOffsetsMinutes,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    NotifyEmail,
    NotifySms,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per job and channel: written as `sending` before the call to the
        // peer and `sent` after it, so a retry skips what already went out.
        manager
            .create_table(
                Table::create()
                    .table(JobDeliveries::Table)
                    .col(uuid(JobDeliveries::JobId))
                    .col(string(JobDeliveries::Channel))
                    .col(string(JobDeliveries::Status))
                    .col(integer(JobDeliveries::Attempt))
                    .col(string_null(JobDeliveries::ProviderRef))
                    .col(text_null(JobDeliveries::Error))
                    .col(timestamp_with_time_zone(JobDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone(JobDeliveries::UpdatedAt))
                    .primary_key(Index::create().col(JobDeliveries::JobId).col(JobDeliveries::Channel))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_job_deliveries_job")
                            .from(JobDeliveries::Table, JobDeliveries::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            // Pruning a finished job takes its delivery records along.
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_status_lease")
                    .table(Jobs::Table)
                    .col(Alias::new("status"))
                    .col(Alias::new("lease_until"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_status_finished")
                    .table(Jobs::Table)
                    .col(Alias::new("status"))
                    .col(Alias::new("finished_at"))
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Locations::Table)
                    .add_column(string_null(Locations::ReminderOffsetsMinutes))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Locations::Table)
                    .add_column(string_null(Locations::SmsQuietHours))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AppointmentTypes::Table)
                    .add_column(string_null(AppointmentTypes::ReminderOffsetsMinutes))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Patients::Table)
                    .add_column(boolean(Patients::NotifyEmail).default(true))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Patients::Table)
                    .add_column(boolean(Patients::NotifySms).default(true))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
