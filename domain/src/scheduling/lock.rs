//! Serializes writers of one provider's schedule.
//!
//! On PostgreSQL an exclusion constraint alone, under a 100-way race for one
//! interval, produces deadlocks and stalls rather than clean violations; taking a
//! transaction-scoped advisory lock on the provider first makes writers queue,
//! so the availability check inside the transaction sees every earlier booking.
//! The constraint stays the last word. On SQLite the pool has one connection, so
//! a transaction is already alone.

use crate::error::ServiceResult;
use crate::ids::ProviderId;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Takes the provider's lock for the rest of the transaction `txn`.
pub async fn lock_provider(txn: &impl ConnectionTrait, provider: ProviderId) -> ServiceResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let bytes = provider.0.as_bytes();
        let mut high = [0u8; 8];
        let mut low = [0u8; 8];
        high.copy_from_slice(&bytes[..8]);
        low.copy_from_slice(&bytes[8..]);
        let key = i64::from_be_bytes(high) ^ i64::from_be_bytes(low);
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [key.into()],
        ))
        .await?;
    }
    Ok(())
}
