//! Turns a request's bearer token and origin into the domain's `Caller`.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, request::Parts};
use domain::auth::AccessClaims;
use domain::phi::RequestMeta;
use domain::{Caller, Services};
use std::convert::Infallible;
use std::net::SocketAddr;

/// Request origin, taken from the connection and headers.
pub struct Origin(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect::<String>())
        };
        // Behind nginx the peer is the proxy; it sets X-Real-IP (deploy/nginx).
        let client_ip = header("x-real-ip").or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
        });
        Ok(Origin(RequestMeta {
            client_ip,
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
        }))
    }
}

/// Verifies a bearer authorization value: `Ok(None)` when there is none,
/// the token's claims when it is valid and its session was not ended, the
/// reason when it is not.
pub async fn authenticate(
    services: &Services,
    authorization: Option<&str>,
) -> Result<Option<AccessClaims>, &'static str> {
    let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or("invalid authorization header")?;
    match services.verify_access_token(token).await {
        Ok(claims) => Ok(Some(claims)),
        Err(domain::ServiceError::Unauthenticated(reason)) => Err(reason),
        Err(_) => Err("invalid access token"),
    }
}

/// The caller a bearer authorization value speaks for. A missing token gives an
/// anonymous caller; a bad one gives an anonymous caller that remembers why, so
/// operations needing a user answer `UNAUTHENTICATED` with the reason.
pub async fn caller_from_authorization(services: &Services, authorization: Option<&str>, meta: RequestMeta) -> Caller {
    let mut caller = Caller {
        meta,
        ..Caller::default()
    };
    match authenticate(services, authorization).await {
        Ok(claims) => caller.actor = claims.map(|c| c.actor()),
        Err(reason) => caller.credential_error = Some(reason),
    }
    caller
}

/// The authorization header of a request.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
