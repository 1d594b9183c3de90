//! One record per job and channel, so a send happens once.
//!
//! Before calling the peers for a claimed batch, the worker checks in one
//! read which claims still hold with time to spare for the calls, and which
//! channels an earlier attempt settled ([`Services::check_claims`]). After the
//! calls, one statement records how each ended: `sent` with the peer's
//! message id, `retry`, `failed`, or `skipped` when there was nothing to send
//! ([`Services::record_deliveries`]). A channel the deployment does not have
//! (no SMS configured) gets no record: earlier versions wrote `skipped` for it
//! on every job. A retry skips every channel already
//! `sent` (or failed for good, or skipped). A channel with no record is sent:
//! the only window for a duplicate is between the peer accepting and the
//! record committing, while a crash before the peer accepted (the common case:
//! the call hangs, the process is killed) loses nothing.
//!
//! (Earlier versions also wrote `sending` before each call. A retry treated it
//! exactly like no record, so it changed nothing about what is sent again; it
//! cost a write per job and channel and a transaction per batch, and is no
//! longer written. Records written then may still say it.)

use super::model::ClaimedJob;
use crate::error::ServiceResult;
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use entity::{job, job_delivery};
use sea_orm::sea_query::{Expr, ExprTrait, JoinType, OnConflict, Query};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::HashMap;
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
    /// Every channel, in the order a job's are tried.
    pub const ALL: [Self; 2] = [Self::Email, Self::Sms];

    /// Parses a stored name.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

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
    /// Written by earlier versions before the call (see the module
    /// documentation); a channel left at it is sent again, as with no record.
    Sending,
    /// The peer accepted the message.
    Sent,
    /// A failure worth retrying; not sent.
    Retry,
    /// The peer refused for good; not sent.
    Failed,
    /// Nothing to send on this channel (opted out, no address; earlier
    /// versions also for a channel the deployment did not configure).
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

/// What a batch's check found for one claimed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimCheck {
    /// The claim lapsed, or will before a call could end: leave the job alone.
    LeaseLost,
    /// The claim holds for the calls; these channels are settled already.
    Holds(Settled),
}

/// The channels of a job that an earlier attempt settled, with how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Email's settled status, if settled.
    pub email: Option<DeliveryStatus>,
    /// SMS's settled status, if settled.
    pub sms: Option<DeliveryStatus>,
}

impl Settled {
    /// How `channel` was settled, if it was.
    pub fn get(&self, channel: Channel) -> Option<DeliveryStatus> {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
        }
    }

    fn set(&mut self, channel: Channel, status: DeliveryStatus) {
        match channel {
            Channel::Email => self.email = Some(status),
            Channel::Sms => self.sms = Some(status),
        }
    }
}

/// How one channel's call ended, to record.
#[derive(Clone, Debug)]
pub struct DeliveryRecord<'a> {
    /// The job, under its claim (its attempt is recorded).
    pub claimed: &'a ClaimedJob,
    /// Which channel.
    pub channel: Channel,
    /// `sent`, `retry`, `failed` or `skipped`.
    pub status: DeliveryStatus,
    /// The peer's message id, when it took the message.
    pub provider_ref: Option<String>,
    /// Why it failed or was skipped (redacted; never PHI).
    pub error: Option<String>,
}

/// Most rows (or ids) one statement names: far below either database's
/// limit on bound parameters (8 per delivery row).
const CHUNK: usize = 500;

impl Services {
    /// Checks a claimed batch before its calls, in one read per lease token
    /// (a claimed batch shares one): which claims still hold for at least
    /// `call_time`, and for those, which channels an earlier attempt settled.
    /// Answers in the order of `claims`. Writes nothing: the calls' outcomes
    /// are recorded after them ([`Services::record_deliveries`]).
    pub async fn check_claims(&self, claims: &[&ClaimedJob], call_time: Duration) -> ServiceResult<Vec<ClaimCheck>> {
        let now = self.clock.now();
        let backend = self.db.get_database_backend();
        // (lease token, job) -> what the job's row and its records say.
        let mut found: HashMap<(&str, Uuid), Settled> = HashMap::with_capacity(claims.len());
        for (token, ids) in by_token(claims.iter().copied()) {
            for chunk in ids.chunks(CHUNK) {
                // jobs LEFT JOIN job_deliveries: a row per record (or one
                // without), for the jobs this claim still holds.
                let query = Query::select()
                    .column((job::Entity, job::Column::Id))
                    .column((job_delivery::Entity, job_delivery::Column::Channel))
                    .column((job_delivery::Entity, job_delivery::Column::Status))
                    .from(job::Entity)
                    .join(
                        JoinType::LeftJoin,
                        job_delivery::Entity,
                        Expr::col((job_delivery::Entity, job_delivery::Column::JobId))
                            .equals((job::Entity, job::Column::Id)),
                    )
                    .and_where(Expr::col((job::Entity, job::Column::Id)).is_in(chunk.iter().copied()))
                    // The lease token alone says the job is running under this
                    // claim (see `claim_jobs`): the planner reads the primary key.
                    .and_where(Expr::col((job::Entity, job::Column::LeaseOwner)).eq(token))
                    .and_where(Expr::col((job::Entity, job::Column::LeaseUntil)).gt(now + call_time))
                    .to_owned();
                for row in self.db.query_all_raw(backend.build(&query)).await? {
                    let id: Uuid = row.try_get("", "id")?;
                    let settled = found.entry((token, id)).or_default();
                    let channel: Option<String> = row.try_get("", "channel")?;
                    let status: Option<String> = row.try_get("", "status")?;
                    let channel = channel.as_deref().and_then(Channel::from_code);
                    let status = status.as_deref().and_then(DeliveryStatus::from_code);
                    if let (Some(channel), Some(status)) = (channel, status)
                        && status.is_settled()
                    {
                        settled.set(channel, status);
                    }
                }
            }
        }
        // Held under the claim the caller names: a stale claim of a job another
        // worker has taken over is not this claim.
        Ok(claims
            .iter()
            .map(|c| {
                found
                    .get(&(c.lease_token.as_str(), c.job.id))
                    .map_or(ClaimCheck::LeaseLost, |settled| ClaimCheck::Holds(*settled))
            })
            .collect())
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
pub(super) fn by_token<'a>(claims: impl Iterator<Item = &'a ClaimedJob>) -> Vec<(&'a str, Vec<Uuid>)> {
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
