//! The values of the job queue. Payloads hold ids only, never PHI: what a
//! notice says is read (and decrypted) when it is sent.

use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use entity::job;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Confirm a booking.
    Confirmation,
    /// Remind of an upcoming appointment.
    Reminder,
    /// Announce a reschedule.
    Rescheduled,
    /// Announce a cancellation.
    Cancelled,
}

impl JobKind {
    /// The stored name.
    pub fn code(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Reminder => "reminder",
            Self::Rescheduled => "reschedule_notice",
            Self::Cancelled => "cancellation_notice",
        }
    }

    /// Parses a stored name.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Confirmation, Self::Reminder, Self::Rescheduled, Self::Cancelled]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for `run_at` (a first run or a retry).
    Pending,
    /// Claimed by a worker until `lease_until`.
    Running,
    /// Finished (sent, or nothing left to send).
    Done,
    /// Failed for good: a dead letter, until an admin retries it.
    Dead,
    /// Made moot by a change of the appointment before it ran.
    Cancelled,
}

impl JobStatus {
    /// The stored name.
    pub fn code(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Done, Self::Dead, Self::Cancelled]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// The payload of every notice job: ids and the version it was planned for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePayload {
    /// The appointment.
    pub appointment_id: Uuid,
    /// Its version when the job was planned; a later change makes a reminder stale.
    pub version: i32,
    /// For reminders: minutes before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_minutes: Option<u32>,
}

/// A job to write.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// Its payload.
    pub payload: NoticePayload,
    /// When it becomes due.
    pub run_at: DateTime<Utc>,
    /// Attempts before it is dead-lettered.
    pub max_attempts: i32,
    /// Writing a second job with this key does nothing.
    pub dedupe_key: String,
}

/// A job as admins and workers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Id.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// Where it stands.
    pub status: JobStatus,
    /// Its payload.
    pub payload: NoticePayload,
    /// When it is (or was) due.
    pub run_at: DateTime<Utc>,
    /// Claims so far.
    pub attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// The last failure (never PHI).
    pub last_error: Option<String>,
    /// The appointment it concerns.
    pub appointment_id: Option<Uuid>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it finished (done, dead or cancelled).
    pub finished_at: Option<DateTime<Utc>>,
    /// W3C `traceparent` of the request that wrote it, when there was a trace.
    pub trace_parent: Option<String>,
}

impl TryFrom<job::Model> for Job {
    type Error = ServiceError;

    fn try_from(row: job::Model) -> ServiceResult<Self> {
        let bad = |what: &str| ServiceError::internal(anyhow::anyhow!("job {} has an invalid {what}", row.id));
        Ok(Self {
            id: row.id,
            kind: JobKind::from_code(&row.kind).ok_or_else(|| bad("kind"))?,
            status: JobStatus::from_code(&row.status).ok_or_else(|| bad("status"))?,
            payload: serde_json::from_value(row.payload.clone()).map_err(|_| bad("payload"))?,
            run_at: row.run_at,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            last_error: row.last_error,
            appointment_id: row.appointment_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
            trace_parent: row.trace_parent,
        })
    }
}

/// A job a worker holds: the lease token proves the claim is still its own.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// The job as claimed (attempts already counts this claim).
    pub job: Job,
    /// Unique to this claim.
    pub lease_token: String,
    /// When the claim lapses.
    pub lease_until: DateTime<Utc>,
}
