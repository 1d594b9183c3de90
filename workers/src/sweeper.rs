//! The periodic sweeps (the old Celery beat): expired holds, no-shows, finished
//! jobs. Each is safe with any number of workers running it at once.

use domain::Services;
use std::time::Duration;
use tokio::sync::watch;

/// What one round of sweeps did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired holds deleted (each announced as `HOLD_EXPIRED`).
    pub holds: u64,
    /// BOOKED appointments marked NOSHOW.
    pub no_shows: u64,
    /// Finished jobs pruned.
    pub jobs: u64,
}

/// Runs every sweep once; a failing sweep is logged and the others still run.
pub async fn sweep_once(services: &Services) -> SweepReport {
    let mut report = SweepReport::default();
    match services.sweep_expired_holds().await {
        Ok(n) => report.holds = n,
        Err(e) => tracing::error!(error = ?e, "sweeping expired holds failed"),
    }
    match services.sweep_no_shows().await {
        Ok(n) => report.no_shows = n,
        Err(e) => tracing::error!(error = ?e, "sweeping no-shows failed"),
    }
    match services.prune_finished_jobs().await {
        Ok(n) => report.jobs = n,
        Err(e) => tracing::error!(error = ?e, "pruning finished jobs failed"),
    }
    if report != SweepReport::default() {
        tracing::info!(
            holds = report.holds,
            no_shows = report.no_shows,
            jobs = report.jobs,
            "sweeps"
        );
    }
    report
}

/// Sweeps every `interval` until `shutdown` turns true.
pub async fn run_sweeps(services: Services, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => { sweep_once(&services).await; }
            () = crate::stopped(&mut shutdown) => return,
        }
    }
}
