//! STAFF scoped to locations: which locations each STAFF user works at, and the
//! location a patient was registered at (so front desks see their own patients).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StaffLocations {
    Table,
    UserId,
    LocationId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Locations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    HomeLocationId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StaffLocations::Table)
                    .col(uuid(StaffLocations::UserId))
                    .col(uuid(StaffLocations::LocationId))
                    .primary_key(
                        Index::create()
                            .col(StaffLocations::UserId)
                            .col(StaffLocations::LocationId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_staff_locations_user")
                            .from(StaffLocations::Table, StaffLocations::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_staff_locations_location")
                            .from(StaffLocations::Table, StaffLocations::LocationId)
                            .to(Locations::Table, Locations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Nullable and without a foreign key: SQLite cannot add one to an
        // existing table, and the domain only ever writes ids it has checked.
        manager
            .alter_table(
                Table::alter()
                    .table(Patients::Table)
                    .add_column(uuid_null(Patients::HomeLocationId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_patients_home_location")
                    .table(Patients::Table)
                    .col(Patients::HomeLocationId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_patients_home_location")
                    .table(Patients::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Patients::Table)
                    .drop_column(Patients::HomeLocationId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(StaffLocations::Table).to_owned())
            .await
    }
}
