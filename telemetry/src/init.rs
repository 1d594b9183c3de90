//! The subscriber of a process: filtered log lines plus OpenTelemetry spans.

use crate::logline::{self, WithTraceId};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; the trace id ends the line.
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target`, `fields`,
    /// `span`/`spans` and `trace_id`.
    Json,
}

/// Where spans go.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL; `/v1/traces` is appended). None: no exporter,
    /// but spans still get trace ids (for log lines and propagation).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`, e.g. `careslot-api`.
    pub service_name: String,
}

/// Keeps the tracer provider; [`Guard::shutdown`] flushes the spans still buffered.
#[must_use = "keep the guard and call shutdown() before the process exits, or buffered spans are lost"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Exports what is buffered and stops the exporter. Blocks (briefly): call it
    /// at the very end of `main`.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber (once per process; later calls only warn) and
/// the W3C trace-context propagator. `default_filter` applies when `RUST_LOG`
/// is unset. An exporter that cannot be built is reported and left out: the
/// process still runs, with trace ids in its logs.
pub fn init(format: LogFormat, default_filter: &str, traces: &TraceConfig) -> Guard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = provider(traces);
    let tracer = provider.tracer("careslot");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Spans go to OpenTelemetry at INFO and above, whatever RUST_LOG says about
    // log lines: a quiet log must not cut traces short.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(LevelFilter::INFO);
    let lines = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceId::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
            ))
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(WithTraceId::text(tracing_subscriber::fmt::format()))
            .with_filter(filter)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(otel).with(lines);
    let dispatch = tracing::Dispatch::new(subscriber);
    logline::remember(&dispatch);
    if let Err(e) = tracing::dispatcher::set_global_default(dispatch) {
        eprintln!("logging was already set up: {e}");
    }
    Guard {
        provider: Some(provider),
    }
}

/// A provider that exports over OTLP/HTTP (protobuf) in batches when an endpoint
/// is set, and exports nothing otherwise.
fn provider(traces: &TraceConfig) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(traces.service_name.clone())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &traces.otlp_endpoint else {
        return builder.build();
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(e) => {
            eprintln!("telemetry: cannot export spans to {url} (OTEL_EXPORTER_OTLP_ENDPOINT): {e}");
            builder.build()
        }
    }
}
