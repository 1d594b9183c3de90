//! Metrics both binaries share: the periodic sampler (database pool, job queue
//! depth), the worker's job metrics, and the worker's own `/metrics` +
//! `/healthz` listener. Rendering lives in the `telemetry` crate.

use domain::Services;
use domain::jobs::{Finish, Job};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Metric: connections of the database pool by state (idle, in_use).
pub const DB_POOL_CONNECTIONS: &str = "careslot_db_pool_connections";
/// Metric: the most connections the pool opens.
pub const DB_POOL_MAX_CONNECTIONS: &str = "careslot_db_pool_max_connections";
/// Metric: jobs by state (pending, running, dead), sampled.
pub const QUEUE_DEPTH: &str = "careslot_jobs_queue_depth";
/// Metric: jobs finished (sent, or nothing to send), by kind.
pub const JOBS_COMPLETED: &str = "careslot_jobs_completed_total";
/// Metric: attempts that failed and will be retried, by kind.
pub const JOBS_FAILED: &str = "careslot_jobs_failed_total";
/// Metric: jobs dead-lettered, by kind.
pub const JOBS_DEAD_LETTERED: &str = "careslot_jobs_dead_lettered_total";
/// Metric: from a job's due time to its completion (seconds), by kind.
pub const JOB_LATENCY: &str = "careslot_job_latency_seconds";
/// Metric: one attempt's run time (seconds), by kind.
pub const JOB_RUN_DURATION: &str = "careslot_job_run_duration_seconds";
/// Metric: 1 while a careslot-worker process runs.
pub const WORKER_UP: &str = "careslot_worker_up";

/// How often the sampler looks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Samples the pool and the queue depth now.
pub async fn sample(services: &Services) {
    if let Some(pool) = domain::db::pool_stats(&services.db) {
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(pool.in_use));
        metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(f64::from(pool.max));
    }
    match services.queue_depth().await {
        Ok(depth) => {
            // u64 -> f64 loses nothing below 2^53 jobs.
            metrics::gauge!(QUEUE_DEPTH, "state" => "pending").set(depth.pending as f64);
            metrics::gauge!(QUEUE_DEPTH, "state" => "running").set(depth.running as f64);
            metrics::gauge!(QUEUE_DEPTH, "state" => "dead").set(depth.dead as f64);
        }
        Err(e) => tracing::warn!(error = %e, "could not sample the job queue depth"),
    }
}

/// Samples every `interval` until `shutdown` turns true.
pub fn spawn_sampler(services: Services, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            sample(&services).await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = crate::stopped(&mut shutdown) => return,
            }
        }
    })
}

/// Records how one attempt of `job` ended, `started` being when it began.
pub(crate) fn job_finished(job: &Job, finish: &Finish, started: Instant, now: chrono::DateTime<chrono::Utc>) {
    let kind = job.kind.code();
    metrics::histogram!(JOB_RUN_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
    let counter = match finish {
        Finish::Done { .. } => {
            let waited = (now - job.run_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!(JOB_LATENCY, "kind" => kind).record(waited);
            JOBS_COMPLETED
        }
        Finish::Retry { .. } if job.attempts < job.max_attempts => JOBS_FAILED,
        Finish::Retry { .. } | Finish::Dead { .. } => JOBS_DEAD_LETTERED,
        Finish::Defer { .. } | Finish::Release => return,
    };
    metrics::counter!(counter, "kind" => kind).increment(1);
}

/// Binds the worker's metrics listener (`CARESLOT_WORKER_METRICS_LISTEN`).
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` on `listener`
/// until `shutdown` turns true.
pub fn serve(listener: tokio::net::TcpListener, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    use axum::routing::get;
    telemetry::metrics::prometheus();
    metrics::gauge!(WORKER_UP).set(1.0);
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
                    telemetry::metrics::render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        let stopped = async move { crate::stopped(&mut shutdown).await };
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    })
}
