//! Ended sign-ins, shared by every instance (in Redis when configured).
//!
//! An access token is a self-contained JWT, so signing out cannot take it back.
//! Instead the session (refresh-token family) id it carries is marked revoked
//! for as long as any access token of it can live, and every request checks the
//! mark. The store is the rate limiter's: in process, or Redis across instances.

use crate::limits::CounterStore;

/// The counter that marks `session` ended; it exists while the mark holds.
pub fn revoked_session_key(session: uuid::Uuid) -> String {
    format!("revoked-session:{session}")
}

/// Marks `session` revoked for `lifetime` (the access-token lifetime).
pub(crate) async fn revoke(store: &dyn CounterStore, session: uuid::Uuid, lifetime: chrono::Duration) {
    let window = lifetime.to_std().unwrap_or(std::time::Duration::from_secs(900));
    store.hit(&revoked_session_key(session), window).await;
}

/// True when `session` was revoked within the last access-token lifetime.
pub(crate) async fn is_revoked(store: &dyn CounterStore, session: uuid::Uuid) -> bool {
    store.exists(&revoked_session_key(session)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MemoryCounters;

    #[tokio::test]
    async fn a_revoked_session_stays_revoked_for_the_lifetime_only() {
        let store = MemoryCounters::default();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        revoke(&store, a, chrono::Duration::milliseconds(40)).await;
        assert!(is_revoked(&store, a).await);
        assert!(!is_revoked(&store, b).await, "another session is untouched");
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        assert!(!is_revoked(&store, a).await, "no token of it can still be alive");
    }
}
