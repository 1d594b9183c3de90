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
async fn lock_provider(txn: &impl ConnectionTrait, provider: ProviderId) -> ServiceResult<()> {
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

/// Takes the locks of the providers of several bookings for the rest of
/// `txn` (a provider named twice is locked twice, which PostgreSQL's
/// advisory locks allow within one transaction) and, in the same round trip, checks that
/// each booking's provider and patient exist. Answers per booking, in order:
/// `NOT_FOUND` (the provider first) or fine. Neither is ever deleted, so the
/// answer holds for the whole transaction.
///
/// The locks are taken in key order, so two instances' batches over the same
/// providers queue behind each other instead of deadlocking.
pub async fn lock_providers_of_bookings(
    txn: &impl ConnectionTrait,
    bookings: &[(ProviderId, PatientId)],
) -> ServiceResult<Vec<ServiceResult<()>>> {
    if bookings.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    let mut order: Vec<usize> = (0..bookings.len()).collect();
    order.sort_by_key(|i| lock_key(bookings[*i].0));
    let exists = "EXISTS (SELECT 1 FROM providers WHERE id = v.pr) AS provider, \
                  EXISTS (SELECT 1 FROM patients WHERE id = v.pa) AS patient";
    // Row n of the statement is booking order[n]. The rows are listed in key
    // order; the lock is a volatile call, which PostgreSQL evaluates after
    // the sort in any case.
    let (sql, values): (String, Vec<sea_orm::Value>) = if backend == DbBackend::Postgres {
        let column =
            |item: &dyn Fn(usize) -> String| super::snapshot::text_array(order.iter().map(|i| Some(item(*i)))).into();
        (
            format!(
                "SELECT (v.n - 1)::integer AS i, pg_advisory_xact_lock(v.k) IS NOT NULL AS locked, {exists} \
                 FROM unnest($1::text::bigint[], $2::text::uuid[], $3::text::uuid[]) WITH ORDINALITY AS v(k, pr, pa, n) \
                 ORDER BY v.n"
            ),
            vec![
                column(&|i| lock_key(bookings[i].0).to_string()),
                column(&|i| bookings[i].0.0.to_string()),
                column(&|i| bookings[i].1.0.to_string()),
            ],
        )
    } else {
        let rows: Vec<String> = (0..order.len())
            .map(|n| format!("({n}, ?{}, ?{})", 2 * n + 1, 2 * n + 2))
            .collect();
        let values = order
            .iter()
            .flat_map(|i| [bookings[*i].0.0.into(), bookings[*i].1.0.into()])
            .collect();
        (
            format!(
                "WITH v(i, pr, pa) AS (VALUES {}) SELECT v.i AS i, {exists} FROM v ORDER BY v.i",
                rows.join(", ")
            ),
            values,
        )
    };
    let found = txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut answers: Vec<ServiceResult<()>> = bookings
        .iter()
        .map(|_| {
            Err(ServiceError::internal(anyhow::anyhow!(
                "the lock statement answered no row for a booking"
            )))
        })
        .collect();
    for row in found {
        let index: i32 = row.try_get("", "i")?;
        let booking = usize::try_from(index).ok().and_then(|n| order.get(n)).copied();
        let Some(answer) = booking.and_then(|i| answers.get_mut(i)) else {
            continue;
        };
        *answer = if !row.try_get::<bool>("", "provider")? {
            Err(ServiceError::NotFound("provider"))
        } else if !row.try_get::<bool>("", "patient")? {
            Err(ServiceError::NotFound("patient"))
        } else {
            Ok(())
        };
    }
    Ok(answers)
}

/// The advisory-lock key of a provider: its UUID folded to 64 bits. Public
/// so that a test can hold a provider's writers back with the same lock.
pub fn lock_key(provider: ProviderId) -> i64 {
    let bytes = provider.0.as_bytes();
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    low.copy_from_slice(&bytes[8..]);
    i64::from_be_bytes(high) ^ i64::from_be_bytes(low)
}

/// Begins a transaction for writes to schedules (bookings, holds, moves,
/// rules). On PostgreSQL its statements run on generic plans: the lock and
/// snapshot statements take their windows as arrays, and with the values in
/// view the planner judges every custom plan cheaper than the generic one,
/// so it planned them anew on every call, which cost more than running them
/// (0.34 ms planning against 0.18 ms running, BENCHMARKS.md). Their generic
/// plans walk the same indexes. `SET LOCAL` ends with the transaction.
pub(super) async fn begin_writer(db: &sea_orm::DatabaseConnection) -> ServiceResult<sea_orm::DatabaseTransaction> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
    }
    Ok(txn)
}

