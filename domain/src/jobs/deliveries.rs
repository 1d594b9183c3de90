//! One record per job and channel, so a send happens once.
//!
//! Before calling the peer, the worker writes `sending` (checking, in the same
//! transaction, that its claim still holds with time to spare for the call);
//! after the call, `sent` with the peer's message id, or `failed`. A retry
//! skips every channel already `sent` (or failed for good, or skipped). A
//! record left at `sending` means the worker died during the call: the message
//! is sent again, so the only window for a duplicate is between the peer
//! accepting and the `sent` record committing, while a crash before the peer
//! accepted (the common case: the call hangs, the process is killed) loses
//! nothing.

use super::model::{ClaimedJob, JobStatus};
use crate::error::ServiceResult;
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use entity::{job, job_delivery};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use uuid::Uuid;

/// A way to reach a patient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Email over SMTP.
    Email,
    /// SMS through Twilio.
    Sms,
}

impl Channel {
    /// The stored name.
    pub fn code(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

/// What happened on one channel of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The call to the peer started and has not been recorded as finished.
    Sending,
    /// The peer accepted the message.
    Sent,
    /// A failure worth retrying; not sent.
    Retry,
    /// The peer refused for good; not sent.
    Failed,
    /// Nothing to send on this channel (opted out, no address, not configured).
    Skipped,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn code(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Retry => "retry",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parses a stored name.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Sending, Self::Sent, Self::Retry, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|s| s.code() == code)
    }

    /// True when a retry of the job must not touch this channel again.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Sent | Self::Failed | Self::Skipped)
    }
}

/// A delivery record, as admins see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `email` or `sms`.
    pub channel: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The job attempt that wrote it.
    pub attempt: i32,
    /// The peer's message id.
    pub provider_ref: Option<String>,
    /// Why it failed or was skipped (never PHI).
    pub error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// May the worker call the peer now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStart {
    /// Yes: `sending` is recorded.
    Go,
    /// No: this channel is settled already (an earlier attempt).
    Settled(DeliveryStatus),
    /// No: the claim lapsed or will before the call could end; leave the job.
    LeaseLost,
}

impl Services {
    /// Records `sending` on `channel` if the claim still holds for at least
    /// `call_time` and the channel is not settled.
    pub async fn begin_delivery(
        &self,
        claimed: &ClaimedJob,
        channel: Channel,
        call_time: Duration,
    ) -> ServiceResult<DeliveryStart> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let owned = job::Entity::find_by_id(claimed.job.id)
            .filter(job::Column::Status.eq(JobStatus::Running.code()))
            .filter(job::Column::LeaseOwner.eq(claimed.lease_token.as_str()))
            .filter(job::Column::LeaseUntil.gt(now + call_time))
            .one(&txn)
            .await?;
        if owned.is_none() {
            return Ok(DeliveryStart::LeaseLost);
        }
        let existing = job_delivery::Entity::find_by_id((claimed.job.id, channel.code().to_owned()))
            .one(&txn)
            .await?;
        if let Some(status) = existing.and_then(|d| DeliveryStatus::from_code(&d.status))
            && status.is_settled()
        {
            return Ok(DeliveryStart::Settled(status));
        }
        upsert(&txn, claimed, channel, DeliveryStatus::Sending, None, None, now).await?;
        txn.commit().await?;
        Ok(DeliveryStart::Go)
    }

    /// Records how a channel's call (or decision not to call) ended. Written
    /// whatever became of the claim: it is the truth about the peer.
    pub async fn record_delivery(
        &self,
        claimed: &ClaimedJob,
        channel: Channel,
        status: DeliveryStatus,
        provider_ref: Option<String>,
        error: Option<String>,
    ) -> ServiceResult<()> {
        upsert(
            &self.db,
            claimed,
            channel,
            status,
            provider_ref,
            error,
            self.clock.now(),
        )
        .await
    }

    /// The delivery records of a job, by channel.
    pub async fn deliveries(&self, job: Uuid) -> ServiceResult<Vec<Delivery>> {
        Ok(job_delivery::Entity::find()
            .filter(job_delivery::Column::JobId.eq(job))
            .order_by_asc(job_delivery::Column::Channel)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| Delivery {
                status: DeliveryStatus::from_code(&d.status).unwrap_or(DeliveryStatus::Sending),
                channel: d.channel,
                attempt: d.attempt,
                provider_ref: d.provider_ref,
                error: d.error,
                updated_at: d.updated_at,
            })
            .collect())
    }
}

async fn upsert(
    conn: &impl sea_orm::ConnectionTrait,
    claimed: &ClaimedJob,
    channel: Channel,
    status: DeliveryStatus,
    provider_ref: Option<String>,
    error: Option<String>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    job_delivery::Entity::insert(job_delivery::ActiveModel {
        job_id: Set(claimed.job.id),
        channel: Set(channel.code().to_owned()),
        status: Set(status.code().to_owned()),
        attempt: Set(claimed.job.attempts),
        provider_ref: Set(provider_ref),
        error: Set(error),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([job_delivery::Column::JobId, job_delivery::Column::Channel])
            .update_columns([
                job_delivery::Column::Status,
                job_delivery::Column::Attempt,
                job_delivery::Column::ProviderRef,
                job_delivery::Column::Error,
                job_delivery::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
