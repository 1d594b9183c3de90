//! The API's observability: the subscriber (logs, traces), `GET /metrics`, the
//! HTTP request span (continuing an incoming W3C `traceparent`) and the HTTP
//! request metrics. The shared parts live in the `telemetry` crate.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::settings::{LogFormat, Settings};
use std::time::Instant;

/// Metric: HTTP requests by `method`, `route` (the matched route, never the raw
/// URI) and `status`.
pub const HTTP_REQUESTS: &str = "careslot_http_requests_total";
/// Metric: HTTP request latency (seconds), same labels.
pub const HTTP_REQUEST_DURATION: &str = "careslot_http_request_duration_seconds";

/// The label of requests that matched no route (bounded, whatever the URI).
const UNMATCHED: &str = "unmatched";

/// Installs the global subscriber from the settings; keep the guard and shut it
/// down at exit so buffered spans are exported.
pub fn init(settings: &Settings) -> telemetry::Guard {
    let format = match settings.log_format {
        LogFormat::Json => telemetry::LogFormat::Json,
        LogFormat::Text => telemetry::LogFormat::Text,
    };
    telemetry::init(
        format,
        "info,sqlx=warn,sea_orm=warn,tower_http=info",
        &telemetry::TraceConfig {
            otlp_endpoint: settings.otel_endpoint.clone(),
            service_name: settings
                .otel_service_name
                .clone()
                .unwrap_or_else(|| "careslot-api".into()),
        },
    )
}

/// The process-wide Prometheus recorder (installed on first use, so several
/// apps in one test process share it).
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    telemetry::metrics::prometheus()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        telemetry::metrics::render(),
    )
}

/// The span of one HTTP request: method and matched route (not the URI, whose
/// query string is the client's to fill), the request id, and the trace the
/// caller's `traceparent` names, if any.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = route_of(request);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        request_id,
        http.response.status_code = tracing::field::Empty,
    );
    telemetry::context::continue_from_headers(&span, request.headers());
    span
}

/// Records the status on the request span (replaces tower-http's debug line).
pub fn record_status<B>(response: &axum::http::Response<B>, _latency: std::time::Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// Middleware: counts and times every request by method, route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = route_of(&request).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

fn route_of<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}
