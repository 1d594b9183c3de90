//! Per-address and per-user request limits on `POST /graphql`, and the
//! security headers every response carries.

use crate::app::App;
use crate::caller::{Origin, authorization, bearer_token, refusal};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::Caller;
use domain::auth::revoked_session_key;
use domain::limits::{CounterAnswer, CounterOp, retry_seconds};
use serde_json::json;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(60);

/// Refuses a request over its address's or its user's limit with the
/// contract's `RATE_LIMITED` error (HTTP 200, as GraphQL clients expect, with
/// `Retry-After`). The token is verified here, once: the caller travels on to
/// the GraphQL handler in the request's extensions.
///
/// The token's signature and expiry are checked in process; whether its
/// session was ended is asked of the counter store in the same round trip as
/// the rate-limit counters, so a request costs one trip to Redis.
pub async fn rate_limit(State(app): State<App>, Origin(meta): Origin, mut request: Request, next: Next) -> Response {
    let services = &app.services;
    let mut claims = bearer_token(authorization(request.headers())).and_then(|token| {
        token
            .map(|token| services.tokens.verify(token, services.clock.now()).map_err(refusal))
            .transpose()
    });
    let verified = claims.as_ref().ok().and_then(Option::as_ref);
    let ip_key = meta.client_ip.as_ref().map(|ip| format!("http:ip:{ip}"));
    let user_key = verified.map(|c| format!("http:user:{}", c.sub));
    let session_key = verified.and_then(|c| c.sid).map(revoked_session_key);

    let mut ops = Vec::with_capacity(3);
    let mut limits = Vec::with_capacity(2);
    for (key, limit) in [
        (&ip_key, app.settings.rate_limit_ip_per_minute),
        (&user_key, app.settings.rate_limit_user_per_minute),
    ] {
        if let Some(key) = key {
            ops.push(CounterOp::Hit {
                key,
                window: WINDOW,
                limit,
            });
            limits.push(limit);
        }
    }
    if let Some(key) = &session_key {
        ops.push(CounterOp::Exists { key });
    }
    let answers = services.policy.counters.batch(&ops).await;
    for (answer, limit) in answers.iter().zip(&limits) {
        if let CounterAnswer::Hit { count, left } = *answer
            && count > *limit
        {
            // The store reads what is left of a window past its limit.
            return limited(left.unwrap_or(WINDOW));
        }
    }
    if answers.last() == Some(&CounterAnswer::Exists(true)) {
        claims = Err("session ended");
    }
    let caller = match claims {
        Ok(claims) => Caller {
            actor: claims.map(|c| c.actor()),
            meta,
            credential_error: None,
        },
        Err(reason) => Caller {
            actor: None,
            meta,
            credential_error: Some(reason),
        },
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The contract's `RATE_LIMITED` answer, with how long to wait.
fn limited(left: Duration) -> Response {
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
    response
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
