//! The audit log becomes a hash chain: each record carries its sequence number,
//! the previous record's hash and its own, so an edited or deleted record is
//! detected by `careslot-api verify-audit`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    PrevHash,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            big_integer_null(AuditLog::Seq),
            string_null(AuditLog::PrevHash),
            string_null(AuditLog::Hash),
        ] {
            manager
                .alter_table(Table::alter().table(AuditLog::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("uq_audit_log_seq")
                    .table(AuditLog::Table)
                    .col(AuditLog::Seq)
                    .unique()
                    .to_owned(),
            )
            .await
    }
}
