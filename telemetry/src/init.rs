//! The subscriber of a process: filtered log lines plus OpenTelemetry spans.

use crate::logline::{DispatchSlot, WithTraceId};
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let dispatch = dispatch(format, filter, provider.tracer("careslot"), std::io::stdout);
    if let Err(e) = tracing::dispatcher::set_global_default(dispatch) {
        eprintln!("logging was already set up: {e}");
    }
    Guard {
        provider: Some(provider),
    }
}

/// The subscriber: OpenTelemetry spans plus log lines to `writer`.
fn dispatch<W>(
    format: LogFormat,
    filter: EnvFilter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    writer: W,
) -> tracing::Dispatch
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Spans go to OpenTelemetry at INFO and above, whatever RUST_LOG says about
    // log lines: a quiet log must not cut traces short.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(LevelFilter::INFO);
    let slot = DispatchSlot::default();
    let lines = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceId::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
                slot.clone(),
            ))
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .event_format(WithTraceId::text(tracing_subscriber::fmt::format(), slot.clone()))
            .with_filter(filter)
            .boxed(),
    };
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(otel).with(lines));
    slot.fill(&dispatch);
    dispatch
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const TRACE: &str = "5e1d0c0ffee0ddba11ca7f00d5eed123";

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_trace_id_of_their_span_and_context_propagates() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let dispatch = dispatch(
            LogFormat::Json,
            EnvFilter::new("info"),
            provider.tracer("test"),
            move || writer.clone(),
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("request", route = "/graphql");
            crate::context::continue_from_traceparent(&span, &format!("00-{TRACE}-00f067aa0ba902b7-01"));
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            assert_eq!(crate::context::current_trace_id().as_deref(), Some(TRACE));
            let handed_on = crate::context::current_traceparent().expect("a traceparent");
            assert!(handed_on.starts_with(&format!("00-{TRACE}-")), "{handed_on}");
            assert!(
                !handed_on.contains("00f067aa0ba902b7"),
                "names this span, not the caller's"
            );
        });
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("outside"));
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["trace_id"], TRACE);
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["span"]["route"], "/graphql");
        assert!(lines[0]["timestamp"].is_string() && lines[0]["target"].is_string());
        assert!(lines[1].get("trace_id").is_none(), "no trace outside a span: {text}");
        assert_eq!(crate::context::current_trace_id(), None);
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let provider = SdkTracerProvider::builder().build();
        let dispatch = dispatch(
            LogFormat::Text,
            EnvFilter::new("off"),
            provider.tracer("test"),
            std::io::sink,
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("job");
            crate::context::continue_from_traceparent(&span, "00-not-a-trace-01");
            let _entered = span.enter();
            let id = crate::context::current_trace_id().expect("a fresh trace");
            assert_eq!(id.len(), 32);
            assert_ne!(id, TRACE);
        });
    }
}
