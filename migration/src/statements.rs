//! Running a migration's hand-written statements in order.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Runs `statements` in order (the same text on PostgreSQL and SQLite).
pub(crate) async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Runs `statements` in order on PostgreSQL; nothing on SQLite (settings and
/// constraints SQLite has no way to add to an existing table).
pub(crate) async fn run_on_postgres(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    run(manager, statements).await
}

/// The `MigrationTrait` impl of a `Migration` that is two lists of
/// hand-written statements, `UP` and `DOWN`, run in order by `$runner`
/// ([`run`] on both databases, [`run_on_postgres`] on PostgreSQL only).
macro_rules! statement_lists {
    ($runner:ident) => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::statements::$runner(manager, UP).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::statements::$runner(manager, DOWN).await
            }
        }
    };
}
pub(crate) use statement_lists;