impl crate::services::Services {
    /// Begins a transaction as a writer of `provider`: its turn in this
    /// process first (see [`ProviderTurns`]), then its lock across instances.
    /// Keep the turn until the transaction has ended.
    pub(crate) async fn begin_as_writer_of(
        &self,
        provider: ProviderId,
    ) -> ServiceResult<(tokio::sync::MutexGuard<'_, ()>, sea_orm::DatabaseTransaction)> {
        let turn = self.provider_turns.wait(provider).await;
        let txn = begin_writer(&self.db).await?;
        lock_provider(&txn, provider).await?;
        Ok((turn, txn))
    }
}

/// Stripes of [`ProviderTurns`]: enough that two of a clinic's providers
/// rarely share one (50 providers: ~1 pair in 1,000 shares), small enough to
/// cost nothing (~40 KB).
const TURN_STRIPES: usize = 1024;

/// Writers of one provider wait their turn in this process before they take
/// a database connection.
///
/// The advisory lock alone serializes the writers of a provider across
/// instances, but each waiter holds a pool connection while it waits: a
/// hundred clients racing for one interval would hold the whole pool, and
/// writers of every other provider would queue behind them for connections.
/// Waiting here first (a fair, FIFO async mutex per stripe of providers)
/// leaves the pool to the writers whose turn it is; the advisory lock still
/// orders this instance's writer against other instances'.
#[derive(Debug)]
pub struct ProviderTurns {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for ProviderTurns {
    fn default() -> Self {
        Self {
            stripes: (0..TURN_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl ProviderTurns {
    /// Waits for `provider`'s turn; the turn lasts as long as the guard.
    pub async fn wait(&self, provider: ProviderId) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = lock_key(provider).unsigned_abs() as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn provider() -> ProviderId {
        ProviderId(uuid::Uuid::new_v4())
    }

    #[test]
    fn a_providers_writers_take_turns_and_others_pass() {
        let turns = ProviderTurns::default();
        let busy = provider();
        let stripe = |p: ProviderId| lock_key(p).unsigned_abs() as usize % TURN_STRIPES;
        let other = std::iter::repeat_with(provider)
            .find(|p| stripe(*p) != stripe(busy))
            .expect("another stripe");
        let turn = turns.wait(busy).now_or_never().expect("a free turn is taken at once");
        assert!(
            turns.wait(busy).now_or_never().is_none(),
            "a second writer of the provider waits"
        );
        assert!(
            turns.wait(other).now_or_never().is_some(),
            "another provider's writer does not wait"
        );
        drop(turn);
        assert!(
            turns.wait(busy).now_or_never().is_some(),
            "the next writer goes once the turn ends"
        );
    }

    #[test]
    fn waiting_writers_go_in_arrival_order() {
        let turns = ProviderTurns::default();
        let busy = provider();
        let first = turns.wait(busy).now_or_never().expect("free");
        let order = std::sync::Mutex::new(Vec::new());
        let waiter = |n: usize| {
            let turns = &turns;
            let order = &order;
            async move {
                let _turn = turns.wait(busy).await;
                order.lock().expect("order").push(n);
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let waiters = futures_util::future::join_all((0..5).map(waiter));
            let released = async {
                tokio::task::yield_now().await;
                drop(first);
            };
            tokio::join!(waiters, released);
        });
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4]);
    }
}
