//! Per-address and per-user request limits on `POST /graphql`, and the
//! security headers every response carries.

use crate::app::App;
use crate::caller::{Origin, authorization, caller_from_authorization};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::limits::retry_seconds;
use serde_json::json;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(60);

/// Refuses a request over its address's or its user's limit with the
/// contract's `RATE_LIMITED` error (HTTP 200, as GraphQL clients expect, with
/// `Retry-After`). The token is verified here, once: the caller travels on to
/// the GraphQL handler in the request's extensions.
pub async fn rate_limit(State(app): State<App>, Origin(meta): Origin, mut request: Request, next: Next) -> Response {
    let counters = app.services.policy.counters.clone();
    let caller = caller_from_authorization(&app.services, authorization(request.headers()), meta).await;
    let user = caller.actor.as_ref().map(|actor| actor.user_id);
    let client_ip = caller.meta.client_ip.clone();
    request.extensions_mut().insert(caller);
    let mut checks = Vec::with_capacity(2);
    if let Some(ip) = &client_ip {
        checks.push((format!("http:ip:{ip}"), app.settings.rate_limit_ip_per_minute));
    }
    if let Some(user) = user {
        checks.push((format!("http:user:{user}"), app.settings.rate_limit_user_per_minute));
    }
    for (key, limit) in checks {
        let (count, left) = counters.hit(&key, WINDOW).await;
        if count > limit {
            metrics::counter!("careslot_rate_limited_total").increment(1);
            let wait = retry_seconds(left);
            let body = json!({ "data": null, "errors": [{
                "message": "too many requests",
                "extensions": { "code": "RATE_LIMITED", "retryAfterSeconds": wait },
            }] });
            let mut response = Json(body).into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    next.run(request).await
}

/// Headers every response carries: no sniffing, no framing, no referrer, and
/// HSTS when the request came through TLS (the proxy says so).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let behind_tls = request
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if behind_tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}
