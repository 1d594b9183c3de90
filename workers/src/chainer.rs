//! Links committed audit records into the hash chain, every second.
//!
//! Audited writes insert their records unchained so that they never wait on
//! one another; any number of workers may run this at once (the chain's lock
//! serializes them).

use domain::Services;
use std::time::Duration;
use tokio::sync::watch;

/// How often pending audit records are linked.
pub const CHAIN_INTERVAL: Duration = Duration::from_secs(1);

/// Links pending audit records every `interval` until `shutdown` turns true.
pub async fn run_audit_chainer(services: Services, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = domain::phi::chain_pending(&services.db).await {
                    tracing::error!(error = ?e, "linking audit records failed");
                }
            }
            () = crate::stopped(&mut shutdown) => return,
        }
    }
}
