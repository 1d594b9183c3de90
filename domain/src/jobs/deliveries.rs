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

use super::model::ClaimedJob;
use crate::error::ServiceResult;
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use entity::{job, job_delivery};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use std::collections::{HashMap, HashSet};
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
    /// No: there is nothing to send on this channel; `skipped` is recorded now.
    Skipped,
    /// No: this channel is settled already (an earlier attempt).
    Settled(DeliveryStatus),
    /// No: the claim lapsed or will before the call could end; leave the job.
    LeaseLost,
}

/// What a worker means to do on one channel of one claimed job.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryIntent<'a> {
    /// The job, under its claim.
    pub claimed: &'a ClaimedJob,
    /// Why there is nothing to send (recorded as `skipped`); `None` to send.
    pub skip: Option<&'a str>,
}

/// How one channel's call ended, to record.
#[derive(Clone, Debug)]
pub struct DeliveryRecord<'a> {
    /// The job, under its claim (its attempt is recorded).
    pub claimed: &'a ClaimedJob,
    /// Which channel.
    pub channel: Channel,
    /// `sent`, `retry` or `failed`.
    pub status: DeliveryStatus,
    /// The peer's message id, when it took the message.
    pub provider_ref: Option<String>,
    /// Why it failed (redacted).
    pub error: Option<String>,
}

/// Most rows one statement names: far below either database's limit on
/// bound parameters (8 per delivery row).
const CHUNK: usize = 500;

impl Services {
    /// Starts `channel` for each job of a batch, in order, in one transaction:
    /// which claims still hold for at least `call_time` (one query per lease
    /// token, normally one), which of those have the channel settled already
    /// (one query), and, for the rest, `sending` (or `skipped`, when the intent
    /// is to skip) in one multi-row upsert.
    pub async fn begin_deliveries(
        &self,
        intents: &[DeliveryIntent<'_>],
        channel: Channel,
        call_time: Duration,
    ) -> ServiceResult<Vec<DeliveryStart>> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let mut held = HashSet::new();
        for (token, ids) in by_token(intents.iter().map(|i| i.claimed)) {
            for chunk in ids.chunks(CHUNK) {
                let rows: Vec<Uuid> = job::Entity::find()
                    .select_only()
                    .column(job::Column::Id)
                    .filter(job::Column::Id.is_in(chunk.iter().copied()))
                    // The lease token alone says the job is running under this
                    // claim (see `claim_jobs`); repeating `status = 'running'`
                    // lets the planner walk the partial index of running jobs.
                    .filter(job::Column::LeaseOwner.eq(token))
                    .filter(job::Column::LeaseUntil.gt(now + call_time))
                    .into_tuple()
                    .all(&txn)
                    .await?;
                held.extend(rows.into_iter().map(|id| (token, id)));
            }
        }
        // Held under the claim the caller names: a stale claim of a job another
        // worker has taken over is not this claim.
        let holds = |c: &ClaimedJob| held.contains(&(c.lease_token.as_str(), c.job.id));
        let held_ids: Vec<Uuid> = intents
            .iter()
            .map(|i| i.claimed)
            .filter(|c| holds(c))
            .map(|c| c.job.id)
            .collect();
        let mut settled = HashMap::new();
        for chunk in held_ids.chunks(CHUNK) {
            let rows = job_delivery::Entity::find()
                .filter(job_delivery::Column::JobId.is_in(chunk.iter().copied()))
                .filter(job_delivery::Column::Channel.eq(channel.code()))
                .all(&txn)
                .await?;
            settled.extend(rows.into_iter().filter_map(|d| {
                let status = DeliveryStatus::from_code(&d.status)?;
                status.is_settled().then_some((d.job_id, status))
            }));
        }
        let mut starts = Vec::with_capacity(intents.len());
        let mut rows = Vec::new();
        for intent in intents {
            let id = intent.claimed.job.id;
            let start = if !holds(intent.claimed) {
                DeliveryStart::LeaseLost
            } else if let Some(status) = settled.get(&id) {
                DeliveryStart::Settled(*status)
            } else if let Some(reason) = intent.skip {
                rows.push(row(
                    intent.claimed,
                    channel,
                    DeliveryStatus::Skipped,
                    None,
                    Some(reason.to_owned()),
                    now,
                ));
                DeliveryStart::Skipped
            } else {
                rows.push(row(intent.claimed, channel, DeliveryStatus::Sending, None, None, now));
                DeliveryStart::Go
            };
            starts.push(start);
        }
        upsert(&txn, rows).await?;
        txn.commit().await?;
        Ok(starts)
    }

    /// Records how calls (or decisions not to call) ended, in one multi-row
    /// upsert. Written whatever became of the claims: it is the truth about
    /// the peer.
    pub async fn record_deliveries(&self, records: &[DeliveryRecord<'_>]) -> ServiceResult<()> {
        let now = self.clock.now();
        let rows = records
            .iter()
            .map(|r| {
                row(
                    r.claimed,
                    r.channel,
                    r.status,
                    r.provider_ref.clone(),
                    r.error.clone(),
                    now,
                )
            })
            .collect();
        upsert(&self.db, rows).await
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

/// The claims of a batch grouped by lease token (a claimed batch shares one).
fn by_token<'a>(claims: impl Iterator<Item = &'a ClaimedJob>) -> Vec<(&'a str, Vec<Uuid>)> {
    let mut groups: Vec<(&str, Vec<Uuid>)> = Vec::new();
    for claimed in claims {
        match groups.iter_mut().find(|(token, _)| *token == claimed.lease_token) {
            Some((_, ids)) => ids.push(claimed.job.id),
            None => groups.push((claimed.lease_token.as_str(), vec![claimed.job.id])),
        }
    }
    groups
}

fn row(
    claimed: &ClaimedJob,
    channel: Channel,
    status: DeliveryStatus,
    provider_ref: Option<String>,
    error: Option<String>,
    now: DateTime<Utc>,
) -> job_delivery::ActiveModel {
    job_delivery::ActiveModel {
        job_id: Set(claimed.job.id),
        channel: Set(channel.code().to_owned()),
        status: Set(status.code().to_owned()),
        attempt: Set(claimed.job.attempts),
        provider_ref: Set(provider_ref),
        error: Set(error),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Writes `rows`, each replacing the record of its job and channel (keeping
/// when it was first created), in multi-row statements.
async fn upsert(conn: &impl sea_orm::ConnectionTrait, mut rows: Vec<job_delivery::ActiveModel>) -> ServiceResult<()> {
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(CHUNK));
        job_delivery::Entity::insert_many(rows)
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
        rows = rest;
    }
    Ok(())
}
