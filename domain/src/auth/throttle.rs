//! Login throttling: after a few failures for one account (or many from one
//! address) further attempts wait, each failure doubling the wait, up to 15
//! minutes. Unknown emails are throttled like known ones, so the lock reveals
//! nothing about which accounts exist.

use crate::error::{ServiceError, ServiceResult};
use crate::limits::{CounterStore, retry_seconds};
use std::time::Duration;

/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// One throttled subject: its counter and lock keys, and how many failures it may have.
pub(super) struct Throttle {
    failures: String,
    lock: String,
    free_failures: u64,
}

/// The throttles of one attempt: the account, and the client address when known.
pub(super) fn keys(email_bidx: &str, client_ip: Option<&str>) -> Vec<Throttle> {
    let mut throttles = vec![Throttle {
        failures: format!("login:fail:account:{email_bidx}"),
        lock: format!("login:lock:account:{email_bidx}"),
        free_failures: 5,
    }];
    if let Some(ip) = client_ip {
        throttles.push(Throttle {
            failures: format!("login:fail:ip:{ip}"),
            lock: format!("login:lock:ip:{ip}"),
            free_failures: 20,
        });
    }
    throttles
}

/// Refuses the attempt while any of its subjects is locked.
pub(super) async fn check(counters: &dyn CounterStore, throttles: &[Throttle]) -> ServiceResult<()> {
    for throttle in throttles {
        if let Some((_, wait)) = counters.get(&throttle.lock).await {
            return Err(ServiceError::RateLimited {
                retry_after_seconds: retry_seconds(wait),
            });
        }
    }
    Ok(())
}

/// Records a failure; past the free failures, locks for a doubling time.
pub(super) async fn failed(counters: &dyn CounterStore, throttles: &[Throttle]) {
    for throttle in throttles {
        let failures = counters.hit(&throttle.failures, FAILURE_WINDOW).await;
        if failures >= throttle.free_failures {
            let doublings = (failures - throttle.free_failures).min(20) as u32;
            let wait = Duration::from_secs(1u64 << doublings).min(MAX_WAIT);
            counters.hit(&throttle.lock, wait).await;
            tracing::warn!(failures, wait_seconds = wait.as_secs(), "login attempts throttled");
        }
    }
}

/// A success clears the account's failures (not the address's).
pub(super) async fn succeeded(counters: &dyn CounterStore, throttles: &[Throttle]) {
    if let Some(account) = throttles.first() {
        counters.reset(&account.failures).await;
    }
}
