//! The one error type of every domain service.
//!
//! Each variant corresponds to exactly one `extensions.code` of the client
//! contract; `schema` does the mapping. Internal errors keep their cause for the
//! log but it never reaches a client.

use sea_orm::DbErr;

/// What a domain service answers when it refuses or fails.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No valid credentials were presented; the text is safe to show.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("not allowed")]
    Forbidden,
    /// The id does not exist or is not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Validation failed; `field` is the argument path, e.g. `input.timeZone`.
    #[error("{message}")]
    BadInput {
        /// Argument path of the offending input.
        field: String,
        /// Human-readable explanation, safe to show to the caller.
        message: String,
    },
    /// The interval is taken, held by someone else, or outside availability.
    #[error("{0}")]
    SlotUnavailable(String),
    /// The appointment's status does not allow this change.
    #[error("{0}")]
    InvalidTransition(String),
    /// Too many requests.
    #[error("too many requests")]
    RateLimited {
        /// When the caller may try again.
        retry_after_seconds: u64,
    },
    /// Anything else: logged with its cause, answered without detail.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ServiceError {
    /// A validation error on `field` (the argument path).
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An unexpected failure; the cause is kept for the log only.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<DbErr> for ServiceError {
    fn from(err: DbErr) -> Self {
        Self::Internal(err.into())
    }
}

/// Result of a domain service.
pub type ServiceResult<T> = Result<T, ServiceError>;
