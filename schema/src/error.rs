//! Maps domain errors onto the contract's `extensions.code`.

use async_graphql::{Error, ErrorExtensions};
use domain::ServiceError;

/// The error codes of the client contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No or invalid token.
    Unauthenticated,
    /// Role or ownership does not allow it.
    Forbidden,
    /// The id does not exist or is not visible.
    NotFound,
    /// Validation failed; `extensions.field` names the input.
    BadUserInput,
    /// The interval is taken or outside availability.
    SlotUnavailable,
    /// The status does not allow this change.
    InvalidTransition,
    /// Too many requests.
    RateLimited,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    /// The code as sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::SlotUnavailable => "SLOT_UNAVAILABLE",
            Self::InvalidTransition => "INVALID_TRANSITION",
            Self::RateLimited => "RATE_LIMITED",
            Self::Internal => "INTERNAL",
        }
    }
}

/// Converts a domain error into a GraphQL error with its code. Internal errors
/// are logged here with their cause and answered without detail, but with the
/// trace id (`extensions.traceId`) that the log line carries too.
pub fn service_error(err: ServiceError) -> Error {
    let code = match &err {
        ServiceError::Unauthenticated(_) => ErrorCode::Unauthenticated,
        ServiceError::Forbidden => ErrorCode::Forbidden,
        ServiceError::NotFound(_) => ErrorCode::NotFound,
        ServiceError::BadInput { .. } => ErrorCode::BadUserInput,
        ServiceError::SlotUnavailable(_) => ErrorCode::SlotUnavailable,
        ServiceError::InvalidTransition(_) => ErrorCode::InvalidTransition,
        ServiceError::RateLimited { .. } => ErrorCode::RateLimited,
        ServiceError::Internal(cause) => {
            tracing::error!(error = ?cause, "internal error");
            ErrorCode::Internal
        }
    };
    let trace_id = match code {
        ErrorCode::Internal => telemetry::context::current_trace_id(),
        _ => None,
    };
    Error::new(err.to_string()).extend_with(|_, ext| {
        ext.set("code", code.as_str());
        match &err {
            ServiceError::BadInput { field, .. } => ext.set("field", field.as_str()),
            ServiceError::RateLimited { retry_after_seconds } => ext.set("retryAfterSeconds", *retry_after_seconds),
            // Support finds the logged cause (and the whole request) by this id.
            ServiceError::Internal(_) => {
                if let Some(trace_id) = &trace_id {
                    ext.set("traceId", trace_id.as_str());
                }
            }
            _ => {}
        }
    })
}

/// `.gql()` on domain results: the resolver's one-word conversion.
pub trait IntoGqlResult<T> {
    /// Maps the error with [`service_error`].
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> IntoGqlResult<T> for Result<T, ServiceError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(service_error)
    }
}
