//! Turns a request's bearer token and origin into the domain's `Caller`.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, request::Parts};
use domain::Services;
use domain::auth::AccessClaims;
use domain::phi::RequestMeta;
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

/// The token of a bearer authorization value: `Ok(None)` when there is none.
pub fn bearer_token(authorization: Option<&str>) -> Result<Option<&str>, &'static str> {
    let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(|token| Some(token.trim()))
        .ok_or("invalid authorization header")
}

/// Why a token was refused, as the caller is told.
pub fn refusal(error: domain::ServiceError) -> &'static str {
    match error {
        domain::ServiceError::Unauthenticated(reason) => reason,
        _ => "invalid access token",
    }
}

/// Verifies a bearer authorization value: `Ok(None)` when there is none,
/// the token's claims when it is valid and its session was not ended, the
/// reason when it is not.
pub async fn authenticate(
    services: &Services,
    authorization: Option<&str>,
) -> Result<Option<AccessClaims>, &'static str> {
    let Some(token) = bearer_token(authorization)? else {
        return Ok(None);
    };
    services.verify_access_token(token).await.map(Some).map_err(refusal)
}

/// The authorization header of a request.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
