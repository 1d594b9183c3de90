//! Email: lettre over SMTP (`CARESLOT_SMTP_URL`; `smtps://` or
//! `?tls=required` for TLS), or, in the embedded default, files under the
//! outbox folder (lettre's file transport). Plain text and HTML, with the
//! `.ics` attached when the notice has one.

use crate::send::SendError;
use domain::notifications::RenderedNotice;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// One email to send.
#[derive(Clone)]
pub struct OutgoingEmail {
    /// Recipient (PHI: never logged).
    pub to: String,
    /// Deterministic per job and channel, so a duplicate is recognisable as one.
    pub message_id: String,
    /// What it says.
    pub notice: RenderedNotice,
}

/// Sends email.
#[async_trait::async_trait]
pub trait EmailSender: Send + Sync {
    /// Sends `email`; answers the peer's id of it.
    async fn send(&self, email: OutgoingEmail) -> Result<String, SendError>;
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    /// `CARESLOT_SMTP_URL` is unusable.
    #[error("CARESLOT_SMTP_URL: {0}")]
    SmtpUrl(String),
    /// `CARESLOT_EMAIL_FROM` is not an address.
    #[error("CARESLOT_EMAIL_FROM: {0}")]
    From(String),
    /// The outbox folder cannot be made.
    #[error("outbox {0}: {1}")]
    Outbox(PathBuf, std::io::Error),
}

fn build_message(from: &Mailbox, email: &OutgoingEmail) -> Result<Message, SendError> {
    // A bad address is the patient record's problem, not the peer's: no retry helps.
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|_| SendError::Permanent("the patient's email address is not deliverable".into()))?;
    let alternative = MultiPart::alternative_plain_html(email.notice.text.clone(), email.notice.html.clone());
    let body = match &email.notice.ics {
        Some(ics) => {
            let calendar = ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
                .map_err(|e| SendError::Permanent(format!("calendar content type: {e}")))?;
            MultiPart::mixed()
                .multipart(alternative)
                .singlepart(Attachment::new("appointment.ics".into()).body(ics.clone(), calendar))
        }
        None => alternative,
    };
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.notice.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .multipart(body)
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// SMTP through lettre's pooled async transport.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    /// A sender for `url` (`smtp://host:port`, `smtps://…`, `smtp://…?tls=required`),
    /// each SMTP step bounded by `timeout`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, EmailSetupError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| EmailSetupError::SmtpUrl(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from: from.parse().map_err(|e| EmailSetupError::From(format!("{e}")))?,
        })
    }
}

#[async_trait::async_trait]
impl EmailSender for SmtpSender {
    async fn send(&self, email: OutgoingEmail) -> Result<String, SendError> {
        let message = build_message(&self.from, &email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(email.message_id),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }
}

/// Writes each message as an `.eml` file under a folder (the embedded default).
pub struct OutboxSender {
    transport: AsyncFileTransport<Tokio1Executor>,
    from: Mailbox,
}

impl OutboxSender {
    /// A sender writing into `dir` (created when missing).
    pub fn new(dir: PathBuf, from: &str) -> Result<Self, EmailSetupError> {
        std::fs::create_dir_all(&dir).map_err(|e| EmailSetupError::Outbox(dir.clone(), e))?;
        Ok(Self {
            transport: AsyncFileTransport::new(dir),
            from: from.parse().map_err(|e| EmailSetupError::From(format!("{e}")))?,
        })
    }
}

#[async_trait::async_trait]
impl EmailSender for OutboxSender {
    async fn send(&self, email: OutgoingEmail) -> Result<String, SendError> {
        let message = build_message(&self.from, &email)?;
        self.transport
            .send(message)
            .await
            .map(|id| id.to_string())
            .map_err(|e| SendError::Transient(format!("outbox: {e}")))
    }
}
