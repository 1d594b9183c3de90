//! Serializes writers of one provider's schedule.
//!
//! On PostgreSQL an exclusion constraint alone, under a 100-way race for one
//! interval, produces deadlocks and stalls rather than clean violations; taking a
//! transaction-scoped advisory lock on the provider first makes writers queue,
//! so the availability check inside the transaction sees every earlier booking.
//! The constraint stays the last word. On SQLite the pool has one connection, so
//! a transaction is already alone.

use crate::error::{ServiceError, ServiceResult};
use crate::ids::{PatientId, ProviderId};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Takes the provider's lock for the rest of the transaction `txn`.
pub async fn lock_provider(txn: &impl ConnectionTrait, provider: ProviderId) -> ServiceResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [lock_key(provider).into()],
        ))
        .await?;
    }
    Ok(())
}

/// Takes the provider's lock for the rest of `txn` and, in the same round
/// trip, checks that the provider and the patient exist (`NOT_FOUND`
/// otherwise, the provider first). Neither is ever deleted, so the answer
/// holds for the whole transaction.
pub async fn lock_provider_of_booking(
    txn: &impl ConnectionTrait,
    provider: ProviderId,
    patient: PatientId,
) -> ServiceResult<()> {
    let backend = txn.get_database_backend();
    let (sql, values) = match backend {
        DbBackend::Postgres => (
            "SELECT pg_advisory_xact_lock($1) IS NOT NULL AS locked, \
             EXISTS (SELECT 1 FROM providers WHERE id = $2) AS provider, \
             EXISTS (SELECT 1 FROM patients WHERE id = $3) AS patient",
            vec![lock_key(provider).into(), provider.0.into(), patient.0.into()],
        ),
        _ => (
            "SELECT EXISTS (SELECT 1 FROM providers WHERE id = ?1) AS provider, \
             EXISTS (SELECT 1 FROM patients WHERE id = ?2) AS patient",
            vec![provider.0.into(), patient.0.into()],
        ),
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("the lock statement answered no row")))?;
    if !row.try_get::<bool>("", "provider")? {
        return Err(ServiceError::NotFound("provider"));
    }
    if !row.try_get::<bool>("", "patient")? {
        return Err(ServiceError::NotFound("patient"));
    }
    Ok(())
}

/// The advisory-lock key of a provider: its UUID folded to 64 bits.
fn lock_key(provider: ProviderId) -> i64 {
    let bytes = provider.0.as_bytes();
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    low.copy_from_slice(&bytes[8..]);
    i64::from_be_bytes(high) ^ i64::from_be_bytes(low)
}
