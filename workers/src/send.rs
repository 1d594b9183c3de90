//! What a sender answers: the peer's id of the message, or a failure that is
//! either worth retrying or not.

/// A failed send. The text is redacted before it is stored or logged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The peer may accept later (a 4xx SMTP reply, HTTP 429 or 5xx, a timeout,
    /// a refused connection): retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// The peer refused for good (a 5xx SMTP reply, HTTP 4xx): retrying the
    /// same message will not help, so the job is dead-lettered for a person.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// True for [`SendError::Permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}
