//! Logs, traces and metrics shared by `careslot-api` and `careslot-worker`.
//!
//! - [`init`] installs the process's tracing subscriber: log lines (text or
//!   JSON, filtered by `RUST_LOG`) that carry the trace id, and OpenTelemetry
//!   spans exported over OTLP/HTTP when an endpoint is configured.
//! - [`context`] speaks W3C trace context: continue an incoming `traceparent`,
//!   hand the current one to a job, read the current trace id.
//! - [`metrics`] is the process-wide Prometheus recorder and its text rendering.
//!
//! This crate knows nothing of Careslot's domain: both binaries and the domain
//! (which stores a booking's trace context with its jobs) depend on it.

pub mod context;
mod init;
mod logline;
pub mod metrics;

pub use init::{Guard, LogFormat, TraceConfig, init};
