//! The initial schema: every table of the foundation.
//!
//! Times are UTC instants (`timestamptz` on PostgreSQL). Patient PHI is stored
//! only as AES-256-GCM ciphertext (`*_enc`) with the key id beside it, and as
//! keyed hashes (`*_bidx`) where lookups are needed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Locations {
    Table,
    Id,
    Name,
    TimeZone,
    CancelNoticeMinutes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LocationClosedDates {
    Table,
    LocationId,
    ClosedOn,
    Reason,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    EmailBidx,
    EmailEnc,
    PhiKeyId,
    PasswordHash,
    Role,
    ProviderId,
    PatientId,
    Disabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProviderLocations {
    Table,
    ProviderId,
    LocationId,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
    PhiKeyId,
    NameEnc,
    BirthDateEnc,
    EmailEnc,
    PhoneEnc,
    EmailBidx,
    PhoneBidx,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PatientNameTokens {
    Table,
    PatientId,
    TokenBidx,
}

#[derive(DeriveIden)]
enum AppointmentTypes {
    Table,
    Id,
    LocationId,
    Name,
    DurationMinutes,
    BufferBeforeMinutes,
    BufferAfterMinutes,
    SlotIntervalMinutes,
    MinNoticeMinutes,
    MaxAdvanceDays,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AvailabilityRules {
    Table,
    Id,
    ProviderId,
    LocationId,
    Weekday,
    StartMinute,
    EndMinute,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TimeOff {
    Table,
    Id,
    ProviderId,
    StartAt,
    EndAt,
    Reason,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
    ProviderId,
    LocationId,
    AppointmentTypeId,
    StartAt,
    EndAt,
    ExpiresAt,
    HeldBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Appointments {
    Table,
    Id,
    ProviderId,
    PatientId,
    LocationId,
    AppointmentTypeId,
    Status,
    StartAt,
    EndAt,
    CancellationReason,
    IdempotencyKey,
    RequestFingerprint,
    CreatedBy,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AppointmentHistory {
    Table,
    Id,
    AppointmentId,
    ChangedAt,
    ActorUserId,
    Action,
    FromStatus,
    ToStatus,
    OldStartAt,
    OldEndAt,
    NewStartAt,
    NewEndAt,
    Note,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Kind,
    Payload,
    Status,
    RunAt,
    Attempts,
    MaxAttempts,
    LeaseOwner,
    LeaseUntil,
    LastError,
    AppointmentId,
    DedupeKey,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OccurredAt,
    ActorUserId,
    ActorRole,
    Action,
    EntityType,
    EntityId,
    ClientIp,
    UserAgent,
    RequestId,
    Detail,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

/// Statuses whose appointments occupy the provider's time (FHIR codes).
pub const BLOCKING_STATUSES_SQL: &str = "'pending','booked','arrived','checked-in','fulfilled'";

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if backend == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("CREATE EXTENSION IF NOT EXISTS btree_gist")
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Locations::Table)
                    .col(pk_uuid(Locations::Id))
                    .col(string(Locations::Name))
                    .col(string(Locations::TimeZone))
                    .col(integer(Locations::CancelNoticeMinutes).default(1440))
                    .col(timestamp_with_time_zone(Locations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LocationClosedDates::Table)
                    .col(uuid(LocationClosedDates::LocationId))
                    .col(date(LocationClosedDates::ClosedOn))
                    .col(string_null(LocationClosedDates::Reason))
                    .primary_key(
                        Index::create()
                            .col(LocationClosedDates::LocationId)
                            .col(LocationClosedDates::ClosedOn),
                    )
                    .foreign_key(&mut fk(
                        "fk_closed_dates_location",
                        (LocationClosedDates::Table, LocationClosedDates::LocationId),
                        (Locations::Table, Locations::Id),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Providers::Table)
                    .col(pk_uuid(Providers::Id))
                    .col(string(Providers::Name))
                    .col(timestamp_with_time_zone(Providers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_providers_name_id", Providers::Table, &["name", "id"]))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderLocations::Table)
                    .col(uuid(ProviderLocations::ProviderId))
                    .col(uuid(ProviderLocations::LocationId))
                    .primary_key(
                        Index::create()
                            .col(ProviderLocations::ProviderId)
                            .col(ProviderLocations::LocationId),
                    )
                    .foreign_key(&mut fk(
                        "fk_provider_locations_provider",
                        (ProviderLocations::Table, ProviderLocations::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_provider_locations_location",
                        (ProviderLocations::Table, ProviderLocations::LocationId),
                        (Locations::Table, Locations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_provider_locations_location",
                ProviderLocations::Table,
                &["location_id", "provider_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Patients::Table)
                    .col(pk_uuid(Patients::Id))
                    .col(string(Patients::PhiKeyId))
                    .col(blob(Patients::NameEnc))
                    .col(blob(Patients::BirthDateEnc))
                    .col(blob_null(Patients::EmailEnc))
                    .col(blob_null(Patients::PhoneEnc))
                    .col(string_null(Patients::EmailBidx))
                    .col(string_null(Patients::PhoneBidx))
                    .col(timestamp_with_time_zone(Patients::CreatedAt))
                    .col(timestamp_with_time_zone(Patients::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_patients_email_bidx", Patients::Table, &["email_bidx"]))
            .await?;
        manager
            .create_index(index("idx_patients_phone_bidx", Patients::Table, &["phone_bidx"]))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PatientNameTokens::Table)
                    .col(uuid(PatientNameTokens::PatientId))
                    .col(string(PatientNameTokens::TokenBidx))
                    .primary_key(
                        Index::create()
                            .col(PatientNameTokens::PatientId)
                            .col(PatientNameTokens::TokenBidx),
                    )
                    .foreign_key(&mut fk(
                        "fk_patient_name_tokens_patient",
                        (PatientNameTokens::Table, PatientNameTokens::PatientId),
                        (Patients::Table, Patients::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_patient_name_tokens_token",
                PatientNameTokens::Table,
                &["token_bidx", "patient_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string_uniq(Users::EmailBidx))
                    .col(blob(Users::EmailEnc))
                    .col(string(Users::PhiKeyId))
                    .col(string(Users::PasswordHash))
                    .col(string(Users::Role))
                    .col(uuid_null(Users::ProviderId))
                    .col(uuid_null(Users::PatientId))
                    .col(boolean(Users::Disabled).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_users_provider",
                        (Users::Table, Users::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_users_patient",
                        (Users::Table, Users::PatientId),
                        (Patients::Table, Patients::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_users_role", Users::Table, &["role"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(pk_uuid(RefreshTokens::Id))
                    .col(uuid(RefreshTokens::UserId))
                    .col(uuid(RefreshTokens::FamilyId))
                    .col(string_uniq(RefreshTokens::TokenHash))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::RevokedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_refresh_tokens_user",
                        (RefreshTokens::Table, RefreshTokens::UserId),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_refresh_tokens_family", RefreshTokens::Table, &["family_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AppointmentTypes::Table)
                    .col(pk_uuid(AppointmentTypes::Id))
                    .col(uuid(AppointmentTypes::LocationId))
                    .col(string(AppointmentTypes::Name))
                    .col(integer(AppointmentTypes::DurationMinutes))
                    .col(integer(AppointmentTypes::BufferBeforeMinutes).default(0))
                    .col(integer(AppointmentTypes::BufferAfterMinutes).default(0))
                    .col(integer_null(AppointmentTypes::SlotIntervalMinutes))
                    .col(integer(AppointmentTypes::MinNoticeMinutes).default(0))
                    .col(integer_null(AppointmentTypes::MaxAdvanceDays))
                    .col(timestamp_with_time_zone(AppointmentTypes::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_appointment_types_location",
                        (AppointmentTypes::Table, AppointmentTypes::LocationId),
                        (Locations::Table, Locations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_appointment_types_location",
                AppointmentTypes::Table,
                &["location_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AvailabilityRules::Table)
                    .col(pk_uuid(AvailabilityRules::Id))
                    .col(uuid(AvailabilityRules::ProviderId))
                    .col(uuid(AvailabilityRules::LocationId))
                    .col(small_integer(AvailabilityRules::Weekday))
                    .col(integer(AvailabilityRules::StartMinute))
                    .col(integer(AvailabilityRules::EndMinute))
                    .col(timestamp_with_time_zone(AvailabilityRules::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_availability_rules_provider",
                        (AvailabilityRules::Table, AvailabilityRules::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_availability_rules_location",
                        (AvailabilityRules::Table, AvailabilityRules::LocationId),
                        (Locations::Table, Locations::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_availability_rules_provider_location",
                AvailabilityRules::Table,
                &["provider_id", "location_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TimeOff::Table)
                    .col(pk_uuid(TimeOff::Id))
                    .col(uuid(TimeOff::ProviderId))
                    .col(timestamp_with_time_zone(TimeOff::StartAt))
                    .col(timestamp_with_time_zone(TimeOff::EndAt))
                    .col(string_null(TimeOff::Reason))
                    .col(uuid_null(TimeOff::CreatedBy))
                    .col(timestamp_with_time_zone(TimeOff::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_time_off_provider",
                        (TimeOff::Table, TimeOff::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_time_off_provider_start",
                TimeOff::Table,
                &["provider_id", "start_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Holds::Table)
                    .col(pk_uuid(Holds::Id))
                    .col(uuid(Holds::ProviderId))
                    .col(uuid(Holds::LocationId))
                    .col(uuid(Holds::AppointmentTypeId))
                    .col(timestamp_with_time_zone(Holds::StartAt))
                    .col(timestamp_with_time_zone(Holds::EndAt))
                    .col(timestamp_with_time_zone(Holds::ExpiresAt))
                    .col(uuid(Holds::HeldBy))
                    .col(timestamp_with_time_zone(Holds::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_holds_provider",
                        (Holds::Table, Holds::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_holds_provider_start",
                Holds::Table,
                &["provider_id", "start_at"],
            ))
            .await?;
        manager
            .create_index(index("idx_holds_expires", Holds::Table, &["expires_at"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Appointments::Table)
                    .col(pk_uuid(Appointments::Id))
                    .col(uuid(Appointments::ProviderId))
                    .col(uuid(Appointments::PatientId))
                    .col(uuid(Appointments::LocationId))
                    .col(uuid(Appointments::AppointmentTypeId))
                    .col(string(Appointments::Status))
                    .col(timestamp_with_time_zone(Appointments::StartAt))
                    .col(timestamp_with_time_zone(Appointments::EndAt))
                    .col(text_null(Appointments::CancellationReason))
                    .col(string_null(Appointments::IdempotencyKey))
                    .col(string_null(Appointments::RequestFingerprint))
                    .col(uuid_null(Appointments::CreatedBy))
                    .col(integer(Appointments::Version).default(1))
                    .col(timestamp_with_time_zone(Appointments::CreatedAt))
                    .col(timestamp_with_time_zone(Appointments::UpdatedAt))
                    .check(Expr::col(Appointments::StartAt).lt(Expr::col(Appointments::EndAt)))
                    .foreign_key(&mut fk(
                        "fk_appointments_provider",
                        (Appointments::Table, Appointments::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_appointments_patient",
                        (Appointments::Table, Appointments::PatientId),
                        (Patients::Table, Patients::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_appointments_location",
                        (Appointments::Table, Appointments::LocationId),
                        (Locations::Table, Locations::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_appointments_type",
                        (Appointments::Table, Appointments::AppointmentTypeId),
                        (AppointmentTypes::Table, AppointmentTypes::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        // One key, one booking, per caller: a retry finds the first result.
        manager
            .create_index(
                index(
                    "uq_appointments_idempotency",
                    Appointments::Table,
                    &["created_by", "idempotency_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_appointments_provider_start", &["provider_id", "start_at"][..]),
            ("idx_appointments_location_start", &["location_id", "start_at"][..]),
            ("idx_appointments_patient_start", &["patient_id", "start_at"][..]),
        ] {
            manager.create_index(index(name, Appointments::Table, cols)).await?;
        }
        if backend == DbBackend::Postgres {
            // The last word on double booking: no two time-occupying appointments of
            // one provider may overlap, whatever races the application loses.
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "ALTER TABLE appointments ADD CONSTRAINT appointments_no_overlap \
                     EXCLUDE USING gist (provider_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) \
                     WHERE (status IN ({BLOCKING_STATUSES_SQL}))"
                ))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AppointmentHistory::Table)
                    .col(pk_uuid(AppointmentHistory::Id))
                    .col(uuid(AppointmentHistory::AppointmentId))
                    .col(timestamp_with_time_zone(AppointmentHistory::ChangedAt))
                    .col(uuid_null(AppointmentHistory::ActorUserId))
                    .col(string(AppointmentHistory::Action))
                    .col(string_null(AppointmentHistory::FromStatus))
                    .col(string(AppointmentHistory::ToStatus))
                    .col(timestamp_with_time_zone_null(AppointmentHistory::OldStartAt))
                    .col(timestamp_with_time_zone_null(AppointmentHistory::OldEndAt))
                    .col(timestamp_with_time_zone(AppointmentHistory::NewStartAt))
                    .col(timestamp_with_time_zone(AppointmentHistory::NewEndAt))
                    .col(text_null(AppointmentHistory::Note))
                    .foreign_key(&mut fk(
                        "fk_appointment_history_appointment",
                        (AppointmentHistory::Table, AppointmentHistory::AppointmentId),
                        (Appointments::Table, Appointments::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_appointment_history_appointment",
                AppointmentHistory::Table,
                &["appointment_id", "changed_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(pk_uuid(Jobs::Id))
                    .col(string(Jobs::Kind))
                    .col(json(Jobs::Payload))
                    .col(string(Jobs::Status))
                    .col(timestamp_with_time_zone(Jobs::RunAt))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(integer(Jobs::MaxAttempts))
                    .col(string_null(Jobs::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Jobs::LeaseUntil))
                    .col(text_null(Jobs::LastError))
                    .col(uuid_null(Jobs::AppointmentId))
                    .col(string_null(Jobs::DedupeKey).unique_key())
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_jobs_status_run_at", Jobs::Table, &["status", "run_at"]))
            .await?;
        manager
            .create_index(index("idx_jobs_appointment", Jobs::Table, &["appointment_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(pk_uuid(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                    .col(uuid_null(AuditLog::ActorUserId))
                    .col(string_null(AuditLog::ActorRole))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::EntityType))
                    .col(uuid_null(AuditLog::EntityId))
                    .col(string_null(AuditLog::ClientIp))
                    .col(string_null(AuditLog::UserAgent))
                    .col(string_null(AuditLog::RequestId))
                    .col(json_null(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_audit_log_entity",
                AuditLog::Table,
                &["entity_type", "entity_id"],
            ))
            .await?;
        manager
            .create_index(index("idx_audit_log_occurred", AuditLog::Table, &["occurred_at"]))
            .await?;
        if backend == DbBackend::Postgres {
            // Append-only: the audit log refuses UPDATE and DELETE at the database.
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$; \
                     CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log \
                     FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();",
                )
                .await?;
        } else {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END; \
                     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
                )
                .await?;
        }
        Ok(())
    }
}
