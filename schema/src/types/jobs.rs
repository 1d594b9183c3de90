//! Background jobs as admins see them: dead letters and their delivery records.
//! Ids and redacted errors only, never patient data.

use crate::IntoGqlResult;
use crate::services;
use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use domain::jobs as d;
use uuid::Uuid;

/// Where a job stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::jobs::JobStatus")]
pub enum JobStatus {
    /// Waiting to run (first run or retry).
    Pending,
    /// Claimed by a worker.
    Running,
    /// Finished.
    Done,
    /// Failed for good; retry it with `retryJob`.
    Dead,
    /// Made moot by a change of the appointment.
    Cancelled,
}

/// What a job does.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::jobs::JobKind")]
pub enum JobKind {
    /// Booking confirmation.
    Confirmation,
    /// Reminder before the start.
    Reminder,
    /// Reschedule notice.
    Rescheduled,
    /// Cancellation notice.
    Cancelled,
}

/// Where one channel of a job stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::jobs::DeliveryStatus")]
pub enum DeliveryStatus {
    /// Written by earlier versions before the call; no longer written (a
    /// record is now written once the call has ended). Treated as no record:
    /// the channel is sent again.
    Sending,
    /// The peer accepted the message.
    Sent,
    /// Failed; will be retried.
    Retry,
    /// The peer refused for good.
    Failed,
    /// Nothing to send on this channel.
    Skipped,
}

/// One channel (email or SMS) of a job.
#[derive(SimpleObject)]
pub struct JobDelivery {
    /// `email` or `sms`.
    channel: String,
    /// Where it stands.
    status: DeliveryStatus,
    /// The attempt that wrote it.
    attempt: i32,
    /// The peer's message id (Twilio SID, Message-ID).
    provider_ref: Option<String>,
    /// Why it failed or was skipped (the peer's code and message, redacted).
    error: Option<String>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

/// A background job.
pub struct Job(pub d::Job);

#[Object]
impl Job {
    /// Id.
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// What it does.
    async fn kind(&self) -> JobKind {
        self.0.kind.into()
    }
    /// Where it stands.
    async fn status(&self) -> JobStatus {
        self.0.status.into()
    }
    /// The appointment it concerns.
    async fn appointment_id(&self) -> Option<Uuid> {
        self.0.appointment_id
    }
    /// When it is (or was) due.
    async fn run_at(&self) -> DateTime<Utc> {
        self.0.run_at
    }
    /// Attempts so far.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// Attempts allowed before it is dead-lettered.
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    /// The last failure: the peer's code and message, with addresses and numbers masked.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// When it was written.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it finished.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Its channels.
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<JobDelivery>> {
        let list = services(ctx).deliveries(self.0.id).await.gql()?;
        Ok(list
            .into_iter()
            .map(|d| JobDelivery {
                channel: d.channel,
                status: d.status.into(),
                attempt: d.attempt,
                provider_ref: d.provider_ref,
                error: d.error,
                updated_at: d.updated_at,
            })
            .collect())
    }
}
