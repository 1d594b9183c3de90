//! Connecting, migrating, and reading database errors.

use crate::settings::Settings;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr, TransactionTrait,
};
use std::time::Duration;

/// Advisory lock key that serializes migrations across replicas ("careslot" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6361_7265_736c_6f74;

/// Opens a pool for `url`. SQLite gets one connection (one writer, so a
/// check-then-write runs alone), WAL, foreign keys and a busy timeout.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        options
            .max_connections(1)
            .min_connections(1)
            // An in-memory database lives as long as its connection: never recycle it.
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .map_sqlx_sqlite_opts(|opts| {
                opts.foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            });
    } else {
        options.max_connections(max_connections).min_connections(1);
    }
    Database::connect(options).await
}

/// Opens the database named by the settings, creating the SQLite folder first.
pub async fn connect_settings(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    if settings.database_is_default {
        std::fs::create_dir_all(&settings.data_dir)?;
    }
    Ok(connect(&settings.database_url, settings.db_max_connections).await?)
}

/// Applies pending migrations. On PostgreSQL the whole run holds a
/// transaction-scoped advisory lock, so replicas starting together do not race.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
            .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

/// The SQLSTATE (PostgreSQL) or extended result code (SQLite) of a database error.
pub fn error_code(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
        }
        _ => None,
    }
}

/// True for a unique-constraint violation on either database.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// True for a PostgreSQL exclusion-constraint violation (SQLSTATE 23P01), which
/// `DbErr::sql_err` does not recognise.
pub fn is_exclusion_violation(err: &DbErr) -> bool {
    error_code(err).as_deref() == Some("23P01")
}

/// True when a check of the database answers.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

/// How the connection pool is used right now, for the metrics sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections waiting for work.
    pub idle: u32,
    /// Open connections lent out.
    pub in_use: u32,
    /// The most the pool will open.
    pub max: u32,
}

/// The pool's use, or None for a connection that is not a sqlx pool.
pub fn pool_stats(db: &DatabaseConnection) -> Option<PoolStats> {
    fn of<D: sqlx::Database>(pool: &sqlx::Pool<D>) -> PoolStats {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats {
            idle,
            in_use: size - idle,
            max: pool.options().get_max_connections(),
        }
    }
    // Matched first: the pool getters panic on any other kind of connection.
    match &db.inner {
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_) => Some(of(db.get_postgres_connection_pool())),
        sea_orm::DatabaseConnectionType::SqlxSqlitePoolConnection(_) => Some(of(db.get_sqlite_connection_pool())),
        _ => None,
    }
}
