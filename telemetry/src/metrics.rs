//! The process-wide Prometheus recorder, shared by every part of a process
//! (and by several apps inside one test process).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Histogram buckets (seconds) for latencies: requests, operations, job runs
/// (milliseconds to tens of seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for a job's due-to-done latency: a reminder may wait on retries for hours.
const JOB_LATENCY_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The recorder's handle, installing the recorder on first use. Histograms are
/// exposed with buckets (`_bucket`/`_sum`/`_count`), never as summaries.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("careslot_job_latency_seconds".into()),
                JOB_LATENCY_BUCKETS,
            )
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            // Only empty bucket lists fail, and these are constants.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what this one sees");
        }
        handle
    })
}

/// Everything recorded so far, in Prometheus text format.
pub fn render() -> String {
    prometheus().render()
}
